#!/usr/bin/env bash
# PgBouncer in transaction pooling mode in front of the extension.
#
# A private cluster (unix socket in a temp dir) and a private pgbouncer
# (config, pid file and unix socket in the same temp dir, no TCP), auth_type
# trust with a userlist, pool_mode = transaction, two pooled databases:
#   gw  -> pool_size 3: the gateway flow, run by pgbench with 6 clients as a
#          login "api" that is a member of credits_app (row-level security and
#          the functions' org check apply to it).  Each transaction:
#            BEGIN; SET LOCAL credits.org_id = 'gw';
#            resolve_model -> credit_reserve (request_id) -> credit_settle
#            -> credit_debit (request_id); COMMIT;
#          PgBouncer >= 1.21 with max_prepared_statements runs it with
#          pgbench -M prepared (named prepared statements); older versions
#          (Debian 12 has 1.18, which forwards named statements to whichever
#          server connection it picks) with -M extended: the extended
#          protocol with unnamed statements, which transaction pooling
#          supports in every version.  Checks: every transaction done, 0
#          failed, then directly on the server: one hold, one settle and one
#          debit per transaction, every hold settled, every request_id once,
#          verify() clean, and fewer server connections than clients.
#   iso -> pool_size 1: every client shares the one server connection, so
#          what one client leaves on it is seen by the next.  Client A stays
#          connected throughout (a coprocess); client B connects after each of
#          A's steps and runs on the same server backend (asserted by
#          pg_backend_pid()):
#            1. A: BEGIN; SET LOCAL credits.org_id = 'a'; a debit for a; COMMIT
#               -> B: credits.org_id is empty, resolve_model and a debit for b
#               work (inside B's own SET LOCAL 'b' transaction too);
#            2. A: BEGIN; SET LOCAL 'a'; a call for b -> 42501; ROLLBACK
#               -> B: again empty, b works;
#            3. A: plain SET credits.org_id = 'a' (session level, no
#               transaction) -> B on that server connection DOES see 'a' and
#               its call for b is refused (42501): the leak that makes SET
#               LOCAL (or set_config(..., true)) a requirement behind a
#               transaction pooler;
#            4. A: RESET credits.org_id -> B: empty again.
# Every wait is bounded (60 s): the test fails, it never hangs.
# shellcheck disable=SC2317  # functions called through trap and wait_until
set -euo pipefail
export LC_ALL=C

if ! command -v pgbouncer >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "SKIP: pgbouncer is not installed (apt-get install pgbouncer, or run as root)"
        exit 0
    fi
    echo "installing pgbouncer"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null \
        || { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
             DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null; }
fi

bindir=$("${PG_CONFIG:-pg_config}" --bindir)
base=$(mktemp -d /tmp/credits_pgbouncer.XXXXXX)
port=$((20000 + RANDOM % 10000))     # the server's unix socket
bport=$((port + 1))                  # pgbouncer's unix socket (another dir)
data="$base/data"
sock="$base/bouncer"
timeout=60
clients=6 per_client=50
. "$(dirname "$0")/lib/common.sh"   # as_owner, wait_until
mkdir "$sock"
[ "$(id -u)" -eq 0 ] && chown postgres "$base" "$sock"

a_pid=
cleanup() {
    local p
    if [ -n "$a_pid" ]; then kill "$a_pid" 2>/dev/null || true; wait "$a_pid" 2>/dev/null || true; fi
    if [ -s "$base/pgbouncer.pid" ]; then
        p=$(cat "$base/pgbouncer.pid")
        kill "$p" 2>/dev/null || true
        for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null || true
    fi
    as_owner "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$base"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

die() { echo "FAIL: $*"; exit 1; }

# --- the server ---------------------------------------------------------
as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust >/dev/null
cat >> "$data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$base'
fsync = off
max_connections = 30
CONF
as_owner "$bindir/pg_ctl" -D "$data" -l "$base/log" -w start >/dev/null
q() { psql -X -h "$base" -p "$port" -U postgres -d postgres -q -At -v ON_ERROR_STOP=1 -c "$1"; }

q "CREATE EXTENSION credits" >/dev/null
q "CREATE ROLE api LOGIN; GRANT credits_app TO api" >/dev/null
for org in gw a b; do
    q "SELECT org_id FROM credits.create_org('$org', allowance_per_user => 1000)" >/dev/null
    q "SELECT credits.enable_provider('$org', 'openai')" >/dev/null
    q "SELECT count(credits.add_member('$org', 'u' || i)) FROM generate_series(1, 4) i" >/dev/null
done

# --- pgbouncer ------------------------------------------------------------
version=$(pgbouncer --version | sed -n 's/^PgBouncer \([0-9][0-9.]*\).*/\1/p' | head -1)
[ -n "$version" ] || die "cannot read pgbouncer's version"
if printf '%s\n' "1.21" "$version" | sort -V -C; then
    mode=prepared; prepared_conf="max_prepared_statements = 100"
else
    mode=extended; prepared_conf="; max_prepared_statements: not supported before 1.21"
fi
echo "PgBouncer $version: transaction pooling, gateway flow with pgbench -M $mode"
cat > "$base/userlist.txt" <<'USERS'
"postgres" ""
"api" ""
USERS
cat > "$base/pgbouncer.ini" <<INI
[databases]
gw  = host=$base port=$port dbname=postgres pool_size=3
iso = host=$base port=$port dbname=postgres pool_size=1

[pgbouncer]
listen_addr =
listen_port = $bport
unix_socket_dir = $sock
auth_type = trust
auth_file = $base/userlist.txt
admin_users = postgres
pool_mode = transaction
$prepared_conf
max_client_conn = 100
default_pool_size = 1
reserve_pool_size = 0
logfile = $base/pgbouncer.log
pidfile = $base/pgbouncer.pid
INI
[ "$(id -u)" -eq 0 ] && chown postgres "$base/pgbouncer.ini" "$base/userlist.txt"
as_owner pgbouncer -d -q "$base/pgbouncer.ini" || die "pgbouncer did not start: $(tail -5 "$base/pgbouncer.log" 2>/dev/null)"
admin() { psql -X -h "$sock" -p "$bport" -U postgres -d pgbouncer -q -At -F ' ' -c "$1"; }
bouncer_up() { [ -s "$base/pgbouncer.pid" ] && admin "SHOW VERSION" >/dev/null 2>&1; }
wait_until "pgbouncer to accept connections" bouncer_up

# --- the gateway flow through pgbouncer -------------------------------------
cat > "$base/gateway.sql" <<'SQL'
\set u random(1, 4)
\set inp random(100, 4000)
\set outp random(10, 900)
BEGIN;
SET LOCAL credits.org_id = 'gw';
SELECT credits.resolve_model('gw', 'u' || :u, 'gpt-4o') AS model \gset
SELECT hold_id FROM credits.credit_reserve('gw', 'u' || :u, :model, :inp, 1000, 'h-' || txid_current()) \gset
SELECT charged FROM credits.credit_settle(:hold_id, :inp, :outp);
SELECT charged FROM credits.credit_debit('gw', 'u' || :u, :model, :inp, :outp, 'd-' || txid_current());
COMMIT;
SQL
total=$((clients * per_client))
pgbench -n -h "$sock" -p "$bport" -U api -M "$mode" -c "$clients" -j 2 -t "$per_client" \
    -f "$base/gateway.sql" gw > "$base/pgbench.out" 2>&1 \
    || die "pgbench through pgbouncer failed: $(grep -m3 -i 'error\|abort' "$base/pgbench.out")"
processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$base/pgbench.out")
failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$base/pgbench.out")
echo "gateway: $clients clients x $per_client transactions: processed ${processed:-?}, failed ${failed:-?}"
fail=0
[ "$processed" = "$total/$total" ] || [ "$processed" = "$total" ] \
    || { echo "  not every transaction was processed"; fail=1; }
[ "$failed" = 0 ] || { echo "  failed transactions"; fail=1; }
# directly on the server
s=$(q "SELECT count(*) FILTER (WHERE kind = 'hold') || ' ' || count(*) FILTER (WHERE kind = 'settle')
              || ' ' || count(*) FILTER (WHERE kind = 'debit')
              || ' ' || count(DISTINCT request_id) FILTER (WHERE kind IN ('hold', 'debit'))
         FROM credits.ledger WHERE org_id = 'gw'")
holds=$(q "SELECT count(*) FILTER (WHERE status = 'settled') || ' ' || count(*) FROM credits.holds WHERE org_id = 'gw'")
violations=$(q "SELECT count(*) FROM credits.verify()")
echo "  ledger of gw: holds settles debits distinct-request-ids = $s; holds settled/all = $holds; verify() rows = $violations"
[ "$s" = "$total $total $total $((2 * total))" ] || { echo "  the ledger does not hold one hold, settle and debit per transaction"; fail=1; }
[ "$holds" = "$total $total" ] || { echo "  not every hold was settled"; fail=1; }
[ "$violations" = 0 ] || { echo "  verify() found violations:"; q "SELECT * FROM credits.verify()" | head -5; fail=1; }
servers=$(admin "SHOW SERVERS" | awk '$2 == "api" && $3 == "gw"' | wc -l)
echo "  server connections pgbouncer used for gw: $servers (pool_size 3, $clients clients)"
if [ "$servers" -lt 1 ] || [ "$servers" -gt 3 ]; then echo "  expected 1 to 3 server connections"; fail=1; fi

# --- tenant isolation on one pooled server connection -------------------------
# client B: a fresh client of the iso pool; prints its lines, errors as SQLSTATEs
b() { psql -X -h "$sock" -p "$bport" -U api -d iso -q -At -v VERBOSITY=sqlstate "$@" 2>&1 || true; }
# client A: one connection kept open; a() sends SQL and returns its output
coproc client_a { exec psql -X -h "$sock" -p "$bport" -U api -d iso -q -At -v VERBOSITY=sqlstate 2>&1; }
# shellcheck disable=SC2154  # set by coproc
a_pid=$client_a_PID
# own copies of the coprocess' pipes (bash closes its coproc fds in subshells)
exec {a_in}>&"${client_a[1]}" {a_out}<&"${client_a[0]}"
step=0
# a SQL: client A runs SQL; its output is left in $out
a() {
    local line
    out=""
    step=$((step + 1))
    printf '%s\n\\echo @@end-%s\n' "$1" "$step" >&"$a_in"
    while :; do
        IFS= read -r -t "$timeout" line <&"$a_out" || die "client A gave no answer within $timeout s to: $1"
        [ "$line" = "@@end-$step" ] && break
        out+="${out:+$'\n'}$line"
    done
}
expect() {   # LABEL WANT GOT
    local want got
    want=$(printf '%s' "$2" | tr '\n' '|') got=$(printf '%s' "$3" | tr '\n' '|')
    if [ "$2" = "$3" ]; then echo "  ok   $1: $got"
    else echo "  FAIL $1: want '$want', got '$got'"; fail=1; fi
}
rm_pid() { printf '%s\n' "$1" | sed "s/^$pid /PID /"; }
# the server backend and its credits.org_id (missing_ok: a server connection
# that has not loaded the extension's library yet does not know the setting)
status() { echo "SELECT pg_backend_pid() || ' [' || coalesce(current_setting('credits.org_id', true), '') || ']'"; }

echo "isolation: pool_size 1, client A stays connected, client B connects after each step"
a "$(status);"
pid=${out%% *}
[ -n "$pid" ] || die "client A: no backend pid"
a "BEGIN;
SET LOCAL credits.org_id = 'a';
$(status) || ' ' || credits.resolve_model('a', 'u1', 'gpt-4o');
SELECT (credits.credit_debit('a', 'u1', 'gpt-4o', 1000, 100, 'iso-a-1')).charged;
COMMIT;
$(status);"
expect "1. A, SET LOCAL 'a' in a transaction, then after COMMIT" \
    "PID [a] gpt-4o"$'\n'"0.35"$'\n'"PID []" "$(rm_pid "$out")"
out=$(b -c "$(status) || ' ' || credits.resolve_model('b', 'u1', 'gpt-4o')" \
        -c "BEGIN" -c "SET LOCAL credits.org_id = 'b'" \
        -c "SELECT (credits.credit_debit('b', 'u1', 'gpt-4o', 1000, 100, 'iso-b-1')).charged" \
        -c "COMMIT" -c "$(status)")
expect "1. B on the same server connection: not confined to 'a'" \
    "PID [] gpt-4o"$'\n'"0.35"$'\n'"PID []" "$(rm_pid "$out")"

a "BEGIN;
SET LOCAL credits.org_id = 'a';
SELECT credits.resolve_model('b', 'u1', 'gpt-4o');
ROLLBACK;
$(status);"
expect "2. A, SET LOCAL 'a', a call for b, ROLLBACK" "ERROR:  42501"$'\n'"PID []" "$(rm_pid "$out")"
out=$(b -c "$(status) || ' ' || credits.resolve_model('b', 'u1', 'gpt-4o')")
expect "2. B after A's rolled-back transaction: not confined" "PID [] gpt-4o" "$(rm_pid "$out")"

a "SET credits.org_id = 'a';
$(status);"
expect "3. A, plain (session) SET 'a' outside a transaction" "PID [a]" "$(rm_pid "$out")"
out=$(b -c "SHOW credits.org_id" -c "$(status)" -c "SELECT credits.resolve_model('b', 'u1', 'gpt-4o')")
expect "3. B inherits A's session SET on the pooled connection (the leak)" \
    "a"$'\n'"PID [a]"$'\n'"ERROR:  42501" "$(rm_pid "$out")"

a "RESET credits.org_id;
$(status);"
expect "4. A, RESET" "PID []" "$(rm_pid "$out")"
out=$(b -c "$(status) || ' ' || credits.resolve_model('b', 'u1', 'gpt-4o')")
expect "4. B not confined any more" "PID [] gpt-4o" "$(rm_pid "$out")"

printf '\\q\n' >&"$a_in"
wait "$a_pid" 2>/dev/null || true
a_pid=
s=$(q "SELECT string_agg(org_id || ':' || request_id, ' ' ORDER BY org_id) FROM credits.ledger WHERE request_id LIKE 'iso-%'")
expect "ledger entries of the isolation test, on the server" "a:iso-a-1 b:iso-b-1" "$s"
violations=$(q "SELECT count(*) FROM credits.verify()")
expect "verify() after all" "0" "$violations"

[ "$fail" -eq 0 ] && echo "pgbouncer: ok" || echo "pgbouncer: FAILED"
exit "$fail"
