/*
 * pool.c
 *	  An org's pool and its members' period usage.
 *
 * This is the only module that knows how balances are stored: every read of
 * an org's available credits and every change to them goes through here, and
 * every change is appended to the ledger in the same transaction.
 *
 * Writers lock the org's pool row (pool_lock) and keep it until their
 * transaction ends, so each charge of an org sees the one before; whatever
 * they read after taking the lock comes from a fresh snapshot (in READ
 * COMMITTED each SPI query of a volatile function takes one).  A pool whose
 * period ended, or whose grants or holds expired, is brought up to date by
 * the writer that locks it (credits._maintain), so correctness never depends
 * on a scheduled job.  Readers take no lock: they compute the same
 * up-to-date figures without writing them (credits.pool_status).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "credits.h"

static SPIPlanPtr org_plan = NULL;
static SPIPlanPtr org_due_plan = NULL;
static SPIPlanPtr member_plan = NULL;
static SPIPlanPtr provider_plan = NULL;
static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr maintain_plan = NULL;
static SPIPlanPtr member_used_plan = NULL;
static SPIPlanPtr draw_plan = NULL;
static SPIPlanPtr update_pool_plan = NULL;
static SPIPlanPtr update_member_plan = NULL;
static SPIPlanPtr insert_member_plan = NULL;

static Credit
credit_min(Credit a, Credit b)
{
	return a < b ? a : b;
}

/* ---------- reading, without locks ---------- */

/* The org's available credits now; an unknown org is UC004. */
void
pool_get_org(const char *org_id, OrgState *org)
{
	Datum		arg = CStringGetTextDatum(org_id);
	bool		isnull;

	check_tenant(org_id);
	if (org_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};

		org_plan = spi_prepare_saved(
			"SELECT p.allowance OPERATOR(credits.-) p.allowance_used"
			"       OPERATOR(credits.+) p.topup OPERATOR(credits.-) p.reserved,"
			"       p.period_end OPERATOR(pg_catalog.<=) pg_catalog.now()"
			"       OR p.next_grant_expiry OPERATOR(pg_catalog.<=) pg_catalog.now()"
			"       OR p.next_hold_expiry OPERATOR(pg_catalog.<=) pg_catalog.now()"
			"  FROM credits.pools p"
			" WHERE p.org_id OPERATOR(pg_catalog.=) $1",
			1, argtypes);
	}
	if (spi_run(org_plan, &arg, true, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_UNKNOWN_ORG),
				 errmsg("unknown org \"%s\"", org_id),
				 errhint("Create it with credits.create_org().")));

	org->org_id = org_id;
	org->available = DatumGetCredit(spi_value(0, 1, &isnull));
	if (DatumGetBool(spi_value(0, 2, &isnull)) && !isnull)
	{
		/* not brought up to date yet: the view computes what it will be */
		if (org_due_plan == NULL)
		{
			Oid			argtypes[1] = {TEXTOID};

			org_due_plan = spi_prepare_saved(
				"SELECT s.available FROM credits.pool_status s"
				" WHERE s.org_id OPERATOR(pg_catalog.=) $1",
				1, argtypes);
		}
		if (spi_run(org_due_plan, &arg, true, 1) > 0)
			org->available = DatumGetCredit(spi_value(0, 1, &isnull));
	}
}

/*
 * A member's cap and period usage.  With active_only, anything but an active
 * member is UC005; otherwise an unknown member has no cap.
 */
void
pool_get_member(const char *org_id, const char *user_id, bool active_only,
				MemberState *member)
{
	Datum		args[2];
	bool		isnull;
	Datum		cap;

	if (member_plan == NULL)
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};

		/* usage of a period that has ended counts as 0 */
		member_plan = spi_prepare_saved(
			"SELECT m.cap, m.active,"
			"       CASE WHEN p.period_end OPERATOR(pg_catalog.<=) pg_catalog.now()"
			"            THEN '0'::credits.credit"
			"            ELSE COALESCE(u.used, '0'::credits.credit) END,"
			"       COALESCE(u.reserved, '0'::credits.credit)"
			"  FROM credits.members m"
			"  JOIN credits.pools p ON p.org_id OPERATOR(pg_catalog.=) m.org_id"
			"  LEFT JOIN credits.member_usage u"
			"    ON u.org_id OPERATOR(pg_catalog.=) m.org_id"
			"   AND u.user_id OPERATOR(pg_catalog.=) m.user_id"
			" WHERE m.org_id OPERATOR(pg_catalog.=) $1"
			"   AND m.user_id OPERATOR(pg_catalog.=) $2",
			2, argtypes);
	}
	args[0] = CStringGetTextDatum(org_id);
	args[1] = CStringGetTextDatum(user_id);
	if (spi_run(member_plan, args, true, 1) == 0 ||
		!DatumGetBool(spi_value(0, 2, &isnull)))
	{
		if (active_only)
			ereport(ERROR,
					(errcode(ERRCODE_CREDITS_NOT_MEMBER),
					 errmsg("user \"%s\" is not an active member of org \"%s\"", user_id, org_id),
					 errhint("Add the user with credits.add_member().")));
		member->has_cap = false;
		member->cap = 0;
		member->used = 0;
		member->reserved = 0;
		return;
	}

	cap = spi_value(0, 1, &isnull);
	member->has_cap = !isnull;
	member->cap = isnull ? 0 : DatumGetCredit(cap);
	member->used = DatumGetCredit(spi_value(0, 3, &isnull));
	member->reserved = DatumGetCredit(spi_value(0, 4, &isnull));
}

/* Has the member used (or reserved with open holds) all of a personal cap? */
bool
member_cap_reached(const MemberState *member)
{
	return member->has_cap && credit_add(member->used, member->reserved) >= member->cap;
}

/* UC003 unless the model's provider is enabled for the org. */
void
check_provider_enabled(const char *org_id, const ModelInfo *model)
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
	args[1] = CStringGetTextDatum(model->provider);
	if (spi_run(provider_plan, args, true, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_PROVIDER_DISABLED),
				 errmsg("provider \"%s\" of model \"%s\" is not enabled for org \"%s\"",
						model->provider, model->model, org_id),
				 errhint("An admin can enable it with credits.enable_provider().")));
}

/* ---------- writing, under the pool lock ---------- */

/* Lock the org's pool row; returns false when the org is unknown. */
static bool
lock_row(const char *org_id, PoolState *ps, bool *due)
{
	Datum		arg = CStringGetTextDatum(org_id);
	bool		isnull;

	if (lock_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};

		lock_plan = spi_prepare_saved(
			"SELECT p.period_start, p.allowance, p.allowance_used, p.topup, p.topup_used,"
			"       p.reserved, p.alert_level, o.thresholds,"
			"       p.period_end OPERATOR(pg_catalog.<=) pg_catalog.now()"
			"       OR p.next_grant_expiry OPERATOR(pg_catalog.<=) pg_catalog.now()"
			"       OR p.next_hold_expiry OPERATOR(pg_catalog.<=) pg_catalog.now()"
			"  FROM credits.pools p"
			"  JOIN credits.orgs o ON o.org_id OPERATOR(pg_catalog.=) p.org_id"
			" WHERE p.org_id OPERATOR(pg_catalog.=) $1"
			"   FOR UPDATE OF p",
			1, argtypes);
	}
	if (spi_run(lock_plan, &arg, false, 1) == 0)
		return false;

	ps->org_id = org_id;
	ps->period_start = DatumGetTimestampTz(spi_value(0, 1, &isnull));
	ps->allowance = DatumGetCredit(spi_value(0, 2, &isnull));
	ps->allowance_used = DatumGetCredit(spi_value(0, 3, &isnull));
	ps->topup = DatumGetCredit(spi_value(0, 4, &isnull));
	ps->topup_used = DatumGetCredit(spi_value(0, 5, &isnull));
	ps->reserved = DatumGetCredit(spi_value(0, 6, &isnull));
	ps->alert_level = DatumGetInt32(spi_value(0, 7, &isnull));
	ps->thresholds = DatumGetArrayTypePCopy(spi_value(0, 8, &isnull));
	*due = DatumGetBool(spi_value(0, 9, &isnull)) && !isnull;
	ps->user_id = NULL;
	ps->has_cap = false;
	ps->cap_left = 0;
	return true;
}

/*
 * Lock the org's pool for the rest of the transaction and bring it up to
 * date (period rollover, expired grants and holds).  Unknown org is UC004.
 */
void
pool_lock(const char *org_id, PoolState *ps)
{
	bool		due;

	check_tenant(org_id);
	if (!lock_row(org_id, ps, &due))
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_UNKNOWN_ORG),
				 errmsg("unknown org \"%s\"", org_id)));
	if (due)
	{
		Datum		arg = CStringGetTextDatum(org_id);

		if (maintain_plan == NULL)
		{
			Oid			argtypes[1] = {TEXTOID};

			maintain_plan = spi_prepare_saved(
				"SELECT credits._maintain($1, pg_catalog.now())", 1, argtypes);
		}
		spi_run(maintain_plan, &arg, false, 0);
		(void) lock_row(org_id, ps, &due);
	}
}

Credit
pool_available(const PoolState *ps)
{
	return credit_sub(credit_add(credit_sub(ps->allowance, ps->allowance_used), ps->topup),
					  ps->reserved);
}

/*
 * What the member may draw now: least(available, cap_left), where cap_left
 * is the cap less what the member used and holds.  The member's usage is
 * read under the pool lock, so a cap is never overshot.
 */
Credit
pool_limit(PoolState *ps, const char *user_id, const MemberState *member)
{
	Credit		limit = Max(pool_available(ps), 0);

	ps->user_id = user_id;
	ps->has_cap = member->has_cap;
	if (member->has_cap)
	{
		Datum		args[2];
		bool		isnull;
		Credit		used = 0;
		Credit		reserved = 0;

		if (member_used_plan == NULL)
		{
			Oid			argtypes[2] = {TEXTOID, TEXTOID};

			member_used_plan = spi_prepare_saved(
				"SELECT u.used, u.reserved FROM credits.member_usage u"
				" WHERE u.org_id OPERATOR(pg_catalog.=) $1"
				"   AND u.user_id OPERATOR(pg_catalog.=) $2",
				2, argtypes);
		}
		args[0] = CStringGetTextDatum(ps->org_id);
		args[1] = CStringGetTextDatum(user_id);
		if (spi_run(member_used_plan, args, false, 1) > 0)
		{
			used = DatumGetCredit(spi_value(0, 1, &isnull));
			reserved = DatumGetCredit(spi_value(0, 2, &isnull));
		}
		ps->cap_left = Max(credit_sub(credit_sub(member->cap, used), reserved), 0);
		limit = credit_min(limit, ps->cap_left);
	}
	return limit;
}

/*
 * Add to the member's period usage and open reservations (ps->user_id).
 * Under the pool lock, so the row's absence cannot race.
 */
static void
member_update(PoolState *ps, Credit used, Credit reserved)
{
	Datum		args[4];

	if (used == 0 && reserved == 0)
		return;
	if (update_member_plan == NULL)
	{
		Oid			argtypes[4] = {TEXTOID, TEXTOID, INT8OID, INT8OID};

		update_member_plan = spi_prepare_saved(
			"UPDATE credits.member_usage u"
			"   SET used = u.used OPERATOR(credits.+) credits._micro($3),"
			"       reserved = u.reserved OPERATOR(credits.+) credits._micro($4)"
			" WHERE u.org_id OPERATOR(pg_catalog.=) $1"
			"   AND u.user_id OPERATOR(pg_catalog.=) $2",
			4, argtypes);
		insert_member_plan = spi_prepare_saved(
			"INSERT INTO credits.member_usage (org_id, user_id, used, reserved)"
			" VALUES ($1, $2, credits._micro($3), credits._micro($4))",
			4, argtypes);
	}
	args[0] = CStringGetTextDatum(ps->org_id);
	args[1] = CStringGetTextDatum(ps->user_id);
	args[2] = Int64GetDatum(used);
	args[3] = Int64GetDatum(reserved);
	if (spi_run(update_member_plan, args, false, 0) == 0)
		spi_run(insert_member_plan, args, false, 0);
}

/*
 * Announce crossed thresholds, append the entry to the ledger and write the
 * pool back.  calls and shortfall count charges; hold_expiry (or 0) is a new
 * hold's expiry.
 */
static void
pool_write(PoolState *ps, LedgerEntry *e, int calls, Credit shortfall,
		   TimestampTz hold_expiry)
{
	Datum		args[9];
	char		nulls[9];
	int			rc;

	e->period_start = ps->period_start;
	e->available_after = pool_available(ps);
	ps->alert_level = events_thresholds(ps->org_id, ps->thresholds, ps->alert_level,
										ps->period_start,
										credit_add(credit_add(ps->allowance_used, ps->topup_used),
												   ps->reserved),
										credit_add(credit_add(ps->allowance, ps->topup_used),
												   ps->topup),
										e->available_after);
	e->entry_id = ledger_append(e);

	if (e->from_topup > 0)
	{
		Datum		dargs[3];

		if (draw_plan == NULL)
		{
			Oid			argtypes[3] = {TEXTOID, INT8OID, INT8OID};

			draw_plan = spi_prepare_saved(
				"SELECT credits._draw_grants($1, $2, credits._micro($3))", 3, argtypes);
		}
		dargs[0] = CStringGetTextDatum(ps->org_id);
		dargs[1] = Int64GetDatum(e->entry_id);
		dargs[2] = Int64GetDatum(e->from_topup);
		spi_run(draw_plan, dargs, false, 0);
	}

	if (update_pool_plan == NULL)
	{
		Oid			argtypes[9] = {TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT4OID,
		INT4OID, INT8OID, TIMESTAMPTZOID};

		/* amounts are passed as micro-credits: credits._micro() reinterprets them */
		update_pool_plan = spi_prepare_saved(
			"UPDATE credits.pools p"
			"   SET allowance_used = credits._micro($2),"
			"       topup = credits._micro($3),"
			"       topup_used = credits._micro($4),"
			"       reserved = credits._micro($5),"
			"       alert_level = $6,"
			"       calls = p.calls OPERATOR(pg_catalog.+) $7,"
			"       shortfall = p.shortfall OPERATOR(credits.+) credits._micro($8),"
			"       next_hold_expiry = LEAST(p.next_hold_expiry, $9)"
			" WHERE p.org_id OPERATOR(pg_catalog.=) $1",
			9, argtypes);
	}
	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(ps->org_id);
	args[1] = Int64GetDatum(ps->allowance_used);
	args[2] = Int64GetDatum(ps->topup);
	args[3] = Int64GetDatum(ps->topup_used);
	args[4] = Int64GetDatum(ps->reserved);
	args[5] = Int32GetDatum(ps->alert_level);
	args[6] = Int32GetDatum(calls);
	args[7] = Int64GetDatum(shortfall);
	args[8] = TimestampTzGetDatum(hold_expiry);
	if (hold_expiry == 0)
		nulls[8] = 'n';
	rc = SPI_execute_plan(update_pool_plan, args, nulls, false, 0);
	if (rc != SPI_OK_UPDATE || SPI_processed != 1)
		elog(ERROR, "could not update the pool of org \"%s\"", ps->org_id);
}

/*
 * Charge a call's cost (c->cost) after pool_limit():
 *
 *	 premium:  charged = least(cost, available, cap_left), shortfall = cost - charged
 *	 fallback: charged = least(cost, available, cap_left), shortfall = 0
 *
 * When a hold is settled, its reservation (c->release) is released and the
 * part of the cost it covers is charged (it was reserved within the pool and
 * the member's cap); any excess is charged like the above.  The allowance is
 * drawn first, then grants.
 * Fills the ledger entry's amounts and appends it.
 */
void
pool_charge(PoolState *ps, const MemberState *member, PoolCharge *c, LedgerEntry *e)
{
	Credit		funds;
	Credit		guaranteed;
	Credit		extra;
	Credit		allowance_left;

	Assert(ps->user_id != NULL);

	/* what is there once the hold's reservation is given back */
	ps->reserved = credit_sub(ps->reserved, c->release);
	funds = Max(pool_available(ps), 0);

	guaranteed = credit_min(c->cost, c->release);
	extra = credit_min(credit_sub(c->cost, guaranteed), Max(credit_sub(funds, guaranteed), 0));
	/* the hold's reservation counted against the cap: it comes back too */
	if (ps->has_cap)
		extra = credit_min(extra,
						   Max(credit_sub(credit_add(ps->cap_left, c->release), guaranteed), 0));

	c->charged = credit_add(guaranteed, extra);
	c->shortfall = c->is_fallback ? 0 : credit_sub(c->cost, c->charged);

	allowance_left = Max(credit_sub(ps->allowance, ps->allowance_used), 0);
	e->from_allowance = credit_min(c->charged, allowance_left);
	e->from_topup = credit_sub(c->charged, e->from_allowance);
	ps->allowance_used = credit_add(ps->allowance_used, e->from_allowance);
	ps->topup = credit_sub(ps->topup, e->from_topup);
	ps->topup_used = credit_add(ps->topup_used, e->from_topup);

	e->cost = c->cost;
	e->charged = c->charged;
	e->shortfall = c->shortfall;
	e->reserved_change = -c->release;
	pool_write(ps, e, 1, c->shortfall, 0);

	member_update(ps, c->charged, -c->release);
}

/* Reserve amount for a new hold (the entry carries its hold_id). */
void
pool_reserve(PoolState *ps, Credit amount, TimestampTz expires_at, LedgerEntry *e)
{
	Assert(amount >= 0 && amount <= Max(pool_available(ps), 0));
	ps->reserved = credit_add(ps->reserved, amount);
	e->reserved_change = amount;
	pool_write(ps, e, 0, 0, expires_at);
	member_update(ps, 0, amount);
}

/* Give back amount of a hold's reservation. */
void
pool_release(PoolState *ps, Credit amount, LedgerEntry *e)
{
	ps->reserved = credit_sub(ps->reserved, amount);
	e->reserved_change = -amount;
	pool_write(ps, e, 0, 0, 0);
	member_update(ps, 0, -amount);
}
