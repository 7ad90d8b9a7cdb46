-- A naive PL/pgSQL implementation of credit_debit, kept as the baseline the
-- C design must beat (make bench runs it side by side).  Straightforward SQL:
-- one balance row per org, locked for every debit, and a ledger table.
CREATE SCHEMA naive;

CREATE TABLE naive.models (
    model text PRIMARY KEY, provider text NOT NULL,
    input_price numeric NOT NULL, output_price numeric NOT NULL,
    request_price numeric NOT NULL DEFAULT 0, is_fallback boolean NOT NULL
);
CREATE TABLE naive.orgs (org_id text PRIMARY KEY);
CREATE TABLE naive.org_providers (org_id text, provider text, PRIMARY KEY (org_id, provider));
CREATE TABLE naive.members (
    org_id text, user_id text, cap numeric, used numeric NOT NULL DEFAULT 0,
    active boolean NOT NULL DEFAULT true, PRIMARY KEY (org_id, user_id)
);
CREATE TABLE naive.balances (org_id text PRIMARY KEY, available numeric NOT NULL);
CREATE TABLE naive.ledger (
    entry_id bigserial PRIMARY KEY, org_id text NOT NULL, user_id text NOT NULL,
    model text NOT NULL, input_tokens bigint, output_tokens bigint, cost numeric,
    charged numeric, shortfall numeric, available_after numeric, request_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ON naive.ledger (org_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX ON naive.ledger (org_id, created_at);

INSERT INTO naive.models
SELECT model, provider, input_price::numeric, output_price::numeric, request_price::numeric, is_fallback
  FROM credits.models;

CREATE FUNCTION naive.credit_debit(p_org text, p_user text, p_model text, p_in bigint,
                                   p_out bigint DEFAULT 0, p_request text DEFAULT NULL,
                                   OUT entry_id bigint, OUT model text, OUT cost numeric,
                                   OUT charged numeric, OUT shortfall numeric,
                                   OUT available numeric, OUT exhausted boolean,
                                   OUT replayed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    m naive.models;
    mem naive.members;
    bal numeric;
    l naive.ledger;
BEGIN
    IF p_request IS NOT NULL THEN
        SELECT * INTO l FROM naive.ledger WHERE org_id = p_org AND request_id = p_request;
        IF FOUND THEN
            SELECT l.entry_id, l.model, l.cost, l.charged, l.shortfall, l.available_after,
                   l.available_after = 0, true
              INTO entry_id, model, cost, charged, shortfall, available, exhausted, replayed;
            RETURN;
        END IF;
    END IF;
    SELECT * INTO m FROM naive.models WHERE naive.models.model = p_model;
    IF NOT FOUND THEN RAISE EXCEPTION 'unknown model' USING ERRCODE = 'UC002'; END IF;
    PERFORM 1 FROM naive.org_providers WHERE org_id = p_org AND provider = m.provider;
    IF NOT FOUND THEN RAISE EXCEPTION 'provider not enabled' USING ERRCODE = 'UC003'; END IF;
    SELECT * INTO mem FROM naive.members WHERE org_id = p_org AND user_id = p_user AND active
       FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'not a member' USING ERRCODE = 'UC005'; END IF;
    SELECT b.available INTO bal FROM naive.balances b WHERE b.org_id = p_org FOR UPDATE;
    IF NOT FOUND THEN RAISE EXCEPTION 'unknown org' USING ERRCODE = 'UC004'; END IF;

    cost := ceil((p_in * m.input_price + p_out * m.output_price) / 1000000 * 1000000) / 1000000
            + m.request_price;
    charged := least(cost, bal, coalesce(mem.cap - mem.used, cost));
    shortfall := CASE WHEN m.is_fallback THEN 0 ELSE cost - charged END;
    available := bal - charged;
    UPDATE naive.balances b SET available = credit_debit.available WHERE b.org_id = p_org;
    UPDATE naive.members SET used = used + charged WHERE org_id = p_org AND user_id = p_user;
    INSERT INTO naive.ledger (org_id, user_id, model, input_tokens, output_tokens, cost, charged,
                              shortfall, available_after, request_id)
    VALUES (p_org, p_user, p_model, p_in, p_out, cost, charged, shortfall, available, p_request)
    RETURNING naive.ledger.entry_id INTO entry_id;
    model := p_model;
    exhausted := available = 0;
    replayed := false;
END
$$;
