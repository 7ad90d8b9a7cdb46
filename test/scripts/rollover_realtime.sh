#!/usr/bin/env bash
# Rollover in real time, with 2-second periods (issue 17).
#
# Three orgs are created in one transaction, on the same schedule (anchored
# at that transaction's now()), each with 10 credits for ann:
#   lz  rollover max 4 for 2 periods; uses 3 (7 unused -> rolls 4)
#   sk  rollover max 100 for 1 period; uses 2 (8 unused -> rolls 8)
#   rd  rollover max 100 for 3 periods; uses 5, buys 3, holds 1 (unused 5:
#       top-ups and holds are not counted -> rolls 5)
# The test waits, polling the database clock, until the first period and the
# one after it are over (at least one period is skipped), then in one
# transaction: readers see lz's new period with its rollover grant; lz's next
# debit rolls it over lazily (one closed period, one rollover grant, expiring
# at the end of the second period counting the new one); reset_due() rolls sk
# and rd.  Then it waits until lz's rollover grant has expired, and
# reset_due() drops it and rolls lz's (new) unused allowance.  Every
# expected time is read from the pool itself (whichever period the clock is
# in), so a slow machine cannot fail the test; verify() is clean throughout.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

db=credits_rollover_rt
timeout=60
die() { echo "FAIL $*"; exit 1; }
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
trap 'dropdb --if-exists "$db" >/dev/null 2>&1' EXIT
q() { PGOPTIONS="-c search_path=public,credits" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
period='2 seconds'

q -c "CREATE EXTENSION credits"
fail=0
# the database clock (a new transaction's now()) has reached $1
clock_past() { [ "$(q -c "SELECT now() >= '$1'::timestamptz")" = t ]; }
check() { if [ "$2" != "$3" ]; then echo "FAIL $1: got '$2', want '$3'"; fail=1; else echo "ok $1"; fi; }

# the first period, in one transaction
out=$(q -v period="$period" <<'SQL'
BEGIN;
SELECT (credits.create_org(o, allowance_per_user => 10, billing_anchor => now(),
                           period => :'period')).org_id
  FROM unnest(ARRAY['lz', 'sk', 'rd']) o \g /dev/null
SELECT credits.enable_provider(o, 'openai'), credits.add_member(o, 'ann')
  FROM unnest(ARRAY['lz', 'sk', 'rd']) o \g /dev/null
SELECT credits.set_rollover('lz', 4, 2), credits.set_rollover('sk', 100), credits.set_rollover('rd', 100, 3) \g /dev/null
SELECT credits.recharge('rd', 3) \g /dev/null
SELECT (SELECT charged FROM credits.credit_debit('lz', 'ann', 'gpt-4o', 12000))
       || ' ' || (SELECT charged FROM credits.credit_debit('sk', 'ann', 'gpt-4o', 8000))
       || ' ' || (SELECT charged FROM credits.credit_debit('rd', 'ann', 'gpt-4o', 20000))
       || ' ' || (SELECT reserved FROM credits.credit_reserve('rd', 'ann', 'gpt-4o', 4000, 0, ttl => '1 hour'));
SELECT bool_and(period_start = now() AND period_end = now() + :'period'::interval) FROM credits.pools;
COMMIT;
SQL
)
check "first period: lz uses 3, sk 2, rd 5 and holds 1; all pools are [now, now + $period)" "$(echo $out)" "3 2 5 1 t"
first=$(q -c "SELECT period_start FROM credits.pools WHERE org_id = 'lz'")
first_end=$(q -c "SELECT period_end FROM credits.pools WHERE org_id = 'lz'")

# past the first period and the next one (so at least one is skipped)
wait_until "the end of the second period" clock_past "$(q -c "SELECT '$first_end'::timestamptz + '$period'::interval")"

out=$(q -v first="$first" -v first_end="$first_end" -v period="$period" <<'SQL'
BEGIN;
\echo readers:
SELECT period_start >= :'first_end'::timestamptz + :'period'::interval AND allowance_used = 0
       AND topup = 4 AND available = 14
  FROM credits.pool_status WHERE org_id = 'lz';
SELECT topup || ' ' || reserved || ' ' || available FROM credits.pool_status WHERE org_id = 'rd';
SELECT count(*) FROM credits.periods;
\echo lazy:
SELECT charged || ' ' || available FROM credits.credit_debit('lz', 'ann', 'gpt-4o', 4000);
SELECT count(*) || ' ' || min(allowance_used) || ' ' || (min(period_start) = :'first')
  FROM credits.periods WHERE org_id = 'lz';
SELECT count(*) || ' ' || min(g.amount) || ' ' || min(g.remaining) || ' '
       || (min(g.expires_at) = min(p.period_end) + :'period'::interval) || ' '
       || (min(p.period_start) <= now() AND now() < min(p.period_end))
  FROM credits.grants g JOIN credits.pools p USING (org_id) WHERE g.org_id = 'lz';
SELECT string_agg(kind, ' ' ORDER BY entry_id) FROM credits.ledger
 WHERE org_id = 'lz' AND period_start = (SELECT period_start FROM credits.pools WHERE org_id = 'lz');
SELECT (payload -> 'rollover' ->> 'amount') || ' '
       || ((payload -> 'rollover' ->> 'grant_id')::bigint = (SELECT grant_id FROM credits.grants WHERE org_id = 'lz')) || ' '
       || ((payload -> 'rollover' ->> 'expires_at')::timestamptz = (SELECT expires_at FROM credits.grants WHERE org_id = 'lz'))
  FROM credits.events WHERE org_id = 'lz' AND kind = 'period_reset';
\echo reset_due:
SELECT credits.reset_due();
SELECT count(*) || ' ' || min(allowance_used) FROM credits.periods WHERE org_id = 'sk';
SELECT count(*) || ' ' || min(g.amount) || ' ' || (min(g.expires_at) = min(p.period_end))
  FROM credits.grants g JOIN credits.pools p USING (org_id) WHERE g.org_id = 'sk';
SELECT g.amount || ' ' || (g.expires_at = p.period_end + 2 * :'period'::interval)
  FROM credits.grants g JOIN credits.ledger l ON l.grant_id = g.grant_id AND l.kind = 'rollover'
  JOIN credits.pools p ON p.org_id = g.org_id WHERE g.org_id = 'rd';
SELECT topup || ' ' || reserved || ' ' || available FROM credits.pool_status WHERE org_id = 'rd';
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
heading "readers:"
expect "lz: pool_status shows the new period as the next call makes it: 10 + the rollover grant of 4" t
expect "rd: pool_status shows top-up 3 + rollover 5, the hold of 1 carried: available 17" "8 1 17"
expect "readers closed no period" 0
heading "lazy:"
expect "lz: the first debit after the period ended rolls it over and sees the grant: 10 + 4 - 1" "1 13"
expect "lz: one period closed (3 used; the skipped ones are not replayed)" "1 3 true"
expect "lz: one rollover grant of 4 (least(10 - 3, 4)), expiring a period after the new one ends" "1 4 4 true true"
expect "lz: the new period's ledger: rollover, reset, debit" "rollover reset debit"
expect "lz: the period_reset event names the rollover grant" "4 true true"
heading "reset_due:"
expect "reset_due() rolls sk and rd over" 2
expect "sk: one period closed (2 used)" "1 2"
expect "sk: one rollover grant of 8, expiring when the new period ends (only the last closed period rolls)" "1 8 true"
expect "rd: rollover of 5 (top-up and hold not counted), lasting 3 periods" "5 true"
expect "rd: top-up 3 + 5, the hold of 1 carried, available 17" "8 1 17"
expect "verify() is clean" 0
[ "${#got[@]}" -eq "$i" ] || { echo "FAIL unexpected output: $out"; fail=1; }

# lz's rollover grant expires: wait until the clock is past it
grant_end=$(q -c "SELECT expires_at FROM credits.grants WHERE org_id = 'lz'")
wait_until "lz's rollover grant to expire" clock_past "$grant_end"
out=$(q -v grant_end="$grant_end" -v period="$period" <<'SQL'
BEGIN;
SELECT credits.reset_due() >= 1;
SELECT amount || ' ' || remaining || ' ' || expired_amount FROM credits.grants
 WHERE org_id = 'lz' AND expires_at = :'grant_end';
SELECT topup_change FROM credits.ledger WHERE org_id = 'lz' AND kind = 'expire';
SELECT g.amount || ' ' || (g.expires_at = p.period_end + :'period'::interval)
  FROM credits.grants g JOIN credits.pools p USING (org_id)
 WHERE g.org_id = 'lz' AND g.expires_at > :'grant_end';
SELECT charged || ' ' || available FROM credits.credit_debit('lz', 'ann', 'gpt-4o', 48000);
SELECT string_agg(d.amount::text, ' ') FROM credits.grant_draws d JOIN credits.grants g USING (grant_id)
 WHERE g.org_id = 'lz';
SELECT count(*) FROM credits.verify();
COMMIT;
SQL
)
mapfile -t got <<<"$out"
i=0
expect "reset_due() rolls lz over again" t
expect "lz: its first rollover grant expired unused" "4 0 4"
expect "lz: ... ledgered as an expiry of 4" "-4"
expect "lz: the next close rolled least(10 - 1, 4) = 4, lasting 2 periods" "4 true"
expect "lz: a debit of 12 uses the 10 of allowance, then 2 of the rollover grant" "12 2"
expect "lz: ... drawn from the rollover grant" "2"
expect "verify() is clean" 0
[ "${#got[@]}" -eq "$i" ] || { echo "FAIL unexpected output: $out"; fail=1; }
exit $fail
