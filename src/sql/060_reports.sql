-- ---------------------------------------------------------------------------
-- Reports and the consistency check
-- ---------------------------------------------------------------------------

CREATE FUNCTION credits.usage(org_id text, since timestamptz DEFAULT NULL,
                              until timestamptz DEFAULT NULL)
    RETURNS TABLE(user_id text, model text, calls bigint, input_tokens numeric,
                  output_tokens numeric, cost credits.credit, charged credits.credit,
                  shortfall credits.credit)
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
               coalesce(credits.sum(l.cost), 0), coalesce(credits.sum(l.charged), 0),
               coalesce(credits.sum(l.shortfall), 0)
          FROM credits.ledger l
         WHERE l.org_id = o.org_id
           AND l.kind IN ('debit', 'settle')
           AND (lo IS NULL OR l.created_at >= lo)
           AND (hi IS NULL OR l.created_at < hi)
         GROUP BY l.user_id, l.model
         ORDER BY l.user_id, l.model;
END
$$;
COMMENT ON FUNCTION credits.usage(text, timestamptz, timestamptz) IS
    'usage per user and model in [since, until) (default: the current period): calls, tokens, cost, charged, shortfall';

-- verify() is SQL, not PL/pgSQL: its output columns share names with its
-- input (org_id), which PL/pgSQL refuses.
CREATE FUNCTION credits.verify(org_id text DEFAULT NULL)
    RETURNS TABLE(org_id text, check_name text, expected text, actual text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
    WITH pools AS (
        SELECT p.*, p.allowance - p.allowance_used + p.topup - p.reserved AS available
          FROM credits.pools p
         WHERE $1 IS NULL OR p.org_id = $1
    ),
    period_ledger AS (
        SELECT p.org_id,
               coalesce(credits.sum(l.from_allowance), 0) AS from_allowance,
               coalesce(credits.sum(l.from_topup), 0) AS from_topup
          FROM pools p
          LEFT JOIN credits.ledger l
            ON l.org_id = p.org_id AND l.period_start = p.period_start
         GROUP BY p.org_id
    ),
    member_ledger AS (
        SELECT l.org_id, l.user_id, credits.sum(l.charged) AS charged
          FROM pools p
          JOIN credits.ledger l ON l.org_id = p.org_id AND l.period_start = p.period_start
         WHERE l.user_id IS NOT NULL
         GROUP BY l.org_id, l.user_id
    ),
    members_allowance AS (
        SELECT m.org_id, credits.sum(coalesce(m.allowance, o.allowance_per_user)) AS total
          FROM credits.members m JOIN credits.orgs o USING (org_id)
         WHERE m.active AND ($1 IS NULL OR m.org_id = $1)
         GROUP BY m.org_id
    )
    -- 1. available >= 0
    SELECT p.org_id, 'available_not_negative', '>= 0', p.available::text
      FROM pools p WHERE p.available < 0
    UNION ALL
    -- 2. pool figures equal what the ledger implies for the current period
    SELECT p.org_id, 'allowance_used_matches_ledger', l.from_allowance::text, p.allowance_used::text
      FROM pools p JOIN period_ledger l USING (org_id)
     WHERE p.allowance_used <> l.from_allowance
    UNION ALL
    SELECT p.org_id, 'topup_used_matches_ledger', l.from_topup::text, p.topup_used::text
      FROM pools p JOIN period_ledger l USING (org_id)
     WHERE p.topup_used <> l.from_topup
    UNION ALL
    -- member usage equals the sum of that member's charges
    SELECT coalesce(u.org_id, l.org_id),
           'member_usage_matches_ledger:' || coalesce(u.user_id, l.user_id),
           coalesce(l.charged, 0)::text, coalesce(u.used, 0)::text
      FROM (SELECT mu.* FROM credits.member_usage mu JOIN pools p USING (org_id)) u
      FULL JOIN member_ledger l USING (org_id, user_id)
     WHERE coalesce(u.used, 0) <> coalesce(l.charged, 0)
    UNION ALL
    -- the pool's allowance covers every active member
    SELECT p.org_id, 'allowance_covers_members', '>= ' || coalesce(m.total, 0)::text,
           p.allowance::text
      FROM pools p LEFT JOIN members_allowance m USING (org_id)
     WHERE p.allowance < coalesce(m.total, 0)
    UNION ALL
    -- 3. a request_id is charged at most once per org
    SELECT l.org_id, 'request_id_once:' || l.request_id, '1', count(*)::text
      FROM credits.ledger l
     WHERE l.request_id IS NOT NULL AND ($1 IS NULL OR l.org_id = $1)
     GROUP BY l.org_id, l.request_id HAVING count(*) > 1
    ORDER BY 1, 2
$$;
COMMENT ON FUNCTION credits.verify(text) IS
    'check the invariants for one org or all; one row per violation, no rows when consistent';
