-- ---------------------------------------------------------------------------
-- The read path (C): which models a user may call now
--
-- The C functions run with enable_seqscan = off: each of their queries is a
-- key lookup, and a plan cached while a table was still tiny (a new org's
-- stripes, a new install) must not keep scanning it once it has grown.
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits.allowed_models(org_id text, user_id text DEFAULT NULL)
    RETURNS TABLE(provider text, model text, display_name text, is_fallback boolean,
                  available boolean, reason text, input_price credits.credit,
                  output_price credits.credit)
    AS 'MODULE_PATHNAME', 'credits_allowed_models'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp SET enable_seqscan = off
    ROWS 12;
COMMENT ON FUNCTION credits.allowed_models(text, text) IS
    'every active model of the org''s enabled providers; premium ones grayed out (available = false, reason) when credits or the user''s cap ran out';

CREATE FUNCTION credits.resolve_model(org_id text, user_id text, model text) RETURNS text
    AS 'MODULE_PATHNAME', 'credits_resolve_model'
    LANGUAGE C STABLE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp SET enable_seqscan = off;
COMMENT ON FUNCTION credits.resolve_model(text, text, text) IS
    'the model to call now: the requested one when available to the user, else its provider''s fallback';
