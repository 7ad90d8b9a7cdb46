-- pgTAP: the charge path keeps PostgreSQL's semantics whatever a DBA adds,
-- calls composed in one statement see each other, and the extension sets
-- no planner switch.
--
-- Each DBA change below (an expression index, a partial index, a column
-- with a NOT NULL DEFAULT, row and statement triggers, a CHECK constraint)
-- is made on every table a charge writes (ledger, pools, pool_stripes,
-- member_usage), then debits, holds and settles run on the fast (striped)
-- and slow paths.  The changes are rolled back with the test.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(41);

-- ---------------------------------------------------------------------------
-- Fixtures
--   wp   100 per user: ann, ben (cap 50)  -> pool 200; openai; 4 stripes
--   wr   100: rae                           -> pool 100; openai (refused by a CHECK)
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM credits.create_org('wp', allowance_per_user => 100);
    UPDATE credits.orgs SET stripes = 4 WHERE org_id = 'wp';
    PERFORM credits.enable_provider('wp', 'openai');
    PERFORM credits.add_member('wp', 'ann');
    PERFORM credits.add_member('wp', 'ben', cap => 50);
    PERFORM credits.create_org('wr', allowance_per_user => 100);
    PERFORM credits.enable_provider('wr', 'openai');
    PERFORM credits.add_member('wr', 'rae');
END
$$;

CREATE TABLE public.audit (tab text, op text, level text, n bigint GENERATED ALWAYS AS IDENTITY);
CREATE FUNCTION public.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.audit (tab, op, level) VALUES (TG_TABLE_NAME, TG_OP, TG_LEVEL);
    RETURN NULL;
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ledger', 'pools', 'pool_stripes', 'member_usage'] LOOP
        EXECUTE format('ALTER TABLE credits.%I ADD COLUMN region text NOT NULL DEFAULT ''eu''', t);
        EXECUTE format('CREATE INDEX ON credits.%I ((org_id || ''/'' || region))', t);
        EXECUTE format('CREATE INDEX ON credits.%I (org_id) WHERE org_id <> ''none''', t);
        EXECUTE format('CREATE TRIGGER audit_row AFTER INSERT OR UPDATE ON credits.%I'
                       ' FOR EACH ROW EXECUTE FUNCTION public.audit_row()', t);
        EXECUTE format('CREATE TRIGGER audit_stmt AFTER INSERT OR UPDATE ON credits.%I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION public.audit_row()', t);
    END LOOP;
END
$$;
ALTER TABLE credits.ledger ADD CONSTRAINT not_wr CHECK (org_id <> 'wr') NOT VALID;
ALTER TABLE credits.member_usage ADD COLUMN used_twice credits.credit
    GENERATED ALWAYS AS (used * 2) STORED;

-- a slow-path debit (the first of the org), a capped member's, a fast one
SELECT lives_ok($$SELECT credits.credit_debit('wp', 'ann', 'gpt-4o', 40000, 0, 'w1')$$,
    'a debit works with an expression index, a partial index and a new NOT NULL DEFAULT column on every table it writes');
SELECT lives_ok($$SELECT credits.credit_debit('wp', 'ben', 'gpt-4o', 40000, 0, 'w2')$$,
    'so does a capped member''s debit (member_usage written)');
SELECT is((SELECT stripes FROM credits.pools WHERE org_id = 'wp'), 4, 'the pool is split over 4 stripes');
SELECT lives_ok($$SELECT credits.credit_debit('wp', 'ann', 'gpt-4o', 4000, 0, 'w3')$$,
    'a debit charged on a stripe works too');

SELECT is((SELECT count(*) FROM credits.ledger WHERE org_id = 'wp' AND region = 'eu'),
          (SELECT count(*) FROM credits.ledger WHERE org_id = 'wp'),
          'every ledger entry got the new column''s default');
SELECT is((SELECT count(*) FROM credits.ledger WHERE org_id = 'wp' AND request_id LIKE 'w_'), 3::bigint,
          'three debits in the ledger');
SELECT is((SELECT count(*) FROM public.audit WHERE tab = 'ledger' AND op = 'INSERT' AND level = 'ROW'),
          (SELECT count(*) FROM credits.ledger WHERE org_id = 'wp' AND request_id LIKE 'w_'),
          'the row trigger fired once per ledger entry');
SELECT ok((SELECT count(*) FROM public.audit WHERE tab = 'pools' AND op = 'UPDATE' AND level = 'ROW') >= 2,
          'the row trigger fired for the pool''s updates');
SELECT ok((SELECT count(*) FROM public.audit WHERE tab = 'member_usage' AND level = 'ROW') >= 1,
          'the row trigger fired for member_usage');
SELECT ok((SELECT count(*) FROM public.audit WHERE tab = 'pool_stripes' AND op = 'UPDATE' AND level = 'ROW') >= 1,
          'the row trigger fired for the stripe the fast debit charged');
SELECT ok((SELECT count(*) FROM public.audit WHERE tab = 'ledger' AND level = 'STATEMENT') >= 3,
          'the statement trigger fired for each ledger insert');
SELECT is((SELECT used_twice FROM credits.member_usage WHERE org_id = 'wp' AND user_id = 'ben'),
          (SELECT used * 2 FROM credits.member_usage WHERE org_id = 'wp' AND user_id = 'ben'),
          'a stored generated column is computed on the charge path');

-- the expression and partial indexes hold every row (amcheck-free check:
-- an index-only lookup through each finds the rows)
SELECT is((SELECT count(*) FROM credits.ledger WHERE org_id || '/' || region = 'wp/eu'),
          (SELECT count(*) FROM credits.ledger WHERE org_id = 'wp'),
          'the expression index finds every ledger entry');

-- holds and settles
SELECT lives_ok($$SELECT credits.credit_settle((credits.credit_reserve('wp', 'ann', 'gpt-4o', 4000, 100)).hold_id, 4000, 50)$$,
    'a reserve settled in the same statement: the settle sees the hold (composed calls)');
SELECT is((SELECT kind FROM credits.ledger WHERE org_id = 'wp' ORDER BY entry_id DESC LIMIT 1), 'settle',
          'the settle is in the ledger');
SELECT is((SELECT credits.credit_release((credits.credit_reserve('wp', 'ann', 'gpt-4o', 4000, 100)).hold_id)),
          '1.1'::credits.credit, 'a reserve released in the same statement releases what it reserved');
SELECT is((SELECT count(*) FROM (SELECT credits.credit_debit('wp', 'ann', 'gpt-4o', 4000, 0, 'w4')
                                 UNION ALL
                                 SELECT credits.credit_debit('wp', 'ann', 'gpt-4o', 4000, 0, 'w4')) d),
          2::bigint, 'the same request twice in one statement ...');
SELECT is((SELECT count(*) FROM credits.ledger WHERE org_id = 'wp' AND request_id = 'w4'), 1::bigint,
          '... is charged once: the second call replays the first');

-- a default changed after this session's inserts planned the ledger's
-- defaults: the next insert uses the new one (the cached plan is dropped),
-- and a column's default is planned when an insert first leaves it out
ALTER TABLE credits.ledger ALTER COLUMN region SET DEFAULT 'us';
ALTER TABLE credits.ledger ADD COLUMN shard int DEFAULT 7;
SELECT lives_ok($$SELECT credits.credit_debit('wp', 'ann', 'gpt-4o', 4000, 0, 'w5')$$,
    'a debit after the ledger''s defaults changed');
SELECT results_eq($$SELECT region, shard FROM credits.ledger WHERE org_id = 'wp' AND request_id = 'w5'$$,
                  $$VALUES ('us'::text, 7)$$,
                  '... takes the changed default and the new column''s');
ALTER TABLE credits.ledger ALTER COLUMN region SET DEFAULT 'eu';

-- a CHECK constraint a DBA added refuses an org: 23514, nothing written
SELECT throws_ok($$SELECT credits.credit_debit('wr', 'rae', 'gpt-4o', 40000)$$, '23514', NULL,
    'a debit the ledger''s CHECK refuses fails with 23514');
SELECT is((SELECT allowance_used FROM credits.pools WHERE org_id = 'wr'), '0'::credits.credit,
          '... and charges nothing');
SELECT is((SELECT count(*) FROM credits.ledger WHERE org_id = 'wr' AND kind = 'debit'), 0::bigint,
          '... and writes no entry');

-- a BEFORE trigger that skips a pool update is an error, never a lost charge
CREATE FUNCTION public.skip_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER skip_wr BEFORE UPDATE ON credits.pools FOR EACH ROW
    WHEN (OLD.org_id = 'wr') EXECUTE FUNCTION public.skip_row();
ALTER TABLE credits.ledger DROP CONSTRAINT not_wr;
SELECT throws_ok($$SELECT credits.credit_debit('wr', 'rae', 'gpt-4o', 40000)$$, '09000', NULL,
    'a BEFORE UPDATE trigger that skips the pool''s row makes the debit fail (09000)');
SELECT is((SELECT count(*) FROM credits.ledger WHERE org_id = 'wr' AND kind = 'debit'), 0::bigint,
          '... and nothing is written');
DROP TRIGGER skip_wr ON credits.pools;
CREATE TRIGGER skip_ledger_wr BEFORE INSERT ON credits.ledger FOR EACH ROW
    WHEN (NEW.org_id = 'wr') EXECUTE FUNCTION public.skip_row();
SELECT throws_ok($$SELECT credits.credit_debit('wr', 'rae', 'gpt-4o', 40000)$$, '09000', NULL,
    'a BEFORE INSERT trigger that skips the ledger entry makes the debit fail (09000)');
SELECT is((SELECT allowance_used FROM credits.pools WHERE org_id = 'wr'), '0'::credits.credit,
          '... and the pool is not charged');
DROP TRIGGER skip_ledger_wr ON credits.ledger;

SELECT lives_ok($$SELECT credits.credit_debit('wr', 'rae', 'gpt-4o', 4000)$$,
    'the org is charged once the trigger is gone');

-- a BEFORE UPDATE row trigger that changes the row, on a one-balance debit's
-- rows (which are otherwise updated without a lock first): the rows are
-- locked for it, it fires once per written row, and its change is written
CREATE TABLE public.before_seen (tab text, org_id text);
CREATE FUNCTION public.mark_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.before_seen VALUES (TG_TABLE_NAME, NEW.org_id);
    NEW.region := 'before';
    RETURN NEW;
END
$$;
CREATE TRIGGER mark_pools BEFORE UPDATE ON credits.pools FOR EACH ROW
    WHEN (OLD.org_id = 'wr') EXECUTE FUNCTION public.mark_row();
CREATE TRIGGER mark_usage BEFORE UPDATE ON credits.member_usage FOR EACH ROW
    WHEN (OLD.org_id = 'wr') EXECUTE FUNCTION public.mark_row();
SELECT is((SELECT charged FROM credits.credit_debit('wr', 'rae', 'gpt-4o', 4000)), '1'::credits.credit,
          'a one-balance debit whose rows have BEFORE UPDATE triggers');
SELECT results_eq($$SELECT tab, count(*) FROM public.before_seen GROUP BY tab ORDER BY tab$$,
                  $$VALUES ('member_usage'::text, 1::bigint), ('pools', 1)$$,
                  '... fires them once per written row');
SELECT results_eq($$SELECT (SELECT region FROM credits.pools WHERE org_id = 'wr'),
                           (SELECT region FROM credits.member_usage
                             WHERE org_id = 'wr' AND user_id = 'rae')$$,
                  $$VALUES ('before'::text, 'before'::text)$$,
                  '... and writes what they changed');
DROP TRIGGER mark_pools ON credits.pools;
DROP TRIGGER mark_usage ON credits.member_usage;

-- a read-only transaction (a hot standby's included) refuses every charge
-- with 25006 before anything else happens, as INSERT or UPDATE would
SAVEPOINT read_only;
SET LOCAL transaction_read_only = on;
SELECT throws_ok($$SELECT credits.credit_debit('wp', 'ann', 'gpt-4o', 4000)$$, '25006', NULL,
    'credit_debit in a read-only transaction is 25006');
SELECT throws_ok($$SELECT credits.credit_reserve('wp', 'ann', 'gpt-4o', 4000, 100)$$, '25006', NULL,
    'credit_reserve in a read-only transaction is 25006');
SELECT throws_ok($$SELECT credits.credit_settle(1, 10, 10)$$, '25006', NULL,
    'credit_settle in a read-only transaction is 25006');
SELECT throws_ok($$SELECT credits.credit_release(1)$$, '25006', NULL,
    'credit_release in a read-only transaction is 25006');
ROLLBACK TO SAVEPOINT read_only;

SELECT is((SELECT count(*) FROM credits.verify()), 0::bigint, 'verify() is clean after all of it');

-- no planner switches anywhere in the extension
SELECT is((SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
            JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'credits'
            WHERE EXISTS (SELECT 1 FROM unnest(p.proconfig) c
                          WHERE c ~ '^(enable_|jit|random_page_cost|seq_page_cost|cpu_)')),
          0::bigint, 'no function of the extension sets a planner switch (proconfig)');
SELECT is((SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
            JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'credits'
            WHERE p.prosecdef AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')),
          0::bigint, 'every SECURITY DEFINER function pins its search_path');
SELECT is(current_setting('enable_seqscan'), 'on', 'a call leaves enable_seqscan as it was ...');
SELECT is((SELECT current_setting('enable_seqscan') FROM credits.allowed_models('wp', 'ann') LIMIT 1), 'on',
          '... and does not change it during a call either');
SELECT is((SELECT setting FROM pg_settings WHERE name = 'jit'), current_setting('jit'),
          'jit is left alone');

SELECT * FROM finish();
ROLLBACK;
