-- ---------------------------------------------------------------------------
-- The credits.credit type: a signed 64-bit count of micro-credits.
-- It shares int8's representation, so comparisons, hashing, sorting and
-- binary I/O are PostgreSQL's int8 functions, called through thin C entry
-- points of this module (a LANGUAGE internal alias would be looked up by
-- name on every use).
-- ---------------------------------------------------------------------------

CREATE TYPE credits.credit;

CREATE FUNCTION credits.credit_in(cstring) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_out(credits.credit) RETURNS cstring
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_recv(internal) RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credit_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_send(credits.credit) RETURNS bytea
    AS 'MODULE_PATHNAME', 'credit_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE credits.credit (
    INPUT = credits.credit_in,
    OUTPUT = credits.credit_out,
    RECEIVE = credits.credit_recv,
    SEND = credits.credit_send,
    INTERNALLENGTH = 8,
    PASSEDBYVALUE,
    ALIGNMENT = double,
    STORAGE = plain,
    CATEGORY = 'N'
);
COMMENT ON TYPE credits.credit IS
    'exact credit amount: signed 64-bit count of micro-credits (6 decimal places)';

-- comparisons (int8's own functions)
CREATE FUNCTION credits.credit_eq(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_eq' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_ne(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_ne' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_lt(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_lt' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_le(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_le' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_gt(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_gt' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_ge(credits.credit, credits.credit) RETURNS boolean
    AS 'MODULE_PATHNAME', 'credit_ge' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_cmp(credits.credit, credits.credit) RETURNS integer
    AS 'MODULE_PATHNAME', 'credit_cmp' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_sortsupport(internal) RETURNS void
    AS 'MODULE_PATHNAME', 'credit_sortsupport' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_hash(credits.credit) RETURNS integer
    AS 'MODULE_PATHNAME', 'credit_hash' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_hash_extended(credits.credit, bigint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'credit_hash_extended' LANGUAGE C IMMUTABLE STRICT LEAKPROOF PARALLEL SAFE;
CREATE FUNCTION credits.credit_smaller(credits.credit, credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credit_smaller' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_larger(credits.credit, credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME', 'credit_larger' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR pg_catalog.= (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_eq,
    COMMUTATOR = OPERATOR(pg_catalog.=), NEGATOR = OPERATOR(pg_catalog.<>),
    RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
CREATE OPERATOR pg_catalog.<> (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_ne,
    COMMUTATOR = OPERATOR(pg_catalog.<>), NEGATOR = OPERATOR(pg_catalog.=),
    RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR pg_catalog.< (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_lt,
    COMMUTATOR = OPERATOR(pg_catalog.>), NEGATOR = OPERATOR(pg_catalog.>=),
    RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR pg_catalog.<= (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_le,
    COMMUTATOR = OPERATOR(pg_catalog.>=), NEGATOR = OPERATOR(pg_catalog.>),
    RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR pg_catalog.> (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_gt,
    COMMUTATOR = OPERATOR(pg_catalog.<), NEGATOR = OPERATOR(pg_catalog.<=),
    RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR pg_catalog.>= (
    LEFTARG = credits.credit, RIGHTARG = credits.credit, PROCEDURE = credits.credit_ge,
    COMMUTATOR = OPERATOR(pg_catalog.<=), NEGATOR = OPERATOR(pg_catalog.<),
    RESTRICT = scalargesel, JOIN = scalargejoinsel);

CREATE OPERATOR CLASS credits.credit_ops
    DEFAULT FOR TYPE credits.credit USING btree AS
        OPERATOR 1 pg_catalog.<,
        OPERATOR 2 pg_catalog.<=,
        OPERATOR 3 pg_catalog.=,
        OPERATOR 4 pg_catalog.>=,
        OPERATOR 5 pg_catalog.>,
        FUNCTION 1 credits.credit_cmp(credits.credit, credits.credit),
        FUNCTION 2 credits.credit_sortsupport(internal);

CREATE OPERATOR CLASS credits.credit_hash_ops
    DEFAULT FOR TYPE credits.credit USING hash AS
        OPERATOR 1 pg_catalog.=,
        FUNCTION 1 credits.credit_hash(credits.credit),
        FUNCTION 2 credits.credit_hash_extended(credits.credit, bigint);

-- arithmetic: every overflow is an error (22003)
CREATE FUNCTION credits.credit_pl(credits.credit, credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_mi(credits.credit, credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_um(credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_mul_int8(credits.credit, bigint) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.int8_mul_credit(bigint, credits.credit) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_div_int8(credits.credit, bigint) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR pg_catalog.+ (LEFTARG = credits.credit, RIGHTARG = credits.credit,
    PROCEDURE = credits.credit_pl, COMMUTATOR = OPERATOR(pg_catalog.+));
CREATE OPERATOR pg_catalog.- (LEFTARG = credits.credit, RIGHTARG = credits.credit,
    PROCEDURE = credits.credit_mi);
CREATE OPERATOR pg_catalog.- (RIGHTARG = credits.credit, PROCEDURE = credits.credit_um);
CREATE OPERATOR pg_catalog.* (LEFTARG = credits.credit, RIGHTARG = bigint,
    PROCEDURE = credits.credit_mul_int8, COMMUTATOR = OPERATOR(pg_catalog.*));
CREATE OPERATOR pg_catalog.* (LEFTARG = bigint, RIGHTARG = credits.credit,
    PROCEDURE = credits.int8_mul_credit, COMMUTATOR = OPERATOR(pg_catalog.*));
CREATE OPERATOR pg_catalog./ (LEFTARG = credits.credit, RIGHTARG = bigint,
    PROCEDURE = credits.credit_div_int8);

-- Only these mixed operators exist, on purpose: with the implicit integer
-- casts below, an operator such as credit * numeric or credit / credit would
-- make plain expressions like 2 * 1.5 or c / 2 ambiguous for sessions that
-- have the credits schema on their search_path.
COMMENT ON FUNCTION credits.credit_div_int8(credits.credit, bigint) IS
    'credit / bigint, rounded half away from zero to the micro-credit';

-- casts: integers convert implicitly into credits (so a literal such as 100
-- works as an argument); numeric converts on assignment or explicitly (pass
-- '2.5' or 2.5::credits.credit to a function).  An implicit numeric cast
-- would make numeric-and-bigint expressions such as 1.5 / 2::bigint
-- ambiguous for sessions with the credits schema on their search_path.
-- Credits convert to numeric and bigint on assignment or explicitly.
CREATE FUNCTION credits.credit_numeric(credits.credit) RETURNS numeric
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.numeric_credit(numeric) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.int8_credit(bigint) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.int4_credit(integer) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_int8(credits.credit) RETURNS bigint
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE CAST (credits.credit AS numeric) WITH FUNCTION credits.credit_numeric(credits.credit) AS ASSIGNMENT;
CREATE CAST (numeric AS credits.credit) WITH FUNCTION credits.numeric_credit(numeric) AS ASSIGNMENT;
CREATE CAST (bigint AS credits.credit) WITH FUNCTION credits.int8_credit(bigint) AS IMPLICIT;
CREATE CAST (integer AS credits.credit) WITH FUNCTION credits.int4_credit(integer) AS IMPLICIT;
CREATE CAST (credits.credit AS bigint) WITH FUNCTION credits.credit_int8(credits.credit) AS ASSIGNMENT;

COMMENT ON FUNCTION credits.numeric_credit(numeric) IS
    'exact conversion; more than 6 decimal places is an error, never rounded';
COMMENT ON FUNCTION credits.credit_int8(credits.credit) IS
    'whole credits, rounded half away from zero (as numeric to bigint)';

-- aggregates
CREATE FUNCTION credits.credit_avg_accum(bigint[], credits.credit) RETURNS bigint[]
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_avg_combine(bigint[], bigint[]) RETURNS bigint[]
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_avg_final(bigint[]) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION credits.credit_sum_final(bigint[]) RETURNS credits.credit
    AS 'MODULE_PATHNAME' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- sum and avg add up in 128 bits ({count, low, high} in a bigint[3]): only a
-- result out of range is an error, whatever the order of the rows.
CREATE AGGREGATE pg_catalog.sum(credits.credit) (
    SFUNC = credits.credit_avg_accum, STYPE = bigint[], INITCOND = '{0,0,0}',
    COMBINEFUNC = credits.credit_avg_combine, FINALFUNC = credits.credit_sum_final,
    PARALLEL = SAFE);
CREATE AGGREGATE pg_catalog.min(credits.credit) (
    SFUNC = credits.credit_smaller, STYPE = credits.credit,
    COMBINEFUNC = credits.credit_smaller, SORTOP = OPERATOR(pg_catalog.<), PARALLEL = SAFE);
CREATE AGGREGATE pg_catalog.max(credits.credit) (
    SFUNC = credits.credit_larger, STYPE = credits.credit,
    COMBINEFUNC = credits.credit_larger, SORTOP = OPERATOR(pg_catalog.>), PARALLEL = SAFE);
CREATE AGGREGATE pg_catalog.avg(credits.credit) (
    SFUNC = credits.credit_avg_accum, STYPE = bigint[], INITCOND = '{0,0,0}',
    COMBINEFUNC = credits.credit_avg_combine, FINALFUNC = credits.credit_avg_final,
    PARALLEL = SAFE);

COMMENT ON AGGREGATE pg_catalog.sum(credits.credit) IS
    'exact sum; a total out of range is an error (22003)';
COMMENT ON AGGREGATE pg_catalog.min(credits.credit) IS 'smallest amount';
COMMENT ON AGGREGATE pg_catalog.max(credits.credit) IS 'largest amount';
COMMENT ON AGGREGATE pg_catalog.avg(credits.credit) IS
    'mean, rounded half away from zero to the micro-credit';
