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
    SET search_path = pg_catalog, credits, pg_temp;
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
