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
