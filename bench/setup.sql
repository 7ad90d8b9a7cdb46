-- Data set of make bench: 1000 orgs of 10 members (spread), one hot org
-- with 100 members and a pool that never runs dry, one small org that runs
-- dry during the run, the same in the naive schema, and the floor tables
-- (copies of the extension's tables and of its answers, for the floors).
SET search_path = public, credits;
SELECT count(*) FROM (
    SELECT credits.create_org('org' || i, allowance_per_user => 1000000) FROM generate_series(1, 1000) i) s;
INSERT INTO credits.org_providers SELECT 'org' || i, p FROM generate_series(1, 1000) i,
    unnest(ARRAY['openai', 'anthropic']) p;
INSERT INTO credits.members (org_id, user_id) SELECT 'org' || i, 'u' || j
  FROM generate_series(1, 1000) i, generate_series(1, 10) j;

SELECT org_id FROM credits.create_org('hot', allowance_per_user => 1000000000);
SELECT org_id FROM credits.create_org('dry', allowance_per_user => 20);
INSERT INTO credits.org_providers SELECT o, p FROM unnest(ARRAY['hot', 'dry']) o,
    unnest(ARRAY['openai', 'anthropic']) p;
INSERT INTO credits.members (org_id, user_id) SELECT o, 'u' || j
  FROM unnest(ARRAY['hot', 'dry']) o, generate_series(1, 100) j;

-- the hot org again, its 100 members all in one team with a cap it never
-- reaches: a capped team's members are charged under the pool lock, where
-- the team's cap is checked (debit_team)
SELECT org_id FROM credits.create_org('team', allowance_per_user => 1000000000);
INSERT INTO credits.org_providers SELECT 'team', p FROM unnest(ARRAY['openai', 'anthropic']) p;
INSERT INTO credits.members (org_id, user_id) SELECT 'team', 'u' || j FROM generate_series(1, 100) j;
SELECT credits.create_team('team', 'everyone', 1000000000000);
UPDATE credits.members SET team_id = 'everyone' WHERE org_id = 'team';

-- the naive baseline's copy
INSERT INTO naive.orgs SELECT org_id FROM credits.orgs;
INSERT INTO naive.org_providers SELECT org_id, provider FROM credits.org_providers;
INSERT INTO naive.members (org_id, user_id) SELECT org_id, user_id FROM credits.members;
INSERT INTO naive.balances SELECT org_id, available::numeric FROM credits.pool_status;

-- floors
CREATE TABLE floor_hot (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO floor_hot VALUES (1, 0);
CREATE TABLE floor_spread (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO floor_spread SELECT i, 0 FROM generate_series(1, 1000) i;

-- writes_spread: the three writes of a debit of an org that is one balance
-- (its pools row, its member's member_usage row, a ledger entry), in plain
-- SQL, on copies of the real tables: same columns and types, same rows,
-- same indexes, CHECK constraints, defaults and identity (LIKE ... INCLUDING
-- ALL), same fillfactor (LIKE does not copy storage parameters).  Not copied:
-- the foreign keys (a write that keeps its key checks none) and the ledger's
-- append-only triggers (UPDATE, DELETE and TRUNCATE only).
CREATE TABLE floor_pools (LIKE credits.pools INCLUDING ALL EXCLUDING COMMENTS)
    WITH (fillfactor = 50);
INSERT INTO floor_pools SELECT * FROM credits.pools;
CREATE TABLE floor_member_usage (LIKE credits.member_usage INCLUDING ALL EXCLUDING COMMENTS)
    WITH (fillfactor = 50);
INSERT INTO floor_member_usage (org_id, user_id) SELECT org_id, user_id FROM credits.members;
CREATE TABLE floor_ledger (LIKE credits.ledger INCLUDING ALL EXCLUDING COMMENTS);

-- read_rows: what allowed_models(org, user) returns for each member of the
-- 1,000 orgs, precomputed: one table keyed by (org_id, user_id), with the
-- function's columns, each user's rows stored together in its order
CREATE TABLE floor_allowed AS
SELECT m.org_id, m.user_id, a.provider, a.model, a.display_name, a.is_fallback, a.available,
       a.reason, a.input_price, a.output_price
  FROM credits.members m,
       credits.allowed_models(m.org_id, m.user_id) WITH ORDINALITY a
 WHERE m.org_id LIKE 'org%'
 ORDER BY m.org_id, m.user_id, a.ordinality;
CREATE INDEX floor_allowed_key ON floor_allowed (org_id, user_id);

-- read_row: what resolve_model(org, user, model) returns, precomputed for
-- each org and model of its providers (no member of these orgs has a cap,
-- so the answer does not depend on the user): one row per primary key
CREATE TABLE floor_resolve (org_id text, requested text, model text NOT NULL,
                            PRIMARY KEY (org_id, requested));
INSERT INTO floor_resolve
SELECT o.org_id, m.model, credits.resolve_model(o.org_id, 'u1', m.model)
  FROM credits.orgs o
  JOIN credits.org_providers op ON op.org_id = o.org_id
  JOIN credits.models m ON m.provider = op.provider AND m.active
 WHERE o.org_id LIKE 'org%';
VACUUM ANALYZE;
