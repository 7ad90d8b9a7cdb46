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

/* Why a premium model is unavailable: the limit exhausted, and its reason. */
typedef struct Block
{
	const char *limited_by;		/* allowed_models.limited_by */
	const char *reason;			/* allowed_models.reason */
	const char *detail;			/* for UC001 */
} Block;

static const Block block_pool = {"pool", "credits_exhausted", "the org's exhausted credits"};
static const Block block_team = {"team_cap", "team_cap_reached", "the cap of the user's team"};
static const Block block_member = {"member_cap", "user_cap_reached", "the user's cap"};

/*
 * Why a premium model is unavailable, or NULL when it is available: the pool
 * being empty comes first, then the cap of the member's team, then the
 * member's own cap.
 */
static const Block *
premium_block(const OrgState *org, const MemberState *member)
{
	if (!org->has_credits)
		return &block_pool;
	if (member != NULL && team_cap_reached(member))
		return &block_team;
	if (member != NULL && member_cap_reached(member))
		return &block_member;
	return NULL;
}

/*
 * Positions of credits.allowed_models' result columns (040_routing.sql): in
 * the same order as its RETURNS TABLE.
 */
enum
{
	AM_PROVIDER, AM_MODEL, AM_DISPLAY_NAME, AM_IS_FALLBACK, AM_AVAILABLE, AM_REASON,
	AM_INPUT_PRICE, AM_OUTPUT_PRICE, AM_LIMITED_BY, AM_RESETS_AT,
	AM_NCOLS
};

/*
 * credits.allowed_models(org_id text, user_id text DEFAULT NULL)
 *	 RETURNS TABLE(provider, model, display_name, is_fallback, available,
 *				   reason, input_price, output_price, limited_by, resets_at)
 *
 * Every limit resets when the org's next period starts (resets_at), unless
 * an admin recharges or raises it before.  A database still at 1.0 (the
 * library is updated first) gets its 8 columns.
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
	const Block *premium;
	OrgModel   *rows;
	int			n;
	int			ncols;

	/*
	 * The rows' descriptor: the one the executor expects (it built it from
	 * the function's declared result once per execution), rather than one
	 * built again from pg_proc on every call.
	 */
	InitMaterializedSRF(fcinfo, rsinfo != NULL && IsA(rsinfo, ReturnSetInfo) &&
						rsinfo->expectedDesc != NULL ? MAT_SRF_USE_EXPECTED_DESC : 0);

	SPI_connect();
	pool_get_org(org_id, &org);
	if (user_id != NULL)
		pool_get_member(org_id, user_id, true, &member);
	premium = premium_block(&org, user_id ? &member : NULL);
	ncols = rsinfo->setDesc->natts;
	if (ncols != AM_NCOLS && ncols != AM_LIMITED_BY)
		elog(ERROR, "credits.allowed_models returns %d columns", ncols);

	n = cache_org_models(org_id, &rows);
	for (int i = 0; i < n; i++)
	{
		Datum		values[AM_NCOLS];
		bool		nulls[AM_NCOLS] = {false};
		const Block *block = rows[i].is_fallback ? NULL : premium;

		values[AM_PROVIDER] = CStringGetTextDatum(rows[i].provider);
		values[AM_MODEL] = CStringGetTextDatum(rows[i].model);
		values[AM_DISPLAY_NAME] = CStringGetTextDatum(rows[i].display_name);
		values[AM_IS_FALLBACK] = BoolGetDatum(rows[i].is_fallback);
		values[AM_AVAILABLE] = BoolGetDatum(block == NULL);
		values[AM_INPUT_PRICE] = CreditGetDatum(rows[i].input_price);
		values[AM_OUTPUT_PRICE] = CreditGetDatum(rows[i].output_price);
		if (block == NULL)
			nulls[AM_REASON] = nulls[AM_LIMITED_BY] = nulls[AM_RESETS_AT] = true;
		else
		{
			values[AM_REASON] = CStringGetTextDatum(block->reason);
			values[AM_LIMITED_BY] = CStringGetTextDatum(block->limited_by);
			values[AM_RESETS_AT] = TimestampTzGetDatum(org.period_end);
		}
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
	const Block *block;
	char	   *fallback;
	text	   *result;

	SPI_connect();
	pool_check_org(org_id);
	pool_get_member(org_id, user_id, true, &member);
	catalog_get_model(model, &info);
	check_provider_enabled(org_id, &info);

	/* a fallback is always available: its pool is not even read */
	if (info.is_fallback)
		block = NULL;
	else
	{
		pool_get_org(org_id, &org);
		block = premium_block(&org, &member);
	}
	if (block == NULL)
		result = cstring_to_text(model);
	else
	{
		fallback = catalog_fallback_model(info.provider);
		if (fallback == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CREDITS_NO_FALLBACK),
					 errmsg("model \"%s\" is unavailable and provider \"%s\" has no fallback model",
							model, info.provider),
					 errdetail("The model is unavailable because of %s.", block->detail),
					 errhint("Mark a model of the provider as its fallback with credits.upsert_model(..., is_fallback => true).")));
		result = cstring_to_text(fallback);
	}
	result = (text *) SPI_datumTransfer(PointerGetDatum(result), false, -1);
	SPI_finish();
	PG_RETURN_TEXT_P(result);
}
