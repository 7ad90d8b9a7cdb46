-- pgTAP: billing periods, rollover (credits.reset_due), recharge and purchased grants
--
-- now() is frozen inside the transaction, so time is moved with explicit
-- as_of values: every daily org is anchored 10 days ago, so its current
-- period is [now(), now() + 1 day); credits.reset_due(now() + 3 days) then
-- jumps it to [now() + 3 days, now() + 4 days), skipping two periods.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(152);

-- ---------------------------------------------------------------------------
-- Fixtures (gpt-4o: 4000 input tokens = 1 credit).  Every org is daily,
-- anchored now() - 10 days, openai enabled:
--   roll     10/user: u1, u2 + a 10 grant without expiry; plan cut to 6 in the period
--   members  10/user: a, b (cap 5), c (removed in the period)
--   raise    10/user: x; plan raised to 15, then y added
--   gr       10/user: g + grants G1 4 (expires +1 day), G2 6 (+10 days), G3 5 (never)
--   order    10/user: o + grants A (+20 days), B (+10 days), C (never), D (never), E (+10 days)
--   holds    10/user: h1, h2 with two 30-day holds; plan cut to 2 in the period
--   carry    10/user: c with a 15-minute hold and a 30-day hold
--   rech     r1, r2 with 5 each (recharge restore)
--   tu       10/user: t (top-ups)
--   s2       10/user: s, a 2-second period
--   berlin   10/user: b, daily in Europe/Berlin (created later)
-- ---------------------------------------------------------------------------
DO $$
DECLARE
    o text;
BEGIN
    FOREACH o IN ARRAY ARRAY['roll', 'members', 'raise', 'gr', 'order', 'holds', 'carry', 'rech', 'tu'] LOOP
        PERFORM credits.create_org(o, allowance_per_user => 10,
                                   billing_anchor => now() - interval '10 days', period => '1 day');
        PERFORM credits.enable_provider(o, 'openai');
    END LOOP;
    PERFORM credits.create_org('s2', allowance_per_user => 10,
                               billing_anchor => now() - interval '10 seconds', period => '2 seconds');
    PERFORM credits.enable_provider('s2', 'openai');
    PERFORM credits.add_member('s2', 's');

    PERFORM credits.add_member('roll', 'u1');
    PERFORM credits.add_member('roll', 'u2');
    PERFORM credits.recharge('roll', 10);

    PERFORM credits.add_member('members', 'a');
    PERFORM credits.add_member('members', 'b', cap => 5);
    PERFORM credits.add_member('members', 'c');

    PERFORM credits.add_member('raise', 'x');

    PERFORM credits.add_member('gr', 'g');
    PERFORM credits.recharge('gr', 4, now() + interval '1 day', 'G1');
    PERFORM credits.recharge('gr', 6, now() + interval '10 days', 'G2');
    PERFORM credits.recharge('gr', 5, NULL, 'G3');

    PERFORM credits.add_member('order', 'o');
    PERFORM credits.recharge('order', 5, now() + interval '20 days', 'A');
    PERFORM credits.recharge('order', 5, now() + interval '10 days', 'B');
    PERFORM credits.recharge('order', 5, NULL, 'C');
    PERFORM credits.recharge('order', 5, NULL, 'D');
    PERFORM credits.recharge('order', 5, now() + interval '10 days', 'E');

    PERFORM credits.add_member('holds', 'h1');
    PERFORM credits.add_member('holds', 'h2');

    PERFORM credits.add_member('carry', 'c');

    PERFORM credits.add_member('rech', 'r1', allowance => 5);
    PERFORM credits.add_member('rech', 'r2', allowance => 5);

    PERFORM credits.add_member('tu', 't');
END
$$;

-- debit and hold results, labelled
CREATE TEMP TABLE res (label text PRIMARY KEY, entry_id bigint, model text, cost credits.credit,
                       charged credits.credit, shortfall credits.credit, available credits.credit,
                       exhausted boolean, replayed boolean);
CREATE TEMP TABLE hres (label text PRIMARY KEY, hold_id bigint, model text, fell_back boolean,
                        reserved credits.credit, available credits.credit, expires_at timestamptz,
                        replayed boolean);

SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 'roll'$$,
    $$VALUES (now(), now() + interval '1 day')$$,
    'fixture: an org anchored 10 days ago with a daily period is in [now(), now() + 1 day)');
SELECT is(credits.reset_due(now()), 0, 'reset_due(now()): nothing is due yet');
SELECT is((SELECT count(*)::int FROM credits.periods), 0, 'fixture: no closed period yet');

-- ---------------------------------------------------------------------------
-- Period 1 of the daily orgs: usage, plan and membership changes
-- ---------------------------------------------------------------------------
-- roll: 8 + 3 + 12 (9 allowance, 3 grant) + 10 (7 charged, 3 short)
INSERT INTO res SELECT 'roll1', d.* FROM credits.credit_debit('roll', 'u1', 'gpt-4o', 32000) d;
INSERT INTO res SELECT 'roll2', d.* FROM credits.credit_debit('roll', 'u2', 'gpt-4o', 12000) d;
INSERT INTO res SELECT 'roll3', d.* FROM credits.credit_debit('roll', 'u1', 'gpt-4o', 48000) d;
INSERT INTO res SELECT 'roll4', d.* FROM credits.credit_debit('roll', 'u2', 'gpt-4o', 40000) d;
SELECT results_eq(
    $$SELECT label, charged, shortfall, available FROM res WHERE label LIKE 'roll%' ORDER BY label$$,
    $$VALUES ('roll1'::text, '8'::credit, '0'::credit, '22'::credit), ('roll2', '3', '0', '19'),
             ('roll3', '12', '0', '7'), ('roll4', '7', '3', '0')$$,
    'roll: four debits use the 20 of allowance and the 10 of top-up, the last one runs 3 short');
SELECT lives_ok($$SELECT credits.set_plan('roll', 6)$$, 'roll: set_plan lowers the plan to 6');
SELECT results_eq(
    $$SELECT allowance, allowance_used, topup, topup_used, calls, shortfall FROM credits.pools WHERE org_id = 'roll'$$,
    $$VALUES ('20'::credit, '20'::credit, '0'::credit, '10'::credit, 4::bigint, '3'::credit)$$,
    'roll: a lower plan does not lower the pool within the period');

-- members: a 8, b 6 (capped at 5, 1 short), then c is removed
INSERT INTO res SELECT 'mem1', d.* FROM credits.credit_debit('members', 'a', 'gpt-4o', 32000) d;
INSERT INTO res SELECT 'mem2', d.* FROM credits.credit_debit('members', 'b', 'gpt-4o', 24000) d;
SELECT results_eq(
    $$SELECT user_id, used FROM credits.member_usage WHERE org_id = 'members' ORDER BY user_id$$,
    $$VALUES ('a'::text, '8'::credit), ('b', '5'::credit)$$,
    'members: period usage a 8, b 5 (at the cap)');
SELECT is((SELECT DISTINCT reason FROM credits.allowed_models('members', 'b') WHERE NOT is_fallback),
          'user_cap_reached', 'members: b has used the cap, premium models are grayed out');
SELECT lives_ok($$SELECT credits.remove_member('members', 'c')$$, 'members: remove c');
SELECT is((SELECT allowance FROM credits.pools WHERE org_id = 'members'), '30'::credit,
          'members: a removed member''s allowance stays in the pool for the period');

-- raise: raises count at once
SELECT is((SELECT allowance FROM credits.pools WHERE org_id = 'raise'), '10'::credit, 'raise: 10 with one member');
SELECT lives_ok($$SELECT credits.set_plan('raise', 15)$$, 'raise: set_plan raises the plan to 15');
SELECT is((SELECT allowance FROM credits.pools WHERE org_id = 'raise'), '15'::credit,
          'raise: a higher plan raises the pool at once');
SELECT lives_ok($$SELECT credits.add_member('raise', 'y')$$, 'raise: add y');
SELECT is((SELECT allowance FROM credits.pools WHERE org_id = 'raise'), '30'::credit,
          'raise: a new member raises the pool at once');

-- gr: 12 = 10 of allowance + 2 of G1 (the earliest expiry)
INSERT INTO res SELECT 'gr1', d.* FROM credits.credit_debit('gr', 'g', 'gpt-4o', 48000) d;
SELECT results_eq(
    $$SELECT l.from_allowance, l.from_topup FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 'gr1'$$,
    $$VALUES ('10'::credit, '2'::credit)$$,
    'gr: the allowance first, then the top-up');
SELECT results_eq(
    $$SELECT note, amount, remaining, expired_amount FROM credits.grants WHERE org_id = 'gr' ORDER BY grant_id$$,
    $$VALUES ('G1'::text, '4'::credit, '2'::credit, '0'::credit), ('G2', '6', '6', '0'), ('G3', '5', '5', '0')$$,
    'gr: the draw came from G1, the grant expiring first');
SELECT results_eq(
    $$SELECT topup, next_grant_expiry FROM credits.pools WHERE org_id = 'gr'$$,
    $$VALUES ('13'::credit, now() + interval '1 day')$$,
    'gr: pool top-up 13, next grant expiry is G1''s');

-- order: grants are drawn by earliest expiry, never-expiring last, then oldest first
INSERT INTO res SELECT 'ord1', d.* FROM credits.credit_debit('order', 'o', 'gpt-4o', 60000) d;   -- 15
INSERT INTO res SELECT 'ord2', d.* FROM credits.credit_debit('order', 'o', 'gpt-4o', 28000) d;   -- 7
SELECT results_eq(
    $$SELECT r.label, l.charged, l.from_allowance, l.from_topup
        FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label LIKE 'ord%' ORDER BY l.entry_id$$,
    $$VALUES ('ord1'::text, '15'::credit, '10'::credit, '5'::credit), ('ord2', '7', '0', '7')$$,
    'order: 15 = 10 of allowance + 5 of top-up; then 7 all from top-up');
SELECT results_eq(
    $$SELECT r.label, g.note, d.amount
        FROM credits.grant_draws d JOIN credits.grants g USING (grant_id)
        JOIN res r ON r.entry_id = d.entry_id
       WHERE r.label LIKE 'ord%' ORDER BY d.entry_id, g.expires_at NULLS LAST, g.grant_id$$,
    $$VALUES ('ord1'::text, 'B'::text, '5'::credit), ('ord2', 'E', '5'), ('ord2', 'A', '2')$$,
    'order: B (+10 days, older) first, then E (+10 days, newer), then A (+20 days)');
SELECT results_eq(
    $$SELECT note, remaining FROM credits.grants WHERE org_id = 'order' ORDER BY note$$,
    $$VALUES ('A'::text, '3'::credit), ('B', '0'), ('C', '5'), ('D', '5'), ('E', '0')$$,
    'order: the never-expiring grants are untouched while expiring ones remain');

-- holds: 6 (h1) and 5 (h2) held, 4 used; then the plan is cut to 2
INSERT INTO hres SELECT 'hold1', h.* FROM credits.credit_reserve('holds', 'h1', 'gpt-4o', 24000, 0, NULL, '30 days') h;
INSERT INTO hres SELECT 'hold2', h.* FROM credits.credit_reserve('holds', 'h2', 'gpt-4o', 20000, 0, NULL, '30 days') h;
INSERT INTO res SELECT 'hd1', d.* FROM credits.credit_debit('holds', 'h1', 'gpt-4o', 16000) d;
SELECT lives_ok($$SELECT credits.set_plan('holds', 2)$$, 'holds: set_plan lowers the plan to 2');
SELECT results_eq(
    $$SELECT allowance, allowance_used, reserved, available FROM credits.pool_status WHERE org_id = 'holds'$$,
    $$VALUES ('20'::credit, '4'::credit, '11'::credit, '5'::credit)$$,
    'holds: 20 of allowance, 4 used, 11 held, 5 available');

-- carry: a 2-credit hold with the default TTL (15 minutes) and a 3-credit 30-day hold
INSERT INTO hres SELECT 'carryA', h.* FROM credits.credit_reserve('carry', 'c', 'gpt-4o', 8000, 0) h;
INSERT INTO hres SELECT 'carryB', h.* FROM credits.credit_reserve('carry', 'c', 'gpt-4o', 12000, 0, NULL, '30 days') h;
SELECT is((SELECT reserved FROM credits.pools WHERE org_id = 'carry'), '5'::credit, 'carry: 5 held');

-- ---------------------------------------------------------------------------
-- recharge without amount: restore the current period
-- ---------------------------------------------------------------------------
INSERT INTO res SELECT 'rech1', d.* FROM credits.credit_debit('rech', 'r1', 'gpt-4o', 24000) d;  -- 6
INSERT INTO res SELECT 'rech2', d.* FROM credits.credit_debit('rech', 'r2', 'gpt-4o', 12000) d;  -- 3
SELECT results_eq(
    $$SELECT allowance_used, alert_level FROM credits.pools WHERE org_id = 'rech'$$,
    $$VALUES ('9'::credit, 80)$$,
    'rech: 9 of 10 used, the 80% threshold was reached');
SELECT is((SELECT count(*)::int FROM credits.events WHERE org_id = 'rech' AND kind = 'threshold'), 1,
          'rech: one threshold event');
CREATE TEMP TABLE rech_res AS SELECT * FROM credits.recharge('rech');
SELECT results_eq(
    $$SELECT * FROM rech_res$$,
    $$VALUES ('rech'::text, now(), now() + interval '1 day', '10'::credit, '0'::credit, '0'::credit,
              '0'::credit, '10'::credit, false, '0'::credit, NULL::timestamptz)$$,
    'recharge(org): returns the org''s pool_status row, allowance used back to 0 (and with it the burn rate: nothing charged since)');
SELECT results_eq(
    $$SELECT allowance, allowance_used, topup, reserved, available FROM credits.pool_status WHERE org_id = 'rech'$$,
    $$SELECT allowance, allowance_used, topup, reserved, available FROM rech_res$$,
    'recharge(org): the returned row is the pool''s status');
SELECT is((SELECT count(*)::int FROM credits.member_usage WHERE org_id = 'rech' AND used > 0), 0,
          'recharge(org): members'' period usage is cleared');
SELECT results_eq(
    $$SELECT kind, period_start, from_allowance, from_topup, topup_change, available_after
        FROM credits.ledger WHERE org_id = 'rech' AND kind NOT IN ('debit')$$,
    $$VALUES ('recharge'::text, now(), '-9'::credit, '0'::credit, NULL::credit, '10'::credit)$$,
    'recharge(org): ledger kind recharge, from_allowance = -9 (the restored amount), available after 10');
SELECT results_eq(
    $$SELECT kind, (payload->>'restored')::numeric, (payload->>'available')::numeric,
             (payload->>'period_start')::timestamptz
        FROM credits.events WHERE org_id = 'rech' AND kind = 'recharge'$$,
    $$VALUES ('recharge'::text, 9::numeric, 10::numeric, now())$$,
    'recharge(org): one recharge event (restored 9, available 10)');
SELECT is((SELECT alert_level FROM credits.pools WHERE org_id = 'rech'), 0,
          'recharge(org): thresholds are re-armed (alert level back to 0)');
INSERT INTO res SELECT 'rech3', d.* FROM credits.credit_debit('rech', 'r1', 'gpt-4o', 32000) d;  -- 8
SELECT results_eq(
    $$SELECT payload->>'threshold', count(*)::int FROM credits.events
       WHERE org_id = 'rech' AND kind = 'threshold' GROUP BY 1 ORDER BY 1$$,
    $$VALUES ('80'::text, 2)$$,
    'recharge(org): crossing 80% again after the restore emits a second threshold event');
SELECT results_eq(
    $$SELECT user_id, used FROM credits.member_usage WHERE org_id = 'rech' ORDER BY user_id$$,
    $$VALUES ('r1'::text, '8'::credit)$$,
    'recharge(org): member usage counts again from the restore');
SELECT is((SELECT count(*)::int FROM credits.verify('rech')), 0, 'recharge(org): verify(''rech'') is clean');

-- ---------------------------------------------------------------------------
-- recharge with amount: a purchased grant
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE tu_res AS SELECT * FROM credits.recharge('tu', '2.5', now() + interval '5 days', 'promo');
SELECT results_eq(
    $$SELECT * FROM tu_res$$,
    $$VALUES ('tu'::text, now(), now() + interval '1 day', '10'::credit, '0'::credit, '2.5'::credit,
              '0'::credit, '12.5'::credit, false, '0'::credit, NULL::timestamptz)$$,
    'recharge(org, 2.5, +5 days): returns the pool_status row with top-up 2.5');
SELECT results_eq(
    $$SELECT amount, remaining, expired_amount, expires_at, note, created_at FROM credits.grants WHERE org_id = 'tu'$$,
    $$VALUES ('2.5'::credit, '2.5'::credit, '0'::credit, now() + interval '5 days', 'promo'::text, now())$$,
    'top-up: a grant row (amount, remaining, expires_at, note)');
SELECT results_eq(
    $$SELECT l.kind, l.period_start, l.topup_change, l.from_allowance, l.from_topup, l.available_after, l.note
        FROM credits.ledger l JOIN credits.grants g ON g.grant_id = l.grant_id WHERE l.org_id = 'tu'$$,
    $$VALUES ('topup'::text, now(), '2.5'::credit, '0'::credit, '0'::credit, '12.5'::credit, 'promo'::text)$$,
    'top-up: ledger kind topup, topup_change 2.5, naming the grant');
SELECT is((SELECT payload FROM credits.events WHERE org_id = 'tu' AND kind = 'topup'),
          jsonb_build_object('grant_id', (SELECT grant_id FROM credits.grants WHERE org_id = 'tu'),
                             'amount', 2.5, 'expires_at', now() + interval '5 days',
                             'available', 12.5, 'note', 'promo'),
          'top-up: one topup event {grant_id, amount, expires_at, available, note}');
SELECT results_eq(
    $$SELECT topup, topup_used, next_grant_expiry FROM credits.pools WHERE org_id = 'tu'$$,
    $$VALUES ('2.5'::credit, '0'::credit, now() + interval '5 days')$$,
    'top-up: pool top-up 2.5, next grant expiry set');
SELECT is((SELECT topup FROM credits.recharge('tu', amount => '1')), '3.5'::credit,
          'top-up without expiry: top-up 3.5');
SELECT results_eq(
    $$SELECT amount, expires_at FROM credits.grants WHERE org_id = 'tu' ORDER BY grant_id$$,
    $$VALUES ('2.5'::credit, now() + interval '5 days'), ('1', NULL)$$,
    'top-up without expiry: a never-expiring grant');
SELECT is((SELECT next_grant_expiry FROM credits.pools WHERE org_id = 'tu'), now() + interval '5 days',
          'top-up without expiry: the next grant expiry is unchanged');

-- errors, each changing nothing
CREATE TEMP TABLE snap AS
    SELECT (SELECT count(*) FROM credits.grants) AS grants, (SELECT count(*) FROM credits.ledger) AS ledger,
           (SELECT count(*) FROM credits.events) AS events,
           (SELECT topup FROM credits.pools WHERE org_id = 'tu') AS tu_topup;
SELECT throws_ok($$SELECT * FROM credits.recharge('tu', '0')$$, '22023', 'amount must be positive',
                 'recharge: amount 0 is 22023');
SELECT throws_ok($$SELECT * FROM credits.recharge('tu', '-1')$$, '22023', 'amount must be positive',
                 'recharge: a negative amount is 22023');
SELECT throws_ok($$SELECT * FROM credits.recharge('tu', '1', now())$$, '22023', 'expires_at must be in the future',
                 'recharge: expires_at = now() is 22023');
SELECT throws_ok($$SELECT * FROM credits.recharge('tu', '1', now() - interval '1 day')$$, '22023',
                 'expires_at must be in the future', 'recharge: expires_at in the past is 22023');
SELECT throws_ok($$SELECT * FROM credits.recharge('tu', NULL, now() + interval '1 day')$$, '22023', NULL,
                 'recharge: expires_at without an amount is 22023');
SELECT throws_ok($$SELECT * FROM credits.recharge('tu', expires_at => now() + interval '1 day', note => 'x')$$,
                 '22023', NULL, 'recharge: expires_at without an amount (named arguments) is 22023');
SELECT throws_ok($$SELECT * FROM credits.recharge('nope')$$, 'UC004', 'unknown org "nope"',
                 'recharge(unknown org): UC004');
SELECT throws_ok($$SELECT * FROM credits.recharge('nope', '1')$$, 'UC004', 'unknown org "nope"',
                 'recharge(unknown org, amount): UC004');
SELECT throws_ok($$SELECT * FROM credits.recharge(NULL)$$, '22004', 'org_id must not be null',
                 'recharge(NULL): 22004 naming org_id');
SELECT throws_ok($$SELECT * FROM credits.recharge(NULL, '1')$$, '22004', 'org_id must not be null',
                 'recharge(NULL, amount): 22004 naming org_id');
SELECT throws_ok($$SELECT * FROM credits.recharge('', '1')$$, '22023', 'org_id must not be empty',
                 'recharge(''''): 22023');
SELECT results_eq(
    $$SELECT (SELECT count(*) FROM credits.grants), (SELECT count(*) FROM credits.ledger),
             (SELECT count(*) FROM credits.events), (SELECT topup FROM credits.pools WHERE org_id = 'tu')$$,
    $$SELECT grants, ledger, events, tu_topup FROM snap$$,
    'recharge errors: no grant, ledger row, event or pool change');

-- ---------------------------------------------------------------------------
-- A 2-second period: reset_due rolls only what is due
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 's2'$$,
    $$VALUES (now(), now() + interval '2 seconds')$$,
    's2: a 2-second period anchored 10 seconds ago is [now(), now() + 2 s)');
SELECT is(credits.reset_due(now() + interval '5 seconds'), 1, 'reset_due(now() + 5 s): only s2 rolls');
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 's2'$$,
    $$VALUES (now() + interval '4 seconds', now() + interval '6 seconds')$$,
    's2: now in the period containing as_of, [now() + 4 s, now() + 6 s)');
SELECT results_eq(
    $$SELECT org_id, period_start, period_end FROM credits.periods$$,
    $$VALUES ('s2'::text, now(), now() + interval '2 seconds')$$,
    's2: one closed period; the skipped one [+2 s, +4 s) is not recorded');

-- ---------------------------------------------------------------------------
-- A daily org in Europe/Berlin keeps local midnight
-- ---------------------------------------------------------------------------
SELECT lives_ok($$SELECT * FROM credits.create_org('berlin', allowance_per_user => 10,
                    billing_anchor => '2024-03-30 00:00:00 Europe/Berlin', period => '1 day',
                    time_zone => 'Europe/Berlin')$$, 'berlin: created');
SELECT lives_ok($$SELECT credits.add_member('berlin', 'b')$$, 'berlin: add b');
SELECT results_eq(
    $$SELECT p.period_start, p.period_end FROM credits.pools p WHERE org_id = 'berlin'$$,
    $$SELECT period_start, period_end
        FROM credits.billing_period('2024-03-30 00:00:00 Europe/Berlin', '1 day', 'Europe/Berlin', now())$$,
    'berlin: the current period is billing_period(anchor, 1 day, Europe/Berlin, now())');
SELECT ok((SELECT (period_start AT TIME ZONE 'Europe/Berlin')::time = '00:00'
              AND (period_end AT TIME ZONE 'Europe/Berlin')::time = '00:00'
             FROM credits.pools WHERE org_id = 'berlin'),
          'berlin: the period runs from local midnight to local midnight');

-- ---------------------------------------------------------------------------
-- The jump: reset_due(now() + 3 days)
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE before_jump AS SELECT * FROM credits.pools;
CREATE TEMP TABLE ledger_before AS SELECT max(entry_id) AS last FROM credits.ledger;
CREATE TEMP TABLE events_before AS SELECT max(event_id) AS last FROM credits.events;

SELECT is(credits.reset_due(now() + interval '3 days'), 11, 'reset_due(now() + 3 days): all 11 orgs roll over');
SELECT is(credits.reset_due(now() + interval '3 days'), 0, 'reset_due with the same as_of again: 0');
SELECT is(credits.reset_due(now() + interval '2 days'), 0, 'reset_due with an earlier as_of: 0');

SELECT ok((SELECT bool_and(period_start <= now() + interval '3 days' AND period_end > now() + interval '3 days')
             FROM credits.pools),
          'every pool is now in the period containing as_of');
SELECT results_eq(
    $$SELECT DISTINCT period_start, period_end FROM credits.pools
       WHERE org_id NOT IN ('s2', 'berlin')$$,
    $$VALUES (now() + interval '3 days', now() + interval '4 days')$$,
    'daily orgs: the new period is [now() + 3 days, now() + 4 days) (two periods skipped)');
SELECT results_eq(
    $$SELECT org_id, count(*)::int FROM credits.periods GROUP BY org_id ORDER BY org_id$$,
    $$VALUES ('berlin'::text, 1), ('carry', 1), ('gr', 1), ('holds', 1), ('members', 1), ('order', 1),
             ('raise', 1), ('rech', 1), ('roll', 1), ('s2', 2), ('tu', 1)$$,
    'exactly one closed period per org per rollover, the skipped periods are not recorded');
SELECT results_eq(
    $$SELECT DISTINCT period_start, period_end FROM credits.periods WHERE org_id NOT IN ('s2', 'berlin')$$,
    $$VALUES (now(), now() + interval '1 day')$$,
    'daily orgs: the closed period is the old one, [now(), now() + 1 day)');
SELECT results_eq(
    $$SELECT p.org_id, p.period_start, p.period_end, p.allowance, p.allowance_used, p.topup_used,
             p.shortfall, p.calls
        FROM credits.periods p ORDER BY p.org_id, p.period_start$$,
    $$SELECT b.org_id, b.period_start, b.period_end, b.allowance, b.allowance_used, b.topup_used,
             b.shortfall, b.calls
        FROM before_jump b
        UNION ALL
      SELECT 's2', now(), now() + interval '2 seconds', '10'::credit, '0'::credit, '0'::credit, '0'::credit, 0::bigint
       ORDER BY 1, 2$$,
    'every closed period holds what its pool had at the end of the period');
SELECT ok((SELECT bool_and(closed_at = now()) FROM credits.periods), 'periods.closed_at is set');

-- the periods row of roll, spelled out
SELECT results_eq(
    $$SELECT period_start, period_end, allowance, allowance_used, topup_used, shortfall, calls
        FROM credits.periods WHERE org_id = 'roll'$$,
    $$VALUES (now(), now() + interval '1 day', '20'::credit, '20'::credit, '10'::credit, '3'::credit, 4::bigint)$$,
    'roll: closed period (allowance 20, used 20, top-up used 10, shortfall 3, 4 calls)');
SELECT results_eq(
    $$SELECT allowance, allowance_used, topup, topup_used, reserved, calls, shortfall, alert_level
        FROM credits.pools WHERE org_id = 'roll'$$,
    $$VALUES ('12'::credit, '0'::credit, '0'::credit, '0'::credit, '0'::credit, 0::bigint, '0'::credit, 0)$$,
    'roll: new period at the lowered plan (2 x 6), used, calls, shortfall and alert level back to 0');
SELECT results_eq(
    $$SELECT allowance, allowance_used, topup, reserved, available, exhausted FROM credits.pool_status
       WHERE org_id = 'roll'$$,
    $$VALUES ('12'::credit, '0'::credit, '0'::credit, '0'::credit, '12'::credit, false)$$,
    'roll: pool_status shows 12 available, no longer exhausted');
SELECT is((SELECT count(*)::int FROM credits.member_usage WHERE org_id = 'roll'), 0,
          'roll: member usage is cleared');

-- the ledger of the jump
SELECT results_eq(
    $$SELECT kind, period_start, from_allowance, from_topup, topup_change, reserved_change, available_after,
             note LIKE 'period %'
        FROM credits.ledger WHERE org_id = 'roll' AND entry_id > (SELECT last FROM ledger_before)$$,
    $$VALUES ('reset'::text, now() + interval '3 days', '0'::credit, '0'::credit, NULL::credit, NULL::credit,
              '12'::credit, true)$$,
    'roll: one ledger entry, kind reset, in the new period, available after 12');
SELECT results_eq(
    $$SELECT org_id FROM credits.ledger
       WHERE kind = 'reset' AND entry_id > (SELECT last FROM ledger_before) ORDER BY org_id$$,
    $$SELECT org_id FROM before_jump ORDER BY org_id$$,
    'one reset ledger entry per org rolled over');

-- the events of the jump
SELECT results_eq(
    $$SELECT org_id, kind, created_at FROM credits.events
       WHERE event_id > (SELECT last FROM events_before) AND kind = 'period_reset' ORDER BY org_id$$,
    $$SELECT org_id, 'period_reset'::text, now() FROM before_jump ORDER BY org_id$$,
    'one period_reset event per org rolled over');
SELECT is((SELECT count(*)::int FROM credits.events
            WHERE event_id > (SELECT last FROM events_before) AND kind <> 'period_reset'), 0,
          'the jump emitted no other event');
SELECT is((SELECT payload FROM credits.events WHERE org_id = 'roll' AND kind = 'period_reset'),
          jsonb_build_object(
              'period_start', now() + interval '3 days', 'period_end', now() + interval '4 days',
              'allowance', 12, 'topup', 0, 'reserved', 0, 'available', 12,
              'rollover', jsonb_build_object('amount', 0, 'grant_id', NULL, 'expires_at', NULL),
              'previous', jsonb_build_object(
                  'period_start', now(), 'period_end', now() + interval '1 day',
                  'allowance', 20, 'allowance_used', 20, 'topup_used', 10, 'shortfall', 3, 'calls', 4)),
          'roll: period_reset payload describes the new period and the previous one');

-- usage over the closed period
SELECT is_empty($$SELECT * FROM credits.usage('roll')$$,
                'usage(roll): the new period has no usage yet');
SELECT results_eq(
    $$SELECT u.* FROM credits.periods p, credits.usage('roll', p.period_start, p.period_end) u
       WHERE p.org_id = 'roll'$$,
    $$VALUES ('u1'::text, 'gpt-4o'::text, 2::bigint, 80000::numeric, 0::numeric, '20'::credit, '20'::credit, '0'::credit, NULL::text),
             ('u2', 'gpt-4o', 2, 52000, 0, '13', '10', '3', NULL)$$,
    'usage(roll, closed period bounds): the past period''s calls, tokens, cost, charged and shortfall');

-- thresholds are re-armed in the new period
INSERT INTO res SELECT 'roll5', d.* FROM credits.credit_debit('roll', 'u1', 'gpt-4o', 40000) d;  -- 10 of 12
SELECT results_eq(
    $$SELECT l.charged, l.from_allowance, l.from_topup FROM credits.ledger l JOIN res r USING (entry_id)
       WHERE r.label = 'roll5'$$,
    $$VALUES ('10'::credit, '10'::credit, '0'::credit)$$,
    'roll: the new period is charged from its new allowance');
SELECT results_eq(
    $$SELECT payload->>'threshold', (payload->>'period_start')::timestamptz FROM credits.events
       WHERE org_id = 'roll' AND kind = 'threshold' AND event_id > (SELECT last FROM events_before)$$,
    $$VALUES ('80'::text, now() + interval '3 days')$$,
    'roll: crossing 80% in the new period emits a threshold event again');

-- members: the removed member's allowance leaves the pool, usage and caps restart
SELECT results_eq(
    $$SELECT allowance, allowance_used FROM credits.pools WHERE org_id = 'members'$$,
    $$VALUES ('20'::credit, '0'::credit)$$,
    'members: the removed member''s allowance leaves the pool at the rollover (2 x 10)');
SELECT is((SELECT count(*)::int FROM credits.member_usage WHERE org_id = 'members'), 0,
          'members: period usage is cleared');
SELECT ok((SELECT bool_and(available) AND bool_and(reason IS NULL) FROM credits.allowed_models('members', 'b')),
          'members: b''s cap applies afresh, every model is available again');
INSERT INTO res SELECT 'mem3', d.* FROM credits.credit_debit('members', 'b', 'gpt-4o', 24000) d;  -- 6, cap 5
SELECT results_eq(
    $$SELECT charged, shortfall FROM res WHERE label = 'mem3'$$,
    $$VALUES ('5'::credit, '1'::credit)$$,
    'members: b may draw up to the cap again in the new period');
SELECT results_eq(
    $$SELECT user_id, used FROM credits.member_usage WHERE org_id = 'members'$$,
    $$VALUES ('b'::text, '5'::credit)$$,
    'members: usage counts from 0 in the new period');
SELECT throws_ok($$SELECT * FROM credits.credit_debit('members', 'c', 'gpt-4o', 1)$$, 'UC005', NULL,
                 'members: the removed member stays removed');

-- raise: the raised pool is kept
SELECT is((SELECT allowance FROM credits.pools WHERE org_id = 'raise'), '30'::credit,
          'raise: the new period has the raised allowance (2 x 15)');

-- gr: G1 expired and is dropped; G2 and G3 survive
SELECT results_eq(
    $$SELECT note, remaining, expired_amount FROM credits.grants WHERE org_id = 'gr' ORDER BY grant_id$$,
    $$VALUES ('G1'::text, '0'::credit, '2'::credit), ('G2', '6', '0'), ('G3', '5', '0')$$,
    'gr: the expired grant''s remaining 2 is dropped, the others survive the reset');
SELECT results_eq(
    $$SELECT l.kind, l.period_start, l.topup_change, g.note, l.note LIKE 'grant expired at %'
        FROM credits.ledger l JOIN credits.grants g USING (grant_id)
       WHERE l.org_id = 'gr' AND l.kind = 'expire'$$,
    $$VALUES ('expire'::text, now() + interval '3 days', '-2'::credit, 'G1'::text, true)$$,
    'gr: ledger kind expire, topup_change -2, naming G1');
SELECT results_eq(
    $$SELECT allowance, allowance_used, topup, topup_used, next_grant_expiry FROM credits.pools WHERE org_id = 'gr'$$,
    $$VALUES ('10'::credit, '0'::credit, '11'::credit, '0'::credit, now() + interval '10 days')$$,
    'gr: pool top-up 11 (6 + 5), next grant expiry is G2''s');
SELECT is((SELECT available FROM credits.pool_status WHERE org_id = 'gr'), '21'::credit,
          'gr: 21 available');
SELECT is((SELECT available_after FROM credits.ledger WHERE org_id = 'gr' ORDER BY entry_id DESC LIMIT 1),
          '21'::credit, 'gr: the last ledger entry''s available_after is the pool''s available');
SELECT results_eq(
    $$SELECT (payload->>'allowance')::numeric, (payload->>'topup')::numeric, (payload->>'available')::numeric
        FROM credits.events WHERE org_id = 'gr' AND kind = 'period_reset'$$,
    $$VALUES (10::numeric, 11::numeric, 21::numeric)$$,
    'gr: the period_reset event describes the new period without the expired grant (top-up 11, available 21)');
SELECT results_eq(
    $$SELECT topup_used FROM credits.periods WHERE org_id = 'gr'$$,
    $$VALUES ('2'::credit)$$,
    'gr: the closed period recorded 2 drawn from top-up');
INSERT INTO res SELECT 'gr2', d.* FROM credits.credit_debit('gr', 'g', 'gpt-4o', 60000) d;  -- 15
SELECT results_eq(
    $$SELECT l.from_allowance, l.from_topup, g.note, d.amount
        FROM credits.ledger l JOIN res r USING (entry_id)
        JOIN credits.grant_draws d ON d.entry_id = l.entry_id JOIN credits.grants g ON g.grant_id = d.grant_id
       WHERE r.label = 'gr2'$$,
    $$VALUES ('10'::credit, '5'::credit, 'G2'::text, '5'::credit)$$,
    'gr: in the new period 15 = 10 of allowance + 5 from G2 (the earliest expiry left)');

-- order: grants carried over, drawn after the new allowance
INSERT INTO res SELECT 'ord3', d.* FROM credits.credit_debit('order', 'o', 'gpt-4o', 52000) d;   -- 13
INSERT INTO res SELECT 'ord4', d.* FROM credits.credit_debit('order', 'o', 'gpt-4o', 32000) d;   -- 8
SELECT results_eq(
    $$SELECT r.label, l.period_start, l.charged, l.from_allowance, l.from_topup
        FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label IN ('ord3', 'ord4') ORDER BY l.entry_id$$,
    $$VALUES ('ord3'::text, now() + interval '3 days', '13'::credit, '10'::credit, '3'::credit),
             ('ord4', now() + interval '3 days', '8', '0', '8')$$,
    'order: the new period''s allowance first again (13 = 10 + 3), then top-up (8)');
SELECT results_eq(
    $$SELECT r.label, g.note, d.amount
        FROM credits.grant_draws d JOIN credits.grants g USING (grant_id)
        JOIN res r ON r.entry_id = d.entry_id
       WHERE r.label IN ('ord3', 'ord4') ORDER BY d.entry_id, g.expires_at NULLS LAST, g.grant_id$$,
    $$VALUES ('ord3'::text, 'A'::text, '3'::credit), ('ord4', 'C', '5'), ('ord4', 'D', '3')$$,
    'order: A (the last expiring grant) first, then the never-expiring C, then D (oldest first)');
SELECT results_eq(
    $$SELECT note, remaining FROM credits.grants WHERE org_id = 'order' ORDER BY note$$,
    $$VALUES ('A'::text, '0'::credit), ('B', '0'), ('C', '0'), ('D', '2'), ('E', '0')$$,
    'order: only D has credits left');
SELECT results_eq(
    $$SELECT p.topup, p.topup_used, c.topup_used FROM credits.pools p JOIN credits.periods c USING (org_id)
       WHERE p.org_id = 'order'$$,
    $$VALUES ('2'::credit, '11'::credit, '12'::credit)$$,
    'order: pool top-up 2; 11 drawn in this period, 12 in the closed one');
SELECT results_eq(
    $$SELECT g.note, g.amount, sum(d.amount)
        FROM credits.grants g JOIN credits.grant_draws d USING (grant_id)
       WHERE g.org_id = 'order' GROUP BY g.grant_id, g.note, g.amount ORDER BY g.note$$,
    $$VALUES ('A'::text, '5'::credit, '5'::credit), ('B', '5', '5'), ('C', '5', '5'), ('D', '5', '3'), ('E', '5', '5')$$,
    'order: each grant''s draws add up to what it lost');

-- holds: carried, the newest trimmed to fit the smaller period
SELECT results_eq(
    $$SELECT allowance, allowance_used, reserved, available, exhausted FROM credits.pool_status WHERE org_id = 'holds'$$,
    $$VALUES ('4'::credit, '0'::credit, '4'::credit, '0'::credit, true)$$,
    'holds: the new period has 4 (2 x 2); holds are cut to the 4 it can cover');
SELECT results_eq(
    $$SELECT r.label, h.status, h.reserved FROM credits.holds h JOIN hres r USING (hold_id)
       WHERE h.org_id = 'holds' ORDER BY r.label$$,
    $$VALUES ('hold1'::text, 'open'::text, '4'::credit), ('hold2', 'open', '0'::credit)$$,
    'holds: both stay open; the newest (5) is trimmed to 0, the older from 6 to 4');
SELECT results_eq(
    $$SELECT r.label, l.kind, l.period_start, l.reserved_change, l.note LIKE 'trimmed%'
        FROM credits.ledger l JOIN hres r USING (hold_id)
       WHERE l.org_id = 'holds' AND l.entry_id > (SELECT last FROM ledger_before) ORDER BY l.entry_id$$,
    $$VALUES ('hold2'::text, 'release'::text, now() + interval '3 days', '-5'::credit, true),
             ('hold1', 'release', now() + interval '3 days', '-2', true)$$,
    'holds: a release ledger entry per trimmed hold, newest first, noted as trimmed');
SELECT results_eq(
    $$SELECT (payload->>'allowance')::numeric, (payload->>'reserved')::numeric, (payload->>'available')::numeric
        FROM credits.events WHERE org_id = 'holds' AND kind = 'period_reset'$$,
    $$VALUES (4::numeric, 4::numeric, 0::numeric)$$,
    'holds: the period_reset event shows the trimmed holds');
SELECT results_eq(
    $$SELECT d.cost, d.charged, d.shortfall, d.available
        FROM credits.credit_settle((SELECT hold_id FROM hres WHERE label = 'hold1'), 12000, 0) d$$,
    $$VALUES ('3'::credit, '3'::credit, '0'::credit, '1'::credit)$$,
    'holds: a carried hold settles in the new period (3 of its 4, the rest released)');
SELECT is(credits.credit_release((SELECT hold_id FROM hres WHERE label = 'hold2')), '0'::credit,
          'holds: the hold trimmed to 0 releases 0');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available FROM credits.pool_status WHERE org_id = 'holds'$$,
    $$VALUES ('3'::credit, '0'::credit, '1'::credit)$$,
    'holds: the new period was charged');

-- carry: the 30-day hold is carried unchanged, the 15-minute one expired
SELECT results_eq(
    $$SELECT r.label, h.status, h.reserved FROM credits.holds h JOIN hres r USING (hold_id)
       WHERE h.org_id = 'carry' ORDER BY r.label$$,
    $$VALUES ('carryA'::text, 'expired'::text, '0'::credit), ('carryB', 'open', '3'::credit)$$,
    'carry: the 30-day hold is carried with its 3, the 15-minute hold expired');
SELECT results_eq(
    $$SELECT allowance, allowance_used, reserved, available FROM credits.pool_status WHERE org_id = 'carry'$$,
    $$VALUES ('10'::credit, '0'::credit, '3'::credit, '7'::credit)$$,
    'carry: the new pool keeps the carried hold reserved');
SELECT results_eq(
    $$SELECT l.kind, l.reserved_change, l.note FROM credits.ledger l
       WHERE l.org_id = 'carry' AND l.entry_id > (SELECT last FROM ledger_before) AND l.kind <> 'reset'$$,
    $$VALUES ('release'::text, '-2'::credit, 'expired'::text)$$,
    'carry: no hold trimmed; only the expired hold is released');

-- berlin: still local midnight
SELECT results_eq(
    $$SELECT p.period_start, p.period_end FROM credits.pools p WHERE org_id = 'berlin'$$,
    $$SELECT period_start, period_end
        FROM credits.billing_period('2024-03-30 00:00:00 Europe/Berlin', '1 day', 'Europe/Berlin',
                                    now() + interval '3 days')$$,
    'berlin: rolled into the Berlin day containing as_of');
SELECT ok((SELECT (period_start AT TIME ZONE 'Europe/Berlin')::time = '00:00'
              AND (period_start AT TIME ZONE 'Europe/Berlin')::date
                  = ((now() + interval '3 days') AT TIME ZONE 'Europe/Berlin')::date
             FROM credits.pools WHERE org_id = 'berlin'),
          'berlin: the new period starts at local midnight of as_of''s Berlin date');

SELECT is_empty($$SELECT * FROM credits.verify()$$, 'verify() is clean after the jump');

-- ---------------------------------------------------------------------------
-- A second jump: grants expire at the reset that passes their expiry
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE ledger_before2 AS SELECT max(entry_id) AS last FROM credits.ledger;
SELECT is(credits.reset_due(now() + interval '12 days'), 11, 'reset_due(now() + 12 days): all 11 orgs roll again');
SELECT results_eq(
    $$SELECT note, remaining, expired_amount FROM credits.grants WHERE org_id = 'gr' ORDER BY grant_id$$,
    $$VALUES ('G1'::text, '0'::credit, '2'::credit), ('G2', '0', '1'), ('G3', '5', '0')$$,
    'gr: G2 (expired at +10 days) loses its remaining 1; G3 (never expires) survives a second reset');
SELECT results_eq(
    $$SELECT g.note, l.topup_change, l.period_start FROM credits.ledger l JOIN credits.grants g USING (grant_id)
       WHERE l.org_id = 'gr' AND l.kind = 'expire' AND l.entry_id > (SELECT last FROM ledger_before2)$$,
    $$VALUES ('G2'::text, '-1'::credit, now() + interval '12 days')$$,
    'gr: one expire ledger entry for G2');
SELECT results_eq(
    $$SELECT topup, next_grant_expiry FROM credits.pools WHERE org_id = 'gr'$$,
    $$VALUES ('5'::credit, NULL::timestamptz)$$,
    'gr: pool top-up 5, no expiring grant left');
SELECT results_eq(
    $$SELECT note, remaining, expired_amount FROM credits.grants WHERE org_id = 'tu' ORDER BY grant_id$$,
    $$VALUES ('promo'::text, '0'::credit, '2.5'::credit), (NULL, '1', '0')$$,
    'tu: the unused 2.5 grant (expired at +5 days) is dropped whole, the other survives');
SELECT results_eq(
    $$SELECT org_id, count(*)::int FROM credits.periods WHERE org_id IN ('roll', 'gr') GROUP BY org_id ORDER BY org_id$$,
    $$VALUES ('gr'::text, 2), ('roll', 2)$$,
    'a second rollover closes a second period per org');
SELECT results_eq(
    $$SELECT period_start, period_end, allowance, allowance_used, topup_used, shortfall, calls
        FROM credits.periods WHERE org_id = 'roll' ORDER BY period_start DESC LIMIT 1$$,
    $$VALUES (now() + interval '3 days', now() + interval '4 days', '12'::credit, '10'::credit, '0'::credit,
              '0'::credit, 1::bigint)$$,
    'roll: the second closed period (12 allowance, 10 used, 1 call)');
SELECT results_eq(
    $$SELECT u.user_id, u.calls, u.charged FROM credits.usage('roll', now() + interval '3 days', now() + interval '4 days') u$$,
    $$SELECT 'x'::text, 0::bigint, '0'::credit WHERE false$$,
    'usage is by the time of the call: a call made at now() is not in [now() + 3 days, now() + 4 days)');
SELECT is_empty($$SELECT * FROM credits.verify()$$, 'verify() is clean after the second jump');

-- ---------------------------------------------------------------------------
-- reset_due argument
-- ---------------------------------------------------------------------------
SELECT throws_ok($$SELECT credits.reset_due(NULL)$$, '22004', 'as_of must not be null', 'reset_due(NULL): 22004');

-- ---------------------------------------------------------------------------
-- Calendar: credits.billing_period(anchor, period, time_zone, as_of)
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC', '2024-02-15 00:00:00+00')$$,
    $$VALUES (0::bigint, '2024-01-31 00:00:00+00'::timestamptz, '2024-02-29 00:00:00+00'::timestamptz)$$,
    'billing_period: a 31 Jan anchor''s first month ends on 29 Feb 2024');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC', '2024-03-01 00:00:00+00')$$,
    $$VALUES (1::bigint, '2024-02-29 00:00:00+00'::timestamptz, '2024-03-31 00:00:00+00'::timestamptz)$$,
    'billing_period: then 29 Feb to 31 Mar 2024 (back to the 31st)');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2023-01-31 00:00:00+00', '1 month', 'UTC', '2023-02-10 00:00:00+00')$$,
    $$VALUES (0::bigint, '2023-01-31 00:00:00+00'::timestamptz, '2023-02-28 00:00:00+00'::timestamptz)$$,
    'billing_period: a 31 Jan 2023 anchor''s first month ends on 28 Feb');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2023-01-31 00:00:00+00', '1 month', 'UTC', '2023-03-01 00:00:00+00')$$,
    $$VALUES (1::bigint, '2023-02-28 00:00:00+00'::timestamptz, '2023-03-31 00:00:00+00'::timestamptz)$$,
    'billing_period: then 28 Feb to 31 Mar 2023');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-03-30 00:00:00 Europe/Berlin', '1 day', 'Europe/Berlin',
                                           '2024-03-31 12:00:00 Europe/Berlin')$$,
    $$VALUES (1::bigint, '2024-03-31 00:00:00+01'::timestamptz, '2024-04-01 00:00:00+02'::timestamptz)$$,
    'billing_period: daily in Europe/Berlin keeps local midnight on 2024-03-31 (23 hours)');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-03-30 00:00:00 Europe/Berlin', '1 day', 'Europe/Berlin',
                                           '2024-10-27 12:00:00 Europe/Berlin')$$,
    $$VALUES (211::bigint, '2024-10-27 00:00:00+02'::timestamptz, '2024-10-28 00:00:00+01'::timestamptz)$$,
    'billing_period: daily in Europe/Berlin keeps local midnight on 2024-10-27 (25 hours)');
SELECT is((SELECT period_end - period_start
             FROM credits.billing_period('2024-03-30 00:00:00 Europe/Berlin', '1 day', 'Europe/Berlin',
                                         '2024-10-27 12:00:00 Europe/Berlin')),
          '25 hours'::interval, 'billing_period: the autumn DST day lasts 25 hours');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-01 00:00:00+00', '2 seconds', 'UTC', '2024-01-01 00:00:05+00')$$,
    $$VALUES (2::bigint, '2024-01-01 00:00:04+00'::timestamptz, '2024-01-01 00:00:06+00'::timestamptz)$$,
    'billing_period: 2-second periods');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-01 00:00:00+00', '2 seconds', 'UTC', '2024-01-01 00:00:04+00')$$,
    $$VALUES (2::bigint, '2024-01-01 00:00:04+00'::timestamptz, '2024-01-01 00:00:06+00'::timestamptz)$$,
    'billing_period: a boundary belongs to the period it starts');

-- invalid periods and time zones: 22023 in create_org and in UPDATE credits.orgs
SELECT throws_ok($$SELECT * FROM credits.create_org('bad', period => '0')$$, '22023', NULL,
                 'create_org: period 0 is 22023');
SELECT throws_ok($$SELECT * FROM credits.create_org('bad', period => '-1 day')$$, '22023', NULL,
                 'create_org: a negative period is 22023');
SELECT throws_ok($$SELECT * FROM credits.create_org('bad', period => '1 month -40 days')$$, '22023', NULL,
                 'create_org: a period with a negative part is 22023');
SELECT throws_ok($$SELECT * FROM credits.create_org('bad', time_zone => 'Mars/Olympus_Mons')$$, '22023', NULL,
                 'create_org: an unknown time zone is 22023');
SELECT throws_ok($$UPDATE credits.orgs SET period = '0' WHERE org_id = 'raise'$$, '22023', NULL,
                 'UPDATE orgs: period 0 is 22023');
SELECT throws_ok($$UPDATE credits.orgs SET period = '-1 day' WHERE org_id = 'raise'$$, '22023', NULL,
                 'UPDATE orgs: a negative period is 22023');
SELECT throws_ok($$UPDATE credits.orgs SET period = '1 month -40 days' WHERE org_id = 'raise'$$, '22023', NULL,
                 'UPDATE orgs: a period with a negative part is 22023');
SELECT throws_ok($$UPDATE credits.orgs SET time_zone = 'Mars/Olympus_Mons' WHERE org_id = 'raise'$$, '22023', NULL,
                 'UPDATE orgs: an unknown time zone is 22023');
SELECT is((SELECT count(*)::int FROM credits.orgs WHERE org_id = 'bad'), 0, 'no org was created by the errors');
SELECT results_eq(
    $$SELECT period, time_zone FROM credits.orgs WHERE org_id = 'raise'$$,
    $$VALUES ('1 day'::interval, 'UTC'::text)$$,
    'the refused UPDATEs changed nothing');

-- ---------------------------------------------------------------------------
-- schedule_jobs without pg_cron
-- ---------------------------------------------------------------------------
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'), 'fixture: pg_cron is not installed here');
SELECT throws_ok($$SELECT credits.schedule_jobs()$$, '55000', 'pg_cron is not installed in this database',
                 'schedule_jobs() without pg_cron: 55000');

-- ---------------------------------------------------------------------------
-- Consistency
-- ---------------------------------------------------------------------------
SELECT ok((SELECT bool_and(p.topup = coalesce((SELECT sum(g.remaining) FROM credits.grants g
                                                WHERE g.org_id = p.org_id), '0'))
             FROM credits.pools p),
          'every pool''s top-up is what remains of its grants');
SELECT ok((SELECT bool_and(p.reserved = coalesce((SELECT sum(h.reserved) FROM credits.holds h
                                                   WHERE h.org_id = p.org_id AND h.status = 'open'), '0'))
             FROM credits.pools p),
          'every pool''s reserved is the sum of its open holds');
SELECT is_empty($$SELECT * FROM credits.verify()$$, 'verify() returns no rows at the end');

SELECT * FROM finish();
ROLLBACK;
