-- pgTAP: threshold events on the paths events.sql does not take.
--
--   * An org split into escrow stripes: its debits are charged on the
--     stripes (the fast path) until one would cross a threshold; a stripe
--     never holds more than may be spent below the next threshold, so that
--     debit falls to the slow path, which folds the stripes, sees the whole
--     pool and emits the event, exactly once.
--   * Holds count as spent: a reserve that brings spent + reserved to 80 %
--     emits the 80 % event, and one that reserves the rest emits 100 %.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(19);

-- ---------------------------------------------------------------------------
-- Fixtures (gpt-4o: 4000 input tokens = 1 credit)
--   tf  100 credits (fa), thresholds {80}, 2 stripes
--   th  100 credits (ha), thresholds {80,100} (the default), one balance
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM credits.create_org('tf', allowance_per_user => 100);
    UPDATE credits.orgs SET thresholds = '{80}', stripes = 2 WHERE org_id = 'tf';
    PERFORM credits.enable_provider('tf', 'openai');
    PERFORM credits.add_member('tf', 'fa');

    PERFORM credits.create_org('th', allowance_per_user => 100);
    PERFORM credits.enable_provider('th', 'openai');
    PERFORM credits.add_member('th', 'ha');
END
$$;

-- every tf debit: its number, the stripe its session used, and what the
-- pool row and the stripes held right after it
CREATE TEMP TABLE tf_log (n int PRIMARY KEY, stripe int, entry_id bigint, charged credits.credit,
                          row_used credits.credit, stripes_used credits.credit,
                          stripes_funds credits.credit, events int);
CREATE FUNCTION pg_temp.tf_debit(n int, stripe int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d credits.debit_result;
BEGIN
    PERFORM set_config('credits.stripe', stripe::text, true);
    d := credits.credit_debit('tf', 'fa', 'gpt-4o', 28000);        -- 7 credits
    INSERT INTO tf_log
    SELECT n, stripe, d.entry_id, d.charged,
           (SELECT allowance_used FROM credits.pools WHERE org_id = 'tf'),
           (SELECT sum(used) FROM credits.pool_stripes WHERE org_id = 'tf'),
           (SELECT sum(funds) FROM credits.pool_stripes WHERE org_id = 'tf'),
           (SELECT count(*)::int FROM credits.events WHERE org_id = 'tf' AND kind = 'threshold');
END
$$;

-- ---------------------------------------------------------------------------
-- A striped org crosses 80 %
-- ---------------------------------------------------------------------------
-- debit 1 (slow path: the pool is one balance) escrows 72.999999 (below
-- 80 - 7), 36.499999 to each stripe; debits 2 to 11 alternate between the
-- stripes, 7 each: 77 spent
SELECT pg_temp.tf_debit(n, n % 2) FROM generate_series(1, 11) n;

SELECT is((SELECT stripes FROM credits.pools WHERE org_id = 'tf'), 2, 'tf: the pool is split over 2 stripes');
SELECT results_eq(
    $$SELECT row_used, stripes_used FROM tf_log WHERE n IN (1, 11) ORDER BY n$$,
    $$VALUES ('7'::credit, '0'::credit), ('7', '70')$$,
    'tf: debits 2 to 11 were charged on the stripes, the pool row kept debit 1''s 7');
SELECT results_eq(
    $$SELECT stripe, used, funds FROM credits.pool_stripes WHERE org_id = 'tf' ORDER BY stripe$$,
    $$VALUES (0, '35'::credit, '1.499999'::credit), (1, '35', '1.499999')$$,
    'tf: 35 charged on each stripe, 1.499999 left on each');
SELECT ok((SELECT bool_and(row_used + stripes_used + stripes_funds < 80) FROM tf_log),
          'tf: after every debit, spent + escrowed stayed below 80');
SELECT is((SELECT max(events) FROM tf_log), 0, 'tf: 77 of 100 spent, no event yet');
SELECT is((SELECT allowance_used FROM credits.pool_status WHERE org_id = 'tf'), '77'::credit,
          'tf: pool_status counts the stripes: 77 used');

-- debit 12 does not fit in its stripe (1.499999 left): the slow path folds
-- the stripes and charges it: 84 spent, 80 % crossed
SELECT pg_temp.tf_debit(12, 0);
SELECT results_eq(
    $$SELECT charged, row_used, stripes_used, events FROM tf_log WHERE n = 12$$,
    $$VALUES ('7'::credit, '84'::credit, '0'::credit, 1)$$,
    'tf: the crossing debit took the slow path (stripes folded into the pool row: 84) and emitted one event');
SELECT results_eq(
    $$SELECT payload->>'threshold', (payload->>'spent')::numeric, (payload->>'total')::numeric,
             (payload->>'available')::numeric
        FROM credits.events WHERE org_id = 'tf' AND kind = 'threshold'$$,
    $$VALUES ('80'::text, 84::numeric, 100::numeric, 16::numeric)$$,
    'tf: the event saw the whole pool: spent 84 (the stripes'' 70 included), 16 available');
SELECT is((SELECT alert_level FROM credits.pools WHERE org_id = 'tf'), 80, 'tf: alert level 80');

-- after the crossing the stripes escrow again (16 over 2) and take the next
-- debits; no threshold is left to cross, so nothing is emitted again
SELECT pg_temp.tf_debit(13, 0);
SELECT pg_temp.tf_debit(14, 1);
SELECT results_eq(
    $$SELECT n, row_used, stripes_used FROM tf_log WHERE n IN (13, 14) ORDER BY n$$,
    $$VALUES (13, '84'::credit, '7'::credit), (14, '84', '14')$$,
    'tf: debits 13 and 14 were charged on the stripes again');
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'tf' AND kind = 'threshold'), 1,
          'tf: 98 of 100 spent, still exactly one threshold event');
SELECT is_empty($$SELECT * FROM credits.verify('tf')$$, 'tf: verify is clean');

-- ---------------------------------------------------------------------------
-- Holds count as spent
-- ---------------------------------------------------------------------------
-- 10 spent, then a hold of 70 (gpt-4o, 280000 input tokens): 80 % with
-- nothing more spent
SELECT is((SELECT charged FROM credits.credit_debit('th', 'ha', 'gpt-4o', 40000)), '10'::credit,
          'th: 10 spent');
SELECT is((SELECT reserved FROM credits.credit_reserve('th', 'ha', 'gpt-4o', 280000, 0)), '70'::credit,
          'th: 70 held');
SELECT results_eq(
    $$SELECT payload->>'threshold', (payload->>'spent')::numeric, (payload->>'total')::numeric,
             (payload->>'available')::numeric
        FROM credits.events WHERE org_id = 'th' AND kind = 'threshold'$$,
    $$VALUES ('80'::text, 80::numeric, 100::numeric, 20::numeric)$$,
    'th: the reserve emitted the 80 % event: spent 80 = 10 used + 70 held');
SELECT is((SELECT alert_level FROM credits.pools WHERE org_id = 'th'), 80, 'th: alert level 80');
-- a hold of the last 20: 100 %, the pool is exhausted with nothing more used
SELECT is((SELECT available FROM credits.credit_reserve('th', 'ha', 'gpt-4o', 80000, 0)), '0'::credit,
          'th: a hold of the last 20 leaves 0');
SELECT results_eq(
    $$SELECT payload->>'threshold', (payload->>'spent')::numeric, (payload->>'available')::numeric
        FROM credits.events WHERE org_id = 'th' AND kind = 'threshold' ORDER BY event_id$$,
    $$VALUES ('80'::text, 80::numeric, 20::numeric), ('100', 100, 0)$$,
    'th: the 100 % event came with the hold that exhausted the pool, each threshold once');
SELECT is_empty($$SELECT * FROM credits.verify('th')$$, 'th: verify is clean');

SELECT * FROM finish();
ROLLBACK;
