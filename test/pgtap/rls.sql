-- Tenant isolation: with credits.org_id set, a role subject to row-level
-- security reads (and, as an admin, changes) only that org's rows, in every
-- table and view, and the credits functions refuse other orgs (42501).
BEGIN;
SELECT plan(45);
SET LOCAL search_path = public, credits;

SELECT org_id FROM credits.create_org('ta', allowance_per_user => 100);
SELECT org_id FROM credits.create_org('tb', allowance_per_user => 100);
SELECT credits.enable_provider(o, 'openai') FROM unnest(ARRAY['ta', 'tb']) o;
SELECT credits.add_member(o, 'u-' || o) FROM unnest(ARRAY['ta', 'tb']) o;
-- escrow stripes from the first debit on, so that pool_stripes has rows
UPDATE credits.orgs SET stripes = 2 WHERE org_id IN ('ta', 'tb');
SELECT (SELECT charged FROM credits.credit_debit(o, 'u-' || o, 'gpt-4o', 20000, 1000, 'r-' || o))
  FROM unnest(ARRAY['ta', 'tb']) o;
-- a hold (1.25) that outlives the rollover below
SELECT (SELECT hold_id FROM credits.credit_reserve(o, 'u-' || o, 'gpt-4o', 1000, 1000,
                                                   ttl => interval '1 year'))
  FROM unnest(ARRAY['ta', 'tb']) o;
-- close the first period of both orgs, so that periods has rows of each
SELECT credits.reset_due(now() + interval '1 month');
SELECT (SELECT available FROM credits.recharge(o, 10, note => 'grant ' || o))
  FROM unnest(ARRAY['ta', 'tb']) o;
-- the new period: 100 allowance (1.25 of it held) + 10 purchased; a debit of
-- 105 uses the allowance and draws 5 from the grant (a grant_draws row each)
SELECT (SELECT charged FROM credits.credit_debit(o, 'u-' || o, 'gpt-4o', 420000))
  FROM unnest(ARRAY['ta', 'tb']) o;
SELECT results_eq(
    $$SELECT g.org_id, sum(d.amount) FROM credits.grant_draws d JOIN credits.grants g USING (grant_id)
       WHERE g.org_id IN ('ta', 'tb') GROUP BY g.org_id ORDER BY g.org_id$$,
    $$VALUES ('ta'::text, '5'::credit), ('tb', '5')$$,
    'fixture: each org drew 5 from its grant');
SELECT results_eq(
    $$SELECT org_id, count(*)::int FROM credits.periods WHERE org_id IN ('ta', 'tb')
       GROUP BY org_id ORDER BY org_id$$,
    $$VALUES ('ta'::text, 1), ('tb', 1)$$,
    'fixture: each org has a closed period');

CREATE ROLE rls_reader_t NOLOGIN;
CREATE ROLE rls_admin_t NOLOGIN;
CREATE ROLE rls_app_t NOLOGIN;
GRANT credits_reader TO rls_reader_t;
GRANT credits_admin TO rls_admin_t;
GRANT credits_app TO rls_app_t;

-- every table with an org_id, and the view, seen by a reader
CREATE TEMP TABLE seen (tbl text, orgs text);
GRANT ALL ON seen TO PUBLIC;
-- whose grant each grant_id is, as the owner sees it: a reader's draws are
-- told apart by this, not by its own (filtered) view of grants
CREATE TEMP TABLE grant_org AS SELECT grant_id, org_id FROM credits.grants;
GRANT SELECT ON grant_org TO PUBLIC;
CREATE FUNCTION pg_temp.seen_orgs() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t text;
    o text;
BEGIN
    DELETE FROM seen;
    FOREACH t IN ARRAY ARRAY['orgs', 'org_providers', 'members', 'member_usage', 'pools',
                             'pool_stripes', 'grants', 'holds', 'ledger', 'events',
                             'pool_status'] LOOP
        EXECUTE format('SELECT string_agg(DISTINCT org_id, '','' ORDER BY org_id) FROM credits.%I', t)
           INTO o;
        INSERT INTO seen VALUES (t, coalesce(o, ''));
    END LOOP;
    INSERT INTO seen
    SELECT 'grant_draws', coalesce(string_agg(DISTINCT g.org_id, ',' ORDER BY g.org_id), '')
      FROM credits.grant_draws d JOIN grant_org g USING (grant_id);
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.seen_orgs() TO PUBLIC;

-- without the setting, nothing is filtered
SET LOCAL ROLE rls_reader_t;
SELECT pg_temp.seen_orgs();
RESET ROLE;
SELECT is((SELECT count(*) FROM seen WHERE orgs = 'ta,tb')::int, 12,
          'unset: a reader sees every org in every table (grant_draws included) and in pool_status');

-- with it, only that org
SET LOCAL credits.org_id = 'ta';
SET LOCAL ROLE rls_reader_t;
SELECT pg_temp.seen_orgs();
RESET ROLE;
SELECT results_eq($$SELECT tbl, orgs FROM seen WHERE tbl <> 'grant_draws' ORDER BY tbl$$,
    $$VALUES ('events'::text, 'ta'::text), ('grants', 'ta'), ('holds', 'ta'), ('ledger', 'ta'),
             ('member_usage', 'ta'), ('members', 'ta'), ('org_providers', 'ta'), ('orgs', 'ta'),
             ('pool_status', 'ta'), ('pool_stripes', 'ta'), ('pools', 'ta')$$,
    'credits.org_id = ta: a reader sees only ta''s rows in every table and in pool_status');
SELECT is((SELECT orgs FROM seen WHERE tbl = 'grant_draws'), 'ta',
          'grant_draws: only the draws on ta''s grants');
-- pool_status reads the stripes the caller may read: the owner directly,
-- a reader (row-level security) by a query, with the same result for its
-- own org; another org's row, built by hand, gets none of its stripes
RESET credits.org_id;
-- (the allowance restored and escrowed into the stripes; the second debit
-- of each org is charged to its stripe)
SELECT (SELECT available FROM credits.recharge(o)) FROM unnest(ARRAY['ta', 'tb']) o;
SELECT (SELECT charged FROM credits.credit_debit(o, 'u-' || o, 'gpt-4o', 1000))
  FROM unnest(ARRAY['ta', 'tb']) o, generate_series(1, 2);
SELECT ok((SELECT sum(used) > 0 FROM credits.pool_stripes WHERE org_id = 'ta')
          AND (SELECT sum(used) > 0 FROM credits.pool_stripes WHERE org_id = 'tb'),
          'fixture: ta''s and tb''s stripes have used credits');
CREATE TEMP TABLE status_owner AS SELECT * FROM credits.pool_status WHERE org_id IN ('ta', 'tb');
CREATE TEMP TABLE rows_tb AS
SELECT p, o FROM credits.pools p JOIN credits.orgs o USING (org_id) WHERE org_id = 'tb';
GRANT SELECT ON status_owner, rows_tb TO PUBLIC;
SET LOCAL credits.org_id = 'ta';
SET LOCAL ROLE rls_reader_t;
SELECT results_eq($$SELECT * FROM credits.pool_status$$,
                  $$SELECT * FROM status_owner WHERE org_id = 'ta'$$,
                  'a reader''s pool_status of its org (stripes read by a query, under its policies) is the owner''s');
SELECT results_eq(
    $$SELECT s.allowance_used FROM rows_tb r, credits._pool_status(r.p, r.o, now()) s$$,
    $$SELECT (p).allowance_used FROM rows_tb$$,
    '_pool_status of another org''s row: its stripes are not read (row-level security)');
RESET ROLE;
SELECT ok((SELECT allowance_used FROM status_owner WHERE org_id = 'tb')
          > (SELECT (p).allowance_used FROM rows_tb),
          '... while the owner''s counts them');
-- a due pool (its period over, a hold and a grant expired): what the next
-- writer will make of it is computed by queries run as the caller
SAVEPOINT due;
UPDATE credits.pools SET period_start = now() - interval '2 days', period_end = now() - interval '1 day',
                         next_hold_expiry = now() - interval '1 day',
                         next_grant_expiry = now() - interval '1 day'
 WHERE org_id = 'ta';
CREATE TEMP TABLE due_owner AS SELECT * FROM credits.pool_status WHERE org_id = 'ta';
GRANT SELECT ON due_owner TO PUBLIC;
SET LOCAL credits.org_id = 'ta';
SET LOCAL ROLE rls_reader_t;
SELECT results_eq($$SELECT * FROM credits.pool_status$$, $$SELECT * FROM due_owner$$,
                  'a reader''s pool_status of its due pool is the owner''s');
RESET ROLE;
RESET credits.org_id;
SELECT ok((SELECT period_start > now() - interval '1 day' FROM due_owner),
          '... and shows the period after the closed one');
ROLLBACK TO SAVEPOINT due;
SET LOCAL credits.org_id = 'ta';
SET LOCAL ROLE rls_reader_t;
SELECT is((SELECT string_agg(DISTINCT org_id, ',') FROM credits.periods
            WHERE org_id IN ('ta', 'tb')), 'ta',
          'periods: ta''s closed period is seen, tb''s is hidden');
SELECT is((SELECT count(*) FROM credits.ledger WHERE org_id = 'tb')::int, 0,
          'a reader cannot even name another org''s ledger rows');
SELECT throws_ok($$SELECT * FROM credits.usage('tb')$$, '42501', NULL,
                 'usage() of another org: 42501');
SELECT lives_ok($$SELECT * FROM credits.usage('ta')$$, 'usage() of the session''s org works');
RESET ROLE;

-- the application functions refuse other orgs
-- tb's open hold, by its literal id (the app role cannot read credits.holds)
SELECT set_config('rls_t.tb_hold', hold_id::text, true)
  FROM credits.holds WHERE org_id = 'tb' AND status = 'open';
SET LOCAL ROLE rls_app_t;
SELECT throws_ok($$SELECT * FROM credits.credit_debit('tb', 'u-tb', 'gpt-4o', 1)$$, '42501', NULL,
                 'credit_debit for another org: 42501');
SELECT throws_ok($$SELECT * FROM credits.credit_reserve('tb', 'u-tb', 'gpt-4o', 1, 1)$$, '42501', NULL,
                 'credit_reserve for another org: 42501');
SELECT throws_ok($$SELECT * FROM credits.allowed_models('tb')$$, '42501', NULL,
                 'allowed_models for another org: 42501');
SELECT throws_ok($$SELECT credits.resolve_model('tb', 'u-tb', 'gpt-4o')$$, '42501', NULL,
                 'resolve_model for another org: 42501');
SELECT throws_ok($$SELECT hold_id FROM credits.holds$$, '42501', 'permission denied for table holds',
                 'the app role cannot read holds');
SELECT throws_ok(format('SELECT credits.credit_release(%s)', current_setting('rls_t.tb_hold')),
                 '42501', 'org "tb" is not the org of this session',
                 'credit_release of another org''s hold, by its id: refused by the function (42501)');
SELECT lives_ok($$SELECT * FROM credits.credit_debit('ta', 'u-ta', 'gpt-4o', 1)$$,
                'credit_debit for the session''s org works');
SELECT lives_ok($$SELECT * FROM credits.allowed_models('ta')$$,
                'allowed_models for the session''s org works');
RESET ROLE;
SELECT throws_ok(
    $$SELECT credits.credit_settle((SELECT hold_id FROM credits.holds WHERE org_id = 'tb' AND status = 'open'), 1, 1)$$,
    '42501', NULL, 'settling another org''s hold: 42501');
SELECT throws_ok(
    $$SELECT credits.credit_release((SELECT hold_id FROM credits.holds WHERE org_id = 'tb' AND status = 'open'))$$,
    '42501', NULL, 'releasing another org''s hold: 42501');

-- admins are confined too
SET LOCAL ROLE rls_admin_t;
SELECT throws_ok($$SELECT credits.add_member('tb', 'x')$$, '42501', NULL, 'add_member to another org: 42501');
SELECT throws_ok($$SELECT * FROM credits.recharge('tb')$$, '42501', NULL, 'recharge of another org: 42501');
SELECT throws_ok($$SELECT credits.set_plan('tb', 5)$$, '42501', NULL, 'set_plan of another org: 42501');
SELECT throws_ok($$SELECT credits.enable_provider('tb', 'google')$$, '42501', NULL,
                 'enable_provider for another org: 42501');
SELECT throws_ok($$SELECT * FROM credits.create_org('tc')$$, '42501', NULL,
                 'create_org of another org: 42501');
SELECT throws_ok($$INSERT INTO credits.members (org_id, user_id) VALUES ('tb', 'y')$$, '42501', NULL,
                 'plain INSERT of another org''s member: 42501 (row-level security)');
SELECT is((SELECT count(*) FROM credits.members WHERE org_id = 'tb')::int, 0,
          'an admin does not see another org''s members');
SELECT lives_ok($$UPDATE credits.members SET cap = 1 WHERE org_id = 'tb'$$,
                'an UPDATE of another org''s members ...');
RESET ROLE;
SELECT is((SELECT cap FROM credits.members WHERE org_id = 'tb' AND user_id = 'u-tb'), NULL::credit,
          '... changes nothing');
SET LOCAL ROLE rls_admin_t;
SELECT lives_ok($$SELECT credits.add_member('ta', 'new-ta')$$, 'add_member to the session''s org works');
SELECT lives_ok($$SELECT * FROM credits.recharge('ta')$$, 'recharge of the session''s org works');
SELECT is((SELECT count(*) FROM credits.pool_status)::int, 1, 'an admin''s pool_status shows one org');
RESET ROLE;

-- the owner (and superusers) are not filtered
SELECT is((SELECT count(DISTINCT org_id) FROM credits.ledger WHERE org_id IN ('ta', 'tb'))::int, 2,
          'the tables'' owner sees every org');

-- and without the setting, everything works again
RESET credits.org_id;
SET LOCAL ROLE rls_app_t;
SELECT lives_ok($$SELECT * FROM credits.credit_debit('tb', 'u-tb', 'gpt-4o', 1)$$,
                'unset again: any org');
RESET ROLE;
SET LOCAL ROLE rls_reader_t;
SELECT is((SELECT count(DISTINCT org_id) FROM credits.pool_status WHERE org_id IN ('ta', 'tb'))::int, 2,
          'unset again: a reader sees every org');
RESET ROLE;

-- the policies exist on every table with an org_id, and RLS is enabled there
SELECT results_eq(
    $$SELECT tablename::text COLLATE "default" FROM pg_policies
       WHERE schemaname = 'credits' AND policyname = 'tenant_isolation' ORDER BY 1$$,
    $$VALUES ('events'), ('grant_draws'), ('grants'), ('holds'), ('ledger'), ('member_usage'),
             ('members'), ('org_providers'), ('orgs'), ('periods'), ('pool_stripes'), ('pools'),
             ('team_spend'), ('teams')$$,
    'a tenant_isolation policy on each of the 14 tables of org data');
SELECT results_eq(
    $$SELECT c.relname::text COLLATE "default" FROM pg_class c
       WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind = 'r' AND c.relrowsecurity
       ORDER BY 1$$,
    $$SELECT tablename::text COLLATE "default" FROM pg_policies
       WHERE schemaname = 'credits' AND policyname = 'tenant_isolation' ORDER BY 1$$,
    'row-level security enabled on those tables, and only those');
SELECT is_empty(
    $$SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
       WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind = 'r'
         AND a.attname = 'org_id' AND NOT a.attisdropped AND NOT c.relrowsecurity$$,
    'every table with an org_id column has row-level security');
SELECT ok((SELECT 'security_invoker=true' = ANY(reloptions) FROM pg_class
            WHERE oid = 'credits.pool_status'::regclass),
          'pool_status reads with the caller''s privileges');
SELECT is_empty($$SELECT * FROM credits.verify()$$, 'verify() is clean');

SELECT * FROM finish();
ROLLBACK;
