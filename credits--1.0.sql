-- credits--1.0.sql: assembled by the Makefile from src/sql/*.sql; edit those.

\echo Use "CREATE EXTENSION credits" to load this file. \quit
-- ---------------------------------------------------------------------------
-- The credits.credit type: a signed 64-bit count of micro-credits.
-- It shares int8's representation, so comparisons, hashing, sorting and
-- binary I/O are PostgreSQL's int8 functions, called through thin C entry
-- points of this module (a LANGUAGE internal alias would be looked up by
-- name on every use).
-- ---------------------------------------------------------------------------

CREATE TYPE credits.credit;

CREATE FUNCTION credits.credit_in(cstring) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_out(credits.credit) RETURNS cstring
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_recv(internal) RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credit_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_send(credits.credit) RETURNS bytea
    AS 'MODULE_PATHNAME', 'credit_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE credits.credit (
    INPUT = credits.credit_in,
    OUTPUT = credits.credit_out,
    RECEIVE = credits.credit_recv,
    SEND = credits.credit_send,
    INTERNALLENGTH = 8,
    PASSEDBYVALUE,
    ALIGNMENT = double,
    STORAGE = plain,
    CATEGORY = 'N'
);
COMMENT ON TYPE credits.credit IS
    'exact credit amount: signed 64-bit count of micro-credits (6 decimal places)';

-- comparisons (int8's own functions)
CREATE FUNCTION credits.credit_eq(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_eq' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_ne(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_ne' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_lt(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_lt' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_le(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_le' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_gt(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_gt' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_ge(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_ge' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_cmp(credits.credit, credits.credit) RETURNS integer
    AS 'MODULE_PATHNAME', 'credit_cmp' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_sortsupport(internal) RETURNS void
    AS 'MODULE_PATHNAME', 'credit_sortsupport' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_hash(credits.credit) RETURNS integer
    AS 'MODULE_PATHNAME', 'credit_hash' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_hash_extended(credits.credit, bigint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'credit_hash_extended' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_smaller(credits.credit, credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credit_smaller' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_larger(credits.credit, credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credit_larger' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR credits.= (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_eq,
    COMMUTATOR = OPERATOR(credits.=), NEGATOR = OPERATOR(credits.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
CREATE OPERATOR credits.<> (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_ne,
    COMMUTATOR = OPERATOR(credits.<>), NEGATOR = OPERATOR(credits.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR credits.< (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_lt,
    COMMUTATOR = OPERATOR(credits.>), NEGATOR = OPERATOR(credits.>=),
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR credits.<= (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_le,
    COMMUTATOR = OPERATOR(credits.>=), NEGATOR = OPERATOR(credits.>),
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR credits.> (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_gt,
    COMMUTATOR = OPERATOR(credits.<), NEGATOR = OPERATOR(credits.<=),
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR credits.>= (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_ge,
    COMMUTATOR = OPERATOR(credits.<=), NEGATOR = OPERATOR(credits.<),
    RESTRICT = scalargesel, JOIN = scalargejoinsel);

CREATE OPERATOR CLASS credits.credit_ops
    DEFAULT FOR TYPE credits.credit USING btree AS
        OPERATOR 1 credits.<,
        OPERATOR 2 credits.<=,
        OPERATOR 3 credits.=,
        OPERATOR 4 credits.>=,
        OPERATOR 5 credits.>,
        FUNCTION 1 credits.credit_cmp(credits.credit, credits.credit),
        FUNCTION 2 credits.credit_sortsupport(internal);

CREATE OPERATOR CLASS credits.credit_hash_ops
    DEFAULT FOR TYPE credits.credit USING hash AS
        OPERATOR 1 credits.=,
        FUNCTION 1 credits.credit_hash(credits.credit),
        FUNCTION 2 credits.credit_hash_extended(credits.credit, bigint);

-- arithmetic: every overflow is an error (22003)
CREATE FUNCTION credits.credit_pl(credits.credit, credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_mi(credits.credit, credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_um(credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_mul_int8(credits.credit, bigint) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.int8_mul_credit(bigint, credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_div_int8(credits.credit, bigint) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR credits.+ (LEFTARG = credits.credit, RIGHTARG = credits.credit,
    PROCEDURE = credits.credit_pl, COMMUTATOR = OPERATOR(credits.+));
CREATE OPERATOR credits.- (LEFTARG = credits.credit, RIGHTARG = credits.credit,
    PROCEDURE = credits.credit_mi);
CREATE OPERATOR credits.- (RIGHTARG = credits.credit, PROCEDURE = credits.credit_um);
CREATE OPERATOR credits.* (LEFTARG = credits.credit, RIGHTARG = bigint,
    PROCEDURE = credits.credit_mul_int8, COMMUTATOR = OPERATOR(credits.*));
CREATE OPERATOR credits.* (LEFTARG = bigint, RIGHTARG = credits.credit,
    PROCEDURE = credits.int8_mul_credit, COMMUTATOR = OPERATOR(credits.*));
CREATE OPERATOR credits./ (LEFTARG = credits.credit, RIGHTARG = bigint,
    PROCEDURE = credits.credit_div_int8);

-- Only these mixed operators exist, on purpose: with the implicit integer
-- casts below, an operator such as credit * numeric or credit / credit would
-- make plain expressions like 2 * 1.5 or c / 2 ambiguous for sessions that
-- have the credits schema on their search_path.
COMMENT ON FUNCTION credits.credit_div_int8(credits.credit, bigint) IS
    'credit / bigint, rounded half away from zero to the micro-credit';

-- casts: integers convert implicitly into credits (so a literal such as 100
-- works as an argument); numeric converts on assignment or explicitly (pass
-- '2.5' or 2.5::credits.credit to a function).  An implicit numeric cast
-- would make numeric-and-bigint expressions such as 1.5 / 2::bigint
-- ambiguous for sessions with the credits schema on their search_path.
-- Credits convert to numeric and bigint on assignment or explicitly.
CREATE FUNCTION credits.credit_numeric(credits.credit) RETURNS numeric
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.numeric_credit(numeric) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.int8_credit(bigint) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.int4_credit(integer) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_int8(credits.credit) RETURNS bigint
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE CAST (credits.credit AS numeric) WITH FUNCTION credits.credit_numeric(credits.credit) AS ASSIGNMENT;
CREATE CAST (numeric AS credits.credit) WITH FUNCTION credits.numeric_credit(numeric) AS ASSIGNMENT;
CREATE CAST (bigint AS credits.credit) WITH FUNCTION credits.int8_credit(bigint) AS IMPLICIT;
CREATE CAST (integer AS credits.credit) WITH FUNCTION credits.int4_credit(integer) AS IMPLICIT;
CREATE CAST (credits.credit AS bigint) WITH FUNCTION credits.credit_int8(credits.credit) AS ASSIGNMENT;

COMMENT ON FUNCTION credits.numeric_credit(numeric) IS
    'exact conversion; more than 6 decimal places is an error, never rounded';
COMMENT ON FUNCTION credits.credit_int8(credits.credit) IS
    'whole credits, rounded half away from zero (as numeric to bigint)';

-- aggregates
CREATE FUNCTION credits.credit_avg_accum(bigint[], credits.credit) RETURNS bigint[]
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_avg_combine(bigint[], bigint[]) RETURNS bigint[]
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_avg_final(bigint[]) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_sum_final(bigint[]) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- sum and avg add up in 128 bits ({count, low, high} in a bigint[3]): only a
-- result out of range is an error, whatever the order of the rows.
CREATE AGGREGATE credits.sum(credits.credit) (
    SFUNC = credits.credit_avg_accum, STYPE = bigint[], INITCOND = '{0,0,0}',
    COMBINEFUNC = credits.credit_avg_combine, FINALFUNC = credits.credit_sum_final,
    PARALLEL = SAFE);
CREATE AGGREGATE credits.min(credits.credit) (
    SFUNC = credits.credit_smaller, STYPE = credits.credit,
    COMBINEFUNC = credits.credit_smaller, SORTOP = OPERATOR(credits.<), PARALLEL = SAFE);
CREATE AGGREGATE credits.max(credits.credit) (
    SFUNC = credits.credit_larger, STYPE = credits.credit,
    COMBINEFUNC = credits.credit_larger, SORTOP = OPERATOR(credits.>), PARALLEL = SAFE);
CREATE AGGREGATE credits.avg(credits.credit) (
    SFUNC = credits.credit_avg_accum, STYPE = bigint[], INITCOND = '{0,0,0}',
    COMBINEFUNC = credits.credit_avg_combine, FINALFUNC = credits.credit_avg_final,
    PARALLEL = SAFE);

COMMENT ON AGGREGATE credits.sum(credits.credit) IS
    'exact sum; a total out of range is an error (22003)';
COMMENT ON AGGREGATE credits.min(credits.credit) IS 'smallest amount';
COMMENT ON AGGREGATE credits.max(credits.credit) IS 'largest amount';
COMMENT ON AGGREGATE credits.avg(credits.credit) IS
    'mean, rounded half away from zero to the micro-credit';
-- ---------------------------------------------------------------------------
-- Internal helpers shared by the admin functions
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits._check_id(value text, name text) RETURNS text
    AS 'MODULE_PATHNAME', 'credits_check_id' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION credits._check_id(text, text) IS
    'internal: the identifier, or 22004 when NULL and 22023 when empty or longer than 255 bytes';

CREATE FUNCTION credits._check_amount(value credits.credit, name text) RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credits_check_amount' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION credits._check_amount(credits.credit, text) IS
    'internal: the amount, or 22004 when NULL and 22023 when negative';

-- The C code passes amounts to its queries as bigint micro-credits (a type
-- whose OID is fixed); this reinterprets them, at no cost.
CREATE FUNCTION credits._micro(bigint) RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credit_from_micro' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION credits._micro(bigint) IS
    'internal: a count of micro-credits as a credit amount';

CREATE FUNCTION credits.valid_period(interval) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credits_valid_period' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION credits.valid_period(interval) IS
    'true when the interval can be a billing period: longer than zero, no negative part';

CREATE FUNCTION credits.billing_period(billing_anchor timestamptz, period interval,
                                       time_zone text, as_of timestamptz DEFAULT now(),
                                       OUT period_no bigint, OUT period_start timestamptz,
                                       OUT period_end timestamptz)
    AS 'MODULE_PATHNAME', 'credits_billing_period' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION credits.billing_period(timestamptz, interval, text, timestamptz) IS
    'the billing period containing as_of: period k is [anchor + k*period, anchor + (k+1)*period) in time_zone';

-- ---------------------------------------------------------------------------
-- Catalog: providers and models
--
-- Rows shipped by the extension carry shipped = true until they are edited.
-- pg_dump saves every row that is not shipped-and-unchanged; on restore, a
-- saved row whose key matches a shipped row replaces that row's values.
-- ---------------------------------------------------------------------------

CREATE TABLE credits.providers (
    provider     text PRIMARY KEY
                 CHECK (provider <> '' AND octet_length(provider) <= 255),
    display_name text NOT NULL,
    shipped      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE credits.providers IS 'AI providers (openai, anthropic, google, ...)';
COMMENT ON COLUMN credits.providers.shipped IS
    'row as shipped by the extension and never edited; cleared by any UPDATE';

CREATE TABLE credits.models (
    model         text PRIMARY KEY CHECK (model <> '' AND octet_length(model) <= 255),
    provider      text NOT NULL REFERENCES credits.providers ON UPDATE CASCADE,
    display_name  text NOT NULL,
    input_price   credits.credit NOT NULL CHECK (input_price >= 0),
    output_price  credits.credit NOT NULL CHECK (output_price >= 0),
    request_price credits.credit NOT NULL DEFAULT 0 CHECK (request_price >= 0),
    is_fallback   boolean NOT NULL DEFAULT false,
    active        boolean NOT NULL DEFAULT true,
    shipped       boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT models_fallback_is_active CHECK (active OR NOT is_fallback),
    -- at most one fallback per provider; checked at commit so that one
    -- statement (or one restore) can move the fallback from model to model
    CONSTRAINT models_one_fallback_per_provider
        EXCLUDE USING btree (provider WITH =) WHERE (is_fallback)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX models_provider_idx ON credits.models (provider);
COMMENT ON TABLE credits.models IS
    'models and their prices in credits per 1M tokens (input, output) plus per request';
COMMENT ON COLUMN credits.models.is_fallback IS
    'the provider''s fallback model: always available, free once the pool is exhausted';
COMMENT ON COLUMN credits.models.active IS
    'inactive models are not offered and cannot be charged (UC002)';
COMMENT ON COLUMN credits.models.shipped IS
    'row as shipped by the extension and never edited; cleared by any UPDATE';

CREATE FUNCTION credits._catalog_edit() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    NEW.shipped := false;
    IF TG_TABLE_NAME = 'models' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION credits._catalog_edit() IS
    'internal trigger: an edited catalog row is no longer the shipped one';

-- A row inserted with the key of a shipped (unedited) row replaces it: this
-- is what makes a restored dump's edited catalog rows win over the defaults
-- that CREATE EXTENSION just inserted.
CREATE FUNCTION credits._catalog_replace_shipped() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    IF NEW.shipped THEN
        RETURN NEW;
    END IF;
    IF TG_TABLE_NAME = 'providers' THEN
        UPDATE credits.providers
           SET display_name = NEW.display_name, created_at = NEW.created_at
         WHERE provider = NEW.provider AND shipped;
    ELSE
        UPDATE credits.models
           SET provider = NEW.provider, display_name = NEW.display_name,
               input_price = NEW.input_price, output_price = NEW.output_price,
               request_price = NEW.request_price, is_fallback = NEW.is_fallback,
               active = NEW.active
         WHERE model = NEW.model AND shipped;
    END IF;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION credits._catalog_replace_shipped() IS
    'internal trigger: an inserted row replaces the shipped row with the same key';

CREATE TRIGGER providers_edit BEFORE UPDATE ON credits.providers
    FOR EACH ROW EXECUTE FUNCTION credits._catalog_edit();
CREATE TRIGGER providers_replace_shipped BEFORE INSERT ON credits.providers
    FOR EACH ROW EXECUTE FUNCTION credits._catalog_replace_shipped();
CREATE TRIGGER models_edit BEFORE UPDATE ON credits.models
    FOR EACH ROW EXECUTE FUNCTION credits._catalog_edit();
CREATE TRIGGER models_replace_shipped BEFORE INSERT ON credits.models
    FOR EACH ROW EXECUTE FUNCTION credits._catalog_replace_shipped();

-- The default catalog: 1 credit = US$0.01 of the provider's list price, per
-- 1M tokens.
INSERT INTO credits.providers (provider, display_name, shipped) VALUES
    ('openai',    'OpenAI',    true),
    ('anthropic', 'Anthropic', true),
    ('google',    'Google',    true);

INSERT INTO credits.models
    (model, provider, display_name, input_price, output_price, is_fallback, shipped) VALUES
    ('gpt-4o-mini',       'openai',    'GPT-4o Mini',        15,    60, true,  true),
    ('gpt-4o',            'openai',    'GPT-4o',            250,  1000, false, true),
    ('gpt-4.1',           'openai',    'GPT-4.1',           200,   800, false, true),
    ('o3',                'openai',    'o3',                200,   800, false, true),
    ('claude-haiku-4-5',  'anthropic', 'Claude Haiku 4.5',  100,   500, true,  true),
    ('claude-sonnet-4-5', 'anthropic', 'Claude Sonnet 4.5', 300,  1500, false, true),
    ('claude-opus-4-1',   'anthropic', 'Claude Opus 4.1',  1500,  7500, false, true),
    ('gemini-2.0-flash',  'google',    'Gemini 2.0 Flash',   10,    40, true,  true),
    ('gemini-2.5-flash',  'google',    'Gemini 2.5 Flash',   30,   250, false, true),
    ('gemini-2.5-pro',    'google',    'Gemini 2.5 Pro',    125,  1000, false, true);

SELECT pg_catalog.pg_extension_config_dump('credits.providers', 'WHERE NOT shipped');
SELECT pg_catalog.pg_extension_config_dump('credits.models', 'WHERE NOT shipped');

-- ---------------------------------------------------------------------------
-- Catalog functions
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits.cost(model text, input_tokens bigint, output_tokens bigint DEFAULT 0)
    RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credits_cost'
    LANGUAGE C STABLE PARALLEL SAFE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp SET enable_seqscan = off;
COMMENT ON FUNCTION credits.cost(text, bigint, bigint) IS
    'price of a call: ceil((input_tokens*input_price + output_tokens*output_price) / 1e6) + request_price, exact';

CREATE FUNCTION credits.add_provider(provider text, display_name text DEFAULT NULL)
    RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._check_id(provider, 'provider');
    PERFORM 1 FROM credits.providers p WHERE p.provider = add_provider.provider FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO credits.providers (provider, display_name)
        VALUES (provider, coalesce(display_name, provider));
    ELSIF display_name IS NOT NULL THEN
        UPDATE credits.providers p SET display_name = add_provider.display_name
         WHERE p.provider = add_provider.provider;
    END IF;
END
$$;
COMMENT ON FUNCTION credits.add_provider(text, text) IS
    'add a provider, or rename an existing one';

CREATE FUNCTION credits.upsert_model(provider text, model text,
                                     input_price credits.credit, output_price credits.credit,
                                     request_price credits.credit DEFAULT 0,
                                     is_fallback boolean DEFAULT false,
                                     display_name text DEFAULT NULL)
    RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._check_id(provider, 'provider');
    PERFORM credits._check_id(model, 'model');
    PERFORM credits._check_amount(input_price, 'input_price');
    PERFORM credits._check_amount(output_price, 'output_price');
    PERFORM credits._check_amount(request_price, 'request_price');
    IF is_fallback IS NULL THEN
        RAISE EXCEPTION 'is_fallback must not be null' USING ERRCODE = '22004';
    END IF;

    -- serializes catalog changes of one provider (fallback moves included)
    PERFORM 1 FROM credits.providers p WHERE p.provider = upsert_model.provider FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown provider "%"', provider USING ERRCODE = '22023',
            HINT = 'Add it first with credits.add_provider().';
    END IF;

    IF is_fallback THEN
        UPDATE credits.models m SET is_fallback = false
         WHERE m.provider = upsert_model.provider AND m.is_fallback
           AND m.model <> upsert_model.model;
    END IF;

    -- an existing model is updated in place (a shipped one keeps its display
    -- name unless a new one is given, and stays its provider's fallback:
    -- only making another model the fallback demotes it)
    UPDATE credits.models m
       SET provider = upsert_model.provider,
           display_name = coalesce(upsert_model.display_name, m.display_name),
           input_price = upsert_model.input_price,
           output_price = upsert_model.output_price,
           request_price = upsert_model.request_price,
           is_fallback = (upsert_model.is_fallback OR
                          (m.is_fallback AND m.provider = upsert_model.provider)),
           active = true
     WHERE m.model = upsert_model.model;
    IF NOT FOUND THEN
        INSERT INTO credits.models
            (model, provider, display_name, input_price, output_price, request_price, is_fallback)
        VALUES (model, provider, coalesce(display_name, model), input_price, output_price,
                request_price, is_fallback);
    END IF;
END
$$;
COMMENT ON FUNCTION credits.upsert_model(text, text, credits.credit, credits.credit, credits.credit, boolean, text) IS
    'add or change a model (prices per 1M tokens); making it the fallback demotes the provider''s previous fallback, which otherwise stays the fallback';
-- ---------------------------------------------------------------------------
-- Organizations, members and pools
-- ---------------------------------------------------------------------------

CREATE TABLE credits.orgs (
    org_id             text PRIMARY KEY CHECK (org_id <> '' AND octet_length(org_id) <= 255),
    name               text NOT NULL,
    allowance_per_user credits.credit NOT NULL DEFAULT 1000 CHECK (allowance_per_user >= 0),
    billing_anchor     timestamptz NOT NULL DEFAULT now(),
    period             interval NOT NULL DEFAULT '1 month' CHECK (credits.valid_period(period)),
    time_zone          text NOT NULL DEFAULT 'UTC',
    thresholds         integer[] NOT NULL DEFAULT '{80,100}'
                       CHECK (array_position(thresholds, NULL) IS NULL AND cardinality(thresholds) <= 16
                              AND 0 < ALL (thresholds) AND 100 >= ALL (thresholds)),
    created_at         timestamptz NOT NULL DEFAULT now(),
    stripes            integer CHECK (stripes BETWEEN 0 AND 32)
);
COMMENT ON TABLE credits.orgs IS
    'organizations: plan (credits per user per period) and billing period (anchor, length, time zone)';
COMMENT ON COLUMN credits.orgs.thresholds IS
    'percentages of the period''s credits (allowance + top-up) whose crossing emits a threshold event';
COMMENT ON COLUMN credits.orgs.stripes IS
    'escrow stripes of the pool (0 to 32): NULL (the default) lets the pool grow them when its debits contend, up to credits.max_stripes';
COMMENT ON COLUMN credits.orgs.allowance_per_user IS
    'credits each active member brings into the pool per period, unless the member overrides it';

CREATE TABLE credits.org_providers (
    org_id     text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    provider   text NOT NULL REFERENCES credits.providers ON UPDATE CASCADE,
    enabled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, provider)
);
COMMENT ON TABLE credits.org_providers IS
    'providers an org has enabled: its users see and may call only these providers'' models';

CREATE TABLE credits.members (
    org_id     text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    user_id    text NOT NULL CHECK (user_id <> '' AND octet_length(user_id) <= 255),
    allowance  credits.credit CHECK (allowance >= 0),
    cap        credits.credit CHECK (cap >= 0),
    active     boolean NOT NULL DEFAULT true,
    added_at   timestamptz NOT NULL DEFAULT now(),
    removed_at timestamptz,
    PRIMARY KEY (org_id, user_id)
);
COMMENT ON TABLE credits.members IS
    'members of an org; each active member brings an allowance into the org''s pool';
COMMENT ON COLUMN credits.members.allowance IS
    'this member''s allowance per period; NULL means the org''s allowance_per_user';
COMMENT ON COLUMN credits.members.cap IS
    'most this member may draw from the pool per period; NULL means no personal cap';
COMMENT ON COLUMN credits.members.active IS
    'removed members are kept inactive so that their history stays';

CREATE TABLE credits.member_usage (
    org_id  text NOT NULL,
    user_id text NOT NULL,
    used     credits.credit NOT NULL DEFAULT 0,
    reserved credits.credit NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, user_id),
    FOREIGN KEY (org_id, user_id) REFERENCES credits.members ON DELETE CASCADE
) WITH (fillfactor = 50);   -- room for HOT updates: every debit updates a row
COMMENT ON TABLE credits.member_usage IS
    'credits each member drew from the pool in the current period and holds open now (maintained by the extension)';
COMMENT ON COLUMN credits.member_usage.used IS 'drawn in the current period';
COMMENT ON COLUMN credits.member_usage.reserved IS
    'held by the member''s open holds: counts against a personal cap until settled or released';

CREATE TABLE credits.pools (
    org_id            text PRIMARY KEY REFERENCES credits.orgs ON DELETE CASCADE,
    period_start      timestamptz NOT NULL,
    period_end        timestamptz NOT NULL,
    allowance         credits.credit NOT NULL DEFAULT 0,
    allowance_used    credits.credit NOT NULL DEFAULT 0,
    topup             credits.credit NOT NULL DEFAULT 0,
    topup_used        credits.credit NOT NULL DEFAULT 0,
    reserved          credits.credit NOT NULL DEFAULT 0,
    calls             bigint NOT NULL DEFAULT 0,
    shortfall         credits.credit NOT NULL DEFAULT 0,
    alert_level       integer NOT NULL DEFAULT 0,
    next_grant_expiry timestamptz,
    next_hold_expiry  timestamptz,
    stripes           integer NOT NULL DEFAULT 0,
    waits             integer NOT NULL DEFAULT 0,
    -- the invariant every write is checked against (credits.verify() checks
    -- the rest; each CHECK here is paid by every charge)
    CONSTRAINT pools_available_not_negative
        CHECK (allowance - allowance_used + topup - reserved >= 0)
) WITH (fillfactor = 50);   -- room for HOT updates: every slow-path charge updates a row
COMMENT ON TABLE credits.pools IS
    'each org''s pool for its current billing period (maintained by the extension; never written by hand)';
COMMENT ON COLUMN credits.pools.allowance IS
    'sum of the active members'' allowances; raised at once, lowered only at the next period';
COMMENT ON COLUMN credits.pools.allowance_used IS 'allowance drawn in this period';
COMMENT ON COLUMN credits.pools.topup IS 'what remains of the org''s unexpired purchased grants';
COMMENT ON COLUMN credits.pools.topup_used IS 'credits drawn from grants in this period';
COMMENT ON COLUMN credits.pools.calls IS
    'calls charged (debits and settles) in this period, except those still counted on the stripes (pool_stripes.calls)';
COMMENT ON COLUMN credits.pools.shortfall IS
    'cost that could not be charged in this period, except what is still counted on the stripes (pool_stripes.shortfall)';
COMMENT ON COLUMN credits.pools.alert_level IS
    'highest threshold (percent) already announced in this period';
COMMENT ON COLUMN credits.pools.next_grant_expiry IS
    'earliest expiry of a grant with credits left: the next call after it expires the grant';
COMMENT ON COLUMN credits.pools.next_hold_expiry IS
    'earliest expiry of an open hold: the next call after it releases the hold';
COMMENT ON COLUMN credits.pools.reserved IS 'credits held by open holds';
COMMENT ON COLUMN credits.pools.waits IS
    'debits that waited for the pool lock in this period while it was one balance (see credits.split_after)';
COMMENT ON COLUMN credits.pools.stripes IS
    'escrow stripes the pool is split over in this period (0: one balance); stripes numbered from here on are empty';

-- Escrow stripes: an org's hot balance, split, once its debits contend for
-- the pool lock (pools.stripes of them; 0: one balance).  A debit that fits
-- in its backend's stripe (its PGPROC slot modulo the stripes) is charged
-- there, locking that stripe row only, so concurrent debits of one org
-- commit in parallel.  Anything else locks the pool row and every stripe,
-- folds the stripes back into the pool (allowance_used += used), does its
-- work exactly as a single balance would, and escrows again: each stripe
-- gets a share of what may be spent without crossing the org's next
-- threshold, never more than is available.  So the pool never goes below 0,
-- thresholds and exhaustion are seen under the global lock, and every
-- figure is exact: pool = pools row + stripes.  Once the pool is empty, a
-- debit share-locks the pools row instead (every change that could add
-- credits writes that row, so it waits) and counts its call and shortfall
-- on its stripe.  Stripe rows are updated by every fast debit: a low
-- fillfactor keeps their HOT chains short (pages are pruned early) and
-- spreads them over pages.
CREATE TABLE credits.pool_stripes (
    org_id       text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    stripe       integer NOT NULL,
    funds        credits.credit NOT NULL DEFAULT 0,
    used         credits.credit NOT NULL DEFAULT 0,
    calls        bigint NOT NULL DEFAULT 0,
    period_start timestamptz NOT NULL,
    shortfall    credits.credit NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, stripe)
) WITH (fillfactor = 10);
COMMENT ON TABLE credits.pool_stripes IS
    'escrow stripes of each org''s allowance, for concurrent debits (maintained by the extension)';
COMMENT ON COLUMN credits.pool_stripes.funds IS 'allowance escrowed to this stripe, not yet used';
COMMENT ON COLUMN credits.pool_stripes.used IS
    'allowance used through this stripe since the pool last folded it in';
COMMENT ON COLUMN credits.pool_stripes.calls IS 'debits through this stripe since then';
COMMENT ON COLUMN credits.pool_stripes.shortfall IS
    'shortfall of the debits of an empty pool counted through this stripe since then';

-- Fold the org's stripes into its pool row and empty them; the pool row is
-- then the whole truth until the next escrow.  Locks the pool, then the
-- stripes in order.
CREATE FUNCTION credits._consolidate(org text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    used_ credits.credit;
    calls_ bigint;
    shortfall_ credits.credit;
BEGIN
    PERFORM 1 FROM credits.pools p WHERE p.org_id = org FOR UPDATE;
    SELECT coalesce(credits.sum(s.used), 0), coalesce(sum(s.calls), 0),
           coalesce(credits.sum(s.shortfall), 0)
      INTO used_, calls_, shortfall_
      FROM (SELECT * FROM credits.pool_stripes s WHERE s.org_id = org
             ORDER BY s.stripe FOR UPDATE) s;
    UPDATE credits.pool_stripes s SET funds = 0, used = 0, calls = 0, shortfall = 0
     WHERE s.org_id = org
       AND (s.funds <> 0 OR s.used <> 0 OR s.calls <> 0 OR s.shortfall <> 0);
    IF used_ <> 0 OR calls_ <> 0 OR shortfall_ <> 0 THEN
        UPDATE credits.pools p SET allowance_used = p.allowance_used + used_,
                                   calls = p.calls + calls_,
                                   shortfall = p.shortfall + shortfall_
         WHERE p.org_id = org;
    END IF;
END
$$;
COMMENT ON FUNCTION credits._consolidate(text) IS
    'internal: fold the org''s escrow stripes back into its pool row';

CREATE VIEW credits.pool_status AS
SELECT p.org_id, p.period_start, p.period_end, p.allowance, p.allowance_used, p.topup,
       p.reserved,
       p.allowance - p.allowance_used + p.topup - p.reserved AS available,
       p.allowance - p.allowance_used + p.topup - p.reserved = 0 AS exhausted
  FROM credits.pools p;
COMMENT ON VIEW credits.pool_status IS
    'one row per org for its current period: available = allowance - allowance_used + topup - reserved';

-- ---------------------------------------------------------------------------
-- Triggers: plain DML on orgs and members keeps every pool consistent
-- ---------------------------------------------------------------------------

-- Raise the org's pool to the sum of its active members' allowances, if that
-- is higher: a higher plan or a new member counts at once, a lower one at the
-- next period.  The pool row is locked before the sum is read, so concurrent
-- member changes are each counted.
CREATE FUNCTION credits._raise_allowance(org text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    total credits.credit;
BEGIN
    PERFORM 1 FROM credits.pools p WHERE p.org_id = org FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT coalesce(credits.sum(coalesce(m.allowance, o.allowance_per_user)), 0)
      INTO total
      FROM credits.orgs o
      JOIN credits.members m ON m.org_id = o.org_id AND m.active
     WHERE o.org_id = org;
    UPDATE credits.pools p SET allowance = total
     WHERE p.org_id = org AND p.allowance < total;
END
$$;
COMMENT ON FUNCTION credits._raise_allowance(text) IS
    'internal: raise the org''s pool allowance to the sum of its active members'' allowances';

CREATE FUNCTION credits._org_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._check_id(NEW.org_id, 'org_id');
    -- reports a bad period or time zone with 22023
    PERFORM credits.billing_period(NEW.billing_anchor, NEW.period, NEW.time_zone, now());
    IF TG_OP = 'UPDATE' AND NEW.org_id <> OLD.org_id THEN
        RAISE EXCEPTION 'an org''s org_id cannot be changed' USING ERRCODE = '0A000';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION credits._org_check() IS 'internal trigger: validate an org row';

CREATE FUNCTION credits._org_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    INSERT INTO credits.pools (org_id, period_start, period_end)
    SELECT NEW.org_id, b.period_start, b.period_end
      FROM credits.billing_period(NEW.billing_anchor, NEW.period, NEW.time_zone, now()) b;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION credits._org_created() IS 'internal trigger: open the new org''s pool';

CREATE FUNCTION credits._org_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    IF (NEW.billing_anchor, NEW.period, NEW.time_zone)
       IS DISTINCT FROM (OLD.billing_anchor, OLD.period, OLD.time_zone) THEN
        -- the current period ends at the new schedule's next boundary
        UPDATE credits.pools p SET period_end = b.period_end
          FROM credits.billing_period(NEW.billing_anchor, NEW.period, NEW.time_zone, now()) b
         WHERE p.org_id = NEW.org_id AND b.period_end > p.period_start;
    END IF;
    IF NEW.allowance_per_user > OLD.allowance_per_user THEN
        PERFORM credits._raise_allowance(NEW.org_id);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION credits._org_changed() IS
    'internal trigger: apply a plan or schedule change to the org''s pool';

CREATE FUNCTION credits._member_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM credits._check_id(NEW.user_id, 'user_id');
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM credits._raise_allowance(NEW.org_id);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION credits._member_changed() IS
    'internal trigger: a new or more generous member raises the pool at once';

-- Restoring a dump loads credits.orgs (whose trigger opens a fresh pool) and
-- then credits.pools: the dumped pool replaces the fresh one.  Nothing else
-- ever inserts a pool for an org that has one.
CREATE FUNCTION credits._pool_replace() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    DELETE FROM credits.pools p WHERE p.org_id = NEW.org_id;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION credits._pool_replace() IS
    'internal trigger: a pool row loaded from a dump replaces the one its org''s trigger opened';

CREATE TRIGGER pools_replace BEFORE INSERT ON credits.pools
    FOR EACH ROW EXECUTE FUNCTION credits._pool_replace();
CREATE TRIGGER orgs_check BEFORE INSERT OR UPDATE ON credits.orgs
    FOR EACH ROW EXECUTE FUNCTION credits._org_check();
CREATE TRIGGER orgs_created AFTER INSERT ON credits.orgs
    FOR EACH ROW EXECUTE FUNCTION credits._org_created();
CREATE TRIGGER orgs_changed AFTER UPDATE ON credits.orgs
    FOR EACH ROW EXECUTE FUNCTION credits._org_changed();
CREATE TRIGGER members_changed AFTER INSERT OR UPDATE ON credits.members
    FOR EACH ROW EXECUTE FUNCTION credits._member_changed();

SELECT pg_catalog.pg_extension_config_dump('credits.orgs', '');
SELECT pg_catalog.pg_extension_config_dump('credits.org_providers', '');
SELECT pg_catalog.pg_extension_config_dump('credits.members', '');
SELECT pg_catalog.pg_extension_config_dump('credits.member_usage', '');
SELECT pg_catalog.pg_extension_config_dump('credits.pools', '');
SELECT pg_catalog.pg_extension_config_dump('credits.pool_stripes', '');

-- ---------------------------------------------------------------------------
-- Admin functions
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits._check_tenant(org_id text) RETURNS void
    AS 'MODULE_PATHNAME', 'credits_check_tenant' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION credits._check_tenant(text) IS
    'internal: 42501 when credits.org_id is set and names another org';

CREATE FUNCTION credits._get_org(org_id text) RETURNS credits.orgs
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    o credits.orgs;
BEGIN
    PERFORM credits._check_id(org_id, 'org_id');
    PERFORM credits._check_tenant(org_id);
    SELECT * INTO o FROM credits.orgs WHERE orgs.org_id = _get_org.org_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown org "%"', org_id USING ERRCODE = 'UC004',
            HINT = 'Create it with credits.create_org().';
    END IF;
    RETURN o;
END
$$;
COMMENT ON FUNCTION credits._get_org(text) IS 'internal: the org row, or UC004';

CREATE FUNCTION credits._check_provider(provider text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._check_id(provider, 'provider');
    PERFORM 1 FROM credits.providers p WHERE p.provider = _check_provider.provider;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown provider "%"', provider USING ERRCODE = '22023',
            HINT = 'See credits.providers, or add it with credits.add_provider().';
    END IF;
END
$$;
COMMENT ON FUNCTION credits._check_provider(text) IS 'internal: 22023 unless the provider exists';

CREATE FUNCTION credits.create_org(org_id text, name text DEFAULT NULL,
                                   allowance_per_user credits.credit DEFAULT 1000,
                                   billing_anchor timestamptz DEFAULT now(),
                                   period interval DEFAULT '1 month',
                                   time_zone text DEFAULT 'UTC')
    RETURNS credits.pool_status
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    result credits.pool_status;
BEGIN
    PERFORM credits._check_id(org_id, 'org_id');
    PERFORM credits._check_tenant(org_id);
    PERFORM credits._check_amount(allowance_per_user, 'allowance_per_user');
    IF billing_anchor IS NULL THEN
        RAISE EXCEPTION 'billing_anchor must not be null' USING ERRCODE = '22004';
    ELSIF period IS NULL THEN
        RAISE EXCEPTION 'period must not be null' USING ERRCODE = '22004';
    ELSIF time_zone IS NULL THEN
        RAISE EXCEPTION 'time_zone must not be null' USING ERRCODE = '22004';
    END IF;
    BEGIN
        INSERT INTO credits.orgs (org_id, name, allowance_per_user, billing_anchor, period, time_zone)
        VALUES (org_id, coalesce(name, org_id), allowance_per_user, billing_anchor, period, time_zone);
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'org "%" already exists', org_id USING ERRCODE = '23505';
    END;
    SELECT * INTO result FROM credits.pool_status s WHERE s.org_id = create_org.org_id;
    RETURN result;
END
$$;
COMMENT ON FUNCTION credits.create_org(text, text, credits.credit, timestamptz, interval, text) IS
    'create an org with its plan and billing period; returns its pool_status';

CREATE FUNCTION credits.enable_provider(org_id text, provider text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_provider(provider);
    INSERT INTO credits.org_providers (org_id, provider) VALUES (org_id, provider)
    ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION credits.enable_provider(text, text) IS
    'let the org''s users see and call the provider''s models (idempotent)';

CREATE FUNCTION credits.disable_provider(org_id text, provider text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_provider(provider);
    DELETE FROM credits.org_providers op
     WHERE op.org_id = disable_provider.org_id AND op.provider = disable_provider.provider;
END
$$;
COMMENT ON FUNCTION credits.disable_provider(text, text) IS
    'hide the provider''s models from the org and refuse calls to them (idempotent)';

CREATE FUNCTION credits.add_member(org_id text, user_id text,
                                   allowance credits.credit DEFAULT NULL,
                                   cap credits.credit DEFAULT NULL)
    RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_id(user_id, 'user_id');
    IF allowance IS NOT NULL THEN
        PERFORM credits._check_amount(allowance, 'allowance');
    END IF;
    IF cap IS NOT NULL THEN
        PERFORM credits._check_amount(cap, 'cap');
    END IF;
    INSERT INTO credits.members AS m (org_id, user_id, allowance, cap)
    VALUES (org_id, user_id, allowance, cap)
    ON CONFLICT ON CONSTRAINT members_pkey DO UPDATE
        SET allowance = EXCLUDED.allowance, cap = EXCLUDED.cap, active = true,
            removed_at = NULL,
            added_at = CASE WHEN m.active THEN m.added_at ELSE now() END;
END
$$;
COMMENT ON FUNCTION credits.add_member(text, text, credits.credit, credits.credit) IS
    'add (or re-activate, or update) a member; allowance NULL = the org''s plan, cap NULL = no personal cap';

CREATE FUNCTION credits.remove_member(org_id text, user_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_id(user_id, 'user_id');
    UPDATE credits.members m SET active = false, removed_at = now()
     WHERE m.org_id = remove_member.org_id AND m.user_id = remove_member.user_id AND m.active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user "%" is not an active member of org "%"', user_id, org_id
            USING ERRCODE = 'UC005';
    END IF;
END
$$;
COMMENT ON FUNCTION credits.remove_member(text, text) IS
    'deactivate a member (history kept); the pool shrinks at the next period';

CREATE FUNCTION credits.set_plan(org_id text, allowance_per_user credits.credit) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_amount(allowance_per_user, 'allowance_per_user');
    UPDATE credits.orgs o SET allowance_per_user = set_plan.allowance_per_user
     WHERE o.org_id = set_plan.org_id;
END
$$;
COMMENT ON FUNCTION credits.set_plan(text, credits.credit) IS
    'change the credits each member brings per period: a raise counts at once, a cut at the next period';

-- ---------------------------------------------------------------------------
-- Each backend caches the configuration tables (src/cache.c); a change to
-- one of them drops the caches of every backend when it commits.
-- ---------------------------------------------------------------------------
CREATE FUNCTION credits._config_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'credits_config_changed' LANGUAGE C;
COMMENT ON FUNCTION credits._config_changed() IS
    'internal trigger: make every backend reload its cached copy of this table';
-- ---------------------------------------------------------------------------
-- The read path (C): which models a user may call now
--
-- They run as their caller (SECURITY INVOKER, no SET clause): they read
-- through the backend's configuration cache and direct index lookups, and
-- the few queries they do run (loading the cache, a pool that is due) run as
-- the extension's owner with search_path pinned and enable_seqscan = off,
-- like those of the SECURITY DEFINER functions (see src/spi.c).  A SET
-- clause would save and restore settings on every call, more than the rest
-- of the call costs.
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits.allowed_models(org_id text, user_id text DEFAULT NULL)
    RETURNS TABLE(provider text, model text, display_name text, is_fallback boolean,
                  available boolean, reason text, input_price credits.credit,
                  output_price credits.credit)
    AS 'MODULE_PATHNAME', 'credits_allowed_models'
    LANGUAGE C STABLE
    ROWS 12;
COMMENT ON FUNCTION credits.allowed_models(text, text) IS
    'every active model of the org''s enabled providers; premium ones grayed out (available = false, reason) when credits or the user''s cap ran out';

CREATE FUNCTION credits.resolve_model(org_id text, user_id text, model text) RETURNS text
    AS 'MODULE_PATHNAME', 'credits_resolve_model'
    LANGUAGE C STABLE;
COMMENT ON FUNCTION credits.resolve_model(text, text, text) IS
    'the model to call now: the requested one when available to the user, else its provider''s fallback';
-- ---------------------------------------------------------------------------
-- The ledger: append-only record of every charge, hold, recharge, top-up,
-- reset and adjustment.  It is the truth; pools and member usage are derived
-- from it and kept in step in the same transaction.
-- ---------------------------------------------------------------------------

CREATE TABLE credits.ledger (
    entry_id        bigint GENERATED ALWAYS AS IDENTITY (CACHE 32) PRIMARY KEY,
    org_id          text NOT NULL,
    kind            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    period_start    timestamptz NOT NULL,
    user_id         text,
    model           text,
    input_tokens    bigint,
    output_tokens   bigint,
    cost            credits.credit NOT NULL DEFAULT 0,
    charged         credits.credit NOT NULL DEFAULT 0,
    shortfall       credits.credit NOT NULL DEFAULT 0,
    from_allowance  credits.credit NOT NULL DEFAULT 0,
    from_topup      credits.credit NOT NULL DEFAULT 0,
    topup_change    credits.credit,
    reserved_change credits.credit,
    available_after credits.credit NOT NULL,
    request_id      text,
    hold_id         bigint,
    grant_id        bigint,
    note            text
);
-- No CHECK constraints: the extension is the ledger's only writer, every
-- insert would pay for them, and credits.verify() checks each entry.
CREATE UNIQUE INDEX ledger_request_idx ON credits.ledger (org_id, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX ledger_org_time_idx ON credits.ledger (org_id, created_at);

COMMENT ON TABLE credits.ledger IS
    'append-only record of every charge, hold, recharge, top-up and reset; UPDATE, DELETE and TRUNCATE are refused';
COMMENT ON COLUMN credits.ledger.kind IS
    'debit, hold, settle, release, recharge, topup, expire (a grant), reset (a new period) or adjust';
COMMENT ON COLUMN credits.ledger.period_start IS 'the billing period the entry belongs to';
COMMENT ON COLUMN credits.ledger.cost IS 'price of the usage';
COMMENT ON COLUMN credits.ledger.charged IS 'what was deducted from the pool (from_allowance + from_topup)';
COMMENT ON COLUMN credits.ledger.shortfall IS
    'cost that could not be charged because the pool or the member''s cap ran out under this call';
COMMENT ON COLUMN credits.ledger.from_allowance IS
    'change of the period''s allowance used (negative when a recharge restores it)';
COMMENT ON COLUMN credits.ledger.from_topup IS 'part of charged drawn from purchased grants';
COMMENT ON COLUMN credits.ledger.topup_change IS
    'change of the org''s top-up other than draws: + a purchased grant, - an expired one';
COMMENT ON COLUMN credits.ledger.reserved_change IS
    'change of the pool''s reserved credits: + a hold, - its settle, release, expiry or trim';
COMMENT ON COLUMN credits.ledger.available_after IS 'the pool''s available credits after this entry';
COMMENT ON COLUMN credits.ledger.request_id IS
    'idempotency key of the debit or hold, unique per org';

CREATE FUNCTION credits._ledger_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'credits.ledger is append-only: % is not allowed', TG_OP
        USING ERRCODE = '55000',
              HINT = 'Record a correction as a new ledger entry.';
END
$$;
COMMENT ON FUNCTION credits._ledger_append_only() IS
    'internal trigger: refuse UPDATE, DELETE and TRUNCATE of the ledger';

CREATE TRIGGER ledger_no_update BEFORE UPDATE OR DELETE ON credits.ledger
    FOR EACH ROW EXECUTE FUNCTION credits._ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON credits.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION credits._ledger_append_only();

SELECT pg_catalog.pg_extension_config_dump('credits.ledger', '');
SELECT pg_catalog.pg_extension_config_dump('credits.ledger_entry_id_seq', '');

-- ---------------------------------------------------------------------------
-- Events: threshold crossings, recharges, top-ups and period resets, each
-- written once and sent with pg_notify('credits', payload) in the same
-- transaction, so listeners see exactly what committed.
-- ---------------------------------------------------------------------------

CREATE TABLE credits.events (
    event_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('threshold', 'recharge', 'topup', 'period_reset')),
    created_at timestamptz NOT NULL DEFAULT now(),
    payload    jsonb NOT NULL
);
CREATE INDEX events_org_idx ON credits.events (org_id, event_id);
COMMENT ON TABLE credits.events IS
    'threshold crossings, recharges, top-ups and period resets; each also sent as pg_notify(''credits'', payload)';

SELECT pg_catalog.pg_extension_config_dump('credits.events', '');
SELECT pg_catalog.pg_extension_config_dump('credits.events_event_id_seq', '');

-- ---------------------------------------------------------------------------
-- Metering (C)
-- ---------------------------------------------------------------------------

CREATE TYPE credits.debit_result AS (
    entry_id  bigint,
    model     text,
    cost      credits.credit,
    charged   credits.credit,
    shortfall credits.credit,
    available credits.credit,
    exhausted boolean,
    replayed  boolean
);
COMMENT ON TYPE credits.debit_result IS
    'result of credit_debit and credit_settle: cost of the usage, what was charged, the shortfall, and the pool after';

CREATE FUNCTION credits.credit_debit(org_id text, user_id text, model text,
                                     input_tokens bigint, output_tokens bigint DEFAULT 0,
                                     request_id text DEFAULT NULL)
    RETURNS credits.debit_result
    AS 'MODULE_PATHNAME', 'credits_credit_debit'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp SET enable_seqscan = off;
COMMENT ON FUNCTION credits.credit_debit(text, text, text, bigint, bigint, text) IS
    'record a completed call and charge the org''s pool atomically; request_id makes it idempotent';

CREATE FUNCTION credits._emit_event(org_id text, kind text, payload jsonb) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
    WITH e AS (
        INSERT INTO credits.events (org_id, kind, payload)
        VALUES (_emit_event.org_id, _emit_event.kind, _emit_event.payload)
        RETURNING event_id, org_id, kind, created_at, payload
    )
    SELECT e.event_id
      FROM e, pg_catalog.pg_notify('credits',
              (pg_catalog.jsonb_build_object('event_id', e.event_id, 'org_id', e.org_id,
                                             'kind', e.kind, 'created_at', e.created_at)
               OPERATOR(pg_catalog.||) e.payload)::text) AS n
$$;
COMMENT ON FUNCTION credits._emit_event(text, text, jsonb) IS
    'internal: write an event and send it with pg_notify(''credits'', ...) in the same transaction';
-- ---------------------------------------------------------------------------
-- Billing periods, recharges and purchased grants
--
-- An org whose period has ended is rolled over by the next call that locks
-- its pool (credits._maintain, called from C when a pool is due) and by
-- credits.reset_due(), which pg_cron runs every minute.  Correctness never
-- depends on the job running on time.
-- ---------------------------------------------------------------------------

CREATE TABLE credits.periods (
    org_id         text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    period_start   timestamptz NOT NULL,
    period_end     timestamptz NOT NULL,
    allowance      credits.credit NOT NULL,
    allowance_used credits.credit NOT NULL,
    topup_used     credits.credit NOT NULL,
    shortfall      credits.credit NOT NULL,
    calls          bigint NOT NULL,
    closed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, period_start)
);
COMMENT ON TABLE credits.periods IS
    'closed billing periods: what each org had, used, drew from top-up and could not charge';

CREATE TABLE credits.grants (
    grant_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id         text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    amount         credits.credit NOT NULL CHECK (amount > 0),
    remaining      credits.credit NOT NULL,
    expired_amount credits.credit NOT NULL DEFAULT 0,
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    note           text,
    CONSTRAINT grants_remaining CHECK (remaining >= 0 AND remaining <= amount),
    CONSTRAINT grants_expired CHECK (expired_amount >= 0 AND expired_amount <= amount)
);
CREATE INDEX grants_org_idx ON credits.grants (org_id, expires_at, grant_id)
    WHERE remaining > 0;
COMMENT ON TABLE credits.grants IS
    'purchased credits (top-ups): used after the period''s allowance, earliest expiry first, never-expiring last, then oldest first';
COMMENT ON COLUMN credits.grants.remaining IS 'amount - draws - expired_amount';

CREATE TABLE credits.grant_draws (
    entry_id bigint NOT NULL,
    grant_id bigint NOT NULL REFERENCES credits.grants ON DELETE CASCADE,
    amount   credits.credit NOT NULL CHECK (amount > 0),
    PRIMARY KEY (entry_id, grant_id)
);
CREATE INDEX grant_draws_grant_idx ON credits.grant_draws (grant_id);
COMMENT ON TABLE credits.grant_draws IS
    'which grants each ledger entry''s from_topup was drawn from';

SELECT pg_catalog.pg_extension_config_dump('credits.periods', '');
SELECT pg_catalog.pg_extension_config_dump('credits.grants', '');
SELECT pg_catalog.pg_extension_config_dump('credits.grants_grant_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('credits.grant_draws', '');

-- The highest of the org's thresholds that the pool has reached.
CREATE FUNCTION credits._alert_level(p credits.pools, thresholds integer[]) RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, credits, pg_temp AS $$
    SELECT coalesce(max(t), 0)
      FROM unnest(thresholds) t
     WHERE p.allowance + p.topup_used + p.topup > 0
       AND (p.allowance_used + p.topup_used + p.reserved)::numeric * 100
           >= t * (p.allowance + p.topup_used + p.topup)::numeric
$$;
COMMENT ON FUNCTION credits._alert_level(credits.pools, integer[]) IS
    'internal: highest threshold (percent) the pool has reached';

CREATE FUNCTION credits._available(p credits.pools) RETURNS credits.credit
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, credits, pg_temp AS $$
    SELECT p.allowance - p.allowance_used + p.topup - p.reserved
$$;
COMMENT ON FUNCTION credits._available(credits.pools) IS
    'internal: allowance - allowance_used + topup - reserved';

-- Expire the org's grants whose expiry has passed as of as_of.
CREATE FUNCTION credits._expire_grants(org text, as_of timestamptz) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    p credits.pools;
    g credits.grants;
BEGIN
    FOR g IN SELECT * FROM credits.grants
              WHERE org_id = org AND remaining > 0 AND expires_at <= as_of
              ORDER BY expires_at, grant_id FOR UPDATE
    LOOP
        SELECT * INTO p FROM credits.pools WHERE org_id = org FOR UPDATE;
        -- what is reserved stays covered: trim holds first if needed
        PERFORM credits._trim_holds(org, p.allowance - p.allowance_used + p.topup - g.remaining);
        UPDATE credits.grants SET remaining = 0, expired_amount = expired_amount + g.remaining
         WHERE grant_id = g.grant_id;
        UPDATE credits.pools SET topup = topup - g.remaining WHERE org_id = org
        RETURNING * INTO p;
        INSERT INTO credits.ledger (org_id, kind, period_start, topup_change, available_after,
                                    grant_id, note)
        VALUES (org, 'expire', p.period_start, -g.remaining, credits._available(p),
                g.grant_id, 'grant expired at ' || g.expires_at);
    END LOOP;
    UPDATE credits.pools SET next_grant_expiry =
        (SELECT min(expires_at) FROM credits.grants WHERE org_id = org AND remaining > 0)
     WHERE org_id = org;
END
$$;
COMMENT ON FUNCTION credits._expire_grants(text, timestamptz) IS
    'internal: drop what remains of the org''s grants that expired by as_of';

-- Draw amount from the org's grants for ledger entry entry_id: earliest
-- expiry first, never-expiring last, then oldest first.  The caller (C)
-- has locked the pool and moves the amount from pools.topup itself.
CREATE FUNCTION credits._draw_grants(org text, entry bigint, amount credits.credit) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    g credits.grants;
    left_ credits.credit := amount;
    take credits.credit;
BEGIN
    FOR g IN SELECT * FROM credits.grants
              WHERE org_id = org AND remaining > 0
              ORDER BY expires_at NULLS LAST, grant_id FOR UPDATE
    LOOP
        take := least(g.remaining, left_);
        UPDATE credits.grants SET remaining = remaining - take WHERE grant_id = g.grant_id;
        INSERT INTO credits.grant_draws (entry_id, grant_id, amount) VALUES (entry, g.grant_id, take);
        left_ := left_ - take;
        EXIT WHEN left_ = 0;
    END LOOP;
    IF left_ > 0 THEN
        RAISE EXCEPTION 'grants of org "%" do not cover a draw of %', org, amount
            USING ERRCODE = 'XX000';
    END IF;
    UPDATE credits.pools SET next_grant_expiry =
        (SELECT min(expires_at) FROM credits.grants WHERE org_id = org AND remaining > 0)
     WHERE org_id = org;
END
$$;
COMMENT ON FUNCTION credits._draw_grants(text, bigint, credits.credit) IS
    'internal: record which grants a charge''s top-up part was drawn from';

-- Close the org's period and open the one containing as_of, if it is due.
-- Missed periods are skipped, not replayed.
CREATE FUNCTION credits._rollover(org text, as_of timestamptz) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    p credits.pools;
    old credits.pools;
    o credits.orgs;
    b record;
    new_allowance credits.credit;
    expiring credits.credit;
BEGIN
    SELECT * INTO old FROM credits.pools WHERE org_id = org FOR UPDATE;
    p := old;
    IF NOT FOUND OR p.period_end > as_of THEN
        RETURN false;
    END IF;
    SELECT * INTO o FROM credits.orgs WHERE org_id = org;
    SELECT * INTO b FROM credits.billing_period(o.billing_anchor, o.period, o.time_zone, as_of);

    INSERT INTO credits.periods (org_id, period_start, period_end, allowance, allowance_used,
                                 topup_used, shortfall, calls)
    VALUES (org, p.period_start, p.period_end, p.allowance, p.allowance_used, p.topup_used,
            p.shortfall, p.calls);

    SELECT coalesce(credits.sum(coalesce(m.allowance, o.allowance_per_user)), 0)
      INTO new_allowance
      FROM credits.members m WHERE m.org_id = org AND m.active;

    SELECT coalesce(credits.sum(g.remaining), 0) INTO expiring
      FROM credits.grants g
     WHERE g.org_id = org AND g.remaining > 0 AND g.expires_at <= as_of;

    -- Start the new period.  Every step keeps the pool's figures valid: the
    -- allowance changes only once what is reserved fits in the new funds.
    -- members' usage starts again; their open holds are carried
    DELETE FROM credits.member_usage WHERE org_id = org AND reserved = 0;
    UPDATE credits.member_usage SET used = 0 WHERE org_id = org;
    UPDATE credits.pools
       SET period_start = b.period_start, period_end = b.period_end,
           allowance_used = 0, topup_used = 0, calls = 0, shortfall = 0, alert_level = 0,
           stripes = 0, waits = 0
     WHERE org_id = org;
    -- expired holds are released; the others are carried, trimmed if the
    -- new period (without its expired grants) cannot cover them
    PERFORM credits._expire_holds(org, as_of, new_allowance + p.topup);
    PERFORM credits._trim_holds(org, new_allowance + p.topup - expiring, new_allowance + p.topup);
    UPDATE credits.pools SET allowance = new_allowance WHERE org_id = org;
    PERFORM credits._expire_grants(org, as_of);
    SELECT * INTO p FROM credits.pools WHERE org_id = org;
    UPDATE credits.pools SET alert_level = credits._alert_level(p, o.thresholds)
     WHERE org_id = org RETURNING * INTO p;

    INSERT INTO credits.ledger (org_id, kind, period_start, available_after, note)
    VALUES (org, 'reset', p.period_start, credits._available(p),
            'period ' || b.period_start || ' .. ' || b.period_end);
    PERFORM credits._emit_event(org, 'period_reset', jsonb_build_object(
        'period_start', p.period_start, 'period_end', p.period_end,
        'allowance', p.allowance::numeric, 'topup', p.topup::numeric,
        'reserved', p.reserved::numeric, 'available', credits._available(p)::numeric,
        'previous', jsonb_build_object(
            'period_start', old.period_start, 'period_end', old.period_end,
            'allowance', old.allowance::numeric, 'allowance_used', old.allowance_used::numeric,
            'topup_used', old.topup_used::numeric, 'shortfall', old.shortfall::numeric,
            'calls', old.calls)));
    RETURN true;
END
$$;
COMMENT ON FUNCTION credits._rollover(text, timestamptz) IS
    'internal: close the org''s ended period into credits.periods and open the one containing as_of';

-- ---------------------------------------------------------------------------
-- Admin: recharge, reset_due, schedule_jobs
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits.recharge(org_id text, amount credits.credit DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL, note text DEFAULT NULL)
    RETURNS credits.pool_status
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    o credits.orgs := credits._get_org(org_id);
    p credits.pools;
    restored credits.credit;
    g bigint;
    result credits.pool_status;
BEGIN
    PERFORM credits._maintain(o.org_id, now());
    PERFORM credits._consolidate(o.org_id);
    SELECT * INTO p FROM credits.pools WHERE pools.org_id = o.org_id FOR UPDATE;

    IF amount IS NULL THEN
        IF expires_at IS NOT NULL THEN
            RAISE EXCEPTION 'expires_at needs an amount'
                USING ERRCODE = '22023',
                      HINT = 'recharge(org_id) restores the period; recharge(org_id, amount, expires_at) adds a grant.';
        END IF;
        -- restore the current period: allowance used and members' usage back to 0
        restored := p.allowance_used;
        DELETE FROM credits.member_usage u WHERE u.org_id = o.org_id AND u.reserved = 0;
        UPDATE credits.member_usage u SET used = 0 WHERE u.org_id = o.org_id;
        UPDATE credits.pools SET allowance_used = 0 WHERE pools.org_id = o.org_id RETURNING * INTO p;
        UPDATE credits.pools SET alert_level = credits._alert_level(p, o.thresholds)
         WHERE pools.org_id = o.org_id RETURNING * INTO p;
        INSERT INTO credits.ledger (org_id, kind, period_start, from_allowance, available_after, note)
        VALUES (o.org_id, 'recharge', p.period_start, -restored, credits._available(p), note);
        PERFORM credits._emit_event(o.org_id, 'recharge', jsonb_build_object(
            'period_start', p.period_start, 'restored', restored::numeric,
            'available', credits._available(p)::numeric, 'note', note));
    ELSE
        IF amount <= 0 THEN
            RAISE EXCEPTION 'amount must be positive' USING ERRCODE = '22023',
                DETAIL = format('amount is %s.', amount);
        END IF;
        IF expires_at IS NOT NULL AND expires_at <= now() THEN
            RAISE EXCEPTION 'expires_at must be in the future' USING ERRCODE = '22023',
                DETAIL = format('expires_at is %s.', expires_at);
        END IF;
        INSERT INTO credits.grants (org_id, amount, remaining, expires_at, note)
        VALUES (o.org_id, amount, amount, expires_at, note)
        RETURNING grant_id INTO g;
        UPDATE credits.pools
           SET topup = topup + amount,
               next_grant_expiry = CASE WHEN recharge.expires_at IS NULL THEN next_grant_expiry
                                        ELSE least(next_grant_expiry, recharge.expires_at) END
         WHERE pools.org_id = o.org_id RETURNING * INTO p;
        UPDATE credits.pools SET alert_level = credits._alert_level(p, o.thresholds)
         WHERE pools.org_id = o.org_id RETURNING * INTO p;
        INSERT INTO credits.ledger (org_id, kind, period_start, topup_change, available_after,
                                    grant_id, note)
        VALUES (o.org_id, 'topup', p.period_start, amount, credits._available(p), g, note);
        PERFORM credits._emit_event(o.org_id, 'topup', jsonb_build_object(
            'grant_id', g, 'amount', amount::numeric, 'expires_at', expires_at,
            'available', credits._available(p)::numeric, 'note', note));
    END IF;

    SELECT * INTO result FROM credits.pool_status s WHERE s.org_id = o.org_id;
    RETURN result;
END
$$;
COMMENT ON FUNCTION credits.recharge(text, credits.credit, timestamptz, text) IS
    'without amount: restore the current period (allowance used back to 0); with amount: add a purchased grant, optionally expiring';

CREATE FUNCTION credits.reset_due(as_of timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    org text;
    n integer := 0;
BEGIN
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be null' USING ERRCODE = '22004';
    END IF;
    -- orgs in a fixed order, so that concurrent runs never deadlock
    FOR org IN SELECT p.org_id FROM credits.pools p WHERE p.period_end <= as_of ORDER BY p.org_id
    LOOP
        IF credits._maintain(org, as_of) THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION credits.reset_due(timestamptz) IS
    'roll every org whose period ended by as_of into its current period; returns how many rolled over';

CREATE FUNCTION credits.schedule_jobs() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = '55000',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, and run CREATE EXTENSION pg_cron; or schedule credits.reset_due() and credits.expire_holds() with any other scheduler.';
    END IF;
    -- cron.schedule(name, ...) replaces a job of the same name: idempotent
    EXECUTE $q$SELECT cron.schedule('credits-reset-due', '* * * * *',
                                    'SELECT credits.reset_due()')$q$;
    EXECUTE $q$SELECT cron.schedule('credits-expire-holds', '* * * * *',
                                    'SELECT credits.expire_holds()')$q$;
END
$$;
COMMENT ON FUNCTION credits.schedule_jobs() IS
    'register pg_cron jobs running credits.reset_due() and credits.expire_holds() every minute (idempotent)';
-- ---------------------------------------------------------------------------
-- Holds: credits reserved before a call whose cost is not yet known
-- (streaming completions), settled with the real usage or released.
-- ---------------------------------------------------------------------------

CREATE TABLE credits.holds (
    hold_id           bigint GENERATED ALWAYS AS IDENTITY (CACHE 32) PRIMARY KEY,
    org_id            text NOT NULL,
    user_id           text NOT NULL,
    requested_model   text NOT NULL,
    model             text NOT NULL,
    fell_back         boolean NOT NULL,
    input_tokens      bigint NOT NULL,
    max_output_tokens bigint NOT NULL,
    estimate          credits.credit NOT NULL,
    reserved          credits.credit NOT NULL CHECK (reserved >= 0),
    available_after   credits.credit NOT NULL,
    status            text NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'settled', 'released', 'expired')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    ended_at          timestamptz,
    request_id        text
);
CREATE INDEX holds_open_idx ON credits.holds (org_id, expires_at) WHERE status = 'open';
COMMENT ON TABLE credits.holds IS
    'credit holds of streaming calls: open until settled, released or expired (maintained by the extension)';
COMMENT ON COLUMN credits.holds.model IS 'the model to call: the requested one, or its provider''s fallback';
COMMENT ON COLUMN credits.holds.reserved IS
    'credits held now (the reservation, possibly trimmed when the pool shrank under it)';
COMMENT ON COLUMN credits.holds.available_after IS 'the pool''s available credits right after the reserve';

SELECT pg_catalog.pg_extension_config_dump('credits.holds', '');
SELECT pg_catalog.pg_extension_config_dump('credits.holds_hold_id_seq', '');

CREATE TYPE credits.hold_result AS (
    hold_id    bigint,
    model      text,
    fell_back  boolean,
    reserved   credits.credit,
    available  credits.credit,
    expires_at timestamptz,
    replayed   boolean
);
COMMENT ON TYPE credits.hold_result IS
    'result of credit_reserve: the hold, the model to call, what is held and the pool after';

-- Shrink the newest open holds until what is reserved fits in funds (the
-- pool's allowance - allowance_used + topup as it is about to become: a
-- period with less allowance, an expired grant).  Each cut is ledgered
-- against the pool's current period, with available_after measured against
-- frame (default: funds); callers then lower the pool's funds.
CREATE FUNCTION credits._trim_holds(org text, funds credits.credit,
                                    frame credits.credit DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    h credits.holds;
    cut credits.credit;
    p credits.pools;
BEGIN
    SELECT * INTO p FROM credits.pools WHERE org_id = org FOR UPDATE;
    IF p.reserved <= funds THEN
        RETURN;
    END IF;
    FOR h IN SELECT * FROM credits.holds
              WHERE org_id = org AND status = 'open' AND reserved > 0
              ORDER BY hold_id DESC FOR UPDATE
    LOOP
        cut := least(h.reserved, p.reserved - funds);
        UPDATE credits.holds SET reserved = reserved - cut WHERE hold_id = h.hold_id;
        UPDATE credits.member_usage u SET reserved = u.reserved - cut
         WHERE u.org_id = org AND u.user_id = h.user_id;
        UPDATE credits.pools SET reserved = reserved - cut WHERE org_id = org RETURNING * INTO p;
        INSERT INTO credits.ledger (org_id, kind, period_start, user_id, model, reserved_change,
                                    available_after, hold_id, note)
        VALUES (org, 'release', p.period_start, h.user_id, h.model, -cut,
                coalesce(frame, funds) - p.reserved, h.hold_id,
                'trimmed: the pool shrank under its holds');
        EXIT WHEN p.reserved <= funds;
    END LOOP;
END
$$;
COMMENT ON FUNCTION credits._trim_holds(text, credits.credit, credits.credit) IS
    'internal: shrink the newest open holds so that what is reserved fits in the pool''s funds';

-- Release the org's open holds that expired by as_of; returns how many.
-- available_after is measured against frame (default: the pool's funds).
CREATE FUNCTION credits._expire_holds(org text, as_of timestamptz,
                                      frame credits.credit DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    h credits.holds;
    p credits.pools;
    n integer := 0;
BEGIN
    PERFORM credits._consolidate(org);
    FOR h IN SELECT * FROM credits.holds
              WHERE org_id = org AND status = 'open' AND expires_at <= as_of
              ORDER BY hold_id FOR UPDATE
    LOOP
        UPDATE credits.holds SET status = 'expired', ended_at = as_of, reserved = 0
         WHERE hold_id = h.hold_id;
        UPDATE credits.member_usage u SET reserved = u.reserved - h.reserved
         WHERE u.org_id = org AND u.user_id = h.user_id;
        UPDATE credits.pools SET reserved = reserved - h.reserved WHERE org_id = org
        RETURNING * INTO p;
        INSERT INTO credits.ledger (org_id, kind, period_start, user_id, model, reserved_change,
                                    available_after, hold_id, note)
        VALUES (org, 'release', p.period_start, h.user_id, h.model, -h.reserved,
                coalesce(frame - p.reserved, credits._available(p)), h.hold_id, 'expired');
        n := n + 1;
    END LOOP;
    UPDATE credits.pools SET next_hold_expiry =
        (SELECT min(expires_at) FROM credits.holds WHERE org_id = org AND status = 'open')
     WHERE org_id = org;
    RETURN n;
END
$$;
COMMENT ON FUNCTION credits._expire_holds(text, timestamptz, credits.credit) IS
    'internal: release the org''s open holds that expired by as_of';

-- Bring the org's pool up to date as of as_of: roll its period over (which
-- also releases expired holds and drops expired grants, as part of starting
-- the new period), or else release expired holds and drop expired grants;
-- true when it rolled over.  C calls this when the locked pool row says it
-- is due, reset_due() for every org whose period ended.
CREATE FUNCTION credits._maintain(org text, as_of timestamptz) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    p credits.pools;
BEGIN
    SELECT * INTO p FROM credits.pools WHERE org_id = org FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM credits._consolidate(org);
    IF p.period_end <= as_of THEN
        RETURN credits._rollover(org, as_of);
    END IF;
    IF p.next_hold_expiry <= as_of THEN
        PERFORM credits._expire_holds(org, as_of);
    END IF;
    IF p.next_grant_expiry <= as_of THEN
        PERFORM credits._expire_grants(org, as_of);
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION credits._maintain(text, timestamptz) IS
    'internal: bring the org''s pool up to date as of as_of (period, holds, grants); true when it rolled over';

CREATE FUNCTION credits.expire_holds(as_of timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    org text;
    n integer := 0;
BEGIN
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be null' USING ERRCODE = '22004';
    END IF;
    FOR org IN SELECT p.org_id FROM credits.pools p WHERE p.next_hold_expiry <= as_of
                ORDER BY p.org_id
    LOOP
        n := n + credits._expire_holds(org, as_of);
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION credits.expire_holds(timestamptz) IS
    'release every open hold that expired by as_of; returns how many';

-- Streaming calls (C)
CREATE FUNCTION credits.credit_reserve(org_id text, user_id text, model text,
                                       input_tokens bigint, max_output_tokens bigint,
                                       request_id text DEFAULT NULL, ttl interval DEFAULT NULL)
    RETURNS credits.hold_result
    AS 'MODULE_PATHNAME', 'credits_credit_reserve'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp SET enable_seqscan = off;
COMMENT ON FUNCTION credits.credit_reserve(text, text, text, bigint, bigint, text, interval) IS
    'reserve the estimated cost of a streaming call, switching to the provider''s fallback when the model is unavailable or unaffordable';

CREATE FUNCTION credits.credit_settle(hold_id bigint, input_tokens bigint, output_tokens bigint)
    RETURNS credits.debit_result
    AS 'MODULE_PATHNAME', 'credits_credit_settle'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp SET enable_seqscan = off;
COMMENT ON FUNCTION credits.credit_settle(bigint, bigint, bigint) IS
    'charge a hold''s real usage: from the hold first, any excess from the pool; the rest is released';

CREATE FUNCTION credits.credit_release(hold_id bigint) RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credits_credit_release'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp SET enable_seqscan = off;
COMMENT ON FUNCTION credits.credit_release(bigint) IS
    'release a hold without charging; returns the amount released';
-- ---------------------------------------------------------------------------
-- Reports and the consistency check
-- ---------------------------------------------------------------------------

-- What an org's pool is as of as_of, without writing anything: a pool whose
-- period ended, or whose grants or holds expired, shows what the next call
-- that locks it will make of it (credits._maintain).
CREATE FUNCTION credits._pool_now(p credits.pools, o credits.orgs, as_of timestamptz,
                                  OUT period_start timestamptz, OUT period_end timestamptz,
                                  OUT allowance credits.credit, OUT allowance_used credits.credit,
                                  OUT topup credits.credit, OUT reserved credits.credit)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, credits, pg_temp AS $$
#variable_conflict use_column
DECLARE
    b record;
BEGIN
    period_start := p.period_start;
    period_end := p.period_end;
    allowance := p.allowance;
    allowance_used := p.allowance_used
        + coalesce((SELECT credits.sum(s.used) FROM credits.pool_stripes s
                     WHERE s.org_id = p.org_id), 0);
    topup := p.topup;
    reserved := p.reserved;
    IF p.next_hold_expiry <= as_of THEN
        reserved := reserved - coalesce((SELECT credits.sum(h.reserved) FROM credits.holds h
                                          WHERE h.org_id = p.org_id AND h.status = 'open'
                                            AND h.expires_at <= as_of), 0);
    END IF;
    IF p.next_grant_expiry <= as_of THEN
        topup := topup - coalesce((SELECT credits.sum(g.remaining) FROM credits.grants g
                                    WHERE g.org_id = p.org_id AND g.remaining > 0
                                      AND g.expires_at <= as_of), 0);
    END IF;
    IF p.period_end <= as_of THEN
        SELECT * INTO b FROM credits.billing_period(o.billing_anchor, o.period, o.time_zone, as_of);
        period_start := b.period_start;
        period_end := b.period_end;
        allowance := coalesce((SELECT credits.sum(coalesce(m.allowance, o.allowance_per_user))
                                 FROM credits.members m
                                WHERE m.org_id = p.org_id AND m.active), 0);
        allowance_used := 0;
    END IF;
    -- holds the pool can no longer cover are trimmed
    reserved := least(reserved, greatest(allowance - allowance_used + topup, 0));
END
$$;
COMMENT ON FUNCTION credits._pool_now(credits.pools, credits.orgs, timestamptz) IS
    'internal: the pool''s figures as of as_of, as the next call that locks it will find them (runs with the caller''s privileges: pool_status''s helper)';

CREATE OR REPLACE VIEW credits.pool_status AS
SELECT p.org_id, e.period_start, e.period_end, e.allowance, e.allowance_used, e.topup,
       e.reserved,
       e.allowance - e.allowance_used + e.topup - e.reserved AS available,
       e.allowance - e.allowance_used + e.topup - e.reserved = 0 AS exhausted
  FROM credits.pools p
  JOIN credits.orgs o ON o.org_id = p.org_id
 CROSS JOIN LATERAL credits._pool_now(p, o, now()) e;
COMMENT ON VIEW credits.pool_status IS
    'one row per org for its current period: available = allowance - allowance_used + topup - reserved';

CREATE FUNCTION credits.usage(org_id text, since timestamptz DEFAULT NULL,
                              until timestamptz DEFAULT NULL)
    RETURNS TABLE(user_id text, model text, calls bigint, input_tokens numeric,
                  output_tokens numeric, cost credits.credit, charged credits.credit,
                  shortfall credits.credit)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    o credits.orgs := credits._get_org(org_id);
    lo timestamptz := since;
    hi timestamptz := until;
BEGIN
    IF lo IS NULL AND hi IS NULL THEN
        SELECT p.period_start, p.period_end INTO lo, hi
          FROM credits.pools p WHERE p.org_id = o.org_id;
    END IF;
    RETURN QUERY
        SELECT l.user_id, l.model, count(*), sum(l.input_tokens), sum(l.output_tokens),
               coalesce(credits.sum(l.cost), 0), coalesce(credits.sum(l.charged), 0),
               coalesce(credits.sum(l.shortfall), 0)
          FROM credits.ledger l
         WHERE l.org_id = o.org_id
           AND l.kind IN ('debit', 'settle')
           AND (lo IS NULL OR l.created_at >= lo)
           AND (hi IS NULL OR l.created_at < hi)
         GROUP BY l.user_id, l.model
         ORDER BY l.user_id, l.model;
END
$$;
COMMENT ON FUNCTION credits.usage(text, timestamptz, timestamptz) IS
    'usage per user and model in [since, until) (default: the current period): calls, tokens, cost, charged, shortfall';

-- verify() is SQL, not PL/pgSQL: its output columns share names with its
-- input (org_id), which PL/pgSQL refuses.
CREATE FUNCTION credits.verify(org_id text DEFAULT NULL)
    RETURNS TABLE(org_id text, check_name text, expected text, actual text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
    WITH pools AS (
        -- a pool is its row plus its escrow stripes
        SELECT p.org_id, p.period_start, p.period_end, p.allowance,
               p.allowance_used + coalesce(s.used, 0) AS allowance_used, p.topup,
               p.topup_used, p.reserved,
               p.allowance - p.allowance_used - coalesce(s.used, 0) + p.topup - p.reserved
                 AS available,
               coalesce(s.funds, 0) AS escrowed, coalesce(s.negative, false) AS negative_stripe,
               p.stripes, s.beyond
          FROM credits.pools p
          LEFT JOIN (SELECT x.org_id, credits.sum(x.used) AS used, credits.sum(x.funds) AS funds,
                            bool_or(x.funds < 0 OR x.used < 0) AS negative,
                            max(x.stripe) FILTER (WHERE x.funds <> 0 OR x.used <> 0) AS beyond
                       FROM credits.pool_stripes x GROUP BY x.org_id) s USING (org_id)
         WHERE $1 IS NULL OR p.org_id = $1
    ),
    ledger AS (
        SELECT l.* FROM credits.ledger l WHERE $1 IS NULL OR l.org_id = $1
    ),
    period_ledger AS (
        SELECT p.org_id,
               coalesce(credits.sum(l.from_allowance), 0) AS from_allowance,
               coalesce(credits.sum(l.from_topup), 0) AS from_topup
          FROM pools p
          LEFT JOIN ledger l ON l.org_id = p.org_id AND l.period_start = p.period_start
         GROUP BY p.org_id
    ),
    all_ledger AS (
        SELECT p.org_id,
               coalesce(credits.sum(l.topup_change), 0)
                 - coalesce(credits.sum(l.from_topup), 0) AS topup,
               coalesce(credits.sum(l.reserved_change), 0) AS reserved
          FROM pools p
          LEFT JOIN ledger l ON l.org_id = p.org_id
         GROUP BY p.org_id
    ),
    -- a recharge restores the period: members' usage counts from the last one
    restored AS (
        SELECT p.org_id, coalesce(max(l.entry_id), 0) AS after
          FROM pools p
          LEFT JOIN ledger l ON l.org_id = p.org_id AND l.period_start = p.period_start
                            AND l.kind = 'recharge' AND l.from_allowance <> 0
         GROUP BY p.org_id
    ),
    member_ledger AS (
        SELECT l.org_id, l.user_id, credits.sum(l.charged) AS charged
          FROM pools p
          JOIN restored r ON r.org_id = p.org_id
          JOIN ledger l ON l.org_id = p.org_id AND l.period_start = p.period_start
                       AND l.entry_id > r.after
         WHERE l.user_id IS NOT NULL
         GROUP BY l.org_id, l.user_id
    ),
    members_allowance AS (
        SELECT m.org_id, credits.sum(coalesce(m.allowance, o.allowance_per_user)) AS total
          FROM credits.members m JOIN credits.orgs o USING (org_id)
         WHERE m.active AND ($1 IS NULL OR m.org_id = $1)
         GROUP BY m.org_id
    ),
    grants AS (
        SELECT g.*, coalesce((SELECT credits.sum(d.amount) FROM credits.grant_draws d
                               WHERE d.grant_id = g.grant_id), 0) AS drawn
          FROM credits.grants g WHERE $1 IS NULL OR g.org_id = $1
    ),
    open_holds AS (
        SELECT p.org_id, coalesce(credits.sum(h.reserved), 0) AS reserved
          FROM pools p
          LEFT JOIN credits.holds h ON h.org_id = p.org_id AND h.status = 'open'
         GROUP BY p.org_id
    ),
    member_holds AS (
        SELECT h.org_id, h.user_id, credits.sum(h.reserved) AS reserved
          FROM credits.holds h
         WHERE h.status = 'open' AND ($1 IS NULL OR h.org_id = $1)
         GROUP BY h.org_id, h.user_id
    )
    -- 1. available >= 0
    SELECT p.org_id, 'available_not_negative', '>= 0', p.available::text
      FROM pools p WHERE p.available < 0
    UNION ALL
    -- escrowed credits are part of what is available, never negative
    SELECT p.org_id, 'escrow_within_available', '<= ' || p.available::text, p.escrowed::text
      FROM pools p WHERE p.escrowed > p.available OR p.negative_stripe
    UNION ALL
    -- the stripes numbered from pools.stripes on are empty (readers skip them)
    SELECT p.org_id, 'stripes_beyond_count_empty', '< ' || p.stripes, p.beyond::text
      FROM pools p WHERE p.beyond >= p.stripes
    UNION ALL
    -- 2. pool figures equal what the ledger implies
    SELECT p.org_id, 'allowance_used_matches_ledger', l.from_allowance::text, p.allowance_used::text
      FROM pools p JOIN period_ledger l USING (org_id)
     WHERE p.allowance_used <> l.from_allowance
    UNION ALL
    SELECT p.org_id, 'topup_used_matches_ledger', l.from_topup::text, p.topup_used::text
      FROM pools p JOIN period_ledger l USING (org_id)
     WHERE p.topup_used <> l.from_topup
    UNION ALL
    SELECT p.org_id, 'topup_matches_ledger', l.topup::text, p.topup::text
      FROM pools p JOIN all_ledger l USING (org_id)
     WHERE p.topup <> l.topup
    UNION ALL
    SELECT p.org_id, 'topup_matches_grants',
           coalesce((SELECT credits.sum(g.remaining) FROM grants g WHERE g.org_id = p.org_id), 0)::text,
           p.topup::text
      FROM pools p
     WHERE p.topup <> coalesce((SELECT credits.sum(g.remaining) FROM grants g
                                 WHERE g.org_id = p.org_id), 0)
    UNION ALL
    SELECT p.org_id, 'reserved_matches_ledger', l.reserved::text, p.reserved::text
      FROM pools p JOIN all_ledger l USING (org_id)
     WHERE p.reserved <> l.reserved
    UNION ALL
    SELECT p.org_id, 'reserved_matches_open_holds', h.reserved::text, p.reserved::text
      FROM pools p JOIN open_holds h USING (org_id)
     WHERE p.reserved <> h.reserved
    UNION ALL
    -- each grant's remaining equals its amount minus its draws (and expiry)
    SELECT g.org_id, 'grant_remaining:' || g.grant_id,
           (g.amount - g.drawn - g.expired_amount)::text, g.remaining::text
      FROM grants g
     WHERE g.remaining <> g.amount - g.drawn - g.expired_amount
    UNION ALL
    SELECT l.org_id, 'grant_draws_match_entry:' || l.entry_id, l.from_topup::text,
           coalesce((SELECT credits.sum(d.amount) FROM credits.grant_draws d
                      WHERE d.entry_id = l.entry_id), 0)::text
      FROM ledger l
     WHERE l.from_topup <> coalesce((SELECT credits.sum(d.amount) FROM credits.grant_draws d
                                      WHERE d.entry_id = l.entry_id), 0)
    UNION ALL
    -- member usage equals the sum of that member's charges
    SELECT coalesce(u.org_id, l.org_id),
           'member_usage_matches_ledger:' || coalesce(u.user_id, l.user_id),
           coalesce(l.charged, 0)::text, coalesce(u.used, 0)::text
      FROM (SELECT mu.* FROM credits.member_usage mu JOIN pools p USING (org_id)) u
      FULL JOIN member_ledger l USING (org_id, user_id)
     WHERE coalesce(u.used, 0) <> coalesce(l.charged, 0)
    UNION ALL
    SELECT coalesce(u.org_id, h.org_id),
           'member_reserved_matches_holds:' || coalesce(u.user_id, h.user_id),
           coalesce(h.reserved, 0)::text, coalesce(u.reserved, 0)::text
      FROM (SELECT mu.* FROM credits.member_usage mu JOIN pools p USING (org_id)) u
      FULL JOIN member_holds h USING (org_id, user_id)
     WHERE coalesce(u.reserved, 0) <> coalesce(h.reserved, 0)
    UNION ALL
    -- the pool's allowance covers every active member
    SELECT p.org_id, 'allowance_covers_members', '>= ' || coalesce(m.total, 0)::text,
           p.allowance::text
      FROM pools p LEFT JOIN members_allowance m USING (org_id)
     WHERE p.allowance < coalesce(m.total, 0)
    UNION ALL
    -- each entry is well formed
    SELECT l.org_id, 'ledger_entry:' || l.entry_id,
           'known kind; charged = from_allowance + from_topup <= cost - shortfall',
           l.kind || ' ' || l.charged || ' ' || l.from_allowance || ' ' || l.from_topup
             || ' ' || l.cost || ' ' || l.shortfall
      FROM ledger l
     WHERE l.kind NOT IN ('debit', 'hold', 'settle', 'release', 'recharge', 'topup',
                          'expire', 'reset', 'adjust')
        OR (l.kind IN ('debit', 'settle')
            AND (l.charged <> l.from_allowance + l.from_topup
                 OR l.charged + l.shortfall > l.cost
                 OR l.charged < 0 OR l.shortfall < 0))
    UNION ALL
    -- pool and member figures are never negative
    SELECT p.org_id, 'pool_figures_not_negative', '>= 0',
           p.allowance_used || ' ' || p.topup || ' ' || p.topup_used || ' ' || p.reserved
      FROM pools p
     WHERE p.allowance_used < 0 OR p.allowance_used > p.allowance OR p.topup < 0
        OR p.topup_used < 0 OR p.reserved < 0
    UNION ALL
    SELECT u.org_id, 'member_usage_not_negative:' || u.user_id, '>= 0', u.used || ' ' || u.reserved
      FROM credits.member_usage u JOIN pools p USING (org_id)
     WHERE u.used < 0 OR u.reserved < 0
    UNION ALL
    -- 3. a request_id is charged at most once per org
    SELECT l.org_id, 'request_id_once:' || l.request_id, '1', count(*)::text
      FROM ledger l
     WHERE l.request_id IS NOT NULL
     GROUP BY l.org_id, l.request_id HAVING count(*) > 1
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION credits.verify(text) IS
    'check the invariants for one org or all; one row per violation, no rows when consistent';
-- ---------------------------------------------------------------------------
-- Optional tenant isolation
--
-- With the setting credits.org_id set (SET credits.org_id = 'acme'), a role
-- subject to row-level security sees and changes only that org's rows, and
-- the credits functions refuse other orgs (42501).  With it unset (the
-- default) nothing is filtered.  The extension's own functions run as the
-- extension's owner and are not slowed down by the policies.
-- ---------------------------------------------------------------------------

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['orgs', 'org_providers', 'members', 'member_usage', 'pools',
                             'pool_stripes', 'periods', 'grants', 'holds', 'ledger',
                             'events'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE credits.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format(
            'CREATE POLICY tenant_isolation ON credits.%I'
            ' USING (COALESCE(pg_catalog.current_setting(''credits.org_id'', true), '''')'
            '        OPERATOR(pg_catalog.=) ANY (ARRAY['''', org_id]))', t);
        EXECUTE pg_catalog.format(
            'COMMENT ON POLICY tenant_isolation ON credits.%I IS %L', t,
            'rows of the org named in credits.org_id only, when it is set');
    END LOOP;
END
$$;

ALTER TABLE credits.grant_draws ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON credits.grant_draws
    USING (EXISTS (SELECT 1 FROM credits.grants g WHERE g.grant_id = grant_draws.grant_id));
COMMENT ON POLICY tenant_isolation ON credits.grant_draws IS
    'draws of the grants the session may see';

-- the view reads the tables with the caller's privileges, so the policies apply
ALTER VIEW credits.pool_status SET (security_invoker = true);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['models', 'orgs', 'org_providers', 'members'] LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON credits.%I'
            ' FOR EACH STATEMENT EXECUTE FUNCTION credits._config_changed()',
            t || '_config_changed', t);
    END LOOP;
END
$$;
-- ---------------------------------------------------------------------------
-- Roles and privileges
--
--   credits_app     the application functions
--   credits_admin   the application and admin functions, DML on config tables
--   credits_reader  reads the tables and views
--
-- PUBLIC gets nothing.  Grant the roles to logins: GRANT credits_app TO api;
-- ---------------------------------------------------------------------------

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['credits_admin', 'credits_app', 'credits_reader'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON SCHEMA credits FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA credits FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA credits FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA credits FROM PUBLIC;

GRANT USAGE ON SCHEMA credits TO credits_admin, credits_app, credits_reader;

-- The credit type's operators, casts, aggregates and index support, for
-- everyone who may use the schema.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'credits'::regnamespace
           AND (p.oid IN (SELECT oprcode FROM pg_catalog.pg_operator)
                OR p.oid IN (SELECT castfunc FROM pg_catalog.pg_cast)
                OR p.oid IN (SELECT amproc FROM pg_catalog.pg_amproc)
                OR p.oid IN (SELECT unnest(ARRAY[aggfnoid, aggtransfn, aggfinalfn, aggcombinefn])
                               FROM pg_catalog.pg_aggregate)
                OR p.oid IN (SELECT unnest(ARRAY[typinput, typoutput, typreceive, typsend])
                               FROM pg_catalog.pg_type))
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO credits_admin, credits_app, credits_reader', f);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION credits.valid_period(interval),
    credits.billing_period(timestamptz, interval, text, timestamptz)
    TO credits_admin, credits_app, credits_reader;
-- pool_status computes with the caller's privileges (and row-level security)
GRANT EXECUTE ON FUNCTION credits._pool_now(credits.pools, credits.orgs, timestamptz)
    TO credits_admin, credits_reader;

-- application functions
GRANT EXECUTE ON FUNCTION
    credits.allowed_models(text, text),
    credits.resolve_model(text, text, text),
    credits.cost(text, bigint, bigint),
    credits.credit_debit(text, text, text, bigint, bigint, text),
    credits.credit_reserve(text, text, text, bigint, bigint, text, interval),
    credits.credit_settle(bigint, bigint, bigint),
    credits.credit_release(bigint)
    TO credits_app, credits_admin;

-- admin functions
GRANT EXECUTE ON FUNCTION
    credits.create_org(text, text, credits.credit, timestamptz, interval, text),
    credits.enable_provider(text, text),
    credits.disable_provider(text, text),
    credits.add_member(text, text, credits.credit, credits.credit),
    credits.remove_member(text, text),
    credits.set_plan(text, credits.credit),
    credits.add_provider(text, text),
    credits.upsert_model(text, text, credits.credit, credits.credit, credits.credit, boolean, text),
    credits.verify(text),
    credits.recharge(text, credits.credit, timestamptz, text),
    credits.reset_due(timestamptz),
    credits.expire_holds(timestamptz),
    credits.schedule_jobs()
    TO credits_admin;

-- reports
GRANT EXECUTE ON FUNCTION credits.usage(text, timestamptz, timestamptz)
    TO credits_reader, credits_admin;

-- reading
GRANT SELECT ON ALL TABLES IN SCHEMA credits TO credits_reader, credits_admin;

-- config tables: admins may edit them with plain DML; triggers keep pools consistent
GRANT INSERT, UPDATE, DELETE ON credits.providers, credits.models, credits.orgs,
    credits.org_providers, credits.members TO credits_admin;
