#!/usr/bin/env bash
# credits.schedule_jobs() registers reset_due() and expire_holds() with a real
# pg_cron, exactly as documented (two jobs, every minute, in this database),
# and the jobs really roll an org over and expire its hold.
#
# The cluster runs with shared_preload_libraries = pg_cron and
# cron.database_name = postgres (scripts/test.sh), so the extensions live in
# the postgres database.  pg_cron's finest schedule here is one minute: the
# jobs first run at the next minute boundary.  The test waits on progress,
# not on a timer: until both jobs have a run in cron.job_run_details (at most
# until 90 s after the first boundary: a loaded machine may start a run late
# or miss a tick), then while those runs are in progress (at most 120 s more).
# On an idle machine it ends a few seconds after the boundary, as before.
set -euo pipefail

db=postgres
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }

cleanup() {
    q "SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'credits-%'" >/dev/null 2>&1 || true
    q "DROP EXTENSION IF EXISTS credits CASCADE" >/dev/null 2>&1 || true
}
trap cleanup EXIT

q "CREATE EXTENSION IF NOT EXISTS pg_cron" >/dev/null
q "CREATE EXTENSION credits" >/dev/null

# an org whose one-second periods are always due, with a hold about to expire
q "SELECT org_id FROM credits.create_org('cron', allowance_per_user => 10,
        billing_anchor => now() - interval '1 hour', period => '1 second')" >/dev/null
q "SELECT credits.enable_provider('cron', 'openai')" >/dev/null
q "SELECT credits.add_member('cron', 'alice')" >/dev/null
q "SELECT hold_id FROM credits.credit_reserve('cron', 'alice', 'gpt-4o', 1000, 1000, ttl => '1 second')" >/dev/null

# the org's current period and the hold end before any job runs (bounded:
# the hold's TTL is one second)
for i in $(seq 1 100); do
    [ "$(q "SELECT now() > max(expires_at) AND now() > (SELECT period_end FROM credits.pools
                                                       WHERE org_id = 'cron')
              FROM credits.holds WHERE org_id = 'cron'")" = t ] && break
    [ "$i" -lt 100 ] || { echo "the hold did not reach its expiry within 10 s"; exit 1; }
    sleep 0.1
done

q "SELECT credits.schedule_jobs()" >/dev/null
first=$(q "SELECT string_agg(jobid::text, ',' ORDER BY jobname) FROM cron.job WHERE jobname LIKE 'credits-%'")
q "SELECT credits.schedule_jobs()" >/dev/null   # idempotent: the same two jobs, not new ones
jobs=$(q "SELECT string_agg(format('%s|%s|%s|%s|%s|%s', jobname, schedule, command, database,
                                   username = current_user, active), E'\n' ORDER BY jobname)
            FROM cron.job WHERE jobname LIKE 'credits-%'")
echo "jobs:"
echo "$jobs"
want='credits-expire-holds|* * * * *|SELECT credits.expire_holds()|postgres|t|t
credits-reset-due|* * * * *|SELECT credits.reset_due()|postgres|t|t'
[ "$jobs" = "$want" ] || {
    echo "expected exactly these jobs (name|schedule|command|database|owned by the caller|active):"
    echo "$want"; exit 1; }
second=$(q "SELECT string_agg(jobid::text, ',' ORDER BY jobname) FROM cron.job WHERE jobname LIKE 'credits-%'")
[ "$first" = "$second" ] || { echo "schedule_jobs() a second time replaced the jobs ($first -> $second)"; exit 1; }

start=$(q "SELECT count(*) FROM credits.periods WHERE org_id = 'cron'")
# from here on this script only reads: whatever is written later is the jobs'
setup_done=$(q "SELECT clock_timestamp()")
# seconds from now to the first minute boundary, when both jobs are due
to_tick=$(q "SELECT ceil(60 - extract(second FROM clock_timestamp()))::int")
started_by=$((SECONDS + to_tick + 90))
finished_by=$((started_by + 120))
# per job: runs started, runs succeeded, runs failed
progress() {
    q "SELECT string_agg(format('%s %s %s %s', jobname, runs, ok, failed), ' ' ORDER BY jobname)
         FROM (SELECT j.jobname, count(d.runid) AS runs,
                      count(d.runid) FILTER (WHERE d.status = 'succeeded') AS ok,
                      count(d.runid) FILTER (WHERE d.status = 'failed') AS failed
                 FROM cron.job j LEFT JOIN cron.job_run_details d USING (jobid)
                WHERE j.jobname LIKE 'credits-%' GROUP BY j.jobname) r"
}
fail=0
while :; do
    now=$(progress) || { echo "cannot read the jobs' runs"; exit 1; }
    read -r _ e_runs e_ok e_failed _ r_runs r_ok r_failed <<<"$now"
    [ -n "$r_failed" ] || { echo "cannot read the jobs' runs: '$now'"; exit 1; }
    if [ "$e_failed" -gt 0 ] || [ "$r_failed" -gt 0 ]; then
        echo "a job run failed"; fail=1; break
    fi
    [ "$e_ok" -gt 0 ] && [ "$r_ok" -gt 0 ] && break
    if [ "$e_runs" -eq 0 ] || [ "$r_runs" -eq 0 ]; then
        [ "$SECONDS" -lt "$started_by" ] || {
            echo "a job never started within 90 s of its first minute ($e_runs expire-holds runs, $r_runs reset-due runs)"
            fail=1; break; }
    else
        [ "$SECONDS" -lt "$finished_by" ] || {
            echo "the jobs' runs did not finish within 120 s"; fail=1; break; }
    fi
    sleep 1
done
q "SELECT j.jobname || ': ' || d.status || ' ' || coalesce(d.return_message, '')
     FROM cron.job_run_details d JOIN cron.job j USING (jobid)
    WHERE j.jobname LIKE 'credits-%' ORDER BY d.runid"
[ "$fail" = 0 ] || exit 1

# what the jobs did: written after this script's last write and before the
# end of a successful run of the job (job_run_details.start_time is not a
# bound: pg_cron may record it after the run's transaction has started)
succeeded() {   # the windows of the successful runs of job $1
    echo "SELECT '$setup_done'::timestamptz AS start_time, d.end_time
            FROM cron.job_run_details d JOIN cron.job j USING (jobid)
           WHERE j.jobname = '$1' AND d.status = 'succeeded'"
}
rolled=$(q "SELECT count(*) FROM credits.periods WHERE org_id = 'cron'")
[ "$rolled" -gt "$start" ] || { echo "the job did not roll the org over"; fail=1; }
[ "$(q "SELECT count(*) FROM credits.events e, ($(succeeded credits-reset-due)) r
         WHERE e.org_id = 'cron' AND e.kind = 'period_reset'
           AND e.created_at BETWEEN r.start_time AND r.end_time")" -gt 0 ] || {
    echo "no period_reset event written by a reset-due run"; fail=1; }
[ "$(q "SELECT count(*) FROM credits.ledger l, ($(succeeded credits-reset-due)) r
         WHERE l.org_id = 'cron' AND l.kind = 'reset'
           AND l.created_at BETWEEN r.start_time AND r.end_time")" -gt 0 ] || {
    echo "no reset ledger entry written by a reset-due run"; fail=1; }
# the hold expired in a run of either job (reset_due expires the holds of
# the periods it closes)
expired=$(q "SELECT count(*) FROM credits.holds h
              WHERE h.org_id = 'cron' AND h.status = 'expired'
                AND EXISTS (SELECT 1 FROM ($(succeeded credits-reset-due) UNION ALL
                                           $(succeeded credits-expire-holds)) r
                             WHERE h.ended_at BETWEEN r.start_time AND r.end_time)")
[ "$expired" = 1 ] || {
    echo "the hold did not expire in a job run: $(q "SELECT status || ' ended ' || coalesce(ended_at::text, '-')
                                                      FROM credits.holds WHERE org_id = 'cron'")"
    fail=1; }
[ "$(q "SELECT count(*) FROM credits.holds WHERE org_id = 'cron' AND status = 'open'")" = 0 ] || {
    echo "a hold is still open"; fail=1; }
violations=$(q "SELECT count(*) FROM credits.verify()")
[ "$violations" = 0 ] || { echo "verify() found $violations violations"; fail=1; }
echo "periods closed by the job: $((rolled - start))"
exit $fail
