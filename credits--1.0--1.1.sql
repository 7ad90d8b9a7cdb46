-- credits 1.0 -> 1.1
--
-- Every schema change of 1.1, applied to a database at 1.0 by
-- ALTER EXTENSION credits UPDATE.  test/scripts/update.sh proves that an
-- updated 1.0 has the same catalog as a fresh 1.1 install.
\echo Use "ALTER EXTENSION credits UPDATE TO '1.1'" to load this file. \quit

-- No planner switches: the charge and hold functions and cost() ran with
-- enable_seqscan = off, which priced any sequential scan so high that the
-- cache-loading queries crossed jit_above_cost and were JIT-compiled on the
-- first call of every connection.
ALTER FUNCTION credits.cost(text, bigint, bigint) RESET enable_seqscan;
ALTER FUNCTION credits.credit_debit(text, text, text, bigint, bigint, text) RESET enable_seqscan;
ALTER FUNCTION credits.credit_reserve(text, text, text, bigint, bigint, text, interval) RESET enable_seqscan;
ALTER FUNCTION credits.credit_settle(bigint, bigint, bigint) RESET enable_seqscan;
ALTER FUNCTION credits.credit_release(bigint) RESET enable_seqscan;


-- The credit type's operators and aggregates move to pg_catalog, so that
-- sum(charged), available > 0 and a + b work from any search_path (a
-- dashboard's "$user", public included).  They keep their OIDs, so the
-- operator classes, views and stored expressions that use them are
-- unchanged; function bodies that named them credits.sum(...) or
-- OPERATOR(credits.+) are replaced below.
ALTER OPERATOR credits.= (credits.credit, credits.credit) SET SCHEMA pg_catalog;
ALTER OPERATOR credits.<> (credits.credit, credits.credit) SET SCHEMA pg_catalog;
ALTER OPERATOR credits.< (credits.credit, credits.credit) SET SCHEMA pg_catalog;
ALTER OPERATOR credits.<= (credits.credit, credits.credit) SET SCHEMA pg_catalog;
ALTER OPERATOR credits.> (credits.credit, credits.credit) SET SCHEMA pg_catalog;
ALTER OPERATOR credits.>= (credits.credit, credits.credit) SET SCHEMA pg_catalog;
ALTER OPERATOR credits.+ (credits.credit, credits.credit) SET SCHEMA pg_catalog;
ALTER OPERATOR credits.- (credits.credit, credits.credit) SET SCHEMA pg_catalog;
ALTER OPERATOR credits.- (NONE, credits.credit) SET SCHEMA pg_catalog;
ALTER OPERATOR credits.* (credits.credit, bigint) SET SCHEMA pg_catalog;
ALTER OPERATOR credits.* (bigint, credits.credit) SET SCHEMA pg_catalog;
ALTER OPERATOR credits./ (credits.credit, bigint) SET SCHEMA pg_catalog;
ALTER AGGREGATE credits.sum(credits.credit) SET SCHEMA pg_catalog;
ALTER AGGREGATE credits.min(credits.credit) SET SCHEMA pg_catalog;
ALTER AGGREGATE credits.max(credits.credit) SET SCHEMA pg_catalog;
ALTER AGGREGATE credits.avg(credits.credit) SET SCHEMA pg_catalog;


-- ---------------------------------------------------------------------------
-- Rollover, auto-recharge (as 030_orgs.sql, 050_ledger.sql; functions below)
-- ---------------------------------------------------------------------------
ALTER TABLE credits.orgs
    ADD COLUMN rollover_max       credits.credit CHECK (rollover_max >= 0),
    ADD COLUMN rollover_periods   integer NOT NULL DEFAULT 1 CHECK (rollover_periods BETWEEN 1 AND 1000),
    ADD COLUMN auto_recharge_below  credits.credit CHECK (auto_recharge_below > 0),
    ADD COLUMN auto_recharge_amount credits.credit CHECK (auto_recharge_amount > 0),
    ADD COLUMN auto_recharge_max    integer NOT NULL DEFAULT 1 CHECK (auto_recharge_max >= 1),
    ADD COLUMN auto_recharge_expires_after interval CHECK (auto_recharge_expires_after > interval '0'),
    ADD CONSTRAINT orgs_auto_recharge_amount
        CHECK ((auto_recharge_below IS NULL) = (auto_recharge_amount IS NULL));
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
ALTER TABLE credits.pools ADD COLUMN auto_recharges integer NOT NULL DEFAULT 0;
-- what the stripes were escrowed (readers of a pools row that holds more
-- need not read them); a database at 1.0 updates with its stripes empty or
-- not, so the column is set to what they hold
ALTER TABLE credits.pools ADD COLUMN escrowed credits.credit NOT NULL DEFAULT 0;
UPDATE credits.pools p
   SET escrowed = s.held
  FROM (SELECT x.org_id, pg_catalog.sum(x.funds) OPERATOR(pg_catalog.+) pg_catalog.sum(x.used) AS held
          FROM credits.pool_stripes x GROUP BY x.org_id) s
 WHERE s.org_id = p.org_id AND s.held OPERATOR(pg_catalog.<>) '0'::credits.credit;
COMMENT ON COLUMN credits.pools.escrowed IS
    'allowance escrowed over the stripes at their last escrow: what they hold and have used since adds up to it, so a pools row that holds more has credits left whatever its stripes used';
COMMENT ON COLUMN credits.pools.auto_recharges IS
    'auto-recharge grants added in this period (at most orgs.auto_recharge_max)';
-- 1.1 forgets old waits (pool.c, forget_waits)
COMMENT ON COLUMN credits.pools.waits IS
    'recent waits for the pool lock since it last split or grew: one is forgotten every 4 of its calls (see credits.split_after)';
-- events and ledger entries of the new kinds
ALTER TABLE credits.events DROP CONSTRAINT events_kind_check,
    ADD CONSTRAINT events_kind_check CHECK (kind IN ('threshold', 'recharge', 'topup', 'period_reset',
                                                     'auto_recharge'));
COMMENT ON TABLE credits.events IS
    'threshold crossings, recharges, top-ups, period resets and auto-recharges; each also sent as pg_notify(''credits'', payload)';
COMMENT ON COLUMN credits.ledger.kind IS
    'debit, hold, settle, release, recharge, topup, expire (a grant), reset (a new period), adjust, rollover (a grant of unused allowance) or auto_recharge (a grant added when available fell under the org''s threshold)';

-- ---------------------------------------------------------------------------
-- Teams (as 030_orgs.sql, 050_ledger.sql, 070_holds.sql; functions below)
-- ---------------------------------------------------------------------------

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

ALTER TABLE credits.members ADD COLUMN team_id text,
    ADD CONSTRAINT members_team_fkey FOREIGN KEY (org_id, team_id)
        REFERENCES credits.teams ON DELETE SET NULL (team_id);
CREATE INDEX members_team_idx ON credits.members (org_id, team_id) WHERE team_id IS NOT NULL;
COMMENT ON COLUMN credits.members.team_id IS
    'the member''s team, whose cap bounds this member''s draws with the other members''; NULL means none';

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

ALTER TABLE credits.ledger ADD COLUMN team_id text;
COMMENT ON COLUMN credits.ledger.team_id IS
    'the team the member was charged in (its cap counted the charge or hold); NULL: none';
ALTER TABLE credits.holds ADD COLUMN team_id text;
COMMENT ON COLUMN credits.holds.team_id IS
    'the member''s team when the hold was made: the settle is charged to it, the reservation counts against its cap';

SELECT pg_catalog.pg_extension_config_dump('credits.teams', '');
SELECT pg_catalog.pg_extension_config_dump('credits.team_spend', '');

-- The one definition of a pool's available credits: credit_available() in
-- C, which the SQL code calls through this function; the pools CHECK
-- constraint states the same invariant.
CREATE FUNCTION credits._available(allowance credits.credit, allowance_used credits.credit,
                                   topup credits.credit, reserved credits.credit)
    RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credits_available' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION credits._available(credits.credit, credits.credit, credits.credit, credits.credit) IS
    'internal: a pool''s available credits, allowance - allowance_used + topup - reserved';

-- Functions whose bodies named the operators or aggregates in schema credits,
-- or wrote the available formula out (it is credits._available now).
-- verify(org) of an org that does not exist is also UC004 (unknown org), as
-- for every other function, instead of no rows ("consistent").

CREATE OR REPLACE FUNCTION credits._available(p credits.pools) RETURNS credits.credit
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, credits, pg_temp AS $$
    SELECT credits._available(p.allowance, p.allowance_used, p.topup, p.reserved)
$$;

CREATE OR REPLACE FUNCTION credits._consolidate(org text) RETURNS void
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

CREATE OR REPLACE FUNCTION credits._raise_allowance(org text) RETURNS void
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

CREATE OR REPLACE FUNCTION credits._rollover(org text, as_of timestamptz) RETURNS boolean
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


-- usage() gains the member's team: a new result column, so it is created anew
DROP FUNCTION credits.usage(text, timestamptz, timestamptz);
CREATE FUNCTION credits.usage(org_id text, since timestamptz DEFAULT NULL,
                              until timestamptz DEFAULT NULL)
    RETURNS TABLE(user_id text, model text, calls bigint, input_tokens numeric,
                  output_tokens numeric, cost credits.credit, charged credits.credit,
                  shortfall credits.credit, team_id text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    o credits.orgs := credits._get_org(org_id);
    lo timestamptz := since;
    hi timestamptz := until;
BEGIN
    IF lo IS NULL AND hi IS NULL THEN
        SELECT p.period_start, p.period_end INTO lo, hi
          FROM credits.pools p WHERE p.org_id = o.org_id;
    END IF;
    RETURN QUERY
        SELECT l.user_id, l.model, count(*), sum(l.input_tokens), sum(l.output_tokens),
               coalesce(pg_catalog.sum(l.cost), 0), coalesce(pg_catalog.sum(l.charged), 0),
               coalesce(pg_catalog.sum(l.shortfall), 0), min(m.team_id)
          FROM credits.ledger l
          LEFT JOIN credits.members m ON m.org_id = l.org_id AND m.user_id = l.user_id
         WHERE l.org_id = o.org_id
           AND l.kind IN ('debit', 'settle')
           AND (lo IS NULL OR l.created_at >= lo)
           AND (hi IS NULL OR l.created_at < hi)
         GROUP BY l.user_id, l.model
         ORDER BY l.user_id, l.model;
END
$$;
COMMENT ON FUNCTION credits.usage(text, timestamptz, timestamptz) IS
    'usage per user and model in [since, until) (default: the current period): calls, tokens, cost, charged, shortfall, and the member''s team';
REVOKE ALL ON FUNCTION credits.usage(text, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits.usage(text, timestamptz, timestamptz)
    TO credits_reader, credits_admin;

CREATE OR REPLACE FUNCTION credits.verify(org_id text DEFAULT NULL)
    RETURNS TABLE(org_id text, check_name text, expected text, actual text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
    -- an org that does not exist is UC004, not "consistent"
    SELECT credits._get_org(verify.org_id) WHERE verify.org_id IS NOT NULL;
    WITH pools AS (
        -- a pool is its row plus its escrow stripes
        SELECT p.org_id, p.period_start, p.period_end, p.allowance, p.auto_recharges,
               p.allowance_used + coalesce(s.used, 0) AS allowance_used, p.topup,
               p.topup_used, p.reserved,
               credits._available(p.allowance, p.allowance_used + coalesce(s.used, 0), p.topup,
                                  p.reserved) AS available,
               coalesce(s.funds, 0) AS escrowed, coalesce(s.negative, false) AS negative_stripe,
               p.stripes, s.beyond, p.escrowed AS escrow_total,
               coalesce(s.funds, 0) + coalesce(s.used, 0) AS striped
          FROM credits.pools p
          LEFT JOIN (SELECT x.org_id, pg_catalog.sum(x.used) AS used, pg_catalog.sum(x.funds) AS funds,
                            bool_or(x.funds < 0 OR x.used < 0) AS negative,
                            max(x.stripe) FILTER (WHERE x.funds <> 0 OR x.used <> 0) AS beyond
                       FROM credits.pool_stripes x GROUP BY x.org_id) s USING (org_id)
         WHERE $1 IS NULL OR p.org_id = $1
    ),
    ledger AS (
        SELECT l.* FROM credits.ledger l WHERE $1 IS NULL OR l.org_id = $1
    ),
    period_ledger AS (
        SELECT p.org_id,
               coalesce(pg_catalog.sum(l.from_allowance), 0) AS from_allowance,
               coalesce(pg_catalog.sum(l.from_topup), 0) AS from_topup
          FROM pools p
          LEFT JOIN ledger l ON l.org_id = p.org_id AND l.period_start = p.period_start
         GROUP BY p.org_id
    ),
    all_ledger AS (
        SELECT p.org_id,
               coalesce(pg_catalog.sum(l.topup_change), 0)
                 - coalesce(pg_catalog.sum(l.from_topup), 0) AS topup,
               coalesce(pg_catalog.sum(l.reserved_change), 0) AS reserved
          FROM pools p
          LEFT JOIN ledger l ON l.org_id = p.org_id
         GROUP BY p.org_id
    ),
    -- a recharge restores the period: members' usage counts from the last one
    restored AS (
        SELECT p.org_id, coalesce(max(l.entry_id), 0) AS after
          FROM pools p
          LEFT JOIN ledger l ON l.org_id = p.org_id AND l.period_start = p.period_start
                            AND l.kind = 'recharge'
         GROUP BY p.org_id
    ),
    member_ledger AS (
        SELECT l.org_id, l.user_id, pg_catalog.sum(l.charged) AS charged
          FROM pools p
          JOIN restored r ON r.org_id = p.org_id
          JOIN ledger l ON l.org_id = p.org_id AND l.period_start = p.period_start
                       AND l.entry_id > r.after
         WHERE l.user_id IS NOT NULL
         GROUP BY l.org_id, l.user_id
    ),
    members_allowance AS (
        SELECT m.org_id, pg_catalog.sum(coalesce(m.allowance, o.allowance_per_user)) AS total
          FROM credits.members m JOIN credits.orgs o USING (org_id)
         WHERE m.active AND ($1 IS NULL OR m.org_id = $1)
         GROUP BY m.org_id
    ),
    grants AS (
        SELECT g.*, coalesce((SELECT pg_catalog.sum(d.amount) FROM credits.grant_draws d
                               WHERE d.grant_id = g.grant_id), 0) AS drawn
          FROM credits.grants g WHERE $1 IS NULL OR g.org_id = $1
    ),
    open_holds AS (
        SELECT p.org_id, coalesce(pg_catalog.sum(h.reserved), 0) AS reserved
          FROM pools p
          LEFT JOIN credits.holds h ON h.org_id = p.org_id AND h.status = 'open'
         GROUP BY p.org_id
    ),
    member_holds AS (
        SELECT h.org_id, h.user_id, pg_catalog.sum(h.reserved) AS reserved
          FROM credits.holds h
         WHERE h.status = 'open' AND ($1 IS NULL OR h.org_id = $1)
         GROUP BY h.org_id, h.user_id
    ),
    -- each capped team has a team_spend row, and only those
    team_rows AS (
        SELECT coalesce(t.org_id, s.org_id) AS org_id, coalesce(t.team_id, s.team_id) AS team_id,
               t.cap, s.used, s.reserved, t.team_id IS NOT NULL AS team_exists
          FROM (SELECT x.* FROM credits.teams x WHERE x.cap IS NOT NULL
                   AND ($1 IS NULL OR x.org_id = $1)) t
          FULL JOIN (SELECT x.* FROM credits.team_spend x JOIN pools p USING (org_id)) s
            USING (org_id, team_id)
    ),
    team_ledger AS (
        SELECT l.org_id, l.team_id, pg_catalog.sum(l.charged) AS charged
          FROM pools p
          JOIN restored r ON r.org_id = p.org_id
          JOIN ledger l ON l.org_id = p.org_id AND l.period_start = p.period_start
                       AND l.entry_id > r.after
          JOIN credits.teams t ON t.org_id = l.org_id AND t.team_id = l.team_id
                              AND l.created_at >= t.created_at
         GROUP BY l.org_id, l.team_id
    ),
    team_holds AS (
        SELECT h.org_id, h.team_id, pg_catalog.sum(h.reserved) AS reserved
          FROM credits.holds h
         WHERE h.status = 'open' AND h.team_id IS NOT NULL AND ($1 IS NULL OR h.org_id = $1)
         GROUP BY h.org_id, h.team_id
    )
    -- 1. available >= 0
    SELECT p.org_id, 'available_not_negative', '>= 0', p.available::text
      FROM pools p WHERE p.available < 0
    UNION ALL
    -- escrowed credits are part of what is available, never negative
    SELECT p.org_id, 'escrow_within_available', '<= ' || p.available::text, p.escrowed::text
      FROM pools p WHERE p.escrowed > p.available OR p.negative_stripe
    UNION ALL
    -- what the stripes hold and used since their escrow is what it gave them
    -- (readers of a pools row that holds more skip the stripes)
    SELECT p.org_id, 'escrow_matches_stripes', p.striped::text, p.escrow_total::text
      FROM pools p WHERE p.escrow_total <> p.striped
    UNION ALL
    -- the stripes numbered from pools.stripes on are empty (readers skip them)
    SELECT p.org_id, 'stripes_beyond_count_empty', '< ' || p.stripes, p.beyond::text
      FROM pools p WHERE p.beyond >= p.stripes
    UNION ALL
    -- 2. pool figures equal what the ledger implies
    SELECT p.org_id, 'allowance_used_matches_ledger', l.from_allowance::text, p.allowance_used::text
      FROM pools p JOIN period_ledger l USING (org_id)
     WHERE p.allowance_used <> l.from_allowance
    UNION ALL
    SELECT p.org_id, 'topup_used_matches_ledger', l.from_topup::text, p.topup_used::text
      FROM pools p JOIN period_ledger l USING (org_id)
     WHERE p.topup_used <> l.from_topup
    UNION ALL
    SELECT p.org_id, 'topup_matches_ledger', l.topup::text, p.topup::text
      FROM pools p JOIN all_ledger l USING (org_id)
     WHERE p.topup <> l.topup
    UNION ALL
    SELECT p.org_id, 'topup_matches_grants',
           coalesce((SELECT pg_catalog.sum(g.remaining) FROM grants g WHERE g.org_id = p.org_id), 0)::text,
           p.topup::text
      FROM pools p
     WHERE p.topup <> coalesce((SELECT pg_catalog.sum(g.remaining) FROM grants g
                                 WHERE g.org_id = p.org_id), 0)
    UNION ALL
    SELECT p.org_id, 'reserved_matches_ledger', l.reserved::text, p.reserved::text
      FROM pools p JOIN all_ledger l USING (org_id)
     WHERE p.reserved <> l.reserved
    UNION ALL
    SELECT p.org_id, 'reserved_matches_open_holds', h.reserved::text, p.reserved::text
      FROM pools p JOIN open_holds h USING (org_id)
     WHERE p.reserved <> h.reserved
    UNION ALL
    -- each grant's remaining equals its amount minus its draws (and expiry)
    SELECT g.org_id, 'grant_remaining:' || g.grant_id,
           (g.amount - g.drawn - g.expired_amount)::text, g.remaining::text
      FROM grants g
     WHERE g.remaining <> g.amount - g.drawn - g.expired_amount
    UNION ALL
    SELECT l.org_id, 'grant_draws_match_entry:' || l.entry_id, l.from_topup::text,
           coalesce((SELECT pg_catalog.sum(d.amount) FROM credits.grant_draws d
                      WHERE d.entry_id = l.entry_id), 0)::text
      FROM ledger l
     WHERE l.from_topup <> coalesce((SELECT pg_catalog.sum(d.amount) FROM credits.grant_draws d
                                      WHERE d.entry_id = l.entry_id), 0)
    UNION ALL
    -- member usage equals the sum of that member's charges
    SELECT coalesce(u.org_id, l.org_id),
           'member_usage_matches_ledger:' || coalesce(u.user_id, l.user_id),
           coalesce(l.charged, 0)::text, coalesce(u.used, 0)::text
      FROM (SELECT mu.* FROM credits.member_usage mu JOIN pools p USING (org_id)) u
      FULL JOIN member_ledger l USING (org_id, user_id)
     WHERE coalesce(u.used, 0) <> coalesce(l.charged, 0)
    UNION ALL
    SELECT coalesce(u.org_id, h.org_id),
           'member_reserved_matches_holds:' || coalesce(u.user_id, h.user_id),
           coalesce(h.reserved, 0)::text, coalesce(u.reserved, 0)::text
      FROM (SELECT mu.* FROM credits.member_usage mu JOIN pools p USING (org_id)) u
      FULL JOIN member_holds h USING (org_id, user_id)
     WHERE coalesce(u.reserved, 0) <> coalesce(h.reserved, 0)
    UNION ALL
    -- a capped team's usage equals its members' charges in it, its
    -- reservations their open holds in it
    SELECT t.org_id, 'team_spend_row:' || t.team_id,
           CASE WHEN t.team_exists THEN 'a row (capped team)' ELSE 'no row (no cap)' END,
           CASE WHEN t.used IS NULL THEN 'none' ELSE 'a row' END
      FROM team_rows t
     WHERE t.team_exists <> (t.used IS NOT NULL)
    UNION ALL
    SELECT t.org_id, 'team_usage_matches_ledger:' || t.team_id,
           coalesce(l.charged, 0)::text, t.used::text
      FROM team_rows t LEFT JOIN team_ledger l USING (org_id, team_id)
     WHERE t.used IS NOT NULL AND t.used <> coalesce(l.charged, 0)
    UNION ALL
    SELECT t.org_id, 'team_reserved_matches_holds:' || t.team_id,
           coalesce(h.reserved, 0)::text, t.reserved::text
      FROM team_rows t LEFT JOIN team_holds h USING (org_id, team_id)
     WHERE t.reserved IS NOT NULL AND t.reserved <> coalesce(h.reserved, 0)
    UNION ALL
    SELECT t.org_id, 'team_usage_not_negative:' || t.team_id, '>= 0', t.used || ' ' || t.reserved
      FROM team_rows t
     WHERE t.used < 0 OR t.reserved < 0
    UNION ALL
    -- every grant (top-up, rollover, auto-recharge) was ledgered once, as
    -- added; an org's auto-recharges of the period are counted on its pool
    SELECT coalesce(g.org_id, l.org_id), 'grant_ledgered:' || coalesce(g.grant_id, l.grant_id),
           coalesce(g.amount::text, 'no grant') || ' in 1 entry',
           coalesce(l.added::text, 'nothing') || ' in ' || coalesce(l.entries, 0) || ' entries'
      FROM grants g
      FULL JOIN (SELECT x.org_id, x.grant_id, pg_catalog.sum(x.topup_change) AS added,
                        count(*) AS entries
                   FROM ledger x
                  WHERE x.kind IN ('topup', 'rollover', 'auto_recharge')
                  GROUP BY x.org_id, x.grant_id) l
        ON l.grant_id = g.grant_id
     WHERE l.entries IS DISTINCT FROM 1 OR l.added IS DISTINCT FROM g.amount
    UNION ALL
    SELECT p.org_id, 'auto_recharges_match_ledger', count(l.entry_id)::text,
           p.auto_recharges::text
      FROM pools p
      LEFT JOIN ledger l ON l.org_id = p.org_id AND l.period_start = p.period_start
                        AND l.kind = 'auto_recharge'
     GROUP BY p.org_id, p.auto_recharges
    HAVING count(l.entry_id) <> p.auto_recharges
    UNION ALL
    -- the pool's allowance covers every active member
    SELECT p.org_id, 'allowance_covers_members', '>= ' || coalesce(m.total, 0)::text,
           p.allowance::text
      FROM pools p LEFT JOIN members_allowance m USING (org_id)
     WHERE p.allowance < coalesce(m.total, 0)
    UNION ALL
    -- each entry is well formed
    SELECT l.org_id, 'ledger_entry:' || l.entry_id,
           'known kind; charged = from_allowance + from_topup <= cost - shortfall',
           l.kind || ' ' || l.charged || ' ' || l.from_allowance || ' ' || l.from_topup
             || ' ' || l.cost || ' ' || l.shortfall
      FROM ledger l
     WHERE l.kind NOT IN ('debit', 'hold', 'settle', 'release', 'recharge', 'topup',
                          'expire', 'reset', 'adjust', 'rollover', 'auto_recharge')
        OR (l.kind IN ('debit', 'settle')
            AND (l.charged <> l.from_allowance + l.from_topup
                 OR l.charged + l.shortfall > l.cost
                 OR l.charged < 0 OR l.shortfall < 0))
    UNION ALL
    -- pool and member figures are never negative
    SELECT p.org_id, 'pool_figures_not_negative', '>= 0',
           p.allowance_used || ' ' || p.topup || ' ' || p.topup_used || ' ' || p.reserved
      FROM pools p
     WHERE p.allowance_used < 0 OR p.allowance_used > p.allowance OR p.topup < 0
        OR p.topup_used < 0 OR p.reserved < 0
    UNION ALL
    SELECT u.org_id, 'member_usage_not_negative:' || u.user_id, '>= 0', u.used || ' ' || u.reserved
      FROM credits.member_usage u JOIN pools p USING (org_id)
     WHERE u.used < 0 OR u.reserved < 0
    UNION ALL
    -- 3. a request_id is charged at most once per org
    SELECT l.org_id, 'request_id_once:' || l.request_id, '1', count(*)::text
      FROM ledger l
     WHERE l.request_id IS NOT NULL
     GROUP BY l.org_id, l.request_id HAVING count(*) > 1
    ORDER BY 1, 2
$$;

-- as 090_security.sql: no function for PUBLIC; pool_status computes with
-- the caller's privileges
REVOKE ALL ON FUNCTION credits._available(credits.credit, credits.credit, credits.credit, credits.credit) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits._available(credits.credit, credits.credit, credits.credit, credits.credit)
    TO credits_admin, credits_reader;

-- pool_status's rows come from credits._pool_status (C, status.c), which
-- computes what _pool_now (PL/pgSQL) computed, the rollover of a closed
-- period's unused allowance (1.1), and the forecast (1.1): burn_per_day is
-- what was charged since the period started (allowance and grants used,
-- from the pool's own counters, never a ledger scan; a restoring recharge
-- starts the allowance used again) per day elapsed; runs_out_at is when
-- available reaches 0 at that rate: as_of when it is 0, NULL when nothing
-- was charged or not before the period ends.  A new connection's first
-- pool_status plans a join and one function, and loads no procedural
-- language.
CREATE FUNCTION credits._pool_status(p credits.pools, o credits.orgs, as_of timestamptz,
                                     OUT period_start timestamptz, OUT period_end timestamptz,
                                     OUT allowance credits.credit,
                                     OUT allowance_used credits.credit,
                                     OUT topup credits.credit, OUT reserved credits.credit,
                                     OUT available credits.credit, OUT exhausted boolean,
                                     OUT burn_per_day credits.credit,
                                     OUT runs_out_at timestamptz)
    AS 'MODULE_PATHNAME', 'credits_pool_status' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION credits._pool_status(credits.pools, credits.orgs, timestamptz) IS
    'internal: the pool''s figures as of as_of, as the next call that locks it will find them, and its forecast (runs with the caller''s privileges: pool_status''s row)';
REVOKE ALL ON FUNCTION credits._pool_status(credits.pools, credits.orgs, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits._pool_status(credits.pools, credits.orgs, timestamptz)
    TO credits_admin, credits_reader;

CREATE OR REPLACE VIEW credits.pool_status AS
SELECT p.org_id, s.period_start, s.period_end, s.allowance, s.allowance_used, s.topup,
       s.reserved, s.available, s.exhausted, s.burn_per_day, s.runs_out_at
  FROM credits.pools p
  JOIN credits.orgs o ON o.org_id = p.org_id
 CROSS JOIN LATERAL credits._pool_status(p, o, now()) s;
COMMENT ON VIEW credits.pool_status IS
    'one row per org for its current period: available = allowance - allowance_used + topup - reserved; burn_per_day and runs_out_at forecast when it runs out';
-- CREATE OR REPLACE VIEW resets the options
ALTER VIEW credits.pool_status SET (security_invoker = true);
DROP FUNCTION credits._pool_now(credits.pools, credits.orgs, timestamptz);

-- Ledger ids are no longer cached per backend (CACHE 32 gave each session
-- its own block, so a charge that committed before a concurrent recharge
-- could have a larger entry_id, and verify() counted it after the
-- recharge): the ids of one org's entries follow the order its charges and
-- recharges took its locks.
ALTER TABLE credits.ledger ALTER COLUMN entry_id SET CACHE 1;

-- ---------------------------------------------------------------------------
-- Teams: functions and triggers (075_teams.sql), and the functions that
-- reset, trim or release team usage with member usage
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION credits._trim_holds(org text, funds credits.credit,
                                    frame credits.credit DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    h credits.holds;
    cut credits.credit;
    p credits.pools;
BEGIN
    SELECT * INTO p FROM credits.pools WHERE org_id = org FOR UPDATE;
    IF p.reserved <= funds THEN
        RETURN;
    END IF;
    FOR h IN SELECT * FROM credits.holds
              WHERE org_id = org AND status = 'open' AND reserved > 0
              ORDER BY hold_id DESC FOR UPDATE
    LOOP
        cut := least(h.reserved, p.reserved - funds);
        UPDATE credits.holds SET reserved = reserved - cut WHERE hold_id = h.hold_id;
        UPDATE credits.member_usage u SET reserved = u.reserved - cut
         WHERE u.org_id = org AND u.user_id = h.user_id;
        UPDATE credits.team_spend t SET reserved = t.reserved - cut
         WHERE t.org_id = org AND t.team_id = h.team_id;
        UPDATE credits.pools SET reserved = reserved - cut WHERE org_id = org RETURNING * INTO p;
        INSERT INTO credits.ledger (org_id, kind, period_start, user_id, model, reserved_change,
                                    available_after, hold_id, note, team_id)
        VALUES (org, 'release', p.period_start, h.user_id, h.model, -cut,
                coalesce(frame, funds) - p.reserved, h.hold_id,
                'trimmed: the pool shrank under its holds', h.team_id);
        EXIT WHEN p.reserved <= funds;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION credits._expire_holds(org text, as_of timestamptz,
                                      frame credits.credit DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    h credits.holds;
    p credits.pools;
    n integer := 0;
BEGIN
    PERFORM credits._consolidate(org);
    FOR h IN SELECT * FROM credits.holds
              WHERE org_id = org AND status = 'open' AND expires_at <= as_of
              ORDER BY hold_id FOR UPDATE
    LOOP
        UPDATE credits.holds SET status = 'expired', ended_at = as_of, reserved = 0
         WHERE hold_id = h.hold_id;
        UPDATE credits.member_usage u SET reserved = u.reserved - h.reserved
         WHERE u.org_id = org AND u.user_id = h.user_id;
        UPDATE credits.team_spend t SET reserved = t.reserved - h.reserved
         WHERE t.org_id = org AND t.team_id = h.team_id;
        UPDATE credits.pools SET reserved = reserved - h.reserved WHERE org_id = org
        RETURNING * INTO p;
        INSERT INTO credits.ledger (org_id, kind, period_start, user_id, model, reserved_change,
                                    available_after, hold_id, note, team_id)
        VALUES (org, 'release', p.period_start, h.user_id, h.model, -h.reserved,
                coalesce(frame - p.reserved, credits._available(p)), h.hold_id, 'expired',
                h.team_id);
        n := n + 1;
    END LOOP;
    UPDATE credits.pools SET next_hold_expiry =
        (SELECT min(expires_at) FROM credits.holds WHERE org_id = org AND status = 'open')
     WHERE org_id = org;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION credits.recharge(org_id text, amount credits.credit DEFAULT NULL,
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

-- What a team drew in the org's current period (after the last restoring
-- recharge: it restores the team's usage with the members'; and since the
-- team was created: charges of an earlier team of the same name are not
-- its) and holds with open holds, from the ledger and the holds: a capped
-- team's team_spend row is created from this, and credits.verify() checks
-- the row against it.
CREATE FUNCTION credits._team_drawn(org text, team text,
                                    OUT used credits.credit, OUT reserved credits.credit)
LANGUAGE sql STABLE SET search_path = pg_catalog, credits, pg_temp AS $$
    SELECT coalesce((SELECT pg_catalog.sum(l.charged)
                       FROM credits.pools p
                       JOIN credits.teams t ON t.org_id = p.org_id AND t.team_id = team
                       JOIN credits.ledger l ON l.org_id = p.org_id
                                            AND l.period_start = p.period_start
                      WHERE p.org_id = org AND l.team_id = team
                        AND l.created_at >= t.created_at
                        AND l.kind IN ('debit', 'settle')
                        AND l.entry_id > coalesce(
                              (SELECT max(r.entry_id) FROM credits.ledger r
                                WHERE r.org_id = org AND r.period_start = p.period_start
                                  AND r.kind = 'recharge'), 0)),
                    '0'::credits.credit),
           coalesce((SELECT pg_catalog.sum(h.reserved) FROM credits.holds h
                      WHERE h.org_id = org AND h.team_id = team AND h.status = 'open'),
                    '0'::credits.credit)
$$;
COMMENT ON FUNCTION credits._team_drawn(text, text) IS
    'internal: what the team drew in the org''s current period and holds open, from the ledger and the holds';

-- (Re)create a capped team's team_spend row from the ledger.  The caller
-- holds the org's pool lock, which every writer of the row holds.
CREATE FUNCTION credits._team_spend_init(org text, team text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    INSERT INTO credits.team_spend (org_id, team_id, used, reserved)
    SELECT org, team, d.used, d.reserved FROM credits._team_drawn(org, team) d;
END
$$;
COMMENT ON FUNCTION credits._team_spend_init(text, text) IS
    'internal: create a capped team''s team_spend row from the ledger and the open holds (under the pool lock)';

-- A team_spend row loaded from a dump, or created anew, replaces the one
-- there is (as for pools: see credits._pool_replace).
CREATE FUNCTION credits._team_spend_replace() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    DELETE FROM credits.team_spend t WHERE t.org_id = NEW.org_id AND t.team_id = NEW.team_id;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION credits._team_spend_replace() IS
    'internal trigger: a team_spend row inserted replaces the team''s current one';

CREATE FUNCTION credits._team_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._check_id(NEW.team_id, 'team_id');
    IF TG_OP = 'UPDATE' AND (NEW.org_id, NEW.team_id) <> (OLD.org_id, OLD.team_id) THEN
        RAISE EXCEPTION 'a team''s org_id and team_id cannot be changed' USING ERRCODE = '0A000';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION credits._team_check() IS 'internal trigger: validate a team row';

-- A team's cap set, changed or removed, or the team deleted, by the API or
-- by plain DML: under the org's pool lock (and its stripes', so that no
-- debit of the fast path is under way), the team's team_spend row is
-- created from the ledger when a cap is set, and dropped with it.  The
-- pools row is written, so that a charge whose snapshot is older than this
-- change serializes after it (40001 under REPEATABLE READ) and never reads
-- the team's figures as they were.
CREATE FUNCTION credits._team_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    t credits.teams := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.cap IS NOT DISTINCT FROM OLD.cap THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' AND NEW.cap IS NULL THEN
        RETURN NULL;
    END IF;
    -- a team deleted with its org: the pool and the holds go with it
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM credits.orgs o WHERE o.org_id = t.org_id) THEN
        RETURN OLD;
    END IF;
    PERFORM credits._consolidate(t.org_id);
    UPDATE credits.pools p SET waits = p.waits WHERE p.org_id = t.org_id;
    IF TG_OP = 'DELETE' THEN
        -- its open holds are no team's now: their settles charge no team
        UPDATE credits.holds h SET team_id = NULL
         WHERE h.org_id = t.org_id AND h.team_id = t.team_id AND h.status = 'open';
        RETURN OLD;
    ELSIF NEW.cap IS NULL THEN
        DELETE FROM credits.team_spend s WHERE s.org_id = t.org_id AND s.team_id = t.team_id;
    ELSIF TG_OP = 'INSERT' OR OLD.cap IS NULL THEN
        PERFORM credits._team_spend_init(t.org_id, t.team_id);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION credits._team_changed() IS
    'internal trigger: keep the team''s team_spend row in step with its cap, under the org''s pool lock';

CREATE TRIGGER team_spend_replace BEFORE INSERT ON credits.team_spend
    FOR EACH ROW EXECUTE FUNCTION credits._team_spend_replace();
CREATE TRIGGER teams_check BEFORE INSERT OR UPDATE ON credits.teams
    FOR EACH ROW EXECUTE FUNCTION credits._team_check();
CREATE TRIGGER teams_cap_changed AFTER INSERT OR UPDATE OF cap ON credits.teams
    FOR EACH ROW EXECUTE FUNCTION credits._team_changed();
CREATE TRIGGER teams_deleted BEFORE DELETE ON credits.teams
    FOR EACH ROW EXECUTE FUNCTION credits._team_changed();

-- 22023 unless the org has the team.
CREATE FUNCTION credits._check_team(org text, team text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._check_id(team, 'team_id');
    PERFORM 1 FROM credits.teams t WHERE t.org_id = org AND t.team_id = team;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown team "%" of org "%"', team, org USING ERRCODE = '22023',
            HINT = 'Create it with credits.create_team().';
    END IF;
END
$$;
COMMENT ON FUNCTION credits._check_team(text, text) IS 'internal: 22023 unless the org has the team';

CREATE FUNCTION credits.create_team(org_id text, team_id text, cap credits.credit DEFAULT NULL)
    RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_id(team_id, 'team_id');
    IF cap IS NOT NULL THEN
        PERFORM credits._check_amount(cap, 'cap');
    END IF;
    BEGIN
        INSERT INTO credits.teams (org_id, team_id, cap) VALUES (org_id, team_id, cap);
    EXCEPTION WHEN unique_violation THEN
        RAISE EXCEPTION 'team "%" of org "%" already exists', team_id, org_id
            USING ERRCODE = '23505', HINT = 'Change its cap with credits.set_team_cap().';
    END;
END
$$;
COMMENT ON FUNCTION credits.create_team(text, text, credits.credit) IS
    'create a team in the org; cap bounds what its members draw together per period (NULL: no cap)';

CREATE FUNCTION credits.set_team_cap(org_id text, team_id text, cap credits.credit) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_team(org_id, team_id);
    IF cap IS NOT NULL THEN
        PERFORM credits._check_amount(cap, 'cap');
    END IF;
    UPDATE credits.teams t SET cap = set_team_cap.cap
     WHERE t.org_id = set_team_cap.org_id AND t.team_id = set_team_cap.team_id;
END
$$;
COMMENT ON FUNCTION credits.set_team_cap(text, text, credits.credit) IS
    'change what the team''s members may draw together per period, at once (NULL: no cap)';

CREATE FUNCTION credits.set_member_team(org_id text, user_id text, team_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    PERFORM credits._get_org(org_id);
    PERFORM credits._check_id(user_id, 'user_id');
    IF team_id IS NOT NULL THEN
        PERFORM credits._check_team(org_id, team_id);
    END IF;
    UPDATE credits.members m SET team_id = set_member_team.team_id
     WHERE m.org_id = set_member_team.org_id AND m.user_id = set_member_team.user_id AND m.active;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user "%" is not an active member of org "%"', user_id, org_id
            USING ERRCODE = 'UC005', HINT = 'Add the user with credits.add_member().';
    END IF;
END
$$;
COMMENT ON FUNCTION credits.set_member_team(text, text, text) IS
    'put an active member in one of the org''s teams (NULL: in none); charges count against the team from then on';

CREATE FUNCTION credits.team_usage(org_id text, since timestamptz DEFAULT NULL,
                                   until timestamptz DEFAULT NULL)
    RETURNS TABLE(team_id text, members integer, cap credits.credit, used credits.credit,
                  charged credits.credit, shortfall credits.credit)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    o credits.orgs := credits._get_org(org_id);
    p credits.pools;
    lo timestamptz := since;
    hi timestamptz := until;
BEGIN
    SELECT * INTO p FROM credits.pools x WHERE x.org_id = o.org_id;
    IF lo IS NULL AND hi IS NULL THEN
        lo := p.period_start;
        hi := p.period_end;
    END IF;
    RETURN QUERY
        SELECT t.team_id,
               (SELECT count(*)::integer FROM credits.members m
                 WHERE m.org_id = t.org_id AND m.team_id = t.team_id AND m.active),
               t.cap,
               -- a period that has ended (not yet closed) is a new one: nothing used
               CASE WHEN p.period_end <= now() THEN '0'::credits.credit
                    ELSE (SELECT d.used FROM credits._team_drawn(t.org_id, t.team_id) d) END,
               coalesce(l.charged, '0'::credits.credit),
               coalesce(l.shortfall, '0'::credits.credit)
          FROM credits.teams t
          -- charges in the team since it was created (not an earlier team's
          -- of the same name)
          LEFT JOIN LATERAL (
                SELECT pg_catalog.sum(x.charged) AS charged, pg_catalog.sum(x.shortfall) AS shortfall
                  FROM credits.ledger x
                 WHERE x.org_id = t.org_id AND x.team_id = t.team_id
                   AND x.created_at >= t.created_at
                   AND x.kind IN ('debit', 'settle')
                   AND (lo IS NULL OR x.created_at >= lo)
                   AND (hi IS NULL OR x.created_at < hi)) l ON true
         WHERE t.org_id = o.org_id
         ORDER BY t.team_id;
END
$$;
COMMENT ON FUNCTION credits.team_usage(text, timestamptz, timestamptz) IS
    'per team: active members, cap, used in the current period (what the cap bounds), and charged and shortfall in [since, until) (default: the current period)';

-- allowed_models gains limited_by and resets_at: new result columns, so it
-- is created anew
DROP FUNCTION credits.allowed_models(text, text);
CREATE FUNCTION credits.allowed_models(org_id text, user_id text DEFAULT NULL)
    RETURNS TABLE(provider text, model text, display_name text, is_fallback boolean,
                  available boolean, reason text, input_price credits.credit,
                  output_price credits.credit, limited_by text, resets_at timestamptz)
    AS 'MODULE_PATHNAME', 'credits_allowed_models'
    LANGUAGE C STABLE
    ROWS 12;
COMMENT ON FUNCTION credits.allowed_models(text, text) IS
    'every active model of the org''s enabled providers; premium ones grayed out (available = false, reason) when the pool, the user''s team cap or the user''s cap ran out, with the limit (limited_by) and when it resets (resets_at)';

-- as 085_rls.sql and 090_security.sql
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['teams', 'team_spend'] LOOP
        EXECUTE pg_catalog.format('ALTER TABLE credits.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE pg_catalog.format(
            'CREATE POLICY tenant_isolation ON credits.%I'
            ' USING (COALESCE(pg_catalog.current_setting(''credits.org_id'', true), '''')'
            '        OPERATOR(pg_catalog.=) ANY (ARRAY['''', org_id]))', t);
        EXECUTE pg_catalog.format(
            'COMMENT ON POLICY tenant_isolation ON credits.%I IS %L', t,
            'rows of the org named in credits.org_id only, when it is set');
    END LOOP;
END
$$;
CREATE TRIGGER teams_config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON credits.teams
    FOR EACH STATEMENT EXECUTE FUNCTION credits._config_changed();

REVOKE ALL ON FUNCTION
    credits._team_drawn(text, text),
    credits._team_spend_init(text, text),
    credits._team_spend_replace(),
    credits._team_check(),
    credits._team_changed(),
    credits._check_team(text, text),
    credits.create_team(text, text, credits.credit),
    credits.set_team_cap(text, text, credits.credit),
    credits.set_member_team(text, text, text),
    credits.team_usage(text, timestamptz, timestamptz),
    credits.allowed_models(text, text)
    FROM PUBLIC;
REVOKE ALL ON credits.teams, credits.team_spend FROM PUBLIC;
GRANT EXECUTE ON FUNCTION credits.allowed_models(text, text) TO credits_app, credits_admin;
GRANT EXECUTE ON FUNCTION
    credits.create_team(text, text, credits.credit),
    credits.set_team_cap(text, text, credits.credit),
    credits.set_member_team(text, text, text)
    TO credits_admin;
GRANT EXECUTE ON FUNCTION credits.team_usage(text, timestamptz, timestamptz)
    TO credits_reader, credits_admin;
GRANT SELECT ON credits.teams, credits.team_spend TO credits_reader, credits_admin;
GRANT INSERT, UPDATE, DELETE ON credits.teams TO credits_admin;

-- ---------------------------------------------------------------------------
-- Rollover and auto-recharge: functions (060_periods.sql, 078_rollover.sql)
-- ---------------------------------------------------------------------------

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

-- _draw_grants gains before_grant (a charge does not draw the auto-recharge
-- it added): a new argument, so it is created anew
DROP FUNCTION credits._draw_grants(text, bigint, credits.credit);
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

CREATE OR REPLACE FUNCTION credits._org_changed() RETURNS trigger
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

-- A charge of a member without a cap, of an org that is one balance, reads
-- the pools row without locking it (pool_try_debit): a change of a member's
-- cap or team now writes that row, so that such a charge under way is not
-- written with the old configuration.
CREATE OR REPLACE FUNCTION credits._member_changed() RETURNS trigger
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

REVOKE ALL ON FUNCTION
    credits._add_grant(text, text, credits.credit, timestamptz, text, credits.credit),
    credits._auto_recharge(text),
    credits._draw_grants(text, bigint, credits.credit, bigint),
    credits.set_rollover(text, credits.credit, integer),
    credits.set_auto_recharge(text, credits.credit, credits.credit, integer, interval)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    credits.set_rollover(text, credits.credit, integer),
    credits.set_auto_recharge(text, credits.credit, credits.credit, integer, interval)
    TO credits_admin;
