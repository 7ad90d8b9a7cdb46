-- ---------------------------------------------------------------------------
-- Reports and the consistency check
-- ---------------------------------------------------------------------------

-- What an org's pool is as of as_of, without writing anything: a pool whose
-- period ended, or whose grants or holds expired, shows what the next call
-- that locks it will make of it (credits._maintain).  The forecast (1.1):
-- burn_per_day is what was charged since the period started (allowance and
-- grants used, from the pool's own counters, never a ledger scan; a
-- restoring recharge starts the allowance used again) per day elapsed;
-- runs_out_at is when available reaches 0 at that rate: as_of when it is 0,
-- NULL when nothing was charged or not before the period ends.  In C
-- (status.c), with the caller's privileges: a new connection's first
-- pool_status plans a join and one function.
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

CREATE OR REPLACE VIEW credits.pool_status AS
SELECT p.org_id, s.period_start, s.period_end, s.allowance, s.allowance_used, s.topup,
       s.reserved, s.available, s.exhausted, s.burn_per_day, s.runs_out_at
  FROM credits.pools p
  JOIN credits.orgs o ON o.org_id = p.org_id
 CROSS JOIN LATERAL credits._pool_status(p, o, now()) s;
COMMENT ON VIEW credits.pool_status IS
    'one row per org for its current period: available = allowance - allowance_used + topup - reserved; burn_per_day and runs_out_at forecast when it runs out';

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

-- verify() is SQL, not PL/pgSQL: its output columns share names with its
-- input (org_id), which PL/pgSQL refuses.
CREATE FUNCTION credits.verify(org_id text DEFAULT NULL)
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
COMMENT ON FUNCTION credits.verify(text) IS
    'check the invariants for one org or all; one row per violation, no rows when consistent';
