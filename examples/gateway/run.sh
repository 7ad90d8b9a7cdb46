#!/usr/bin/env bash
# Start the credits reference gateway in the foreground.
#
#   DATABASE_URL=postgresql://gateway:secret@127.0.0.1/mydb bash examples/gateway/run.sh
#
# Installs the npm dependencies first (npm ci, from the committed
# package-lock.json) when node_modules is missing or was installed from
# another lock file.  PORT (default 8080) and HOST (default 127.0.0.1) choose
# where it listens; see README.md beside this file.
set -euo pipefail
cd "$(dirname "$0")"

command -v node >/dev/null || { echo "node is missing (apt-get install nodejs)" >&2; exit 1; }
if [ -z "${DATABASE_URL:-}" ]; then
    echo "DATABASE_URL is not set (a login granted credits_app and credits_reader)" >&2
    exit 2
fi

lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -d node_modules ] || [ "$(cat node_modules/.credits-lock-sum 2>/dev/null)" != "$lock_sum" ]; then
    command -v npm >/dev/null || { echo "npm is missing (apt-get install npm)" >&2; exit 1; }
    echo "installing dependencies (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$lock_sum" > node_modules/.credits-lock-sum
fi

exec node server.js
