#!/usr/bin/env bash
# NOTIFY delivery of credits events to a real LISTENing client.
#
# A psql session LISTENs on channel "credits" (fed through a FIFO); a second
# psql session (the sender) charges, recharges and tops up an org inside
# transactions it commits or rolls back.  After each step a third session
# commits a NOTIFY on a private sync channel: notifications reach a listener
# in commit order, so once the listener has printed the sync notification it
# has printed everything committed before it.  psql prints notifications
# after each command it runs, so the listener is fed a trivial command until
# the sync line appears (bounded).  No sleep decides anything.
#
# Checked, per step: exactly the expected notifications, in order, each
# payload equal to its credits.events row (event_id, org_id, kind,
# created_at and the event's payload) and to the values expected, sent by the
# sender's backend; nothing while the transaction is open; nothing from a
# transaction that rolled back; and at the end every event of the org was
# delivered exactly once.
set -euo pipefail

db=credits_notify
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$dir"
    dropdb --if-exists "$db" >/dev/null 2>&1 || true
}
trap cleanup EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
dropdb --if-exists "$db" >/dev/null 2>&1
createdb "$db"
q -o /dev/null <<'SQL'
CREATE EXTENSION credits;
SELECT org_id FROM credits.create_org('nt', allowance_per_user => 10);   -- thresholds {80,100}
SELECT credits.enable_provider('nt', 'openai');
SELECT credits.add_member('nt', 'ann');
SQL

# A long-lived psql session NAME, fed through a FIFO: in_NAME and out_NAME
# are its input and output file descriptors.
start_session() {
    local name=$1 fin fout
    mkfifo "$dir/$name.in" "$dir/$name.out"
    psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" < "$dir/$name.in" > "$dir/$name.out" 2>&1 &
    pids+=($!)
    exec {fin}>"$dir/$name.in" {fout}<"$dir/$name.out"
    printf -v "in_$name" %s "$fin"
    printf -v "out_$name" %s "$fout"
}
# run NAME SQL: run SQL in session NAME and wait (at most 30 s per line) for
# its end; the lines it printed are in the array lines.
marks=0
run() {
    local name=$1 sql=$2 fin fout line
    fin=in_$name; fout=out_$name
    marks=$((marks + 1))
    printf '%s\n\\echo @@end-%s\n' "$sql" "$marks" >&"${!fin}"
    lines=()
    while :; do
        IFS= read -r -t 30 line <&"${!fout}" || {
            echo "FAIL: session $name printed no end of '$sql' within 30 s; it printed: ${lines[*]-}"
            exit 1; }
        [ "$line" = "@@end-$marks" ] && break
        lines+=("$line")
    done
}

start_session listener
start_session sender
run listener "LISTEN credits; LISTEN credits_test_sync;"
run sender "SELECT pg_backend_pid();"
sender_pid=${lines[0]}

# sync: commit a NOTIFY on the sync channel from a third session, then poll
# the listener until it prints it (at most 300 polls).  The notifications on
# "credits" printed before it are in the array notes ("PID payload").
syncs=0
sync() {
    local line done=0
    syncs=$((syncs + 1))
    q -c "NOTIFY credits_test_sync, 'sync-$syncs'"
    notes=()
    for i in $(seq 1 300); do
        run listener "SELECT 1 \\g /dev/null"
        for line in "${lines[@]}"; do
            if [ "$done" = 1 ]; then
                echo "FAIL: the listener printed after the sync: $line"; exit 1
            elif [[ $line =~ ^Asynchronous\ notification\ \"credits_test_sync\"\ with\ payload\ \"sync-$syncs\"\ received\ from\ server\ process\ with\ PID\ [0-9]+\.$ ]]; then
                done=1
            elif [[ $line =~ ^Asynchronous\ notification\ \"credits\"\ with\ payload\ \"(.*)\"\ received\ from\ server\ process\ with\ PID\ ([0-9]+)\.$ ]]; then
                notes+=("${BASH_REMATCH[2]} ${BASH_REMATCH[1]}")
            else
                echo "FAIL: unexpected output of the listener: $line"; exit 1
            fi
        done
        [ "$done" = 1 ] && return 0
        sleep 0.05
    done
    echo "FAIL: the listener did not receive sync-$syncs after 300 polls"; exit 1
}

# What a notification says, as one line: its kind and values, whether it
# equals its credits.events row, and whether the sender sent it.
describe() {
    local pid=${1%% *} payload=${1#* }
    q -v p="$payload" -v pid="$pid" -v sender="$sender_pid" <<'SQL'
SELECT concat_ws(' ', p->>'kind', p->>'org_id',
         CASE p->>'kind'
           WHEN 'threshold' THEN format('threshold=%s spent=%s total=%s available=%s',
                                        p->'threshold', p->'spent', p->'total', p->'available')
           WHEN 'recharge' THEN format('restored=%s available=%s note=%s',
                                       p->'restored', p->'available', p->'note')
           WHEN 'topup' THEN format('amount=%s available=%s expires_at=%s note=%s',
                                    p->'amount', p->'available', p->'expires_at', p->'note')
         END,
         'period=' || ((p->>'period_start')::timestamptz
                       = (SELECT period_start FROM credits.pools WHERE org_id = 'nt')),
         'as-in-events=' || coalesce((SELECT p = jsonb_build_object('event_id', e.event_id,
                                                                    'org_id', e.org_id,
                                                                    'kind', e.kind,
                                                                    'created_at', e.created_at)
                                               || e.payload
                                        FROM credits.events e
                                       WHERE e.event_id = (p->>'event_id')::bigint), false),
         'by-sender=' || (:'pid' = :'sender'))
  FROM (SELECT :'p'::jsonb AS p) n;
SQL
}
events_after() {   # the ids of the org's events after event $1, in order
    q -c "SELECT coalesce(string_agg(event_id::text, ' ' ORDER BY event_id), '')
            FROM credits.events WHERE org_id = 'nt' AND event_id > $1"
}
fail=0
last_event=0
# expect STEP WANT...: the notes of the last sync are exactly the events
# written since the previous step, in order, and describe as WANT...
expect() {
    local step=$1 got=() ids=() n
    shift
    for n in "${notes[@]}"; do
        got+=("$(describe "$n")")
        ids+=("$(sed -E 's/.*"event_id": ([0-9]+).*/\1/' <<<"${n#* }")")
    done
    local want_ids
    want_ids=$(events_after "$last_event")
    if [ "${got[*]-}" != "$*" ] || [ "${ids[*]-}" != "$want_ids" ]; then
        echo "FAIL $step:"
        printf '  got:  %s\n' "${got[@]-}" "event ids ${ids[*]-}"
        printf '  want: %s\n' "$@" "event ids $want_ids"
        fail=1
    else
        echo "ok $step (${#notes[@]} notifications)"
    fi
    last_event=$(q -c "SELECT coalesce(max(event_id), 0) FROM credits.events")
}
tail_ok="period=true as-in-events=true by-sender=true"

sync
expect "nothing before any event"

# 1. a debit crossing 80% (8 of 10 credits), committed: nothing while its
# transaction is open, one notification at commit
run sender "BEGIN;
SELECT charged FROM credits.credit_debit('nt', 'ann', 'gpt-4o', 32000);
SELECT count(*) FROM credits.events;"
[ "${lines[*]}" = "8 1" ] || { echo "FAIL: the debit in the open transaction: ${lines[*]}"; exit 1; }
sync
expect "nothing while the debit's transaction is open"
run sender "COMMIT;"
sync
expect "the committed debit announces 80%" \
    "threshold nt threshold=80 spent=8 total=10 available=2 $tail_ok"

# 2. a debit crossing 100%, rolled back: its event was written in the
# transaction, and nothing is delivered
run sender "BEGIN;
SELECT charged FROM credits.credit_debit('nt', 'ann', 'gpt-4o', 8000);
SELECT count(*) FROM credits.events;
ROLLBACK;"
[ "${lines[*]}" = "2 2" ] || { echo "FAIL: the debit rolled back: ${lines[*]}"; exit 1; }
sync
expect "the rolled back debit announces nothing"

# 3. one transaction: a recharge (the period restored), then a debit of the
# whole pool crossing 80% and 100% at once: three notifications, in order
run sender "BEGIN;
SELECT available FROM credits.recharge('nt', note => 'restore');
SELECT charged FROM credits.credit_debit('nt', 'ann', 'gpt-4o', 40000);
COMMIT;"
[ "${lines[*]}" = "10 10" ] || { echo "FAIL: the recharge and debit: ${lines[*]}"; exit 1; }
sync
expect "a recharge and a debit crossing two thresholds, one transaction" \
    "recharge nt restored=8 available=10 note=\"restore\" $tail_ok" \
    "threshold nt threshold=80 spent=10 total=10 available=0 $tail_ok" \
    "threshold nt threshold=100 spent=10 total=10 available=0 $tail_ok"

# 4. a purchased top-up (autocommit)
run sender "SELECT available FROM credits.recharge('nt', 5, note => 'bought');"
sync
expect "a top-up" \
    "topup nt amount=5 available=5 expires_at=null note=\"bought\" as-in-events=true by-sender=true"

# every event of the org was delivered, each once (the steps above)
[ "$(q -c "SELECT count(*) FROM credits.events WHERE org_id = 'nt'")" = 5 ] || {
    echo "FAIL: credits.events does not hold the 5 events delivered"; fail=1; }
exit $fail
