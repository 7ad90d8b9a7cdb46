
-- ---------------------------------------------------------------------------
-- Roles (the same three as on a node) and the router's own schema
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

CREATE SCHEMA credits_router;
COMMENT ON SCHEMA credits_router IS
    'routing of the credits API over the partitions of the PL/Proxy cluster credits_cluster';

-- ---------------------------------------------------------------------------
-- Result types and views of the API (the shards' columns, by name)
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
    'result of credit_reserve: the hold (its id names its partition), the model to call, what is held and the pool after';

-- ---------------------------------------------------------------------------
-- The cluster: partitions, and where an org or a hold lives
-- ---------------------------------------------------------------------------

-- The C checks of credits itself (same library, same messages and SQLSTATEs)
CREATE FUNCTION credits_router._check_id(value text, name text) RETURNS text
    AS 'MODULE_PATHNAME', 'credits_check_id' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION credits_router._check_id(text, text) IS
    'internal: the identifier, or 22004 when NULL and 22023 when empty or longer than 255 bytes (credits'' own check)';

CREATE FUNCTION credits_router._check_tenant(org_id text) RETURNS void
    AS 'MODULE_PATHNAME', 'credits_check_tenant' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION credits_router._check_tenant(text) IS
    'internal: 42501 when credits.org_id is set and names another org (credits'' own check)';

CREATE FUNCTION credits_router.partitions()
    RETURNS TABLE(partition integer, connstr text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.substr(pg_catalog.split_part(o, '=', 1), 2)::integer,
           pg_catalog.regexp_replace(pg_catalog.substr(o, pg_catalog.strpos(o, '=') + 1),
                                     'password\s*=\s*(''[^'']*''|\S+)', 'password=***', 'g')
      FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) o
     WHERE s.srvname = 'credits_cluster' AND o ~ '^p[0-9]+='
     ORDER BY 1
$$;
COMMENT ON FUNCTION credits_router.partitions() IS
    'the partitions of the cluster credits_cluster (SQL/MED server options pN) and their connection strings, passwords masked';

CREATE FUNCTION credits_router.partition_count() RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*)::integer
      FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) o
     WHERE s.srvname = 'credits_cluster' AND o ~ '^p[0-9]+='
$$;
COMMENT ON FUNCTION credits_router.partition_count() IS
    'how many partitions the cluster credits_cluster has (a power of two)';

-- What PL/Proxy does with a hash value h: partition h & (partitions - 1).
CREATE FUNCTION credits_router.partition_of(org_id text) RETURNS integer
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.hashtext(org_id) & (credits_router.partition_count() - 1)
$$;
COMMENT ON FUNCTION credits_router.partition_of(text) IS
    'the partition that holds an org: hashtext(org_id) & (partitions - 1)';

-- Hold ids through the router: the shard's own hold id * 1024 + the
-- partition that made it.  The router makes them (credit_reserve) and takes
-- them apart (credit_settle, credit_release); nothing on a shard knows of
-- them, so a shard dumped and restored, or moved, keeps every hold id valid.
CREATE FUNCTION credits_router.hold_partition(hold_id bigint) RETURNS integer
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT (hold_id & 1023)::integer & (credits_router.partition_count() - 1)
$$;
COMMENT ON FUNCTION credits_router.hold_partition(bigint) IS
    'the partition that made a hold: router hold ids are the shard''s hold id * 1024 + the partition (hold_id mod 1024)';

-- RUN ON functions: checked on the router before anything is sent.
CREATE FUNCTION credits_router.org_hash(org_id text) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM credits_router._check_id(org_id, 'org_id');
    PERFORM credits_router._check_tenant(org_id);
    RETURN pg_catalog.hashtext(org_id);
END
$$;
COMMENT ON FUNCTION credits_router.org_hash(text) IS
    'PL/Proxy hash of an org-scoped call: hashtext(org_id), after the org id (22004, 22023) and credits.org_id (42501) are checked';

CREATE FUNCTION credits_router.hold_hash(hold_id bigint) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF hold_id IS NULL THEN
        RAISE EXCEPTION 'hold_id must not be null' USING ERRCODE = '22004';
    END IF;
    RETURN (hold_id & 1023)::integer;
END
$$;
COMMENT ON FUNCTION credits_router.hold_hash(bigint) IS
    'PL/Proxy hash of a hold''s call: the partition in the hold id''s low 10 bits (hold_id mod 1024); NULL is 22004';

-- The org's partition, or every partition when org is NULL (reports and
-- verify() of the whole cluster).
CREATE FUNCTION credits_router.org_hashes(org text) RETURNS SETOF integer
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF org IS NULL THEN
        RETURN QUERY SELECT pg_catalog.generate_series(0, credits_router.partition_count() - 1);
    ELSE
        RETURN NEXT credits_router.org_hash(org);
    END IF;
END
$$;
COMMENT ON FUNCTION credits_router.org_hashes(text) IS
    'PL/Proxy hashes of a report: the org''s partition (checked as org_hash), or every partition when org is NULL';

-- A default the shard evaluates: PL/Proxy sends every argument, so a
-- DEFAULT now() would take the router's clock (and its transaction's start).
-- The public functions whose node default is now() default to this
-- placeholder instead, and the shard puts its own now() in its place.
CREATE FUNCTION credits_router.shard_now() RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT '-infinity'::timestamptz $$;
COMMENT ON FUNCTION credits_router.shard_now() IS
    'placeholder default (-infinity) meaning "now() on the shard": the shard applies its own clock';

-- The SQLSTATE of a call whose partition cannot be reached.  PL/Proxy
-- reports its own connection failures as XX000 "PL/Proxy function F(n):
-- [database] PQconnectPoll: ..."; a shard that shuts down under a call
-- answers 57P01-57P03.  Those become 08001 (no connection could be made:
-- nothing ran) or 08006 (the connection broke during the call: it may or
-- may not have committed; a request_id makes the retry safe), with a
-- message naming the partition.  Anything else returns, and the caller
-- re-raises the original error.
CREATE FUNCTION credits_router._unavailable_code(state text, msg text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN state IN ('57P01', '57P02', '57P03') THEN '08006'
        WHEN state = 'XX000' AND msg ~ '^PL/Proxy function ' THEN
            CASE WHEN msg ~ '(PQconnectStart|PQconnectPoll|connect timeout to)' THEN '08001'
                 WHEN msg ~ '(PQsend|PQflush|PQconsumeInput|query timeout|Lost result|Unfinished connection|server closed the connection)' THEN '08006'
            END
    END
$$;
COMMENT ON FUNCTION credits_router._unavailable_code(text, text) IS
    'internal: 08001 (could not connect) or 08006 (connection lost) when an error says a partition could not be reached, else NULL';

CREATE FUNCTION credits_router._unavailable(part integer, state text, msg text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    db text := pg_catalog.substring(msg, '^[^[]*\[([^]]*)\]');
    code text := credits_router._unavailable_code(state, msg);
BEGIN
    IF code IS NULL THEN
        RETURN;
    END IF;
    IF part IS NULL AND db IS NOT NULL THEN
        -- RUN ON ALL: PL/Proxy names the database; find its partition
        SELECT min(p.partition) INTO part FROM credits_router.partitions() p
         WHERE pg_catalog.substring(p.connstr, '(?:^|\s)dbname\s*=\s*''?([^''\s]+)') = db
        HAVING count(*) = 1;
    END IF;
    RAISE EXCEPTION 'partition % of credits_cluster is unavailable',
                    coalesce(part::text, '(database ' || coalesce(db, '?') || ')')
        USING ERRCODE = code,
              DETAIL = msg,
              HINT = CASE code
                  WHEN '08001' THEN 'The call did not reach this partition; orgs of the other partitions are not affected. Retry when it is back.'
                  ELSE 'The call may or may not have committed on the partition: retry it with the same request_id when the partition is back.'
              END;
END
$$;
COMMENT ON FUNCTION credits_router._unavailable(integer, text, text) IS
    'internal: raise 08001/08006 naming the partition when an error says it could not be reached; return otherwise';

-- ---------------------------------------------------------------------------
-- Views: pool_status and periods of every partition, merged.  With
-- credits.org_id set, only that org's partition is asked (and only its
-- rows come back); credits_router.pool_status(org_id) reads one org's row
-- from its partition alone.
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits_router._p_pool_status(org text)
    RETURNS TABLE(org_id text, period_start timestamptz, period_end timestamptz,
                  allowance credits.credit, allowance_used credits.credit, topup credits.credit,
                  reserved credits.credit, available credits.credit, exhausted boolean,
                  burn_per_day credits.credit, runs_out_at timestamptz)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hashes(org);
    SELECT s.org_id, s.period_start, s.period_end, s.allowance, s.allowance_used, s.topup,
           s.reserved, s.available, s.exhausted,
           (pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'burn_per_day')::credits.credit AS burn_per_day,
           (pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'runs_out_at')::timestamptz AS runs_out_at
      FROM credits.pool_status s
     WHERE org IS NULL OR s.org_id OPERATOR(pg_catalog.=) org;
$$;

CREATE FUNCTION credits_router._pool_status(org text)
    RETURNS TABLE(org_id text, period_start timestamptz, period_end timestamptz,
                  allowance credits.credit, allowance_used credits.credit, topup credits.credit,
                  reserved credits.credit, available credits.credit, exhausted boolean,
                  burn_per_day credits.credit, runs_out_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN QUERY SELECT * FROM credits_router._p_pool_status(org);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits_router._pool_status(text) IS
    'internal: pool_status rows of one org (its partition) or of every partition (org NULL)';

CREATE VIEW credits.pool_status AS
SELECT s.org_id, s.period_start, s.period_end, s.allowance, s.allowance_used, s.topup,
       s.reserved, s.available, s.exhausted, s.burn_per_day, s.runs_out_at
  FROM credits_router._pool_status(NULLIF(pg_catalog.current_setting('credits.org_id', true), '')) s;
COMMENT ON VIEW credits.pool_status IS
    'one row per org for its current period, from every partition (only the org of credits.org_id when it is set): available = allowance - allowance_used + topup - reserved';

CREATE FUNCTION credits_router.pool_status(org_id text) RETURNS SETOF credits.pool_status
LANGUAGE sql STABLE SET search_path = pg_catalog, credits, pg_temp AS $$
    SELECT s.* FROM credits_router._pool_status(credits_router._check_id(org_id, 'org_id')) s
$$;
COMMENT ON FUNCTION credits_router.pool_status(text) IS
    'the org''s pool_status row, read from its partition alone (the view asks every partition unless credits.org_id is set)';

CREATE FUNCTION credits_router._p_periods(org text)
    RETURNS TABLE(org_id text, period_start timestamptz, period_end timestamptz,
                  allowance credits.credit, allowance_used credits.credit,
                  topup_used credits.credit, shortfall credits.credit, calls bigint,
                  closed_at timestamptz)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hashes(org);
    SELECT p.org_id, p.period_start, p.period_end, p.allowance, p.allowance_used, p.topup_used,
           p.shortfall, p.calls, p.closed_at
      FROM credits.periods p
     WHERE org IS NULL OR p.org_id OPERATOR(pg_catalog.=) org;
$$;

CREATE FUNCTION credits_router._periods(org text)
    RETURNS TABLE(org_id text, period_start timestamptz, period_end timestamptz,
                  allowance credits.credit, allowance_used credits.credit,
                  topup_used credits.credit, shortfall credits.credit, calls bigint,
                  closed_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN QUERY SELECT * FROM credits_router._p_periods(org);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits_router._periods(text) IS
    'internal: closed periods of one org (its partition) or of every partition (org NULL)';

CREATE VIEW credits.periods AS
SELECT p.org_id, p.period_start, p.period_end, p.allowance, p.allowance_used, p.topup_used,
       p.shortfall, p.calls, p.closed_at
  FROM credits_router._periods(NULLIF(pg_catalog.current_setting('credits.org_id', true), '')) p;
COMMENT ON VIEW credits.periods IS
    'closed billing periods of every partition (only the org of credits.org_id when it is set)';

-- ---------------------------------------------------------------------------
-- Org-scoped calls: on the partition that holds the org
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits_router._p_allowed_models(org text, user_id text)
    RETURNS TABLE(provider text, model text, display_name text, is_fallback boolean,
                  available boolean, reason text, input_price credits.credit,
                  output_price credits.credit, limited_by text, resets_at timestamptz)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT a.provider, a.model, a.display_name, a.is_fallback, a.available, a.reason,
           a.input_price, a.output_price,
           pg_catalog.to_jsonb(a) OPERATOR(pg_catalog.->>) 'limited_by' AS limited_by,
           (pg_catalog.to_jsonb(a) OPERATOR(pg_catalog.->>) 'resets_at')::timestamptz AS resets_at
      FROM credits.allowed_models(org, user_id) a;
$$;

CREATE FUNCTION credits.allowed_models(org_id text, user_id text DEFAULT NULL)
    RETURNS TABLE(provider text, model text, display_name text, is_fallback boolean,
                  available boolean, reason text, input_price credits.credit,
                  output_price credits.credit, limited_by text, resets_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN QUERY SELECT * FROM credits_router._p_allowed_models(org_id, user_id);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.allowed_models(text, text) IS
    'every active model of the org''s enabled providers; premium ones grayed out (available = false, reason, limited_by, resets_at) when a limit ran out (routed to the org''s partition)';

CREATE FUNCTION credits_router._p_resolve_model(org text, user_id text, model text)
    RETURNS text
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.resolve_model(org, user_id, model);
$$;

CREATE FUNCTION credits.resolve_model(org_id text, user_id text, model text)
    RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN credits_router._p_resolve_model(org_id, user_id, model);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.resolve_model(text, text, text) IS
    'the model to call now: the requested one when available to the user, else its provider''s fallback (routed to the org''s partition)';

CREATE FUNCTION credits_router._p_credit_debit(org text, user_id text, model text, input_tokens bigint, output_tokens bigint, request_id text)
    RETURNS credits.debit_result
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT r.* FROM credits.credit_debit(org, user_id, model, input_tokens, output_tokens, request_id) r;
$$;

CREATE FUNCTION credits.credit_debit(org_id text, user_id text, model text, input_tokens bigint, output_tokens bigint DEFAULT 0, request_id text DEFAULT NULL)
    RETURNS credits.debit_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN credits_router._p_credit_debit(org_id, user_id, model, input_tokens, output_tokens, request_id);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.credit_debit(text, text, text, bigint, bigint, text) IS
    'record a completed call and charge the org''s pool atomically on the org''s partition; request_id makes it idempotent (and a retry safe)';

CREATE FUNCTION credits_router._p_credit_reserve(org text, user_id text, model text, input_tokens bigint, max_output_tokens bigint, request_id text, ttl interval)
    RETURNS credits.hold_result
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT r.* FROM credits.credit_reserve(org, user_id, model, input_tokens, max_output_tokens, request_id, ttl) r;
$$;

CREATE FUNCTION credits.credit_reserve(org_id text, user_id text, model text, input_tokens bigint, max_output_tokens bigint, request_id text DEFAULT NULL, ttl interval DEFAULT NULL)
    RETURNS credits.hold_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' AS $$
DECLARE
    e_state text;
    e_msg text;
    r credits.hold_result;
BEGIN
    r := credits_router._p_credit_reserve(org_id, user_id, model, input_tokens, max_output_tokens, request_id,
        coalesce(ttl, pg_catalog.current_setting('credits.hold_ttl', true)::interval));
    -- the router's hold id: the shard's, with the partition in its low 10 bits
    r.hold_id := r.hold_id * 1024 + credits_router.partition_of(org_id);
    RETURN r;
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.credit_reserve(text, text, text, bigint, bigint, text, interval) IS
    'reserve the estimated cost of a streaming call on the org''s partition (the hold id names the partition); ttl NULL: this session''s credits.hold_ttl';

CREATE FUNCTION credits_router._p_credit_settle(hold bigint, input_tokens bigint, output_tokens bigint, tenant text)
    RETURNS credits.debit_result
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.hold_hash(hold);
    SELECT r.* FROM credits.credit_settle(
               CASE WHEN pg_catalog.set_config('credits.org_id', tenant, true) IS NULL THEN NULL
                    ELSE hold OPERATOR(pg_catalog.>>) 10 END,
               input_tokens, output_tokens) r;
$$;

CREATE FUNCTION credits.credit_settle(hold_id bigint, input_tokens bigint, output_tokens bigint)
    RETURNS credits.debit_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN credits_router._p_credit_settle(hold_id, input_tokens, output_tokens,
        coalesce(pg_catalog.current_setting('credits.org_id', true), ''));
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.hold_partition(hold_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.credit_settle(bigint, bigint, bigint) IS
    'charge a hold''s real usage on the partition that made it (hold_id mod 1024): from the hold first, any excess from the pool';

CREATE FUNCTION credits_router._p_credit_release(hold bigint, tenant text)
    RETURNS credits.credit
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.hold_hash(hold);
    SELECT credits.credit_release(
               CASE WHEN pg_catalog.set_config('credits.org_id', tenant, true) IS NULL THEN NULL
                    ELSE hold OPERATOR(pg_catalog.>>) 10 END);
$$;

CREATE FUNCTION credits.credit_release(hold_id bigint)
    RETURNS credits.credit
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN credits_router._p_credit_release(hold_id, coalesce(pg_catalog.current_setting('credits.org_id', true), ''));
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.hold_partition(hold_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.credit_release(bigint) IS
    'release a hold without charging, on the partition that made it; returns the amount released';

CREATE FUNCTION credits_router._p_create_org(org text, name text, allowance_per_user credits.credit, billing_anchor timestamptz, period interval, time_zone text)
    RETURNS credits.pool_status
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT s.org_id, s.period_start, s.period_end, s.allowance, s.allowance_used, s.topup,
           s.reserved, s.available, s.exhausted,
           (pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'burn_per_day')::credits.credit AS burn_per_day,
           (pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'runs_out_at')::timestamptz AS runs_out_at
      FROM credits.create_org(org, name, allowance_per_user,
               CASE WHEN billing_anchor = '-infinity' THEN pg_catalog.now() ELSE billing_anchor END,
               period, time_zone) s;
$$;

CREATE FUNCTION credits.create_org(org_id text, name text DEFAULT NULL, allowance_per_user credits.credit DEFAULT 1000, billing_anchor timestamptz DEFAULT credits_router.shard_now(), period interval DEFAULT '1 month', time_zone text DEFAULT 'UTC')
    RETURNS credits.pool_status
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN credits_router._p_create_org(org_id, name, allowance_per_user, billing_anchor, period, time_zone);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.create_org(text, text, credits.credit, timestamptz, interval, text) IS
    'create an org with its plan and billing period on its partition; returns its pool_status; billing_anchor defaults to the shard''s now(); an existing org is 23505';

CREATE FUNCTION credits_router._p_enable_provider(org text, provider text)
    RETURNS void
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.enable_provider(org, provider);
$$;

CREATE FUNCTION credits.enable_provider(org_id text, provider text)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_enable_provider(org_id, provider);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.enable_provider(text, text) IS
    'let the org''s users see and call the provider''s models (idempotent; on the org''s partition)';

CREATE FUNCTION credits_router._p_disable_provider(org text, provider text)
    RETURNS void
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.disable_provider(org, provider);
$$;

CREATE FUNCTION credits.disable_provider(org_id text, provider text)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_disable_provider(org_id, provider);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.disable_provider(text, text) IS
    'hide the provider''s models from the org and refuse calls to them (idempotent; on the org''s partition)';

CREATE FUNCTION credits_router._p_add_member(org text, user_id text, allowance credits.credit, cap credits.credit)
    RETURNS void
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.add_member(org, user_id, allowance, cap);
$$;

CREATE FUNCTION credits.add_member(org_id text, user_id text, allowance credits.credit DEFAULT NULL, cap credits.credit DEFAULT NULL)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_add_member(org_id, user_id, allowance, cap);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.add_member(text, text, credits.credit, credits.credit) IS
    'add (or re-activate, or update) a member; allowance NULL = the org''s plan, cap NULL = no personal cap (on the org''s partition)';

CREATE FUNCTION credits_router._p_remove_member(org text, user_id text)
    RETURNS void
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.remove_member(org, user_id);
$$;

CREATE FUNCTION credits.remove_member(org_id text, user_id text)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_remove_member(org_id, user_id);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.remove_member(text, text) IS
    'deactivate a member (history kept); the pool shrinks at the next period (on the org''s partition)';

CREATE FUNCTION credits_router._p_set_plan(org text, allowance_per_user credits.credit)
    RETURNS void
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.set_plan(org, allowance_per_user);
$$;

CREATE FUNCTION credits.set_plan(org_id text, allowance_per_user credits.credit)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_set_plan(org_id, allowance_per_user);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.set_plan(text, credits.credit) IS
    'change the credits each member brings per period: a raise counts at once, a cut at the next period (on the org''s partition)';

CREATE FUNCTION credits_router._p_create_team(org text, team_id text, cap credits.credit)
    RETURNS void
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.create_team(org, team_id, cap);
$$;

CREATE FUNCTION credits.create_team(org_id text, team_id text, cap credits.credit DEFAULT NULL)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_create_team(org_id, team_id, cap);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.create_team(text, text, credits.credit) IS
    'create a team of the org, with an optional cap on what its members draw together per period (on the org''s partition)';

CREATE FUNCTION credits_router._p_set_team_cap(org text, team_id text, cap credits.credit)
    RETURNS void
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.set_team_cap(org, team_id, cap);
$$;

CREATE FUNCTION credits.set_team_cap(org_id text, team_id text, cap credits.credit)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_set_team_cap(org_id, team_id, cap);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.set_team_cap(text, text, credits.credit) IS
    'set or clear (NULL) a team''s cap (on the org''s partition)';

CREATE FUNCTION credits_router._p_set_member_team(org text, user_id text, team_id text)
    RETURNS void
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.set_member_team(org, user_id, team_id);
$$;

CREATE FUNCTION credits.set_member_team(org_id text, user_id text, team_id text)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_set_member_team(org_id, user_id, team_id);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.set_member_team(text, text, text) IS
    'put a member in a team, or in none (NULL) (on the org''s partition)';

CREATE FUNCTION credits_router._p_set_rollover(org text, max_amount credits.credit, periods integer)
    RETURNS void
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.set_rollover(org, max_amount, periods);
$$;

CREATE FUNCTION credits.set_rollover(org_id text, max_amount credits.credit, periods integer DEFAULT 1)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_set_rollover(org_id, max_amount, periods);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.set_rollover(text, credits.credit, integer) IS
    'at each period close, unused allowance up to max_amount becomes a grant expiring after periods periods; NULL max_amount: off (on the org''s partition)';

CREATE FUNCTION credits_router._p_set_auto_recharge(org text, below credits.credit, amount credits.credit, max_per_period integer, expires_after interval)
    RETURNS void
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT credits.set_auto_recharge(org, below, amount, max_per_period, expires_after);
$$;

CREATE FUNCTION credits.set_auto_recharge(org_id text, below credits.credit, amount credits.credit, max_per_period integer DEFAULT 1, expires_after interval DEFAULT NULL)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_set_auto_recharge(org_id, below, amount, max_per_period, expires_after);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.set_auto_recharge(text, credits.credit, credits.credit, integer, interval) IS
    'add a grant of amount when a charge takes available under below, at most max_per_period times a period; NULL below: off (on the org''s partition)';

CREATE FUNCTION credits_router._p_recharge(org text, amount credits.credit, expires_at timestamptz, note text)
    RETURNS credits.pool_status
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT s.org_id, s.period_start, s.period_end, s.allowance, s.allowance_used, s.topup,
           s.reserved, s.available, s.exhausted,
           (pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'burn_per_day')::credits.credit AS burn_per_day,
           (pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'runs_out_at')::timestamptz AS runs_out_at
      FROM credits.recharge(org, amount, expires_at, note) s;
$$;

CREATE FUNCTION credits.recharge(org_id text, amount credits.credit DEFAULT NULL, expires_at timestamptz DEFAULT NULL, note text DEFAULT NULL)
    RETURNS credits.pool_status
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN credits_router._p_recharge(org_id, amount, expires_at, note);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.recharge(text, credits.credit, timestamptz, text) IS
    'no amount: restore the current period; with an amount: add a purchased grant (optionally expiring); returns pool_status (on the org''s partition)';

CREATE FUNCTION credits_router._p_usage(org text, since timestamptz, until timestamptz)
    RETURNS TABLE(user_id text, model text, calls bigint, input_tokens numeric,
                  output_tokens numeric, cost credits.credit, charged credits.credit,
                  shortfall credits.credit, team_id text)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT u.user_id, u.model, u.calls, u.input_tokens, u.output_tokens, u.cost, u.charged,
           u.shortfall, pg_catalog.to_jsonb(u) OPERATOR(pg_catalog.->>) 'team_id' AS team_id
      FROM credits.usage(org, since, until) u;
$$;

CREATE FUNCTION credits.usage(org_id text, since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
    RETURNS TABLE(user_id text, model text, calls bigint, input_tokens numeric,
                  output_tokens numeric, cost credits.credit, charged credits.credit,
                  shortfall credits.credit, team_id text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN QUERY SELECT * FROM credits_router._p_usage(org_id, since, until);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.usage(text, timestamptz, timestamptz) IS
    'usage per user and model in [since, until) (default: the current period), from the org''s partition';

CREATE FUNCTION credits_router._p_team_usage(org text, since timestamptz, until timestamptz)
    RETURNS TABLE(team_id text, members integer, cap credits.credit, used credits.credit,
                  charged credits.credit, shortfall credits.credit)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hash(org);
    SELECT t.team_id, t.members, t.cap, t.used, t.charged, t.shortfall
      FROM credits.team_usage(org, since, until) t;
$$;

CREATE FUNCTION credits.team_usage(org_id text, since timestamptz DEFAULT NULL, until timestamptz DEFAULT NULL)
    RETURNS TABLE(team_id text, members integer, cap credits.credit, used credits.credit,
                  charged credits.credit, shortfall credits.credit)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN QUERY SELECT * FROM credits_router._p_team_usage(org_id, since, until);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org_id), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.team_usage(text, timestamptz, timestamptz) IS
    'per team: members, cap, what its members drew this period, and charged/shortfall in [since, until), from the org''s partition';


-- ---------------------------------------------------------------------------
-- Calls on every partition.  PL/Proxy's RUN ON ALL needs a set-returning
-- function: the public functions keep their node signatures and wrap a
-- SETOF twin.  Every partition's call commits on its own: a failure on one
-- partition fails the call, but what the others did stays.  Catalog changes
-- are therefore idempotent (a retry converges), first check that every
-- partition answers (so a partition that is down changes nothing anywhere),
-- and credits_router.catalogs_agree() says whether every catalog is equal.
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits_router._p_ping() RETURNS SETOF integer
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON ALL;
    SELECT 1;
$$;

-- 08001/08006 naming the partition when one cannot be reached
CREATE FUNCTION credits_router._ping_all() RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._p_ping();
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(NULL, e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits_router._ping_all() IS
    'internal: every partition answers, or 08001/08006 naming the one that does not';

CREATE FUNCTION credits_router._p_add_provider(provider text, display_name text) RETURNS SETOF integer
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON ALL;
    SELECT 1 FROM credits.add_provider(provider, display_name);
$$;

CREATE FUNCTION credits.add_provider(provider text, display_name text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._ping_all();
    PERFORM credits_router._p_add_provider(provider, display_name);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(NULL, e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.add_provider(text, text) IS
    'add a provider, or rename an existing one, on every partition (idempotent: repeat it after a failure; check with credits_router.catalogs_agree())';

CREATE FUNCTION credits_router._p_upsert_model(provider text, model text,
                                               input_price credits.credit, output_price credits.credit,
                                               request_price credits.credit, is_fallback boolean,
                                               display_name text) RETURNS SETOF integer
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON ALL;
    SELECT 1 FROM credits.upsert_model(provider, model, input_price, output_price, request_price,
                                       is_fallback, display_name);
$$;

CREATE FUNCTION credits.upsert_model(provider text, model text,
                                     input_price credits.credit, output_price credits.credit,
                                     request_price credits.credit DEFAULT 0,
                                     is_fallback boolean DEFAULT false,
                                     display_name text DEFAULT NULL)
    RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    PERFORM credits_router._ping_all();
    PERFORM credits_router._p_upsert_model(provider, model, input_price, output_price,
                                           request_price, is_fallback, display_name);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(NULL, e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.upsert_model(text, text, credits.credit, credits.credit, credits.credit, boolean, text) IS
    'add or change a model on every partition (idempotent: repeat it after a failure; check with credits_router.catalogs_agree())';

-- reset_due() and expire_holds(): each partition with its own clock unless
-- as_of is given; the counts add up.
CREATE FUNCTION credits_router._p_reset_due(as_of timestamptz) RETURNS SETOF integer
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON ALL;
    SELECT credits.reset_due(CASE WHEN as_of = '-infinity' THEN pg_catalog.now() ELSE as_of END);
$$;

CREATE FUNCTION credits.reset_due(as_of timestamptz DEFAULT credits_router.shard_now()) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN (SELECT coalesce(sum(n), 0)::integer FROM credits_router._p_reset_due(as_of) n);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(NULL, e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.reset_due(timestamptz) IS
    'roll every org of every partition whose period ended by as_of (default: each shard''s now()) into its current period; returns how many';

CREATE FUNCTION credits_router._p_expire_holds(as_of timestamptz) RETURNS SETOF integer
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON ALL;
    SELECT credits.expire_holds(CASE WHEN as_of = '-infinity' THEN pg_catalog.now() ELSE as_of END);
$$;

CREATE FUNCTION credits.expire_holds(as_of timestamptz DEFAULT credits_router.shard_now()) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp
    SET DateStyle = 'ISO, MDY' SET IntervalStyle = 'postgres' AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN (SELECT coalesce(sum(n), 0)::integer FROM credits_router._p_expire_holds(as_of) n);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(NULL, e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits.expire_holds(timestamptz) IS
    'release every open hold of every partition that expired by as_of (default: each shard''s now()); returns how many';

-- verify(): one org on its partition, or every partition, rows merged in
-- the node's order.  SQL (its output column org_id is also its argument's
-- name, which PL/pgSQL refuses) over a PL/pgSQL guard.
CREATE FUNCTION credits_router._p_verify(org text)
    RETURNS TABLE(org_id text, check_name text, expected text, actual text)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON credits_router.org_hashes(org);
    SELECT v.org_id, v.check_name, v.expected, v.actual FROM credits.verify(org) v;
$$;

CREATE FUNCTION credits_router._verify(org text)
    RETURNS TABLE(org_id text, check_name text, expected text, actual text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN QUERY SELECT * FROM credits_router._p_verify(org);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(credits_router.partition_of(org), e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits_router._verify(text) IS
    'internal: verify() of one org (its partition) or of every partition (org NULL)';

CREATE FUNCTION credits.verify(org_id text DEFAULT NULL)
    RETURNS TABLE(org_id text, check_name text, expected text, actual text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
    SELECT v.org_id, v.check_name, v.expected, v.actual
      FROM credits_router._verify($1) v
     ORDER BY 1, 2
$$;
COMMENT ON FUNCTION credits.verify(text) IS
    'check the invariants for one org (on its partition) or for every partition; one row per violation, no rows when consistent';

-- cost(): the catalog is the same on every partition; the first partition
-- that answers, starting from the model's hash, prices the call.
CREATE FUNCTION credits_router._p_cost(part integer, model text, input_tokens bigint, output_tokens bigint)
    RETURNS credits.credit
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON part;
    SELECT credits.cost(model, input_tokens, output_tokens);
$$;

CREATE FUNCTION credits.cost(model text, input_tokens bigint, output_tokens bigint DEFAULT 0)
    RETURNS credits.credit
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    n integer := credits_router.partition_count();
    first integer := pg_catalog.hashtext(coalesce(model, '')) & (n - 1);
    e_state text;
    e_msg text;
BEGIN
    FOR i IN 0 .. n - 1 LOOP
        BEGIN
            RETURN credits_router._p_cost((first + i) % n, model, input_tokens, output_tokens);
        EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
            IF credits_router._unavailable_code(e_state, e_msg) IS NULL THEN
                RAISE;
            END IF;
            -- that partition is down: ask the next one
        END;
    END LOOP;
    PERFORM credits_router._unavailable((first + n - 1) % n, e_state, e_msg);
END
$$;
COMMENT ON FUNCTION credits.cost(text, bigint, bigint) IS
    'price of a call: ceil((input_tokens*input_price + output_tokens*output_price) / 1e6) + request_price, exact (any partition that answers: the catalogs agree)';

-- ---------------------------------------------------------------------------
-- Functions of the router itself
-- ---------------------------------------------------------------------------

-- The same C code as on a node: pure computations, nothing to route.
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

-- The jobs run on the router: one reset_due() and one expire_holds() every
-- minute reach every partition.
CREATE FUNCTION credits.schedule_jobs() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = '55000',
                  HINT = 'Add pg_cron to the router''s shared_preload_libraries, set cron.database_name to this database, and run CREATE EXTENSION pg_cron; or schedule credits.reset_due() and credits.expire_holds() on the router with any other scheduler.';
    END IF;
    EXECUTE $q$SELECT cron.schedule('credits-reset-due', '* * * * *',
                                    'SELECT credits.reset_due()')$q$;
    EXECUTE $q$SELECT cron.schedule('credits-expire-holds', '* * * * *',
                                    'SELECT credits.expire_holds()')$q$;
END
$$;
COMMENT ON FUNCTION credits.schedule_jobs() IS
    'register the pg_cron jobs on the router (idempotent): reset_due() and expire_holds() every minute, each reaching every partition';

-- What each partition is: reachable, its credits version, and a digest of
-- its catalog (providers and models).
CREATE FUNCTION credits_router._p_partition_info(part integer)
    RETURNS TABLE(db text, credits_version text, catalog_digest text)
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON part;
    SELECT pg_catalog.current_database()::text AS db,
           (SELECT e.extversion FROM pg_catalog.pg_extension e
             WHERE e.extname = 'credits')::text AS credits_version,
           pg_catalog.md5(
               coalesce((SELECT pg_catalog.string_agg(pg_catalog.concat_ws('|', p.provider, p.display_name),
                                                      ',' ORDER BY p.provider)
                           FROM credits.providers p), '')
               || '#' ||
               coalesce((SELECT pg_catalog.string_agg(pg_catalog.concat_ws('|', m.model, m.provider,
                                                          m.display_name, m.input_price, m.output_price,
                                                          m.request_price, m.is_fallback, m.active),
                                                      ',' ORDER BY m.model)
                           FROM credits.models m), '')) AS catalog_digest;
$$;

CREATE FUNCTION credits_router.check_partitions()
    RETURNS TABLE(partition integer, database text, reachable boolean, credits_version text,
                  catalog_digest text, problem text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    n integer := credits_router.partition_count();
    i record;
    mine text := (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'credits_router');
    first_digest text;
    e_state text;
    e_msg text;
BEGIN
    IF n = 0 THEN
        RAISE EXCEPTION 'the cluster credits_cluster has no partitions'
            USING ERRCODE = '55000',
                  HINT = 'CREATE SERVER credits_cluster FOREIGN DATA WRAPPER plproxy OPTIONS (p0 ''...'', ...).';
    END IF;
    FOR p IN 0 .. n - 1 LOOP
        partition := p;
        database := NULL;
        credits_version := NULL;
        catalog_digest := NULL;
        problem := NULL;
        BEGIN
            SELECT * INTO i FROM credits_router._p_partition_info(p);
            reachable := true;
            database := i.db;
            credits_version := i.credits_version;
            catalog_digest := i.catalog_digest;
            first_digest := coalesce(first_digest, i.catalog_digest);
            IF i.credits_version IS NULL THEN
                problem := 'the credits extension is not installed';
            ELSIF i.credits_version <> mine THEN
                problem := pg_catalog.format('credits %s, the router is %s', i.credits_version, mine);
            ELSIF i.catalog_digest <> first_digest THEN
                problem := 'catalog (providers, models) differs from the first partition''s';
            END IF;
        EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
            reachable := false;
            problem := 'unreachable: ' || e_msg;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION credits_router.check_partitions() IS
    'one row per partition: reachable, credits version, catalog digest, and the problem (NULL when none): version, a catalog that differs';

CREATE FUNCTION credits_router._p_catalog_digest() RETURNS SETOF text
LANGUAGE plproxy VOLATILE AS $$
    CLUSTER 'credits_cluster';
    RUN ON ALL;
    SELECT pg_catalog.md5(
               coalesce((SELECT pg_catalog.string_agg(pg_catalog.concat_ws('|', p.provider, p.display_name),
                                                      ',' ORDER BY p.provider)
                           FROM credits.providers p), '')
               || '#' ||
               coalesce((SELECT pg_catalog.string_agg(pg_catalog.concat_ws('|', m.model, m.provider,
                                                          m.display_name, m.input_price, m.output_price,
                                                          m.request_price, m.is_fallback, m.active),
                                                      ',' ORDER BY m.model)
                           FROM credits.models m), ''));
$$;

CREATE FUNCTION credits_router.catalogs_agree() RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    e_state text;
    e_msg text;
BEGIN
    RETURN (SELECT count(DISTINCT d) = 1 FROM credits_router._p_catalog_digest() d);
EXCEPTION WHEN internal_error OR admin_shutdown OR crash_shutdown OR cannot_connect_now THEN
    GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT;
    PERFORM credits_router._unavailable(NULL, e_state, e_msg);
    RAISE;
END
$$;
COMMENT ON FUNCTION credits_router.catalogs_agree() IS
    'true when every partition has the same providers and models (names, prices, fallbacks, active); 08001 when a partition cannot be asked';

-- ---------------------------------------------------------------------------
-- Privileges: as on a node.  PUBLIC gets nothing; the PL/Proxy functions and
-- helpers run only through the public functions (SECURITY DEFINER), so the
-- roles need nothing on the foreign server.
-- ---------------------------------------------------------------------------

REVOKE ALL ON SCHEMA credits FROM PUBLIC;
REVOKE ALL ON SCHEMA credits_router FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA credits FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA credits_router FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA credits FROM PUBLIC;

GRANT USAGE ON SCHEMA credits, credits_router TO credits_admin, credits_app, credits_reader;

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
-- shard_now() is a default of public functions: evaluated as the caller
GRANT EXECUTE ON FUNCTION credits.valid_period(interval),
    credits.billing_period(timestamptz, interval, text, timestamptz),
    credits_router.shard_now(),
    credits_router.partition_of(text), credits_router.hold_partition(bigint),
    credits_router.partition_count()
    TO credits_admin, credits_app, credits_reader;

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
    credits.schedule_jobs(),
    credits.create_team(text, text, credits.credit),
    credits.set_team_cap(text, text, credits.credit),
    credits.set_member_team(text, text, text),
    credits.set_rollover(text, credits.credit, integer),
    credits.set_auto_recharge(text, credits.credit, credits.credit, integer, interval),
    credits_router.partitions(),
    credits_router.check_partitions(),
    credits_router.catalogs_agree()
    TO credits_admin;

-- reports and views
GRANT EXECUTE ON FUNCTION
    credits.usage(text, timestamptz, timestamptz),
    credits.team_usage(text, timestamptz, timestamptz),
    credits_router.pool_status(text),
    credits_router._pool_status(text),
    credits_router._periods(text)
    TO credits_reader, credits_admin;
GRANT SELECT ON credits.pool_status, credits.periods TO credits_reader, credits_admin;
