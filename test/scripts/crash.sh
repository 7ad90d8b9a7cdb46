#!/usr/bin/env bash
# Crash safety: no acknowledged debit is ever lost, and a retry of one
# replays the very result that was acknowledged.
#
# A private cluster (fsync on) takes concurrent debits with distinct
# request_ids from 8 clients, 400 each; every debit whose commit was
# acknowledged is recorded by its client with its result.  The crash is
# triggered by progress, never by a timer:
#   - before the clients start, a "gate" session takes a session-level
#     advisory lock and holds it (the harness waits until pg_locks shows it
#     granted);
#   - client 8 asks for that lock after its 50th debit and blocks there, so
#     the load cannot finish before the crash;
#   - the harness polls the ledger until at least 300 x round debits of the
#     round are committed (clients 1-7 alone can commit 2800) and client 8
#     waits at the gate, then kills every server process with SIGKILL.
# The server restarts (crash recovery), and then:
#   - some but not all 3200 debits were acknowledged, client 8 exactly 50;
#   - every acknowledged request_id is in the ledger;
#   - every request is retried with the same request_id: exactly the ones
#     in the ledger replay, each acknowledged one with the result it was
#     acknowledged with (entry_id, model, cost, charged, shortfall,
#     available, exhausted), the others are charged now; afterwards the
#     ledger holds each of the 3200 requests once;
#   - verify() finds nothing.
# Three rounds, each killing the server at a different point of the load.
# Every wait is bounded (120 s): the test fails, it never hangs.
# shellcheck disable=SC2317  # functions called through trap and wait_until
set -euo pipefail
export LC_ALL=C       # one collation for sort and comm

bindir=$("${PG_CONFIG:-pg_config}" --bindir)
base=$(mktemp -d /tmp/credits_crash.XXXXXX)
port=$((20000 + RANDOM % 10000))
data="$base/data"
# the gate's key, a bigint for pg_advisory_lock (pg_locks: classid 0,
# objid 7301, objsubid 1); the extension's request_id locks use a lock class
# of their own and cannot collide with it
gate=7301
gate_after=50          # client 8 stops at the gate after this many debits
timeout=120            # seconds, for every wait
. "$(dirname "$0")/lib/common.sh"   # as_owner, wait_until
[ "$(id -u)" -eq 0 ] && chown postgres "$base"

bg=()                  # background processes of the current round (clients, gate)
cleanup() {
    local p
    for p in "${bg[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${bg[@]}"; do wait "$p" 2>/dev/null || true; done
    as_owner "$bindir/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$base"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust >/dev/null
cat >> "$data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$base'
fsync = on
synchronous_commit = on
max_connections = 30
CONF
start() { as_owner "$bindir/pg_ctl" -D "$data" -l "$base/log" -w start >/dev/null 2>&1; }
conn=(-X -h "$base" -p "$port" -U postgres -d postgres)
q() { psql "${conn[@]}" -q -At -v ON_ERROR_STOP=1 -c "$1"; }

die() { echo "round $round: $*"; exit 1; }
# the first line any client or the gate session wrote to stderr
first_error() { awk 'NF { print; found = 1; exit } END { if (!found) print "(no error output)" }' "$base"/err*; }
alive() { kill -0 "$1" 2>/dev/null; }

# wait_until WHAT COMMAND...: run COMMAND every 0.05 s until it succeeds;
# fail the test after $timeout seconds.  COMMAND may also fail the test.

# advisory locks on the gate's key, granted or not
gate_locks() {
    echo "SELECT count(*) FILTER (WHERE granted) || ' ' || count(*) FILTER (WHERE NOT granted)
            FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database
            WHERE datname = current_database()) AND classid = 0 AND objid = $gate AND objsubid = 1"
}

gate_held() {
    local s
    alive "$gate_pid" || die "the gate session ended: $(first_error)"
    s=$(q "$(gate_locks)") || return 1
    [ "${s%% *}" = 1 ]
}

# the crash point: $threshold debits of the round committed, client 8 waiting
# at the gate, the gate still held
crash_point() {
    local s committed granted waiting w running=0
    alive "$gate_pid" || die "the gate session ended: $(first_error)"
    s=$(q "SELECT (SELECT count(*) FROM credits.ledger
                    WHERE org_id = 'crash' AND request_id LIKE 'r$round-%') || ' ' || ($(gate_locks))") \
        || return 1
    read -r committed granted waiting <<<"$s"
    [ "$granted" = 1 ] || die "the gate's lock is not held any more"
    [ "$committed" -ge "$threshold" ] && [ "$waiting" = 1 ] && return 0
    for w in $(seq 1 7); do alive "${client[$w]}" && running=$((running + 1)); done
    [ "$running" -gt 0 ] || [ "$committed" -ge "$threshold" ] \
        || die "clients 1-7 ended with only $committed of $threshold debits committed: $(first_error)"
    [ "$waiting" = 1 ] || alive "${client[8]}" \
        || die "client 8 ended before reaching the gate: $(first_error)"
    return 1
}

# every background process of the round has ended
all_ended() {
    local p
    for p in "${bg[@]}"; do alive "$p" && return 1; done
    return 0
}

# the killed server has no process left
server_gone() { ! alive "$pid" && ! pgrep -P "$pid" >/dev/null; }

round=0
start
q "CREATE EXTENSION credits" >/dev/null
q "SELECT org_id FROM credits.create_org('crash', allowance_per_user => 100000)" >/dev/null
q "SELECT credits.enable_provider('crash', 'openai')" >/dev/null
q "SELECT count(credits.add_member('crash', 'u' || i)) FROM generate_series(1, 8) i" >/dev/null

result="concat_ws(' ', entry_id, model, cost, charged, shortfall, available, exhausted)"
fail=0
for round in 1 2 3; do
    threshold=$((300 * round))
    rm -f "$base"/ack* "$base"/err*

    # 8 clients, 400 debits each, every one with its own request_id; each
    # acknowledged debit prints "ack <request_id> <result>"
    for w in $(seq 1 8); do
        for n in $(seq 1 400); do
            echo "SELECT 'ack r$round-$w-$n ' || $result FROM credits.credit_debit('crash', 'u$w', 'gpt-4o', $((n * 37 % 5000)), 100, 'r$round-$w-$n');"
        done > "$base/w$w.sql"
    done
    # client 8 stops at the gate after its 50th debit
    { head -n "$gate_after" "$base/w8.sql"
      echo "SELECT pg_advisory_lock($gate);"
      tail -n +"$((gate_after + 1))" "$base/w8.sql"; } > "$base/c8.sql"

    # the gate: a session that holds the lock until the server is killed
    psql "${conn[@]}" -q -At -c "SELECT pg_advisory_lock($gate)" -c "SELECT pg_sleep(3600)" \
        >/dev/null 2>"$base/err-gate" &
    gate_pid=$!
    bg=("$gate_pid")
    wait_until "the gate's lock" gate_held

    client=()
    for w in $(seq 1 8); do
        f="$base/w$w.sql"; [ "$w" -eq 8 ] && f="$base/c8.sql"
        psql "${conn[@]}" -q -At -f "$f" > "$base/ack$w" 2>"$base/err$w" &
        client[w]=$!
        bg+=("$!")
    done
    wait_until "$threshold committed debits and client 8 at the gate" crash_point

    # crash: every server process at once
    pid=$(head -1 "$data/postmaster.pid")
    pkill -9 -P "$pid" || true
    kill -9 "$pid"
    wait_until "the clients and the gate session to end" all_ended
    for p in "${bg[@]}"; do wait "$p" 2>/dev/null || true; done
    bg=()
    wait_until "the killed server's processes to end" server_gone
    start

    # "<request_id> <result>" of every acknowledged debit
    cat "$base"/ack* | sed -n 's/^ack //p' | sort > "$base/acked"
    cut -d' ' -f1 "$base/acked" > "$base/acked_ids"
    acked=$(wc -l < "$base/acked")
    acked8=$(grep -c '^ack ' "$base/ack8" || true)
    q "SELECT request_id FROM credits.ledger WHERE org_id = 'crash' AND request_id LIKE 'r$round-%'
       ORDER BY 1" | sort > "$base/ledger"
    lost=$(comm -23 "$base/acked_ids" "$base/ledger" | wc -l)
    inledger=$(wc -l < "$base/ledger")

    # retry every request of the round with the same request_id; each prints
    # "<replayed> <request_id> <result>"
    for w in $(seq 1 8); do
        sed "s/SELECT 'ack r/SELECT replayed::text || ' r/" "$base/w$w.sql"
    done > "$base/retry.sql"
    psql "${conn[@]}" -q -At -v ON_ERROR_STOP=1 -f "$base/retry.sql" > "$base/retried" \
        || die "retrying the round's requests failed"
    sed -n 's/^true //p' "$base/retried" | sort > "$base/replayed"
    # acknowledged debits whose retry did not replay the acknowledged result
    changed=$(comm -23 "$base/acked" "$base/replayed" | wc -l)
    # requests that replayed but were not in the ledger, or the reverse
    cut -d' ' -f1 "$base/replayed" > "$base/replayed_ids"
    misreplayed=$(comm -3 "$base/replayed_ids" "$base/ledger" | wc -l)
    after=$(q "SELECT count(*) || ' ' || count(DISTINCT request_id) FROM credits.ledger
                WHERE org_id = 'crash' AND request_id LIKE 'r$round-%'")
    violations=$(q "SELECT count(*) FROM credits.verify()")

    echo "round $round: crash at >= $threshold committed; $acked acknowledged ($acked8 by client 8)," \
         "$inledger in the ledger after recovery, $lost acknowledged lost;" \
         "retrying all 3200: $(wc -l < "$base/replayed") replayed, $changed acknowledged results differ," \
         "ledger $after, verify $violations"
    [ "$acked" -gt 0 ] || { echo "  no debit was acknowledged before the crash"; fail=1; }
    [ "$acked" -lt 3200 ] || { echo "  the crash came after the load"; fail=1; }
    [ "$acked8" -eq "$gate_after" ] || { echo "  client 8 acknowledged $acked8 debits, not the $gate_after before the gate"; fail=1; }
    [ "$lost" -eq 0 ] || { echo "  acknowledged debits were lost"; fail=1; }
    [ "$changed" -eq 0 ] || {
        echo "  $changed acknowledged debits did not replay with the acknowledged result, e.g.:"
        comm -23 "$base/acked" "$base/replayed" | head -3 | while read -r id rest; do
            echo "    acknowledged $id $rest; retry: $(grep -m1 " $id " "$base/retried" || echo "no line")"
        done
        fail=1
    }
    [ "$misreplayed" -eq 0 ] || { echo "  $misreplayed requests replayed without a ledger entry or were charged again"; fail=1; }
    [ "$after" = "3200 3200" ] || { echo "  the ledger does not hold each request once"; fail=1; }
    [ "$violations" = 0 ] || { echo "  verify() found violations"; fail=1; }
done
exit $fail
