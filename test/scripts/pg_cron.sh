#!/usr/bin/env bash
# credits.schedule_jobs() registers reset_due() and expire_holds() with a real
# pg_cron, and the job really rolls an org over.
#
# The cluster runs with shared_preload_libraries = pg_cron and
# cron.database_name = postgres (scripts/test.sh), so the extensions live in
# the postgres database.  pg_cron's finest schedule here is one minute: the
# test waits at most 75 seconds for the first run.
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

sleep 2   # the org's current period and the hold have ended before any job runs
q "SELECT credits.schedule_jobs()" >/dev/null
q "SELECT credits.schedule_jobs()" >/dev/null   # idempotent
jobs=$(q "SELECT string_agg(jobname || ' ' || schedule || ' ' || command, '; ' ORDER BY jobname)
            FROM cron.job WHERE jobname LIKE 'credits-%'")
echo "jobs: $jobs"
[ "$(q "SELECT count(*) FROM cron.job WHERE jobname LIKE 'credits-%'")" = 2 ] || {
    echo "expected exactly 2 credits jobs"; exit 1; }

start=$(q "SELECT count(*) FROM credits.periods WHERE org_id = 'cron'")
for i in $(seq 1 75); do
    ok=$(q "SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
             WHERE j.jobname = 'credits-reset-due' AND d.status = 'succeeded'")
    expired_ok=$(q "SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                     WHERE j.jobname = 'credits-expire-holds' AND d.status = 'succeeded'")
    if [ "$ok" -gt 0 ] && [ "$expired_ok" -gt 0 ]; then
        break
    fi
    sleep 1
done
q "SELECT j.jobname || ': ' || d.status || ' ' || coalesce(d.return_message, '')
     FROM cron.job_run_details d JOIN cron.job j USING (jobid) ORDER BY d.runid"

fail=0
[ "$ok" -gt 0 ] || { echo "reset_due never ran successfully within 75 s"; fail=1; }
rolled=$(q "SELECT count(*) FROM credits.periods WHERE org_id = 'cron'")
[ "$rolled" -gt "$start" ] || { echo "the job did not roll the org over"; fail=1; }
# the org's period_reset event was written by the job
q "SELECT count(*) FROM credits.events WHERE org_id = 'cron' AND kind = 'period_reset'" | grep -qv '^0$' || {
    echo "no period_reset event"; fail=1; }
expired=$(q "SELECT count(*) FROM credits.holds WHERE org_id = 'cron' AND status = 'expired'")
[ "$expired" = 1 ] || { echo "the hold did not expire (status count $expired)"; fail=1; }
violations=$(q "SELECT count(*) FROM credits.verify()")
[ "$violations" = 0 ] || { echo "verify() found $violations violations"; fail=1; }
echo "periods closed by the job: $((rolled - start))"
exit $fail
