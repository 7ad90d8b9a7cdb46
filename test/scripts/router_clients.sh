#!/usr/bin/env bash
# Many clients through the credits_router (PL/Proxy): 8 pgbench clients on
# the router of 2 shard servers and 4 partitions (scripts/shards.sh up 2 4).
#
# Five orgs: four with a pool that lasts, one on each partition (so on both
# servers), and 'dry', whose 8-credit pool runs out early, with small
# grants racing its debits.  The clients mix:
#  - credit_debit on the four orgs; half of the calls carry a request id
#    drawn from a small range, every argument (the org included) derived
#    from it, so the same request is sent several times, often at once:
#    true replays, racing;
#  - credit_reserve, then credit_settle, credit_release, or nothing (a hold
#    with a 1-second TTL, expired lazily or by expire_holds() at the end);
#  - debits of 'dry' and grants to it.
#
# What "acknowledged" means through the router: there is no transaction
# across it, each call commits on its shard on its own before its result
# comes back.  So the clients log what they were told themselves: pgbench
# \gset takes the call's result and the next command INSERTs it into a
# table of the router (calls, settles).  A row there is a result a caller
# received; the router's tables never take part in the shard's commit.
#
# Then, exactly: pgbench processed every transaction and none failed; every
# acknowledged debit and settle is in the owning partition's ledger with the
# very result returned, and every ledger debit and settle of these orgs was
# acknowledged; no request was charged twice and every replay returned the
# first result; per org, the ledger's charges equal the pool's figures (read
# through the router and on the shard: allowance + grants - available, and
# the pool's own counters) and the acknowledged charges; no hold is open or
# reserved, each hold id carries its partition; 'dry' ran dry with no
# premium shortfall while credits were left; verify() through the router is
# empty; each org's rows are on its partition and no other; amcheck
# (test/sql/amcheck.sql) is clean on every partition.
# shellcheck disable=SC2317  # functions called through trap
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/test/scripts/lib/common.sh"   # shards_session
shards_session credits_router_clients

die() { echo "not ok - $*"; exit 1; }
clients=8
per_client=600
total=$((clients * per_client))

bash "$here/scripts/shards.sh" up 2 4 > "$work/up.out" 2>&1 || die "shards.sh up failed: $(cat "$work/up.out")"
router=$(tail -1 "$work/up.out")
base=$(cat "$SHARDS_STATE")
declare -A server_port
for s in s0 s1; do server_port[$s]=$(sed -n "s/^port_$s=//p" "$base/state"); done
declare -A part_port
for k in 0 1 2 3; do part_port[$k]=${server_port[$(sed -n "s/^partition_$k=//p" "$base/state")]}; done

R() { psql -X -q -At -v ON_ERROR_STOP=1 "$router" "$@"; }
P() { local k=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -h "$base" -p "${part_port[$k]}" -U postgres -d "credits_p$k" "$@"; }

# four orgs, one per partition (partitions 0 and 2 on server s0, 1 and 3 on s1)
declare -a org_of
for o in $(R -c "SELECT 'team-' || i FROM generate_series(1, 64) i"); do
    k=$(R -c "SELECT credits_router.partition_of('$o')")
    [ -n "${org_of[$k]:-}" ] || org_of[$k]=$o
done
for k in 0 1 2 3; do [ -n "${org_of[$k]:-}" ] || die "no org found for partition $k"; done
orgs="${org_of[*]}"
parts=$(for o in $orgs; do R -c "SELECT credits_router.partition_of('$o')"; done | sort -u | paste -sd,)
[ "$parts" = "0,1,2,3" ] || die "the four orgs are not on four partitions: $parts"
servers=$(for k in 0 1 2 3; do sed -n "s/^partition_$k=//p" "$base/state"; done | sort -u | paste -sd,)
[ "$servers" = "s0,s1" ] || die "the partitions are not on both servers: $servers"
dry_part=$(R -c "SELECT credits_router.partition_of('dry')")
echo "ok - orgs ${org_of[0]} ${org_of[1]} ${org_of[2]} ${org_of[3]} on partitions 0 1 2 3 (servers $servers); 'dry' on partition $dry_part"

# the orgs, through the router
for o in $orgs; do
    R -c "SELECT org_id FROM credits.create_org('$o', allowance_per_user => 400);
          SELECT credits.enable_provider('$o', 'openai');
          SELECT credits.enable_provider('$o', 'anthropic');
          SELECT count(credits.add_member('$o', 'u' || i)) FROM generate_series(1, 8) i" >/dev/null
done
R -c "SELECT org_id FROM credits.create_org('dry', allowance_per_user => 1);
      SELECT credits.enable_provider('dry', 'openai');
      SELECT count(credits.add_member('dry', 'u' || i)) FROM generate_series(1, 8) i" >/dev/null

# what the callers were told, logged by the callers on the router
R -c "CREATE TABLE calls (request int, org_id text, user_id text, model_asked text, request_id text,
                          input_tokens bigint, output_tokens bigint, entry_id bigint, model text,
                          cost credits.credit, charged credits.credit, shortfall credits.credit,
                          available credits.credit, exhausted boolean, replayed boolean);
      CREATE TABLE settles (hold_id bigint, org_id text, input_tokens bigint, output_tokens bigint,
                            entry_id bigint, model text, cost credits.credit, charged credits.credit,
                            shortfall credits.credit, available credits.credit, replayed boolean)"

# a debit of one of the four orgs: request r <= 200 carries request id
# 'req-r' and derives every argument from r (a true replay when repeated)
cat > "$work/debit.sql" <<PGB
\set r random(1, 400)
\if :r <= 200
\set o :r % 4
\set u :r % 8 + 1
\set m :r % 4 + 1
\set tin (:r * 7919) % 20000
\set tout (:r * 104729) % 5000
\else
\set o random(0, 3)
\set u random(1, 8)
\set m random(1, 4)
\set tin random(0, 20000)
\set tout random(0, 5000)
\endif
SELECT entry_id, model, cost, charged, shortfall, available, exhausted, replayed
  FROM credits.credit_debit((ARRAY['${org_of[0]}', '${org_of[1]}', '${org_of[2]}', '${org_of[3]}'])[:o + 1],
         'u' || :u, (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[:m],
         :tin, :tout, CASE WHEN :r <= 200 THEN 'req-' || :r END) \gset
INSERT INTO calls VALUES (:r, (ARRAY['${org_of[0]}', '${org_of[1]}', '${org_of[2]}', '${org_of[3]}'])[:o + 1],
         'u' || :u, (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[:m],
         CASE WHEN :r <= 200 THEN 'req-' || :r END, :tin, :tout, :entry_id, :model, :cost,
         :charged, :shortfall, :available, :exhausted, :replayed);
PGB

# a hold: settled (act 1), released (2) or abandoned with a 1-second TTL (3)
cat > "$work/hold.sql" <<PGB
\set o random(0, 3)
\set u random(1, 8)
\set m random(1, 4)
\set tin random(0, 20000)
\set tmax random(0, 5000)
\set tout random(0, 10000)
\set act random(1, 3)
SELECT hold_id FROM credits.credit_reserve((ARRAY['${org_of[0]}', '${org_of[1]}', '${org_of[2]}', '${org_of[3]}'])[:o + 1],
         'u' || :u, (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5', 'claude-haiku-4-5'])[:m],
         :tin, :tmax, NULL,
         CASE WHEN :act = 3 THEN interval '1 second' ELSE interval '1 hour' END) \gset
\if :act = 1
SELECT entry_id, model, cost, charged, shortfall, available, replayed
  FROM credits.credit_settle(:hold_id, :tin, :tout) \gset
INSERT INTO settles VALUES (:hold_id, (ARRAY['${org_of[0]}', '${org_of[1]}', '${org_of[2]}', '${org_of[3]}'])[:o + 1],
         :tin, :tout, :entry_id, :model, :cost, :charged, :shortfall, :available, :replayed);
\elif :act = 2
SELECT credits.credit_release(:hold_id);
\endif
PGB

# debits of 'dry', which is empty most of the time (premium and fallback)
cat > "$work/dry.sql" <<'PGB'
\set u random(1, 8)
\set m random(1, 2)
\set tin random(0, 20000)
SELECT entry_id, model, cost, charged, shortfall, available, exhausted, replayed
  FROM credits.credit_debit('dry', 'u' || :u, (ARRAY['gpt-4o', 'gpt-4o-mini'])[:m], :tin, 100) \gset
INSERT INTO calls VALUES (NULL, 'dry', 'u' || :u, (ARRAY['gpt-4o', 'gpt-4o-mini'])[:m], NULL, :tin, 100,
         :entry_id, :model, :cost, :charged, :shortfall, :available, :exhausted, :replayed);
PGB

cat > "$work/drygrant.sql" <<'PGB'
SELECT available FROM credits.recharge('dry', '0.5');
PGB

start=$SECONDS
# -M extended: the logged values travel as parameters (text, as \gset took them)
pgbench -n -M extended -c "$clients" -j 2 -t "$per_client" \
    -f "$work/debit.sql@10" -f "$work/hold.sql@5" -f "$work/dry.sql@5" -f "$work/drygrant.sql@1" \
    "$router" > "$work/pgbench.out" 2>&1 || { cat "$work/pgbench.out"; die "pgbench failed"; }
grep -E "^(tps|number of failed)" "$work/pgbench.out" | sed 's/^/# /'
grep -qx "number of transactions actually processed: $total/$total" "$work/pgbench.out" ||
    { cat "$work/pgbench.out"; die "pgbench did not process all $total transactions"; }
grep -qE '^number of failed transactions: 0 ' "$work/pgbench.out" ||
    { cat "$work/pgbench.out"; die "pgbench reported failed transactions"; }
echo "ok - pgbench through the router: $total transactions, none failed ($((SECONDS - start)) s)"

# the abandoned holds: whatever did not expire under load expires now
R -c "SELECT credits.expire_holds(now() + interval '1 hour')" > /dev/null

failures=""
# what the callers logged on the router, and the pools read through the
# router, each with the partition of its org, for the checks on the shards
R -c "\copy (SELECT c.*, credits_router.partition_of(org_id) FROM calls c) TO '$work/calls.csv' CSV"
R -c "\copy (SELECT s.*, credits_router.partition_of(org_id), credits_router.hold_partition(hold_id) FROM settles s) TO '$work/settles.csv' CSV"
R -c "\copy (SELECT p.org_id, p.allowance, p.allowance_used, p.topup, p.reserved, p.available, credits_router.partition_of(org_id) FROM credits.pool_status p) TO '$work/pools.csv' CSV"
[ "$(R -c "SELECT count(*) FROM credits.pool_status")" = 5 ] || failures+=$'\n'"pool_status through the router does not have the 5 orgs"

for k in 0 1 2 3; do
    out=$(P "$k" -v part="$k" <<SQL 2>&1
SET search_path = public, credits;
CREATE TEMP TABLE calls (request int, org_id text, user_id text, model_asked text, request_id text,
                         input_tokens bigint, output_tokens bigint, entry_id bigint, model text,
                         cost credits.credit, charged credits.credit, shortfall credits.credit,
                         available credits.credit, exhausted boolean, replayed boolean, part int);
CREATE TEMP TABLE settles (hold_id bigint, org_id text, input_tokens bigint, output_tokens bigint,
                           entry_id bigint, model text, cost credits.credit, charged credits.credit,
                           shortfall credits.credit, available credits.credit, replayed boolean,
                           part int, hold_part int);
CREATE TEMP TABLE router_pools (org_id text, allowance credits.credit, allowance_used credits.credit,
                                topup credits.credit, reserved credits.credit, available credits.credit,
                                part int);
\copy calls FROM '$work/calls.csv' CSV
\copy settles FROM '$work/settles.csv' CSV
\copy router_pools FROM '$work/pools.csv' CSV
DELETE FROM calls WHERE part <> :part;
DELETE FROM settles WHERE part <> :part;
DELETE FROM router_pools WHERE part <> :part;
CREATE TEMP VIEW mine AS SELECT DISTINCT org_id FROM router_pools;
CREATE TEMP VIEW led AS SELECT * FROM credits.ledger WHERE org_id IN (SELECT org_id FROM mine);
-- each failed check is a row (a NULL message too)
SELECT coalesce(m, 'a check failed (its message is NULL)') FROM (
SELECT 'partition ' || :part || ' has no org of the test'
 WHERE NOT EXISTS (SELECT 1 FROM mine)
UNION ALL
-- every debit a caller was told was charged is in the ledger as returned
SELECT 'acknowledged debit ' || c.entry_id || ' of ' || c.org_id || ' (charged ' || c.charged
       || ', available ' || c.available || ') is not in the ledger as returned'
  FROM calls c LEFT JOIN led l ON l.entry_id = c.entry_id AND l.kind = 'debit'
 WHERE NOT c.replayed
   AND (l.entry_id IS NULL
        OR (l.org_id, l.user_id, l.input_tokens, l.output_tokens, l.request_id, l.model, l.cost,
            l.charged, l.shortfall, l.available_after)
           IS DISTINCT FROM (c.org_id, c.user_id, c.input_tokens, c.output_tokens, c.request_id,
                             c.model, c.cost, c.charged, c.shortfall, c.available)
        OR c.exhausted IS DISTINCT FROM (c.available = 0))
UNION ALL
-- ... and no ledger debit is unknown to the callers
SELECT 'ledger debit ' || l.entry_id || ' of ' || l.org_id || ' was never acknowledged'
  FROM led l
 WHERE l.kind = 'debit' AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.entry_id = l.entry_id AND NOT c.replayed)
UNION ALL
-- no request charged twice: one first call and one entry per request id
SELECT 'request ' || request_id || ' of ' || org_id || ': ' || count(*) FILTER (WHERE NOT replayed)
       || ' charges, ' || count(DISTINCT entry_id) || ' entries'
  FROM calls WHERE request_id IS NOT NULL GROUP BY org_id, request_id
HAVING count(*) FILTER (WHERE NOT replayed) <> 1 OR count(DISTINCT entry_id) <> 1
UNION ALL
SELECT 'request ' || request_id || ' of ' || org_id || ' has ' || count(*) || ' ledger entries'
  FROM led WHERE request_id IS NOT NULL GROUP BY org_id, request_id HAVING count(*) <> 1
UNION ALL
-- every replay returned the first result
SELECT 'replay of ' || coalesce(c.request_id, 'a call without request id') || ' returned ' || row(c.entry_id, c.model, c.cost, c.charged,
       c.shortfall, c.available)::text || ', the first call '
       || coalesce(row(f.entry_id, f.model, f.cost, f.charged, f.shortfall, f.available)::text, 'none')
  FROM calls c LEFT JOIN calls f ON f.org_id = c.org_id AND f.request_id = c.request_id AND NOT f.replayed
 WHERE c.replayed
   AND (c.request_id IS NULL OR f.entry_id IS NULL
        OR (c.entry_id, c.model, c.cost, c.charged, c.shortfall, c.available, c.exhausted)
           IS DISTINCT FROM (f.entry_id, f.model, f.cost, f.charged, f.shortfall, f.available, f.exhausted))
UNION ALL
-- settles: acknowledged ones in the ledger as returned, and only those
SELECT 'acknowledged settle of hold ' || s.hold_id || ' is not in the ledger as returned'
  FROM settles s LEFT JOIN led l ON l.entry_id = s.entry_id AND l.kind = 'settle'
 WHERE s.replayed OR l.entry_id IS NULL
    OR (l.org_id, l.hold_id, l.model, l.input_tokens, l.output_tokens, l.cost, l.charged,
        l.shortfall, l.available_after)
       IS DISTINCT FROM (s.org_id, s.hold_id >> 10, s.model, s.input_tokens, s.output_tokens, s.cost,
                         s.charged, s.shortfall, s.available)
UNION ALL
SELECT 'ledger settle ' || l.entry_id || ' was never acknowledged'
  FROM led l WHERE l.kind = 'settle' AND NOT EXISTS (SELECT 1 FROM settles s WHERE s.entry_id = l.entry_id)
UNION ALL
SELECT 'hold ' || hold_id || ' settled through the router names partition ' || hold_part
  FROM settles WHERE hold_part <> :part
UNION ALL
SELECT 'hold ' || hold_id || ' settled through the router is not the shard''s hold '
       || (hold_id >> 10) || ' with partition ' || :part || ' in its low 10 bits'
  FROM settles WHERE hold_id % 1024 <> :part
UNION ALL
SELECT org_id || ': ' || count(*) FILTER (WHERE status = 'open') || ' open holds, statuses '
       || string_agg(DISTINCT status, ',')
  FROM credits.holds WHERE org_id IN (SELECT org_id FROM mine) GROUP BY org_id
HAVING count(*) FILTER (WHERE status = 'open') > 0
    OR (org_id <> 'dry' AND count(DISTINCT status) < 3)
UNION ALL
-- per org: the router's pool row is the shard's, and the charges add up
SELECT org_id || ': the router''s pool row ' || row(r.allowance, r.allowance_used, r.topup, r.reserved, r.available)::text
       || ' is not the shard''s ' || row(s.allowance, s.allowance_used, s.topup, s.reserved, s.available)::text
  FROM router_pools r LEFT JOIN credits.pool_status s USING (org_id)
 WHERE (r.allowance, r.allowance_used, r.topup, r.reserved, r.available)
       IS DISTINCT FROM (s.allowance, s.allowance_used, s.topup, s.reserved, s.available)
UNION ALL
SELECT r.org_id || ': sum(charged) ' || coalesce(l.charged::text, '0') || ' <> allowance ' || r.allowance
       || ' + grants ' || g.amount || ' - available ' || r.available || ', reserved ' || r.reserved
  FROM router_pools r
  LEFT JOIN (SELECT org_id, sum(charged) AS charged FROM led GROUP BY org_id) l USING (org_id),
  LATERAL (SELECT coalesce(sum(amount), 0) AS amount FROM credits.grants WHERE org_id = r.org_id) g
 WHERE r.reserved <> 0 OR r.available < 0
    OR coalesce(l.charged, 0) <> r.allowance + g.amount - r.available
UNION ALL
SELECT p.org_id || ': sum(charged) ' || coalesce(l.charged::text, '0') || ' <> allowance_used ' || p.allowance_used
       || ' + on stripes ' || coalesce(st.used, 0) || ' + topup_used ' || p.topup_used
  FROM credits.pools p
  LEFT JOIN (SELECT org_id, sum(charged) AS charged FROM led GROUP BY org_id) l USING (org_id)
  LEFT JOIN (SELECT org_id, sum(used) AS used FROM credits.pool_stripes GROUP BY org_id) st USING (org_id)
 WHERE p.org_id IN (SELECT org_id FROM mine)
   AND coalesce(l.charged, 0) <> p.allowance_used + coalesce(st.used, 0) + p.topup_used
UNION ALL
SELECT org_id || ': acknowledged charges ' || a || ' <> the ledger''s ' || b
  FROM (SELECT m.org_id,
               (SELECT coalesce(sum(charged), 0) FROM calls c WHERE c.org_id = m.org_id AND NOT c.replayed)
             + (SELECT coalesce(sum(charged), 0) FROM settles s WHERE s.org_id = m.org_id) AS a,
               (SELECT coalesce(sum(charged), 0) FROM led l WHERE l.org_id = m.org_id) AS b
          FROM mine m) x
 WHERE a <> b
UNION ALL
-- 'dry' ran dry, and never short of a premium call while it had credits
SELECT 'dry never ran dry'
 WHERE EXISTS (SELECT 1 FROM mine WHERE org_id = 'dry')
   AND NOT EXISTS (SELECT 1 FROM led WHERE org_id = 'dry' AND kind = 'debit' AND shortfall > 0)
UNION ALL
SELECT 'dry: debit ' || entry_id || ' ran short while ' || available_after || ' were left'
  FROM led WHERE org_id = 'dry' AND kind = 'debit' AND shortfall > 0 AND available_after > 0
UNION ALL
SELECT 'no request was replayed on partition ' || :part
 WHERE NOT EXISTS (SELECT 1 FROM calls WHERE replayed)
UNION ALL
SELECT 'verify on the shard: ' || org_id || ' ' || check_name FROM credits.verify()
) checks(m);
SQL
) || out+=$'\n'"partition $k: the checks did not run"
    [ -z "$out" ] || failures+=$'\n'"partition $k: $out"
    summary=$(P "$k" -c "SELECT string_agg(org_id || ' ' || n || ' entries', ', ' ORDER BY org_id) FROM (SELECT org_id, count(*) n FROM credits.ledger GROUP BY 1) x")
    echo "# partition $k: $summary"
done

# the transactions add up: every debit logged, every hold and grant on a shard
holds=0 grants=0
for k in 0 1 2 3; do
    holds=$((holds + $(P "$k" -c "SELECT count(*) FROM credits.holds")))
    grants=$((grants + $(P "$k" -c "SELECT count(*) FROM credits.grants WHERE org_id = 'dry'")))
done
calls=$(R -c "SELECT count(*) FROM calls")
[ $((calls + holds + grants)) -eq "$total" ] ||
    failures+=$'\n'"debits $calls + holds $holds + grants $grants <> $total transactions"

# verify() through the router covers every partition
v=$(R -c "SELECT org_id || ' ' || check_name FROM credits.verify()")
[ -z "$v" ] || failures+=$'\n'"verify() through the router: $v"

# each org's rows are on its own partition and on no other
expected=$(for o in $orgs dry; do echo "$o:$(R -c "SELECT credits_router.partition_of('$o')")"; done | sort)
found=$(for k in 0 1 2 3; do
    P "$k" -c "SELECT DISTINCT org_id || ':$k' FROM (SELECT org_id FROM credits.orgs UNION ALL SELECT org_id FROM credits.pools
               UNION ALL SELECT org_id FROM credits.members UNION ALL SELECT org_id FROM credits.ledger
               UNION ALL SELECT org_id FROM credits.holds UNION ALL SELECT org_id FROM credits.grants) x"
done | sort)
[ "$expected" = "$found" ] || failures+=$'\n'"org rows by partition: expected $(echo "$expected" | paste -sd' '), found $(echo "$found" | paste -sd' ')"

# structural integrity of every partition after the load
for k in 0 1 2 3; do
    a=$(P "$k" -f "$here/test/sql/amcheck.sql" 2>&1) || a+=" (amcheck failed to run)"
    [ -z "$a" ] || failures+=$'\n'"partition $k amcheck: $a"
done

if [ -n "$failures" ]; then
    echo "not ok - router_clients:$failures"
    exit 1
fi
echo "# $(R -c "SELECT count(*) || ' debits logged, ' || count(*) FILTER (WHERE replayed) || ' replayed, '
                      || count(DISTINCT request_id) || ' request ids' FROM calls"), $holds holds, $grants grants"
echo "router_clients: all checks passed ($((SECONDS)) s)"
