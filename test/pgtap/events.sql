-- pgTAP: threshold events written by credit_debit, and the append-only ledger
-- (NOTIFY delivery on commit is checked by a shell test: LISTEN cannot
-- receive inside one pgTAP transaction.)
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(50);

-- ---------------------------------------------------------------------------
-- Fixtures (gpt-4o: 4000 input tokens = 1 credit; gpt-4o-mini: 200000 = 3)
-- ---------------------------------------------------------------------------
DO $$
DECLARE
    o text;
BEGIN
    PERFORM credits.create_org('ev', allowance_per_user => 100);
    PERFORM credits.add_member('ev', 'ann');
    FOREACH o IN ARRAY ARRAY['jump', 'mid', 'over', 'custom', 'multi', 'none', 'rb', 'tp'] LOOP
        PERFORM credits.create_org(o, allowance_per_user => 10);
        PERFORM credits.add_member(o, 'u');
    END LOOP;
    PERFORM credits.create_org('zero', allowance_per_user => 0);
    PERFORM credits.add_member('zero', 'u');
    FOR o IN SELECT org_id FROM credits.orgs LOOP
        PERFORM credits.enable_provider(o, 'openai');
    END LOOP;
END
$$;

CREATE TEMP TABLE expected_keys AS
    SELECT ARRAY['available', 'period_start', 'spent', 'threshold', 'total'] AS keys;

SELECT is((SELECT count(*)::int FROM credits.events), 0, 'fixture: no events yet');
SELECT ok((SELECT bool_and(thresholds = '{80,100}') FROM credits.orgs),
          'orgs.thresholds defaults to {80,100}');

-- ---------------------------------------------------------------------------
-- 80% and 100% of 'ev' (100 credits), one step at a time
-- ---------------------------------------------------------------------------
DO $$ BEGIN PERFORM credits.credit_debit('ev', 'ann', 'gpt-4o', 316000); END $$;   -- 79
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'ev'), 0, '79%: no event');

DO $$ BEGIN PERFORM credits.credit_debit('ev', 'ann', 'gpt-4o', 3999); END $$;     -- 79.99975
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'ev'), 0,
          '79.99975%: a micro-credit short of 80, no event');

DO $$ BEGIN PERFORM credits.credit_debit('ev', 'ann', 'gpt-4o', 1); END $$;        -- 80
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'ev'), 1, '80% exactly: one event');
SELECT results_eq(
    $$SELECT org_id, kind, created_at FROM credits.events WHERE org_id = 'ev'$$,
    $$VALUES ('ev'::text, 'threshold'::text, now())$$,
    '80%: a threshold event of the org');
SELECT is((SELECT payload FROM credits.events WHERE org_id = 'ev'),
          jsonb_build_object('threshold', 80,
                             'period_start', (SELECT period_start FROM credits.pools WHERE org_id = 'ev'),
                             'spent', 80, 'total', 100, 'available', 20),
          '80%: payload {threshold 80, period_start, spent 80, total 100, available 20}');
SELECT is((SELECT array_agg(k ORDER BY k) FROM credits.events e, jsonb_object_keys(e.payload) k WHERE e.org_id = 'ev'),
          (SELECT keys FROM expected_keys),
          '80%: the payload has exactly these keys');
SELECT is((SELECT (payload->>'period_start')::timestamptz FROM credits.events WHERE org_id = 'ev'),
          (SELECT period_start FROM credits.pools WHERE org_id = 'ev'),
          '80%: period_start reads back as the pool''s period_start');
SELECT is((SELECT jsonb_typeof(payload->'spent') || ',' || jsonb_typeof(payload->'total') || ','
                  || jsonb_typeof(payload->'available') || ',' || jsonb_typeof(payload->'threshold')
             FROM credits.events WHERE org_id = 'ev'),
          'number,number,number,number', '80%: amounts and the threshold are JSON numbers');

DO $$ BEGIN PERFORM credits.credit_debit('ev', 'ann', 'gpt-4o', 20000); END $$;    -- 85
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'ev'), 1, '85%: 80 is not announced again');
DO $$ BEGIN PERFORM credits.credit_debit('ev', 'ann', 'gpt-4o', 56000); END $$;    -- 99
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'ev'), 1, '99%: still one event');

DO $$ BEGIN PERFORM credits.credit_debit('ev', 'ann', 'gpt-4o', 4000); END $$;     -- 100
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'ev'), 2, '100%: a second event');
SELECT is((SELECT payload FROM credits.events WHERE org_id = 'ev' ORDER BY event_id DESC LIMIT 1),
          jsonb_build_object('threshold', 100,
                             'period_start', (SELECT period_start FROM credits.pools WHERE org_id = 'ev'),
                             'spent', 100, 'total', 100, 'available', 0),
          '100%: payload {threshold 100, spent 100, total 100, available 0}');

DO $$ BEGIN PERFORM credits.credit_debit('ev', 'ann', 'gpt-4o', 4000); END $$;       -- shortfall
DO $$ BEGIN PERFORM credits.credit_debit('ev', 'ann', 'gpt-4o-mini', 200000); END $$; -- free fallback
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'ev'), 2,
          'after exhaustion: premium and fallback calls announce nothing more');
SELECT results_eq(
    $$SELECT (payload->>'threshold')::int, count(*)::int FROM credits.events WHERE org_id = 'ev'
       GROUP BY 1 ORDER BY 1$$,
    $$VALUES (80, 1), (100, 1)$$,
    'each threshold was written once in the period');
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id <> 'ev'), 0,
          'no other org got an event');

-- ---------------------------------------------------------------------------
-- One debit crossing both thresholds
-- ---------------------------------------------------------------------------
DO $$ BEGIN PERFORM credits.credit_debit('jump', 'u', 'gpt-4o', 8000); END $$;     -- 20%
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'jump'), 0, 'jump: 20%, no event');
DO $$ BEGIN PERFORM credits.credit_debit('jump', 'u', 'gpt-4o', 32000); END $$;    -- 20% -> 100%
SELECT results_eq(
    $$SELECT payload->>'threshold', (payload->>'spent')::numeric, (payload->>'total')::numeric,
             (payload->>'available')::numeric
        FROM credits.events WHERE org_id = 'jump' ORDER BY event_id$$,
    $$VALUES ('80'::text, 10::numeric, 10::numeric, 0::numeric), ('100', 10, 10, 0)$$,
    'jump: from 20% to 100% in one debit -> two events, 80 then 100');

DO $$ BEGIN PERFORM credits.credit_debit('mid', 'u', 'gpt-4o', 36000); END $$;     -- 0% -> 90%
SELECT results_eq(
    $$SELECT payload->>'threshold', (payload->>'spent')::numeric, (payload->>'available')::numeric
        FROM credits.events WHERE org_id = 'mid' ORDER BY event_id$$,
    $$VALUES ('80'::text, 9::numeric, 1::numeric)$$,
    'mid: from 0% to 90% -> only the 80 event');
DO $$ BEGIN PERFORM credits.credit_debit('mid', 'u', 'gpt-4o', 4000); END $$;      -- 100%
SELECT results_eq(
    $$SELECT payload->>'threshold' FROM credits.events WHERE org_id = 'mid' ORDER BY event_id$$,
    $$VALUES ('80'::text), ('100')$$,
    'mid: then 100% -> the 100 event');

DO $$ BEGIN PERFORM credits.credit_debit('over', 'u', 'gpt-4o', 60000); END $$;    -- cost 15, charged 10
SELECT results_eq(
    $$SELECT payload->>'threshold', (payload->>'spent')::numeric, (payload->>'total')::numeric,
             (payload->>'available')::numeric
        FROM credits.events WHERE org_id = 'over' ORDER BY event_id$$,
    $$VALUES ('80'::text, 10::numeric, 10::numeric, 0::numeric), ('100', 10, 10, 0)$$,
    'over: a call beyond the pool -> 80 and 100, spent is what was charged (10), not the cost (15)');

-- ---------------------------------------------------------------------------
-- Custom thresholds
-- ---------------------------------------------------------------------------
UPDATE credits.orgs SET thresholds = '{50}' WHERE org_id = 'custom';
DO $$ BEGIN PERFORM credits.credit_debit('custom', 'u', 'gpt-4o', 16000); END $$;  -- 40%
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'custom'), 0, 'custom {50}: 40%, no event');
DO $$ BEGIN PERFORM credits.credit_debit('custom', 'u', 'gpt-4o', 4000); END $$;   -- 50%
SELECT results_eq(
    $$SELECT payload->>'threshold', (payload->>'spent')::numeric, (payload->>'available')::numeric
        FROM credits.events WHERE org_id = 'custom'$$,
    $$VALUES ('50'::text, 5::numeric, 5::numeric)$$,
    'custom {50}: 50% -> one event for 50');
DO $$ BEGIN PERFORM credits.credit_debit('custom', 'u', 'gpt-4o', 20000); END $$;  -- 100%
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'custom'), 1,
          'custom {50}: 100% is not a threshold of this org -> no more events');

UPDATE credits.orgs SET thresholds = '{90,25}' WHERE org_id = 'multi';
DO $$ BEGIN PERFORM credits.credit_debit('multi', 'u', 'gpt-4o', 40000); END $$;   -- 0% -> 100%
SELECT results_eq(
    $$SELECT payload->>'threshold' FROM credits.events WHERE org_id = 'multi' ORDER BY event_id$$,
    $$VALUES ('25'::text), ('90')$$,
    'custom {90,25}: crossing both -> 25 then 90, in ascending order');

UPDATE credits.orgs SET thresholds = '{}' WHERE org_id = 'none';
DO $$ BEGIN PERFORM credits.credit_debit('none', 'u', 'gpt-4o', 40000); END $$;
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'none'), 0,
          'custom {}: no thresholds, no events');

SELECT throws_ok($$UPDATE credits.orgs SET thresholds = '{0}' WHERE org_id = 'none'$$, '23514', NULL,
                 'thresholds: 0 is refused');
SELECT throws_ok($$UPDATE credits.orgs SET thresholds = '{101}' WHERE org_id = 'none'$$, '23514', NULL,
                 'thresholds: above 100 is refused');
SELECT throws_ok($$UPDATE credits.orgs SET thresholds = '{80,NULL}' WHERE org_id = 'none'$$, '23514', NULL,
                 'thresholds: NULL is refused');

-- ---------------------------------------------------------------------------
-- Top-up counts in the total
-- ---------------------------------------------------------------------------
-- fixture: 10 of top-up (a purchased grant where recharge() exists; else set on the pool as superuser)
DO $$
BEGIN
    IF to_regproc('credits.recharge') IS NOT NULL THEN
        PERFORM credits.recharge('tp', 10);
    ELSE
        UPDATE credits.pools SET topup = 10 WHERE org_id = 'tp';
    END IF;
END
$$;
DO $$ BEGIN PERFORM credits.credit_debit('tp', 'u', 'gpt-4o', 60000); END $$;      -- 15 of 20: 75%
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'tp' AND kind = 'threshold'), 0,
          'top-up: 15 of 10 + 10 is 75%, no event');
DO $$ BEGIN PERFORM credits.credit_debit('tp', 'u', 'gpt-4o', 4000); END $$;       -- 16 of 20: 80%
SELECT results_eq(
    $$SELECT payload->>'threshold', (payload->>'spent')::numeric, (payload->>'total')::numeric,
             (payload->>'available')::numeric
        FROM credits.events WHERE org_id = 'tp' AND kind = 'threshold'$$,
    $$VALUES ('80'::text, 16::numeric, 20::numeric, 4::numeric)$$,
    'top-up: 16 of 20 -> 80, total = allowance + top-up');

-- ---------------------------------------------------------------------------
-- An org with nothing to spend
-- ---------------------------------------------------------------------------
DO $$ BEGIN PERFORM credits.credit_debit('zero', 'u', 'gpt-4o', 40000); END $$;
DO $$ BEGIN PERFORM credits.credit_debit('zero', 'u', 'gpt-4o-mini', 200000); END $$;
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'zero'), 0,
          'allowance 0: premium (all shortfall) and fallback calls emit no event');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE org_id = 'zero'), 2,
          'allowance 0: the calls are still recorded');

-- ---------------------------------------------------------------------------
-- A rolled-back debit leaves no event
-- ---------------------------------------------------------------------------
SAVEPOINT s;
DO $$ BEGIN PERFORM credits.credit_debit('rb', 'u', 'gpt-4o', 36000); END $$;      -- 90%
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'rb'), 1,
          'rollback: inside the savepoint the 80 event is there');
ROLLBACK TO SAVEPOINT s;
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'rb'), 0,
          'rollback: rolled back with the debit');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE org_id = 'rb'), 0,
          'rollback: no ledger row either');
DO $$ BEGIN PERFORM credits.credit_debit('rb', 'u', 'gpt-4o', 36000); END $$;
SELECT results_eq(
    $$SELECT payload->>'threshold' FROM credits.events WHERE org_id = 'rb'$$,
    $$VALUES ('80'::text)$$,
    'rollback: the same crossing done again is announced once');

-- a failing debit emits nothing (the error aborts the whole call)
SELECT throws_ok($$SELECT * FROM credits.credit_debit('rb', 'u', 'no-such-model', 1)$$, 'UC002', NULL,
                 'a failing debit');
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'rb'), 1, '... wrote no event');

SELECT ok((SELECT bool_and(kind = 'threshold') FROM credits.events WHERE org_id <> 'tp'),
          'debits write only threshold events');

-- ---------------------------------------------------------------------------
-- The ledger is append-only, even for a superuser
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE ledger_before AS SELECT * FROM credits.ledger;
SELECT ok(current_setting('is_superuser')::boolean, 'running as a superuser');
SELECT throws_ok($$UPDATE credits.ledger SET charged = 0, from_allowance = 0 WHERE org_id = 'ev'$$,
                 '55000', NULL, 'ledger: UPDATE is refused (55000)');
SELECT throws_ok($$UPDATE credits.ledger SET note = 'x'$$,
                 '55000', NULL, 'ledger: UPDATE of every row is refused');
SELECT throws_ok($$DELETE FROM credits.ledger WHERE org_id = 'ev'$$,
                 '55000', NULL, 'ledger: DELETE is refused (55000)');
SELECT throws_ok($$DELETE FROM credits.ledger$$,
                 '55000', NULL, 'ledger: DELETE of every row is refused');
SELECT throws_ok($$TRUNCATE credits.ledger$$,
                 '55000', NULL, 'ledger: TRUNCATE is refused (55000)');
SELECT throws_ok($$TRUNCATE credits.ledger CASCADE$$,
                 '55000', NULL, 'ledger: TRUNCATE CASCADE is refused');
SELECT results_eq(
    $$SELECT entry_id, org_id, charged, from_allowance, note FROM credits.ledger ORDER BY entry_id$$,
    $$SELECT entry_id, org_id, charged, from_allowance, note FROM ledger_before ORDER BY entry_id$$,
    'ledger: every entry is still there, unchanged');
SELECT is((SELECT relowner::regrole::text FROM pg_class WHERE oid = 'credits.ledger'::regclass), current_user::text,
          'the refusals above were made as the ledger''s owner');

SELECT * FROM finish();
ROLLBACK;
