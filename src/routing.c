/*
 * routing.c
 *	  The read path called before every AI request: which models an org's
 *	  user may call now (allowed_models) and which one to call (resolve_model).
 *	  Read-only; takes no row lock.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "credits.h"

#define REASON_EXHAUSTED	"credits_exhausted"
#define REASON_CAP			"user_cap_reached"


/*
 * Why a premium model is unavailable, or NULL when it is available: the pool
 * being empty comes first, then the member's own cap.
 */
static const char *
premium_block_reason(const OrgState *org, const MemberState *member)
{
	if (!org->has_credits)
		return REASON_EXHAUSTED;
	if (member != NULL && member_cap_reached(member))
		return REASON_CAP;
	return NULL;
}

/*
 * Positions of credits.allowed_models' result columns (040_routing.sql): in
 * the same order as its RETURNS TABLE.
 */
enum
{
	AM_PROVIDER, AM_MODEL, AM_DISPLAY_NAME, AM_IS_FALLBACK, AM_AVAILABLE, AM_REASON,
	AM_INPUT_PRICE, AM_OUTPUT_PRICE,
	AM_NCOLS
};

/*
 * credits.allowed_models(org_id text, user_id text DEFAULT NULL)
 *	 RETURNS TABLE(provider, model, display_name, is_fallback, available,
 *				   reason, input_price, output_price)
 */
PG_FUNCTION_INFO_V1(credits_allowed_models);
Datum
credits_allowed_models(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *org_id = arg_id(fcinfo, 0, "org_id");
	char	   *user_id = PG_ARGISNULL(1) ? NULL : arg_id(fcinfo, 1, "user_id");
	OrgState	org;
	MemberState member;
	const char *premium_reason;
	OrgModel   *rows;
	int			n;

	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	pool_get_org(org_id, &org);
	if (user_id != NULL)
		pool_get_member(org_id, user_id, true, &member);
	premium_reason = premium_block_reason(&org, user_id ? &member : NULL);

	n = cache_org_models(org_id, &rows);
	for (int i = 0; i < n; i++)
	{
		Datum		values[AM_NCOLS];
		bool		nulls[AM_NCOLS] = {false};
		const char *reason = rows[i].is_fallback ? NULL : premium_reason;

		values[AM_PROVIDER] = CStringGetTextDatum(rows[i].provider);
		values[AM_MODEL] = CStringGetTextDatum(rows[i].model);
		values[AM_DISPLAY_NAME] = CStringGetTextDatum(rows[i].display_name);
		values[AM_IS_FALLBACK] = BoolGetDatum(rows[i].is_fallback);
		values[AM_AVAILABLE] = BoolGetDatum(reason == NULL);
		if (reason == NULL)
			nulls[AM_REASON] = true;
		else
			values[AM_REASON] = CStringGetTextDatum(reason);
		values[AM_INPUT_PRICE] = CreditGetDatum(rows[i].input_price);
		values[AM_OUTPUT_PRICE] = CreditGetDatum(rows[i].output_price);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	SPI_finish();
	return (Datum) 0;
}

/*
 * credits.resolve_model(org_id text, user_id text, model text) RETURNS text
 *
 * The model itself when the user may call it now, else its provider's
 * fallback.  A premium model that is unavailable and whose provider has no
 * fallback is UC001.
 */
PG_FUNCTION_INFO_V1(credits_resolve_model);
Datum
credits_resolve_model(PG_FUNCTION_ARGS)
{
	char	   *org_id = arg_id(fcinfo, 0, "org_id");
	char	   *user_id = arg_id(fcinfo, 1, "user_id");
	char	   *model = arg_id(fcinfo, 2, "model");
	OrgState	org;
	MemberState member;
	ModelInfo	info;
	const char *reason;
	char	   *fallback;
	text	   *result;

	SPI_connect();
	pool_check_org(org_id);
	pool_get_member(org_id, user_id, true, &member);
	catalog_get_model(model, &info);
	check_provider_enabled(org_id, &info);

	/* a fallback is always available: its pool is not even read */
	if (info.is_fallback)
		reason = NULL;
	else
	{
		pool_get_org(org_id, &org);
		reason = premium_block_reason(&org, &member);
	}
	if (reason == NULL)
		result = cstring_to_text(model);
	else
	{
		fallback = catalog_fallback_model(info.provider);
		if (fallback == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CREDITS_NO_FALLBACK),
					 errmsg("model \"%s\" is unavailable and provider \"%s\" has no fallback model",
							model, info.provider),
					 errdetail("The model is unavailable because of %s.",
							   strcmp(reason, REASON_EXHAUSTED) == 0 ?
							   "the org's exhausted credits" : "the user's cap"),
					 errhint("Mark a model of the provider as its fallback with credits.upsert_model(..., is_fallback => true).")));
		result = cstring_to_text(fallback);
	}
	result = (text *) SPI_datumTransfer(PointerGetDatum(result), false, -1);
	SPI_finish();
	PG_RETURN_TEXT_P(result);
}
