#!/usr/bin/env bash
# The evaluation pipeline: join 10M predictions with their (late, partial) labels, then
# roc_auc and log_loss, overall and by a 100-value slice; hindsight against the same SQL in
# DuckDB over the same Parquet files, release build.
#   ROWS=10000000 bash benches/pipeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
WORK=${WORK:-/tmp/hindsight-bench}
PORT=55440
mkdir -p "$WORK"
cargo build --release --quiet
. benches/common.sh
python3 -c "import duckdb" 2>/dev/null || python3 -m pip install --quiet duckdb

PSQL="psql -h 127.0.0.1 -p $PORT -U hindsight -X -q"
WH="$WORK/pipeline-warehouse"
rm -rf "$WH"
start_hindsight "$WH" $PORT "$WORK/pipeline.log"
trap 'kill $HS_PID 2>/dev/null || true' EXIT
# Labels for 80% of the predictions, in another order.
$PSQL -c "CREATE TABLE predictions AS SELECT value AS request_id, value % 100 AS slice, ((value * 7919) % 10007) / 10007.0 AS score FROM generate_series(1::BIGINT, $ROWS) AS s(value)"
$PSQL -c "CREATE TABLE labels AS SELECT (value * 7) % $ROWS + 1 AS request_id, (value * 104729) % 997 < 400 AS defaulted FROM generate_series(1::BIGINT, $((ROWS * 8 / 10))) AS s(value)"

Q1="SELECT roc_auc(p.score, l.defaulted), log_loss(p.score, l.defaulted) FROM predictions p JOIN labels l ON l.request_id = p.request_id"
Q2="SELECT p.slice, roc_auc(p.score, l.defaulted), log_loss(p.score, l.defaulted) FROM predictions p JOIN labels l ON l.request_id = p.request_id GROUP BY p.slice ORDER BY p.slice"
echo "== hindsight ($ROWS predictions, $((ROWS * 8 / 10)) labels)"
timed "join + roc_auc + log_loss" "$Q1"
timed "join + both by slice" "$Q2"
echo "server peak RSS: $(peak_mib $HS_PID) MiB"

python3 - "$WH" <<'PY'
import sys, time
import duckdb
wh = sys.argv[1]
con = duckdb.connect()
for t in ("predictions", "labels"):
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{wh}/public/{t}/*.parquet')")
ll = "greatest(least(score, 1 - 2.220446049250313e-16), 2.220446049250313e-16)"
j = "SELECT p.slice, p.score, l.defaulted AS label FROM predictions p JOIN labels l ON l.request_id = p.request_id"
auc = """WITH j AS ({j}), r AS (SELECT {g} label, rank() OVER w + (count(*) OVER (w RANGE BETWEEN CURRENT ROW AND CURRENT ROW) - 1) / 2.0 AS rk
              FROM j WINDOW w AS ({p} ORDER BY score))
         SELECT {g} (sum(rk) FILTER (WHERE label) - count(*) FILTER (WHERE label) * (count(*) FILTER (WHERE label) + 1) / 2.0)
                / (count(*) FILTER (WHERE label) * count(*) FILTER (WHERE NOT label)) AS auc FROM r {gb}"""
logloss = f"avg(-(CASE WHEN label THEN ln({ll}) ELSE ln(1 - {ll}) END))"
queries = {
    "join + roc_auc + log_loss": f"""WITH a AS ({auc.format(j=j, g='', p='', gb='')}), b AS (SELECT {logloss} AS ll FROM ({j}))
        SELECT * FROM a, b""",
    "join + both by slice": f"""WITH a AS ({auc.format(j=j, g='slice,', p='PARTITION BY slice', gb='GROUP BY slice')}),
        b AS (SELECT slice, {logloss} AS ll FROM ({j}) GROUP BY slice) SELECT * FROM a JOIN b USING (slice) ORDER BY slice""",
}
print("== DuckDB", duckdb.__version__)
for name, q in queries.items():
    for _ in range(3):
        t0 = time.time(); r = con.execute(q).fetchall(); print(f"{name}: {time.time() - t0:.2f} s  {r[-1]}")
PY
