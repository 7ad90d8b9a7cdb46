#!/usr/bin/env bash
# Many clients racing across auto-recharge thresholds (issue 17).
#
# Three orgs, each 8 members x 1000 credits (a pool of 8000) that recharge
# 500 credits whenever a charge takes available under 4000, at most 3 times
# a period:
#   ars  orgs.stripes = 4 (the pool escrowed over 4 stripes: fast debits)
#   arn  orgs.stripes = 0 (one balance)
#   ard  orgs.stripes NULL (grows stripes when its debits contend)
# 8 pgbench clients run 1600 debits of 5 to 30 credits; a request id picks
# the org, member and size, so that repeated ids are replays.  Each org
# spends well past 4000 + 3 x 60, so it must have recharged exactly 3
# times, each time in the transaction of a debit that crossed the threshold
# (reconstructed from the ledger in entry_id order: available before it >=
# 4000 > available after it, its own grant left out), and every crossing
# while recharges were left must have recharged: the first three crossings
# and no other.  Every acknowledged debit is in the ledger as returned (the
# crossing one's available includes its grant), and verify() and amcheck
# are clean.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"

db=credits_ar_clients
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
CREATE EXTENSION credits;
SELECT (credits.create_org(o, allowance_per_user => 1000)).org_id FROM unnest(ARRAY['ars', 'arn', 'ard']) o;
SELECT credits.enable_provider(o, 'openai') FROM unnest(ARRAY['ars', 'arn', 'ard']) o;
SELECT credits.add_member(o, 'u' || i) FROM unnest(ARRAY['ars', 'arn', 'ard']) o, generate_series(1, 8) i;
UPDATE credits.orgs SET stripes = 4, thresholds = '{}' WHERE org_id = 'ars';
UPDATE credits.orgs SET stripes = 0 WHERE org_id = 'arn';
SELECT credits.set_auto_recharge(o, 4000, 60, 3) FROM unnest(ARRAY['ars', 'arn', 'ard']) o;
-- what each caller was told, logged in the transaction of the call
CREATE TABLE calls (org_id text, request_id text, entry_id bigint, model text, cost credits.credit,
                    charged credits.credit, shortfall credits.credit, available credits.credit,
                    exhausted boolean, replayed boolean);
SQL

cat > "$dir/debit.sql" <<'PGB'
\set r random(1, 2000)
\set o :r % 3 + 1
\set u :r % 8 + 1
\set k :r % 26 + 5
INSERT INTO calls
SELECT (ARRAY['ars', 'arn', 'ard'])[:o], 'req-' || :r, d.*
  FROM credits.credit_debit((ARRAY['ars', 'arn', 'ard'])[:o], 'u' || :u, 'gpt-4o',
                            :k * 4000, 0, 'req-' || :r) d;
PGB

pgbench -n -c 8 -j 2 -t 200 -f "$dir/debit.sql" "$db" > "$dir/pgbench.out" 2>&1 || {
    cat "$dir/pgbench.out"; exit 1; }
pgbench_clean 1600 "$dir/pgbench.out"

# Each check prints a row only when it fails.
failures=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" <<'SQL'
SET search_path = public, credits;
-- each org's ledger in entry_id order, with the available after each entry
-- (8000 + grants - charges so far) and, for a charge, before it; a charge's
-- own auto-recharge grant (same transaction) is left out of its "before"
CREATE TEMP TABLE led AS
SELECT l.org_id, l.entry_id, l.kind, l.charged, l.topup_change, l.available_after,
       l.xmin::text AS xid,
       8000 + sum(coalesce(l.topup_change::numeric, 0) - coalesce(l.charged::numeric, 0))
              OVER (PARTITION BY l.org_id ORDER BY l.entry_id) AS avail
  FROM credits.ledger l WHERE l.org_id IN ('ars', 'arn', 'ard');
CREATE TEMP TABLE charges AS
SELECT d.*, g.entry_id AS grant_entry, coalesce(g.topup_change::numeric, 0) AS grant_amount,
       d.avail + d.charged::numeric - coalesce(g.topup_change::numeric, 0) AS before,
       d.avail - coalesce(g.topup_change::numeric, 0) AS after
  FROM led d
  LEFT JOIN led g ON g.org_id = d.org_id AND g.kind = 'auto_recharge' AND g.xid = d.xid
 WHERE d.kind = 'debit';
CREATE TEMP TABLE crossings AS
SELECT c.*, row_number() OVER (PARTITION BY c.org_id ORDER BY c.entry_id) AS n
  FROM charges c WHERE c.before >= 4000 AND c.after < 4000;

SELECT o || ': ' || count(l.entry_id) || ' auto_recharge entries, not 3'
  FROM unnest(ARRAY['ars', 'arn', 'ard']) o LEFT JOIN led l ON l.org_id = o AND l.kind = 'auto_recharge'
 GROUP BY o HAVING count(l.entry_id) <> 3
UNION ALL
SELECT org_id || ': pools.auto_recharges ' || auto_recharges || ', not 3' FROM credits.pools
 WHERE org_id IN ('ars', 'arn', 'ard') AND auto_recharges <> 3
UNION ALL
SELECT o || ': auto_recharge events counted ' || coalesce(string_agg(e.payload ->> 'recharges_in_period', ',' ORDER BY e.event_id), '')
       || ', not 1,2,3'
  FROM unnest(ARRAY['ars', 'arn', 'ard']) o
  LEFT JOIN credits.events e ON e.org_id = o AND e.kind = 'auto_recharge'
 GROUP BY o HAVING coalesce(string_agg(e.payload ->> 'recharges_in_period', ',' ORDER BY e.event_id), '') <> '1,2,3'
UNION ALL
SELECT 'grant entry ' || g.entry_id || ' of ' || g.org_id || ' is not in the transaction of one debit'
  FROM led g WHERE g.kind = 'auto_recharge'
   AND (SELECT count(*) FROM charges c WHERE c.grant_entry = g.entry_id) <> 1
UNION ALL
SELECT 'grant entry ' || g.entry_id || ' of ' || g.org_id || ' of ' || g.topup_change || ', not 60'
  FROM led g WHERE g.kind = 'auto_recharge' AND g.topup_change <> 60
UNION ALL
SELECT 'debit ' || c.entry_id || ' of ' || c.org_id || ' recharged, but took available from ' || c.before
       || ' to ' || c.after || ' (did not cross 4000)'
  FROM charges c WHERE c.grant_entry IS NOT NULL AND NOT (c.before >= 4000 AND c.after < 4000)
UNION ALL
SELECT 'debit ' || c.entry_id || ' of ' || c.org_id || ' recharged, but its grant entry ' || c.grant_entry
       || ' does not precede it'
  FROM charges c WHERE c.grant_entry IS NOT NULL AND c.grant_entry > c.entry_id
UNION ALL
SELECT 'crossing ' || x.n || ' of ' || x.org_id || ' (debit ' || x.entry_id || ', ' || x.before || ' -> '
       || x.after || ') ' || CASE WHEN x.grant_entry IS NULL THEN 'did not recharge' ELSE 'recharged' END
  FROM crossings x WHERE (x.n <= 3) <> (x.grant_entry IS NOT NULL)
UNION ALL
SELECT o || ': crossed ' || count(x.entry_id) || ' times, fewer than 3 (the test did not spend enough)'
  FROM unnest(ARRAY['ars', 'arn', 'ard']) o LEFT JOIN crossings x ON x.org_id = o
 GROUP BY o HAVING count(x.entry_id) < 3
UNION ALL
SELECT s.org_id || ': available ' || s.available || ', not 8000 + 180 - ' || sum(l.charged)
  FROM credits.pool_status s JOIN credits.ledger l ON l.org_id = s.org_id AND l.kind = 'debit'
 WHERE s.org_id IN ('ars', 'arn', 'ard')
 GROUP BY s.org_id, s.available HAVING s.available::numeric <> 8180 - sum(l.charged::numeric)
UNION ALL
SELECT 'ars: the pool was never striped' FROM credits.pools
 WHERE org_id = 'ars' AND NOT EXISTS (SELECT 1 FROM credits.pool_stripes WHERE org_id = 'ars')
UNION ALL
-- what the callers were told is the ledger, each request charged once; a
-- crossing debit's available includes its grant
SELECT 'acknowledged debit ' || c.entry_id || ' is not in the ledger as returned: ' || row(c.*)::text
  FROM calls c LEFT JOIN credits.ledger l ON l.entry_id = c.entry_id
 WHERE NOT c.replayed
   AND (l.entry_id IS NULL OR (l.org_id, l.model, l.cost, l.charged, l.shortfall, l.available_after)
        IS DISTINCT FROM (c.org_id, c.model, c.cost, c.charged, c.shortfall, c.available))
UNION ALL
SELECT 'crossing debit ' || x.entry_id || ' returned available ' || c.available || ', not ' || x.after || ' + its grant'
  FROM crossings x JOIN calls c ON c.entry_id = x.entry_id AND NOT c.replayed
 WHERE x.grant_entry IS NOT NULL AND c.available::numeric <> x.after + x.grant_amount
UNION ALL
SELECT 'replay of ' || r.request_id || ' returned ' || row(r.*)::text || ', the original ' || row(o.*)::text
  FROM calls r JOIN calls o ON o.request_id = r.request_id AND NOT o.replayed
 WHERE r.replayed AND (r.entry_id, r.cost, r.charged, r.shortfall, r.available)
                      IS DISTINCT FROM (o.entry_id, o.cost, o.charged, o.shortfall, o.available)
UNION ALL
SELECT 'request ' || request_id || ' charged ' || count(*) FILTER (WHERE NOT replayed) || ' times'
  FROM calls GROUP BY request_id HAVING count(*) FILTER (WHERE NOT replayed) <> 1
UNION ALL
SELECT 'ledger debit ' || l.entry_id || ' was never acknowledged' FROM credits.ledger l
 WHERE l.kind = 'debit'
   AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.entry_id = l.entry_id AND NOT c.replayed)
UNION ALL
SELECT 'verify: ' || org_id || ' ' || check_name || ' expected ' || expected || ' actual ' || actual
  FROM credits.verify();
SQL
)
failures+=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -f "$(dirname "$0")/../sql/amcheck.sql" 2>&1) ||
    failures+=$'\namcheck failed to run'
if [ -n "$failures" ]; then
    echo "$failures"
    exit 1
fi
psql -X -q -At -d "$db" -c "
SELECT l.org_id || ': debits ' || count(*) FILTER (WHERE l.kind = 'debit') || ', charged '
       || sum(l.charged) FILTER (WHERE l.kind = 'debit') || ', auto-recharges '
       || count(*) FILTER (WHERE l.kind = 'auto_recharge') || ', stripes ' || max(p.stripes)
  FROM credits.ledger l JOIN credits.pools p USING (org_id) GROUP BY l.org_id ORDER BY l.org_id"
dropdb "$db"
