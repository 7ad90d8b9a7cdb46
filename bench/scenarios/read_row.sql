\set o random(1, 1000)
\set u random(1, 10)
SELECT model FROM floor_resolve WHERE org_id = 'org' || :o AND requested = 'gpt-4o';
