#!/usr/bin/env bash
# drift(): 1M baseline rows against 1M current rows, 20 columns (15 numeric, 5 categorical),
# against Evidently's DataDriftPreset on the same Parquet files (pandas), release build.
#   ROWS=1000000 [EVIDENTLY_RUNS=3] bash benches/drift.sh
# Evidently 0.7 runs in its own virtualenv ($WORK/evidently-venv), with pandas < 2.3 (0.7.23
# fails to import under pandas 3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
WORK=${WORK:-/tmp/hindsight-bench}
PORT=55439
mkdir -p "$WORK"
cargo build --release --quiet
. benches/common.sh
VENV="$WORK/evidently-venv"
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install --quiet "evidently==0.7.23" "pandas<2.3" pyarrow; }

PSQL="psql -h 127.0.0.1 -p $PORT -U hindsight -X -q"
WH="$WORK/drift-warehouse"
rm -rf "$WH"
start_hindsight "$WH" $PORT "$WORK/drift.log"
trap 'kill $HS_PID 2>/dev/null || true' EXIT
# Deterministic pseudo-random columns; the current side shifts every third numeric column and
# re-weights two categorical ones.
columns() {  # columns SHIFT
    local cols=()
    for i in $(seq 0 14); do
        local shift=0; [ "$1" = 1 ] && [ $((i % 3)) = 0 ] && shift=15
        cols+=("((value * $((7919 + i * 104))) % 10007) / 100.0 + ((value * $((31 + i))) % 101) / 10.0 + $shift AS n$i")
    done
    for i in $(seq 0 4); do
        local m=5; [ "$1" = 1 ] && [ $i -lt 2 ] && m=4
        cols+=("chr(97 + CAST((value * $((13 + i))) % 7 % $m AS INT)) AS c$i")
    done
    local IFS=,; echo "${cols[*]}"
}
$PSQL -c "CREATE TABLE base AS SELECT $(columns 0) FROM generate_series(1::BIGINT, $ROWS) AS s(value)"
$PSQL -c "CREATE TABLE cur AS SELECT $(columns 1) FROM generate_series($((ROWS + 1))::BIGINT, $((2 * ROWS))) AS s(value)"

echo "== hindsight drift() ($ROWS x 20 against $ROWS x 20)"
for _ in 1 2 3; do
    t0=$(date +%s.%N); $PSQL -Atc "SELECT \"column\", test, round(statistic, 4), drifted FROM drift('base', 'cur')" > "$WORK/drift-hindsight.txt"; t1=$(date +%s.%N)
    echo "drift: $(echo "$t1 - $t0" | bc) s, drifted columns: $(grep -c '|t$' "$WORK/drift-hindsight.txt")"
done
echo "server peak RSS: $(peak_mib $HS_PID) MiB"

"$VENV/bin/python" - "$WH" "$WORK/drift-hindsight.txt" <<'PY'
import glob, resource, sys, time
import pandas as pd
import evidently
from evidently import Report
from evidently.presets import DataDriftPreset
wh, ours = sys.argv[1], sys.argv[2]
t0 = time.time()
ref = pd.concat(pd.read_parquet(f) for f in glob.glob(f"{wh}/public/base/*.parquet"))
cur = pd.concat(pd.read_parquet(f) for f in glob.glob(f"{wh}/public/cur/*.parquet"))
print(f"== Evidently {evidently.__version__} DataDriftPreset (pandas read: {time.time() - t0:.2f} s)")
import os
for _ in range(int(os.environ.get("EVIDENTLY_RUNS", "3"))):
    t0 = time.time()
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    result = snapshot.dict()
    print(f"DataDriftPreset: {time.time() - t0:.2f} s")
print(f"python peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
# Agreement: each column's value as Evidently reports it, next to ours.
mine = {l.split("|")[0]: l.strip().split("|") for l in open(ours)}
for m in result["metrics"]:
    name = m.get("metric_name", m.get("metric_id", ""))
    if "ValueDrift" in name and "column=" in name:
        col = name.split("column=")[1].split(",")[0].rstrip(")")
        print(f"  {col}: Evidently {name.split('method=')[1].split(',')[0] if 'method=' in name else ''} {round(float(m['value']), 4)}  hindsight {mine.get(col, ['?'] * 4)[1:]}")
PY
