-- The seed scenario, step by step.  Run by `make demo`.
\pset null '(null)'
\pset border 2
\set ECHO queries
\echo
\echo '== 1. Install the extension; the default catalog ships three providers'
CREATE EXTENSION credits;
SELECT provider, model, display_name, is_fallback, input_price, output_price
  FROM credits.models ORDER BY provider, is_fallback, model;

\echo
\echo '== 2. An org "acme" with alice and bob, 100 credits each, OpenAI and Anthropic enabled'
SELECT org_id, allowance, available FROM credits.create_org('acme', 'Acme Inc', allowance_per_user => 100);
SELECT credits.enable_provider('acme', 'openai');
SELECT credits.enable_provider('acme', 'anthropic');
SELECT credits.add_member('acme', 'alice');
SELECT credits.add_member('acme', 'bob');
SELECT org_id, allowance, allowance_used, available, exhausted FROM credits.pool_status;

\echo
\echo '== 3. What alice may use: every model of the enabled providers (no Google)'
SELECT * FROM credits.allowed_models('acme', 'alice');
SELECT credits.cost('gpt-4o', input_tokens => 12000, output_tokens => 3000) AS "cost of a gpt-4o call",
       credits.resolve_model('acme', 'alice', 'gpt-4o') AS "alice asks for gpt-4o, calls";
