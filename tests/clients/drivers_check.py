"""The Python data stack against a running hindsight: psycopg2, SQLAlchemy over psycopg 3 with
pandas, and polars through connectorx. Run by tests/it/clients.rs with the server's port as the
argument, on an empty warehouse. Each section says which library it exercises."""
import datetime
import io
import sys

port = int(sys.argv[1])
which = sys.argv[2]


def psycopg2_section():
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="hindsight", dbname="hindsight")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TABLE p2 (id BIGINT, name TEXT, score DOUBLE PRECISION, at TIMESTAMP)")
    # psycopg2 binds parameters on the client; quoting of ' and \ must survive the round trip.
    rows = [(i, f"o'brien\\{i}" if i % 2 else None, i / 4, datetime.datetime(2025, 1, 1, 0, i)) for i in range(20)]
    cur.executemany("INSERT INTO p2 VALUES (%s, %s, %s, %s)", rows)
    cur.execute("SELECT id, name, score, at FROM p2 WHERE id >= %(lo)s ORDER BY id", {"lo": 0})
    assert cur.fetchall() == rows
    assert cur.description[3].name == "at"

    buf = io.StringIO("".join(f"{i}\tcopied{i}\t{i}.5\t2025-02-01 00:00:00\n" for i in range(100, 600)))
    cur.copy_expert("COPY p2 FROM STDIN", buf)
    cur.copy_from(io.StringIO("600\t\\N\t1\t2025-03-01 00:00:00\n"), "p2", columns=("id", "name", "score", "at"))
    out = io.StringIO()
    cur.copy_expert("COPY (SELECT id, name FROM p2 WHERE id >= 599 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)", out)
    assert out.getvalue() == "id,name\n599,copied599\n600,\n", out.getvalue()
    cur.execute("SELECT count(*) FROM p2")
    assert cur.fetchone() == (521,)

    # Errors carry the SQLSTATE, and the connection goes on.
    try:
        cur.execute("SELECT * FROM no_such_table")
        raise AssertionError("expected an error")
    except psycopg2.errors.UndefinedTable as e:
        assert e.pgcode == "42P01"
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)

    # Outside autocommit psycopg2 wraps statements in BEGIN ... COMMIT.
    conn.autocommit = False
    cur.execute("INSERT INTO p2 VALUES (%s, %s, %s, %s)", (700, "tx", 0.0, datetime.datetime(2025, 4, 1)))
    conn.commit()
    cur.execute("SELECT name FROM p2 WHERE id = 700")
    assert cur.fetchone() == ("tx",)
    conn.commit()

    # rollback() undoes the block's writes, also after a failed statement aborted it.
    cur.execute("INSERT INTO p2 VALUES (%s, %s, %s, %s)", (701, "undone", 0.0, datetime.datetime(2025, 4, 2)))
    cur.execute("DELETE FROM p2 WHERE id < 100")
    try:
        cur.execute("SELECT 1 / 0")
        raise AssertionError("expected an error")
    except psycopg2.errors.DivisionByZero:
        pass
    try:
        cur.execute("SELECT 1")
        raise AssertionError("expected 25P02")
    except psycopg2.errors.InFailedSqlTransaction:
        pass
    conn.rollback()
    cur.execute("SELECT count(*), count(*) FILTER (WHERE id = 701) FROM p2")
    assert cur.fetchone() == (522, 0)
    conn.commit()
    conn.close()
    print("psycopg2 ok")


def sqlalchemy_section():
    import pandas as pd
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg://hindsight@127.0.0.1:{port}/hindsight")
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE sa_scores (id BIGINT, region TEXT, score DOUBLE PRECISION, label BOOLEAN)"))
        conn.execute(
            sa.text("INSERT INTO sa_scores VALUES (:id, :region, :score, :label)"),
            [{"id": i, "region": "north" if i % 3 else "south", "score": (i % 10) / 10, "label": i % 4 == 0} for i in range(200)],
        )
        conn.commit()
        assert sa.inspect(conn).has_table("sa_scores")
        assert "sa_scores" in sa.inspect(conn).get_table_names()
        columns = {c["name"]: str(c["type"]) for c in sa.inspect(conn).get_columns("sa_scores")}
        assert columns == {"id": "BIGINT", "region": "TEXT", "score": "DOUBLE PRECISION", "label": "BOOLEAN"}, columns

    df = pd.read_sql(
        sa.text("SELECT region, count(*) AS n, roc_auc(score, label) AS auc FROM sa_scores WHERE id < :n GROUP BY region ORDER BY region"),
        engine,
        params={"n": 200},
    )
    assert list(df["region"]) == ["north", "south"], df
    assert list(df["n"]) == [133, 67], df

    frame = pd.DataFrame({"k": [1, 2, 3], "v": ["a", None, "c"]})
    frame.to_sql("from_pandas", engine, index=False)
    back = pd.read_sql("SELECT k, v FROM from_pandas ORDER BY k", engine)
    assert back["k"].tolist() == [1, 2, 3] and back["v"].isna().tolist() == [False, True, False], back
    frame.to_sql("from_pandas", engine, index=False, if_exists="append")
    assert pd.read_sql("SELECT count(*) AS n FROM from_pandas", engine)["n"][0] == 6

    # A transaction that raises is rolled back: none of its writes land.
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO sa_scores VALUES (1000, 'west', 0.5, true)"))
            conn.execute(sa.text("DELETE FROM sa_scores WHERE region = 'south'"))
            raise RuntimeError("job failed halfway")
    except RuntimeError:
        pass
    assert pd.read_sql("SELECT count(*) AS n FROM sa_scores", engine)["n"][0] == 200
    print("sqlalchemy + pandas ok")


def polars_section():
    import polars as pl

    uri = f"postgresql://hindsight@127.0.0.1:{port}/hindsight"
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user="hindsight", dbname="hindsight", autocommit=True) as conn:
        conn.execute("CREATE TABLE pl_t (id BIGINT, name TEXT, x DOUBLE PRECISION, d DATE)")
        with conn.cursor().copy("COPY pl_t FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, None if i % 7 == 0 else f"n{i}", i * 0.5, datetime.date(2025, 1, 1) + datetime.timedelta(days=i % 30)))
    df = pl.read_database_uri("SELECT id, name, x, d FROM pl_t ORDER BY id", uri)
    assert df.shape == (1000, 4), df
    assert df["id"].sum() == 499500
    assert df["name"].null_count() == 143
    assert df["d"].dtype == pl.Date and df["d"][31] == datetime.date(2025, 1, 2)
    print("polars ok")


{"psycopg2": psycopg2_section, "sqlalchemy": sqlalchemy_section, "polars": polars_section}[which]()
