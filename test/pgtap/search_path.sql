-- pgTAP: nothing a caller puts on its search_path changes what runs.
--
-- A schema "evil" holds tables named like ours (with bogus rows), functions
-- and aggregates named like the built-ins our code uses, and operators on
-- text, bigint, timestamptz and credits.credit that give wrong answers; temp
-- tables named like ours hold bogus rows too.  Every evil function and
-- operator records its call in evil.calls.  With
--     search_path = evil, public, credits, pg_catalog
-- every application and admin function is called, and must return exactly
-- what it returns with a clean path (the expected values are computed by
-- hand below), leave the evil tables alone, and call nothing in evil.
--
-- pgTAP itself resolves names through the search_path, so no pgTAP function
-- runs while the evil path is set: results are captured into temp tables
-- (statements without operators or function calls of their own) and checked
-- once the path is clean again.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(41);

-- ---------------------------------------------------------------------------
-- Fixtures (clean path)
--   sp   100 per user: ann, bob (cap 10)          -> pool 200; openai + anthropic
--   sz   0: zed                                    -> pool 0;   openai
--   spr  10: rex, hourly period anchored 10 minutes ago; openai
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM credits.create_org('sp', allowance_per_user => 100);
    PERFORM credits.enable_provider('sp', 'openai');
    PERFORM credits.enable_provider('sp', 'anthropic');
    PERFORM credits.add_member('sp', 'ann');
    PERFORM credits.add_member('sp', 'bob', cap => 10);

    PERFORM credits.create_org('sz', allowance_per_user => 0);
    PERFORM credits.enable_provider('sz', 'openai');
    PERFORM credits.add_member('sz', 'zed');

    PERFORM credits.create_org('spr', allowance_per_user => 10,
                               billing_anchor => now() - interval '10 minutes', period => '1 hour');
    PERFORM credits.enable_provider('spr', 'openai');
    PERFORM credits.add_member('spr', 'rex');
END
$$;

-- ---------------------------------------------------------------------------
-- The hostile objects
-- ---------------------------------------------------------------------------
CREATE SCHEMA evil;
CREATE TABLE evil.calls (what text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());

-- functions named like built-ins
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('now()'); RETURN '2999-01-01 00:00:00+00'; END $$;
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('nextval(regclass)'); RETURN 1; END $$;
CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('lower(text)'); RETURN 'evil'; END $$;
CREATE FUNCTION evil.upper(text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('upper(text)'); RETURN 'EVIL'; END $$;
CREATE FUNCTION evil.format(text, text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('format(text, text)'); RETURN 'evil'; END $$;
CREATE FUNCTION evil.current_setting(text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('current_setting(text)'); RETURN '1'; END $$;
CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('pg_notify(text, text)'); END $$;
CREATE FUNCTION evil.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('jsonb_build_object(text[])'); RETURN '{"evil": true}'; END $$;

-- aggregates named like built-ins (and like credits.sum)
CREATE FUNCTION evil.credit_agg_sfunc(credits.credit, credits.credit) RETURNS credits.credit
LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('credit aggregate'); RETURN '424242'; END $$;
CREATE AGGREGATE evil.sum(credits.credit) (SFUNC = evil.credit_agg_sfunc, STYPE = credits.credit);
CREATE AGGREGATE evil.max(credits.credit) (SFUNC = evil.credit_agg_sfunc, STYPE = credits.credit);
CREATE FUNCTION evil.ts_agg_sfunc(timestamptz, timestamptz) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('min(timestamptz)'); RETURN '1970-01-01 00:00:00+00'; END $$;
CREATE AGGREGATE evil.min(timestamptz) (SFUNC = evil.ts_agg_sfunc, STYPE = timestamptz);
CREATE FUNCTION evil.count_sfunc(bigint) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('count(*)'); RETURN 424242; END $$;
CREATE AGGREGATE evil.count(*) (SFUNC = evil.count_sfunc, STYPE = bigint, INITCOND = '0');

-- operators that lie
CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('text = text'); RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
CREATE FUNCTION evil.text_cat(text, text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('text || text'); RETURN 'evil'; END $$;
CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_cat);
CREATE FUNCTION evil.jsonb_cat(jsonb, jsonb) RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('jsonb || jsonb'); RETURN '{"evil": true}'; END $$;
CREATE OPERATOR evil.|| (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = evil.jsonb_cat);
CREATE FUNCTION evil.int8_eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('bigint = bigint'); RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8_eq);
CREATE FUNCTION evil.ts_le(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('timestamptz <= timestamptz'); RETURN true; END $$;
CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ts_le);
CREATE FUNCTION evil.credit_eq(credits.credit, credits.credit) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('credit = credit'); RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = credits.credit, RIGHTARG = credits.credit, FUNCTION = evil.credit_eq);
CREATE FUNCTION evil.credit_lt(credits.credit, credits.credit) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('credit < credit'); RETURN true; END $$;
CREATE OPERATOR evil.< (LEFTARG = credits.credit, RIGHTARG = credits.credit, FUNCTION = evil.credit_lt);
CREATE FUNCTION evil.credit_ge(credits.credit, credits.credit) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('credit >= credit'); RETURN true; END $$;
CREATE OPERATOR evil.>= (LEFTARG = credits.credit, RIGHTARG = credits.credit, FUNCTION = evil.credit_ge);
CREATE FUNCTION evil.credit_pl(credits.credit, credits.credit) RETURNS credits.credit LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('credit + credit'); RETURN '424242'; END $$;
CREATE OPERATOR evil.+ (LEFTARG = credits.credit, RIGHTARG = credits.credit, FUNCTION = evil.credit_pl);
CREATE FUNCTION evil.credit_mi(credits.credit, credits.credit) RETURNS credits.credit LANGUAGE plpgsql VOLATILE AS $$
BEGIN INSERT INTO evil.calls (what) VALUES ('credit - credit'); RETURN '424242'; END $$;
CREATE OPERATOR evil.- (LEFTARG = credits.credit, RIGHTARG = credits.credit, FUNCTION = evil.credit_mi);

-- tables named like ours, with bogus rows: unknown orgs, members, models and
-- providers that exist here, a free gpt-4o, a huge pool, a used request_id,
-- an open hold, a due period ...
CREATE TABLE evil.providers (LIKE credits.providers);
INSERT INTO evil.providers VALUES ('nope', 'Evil Provider', false, now());
CREATE TABLE evil.models (LIKE credits.models);
INSERT INTO evil.models SELECT * FROM credits.models;
UPDATE evil.models SET input_price = 0, output_price = 0, is_fallback = NOT is_fallback;
INSERT INTO evil.models VALUES ('no-such-model', 'openai', 'Evil', 0, 0, 0, false, true, false, now());
CREATE TABLE evil.orgs (LIKE credits.orgs INCLUDING DEFAULTS);
INSERT INTO evil.orgs SELECT * FROM credits.orgs;
UPDATE evil.orgs SET allowance_per_user = 999999, period = '1 second', thresholds = '{1}';
INSERT INTO evil.orgs SELECT 'nope', name, allowance_per_user, billing_anchor, period, time_zone,
                             thresholds, created_at
                        FROM evil.orgs WHERE org_id = 'sp';
CREATE TABLE evil.org_providers (LIKE credits.org_providers);
INSERT INTO evil.org_providers VALUES ('sp', 'google', now()), ('nope', 'openai', now()),
                                      ('sz', 'anthropic', now());
CREATE TABLE evil.members (LIKE credits.members);
INSERT INTO evil.members VALUES ('sp', 'mallory', NULL, NULL, true, now(), NULL),
                                ('sp', 'bob', 999999, NULL, true, now(), NULL),
                                ('nope', 'ann', NULL, NULL, true, now(), NULL);
CREATE TABLE evil.member_usage (LIKE credits.member_usage);
INSERT INTO evil.member_usage VALUES ('sp', 'ann', 999, 0), ('sp', 'bob', 0, 0);
CREATE TABLE evil.pools (LIKE credits.pools);
INSERT INTO evil.pools SELECT * FROM credits.pools;
UPDATE evil.pools SET allowance = 999999, allowance_used = 1, topup = 5, reserved = 7,
                      period_end = now() - interval '1 day', period_start = now() - interval '2 days',
                      next_hold_expiry = now() - interval '1 day';
CREATE TABLE evil.pool_status (LIKE credits.pool_status);
INSERT INTO evil.pool_status SELECT * FROM credits.pool_status;
UPDATE evil.pool_status SET available = 999999, exhausted = false;
CREATE TABLE evil.ledger (LIKE credits.ledger);
INSERT INTO evil.ledger (entry_id, org_id, kind, created_at, period_start, user_id, model,
                         input_tokens, output_tokens, cost, charged, shortfall, from_allowance,
                         from_topup, available_after, request_id)
VALUES (1, 'sp', 'debit', now(), now(), 'ann', 'gpt-4o', 1, 1, 0, 0, 0, 0, 0, 999999, 'r1'),
       (2, 'sp', 'debit', now(), now(), 'ann', 'gpt-4o', 1, 1, 0, 0, 0, 0, 0, 999999, 'r2');
CREATE TABLE evil.holds (LIKE credits.holds);
INSERT INTO evil.holds VALUES (999999999, 'sp', 'ann', 'gpt-4o', 'gpt-4o', false, 1, 1, 0, 0, 0,
                               'open', now(), now() + interval '1 hour', NULL, 'r2');
CREATE TABLE evil.grants (LIKE credits.grants);
INSERT INTO evil.grants VALUES (1, 'sp', 1000, 1000, 0, NULL, now(), 'evil grant');
CREATE TABLE evil.grant_draws (LIKE credits.grant_draws);
INSERT INTO evil.grant_draws VALUES (1, 1, 1);
CREATE TABLE evil.events (LIKE credits.events);
INSERT INTO evil.events VALUES (1, 'sp', 'threshold', now(), '{"evil": true}');
CREATE TABLE evil.periods (LIKE credits.periods);
INSERT INTO evil.periods VALUES ('sp', now() - interval '2 days', now() - interval '1 day',
                                 1, 1, 1, 1, 1, now());

-- temp tables named like ours (pg_temp is searched first for relations)
CREATE TEMP TABLE pools AS SELECT * FROM evil.pools;
CREATE TEMP TABLE orgs AS SELECT * FROM evil.orgs;
CREATE TEMP TABLE members AS SELECT * FROM evil.members;
CREATE TEMP TABLE models AS SELECT * FROM evil.models;
CREATE TEMP TABLE ledger AS SELECT * FROM evil.ledger;
CREATE TEMP TABLE holds AS SELECT * FROM evil.holds;

-- every hostile row, to see that none is touched and none is added
CREATE TEMP VIEW hostile_rows AS
          SELECT 'evil.providers' AS tbl, to_jsonb(t)::text AS row FROM evil.providers t
UNION ALL SELECT 'evil.models', to_jsonb(t)::text FROM evil.models t
UNION ALL SELECT 'evil.orgs', to_jsonb(t)::text FROM evil.orgs t
UNION ALL SELECT 'evil.org_providers', to_jsonb(t)::text FROM evil.org_providers t
UNION ALL SELECT 'evil.members', to_jsonb(t)::text FROM evil.members t
UNION ALL SELECT 'evil.member_usage', to_jsonb(t)::text FROM evil.member_usage t
UNION ALL SELECT 'evil.pools', to_jsonb(t)::text FROM evil.pools t
UNION ALL SELECT 'evil.pool_status', to_jsonb(t)::text FROM evil.pool_status t
UNION ALL SELECT 'evil.ledger', to_jsonb(t)::text FROM evil.ledger t
UNION ALL SELECT 'evil.holds', to_jsonb(t)::text FROM evil.holds t
UNION ALL SELECT 'evil.grants', to_jsonb(t)::text FROM evil.grants t
UNION ALL SELECT 'evil.grant_draws', to_jsonb(t)::text FROM evil.grant_draws t
UNION ALL SELECT 'evil.events', to_jsonb(t)::text FROM evil.events t
UNION ALL SELECT 'evil.periods', to_jsonb(t)::text FROM evil.periods t
UNION ALL SELECT 'pg_temp.pools', to_jsonb(t)::text FROM pg_temp.pools t
UNION ALL SELECT 'pg_temp.orgs', to_jsonb(t)::text FROM pg_temp.orgs t
UNION ALL SELECT 'pg_temp.members', to_jsonb(t)::text FROM pg_temp.members t
UNION ALL SELECT 'pg_temp.models', to_jsonb(t)::text FROM pg_temp.models t
UNION ALL SELECT 'pg_temp.ledger', to_jsonb(t)::text FROM pg_temp.ledger t
UNION ALL SELECT 'pg_temp.holds', to_jsonb(t)::text FROM pg_temp.holds t;
CREATE TEMP TABLE hostile_snap AS SELECT * FROM hostile_rows;

-- ---------------------------------------------------------------------------
-- Where the results go (created with the clean path)
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE r_create (LIKE credits.pool_status);
CREATE TEMP TABLE r_debit (label text, entry_id bigint, model text, cost credits.credit,
                           charged credits.credit, shortfall credits.credit,
                           available credits.credit, exhausted boolean, replayed boolean);
CREATE TEMP TABLE h1 OF credits.hold_result;
CREATE TEMP TABLE h2 OF credits.hold_result;
CREATE TEMP TABLE h3 OF credits.hold_result;
CREATE TEMP TABLE h4 OF credits.hold_result;
CREATE TEMP TABLE r_release (label text, released credits.credit);
CREATE TEMP TABLE r_cost (label text, cost credits.credit);
CREATE TEMP TABLE r_models (label text, provider text, model text, display_name text,
                            is_fallback boolean, available boolean, reason text,
                            input_price credits.credit, output_price credits.credit,
                            limited_by text, resets_at timestamptz);
CREATE TEMP TABLE r_resolve (label text, model text);
CREATE TEMP TABLE r_usage (user_id text, model text, calls bigint, input_tokens numeric,
                           output_tokens numeric, cost credits.credit, charged credits.credit,
                           shortfall credits.credit, team_id text);
CREATE TEMP TABLE r_recharge (label text, org_id text, period_start timestamptz,
                              period_end timestamptz, allowance credits.credit,
                              allowance_used credits.credit, topup credits.credit,
                              reserved credits.credit, available credits.credit, exhausted boolean,
                              burn_per_day credits.credit, runs_out_at timestamptz);
CREATE TEMP TABLE r_verify (org_id text, check_name text, expected text, actual text);
CREATE TEMP TABLE r_pool_status (LIKE credits.pool_status);
CREATE TEMP TABLE r_int (label text, n integer);
CREATE TEMP TABLE r_err (n integer, label text, sqlstate text);
-- the SQLSTATE a statement fails with, or 'no error'; each runs in its own
-- subtransaction, like a BEGIN ... EXCEPTION block
CREATE FUNCTION pg_temp.sqlstate_of(stmt pg_catalog.text) RETURNS pg_catalog.text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
-- timestamps computed now, so that no expression is evaluated on the evil path
CREATE TEMP TABLE t_later AS SELECT now() + interval '1 hour' AS ts;
CREATE TEMP TABLE t_expiry AS SELECT now() + interval '30 days' AS ts;

SELECT is_empty($$SELECT * FROM evil.calls$$, 'set-up: no evil object was called while setting up');

-- ---------------------------------------------------------------------------
-- Every function, with the evil objects first on the path
-- ---------------------------------------------------------------------------
SET LOCAL search_path = evil, public, credits, pg_catalog;

-- admin: a new org, a provider, a member
INSERT INTO pg_temp.r_create SELECT * FROM credits.create_org('sq', allowance_per_user => 50);
DO $$
BEGIN
    PERFORM credits.enable_provider('sq', 'openai');
    PERFORM credits.add_member('sq', 'sue');
END
$$;

-- debits (a replay; the fallback free and a premium short on an empty pool)
INSERT INTO pg_temp.r_debit SELECT 'd1', d.* FROM credits.credit_debit('sp', 'ann', 'gpt-4o', 20000, 1000, 'r1') d;
INSERT INTO pg_temp.r_debit SELECT 'd2', d.* FROM credits.credit_debit('sp', 'ann', 'gpt-4o', 20000, 1000, 'r1') d;
INSERT INTO pg_temp.r_debit SELECT 'd3', d.* FROM credits.credit_debit('sz', 'zed', 'gpt-4o-mini', 1000) d;
INSERT INTO pg_temp.r_debit SELECT 'd4', d.* FROM credits.credit_debit('sz', 'zed', 'gpt-4o', 1000, 0) d;

-- a hold (request_id r2, which evil.ledger and evil.holds also carry), settled
INSERT INTO pg_temp.h1 SELECT * FROM credits.credit_reserve('sp', 'ann', 'gpt-4o', 4000, 1000, 'r2');
INSERT INTO pg_temp.r_debit SELECT 'd5', d.* FROM credits.credit_settle((SELECT hold_id FROM pg_temp.h1), 2000, 500) d;

-- bob's cap: a hold of all of it, then a hold that falls back to nothing; both released
INSERT INTO pg_temp.h2 SELECT * FROM credits.credit_reserve('sp', 'bob', 'gpt-4o', 40000, 0);
INSERT INTO pg_temp.h3 SELECT * FROM credits.credit_reserve('sp', 'bob', 'gpt-4o', 4000, 0);
INSERT INTO pg_temp.r_release SELECT 'h2', credits.credit_release((SELECT hold_id FROM pg_temp.h2));
INSERT INTO pg_temp.r_release SELECT 'h3', credits.credit_release((SELECT hold_id FROM pg_temp.h3));
-- bob uses his cap up
INSERT INTO pg_temp.r_debit SELECT 'd6', d.* FROM credits.credit_debit('sp', 'bob', 'gpt-4o', 40000) d;
-- a hold left open (expired below)
INSERT INTO pg_temp.h4 SELECT * FROM credits.credit_reserve('sp', 'ann', 'claude-sonnet-4-5', 1000, 1000, 'r4');

-- read path
INSERT INTO pg_temp.r_cost SELECT 'gpt-4o', credits.cost('gpt-4o', 1000000, 1000000);
INSERT INTO pg_temp.r_cost SELECT 'claude-haiku-4-5', credits.cost('claude-haiku-4-5', 1);
INSERT INTO pg_temp.r_models SELECT 'ann', m.* FROM credits.allowed_models('sp', 'ann') m;
INSERT INTO pg_temp.r_models SELECT 'bob', m.* FROM credits.allowed_models('sp', 'bob') m;
INSERT INTO pg_temp.r_models SELECT 'sz', m.* FROM credits.allowed_models('sz') m;
INSERT INTO pg_temp.r_resolve SELECT 'ann', credits.resolve_model('sp', 'ann', 'gpt-4o');
INSERT INTO pg_temp.r_resolve SELECT 'bob', credits.resolve_model('sp', 'bob', 'gpt-4o');
INSERT INTO pg_temp.r_resolve SELECT 'zed', credits.resolve_model('sz', 'zed', 'o3');
INSERT INTO pg_temp.r_usage SELECT * FROM credits.usage('sp');

-- recharge: a top-up, then a restore of the period
INSERT INTO pg_temp.r_recharge SELECT 'topup', r.*
  FROM credits.recharge('sp', '25', (SELECT ts FROM pg_temp.t_expiry), 'evil top-up') r;
INSERT INTO pg_temp.r_recharge SELECT 'restore', r.* FROM credits.recharge('sp') r;

-- reports
INSERT INTO pg_temp.r_verify SELECT * FROM credits.verify();
INSERT INTO pg_temp.r_pool_status SELECT * FROM credits.pool_status;

-- billing jobs, an hour ahead: spr rolls over, ann's open hold expires
INSERT INTO pg_temp.r_int SELECT 'reset_due', credits.reset_due((SELECT ts FROM pg_temp.t_later));
INSERT INTO pg_temp.r_int SELECT 'expire_holds', credits.expire_holds((SELECT ts FROM pg_temp.t_later));

-- errors: an always-true "=" or the evil tables would turn each into a success
-- or into another error
INSERT INTO pg_temp.r_err
SELECT n, label, pg_temp.sqlstate_of(stmt)
  FROM (VALUES
    (1, 'debit, unknown org', $q$SELECT credits.credit_debit('nope', 'ann', 'gpt-4o', 1)$q$),
    (2, 'debit, not a member', $q$SELECT credits.credit_debit('sp', 'mallory', 'gpt-4o', 1)$q$),
    (3, 'debit, unknown model', $q$SELECT credits.credit_debit('sp', 'ann', 'no-such-model', 1)$q$),
    (4, 'debit, provider not enabled', $q$SELECT credits.credit_debit('sp', 'ann', 'gemini-2.5-pro', 1)$q$),
    (5, 'debit, request_id reused', $q$SELECT credits.credit_debit('sp', 'ann', 'gpt-4o', 1, 0, 'r1')$q$),
    (6, 'reserve, request_id of a debit', $q$SELECT credits.credit_reserve('sp', 'ann', 'gpt-4o', 1, 1, 'r1')$q$),
    (7, 'release, settled hold', $q$SELECT credits.credit_release((SELECT hold_id FROM pg_temp.h1))$q$),
    (8, 'settle, hold only in evil.holds', $q$SELECT credits.credit_settle(999999999, 1, 1)$q$),
    (9, 'resolve_model, unknown org', $q$SELECT credits.resolve_model('nope', 'ann', 'gpt-4o')$q$),
    (10, 'allowed_models, not a member', $q$SELECT * FROM credits.allowed_models('sp', 'mallory')$q$),
    (11, 'cost, unknown model', $q$SELECT credits.cost('no-such-model', 1)$q$),
    (12, 'create_org, existing org', $q$SELECT credits.create_org('sp')$q$),
    (13, 'enable_provider, unknown provider', $q$SELECT credits.enable_provider('sp', 'nope')$q$),
    (14, 'add_member, unknown org', $q$SELECT credits.add_member('nope', 'ann')$q$),
    (15, 'remove_member, not a member', $q$SELECT credits.remove_member('sp', 'mallory')$q$),
    (16, 'recharge, unknown org', $q$SELECT credits.recharge('nope')$q$),
    (17, 'usage, unknown org', $q$SELECT * FROM credits.usage('nope')$q$),
    (18, 'upsert_model, unknown provider', $q$SELECT credits.upsert_model('nope', 'evil-1', 1, 1)$q$)) t(n, label, stmt);

-- ---------------------------------------------------------------------------
-- Back to a clean path: check
-- ---------------------------------------------------------------------------
SET LOCAL search_path = public, credits;

-- 1. nothing evil ran, nothing evil changed
SELECT is_empty($$SELECT what, count(*) FROM evil.calls GROUP BY what ORDER BY what$$,
                'no evil function, aggregate or operator was called');
SELECT results_eq($$SELECT tbl, row FROM pg_temp.hostile_rows ORDER BY tbl, row$$,
                  $$SELECT tbl, row FROM hostile_snap ORDER BY tbl, row$$,
                  'the evil tables and the temp tables named like ours are untouched (no row changed or added)');

-- 2. the results are what they are with a clean path
SELECT results_eq(
    $$SELECT org_id, period_start, period_end, allowance, allowance_used, topup, reserved, available, exhausted
        FROM r_create$$,
    $$VALUES ('sq'::text, now(), (now() AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC',
              '0'::credit, '0'::credit, '0'::credit, '0'::credit, '0'::credit, true)$$,
    'create_org: the new org''s pool_status (a month from now, nothing in it yet)');
SELECT results_eq(
    $$SELECT provider FROM credits.org_providers WHERE org_id = 'sq'$$,
    $$VALUES ('openai'::text)$$,
    'enable_provider: sq has openai');
SELECT results_eq(
    $$SELECT user_id, allowance, cap, active FROM credits.members WHERE org_id = 'sq'$$,
    $$VALUES ('sue'::text, NULL::credit, NULL::credit, true)$$,
    'add_member: sq has sue');
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM r_debit WHERE label = 'd1'$$,
    $$VALUES ('gpt-4o'::text, '6'::credit, '6'::credit, '0'::credit, '194'::credit, false, false)$$,
    'credit_debit: 20000 + 1000 tokens of gpt-4o cost 6, charged 6, 194 left (evil.ledger''s r1 ignored)');
SELECT results_eq(
    $$SELECT entry_id, model, cost, charged, shortfall, available, exhausted, replayed FROM r_debit WHERE label = 'd2'$$,
    $$SELECT entry_id, model, cost, charged, shortfall, available, exhausted, true FROM r_debit WHERE label = 'd1'$$,
    'credit_debit: the repeat replays the original');
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM r_debit WHERE label IN ('d3', 'd4') ORDER BY label$$,
    $$VALUES ('gpt-4o-mini'::text, '0.015'::credit, '0'::credit, '0'::credit, '0'::credit, true, false),
             ('gpt-4o', '0.25', '0', '0.25', '0', true, false)$$,
    'credit_debit on an empty pool: the fallback is free, the premium model runs short');
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available, expires_at, replayed FROM h1$$,
    $$VALUES ('gpt-4o'::text, false, '2'::credit, '192'::credit, now() + interval '15 minutes', false)$$,
    'credit_reserve: 2 held for gpt-4o, 192 left, expiring in 15 minutes (evil request_id r2 ignored)');
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM r_debit WHERE label = 'd5'$$,
    $$VALUES ('gpt-4o'::text, '1'::credit, '1'::credit, '0'::credit, '193'::credit, false, false)$$,
    'credit_settle: cost 1 charged from the hold, the rest released: 193 left');
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM h2 UNION ALL
      SELECT model, fell_back, reserved, available FROM h3$$,
    $$VALUES ('gpt-4o'::text, false, '10'::credit, '183'::credit),
             ('gpt-4o-mini', true, '0', '183')$$,
    'credit_reserve: bob''s cap of 10 held, then a fallback that holds nothing');
SELECT results_eq(
    $$SELECT label, released FROM r_release ORDER BY label$$,
    $$VALUES ('h2'::text, '10'::credit), ('h3', '0'::credit)$$,
    'credit_release: 10 and 0 given back');
SELECT results_eq(
    $$SELECT model, cost, charged, shortfall, available, exhausted FROM r_debit WHERE label = 'd6'$$,
    $$VALUES ('gpt-4o'::text, '10'::credit, '10'::credit, '0'::credit, '183'::credit, false)$$,
    'credit_debit: bob uses his cap (10), 183 left');
SELECT results_eq(
    $$SELECT model, fell_back, reserved, available FROM h4$$,
    $$VALUES ('claude-sonnet-4-5'::text, false, '1.8'::credit, '181.2'::credit)$$,
    'credit_reserve: 1.8 held for claude-sonnet-4-5');
SELECT results_eq(
    $$SELECT label, cost FROM r_cost ORDER BY label$$,
    $$VALUES ('claude-haiku-4-5'::text, '0.0001'::credit), ('gpt-4o', '1250')$$,
    'cost: real prices (evil.models'' free gpt-4o ignored)');
SELECT results_eq(
    $$SELECT provider, model, display_name, is_fallback, available, reason, input_price, output_price
        FROM r_models WHERE label = 'ann'$$,
    $$VALUES ('anthropic'::text, 'claude-opus-4-1'::text, 'Claude Opus 4.1'::text, false, true, NULL::text, '1500'::credit, '7500'::credit),
             ('anthropic', 'claude-sonnet-4-5', 'Claude Sonnet 4.5', false, true, NULL, '300', '1500'),
             ('anthropic', 'claude-haiku-4-5', 'Claude Haiku 4.5', true, true, NULL, '100', '500'),
             ('openai', 'gpt-4.1', 'GPT-4.1', false, true, NULL, '200', '800'),
             ('openai', 'gpt-4o', 'GPT-4o', false, true, NULL, '250', '1000'),
             ('openai', 'o3', 'o3', false, true, NULL, '200', '800'),
             ('openai', 'gpt-4o-mini', 'GPT-4o Mini', true, true, NULL, '15', '60')$$,
    'allowed_models(sp, ann): the enabled providers'' models, all available (evil google and no-such-model absent)');
SELECT results_eq(
    $$SELECT model, available, reason FROM r_models WHERE label = 'bob'$$,
    $$VALUES ('claude-opus-4-1'::text, false, 'user_cap_reached'::text),
             ('claude-sonnet-4-5', false, 'user_cap_reached'), ('claude-haiku-4-5', true, NULL),
             ('gpt-4.1', false, 'user_cap_reached'), ('gpt-4o', false, 'user_cap_reached'),
             ('o3', false, 'user_cap_reached'), ('gpt-4o-mini', true, NULL)$$,
    'allowed_models(sp, bob): premium models grayed out, bob''s cap is used up');
SELECT results_eq(
    $$SELECT model, available, reason FROM r_models WHERE label = 'sz'$$,
    $$VALUES ('gpt-4.1'::text, false, 'credits_exhausted'::text), ('gpt-4o', false, 'credits_exhausted'),
             ('o3', false, 'credits_exhausted'), ('gpt-4o-mini', true, NULL)$$,
    'allowed_models(sz): premium models grayed out, the pool is empty');
SELECT results_eq(
    $$SELECT label, model FROM r_resolve ORDER BY label$$,
    $$VALUES ('ann'::text, 'gpt-4o'::text), ('bob', 'gpt-4o-mini'), ('zed', 'gpt-4o-mini')$$,
    'resolve_model: the model itself, or the fallback when the cap or the pool ran out');
SELECT results_eq(
    $$SELECT * FROM r_usage$$,
    $$VALUES ('ann'::text, 'gpt-4o'::text, 2::bigint, 22000::numeric, 1500::numeric, '7'::credit, '7'::credit, '0'::credit, NULL::text),
             ('bob', 'gpt-4o', 1, 40000, 0, '10', '10', '0', NULL)$$,
    'usage(sp): per user and model, from the ledger only');
SELECT results_eq(
    $$SELECT label, org_id, allowance, allowance_used, topup, reserved, available, exhausted
        FROM r_recharge ORDER BY label DESC$$,
    $$VALUES ('topup'::text, 'sp'::text, '200'::credit, '17'::credit, '25'::credit, '1.8'::credit, '206.2'::credit, false),
             ('restore', 'sp', '200', '0', '25', '1.8', '223.2', false)$$,
    'recharge: a top-up of 25, then the period restored; each returns pool_status');
SELECT is_empty($$SELECT * FROM r_verify$$, 'verify() on the evil path: no rows');
SELECT results_eq(
    $$SELECT org_id, period_start, period_end, allowance, allowance_used, topup, reserved, available, exhausted
        FROM r_pool_status ORDER BY org_id$$,
    $$VALUES ('sp'::text, now(), (now() AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC',
              '200'::credit, '0'::credit, '25'::credit, '1.8'::credit, '223.2'::credit, false),
             ('spr', now() - interval '10 minutes', now() + interval '50 minutes',
              '10', '0', '0', '0', '10', false),
             ('sq', now(), (now() AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC',
              '50', '0', '0', '0', '50', false),
             ('sz', now(), (now() AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC',
              '0', '0', '0', '0', '0', true)$$,
    'pool_status read on the evil path: the real pools (evil.pool_status and evil.pools ignored)');
SELECT results_eq(
    $$SELECT label, n FROM r_int ORDER BY label DESC$$,
    $$VALUES ('reset_due'::text, 1), ('expire_holds', 1)$$,
    'reset_due an hour ahead rolls spr over (1), expire_holds releases ann''s hold (1)');
SELECT results_eq(
    $$SELECT n, label, sqlstate FROM r_err ORDER BY n$$,
    $$VALUES (1, 'debit, unknown org'::text, 'UC004'::text),
             (2, 'debit, not a member', 'UC005'),
             (3, 'debit, unknown model', 'UC002'),
             (4, 'debit, provider not enabled', 'UC003'),
             (5, 'debit, request_id reused', 'UC007'),
             (6, 'reserve, request_id of a debit', 'UC007'),
             (7, 'release, settled hold', 'UC006'),
             (8, 'settle, hold only in evil.holds', 'UC006'),
             (9, 'resolve_model, unknown org', 'UC004'),
             (10, 'allowed_models, not a member', 'UC005'),
             (11, 'cost, unknown model', 'UC002'),
             (12, 'create_org, existing org', '23505'),
             (13, 'enable_provider, unknown provider', '22023'),
             (14, 'add_member, unknown org', 'UC004'),
             (15, 'remove_member, not a member', 'UC005'),
             (16, 'recharge, unknown org', 'UC004'),
             (17, 'usage, unknown org', 'UC004'),
             (18, 'upsert_model, unknown provider', '22023')$$,
    'errors on the evil path: the same SQLSTATEs as with a clean path');

-- 3. what was written is what a clean path writes
SELECT results_eq(
    $$SELECT org_id, kind, user_id, model, cost, charged, shortfall, from_allowance, from_topup,
             topup_change, reserved_change, available_after, request_id
        FROM credits.ledger ORDER BY entry_id$$,
    $$VALUES ('sp'::text, 'debit'::text, 'ann'::text, 'gpt-4o'::text, '6'::credit, '6'::credit, '0'::credit, '6'::credit, '0'::credit, NULL::credit, NULL::credit, '194'::credit, 'r1'::text),
             ('sz', 'debit', 'zed', 'gpt-4o-mini', '0.015', '0', '0', '0', '0', NULL, NULL, '0', NULL),
             ('sz', 'debit', 'zed', 'gpt-4o', '0.25', '0', '0.25', '0', '0', NULL, NULL, '0', NULL),
             ('sp', 'hold', 'ann', 'gpt-4o', '2', '0', '0', '0', '0', NULL, '2', '192', 'r2'),
             ('sp', 'settle', 'ann', 'gpt-4o', '1', '1', '0', '1', '0', NULL, '-2', '193', NULL),
             ('sp', 'hold', 'bob', 'gpt-4o', '10', '0', '0', '0', '0', NULL, '10', '183', NULL),
             ('sp', 'hold', 'bob', 'gpt-4o-mini', '0.06', '0', '0', '0', '0', NULL, NULL, '183', NULL),
             ('sp', 'release', 'bob', 'gpt-4o', '0', '0', '0', '0', '0', NULL, '-10', '193', NULL),
             ('sp', 'release', 'bob', 'gpt-4o-mini', '0', '0', '0', '0', '0', NULL, NULL, '193', NULL),
             ('sp', 'debit', 'bob', 'gpt-4o', '10', '10', '0', '10', '0', NULL, NULL, '183', NULL),
             ('sp', 'hold', 'ann', 'claude-sonnet-4-5', '1.8', '0', '0', '0', '0', NULL, '1.8', '181.2', 'r4'),
             ('sp', 'topup', NULL, NULL, '0', '0', '0', '0', '0', '25', NULL, '206.2', NULL),
             ('sp', 'recharge', NULL, NULL, '0', '0', '0', '-17', '0', NULL, NULL, '223.2', NULL),
             ('spr', 'reset', NULL, NULL, '0', '0', '0', '0', '0', NULL, NULL, '10', NULL),
             ('sp', 'release', 'ann', 'claude-sonnet-4-5', '0', '0', '0', '0', '0', NULL, '-1.8', '225', NULL)$$,
    'the ledger holds exactly the entries a clean path writes, in order');
SELECT ok((SELECT bool_and(created_at = now()) FROM credits.ledger),
          'every ledger entry is stamped with the real now(), not evil.now()');
SELECT results_eq(
    $$SELECT hold_id, org_id, user_id, model, status, reserved, expires_at FROM credits.holds ORDER BY hold_id$$,
    $$SELECT h.hold_id, 'sp'::text, u, h.model, s, '0'::credit, now() + interval '15 minutes'
        FROM (SELECT 1 AS o, 'ann'::text AS u, 'settled'::text AS s, * FROM h1
              UNION ALL SELECT 2, 'bob', 'released', * FROM h2
              UNION ALL SELECT 3, 'bob', 'released', * FROM h3
              UNION ALL SELECT 4, 'ann', 'expired', * FROM h4) h
       ORDER BY h.hold_id$$,
    'holds: settled, released, released, expired; nothing left reserved');
SELECT results_eq(
    $$SELECT org_id, user_id, used, reserved FROM credits.member_usage ORDER BY org_id, user_id$$,
    $$VALUES ('sp'::text, 'ann'::text, '0'::credit, '0'::credit)$$,
    'member_usage: the restore cleared the period, the expiry the reservation');
SELECT results_eq(
    $$SELECT org_id, amount, remaining, expired_amount, expires_at, note FROM credits.grants$$,
    $$SELECT 'sp'::text, '25'::credit, '25'::credit, '0'::credit, ts, 'evil top-up'::text FROM t_expiry$$,
    'grants: the one top-up, untouched');
SELECT results_eq(
    $$SELECT org_id, kind FROM credits.events ORDER BY event_id$$,
    $$VALUES ('sp'::text, 'topup'::text), ('sp', 'recharge'), ('spr', 'period_reset')$$,
    'events: the top-up, the restore and the period reset, nothing else');
SELECT results_eq(
    $$SELECT payload->>'amount', payload->>'note' FROM credits.events WHERE kind = 'topup'$$,
    $$VALUES ('25'::text, 'evil top-up'::text)$$,
    'events: the top-up''s payload is real (not evil jsonb_build_object or ||)');
SELECT results_eq(
    $$SELECT org_id, period_start, period_end, allowance, allowance_used, calls FROM credits.periods$$,
    $$VALUES ('spr'::text, now() - interval '10 minutes', now() + interval '50 minutes', '10'::credit, '0'::credit, 0::bigint)$$,
    'periods: spr''s first period closed (nothing of evil.periods)');
SELECT results_eq(
    $$SELECT org_id, period_start, period_end, allowance, allowance_used, topup, reserved, available, exhausted
        FROM credits.pool_status ORDER BY org_id$$,
    $$VALUES ('sp'::text, now(), (now() AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC',
              '200'::credit, '0'::credit, '25'::credit, '0'::credit, '225'::credit, false),
             ('spr', now() + interval '50 minutes', now() + interval '110 minutes',
              '10', '0', '0', '0', '10', false),
             ('sq', now(), (now() AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC',
              '50', '0', '0', '0', '50', false),
             ('sz', now(), (now() AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC',
              '0', '0', '0', '0', '0', true)$$,
    'pool_status at the end: sp 225, spr in its next period, sq 50, sz empty');
SELECT results_eq(
    $$SELECT org_id, allowance, allowance_used, topup, topup_used, reserved, calls, alert_level,
             next_hold_expiry, next_grant_expiry
        FROM credits.pools ORDER BY org_id$$,
    $$VALUES ('sp'::text, '200'::credit, '0'::credit, '25'::credit, '0'::credit, '0'::credit, 3::bigint, 0,
              NULL::timestamptz, (SELECT ts FROM t_expiry)),
             ('spr', '10', '0', '0', '0', '0', 0, 0, NULL, NULL),
             ('sq', '50', '0', '0', '0', '0', 0, 0, NULL, NULL),
             ('sz', '0', '0', '0', '0', '0', 2, 0, NULL, NULL)$$,
    'pools: the raw figures (calls counted, no alert, the grant''s expiry tracked)');
SELECT is_empty($$SELECT * FROM credits.verify()$$, 'verify() finds nothing');
SELECT is_empty($$SELECT what FROM evil.calls$$, 'still no evil call after the checks');

-- 4. every function of ours that runs SQL pins its search_path
SELECT is_empty(
    $$SELECT p.oid::regprocedure
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
       WHERE p.pronamespace = 'credits'::regnamespace
         AND (p.prosecdef OR l.lanname IN ('sql', 'plpgsql'))
         AND NOT coalesce('search_path=pg_catalog, credits, pg_temp' = ANY (p.proconfig), false)$$,
    'every SECURITY DEFINER, SQL and PL/pgSQL function of credits pins search_path = pg_catalog, credits, pg_temp');

-- 5. the traps are armed: on the evil path, plain expressions do reach them
SET LOCAL search_path = evil, public, credits, pg_catalog;
CREATE TEMP TABLE r_control AS
SELECT 'a'::text = 'b'::text AS text_eq,
       now() AS now,
       '1'::credits.credit + '1'::credits.credit AS credit_pl,
       (SELECT sum(c) FROM (VALUES ('1'::credits.credit)) v(c)) AS credit_sum,
       (SELECT count(*) FROM (VALUES (1)) v(c)) AS count_star,
       '2999-01-01 00:00:00+00'::timestamptz <= '2000-01-01 00:00:00+00'::timestamptz AS ts_le,
       1::bigint = 2::bigint AS int8_eq,
       lower('ABC') AS lower,
       nextval('credits.ledger_entry_id_seq') AS nextval;
SET LOCAL search_path = public, credits;
SELECT results_eq(
    $$SELECT text_eq, now, credit_pl, credit_sum, count_star, ts_le, int8_eq, lower, nextval FROM r_control$$,
    $$VALUES (true, '2999-01-01 00:00:00+00'::timestamptz, '424242'::credit, '424242'::credit,
              424242::bigint, true, true, 'evil'::text, 1::bigint)$$,
    'control: on the evil path, unqualified names do resolve to the evil objects');
SELECT is((SELECT count(DISTINCT what)::int FROM evil.calls), 9,
          'control: ... and each of those evil objects recorded its call');

SELECT * FROM finish();
ROLLBACK;
