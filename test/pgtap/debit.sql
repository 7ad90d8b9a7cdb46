-- pgTAP: the metering hot path, credits.credit_debit()
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(132);

-- ---------------------------------------------------------------------------
-- Fixtures
--   acme    100 per user: alice, bob, carol (removed) -> pool 300; openai + anthropic
--   small   10, sam (cap 50, above the pool)         -> pool 10;  openai
--   fb      10, fred                                 -> pool 10;  openai + anthropic
--   capped  100 per user: u1 (cap 5), u2, u3 (cap 2)  -> pool 300; openai
--   tp      10, tina, plus 20 of top-up              -> openai
--   other   100, alice                               -> openai
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM credits.create_org('acme', allowance_per_user => 100);
    PERFORM credits.enable_provider('acme', 'openai');
    PERFORM credits.enable_provider('acme', 'anthropic');
    PERFORM credits.add_member('acme', 'alice');
    PERFORM credits.add_member('acme', 'bob');
    PERFORM credits.add_member('acme', 'carol');
    PERFORM credits.remove_member('acme', 'carol');

    PERFORM credits.create_org('small', allowance_per_user => 10);
    PERFORM credits.enable_provider('small', 'openai');
    PERFORM credits.add_member('small', 'sam', cap => 50);

    PERFORM credits.create_org('fb', allowance_per_user => 10);
    PERFORM credits.enable_provider('fb', 'openai');
    PERFORM credits.enable_provider('fb', 'anthropic');
    PERFORM credits.add_member('fb', 'fred');

    PERFORM credits.create_org('capped', allowance_per_user => 100);
    PERFORM credits.enable_provider('capped', 'openai');
    PERFORM credits.add_member('capped', 'u1', cap => 5);
    PERFORM credits.add_member('capped', 'u2');
    PERFORM credits.add_member('capped', 'u3', cap => 2);

    PERFORM credits.create_org('tp', allowance_per_user => 10);
    PERFORM credits.enable_provider('tp', 'openai');
    PERFORM credits.add_member('tp', 'tina');

    PERFORM credits.create_org('other', allowance_per_user => 100);
    PERFORM credits.enable_provider('other', 'openai');
    PERFORM credits.add_member('other', 'alice');

    -- models with fractional micro-credit prices, to see the rounding
    PERFORM credits.upsert_model('openai', 'frac-test', '0.5', '0.25');
    PERFORM credits.upsert_model('openai', 'req-test', 1, 2, '0.01');
END
$$;

-- every debit result, labelled
CREATE TEMP TABLE res (label text PRIMARY KEY, entry_id bigint, model text, cost credits.credit,
                       charged credits.credit, shortfall credits.credit, available credits.credit,
                       exhausted boolean, replayed boolean);

SELECT is((SELECT available FROM credits.pool_status WHERE org_id = 'acme'), '300'::credit,
          'fixture: acme has 300 (alice, bob and the removed carol''s allowance kept for the period)');

-- ---------------------------------------------------------------------------
-- A premium charge
-- ---------------------------------------------------------------------------
INSERT INTO res SELECT 'p1', d.* FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 20000, 1000) d;
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM res WHERE label = 'p1'$$,
    $$VALUES ('gpt-4o'::text, '6'::credit, '6'::credit, '0'::credit, '294'::credit, false, false)$$,
    'premium: 20000 in + 1000 out of gpt-4o costs 6, charged 6, no shortfall, 294 left');
SELECT is((SELECT entry_id FROM res WHERE label = 'p1'),
          (SELECT max(entry_id) FROM credits.ledger WHERE org_id = 'acme'),
          'premium: entry_id is the new ledger row');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE org_id = 'acme'), 1,
          'premium: exactly one ledger row');
SELECT results_eq(
    $$SELECT l.org_id, l.kind, l.created_at, l.user_id, l.model, l.input_tokens, l.output_tokens,
             l.cost, l.charged, l.shortfall, l.from_allowance, l.from_topup, l.available_after,
             l.request_id, l.hold_id
        FROM credits.ledger l JOIN res r ON r.entry_id = l.entry_id WHERE r.label = 'p1'$$,
    $$VALUES ('acme'::text, 'debit'::text, now(), 'alice'::text, 'gpt-4o'::text, 20000::bigint, 1000::bigint,
              '6'::credit, '6'::credit, '0'::credit, '6'::credit, '0'::credit, '294'::credit,
              NULL::text, NULL::bigint)$$,
    'premium: the ledger row records org, kind debit, user, model, tokens, cost, charge split and the balance after');
SELECT is((SELECT l.period_start FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 'p1'),
          (SELECT period_start FROM credits.pools WHERE org_id = 'acme'),
          'premium: the ledger row''s period_start is the pool''s period_start');
SELECT results_eq(
    $$SELECT allowance, allowance_used, topup, reserved, available, exhausted
        FROM credits.pool_status WHERE org_id = 'acme'$$,
    $$VALUES ('300'::credit, '6'::credit, '0'::credit, '0'::credit, '294'::credit, false)$$,
    'premium: the pool is charged');
SELECT is((SELECT used FROM credits.member_usage WHERE org_id = 'acme' AND user_id = 'alice'), '6'::credit,
          'premium: the member''s period usage is charged');
SELECT is((SELECT coalesce(sum(used), 0) FROM credits.member_usage WHERE org_id = 'acme' AND user_id <> 'alice'),
          '0'::credit, 'premium: no other member is charged');

-- ---------------------------------------------------------------------------
-- Cost: exact, rounded up to the micro-credit
-- ---------------------------------------------------------------------------
INSERT INTO res SELECT 'r1', d.* FROM credits.credit_debit('acme', 'alice', 'gpt-4o-mini', 1) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available FROM res WHERE label = 'r1'$$,
    $$VALUES ('0.000015'::credit, '0.000015'::credit, '0'::credit, '293.999985'::credit)$$,
    'cost: 1 input token of gpt-4o-mini is 0.000015, charged exactly');
INSERT INTO res SELECT 'r2', d.* FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 0, 1) d;
SELECT is((SELECT cost FROM res WHERE label = 'r2'), '0.001'::credit,
          'cost: 1 output token of gpt-4o is 0.001');
INSERT INTO res SELECT 'r3', d.* FROM credits.credit_debit('acme', 'alice', 'frac-test', 1) d;
SELECT is((SELECT cost FROM res WHERE label = 'r3'), '0.000001'::credit,
          'cost: half a micro-credit is rounded up to 0.000001');
INSERT INTO res SELECT 'r4', d.* FROM credits.credit_debit('acme', 'alice', 'frac-test', 3) d;
SELECT is((SELECT cost FROM res WHERE label = 'r4'), '0.000002'::credit,
          'cost: 1.5 micro-credits are rounded up to 0.000002');
INSERT INTO res SELECT 'r5', d.* FROM credits.credit_debit('acme', 'alice', 'frac-test', 1, 2) d;
SELECT is((SELECT cost FROM res WHERE label = 'r5'), '0.000001'::credit,
          'cost: input and output are summed before rounding (0.5 + 0.5 micro = 0.000001, not 0.000002)');
INSERT INTO res SELECT 'r6', d.* FROM credits.credit_debit('acme', 'alice', 'frac-test', 0, 3) d;
SELECT is((SELECT cost FROM res WHERE label = 'r6'), '0.000001'::credit,
          'cost: 0.75 micro-credits of output are rounded up to 0.000001');
INSERT INTO res SELECT 'r7', d.* FROM credits.credit_debit('acme', 'alice', 'frac-test', 2000001) d;
SELECT is((SELECT cost FROM res WHERE label = 'r7'), '1.000001'::credit,
          'cost: 1000000.5 micro-credits are 1.000001');
INSERT INTO res SELECT 'r8', d.* FROM credits.credit_debit('acme', 'alice', 'req-test', 1, 1) d;
SELECT is((SELECT cost FROM res WHERE label = 'r8'), '0.010003'::credit,
          'cost: the request price is added (0.000003 + 0.01)');
INSERT INTO res SELECT 'r9', d.* FROM credits.credit_debit('acme', 'alice', 'req-test', 0) d;
SELECT is((SELECT cost FROM res WHERE label = 'r9'), '0.01'::credit,
          'cost: 0 tokens still cost the request price');
INSERT INTO res SELECT 'r10', d.* FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 0, 0) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall FROM res WHERE label = 'r10'$$,
    $$VALUES ('0'::credit, '0'::credit, '0'::credit)$$,
    'cost: 0 tokens of a model without request price cost 0');
SELECT ok((SELECT bool_and(l.cost = credits.cost(l.model, l.input_tokens, l.output_tokens))
             FROM credits.ledger l WHERE l.org_id = 'acme'),
          'cost: every debit''s cost equals credits.cost() of its model and tokens');
SELECT ok((SELECT bool_and(r.charged = r.cost AND r.shortfall = 0) FROM res r WHERE r.label LIKE 'r%'),
          'cost: with credits left every call is charged its full cost');
SELECT is((SELECT available FROM credits.pool_status WHERE org_id = 'acme'),
          '300'::credit - (SELECT sum(charged) FROM credits.ledger WHERE org_id = 'acme'),
          'cost: the pool went down by exactly the sum charged');
SELECT is((SELECT available FROM res WHERE label = 'r10'),
          (SELECT available FROM credits.pool_status WHERE org_id = 'acme'),
          'cost: the last result''s available is the pool''s available');

-- output_tokens defaults to 0
INSERT INTO res SELECT 'o1', d.* FROM credits.credit_debit('acme', 'bob', 'gpt-4o', 20000) d;
SELECT is((SELECT cost FROM res WHERE label = 'o1'), '5'::credit,
          'output_tokens defaults to 0: 20000 input tokens of gpt-4o cost 5');
SELECT is((SELECT l.output_tokens FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 'o1'), 0::bigint,
          'output_tokens defaults to 0: recorded as 0 in the ledger');
SELECT is((SELECT used FROM credits.member_usage WHERE org_id = 'acme' AND user_id = 'bob'), '5'::credit,
          'bob''s own usage is charged to bob');

-- ---------------------------------------------------------------------------
-- A premium call larger than what is left, then exhaustion
-- ---------------------------------------------------------------------------
INSERT INTO res SELECT 's1', d.* FROM credits.credit_debit('small', 'sam', 'gpt-4o', 20000, 1000) d;
SELECT is((SELECT available FROM res WHERE label = 's1'), '4'::credit, 'small: 4 left after a 6-credit call');
INSERT INTO res SELECT 's2', d.* FROM credits.credit_debit('small', 'sam', 'gpt-4o', 40000, 0, 'big') d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted, replayed FROM res WHERE label = 's2'$$,
    $$VALUES ('10'::credit, '4'::credit, '6'::credit, '0'::credit, true, false)$$,
    'over the limit: charged = what was left (4; the cap of 50 is higher), shortfall = cost - charged (6), exhausted');
SELECT results_eq(
    $$SELECT l.user_id, l.model, l.input_tokens, l.output_tokens, l.cost, l.charged, l.shortfall,
             l.from_allowance, l.available_after
        FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 's2'$$,
    $$VALUES ('sam'::text, 'gpt-4o'::text, 40000::bigint, 0::bigint, '10'::credit, '4'::credit, '6'::credit,
              '4'::credit, '0'::credit)$$,
    'over the limit: the usage is still recorded in full in the ledger');
SELECT results_eq(
    $$SELECT allowance, allowance_used, available, exhausted FROM credits.pool_status WHERE org_id = 'small'$$,
    $$VALUES ('10'::credit, '10'::credit, '0'::credit, true)$$,
    'over the limit: the pool is at 0, never below');
SELECT is((SELECT used FROM credits.member_usage WHERE org_id = 'small' AND user_id = 'sam'), '10'::credit,
          'over the limit: the member is charged only what was charged (6 + 4)');

-- the same transaction sees the pool empty
SELECT results_eq(
    $$SELECT model, available, reason FROM credits.allowed_models('small', 'sam')$$,
    $$VALUES ('frac-test'::text, false, 'credits_exhausted'::text), ('gpt-4.1', false, 'credits_exhausted'),
             ('gpt-4o', false, 'credits_exhausted'), ('o3', false, 'credits_exhausted'),
             ('req-test', false, 'credits_exhausted'), ('gpt-4o-mini', true, NULL)$$,
    'exhausted: allowed_models grays out every premium model in the transaction that emptied the pool');
SELECT is(credits.resolve_model('small', 'sam', 'gpt-4o'), 'gpt-4o-mini',
          'exhausted: resolve_model returns the fallback in the same transaction');

INSERT INTO res SELECT 's3', d.* FROM credits.credit_debit('small', 'sam', 'gpt-4o', 4000, 1000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM res WHERE label = 's3'$$,
    $$VALUES ('2'::credit, '0'::credit, '2'::credit, '0'::credit, true)$$,
    'exhausted: a premium call is charged 0 with shortfall = cost');
SELECT is((SELECT count(*)::int FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 's3'), 1,
          'exhausted: the premium call is still recorded');
INSERT INTO res SELECT 's4', d.* FROM credits.credit_debit('small', 'sam', 'gpt-4o-mini', 1000000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM res WHERE label = 's4'$$,
    $$VALUES ('15'::credit, '0'::credit, '0'::credit, '0'::credit, true)$$,
    'exhausted: a fallback call is free, no shortfall');
SELECT results_eq(
    $$SELECT allowance_used, available FROM credits.pool_status WHERE org_id = 'small'$$,
    $$VALUES ('10'::credit, '0'::credit)$$,
    'exhausted: calls after exhaustion leave the pool at 0');
SELECT is((SELECT used FROM credits.member_usage WHERE org_id = 'small' AND user_id = 'sam'), '10'::credit,
          'exhausted: calls after exhaustion charge the member nothing');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE org_id = 'small'), 4,
          'exhausted: every call has its ledger row');

-- ---------------------------------------------------------------------------
-- Fallback models: charged while credits remain, free once exhausted
-- ---------------------------------------------------------------------------
INSERT INTO res SELECT 'f1', d.* FROM credits.credit_debit('fb', 'fred', 'gpt-4o-mini', 200000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM res WHERE label = 'f1'$$,
    $$VALUES ('3'::credit, '3'::credit, '0'::credit, '7'::credit, false)$$,
    'fallback: charged like any model while credits remain');
INSERT INTO res SELECT 'f2', d.* FROM credits.credit_debit('fb', 'fred', 'claude-haiku-4-5', 10000, 1000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available FROM res WHERE label = 'f2'$$,
    $$VALUES ('1.5'::credit, '1.5'::credit, '0'::credit, '5.5'::credit)$$,
    'fallback: another provider''s fallback charged too');
INSERT INTO res SELECT 'f3', d.* FROM credits.credit_debit('fb', 'fred', 'claude-haiku-4-5', 100000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM res WHERE label = 'f3'$$,
    $$VALUES ('10'::credit, '5.5'::credit, '0'::credit, '0'::credit, true)$$,
    'fallback larger than what is left: charged = what was left, shortfall 0, exhausted');
INSERT INTO res SELECT 'f4', d.* FROM credits.credit_debit('fb', 'fred', 'gpt-4o-mini', 200000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM res WHERE label = 'f4'$$,
    $$VALUES ('3'::credit, '0'::credit, '0'::credit, '0'::credit, true)$$,
    'fallback once exhausted: free (charged 0, shortfall 0)');
SELECT results_eq(
    $$SELECT allowance_used, available FROM credits.pool_status WHERE org_id = 'fb'$$,
    $$VALUES ('10'::credit, '0'::credit)$$,
    'fallback: the pool is at 0');
SELECT is((SELECT used FROM credits.member_usage WHERE org_id = 'fb' AND user_id = 'fred'), '10'::credit,
          'fallback: member usage is what was charged');
SELECT results_eq(
    $$SELECT model, available, reason FROM credits.allowed_models('fb', 'fred')$$,
    $$VALUES ('claude-opus-4-1'::text, false, 'credits_exhausted'::text),
             ('claude-sonnet-4-5', false, 'credits_exhausted'), ('claude-haiku-4-5', true, NULL),
             ('frac-test', false, 'credits_exhausted'), ('gpt-4.1', false, 'credits_exhausted'),
             ('gpt-4o', false, 'credits_exhausted'), ('o3', false, 'credits_exhausted'),
             ('req-test', false, 'credits_exhausted'), ('gpt-4o-mini', true, NULL)$$,
    'fallback: a fallback call that emptied the pool grays out premium models at once');
SELECT is(credits.resolve_model('fb', 'fred', 'claude-sonnet-4-5'), 'claude-haiku-4-5',
          'fallback: resolve_model returns the provider''s fallback at once');

-- ---------------------------------------------------------------------------
-- Member caps: charged = least(cost, available, cap_left)
-- ---------------------------------------------------------------------------
INSERT INTO res SELECT 'c1', d.* FROM credits.credit_debit('capped', 'u1', 'gpt-4o', 20000, 1000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM res WHERE label = 'c1'$$,
    $$VALUES ('6'::credit, '5'::credit, '1'::credit, '295'::credit, false)$$,
    'cap: a premium call over the cap is charged the cap left (5), shortfall 1, the pool is not exhausted');
SELECT is((SELECT used FROM credits.member_usage WHERE org_id = 'capped' AND user_id = 'u1'), '5'::credit,
          'cap: member usage is at the cap');
SELECT results_eq(
    $$SELECT DISTINCT available, reason FROM credits.allowed_models('capped', 'u1') WHERE NOT is_fallback$$,
    $$VALUES (false, 'user_cap_reached'::text)$$,
    'cap reached: allowed_models grays out premium models for that user (user_cap_reached)');
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('capped', 'u1') WHERE is_fallback),
          'cap reached: the fallback stays available for that user');
SELECT ok((SELECT bool_and(available) AND bool_and(reason IS NULL) FROM credits.allowed_models('capped', 'u2')),
          'cap reached: another member still sees every model available');
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('capped')),
          'cap reached: without a user every model is available');
SELECT is(credits.resolve_model('capped', 'u1', 'gpt-4o'), 'gpt-4o-mini', 'cap reached: resolve_model falls back');
SELECT is(credits.resolve_model('capped', 'u2', 'gpt-4o'), 'gpt-4o', 'cap reached: not for another member');
INSERT INTO res SELECT 'c2', d.* FROM credits.credit_debit('capped', 'u1', 'gpt-4o', 4000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM res WHERE label = 'c2'$$,
    $$VALUES ('1'::credit, '0'::credit, '1'::credit, '295'::credit, false)$$,
    'cap reached: a premium call is charged 0, shortfall = cost');
INSERT INTO res SELECT 'c3', d.* FROM credits.credit_debit('capped', 'u1', 'gpt-4o-mini', 200000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM res WHERE label = 'c3'$$,
    $$VALUES ('3'::credit, '0'::credit, '0'::credit, '295'::credit, false)$$,
    'cap reached: a fallback call is free');
INSERT INTO res SELECT 'c4', d.* FROM credits.credit_debit('capped', 'u2', 'gpt-4o', 20000, 1000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available FROM res WHERE label = 'c4'$$,
    $$VALUES ('6'::credit, '6'::credit, '0'::credit, '289'::credit)$$,
    'cap: a member without a cap is charged in full (cost is the least)');
INSERT INTO res SELECT 'c5', d.* FROM credits.credit_debit('capped', 'u3', 'gpt-4o-mini', 200000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available FROM res WHERE label = 'c5'$$,
    $$VALUES ('3'::credit, '2'::credit, '0'::credit, '287'::credit)$$,
    'cap: a fallback call over the cap is charged the cap left, no shortfall');
INSERT INTO res SELECT 'c6', d.* FROM credits.credit_debit('capped', 'u3', 'gpt-4o-mini', 200000) d;
SELECT results_eq(
    $$SELECT charged, shortfall, available FROM res WHERE label = 'c6'$$,
    $$VALUES ('0'::credit, '0'::credit, '287'::credit)$$,
    'cap: then fallback calls are free');
SELECT results_eq(
    $$SELECT user_id, used FROM credits.member_usage WHERE org_id = 'capped' ORDER BY user_id$$,
    $$VALUES ('u1'::text, '5'::credit), ('u2', '6'::credit), ('u3', '2'::credit)$$,
    'cap: member usage never exceeds a cap');
SELECT is((SELECT allowance_used FROM credits.pools WHERE org_id = 'capped'), '13'::credit,
          'cap: the pool is charged the sum of the charges');

-- ---------------------------------------------------------------------------
-- Top-up: the allowance is drawn first, then purchased credits
-- ---------------------------------------------------------------------------
-- fixture: 20 of top-up (a purchased grant where recharge() exists; else set on the pool as superuser)
DO $$
BEGIN
    IF to_regproc('credits.recharge') IS NOT NULL THEN
        PERFORM credits.recharge('tp', 20);
    ELSE
        UPDATE credits.pools SET topup = 20 WHERE org_id = 'tp';
    END IF;
END
$$;
INSERT INTO res SELECT 't1', d.* FROM credits.credit_debit('tp', 'tina', 'gpt-4o', 60000) d;
SELECT results_eq(
    $$SELECT l.cost, l.charged, l.from_allowance, l.from_topup, l.available_after
        FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 't1'$$,
    $$VALUES ('15'::credit, '15'::credit, '10'::credit, '5'::credit, '15'::credit)$$,
    'top-up: a 15-credit call takes the 10 of allowance first, then 5 of top-up');
SELECT results_eq(
    $$SELECT allowance_used, topup, topup_used FROM credits.pools WHERE org_id = 'tp'$$,
    $$VALUES ('10'::credit, '15'::credit, '5'::credit)$$,
    'top-up: the pool records both parts');

-- ---------------------------------------------------------------------------
-- Idempotency: request_id
-- ---------------------------------------------------------------------------
INSERT INTO res SELECT 'i1', d.* FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 4000, 1000, 'req-1') d;
SELECT results_eq(
    $$SELECT cost, charged, replayed FROM res WHERE label = 'i1'$$,
    $$VALUES ('2'::credit, '2'::credit, false)$$,
    'request_id: the first call is charged, replayed false');
SELECT is((SELECT request_id FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 'i1'), 'req-1',
          'request_id: recorded in the ledger');
-- the pool moves on before the repeat
INSERT INTO res SELECT 'i2', d.* FROM credits.credit_debit('acme', 'bob', 'gpt-4o', 4000) d;

CREATE TEMP TABLE snap_pool AS SELECT * FROM credits.pools WHERE org_id = 'acme';
CREATE TEMP TABLE snap_usage AS SELECT * FROM credits.member_usage WHERE org_id = 'acme';
CREATE TEMP TABLE snap_count AS SELECT count(*) AS n FROM credits.ledger;

INSERT INTO res SELECT 'i3', d.* FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 4000, 1000, 'req-1') d;
SELECT is((SELECT replayed FROM res WHERE label = 'i3'), true, 'request_id: a repeat is replayed');
SELECT results_eq(
    $$SELECT entry_id, model, cost, charged, shortfall, available, exhausted FROM res WHERE label = 'i3'$$,
    $$SELECT entry_id, model, cost, charged, shortfall, available, exhausted FROM res WHERE label = 'i1'$$,
    'request_id: the repeat returns the original result (same entry_id, cost, charged, available)');
SELECT isnt((SELECT available FROM res WHERE label = 'i3'),
            (SELECT available FROM credits.pool_status WHERE org_id = 'acme'),
            'request_id: ... the original available, not today''s');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE org_id = 'acme' AND request_id = 'req-1'), 1,
          'request_id: one ledger row');
SELECT is((SELECT n FROM snap_count), (SELECT count(*) FROM credits.ledger),
          'request_id: the repeat appended nothing');
SELECT results_eq(
    $$SELECT allowance, allowance_used, topup, topup_used, reserved FROM credits.pools WHERE org_id = 'acme'$$,
    $$SELECT allowance, allowance_used, topup, topup_used, reserved FROM snap_pool$$,
    'request_id: the repeat charged the pool nothing');
SELECT results_eq(
    $$SELECT user_id, used FROM credits.member_usage WHERE org_id = 'acme' ORDER BY user_id$$,
    $$SELECT user_id, used FROM snap_usage ORDER BY user_id$$,
    'request_id: the repeat charged the member nothing');
INSERT INTO res SELECT 'i4', d.* FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 4000, 1000, 'req-1') d;
SELECT results_eq(
    $$SELECT entry_id, cost, charged, available, replayed FROM res WHERE label = 'i4'$$,
    $$SELECT entry_id, cost, charged, available, true FROM res WHERE label = 'i1'$$,
    'request_id: a third call replays again');

-- output_tokens omitted and explicit 0 are the same arguments
INSERT INTO res SELECT 'i5', d.* FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 4000, request_id => 'req-0') d;
INSERT INTO res SELECT 'i6', d.* FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 4000, 0, 'req-0') d;
SELECT results_eq(
    $$SELECT entry_id, charged, replayed FROM res WHERE label = 'i6'$$,
    $$SELECT entry_id, charged, true FROM res WHERE label = 'i5'$$,
    'request_id: output_tokens defaulted and explicit 0 are the same call');

-- a shortfall is replayed as it was
INSERT INTO res SELECT 's5', d.* FROM credits.credit_debit('small', 'sam', 'gpt-4o', 40000, 0, 'big') d;
SELECT results_eq(
    $$SELECT entry_id, cost, charged, shortfall, available, exhausted, replayed FROM res WHERE label = 's5'$$,
    $$SELECT entry_id, cost, charged, shortfall, available, exhausted, true FROM res WHERE label = 's2'$$,
    'request_id: a call that ran short replays with its original charged and shortfall');

-- different arguments: UC007, each way
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'bob', 'gpt-4o', 4000, 1000, 'req-1')$$,
                 'UC007', 'request_id "req-1" of org "acme" was already used with different arguments',
                 'request_id reused by another user: UC007');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4.1', 4000, 1000, 'req-1')$$,
                 'UC007', NULL, 'request_id reused with another model: UC007');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 4001, 1000, 'req-1')$$,
                 'UC007', NULL, 'request_id reused with other input_tokens: UC007');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 4000, 999, 'req-1')$$,
                 'UC007', NULL, 'request_id reused with other output_tokens: UC007');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 4000, request_id => 'req-1')$$,
                 'UC007', NULL, 'request_id reused with output_tokens defaulted (0 instead of 1000): UC007');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 4000, 1, 'req-0')$$,
                 'UC007', NULL, 'request_id first used with output_tokens defaulted, reused with 1: UC007');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o-mini', 4000, 1000, 'req-1')$$,
                 'UC007', NULL, 'request_id reused with the fallback model: UC007');

-- the same request_id in another org is another call
CREATE TEMP TABLE acme_before AS SELECT * FROM credits.pool_status WHERE org_id = 'acme';
INSERT INTO res SELECT 'x1', d.* FROM credits.credit_debit('other', 'alice', 'gpt-4o-mini', 200000, 0, 'req-1') d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, replayed FROM res WHERE label = 'x1'$$,
    $$VALUES ('3'::credit, '3'::credit, '0'::credit, '97'::credit, false)$$,
    'request_id: the same id in another org (other arguments too) is charged there, not replayed, not UC007');
SELECT isnt((SELECT entry_id FROM res WHERE label = 'x1'), (SELECT entry_id FROM res WHERE label = 'i1'),
            'request_id: ... with its own ledger entry');
INSERT INTO res SELECT 'x2', d.* FROM credits.credit_debit('other', 'alice', 'gpt-4o-mini', 200000, 0, 'req-1') d;
SELECT results_eq(
    $$SELECT entry_id, charged, available, replayed FROM res WHERE label = 'x2'$$,
    $$SELECT entry_id, charged, available, true FROM res WHERE label = 'x1'$$,
    'request_id: the other org replays its own entry');
SELECT results_eq(
    $$SELECT org_id, user_id, model FROM credits.ledger WHERE request_id = 'req-1' ORDER BY org_id$$,
    $$VALUES ('acme'::text, 'alice'::text, 'gpt-4o'::text), ('other', 'alice', 'gpt-4o-mini')$$,
    'request_id: one entry per org');
SELECT results_eq(
    $$SELECT allowance_used, available FROM credits.pool_status WHERE org_id = 'acme'$$,
    $$SELECT allowance_used, available FROM acme_before$$,
    'request_id: the other org''s call did not touch acme''s pool');

-- a 255-byte request_id is fine
SELECT lives_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o-mini', 1, 0, repeat('r', 255))$$,
                'request_id of 255 bytes is accepted');
SELECT lives_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o-mini', 1, 0, NULL)$$,
                'request_id NULL: no idempotency, accepted');

-- ---------------------------------------------------------------------------
-- Errors, each changing nothing
-- ---------------------------------------------------------------------------
DROP TABLE snap_pool, snap_usage, snap_count;
CREATE TEMP TABLE snap_pool AS SELECT * FROM credits.pools;
CREATE TEMP TABLE snap_usage AS SELECT * FROM credits.member_usage;
CREATE TEMP TABLE snap_ledger AS SELECT entry_id FROM credits.ledger;
CREATE TEMP TABLE snap_events AS SELECT event_id FROM credits.events;

-- 22004: a NULL argument, named
SELECT throws_ok($$SELECT * FROM credits.credit_debit(NULL, 'alice', 'gpt-4o', 1)$$,
                 '22004', 'org_id must not be null', 'NULL org_id: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', NULL, 'gpt-4o', 1)$$,
                 '22004', 'user_id must not be null', 'NULL user_id: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', NULL, 1)$$,
                 '22004', 'model must not be null', 'NULL model: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', NULL)$$,
                 '22004', 'input_tokens must not be null', 'NULL input_tokens: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 1, NULL)$$,
                 '22004', 'output_tokens must not be null', 'NULL output_tokens: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', NULL, NULL, 'req-1')$$,
                 '22004', 'input_tokens must not be null', 'NULL tokens with a known request_id: 22004, not a replay');
-- 22023: empty or too long ids, negative tokens
SELECT throws_ok($$SELECT * FROM credits.credit_debit('', 'alice', 'gpt-4o', 1)$$,
                 '22023', 'org_id must not be empty', 'empty org_id: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_debit(repeat('o', 256), 'alice', 'gpt-4o', 1)$$,
                 '22023', 'org_id is too long', '256-byte org_id: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', '', 'gpt-4o', 1)$$,
                 '22023', 'user_id must not be empty', 'empty user_id: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', repeat('u', 256), 'gpt-4o', 1)$$,
                 '22023', 'user_id is too long', '256-byte user_id: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', '', 1)$$,
                 '22023', 'model must not be empty', 'empty model: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', repeat('m', 256), 1)$$,
                 '22023', 'model is too long', '256-byte model: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 1, 0, '')$$,
                 '22023', 'request_id must not be empty', 'empty request_id: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 1, 0, repeat('r', 256))$$,
                 '22023', 'request_id is too long', '256-byte request_id: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', -1)$$,
                 '22023', 'input_tokens must not be negative', 'negative input_tokens: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 1, -1)$$,
                 '22023', 'output_tokens must not be negative', 'negative output_tokens: 22023');
-- UC004, UC005, UC002, UC003
SELECT throws_ok($$SELECT * FROM credits.credit_debit('nope', 'alice', 'gpt-4o', 1)$$,
                 'UC004', 'unknown org "nope"', 'unknown org: UC004');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'stranger', 'gpt-4o', 1)$$,
                 'UC005', 'user "stranger" is not an active member of org "acme"', 'not a member: UC005');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'carol', 'gpt-4o', 1)$$,
                 'UC005', NULL, 'a removed member: UC005');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'carol', 'gpt-4o-mini', 1)$$,
                 'UC005', NULL, 'a removed member, even for a fallback: UC005');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'tina', 'gpt-4o', 1)$$,
                 'UC005', NULL, 'a member of another org: UC005');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'no-such-model', 1)$$,
                 'UC002', 'unknown or inactive model "no-such-model"', 'unknown model: UC002');
UPDATE credits.models SET active = false WHERE model = 'o3';
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'o3', 1)$$,
                 'UC002', NULL, 'inactive model: UC002');
UPDATE credits.models SET active = true WHERE model = 'o3';
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gemini-2.5-pro', 1)$$,
                 'UC003', NULL, 'provider not enabled (premium model): UC003');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gemini-2.0-flash', 1)$$,
                 'UC003', NULL, 'provider not enabled (fallback model): UC003');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('small', 'sam', 'claude-haiku-4-5', 1)$$,
                 'UC003', NULL, 'provider not enabled for this org though enabled for others: UC003');
-- 22003: the cost overflows a credit
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'claude-opus-4-1', 9223372036854775807)$$,
                 '22003', NULL, 'cost out of range (input): 22003');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'claude-opus-4-1', 0, 9223372036854775807, 'req-big')$$,
                 '22003', NULL, 'cost out of range (output, with a request_id): 22003');
-- the order of the checks
SELECT throws_ok($$SELECT * FROM credits.credit_debit('nope', 'stranger', 'no-such-model', NULL)$$,
                 '22004', 'input_tokens must not be null', 'order: a NULL argument before any lookup');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('nope', 'stranger', 'no-such-model', -1)$$,
                 '22023', 'input_tokens must not be negative', 'order: negative tokens before any lookup');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('nope', 'stranger', 'no-such-model', 1)$$,
                 'UC004', NULL, 'order: unknown org before member and model');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'stranger', 'no-such-model', 1)$$,
                 'UC005', NULL, 'order: not a member before the model');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'no-such-model', 4000, 1000, 'req-1')$$,
                 'UC002', NULL, 'order: unknown model before a reused request_id');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'gemini-2.5-pro', 4000, 1000, 'req-1')$$,
                 'UC003', NULL, 'order: provider not enabled before a reused request_id');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('acme', 'alice', 'claude-opus-4-1', 9223372036854775807, 0, 'req-1')$$,
                 'UC007', NULL, 'order: a reused request_id before the cost overflow');

SELECT results_eq(
    $$SELECT entry_id FROM credits.ledger ORDER BY entry_id$$,
    $$SELECT entry_id FROM snap_ledger ORDER BY entry_id$$,
    'errors: no ledger row was added');
SELECT results_eq(
    $$SELECT org_id, period_start, allowance, allowance_used, topup, topup_used, reserved, alert_level
        FROM credits.pools ORDER BY org_id$$,
    $$SELECT org_id, period_start, allowance, allowance_used, topup, topup_used, reserved, alert_level
        FROM snap_pool ORDER BY org_id$$,
    'errors: no pool changed');
SELECT results_eq(
    $$SELECT org_id, user_id, used FROM credits.member_usage ORDER BY org_id, user_id$$,
    $$SELECT org_id, user_id, used FROM snap_usage ORDER BY org_id, user_id$$,
    'errors: no member usage changed');
SELECT results_eq(
    $$SELECT event_id FROM credits.events ORDER BY event_id$$,
    $$SELECT event_id FROM snap_events ORDER BY event_id$$,
    'errors: no event was written');

-- a request_id whose call failed was not used up
INSERT INTO res SELECT 'b1', d.* FROM credits.credit_debit('acme', 'alice', 'gpt-4o-mini', 1, 0, 'req-big') d;
SELECT is((SELECT replayed FROM res WHERE label = 'b1'), false,
          'a request_id whose call failed (22003) is free for a new call');

-- ---------------------------------------------------------------------------
-- The function itself
-- ---------------------------------------------------------------------------
SELECT ok((SELECT NOT proisstrict AND provolatile = 'v' AND prosecdef
             FROM pg_proc WHERE oid = 'credits.credit_debit(text, text, text, bigint, bigint, text)'::regprocedure),
          'credit_debit is not STRICT, VOLATILE, SECURITY DEFINER');
SELECT is((SELECT prorettype::regtype FROM pg_proc
             WHERE oid = 'credits.credit_debit(text, text, text, bigint, bigint, text)'::regprocedure),
          'credits.debit_result'::regtype, 'credit_debit returns credits.debit_result');

SELECT * FROM finish();
ROLLBACK;
