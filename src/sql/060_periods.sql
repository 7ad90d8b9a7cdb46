-- ---------------------------------------------------------------------------
-- Billing periods, recharges and purchased grants
--
-- An org whose period has ended is rolled over by the next call that locks
-- its pool (credits._maintain, called from C when a pool is due) and by
-- credits.reset_due(), which pg_cron runs every minute.  Correctness never
-- depends on the job running on time.
-- ---------------------------------------------------------------------------

CREATE TABLE credits.periods (
    org_id         text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    period_start   timestamptz NOT NULL,
    period_end     timestamptz NOT NULL,
    allowance      credits.credit NOT NULL,
    allowance_used credits.credit NOT NULL,
    topup_used     credits.credit NOT NULL,
    shortfall      credits.credit NOT NULL,
    calls          bigint NOT NULL,
    closed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, period_start)
);
COMMENT ON TABLE credits.periods IS
    'closed billing periods: what each org had, used, drew from top-up and could not charge';

CREATE TABLE credits.grants (
    grant_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id         text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    amount         credits.credit NOT NULL CHECK (amount > 0),
    remaining      credits.credit NOT NULL,
    expired_amount credits.credit NOT NULL DEFAULT 0,
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    note           text,
    CONSTRAINT grants_remaining CHECK (remaining >= 0 AND remaining <= amount),
    CONSTRAINT grants_expired CHECK (expired_amount >= 0 AND expired_amount <= amount)
);
CREATE INDEX grants_org_idx ON credits.grants (org_id, expires_at, grant_id)
    WHERE remaining > 0;
COMMENT ON TABLE credits.grants IS
    'purchased credits (top-ups): used after the period''s allowance, earliest expiry first, never-expiring last, then oldest first';
COMMENT ON COLUMN credits.grants.remaining IS 'amount - draws - expired_amount';

CREATE TABLE credits.grant_draws (
    entry_id bigint NOT NULL,
    grant_id bigint NOT NULL REFERENCES credits.grants ON DELETE CASCADE,
    amount   credits.credit NOT NULL CHECK (amount > 0),
    PRIMARY KEY (entry_id, grant_id)
);
CREATE INDEX grant_draws_grant_idx ON credits.grant_draws (grant_id);
COMMENT ON TABLE credits.grant_draws IS
    'which grants each ledger entry''s from_topup was drawn from';

SELECT pg_catalog.pg_extension_config_dump('credits.periods', '');
SELECT pg_catalog.pg_extension_config_dump('credits.grants', '');
SELECT pg_catalog.pg_extension_config_dump('credits.grants_grant_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('credits.grant_draws', '');

-- The highest of the org's thresholds that the pool has reached.
CREATE FUNCTION credits._alert_level(p credits.pools, thresholds integer[]) RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, credits, pg_temp AS $$
    SELECT coalesce(max(t), 0)
      FROM unnest(thresholds) t
     WHERE p.allowance + p.topup_used + p.topup > 0
       AND (p.allowance_used + p.topup_used + p.reserved)::numeric * 100
           >= t * (p.allowance + p.topup_used + p.topup)::numeric
$$;
COMMENT ON FUNCTION credits._alert_level(credits.pools, integer[]) IS
    'internal: highest threshold (percent) the pool has reached';

CREATE FUNCTION credits._available(p credits.pools) RETURNS credits.credit
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, credits, pg_temp AS $$
    SELECT credits._available(p.allowance, p.allowance_used, p.topup, p.reserved)
$$;
COMMENT ON FUNCTION credits._available(credits.pools) IS
    'internal: allowance - allowance_used + topup - reserved';

-- Add a grant of amount to the org's pool, expiring at expires_at (NULL:
-- never), ledgered as kind ('topup', 'rollover' or 'auto_recharge') with
-- its note; returns its grant_id.  The caller holds the pool lock and
-- announces it.  A grant lowers the share of the period's credits spent, so
-- the thresholds above it are announced again when crossed.  The entry's
-- available_after is measured against frame when given (a period close
-- adds the rollover grant before the new allowance is set).
CREATE FUNCTION credits._add_grant(org text, kind text, amount credits.credit,
                                   expires_at timestamptz, note text,
                                   frame credits.credit DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    p credits.pools;
    g bigint;
BEGIN
    INSERT INTO credits.grants (org_id, amount, remaining, expires_at, note)
    VALUES (org, amount, amount, expires_at, note)
    RETURNING grant_id INTO g;
    UPDATE credits.pools
       SET topup = topup + amount,
           next_grant_expiry = CASE WHEN _add_grant.expires_at IS NULL THEN next_grant_expiry
                                    ELSE least(next_grant_expiry, _add_grant.expires_at) END
     WHERE pools.org_id = org RETURNING * INTO p;
    UPDATE credits.pools
       SET alert_level = credits._alert_level(p, (SELECT o.thresholds FROM credits.orgs o
                                                   WHERE o.org_id = org))
     WHERE pools.org_id = org RETURNING * INTO p;
    INSERT INTO credits.ledger (org_id, kind, period_start, topup_change, available_after,
                                grant_id, note)
    VALUES (org, kind, p.period_start, amount,
            coalesce(frame - p.reserved, credits._available(p)), g, note);
    RETURN g;
END
$$;
COMMENT ON FUNCTION credits._add_grant(text, text, credits.credit, timestamptz, text, credits.credit) IS
    'internal: add a grant to the org''s pool and ledger it (top-up, rollover or auto-recharge)';

-- Expire the org's grants whose expiry has passed as of as_of.
CREATE FUNCTION credits._expire_grants(org text, as_of timestamptz) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    p credits.pools;
    g credits.grants;
BEGIN
    FOR g IN SELECT * FROM credits.grants
              WHERE org_id = org AND remaining > 0 AND expires_at <= as_of
              ORDER BY expires_at, grant_id FOR UPDATE
    LOOP
        SELECT * INTO p FROM credits.pools WHERE org_id = org FOR UPDATE;
        -- what is reserved stays covered: trim holds first if needed
        PERFORM credits._trim_holds(org, p.allowance - p.allowance_used + p.topup - g.remaining);
        UPDATE credits.grants SET remaining = 0, expired_amount = expired_amount + g.remaining
         WHERE grant_id = g.grant_id;
        UPDATE credits.pools SET topup = topup - g.remaining WHERE org_id = org
        RETURNING * INTO p;
        INSERT INTO credits.ledger (org_id, kind, period_start, topup_change, available_after,
                                    grant_id, note)
        VALUES (org, 'expire', p.period_start, -g.remaining, credits._available(p),
                g.grant_id, 'grant expired at ' || g.expires_at);
    END LOOP;
    UPDATE credits.pools SET next_grant_expiry =
        (SELECT min(expires_at) FROM credits.grants WHERE org_id = org AND remaining > 0)
     WHERE org_id = org;
END
$$;
COMMENT ON FUNCTION credits._expire_grants(text, timestamptz) IS
    'internal: drop what remains of the org''s grants that expired by as_of';

-- Draw amount from the org's grants for ledger entry entry_id: earliest
-- expiry first, never-expiring last, then oldest first; from grants older
-- than before_grant only, when given (the auto-recharge a charge added is
-- not drawn by that charge, which was made without it).  The caller (C)
-- has locked the pool and moves the amount from pools.topup itself.
CREATE FUNCTION credits._draw_grants(org text, entry bigint, amount credits.credit,
                                     before_grant bigint DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    g credits.grants;
    left_ credits.credit := amount;
    take credits.credit;
BEGIN
    FOR g IN SELECT * FROM credits.grants
              WHERE org_id = org AND remaining > 0
                AND (before_grant IS NULL OR grant_id < before_grant)
              ORDER BY expires_at NULLS LAST, grant_id FOR UPDATE
    LOOP
        take := least(g.remaining, left_);
        UPDATE credits.grants SET remaining = remaining - take WHERE grant_id = g.grant_id;
        INSERT INTO credits.grant_draws (entry_id, grant_id, amount) VALUES (entry, g.grant_id, take);
        left_ := left_ - take;
        EXIT WHEN left_ = 0;
    END LOOP;
    IF left_ > 0 THEN
        RAISE EXCEPTION 'grants of org "%" do not cover a draw of %', org, amount
            USING ERRCODE = 'XX000';
    END IF;
    UPDATE credits.pools SET next_grant_expiry =
        (SELECT min(expires_at) FROM credits.grants WHERE org_id = org AND remaining > 0)
     WHERE org_id = org;
END
$$;
COMMENT ON FUNCTION credits._draw_grants(text, bigint, credits.credit, bigint) IS
    'internal: record which grants a charge''s top-up part was drawn from';

-- Close the org's period and open the one containing as_of, if it is due.
-- Missed periods are skipped, not replayed.
CREATE FUNCTION credits._rollover(org text, as_of timestamptz) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    p credits.pools;
    old credits.pools;
    o credits.orgs;
    b record;
    new_allowance credits.credit;
    expiring credits.credit;
    rolled credits.credit := 0;
    rollover_end timestamptz;
    rollover_grant bigint;
BEGIN
    SELECT * INTO old FROM credits.pools WHERE org_id = org FOR UPDATE;
    p := old;
    IF NOT FOUND OR p.period_end > as_of THEN
        RETURN false;
    END IF;
    SELECT * INTO o FROM credits.orgs WHERE org_id = org;
    SELECT * INTO b FROM credits.billing_period(o.billing_anchor, o.period, o.time_zone, as_of);

    INSERT INTO credits.periods (org_id, period_start, period_end, allowance, allowance_used,
                                 topup_used, shortfall, calls)
    VALUES (org, p.period_start, p.period_end, p.allowance, p.allowance_used, p.topup_used,
            p.shortfall, p.calls);

    SELECT coalesce(pg_catalog.sum(coalesce(m.allowance, o.allowance_per_user)), 0)
      INTO new_allowance
      FROM credits.members m WHERE m.org_id = org AND m.active;

    SELECT coalesce(pg_catalog.sum(g.remaining), 0) INTO expiring
      FROM credits.grants g
     WHERE g.org_id = org AND g.remaining > 0 AND g.expires_at <= as_of;

    -- rollover: the closed period's unused allowance, up to rollover_max,
    -- becomes a grant that lasts rollover_periods periods counting the new
    -- one (only the last closed period rolls over when periods were skipped)
    IF o.rollover_max IS NOT NULL THEN
        rolled := least(greatest(old.allowance - old.allowance_used, 0), o.rollover_max);
        rollover_end := b.period_end;
        FOR i IN 2 .. o.rollover_periods LOOP
            SELECT x.period_end INTO rollover_end
              FROM credits.billing_period(o.billing_anchor, o.period, o.time_zone, rollover_end) x;
        END LOOP;
    END IF;

    -- Start the new period.  Every step keeps the pool's figures valid: the
    -- allowance changes only once what is reserved fits in the new funds.
    -- members' usage starts again; their open holds are carried
    DELETE FROM credits.member_usage WHERE org_id = org AND reserved = 0;
    UPDATE credits.member_usage SET used = 0 WHERE org_id = org;
    UPDATE credits.team_spend SET used = 0 WHERE org_id = org AND used <> 0;
    UPDATE credits.pools
       SET period_start = b.period_start, period_end = b.period_end,
           allowance_used = 0, topup_used = 0, calls = 0, shortfall = 0, alert_level = 0,
           stripes = 0, waits = 0, auto_recharges = 0
     WHERE org_id = org;
    -- the rollover grant belongs to the new period, and covers holds too
    IF rolled > 0 THEN
        rollover_grant := credits._add_grant(org, 'rollover', rolled, rollover_end,
            'rollover of period ' || old.period_start || ' .. ' || old.period_end,
            new_allowance + p.topup + rolled);
    END IF;
    -- expired holds are released; the others are carried, trimmed if the
    -- new period (without its expired grants) cannot cover them
    PERFORM credits._expire_holds(org, as_of, new_allowance + p.topup + rolled);
    PERFORM credits._trim_holds(org, new_allowance + p.topup + rolled - expiring,
                                new_allowance + p.topup + rolled);
    UPDATE credits.pools SET allowance = new_allowance WHERE org_id = org;
    PERFORM credits._expire_grants(org, as_of);
    SELECT * INTO p FROM credits.pools WHERE org_id = org;
    UPDATE credits.pools SET alert_level = credits._alert_level(p, o.thresholds)
     WHERE org_id = org RETURNING * INTO p;

    INSERT INTO credits.ledger (org_id, kind, period_start, available_after, note)
    VALUES (org, 'reset', p.period_start, credits._available(p),
            'period ' || b.period_start || ' .. ' || b.period_end);
    PERFORM credits._emit_event(org, 'period_reset', jsonb_build_object(
        'period_start', p.period_start, 'period_end', p.period_end,
        'allowance', p.allowance::numeric, 'topup', p.topup::numeric,
        'reserved', p.reserved::numeric, 'available', credits._available(p)::numeric,
        'rollover', jsonb_build_object('amount', rolled::numeric, 'grant_id', rollover_grant,
                                       'expires_at', CASE WHEN rolled > 0 THEN rollover_end END),
        'previous', jsonb_build_object(
            'period_start', old.period_start, 'period_end', old.period_end,
            'allowance', old.allowance::numeric, 'allowance_used', old.allowance_used::numeric,
            'topup_used', old.topup_used::numeric, 'shortfall', old.shortfall::numeric,
            'calls', old.calls)));
    RETURN true;
END
$$;
COMMENT ON FUNCTION credits._rollover(text, timestamptz) IS
    'internal: close the org''s ended period into credits.periods and open the one containing as_of';

-- ---------------------------------------------------------------------------
-- Admin: recharge, reset_due, schedule_jobs
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits.recharge(org_id text, amount credits.credit DEFAULT NULL,
                                 expires_at timestamptz DEFAULT NULL, note text DEFAULT NULL)
    RETURNS credits.pool_status
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    o credits.orgs := credits._get_org(org_id);
    p credits.pools;
    restored credits.credit;
    g bigint;
    result credits.pool_status;
BEGIN
    PERFORM credits._maintain(o.org_id, now());
    PERFORM credits._consolidate(o.org_id);
    SELECT * INTO p FROM credits.pools WHERE pools.org_id = o.org_id FOR UPDATE;

    IF amount IS NULL THEN
        IF expires_at IS NOT NULL THEN
            RAISE EXCEPTION 'expires_at needs an amount'
                USING ERRCODE = '22023',
                      HINT = 'recharge(org_id) restores the period; recharge(org_id, amount, expires_at) adds a grant.';
        END IF;
        -- restore the current period: allowance used, members' and teams' usage back to 0
        restored := p.allowance_used;
        DELETE FROM credits.member_usage u WHERE u.org_id = o.org_id AND u.reserved = 0;
        UPDATE credits.member_usage u SET used = 0 WHERE u.org_id = o.org_id;
        UPDATE credits.team_spend t SET used = 0 WHERE t.org_id = o.org_id AND t.used <> 0;
        UPDATE credits.pools SET allowance_used = 0 WHERE pools.org_id = o.org_id RETURNING * INTO p;
        UPDATE credits.pools SET alert_level = credits._alert_level(p, o.thresholds)
         WHERE pools.org_id = o.org_id RETURNING * INTO p;
        INSERT INTO credits.ledger (org_id, kind, period_start, from_allowance, available_after, note)
        VALUES (o.org_id, 'recharge', p.period_start, -restored, credits._available(p), note);
        PERFORM credits._emit_event(o.org_id, 'recharge', jsonb_build_object(
            'period_start', p.period_start, 'restored', restored::numeric,
            'available', credits._available(p)::numeric, 'note', note));
    ELSE
        IF amount <= 0 THEN
            RAISE EXCEPTION 'amount must be positive' USING ERRCODE = '22023',
                DETAIL = format('amount is %s.', amount);
        END IF;
        IF expires_at IS NOT NULL AND expires_at <= now() THEN
            RAISE EXCEPTION 'expires_at must be in the future' USING ERRCODE = '22023',
                DETAIL = format('expires_at is %s.', expires_at);
        END IF;
        g := credits._add_grant(o.org_id, 'topup', amount, expires_at, note);
        SELECT * INTO p FROM credits.pools WHERE pools.org_id = o.org_id;
        PERFORM credits._emit_event(o.org_id, 'topup', jsonb_build_object(
            'grant_id', g, 'amount', amount::numeric, 'expires_at', expires_at,
            'available', credits._available(p)::numeric, 'note', note));
    END IF;

    SELECT * INTO result FROM credits.pool_status s WHERE s.org_id = o.org_id;
    RETURN result;
END
$$;
COMMENT ON FUNCTION credits.recharge(text, credits.credit, timestamptz, text) IS
    'without amount: restore the current period (allowance used back to 0); with amount: add a purchased grant, optionally expiring';

CREATE FUNCTION credits.reset_due(as_of timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    org text;
    n integer := 0;
BEGIN
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be null' USING ERRCODE = '22004';
    END IF;
    -- orgs in a fixed order, so that concurrent runs never deadlock
    FOR org IN SELECT p.org_id FROM credits.pools p WHERE p.period_end <= as_of ORDER BY p.org_id
    LOOP
        IF credits._maintain(org, as_of) THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION credits.reset_due(timestamptz) IS
    'roll every org whose period ended by as_of into its current period; returns how many rolled over';

CREATE FUNCTION credits.schedule_jobs() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in this database'
            USING ERRCODE = '55000',
                  HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name to this database, and run CREATE EXTENSION pg_cron; or schedule credits.reset_due() and credits.expire_holds() with any other scheduler.';
    END IF;
    -- cron.schedule(name, ...) replaces a job of the same name: idempotent
    EXECUTE $q$SELECT cron.schedule('credits-reset-due', '* * * * *',
                                    'SELECT credits.reset_due()')$q$;
    EXECUTE $q$SELECT cron.schedule('credits-expire-holds', '* * * * *',
                                    'SELECT credits.expire_holds()')$q$;
END
$$;
COMMENT ON FUNCTION credits.schedule_jobs() IS
    'register pg_cron jobs running credits.reset_due() and credits.expire_holds() every minute (idempotent)';
