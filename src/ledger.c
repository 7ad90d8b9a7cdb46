/*
 * ledger.c
 *	  Appending to credits.ledger, and request_id idempotency.
 */
#include "postgres.h"

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

#define LEDGER_COLUMNS \
	"entry_id, kind, period_start, user_id, model, input_tokens, output_tokens," \
	" cost, charged, shortfall, from_allowance, from_topup, reserved_change," \
	" available_after, hold_id"

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
	e->entry_id = DatumGetInt64(spi_value(0, 1, &isnull));
	e->kind = spi_string(0, 2);
	e->period_start = DatumGetTimestampTz(spi_value(0, 3, &isnull));
	e->user_id = spi_string(0, 4);
	e->model = spi_string(0, 5);
	d = spi_value(0, 6, &isnull);
	e->input_tokens = isnull ? -1 : DatumGetInt64(d);
	d = spi_value(0, 7, &isnull);
	e->output_tokens = isnull ? -1 : DatumGetInt64(d);
	e->cost = DatumGetCredit(spi_value(0, 8, &isnull));
	e->charged = DatumGetCredit(spi_value(0, 9, &isnull));
	e->shortfall = DatumGetCredit(spi_value(0, 10, &isnull));
	e->from_allowance = DatumGetCredit(spi_value(0, 11, &isnull));
	e->from_topup = DatumGetCredit(spi_value(0, 12, &isnull));
	d = spi_value(0, 13, &isnull);
	e->reserved_change = isnull ? 0 : DatumGetCredit(d);
	e->available_after = DatumGetCredit(spi_value(0, 14, &isnull));
	d = spi_value(0, 15, &isnull);
	e->hold_id = isnull ? 0 : DatumGetInt64(d);
	e->request_id = request_id;
	return true;
}

static Datum
text_or_null(const char *s, char *null)
{
	*null = (s == NULL) ? 'n' : ' ';
	return s == NULL ? (Datum) 0 : CStringGetTextDatum(s);
}

/*
 * The parameters $1 .. $16 of LEDGER_INSERT (credits.h) for an entry.  Zero
 * amounts of the rarely used columns are stored as NULL, which costs no space.
 */
void
ledger_params(const LedgerEntry *e, Datum *args, char *nulls, Oid *types)
{
	static const Oid argtypes[LEDGER_NPARAMS] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID,
		TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
	INT8OID, TEXTOID, INT8OID};

	if (types != NULL)
	{
		memcpy(types, argtypes, sizeof(argtypes));
		return;
	}
	memset(nulls, ' ', LEDGER_NPARAMS);
	args[0] = CStringGetTextDatum(e->org_id);
	args[1] = CStringGetTextDatum(e->kind);
	args[2] = TimestampTzGetDatum(e->period_start);
	args[3] = text_or_null(e->user_id, &nulls[3]);
	args[4] = text_or_null(e->model, &nulls[4]);
	args[5] = Int64GetDatum(e->input_tokens);
	nulls[5] = e->input_tokens < 0 ? 'n' : ' ';
	args[6] = Int64GetDatum(e->output_tokens);
	nulls[6] = e->output_tokens < 0 ? 'n' : ' ';
	args[7] = Int64GetDatum(e->cost);
	args[8] = Int64GetDatum(e->charged);
	args[9] = Int64GetDatum(e->shortfall);
	args[10] = Int64GetDatum(e->from_allowance);
	args[11] = Int64GetDatum(e->from_topup);
	args[12] = Int64GetDatum(e->reserved_change);
	nulls[12] = e->reserved_change == 0 ? 'n' : ' ';
	args[13] = Int64GetDatum(e->available_after);
	args[14] = text_or_null(e->request_id, &nulls[14]);
	args[15] = Int64GetDatum(e->hold_id);
	nulls[15] = e->hold_id == 0 ? 'n' : ' ';
}
