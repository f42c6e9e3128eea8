# Sourced by the bench scripts (from the repository root): one way to start a server, read its
# peak memory and find the benchmark CSV.

# start_hindsight WAREHOUSE PORT LOG: starts the release server, sets HS_PID, waits until it answers.
start_hindsight() {
    target/release/hindsight serve --warehouse "$1" --listen "127.0.0.1:$2" >"$3" 2>&1 &
    HS_PID=$!
    for _ in $(seq 100); do psql -h 127.0.0.1 -p "$2" -U hindsight -Atc "select 1" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "hindsight did not start"; exit 1
}

# peak_mib PID: the process's peak resident memory, in MiB.
peak_mib() { echo $(( $(grep VmHWM "/proc/$1/status" | awk '{print $2}') / 1024 )); }

# bench_csv ROWS DIR: the path of the seeded ROWS-row CSV in DIR, generated on first use.
bench_csv() {
    local path="$2/data_$1.csv"
    [ -f "$path" ] || python3 benches/gen_csv.py "$1" "$path"
    echo "$path"
}

# start_postgres DATADIR PORT: a fresh PostgreSQL 15 cluster (Debian's, installed if missing) on
# loopback, trust auth, user postgres; sets PGBIN. Stop it with: stop_postgres DATADIR.
start_postgres() {
    if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PGBIN=/usr/lib/postgresql/15/bin
    rm -rf "$1"; mkdir -p "$1"; chown postgres "$1"
    su postgres -c "$PGBIN/initdb -D $1 -A trust -U postgres" >/dev/null
    su postgres -c "$PGBIN/pg_ctl -D $1 -o '-p $2 -k /tmp -c listen_addresses=127.0.0.1' -l $1/server.log start" >/dev/null
    sleep 2
}

stop_postgres() { su postgres -c "$PGBIN/pg_ctl -D $1 stop" >/dev/null; }

# timed LABEL SQL: runs SQL three times through $PSQL, printing each wall time and the last row.
timed() {
    for _ in 1 2 3; do
        t0=$(date +%s.%N); out=$($PSQL -Atc "$2" | tail -1); t1=$(date +%s.%N)
        echo "$1: $(echo "$t1 - $t0" | bc) s  ($out)"
    done
}
