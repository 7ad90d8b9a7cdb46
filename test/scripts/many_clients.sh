#!/usr/bin/env bash
# Many clients spending one org's small pool at once.
#
# 16 pgbench clients run 4000 transactions in all, mixing:
#  - credit_debit on random premium and fallback models; half of them carry
#    a request_id drawn from a small range, so the same request is sent many
#    times, often concurrently (every argument of a call is derived from its
#    request_id, so repeats are true replays); each result is logged;
#  - credit_reserve, then credit_settle (with up to twice the estimated
#    output), credit_release, or nothing: abandoned holds, with a 1-second
#    TTL, that expire lazily under load and finally through expire_holds();
#  - now and then a small purchased grant (recharge with an amount);
#  - debits of a second org, 'big', whose pool is split over 8 stripes from
#    the start and crosses five thresholds under load: each crossed threshold
#    must be announced exactly once, by the charge that crossed it;
#  - debits of a third org whose small pool, split over 4 stripes, is empty
#    most of the time (debits of an empty pool count on their stripes under
#    a share lock of the pool), with grants racing them.
# pgbench must report every transaction processed and none failed.  Every
# debit and settle it was acknowledged (logged in the same transaction) must
# be in the ledger with the very result the caller got, every ledger charge
# must have been acknowledged, and every replay must return the first result.
# Afterwards the test also asserts exact equalities between the log, the
# ledger, the pool, the holds and verify().
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

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
-- a second org with a large pool split over 8 stripes from the start: most
-- of its debits take the escrow stripes' fast path, and it crosses five
-- thresholds under load (it runs dry: about 1,100 debits of 0.26 credits on
-- average against 160 credits)
SELECT org_id FROM credits.create_org('big', allowance_per_user => 20);
UPDATE credits.orgs SET stripes = 8, thresholds = '{25,50,75,90,100}' WHERE org_id = 'big';
SELECT credits.enable_provider('big', 'openai');
SELECT credits.add_member('big', 'u' || i) FROM generate_series(1, 8) i;
-- a third org that is empty most of the time, split over 4 stripes
SELECT org_id FROM credits.create_org('dry', allowance_per_user => 1);
UPDATE credits.orgs SET stripes = 4 WHERE org_id = 'dry';
SELECT credits.enable_provider('dry', 'openai');
SELECT credits.add_member('dry', 'u' || i) FROM generate_series(1, 8) i;
-- what the callers were told, logged in the transaction of the call: a row
-- here is a call acknowledged to its caller
CREATE TABLE calls (request int, user_id text, request_id text, input_tokens bigint,
                    output_tokens bigint, entry_id bigint, model text, cost credits.credit,
                    charged credits.credit, shortfall credits.credit,
                    available credits.credit, exhausted boolean, replayed boolean);
CREATE TABLE settles (hold_id bigint, input_tokens bigint, output_tokens bigint,
                      entry_id bigint, model text, cost credits.credit, charged credits.credit,
                      shortfall credits.credit, available credits.credit, replayed boolean);
CREATE TABLE big_calls (user_id text, input_tokens bigint, entry_id bigint,
                        cost credits.credit, charged credits.credit,
                        shortfall credits.credit, available credits.credit);
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
SELECT :r, 'u' || :u, CASE WHEN :r <= 300 THEN 'req-' || :r END, :tin, :tout,
       d.entry_id, d.model, d.cost, d.charged, d.shortfall, d.available, d.exhausted, d.replayed
  FROM credits.credit_debit('many', 'u' || :u,
         (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[:m],
         :tin, :tout, CASE WHEN :r <= 300 THEN 'req-' || :r END) d;
PGB

cat > "$dir/hold.sql" <<'PGB'
\set u random(1, 8)
\set m random(1, 4)
\set tin random(0, 20000)
\set tmax random(0, 5000)
\set tout random(0, 10000)
\set act random(1, 3)
SELECT hold_id FROM credits.credit_reserve('many', 'u' || :u,
         (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[:m],
         :tin, :tmax, NULL,
         CASE WHEN :act = 3 THEN interval '1 second' ELSE interval '1 hour' END) \gset
\if :act = 1
INSERT INTO settles
SELECT :hold_id, :tin, :tout, s.entry_id, s.model, s.cost, s.charged, s.shortfall,
       s.available, s.replayed
  FROM credits.credit_settle(:hold_id, :tin, :tout) s;
\elif :act = 2
SELECT credits.credit_release(:hold_id);
\endif
PGB

cat > "$dir/grant.sql" <<'PGB'
SELECT available FROM credits.recharge('many', 1);
PGB

cat > "$dir/dry.sql" <<'PGB'
\set u random(1, 8)
\set m random(1, 2)
\set tin random(0, 20000)
SELECT charged FROM credits.credit_debit('dry', 'u' || :u,
         (ARRAY['gpt-4o', 'gpt-4o-mini'])[:m], :tin, 100);
PGB

cat > "$dir/drygrant.sql" <<'PGB'
SELECT available FROM credits.recharge('dry', '0.5');
PGB

cat > "$dir/big.sql" <<'PGB'
\set u random(1, 8)
\set tin random(0, 2000)
INSERT INTO big_calls
SELECT 'u' || :u, :tin, d.entry_id, d.cost, d.charged, d.shortfall, d.available
  FROM credits.credit_debit('big', 'u' || :u, 'gpt-4o', :tin, 10) d;
PGB

pgbench -n -c 16 -j 2 -t 250 -f "$dir/debit.sql@10" -f "$dir/hold.sql@5" -f "$dir/grant.sql@1" \
    -f "$dir/big.sql@10" -f "$dir/dry.sql@10" -f "$dir/drygrant.sql@1" \
    "$db" > "$dir/pgbench.out" 2>&1 || { cat "$dir/pgbench.out"; exit 1; }
# every transaction ran and none failed
pgbench_clean 4000 "$dir/pgbench.out"

# the abandoned holds: whatever did not expire under load expires now
psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" \
    -c "SELECT 'expired at the end: ' || credits.expire_holds(now() + interval '1 hour')"

# Each check prints a row only when it fails.
failures=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
SET search_path = public, credits;
CREATE TEMP TABLE big_final AS
SELECT p.period_start, o.thresholds,
       p.allowance_used + coalesce((SELECT sum(used) FROM credits.pool_stripes s
                                     WHERE s.org_id = p.org_id), 0)
       + p.topup_used + p.reserved AS spent,
       p.allowance + p.topup_used + p.topup AS total,
       (SELECT max(cost) FROM credits.ledger WHERE org_id = 'big' AND kind = 'debit') AS max_cost
  FROM credits.pools p JOIN credits.orgs o USING (org_id) WHERE p.org_id = 'big';
WITH pool AS (SELECT * FROM credits.pool_status WHERE org_id = 'many'),
     ledger AS (SELECT * FROM credits.ledger WHERE org_id = 'many')
SELECT 'transactions: ' || (SELECT count(*) FROM calls) || ' debits + '
       || (SELECT count(*) FROM credits.holds WHERE org_id = 'many') || ' holds + '
       || (SELECT count(*) FROM credits.grants WHERE org_id = 'many') || ' grants + '
       || (SELECT count(*) FROM credits.ledger WHERE org_id = 'big') || ' big debits + '
       || (SELECT count(*) FROM credits.ledger WHERE org_id = 'dry' AND kind = 'debit') || ' dry debits + '
       || (SELECT count(*) FROM credits.grants WHERE org_id = 'dry') || ' dry grants <> 4000'
 WHERE (SELECT count(*) FROM calls) + (SELECT count(*) FROM credits.holds WHERE org_id = 'many')
       + (SELECT count(*) FROM credits.grants WHERE org_id = 'many')
       + (SELECT count(*) FROM credits.ledger WHERE org_id = 'big' AND kind = 'debit')
       + (SELECT count(*) FROM credits.ledger WHERE org_id = 'dry' AND kind = 'debit')
       + (SELECT count(*) FROM credits.grants WHERE org_id = 'dry') <> 4000
UNION ALL
SELECT 'big: sum(charged) ' || (SELECT sum(charged) FROM credits.ledger WHERE org_id = 'big')
       || ' <> allowance_used ' || s.allowance_used
  FROM credits.pool_status s WHERE s.org_id = 'big'
   AND s.allowance_used <> (SELECT sum(charged) FROM credits.ledger WHERE org_id = 'big')
UNION ALL
SELECT 'big: available ' || available FROM credits.pool_status WHERE org_id = 'big' AND available < 0
UNION ALL
SELECT 'big: the stripes were not used' WHERE NOT EXISTS (
    SELECT 1 FROM credits.pool_stripes WHERE org_id = 'big' AND calls > 0)
   AND (SELECT calls FROM credits.pools WHERE org_id = 'big') = 0
UNION ALL
-- 'big' crossed exactly the thresholds its final pool has reached (spent:
-- allowance used, in the pool row and on its stripes, plus grants used and
-- holds; total: allowance plus grants), each announced exactly once, in
-- ascending order, and at least one
SELECT 'big: threshold events ' || coalesce(e.got::text, '{}') || ', crossed thresholds '
       || coalesce(x.want::text, '{}')
  FROM (SELECT array_agg((payload->>'threshold')::int ORDER BY event_id) AS got
          FROM credits.events WHERE org_id = 'big' AND kind = 'threshold') e,
       (SELECT array_agg(t ORDER BY t) AS want
          FROM big_final b, unnest(b.thresholds) t
         WHERE b.spent::numeric * 100 >= t * b.total::numeric) x
 WHERE e.got IS DISTINCT FROM x.want OR x.want IS NULL
UNION ALL
-- each threshold event of 'big' was written by the charge that crossed it:
-- its period, its total, spent at or past the threshold yet less than one
-- debit's cost past it, available = total - spent, and a ledger debit that
-- left exactly that available and was below the threshold before its charge
SELECT 'big: threshold event ' || ev.event_id || ' ' || ev.payload::text
       || ' is not the crossing of its threshold (total ' || b.total || ', most a debit costs ' || b.max_cost || ')'
  FROM credits.events ev, big_final b
 WHERE ev.org_id = 'big' AND ev.kind = 'threshold'
   AND NOT ((ev.payload->>'period_start')::timestamptz = b.period_start
            AND (ev.payload->>'total')::numeric = b.total::numeric
            AND (ev.payload->>'spent')::numeric * 100 >= (ev.payload->>'threshold')::int * b.total::numeric
            AND ((ev.payload->>'spent')::numeric - b.max_cost::numeric) * 100
                < (ev.payload->>'threshold')::int * b.total::numeric
            AND (ev.payload->>'available')::numeric
                = b.total::numeric - (ev.payload->>'spent')::numeric
            AND EXISTS (SELECT 1 FROM credits.ledger l
                         WHERE l.org_id = 'big' AND l.kind = 'debit' AND l.charged > 0
                           AND l.available_after::numeric = (ev.payload->>'available')::numeric
                           AND (b.total::numeric - l.available_after::numeric - l.charged::numeric) * 100
                               < (ev.payload->>'threshold')::int * b.total::numeric))
UNION ALL
SELECT 'big: the pool did not run dry exactly'
 WHERE (SELECT available FROM credits.pool_status WHERE org_id = 'big') <> 0
UNION ALL
SELECT 'big: verify: ' || check_name FROM credits.verify('big')
UNION ALL
SELECT 'dry: verify: ' || check_name FROM credits.verify('dry')
UNION ALL
SELECT 'dry: a premium debit ran short while credits were left'
 WHERE EXISTS (SELECT 1 FROM credits.ledger WHERE org_id = 'dry' AND kind = 'debit'
                AND shortfall > 0 AND available_after > 0)
UNION ALL
SELECT 'dry: a fallback debit ran short'
 WHERE EXISTS (SELECT 1 FROM credits.ledger WHERE org_id = 'dry' AND model = 'gpt-4o-mini'
                AND shortfall <> 0)
UNION ALL
SELECT 'dry: the pool never ran short' WHERE NOT EXISTS (
    SELECT 1 FROM credits.ledger WHERE org_id = 'dry' AND shortfall > 0)
UNION ALL
SELECT 'dry: calls ' || p.calls || ' + ' || s.calls || ' on the stripes <> '
       || l.calls || ' debits, shortfall ' || p.shortfall || ' + ' || s.shortfall
       || ' on the stripes <> ' || l.shortfall
  FROM credits.pools p,
       (SELECT coalesce(sum(calls), 0) AS calls, coalesce(sum(shortfall), 0) AS shortfall
          FROM credits.pool_stripes WHERE org_id = 'dry') s,
       (SELECT count(*) AS calls, coalesce(sum(shortfall), 0) AS shortfall
          FROM credits.ledger WHERE org_id = 'dry' AND kind = 'debit') l
 WHERE p.org_id = 'dry'
   AND (p.calls + s.calls <> l.calls OR p.shortfall + s.shortfall <> l.shortfall)
UNION ALL
SELECT 'dry: sum(charged) ' || (SELECT sum(charged) FROM credits.ledger WHERE org_id = 'dry')
       || ' <> the 8 allowed plus the grants drawn'
  FROM credits.pool_status s WHERE s.org_id = 'dry'
   AND (SELECT sum(charged) FROM credits.ledger WHERE org_id = 'dry')
       <> s.allowance + (SELECT coalesce(sum(amount), 0) FROM credits.grants WHERE org_id = 'dry')
          - s.available
UNION ALL
SELECT 'sum(charged) ' || (SELECT sum(charged) FROM ledger)
       || ' <> allowance_used + topup_used ' || (p.allowance_used + p.topup_used)
  FROM credits.pools p WHERE p.org_id = 'many'
   AND p.allowance_used + p.topup_used <> (SELECT sum(charged) FROM ledger)
UNION ALL
SELECT 'sum(charged) of first debits <> charged by debits'
 WHERE (SELECT sum(charged) FROM calls WHERE NOT replayed)
       <> (SELECT sum(charged) FROM ledger WHERE kind = 'debit')
UNION ALL
SELECT 'available < 0: ' || available FROM pool WHERE available < 0
UNION ALL
SELECT 'the pool never ran dry' WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE available_after = 0)
UNION ALL
SELECT 'a premium debit had a shortfall while credits were left'
 WHERE EXISTS (SELECT 1 FROM ledger WHERE kind = 'debit' AND shortfall > 0 AND available_after > 0
                AND user_id <> 'u1')  -- u1 runs into its own cap
UNION ALL
SELECT 'credits leaked in holds: reserved ' || reserved FROM pool WHERE reserved <> 0
UNION ALL
SELECT 'open holds left: ' || count(*) FROM credits.holds
 WHERE org_id = 'many' AND status = 'open' HAVING count(*) > 0
UNION ALL
SELECT 'no hold expired lazily, settled and released'
 WHERE (SELECT count(DISTINCT status) FROM credits.holds WHERE org_id = 'many') < 3
UNION ALL
SELECT 'grants not drawn in order' WHERE EXISTS (
    SELECT 1 FROM credits.grants a JOIN credits.grants b USING (org_id)
     WHERE org_id = 'many' AND a.grant_id < b.grant_id AND a.remaining > 0 AND b.remaining < b.amount)
UNION ALL
SELECT 'debit entries ' || (SELECT count(*) FROM ledger WHERE kind = 'debit') || ' <> first calls '
       || (SELECT count(*) FROM calls WHERE NOT replayed)
 WHERE (SELECT count(*) FROM ledger WHERE kind = 'debit') <> (SELECT count(*) FROM calls WHERE NOT replayed)
UNION ALL
SELECT 'request ' || request || ': ' || count(*) FILTER (WHERE NOT replayed) || ' charges, '
       || count(DISTINCT entry_id) || ' entries'
  FROM calls WHERE request <= 300 GROUP BY request
HAVING count(*) FILTER (WHERE NOT replayed) <> 1 OR count(DISTINCT entry_id) <> 1
UNION ALL
-- every debit a caller was told was charged (logged, not a replay) is in the
-- ledger with the very result the caller got
SELECT 'acknowledged debit of request ' || c.request || ' (entry ' || c.entry_id || ', charged '
       || c.charged || ', available ' || c.available || ') is not in the ledger as returned'
  FROM calls c LEFT JOIN ledger l ON l.entry_id = c.entry_id AND l.kind = 'debit'
 WHERE NOT c.replayed
   AND (l.entry_id IS NULL
        OR (l.user_id, l.model, l.input_tokens, l.output_tokens, l.request_id,
            l.cost, l.charged, l.shortfall, l.available_after)
           IS DISTINCT FROM (c.user_id, c.model, c.input_tokens, c.output_tokens, c.request_id,
                             c.cost, c.charged, c.shortfall, c.available)
        OR c.exhausted IS DISTINCT FROM (c.available = 0))
UNION ALL
-- ... and the ledger holds no debit that no caller was told of
SELECT 'ledger debit ' || l.entry_id || ' was never acknowledged to a caller'
  FROM ledger l
 WHERE l.kind = 'debit' AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.entry_id = l.entry_id
                                                                AND NOT c.replayed)
UNION ALL
-- every replay returned the first result: the same entry, model and amounts
-- as the first call of its request, and that entry is the ledger's for it
SELECT 'replay of request ' || c.request || ' returned ' || row(c.entry_id, c.model, c.cost, c.charged,
       c.shortfall, c.available, c.exhausted)::text || ', the first result was '
       || coalesce(row(f.entry_id, f.model, f.cost, f.charged, f.shortfall, f.available,
                       f.exhausted)::text, 'never returned')
  FROM calls c LEFT JOIN calls f ON f.request = c.request AND NOT f.replayed
 WHERE c.replayed
   AND (c.request > 300 OR f.request IS NULL
        OR (c.entry_id, c.model, c.cost, c.charged, c.shortfall, c.available, c.exhausted)
           IS DISTINCT FROM (f.entry_id, f.model, f.cost, f.charged, f.shortfall, f.available,
                             f.exhausted)
        OR NOT EXISTS (SELECT 1 FROM ledger l WHERE l.request_id = c.request_id
                                                AND l.entry_id = c.entry_id))
UNION ALL
-- every settle a caller was told of is in the ledger as returned, and every
-- settle in the ledger was acknowledged
SELECT 'acknowledged settle of hold ' || s.hold_id || ' (entry ' || s.entry_id
       || ') is not in the ledger as returned'
  FROM settles s LEFT JOIN ledger l ON l.entry_id = s.entry_id AND l.kind = 'settle'
 WHERE s.replayed OR l.entry_id IS NULL
    OR (l.hold_id, l.model, l.input_tokens, l.output_tokens, l.cost, l.charged, l.shortfall,
        l.available_after)
       IS DISTINCT FROM (s.hold_id, s.model, s.input_tokens, s.output_tokens, s.cost, s.charged,
                         s.shortfall, s.available)
UNION ALL
SELECT 'ledger settle ' || l.entry_id || ' was never acknowledged to a caller'
  FROM ledger l
 WHERE l.kind = 'settle' AND NOT EXISTS (SELECT 1 FROM settles s WHERE s.entry_id = l.entry_id)
UNION ALL
SELECT 'settled holds ' || (SELECT count(*) FROM credits.holds WHERE org_id = 'many' AND status = 'settled')
       || ' <> acknowledged settles ' || (SELECT count(*) FROM settles)
 WHERE (SELECT count(*) FROM credits.holds WHERE org_id = 'many' AND status = 'settled')
       <> (SELECT count(*) FROM settles)
UNION ALL
-- the same for 'big' (no request ids there)
SELECT 'big: acknowledged debit ' || b.entry_id || ' is not in the ledger as returned'
  FROM big_calls b LEFT JOIN credits.ledger l ON l.entry_id = b.entry_id AND l.org_id = 'big'
                                             AND l.kind = 'debit'
 WHERE l.entry_id IS NULL
    OR (l.user_id, l.model, l.input_tokens, l.output_tokens, l.cost, l.charged, l.shortfall,
        l.available_after)
       IS DISTINCT FROM (b.user_id, 'gpt-4o', b.input_tokens, 10::bigint, b.cost, b.charged,
                         b.shortfall, b.available)
UNION ALL
SELECT 'big: ledger debit ' || l.entry_id || ' was never acknowledged to a caller'
  FROM credits.ledger l
 WHERE l.org_id = 'big' AND l.kind = 'debit'
   AND NOT EXISTS (SELECT 1 FROM big_calls b WHERE b.entry_id = l.entry_id)
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

# structural integrity after the load (amcheck: heap and every btree)
failures+=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -f "$(dirname "$0")/../sql/amcheck.sql" 2>&1) ||
    failures+=$'\namcheck failed to run'

if [ -n "$failures" ]; then
    echo "$failures"
    exit 1
fi
echo "amcheck: heap and btree indexes of schema credits are intact"
psql -X -q -At -d "$db" -c "SELECT 'debits ' || count(*) || ', replayed ' || count(*) FILTER (WHERE replayed) || ', ledger entries ' || (SELECT count(*) FROM credits.ledger WHERE org_id = 'many') || ', holds by status ' || (SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n FROM credits.holds GROUP BY 1 ORDER BY 1) h) || '; big: ' || (SELECT count(*) FROM credits.ledger WHERE org_id = 'big') || ' entries, ' || (SELECT count(*) FROM credits.events WHERE org_id = 'big') || ' events (thresholds ' || (SELECT string_agg(payload->>'threshold', ',' ORDER BY event_id) FROM credits.events WHERE org_id = 'big' AND kind = 'threshold') || ')' FROM calls"
dropdb "$db"
