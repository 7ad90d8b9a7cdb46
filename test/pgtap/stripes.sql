-- pgTAP: escrow stripes.  A pool is one balance until its debits contend
-- (the growth itself is in test/isolation/specs/stripe_growth.spec);
-- orgs.stripes fixes the count; lowering it folds the extra stripes in; a
-- new period starts as one balance again; a wait is forgotten every 4 of
-- the pool's calls, so only waits close together split it; debits in one statement each see
-- the stripe as the one before left it; credits.max_stripes bounds the
-- growth; verify() catches a stripe beyond the count that is not empty.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(59);

-- st: 1000 credits, no thresholds, a 1-day period; gpt-4o of 40000 input
-- tokens costs 10, of 2000000 costs 500
SELECT org_id FROM credits.create_org('st', allowance_per_user => 1000, period => '1 day');
UPDATE credits.orgs SET thresholds = '{}' WHERE org_id = 'st';
SELECT credits.enable_provider('st', 'openai');
SELECT credits.add_member('st', 'alice');

CREATE FUNCTION pg_temp.debit(tokens bigint) RETURNS credits.credit LANGUAGE sql AS $$
    SELECT charged FROM credits.credit_debit('st', 'alice', 'gpt-4o', tokens)
$$;
CREATE FUNCTION pg_temp.stripes() RETURNS TABLE(stripe integer, funds credits.credit,
                                                used credits.credit) LANGUAGE sql AS $$
    SELECT s.stripe, s.funds, s.used FROM credits.pool_stripes s
     WHERE s.org_id = 'st' ORDER BY s.stripe
$$;

-- one balance
SELECT is((SELECT stripes FROM credits.pools WHERE org_id = 'st'), 0, 'a new pool is one balance');
SELECT is(pg_temp.debit(40000), '10'::credit, 'a debit of an unstriped pool');
SELECT is((SELECT stripes FROM credits.pools WHERE org_id = 'st'), 0,
          'a debit that did not wait leaves the pool one balance');
SELECT is((SELECT count(*) FROM credits.pool_stripes WHERE org_id = 'st')::int, 0,
          '... and writes no stripe');
SELECT is((SELECT allowance_used FROM credits.pools WHERE org_id = 'st'), '10'::credit,
          '... but the pool row');

-- a fixed count
UPDATE credits.orgs SET stripes = 4 WHERE org_id = 'st';
SELECT is(pg_temp.debit(40000), '10'::credit, 'orgs.stripes = 4: a debit');
SELECT is((SELECT stripes FROM credits.pools WHERE org_id = 'st'), 4, '... splits the pool over 4 stripes');
SELECT results_eq('SELECT * FROM pg_temp.stripes()',
    $$VALUES (0, '245'::credit, '0'::credit), (1, '245', '0'), (2, '245', '0'), (3, '245', '0')$$,
    '... each escrowed a quarter of the 980 left');
SET LOCAL credits.stripe = 1;
SELECT is(pg_temp.debit(40000), '10'::credit, 'a debit that fits its stripe');
SELECT results_eq('SELECT funds, used FROM pg_temp.stripes() WHERE stripe = 1',
    $$VALUES ('235'::credit, '10'::credit)$$, '... is charged to that stripe');
SELECT is((SELECT allowance_used FROM credits.pools WHERE org_id = 'st'), '20'::credit,
          '... not to the pool row');
SELECT is((SELECT available FROM credits.pool_status WHERE org_id = 'st'), '970'::credit,
          'pool_status counts what the stripes used');
SELECT is((SELECT available FROM credits.allowed_models('st') LIMIT 1), true,
          'allowed_models reads the striped pool');
SET LOCAL credits.stripe = 5;
SELECT is(pg_temp.debit(40000), '10'::credit, 'credits.stripe beyond the count wraps around');
SELECT results_eq('SELECT funds, used FROM pg_temp.stripes() WHERE stripe = 1',
    $$VALUES ('225'::credit, '20'::credit)$$, '... to stripe 5 % 4 = 1');
RESET credits.stripe;

-- lowering the count: the next slow-path debit folds every stripe in and
-- empties the ones beyond the new count
UPDATE credits.orgs SET stripes = 2 WHERE org_id = 'st';
SELECT is(pg_temp.debit(2000000), '500'::credit, 'orgs.stripes = 2: a debit larger than a stripe');
SELECT results_eq('SELECT * FROM pg_temp.stripes()',
    $$VALUES (0, '230'::credit, '0'::credit), (1, '230', '0'), (2, '0', '0'), (3, '0', '0')$$,
    '... escrows 2 stripes and empties the others');
SELECT results_eq($$SELECT allowance_used, available FROM credits.pool_status WHERE org_id = 'st'$$,
    $$VALUES ('540'::credit, '460'::credit)$$, '... and the pool is exact');
SELECT is_empty($$SELECT * FROM credits.verify('st')$$, 'verify() is clean');

-- a new period starts as one balance
UPDATE credits.orgs SET stripes = NULL WHERE org_id = 'st';
SELECT is(credits.reset_due(now() + interval '1 day 1 second'), 1, 'the period rolls over');
SELECT results_eq($$SELECT stripes, allowance_used FROM credits.pools WHERE org_id = 'st'$$,
    $$VALUES (0, '0'::credit)$$, '... into one balance');
SELECT is_empty($$SELECT * FROM pg_temp.stripes() WHERE funds <> '0' OR used <> '0'$$,
                '... with every stripe empty');
SELECT is_empty($$SELECT * FROM credits.verify('st')$$, 'verify() is clean after the rollover');

-- many debits in one statement: each is charged to the stripe as the one
-- before left it (150 versions of one row: past a page, so not all HOT)
UPDATE credits.orgs SET stripes = 1 WHERE org_id = 'st';
SELECT is(pg_temp.debit(4000), '1'::credit, 'orgs.stripes = 1: a debit escrows one stripe');
SELECT is((SELECT sum(d.charged)
             FROM generate_series(1, 150) g,
                  LATERAL credits.credit_debit('st', 'alice', 'gpt-4o', 4000 + 0 * g) d),
          '150'::credit, '150 debits in one statement are all charged');
SELECT results_eq('SELECT funds, used FROM pg_temp.stripes() WHERE stripe = 0',
    $$VALUES ('849'::credit, '150'::credit)$$, '... to the stripe, one after the other');
SELECT is((SELECT available FROM credits.pool_status WHERE org_id = 'st'), '849'::credit,
          '... and the pool is exact');
SELECT is_empty($$SELECT * FROM credits.verify('st')$$, 'verify() is clean after them');
CREATE EXTENSION amcheck;
SELECT lives_ok($$SELECT bt_index_check('credits.pool_stripes_pkey', heapallindexed => true)$$,
                'every version of the stripe is indexed (amcheck)');

-- bounds
SELECT throws_ok($$UPDATE credits.orgs SET stripes = 33 WHERE org_id = 'st'$$, '23514', NULL,
                 'orgs.stripes above 32: 23514');
SELECT throws_ok($$SET LOCAL credits.max_stripes = 0$$, '22023', NULL,
                 'credits.max_stripes below 1: 22023');
SELECT throws_ok($$SET LOCAL credits.split_after = 0$$, '22023', NULL,
                 'credits.split_after below 1: 22023');
CREATE ROLE stripes_app_t NOLOGIN;
SET LOCAL ROLE stripes_app_t;
SELECT throws_ok($$SET LOCAL credits.max_stripes = 4$$, '42501', NULL,
                 'credits.max_stripes is for superusers: 42501');
SELECT throws_ok($$SET LOCAL credits.split_after = 1$$, '42501', NULL,
                 'credits.split_after is for superusers: 42501');
RESET ROLE;

-- verify() catches a stripe beyond the count that is not empty
UPDATE credits.pool_stripes SET used = '1' WHERE org_id = 'st' AND stripe = 3;
SELECT is((SELECT actual FROM credits.verify('st') WHERE check_name = 'stripes_beyond_count_empty'),
          '3', 'verify(): a stripe beyond pools.stripes with credits in it');

-- what the stripes were escrowed is kept on the pools row, and readers of
-- a row that holds more need not read the stripes: es holds 100 over 2
-- stripes (no thresholds), escrowed 50 each
SELECT org_id FROM credits.create_org('es', allowance_per_user => 100);
UPDATE credits.orgs SET stripes = 2, thresholds = '{}' WHERE org_id = 'es';
SELECT credits.enable_provider('es', 'openai');
SELECT credits.add_member('es', 'eve');
SET LOCAL credits.stripe = 0;
SELECT is((SELECT charged FROM credits.credit_debit('es', 'eve', 'gpt-4o', 40000)), '10'::credit,
          'es: a debit escrows the pool over 2 stripes');
SELECT results_eq($$SELECT p.escrowed, (SELECT sum(s.funds) + sum(s.used) FROM credits.pool_stripes s
                                        WHERE s.org_id = 'es')
                      FROM credits.pools p WHERE p.org_id = 'es'$$,
                  $$VALUES ('90'::credit, '90'::credit)$$,
                  'es: pools.escrowed is what the stripes were given (90 of the 90 left)');
SELECT is((SELECT charged FROM credits.credit_debit('es', 'eve', 'gpt-4o', 40000 * 4)), '40'::credit,
          'es: a debit on stripe 0 (fast path)');
SELECT results_eq($$SELECT p.escrowed, (SELECT sum(s.funds) + sum(s.used) FROM credits.pool_stripes s
                                        WHERE s.org_id = 'es')
                      FROM credits.pools p WHERE p.org_id = 'es'$$,
                  $$VALUES ('90'::credit, '90'::credit)$$,
                  'es: a fast debit moves funds to used: still what was escrowed');
-- the row holds 90, no more than was escrowed: readers look at the stripes
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('es', 'eve')),
          'es: premium models available (the row alone cannot tell: stripe 1 still holds 45)');
SELECT is(credits.resolve_model('es', 'eve', 'gpt-4o'), 'gpt-4o', 'es: resolve_model keeps gpt-4o');
SELECT is((SELECT charged FROM credits.credit_debit('es', 'eve', 'gpt-4o', 40000 * 5)), '50'::credit,
          'es: a debit of 50 does not fit stripe 0 (5 left): the pool lock charges the last 50');
SELECT is((SELECT escrowed FROM credits.pools WHERE org_id = 'es'), '0'::credit,
          'es: nothing left to escrow: pools.escrowed is 0');
SELECT ok(NOT (SELECT bool_or(available) FILTER (WHERE NOT is_fallback)
                 FROM credits.allowed_models('es', 'eve')),
          'es: premium models unavailable once the stripes used it all');
SELECT is((SELECT available FROM credits.recharge('es', 20)), '20'::credit, 'es: a top-up of 20');
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('es', 'eve')),
          'es: premium models are back');
SELECT is_empty($$SELECT * FROM credits.verify('es')$$, 'es: verify() finds nothing');

-- waits are forgotten: one each time the pool takes another 4 calls, the
-- stripes' calls counted when they are folded in (the waits themselves are
-- in stripe_growth.spec)
SELECT org_id FROM credits.create_org('wt', allowance_per_user => 1000, period => '1 day');
SELECT credits.enable_provider('wt', 'openai');
SELECT credits.add_member('wt', 'walt');
UPDATE credits.pools SET waits = 3, calls = 10 WHERE org_id = 'wt';
SELECT lives_ok($$SELECT credits.credit_debit('wt', 'walt', 'gpt-4o-mini', 1)$$, 'wt: call 11');
SELECT is((SELECT waits FROM credits.pools WHERE org_id = 'wt'), 3, 'wt: ... forgets no wait');
SELECT lives_ok($$SELECT credits.credit_debit('wt', 'walt', 'gpt-4o-mini', 1)$$, 'wt: call 12');
SELECT is((SELECT waits FROM credits.pools WHERE org_id = 'wt'), 2, 'wt: ... forgets one');
SELECT is((SELECT count(*) FROM (SELECT credits.credit_debit('wt', 'walt', 'gpt-4o-mini', 1)
                                   FROM generate_series(1, 12)) d)::int, 12,
          'wt: 12 more calls');
SELECT results_eq($$SELECT waits, stripes, calls FROM credits.pools WHERE org_id = 'wt'$$,
                  $$VALUES (0, 0, 24::bigint)$$,
                  'wt: ... forget the other two, never go below 0; still one balance');
-- a split pool (2 stripes of 490): its stripes' calls count once folded
UPDATE credits.orgs SET stripes = 2 WHERE org_id = 'wt';
SELECT lives_ok($$SELECT credits.credit_debit('wt', 'walt', 'gpt-4o-mini', 1)$$, 'wt: 2 stripes');
UPDATE credits.pools SET waits = 5, calls = 0 WHERE org_id = 'wt';
SET LOCAL credits.stripe = 0;
SELECT is((SELECT count(*) FROM (SELECT credits.credit_debit('wt', 'walt', 'gpt-4o-mini', 1)
                                   FROM generate_series(1, 6)) d)::int, 6,
          'wt: 6 debits of stripe 0');
SELECT results_eq($$SELECT p.waits, p.calls, s.calls FROM credits.pools p
                      JOIN credits.pool_stripes s ON s.org_id = p.org_id AND s.stripe = 0
                     WHERE p.org_id = 'wt'$$,
                  $$VALUES (5, 0::bigint, 6::bigint)$$,
                  'wt: ... counted on the stripe: the pool forgets nothing yet');
SELECT is((SELECT charged FROM credits.credit_debit('wt', 'walt', 'gpt-4o', 2000000)), '500'::credit,
          'wt: a debit of 500 does not fit a stripe: the pool lock folds the stripes');
SELECT results_eq($$SELECT waits, calls FROM credits.pools WHERE org_id = 'wt'$$,
                  $$VALUES (4, 7::bigint)$$,
                  'wt: ... 7 calls (6 folded, 1 its own): one wait forgotten');
RESET credits.stripe;
SELECT is_empty($$SELECT * FROM credits.verify('wt')$$, 'wt: verify() finds nothing');

SELECT * FROM finish();
ROLLBACK;
