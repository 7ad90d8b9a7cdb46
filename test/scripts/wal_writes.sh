#!/usr/bin/env bash
# What a debit writes to the WAL, read back with pg_walinspect.
#
# A debit of an uncapped member of an org that is one balance writes its
# rows as UPDATE and INSERT statements write them: the pools row and the
# member's usage are updated without being locked first (no Heap LOCK
# record), so it writes the records of the plain SQL that does the same
# writes, and nothing more on those tables.  A capped member's debit takes
# the pool lock first (its cap is read under it): a LOCK record of the pools
# row precedes its update, which shows the check can tell them apart.
#
# 20 debits of each kind, each its own transaction; the records between two
# LSNs are counted by table (the block reference's relfilenode) and kind.
# Every check prints one line, "ok ..." or "FAIL ..."; the exit status is 1
# when any failed.
set -euo pipefail

db=credits_wal
cleanup() { dropdb --if-exists "$db" >/dev/null 2>&1 || true; }
trap cleanup EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
failed=0
ok() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failed=1; }
check() { if [ "$2" = "$3" ]; then ok "$1: $2"; else fail "$1: got $2, expected $3"; fi; }

dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
q -o /dev/null <<'SQL'
CREATE EXTENSION credits;
CREATE EXTENSION pg_walinspect;
SELECT org_id FROM credits.create_org('wal', allowance_per_user => 100000);
SELECT credits.enable_provider('wal', 'openai');
SELECT credits.add_member('wal', 'free');
SELECT credits.add_member('wal', 'capped', cap => 50000);
-- each member's first charge of the period inserts its usage row
SELECT charged FROM credits.credit_debit('wal', 'free', 'gpt-4o-mini', 1000);
SELECT charged FROM credits.credit_debit('wal', 'capped', 'gpt-4o-mini', 1000);
SQL

# counts USER: "LOCK UPDATE INSERT" records on pools, member_usage and ledger
# (space separated, in that order) written by 20 debits of USER
counts() {
    local user=$1 from to
    from=$(q -c "SELECT pg_current_wal_insert_lsn()")
    for _ in $(seq 20); do
        q -o /dev/null -c "SELECT charged FROM credits.credit_debit('wal', '$user', 'gpt-4o-mini', 1000)"
    done
    to=$(q -c "SELECT pg_current_wal_flush_lsn()")
    q <<SQL
WITH rels AS (
    SELECT t, pg_relation_filenode(('credits.' || t)::regclass) AS node
      FROM unnest(ARRAY['pools', 'member_usage', 'ledger']) t),
recs AS (
    SELECT r.record_type, rels.t
      FROM pg_get_wal_records_info('$from', '$to') r
      JOIN rels ON r.block_ref ~ ('rel [0-9]+/[0-9]+/' || rels.node || ' fork main')
     WHERE r.resource_manager = 'Heap')
SELECT string_agg(n::text, ' ' ORDER BY o)
  FROM (VALUES
    (1, (SELECT count(*) FROM recs WHERE t = 'pools' AND record_type = 'LOCK')),
    (2, (SELECT count(*) FROM recs WHERE t = 'member_usage' AND record_type = 'LOCK')),
    (3, (SELECT count(*) FROM recs WHERE t = 'pools' AND record_type IN ('UPDATE', 'HOT_UPDATE'))),
    (4, (SELECT count(*) FROM recs WHERE t = 'member_usage' AND record_type IN ('UPDATE', 'HOT_UPDATE'))),
    (5, (SELECT count(*) FROM recs WHERE t = 'ledger' AND record_type IN ('INSERT', 'INSERT+INIT'))),
    (6, (SELECT count(*) FROM recs WHERE record_type NOT IN ('LOCK', 'UPDATE', 'HOT_UPDATE',
                                                            'INSERT', 'INSERT+INIT')))
  ) v(o, n)
SQL
}

read -r pool_locks usage_locks pool_updates usage_updates ledger_inserts other <<< "$(counts free)"
check "uncapped member, one balance: Heap LOCK records of the pools row" "$pool_locks" 0
check "uncapped member, one balance: Heap LOCK records of the member's usage" "$usage_locks" 0
check "uncapped member, one balance: updates of the pools row" "$pool_updates" 20
check "uncapped member, one balance: updates of the member's usage" "$usage_updates" 20
check "uncapped member, one balance: ledger inserts" "$ledger_inserts" 20
check "uncapped member, one balance: other Heap records on these tables" "$other" 0

read -r pool_locks usage_locks pool_updates usage_updates ledger_inserts other <<< "$(counts capped)"
check "capped member (under the pool lock): Heap LOCK records of the pools row" "$pool_locks" 20
check "capped member: Heap LOCK records of the member's usage (read under the pool lock)" "$usage_locks" 0
check "capped member: updates of the pools row" "$pool_updates" 20
check "capped member: updates of the member's usage" "$usage_updates" 20
check "capped member: ledger inserts" "$ledger_inserts" 20

violations=$(q -c "SELECT count(*) FROM credits.verify('wal')")
check "credits.verify() violations" "$violations" 0
exit "$failed"
