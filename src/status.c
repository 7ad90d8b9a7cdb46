/*
 * status.c
 *	  credits._pool_status: an org's pool as of a time, as the next call
 *	  that locks it will find it, and when it runs out at its current rate;
 *	  the pool_status view's columns, computed for each of its rows.
 *
 * A pool is its pools row plus what its escrow stripes used.  A pool whose
 * period ended, or whose holds or grants expired, is brought up to date by
 * the next writer that locks it (credits._maintain); until then this
 * computes what that writer will make of it, without writing: the expired
 * holds and grants no longer count, and a closed period gives way to the
 * one containing as_of, with the members' allowances and the rollover of
 * the closed period's unused allowance.
 *
 * The forecast: burn_per_day is what was charged since the period started
 * (allowance and grants used, from the pool's own counters, never a ledger
 * scan; a restoring recharge starts the allowance used again) per day
 * elapsed, rounded to the micro-credit; runs_out_at is when available
 * reaches 0 at that rate: as_of when it is 0, NULL when nothing was charged
 * or not before the period ends.  Both are computed with numeric's own
 * functions, in the order the SQL expression of 1.1's first view applied
 * them, so the results are those of that expression to the last digit.
 *
 * It runs with the caller's privileges, as the view does (security_invoker):
 * the stripes are read directly only when a query of the caller would read
 * them all (reader_unfiltered), and otherwise, like the due pools' holds,
 * grants and members, by a query, which checks the caller's privileges and
 * applies row-level security.  In C, with the forecast, rather than in
 * PL/pgSQL and SQL expressions: a connection's first pool_status loads no
 * procedural language and plans a join and one function, not some forty
 * operators and functions; a pool that is not due runs no query.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/typcache.h"

#include "credits.h"

/*
 * The columns of the pools and orgs rows _pool_status reads, by name: PF_* and
 * OF_* list them in the same order.  "?name" is a column that may be
 * missing (reads as NULL).
 */
static const char *const pool_columns[] = {
	"org_id", "period_start", "period_end", "allowance", "allowance_used", "topup",
	"reserved", "topup_used", "next_hold_expiry", "next_grant_expiry"
};
enum
{
	PF_ORG_ID, PF_PERIOD_START, PF_PERIOD_END, PF_ALLOWANCE, PF_ALLOWANCE_USED, PF_TOPUP,
	PF_RESERVED, PF_TOPUP_USED, PF_NEXT_HOLD_EXPIRY, PF_NEXT_GRANT_EXPIRY,
	PF_NCOLS
};

static const char *const org_columns[] = {
	"billing_anchor", "period", "time_zone", "allowance_per_user", "?rollover_max"
};
enum
{
	OF_BILLING_ANCHOR, OF_PERIOD, OF_TIME_ZONE, OF_ALLOWANCE_PER_USER, OF_ROLLOVER_MAX,
	OF_NCOLS
};

/* _pool_status's OUT parameters (080_reports.sql), in the same order */
enum
{
	PS_PERIOD_START, PS_PERIOD_END, PS_ALLOWANCE, PS_ALLOWANCE_USED, PS_TOPUP, PS_RESERVED,
	PS_AVAILABLE, PS_EXHAUSTED, PS_BURN_PER_DAY, PS_RUNS_OUT_AT,
	PS_NCOLS
};

/* the queries, planned once per backend, run with the caller's privileges */
static SPIPlanPtr stripes_used_plan = NULL;
static SPIPlanPtr holds_expired_plan = NULL;
static SPIPlanPtr grants_expired_plan = NULL;
static SPIPlanPtr allowance_plan = NULL;

/*
 * The named columns of a row value (a composite argument) into values and
 * nulls; the by-reference values point into the row.
 */
static void
row_columns(HeapTupleHeader row, const char *const *names, int n, Datum *values, bool *nulls)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(row),
											  HeapTupleHeaderGetTypMod(row));
	HeapTupleData tuple;

	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;
	for (int i = 0; i < n; i++)
	{
		bool		optional = names[i][0] == '?';
		const char *name = names[i] + (optional ? 1 : 0);
		AttrNumber	attnum = column_of(desc, name);

		if (attnum == InvalidAttrNumber)
		{
			if (!optional)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("column \"%s\" not found in data type %s",
								name, format_type_be(desc->tdtypeid))));
			values[i] = (Datum) 0;
			nulls[i] = true;
			continue;
		}
		values[i] = heap_getattr(&tuple, attnum, desc, &nulls[i]);
	}
	ReleaseTupleDesc(desc);
}

/* A column of the row that must not be NULL (the table's columns are not). */
static Datum
required(const Datum *values, const bool *nulls, int i, const char *const *names)
{
	if (nulls[i])
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", names[i])));
	return values[i];
}

/* Is a timestamp column at or before as_of (NULL: no)? */
static bool
due_by(const Datum *values, const bool *nulls, int i, TimestampTz as_of)
{
	return !nulls[i] && DatumGetTimestampTz(values[i]) <= as_of;
}

/*
 * The credit sum a query returns (NULL: 0), run with the caller's
 * privileges and the active snapshot, as a STABLE function's queries run.
 */
static Credit
query_sum(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes, Datum *args)
{
	Credit		sum = 0;
	Datum		value;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (*plan == NULL)
		*plan = spi_prepare_saved(sql, nargs, argtypes);
	if (SPI_execute_plan(*plan, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "query of credits._pool_status failed: %s", sql);
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		sum = DatumGetCredit(value);
	SPI_finish();
	return sum;
}

/* query_sum of a query of the org's holds or grants that expired by as_of */
static Credit
expired_sum(SPIPlanPtr *plan, const char *sql, Datum org_id, TimestampTz as_of)
{
	Oid			argtypes[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		args[2] = {org_id, TimestampTzGetDatum(as_of)};

	return query_sum(plan, sql, 2, argtypes, args);
}

/* numeric's greatest(a, b) and least(a, b): on a tie, the first */
static Datum
numeric_greatest(Datum a, Datum b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, a, b)) < 0 ? b : a;
}

static Datum
numeric_least(Datum a, Datum b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, a, b)) > 0 ? b : a;
}

/* extract(epoch FROM to - from): the seconds between, as numeric */
static Datum
seconds_between(TimestampTz from, TimestampTz to)
{
	Datum		span = DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(to),
										   TimestampTzGetDatum(from));

	return DirectFunctionCall2(extract_interval, CStringGetTextDatum("epoch"), span);
}

/* x / 86400: seconds as days */
static Datum
days(Datum seconds)
{
	return DirectFunctionCall2(numeric_div, seconds, NumericGetDatum(int64_to_numeric(86400)));
}

/*
 * What was charged in the period (allowance used, plus the grants used when
 * it is still the pools row's period) per day since it started:
 *	  least(round(charged / (greatest(extract(epoch FROM as_of - start), 1)
 *							 / 86400), 6), 9223372036854.775807)::credit
 */
static Credit
burn_per_day(Credit allowance_used, Credit topup_used, bool same_period,
			 TimestampTz period_start, TimestampTz as_of)
{
	Datum		charged;
	Datum		elapsed;
	Datum		rate;

	charged = DirectFunctionCall2(numeric_add, credit_to_numeric(allowance_used),
								  same_period ? credit_to_numeric(topup_used) :
								  NumericGetDatum(int64_to_numeric(0)));
	elapsed = numeric_greatest(seconds_between(period_start, as_of),
							   NumericGetDatum(int64_to_numeric(1)));
	rate = DirectFunctionCall2(numeric_div, charged, days(elapsed));
	rate = DirectFunctionCall2(numeric_round, rate, Int32GetDatum(CREDIT_DIGITS));
	rate = numeric_least(rate, DirectFunctionCall3(numeric_in,
												   CStringGetDatum("9223372036854.775807"),
												   ObjectIdGetDatum(InvalidOid),
												   Int32GetDatum(-1)));
	return numeric_to_credit(DatumGetNumeric(rate));
}

/*
 * When available reaches 0 at burn a day: as_of when it is 0; NULL (false)
 * when nothing is burnt, or not before the period ends; else
 *	  as_of + (available / burn)::float8 * interval '1 day'
 * The days left are compared before they become an interval, so no figure
 * can overflow it.
 */
static bool
runs_out_at(Credit available, Credit burn, TimestampTz period_end, TimestampTz as_of,
			TimestampTz *at)
{
	Datum		left;
	Datum		span;
	Interval	one_day = {0};

	if (available == 0)
	{
		*at = as_of;
		return true;
	}
	if (burn == 0)
		return false;
	left = DirectFunctionCall2(numeric_div, credit_to_numeric(available), credit_to_numeric(burn));
	if (!DatumGetBool(DirectFunctionCall2(numeric_lt, left,
										  days(seconds_between(as_of, period_end)))))
		return false;
	one_day.day = 1;
	span = DirectFunctionCall2(interval_mul, IntervalPGetDatum(&one_day),
							   DirectFunctionCall1(numeric_float8, left));
	*at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												  TimestampTzGetDatum(as_of), span));
	return true;
}

/*
 * credits._pool_status(p pools, o orgs, as_of timestamptz)
 *	  -> (period_start, period_end, allowance, allowance_used, topup, reserved,
 *		  available, exhausted, burn_per_day, runs_out_at)
 */
PG_FUNCTION_INFO_V1(credits_pool_status);
Datum
credits_pool_status(PG_FUNCTION_ARGS)
{
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(2);
	Datum		pv[PF_NCOLS];
	bool		pn[PF_NCOLS];
	Datum		ov[OF_NCOLS];
	bool		on[OF_NCOLS];
	Datum		org_id;
	Credit		allowance;
	Credit		allowance_used;
	Credit		topup;
	Credit		reserved;
	Credit		striped;
	Credit		available;
	Credit		burn;
	TimestampTz row_period_start;
	TimestampTz period_start;
	TimestampTz period_end;
	TimestampTz at = 0;
	TupleDesc	tupdesc;
	Datum		values[PS_NCOLS];
	bool		nulls[PS_NCOLS] = {false};

	/* the result's descriptor, built once per call site: a row per org */
	tupdesc = (TupleDesc) fcinfo->flinfo->fn_extra;
	if (tupdesc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		tupdesc = BlessTupleDesc(CreateTupleDescCopy(tupdesc));
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = tupdesc;
	}

	row_columns(PG_GETARG_HEAPTUPLEHEADER(0), pool_columns, PF_NCOLS, pv, pn);
	org_id = required(pv, pn, PF_ORG_ID, pool_columns);
	row_period_start = DatumGetTimestampTz(required(pv, pn, PF_PERIOD_START, pool_columns));
	period_start = row_period_start;
	period_end = DatumGetTimestampTz(required(pv, pn, PF_PERIOD_END, pool_columns));
	allowance = DatumGetCredit(required(pv, pn, PF_ALLOWANCE, pool_columns));
	allowance_used = DatumGetCredit(required(pv, pn, PF_ALLOWANCE_USED, pool_columns));
	topup = DatumGetCredit(required(pv, pn, PF_TOPUP, pool_columns));
	reserved = DatumGetCredit(required(pv, pn, PF_RESERVED, pool_columns));

	if (!pool_stripes_used(TextDatumGetCString(org_id), &striped))
	{
		Oid			argtypes[1] = {TEXTOID};

		striped = query_sum(&stripes_used_plan,
							"SELECT pg_catalog.sum(s.used) FROM credits.pool_stripes s"
							" WHERE s.org_id OPERATOR(pg_catalog.=) $1",
							1, argtypes, &org_id);
	}
	allowance_used = credit_add(allowance_used, striped);

	if (due_by(pv, pn, PF_NEXT_HOLD_EXPIRY, as_of))
		reserved = credit_sub(reserved,
							  expired_sum(&holds_expired_plan,
										  "SELECT pg_catalog.sum(h.reserved) FROM credits.holds h"
										  " WHERE h.org_id OPERATOR(pg_catalog.=) $1"
										  "   AND h.status OPERATOR(pg_catalog.=) 'open'"
										  "   AND h.expires_at OPERATOR(pg_catalog.<=) $2",
										  org_id, as_of));
	if (due_by(pv, pn, PF_NEXT_GRANT_EXPIRY, as_of))
		topup = credit_sub(topup,
						   expired_sum(&grants_expired_plan,
									   "SELECT pg_catalog.sum(g.remaining) FROM credits.grants g"
									   " WHERE g.org_id OPERATOR(pg_catalog.=) $1"
									   "   AND g.remaining OPERATOR(pg_catalog.>) 0"
									   "   AND g.expires_at OPERATOR(pg_catalog.<=) $2",
									   org_id, as_of));
	if (period_end <= as_of)
	{
		/* the org's allowance per user, as the credit it is (the result's type) */
		Oid			argtypes[2] = {TEXTOID, TupleDescAttr(tupdesc, PS_ALLOWANCE)->atttypid};
		Datum		args[2];

		row_columns(PG_GETARG_HEAPTUPLEHEADER(1), org_columns, OF_NCOLS, ov, on);
		(void) billing_period_of(DatumGetTimestampTz(required(ov, on, OF_BILLING_ANCHOR,
																	 org_columns)),
								 DatumGetIntervalP(required(ov, on, OF_PERIOD, org_columns)),
								 DatumGetTextPP(required(ov, on, OF_TIME_ZONE, org_columns)),
								 as_of, &period_start, &period_end);
		/* the closed period's unused allowance rolls over into a grant (1.1) */
		if (!on[OF_ROLLOVER_MAX])
			topup = credit_add(topup,
							   Min(Max(credit_sub(allowance, allowance_used), 0),
								   DatumGetCredit(ov[OF_ROLLOVER_MAX])));
		args[0] = org_id;
		args[1] = required(ov, on, OF_ALLOWANCE_PER_USER, org_columns);
		allowance = query_sum(&allowance_plan,
							  "SELECT pg_catalog.sum(COALESCE(m.allowance, $2))"
							  "  FROM credits.members m"
							  " WHERE m.org_id OPERATOR(pg_catalog.=) $1 AND m.active",
							  2, argtypes, args);
		allowance_used = 0;
	}
	/* holds the pool can no longer cover are trimmed */
	reserved = Min(reserved, Max(credit_available(allowance, allowance_used, topup, 0), 0));

	available = credit_available(allowance, allowance_used, topup, reserved);
	burn = burn_per_day(allowance_used,
						DatumGetCredit(required(pv, pn, PF_TOPUP_USED, pool_columns)),
						period_start == row_period_start, period_start, as_of);

	values[PS_PERIOD_START] = TimestampTzGetDatum(period_start);
	values[PS_PERIOD_END] = TimestampTzGetDatum(period_end);
	values[PS_ALLOWANCE] = CreditGetDatum(allowance);
	values[PS_ALLOWANCE_USED] = CreditGetDatum(allowance_used);
	values[PS_TOPUP] = CreditGetDatum(topup);
	values[PS_RESERVED] = CreditGetDatum(reserved);
	values[PS_AVAILABLE] = CreditGetDatum(available);
	values[PS_EXHAUSTED] = BoolGetDatum(available == 0);
	values[PS_BURN_PER_DAY] = CreditGetDatum(burn);
	nulls[PS_RUNS_OUT_AT] = !runs_out_at(available, burn, period_end, as_of, &at);
	values[PS_RUNS_OUT_AT] = TimestampTzGetDatum(at);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
