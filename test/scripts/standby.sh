#!/usr/bin/env bash
# Hot standby: the read-only API works on a streaming replica, writes
# nothing there, and follows the primary as WAL is replayed.
#
# A private primary (wal_level replica) and a streaming replica made with
# pg_basebackup -R (hot_standby on), unix sockets only, in a mktemp
# directory.  On the primary: CREATE EXTENSION credits, an org with two
# members and a provider.  Every step on the primary is followed by a wait
# until the standby has replayed it (pg_last_wal_replay_lsn() >= the
# primary's pg_current_wal_lsn(), polled, bounded); no sleep decides
# anything.  On the standby, in ONE long-lived session (so that its
# configuration cache is warm from the first step):
#   - allowed_models, resolve_model, cost, pool_status and usage succeed (no
#     error, notably no 25006) and the session's transaction never gets a
#     transaction id (nothing written);
#   - the pool runs dry on the primary: the standby grays the premium models
#     out (available = false, reason credits_exhausted) and resolve_model
#     returns the provider's fallback;
#   - a recharge on the primary makes them available again on the standby;
#   - a price change (upsert_model) on the primary is seen by cost() in the
#     same standby session that computed the old price: the configuration
#     cache is invalidated during recovery.
# Every wait is bounded (30 s): the test fails, it never hangs.
# shellcheck disable=SC2317  # functions called through trap and wait_until
set -euo pipefail
export LC_ALL=C

bindir=$("${PG_CONFIG:-pg_config}" --bindir)
base=$(mktemp -d /tmp/credits_standby.XXXXXX)
pport=$((20000 + RANDOM % 10000))
sport=$((pport + 1))
pdata="$base/primary"
sdata="$base/standby"
timeout=30
. "$(dirname "$0")/lib/common.sh"   # as_owner, wait_until
[ "$(id -u)" -eq 0 ] && chown postgres "$base"

sess_pid=
cleanup() {
    if [ -n "$sess_pid" ]; then kill -9 "$sess_pid" 2>/dev/null || true; wait "$sess_pid" 2>/dev/null || true; fi
    as_owner "$bindir/pg_ctl" -D "$sdata" -m immediate stop >/dev/null 2>&1 || true
    as_owner "$bindir/pg_ctl" -D "$pdata" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$base"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

die() { echo "not ok - $*"; exit 1; }
fail=0
check() {   # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then echo "ok - $1"
    else echo "not ok - $1"; echo "#   expected: $2"; echo "#   got:      $3"; fail=1; fi
}


# the primary
as_owner "$bindir/initdb" -D "$pdata" -U postgres --auth=trust >/dev/null
cat >> "$pdata/postgresql.conf" <<CONF
port = $pport
listen_addresses = ''
unix_socket_directories = '$base'
wal_level = replica
max_wal_senders = 4
hot_standby = on
max_connections = 20
CONF
as_owner "$bindir/pg_ctl" -D "$pdata" -l "$base/primary.log" -w start >/dev/null
pconn=(-X -h "$base" -p "$pport" -U postgres -d postgres)
sconn=(-X -h "$base" -p "$sport" -U postgres -d postgres)
qp() { psql "${pconn[@]}" -q -At -v ON_ERROR_STOP=1 -c "$1"; }
qs() { psql "${sconn[@]}" -q -At -v ON_ERROR_STOP=1 -c "$1"; }

# the standby, a copy of the primary streaming from it
as_owner "$bindir/pg_basebackup" -h "$base" -p "$pport" -U postgres -D "$sdata" -R -X stream -c fast
cat >> "$sdata/postgresql.conf" <<CONF
port = $sport
hot_standby = on
cluster_name = 'standby1'
CONF
as_owner "$bindir/pg_ctl" -D "$sdata" -l "$base/standby.log" -w start >/dev/null
check "the standby is in recovery" t "$(qs "SELECT pg_is_in_recovery()")"

replayed() { [ "$(qs "SELECT pg_last_wal_replay_lsn() >= '$target'::pg_lsn")" = t ]; }
# wait until the standby has replayed everything the primary wrote so far
sync_standby() {
    target=$(qp "SELECT pg_current_wal_lsn()")
    wait_until "the standby to replay up to $target" replayed
}

qp "CREATE EXTENSION credits" >/dev/null
qp "SELECT org_id FROM credits.create_org('acme', allowance_per_user => 10)" >/dev/null
qp "SELECT credits.enable_provider('acme', 'openai')" >/dev/null
qp "SELECT credits.enable_provider('acme', 'anthropic')" >/dev/null
qp "SELECT credits.add_member('acme', 'alice')" >/dev/null
qp "SELECT credits.add_member('acme', 'bob')" >/dev/null
# a first small charge, so that usage() has something to show
qp "SELECT credits.credit_debit('acme', 'alice', 'gpt-4o', 1000, 100, 'r-1')" >/dev/null
sync_standby

# The long-lived standby session, fed through a FIFO; every command is
# followed by an \echo marker, read back (bounded) with whatever it printed,
# errors included (VERBOSITY verbose: "ERROR:  <sqlstate>: ...").
mkfifo "$base/in"
: > "$base/out"
psql "${sconn[@]}" -q -At -v ON_ERROR_STOP=0 -v VERBOSITY=verbose <"$base/in" >"$base/out" 2>&1 &
sess_pid=$!
exec 3>"$base/in"
exec 4<"$base/out"
echo '\set VERBOSITY verbose' >&3
marker=0
# sq SQL: run SQL in the standby session, print its output
sq() {
    local line out=""
    marker=$((marker + 1))
    printf '%s;\n\\echo __done_%s\n' "$1" "$marker" >&3
    local deadline=$((SECONDS + timeout))
    while :; do
        if IFS= read -r -u 4 line; then
            [ "$line" = "__done_$marker" ] && break
            out+="${out:+$'\n'}$line"
        else
            kill -0 "$sess_pid" 2>/dev/null || die "the standby session ended: $out"
            [ "$SECONDS" -lt "$deadline" ] || die "no answer from the standby session to: $1"
            sleep 0.02
        fi
    done
    printf '%s' "$out"
}
session=$(sq "SELECT pg_backend_pid()")
check "the standby session is a standby backend" t "$(sq "SELECT pg_is_in_recovery()")"

models="SELECT string_agg(model || ':' || available || ':' || coalesce(reason, '-'), ' ' ORDER BY provider, is_fallback, model)
          FROM credits.allowed_models('acme', 'alice')"
all_available="claude-opus-4-1:true:- claude-sonnet-4-5:true:- claude-haiku-4-5:true:- gpt-4.1:true:- gpt-4o:true:- o3:true:- gpt-4o-mini:true:-"
all_exhausted="claude-opus-4-1:false:credits_exhausted claude-sonnet-4-5:false:credits_exhausted claude-haiku-4-5:true:- gpt-4.1:false:credits_exhausted gpt-4o:false:credits_exhausted o3:false:credits_exhausted gpt-4o-mini:true:-"

# 1. the read-only API on the standby, in one transaction that must never
#    get a transaction id
out=$(sq "BEGIN;
$models;
SELECT credits.resolve_model('acme', 'alice', 'gpt-4o');
SELECT credits.cost('gpt-4o', 1000000, 0);
SELECT allowance || ' ' || allowance_used || ' ' || available || ' ' || exhausted FROM credits.pool_status WHERE org_id = 'acme';
SELECT string_agg(user_id || ':' || model || ':' || calls || ':' || cost, ' ') FROM credits.usage('acme');
SELECT coalesce(pg_current_xact_id_if_assigned()::text, 'none');
COMMIT;")
expected="$all_available
gpt-4o
250
20 0.35 19.65 false
alice:gpt-4o:1:0.35
none"
check "allowed_models, resolve_model, cost, pool_status, usage on the standby: no error, nothing written" "$expected" "$out"
out=$(sq "SELECT credits.credit_debit('acme', 'bob', 'gpt-4o', 1000, 100, 'r-standby')")
check "a debit on the standby is refused" 1 "$(grep -c 'ERROR:' <<<"$out" || true)"
# as a plain INSERT there: 25006, so that a client can route it to the primary
check "... with SQLSTATE 25006 (read-only transaction)" 1 "$(grep -c 'ERROR:  25006' <<<"$out" || true)"

# 2. the pool runs dry on the primary
qp "SELECT credits.credit_debit('acme', 'bob', 'gpt-4o', 100000, 0, 'r-2')" >/dev/null
check "the pool is exhausted on the primary" t "$(qp "SELECT exhausted FROM credits.pool_status WHERE org_id = 'acme'")"
sync_standby
check "standby: premium models grayed out (credits_exhausted)" "$all_exhausted" "$(sq "$models")"
check "standby: resolve_model returns the fallback" gpt-4o-mini "$(sq "SELECT credits.resolve_model('acme', 'alice', 'gpt-4o')")"
check "standby: resolve_model (anthropic) returns the fallback" claude-haiku-4-5 \
    "$(sq "SELECT credits.resolve_model('acme', 'bob', 'claude-opus-4-1')")"
check "standby: pool_status shows the pool exhausted" "0 true" \
    "$(sq "SELECT available || ' ' || exhausted FROM credits.pool_status WHERE org_id = 'acme'")"
check "standby, a new session: premium models grayed out" "$all_exhausted" "$(qs "$models")"

# 3. a recharge on the primary
qp "SELECT credits.recharge('acme')" >/dev/null
sync_standby
check "standby: after the recharge, premium models available again" "$all_available" "$(sq "$models")"
check "standby: after the recharge, resolve_model returns the model" gpt-4o \
    "$(sq "SELECT credits.resolve_model('acme', 'alice', 'gpt-4o')")"

# 4. a price change on the primary, seen by the session that cached the old price
check "standby session: the old price" 250 "$(sq "SELECT credits.cost('gpt-4o', 1000000, 0)")"
qp "SELECT credits.upsert_model('openai', 'gpt-4o', input_price => 300, output_price => 1200)" >/dev/null
check "primary: the new price" 300 "$(qp "SELECT credits.cost('gpt-4o', 1000000, 0)")"
sync_standby
check "standby session (old price cached): the new price after replay" "300 1200" \
    "$(sq "SELECT credits.cost('gpt-4o', 1000000, 0) || ' ' || credits.cost('gpt-4o', 0, 1000000)")"
check "standby session: allowed_models shows the new price" "300 1200" \
    "$(sq "SELECT input_price || ' ' || output_price FROM credits.allowed_models('acme') WHERE model = 'gpt-4o'")"
# a new fallback, seen by resolve_model once the pool is dry again
qp "SELECT credits.upsert_model('openai', 'gpt-4.1-mini', 40, 160, is_fallback => true)" >/dev/null
qp "SELECT credits.credit_debit('acme', 'bob', 'gpt-4o', 100000, 0, 'r-3')" >/dev/null
sync_standby
check "standby session: the new fallback after replay" gpt-4.1-mini \
    "$(sq "SELECT credits.resolve_model('acme', 'alice', 'gpt-4o')")"
check "the checks ran in one standby session" "$session" "$(sq "SELECT pg_backend_pid()")"

# 5. nothing was written on the standby: the primary is consistent and the
#    standby still in recovery, replaying the same ledger
check "primary: verify() finds nothing" 0 "$(qp "SELECT count(*) FROM credits.verify()")"
sync_standby
check "standby: same ledger as the primary" "$(qp "SELECT count(*) || ' ' || max(entry_id) FROM credits.ledger")" \
    "$(qs "SELECT count(*) || ' ' || max(entry_id) FROM credits.ledger")"
check "the standby is still in recovery" t "$(qs "SELECT pg_is_in_recovery()")"
exec 3>&- 4<&-
exit $fail
