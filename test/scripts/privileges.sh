#!/usr/bin/env bash
# Privileges: the roles credits_app, credits_admin and credits_reader, and
# PUBLIC (a login granted none of them), against every entry point.
#
# As the superuser, a fixture org gets a member, providers, models, a grant,
# a charge and an open hold.  Then every statement of a list (each app and
# admin function, SELECT on each table and view, DML on the config tables,
# INSERT/UPDATE/DELETE/TRUNCATE on the tables only the extension writes, the
# credit type's operators) runs once per login role, each in a subtransaction
# under SET LOCAL ROLE that is always rolled back, so the matrix changes
# nothing.  The SQLSTATE of each run (or 'ok') is compared with the expected
# matrix below; every difference is printed.  Further checks: PUBLIC holds no
# privilege on the schema, its tables, sequences and functions; the NOLOGIN
# roles may execute exactly the functions they should; the ledger refuses
# UPDATE, DELETE and TRUNCATE even from its owner (55000).
set -euo pipefail

db=credits_priv
logins=(priv_app priv_admin priv_reader priv_nobody)
dir=$(mktemp -d)

drop_logins() {
    local r
    for r in "${logins[@]}"; do
        if [ "$(psql -X -At -d postgres -c "SELECT count(*) FROM pg_roles WHERE rolname = '$r'")" = 1 ]; then
            psql -X -q -d "$db" -c "DROP OWNED BY $r" >/dev/null 2>&1 || true
            psql -X -q -d postgres -c "DROP ROLE $r" || true
        fi
    done
}
cleanup() {
    drop_logins
    dropdb --if-exists "$db" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

dropdb --if-exists "$db" >/dev/null 2>&1
drop_logins        # left behind by a killed earlier run
createdb "$db"

# --- the statements: id|sql, fully qualified; {hold} is the fixture's open hold
cat > "$dir/stmts" <<'STMTS'
allowed_models|SELECT * FROM credits.allowed_models('priv', 'alice')
resolve_model|SELECT credits.resolve_model('priv', 'alice', 'gpt-4o')
cost|SELECT credits.cost('gpt-4o', 1000, 100)
credit_debit|SELECT * FROM credits.credit_debit('priv', 'alice', 'gpt-4o', 1000, 100, 'priv-req-2')
credit_reserve|SELECT * FROM credits.credit_reserve('priv', 'alice', 'gpt-4o', 1000, 100)
credit_settle|SELECT * FROM credits.credit_settle({hold}, 1000, 50)
credit_release|SELECT credits.credit_release({hold})
create_org|SELECT * FROM credits.create_org('priv_new')
enable_provider|SELECT credits.enable_provider('priv', 'anthropic')
disable_provider|SELECT credits.disable_provider('priv', 'openai')
add_member|SELECT credits.add_member('priv', 'dave')
remove_member|SELECT credits.remove_member('priv', 'carol')
set_plan|SELECT credits.set_plan('priv', 2000)
recharge|SELECT * FROM credits.recharge('priv', 10)
add_provider|SELECT credits.add_provider('acme2')
upsert_model|SELECT credits.upsert_model('acme', 'acme-2', 1, 2)
reset_due|SELECT credits.reset_due()
expire_holds|SELECT credits.expire_holds()
schedule_jobs|SELECT credits.schedule_jobs()
verify|SELECT * FROM credits.verify('priv')
usage|SELECT * FROM credits.usage('priv')
op_plus|SELECT '1'::credits.credit + '2'::credits.credit
op_less|SELECT '1'::credits.credit < '2.5'::credits.credit
cast|SELECT 5::credits.credit, '1.5'::credits.credit::numeric, 2.25::credits.credit::bigint
agg_sum|SELECT sum(x), avg(x) FROM (VALUES ('1'::credits.credit), ('2')) v(x)
select_providers|SELECT count(*) FROM credits.providers
select_models|SELECT count(*) FROM credits.models
select_orgs|SELECT count(*) FROM credits.orgs
select_org_providers|SELECT count(*) FROM credits.org_providers
select_members|SELECT count(*) FROM credits.members
select_member_usage|SELECT count(*) FROM credits.member_usage
select_pools|SELECT count(*) FROM credits.pools
select_ledger|SELECT count(*) FROM credits.ledger
select_holds|SELECT count(*) FROM credits.holds
select_grants|SELECT count(*) FROM credits.grants
select_grant_draws|SELECT count(*) FROM credits.grant_draws
select_periods|SELECT count(*) FROM credits.periods
select_events|SELECT count(*) FROM credits.events
select_pool_status|SELECT * FROM credits.pool_status
insert_providers|INSERT INTO credits.providers (provider, display_name) VALUES ('acme3', 'Acme 3')
update_providers|UPDATE credits.providers SET display_name = 'Acme!' WHERE provider = 'acme'
delete_providers|DELETE FROM credits.providers WHERE provider = 'acme_del'
insert_models|INSERT INTO credits.models (model, provider, display_name, input_price, output_price) VALUES ('acme-3', 'acme', 'Acme 3', 1, 2)
update_models|UPDATE credits.models SET input_price = 11 WHERE model = 'acme-1'
delete_models|DELETE FROM credits.models WHERE model = 'acme-del'
insert_orgs|INSERT INTO credits.orgs (org_id, name) VALUES ('priv_ins', 'Inserted')
update_orgs|UPDATE credits.orgs SET name = 'Renamed' WHERE org_id = 'priv'
delete_orgs|DELETE FROM credits.orgs WHERE org_id = 'priv_del'
insert_org_providers|INSERT INTO credits.org_providers (org_id, provider) VALUES ('priv', 'anthropic')
update_org_providers|UPDATE credits.org_providers SET enabled_at = now() WHERE org_id = 'priv' AND provider = 'openai'
delete_org_providers|DELETE FROM credits.org_providers WHERE org_id = 'priv' AND provider = 'openai'
insert_members|INSERT INTO credits.members (org_id, user_id) VALUES ('priv', 'erin')
update_members|UPDATE credits.members SET cap = 500 WHERE org_id = 'priv' AND user_id = 'alice'
delete_members|DELETE FROM credits.members WHERE org_id = 'priv' AND user_id = 'carol'
insert_pools|INSERT INTO credits.pools (org_id, period_start, period_end) VALUES ('priv', now(), now() + interval '1 day')
update_pools|UPDATE credits.pools SET calls = calls + 1 WHERE org_id = 'priv'
delete_pools|DELETE FROM credits.pools WHERE org_id = 'priv'
truncate_pools|TRUNCATE credits.pools
insert_ledger|INSERT INTO credits.ledger (org_id, kind, period_start, available_after) VALUES ('priv', 'adjust', now(), 0)
update_ledger|UPDATE credits.ledger SET note = 'edited' WHERE org_id = 'priv'
delete_ledger|DELETE FROM credits.ledger WHERE org_id = 'priv'
truncate_ledger|TRUNCATE credits.ledger
insert_holds|INSERT INTO credits.holds (org_id, user_id, requested_model, model, fell_back, input_tokens, max_output_tokens, estimate, reserved, available_after, expires_at) VALUES ('priv', 'alice', 'gpt-4o', 'gpt-4o', false, 1, 1, 0, 0, 0, now())
update_holds|UPDATE credits.holds SET status = 'released', reserved = 0 WHERE org_id = 'priv'
delete_holds|DELETE FROM credits.holds WHERE org_id = 'priv'
truncate_holds|TRUNCATE credits.holds
insert_grants|INSERT INTO credits.grants (org_id, amount, remaining) VALUES ('priv', 5, 5)
update_grants|UPDATE credits.grants SET remaining = amount WHERE org_id = 'priv'
delete_grants|DELETE FROM credits.grants WHERE org_id = 'priv'
truncate_grants|TRUNCATE credits.grants
insert_grant_draws|INSERT INTO credits.grant_draws (entry_id, grant_id, amount) VALUES (1, 1, 1)
update_grant_draws|UPDATE credits.grant_draws SET amount = amount WHERE grant_id > 0
delete_grant_draws|DELETE FROM credits.grant_draws WHERE grant_id > 0
truncate_grant_draws|TRUNCATE credits.grant_draws
insert_periods|INSERT INTO credits.periods (org_id, period_start, period_end, allowance, allowance_used, topup_used, shortfall, calls) VALUES ('priv', now() - interval '2 months', now() - interval '1 month', 0, 0, 0, 0, 0)
update_periods|UPDATE credits.periods SET calls = calls + 1 WHERE org_id = 'priv'
delete_periods|DELETE FROM credits.periods WHERE org_id = 'priv'
truncate_periods|TRUNCATE credits.periods
insert_events|INSERT INTO credits.events (org_id, kind, payload) VALUES ('priv', 'topup', '{}')
update_events|UPDATE credits.events SET payload = '{}' WHERE org_id = 'priv'
delete_events|DELETE FROM credits.events WHERE org_id = 'priv'
truncate_events|TRUNCATE credits.events
insert_member_usage|INSERT INTO credits.member_usage (org_id, user_id) VALUES ('priv', 'carol')
update_member_usage|UPDATE credits.member_usage SET used = 0 WHERE org_id = 'priv'
delete_member_usage|DELETE FROM credits.member_usage WHERE org_id = 'priv'
truncate_member_usage|TRUNCATE credits.member_usage
create_team|SELECT credits.create_team('priv', 'pt2', 5)
set_team_cap|SELECT credits.set_team_cap('priv', 'pt', 50)
set_member_team|SELECT credits.set_member_team('priv', 'alice', 'pt')
team_usage|SELECT * FROM credits.team_usage('priv')
select_teams|SELECT count(*) FROM credits.teams
select_team_spend|SELECT count(*) FROM credits.team_spend
insert_teams|INSERT INTO credits.teams (org_id, team_id) VALUES ('priv', 'pt3')
update_teams|UPDATE credits.teams SET cap = 60 WHERE org_id = 'priv' AND team_id = 'pt'
delete_teams|DELETE FROM credits.teams WHERE org_id = 'priv' AND team_id = 'pt'
insert_team_spend|INSERT INTO credits.team_spend (org_id, team_id) VALUES ('priv', 'pt')
update_team_spend|UPDATE credits.team_spend SET used = 0 WHERE org_id = 'priv'
delete_team_spend|DELETE FROM credits.team_spend WHERE org_id = 'priv'
truncate_team_spend|TRUNCATE credits.team_spend
set_rollover|SELECT credits.set_rollover('priv', 10, 2)
set_auto_recharge|SELECT credits.set_auto_recharge('priv', 5, 10)
STMTS

# --- the expected matrix: login|statement|SQLSTATE of the refusal, or ok.
# priv_app has credits_app, priv_admin credits_admin, priv_reader
# credits_reader; priv_nobody has only what PUBLIC has, which is nothing (not
# even USAGE on the schema).  schedule_jobs is 55000 for the admin: allowed,
# but pg_cron is not installed in this database.
cat > "$dir/expected" <<'EXPECTED'
# priv_app
priv_app|allowed_models|ok
priv_app|resolve_model|ok
priv_app|cost|ok
priv_app|credit_debit|ok
priv_app|credit_reserve|ok
priv_app|credit_settle|ok
priv_app|credit_release|ok
priv_app|create_org|42501
priv_app|enable_provider|42501
priv_app|disable_provider|42501
priv_app|add_member|42501
priv_app|remove_member|42501
priv_app|set_plan|42501
priv_app|recharge|42501
priv_app|add_provider|42501
priv_app|upsert_model|42501
priv_app|reset_due|42501
priv_app|expire_holds|42501
priv_app|schedule_jobs|42501
priv_app|verify|42501
priv_app|usage|42501
priv_app|op_plus|ok
priv_app|op_less|ok
priv_app|cast|ok
priv_app|agg_sum|ok
priv_app|select_providers|42501
priv_app|select_models|42501
priv_app|select_orgs|42501
priv_app|select_org_providers|42501
priv_app|select_members|42501
priv_app|select_member_usage|42501
priv_app|select_pools|42501
priv_app|select_ledger|42501
priv_app|select_holds|42501
priv_app|select_grants|42501
priv_app|select_grant_draws|42501
priv_app|select_periods|42501
priv_app|select_events|42501
priv_app|select_pool_status|42501
priv_app|insert_providers|42501
priv_app|update_providers|42501
priv_app|delete_providers|42501
priv_app|insert_models|42501
priv_app|update_models|42501
priv_app|delete_models|42501
priv_app|insert_orgs|42501
priv_app|update_orgs|42501
priv_app|delete_orgs|42501
priv_app|insert_org_providers|42501
priv_app|update_org_providers|42501
priv_app|delete_org_providers|42501
priv_app|insert_members|42501
priv_app|update_members|42501
priv_app|delete_members|42501
priv_app|insert_pools|42501
priv_app|update_pools|42501
priv_app|delete_pools|42501
priv_app|truncate_pools|42501
priv_app|insert_ledger|42501
priv_app|update_ledger|42501
priv_app|delete_ledger|42501
priv_app|truncate_ledger|42501
priv_app|insert_holds|42501
priv_app|update_holds|42501
priv_app|delete_holds|42501
priv_app|truncate_holds|42501
priv_app|insert_grants|42501
priv_app|update_grants|42501
priv_app|delete_grants|42501
priv_app|truncate_grants|42501
priv_app|insert_grant_draws|42501
priv_app|update_grant_draws|42501
priv_app|delete_grant_draws|42501
priv_app|truncate_grant_draws|42501
priv_app|insert_periods|42501
priv_app|update_periods|42501
priv_app|delete_periods|42501
priv_app|truncate_periods|42501
priv_app|insert_events|42501
priv_app|update_events|42501
priv_app|delete_events|42501
priv_app|truncate_events|42501
priv_app|insert_member_usage|42501
priv_app|update_member_usage|42501
priv_app|delete_member_usage|42501
priv_app|truncate_member_usage|42501
priv_app|create_team|42501
priv_app|set_team_cap|42501
priv_app|set_member_team|42501
priv_app|team_usage|42501
priv_app|select_teams|42501
priv_app|select_team_spend|42501
priv_app|insert_teams|42501
priv_app|update_teams|42501
priv_app|delete_teams|42501
priv_app|insert_team_spend|42501
priv_app|update_team_spend|42501
priv_app|delete_team_spend|42501
priv_app|truncate_team_spend|42501
priv_app|set_rollover|42501
priv_app|set_auto_recharge|42501
# priv_admin
priv_admin|allowed_models|ok
priv_admin|resolve_model|ok
priv_admin|cost|ok
priv_admin|credit_debit|ok
priv_admin|credit_reserve|ok
priv_admin|credit_settle|ok
priv_admin|credit_release|ok
priv_admin|create_org|ok
priv_admin|enable_provider|ok
priv_admin|disable_provider|ok
priv_admin|add_member|ok
priv_admin|remove_member|ok
priv_admin|set_plan|ok
priv_admin|recharge|ok
priv_admin|add_provider|ok
priv_admin|upsert_model|ok
priv_admin|reset_due|ok
priv_admin|expire_holds|ok
priv_admin|schedule_jobs|55000
priv_admin|verify|ok
priv_admin|usage|ok
priv_admin|op_plus|ok
priv_admin|op_less|ok
priv_admin|cast|ok
priv_admin|agg_sum|ok
priv_admin|select_providers|ok
priv_admin|select_models|ok
priv_admin|select_orgs|ok
priv_admin|select_org_providers|ok
priv_admin|select_members|ok
priv_admin|select_member_usage|ok
priv_admin|select_pools|ok
priv_admin|select_ledger|ok
priv_admin|select_holds|ok
priv_admin|select_grants|ok
priv_admin|select_grant_draws|ok
priv_admin|select_periods|ok
priv_admin|select_events|ok
priv_admin|select_pool_status|ok
priv_admin|insert_providers|ok
priv_admin|update_providers|ok
priv_admin|delete_providers|ok
priv_admin|insert_models|ok
priv_admin|update_models|ok
priv_admin|delete_models|ok
priv_admin|insert_orgs|ok
priv_admin|update_orgs|ok
priv_admin|delete_orgs|ok
priv_admin|insert_org_providers|ok
priv_admin|update_org_providers|ok
priv_admin|delete_org_providers|ok
priv_admin|insert_members|ok
priv_admin|update_members|ok
priv_admin|delete_members|ok
priv_admin|insert_pools|42501
priv_admin|update_pools|42501
priv_admin|delete_pools|42501
priv_admin|truncate_pools|42501
priv_admin|insert_ledger|42501
priv_admin|update_ledger|42501
priv_admin|delete_ledger|42501
priv_admin|truncate_ledger|42501
priv_admin|insert_holds|42501
priv_admin|update_holds|42501
priv_admin|delete_holds|42501
priv_admin|truncate_holds|42501
priv_admin|insert_grants|42501
priv_admin|update_grants|42501
priv_admin|delete_grants|42501
priv_admin|truncate_grants|42501
priv_admin|insert_grant_draws|42501
priv_admin|update_grant_draws|42501
priv_admin|delete_grant_draws|42501
priv_admin|truncate_grant_draws|42501
priv_admin|insert_periods|42501
priv_admin|update_periods|42501
priv_admin|delete_periods|42501
priv_admin|truncate_periods|42501
priv_admin|insert_events|42501
priv_admin|update_events|42501
priv_admin|delete_events|42501
priv_admin|truncate_events|42501
priv_admin|insert_member_usage|42501
priv_admin|update_member_usage|42501
priv_admin|delete_member_usage|42501
priv_admin|truncate_member_usage|42501
priv_admin|create_team|ok
priv_admin|set_team_cap|ok
priv_admin|set_member_team|ok
priv_admin|team_usage|ok
priv_admin|select_teams|ok
priv_admin|select_team_spend|ok
priv_admin|insert_teams|ok
priv_admin|update_teams|ok
priv_admin|delete_teams|ok
priv_admin|insert_team_spend|42501
priv_admin|update_team_spend|42501
priv_admin|delete_team_spend|42501
priv_admin|truncate_team_spend|42501
priv_admin|set_rollover|ok
priv_admin|set_auto_recharge|ok
# priv_reader
priv_reader|allowed_models|42501
priv_reader|resolve_model|42501
priv_reader|cost|42501
priv_reader|credit_debit|42501
priv_reader|credit_reserve|42501
priv_reader|credit_settle|42501
priv_reader|credit_release|42501
priv_reader|create_org|42501
priv_reader|enable_provider|42501
priv_reader|disable_provider|42501
priv_reader|add_member|42501
priv_reader|remove_member|42501
priv_reader|set_plan|42501
priv_reader|recharge|42501
priv_reader|add_provider|42501
priv_reader|upsert_model|42501
priv_reader|reset_due|42501
priv_reader|expire_holds|42501
priv_reader|schedule_jobs|42501
priv_reader|verify|42501
priv_reader|usage|ok
priv_reader|op_plus|ok
priv_reader|op_less|ok
priv_reader|cast|ok
priv_reader|agg_sum|ok
priv_reader|select_providers|ok
priv_reader|select_models|ok
priv_reader|select_orgs|ok
priv_reader|select_org_providers|ok
priv_reader|select_members|ok
priv_reader|select_member_usage|ok
priv_reader|select_pools|ok
priv_reader|select_ledger|ok
priv_reader|select_holds|ok
priv_reader|select_grants|ok
priv_reader|select_grant_draws|ok
priv_reader|select_periods|ok
priv_reader|select_events|ok
priv_reader|select_pool_status|ok
priv_reader|insert_providers|42501
priv_reader|update_providers|42501
priv_reader|delete_providers|42501
priv_reader|insert_models|42501
priv_reader|update_models|42501
priv_reader|delete_models|42501
priv_reader|insert_orgs|42501
priv_reader|update_orgs|42501
priv_reader|delete_orgs|42501
priv_reader|insert_org_providers|42501
priv_reader|update_org_providers|42501
priv_reader|delete_org_providers|42501
priv_reader|insert_members|42501
priv_reader|update_members|42501
priv_reader|delete_members|42501
priv_reader|insert_pools|42501
priv_reader|update_pools|42501
priv_reader|delete_pools|42501
priv_reader|truncate_pools|42501
priv_reader|insert_ledger|42501
priv_reader|update_ledger|42501
priv_reader|delete_ledger|42501
priv_reader|truncate_ledger|42501
priv_reader|insert_holds|42501
priv_reader|update_holds|42501
priv_reader|delete_holds|42501
priv_reader|truncate_holds|42501
priv_reader|insert_grants|42501
priv_reader|update_grants|42501
priv_reader|delete_grants|42501
priv_reader|truncate_grants|42501
priv_reader|insert_grant_draws|42501
priv_reader|update_grant_draws|42501
priv_reader|delete_grant_draws|42501
priv_reader|truncate_grant_draws|42501
priv_reader|insert_periods|42501
priv_reader|update_periods|42501
priv_reader|delete_periods|42501
priv_reader|truncate_periods|42501
priv_reader|insert_events|42501
priv_reader|update_events|42501
priv_reader|delete_events|42501
priv_reader|truncate_events|42501
priv_reader|insert_member_usage|42501
priv_reader|update_member_usage|42501
priv_reader|delete_member_usage|42501
priv_reader|truncate_member_usage|42501
priv_reader|create_team|42501
priv_reader|set_team_cap|42501
priv_reader|set_member_team|42501
priv_reader|team_usage|ok
priv_reader|select_teams|ok
priv_reader|select_team_spend|ok
priv_reader|insert_teams|42501
priv_reader|update_teams|42501
priv_reader|delete_teams|42501
priv_reader|insert_team_spend|42501
priv_reader|update_team_spend|42501
priv_reader|delete_team_spend|42501
priv_reader|truncate_team_spend|42501
priv_reader|set_rollover|42501
priv_reader|set_auto_recharge|42501
# priv_nobody
priv_nobody|allowed_models|42501
priv_nobody|resolve_model|42501
priv_nobody|cost|42501
priv_nobody|credit_debit|42501
priv_nobody|credit_reserve|42501
priv_nobody|credit_settle|42501
priv_nobody|credit_release|42501
priv_nobody|create_org|42501
priv_nobody|enable_provider|42501
priv_nobody|disable_provider|42501
priv_nobody|add_member|42501
priv_nobody|remove_member|42501
priv_nobody|set_plan|42501
priv_nobody|recharge|42501
priv_nobody|add_provider|42501
priv_nobody|upsert_model|42501
priv_nobody|reset_due|42501
priv_nobody|expire_holds|42501
priv_nobody|schedule_jobs|42501
priv_nobody|verify|42501
priv_nobody|usage|42501
priv_nobody|op_plus|42501
priv_nobody|op_less|42501
priv_nobody|cast|42501
priv_nobody|agg_sum|42501
priv_nobody|select_providers|42501
priv_nobody|select_models|42501
priv_nobody|select_orgs|42501
priv_nobody|select_org_providers|42501
priv_nobody|select_members|42501
priv_nobody|select_member_usage|42501
priv_nobody|select_pools|42501
priv_nobody|select_ledger|42501
priv_nobody|select_holds|42501
priv_nobody|select_grants|42501
priv_nobody|select_grant_draws|42501
priv_nobody|select_periods|42501
priv_nobody|select_events|42501
priv_nobody|select_pool_status|42501
priv_nobody|insert_providers|42501
priv_nobody|update_providers|42501
priv_nobody|delete_providers|42501
priv_nobody|insert_models|42501
priv_nobody|update_models|42501
priv_nobody|delete_models|42501
priv_nobody|insert_orgs|42501
priv_nobody|update_orgs|42501
priv_nobody|delete_orgs|42501
priv_nobody|insert_org_providers|42501
priv_nobody|update_org_providers|42501
priv_nobody|delete_org_providers|42501
priv_nobody|insert_members|42501
priv_nobody|update_members|42501
priv_nobody|delete_members|42501
priv_nobody|insert_pools|42501
priv_nobody|update_pools|42501
priv_nobody|delete_pools|42501
priv_nobody|truncate_pools|42501
priv_nobody|insert_ledger|42501
priv_nobody|update_ledger|42501
priv_nobody|delete_ledger|42501
priv_nobody|truncate_ledger|42501
priv_nobody|insert_holds|42501
priv_nobody|update_holds|42501
priv_nobody|delete_holds|42501
priv_nobody|truncate_holds|42501
priv_nobody|insert_grants|42501
priv_nobody|update_grants|42501
priv_nobody|delete_grants|42501
priv_nobody|truncate_grants|42501
priv_nobody|insert_grant_draws|42501
priv_nobody|update_grant_draws|42501
priv_nobody|delete_grant_draws|42501
priv_nobody|truncate_grant_draws|42501
priv_nobody|insert_periods|42501
priv_nobody|update_periods|42501
priv_nobody|delete_periods|42501
priv_nobody|truncate_periods|42501
priv_nobody|insert_events|42501
priv_nobody|update_events|42501
priv_nobody|delete_events|42501
priv_nobody|truncate_events|42501
priv_nobody|insert_member_usage|42501
priv_nobody|update_member_usage|42501
priv_nobody|delete_member_usage|42501
priv_nobody|truncate_member_usage|42501
priv_nobody|create_team|42501
priv_nobody|set_team_cap|42501
priv_nobody|set_member_team|42501
priv_nobody|team_usage|42501
priv_nobody|select_teams|42501
priv_nobody|select_team_spend|42501
priv_nobody|insert_teams|42501
priv_nobody|update_teams|42501
priv_nobody|delete_teams|42501
priv_nobody|insert_team_spend|42501
priv_nobody|update_team_spend|42501
priv_nobody|delete_team_spend|42501
priv_nobody|truncate_team_spend|42501
priv_nobody|set_rollover|42501
priv_nobody|set_auto_recharge|42501
EXPECTED

psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
CREATE EXTENSION credits;

-- fixtures, as the superuser
SELECT credits.create_org('priv', allowance_per_user => 1000);
SELECT credits.create_org('priv_del');
SELECT credits.enable_provider('priv', 'openai');
SELECT credits.add_member('priv', 'alice');
SELECT credits.add_member('priv', 'carol');
SELECT credits.create_team('priv', 'pt', 100);
SELECT credits.add_provider('acme', 'Acme');
SELECT credits.add_provider('acme_del', 'Acme (to delete)');
SELECT credits.upsert_model('acme', 'acme-1', 10, 20);
SELECT credits.upsert_model('acme', 'acme-del', 10, 20);
SELECT credits.recharge('priv', 50, note => 'bought');
SELECT credits.credit_debit('priv', 'alice', 'gpt-4o', 100000, 10000, 'priv-req-1');
SELECT credits.credit_reserve('priv', 'alice', 'gpt-4o', 1000, 500, 'priv-hold-1', '1 day');

CREATE ROLE priv_app LOGIN;
CREATE ROLE priv_admin LOGIN;
CREATE ROLE priv_reader LOGIN;
CREATE ROLE priv_nobody LOGIN;
GRANT credits_app TO priv_app;
GRANT credits_admin TO priv_admin;
GRANT credits_reader TO priv_reader;

-- The harness.  try() runs a statement as a role inside a subtransaction that
-- is always rolled back (a success raises ZX000 to undo itself), so that the
-- role and every effect are gone when it returns.  Returns 'ok', or the
-- SQLSTATE followed by the message.
CREATE SCHEMA priv_test;
GRANT USAGE ON SCHEMA priv_test TO PUBLIC;
CREATE FUNCTION priv_test.try(role name, stmt text) RETURNS text
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    me name := current_user;
    result text;
BEGIN
    BEGIN
        IF role IS NOT NULL THEN
            EXECUTE format('SET LOCAL ROLE %I', role);
        END IF;
        EXECUTE stmt;
        EXECUTE 'RESET ROLE';
        RAISE EXCEPTION 'succeeded' USING ERRCODE = 'ZX000';
    EXCEPTION WHEN OTHERS THEN
        result := CASE WHEN SQLSTATE = 'ZX000' THEN 'ok' ELSE SQLSTATE || ' ' || SQLERRM END;
    END;
    IF current_user <> me THEN
        RAISE EXCEPTION 'try(): still running as %', current_user;
    END IF;
    RETURN result;
END
$$;
GRANT EXECUTE ON FUNCTION priv_test.try(name, text) TO PUBLIC;

-- a digest of every table of the extension, to show the matrix changed nothing
CREATE FUNCTION priv_test.digest() RETURNS TABLE(rel text, digest text)
LANGUAGE plpgsql AS $$
DECLARE
    r regclass;
BEGIN
    FOR r IN SELECT c.oid::regclass FROM pg_class c
              WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind = 'r' ORDER BY 1
    LOOP
        rel := r::text;
        EXECUTE format('SELECT md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), ''''))'
                       ' FROM %s t', r) INTO digest;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE TABLE priv_test.logins (ord int, role name);
INSERT INTO priv_test.logins VALUES
    (1, 'priv_app'), (2, 'priv_admin'), (3, 'priv_reader'), (4, 'priv_nobody');
CREATE TABLE priv_test.stmts (ord serial, id text PRIMARY KEY, sql text NOT NULL);
CREATE TABLE priv_test.expected (role text, id text, expected text, PRIMARY KEY (role, id));
SQL

psql -X -q -v ON_ERROR_STOP=1 -d "$db" \
    -c "COPY priv_test.stmts (id, sql) FROM STDIN WITH (DELIMITER '|')" < "$dir/stmts"
grep -Ev '^(#|$)' "$dir/expected" | psql -X -q -v ON_ERROR_STOP=1 -d "$db" \
    -c "COPY priv_test.expected (role, id, expected) FROM STDIN WITH (DELIMITER '|')"

# The matrix in one statement: every login against every statement.
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
UPDATE priv_test.stmts SET sql = replace(sql, '{hold}',
    (SELECT hold_id::text FROM credits.holds WHERE request_id = 'priv-hold-1' AND status = 'open'));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM priv_test.stmts WHERE sql IS NULL) THEN
        RAISE EXCEPTION 'the fixture''s open hold is missing';
    END IF;
END
$$;
CREATE TABLE priv_test.before AS SELECT * FROM priv_test.digest();
CREATE TABLE priv_test.actual AS
SELECT l.ord AS lord, s.ord AS sord, l.role::text AS role, s.id,
       priv_test.try(l.role, s.sql) AS result
  FROM priv_test.logins l CROSS JOIN priv_test.stmts s;
SQL

mismatches=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
SELECT format('MISMATCH %s %s: got %s, expected %s', role, id,
              coalesce(a.result, '(not run)'), coalesce(e.expected, '(no expectation)'))
  FROM priv_test.actual a FULL JOIN priv_test.expected e USING (role, id)
 WHERE split_part(a.result, ' ', 1) IS DISTINCT FROM e.expected
 ORDER BY a.lord, a.sord, role, id;
SQL
)
matrix_checks=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" \
    -c "SELECT count(*) FROM priv_test.actual a FULL JOIN priv_test.expected e USING (role, id)")

# The other checks: one row each, failure NULL when it passes.
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
CREATE TABLE priv_test.checks AS
WITH fns AS (
    -- support: the credit type's operators, casts, aggregates, index support
    -- and I/O, which every role of the extension may use
    SELECT p.oid, p.proname::text AS name,
           (p.oid IN (SELECT oprcode FROM pg_operator)
            OR p.oid IN (SELECT castfunc FROM pg_cast)
            OR p.oid IN (SELECT amproc FROM pg_amproc)
            OR p.oid IN (SELECT unnest(ARRAY[aggfnoid, aggtransfn, aggfinalfn, aggcombinefn])
                           FROM pg_aggregate)
            OR p.oid IN (SELECT unnest(ARRAY[typinput, typoutput, typreceive, typsend])
                           FROM pg_type)) AS support
      FROM pg_proc p WHERE p.pronamespace = 'credits'::regnamespace
),
-- What each role may execute besides the type's support functions.
-- valid_period and billing_period are helpers granted to every role by
-- 090_security.sql (valid_period is in the CHECK constraint of orgs);
-- _pool_status and _available compute pool_status with the caller's
-- privileges, so the roles that read pool_status execute them (they read
-- nothing those roles cannot read).
allowed(role, names) AS (VALUES
    ('credits_app', ARRAY['allowed_models', 'resolve_model', 'cost', 'credit_debit',
                          'credit_reserve', 'credit_settle', 'credit_release',
                          'valid_period', 'billing_period']),
    ('credits_admin', ARRAY['allowed_models', 'resolve_model', 'cost', 'credit_debit',
                            'credit_reserve', 'credit_settle', 'credit_release',
                            'create_org', 'enable_provider', 'disable_provider', 'add_member',
                            'remove_member', 'set_plan', 'recharge', 'add_provider',
                            'upsert_model', 'reset_due', 'expire_holds', 'schedule_jobs',
                            'verify', 'usage', 'valid_period', 'billing_period', '_pool_status',
                            '_available', 'create_team', 'set_team_cap', 'set_member_team',
                            'team_usage', 'set_rollover', 'set_auto_recharge']),
    ('credits_reader', ARRAY['usage', 'valid_period', 'billing_period', '_pool_status', '_available',
                             'team_usage'])
)
SELECT 'no table or view grant to PUBLIC (information_schema)' AS name,
       (SELECT string_agg(table_name || ':' || privilege_type, ', ')
          FROM information_schema.role_table_grants
         WHERE table_schema = 'credits' AND grantee = 'PUBLIC') AS failure
UNION ALL
SELECT 'no PUBLIC entry in the ACL of any relation or sequence',
       (SELECT string_agg(c.relname || ':' || a.privilege_type, ', ')
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.relnamespace = 'credits'::regnamespace AND a.grantee = 0)
UNION ALL
SELECT 'no function executable by PUBLIC (priv_nobody)',
       (SELECT string_agg(oid::regprocedure::text, ', ')
          FROM fns WHERE has_function_privilege('priv_nobody', oid, 'EXECUTE'))
UNION ALL
SELECT 'no USAGE or CREATE on schema credits for PUBLIC (priv_nobody)',
       CASE WHEN has_schema_privilege('priv_nobody', 'credits', 'USAGE')
              OR has_schema_privilege('priv_nobody', 'credits', 'CREATE') THEN 'granted' END
UNION ALL
SELECT 'no privilege on any relation for PUBLIC (priv_nobody)',
       (SELECT string_agg(c.relname, ', ')
          FROM pg_class c
         WHERE c.relnamespace = 'credits'::regnamespace
           AND CASE WHEN c.relkind IN ('r', 'v', 'm', 'p', 'f')
                    THEN has_table_privilege('priv_nobody', c.oid,
                             'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') END)
UNION ALL
SELECT 'no privilege on any sequence for PUBLIC (priv_nobody)',
       (SELECT string_agg(c.relname, ', ')
          FROM pg_class c
         WHERE c.relnamespace = 'credits'::regnamespace
           AND CASE WHEN c.relkind = 'S'
                    THEN has_sequence_privilege('priv_nobody', c.oid, 'USAGE, SELECT, UPDATE') END)
UNION ALL
SELECT 'the type''s support functions are executable by ' || r,
       (SELECT string_agg(oid::regprocedure::text, ', ')
          FROM fns WHERE support AND NOT has_function_privilege(r, oid, 'EXECUTE'))
  FROM unnest(ARRAY['credits_app', 'credits_admin', 'credits_reader']) r
UNION ALL
SELECT 'functions executable by ' || a.role || ' are exactly the allowed ones',
       nullif(concat_ws('; ',
           'extra: ' || (SELECT string_agg(DISTINCT f.name, ', ') FROM fns f
                          WHERE NOT f.support AND has_function_privilege(a.role, f.oid, 'EXECUTE')
                            AND f.name <> ALL (a.names)),
           'missing: ' || (SELECT string_agg(n, ', ') FROM unnest(a.names) n
                            WHERE NOT EXISTS (SELECT 1 FROM fns f
                                               WHERE f.name = n AND NOT f.support
                                                 AND has_function_privilege(a.role, f.oid, 'EXECUTE')))),
           '')
  FROM allowed a
UNION ALL
SELECT 'the ledger has entries (its row triggers have rows to fire on)',
       CASE WHEN NOT EXISTS (SELECT 1 FROM credits.ledger) THEN 'empty' END;

INSERT INTO priv_test.checks
SELECT 'the matrix changed no table',
       (SELECT string_agg(rel, ', ') FROM priv_test.before b FULL JOIN priv_test.digest() a USING (rel)
         WHERE a.digest IS DISTINCT FROM b.digest);

-- as the ledger's owner; a statement of its own, since TRUNCATE refuses a
-- table that the running query has open
INSERT INTO priv_test.checks
SELECT 'the ledger refuses ' || op || ' from its owner ' || o.owner || ' with 55000',
       CASE WHEN split_part(r, ' ', 1) <> '55000' THEN 'got ' || r END
  FROM (SELECT c.relowner::regrole::name AS owner
          FROM pg_class c WHERE c.oid = 'credits.ledger'::regclass) o,
       LATERAL (VALUES (1, 'UPDATE', 'UPDATE credits.ledger SET note = ''edited'''),
                       (2, 'DELETE', 'DELETE FROM credits.ledger'),
                       (3, 'TRUNCATE', 'TRUNCATE credits.ledger')) v(ord, op, stmt),
       LATERAL priv_test.try(o.owner, v.stmt) r
 ORDER BY v.ord;
SQL

failures=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" \
    -c "SELECT 'FAILED ' || name || ': ' || failure FROM priv_test.checks WHERE failure IS NOT NULL")
other_checks=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "SELECT count(*) FROM priv_test.checks")

if [ -n "$mismatches" ]; then echo "$mismatches"; fi
if [ -n "$failures" ]; then echo "$failures"; fi
n_mismatches=$(grep -c . <<<"$mismatches" || true)
n_failures=$(grep -c . <<<"$failures" || true)
echo "privilege matrix: $matrix_checks checks, $n_mismatches mismatches"
echo "other privilege checks: $other_checks checks, $n_failures failures"
if [ "$n_mismatches" -ne 0 ] || [ "$n_failures" -ne 0 ]; then
    exit 1
fi
