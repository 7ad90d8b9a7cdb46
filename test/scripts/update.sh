#!/usr/bin/env bash
# ALTER EXTENSION credits UPDATE: a database at 1.0, in use, updates in place
# to the current version and is then the same as a fresh install.
#
# 1. A database is created at 1.0 (the frozen credits--1.0.sql) and used:
#    orgs, debits with request ids, an open hold, a purchased grant, a
#    period closed by the first debit after it ended.
# 2. ALTER EXTENSION credits UPDATE.  Then the hold opened under 1.0 settles,
#    a request id charged under 1.0 replays with its original result, new
#    debits are charged, and verify() is clean.
# 3. Its catalog fingerprint (test/sql/fingerprint.sql: every member object,
#    functions with signatures, results, volatility, security, settings and
#    ACLs, columns with types and defaults, indexes, constraints, triggers,
#    policies, views, types, operators, casts, config dump registrations)
#    equals a fresh install's: a schema change missing from an update script
#    fails here.
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
old=credits_update_old
new=credits_update_new
dir=$(mktemp -d)
trap 'rm -rf "$dir"; dropdb --if-exists "$old" >/dev/null 2>&1; dropdb --if-exists "$new" >/dev/null 2>&1' EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
fail=0
check() {  # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then echo "ok $1"; else echo "not ok $1: expected '$2', got '$3'"; fail=1; fi
}

versions=$(q postgres "SELECT string_agg(version, ' ' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'credits'")
default=$(q postgres "SELECT default_version FROM pg_available_extensions WHERE name = 'credits'")
echo "available versions: $versions; default $default"

for db in "$old" "$new"; do dropdb --if-exists "$db" >/dev/null 2>&1; createdb "$db"; done

# 1. a 1.0 database in use
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$old" <<'SQL'
CREATE EXTENSION credits VERSION '1.0';
SELECT org_id FROM credits.create_org('up', allowance_per_user => 100);
-- an org with 1-second periods, for a period closed under 1.0
SELECT org_id FROM credits.create_org('pp', allowance_per_user => 10, period => '1 second');
SELECT credits.enable_provider('pp', 'openai');
SELECT credits.add_member('pp', 'pia');
SELECT credits.enable_provider('up', 'openai');
SELECT credits.add_member('up', 'ann');
SELECT credits.add_member('up', 'ben', cap => 50);
SELECT credits.credit_debit('up', 'ann', 'gpt-4o', 40000, 1000, 'r-1');
SELECT credits.credit_debit('up', 'ben', 'gpt-4o', 20000, 0, 'r-2');
SELECT credits.recharge('up', 25, expires_at => now() + interval '1 year', note => 'grant');
CREATE TABLE public.kept AS
  SELECT (credits.credit_reserve('up', 'ann', 'gpt-4o', 4000, 1000, 'h-1')).hold_id;
SQL
check "1.0 installed" "1.0" "$(q "$old" "SELECT extversion FROM pg_extension WHERE extname = 'credits'")"
# wait (bounded, on the clock the period is defined by) for pp's period to
# end, then its next debit closes it
for _ in $(seq 1 100); do
    [ "$(q "$old" "SELECT now() >= period_end FROM credits.pools WHERE org_id = 'pp'")" = t ] && break
    sleep 0.1
done
q "$old" "SELECT credits.credit_debit('pp', 'pia', 'gpt-4o', 4000, 0, 'p-1')" >/dev/null
check "a period was closed under 1.0" "t" "$(q "$old" "SELECT count(*) >= 1 FROM credits.periods WHERE org_id = 'pp'")"
r1=$(q "$old" "SELECT entry_id || ' ' || charged || ' ' || available FROM credits.credit_debit('up', 'ann', 'gpt-4o', 40000, 1000, 'r-1')")

# 2. update in place
q "$old" "ALTER EXTENSION credits UPDATE" >/dev/null
check "updated to the default version" "$default" "$(q "$old" "SELECT extversion FROM pg_extension WHERE extname = 'credits'")"
settled=$(q "$old" "SELECT entry_id FROM credits.credit_settle((SELECT hold_id FROM public.kept), 4000, 500)")
check "the hold opened under 1.0 settles" "settle settled" \
    "$(q "$old" "SELECT l.kind || ' ' || h.status FROM credits.ledger l, credits.holds h
                 WHERE l.entry_id = $settled AND h.hold_id = (SELECT hold_id FROM public.kept)")"
check "a request id charged under 1.0 replays with its result" "$r1 true" \
    "$(q "$old" "SELECT entry_id || ' ' || charged || ' ' || available || ' ' || replayed
                 FROM credits.credit_debit('up', 'ann', 'gpt-4o', 40000, 1000, 'r-1')")"
check "a new debit is charged" "f" \
    "$(q "$old" "SELECT replayed FROM credits.credit_debit('up', 'ben', 'gpt-4o', 4000, 0, 'r-3')")"
check "the grant bought under 1.0 is still there" "t" \
    "$(q "$old" "SELECT count(*) = 1 FROM credits.grants WHERE org_id = 'up'")"
check "verify() is clean after the update" "0" "$(q "$old" "SELECT count(*) FROM credits.verify()")"

# 3. the same catalog as a fresh install
q "$new" "CREATE EXTENSION credits" >/dev/null
psql -X -q -At -v ON_ERROR_STOP=1 -d "$old" -f "$here/test/sql/fingerprint.sql" > "$dir/updated"
psql -X -q -At -v ON_ERROR_STOP=1 -d "$new" -f "$here/test/sql/fingerprint.sql" > "$dir/fresh"
lines=$(wc -l < "$dir/fresh")
if diff -u "$dir/fresh" "$dir/updated" > "$dir/diff"; then
    echo "ok an updated 1.0 has the catalog of a fresh install ($lines facts compared)"
else
    echo "not ok an updated 1.0 differs from a fresh install (- fresh, + updated):"
    head -60 "$dir/diff"
    fail=1
fi
[ "$lines" -gt 500 ] || { echo "not ok the fingerprint has only $lines lines"; fail=1; }
exit $fail
