#!/usr/bin/env bash
# Prometheus metrics: contrib/prometheus/queries.yaml with Debian's
# prometheus-postgres-exporter exports, per org, exactly what pool_status,
# the open holds and the ledger say.
#
# A private cluster (unix socket in a temp dir) gets the extension and two
# orgs: "alpha" with debits, a purchased top-up and an open hold, "beta"
# debited until exhausted.  The exporter runs on 127.0.0.1 (a free port) with
# only the custom queries (default metrics off), connected over the unix
# socket as a login that is a member of credits_reader.  Each scrape is
# checked series by series against the database:
#   credits_pool_{available,allowance,used,topup,reserved,exhausted}
#       = pool_status.{available,allowance,allowance_used,topup,reserved,exhausted::int}
#   credits_holds_open    = open, unexpired holds of the org
#   credits_ledger_calls  = debit and settle entries of the current period
# and pg_exporter_last_scrape_error = 0.  Then the hold is settled and beta
# recharged (no longer exhausted), and the next scrape must show the new
# values.  The exporter is installed with apt-get when missing and running as
# root; without it and not root, the test is skipped.
# Every wait is bounded (60 s): the test fails, it never hangs.
# shellcheck disable=SC2317  # functions called through trap and wait_until
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
queries="$here/../../contrib/prometheus/queries.yaml"
exporter=prometheus-postgres-exporter
if ! command -v "$exporter" >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "SKIP: $exporter is not installed (apt-get install prometheus-postgres-exporter, or run as root)"
        exit 0
    fi
    echo "installing prometheus-postgres-exporter"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus-postgres-exporter >/dev/null \
        || { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
             DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus-postgres-exporter >/dev/null; }
fi
command -v curl >/dev/null || { echo "curl is required"; exit 1; }

bindir=$("${PG_CONFIG:-pg_config}" --bindir)
base=$(mktemp -d /tmp/credits_metrics.XXXXXX)
port=$((20000 + RANDOM % 10000))   # the server's unix socket only: no TCP
data="$base/data"
timeout=60
. "$(dirname "$0")/lib/common.sh"   # as_owner, wait_until
[ "$(id -u)" -eq 0 ] && chown postgres "$base"

exporter_pid=
cleanup() {
    if [ -n "$exporter_pid" ]; then
        kill "$exporter_pid" 2>/dev/null || true
        wait "$exporter_pid" 2>/dev/null || true
    fi
    as_owner "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$base"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

die() { echo "FAIL: $*"; exit 1; }
# a TCP port on 127.0.0.1 that nothing listens on
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((30000 + RANDOM % 30000))
        if [ -z "$(ss -Htln "sport = :$p")" ]; then echo "$p"; return 0; fi
    done
    return 1
}

as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust >/dev/null
cat >> "$data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$base'
fsync = off
CONF
as_owner "$bindir/pg_ctl" -D "$data" -l "$base/log" -w start >/dev/null
q() { psql -X -h "$base" -p "$port" -U postgres -d postgres -q -At -v ON_ERROR_STOP=1 -c "$1"; }

q "CREATE EXTENSION credits" >/dev/null
q "CREATE ROLE prometheus LOGIN; GRANT credits_reader TO prometheus" >/dev/null
# alpha: 3 members x 100, debits, a purchased top-up of 25.5, one open hold
q "SELECT org_id FROM credits.create_org('alpha', allowance_per_user => 100)" >/dev/null
q "SELECT credits.enable_provider('alpha', 'openai')" >/dev/null
q "SELECT count(credits.add_member('alpha', 'u' || i)) FROM generate_series(1, 3) i" >/dev/null
q "SELECT count(*) FROM generate_series(1, 7) i,
          credits.credit_debit('alpha', 'u' || (i % 3 + 1), 'gpt-4o', 1000 * i, 333 * i, 'a-' || i)" >/dev/null
q "SELECT available FROM credits.recharge('alpha', '25.5', note => 'top-up')" >/dev/null
hold=$(q "SELECT hold_id FROM credits.credit_reserve('alpha', 'u1', 'gpt-4o', 5000, 4000, 'a-hold', ttl => '1 hour')")
# beta: 2 members x 10, debited until exhausted
q "SELECT org_id FROM credits.create_org('beta', allowance_per_user => 10)" >/dev/null
q "SELECT credits.enable_provider('beta', 'anthropic')" >/dev/null
q "SELECT count(credits.add_member('beta', 'u' || i)) FROM generate_series(1, 2) i" >/dev/null
q "SELECT count(*) FROM generate_series(1, 5) i,
          credits.credit_debit('beta', 'u' || (i % 2 + 1), 'claude-opus-4-1', 2000 * i, 500 * i, 'b-' || i)" >/dev/null
[ "$(q "SELECT exhausted FROM credits.pool_status WHERE org_id = 'beta'")" = t ] \
    || die "setup: beta is not exhausted"
[ "$(q "SELECT exhausted FROM credits.pool_status WHERE org_id = 'alpha'")" = f ] \
    || die "setup: alpha is exhausted"

http_port=$(free_port) || die "no free TCP port on 127.0.0.1"
# the exporter's driver (lib/pq) reads libpq's environment and panics on
# some of it (PGSYSCONFDIR, which pg_virtualenv sets): it gets none
pg_env=()
while IFS='=' read -r name _; do
    case "$name" in PG*) pg_env+=(-u "$name") ;; esac
done < <(env)
env "${pg_env[@]}" \
DATA_SOURCE_NAME="host=$base port=$port user=prometheus dbname=postgres sslmode=disable" \
    "$exporter" --web.listen-address="127.0.0.1:$http_port" \
        --extend.query-path="$queries" \
        --disable-default-metrics --disable-settings-metrics \
        --no-collector.database --no-collector.bgwriter \
        >"$base/exporter.log" 2>&1 &
exporter_pid=$!
url="http://127.0.0.1:$http_port/metrics"
answers() {
    kill -0 "$exporter_pid" 2>/dev/null || die "the exporter ended: $(tail -5 "$base/exporter.log")"
    curl -sf -o /dev/null --max-time 5 "$url"
}
wait_until "the exporter to answer on $url" answers

# "metric org value" for every credits_* series of one scrape
scrape() {
    curl -sf --max-time 20 "$url" > "$base/scrape" || die "scraping $url failed"
    grep -q '^pg_exporter_last_scrape_error 0$' "$base/scrape" \
        || die "the exporter reports a scrape error: $(grep -m1 '^pg_exporter_last_scrape_error' "$base/scrape") $(grep -i 'err' "$base/exporter.log" | tail -3)"
    sed -n 's/^\(credits_[a-z_]*\){\(.*,\)\{0,1\}org_id="\([^"]*\)".*} \([^ ]*\)$/\1 \3 \4/p' \
        "$base/scrape" | sort
}
# the same from the database
expected() {
    q "SELECT m || ' ' || org_id || ' ' || v FROM (
         SELECT org_id, 'credits_pool_available' m, available::numeric::float8 v FROM credits.pool_status
         UNION ALL SELECT org_id, 'credits_pool_allowance', allowance::numeric::float8 FROM credits.pool_status
         UNION ALL SELECT org_id, 'credits_pool_used', allowance_used::numeric::float8 FROM credits.pool_status
         UNION ALL SELECT org_id, 'credits_pool_topup', topup::numeric::float8 FROM credits.pool_status
         UNION ALL SELECT org_id, 'credits_pool_reserved', reserved::numeric::float8 FROM credits.pool_status
         UNION ALL SELECT org_id, 'credits_pool_exhausted', exhausted::int FROM credits.pool_status
         UNION ALL SELECT p.org_id, 'credits_holds_open',
                          (SELECT count(*) FROM credits.holds h WHERE h.org_id = p.org_id
                              AND h.status = 'open' AND h.expires_at > now())
                     FROM credits.pools p
         UNION ALL SELECT p.org_id, 'credits_ledger_calls',
                          (SELECT count(*) FROM credits.ledger l WHERE l.org_id = p.org_id
                              AND l.kind IN ('debit', 'settle') AND l.created_at >= p.period_start)
                     FROM credits.pools p) x" | sort
}

fail=0
# check LABEL SQL-CHECKS...: one scrape equals the database, series by series
check() {
    local label=$1 m org want got n
    shift
    for c in "$@"; do
        [ "$(q "$c")" = t ] || { echo "  $label: setup check failed: $c"; fail=1; }
    done
    scrape > "$base/got"
    expected > "$base/want"
    n=$(wc -l < "$base/want")
    [ "$n" -eq 16 ] || { echo "  $label: expected 16 series (8 metrics x 2 orgs), the database gives $n"; fail=1; }
    while read -r m org want; do
        got=$(awk -v m="$m" -v o="$org" '$1 == m && $2 == o { print $3 }' "$base/got")
        if [ "$(printf '%s\n' "$got" | grep -c .)" -ne 1 ]; then
            echo "  $label: $m{org_id=\"$org\"}: want $want, scraped ${got:-nothing}"; fail=1
        elif ! awk -v a="$got" -v b="$want" 'BEGIN { exit !(a + 0 == b + 0) }'; then
            echo "  $label: $m{org_id=\"$org\"}: want $want, scraped $got"; fail=1
        else
            echo "  $label: $m{org_id=\"$org\"} = $got"
        fi
    done < "$base/want"
    extra=$(awk 'NR == FNR { w[$1 " " $2]; next } !(($1 " " $2) in w)' "$base/want" "$base/got")
    [ -z "$extra" ] || { echo "  $label: unexpected series: $extra"; fail=1; }
}

echo "scrape 1: alpha has an open hold and a top-up, beta is exhausted"
check "scrape 1" \
    "SELECT exhausted AND available = 0 FROM credits.pool_status WHERE org_id = 'beta'" \
    "SELECT reserved > 0 AND topup > 0 FROM credits.pool_status WHERE org_id = 'alpha'"

q "SELECT charged FROM credits.credit_settle($hold, 5000, 1200)" >/dev/null
q "SELECT available FROM credits.recharge('beta')" >/dev/null
echo "scrape 2: the hold settled, beta recharged"
check "scrape 2" \
    "SELECT NOT exhausted FROM credits.pool_status WHERE org_id = 'beta'" \
    "SELECT reserved = 0 FROM credits.pool_status WHERE org_id = 'alpha'"

[ "$fail" -eq 0 ] && echo "metrics: ok" || echo "metrics: FAILED"
exit "$fail"
