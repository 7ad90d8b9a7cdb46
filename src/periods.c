/*
 * periods.c
 *	  Billing period arithmetic.
 *
 * Period k of an org is [start(k), start(k+1)) with
 *	  start(k) = anchor + k * period
 * where the months and days of the period are added to the anchor's local
 * time in the org's time zone (so a monthly period anchored on the 31st gives
 * 28/29 February, then 31 March, and a daily period keeps local midnight
 * across a DST change), and the time part is added as elapsed time, which is
 * what timestamptz + interval does with TimeZone set to the org's zone.
 * Every period is computed from the original anchor, never from the previous
 * period's end, so short months do not drift the schedule.
 */
#include "postgres.h"

#include <math.h>

#include "common/int.h"
#include "datatype/timestamp.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#include "credits.h"

/* Is this a usable billing period: no negative part, and not empty? */
bool
period_is_valid(const Interval *period)
{
	return period->month >= 0 && period->day >= 0 && period->time >= 0 &&
		(period->month > 0 || period->day > 0 || period->time > 0);
}

void
check_period(const Interval *period)
{
	if (!period_is_valid(period))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid billing period \"%s\"",
						DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(period)))),
				 errdetail("A billing period must be longer than zero and have no negative part."),
				 errhint("Use an interval such as '1 month', '7 days' or '30 seconds'.")));
}

void
check_time_zone(text *zone)
{
	/* timestamptz_zone reports an unknown zone with 22023 */
	(void) DirectFunctionCall2(timestamptz_zone, PointerGetDatum(zone),
							   TimestampTzGetDatum(0));
}

static int32
mul_i32(int32 a, int64 k)
{
	int64		r;

	if (pg_mul_s64_overflow(a, k, &r) || r > PG_INT32_MAX || r < PG_INT32_MIN)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("billing period out of range")));
	return (int32) r;
}

/* start(k), see the header comment */
TimestampTz
period_start(TimestampTz anchor, const Interval *period, text *zone, int64 k)
{
	Interval	calendar;
	Interval	elapsed;
	Datum		local;
	Datum		start;

	calendar.month = mul_i32(period->month, k);
	calendar.day = mul_i32(period->day, k);
	calendar.time = 0;
	elapsed.month = 0;
	elapsed.day = 0;
	if (pg_mul_s64_overflow(period->time, k, &elapsed.time))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("billing period out of range")));

	local = DirectFunctionCall2(timestamptz_zone, PointerGetDatum(zone),
								TimestampTzGetDatum(anchor));
	local = DirectFunctionCall2(timestamp_pl_interval, local,
								IntervalPGetDatum(&calendar));
	start = DirectFunctionCall2(timestamp_zone, PointerGetDatum(zone), local);
	start = DirectFunctionCall2(timestamptz_pl_interval, start,
								IntervalPGetDatum(&elapsed));
	return DatumGetTimestampTz(start);
}

/* The k whose period contains as_of (k may be negative before the anchor). */
int64
period_index(TimestampTz anchor, const Interval *period, text *zone, TimestampTz as_of)
{
	double		approx;
	int64		k;

	check_period(period);
	approx = period->month * (DAYS_PER_MONTH * USECS_PER_DAY) +
		(double) period->day * USECS_PER_DAY + (double) period->time;
	k = (int64) floor(((double) as_of - (double) anchor) / approx);

	while (period_start(anchor, period, zone, k) > as_of)
		k--;
	while (period_start(anchor, period, zone, k + 1) <= as_of)
		k++;
	return k;
}

/*
 * The billing period [*start, *end) that contains as_of, of an org with this
 * anchor, period and time zone; returns its number.  What
 * credits.billing_period() computes, with its errors.
 */
int64
billing_period_of(TimestampTz anchor, const Interval *period, text *zone, TimestampTz as_of,
				  TimestampTz *start, TimestampTz *end)
{
	int64		k;

	if (TIMESTAMP_NOT_FINITE(anchor) || TIMESTAMP_NOT_FINITE(as_of))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a finite timestamp",
						TIMESTAMP_NOT_FINITE(anchor) ? "billing_anchor" : "as_of")));
	check_time_zone(zone);
	k = period_index(anchor, period, zone, as_of);
	*start = period_start(anchor, period, zone, k);
	*end = period_start(anchor, period, zone, k + 1);
	return k;
}

/*
 * Positions of credits.billing_period's result columns, its OUT parameters
 * (020_catalog.sql): in the same order.
 */
enum
{
	BP_PERIOD_NO, BP_PERIOD_START, BP_PERIOD_END,
	BP_NCOLS
};

/*
 * credits.billing_period(anchor, period, time_zone, as_of)
 *	  -> (period_no, period_start, period_end)
 */
PG_FUNCTION_INFO_V1(credits_billing_period);
Datum
credits_billing_period(PG_FUNCTION_ARGS)
{
	TimestampTz start;
	TimestampTz end;
	int64		k;
	Datum		values[BP_NCOLS];
	bool		nulls[BP_NCOLS] = {false};

	arg_not_null(fcinfo, 0, "billing_anchor");
	arg_not_null(fcinfo, 1, "period");
	arg_not_null(fcinfo, 2, "time_zone");
	arg_not_null(fcinfo, 3, "as_of");
	k = billing_period_of(PG_GETARG_TIMESTAMPTZ(0), PG_GETARG_INTERVAL_P(1),
						  PG_GETARG_TEXT_PP(2), PG_GETARG_TIMESTAMPTZ(3), &start, &end);

	values[BP_PERIOD_NO] = Int64GetDatum(k);
	values[BP_PERIOD_START] = TimestampTzGetDatum(start);
	values[BP_PERIOD_END] = TimestampTzGetDatum(end);
	PG_RETURN_DATUM(row_result(fcinfo, values, nulls));
}

/* credits.valid_period(interval): used by the orgs table's CHECK */
PG_FUNCTION_INFO_V1(credits_valid_period);
Datum
credits_valid_period(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(period_is_valid(PG_GETARG_INTERVAL_P(0)));
}
