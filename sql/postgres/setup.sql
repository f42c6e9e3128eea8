-- The rows every query of the differential corpus reads, loaded into PostgreSQL 15 and into
-- hindsight alike. Types both spell the same way; values chosen to hit NULLs, ties, negative
-- numbers, month ends and duplicate rows.
CREATE TABLE customers (id BIGINT, name TEXT, region TEXT, signup DATE, score DOUBLE PRECISION, active BOOLEAN);
INSERT INTO customers VALUES
  (1, 'Ada', 'north', '2024-01-15', 0.91, true),
  (2, 'Ben', 'south', '2024-02-29', 0.42, true),
  (3, 'Cy', 'north', '2024-03-31', NULL, false),
  (4, 'Dee', 'east', '2024-12-31', 0.42, true),
  (5, 'Eve', NULL, '2025-01-01', 0.05, NULL),
  (6, 'Fay', 'south', '2025-06-30', 0.77, false);
CREATE TABLE orders (id BIGINT, customer_id BIGINT, amount DOUBLE PRECISION, quantity BIGINT, status TEXT, ordered_at TIMESTAMP);
INSERT INTO orders VALUES
  (101, 1, 120.5, 2, 'paid', '2025-01-03 09:15:00'),
  (102, 1, 80.0, 1, 'paid', '2025-01-17 18:40:30'),
  (103, 2, 15.25, 3, 'refunded', '2025-02-01 00:00:00'),
  (104, 2, 300.0, 1, 'paid', '2025-02-14 12:00:00'),
  (105, 3, 42.0, 7, 'pending', '2025-03-01 06:00:00'),
  (106, 4, 42.0, 2, 'paid', '2025-03-01 06:00:00'),
  (107, 4, -10.0, 1, 'refunded', '2025-03-15 23:59:59'),
  (108, 6, 999.99, 10, 'paid', '2025-04-30 14:30:00'),
  (109, NULL, 5.0, 1, 'pending', '2025-05-05 05:05:05'),
  (110, 1, 120.5, 2, 'paid', '2025-05-20 10:00:00');
CREATE TABLE events (id BIGINT, customer_id BIGINT, kind TEXT, payload TEXT, at TIMESTAMP);
INSERT INTO events VALUES
  (1, 1, 'login', '{"plan": "pro", "seats": 3}', '2025-01-03 09:00:00'),
  (2, 1, 'click', '{"page": "home"}', '2025-01-03 09:01:00'),
  (3, 2, 'login', '{"plan": "free", "seats": 1}', '2025-02-01 08:00:00'),
  (4, 3, 'logout', NULL, '2025-03-01 07:00:00'),
  (5, 4, 'login', '{"plan": "pro", "seats": 10, "tags": ["a", "b"]}', '2025-03-01 05:59:00'),
  (6, 4, 'click', '{"page": "pricing"}', '2025-03-01 06:01:00'),
  (7, 6, 'login', '{"plan": "team"}', '2025-04-30 14:00:00');
CREATE TABLE numbers (n BIGINT, x DOUBLE PRECISION, s TEXT);
INSERT INTO numbers VALUES (1, 1.5, 'a'), (1, 2.5, 'a'), (2, -0.5, 'b'), (3, NULL, NULL), (NULL, 0.0, 'c'), (5, 10.25, 'e');
