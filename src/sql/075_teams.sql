-- ---------------------------------------------------------------------------
-- Teams (1.1)
--
-- A member belongs to at most one team (members.team_id); a team's cap
-- bounds what its members draw from the pool together in a period.  Every
-- charge is ledgered with the team it counted against (ledger.team_id,
-- holds.team_id), and the members of a capped team are charged under the
-- org's pool lock, where credits.team_spend holds what the team drew and
-- holds: the lowest of pool, team cap and member cap wins, exactly.
-- ---------------------------------------------------------------------------

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
