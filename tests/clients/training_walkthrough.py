"""The README's training-job walkthrough, run against the demo warehouse: upload a spine with
COPY, fetch point-in-time features with historical_features, read them into pandas; then a
serving lookup with a prepared online_features statement. Usage: training_walkthrough.py PORT"""
import sys

PORT = sys.argv[1] if len(sys.argv) > 1 else "5433"

# --- README: training (begin) ---
import pandas as pd
import psycopg

conn = psycopg.connect(f"host=127.0.0.1 port={PORT} user=hindsight dbname=hindsight", autocommit=True)
cur = conn.cursor()

# 1. The spine: which applicant, at what moment, with which label. Uploaded with COPY.
spine = pd.DataFrame({
    "applicant_id": [982, 54, 544, 544],
    "ts": pd.to_datetime(["2025-02-13 00:04", "2025-02-21 03:55", "2025-03-05 21:50", "2025-06-30 00:00"]),
    "label": [0, 1, 0, 1],
})
cur.execute("CREATE TABLE IF NOT EXISTS training_spine (applicant_id BIGINT, ts TIMESTAMP, label INT)")
with cur.copy("COPY training_spine (applicant_id, ts, label) FROM STDIN") as copy:
    for row in spine.itertuples(index=False):
        copy.write_row((int(row.applicant_id), row.ts.to_pydatetime(), int(row.label)))

# 2. Point-in-time features: each spine row once, in spine order, with only what was known then.
cur.execute("""
    SELECT * FROM historical_features('SELECT * FROM training_spine',
                                      'applicant_spend.*', 'applicant_profile.income')
""")
train = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
print(train)

# 3. Serving: the latest values, from memory; the prepared statement is parsed once.
for applicant in (982, 54):
    cur.execute("SELECT * FROM online_features('applicant_profile', %s)", (applicant,), prepare=True)
    print(cur.fetchone())
# --- README: training (end) ---

# Checks (not in the README).
assert list(train.columns) == ["applicant_id", "ts", "label", "applicant_spend__total_spend",
                               "applicant_spend__transactions", "applicant_spend__last_category",
                               "applicant_profile__income"], list(train.columns)
assert len(train) == len(spine) and list(train.applicant_id) == list(spine.applicant_id), train
# Applicant 544 on 2025-06-30: their last transaction is more than 90 days (the TTL) old.
assert pd.isna(train.applicant_spend__total_spend.iloc[3]), train
assert train.applicant_spend__transactions.iloc[2] == 3, train
# The spend feature equals the sum of the applicant's transactions up to the spine time.
for i, row in train.iterrows():
    known = [r for r in cur.execute("""
        SELECT sum(amount) FROM transactions WHERE applicant_id = %s AND ts <= %s
    """, (int(row.applicant_id), row.ts.to_pydatetime())).fetchall()]
    if not pd.isna(row.applicant_spend__total_spend):
        assert abs(known[0][0] - row.applicant_spend__total_spend) < 1e-6, (row, known)
cur.execute("SELECT income FROM applicants WHERE applicant_id = 982")
income = cur.fetchone()[0]
cur.execute("SELECT * FROM online_features('applicant_profile', %s)", (982,), prepare=True)
assert cur.fetchone()[3] == income
print("ok")
