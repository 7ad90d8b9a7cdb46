#!/usr/bin/env bash
# scripts/test.sh: run every test suite of credits in a throwaway cluster.
#
# `make test` calls this after building and installing the extension.  It
# re-executes itself under pg_virtualenv (a temporary cluster that is removed
# afterwards), then runs, continuing past failures:
#   1. pg_regress     sql/*.sql against expected/*.out
#   2. isolation      test/isolation/specs/*.spec (pg_isolation_regress)
#   3. pgTAP          test/pgtap/*.sql through pg_prove
#   4. scripts        test/scripts/*.sh (many clients, dump/restore, ...)
# and ends with one line "N passed, N failed" counting test files.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/virtualenv.sh"
in_virtualenv "$0" \
    -o shared_preload_libraries=pg_cron \
    -o cron.database_name=postgres \
    -o cron.use_background_workers=on \
    -o max_worker_processes=32 \
    -o max_connections=120 \
    -- "$@"

cd "$here"
pgxs=$(cd "$(dirname "$("$PG_CONFIG" --pgxs)")/../.." && pwd)   # .../lib/pgxs
bindir=$("$PG_CONFIG" --bindir)
export PATH="$bindir:$PATH"
passed=0
failed=0
failures=()

for tool in "$pgxs/src/test/regress/pg_regress" "$pgxs/src/test/isolation/pg_isolation_regress"; do
    [ -x "$tool" ] || { echo "missing $tool (postgresql-server-dev)"; exit 1; }
done

# Run a pg_regress-style driver; count its "... ok" and "... FAILED" lines.
# A driver that fails without naming a failed test counts as one failure.
run_pg_regress() {
    local suite=$1 diffs=$2; shift 2
    local log line before=$failed rc=0
    log=$(mktemp)
    "$@" > "$log" 2>&1 || rc=$?
    while IFS= read -r line; do
        printf '%s\n' "$line"
        case "$line" in
            *"... ok"*) passed=$((passed + 1)) ;;
            *"... FAILED"*|*"... failed"*)
                failed=$((failed + 1))
                failures+=("$suite: $(sed -E 's/^[a-z ]*test +([^ ]+).*/\1/' <<<"$line")") ;;
        esac
    done < "$log"
    rm -f "$log"
    if [ "$rc" -ne 0 ] && [ "$failed" -eq "$before" ]; then
        failed=$((failed + 1)); failures+=("$suite: driver exited with status $rc")
    fi
    [ -s "$diffs" ] && head -300 "$diffs"
    return 0
}

echo "== pg_regress =="
tests=$(ls sql/*.sql 2>/dev/null | sed -E 's|sql/(.*)\.sql|\1|' | tr '\n' ' ')
rm -f regression.diffs
if [ -n "$tests" ]; then
    run_pg_regress pg_regress regression.diffs "$pgxs/src/test/regress/pg_regress" \
        --inputdir=. --outputdir=. --bindir="$bindir" \
        --dbname=contrib_regression --load-extension=credits $tests
fi

echo "== isolation =="
specs=$(ls test/isolation/specs/*.spec 2>/dev/null | sed -E 's|.*/(.*)\.spec|\1|' | tr '\n' ' ')
rm -rf output_iso
if [ -n "$specs" ]; then
    mkdir -p output_iso
    run_pg_regress isolation output_iso/regression.diffs "$pgxs/src/test/isolation/pg_isolation_regress" \
        --inputdir=test/isolation --outputdir=output_iso --bindir="$bindir" \
        --dbname=isolation_regression --load-extension=credits $specs
fi

echo "== pgTAP =="
if ls test/pgtap/*.sql >/dev/null 2>&1; then
    dropdb --if-exists credits_tap >/dev/null 2>&1
    createdb credits_tap
    psql -X -q -v ON_ERROR_STOP=1 -d credits_tap \
        -c "CREATE EXTENSION pgtap; CREATE EXTENSION credits;" >/dev/null
    for f in test/pgtap/*.sql; do
        if pg_prove -d credits_tap "$f"; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1)); failures+=("pgtap: $f")
        fi
    done
fi

echo "== scripts =="
for f in test/scripts/*.sh; do
    [ -e "$f" ] || continue
    echo "-- $f"
    if bash "$f"; then
        echo "ok: $f"; passed=$((passed + 1))
    else
        echo "FAILED: $f"; failed=$((failed + 1)); failures+=("script: $f")
    fi
done

echo
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
