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
# then prints a summary (per suite, with pgTAP's assertion total) and ends
# with one line "N passed, N failed" counting test files.
#
# pg_regress and pg_isolation_regress report a test as "test NAME ... ok" /
# "... FAILED" (PostgreSQL 15 and before) or in TAP, "ok 3 - NAME" /
# "not ok 3 - NAME" (16 and later): both are counted.  Each test file of a
# suite must report a result: one that reports none (a suite that ran
# nothing although its directory has files, a driver that stopped early)
# counts as failed.
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/virtualenv.sh"
# the cluster preloads pg_cron and credits, as the README recommends; the
# scripts that start servers of their own (dba_ops.sh, cdc.sh, crash.sh,
# standby.sh, ...) do not preload credits, so both ways are tested
in_virtualenv "$0" \
    -o shared_preload_libraries=pg_cron,credits \
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
declare -A suite_passed suite_failed suite_files
suites=()
pgtap_assertions=0

for tool in "$pgxs/src/test/regress/pg_regress" "$pgxs/src/test/isolation/pg_isolation_regress"; do
    [ -x "$tool" ] || { echo "missing $tool (postgresql-server-dev)"; exit 1; }
done

# suite_start SUITE FILES: SUITE has FILES test files, each must report
suite_start() {
    suites+=("$1")
    suite_files[$1]=$2
    suite_passed[$1]=0
    suite_failed[$1]=0
}
pass() { passed=$((passed + 1)); suite_passed[$1]=$((suite_passed[$1] + 1)); }
fail() { failed=$((failed + 1)); suite_failed[$1]=$((suite_failed[$1] + 1)); failures+=("$1: $2"); }
# suite_missing SUITE: how many of its test files reported no result
suite_missing() {
    echo $((suite_files[$1] - suite_passed[$1] - suite_failed[$1]))
}
# suite_end SUITE DIR [NOTE]: the test files that reported nothing count as
# failed
suite_end() {
    local suite=$1 dir=$2 note=${3:+ ($3)} missing
    missing=$(suite_missing "$suite")
    [ "$missing" -gt 0 ] || return 0
    failed=$((failed + missing))
    suite_failed[$suite]=$((suite_failed[$suite] + missing))
    if [ "$missing" -eq "${suite_files[$suite]}" ]; then
        failures+=("$suite: ran nothing although $dir has ${suite_files[$suite]} test files$note")
    else
        failures+=("$suite: $missing of ${suite_files[$suite]} test files reported no result$note")
    fi
}

# parse_regress SUITE LOG: count the results a pg_regress-style driver
# printed (both formats); prints the log
tap_ok='^ok +[0-9]+ +[-+] +([^ ]+)'
tap_not_ok='^not ok +[0-9]+ +[-+] +([^ ]+)'
parse_regress() {
    local suite=$1 line
    while IFS= read -r line; do
        printf '%s\n' "$line"
        if [[ $line =~ $tap_not_ok ]]; then
            fail "$suite" "${BASH_REMATCH[1]}"
        elif [[ $line =~ $tap_ok ]]; then
            pass "$suite"
        else
            case "$line" in
                *"... ok"*) pass "$suite" ;;
                *"... FAILED"*|*"... failed"*)
                    fail "$suite" "$(sed -E 's/^[a-z ]*test +([^ ]+).*/\1/; s/^ +([^ ]+) +\.\.\..*/\1/' <<<"$line")" ;;
            esac
        fi
    done < "$2"
}

# Run a pg_regress-style driver on FILES test files (in DIR) and count its
# results.  A driver that fails without naming a failed test counts as one
# failure (unless test files reported nothing: they are the failures).
run_pg_regress() {
    local suite=$1 dir=$2 files=$3 diffs=$4; shift 4
    local log rc=0 note=
    suite_start "$suite" "$files"
    log=$(mktemp)
    "$@" > "$log" 2>&1 || rc=$?
    parse_regress "$suite" "$log"
    rm -f "$log"
    if [ "$rc" -ne 0 ] && [ "${suite_failed[$suite]}" -eq 0 ]; then
        if [ "$(suite_missing "$suite")" -gt 0 ]; then
            note="the driver exited with status $rc"
        else
            fail "$suite" "driver exited with status $rc"
        fi
    fi
    suite_end "$suite" "$dir" "$note"
    [ -s "$diffs" ] && head -300 "$diffs"
    return 0
}

# pgtap_count LOG: the assertions pg_prove ran ("Files=1, Tests=N, ..."),
# empty when it printed no count
pgtap_count() {
    sed -nE 's/^Files=[0-9]+, Tests=([0-9]+),.*/\1/p' "$1" | tail -1
}

echo "== pg_regress =="
tests=$(ls sql/*.sql 2>/dev/null | sed -E 's|sql/(.*)\.sql|\1|' | tr '\n' ' ')
rm -f regression.diffs
if [ -n "$tests" ]; then
    run_pg_regress pg_regress sql/ "$(wc -w <<<"$tests")" regression.diffs \
        "$pgxs/src/test/regress/pg_regress" \
        --inputdir=. --outputdir=. --bindir="$bindir" \
        --dbname=contrib_regression --load-extension=credits $tests
fi

echo "== isolation =="
specs=$(ls test/isolation/specs/*.spec 2>/dev/null | sed -E 's|.*/(.*)\.spec|\1|' | tr '\n' ' ')
rm -rf output_iso
if [ -n "$specs" ]; then
    mkdir -p output_iso
    run_pg_regress isolation test/isolation/specs/ "$(wc -w <<<"$specs")" output_iso/regression.diffs \
        "$pgxs/src/test/isolation/pg_isolation_regress" \
        --inputdir=test/isolation --outputdir=output_iso --bindir="$bindir" \
        --dbname=isolation_regression --load-extension=credits $specs
fi

echo "== pgTAP =="
if ls test/pgtap/*.sql >/dev/null 2>&1; then
    suite_start pgTAP "$(ls test/pgtap/*.sql | wc -l)"
    dropdb --if-exists credits_tap >/dev/null 2>&1
    createdb credits_tap
    psql -X -q -v ON_ERROR_STOP=1 -d credits_tap \
        -c "CREATE EXTENSION pgtap; CREATE EXTENSION credits;" >/dev/null
    log=$(mktemp)
    for f in test/pgtap/*.sql; do
        rc=0
        pg_prove -d credits_tap "$f" > "$log" 2>&1 || rc=$?
        cat "$log"
        n=$(pgtap_count "$log")
        pgtap_assertions=$((pgtap_assertions + ${n:-0}))
        if [ "$rc" -ne 0 ]; then
            fail pgTAP "$f"
        elif [ -z "$n" ] || [ "$n" -eq 0 ]; then
            fail pgTAP "$f ran no assertion"
        else
            pass pgTAP
        fi
    done
    rm -f "$log"
    suite_end pgTAP test/pgtap/
fi

echo "== scripts =="
if ls test/scripts/*.sh >/dev/null 2>&1; then
    suite_start scripts "$(ls test/scripts/*.sh | wc -l)"
    for f in test/scripts/*.sh; do
        echo "-- $f"
        if bash "$f"; then
            echo "ok: $f"; pass scripts
        else
            echo "FAILED: $f"; fail scripts "$f"
        fi
    done
    suite_end scripts test/scripts/
fi

echo
echo "== summary =="
for s in "${suites[@]}"; do
    line="$s: ${suite_passed[$s]} of ${suite_files[$s]} passed, ${suite_failed[$s]} failed"
    [ "$s" = pgTAP ] && line+=", $pgtap_assertions assertions"
    echo "$line"
done
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
