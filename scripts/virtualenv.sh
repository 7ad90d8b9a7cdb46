# scripts/virtualenv.sh: sourced by test.sh, demo.sh and bench/run.sh.
#
#   in_virtualenv SCRIPT [pg_virtualenv options...] -- [SCRIPT args...]
#
# Unless already inside one, re-executes SCRIPT under pg_virtualenv: a
# throwaway cluster of the server PG_CONFIG names, removed afterwards.  As
# root pg_virtualenv always names its cluster "regress"; one left behind by a
# killed run is removed first.
PG_CONFIG=${PG_CONFIG:-pg_config}
PGVER=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')

in_virtualenv() {
    local script=$1 opts=()
    shift
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    [ -n "${CREDITS_IN_VENV:-}" ] && return 0
    if [ "$(id -u)" -eq 0 ] && [ -d "/etc/postgresql/$PGVER/regress" ]; then
        pg_dropcluster --stop "$PGVER" regress 2>/dev/null || true
        rm -rf "/etc/postgresql/$PGVER/regress"
    fi
    exec pg_virtualenv -v "$PGVER" "${opts[@]}" \
        env CREDITS_IN_VENV=1 PG_CONFIG="$PG_CONFIG" bash "$script" "$@"
}
