#!/usr/bin/env bash
# Metric aggregates: hindsight against the same metrics written in DuckDB SQL, over the same
# Parquet files (the Delta table's own), release build.
#   ROWS=10000000 bash benches/metrics.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
WORK=${WORK:-/tmp/hindsight-bench}
PORT=55438
mkdir -p "$WORK"
cargo build --release --quiet
. benches/common.sh
python3 -c "import duckdb" 2>/dev/null || python3 -m pip install --quiet duckdb

PSQL="psql -h 127.0.0.1 -p $PORT -U hindsight -X -q"
WH="$WORK/metrics-warehouse"
rm -rf "$WH"
start_hindsight "$WH" $PORT "$WORK/metrics.log"
trap 'kill $HS_PID 2>/dev/null || true' EXIT
# Scores in 10,007 steps (so there are ties), labels about 40% positive, 100 slices.
$PSQL -c "CREATE TABLE preds AS SELECT value % 100 AS slice, ((value * 7919) % 10007) / 10007.0 AS score, (value * 104729) % 997 < 400 AS label, ((value * 31) % 1000) / 10.0 AS pred, ((value * 17) % 1000) / 10.0 AS y FROM generate_series(1::BIGINT, $ROWS) AS s(value)"

echo "== hindsight ($ROWS rows)"
timed "roc_auc" "SELECT roc_auc(score, label) FROM preds"
timed "log_loss" "SELECT log_loss(score, label) FROM preds"
timed "rmse" "SELECT rmse(pred, y) FROM preds"
timed "all three by slice" "SELECT slice, roc_auc(score, label), log_loss(score, label), rmse(pred, y) FROM preds GROUP BY slice ORDER BY slice"
echo "server peak RSS: $(peak_mib $HS_PID) MiB"

python3 - "$WH" <<'PY'
import sys, time
import duckdb
files = f"{sys.argv[1]}/public/preds/*.parquet"
con = duckdb.connect()
con.execute(f"CREATE VIEW preds AS SELECT * FROM read_parquet('{files}')")
# ROC AUC as a DuckDB user writes it: the rank-sum (Mann-Whitney) form, ties at average rank.
auc = """WITH r AS (SELECT {g} label, rank() OVER w + (count(*) OVER (w RANGE BETWEEN CURRENT ROW AND CURRENT ROW) - 1) / 2.0 AS rk
                  FROM preds WINDOW w AS ({p} ORDER BY score))
         SELECT {g} (sum(rk) FILTER (WHERE label) - count(*) FILTER (WHERE label) * (count(*) FILTER (WHERE label) + 1) / 2.0)
                / (count(*) FILTER (WHERE label) * count(*) FILTER (WHERE NOT label)) FROM r {gb}"""
ll = "greatest(least(score, 1 - 2.220446049250313e-16), 2.220446049250313e-16)"
logloss = f"avg(-(CASE WHEN label THEN ln({ll}) ELSE ln(1 - {ll}) END))"
queries = {
    "roc_auc": auc.format(g="", p="", gb=""),
    "log_loss": f"SELECT {logloss} FROM preds",
    "rmse": "SELECT sqrt(avg((pred - y) * (pred - y))) FROM preds",
    "all three by slice": f"""WITH a AS ({auc.format(g='slice,', p='PARTITION BY slice', gb='GROUP BY slice')}),
        b AS (SELECT slice, {logloss} ll, sqrt(avg((pred - y) * (pred - y))) rmse FROM preds GROUP BY slice)
        SELECT * FROM a JOIN b USING (slice) ORDER BY slice""",
}
print("== DuckDB", duckdb.__version__)
for name, q in queries.items():
    for _ in range(3):
        t0 = time.time(); r = con.execute(q).fetchall(); print(f"{name}: {time.time() - t0:.2f} s  {r[-1]}")
PY
