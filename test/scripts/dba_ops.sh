#!/usr/bin/env bash
# DBA operations under load: the write path obeys PostgreSQL's executor rules.
#
# A private cluster takes debits from 6 pgbench clients (a fixed number of
# transactions, -M prepared): half on a hot org split over 8 escrow stripes
# (its debits write pool_stripes, member_usage and the ledger), half on 16
# one-balance orgs (pools, member_usage, ledger), some of whose members have
# a cap.  Meanwhile a DBA session, on each table a debit writes (ledger,
# pools, pool_stripes, member_usage):
#   - creates an AFTER INSERT OR UPDATE row trigger writing each row it sees
#     into public.audit,
#   - adds a column region text NOT NULL DEFAULT 'eu',
#   - adds CHECK (org_id <> 'refused') NOT VALID to the ledger, then sends
#     debits of the org 'refused' (each must fail with 23514),
# and then, in rounds, on each of those tables: CREATE INDEX CONCURRENTLY of
# an expression index and of a partial index (dropping the previous round's
# with DROP INDEX CONCURRENTLY), REINDEX TABLE CONCURRENTLY, VACUUM FULL and
# CLUSTER ... USING its primary key.
# Afterwards this proves:
#   - pgbench: every transaction processed, 0 failed, no client aborted, and
#     the ledger holds exactly one debit per transaction;
#   - the refused org: every debit failed with 23514 and wrote nothing (no
#     ledger entry, its pool and member usage unchanged, VALIDATE CONSTRAINT
#     passes); no other error anywhere in the server log;
#   - the audit trigger fired exactly once per ledger entry inserted after it
#     was created (with the row as stored), once per write of a one-balance
#     org's pools row and of a member's usage, on every written table, and
#     the last row version it saw is the row as it is now;
#   - region = 'eu' on every row of the four tables;
#   - credits.verify() finds nothing;
#   - amcheck: verify_heapam() finds nothing in any table of schema credits,
#     every index there is valid, and bt_index_parent_check(index, true)
#     (heapallindexed: every heap row is in every btree, partial and
#     expression ones included) passes on each.
# Every check prints one line, "ok ..." or "FAIL ..."; the exit status is 1
# when any failed.  About 25 seconds on 2 cores (DBA_OPS_TX: debits per
# client, 3000).
# (Against 1.0's heap-API write path it failed at the first DDL: an
# expression index stopped every debit with XX000, an added NOT NULL DEFAULT
# column made them 23502, triggers did not fire.)
set -euo pipefail

clients=6
tx=${DBA_OPS_TX:-3000}      # transactions per client
min_rounds=2                # DBA rounds that must run under load
max_rounds=20

bindir=$("${PG_CONFIG:-pg_config}" --bindir)
base=$(mktemp -d /tmp/credits_dba_ops.XXXXXX)
port=$((20000 + RANDOM % 10000))
data="$base/data"
. "$(dirname "$0")/lib/common.sh"   # as_owner
[ "$(id -u)" -eq 0 ] && chown postgres "$base"
pgbench_pid=
dba_pid=

cleanup() {
    for pid in $pgbench_pid $dba_pid; do kill "$pid" 2>/dev/null || true; done
    as_owner "$bindir/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$base"
}
trap cleanup EXIT

as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust >/dev/null
cat >> "$data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$base'
max_connections = 30
log_line_prefix = '%m [%p] %e '
CONF
as_owner "$bindir/pg_ctl" -D "$data" -l "$base/log" -w start >/dev/null 2>&1
psql_() { "$bindir/psql" -X -h "$base" -p "$port" -U postgres -d postgres "$@"; }
q() { psql_ -q -At -v ON_ERROR_STOP=1 -c "$1"; }
# a query of a check: its output, or its error
val() { psql_ -q -At -v ON_ERROR_STOP=1 -c "$1" 2>&1 | tr '\n' ' ' | sed 's/ $//' || true; }

fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
expect() { if [ "$2" = "$3" ]; then ok "$1: $2"; else bad "$1: got '$2', want '$3'"; fi; }

# --- setup -----------------------------------------------------------------
psql_ -q -o /dev/null -v ON_ERROR_STOP=1 <<'SQL'
CREATE EXTENSION credits;
CREATE EXTENSION amcheck;
-- hot: one org debited by every client, split over 8 stripes from the start
SELECT org_id FROM credits.create_org('hot', allowance_per_user => 1000000);
UPDATE credits.orgs SET stripes = 8 WHERE org_id = 'hot';
SELECT credits.enable_provider('hot', 'openai');
SELECT credits.add_member('hot', 'h' || i) FROM generate_series(1, 6) i;
-- s1..s16: one balance each (stripes 0: every debit writes the pools row);
-- in the odd ones u1 has a small cap, which its debits run into
SELECT (credits.create_org('s' || i, allowance_per_user => 100000)).org_id
  FROM generate_series(1, 16) i;
UPDATE credits.orgs SET stripes = 0 WHERE org_id LIKE 's%';
SELECT credits.enable_provider('s' || i, 'openai') FROM generate_series(1, 16) i;
SELECT credits.add_member('s' || i, 'u' || j, cap => CASE WHEN i % 2 = 1 AND j = 1 THEN 40 END)
  FROM generate_series(1, 16) i, generate_series(1, 4) j;
-- refused: the ledger's CHECK refuses its entries
SELECT org_id FROM credits.create_org('refused', allowance_per_user => 1000);
UPDATE credits.orgs SET stripes = 0 WHERE org_id = 'refused';
SELECT credits.enable_provider('refused', 'openai');
SELECT credits.add_member('refused', 'r1');
SELECT credits.add_member('refused', 'r2', cap => 10);

CREATE TABLE public.audit (id bigserial, tbl text NOT NULL, op text NOT NULL,
                           key text NOT NULL, new jsonb NOT NULL);
CREATE FUNCTION public.audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := to_jsonb(NEW);
BEGIN
    INSERT INTO public.audit (tbl, op, key, new)
    VALUES (TG_TABLE_NAME, TG_OP,
            CASE TG_TABLE_NAME
                WHEN 'ledger' THEN r->>'entry_id'
                WHEN 'pools' THEN r->>'org_id'
                WHEN 'pool_stripes' THEN (r->>'org_id') || '/' || (r->>'stripe')
                WHEN 'member_usage' THEN (r->>'org_id') || '/' || (r->>'user_id')
            END, r);
    RETURN NULL;
END
$$;
-- the ledger entries committed when each table's trigger was created
CREATE TABLE public.baseline (tbl text NOT NULL, entry_id bigint NOT NULL);
-- one row per DBA round: debits committed at its start and end, and
-- whether the load was still connected at its end
CREATE TABLE public.dba_log (round int, debits_start bigint, debits_end bigint,
                             load_running boolean);
CREATE TABLE public.refused_before AS
SELECT (SELECT to_jsonb(p) FROM credits.pools p WHERE org_id = 'refused') AS pool,
       (SELECT count(*) FROM credits.member_usage WHERE org_id = 'refused') AS usage_rows;
SQL
setup_entries=$(q "SELECT count(*) FROM credits.ledger")

# --- the load --------------------------------------------------------------
cat > "$base/hot.sql" <<'PGB'
\set u random(1, 6)
\set tin random(100, 5000)
SELECT charged FROM credits.credit_debit('hot', 'h' || :u, 'gpt-4o', :tin, 100);
PGB
cat > "$base/spread.sql" <<'PGB'
\set o random(1, 16)
\set u random(1, 4)
\set m random(1, 3)
\set tin random(100, 5000)
SELECT charged FROM credits.credit_debit('s' || :o, 'u' || :u,
         (ARRAY['gpt-4o', 'gpt-4o', 'gpt-4o-mini'])[:m], :tin, 100);
PGB

# --- the DBA session -------------------------------------------------------
# It runs while the load runs, and this is checked, not assumed: it starts
# once 300 debits have committed; then the triggers, columns and CHECK; then
# rounds of index builds, reindexes, VACUUM FULL and CLUSTER.  Rounds 1 to
# $min_rounds always run, every later one only while pgbench is still
# connected (up to $max_rounds).  Each round logs the debits committed at its
# start and end and whether pgbench was still connected at its end: the
# load has to be running (connected, and debits committed during the round
# and after it) at the end of each of the first $min_rounds rounds, so every
# operation ran under load.  No sleep times anything: pgbench is bounded by
# its transaction count, the DBA session by its rounds and pgbench's progress.
tables="ledger pools pool_stripes member_usage"
declare -A expr_col=([ledger]=charged [pools]=allowance_used [pool_stripes]=used [member_usage]=used)
declare -A partial=(
    [ledger]="(org_id, user_id) WHERE kind = 'debit'"
    [pools]="(org_id) WHERE stripes > 0"
    [pool_stripes]="(org_id, stripe) WHERE calls > 0"
    [member_usage]="(user_id) WHERE org_id = 'hot'")
declare -A unique=([pools]=UNIQUE)
load_running="EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'dba_ops_load')"
refused() {   # $1 debits of the refused org, each expected to fail with 23514
    echo '\set ON_ERROR_STOP 0'
    for n in $(seq 1 "$1"); do
        echo '\echo refused-attempt'
        echo "SELECT 'refused debit committed: ' || entry_id FROM credits.credit_debit('refused', 'r$((n % 2 + 1))', 'gpt-4o', $((n * 100)), 100);"
    done
    echo '\set ON_ERROR_STOP 1'
}
{
    cat <<'SQL'
\set ON_ERROR_STOP 1
\set VERBOSITY verbose
SET statement_timeout = '90s';
DO $$
DECLARE
    n bigint;
    t0 timestamptz := clock_timestamp();
BEGIN
    LOOP
        SELECT count(*) INTO n FROM credits.ledger WHERE kind = 'debit';
        EXIT WHEN n >= 300;
        IF clock_timestamp() > t0 + interval '60 seconds' THEN
            RAISE EXCEPTION 'the load did not start: % debits after 60 seconds', n;
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END
$$;
SQL
    # Each trigger in a transaction of its own, with the ledger entries
    # committed then: CREATE TRIGGER waits for every transaction that wrote
    # the table, and those that write it later wait for this one, so an
    # entry not in the baseline belongs to a debit that wrote the table
    # after the trigger existed.
    for t in $tables; do
        cat <<SQL
BEGIN;
CREATE TRIGGER zz_audit AFTER INSERT OR UPDATE ON credits.$t
    FOR EACH ROW EXECUTE FUNCTION public.audit_row();
INSERT INTO public.baseline SELECT '$t', entry_id FROM credits.ledger;
COMMIT;
SQL
    done
    for t in $tables; do
        echo "ALTER TABLE credits.$t ADD COLUMN region text NOT NULL DEFAULT 'eu';"
    done
    echo "ALTER TABLE credits.ledger ADD CONSTRAINT ledger_not_refused CHECK (org_id <> 'refused') NOT VALID;"
    refused 10
    for i in $(seq 1 "$max_rounds"); do
        echo "SELECT $i <= $min_rounds OR $load_running AS go \\gset"
        echo '\if :go'
        echo "SELECT count(*) AS debits_start FROM credits.ledger WHERE kind = 'debit' \\gset"
        for t in $tables; do
            if [ "$i" -gt 1 ]; then
                echo "DROP INDEX CONCURRENTLY IF EXISTS credits.dba_${t}_expr_$((i - 1));"
                echo "DROP INDEX CONCURRENTLY IF EXISTS credits.dba_${t}_part_$((i - 1));"
            fi
            echo "CREATE INDEX CONCURRENTLY dba_${t}_expr_$i ON credits.$t ((${expr_col[$t]}::text));"
            echo "CREATE ${unique[$t]:-} INDEX CONCURRENTLY dba_${t}_part_$i ON credits.$t ${partial[$t]};"
            echo "REINDEX TABLE CONCURRENTLY credits.$t;"
            echo "VACUUM FULL credits.$t;"
            echo "CLUSTER credits.$t USING ${t}_pkey;"
        done
        refused 3
        echo "INSERT INTO public.dba_log SELECT $i, :debits_start, count(*), $load_running
                FROM credits.ledger WHERE kind = 'debit';"
        echo '\endif'
    done
} > "$base/dba.sql"

echo "load: $clients clients x $tx debits; DBA session: $min_rounds to $max_rounds rounds"
# (statement_timeout: a debit that hangs fails the test instead of hanging it)
PGAPPNAME=dba_ops_load PGOPTIONS="-c statement_timeout=60s" "$bindir/pgbench" -n -c "$clients" -j 2 -M prepared -t "$tx" \
    -f "$base/hot.sql@1" -f "$base/spread.sql@1" \
    -h "$base" -p "$port" -U postgres postgres > "$base/pgbench.out" 2>&1 &
pgbench_pid=$!
psql_ -q -At -f "$base/dba.sql" > "$base/dba.out" 2> "$base/dba.err" &
dba_pid=$!

dba_rc=0
wait "$dba_pid" || dba_rc=$?
dba_pid=
pgbench_rc=0
wait "$pgbench_pid" || pgbench_rc=$?
pgbench_pid=

# --- checks ----------------------------------------------------------------
echo "== load =="
grep -E "^(number of (transactions actually processed|failed transactions)|tps)" "$base/pgbench.out" || true
grep -E "aborted|error" "$base/pgbench.out" | sort | uniq -c | sort -rn | head -5 || true
expect "pgbench exit status" "$pgbench_rc" 0
expect "pgbench transactions processed" \
    "$(sed -n 's/^number of transactions actually processed: //p' "$base/pgbench.out")" \
    "$((clients * tx))/$((clients * tx))"
expect "pgbench failed transactions" \
    "$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$base/pgbench.out")" 0
expect "debits in the ledger (one per transaction)" \
    "$(val "SELECT count(*) FROM credits.ledger WHERE kind = 'debit' AND org_id <> 'refused'")" \
    "$((clients * tx))"
expect "ledger entries other than the load's debits" \
    "$(val "SELECT count(*) - $setup_entries FROM credits.ledger WHERE NOT (kind = 'debit' AND org_id <> 'refused')")" 0
expect "hot org split over 8 stripes (pools.stripes, stripe rows)" \
    "$(val "SELECT p.stripes || ', ' || (SELECT count(*) FROM credits.pool_stripes s WHERE s.org_id = 'hot')
              FROM credits.pools p WHERE p.org_id = 'hot'")" "8, 8"

echo "== DBA session =="
if [ "$dba_rc" -eq 0 ]; then
    ok "DBA session: every statement but the refused debits succeeded"
else
    bad "DBA session stopped (psql exit status $dba_rc):"
    grep -E "ERROR|FATAL" "$base/dba.err" | grep -v "ERROR:  23514:" | head -3 | sed 's/^/       /'
fi
rounds=$(val "SELECT count(*) FROM public.dba_log")
echo "     rounds run: $rounds; per round: debits at start, at end, load connected at end"
echo "     $(val "SELECT string_agg(round || ': ' || debits_start || ' ' || debits_end || ' ' || load_running, '; '
                               ORDER BY round) FROM public.dba_log")"
if [ "${rounds:-0}" -ge "$min_rounds" ] 2>/dev/null; then
    ok "DBA rounds run: $rounds (at least $min_rounds)"
else
    bad "DBA rounds run: $rounds, want at least $min_rounds"
fi
expect "rounds 1..$min_rounds ended with the load connected and debits committed during them" \
    "$(val "SELECT count(*) FROM public.dba_log WHERE round <= $min_rounds
              AND load_running AND debits_end > debits_start")" "$min_rounds"
expect "debits committed after round $min_rounds ended" \
    "$(val "SELECT count(*) FILTER (WHERE kind = 'debit') > (SELECT debits_end FROM public.dba_log
                                                             WHERE round = $min_rounds)
              FROM credits.ledger")" t

echo "== refused org =="
attempts=$(grep -c '^refused-attempt$' "$base/dba.out" || true)
refusals=$(grep -c 'ERROR:  23514:' "$base/dba.err" || true)
others=$(grep 'ERROR:' "$base/dba.err" | grep -vc 'ERROR:  23514:' || true)
echo "     $attempts refused-org debits sent, $refusals failed with 23514"
grep -E "ERROR:  [0-9A-Z]{5}:" "$base/dba.err" | sed -E 's/^psql:[^ ]* //' | sort | uniq -c | sort -rn | head -3 \
    | sed 's/^/     /' || true
[ "$attempts" -ge 10 ] && ok "refused-org debits sent: $attempts" || bad "refused-org debits sent: $attempts"
expect "refused-org debits that failed with 23514" "$refusals" "$attempts"
expect "refused-org debits that committed" "$(grep -c '^refused debit committed' "$base/dba.out" || true)" 0
expect "ledger entries of the refused org" \
    "$(val "SELECT count(*) FROM credits.ledger WHERE org_id = 'refused'")" 0
expect "refused org's pool row unchanged" \
    "$(val "SELECT (SELECT to_jsonb(p) - 'region' FROM credits.pools p WHERE org_id = 'refused')
                   = pool - 'region' FROM public.refused_before")" t
expect "refused org's member_usage rows" \
    "$(val "SELECT count(*) FROM credits.member_usage WHERE org_id = 'refused'")" 0
expect "VALIDATE CONSTRAINT ledger_not_refused" \
    "$(val "ALTER TABLE credits.ledger VALIDATE CONSTRAINT ledger_not_refused; SELECT 'validated'")" validated
errors=$(grep -E '\[[0-9]+\] [0-9A-Z]{5} ERROR:' "$base/log" \
         | grep -v ' 23514 ERROR:  new row for relation "ledger" violates check constraint "ledger_not_refused"' \
         | grep -v ' 57014 ERROR:  canceling autovacuum task' || true)
if [ -z "$errors" ]; then
    ok "server log: no error but the refused org's 23514"
else
    bad "server log: $(wc -l <<<"$errors") other errors, by SQLSTATE and message:"
    sed -E 's/^.* ([0-9A-Z]{5}) ERROR: +/\1 /' <<<"$errors" | sort | uniq -c | sort -rn | head -6 \
        | sed 's/^/       /'
fi

echo "== audit trigger =="
for t in $tables; do
    n=$(val "SELECT coalesce(sum(n), 0) || ' (' || coalesce(string_agg(op || ' ' || n, ', ' ORDER BY op), '') || ')'
               FROM (SELECT op, count(*) n FROM public.audit WHERE tbl = '$t' GROUP BY op) a")
    case "$n" in
        0\ *|ERROR*) bad "audit rows on $t: $n, want at least one" ;;
        *) ok "audit rows on $t: $n" ;;
    esac
done
for t in pools pool_stripes member_usage; do
    expect "$t: the trigger saw updates" "$(val "SELECT count(*) > 0 FROM public.audit WHERE tbl = '$t' AND op = 'UPDATE'")" t
done
# ledger: exactly one INSERT per entry not in its baseline, none for the others
expect "ledger: entries after the trigger, audited, missing, twice, stray, not INSERT" \
    "$(val "WITH post AS (SELECT l.entry_id FROM credits.ledger l WHERE NOT EXISTS (
                            SELECT FROM public.baseline b WHERE b.tbl = 'ledger' AND b.entry_id = l.entry_id)),
                 a AS (SELECT key::bigint AS entry_id, count(*) AS n FROM public.audit
                        WHERE tbl = 'ledger' AND op = 'INSERT' GROUP BY 1)
            SELECT (SELECT count(*) FROM post) > 0, (SELECT count(*) FROM post) = (SELECT coalesce(sum(n), 0) FROM a),
                   (SELECT count(*) FROM post WHERE entry_id NOT IN (SELECT entry_id FROM a)),
                   (SELECT count(*) FROM a WHERE n > 1),
                   (SELECT count(*) FROM a WHERE entry_id NOT IN (SELECT entry_id FROM post)),
                   (SELECT count(*) FROM public.audit WHERE tbl = 'ledger' AND op <> 'INSERT')")" \
    "t|t|0|0|0|0"
expect "ledger: audited rows that differ from the stored entry" \
    "$(val "SELECT count(*) FROM public.audit a JOIN credits.ledger l ON l.entry_id = a.key::bigint
             WHERE a.tbl = 'ledger' AND (a.new - 'region' <> to_jsonb(l) - 'region'
                                         OR coalesce(a.new->>'region', 'eu') <> 'eu')")" 0
# pools: every debit of a one-balance org adds 1 to its calls; each such
# write after the trigger existed is one audited version
post_pools="SELECT org_id, count(*) AS n FROM credits.ledger l
             WHERE org_id LIKE 's%' AND kind = 'debit' AND NOT EXISTS (
                   SELECT FROM public.baseline b WHERE b.tbl = 'pools' AND b.entry_id = l.entry_id)
             GROUP BY 1"
expect "pools: one-balance orgs whose debits after the trigger <> audited versions" \
    "$(val "WITH d AS ($post_pools),
                 a AS (SELECT key AS org_id, count(DISTINCT new->>'calls') AS n FROM public.audit
                        WHERE tbl = 'pools' AND key LIKE 's%' GROUP BY 1)
            SELECT count(*) FILTER (WHERE d.n IS DISTINCT FROM a.n) || ' of ' || count(*)
                   || ' (debits ' || coalesce(sum(d.n), 0) || ', audited versions ' || coalesce(sum(a.n), 0) || ')'
              FROM d FULL JOIN a USING (org_id)")" \
    "0 of 16 (debits $(val "SELECT coalesce(sum(n), 0) FROM ($post_pools) d"), audited versions $(val "SELECT coalesce(sum(n), 0) FROM ($post_pools) d"))"
# member_usage: every debit that charges something adds to the member's
# used; each such write after the trigger existed is one audited version
post_usage="SELECT org_id || '/' || user_id AS key, count(*) AS n FROM credits.ledger l
             WHERE kind = 'debit' AND charged::numeric <> 0 AND NOT EXISTS (
                   SELECT FROM public.baseline b WHERE b.tbl = 'member_usage' AND b.entry_id = l.entry_id)
             GROUP BY 1"
members=$(val "SELECT count(*) FROM ($post_usage) d")
expect "member_usage: members whose charged debits after the trigger <> audited versions" \
    "$(val "WITH d AS ($post_usage),
                 a AS (SELECT key, count(DISTINCT new->>'used') AS n FROM public.audit
                        WHERE tbl = 'member_usage' GROUP BY 1)
            SELECT count(*) FILTER (WHERE d.n IS DISTINCT FROM a.n) || ' of ' || count(*)
              FROM d FULL JOIN a USING (key)")" "0 of $members"
[ "$members" != 0 ] || bad "member_usage: no member was charged after the trigger existed"
# whatever wrote a row last, the trigger saw it: its last audited version is the row now
expect "pools, pool_stripes, member_usage: rows whose last audited version is not the row now" \
    "$(val "WITH last AS (SELECT DISTINCT ON (tbl, key) tbl, key, new FROM public.audit
                           WHERE tbl <> 'ledger' ORDER BY tbl, key, id DESC),
                 cur AS (SELECT 'pools' AS tbl, org_id AS key, to_jsonb(p) AS j FROM credits.pools p
                         UNION ALL
                         SELECT 'pool_stripes', org_id || '/' || stripe, to_jsonb(s) FROM credits.pool_stripes s
                         UNION ALL
                         SELECT 'member_usage', org_id || '/' || user_id, to_jsonb(u) FROM credits.member_usage u)
            SELECT count(*) || coalesce(' (' || string_agg(tbl || ' ' || key, ', ') FILTER (WHERE n <= 3) || ', ...)', '')
              FROM (SELECT l.*, c.j, row_number() OVER () AS n FROM last l LEFT JOIN cur c USING (tbl, key)
                     WHERE c.j - 'region' IS DISTINCT FROM l.new - 'region') x")" 0

echo "== added column =="
for t in $tables; do
    expect "credits.$t: rows whose region is not 'eu'" \
        "$(val "SELECT count(*) FILTER (WHERE region IS DISTINCT FROM 'eu') FROM credits.$t")" 0
done

echo "== verify() =="
expect "credits.verify() rows" "$(val "SELECT count(*) FROM credits.verify()")" 0
val "SELECT string_agg(org_id || ' ' || check_name || ' expected ' || expected || ' actual ' || actual, '; ')
       FROM (SELECT * FROM credits.verify() LIMIT 5) v" | grep . | sed 's/^/     /' || true

echo "== amcheck =="
psql_ -q -o /dev/null -v ON_ERROR_STOP=1 <<'SQL'
CREATE FUNCTION public.check_btrees() RETURNS TABLE(idx text, result text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid, c.relname, i.indisvalid, i.indisready
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_am a ON a.oid = c.relam
              WHERE c.relnamespace = 'credits'::regnamespace AND a.amname = 'btree'
              ORDER BY c.relname LOOP
        idx := r.relname;
        IF NOT (r.indisvalid AND r.indisready) THEN
            result := 'not valid';
        ELSE
            BEGIN
                PERFORM bt_index_parent_check(r.oid::regclass, true);
                result := 'ok';
            EXCEPTION WHEN OTHERS THEN
                result := SQLSTATE || ' ' || SQLERRM;
            END;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
SQL
heap=$(val "SELECT coalesce(string_agg(relname || ' ' || n, ', ' ORDER BY relname) FILTER (WHERE n > 0), '')
              || ' (of ' || count(*) || ' tables)'
              FROM (SELECT c.relname, (SELECT count(*) FROM verify_heapam(c.oid)) AS n
                      FROM pg_class c WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind = 'r') t")
case "$heap" in
    " (of "*) ok "verify_heapam: no corruption in any table$heap" ;;
    *) bad "verify_heapam: corruption found: $heap" ;;
esac
expect "indexes of schema credits that are not valid" \
    "$(val "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE c.relnamespace = 'credits'::regnamespace AND NOT (i.indisvalid AND i.indisready)")" 0
expect "the last round's expression and partial indexes exist" \
    "$(val "SELECT count(*) FROM pg_class WHERE relnamespace = 'credits'::regnamespace
              AND relname ~ '^dba_.*_(expr|part)_[0-9]+$'")" 8
btrees=$(val "SELECT count(*) FROM public.check_btrees()")
btree_bad=$(psql_ -q -At -c "SELECT idx || ': ' || result FROM public.check_btrees() WHERE result <> 'ok'" 2>&1 || true)
if [ -z "$btree_bad" ]; then
    ok "bt_index_parent_check(index, true): all $btrees btree indexes pass"
else
    bad "bt_index_parent_check(index, true) of $btrees btree indexes:"
    sed 's/^/       /' <<<"$btree_bad" | head -10
fi

echo
if [ "$fail" -eq 0 ]; then echo "dba_ops: all checks passed"; else echo "dba_ops: FAILED"; fi
exit $fail
