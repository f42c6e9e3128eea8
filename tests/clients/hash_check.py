"""An independent implementation of the dataset content hash (version 1, as the README defines
it), checked against what CREATE DATASET records, on random rows with NULLs of every type.
Run by tests/it/clients.rs with the server's port and a seed as arguments."""
import datetime
import json
import random
import struct
import sys

import blake3
import psycopg

port, seed = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
EPOCH = datetime.datetime(1970, 1, 1)


def encode(kind, v):
    if v is None:
        return b"\x00"
    if kind == "bigint":
        return b"\x01" + struct.pack("<q", v)
    if kind == "double precision":
        v = 0.0 if v == 0.0 else v
        return b"\x01" + struct.pack("<d", v)
    if kind == "boolean":
        return b"\x01" + bytes([1 if v else 0])
    if kind == "date":
        return b"\x01" + struct.pack("<q", (v - EPOCH.date()).days)
    if kind == "timestamp without time zone":
        delta = v - EPOCH
        micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        return b"\x01" + struct.pack("<q", micros)
    if kind == "text":
        b = v.encode()
        return b"\x01" + struct.pack("<Q", len(b)) + b
    raise ValueError(kind)


def content_hash(columns, rows):
    total = 0
    for row in rows:
        enc = b"".join(encode(c["type"], v) for c, v in zip(columns, row))
        total = (total + int.from_bytes(blake3.blake3(enc).digest()[:16], "little")) % (1 << 128)
    h = blake3.blake3(b"hindsight-dataset-hash-v1\n")
    for c in columns:
        h.update(f"{c['name']}\t{c['arrow_type']}\n".encode())
    h.update(struct.pack("<Q", len(rows)))
    h.update(total.to_bytes(16, "little"))
    return h.hexdigest()


def maybe(v):
    return None if rng.random() < 0.15 else v


with psycopg.connect(host="127.0.0.1", port=port, user="hindsight", dbname="hindsight", autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute("CREATE TABLE h (id BIGINT, x DOUBLE PRECISION, s TEXT, ok BOOLEAN, d DATE, at TIMESTAMP)")
    with cur.copy("COPY h FROM STDIN") as copy:
        for i in range(rng.randrange(1, 3000)):
            copy.write_row((
                maybe(rng.randrange(-(1 << 40), 1 << 40)),
                maybe(rng.choice([0.0, -0.0, rng.uniform(-1e6, 1e6)])),
                maybe(rng.choice(["", "a", "été", "x" * rng.randrange(50)])),
                maybe(rng.random() < 0.5),
                maybe(datetime.date(2020, 1, 1) + datetime.timedelta(days=rng.randrange(2000))),
                maybe(datetime.datetime(2025, 1, 1) + datetime.timedelta(microseconds=rng.randrange(10**13))),
            ))
    cur.execute("CREATE DATASET hd AS SELECT * FROM h WHERE id IS NULL OR id % 3 <> 0")
    cur.execute("SELECT output_schema, row_count, content_hash FROM hindsight.datasets WHERE name = 'hd'")
    schema, count, server_hash = cur.fetchone()
    columns = json.loads(schema)
    cur.execute("SELECT * FROM datasets.hd")
    rows = cur.fetchall()
    assert len(rows) == count, (len(rows), count)
    rng.shuffle(rows)
    mine = content_hash(columns, rows)
    assert mine == server_hash, (mine, server_hash)
    print(f"seed {seed}: {count} rows, hash {mine[:16]}... agrees")
