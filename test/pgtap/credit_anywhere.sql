-- pgTAP: credit values work from the default search_path.
--
-- The credit type's operators and aggregates live in pg_catalog (the type,
-- its functions and operator classes in schema credits), so a dashboard
-- with search_path = "$user", public can add, compare and sum credits, and
-- plain expressions on other types resolve exactly as they did before.
BEGIN;
SET LOCAL search_path = "$user", public;
SELECT plan(24);

CREATE TEMP TABLE amounts (a credits.credit, b credits.credit);
INSERT INTO amounts VALUES ('1.5', '0.25'), ('2', '1'), ('0.000001', '0');

SELECT is((SELECT sum(a) FROM amounts), '3.500001'::credits.credit, 'sum(credit) without credits on the search_path');
SELECT is((SELECT pg_typeof(sum(a))::text FROM amounts), 'credits.credit', '... and it is a credit');
SELECT is((SELECT min(a) FROM amounts), '0.000001'::credits.credit, 'min(credit)');
SELECT is((SELECT max(a) FROM amounts), '2'::credits.credit, 'max(credit)');
SELECT is((SELECT avg(b) FROM amounts), '0.416667'::credits.credit, 'avg(credit), rounded half away from zero');
SELECT is((SELECT count(*) FROM amounts WHERE a > 1), 2::bigint, 'credit > integer');
SELECT is((SELECT count(*) FROM amounts WHERE a >= b AND a <> b AND b < a AND b <= a), 3::bigint, 'comparisons of credits');
SELECT is((SELECT count(*) FROM amounts WHERE a = '2'), 1::bigint, 'credit = literal');
SELECT is((SELECT a + b FROM amounts WHERE a = 2), '3'::credits.credit, 'credit + credit');
SELECT is((SELECT a - b FROM amounts WHERE a = 2), '1'::credits.credit, 'credit - credit');
SELECT is((SELECT -a FROM amounts WHERE a = 2), '-2'::credits.credit, 'unary minus');
SELECT is((SELECT a * 3 FROM amounts WHERE a = 2), '6'::credits.credit, 'credit * integer');
SELECT is((SELECT 3 * a FROM amounts WHERE a = 2), '6'::credits.credit, 'integer * credit');
SELECT is((SELECT a / 4 FROM amounts WHERE a = 2), '0.5'::credits.credit, 'credit / integer');
SELECT throws_ok($$SELECT '9223372036854.775807'::credits.credit + '1'$$, '22003', NULL,
    'an overflow is still 22003');
SELECT throws_ok($$SELECT sum(x) FROM (VALUES ('9223372036854.775807'::credits.credit), ('1')) v(x)$$,
    '22003', NULL, 'a sum out of range is 22003');

-- plain expressions on other types resolve as before
SELECT is(pg_typeof(2 * 1.5)::text, 'numeric', '2 * 1.5 is still numeric');
SELECT is(pg_typeof(1.5 / 2::bigint)::text, 'numeric', '1.5 / 2::bigint is still numeric');
SELECT is(pg_typeof(2::int * 3::bigint)::text, 'bigint', 'integer * bigint is still bigint');
SELECT is(pg_typeof(sum(x))::text, 'bigint', 'sum(integer) is still bigint')
  FROM generate_series(1, 3) x;

-- where they live, and that indexes still serve them
SELECT is((SELECT count(*) FROM pg_operator
            WHERE oprnamespace = 'pg_catalog'::regnamespace
              AND 'credits.credit'::regtype IN (oprleft, oprright)), 12::bigint,
          'the 12 credit operators are in pg_catalog');
SELECT is((SELECT count(*) FROM pg_proc p JOIN pg_aggregate a ON a.aggfnoid = p.oid
            WHERE p.pronamespace = 'pg_catalog'::regnamespace
              AND p.proargtypes[0] = 'credits.credit'::regtype), 4::bigint,
          'sum, min, max and avg of credits are in pg_catalog');
SELECT is((SELECT count(*) FROM pg_amop
            WHERE amopopr = 'pg_catalog.=(credits.credit, credits.credit)'::regoperator), 2::bigint,
          'the = that resolves is the one of the btree and hash operator classes');
SELECT is((SELECT count(*) FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
            WHERE n.nspname = 'credits'), 0::bigint, 'no operator is left in schema credits');

SELECT * FROM finish();
ROLLBACK;
