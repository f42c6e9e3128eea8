#!/usr/bin/env bash
# Ingest and streaming benchmarks, hindsight against PostgreSQL 15 on the same machine and data.
#   ROWS=10000000 bash benches/run.sh
# Installs Debian's postgresql if missing, and runs everything on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
WORK=${WORK:-/tmp/hindsight-bench}
HS_PORT=55433
PG_PORT=55432
mkdir -p "$WORK"

cargo build --release --quiet
cargo build --release --quiet --manifest-path benches/client/Cargo.toml
CLIENT=benches/client/target/release/hindsight-bench-client

. benches/common.sh
DATA=$(bench_csv "$ROWS" "$WORK")
DDL="CREATE TABLE bench (id BIGINT, user_id BIGINT, ts TIMESTAMP, amount DOUBLE PRECISION, category TEXT)"

# time_copy PORT USER: loads the CSV with psql's \copy; prints seconds and rows/s, sets RATE.
time_copy() {
    psql -h 127.0.0.1 -p "$1" -U "$2" -qc "$DDL"
    local t0 t1
    t0=$(date +%s.%N)
    psql -h 127.0.0.1 -p "$1" -U "$2" -qc "\\copy bench from '$DATA' with (format csv)"
    t1=$(date +%s.%N)
    RATE=$(echo "$ROWS / ($t1 - $t0)" | bc)
    echo "COPY FROM STDIN: $(echo "$t1 - $t0" | bc) s, $RATE rows/s"
}

echo "== hindsight"
rm -rf "$WORK/warehouse"
start_hindsight "$WORK/warehouse" $HS_PORT "$WORK/hindsight.log"
time_copy $HS_PORT hindsight
hs_copy=$RATE
echo "server peak RSS during COPY: $(peak_mib $HS_PID) MiB"
kill $HS_PID; wait $HS_PID 2>/dev/null || true
start_hindsight "$WORK/warehouse" $HS_PORT "$WORK/hindsight.log"
"$CLIENT" $HS_PORT "SELECT * FROM bench"
echo "SELECT stream: server peak RSS $(peak_mib $HS_PID) MiB"
kill $HS_PID; wait $HS_PID 2>/dev/null || true

echo "== PostgreSQL"
start_postgres "$WORK/pgdata" $PG_PORT
time_copy $PG_PORT postgres
pg_copy=$RATE
BENCH_USER=postgres BENCH_DB=postgres "$CLIENT" $PG_PORT "SELECT * FROM bench"
stop_postgres "$WORK/pgdata"
echo "== COPY ratio hindsight/postgres: $(echo "scale=2; $hs_copy / $pg_copy" | bc)"
