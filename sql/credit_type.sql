--
-- credit_type: the credits.credit type (signed 64-bit count of micro-credits,
-- 6 decimal places).  Errors are shown by SQLSTATE only:
--   22P02 bad syntax or more than 6 non-zero decimals in text
--   22003 out of range / overflow
--   22023 numeric with more than 6 non-zero decimals
--   0A000 NaN or infinity numeric
--   22012 division by zero
--
\set VERBOSITY sqlstate
-- the credits operators are visible unqualified from here on; section 6
-- checks that this does not change the meaning of plain expressions
SET search_path = public, credits;
SET extra_float_digits = 0;
SET max_parallel_workers_per_gather = 0;

--
-- 1. text input and output
--
-- output is the shortest exact decimal form of the input
SELECT ord, '"' || input || '"' AS input, input::credit AS value
FROM (VALUES
    (1, '12.5'),
    (2, '12.50'),
    (3, '0'),
    (4, '0.000000'),
    (5, '-3.000001'),
    (6, '100'),
    (7, '100.000'),
    (8, '0.1'),
    (9, '1.0001'),
    (10, '-0.000001'),
    (11, '007.250'),
    (12, '  1.5  '),
    (13, '+1.5'),
    (14, '.5'),
    (15, '-.5'),
    (16, '5.'),
    (17, '1.50000000'),
    (18, '-1.1234560000000000000'),
    (19, '-0'),
    (20, '-0.0'),
    (21, '+0'),
    (22, '000000000000000000000000000001')
) AS v(ord, input)
ORDER BY ord;

-- other whitespace around the number is accepted too
SELECT E'\t1.5\n'::credit = '1.5' AS ok;
-- text -> credit -> text is the identity on shortest forms
SELECT s, s::credit::text = s AS ok
FROM unnest(ARRAY['0', '1', '-1', '0.000001', '-0.000001', '12.5', '-3.000001',
                  '9223372036854.775807', '-9223372036854.775808']) AS s
ORDER BY s::credit;

-- the extremes, and one micro-credit beyond each
SELECT '9223372036854.775807'::credit AS max_credit,
       '-9223372036854.775808'::credit AS min_credit;
SELECT '9223372036854.775808'::credit;
SELECT '-9223372036854.775809'::credit;
SELECT '9223372036855'::credit;
SELECT '-9223372036855'::credit;
SELECT '99999999999999999999999999999'::credit;
SELECT '-99999999999999999999999999999'::credit;

-- junk and over-precise text: 22P02, never rounded
SELECT 'abc'::credit;
SELECT ''::credit;
SELECT ' '::credit;
SELECT '.'::credit;
SELECT '-'::credit;
SELECT '+'::credit;
SELECT '-.'::credit;
SELECT '1e5'::credit;
SELECT '1,000'::credit;
SELECT '1 000'::credit;
SELECT '1.2.3'::credit;
SELECT '- 1'::credit;
SELECT '--1'::credit;
SELECT '+-1'::credit;
SELECT '0x10'::credit;
SELECT 'NaN'::credit;
SELECT 'Infinity'::credit;
SELECT '1.0000001'::credit;
SELECT '0.0000005'::credit;
SELECT '-1.0000001'::credit;
SELECT '1.0000000000001'::credit;

-- NULL passes through
SELECT NULL::credit IS NULL AS ok;

--
-- 2. binary output (send): big-endian int8 of micro-credits
--
SELECT credit_send('1.5') AS one_and_a_half,
       credit_send('-0.000001') AS minus_one_micro,
       credit_send('9223372036854.775807') AS max_credit,
       credit_send('-9223372036854.775808') AS min_credit;

--
-- 3. arithmetic
--
SELECT '1.5'::credit + '2.25' AS "3.75",
       '1.5'::credit - '2.25' AS "-0.75",
       '0.000001'::credit + '0.999999' AS "1",
       -'1.5'::credit AS "-1.5",
       -'-1.5'::credit AS "1.5",
       -'0'::credit AS "0";
SELECT '1.5'::credit * 3 AS "4.5",
       3 * '1.5'::credit AS "4.5",
       '-1.5'::credit * -3 AS "4.5",
       '0.000001'::credit * 1000000 AS "1",
       '12.345678'::credit * 0 AS "0",
       '2.5'::credit * 4000000000 AS "10000000000";
-- integer operands of + and - are whole credits (implicit cast)
SELECT '1.5'::credit + 2 AS "3.5", 2 + '1.5'::credit AS "3.5",
       '1.5'::credit - 2 AS "-0.5", 2 - '1.5'::credit AS "0.5";

-- credit / bigint, rounded half away from zero to the micro-credit
SELECT n, d, n / d AS quotient
FROM (VALUES
    (1, '1'::credit, 3::bigint),
    (2, '2', 3),
    (3, '-2', 3),
    (4, '2', -3),
    (5, '-2', -3),
    (6, '10', 4),
    (7, '0.000005', 2),
    (8, '-0.000005', 2),
    (9, '0.000005', -2),
    (10, '0.000001', 2),
    (11, '-0.000001', 2),
    (12, '0.000001', 3),
    (13, '-0.000001', 3),
    (14, '0.000002', 4),
    (15, '0.000003', -2),
    (16, '0.000007', 7),
    (17, '0', 5),
    (18, '9223372036854.775807', 2),
    (19, '-9223372036854.775808', 2),
    (20, '9223372036854.775807', 9223372036854775807),
    (21, '-9223372036854.775808', 9223372036854775807),
    (22, '9223372036854.775807', (-9223372036854775808)::bigint),
    (23, '-9223372036854.775808', (-9223372036854775808)::bigint),
    (24, '9223372036854.775807', -1),
    (25, '-9223372036854.775808', 1)
) AS v(ord, n, d)
ORDER BY ord;
-- the rounding agrees with numeric's round(x, 6) (half away from zero)
SELECT count(*) AS cases,
       count(*) FILTER (WHERE (n / d)::numeric <> round(n::numeric / d::numeric, 6)) AS mismatches
FROM (SELECT n::credit AS n, d::bigint AS d
      FROM generate_series(-25, 25) AS n, generate_series(-7, 7) AS d
      WHERE d <> 0) AS s;
SELECT count(*) AS cases,
       count(*) FILTER (WHERE (c / d)::numeric <> round(c::numeric / d::numeric, 6)) AS mismatches
FROM (SELECT (n * '0.000001'::credit) AS c, d::bigint AS d
      FROM generate_series(-25, 25) AS n, generate_series(-7, 7) AS d
      WHERE d <> 0) AS s;

-- division by zero
SELECT '1'::credit / 0;
SELECT '0'::credit / 0;

-- overflow at the extremes: 22003
SELECT '9223372036854.775807'::credit + '0.000001';
SELECT '-9223372036854.775808'::credit - '0.000001';
SELECT '-9223372036854.775808'::credit + '-0.000001';
SELECT '9223372036854.775807'::credit - '-0.000001';
SELECT '9223372036854.775807'::credit - '-9223372036854.775808';
SELECT '-9223372036854.775808'::credit - '9223372036854.775807';
SELECT '0'::credit - '-9223372036854.775808';
SELECT -'-9223372036854.775808'::credit;
SELECT '9223372036854.775807'::credit * 2;
SELECT 2 * '9223372036854.775807'::credit;
SELECT '-9223372036854.775808'::credit * -1;
SELECT -1 * '-9223372036854.775808'::credit;
SELECT '1'::credit * 9223372036855;
SELECT '0.000002'::credit * 4611686018427387904;
SELECT '-9223372036854.775808'::credit / -1;
-- ... and the largest results that still fit
SELECT '9223372036854.775807'::credit + '-9223372036854.775808' AS "-0.000001",
       -'9223372036854.775807'::credit AS "-max",
       '9223372036854.775807'::credit * -1 AS "-max",
       '0.000001'::credit * 9223372036854775807 AS "max",
       '-0.000001'::credit * 9223372036854775807 AS "-max",
       '0.000001'::credit * (-9223372036854775808)::bigint AS "min",
       '-9223372036854.775807'::credit - '0.000001' AS "min",
       '9223372036854.775806'::credit + '0.000001' AS "max";

--
-- 4. casts
--
SELECT castsource::regtype AS source, casttarget::regtype AS target,
       CASE castcontext WHEN 'i' THEN 'implicit' WHEN 'a' THEN 'assignment'
                        WHEN 'e' THEN 'explicit' END AS context
FROM pg_cast
WHERE castsource = 'credit'::regtype OR casttarget = 'credit'::regtype
ORDER BY castsource::regtype::text, casttarget::regtype::text;

-- numeric -> credit is exact
SELECT 1.5::credit AS "1.5",
       1.50000000::credit AS "1.5",
       (-0.000001)::credit AS "-0.000001",
       1.0000000::credit AS "1",
       0.000000000000::credit AS "0",
       9223372036854.775807::credit AS "max",
       (-9223372036854.775808)::credit AS "min";
SELECT 1.0000001::credit;
SELECT (-0.0000001)::credit;
SELECT 123.4567891::credit;
SELECT 1.00000000000000000001::credit;
SELECT 9223372036854.775808::credit;
SELECT (-9223372036854.775809)::credit;
SELECT 1e30::credit;
SELECT 'NaN'::numeric::credit;
SELECT 'Infinity'::numeric::credit;
SELECT '-Infinity'::numeric::credit;

-- credit -> numeric is exact
SELECT '12.5'::credit::numeric AS "12.5",
       '-0.000001'::credit::numeric AS "-0.000001",
       '9223372036854.775807'::credit::numeric AS "max",
       '-9223372036854.775808'::credit::numeric AS "min";

-- integers -> credit: whole credits
SELECT 7::credit AS "7",
       (-7)::credit AS "-7",
       2147483647::credit AS "2147483647",
       (-2147483648)::credit AS "-2147483648",
       9223372036854::bigint::credit AS "9223372036854",
       (-9223372036854)::bigint::credit AS "-9223372036854";
SELECT 9223372036855::bigint::credit;
SELECT (-9223372036855)::bigint::credit;
SELECT 9223372036854775807::credit;

-- credit -> bigint rounds half away from zero, exactly as numeric -> bigint
SELECT c, c::bigint AS whole, c::bigint = c::numeric::bigint AS same_as_numeric
FROM unnest(ARRAY['2.5', '-2.5', '2.4999', '-2.4999', '2.500001', '0.5', '-0.5',
                  '0.499999', '-0.499999', '0', '3', '-3',
                  '9223372036854.775807', '-9223372036854.775808']::credit[]) AS c
ORDER BY c;

-- the assignment casts work on assignment
CREATE TABLE ct_assign (n numeric, b bigint);
INSERT INTO ct_assign VALUES ('1.25'::credit, '1.5'::credit), ('-0.000001'::credit, '-2.5'::credit);
SELECT n, b FROM ct_assign ORDER BY n;
DROP TABLE ct_assign;

-- literals as arguments of a credit function: integer literals convert
-- implicitly; a numeric literal needs quotes or a cast (numeric -> credit is
-- an assignment cast, see the README)
CREATE FUNCTION ct_double(credit) RETURNS credit
    LANGUAGE sql IMMUTABLE STRICT AS 'SELECT $1 * 2';
SELECT ct_double(100) AS "200",
       ct_double(-3) AS "-6",
       ct_double(5000000000) AS "10000000000",
       ct_double(2.5::credit) AS "5",
       ct_double('0.000001') AS "0.000002",
       ct_double('1.25') AS "2.5";
SELECT ct_double(2.5);
SELECT ct_double(0.0000001::credit);
SELECT ct_double(9223372036855);
SELECT ct_double('4611686018427.387904');
DROP FUNCTION ct_double(credit);

--
-- 5. comparisons, ordering and round trips over a sample of values
--
CREATE TABLE ct_sample (c credit);
INSERT INTO ct_sample VALUES
    ('12.5'), ('-0.000001'), ('9223372036854.775807'), ('0'), ('1'),
    ('-9223372036854.775808'), ('0.000001'), ('-1'), ('1.5'), ('-0.5'),
    ('9223372036854.775806'), ('100'), ('-9223372036854.775807'), ('0.5'), (NULL);

SELECT c FROM ct_sample ORDER BY c;
SELECT c FROM ct_sample ORDER BY c DESC NULLS LAST;
-- the order is numeric order
SELECT array_agg(c ORDER BY c) = array_agg(c ORDER BY c::numeric) AS ok FROM ct_sample;
-- every operator agrees with numeric on every pair
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE (a.c = b.c) <> (a.c::numeric = b.c::numeric)
                           OR (a.c <> b.c) <> (a.c::numeric <> b.c::numeric)
                           OR (a.c < b.c) <> (a.c::numeric < b.c::numeric)
                           OR (a.c <= b.c) <> (a.c::numeric <= b.c::numeric)
                           OR (a.c > b.c) <> (a.c::numeric > b.c::numeric)
                           OR (a.c >= b.c) <> (a.c::numeric >= b.c::numeric)
                           OR credit_cmp(a.c, b.c) <> sign(a.c::numeric - b.c::numeric))
           AS mismatches
FROM ct_sample a, ct_sample b
WHERE a.c IS NOT NULL AND b.c IS NOT NULL;
-- text and numeric round trips are the identity
SELECT count(*) AS n,
       count(*) FILTER (WHERE c::text::credit = c) AS text_ok,
       count(*) FILTER (WHERE c::numeric::credit = c) AS numeric_ok
FROM ct_sample WHERE c IS NOT NULL;
-- comparisons with literals of other types
SELECT '1.5'::credit = 1.5::credit AS t1,
       '1.5'::credit = '1.500000' AS t2,
       '-0'::credit = 0 AS t3,
       '0.000001'::credit > 0 AS t4,
       '-0.000001'::credit < 0 AS t5,
       '3'::credit = 3 AS t6,
       '2.999999'::credit < 3 AS t7,
       '-9223372036854.775808'::credit < '9223372036854.775807' AS t8,
       '1.5'::credit <> '1.500001' AS t9,
       '1.5'::credit BETWEEN 1 AND 2 AS t10;
-- a numeric literal compared with a credit needs quotes (42883 otherwise)
SELECT '1.5'::credit > 0.5;
SELECT c FROM ct_sample WHERE c > '0.5' AND c <= 100 ORDER BY c;
SELECT c FROM ct_sample WHERE c IN (1, '1.5', -1, 7) ORDER BY c;

--
-- 6. with credits on search_path plain expressions keep their meaning
--
SHOW search_path;
SELECT 2 * 1.5 AS a, 1.5 * 2 AS b, 1.5 / 2 AS c, 2 + 1.5 AS d, 1 + 1 AS e,
       10 / 4 AS f, 2.5 - 1 AS g, -1.5 AS h;
SELECT pg_typeof(2 * 1.5) AS a, pg_typeof(1.5 * 2) AS b, pg_typeof(1.5 / 2) AS c,
       pg_typeof(2 + 1.5) AS d, pg_typeof(1 + 1) AS e, pg_typeof(10 / 4) AS f,
       pg_typeof(2.5 - 1) AS g, pg_typeof(-1.5) AS h;
SELECT sum(x) AS sum, pg_typeof(sum(x)) AS sum_type, avg(x) AS avg,
       min(x) AS min, pg_typeof(min(x)) AS min_type
FROM (VALUES (1.5), (2.5)) AS v(x);
SELECT sum(x) AS sum, pg_typeof(sum(x)) AS sum_type FROM generate_series(1, 3) AS x;
-- numeric with bigint stays numeric arithmetic
SELECT 1.5 / 2::bigint AS a, 1.5 * 2::bigint AS b, 2::bigint * 1.5 AS c,
       pg_typeof(1.5 / 2::bigint) AS t;
SELECT sum(x) / count(*) AS mean FROM (VALUES (1.5), (2.5)) AS v(x);

--
-- 7. aggregates
--
SELECT sum(c) AS sum, min(c) AS min, max(c) AS max, avg(c) AS avg,
       pg_typeof(sum(c)) AS sum_type, pg_typeof(avg(c)) AS avg_type
FROM (VALUES ('1.5'::credit), ('2.25'), ('-0.75'), (NULL)) AS v(c);
-- empty input: all NULL
SELECT sum(c) IS NULL AS sum_null, avg(c) IS NULL AS avg_null,
       min(c) IS NULL AS min_null, max(c) IS NULL AS max_null
FROM ct_sample WHERE false;
SELECT sum(c) IS NULL AS sum_null, avg(c) IS NULL AS avg_null
FROM ct_sample WHERE c IS NULL;
-- avg rounds half away from zero to the micro-credit
SELECT avg(c) AS "0.000002" FROM (VALUES ('0.000001'::credit), ('0.000002')) AS v(c);
SELECT avg(c) AS "-0.000002" FROM (VALUES ('-0.000001'::credit), ('-0.000002')) AS v(c);
SELECT avg(c) AS "0.000001" FROM (VALUES ('0.000001'::credit), ('0.000001'), ('0.000002')) AS v(c);
SELECT avg(c) AS "0.000002" FROM (VALUES ('0.000001'::credit), ('0.000002'), ('0.000002')) AS v(c);
SELECT avg(c) AS "0.333333" FROM (VALUES ('1'::credit), ('0'), ('0')) AS v(c);
SELECT avg(c) AS "0.666667" FROM (VALUES ('1'::credit), ('1'), ('0')) AS v(c);
SELECT avg(c) AS "-0.666667" FROM (VALUES ('-1'::credit), ('-1'), ('0')) AS v(c);
-- extremes
SELECT min(c) AS min, max(c) AS max FROM ct_sample;
SELECT avg(c) AS "-0.000001"
FROM (VALUES ('9223372036854.775807'::credit), ('-9223372036854.775808')) AS v(c);
SELECT avg(c) AS "max/2"
FROM (VALUES ('9223372036854.775807'::credit), ('0')) AS v(c);
SELECT avg(c) AS "min/2"
FROM (VALUES ('-9223372036854.775808'::credit), ('0')) AS v(c);
SELECT avg(c) AS "max" FROM (VALUES ('9223372036854.775807'::credit)) AS v(c);
SELECT sum(c) AS "-0.000001"
FROM (VALUES ('9223372036854.775807'::credit), ('-9223372036854.775808')) AS v(c);
-- sum overflow
SELECT sum(c) FROM (VALUES ('9223372036854.775807'::credit), ('0.000001')) AS v(c);
-- sum and avg add up in 128 bits: only a result out of range is an error,
-- whatever the order of the rows
SELECT sum(c ORDER BY o) AS "9223372036854.775807"
  FROM (VALUES (1, '9223372036854.775807'::credit), (2, '0.000001'), (3, '-0.000001')) AS v(o, c);
SELECT avg(c) AS "9223372036854.775807"
  FROM (VALUES ('9223372036854.775807'::credit), ('9223372036854.775807')) AS v(c);
SELECT avg(c) AS "-4611686018427.887904"
  FROM (VALUES ('-9223372036854.775808'::credit), ('-1')) AS v(c);
SELECT sum(c) FROM (VALUES ('-9223372036854.775808'::credit), ('-0.000001')) AS v(c);
SELECT sum(c) FROM (SELECT '1000000000000'::credit FROM generate_series(1, 10)) AS v(c);
-- GROUP BY a credit: equal amounts written differently form one group
SELECT c, count(*) AS n
FROM (VALUES ('1.5'::credit), ('1.50'), ('01.500000'), ('-0'), ('0'), ('2')) AS v(c)
GROUP BY c ORDER BY c;
SELECT count(DISTINCT c) AS "3"
FROM (VALUES ('1.5'::credit), ('1.50'), ('01.500000'), ('-0'), ('0'), ('2')) AS v(c);

--
-- 8. COPY binary round trip (send and recv)
--
CREATE TABLE ct_copy_in (id int, c credit);
INSERT INTO ct_copy_in SELECT row_number() OVER (ORDER BY c NULLS FIRST), c FROM ct_sample;
COPY ct_copy_in TO '/tmp/credit_type.bin' WITH (FORMAT binary);
CREATE TABLE ct_copy_out (id int, c credit);
COPY ct_copy_out FROM '/tmp/credit_type.bin' WITH (FORMAT binary);
SELECT (SELECT count(*) FROM ct_copy_in) AS rows_in,
       (SELECT count(*) FROM ct_copy_out) AS rows_out;
SELECT count(*) AS differences FROM (
    (SELECT * FROM ct_copy_in EXCEPT SELECT * FROM ct_copy_out)
    UNION ALL
    (SELECT * FROM ct_copy_out EXCEPT SELECT * FROM ct_copy_in)) AS d;
SELECT id, c FROM ct_copy_out ORDER BY id;
DROP TABLE ct_copy_in, ct_copy_out;

--
-- 9. indexes, joins and grouping plans
--
-- c = i * 0.25 for i in 1..10000, so c is 0.25 .. 2500; k = (i % 4) * 0.5
CREATE TABLE ct_big (i int, c credit, k credit);
INSERT INTO ct_big
SELECT i, i * '0.25'::credit, (i % 4) * '0.5'::credit FROM generate_series(1, 10000) AS i;
SELECT count(*) AS n, min(c) AS min, max(c) AS max, sum(c) AS sum, avg(c) AS avg FROM ct_big;
CREATE INDEX ct_big_c_btree ON ct_big (c);
VACUUM ANALYZE ct_big;

SET enable_seqscan = off;
SET enable_bitmapscan = off;
-- btree range scan: i = 40 .. 50
EXPLAIN (COSTS OFF)
SELECT c FROM ct_big WHERE c BETWEEN 10 AND '12.5' ORDER BY c;
SELECT c FROM ct_big WHERE c BETWEEN 10 AND '12.5' ORDER BY c;
EXPLAIN (COSTS OFF)
SELECT count(*), sum(c) FROM ct_big WHERE c > 2499 AND c < '2499.75';
SELECT count(*) AS "2", sum(c) AS "4998.75" FROM ct_big WHERE c > 2499 AND c < '2499.75';
-- btree ordered scan at both ends
SELECT c FROM ct_big ORDER BY c LIMIT 3;
SELECT c FROM ct_big ORDER BY c DESC LIMIT 3;

-- hash index: equality
DROP INDEX ct_big_c_btree;
CREATE INDEX ct_big_c_hash ON ct_big USING hash (c);
EXPLAIN (COSTS OFF)
SELECT i, c FROM ct_big WHERE c = '100.25';
SELECT i, c FROM ct_big WHERE c = '100.25';
SELECT count(*) AS "0" FROM ct_big WHERE c = '100.250001';
RESET enable_seqscan;
RESET enable_bitmapscan;

-- hash join on two credit columns: ct_big2.c = j * 0.5 for j in 1..5000
-- matches exactly the 5000 even i of ct_big
CREATE TABLE ct_big2 (j int, c credit);
INSERT INTO ct_big2 SELECT j, j * '0.5'::credit FROM generate_series(1, 5000) AS j;
ANALYZE ct_big2;
SET enable_mergejoin = off;
SET enable_nestloop = off;
EXPLAIN (COSTS OFF)
SELECT count(*), sum(a.c) FROM ct_big a JOIN ct_big2 b ON a.c = b.c;
SELECT count(*) AS "5000", sum(a.c) AS "6251250",
       bool_and(a.i = 2 * b.j) AS pairs_ok
FROM ct_big a JOIN ct_big2 b ON a.c = b.c;
RESET enable_mergejoin;
RESET enable_nestloop;

-- grouping by a credit column, hashed and sorted; the credit aggregates
-- agree with numeric ones (numeric's round is half away from zero)
SET enable_sort = off;
EXPLAIN (COSTS OFF)
SELECT k, count(*), sum(c), min(c), max(c), avg(c) FROM ct_big GROUP BY k ORDER BY k;
SELECT k, count(*), sum(c), min(c), max(c), avg(c),
       sum(c)::numeric = sum(c::numeric) AND avg(c)::numeric = round(avg(c::numeric), 6) AS ok
FROM ct_big GROUP BY k ORDER BY k;
RESET enable_sort;
SET enable_hashagg = off;
EXPLAIN (COSTS OFF)
SELECT k, count(*), sum(c), min(c), max(c), avg(c) FROM ct_big GROUP BY k ORDER BY k;
SELECT k, count(*), sum(c), min(c), max(c), avg(c),
       sum(c)::numeric = sum(c::numeric) AND avg(c)::numeric = round(avg(c::numeric), 6) AS ok
FROM ct_big GROUP BY k ORDER BY k;
RESET enable_hashagg;

DROP TABLE ct_big, ct_big2, ct_sample;
RESET search_path;
