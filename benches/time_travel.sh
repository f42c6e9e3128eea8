#!/usr/bin/env bash
# Time-travel benchmarks (release build, loopback):
#  1. open a table at its latest version and at version 1 after COMMITS small commits
#     (EXPLAIN plans the query, which opens the snapshot; count(*) also reads it);
#  2. CREATE DATASET over ROWS rows, then REPRODUCE DATASET of it.
#   COMMITS=5000 ROWS=10000000 bash benches/time_travel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COMMITS=${COMMITS:-5000}
ROWS=${ROWS:-10000000}
WORK=${WORK:-/tmp/hindsight-bench}
PORT=55434
mkdir -p "$WORK"
cargo build --release --quiet
. benches/common.sh

PSQL="psql -h 127.0.0.1 -p $PORT -U hindsight -X -q"
rm -rf "$WORK/tt-warehouse"
start_hindsight "$WORK/tt-warehouse" $PORT "$WORK/tt.log"
trap 'kill $HS_PID 2>/dev/null || true' EXIT

# ms: runs a statement N times in one session and prints the median wall time in ms.
ms() {
    local sql=$1 n=${2:-7}
    (echo '\timing on'; for _ in $(seq "$n"); do echo "$sql;"; done) | $PSQL -o /dev/null 2>&1 |
        awk '/^Time:/ {print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

echo "== $COMMITS small commits"
$PSQL -c "CREATE TABLE t (i BIGINT, note TEXT)"
t0=$(date +%s.%N)
for i in $(seq "$COMMITS"); do echo "INSERT INTO t VALUES ($i, 'n$i');"; done | $PSQL >/dev/null
t1=$(date +%s.%N)
echo "commits: $(echo "$t1 - $t0" | bc) s ($(echo "scale=1; ($t1 - $t0) * 1000 / $COMMITS" | bc) ms each)"
echo "checkpoints: $(ls "$WORK/tt-warehouse/public/t/_delta_log" | grep -c checkpoint.parquet)"
echo "open latest    (EXPLAIN, median ms): $(ms 'EXPLAIN SELECT * FROM t')"
echo "open version 1 (EXPLAIN, median ms): $(ms 'EXPLAIN SELECT * FROM t VERSION AS OF 1')"
echo "count(*) latest    (median ms): $(ms 'SELECT count(*) FROM t')"
echo "count(*) version 1 (median ms): $(ms 'SELECT count(*) FROM t VERSION AS OF 1')"
echo "count(*) TIMESTAMP AS OF now() (median ms): $(ms 'SELECT count(*) FROM t TIMESTAMP AS OF now()')"
echo "DESCRIBE HISTORY t LIMIT 10 (median ms): $(ms 'DESCRIBE HISTORY t LIMIT 10')"

echo "== dataset of $ROWS rows"
DATA=$(bench_csv "$ROWS" "$WORK")
$PSQL -c "CREATE TABLE bench (id BIGINT, user_id BIGINT, ts TIMESTAMP, amount DOUBLE PRECISION, category TEXT)"
$PSQL -c "\\copy bench from '$DATA' with (format csv)"
t0=$(date +%s.%N)
$PSQL -c "CREATE DATASET big AS SELECT * FROM bench WHERE amount > 10"
t1=$(date +%s.%N)
$PSQL -c "INSERT INTO bench SELECT * FROM bench LIMIT 1000"
t2=$(date +%s.%N)
$PSQL -Atc "REPRODUCE DATASET big"
t3=$(date +%s.%N)
echo "CREATE DATASET: $(echo "$t1 - $t0" | bc) s; REPRODUCE DATASET: $(echo "$t3 - $t2" | bc) s"
echo "server peak RSS: $(peak_mib $HS_PID) MiB"
