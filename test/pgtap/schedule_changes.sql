-- pgTAP: changing an org's billing anchor, period or time zone (plain DML
-- on credits.orgs, which admins may do).  The current period ends at the
-- new schedule's next boundary; the periods after it follow the new
-- schedule; what was used in the current period is closed with it.
--
-- now() is frozen inside the transaction: time is moved with
-- reset_due(as_of).
BEGIN;
SET LOCAL search_path = public, credits;
SELECT plan(16);

-- ---------------------------------------------------------------------------
-- Fixtures (gpt-4o: 4000 input tokens = 1 credit), 10 credits each
--   sc_p    monthly, anchored 10 days ago; the period becomes 7 days
--   sc_a    weekly, anchored 10 days ago (period [now - 3 days, now + 4 days));
--           the anchor moves to 1 day ago
--   sc_tz   daily from 2024-01-01 00:00 UTC, in UTC; the time zone becomes
--           Europe/Berlin (so the day starts at 01:00 Berlin time, 23:00 UTC
--           in summer)
--   sc_utc  as sc_tz, left in UTC
-- ---------------------------------------------------------------------------
DO $$
DECLARE
    o text;
BEGIN
    PERFORM credits.create_org('sc_p', allowance_per_user => 10,
                               billing_anchor => now() - interval '10 days', period => '1 month');
    PERFORM credits.create_org('sc_a', allowance_per_user => 10,
                               billing_anchor => now() - interval '10 days', period => '7 days');
    PERFORM credits.create_org('sc_tz', allowance_per_user => 10,
                               billing_anchor => '2024-01-01 00:00:00+00', period => '1 day');
    PERFORM credits.create_org('sc_utc', allowance_per_user => 10,
                               billing_anchor => '2024-01-01 00:00:00+00', period => '1 day');
    FOREACH o IN ARRAY ARRAY['sc_p', 'sc_a', 'sc_tz', 'sc_utc'] LOOP
        PERFORM credits.enable_provider(o, 'openai');
        PERFORM credits.add_member(o, 'u');
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- The changes, and the current periods they end
-- ---------------------------------------------------------------------------
-- the period: 1 month -> 7 days
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 'sc_p'$$,
    $$SELECT now() - interval '10 days',
             ((now() - interval '10 days') AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC'$$,
    'sc_p: the current period is the month from the anchor');
SELECT is((SELECT charged FROM credits.credit_debit('sc_p', 'u', 'gpt-4o', 20000)), '5'::credit,
          'sc_p: 5 used in it');
UPDATE credits.orgs SET period = '7 days' WHERE org_id = 'sc_p';
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 'sc_p'$$,
    $$SELECT now() - interval '10 days', now() + interval '4 days'$$,
    'sc_p: 7-day periods from the same anchor: the current period ends at anchor + 14 days');
SELECT results_eq(
    $$SELECT period_end, allowance_used FROM credits.pool_status WHERE org_id = 'sc_p'$$,
    $$SELECT now() + interval '4 days', '5'::credit$$,
    'sc_p: pool_status shows the new end and keeps what was used');

-- the anchor: 10 days ago -> 1 day ago (weekly)
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 'sc_a'$$,
    $$SELECT now() - interval '3 days', now() + interval '4 days'$$,
    'sc_a: the current week runs from anchor + 7 days');
UPDATE credits.orgs SET billing_anchor = now() - interval '1 day' WHERE org_id = 'sc_a';
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 'sc_a'$$,
    $$SELECT now() - interval '3 days', now() + interval '6 days'$$,
    'sc_a: the current period now ends a week after the new anchor');

-- the time zone: UTC -> Europe/Berlin (daily)
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 'sc_tz'$$,
    $$SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
             (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day') AT TIME ZONE 'UTC'$$,
    'sc_tz: in UTC, the day starts at 00:00 UTC');
UPDATE credits.orgs SET time_zone = 'Europe/Berlin' WHERE org_id = 'sc_tz';
-- the anchor is 01:00 in Berlin: the day ends at the next 01:00 Berlin time
-- (00:00 UTC in winter, 23:00 UTC in summer)
SELECT is((SELECT period_end FROM credits.pools WHERE org_id = 'sc_tz'),
          (date_trunc('day', (now() AT TIME ZONE 'Europe/Berlin') - interval '1 hour')
             + interval '1 day 1 hour') AT TIME ZONE 'Europe/Berlin',
          'sc_tz: the current day ends at the next 01:00 Berlin time');

-- ---------------------------------------------------------------------------
-- The periods after them (reset_due rolls every org that is due)
-- ---------------------------------------------------------------------------
SELECT credits.reset_due(now() + interval '4 days' - interval '1 microsecond');
SELECT results_eq(
    $$SELECT period_start, period_end, (SELECT count(*)::int FROM credits.periods WHERE org_id = 'sc_p')
        FROM credits.pools WHERE org_id = 'sc_p'$$,
    $$SELECT now() - interval '10 days', now() + interval '4 days', 0$$,
    'sc_p: not due a microsecond before the new end');

SELECT credits.reset_due(now() + interval '4 days');
SELECT results_eq(
    $$SELECT period_start, period_end, allowance_used FROM credits.periods WHERE org_id = 'sc_p'$$,
    $$SELECT now() - interval '10 days', now() + interval '4 days', '5'::credit$$,
    'sc_p: due at the new end: the closed period ran from the old start to the new end, with its 5 used');
SELECT results_eq(
    $$SELECT period_start, period_end, allowance_used FROM credits.pools WHERE org_id = 'sc_p'$$,
    $$SELECT now() + interval '4 days', now() + interval '11 days', '0'::credit$$,
    'sc_p: the next period is 7 days long');
SELECT results_eq(
    $$SELECT period_start, period_end, (SELECT count(*)::int FROM credits.periods WHERE org_id = 'sc_a')
        FROM credits.pools WHERE org_id = 'sc_a'$$,
    $$SELECT now() - interval '3 days', now() + interval '6 days', 0$$,
    'sc_a: not due at the old schedule''s end (now + 4 days)');

SELECT credits.reset_due(now() + interval '6 days');
SELECT results_eq(
    $$SELECT p.period_start, p.period_end, c.period_start, c.period_end
        FROM credits.pools p, credits.periods c WHERE p.org_id = 'sc_a' AND c.org_id = 'sc_a'$$,
    $$SELECT now() + interval '6 days', now() + interval '13 days',
             now() - interval '3 days', now() + interval '6 days'$$,
    'sc_a: closed [old start, new end); the next week starts at the new anchor + 7 days');

SELECT credits.reset_due('2030-07-01 12:00:00+00');
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 'sc_tz'$$,
    $$VALUES ('2030-06-30 23:00:00+00'::timestamptz, '2030-07-01 23:00:00+00'::timestamptz)$$,
    'sc_tz: a summer day in Berlin is [23:00 UTC, 23:00 UTC)');
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 'sc_utc'$$,
    $$VALUES ('2030-07-01 00:00:00+00'::timestamptz, '2030-07-02 00:00:00+00'::timestamptz)$$,
    'sc_utc: the same day in UTC is [00:00 UTC, 00:00 UTC)');

SELECT is_empty($$SELECT * FROM credits.verify() WHERE org_id LIKE 'sc\_%'$$, 'verify is clean');

SELECT * FROM finish();
ROLLBACK;
