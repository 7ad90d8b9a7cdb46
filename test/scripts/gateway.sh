#!/usr/bin/env bash
# The reference gateway (examples/gateway) end to end: its HTTP API and its
# live model switcher in a real browser.
#
# A private cluster (unix socket in a temp dir, no TCP) gets the extension
# and a login "gateway" granted credits_app and credits_reader, as the
# gateway's README says.  The gateway starts with examples/gateway/run.sh
# (npm ci when node_modules is missing or stale) on 127.0.0.1, on a port the
# kernel picks (PORT=0; the port is read from its first log line).  Then:
#   examples/gateway/test/http.js     every endpoint over HTTP, each answer
#                                     checked against the ledger, holds and
#                                     pool_status (superuser connection)
#   examples/gateway/test/browser.js  headless Chromium (puppeteer-core): two
#                                     open switchers gray the premium models
#                                     within a second of the debit that
#                                     exhausts the pool, and bring them back
#                                     on recharge; screenshots in $out
# Screenshots go to results/gateway/ (or $GATEWAY_OUT).  Nothing waits a
# fixed time: every wait is for progress, bounded (60 s), so the test fails
# rather than hangs.  Needs nodejs, npm and chromium (scripts/deps.sh), and
# the npm registry for the first npm ci.
# shellcheck disable=SC2317  # functions called through trap and wait_until
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
gw="$root/examples/gateway"
out=${GATEWAY_OUT:-$root/results/gateway}
for cmd in node npm chromium curl; do
    command -v "$cmd" >/dev/null || { echo "FAIL: $cmd is missing (bash scripts/deps.sh installs it)"; exit 1; }
done

bindir=$("${PG_CONFIG:-pg_config}" --bindir)
base=$(mktemp -d /tmp/credits_gateway.XXXXXX)
port=$((20000 + RANDOM % 10000))   # the server's unix socket only: no TCP
data="$base/data"
# shellcheck disable=SC2034  # read by wait_until
timeout=60
# shellcheck source=test/scripts/lib/common.sh
. "$here/lib/common.sh"   # as_owner, wait_until
[ "$(id -u)" -eq 0 ] && chown postgres "$base"
chmod 755 "$base"

gw_pid=
cleanup() {
    if [ -n "$gw_pid" ]; then
        kill "$gw_pid" 2>/dev/null || true
        wait "$gw_pid" 2>/dev/null || true
    fi
    as_owner "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$base"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
die() { echo "FAIL: $*"; exit 1; }

as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust >/dev/null
cat >> "$data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$base'
fsync = off
CONF
as_owner "$bindir/pg_ctl" -D "$data" -l "$base/log" -w start >/dev/null
psql -X -h "$base" -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION credits;
CREATE ROLE gateway LOGIN;
GRANT credits_app, credits_reader TO gateway;
SQL

# node and the gateway get no libpq environment (pg_virtualenv sets PG*):
# their URLs say everything
pg_env=()
while IFS='=' read -r name _; do
    case "$name" in PG*) pg_env+=(-u "$name") ;; esac
done < <(env)
gateway_db="postgresql://gateway@/postgres?host=$base&port=$port"
admin_db="postgresql://postgres@/postgres?host=$base&port=$port"

env "${pg_env[@]}" PORT=0 HOST=127.0.0.1 DATABASE_URL="$gateway_db" \
    bash "$gw/run.sh" >"$base/gateway.log" 2>&1 &
gw_pid=$!
listening() {
    kill -0 "$gw_pid" 2>/dev/null || die "the gateway ended: $(tail -20 "$base/gateway.log")"
    grep -q '^credits gateway listening on ' "$base/gateway.log"
}
wait_until "the gateway to listen" listening
url=$(sed -nE 's|^credits gateway listening on (http://[^ ]+)/$|\1|p' "$base/gateway.log" | head -1)
[ -n "$url" ] || die "no URL in the gateway's log: $(cat "$base/gateway.log")"
# the LISTEN connection is up (events are not lost after this)
live() { curl -sf --max-time 5 "$url/healthz" | grep -q '"listening":true'; }
wait_until "the gateway's LISTEN connection" live
echo "gateway at $url"

mkdir -p "$out"
rc=0
env "${pg_env[@]}" GATEWAY_URL="$url" ADMIN_DATABASE_URL="$admin_db" \
    node "$gw/test/http.js" || rc=1
env "${pg_env[@]}" GATEWAY_URL="$url" ADMIN_DATABASE_URL="$admin_db" GATEWAY_OUT="$out" \
    node "$gw/test/browser.js" || rc=1
kill -0 "$gw_pid" 2>/dev/null || { echo "FAIL: the gateway died: $(tail -20 "$base/gateway.log")"; rc=1; }
if grep -q 'Error' "$base/gateway.log"; then
    echo "FAIL: the gateway logged errors:"; grep -B2 -A5 'Error' "$base/gateway.log" | head -40; rc=1
fi
[ "$rc" -eq 0 ] && echo "gateway: all passed (screenshots in $out)"
exit "$rc"
