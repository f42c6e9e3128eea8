"""Two servers on one warehouse, and the statements that used to take a server down, against the
release build: what each costs, and what the rest of the server notices.

    cargo build --release && python3 benches/hostile.py

Each server runs in a memory cgroup of its own (4 GiB, as in the issue that asked for this) when
the script may create one (root, cgroup v1 or v2), so that its default memory pool is sized from
the cgroup; otherwise from the machine. Prints, per statement, its SQLSTATE and time, with the
slowest answer a probe on each server got meanwhile (`SELECT 1` every 20 ms), then the servers'
peak memory and whether they are still up. Needs psycopg (`pip install "psycopg[binary]"`); Linux
only (it reads /proc). Set BIN to measure another binary.
"""
import glob, json, os, socket, subprocess, sys, tempfile, threading, time

import psycopg

binary = os.environ.get("BIN", os.path.join(os.path.dirname(__file__), "..", "target", "release", "hindsight"))
LIMIT = 4 << 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cgroup(name):
    """A memory cgroup limited to LIMIT, as the path of its cgroup.procs, or None."""
    for base, limit_file, marker in (("/sys/fs/cgroup", "memory.max", "cgroup.controllers"),
                                     ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.limit_in_bytes")):
        if not os.path.exists(os.path.join(base, marker)):
            continue
        path = os.path.join(base, name)
        try:
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, limit_file), "w") as f:
                f.write(str(LIMIT))
            return os.path.join(path, "cgroup.procs")
        except OSError:
            continue
    return None


warehouse = tempfile.mkdtemp()
servers, ports = [], []
for name in ("hindsight-a", "hindsight-b"):
    port = free_port()
    procs = cgroup(name)
    command = [binary, "serve", "--warehouse", warehouse, "--listen", f"127.0.0.1:{port}"]
    if procs:
        # Joins the cgroup before the server starts, so the server sizes its pool from it.
        command = ["sh", "-c", f'echo $$ > {procs} && exec "$0" "$@"', *command]
    servers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    ports.append(port)
print(f"servers in 4 GiB cgroups: {'yes' if procs else 'no (not permitted here)'}")
print("(the default memory pool is half of that: 2 GiB per server)" if procs else "")


def dsn(port):
    return f"host=127.0.0.1 port={port} user=postgres dbname=hindsight"


for port in ports:
    for _ in range(200):
        try:
            psycopg.connect(dsn(port)).close()
            break
        except psycopg.OperationalError:
            time.sleep(0.05)


def peak_mib(proc):
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmHWM"))
    except OSError:
        return None


# 1. Exactly-once appends under both servers' background compaction (default settings).
a = psycopg.connect(dsn(ports[0]), autocommit=True)
a.execute("CREATE TABLE appends (id BIGINT)")
acked = []


def append(k):
    c = psycopg.connect(dsn(ports[k % 2]), autocommit=True)
    for i in range(25):
        c.execute("INSERT INTO appends VALUES (%s)", (k * 1000 + i,))
        acked.append(k * 1000 + i)


threads = [threading.Thread(target=append, args=(k,)) for k in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
time.sleep(3)
rows = [psycopg.connect(dsn(p)).execute("SELECT count(*), count(DISTINCT id) FROM appends").fetchone() for p in ports]
live, records, optimize = {}, 0, 0
for entry in sorted(glob.glob(f"{warehouse}/public/appends/_delta_log/*.json")):
    for line in open(entry):
        action = json.loads(line)
        if "add" in action:
            live[action["add"]["path"]] = json.loads(action["add"].get("stats") or "{}").get("numRecords", 0)
        elif "remove" in action:
            live.pop(action["remove"]["path"], None)
        elif action.get("commitInfo", {}).get("operation") == "OPTIMIZE":
            optimize += 1
print(f"appends: {len(acked)} acknowledged; rows (count, distinct) via server A {rows[0]}, via B {rows[1]}; "
      f"{sum(live.values())} rows in {len(live)} live files by the Delta log; {optimize} compactions")

# 2. Hostile statements against server A, probes on both servers.
a.execute("CREATE TABLE t (id BIGINT); INSERT INTO t SELECT value FROM generate_series(1, 100000) AS s(value)")
slowest = [0.0, 0.0]
probing = True


def probe(i):
    c = psycopg.connect(dsn(ports[i]), autocommit=True)
    while probing:
        started = time.time()
        c.execute("SELECT 1").fetchone()
        slowest[i] = max(slowest[i], time.time() - started)
        time.sleep(0.02)


probes = [threading.Thread(target=probe, args=(i,)) for i in (0, 1)]
[p.start() for p in probes]


def reset_peak(proc):
    """Starts a new peak for VmHWM (Linux's clear_refs)."""
    try:
        with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def run(label, sql, setup=None):
    c = psycopg.connect(dsn(ports[0]), autocommit=True)
    if setup:
        c.execute(setup)
    reset_peak(servers[0])
    before = list(slowest)
    slowest[0] = slowest[1] = 0.0
    started = time.time()
    try:
        c.execute(sql)
        outcome = "answered"
    except psycopg.Error as e:
        outcome = e.sqlstate or str(e)[:40]
    took = time.time() - started
    print(f"| {label} | {outcome} | {took:.2f} s | {slowest[0] * 1000:.0f} / {slowest[1] * 1000:.0f} ms | {peak_mib(servers[0])} MiB |", flush=True)
    slowest[0], slowest[1] = max(before[0], slowest[0]), max(before[1], slowest[1])


ids = lambda a, b: ",".join(str(i) for i in range(a, b))
print("| statement | outcome | time | probes' slowest (A / B) | server A's peak RSS |")
print("|---|---|---|---|---|")
run("`SELECT 1 + 1 + ...`, 900 terms", "SELECT " + " + ".join(["1"] * 900))
run("`SELECT 1 + 1 + ...`, 5,000 terms", "SELECT " + " + ".join(["1"] * 5000))
run("`WHERE id = 0 OR id = 1 ...`, 5,000 terms", "SELECT count(*) FROM t WHERE " + " OR ".join(f"id = {i}" for i in range(5000)))
run("`WHERE id <> 0 AND ...`, 5,000 terms", "SELECT count(*) FROM t WHERE " + " AND ".join(f"id <> {i}" for i in range(5000)))
run("1,000 other conditions joined by AND", "SELECT count(*) FROM t WHERE " + " AND ".join(f"id * {i + 2} <> {i}" for i in range(1000)))
run("`WHERE id IN (...)`, 10,000 integers", f"SELECT count(*) FROM t WHERE id IN ({ids(0, 10000)})")
run("`WHERE id IN (...)`, 100,000 integers", f"SELECT count(*) FROM t WHERE id IN ({ids(0, 100000)})")
run("`DELETE ... WHERE id IN (...)`, 20,000 integers", f"DELETE FROM t WHERE id IN ({ids(200000, 220000)})")
run("`SELECT repeat('x', 1500000000)`", "SELECT repeat('x', 1500000000)")
run("`SELECT length(repeat('x', 1000000000))`", "SELECT length(repeat('x', 1000000000))")
run("`string_agg` over 10 GB", "SELECT length(string_agg(repeat('x', 1000), ',')) FROM generate_series(1, 10000000)")
run("sort of a 10^10-row cross join (statement_timeout 10 s)",
    "SELECT a.value * b.value AS v FROM generate_series(1::BIGINT, 100000) a(value), generate_series(1::BIGINT, 100000) b(value) ORDER BY v",
    setup="SET statement_timeout = '10s'")
run("`SET datafusion.execution.batch_size = 1000000000`", "SET datafusion.execution.batch_size = 1000000000")

# A client that hangs up mid-query: the server's CPU afterwards.
def cpu(proc):
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


probing = False
[p.join() for p in probes]
server_a = servers[0]
c = psycopg.connect(dsn(ports[0]), autocommit=True)
worker = threading.Thread(target=lambda: c.execute(
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000000000) SELECT count(*) FROM r"),
    daemon=True)
worker.start()
time.sleep(1)
busy0 = cpu(server_a)
time.sleep(1)
busy = cpu(server_a) - busy0
# The client vanishes as a killed process would: its socket shut down, without a Terminate.
socket.socket(fileno=os.dup(c.fileno())).shutdown(socket.SHUT_RDWR)
time.sleep(1)
idle0 = cpu(server_a)
time.sleep(2)
print(f"hang-up: {busy:.2f} s of CPU per second while the recursive query ran, "
      f"{(cpu(server_a) - idle0) / 2:.2f} per second after its client hung up")

for name, proc in zip("AB", servers):
    print(f"server {name}: {'up' if proc.poll() is None else 'DOWN'}, peak RSS {peak_mib(proc)} MiB")
for proc in servers:
    proc.kill()
