-- ---------------------------------------------------------------------------
-- Organizations, members and pools
-- ---------------------------------------------------------------------------

CREATE TABLE credits.orgs (
    org_id             text PRIMARY KEY CHECK (org_id <> '' AND octet_length(org_id) <= 255),
    name               text NOT NULL,
    allowance_per_user credits.credit NOT NULL DEFAULT 1000 CHECK (allowance_per_user >= 0),
    billing_anchor     timestamptz NOT NULL DEFAULT now(),
    period             interval NOT NULL DEFAULT '1 month' CHECK (credits.valid_period(period)),
    time_zone          text NOT NULL DEFAULT 'UTC',
    thresholds         integer[] NOT NULL DEFAULT '{80,100}'
                       CHECK (array_position(thresholds, NULL) IS NULL AND cardinality(thresholds) <= 16
                              AND 0 < ALL (thresholds) AND 100 >= ALL (thresholds)),
    created_at         timestamptz NOT NULL DEFAULT now(),
    stripes            integer CHECK (stripes BETWEEN 0 AND 32),
    rollover_max       credits.credit CHECK (rollover_max >= 0),
    rollover_periods   integer NOT NULL DEFAULT 1 CHECK (rollover_periods BETWEEN 1 AND 1000),
    auto_recharge_below  credits.credit CHECK (auto_recharge_below > 0),
    auto_recharge_amount credits.credit CHECK (auto_recharge_amount > 0),
    auto_recharge_max    integer NOT NULL DEFAULT 1 CHECK (auto_recharge_max >= 1),
    auto_recharge_expires_after interval CHECK (auto_recharge_expires_after > interval '0'),
    CONSTRAINT orgs_auto_recharge_amount
        CHECK ((auto_recharge_below IS NULL) = (auto_recharge_amount IS NULL))
);
COMMENT ON TABLE credits.orgs IS
    'organizations: plan (credits per user per period) and billing period (anchor, length, time zone)';
COMMENT ON COLUMN credits.orgs.thresholds IS
    'percentages of the period''s credits (allowance + top-up) whose crossing emits a threshold event';
COMMENT ON COLUMN credits.orgs.stripes IS
    'escrow stripes of the pool (0 to 32): NULL (the default) lets the pool grow them when its debits contend, up to credits.max_stripes';
COMMENT ON COLUMN credits.orgs.rollover_max IS
    'most of a period''s unused allowance that becomes a rollover grant when the period closes; NULL: no rollover';
COMMENT ON COLUMN credits.orgs.rollover_periods IS
    'periods a rollover grant lasts, counting the one it starts in';
COMMENT ON COLUMN credits.orgs.auto_recharge_below IS
    'a charge that takes available under this adds an auto-recharge grant; NULL: no auto-recharge';
COMMENT ON COLUMN credits.orgs.auto_recharge_amount IS 'credits of each auto-recharge grant';
COMMENT ON COLUMN credits.orgs.auto_recharge_max IS 'most auto-recharges per period';
COMMENT ON COLUMN credits.orgs.auto_recharge_expires_after IS
    'an auto-recharge grant expires this long after it is added; NULL: never';
COMMENT ON COLUMN credits.orgs.allowance_per_user IS
    'credits each active member brings into the pool per period, unless the member overrides it';

CREATE TABLE credits.org_providers (
    org_id     text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    provider   text NOT NULL REFERENCES credits.providers ON UPDATE CASCADE,
    enabled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, provider)
);
COMMENT ON TABLE credits.org_providers IS
    'providers an org has enabled: its users see and may call only these providers'' models';

-- Teams split an org's pool below the org (1.1): a member belongs to at
-- most one team, and a team's cap bounds what its members draw from the
-- pool together in a period.
CREATE TABLE credits.teams (
    org_id     text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    team_id    text NOT NULL CHECK (team_id <> '' AND octet_length(team_id) <= 255),
    cap        credits.credit CHECK (cap >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, team_id)
);
COMMENT ON TABLE credits.teams IS
    'teams of an org: each bounds what its members draw from the pool together per period';
COMMENT ON COLUMN credits.teams.cap IS
    'most the team''s members may draw from the pool together per period; NULL means no cap';

CREATE TABLE credits.members (
    org_id     text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    user_id    text NOT NULL CHECK (user_id <> '' AND octet_length(user_id) <= 255),
    allowance  credits.credit CHECK (allowance >= 0),
    cap        credits.credit CHECK (cap >= 0),
    active     boolean NOT NULL DEFAULT true,
    added_at   timestamptz NOT NULL DEFAULT now(),
    removed_at timestamptz,
    team_id    text,
    PRIMARY KEY (org_id, user_id),
    CONSTRAINT members_team_fkey FOREIGN KEY (org_id, team_id)
        REFERENCES credits.teams ON DELETE SET NULL (team_id)
);
CREATE INDEX members_team_idx ON credits.members (org_id, team_id) WHERE team_id IS NOT NULL;
COMMENT ON TABLE credits.members IS
    'members of an org; each active member brings an allowance into the org''s pool';
COMMENT ON COLUMN credits.members.allowance IS
    'this member''s allowance per period; NULL means the org''s allowance_per_user';
COMMENT ON COLUMN credits.members.cap IS
    'most this member may draw from the pool per period; NULL means no personal cap';
COMMENT ON COLUMN credits.members.active IS
    'removed members are kept inactive so that their history stays';
COMMENT ON COLUMN credits.members.team_id IS
    'the member''s team, whose cap bounds this member''s draws with the other members''; NULL means none';

CREATE TABLE credits.member_usage (
    org_id  text NOT NULL,
    user_id text NOT NULL,
    used     credits.credit NOT NULL DEFAULT 0,
    reserved credits.credit NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, user_id),
    FOREIGN KEY (org_id, user_id) REFERENCES credits.members ON DELETE CASCADE
) WITH (fillfactor = 50);   -- room for HOT updates: every debit updates a row
COMMENT ON TABLE credits.member_usage IS
    'credits each member drew from the pool in the current period and holds open now (maintained by the extension)';
COMMENT ON COLUMN credits.member_usage.used IS 'drawn in the current period';
COMMENT ON COLUMN credits.member_usage.reserved IS
    'held by the member''s open holds: counts against a personal cap until settled or released';

-- What the members of each capped team drew from the pool in the current
-- period and hold open now: a row exists exactly while the team has a cap
-- (credits._team_changed creates it from the ledger and the open holds, and
-- drops it with the cap), and only charges that hold the org's pool lock
-- write it, so a team's cap is checked exactly.  Teams without a cap cost
-- their members' charges nothing: team_usage() reads their figures from the
-- ledger.
CREATE TABLE credits.team_spend (
    org_id   text NOT NULL,
    team_id  text NOT NULL,
    used     credits.credit NOT NULL DEFAULT 0,
    reserved credits.credit NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, team_id),
    FOREIGN KEY (org_id, team_id) REFERENCES credits.teams ON DELETE CASCADE
) WITH (fillfactor = 50);   -- room for HOT updates: every charge of a capped team updates a row
COMMENT ON TABLE credits.team_spend IS
    'credits each capped team''s members drew from the pool in the current period and hold open now (maintained by the extension)';
COMMENT ON COLUMN credits.team_spend.used IS 'drawn in the current period';
COMMENT ON COLUMN credits.team_spend.reserved IS
    'held by the open holds the team''s members made while in it: counts against the team''s cap until settled or released';

CREATE TABLE credits.pools (
    org_id            text PRIMARY KEY REFERENCES credits.orgs ON DELETE CASCADE,
    period_start      timestamptz NOT NULL,
    period_end        timestamptz NOT NULL,
    allowance         credits.credit NOT NULL DEFAULT 0,
    allowance_used    credits.credit NOT NULL DEFAULT 0,
    topup             credits.credit NOT NULL DEFAULT 0,
    topup_used        credits.credit NOT NULL DEFAULT 0,
    reserved          credits.credit NOT NULL DEFAULT 0,
    calls             bigint NOT NULL DEFAULT 0,
    shortfall         credits.credit NOT NULL DEFAULT 0,
    alert_level       integer NOT NULL DEFAULT 0,
    next_grant_expiry timestamptz,
    next_hold_expiry  timestamptz,
    stripes           integer NOT NULL DEFAULT 0,
    waits             integer NOT NULL DEFAULT 0,
    auto_recharges    integer NOT NULL DEFAULT 0,
    escrowed          credits.credit NOT NULL DEFAULT 0,
    -- the invariant every write is checked against (credits.verify() checks
    -- the rest; each CHECK here is paid by every charge)
    CONSTRAINT pools_available_not_negative
        CHECK (allowance - allowance_used + topup - reserved >= 0)
) WITH (fillfactor = 50);   -- room for HOT updates: every slow-path charge updates a row
COMMENT ON TABLE credits.pools IS
    'each org''s pool for its current billing period (maintained by the extension; never written by hand)';
COMMENT ON COLUMN credits.pools.allowance IS
    'sum of the active members'' allowances; raised at once, lowered only at the next period';
COMMENT ON COLUMN credits.pools.allowance_used IS 'allowance drawn in this period';
COMMENT ON COLUMN credits.pools.topup IS 'what remains of the org''s unexpired purchased grants';
COMMENT ON COLUMN credits.pools.topup_used IS 'credits drawn from grants in this period';
COMMENT ON COLUMN credits.pools.calls IS
    'calls charged (debits and settles) in this period, except those still counted on the stripes (pool_stripes.calls)';
COMMENT ON COLUMN credits.pools.shortfall IS
    'cost that could not be charged in this period, except what is still counted on the stripes (pool_stripes.shortfall)';
COMMENT ON COLUMN credits.pools.alert_level IS
    'highest threshold (percent) already announced in this period';
COMMENT ON COLUMN credits.pools.next_grant_expiry IS
    'earliest expiry of a grant with credits left: the next call after it expires the grant';
COMMENT ON COLUMN credits.pools.next_hold_expiry IS
    'earliest expiry of an open hold: the next call after it releases the hold';
COMMENT ON COLUMN credits.pools.reserved IS 'credits held by open holds';
COMMENT ON COLUMN credits.pools.waits IS
    'recent waits for the pool lock since it last split or grew: one is forgotten every 4 of its calls (see credits.split_after)';
COMMENT ON COLUMN credits.pools.auto_recharges IS
    'auto-recharge grants added in this period (at most orgs.auto_recharge_max)';
COMMENT ON COLUMN credits.pools.escrowed IS
    'allowance escrowed over the stripes at their last escrow: what they hold and have used since adds up to it, so a pools row that holds more has credits left whatever its stripes used';
COMMENT ON COLUMN credits.pools.stripes IS
    'escrow stripes the pool is split over in this period (0: one balance); stripes numbered from here on are empty';

-- Escrow stripes: an org's hot balance, split, once its debits contend for
-- the pool lock (pools.stripes of them; 0: one balance).  A debit that fits
-- in its backend's stripe (its PGPROC slot modulo the stripes) is charged
-- there, locking that stripe row only, so concurrent debits of one org
-- commit in parallel.  Anything else locks the pool row and every stripe,
-- folds the stripes back into the pool (allowance_used += used), does its
-- work exactly as a single balance would, and escrows again: each stripe
-- gets a share of what may be spent without crossing the org's next
-- threshold, never more than is available.  So the pool never goes below 0,
-- thresholds and exhaustion are seen under the global lock, and every
-- figure is exact: pool = pools row + stripes.  Once the pool is empty, a
-- debit share-locks the pools row instead (every change that could add
-- credits writes that row, so it waits) and counts its call and shortfall
-- on its stripe.  Stripe rows are updated by every fast debit: a low
-- fillfactor keeps their HOT chains short (pages are pruned early) and
-- spreads them over pages.
CREATE TABLE credits.pool_stripes (
    org_id       text NOT NULL REFERENCES credits.orgs ON DELETE CASCADE,
    stripe       integer NOT NULL,
    funds        credits.credit NOT NULL DEFAULT 0,
    used         credits.credit NOT NULL DEFAULT 0,
    calls        bigint NOT NULL DEFAULT 0,
    period_start timestamptz NOT NULL,
    shortfall    credits.credit NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, stripe)
) WITH (fillfactor = 10);
COMMENT ON TABLE credits.pool_stripes IS
    'escrow stripes of each org''s allowance, for concurrent debits (maintained by the extension)';
COMMENT ON COLUMN credits.pool_stripes.funds IS 'allowance escrowed to this stripe, not yet used';
COMMENT ON COLUMN credits.pool_stripes.used IS
    'allowance used through this stripe since the pool last folded it in';
COMMENT ON COLUMN credits.pool_stripes.calls IS 'debits through this stripe since then';
COMMENT ON COLUMN credits.pool_stripes.shortfall IS
    'shortfall of the debits of an empty pool counted through this stripe since then';

-- Fold the org's stripes into its pool row and empty them; the pool row is
-- then the whole truth until the next escrow.  Locks the pool, then the
-- stripes in order.
CREATE FUNCTION credits._consolidate(org text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    used_ credits.credit;
    calls_ bigint;
    shortfall_ credits.credit;
BEGIN
    PERFORM 1 FROM credits.pools p WHERE p.org_id = org FOR UPDATE;
    SELECT coalesce(pg_catalog.sum(s.used), 0), coalesce(sum(s.calls), 0),
           coalesce(pg_catalog.sum(s.shortfall), 0)
      INTO used_, calls_, shortfall_
      FROM (SELECT * FROM credits.pool_stripes s WHERE s.org_id = org
             ORDER BY s.stripe FOR UPDATE) s;
    UPDATE credits.pool_stripes s SET funds = 0, used = 0, calls = 0, shortfall = 0
     WHERE s.org_id = org
       AND (s.funds <> 0 OR s.used <> 0 OR s.calls <> 0 OR s.shortfall <> 0);
    UPDATE credits.pools p SET allowance_used = p.allowance_used + used_,
                               calls = p.calls + calls_,
                               shortfall = p.shortfall + shortfall_,
                               escrowed = 0
     WHERE p.org_id = org
       AND (used_ <> 0 OR calls_ <> 0 OR shortfall_ <> 0 OR p.escrowed <> 0);
END
$$;
COMMENT ON FUNCTION credits._consolidate(text) IS
    'internal: fold the org''s escrow stripes back into its pool row';

-- The one definition of a pool's available credits: credit_available() in
-- C, which the SQL code calls through this function; the pools CHECK
-- constraint states the same invariant.
CREATE FUNCTION credits._available(allowance credits.credit, allowance_used credits.credit,
                                   topup credits.credit, reserved credits.credit)
    RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credits_available' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION credits._available(credits.credit, credits.credit, credits.credit, credits.credit) IS
    'internal: a pool''s available credits, allowance - allowance_used + topup - reserved';

CREATE VIEW credits.pool_status AS
SELECT p.org_id, p.period_start, p.period_end, p.allowance, p.allowance_used, p.topup,
       p.reserved,
       credits._available(p.allowance, p.allowance_used, p.topup, p.reserved) AS available,
       credits._available(p.allowance, p.allowance_used, p.topup, p.reserved) = 0 AS exhausted
  FROM credits.pools p;
COMMENT ON VIEW credits.pool_status IS
    'one row per org for its current period: available = allowance - allowance_used + topup - reserved';

-- ---------------------------------------------------------------------------
-- Triggers: plain DML on orgs and members keeps every pool consistent
-- ---------------------------------------------------------------------------

-- Raise the org's pool to the sum of its active members' allowances, if that
-- is higher: a higher plan or a new member counts at once, a lower one at the
-- next period.  The pool row is locked before the sum is read, so concurrent
-- member changes are each counted.
CREATE FUNCTION credits._raise_allowance(org text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    total credits.credit;
BEGIN
    PERFORM 1 FROM credits.pools p WHERE p.org_id = org FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT coalesce(pg_catalog.sum(coalesce(m.allowance, o.allowance_per_user)), 0)
      INTO total
      FROM credits.orgs o
      JOIN credits.members m ON m.org_id = o.org_id AND m.active
     WHERE o.org_id = org;
    UPDATE credits.pools p SET allowance = total
     WHERE p.org_id = org AND p.allowance < total;
END
$$;
COMMENT ON FUNCTION credits._raise_allowance(text) IS
    'internal: raise the org''s pool allowance to the sum of its active members'' allowances';

CREATE FUNCTION credits._org_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._check_id(NEW.org_id, 'org_id');
    -- reports a bad period or time zone with 22023
    PERFORM credits.billing_period(NEW.billing_anchor, NEW.period, NEW.time_zone, now());
    IF TG_OP = 'UPDATE' AND NEW.org_id <> OLD.org_id THEN
        RAISE EXCEPTION 'an org''s org_id cannot be changed' USING ERRCODE = '0A000';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION credits._org_check() IS 'internal trigger: validate an org row';

CREATE FUNCTION credits._org_created() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    INSERT INTO credits.pools (org_id, period_start, period_end)
    SELECT NEW.org_id, b.period_start, b.period_end
      FROM credits.billing_period(NEW.billing_anchor, NEW.period, NEW.time_zone, now()) b;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION credits._org_created() IS 'internal trigger: open the new org''s pool';

CREATE FUNCTION credits._org_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    IF (NEW.billing_anchor, NEW.period, NEW.time_zone)
       IS DISTINCT FROM (OLD.billing_anchor, OLD.period, OLD.time_zone) THEN
        -- the current period ends at the new schedule's next boundary
        UPDATE credits.pools p SET period_end = b.period_end
          FROM credits.billing_period(NEW.billing_anchor, NEW.period, NEW.time_zone, now()) b
         WHERE p.org_id = NEW.org_id AND b.period_end > p.period_start;
    END IF;
    IF NEW.allowance_per_user > OLD.allowance_per_user THEN
        PERFORM credits._raise_allowance(NEW.org_id);
    END IF;
    IF (NEW.auto_recharge_below, NEW.auto_recharge_amount, NEW.auto_recharge_max)
       IS DISTINCT FROM (OLD.auto_recharge_below, OLD.auto_recharge_amount, OLD.auto_recharge_max) THEN
        -- the stripes were escrowed without the new threshold in mind: fold
        -- them, so that every charge that crosses it does so under the pool
        -- lock, where it adds the grant (fast debits under way finish first);
        -- the pools row is written, so that a charge that read it unlocked
        -- before this commits is not written (pool_try_debit)
        PERFORM credits._consolidate(NEW.org_id);
        UPDATE credits.pools p SET waits = p.waits WHERE p.org_id = NEW.org_id;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION credits._org_changed() IS
    'internal trigger: apply a plan or schedule change to the org''s pool';

CREATE FUNCTION credits._member_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM credits._check_id(NEW.user_id, 'user_id');
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM credits._raise_allowance(NEW.org_id);
    END IF;
    -- what a charge reads of the member under the pool lock (its cap, its
    -- team) changed: the pools row is written, so that a charge that read
    -- the row unlocked before this commits is not written (pool_try_debit)
    IF TG_OP = 'UPDATE' THEN
        IF (NEW.cap, NEW.team_id) IS DISTINCT FROM (OLD.cap, OLD.team_id) THEN
            UPDATE credits.pools p SET waits = p.waits WHERE p.org_id = NEW.org_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION credits._member_changed() IS
    'internal trigger: a new or more generous member raises the pool at once';

-- Restoring a dump loads credits.orgs (whose trigger opens a fresh pool) and
-- then credits.pools: the dumped pool replaces the fresh one.  Nothing else
-- ever inserts a pool for an org that has one.
CREATE FUNCTION credits._pool_replace() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    DELETE FROM credits.pools p WHERE p.org_id = NEW.org_id;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION credits._pool_replace() IS
    'internal trigger: a pool row loaded from a dump replaces the one its org''s trigger opened';

CREATE TRIGGER pools_replace BEFORE INSERT ON credits.pools
    FOR EACH ROW EXECUTE FUNCTION credits._pool_replace();
CREATE TRIGGER orgs_check BEFORE INSERT OR UPDATE ON credits.orgs
    FOR EACH ROW EXECUTE FUNCTION credits._org_check();
CREATE TRIGGER orgs_created AFTER INSERT ON credits.orgs
    FOR EACH ROW EXECUTE FUNCTION credits._org_created();
CREATE TRIGGER orgs_changed AFTER UPDATE ON credits.orgs
    FOR EACH ROW EXECUTE FUNCTION credits._org_changed();
CREATE TRIGGER members_changed AFTER INSERT OR UPDATE ON credits.members
    FOR EACH ROW EXECUTE FUNCTION credits._member_changed();

SELECT pg_catalog.pg_extension_config_dump('credits.orgs', '');
SELECT pg_catalog.pg_extension_config_dump('credits.org_providers', '');
SELECT pg_catalog.pg_extension_config_dump('credits.members', '');
SELECT pg_catalog.pg_extension_config_dump('credits.member_usage', '');
SELECT pg_catalog.pg_extension_config_dump('credits.teams', '');
SELECT pg_catalog.pg_extension_config_dump('credits.team_spend', '');
SELECT pg_catalog.pg_extension_config_dump('credits.pools', '');
SELECT pg_catalog.pg_extension_config_dump('credits.pool_stripes', '');

-- ---------------------------------------------------------------------------
-- Admin functions
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits._check_tenant(org_id text) RETURNS void
    AS 'MODULE_PATHNAME', 'credits_check_tenant' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION credits._check_tenant(text) IS
    'internal: 42501 when credits.org_id is set and names another org';

CREATE FUNCTION credits._get_org(org_id text) RETURNS credits.orgs
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    o credits.orgs;
BEGIN
    PERFORM credits._check_id(org_id, 'org_id');
    PERFORM credits._check_tenant(org_id);
    SELECT * INTO o FROM credits.orgs WHERE orgs.org_id = _get_org.org_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown org "%"', org_id USING ERRCODE = 'UC004',
            HINT = 'Create it with credits.create_org().';
    END IF;
    RETURN o;
END
$$;
COMMENT ON FUNCTION credits._get_org(text) IS 'internal: the org row, or UC004';

CREATE FUNCTION credits._check_provider(provider text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._check_id(provider, 'provider');
    PERFORM 1 FROM credits.providers p WHERE p.provider = _check_provider.provider;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown provider "%"', provider USING ERRCODE = '22023',
            HINT = 'See credits.providers, or add it with credits.add_provider().';
    END IF;
END
$$;
COMMENT ON FUNCTION credits._check_provider(text) IS 'internal: 22023 unless the provider exists';

CREATE FUNCTION credits.create_org(org_id text, name text DEFAULT NULL,
                                   allowance_per_user credits.credit DEFAULT 1000,
                                   billing_anchor timestamptz DEFAULT now(),
                                   period interval DEFAULT '1 month',
                                   time_zone text DEFAULT 'UTC')
    RETURNS credits.pool_status
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    result credits.pool_status;
BEGIN
    PERFORM credits._check_id(org_id, 'org_id');
    PERFORM credits._check_tenant(org_id);
    PERFORM credits._check_amount(allowance_per_user, 'allowance_per_user');
    IF billing_anchor IS NULL THEN
        RAISE EXCEPTION 'billing_anchor must not be null' USING ERRCODE = '22004';
    ELSIF period IS NULL THEN
        RAISE EXCEPTION 'period must not be null' USING ERRCODE = '22004';
    ELSIF time_zone IS NULL THEN
        RAISE EXCEPTION 'time_zone must not be null' USING ERRCODE = '22004';
    END IF;
    BEGIN
        INSERT INTO credits.orgs (org_id, name, allowance_per_user, billing_anchor, period, time_zone)
        VALUES (org_id, coalesce(name, org_id), allowance_per_user, billing_anchor, period, time_zone);
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'org "%" already exists', org_id USING ERRCODE = '23505';
    END;
    SELECT * INTO result FROM credits.pool_status s WHERE s.org_id = create_org.org_id;
    RETURN result;
END
$$;
COMMENT ON FUNCTION credits.create_org(text, text, credits.credit, timestamptz, interval, text) IS
    'create an org with its plan and billing period; returns its pool_status';

CREATE FUNCTION credits.enable_provider(org_id text, provider text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_provider(provider);
    INSERT INTO credits.org_providers (org_id, provider) VALUES (org_id, provider)
    ON CONFLICT DO NOTHING;
END
$$;
COMMENT ON FUNCTION credits.enable_provider(text, text) IS
    'let the org''s users see and call the provider''s models (idempotent)';

CREATE FUNCTION credits.disable_provider(org_id text, provider text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_provider(provider);
    DELETE FROM credits.org_providers op
     WHERE op.org_id = disable_provider.org_id AND op.provider = disable_provider.provider;
END
$$;
COMMENT ON FUNCTION credits.disable_provider(text, text) IS
    'hide the provider''s models from the org and refuse calls to them (idempotent)';

CREATE FUNCTION credits.add_member(org_id text, user_id text,
                                   allowance credits.credit DEFAULT NULL,
                                   cap credits.credit DEFAULT NULL)
    RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_id(user_id, 'user_id');
    IF allowance IS NOT NULL THEN
        PERFORM credits._check_amount(allowance, 'allowance');
    END IF;
    IF cap IS NOT NULL THEN
        PERFORM credits._check_amount(cap, 'cap');
    END IF;
    INSERT INTO credits.members AS m (org_id, user_id, allowance, cap)
    VALUES (org_id, user_id, allowance, cap)
    ON CONFLICT ON CONSTRAINT members_pkey DO UPDATE
        SET allowance = EXCLUDED.allowance, cap = EXCLUDED.cap, active = true,
            removed_at = NULL,
            added_at = CASE WHEN m.active THEN m.added_at ELSE now() END;
END
$$;
COMMENT ON FUNCTION credits.add_member(text, text, credits.credit, credits.credit) IS
    'add (or re-activate, or update) a member; allowance NULL = the org''s plan, cap NULL = no personal cap';

CREATE FUNCTION credits.remove_member(org_id text, user_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_id(user_id, 'user_id');
    UPDATE credits.members m SET active = false, removed_at = now()
     WHERE m.org_id = remove_member.org_id AND m.user_id = remove_member.user_id AND m.active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user "%" is not an active member of org "%"', user_id, org_id
            USING ERRCODE = 'UC005';
    END IF;
END
$$;
COMMENT ON FUNCTION credits.remove_member(text, text) IS
    'deactivate a member (history kept); the pool shrinks at the next period';

CREATE FUNCTION credits.set_plan(org_id text, allowance_per_user credits.credit) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_amount(allowance_per_user, 'allowance_per_user');
    UPDATE credits.orgs o SET allowance_per_user = set_plan.allowance_per_user
     WHERE o.org_id = set_plan.org_id;
END
$$;
COMMENT ON FUNCTION credits.set_plan(text, credits.credit) IS
    'change the credits each member brings per period: a raise counts at once, a cut at the next period';

-- ---------------------------------------------------------------------------
-- Each backend caches the configuration tables (src/cache.c); a change to
-- one of them drops the caches of every backend when it commits.
-- ---------------------------------------------------------------------------
CREATE FUNCTION credits._config_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'credits_config_changed' LANGUAGE C;
COMMENT ON FUNCTION credits._config_changed() IS
    'internal trigger: make every backend reload its cached copy of this table';
