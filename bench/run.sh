#!/usr/bin/env bash
# bench/run.sh: the benchmarks of credits (make bench).
#
# Starts a throwaway cluster with durability on (fsync, synchronous_commit),
# loads the extension, the naive PL/pgSQL baseline (bench/naive.sql) and a
# data set (bench/setup.sql), and runs each scenario of bench/scenarios for a
# fixed time at 1, 8 and 32 clients (pgbench -j 2, prepared statements, as
# an application driver sends them; the connect_* scenarios open a new
# connection for every transaction, pgbench -C).  Prints a table of TPS,
# p50/p99 latency, the ratio to the scenario's floor (measured in the same
# run) and to the naive baseline, and writes it as CSV to bench/results/.
#
#   BENCH_SECONDS   seconds measured per run (default 6)
#   BENCH_ROUNDS    rounds of a scenario with a floor (default 3): each a run
#                   of the floor and one of the scenario, at the same client
#                   count, in alternating order; the ratio is the rounds'
#                   median
#   BENCH_WARMUP    seconds run before those on the same connections, per
#                   8 clients (default 5: 5 s at 1 and 8 clients, 20 s at
#                   32): each backend's caches (the configuration,
#                   relations, plans) fill up first, as in an application's
#                   long-lived connections, and a backend of 32 clients
#                   makes a quarter of the calls one of 8 makes in the same
#                   time; the whole run's TPS, warm-up included, is
#                   reported too (the connect_* scenarios, whose every call
#                   is a new connection's, warm up BENCH_WARMUP seconds)
#   BENCH_CLIENTS   client counts (default "1 8 32")
#   BENCH_CONNECT_CLIENTS  client counts of the connect_* scenarios (default
#                   BENCH_CLIENTS; each client holds one connection at a time)
#   BENCH_ONLY      run only these scenarios (and their floors and baselines)
#   BENCH_MIXED     1: each scenario with a floor (but the connect_* ones)
#                   also runs once mixed with its floor at each client
#                   count: every client picks one of the two at random for
#                   each transaction, and the ratio is of their mean
#                   latencies (default 0)
#   BENCH_PRELOAD   1 (default): the server preloads the library
#                   (shared_preload_libraries = credits, as the README
#                   recommends); 0: each new connection loads it on its first
#                   call (what the connect_* scenarios then also measure)
#   --smoke         a few transactions per scenario against the current
#                   server ($PGHOST...), to keep the scripts working (make test)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
smoke=false
[ "${1:-}" = "--smoke" ] && smoke=true
. "$here/../scripts/virtualenv.sh"
preload=()
[ "${BENCH_PRELOAD:-1}" = 0 ] || preload=(-o shared_preload_libraries=credits)
$smoke || in_virtualenv "$0" "${preload[@]}" \
    -o fsync=on -o synchronous_commit=on -o full_page_writes=on \
    -o shared_buffers=512MB -o max_connections=100 \
    -o checkpoint_timeout=30min -o max_wal_size=4GB \
    -- "$@"

export PATH="$("$PG_CONFIG" --bindir):$PATH"
seconds=${BENCH_SECONDS:-6}
rounds=${BENCH_ROUNDS:-3}
mixed_runs=${BENCH_MIXED:-0}
warmup=${BENCH_WARMUP:-5}
clients=${BENCH_CLIENTS:-1 8 32}
connect_clients=${BENCH_CONNECT_CLIENTS:-$clients}
db=credits_bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }

dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
q "CREATE EXTENSION credits" >/dev/null
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$db" -f "$here/naive.sql"
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$db" -f "$here/setup.sql"
pgbench -i -q -s 10 "$db" >/dev/null 2>&1

# scenario|floor scenario|naive counterpart
scenarios="select1||
update_hot||
update_spread||
writes_spread||
read_rows||
read_row||
tpcb||
debit_spread|writes_spread|naive_spread
debit_hot|update_hot|naive_hot
debit_team|debit_hot|naive_hot
debit_dry|update_hot|naive_dry
allowed_models|read_rows|
resolve_model|read_row|
reserve_settle|update_spread|
naive_spread|update_spread|
naive_hot|update_hot|
naive_dry|update_hot|
connect_select1||
connect_debit|connect_select1|
connect_allowed_models|connect_select1|
connect_resolve_model|connect_select1|
connect_cost|connect_select1|
connect_pool_status|connect_select1|"

if $smoke; then
    seconds=0
    clients=2
    connect_clients=2
fi
if [ -n "${BENCH_ONLY:-}" ]; then
    keep=" $BENCH_ONLY "
    while IFS='|' read -r name floor naive; do
        case "$keep" in *" $name "*) keep="$keep $floor $naive " ;; esac
    done <<< "$scenarios"
    scenarios=$(while IFS='|' read -r name floor naive; do
        case "$keep" in *" $name "*) echo "$name|$floor|$naive" ;; esac
    done <<< "$scenarios")
fi

# run NAME CLIENTS -> "tps p50 p99 whole_run_tps": tps, p50 and p99 over the
# transactions that ended after the warm-up
# prepare NAME: what every run of scenario NAME starts from
prepare() {
    # the exhaustion scenarios start from a full pool each time
    case "$1" in
        debit_dry) q "SELECT credits.recharge('dry')" >/dev/null ;;
        naive_dry) q "UPDATE naive.balances SET available = 2000 WHERE org_id = 'dry';
                      UPDATE naive.members SET used = 0 WHERE org_id = 'dry'" >/dev/null ;;
    esac
    rm -f "$work"/log*
    # as pgbench does before a run: vacuum, so that an autovacuum of what the
    # scenario before wrote does not run during this one
    $smoke || q "VACUUM" >/dev/null
}

# the warm-up of NAME at C clients, in seconds
warmup_of() {
    case "$1" in connect_*) echo "$warmup" ;; *) echo $((warmup * (($2 + 7) / 8))) ;; esac
}

run() {
    local name=$1 c=$2 j=2 args warm
    [ "$c" -lt 2 ] && j=1
    warm=$(warmup_of "$name" "$c")
    if [ "$name" = tpcb ]; then args=(-b tpcb-like); else args=(-f "$here/scenarios/$name.sql"); fi
    # a new connection for every transaction, as a client without a pool
    case "$name" in connect_*) args+=(-C) ;; esac
    prepare "$name"
    if $smoke; then
        pgbench -n -M prepared -c "$c" -j "$j" -t 5 "${args[@]}" "$db" > "$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }
    else
        pgbench -n -M prepared -c "$c" -j "$j" -T "$((warm + seconds))" -l --log-prefix="$work/log" "${args[@]}" "$db" \
            > "$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }
    fi
    grep -q "number of failed transactions: 0 " "$work/out" || { cat "$work/out" >&2; return 1; }
    local tps
    # with -C pgbench counts the reconnections in: "(including reconnection times)"
    tps=$(sed -nE 's/^tps = ([0-9.]+) \((without initial connection time|including reconnection times)\)/\1/p' "$work/out")
    [ -n "$tps" ] || { cat "$work/out" >&2; return 1; }
    if $smoke; then
        echo "$tps - - $tps"
        return 0
    fi
    # per-transaction logs: the third column is the latency in microseconds,
    # the fifth and sixth when the transaction ended (epoch seconds and
    # microseconds).  Measured: the transactions that ended in the last
    # $seconds seconds, i.e. from $warm s after the first one started.
    cat "$work"/log* | awk '{printf "%.6f %d\n", $5 + $6 / 1000000, $3}' > "$work/ends"
    local n p50 p99 steady
    steady=$(awk -v warm="$warm" -v out="$work/lat.unsorted" '
        NR == FNR { s = $1 - $2 / 1000000; if (FNR == 1 || s < start) start = s; if ($1 > last) last = $1; next }
        FNR == 1 { from = start + warm; printf "" > out }
        $1 > from { k++; print $2 > out }
        END { printf "%.6f", (last > from ? k / (last - from) : 0) }' "$work/ends" "$work/ends")
    sort -n "$work/lat.unsorted" > "$work/lat"
    n=$(wc -l < "$work/lat")
    p50=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {printf "%.2f", $1 / 1000; exit}' "$work/lat")
    p99=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {printf "%.2f", $1 / 1000; exit}' "$work/lat")
    echo "$steady $p50 $p99 $tps"
}

# mixed NAME FLOOR CLIENTS -> the ratio of FLOOR's mean latency to NAME's in
# one run in which each client picks one of the two at random for every
# transaction (pgbench -f NAME@1 -f FLOOR@1), over the transactions that
# ended after the warm-up: both measured on the same connections at the
# same moments, so that the machine's drift between two runs does not
# enter the ratio.  (Not for the connect_* scenarios, whose logged
# latencies leave out the connection; and for a contended scenario the
# clients on its hot row are half of them.)
mixed() {
    local name=$1 floor=$2 c=$3 j=2 warm
    [ "$c" -lt 2 ] && j=1
    warm=$(warmup_of "$name" "$c")
    prepare "$name"
    pgbench -n -M prepared -c "$c" -j "$j" -T "$((warm + seconds))" -l --log-prefix="$work/log" \
        -f "$here/scenarios/$name.sql@1" -f "$here/scenarios/$floor.sql@1" "$db" \
        > "$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }
    grep -q "number of failed transactions: 0 " "$work/out" || { cat "$work/out" >&2; return 1; }
    # the fourth column is the script: 0 the scenario, 1 the floor
    cat "$work"/log* | awk -v warm="$warm" '
        { end[NR] = $5 + $6 / 1000000; lat[NR] = $3; script[NR] = $4
          s = end[NR] - $3 / 1000000; if (NR == 1 || s < start) start = s }
        END { for (i = 1; i <= NR; i++) if (end[i] > start + warm) { sum[script[i]] += lat[i]; n[script[i]]++ }
              if (n[0] > 0 && n[1] > 0 && sum[0] > 0) printf "%.2f\n", (sum[1] / n[1]) / (sum[0] / n[0]) }'
}

# A scenario's ratio is to its floor measured again beside it, at the same
# client count (the floor's own row is its first measurement), in rounds:
# floor then scenario, scenario then floor, and so on.  The machine's speed
# drifts by 15-30% over minutes and moves by 10% between two runs of 15 s
# (the floors' own rows, and one floor run twice in a row); alternating the
# order makes a drift weigh on both sides alike, and the median of the
# rounds' ratios leaves out one round that a burst of the machine moved.
# The row shows the median round (its TPS, latencies and floor), and the
# lowest and highest ratio of all rounds.
declare -A TPS WHOLE PAIRED PAIRED_WHOLE RANGE MIXED
csv="$work/results.csv"
echo "scenario,clients,tps,p50_ms,p99_ms,floor,ratio_to_floor,ratio_to_naive,whole_run_tps" > "$csv"
while IFS='|' read -r name floor naive; do
    cs=$clients
    case "$name" in connect_*) cs=$connect_clients ;; esac
    for c in $cs; do
        if [ -n "$floor" ] && ! $smoke; then
            : > "$work/rounds"
            for ((k = 1; k <= rounds; k++)); do
                for side in $( ((k % 2)) && echo "floor scenario" || echo "scenario floor"); do
                    if [ "$side" = floor ]; then
                        f=$(run "$floor" "$c") || { echo "floor $floor with $c clients failed" >&2; exit 1; }
                        printf '  %-22s %3s clients  %10s tps (floor of %s, round %d)\n' "$floor" "$c" "${f%% *}" "$name" "$k" >&2
                    else
                        r=$(run "$name" "$c") || { echo "scenario $name with $c clients failed" >&2; exit 1; }
                        printf '  %-22s %3s clients  %10s tps (round %d)\n' "$name" "$c" "${r%% *}" "$k" >&2
                    fi
                done
                # ratio, then the scenario's and the floor's results
                echo "$r $f" | awk '{ printf "%.6f %s\n", ($5 > 0 ? $1 / $5 : 0), $0 }' >> "$work/rounds"
            done
            sort -n "$work/rounds" > "$work/rounds.sorted"
            read -r _ tps p50 p99 whole ftps _ _ fwhole < <(sed -n "$(( (rounds + 1) / 2 ))p" "$work/rounds.sorted")
            PAIRED[$name/$c]=$ftps
            PAIRED_WHOLE[$name/$c]=$fwhole
            case "$mixed_runs/$name" in
                1/connect_*|0/*) ;;
                *)
                    m=$(mixed "$name" "$floor" "$c") || { echo "mixed run of $name and $floor with $c clients failed" >&2; exit 1; }
                    MIXED[$name/$c]=$m
                    printf '  %-22s %3s clients  %10s x %s, mixed run\n' "$name" "$c" "$m" "$floor" >&2
                    ;;
            esac
            RANGE[$name/$c]=$(awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }' "$work/rounds.sorted")
        else
            r=$(run "$name" "$c") || { echo "scenario $name with $c clients failed" >&2; exit 1; }
            read -r tps p50 p99 whole <<< "$r"
            printf '  %-22s %3s clients  %10s tps\n' "$name" "$c" "$tps" >&2
        fi
        TPS[$name/$c]=$tps
        WHOLE[$name/$c]=$whole
        echo "$name,$c,$tps,$p50,$p99,$floor,,,$whole" >> "$csv"
    done
done <<< "$scenarios"

# ratios, now that every floor and baseline is known
table="$work/table"
{
    printf '| scenario | clients | TPS | p50 ms | p99 ms | ratio to floor, median of %s rounds (floor, its TPS) | lowest-highest ratio | ratio to floor, mixed run | ratio to naive | TPS, whole run | ratio to floor, whole run |\n' "$rounds"
    printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
    tail -n +2 "$csv" | while IFS=',' read -r name c tps p50 p99 floor _ _ whole; do
        naive=$(sed -n "s/^$name|[^|]*|//p" <<< "$scenarios")
        rf=""; rn=""; rw=""
        [ -n "$floor" ] && rf=$(awk -v a="$tps" -v b="${PAIRED[$name/$c]:-${TPS[$floor/$c]}}" 'BEGIN { if (b > 0) printf "%.2f (%s %.0f)", a / b, "'"$floor"'", b }')
        [ -n "$floor" ] && rw=$(awk -v a="$whole" -v b="${PAIRED_WHOLE[$name/$c]:-${WHOLE[$floor/$c]}}" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
        [ -n "$naive" ] && rn=$(awk -v a="$tps" -v b="${TPS[$naive/$c]}" 'BEGIN { if (b > 0) printf "%.2f", a / b }')
        printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %.0f | %s |\n' "$name" "$c" "$tps" "$p50" "$p99" "$rf" "${RANGE[$name/$c]:-}" "${MIXED[$name/$c]:-}" "$rn" "$whole" "$rw"
        echo "$name,$c,$tps,$p50,$p99,$floor,${rf%% *},${RANGE[$name/$c]:-},${MIXED[$name/$c]:-},$rn,$whole,$rw" >> "$csv.final"
    done
} > "$table"

ledger=$(q "SELECT count(*) || ' entries, ' ||
                   round(pg_relation_size('credits.ledger')::numeric / greatest(count(*), 1)) || ' heap bytes/entry, ' ||
                   round(pg_total_relation_size('credits.ledger')::numeric / greatest(count(*), 1)) || ' bytes/entry with indexes'
              FROM credits.ledger")
# statistics of what the run wrote first (VACUUM above does not gather
# them): verify() plans its joins over the ledger on them, and planned on
# the data set's (a few thousand entries) it was still running after 13
# minutes over the ledger of a run (millions of entries, most in 3 orgs)
$smoke || q "ANALYZE" >/dev/null
violations=$(q "SELECT count(*) FROM credits.verify()")

if $smoke; then
    echo "bench smoke: every scenario ran; ledger $ledger; verify() violations: $violations"
    [ "$violations" = 0 ]
    exit
fi

cat "$table"
echo
echo "ledger: $ledger"
echo "verify() violations after the run: $violations"
echo "machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, PostgreSQL $(q 'SHOW server_version'), fsync $(q 'SHOW fsync'), synchronous_commit $(q 'SHOW synchronous_commit'), shared_preload_libraries '$(q 'SHOW shared_preload_libraries')', ${seconds}s measured per run after ${warmup}s of warm-up per 8 clients, $rounds rounds of each scenario and its floor"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$here/results"
{ echo "scenario,clients,tps,p50_ms,p99_ms,floor,ratio_to_floor,ratio_range,ratio_mixed_run,ratio_to_naive,whole_run_tps,whole_run_ratio_to_floor"; cat "$csv.final"; } > "$here/results/bench-$stamp.csv"
echo "written: bench/results/bench-$stamp.csv"
# latest.* (kept in git) are the last full run's: every scenario at the
# default client counts
if [ -z "${BENCH_ONLY:-}" ] && [ -z "${BENCH_CLIENTS:-}" ] && [ -z "${BENCH_CONNECT_CLIENTS:-}" ]; then
    cp "$here/results/bench-$stamp.csv" "$here/results/latest.csv"
    cp "$table" "$here/results/latest.md"
    echo "written: bench/results/latest.md, latest.csv"
fi
