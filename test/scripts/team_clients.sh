#!/usr/bin/env bash
# Many clients drawing one capped team's last credits at once.
#
# Org 'tm': 10 members with 100 credits each (a pool of 1000), 8 of them in
# team 'blue' with a cap of 30.  8 pgbench clients run 800 debits in all:
# the team's members call premium and fallback models at random (with a
# request id each, some sent twice), the two members outside the team call
# premium models.  The team must draw exactly its cap: 30, no more (no
# overshoot) and no less while premium calls of its members still ran short
# (a premium debit ran short only by the exact remainder of the cap), its
# fallback calls are free once it is exhausted, the members outside it keep
# premium models, and every figure equals the ledger (verify(), amcheck).
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

db=credits_team_clients
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
CREATE EXTENSION credits;
SELECT org_id FROM credits.create_org('tm', allowance_per_user => 100);
SELECT credits.enable_provider('tm', 'openai');
SELECT credits.enable_provider('tm', 'anthropic');
SELECT credits.add_member('tm', 'u' || i) FROM generate_series(1, 10) i;
SELECT credits.create_team('tm', 'blue', 30);
SELECT credits.set_member_team('tm', 'u' || i, 'blue') FROM generate_series(1, 8) i;
-- what each caller was told, logged in the transaction of the call
CREATE TABLE calls (request_id text, user_id text, entry_id bigint, model text,
                    cost credits.credit, charged credits.credit, shortfall credits.credit,
                    replayed boolean);
SQL

cat > "$dir/team.sql" <<'PGB'
\set r random(1, 1200)
\set u :r % 8 + 1
\set m :r % 4 + 1
\set tin (:r * 7919) % 20000
INSERT INTO calls
SELECT 'req-' || :r, 'u' || :u, d.entry_id, d.model, d.cost, d.charged, d.shortfall, d.replayed
  FROM credits.credit_debit('tm', 'u' || :u,
         (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[:m],
         :tin, 100, 'req-' || :r) d;
PGB

cat > "$dir/outside.sql" <<'PGB'
\set u random(9, 10)
\set tin random(0, 2000)
INSERT INTO calls
SELECT NULL, 'u' || :u, d.entry_id, d.model, d.cost, d.charged, d.shortfall, d.replayed
  FROM credits.credit_debit('tm', 'u' || :u, 'gpt-4o', :tin, 10) d;
PGB

pgbench -n -c 8 -j 2 -t 100 -f "$dir/team.sql@4" -f "$dir/outside.sql@1" \
    "$db" > "$dir/pgbench.out" 2>&1 || { cat "$dir/pgbench.out"; exit 1; }
pgbench_clean 800 "$dir/pgbench.out"

# Each check prints a row only when it fails.
failures=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
SET search_path = public, credits;
-- the team's charges in the order they took the pool lock (entry ids are
-- uncached: they follow it), with the team's running total after each
CREATE TEMP TABLE team AS
SELECT l.*, sum(l.charged) OVER (ORDER BY l.entry_id) AS drawn
  FROM credits.ledger l WHERE l.org_id = 'tm' AND l.team_id = 'blue' AND l.kind = 'debit';
SELECT 'team drew ' || coalesce(sum(charged), 0) || ', not exactly its cap 30'
  FROM team HAVING coalesce(sum(charged), 0) <> 30
UNION ALL
SELECT 'team_spend.used ' || used || ' <> 30' FROM credits.team_spend
 WHERE org_id = 'tm' AND team_id = 'blue' AND used <> 30
UNION ALL
SELECT 'team_usage: ' || row(u.*)::text FROM credits.team_usage('tm') u
 WHERE u.team_id = 'blue' AND (u.members, u.cap, u.used, u.charged) <> (8, 30, 30, 30)
UNION ALL
-- a premium call ran short only by what the cap had left: the team was
-- exhausted by that very charge
SELECT 'entry ' || entry_id || ' of ' || model || ' ran short ' || shortfall || ' with '
       || (30 - drawn) || ' of the cap left after it'
  FROM team WHERE shortfall > 0 AND drawn <> 30
UNION ALL
SELECT 'the team never ran short' WHERE NOT EXISTS (SELECT 1 FROM team WHERE shortfall > 0)
UNION ALL
-- once exhausted, its fallback calls were free and its premium calls charged nothing
SELECT 'entry ' || entry_id || ' charged ' || charged || ' after the cap was reached'
  FROM team t
 WHERE charged > 0 AND EXISTS (SELECT 1 FROM team e WHERE e.drawn = 30 AND e.entry_id < t.entry_id)
UNION ALL
SELECT 'fallback entry ' || entry_id || ' ran short' FROM team
 WHERE model IN ('gpt-4o-mini', 'claude-haiku-4-5') AND shortfall <> 0
UNION ALL
-- the members outside the team were charged in full: the pool never ran out
SELECT 'outside member ' || user_id || ' ran short in entry ' || entry_id FROM credits.ledger
 WHERE org_id = 'tm' AND team_id IS NULL AND kind = 'debit' AND shortfall <> 0
UNION ALL
SELECT 'no call of a member outside the team' WHERE NOT EXISTS (
    SELECT 1 FROM credits.ledger WHERE org_id = 'tm' AND team_id IS NULL AND kind = 'debit')
UNION ALL
-- what the callers were told is the ledger, each request charged once
SELECT 'acknowledged debit ' || c.entry_id || ' is not in the ledger as returned'
  FROM calls c LEFT JOIN credits.ledger l ON l.entry_id = c.entry_id
 WHERE NOT c.replayed
   AND (l.entry_id IS NULL OR (l.user_id, l.model, l.cost, l.charged, l.shortfall)
        IS DISTINCT FROM (c.user_id, c.model, c.cost, c.charged, c.shortfall))
UNION ALL
SELECT 'request ' || request_id || ' charged ' || count(*) FILTER (WHERE NOT replayed) || ' times'
  FROM calls WHERE request_id IS NOT NULL GROUP BY request_id
HAVING count(*) FILTER (WHERE NOT replayed) <> 1
UNION ALL
SELECT 'ledger debit ' || l.entry_id || ' was never acknowledged' FROM credits.ledger l
 WHERE l.org_id = 'tm' AND l.kind = 'debit'
   AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.entry_id = l.entry_id AND NOT c.replayed)
UNION ALL
SELECT 'after the run, a team member sees ' || coalesce(string_agg(a.model || ' ' || a.available || ' '
       || coalesce(a.limited_by, '-'), ', '), 'no models')
  FROM credits.allowed_models('tm', 'u1') a
HAVING count(*) FILTER (WHERE NOT a.is_fallback AND a.limited_by = 'team_cap' AND NOT a.available)
       <> count(*) FILTER (WHERE NOT a.is_fallback) OR count(*) = 0
UNION ALL
SELECT 'after the run, u9 (no team) sees ' || a.model || ' unavailable'
  FROM credits.allowed_models('tm', 'u9') a WHERE NOT a.available
UNION ALL
SELECT 'verify: ' || check_name || ' expected ' || expected || ' actual ' || actual
  FROM credits.verify('tm');
SQL
)
failures+=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -f "$(dirname "$0")/../sql/amcheck.sql" 2>&1) ||
    failures+=$'\namcheck failed to run'
if [ -n "$failures" ]; then
    echo "$failures"
    exit 1
fi
psql -X -q -At -d "$db" -c "SELECT 'team debits ' || count(*) || ', ran short ' || count(*) FILTER (WHERE shortfall > 0) || ', drew ' || sum(charged) FROM credits.ledger WHERE org_id = 'tm' AND team_id = 'blue'"
dropdb "$db"
