/*
 * ledger.c
 *	  Appending to credits.ledger, and request_id idempotency.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/hashfn.h"
#include "executor/executor.h"
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

/*
 * The ledger's columns an entry sets (its id and created_at first); the
 * others (topup_change, grant_id, note) are NULL in every entry appended
 * here.  The index only gives the reader its table.
 */
static RowReader ledger_writer = ROW_READER("ledger", "ledger_request_idx",
											"entry_id", "created_at", "org_id", "kind",
											"period_start", "user_id", "model", "input_tokens",
											"output_tokens", "cost", "charged", "shortfall",
											"from_allowance", "from_topup", "reserved_change",
											"available_after", "request_id", "hold_id");

/* the ledger's identity sequence, and the ledger it belongs to */
static Oid	entry_id_seq = InvalidOid;
static Oid	entry_id_seq_of = InvalidOid;

static void
set_text(Datum *values, bool *nulls, int i, const char *s)
{
	nulls[i] = s == NULL;
	values[i] = s == NULL ? (Datum) 0 : CStringGetTextDatum(s);
}

/*
 * Append an entry to the ledger in place of an INSERT statement, and set
 * its entry_id.  The row goes through PostgreSQL's own insert of logical
 * replication (ExecSimpleRelationInsert): NOT NULL constraints, every index
 * with its predicate and uniqueness (23505 for a request_id used twice),
 * row triggers; entry_id comes from the identity sequence and created_at
 * is now(), the columns' defaults.  Zero amounts of the rarely used columns
 * are stored as NULL, which costs no space.  No privileges or row security
 * are involved: the caller is the API.
 */
void
ledger_append(LedgerEntry *e)
{
	RowReader  *r = &ledger_writer;
	Relation	rel = reader_open(r, RowExclusiveLock, NULL);
	TupleDesc	desc = RelationGetDescr(rel);
	EState	   *estate = CreateExecutorState();
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	TupleTableSlot *slot;
	Datum		v[READER_MAX_COLS];
	bool		n[READER_MAX_COLS] = {false};

	if (entry_id_seq_of != RelationGetRelid(rel))
	{
		entry_id_seq = getIdentitySequence(RelationGetRelid(rel), r->attnums[0], false);
		entry_id_seq_of = RelationGetRelid(rel);
	}
	e->entry_id = nextval_internal(entry_id_seq, false);

	v[0] = Int64GetDatum(e->entry_id);
	v[1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	set_text(v, n, 2, e->org_id);
	set_text(v, n, 3, e->kind);
	v[4] = TimestampTzGetDatum(e->period_start);
	set_text(v, n, 5, e->user_id);
	set_text(v, n, 6, e->model);
	v[7] = Int64GetDatum(e->input_tokens);
	n[7] = e->input_tokens < 0;
	v[8] = Int64GetDatum(e->output_tokens);
	n[8] = e->output_tokens < 0;
	v[9] = CreditGetDatum(e->cost);
	v[10] = CreditGetDatum(e->charged);
	v[11] = CreditGetDatum(e->shortfall);
	v[12] = CreditGetDatum(e->from_allowance);
	v[13] = CreditGetDatum(e->from_topup);
	v[14] = CreditGetDatum(e->reserved_change);
	n[14] = e->reserved_change == 0;
	v[15] = CreditGetDatum(e->available_after);
	set_text(v, n, 16, e->request_id);
	v[17] = Int64GetDatum(e->hold_id);
	n[17] = e->hold_id == 0;

	/* an executor state for one row, as the logical replication worker's */
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(estate, list_make1(rte));
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(rri, false);

	slot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);
	for (int i = 0; i < r->ncols; i++)
	{
		slot->tts_values[r->attnums[i] - 1] = v[i];
		slot->tts_isnull[r->attnums[i] - 1] = n[i];
	}
	ExecStoreVirtualTuple(slot);
	ExecSimpleRelationInsert(rri, estate, slot);

	ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	CommandCounterIncrement();
}
