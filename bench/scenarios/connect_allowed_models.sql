\set o random(1, 1000)
\set u random(1, 10)
SELECT * FROM credits.allowed_models('org' || :o, 'u' || :u);
