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

static SPIPlanPtr models_plan = NULL;

/*
 * Why a premium model is unavailable, or NULL when it is available: the pool
 * being empty comes first, then the member's own cap.
 */
static const char *
premium_block_reason(const OrgState *org, const MemberState *member)
{
	if (org->available <= 0)
		return REASON_EXHAUSTED;
	if (member != NULL && member_cap_reached(member))
		return REASON_CAP;
	return NULL;
}

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
	Datum		arg;
	uint64		n;

	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	pool_get_org(org_id, &org);
	if (user_id != NULL)
		pool_get_member(org_id, user_id, true, &member);
	premium_reason = premium_block_reason(&org, user_id ? &member : NULL);

	if (models_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};

		models_plan = spi_prepare_saved(
			"SELECT m.provider, m.model, m.display_name, m.is_fallback,"
			"       m.input_price, m.output_price"
			"  FROM credits.org_providers op"
			"  JOIN credits.models m ON m.provider OPERATOR(pg_catalog.=) op.provider"
			" WHERE op.org_id OPERATOR(pg_catalog.=) $1 AND m.active"
			" ORDER BY m.provider COLLATE pg_catalog.\"C\", m.is_fallback, m.model COLLATE pg_catalog.\"C\"",
			1, argtypes);
	}
	arg = CStringGetTextDatum(org_id);
	n = spi_run(models_plan, &arg, true, 0);

	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		values[8];
		bool		nulls[8] = {false};
		bool		isnull;
		bool		is_fallback;
		const char *reason;

		values[0] = SPI_getbinval(row, desc, 1, &isnull);	/* provider */
		values[1] = SPI_getbinval(row, desc, 2, &isnull);	/* model */
		values[2] = SPI_getbinval(row, desc, 3, &isnull);	/* display_name */
		nulls[2] = isnull;
		is_fallback = DatumGetBool(SPI_getbinval(row, desc, 4, &isnull));
		values[3] = BoolGetDatum(is_fallback);
		reason = is_fallback ? NULL : premium_reason;
		values[4] = BoolGetDatum(reason == NULL);
		if (reason == NULL)
			nulls[5] = true;
		else
			values[5] = CStringGetTextDatum(reason);
		values[6] = SPI_getbinval(row, desc, 5, &isnull);	/* input_price */
		values[7] = SPI_getbinval(row, desc, 6, &isnull);	/* output_price */

		/* text datums point into SPI memory: the tuplestore copies them */
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
	pool_get_org(org_id, &org);
	pool_get_member(org_id, user_id, true, &member);
	catalog_get_model(model, &info);
	check_provider_enabled(org_id, &info);

	reason = info.is_fallback ? NULL : premium_block_reason(&org, &member);
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
