#!/usr/bin/env bash
# pg_dump / pg_restore of a database using credits: edited catalog prices,
# a new and a deactivated model, a moved fallback, several orgs, a ledger,
# grants and open holds survive; verify() is clean; work continues.
set -euo pipefail

src=credits_dump_src
dst=credits_dump_dst
file=$(mktemp)
trap 'rm -f "$file"; dropdb --if-exists "$src" >/dev/null 2>&1; dropdb --if-exists "$dst" >/dev/null 2>&1' EXIT

for db in "$src" "$dst"; do dropdb --if-exists "$db" >/dev/null 2>&1; done
createdb "$src"
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$src" <<'SQL'
CREATE EXTENSION credits;
-- catalog edits: a price, a new model, a deactivated one, a moved fallback
UPDATE credits.models SET input_price = 260, output_price = 1040 WHERE model = 'gpt-4o';
SELECT credits.add_provider('mistral', 'Mistral');
SELECT credits.upsert_model('mistral', 'mistral-small', 10, 30, is_fallback => true);
SELECT credits.upsert_model('mistral', 'mistral-large', 200, 600);
UPDATE credits.models SET active = false WHERE model = 'o3';
SELECT credits.upsert_model('google', 'gemini-2.5-flash', 30, 250, is_fallback => true);

SELECT org_id FROM credits.create_org('d1', allowance_per_user => 50);
SELECT org_id FROM credits.create_org('d2', allowance_per_user => 5, time_zone => 'Europe/Berlin');
SELECT credits.enable_provider(o, p) FROM unnest(ARRAY['d1', 'd2']) o,
       unnest(ARRAY['openai', 'mistral', 'google']) p;
SELECT credits.add_member('d1', 'u' || i, cap => CASE WHEN i = 1 THEN 10 END) FROM generate_series(1, 3) i;
SELECT credits.add_member('d2', 'v1');
SELECT (SELECT charged FROM credits.credit_debit('d1', 'u' || (i % 3 + 1), 'gpt-4o', 10000 * i, 1000, 'r' || i))
  FROM generate_series(1, 20) i;
SELECT charged FROM credits.credit_debit('d2', 'v1', 'mistral-large', 100000, 10000);
SELECT available FROM credits.recharge('d2', 20, now() + interval '30 days', 'bought');
SELECT charged FROM credits.credit_debit('d2', 'v1', 'mistral-large', 10000, 1000);
CREATE TABLE open_holds AS
SELECT hold_id FROM credits.credit_reserve('d1', 'u2', 'gpt-4o', 1000, 2000, 'h1');
SQL

pg_dump -Fc -f "$file" "$src"
createdb "$dst"
pg_restore -d "$dst" --exit-on-error "$file"

# The restored database holds the same catalog, pools, ledger, grants and
# holds as the dumped one.
snapshot() {
    psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" <<'SQL'
SELECT 'model', model, provider, input_price, output_price, request_price, is_fallback, active, shipped
  FROM credits.models ORDER BY model;
SELECT 'provider', provider, display_name, shipped FROM credits.providers ORDER BY provider;
SELECT 'org', org_id, allowance_per_user, billing_anchor, period, time_zone FROM credits.orgs ORDER BY org_id;
SELECT 'member', org_id, user_id, allowance, cap, active FROM credits.members ORDER BY 2, 3;
SELECT 'pool', * FROM credits.pool_status ORDER BY org_id;
SELECT 'usage', * FROM credits.member_usage ORDER BY 2, 3;
SELECT 'ledger', entry_id, org_id, kind, user_id, model, cost, charged, shortfall, available_after,
       request_id FROM credits.ledger ORDER BY entry_id;
SELECT 'grant', grant_id, org_id, amount, remaining, expires_at FROM credits.grants ORDER BY grant_id;
SELECT 'draw', * FROM credits.grant_draws ORDER BY 2, 3;
SELECT 'hold', hold_id, org_id, status, reserved FROM credits.holds ORDER BY hold_id;
SELECT 'event', event_id, kind FROM credits.events ORDER BY event_id;
SQL
}
snapshot "$src" > "$file.src"
snapshot "$dst" > "$file.dst"
if ! diff "$file.src" "$file.dst"; then
    echo "the restored database differs from the dumped one"; exit 1
fi
grep -q '^model|gpt-4o|openai|260|1040|0|f|t|f$' "$file.dst" || { echo "edited gpt-4o price lost"; exit 1; }
grep -q '^model|o3|openai|200|800|0|f|f|f$' "$file.dst" || { echo "deactivated o3 lost"; exit 1; }
grep -q '^model|gemini-2.5-flash|google|30|250|0|t|t|f$' "$file.dst" || { echo "moved fallback lost"; exit 1; }
echo "restored: $(grep -c '^ledger' "$file.dst") ledger entries, $(grep -c '^model' "$file.dst") models, identical"
rm -f "$file.src" "$file.dst"

# work continues after the restore: new debits, a replay, the open hold, new ids
after=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$dst" <<'SQL'
SET search_path = public, credits;
\set QUIET on
SELECT 'replayed ' || replayed FROM credits.credit_debit('d1', 'u2', 'gpt-4o', 10000, 1000, 'r1');
SELECT 'new debit ' || (NOT replayed) FROM credits.credit_debit('d1', 'u3', 'gpt-4o', 1000, 100, 'r-new');
SELECT entry_id FROM credits.credit_settle((SELECT hold_id FROM open_holds), 1000, 1000) \gset
SELECT 'settled ' || (status = 'settled') FROM credits.holds JOIN open_holds USING (hold_id);
SELECT 'new entry ids ' || (min(entry_id) > (SELECT max(entry_id) FROM credits.ledger WHERE request_id = 'r20'))
  FROM credits.ledger WHERE request_id = 'r-new';
SELECT 'violations ' || count(*) FROM credits.verify();
SQL
)
echo "$after"
[ "$after" = "replayed true
new debit true
settled true
new entry ids true
violations 0" ]
