"""Writes the benchmark CSV: N rows of (id, user_id, ts, amount, category), seeded, so every
bench and every run reads the same data.  Usage: python3 gen_csv.py N PATH"""
import random
import sys

n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
cats = ["groceries", "travel", "electronics", "utilities", "restaurants"]
with open(path, "w") as f:
    for i in range(n):
        f.write(f"{i},{rng.randrange(100000)},2025-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00,{rng.random() * 500:.2f},{cats[i % 5]}\n")
