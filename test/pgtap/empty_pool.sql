-- pgTAP: debits of an empty pool.  Once a pool split into stripes is empty,
-- a debit charges nothing (a premium call runs short by its cost, a
-- fallback call is free) and counts the call and its shortfall on its
-- stripe instead of the pool row; a member with a cap still takes the pool
-- lock; the counters reach the pool row when the stripes are folded
-- (recharge) and the closed period when it rolls over.  The concurrency is
-- tested in test/isolation/specs/dry_pool.spec.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(22);

-- ep: 100 credits over 2 stripes, no thresholds, a 1-day period; gpt-4o of
-- 40000 input tokens costs 10, of 400000 costs 100
SELECT org_id FROM credits.create_org('ep', allowance_per_user => 100, period => '1 day');
UPDATE credits.orgs SET thresholds = '{}', stripes = 2 WHERE org_id = 'ep';
SELECT credits.enable_provider('ep', 'openai');
SELECT credits.add_member('ep', 'alice');
SELECT credits.add_member('ep', 'carol', allowance => 0, cap => 50);

CREATE FUNCTION pg_temp.stripe(n integer) RETURNS TABLE(funds credits.credit, calls bigint,
                                                       shortfall credits.credit) LANGUAGE sql AS $$
    SELECT s.funds, s.calls, s.shortfall FROM credits.pool_stripes s
     WHERE s.org_id = 'ep' AND s.stripe = n
$$;
CREATE FUNCTION pg_temp.pool() RETURNS TABLE(calls bigint, shortfall credits.credit) LANGUAGE sql AS $$
    SELECT p.calls, p.shortfall FROM credits.pools p WHERE p.org_id = 'ep'
$$;

-- emptied by one debit, the pool still gets its stripe rows
SELECT results_eq($$SELECT charged, available, exhausted
                      FROM credits.credit_debit('ep', 'alice', 'gpt-4o', 400000)$$,
    $$VALUES ('100'::credit, '0'::credit, true)$$, 'a debit of all 100 credits empties the pool');
SELECT results_eq($$SELECT count(*)::int, sum(funds) FROM credits.pool_stripes WHERE org_id = 'ep'$$,
    $$VALUES (2, '0'::credit)$$, '... which is split over 2 stripes with nothing in them');
SELECT results_eq('SELECT * FROM pg_temp.pool()', $$VALUES (1::bigint, '0'::credit)$$,
    '... and the pool row counts that call');

-- debits of the empty pool
SET LOCAL credits.stripe = 1;
SELECT results_eq($$SELECT charged, shortfall, available, exhausted
                      FROM credits.credit_debit('ep', 'alice', 'gpt-4o', 40000)$$,
    $$VALUES ('0'::credit, '10'::credit, '0'::credit, true)$$,
    'a premium call of the empty pool: nothing charged, short by its cost');
SELECT results_eq('SELECT * FROM pg_temp.stripe(1)', $$VALUES ('0'::credit, 1::bigint, '10'::credit)$$,
    '... counted on the session''s stripe');
SELECT results_eq('SELECT * FROM pg_temp.pool()', $$VALUES (1::bigint, '0'::credit)$$,
    '... not on the pool row');
SELECT results_eq($$SELECT model, charged, shortfall, exhausted
                      FROM credits.credit_debit('ep', 'alice', 'gpt-4o-mini', 40000)$$,
    $$VALUES ('gpt-4o-mini', '0'::credit, '0'::credit, true)$$,
    'a fallback call of the empty pool is free');
SELECT results_eq('SELECT * FROM pg_temp.stripe(1)', $$VALUES ('0'::credit, 2::bigint, '10'::credit)$$,
    '... and counted as a call without shortfall');
SELECT results_eq($$SELECT charged, shortfall FROM credits.credit_debit('ep', 'carol', 'gpt-4o', 40000)$$,
    $$VALUES ('0'::credit, '10'::credit)$$, 'a member with a cap runs short too');
SELECT results_eq('SELECT * FROM pg_temp.pool()', $$VALUES (2::bigint, '10'::credit)$$,
    '... counted on the pool row (the pool lock)');
SELECT results_eq($$SELECT count(*)::int, sum(shortfall) FROM credits.ledger
                     WHERE org_id = 'ep' AND kind = 'debit'$$,
    $$VALUES (4, '20'::credit)$$, 'the ledger has every call and its shortfall');
SELECT is_empty($$SELECT * FROM credits.verify('ep')$$, 'verify() is clean');
SELECT is((SELECT available FROM credits.allowed_models('ep', 'alice') WHERE model = 'gpt-4o'), false,
          'premium models are grayed out');

-- several in one transaction: the share lock is already held
SELECT results_eq($$SELECT charged, shortfall FROM credits.credit_debit('ep', 'alice', 'gpt-4o', 40000)$$,
    $$VALUES ('0'::credit, '10'::credit)$$, 'another premium call in the same transaction');

-- a recharge folds the stripes' counters into the pool row
SELECT is((SELECT available FROM credits.recharge('ep', '5')), '5'::credit, 'a recharge of 5');
SELECT results_eq('SELECT * FROM pg_temp.stripe(1)', $$VALUES ('0'::credit, 0::bigint, '0'::credit)$$,
    '... empties the stripe''s counters');
SELECT results_eq('SELECT * FROM pg_temp.pool()', $$VALUES (5::bigint, '30'::credit)$$,
    '... into the pool row');
SELECT results_eq($$SELECT charged, shortfall FROM credits.credit_debit('ep', 'alice', 'gpt-4o', 40000)$$,
    $$VALUES ('5'::credit, '5'::credit)$$, 'the pool is no longer empty: the last 5 are charged');

-- the empty pool's counters reach the closed period
SELECT results_eq($$SELECT charged, shortfall FROM credits.credit_debit('ep', 'alice', 'gpt-4o', 40000)$$,
    $$VALUES ('0'::credit, '10'::credit)$$, 'empty again: short');
SELECT is(credits.reset_due(now() + interval '1 day 1 second'), 1, 'the period rolls over');
SELECT results_eq($$SELECT calls, shortfall FROM credits.periods WHERE org_id = 'ep'$$,
    $$VALUES (7::bigint, '45'::credit)$$,
    '... and the closed period counts every call and shortfall, the stripes'' too');
SELECT is_empty($$SELECT * FROM credits.pool_stripes
                   WHERE org_id = 'ep' AND (calls <> 0 OR shortfall <> '0')$$,
                'the new period''s stripes count nothing yet');

SELECT * FROM finish();
ROLLBACK;
