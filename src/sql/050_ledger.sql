-- ---------------------------------------------------------------------------
-- The ledger: append-only record of every charge, hold, recharge, top-up,
-- reset and adjustment.  It is the truth; pools and member usage are derived
-- from it and kept in step in the same transaction.
-- ---------------------------------------------------------------------------

CREATE TABLE credits.ledger (
    -- not cached per backend: the ids of one org's entries then follow
    -- the order its charges and recharges took its locks (verify() counts
    -- a member's charges after the last restoring recharge by entry_id)
    entry_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          text NOT NULL,
    kind            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    period_start    timestamptz NOT NULL,
    user_id         text,
    model           text,
    input_tokens    bigint,
    output_tokens   bigint,
    cost            credits.credit NOT NULL DEFAULT 0,
    charged         credits.credit NOT NULL DEFAULT 0,
    shortfall       credits.credit NOT NULL DEFAULT 0,
    from_allowance  credits.credit NOT NULL DEFAULT 0,
    from_topup      credits.credit NOT NULL DEFAULT 0,
    topup_change    credits.credit,
    reserved_change credits.credit,
    available_after credits.credit NOT NULL,
    request_id      text,
    hold_id         bigint,
    grant_id        bigint,
    note            text,
    team_id         text
);
-- No CHECK constraints: the extension is the ledger's only writer, every
-- insert would pay for them, and credits.verify() checks each entry.
CREATE UNIQUE INDEX ledger_request_idx ON credits.ledger (org_id, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX ledger_org_time_idx ON credits.ledger (org_id, created_at);

COMMENT ON TABLE credits.ledger IS
    'append-only record of every charge, hold, recharge, top-up and reset; UPDATE, DELETE and TRUNCATE are refused';
COMMENT ON COLUMN credits.ledger.kind IS
    'debit, hold, settle, release, recharge, topup, expire (a grant), reset (a new period), adjust, rollover (a grant of unused allowance) or auto_recharge (a grant added when available fell under the org''s threshold)';
COMMENT ON COLUMN credits.ledger.period_start IS 'the billing period the entry belongs to';
COMMENT ON COLUMN credits.ledger.cost IS 'price of the usage';
COMMENT ON COLUMN credits.ledger.charged IS 'what was deducted from the pool (from_allowance + from_topup)';
COMMENT ON COLUMN credits.ledger.shortfall IS
    'cost that could not be charged because the pool or the member''s cap ran out under this call';
COMMENT ON COLUMN credits.ledger.from_allowance IS
    'change of the period''s allowance used (negative when a recharge restores it)';
COMMENT ON COLUMN credits.ledger.from_topup IS 'part of charged drawn from purchased grants';
COMMENT ON COLUMN credits.ledger.topup_change IS
    'change of the org''s top-up other than draws: + a purchased grant, - an expired one';
COMMENT ON COLUMN credits.ledger.reserved_change IS
    'change of the pool''s reserved credits: + a hold, - its settle, release, expiry or trim';
COMMENT ON COLUMN credits.ledger.available_after IS 'the pool''s available credits after this entry';
COMMENT ON COLUMN credits.ledger.team_id IS
    'the team the member was charged in (its cap counted the charge or hold); NULL: none';
COMMENT ON COLUMN credits.ledger.request_id IS
    'idempotency key of the debit or hold, unique per org';

CREATE FUNCTION credits._ledger_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, credits, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'credits.ledger is append-only: % is not allowed', TG_OP
        USING ERRCODE = '55000',
              HINT = 'Record a correction as a new ledger entry.';
END
$$;
COMMENT ON FUNCTION credits._ledger_append_only() IS
    'internal trigger: refuse UPDATE, DELETE and TRUNCATE of the ledger';

CREATE TRIGGER ledger_no_update BEFORE UPDATE OR DELETE ON credits.ledger
    FOR EACH ROW EXECUTE FUNCTION credits._ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON credits.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION credits._ledger_append_only();

SELECT pg_catalog.pg_extension_config_dump('credits.ledger', '');
SELECT pg_catalog.pg_extension_config_dump('credits.ledger_entry_id_seq', '');

-- ---------------------------------------------------------------------------
-- Events: threshold crossings, recharges, top-ups and period resets, each
-- written once and sent with pg_notify('credits', payload) in the same
-- transaction, so listeners see exactly what committed.
-- ---------------------------------------------------------------------------

CREATE TABLE credits.events (
    event_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('threshold', 'recharge', 'topup', 'period_reset',
                                         'auto_recharge')),
    created_at timestamptz NOT NULL DEFAULT now(),
    payload    jsonb NOT NULL
);
CREATE INDEX events_org_idx ON credits.events (org_id, event_id);
COMMENT ON TABLE credits.events IS
    'threshold crossings, recharges, top-ups, period resets and auto-recharges; each also sent as pg_notify(''credits'', payload)';

SELECT pg_catalog.pg_extension_config_dump('credits.events', '');
SELECT pg_catalog.pg_extension_config_dump('credits.events_event_id_seq', '');

-- ---------------------------------------------------------------------------
-- Metering (C)
-- ---------------------------------------------------------------------------

CREATE TYPE credits.debit_result AS (
    entry_id  bigint,
    model     text,
    cost      credits.credit,
    charged   credits.credit,
    shortfall credits.credit,
    available credits.credit,
    exhausted boolean,
    replayed  boolean
);
COMMENT ON TYPE credits.debit_result IS
    'result of credit_debit and credit_settle: cost of the usage, what was charged, the shortfall, and the pool after';

CREATE FUNCTION credits.credit_debit(org_id text, user_id text, model text,
                                     input_tokens bigint, output_tokens bigint DEFAULT 0,
                                     request_id text DEFAULT NULL)
    RETURNS credits.debit_result
    AS 'MODULE_PATHNAME', 'credits_credit_debit'
    LANGUAGE C VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, credits, pg_temp;
COMMENT ON FUNCTION credits.credit_debit(text, text, text, bigint, bigint, text) IS
    'record a completed call and charge the org''s pool atomically; request_id makes it idempotent';

CREATE FUNCTION credits._emit_event(org_id text, kind text, payload jsonb) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, credits, pg_temp AS $$
    WITH e AS (
        INSERT INTO credits.events (org_id, kind, payload)
        VALUES (_emit_event.org_id, _emit_event.kind, _emit_event.payload)
        RETURNING event_id, org_id, kind, created_at, payload
    )
    SELECT e.event_id
      FROM e, pg_catalog.pg_notify('credits',
              (pg_catalog.jsonb_build_object('event_id', e.event_id, 'org_id', e.org_id,
                                             'kind', e.kind, 'created_at', e.created_at)
               OPERATOR(pg_catalog.||) e.payload)::text) AS n
$$;
COMMENT ON FUNCTION credits._emit_event(text, text, jsonb) IS
    'internal: write an event and send it with pg_notify(''credits'', ...) in the same transaction';
