-- pgTAP: every check of credits.verify() fires.  Each test breaks one
-- invariant of a healthy fixture inside a savepoint (writing the
-- extension's tables directly, as nothing in the API would), asserts that
-- verify() of that org reports exactly that check, and rolls the savepoint
-- back.  Where one broken figure necessarily breaks a second invariant too,
-- the test asserts both names and says why.  The checks are read from
-- credits.verify in src/sql/080_reports.sql; the last tests check that the
-- names tested here are all the check names verify() has.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(41);

-- ---------------------------------------------------------------------------
-- Fixture (gpt-4o: 4000 input tokens = 1 credit, no thresholds)
--   vf  one balance: va, vb 100 each (200); grants G1 50 (no expiry) and
--       G2 20 (expires in 30 days); va debits 100 (rq-1), vb holds 6
--       (rq-h), va debits 125 (rq-2: 100 allowance, 25 top-up: G2 20, G1 5)
--       -> allowance_used 200, topup 45, topup_used 25, reserved 6, available 39
--       teams: vt (cap 500, va; team_spend used 0, reserved 0), vu (no cap)
--   vs  2 stripes: sa 1000; sa holds 500, debits 10 (slow path: escrows 245
--       to each stripe), debits 10 on stripe 0 (fast path)
--       -> row used 10, stripe 0 funds 235 used 10, stripe 1 funds 245;
--          reserved 500, available 480
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM credits.create_org('vf', allowance_per_user => 100);
    UPDATE credits.orgs SET stripes = 0, thresholds = '{}' WHERE org_id = 'vf';
    PERFORM credits.enable_provider('vf', 'openai');
    PERFORM credits.add_member('vf', 'va');
    PERFORM credits.add_member('vf', 'vb');
    PERFORM credits.recharge('vf', 50, note => 'G1');
    PERFORM credits.recharge('vf', 20, now() + interval '30 days', 'G2');
    PERFORM credits.credit_debit('vf', 'va', 'gpt-4o', 400000, 0, 'rq-1');
    PERFORM credits.credit_reserve('vf', 'vb', 'gpt-4o', 20000, 1000, 'rq-h');
    PERFORM credits.credit_debit('vf', 'va', 'gpt-4o', 500000, 0, 'rq-2');
    -- a capped team (va in it, nothing charged in it yet) and one without a cap
    PERFORM credits.create_team('vf', 'vt', 500);
    PERFORM credits.set_member_team('vf', 'va', 'vt');
    PERFORM credits.create_team('vf', 'vu');

    PERFORM credits.create_org('vs', allowance_per_user => 1000);
    UPDATE credits.orgs SET stripes = 2, thresholds = '{}' WHERE org_id = 'vs';
    PERFORM credits.enable_provider('vs', 'openai');
    PERFORM credits.add_member('vs', 'sa');
    PERFORM set_config('credits.stripe', '0', true);
    PERFORM credits.credit_reserve('vs', 'sa', 'gpt-4o', 2000000, 0);
    PERFORM credits.credit_debit('vs', 'sa', 'gpt-4o', 40000);
    PERFORM credits.credit_debit('vs', 'sa', 'gpt-4o', 40000);
END
$$;

CREATE FUNCTION pg_temp.entry(rid text) RETURNS bigint LANGUAGE sql STABLE
    AS $$SELECT entry_id FROM credits.ledger WHERE org_id = 'vf' AND request_id = rid$$;
CREATE FUNCTION pg_temp.grant_of(n text) RETURNS bigint LANGUAGE sql STABLE
    AS $$SELECT grant_id FROM credits.grants WHERE org_id = 'vf' AND note = n$$;
CREATE FUNCTION pg_temp.period(org text) RETURNS timestamptz LANGUAGE sql STABLE
    AS $$SELECT period_start FROM credits.pools WHERE org_id = org$$;

SELECT results_eq(
    $$SELECT allowance, allowance_used, topup, topup_used, reserved, stripes
        FROM credits.pools WHERE org_id = 'vf'$$,
    $$VALUES ('200'::credit, '200'::credit, '45'::credit, '25'::credit, '6'::credit, 0)$$,
    'fixture: vf has used its allowance and 25 of its grants, 6 held');
SELECT results_eq(
    $$SELECT g.note, d.amount FROM credits.grant_draws d JOIN credits.grants g USING (grant_id)
       WHERE d.entry_id = pg_temp.entry('rq-2') ORDER BY g.note$$,
    $$VALUES ('G1'::text, '5'::credit), ('G2', '20')$$,
    'fixture: rq-2 drew 20 from G2 and 5 from G1');
SELECT results_eq(
    $$SELECT stripe, funds, used FROM credits.pool_stripes WHERE org_id = 'vs' ORDER BY stripe$$,
    $$VALUES (0, '235'::credit, '10'::credit), (1, '245', '0')$$,
    'fixture: vs is escrowed over 2 stripes, stripe 0 charged 10 by the fast path');
SELECT results_eq(
    $$SELECT allowance_used, reserved, available FROM credits.pool_status WHERE org_id = 'vs'$$,
    $$VALUES ('20'::credit, '500'::credit, '480'::credit)$$,
    'fixture: vs has 20 used, 500 held, 480 available');

-- the healthy fixture
SELECT is_empty($$SELECT * FROM credits.verify('vf')$$, 'healthy: verify(vf) is empty');
SELECT is_empty($$SELECT * FROM credits.verify('vs')$$, 'healthy: verify(vs) is empty');
SELECT is_empty($$SELECT * FROM credits.verify()$$, 'healthy: verify() is empty');

-- ---------------------------------------------------------------------------
-- The pool and its stripes (vs)
-- ---------------------------------------------------------------------------
SAVEPOINT broken;
-- 481 more used through stripe 1, ledgered by an adjust entry (so the pool
-- still matches the ledger): 501 used of 1000, but 500 are held, so the
-- pool is 1 below 0.  The stripes' funds (235 + 245, never below 0) then
-- exceed what is available: escrow_within_available fires with it,
-- necessarily.
INSERT INTO credits.ledger (org_id, kind, period_start, from_allowance, available_after, note)
VALUES ('vs', 'adjust', pg_temp.period('vs'), 481, -1, 'broken');
UPDATE credits.pool_stripes SET used = used + 481 WHERE org_id = 'vs' AND stripe = 1;
UPDATE credits.pools p SET escrowed = (SELECT sum(s.funds) + sum(s.used) FROM credits.pool_stripes s
                                         WHERE s.org_id = p.org_id)
 WHERE p.org_id = 'vs';   -- as if escrowed so: escrow_matches_stripes holds
SELECT bag_eq($$SELECT check_name FROM credits.verify('vs')$$,
              $$VALUES ('available_not_negative'), ('escrow_within_available')$$,
              'available_not_negative: the stripes used more than the pool has (so the escrow exceeds it too)');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
UPDATE credits.pool_stripes SET funds = 1000 WHERE org_id = 'vs' AND stripe = 1;
UPDATE credits.pools p SET escrowed = (SELECT sum(s.funds) + sum(s.used) FROM credits.pool_stripes s
                                         WHERE s.org_id = p.org_id)
 WHERE p.org_id = 'vs';   -- as if escrowed so: escrow_matches_stripes holds
SELECT bag_eq($$SELECT check_name FROM credits.verify('vs')$$, $$VALUES ('escrow_within_available')$$,
              'escrow_within_available: the stripes escrow 1235 of 480 available');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
UPDATE credits.pool_stripes SET funds = -1 WHERE org_id = 'vs' AND stripe = 1;
UPDATE credits.pools p SET escrowed = (SELECT sum(s.funds) + sum(s.used) FROM credits.pool_stripes s
                                         WHERE s.org_id = p.org_id)
 WHERE p.org_id = 'vs';   -- as if escrowed so: escrow_matches_stripes holds
SELECT bag_eq($$SELECT check_name FROM credits.verify('vs')$$, $$VALUES ('escrow_within_available')$$,
              'escrow_within_available: a stripe with negative funds');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- the pool says one stripe, but stripe 1 still holds funds
UPDATE credits.pools SET stripes = 1 WHERE org_id = 'vs';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vs')$$, $$VALUES ('stripes_beyond_count_empty')$$,
              'stripes_beyond_count_empty: stripe 1 holds funds beyond pools.stripes = 1');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- a charge of 1 through stripe 0 that the ledger does not know of
UPDATE credits.pool_stripes SET used = used + 1, funds = funds - 1 WHERE org_id = 'vs' AND stripe = 0;
SELECT bag_eq($$SELECT check_name FROM credits.verify('vs')$$, $$VALUES ('allowance_used_matches_ledger')$$,
              'allowance_used_matches_ledger: a stripe''s used counts in the pool''s');
ROLLBACK TO SAVEPOINT broken;

-- ---------------------------------------------------------------------------
-- Pool figures against the ledger, the holds and the grants (vf)
-- ---------------------------------------------------------------------------
SAVEPOINT broken;
UPDATE credits.pools SET allowance_used = allowance_used - 1 WHERE org_id = 'vf';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('allowance_used_matches_ledger')$$,
              'allowance_used_matches_ledger: pools.allowance_used 1 below the ledger''s');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
UPDATE credits.pools SET topup_used = topup_used + 1 WHERE org_id = 'vf';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('topup_used_matches_ledger')$$,
              'topup_used_matches_ledger: pools.topup_used 1 above the ledger''s');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- one more credit in G1 and in the pool, as if bought, but never ledgered
UPDATE credits.grants SET amount = amount + 1, remaining = remaining + 1
 WHERE grant_id = pg_temp.grant_of('G1');
UPDATE credits.pools SET topup = topup + 1 WHERE org_id = 'vf';
-- (G1 is then larger than the top-up that ledgered it: grant_ledgered too)
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$,
              $$VALUES ('topup_matches_ledger'), ('grant_ledgered:' || pg_temp.grant_of('G1'))$$,
              'topup_matches_ledger: a top-up the ledger does not know of');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- one more credit in G1 (amount and remaining agree), not in the pool
UPDATE credits.grants SET amount = amount + 1, remaining = remaining + 1
 WHERE grant_id = pg_temp.grant_of('G1');
-- (and G1 is larger than the top-up that ledgered it: grant_ledgered too)
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$,
              $$VALUES ('topup_matches_grants'), ('grant_ledgered:' || pg_temp.grant_of('G1'))$$,
              'topup_matches_grants: the grants hold 1 more than pools.topup');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- the hold, its member and the pool all hold 1 more: only the ledger disagrees
UPDATE credits.holds SET reserved = reserved + 1 WHERE org_id = 'vf' AND request_id = 'rq-h';
UPDATE credits.member_usage SET reserved = reserved + 1 WHERE org_id = 'vf' AND user_id = 'vb';
UPDATE credits.pools SET reserved = reserved + 1 WHERE org_id = 'vf';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('reserved_matches_ledger')$$,
              'reserved_matches_ledger: reserved 7 where the ledger says 6');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- the ledger and the pool reserve 1 more than the open holds do
INSERT INTO credits.ledger (org_id, kind, period_start, reserved_change, available_after, note)
VALUES ('vf', 'adjust', pg_temp.period('vf'), 1, 38, 'broken');
UPDATE credits.pools SET reserved = reserved + 1 WHERE org_id = 'vf';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('reserved_matches_open_holds')$$,
              'reserved_matches_open_holds: reserved 7 where the open holds hold 6');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- G1: 50 - 5 drawn - 1 expired is not the 45 remaining
UPDATE credits.grants SET expired_amount = expired_amount + 1 WHERE grant_id = pg_temp.grant_of('G1');
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$,
              $$SELECT 'grant_remaining:' || pg_temp.grant_of('G1')$$,
              'grant_remaining: G1''s remaining is not its amount less draws and expiry');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- rq-2 drew 6 from G1 instead of 5, and G1 was 1 larger: G1 adds up, the
-- entry's from_topup (25) is not its draws (26)
UPDATE credits.grant_draws SET amount = amount + 1
 WHERE entry_id = pg_temp.entry('rq-2') AND grant_id = pg_temp.grant_of('G1');
UPDATE credits.grants SET amount = amount + 1 WHERE grant_id = pg_temp.grant_of('G1');
-- (G1's larger amount is not what its top-up ledgered: grant_ledgered too)
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$,
              $$VALUES ('grant_draws_match_entry:' || pg_temp.entry('rq-2')),
                       ('grant_ledgered:' || pg_temp.grant_of('G1'))$$,
              'grant_draws_match_entry: an entry''s draws are not its from_topup');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- a member added behind the triggers' back: the pool was never raised
SET LOCAL session_replication_role = replica;
INSERT INTO credits.members (org_id, user_id) VALUES ('vf', 'vc');
RESET session_replication_role;
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('allowance_covers_members')$$,
              'allowance_covers_members: 3 members of 100 and a pool of 200');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- 200 used of an allowance of 199 (a member's allowance lowered so that the
-- allowance still covers the members; the grants keep the pool above 0)
UPDATE credits.members SET allowance = 99 WHERE org_id = 'vf' AND user_id = 'va';
UPDATE credits.pools SET allowance = 199 WHERE org_id = 'vf';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('pool_figures_not_negative')$$,
              'pool_figures_not_negative: allowance_used above the allowance');
ROLLBACK TO SAVEPOINT broken;

-- ---------------------------------------------------------------------------
-- Members (vf)
-- ---------------------------------------------------------------------------
SAVEPOINT broken;
UPDATE credits.member_usage SET used = used + 1 WHERE org_id = 'vf' AND user_id = 'va';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('member_usage_matches_ledger:va')$$,
              'member_usage_matches_ledger: va''s used 1 above her charges');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
DELETE FROM credits.member_usage WHERE org_id = 'vf' AND user_id = 'va';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('member_usage_matches_ledger:va')$$,
              'member_usage_matches_ledger: charges of a member without a usage row');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
UPDATE credits.member_usage SET reserved = reserved + 1 WHERE org_id = 'vf' AND user_id = 'vb';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('member_reserved_matches_holds:vb')$$,
              'member_reserved_matches_holds: vb reserves 7, her open hold 6');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
DELETE FROM credits.member_usage WHERE org_id = 'vf' AND user_id = 'vb';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('member_reserved_matches_holds:vb')$$,
              'member_reserved_matches_holds: an open hold of a member without a usage row');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- va's usage at -1, and an adjust entry that takes 226 of her 225 charges
-- back, so that her usage still matches the ledger
INSERT INTO credits.ledger (org_id, kind, period_start, user_id, charged, available_after, note)
VALUES ('vf', 'adjust', pg_temp.period('vf'), 'va', -226, 39, 'broken');
UPDATE credits.member_usage SET used = -1 WHERE org_id = 'vf' AND user_id = 'va';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('member_usage_not_negative:va')$$,
              'member_usage_not_negative: va''s usage below 0');
ROLLBACK TO SAVEPOINT broken;

-- ---------------------------------------------------------------------------
-- Ledger entries (vf)
-- ---------------------------------------------------------------------------
SAVEPOINT broken;
INSERT INTO credits.ledger (org_id, kind, period_start, available_after, note)
VALUES ('vf', 'bogus', pg_temp.period('vf'), 39, 'broken');
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$,
              $$SELECT 'ledger_entry:' || entry_id FROM credits.ledger WHERE org_id = 'vf' AND kind = 'bogus'$$,
              'ledger_entry: an entry of an unknown kind');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- rq-1 (cost 100, charged 100) rewritten with a shortfall: charged +
-- shortfall > cost.  The ledger's append-only trigger is bypassed.
SET LOCAL session_replication_role = replica;
UPDATE credits.ledger SET shortfall = 1 WHERE entry_id = pg_temp.entry('rq-1');
RESET session_replication_role;
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$,
              $$SELECT 'ledger_entry:' || pg_temp.entry('rq-1')$$,
              'ledger_entry: a debit whose charged + shortfall exceeds its cost');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- charged (100) is not from_allowance + from_topup (99 + 0); the pool's
-- used is lowered with it, so that the pool still matches the ledger
SET LOCAL session_replication_role = replica;
UPDATE credits.ledger SET from_allowance = 99 WHERE entry_id = pg_temp.entry('rq-1');
RESET session_replication_role;
UPDATE credits.pools SET allowance_used = allowance_used - 1 WHERE org_id = 'vf';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$,
              $$SELECT 'ledger_entry:' || pg_temp.entry('rq-1')$$,
              'ledger_entry: a debit whose charged is not from_allowance + from_topup');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- a second entry under rq-1: the unique index that forbids it is dropped
DROP INDEX credits.ledger_request_idx;
INSERT INTO credits.ledger (org_id, kind, period_start, available_after, request_id, note)
VALUES ('vf', 'adjust', pg_temp.period('vf'), 39, 'rq-1', 'broken');
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('request_id_once:rq-1')$$,
              'request_id_once: rq-1 ledgered twice');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
DELETE FROM credits.team_spend WHERE org_id = 'vf' AND team_id = 'vt';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('team_spend_row:vt')$$,
              'team_spend_row: a capped team without its usage row');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
INSERT INTO credits.team_spend (org_id, team_id) VALUES ('vf', 'vu');
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('team_spend_row:vu')$$,
              'team_spend_row: a usage row for a team without a cap');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
UPDATE credits.team_spend SET used = used + 1 WHERE org_id = 'vf' AND team_id = 'vt';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('team_usage_matches_ledger:vt')$$,
              'team_usage_matches_ledger: vt used 1 above its members'' charges in it');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
UPDATE credits.team_spend SET reserved = reserved + 1 WHERE org_id = 'vf' AND team_id = 'vt';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$, $$VALUES ('team_reserved_matches_holds:vt')$$,
              'team_reserved_matches_holds: vt reserves 1 without an open hold in it');
ROLLBACK TO SAVEPOINT broken;

-- a negative usage cannot match the ledger's charges (never negative) either
SAVEPOINT broken;
UPDATE credits.team_spend SET used = -1 WHERE org_id = 'vf' AND team_id = 'vt';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$,
              $$VALUES ('team_usage_not_negative:vt'), ('team_usage_matches_ledger:vt')$$,
              'team_usage_not_negative: vt used -1 (and so not its charges)');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
-- G2 bought for 1 more than its top-up ledgered, and that 1 expired: G2 adds up
UPDATE credits.grants SET amount = amount + 1, expired_amount = expired_amount + 1
 WHERE grant_id = pg_temp.grant_of('G2');
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$,
              $$VALUES ('grant_ledgered:' || pg_temp.grant_of('G2'))$$,
              'grant_ledgered: a grant whose amount is not what its entry added');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
UPDATE credits.pools SET escrowed = escrowed + 1 WHERE org_id = 'vs';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vs')$$,
              $$VALUES ('escrow_matches_stripes')$$,
              'escrow_matches_stripes: the pool row says 1 more was escrowed than its stripes hold and used');
ROLLBACK TO SAVEPOINT broken;

SAVEPOINT broken;
UPDATE credits.pools SET auto_recharges = 1 WHERE org_id = 'vf';
SELECT bag_eq($$SELECT check_name FROM credits.verify('vf')$$,
              $$VALUES ('auto_recharges_match_ledger')$$,
              'auto_recharges_match_ledger: a recharge counted that the ledger does not have');
ROLLBACK TO SAVEPOINT broken;

-- the check names tested above are every check name in verify()'s text: a
-- check added to verify() needs a test here (auto_recharge is a ledger kind
-- verify() names, not a check)
SELECT bag_eq(
    $$SELECT DISTINCT m[1]
        FROM pg_proc, regexp_matches(prosrc, $r$'([a-z]+(?:_[a-z]+)+:?)'$r$, 'g') m
       WHERE oid = 'credits.verify(text)'::regprocedure AND m[1] <> 'auto_recharge'$$,
    $$VALUES ('available_not_negative'), ('escrow_within_available'), ('stripes_beyond_count_empty'),
             ('allowance_used_matches_ledger'), ('topup_used_matches_ledger'), ('topup_matches_ledger'),
             ('topup_matches_grants'), ('reserved_matches_ledger'), ('reserved_matches_open_holds'),
             ('grant_remaining:'), ('grant_draws_match_entry:'), ('member_usage_matches_ledger:'),
             ('member_reserved_matches_holds:'), ('allowance_covers_members'), ('ledger_entry:'),
             ('pool_figures_not_negative'), ('member_usage_not_negative:'), ('request_id_once:'),
             ('team_spend_row:'), ('team_usage_matches_ledger:'), ('team_reserved_matches_holds:'),
             ('team_usage_not_negative:'), ('grant_ledgered:'), ('auto_recharges_match_ledger'),
             ('escrow_matches_stripes')$$,
    'the check names tested here are all of verify()''s');

-- and the fixture is whole again
SELECT is_empty($$SELECT * FROM credits.verify()$$, 'restored: verify() is empty');

SELECT * FROM finish();
ROLLBACK;
