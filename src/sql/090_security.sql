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
GRANT EXECUTE ON FUNCTION credits._pool_status(credits.pools, credits.orgs, timestamptz),
    credits._available(credits.credit, credits.credit, credits.credit, credits.credit)
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
    credits.schedule_jobs(),
    credits.create_team(text, text, credits.credit),
    credits.set_team_cap(text, text, credits.credit),
    credits.set_member_team(text, text, text),
    credits.set_rollover(text, credits.credit, integer),
    credits.set_auto_recharge(text, credits.credit, credits.credit, integer, interval)
    TO credits_admin;

-- reports
GRANT EXECUTE ON FUNCTION credits.usage(text, timestamptz, timestamptz),
    credits.team_usage(text, timestamptz, timestamptz)
    TO credits_reader, credits_admin;

-- reading
GRANT SELECT ON ALL TABLES IN SCHEMA credits TO credits_reader, credits_admin;

-- config tables: admins may edit them with plain DML; triggers keep pools consistent
GRANT INSERT, UPDATE, DELETE ON credits.providers, credits.models, credits.orgs,
    credits.org_providers, credits.members, credits.teams TO credits_admin;
