\set o random(1, 1000)
SELECT * FROM credits.pool_status WHERE org_id = 'org' || :o;
