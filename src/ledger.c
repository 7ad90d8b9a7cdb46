/*
 * ledger.c
 *	  Appending to credits.ledger, and request_id idempotency.
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"

#include "credits.h"

/* advisory lock class of request_id locks, apart from pg_advisory_lock's 1 and 2 */
#define CREDITS_LOCK_REQUEST	0xC7ED

static SPIPlanPtr find_plan = NULL;

/* An entry of this kind with no user, model, tokens, amounts or keys. */
void
ledger_entry_init(LedgerEntry *e, const char *org_id, const char *kind)
{
	memset(e, 0, sizeof(*e));
	e->org_id = org_id;
	e->kind = kind;
	e->input_tokens = -1;
	e->output_tokens = -1;
}

/*
 * Serialize the calls that carry the same (org_id, request_id) until the
 * holder's transaction ends.  Whoever comes second then finds the first
 * one's committed ledger entry (each SPI query of ours takes a new snapshot
 * in READ COMMITTED) and replays it instead of charging again; the unique
 * index on (org_id, request_id) is the backstop.
 */
void
ledger_lock_request(const char *org_id, const char *request_id)
{
	LOCKTAG		tag;
	size_t		org_len = strlen(org_id);
	size_t		req_len = strlen(request_id);
	char	   *key = palloc(org_len + 1 + req_len);
	uint64		h;

	memcpy(key, org_id, org_len);
	key[org_len] = '\0';
	memcpy(key + org_len + 1, request_id, req_len);
	h = hash_bytes_extended((unsigned char *) key, (int) (org_len + 1 + req_len), 0);
	pfree(key);

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 CREDITS_LOCK_REQUEST);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* the columns an entry is read with, and their 1-based numbers: in the same order */
#define LEDGER_COLUMNS \
	"entry_id, kind, period_start, user_id, model, input_tokens, output_tokens," \
	" cost, charged, shortfall, from_allowance, from_topup, reserved_change," \
	" available_after, hold_id"
enum
{
	LC_ENTRY_ID = 1, LC_KIND, LC_PERIOD_START, LC_USER_ID, LC_MODEL, LC_INPUT_TOKENS,
	LC_OUTPUT_TOKENS, LC_COST, LC_CHARGED, LC_SHORTFALL, LC_FROM_ALLOWANCE, LC_FROM_TOPUP,
	LC_RESERVED_CHANGE, LC_AVAILABLE_AFTER, LC_HOLD_ID
};

/* The entry (debit or hold) that used this request_id, if any. */
bool
ledger_find_request(const char *org_id, const char *request_id, LedgerEntry *e)
{
	Datum		args[2];
	bool		isnull;
	Datum		d;

	if (find_plan == NULL)
	{
		Oid			argtypes[2] = {TEXTOID, TEXTOID};

		find_plan = spi_prepare_saved(
			"SELECT " LEDGER_COLUMNS " FROM credits.ledger l"
			" WHERE l.org_id OPERATOR(pg_catalog.=) $1"
			"   AND l.request_id OPERATOR(pg_catalog.=) $2",
			2, argtypes);
	}
	args[0] = CStringGetTextDatum(org_id);
	args[1] = CStringGetTextDatum(request_id);
	if (spi_run(find_plan, args, false, 1) == 0)
		return false;

	ledger_entry_init(e, org_id, NULL);
	e->entry_id = DatumGetInt64(spi_value(0, LC_ENTRY_ID, &isnull));
	e->kind = spi_string(0, LC_KIND);
	e->period_start = DatumGetTimestampTz(spi_value(0, LC_PERIOD_START, &isnull));
	e->user_id = spi_string(0, LC_USER_ID);
	e->model = spi_string(0, LC_MODEL);
	d = spi_value(0, LC_INPUT_TOKENS, &isnull);
	e->input_tokens = isnull ? -1 : DatumGetInt64(d);
	d = spi_value(0, LC_OUTPUT_TOKENS, &isnull);
	e->output_tokens = isnull ? -1 : DatumGetInt64(d);
	e->cost = DatumGetCredit(spi_value(0, LC_COST, &isnull));
	e->charged = DatumGetCredit(spi_value(0, LC_CHARGED, &isnull));
	e->shortfall = DatumGetCredit(spi_value(0, LC_SHORTFALL, &isnull));
	e->from_allowance = DatumGetCredit(spi_value(0, LC_FROM_ALLOWANCE, &isnull));
	e->from_topup = DatumGetCredit(spi_value(0, LC_FROM_TOPUP, &isnull));
	d = spi_value(0, LC_RESERVED_CHANGE, &isnull);
	e->reserved_change = isnull ? 0 : DatumGetCredit(d);
	e->available_after = DatumGetCredit(spi_value(0, LC_AVAILABLE_AFTER, &isnull));
	d = spi_value(0, LC_HOLD_ID, &isnull);
	e->hold_id = isnull ? 0 : DatumGetInt64(d);
	e->request_id = request_id;
	return true;
}

/*
 * The ledger's columns an entry sets; every other column (entry_id, the
 * identity, created_at, topup_change, grant_id, note, and any a DBA added)
 * gets its default.  The index only gives the reader its table.
 */
static RowReader ledger_writer = ROW_READER("ledger", "ledger_request_idx",
											"org_id", "kind", "period_start", "user_id", "model",
											"input_tokens", "output_tokens", "cost", "charged",
											"shortfall", "from_allowance", "from_topup",
											"reserved_change", "available_after", "request_id",
											"hold_id", "?team_id", "entry_id");

/* positions of ledger_writer's columns: in the same order as its list */
enum
{
	LW_ORG_ID, LW_KIND, LW_PERIOD_START, LW_USER_ID, LW_MODEL, LW_INPUT_TOKENS, LW_OUTPUT_TOKENS,
	LW_COST, LW_CHARGED, LW_SHORTFALL, LW_FROM_ALLOWANCE, LW_FROM_TOPUP, LW_RESERVED_CHANGE,
	LW_AVAILABLE_AFTER, LW_REQUEST_ID, LW_HOLD_ID, LW_TEAM_ID,
	LW_SET,						/* the columns above are set, entry_id is read back */
	LW_ENTRY_ID = LW_SET
};

static void
set_text(Datum *values, bool *nulls, int i, const char *s)
{
	nulls[i] = s == NULL;
	values[i] = s == NULL ? (Datum) 0 : CStringGetTextDatum(s);
}

/*
 * Append an entry to the ledger in place of an INSERT statement, and set
 * its entry_id.  The row goes through the executor's insert (write.c):
 * defaults (entry_id from the identity, created_at now(), any column a DBA
 * added), constraints, every index with its predicate and uniqueness (23505
 * for a request_id used twice), triggers.  Zero amounts of the rarely used
 * columns are stored as NULL, which costs no space.
 */
void
ledger_append(LedgerEntry *e)
{
	RowReader  *r = &ledger_writer;
	Relation	rel = reader_open(r, RowExclusiveLock, NULL);
	TupleDesc	desc = RelationGetDescr(rel);
	Datum		v[LW_SET];
	bool		n[LW_SET] = {false};
	Datum	   *values = palloc0(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc0(sizeof(bool) * desc->natts);
	bool	   *set = palloc0(sizeof(bool) * desc->natts);

	set_text(v, n, LW_ORG_ID, e->org_id);
	set_text(v, n, LW_KIND, e->kind);
	v[LW_PERIOD_START] = TimestampTzGetDatum(e->period_start);
	set_text(v, n, LW_USER_ID, e->user_id);
	set_text(v, n, LW_MODEL, e->model);
	v[LW_INPUT_TOKENS] = Int64GetDatum(e->input_tokens);
	n[LW_INPUT_TOKENS] = e->input_tokens < 0;
	v[LW_OUTPUT_TOKENS] = Int64GetDatum(e->output_tokens);
	n[LW_OUTPUT_TOKENS] = e->output_tokens < 0;
	v[LW_COST] = CreditGetDatum(e->cost);
	v[LW_CHARGED] = CreditGetDatum(e->charged);
	v[LW_SHORTFALL] = CreditGetDatum(e->shortfall);
	v[LW_FROM_ALLOWANCE] = CreditGetDatum(e->from_allowance);
	v[LW_FROM_TOPUP] = CreditGetDatum(e->from_topup);
	v[LW_RESERVED_CHANGE] = CreditGetDatum(e->reserved_change);
	n[LW_RESERVED_CHANGE] = e->reserved_change == 0;
	v[LW_AVAILABLE_AFTER] = CreditGetDatum(e->available_after);
	set_text(v, n, LW_REQUEST_ID, e->request_id);
	v[LW_HOLD_ID] = Int64GetDatum(e->hold_id);
	n[LW_HOLD_ID] = e->hold_id == 0;
	set_text(v, n, LW_TEAM_ID, e->team_id);	/* 1.1: a 1.0 ledger has no team_id */

	for (int i = 0; i < LW_SET; i++)
	{
		int			k = r->attnums[i] - 1;

		if (k < 0)
			continue;			/* an optional column the table lacks */
		values[k] = v[i];
		nulls[k] = n[i];
		set[k] = true;
	}
	write_insert(rel, values, nulls, set);
	e->entry_id = DatumGetInt64(values[r->attnums[LW_ENTRY_ID] - 1]);
	table_close(rel, NoLock);
}
