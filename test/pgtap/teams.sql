-- pgTAP: teams (1.1), credits.create_team() / set_team_cap() / set_member_team() /
-- team_usage(), and limits that explain themselves (allowed_models.limited_by,
-- resets_at)
--
-- The lowest of pool, team cap and member cap wins:
--   charged = least(cost, available, member_cap_left, team_cap_left)
-- a premium call runs short by the rest, a fallback is charged what is left
-- of the least and is free once any of them is exhausted.  Holds count
-- against the team they were made in.
--
-- now() is frozen inside this transaction: period close is tested through
-- reset_due(as_of) with an as_of in the future, never by sleeping.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(219);

-- ---------------------------------------------------------------------------
-- Fixtures
--   tm   100 per user; openai + anthropic
--          red    (cap 10): r1, r2, rc (personal cap 3)
--          blue   (no cap): b1, b2 (removed below)
--          green  (cap 1):  g1
--          yellow (cap 4):  y1 (personal cap 1)
--          zero   (cap 0):  z1
--          n1 in no team                                    -> pool 900
--   tp   10 per user; openai
--          big (cap 12): p1 (personal cap 11)               -> pool 10
--   th   100 per user; openai
--          ht (cap 10): h1, h2;  hu (cap 20): h3, hm        -> pool 400
--   tf   100 per user; openai; escrow stripes (the fast path)
--          fa (no cap): f1, f2                              -> pool 200
--   tx   100 per user; openai; xt (cap 5): x1  (another org, for RLS)
-- Prices per 1M tokens: gpt-4o 250/1000, gpt-4o-mini 15/60,
-- claude-sonnet-4-5 300/1500, claude-haiku-4-5 100/500.
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM credits.create_org('tm', allowance_per_user => 100);
    PERFORM credits.enable_provider('tm', 'openai');
    PERFORM credits.enable_provider('tm', 'anthropic');
    PERFORM credits.create_team('tm', 'red', 10);
    PERFORM credits.create_team('tm', 'blue');
    PERFORM credits.create_team('tm', 'green', cap => 1);
    PERFORM credits.create_team('tm', 'yellow', 4);
    PERFORM credits.create_team('tm', 'zero', 0);
    PERFORM credits.add_member('tm', 'r1');
    PERFORM credits.add_member('tm', 'r2');
    PERFORM credits.add_member('tm', 'rc', cap => 3);
    PERFORM credits.add_member('tm', 'b1');
    PERFORM credits.add_member('tm', 'b2');
    PERFORM credits.add_member('tm', 'g1');
    PERFORM credits.add_member('tm', 'y1', cap => 1);
    PERFORM credits.add_member('tm', 'z1');
    PERFORM credits.add_member('tm', 'n1');
    PERFORM credits.set_member_team('tm', u, 'red') FROM unnest(ARRAY['r1', 'r2', 'rc']) u;
    PERFORM credits.set_member_team('tm', u, 'blue') FROM unnest(ARRAY['b1', 'b2']) u;
    PERFORM credits.set_member_team('tm', 'g1', 'green');
    PERFORM credits.set_member_team('tm', 'y1', 'yellow');
    PERFORM credits.set_member_team('tm', 'z1', 'zero');

    PERFORM credits.create_org('tp', allowance_per_user => 10);
    PERFORM credits.enable_provider('tp', 'openai');
    PERFORM credits.create_team('tp', 'big', 12);
    PERFORM credits.add_member('tp', 'p1', cap => 11);
    PERFORM credits.set_member_team('tp', 'p1', 'big');

    PERFORM credits.create_org('th', allowance_per_user => 100);
    PERFORM credits.enable_provider('th', 'openai');
    PERFORM credits.create_team('th', 'ht', 10);
    PERFORM credits.create_team('th', 'hu', 20);
    PERFORM credits.add_member('th', u) FROM unnest(ARRAY['h1', 'h2', 'h3', 'hm']) u;
    PERFORM credits.set_member_team('th', u, 'ht') FROM unnest(ARRAY['h1', 'h2']) u;
    PERFORM credits.set_member_team('th', u, 'hu') FROM unnest(ARRAY['h3', 'hm']) u;

    PERFORM credits.create_org('tf', allowance_per_user => 100);
    PERFORM credits.enable_provider('tf', 'openai');
    PERFORM credits.create_team('tf', 'fa');
    PERFORM credits.add_member('tf', u) FROM unnest(ARRAY['f1', 'f2']) u;
    PERFORM credits.set_member_team('tf', u, 'fa') FROM unnest(ARRAY['f1', 'f2']) u;

    PERFORM credits.create_org('tx', allowance_per_user => 100);
    PERFORM credits.enable_provider('tx', 'openai');
    PERFORM credits.create_team('tx', 'xt', 5);
    PERFORM credits.add_member('tx', 'x1');
    PERFORM credits.set_member_team('tx', 'x1', 'xt');
END
$$;
-- escrow stripes from the first debit on: tf's uncapped members take the fast path
UPDATE credits.orgs SET stripes = 2 WHERE org_id = 'tf';

-- every debit and settle result, labelled, with the team it should count against
CREATE TEMP TABLE res (label text PRIMARY KEY, team text, entry_id bigint, model text,
                       cost credits.credit, charged credits.credit, shortfall credits.credit,
                       available credits.credit, exhausted boolean, replayed boolean);
-- every reserve result, labelled
CREATE TEMP TABLE hr (label text PRIMARY KEY, hold_id bigint, model text, fell_back boolean,
                      reserved credits.credit, available credits.credit, expires_at timestamptz,
                      replayed boolean);
CREATE FUNCTION pg_temp.hid(l text) RETURNS bigint LANGUAGE sql STABLE
    AS $$SELECT hold_id FROM hr WHERE label = l$$;
-- a capped team's team_spend row as 'used/reserved' ('none' without a row)
CREATE FUNCTION pg_temp.spend(o text, t text) RETURNS text LANGUAGE sql STABLE
    AS $$SELECT coalesce((SELECT used || '/' || reserved FROM credits.team_spend
                           WHERE org_id = o AND team_id = t), 'none')$$;
-- the premium rows of allowed_models as 'available reason limited_by resets_at=period_end'
CREATE FUNCTION pg_temp.premium(o text, u text) RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT DISTINCT concat_ws(' ', a.available::text, coalesce(a.reason, '-'), coalesce(a.limited_by, '-'),
                              CASE WHEN a.resets_at IS NULL THEN '-'
                                   WHEN a.resets_at = s.period_end THEN 'period_end'
                                   ELSE a.resets_at::text END)
      FROM credits.allowed_models(o, u) a, credits.pool_status s
     WHERE s.org_id = o AND NOT a.is_fallback
$$;
-- the same of the fallback rows
CREATE FUNCTION pg_temp.fallbacks(o text, u text) RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT DISTINCT concat_ws(' ', a.available::text, coalesce(a.reason, '-'), coalesce(a.limited_by, '-'),
                              coalesce(a.resets_at::text, '-'))
      FROM credits.allowed_models(o, u) a
     WHERE a.is_fallback
$$;

SELECT results_eq(
    $$SELECT team_id, cap FROM credits.teams WHERE org_id = 'tm' ORDER BY team_id$$,
    $$VALUES ('blue'::text, NULL::credit), ('green', '1'), ('red', '10'), ('yellow', '4'), ('zero', '0')$$,
    'fixture: tm has its five teams with their caps (blue: none)');
SELECT results_eq(
    $$SELECT team_id, used, reserved FROM credits.team_spend WHERE org_id = 'tm' ORDER BY team_id$$,
    $$VALUES ('green'::text, '0'::credit, '0'::credit), ('red', '0', '0'), ('yellow', '0', '0'),
             ('zero', '0', '0')$$,
    'fixture: a team_spend row for each capped team, none for the uncapped one');
SELECT results_eq(
    $$SELECT user_id, team_id FROM credits.members WHERE org_id = 'tm' ORDER BY user_id$$,
    $$VALUES ('b1'::text, 'blue'::text), ('b2', 'blue'), ('g1', 'green'), ('n1', NULL), ('r1', 'red'),
             ('r2', 'red'), ('rc', 'red'), ('y1', 'yellow'), ('z1', 'zero')$$,
    'fixture: set_member_team put each member in its team, n1 in none');
SELECT is((SELECT available FROM credits.pool_status WHERE org_id = 'tm'), '900'::credit,
          'fixture: tm''s pool is 900');
SELECT is_empty($$SELECT * FROM credits.verify()$$, 'fixture: verify() is clean');

-- ---------------------------------------------------------------------------
-- charged = least(cost, available, member_cap_left, team_cap_left)
-- ---------------------------------------------------------------------------
-- the team cap is the least (10 left of 10; no personal cap)
INSERT INTO res SELECT 'red1', 'red', d.* FROM credits.credit_debit('tm', 'r1', 'gpt-4o', 20000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available FROM res WHERE label = 'red1'$$,
    $$SELECT credits.cost('gpt-4o', 20000), credits.cost('gpt-4o', 20000), '0'::credit,
             '900'::credit - credits.cost('gpt-4o', 20000)$$,
    'capped team, room left: the whole cost is charged');
SELECT is((SELECT l.team_id FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 'red1'),
          'red', 'the ledger records the team charged');
SELECT is(pg_temp.spend('tm', 'red'), credits.cost('gpt-4o', 20000) || '/0',
          'the team''s team_spend row is charged');

-- the member's cap (3) is less than what the team has left (10 - 5)
INSERT INTO res SELECT 'red2', 'red', d.* FROM credits.credit_debit('tm', 'rc', 'gpt-4o', 20000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall FROM res WHERE label = 'red2'$$,
    $$SELECT credits.cost('gpt-4o', 20000),
             least(credits.cost('gpt-4o', 20000), '3'::credit, '10'::credit - credits.cost('gpt-4o', 20000)),
             credits.cost('gpt-4o', 20000)
               - least(credits.cost('gpt-4o', 20000), '3'::credit, '10'::credit - credits.cost('gpt-4o', 20000))$$,
    'member cap below the team''s room: charged = the member''s cap left (3), the rest is shortfall');
SELECT is(pg_temp.spend('tm', 'red'), '8/0', 'the team counted the member-capped charge (5 + 3)');

-- the team's room (10 - 8 = 2) is less than the cost (6); no personal cap
INSERT INTO res SELECT 'red3', 'red', d.* FROM credits.credit_debit('tm', 'r2', 'gpt-4o', 24000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM res WHERE label = 'red3'$$,
    $$SELECT credits.cost('gpt-4o', 24000), '10'::credit - '8', credits.cost('gpt-4o', 24000) - ('10'::credit - '8'),
             (SELECT available FROM credits.pool_status WHERE org_id = 'tm'), false$$,
    'team cap the least: charged what the team has left (2), shortfall the rest (4); the pool is not exhausted');
SELECT is((SELECT available FROM credits.pool_status WHERE org_id = 'tm'),
          '900'::credit - (SELECT sum(charged) FROM res),
          'the pool went down by exactly what was charged');
SELECT is(pg_temp.spend('tm', 'red'), '10/0', 'the team used its whole cap, never more');
SELECT results_eq(
    $$SELECT user_id, used FROM credits.member_usage WHERE org_id = 'tm' ORDER BY user_id$$,
    $$VALUES ('r1'::text, '5'::credit), ('r2', '2'), ('rc', '3')$$,
    'each member is charged what they drew');

-- the team is exhausted: a premium call runs short entirely, a fallback is free
INSERT INTO res SELECT 'red4', 'red', d.* FROM credits.credit_debit('tm', 'r2', 'gpt-4o', 4000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall FROM res WHERE label = 'red4'$$,
    $$SELECT credits.cost('gpt-4o', 4000), '0'::credit, credits.cost('gpt-4o', 4000)$$,
    'team exhausted: a premium call is charged 0, shortfall = cost');
INSERT INTO res SELECT 'red5', 'red', d.* FROM credits.credit_debit('tm', 'r1', 'gpt-4o-mini', 100000) d;
INSERT INTO res SELECT 'red6', 'red', d.* FROM credits.credit_debit('tm', 'r1', 'claude-haiku-4-5', 10000, 1000) d;
SELECT results_eq(
    $$SELECT label, cost, charged, shortfall FROM res WHERE label IN ('red5', 'red6') ORDER BY label$$,
    $$VALUES ('red5'::text, credits.cost('gpt-4o-mini', 100000), '0'::credit, '0'::credit),
             ('red6', credits.cost('claude-haiku-4-5', 10000, 1000), '0', '0')$$,
    'team exhausted: fallback calls of both providers are free, no shortfall');
SELECT is((SELECT count(*)::int FROM credits.ledger l JOIN res r USING (entry_id)
            WHERE r.label IN ('red4', 'red5', 'red6') AND l.team_id = 'red'), 3,
          'team exhausted: the calls are still recorded, against the team');
SELECT is(pg_temp.spend('tm', 'red'), '10/0', 'team exhausted: its usage stays at the cap');

-- members of another team, and of none, keep being charged in full
INSERT INTO res SELECT 'blue1', 'blue', d.* FROM credits.credit_debit('tm', 'b1', 'gpt-4o', 20000) d;
INSERT INTO res SELECT 'none1', NULL, d.* FROM credits.credit_debit('tm', 'n1', 'gpt-4o', 20000) d;
SELECT results_eq(
    $$SELECT label, charged, shortfall FROM res WHERE label IN ('blue1', 'none1') ORDER BY label$$,
    $$VALUES ('blue1'::text, credits.cost('gpt-4o', 20000), '0'::credit),
             ('none1', credits.cost('gpt-4o', 20000), '0')$$,
    'another team''s member and a member in no team are charged the full cost');
SELECT results_eq(
    $$SELECT r.label, l.team_id FROM credits.ledger l JOIN res r USING (entry_id)
       WHERE r.label IN ('blue1', 'none1') ORDER BY r.label$$,
    $$VALUES ('blue1'::text, 'blue'::text), ('none1', NULL)$$,
    'the ledger records an uncapped team too; NULL for a member in no team');
SELECT is(pg_temp.spend('tm', 'blue'), 'none', 'an uncapped team has no team_spend row');

-- a fallback is charged what is left of the least: the team cap (1) here
INSERT INTO res SELECT 'green1', 'green', d.* FROM credits.credit_debit('tm', 'g1', 'gpt-4o-mini', 100000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall FROM res WHERE label = 'green1'$$,
    $$SELECT credits.cost('gpt-4o-mini', 100000), least(credits.cost('gpt-4o-mini', 100000), '1'::credit),
             '0'::credit$$,
    'fallback, team cap the least: charged what the team had left (1 of 1.5), no shortfall');
INSERT INTO res SELECT 'green2', 'green', d.* FROM credits.credit_debit('tm', 'g1', 'gpt-4o-mini', 100000) d;
SELECT results_eq(
    $$SELECT charged, shortfall FROM res WHERE label = 'green2'$$,
    $$VALUES ('0'::credit, '0'::credit)$$,
    'fallback once the team cap is exhausted: free');
-- ... and the member's cap (1) when it is below the team's (4)
INSERT INTO res SELECT 'yellow1', 'yellow', d.* FROM credits.credit_debit('tm', 'y1', 'gpt-4o-mini', 100000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall FROM res WHERE label = 'yellow1'$$,
    $$SELECT credits.cost('gpt-4o-mini', 100000), least(credits.cost('gpt-4o-mini', 100000), '1'::credit, '4'::credit),
             '0'::credit$$,
    'fallback, member cap below the team''s: charged what the member had left (1), no shortfall');
SELECT is(pg_temp.spend('tm', 'yellow'), '1/0', 'the team counted the fallback''s charge');
-- a team with a cap of 0 has nothing to draw
INSERT INTO res SELECT 'zero1', 'zero', d.* FROM credits.credit_debit('tm', 'z1', 'gpt-4o', 4000) d;
SELECT results_eq(
    $$SELECT charged, shortfall FROM res WHERE label = 'zero1'$$,
    $$SELECT '0'::credit, credits.cost('gpt-4o', 4000)$$,
    'cap 0: a premium call is charged nothing');

-- the pool is the least: tp has 10, p1's team cap is 12, p1's cap 11
INSERT INTO res SELECT 'tp1', 'big', d.* FROM credits.credit_debit('tp', 'p1', 'gpt-4o', 48000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall, available, exhausted FROM res WHERE label = 'tp1'$$,
    $$SELECT credits.cost('gpt-4o', 48000), least(credits.cost('gpt-4o', 48000), '10'::credit, '11', '12'),
             credits.cost('gpt-4o', 48000) - least(credits.cost('gpt-4o', 48000), '10'::credit, '11', '12'),
             '0'::credit, true$$,
    'pool the least: charged what the pool had (10), shortfall the rest, exhausted');
SELECT is(pg_temp.spend('tp', 'big'), '10/0', 'the team counted what the pool gave');

-- ---------------------------------------------------------------------------
-- allowed_models: limited_by, resets_at, reason
-- ---------------------------------------------------------------------------
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'r1')$$,
    $$VALUES ('false team_cap_reached team_cap period_end'::text)$$,
    'team exhausted: premium rows unavailable, reason team_cap_reached, limited_by team_cap, resets_at = period_end');
SELECT results_eq($$SELECT * FROM pg_temp.fallbacks('tm', 'r1')$$,
    $$VALUES ('true - - -'::text)$$,
    'team exhausted: fallback rows available, reason, limited_by and resets_at NULL');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'b1')$$, $$VALUES ('true - - -'::text)$$,
    'a member of another team: premium available, limited_by and resets_at NULL');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'n1')$$, $$VALUES ('true - - -'::text)$$,
    'a member in no team: premium available');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', NULL)$$, $$VALUES ('true - - -'::text)$$,
    'no user: a team''s cap does not gray anything out');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'rc')$$,
    $$VALUES ('false team_cap_reached team_cap period_end'::text)$$,
    'team cap and member cap both exhausted: the team cap is reported');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'y1')$$,
    $$VALUES ('false user_cap_reached member_cap period_end'::text)$$,
    'member cap exhausted, team not: limited_by member_cap, reason user_cap_reached');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'z1')$$,
    $$VALUES ('false team_cap_reached team_cap period_end'::text)$$,
    'cap 0: premium unavailable from the start');
SELECT is((SELECT count(*)::int FROM credits.allowed_models('tm', 'r1')),
          (SELECT count(*)::int FROM credits.allowed_models('tm', 'n1')),
          'a capped member sees every model, grayed or not');
SELECT is(
    (SELECT array_to_string(p.proargnames[array_length(p.proargnames, 1) - 1:], ',') FROM pg_proc p
      WHERE p.oid = 'credits.allowed_models(text, text)'::regprocedure),
    'limited_by,resets_at',
    'allowed_models ends with the columns limited_by and resets_at');

-- tp, p1: pool 0, team 2 left, member 1 left
SELECT results_eq($$SELECT * FROM pg_temp.premium('tp', 'p1')$$,
    $$VALUES ('false credits_exhausted pool period_end'::text)$$,
    'pool exhausted: limited_by pool, reason credits_exhausted');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tp', NULL)$$,
    $$VALUES ('false credits_exhausted pool period_end'::text)$$,
    'pool exhausted, no user: limited_by pool');
SELECT results_eq($$SELECT * FROM pg_temp.fallbacks('tp', 'p1')$$, $$VALUES ('true - - -'::text)$$,
    'pool exhausted: the fallback row is available with NULL limited_by and resets_at');
-- a grant refills the pool: p1's own cap (1 left) is now the least
SELECT available FROM credits.recharge('tp', 100);
INSERT INTO res SELECT 'tp2', 'big', d.* FROM credits.credit_debit('tp', 'p1', 'gpt-4o', 4000) d;
SELECT results_eq(
    $$SELECT charged, shortfall FROM res WHERE label = 'tp2'$$,
    $$SELECT least(credits.cost('gpt-4o', 4000), '11'::credit - '10', '12'::credit - '10'), '0'::credit$$,
    'p1 draws the last credit of its cap');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tp', 'p1')$$,
    $$VALUES ('false user_cap_reached member_cap period_end'::text)$$,
    'member cap exhausted only: limited_by member_cap');
-- a second member of the team exhausts the team (1 left of 12)
SELECT credits.add_member('tp', 'p2');
SELECT credits.set_member_team('tp', 'p2', 'big');
INSERT INTO res SELECT 'tp3', 'big', d.* FROM credits.credit_debit('tp', 'p2', 'gpt-4o', 8000) d;
SELECT results_eq(
    $$SELECT charged, shortfall FROM res WHERE label = 'tp3'$$,
    $$SELECT '12'::credit - '11', credits.cost('gpt-4o', 8000) - ('12'::credit - '11')$$,
    'p2 gets what the team had left (1), shortfall the rest');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tp', 'p1')$$,
    $$VALUES ('false team_cap_reached team_cap period_end'::text)$$,
    'team cap and member cap exhausted: limited_by team_cap (team before member)');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tp', 'p2')$$,
    $$VALUES ('false team_cap_reached team_cap period_end'::text)$$,
    'the team''s other member: limited_by team_cap');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tp', NULL)$$, $$VALUES ('true - - -'::text)$$,
    'the pool has credits: no user, nothing grayed');
-- a member in no team empties the pool: all three limits exhausted for p1
SELECT credits.add_member('tp', 'p3');
INSERT INTO res SELECT 'tp4', NULL, d.* FROM credits.credit_debit('tp', 'p3', 'gpt-4o', 480000) d;
SELECT results_eq($$SELECT available, exhausted FROM res WHERE label = 'tp4'$$,
    $$VALUES ('0'::credit, true)$$, 'p3 empties the pool');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tp', 'p1')$$,
    $$VALUES ('false credits_exhausted pool period_end'::text)$$,
    'pool, team cap and member cap all exhausted: limited_by pool (pool first)');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tp', 'p3')$$,
    $$VALUES ('false credits_exhausted pool period_end'::text)$$,
    'pool exhausted, member in no team: limited_by pool');
SELECT is_empty($$SELECT * FROM credits.verify('tp')$$, 'tp: verify is clean');

-- ---------------------------------------------------------------------------
-- Routing: resolve_model and credit_reserve by the same rule
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT credits.resolve_model('tm', u, m) FROM (VALUES (1, 'r1', 'gpt-4o'), (2, 'r2', 'o3'),
             (3, 'r1', 'claude-sonnet-4-5'), (4, 'r1', 'gpt-4o-mini'), (5, 'b1', 'gpt-4o'),
             (6, 'n1', 'gpt-4o'), (7, 'n1', 'claude-sonnet-4-5')) v(i, u, m) ORDER BY i$$,
    $$VALUES ('gpt-4o-mini'::text), ('gpt-4o-mini'), ('claude-haiku-4-5'), ('gpt-4o-mini'), ('gpt-4o'),
             ('gpt-4o'), ('claude-sonnet-4-5')$$,
    'resolve_model: a member of the exhausted team gets the fallbacks; another team''s member and one in no team keep premium');
INSERT INTO hr SELECT 'route-r1', r.* FROM credits.credit_reserve('tm', 'r1', 'gpt-4o', 1000, 1000) r;
INSERT INTO hr SELECT 'route-b1', r.* FROM credits.credit_reserve('tm', 'b1', 'gpt-4o', 1000, 1000) r;
INSERT INTO hr SELECT 'route-n1', r.* FROM credits.credit_reserve('tm', 'n1', 'gpt-4o', 1000, 1000) r;
SELECT results_eq(
    $$SELECT label, model, fell_back, reserved FROM hr WHERE label LIKE 'route-%' ORDER BY label$$,
    $$VALUES ('route-b1'::text, 'gpt-4o'::text, false, credits.cost('gpt-4o', 1000, 1000)),
             ('route-n1', 'gpt-4o', false, credits.cost('gpt-4o', 1000, 1000)),
             ('route-r1', 'gpt-4o-mini', true, '0'::credit)$$,
    'credit_reserve: the exhausted team''s member falls back with nothing held (free fallback), the others hold premium');
SELECT results_eq(
    $$SELECT h.user_id, h.team_id FROM credits.holds h JOIN hr USING (hold_id)
       WHERE hr.label LIKE 'route-%' ORDER BY h.user_id$$,
    $$VALUES ('b1'::text, 'blue'::text), ('n1', NULL), ('r1', 'red')$$,
    'holds record the member''s team');
SELECT is(sum(credits.credit_release(hold_id)), credits.cost('gpt-4o', 1000, 1000) * 2,
          'the routing holds are released')
  FROM hr WHERE label LIKE 'route-%';

-- ---------------------------------------------------------------------------
-- Holds count against the team
-- ---------------------------------------------------------------------------
-- gpt-4o, 20000 in + 4000 out: 5 + 4 = 9 of ht's 10
INSERT INTO hr SELECT 'hA', r.* FROM credits.credit_reserve('th', 'h1', 'gpt-4o', 20000, 4000) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved FROM hr WHERE label = 'hA'$$,
    $$SELECT 'gpt-4o'::text, false, credits.cost('gpt-4o', 20000, 4000)$$,
    'reserve within the team''s cap: the premium estimate is held');
SELECT is(pg_temp.spend('th', 'ht'), '0/' || credits.cost('gpt-4o', 20000, 4000),
          'the hold is reserved in the team''s team_spend row');
SELECT is((SELECT team_id FROM credits.ledger WHERE hold_id = pg_temp.hid('hA') AND kind = 'hold'), 'ht',
          'the hold''s ledger row records the team');
-- the team has 1 left: a premium estimate of 25 does not fit, the fallback holds 1 of its 1.5
INSERT INTO hr SELECT 'hB', r.* FROM credits.credit_reserve('th', 'h2', 'gpt-4o', 100000, 0) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved FROM hr WHERE label = 'hB'$$,
    $$SELECT 'gpt-4o-mini'::text, true,
             least(credits.cost('gpt-4o-mini', 100000, 0), '10'::credit - credits.cost('gpt-4o', 20000, 4000))$$,
    'reserve limited by the team''s cap: falls back and holds what the team has left (1)');
SELECT is(pg_temp.spend('th', 'ht'), '0/10', 'the team''s cap is fully reserved');
SELECT results_eq($$SELECT * FROM pg_temp.premium('th', 'h1')$$,
    $$VALUES ('false team_cap_reached team_cap period_end'::text)$$,
    'reservations count: the team is at its cap, premium grayed with limited_by team_cap');
SELECT is(credits.resolve_model('th', 'h2', 'gpt-4o'), 'gpt-4o-mini',
          'reservations count: resolve_model falls back');
INSERT INTO hr SELECT 'hC', r.* FROM credits.credit_reserve('th', 'h1', 'gpt-4o-mini', 1000, 0) r;
SELECT results_eq(
    $$SELECT model, fell_back, reserved FROM hr WHERE label = 'hC'$$,
    $$VALUES ('gpt-4o-mini'::text, false, '0'::credit)$$,
    'a fallback asked for with the team at its cap: nothing held');
-- settle from the hold: 20000 in + 1000 out = 6 of the 9 held
INSERT INTO res SELECT 'hA', 'ht', d.* FROM credits.credit_settle(pg_temp.hid('hA'), 20000, 1000) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall FROM res WHERE label = 'hA'$$,
    $$SELECT credits.cost('gpt-4o', 20000, 1000), credits.cost('gpt-4o', 20000, 1000), '0'::credit$$,
    'settle below the hold: the cost is charged from the hold');
SELECT is(pg_temp.spend('th', 'ht'), credits.cost('gpt-4o', 20000, 1000) || '/1',
          'settle: the team is charged 6 and keeps only hB''s 1 reserved');
SELECT is((SELECT team_id FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 'hA'), 'ht',
          'settle: the ledger records the team');
-- release gives back to the team
SELECT is(credits.credit_release(pg_temp.hid('hB')), '1'::credit, 'release hB: 1 released');
SELECT is(pg_temp.spend('th', 'ht'), '6/0', 'release: the team''s reservation goes back');
SELECT is((SELECT team_id FROM credits.ledger WHERE hold_id = pg_temp.hid('hB') AND kind = 'release'), 'ht',
          'release: the ledger records the team');
-- settle above the hold: only what the team has left is added
INSERT INTO hr SELECT 'hD', r.* FROM credits.credit_reserve('th', 'h2', 'gpt-4o', 8000, 0) r;
SELECT results_eq($$SELECT model, reserved FROM hr WHERE label = 'hD'$$,
    $$SELECT 'gpt-4o'::text, credits.cost('gpt-4o', 8000, 0)$$, 'hD: 2 held of the team''s 4 left');
INSERT INTO res SELECT 'hD', 'ht', d.* FROM credits.credit_settle(pg_temp.hid('hD'), 40000, 0) d;
SELECT results_eq(
    $$SELECT cost, charged, shortfall FROM res WHERE label = 'hD'$$,
    $$SELECT credits.cost('gpt-4o', 40000), '10'::credit - credits.cost('gpt-4o', 20000, 1000),
             credits.cost('gpt-4o', 40000) - ('10'::credit - credits.cost('gpt-4o', 20000, 1000))$$,
    'settle above the hold: the hold plus what the team had left (4 in all), shortfall the rest');
SELECT is(pg_temp.spend('th', 'ht'), '10/0', 'the team is at its cap, not over it');
INSERT INTO res SELECT 'hC', 'ht', d.* FROM credits.credit_settle(pg_temp.hid('hC'), 1000, 0) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'hC'$$,
    $$VALUES ('0'::credit, '0'::credit)$$,
    'settling a fallback hold with the team at its cap: free');

-- a hold made in one team and settled after the member moved: the old team is charged
INSERT INTO hr SELECT 'hE', r.* FROM credits.credit_reserve('th', 'h3', 'gpt-4o', 20000, 0) r;
SELECT is(pg_temp.spend('th', 'hu'), '0/5', 'hE: 5 reserved in hu');
SELECT credits.set_member_team('th', 'h3', 'ht');
SELECT is(pg_temp.spend('th', 'hu'), '0/5', 'moving the member does not move its open hold');
SELECT is(credits.resolve_model('th', 'h3', 'gpt-4o'), 'gpt-4o-mini',
          'the moved member is limited by its new (exhausted) team at once');
INSERT INTO res SELECT 'hE', 'hu', d.* FROM credits.credit_settle(pg_temp.hid('hE'), 20000, 0) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'hE'$$,
    $$SELECT credits.cost('gpt-4o', 20000), '0'::credit$$,
    'settle after a move: charged from the hold');
SELECT results_eq(
    $$SELECT pg_temp.spend('th', 'hu'), pg_temp.spend('th', 'ht')$$,
    $$VALUES ('5/0'::text, '10/0'::text)$$,
    'settle after a move: the hold''s team (hu) is charged, the member''s new team (ht) is not');
SELECT is((SELECT team_id FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 'hE'), 'hu',
          'settle after a move: the ledger records the hold''s team');
-- beyond the hold, the excess is bounded by the hold's team, not by the new one
INSERT INTO hr SELECT 'hF', r.* FROM credits.credit_reserve('th', 'hm', 'gpt-4o', 4000, 0) r;
SELECT credits.set_member_team('th', 'hm', 'ht');
INSERT INTO res SELECT 'hF', 'hu', d.* FROM credits.credit_settle(pg_temp.hid('hF'), 20000, 0) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'hF'$$,
    $$SELECT credits.cost('gpt-4o', 20000), '0'::credit$$,
    'settle above the hold after a move to an exhausted team: the excess comes from the hold''s team''s room');
SELECT results_eq(
    $$SELECT pg_temp.spend('th', 'hu'), pg_temp.spend('th', 'ht')$$,
    $$VALUES ('10/0'::text, '10/0'::text)$$,
    'settle above the hold after a move: only the hold''s team is charged');
-- a hold released after the member moved gives back to the hold's team
SELECT credits.set_member_team('th', 'h3', 'hu');
INSERT INTO hr SELECT 'hG', r.* FROM credits.credit_reserve('th', 'h3', 'gpt-4o', 4000, 0) r;
SELECT credits.set_member_team('th', 'h3', NULL);
SELECT is(pg_temp.spend('th', 'hu'), '10/1', 'hG: 1 reserved in hu');
SELECT is(credits.credit_release(pg_temp.hid('hG')), credits.cost('gpt-4o', 4000), 'hG released');
SELECT results_eq(
    $$SELECT pg_temp.spend('th', 'hu'), pg_temp.spend('th', 'ht')$$,
    $$VALUES ('10/0'::text, '10/0'::text)$$,
    'release after a move: the hold''s team gets its reservation back');
SELECT results_eq(
    $$SELECT team_id, used FROM credits.team_usage('th')$$,
    $$VALUES ('ht'::text, '10'::credit), ('hu', '10')$$,
    'a member moving teams does not move past usage');
-- an expired hold gives back to its team too
INSERT INTO hr SELECT 'hH', r.* FROM credits.credit_reserve('th', 'h3', 'gpt-4o', 4000, 0) r;
SELECT credits.set_member_team('th', 'h1', 'hu');
INSERT INTO hr SELECT 'hI', r.* FROM credits.credit_reserve('th', 'h1', 'gpt-4o', 4000, 0) r;
SELECT is(pg_temp.spend('th', 'hu'), '10/1', 'hI: 1 reserved in hu');
SELECT is(credits.expire_holds(now() + interval '1 hour'), 2, 'expire_holds releases hH and hI');
SELECT is(pg_temp.spend('th', 'hu'), '10/0', 'an expired hold gives back to its team');
SELECT is_empty($$SELECT * FROM credits.verify('th')$$, 'th: verify is clean after holds and moves');

-- ---------------------------------------------------------------------------
-- team_usage and usage()
-- ---------------------------------------------------------------------------
SELECT credits.remove_member('tm', 'b2');
SELECT results_eq(
    $$SELECT * FROM credits.team_usage('tm')$$,
    $$SELECT t.team_id, v.members, t.cap,
             (SELECT coalesce(sum(charged), '0'::credit) FROM res r WHERE r.team = t.team_id),
             (SELECT coalesce(sum(charged), '0'::credit) FROM res r WHERE r.team = t.team_id),
             (SELECT coalesce(sum(shortfall), '0'::credit) FROM res r WHERE r.team = t.team_id)
        FROM credits.teams t
        JOIN (VALUES ('red', 3), ('blue', 1), ('green', 1), ('yellow', 1), ('zero', 1)) v(team_id, members)
          USING (team_id)
       WHERE t.org_id = 'tm' ORDER BY t.team_id$$,
    'team_usage: per team, active members, cap, used, charged and shortfall of its members'' calls');
SELECT results_eq(
    $$SELECT team_id, members, cap, used, charged, shortfall FROM credits.team_usage('tm') WHERE team_id IN ('blue', 'red')$$,
    $$VALUES ('blue'::text, 1, NULL::credit, '5'::credit, '5'::credit, '0'::credit),
             ('red', 3, '10', '10', '10', '7')$$,
    'team_usage: the figures, spelled out (b2 removed is not counted; red ran short by 1 + 4 + 2 = 7)');
SELECT results_eq(
    $$SELECT team_id, used, charged, shortfall FROM credits.team_usage('tm', now() - interval '1 day', now())
       WHERE team_id = 'red'$$,
    $$VALUES ('red'::text, '10'::credit, '0'::credit, '0'::credit)$$,
    'team_usage [since, until) before the calls: nothing charged; used is the period''s regardless');
SELECT results_eq(
    $$SELECT team_id, charged, shortfall FROM credits.team_usage('tm', now(), now() + interval '1 second')
       WHERE team_id = 'red'$$,
    $$VALUES ('red'::text, '10'::credit, '7'::credit)$$,
    'team_usage [since, until) around the calls: all of them');
SELECT results_eq(
    $$SELECT team_id, charged FROM credits.team_usage('tm', since => now()) WHERE team_id = 'red'$$,
    $$VALUES ('red'::text, '10'::credit)$$,
    'team_usage with since only: from since on');
SELECT is_empty($$SELECT * FROM credits.team_usage('tp', now() - interval '1 day', now() - interval '1 hour')
                  WHERE charged <> 0 OR shortfall <> 0$$,
                'team_usage of a window without calls: nothing charged');
SELECT results_eq(
    $$SELECT user_id, model, team_id FROM credits.usage('tm') WHERE model = 'gpt-4o' ORDER BY user_id$$,
    $$VALUES ('b1'::text, 'gpt-4o'::text, 'blue'::text), ('n1', 'gpt-4o', NULL), ('r1', 'gpt-4o', 'red'),
             ('r2', 'gpt-4o', 'red'), ('rc', 'gpt-4o', 'red'), ('z1', 'gpt-4o', 'zero')$$,
    'usage() gains the member''s team');
SELECT results_eq(
    $$SELECT user_id, team_id FROM credits.usage('th') WHERE user_id IN ('h1', 'h3', 'hm') AND model = 'gpt-4o'
       ORDER BY user_id$$,
    $$VALUES ('h1'::text, 'hu'::text), ('h3', NULL), ('hm', 'ht')$$,
    'usage(): the member''s current team');
SELECT is_empty($$SELECT * FROM credits.verify('tm')$$, 'tm: verify is clean');

-- verify() sees a tampered team_spend row
UPDATE credits.team_spend SET used = used + 1 WHERE org_id = 'tm' AND team_id = 'red';
SELECT results_eq($$SELECT * FROM credits.verify('tm')$$,
    $$VALUES ('tm'::text, 'team_usage_matches_ledger:red'::text, '10'::text, '11'::text)$$,
    'verify: a team_spend row off its ledger is a team_usage_matches_ledger violation');
UPDATE credits.team_spend SET used = used - 1, reserved = reserved + 2 WHERE org_id = 'tm' AND team_id = 'red';
SELECT results_eq($$SELECT * FROM credits.verify('tm')$$,
    $$VALUES ('tm'::text, 'team_reserved_matches_holds:red'::text, '0'::text, '2'::text)$$,
    'verify: a team''s reserved off its open holds is a team_reserved_matches_holds violation');
UPDATE credits.team_spend SET reserved = reserved - 2 WHERE org_id = 'tm' AND team_id = 'red';
SELECT is_empty($$SELECT * FROM credits.verify('tm')$$, 'verify: clean again once restored');
-- a capped team's row removed by hand: verify() names it, the next charge rebuilds it from the ledger
DELETE FROM credits.team_spend WHERE org_id = 'tm' AND team_id = 'red';
SELECT results_eq($$SELECT * FROM credits.verify('tm')$$,
    $$VALUES ('tm'::text, 'team_spend_row:red'::text, 'a row (capped team)'::text, 'none'::text)$$,
    'verify: a capped team without its team_spend row is a team_spend_row violation');
INSERT INTO res SELECT 'redheal', 'red', d.* FROM credits.credit_debit('tm', 'r1', 'gpt-4o', 4000) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'redheal'$$,
    $$SELECT '0'::credit, credits.cost('gpt-4o', 4000)$$,
    'a charge of the team without its row still sees the team at its cap');
SELECT is(pg_temp.spend('tm', 'red'), '10/0', 'the row is rebuilt from the ledger');
SELECT is_empty($$SELECT * FROM credits.verify('tm')$$, 'verify: clean once the row is rebuilt');

-- ---------------------------------------------------------------------------
-- Changing a cap
-- ---------------------------------------------------------------------------
-- raising it: room at once, the usage kept
SELECT credits.set_team_cap('tm', 'red', 15);
SELECT is(pg_temp.spend('tm', 'red'), '10/0', 'raise: the team''s usage is kept');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'r1')$$, $$VALUES ('true - - -'::text)$$,
    'raise: premium available again');
INSERT INTO res SELECT 'red7', 'red', d.* FROM credits.credit_debit('tm', 'r2', 'gpt-4o', 24000) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'red7'$$,
    $$SELECT '15'::credit - '10', credits.cost('gpt-4o', 24000) - ('15'::credit - '10')$$,
    'raise: charged up to the new cap');
-- removing it: the row goes, only the other limits apply
SELECT credits.set_team_cap('tm', 'red', NULL);
SELECT is(pg_temp.spend('tm', 'red'), 'none', 'remove: the team_spend row is dropped');
SELECT is((SELECT cap FROM credits.teams WHERE org_id = 'tm' AND team_id = 'red'), NULL::credit,
          'remove: the cap is NULL');
INSERT INTO res SELECT 'red8', 'red', d.* FROM credits.credit_debit('tm', 'r1', 'gpt-4o', 20000) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'red8'$$,
    $$SELECT credits.cost('gpt-4o', 20000), '0'::credit$$, 'remove: premium charged in full');
SELECT is((SELECT team_id FROM credits.ledger l JOIN res r USING (entry_id) WHERE r.label = 'red8'), 'red',
          'remove: charges still record the team');
INSERT INTO res SELECT 'red9', 'red', d.* FROM credits.credit_debit('tm', 'rc', 'gpt-4o', 4000) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'red9'$$,
    $$SELECT '0'::credit, credits.cost('gpt-4o', 4000)$$, 'remove: a personal cap still applies');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'rc')$$,
    $$VALUES ('false user_cap_reached member_cap period_end'::text)$$,
    'remove: the member''s own cap is reported now');
SELECT results_eq(
    $$SELECT cap, used, charged FROM credits.team_usage('tm') WHERE team_id = 'red'$$,
    $$SELECT NULL::credit, (SELECT sum(charged) FROM res WHERE team = 'red'), (SELECT sum(charged) FROM res WHERE team = 'red')$$,
    'remove: team_usage reads the uncapped team''s usage from the ledger');
-- setting it again: used is initialised from the ledger of the current period
SELECT credits.set_team_cap('tm', 'red', 22);
SELECT is(pg_temp.spend('tm', 'red'), (SELECT sum(charged) FROM res WHERE team = 'red') || '/0',
          'set again: team_spend is initialised from the period''s ledger (20)');
INSERT INTO res SELECT 'red10', 'red', d.* FROM credits.credit_debit('tm', 'r2', 'gpt-4o', 20000) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'red10'$$,
    $$SELECT '22'::credit - '20', credits.cost('gpt-4o', 20000) - ('22'::credit - '20')$$,
    'set again: the new cap counts what was drawn while uncapped');
-- lowering it under what was used: exhausted at once
SELECT credits.set_team_cap('tm', 'red', 5);
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'r1')$$,
    $$VALUES ('false team_cap_reached team_cap period_end'::text)$$,
    'lowered under the usage: exhausted');
-- an uncapped team with an open hold gets a cap: the hold is counted
INSERT INTO hr SELECT 'blueH', r.* FROM credits.credit_reserve('tm', 'b1', 'gpt-4o', 20000, 0) r;
SELECT credits.create_team('tm', 'blue2');
SELECT credits.set_team_cap('tm', 'blue', 12);
SELECT is(pg_temp.spend('tm', 'blue'), '5/' || credits.cost('gpt-4o', 20000),
          'set on a team with an open hold: used from the ledger, reserved from the open holds');
INSERT INTO res SELECT 'blueH', 'blue', d.* FROM credits.credit_settle(pg_temp.hid('blueH'), 20000, 0) d;
SELECT is(pg_temp.spend('tm', 'blue'), '10/0', 'the hold made before the cap is settled into the team');
INSERT INTO res SELECT 'blue2', 'blue', d.* FROM credits.credit_debit('tm', 'b1', 'gpt-4o', 20000) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'blue2'$$,
    $$SELECT '12'::credit - '10', credits.cost('gpt-4o', 20000) - ('12'::credit - '10')$$,
    'the new cap bounds the team');
SELECT is_empty($$SELECT * FROM credits.verify('tm')$$, 'tm: verify is clean after the cap changes');

-- the fast path (escrow stripes) records the team of an uncapped team's member
INSERT INTO res SELECT 'fa1', 'fa', d.* FROM credits.credit_debit('tf', 'f1', 'gpt-4o', 20000) d;
INSERT INTO res SELECT 'fa2', 'fa', d.* FROM credits.credit_debit('tf', 'f2', 'gpt-4o', 20000) d;
INSERT INTO res SELECT 'fa3', 'fa', d.* FROM credits.credit_debit('tf', 'f1', 'gpt-4o', 20000) d;
SELECT ok((SELECT sum(used) FROM credits.pool_stripes WHERE org_id = 'tf') > '0'::credit,
          'tf: debits took the fast path (escrow stripes used)');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE org_id = 'tf' AND kind = 'debit' AND team_id = 'fa'), 3,
          'the fast path records the team in the ledger');
SELECT credits.set_team_cap('tf', 'fa', 17);
SELECT is(pg_temp.spend('tf', 'fa'), '15/0', 'a cap set after fast-path charges counts them (15)');
INSERT INTO res SELECT 'fa4', 'fa', d.* FROM credits.credit_debit('tf', 'f2', 'gpt-4o', 20000) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'fa4'$$,
    $$SELECT '17'::credit - '15', credits.cost('gpt-4o', 20000) - ('17'::credit - '15')$$,
    'and bounds the next charge');
SELECT is_empty($$SELECT * FROM credits.verify('tf')$$, 'tf: verify is clean');

-- plain DML on teams and members does what the functions do
INSERT INTO credits.teams (org_id, team_id, cap) VALUES ('tf', 'dml', 7);
SELECT is(pg_temp.spend('tf', 'dml'), '0/0', 'DML: a team inserted with a cap gets its team_spend row');
UPDATE credits.members SET team_id = 'dml' WHERE org_id = 'tf' AND user_id = 'f2';
INSERT INTO res SELECT 'dml1', 'dml', d.* FROM credits.credit_debit('tf', 'f2', 'gpt-4o', 32000) d;
SELECT results_eq($$SELECT r.charged, r.shortfall, l.team_id FROM res r JOIN credits.ledger l USING (entry_id)
                    WHERE r.label = 'dml1'$$,
    $$SELECT '7'::credit, credits.cost('gpt-4o', 32000) - '7', 'dml'::text$$,
    'DML: a member put in a team by UPDATE is charged in it, up to its cap');
UPDATE credits.teams SET cap = NULL WHERE org_id = 'tf' AND team_id = 'dml';
SELECT is(pg_temp.spend('tf', 'dml'), 'none', 'DML: a cap set to NULL by UPDATE drops the row');
UPDATE credits.teams SET cap = 9 WHERE org_id = 'tf' AND team_id = 'dml';
SELECT is(pg_temp.spend('tf', 'dml'), '7/0', 'DML: a cap set by UPDATE counts the ledger');
-- a replayed debit is not counted twice
INSERT INTO res SELECT 'rep1', 'dml', d.* FROM credits.credit_debit('tf', 'f2', 'gpt-4o', 4000, 0, 'req-team') d;
INSERT INTO res SELECT 'rep2', 'dml', d.* FROM credits.credit_debit('tf', 'f2', 'gpt-4o', 4000, 0, 'req-team') d;
SELECT results_eq($$SELECT label, charged, replayed FROM res WHERE label IN ('rep1', 'rep2') ORDER BY label$$,
    $$VALUES ('rep1'::text, credits.cost('gpt-4o', 4000), false), ('rep2', credits.cost('gpt-4o', 4000), true)$$,
    'replay: the same request_id returns the original charge');
SELECT is(pg_temp.spend('tf', 'dml'), '8/0', 'replay: the team is charged once');
SELECT is_empty($$SELECT * FROM credits.verify('tf')$$, 'tf: verify is clean after DML and a replay');

-- ---------------------------------------------------------------------------
-- Deleting a team un-assigns its members
-- ---------------------------------------------------------------------------
DELETE FROM credits.teams WHERE org_id = 'tm' AND team_id = 'green';
SELECT is((SELECT team_id FROM credits.members WHERE org_id = 'tm' AND user_id = 'g1'), NULL,
          'delete: the team''s member is in no team');
SELECT is(pg_temp.spend('tm', 'green'), 'none', 'delete: its team_spend row is gone');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'g1')$$, $$VALUES ('true - - -'::text)$$,
    'delete: the former member has premium again');
INSERT INTO res SELECT 'g3', NULL, d.* FROM credits.credit_debit('tm', 'g1', 'gpt-4o', 20000) d;
SELECT results_eq($$SELECT r.charged, l.team_id FROM res r JOIN credits.ledger l USING (entry_id) WHERE r.label = 'g3'$$,
    $$SELECT credits.cost('gpt-4o', 20000), NULL::text$$, 'delete: charged in full, in no team');
SELECT is_empty($$SELECT * FROM credits.team_usage('tm') WHERE team_id = 'green'$$,
                'delete: team_usage no longer lists it');
SELECT is_empty($$SELECT * FROM credits.verify('tm')$$, 'delete: verify is clean');

-- ---------------------------------------------------------------------------
-- A full recharge and the period close reset team usage
-- ---------------------------------------------------------------------------
SELECT available FROM credits.recharge('tm');
SELECT results_eq(
    $$SELECT team_id, used FROM credits.team_spend WHERE org_id = 'tm' ORDER BY team_id$$,
    $$VALUES ('blue'::text, '0'::credit), ('red', '0'), ('yellow', '0'), ('zero', '0')$$,
    'recharge: every team''s usage goes back to 0');
SELECT results_eq(
    $$SELECT team_id, used FROM credits.team_usage('tm') ORDER BY team_id$$,
    $$VALUES ('blue'::text, '0'::credit), ('blue2', '0'), ('red', '0'), ('yellow', '0'), ('zero', '0')$$,
    'recharge: team_usage shows nothing used');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'r1')$$, $$VALUES ('true - - -'::text)$$,
    'recharge: the team has premium again');
SELECT is_empty($$SELECT * FROM credits.verify('tm')$$, 'recharge: verify is clean');
-- a cap set after a restore counts only what was drawn since
SELECT credits.set_member_team('tm', 'n1', 'blue2');
INSERT INTO res SELECT 'b2x', 'blue2', d.* FROM credits.credit_debit('tm', 'n1', 'gpt-4o', 4000) d;
SELECT credits.set_team_cap('tm', 'blue2', 100);
SELECT is(pg_temp.spend('tm', 'blue2'), credits.cost('gpt-4o', 4000) || '/0',
          'a cap set after a restore counts what was drawn since the restore');

-- a restore of a pool whose draws came from a grant (no allowance: tg) resets
-- the team's usage all the same, in team_spend, team_usage and verify()
SELECT org_id FROM credits.create_org('tg', allowance_per_user => 0);
SELECT credits.enable_provider('tg', 'openai');
SELECT credits.add_member('tg', 'gu');
SELECT credits.create_team('tg', 'gt', 50);
SELECT credits.set_member_team('tg', 'gu', 'gt');
SELECT available FROM credits.recharge('tg', 20);
INSERT INTO res SELECT 'tg1', 'gt', d.* FROM credits.credit_debit('tg', 'gu', 'gpt-4o', 20000) d;
SELECT is(pg_temp.spend('tg', 'gt'), credits.cost('gpt-4o', 20000) || '/0', 'tg: the team drew 5 from the grant');
SELECT available FROM credits.recharge('tg');
SELECT is(pg_temp.spend('tg', 'gt'), '0/0', 'tg: the restore sets the team''s usage back to 0');
SELECT is((SELECT used FROM credits.team_usage('tg')), '0'::credit,
          'tg: team_usage.used is 0 after the restore, as the cap sees it');
SELECT is_empty($$SELECT * FROM credits.verify('tg')$$, 'tg: verify is clean after the restore');
SELECT credits.set_team_cap('tg', 'gt', NULL);
SELECT credits.set_team_cap('tg', 'gt', 50);
SELECT is(pg_temp.spend('tg', 'gt'), '0/0',
          'tg: a cap set again after the restore counts nothing drawn before it');

-- period close: as_of two months on, no sleep; an open hold is carried
INSERT INTO hr SELECT 'carry', r.* FROM credits.credit_reserve('tm', 'b1', 'gpt-4o', 4000, 0, ttl => interval '1 year') r;
SELECT is(pg_temp.spend('tm', 'blue'), '0/' || credits.cost('gpt-4o', 4000), 'a hold of 1 in blue, to be carried');
INSERT INTO res SELECT 'red11', 'red', d.* FROM credits.credit_debit('tm', 'r1', 'gpt-4o', 40000) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'red11'$$,
    $$SELECT '5'::credit, credits.cost('gpt-4o', 40000) - '5'$$, 'red draws its cap of 5 again');
SELECT is(credits.reset_due(now() + interval '2 months'), (SELECT count(*)::int FROM credits.orgs),
          'reset_due closes the period of every org');
SELECT results_eq(
    $$SELECT team_id, used, reserved FROM credits.team_spend WHERE org_id = 'tm' ORDER BY team_id$$,
    $$VALUES ('blue'::text, '0'::credit, '1'::credit), ('blue2', '0', '0'), ('red', '0', '0'),
             ('yellow', '0', '0'), ('zero', '0', '0')$$,
    'period close: every team''s usage goes back to 0, the open hold''s reservation is carried');
SELECT results_eq(
    $$SELECT team_id, used FROM credits.team_spend WHERE org_id IN ('th', 'tp', 'tf') ORDER BY org_id, team_id$$,
    $$VALUES ('dml'::text, '0'::credit), ('fa', '0'), ('ht', '0'), ('hu', '0'), ('big', '0')$$,
    'period close: in every org');
SELECT results_eq($$SELECT * FROM pg_temp.premium('tm', 'r1')$$, $$VALUES ('true - - -'::text)$$,
    'period close: premium available again');
INSERT INTO res SELECT 'red12', 'red', d.* FROM credits.credit_debit('tm', 'r1', 'gpt-4o', 40000) d;
SELECT results_eq($$SELECT charged, shortfall FROM res WHERE label = 'red12'$$,
    $$SELECT '5'::credit, credits.cost('gpt-4o', 40000) - '5'$$, 'period close: the whole cap again, no more');
SELECT is(pg_temp.spend('tm', 'red'), '5/0', 'period close: the new period''s usage');
SELECT is((SELECT used FROM credits.team_usage('tm') WHERE team_id = 'red'), '5'::credit,
          'period close: team_usage.used is the new period''s');
SELECT is_empty($$SELECT * FROM credits.verify()$$, 'verify() is clean after everything');
SELECT is(credits.credit_release(pg_temp.hid('carry')), credits.cost('gpt-4o', 4000), 'the carried hold is released');
SELECT is(pg_temp.spend('tm', 'blue'), '0/0', '... back to its team');

-- ---------------------------------------------------------------------------
-- Bad inputs: their SQLSTATE, and nothing changed
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE before AS
SELECT (SELECT string_agg(concat_ws(':', org_id, team_id, cap), ',' ORDER BY org_id, team_id) FROM credits.teams) AS teams,
       (SELECT string_agg(concat_ws(':', org_id, user_id, team_id, active), ',' ORDER BY org_id, user_id) FROM credits.members) AS members,
       (SELECT string_agg(concat_ws(':', org_id, team_id, used, reserved), ',' ORDER BY org_id, team_id) FROM credits.team_spend) AS spend;

SELECT throws_ok($$SELECT credits.create_team('nope', 't')$$, 'UC004', NULL, 'create_team of an unknown org: UC004');
SELECT throws_ok($$SELECT credits.create_team(NULL, 't')$$, '22004', NULL, 'create_team with a NULL org_id: 22004');
SELECT throws_ok($$SELECT credits.create_team('tm', NULL)$$, '22004', NULL, 'create_team with a NULL team_id: 22004');
SELECT throws_ok($$SELECT credits.create_team('tm', '')$$, '22023', NULL, 'create_team with an empty team_id: 22023');
SELECT throws_ok($$SELECT credits.create_team('tm', repeat('x', 256))$$, '22023', NULL,
                 'create_team with a team_id over 255 bytes: 22023');
SELECT throws_ok($$SELECT credits.create_team('tm', 't', -1)$$, '22023', NULL, 'create_team with a negative cap: 22023');
SELECT throws_ok($$SELECT credits.create_team('tm', 'red')$$, '23505', NULL, 'create_team of an existing team: 23505');
SELECT throws_ok($$SELECT credits.create_team('tm', 'red', 99)$$, '23505', NULL,
                 'create_team of an existing team with another cap: 23505');
SELECT throws_ok($$SELECT credits.set_team_cap('nope', 'red', 5)$$, 'UC004', NULL, 'set_team_cap of an unknown org: UC004');
SELECT throws_ok($$SELECT credits.set_team_cap('tm', 'nope', 5)$$, '22023', NULL, 'set_team_cap of an unknown team: 22023');
SELECT throws_ok($$SELECT credits.set_team_cap('tm', 'xt', 5)$$, '22023', NULL,
                 'set_team_cap of another org''s team: 22023');
SELECT throws_ok($$SELECT credits.set_team_cap('tm', '', 5)$$, '22023', NULL, 'set_team_cap with an empty team_id: 22023');
SELECT throws_ok($$SELECT credits.set_team_cap('tm', NULL, 5)$$, '22004', NULL, 'set_team_cap with a NULL team_id: 22004');
SELECT throws_ok($$SELECT credits.set_team_cap(NULL, 'red', 5)$$, '22004', NULL, 'set_team_cap with a NULL org_id: 22004');
SELECT throws_ok($$SELECT credits.set_team_cap('tm', 'red', -1)$$, '22023', NULL, 'set_team_cap with a negative cap: 22023');
SELECT throws_ok($$SELECT credits.set_member_team('nope', 'r1', 'red')$$, 'UC004', NULL,
                 'set_member_team of an unknown org: UC004');
SELECT throws_ok($$SELECT credits.set_member_team('tm', 'nobody', 'red')$$, 'UC005', NULL,
                 'set_member_team of a non-member: UC005');
SELECT throws_ok($$SELECT credits.set_member_team('tm', 'b2', 'red')$$, 'UC005', NULL,
                 'set_member_team of a removed member: UC005');
SELECT throws_ok($$SELECT credits.set_member_team('tm', 'r1', 'nope')$$, '22023', NULL,
                 'set_member_team into an unknown team: 22023');
SELECT throws_ok($$SELECT credits.set_member_team('tm', 'r1', 'xt')$$, '22023', NULL,
                 'set_member_team into another org''s team: 22023');
SELECT throws_ok($$SELECT credits.set_member_team('tm', 'r1', '')$$, '22023', NULL,
                 'set_member_team with an empty team_id: 22023');
SELECT throws_ok($$SELECT credits.set_member_team('tm', '', 'red')$$, '22023', NULL,
                 'set_member_team with an empty user_id: 22023');
SELECT throws_ok($$SELECT credits.set_member_team('tm', NULL, 'red')$$, '22004', NULL,
                 'set_member_team with a NULL user_id: 22004');
SELECT throws_ok($$SELECT credits.set_member_team(NULL, 'r1', 'red')$$, '22004', NULL,
                 'set_member_team with a NULL org_id: 22004');
SELECT throws_ok($$SELECT * FROM credits.team_usage('nope')$$, 'UC004', NULL, 'team_usage of an unknown org: UC004');
SELECT throws_ok($$SELECT * FROM credits.team_usage(NULL)$$, '22004', NULL, 'team_usage with a NULL org_id: 22004');
SELECT throws_ok($$INSERT INTO credits.teams (org_id, team_id) VALUES ('tm', '')$$, '22023', NULL,
                 'plain INSERT of a team with an empty id: 22023');
SELECT throws_ok($$INSERT INTO credits.teams (org_id, team_id, cap) VALUES ('tm', 'neg', -1)$$, '23514', NULL,
                 'plain INSERT of a team with a negative cap: 23514');
SELECT throws_ok($$UPDATE credits.teams SET team_id = 'red2' WHERE org_id = 'tm' AND team_id = 'red'$$, '0A000', NULL,
                 'a team''s id cannot be changed: 0A000');
SELECT throws_ok($$UPDATE credits.members SET team_id = 'nope' WHERE org_id = 'tm' AND user_id = 'r1'$$, '23503', NULL,
                 'plain UPDATE of a member into an unknown team: 23503');
SELECT results_eq(
    $$SELECT (SELECT string_agg(concat_ws(':', org_id, team_id, cap), ',' ORDER BY org_id, team_id) FROM credits.teams),
             (SELECT string_agg(concat_ws(':', org_id, user_id, team_id, active), ',' ORDER BY org_id, user_id) FROM credits.members),
             (SELECT string_agg(concat_ws(':', org_id, team_id, used, reserved), ',' ORDER BY org_id, team_id) FROM credits.team_spend)$$,
    $$SELECT teams, members, spend FROM before$$,
    'the refused calls changed nothing');
SELECT lives_ok($$SELECT credits.set_member_team('tm', 'r1', NULL)$$, 'set_member_team with a NULL team: in none');
SELECT is((SELECT team_id FROM credits.members WHERE org_id = 'tm' AND user_id = 'r1'), NULL, '... r1 is in no team');
SELECT lives_ok($$SELECT credits.create_team('tm', 'nocap', NULL)$$, 'create_team with a NULL cap: no cap');
SELECT is(pg_temp.spend('tm', 'nocap'), 'none', '... and no team_spend row');

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT f, r, has_function_privilege(r, f, 'EXECUTE')
        FROM unnest(ARRAY['credits.create_team(text, text, credits.credit)',
                          'credits.set_team_cap(text, text, credits.credit)',
                          'credits.set_member_team(text, text, text)']) f,
             unnest(ARRAY['credits_admin', 'credits_app', 'credits_reader', 'public']) r
       ORDER BY f, r$$,
    $$SELECT f, r, r = 'credits_admin'
        FROM unnest(ARRAY['credits.create_team(text, text, credits.credit)',
                          'credits.set_team_cap(text, text, credits.credit)',
                          'credits.set_member_team(text, text, text)']) f,
             unnest(ARRAY['credits_admin', 'credits_app', 'credits_reader', 'public']) r
       ORDER BY f, r$$,
    'create_team, set_team_cap, set_member_team: EXECUTE for credits_admin only');
SELECT results_eq(
    $$SELECT r, has_function_privilege(r, 'credits.team_usage(text, timestamptz, timestamptz)', 'EXECUTE')
        FROM unnest(ARRAY['credits_admin', 'credits_app', 'credits_reader', 'public']) r ORDER BY r$$,
    $$VALUES ('credits_admin'::text, true), ('credits_app', false), ('credits_reader', true), ('public', false)$$,
    'team_usage: EXECUTE for credits_reader and credits_admin');
SELECT results_eq(
    $$SELECT t, r, has_table_privilege(r, t, 'SELECT'), has_table_privilege(r, t, 'INSERT'),
             has_table_privilege(r, t, 'UPDATE'), has_table_privilege(r, t, 'DELETE')
        FROM unnest(ARRAY['credits.team_spend', 'credits.teams']) t,
             unnest(ARRAY['credits_admin', 'credits_app', 'credits_reader', 'public']) r ORDER BY t, r$$,
    $$VALUES ('credits.team_spend'::text, 'credits_admin'::text, true, false, false, false),
             ('credits.team_spend', 'credits_app', false, false, false, false),
             ('credits.team_spend', 'credits_reader', true, false, false, false),
             ('credits.team_spend', 'public', false, false, false, false),
             ('credits.teams', 'credits_admin', true, true, true, true),
             ('credits.teams', 'credits_app', false, false, false, false),
             ('credits.teams', 'credits_reader', true, false, false, false),
             ('credits.teams', 'public', false, false, false, false)$$,
    'teams: config DML for admins; team_spend: maintained, read-only; readers read both');
SELECT is_empty(
    $$SELECT p.oid::regprocedure FROM pg_proc p
       WHERE p.pronamespace = 'credits'::regnamespace AND p.proname LIKE '%team%'
         AND (p.proacl IS NULL OR has_function_privilege('public', p.oid, 'EXECUTE'))$$,
    'no team function is executable by PUBLIC');

-- ---------------------------------------------------------------------------
-- Row-level security: other orgs' teams are invisible
-- ---------------------------------------------------------------------------
CREATE ROLE teams_reader_t NOLOGIN;
CREATE ROLE teams_admin_t NOLOGIN;
GRANT credits_reader TO teams_reader_t;
GRANT credits_admin TO teams_admin_t;
SET LOCAL credits.org_id = 'tx';
SET LOCAL ROLE teams_reader_t;
SELECT results_eq($$SELECT org_id, team_id FROM credits.teams ORDER BY 1, 2$$,
    $$VALUES ('tx'::text, 'xt'::text)$$, 'RLS: a reader sees only the session org''s teams');
SELECT results_eq($$SELECT org_id, team_id FROM credits.team_spend ORDER BY 1, 2$$,
    $$VALUES ('tx'::text, 'xt'::text)$$, 'RLS: and only its team_spend rows');
SELECT throws_ok($$SELECT * FROM credits.team_usage('tm')$$, '42501', NULL, 'RLS: team_usage of another org: 42501');
SELECT lives_ok($$SELECT * FROM credits.team_usage('tx')$$, 'RLS: team_usage of the session''s org works');
RESET ROLE;
SET LOCAL ROLE teams_admin_t;
SELECT throws_ok($$SELECT credits.create_team('tm', 'sneaky')$$, '42501', NULL, 'RLS: create_team in another org: 42501');
SELECT throws_ok($$SELECT credits.set_team_cap('tm', 'red', 1000)$$, '42501', NULL,
                 'RLS: set_team_cap of another org''s team: 42501');
SELECT throws_ok($$SELECT credits.set_member_team('tm', 'r2', NULL)$$, '42501', NULL,
                 'RLS: set_member_team in another org: 42501');
SELECT is((SELECT count(*)::int FROM credits.teams WHERE org_id = 'tm'), 0, 'RLS: an admin does not see another org''s teams');
SELECT lives_ok($$UPDATE credits.teams SET cap = 1000 WHERE org_id = 'tm'$$, 'RLS: an UPDATE of another org''s teams ...');
SELECT throws_ok($$INSERT INTO credits.teams (org_id, team_id) VALUES ('tm', 'sneaky')$$, '42501', NULL,
                 'RLS: a plain INSERT of another org''s team: 42501');
SELECT lives_ok($$SELECT credits.set_team_cap('tx', 'xt', 6)$$, 'RLS: set_team_cap of the session''s org works');
RESET ROLE;
RESET credits.org_id;
SELECT is((SELECT cap FROM credits.teams WHERE org_id = 'tm' AND team_id = 'red'), '5'::credit,
          'RLS: ... changed nothing');
SELECT results_eq(
    $$SELECT tablename FROM pg_policies WHERE schemaname = 'credits' AND policyname = 'tenant_isolation'
         AND tablename IN ('teams', 'team_spend') ORDER BY 1$$,
    $$VALUES ('team_spend'::name), ('teams')$$,
    'a tenant_isolation policy on teams and team_spend');

-- ---------------------------------------------------------------------------
-- Comments on every new object
-- ---------------------------------------------------------------------------
SELECT is_empty(
    $$SELECT p.oid::regprocedure::text FROM pg_proc p
       WHERE p.pronamespace = 'credits'::regnamespace AND p.proname LIKE '%team%'
         AND obj_description(p.oid, 'pg_proc') IS NULL$$,
    'every team function has a COMMENT');
SELECT is_empty(
    $$SELECT t FROM unnest(ARRAY['credits.teams', 'credits.team_spend']) t
       WHERE obj_description(t::regclass, 'pg_class') IS NULL$$,
    'teams and team_spend have a COMMENT');
SELECT is_empty(
    $$SELECT c.t || '.' || c.col FROM (VALUES ('credits.members', 'team_id'), ('credits.ledger', 'team_id'),
                                              ('credits.holds', 'team_id'), ('credits.teams', 'cap'),
                                              ('credits.team_spend', 'used'), ('credits.team_spend', 'reserved')) c(t, col)
       WHERE col_description(c.t::regclass, (SELECT attnum FROM pg_attribute
                                              WHERE attrelid = c.t::regclass AND attname = c.col)) IS NULL$$,
    'the new columns have a COMMENT');
SELECT ok(obj_description('credits.allowed_models(text, text)'::regprocedure, 'pg_proc') LIKE '%limited_by%',
          'allowed_models'' COMMENT mentions limited_by');

SELECT is_empty($$SELECT * FROM credits.verify()$$, 'verify() is clean at the end');

SELECT * FROM finish();
ROLLBACK;
