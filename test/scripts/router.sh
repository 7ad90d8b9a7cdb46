#!/usr/bin/env bash
# credits_router: the credits API through a PL/Proxy router over 2 shard
# servers and 4 partitions (scripts/shards.sh up 2 4), against a single
# node (a database `single` with CREATE EXTENSION credits on shard server 0)
# as the reference.  Asserts:
#   - coverage: every public function and view of the installed credits
#     (not _-prefixed, not the credit type's support functions) has a router
#     counterpart with the same identity arguments and result (a router view
#     may stand for a node table: periods), and vice versa; the defaults are
#     the node's (credits_router.shard_now() for now()); the credit type's
#     operators, casts and aggregates are the same;
#   - orgs land on different partitions, each org's rows on exactly one;
#   - the same calls (create_org, members, debits with a request id replayed,
#     reserve, settle, release, usage, recharge) give the same results
#     through the router as on the single node;
#   - hold ids carry their partition and settle/release route by them;
#   - catalog changes reach every partition; catalogs_agree() sees a
#     divergence made on one partition, and repeating the change repairs it;
#   - pool_status, periods, verify(), reset_due(), expire_holds() cover
#     every partition;
#   - SQLSTATEs through the router: 23505 22004 UC004 UC006 UC007 22023 42501;
#     the role matrix and credits.org_id confinement hold at the router;
#   - each call commits on its own shard (a ROLLBACK on the router does not
#     undo it), and a default now() is the shard's clock;
#   - a stopped shard server: 08001 naming the partition for its orgs, the
#     other server's orgs keep working, and it works again once restarted;
#   - a partition moved to the other server as the README says: 08001 for
#     its orgs meanwhile, every ledger entry there, holds made before the
#     move settle after it, hold ids keep carrying the partition.
# Every wait is bounded (wait_until); nothing is timed with sleep.
# shellcheck disable=SC2317  # functions called through trap and wait_until
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/test/scripts/lib/common.sh"   # as_owner, wait_until, shards_session
bindir=$("${PG_CONFIG:-pg_config}" --bindir)
timeout=30
shards_session credits_router_test

die() { echo "not ok - $*"; exit 1; }
fail=0
check() {   # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then echo "ok - $1"
    elif [ "$(echo "$2" | wc -l)" -gt 1 ] || [ "$(echo "$3" | wc -l)" -gt 1 ]; then
        echo "not ok - $1 (diff expected got)"; { diff <(echo "$2") <(echo "$3") || true; } | head -40 | sed 's/^/#   /'; fail=1
    else echo "not ok - $1"; echo "#   expected: $2"; echo "#   got:      $3"; fail=1; fi
}

# the cluster: 2 shard servers, 4 partitions (0 and 2 on s0, 1 and 3 on s1)
bash "$here/scripts/shards.sh" up 2 4 > "$work/up.out" || die "shards.sh up failed: $(cat "$work/up.out")"
router=$(tail -1 "$work/up.out")
base=$(cat "$SHARDS_STATE")
port_s0=$(sed -n 's/^port_s0=//p' "$base/state")
port_s1=$(sed -n 's/^port_s1=//p' "$base/state")
check "shards.sh prints the router's connection string last" "host=$base" "$(echo "$router" | grep -o "host=$base")"

# R [psql args] SQL: on the router as postgres; S: on the single node;
# P K SQL: on partition K's database directly
R() { psql -X -q -At -v ON_ERROR_STOP=1 "$router" -c "$1"; }
Ras() { psql -X -q -At -v ON_ERROR_STOP=1 "$router user=$1" -c "$2"; }
S() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$base" -p "$port_s0" -U postgres -d single -c "$1"; }
declare -A part_port=([0]=$port_s0 [1]=$port_s1 [2]=$port_s0 [3]=$port_s1)
P() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$base" -p "${part_port[$1]}" -U postgres -d "credits_p$1" -c "$2"; }
# sqlstate CONNINFO SQL: the SQLSTATE of the error SQL raises (or "none")
sqlstate() {
    local out
    if out=$(psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$1" -c "$2" 2>&1); then echo none
    else echo "$out" | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): .*/\1/p' | head -1; fi
}
errmsg() { psql -X -q -At -v ON_ERROR_STOP=1 "$1" -c "$2" 2>&1 | sed -n 's/^ERROR:  //p' | head -1; }

psql -X -q -h "$base" -p "$port_s0" -U postgres -d postgres -c "CREATE DATABASE single" >/dev/null
S "CREATE EXTENSION credits"

# ---------------------------------------------------------------------------
# coverage: the router's credits schema is the node's
# ---------------------------------------------------------------------------
api_sql="
SELECT 'function ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') -> '
       || pg_get_function_result(p.oid)
  FROM pg_proc p
 WHERE p.pronamespace = 'credits'::regnamespace AND p.proname !~ '^_'
   AND p.oid NOT IN (SELECT oprcode FROM pg_operator)
   AND p.oid NOT IN (SELECT castfunc FROM pg_cast)
   AND p.oid NOT IN (SELECT amproc FROM pg_amproc)
   AND p.oid NOT IN (SELECT unnest(ARRAY[aggfnoid, aggtransfn, aggfinalfn, aggcombinefn]::oid[]) FROM pg_aggregate)
   AND p.oid NOT IN (SELECT unnest(ARRAY[typinput, typoutput, typreceive, typsend]::oid[]) FROM pg_type)
UNION ALL
SELECT 'relation ' || c.relname || '(' || string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) || ')'
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind = 'v'
 GROUP BY c.relname
ORDER BY 1"
node_api=$(S "$api_sql")
router_api=$(R "$api_sql")
missing=$(comm -23 <(echo "$node_api") <(echo "$router_api"))
check "every public function and view of credits has a router counterpart" "" "$missing"
# router views may stand for node tables (periods): same columns
node_tables=$(S "SELECT 'relation ' || c.relname || '(' || string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) || ')'
                   FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                  WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind = 'r' GROUP BY c.relname ORDER BY 1")
extra=$(comm -13 <(echo "$node_api"$'\n'"$node_tables" | sort) <(echo "$router_api" | sort))
check "every public function and view of the router has a node counterpart" "" "$extra"

defaults_sql="SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ')'
                FROM pg_proc p
               WHERE p.pronamespace = 'credits'::regnamespace AND p.proname !~ '^_' AND p.pronargdefaults > 0
               ORDER BY 1"
check "the router's defaults are the node's (the shard's now() for now())" \
    "$(S "$defaults_sql")" "$(R "$defaults_sql" | sed 's/credits_router\.shard_now()/now()/g')"

acl_sql="SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' || coalesce(p.proacl::text, 'default')
           FROM pg_proc p
          WHERE p.pronamespace = 'credits'::regnamespace AND p.proname !~ '^_'
          UNION ALL
         SELECT c.relname || ' ' || coalesce(c.relacl::text, 'default') FROM pg_class c
          WHERE c.relnamespace = 'credits'::regnamespace AND c.relname IN ('pool_status', 'periods')
          ORDER BY 1"
check "the router's privileges on the API are the node's" "$(S "$acl_sql")" "$(R "$acl_sql")"

type_sql="
SELECT 'operator ' || o.oprnamespace::regnamespace || '.' || o.oprname || '(' || coalesce(format_type(o.oprleft, NULL), '') || ', '
       || coalesce(format_type(o.oprright, NULL), '') || ') -> ' || format_type(o.oprresult, NULL) || ' ' || o.oprcode::regproc
  FROM pg_operator o WHERE 'credits.credit'::regtype IN (o.oprleft, o.oprright, o.oprresult)
UNION ALL
SELECT 'cast ' || format_type(c.castsource, NULL) || ' -> ' || format_type(c.casttarget, NULL) || ' ' || c.castcontext::text || ' '
       || c.castfunc::regprocedure
  FROM pg_cast c WHERE 'credits.credit'::regtype IN (c.castsource, c.casttarget)
UNION ALL
SELECT 'aggregate ' || a.aggfnoid::regprocedure || ' ' || a.aggtransfn::regproc || ' ' || a.aggfinalfn::regproc
  FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
 WHERE 'credits.credit'::regtype = ANY (p.proargtypes)
UNION ALL
SELECT 'opclass ' || c.opcname || ' ' || m.amname FROM pg_opclass c JOIN pg_am m ON m.oid = c.opcmethod
 WHERE c.opcintype = 'credits.credit'::regtype
ORDER BY 1"
check "the credit type has the node's operators, casts, aggregates and operator classes" "$(S "$type_sql")" "$(R "$type_sql")"

# ---------------------------------------------------------------------------
# orgs on partitions
# ---------------------------------------------------------------------------
# four orgs, one per partition (0 and 2 on server s0, 1 and 3 on s1)
declare -a org_of
for o in $(R "SELECT 'org-' || i FROM generate_series(1, 64) i"); do
    k=$(R "SELECT credits_router.partition_of('$o')")
    [ -n "${org_of[$k]:-}" ] || org_of[$k]=$o
done
for k in 0 1 2 3; do [ -n "${org_of[$k]:-}" ] || die "no org found for partition $k"; done
o0=${org_of[0]} o1=${org_of[1]} o2=${org_of[2]} o3=${org_of[3]}

anchor="2026-01-01 00:00:00+00"
setup="SELECT org_id, allowance, available FROM credits.create_org('%s', 'Org %s', 100, '$anchor', '1 month', 'UTC');
       SELECT credits.enable_provider('%s', 'openai');
       SELECT credits.enable_provider('%s', 'anthropic');
       SELECT credits.add_member('%s', 'alice');
       SELECT credits.add_member('%s', 'bob', cap => 60);"
for o in "$o0" "$o1" "$o2" "$o3"; do
    # shellcheck disable=SC2059
    R "$(printf "$setup" "$o" "$o" "$o" "$o" "$o" "$o")" >/dev/null
done
where=""
for k in 0 1 2 3; do
    where+="$k:$(P "$k" "SELECT coalesce(string_agg(org_id, ',' ORDER BY org_id), '') FROM credits.orgs") "
done
check "each org's rows are on its partition only" "0:$o0 1:$o1 2:$o2 3:$o3 " "$where"
check "the org's pool, members and providers are there" "2 2 1" \
    "$(P 1 "SELECT (SELECT count(*) FROM credits.members WHERE org_id = '$o1'), (SELECT count(*) FROM credits.org_providers WHERE org_id = '$o1'), (SELECT count(*) FROM credits.pools WHERE org_id = '$o1')" | tr '|' ' ')"

# ---------------------------------------------------------------------------
# the same calls give the same results on a node and through the router
# ---------------------------------------------------------------------------
# shellcheck disable=SC2059
S "$(printf "$setup" acme acme acme acme acme acme)" >/dev/null
# run_both NAME SQL (%s stands for the org): same output on node and router
run_both() {
    local name=$1 sql=$2 node via
    node=$(S "${sql//%s/acme}" 2>&1 | sed 's/acme/ORG/g') || true
    via=$(R "${sql//%s/$o1}" 2>&1 | sed "s/$o1/ORG/g") || true
    check "$name: the router's result is the node's" "$node" "$via"
}
run_both "allowed_models" "SELECT provider, model, is_fallback, available, reason, input_price, output_price FROM credits.allowed_models('%s', 'alice')"
run_both "resolve_model" "SELECT credits.resolve_model('%s', 'alice', 'gpt-4o')"
run_both "credit_debit" "SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM credits.credit_debit('%s', 'alice', 'gpt-4o', 12000, 900, 'req-1')"
run_both "credit_debit replayed" "SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM credits.credit_debit('%s', 'alice', 'gpt-4o', 12000, 900, 'req-1')"
run_both "credit_debit of a capped member" "SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM credits.credit_debit('%s', 'bob', 'claude-opus-4-1', 20000, 10000)"
run_both "credit_reserve" "SELECT model, fell_back, reserved, available, replayed FROM credits.credit_reserve('%s', 'alice', 'gpt-4o', 1200, 4000, 'req-2')"
run_both "credit_reserve replayed" "SELECT model, fell_back, reserved, available, replayed FROM credits.credit_reserve('%s', 'alice', 'gpt-4o', 1200, 4000, 'req-2')"
# settle the hold of req-2, reserve and release another
hold_node=$(S "SELECT hold_id FROM credits.holds WHERE org_id = 'acme' AND request_id = 'req-2'")
hold_router=$(R "SELECT hold_id FROM credits.credit_reserve('$o1', 'alice', 'gpt-4o', 1200, 4000, 'req-2')")
check "a hold id carries its partition (hold_id mod 1024)" "1" "$((hold_router % 1024))"
check "credits_router.hold_partition() names it" "1" "$(R "SELECT credits_router.hold_partition($hold_router)")"
check "credit_settle: the router's result is the node's" \
    "$(S "SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM credits.credit_settle($hold_node, 1200, 2315)")" \
    "$(R "SELECT model, cost, charged, shortfall, available, exhausted, replayed FROM credits.credit_settle($hold_router, 1200, 2315)")"
check "a router hold id is the shard's hold id * 1024 + the partition" \
    "$(P 1 "SELECT hold_id FROM credits.holds WHERE org_id = '$o1' AND request_id = 'req-2'")" "$((hold_router / 1024))"
check "the settle ran on the hold's partition" "settled" "$(P 1 "SELECT status FROM credits.holds WHERE hold_id = $((hold_router / 1024))")"
h2_node=$(S "SELECT hold_id FROM credits.credit_reserve('acme', 'bob', 'gpt-4o', 1000, 1000)")
h2_router=$(R "SELECT hold_id FROM credits.credit_reserve('$o1', 'bob', 'gpt-4o', 1000, 1000)")
check "credit_release: the router's result is the node's" \
    "$(S "SELECT credits.credit_release($h2_node)")" "$(R "SELECT credits.credit_release($h2_router)")"
# a hold of an org on another partition routes there
h3=$(R "SELECT hold_id FROM credits.credit_reserve('$o2', 'alice', 'o3', 1000, 1000)")
check "a hold of partition 2 is settled there" "2 settled" \
    "$((h3 % 1024)) $(R "SELECT 'x' FROM credits.credit_settle($h3, 10, 10)" >/dev/null; P 2 "SELECT status FROM credits.holds WHERE hold_id = $((h3 / 1024))")"
run_both "usage" "SELECT user_id, model, calls, input_tokens, output_tokens, cost, charged, shortfall FROM credits.usage('%s')"
run_both "recharge" "SELECT allowance, allowance_used, topup, reserved, available, exhausted FROM credits.recharge('%s', 50, note => 'PO-1')"
run_both "pool_status row" "SELECT allowance, allowance_used, topup, reserved, available, exhausted FROM credits.pool_status WHERE org_id = '%s'"
check "cost: the router's result is the node's" "$(S "SELECT credits.cost('gpt-4o', 12345, 678)")" "$(R "SELECT credits.cost('gpt-4o', 12345, 678)")"
check "billing_period and valid_period run on the router" "$(S "SELECT * FROM credits.billing_period('2026-01-31', '1 month', 'UTC', '2026-02-15')"), t" \
    "$(R "SELECT * FROM credits.billing_period('2026-01-31', '1 month', 'UTC', '2026-02-15')"), $(R "SELECT credits.valid_period('1 day')")"

# ---------------------------------------------------------------------------
# catalog changes reach every partition; the agreement check
# ---------------------------------------------------------------------------
R "SELECT credits.add_provider('mistral', 'Mistral AI')" >/dev/null
R "SELECT credits.upsert_model('mistral', 'mistral-small', 20, 60, is_fallback => true)" >/dev/null
seen=""
for k in 0 1 2 3; do seen+="$(P "$k" "SELECT input_price || '/' || output_price || '/' || is_fallback FROM credits.models WHERE model = 'mistral-small'") "; done
check "a catalog change is on every partition" "20/60/true 20/60/true 20/60/true 20/60/true " "$seen"
check "catalogs_agree() after it" "t" "$(R "SELECT credits_router.catalogs_agree()")"
# a change that reached one partition only (as a RUN ON ALL that failed half way leaves it)
P 3 "UPDATE credits.models SET input_price = 21 WHERE model = 'mistral-small'"
check "catalogs_agree() sees a partition whose catalog differs" "f" "$(R "SELECT credits_router.catalogs_agree()")"
check "check_partitions() names it" "3" \
    "$(R "SELECT string_agg(partition::text, ',') FROM credits_router.check_partitions() WHERE problem LIKE 'catalog%'")"
R "SELECT credits.upsert_model('mistral', 'mistral-small', 20, 60, is_fallback => true)" >/dev/null
check "repeating the change (idempotent) makes them agree again" "t" "$(R "SELECT credits_router.catalogs_agree()")"
check "check_partitions() then reports no problem" "0" "$(R "SELECT count(*) FROM credits_router.check_partitions() WHERE problem IS NOT NULL")"

# ---------------------------------------------------------------------------
# reports and jobs cover every partition
# ---------------------------------------------------------------------------
check "pool_status through the router has every partition's orgs" "$(printf '%s\n' "$o0" "$o1" "$o2" "$o3" | sort | paste -sd,)" \
    "$(R "SELECT string_agg(org_id, ',' ORDER BY org_id COLLATE \"C\") FROM credits.pool_status")"
check "credits_router.pool_status(org) reads one org" "$o2 200" \
    "$(R "SELECT org_id || ' ' || allowance FROM credits_router.pool_status('$o2')")"
check "verify() of every partition is clean" "0" "$(R "SELECT count(*) FROM credits.verify()")"
check "verify(org) is routed and clean" "0" "$(R "SELECT count(*) FROM credits.verify('$o3')")"
# a short period on two partitions: reset_due() rolls them, periods shows them
R "SELECT org_id FROM credits.create_org('short-a', period => '1 second', billing_anchor => '2026-01-01')" >/dev/null
R "SELECT org_id FROM credits.create_org('short-b', period => '1 second', billing_anchor => '2026-01-01')" >/dev/null
pa=$(R "SELECT credits_router.partition_of('short-a')"); pb=$(R "SELECT credits_router.partition_of('short-b')")
rolled() { [ "$(R "SELECT credits.reset_due()")" -ge 2 ] || [ "$(R "SELECT count(DISTINCT org_id) FROM credits.periods WHERE org_id LIKE 'short-%'")" = 2 ]; }
wait_until "reset_due() to roll the short periods over" rolled
check "periods through the router has both orgs' closed periods (partitions $pa and $pb)" "2" \
    "$(R "SELECT count(DISTINCT org_id) FROM credits.periods WHERE org_id LIKE 'short-%'")"
hx=$(R "SELECT hold_id FROM credits.credit_reserve('$o3', 'alice', 'gpt-4o', 10, 10, ttl => '1 second')")
expired() { [ "$(R "SELECT credits.expire_holds()")" -ge 1 ] || [ "$(P 3 "SELECT status FROM credits.holds WHERE hold_id = $((hx / 1024))")" = expired ]; }
wait_until "expire_holds() to release the hold" expired
check "expire_holds() reached the hold's partition" "expired" "$(P 3 "SELECT status FROM credits.holds WHERE hold_id = $((hx / 1024))")"

# ---------------------------------------------------------------------------
# SQLSTATEs through the router
# ---------------------------------------------------------------------------
check "create_org of an existing org: 23505" 23505 "$(sqlstate "$router" "SELECT * FROM credits.create_org('$o0')")"
check "create_org(NULL): 22004" 22004 "$(sqlstate "$router" "SELECT * FROM credits.create_org(NULL)")"
check "credit_debit with a NULL org: 22004" 22004 "$(sqlstate "$router" "SELECT * FROM credits.credit_debit(NULL, 'alice', 'gpt-4o', 1, 1)")"
check "... its message names the argument" "org_id must not be null" "$(errmsg "$router" "SELECT * FROM credits.credit_debit(NULL, 'alice', 'gpt-4o', 1, 1)")"
check "credit_settle(NULL, ...): 22004" 22004 "$(sqlstate "$router" "SELECT * FROM credits.credit_settle(NULL, 1, 1)")"
check "an explicit NULL billing_anchor stays 22004" 22004 "$(sqlstate "$router" "SELECT * FROM credits.create_org('null-anchor', billing_anchor => NULL)")"
check "an unknown org: UC004" UC004 "$(sqlstate "$router" "SELECT * FROM credits.credit_debit('no-such-org', 'alice', 'gpt-4o', 1, 1)")"
check "settling a hold twice: UC006" UC006 "$(sqlstate "$router" "SELECT * FROM credits.credit_settle($hold_router, 1, 1)")"
check "releasing an unknown hold: UC006" UC006 "$(sqlstate "$router" "SELECT credits.credit_release(999999 * 1024 + 2)")"
check "a request_id reused with other arguments: UC007" UC007 "$(sqlstate "$router" "SELECT * FROM credits.credit_debit('$o1', 'alice', 'gpt-4o', 1, 1, 'req-1')")"
check "negative tokens: 22023" 22023 "$(sqlstate "$router" "SELECT * FROM credits.credit_debit('$o1', 'alice', 'gpt-4o', -1, 1)")"
check "an empty org id: 22023" 22023 "$(sqlstate "$router" "SELECT * FROM credits.credit_debit('', 'alice', 'gpt-4o', 1, 1)")"

# roles at the router
R "CREATE ROLE r_app LOGIN; GRANT credits_app TO r_app;
   CREATE ROLE r_admin LOGIN; GRANT credits_admin TO r_admin;
   CREATE ROLE r_reader LOGIN; GRANT credits_reader TO r_reader;
   CREATE ROLE r_nobody LOGIN"
matrix=""
for role in r_app r_admin r_reader r_nobody; do
    line="$role:"
    line+=" debit=$(sqlstate "$router user=$role" "SELECT 1 FROM credits.credit_debit('$o0', 'alice', 'gpt-4o-mini', 1, 1)")"
    line+=" allowed=$(sqlstate "$router user=$role" "SELECT 1 FROM credits.allowed_models('$o0')")"
    line+=" create_org=$(sqlstate "$router user=$role" "SELECT 1 FROM credits.create_org('role-$role')")"
    line+=" upsert=$(sqlstate "$router user=$role" "SELECT credits.upsert_model('mistral', 'mistral-small', 20, 60, is_fallback => true)")"
    line+=" pool_status=$(sqlstate "$router user=$role" "SELECT count(*) FROM credits.pool_status")"
    line+=" usage=$(sqlstate "$router user=$role" "SELECT count(*) FROM credits.usage('$o0')")"
    line+=" verify=$(sqlstate "$router user=$role" "SELECT count(*) FROM credits.verify()")"
    matrix+="$line"$'\n'
done
check "the role matrix holds at the router" \
"r_app: debit=none allowed=none create_org=42501 upsert=42501 pool_status=42501 usage=42501 verify=42501
r_admin: debit=none allowed=none create_org=none upsert=none pool_status=none usage=none verify=none
r_reader: debit=42501 allowed=42501 create_org=42501 upsert=42501 pool_status=none usage=none verify=42501
r_nobody: debit=42501 allowed=42501 create_org=42501 upsert=42501 pool_status=42501 usage=42501 verify=42501
" "$matrix"
check "the roles need nothing on the foreign server" "f f f" \
    "$(R "SELECT string_agg(CASE WHEN has_server_privilege(r, 'credits_cluster', 'USAGE') THEN 't' ELSE 'f' END, ' ') FROM unnest(ARRAY['r_app', 'r_admin', 'r_reader']) r")"

# tenant confinement at the router
# tenant ROLE ORG SQL: SQL's output (or its SQLSTATE) with credits.org_id = ORG
tenant() {
    local out
    if out=$(psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose "$router user=$1" \
                  -c "SET credits.org_id = '$2'" -c "$3" 2>&1); then echo "$out" | tr '\n' ' '
    else echo "$out" | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): .*/\1 /p' | head -1 | tr -d '\n'; fi
}
check "credits.org_id: a debit for another org is 42501" "42501 " "$(tenant r_app "$o0" "SELECT 1 FROM credits.credit_debit('$o1', 'alice', 'gpt-4o-mini', 1, 1)")"
check "credits.org_id: its own org works" "1 " "$(tenant r_app "$o0" "SELECT 1 FROM credits.credit_debit('$o0', 'alice', 'gpt-4o-mini', 1, 1)")"
h4=$(R "SELECT hold_id FROM credits.credit_reserve('$o2', 'alice', 'gpt-4o', 10, 10)")
check "credits.org_id: settling another org's hold is 42501 (checked on its shard)" "42501 " "$(tenant r_app "$o0" "SELECT 1 FROM credits.credit_settle($h4, 1, 1)")"
check "credits.org_id: releasing another org's hold is 42501" "42501 " "$(tenant r_app "$o0" "SELECT credits.credit_release($h4)")"
check "... and the hold is still open" "open" "$(P 2 "SELECT status FROM credits.holds WHERE hold_id = $((h4 / 1024))")"
check "credits.org_id: pool_status shows that org only" "$o3 " "$(tenant r_reader "$o3" "SELECT string_agg(org_id, ',') FROM credits.pool_status")"
check "credits.org_id: verify(another org) is 42501" "42501 " "$(tenant r_admin "$o0" "SELECT count(*) FROM credits.verify('$o1')")"

# ---------------------------------------------------------------------------
# no transaction spans the router; the shard's clock for now()
# ---------------------------------------------------------------------------
before=$(P 0 "SELECT count(*) FROM credits.ledger WHERE org_id = '$o0'")
R "BEGIN; SELECT 1 FROM credits.credit_debit('$o0', 'alice', 'gpt-4o', 100, 10, 'in-a-rollback'); ROLLBACK" >/dev/null
check "a ROLLBACK on the router does not undo a call: it committed on its shard" "$((before + 1))" \
    "$(P 0 "SELECT count(*) FROM credits.ledger WHERE org_id = '$o0'")"
check "... and its retry with the request id replays it" "t" \
    "$(R "SELECT replayed FROM credits.credit_debit('$o0', 'alice', 'gpt-4o', 100, 10, 'in-a-rollback')")"
# a router transaction whose now() is well in the past: the shard's now() is the default
check "create_org's default billing_anchor is the shard's now(), not the router's" "t" \
    "$(R "BEGIN;
          CREATE TEMP TABLE t AS SELECT now() AS router_now;
          DO \$\$ BEGIN WHILE clock_timestamp() < now() + interval '50 ms' LOOP END LOOP; END \$\$;
          SELECT c.period_start >= (SELECT router_now FROM t) + interval '50 ms'
            FROM credits.create_org('clock-org') c;
          COMMIT" | tail -1)"

# ---------------------------------------------------------------------------
# a shard server down: its partitions fail fast with 08xxx, the others work
# ---------------------------------------------------------------------------
as_owner "$bindir/pg_ctl" -D "$base/s1" -m fast stop >/dev/null
st=$(sqlstate "$router" "SELECT 1 FROM credits.credit_debit('$o1', 'alice', 'gpt-4o-mini', 1, 1, 'down-1')")
check "a debit for an org of the stopped server: 08xxx" "08" "${st:0:2}"
check "... whose message names the partition" "partition 1 of credits_cluster is unavailable" \
    "$(errmsg "$router" "SELECT 1 FROM credits.credit_debit('$o1', 'alice', 'gpt-4o-mini', 1, 1, 'down-1')")"
check "an org of partition 3 (same server): 08001" "08001" "$(sqlstate "$router" "SELECT 1 FROM credits.allowed_models('$o3')")"
check "an org of the other server keeps working" "f" "$(R "SELECT replayed FROM credits.credit_debit('$o0', 'alice', 'gpt-4o-mini', 1, 1, 'down-2')")"
check "... and its holds too" "settled" \
    "$(h=$(R "SELECT hold_id FROM credits.credit_reserve('$o2', 'alice', 'gpt-4o', 10, 10)"); R "SELECT 1 FROM credits.credit_settle($h, 5, 5)" >/dev/null; P 2 "SELECT status FROM credits.holds WHERE hold_id = $((h / 1024))")"
check "a call on every partition (reset_due) is 08001 naming the partition" "08001 partition 1 of credits_cluster is unavailable" \
    "$(sqlstate "$router" "SELECT credits.reset_due()") $(errmsg "$router" "SELECT credits.reset_due()")"
check "a catalog change with a partition down changes nothing anywhere" "08001 0" \
    "$(sqlstate "$router" "SELECT credits.add_provider('down-provider')") $(P 0 "SELECT count(*) FROM credits.providers WHERE provider = 'down-provider'")"
check "check_partitions() shows the two unreachable partitions" "1,3" \
    "$(R "SELECT string_agg(partition::text, ',' ORDER BY partition) FROM credits_router.check_partitions() WHERE NOT reachable")"
check "cost() is answered by a partition that is up" "$(S "SELECT credits.cost('gpt-4o', 1000, 10)")" "$(R "SELECT credits.cost('gpt-4o', 1000, 10)")"
as_owner "$bindir/pg_ctl" -D "$base/s1" -l "$base/s1.log" -w start >/dev/null
back() { R "SELECT 1 FROM credits.allowed_models('$o1') LIMIT 1" >/dev/null 2>&1; }
wait_until "partition 1 to answer again" back
check "once restarted, the retried debit is charged once" "f t" \
    "$(R "SELECT replayed FROM credits.credit_debit('$o1', 'alice', 'gpt-4o-mini', 1, 1, 'down-1')") $(R "SELECT replayed FROM credits.credit_debit('$o1', 'alice', 'gpt-4o-mini', 1, 1, 'down-1')")"

# ---------------------------------------------------------------------------
# moving partition 3 from server s1 to s0, as the README says
# ---------------------------------------------------------------------------
hm=$(R "SELECT hold_id FROM credits.credit_reserve('$o3', 'alice', 'gpt-4o', 100, 100, 'before-move')")
R "SELECT 1 FROM credits.credit_debit('$o3', 'alice', 'gpt-4o', 100, 100, 'move-1')" >/dev/null
q0() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$base" -p "$port_s0" -U postgres -d "$1" -c "$2"; }
q1() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$base" -p "$port_s1" -U postgres -d "$1" -c "$2"; }
q0 postgres "CREATE DATABASE credits_p3"                                                # 1
q1 postgres "REVOKE CONNECT ON DATABASE credits_p3 FROM PUBLIC"                         # 2
q1 postgres "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = 'credits_p3' AND usename = 'credits_router'" >/dev/null
check "during the move, partition 3's orgs get 08001" "08001" \
    "$(sqlstate "$router" "SELECT 1 FROM credits.credit_debit('$o3', 'alice', 'gpt-4o', 1, 1, 'move-2')")"
check "... and the other partitions' orgs work" "f" "$(R "SELECT replayed FROM credits.credit_debit('$o1', 'alice', 'gpt-4o', 1, 1, 'move-3')")"
"$bindir/pg_dump" -h "$base" -p "$port_s1" -U postgres -Fc -d credits_p3 -f "$work/p3.dump"      # 3
"$bindir/pg_restore" -h "$base" -p "$port_s0" -U postgres -d credits_p3 "$work/p3.dump"          # 4
check "the moved partition has every ledger entry" \
    "$(q1 credits_p3 "SELECT count(*) || ' ' || max(entry_id) FROM credits.ledger")" \
    "$(q0 credits_p3 "SELECT count(*) || ' ' || max(entry_id) FROM credits.ledger")"         # 5
check "... and verify() is clean there" "0" "$(q0 credits_p3 "SELECT count(*) FROM credits.verify()")"
R "ALTER SERVER credits_cluster OPTIONS (SET p3 'host=$base port=$port_s0 dbname=credits_p3 connect_timeout=2')"  # 6
part_port[3]=$port_s0
check "check_partitions() after the move: no problem" "0" "$(R "SELECT count(*) FROM credits_router.check_partitions() WHERE problem IS NOT NULL")"
check "a hold made before the move settles on the new server" "f settled" \
    "$(R "SELECT replayed FROM credits.credit_settle($hm, 100, 50)") $(P 3 "SELECT status FROM credits.holds WHERE hold_id = $((hm / 1024))")"
check "the debit refused during the move is charged once now" "f t" \
    "$(R "SELECT replayed FROM credits.credit_debit('$o3', 'alice', 'gpt-4o', 1, 1, 'move-2')") $(R "SELECT replayed FROM credits.credit_debit('$o3', 'alice', 'gpt-4o', 100, 100, 'move-1')")"
hn=$(R "SELECT hold_id FROM credits.credit_reserve('$o3', 'alice', 'gpt-4o', 10, 10)")
check "new hold ids still carry partition 3, after the old ones" "3 t" "$((hn % 1024)) $(R "SELECT $hn > $hm")"
q1 postgres "DROP DATABASE credits_p3"                                                  # 7
check "verify() of every partition is clean at the end" "0" "$(R "SELECT count(*) FROM credits.verify()")"

[ "$fail" -eq 0 ] || exit 1
echo "router: all checks passed"
