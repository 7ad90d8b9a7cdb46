#!/usr/bin/env bash
# scripts/demo.sh: the seed scenario end to end in a throwaway cluster.
# `make demo` calls this after building and installing the extension.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/virtualenv.sh"
in_virtualenv "$0" -- "$@"

psql -X -q -v ON_ERROR_STOP=1 -f "$here/scripts/demo.sql"
