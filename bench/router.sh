#!/usr/bin/env bash
# bench/router.sh: the cost of the PL/Proxy router (credits_router), on this
# machine.  Run as `bash bench/router.sh` (credits and credits_router
# installed, postgresql-15-plproxy); it uses scripts/shards.sh for its
# clusters and removes them at the end, whatever happens.
#
#   1. scripts/shards.sh up 1: a router and one shard server holding 2
#      partitions, plus a database `single` on that same server with
#      CREATE EXTENSION credits: the single node;
#   2. scripts/shards.sh up 2: a router and two shard servers, 4 partitions;
#   3. scripts/shards.sh up 4: a router and four shard servers, 8 partitions.
#
# Every cluster gets make bench's settings (bench/run.sh): fsync,
# synchronous_commit and full_page_writes on, shared_buffers 512MB,
# checkpoint_timeout 30min, max_wal_size 4GB, and max_connections 200 (each
# router backend keeps one connection per partition it called: 32 clients
# over 2 partitions of a server are 64 of its connections).  The data set is
# debit_spread's (bench/setup.sql): 1,000 orgs of 10 members, openai and
# anthropic enabled, loaded into the single node and, through each org's
# partition (hashtext(org_id) & (partitions - 1), checked through the
# router), into the shards.
#
# Scenarios, each for BENCH_SECONDS (10) at BENCH_CLIENTS (1 8 32) clients,
# pgbench -M prepared -j 2, vacuumed before each run: bench/scenarios/
# debit_spread.sql, resolve_model.sql and allowed_models.sql, against
# `single` and against the router with 1, 2 and 4 shard servers.  Prints a
# table of TPS, p50 and p99 latency, and the ratio router/single-node TPS,
# and writes it to bench/results/bench-router-<time>.csv (not kept in git).
#
# Everything runs on the same machine: the router's backends, the shards'
# backends and pgbench share its cores (2 here), so this measures what the
# router costs in CPU and latency, not what N machines would do.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/test/scripts/lib/common.sh"   # as_owner, shards_session
bindir=$("${PG_CONFIG:-pg_config}" --bindir)
export PATH="$bindir:$PATH"
seconds=${BENCH_SECONDS:-10}
clients=${BENCH_CLIENTS:-1 8 32}
scenarios=${BENCH_ROUTER_SCENARIOS:-debit_spread resolve_model allowed_models}
shards_session credits_bench_router
die() { echo "bench/router.sh: $*" >&2; exit 1; }
say() { echo "$*" >&2; }

# up N: a cluster with make bench's settings; sets base, router, port_sN
up() {
    bash "$here/scripts/shards.sh" up "$1" > "$work/up.out" 2>&1 || die "shards.sh up $1 failed: $(cat "$work/up.out")"
    router=$(tail -1 "$work/up.out")
    base=$(cat "$SHARDS_STATE")
    local name d port
    while IFS='=' read -r name port; do
        name=${name#port_}
        d="$base/$name"
        psql -X -q -h "$base" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
            -c "ALTER SYSTEM SET fsync = on" -c "ALTER SYSTEM SET synchronous_commit = on" \
            -c "ALTER SYSTEM SET full_page_writes = on" -c "ALTER SYSTEM SET shared_buffers = '512MB'" \
            -c "ALTER SYSTEM SET max_connections = 200" -c "ALTER SYSTEM SET checkpoint_timeout = '30min'" \
            -c "ALTER SYSTEM SET max_wal_size = '4GB'" >/dev/null
        as_owner "$bindir/pg_ctl" -D "$d" -l "$base/$name.log" -m fast -w restart >/dev/null
        printf -v "port_$name" '%s' "$port"
    done < <(grep '^port_' "$base/state")
}
down() { bash "$here/scripts/shards.sh" down >/dev/null; }
R() { psql -X -q -At -v ON_ERROR_STOP=1 "$router" -c "$1"; }
# PARTS K SQL: on partition K's database
P() {
    local srv port
    srv=$(sed -n "s/^partition_$1=//p" "$base/state")
    port=$(sed -n "s/^port_$srv=//p" "$base/state")
    psql -X -q -At -v ON_ERROR_STOP=1 -h "$base" -p "$port" -U postgres -d "credits_p$1" -c "$2"
}

# load SQL-CONNINFO WHERE: debit_spread's orgs (those WHERE keeps) into a database
dataset() {
    psql -X -q -At -v ON_ERROR_STOP=1 "$1" -o /dev/null <<SQL
SELECT count(*) FROM (SELECT credits.create_org(o, allowance_per_user => 1000000)
                        FROM (SELECT 'org' || i AS o FROM generate_series(1, 1000) i) x WHERE $2) s;
INSERT INTO credits.org_providers SELECT org_id, p FROM credits.orgs, unnest(ARRAY['openai', 'anthropic']) p;
INSERT INTO credits.members (org_id, user_id) SELECT org_id, 'u' || j FROM credits.orgs, generate_series(1, 10) j;
VACUUM ANALYZE;
SQL
}
# load_shards: the data set into every partition, each org on its own
load_shards() {
    local n k
    n=$(R "SELECT credits_router.partition_count()")
    for ((k = 0; k < n; k++)); do
        srv=$(sed -n "s/^partition_$k=//p" "$base/state")
        port=$(sed -n "s/^port_$srv=//p" "$base/state")
        dataset "host=$base port=$port dbname=credits_p$k user=postgres" "hashtext(o) & $((n - 1)) = $k"
    done
    # through the router: 1,000 orgs, each on the partition the router routes it to
    [ "$(R "SELECT count(*) FROM credits.pool_status")" = 1000 ] || die "the router does not see the 1,000 orgs"
    for ((k = 0; k < n; k++)); do
        bad=$(P "$k" "SELECT count(*) FROM credits.orgs WHERE hashtext(org_id) & $((n - 1)) <> $k")
        [ "$bad" = 0 ] || die "partition $k holds orgs of another partition"
    done
    [ "$(R "SELECT count(*) FROM generate_series(1, 1000) i WHERE (SELECT count(*) FROM credits_router.pool_status('org' || i)) <> 1")" = 0 ] ||
        die "an org is not found on the partition the router routes it to"
}

# run LABEL CONNINFO SCENARIO CLIENTS VACUUM_CMD -> "tps p50 p99"
run() {
    local conn=$1 scenario=$2 c=$3 j=2 tps
    [ "$c" -lt 2 ] && j=1
    rm -f "$work"/log*
    pgbench -n -M prepared -c "$c" -j "$j" -T "$seconds" -l --log-prefix="$work/log" \
        -f "$here/bench/scenarios/$scenario.sql" "$conn" > "$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }
    grep -q "number of failed transactions: 0 " "$work/out" || { cat "$work/out" >&2; return 1; }
    tps=$(sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\)/\1/p' "$work/out")
    [ -n "$tps" ] || { cat "$work/out" >&2; return 1; }
    cat "$work"/log* | awk '{print $3}' | sort -n > "$work/lat"
    local n p50 p99
    n=$(wc -l < "$work/lat")
    p50=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {printf "%.2f", $1 / 1000; exit}' "$work/lat")
    p99=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {printf "%.2f", $1 / 1000; exit}' "$work/lat")
    echo "$tps $p50 $p99"
}

# vacuum every database that holds credits data of this setup
vacuum_all() {
    local name port db
    while IFS='=' read -r name port; do
        [ "$name" = port_router ] && continue
        for db in $(psql -X -At -h "$base" -p "$port" -U postgres -d postgres \
                        -c "SELECT datname FROM pg_database WHERE datname LIKE 'credits_p%' OR datname = 'single'"); do
            psql -X -q -h "$base" -p "$port" -U postgres -d "$db" -c "VACUUM" >/dev/null
        done
    done < <(grep '^port_' "$base/state")
}

declare -A TPS
csv="$work/results.csv"
echo "setup,scenario,clients,tps,p50_ms,p99_ms" > "$csv"
bench_setup() {   # bench_setup LABEL CONNINFO
    local label=$1 conn=$2 s c result tps p50 p99
    for s in $scenarios; do
        for c in $clients; do
            vacuum_all
            result=$(run "$conn" "$s" "$c") || die "$label $s with $c clients failed"
            read -r tps p50 p99 <<< "$result"
            TPS[$label/$s/$c]=$tps
            echo "$label,$s,$c,$tps,$p50,$p99" >> "$csv"
            printf '  %-8s %-15s %3s clients %9s tps  p50 %6s ms  p99 %7s ms\n' "$label" "$s" "$c" "$tps" "$p50" "$p99" >&2
        done
    done
}

# 1. one shard server (2 partitions) and the single node on the same server
say "router over 1 shard server (2 partitions), and a single node on that server"
up 1
psql -X -q -h "$base" -p "$port_s0" -U postgres -d postgres -c "CREATE DATABASE single" >/dev/null
single="host=$base port=$port_s0 dbname=single user=postgres"
psql -X -q "$single" -c "CREATE EXTENSION credits" >/dev/null
dataset "$single" "true"
load_shards
bench_setup single "$single"
bench_setup router1 "$router"
verify1=$(R "SELECT count(*) FROM credits.verify()")
verify0=$(psql -X -At "$single" -c "SELECT count(*) FROM credits.verify()")
version=$(psql -X -At "$single" -c "SHOW server_version")
durable=$(psql -X -At "$single" -c "SELECT current_setting('fsync') || '/' || current_setting('synchronous_commit')")
down

# 2. two shard servers (4 partitions)
say "router over 2 shard servers (4 partitions)"
up 2
load_shards
bench_setup router2 "$router"
verify2=$(R "SELECT count(*) FROM credits.verify()")
down

# 3. four shard servers (8 partitions)
say "router over 4 shard servers (8 partitions)"
up 4
load_shards
bench_setup router4 "$router"
verify4=$(R "SELECT count(*) FROM credits.verify()")
down

table="$work/table"
{
    printf '| scenario | clients | single node TPS | p50 / p99 ms | router, 1 shard server: TPS | p50 / p99 ms | ratio | router, 2 shard servers: TPS | p50 / p99 ms | ratio | router, 4 shard servers: TPS | p50 / p99 ms | ratio |\n'
    printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
    for s in $scenarios; do
        for c in $clients; do
            row="| $s | $c"
            for label in single router1 router2 router4; do
                line=$(grep "^$label,$s,$c," "$csv")
                IFS=',' read -r _ _ _ tps p50 p99 <<< "$line"
                row+=" | $(printf '%.0f' "$tps") | $p50 / $p99"
                [ "$label" = single ] ||
                    row+=" | $(awk -v a="$tps" -v b="${TPS[single/$s/$c]}" 'BEGIN { printf "%.2f", a / b }')"
            done
            echo "$row |"
        done
    done
} > "$table"
cat "$table"
echo
echo "ratio: router TPS / single-node TPS, same scenario and clients"
echo "verify() violations after the runs: single $verify0, router over 1 server $verify1, over 2 servers $verify2, over 4 servers $verify4"
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, PostgreSQL $version, fsync/synchronous_commit $durable, ${seconds}s per run; router, shards and pgbench on the same cores"
mkdir -p "$here/bench/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
cp "$csv" "$here/bench/results/bench-router-$stamp.csv"
echo "written: bench/results/bench-router-$stamp.csv"
[ "$verify0$verify1$verify2$verify4" = 0000 ] || die "verify() found violations"
