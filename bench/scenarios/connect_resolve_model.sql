\set o random(1, 1000)
\set u random(1, 10)
SELECT credits.resolve_model('org' || :o, 'u' || :u, 'gpt-4o');
