"""Many clients of mixed reads and writes against a fresh server: statements served and memory.

    cargo build --release && python3 benches/load.py [CLIENTS] [SECONDS]

Each client runs 20% single-row INSERTs and 80% `count(*), sum(x)` over one of 8 tables (5,000
seed rows each), so every table gains a file per INSERT. Prints the server's RSS once warm, every
minute, at the end and after 30 s idle, with the live data files of one table. Needs psycopg
(`pip install "psycopg[binary]"`); Linux only (it reads /proc). Set BIN to measure another binary,
ARGS for more server flags (`ARGS="--auto-compact-files 0"` measures without compaction).
"""
import glob, json, os, random, socket, subprocess, sys, tempfile, threading, time

import psycopg

clients = int(sys.argv[1]) if len(sys.argv) > 1 else 64
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 600
binary = os.environ.get("BIN", os.path.join(os.path.dirname(__file__), "..", "target", "release", "hindsight"))
TABLES = 8

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
warehouse = tempfile.mkdtemp()
server = subprocess.Popen([binary, "serve", "--warehouse", warehouse, "--listen", f"127.0.0.1:{port}",
                           *os.environ.get("ARGS", "").split()],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
dsn = f"host=127.0.0.1 port={port} user=postgres"


def rss_mib():
    with open(f"/proc/{server.pid}/status") as f:
        return next(int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS"))


def live_files(table):
    """Data files in the table's latest version: adds minus removes over its JSON log."""
    live = set()
    for entry in sorted(glob.glob(f"{warehouse}/public/{table}/_delta_log/*.json")):
        with open(entry) as f:
            for line in f:
                action = json.loads(line)
                if "add" in action:
                    live.add(action["add"]["path"])
                elif "remove" in action:
                    live.discard(action["remove"]["path"])
    return len(live)


for _ in range(200):
    try:
        admin = psycopg.connect(dsn, autocommit=True)
        break
    except psycopg.OperationalError:
        time.sleep(0.1)
for t in range(TABLES):
    admin.execute(f"CREATE TABLE m{t} (id BIGINT, client BIGINT, x DOUBLE PRECISION, tag TEXT)")
    admin.execute(f"INSERT INTO m{t} SELECT value, -1, value / 7.0, 'seed' FROM generate_series(1, 5000) AS s(value)")

stop = time.time() + seconds
served = [0] * clients


def work(i):
    rng = random.Random(i)
    with psycopg.connect(dsn, autocommit=True) as c:
        while time.time() < stop:
            t = rng.randrange(TABLES)
            if rng.random() < 0.2:
                c.execute(f"INSERT INTO m{t} VALUES (%s, %s, %s, 'w')", (rng.randrange(10**6), i, 1.0))
            else:
                c.execute(f"SELECT count(*), sum(x) FROM m{t}").fetchall()
            served[i] += 1


threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
for th in threads:
    th.start()
time.sleep(min(10, seconds / 6))
print(f"warm: {rss_mib()} MiB", flush=True)
while time.time() < stop:
    time.sleep(min(60, max(0, stop - time.time())))
    print(f"{sum(served)} statements, m0 has {live_files('m0')} files: {rss_mib()} MiB", flush=True)
for th in threads:
    th.join()
print(f"end: {sum(served)} statements by {clients} clients in {seconds:.0f} s; {rss_mib()} MiB; "
      f"m0 has {live_files('m0')} files", flush=True)
time.sleep(30)
print(f"after 30 s idle: {rss_mib()} MiB")
server.terminate()
server.wait()
