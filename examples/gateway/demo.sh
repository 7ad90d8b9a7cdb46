#!/usr/bin/env bash
# Try the gateway in one command, with nothing to set up:
#
#   bash examples/gateway/demo.sh
#
# Starts a throwaway PostgreSQL cluster (temp dir, unix socket only) with the
# installed credits extension, an org "acme" (members alice and bob, 0.5
# credits each, openai and anthropic enabled) and a login "gateway" granted
# credits_app and credits_reader, then runs the gateway in the foreground on
# PORT (default 8080).  Ctrl-C stops it and removes the cluster.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bindir=$("${PG_CONFIG:-pg_config}" --bindir)
export PORT=${PORT:-8080}
base=$(mktemp -d /tmp/credits_gateway_demo.XXXXXX)
data="$base/data"
pgport=$((20000 + RANDOM % 10000))   # unix socket only
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$base"
chmod 755 "$base"
cleanup() {
    as_owner "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$base"
}
trap cleanup EXIT

as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust >/dev/null
cat >> "$data/postgresql.conf" <<CONF
port = $pgport
listen_addresses = ''
unix_socket_directories = '$base'
CONF
as_owner "$bindir/pg_ctl" -D "$data" -l "$base/log" -w start >/dev/null
psql -X -h "$base" -p "$pgport" -U postgres -d postgres -q -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE EXTENSION credits;
CREATE ROLE gateway LOGIN;
GRANT credits_app, credits_reader TO gateway;
SELECT credits.create_org('acme', 'Acme Inc', allowance_per_user => '0.15');
SELECT credits.enable_provider('acme', 'openai'), credits.enable_provider('acme', 'anthropic');
SELECT credits.add_member('acme', 'alice'), credits.add_member('acme', 'bob');
SQL

cat <<EOF
credits gateway demo (the cluster is removed when you stop it with Ctrl-C)

  switcher:  http://127.0.0.1:$PORT/?org=acme&user=alice
  models:    curl -s -H 'X-Org-Id: acme' -H 'X-User-Id: alice' http://127.0.0.1:$PORT/v1/models
  call:      curl -si -H 'X-Org-Id: acme' -H 'X-User-Id: alice' http://127.0.0.1:$PORT/v1/chat/completions \\
               -d '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}'
  run dry:   curl -si -H 'X-Org-Id: acme' -H 'X-User-Id: alice' http://127.0.0.1:$PORT/v1/chat/completions \\
               -d "{\\"model\\": \\"gpt-4o\\", \\"messages\\": [{\\"role\\": \\"user\\", \\"content\\": \\"\$(head -c 100000 /dev/zero | tr '\\0' x)\\"}]}"
  recharge:  psql -h $base -p $pgport -U postgres -c "SELECT available FROM credits.recharge('acme')"

EOF
env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE -u PGPASSWORD \
    DATABASE_URL="postgresql://gateway@/postgres?host=$base&port=$pgport" \
    bash "$here/run.sh" &
gw=$!
trap 'kill "$gw" 2>/dev/null || true; wait "$gw" 2>/dev/null || true; cleanup' EXIT
trap 'exit 0' INT TERM
wait "$gw"
