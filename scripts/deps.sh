#!/usr/bin/env bash
# Installs what `make test` / `make demo` (and test/scripts/pgbouncer.sh,
# metrics.sh and gateway.sh) need on Debian 12 with its stock PostgreSQL 15,
# when it is missing. Runs `apt-get update` at most once.
set -euo pipefail

PGVER=${PGVER:-15}
need=()
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

for p in "postgresql-$PGVER" "postgresql-server-dev-$PGVER" "postgresql-$PGVER-pgtap" \
         libtap-parser-sourcehandler-pgtap-perl "postgresql-$PGVER-cron" libipc-run-perl \
         postgresql-common make gcc pgbouncer prometheus-postgres-exporter \
         nodejs chromium "postgresql-$PGVER-plproxy"; do
    pkg_ok "$p" || need+=("$p")
done
# examples/gateway (test/scripts/gateway.sh): Debian packages npm apart from
# nodejs; a nodejs that bundles npm (NodeSource's) conflicts with it
command -v npm >/dev/null || pkg_ok npm || need+=(npm)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]}" >&2
    echo "install them (sudo apt-get install ${need[*]}) or run as root" >&2
    exit 1
fi

echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${need[@]}"
