\set o random(1, 1000)
\set u random(1, 10)
SELECT * FROM floor_allowed WHERE org_id = 'org' || :o AND user_id = 'u' || :u;
