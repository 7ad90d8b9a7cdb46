-- ---------------------------------------------------------------------------
-- The read path (C): which models a user may call now
--
-- They run as their caller (SECURITY INVOKER, no SET clause): they read
-- through the backend's configuration cache and direct index lookups, and
-- the few queries they do run (loading the cache, a pool that is due) run as
-- the extension's owner with search_path pinned,
-- like those of the SECURITY DEFINER functions (see src/spi.c).  A SET
-- clause would save and restore settings on every call, more than the rest
-- of the call costs.
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits.allowed_models(org_id text, user_id text DEFAULT NULL)
    RETURNS TABLE(provider text, model text, display_name text, is_fallback boolean,
                  available boolean, reason text, input_price credits.credit,
                  output_price credits.credit, limited_by text, resets_at timestamptz)
    AS 'MODULE_PATHNAME', 'credits_allowed_models'
    LANGUAGE C STABLE
    ROWS 12;
COMMENT ON FUNCTION credits.allowed_models(text, text) IS
    'every active model of the org''s enabled providers; premium ones grayed out (available = false, reason) when the pool, the user''s team cap or the user''s cap ran out, with the limit (limited_by) and when it resets (resets_at)';

CREATE FUNCTION credits.resolve_model(org_id text, user_id text, model text) RETURNS text
    AS 'MODULE_PATHNAME', 'credits_resolve_model'
    LANGUAGE C STABLE;
COMMENT ON FUNCTION credits.resolve_model(text, text, text) IS
    'the model to call now: the requested one when available to the user, else its provider''s fallback';
