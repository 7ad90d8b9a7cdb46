-- The seed scenario, step by step.  Run by `make demo`.
\pset null '-'
\pset border 2
\pset footer off
\set ON_ERROR_STOP on

\echo
\echo '== 1. CREATE EXTENSION credits: the default catalog ships three providers'
\echo '      (prices in credits per 1M tokens; 1 credit = US$0.01 of list price)'
CREATE EXTENSION credits;
SELECT provider, model, display_name, is_fallback, input_price, output_price
  FROM credits.models ORDER BY provider, is_fallback, model;

\echo
\echo '== 2. Org "acme": alice and bob bring 100 credits each; OpenAI and Anthropic enabled'
SELECT org_id, allowance, available
  FROM credits.create_org('acme', 'Acme Inc', allowance_per_user => 100, period => '1 month');
\o /dev/null
SELECT credits.enable_provider('acme', 'openai'), credits.enable_provider('acme', 'anthropic');
SELECT credits.add_member('acme', 'alice'), credits.add_member('acme', 'bob');
\o
SELECT org_id, period_start::date, period_end::date, allowance, available FROM credits.pool_status;

\echo
\echo '== 3. What alice may use now: every model of the enabled providers (no Google)'
SELECT provider, model, is_fallback, available, reason FROM credits.allowed_models('acme', 'alice');

\echo
\echo '== 4. Completed calls are charged to the pool (request_id makes a retry harmless)'
SELECT model, cost, charged, available, replayed
  FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 40000, 8000, request_id => 'req-1');
SELECT model, cost, charged, available, replayed
  FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 40000, 8000, request_id => 'req-1');
SELECT model, cost, charged, available
  FROM credits.credit_debit('acme', 'bob', 'claude-sonnet-4-5', 20000, 4000);

\echo
\echo '== 5. A streaming call: reserve the estimate, stream, settle the real usage'
SELECT hold_id FROM credits.credit_reserve('acme', 'bob', 'claude-sonnet-4-5', 10000, 8000) \gset
SELECT hold_id, model, fell_back, reserved, status, expires_at - created_at AS ttl
  FROM credits.holds WHERE hold_id = :hold_id;
SELECT model, cost, charged, available FROM credits.credit_settle(:hold_id, 10000, 2500);

\echo
\echo '== 6. A big call runs the pool dry: charged what was left, the rest is a shortfall'
SELECT model, cost, charged, shortfall, available, exhausted
  FROM credits.credit_debit('acme', 'alice', 'claude-opus-4-1', 100000, 20000);
SELECT kind, payload->>'threshold' AS threshold, payload->>'available' AS available
  FROM credits.events WHERE org_id = 'acme' ORDER BY event_id;

\echo
\echo '== 7. Credits exhausted: premium models are grayed out, one fallback per provider remains'
SELECT provider, model, is_fallback, available, reason FROM credits.allowed_models('acme', 'alice');
SELECT credits.resolve_model('acme', 'alice', 'gpt-4o') AS "alice asks for gpt-4o",
       credits.resolve_model('acme', 'bob', 'claude-opus-4-1') AS "bob asks for claude-opus-4-1";

\echo
\echo '== 8. Work goes on with the fallbacks, free of charge'
SELECT model, cost, charged, shortfall, available
  FROM credits.credit_debit('acme', 'alice', 'gpt-4o-mini', 50000, 10000);
SELECT model, cost, charged, shortfall, available
  FROM credits.credit_debit('acme', 'bob', 'claude-haiku-4-5', 50000, 10000);
\echo '   a streaming reserve on gpt-4o is switched to gpt-4o-mini:'
SELECT hold_id FROM credits.credit_reserve('acme', 'alice', 'gpt-4o', 5000, 2000) \gset
SELECT hold_id, requested_model, model, fell_back, reserved FROM credits.holds WHERE hold_id = :hold_id;
SELECT model, cost, charged, shortfall FROM credits.credit_settle(:hold_id, 5000, 1500);

\echo
\echo '== 9. The usage report for the period'
SELECT * FROM credits.usage('acme');

\echo
\echo '== 10. The admin recharges the period: premium models are back'
SELECT org_id, allowance, allowance_used, topup, available, exhausted FROM credits.recharge('acme');
SELECT model, available, reason FROM credits.allowed_models('acme', 'alice')
 WHERE model IN ('gpt-4o', 'claude-opus-4-1');

\echo
\echo '== 11. ... and buys 500 extra credits valid 90 days: used after the allowance, kept across periods'
SELECT org_id, allowance, topup, available
  FROM credits.recharge('acme', 500, expires_at => now() + interval '90 days', note => 'PO-1234');
SELECT model, cost, charged, available
  FROM credits.credit_debit('acme', 'alice', 'claude-opus-4-1', 100000, 20000);
SELECT grant_id, amount, remaining, expires_at::date FROM credits.grants WHERE org_id = 'acme';

\echo
\echo '== 12. A team runs out; the rest of the org keeps its premium models'
\echo '      team "research" (bob and the new member carol) may draw 25 credits a period together'
\o /dev/null
SELECT credits.add_member('acme', 'carol');
SELECT credits.create_team('acme', 'research', cap => 25);
SELECT credits.set_member_team('acme', 'bob', 'research'), credits.set_member_team('acme', 'carol', 'research');
\o
SELECT user_id, team_id FROM credits.members WHERE org_id = 'acme' ORDER BY user_id;
\echo '   bob draws 18 of the 25; carol''s call is charged the 7 the cap leaves, the rest is a shortfall:'
SELECT model, cost, charged, shortfall, available
  FROM credits.credit_debit('acme', 'bob', 'gpt-4o', 40000, 8000);
SELECT model, cost, charged, shortfall, available
  FROM credits.credit_debit('acme', 'carol', 'claude-sonnet-4-5', 20000, 4000);
\echo '   carol (in the team): premium grayed out by the team''s cap, until the next period starts'
SELECT model, is_fallback, available, reason, limited_by, resets_at
  FROM credits.allowed_models('acme', 'carol');
\echo '   alice (in no team): the pool still has credits, every model is available'
SELECT model, is_fallback, available, reason, limited_by
  FROM credits.allowed_models('acme', 'alice');
SELECT credits.resolve_model('acme', 'carol', 'gpt-4o') AS "carol asks for gpt-4o",
       credits.resolve_model('acme', 'alice', 'gpt-4o') AS "alice asks for gpt-4o";
\echo '   carol works on with the fallback, free of charge; alice is charged for gpt-4o as usual:'
SELECT model, cost, charged, shortfall, available
  FROM credits.credit_debit('acme', 'carol', 'gpt-4o-mini', 50000, 10000);
SELECT model, cost, charged, shortfall, available
  FROM credits.credit_debit('acme', 'alice', 'gpt-4o', 40000, 8000);
\echo '   per team: used is what the cap bounds this period; charged and shortfall come from the ledger'
SELECT * FROM credits.team_usage('acme');
\echo '   the admin raises the cap: premium models are back for the team at once'
\o /dev/null
SELECT credits.set_team_cap('acme', 'research', 50);
\o
SELECT model, available, reason, limited_by FROM credits.allowed_models('acme', 'carol')
 WHERE model IN ('gpt-4o', 'claude-opus-4-1');

\echo
\echo '== 13. The next billing period: pg_cron runs credits.reset_due() every minute'
\echo '      (here we ask for it as of one month from now)'
SELECT credits.reset_due(now() + interval '1 month') AS "orgs rolled over";
SELECT org_id, allowance, allowance_used, calls, shortfall FROM credits.periods;
SELECT org_id, allowance, allowance_used, topup, available FROM credits.pool_status;
\echo '   team usage starts again with the period, like the members'':'
SELECT team_id, cap, used FROM credits.team_usage('acme');

\echo
\echo '== 14. Org "globex" buys a prepaid plan: unused credits roll over, the pool recharges itself'
\echo '      dana and erin bring 100 credits each; globex is 10 days into its monthly period'
\o /dev/null
SELECT credits.create_org('globex', 'Globex Corp', allowance_per_user => 100,
                          billing_anchor => now() - interval '10 days');
SELECT credits.enable_provider('globex', 'openai'), credits.enable_provider('globex', 'anthropic');
SELECT credits.add_member('globex', 'dana'), credits.add_member('globex', 'erin');
\o
\echo '   up to 25 unused credits roll into the next period and last 2 periods;'
\echo '   when a charge takes available under 50, 100 credits are added (at most twice a period):'
\o /dev/null
SELECT credits.set_rollover('globex', max_amount => 25, periods => 2);
SELECT credits.set_auto_recharge('globex', below => 50, amount => 100, max_per_period => 2);
\o
SELECT org_id, rollover_max, rollover_periods, auto_recharge_below AS below,
       auto_recharge_amount AS amount, auto_recharge_max AS max_per_period
  FROM credits.orgs WHERE org_id = 'globex';
\echo '   the second call takes available from 100 to 40: the pool recharges in the same'
\echo '   transaction, and the call returns the available after the recharge'
SELECT model, cost, charged, available, exhausted
  FROM credits.credit_debit('globex', 'dana', 'gpt-4o', 200000, 50000);
SELECT model, cost, charged, available, exhausted
  FROM credits.credit_debit('globex', 'erin', 'claude-sonnet-4-5', 100000, 20000);
\echo '   the ledger: the auto_recharge grant is entered just before the call that triggered it'
SELECT entry_id, kind, user_id, charged, topup_change, available_after
  FROM credits.ledger WHERE org_id = 'globex' ORDER BY entry_id;
\echo '   the events: the 80 % threshold, then the auto_recharge a billing system invoices'
\echo '   from (LISTEN credits gets both at commit):'
SELECT kind, payload->>'threshold' AS threshold, payload->>'amount' AS amount, payload->>'below' AS below,
       payload->>'recharges_in_period' AS recharges_in_period,
       payload->>'max_per_period' AS max_per_period, payload->>'available' AS available
  FROM credits.events WHERE org_id = 'globex' ORDER BY event_id;
\echo '   the forecast: 160 credits in 10 days is 16 a day; the 140 left last about 8.75 days'
SELECT org_id, allowance_used, topup, available, round(burn_per_day::numeric, 2) AS burn_per_day,
       runs_out_at::date AS runs_out_at, period_end::date AS period_end,
       round((extract(epoch FROM runs_out_at - now()) / 86400)::numeric, 2) AS days_left
  FROM credits.pool_status WHERE org_id = 'globex';
\echo '   the period closes with 40 allowance unused: 25 of it (the maximum) rolls over,'
\echo '   as a grant that expires at the end of the next period but one'
SELECT credits.reset_due(as_of => (SELECT period_end FROM credits.pool_status
                                    WHERE org_id = 'globex')) AS "orgs rolled over";
SELECT payload->'rollover'->>'amount' AS rolled_over,
       (payload->'rollover'->>'expires_at')::timestamptz::date AS expires_at,
       payload->'previous'->>'allowance_used' AS previous_allowance_used
  FROM credits.events WHERE org_id = 'globex' AND kind = 'period_reset';
SELECT g.grant_id, l.kind, g.amount, g.remaining, g.expires_at::date
  FROM credits.grants g JOIN credits.ledger l USING (grant_id)
 WHERE g.org_id = 'globex' ORDER BY g.grant_id;
SELECT org_id, period_start::date, allowance, allowance_used, topup, available
  FROM credits.pool_status WHERE org_id = 'globex';

\echo
\echo '== 15. The ledger is the truth, and everything agrees with it'
SELECT kind, count(*) AS entries, sum(charged) AS charged
  FROM credits.ledger GROUP BY kind ORDER BY kind;
SELECT count(*) AS "verify(): violations" FROM credits.verify();
