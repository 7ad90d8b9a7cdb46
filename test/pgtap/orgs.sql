-- pgTAP: orgs, members, plans, enabled providers, pools and billing periods
BEGIN;
SELECT plan(136);

-- ---------------------------------------------------------------------------
-- create_org
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE created AS SELECT * FROM credits.create_org('acme');
SELECT is((SELECT count(*)::int FROM created), 1, 'create_org: returns one row');
SELECT is(pg_typeof(credits.create_org('typed'))::text, 'credits.pool_status',
          'create_org: returns a credits.pool_status row');
SELECT results_eq(
    $$SELECT * FROM created$$,
    $$SELECT * FROM credits.pool_status WHERE org_id = 'acme'$$,
    'create_org: returns the org''s pool_status row');
SELECT results_eq(
    $$SELECT name, allowance_per_user::numeric, billing_anchor, period, time_zone
        FROM credits.orgs WHERE org_id = 'acme'$$,
    $$VALUES ('acme'::text, 1000::numeric, now(), '1 month'::interval, 'UTC'::text)$$,
    'create_org: defaults (name = org_id, 1000 per user, anchored now, 1 month, UTC)');
SELECT results_eq(
    $$SELECT org_id, period_start, period_end, allowance::numeric, allowance_used::numeric,
             topup::numeric, reserved::numeric, available::numeric, exhausted
        FROM created$$,
    $$VALUES ('acme'::text, now(), now() + '1 month'::interval, 0::numeric, 0::numeric,
              0::numeric, 0::numeric, 0::numeric, true)$$,
    'create_org: a new org has an empty pool for the period starting at its anchor');
SELECT is((SELECT count(*)::int FROM credits.pools WHERE org_id = 'acme'), 1,
          'create_org: one pool row');

SELECT lives_ok(
    $$SELECT credits.create_org('old', 'Old Corp', 250, '2024-01-31 00:00:00+00', '1 month', 'UTC')$$,
    'create_org: all arguments');
SELECT results_eq(
    $$SELECT name, allowance_per_user::numeric, billing_anchor FROM credits.orgs WHERE org_id = 'old'$$,
    $$VALUES ('Old Corp'::text, 250::numeric, '2024-01-31 00:00:00+00'::timestamptz)$$,
    'create_org: arguments stored');
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 'old'$$,
    $$SELECT period_start, period_end
        FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC', now())$$,
    'create_org: an anchor in the past opens the pool for the current period');
SELECT ok((SELECT period_start <= now() AND now() < period_end FROM credits.pools WHERE org_id = 'old'),
          'create_org: the current period contains now()');
SELECT lives_ok(
    $$SELECT credits.create_org('berlin', billing_anchor => '2024-01-01 00:00:00 Europe/Berlin',
                                period => '7 days', time_zone => 'Europe/Berlin')$$,
    'create_org: weekly period in a named time zone');
SELECT results_eq(
    $$SELECT period_start, period_end FROM credits.pools WHERE org_id = 'berlin'$$,
    $$SELECT period_start, period_end
        FROM credits.billing_period('2024-01-01 00:00:00 Europe/Berlin', '7 days', 'Europe/Berlin', now())$$,
    'create_org: pool period computed in the org''s time zone');

SELECT throws_ok($$SELECT credits.create_org('acme')$$, '23505', 'org "acme" already exists',
                 'create_org: duplicate org');
SELECT throws_ok($$SELECT credits.create_org('bad', period => '0 seconds')$$, '22023', NULL,
                 'create_org: period 0 seconds');
SELECT throws_ok($$SELECT credits.create_org('bad', period => '-1 day')$$, '22023', NULL,
                 'create_org: negative period');
SELECT throws_ok($$SELECT credits.create_org('bad', period => '1 month -40 days')$$, '22023', NULL,
                 'create_org: period with a negative part');
SELECT throws_ok($$SELECT credits.create_org('bad', time_zone => 'Mars/Olympus_Mons')$$, '22023', NULL,
                 'create_org: unknown time zone');
SELECT throws_ok($$SELECT credits.create_org(NULL)$$, '22004', 'org_id must not be null',
                 'create_org: NULL org_id');
SELECT throws_ok($$SELECT credits.create_org('bad', allowance_per_user => NULL)$$, '22004',
                 'allowance_per_user must not be null', 'create_org: NULL allowance_per_user');
SELECT throws_ok($$SELECT credits.create_org('bad', billing_anchor => NULL)$$, '22004',
                 'billing_anchor must not be null', 'create_org: NULL billing_anchor');
SELECT throws_ok($$SELECT credits.create_org('bad', period => NULL)$$, '22004',
                 'period must not be null', 'create_org: NULL period');
SELECT throws_ok($$SELECT credits.create_org('bad', time_zone => NULL)$$, '22004',
                 'time_zone must not be null', 'create_org: NULL time_zone');
SELECT throws_ok($$SELECT credits.create_org('')$$, '22023', 'org_id must not be empty',
                 'create_org: empty org_id');
SELECT throws_ok($$SELECT credits.create_org(repeat('o', 256))$$, '22023', 'org_id is too long',
                 'create_org: 256-byte org_id');
SELECT lives_ok($$SELECT credits.create_org(repeat('o', 255))$$, 'create_org: 255-byte org_id is fine');
SELECT throws_ok($$SELECT credits.create_org('bad', allowance_per_user => -1)$$, '22023',
                 'allowance_per_user must not be negative', 'create_org: negative allowance');
SELECT ok(NOT EXISTS (SELECT 1 FROM credits.orgs WHERE org_id IN ('bad', ''))
          AND NOT EXISTS (SELECT 1 FROM credits.pools WHERE org_id IN ('bad', '')),
          'create_org: failed calls left no org and no pool');
SELECT lives_ok($$SELECT credits.create_org('named', name => NULL)$$, 'create_org: NULL name is allowed');
SELECT is((SELECT name FROM credits.orgs WHERE org_id = 'named'), 'named', 'create_org: NULL name = org_id');

-- plain INSERT INTO orgs
SELECT lives_ok($$INSERT INTO credits.orgs (org_id, name, allowance_per_user) VALUES ('dml', 'DML Org', 10)$$,
                'plain INSERT INTO credits.orgs');
SELECT results_eq(
    $$SELECT period_start, period_end, allowance::numeric, exhausted
        FROM credits.pool_status WHERE org_id = 'dml'$$,
    $$VALUES (now(), now() + '1 month'::interval, 0::numeric, true)$$,
    'plain INSERT INTO credits.orgs creates the pool row');
SELECT throws_ok($$INSERT INTO credits.orgs (org_id, name, period) VALUES ('dml2', 'x', '-1 day')$$,
                 '22023', NULL, 'plain INSERT INTO credits.orgs: bad period');
SELECT throws_ok($$INSERT INTO credits.orgs (org_id, name, time_zone) VALUES ('dml2', 'x', 'Nowhere/Land')$$,
                 '22023', NULL, 'plain INSERT INTO credits.orgs: unknown time zone');

-- ---------------------------------------------------------------------------
-- Members and the pool allowance
-- ---------------------------------------------------------------------------
DO $$ BEGIN PERFORM credits.create_org('pool', allowance_per_user => 100); END $$;
SELECT lives_ok($$SELECT credits.add_member('pool', 'u1')$$, 'add_member: plan allowance');
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 100::numeric,
          'add_member raises the pool at once (100)');
SELECT lives_ok($$SELECT credits.add_member('pool', 'u2', 250)$$, 'add_member: own allowance');
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 350::numeric,
          'a member''s own allowance overrides the plan (100 + 250)');
SELECT lives_ok($$SELECT credits.set_plan('pool', 200)$$, 'set_plan: raise');
SELECT is((SELECT allowance_per_user::numeric FROM credits.orgs WHERE org_id = 'pool'), 200::numeric,
          'set_plan: stored');
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 450::numeric,
          'set_plan raise counts at once for plan members only (200 + 250)');
UPDATE credits.members SET allowance = 300 WHERE org_id = 'pool' AND user_id = 'u2';
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 500::numeric,
          'plain UPDATE of a member''s allowance raises the pool (200 + 300)');
INSERT INTO credits.members (org_id, user_id) VALUES ('pool', 'u3');
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 700::numeric,
          'plain INSERT INTO credits.members raises the pool (200 + 300 + 200)');
UPDATE credits.orgs SET allowance_per_user = 210 WHERE org_id = 'pool';
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 720::numeric,
          'plain UPDATE of the org''s plan raises the pool (210 + 300 + 210)');

SELECT lives_ok($$SELECT credits.remove_member('pool', 'u1')$$, 'remove_member');
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 720::numeric,
          'remove_member does not lower the pool within the period');
SELECT lives_ok($$SELECT credits.set_plan('pool', 50)$$, 'set_plan: decrease');
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 720::numeric,
          'set_plan decrease does not lower the pool within the period');
SELECT lives_ok($$SELECT credits.add_member('pool', 'u2', 10)$$, 'add_member: lower an existing member''s allowance');
SELECT is((SELECT allowance::numeric FROM credits.members WHERE org_id = 'pool' AND user_id = 'u2'), 10::numeric,
          'add_member on an existing member updates the allowance');
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 720::numeric,
          'a member allowance decrease does not lower the pool');
UPDATE credits.members SET allowance = 0 WHERE org_id = 'pool' AND user_id = 'u3';
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 720::numeric,
          'a member allowance decrease via plain UPDATE does not lower the pool');
SELECT lives_ok($$SELECT credits.add_member('pool', 'u4')$$, 'add_member below the pool''s allowance');
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 720::numeric,
          'adding a member whose new sum (10 + 0 + 50) is below the pool keeps the pool');
SELECT lives_ok($$SELECT credits.add_member('pool', 'u5', 1000)$$, 'add_member: big allowance');
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 1060::numeric,
          'the pool is raised once the active sum exceeds it (10 + 0 + 50 + 1000)');

-- re-adding a removed member
SELECT results_eq(
    $$SELECT active, removed_at IS NOT NULL FROM credits.members WHERE org_id = 'pool' AND user_id = 'u1'$$,
    $$VALUES (false, true)$$,
    'remove_member keeps the row, inactive, with removed_at set');
INSERT INTO credits.member_usage (org_id, user_id, used) VALUES ('pool', 'u1', 7);
SELECT lives_ok($$SELECT credits.add_member('pool', 'u1', 400, 40)$$, 'add_member: re-add a removed member');
SELECT results_eq(
    $$SELECT active, removed_at IS NULL, allowance::numeric, cap::numeric
        FROM credits.members WHERE org_id = 'pool' AND user_id = 'u1'$$,
    $$VALUES (true, true, 400::numeric, 40::numeric)$$,
    'add_member reactivates the member with the new allowance and cap');
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 1460::numeric,
          'a reactivated member raises the pool (400 + 10 + 0 + 50 + 1000)');
SELECT is((SELECT count(*)::int FROM credits.members WHERE org_id = 'pool' AND user_id = 'u1'), 1,
          'add_member on an existing member does not duplicate it');
SELECT lives_ok($$SELECT credits.add_member('pool', 'u1')$$, 'add_member: back to the plan and no cap');
SELECT results_eq(
    $$SELECT allowance IS NULL, cap IS NULL, active FROM credits.members WHERE org_id = 'pool' AND user_id = 'u1'$$,
    $$VALUES (true, true, true)$$,
    'add_member with NULL allowance/cap resets them to the plan / no cap');
UPDATE credits.members SET active = false WHERE org_id = 'pool' AND user_id = 'u4';
UPDATE credits.members SET active = true, allowance = 2000 WHERE org_id = 'pool' AND user_id = 'u4';
SELECT is((SELECT allowance::numeric FROM credits.pools WHERE org_id = 'pool'), 3060::numeric,
          'reactivating a member via plain UPDATE raises the pool (50 + 10 + 0 + 2000 + 1000)');

-- member errors
SELECT throws_ok($$SELECT credits.add_member('nope', 'u1')$$, 'UC004', 'unknown org "nope"',
                 'add_member: unknown org');
SELECT throws_ok($$SELECT credits.add_member(NULL, 'u1')$$, '22004', 'org_id must not be null',
                 'add_member: NULL org_id');
SELECT throws_ok($$SELECT credits.add_member('pool', NULL)$$, '22004', 'user_id must not be null',
                 'add_member: NULL user_id');
SELECT throws_ok($$SELECT credits.add_member('pool', '')$$, '22023', 'user_id must not be empty',
                 'add_member: empty user_id');
SELECT throws_ok($$SELECT credits.add_member('pool', repeat('u', 256))$$, '22023', 'user_id is too long',
                 'add_member: 256-byte user_id');
SELECT throws_ok($$SELECT credits.add_member('pool', 'u9', -1)$$, '22023', 'allowance must not be negative',
                 'add_member: negative allowance');
SELECT throws_ok($$SELECT credits.add_member('pool', 'u9', 1, -1)$$, '22023', 'cap must not be negative',
                 'add_member: negative cap');
SELECT throws_ok($$SELECT credits.remove_member('pool', 'never')$$, 'UC005', NULL,
                 'remove_member: a non-member');
SELECT lives_ok($$SELECT credits.remove_member('pool', 'u3')$$, 'remove_member: u3');
SELECT throws_ok($$SELECT credits.remove_member('pool', 'u3')$$, 'UC005', NULL,
                 'remove_member: an already removed member');
SELECT throws_ok($$SELECT credits.remove_member('nope', 'u3')$$, 'UC004', NULL,
                 'remove_member: unknown org');
SELECT throws_ok($$SELECT credits.remove_member('pool', NULL)$$, '22004', 'user_id must not be null',
                 'remove_member: NULL user_id');
SELECT throws_ok($$SELECT credits.remove_member(NULL, 'u3')$$, '22004', 'org_id must not be null',
                 'remove_member: NULL org_id');
SELECT throws_ok($$SELECT credits.set_plan('nope', 1)$$, 'UC004', NULL, 'set_plan: unknown org');
SELECT throws_ok($$SELECT credits.set_plan('pool', -1)$$, '22023',
                 'allowance_per_user must not be negative', 'set_plan: negative allowance');
SELECT throws_ok($$SELECT credits.set_plan('pool', NULL)$$, '22004',
                 'allowance_per_user must not be null', 'set_plan: NULL allowance');
SELECT throws_ok($$SELECT credits.set_plan(NULL, 1)$$, '22004', 'org_id must not be null',
                 'set_plan: NULL org_id');
SELECT results_eq(
    $$SELECT user_id, active FROM credits.members WHERE org_id = 'pool' ORDER BY user_id$$,
    $$VALUES ('u1'::text, true), ('u2', true), ('u3', false), ('u4', true), ('u5', true)$$,
    'members: history kept, removed members stay as inactive rows');
SELECT is((SELECT used::numeric FROM credits.member_usage WHERE org_id = 'pool' AND user_id = 'u1'), 7::numeric,
          'member usage survives remove and re-add within the period');

-- ---------------------------------------------------------------------------
-- Enabled providers
-- ---------------------------------------------------------------------------
SELECT lives_ok($$SELECT credits.enable_provider('acme', 'openai')$$, 'enable_provider');
SELECT lives_ok($$SELECT credits.enable_provider('acme', 'openai')$$, 'enable_provider: again (idempotent)');
SELECT results_eq(
    $$SELECT provider FROM credits.org_providers WHERE org_id = 'acme'$$,
    $$VALUES ('openai'::text)$$,
    'enable_provider: one row after enabling twice');
SELECT lives_ok($$SELECT credits.enable_provider('acme', 'google')$$, 'enable_provider: a second provider');
SELECT lives_ok($$SELECT credits.disable_provider('acme', 'openai')$$, 'disable_provider');
SELECT lives_ok($$SELECT credits.disable_provider('acme', 'openai')$$, 'disable_provider: again (idempotent)');
SELECT lives_ok($$SELECT credits.disable_provider('acme', 'anthropic')$$,
                'disable_provider: a provider that was never enabled');
SELECT results_eq(
    $$SELECT provider FROM credits.org_providers WHERE org_id = 'acme'$$,
    $$VALUES ('google'::text)$$,
    'disable_provider: only the disabled provider removed');
SELECT throws_ok($$SELECT credits.enable_provider('nope', 'openai')$$, 'UC004', 'unknown org "nope"',
                 'enable_provider: unknown org');
SELECT throws_ok($$SELECT credits.disable_provider('nope', 'openai')$$, 'UC004', 'unknown org "nope"',
                 'disable_provider: unknown org');
SELECT throws_ok($$SELECT credits.enable_provider('acme', 'nope')$$, '22023', 'unknown provider "nope"',
                 'enable_provider: unknown provider');
SELECT throws_ok($$SELECT credits.disable_provider('acme', 'nope')$$, '22023', 'unknown provider "nope"',
                 'disable_provider: unknown provider');
SELECT throws_ok($$SELECT credits.enable_provider('acme', NULL)$$, '22004', 'provider must not be null',
                 'enable_provider: NULL provider');
SELECT throws_ok($$SELECT credits.enable_provider(NULL, 'openai')$$, '22004', 'org_id must not be null',
                 'enable_provider: NULL org_id');
SELECT throws_ok($$SELECT credits.disable_provider('acme', '')$$, '22023', 'provider must not be empty',
                 'disable_provider: empty provider');

-- ---------------------------------------------------------------------------
-- pool_status
-- ---------------------------------------------------------------------------
SELECT columns_are('credits', 'pool_status',
    ARRAY['org_id', 'period_start', 'period_end', 'allowance', 'allowance_used', 'topup',
          'reserved', 'available', 'exhausted', 'burn_per_day', 'runs_out_at'],
    'pool_status: columns');
SELECT is(
    (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
       FROM pg_attribute a WHERE a.attrelid = 'credits.pool_status'::regclass AND a.attnum > 0),
    'org_id text, period_start timestamp with time zone, period_end timestamp with time zone, '
    'allowance credits.credit, allowance_used credits.credit, topup credits.credit, '
    'reserved credits.credit, available credits.credit, exhausted boolean, '
    'burn_per_day credits.credit, runs_out_at timestamp with time zone',
    'pool_status: column order and types');
DO $$ BEGIN PERFORM credits.create_org('status', allowance_per_user => 100); END $$;
DO $$ BEGIN PERFORM credits.add_member('status', 'a'); END $$;
SELECT results_eq(
    $$SELECT allowance::numeric, available::numeric, exhausted FROM credits.pool_status WHERE org_id = 'status'$$,
    $$VALUES (100::numeric, 100::numeric, false)$$,
    'pool_status: a fresh pool is fully available');
UPDATE credits.pools SET allowance_used = 30, topup = 5, reserved = 2 WHERE org_id = 'status';
SELECT results_eq(
    $$SELECT allowance_used::numeric, topup::numeric, reserved::numeric, available::numeric, exhausted
        FROM credits.pool_status WHERE org_id = 'status'$$,
    $$VALUES (30::numeric, 5::numeric, 2::numeric, 73::numeric, false)$$,
    'pool_status: available = allowance - allowance_used + topup - reserved');
UPDATE credits.pools SET allowance_used = 100, topup = 2, reserved = 2 WHERE org_id = 'status';
SELECT results_eq(
    $$SELECT available::numeric, exhausted FROM credits.pool_status WHERE org_id = 'status'$$,
    $$VALUES (0::numeric, true)$$,
    'pool_status: exhausted when available = 0');
DO $$ BEGIN PERFORM credits.create_org('zero', allowance_per_user => 0); END $$;
DO $$ BEGIN PERFORM credits.add_member('zero', 'z1'); END $$;
SELECT results_eq(
    $$SELECT allowance::numeric, available::numeric, exhausted FROM credits.pool_status WHERE org_id = 'zero'$$,
    $$VALUES (0::numeric, 0::numeric, true)$$,
    'pool_status: an org with allowance 0 is exhausted from the start');
SELECT is((SELECT count(*)::int FROM credits.pool_status),
          (SELECT count(*)::int FROM credits.orgs),
          'pool_status: one row per org');

-- ---------------------------------------------------------------------------
-- billing periods
-- ---------------------------------------------------------------------------
SELECT ok(credits.valid_period('1 month') AND credits.valid_period('2 seconds')
          AND credits.valid_period('1 day 1 second'),
          'valid_period: positive intervals');
SELECT ok(NOT credits.valid_period('0 seconds') AND NOT credits.valid_period('-1 day')
          AND NOT credits.valid_period('1 month -40 days') AND NOT credits.valid_period('1 day -1 second'),
          'valid_period: empty intervals and intervals with a negative part');

-- a monthly period anchored on the 31st
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC', '2024-02-15 00:00:00+00')$$,
    $$VALUES (0::bigint, '2024-01-31 00:00:00+00'::timestamptz, '2024-02-29 00:00:00+00'::timestamptz)$$,
    'billing_period: 31 Jan anchor, first period ends 29 Feb 2024');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC', '2024-02-29 00:00:00+00')$$,
    $$VALUES (1::bigint, '2024-02-29 00:00:00+00'::timestamptz, '2024-03-31 00:00:00+00'::timestamptz)$$,
    'billing_period: 31 Jan anchor, 29 Feb to 31 Mar (a boundary belongs to the next period)');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC', '2024-02-28 23:59:59.999999+00')$$,
    $$VALUES (0::bigint, '2024-01-31 00:00:00+00'::timestamptz, '2024-02-29 00:00:00+00'::timestamptz)$$,
    'billing_period: the last microsecond before a boundary is in the earlier period');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC', '2024-04-01 00:00:00+00')$$,
    $$VALUES (2::bigint, '2024-03-31 00:00:00+00'::timestamptz, '2024-04-30 00:00:00+00'::timestamptz)$$,
    'billing_period: 31 Jan anchor, 31 Mar to 30 Apr');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC', '2024-05-31 00:00:00+00')$$,
    $$VALUES (4::bigint, '2024-05-31 00:00:00+00'::timestamptz, '2024-06-30 00:00:00+00'::timestamptz)$$,
    'billing_period: 31 Jan anchor, back to the 31st in May (no drift)');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2023-01-31 00:00:00+00', '1 month', 'UTC', '2023-02-10 00:00:00+00')$$,
    $$VALUES (0::bigint, '2023-01-31 00:00:00+00'::timestamptz, '2023-02-28 00:00:00+00'::timestamptz)$$,
    'billing_period: 31 Jan 2023 anchor, first period ends 28 Feb');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2023-01-31 00:00:00+00', '1 month', 'UTC', '2023-03-01 00:00:00+00')$$,
    $$VALUES (1::bigint, '2023-02-28 00:00:00+00'::timestamptz, '2023-03-31 00:00:00+00'::timestamptz)$$,
    'billing_period: 31 Jan 2023 anchor, 28 Feb to 31 Mar');

-- a daily period across DST changes
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-03-30 00:00:00 Europe/Berlin', '1 day', 'Europe/Berlin',
                                           '2024-03-30 12:00:00+01')$$,
    $$VALUES (0::bigint, '2024-03-30 00:00:00+01'::timestamptz, '2024-03-31 00:00:00+01'::timestamptz)$$,
    'billing_period: daily in Europe/Berlin, the day before the spring DST change');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-03-30 00:00:00 Europe/Berlin', '1 day', 'Europe/Berlin',
                                           '2024-03-31 12:00:00+02')$$,
    $$VALUES (1::bigint, '2024-03-31 00:00:00+01'::timestamptz, '2024-04-01 00:00:00+02'::timestamptz)$$,
    'billing_period: daily in Europe/Berlin keeps local midnight on 2024-03-31 (a 23-hour day)');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-03-30 00:00:00 Europe/Berlin', '1 day', 'Europe/Berlin',
                                           '2024-04-01 00:30:00+02')$$,
    $$VALUES (2::bigint, '2024-04-01 00:00:00+02'::timestamptz, '2024-04-02 00:00:00+02'::timestamptz)$$,
    'billing_period: daily in Europe/Berlin, local midnight after the spring change');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-03-30 00:00:00 Europe/Berlin', '1 day', 'Europe/Berlin',
                                           '2024-10-27 12:00:00+01')$$,
    $$VALUES (211::bigint, '2024-10-27 00:00:00+02'::timestamptz, '2024-10-28 00:00:00+01'::timestamptz)$$,
    'billing_period: daily in Europe/Berlin keeps local midnight on 2024-10-27 (a 25-hour day)');
SELECT is((SELECT period_end - period_start
             FROM credits.billing_period('2024-03-30 00:00:00 Europe/Berlin', '1 day', 'Europe/Berlin',
                                         '2024-10-27 02:30:00+01')),
          '25 hours'::interval, 'billing_period: the autumn DST day lasts 25 hours');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-31 00:00:00 Europe/Berlin', '1 month', 'Europe/Berlin',
                                           '2024-04-15 00:00:00+02')$$,
    $$VALUES (2::bigint, '2024-03-31 00:00:00+01'::timestamptz, '2024-04-30 00:00:00+02'::timestamptz)$$,
    'billing_period: monthly in Europe/Berlin, local midnight on both sides of the DST change');

-- short periods
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-01 00:00:00+00', '2 seconds', 'UTC', '2024-01-01 00:00:05+00')$$,
    $$VALUES (2::bigint, '2024-01-01 00:00:04+00'::timestamptz, '2024-01-01 00:00:06+00'::timestamptz)$$,
    'billing_period: a 2-second period');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-01 00:00:00+00', '2 seconds', 'UTC', '2024-01-01 00:00:04+00')$$,
    $$VALUES (2::bigint, '2024-01-01 00:00:04+00'::timestamptz, '2024-01-01 00:00:06+00'::timestamptz)$$,
    'billing_period: a 2-second period, as_of on a boundary');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-01 00:00:00+00', '2 seconds', 'UTC', '2025-01-01 00:00:01+00')$$,
    $$VALUES (15811200::bigint, '2025-01-01 00:00:00+00'::timestamptz, '2025-01-01 00:00:02+00'::timestamptz)$$,
    'billing_period: a 2-second period a year later');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-03-31 01:59:59+01', '2 seconds', 'Europe/Berlin',
                                           '2024-03-31 03:00:01+02')$$,
    $$VALUES (1::bigint, '2024-03-31 03:00:01+02'::timestamptz, '2024-03-31 03:00:03+02'::timestamptz)$$,
    'billing_period: a 2-second period is elapsed time across the DST gap');

-- before the anchor
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC', '2024-01-30 23:59:59+00')$$,
    $$VALUES (-1::bigint, '2023-12-31 00:00:00+00'::timestamptz, '2024-01-31 00:00:00+00'::timestamptz)$$,
    'billing_period: the period before the anchor is period -1');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC', '2023-12-15 00:00:00+00')$$,
    $$VALUES (-2::bigint, '2023-11-30 00:00:00+00'::timestamptz, '2023-12-31 00:00:00+00'::timestamptz)$$,
    'billing_period: negative period_no, month-end anchor clamps to 30 Nov');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-01 00:00:00+00', '2 seconds', 'UTC', '2023-12-31 23:59:59+00')$$,
    $$VALUES (-1::bigint, '2023-12-31 23:59:58+00'::timestamptz, '2024-01-01 00:00:00+00'::timestamptz)$$,
    'billing_period: a 2-second period before the anchor');
SELECT results_eq(
    $$SELECT * FROM credits.billing_period('2024-01-01 00:00:00+00', '2 seconds', 'UTC', '2023-12-31 23:59:55+00')$$,
    $$VALUES (-3::bigint, '2023-12-31 23:59:54+00'::timestamptz, '2023-12-31 23:59:56+00'::timestamptz)$$,
    'billing_period: period -3');
SELECT is((SELECT period_no FROM credits.billing_period('2024-01-31 00:00:00+00', '1 month', 'UTC',
                                                        '2024-01-31 00:00:00+00')),
          0::bigint, 'billing_period: as_of = anchor is period 0');
SELECT is((SELECT period_start FROM credits.billing_period(now() - '10 days'::interval, '1 month', 'UTC')),
          now() - '10 days'::interval, 'billing_period: as_of defaults to now()');

-- errors
SELECT throws_ok($$SELECT * FROM credits.billing_period(now(), '0 seconds', 'UTC', now())$$, '22023', NULL,
                 'billing_period: empty period');
SELECT throws_ok($$SELECT * FROM credits.billing_period(now(), '1 month -40 days', 'UTC', now())$$, '22023', NULL,
                 'billing_period: period with a negative part');
SELECT throws_ok($$SELECT * FROM credits.billing_period(now(), '1 day', 'Nowhere/Land', now())$$, '22023', NULL,
                 'billing_period: unknown time zone');
SELECT throws_ok($$SELECT * FROM credits.billing_period(NULL, '1 day', 'UTC', now())$$, '22004',
                 'billing_anchor must not be null', 'billing_period: NULL anchor');
SELECT throws_ok($$SELECT * FROM credits.billing_period(now(), NULL, 'UTC', now())$$, '22004',
                 'period must not be null', 'billing_period: NULL period');
SELECT throws_ok($$SELECT * FROM credits.billing_period(now(), '1 day', NULL, now())$$, '22004',
                 'time_zone must not be null', 'billing_period: NULL time zone');
SELECT throws_ok($$SELECT * FROM credits.billing_period(now(), '1 day', 'UTC', NULL)$$, '22004',
                 'as_of must not be null', 'billing_period: NULL as_of');

SELECT * FROM finish();
ROLLBACK;
