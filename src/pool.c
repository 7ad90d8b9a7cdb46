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

/* ---------- charging ---------- */

static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr member_used_plan = NULL;
static SPIPlanPtr update_pool_plan = NULL;
static SPIPlanPtr update_member_plan = NULL;

static Credit
credit_min(Credit a, Credit b)
{
	return a < b ? a : b;
}

/*
 * Charge a call's cost to the org's pool and the member's period usage.
 *
 * The org's pool row is locked first (FOR UPDATE), so every charge of an org
 * sees the result of the one before; the member's usage is read after that
 * lock, with a fresh snapshot, so a cap is never overshot.
 *
 *	 premium:  charged = least(cost, available, cap_left), shortfall = cost - charged
 *	 fallback: charged = least(cost, available, cap_left), shortfall = 0
 *
 * The allowance is drawn first, then purchased top-up.
 */
void
pool_charge(const char *org_id, const char *user_id, const MemberState *member,
			PoolCharge *c)
{
	Datum		args[5];
	bool		isnull;
	Credit		allowance;
	Credit		used;
	Credit		topup;
	Credit		reserved;
	Credit		topup_used;
	int			alert_level;
	ArrayType  *thresholds;
	Credit		available;
	Credit		limit;
	Credit		member_used = member->used;

	if (lock_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};

		lock_plan = spi_prepare_saved(
			"SELECT p.allowance, p.allowance_used, p.topup, p.reserved, p.topup_used,"
			"       p.alert_level, p.period_start, o.thresholds"
			"  FROM credits.pools p"
			"  JOIN credits.orgs o ON o.org_id OPERATOR(pg_catalog.=) p.org_id"
			" WHERE p.org_id OPERATOR(pg_catalog.=) $1"
			"   FOR UPDATE OF p",
			1, argtypes);
	}
	args[0] = CStringGetTextDatum(org_id);
	if (spi_run(lock_plan, args, false, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_UNKNOWN_ORG),
				 errmsg("unknown org \"%s\"", org_id)));
	allowance = DatumGetCredit(spi_value(0, 1, &isnull));
	used = DatumGetCredit(spi_value(0, 2, &isnull));
	topup = DatumGetCredit(spi_value(0, 3, &isnull));
	reserved = DatumGetCredit(spi_value(0, 4, &isnull));
	topup_used = DatumGetCredit(spi_value(0, 5, &isnull));
	alert_level = DatumGetInt32(spi_value(0, 6, &isnull));
	c->period_start = DatumGetTimestampTz(spi_value(0, 7, &isnull));
	thresholds = DatumGetArrayTypePCopy(spi_value(0, 8, &isnull));

	/* the member's usage as of now, under the pool lock */
	if (member->has_cap)
	{
		if (member_used_plan == NULL)
		{
			Oid			argtypes[2] = {TEXTOID, TEXTOID};

			member_used_plan = spi_prepare_saved(
				"SELECT u.used FROM credits.member_usage u"
				" WHERE u.org_id OPERATOR(pg_catalog.=) $1"
				"   AND u.user_id OPERATOR(pg_catalog.=) $2",
				2, argtypes);
		}
		args[1] = CStringGetTextDatum(user_id);
		member_used = 0;
		if (spi_run(member_used_plan, args, false, 1) > 0)
			member_used = DatumGetCredit(spi_value(0, 1, &isnull));
	}

	available = credit_sub(credit_add(credit_sub(allowance, used), topup), reserved);
	limit = Max(available, 0);
	if (member->has_cap)
		limit = credit_min(limit, Max(credit_sub(member->cap, member_used), 0));

	c->charged = credit_min(c->cost, limit);
	c->shortfall = c->is_fallback ? 0 : credit_sub(c->cost, c->charged);
	c->from_allowance = credit_min(c->charged, Max(credit_sub(allowance, used), 0));
	c->from_topup = credit_sub(c->charged, c->from_allowance);
	c->available = credit_sub(available, c->charged);

	alert_level = events_thresholds(org_id, thresholds, alert_level, c->period_start,
									credit_add(credit_add(credit_add(used, c->from_allowance),
														  credit_add(topup_used, c->from_topup)),
											   reserved),
									credit_add(credit_add(allowance, topup_used), topup),
									c->available);

	if (update_pool_plan == NULL)
	{
		Oid			argtypes[4] = {TEXTOID, INT8OID, INT8OID, INT4OID};

		/* $2, $3 are micro-credits: credits._micro() reinterprets them */
		update_pool_plan = spi_prepare_saved(
			"UPDATE credits.pools p"
			"   SET allowance_used = p.allowance_used OPERATOR(credits.+) credits._micro($2),"
			"       topup = p.topup OPERATOR(credits.-) credits._micro($3),"
			"       topup_used = p.topup_used OPERATOR(credits.+) credits._micro($3),"
			"       alert_level = $4"
			" WHERE p.org_id OPERATOR(pg_catalog.=) $1",
			4, argtypes);
	}
	args[1] = Int64GetDatum(c->from_allowance);
	args[2] = Int64GetDatum(c->from_topup);
	args[3] = Int32GetDatum(alert_level);
	spi_run(update_pool_plan, args, false, 0);

	if (c->charged > 0)
	{
		if (update_member_plan == NULL)
		{
			Oid			argtypes[3] = {TEXTOID, TEXTOID, INT8OID};

			update_member_plan = spi_prepare_saved(
				"INSERT INTO credits.member_usage AS u (org_id, user_id, used)"
				" VALUES ($1, $2, credits._micro($3))"
				" ON CONFLICT (org_id, user_id) DO UPDATE"
				"   SET used = u.used OPERATOR(credits.+) EXCLUDED.used",
				3, argtypes);
		}
		args[1] = CStringGetTextDatum(user_id);
		args[2] = Int64GetDatum(c->charged);
		spi_run(update_member_plan, args, false, 0);
	}
}
