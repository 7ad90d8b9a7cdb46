/*
 * holds.c
 *	  Streaming calls: credit_reserve holds the estimated cost before the call
 *	  (switching to the provider's fallback when the model is unavailable or
 *	  unaffordable), credit_settle charges the real usage, credit_release gives
 *	  the hold back.  A hold ends once; expired holds are released by
 *	  expire_holds() or by the next call that locks the org's pool.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "credits.h"

typedef struct Hold
{
	int64		hold_id;
	char	   *org_id;
	char	   *user_id;
	char	   *requested_model;
	char	   *model;
	bool		fell_back;
	int64		input_tokens;
	int64		max_output_tokens;
	Credit		reserved;
	Credit		available_after;
	char	   *status;
	TimestampTz expires_at;
	char	   *team_id;		/* NULL: none */
} Hold;

/* [0]: a database at 1.0, whose holds have no team_id (see hold_get); [1]: 1.1 */
static SPIPlanPtr hold_plan[2];
static SPIPlanPtr hold_lock_plan[2];
/* [0]: a hold in no team (a 1.0 database has no holds.team_id); [1]: in one */
static SPIPlanPtr insert_plan[2];
static SPIPlanPtr end_plan = NULL;
static SPIPlanPtr available_plan = NULL;

/* the columns a hold is read with, and their 1-based numbers: in the same order */
#define HOLD_COLUMNS \
	"h.hold_id, h.org_id, h.user_id, h.requested_model, h.model, h.fell_back," \
	" h.input_tokens, h.max_output_tokens, h.reserved, h.available_after, h.status," \
	" h.expires_at"
/* and, in 1.1, the team */
#define HOLD_COLUMNS_1_1 HOLD_COLUMNS ", h.team_id"
enum
{
	HC_HOLD_ID = 1, HC_ORG_ID, HC_USER_ID, HC_REQUESTED_MODEL, HC_MODEL, HC_FELL_BACK,
	HC_INPUT_TOKENS, HC_MAX_OUTPUT_TOKENS, HC_RESERVED, HC_AVAILABLE_AFTER, HC_STATUS,
	HC_EXPIRES_AT, HC_TEAM_ID
};

static void
hold_from_row(Hold *h, bool with_team)
{
	bool		isnull;

	h->hold_id = DatumGetInt64(spi_value(0, HC_HOLD_ID, &isnull));
	h->org_id = spi_string(0, HC_ORG_ID);
	h->user_id = spi_string(0, HC_USER_ID);
	h->requested_model = spi_string(0, HC_REQUESTED_MODEL);
	h->model = spi_string(0, HC_MODEL);
	h->fell_back = DatumGetBool(spi_value(0, HC_FELL_BACK, &isnull));
	h->input_tokens = DatumGetInt64(spi_value(0, HC_INPUT_TOKENS, &isnull));
	h->max_output_tokens = DatumGetInt64(spi_value(0, HC_MAX_OUTPUT_TOKENS, &isnull));
	h->reserved = DatumGetCredit(spi_value(0, HC_RESERVED, &isnull));
	h->available_after = DatumGetCredit(spi_value(0, HC_AVAILABLE_AFTER, &isnull));
	h->status = spi_string(0, HC_STATUS);
	h->expires_at = DatumGetTimestampTz(spi_value(0, HC_EXPIRES_AT, &isnull));
	h->team_id = with_team ? spi_string(0, HC_TEAM_ID) : NULL;
}

/*
 * Read a hold; with lock, FOR UPDATE (the org's pool must be locked first).
 * The library also serves a database still at 1.0 until it is updated:
 * its holds have no team.
 */
static bool
hold_get(int64 hold_id, bool lock, Hold *h)
{
	Datum		arg = Int64GetDatum(hold_id);
	int			v = cache_schema_1_1() ? 1 : 0;

	if (hold_plan[v] == NULL)
	{
		Oid			argtypes[1] = {INT8OID};

		hold_plan[v] = spi_prepare_saved(
			v ? "SELECT " HOLD_COLUMNS_1_1 " FROM credits.holds h"
			" WHERE h.hold_id OPERATOR(pg_catalog.=) $1"
			: "SELECT " HOLD_COLUMNS " FROM credits.holds h"
			" WHERE h.hold_id OPERATOR(pg_catalog.=) $1",
			1, argtypes);
		hold_lock_plan[v] = spi_prepare_saved(
			v ? "SELECT " HOLD_COLUMNS_1_1 " FROM credits.holds h"
			" WHERE h.hold_id OPERATOR(pg_catalog.=) $1 FOR UPDATE"
			: "SELECT " HOLD_COLUMNS " FROM credits.holds h"
			" WHERE h.hold_id OPERATOR(pg_catalog.=) $1 FOR UPDATE",
			1, argtypes);
	}
	if (spi_run(lock ? hold_lock_plan[v] : hold_plan[v], &arg, false, 1) == 0)
		return false;
	hold_from_row(h, v == 1);
	return true;
}

static void
unknown_hold(int64 hold_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_CREDITS_UNKNOWN_HOLD),
			 errmsg("unknown hold " INT64_FORMAT, hold_id)));
}

/*
 * Lock the hold's org pool, then the hold itself (always in this order).
 * A hold that has already ended is UC006, except that an expired hold may
 * still be settled when expired_ok.
 */
static void
hold_lock(int64 hold_id, bool expired_ok, PoolState *ps, Hold *h)
{
	if (!hold_get(hold_id, false, h))
		unknown_hold(hold_id);
	pool_lock(h->org_id, ps);	/* may expire this very hold */
	if (!hold_get(hold_id, true, h))
		unknown_hold(hold_id);

	if (strcmp(h->status, "open") == 0 ||
		(expired_ok && strcmp(h->status, "expired") == 0))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_CREDITS_UNKNOWN_HOLD),
			 errmsg("hold " INT64_FORMAT " is already %s", hold_id, h->status),
			 errhint("A hold is settled or released once.")));
}

static void
hold_end(int64 hold_id, const char *status)
{
	Datum		args[2];

	if (end_plan == NULL)
	{
		Oid			argtypes[2] = {INT8OID, TEXTOID};

		end_plan = spi_prepare_saved(
			"UPDATE credits.holds SET status = $2, reserved = '0'::credits.credit,"
			"       ended_at = pg_catalog.now()"
			" WHERE hold_id OPERATOR(pg_catalog.=) $1",
			2, argtypes);
	}
	args[0] = Int64GetDatum(hold_id);
	args[1] = CStringGetTextDatum(status);
	spi_run(end_plan, args, false, 0);
}

/*
 * Attribute positions of credits.hold_result (070_holds.sql): in the same
 * order as the type's attributes.
 */
enum
{
	HR_HOLD_ID, HR_MODEL, HR_FELL_BACK, HR_RESERVED, HR_AVAILABLE, HR_EXPIRES_AT, HR_REPLAYED,
	HR_NCOLS
};

static Datum
hold_result(FunctionCallInfo fcinfo, const Hold *h, bool replayed)
{
	Datum		values[HR_NCOLS];
	bool		nulls[HR_NCOLS] = {false};

	values[HR_HOLD_ID] = Int64GetDatum(h->hold_id);
	values[HR_MODEL] = CStringGetTextDatum(h->model);
	values[HR_FELL_BACK] = BoolGetDatum(h->fell_back);
	values[HR_RESERVED] = CreditGetDatum(h->reserved);
	values[HR_AVAILABLE] = CreditGetDatum(h->available_after);
	values[HR_EXPIRES_AT] = TimestampTzGetDatum(h->expires_at);
	values[HR_REPLAYED] = BoolGetDatum(replayed);
	return row_result(fcinfo, values, nulls);
}

/* now() + ttl, or + credits.hold_ttl; the result must lie in the future */
static TimestampTz
hold_expiry(FunctionCallInfo fcinfo, int n)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz expires;

	if (PG_ARGISNULL(n))
		return now + (TimestampTz) credits_hold_ttl * USECS_PER_SEC;

	/* an interval too large to add is a bad ttl (22023), not a date error */
	{
		MemoryContext cxt = CurrentMemoryContext;

		PG_TRY();
		{
			expires = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															  TimestampTzGetDatum(now),
															  PG_GETARG_DATUM(n)));
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ttl is out of range"),
					 errdetail("%s", edata->message)));
		}
		PG_END_TRY();
	}
	if (expires <= now)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must be longer than zero"),
				 errdetail("ttl is %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out, PG_GETARG_DATUM(n))))));
	return expires;
}

/*
 * credits.credit_reserve(org_id, user_id, model, input_tokens,
 *						   max_output_tokens, request_id DEFAULT NULL,
 *						   ttl DEFAULT NULL) RETURNS credits.hold_result
 */
PG_FUNCTION_INFO_V1(credits_credit_reserve);
Datum
credits_credit_reserve(PG_FUNCTION_ARGS)
{
	char	   *org_id = arg_id(fcinfo, 0, "org_id");
	char	   *user_id = arg_id(fcinfo, 1, "user_id");
	char	   *model = arg_id(fcinfo, 2, "model");
	int64		input_tokens = arg_tokens(fcinfo, 3, "input_tokens");
	int64		max_output_tokens = arg_tokens(fcinfo, 4, "max_output_tokens");
	char	   *request_id = PG_ARGISNULL(5) ? NULL : arg_id(fcinfo, 5, "request_id");
	TimestampTz expires_at = hold_expiry(fcinfo, 6);
	MemberState member;
	ModelInfo	info;
	ModelInfo	fallback;
	const ModelInfo *held;
	PoolState	ps;
	LedgerEntry e;
	Hold		h;
	Credit		estimate;
	Credit		limit;
	Credit		amount;
	bool		fell_back;
	Datum		args[13];
	char		nulls[13];
	bool		in_team;
	bool		isnull;
	Datum		result;

	/* insert_plan's RETURNING list (hold_id), 1-based (spi_value) */
	enum
	{
		IR_HOLD_ID = 1
	};

	check_writable("credit_reserve()");
	SPI_connect();

	pool_check_org(org_id);
	pool_get_member(org_id, user_id, true, &member);
	catalog_get_model(model, &info);
	check_provider_enabled(org_id, &info);

	if (request_id != NULL)
	{
		ledger_lock_request(org_id, request_id);
		if (ledger_find_request(org_id, request_id, &e))
		{
			if (strcmp(e.kind, "hold") == 0 && hold_get(e.hold_id, false, &h))
			{
				/* the original reservation (the hold may have ended since) */
				h.reserved = e.reserved_change;
				/* compare with what was asked for, not what was held */
				e.model = h.requested_model;
				e.output_tokens = h.max_output_tokens;
			}
			check_replay(&e, "hold", user_id, model, input_tokens, max_output_tokens);
			result = SPI_datumTransfer(hold_result(fcinfo, &h, true), false, -1);
			SPI_finish();
			PG_RETURN_DATUM(result);
		}
	}

	estimate = catalog_cost(&info, input_tokens, max_output_tokens);

	pool_lock(org_id, &ps);
	limit = pool_limit(&ps, user_id);

	/*
	 * A premium model is held when the pool, the member's cap and the team's
	 * allow it and cover the estimate; otherwise the call switches to the
	 * provider's fallback, which holds what it can (possibly nothing).  A
	 * fallback model asked for directly is held the same way.
	 */
	if (info.is_fallback || (limit > 0 && limit >= estimate))
	{
		held = &info;
		fell_back = false;
		amount = Min(estimate, limit);
	}
	else
	{
		char	   *fallback_model = catalog_fallback_model(info.provider);

		if (fallback_model == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CREDITS_NO_FALLBACK),
					 errmsg("no credits can be reserved for model \"%s\" and provider \"%s\" has no fallback model",
							model, info.provider),
					 errdetail("The estimate is %s credits; %s can be drawn now.",
							   credit_to_cstring(estimate), credit_to_cstring(limit)),
					 errhint("Mark a model of the provider as its fallback with credits.upsert_model(..., is_fallback => true).")));
		catalog_get_model(fallback_model, &fallback);
		held = &fallback;
		fell_back = true;
		estimate = catalog_cost(&fallback, input_tokens, max_output_tokens);
		amount = Min(estimate, limit);
	}

	/* the hold row first: the ledger entry names it */
	in_team = ps.team_id != NULL;
	if (insert_plan[in_team] == NULL)
	{
		Oid			argtypes[13] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, INT8OID,
			INT8OID, INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID, TEXTOID, TEXTOID};

		insert_plan[in_team] = spi_prepare_saved(
			in_team ?
			"INSERT INTO credits.holds (org_id, user_id, requested_model, model, fell_back,"
			"  input_tokens, max_output_tokens, estimate, reserved, available_after,"
			"  expires_at, request_id, team_id)"
			" VALUES ($1, $2, $3, $4, $5, $6, $7, credits._micro($8), credits._micro($9),"
			"  credits._micro($10), $11, $12, $13)"
			" RETURNING hold_id" :
			"INSERT INTO credits.holds (org_id, user_id, requested_model, model, fell_back,"
			"  input_tokens, max_output_tokens, estimate, reserved, available_after,"
			"  expires_at, request_id)"
			" VALUES ($1, $2, $3, $4, $5, $6, $7, credits._micro($8), credits._micro($9),"
			"  credits._micro($10), $11, $12)"
			" RETURNING hold_id",
			in_team ? 13 : 12, argtypes);
	}
	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(org_id);
	args[1] = CStringGetTextDatum(user_id);
	args[2] = CStringGetTextDatum(model);
	args[3] = CStringGetTextDatum(held->model);
	args[4] = BoolGetDatum(fell_back);
	args[5] = Int64GetDatum(input_tokens);
	args[6] = Int64GetDatum(max_output_tokens);
	args[7] = Int64GetDatum(estimate);
	args[8] = Int64GetDatum(amount);
	args[9] = Int64GetDatum(credit_sub(pool_available(&ps), amount));
	args[10] = TimestampTzGetDatum(expires_at);
	args[11] = request_id ? CStringGetTextDatum(request_id) : (Datum) 0;
	nulls[11] = request_id ? ' ' : 'n';
	args[12] = in_team ? CStringGetTextDatum(ps.team_id) : (Datum) 0;
	if (SPI_execute_plan(insert_plan[in_team], args, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into credits.holds");

	h.hold_id = DatumGetInt64(spi_value(0, IR_HOLD_ID, &isnull));
	h.model = (char *) held->model;
	h.fell_back = fell_back;
	h.reserved = amount;
	h.available_after = credit_sub(pool_available(&ps), amount);
	h.expires_at = expires_at;

	ledger_entry_init(&e, org_id, "hold");
	e.user_id = user_id;
	e.model = held->model;
	e.input_tokens = input_tokens;
	e.output_tokens = max_output_tokens;
	e.cost = estimate;
	e.request_id = request_id;
	e.hold_id = h.hold_id;
	pool_reserve(&ps, amount, expires_at, &e);

	/* the reserve took available under the org's auto-recharge threshold */
	if (e.available_after != h.available_after)
	{
		Datum		uargs[2];

		if (available_plan == NULL)
		{
			Oid			argtypes[2] = {INT8OID, INT8OID};

			available_plan = spi_prepare_saved(
				"UPDATE credits.holds SET available_after = credits._micro($2)"
				" WHERE hold_id OPERATOR(pg_catalog.=) $1",
				2, argtypes);
		}
		h.available_after = e.available_after;
		uargs[0] = Int64GetDatum(h.hold_id);
		uargs[1] = Int64GetDatum(h.available_after);
		spi_run(available_plan, uargs, false, 0);
	}

	result = SPI_datumTransfer(hold_result(fcinfo, &h, false), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * credits.credit_settle(hold_id, input_tokens, output_tokens)
 *	 RETURNS credits.debit_result
 *
 * Charges the real cost of the hold's model: from the hold first, any excess
 * from the pool as credit_debit would (shortfall when it cannot), and
 * releases the rest.  An expired hold is charged like a credit_debit.
 */
PG_FUNCTION_INFO_V1(credits_credit_settle);
Datum
credits_credit_settle(PG_FUNCTION_ARGS)
{
	int64		hold_id;
	int64		input_tokens;
	int64		output_tokens;
	Hold		h;
	PoolState	ps;
	ModelInfo	info;
	PoolCharge	charge;
	LedgerEntry e;
	Datum		result;

	arg_not_null(fcinfo, 0, "hold_id");
	hold_id = PG_GETARG_INT64(0);
	input_tokens = arg_tokens(fcinfo, 1, "input_tokens");
	output_tokens = arg_tokens(fcinfo, 2, "output_tokens");

	check_writable("credit_settle()");
	SPI_connect();
	hold_lock(hold_id, true, &ps, &h);

	/* the call happened: charge it even if the model or member went away */
	if (!catalog_lookup_model(h.model, true, &info))
		catalog_get_model(h.model, &info);
	/* in the hold's team, which its reservation counted against */
	(void) pool_limit_in_team(&ps, h.user_id, h.team_id);

	charge.cost = catalog_cost(&info, input_tokens, output_tokens);
	charge.is_fallback = info.is_fallback;
	charge.release = h.reserved;	/* 0 once expired */

	ledger_entry_init(&e, h.org_id, "settle");
	e.user_id = h.user_id;
	e.model = h.model;
	e.input_tokens = input_tokens;
	e.output_tokens = output_tokens;
	e.hold_id = hold_id;
	(void) pool_charge(&ps, &charge, &e);
	hold_end(hold_id, "settled");

	result = SPI_datumTransfer(debit_result(fcinfo, &e, false), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}

/* credits.credit_release(hold_id) RETURNS credits.credit: what was released */
PG_FUNCTION_INFO_V1(credits_credit_release);
Datum
credits_credit_release(PG_FUNCTION_ARGS)
{
	int64		hold_id;
	Hold		h;
	PoolState	ps;
	LedgerEntry e;

	arg_not_null(fcinfo, 0, "hold_id");
	hold_id = PG_GETARG_INT64(0);

	check_writable("credit_release()");
	SPI_connect();
	hold_lock(hold_id, false, &ps, &h);

	ps.user_id = h.user_id;
	pool_set_team(&ps, h.team_id);
	ledger_entry_init(&e, h.org_id, "release");
	e.user_id = h.user_id;
	e.model = h.model;
	e.hold_id = hold_id;
	pool_release(&ps, h.reserved, &e);
	hold_end(hold_id, "released");

	SPI_finish();
	PG_RETURN_CREDIT(h.reserved);
}
