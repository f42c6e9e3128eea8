"""psycopg 3 against a running hindsight: COPY in and out (text and binary), parameters,
prepared statements. Run by tests/it/clients.rs with the server's port as the argument."""
import sys

import psycopg

port = int(sys.argv[1])
with psycopg.connect(host="127.0.0.1", port=port, user="hindsight", dbname="hindsight", autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute("CREATE TABLE py (id BIGINT, name TEXT, score DOUBLE PRECISION)")

    with cur.copy("COPY py FROM STDIN") as copy:
        for i in range(1000):
            copy.write_row((i, f"n{i}" if i != 3 else None, i / 2))

    cur.execute("SELECT count(*), sum(id) FROM py WHERE score >= %s", (0.0,))
    assert cur.fetchone() == (1000, 499500)

    with cur.copy("COPY (SELECT id, name, score FROM py ORDER BY id) TO STDOUT") as copy:
        text_rows = list(copy.rows())
    assert len(text_rows) == 1000
    assert text_rows[1] == ("1", "n1", "0.5"), text_rows[1]
    assert text_rows[3] == ("3", None, "1.5"), text_rows[3]

    with cur.copy("COPY (SELECT id, name, score FROM py ORDER BY id) TO STDOUT (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "text", "float8"])
        binary_rows = list(copy.rows())
    assert binary_rows[1] == (1, "n1", 0.5), binary_rows[1]
    assert binary_rows[3] == (3, None, 1.5), binary_rows[3]

    for _ in range(3):  # prepare=True: psycopg prepares it server-side and reuses it
        cur.execute("SELECT name FROM py WHERE id = %s", (7,), prepare=True)
        assert cur.fetchone() == ("n7",)

    cur.execute("SELECT version()")
    assert cur.fetchone()[0].startswith("PostgreSQL 16.")
print("psycopg ok")
