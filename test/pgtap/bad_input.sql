-- pgTAP: malformed calls of every public function, table-driven.
--
-- Each case is one statement and the SQLSTATE it must fail with (and, where
-- the contract fixes it, the message).  After all of them, nothing may have
-- changed: ledger, pools, holds, member usage, grants, events, orgs, members,
-- catalog; and verify() is clean.
BEGIN;
SET LOCAL search_path = public, credits;

-- ---------------------------------------------------------------------------
-- Fixtures
--   bi   100 per user: ann, ben (cap 50), cat (removed) -> pool 300, + 50 top-up
--        openai + anthropic; google enabled then disabled
--   bj   10: jo                                           -> openai
--   bz   0: zed                                            -> openai + nofb (no fallback)
--   models: retired-1 (openai, inactive), nofb-pro (nofb, premium, no fallback)
--   holds of bi: open (request_id rq-h), settled, released, expired
--   a debit of bi with request_id rq-d
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM credits.create_org('bi', allowance_per_user => 100);
    PERFORM credits.enable_provider('bi', 'openai');
    PERFORM credits.enable_provider('bi', 'anthropic');
    PERFORM credits.enable_provider('bi', 'google');
    PERFORM credits.disable_provider('bi', 'google');
    PERFORM credits.add_member('bi', 'ann');
    PERFORM credits.add_member('bi', 'ben', cap => 50);
    PERFORM credits.add_member('bi', 'cat');
    PERFORM credits.remove_member('bi', 'cat');
    PERFORM credits.recharge('bi', '50', note => 'fixture top-up');

    PERFORM credits.create_org('bj', allowance_per_user => 10);
    PERFORM credits.enable_provider('bj', 'openai');
    PERFORM credits.add_member('bj', 'jo');

    PERFORM credits.add_provider('nofb', 'No Fallback Inc');
    PERFORM credits.upsert_model('nofb', 'nofb-pro', 100, 100);
    PERFORM credits.create_org('bz', allowance_per_user => 0);
    PERFORM credits.enable_provider('bz', 'openai');
    PERFORM credits.enable_provider('bz', 'nofb');
    PERFORM credits.add_member('bz', 'zed');

    PERFORM credits.upsert_model('openai', 'retired-1', 1, 1);
    UPDATE credits.models SET active = false WHERE model = 'retired-1';
END
$$;

CREATE TEMP TABLE fx (k text PRIMARY KEY, hold_id bigint NOT NULL);
CREATE FUNCTION pg_temp.hid(k text) RETURNS bigint LANGUAGE sql STABLE
    AS $$SELECT fx.hold_id FROM fx WHERE fx.k = $1$$;

INSERT INTO fx SELECT 'open', r.hold_id
  FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 4000, 1000, 'rq-h') r;
INSERT INTO fx SELECT 'settled', r.hold_id
  FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 4000, 1000) r;
INSERT INTO fx SELECT 'released', r.hold_id
  FROM credits.credit_reserve('bi', 'ben', 'gpt-4o-mini', 1000, 1000) r;
INSERT INTO fx SELECT 'expired', r.hold_id
  FROM credits.credit_reserve('bi', 'ann', 'claude-haiku-4-5', 1000, 1000, ttl => '1 second') r;
DO $$
BEGIN
    PERFORM credits.credit_settle(pg_temp.hid('settled'), 2000, 500);
    PERFORM credits.credit_release(pg_temp.hid('released'));
    PERFORM credits.expire_holds(now() + interval '1 minute');
    PERFORM credits.credit_debit('bi', 'ann', 'gpt-4o', 20000, 1000, 'rq-d');
END
$$;

-- ---------------------------------------------------------------------------
-- The cases
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE cases (id serial PRIMARY KEY, sql text NOT NULL, sqlstate text NOT NULL,
                         msg text);  -- msg NULL: the message is not checked

INSERT INTO cases (sql, sqlstate, msg) VALUES
-- credit_debit(org_id, user_id, model, input_tokens, output_tokens, request_id)
($$SELECT * FROM credits.credit_debit(NULL, 'ann', 'gpt-4o', 1)$$, '22004', 'org_id must not be null'),
($$SELECT * FROM credits.credit_debit('bi', NULL, 'gpt-4o', 1)$$, '22004', 'user_id must not be null'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', NULL, 1)$$, '22004', 'model must not be null'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', NULL)$$, '22004', 'input_tokens must not be null'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', 1, NULL)$$, '22004', 'output_tokens must not be null'),
($$SELECT * FROM credits.credit_debit('', 'ann', 'gpt-4o', 1)$$, '22023', 'org_id must not be empty'),
($$SELECT * FROM credits.credit_debit(repeat('o', 256), 'ann', 'gpt-4o', 1)$$, '22023', 'org_id is too long'),
($$SELECT * FROM credits.credit_debit('bi', '', 'gpt-4o', 1)$$, '22023', 'user_id must not be empty'),
($$SELECT * FROM credits.credit_debit('bi', repeat('u', 256), 'gpt-4o', 1)$$, '22023', 'user_id is too long'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', '', 1)$$, '22023', 'model must not be empty'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', repeat('m', 256), 1)$$, '22023', 'model is too long'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', 1, 0, '')$$, '22023', 'request_id must not be empty'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', 1, 0, repeat('r', 256))$$, '22023', 'request_id is too long'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', -1)$$, '22023', 'input_tokens must not be negative'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', 1, -1)$$, '22023', 'output_tokens must not be negative'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', -9223372036854775808)$$, '22023', 'input_tokens must not be negative'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', '9223372036854775808')$$, '22003', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', 'abc')$$, '22P02', NULL),
($$SELECT * FROM credits.credit_debit('nope', 'ann', 'gpt-4o', 1)$$, 'UC004', 'unknown org "nope"'),
($$SELECT * FROM credits.credit_debit('bi', 'stranger', 'gpt-4o', 1)$$, 'UC005', 'user "stranger" is not an active member of org "bi"'),
($$SELECT * FROM credits.credit_debit('bi', 'cat', 'gpt-4o-mini', 1)$$, 'UC005', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'jo', 'gpt-4o', 1)$$, 'UC005', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'no-such-model', 1)$$, 'UC002', 'unknown or inactive model "no-such-model"'),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'retired-1', 1)$$, 'UC002', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gemini-2.5-pro', 1)$$, 'UC003', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gemini-2.0-flash', 1)$$, 'UC003', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'claude-opus-4-1', 9223372036854775807)$$, '22003', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'claude-opus-4-1', 0, 9223372036854775807)$$, '22003', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', 9223372036854775807, 9223372036854775807, 'rq-big')$$, '22003', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', 20001, 1000, 'rq-d')$$, 'UC007', 'request_id "rq-d" of org "bi" was already used with different arguments'),
($$SELECT * FROM credits.credit_debit('bi', 'ben', 'gpt-4o', 20000, 1000, 'rq-d')$$, 'UC007', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4.1', 20000, 1000, 'rq-d')$$, 'UC007', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', 20000, request_id => 'rq-d')$$, 'UC007', NULL),
($$SELECT * FROM credits.credit_debit('bi', 'ann', 'gpt-4o', 4000, 1000, 'rq-h')$$, 'UC007', NULL),

-- credit_reserve(org_id, user_id, model, input_tokens, max_output_tokens, request_id, ttl)
($$SELECT * FROM credits.credit_reserve(NULL, 'ann', 'gpt-4o', 1, 1)$$, '22004', 'org_id must not be null'),
($$SELECT * FROM credits.credit_reserve('bi', NULL, 'gpt-4o', 1, 1)$$, '22004', 'user_id must not be null'),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', NULL, 1, 1)$$, '22004', 'model must not be null'),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', NULL, 1)$$, '22004', 'input_tokens must not be null'),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 1, NULL)$$, '22004', 'max_output_tokens must not be null'),
($$SELECT * FROM credits.credit_reserve('', 'ann', 'gpt-4o', 1, 1)$$, '22023', 'org_id must not be empty'),
($$SELECT * FROM credits.credit_reserve('bi', repeat('u', 256), 'gpt-4o', 1, 1)$$, '22023', 'user_id is too long'),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', '', 1, 1)$$, '22023', 'model must not be empty'),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 1, 1, '')$$, '22023', 'request_id must not be empty'),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 1, 1, repeat('r', 256))$$, '22023', 'request_id is too long'),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', -1, 1)$$, '22023', 'input_tokens must not be negative'),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 1, -1)$$, '22023', 'max_output_tokens must not be negative'),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 1, 1, ttl => '0 seconds')$$, '22023', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 1, 1, ttl => '-1 day')$$, '22023', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 1, 1, ttl => '1 month -40 days')$$, '22023', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 1, 1, ttl => '100000000 years')$$, '22023', NULL),
($$SELECT * FROM credits.credit_reserve('nope', 'ann', 'gpt-4o', 1, 1)$$, 'UC004', 'unknown org "nope"'),
($$SELECT * FROM credits.credit_reserve('bi', 'stranger', 'gpt-4o', 1, 1)$$, 'UC005', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'cat', 'gpt-4o-mini', 1, 1)$$, 'UC005', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'jo', 'gpt-4o', 1, 1)$$, 'UC005', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'no-such-model', 1, 1)$$, 'UC002', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'retired-1', 1, 1)$$, 'UC002', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gemini-2.5-pro', 1, 1)$$, 'UC003', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'claude-opus-4-1', 9223372036854775807, 0)$$, '22003', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 4000, 1001, 'rq-h')$$, 'UC007', 'request_id "rq-h" of org "bi" was already used with different arguments'),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'claude-sonnet-4-5', 4000, 1000, 'rq-h')$$, 'UC007', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'ben', 'gpt-4o', 4000, 1000, 'rq-h')$$, 'UC007', NULL),
($$SELECT * FROM credits.credit_reserve('bi', 'ann', 'gpt-4o', 20000, 1000, 'rq-d')$$, 'UC007', NULL),
($$SELECT * FROM credits.credit_reserve('bz', 'zed', 'nofb-pro', 1, 1)$$, 'UC001', NULL),

-- credit_settle(hold_id, input_tokens, output_tokens)
($$SELECT * FROM credits.credit_settle(NULL, 1, 1)$$, '22004', 'hold_id must not be null'),
($$SELECT * FROM credits.credit_settle(pg_temp.hid('open'), NULL, 1)$$, '22004', 'input_tokens must not be null'),
($$SELECT * FROM credits.credit_settle(pg_temp.hid('open'), 1, NULL)$$, '22004', 'output_tokens must not be null'),
($$SELECT * FROM credits.credit_settle(pg_temp.hid('open'), -1, 1)$$, '22023', 'input_tokens must not be negative'),
($$SELECT * FROM credits.credit_settle(pg_temp.hid('open'), 1, -1)$$, '22023', 'output_tokens must not be negative'),
($$SELECT * FROM credits.credit_settle(-1, 1, 1)$$, 'UC006', 'unknown hold -1'),
($$SELECT * FROM credits.credit_settle(9223372036854775807, 1, 1)$$, 'UC006', 'unknown hold 9223372036854775807'),
($$SELECT * FROM credits.credit_settle(pg_temp.hid('settled'), 1, 1)$$, 'UC006', NULL),
($$SELECT * FROM credits.credit_settle(pg_temp.hid('released'), 1, 1)$$, 'UC006', NULL),
($$SELECT * FROM credits.credit_settle(pg_temp.hid('open'), 0, 9223372036854775807)$$, '22003', NULL),

-- credit_release(hold_id)
($$SELECT credits.credit_release(NULL)$$, '22004', 'hold_id must not be null'),
($$SELECT credits.credit_release(-1)$$, 'UC006', 'unknown hold -1'),
($$SELECT credits.credit_release(pg_temp.hid('settled'))$$, 'UC006', NULL),
($$SELECT credits.credit_release(pg_temp.hid('released'))$$, 'UC006', NULL),
($$SELECT credits.credit_release(pg_temp.hid('expired'))$$, 'UC006', NULL),

-- allowed_models(org_id, user_id)
($$SELECT * FROM credits.allowed_models(NULL)$$, '22004', 'org_id must not be null'),
($$SELECT * FROM credits.allowed_models('')$$, '22023', 'org_id must not be empty'),
($$SELECT * FROM credits.allowed_models(repeat('o', 256))$$, '22023', 'org_id is too long'),
($$SELECT * FROM credits.allowed_models('nope')$$, 'UC004', 'unknown org "nope"'),
($$SELECT * FROM credits.allowed_models('bi', '')$$, '22023', 'user_id must not be empty'),
($$SELECT * FROM credits.allowed_models('bi', repeat('u', 256))$$, '22023', 'user_id is too long'),
($$SELECT * FROM credits.allowed_models('bi', 'stranger')$$, 'UC005', NULL),
($$SELECT * FROM credits.allowed_models('bi', 'cat')$$, 'UC005', NULL),

-- resolve_model(org_id, user_id, model)
($$SELECT credits.resolve_model(NULL, 'ann', 'gpt-4o')$$, '22004', 'org_id must not be null'),
($$SELECT credits.resolve_model('bi', NULL, 'gpt-4o')$$, '22004', 'user_id must not be null'),
($$SELECT credits.resolve_model('bi', 'ann', NULL)$$, '22004', 'model must not be null'),
($$SELECT credits.resolve_model('bi', 'ann', '')$$, '22023', 'model must not be empty'),
($$SELECT credits.resolve_model('bi', repeat('u', 256), 'gpt-4o')$$, '22023', 'user_id is too long'),
($$SELECT credits.resolve_model('nope', 'ann', 'gpt-4o')$$, 'UC004', NULL),
($$SELECT credits.resolve_model('bi', 'stranger', 'gpt-4o')$$, 'UC005', NULL),
($$SELECT credits.resolve_model('bi', 'cat', 'gpt-4o')$$, 'UC005', NULL),
($$SELECT credits.resolve_model('bi', 'ann', 'no-such-model')$$, 'UC002', NULL),
($$SELECT credits.resolve_model('bi', 'ann', 'retired-1')$$, 'UC002', NULL),
($$SELECT credits.resolve_model('bi', 'ann', 'gemini-2.5-pro')$$, 'UC003', NULL),
($$SELECT credits.resolve_model('bz', 'zed', 'nofb-pro')$$, 'UC001', NULL),

-- cost(model, input_tokens, output_tokens)
($$SELECT credits.cost(NULL, 1, 1)$$, '22004', 'model must not be null'),
($$SELECT credits.cost('gpt-4o', NULL, 1)$$, '22004', 'input_tokens must not be null'),
($$SELECT credits.cost('gpt-4o', 1, NULL)$$, '22004', 'output_tokens must not be null'),
($$SELECT credits.cost('', 1)$$, '22023', 'model must not be empty'),
($$SELECT credits.cost(repeat('m', 256), 1)$$, '22023', 'model is too long'),
($$SELECT credits.cost('gpt-4o', -1)$$, '22023', 'input_tokens must not be negative'),
($$SELECT credits.cost('gpt-4o', 1, -1)$$, '22023', 'output_tokens must not be negative'),
($$SELECT credits.cost('no-such-model', 1)$$, 'UC002', NULL),
($$SELECT credits.cost('retired-1', 1)$$, 'UC002', NULL),
($$SELECT credits.cost('claude-opus-4-1', 9223372036854775807)$$, '22003', NULL),

-- create_org(org_id, name, allowance_per_user, billing_anchor, period, time_zone)
($$SELECT * FROM credits.create_org(NULL)$$, '22004', 'org_id must not be null'),
($$SELECT * FROM credits.create_org('')$$, '22023', 'org_id must not be empty'),
($$SELECT * FROM credits.create_org(repeat('o', 256))$$, '22023', 'org_id is too long'),
($$SELECT * FROM credits.create_org('bi')$$, '23505', 'org "bi" already exists'),
($$SELECT * FROM credits.create_org('new', allowance_per_user => NULL)$$, '22004', 'allowance_per_user must not be null'),
($$SELECT * FROM credits.create_org('new', allowance_per_user => -1)$$, '22023', 'allowance_per_user must not be negative'),
($$SELECT * FROM credits.create_org('new', allowance_per_user => '-0.000001')$$, '22023', 'allowance_per_user must not be negative'),
($$SELECT * FROM credits.create_org('new', billing_anchor => NULL)$$, '22004', 'billing_anchor must not be null'),
($$SELECT * FROM credits.create_org('new', period => NULL)$$, '22004', 'period must not be null'),
($$SELECT * FROM credits.create_org('new', time_zone => NULL)$$, '22004', 'time_zone must not be null'),
($$SELECT * FROM credits.create_org('new', period => '0 seconds')$$, '22023', NULL),
($$SELECT * FROM credits.create_org('new', period => '-1 day')$$, '22023', NULL),
($$SELECT * FROM credits.create_org('new', period => '1 month -40 days')$$, '22023', NULL),
($$SELECT * FROM credits.create_org('new', time_zone => 'Mars/Olympus')$$, '22023', NULL),
($$SELECT * FROM credits.create_org('new', allowance_per_user => 'abc')$$, '22P02', NULL),
($$SELECT * FROM credits.create_org('new', allowance_per_user => '1.0000001')$$, '22P02', NULL),

-- enable_provider(org_id, provider) / disable_provider(org_id, provider)
($$SELECT credits.enable_provider(NULL, 'openai')$$, '22004', 'org_id must not be null'),
($$SELECT credits.enable_provider('bi', NULL)$$, '22004', 'provider must not be null'),
($$SELECT credits.enable_provider('bi', '')$$, '22023', 'provider must not be empty'),
($$SELECT credits.enable_provider('bi', repeat('p', 256))$$, '22023', 'provider is too long'),
($$SELECT credits.enable_provider('nope', 'openai')$$, 'UC004', 'unknown org "nope"'),
($$SELECT credits.enable_provider('bi', 'nope')$$, '22023', 'unknown provider "nope"'),
($$SELECT credits.disable_provider(NULL, 'openai')$$, '22004', 'org_id must not be null'),
($$SELECT credits.disable_provider('bi', NULL)$$, '22004', 'provider must not be null'),
($$SELECT credits.disable_provider('', 'openai')$$, '22023', 'org_id must not be empty'),
($$SELECT credits.disable_provider('nope', 'openai')$$, 'UC004', 'unknown org "nope"'),
($$SELECT credits.disable_provider('bi', 'nope')$$, '22023', 'unknown provider "nope"'),

-- add_member(org_id, user_id, allowance, cap) / remove_member(org_id, user_id)
($$SELECT credits.add_member(NULL, 'new')$$, '22004', 'org_id must not be null'),
($$SELECT credits.add_member('bi', NULL)$$, '22004', 'user_id must not be null'),
($$SELECT credits.add_member('', 'new')$$, '22023', 'org_id must not be empty'),
($$SELECT credits.add_member('bi', '')$$, '22023', 'user_id must not be empty'),
($$SELECT credits.add_member('bi', repeat('u', 256))$$, '22023', 'user_id is too long'),
($$SELECT credits.add_member('nope', 'new')$$, 'UC004', 'unknown org "nope"'),
($$SELECT credits.add_member('bi', 'new', -1)$$, '22023', 'allowance must not be negative'),
($$SELECT credits.add_member('bi', 'new', cap => '-0.5')$$, '22023', 'cap must not be negative'),
($$SELECT credits.add_member('bi', 'new', '9223372036854.775808')$$, '22003', NULL),
($$SELECT credits.remove_member(NULL, 'ann')$$, '22004', 'org_id must not be null'),
($$SELECT credits.remove_member('bi', NULL)$$, '22004', 'user_id must not be null'),
($$SELECT credits.remove_member('bi', '')$$, '22023', 'user_id must not be empty'),
($$SELECT credits.remove_member('nope', 'ann')$$, 'UC004', NULL),
($$SELECT credits.remove_member('bi', 'stranger')$$, 'UC005', NULL),
($$SELECT credits.remove_member('bi', 'cat')$$, 'UC005', NULL),
($$SELECT credits.remove_member('bi', 'jo')$$, 'UC005', NULL),

-- set_plan(org_id, allowance_per_user)
($$SELECT credits.set_plan(NULL, 1)$$, '22004', 'org_id must not be null'),
($$SELECT credits.set_plan('bi', NULL)$$, '22004', 'allowance_per_user must not be null'),
($$SELECT credits.set_plan('bi', -1)$$, '22023', 'allowance_per_user must not be negative'),
($$SELECT credits.set_plan('nope', 1)$$, 'UC004', NULL),
($$SELECT credits.set_plan('bi', 'abc')$$, '22P02', NULL),

-- recharge(org_id, amount, expires_at, note)
($$SELECT * FROM credits.recharge(NULL)$$, '22004', 'org_id must not be null'),
($$SELECT * FROM credits.recharge(NULL, '1')$$, '22004', 'org_id must not be null'),
($$SELECT * FROM credits.recharge('', '1')$$, '22023', 'org_id must not be empty'),
($$SELECT * FROM credits.recharge('nope')$$, 'UC004', 'unknown org "nope"'),
($$SELECT * FROM credits.recharge('nope', '1')$$, 'UC004', NULL),
($$SELECT * FROM credits.recharge('bi', '0')$$, '22023', 'amount must be positive'),
($$SELECT * FROM credits.recharge('bi', '-1')$$, '22023', 'amount must be positive'),
($$SELECT * FROM credits.recharge('bi', '1', now() - interval '1 day')$$, '22023', 'expires_at must be in the future'),
($$SELECT * FROM credits.recharge('bi', '1', now())$$, '22023', 'expires_at must be in the future'),
($$SELECT * FROM credits.recharge('bi', NULL, now() + interval '1 day')$$, '22023', NULL),
($$SELECT * FROM credits.recharge('bi', '1e3')$$, '22P02', NULL),
($$SELECT * FROM credits.recharge('bi', '9223372036854.775807')$$, '22003', NULL),

-- add_provider(provider, display_name)
($$SELECT credits.add_provider(NULL)$$, '22004', 'provider must not be null'),
($$SELECT credits.add_provider('')$$, '22023', 'provider must not be empty'),
($$SELECT credits.add_provider(repeat('p', 256))$$, '22023', 'provider is too long'),

-- upsert_model(provider, model, input_price, output_price, request_price, is_fallback, display_name)
($$SELECT credits.upsert_model(NULL, 'x-1', 1, 1)$$, '22004', 'provider must not be null'),
($$SELECT credits.upsert_model('openai', NULL, 1, 1)$$, '22004', 'model must not be null'),
($$SELECT credits.upsert_model('openai', 'x-1', NULL, 1)$$, '22004', 'input_price must not be null'),
($$SELECT credits.upsert_model('openai', 'x-1', 1, NULL)$$, '22004', 'output_price must not be null'),
($$SELECT credits.upsert_model('openai', 'x-1', 1, 1, NULL)$$, '22004', 'request_price must not be null'),
($$SELECT credits.upsert_model('openai', 'x-1', 1, 1, 0, NULL)$$, '22004', 'is_fallback must not be null'),
($$SELECT credits.upsert_model('', 'x-1', 1, 1)$$, '22023', 'provider must not be empty'),
($$SELECT credits.upsert_model('openai', '', 1, 1)$$, '22023', 'model must not be empty'),
($$SELECT credits.upsert_model('openai', repeat('m', 256), 1, 1)$$, '22023', 'model is too long'),
($$SELECT credits.upsert_model('nope', 'x-1', 1, 1)$$, '22023', 'unknown provider "nope"'),
($$SELECT credits.upsert_model('openai', 'x-1', -1, 1)$$, '22023', 'input_price must not be negative'),
($$SELECT credits.upsert_model('openai', 'x-1', 1, '-0.000001')$$, '22023', 'output_price must not be negative'),
($$SELECT credits.upsert_model('openai', 'x-1', 1, 1, -5)$$, '22023', 'request_price must not be negative'),
($$SELECT credits.upsert_model('openai', 'x-1', '1.0000001', 1)$$, '22P02', NULL),

-- reset_due(as_of), expire_holds(as_of), schedule_jobs()
($$SELECT credits.reset_due(NULL)$$, '22004', 'as_of must not be null'),
($$SELECT credits.expire_holds(NULL)$$, '22004', 'as_of must not be null'),
($$SELECT credits.schedule_jobs()$$, '55000', 'pg_cron is not installed in this database'),

-- usage(org_id, since, until)
($$SELECT * FROM credits.usage(NULL)$$, '22004', 'org_id must not be null'),
($$SELECT * FROM credits.usage('')$$, '22023', 'org_id must not be empty'),
($$SELECT * FROM credits.usage(repeat('o', 256))$$, '22023', 'org_id is too long'),
($$SELECT * FROM credits.usage('nope')$$, 'UC004', 'unknown org "nope"'),

-- billing_period(billing_anchor, period, time_zone, as_of)
($$SELECT * FROM credits.billing_period(NULL, '1 day', 'UTC', now())$$, '22004', 'billing_anchor must not be null'),
($$SELECT * FROM credits.billing_period(now(), NULL, 'UTC', now())$$, '22004', 'period must not be null'),
($$SELECT * FROM credits.billing_period(now(), '1 day', NULL, now())$$, '22004', 'time_zone must not be null'),
($$SELECT * FROM credits.billing_period(now(), '1 day', 'UTC', NULL)$$, '22004', 'as_of must not be null'),
($$SELECT * FROM credits.billing_period(now(), '0 seconds', 'UTC', now())$$, '22023', NULL),
($$SELECT * FROM credits.billing_period(now(), '-1 day', 'UTC', now())$$, '22023', NULL),
($$SELECT * FROM credits.billing_period(now(), '1 month -40 days', 'UTC', now())$$, '22023', NULL),
($$SELECT * FROM credits.billing_period(now(), '1 day', 'Mars/Olympus', now())$$, '22023', NULL),

-- the credit type: literals, casts, arithmetic
($$SELECT 'abc'::credits.credit$$, '22P02', NULL),
($$SELECT '1.0000001'::credits.credit$$, '22P02', NULL),
($$SELECT '1e3'::credits.credit$$, '22P02', NULL),
($$SELECT ''::credits.credit$$, '22P02', NULL),
($$SELECT ' '::credits.credit$$, '22P02', NULL),
($$SELECT '1.2.3'::credits.credit$$, '22P02', NULL),
($$SELECT '--1'::credits.credit$$, '22P02', NULL),
($$SELECT 'NaN'::credits.credit$$, '22P02', NULL),
($$SELECT '9223372036854.775808'::credits.credit$$, '22003', NULL),
($$SELECT '-9223372036854.775809'::credits.credit$$, '22003', NULL),
($$SELECT 1.0000001::credits.credit$$, '22023', NULL),
($$SELECT 'NaN'::numeric::credits.credit$$, '0A000', NULL),
($$SELECT 9223372036855::bigint::credits.credit$$, '22003', NULL),
($$SELECT '9223372036854.775807'::credits.credit + '0.000001'$$, '22003', NULL),
($$SELECT -'-9223372036854.775808'::credits.credit$$, '22003', NULL),
($$SELECT '9223372036854.775807'::credits.credit * 2$$, '22003', NULL),
($$SELECT '1'::credits.credit / 0$$, '22012', NULL),
($$SELECT sum(c) FROM (VALUES ('9223372036854.775807'::credits.credit), ('1')) v(c)$$, '22003', NULL),

-- the ledger is append-only; credits.hold_ttl must be positive
($$UPDATE credits.ledger SET note = 'edited'$$, '55000', NULL),
($$DELETE FROM credits.ledger WHERE org_id = 'bi'$$, '55000', NULL),
($$TRUNCATE credits.ledger$$, '55000', NULL),
($$SET LOCAL credits.hold_ttl = 0$$, '22023', NULL),
($$SET LOCAL credits.hold_ttl = -1$$, '22023', NULL);

SELECT plan((SELECT count(*) FROM cases)::int + 19);

-- the fixtures are what the cases assume
SELECT results_eq(
    $$SELECT k, status FROM fx JOIN credits.holds USING (hold_id) ORDER BY k$$,
    $$VALUES ('expired'::text, 'expired'::text), ('open', 'open'), ('released', 'released'),
             ('settled', 'settled')$$,
    'fixture: holds open, settled, released and expired');
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE org_id = 'bi' AND request_id = 'rq-d' AND kind = 'debit'),
          1, 'fixture: request_id rq-d is a debit');
SELECT results_eq(
    $$SELECT org_id, available FROM credits.pool_status WHERE org_id IN ('bz', 'bj') ORDER BY org_id$$,
    $$VALUES ('bj'::text, '10'::credits.credit), ('bz', '0'::credits.credit)$$,
    'fixture: bz has nothing (so nofb-pro has to fall back), bj has 10');

-- ---------------------------------------------------------------------------
-- Snapshot, then every case
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE snap_ledger AS SELECT * FROM credits.ledger;
CREATE TEMP TABLE snap_pools AS SELECT * FROM credits.pools;
CREATE TEMP TABLE snap_pool_status AS SELECT * FROM credits.pool_status;
CREATE TEMP TABLE snap_holds AS SELECT * FROM credits.holds;
CREATE TEMP TABLE snap_usage AS SELECT * FROM credits.member_usage;
CREATE TEMP TABLE snap_grants AS SELECT * FROM credits.grants;
CREATE TEMP TABLE snap_draws AS SELECT * FROM credits.grant_draws;
CREATE TEMP TABLE snap_events AS SELECT event_id FROM credits.events;
CREATE TEMP TABLE snap_periods AS SELECT * FROM credits.periods;
CREATE TEMP TABLE snap_orgs AS SELECT * FROM credits.orgs;
CREATE TEMP TABLE snap_org_providers AS SELECT * FROM credits.org_providers;
CREATE TEMP TABLE snap_members AS SELECT * FROM credits.members;
CREATE TEMP TABLE snap_models AS SELECT * FROM credits.models;
CREATE TEMP TABLE snap_providers AS SELECT * FROM credits.providers;
CREATE TEMP TABLE snap_ttl AS SELECT current_setting('credits.hold_ttl') AS hold_ttl;

SELECT throws_ok(c.sql, c.sqlstate, c.msg, c.id || ': ' || c.sql) FROM cases c ORDER BY c.id;

-- ---------------------------------------------------------------------------
-- Nothing changed
-- ---------------------------------------------------------------------------
SELECT results_eq(
    $$SELECT entry_id, org_id, kind, user_id, model, input_tokens, output_tokens, cost, charged,
             shortfall, from_allowance, from_topup, topup_change, reserved_change, available_after,
             request_id, hold_id, grant_id, note
        FROM credits.ledger ORDER BY entry_id$$,
    $$SELECT entry_id, org_id, kind, user_id, model, input_tokens, output_tokens, cost, charged,
             shortfall, from_allowance, from_topup, topup_change, reserved_change, available_after,
             request_id, hold_id, grant_id, note
        FROM snap_ledger ORDER BY entry_id$$,
    'after the cases: the ledger is unchanged (no entry added, none altered)');
SELECT results_eq(
    $$SELECT org_id, period_start, period_end, allowance, allowance_used, topup, topup_used, reserved,
             calls, shortfall, alert_level, next_grant_expiry, next_hold_expiry
        FROM credits.pools ORDER BY org_id$$,
    $$SELECT org_id, period_start, period_end, allowance, allowance_used, topup, topup_used, reserved,
             calls, shortfall, alert_level, next_grant_expiry, next_hold_expiry
        FROM snap_pools ORDER BY org_id$$,
    'after the cases: no pool row changed');
SELECT results_eq(
    $$SELECT * FROM credits.pool_status ORDER BY org_id$$,
    $$SELECT * FROM snap_pool_status ORDER BY org_id$$,
    'after the cases: pool_status is unchanged');
SELECT results_eq(
    $$SELECT hold_id, org_id, user_id, requested_model, model, fell_back, input_tokens,
             max_output_tokens, estimate, reserved, available_after, status, expires_at, ended_at,
             request_id
        FROM credits.holds ORDER BY hold_id$$,
    $$SELECT hold_id, org_id, user_id, requested_model, model, fell_back, input_tokens,
             max_output_tokens, estimate, reserved, available_after, status, expires_at, ended_at,
             request_id
        FROM snap_holds ORDER BY hold_id$$,
    'after the cases: no hold added or changed');
SELECT results_eq(
    $$SELECT org_id, user_id, used, reserved FROM credits.member_usage ORDER BY org_id, user_id$$,
    $$SELECT org_id, user_id, used, reserved FROM snap_usage ORDER BY org_id, user_id$$,
    'after the cases: member usage is unchanged');
SELECT results_eq(
    $$SELECT g.grant_id, g.org_id, g.amount, g.remaining, g.expired_amount, g.expires_at, g.note,
             (SELECT count(*) FROM credits.grant_draws d WHERE d.grant_id = g.grant_id)
        FROM credits.grants g ORDER BY g.grant_id$$,
    $$SELECT g.grant_id, g.org_id, g.amount, g.remaining, g.expired_amount, g.expires_at, g.note,
             (SELECT count(*) FROM snap_draws d WHERE d.grant_id = g.grant_id)
        FROM snap_grants g ORDER BY g.grant_id$$,
    'after the cases: no grant added or drawn');
SELECT results_eq(
    $$SELECT event_id FROM credits.events ORDER BY event_id$$,
    $$SELECT event_id FROM snap_events ORDER BY event_id$$,
    'after the cases: no event was written');
SELECT is((SELECT count(*)::int FROM credits.periods), (SELECT count(*)::int FROM snap_periods),
          'after the cases: no period was closed');
SELECT results_eq(
    $$SELECT org_id, name, allowance_per_user, billing_anchor, period, time_zone, thresholds
        FROM credits.orgs ORDER BY org_id$$,
    $$SELECT org_id, name, allowance_per_user, billing_anchor, period, time_zone, thresholds
        FROM snap_orgs ORDER BY org_id$$,
    'after the cases: no org added or changed');
SELECT results_eq(
    $$SELECT org_id, provider FROM credits.org_providers ORDER BY org_id, provider$$,
    $$SELECT org_id, provider FROM snap_org_providers ORDER BY org_id, provider$$,
    'after the cases: no provider enabled or disabled');
SELECT results_eq(
    $$SELECT org_id, user_id, allowance, cap, active, removed_at FROM credits.members ORDER BY org_id, user_id$$,
    $$SELECT org_id, user_id, allowance, cap, active, removed_at FROM snap_members ORDER BY org_id, user_id$$,
    'after the cases: no member added, changed or removed');
SELECT results_eq(
    $$SELECT model, provider, display_name, input_price, output_price, request_price, is_fallback,
             active, shipped
        FROM credits.models ORDER BY model$$,
    $$SELECT model, provider, display_name, input_price, output_price, request_price, is_fallback,
             active, shipped
        FROM snap_models ORDER BY model$$,
    'after the cases: no model added or changed');
SELECT results_eq(
    $$SELECT provider, display_name, shipped FROM credits.providers ORDER BY provider$$,
    $$SELECT provider, display_name, shipped FROM snap_providers ORDER BY provider$$,
    'after the cases: no provider added or changed');
SELECT is(current_setting('credits.hold_ttl'), (SELECT hold_ttl FROM snap_ttl),
          'after the cases: credits.hold_ttl is unchanged');
SELECT is_empty($$SELECT * FROM credits.verify()$$, 'after the cases: verify() finds nothing');
-- the request_ids of failed calls were not used up
SELECT is((SELECT count(*)::int FROM credits.ledger WHERE request_id IN ('rq-big', '')), 0,
          'after the cases: no failed call left a request_id behind');

SELECT * FROM finish();
ROLLBACK;
