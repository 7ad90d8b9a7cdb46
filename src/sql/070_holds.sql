-- ---------------------------------------------------------------------------
-- Holds: credits reserved before a call whose cost is not yet known
-- (streaming completions), settled with the real usage or released.
-- ---------------------------------------------------------------------------

CREATE TABLE credits.holds (
    hold_id           bigint GENERATED ALWAYS AS IDENTITY (CACHE 32) PRIMARY KEY,
    org_id            text NOT NULL,
    user_id           text NOT NULL,
    requested_model   text NOT NULL,
    model             text NOT NULL,
    fell_back         boolean NOT NULL,
    input_tokens      bigint NOT NULL,
    max_output_tokens bigint NOT NULL,
    estimate          credits.credit NOT NULL,
    reserved          credits.credit NOT NULL CHECK (reserved >= 0),
    available_after   credits.credit NOT NULL,
    status            text NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'settled', 'released', 'expired')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    ended_at          timestamptz,
    request_id        text,
    team_id           text
);
CREATE INDEX holds_open_idx ON credits.holds (org_id, expires_at) WHERE status = 'open';
COMMENT ON TABLE credits.holds IS
    'credit holds of streaming calls: open until settled, released or expired (maintained by the extension)';
COMMENT ON COLUMN credits.holds.model IS 'the model to call: the requested one, or its provider''s fallback';
COMMENT ON COLUMN credits.holds.reserved IS
    'credits held now (the reservation, possibly trimmed when the pool shrank under it)';
COMMENT ON COLUMN credits.holds.team_id IS
    'the member''s team when the hold was made: the settle is charged to it, the reservation counts against its cap';
COMMENT ON COLUMN credits.holds.available_after IS 'the pool''s available credits right after the reserve';

SELECT pg_catalog.pg_extension_config_dump('credits.holds', '');
SELECT pg_catalog.pg_extension_config_dump('credits.holds_hold_id_seq', '');

CREATE TYPE credits.hold_result AS (
    hold_id    bigint,
    model      text,
    fell_back  boolean,
    reserved   credits.credit,
    available  credits.credit,
    expires_at timestamptz,
    replayed   boolean
);
COMMENT ON TYPE credits.hold_result IS
    'result of credit_reserve: the hold, the model to call, what is held and the pool after';

-- Shrink the newest open holds until what is reserved fits in funds (the
-- pool's allowance - allowance_used + topup as it is about to become: a
-- period with less allowance, an expired grant).  Each cut is ledgered
-- against the pool's current period, with available_after measured against
-- frame (default: funds); callers then lower the pool's funds.
CREATE FUNCTION credits._trim_holds(org text, funds credits.credit,
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
COMMENT ON FUNCTION credits._trim_holds(text, credits.credit, credits.credit) IS
    'internal: shrink the newest open holds so that what is reserved fits in the pool''s funds';

-- Release the org's open holds that expired by as_of; returns how many.
-- available_after is measured against frame (default: the pool's funds).
CREATE FUNCTION credits._expire_holds(org text, as_of timestamptz,
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
COMMENT ON FUNCTION credits._expire_holds(text, timestamptz, credits.credit) IS
    'internal: release the org''s open holds that expired by as_of';

-- Bring the org's pool up to date as of as_of: roll its period over (which
-- also releases expired holds and drops expired grants, as part of starting
-- the new period), or else release expired holds and drop expired grants;
-- true when it rolled over.  C calls this when the locked pool row says it
-- is due, reset_due() for every org whose period ended.
CREATE FUNCTION credits._maintain(org text, as_of timestamptz) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    p credits.pools;
BEGIN
    SELECT * INTO p FROM credits.pools WHERE org_id = org FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM credits._consolidate(org);
    IF p.period_end <= as_of THEN
        RETURN credits._rollover(org, as_of);
    END IF;
    IF p.next_hold_expiry <= as_of THEN
        PERFORM credits._expire_holds(org, as_of);
    END IF;
    IF p.next_grant_expiry <= as_of THEN
        PERFORM credits._expire_grants(org, as_of);
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION credits._maintain(text, timestamptz) IS
    'internal: bring the org''s pool up to date as of as_of (period, holds, grants); true when it rolled over';

CREATE FUNCTION credits.expire_holds(as_of timestamptz DEFAULT now()) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
DECLARE
    org text;
    n integer := 0;
BEGIN
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be null' USING ERRCODE = '22004';
    END IF;
    FOR org IN SELECT p.org_id FROM credits.pools p WHERE p.next_hold_expiry <= as_of
                ORDER BY p.org_id
    LOOP
        n := n + credits._expire_holds(org, as_of);
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION credits.expire_holds(timestamptz) IS
    'release every open hold that expired by as_of; returns how many';

-- Streaming calls (C)
CREATE FUNCTION credits.credit_reserve(org_id text, user_id text, model text,
                                       input_tokens bigint, max_output_tokens bigint,
                                       request_id text DEFAULT NULL, ttl interval DEFAULT NULL)
    RETURNS credits.hold_result
    AS 'MODULE_PATHNAME', 'credits_credit_reserve'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp;
COMMENT ON FUNCTION credits.credit_reserve(text, text, text, bigint, bigint, text, interval) IS
    'reserve the estimated cost of a streaming call, switching to the provider''s fallback when the model is unavailable or unaffordable';

CREATE FUNCTION credits.credit_settle(hold_id bigint, input_tokens bigint, output_tokens bigint)
    RETURNS credits.debit_result
    AS 'MODULE_PATHNAME', 'credits_credit_settle'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp;
COMMENT ON FUNCTION credits.credit_settle(bigint, bigint, bigint) IS
    'charge a hold''s real usage: from the hold first, any excess from the pool; the rest is released';

CREATE FUNCTION credits.credit_release(hold_id bigint) RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credits_credit_release'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp;
COMMENT ON FUNCTION credits.credit_release(bigint) IS
    'release a hold without charging; returns the amount released';
