/*
 * catalog.c
 *	  Models, prices and the cost of a call.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "credits.h"

/* Look up an active model (any model, active or not, with any). */
bool
catalog_lookup_model(const char *model, bool any, ModelInfo *info)
{
	return cache_model(model, any, info);
}

/* As catalog_lookup_model, but an unknown or inactive model is UC002. */
void
catalog_get_model(const char *model, ModelInfo *info)
{
	if (!catalog_lookup_model(model, false, info))
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_UNKNOWN_MODEL),
				 errmsg("unknown or inactive model \"%s\"", model),
				 errhint("See credits.models for the models that can be used.")));
}

/* The provider's fallback model, or NULL when it has none. */
char *
catalog_fallback_model(const char *provider)
{
	return cache_fallback(provider);
}

/*
 * ceil((input_tokens * input_price + output_tokens * output_price) / 1e6)
 *	 + request_price
 * exactly, in micro-credits: prices are micro-credits per million tokens, so
 * the division rounds the product up to the next micro-credit and the
 * operator is never under-charged by rounding.  Prices and token counts are
 * never negative, so each product is below 2^126 and their sum fits int128.
 */
Credit
catalog_cost(const ModelInfo *info, int64 input_tokens, int64 output_tokens)
{
	int128		usage;
	int128		cost;

	Assert(input_tokens >= 0 && output_tokens >= 0);
	usage = (int128) input_tokens * info->input_price +
		(int128) output_tokens * info->output_price;
	cost = (usage + 999999) / 1000000 + info->request_price;
	if (cost > PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("cost of " INT64_FORMAT " input and " INT64_FORMAT " output tokens of model \"%s\" is out of range for type credit",
						input_tokens, output_tokens, info->model)));
	return (Credit) cost;
}

/* credits.cost(model, input_tokens, output_tokens DEFAULT 0) */
PG_FUNCTION_INFO_V1(credits_cost);
Datum
credits_cost(PG_FUNCTION_ARGS)
{
	char	   *model = arg_id(fcinfo, 0, "model");
	int64		input_tokens = arg_tokens(fcinfo, 1, "input_tokens");
	int64		output_tokens = arg_tokens(fcinfo, 2, "output_tokens");
	ModelInfo	info;
	Credit		cost;

	SPI_connect();
	catalog_get_model(model, &info);
	cost = catalog_cost(&info, input_tokens, output_tokens);
	SPI_finish();
	PG_RETURN_CREDIT(cost);
}
