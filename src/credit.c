/*
 * credit.c
 *	  The credits.credit type: a fixed-point amount stored as a signed 64-bit
 *	  count of micro-credits (6 decimal places).
 *
 * The type shares int8's representation, so comparisons, hashing, sorting and
 * binary I/O are PostgreSQL's own int8 functions.  This file holds those
 * entry points and what differs: exact text I/O, arithmetic that reports
 * overflow as a credit error, casts, sum and avg.
 */
#include "postgres.h"

#include <ctype.h>

#include "common/int.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

#include "credits.h"

#ifndef HAVE_INT128
#error "credits needs a compiler with a 128-bit integer type"
#endif

/* largest magnitude of a negative credit, in micro-credits */
#define CREDIT_MAX_NEG_MAGNITUDE	((uint64) PG_INT64_MAX + 1)

typedef enum CreditParse
{
	CREDIT_OK,
	CREDIT_BAD_SYNTAX,
	CREDIT_TOO_PRECISE,
	CREDIT_OUT_OF_RANGE
} CreditParse;

void
credit_out_of_range(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("credit out of range")));
}

/*
 * Parse "[ws][+-]digits[.digits][ws]" exactly.  Digits beyond the sixth
 * decimal place are accepted only when they are zeros: the value is never
 * rounded.
 */
static CreditParse
credit_parse(const char *str, Credit *result)
{
	const char *p = str;
	bool		neg = false;
	bool		any_digit = false;
	bool		overflow = false;
	bool		too_precise = false;
	uint64		whole = 0;
	uint64		frac = 0;
	int			frac_digits = 0;
	uint64		magnitude;

	while (isspace((unsigned char) *p))
		p++;
	if (*p == '+' || *p == '-')
		neg = (*p++ == '-');

	for (; isdigit((unsigned char) *p); p++)
	{
		any_digit = true;
		if (!overflow &&
			(pg_mul_u64_overflow(whole, 10, &whole) ||
			 pg_add_u64_overflow(whole, (uint64) (*p - '0'), &whole) ||
			 whole > CREDIT_MAX_NEG_MAGNITUDE / CREDIT_SCALE))
			overflow = true;
	}
	if (*p == '.')
	{
		for (p++; isdigit((unsigned char) *p); p++)
		{
			any_digit = true;
			if (frac_digits < CREDIT_DIGITS)
			{
				frac = frac * 10 + (uint64) (*p - '0');
				frac_digits++;
			}
			else if (*p != '0')
				too_precise = true;
		}
	}
	while (isspace((unsigned char) *p))
		p++;

	if (!any_digit || *p != '\0')
		return CREDIT_BAD_SYNTAX;
	if (overflow)
		return CREDIT_OUT_OF_RANGE;
	if (too_precise)
		return CREDIT_TOO_PRECISE;

	for (; frac_digits < CREDIT_DIGITS; frac_digits++)
		frac *= 10;
	magnitude = whole * CREDIT_SCALE + frac;	/* whole is bounded above */

	if (neg)
	{
		if (magnitude > CREDIT_MAX_NEG_MAGNITUDE)
			return CREDIT_OUT_OF_RANGE;
		*result = (magnitude == CREDIT_MAX_NEG_MAGNITUDE) ? PG_INT64_MIN : -(int64) magnitude;
	}
	else
	{
		if (magnitude > (uint64) PG_INT64_MAX)
			return CREDIT_OUT_OF_RANGE;
		*result = (int64) magnitude;
	}
	return CREDIT_OK;
}

/* Shortest exact decimal form: "12.5", "0", "-3.000001". */
char *
credit_to_cstring(Credit value)
{
	char		buf[32];
	char	   *p = buf;
	uint64		magnitude;
	uint64		frac;

	if (value < 0)
	{
		*p++ = '-';
		magnitude = (uint64) 0 - (uint64) value;
	}
	else
		magnitude = (uint64) value;

	p += sprintf(p, UINT64_FORMAT, magnitude / CREDIT_SCALE);
	frac = magnitude % CREDIT_SCALE;
	if (frac != 0)
	{
		int			len;

		len = sprintf(p, ".%06u", (unsigned int) frac);
		while (p[len - 1] == '0')
			len--;
		p[len] = '\0';
	}
	return pstrdup(buf);
}

PG_FUNCTION_INFO_V1(credit_in);
Datum
credit_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	Credit		result = 0;

	switch (credit_parse(str, &result))
	{
		case CREDIT_OK:
			break;
		case CREDIT_BAD_SYNTAX:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid input syntax for type credit: \"%s\"", str),
					 errhint("A credit amount is a plain decimal number such as 12.5 or -0.000001.")));
			break;
		case CREDIT_TOO_PRECISE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid input syntax for type credit: \"%s\"", str),
					 errdetail("A credit amount has at most 6 decimal places; it is never rounded.")));
			break;
		case CREDIT_OUT_OF_RANGE:
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("value \"%s\" is out of range for type credit", str)));
			break;
	}
	PG_RETURN_CREDIT(result);
}

PG_FUNCTION_INFO_V1(credit_out);
Datum
credit_out(PG_FUNCTION_ARGS)
{
	PG_RETURN_CSTRING(credit_to_cstring(PG_GETARG_CREDIT(0)));
}

/* ---------- int8's own functions, under this module's names ---------- */

/*
 * The type shares int8's representation, so these pass the call on to
 * PostgreSQL's int8 functions.  They are C entry points of this module
 * rather than LANGUAGE internal aliases: fmgr finds an internal function
 * whose OID is not a built-in one by a linear search of the built-in names,
 * on every expression initialization.
 */
#define CREDIT_INT8_ALIAS(name, int8func) \
	PG_FUNCTION_INFO_V1(name); \
	Datum \
	name(PG_FUNCTION_ARGS) \
	{ \
		return int8func(fcinfo); \
	}

CREDIT_INT8_ALIAS(credit_recv, int8recv)
CREDIT_INT8_ALIAS(credit_send, int8send)
CREDIT_INT8_ALIAS(credit_eq, int8eq)
CREDIT_INT8_ALIAS(credit_ne, int8ne)
CREDIT_INT8_ALIAS(credit_lt, int8lt)
CREDIT_INT8_ALIAS(credit_le, int8le)
CREDIT_INT8_ALIAS(credit_gt, int8gt)
CREDIT_INT8_ALIAS(credit_ge, int8ge)
CREDIT_INT8_ALIAS(credit_cmp, btint8cmp)
CREDIT_INT8_ALIAS(credit_sortsupport, btint8sortsupport)
CREDIT_INT8_ALIAS(credit_hash, hashint8)
CREDIT_INT8_ALIAS(credit_hash_extended, hashint8extended)
CREDIT_INT8_ALIAS(credit_smaller, int8smaller)
CREDIT_INT8_ALIAS(credit_larger, int8larger)
CREDIT_INT8_ALIAS(credit_from_micro, int8up)

/* ---------- arithmetic ---------- */

Credit
credit_add(Credit a, Credit b)
{
	Credit		r;

	if (pg_add_s64_overflow(a, b, &r))
		credit_out_of_range();
	return r;
}

Credit
credit_sub(Credit a, Credit b)
{
	Credit		r;

	if (pg_sub_s64_overflow(a, b, &r))
		credit_out_of_range();
	return r;
}

/*
 * A pool's available credits: allowance - allowance_used + topup - reserved
 * (credits.pools' CHECK and the pool_status view compute the same), each
 * step checked for overflow.  The one place the C code computes it.
 */
Credit
credit_available(Credit allowance, Credit allowance_used, Credit topup, Credit reserved)
{
	return credit_sub(credit_add(credit_sub(allowance, allowance_used), topup), reserved);
}

/*
 * credits._available(allowance, allowance_used, topup, reserved): the same
 * formula for the SQL code (views, verify, maintenance), so that there is
 * one definition of a pool's available credits.
 */
PG_FUNCTION_INFO_V1(credits_available);
Datum
credits_available(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(credit_available(PG_GETARG_CREDIT(0), PG_GETARG_CREDIT(1),
									  PG_GETARG_CREDIT(2), PG_GETARG_CREDIT(3)));
}

static Credit
credit_from_int128(int128 v)
{
	if (v > PG_INT64_MAX || v < PG_INT64_MIN)
		credit_out_of_range();
	return (Credit) v;
}

/* num / den rounded half away from zero */
static Credit
credit_div_round(int128 num, int128 den)
{
	int128		q;
	int128		r;

	if (den == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DIVISION_BY_ZERO),
				 errmsg("division by zero")));
	q = num / den;
	r = num % den;
	if (r < 0)
		r = -r;
	if (2 * r >= (den < 0 ? -den : den))
		q += ((num < 0) != (den < 0)) ? -1 : 1;
	return credit_from_int128(q);
}

PG_FUNCTION_INFO_V1(credit_pl);
Datum
credit_pl(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(credit_add(PG_GETARG_CREDIT(0), PG_GETARG_CREDIT(1)));
}

PG_FUNCTION_INFO_V1(credit_mi);
Datum
credit_mi(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(credit_sub(PG_GETARG_CREDIT(0), PG_GETARG_CREDIT(1)));
}

PG_FUNCTION_INFO_V1(credit_um);
Datum
credit_um(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(credit_sub(0, PG_GETARG_CREDIT(0)));
}

PG_FUNCTION_INFO_V1(credit_mul_int8);
Datum
credit_mul_int8(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(credit_from_int128((int128) PG_GETARG_CREDIT(0) * PG_GETARG_INT64(1)));
}

PG_FUNCTION_INFO_V1(int8_mul_credit);
Datum
int8_mul_credit(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(credit_from_int128((int128) PG_GETARG_INT64(0) * PG_GETARG_CREDIT(1)));
}

PG_FUNCTION_INFO_V1(credit_div_int8);
Datum
credit_div_int8(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(credit_div_round(PG_GETARG_CREDIT(0), PG_GETARG_INT64(1)));
}

/* ---------- numeric ---------- */

/* the amount as numeric, as the cast credit::numeric gives it */
Datum
credit_to_numeric(Credit value)
{
	return DirectFunctionCall3(numeric_in,
							   CStringGetDatum(credit_to_cstring(value)),
							   ObjectIdGetDatum(InvalidOid),
							   Int32GetDatum(-1));
}

/* a numeric as credit, as the cast numeric::credit gives it (no rounding) */
Credit
numeric_to_credit(Numeric num)
{
	char	   *str;
	Credit		result = 0;

	if (numeric_is_nan(num) || numeric_is_inf(num))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot convert %s to credit",
						numeric_is_nan(num) ? "NaN" : "infinity")));

	str = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));
	switch (credit_parse(str, &result))
	{
		case CREDIT_OK:
			break;
		case CREDIT_TOO_PRECISE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("numeric value %s has more than 6 decimal places", str),
					 errdetail("A credit amount is never rounded on input."),
					 errhint("Use round(value, 6) to choose the rounding explicitly.")));
			break;
		case CREDIT_OUT_OF_RANGE:
			credit_out_of_range();
			break;
		case CREDIT_BAD_SYNTAX:
			elog(ERROR, "unexpected numeric text \"%s\"", str);
			break;
	}
	return result;
}

PG_FUNCTION_INFO_V1(credit_numeric);
Datum
credit_numeric(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(credit_to_numeric(PG_GETARG_CREDIT(0)));
}

PG_FUNCTION_INFO_V1(numeric_credit);
Datum
numeric_credit(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(numeric_to_credit(PG_GETARG_NUMERIC(0)));
}

/* credit / credit: the exact ratio as numeric */
/* ---------- integer casts ---------- */

PG_FUNCTION_INFO_V1(int8_credit);
Datum
int8_credit(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT(credit_from_int128((int128) PG_GETARG_INT64(0) * CREDIT_SCALE));
}

PG_FUNCTION_INFO_V1(int4_credit);
Datum
int4_credit(PG_FUNCTION_ARGS)
{
	PG_RETURN_CREDIT((Credit) PG_GETARG_INT32(0) * CREDIT_SCALE);
}

/* credit -> bigint rounds half away from zero, as numeric -> bigint does */
PG_FUNCTION_INFO_V1(credit_int8);
Datum
credit_int8(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(credit_div_round(PG_GETARG_CREDIT(0), CREDIT_SCALE));
}

/* ---------- sum and avg ---------- */

/*
 * Transition state of sum and avg: a bigint[3] holding the count and a
 * 128-bit running sum, so that only a final result out of range is an error.
 */
typedef struct CreditSumState
{
	int64		count;
	uint64		sum_lo;
	int64		sum_hi;
} CreditSumState;

static CreditSumState *
sum_data(ArrayType *a)
{
	if (ARR_HASNULL(a) ||
		ARR_SIZE(a) != ARR_OVERHEAD_NONULLS(1) + sizeof(CreditSumState))
		elog(ERROR, "expected 3-element bigint array");
	return (CreditSumState *) ARR_DATA_PTR(a);
}

static int128
sum_get(const CreditSumState *s)
{
	return (int128) (((uint128) (uint64) s->sum_hi << 64) | s->sum_lo);
}

static void
sum_set(CreditSumState *s, int128 v)
{
	s->sum_lo = (uint64) v;
	s->sum_hi = (int64) (v >> 64);
}

/* The transition array; inside an aggregate it is updated in place. */
static ArrayType *
sum_transition(FunctionCallInfo fcinfo)
{
	if (AggCheckCallContext(fcinfo, NULL))
		return PG_GETARG_ARRAYTYPE_P(0);
	return PG_GETARG_ARRAYTYPE_P_COPY(0);
}

PG_FUNCTION_INFO_V1(credit_avg_accum);
Datum
credit_avg_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *array = sum_transition(fcinfo);
	CreditSumState *state = sum_data(array);

	state->count++;
	sum_set(state, sum_get(state) + PG_GETARG_CREDIT(1));
	PG_RETURN_ARRAYTYPE_P(array);
}

PG_FUNCTION_INFO_V1(credit_avg_combine);
Datum
credit_avg_combine(PG_FUNCTION_ARGS)
{
	ArrayType  *array = sum_transition(fcinfo);
	CreditSumState *state = sum_data(array);
	CreditSumState *other = sum_data(PG_GETARG_ARRAYTYPE_P(1));

	state->count += other->count;
	sum_set(state, sum_get(state) + sum_get(other));
	PG_RETURN_ARRAYTYPE_P(array);
}

PG_FUNCTION_INFO_V1(credit_sum_final);
Datum
credit_sum_final(PG_FUNCTION_ARGS)
{
	CreditSumState *state = sum_data(PG_GETARG_ARRAYTYPE_P(0));

	if (state->count == 0)
		PG_RETURN_NULL();
	PG_RETURN_CREDIT(credit_from_int128(sum_get(state)));
}

/* avg rounds half away from zero to the micro-credit */
PG_FUNCTION_INFO_V1(credit_avg_final);
Datum
credit_avg_final(PG_FUNCTION_ARGS)
{
	CreditSumState *state = sum_data(PG_GETARG_ARRAYTYPE_P(0));

	if (state->count == 0)
		PG_RETURN_NULL();
	PG_RETURN_CREDIT(credit_div_round(sum_get(state), state->count));
}
