-- pgTAP: streaming calls, credits.credit_reserve() / credit_settle() / credit_release()
-- and credits.expire_holds()
--
-- now() is frozen inside this transaction, so no hold can pass its expiry by
-- the clock here: expiry is tested through expire_holds(as_of) with an as_of
-- in the future.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(213);

-- ---------------------------------------------------------------------------
-- Fixtures
--   h     100 per user: ann, ben, cat (removed)   -> pool 300; openai + anthropic
--   hs    10: sid                                  -> pool 10;  openai
--   hf    10: fay                                  -> pool 10;  openai + anthropic
--   hg    10: gus                                  -> pool 10;  openai
--   hc    100 per user: cu (cap 5), cv             -> pool 200; openai
--   hn    10: nia                                  -> pool 10;  openai + nofb (no fallback)
--   hr    100 per user: rita, rob                  -> pool 200; openai
--   hr2   100: rita                                -> pool 100; openai
--   hx    100: xia                                 -> pool 100; openai
--   hy    10: yan                                  -> pool 10;  openai
-- Prices per 1M tokens: gpt-4o 250/1000, gpt-4o-mini 15/60, claude-haiku-4-5
-- 100/500, claude-sonnet-4-5 300/1500, claude-opus-4-1 1500/7500,
-- o3 200/800, nofb-pro 100/100.
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM credits.create_org('h', allowance_per_user => 100);
    PERFORM credits.enable_provider('h', 'openai');
    PERFORM credits.enable_provider('h', 'anthropic');
    PERFORM credits.add_member('h', 'ann');
    PERFORM credits.add_member('h', 'ben');
    PERFORM credits.add_member('h', 'cat');
    PERFORM credits.remove_member('h', 'cat');

    PERFORM credits.create_org('hs', allowance_per_user => 10);
    PERFORM credits.enable_provider('hs', 'openai');
    PERFORM credits.add_member('hs', 'sid');

    PERFORM credits.create_org('hf', allowance_per_user => 10);
    PERFORM credits.enable_provider('hf', 'openai');
    PERFORM credits.enable_provider('hf', 'anthropic');
    PERFORM credits.add_member('hf', 'fay');

    PERFORM credits.create_org('hg', allowance_per_user => 10);
    PERFORM credits.enable_provider('hg', 'openai');
    PERFORM credits.add_member('hg', 'gus');

    PERFORM credits.create_org('hc', allowance_per_user => 100);
    PERFORM credits.enable_provider('hc', 'openai');
    PERFORM credits.add_member('hc', 'cu', cap => 5);
    PERFORM credits.add_member('hc', 'cv');

    -- a provider whose only model is premium: no fallback to switch to
    PERFORM credits.add_provider('nofb', 'No Fallback Inc');
    PERFORM credits.upsert_model('nofb', 'nofb-pro', 100, 100);
    PERFORM credits.create_org('hn', allowance_per_user => 10);
    PERFORM credits.enable_provider('hn', 'openai');
    PERFORM credits.enable_provider('hn', 'nofb');
    PERFORM credits.add_member('hn', 'nia');

    PERFORM credits.create_org('hr', allowance_per_user => 100);
    PERFORM credits.enable_provider('hr', 'openai');
    PERFORM credits.add_member('hr', 'rita');
    PERFORM credits.add_member('hr', 'rob');

    PERFORM credits.create_org('hr2', allowance_per_user => 100);
    PERFORM credits.enable_provider('hr2', 'openai');
    PERFORM credits.add_member('hr2', 'rita');

    PERFORM credits.create_org('hx', allowance_per_user => 100);
    PERFORM credits.enable_provider('hx', 'openai');
    PERFORM credits.add_member('hx', 'xia');

    PERFORM credits.create_org('hy', allowance_per_user => 10);
    PERFORM credits.enable_provider('hy', 'openai');
    PERFORM credits.add_member('hy', 'yan');
END
$$;

-- every reserve, settle and release result, labelled
CREATE TEMP TABLE hr (label text PRIMARY KEY, hold_id bigint, model text, fell_back boolean,
                      reserved credits.credit, available credits.credit, expires_at timestamptz,
                      replayed boolean);
CREATE TEMP TABLE dr (label text PRIMARY KEY, entry_id bigint, model text, cost credits.credit,
                      charged credits.credit, shortfall credits.credit, available credits.credit,
                      exhausted boolean, replayed boolean);
CREATE TEMP TABLE rl (label text PRIMARY KEY, released credits.credit);
-- the hold of a labelled reserve
CREATE FUNCTION pg_temp.hid(l text) RETURNS bigint LANGUAGE sql STABLE
    AS $$SELECT hold_id FROM hr WHERE label = l$$;

SELECT is((SELECT available FROM credits.pool_status WHERE org_id = 'h'), '300'::credit,
          'fixture: h has 300');

-- ---------------------------------------------------------------------------
-- A premium hold
-- ---------------------------------------------------------------------------
-- gpt-4o, 20000 in + 4000 out: 5 + 4 = 9
INSERT INTO hr SELECT 'a1', r.* FROM credits.credit_reserve('h', 'ann', 'gpt-4o', 20000, 4000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available, expires_at, replayed FROM hr WHERE label = 'a1'$$,
    $$VALUES ('gpt-4o'::text, false, '9'::credit, '291'::credit, now() + interval '15 minutes', false)$$,
    'premium hold: the estimate (9) is held for gpt-4o, 291 left, expires in the default 15 minutes');
SELECT results_eq(
    $$SELECT org_id, user_id, requested_model, model, fell_back, input_tokens, max_output_tokens,
             estimate, reserved, available_after, status, created_at, expires_at, ended_at, request_id
        FROM credits.holds WHERE hold_id = pg_temp.hid('a1')$$,
    $$VALUES ('h'::text, 'ann'::text, 'gpt-4o'::text, 'gpt-4o'::text, false, 20000::bigint, 4000::bigint,
              '9'::credit, '9'::credit, '291'::credit, 'open'::text, now(), now() + interval '15 minutes',
              NULL::timestamptz, NULL::text)$$,
    'premium hold: the holds row is open and records the request');
SELECT results_eq(
    $$SELECT kind, user_id, model, input_tokens, output_tokens, cost, charged, shortfall,
             from_allowance, from_topup, reserved_change, available_after, request_id
        FROM credits.ledger WHERE hold_id = pg_temp.hid('a1')$$,
    $$VALUES ('hold'::text, 'ann'::text, 'gpt-4o'::text, 20000::bigint, 4000::bigint, '9'::credit,
              '0'::credit, '0'::credit, '0'::credit, '0'::credit, '9'::credit, '291'::credit, NULL::text)$$,
    'premium hold: one ledger row of kind hold, reserved_change = 9, nothing charged');
SELECT results_eq(
    $$SELECT allowance, allowance_used, topup, reserved, available, exhausted
        FROM credits.pool_status WHERE org_id = 'h'$$,
    $$VALUES ('300'::credit, '0'::credit, '0'::credit, '9'::credit, '291'::credit, false)$$,
    'premium hold: pool_status shows 9 reserved, 291 available, nothing used');
SELECT is((SELECT coalesce(sum(used), 0) FROM credits.member_usage WHERE org_id = 'h'), '0'::credit,
          'premium hold: a hold charges no member usage');
SELECT is_empty($$SELECT * FROM credits.verify('h')$$, 'premium hold: verify(h) is clean');

-- ---------------------------------------------------------------------------
-- Settle below, equal to and above the estimate; settle of nothing
-- ---------------------------------------------------------------------------
-- below: 20000 in + 1000 out = 6 of the 9 held
INSERT INTO dr SELECT 'a1', d.* FROM credits.credit_settle(pg_temp.hid('a1'), 20000, 1000) d;
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM dr WHERE label = 'a1'$$,
    $$VALUES ('gpt-4o'::text, '6'::credit, '6'::credit, '0'::credit, '294'::credit, false, false)$$,
    'settle below the estimate: cost 6 charged, the other 3 released, 294 left');
SELECT is((SELECT entry_id FROM dr WHERE label = 'a1'), (SELECT max(entry_id) FROM credits.ledger WHERE org_id = 'h'),
          'settle: entry_id is the new ledger row');
SELECT results_eq(
    $$SELECT kind, hold_id, user_id, model, input_tokens, output_tokens, cost, charged, shortfall,
             from_allowance, from_topup, reserved_change, available_after
        FROM credits.ledger WHERE entry_id = (SELECT entry_id FROM dr WHERE label = 'a1')$$,
    $$SELECT 'settle'::text, pg_temp.hid('a1'), 'ann'::text, 'gpt-4o'::text, 20000::bigint, 1000::bigint,
             '6'::credit, '6'::credit, '0'::credit, '6'::credit, '0'::credit, '-9'::credit, '294'::credit$$,
    'settle: ledger row of kind settle with the hold_id, the real usage and reserved_change = -9');
SELECT results_eq(
    $$SELECT status, reserved, ended_at FROM credits.holds WHERE hold_id = pg_temp.hid('a1')$$,
    $$VALUES ('settled'::text, '0'::credit, now())$$,
    'settle: the hold is settled and holds nothing');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available FROM credits.pool_status WHERE org_id = 'h'$$,
    $$VALUES ('6'::credit, '0'::credit, '294'::credit)$$,
    'settle: pool_status has 6 used and nothing reserved');
SELECT is((SELECT used FROM credits.member_usage WHERE org_id = 'h' AND user_id = 'ann'), '6'::credit,
          'settle: the member is charged the cost');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE hold_id = pg_temp.hid('a1')), 2,
          'settle: the hold has two ledger rows (hold, settle)');

-- equal: 4000 in + 1000 out = 2, both held and used
INSERT INTO hr SELECT 'a2', r.* FROM credits.credit_reserve('h', 'ann', 'gpt-4o', 4000, 1000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 'a2'$$,
    $$VALUES ('gpt-4o'::text, false, '2'::credit, '292'::credit)$$,
    'equal: 2 held');
INSERT INTO dr SELECT 'a2', d.* FROM credits.credit_settle(pg_temp.hid('a2'), 4000, 1000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM dr WHERE label = 'a2'$$,
    $$VALUES ('2'::credit, '2'::credit, '0'::credit, '292'::credit, false)$$,
    'settle equal to the estimate: 2 charged, nothing left over');
SELECT results_eq(
    $$SELECT reserved_change, charged, from_allowance FROM credits.ledger
       WHERE entry_id = (SELECT entry_id FROM dr WHERE label = 'a2')$$,
    $$VALUES ('-2'::credit, '2'::credit, '2'::credit)$$,
    'settle equal: ledger releases the 2 held and charges 2');

-- above, the pool can pay: 2 held, 6 used
INSERT INTO hr SELECT 'a3', r.* FROM credits.credit_reserve('h', 'ben', 'gpt-4o', 4000, 1000) r;
SELECT is((SELECT available FROM hr WHERE label = 'a3'), '290'::credit, 'above: 2 held, 290 left');
INSERT INTO dr SELECT 'a3', d.* FROM credits.credit_settle(pg_temp.hid('a3'), 20000, 1000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM dr WHERE label = 'a3'$$,
    $$VALUES ('6'::credit, '6'::credit, '0'::credit, '286'::credit, false)$$,
    'settle above the estimate: the excess (4) is charged from the pool, no shortfall');
SELECT results_eq(
    $$SELECT reserved_change, cost, charged, from_allowance, available_after FROM credits.ledger
       WHERE entry_id = (SELECT entry_id FROM dr WHERE label = 'a3')$$,
    $$VALUES ('-2'::credit, '6'::credit, '6'::credit, '6'::credit, '286'::credit)$$,
    'settle above: ledger releases the 2 held and charges 6');
SELECT is((SELECT used FROM credits.member_usage WHERE org_id = 'h' AND user_id = 'ben'), '6'::credit,
          'settle above: the member is charged the full cost');

-- nothing used: 6 held, 0 tokens
INSERT INTO hr SELECT 'a4', r.* FROM credits.credit_reserve('h', 'ben', 'gpt-4o', 20000, 1000) r;
INSERT INTO dr SELECT 'a4', d.* FROM credits.credit_settle(pg_temp.hid('a4'), 0, 0) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available FROM dr WHERE label = 'a4'$$,
    $$VALUES ('0'::credit, '0'::credit, '0'::credit, '286'::credit)$$,
    'settle with 0 tokens: nothing charged, the whole hold released');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available FROM credits.pool_status WHERE org_id = 'h'$$,
    $$VALUES ('14'::credit, '0'::credit, '286'::credit)$$,
    'settle: h has used 6 + 2 + 6 + 0, nothing reserved');

-- ---------------------------------------------------------------------------
-- Release
-- ---------------------------------------------------------------------------
-- claude-sonnet-4-5, 10000 in + 2000 out: 3 + 3 = 6
INSERT INTO hr SELECT 'a5', r.* FROM credits.credit_reserve('h', 'ann', 'claude-sonnet-4-5', 10000, 2000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 'a5'$$,
    $$VALUES ('claude-sonnet-4-5'::text, false, '6'::credit, '280'::credit)$$,
    'release: a hold of 6 on another provider');
INSERT INTO rl SELECT 'a5', credits.credit_release(pg_temp.hid('a5'));
SELECT is((SELECT released FROM rl WHERE label = 'a5'), '6'::credit, 'release: returns the 6 released');
SELECT results_eq(
    $$SELECT kind, user_id, model, cost, charged, shortfall, reserved_change, available_after
        FROM credits.ledger WHERE hold_id = pg_temp.hid('a5') AND kind <> 'hold'$$,
    $$VALUES ('release'::text, 'ann'::text, 'claude-sonnet-4-5'::text, '0'::credit, '0'::credit, '0'::credit,
              '-6'::credit, '286'::credit)$$,
    'release: one ledger row of kind release, reserved_change = -6, nothing charged');
SELECT results_eq(
    $$SELECT status, reserved, ended_at FROM credits.holds WHERE hold_id = pg_temp.hid('a5')$$,
    $$VALUES ('released'::text, '0'::credit, now())$$,
    'release: the hold is released and holds nothing');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available FROM credits.pool_status WHERE org_id = 'h'$$,
    $$VALUES ('14'::credit, '0'::credit, '286'::credit)$$,
    'release: the pool is back where it was');
SELECT is((SELECT used FROM credits.member_usage WHERE org_id = 'h' AND user_id = 'ann'), '8'::credit,
          'release: the member is charged nothing');

-- two open holds at once (a6 stays open until the errors section)
INSERT INTO hr SELECT 'a6', r.* FROM credits.credit_reserve('h', 'ann', 'gpt-4o', 4000, 1000) r;
INSERT INTO hr SELECT 'a7', r.* FROM credits.credit_reserve('h', 'ben', 'gpt-4o-mini', 200000, 0) r;
SELECT results_eq(
    $$SELECT label, model, fell_back, reserved, available FROM hr WHERE label IN ('a6', 'a7') ORDER BY label$$,
    $$VALUES ('a6'::text, 'gpt-4o'::text, false, '2'::credit, '284'::credit),
             ('a7', 'gpt-4o-mini', false, '3'::credit, '281'::credit)$$,
    'two holds: 2 then 3 (a fallback model asked for directly is held at its estimate)');
SELECT results_eq(
    $$SELECT reserved, available FROM credits.pool_status WHERE org_id = 'h'$$,
    $$VALUES ('5'::credit, '281'::credit)$$,
    'two holds: pool_status reserves their sum');
INSERT INTO rl SELECT 'a7', credits.credit_release(pg_temp.hid('a7'));
SELECT results_eq(
    $$SELECT (SELECT released FROM rl WHERE label = 'a7'), reserved, available
        FROM credits.pool_status WHERE org_id = 'h'$$,
    $$VALUES ('3'::credit, '2'::credit, '284'::credit)$$,
    'two holds: releasing one gives back only its 3');
SELECT is_empty($$SELECT * FROM credits.verify('h')$$, 'h: verify is clean');

-- ---------------------------------------------------------------------------
-- Settle above the estimate when the pool cannot pay: shortfall
-- ---------------------------------------------------------------------------
INSERT INTO hr SELECT 's1', r.* FROM credits.credit_reserve('hs', 'sid', 'gpt-4o', 20000, 1000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 's1'$$,
    $$VALUES ('gpt-4o'::text, false, '6'::credit, '4'::credit)$$,
    'hs: 6 of 10 held');
-- 40000 in + 1000 out = 11: 6 from the hold, 4 from the pool, 1 short
INSERT INTO dr SELECT 's1', d.* FROM credits.credit_settle(pg_temp.hid('s1'), 40000, 1000) d;
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted FROM dr WHERE label = 's1'$$,
    $$VALUES ('gpt-4o'::text, '11'::credit, '10'::credit, '1'::credit, '0'::credit, true)$$,
    'settle above, pool short: the hold and what is left are charged (10), shortfall 1, exhausted');
SELECT results_eq(
    $$SELECT cost, charged, shortfall, from_allowance, reserved_change, available_after FROM credits.ledger
       WHERE entry_id = (SELECT entry_id FROM dr WHERE label = 's1')$$,
    $$VALUES ('11'::credit, '10'::credit, '1'::credit, '10'::credit, '-6'::credit, '0'::credit)$$,
    'settle above, pool short: the usage is recorded in full');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available, exhausted FROM credits.pool_status WHERE org_id = 'hs'$$,
    $$VALUES ('10'::credit, '0'::credit, '0'::credit, true)$$,
    'settle above, pool short: the pool is at 0, never below');
SELECT is((SELECT used FROM credits.member_usage WHERE org_id = 'hs' AND user_id = 'sid'), '10'::credit,
          'settle above, pool short: the member is charged what was charged');

-- ---------------------------------------------------------------------------
-- Exhausted: fallback holds of 0, settled for free
-- ---------------------------------------------------------------------------
INSERT INTO hr SELECT 's2', r.* FROM credits.credit_reserve('hs', 'sid', 'gpt-4o', 4000, 1000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available, replayed FROM hr WHERE label = 's2'$$,
    $$VALUES ('gpt-4o-mini'::text, true, '0'::credit, '0'::credit, false)$$,
    'exhausted: a premium reserve falls back and holds 0');
SELECT results_eq(
    $$SELECT requested_model, model, fell_back, reserved, status FROM credits.holds WHERE hold_id = pg_temp.hid('s2')$$,
    $$VALUES ('gpt-4o'::text, 'gpt-4o-mini'::text, true, '0'::credit, 'open'::text)$$,
    'exhausted: the hold of 0 is open, on the fallback');
SELECT results_eq(
    $$SELECT kind, model, coalesce(reserved_change, 0), available_after FROM credits.ledger
       WHERE hold_id = pg_temp.hid('s2')$$,
    $$VALUES ('hold'::text, 'gpt-4o-mini'::text, '0'::credit, '0'::credit)$$,
    'exhausted: the hold of 0 is ledgered');
-- gpt-4o-mini, 200000 in = 3
INSERT INTO dr SELECT 's2', d.* FROM credits.credit_settle(pg_temp.hid('s2'), 200000, 0) d;
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted FROM dr WHERE label = 's2'$$,
    $$VALUES ('gpt-4o-mini'::text, '3'::credit, '0'::credit, '0'::credit, '0'::credit, true)$$,
    'exhausted: settling the fallback hold is free (charged 0, shortfall 0)');
SELECT is((SELECT status FROM credits.holds WHERE hold_id = pg_temp.hid('s2')), 'settled',
          'exhausted: the hold of 0 is settled');

INSERT INTO hr SELECT 's3', r.* FROM credits.credit_reserve('hs', 'sid', 'gpt-4o-mini', 200000, 0) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 's3'$$,
    $$VALUES ('gpt-4o-mini'::text, false, '0'::credit, '0'::credit)$$,
    'exhausted: the fallback asked for directly holds 0, fell_back false');
INSERT INTO hr SELECT 's4', r.* FROM credits.credit_reserve('hs', 'sid', 'gpt-4o', 0, 0) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved FROM hr WHERE label = 's4'$$,
    $$VALUES ('gpt-4o-mini'::text, true, '0'::credit)$$,
    'exhausted: a premium reserve with an estimate of 0 still falls back (nothing can be drawn)');
INSERT INTO rl SELECT 's3', credits.credit_release(pg_temp.hid('s3'));
INSERT INTO rl SELECT 's4', credits.credit_release(pg_temp.hid('s4'));
SELECT results_eq(
    $$SELECT released FROM rl WHERE label IN ('s3', 's4') ORDER BY label$$,
    $$VALUES ('0'::credit), ('0'::credit)$$,
    'exhausted: releasing a hold of 0 returns 0');
SELECT is((SELECT status FROM credits.holds WHERE hold_id = pg_temp.hid('s4')), 'released',
          'exhausted: the hold of 0 is released');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available FROM credits.pool_status WHERE org_id = 'hs'$$,
    $$VALUES ('10'::credit, '0'::credit, '0'::credit)$$,
    'exhausted: the pool is unchanged by the free holds');
SELECT is_empty($$SELECT * FROM credits.verify('hs')$$, 'hs: verify is clean');

-- ---------------------------------------------------------------------------
-- Fallback switch when the pool cannot cover the estimate
-- ---------------------------------------------------------------------------
-- gpt-4o, 40000 in + 1000 out = 11 > 10: gpt-4o-mini 0.6 + 0.06 = 0.66 is held
INSERT INTO hr SELECT 'f1', r.* FROM credits.credit_reserve('hf', 'fay', 'gpt-4o', 40000, 1000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available, replayed FROM hr WHERE label = 'f1'$$,
    $$VALUES ('gpt-4o-mini'::text, true, '0.66'::credit, '9.34'::credit, false)$$,
    'fallback: an estimate above the pool switches to gpt-4o-mini and holds its estimate (0.66)');
SELECT results_eq(
    $$SELECT requested_model, model, fell_back, input_tokens, max_output_tokens, estimate, reserved
        FROM credits.holds WHERE hold_id = pg_temp.hid('f1')$$,
    $$VALUES ('gpt-4o'::text, 'gpt-4o-mini'::text, true, 40000::bigint, 1000::bigint, '0.66'::credit, '0.66'::credit)$$,
    'fallback: the holds row keeps the requested model and the model to call');
SELECT results_eq(
    $$SELECT kind, model, cost, reserved_change FROM credits.ledger WHERE hold_id = pg_temp.hid('f1')$$,
    $$VALUES ('hold'::text, 'gpt-4o-mini'::text, '0.66'::credit, '0.66'::credit)$$,
    'fallback: the ledger holds the fallback''s estimate for the fallback');
-- claude-opus-4-1 1000000 in + 100000 out = 2250; claude-haiku-4-5: 100 + 50 = 150 > 9.34
INSERT INTO hr SELECT 'f2', r.* FROM credits.credit_reserve('hf', 'fay', 'claude-opus-4-1', 1000000, 100000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 'f2'$$,
    $$VALUES ('claude-haiku-4-5'::text, true, '9.34'::credit, '0'::credit)$$,
    'fallback: the fallback''s estimate above what is left holds what is left (9.34)');
SELECT is((SELECT estimate FROM credits.holds WHERE hold_id = pg_temp.hid('f2')), '150'::credit,
          'fallback: the holds row records the fallback''s full estimate');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available, exhausted FROM credits.pool_status WHERE org_id = 'hf'$$,
    $$VALUES ('0'::credit, '10'::credit, '0'::credit, true)$$,
    'fallback: holds took the pool to 0, nothing used yet');
SELECT results_eq(
    $$SELECT model, available, reason FROM credits.allowed_models('hf', 'fay')$$,
    $$VALUES ('claude-opus-4-1'::text, false, 'credits_exhausted'::text),
             ('claude-sonnet-4-5', false, 'credits_exhausted'), ('claude-haiku-4-5', true, NULL),
             ('gpt-4.1', false, 'credits_exhausted'), ('gpt-4o', false, 'credits_exhausted'),
             ('o3', false, 'credits_exhausted'), ('gpt-4o-mini', true, NULL)$$,
    'fallback: with holds taking everything, allowed_models grays out the premium models');
SELECT is(credits.resolve_model('hf', 'fay', 'gpt-4o'), 'gpt-4o-mini',
          'fallback: resolve_model returns the fallback while holds take everything');

-- settle the haiku hold above its 9.34: a fallback is never short
INSERT INTO dr SELECT 'f2', d.* FROM credits.credit_settle(pg_temp.hid('f2'), 200000, 0) d;
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted FROM dr WHERE label = 'f2'$$,
    $$VALUES ('claude-haiku-4-5'::text, '20'::credit, '9.34'::credit, '0'::credit, '0'::credit, true)$$,
    'fallback hold settled above what the pool has: charged the hold (9.34), no shortfall');
-- settle the gpt-4o-mini hold below its 0.66: 20000 in = 0.3
INSERT INTO dr SELECT 'f1', d.* FROM credits.credit_settle(pg_temp.hid('f1'), 20000, 0) d;
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted FROM dr WHERE label = 'f1'$$,
    $$VALUES ('gpt-4o-mini'::text, '0.3'::credit, '0.3'::credit, '0'::credit, '0.36'::credit, false)$$,
    'fallback hold settled below: 0.3 charged, 0.36 released');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available, exhausted FROM credits.pool_status WHERE org_id = 'hf'$$,
    $$VALUES ('9.64'::credit, '0'::credit, '0.36'::credit, false)$$,
    'fallback: hf has 9.64 used, 0.36 left');
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('hf', 'fay')),
          'fallback: with credits free again every model is available');
SELECT is_empty($$SELECT * FROM credits.verify('hf')$$, 'hf: verify is clean');

-- ---------------------------------------------------------------------------
-- The boundary: a premium hold needs the whole estimate
-- ---------------------------------------------------------------------------
-- gpt-4o 40004 in = 10.001 > 10: gpt-4o-mini 0.60006 is held instead
INSERT INTO hr SELECT 'g1', r.* FROM credits.credit_reserve('hg', 'gus', 'gpt-4o', 40004, 0) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 'g1'$$,
    $$VALUES ('gpt-4o-mini'::text, true, '0.60006'::credit, '9.39994'::credit)$$,
    'boundary: an estimate 0.001 above the pool falls back');
INSERT INTO rl SELECT 'g1', credits.credit_release(pg_temp.hid('g1'));
SELECT is((SELECT released FROM rl WHERE label = 'g1'), '0.60006'::credit, 'boundary: released 0.60006');
-- gpt-4o 40000 in = 10 = the pool
INSERT INTO hr SELECT 'g2', r.* FROM credits.credit_reserve('hg', 'gus', 'gpt-4o', 40000, 0) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 'g2'$$,
    $$VALUES ('gpt-4o'::text, false, '10'::credit, '0'::credit)$$,
    'boundary: an estimate equal to the pool is held for the premium model');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available, exhausted FROM credits.pool_status WHERE org_id = 'hg'$$,
    $$VALUES ('0'::credit, '10'::credit, '0'::credit, true)$$,
    'boundary: pool_status: all 10 reserved, 0 available, exhausted');
SELECT results_eq(
    $$SELECT DISTINCT available, reason FROM credits.allowed_models('hg', 'gus') WHERE NOT is_fallback$$,
    $$VALUES (false, 'credits_exhausted'::text)$$,
    'boundary: a hold of the whole pool grays out the premium models');
SELECT results_eq(
    $$SELECT DISTINCT available, reason FROM credits.allowed_models('hg') WHERE NOT is_fallback$$,
    $$VALUES (false, 'credits_exhausted'::text)$$,
    'boundary: ... also without a user');
INSERT INTO rl SELECT 'g2', credits.credit_release(pg_temp.hid('g2'));
SELECT results_eq(
    $$SELECT (SELECT released FROM rl WHERE label = 'g2'), reserved, available, exhausted
        FROM credits.pool_status WHERE org_id = 'hg'$$,
    $$VALUES ('10'::credit, '0'::credit, '10'::credit, false)$$,
    'boundary: releasing it gives the 10 back');
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('hg', 'gus')),
          'boundary: after the release every model is available again');

-- ---------------------------------------------------------------------------
-- Member caps: limit = least(available, cap_left), where cap_left is the cap
-- less what the member used and holds in open holds
-- ---------------------------------------------------------------------------
-- cu has a cap of 5; gpt-4o 4000 in + 1000 out = 2
INSERT INTO hr SELECT 'c1', r.* FROM credits.credit_reserve('hc', 'cu', 'gpt-4o', 4000, 1000) r;
INSERT INTO hr SELECT 'c2', r.* FROM credits.credit_reserve('hc', 'cu', 'gpt-4o', 4000, 1000) r;
SELECT results_eq(
    $$SELECT label, model, fell_back, reserved, available FROM hr WHERE label IN ('c1', 'c2') ORDER BY label$$,
    $$VALUES ('c1'::text, 'gpt-4o'::text, false, '2'::credit, '198'::credit),
             ('c2', 'gpt-4o', false, '2', '196')$$,
    'cap: two estimates within the cap are held for the premium model');
-- 4 of the cap are held: 2 more does not fit, gpt-4o-mini (0.12) does
INSERT INTO hr SELECT 'c3', r.* FROM credits.credit_reserve('hc', 'cu', 'gpt-4o', 4000, 1000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 'c3'$$,
    $$VALUES ('gpt-4o-mini'::text, true, '0.12'::credit, '195.88'::credit)$$,
    'cap: the member''s open holds count against the cap: the third reserve falls back');
SELECT results_eq(
    $$SELECT used, reserved FROM credits.member_usage WHERE org_id = 'hc' AND user_id = 'cu'$$,
    $$VALUES ('0'::credit, '4.12'::credit)$$,
    'cap: member_usage.reserved is what the member holds');
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('hc', 'cu')),
          'cap: with 0.88 of the cap left premium models are still available');
-- gpt-4o-mini 1000000 in = 15: held up to the 0.88 left of the cap
INSERT INTO hr SELECT 'c4', r.* FROM credits.credit_reserve('hc', 'cu', 'gpt-4o-mini', 1000000, 0) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 'c4'$$,
    $$VALUES ('gpt-4o-mini'::text, false, '0.88'::credit, '195'::credit)$$,
    'cap: a fallback asked for directly holds least(estimate, cap left) = 0.88');
SELECT results_eq(
    $$SELECT DISTINCT available, reason FROM credits.allowed_models('hc', 'cu') WHERE NOT is_fallback$$,
    $$VALUES (false, 'user_cap_reached'::text)$$,
    'cap: holds that take the whole cap gray out premium models for that member');
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('hc', 'cv')),
          'cap: ... but not for another member');
INSERT INTO hr SELECT 'c5', r.* FROM credits.credit_reserve('hc', 'cv', 'gpt-4o', 20000, 1000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 'c5'$$,
    $$VALUES ('gpt-4o'::text, false, '6'::credit, '189'::credit)$$,
    'cap: a member without a cap holds the premium estimate');
-- settle 6 on the hold of 2 with nothing left of the cap: 2 charged, 4 short
INSERT INTO dr SELECT 'c1', d.* FROM credits.credit_settle(pg_temp.hid('c1'), 20000, 1000) d;
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted FROM dr WHERE label = 'c1'$$,
    $$VALUES ('gpt-4o'::text, '6'::credit, '2'::credit, '4'::credit, '189'::credit, false)$$,
    'cap: what the hold covers is charged, the excess only within the cap');
SELECT results_eq(
    $$SELECT used, reserved FROM credits.member_usage WHERE org_id = 'hc' AND user_id = 'cu'$$,
    $$VALUES ('2'::credit, '3'::credit)$$,
    'cap: the settled hold moved from reserved to used');
INSERT INTO rl SELECT 'c2', credits.credit_release(pg_temp.hid('c2'));
SELECT is((SELECT released FROM rl WHERE label = 'c2'), '2'::credit, 'cap: a release gives back 2');
-- settle 15 on the fallback hold of 0.88: 0.88 + the 2 the release freed
INSERT INTO dr SELECT 'c4', d.* FROM credits.credit_settle(pg_temp.hid('c4'), 1000000, 0) d;
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall FROM dr WHERE label = 'c4'$$,
    $$VALUES ('gpt-4o-mini'::text, '15'::credit, '2.88'::credit, '0'::credit)$$,
    'cap: a fallback settle is charged up to the cap, the rest free');
INSERT INTO dr SELECT 'c3', d.* FROM credits.credit_settle(pg_temp.hid('c3'), 0, 0) d;
INSERT INTO dr SELECT 'c5', d.* FROM credits.credit_settle(pg_temp.hid('c5'), 20000, 1000) d;
SELECT results_eq(
    $$SELECT label, cost, charged, shortfall FROM dr WHERE label IN ('c3', 'c5') ORDER BY label$$,
    $$VALUES ('c3'::text, '0'::credit, '0'::credit, '0'::credit), ('c5', '6'::credit, '6'::credit, '0'::credit)$$,
    'cap: an empty settle costs nothing; the member without a cap pays in full');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available FROM credits.pool_status WHERE org_id = 'hc'$$,
    $$VALUES ('10.88'::credit, '0'::credit, '189.12'::credit)$$,
    'cap: hc has 2 + 2.88 + 6 used and nothing reserved');
SELECT results_eq(
    $$SELECT user_id, used, reserved FROM credits.member_usage WHERE org_id = 'hc' ORDER BY user_id$$,
    $$VALUES ('cu'::text, '4.88'::credit, '0'::credit), ('cv', '6'::credit, '0'::credit)$$,
    'cap: member usage, nothing held');
SELECT is_empty($$SELECT * FROM credits.verify('hc')$$, 'hc: verify is clean');

-- ---------------------------------------------------------------------------
-- UC001: a premium model that cannot be held and has no fallback
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE snap_hn AS SELECT * FROM credits.pools WHERE org_id = 'hn';
-- nofb-pro 200000 in = 20 > 10
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hn', 'nia', 'nofb-pro', 200000, 0)$$,
                 'UC001', 'no credits can be reserved for model "nofb-pro" and provider "nofb" has no fallback model',
                 'UC001: the estimate (20) is above the pool and the provider has no fallback');
SELECT results_eq(
    $$SELECT allowance_used, reserved FROM credits.pools WHERE org_id = 'hn'$$,
    $$SELECT allowance_used, reserved FROM snap_hn$$,
    'UC001: nothing was held');
SELECT is((SELECT count(*)::int FROM credits.holds WHERE org_id = 'hn'), 0, 'UC001: no holds row');
INSERT INTO hr SELECT 'n1', r.* FROM credits.credit_reserve('hn', 'nia', 'nofb-pro', 50000, 0) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM hr WHERE label = 'n1'$$,
    $$VALUES ('nofb-pro'::text, false, '5'::credit, '5'::credit)$$,
    'no fallback: an affordable estimate (5) is held');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hn', 'nia', 'nofb-pro', 60000, 0)$$,
                 'UC001', NULL, 'UC001: 6 when 5 are left');
INSERT INTO hr SELECT 'n2', r.* FROM credits.credit_reserve('hn', 'nia', 'nofb-pro', 50000, 0) r;
SELECT is((SELECT available FROM hr WHERE label = 'n2'), '0'::credit, 'no fallback: 5 when 5 are left is held');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hn', 'nia', 'nofb-pro', 0, 0)$$,
                 'UC001', NULL, 'UC001: an exhausted pool, even for an estimate of 0');
INSERT INTO hr SELECT 'n3', r.* FROM credits.credit_reserve('hn', 'nia', 'gpt-4o', 4000, 1000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved FROM hr WHERE label = 'n3'$$,
    $$VALUES ('gpt-4o-mini'::text, true, '0'::credit)$$,
    'no fallback: another provider of the same org still falls back');
SELECT results_eq(
    $$SELECT reserved, available FROM credits.pool_status WHERE org_id = 'hn'$$,
    $$VALUES ('10'::credit, '0'::credit)$$,
    'no fallback: the failed reserves held nothing');
INSERT INTO rl SELECT 'n1', credits.credit_release(pg_temp.hid('n1'));
INSERT INTO rl SELECT 'n2', credits.credit_release(pg_temp.hid('n2'));
INSERT INTO rl SELECT 'n3', credits.credit_release(pg_temp.hid('n3'));
-- a request_id whose reserve failed (UC001) was not used up
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hn', 'nia', 'nofb-pro', 200000, 0, 'rq-n')$$,
                 'UC001', NULL, 'UC001 with a request_id');
INSERT INTO hr SELECT 'n4', r.* FROM credits.credit_reserve('hn', 'nia', 'gpt-4o-mini', 200000, 0, 'rq-n') r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, replayed FROM hr WHERE label = 'n4'$$,
    $$VALUES ('gpt-4o-mini'::text, false, '3'::credit, false)$$,
    'a request_id whose reserve failed is free for a new call');
INSERT INTO rl SELECT 'n4', credits.credit_release(pg_temp.hid('n4'));
SELECT is_empty($$SELECT * FROM credits.verify('hn')$$, 'hn: verify is clean');

-- ---------------------------------------------------------------------------
-- Idempotency: request_id
-- ---------------------------------------------------------------------------
INSERT INTO hr SELECT 'r1', r.* FROM credits.credit_reserve('hr', 'rita', 'gpt-4o', 4000, 1000, 'rq-1') r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available, replayed FROM hr WHERE label = 'r1'$$,
    $$VALUES ('gpt-4o'::text, false, '2'::credit, '198'::credit, false)$$,
    'request_id: the first reserve holds, replayed false');
SELECT results_eq(
    $$SELECT (SELECT request_id FROM credits.holds WHERE hold_id = pg_temp.hid('r1')),
             (SELECT request_id FROM credits.ledger WHERE hold_id = pg_temp.hid('r1') AND kind = 'hold')$$,
    $$VALUES ('rq-1'::text, 'rq-1'::text)$$,
    'request_id: recorded on the hold and its ledger row');
-- the pool moves on before the repeat
INSERT INTO hr SELECT 'r2', r.* FROM credits.credit_reserve('hr', 'rob', 'gpt-4o', 4000, 1000) r;

CREATE TEMP TABLE snap_pool AS SELECT * FROM credits.pools WHERE org_id = 'hr';
CREATE TEMP TABLE snap_ledger AS SELECT entry_id FROM credits.ledger;
CREATE TEMP TABLE snap_holds AS SELECT hold_id, status, reserved FROM credits.holds;

INSERT INTO hr SELECT 'r3', r.* FROM credits.credit_reserve('hr', 'rita', 'gpt-4o', 4000, 1000, 'rq-1') r;
SELECT results_eq(
    $$SELECT hold_id, model, fell_back, reserved, available, expires_at, replayed FROM hr WHERE label = 'r3'$$,
    $$SELECT hold_id, model, fell_back, reserved, available, expires_at, true FROM hr WHERE label = 'r1'$$,
    'request_id: a repeat returns the original result with replayed true');
SELECT isnt((SELECT available FROM hr WHERE label = 'r3'),
            (SELECT available FROM credits.pool_status WHERE org_id = 'hr'),
            'request_id: ... the original available, not today''s');
INSERT INTO hr SELECT 'r4', r.* FROM credits.credit_reserve('hr', 'rita', 'gpt-4o', 4000, 1000, 'rq-1', interval '3 hours') r;
SELECT results_eq(
    $$SELECT hold_id, reserved, expires_at, replayed FROM hr WHERE label = 'r4'$$,
    $$SELECT hold_id, reserved, expires_at, true FROM hr WHERE label = 'r1'$$,
    'request_id: a repeat with another ttl replays the original (ttl is not part of the request)');
SELECT results_eq(
    $$SELECT entry_id FROM credits.ledger ORDER BY entry_id$$,
    $$SELECT entry_id FROM snap_ledger ORDER BY entry_id$$,
    'request_id: the repeats appended nothing to the ledger');
SELECT results_eq(
    $$SELECT hold_id, status, reserved FROM credits.holds ORDER BY hold_id$$,
    $$SELECT hold_id, status, reserved FROM snap_holds ORDER BY hold_id$$,
    'request_id: the repeats added or changed no hold');
SELECT results_eq(
    $$SELECT allowance_used, topup, reserved FROM credits.pools WHERE org_id = 'hr'$$,
    $$SELECT allowance_used, topup, reserved FROM snap_pool$$,
    'request_id: the repeats held nothing more');

-- settled, then repeated: the original reservation is replayed, nothing reopens
INSERT INTO dr SELECT 'r1', d.* FROM credits.credit_settle(pg_temp.hid('r1'), 4000, 0) d;
SELECT results_eq(
    $$SELECT cost, charged, available FROM dr WHERE label = 'r1'$$,
    $$VALUES ('1'::credit, '1'::credit, '197'::credit)$$,
    'request_id: the hold settles at 1');
DROP TABLE snap_pool, snap_ledger, snap_holds;
CREATE TEMP TABLE snap_pool AS SELECT * FROM credits.pools WHERE org_id = 'hr';
CREATE TEMP TABLE snap_ledger AS SELECT entry_id FROM credits.ledger;
INSERT INTO hr SELECT 'r5', r.* FROM credits.credit_reserve('hr', 'rita', 'gpt-4o', 4000, 1000, 'rq-1') r;
SELECT results_eq(
    $$SELECT hold_id, model, fell_back, reserved, available, expires_at, replayed FROM hr WHERE label = 'r5'$$,
    $$SELECT hold_id, model, fell_back, reserved, available, expires_at, true FROM hr WHERE label = 'r1'$$,
    'request_id: a repeat after the settle replays the original result, reserved as originally held (2)');
SELECT is((SELECT status FROM credits.holds WHERE hold_id = pg_temp.hid('r1')), 'settled',
          'request_id: ... and the hold stays settled');
SELECT results_eq(
    $$SELECT (SELECT count(*) FROM credits.ledger), p.allowance_used, p.reserved
        FROM credits.pools p WHERE p.org_id = 'hr'$$,
    $$SELECT (SELECT count(*) FROM snap_ledger), s.allowance_used, s.reserved FROM snap_pool s$$,
    'request_id: ... and nothing is held or ledgered');

-- different arguments: UC007
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hr', 'rob', 'gpt-4o', 4000, 1000, 'rq-1')$$,
                 'UC007', 'request_id "rq-1" of org "hr" was already used with different arguments',
                 'request_id reused by another user: UC007');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hr', 'rita', 'gpt-4.1', 4000, 1000, 'rq-1')$$,
                 'UC007', NULL, 'request_id reused with another model: UC007');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hr', 'rita', 'gpt-4o', 4001, 1000, 'rq-1')$$,
                 'UC007', NULL, 'request_id reused with other input_tokens: UC007');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hr', 'rita', 'gpt-4o', 4000, 999, 'rq-1')$$,
                 'UC007', NULL, 'request_id reused with other max_output_tokens: UC007');
-- across kinds: a hold's id by a debit, a debit's id by a hold
SELECT throws_ok($$SELECT * FROM credits.credit_debit('hr', 'rita', 'gpt-4o', 4000, 1000, 'rq-1')$$,
                 'UC007', 'request_id "rq-1" of org "hr" was already used with different arguments',
                 'request_id of a hold reused by credit_debit with the same arguments: UC007');
INSERT INTO dr SELECT 'rd', d.* FROM credits.credit_debit('hr', 'rita', 'gpt-4o', 4000, 1000, 'rq-d') d;
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hr', 'rita', 'gpt-4o', 4000, 1000, 'rq-d')$$,
                 'UC007', 'request_id "rq-d" of org "hr" was already used with different arguments',
                 'request_id of a debit reused by credit_reserve with the same arguments: UC007');
INSERT INTO dr SELECT 'rd2', d.* FROM credits.credit_debit('hr', 'rita', 'gpt-4o', 4000, 1000, 'rq-d') d;
SELECT results_eq(
    $$SELECT entry_id, charged, replayed FROM dr WHERE label = 'rd2'$$,
    $$SELECT entry_id, charged, true FROM dr WHERE label = 'rd'$$,
    'request_id: the debit still replays after the refused reserve');
SELECT is((SELECT count(*)::int FROM credits.holds WHERE request_id = 'rq-d'), 0,
          'request_id: the refused reserve left no hold');

-- a fallback hold replays as the fallback; the held model is not the request
-- gpt-4o 40000 in + 1000 out = 11 > 0.36 left: gpt-4o-mini 0.66, limited to 0.36
INSERT INTO hr SELECT 'rf1', r.* FROM credits.credit_reserve('hf', 'fay', 'gpt-4o', 40000, 1000, 'rq-fb') r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available, replayed FROM hr WHERE label = 'rf1'$$,
    $$VALUES ('gpt-4o-mini'::text, true, '0.36'::credit, '0'::credit, false)$$,
    'request_id, fallback: the switch holds what is left (0.36 of 0.66)');
INSERT INTO hr SELECT 'rf2', r.* FROM credits.credit_reserve('hf', 'fay', 'gpt-4o', 40000, 1000, 'rq-fb') r;
SELECT results_eq(
    $$SELECT hold_id, model, fell_back, reserved, available, expires_at, replayed FROM hr WHERE label = 'rf2'$$,
    $$SELECT hold_id, model, fell_back, reserved, available, expires_at, true FROM hr WHERE label = 'rf1'$$,
    'request_id, fallback: the repeat (with the requested model) replays the fallback hold');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hf', 'fay', 'gpt-4o-mini', 40000, 1000, 'rq-fb')$$,
                 'UC007', NULL, 'request_id, fallback: a repeat naming the held fallback model is UC007');
INSERT INTO rl SELECT 'rf1', credits.credit_release(pg_temp.hid('rf1'));
SELECT is((SELECT released FROM rl WHERE label = 'rf1'), '0.36'::credit, 'request_id, fallback: released 0.36');

-- the same request_id in another org is another call
INSERT INTO hr SELECT 'ro', r.* FROM credits.credit_reserve('hr2', 'rita', 'gpt-4o-mini', 200000, 0, 'rq-1') r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available, replayed FROM hr WHERE label = 'ro'$$,
    $$VALUES ('gpt-4o-mini'::text, false, '3'::credit, '97'::credit, false)$$,
    'request_id: the same id in another org (other arguments too) holds there');
SELECT isnt(pg_temp.hid('ro'), pg_temp.hid('r1'), 'request_id: ... with its own hold');
INSERT INTO rl SELECT 'ro', credits.credit_release(pg_temp.hid('ro'));
INSERT INTO rl SELECT 'r2', credits.credit_release(pg_temp.hid('r2'));
SELECT results_eq(
    $$SELECT org_id, kind, count(*)::int FROM credits.ledger WHERE request_id IN ('rq-1', 'rq-d', 'rq-fb')
       GROUP BY org_id, kind ORDER BY org_id, kind$$,
    $$VALUES ('hf'::text, 'hold'::text, 1), ('hr', 'debit', 1), ('hr', 'hold', 1), ('hr2', 'hold', 1)$$,
    'request_id: one entry per org and id (settles and releases carry none)');
SELECT is_empty($$SELECT * FROM credits.verify('hr')$$, 'hr: verify is clean');

-- ---------------------------------------------------------------------------
-- TTL: the argument, the GUC credits.hold_ttl and its default
-- ---------------------------------------------------------------------------
SELECT is(current_setting('credits.hold_ttl'), '15min', 'credits.hold_ttl defaults to 15min');
INSERT INTO hr SELECT 'x1', r.* FROM credits.credit_reserve('hx', 'xia', 'gpt-4o', 4000, 1000) r;
INSERT INTO hr SELECT 'x2', r.* FROM credits.credit_reserve('hx', 'xia', 'gpt-4o', 4000, 1000, ttl => interval '1 minute') r;
SET LOCAL credits.hold_ttl = '1min';
SELECT is(current_setting('credits.hold_ttl'), '1min', 'credits.hold_ttl can be set');
INSERT INTO hr SELECT 'x3', r.* FROM credits.credit_reserve('hx', 'xia', 'gpt-4o', 4000, 1000) r;
INSERT INTO hr SELECT 'x4', r.* FROM credits.credit_reserve('hx', 'xia', 'gpt-4o', 4000, 1000, NULL, interval '2 hours') r;
SET LOCAL credits.hold_ttl TO DEFAULT;
INSERT INTO hr SELECT 'x5', r.* FROM credits.credit_reserve('hx', 'xia', 'gpt-4o', 4000, 1000) r;
SELECT results_eq(
    $$SELECT label, expires_at - now() FROM hr WHERE label LIKE 'x_' ORDER BY label$$,
    $$VALUES ('x1'::text, interval '15 minutes'), ('x2', interval '1 minute'), ('x3', interval '1 minute'),
             ('x4', interval '2 hours'), ('x5', interval '15 minutes')$$,
    'ttl: default 15 min, the ttl argument, the GUC (1min) when no argument, the argument over the GUC, the default again');
SELECT results_eq(
    $$SELECT h.expires_at FROM credits.holds h JOIN hr USING (hold_id) WHERE hr.label LIKE 'x_' ORDER BY hr.label$$,
    $$SELECT expires_at FROM hr WHERE label LIKE 'x_' ORDER BY label$$,
    'ttl: the holds rows carry the expiry returned');
SELECT throws_ok($$SET LOCAL credits.hold_ttl = 0$$, '22023', NULL, 'credits.hold_ttl = 0 is refused');
SELECT results_eq(
    $$SELECT reserved, available FROM credits.pool_status WHERE org_id = 'hx'$$,
    $$VALUES ('10'::credit, '90'::credit)$$,
    'ttl: hx has five holds of 2');

-- ---------------------------------------------------------------------------
-- expire_holds(as_of)
-- ---------------------------------------------------------------------------
-- hy: a hold of 6 of 10 expiring in a minute, then 2 spent by a debit
INSERT INTO hr SELECT 'y1', r.* FROM credits.credit_reserve('hy', 'yan', 'gpt-4o', 20000, 1000, ttl => interval '1 minute') r;
INSERT INTO dr SELECT 'yd', d.* FROM credits.credit_debit('hy', 'yan', 'gpt-4o', 8000) d;
SELECT results_eq(
    $$SELECT (SELECT reserved FROM hr WHERE label = 'y1'), (SELECT charged FROM dr WHERE label = 'yd'), available
        FROM credits.pool_status WHERE org_id = 'hy'$$,
    $$VALUES ('6'::credit, '2'::credit, '2'::credit)$$,
    'hy: 6 held, 2 spent, 2 left');

SELECT is(credits.expire_holds(), 0, 'expire_holds(): nothing has expired yet');
SELECT is(credits.expire_holds(now() + interval '1 minute' - interval '1 microsecond'), 0,
          'expire_holds: nothing expires before its expires_at');
CREATE TEMP TABLE expired_now AS SELECT credits.expire_holds(now() + interval '1 minute') AS n;
SELECT is((SELECT n FROM expired_now), 3, 'expire_holds(as_of): the three holds with expires_at <= as_of, counted');
SELECT results_eq(
    $$SELECT hr.label, h.status, h.reserved, h.ended_at FROM credits.holds h JOIN hr USING (hold_id)
       WHERE hr.label IN ('x1', 'x2', 'x3', 'x4', 'x5', 'y1') ORDER BY hr.label$$,
    $$VALUES ('x1'::text, 'open'::text, '2'::credit, NULL::timestamptz),
             ('x2', 'expired', '0'::credit, now() + interval '1 minute'),
             ('x3', 'expired', '0'::credit, now() + interval '1 minute'),
             ('x4', 'open', '2'::credit, NULL),
             ('x5', 'open', '2'::credit, NULL),
             ('y1', 'expired', '0'::credit, now() + interval '1 minute')$$,
    'expire_holds: the expired holds are expired and hold nothing; the others stay open');
SELECT results_eq(
    $$SELECT hr.label, l.kind, l.user_id, l.model, l.reserved_change, l.charged, l.note
        FROM credits.ledger l JOIN hr USING (hold_id)
       WHERE hr.label IN ('x2', 'x3', 'y1') AND l.kind <> 'hold' ORDER BY hr.label$$,
    $$VALUES ('x2'::text, 'release'::text, 'xia'::text, 'gpt-4o'::text, '-2'::credit, '0'::credit, 'expired'::text),
             ('x3', 'release', 'xia', 'gpt-4o', '-2'::credit, '0'::credit, 'expired'),
             ('y1', 'release', 'yan', 'gpt-4o', '-6'::credit, '0'::credit, 'expired')$$,
    'expire_holds: each expiry is a release in the ledger, noted expired');
SELECT results_eq(
    $$SELECT org_id, reserved, available FROM credits.pool_status WHERE org_id IN ('hx', 'hy') ORDER BY org_id$$,
    $$VALUES ('hx'::text, '6'::credit, '94'::credit), ('hy', '0'::credit, '8'::credit)$$,
    'expire_holds: the pools got the expired reservations back');
SELECT is(credits.expire_holds(now() + interval '1 minute'), 0, 'expire_holds: a second run expires nothing');
SELECT is_empty($$SELECT * FROM credits.verify('hx')$$, 'hx: verify is clean after expiry');

-- settling an expired hold records the usage, charged like credit_debit
INSERT INTO dr SELECT 'x2', d.* FROM credits.credit_settle(pg_temp.hid('x2'), 20000, 1000) d;
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM dr WHERE label = 'x2'$$,
    $$VALUES ('gpt-4o'::text, '6'::credit, '6'::credit, '0'::credit, '88'::credit, false, false)$$,
    'settle after expiry: the usage (6) is charged from the pool');
SELECT results_eq(
    $$SELECT kind, hold_id, coalesce(reserved_change, 0), cost, charged FROM credits.ledger
       WHERE entry_id = (SELECT entry_id FROM dr WHERE label = 'x2')$$,
    $$SELECT 'settle'::text, pg_temp.hid('x2'), '0'::credit, '6'::credit, '6'::credit$$,
    'settle after expiry: a settle row releasing nothing more');
SELECT is((SELECT status FROM credits.holds WHERE hold_id = pg_temp.hid('x2')), 'settled',
          'settle after expiry: the hold is settled');
SELECT results_eq(
    $$SELECT reserved, available FROM credits.pool_status WHERE org_id = 'hx'$$,
    $$VALUES ('6'::credit, '88'::credit)$$,
    'settle after expiry: the other holds are untouched');
-- hy: 40000 in = 10 with 8 left: charged 8, short 2, as a debit would be
INSERT INTO dr SELECT 'y1', d.* FROM credits.credit_settle(pg_temp.hid('y1'), 40000, 0) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM dr WHERE label = 'y1'$$,
    $$VALUES ('10'::credit, '8'::credit, '2'::credit, '0'::credit, true)$$,
    'settle after expiry, pool short: charged what is left, shortfall 2 (the expired hold guarantees nothing)');
SELECT throws_ok(format('SELECT * FROM credits.credit_settle(%s, 1, 1)', pg_temp.hid('x2')),
                 'UC006', format('hold %s is already settled', pg_temp.hid('x2')),
                 'settle after expiry: a second settle is UC006');
SELECT throws_ok(format('SELECT credits.credit_release(%s)', pg_temp.hid('x3')),
                 'UC006', NULL, 'release of an expired hold: UC006');
SELECT is_empty($$SELECT * FROM credits.verify('hy')$$, 'hy: verify is clean');

-- ---------------------------------------------------------------------------
-- Errors, each changing nothing
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE snap_pool_all AS SELECT * FROM credits.pools;
CREATE TEMP TABLE snap_usage AS SELECT * FROM credits.member_usage;
CREATE TEMP TABLE snap_ledger_all AS SELECT entry_id FROM credits.ledger;
CREATE TEMP TABLE snap_holds_all AS SELECT hold_id, status, reserved, expires_at, ended_at FROM credits.holds;

-- a hold ends once
SELECT throws_ok(format('SELECT * FROM credits.credit_settle(%s, 1, 1)', pg_temp.hid('a1')),
                 'UC006', format('hold %s is already settled', pg_temp.hid('a1')), 'settle twice: UC006');
SELECT throws_ok(format('SELECT credits.credit_release(%s)', pg_temp.hid('a1')),
                 'UC006', format('hold %s is already settled', pg_temp.hid('a1')), 'release after settle: UC006');
SELECT throws_ok(format('SELECT credits.credit_release(%s)', pg_temp.hid('a5')),
                 'UC006', format('hold %s is already released', pg_temp.hid('a5')), 'release twice: UC006');
SELECT throws_ok(format('SELECT * FROM credits.credit_settle(%s, 1, 1)', pg_temp.hid('a5')),
                 'UC006', format('hold %s is already released', pg_temp.hid('a5')), 'settle after release: UC006');
SELECT throws_ok(format('SELECT * FROM credits.credit_settle(%s, 0, 0)', pg_temp.hid('s4')),
                 'UC006', NULL, 'settle after release of a hold of 0: UC006');
SELECT throws_ok(format('SELECT credits.credit_release(%s)', pg_temp.hid('s2')),
                 'UC006', NULL, 'release after settle of a hold of 0: UC006');
-- unknown holds
SELECT throws_ok(format('SELECT * FROM credits.credit_settle(%s, 1, 1)', (SELECT max(hold_id) + 1000 FROM credits.holds)),
                 'UC006', format('unknown hold %s', (SELECT max(hold_id) + 1000 FROM credits.holds)),
                 'settle of an unknown hold: UC006');
SELECT throws_ok(format('SELECT credits.credit_release(%s)', (SELECT max(hold_id) + 1000 FROM credits.holds)),
                 'UC006', format('unknown hold %s', (SELECT max(hold_id) + 1000 FROM credits.holds)),
                 'release of an unknown hold: UC006');
SELECT throws_ok($$SELECT credits.credit_release(-1)$$, 'UC006', 'unknown hold -1', 'release of hold -1: UC006');

-- settle / release: NULL and negative arguments (a6 is open)
SELECT throws_ok($$SELECT * FROM credits.credit_settle(NULL, 1, 1)$$,
                 '22004', 'hold_id must not be null', 'settle: NULL hold_id: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_settle(pg_temp.hid('a6'), NULL, 1)$$,
                 '22004', 'input_tokens must not be null', 'settle: NULL input_tokens: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_settle(pg_temp.hid('a6'), 1, NULL)$$,
                 '22004', 'output_tokens must not be null', 'settle: NULL output_tokens: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_settle(pg_temp.hid('a6'), -1, 1)$$,
                 '22023', 'input_tokens must not be negative', 'settle: negative input_tokens: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_settle(pg_temp.hid('a6'), 1, -1)$$,
                 '22023', 'output_tokens must not be negative', 'settle: negative output_tokens: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_settle(-1, -1, 1)$$,
                 '22023', 'input_tokens must not be negative', 'settle: argument checks before the hold lookup');
SELECT throws_ok($$SELECT * FROM credits.credit_settle(pg_temp.hid('a6'), 0, 9223372036854775807)$$,
                 '22003', NULL, 'settle: cost out of range: 22003');
SELECT throws_ok($$SELECT credits.credit_release(NULL)$$,
                 '22004', 'hold_id must not be null', 'release: NULL hold_id: 22004 naming it');

-- reserve: 22004, a NULL argument named
SELECT throws_ok($$SELECT * FROM credits.credit_reserve(NULL, 'ann', 'gpt-4o', 1, 1)$$,
                 '22004', 'org_id must not be null', 'reserve: NULL org_id: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', NULL, 'gpt-4o', 1, 1)$$,
                 '22004', 'user_id must not be null', 'reserve: NULL user_id: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', NULL, 1, 1)$$,
                 '22004', 'model must not be null', 'reserve: NULL model: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gpt-4o', NULL, 1)$$,
                 '22004', 'input_tokens must not be null', 'reserve: NULL input_tokens: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gpt-4o', 1, NULL)$$,
                 '22004', 'max_output_tokens must not be null', 'reserve: NULL max_output_tokens: 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hr', 'rita', 'gpt-4o', NULL, 1000, 'rq-1')$$,
                 '22004', 'input_tokens must not be null', 'reserve: NULL tokens with a known request_id: 22004, not a replay');
-- reserve: 22023
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('', 'ann', 'gpt-4o', 1, 1)$$,
                 '22023', 'org_id must not be empty', 'reserve: empty org_id: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', '', 'gpt-4o', 1, 1)$$,
                 '22023', 'user_id must not be empty', 'reserve: empty user_id: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', '', 1, 1)$$,
                 '22023', 'model must not be empty', 'reserve: empty model: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gpt-4o', 1, 1, '')$$,
                 '22023', 'request_id must not be empty', 'reserve: empty request_id: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gpt-4o', 1, 1, repeat('r', 256))$$,
                 '22023', 'request_id is too long', 'reserve: 256-byte request_id: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gpt-4o', -1, 1)$$,
                 '22023', 'input_tokens must not be negative', 'reserve: negative input_tokens: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gpt-4o', 1, -1)$$,
                 '22023', 'max_output_tokens must not be negative', 'reserve: negative max_output_tokens: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gpt-4o', 1, 1, ttl => interval '0 seconds')$$,
                 '22023', 'ttl must be longer than zero', 'reserve: ttl 0: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gpt-4o', 1, 1, ttl => interval '-1 minute')$$,
                 '22023', 'ttl must be longer than zero', 'reserve: negative ttl: 22023');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gpt-4o', 1, 1, ttl => interval '1 day -25 hours')$$,
                 '22023', 'ttl must be longer than zero', 'reserve: ttl adding up to less than zero: 22023');
-- reserve: UC004, UC005, UC002, UC003, 22003
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('nope', 'ann', 'gpt-4o', 1, 1)$$,
                 'UC004', 'unknown org "nope"', 'reserve: unknown org: UC004');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'stranger', 'gpt-4o', 1, 1)$$,
                 'UC005', 'user "stranger" is not an active member of org "h"', 'reserve: not a member: UC005');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'cat', 'gpt-4o-mini', 1, 1)$$,
                 'UC005', NULL, 'reserve: a removed member, even for a fallback: UC005');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'sid', 'gpt-4o', 1, 1)$$,
                 'UC005', NULL, 'reserve: a member of another org: UC005');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'no-such-model', 1, 1)$$,
                 'UC002', 'unknown or inactive model "no-such-model"', 'reserve: unknown model: UC002');
UPDATE credits.models SET active = false WHERE model = 'o3';
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'o3', 1, 1)$$,
                 'UC002', NULL, 'reserve: inactive model: UC002');
UPDATE credits.models SET active = true WHERE model = 'o3';
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gemini-2.5-pro', 1, 1)$$,
                 'UC003', NULL, 'reserve: provider not enabled (premium): UC003');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('hs', 'sid', 'claude-haiku-4-5', 1, 1)$$,
                 'UC003', NULL, 'reserve: provider not enabled (fallback): UC003');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'nofb-pro', 1, 1)$$,
                 'UC003', NULL, 'reserve: a provider without fallback not enabled: UC003, not UC001');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'claude-opus-4-1', 9223372036854775807, 0)$$,
                 '22003', NULL, 'reserve: estimate out of range: 22003');
-- the order of the checks
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('nope', 'stranger', 'no-such-model', 1, -1)$$,
                 '22023', 'max_output_tokens must not be negative', 'reserve order: argument checks before any lookup');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('nope', 'stranger', 'no-such-model', 1, 1, ttl => interval '0 seconds')$$,
                 '22023', 'ttl must be longer than zero', 'reserve order: the ttl before any lookup');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('h', 'ann', 'gemini-2.5-pro', 4000, 1000, 'rq-1')$$,
                 'UC003', NULL, 'reserve order: provider not enabled before a request_id check');

SELECT results_eq(
    $$SELECT entry_id FROM credits.ledger ORDER BY entry_id$$,
    $$SELECT entry_id FROM snap_ledger_all ORDER BY entry_id$$,
    'errors: no ledger row was added');
SELECT results_eq(
    $$SELECT org_id, period_start, allowance, allowance_used, topup, topup_used, reserved, alert_level
        FROM credits.pools ORDER BY org_id$$,
    $$SELECT org_id, period_start, allowance, allowance_used, topup, topup_used, reserved, alert_level
        FROM snap_pool_all ORDER BY org_id$$,
    'errors: no pool changed');
SELECT results_eq(
    $$SELECT hold_id, status, reserved, expires_at, ended_at FROM credits.holds ORDER BY hold_id$$,
    $$SELECT hold_id, status, reserved, expires_at, ended_at FROM snap_holds_all ORDER BY hold_id$$,
    'errors: no hold was added or changed');
SELECT results_eq(
    $$SELECT org_id, user_id, used FROM credits.member_usage ORDER BY org_id, user_id$$,
    $$SELECT org_id, user_id, used FROM snap_usage ORDER BY org_id, user_id$$,
    'errors: no member usage changed');
SELECT results_eq(
    $$SELECT status, reserved FROM credits.holds WHERE hold_id = pg_temp.hid('a6')$$,
    $$VALUES ('open'::text, '2'::credit)$$,
    'errors: the hold the failed settles named is still open with its 2');

-- after the failed settles, the hold settles normally
INSERT INTO dr SELECT 'a6', d.* FROM credits.credit_settle(pg_temp.hid('a6'), 4000, 1000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available FROM dr WHERE label = 'a6'$$,
    $$VALUES ('2'::credit, '2'::credit, '0'::credit, '284'::credit)$$,
    'errors: the open hold settles afterwards as usual');
-- expire_holds: NULL
SELECT throws_ok($$SELECT credits.expire_holds(NULL)$$, '22004', 'as_of must not be null',
                 'expire_holds(NULL): 22004');

-- ---------------------------------------------------------------------------
-- The end: every open hold expires; the books balance
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT s.org_id, s.reserved FROM credits.pool_status s ORDER BY s.org_id$$,
    $$SELECT p.org_id, coalesce((SELECT sum(h.reserved) FROM credits.holds h
                                  WHERE h.org_id = p.org_id AND h.status = 'open'), '0'::credit)
        FROM credits.pools p ORDER BY p.org_id$$,
    'pool_status.reserved is the sum of each org''s open holds');
SELECT results_eq(
    $$SELECT hr.label FROM credits.holds h JOIN hr USING (hold_id) WHERE h.status = 'open' ORDER BY hr.label$$,
    $$VALUES ('x1'::text), ('x4'), ('x5')$$,
    'open holds left: x1, x5 (15 min) and x4 (2 hours)');
SELECT is(credits.expire_holds(now() + interval '1 hour'), 2, 'expire_holds(now() + 1 hour): the two 15-minute holds');
SELECT results_eq(
    $$SELECT reserved, available FROM credits.pool_status WHERE org_id = 'hx'$$,
    $$VALUES ('2'::credit, '92'::credit)$$,
    'hx: only the 2-hour hold is still reserved');
SELECT is(credits.expire_holds(now() + interval '2 hours'), 1, 'expire_holds(now() + 2 hours): the last hold');
SELECT is((SELECT count(*)::int FROM credits.holds WHERE status = 'open'), 0, 'no hold is open');
SELECT ok((SELECT bool_and(reserved = 0) FROM credits.pool_status), 'nothing is reserved in any pool');
SELECT is((SELECT sum(reserved_change) FROM credits.ledger), '0'::credit,
          'the ledger''s reservations add up to 0');
SELECT is_empty($$SELECT * FROM credits.verify()$$, 'verify() is clean at the end');

-- ---------------------------------------------------------------------------
-- The functions themselves
-- ---------------------------------------------------------------------------
SELECT ok((SELECT bool_and(NOT proisstrict AND provolatile = 'v' AND prosecdef) FROM pg_proc
            WHERE oid IN ('credits.credit_reserve(text, text, text, bigint, bigint, text, interval)'::regprocedure,
                          'credits.credit_settle(bigint, bigint, bigint)'::regprocedure,
                          'credits.credit_release(bigint)'::regprocedure)),
          'reserve, settle and release are not STRICT, VOLATILE, SECURITY DEFINER');
SELECT results_eq(
    $$SELECT prorettype::regtype FROM pg_proc
       WHERE oid IN ('credits.credit_reserve(text, text, text, bigint, bigint, text, interval)'::regprocedure,
                     'credits.credit_settle(bigint, bigint, bigint)'::regprocedure,
                     'credits.credit_release(bigint)'::regprocedure)
       ORDER BY proname$$,
    $$VALUES ('credits.credit'::regtype), ('credits.hold_result'::regtype), ('credits.debit_result'::regtype)$$,
    'release returns credits.credit, reserve credits.hold_result, settle credits.debit_result');

SELECT * FROM finish();
ROLLBACK;
