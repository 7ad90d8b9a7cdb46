-- pgTAP: the catalog (providers, models, prices) and credits.cost()
BEGIN;
SELECT plan(115);

-- ---------------------------------------------------------------------------
-- The default catalog
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT provider, display_name, shipped FROM credits.providers ORDER BY provider$$,
    $$VALUES ('anthropic'::text, 'Anthropic'::text, true),
             ('google', 'Google', true),
             ('openai', 'OpenAI', true)$$,
    'default catalog: three shipped providers');

SELECT results_eq(
    $$SELECT provider, model FROM credits.models WHERE is_fallback ORDER BY provider$$,
    $$VALUES ('anthropic'::text, 'claude-haiku-4-5'::text),
             ('google', 'gemini-2.0-flash'),
             ('openai', 'gpt-4o-mini')$$,
    'default catalog: the seed fallbacks, one per provider');

SELECT ok((SELECT bool_and(shipped) AND bool_and(active) FROM credits.models),
          'default catalog: every model is shipped and active');
SELECT ok(NOT EXISTS (SELECT 1 FROM credits.providers p
                      WHERE NOT EXISTS (SELECT 1 FROM credits.models m
                                         WHERE m.provider = p.provider AND NOT m.is_fallback)),
          'default catalog: every provider has at least one premium model');
SELECT results_eq(
    $$SELECT provider, input_price, output_price, request_price, is_fallback
        FROM credits.models WHERE model = 'gpt-4o'$$,
    $$VALUES ('openai'::text, '250'::credits.credit, '1000'::credits.credit,
              '0'::credits.credit, false)$$,
    'default catalog: gpt-4o is an openai premium model priced 250/1000');
SELECT results_eq(
    $$SELECT provider, input_price, output_price, request_price, is_fallback
        FROM credits.models WHERE model = 'gpt-4o-mini'$$,
    $$VALUES ('openai'::text, '15'::credits.credit, '60'::credits.credit,
              '0'::credits.credit, true)$$,
    'default catalog: gpt-4o-mini is the openai fallback priced 15/60');
SELECT is((SELECT display_name FROM credits.models WHERE model = 'gpt-4o'), 'GPT-4o',
          'default catalog: display names');

-- ---------------------------------------------------------------------------
-- add_provider
-- ---------------------------------------------------------------------------
SELECT lives_ok($$SELECT credits.add_provider('mistral')$$, 'add_provider: new provider');
SELECT results_eq(
    $$SELECT display_name, shipped FROM credits.providers WHERE provider = 'mistral'$$,
    $$VALUES ('mistral'::text, false)$$,
    'add_provider: display_name defaults to the provider id; not shipped');
SELECT lives_ok($$SELECT credits.add_provider('mistral', 'Mistral AI')$$,
                'add_provider: rename an existing provider');
SELECT is((SELECT display_name FROM credits.providers WHERE provider = 'mistral'), 'Mistral AI',
          'add_provider: renamed');
SELECT lives_ok($$SELECT credits.add_provider('mistral')$$,
                'add_provider: existing provider, no display_name');
SELECT is((SELECT display_name FROM credits.providers WHERE provider = 'mistral'), 'Mistral AI',
          'add_provider: a NULL display_name keeps the current name');
SELECT is((SELECT count(*)::int FROM credits.providers WHERE provider = 'mistral'), 1,
          'add_provider: still one row');
SELECT lives_ok($$SELECT credits.add_provider('google')$$,
                'add_provider: shipped provider, no display_name');
SELECT is((SELECT display_name FROM credits.providers WHERE provider = 'google'), 'Google',
          'add_provider: a NULL display_name keeps a shipped provider''s name');
SELECT lives_ok($$SELECT credits.add_provider('openai', 'OpenAI, Inc.')$$,
                'add_provider: rename a shipped provider');
SELECT results_eq(
    $$SELECT display_name, shipped FROM credits.providers WHERE provider = 'openai'$$,
    $$VALUES ('OpenAI, Inc.'::text, false)$$,
    'add_provider: a renamed shipped provider is no longer shipped');
SELECT throws_ok($$SELECT credits.add_provider(NULL)$$, '22004', 'provider must not be null',
                 'add_provider: NULL provider');
SELECT throws_ok($$SELECT credits.add_provider('')$$, '22023', 'provider must not be empty',
                 'add_provider: empty provider');
SELECT throws_ok($$SELECT credits.add_provider(repeat('p', 256))$$, '22023', 'provider is too long',
                 'add_provider: 256-byte provider');
SELECT throws_ok($$SELECT credits.add_provider(repeat('é', 128))$$, '22023', 'provider is too long',
                 'add_provider: 128 two-byte characters = 256 bytes');
SELECT lives_ok($$SELECT credits.add_provider(repeat('p', 255))$$,
                'add_provider: 255-byte provider is fine');

-- ---------------------------------------------------------------------------
-- upsert_model
-- ---------------------------------------------------------------------------
SELECT lives_ok($$SELECT credits.upsert_model('mistral', 'mistral-large', 200, 600)$$,
                'upsert_model: insert');
SELECT results_eq(
    $$SELECT provider, display_name, input_price, output_price, request_price,
             is_fallback, active, shipped
        FROM credits.models WHERE model = 'mistral-large'$$,
    $$VALUES ('mistral'::text, 'mistral-large'::text, '200'::credits.credit,
              '600'::credits.credit, '0'::credits.credit, false, true, false)$$,
    'upsert_model: inserted with defaults (display_name = model, request_price 0, premium)');
SELECT lives_ok($$SELECT credits.upsert_model('mistral', 'mistral-large', '210.5', 630, '0.25',
                                               display_name => 'Mistral Large')$$,
                'upsert_model: update prices and display_name');
SELECT results_eq(
    $$SELECT display_name, input_price, output_price, request_price
        FROM credits.models WHERE model = 'mistral-large'$$,
    $$VALUES ('Mistral Large'::text, '210.5'::credits.credit, '630'::credits.credit,
              '0.25'::credits.credit)$$,
    'upsert_model: prices and display_name updated');
SELECT lives_ok($$SELECT credits.upsert_model('mistral', 'mistral-large', 220, 640)$$,
                'upsert_model: update without display_name');
SELECT results_eq(
    $$SELECT display_name, input_price, output_price, request_price
        FROM credits.models WHERE model = 'mistral-large'$$,
    $$VALUES ('Mistral Large'::text, '220'::credits.credit, '640'::credits.credit,
              '0'::credits.credit)$$,
    'upsert_model: NULL display_name keeps the name; request_price back to its default');
SELECT lives_ok($$SELECT credits.upsert_model('openai', 'gpt-4o', 300, 1200)$$,
                'upsert_model: change the prices of a shipped model');
SELECT results_eq(
    $$SELECT display_name, input_price, output_price, shipped
        FROM credits.models WHERE model = 'gpt-4o'$$,
    $$VALUES ('GPT-4o'::text, '300'::credits.credit, '1200'::credits.credit, false)$$,
    'upsert_model: a shipped model keeps its display name when none is given, and is no longer shipped');
SELECT is((SELECT count(*)::int FROM credits.models), 11, 'upsert_model: one model added in all');

-- reactivation
UPDATE credits.models SET active = false WHERE model = 'gpt-4.1';
SELECT is((SELECT active FROM credits.models WHERE model = 'gpt-4.1'), false,
          'a model can be deactivated with plain DML');
SELECT lives_ok($$SELECT credits.upsert_model('openai', 'gpt-4.1', 200, 800)$$,
                'upsert_model: an inactive model');
SELECT is((SELECT active FROM credits.models WHERE model = 'gpt-4.1'), true,
          'upsert_model: reactivates an inactive model');

-- moving the fallback
SELECT lives_ok($$SELECT credits.upsert_model('openai', 'gpt-4.1', 200, 800, is_fallback => true)$$,
                'upsert_model: make a premium model the fallback');
SELECT results_eq(
    $$SELECT model FROM credits.models WHERE provider = 'openai' AND is_fallback$$,
    $$VALUES ('gpt-4.1'::text)$$,
    'upsert_model: the new fallback is the only fallback of the provider');
SELECT is((SELECT is_fallback FROM credits.models WHERE model = 'gpt-4o-mini'), false,
          'upsert_model: the previous fallback is demoted');
SELECT lives_ok($$SET CONSTRAINTS ALL IMMEDIATE$$,
                'upsert_model: the fallback move satisfies the one-fallback constraint at once');
SET CONSTRAINTS ALL DEFERRED;
SELECT results_eq(
    $$SELECT provider, model FROM credits.models WHERE is_fallback ORDER BY provider$$,
    $$VALUES ('anthropic'::text, 'claude-haiku-4-5'::text),
             ('google', 'gemini-2.0-flash'),
             ('openai', 'gpt-4.1')$$,
    'upsert_model: other providers'' fallbacks untouched');
UPDATE credits.models SET active = false WHERE model = 'gpt-4o-mini';
SELECT lives_ok($$SELECT credits.upsert_model('openai', 'gpt-4o-mini', 15, 60, is_fallback => true)$$,
                'upsert_model: an inactive model becomes the fallback again');
SELECT results_eq(
    $$SELECT model, active FROM credits.models WHERE provider = 'openai' AND is_fallback$$,
    $$VALUES ('gpt-4o-mini'::text, true)$$,
    'upsert_model: reactivated as the only fallback');
SELECT lives_ok($$SET CONSTRAINTS ALL IMMEDIATE$$,
                'upsert_model: constraints hold after moving the fallback back');
SET CONSTRAINTS ALL DEFERRED;
SELECT lives_ok($$SELECT credits.upsert_model('openai', 'gpt-4o-mini', 15, 60, is_fallback => true)$$,
                'upsert_model: re-marking the current fallback');
SELECT is((SELECT is_fallback FROM credits.models WHERE model = 'gpt-4o-mini'), true,
          'upsert_model: the current fallback stays the fallback');

-- errors
SELECT throws_ok($$SELECT credits.upsert_model('nope', 'x-1', 1, 1)$$, '22023',
                 'unknown provider "nope"', 'upsert_model: unknown provider');
SELECT throws_ok($$SELECT credits.upsert_model('openai', 'x-1', -1, 1)$$, '22023',
                 'input_price must not be negative', 'upsert_model: negative input_price');
SELECT throws_ok($$SELECT credits.upsert_model('openai', 'x-1', 1, '-0.000001')$$, '22023',
                 'output_price must not be negative', 'upsert_model: negative output_price');
SELECT throws_ok($$SELECT credits.upsert_model('openai', 'x-1', 1, 1, -5)$$, '22023',
                 'request_price must not be negative', 'upsert_model: negative request_price');
SELECT throws_ok($$SELECT credits.upsert_model(NULL, 'x-1', 1, 1)$$, '22004',
                 'provider must not be null', 'upsert_model: NULL provider');
SELECT throws_ok($$SELECT credits.upsert_model('openai', NULL, 1, 1)$$, '22004',
                 'model must not be null', 'upsert_model: NULL model');
SELECT throws_ok($$SELECT credits.upsert_model('openai', 'x-1', NULL, 1)$$, '22004',
                 'input_price must not be null', 'upsert_model: NULL input_price');
SELECT throws_ok($$SELECT credits.upsert_model('openai', 'x-1', 1, NULL)$$, '22004',
                 'output_price must not be null', 'upsert_model: NULL output_price');
SELECT throws_ok($$SELECT credits.upsert_model('openai', 'x-1', 1, 1, NULL)$$, '22004',
                 'request_price must not be null', 'upsert_model: NULL request_price');
SELECT throws_ok($$SELECT credits.upsert_model('openai', 'x-1', 1, 1, 0, NULL)$$, '22004',
                 'is_fallback must not be null', 'upsert_model: NULL is_fallback');
SELECT throws_ok($$SELECT credits.upsert_model('openai', '', 1, 1)$$, '22023',
                 'model must not be empty', 'upsert_model: empty model');
SELECT throws_ok($$SELECT credits.upsert_model('openai', repeat('m', 256), 1, 1)$$, '22023',
                 'model is too long', 'upsert_model: 256-byte model');
SELECT ok(NOT EXISTS (SELECT 1 FROM credits.models WHERE model = 'x-1'),
          'upsert_model: failed calls inserted nothing');

-- ---------------------------------------------------------------------------
-- The schema itself: one fallback per provider, fallbacks active
-- ---------------------------------------------------------------------------
SELECT ok((SELECT condeferrable AND condeferred AND contype = 'x' FROM pg_constraint
            WHERE conrelid = 'credits.models'::regclass
              AND conname = 'models_one_fallback_per_provider'),
          'schema: one fallback per provider is a DEFERRABLE INITIALLY DEFERRED exclusion constraint');
SELECT throws_ok(
    $sql$DO $do$ BEGIN
        UPDATE credits.models SET is_fallback = true WHERE model = 'gpt-4o';
        RAISE EXCEPTION 'statement accepted' USING ERRCODE = 'P0001';
      END $do$$sql$,
    'P0001', 'statement accepted',
    'schema: the one-fallback constraint is deferred (the UPDATE itself is accepted)');
SELECT throws_ok(
    $$UPDATE credits.models SET is_fallback = true WHERE model = 'gpt-4o';
      SET CONSTRAINTS ALL IMMEDIATE$$,
    '23P01', NULL,
    'schema: a second fallback for a provider via plain UPDATE fails at SET CONSTRAINTS ALL IMMEDIATE');
SELECT throws_ok(
    $$INSERT INTO credits.models (model, provider, display_name, input_price, output_price, is_fallback)
      VALUES ('gemini-x', 'google', 'Gemini X', 1, 1, true);
      SET CONSTRAINTS ALL IMMEDIATE$$,
    '23P01', NULL,
    'schema: a second fallback for a provider via plain INSERT fails at SET CONSTRAINTS ALL IMMEDIATE');
SELECT lives_ok(
    $$UPDATE credits.models SET is_fallback = (model = 'claude-sonnet-4-5')
       WHERE provider = 'anthropic' AND model IN ('claude-haiku-4-5', 'claude-sonnet-4-5');
      SET CONSTRAINTS ALL IMMEDIATE$$,
    'schema: one UPDATE may move the fallback from model to model');
SELECT results_eq(
    $$SELECT model FROM credits.models WHERE provider = 'anthropic' AND is_fallback$$,
    $$VALUES ('claude-sonnet-4-5'::text)$$,
    'schema: fallback moved by plain DML');
SET CONSTRAINTS ALL DEFERRED;
SELECT throws_ok($$UPDATE credits.models SET active = false WHERE model = 'gemini-2.0-flash'$$,
                 '23514', NULL, 'schema: a fallback cannot be inactive');
SELECT throws_ok(
    $$INSERT INTO credits.models (model, provider, display_name, input_price, output_price, is_fallback, active)
      VALUES ('mistral-small', 'mistral', 'Mistral Small', 1, 1, true, false)$$,
    '23514', NULL, 'schema: an inactive model cannot be inserted as a fallback');
SELECT throws_ok($$UPDATE credits.models SET input_price = -1 WHERE model = 'o3'$$,
                 '23514', NULL, 'schema: prices cannot be negative');

-- ---------------------------------------------------------------------------
-- shipped rows
-- ---------------------------------------------------------------------------
SELECT is((SELECT shipped FROM credits.models WHERE model = 'o3'), true, 'o3 is shipped before any edit');
UPDATE credits.models SET input_price = input_price WHERE model = 'o3';
SELECT is((SELECT shipped FROM credits.models WHERE model = 'o3'), false,
          'shipped: any UPDATE clears the flag, even one that changes nothing');
SELECT is((SELECT shipped FROM credits.models WHERE model = 'gemini-2.5-pro'), true,
          'shipped: other rows keep the flag');
UPDATE credits.models SET shipped = true WHERE model = 'o3';
SELECT is((SELECT shipped FROM credits.models WHERE model = 'o3'), false,
          'shipped: an UPDATE cannot set the flag back');
UPDATE credits.providers SET display_name = 'Google' WHERE provider = 'google';
SELECT is((SELECT shipped FROM credits.providers WHERE provider = 'google'), false,
          'shipped: an UPDATE of a provider clears its flag');

SELECT lives_ok(
    $$INSERT INTO credits.models (model, provider, display_name, input_price, output_price, request_price)
      VALUES ('gemini-2.5-pro', 'google', 'Gemini Pro (restored)', 100, 900, 0.5)$$,
    'shipped: inserting a row with the key of a shipped model');
SELECT results_eq(
    $$SELECT count(*)::int, min(display_name), min(input_price::numeric), min(output_price::numeric),
             min(request_price::numeric), bool_and(shipped), bool_and(active)
        FROM credits.models WHERE model = 'gemini-2.5-pro'$$,
    $$VALUES (1, 'Gemini Pro (restored)'::text, 100::numeric, 900::numeric, 0.5::numeric, false, true)$$,
    'shipped: the inserted row replaces the shipped row''s values and is no longer shipped');
SELECT lives_ok(
    $$INSERT INTO credits.providers (provider, display_name) VALUES ('anthropic', 'Anthropic PBC')$$,
    'shipped: inserting a provider with the key of a shipped provider');
SELECT results_eq(
    $$SELECT count(*)::int, min(display_name), bool_and(shipped)
        FROM credits.providers WHERE provider = 'anthropic'$$,
    $$VALUES (1, 'Anthropic PBC'::text, false)$$,
    'shipped: the inserted provider replaces the shipped one');
SELECT throws_ok(
    $$INSERT INTO credits.models (model, provider, display_name, input_price, output_price)
      VALUES ('gemini-2.5-pro', 'google', 'again', 1, 1)$$,
    '23505', NULL, 'shipped: once edited, a row with the same key is a duplicate');
SELECT throws_ok(
    $$INSERT INTO credits.providers (provider, display_name) VALUES ('mistral', 'again')$$,
    '23505', NULL, 'shipped: a provider that was never shipped is a duplicate');

-- ---------------------------------------------------------------------------
-- cost()
-- ---------------------------------------------------------------------------
SELECT credits.upsert_model('mistral', 'unit-1', 1, 1);              -- 1 credit / 1M tokens
SELECT credits.upsert_model('mistral', 'tiny', '0.3', '0.7');            -- fractions of a micro-credit
SELECT credits.upsert_model('mistral', 'micro', '0.000001', '0.000001'); -- 1 micro-credit / 1M tokens
SELECT credits.upsert_model('mistral', 'per-call', 2, 4, '0.5');       -- with a request price
SELECT credits.upsert_model('mistral', 'free', 0, 0);

SELECT is(credits.cost('gpt-4o-mini', 1)::numeric, 0.000015::numeric,
          'cost: gpt-4o-mini, 1 input token = 0.000015');
SELECT is(credits.cost('gpt-4o-mini', 1000, 500)::numeric, 0.045::numeric,
          'cost: gpt-4o-mini, 1000 in + 500 out = 0.045');
SELECT is(credits.cost('gpt-4o-mini', 1000000, 1000000)::numeric, 75::numeric,
          'cost: gpt-4o-mini, 1M in + 1M out = 75');
SELECT is(credits.cost('claude-opus-4-1', 1234, 567)::numeric, 6.1035::numeric,
          'cost: claude-opus-4-1, 1234 in + 567 out = 6.1035');
SELECT is(credits.cost('gemini-2.5-flash', 1, 1)::numeric, 0.00028::numeric,
          'cost: gemini-2.5-flash, 1 in + 1 out = 0.00028');
SELECT is(credits.cost('gpt-4o', 1000, 500)::numeric, 0.9::numeric,
          'cost: gpt-4o at the upserted prices 300/1200, 1000 in + 500 out = 0.9');
SELECT is(credits.cost('unit-1', 1)::numeric, 0.000001::numeric,
          'cost: a model priced 1 credit/1M, 1 token = 0.000001');
SELECT is(credits.cost('unit-1', 0)::numeric, 0::numeric,
          'cost: 0 tokens and no request price = 0');
SELECT is(credits.cost('tiny', 1)::numeric, 0.000001::numeric,
          'cost: 0.3 micro-credits rounds up to 0.000001');
SELECT is(credits.cost('tiny', 1, 1)::numeric, 0.000001::numeric,
          'cost: exactly 1 micro-credit (0.3 + 0.7) is not rounded further');
SELECT is(credits.cost('tiny', 2, 1)::numeric, 0.000002::numeric,
          'cost: 1.3 micro-credits rounds up to 0.000002');
SELECT is(credits.cost('tiny', 10, 0)::numeric, 0.000003::numeric,
          'cost: 3 micro-credits exactly');
SELECT is(credits.cost('micro', 1)::numeric, 0.000001::numeric,
          'cost: a millionth of a micro-credit is charged as a whole micro-credit');
SELECT is(credits.cost('micro', 1000000, 1000000)::numeric, 0.000002::numeric,
          'cost: 1M + 1M tokens at 1 micro-credit/1M = 0.000002');
SELECT is(credits.cost('micro', 1000001)::numeric, 0.000002::numeric,
          'cost: 1,000,001 tokens at 1 micro-credit/1M rounds up to 0.000002');
SELECT is(credits.cost('per-call', 0)::numeric, 0.5::numeric,
          'cost: 0 tokens = request_price');
SELECT is(credits.cost('per-call', 0, 0)::numeric, 0.5::numeric,
          'cost: 0 in + 0 out = request_price');
SELECT is(credits.cost('per-call', 1000000, 1000000)::numeric, 6.5::numeric,
          'cost: request_price added to the token price');
SELECT is(credits.cost('per-call', 1)::numeric, 0.500002::numeric,
          'cost: request_price added after rounding up the token price');
SELECT is(credits.cost('free', 123456789, 987654321)::numeric, 0::numeric,
          'cost: a free model costs 0');
SELECT is(credits.cost('gpt-4o-mini', 1000)::numeric, credits.cost('gpt-4o-mini', 1000, 0)::numeric,
          'cost: output_tokens defaults to 0');
SELECT is(credits.cost(model => 'gpt-4o-mini', input_tokens => 2000)::numeric, 0.03::numeric,
          'cost: named arguments, output_tokens omitted');
SELECT is(pg_typeof(credits.cost('gpt-4o', 1))::text, 'credits.credit',
          'cost: returns credits.credit');
SELECT is(credits.cost('unit-1', 9223372036854775807)::numeric, 9223372036854.775807::numeric,
          'cost: the largest cost that fits a credit');
SELECT throws_ok($$SELECT credits.cost('unit-1', 9223372036854775807, 1)$$, '22003', NULL,
                 'cost: one micro-credit more than the largest credit overflows');
SELECT throws_ok($$SELECT credits.cost('per-call', 9223372036854775807)$$, '22003', NULL,
                 'cost: request_price pushing the cost out of range overflows');
SELECT throws_ok($$SELECT credits.cost('claude-opus-4-1', 9223372036854775807, 9223372036854775807)$$,
                 '22003', NULL, 'cost: huge token counts overflow');
SELECT throws_ok($$SELECT credits.cost('gpt-4o', 100000000000000000)$$, '22003', NULL,
                 'cost: 1e17 tokens of gpt-4o overflows');
SELECT throws_ok($$SELECT credits.cost('gpt-4o', -1)$$, '22023', 'input_tokens must not be negative',
                 'cost: negative input_tokens');
SELECT throws_ok($$SELECT credits.cost('gpt-4o', 1, -1)$$, '22023', 'output_tokens must not be negative',
                 'cost: negative output_tokens');
SELECT throws_ok($$SELECT credits.cost(NULL, 1, 1)$$, '22004', 'model must not be null',
                 'cost: NULL model');
SELECT throws_ok($$SELECT credits.cost('gpt-4o', NULL, 1)$$, '22004', 'input_tokens must not be null',
                 'cost: NULL input_tokens');
SELECT throws_ok($$SELECT credits.cost('gpt-4o', 1, NULL)$$, '22004', 'output_tokens must not be null',
                 'cost: NULL output_tokens');
SELECT throws_ok($$SELECT credits.cost('', 1)$$, '22023', 'model must not be empty',
                 'cost: empty model');
SELECT throws_ok($$SELECT credits.cost('no-such-model', 1)$$, 'UC002', NULL,
                 'cost: unknown model');
UPDATE credits.models SET active = false WHERE model = 'o3';
SELECT throws_ok($$SELECT credits.cost('o3', 1)$$, 'UC002', NULL,
                 'cost: inactive model');
UPDATE credits.models SET active = true WHERE model = 'o3';
SELECT is(credits.cost('o3', 1000000)::numeric, 200::numeric,
          'cost: a reactivated model is priced again');

SELECT * FROM finish();
ROLLBACK;
