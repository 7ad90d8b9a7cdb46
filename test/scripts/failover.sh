#!/usr/bin/env bash
# Failover to a synchronous standby: no acknowledged debit is lost, a retry
# with its request_id replays the acknowledged result, and holds survive.
#
# A private primary (fsync on, synchronous_commit on) with a streaming
# standby made by pg_basebackup -R whose application_name is in
# synchronous_standby_names: a commit is acknowledged only once the standby
# has flushed it.  Before the load, 3 holds are opened (credit_reserve, ids
# recorded).  8 clients then take 200 debits each with distinct
# request_ids; each prints "ack <request_id> <result>" once its debit has
# committed.  The failover is triggered by progress, never by a timer:
#   - a "gate" session holds a session-level advisory lock (the harness
#     waits until pg_locks shows it granted);
#   - client 8 asks for that lock after its 30th debit and blocks there, so
#     the load cannot finish before the kill;
#   - the harness polls the primary's ledger until at least 400 debits are
#     committed and client 8 waits at the gate, then SIGKILLs the primary's
#     postmaster and every child.
# The standby is promoted (pg_ctl promote) and the harness waits until it
# accepts writes.  Then, on the new primary:
#   - some but not all 1600 debits were acknowledged, client 8 exactly 30;
#   - every acknowledged request_id is in the ledger exactly once;
#   - every request is retried with its request_id: exactly the ones in the
#     ledger replay, each acknowledged one with the acknowledged result
#     (entry_id, model, cost, charged, shortfall, available, exhausted), the
#     others are charged now; afterwards the ledger holds each request once;
#   - the 3 holds opened before the failover settle;
#   - verify() finds nothing.
# Every wait is bounded (60 s): the test fails, it never hangs.
# shellcheck disable=SC2317  # functions called through trap and wait_until
set -euo pipefail
export LC_ALL=C       # one collation for sort and comm

bindir=$("${PG_CONFIG:-pg_config}" --bindir)
base=$(mktemp -d /tmp/credits_failover.XXXXXX)
pport=$((20000 + RANDOM % 10000))
sport=$((pport + 1))
pdata="$base/primary"
sdata="$base/standby"
gate=7302
gate_after=30          # client 8 stops at the gate after this many debits
per_client=200
total=$((8 * per_client))
threshold=400          # committed debits before the kill (clients 1-7 alone can commit 1400)
timeout=60
. "$(dirname "$0")/lib/common.sh"   # as_owner, wait_until
[ "$(id -u)" -eq 0 ] && chown postgres "$base"

bg=()
cleanup() {
    local p
    for p in "${bg[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${bg[@]}"; do wait "$p" 2>/dev/null || true; done
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
first_error() { awk 'NF { print; found = 1; exit } END { if (!found) print "(no error output)" }' "$base"/err*; }
alive() { kill -0 "$1" 2>/dev/null; }

# the primary
as_owner "$bindir/initdb" -D "$pdata" -U postgres --auth=trust >/dev/null
cat >> "$pdata/postgresql.conf" <<CONF
port = $pport
listen_addresses = ''
unix_socket_directories = '$base'
wal_level = replica
max_wal_senders = 4
hot_standby = on
fsync = on
synchronous_commit = on
max_connections = 30
CONF
as_owner "$bindir/pg_ctl" -D "$pdata" -l "$base/primary.log" -w start >/dev/null
pconn=(-X -h "$base" -p "$pport" -U postgres -d postgres)
sconn=(-X -h "$base" -p "$sport" -U postgres -d postgres)
qp() { psql "${pconn[@]}" -q -At -v ON_ERROR_STOP=1 -c "$1"; }
qs() { psql "${sconn[@]}" -q -At -v ON_ERROR_STOP=1 -c "$1"; }

# the standby, application_name standby1 (its cluster_name)
as_owner "$bindir/pg_basebackup" -h "$base" -p "$pport" -U postgres -D "$sdata" -R -X stream -c fast
cat >> "$sdata/postgresql.conf" <<CONF
port = $sport
hot_standby = on
cluster_name = 'standby1'
CONF
as_owner "$bindir/pg_ctl" -D "$sdata" -l "$base/standby.log" -w start >/dev/null
# make it synchronous
qp "ALTER SYSTEM SET synchronous_standby_names = 'standby1'" >/dev/null
qp "SELECT pg_reload_conf()" >/dev/null
sync_standby() {
    [ "$(qp "SELECT count(*) FROM pg_stat_replication
             WHERE application_name = 'standby1' AND state = 'streaming' AND sync_state = 'sync'")" = 1 ]
}
wait_until "the standby to stream synchronously" sync_standby
echo "ok - the standby streams synchronously"

qp "CREATE EXTENSION credits" >/dev/null
qp "SELECT org_id FROM credits.create_org('fo', allowance_per_user => 100000)" >/dev/null
qp "SELECT credits.enable_provider('fo', 'openai')" >/dev/null
qp "SELECT count(credits.add_member('fo', 'u' || i)) FROM generate_series(1, 8) i" >/dev/null

# holds opened before the failover: "<request_id> <hold_id>"
qp "SELECT 'h-' || i || ' ' || h.hold_id FROM generate_series(1, 3) i,
        LATERAL credits.credit_reserve('fo', 'u' || i, 'gpt-4o', 1000, 2000, 'h-' || i) h" > "$base/holds"
check "3 holds opened before the failover" 3 "$(wc -l < "$base/holds")"

result="concat_ws(' ', entry_id, model, cost, charged, shortfall, available, exhausted)"
for w in $(seq 1 8); do
    for n in $(seq 1 "$per_client"); do
        echo "SELECT 'ack d-$w-$n ' || $result FROM credits.credit_debit('fo', 'u$w', 'gpt-4o', $((n * 37 % 5000)), 100, 'd-$w-$n');"
    done > "$base/w$w.sql"
done
{ head -n "$gate_after" "$base/w8.sql"
  echo "SELECT pg_advisory_lock($gate);"
  tail -n +"$((gate_after + 1))" "$base/w8.sql"; } > "$base/c8.sql"

gate_locks() {
    echo "SELECT count(*) FILTER (WHERE granted) || ' ' || count(*) FILTER (WHERE NOT granted)
            FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database
            WHERE datname = current_database()) AND classid = 0 AND objid = $gate AND objsubid = 1"
}
gate_held() {
    local s
    alive "$gate_pid" || die "the gate session ended: $(first_error)"
    s=$(qp "$(gate_locks)") || return 1
    [ "${s%% *}" = 1 ]
}
kill_point() {
    local s committed granted waiting w running=0
    alive "$gate_pid" || die "the gate session ended: $(first_error)"
    s=$(qp "SELECT (SELECT count(*) FROM credits.ledger WHERE org_id = 'fo' AND request_id LIKE 'd-%')
               || ' ' || ($(gate_locks))") || return 1
    read -r committed granted waiting <<<"$s"
    [ "$granted" = 1 ] || die "the gate's lock is not held any more"
    [ "$committed" -ge "$threshold" ] && [ "$waiting" = 1 ] && return 0
    for w in $(seq 1 7); do alive "${client[$w]}" && running=$((running + 1)); done
    [ "$running" -gt 0 ] || [ "$committed" -ge "$threshold" ] \
        || die "clients 1-7 ended with only $committed of $threshold debits committed: $(first_error)"
    [ "$waiting" = 1 ] || alive "${client[8]}" || die "client 8 ended before reaching the gate: $(first_error)"
    return 1
}
all_ended() {
    local p
    for p in "${bg[@]}"; do alive "$p" && return 1; done
    return 0
}

psql "${pconn[@]}" -q -At -c "SELECT pg_advisory_lock($gate)" -c "SELECT pg_sleep(3600)" \
    >/dev/null 2>"$base/err-gate" &
gate_pid=$!
bg=("$gate_pid")
wait_until "the gate's lock" gate_held

client=()
for w in $(seq 1 8); do
    f="$base/w$w.sql"; [ "$w" -eq 8 ] && f="$base/c8.sql"
    psql "${pconn[@]}" -q -At -f "$f" > "$base/ack$w" 2>"$base/err$w" &
    client[w]=$!
    bg+=("$!")
done
wait_until "$threshold committed debits and client 8 at the gate" kill_point

# the primary dies: its postmaster and every child at once
pid=$(head -1 "$pdata/postmaster.pid")
pkill -9 -P "$pid" || true
kill -9 "$pid"
wait_until "the clients and the gate session to end" all_ended
for p in "${bg[@]}"; do wait "$p" 2>/dev/null || true; done
bg=()
primary_gone() { ! alive "$pid" && ! pgrep -P "$pid" >/dev/null; }
wait_until "the killed primary's processes to end" primary_gone

# promote the standby and wait until it accepts writes
as_owner "$bindir/pg_ctl" -D "$sdata" promote -w -t "$timeout" >/dev/null
writable() { [ "$(qs "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'")" = t ]; }
wait_until "the promoted standby to accept writes" writable
qs "CREATE TEMP TABLE t_write_probe (i int)" >/dev/null || die "the promoted standby refuses a write"
echo "ok - the standby was promoted and accepts writes"

# "<request_id> <result>" of every acknowledged debit
cat "$base"/ack* | sed -n 's/^ack //p' | sort > "$base/acked"
cut -d' ' -f1 "$base/acked" > "$base/acked_ids"
acked=$(wc -l < "$base/acked")
acked8=$(grep -c '^ack ' "$base/ack8" || true)
qs "SELECT request_id FROM credits.ledger WHERE org_id = 'fo' AND request_id LIKE 'd-%' ORDER BY 1" \
    | sort > "$base/ledger"
inledger=$(wc -l < "$base/ledger")
echo "# $acked of $total debits acknowledged before the kill ($acked8 by client 8), $inledger in the promoted standby's ledger"
[ "$acked" -gt 0 ] && [ "$acked" -lt "$total" ] && ok=yes || ok=no
check "some but not all debits were acknowledged before the kill" yes "$ok"
check "client 8 acknowledged exactly the $gate_after debits before the gate" "$gate_after" "$acked8"
check "no acknowledged debit is missing from the new primary's ledger" 0 "$(comm -23 "$base/acked_ids" "$base/ledger" | wc -l)"
check "no request is in the ledger twice" 0 "$(uniq -d "$base/ledger" | wc -l)"

# retry every request with its request_id: "<replayed> <request_id> <result>"
for w in $(seq 1 8); do
    sed "s/SELECT 'ack d/SELECT replayed::text || ' d/" "$base/w$w.sql"
done > "$base/retry.sql"
psql "${sconn[@]}" -q -At -v ON_ERROR_STOP=1 -f "$base/retry.sql" > "$base/retried" 2>"$base/err-retry" \
    || die "retrying the requests on the new primary failed: $(head -1 "$base/err-retry")"
sed -n 's/^true //p' "$base/retried" | sort > "$base/replayed"
cut -d' ' -f1 "$base/replayed" > "$base/replayed_ids"
changed=$(comm -23 "$base/acked" "$base/replayed" | wc -l)
check "every acknowledged debit replays with the acknowledged result" 0 "$changed"
[ "$changed" -eq 0 ] || comm -23 "$base/acked" "$base/replayed" | head -3 | while read -r id rest; do
    echo "#   acknowledged $id $rest; retry: $(grep -m1 " $id " "$base/retried" || echo "no line")"
done
check "exactly the requests in the ledger replay, the others are charged now" 0 \
    "$(comm -3 "$base/replayed_ids" "$base/ledger" | wc -l)"
check "the ledger holds each of the $total requests once" "$total $total" \
    "$(qs "SELECT count(*) || ' ' || count(DISTINCT request_id) FROM credits.ledger
            WHERE org_id = 'fo' AND request_id LIKE 'd-%'")"

# the holds opened before the failover settle
settled=0
while read -r rid hold_id; do
    out=$(qs "SELECT replayed || ' ' || (cost > 0) FROM credits.credit_settle($hold_id, 1000, 1500)" 2>&1) \
        && [ "$out" = "false true" ] && settled=$((settled + 1)) || echo "#   hold $rid ($hold_id): $out"
done < "$base/holds"
check "the 3 holds opened before the failover settle on the new primary" 3 "$settled"
check "no hold is left open" 0 "$(qs "SELECT count(*) FROM credits.pool_status WHERE org_id = 'fo' AND reserved <> 0")"
check "verify() finds nothing on the new primary" 0 "$(qs "SELECT count(*) FROM credits.verify()")"
exit $fail
