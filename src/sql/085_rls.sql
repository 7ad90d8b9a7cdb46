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
                             'events', 'teams', 'team_spend'] LOOP
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
    FOREACH t IN ARRAY ARRAY['models', 'orgs', 'org_providers', 'members', 'teams'] LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON credits.%I'
            ' FOR EACH STATEMENT EXECUTE FUNCTION credits._config_changed()',
            t || '_config_changed', t);
    END LOOP;
END
$$;
