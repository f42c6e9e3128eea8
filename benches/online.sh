#!/usr/bin/env bash
# online_features over the wire against PostgreSQL 15 primary-key lookups of the same rows:
# pgbench with prepared statements, random keys over 100k entities, 1 and 16 clients.
#   ENTITIES=100000 ROWS_PER_ENTITY=10 DURATION=15 bash benches/online.sh
# Installs Debian's postgresql if missing; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ENTITIES=${ENTITIES:-100000}
PER=${ROWS_PER_ENTITY:-10}
SECONDS_EACH=${DURATION:-15}
WORK=${WORK:-/tmp/hindsight-bench}
HS_PORT=55436
PG_PORT=55437
mkdir -p "$WORK"
cargo build --release --quiet
. benches/common.sh

# percentiles LOGPREFIX: p50 and p99 latency (ms) from pgbench's per-transaction logs.
percentiles() {
    cat "$1".* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "p50 %.3f ms, p99 %.3f ms", a[int(NR*0.5)]/1000, a[int(NR*0.99)]/1000}'
    rm -f "$1".*
}

# run_pgbench PORT USER SCRIPT CLIENTS LABEL
run_pgbench() {
    local prefix="$WORK/pgbench-$5-$4"
    rm -f "$prefix".*
    (cd "$WORK" && pgbench -h 127.0.0.1 -p "$1" -U "$2" -n -M prepared -f "$3" -c "$4" -j "$4" -T "$SECONDS_EACH" \
        --log --log-prefix="$prefix" "$2" 2>/dev/null | grep -E "^tps" | sed 's/ (without initial connection time)//')
    echo "  $5, $4 client(s): $(percentiles "$prefix")"
}

echo "== hindsight: online_features, $ENTITIES entities x $PER rows"
WH="$WORK/online-warehouse"
rm -rf "$WH"
start_hindsight "$WH" $HS_PORT "$WORK/online.log"
trap 'kill $HS_PID 2>/dev/null || true' EXIT
PSQL="psql -h 127.0.0.1 -p $HS_PORT -U hindsight -X -q"
$PSQL -c "CREATE TABLE driver_stats AS SELECT value % $ENTITIES AS driver_id, to_timestamp_seconds($(date +%s) - (value / $ENTITIES) * 60) AS ts, (value % 97) * 0.01 AS conv_rate, value % 1000 AS trips, 'city' || (value % 50) AS city FROM generate_series(1::BIGINT, $(( ENTITIES * PER ))) AS s(value)"
$PSQL -c "CREATE FEATURE VIEW v_stats ON driver_stats ENTITY (driver_id) TIMESTAMP ts TTL INTERVAL '1 day'"
t0=$(date +%s.%N); $PSQL -Atc "SELECT * FROM online_features('v_stats', 1)" >/dev/null; t1=$(date +%s.%N)
echo "index build (first lookup): $(echo "$t1 - $t0" | bc) s"
cat > "$WORK/online.sql" <<SQL
\set k random(0, $(( ENTITIES - 1 )))
SELECT * FROM online_features('v_stats', :k);
SQL
for c in 1 16; do run_pgbench $HS_PORT hindsight "$WORK/online.sql" $c hindsight; done
echo "server peak RSS: $(peak_mib $HS_PID) MiB"
kill $HS_PID; wait $HS_PID 2>/dev/null || true

echo "== PostgreSQL 15: primary-key lookup of the same latest rows"
start_postgres "$WORK/pgdata-online" $PG_PORT
PG="psql -h 127.0.0.1 -p $PG_PORT -U postgres -X -q"
$PG -c "CREATE TABLE driver_stats_latest (driver_id BIGINT PRIMARY KEY, ts TIMESTAMPTZ, conv_rate DOUBLE PRECISION, trips BIGINT, city TEXT)"
$PG -c "INSERT INTO driver_stats_latest SELECT g % $ENTITIES, now(), (g % 97) * 0.01, g % 1000, 'city' || (g % 50) FROM generate_series(1::BIGINT, $ENTITIES) g"
$PG -c "VACUUM ANALYZE driver_stats_latest"
cat > "$WORK/pg-online.sql" <<SQL
\set k random(0, $(( ENTITIES - 1 )))
SELECT * FROM driver_stats_latest WHERE driver_id = :k;
SQL
for c in 1 16; do run_pgbench $PG_PORT postgres "$WORK/pg-online.sql" $c postgres; done
stop_postgres "$WORK/pgdata-online"
