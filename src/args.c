/*
 * args.c
 *	  Argument checks at the SQL boundary.  Functions are not STRICT: a NULL
 *	  argument is an error naming it (22004), never a silent NULL result.
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "credits.h"

void
arg_not_null(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

text *
arg_text(FunctionCallInfo fcinfo, int n, const char *name)
{
	arg_not_null(fcinfo, n, name);
	return PG_GETARG_TEXT_PP(n);
}

/* An identifier: 1 to CREDITS_MAX_ID_LEN bytes. */
char *
arg_id(FunctionCallInfo fcinfo, int n, const char *name)
{
	text	   *t = arg_text(fcinfo, n, name);
	int			len = VARSIZE_ANY_EXHDR(t);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	if (len > CREDITS_MAX_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", name),
				 errdetail("An identifier has at most %d bytes; this one has %d.",
						   CREDITS_MAX_ID_LEN, len)));
	return text_to_cstring(t);
}

int64
arg_tokens(FunctionCallInfo fcinfo, int n, const char *name)
{
	int64		tokens;

	arg_not_null(fcinfo, n, name);
	tokens = PG_GETARG_INT64(n);
	if (tokens < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", name),
				 errdetail("%s is " INT64_FORMAT ".", name, tokens)));
	return tokens;
}

/* credits._check_id(value text, name text): for the SQL admin functions */
PG_FUNCTION_INFO_V1(credits_check_id);
Datum
credits_check_id(PG_FUNCTION_ARGS)
{
	char	   *name = PG_ARGISNULL(1) ? "value" : text_to_cstring(PG_GETARG_TEXT_PP(1));

	(void) arg_id(fcinfo, 0, name);
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/* An amount that must be present and not negative. */
Credit
arg_amount(FunctionCallInfo fcinfo, int n, const char *name)
{
	Credit		amount;

	arg_not_null(fcinfo, n, name);
	amount = PG_GETARG_CREDIT(n);
	if (amount < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", name),
				 errdetail("%s is %s.", name, credit_to_cstring(amount))));
	return amount;
}

/* credits._check_amount(value credit, name text) */
PG_FUNCTION_INFO_V1(credits_check_amount);
Datum
credits_check_amount(PG_FUNCTION_ARGS)
{
	char	   *name = PG_ARGISNULL(1) ? "value" : text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_CREDIT(arg_amount(fcinfo, 0, name));
}

/* The function's composite result: one row of values. */
Datum
row_result(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls));
}

/*
 * 25006 in a read-only transaction, on a hot standby included, before a
 * charging function does anything: a client routes the call to the primary
 * by that SQLSTATE (without this check, a standby would fail later, when the
 * first row lock asks for a transaction id).
 */
void
check_writable(const char *function)
{
	PreventCommandIfReadOnly(function);
}
