#!/usr/bin/env bash
# Lazy rollover in real time: an org with 4-second periods is rolled over by
# the next call that touches it, without reset_due() or any job; missed
# periods are skipped.  Readers (allowed_models, pool_status) already see the
# new period without writing; the first writer (credit_debit) closes the old
# one into credits.periods.
set -euo pipefail

db=credits_lazy
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
trap 'dropdb --if-exists "$db" >/dev/null 2>&1' EXIT
q() { PGOPTIONS="-c search_path=public,credits" psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }

q "CREATE EXTENSION credits"
q "SELECT org_id FROM credits.create_org('lz', allowance_per_user => 10,
       billing_anchor => now(), period => '4 seconds')" >/dev/null
q "SELECT credits.enable_provider('lz', 'openai')" >/dev/null
q "SELECT credits.add_member('lz', 'ann')" >/dev/null
first=$(q "SELECT period_start FROM credits.pools WHERE org_id = 'lz'")
# empty the pool in the first period: premium models grayed out
q "SELECT charged FROM credits.credit_debit('lz', 'ann', 'gpt-4o', 40000)" >/dev/null
fail=0
check() { if [ "$2" != "$3" ]; then echo "FAIL $1: got '$2', want '$3'"; fail=1; else echo "ok $1"; fi; }

check "exhausted in the first period" \
    "$(q "SELECT available FROM credits.allowed_models('lz', 'ann') WHERE model = 'gpt-4o'")" "f"

sleep 9   # into the third period: the second is skipped

check "allowed_models sees the new period's credits (no writer yet)" \
    "$(q "SELECT available FROM credits.allowed_models('lz', 'ann') WHERE model = 'gpt-4o'")" "t"
check "resolve_model too" "$(q "SELECT credits.resolve_model('lz', 'ann', 'gpt-4o')")" "gpt-4o"
check "pool_status shows the current period, nothing used" \
    "$(q "SELECT period_start > '$first' AND period_start <= now() AND now() < period_end
                 AND allowance_used = 0 AND available = 10 FROM credits.pool_status")" "t"
check "readers wrote nothing" "$(q "SELECT count(*) FROM credits.periods")" "0"

check "the next debit is charged in the new period" \
    "$(q "SELECT charged FROM credits.credit_debit('lz', 'ann', 'gpt-4o', 4000)")" "1"
check "... which closed the old period (once: missed periods are skipped)" \
    "$(q "SELECT count(*) || ' ' || max(allowance_used) || ' ' || max(calls) FROM credits.periods WHERE org_id = 'lz'")" "1 10 1"
check "... and the pool is in the period containing now" \
    "$(q "SELECT period_start <= now() AND now() < period_end AND allowance_used = 1 FROM credits.pools")" "t"
check "the debit's ledger entry belongs to the new period" \
    "$(q "SELECT l.period_start = p.period_start FROM credits.ledger l, credits.pools p
           WHERE l.kind = 'debit' ORDER BY l.entry_id DESC LIMIT 1")" "t"
check "one period_reset event" "$(q "SELECT count(*) FROM credits.events WHERE kind = 'period_reset'")" "1"
check "verify() is clean" "$(q "SELECT count(*) FROM credits.verify()")" "0"
exit $fail
