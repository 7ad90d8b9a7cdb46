-- pgTAP: the read path, credits.allowed_models() and credits.resolve_model()
BEGIN;
SELECT plan(83);

-- ---------------------------------------------------------------------------
-- Fixtures
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM credits.create_org('acme', allowance_per_user => 100);
    PERFORM credits.enable_provider('acme', 'openai');
    PERFORM credits.enable_provider('acme', 'anthropic');
    PERFORM credits.add_member('acme', 'alice', cap => 10);
    PERFORM credits.add_member('acme', 'bob');
    PERFORM credits.add_member('acme', 'carol');
    PERFORM credits.remove_member('acme', 'carol');
    PERFORM credits.add_member('acme', 'dave', cap => 0);

    PERFORM credits.create_org('zero', allowance_per_user => 0);
    PERFORM credits.enable_provider('zero', 'openai');
    PERFORM credits.add_member('zero', 'z1');

    PERFORM credits.create_org('empty');        -- no provider enabled
    PERFORM credits.add_member('empty', 'e1');

    -- a provider with a premium model and no fallback
    PERFORM credits.add_provider('mistral', 'Mistral AI');
    PERFORM credits.upsert_model('mistral', 'mistral-large', 200, 600, display_name => 'Mistral Large');
    PERFORM credits.create_org('nofb', allowance_per_user => 50);
    PERFORM credits.enable_provider('nofb', 'mistral');
    PERFORM credits.enable_provider('nofb', 'openai');
    PERFORM credits.add_member('nofb', 'n1');
    PERFORM credits.add_member('nofb', 'n2', cap => 1);
END
$$;

CREATE TEMP TABLE expected_acme (provider text, model text, display_name text, is_fallback boolean,
                                 input_price credits.credit, output_price credits.credit, ord int);
INSERT INTO expected_acme VALUES
    ('anthropic', 'claude-opus-4-1',   'Claude Opus 4.1',   false, 1500, 7500, 1),
    ('anthropic', 'claude-sonnet-4-5', 'Claude Sonnet 4.5', false,  300, 1500, 2),
    ('anthropic', 'claude-haiku-4-5',  'Claude Haiku 4.5',  true,   100,  500, 3),
    ('openai',    'gpt-4.1',           'GPT-4.1',           false,  200,  800, 4),
    ('openai',    'gpt-4o',            'GPT-4o',            false,  250, 1000, 5),
    ('openai',    'o3',                'o3',                false,  200,  800, 6),
    ('openai',    'gpt-4o-mini',       'GPT-4o Mini',       true,    15,   60, 7);

-- ---------------------------------------------------------------------------
-- allowed_models: which rows, in which order
-- ---------------------------------------------------------------------------
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'credits.allowed_models(text, text)'::regprocedure),
          ARRAY['org_id', 'user_id', 'provider', 'model', 'display_name', 'is_fallback', 'available',
                'reason', 'input_price', 'output_price', 'limited_by', 'resets_at'],
          'allowed_models: argument and result column names');
SELECT results_eq(
    $$SELECT * FROM credits.allowed_models('acme')$$,
    $$SELECT provider, model, display_name, is_fallback, true, NULL::text, input_price, output_price,
             NULL::text, NULL::timestamptz
        FROM expected_acme ORDER BY ord$$,
    'allowed_models: every active model of the enabled providers, by provider, fallback last, then model; all available');
SELECT results_eq(
    $$SELECT * FROM credits.allowed_models('acme', 'bob')$$,
    $$SELECT provider, model, display_name, is_fallback, true, NULL::text, input_price, output_price,
             NULL::text, NULL::timestamptz
        FROM expected_acme ORDER BY ord$$,
    'allowed_models: the same for a member without a cap');
SELECT results_eq(
    $$SELECT * FROM credits.allowed_models('acme', NULL)$$,
    $$SELECT * FROM credits.allowed_models('acme')$$,
    'allowed_models: user_id NULL is the same as no user');
SELECT ok(NOT EXISTS (SELECT 1 FROM credits.allowed_models('acme') WHERE provider = 'google'),
          'allowed_models: a provider the org has not enabled is absent');
SELECT is_empty($$SELECT * FROM credits.allowed_models('empty')$$,
                'allowed_models: an org without enabled providers has no models');
SELECT is_empty($$SELECT * FROM credits.allowed_models('empty', 'e1')$$,
                'allowed_models: ... also for its members');

UPDATE credits.models SET active = false WHERE model = 'o3';
SELECT results_eq(
    $$SELECT model FROM credits.allowed_models('acme')$$,
    $$SELECT model FROM expected_acme WHERE model <> 'o3' ORDER BY ord$$,
    'allowed_models: an inactive model is absent');
UPDATE credits.models SET active = true WHERE model = 'o3';

SELECT credits.disable_provider('acme', 'anthropic');
SELECT results_eq(
    $$SELECT model FROM credits.allowed_models('acme')$$,
    $$SELECT model FROM expected_acme WHERE provider = 'openai' ORDER BY ord$$,
    'allowed_models: a disabled provider''s models are absent');
SELECT credits.enable_provider('acme', 'anthropic');
SELECT results_eq(
    $$SELECT model FROM credits.allowed_models('acme')$$,
    $$SELECT model FROM expected_acme ORDER BY ord$$,
    'allowed_models: re-enabled provider''s models are back');

SELECT credits.upsert_model('openai', 'gpt-4o', 260, 1040, display_name => 'GPT-4o');
SELECT results_eq(
    $$SELECT input_price, output_price FROM credits.allowed_models('acme') WHERE model = 'gpt-4o'$$,
    $$VALUES ('260'::credits.credit, '1040'::credits.credit)$$,
    'allowed_models: prices follow catalog changes');
SELECT credits.upsert_model('openai', 'gpt-4o', 250, 1000, display_name => 'GPT-4o');

SELECT results_eq(
    $$SELECT model, is_fallback FROM credits.allowed_models('nofb')$$,
    $$VALUES ('mistral-large'::text, false), ('gpt-4.1', false), ('gpt-4o', false), ('o3', false),
             ('gpt-4o-mini', true)$$,
    'allowed_models: a provider without a fallback lists its premium models only');

-- ---------------------------------------------------------------------------
-- allowed_models: caps and exhaustion
-- ---------------------------------------------------------------------------
INSERT INTO credits.member_usage (org_id, user_id, used) VALUES ('acme', 'alice', 9.999999);
SELECT ok((SELECT bool_and(available) AND bool_and(reason IS NULL) FROM credits.allowed_models('acme', 'alice')),
          'allowed_models: a member below the cap sees every model available');
UPDATE credits.member_usage SET used = 10 WHERE org_id = 'acme' AND user_id = 'alice';
SELECT results_eq(
    $$SELECT model, is_fallback, available, reason FROM credits.allowed_models('acme', 'alice')$$,
    $$SELECT model, is_fallback, is_fallback,
             CASE WHEN is_fallback THEN NULL ELSE 'user_cap_reached' END
        FROM expected_acme ORDER BY ord$$,
    'allowed_models: cap used up -> premium grayed out with user_cap_reached, fallbacks available');
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('acme')),
          'allowed_models: without user_id the cap does not matter');
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('acme', 'bob')),
          'allowed_models: another member is not affected by alice''s cap');
SELECT results_eq(
    $$SELECT model, available, reason FROM credits.allowed_models('acme', 'dave') WHERE NOT is_fallback$$,
    $$SELECT model, false, 'user_cap_reached'::text FROM expected_acme WHERE NOT is_fallback ORDER BY ord$$,
    'allowed_models: a cap of 0 is reached from the start');

CREATE TEMP TABLE pools_before AS SELECT * FROM credits.pools;
UPDATE credits.pools SET allowance_used = allowance WHERE org_id = 'acme';
SELECT is((SELECT available::numeric FROM credits.pool_status WHERE org_id = 'acme'), 0::numeric,
          'fixture: acme is exhausted');
SELECT results_eq(
    $$SELECT * FROM credits.allowed_models('acme')$$,
    $$SELECT provider, model, display_name, is_fallback, is_fallback,
             CASE WHEN is_fallback THEN NULL ELSE 'credits_exhausted' END,
             input_price, output_price,
             CASE WHEN is_fallback THEN NULL ELSE 'pool' END,
             CASE WHEN is_fallback THEN NULL
                  ELSE (SELECT period_end FROM credits.pool_status WHERE org_id = 'acme') END
        FROM expected_acme ORDER BY ord$$,
    'allowed_models: exhausted -> premium grayed out with credits_exhausted, limited by the pool until the next period; fallbacks available with reason, limited_by and resets_at NULL');
SELECT results_eq(
    $$SELECT model, available, reason FROM credits.allowed_models('acme', 'bob')$$,
    $$SELECT model, is_fallback, CASE WHEN is_fallback THEN NULL ELSE 'credits_exhausted' END
        FROM expected_acme ORDER BY ord$$,
    'allowed_models: exhausted, for a member');
SELECT results_eq(
    $$SELECT model, available, reason FROM credits.allowed_models('acme', 'alice')$$,
    $$SELECT model, is_fallback, CASE WHEN is_fallback THEN NULL ELSE 'credits_exhausted' END
        FROM expected_acme ORDER BY ord$$,
    'allowed_models: credits_exhausted takes precedence over user_cap_reached');
SELECT results_eq(
    $$SELECT model, available, reason FROM credits.allowed_models('zero', 'z1')$$,
    $$VALUES ('gpt-4.1'::text, false, 'credits_exhausted'::text), ('gpt-4o', false, 'credits_exhausted'),
             ('o3', false, 'credits_exhausted'), ('gpt-4o-mini', true, NULL)$$,
    'allowed_models: an org whose allowance is 0 is exhausted from the start');
SELECT results_eq(
    $$SELECT model, available, reason FROM credits.allowed_models('zero')$$,
    $$SELECT model, available, reason FROM credits.allowed_models('zero', 'z1')$$,
    'allowed_models: ... also without user_id');
SELECT results_eq(
    $$SELECT model, available, reason FROM credits.allowed_models('empty') $$,
    $$SELECT NULL::text, NULL::boolean, NULL::text WHERE false$$,
    'allowed_models: an org with no members and no providers returns nothing');

UPDATE credits.pools SET topup = 0.000001 WHERE org_id = 'acme';
SELECT ok((SELECT bool_and(available) FROM credits.allowed_models('acme', 'bob')),
          'allowed_models: a remaining top-up makes premium models available again');
UPDATE credits.pools SET reserved = 0.000001 WHERE org_id = 'acme';
SELECT results_eq(
    $$SELECT DISTINCT reason FROM credits.allowed_models('acme', 'bob') WHERE NOT is_fallback$$,
    $$VALUES ('credits_exhausted'::text)$$,
    'allowed_models: credits held by open holds are not available');
UPDATE credits.pools SET topup = 0, reserved = 0 WHERE org_id = 'acme';

-- ---------------------------------------------------------------------------
-- allowed_models: errors
-- ---------------------------------------------------------------------------
SELECT throws_ok($$SELECT * FROM credits.allowed_models(NULL)$$, '22004', 'org_id must not be null',
                 'allowed_models: NULL org_id');
SELECT throws_ok($$SELECT * FROM credits.allowed_models(NULL, 'bob')$$, '22004', 'org_id must not be null',
                 'allowed_models: NULL org_id with a user');
SELECT throws_ok($$SELECT * FROM credits.allowed_models('')$$, '22023', 'org_id must not be empty',
                 'allowed_models: empty org_id');
SELECT throws_ok($$SELECT * FROM credits.allowed_models(repeat('o', 256))$$, '22023', 'org_id is too long',
                 'allowed_models: 256-byte org_id');
SELECT throws_ok($$SELECT * FROM credits.allowed_models('nope')$$, 'UC004', 'unknown org "nope"',
                 'allowed_models: unknown org');
SELECT throws_ok($$SELECT * FROM credits.allowed_models('nope', 'bob')$$, 'UC004', NULL,
                 'allowed_models: unknown org with a user');
SELECT throws_ok($$SELECT * FROM credits.allowed_models('acme', 'stranger')$$, 'UC005',
                 'user "stranger" is not an active member of org "acme"',
                 'allowed_models: a user who is not a member');
SELECT throws_ok($$SELECT * FROM credits.allowed_models('acme', 'carol')$$, 'UC005', NULL,
                 'allowed_models: a removed member');
SELECT throws_ok($$SELECT * FROM credits.allowed_models('zero', 'bob')$$, 'UC005', NULL,
                 'allowed_models: a member of another org');
SELECT throws_ok($$SELECT * FROM credits.allowed_models('acme', '')$$, '22023', 'user_id must not be empty',
                 'allowed_models: empty user_id');

-- ---------------------------------------------------------------------------
-- resolve_model
-- ---------------------------------------------------------------------------
UPDATE credits.pools p SET allowance_used = b.allowance_used FROM pools_before b
 WHERE p.org_id = b.org_id AND p.org_id = 'acme';
SELECT is((SELECT available::numeric FROM credits.pool_status WHERE org_id = 'acme'), 300::numeric,
          'fixture: acme has credits again (alice + bob + dave; carol''s 100 kept after removal, then reused by dave)');
SELECT is(credits.resolve_model('acme', 'bob', 'gpt-4o'), 'gpt-4o',
          'resolve_model: an available premium model resolves to itself');
SELECT is(credits.resolve_model('acme', 'bob', 'claude-opus-4-1'), 'claude-opus-4-1',
          'resolve_model: another provider''s premium model');
SELECT is(credits.resolve_model('acme', 'bob', 'gpt-4o-mini'), 'gpt-4o-mini',
          'resolve_model: a fallback model resolves to itself');
SELECT is(credits.resolve_model('acme', 'alice', 'gpt-4o'), 'gpt-4o-mini',
          'resolve_model: cap reached -> the provider''s fallback');
SELECT is(credits.resolve_model('acme', 'alice', 'claude-sonnet-4-5'), 'claude-haiku-4-5',
          'resolve_model: cap reached -> the model''s own provider''s fallback');
SELECT is(credits.resolve_model('acme', 'alice', 'claude-haiku-4-5'), 'claude-haiku-4-5',
          'resolve_model: cap reached, a fallback resolves to itself');
SELECT is(credits.resolve_model('acme', 'dave', 'o3'), 'gpt-4o-mini',
          'resolve_model: cap 0 -> fallback');
SELECT is(credits.resolve_model('nofb', 'n1', 'mistral-large'), 'mistral-large',
          'resolve_model: a premium model without a provider fallback, while credits remain');

UPDATE credits.pools SET allowance_used = allowance WHERE org_id IN ('acme', 'nofb');
SELECT is(credits.resolve_model('acme', 'bob', 'gpt-4o'), 'gpt-4o-mini',
          'resolve_model: exhausted -> the provider''s fallback');
SELECT is(credits.resolve_model('acme', 'bob', 'claude-opus-4-1'), 'claude-haiku-4-5',
          'resolve_model: exhausted -> anthropic''s fallback');
SELECT is(credits.resolve_model('acme', 'bob', 'gpt-4o-mini'), 'gpt-4o-mini',
          'resolve_model: exhausted, a fallback resolves to itself');
SELECT is(credits.resolve_model('acme', 'alice', 'gpt-4.1'), 'gpt-4o-mini',
          'resolve_model: exhausted and cap reached -> fallback');
SELECT is(credits.resolve_model('zero', 'z1', 'gpt-4o'), 'gpt-4o-mini',
          'resolve_model: an org with allowance 0 -> fallback');
SELECT credits.upsert_model('openai', 'gpt-4.1', 200, 800, is_fallback => true, display_name => 'GPT-4.1');
SELECT is(credits.resolve_model('acme', 'bob', 'gpt-4o'), 'gpt-4.1',
          'resolve_model: follows a moved fallback');
SELECT is(credits.resolve_model('acme', 'bob', 'gpt-4o-mini'), 'gpt-4.1',
          'resolve_model: the demoted fallback is premium now');
SELECT credits.upsert_model('openai', 'gpt-4o-mini', 15, 60, is_fallback => true, display_name => 'GPT-4o Mini');

SELECT throws_ok($$SELECT credits.resolve_model('nofb', 'n1', 'mistral-large')$$, 'UC001', NULL,
                 'resolve_model: exhausted, provider without fallback');
SELECT is(credits.resolve_model('nofb', 'n1', 'gpt-4o'), 'gpt-4o-mini',
          'resolve_model: the same org still falls back for a provider with a fallback');
UPDATE credits.pools SET allowance_used = 0 WHERE org_id = 'nofb';
INSERT INTO credits.member_usage (org_id, user_id, used) VALUES ('nofb', 'n2', 1);
SELECT throws_ok($$SELECT credits.resolve_model('nofb', 'n2', 'mistral-large')$$, 'UC001', NULL,
                 'resolve_model: cap reached, provider without fallback');
SELECT is(credits.resolve_model('nofb', 'n1', 'mistral-large'), 'mistral-large',
          'resolve_model: another member of that org still gets the premium model');
UPDATE credits.pools SET allowance_used = allowance WHERE org_id = 'nofb';

-- errors
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'bob', 'no-such-model')$$, 'UC002', NULL,
                 'resolve_model: unknown model');
UPDATE credits.models SET active = false WHERE model = 'o3';
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'bob', 'o3')$$, 'UC002', NULL,
                 'resolve_model: inactive model');
UPDATE credits.models SET active = true WHERE model = 'o3';
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'bob', 'gemini-2.5-pro')$$, 'UC003', NULL,
                 'resolve_model: provider not enabled (premium model)');
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'bob', 'gemini-2.0-flash')$$, 'UC003', NULL,
                 'resolve_model: provider not enabled (fallback model)');
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'bob', 'mistral-large')$$, 'UC003', NULL,
                 'resolve_model: provider not enabled (provider without fallback)');
SELECT throws_ok($$SELECT credits.resolve_model('nope', 'bob', 'gpt-4o')$$, 'UC004', 'unknown org "nope"',
                 'resolve_model: unknown org');
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'stranger', 'gpt-4o')$$, 'UC005', NULL,
                 'resolve_model: not a member');
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'carol', 'gpt-4o')$$, 'UC005', NULL,
                 'resolve_model: removed member');
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'carol', 'gpt-4o-mini')$$, 'UC005', NULL,
                 'resolve_model: removed member, even for a fallback');
SELECT throws_ok($$SELECT credits.resolve_model(NULL, 'bob', 'gpt-4o')$$, '22004', 'org_id must not be null',
                 'resolve_model: NULL org_id');
SELECT throws_ok($$SELECT credits.resolve_model('acme', NULL, 'gpt-4o')$$, '22004', 'user_id must not be null',
                 'resolve_model: NULL user_id');
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'bob', NULL)$$, '22004', 'model must not be null',
                 'resolve_model: NULL model');
SELECT throws_ok($$SELECT credits.resolve_model('', 'bob', 'gpt-4o')$$, '22023', 'org_id must not be empty',
                 'resolve_model: empty org_id');
SELECT throws_ok($$SELECT credits.resolve_model('acme', '', 'gpt-4o')$$, '22023', 'user_id must not be empty',
                 'resolve_model: empty user_id');
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'bob', '')$$, '22023', 'model must not be empty',
                 'resolve_model: empty model');
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'bob', repeat('m', 256))$$, '22023', 'model is too long',
                 'resolve_model: 256-byte model');

-- ---------------------------------------------------------------------------
-- Nothing changes: failed or successful, the read path writes nothing
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE snap_pools AS SELECT * FROM credits.pools;
CREATE TEMP TABLE snap_usage AS SELECT * FROM credits.member_usage;
CREATE TEMP TABLE snap_members AS SELECT * FROM credits.members;
SELECT throws_ok($$SELECT credits.resolve_model('nofb', 'n1', 'mistral-large')$$, 'UC001', NULL,
                 'resolve_model: UC001 again');
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'stranger', 'gpt-4o')$$, 'UC005', NULL,
                 'resolve_model: UC005 again');
SELECT throws_ok($$SELECT credits.resolve_model('acme', 'bob', 'gemini-2.5-pro')$$, 'UC003', NULL,
                 'resolve_model: UC003 again');
SELECT throws_ok($$SELECT * FROM credits.allowed_models('acme', 'carol')$$, 'UC005', NULL,
                 'allowed_models: UC005 again');
SELECT is(credits.resolve_model('acme', 'bob', 'gpt-4o'), 'gpt-4o-mini', 'resolve_model: a successful call');
SELECT is((SELECT count(*)::int FROM credits.allowed_models('acme', 'alice')), 7,
          'allowed_models: a successful call');
SELECT results_eq(
    $$SELECT org_id, period_start, period_end, allowance::numeric, allowance_used::numeric,
             topup::numeric, reserved::numeric FROM credits.pools ORDER BY org_id$$,
    $$SELECT org_id, period_start, period_end, allowance::numeric, allowance_used::numeric,
             topup::numeric, reserved::numeric FROM snap_pools ORDER BY org_id$$,
    'failed and successful calls left every pool row unchanged');
SELECT results_eq(
    $$SELECT org_id, user_id, used::numeric FROM credits.member_usage ORDER BY org_id, user_id$$,
    $$SELECT org_id, user_id, used::numeric FROM snap_usage ORDER BY org_id, user_id$$,
    'failed and successful calls left member usage unchanged');
SELECT results_eq(
    $$SELECT org_id, user_id, active FROM credits.members ORDER BY org_id, user_id$$,
    $$SELECT org_id, user_id, active FROM snap_members ORDER BY org_id, user_id$$,
    'failed and successful calls left members unchanged');
SELECT ok((SELECT provolatile = 's' FROM pg_proc WHERE oid = 'credits.resolve_model(text, text, text)'::regprocedure)
          AND (SELECT provolatile = 's' FROM pg_proc WHERE oid = 'credits.allowed_models(text, text)'::regprocedure),
          'allowed_models and resolve_model are STABLE (read-only)');
SELECT ok(NOT (SELECT proisstrict FROM pg_proc WHERE oid = 'credits.resolve_model(text, text, text)'::regprocedure)
          AND NOT (SELECT proisstrict FROM pg_proc WHERE oid = 'credits.allowed_models(text, text)'::regprocedure),
          'allowed_models and resolve_model are not STRICT');

SELECT * FROM finish();
ROLLBACK;
