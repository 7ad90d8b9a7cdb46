
\set u random(1, 100)
\set m random(1, 4)
\set tin random(100, 4000)
\set tout random(10, 1000)
SELECT charged FROM credits.credit_debit('team', 'u' || :u,
    (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[:m], :tin, :tout);
