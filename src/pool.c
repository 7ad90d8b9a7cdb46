/*
 * pool.c
 *	  An org's pool and its members' period usage.
 *
 * This is the only module that knows how balances are stored: every read of
 * an org's available credits and, later, every change to them goes through
 * here, so the representation can change without touching the callers.
 *
 * Reads take no row lock: they see the last committed state (or this
 * transaction's own changes).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "credits.h"

static SPIPlanPtr org_plan = NULL;
static SPIPlanPtr member_plan = NULL;
static SPIPlanPtr provider_plan = NULL;

/* The org's pool for its current period; unknown org is UC004. */
void
pool_get_org(const char *org_id, OrgState *org)
{
	Datum		arg = CStringGetTextDatum(org_id);
	bool		isnull;
	Credit		allowance;
	Credit		used;
	Credit		topup;
	Credit		reserved;

	if (org_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};

		org_plan = spi_prepare_saved(
			"SELECT p.allowance, p.allowance_used, p.topup, p.reserved"
			"  FROM credits.pools p"
			" WHERE p.org_id OPERATOR(pg_catalog.=) $1",
			1, argtypes);
	}
	if (spi_run(org_plan, &arg, true, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_UNKNOWN_ORG),
				 errmsg("unknown org \"%s\"", org_id),
				 errhint("Create it with credits.create_org().")));

	allowance = DatumGetCredit(spi_value(0, 1, &isnull));
	used = DatumGetCredit(spi_value(0, 2, &isnull));
	topup = DatumGetCredit(spi_value(0, 3, &isnull));
	reserved = DatumGetCredit(spi_value(0, 4, &isnull));

	org->org_id = org_id;
	org->available = credit_sub(credit_add(credit_sub(allowance, used), topup), reserved);
}

/* An active member's cap and period usage; anything else is UC005. */
void
pool_get_member(const char *org_id, const char *user_id, MemberState *member)
{
	Datum		args[2];
	bool		isnull;
	Datum		cap;

	if (member_plan == NULL)
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};

		member_plan = spi_prepare_saved(
			"SELECT m.cap, COALESCE(u.used, '0'::credits.credit)"
			"  FROM credits.members m"
			"  LEFT JOIN credits.member_usage u"
			"    ON u.org_id OPERATOR(pg_catalog.=) m.org_id"
			"   AND u.user_id OPERATOR(pg_catalog.=) m.user_id"
			" WHERE m.org_id OPERATOR(pg_catalog.=) $1"
			"   AND m.user_id OPERATOR(pg_catalog.=) $2 AND m.active",
			2, argtypes);
	}
	args[0] = CStringGetTextDatum(org_id);
	args[1] = CStringGetTextDatum(user_id);
	if (spi_run(member_plan, args, true, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_NOT_MEMBER),
				 errmsg("user \"%s\" is not an active member of org \"%s\"", user_id, org_id),
				 errhint("Add the user with credits.add_member().")));

	cap = spi_value(0, 1, &isnull);
	member->has_cap = !isnull;
	member->cap = isnull ? 0 : DatumGetCredit(cap);
	member->used = DatumGetCredit(spi_value(0, 2, &isnull));
}

/* Has the member used up a personal cap? */
bool
member_cap_reached(const MemberState *member)
{
	return member->has_cap && member->used >= member->cap;
}

/* Is the provider enabled for the org? */
bool
pool_provider_enabled(const char *org_id, const char *provider)
{
	Datum		args[2];

	if (provider_plan == NULL)
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};

		provider_plan = spi_prepare_saved(
			"SELECT 1 FROM credits.org_providers op"
			" WHERE op.org_id OPERATOR(pg_catalog.=) $1"
			"   AND op.provider OPERATOR(pg_catalog.=) $2",
			2, argtypes);
	}
	args[0] = CStringGetTextDatum(org_id);
	args[1] = CStringGetTextDatum(provider);
	return spi_run(provider_plan, args, true, 1) > 0;
}

/* UC003 unless the model's provider is enabled for the org. */
void
check_provider_enabled(const char *org_id, const ModelInfo *model)
{
	if (!pool_provider_enabled(org_id, model->provider))
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_PROVIDER_DISABLED),
				 errmsg("provider \"%s\" of model \"%s\" is not enabled for org \"%s\"",
						model->provider, model->model, org_id),
				 errhint("An admin can enable it with credits.enable_provider().")));
}
