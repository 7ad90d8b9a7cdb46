#!/usr/bin/env bash
# Many clients debiting one org with a small pool at once.
#
# 16 pgbench clients x 250 transactions call credit_debit on random premium
# and fallback models; half the calls carry a request_id drawn from a small
# range, so the same request is sent many times, often concurrently (every
# argument of a call is derived from its request_id, so repeats are true
# replays).  Each call's result is logged.  Afterwards the test asserts exact
# equalities between the log, the ledger, the pool and verify().
set -euo pipefail

db=credits_many
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
CREATE EXTENSION credits;
SELECT org_id FROM credits.create_org('many', allowance_per_user => 5);
SELECT credits.enable_provider('many', 'openai');
SELECT credits.enable_provider('many', 'anthropic');
SELECT credits.add_member('many', 'u' || i, cap => CASE WHEN i = 1 THEN 2 END)
  FROM generate_series(1, 8) i;
CREATE TABLE calls (request int, entry_id bigint, model text, cost credits.credit,
                    charged credits.credit, shortfall credits.credit,
                    available credits.credit, replayed boolean);
SQL

cat > "$dir/debit.sql" <<'PGB'
\set r random(1, 600)
\if :r <= 300
\set u :r % 8 + 1
\set m :r % 4 + 1
\set tin (:r * 7919) % 20000
\set tout (:r * 104729) % 5000
\else
\set u random(1, 8)
\set m random(1, 4)
\set tin random(0, 20000)
\set tout random(0, 5000)
\endif
INSERT INTO calls
SELECT :r, d.entry_id, d.model, d.cost, d.charged, d.shortfall, d.available, d.replayed
  FROM credits.credit_debit('many', 'u' || :u,
         (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[:m],
         :tin, :tout, CASE WHEN :r <= 300 THEN 'req-' || :r END) d;
PGB

pgbench -n -c 16 -j 2 -t 250 -f "$dir/debit.sql" "$db" > "$dir/pgbench.out" 2>&1 || {
    cat "$dir/pgbench.out"; exit 1; }
grep -E "transactions actually processed|failed" "$dir/pgbench.out" || true

# Each check prints a row only when it fails.
failures=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
SET search_path = public, credits;
WITH pool AS (SELECT * FROM credits.pool_status WHERE org_id = 'many'),
     ledger AS (SELECT * FROM credits.ledger WHERE org_id = 'many')
SELECT 'all 4000 calls logged: ' || count(*) FROM calls HAVING count(*) <> 4000
UNION ALL
SELECT 'sum(charged) ' || (SELECT credits.sum(charged) FROM ledger)
       || ' <> allowance_used ' || allowance_used
  FROM pool WHERE allowance_used <> (SELECT credits.sum(charged) FROM ledger)
UNION ALL
SELECT 'sum(charged) of first calls <> allowance_used'
  FROM pool WHERE allowance_used <> (SELECT credits.sum(charged) FROM calls WHERE NOT replayed)
UNION ALL
SELECT 'available < 0 or pool not exhausted: ' || available FROM pool WHERE available <> 0
UNION ALL
SELECT 'ledger entries ' || (SELECT count(*) FROM ledger) || ' <> first calls '
       || (SELECT count(*) FROM calls WHERE NOT replayed)
 WHERE (SELECT count(*) FROM ledger) <> (SELECT count(*) FROM calls WHERE NOT replayed)
UNION ALL
SELECT 'request ' || request || ': ' || count(*) FILTER (WHERE NOT replayed) || ' charges, '
       || count(DISTINCT entry_id) || ' entries'
  FROM calls WHERE request <= 300 GROUP BY request
HAVING count(*) FILTER (WHERE NOT replayed) <> 1 OR count(DISTINCT entry_id) <> 1
UNION ALL
SELECT 'request ' || request_id || ' has ' || count(*) || ' ledger entries'
  FROM ledger WHERE request_id IS NOT NULL GROUP BY request_id HAVING count(*) <> 1
UNION ALL
SELECT 'replays of a request differ from its first result'
  FROM calls c JOIN calls f ON f.request = c.request AND NOT f.replayed
 WHERE c.request <= 300 AND c.replayed
   AND (c.entry_id, c.cost, c.charged, c.shortfall, c.available)
       IS DISTINCT FROM (f.entry_id, f.cost, f.charged, f.shortfall, f.available)
 HAVING count(*) > 0
UNION ALL
SELECT 'fallback call with a shortfall' FROM ledger
 WHERE model IN ('gpt-4o-mini', 'claude-haiku-4-5') AND shortfall <> 0 HAVING count(*) > 0
UNION ALL
SELECT 'u1 drew ' || used || ' over its cap 2' FROM credits.member_usage
 WHERE org_id = 'many' AND user_id = 'u1' AND used > 2
UNION ALL
SELECT 'no request was replayed' WHERE NOT EXISTS (SELECT 1 FROM calls WHERE replayed)
UNION ALL
SELECT 'verify: ' || check_name || ' expected ' || expected || ' actual ' || actual
  FROM credits.verify('many');
SQL
)

if [ -n "$failures" ]; then
    echo "$failures"
    exit 1
fi
psql -X -q -At -d "$db" -c "SELECT 'calls ' || count(*) || ', replayed ' || count(*) FILTER (WHERE replayed) || ', ledger entries ' || (SELECT count(*) FROM credits.ledger WHERE org_id = 'many') FROM calls"
dropdb "$db"
