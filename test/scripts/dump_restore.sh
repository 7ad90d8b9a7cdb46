#!/usr/bin/env bash
# pg_dump / pg_restore of a database using credits: edited catalog prices,
# a new and a deactivated model, a moved fallback, several orgs, a ledger,
# grants, open holds, threshold, top-up and period-reset events, closed
# periods and a pool split into escrow stripes that hold funds and charges
# not yet folded into the pool row all survive, row for row; verify() is
# clean; work continues (the stripes keep charging, thresholds already
# announced are not announced again, new ids follow the old ones).
set -euo pipefail

src=credits_dump_src
dst=credits_dump_dst
file=$(mktemp)
trap 'rm -f "$file"; dropdb --if-exists "$src" >/dev/null 2>&1; dropdb --if-exists "$dst" >/dev/null 2>&1' EXIT

for db in "$src" "$dst"; do dropdb --if-exists "$db" >/dev/null 2>&1; done
createdb "$src"
psql -X -q -o /dev/null -v ON_ERROR_STOP=1 -d "$src" <<'SQL'
CREATE EXTENSION credits;
-- catalog edits: a price, a new model, a deactivated one, a moved fallback
UPDATE credits.models SET input_price = 260, output_price = 1040 WHERE model = 'gpt-4o';
SELECT credits.add_provider('mistral', 'Mistral');
SELECT credits.upsert_model('mistral', 'mistral-small', 10, 30, is_fallback => true);
SELECT credits.upsert_model('mistral', 'mistral-large', 200, 600);
UPDATE credits.models SET active = false WHERE model = 'o3';
SELECT credits.upsert_model('google', 'gemini-2.5-flash', 30, 250, is_fallback => true);

SELECT org_id FROM credits.create_org('d1', allowance_per_user => 50);
SELECT org_id FROM credits.create_org('d2', allowance_per_user => 5, time_zone => 'Europe/Berlin');
SELECT credits.enable_provider(o, p) FROM unnest(ARRAY['d1', 'd2']) o,
       unnest(ARRAY['openai', 'mistral', 'google']) p;
SELECT credits.add_member('d1', 'u' || i, cap => CASE WHEN i = 1 THEN 10 END) FROM generate_series(1, 3) i;
SELECT credits.add_member('d2', 'v1');
SELECT (SELECT charged FROM credits.credit_debit('d1', 'u' || (i % 3 + 1), 'gpt-4o', 10000 * i, 1000, 'r' || i))
  FROM generate_series(1, 20) i;
SELECT charged FROM credits.credit_debit('d2', 'v1', 'mistral-large', 100000, 10000);
SELECT available FROM credits.recharge('d2', 20, now() + interval '30 days', 'bought');
SELECT charged FROM credits.credit_debit('d2', 'v1', 'mistral-large', 10000, 1000);
CREATE TABLE open_holds AS
SELECT hold_id FROM credits.credit_reserve('d1', 'u2', 'gpt-4o', 1000, 2000, 'h1');

-- a pool of 100 split over 4 stripes: the first debit of this session
-- escrows the stripes, the next ones are charged to this backend's stripe
-- while it holds enough; 13 debits of 6.24 cross 80% (81.12), then 3 of 1.04
-- are charged to the stripe escrowed below the 100% threshold (84.24)
SELECT org_id FROM credits.create_org('d3', allowance_per_user => 50);
UPDATE credits.orgs SET stripes = 4 WHERE org_id = 'd3';
SELECT credits.enable_provider('d3', 'openai');
SELECT credits.add_member('d3', 'w' || i) FROM generate_series(1, 2) i;
SELECT (SELECT charged FROM credits.credit_debit('d3', 'w' || (i % 2 + 1), 'gpt-4o', 20000, 1000))
  FROM generate_series(1, 13) i;
SELECT (SELECT charged FROM credits.credit_debit('d3', 'w' || (i % 2 + 1), 'gpt-4o', 4000))
  FROM generate_series(1, 3) i;

-- an org with 1-second periods, for closed periods
SELECT org_id FROM credits.create_org('d4', allowance_per_user => 10, period => '1 second');
SELECT credits.enable_provider('d4', 'openai');
SELECT credits.add_member('d4', 'x1');
SELECT charged FROM credits.credit_debit('d4', 'x1', 'gpt-4o', 20000);
SQL

# close two of d4's periods: wait (bounded, on the pool's own period_end)
# until its period has ended, then a debit rolls it over; then give it
# yearly periods, so that it stays in one period while it is dumped,
# restored and compared
for n in 1 2; do
    for i in $(seq 1 100); do
        [ "$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$src" \
               -c "SELECT now() >= period_end FROM credits.pools WHERE org_id = 'd4'")" = t ] && break
        [ "$i" -lt 100 ] || { echo "d4's 1-second period did not end within 10 s"; exit 1; }
        sleep 0.1
    done
    psql -X -q -At -o /dev/null -v ON_ERROR_STOP=1 -d "$src" \
        -c "SELECT charged FROM credits.credit_debit('d4', 'x1', 'gpt-4o', 4000)"
done
psql -X -q -At -o /dev/null -v ON_ERROR_STOP=1 -d "$src" \
    -c "UPDATE credits.orgs SET period = '1 year' WHERE org_id = 'd4'"

# the fixture is what this test claims to dump (each line is a failure)
fixture=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$src" <<'SQL'
SELECT 'd3: no stripe holds funds and charges not folded into the pool row'
 WHERE NOT EXISTS (SELECT 1 FROM credits.pool_stripes
                    WHERE org_id = 'd3' AND funds > 0 AND used > 0 AND calls > 0);
SELECT 'd3: the pool is not split over 4 stripes' FROM credits.pools
 WHERE org_id = 'd3' AND stripes <> 4;
SELECT 'd4: ' || count(*) || ' closed periods, not 2' FROM credits.periods
 WHERE org_id = 'd4' HAVING count(*) <> 2;
SELECT 'events: ' || coalesce(string_agg(DISTINCT kind, ','), 'none')
       || ', not period_reset, threshold and topup'
  FROM credits.events HAVING array_agg(DISTINCT kind ORDER BY kind) <> '{period_reset,threshold,topup}';
SELECT 'd3: 80% not announced (alone)'
 WHERE (SELECT array_agg((payload->>'threshold')::int ORDER BY event_id) FROM credits.events
         WHERE org_id = 'd3' AND kind = 'threshold') IS DISTINCT FROM '{80}';
SELECT 'd1: thresholds 80 and 100 not announced'
 WHERE (SELECT array_agg((payload->>'threshold')::int ORDER BY event_id) FROM credits.events
         WHERE org_id = 'd1' AND kind = 'threshold') IS DISTINCT FROM '{80,100}';
SQL
)
[ -z "$fixture" ] || { echo "$fixture"; exit 1; }

pg_dump -Fc -f "$file" "$src"
createdb "$dst"
pg_restore -d "$dst" --exit-on-error "$file"

# The restored database holds the same catalog, pools, ledger, grants and
# holds as the dumped one.
snapshot() {
    psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" <<'SQL'
SELECT 'model', model, provider, input_price, output_price, request_price, is_fallback, active, shipped
  FROM credits.models ORDER BY model;
SELECT 'provider', provider, display_name, shipped FROM credits.providers ORDER BY provider;
SELECT 'org', * FROM credits.orgs ORDER BY org_id;
SELECT 'org_provider', * FROM credits.org_providers ORDER BY 2, 3;
SELECT 'member', * FROM credits.members ORDER BY 2, 3;
-- (the forecast columns depend on the clock: what they are made of is compared)
SELECT 'pool', org_id, period_start, period_end, allowance, allowance_used, topup, reserved,
       available, exhausted FROM credits.pool_status ORDER BY org_id;
SELECT 'pool_row', * FROM credits.pools ORDER BY org_id;
SELECT 'stripe', * FROM credits.pool_stripes ORDER BY org_id, stripe;
SELECT 'period', * FROM credits.periods ORDER BY org_id, period_start;
SELECT 'usage', * FROM credits.member_usage ORDER BY 2, 3;
SELECT 'ledger', * FROM credits.ledger ORDER BY entry_id;
SELECT 'grant', * FROM credits.grants ORDER BY grant_id;
SELECT 'draw', * FROM credits.grant_draws ORDER BY 2, 3;
SELECT 'hold', * FROM credits.holds ORDER BY hold_id;
SELECT 'event', * FROM credits.events ORDER BY event_id;
SQL
}
snapshot "$src" > "$file.src"
snapshot "$dst" > "$file.dst"
if ! diff "$file.src" "$file.dst"; then
    echo "the restored database differs from the dumped one"; exit 1
fi
grep -q '^model|gpt-4o|openai|260|1040|0|f|t|f$' "$file.dst" || { echo "edited gpt-4o price lost"; exit 1; }
grep -q '^model|o3|openai|200|800|0|f|f|f$' "$file.dst" || { echo "deactivated o3 lost"; exit 1; }
grep -q '^model|gemini-2.5-flash|google|30|250|0|t|t|f$' "$file.dst" || { echo "moved fallback lost"; exit 1; }
grep -q '^stripe|d3|' "$file.dst" || { echo "d3's stripes lost"; exit 1; }
grep -q '^period|d4|' "$file.dst" || { echo "d4's closed periods lost"; exit 1; }
echo "restored: $(grep -c '^ledger' "$file.dst") ledger entries, $(grep -c '^model' "$file.dst") models," \
     "$(grep -c '^stripe' "$file.dst") stripes, $(grep -c '^period' "$file.dst") closed periods," \
     "$(grep -c '^event' "$file.dst") events, identical"
rm -f "$file.src" "$file.dst"

# work continues after the restore: new debits, a replay, the open hold, new ids
after=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$dst" <<'SQL'
SET search_path = public, credits;
CREATE TEMP TABLE events_before AS SELECT * FROM credits.events;
\set QUIET on
SELECT 'replayed ' || replayed FROM credits.credit_debit('d1', 'u2', 'gpt-4o', 10000, 1000, 'r1');
SELECT 'new debit ' || (NOT replayed) FROM credits.credit_debit('d1', 'u3', 'gpt-4o', 1000, 100, 'r-new');
SELECT entry_id FROM credits.credit_settle((SELECT hold_id FROM open_holds), 1000, 1000) \gset
SELECT 'settled ' || (status = 'settled') FROM credits.holds JOIN open_holds USING (hold_id);
SELECT 'new entry ids ' || (min(entry_id) > (SELECT max(entry_id) FROM credits.ledger WHERE request_id = 'r20'))
  FROM credits.ledger WHERE request_id = 'r-new';
-- d1 is empty: its thresholds, announced before the dump, are not announced again
SELECT 'd1 thresholds announced again ' || count(*) FROM credits.events
 WHERE org_id = 'd1' AND kind = 'threshold' AND event_id > (SELECT max(event_id) FROM events_before);
-- the split pool keeps charging through its restored stripes: 84.24 + 4 *
-- 1.04 = 88.40, past 80% (announced before the dump: not again); then two
-- debits of 6.24 empty it (the second is charged 5.36): one 100% event
SELECT 'd3 charged ' || sum(charged) FROM (
    SELECT (credits.credit_debit('d3', 'w' || (i % 2 + 1), 'gpt-4o', 4000)).charged
      FROM generate_series(1, 4) i) d;
SELECT 'd3 available ' || available FROM credits.pool_status WHERE org_id = 'd3';
SELECT 'd3 charged ' || sum(charged) FROM (
    SELECT (credits.credit_debit('d3', 'w' || (i % 2 + 1), 'gpt-4o', 20000, 1000)).charged
      FROM generate_series(1, 2) i) d;
SELECT 'd3 new events ' || coalesce(string_agg(format('%s %s %s', kind, payload->'threshold',
                                                      payload->'spent'), '; ' ORDER BY event_id), 'none')
       || ', new id ' || (min(event_id) > (SELECT max(event_id) FROM events_before))
  FROM credits.events WHERE org_id = 'd3' AND event_id NOT IN (SELECT event_id FROM events_before);
SELECT 'd3 ledger ' || sum(charged) || ' = pool ' || (p.allowance_used + coalesce(
           (SELECT sum(used) FROM credits.pool_stripes s WHERE s.org_id = 'd3'), 0))
  FROM credits.ledger l, credits.pools p WHERE l.org_id = 'd3' AND p.org_id = 'd3'
 GROUP BY p.allowance_used;
-- d4 keeps its closed periods and counts in its current one
SELECT 'd4 charged ' || charged FROM credits.credit_debit('d4', 'x1', 'gpt-4o', 4000);
SELECT 'd4 periods ' || count(*) FROM credits.periods WHERE org_id = 'd4';
SELECT 'violations ' || count(*) FROM credits.verify();
SQL
)
echo "$after"
[ "$after" = "replayed true
new debit true
settled true
new entry ids true
d1 thresholds announced again 0
d3 charged 4.16
d3 available 11.6
d3 charged 11.6
d3 new events threshold 100 100, new id true
d3 ledger 100 = pool 100
d4 charged 1.04
d4 periods 2
violations 0" ] || { echo "after the restore: not as expected"; exit 1; }
