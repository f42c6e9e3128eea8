//! Evaluations over the wire: windows computed against a reference over the same rows, late
//! labels merged and a window re-run in place, backfill, failures logged, and the scheduler
//! driven by a controllable clock: catch-up after downtime, once per window across two
//! servers, retries with backoff, and ON COMMIT triggers.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use hindsight::catalog::Warehouse;
use hindsight::engine::Engine;
use hindsight::scheduler::{Options, Scheduler};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use crate::harness::{TestServer, count, message, sqlstate};

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0).single().expect("date")
}

/// AUC by pairwise counting over the labelled rows of [start, end).
fn auc(rows: &[(i64, DateTime<Utc>, f64)], labels: &[(i64, bool)], start: DateTime<Utc>, end: DateTime<Utc>) -> (i64, Option<f64>) {
    let joined: Vec<(f64, bool)> = rows
        .iter()
        .filter(|r| r.1 >= start && r.1 < end)
        .filter_map(|r| labels.iter().find(|l| l.0 == r.0).map(|l| (r.2, l.1)))
        .collect();
    let (pos, neg): (Vec<&(f64, bool)>, Vec<&(f64, bool)>) = joined.iter().partition(|r| r.1);
    let value = (!pos.is_empty() && !neg.is_empty()).then(|| {
        let wins: f64 = pos.iter().flat_map(|p| neg.iter().map(move |n| if p.0 > n.0 { 1.0 } else if p.0 == n.0 { 0.5 } else { 0.0 })).sum();
        wins / (pos.len() * neg.len()) as f64
    });
    (joined.len() as i64, value)
}

async fn window_row(c: &Client, start: DateTime<Utc>) -> Vec<(i64, Option<f64>, String)> {
    c.query("SELECT n, auc, run_id FROM eval.daily WHERE window_start = $1 ORDER BY run_id", &[&start])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn evaluation_windows_late_labels_backfill_and_failures() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let mut rng = StdRng::seed_from_u64(5);
    // Four days of predictions; labels for some at first, the rest MERGEd in later.
    let preds: Vec<(i64, DateTime<Utc>, f64)> = (0..400)
        .map(|i| (i, day(1) + Span::minutes(rng.random_range(0..4 * 24 * 60)), (rng.random_range(0.0..1.0f64) * 20.0).round() / 20.0))
        .collect();
    let truth: Vec<(i64, bool)> = preds.iter().map(|p| (p.0, rng.random_bool(p.2 * 0.8 + 0.1))).collect();
    let early: Vec<(i64, bool)> = truth.iter().copied().filter(|_| rng.random_bool(0.4)).collect();
    c.batch_execute("CREATE TABLE preds (id BIGINT, ts TIMESTAMPTZ, score DOUBLE); CREATE TABLE labels (id BIGINT, y BOOLEAN)").await.unwrap();
    let values: Vec<String> = preds.iter().map(|p| format!("({}, '{}', {})", p.0, p.1.to_rfc3339(), p.2)).collect();
    c.batch_execute(&format!("INSERT INTO preds VALUES {}", values.join(", "))).await.unwrap();
    let values: Vec<String> = early.iter().map(|l| format!("({}, {})", l.0, l.1)).collect();
    c.batch_execute(&format!("INSERT INTO labels VALUES {}", values.join(", "))).await.unwrap();

    c.batch_execute(
        "CREATE EVALUATION daily SCHEDULE '0 0 * * *' AS
         SELECT count(*) AS n, roc_auc(p.score, l.y) AS auc FROM preds p JOIN labels l ON l.id = p.id
         WHERE p.ts >= $window_start AND p.ts < $window_end",
    )
    .await
    .unwrap();
    let run = c.query_one("RUN EVALUATION daily FOR WINDOW '2026-03-02', '2026-03-03'", &[]).await.unwrap();
    assert_eq!(run.get::<_, String>("status"), "succeeded");
    let first = window_row(&c, day(2)).await;
    assert_eq!(first.len(), 1);
    let (n, want) = auc(&preds, &early, day(2), day(3));
    assert_eq!(first[0].0, n);
    assert!((first[0].1.unwrap() - want.unwrap()).abs() < 1e-12);

    // Late labels arrive by MERGE; re-running the window replaces its row.
    let values: Vec<String> = truth.iter().map(|l| format!("({}, {})", l.0, l.1)).collect();
    c.batch_execute(&format!(
        "MERGE INTO labels t USING (VALUES {}) AS s(id, y) ON t.id = s.id WHEN NOT MATCHED THEN INSERT (id, y) VALUES (s.id, s.y)",
        values.join(", ")
    ))
    .await
    .unwrap();
    c.query("RUN EVALUATION daily FOR WINDOW '2026-03-02', '2026-03-03'", &[]).await.unwrap();
    let second = window_row(&c, day(2)).await;
    let (n, want) = auc(&preds, &truth, day(2), day(3));
    assert_eq!(second.len(), 1, "a re-run replaces the window's rows");
    assert_ne!(second[0].2, first[0].2, "a new run id");
    assert_eq!(second[0].0, n);
    assert!((second[0].1.unwrap() - want.unwrap()).abs() < 1e-12);
    // Each run recorded the versions it read: the labels moved on between them.
    let versions: Vec<String> = c
        .query("SELECT versions FROM hindsight.evaluation_runs WHERE evaluation = 'daily' ORDER BY started_at", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions.len(), 2);
    assert_ne!(versions[0], versions[1]);
    assert!(versions[1].contains("\"public.labels\":2"), "{}", versions[1]);

    // Backfill: each daily window inside the span once, the re-run one included.
    let backfilled = c.query("BACKFILL EVALUATION daily FROM '2026-03-01' TO '2026-03-05'", &[]).await.unwrap();
    assert_eq!(backfilled.len(), 4);
    assert_eq!(count(&c, "eval.daily").await, 4);
    for d in 1..5 {
        let rows = window_row(&c, day(d)).await;
        let (n, want) = auc(&preds, &truth, day(d), day(d + 1));
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].0, rows[0].1.map(|v| (v * 1e9).round())), (n, want.map(|v| (v * 1e9).round())));
    }
    let windows: i64 = c
        .query_one("SELECT count(DISTINCT window_start) FROM eval.daily WHERE window_end = window_start + INTERVAL '1 day'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(windows, 4);

    // A failing run: reported with its SQLSTATE, logged as failed, nothing written.
    c.batch_execute("CREATE TABLE scratch (x BIGINT); INSERT INTO scratch VALUES (1)").await.unwrap();
    c.batch_execute("CREATE EVALUATION fragile SCHEDULE '0 0 * * *' AS SELECT count(*) AS n FROM scratch").await.unwrap();
    c.batch_execute("DROP TABLE scratch").await.unwrap();
    assert_eq!(sqlstate(c.query("RUN EVALUATION fragile", &[]).await), "42P01");
    let failed = c
        .query_one("SELECT status, error, rows FROM hindsight.evaluation_runs WHERE evaluation = 'fragile'", &[])
        .await
        .unwrap();
    assert_eq!(failed.get::<_, String>(0), "failed");
    assert!(failed.get::<_, String>(1).starts_with("42P01"), "{}", failed.get::<_, String>(1));
    assert_eq!(failed.get::<_, i64>(2), 0);
    assert_eq!(sqlstate(c.query("SELECT * FROM eval.fragile", &[]).await), "42P01");

    // Definitions: shown, validated with SQLSTATEs, dropped (results stay).
    let shown = c.query("SHOW EVALUATIONS", &[]).await.unwrap();
    assert_eq!(shown.iter().map(|r| r.get::<_, String>("name")).collect::<Vec<_>>(), ["daily", "fragile"]);
    assert_eq!(shown[1].get::<_, Option<String>>("last_status").as_deref(), Some("failed"));
    let bad = [
        ("CREATE EVALUATION daily SCHEDULE '0 0 * * *' AS SELECT 1 AS x", "42710"),
        ("CREATE EVALUATION e2 SCHEDULE 'every day' AS SELECT 1 AS x", "22023"),
        ("CREATE EVALUATION e2 SCHEDULE '0 0 * * *' LAG INTERVAL 'soon' AS SELECT 1 AS x", "22007"),
        ("CREATE EVALUATION e2 SCHEDULE '0 0 * * *' AS SELECT * FROM preds WHERE id = $1", "42601"),
        ("CREATE EVALUATION e2 SCHEDULE '0 0 * * *' AS SELECT nope FROM preds", "42703"),
        ("CREATE EVALUATION e2 SCHEDULE '0 0 * * *' AS SELECT 1 AS window_start", "42701"),
        ("CREATE EVALUATION e2 SCHEDULE '0 0 * * *' ON COMMIT TO missing AS SELECT 1 AS x", "42P01"),
        ("RUN EVALUATION nope", "42704"),
        ("RUN EVALUATION daily FOR WINDOW '2026-03-02', '2026-03-01'", "22023"),
        ("DROP EVALUATION nope", "42704"),
    ];
    for (sql, state) in bad {
        assert_eq!(sqlstate(c.batch_execute(sql).await), state, "{sql}");
    }
    assert!(message(c.batch_execute("CREATE EVALUATION e2 SCHEDULE 'every day' AS SELECT 1 AS x").await).contains("cron"));
    c.batch_execute("DROP EVALUATION fragile; DROP EVALUATION IF EXISTS fragile").await.unwrap();
    assert_eq!(c.query("SHOW EVALUATIONS", &[]).await.unwrap().len(), 1);
    assert_eq!(count(&c, "eval.daily").await, 4);
}

async fn created_at(c: &Client, name: &str) -> DateTime<Utc> {
    c.query_one("SELECT created_at FROM hindsight.evaluations WHERE name = $1", &[&name]).await.unwrap().get(0)
}

async fn runs(c: &Client, name: &str, status: &str) -> i64 {
    c.query_one("SELECT count(*) FROM hindsight.evaluation_runs WHERE evaluation = $1 AND status = $2", &[&name, &status])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn scheduler_catches_up_once_retries_and_follows_commits() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    let options = Options { interval: Duration::from_secs(3600), max_attempts: 3, backoff: Duration::from_secs(60) };
    let scheduler = || async { Scheduler::new(Engine::new(Warehouse::open(server.warehouse.to_str().unwrap()).await.unwrap(), hindsight::session::Session::background).unwrap(), options.clone()) };
    c.batch_execute(
        "CREATE TABLE events (ts TIMESTAMPTZ, v BIGINT); INSERT INTO events VALUES (now(), 1);
         CREATE EVALUATION minutely SCHEDULE '* * * * *' WINDOW INTERVAL '1 minute' AS
           SELECT count(*) AS n FROM events WHERE ts >= $window_start AND ts < $window_end",
    )
    .await
    .unwrap();
    let t0 = created_at(&c, "minutely").await;
    // The first scheduled minute after creation.
    let first = t0 + Span::seconds(60 - t0.timestamp() % 60) - Span::nanoseconds(t0.timestamp_subsec_nanos() as i64);

    let s = scheduler().await;
    assert_eq!(s.tick(first - Span::seconds(1)).await.unwrap().len(), 0);
    let done = s.tick(first + Span::minutes(4)).await.unwrap();
    assert_eq!(done.len(), 5, "minutes first..first+4");
    assert!(done.iter().all(|r| r.succeeded()));
    assert_eq!(s.tick(first + Span::minutes(4)).await.unwrap().len(), 0, "once each");
    assert_eq!(count(&c, "eval.minutely").await, 5);

    // Downtime: a new scheduler (a restarted server) reads its progress back from the run log
    // and catches up the missed minutes once each.
    drop(s);
    let restarted = scheduler().await;
    let caught_up = restarted.tick(first + Span::minutes(10)).await.unwrap();
    assert_eq!(caught_up.iter().map(|r| r.scheduled_for.unwrap()).collect::<Vec<_>>(), (5..=10).map(|m| first + Span::minutes(m)).collect::<Vec<_>>());
    // Two servers on one warehouse: each window runs once between them.
    let other = scheduler().await;
    let (a, b) = tokio::join!(restarted.tick(first + Span::minutes(13)), other.tick(first + Span::minutes(13)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 3, "{} + {}", a.len(), b.len());
    assert_eq!(runs(&c, "minutely", "succeeded").await, 14);
    let distinct: i64 = c
        .query_one("SELECT count(DISTINCT scheduled_for) FROM hindsight.evaluation_runs WHERE evaluation = 'minutely'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, 14);
    assert_eq!(count(&c, "eval.minutely").await, 14);

    // A failing evaluation is retried with backoff, then given up; the other one keeps running.
    c.batch_execute(
        "CREATE TABLE doomed (x BIGINT);
         CREATE EVALUATION flaky SCHEDULE '* * * * *' AS SELECT count(*) AS n FROM doomed;
         DROP TABLE doomed",
    )
    .await
    .unwrap();
    let s = scheduler().await;
    let next = first + Span::minutes(14);
    let r1 = s.tick(next).await.unwrap();
    let failed: Vec<_> = r1.iter().filter(|r| r.evaluation == "flaky").collect();
    assert_eq!(failed.len(), 1, "the first window failed; the rest wait for its retries");
    assert!(!failed[0].succeeded());
    let window = failed[0].scheduled_for.unwrap();
    assert!(r1.iter().any(|r| r.evaluation == "minutely" && r.succeeded()), "one failing evaluation does not stop another");
    let r2 = s.tick(next + Span::seconds(30)).await.unwrap();
    assert_eq!(r2.iter().filter(|r| r.evaluation == "flaky").count(), 0, "backing off");
    let r3 = s.tick(next + Span::seconds(61)).await.unwrap();
    assert_eq!(r3.iter().filter(|r| r.evaluation == "flaky").map(|r| r.attempt).collect::<Vec<_>>(), [2]);
    let r4 = s.tick(next + Span::seconds(61 + 121)).await.unwrap();
    let flaky: Vec<_> = r4.iter().filter(|r| r.evaluation == "flaky").collect();
    assert_eq!((flaky[0].attempt, flaky[0].scheduled_for), (3, Some(window)), "third and last attempt at the first window");
    assert_eq!(flaky.len(), 2, "then on to the next window, which fails and waits");
    let attempts: Vec<i64> = c
        .query("SELECT attempt FROM hindsight.evaluation_runs WHERE evaluation = 'flaky' AND scheduled_for = $1 ORDER BY attempt", &[&window])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(runs(&c, "flaky", "succeeded").await, 0);
    c.batch_execute("DROP EVALUATION flaky; DROP EVALUATION minutely").await.unwrap();

    // ON COMMIT: a new version of the watched table runs the latest window, once.
    c.batch_execute(
        "CREATE TABLE catalog (sku BIGINT);
         CREATE EVALUATION by_commit SCHEDULE '0 0 1 1 *' WINDOW INTERVAL '1 day' ON COMMIT TO catalog AS
           SELECT count(*) AS skus FROM catalog",
    )
    .await
    .unwrap();
    let now = Utc::now() + Span::days(1);
    let s = scheduler().await;
    assert_eq!(s.tick(now).await.unwrap().len(), 0, "no commit since creation");
    c.batch_execute("INSERT INTO catalog VALUES (1), (2), (3)").await.unwrap();
    let ran = s.tick(now).await.unwrap();
    assert_eq!(ran.len(), 1);
    assert_eq!((ran[0].trigger.as_str(), ran[0].trigger_version), ("commit", Some(1)));
    assert_eq!(s.tick(now).await.unwrap().len(), 0);
    let skus: i64 = c.query_one("SELECT skus FROM eval.by_commit", &[]).await.unwrap().get(0);
    assert_eq!(skus, 3);
    // A restarted scheduler remembers which version it ran for.
    assert_eq!(scheduler().await.tick(now).await.unwrap().len(), 0);
    // A compaction alone moves the version on without changing a row: no run. One after new
    // rows runs for them.
    c.batch_execute("INSERT INTO catalog VALUES (4); OPTIMIZE catalog").await.unwrap();
    let ran = s.tick(now).await.unwrap();
    assert_eq!(ran.iter().map(|r| r.trigger_version).collect::<Vec<_>>(), [Some(3)]);
    c.batch_execute("INSERT INTO catalog VALUES (5)").await.unwrap();
    assert_eq!(s.tick(now).await.unwrap().len(), 1);
    c.batch_execute("OPTIMIZE catalog").await.unwrap();
    assert_eq!(s.tick(now).await.unwrap().len(), 0, "nothing but a compaction since the last run");
    assert_eq!(scheduler().await.tick(now).await.unwrap().len(), 0, "nor after a restart");
    let skus: i64 = c.query_one("SELECT skus FROM eval.by_commit ORDER BY skus DESC LIMIT 1", &[]).await.unwrap().get(0);
    assert_eq!(skus, 5);
}

/// Issue 20: `$window_start` and `$window_end` are replaced where they are parameters and inside
/// the quoted queries given to table functions, never inside other string literals.
#[tokio::test]
async fn window_bounds_are_not_replaced_inside_string_literals() {
    let server = TestServer::start().await;
    let c = server.connect().await;
    c.batch_execute(
        "CREATE TABLE obs (ts TIMESTAMP, x DOUBLE);
         INSERT INTO obs VALUES ('2026-03-01 12:00:00', 1), ('2026-03-02 12:00:00', 2), ('2026-03-02 13:00:00', 3);
         CREATE EVALUATION literal SCHEDULE '0 0 * * *' AS
           SELECT count(*) AS n, '$window_start' AS written, 'from $window_end on' AS also_written,
                  (SELECT count(*) FROM drift('SELECT x FROM obs WHERE ts < $window_start',
                                              'SELECT x FROM obs WHERE ts >= $window_start AND ts < $window_end')) AS drift_rows
           FROM obs WHERE ts >= $window_start AND ts < $window_end",
    )
    .await
    .unwrap();
    c.query("RUN EVALUATION literal FOR WINDOW '2026-03-02', '2026-03-03'", &[]).await.unwrap();
    let r = c.query_one("SELECT n, written, also_written, drift_rows FROM eval.literal", &[]).await.unwrap();
    assert_eq!(r.get::<_, i64>("n"), 2);
    assert_eq!(r.get::<_, String>("written"), "$window_start");
    assert_eq!(r.get::<_, String>("also_written"), "from $window_end on");
    assert_eq!(r.get::<_, i64>("drift_rows"), 1, "drift compared the window with what came before");
}
