-- ---------------------------------------------------------------------------
-- Rollover and auto-recharge (1.1)
--
-- Rollover: at each period close (credits._rollover), the closed period's
-- unused allowance, up to orgs.rollover_max, becomes a grant of ledger kind
-- 'rollover' that expires at the end of the rollover_periods-th period,
-- counting the one it starts in.
--
-- Auto-recharge: the charge (debit, settle or reserve) that takes an org's
-- available credits from at least orgs.auto_recharge_below to under it adds
-- a grant of auto_recharge_amount (ledger kind 'auto_recharge') in its own
-- transaction, and announces it (event 'auto_recharge', NOTIFY at commit),
-- at most auto_recharge_max times in a period.  The charge is made under the
-- org's pool lock (the escrow stripes never hold more than what keeps
-- available at or above the threshold: see escrow_share in src/pool.c), so
-- the crossing is seen exactly, and the count is kept on the pools row.
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits.set_rollover(org_id text, max_amount credits.credit,
                                     periods integer DEFAULT 1) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    IF max_amount IS NOT NULL THEN
        PERFORM credits._check_amount(max_amount, 'max_amount');
    END IF;
    IF periods IS NULL THEN
        RAISE EXCEPTION 'periods must not be null' USING ERRCODE = '22004';
    ELSIF periods NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'periods must be between 1 and 1000' USING ERRCODE = '22023',
            DETAIL = format('periods is %s.', periods),
            HINT = 'A rollover grant lasts this many periods, counting the one it starts in.';
    END IF;
    UPDATE credits.orgs o SET rollover_max = max_amount, rollover_periods = periods
     WHERE o.org_id = set_rollover.org_id;
END
$$;
COMMENT ON FUNCTION credits.set_rollover(text, credits.credit, integer) IS
    'at each period close, roll the unused allowance, up to max_amount, into a grant lasting periods periods (NULL max_amount: off)';

CREATE FUNCTION credits.set_auto_recharge(org_id text, below credits.credit,
                                          amount credits.credit,
                                          max_per_period integer DEFAULT 1,
                                          expires_after interval DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    IF below IS NULL THEN
        IF amount IS NOT NULL OR expires_after IS NOT NULL THEN
            RAISE EXCEPTION 'amount and expires_after need a threshold (below)'
                USING ERRCODE = '22023',
                      HINT = 'set_auto_recharge(org, NULL, NULL) turns auto-recharge off.';
        END IF;
    ELSE
        PERFORM credits._check_amount(below, 'below');
        IF below = 0 THEN
            RAISE EXCEPTION 'below must be positive' USING ERRCODE = '22023',
                DETAIL = 'available is never under 0: the recharge would never fire.',
                HINT = 'Recharge when a charge takes available under a positive amount.';
        ELSIF amount IS NULL THEN
            RAISE EXCEPTION 'below needs an amount' USING ERRCODE = '22023',
                HINT = 'Each auto-recharge adds a grant of amount credits.';
        ELSIF amount <= 0 THEN
            RAISE EXCEPTION 'amount must be positive' USING ERRCODE = '22023',
                DETAIL = format('amount is %s.', amount);
        ELSIF max_per_period IS NULL THEN
            RAISE EXCEPTION 'max_per_period must not be null' USING ERRCODE = '22004';
        ELSIF max_per_period < 1 THEN
            RAISE EXCEPTION 'max_per_period must be at least 1' USING ERRCODE = '22023',
                DETAIL = format('max_per_period is %s.', max_per_period),
                HINT = 'set_auto_recharge(org, NULL, NULL) turns auto-recharge off.';
        ELSIF expires_after <= interval '0' THEN
            RAISE EXCEPTION 'expires_after must be longer than zero' USING ERRCODE = '22023',
                DETAIL = format('expires_after is %s.', expires_after);
        END IF;
    END IF;
    -- the orgs trigger folds the escrow stripes when the threshold changes
    UPDATE credits.orgs o
       SET auto_recharge_below = below,
           auto_recharge_amount = CASE WHEN below IS NULL THEN NULL ELSE amount END,
           auto_recharge_max = CASE WHEN below IS NULL THEN 1 ELSE max_per_period END,
           auto_recharge_expires_after = expires_after
     WHERE o.org_id = set_auto_recharge.org_id;
END
$$;
COMMENT ON FUNCTION credits.set_auto_recharge(text, credits.credit, credits.credit, integer, interval) IS
    'add a grant of amount (expiring after expires_after) when a charge takes available under below, at most max_per_period times a period (NULL below: off)';

-- The auto-recharge of a charge that took the org's available credits
-- under its threshold (src/pool.c calls this under the pool lock, once the
-- charge is in the pools row and before it is ledgered): adds the grant and
-- announces it, unless the period's recharges are used up or auto-recharge
-- is off (the settings are read here, as committed).  Returns the amount
-- added (0: none), its grant, and the pool's alert level after it (the
-- grant re-arms the thresholds above what is spent now).
CREATE FUNCTION credits._auto_recharge(org text, OUT amount credits.credit,
                                       OUT grant_id bigint, OUT alert_level integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    o credits.orgs;
    p credits.pools;
    expires timestamptz;
BEGIN
    SELECT * INTO o FROM credits.orgs WHERE orgs.org_id = org;
    SELECT * INTO p FROM credits.pools WHERE pools.org_id = org FOR UPDATE;
    amount := 0;
    alert_level := p.alert_level;
    IF o.auto_recharge_below IS NULL OR p.auto_recharges >= o.auto_recharge_max THEN
        RETURN;
    END IF;
    expires := now() + o.auto_recharge_expires_after;
    grant_id := credits._add_grant(org, 'auto_recharge', o.auto_recharge_amount, expires,
                            'auto-recharge ' || (p.auto_recharges + 1) || ' of '
                            || o.auto_recharge_max || ' in period ' || p.period_start);
    UPDATE credits.pools SET auto_recharges = auto_recharges + 1
     WHERE pools.org_id = org RETURNING * INTO p;
    PERFORM credits._emit_event(org, 'auto_recharge', jsonb_build_object(
        'grant_id', grant_id, 'amount', o.auto_recharge_amount::numeric,
        'below', o.auto_recharge_below::numeric, 'expires_at', expires,
        'period_start', p.period_start, 'recharges_in_period', p.auto_recharges,
        'max_per_period', o.auto_recharge_max,
        'available', credits._available(p)::numeric));
    amount := o.auto_recharge_amount;
    alert_level := p.alert_level;
END
$$;
COMMENT ON FUNCTION credits._auto_recharge(text) IS
    'internal: add the org''s auto-recharge grant for a charge that took available under its threshold (under the pool lock)';
