-- pgTAP: the backend's configuration cache.  An org's members are cached
-- all at once (up to 1024; a bigger org member by member), users who are
-- not members are answered from the cache too, and every change to
-- members, orgs, org_providers or models is seen by the next statement.
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(14);

SELECT org_id FROM credits.create_org('cs', allowance_per_user => 100);
SELECT credits.enable_provider('cs', 'openai');
SELECT credits.add_member('cs', 'u' || i) FROM generate_series(1, 3) i;

SELECT org_id FROM credits.create_org('cb', allowance_per_user => 1);
SELECT credits.enable_provider('cb', 'openai');
SELECT count(credits.add_member('cb', 'u' || i)) FROM generate_series(1, 1100) i;

-- a small org: all its members at once
SELECT is(credits.resolve_model('cs', 'u2', 'gpt-4o'), 'gpt-4o', 'a member of a small org');
SELECT throws_ok($$SELECT credits.resolve_model('cs', 'nobody', 'gpt-4o')$$, 'UC005', NULL,
                 'a user who is not a member: UC005');
SELECT credits.add_member('cs', 'nobody');
SELECT is(credits.resolve_model('cs', 'nobody', 'gpt-4o'), 'gpt-4o',
          '... until added: the next statement sees the new member');
SELECT credits.remove_member('cs', 'u3');
SELECT throws_ok($$SELECT credits.resolve_model('cs', 'u3', 'gpt-4o')$$, 'UC005', NULL,
                 'a removed member: UC005 at once');
SELECT credits.add_member('cs', 'u1', cap => 0);
SELECT is(credits.resolve_model('cs', 'u1', 'gpt-4o'), 'gpt-4o-mini',
          'a new cap of 0 grays premium models out for the member at once');

-- an org with more than 1024 members: member by member
SELECT is(credits.resolve_model('cb', 'u1050', 'gpt-4o'), 'gpt-4o', 'a member of a big org');
SELECT is(credits.resolve_model('cb', 'u7', 'gpt-4o'), 'gpt-4o', 'another one');
SELECT throws_ok($$SELECT credits.resolve_model('cb', 'u1101', 'gpt-4o')$$, 'UC005', NULL,
                 'a user who is not a member of the big org: UC005');
SELECT credits.add_member('cb', 'u1101');
SELECT is(credits.resolve_model('cb', 'u1101', 'gpt-4o'), 'gpt-4o', '... until added');
SELECT is((SELECT charged FROM credits.credit_debit('cb', 'u1050', 'gpt-4o', 4000)),
          '1'::credit, 'a debit by a member of the big org');

-- orgs, providers and models
SELECT credits.disable_provider('cs', 'openai');
SELECT throws_ok($$SELECT credits.resolve_model('cs', 'u2', 'gpt-4o')$$, 'UC003', NULL,
                 'a provider disabled: UC003 at once');
SELECT credits.enable_provider('cs', 'openai');
SELECT is(credits.resolve_model('cs', 'u2', 'gpt-4o'), 'gpt-4o', '... and enabled again');
SELECT credits.upsert_model('openai', 'gpt-cache-test', 1, 1);
SELECT is(credits.resolve_model('cs', 'u2', 'gpt-cache-test'), 'gpt-cache-test',
          'a new model is seen at once');
DELETE FROM credits.orgs WHERE org_id = 'cb';
SELECT throws_ok($$SELECT credits.resolve_model('cb', 'u7', 'gpt-4o')$$, 'UC004', NULL,
                 'a deleted org: UC004 at once');

SELECT * FROM finish();
ROLLBACK;
