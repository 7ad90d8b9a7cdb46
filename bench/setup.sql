-- Data set of make bench: 1000 orgs of 10 members (spread), one hot org
-- with 100 members and a pool that never runs dry, one small org that runs
-- dry during the run, the same in the naive schema, and the floor tables.
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
VACUUM ANALYZE;
