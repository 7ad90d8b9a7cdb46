-- pgTAP: credits.usage() and credits.verify()
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(41);

-- ---------------------------------------------------------------------------
-- Fixtures
--   rep    100 per user: alice, bob, dave (no calls) -> 300; openai + anthropic
--   rep2   10: carol                                 -> 10;  openai
--   quiet  50 per user: q1, q2, no calls             -> 100; openai
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM credits.create_org('rep', allowance_per_user => 100);
    PERFORM credits.enable_provider('rep', 'openai');
    PERFORM credits.enable_provider('rep', 'anthropic');
    PERFORM credits.add_member('rep', 'alice');
    PERFORM credits.add_member('rep', 'bob');
    PERFORM credits.add_member('rep', 'dave');
    -- usage() names each member's team (a team without a cap charges as none)
    PERFORM credits.create_team('rep', 'eng');
    PERFORM credits.set_member_team('rep', 'bob', 'eng');

    PERFORM credits.create_org('rep2', allowance_per_user => 10);
    PERFORM credits.enable_provider('rep2', 'openai');
    PERFORM credits.add_member('rep2', 'carol');

    PERFORM credits.create_org('quiet', allowance_per_user => 50);
    PERFORM credits.enable_provider('quiet', 'openai');
    PERFORM credits.add_member('quiet', 'q1');
    PERFORM credits.add_member('quiet', 'q2');

    -- rep
    PERFORM credits.credit_debit('rep', 'alice', 'gpt-4o', 20000, 1000);               -- 6
    PERFORM credits.credit_debit('rep', 'alice', 'gpt-4o', 20000, 1000, 'a-2');        -- 6
    PERFORM credits.credit_debit('rep', 'alice', 'gpt-4o', 20000, 1000, 'a-2');        -- replay
    PERFORM credits.credit_debit('rep', 'alice', 'gpt-4o-mini', 1000, 500);            -- 0.045
    PERFORM credits.credit_debit('rep', 'bob', 'claude-sonnet-4-5', 10000, 2000);      -- 6
    PERFORM credits.credit_debit('rep', 'bob', 'gpt-4o', 4000);                        -- 1
    -- rep2: runs out
    PERFORM credits.credit_debit('rep2', 'carol', 'gpt-4o', 40000);                    -- 10
    PERFORM credits.credit_debit('rep2', 'carol', 'gpt-4o', 8000);                     -- 2, all shortfall
    PERFORM credits.credit_debit('rep2', 'carol', 'gpt-4o-mini', 200000, 100000);      -- 9, free
END
$$;

-- an entry of an earlier period, 40 days ago (written by hand: the ledger
-- takes INSERTs; created_at is otherwise always now() in this transaction)
INSERT INTO credits.ledger (org_id, kind, created_at, period_start, user_id, model, input_tokens,
                            output_tokens, cost, charged, shortfall, from_allowance, from_topup,
                            available_after)
SELECT 'rep', 'debit', now() - interval '40 days', p.period_start - interval '1 month', 'alice', 'gpt-4o',
       4000, 0, 1, 1, 0, 1, 0, 99
  FROM credits.pools p WHERE p.org_id = 'rep';

CREATE TEMP TABLE expected_rep (user_id text, model text, calls bigint, input_tokens numeric,
                                output_tokens numeric, cost credits.credit, charged credits.credit,
                                shortfall credits.credit, team_id text);
INSERT INTO expected_rep VALUES
    ('alice', 'gpt-4o',            2, 40000, 2000, 12,      12,      0, NULL),
    ('alice', 'gpt-4o-mini',       1,  1000,  500, '0.045', '0.045', 0, NULL),
    ('bob',   'claude-sonnet-4-5', 1, 10000, 2000, 6,       6,       0, 'eng'),
    ('bob',   'gpt-4o',            1,  4000,    0, 1,       1,       0, 'eng');

-- ---------------------------------------------------------------------------
-- usage()
-- ---------------------------------------------------------------------------
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'credits.usage(text, timestamptz, timestamptz)'::regprocedure),
          ARRAY['org_id', 'since', 'until', 'user_id', 'model', 'calls', 'input_tokens', 'output_tokens',
                'cost', 'charged', 'shortfall', 'team_id'],
          'usage: argument and result column names');
SELECT results_eq(
    $$SELECT * FROM credits.usage('rep')$$,
    $$SELECT * FROM expected_rep ORDER BY user_id, model$$,
    'usage: per user and model, calls and sums of tokens, cost, charged, shortfall; replays and earlier periods not counted');
SELECT results_eq(
    $$SELECT * FROM credits.usage('rep2')$$,
    $$VALUES ('carol'::text, 'gpt-4o'::text, 2::bigint, 48000::numeric, 0::numeric, '12'::credit, '10'::credit, '2'::credit, NULL::text),
             ('carol', 'gpt-4o-mini', 1, 200000, 100000, '9', '0', '0', NULL)$$,
    'usage: an org that ran out: charged and shortfall split, the free fallback call counted with cost 9, charged 0');
SELECT is_empty($$SELECT * FROM credits.usage('quiet')$$, 'usage: an org without calls has no rows');
SELECT results_eq(
    $$SELECT sum(calls)::int, sum(cost) FROM credits.usage('rep')$$,
    $$SELECT count(*)::int, sum(cost) FROM credits.ledger
       WHERE org_id = 'rep' AND kind = 'debit'
         AND period_start = (SELECT period_start FROM credits.pools WHERE org_id = 'rep')$$,
    'usage: the totals equal the ledger''s debits of the current period');
SELECT results_eq(
    $$SELECT * FROM credits.usage('rep', NULL, NULL)$$,
    $$SELECT * FROM credits.usage('rep')$$,
    'usage: since and until NULL = the current period');

-- since / until: [since, until); the current entries are at now(), the old one 40 days ago
SELECT results_eq(
    $$SELECT * FROM credits.usage('rep', now() - interval '50 days')$$,
    $$SELECT user_id, model, calls + CASE WHEN (user_id, model) = ('alice', 'gpt-4o') THEN 1 ELSE 0 END,
             input_tokens + CASE WHEN (user_id, model) = ('alice', 'gpt-4o') THEN 4000 ELSE 0 END,
             output_tokens,
             cost + CASE WHEN (user_id, model) = ('alice', 'gpt-4o') THEN '1'::credit ELSE '0'::credit END,
             charged + CASE WHEN (user_id, model) = ('alice', 'gpt-4o') THEN '1'::credit ELSE '0'::credit END,
             shortfall, team_id
        FROM expected_rep ORDER BY user_id, model$$,
    'usage: since 50 days ago includes the older entry');
SELECT results_eq(
    $$SELECT * FROM credits.usage('rep', since => now() - interval '30 days')$$,
    $$SELECT * FROM expected_rep ORDER BY user_id, model$$,
    'usage: since 30 days ago excludes it');
SELECT results_eq(
    $$SELECT * FROM credits.usage('rep', now() - interval '50 days', now() - interval '30 days')$$,
    $$VALUES ('alice'::text, 'gpt-4o'::text, 1::bigint, 4000::numeric, 0::numeric, '1'::credit, '1'::credit, '0'::credit, NULL::text)$$,
    'usage: a range around the older entry has only it');
SELECT results_eq(
    $$SELECT * FROM credits.usage('rep', until => now())$$,
    $$VALUES ('alice'::text, 'gpt-4o'::text, 1::bigint, 4000::numeric, 0::numeric, '1'::credit, '1'::credit, '0'::credit, NULL::text)$$,
    'usage: until now() excludes the entries made at now() (until is exclusive)');
SELECT results_eq(
    $$SELECT * FROM credits.usage('rep', since => now())$$,
    $$SELECT * FROM expected_rep ORDER BY user_id, model$$,
    'usage: since now() includes the entries made at now() (since is inclusive)');
SELECT results_eq(
    $$SELECT * FROM credits.usage('rep', now(), now() + interval '1 second')$$,
    $$SELECT * FROM expected_rep ORDER BY user_id, model$$,
    'usage: [now(), now() + 1s) has the current entries');
SELECT is_empty($$SELECT * FROM credits.usage('rep', now() + interval '1 microsecond')$$,
                'usage: since after the entries -> nothing');
SELECT is_empty($$SELECT * FROM credits.usage('rep', now(), now())$$,
                'usage: an empty range -> nothing');
SELECT is_empty($$SELECT * FROM credits.usage('rep', now() - interval '30 days', now() - interval '1 day')$$,
                'usage: a range between the entries -> nothing');

-- errors
SELECT throws_ok($$SELECT * FROM credits.usage('nope')$$, 'UC004', 'unknown org "nope"', 'usage: unknown org UC004');
SELECT throws_ok($$SELECT * FROM credits.usage('nope', now() - interval '1 day', now())$$, 'UC004', NULL,
                 'usage: unknown org UC004, with a range');
SELECT throws_ok($$SELECT * FROM credits.usage(NULL)$$, '22004', 'org_id must not be null',
                 'usage: NULL org_id 22004 naming it');
SELECT throws_ok($$SELECT * FROM credits.usage('')$$, '22023', NULL, 'usage: empty org_id 22023');

-- ---------------------------------------------------------------------------
-- verify(): consistent after the debits
-- ---------------------------------------------------------------------------
SELECT is_empty($$SELECT * FROM credits.verify('rep')$$, 'verify(rep): no rows after the debits');
SELECT is_empty($$SELECT * FROM credits.verify('rep2')$$, 'verify(rep2): no rows after running out');
SELECT is_empty($$SELECT * FROM credits.verify('quiet')$$, 'verify(quiet): no rows for an org without calls');
SELECT is_empty($$SELECT * FROM credits.verify() WHERE org_id IN ('rep', 'rep2', 'quiet')$$,
                'verify(): no rows for these orgs');
SELECT is_empty($$SELECT * FROM credits.verify(NULL) WHERE org_id IN ('rep', 'rep2', 'quiet')$$,
                'verify(NULL): the same');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'credits.verify(text)'::regprocedure),
          ARRAY['org_id', 'org_id', 'check_name', 'expected', 'actual'],
          'verify: argument and result column names');

-- ---------------------------------------------------------------------------
-- verify(): deliberate corruption, as a superuser, one kind at a time
-- ---------------------------------------------------------------------------
-- the corruptions below edit pools rows: fold the escrow stripes in first,
-- so that each row holds its pool's whole figures
SELECT credits._consolidate(org_id) FROM credits.pools;
CREATE TEMP TABLE pools_ok AS SELECT * FROM credits.pools;
CREATE TEMP TABLE usage_ok AS SELECT * FROM credits.member_usage;

-- pool's allowance_used off by one (rep: 19.045 charged)
UPDATE credits.pools SET allowance_used = allowance_used + 1 WHERE org_id = 'rep';
SELECT results_eq(
    $$SELECT * FROM credits.verify('rep')$$,
    $$VALUES ('rep'::text, 'allowance_used_matches_ledger'::text, '19.045'::text, '20.045'::text)$$,
    'verify: allowance_used differing from the ledger -> allowance_used_matches_ledger (expected ledger, actual pool)');
UPDATE credits.pools p SET allowance_used = o.allowance_used FROM pools_ok o WHERE p.org_id = o.org_id;
SELECT is_empty($$SELECT * FROM credits.verify('rep')$$, 'verify: repaired -> no rows');

-- topup_used off
UPDATE credits.pools SET topup_used = 2 WHERE org_id = 'rep2';
SELECT results_eq(
    $$SELECT * FROM credits.verify('rep2')$$,
    $$VALUES ('rep2'::text, 'topup_used_matches_ledger'::text, '0'::text, '2'::text)$$,
    'verify: topup_used differing from the ledger -> topup_used_matches_ledger');
UPDATE credits.pools p SET topup_used = o.topup_used FROM pools_ok o WHERE p.org_id = o.org_id;

-- a member's usage off, missing, or present without charges
UPDATE credits.member_usage SET used = used + 1 WHERE org_id = 'rep' AND user_id = 'alice';
SELECT results_eq(
    $$SELECT * FROM credits.verify('rep')$$,
    $$VALUES ('rep'::text, 'member_usage_matches_ledger:alice'::text, '12.045'::text, '13.045'::text)$$,
    'verify: a member''s usage differing from the ledger -> member_usage_matches_ledger:alice');
DELETE FROM credits.member_usage WHERE org_id = 'rep' AND user_id = 'bob';
INSERT INTO credits.member_usage (org_id, user_id, used) VALUES ('rep', 'dave', 3);
SELECT results_eq(
    $$SELECT * FROM credits.verify('rep')$$,
    $$VALUES ('rep'::text, 'member_usage_matches_ledger:alice'::text, '12.045'::text, '13.045'::text),
             ('rep', 'member_usage_matches_ledger:bob', '7', '0'),
             ('rep', 'member_usage_matches_ledger:dave', '0', '3')$$,
    'verify: a missing usage row (bob) and usage without charges (dave) are reported too, one row per member');
DELETE FROM credits.member_usage WHERE org_id = 'rep';
INSERT INTO credits.member_usage SELECT * FROM usage_ok WHERE org_id = 'rep';
SELECT is_empty($$SELECT * FROM credits.verify('rep')$$, 'verify: repaired -> no rows');

-- the pool's allowance below the active members' allowances (quiet has used nothing, so the
-- CHECK allowance_used <= allowance still holds)
UPDATE credits.pools SET allowance = 0 WHERE org_id = 'quiet';
SELECT results_eq(
    $$SELECT * FROM credits.verify('quiet')$$,
    $$VALUES ('quiet'::text, 'allowance_covers_members'::text, '>= 100'::text, '0'::text)$$,
    'verify: allowance 0 with two active members of 50 -> allowance_covers_members');
-- rep: allowance lowered to what was used
UPDATE credits.pools SET allowance = allowance_used WHERE org_id = 'rep';
SELECT results_eq(
    $$SELECT * FROM credits.verify('rep')$$,
    $$VALUES ('rep'::text, 'allowance_covers_members'::text, '>= 300'::text, '19.045'::text)$$,
    'verify: allowance below the members'' (19.045 < 300) -> allowance_covers_members');

-- verify(NULL) covers every org, verify(org) only that org
UPDATE credits.pools SET allowance_used = 1 WHERE org_id = 'rep2';
SELECT results_eq(
    $$SELECT * FROM credits.verify(NULL) WHERE org_id IN ('rep', 'rep2', 'quiet')$$,
    $$VALUES ('quiet'::text, 'allowance_covers_members'::text, '>= 100'::text, '0'::text),
             ('rep', 'allowance_covers_members', '>= 300', '19.045'),
             ('rep2', 'allowance_used_matches_ledger', '10', '1')$$,
    'verify(NULL): every org''s violations');
SELECT results_eq(
    $$SELECT * FROM credits.verify() WHERE org_id IN ('rep', 'rep2', 'quiet')$$,
    $$SELECT * FROM credits.verify(NULL) WHERE org_id IN ('rep', 'rep2', 'quiet')$$,
    'verify(): the default is every org');
SELECT results_eq(
    $$SELECT * FROM credits.verify('rep2')$$,
    $$VALUES ('rep2'::text, 'allowance_used_matches_ledger'::text, '10'::text, '1'::text)$$,
    'verify(rep2): only rep2''s violations');
SELECT throws_ok($$SELECT * FROM credits.verify('nope')$$, 'UC004', 'unknown org "nope"', 'verify: an unknown org is UC004, as for every other function');
UPDATE credits.pools p SET allowance = o.allowance, allowance_used = o.allowance_used
  FROM pools_ok o WHERE p.org_id = o.org_id;
SELECT is_empty($$SELECT * FROM credits.verify() WHERE org_id IN ('rep', 'rep2', 'quiet')$$,
                'verify: all repaired -> no rows');

-- Violations the constraints normally make impossible: lift the constraint or
-- index inside this transaction (rolled back at the end).
ALTER TABLE credits.pools DROP CONSTRAINT pools_available_not_negative;
UPDATE credits.pools SET reserved = allowance - allowance_used + 5 WHERE org_id = 'quiet';
SELECT results_eq(
    $$SELECT check_name, expected, actual FROM credits.verify('quiet')
       WHERE check_name = 'available_not_negative'$$,
    $$VALUES ('available_not_negative'::text, '>= 0'::text, '-5'::text)$$,
    'verify: a negative available -> available_not_negative');
UPDATE credits.pools SET reserved = 0 WHERE org_id = 'quiet';

DROP INDEX credits.ledger_request_idx;
INSERT INTO credits.ledger (org_id, kind, period_start, user_id, model, input_tokens, output_tokens,
                            cost, charged, shortfall, from_allowance, from_topup, available_after, request_id)
SELECT 'rep', 'debit', p.period_start - interval '1 month', 'alice', 'gpt-4o', 20000, 1000, 6, 0, 6, 0, 0, 0, 'a-2'
  FROM credits.pools p WHERE p.org_id = 'rep';
SELECT results_eq(
    $$SELECT * FROM credits.verify('rep')$$,
    $$VALUES ('rep'::text, 'request_id_once:a-2'::text, '1'::text, '2'::text)$$,
    'verify: a request_id charged twice -> request_id_once:a-2');
SELECT is_empty($$SELECT * FROM credits.verify('rep2')$$, 'verify(rep2): rep''s duplicate is not rep2''s');

SELECT * FROM finish();
ROLLBACK;
