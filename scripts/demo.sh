#!/usr/bin/env bash
# scripts/demo.sh: the seed scenario end to end in a throwaway cluster.
# `make demo` calls this after building and installing the extension.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
PGVER=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')

if [ -z "${CREDITS_IN_VENV:-}" ]; then
    if [ "$(id -u)" -eq 0 ] && [ -d "/etc/postgresql/$PGVER/regress" ]; then
        pg_dropcluster --stop "$PGVER" regress 2>/dev/null || true
        rm -rf "/etc/postgresql/$PGVER/regress"
    fi
    exec pg_virtualenv -v "$PGVER" env CREDITS_IN_VENV=1 PG_CONFIG="$PG_CONFIG" bash "$0" "$@"
fi

psql -X -q -v ON_ERROR_STOP=1 -f "$here/scripts/demo.sql"
