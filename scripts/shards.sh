#!/usr/bin/env bash
# scripts/shards.sh: a throwaway credits cluster on this machine, for tests
# and trials of credits_router (README "Scale-out with PL/Proxy").
#
#   scripts/shards.sh up N [PARTITIONS]   start a router and N shard servers
#   scripts/shards.sh down [BASE]         stop and remove everything `up` made
#
# `up` makes a temporary directory BASE (mktemp), and in it one PostgreSQL
# cluster per server (initdb; run as postgres when root), each listening on
# a unix socket in BASE only (no TCP), fsync off:
#   - shard servers s0..s(N-1): PARTITIONS databases credits_p0 ... in all
#     (a power of two, default the smallest one >= 2N), partition k on server
#     k mod N, each with CREATE EXTENSION credits; a login role
#     credits_router (member of credits_admin and credits_reader) that the
#     router connects as;
#   - the router: database `router` with CREATE EXTENSION plproxy,
#     credits_router, the cluster as SQL/MED (SERVER credits_cluster, one
#     option pK per partition) and a user mapping.
# It prints the router's libpq connection string as its LAST line, and
# writes the state (BASE, ports, data directories) to BASE/state; the path
# of BASE goes to $SHARDS_STATE (default ${TMPDIR:-/tmp}/credits_shards.current)
# so that `down` without an argument finds it.  A failed `up` removes what
# it started.  Requires credits and credits_router installed (make install)
# and postgresql-15-plproxy.
#
# Environment: PG_CONFIG (server to use), SHARDS_STATE (see above),
# KEEP=1 (down keeps BASE, with the logs).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/test/scripts/lib/common.sh"   # as_owner, wait_until
bindir=$("${PG_CONFIG:-pg_config}" --bindir)
state_ptr=${SHARDS_STATE:-${TMPDIR:-/tmp}/credits_shards.current}
timeout=60

die() { echo "shards.sh: $*" >&2; exit 1; }
usage() { die "usage: shards.sh up N [PARTITIONS] | down [BASE]"; }

# every libpq variable a caller's environment may carry (pg_virtualenv sets
# several) is ignored: connections name their socket, port, user, database
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGSERVICEFILE PGPASSFILE PGSYSCONFDIR PGOPTIONS

# stop_all BASE: stop every cluster listed in BASE/state, remove BASE
stop_all() {
    local base=$1 d
    [ -d "$base" ] || return 0
    if [ -f "$base/state" ]; then
        while read -r d; do
            [ -n "$d" ] && [ -f "$d/postmaster.pid" ] &&
                as_owner "$bindir/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
        done < <(sed -n 's/^datadir=//p' "$base/state")
    fi
    if [ -z "${KEEP:-}" ]; then rm -rf "$base"; else echo "kept $base" >&2; fi
}

cmd_down() {
    local base=${1:-}
    if [ -z "$base" ]; then
        [ -f "$state_ptr" ] || die "nothing to stop ($state_ptr does not exist)"
        base=$(cat "$state_ptr")
    fi
    [ -f "$base/state" ] || die "$base is not a shards.sh directory"
    stop_all "$base"
    if [ -f "$state_ptr" ] && [ "$(cat "$state_ptr")" = "$base" ]; then rm -f "$state_ptr"; fi
}

cmd_up() {
    local n=${1:-} parts=${2:-} i k port
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || usage
    if [ -z "$parts" ]; then parts=1; while [ "$parts" -lt $((2 * n)) ]; do parts=$((parts * 2)); done; fi
    [[ "$parts" =~ ^[1-9][0-9]*$ ]] && [ $((parts & (parts - 1))) -eq 0 ] && [ "$parts" -le 1024 ] ||
        die "PARTITIONS must be a power of two from 1 to 1024 (hold ids carry it in 10 bits)"
    [ "$parts" -ge "$n" ] || die "fewer partitions ($parts) than servers ($n)"
    # one cluster set per state pointer: a second `up` would orphan the first
    # (`down` finds only the last one)
    if [ -f "$state_ptr" ] && [ -f "$(cat "$state_ptr")/state" ]; then
        die "already up in $(cat "$state_ptr"): run shards.sh down first, or set SHARDS_STATE"
    fi

    base=$(mktemp -d "${TMPDIR:-/tmp}/credits_shards.XXXXXX")
    chmod 755 "$base"
    [ "$(id -u)" -eq 0 ] && chown postgres "$base"
    # from here on a failure removes what was started
    trap 'rc=$?; if [ $rc -ne 0 ]; then echo "shards.sh: up failed, removing $base" >&2; stop_all "$base"; fi' EXIT
    echo "base=$base" > "$base/state"

    # unix sockets only, in $base, which is ours alone (mktemp): a port
    # number here cannot collide with another server's socket or lock file
    # (both live in the socket directory), so picking one is free of races;
    # the lock-file check only keeps our own clusters apart.  (The SysV
    # shared memory key derived from the port is probed by the postmaster
    # itself, which skips a key in use.)
    port=$((20000 + RANDOM % 20000))
    new_cluster() {   # new_cluster NAME: initdb + start on the next port; sets $port_of_NAME
        local name=$1 d="$base/$1"
        while [ -e "$base/.s.PGSQL.$port.lock" ]; do port=$((port + 1)); done
        as_owner "$bindir/initdb" -D "$d" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
        # max_connections: every router backend keeps a connection to each
        # partition it called, so 32 router clients over 2 partitions of a
        # server are 64 connections there
        cat >> "$d/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$base'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 16MB
CONF
        echo "datadir=$d" >> "$base/state"
        echo "port_$name=$port" >> "$base/state"
        as_owner "$bindir/pg_ctl" -D "$d" -l "$base/$name.log" -w start >/dev/null
        printf -v "port_of_$name" '%s' "$port"
        port=$((port + 1))
    }
    q() {   # q PORT DB SQL
        psql -X -q -At -v ON_ERROR_STOP=1 -h "$base" -p "$1" -U postgres -d "$2" -c "$3"
    }

    for ((i = 0; i < n; i++)); do new_cluster "s$i"; done
    new_cluster router

    # the shards: one database per partition
    for ((i = 0; i < n; i++)); do
        local var="port_of_s$i"
        q "${!var}" postgres "CREATE ROLE credits_router LOGIN" >/dev/null
    done
    local opts=""
    for ((k = 0; k < parts; k++)); do
        i=$((k % n))
        local var="port_of_s$i"
        local sport=${!var}
        q "$sport" postgres "CREATE DATABASE credits_p$k" >/dev/null
        q "$sport" "credits_p$k" "CREATE EXTENSION credits" >/dev/null
        echo "partition_$k=s$i" >> "$base/state"
        opts+="${opts:+, }p$k 'host=$base port=$sport dbname=credits_p$k connect_timeout=2'"
    done
    for ((i = 0; i < n; i++)); do
        local var="port_of_s$i"
        q "${!var}" postgres "GRANT credits_admin, credits_reader TO credits_router;
                              ALTER ROLE credits_router SET DateStyle = 'ISO, MDY';
                              ALTER ROLE credits_router SET IntervalStyle = 'postgres'" >/dev/null
    done

    # the router
    q "$port_of_router" postgres "CREATE DATABASE router" >/dev/null
    q "$port_of_router" router "CREATE EXTENSION plproxy;
        CREATE EXTENSION credits_router;
        CREATE SERVER credits_cluster FOREIGN DATA WRAPPER plproxy OPTIONS ($opts);
        CREATE USER MAPPING FOR PUBLIC SERVER credits_cluster OPTIONS (user 'credits_router')" >/dev/null
    local bad
    bad=$(q "$port_of_router" router "SELECT count(*) FROM credits_router.check_partitions() WHERE problem IS NOT NULL")
    [ "$bad" = 0 ] || die "check_partitions() reports problems: $(q "$port_of_router" router "SELECT * FROM credits_router.check_partitions()")"

    echo "$base" > "$state_ptr"
    trap - EXIT
    echo "router: $base/router (log $base/router.log); shards: $n servers, $parts partitions"
    echo "host=$base port=$port_of_router dbname=router user=postgres"
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    *) usage ;;
esac
