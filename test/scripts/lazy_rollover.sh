#!/usr/bin/env bash
# Lazy rollover in real time: an org with 2-second periods is rolled over by
# the next call that touches it, without reset_due() or any job; missed
# periods are skipped.  Readers (allowed_models, resolve_model, pool_status)
# already see the new period without writing; the first writer
# (credit_debit) closes the old one into credits.periods.
#
# Every call takes its time from its transaction's start (now()), so the
# test cannot be failed by a slow machine: the org is created and emptied in
# one transaction (the debit is in the first period however long that
# takes), the test then waits, polling the pool's own period_end, until the
# clock is at least one whole period past the first period's end (the second
# period is skipped), and the readers, the debit and what it wrote are
# checked in one later transaction (all in the same period, whichever it is).
set -euo pipefail

db=credits_lazy
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
trap 'dropdb --if-exists "$db" >/dev/null 2>&1' EXIT
q() { PGOPTIONS="-c search_path=public,credits" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
period='2 seconds'

q -c "CREATE EXTENSION credits"
fail=0
check() { if [ "$2" != "$3" ]; then echo "FAIL $1: got '$2', want '$3'"; fail=1; else echo "ok $1"; fi; }

# the first period, in one transaction: create the org, empty its pool
# (premium models grayed out)
out=$(q -v period="$period" <<'SQL'
BEGIN;
SELECT org_id FROM credits.create_org('lz', allowance_per_user => 10,
       billing_anchor => now(), period => :'period') \g /dev/null
SELECT credits.enable_provider('lz', 'openai') \g /dev/null
SELECT credits.add_member('lz', 'ann') \g /dev/null
SELECT charged FROM credits.credit_debit('lz', 'ann', 'gpt-4o', 40000);
SELECT available FROM credits.allowed_models('lz', 'ann') WHERE model = 'gpt-4o';
SELECT period_start = now() AND period_end = now() + :'period'::interval FROM credits.pools;
COMMIT;
SQL
)
check "first period: the debit empties the pool, gpt-4o grayed out, the pool is [now, now + $period)" \
    "$(echo $out)" "10 f t"
first=$(q -c "SELECT period_start FROM credits.pools WHERE org_id = 'lz'")
first_end=$(q -c "SELECT period_end FROM credits.pools WHERE org_id = 'lz'")

# into the third period: wait until now() is a whole period past the first
# period's end (read from the pool), polling; bounded by that time plus 60 s
left=$(q -c "SELECT ceil(extract(epoch FROM period_end + '$period'::interval - now()))::int
               FROM credits.pools WHERE org_id = 'lz'")
for i in $(seq 1 $(( (left + 60) * 10 ))); do
    [ "$(q -c "SELECT now() >= period_end + '$period'::interval FROM credits.pools WHERE org_id = 'lz'")" = t ] && break
    sleep 0.1
done
[ "$(q -c "SELECT now() >= '$first_end'::timestamptz + '$period'::interval")" = t ] || {
    echo "FAIL the clock did not reach the third period within $((left + 60)) s"; exit 1; }

# the readers, then the first writer, in one transaction (one now())
out=$(q -v first="$first" -v first_end="$first_end" -v period="$period" <<'SQL'
BEGIN;
\echo readers see the new period:
SELECT available FROM credits.allowed_models('lz', 'ann') WHERE model = 'gpt-4o';
SELECT credits.resolve_model('lz', 'ann', 'gpt-4o');
SELECT period_start > :'first' AND period_start >= :'first_end'::timestamptz + :'period'::interval
       AND period_start <= now() AND now() < period_end AND allowance_used = 0 AND available = 10
  FROM credits.pool_status;
\echo readers wrote nothing:
SELECT count(*) FROM credits.periods;
SELECT period_start = :'first' AND allowance_used = 10 FROM credits.pools;
SELECT count(*) FROM credits.ledger;
\echo the debit:
SELECT charged FROM credits.credit_debit('lz', 'ann', 'gpt-4o', 4000);
SELECT count(*) || ' ' || max(allowance_used) || ' ' || max(calls) || ' '
       || (min(period_start) = :'first' AND min(period_end) = :'first_end')
  FROM credits.periods WHERE org_id = 'lz';
SELECT period_start >= :'first_end'::timestamptz + :'period'::interval
       AND period_start <= now() AND now() < period_end AND allowance_used = 1
  FROM credits.pools;
SELECT l.period_start = p.period_start FROM credits.ledger l, credits.pools p
 WHERE l.kind = 'debit' ORDER BY l.entry_id DESC LIMIT 1;
SELECT count(*) FROM credits.events WHERE kind = 'period_reset';
SELECT count(*) FROM credits.verify();
COMMIT;
SQL
)
mapfile -t got <<<"$out"
i=0
expect() { check "$1" "${got[$i]-}" "$2"; i=$((i + 1)); }
heading() {
    [ "${got[$i]-}" = "$1" ] || { echo "FAIL output out of step at '$1': got '${got[$i]-}'"; fail=1; }
    i=$((i + 1))
}
heading "readers see the new period:"
expect "allowed_models sees the new period's credits (no writer yet)" t
expect "resolve_model too" gpt-4o
expect "pool_status shows a period at least the third, containing now, nothing used" t
heading "readers wrote nothing:"
expect "no period closed" 0
expect "the pools row is still the first period's" t
expect "the ledger has only the first debit" 1
heading "the debit:"
expect "the next debit is charged in the new period" 1
expect "... which closed the first period (once: missed periods are skipped)" "1 10 1 true"
expect "... and the pool is in a period at least the third, containing now" t
expect "the debit's ledger entry belongs to the new period" t
expect "one period_reset event" 1
expect "verify() is clean" 0
[ "${#got[@]}" -eq "$i" ] || { echo "FAIL unexpected output: $out"; fail=1; }
exit $fail
