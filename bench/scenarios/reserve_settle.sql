\set o random(1, 1000)
\set u random(1, 10)
\set tin random(100, 4000)
\set tout random(10, 1000)
SELECT hold_id FROM credits.credit_reserve('org' || :o, 'u' || :u, 'claude-sonnet-4-5', :tin, 2000) \gset
SELECT charged FROM credits.credit_settle(:hold_id, :tin, :tout);
