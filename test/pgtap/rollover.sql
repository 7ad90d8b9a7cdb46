-- pgTAP: rollover, auto-recharge and the forecast (1.1, issue 17):
-- credits.set_rollover(), credits.set_auto_recharge(), pool_status
-- burn_per_day / runs_out_at, and verify()'s checks of them.
--
-- Rollover: at each period close (lazy, reset_due() or recharge() alike),
-- least(closed allowance - allowance_used, rollover_max) becomes a grant of
-- ledger kind 'rollover' expiring at the end of the rollover_periods-th
-- period counting the new one; only the last closed period rolls when
-- periods were skipped.
-- Auto-recharge: the charge that takes available from >= below to < below
-- adds a grant of amount (ledger kind 'auto_recharge', ledgered just before
-- the charge's own entry) and an 'auto_recharge' event; the charge is made
-- without the grant (it never pays its shortfall) but returns the available
-- after it; at most max_per_period times a period (reset at period close,
-- not by a restoring recharge).
--
-- now() is frozen inside the transaction: period close is tested with
-- reset_due(as_of) in the future, and the lazy rollover of the C write path
-- by moving a pool's period back (as superuser) before it is used.  Daily
-- orgs anchored now() - 10 days are in [now(), now() + 1 day).
-- gpt-4o: 4000 input tokens = 1 credit.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(156);

-- debit of whole credits on gpt-4o
CREATE FUNCTION pg_temp.d(org text, u text, amount integer, req text DEFAULT NULL)
RETURNS credits.debit_result LANGUAGE sql AS $$
    SELECT * FROM credits.credit_debit(org, u, 'gpt-4o', amount * 4000::bigint, 0, req)
$$;
-- a daily org anchored now() - 10 days (and hours before that), openai, members
CREATE FUNCTION pg_temp.org(o text, per_user integer, members text[],
                            hours integer DEFAULT 0) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM credits.create_org(o, allowance_per_user => per_user,
                               billing_anchor => now() - interval '10 days' - hours * interval '1 hour',
                               period => '1 day');
    PERFORM credits.enable_provider(o, 'openai');
    PERFORM credits.add_member(o, m) FROM unnest(members) m;
END
$$;
-- an org's ledger, as text, in entry order: kind:charged/topup_change->available_after
CREATE FUNCTION pg_temp.ledger(o text, since bigint DEFAULT 0) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(kind || ':' || CASE WHEN kind IN ('debit', 'settle') THEN charged::text
                                          WHEN kind = 'hold' THEN reserved_change::text
                                          ELSE coalesce(topup_change::text, '') END
                      || '->' || available_after, ' ' ORDER BY entry_id)
      FROM credits.ledger WHERE org_id = o AND entry_id > since
$$;
CREATE TEMP TABLE res (label text PRIMARY KEY, entry_id bigint, model text, cost credits.credit,
                       charged credits.credit, shortfall credits.credit, available credits.credit,
                       exhausted boolean, replayed boolean);
CREATE TEMP TABLE hres (label text PRIMARY KEY, hold_id bigint, model text, fell_back boolean,
                        reserved credits.credit, available credits.credit, expires_at timestamptz,
                        replayed boolean);

-- ===========================================================================
-- Rollover
--   rc    2 x 10; rollover max 5: uses 3, holds 2, has a 4 top-up   -> rolls 5
--   ru    2 x 10; rollover max 100 for 3 periods: uses 12 (a 10 top-up, a
--         hold of 3)                                                -> rolls 8
--   rz    max 0 -> nothing;  roff  set, then NULL -> nothing;  rfull all used
--   rskip 10; max 100: uses 4, then three periods pass at once   -> rolls 6 once
--   rdraw 10; max 10: uses 4 -> rolls 6, drawn between top-ups by expiry
-- ===========================================================================
SELECT pg_temp.org(o, 10, ARRAY['a', 'b']) FROM unnest(ARRAY['rc', 'ru', 'rz', 'roff', 'rfull']) o;
SELECT pg_temp.org('rdraw', 10, ARRAY['a']);

SELECT lives_ok($$SELECT credits.set_rollover('rc', 5)$$, 'set_rollover(rc, 5): periods defaults to 1');
SELECT results_eq($$SELECT rollover_max, rollover_periods FROM credits.orgs WHERE org_id = 'rc'$$,
                  $$VALUES ('5'::credit, 1)$$, '... orgs.rollover_max 5, rollover_periods 1');
SELECT credits.set_rollover('ru', 100, 3);
SELECT credits.set_rollover('rz', 0);
SELECT credits.set_rollover('roff', 5, 4);
SELECT lives_ok($$SELECT credits.set_rollover('roff', NULL)$$, 'set_rollover(roff, NULL) turns it off');
SELECT is((SELECT rollover_max FROM credits.orgs WHERE org_id = 'roff'), NULL, '... rollover_max is NULL');
SELECT credits.set_rollover('rfull', 100);
SELECT credits.set_rollover('rdraw', 10);

-- period 1
SELECT credits.recharge('rc', 4, note => 'rc top-up');
INSERT INTO res SELECT 'rc1', d.* FROM pg_temp.d('rc', 'a', 3) d;
INSERT INTO hres SELECT 'rc-h', h.* FROM credits.credit_reserve('rc', 'b', 'gpt-4o', 8000, 0, ttl => '30 days') h;
SELECT credits.recharge('ru', 10, note => 'ru top-up');
INSERT INTO res SELECT 'ru1', d.* FROM pg_temp.d('ru', 'a', 12) d;
INSERT INTO hres SELECT 'ru-h', h.* FROM credits.credit_reserve('ru', 'b', 'gpt-4o', 12000, 0, ttl => '30 days') h;
INSERT INTO res SELECT 'rz1', d.* FROM pg_temp.d('rz', 'a', 3) d;
INSERT INTO res SELECT 'roff1', d.* FROM pg_temp.d('roff', 'a', 3) d;
INSERT INTO res SELECT 'rfull1', d.* FROM pg_temp.d('rfull', 'a', 25) d;
SELECT credits.recharge('rdraw', 2, now() + interval '36 hours', 'T0');
SELECT credits.recharge('rdraw', 5, now() + interval '10 days', 'T1');
SELECT credits.recharge('rdraw', 5, NULL, 'T2');
INSERT INTO res SELECT 'rdraw1', d.* FROM pg_temp.d('rdraw', 'a', 4) d;
SELECT results_eq(
    $$SELECT org_id, allowance, allowance_used, topup, reserved FROM credits.pools
       WHERE org_id IN ('rc', 'ru', 'rfull', 'rdraw') ORDER BY org_id$$,
    $$VALUES ('rc'::text, '20'::credit, '3'::credit, '4'::credit, '2'::credit),
             ('rdraw', '10', '4', '12', '0'),
             ('rfull', '20', '20', '0', '0'),
             ('ru', '20', '12', '10', '3')$$,
    'fixture: period 1 of rc, rdraw, rfull, ru');

SELECT is(credits.reset_due(now() + interval '1 day'), 6, 'reset_due(now() + 1 day) rolls the six orgs over');

SELECT results_eq(
    $$SELECT g.org_id, g.amount, g.remaining, g.expires_at - now() FROM credits.grants g
       JOIN credits.ledger l ON l.grant_id = g.grant_id AND l.kind = 'rollover'
       WHERE g.org_id IN ('rc', 'ru', 'rz', 'roff', 'rfull', 'rdraw') ORDER BY g.org_id$$,
    $$VALUES ('rc'::text, '5'::credit, '5'::credit, interval '2 days'),
             ('rdraw', '6', '6', interval '2 days'),
             ('ru', '8', '8', interval '4 days')$$,
    'rollover grants: rc 5 (capped by max_amount), ru 8 (unused allowance: top-up and hold not counted, expires at the end of the 3rd period), rdraw 6; none for rz (max 0), roff (off), rfull (nothing unused)');
SELECT results_eq(
    $$SELECT org_id, allowance, allowance_used, topup, reserved, available FROM credits.pool_status
       WHERE org_id IN ('rc', 'ru', 'rz', 'roff', 'rfull') ORDER BY org_id$$,
    $$VALUES ('rc'::text, '20'::credit, '0'::credit, '9'::credit, '2'::credit, '27'::credit),
             ('rfull', '20', '0', '0', '0', '20'),
             ('roff', '20', '0', '0', '0', '20'),
             ('ru', '20', '0', '18'::credit, '3', '35'),
             ('rz', '20', '0', '0', '0', '20')$$,
    'the new periods: the rollover grant is top-up (rc 4 + 5, ru 10 + 8), holds carried');
SELECT results_eq(
    $$SELECT org_id, period_start - now(), period_end - now() FROM credits.pools
       WHERE org_id IN ('rc', 'ru') ORDER BY org_id$$,
    $$VALUES ('rc'::text, interval '1 day', interval '2 days'), ('ru', interval '1 day', interval '2 days')$$,
    'the new period is [now() + 1 day, now() + 2 days)');
SELECT results_eq(
    $$SELECT l.org_id, l.kind, l.period_start - now(), l.topup_change, l.note FROM credits.ledger l
       WHERE l.org_id = 'rc' AND l.kind IN ('rollover', 'reset') ORDER BY l.entry_id$$,
    $$VALUES ('rc'::text, 'rollover'::text, interval '1 day', '5'::credit,
              'rollover of period ' || now() || ' .. ' || (now() + interval '1 day')),
             ('rc', 'reset', interval '1 day', NULL, 'period ' || (now() + interval '1 day') || ' .. ' || (now() + interval '2 days'))$$,
    'rc: the rollover is ledgered in the new period, noting the closed one');
SELECT is((SELECT available_after FROM credits.ledger WHERE org_id = 'rc' AND kind = 'reset'), '27'::credit,
          'rc: the reset entry''s available_after includes the rollover');
SELECT results_eq(
    $$SELECT e.org_id, (e.payload -> 'rollover' ->> 'amount')::numeric,
             (e.payload -> 'rollover' ->> 'grant_id')::bigint,
             (e.payload -> 'rollover' ->> 'expires_at')::timestamptz
        FROM credits.events e
       WHERE e.kind = 'period_reset' AND e.org_id IN ('rc', 'ru') ORDER BY e.org_id$$,
    $$VALUES ('rc'::text, 5::numeric, (SELECT grant_id FROM credits.ledger WHERE org_id = 'rc' AND kind = 'rollover'),
              now() + interval '2 days'),
             ('ru', 8, (SELECT grant_id FROM credits.ledger WHERE org_id = 'ru' AND kind = 'rollover'),
              now() + interval '4 days')$$,
    'period_reset event of rc and ru: rollover {amount, grant_id, expires_at} of the grant');
SELECT results_eq(
    $$SELECT e.org_id, (e.payload -> 'rollover' ->> 'amount')::numeric, e.payload -> 'rollover' -> 'grant_id'
        FROM credits.events e
       WHERE e.kind = 'period_reset' AND e.org_id IN ('rz', 'roff', 'rfull') ORDER BY e.org_id$$,
    $$VALUES ('rfull'::text, 0::numeric, 'null'::jsonb), ('roff', 0, 'null'), ('rz', 0, 'null')$$,
    'period_reset event without a rollover grant: amount 0, grant_id null');
SELECT is((SELECT count(*)::int FROM credits.grants WHERE org_id IN ('rz', 'roff', 'rfull')), 0,
          'rz, roff, rfull: no grant');

-- rollover grants are drawn like any grant and expire: in rdraw's period 2
-- ([now + 1 day, now + 2 days)): T0 (expires now + 36 h) before R (now + 2 days)
-- before T1 (now + 10 days) before T2 (never)
INSERT INTO res SELECT 'rdraw2', d.* FROM pg_temp.d('rdraw', 'a', 15) d;
SELECT results_eq(
    $$SELECT g.note, dr.amount FROM credits.grant_draws dr JOIN credits.grants g USING (grant_id)
       WHERE dr.entry_id = (SELECT entry_id FROM res WHERE label = 'rdraw2') ORDER BY g.grant_id$$,
    $$VALUES ('T0'::text, '2'::credit),
             ('rollover of period ' || now() || ' .. ' || (now() + interval '1 day'), '3')$$,
    'rdraw: 15 = 10 of allowance, 2 of T0 (expires first), 3 of the rollover grant (next to expire)');
INSERT INTO res SELECT 'rdraw3', d.* FROM pg_temp.d('rdraw', 'a', 4) d;
SELECT results_eq(
    $$SELECT g.note, dr.amount FROM credits.grant_draws dr JOIN credits.grants g USING (grant_id)
       WHERE dr.entry_id = (SELECT entry_id FROM res WHERE label = 'rdraw3') ORDER BY g.grant_id$$,
    $$VALUES ('T1'::text, '1'::credit),
             ('rollover of period ' || now() || ' .. ' || (now() + interval '1 day'), '3')$$,
    'rdraw: 4 more = the 3 left of the rollover grant, then 1 of T1');
INSERT INTO res SELECT 'rdraw4', d.* FROM pg_temp.d('rdraw', 'a', 1) d;
SELECT credits.reset_due(now() + interval '2 days');
SELECT results_eq(
    $$SELECT note, amount, remaining, expired_amount FROM credits.grants WHERE org_id = 'rdraw' ORDER BY grant_id$$,
    $$VALUES ('T0'::text, '2'::credit, '0'::credit, '0'::credit), ('T1', '5', '3', '0'), ('T2', '5', '5', '0'),
             ('rollover of period ' || now() || ' .. ' || (now() + interval '1 day'), '6', '0', '0')$$,
    'rdraw: nothing left of the drawn rollover grant; no new rollover (period 2 used all its allowance)');

-- skipped periods: rskip (created now, in [now, now + 1 day)) jumps to
-- [now + 3 days, now + 4 days); the other orgs move one period on
SELECT pg_temp.org('rskip', 10, ARRAY['a']);
SELECT credits.set_rollover('rskip', 100);
INSERT INTO res SELECT 'rskip1', d.* FROM pg_temp.d('rskip', 'a', 4) d;
SELECT ok(credits.reset_due(now() + interval '3 days') >= 1, 'reset_due(now() + 3 days) rolls rskip over, skipping two periods');
SELECT results_eq(
    $$SELECT count(*)::int, min(period_start) - now(), sum(allowance_used) FROM credits.periods WHERE org_id = 'rskip'$$,
    $$VALUES (1, interval '0', '4'::credit)$$,
    'rskip: one period closed (the skipped ones are not replayed)');
SELECT results_eq(
    $$SELECT g.amount, g.expires_at - now(), count(*) OVER () FROM credits.grants g WHERE g.org_id = 'rskip'$$,
    $$VALUES ('6'::credit, interval '4 days', 1::bigint)$$,
    'rskip: one rollover grant of 6 (only the last closed period rolls), expiring at the end of the new period');

-- a rollover grant with something left expires at its end: ru's 8 lasts 3
-- periods, to now + 4 days
SELECT results_eq(
    $$SELECT amount, remaining, expired_amount FROM credits.grants g
       WHERE org_id = 'ru' AND note LIKE 'rollover of period ' || now() || '%'$$,
    $$VALUES ('8'::credit, '8'::credit, '0'::credit)$$,
    'ru: its 3-period rollover grant is still there in period 4 ([now + 3 days, now + 4 days))');
SELECT credits.reset_due(now() + interval '4 days');
SELECT results_eq(
    $$SELECT amount, remaining, expired_amount FROM credits.grants g
       WHERE org_id = 'ru' AND note LIKE 'rollover of period ' || now() || '%'$$,
    $$VALUES ('8'::credit, '0'::credit, '8'::credit)$$,
    'ru: ... and expired when period 5 starts');
SELECT is((SELECT topup_change FROM credits.ledger
            WHERE org_id = 'ru' AND kind = 'expire'
              AND grant_id = (SELECT grant_id FROM credits.grants WHERE org_id = 'ru' AND note LIKE 'rollover of period ' || now() || '%')),
          '-8'::credit, 'ru: the expiry is ledgered');
SELECT results_eq(
    $$SELECT count(*)::int, sum(amount) FROM credits.grants g JOIN credits.ledger l USING (grant_id)
       WHERE g.org_id = 'ru' AND l.kind = 'rollover'$$,
    $$VALUES (4, '68'::credit)$$,
    'ru: every close rolled its unused allowance (8, then 20 for each of three idle periods)');

-- ---------------------------------------------------------------------------
-- Lazy rollover (the C write path), and recharge(): rlazy's pool is moved
-- back to [now - 36 h, far future) before its first use, used, and then
-- ended at now - 12 h; its schedule's current period is [now - 12 h, now + 12 h)
-- ---------------------------------------------------------------------------
SELECT pg_temp.org(o, 10, ARRAY['a'], 12) FROM unnest(ARRAY['rlazy', 'rrech', 'rrest']) o;
SELECT credits.set_rollover(o, 5, 2) FROM unnest(ARRAY['rlazy', 'rrech', 'rrest']) o;
UPDATE credits.pools SET period_start = period_start - interval '1 day', period_end = now() + interval '100 years'
 WHERE org_id IN ('rlazy', 'rrech', 'rrest');
INSERT INTO res SELECT 'rlazy1', d.* FROM pg_temp.d('rlazy', 'a', 3) d;
INSERT INTO res SELECT 'rrech1', d.* FROM pg_temp.d('rrech', 'a', 8) d;
INSERT INTO res SELECT 'rrest1', d.* FROM pg_temp.d('rrest', 'a', 9) d;
UPDATE credits.pools SET period_end = period_start + interval '1 day' WHERE org_id IN ('rlazy', 'rrech', 'rrest');
SELECT results_eq(
    $$SELECT period_start - now(), period_end - now(), allowance_used FROM credits.pools WHERE org_id = 'rlazy'$$,
    $$VALUES (interval '-36 hours', interval '-12 hours', '3'::credit)$$,
    'fixture: rlazy''s pool is [now - 36 h, now - 12 h), 3 used, and due');
SELECT results_eq(
    $$SELECT period_start - now(), allowance_used, topup, available FROM credits.pool_status WHERE org_id = 'rlazy'$$,
    $$VALUES (interval '-12 hours', '0'::credit, '5'::credit, '15'::credit)$$,
    'rlazy: pool_status already shows the new period as the next call will make it: the rollover grant of 5 included');
SELECT is((SELECT count(*)::int FROM credits.periods WHERE org_id = 'rlazy'), 0, 'rlazy: the reader closed nothing');
INSERT INTO res SELECT 'rlazy2', d.* FROM pg_temp.d('rlazy', 'a', 1) d;
SELECT results_eq($$SELECT charged, available FROM res WHERE label = 'rlazy2'$$,
                  $$VALUES ('1'::credit, '14'::credit)$$,
                  'rlazy: the next debit rolls the period over (lazily, in C) and sees the rollover grant');
SELECT is(pg_temp.ledger('rlazy', (SELECT entry_id FROM res WHERE label = 'rlazy1')),
          'rollover:5->15 reset:->15 debit:1->14',
          'rlazy: rollover 5 (least(10 - 3, 5)), reset, then the debit');
SELECT results_eq(
    $$SELECT amount, remaining, expires_at - now() FROM credits.grants WHERE org_id = 'rlazy'$$,
    $$VALUES ('5'::credit, '5'::credit, interval '36 hours')$$,
    'rlazy: the grant lasts 2 periods: to the end of [now + 12 h, now + 36 h)');
SELECT results_eq(
    $$SELECT allowance, allowance_used, calls FROM credits.periods WHERE org_id = 'rlazy'$$,
    $$VALUES ('10'::credit, '3'::credit, 1::bigint)$$,
    'rlazy: the closed period');

-- rz0: the plan is cut to 0 in its last period (1 used): the next period
-- has no allowance, only the rollover grant of 5; readers must not gray
-- out or reroute premium models that the next debit will pay from it
SELECT pg_temp.org('rz0', 10, ARRAY['a'], 12);
SELECT credits.set_rollover('rz0', 5);
UPDATE credits.pools SET period_start = period_start - interval '1 day', period_end = now() + interval '100 years'
 WHERE org_id = 'rz0';
INSERT INTO res SELECT 'rz01', d.* FROM pg_temp.d('rz0', 'a', 1) d;
SELECT credits.set_plan('rz0', 0);
UPDATE credits.pools SET period_end = period_start + interval '1 day' WHERE org_id = 'rz0';
SELECT results_eq(
    $$SELECT (SELECT available FROM credits.pool_status WHERE org_id = 'rz0'),
             (SELECT available FROM credits.allowed_models('rz0', 'a') WHERE model = 'gpt-4o'),
             credits.resolve_model('rz0', 'a', 'gpt-4o')$$,
    $$VALUES ('5'::credit, true, 'gpt-4o'::text)$$,
    'rz0: a due org with no new allowance but a rollover of 5: pool_status 5, gpt-4o available, resolve_model keeps it');
INSERT INTO res SELECT 'rz02', d.* FROM pg_temp.d('rz0', 'a', 1) d;
SELECT results_eq($$SELECT model, charged, shortfall, available FROM res WHERE label = 'rz02'$$,
                  $$VALUES ('gpt-4o'::text, '1'::credit, '0'::credit, '4'::credit)$$,
                  'rz0: ... as the next debit of gpt-4o is charged from the rollover grant');

-- recharge(org, amount) of a due org rolls it over first
SELECT is((SELECT available FROM credits.recharge('rrech', 1, note => 'after')), '13'::credit,
          'rrech: recharge(org, 1) on a due org: 10 + rollover 2 + 1');
SELECT is(pg_temp.ledger('rrech', (SELECT entry_id FROM res WHERE label = 'rrech1')),
          'rollover:2->12 reset:->12 topup:1->13', 'rrech: the period is closed (rollover 2) before the top-up');
-- recharge(org) (restore) of a due org: rolls it over; restoring is no period close
SELECT is((SELECT available FROM credits.recharge('rrest')), '11'::credit,
          'rrest: recharge(org) on a due org: 10 + rollover 1');
INSERT INTO res SELECT 'rrest2', d.* FROM pg_temp.d('rrest', 'a', 4) d;
SELECT is((SELECT available FROM credits.recharge('rrest')), '11'::credit,
          'rrest: a restoring recharge mid-period gives the allowance back ...');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE org_id = 'rrest' AND kind = 'rollover'), 1,
          '... and adds no rollover (only a period close does)');

-- the rollover entry's available_after is measured against the new
-- period's funds: rpc's plan is cut from 10 to 6 in the period (effective at
-- the close), 3 used, a hold of 2 carried -> rolls 7; the new period has
-- 6 + 7 - 2 = 11 available, as both its rollover and its reset entry say
SELECT pg_temp.org('rpc', 10, ARRAY['a']);
SELECT credits.set_rollover('rpc', 100);
INSERT INTO res SELECT 'rpc1', d.* FROM pg_temp.d('rpc', 'a', 3) d;
INSERT INTO hres SELECT 'rpc-h', h.* FROM credits.credit_reserve('rpc', 'a', 'gpt-4o', 8000, 0, ttl => '30 days') h;
SELECT credits.set_plan('rpc', 6);
SELECT credits.reset_due(now() + interval '5 days');
SELECT is(pg_temp.ledger('rpc', (SELECT entry_id FROM res WHERE label = 'rpc1')),
          'hold:2->5 rollover:7->11 reset:->11',
          'rpc: a plan cut to 6: the rollover entry''s available_after is the new period''s (6 + 7 - 2 = 11)');
SELECT results_eq($$SELECT allowance, topup, reserved, available FROM credits.pool_status WHERE org_id = 'rpc'$$,
                  $$VALUES ('6'::credit, '7'::credit, '2'::credit, '11'::credit)$$, 'rpc: the new period');

SELECT is_empty($$SELECT * FROM credits.verify() WHERE org_id LIKE 'r%'$$, 'verify() is clean after the rollovers');

-- ===========================================================================
-- Auto-recharge
--   ar   100 (a); below 30, amount 50, twice a period
--   sf   10 (a); below 5, amount 20: the crossing debit runs short
--   mx   100 (a); below 50, amount 10, once a period
--   ex   10 (a); below 5, amount 7, expiring after 3 days
--   un   10 (a); under the threshold before it is set
--   rs   100 (a); below 50, amount 25, three a period: reserve and settle
-- ===========================================================================
SELECT pg_temp.org(o, p, ARRAY['a']) FROM (VALUES ('ar', 100), ('sf', 10), ('mx', 100), ('ex', 10),
                                                   ('un', 10), ('rs', 100)) v(o, p);
SELECT lives_ok($$SELECT credits.set_auto_recharge('ar', 30, 50, 2)$$, 'set_auto_recharge(ar, 30, 50, 2)');
SELECT results_eq(
    $$SELECT auto_recharge_below, auto_recharge_amount, auto_recharge_max, auto_recharge_expires_after
        FROM credits.orgs WHERE org_id = 'ar'$$,
    $$VALUES ('30'::credit, '50'::credit, 2, NULL::interval)$$, '... its settings in orgs');
SELECT credits.set_auto_recharge('sf', 5, 20);
SELECT credits.set_auto_recharge('mx', 50, 10, 1);
SELECT credits.set_auto_recharge('ex', 5, 7, 1, '3 days');
SELECT credits.set_auto_recharge('rs', 50, 25, 3);

INSERT INTO res SELECT 'ar1', d.* FROM pg_temp.d('ar', 'a', 60) d;
INSERT INTO res SELECT 'ar2', d.* FROM pg_temp.d('ar', 'a', 10) d;
SELECT results_eq($$SELECT label, charged, available FROM res WHERE label IN ('ar1', 'ar2') ORDER BY label$$,
                  $$VALUES ('ar1'::text, '60'::credit, '40'::credit), ('ar2', '10', '30')$$,
                  'ar: down to 40, then to exactly 30 (= below, not under it) ...');
SELECT is((SELECT count(*)::int FROM credits.grants WHERE org_id = 'ar'), 0, '... no recharge yet');
INSERT INTO res SELECT 'ar3', d.* FROM pg_temp.d('ar', 'a', 1, 'ar-x') d;
SELECT results_eq($$SELECT charged, shortfall, available, exhausted, replayed FROM res WHERE label = 'ar3'$$,
                  $$VALUES ('1'::credit, '0'::credit, '79'::credit, false, false)$$,
                  'ar: the debit from 30 to 29 crosses: it returns available 29 + 50 = 79');
SELECT is(pg_temp.ledger('ar', (SELECT entry_id FROM res WHERE label = 'ar2')),
          'auto_recharge:50->79 debit:1->79',
          'ar: the auto_recharge grant is ledgered just before the charge that triggered it, both available 79');
SELECT is((SELECT entry_id FROM credits.ledger WHERE org_id = 'ar' AND kind = 'auto_recharge'),
          (SELECT entry_id - 1 FROM res WHERE label = 'ar3'), '... the entry right before it');
SELECT results_eq(
    $$SELECT g.amount, g.remaining, g.expires_at, g.grant_id = l.grant_id, l.period_start = p.period_start
        FROM credits.grants g JOIN credits.ledger l ON l.grant_id = g.grant_id AND l.kind = 'auto_recharge'
        JOIN credits.pools p ON p.org_id = g.org_id WHERE g.org_id = 'ar'$$,
    $$VALUES ('50'::credit, '50'::credit, NULL::timestamptz, true, true)$$,
    'ar: a grant of 50 without expiry, ledgered in the current period');
SELECT is((SELECT auto_recharges FROM credits.pools WHERE org_id = 'ar'), 1, 'ar: pools.auto_recharges 1');
SELECT results_eq(
    $$SELECT payload FROM credits.events WHERE org_id = 'ar' AND kind = 'auto_recharge'$$,
    $$SELECT jsonb_build_object('grant_id', g.grant_id, 'amount', 50, 'below', 30, 'expires_at', NULL,
                                'period_start', now(), 'recharges_in_period', 1,
                                'max_per_period', 2, 'available', 79)
        FROM credits.grants g WHERE g.org_id = 'ar'$$,
    'ar: one auto_recharge event with the documented payload');
INSERT INTO res SELECT 'ar3r', d.* FROM pg_temp.d('ar', 'a', 1, 'ar-x') d;
SELECT results_eq(
    $$SELECT entry_id, charged, shortfall, available, exhausted, replayed FROM res WHERE label = 'ar3r'$$,
    $$SELECT entry_id, charged, shortfall, available, exhausted, true FROM res WHERE label = 'ar3'$$,
    'ar: a replay of the crossing request returns the same result (available 79)');
SELECT results_eq(
    $$SELECT count(*)::int, sum(topup_change) FROM credits.ledger WHERE org_id = 'ar' AND kind = 'auto_recharge'$$,
    $$VALUES (1, '50'::credit)$$, '... and recharges nothing');
INSERT INTO res SELECT 'ar4', d.* FROM pg_temp.d('ar', 'a', 49) d;
SELECT is((SELECT available FROM res WHERE label = 'ar4'), '30'::credit, 'ar: down to exactly 30 again, no recharge');
SELECT is((SELECT count(*)::int FROM credits.grants WHERE org_id = 'ar'), 1, '... still one grant');
INSERT INTO res SELECT 'ar5', d.* FROM pg_temp.d('ar', 'a', 10) d;
SELECT results_eq($$SELECT charged, available FROM res WHERE label = 'ar5'$$,
                  $$VALUES ('10'::credit, '70'::credit)$$, 'ar: 30 -> 20 crosses again: the second recharge (70)');
INSERT INTO res SELECT 'ar6', d.* FROM pg_temp.d('ar', 'a', 45) d;
SELECT results_eq($$SELECT charged, available FROM res WHERE label = 'ar6'$$,
                  $$VALUES ('45'::credit, '25'::credit)$$, 'ar: 70 -> 25 crosses a third time: max_per_period 2 reached, no grant');
SELECT results_eq(
    $$SELECT (payload ->> 'recharges_in_period')::int, (payload ->> 'available')::numeric
        FROM credits.events WHERE org_id = 'ar' AND kind = 'auto_recharge' ORDER BY event_id$$,
    $$VALUES (1, 79::numeric), (2, 70)$$, 'ar: two auto_recharge events, counted 1 and 2');
SELECT is((SELECT auto_recharges FROM credits.pools WHERE org_id = 'ar'), 2, 'ar: pools.auto_recharges 2');

-- the grant does not pay the shortfall of the charge that triggered it
INSERT INTO res SELECT 'sf1', d.* FROM pg_temp.d('sf', 'a', 15) d;
SELECT results_eq($$SELECT charged, shortfall, available, exhausted FROM res WHERE label = 'sf1'$$,
                  $$VALUES ('10'::credit, '5'::credit, '20'::credit, false)$$,
                  'sf: a debit of 15 with 10 left: charged 10, 5 short, available 20 (the grant), not exhausted');
SELECT results_eq($$SELECT amount, remaining FROM credits.grants WHERE org_id = 'sf'$$,
                  $$VALUES ('20'::credit, '20'::credit)$$, 'sf: nothing was drawn from the grant');
SELECT results_eq($$SELECT from_allowance, from_topup, shortfall FROM credits.ledger WHERE entry_id = (SELECT entry_id FROM res WHERE label = 'sf1')$$,
                  $$VALUES ('10'::credit, '0'::credit, '5'::credit)$$, 'sf: the debit''s entry: all from the allowance, 5 short');

-- turning it off
SELECT pg_temp.org('aoff', 100, ARRAY['a']);
SELECT credits.set_auto_recharge('aoff', 50, 10, 1, '1 day');
SELECT lives_ok($$SELECT credits.set_auto_recharge('aoff', NULL, NULL)$$, 'set_auto_recharge(aoff, NULL, NULL) turns it off');
SELECT results_eq(
    $$SELECT auto_recharge_below, auto_recharge_amount, auto_recharge_max, auto_recharge_expires_after
        FROM credits.orgs WHERE org_id = 'aoff'$$,
    $$VALUES (NULL::credit, NULL::credit, 1, NULL::interval)$$, '... below, amount and expires_after NULL');
INSERT INTO res SELECT 'aoff1', d.* FROM pg_temp.d('aoff', 'a', 60) d;
SELECT results_eq($$SELECT available, (SELECT count(*)::int FROM credits.grants WHERE org_id = 'aoff') FROM res WHERE label = 'aoff1'$$,
                  $$VALUES ('40'::credit, 0)$$, '... so 100 -> 40 recharges nothing');

-- the grant re-arms the thresholds above what is spent now: thr (100,
-- threshold 50%): 55 spent (50% announced), 10 more crosses below 40 ->
-- +50: 65 of 150 spent, under 50% again; 10 more reach 50% of 150 again
SELECT pg_temp.org('thr', 100, ARRAY['a']);
UPDATE credits.orgs SET thresholds = '{50}' WHERE org_id = 'thr';
SELECT credits.set_auto_recharge('thr', 40, 50);
INSERT INTO res SELECT 'thr1', d.* FROM pg_temp.d('thr', 'a', 55) d;
INSERT INTO res SELECT 'thr2', d.* FROM pg_temp.d('thr', 'a', 10) d;
SELECT results_eq($$SELECT r.available, p.alert_level FROM res r, credits.pools p WHERE r.label = 'thr2' AND p.org_id = 'thr'$$,
                  $$VALUES ('85'::credit, 0)$$, 'thr: the crossing debit recharges (85) and re-arms the 50% threshold');
INSERT INTO res SELECT 'thr3', d.* FROM pg_temp.d('thr', 'a', 10) d;
SELECT results_eq(
    $$SELECT kind, payload ->> 'threshold' FROM credits.events WHERE org_id = 'thr' ORDER BY event_id$$,
    $$VALUES ('threshold'::text, '50'::text), ('auto_recharge', NULL), ('threshold', '50')$$,
    'thr: 50% announced, the recharge, 50% announced again (75 of 150)');

-- max_per_period, top-ups, restoring recharges, period close
INSERT INTO res SELECT 'mx1', d.* FROM pg_temp.d('mx', 'a', 51) d;
INSERT INTO res SELECT 'mx2', d.* FROM pg_temp.d('mx', 'a', 10) d;
SELECT results_eq($$SELECT label, available FROM res WHERE label IN ('mx1', 'mx2') ORDER BY label$$,
                  $$VALUES ('mx1'::text, '59'::credit), ('mx2', '49')$$,
                  'mx: the first crossing recharges (59), the second does not (max_per_period 1)');
SELECT credits.recharge('mx', 20, note => 'bought');
INSERT INTO res SELECT 'mx3', d.* FROM pg_temp.d('mx', 'a', 20) d;
SELECT is((SELECT available FROM res WHERE label = 'mx3'), '49'::credit, 'mx: after a top-up, crossing again: no recharge');
SELECT credits.recharge('mx');
SELECT is((SELECT auto_recharges FROM credits.pools WHERE org_id = 'mx'), 1, 'mx: a restoring recharge does not reset the count');
INSERT INTO res SELECT 'mx4', d.* FROM pg_temp.d('mx', 'a', 100) d;
SELECT results_eq($$SELECT charged, available FROM res WHERE label = 'mx4'$$,
                  $$VALUES ('100'::credit, '30'::credit)$$, 'mx: ... so crossing after it (130 -> 30) recharges nothing');
SELECT credits.reset_due(now() + interval '1 day');
SELECT is((SELECT auto_recharges FROM credits.pools WHERE org_id = 'mx'), 0, 'mx: the period close resets the count');
INSERT INTO res SELECT 'mx5', d.* FROM pg_temp.d('mx', 'a', 130) d;
SELECT results_eq($$SELECT charged, available FROM res WHERE label = 'mx5'$$,
                  $$VALUES ('130'::credit, '10'::credit)$$, 'mx: the new period''s first crossing recharges again (100 + 30 - 130 + 10)');
SELECT results_eq(
    $$SELECT (payload ->> 'recharges_in_period')::int, (payload ->> 'period_start')::timestamptz - now()
        FROM credits.events WHERE org_id = 'mx' AND kind = 'auto_recharge' ORDER BY event_id$$,
    $$VALUES (1, interval '0'), (1, interval '1 day')$$, 'mx: one recharge in each period');
SELECT is_empty($$SELECT * FROM credits.verify('mx')$$, 'mx: verify() clean');

-- expires_after
INSERT INTO res SELECT 'ex1', d.* FROM pg_temp.d('ex', 'a', 6) d;
SELECT results_eq($$SELECT amount, expires_at FROM credits.grants WHERE org_id = 'ex'$$,
                  $$VALUES ('7'::credit, now() + interval '3 days')$$, 'ex: the grant expires expires_after after it is added');
SELECT is((SELECT (payload ->> 'expires_at')::timestamptz FROM credits.events WHERE org_id = 'ex' AND kind = 'auto_recharge'),
          now() + interval '3 days', 'ex: ... as its event says');
SELECT credits.reset_due(now() + interval '3 days');
SELECT results_eq($$SELECT remaining, expired_amount FROM credits.grants WHERE org_id = 'ex'$$,
                  $$VALUES ('0'::credit, '7'::credit)$$, 'ex: ... and expires then');

-- already under the threshold when it is set: no crossing
INSERT INTO res SELECT 'un1', d.* FROM pg_temp.d('un', 'a', 8) d;
SELECT credits.set_auto_recharge('un', 5, 10);
INSERT INTO res SELECT 'un2', d.* FROM pg_temp.d('un', 'a', 1) d;
SELECT results_eq($$SELECT charged, available FROM res WHERE label = 'un2'$$,
                  $$VALUES ('1'::credit, '1'::credit)$$, 'un: a debit while already under the threshold recharges nothing');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE org_id = 'un' AND kind = 'auto_recharge'), 0, 'un: no auto_recharge entry');

-- reserve and settle
INSERT INTO hres SELECT 'rs1', h.* FROM credits.credit_reserve('rs', 'a', 'gpt-4o', 240000, 0, 'rs-1', '1 hour') h;
SELECT results_eq($$SELECT reserved, available, fell_back, replayed FROM hres WHERE label = 'rs1'$$,
                  $$VALUES ('60'::credit, '65'::credit, false, false)$$,
                  'rs: a reserve of 60 (100 -> 40) crosses 50: hold_result.available includes the grant (65)');
SELECT is((SELECT available_after FROM credits.holds WHERE hold_id = (SELECT hold_id FROM hres WHERE label = 'rs1')),
          '65'::credit, 'rs: holds.available_after 65');
SELECT is(pg_temp.ledger('rs', (SELECT max(entry_id) FROM credits.ledger WHERE org_id = 'rs' AND kind = 'reset')),
          'auto_recharge:25->65 hold:60->65', 'rs: the grant, then the hold, both 65');
INSERT INTO hres SELECT 'rs1r', h.* FROM credits.credit_reserve('rs', 'a', 'gpt-4o', 240000, 0, 'rs-1', '1 hour') h;
SELECT results_eq(
    $$SELECT hold_id, reserved, available, replayed FROM hres WHERE label = 'rs1r'$$,
    $$SELECT hold_id, reserved, available, true FROM hres WHERE label = 'rs1'$$,
    'rs: replaying the reserve returns the same hold and available 65');
SELECT is((SELECT auto_recharges FROM credits.pools WHERE org_id = 'rs'), 1, '... without a second recharge');
INSERT INTO res SELECT 'rs2', s.* FROM credits.credit_settle((SELECT hold_id FROM hres WHERE label = 'rs1'), 320000, 0) s;
SELECT results_eq($$SELECT charged, shortfall, available FROM res WHERE label = 'rs2'$$,
                  $$VALUES ('80'::credit, '0'::credit, '70'::credit)$$,
                  'rs: settling it at 80 (65 + 60 - 80 = 45) crosses again: available 70');
SELECT is(pg_temp.ledger('rs', (SELECT min(entry_id) - 1 FROM credits.ledger WHERE org_id = 'rs' AND kind = 'hold')),
          'hold:60->65 auto_recharge:25->70 settle:80->70', 'rs: the grant just before the settle');
INSERT INTO hres SELECT 'rs3', h.* FROM credits.credit_reserve('rs', 'a', 'gpt-4o', 80000, 0, NULL, '1 hour') h;
INSERT INTO res SELECT 'rs4', s.* FROM credits.credit_settle((SELECT hold_id FROM hres WHERE label = 'rs3'), 4000, 0) s;
SELECT results_eq($$SELECT r.available, s.available FROM hres r, res s WHERE r.label = 'rs3' AND s.label = 'rs4'$$,
                  $$VALUES ('50'::credit, '69'::credit)$$,
                  'rs: a reserve down to exactly 50 and a settle below the hold cross nothing');
SELECT is((SELECT auto_recharges FROM credits.pools WHERE org_id = 'rs'), 2, 'rs: two recharges');

SELECT is_empty($$SELECT * FROM credits.verify() WHERE org_id IN ('ar', 'sf', 'mx', 'ex', 'un', 'rs')$$,
                'verify() is clean after the auto-recharges');

-- ===========================================================================
-- Stripes: orgs.stripes = 4 (fixed), no thresholds, 1000 (a), below 500,
-- amount 100, once.  100 debits of 7 from one session: the one that crosses
-- is charged under the pool lock, recharged, and ledgered right after the
-- grant; the fast debits never cross.
-- st1: one stripe, below 500, amount 100, twice: a crossing after the first
-- recharge must recharge again (the stripe escrowed at the first crossing
-- must not let a fast debit cross the threshold).
-- ===========================================================================
SELECT pg_temp.org(o, 1000, ARRAY['a']) FROM unnest(ARRAY['st', 'st1']) o;
UPDATE credits.orgs SET stripes = 4, thresholds = '{}' WHERE org_id = 'st';
UPDATE credits.orgs SET stripes = 1, thresholds = '{}' WHERE org_id = 'st1';
SELECT credits.set_auto_recharge('st', 500, 100, 1);
SELECT credits.set_auto_recharge('st1', 500, 100, 2);
DO $$ BEGIN
    FOR i IN 1..100 LOOP
        INSERT INTO res SELECT 'st-' || i, d.* FROM pg_temp.d('st', 'a', 7) d;
    END LOOP;
END $$;
SELECT ok((SELECT max(stripes) FROM credits.pools WHERE org_id = 'st') = 4
          AND (SELECT count(*) FROM credits.pool_stripes WHERE org_id = 'st') = 4, 'st: the pool is striped over 4');
SELECT results_eq($$SELECT count(*)::int, sum(topup_change) FROM credits.ledger WHERE org_id = 'st' AND kind = 'auto_recharge'$$,
                  $$VALUES (1, '100'::credit)$$, 'st: exactly one auto_recharge entry');
-- the crossing debit: from 503 to 496 (72 debits of 7 leave 496)
SELECT results_eq(
    $$SELECT r.label, l.charged, l.available_after, r.available
        FROM credits.ledger a JOIN credits.ledger l ON l.entry_id = a.entry_id + 1
        JOIN res r ON r.entry_id = l.entry_id
       WHERE a.org_id = 'st' AND a.kind = 'auto_recharge'$$,
    $$VALUES ('st-72'::text, '7'::credit, '596'::credit, '596'::credit)$$,
    'st: the grant is followed by the crossing debit (503 -> 496, + 100 = 596)');
SELECT is((SELECT count(*)::int FROM res r JOIN credits.ledger l USING (entry_id)
            WHERE r.label LIKE 'st-%' AND l.org_id = 'st'
              AND r.available = l.available_after
              AND r.available = 1000 - 7 * substr(r.label, 4)::int
                                + CASE WHEN substr(r.label, 4)::int >= 72 THEN 100 ELSE 0 END), 100,
          'st: every debit returned (and ledgered) the exact available after it');
SELECT is((SELECT (payload ->> 'available')::numeric FROM credits.events WHERE org_id = 'st' AND kind = 'auto_recharge'),
          596::numeric, 'st: the event''s available is the crossing debit''s (stripes included)');
SELECT results_eq($$SELECT available, allowance_used, topup FROM credits.pool_status WHERE org_id = 'st'$$,
                  $$VALUES ('400'::credit, '700'::credit, '100'::credit)$$, 'st: 1000 + 100 - 700');
SELECT is_empty($$SELECT * FROM credits.verify('st')$$, 'st: verify() clean');

INSERT INTO res SELECT 'st1-1', d.* FROM pg_temp.d('st1', 'a', 501) d;
INSERT INTO res SELECT 'st1-2', d.* FROM pg_temp.d('st1', 'a', 200) d;
SELECT results_eq($$SELECT label, available FROM res WHERE label LIKE 'st1-%' ORDER BY label$$,
                  $$VALUES ('st1-1'::text, '599'::credit), ('st1-2', '499')$$,
                  'st1: 1000 -> 499 recharges (599); 599 -> 399 crosses again and recharges (499)');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE org_id = 'st1' AND kind = 'auto_recharge'), 2,
          'st1: two auto_recharge entries (max_per_period 2)');
SELECT is_empty($$SELECT * FROM credits.verify('st1')$$, 'st1: verify() clean');

-- ===========================================================================
-- Forecast: fc* are anchored 10 days 6 hours ago: period [now - 6 h, now + 18 h)
--   fc   100 + a 50 top-up; 120 charged (100 allowance, 20 top-up) -> burn 480/day,
--        30 left -> runs out in 1.5 h
--   fc2  1000; 1 charged -> burn 4/day, 999 left: not before the period ends
--   fc3  10, all used -> runs_out_at now()
--   fc4  100, 25 charged -> burn 100/day, 75 left: exactly at period_end -> NULL
--   fc5  nothing charged -> burn 0, runs_out_at NULL
--   fc6  100, 20 charged, a hold of 50 -> burn 80/day, 30 left: in 9 h
-- ===========================================================================
SELECT pg_temp.org(o, p, ARRAY['a'], 6) FROM (VALUES ('fc', 100), ('fc2', 1000), ('fc3', 10), ('fc4', 100),
                                                      ('fc5', 100), ('fc6', 100)) v(o, p);
SELECT credits.recharge('fc', 50);
INSERT INTO res SELECT 'fc1', d.* FROM pg_temp.d('fc', 'a', 120) d;
INSERT INTO res SELECT 'fc2', d.* FROM pg_temp.d('fc2', 'a', 1) d;
INSERT INTO res SELECT 'fc3', d.* FROM pg_temp.d('fc3', 'a', 10) d;
INSERT INTO res SELECT 'fc4', d.* FROM pg_temp.d('fc4', 'a', 25) d;
INSERT INTO res SELECT 'fc6', d.* FROM pg_temp.d('fc6', 'a', 20) d;
SELECT credits.credit_reserve('fc6', 'a', 'gpt-4o', 200000, 0, ttl => '1 day');
SELECT results_eq(
    $$SELECT org_id, period_start - now(), available, burn_per_day, runs_out_at - now() FROM credits.pool_status
       WHERE org_id LIKE 'fc%' ORDER BY org_id$$,
    $$VALUES ('fc'::text, interval '-6 hours', '30'::credit, '480'::credit, interval '1 hour 30 minutes'),
             ('fc2', interval '-6 hours', '999', '4', NULL),
             ('fc3', interval '-6 hours', '0', '40', interval '0'),
             ('fc4', interval '-6 hours', '75', '100', NULL),
             ('fc5', interval '-6 hours', '100', '0', NULL),
             ('fc6', interval '-6 hours', '30', '80', interval '9 hours')$$,
    'pool_status burn_per_day and runs_out_at (NULL when not before period_end, or nothing was charged)');
SELECT is_empty(
    $$SELECT s.org_id FROM credits.pool_status s JOIN credits.pools p USING (org_id)
       WHERE s.org_id LIKE 'fc%'
         AND (s.burn_per_day::numeric IS DISTINCT FROM
                round((p.allowance_used::numeric + p.topup_used::numeric)
                      / (greatest(extract(epoch FROM now() - p.period_start), 1) / 86400), 6)
              OR s.runs_out_at IS DISTINCT FROM
                CASE WHEN s.available = 0 THEN now()
                     WHEN s.burn_per_day = 0 THEN NULL
                     WHEN now() + s.available::numeric / s.burn_per_day::numeric * interval '1 day' < s.period_end
                     THEN now() + s.available::numeric / s.burn_per_day::numeric * interval '1 day' END)$$,
    'burn_per_day = (allowance_used + topup_used) / elapsed days; runs_out_at = now() + available / burn');
SELECT results_eq(
    $$SELECT pg_typeof(burn_per_day) = 'credits.credit'::regtype, pg_typeof(runs_out_at) = 'timestamptz'::regtype
        FROM credits.pool_status LIMIT 1$$,
    $$VALUES (true, true)$$,
    'burn_per_day is a credit, runs_out_at a timestamptz');
-- a period that started now(): elapsed counts as at least 1 second
SELECT pg_temp.org('fcn', 10, ARRAY['a']);
SELECT pg_temp.d('fcn', 'a', 9);
SELECT results_eq($$SELECT period_start, burn_per_day, runs_out_at FROM credits.pool_status WHERE org_id = 'fcn'$$,
                  $$VALUES (now(), '777600'::credit, now() + interval '1 second' / 9)$$,
                  'fcn: 9 charged in a period that started now(): 9 a second = 777600 a day, 1 left: runs out in 1/9 s');
-- a due pool: the next period has charged nothing
SELECT pg_temp.org('fcd', 10, ARRAY['a'], 12);
UPDATE credits.pools SET period_start = period_start - interval '1 day', period_end = now() + interval '100 years'
 WHERE org_id = 'fcd';
SELECT pg_temp.d('fcd', 'a', 5);
UPDATE credits.pools SET period_end = period_start + interval '1 day' WHERE org_id = 'fcd';
SELECT results_eq($$SELECT available, burn_per_day, runs_out_at FROM credits.pool_status WHERE org_id = 'fcd'$$,
                  $$VALUES ('10'::credit, '0'::credit, NULL::timestamptz)$$,
                  'fcd: a due pool forecasts its next period: nothing charged yet');
-- _pool_status (C) computes what the view's SQL expressions computed, to
-- the last digit: every org here, as_of from before its period to past its
-- end (a due pool's next period included)
SELECT is_empty(
    $$SELECT p.org_id, t.as_of
        FROM credits.pools p JOIN credits.orgs o USING (org_id),
             LATERAL (SELECT p.period_start + k * (p.period_end - p.period_start) / 7 AS as_of
                        FROM generate_series(-1, 9) k) t,
             LATERAL credits._pool_status(p, o, t.as_of) s
       WHERE s.available IS DISTINCT FROM
                 credits._available(s.allowance, s.allowance_used, s.topup, s.reserved)
          OR s.exhausted IS DISTINCT FROM (s.available = 0)
          OR s.burn_per_day IS DISTINCT FROM
                 least(round((s.allowance_used::numeric
                              + CASE WHEN s.period_start = p.period_start
                                     THEN p.topup_used::numeric ELSE 0 END)
                             / (greatest(extract(epoch FROM t.as_of - s.period_start), 1) / 86400), 6),
                       9223372036854.775807)::credits.credit
          OR s.runs_out_at IS DISTINCT FROM
                 CASE WHEN s.available = 0 THEN t.as_of
                      WHEN s.burn_per_day = 0 THEN NULL
                      WHEN s.available::numeric / s.burn_per_day::numeric
                           < extract(epoch FROM s.period_end - t.as_of) / 86400
                      THEN t.as_of + (s.available::numeric / s.burn_per_day::numeric)::float8
                                     * interval '1 day'
                 END$$,
    '_pool_status: available, exhausted, burn_per_day and runs_out_at are the SQL expressions of the view, to the last digit, for every org and as_of across and past its period');

-- ===========================================================================
-- verify(): the two new checks fire
-- ===========================================================================
SAVEPOINT broken;
INSERT INTO credits.grants (org_id, amount, remaining) VALUES ('sf', 3, 3);
SELECT results_eq(
    $$SELECT check_name, expected, actual FROM credits.verify('sf') WHERE check_name LIKE 'grant_ledgered:%'$$,
    $$SELECT 'grant_ledgered:' || max(grant_id), '3 in 1 entry', 'nothing in 0 entries' FROM credits.grants$$,
    'verify: a grant without its ledger entry: grant_ledgered:<id>');
ROLLBACK TO SAVEPOINT broken;
SAVEPOINT broken;
INSERT INTO credits.ledger (org_id, kind, period_start, topup_change, available_after, grant_id)
SELECT 'sf', 'auto_recharge', period_start, 4, 24, 999999999 FROM credits.pools WHERE org_id = 'sf';
SELECT ok(EXISTS (SELECT 1 FROM credits.verify('sf')
                   WHERE check_name = 'grant_ledgered:999999999' AND expected = 'no grant in 1 entry'
                     AND actual = '4 in 1 entries'),
          'verify: a grant entry without its grant: grant_ledgered:<id>');
SELECT ok(EXISTS (SELECT 1 FROM credits.verify('sf')
                   WHERE check_name = 'auto_recharges_match_ledger' AND expected = '1' AND actual = '0'),
          '... and auto_recharges_match_ledger (1 entry in the period, the pool counted 0: sf''s recharge was in an earlier period)');
ROLLBACK TO SAVEPOINT broken;
SAVEPOINT broken;
UPDATE credits.grants SET amount = 21, remaining = 21 WHERE org_id = 'sf';
SELECT ok(EXISTS (SELECT 1 FROM credits.verify('sf') g, credits.grants x
                   WHERE x.org_id = 'sf' AND g.check_name = 'grant_ledgered:' || x.grant_id
                     AND g.expected = '21 in 1 entry' AND g.actual = '20 in 1 entries'),
          'verify: a grant whose amount is not what was ledgered: grant_ledgered:<id>');
ROLLBACK TO SAVEPOINT broken;
-- a grant ledgered twice (each entry adding what it was bought for)
SAVEPOINT broken;
INSERT INTO credits.ledger (org_id, kind, period_start, topup_change, available_after, grant_id)
SELECT 'sf', l.kind, l.period_start, l.topup_change, l.available_after, l.grant_id
  FROM credits.ledger l WHERE l.org_id = 'sf' AND l.kind = 'auto_recharge' LIMIT 1;
SELECT ok(EXISTS (SELECT 1 FROM credits.verify('sf') g, credits.grants x
                   WHERE x.org_id = 'sf' AND g.check_name = 'grant_ledgered:' || x.grant_id
                     AND g.expected = x.amount || ' in 1 entry'
                     AND g.actual = (2 * x.amount::numeric)::credit || ' in 2 entries'),
          'verify: a grant ledgered twice: grant_ledgered:<id>');
ROLLBACK TO SAVEPOINT broken;
SAVEPOINT broken;
UPDATE credits.pools SET auto_recharges = auto_recharges + 1 WHERE org_id = 'rs';
SELECT results_eq($$SELECT check_name, expected, actual FROM credits.verify('rs')$$,
                  $$VALUES ('auto_recharges_match_ledger'::text, '2'::text, '3'::text)$$,
                  'verify: pools.auto_recharges off by one: auto_recharges_match_ledger');
ROLLBACK TO SAVEPOINT broken;
SAVEPOINT broken;
INSERT INTO credits.ledger (org_id, kind, period_start, topup_change, available_after, grant_id, note)
SELECT l.org_id, l.kind, l.period_start, l.topup_change, l.available_after, l.grant_id, 'twice'
  FROM credits.ledger l WHERE l.org_id = 'sf' AND l.kind = 'auto_recharge';
SELECT isnt_empty($$SELECT * FROM credits.verify('sf')$$, 'verify: a grant ledgered twice is reported');
ROLLBACK TO SAVEPOINT broken;

-- ===========================================================================
-- Bad inputs: SQLSTATE, and nothing changed
-- ===========================================================================
CREATE TEMP TABLE orgs_before AS SELECT * FROM credits.orgs;
SELECT throws_ok($$SELECT credits.set_rollover('rc', -1)$$, '22023', NULL, 'set_rollover: negative max_amount: 22023');
SELECT throws_ok($$SELECT credits.set_rollover('rc', 5, 0)$$, '22023', NULL, 'set_rollover: periods 0: 22023');
SELECT throws_ok($$SELECT credits.set_rollover('rc', 5, -1)$$, '22023', NULL, 'set_rollover: periods -1: 22023');
SELECT throws_ok($$SELECT credits.set_rollover('rc', 5, 1001)$$, '22023', NULL, 'set_rollover: periods 1001: 22023');
SELECT lives_ok($$SELECT credits.set_rollover('rz', 0, 1000)$$, 'set_rollover: periods 1000 is fine');
SELECT throws_ok($$SELECT credits.set_rollover('rc', 5, NULL)$$, '22004', NULL, 'set_rollover: NULL periods: 22004');
SELECT throws_ok($$SELECT credits.set_rollover('nope', 5)$$, 'UC004', NULL, 'set_rollover: unknown org: UC004');
SELECT throws_ok($$SELECT credits.set_rollover(NULL, 5)$$, '22004', NULL, 'set_rollover: NULL org_id: 22004');
SELECT throws_ok($$SELECT credits.set_rollover('', 5)$$, '22023', NULL, 'set_rollover: empty org_id: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', -1, 5)$$, '22023', NULL, 'set_auto_recharge: negative below: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', 0, 5)$$, '22023', NULL, 'set_auto_recharge: below 0 (would never fire): 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', NULL, 5)$$, '22023', NULL, 'set_auto_recharge: amount without below: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', NULL, NULL, 1, '1 day')$$, '22023', NULL,
                 'set_auto_recharge: expires_after without below: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', 5, NULL)$$, '22023', NULL, 'set_auto_recharge: below without amount: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', 5, 0)$$, '22023', NULL, 'set_auto_recharge: amount 0: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', 5, -3)$$, '22023', NULL, 'set_auto_recharge: negative amount: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', 5, 5, 0)$$, '22023', NULL, 'set_auto_recharge: max_per_period 0: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', 5, 5, -2)$$, '22023', NULL, 'set_auto_recharge: max_per_period -2: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', 5, 5, NULL)$$, '22004', NULL, 'set_auto_recharge: NULL max_per_period: 22004');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', 5, 5, 1, '0 seconds')$$, '22023', NULL, 'set_auto_recharge: expires_after 0: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('ar', 5, 5, 1, '-1 day')$$, '22023', NULL, 'set_auto_recharge: negative expires_after: 22023');
SELECT throws_ok($$SELECT credits.set_auto_recharge('nope', 5, 5)$$, 'UC004', NULL, 'set_auto_recharge: unknown org: UC004');
SELECT throws_ok($$SELECT credits.set_auto_recharge(NULL, 5, 5)$$, '22004', NULL, 'set_auto_recharge: NULL org_id: 22004');
SELECT throws_ok($$UPDATE credits.orgs SET auto_recharge_below = 5 WHERE org_id = 'rc'$$, '23514', NULL,
                 'orgs DML: a threshold without an amount: 23514');
SELECT results_eq(
    $$SELECT org_id, rollover_max, rollover_periods, auto_recharge_below, auto_recharge_amount,
             auto_recharge_max, auto_recharge_expires_after FROM credits.orgs
       WHERE org_id <> 'rz' ORDER BY org_id$$,
    $$SELECT org_id, rollover_max, rollover_periods, auto_recharge_below, auto_recharge_amount,
             auto_recharge_max, auto_recharge_expires_after FROM orgs_before
       WHERE org_id <> 'rz' ORDER BY org_id$$,
    'the refused calls changed nothing');

-- ===========================================================================
-- Privileges, tenant isolation, comments
-- ===========================================================================
SELECT results_eq(
    $$SELECT f, r, has_function_privilege(r, f, 'EXECUTE')
        FROM unnest(ARRAY['credits.set_rollover(text, credits.credit, integer)',
                          'credits.set_auto_recharge(text, credits.credit, credits.credit, integer, interval)']) f,
             unnest(ARRAY['credits_admin', 'credits_app', 'credits_reader', 'public']) r
       ORDER BY f, r$$,
    $$SELECT f, r, r = 'credits_admin'
        FROM unnest(ARRAY['credits.set_rollover(text, credits.credit, integer)',
                          'credits.set_auto_recharge(text, credits.credit, credits.credit, integer, interval)']) f,
             unnest(ARRAY['credits_admin', 'credits_app', 'credits_reader', 'public']) r
       ORDER BY f, r$$,
    'set_rollover, set_auto_recharge: EXECUTE for credits_admin only');
SELECT results_eq(
    $$SELECT r, has_function_privilege(r, 'credits._auto_recharge(text)', 'EXECUTE'),
                has_function_privilege(r, 'credits._add_grant(text, text, credits.credit, timestamptz, text, credits.credit)', 'EXECUTE')
        FROM unnest(ARRAY['credits_admin', 'credits_app', 'credits_reader', 'public']) r ORDER BY r$$,
    $$VALUES ('credits_admin'::text, false, false), ('credits_app', false, false),
             ('credits_reader', false, false), ('public', false, false)$$,
    '_auto_recharge and _add_grant (SECURITY DEFINER internals) are executable by none of the roles');
CREATE ROLE ro_admin_t NOLOGIN;
GRANT credits_admin TO ro_admin_t;
SET LOCAL credits.org_id = 'un';
SET LOCAL ROLE ro_admin_t;
SELECT throws_ok($$SELECT credits.set_rollover('rc', 1)$$, '42501', NULL, 'RLS: set_rollover of another org: 42501');
SELECT throws_ok($$SELECT credits.set_auto_recharge('rc', 1, 1)$$, '42501', NULL, 'RLS: set_auto_recharge of another org: 42501');
SELECT lives_ok($$SELECT credits.set_rollover('un', 1)$$, 'RLS: set_rollover of the session''s org works');
SELECT lives_ok($$SELECT credits.set_auto_recharge('un', 1, 1)$$, 'RLS: set_auto_recharge of the session''s org works');
RESET ROLE;
RESET credits.org_id;
SELECT results_eq(
    $$SELECT rollover_max, auto_recharge_below FROM credits.orgs WHERE org_id = 'rc'$$,
    $$VALUES ('5'::credit, NULL::credit)$$, 'RLS: ... the other org is unchanged');
SET LOCAL ROLE ro_admin_t;
SELECT lives_ok($$SELECT credits.set_rollover('rc', 1)$$, 'an admin (no credits.org_id) may set_rollover');
RESET ROLE;

SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_proc p
       WHERE p.pronamespace = 'credits'::regnamespace
         AND p.proname IN ('set_rollover', 'set_auto_recharge', '_auto_recharge', '_add_grant')
         AND obj_description(p.oid, 'pg_proc') IS NULL$$,
    'set_rollover, set_auto_recharge, _auto_recharge, _add_grant have a COMMENT');
SELECT is((SELECT count(*)::int FROM pg_proc WHERE pronamespace = 'credits'::regnamespace
             AND proname IN ('set_rollover', 'set_auto_recharge', '_auto_recharge', '_add_grant')), 4,
          '... (all four exist)');
SELECT is_empty(
    $$SELECT c.t || '.' || c.col FROM (VALUES ('credits.orgs', 'rollover_max'), ('credits.orgs', 'rollover_periods'),
                                              ('credits.orgs', 'auto_recharge_below'), ('credits.orgs', 'auto_recharge_amount'),
                                              ('credits.orgs', 'auto_recharge_max'), ('credits.orgs', 'auto_recharge_expires_after'),
                                              ('credits.pools', 'auto_recharges')) c(t, col)
       WHERE col_description(c.t::regclass, (SELECT attnum FROM pg_attribute
                                              WHERE attrelid = c.t::regclass AND attname = c.col)) IS NULL$$,
    'the new columns have a COMMENT');
SELECT ok(obj_description('credits.pool_status'::regclass, 'pg_class') LIKE '%burn_per_day%',
          'pool_status''s COMMENT mentions burn_per_day');
SELECT ok(col_description('credits.ledger'::regclass, (SELECT attnum FROM pg_attribute WHERE attrelid = 'credits.ledger'::regclass AND attname = 'kind'))
          LIKE '%rollover%auto_recharge%', 'ledger.kind''s COMMENT names rollover and auto_recharge');

SELECT is_empty($$SELECT * FROM credits.verify()$$, 'verify() is clean at the end');

-- ===========================================================================
-- the charge that triggers an auto-recharge is drawn from the grants there
-- were, never from the one it added (even one expiring first)
-- ===========================================================================
SELECT org_id FROM credits.create_org('drw', allowance_per_user => 0);
SELECT credits.enable_provider('drw', 'openai');
SELECT credits.add_member('drw', 'u');
SELECT available FROM credits.recharge('drw', 100, note => 'G');
SELECT credits.set_auto_recharge('drw', 50, 30, 1, '1 day');
CREATE TEMP TABLE drw_res AS
SELECT * FROM credits.credit_debit('drw', 'u', 'gpt-4o', 280000);
SELECT results_eq($$SELECT charged, available FROM drw_res$$,
                  $$VALUES ('70'::credit, '60'::credit)$$,
                  'drw: the debit of 70 crossed 50, was charged 70 and returns 60 (30 left + the grant of 30)');
SELECT results_eq(
    $$SELECT g.note, d.amount FROM credits.grant_draws d JOIN credits.grants g USING (grant_id)
       WHERE d.entry_id = (SELECT entry_id FROM drw_res)$$,
    $$VALUES ('G'::text, '70'::credit)$$,
    'drw: its 70 were drawn from G alone, not from the auto-recharge grant that expires first');
SELECT results_eq(
    $$SELECT amount, remaining FROM credits.grants WHERE org_id = 'drw' AND note LIKE 'auto-recharge%'$$,
    $$VALUES ('30'::credit, '30'::credit)$$,
    'drw: the auto-recharge grant is whole');
SELECT is_empty($$SELECT * FROM credits.verify('drw')$$, 'drw: verify() finds nothing');

SELECT * FROM finish();
ROLLBACK;
