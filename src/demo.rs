//! The demo warehouse: a small credit-scoring example (applicants, their transactions, scoring
//! requests, model predictions, and late labels), embedded from `fixtures/` so the binary can
//! write it anywhere. Loaded through the same COPY path a client uses.

use crate::catalog::TableName;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::commands::run_sql;
use crate::session::{Output, Session};

struct Fixture {
    table: &'static str,
    ddl: &'static str,
    csv: &'static str,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        table: "applicants",
        ddl: "CREATE TABLE applicants (applicant_id BIGINT NOT NULL, signup_date DATE, age INT, \
              income DOUBLE, region TEXT, employment TEXT)",
        csv: include_str!("../fixtures/applicants.csv"),
    },
    Fixture {
        table: "transactions",
        ddl: "CREATE TABLE transactions (transaction_id BIGINT NOT NULL, applicant_id BIGINT NOT NULL, \
              ts TIMESTAMP NOT NULL, amount DOUBLE, merchant_category TEXT)",
        csv: include_str!("../fixtures/transactions.csv"),
    },
    Fixture {
        table: "requests",
        ddl: "CREATE TABLE requests (request_id BIGINT NOT NULL, applicant_id BIGINT NOT NULL, \
              ts TIMESTAMP NOT NULL, amount_requested DOUBLE, model_version TEXT)",
        csv: include_str!("../fixtures/requests.csv"),
    },
    Fixture {
        table: "predictions",
        ddl: "CREATE TABLE predictions (request_id BIGINT NOT NULL, model_version TEXT, score DOUBLE, \
              decision BOOLEAN, predicted_at TIMESTAMP)",
        csv: include_str!("../fixtures/predictions.csv"),
    },
    Fixture {
        table: "labels",
        ddl: "CREATE TABLE labels (request_id BIGINT NOT NULL, defaulted BOOLEAN, labeled_at TIMESTAMP)",
        csv: include_str!("../fixtures/labels.csv"),
    },
];

/// The demo's feature views: an applicant's running spend (the transform pattern: a query over
/// raw transactions serves training and serving alike) and their profile.
const FEATURE_VIEWS: &[&str] = &[
    "CREATE FEATURE VIEW applicant_spend AS \
     SELECT applicant_id, ts, \
            sum(amount) OVER (PARTITION BY applicant_id ORDER BY ts, transaction_id) AS total_spend, \
            count(*) OVER (PARTITION BY applicant_id ORDER BY ts, transaction_id) AS transactions, \
            merchant_category AS last_category \
     FROM transactions \
     ENTITY (applicant_id) TIMESTAMP ts TTL INTERVAL '90 days'",
    "CREATE FEATURE VIEW applicant_profile ON applicants ENTITY (applicant_id) TIMESTAMP signup_date",
];

/// The training set the demo's model was fit on: requests before March 2025 with the
/// applicant's profile. The drift evaluation compares each week's requests against it.
const TRAINING_DATASET: &str = "CREATE DATASET training AS \
     SELECT r.request_id, r.amount_requested, a.age, a.income, a.region, a.employment \
     FROM requests r JOIN applicants a ON a.applicant_id = r.applicant_id WHERE r.ts < TIMESTAMP '2025-03-01'";

/// The demo's evaluations, each backfilled over the demo's weeks when created: model quality
/// by model version and region once labels have had four weeks to arrive, and drift of each
/// week's requests against the training set.
const EVALUATIONS: &[(&str, &str)] = &[
    (
        "weekly_quality",
        "CREATE EVALUATION weekly_quality SCHEDULE '0 6 * * 1' WINDOW INTERVAL '7 days' LAG INTERVAL '28 days' AS \
         SELECT p.model_version, a.region, count(*) AS requests, count(l.defaulted) AS labeled, \
                roc_auc(p.score, l.defaulted) AS auc, log_loss(p.score, l.defaulted) AS log_loss \
         FROM requests r JOIN predictions p ON p.request_id = r.request_id \
         JOIN applicants a ON a.applicant_id = r.applicant_id \
         LEFT JOIN labels l ON l.request_id = r.request_id \
         WHERE r.ts >= $window_start AND r.ts < $window_end \
         GROUP BY p.model_version, a.region",
    ),
    (
        "weekly_drift",
        "CREATE EVALUATION weekly_drift SCHEDULE '0 6 * * 1' WINDOW INTERVAL '7 days' AS \
         SELECT * FROM drift('SELECT amount_requested, age, income, region, employment FROM datasets.training', \
                             'SELECT r.amount_requested, a.age, a.income, a.region, a.employment FROM requests r \
                              JOIN applicants a ON a.applicant_id = r.applicant_id \
                              WHERE r.ts >= $window_start AND r.ts < $window_end')",
    ),
];

/// Writes every demo table and feature view that does not exist yet; returns the names of those
/// written.
pub async fn write(engine: &std::sync::Arc<Engine>) -> Result<Vec<String>> {
    let session = Session::admin(engine)?;
    let warehouse = engine.warehouse();
    let mut written = Vec::new();
    for f in FIXTURES {
        if warehouse.exists(&TableName::new("public", f.table)).await? {
            continue;
        }
        run_sql(&session, f.ddl).await?;
        let copy = format!("COPY {} FROM STDIN WITH (FORMAT csv, HEADER true)", f.table);
        let Some(Output::CopyIn(copy)) = run_sql(&session, &copy).await?.pop() else {
            return Err(Error::FeatureNotSupported("demo COPY did not start".into()));
        };
        let mut upload = session.start_upload(*copy);
        upload.push(f.csv.as_bytes()).await;
        let rows = upload.finish().await?;
        tracing::info!(table = f.table, rows, "demo table written");
        written.push(format!("{} ({rows} rows)", f.table));
    }
    for ddl in FEATURE_VIEWS {
        match run_sql(&session, ddl).await {
            Ok(_) => written.push(format!("feature view {}", ddl.split_whitespace().nth(3).unwrap_or_default())),
            Err(Error::DuplicateObject(_)) => {}
            Err(e) => return Err(e),
        }
    }
    match run_sql(&session, TRAINING_DATASET).await {
        Ok(_) => written.push("dataset training".into()),
        Err(Error::DuplicateObject(_)) => {}
        Err(e) => return Err(e),
    }
    for (name, ddl) in EVALUATIONS {
        match run_sql(&session, ddl).await {
            Ok(_) => {
                // Results at once: every week of the demo's data.
                run_sql(&session, &format!("BACKFILL EVALUATION {name} FROM '2025-01-13' TO '2025-05-12'")).await?;
                written.push(format!("evaluation {name} (eval.{name})"));
            }
            Err(Error::DuplicateObject(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}
