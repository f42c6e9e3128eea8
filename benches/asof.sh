#!/usr/bin/env bash
# ASOF JOIN: hindsight against DuckDB's ASOF LEFT JOIN and Polars' join_asof on the same Parquet
# files (the Delta tables' own data files), release build, loopback.
#   SPINE=1000000 FEATURES=10000000 ENTITIES=100000 bash benches/asof.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SPINE=${SPINE:-1000000}
FEATURES=${FEATURES:-10000000}
ENTITIES=${ENTITIES:-100000}
WORK=${WORK:-/tmp/hindsight-bench}
PORT=55435
mkdir -p "$WORK"
cargo build --release --quiet
. benches/common.sh
python3 -c "import duckdb, polars" 2>/dev/null || python3 -m pip install --quiet duckdb polars

PSQL="psql -h 127.0.0.1 -p $PORT -U hindsight -X -q"
WH="$WORK/asof-warehouse"
rm -rf "$WH"
start_hindsight "$WH" $PORT "$WORK/asof.log"
trap 'kill $HS_PID 2>/dev/null || true' EXIT

# One commit each, so each table is a plain set of Parquet files the other engines can read.
$PSQL -c "CREATE TABLE feat AS SELECT value % $ENTITIES AS k, to_timestamp_seconds((value * 7919) % 100000000) AS ts, (value % 1000) * 0.5 AS v FROM generate_series(1::BIGINT, $FEATURES) AS s(value)"
$PSQL -c "CREATE TABLE spine AS SELECT value % $ENTITIES AS k, to_timestamp_seconds((value * 104729) % 100000000) AS ts FROM generate_series(1::BIGINT, $SPINE) AS s(value)"
$PSQL -c "CREATE FEATURE VIEW fv ON feat ENTITY (k) TIMESTAMP ts"
ASOF="SELECT count(*) AS n, count(f.v) AS matched, sum(f.v) AS total FROM spine s ASOF JOIN feat f MATCH_CONDITION (s.ts >= f.ts) ON s.k = f.k"
HIST="SELECT count(*) AS n, count(fv__v) AS matched, sum(fv__v) AS total FROM historical_features(spine, 'fv.v')"

echo "== hindsight ($SPINE x $FEATURES, $ENTITIES entities)"
for label in ASOF HIST; do
    for _ in 1 2 3; do
        t0=$(date +%s.%N)
        out=$($PSQL -Atc "${!label}")
        t1=$(date +%s.%N)
        echo "$([ $label = ASOF ] && echo 'ASOF JOIN' || echo 'historical_features'): $(echo "$t1 - $t0" | bc) s  ($out)"
    done
done
echo "server peak RSS: $(peak_mib $HS_PID) MiB"

python3 - "$WH" <<'PY'
import resource, sys, time
import duckdb, polars as pl
wh = sys.argv[1]
spine, feat = f"{wh}/public/spine/*.parquet", f"{wh}/public/feat/*.parquet"
con = duckdb.connect()
q = f"""SELECT count(*), count(f.v), sum(f.v) FROM read_parquet('{spine}') s
        ASOF LEFT JOIN read_parquet('{feat}') f ON s.k = f.k AND s.ts >= f.ts"""
print("== DuckDB", duckdb.__version__)
for _ in range(3):
    t0 = time.time(); r = con.execute(q).fetchone(); print(f"ASOF LEFT JOIN: {time.time() - t0:.2f} s  {r}")
print("== Polars", pl.__version__)
for _ in range(3):
    t0 = time.time()
    s = pl.scan_parquet(spine).sort("ts")
    f = pl.scan_parquet(feat).sort("ts")
    r = s.join_asof(f, on="ts", by="k", strategy="backward").select(
        pl.len().alias("n"), pl.col("v").count().alias("matched"), pl.col("v").sum().alias("total")).collect()
    print(f"join_asof: {time.time() - t0:.2f} s  {r.row(0)}")
print(f"python peak RSS (DuckDB and Polars): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
PY
