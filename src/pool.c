/*
 * pool.c
 *	  An org's pool and its members' period usage.
 *
 * This is the only module that knows how balances are stored: every read of
 * an org's available credits and every change to them goes through here, and
 * every change is appended to the ledger in the same transaction.
 *
 * An org's pool is its pools row plus its escrow stripes (pool_stripes, see
 * 030_orgs.sql): none (pools.stripes = 0) until debits have waited for the
 * pool lock credits.split_after times close together (one wait is
 * forgotten every WAIT_MEMORY_CALLS calls), then twice as many after each
 * further credits.split_after such waits, up to credits.max_stripes
 * (escrow_stripes); a debit that waited for its stripe has the session's
 * next debit of the org take the pool lock to count that wait (grow_org).
 * A debit that fits in its backend's stripe is charged there
 * (pool_fast_debit), locking that stripe only; a debit of a split pool that
 * is empty is charged nothing under a share lock of the pools row and
 * counted on its stripe (charge_dry).  Everything else is the slow
 * path: it locks the pools row, then every stripe in order (pool_lock),
 * folds the stripes into its figures, works as a single balance would
 * (pool_charge, pool_reserve, pool_release) and writes the row back, the
 * member's usage and the ledger entry, with the stripes escrowed anew
 * (pool_write).  The rows are locked and written through the executor's
 * row-level entry points, with the semantics of the statements they replace
 * (reader.c, write.c, ledger_append).
 * Locks are kept until the transaction ends, so each charge of an org sees
 * the one before; whatever is read after taking them comes from a fresh
 * snapshot (in READ COMMITTED each SPI query of a volatile function takes
 * one, and so do the readers).  A pool whose period ended, or whose grants
 * or holds expired, is brought up to date by the writer that locks it
 * (credits._maintain), so correctness never depends on a scheduled job.
 * Readers take no lock and read with direct index lookups; a pool that is
 * due is computed as it will be, without writing (credits.pool_status).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "credits.h"

static SPIPlanPtr org_due_plan = NULL;
static SPIPlanPtr maintain_plan = NULL;
static SPIPlanPtr member_used_plan = NULL;
static SPIPlanPtr team_used_plan = NULL;
static SPIPlanPtr team_init_plan = NULL;
static SPIPlanPtr auto_recharge_plan = NULL;
static SPIPlanPtr draw_plan = NULL;
static SPIPlanPtr draw_before_plan = NULL;
static SPIPlanPtr member_upsert_plan = NULL;
/* [0]: escrowed written with the pools row (or 1.0: none); [1]: written here */
static SPIPlanPtr stripes_write_plan[2];
static SPIPlanPtr stripes_plan = NULL;

/*
 * An org whose stripe this backend had to wait for: its next debit here takes
 * the pool lock as if contended, so that the pool gets more stripes.
 */
static char grow_org[CREDITS_MAX_ID_LEN + 1] = "";

/* How many of a pool's calls make it forget one wait for its lock. */
#define WAIT_MEMORY_CALLS 4

static Credit
credit_min(Credit a, Credit b)
{
	return a < b ? a : b;
}

/* ---------- reading, without locks ---------- */

/* UC004 unless the org exists (and is the session's org, if one is set). */
void
pool_check_org(const char *org_id)
{
	check_tenant(org_id);
	if (!cache_org_exists(org_id))
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_UNKNOWN_ORG),
				 errmsg("unknown org \"%s\"", org_id),
				 errhint("Create it with credits.create_org().")));
}

/*
 * Direct index lookups (reader.c) of the pool's rows.  Each reader's enum
 * names the positions of its columns in the values it reads: the enum must
 * list them in the same order as the reader.
 */
static RowReader pools_reader = ROW_READER("pools", "pools_pkey",
										   "allowance", "allowance_used", "topup", "reserved",
										   "period_end", "next_grant_expiry", "next_hold_expiry",
										   "period_start", "stripes", "?escrowed");
enum
{
	PR_ALLOWANCE, PR_ALLOWANCE_USED, PR_TOPUP, PR_RESERVED,
	PR_PERIOD_END, PR_NEXT_GRANT_EXPIRY, PR_NEXT_HOLD_EXPIRY,
	PR_PERIOD_START, PR_STRIPES, PR_ESCROWED,
	PR_NCOLS
};

static RowReader usage_reader = ROW_READER("member_usage", "member_usage_pkey",
										   "used", "reserved");
enum
{
	UR_USED, UR_RESERVED,
	UR_NCOLS
};

/* a capped team's usage: the same columns, in the same order (UR_*) */
static RowReader team_spend_reader = ROW_READER("team_spend", "team_spend_pkey",
												"used", "reserved");

static RowReader stripe_reader = ROW_READER("pool_stripes", "pool_stripes_pkey",
											"used", "stripe", "funds", "period_start", "calls",
											"shortfall");
enum
{
	SR_USED, SR_STRIPE, SR_FUNDS, SR_PERIOD_START, SR_CALLS,
	SR_SHORTFALL,
	SR_NCOLS
};

/*
 * What a pools row (pools_reader's columns) holds: its available credits,
 * before the stripes' used.
 */
static Credit
row_held(const Datum *v)
{
	return credit_available(DatumGetCredit(v[PR_ALLOWANCE]),
							DatumGetCredit(v[PR_ALLOWANCE_USED]),
							DatumGetCredit(v[PR_TOPUP]),
							DatumGetCredit(v[PR_RESERVED]));
}

/* Is a timestamp column at or before now (NULL: no)? */
static bool
due(Datum value, bool isnull)
{
	return !isnull && DatumGetTimestampTz(value) <= GetCurrentTransactionStartTimestamp();
}

/*
 * Is the pool of a pools row (pools_reader's columns) due for maintenance:
 * its period ended, or a grant or hold expired?
 */
static bool
row_due(const Datum *v, const bool *n)
{
	return due(v[PR_PERIOD_END], n[PR_PERIOD_END]) ||
		due(v[PR_NEXT_GRANT_EXPIRY], n[PR_NEXT_GRANT_EXPIRY]) ||
		due(v[PR_NEXT_HOLD_EXPIRY], n[PR_NEXT_HOLD_EXPIRY]);
}

/*
 * Whether the org's pool has credits now; an unknown org is UC004.  A pool
 * split into stripes has them when its row holds more than the stripes were
 * escrowed (they can have used no more than that), and else as soon as one
 * stripe holds some (what the stripes hold is part of what is available),
 * so its stripes are read only up to the first that does; else what they
 * used counts as used.
 */
void
pool_get_org(const char *org_id, OrgState *org)
{
	Datum		v[PR_NCOLS];
	bool		n[PR_NCOLS];
	Credit		available;

	pool_check_org(org_id);
	if (!reader_get(&pools_reader, 1, &org_id, NULL, v, n))
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_UNKNOWN_ORG),
				 errmsg("unknown org \"%s\"", org_id)));

	org->org_id = org_id;
	org->period_end = DatumGetTimestampTz(v[PR_PERIOD_END]);
	available = row_held(v);
	org->has_credits = available > 0;
	if (org->has_credits && DatumGetInt32(v[PR_STRIPES]) > 0 &&
		!(!n[PR_ESCROWED] && available > DatumGetCredit(v[PR_ESCROWED])))
	{
		RowScan    *scan = reader_begin(&stripe_reader, 1, &org_id, NULL);
		Datum		sv[SR_NCOLS];
		bool		sn[SR_NCOLS];
		bool		holds = false;

		while (!holds && reader_next(scan, sv, sn))
		{
			holds = DatumGetCredit(sv[SR_FUNDS]) > 0;
			available = credit_sub(available, DatumGetCredit(sv[SR_USED]));
		}
		reader_end(scan);
		org->has_credits = holds || available > 0;
	}
	if (row_due(v, n))
	{
		/* not brought up to date yet: the view computes what it will be */
		Datum		arg = CStringGetTextDatum(org_id);
		bool		isnull;

		/* org_due_plan's SELECT list, 1-based (spi_value) */
		enum
		{
			OD_AVAILABLE = 1, OD_PERIOD_END
		};

		if (org_due_plan == NULL)
		{
			Oid			argtypes[1] = {TEXTOID};

			org_due_plan = spi_prepare_saved(
				"SELECT s.available, s.period_end FROM credits.pool_status s"
				" WHERE s.org_id OPERATOR(pg_catalog.=) $1",
				1, argtypes);
		}
		if (spi_run(org_due_plan, &arg, true, 1) > 0)
		{
			org->has_credits = DatumGetCredit(spi_value(0, OD_AVAILABLE, &isnull)) > 0;
			org->period_end = DatumGetTimestampTz(spi_value(0, OD_PERIOD_END, &isnull));
		}
	}
}

/*
 * What the org's escrow stripes have used (part of its allowance_used), read
 * with the active snapshot for a caller who could read all of
 * credits.pool_stripes with a query; false, and nothing read, for one who
 * could not (no SELECT privilege, or row-level security applies to it):
 * such a caller runs the query.
 */
bool
pool_stripes_used(const char *org_id, Credit *used)
{
	RowScan    *scan;
	Datum		sv[SR_NCOLS];
	bool		sn[SR_NCOLS];

	if (!reader_unfiltered(&stripe_reader))
		return false;
	*used = 0;
	scan = reader_begin(&stripe_reader, 1, &org_id, NULL);
	while (reader_next(scan, sv, sn))
		*used = credit_add(*used, DatumGetCredit(sv[SR_USED]));
	reader_end(scan);
	return true;
}

/*
 * What a capped member or team (keys: its usage row's key) used and holds,
 * read without a lock; usage of a period that has ended counts as 0.
 */
static void
read_usage(RowReader *r, const char **keys, Credit *used, Credit *reserved)
{
	Datum		uv[UR_NCOLS];
	bool		un[UR_NCOLS];
	Datum		v[PR_NCOLS];
	bool		n[PR_NCOLS];

	*used = *reserved = 0;
	if (reader_get(r, 2, keys, NULL, uv, un))
	{
		*used = DatumGetCredit(uv[UR_USED]);
		*reserved = DatumGetCredit(uv[UR_RESERVED]);
		if (reader_get(&pools_reader, 1, &keys[0], NULL, v, n) &&
			due(v[PR_PERIOD_END], n[PR_PERIOD_END]))
			*used = 0;
	}
}

/*
 * A member's cap and team and, for a capped member or team, period usage
 * and open holds.  With active_only, anything but an active member is
 * UC005; otherwise an unknown member has no cap and no team.
 */
void
pool_get_member(const char *org_id, const char *user_id, bool active_only,
				MemberState *member)
{
	MemberConfig c;

	memset(member, 0, sizeof(*member));
	if (!cache_member(org_id, user_id, &c))
	{
		if (active_only)
			ereport(ERROR,
					(errcode(ERRCODE_CREDITS_NOT_MEMBER),
					 errmsg("user \"%s\" is not an active member of org \"%s\"", user_id, org_id),
					 errhint("Add the user with credits.add_member().")));
		return;
	}
	member->has_cap = c.has_cap;
	member->cap = c.cap;
	member->team_id = c.team_id;
	member->team_has_cap = c.team_has_cap;
	member->team_cap = c.team_cap;
	if (member->has_cap)
	{
		const char *keys[2] = {org_id, user_id};

		read_usage(&usage_reader, keys, &member->used, &member->reserved);
	}
	if (member->team_has_cap)
	{
		const char *keys[2] = {org_id, member->team_id};

		read_usage(&team_spend_reader, keys, &member->team_used, &member->team_reserved);
	}
}

/* Has the member used (or reserved with open holds) all of a personal cap? */
bool
member_cap_reached(const MemberState *member)
{
	return member->has_cap && credit_add(member->used, member->reserved) >= member->cap;
}

/* Have the members of the member's team used or reserved all of its cap? */
bool
team_cap_reached(const MemberState *member)
{
	return member->team_has_cap &&
		credit_add(member->team_used, member->team_reserved) >= member->team_cap;
}

/* UC003 unless the model's provider is enabled for the org. */
void
check_provider_enabled(const char *org_id, const ModelInfo *model)
{
	if (!cache_provider_enabled(org_id, model->provider))
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_PROVIDER_DISABLED),
				 errmsg("provider \"%s\" of model \"%s\" is not enabled for org \"%s\"",
						model->provider, model->model, org_id),
				 errhint("An admin can enable it with credits.enable_provider().")));
}

/* ---------- writing, under the pool lock ---------- */

/*
 * The pools row's columns a charge reads under the lock, and writes back;
 * each enum in the same order as its reader's columns.
 */
static RowReader pool_lock_reader = ROW_READER("pools", "pools_pkey",
											   "period_start", "allowance", "allowance_used",
											   "topup", "topup_used", "reserved", "alert_level",
											   "period_end", "next_grant_expiry",
											   "next_hold_expiry", "stripes", "waits", "calls");
enum
{
	PL_PERIOD_START, PL_ALLOWANCE, PL_ALLOWANCE_USED,
	PL_TOPUP, PL_TOPUP_USED, PL_RESERVED, PL_ALERT_LEVEL,
	PL_PERIOD_END, PL_NEXT_GRANT_EXPIRY,
	PL_NEXT_HOLD_EXPIRY, PL_STRIPES, PL_WAITS, PL_CALLS,
	PL_NCOLS
};

static RowReader pool_write_reader = ROW_READER("pools", "pools_pkey",
												"allowance", "allowance_used", "topup",
												"topup_used", "reserved", "alert_level", "calls",
												"shortfall", "next_hold_expiry", "stripes",
												"waits", "?escrowed");
enum
{
	PW_ALLOWANCE, PW_ALLOWANCE_USED, PW_TOPUP,
	PW_TOPUP_USED, PW_RESERVED, PW_ALERT_LEVEL, PW_CALLS,
	PW_SHORTFALL, PW_NEXT_HOLD_EXPIRY, PW_STRIPES,
	PW_WAITS, PW_ESCROWED,
	PW_NCOLS
};

/* The pool as its row (pool_lock_reader's columns) holds it, into ps. */
static void
read_pool_row(PoolState *ps, const char *org_id, const Datum *v, const bool *n, bool *due_now)
{
	ps->org_id = org_id;
	ps->period_start = DatumGetTimestampTz(v[PL_PERIOD_START]);
	ps->allowance = DatumGetCredit(v[PL_ALLOWANCE]);
	ps->allowance_used = DatumGetCredit(v[PL_ALLOWANCE_USED]);
	ps->topup = DatumGetCredit(v[PL_TOPUP]);
	ps->topup_used = DatumGetCredit(v[PL_TOPUP_USED]);
	ps->reserved = DatumGetCredit(v[PL_RESERVED]);
	ps->alert_level = DatumGetInt32(v[PL_ALERT_LEVEL]);
	*due_now = due(v[PL_PERIOD_END], n[PL_PERIOD_END]) ||
		due(v[PL_NEXT_GRANT_EXPIRY], n[PL_NEXT_GRANT_EXPIRY]) ||
		due(v[PL_NEXT_HOLD_EXPIRY], n[PL_NEXT_HOLD_EXPIRY]);
	ps->stripes = DatumGetInt32(v[PL_STRIPES]);
	ps->waits = DatumGetInt32(v[PL_WAITS]);
	ps->row_calls = DatumGetInt64(v[PL_CALLS]);
	ps->folded_calls = 0;
	ps->folded_shortfall = 0;
	ps->stripes_locked = false;
	ps->escrow = false;
	ps->optimistic = false;
	ps->user_id = NULL;
	ps->has_cap = false;
	ps->cap_left = 0;
	ps->team_id = NULL;
	ps->team_has_cap = false;
	ps->team_cap_left = 0;
}

/*
 * Lock the org's pool row, as SELECT ... FOR UPDATE would (reader_lock);
 * returns false when the org is unknown.  A session that finds the row
 * locked waits for it and notes that the pool is contended
 * (ps->contended): its debit then splits the pool over more stripes.
 */
static bool
lock_row(const char *org_id, PoolState *ps, bool *due_now)
{
	Datum		v[PL_NCOLS];
	bool		n[PL_NCOLS];
	bool		waited;

	ps->contended = strcmp(grow_org, org_id) == 0;
	if (ps->contended)
		grow_org[0] = '\0';
	if (!reader_lock(&pool_lock_reader, 1, &org_id, LockTupleExclusive, v, n, &waited,
					 &ps->row_tid))
		return false;
	ps->contended |= waited;
	read_pool_row(ps, org_id, v, n, due_now);

	/*
	 * The stripes, locked in order: what they used is the pool's too.  Empty
	 * stripes (as committed now: only a holder of the pool lock escrows, and
	 * we hold it) are left alone, so that holds and settles of an org whose
	 * stripes a slow path emptied do not lock and write them all.  A pool
	 * that is one balance (no stripes) has only empty ones.
	 */
	if (ps->stripes > 0)
	{
		RowScan    *scan = reader_begin(&stripe_reader, 1, &org_id, GetLatestSnapshot());
		Datum		sv[SR_NCOLS];
		bool		sn[SR_NCOLS];

		while (!ps->stripes_locked && reader_next(scan, sv, sn))
			ps->stripes_locked = DatumGetCredit(sv[SR_USED]) != 0 ||
				DatumGetCredit(sv[SR_FUNDS]) != 0;
		reader_end(scan);
	}
	if (ps->stripes_locked)
	{
		Datum		arg = CStringGetTextDatum(org_id);
		bool		isnull;

		/* stripes_plan's SELECT list, 1-based (spi_value): in its order */
		enum
		{
			SQ_USED = 1, SQ_CALLS, SQ_SHORTFALL
		};

		if (stripes_plan == NULL)
		{
			Oid			argtypes[1] = {TEXTOID};

			stripes_plan = spi_prepare_saved(
				"SELECT s.used, s.calls, s.shortfall FROM credits.pool_stripes s"
				" WHERE s.org_id OPERATOR(pg_catalog.=) $1"
				" ORDER BY s.stripe FOR UPDATE",
				1, argtypes);
		}
		for (uint64 i = 0, n = spi_run(stripes_plan, &arg, false, 0); i < n; i++)
		{
			ps->allowance_used = credit_add(ps->allowance_used,
											DatumGetCredit(spi_value(i, SQ_USED, &isnull)));
			ps->folded_calls += DatumGetInt64(spi_value(i, SQ_CALLS, &isnull));
			ps->folded_shortfall = credit_add(ps->folded_shortfall,
											  DatumGetCredit(spi_value(i, SQ_SHORTFALL, &isnull)));
		}
	}
	ps->row_cid = GetCurrentCommandId(false);
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
		{
			bool		contended = ps->contended;

			(void) lock_row(org_id, ps, &due);
			ps->contended = contended;
		}
	}
}

/*
 * A debit (c, e as for pool_charge) of a member without a cap, in no team
 * with a cap, of an org that is one balance, made as an UPDATE of the pools
 * row makes it: the row is read as a fresh snapshot shows it, without a
 * lock, the charge is computed from it, and the new version is written only
 * if that one is still the latest (reader_update_version: as UPDATE, it waits
 * for a transaction that has the row); then the member's usage and the
 * ledger entry, as under the lock.  No lock is taken and written to the
 * WAL before the write, which is the write's own.
 *
 * What a charge reads of the configuration under the pool lock (the
 * member's cap and team, the team's cap, the auto-recharge threshold) is
 * read here after the row, and every change of it writes the row
 * (credits._member_changed, _team_changed, _org_changed): a change
 * committed before the row was read is seen, and one that commits later
 * makes the write fail.  Returns false, with nothing written, when the
 * debit must be made under the lock instead: an unknown org, a row another
 * transaction changed since it was read, a pool due for its rollover
 * or split over stripes, a member or team with a cap, a charge that
 * announces a threshold, auto-recharges or splits the pool.
 */
bool
pool_try_debit(const char *org_id, const char *user_id, PoolCharge *c, LedgerEntry *e)
{
	PoolState	ps;
	Datum		v[PL_NCOLS];
	bool		n[PL_NCOLS];
	bool		due_now = true;
	bool		done = false;
	RowVersion *version;

	if (strcmp(grow_org, org_id) == 0 || cache_pool_stripes(org_id) > 0)
		return false;
	check_tenant(org_id);
	reader_push_snapshot();
	version = reader_find(&pool_lock_reader, 1, &org_id, v, n);
	if (version != NULL)
	{
		read_pool_row(&ps, org_id, v, n, &due_now);
		cache_note_pool_stripes(org_id, ps.stripes);
		if (!due_now && ps.stripes == 0)
		{
			ps.contended = false;
			(void) pool_limit(&ps, user_id);
			if (!ps.has_cap && !ps.team_has_cap)
			{
				ps.optimistic = true;
				ps.row_version = version;
				ps.escrow = true;
				done = pool_charge(&ps, c, e);
			}
		}
		reader_release(version);
	}
	PopActiveSnapshot();
	return done;
}

Credit
pool_available(const PoolState *ps)
{
	return credit_available(ps->allowance, ps->allowance_used, ps->topup, ps->reserved);
}

/*
 * What a capped member's or team's usage row (plan: by org and key) holds,
 * read under the pool lock, which every writer of the row holds; in READ
 * COMMITTED each query takes a fresh snapshot.  False when there is no row.
 */
static bool
locked_usage(SPIPlanPtr plan, const char *org_id, const char *key, Credit *used,
			 Credit *reserved)
{
	Datum		args[2];
	bool		isnull;

	/* the plans' SELECT list, 1-based (spi_value): in their order */
	enum
	{
		LU_USED = 1, LU_RESERVED
	};

	*used = *reserved = 0;
	args[0] = CStringGetTextDatum(org_id);
	args[1] = CStringGetTextDatum(key);
	if (spi_run(plan, args, false, 1) == 0)
		return false;
	*used = DatumGetCredit(spi_value(0, LU_USED, &isnull));
	*reserved = DatumGetCredit(spi_value(0, LU_RESERVED, &isnull));
	return true;
}

/*
 * The team a charge counts against (NULL: none) and, if it has a cap
 * (has_cap, cap), what the cap leaves of it: the cap less what the team's
 * members used and hold, read under the pool lock.  A capped team without
 * its team_spend row (a DBA removed it) gets it back from the ledger first.
 */
static void
set_team(PoolState *ps, const char *team_id, bool has_cap, Credit cap)
{
	ps->team_id = team_id;
	ps->team_has_cap = team_id != NULL && has_cap;
	ps->team_cap_left = 0;
	if (ps->team_has_cap)
	{
		Credit		used;
		Credit		reserved;

		if (team_used_plan == NULL)
		{
			Oid			argtypes[2] = {TEXTOID, TEXTOID};

			team_used_plan = spi_prepare_saved(
				"SELECT t.used, t.reserved FROM credits.team_spend t"
				" WHERE t.org_id OPERATOR(pg_catalog.=) $1"
				"   AND t.team_id OPERATOR(pg_catalog.=) $2",
				2, argtypes);
			team_init_plan = spi_prepare_saved(
				"SELECT credits._team_spend_init($1, $2)", 2, argtypes);
		}
		if (!locked_usage(team_used_plan, ps->org_id, team_id, &used, &reserved))
		{
			Datum		args[2] = {CStringGetTextDatum(ps->org_id),
			CStringGetTextDatum(team_id)};

			spi_run(team_init_plan, args, false, 0);
			(void) locked_usage(team_used_plan, ps->org_id, team_id, &used, &reserved);
		}
		ps->team_cap_left = Max(credit_sub(credit_sub(cap, used), reserved), 0);
	}
}

/*
 * What the member may draw now, under the pool lock: least(available,
 * cap_left, team_cap_left), where cap_left is the member's cap less what
 * the member used and holds, and team_cap_left the same for the team that
 * is charged (own_team: the member's; else team_id, a hold's).  The
 * member's configuration is read again now: whoever changes a team's cap
 * holds this lock, so it is as committed, and the usage rows too, so a cap
 * is never overshot.
 */
static Credit
limit_in(PoolState *ps, const char *user_id, bool own_team, const char *team_id)
{
	Credit		limit = Max(pool_available(ps), 0);
	MemberConfig c;

	(void) cache_member(ps->org_id, user_id, &c);
	ps->user_id = user_id;
	ps->has_cap = c.has_cap;
	if (c.has_cap)
	{
		Credit		used;
		Credit		reserved;

		if (member_used_plan == NULL)
		{
			Oid			argtypes[2] = {TEXTOID, TEXTOID};

			member_used_plan = spi_prepare_saved(
				"SELECT u.used, u.reserved FROM credits.member_usage u"
				" WHERE u.org_id OPERATOR(pg_catalog.=) $1"
				"   AND u.user_id OPERATOR(pg_catalog.=) $2",
				2, argtypes);
		}
		(void) locked_usage(member_used_plan, ps->org_id, user_id, &used, &reserved);
		ps->cap_left = Max(credit_sub(credit_sub(c.cap, used), reserved), 0);
		limit = credit_min(limit, ps->cap_left);
	}
	if (own_team)
		set_team(ps, c.team_id, c.team_has_cap, c.team_cap);
	else
		pool_set_team(ps, team_id);
	if (ps->team_has_cap)
		limit = credit_min(limit, ps->team_cap_left);
	return limit;
}

/* What the member may draw now, in the member's own team. */
Credit
pool_limit(PoolState *ps, const char *user_id)
{
	return limit_in(ps, user_id, true, NULL);
}

/* What the member may draw now, in team_id (a hold's, NULL: none). */
Credit
pool_limit_in_team(PoolState *ps, const char *user_id, const char *team_id)
{
	return limit_in(ps, user_id, false, team_id);
}

/* Charge team_id (NULL: none), with its cap as committed now. */
void
pool_set_team(PoolState *ps, const char *team_id)
{
	Credit		cap = 0;
	bool		has_cap = team_id != NULL && cache_team_cap(ps->org_id, team_id, &cap);

	set_team(ps, team_id, has_cap, cap);
}

/*
 * What each stripe may spend without the pool crossing the org's next
 * threshold, its auto-recharge threshold, or going below 0: thresholds,
 * auto-recharges and exhaustion are then only ever reached under the pool
 * lock, where they are seen exactly.  Only allowance is escrowed (grants
 * are drawn in order under the lock).
 */
static Credit
escrow_share(const PoolState *ps, int stripes)
{
	int			thresholds[16];
	int			n = cache_thresholds(ps->org_id, thresholds);
	Credit		escrow = Min(Max(credit_sub(ps->allowance, ps->allowance_used), 0),
							 Max(pool_available(ps), 0));
	Credit		below;
	int128		spent = (int128) ps->allowance_used + ps->topup_used + ps->reserved;
	int128		total = (int128) ps->allowance + ps->topup_used + ps->topup;

	/* a charge that takes available under it must be made under the lock */
	if (cache_auto_recharge(ps->org_id, &below) && pool_available(ps) >= below)
		escrow = Min(escrow, credit_sub(pool_available(ps), below));

	for (int i = 0; i < n; i++)
	{
		int			t = thresholds[i];
		int128		headroom;

		if (t <= ps->alert_level)
			continue;
		/* crossed when spent * 100 >= t * total */
		headroom = (t * total + 99) / 100 - 1 - spent;
		escrow = (Credit) Min((int128) escrow, Max(headroom, 0));
	}
	return escrow / stripes;
}

/*
 * How many stripes a debit escrows the pool over: the org's own setting
 * (orgs.stripes), else as many as before, doubled (from one balance: 2; up
 * to credits.max_stripes) once the pool's recent waits for its lock reach
 * credits.split_after, this debit's wait included.  ps->waits counts the
 * waits since the pool last grew, less one for every WAIT_MEMORY_CALLS of
 * its calls (forget_waits), so only waits that come close together, i.e. a
 * lock busy for a good share of the pool's calls, make more stripes; the
 * collisions every busy org has now and then over a period do not.
 */
static int
escrow_stripes(PoolState *ps)
{
	int			fixed = cache_org_stripes(ps->org_id);
	int			n = ps->stripes;

	if (fixed >= 0)
		return fixed;
	if (ps->contended && ++ps->waits >= credits_split_after)
	{
		n = n > 0 ? n * 2 : 2;
		ps->waits = 0;			/* the next doubling takes as many again */
	}
	return Min(n, credits_max_stripes);
}

/*
 * Forget one recent wait for every WAIT_MEMORY_CALLS calls the pool takes:
 * calls more after the from-th.
 */
static void
forget_waits(PoolState *ps, int64 from, int64 calls)
{
	int64		windows = (from + calls) / WAIT_MEMORY_CALLS - from / WAIT_MEMORY_CALLS;

	ps->waits = (int) Max(ps->waits - Min(windows, (int64) PG_INT32_MAX), 0);
}

/* What pool_write() writes to the pools row. */
typedef struct PoolWrite
{
	const PoolState *ps;
	int64		calls;
	Credit		shortfall;
	TimestampTz hold_expiry;	/* 0: none */
	int			stripes;
	bool		with_escrow;	/* write escrowed (1.1: a 1.0 row has none) */
	Credit		escrowed;
} PoolWrite;

static bool
write_pool_row(Datum *values, bool *nulls, bool *replace, void *arg)
{
	PoolWrite  *w = (PoolWrite *) arg;
	const PoolState *ps = w->ps;

	values[PW_ALLOWANCE_USED] = CreditGetDatum(ps->allowance_used);
	values[PW_TOPUP] = CreditGetDatum(ps->topup);
	values[PW_TOPUP_USED] = CreditGetDatum(ps->topup_used);
	values[PW_RESERVED] = CreditGetDatum(ps->reserved);
	values[PW_ALERT_LEVEL] = Int32GetDatum(ps->alert_level);
	values[PW_CALLS] = Int64GetDatum(DatumGetInt64(values[PW_CALLS]) + w->calls);
	values[PW_SHORTFALL] = CreditGetDatum(credit_add(DatumGetCredit(values[PW_SHORTFALL]),
													 w->shortfall));
	if (w->hold_expiry != 0 &&
		(nulls[PW_NEXT_HOLD_EXPIRY] ||
		 w->hold_expiry < DatumGetTimestampTz(values[PW_NEXT_HOLD_EXPIRY])))
	{
		values[PW_NEXT_HOLD_EXPIRY] = TimestampTzGetDatum(w->hold_expiry);
		nulls[PW_NEXT_HOLD_EXPIRY] = false;
	}
	values[PW_STRIPES] = Int32GetDatum(w->stripes);
	values[PW_WAITS] = Int32GetDatum(ps->waits);
	/* every column but allowance, which is only read */
	for (int i = PW_ALLOWANCE_USED; i <= PW_WAITS; i++)
		replace[i] = true;
	if (w->with_escrow)
	{
		values[PW_ESCROWED] = CreditGetDatum(w->escrowed);
		replace[PW_ESCROWED] = true;
	}
	return true;
}

/* A change of a member's period usage and open reservations. */
typedef struct UsageChange
{
	Credit		used;
	Credit		reserved;
} UsageChange;

static bool
change_usage(Datum *values, bool *nulls, bool *replace, void *arg)
{
	UsageChange *c = (UsageChange *) arg;

	values[UR_USED] = CreditGetDatum(credit_add(DatumGetCredit(values[UR_USED]), c->used));
	values[UR_RESERVED] = CreditGetDatum(credit_add(DatumGetCredit(values[UR_RESERVED]),
													c->reserved));
	replace[UR_USED] = replace[UR_RESERVED] = true;
	return true;
}

/*
 * Add to a member's period usage and open reservations: an update of the
 * member's member_usage row in place of an UPDATE, or, for the first charge
 * of the member in the period (no row yet, or it was just removed), an
 * INSERT ... ON CONFLICT, which settles a race with another first charge.
 * The row is found with a fresh snapshot, or, with in_snapshot, with the
 * active one: the charge's own, which it took fresh for all its writes, as
 * one statement writing them does.
 */
static void
add_member_usage(const char *org_id, const char *user_id, Credit used, Credit reserved,
				 bool in_snapshot)
{
	const char *keys[2] = {org_id, user_id};
	UsageChange change = {used, reserved};
	bool		waited;
	Datum		args[4];

	if (used == 0 && reserved == 0)
		return;
	if (in_snapshot ?
		reader_update_in_snapshot(&usage_reader, 2, keys, change_usage, &change, &waited) :
		reader_update_key(&usage_reader, 2, keys, change_usage, &change, &waited))
		return;
	if (member_upsert_plan == NULL)
	{
		Oid			argtypes[4] = {TEXTOID, TEXTOID, INT8OID, INT8OID};

		member_upsert_plan = spi_prepare_saved(
			"INSERT INTO credits.member_usage AS u (org_id, user_id, used, reserved)"
			" VALUES ($1, $2, credits._micro($3), credits._micro($4))"
			" ON CONFLICT (org_id, user_id) DO UPDATE"
			"    SET used = u.used + EXCLUDED.used,"
			"        reserved = u.reserved + EXCLUDED.reserved",
			4, argtypes);
	}
	args[0] = CStringGetTextDatum(org_id);
	args[1] = CStringGetTextDatum(user_id);
	args[2] = Int64GetDatum(used);
	args[3] = Int64GetDatum(reserved);
	spi_run(member_upsert_plan, args, false, 0);
}

/*
 * Add to a capped team's period usage and open reservations: an update of
 * its team_spend row in place of an UPDATE.  The row is there: set_team()
 * saw it under the pool lock, which every writer of it holds.
 */
static void
add_team_usage(const PoolState *ps, Credit used, Credit reserved)
{
	const char *keys[2] = {ps->org_id, ps->team_id};
	UsageChange change = {used, reserved};
	bool		waited;

	if (used == 0 && reserved == 0)
		return;
	if (!reader_update_key(&team_spend_reader, 2, keys, change_usage, &change, &waited))
		elog(ERROR, "team \"%s\" of org \"%s\" has no team_spend row", ps->team_id, ps->org_id);
}

/*
 * Does a charge (e, just applied to the pool) take the org's available
 * credits from at least its auto-recharge threshold to under it?
 */
static bool
crosses_threshold(const PoolState *ps, const LedgerEntry *e)
{
	Credit		below;
	Credit		before;

	if (!cache_auto_recharge(ps->org_id, &below))
		return false;
	/* what the charge took: its charge less what it released, plus what it held */
	before = credit_add(credit_add(e->available_after, e->charged), e->reserved_change);
	return before >= below && e->available_after < below;
}

/*
 * The auto-recharge of a charge that crossed the threshold, once the charge
 * is in the pools row: the grant is added (credits._auto_recharge, which
 * also checks the period's count) and ledgered before the charge's own
 * entry, whose available_after (what the call returns) then includes it;
 * the charge itself was made without it, so the grant never pays its
 * shortfall, nor draws it.  ps follows the row (the grant, the alert level
 * it re-arms), for the stripes to be escrowed from it.  Returns the grant
 * added, or 0.
 */
static int64
auto_recharge(PoolState *ps, LedgerEntry *e)
{
	Datum		arg = CStringGetTextDatum(ps->org_id);
	bool		isnull;
	int64		grant_id = 0;

	/* auto_recharge_plan's SELECT list, 1-based (spi_value): in its order */
	enum
	{
		AR_AMOUNT = 1, AR_GRANT_ID, AR_ALERT_LEVEL
	};

	if (auto_recharge_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};

		auto_recharge_plan = spi_prepare_saved(
			"SELECT r.amount, r.grant_id, r.alert_level FROM credits._auto_recharge($1) r",
			1, argtypes);
	}
	if (spi_run(auto_recharge_plan, &arg, false, 1) > 0)
	{
		Credit		amount = DatumGetCredit(spi_value(0, AR_AMOUNT, &isnull));

		if (amount > 0)
		{
			e->available_after = credit_add(e->available_after, amount);
			ps->topup = credit_add(ps->topup, amount);
			ps->alert_level = DatumGetInt32(spi_value(0, AR_ALERT_LEVEL, &isnull));
			grant_id = DatumGetInt64(spi_value(0, AR_GRANT_ID, &isnull));
		}
	}
	return grant_id;
}

/*
 * Folded stripes ($5) are escrowed anew (the first $4 of them, $3 each,
 * for a debit) or emptied; stripes left alone keep what a free debit of the
 * fast path, or a debit of an empty pool, may have counted meanwhile.  A
 * pool split while it has nothing to escrow gets its stripe rows all the
 * same ($3 = 0), for the debits of an empty pool to count on.  Amounts are
 * passed as micro-credits: credits._micro() reinterprets them.  In 1.1 the
 * pools row keeps what was escrowed ($3 * $4: what the stripes hold and use
 * from now on adds up to it), for the readers: pool_write() writes it with
 * the row, or, after an auto-recharge, here (WRITE_STRIPES_1_1).
 */
#define WRITE_STRIPES_WITH \
	"WITH emptied AS (" \
	"  UPDATE credits.pool_stripes s" \
	"     SET funds = '0'::credits.credit, used = '0'::credits.credit, calls = 0," \
	"         shortfall = '0'::credits.credit" \
	"   WHERE s.org_id OPERATOR(pg_catalog.=) $1 AND $5" \
	"     AND s.stripe OPERATOR(pg_catalog.>=) $4" \
	"  RETURNING 1)"
#define WRITE_STRIPES_INSERT \
	" INSERT INTO credits.pool_stripes AS s (org_id, stripe, funds, used, calls, period_start)" \
	" SELECT $1, g, credits._micro($3), '0'::credits.credit, 0, $2" \
	"   FROM pg_catalog.generate_series(0, $4 - 1) g" \
	" ON CONFLICT (org_id, stripe) DO UPDATE" \
	"    SET funds = EXCLUDED.funds," \
	"        used = CASE WHEN $5 THEN EXCLUDED.used ELSE s.used END," \
	"        calls = CASE WHEN $5 THEN 0 ELSE s.calls END," \
	"        shortfall = CASE WHEN $5 THEN '0'::credits.credit ELSE s.shortfall END," \
	"        period_start = EXCLUDED.period_start"
#define WRITE_STRIPES WRITE_STRIPES_WITH WRITE_STRIPES_INSERT
#define WRITE_STRIPES_1_1 WRITE_STRIPES_WITH \
	", escrow AS (" \
	"  UPDATE credits.pools p SET escrowed = credits._micro($3 OPERATOR(pg_catalog.*) $4)" \
	"   WHERE p.org_id OPERATOR(pg_catalog.=) $1" \
	"  RETURNING 1)" \
	WRITE_STRIPES_INSERT

/*
 * Announce crossed thresholds, then write the pool back (with what the
 * stripes folded in), add to the member's period usage and open
 * reservations (ps->user_id, when there is one), escrow the stripes anew
 * and append the entry to the ledger.  calls and shortfall count charges;
 * hold_expiry (or 0) is a new hold's expiry.  The pools row and the
 * member's row are updated in place of UPDATE statements (reader.c), the
 * entry appended in place of an INSERT (ledger_append): a charge of an org
 * that is one balance runs no SQL statement at all.
 */
static bool
pool_write(PoolState *ps, LedgerEntry *e, int calls, Credit shortfall,
		   TimestampTz hold_expiry, Credit member_used, Credit member_reserved)
{
	PoolWrite	w;
	Credit		share = 0;
	bool		waited;
	int64		recharge_grant = 0;
	bool		recharge = false;
	Credit		spent;
	Credit		total;

	e->period_start = ps->period_start;
	e->available_after = pool_available(ps);
	/* the period's spent-or-reserved and all its credits, for the thresholds */
	spent = credit_add(credit_add(ps->allowance_used, ps->topup_used), ps->reserved);
	total = credit_add(credit_add(ps->allowance, ps->topup_used), ps->topup);

	/*
	 * A charge of a row read unlocked announces nothing: one that crosses a
	 * threshold, or auto-recharges, or splits the pool, is made under the
	 * lock.
	 */
	if (ps->optimistic &&
		(events_would_cross(ps->org_id, ps->alert_level, spent, total) ||
		 crosses_threshold(ps, e)))
		return false;
	ps->alert_level = events_thresholds(ps->org_id, ps->alert_level, ps->period_start,
										spent, total, e->available_after);

	/* nothing to escrow (a pool running dry): the stripes stay empty */
	w.ps = ps;
	w.calls = calls + ps->folded_calls;
	w.shortfall = credit_add(shortfall, ps->folded_shortfall);
	w.hold_expiry = hold_expiry;
	/* the stripes' calls came before this one's wait; this call after it */
	forget_waits(ps, ps->row_calls, ps->folded_calls);
	w.stripes = ps->escrow ? escrow_stripes(ps) : ps->stripes;
	if (ps->optimistic && w.stripes != ps->stripes)
		return false;
	forget_waits(ps, ps->row_calls + ps->folded_calls, calls);

	/*
	 * What the stripes are escrowed (share each) goes with the row, unless
	 * the charge adds an auto-recharge: its grant is part of what they are
	 * escrowed from, so it is added to the written row first, and the
	 * escrow statement writes escrowed (WRITE_STRIPES_1_1).
	 */
	recharge = crosses_threshold(ps, e);
	if (!recharge)
		share = ps->escrow && w.stripes > 0 ? escrow_share(ps, w.stripes) : 0;
	w.with_escrow = !recharge;
	w.escrowed = share > 0 ? share * w.stripes : 0;

	/*
	 * A row read unlocked: the version read, if it is still the latest once
	 * a transaction that has the row ends (else nothing is written); a
	 * session that found the row taken notes the pool as contended, for its
	 * next charge of it to take the lock and count the wait.  A locked row:
	 * the version pool_lock() locked, when nothing was written since (the
	 * command counter has not moved, so no statement or trigger can have
	 * updated the row; the lock and the key are checked again); else the row
	 * as an UPDATE would find it.
	 */
	if (ps->optimistic)
	{
		TM_Result	result = reader_update_version(ps->row_version, &pool_write_reader, 1,
												   &ps->org_id, write_pool_row, &w, &waited);

		if (waited)
			strlcpy(grow_org, ps->org_id, sizeof(grow_org));
		if (result != TM_Ok)
			return false;
	}
	else if (!(GetCurrentCommandId(false) == ps->row_cid &&
			   reader_update(&pool_write_reader, 1, &ps->org_id, 0, &ps->row_tid,
							 write_pool_row, &w, &waited)) &&
			 !reader_update_key(&pool_write_reader, 1, &ps->org_id, write_pool_row, &w,
								&waited))
		elog(ERROR, "could not write the pool of org \"%s\"", ps->org_id);
	cache_note_pool_stripes(ps->org_id, w.stripes);

	if (recharge)
	{
		recharge_grant = auto_recharge(ps, e);
		share = ps->escrow && w.stripes > 0 ? escrow_share(ps, w.stripes) : 0;
	}

	if (ps->user_id != NULL)
		add_member_usage(ps->org_id, ps->user_id, member_used, member_reserved,
						 ps->optimistic);
	if (ps->team_has_cap)
		add_team_usage(ps, member_used, member_reserved);
	e->team_id = ps->team_id;
	if (ps->stripes_locked || share > 0 || w.stripes > ps->stripes)
	{
		Datum		args[5];
		/* an auto-recharge happens in 1.1 only */
		int			v = recharge ? 1 : 0;

		if (stripes_write_plan[v] == NULL)
		{
			Oid			argtypes[5] = {TEXTOID, TIMESTAMPTZOID, INT8OID, INT4OID, BOOLOID};

			stripes_write_plan[v] = spi_prepare_saved(v ? WRITE_STRIPES_1_1 : WRITE_STRIPES, 5,
													  argtypes);
		}
		args[0] = CStringGetTextDatum(ps->org_id);
		args[1] = TimestampTzGetDatum(ps->period_start);
		args[2] = Int64GetDatum(share);
		args[3] = Int32GetDatum(share > 0 || w.stripes > ps->stripes ? w.stripes : 0);
		args[4] = BoolGetDatum(ps->stripes_locked);
		spi_run(stripes_write_plan[v], args, false, 0);
	}
	ledger_append(e);

	/* from the grants there were: not the auto-recharge this charge added */
	if (e->from_topup > 0)
	{
		Datum		dargs[4];
		Oid			argtypes[4] = {TEXTOID, INT8OID, INT8OID, INT8OID};

		/* 3 arguments, as a database still at 1.0 has them */
		if (draw_plan == NULL)
			draw_plan = spi_prepare_saved(
				"SELECT credits._draw_grants($1, $2, credits._micro($3))", 3, argtypes);
		/* an auto-recharge happens in 1.1 only */
		if (recharge_grant != 0 && draw_before_plan == NULL)
			draw_before_plan = spi_prepare_saved(
				"SELECT credits._draw_grants($1, $2, credits._micro($3), $4)", 4, argtypes);
		dargs[0] = CStringGetTextDatum(ps->org_id);
		dargs[1] = Int64GetDatum(e->entry_id);
		dargs[2] = Int64GetDatum(e->from_topup);
		dargs[3] = Int64GetDatum(recharge_grant);
		spi_run(recharge_grant != 0 ? draw_before_plan : draw_plan, dargs, false, 0);
	}
	return true;
}

/*
 * Charge a call's cost (c->cost) after pool_limit():
 *
 *	 premium:  charged = least(cost, available, cap_left, team_cap_left),
 *			   shortfall = cost - charged
 *	 fallback: charged = least(cost, available, cap_left, team_cap_left),
 *			   shortfall = 0
 *
 * When a hold is settled, its reservation (c->release) is released and the
 * part of the cost it covers is charged (it was reserved within the pool,
 * the member's cap and the team's); any excess is charged like the above.
 * The allowance is drawn first, then grants.
 * Fills the ledger entry's amounts and appends it; false when a charge of a
 * row read unlocked (ps->optimistic) must be made under the lock instead,
 * with nothing written.
 */
bool
pool_charge(PoolState *ps, PoolCharge *c, LedgerEntry *e)
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
	/* the hold was made in the team charged: its cap counted it too */
	if (ps->team_has_cap)
		extra = credit_min(extra,
						   Max(credit_sub(credit_add(ps->team_cap_left, c->release), guaranteed),
							   0));

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
	return pool_write(ps, e, 1, c->shortfall, 0, c->charged, -c->release);
}

/* Reserve amount for a new hold (the entry carries its hold_id). */
void
pool_reserve(PoolState *ps, Credit amount, TimestampTz expires_at, LedgerEntry *e)
{
	Assert(amount >= 0 && amount <= Max(pool_available(ps), 0));
	ps->reserved = credit_add(ps->reserved, amount);
	e->reserved_change = amount;
	(void) pool_write(ps, e, 0, 0, expires_at, 0, amount);
}

/* Give back amount of a hold's reservation. */
void
pool_release(PoolState *ps, Credit amount, LedgerEntry *e)
{
	ps->reserved = credit_sub(ps->reserved, amount);
	e->reserved_change = -amount;
	(void) pool_write(ps, e, 0, 0, 0, 0, -amount);
}

/*
 * A stripe charge: the cost moves from the stripe's funds to its used; on a
 * pool that is empty (dry), nothing is charged and the shortfall is counted.
 */
typedef struct StripeCharge
{
	Credit		cost;
	TimestampTz period_start;
	bool		dry;
	Credit		shortfall;		/* dry: what the call runs short */
} StripeCharge;

static bool
charge_stripe(Datum *values, bool *nulls, bool *replace, void *arg)
{
	StripeCharge *c = (StripeCharge *) arg;

	/* re-checked on the latest version, as UPDATE ... WHERE would */
	if (DatumGetTimestampTz(values[SR_PERIOD_START]) != c->period_start)
		return false;
	if (c->dry)
	{
		if (DatumGetCredit(values[SR_FUNDS]) != 0)
			return false;
		values[SR_SHORTFALL] = CreditGetDatum(credit_add(DatumGetCredit(values[SR_SHORTFALL]),
														 c->shortfall));
		replace[SR_SHORTFALL] = true;
	}
	else
	{
		if (DatumGetCredit(values[SR_FUNDS]) < c->cost)
			return false;
		values[SR_USED] = CreditGetDatum(credit_add(DatumGetCredit(values[SR_USED]), c->cost));
		values[SR_FUNDS] = CreditGetDatum(credit_sub(DatumGetCredit(values[SR_FUNDS]), c->cost));
		replace[SR_USED] = replace[SR_FUNDS] = true;
	}
	values[SR_CALLS] = Int64GetDatum(DatumGetInt64(values[SR_CALLS]) + 1);
	replace[SR_CALLS] = true;
	return true;
}

/* A pool as a fast debit reads it: its pools row and its stripes. */
typedef struct PoolView
{
	bool		due;
	int			stripes;
	TimestampTz period_start;
	Credit		available;		/* the whole pool's */
	Credit		escrowed;		/* the stripes' funds */
	bool		mine_found;		/* this backend's stripe (mine) */
	ItemPointerData mine_tid;
	Credit		mine_funds;
	TimestampTz mine_period_start;
} PoolView;

/*
 * The pool as its pools row (v, n: pools_reader's columns, PR_*, read by the
 * caller) and its stripes, read with the active snapshot, show it; mine is
 * this backend's stripe.
 */
static void
view_stripes(const char *org_id, Datum *v, bool *n, int mine, PoolView *pv)
{
	RowScan    *scan;
	Datum		sv[SR_NCOLS];
	bool		sn[SR_NCOLS];
	Credit		striped = 0;

	pv->due = row_due(v, n);
	pv->stripes = DatumGetInt32(v[PR_STRIPES]);
	pv->period_start = DatumGetTimestampTz(v[PR_PERIOD_START]);
	pv->escrowed = 0;
	pv->mine_found = false;

	scan = reader_begin(&stripe_reader, 1, &org_id, NULL);
	while (reader_next(scan, sv, sn))
	{
		striped = credit_add(striped, DatumGetCredit(sv[SR_USED]));
		pv->escrowed = credit_add(pv->escrowed, DatumGetCredit(sv[SR_FUNDS]));
		if (DatumGetInt32(sv[SR_STRIPE]) == mine)
		{
			pv->mine_found = true;
			pv->mine_tid = *reader_tid(scan);
			pv->mine_funds = DatumGetCredit(sv[SR_FUNDS]);
			pv->mine_period_start = DatumGetTimestampTz(sv[SR_PERIOD_START]);
		}
	}
	reader_end(scan);
	pv->available = credit_sub(row_held(v), striped);
}

/*
 * Run fn(arg) in a subtransaction: kept when it returns true, rolled back
 * (with the row locks it took) when it returns false or fails.
 */
static bool
in_subtransaction(bool (*fn) (void *arg), void *arg)
{
	volatile bool done = false;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		done = fn(arg);
		if (done)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		ReThrowError(edata);
	}
	PG_END_TRY();
	return done;
}

/* What a fast debit charges, and where. */
typedef struct FastDebit
{
	const char *org_id;
	LedgerEntry *e;
	int			mine;
	PoolView	pv;
	StripeCharge charge;
	bool		waited;			/* for this backend's stripe */
} FastDebit;

/*
 * Charge the stripe, add to the member's usage, append the entry.  Only a
 * member without a cap, in no team with a cap, is charged here: whoever
 * gives the member or the team a cap commits before this stripe lock was
 * taken (its invalidation is then seen here, and the slow path charges the
 * call), or waits for it (a team's cap is set under every stripe's lock,
 * and counts what was charged before from the ledger).
 */
static bool
charge_fast(void *arg)
{
	FastDebit  *f = (FastDebit *) arg;
	bool		waited;
	const char *keys[2] = {f->org_id, NULL};
	bool		done = reader_update(&stripe_reader, 2, keys, f->mine, &f->pv.mine_tid,
									 charge_stripe, &f->charge, &waited);
	MemberConfig c;

	f->waited = waited;
	if (!done)
		return false;
	(void) cache_member(f->org_id, f->e->user_id, &c);
	if (c.has_cap || c.team_has_cap)
		return false;
	f->e->team_id = c.team_id;
	add_member_usage(f->org_id, f->e->user_id, f->e->charged, 0, false);
	ledger_append(f->e);
	return true;
}

/* Which stripe is this backend's, of a pool split over stripes. */
static int
my_stripe(int stripes)
{
	return (credits_stripe >= 0 ? credits_stripe : MyProc->pgprocno) % stripes;
}

/*
 * A debit of an empty pool: share-lock the pools row (as SELECT ... FOR
 * SHARE; debits of an empty pool do not wait for each other, while every
 * writer of the row, and so every change that could add credits, waits for
 * them and they for it), make sure, on the row as locked, that the pool is
 * split, current and empty, and count the call and its shortfall on this
 * backend's stripe.  What was read before the lock decides nothing.
 *
 * The row alone tells that the pool is empty: when what the row holds
 * (allowance - allowance_used + topup - reserved) is 0, the stripes can
 * have used nothing the row has not folded in (the pool's available
 * credits, the row's less what the stripes used, are never negative) and
 * hold nothing (what they hold is part of what is available).  A pool
 * emptied through its stripes without a fold is not seen as empty: its
 * next debit takes the slow path, which folds them.
 */
static bool
charge_dry(void *arg)
{
	FastDebit  *f = (FastDebit *) arg;
	Datum		v[PR_NCOLS];
	bool		n[PR_NCOLS];
	bool		waited;

	if (!reader_lock(&pools_reader, 1, &f->org_id, LockTupleShare, v, n, &waited, NULL))
		return false;
	f->pv.stripes = DatumGetInt32(v[PR_STRIPES]);
	if (row_held(v) != 0 || f->pv.stripes == 0 || row_due(v, n))
		return false;
	f->mine = my_stripe(f->pv.stripes);
	if (!reader_find_numbered(&stripe_reader, f->org_id, f->mine, &f->pv.mine_tid))
		return false;
	/* the stripe's period is re-checked on the version charged */
	f->charge.period_start = f->e->period_start = DatumGetTimestampTz(v[PR_PERIOD_START]);
	return charge_fast(f);
}

/*
 * The fast path of a debit, for a pool split into stripes that is not due
 * for maintenance.  Returns false, having changed nothing, when the slow
 * path (pool_lock and pool_charge) must do it.  The caller has checked the
 * org (pool_check_org).
 *
 * The pools row and the stripes are read once, with a snapshot of our own:
 * their sum gives the entry's available_after (the pool's available credits
 * as committed when the call started, less this charge), and this
 * backend's stripe (by its PGPROC slot, which concurrent backends do not
 * share) its place and funds.  When those cover the whole cost
 * (e->cost), the stripe is locked and charged in place of an UPDATE
 * (reader_update: the latest version, re-checked), the member's usage added
 * to and the ledger entry appended, without a statement.  When the whole
 * pool is empty, the call is charged nothing and its shortfall (the cost of
 * a premium model, is_fallback false) is counted on the stripe, under a
 * share lock of the pools row (charge_dry); a backend that found the pool
 * empty last time goes there first, without the read.  Either runs in a
 * subtransaction: a stripe found short once locked stays locked, and
 * rolling back releases it, so a session never waits for the pool lock
 * while holding a stripe.
 */
static bool fast_debit(const char *org_id, LedgerEntry *e, bool is_fallback);

bool
pool_fast_debit(const char *org_id, LedgerEntry *e, bool is_fallback)
{
	bool		done;

	if (strcmp(grow_org, org_id) == 0)
		return false;			/* the slow path adds stripes first */
	if (cache_pool_stripes(org_id) == 0)
		return false;			/* one balance when last seen: no read */

	/*
	 * Read and lock with a snapshot of our own, as a query would: it sees
	 * what this transaction wrote so far (another debit of the same
	 * statement, say), and in READ COMMITTED what is committed now.
	 */
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	done = fast_debit(org_id, e, is_fallback);
	PopActiveSnapshot();
	return done;
}

static bool
fast_debit(const char *org_id, LedgerEntry *e, bool is_fallback)
{
	Datum		v[PR_NCOLS];
	bool		n[PR_NCOLS];
	FastDebit	f;

	f.org_id = org_id;
	f.e = e;
	f.waited = false;
	e->from_topup = 0;
	e->reserved_change = 0;
	f.charge.cost = e->cost;

	/* an empty pool: nothing charged, a premium call runs short */
	f.charge.dry = true;
	f.charge.shortfall = is_fallback ? 0 : e->cost;
	e->charged = e->from_allowance = 0;
	e->shortfall = f.charge.shortfall;
	e->available_after = 0;

	/* empty when last seen here: straight to the share lock */
	if (cache_pool_empty(org_id))
	{
		if (in_subtransaction(charge_dry, &f))
			goto done;
		cache_note_pool_empty(org_id, false);
	}

	if (!reader_get(&pools_reader, 1, &org_id, NULL, v, n))
		return false;
	f.pv.stripes = DatumGetInt32(v[PR_STRIPES]);
	cache_note_pool_stripes(org_id, f.pv.stripes);
	if (f.pv.stripes == 0)
		return false;
	f.mine = my_stripe(f.pv.stripes);
	view_stripes(org_id, v, n, f.mine, &f.pv);
	if (f.pv.due || !f.pv.mine_found || f.pv.mine_period_start != f.pv.period_start)
		return false;

	if (f.pv.available == 0 && f.pv.escrowed == 0)
	{
		bool		charged = in_subtransaction(charge_dry, &f);

		cache_note_pool_empty(org_id, charged);
		if (!charged)
			return false;
	}
	else
	{
		if (f.pv.mine_funds < e->cost)
			return false;
		e->period_start = f.pv.period_start;
		e->charged = e->from_allowance = e->cost;
		e->shortfall = 0;
		e->available_after = credit_sub(f.pv.available, e->cost);
		f.charge.dry = false;
		f.charge.period_start = f.pv.period_start;
		if (!in_subtransaction(charge_fast, &f))
			return false;
	}

done:
	/* another session shares this stripe: ask for more, if there can be */
	if (f.waited && f.pv.stripes < credits_max_stripes && cache_org_stripes(org_id) < 0)
		strlcpy(grow_org, org_id, sizeof(grow_org));
	return true;
}
