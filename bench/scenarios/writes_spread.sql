\set o random(1, 1000)
\set u random(1, 10)
\set m random(1, 4)
\set tin random(100, 4000)
\set tout random(10, 1000)
\set cost case when :m = 1 then 250 * :tin + 1000 * :tout when :m = 2 then 15 * :tin + 60 * :tout when :m = 3 then 300 * :tin + 1500 * :tout else 100 * :tin + 500 * :tout end
WITH p AS (
    UPDATE floor_pools SET allowance_used = allowance_used + credits._micro(:cost),
                           calls = calls + 1
     WHERE org_id = 'org' || :o
    RETURNING period_start,
              allowance - allowance_used + topup
                  - reserved AS available),
m AS (
    UPDATE floor_member_usage SET used = used + credits._micro(:cost)
     WHERE org_id = 'org' || :o AND user_id = 'u' || :u
    RETURNING used)
INSERT INTO floor_ledger (org_id, kind, period_start, user_id, model, input_tokens, output_tokens,
                          cost, charged, shortfall, from_allowance, from_topup, available_after,
                          request_id)
SELECT 'org' || :o, 'debit', p.period_start, 'u' || :u,
       (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[:m], :tin, :tout,
       credits._micro(:cost), credits._micro(:cost), '0', credits._micro(:cost), '0', p.available,
       NULL
  FROM p, m
RETURNING charged;
