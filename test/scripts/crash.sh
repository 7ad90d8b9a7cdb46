#!/usr/bin/env bash
# Crash safety: no acknowledged debit is ever lost, none is charged twice.
#
# A private cluster (fsync on) takes concurrent debits with distinct
# request_ids from 8 clients; every debit whose commit was acknowledged is
# recorded by its client.  Mid-load every server process is killed with
# SIGKILL, the server restarts (crash recovery), and then:
#   - every acknowledged request_id is in the ledger exactly once;
#   - every request is retried with the same request_id: the acknowledged
#     ones replay, the others are charged now, each exactly once;
#   - verify() finds nothing.
# Three rounds, each killing the server at a different moment.
set -euo pipefail

bindir=$("${PG_CONFIG:-pg_config}" --bindir)
base=$(mktemp -d /tmp/credits_crash.XXXXXX)
port=$((20000 + RANDOM % 10000))
data="$base/data"
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$base"

cleanup() {
    as_owner "$bindir/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$base"
}
trap cleanup EXIT

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
q() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$base" -p "$port" -U postgres -d postgres -c "$1"; }

start
q "CREATE EXTENSION credits" >/dev/null
q "SELECT org_id FROM credits.create_org('crash', allowance_per_user => 100000)" >/dev/null
q "SELECT credits.enable_provider('crash', 'openai')" >/dev/null
q "SELECT count(credits.add_member('crash', 'u' || i)) FROM generate_series(1, 8) i" >/dev/null

fail=0
for round in 1 2 3; do
    # 8 clients, 400 debits each, every one with its own request_id
    for w in $(seq 1 8); do
        for n in $(seq 1 400); do
            echo "SELECT 'ack r$round-$w-$n' FROM credits.credit_debit('crash', 'u$w', 'gpt-4o', $((n * 37 % 5000)), 100, 'r$round-$w-$n');"
        done > "$base/w$w.sql"
        psql -X -q -At -h "$base" -p "$port" -U postgres -d postgres -f "$base/w$w.sql" \
            > "$base/ack$w" 2>/dev/null &
    done
    sleep "0.$((3 + round * 2))"
    # crash: every server process at once
    pid=$(head -1 "$data/postmaster.pid")
    pkill -9 -P "$pid" || true
    kill -9 "$pid"
    wait || true
    while kill -0 "$pid" 2>/dev/null || pgrep -P "$pid" >/dev/null; do sleep 0.1; done
    start

    cat "$base"/ack* | sed -n 's/^ack //p' | sort > "$base/acked"
    acked=$(wc -l < "$base/acked")
    q "SELECT request_id FROM credits.ledger WHERE org_id = 'crash' AND request_id LIKE 'r$round-%'
       ORDER BY 1" > "$base/ledger"
    lost=$(comm -23 "$base/acked" <(sort -u "$base/ledger") | wc -l)
    twice=$(sort "$base/ledger" | uniq -d | wc -l)
    inledger=$(wc -l < "$base/ledger")

    # retry every request of the round with the same request_id
    for w in $(seq 1 8); do
        sed "s/SELECT 'ack r/SELECT replayed::text || ' r/" "$base/w$w.sql"
    done > "$base/retry.sql"
    psql -X -q -At -v ON_ERROR_STOP=1 -h "$base" -p "$port" -U postgres -d postgres \
        -f "$base/retry.sql" > "$base/retried"
    replayed_acked=$(grep '^true ' "$base/retried" | sed 's/^true //' | sort | comm -12 - "$base/acked" | wc -l)
    after=$(q "SELECT count(*) || ' ' || count(DISTINCT request_id) FROM credits.ledger
                WHERE org_id = 'crash' AND request_id LIKE 'r$round-%'")
    violations=$(q "SELECT count(*) FROM credits.verify()")

    echo "round $round: $acked acknowledged before the crash, $inledger in the ledger after recovery," \
         "$lost acknowledged lost, $twice charged twice; after retrying all 3200: ledger $after, verify $violations"
    [ "$acked" -gt 0 ] || { echo "  no debit was acknowledged before the crash"; fail=1; }
    [ "$acked" -lt 3200 ] || { echo "  the crash came after the load"; fail=1; }
    [ "$lost" -eq 0 ] || { echo "  acknowledged debits were lost"; fail=1; }
    [ "$twice" -eq 0 ] || { echo "  debits were charged twice"; fail=1; }
    [ "$replayed_acked" -eq "$acked" ] || { echo "  only $replayed_acked of $acked acknowledged debits replayed"; fail=1; }
    [ "$after" = "3200 3200" ] || { echo "  the ledger does not hold each request once"; fail=1; }
    [ "$violations" = 0 ] || { echo "  verify() found violations"; fail=1; }
done
exit $fail
