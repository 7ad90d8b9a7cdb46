# test/scripts/lib/common.sh: helpers shared by the scripts that run their
# own private clusters (sourced, not run: scripts/test.sh runs only
# test/scripts/*.sh).

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
