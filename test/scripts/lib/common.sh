# test/scripts/lib/common.sh: helpers shared by the test scripts (sourced,
# not run: scripts/test.sh runs only test/scripts/*.sh).

# Run a command as the cluster's owner: postgres when root, else ourselves.
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# wait_until WHAT COMMAND...: run COMMAND until it succeeds, polling every
# 50 ms, for at most $timeout seconds; then the caller's die() with WHAT.
wait_until() {
    local what=$1; shift
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || die "gave up after $timeout s waiting for $what"
        sleep 0.05
    done
}

# pgbench_clean N OUT: the pgbench run whose output is in OUT processed all
# N transactions and counted none failed (pgbench counts serialization and
# deadlock failures there; any other error aborts its client, and pgbench
# exits non-zero, which the caller checks); else print OUT and exit 1.
pgbench_clean() {
    local n=$1 out=$2
    grep -E "transactions actually processed|number of failed transactions" "$out" | head -2
    grep -qx "number of transactions actually processed: $n/$n" "$out" || {
        echo "pgbench did not process all $n transactions"; cat "$out"; exit 1; }
    grep -qE '^number of failed transactions: 0 ' "$out" || {
        echo "pgbench reported failed transactions (or no count of them)"; cat "$out"; exit 1; }
}

# shards_session NAME: a work directory /tmp/NAME.XXXXXX ($work) for a
# scripts/shards.sh cluster of this script's own ($SHARDS_STATE in it), the
# caller's libpq environment cleared (the router's connection string says
# everything), and a trap that takes the cluster down and removes $work on
# exit, also on failure or interruption.  $here is the repository.
shards_session() {
    work=$(mktemp -d "/tmp/$1.XXXXXX")
    export SHARDS_STATE="$work/shards.current"
    unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGSERVICEFILE PGPASSFILE \
          PGSYSCONFDIR PGOPTIONS
    trap shards_cleanup EXIT
    trap 'exit 130' INT TERM HUP
}
shards_cleanup() {
    if [ -f "$SHARDS_STATE" ]; then bash "$here/scripts/shards.sh" down >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
