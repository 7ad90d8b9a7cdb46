/*
 * reader.c
 *	  Direct index lookups: the rows of a credits table whose leading key
 *	  columns equal some text keys, read with the statement's snapshot, and
 *	  locked or updated as SELECT ... FOR UPDATE or UPDATE would (updates
 *	  go through the executor's own row update, write.c).  No plan and no
 *	  SQL privileges involved (the callers check the tenant themselves, or
 *	  that the caller could read the table unfiltered: reader_unfiltered):
 *	  the read path before every AI request, the charges of the pools and
 *	  the configuration cache use them instead of queries.  Relation locks
 *	  are kept until the transaction ends, as the executor keeps them.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "credits.h"

struct RowScan
{
	RowReader  *reader;
	Relation	rel;
	Relation	idx;
	SysScanDesc scan;
	ItemPointerData tid;		/* of the row reader_next() returned last */
	Snapshot	registered;		/* a snapshot of the scan's own, or NULL */
};

/* every reader initialized in this backend, for the invalidation callback */
static RowReader *readers[32];
static int	nreaders = 0;
static bool callback_registered = false;

/* A table or index was changed or dropped: look the OIDs up again. */
static void
readers_invalidate(Datum arg, Oid relid)
{
	for (int i = 0; i < nreaders; i++)
	{
		if (relid == InvalidOid || relid == readers[i]->relid || relid == readers[i]->indexid)
			readers[i]->relid = readers[i]->indexid = InvalidOid;
	}
}

static void
reader_init(RowReader *r)
{
	Oid			nsp = get_namespace_oid("credits", false);
	Oid			relid = get_relname_relid(r->table, nsp);
	Oid			indexid = get_relname_relid(r->index, nsp);
	bool		known = false;

	if (!OidIsValid(relid) || !OidIsValid(indexid))
		elog(ERROR, "credits.%s is missing", r->table);
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(readers_invalidate, (Datum) 0);
		callback_registered = true;
	}
	for (int i = 0; i < nreaders; i++)
		known |= readers[i] == r;
	if (!known)
	{
		if (nreaders >= lengthof(readers))
			elog(ERROR, "too many credits readers");
		readers[nreaders++] = r;
	}
	r->attnums_valid = false;
	r->relid = relid;
	r->indexid = indexid;
}

/* The attribute number of the column named name in desc, or InvalidAttrNumber. */
AttrNumber
column_of(TupleDesc desc, const char *name)
{
	for (int k = 0; k < desc->natts; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, k);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	return InvalidAttrNumber;
}

/*
 * Find the reader's columns in its table, open and locked, by name in the
 * relation's descriptor (which opening it built), not by a catalog lookup
 * per column: a new connection's first call opens every table anyway.
 */
static void
reader_find_columns(RowReader *r, Relation rel)
{
	for (int i = 0; i < r->ncols; i++)
	{
		bool		optional = r->cols[i][0] == '?';
		const char *name = r->cols[i] + (optional ? 1 : 0);

		r->attnums[i] = column_of(RelationGetDescr(rel), name);
		if (r->attnums[i] == InvalidAttrNumber && !optional)
			elog(ERROR, "column %s of credits.%s is missing", name, r->table);
	}
	r->attnums_valid = true;
}

/*
 * Would a query of the current user read every row of r's table, as a
 * reader does: it has the SELECT privilege on the table, and no row-level
 * security applies to it?  Code that reads on behalf of its caller (with
 * the caller's privileges) reads directly only then, and runs the query
 * otherwise, which checks the privileges and applies the policies.
 */
bool
reader_unfiltered(RowReader *r)
{
	if (!OidIsValid(r->relid))
		reader_init(r);
	return pg_class_aclcheck(r->relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK &&
		check_enable_rls(r->relid, InvalidOid, true) != RLS_ENABLED;
}

/*
 * Does r's table have its column i?  A column named "?name" is optional: a
 * database still at 1.0 (the library is updated first) lacks the 1.1
 * columns; it reads as NULL there and is not written.  When the column is
 * missing, *value and *isnull are set to NULL.
 */
bool
reader_has(const RowReader *r, int i, Datum *value, bool *isnull)
{
	if (r->attnums[i] != InvalidAttrNumber)
		return true;
	*value = (Datum) 0;
	*isnull = true;
	return false;
}

/*
 * Open r's table and, with idx, its index.  Taking the locks processes
 * invalidations, which may reset r: it is looked up again then, and what
 * was opened must still be what r names.  An index rebuilt by REINDEX
 * CONCURRENTLY has a new OID under the same name (the old one is dropped
 * once no transaction uses the table): the new one is opened then.
 */
Relation
reader_open(RowReader *r, LOCKMODE lockmode, Relation *idx)
{
	for (int attempt = 0;; attempt++)
	{
		Oid			relid;
		Oid			indexid;
		Relation	rel;
		Relation	index = NULL;

		if (!OidIsValid(r->relid))
			reader_init(r);
		relid = r->relid;
		indexid = r->indexid;
		rel = table_open(relid, lockmode);
		if (idx != NULL)
			index = try_relation_open(indexid, lockmode);
		if (!OidIsValid(r->relid) || (idx != NULL && index == NULL))
		{
			reader_init(r);
			if (r->relid != relid || r->indexid != indexid)
			{
				if (r->relid != relid || attempt >= 100)
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("credits.%s was replaced concurrently", r->table),
							 errhint("Retry the call.")));
				/* its index was rebuilt: open the new one */
				if (index != NULL)
					relation_close(index, NoLock);
				table_close(rel, NoLock);
				continue;
			}
			if (idx != NULL && index == NULL)
				elog(ERROR, "index %s of credits.%s is missing", r->index, r->table);
		}
		if (!r->attnums_valid)
			reader_find_columns(r, rel);
		if (idx != NULL)
			*idx = index;
		return rel;
	}
}

/* Key column attno of idx equals the text key. */
static void
text_key(ScanKey skey, Relation idx, int attno, const char *key)
{
	ScanKeyEntryInitialize(skey, 0, attno, BTEqualStrategyNumber, InvalidOid,
						   idx->rd_indcollation[attno - 1], F_TEXTEQ,
						   CStringGetTextDatum(key));
}

/*
 * Start reading the rows whose first nkeys key columns equal keys: text
 * keys, but for a second key that is an integer (number, when keys[1] is
 * NULL).
 */
static RowScan *
begin_scan(RowReader *r, int nkeys, const char **keys, int32 number, Snapshot snapshot)
{
	RowScan    *s = palloc(sizeof(RowScan));
	ScanKeyData skeys[2];

	Assert(nkeys >= 0 && nkeys <= lengthof(skeys));
	s->reader = r;
	/* every row: a heap scan, without opening the index */
	s->idx = NULL;
	s->rel = reader_open(r, AccessShareLock, nkeys > 0 ? &s->idx : NULL);
	s->registered = NULL;
	if (snapshot == READER_LATEST)
	{
		/*
		 * Taken after the table's lock, whose acquisition processed the
		 * invalidations sent so far: everything committed whose
		 * invalidation was seen is seen here too, and what commits later
		 * sends an invalidation that is still to come.
		 */
		s->registered = RegisterSnapshot(GetLatestSnapshot());
		snapshot = s->registered;
	}

	for (int i = 0; i < nkeys; i++)
	{
		if (keys[i] != NULL)
			text_key(&skeys[i], s->idx, i + 1, keys[i]);
		else if (TupleDescAttr(RelationGetDescr(s->idx), i)->atttypid == INT4OID)
			ScanKeyEntryInitialize(&skeys[i], 0, i + 1, BTEqualStrategyNumber, InvalidOid,
								   InvalidOid, F_INT4EQ, Int32GetDatum(number));
		else
			elog(ERROR, "key %d of %s is not an integer", i + 1, r->index);
	}
	if (snapshot == NULL)
		snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();
	s->scan = systable_beginscan(s->rel, s->idx ? RelationGetRelid(s->idx) : InvalidOid,
								 s->idx != NULL, snapshot, nkeys, skeys);
	return s;
}

/*
 * Start reading the rows whose first nkeys key columns equal keys (none:
 * every row, in no particular order), with snapshot: NULL for the active one,
 * READER_LATEST for one taken after locking the table (what a cache of the
 * table must be loaded with).
 */
RowScan *
reader_begin(RowReader *r, int nkeys, const char **keys, Snapshot snapshot)
{
	return begin_scan(r, nkeys, keys, 0, snapshot);
}

/* Where the one row is that a scan (begun with the active snapshot) finds. */
static bool
scan_one(RowScan *s, ItemPointer tid)
{
	bool		found = reader_next(s, NULL, NULL);

	if (found)
		*tid = s->tid;
	reader_end(s);
	return found;
}

/*
 * Where the one row whose key is (key, number) is, with the active snapshot,
 * for an index on a text and an integer column.
 */
bool
reader_find_numbered(RowReader *r, const char *key, int32 number, ItemPointer tid)
{
	const char *keys[2] = {key, NULL};

	return scan_one(begin_scan(r, 2, keys, number, GetActiveSnapshot()), tid);
}

/*
 * The next row's columns (the reader's cols) into values/nulls, copied into
 * the current memory context (values NULL: its place only, reader_tid());
 * false when there is none.
 */
bool
reader_next(RowScan *s, Datum *values, bool *nulls)
{
	RowReader  *r = s->reader;
	TupleDesc	desc = RelationGetDescr(s->rel);
	HeapTuple	tuple = systable_getnext(s->scan);

	if (!HeapTupleIsValid(tuple))
		return false;
	s->tid = tuple->t_self;
	for (int i = 0; values != NULL && i < r->ncols; i++)
	{
		Form_pg_attribute att;

		if (!reader_has(r, i, &values[i], &nulls[i]))
			continue;
		att = TupleDescAttr(desc, r->attnums[i] - 1);
		values[i] = heap_getattr(tuple, r->attnums[i], desc, &nulls[i]);
		if (!nulls[i] && !att->attbyval)
			values[i] = datumCopy(values[i], false, att->attlen);
	}
	return true;
}

/* Where the row reader_next() returned last is (for reader_update). */
ItemPointer
reader_tid(RowScan *s)
{
	return &s->tid;
}

void
reader_end(RowScan *s)
{
	systable_endscan(s->scan);
	if (s->registered != NULL)
		UnregisterSnapshot(s->registered);
	/*
	 * The locks are kept until the transaction ends, as the executor keeps
	 * them: a row's place found here stays that row's while it is locked or
	 * updated later (VACUUM FULL or CLUSTER wait for the transaction).
	 */
	if (s->idx != NULL)
		index_close(s->idx, NoLock);
	table_close(s->rel, NoLock);
	pfree(s);
}

/*
 * The one row whose key is keys, with snapshot (NULL: the statement's; see
 * reader_begin).
 */
bool
reader_get(RowReader *r, int nkeys, const char **keys, Snapshot snapshot, Datum *values,
		   bool *nulls)
{
	RowScan    *s = reader_begin(r, nkeys, keys, snapshot);
	bool		found = reader_next(s, values, nulls);

	reader_end(s);
	return found;
}

/*
 * Lock the version of the row at tid that an UPDATE would change, in mode:
 * in READ COMMITTED the latest one, waiting for a concurrent writer and
 * following its update; under REPEATABLE READ or SERIALIZABLE a concurrent
 * update or delete is 40001, as for UPDATE.  The lock is tried without
 * waiting first: *waited tells whether another transaction held the row.
 * The version is left in slot.
 */
static TM_Result
lock_version(Relation rel, ItemPointer tid, TupleTableSlot *slot, LockTupleMode mode,
			 bool *waited)
{
	TM_FailureData tmfd;
	TM_Result	result;

	*waited = false;
	for (LockWaitPolicy wait = LockWaitSkip;; wait = LockWaitBlock)
	{
		result = table_tuple_lock(rel, tid, GetActiveSnapshot(), slot,
								  GetCurrentCommandId(false), mode, wait,
								  IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
								  &tmfd);
		if (result != TM_WouldBlock)
			break;
		*waited = true;
	}
	if (result == TM_Updated && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
	if (result == TM_Deleted && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent delete")));
	return result;
}

/* The reader's columns of the row in slot, copied into the current context. */
static void
slot_columns(RowReader *r, TupleTableSlot *slot, Datum *values, bool *nulls, bool copy)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;

	slot_getallattrs(slot);
	for (int i = 0; i < r->ncols; i++)
	{
		Form_pg_attribute att;

		if (!reader_has(r, i, &values[i], &nulls[i]))
			continue;
		att = TupleDescAttr(desc, r->attnums[i] - 1);
		values[i] = slot->tts_values[r->attnums[i] - 1];
		nulls[i] = slot->tts_isnull[r->attnums[i] - 1];
		if (copy && !nulls[i] && !att->attbyval)
			values[i] = datumCopy(values[i], false, att->attlen);
	}
}

/*
 * Does the row in slot still have the key the caller looked it up by (the
 * first nkeys columns of r's index equal keys; an integer second key,
 * number, when keys[1] is NULL)?  A row's place names another row once the
 * row is gone and its place reused.
 */
static bool
has_key(RowReader *r, Relation idx, TupleTableSlot *slot, int nkeys, const char **keys,
		int32 number)
{
	for (int i = 0; i < nkeys; i++)
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, idx->rd_index->indkey.values[i], &isnull);

		if (isnull)
			return false;
		if (keys[i] != NULL ? strcmp(TextDatumGetCString(d), keys[i]) != 0
			: DatumGetInt32(d) != number)
			return false;
	}
	return true;
}

/*
 * Give the reader's columns of the row version in slot to update(), and
 * when it returns true, set all/allnulls/allreplace (one per column of the
 * table) to what it wrote in the columns it marked.
 */
static bool
apply_update(RowReader *r, TupleTableSlot *slot, ReaderUpdate update, void *arg,
			 Datum *all, bool *allnulls, bool *allreplace)
{
	Datum		values[READER_MAX_COLS];
	bool		nulls[READER_MAX_COLS];
	bool		replace[READER_MAX_COLS] = {false};

	slot_columns(r, slot, values, nulls, false);
	if (!update(values, nulls, replace, arg))
		return false;
	memset(allreplace, 0, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (int i = 0; i < r->ncols; i++)
	{
		int			k = r->attnums[i] - 1;

		if (k < 0)
			continue;			/* an optional column the table lacks */
		all[k] = values[i];
		allnulls[k] = nulls[i];
		allreplace[k] = replace[i];
	}
	return true;
}

/*
 * Update one row in place of an UPDATE statement: lock the version of the
 * row at tid that UPDATE would change (lock_version), make sure it still has
 * its key (nkeys, keys, number as for reader_find_numbered), give its
 * columns (the reader's) to update(), and, when that returns true, write the
 * columns it marked in replace[] through the executor's update
 * (write_update: indexes, constraints, triggers).  Returns whether the row
 * was updated, and in *waited whether another transaction held the row.
 * The row lock is kept either way, until the (sub)transaction ends, and so
 * are the relation locks.
 */
bool
reader_update(RowReader *r, int nkeys, const char **keys, int32 number, ItemPointer tid,
			  ReaderUpdate update, void *arg, bool *waited)
{
	Relation	idx;
	Relation	rel;
	TupleDesc	desc;
	TupleTableSlot *slot;
	bool		updated = false;

	rel = reader_open(r, RowExclusiveLock, &idx);
	desc = RelationGetDescr(rel);
	slot = table_slot_create(rel, NULL);

	if (lock_version(rel, tid, slot, LockTupleNoKeyExclusive, waited) == TM_Ok &&
		has_key(r, idx, slot, nkeys, keys, number))
	{
		Datum	   *all = palloc0(sizeof(Datum) * desc->natts);
		bool	   *allnulls = palloc0(sizeof(bool) * desc->natts);
		bool	   *allreplace = palloc0(sizeof(bool) * desc->natts);

		if (apply_update(r, slot, update, arg, all, allnulls, allreplace))
		{
			write_update(rel, slot, all, allnulls, allreplace);
			updated = true;
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	/* like the executor, keep the locks until the transaction ends */
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return updated;
}

/*
 * Push a snapshot of our own, as a query of a volatile function would take:
 * it sees everything this transaction wrote so far (an earlier statement of
 * the same call included), and in READ COMMITTED what is committed now.
 * The caller pops it (PopActiveSnapshot).
 */
void
reader_push_snapshot(void)
{
	CommandCounterIncrement();	/* a no-op unless something was written */
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
}

/* Where the one row whose key is keys is, with the active snapshot. */
static bool
find_row(RowReader *r, int nkeys, const char **keys, ItemPointer tid)
{
	return scan_one(reader_begin(r, nkeys, keys, GetActiveSnapshot()), tid);
}

/*
 * Update the row version in slot, which the active snapshot sees and which
 * the caller found with it but did not lock (the snapshot still active, so
 * that the version is not pruned away), as an UPDATE's first try does
 * (write_update_row without a lock; *waited: whether another transaction
 * had the row).  Returns TM_Ok once it is written; else nothing was, and the
 * result says why (TM_Updated, TM_Deleted or TM_SelfModified: the version is
 * no longer the latest; TM_WouldBlock: BEFORE ROW UPDATE triggers, which
 * need a locked row; TM_Invisible: update() declined).  Then, with relock,
 * the latest version is locked, re-checked and updated in the same
 * statement, as UPDATE's EvalPlanQual recheck does in READ COMMITTED (under
 * REPEATABLE READ that is 40001, lock_version), and TM_Ok returned if it
 * was; without, the caller takes the row's lock itself, and the statement
 * triggers have fired as for an UPDATE that found no row to change.
 * update() may so be called twice; what it computes must depend only on the
 * columns it is given.
 */
static TM_Result
update_version(RowReader *r, Relation rel, Relation idx, TupleTableSlot *slot, int nkeys,
			   const char **keys, ReaderUpdate update, void *arg, bool relock, bool *waited)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *all = palloc0(sizeof(Datum) * desc->natts);
	bool	   *allnulls = palloc0(sizeof(bool) * desc->natts);
	bool	   *allreplace = palloc0(sizeof(bool) * desc->natts);
	ItemPointerData tid = slot->tts_tid;
	TableWrite *w;
	TM_Result	result;

	if (!apply_update(r, slot, update, arg, all, allnulls, allreplace))
		return TM_Invisible;
	w = write_update_begin(rel, allreplace);
	result = write_update_row(w, slot, all, allnulls, allreplace, false, waited);
	if (result != TM_Ok && relock)
	{
		bool		relock_waited;

		if (lock_version(rel, &tid, slot, LockTupleNoKeyExclusive, &relock_waited) == TM_Ok &&
			has_key(r, idx, slot, nkeys, keys, 0) &&
			apply_update(r, slot, update, arg, all, allnulls, allreplace))
		{
			(void) write_update_row(w, slot, all, allnulls, allreplace, true, NULL);
			result = TM_Ok;
		}
		*waited |= relock_waited;
	}
	write_update_end(w);
	return result;
}

/*
 * Fetch into slot the version of the one row whose key is keys (text keys,
 * the first nkeys columns of idx) that the active snapshot sees, as an
 * UPDATE's index scan finds it; false when there is none.
 */
static bool
fetch_by_key(Relation rel, Relation idx, int nkeys, const char **keys, TupleTableSlot *slot)
{
	ScanKeyData skeys[2];
	IndexScanDesc scan;
	bool		found;

	Assert(nkeys > 0 && nkeys <= lengthof(skeys));
	for (int i = 0; i < nkeys; i++)
		text_key(&skeys[i], idx, i + 1, keys[i]);
	scan = index_beginscan(rel, idx, GetActiveSnapshot(), nkeys, 0);
	index_rescan(scan, skeys, nkeys, NULL, 0);
	/* the slot keeps its own pin of the version's page */
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	return found;
}

/*
 * Update the one row whose key is keys as an UPDATE statement run with the
 * active snapshot would: one index scan finds the version the snapshot
 * sees, in the table opened for writing, and that version is updated
 * without locking it first; only when another transaction changed it since
 * (or the table has BEFORE ROW UPDATE triggers) is the latest version
 * locked and updated instead (update_version).  False when there is no such
 * row (or update() declined); *waited tells whether another transaction had
 * the row.
 */
bool
reader_update_in_snapshot(RowReader *r, int nkeys, const char **keys, ReaderUpdate update,
						  void *arg, bool *waited)
{
	Relation	idx;
	Relation	rel = reader_open(r, RowExclusiveLock, &idx);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		updated = false;

	*waited = false;
	if (fetch_by_key(rel, idx, nkeys, keys, slot))
		updated = update_version(r, rel, idx, slot, nkeys, keys, update, arg, true,
								 waited) == TM_Ok;
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
	return updated;
}

/* A row version found by reader_find(), in its table opened for writing. */
struct RowVersion
{
	Relation	rel;
	Relation	idx;
	TupleTableSlot *slot;
};

/*
 * Find the one row whose key is keys as an UPDATE run with the active
 * snapshot finds the row it changes: in its table opened for writing, by
 * one index scan, without a lock.  Reads the reader's columns of the
 * version into values/nulls (copied into the current memory context) and
 * returns the version, for reader_update_version(); NULL when there is
 * none.  The caller releases it (reader_release()) and keeps the snapshot
 * active until then, so that the version is not pruned away.
 */
RowVersion *
reader_find(RowReader *r, int nkeys, const char **keys, Datum *values, bool *nulls)
{
	RowVersion *v = palloc(sizeof(RowVersion));

	v->rel = reader_open(r, RowExclusiveLock, &v->idx);
	v->slot = table_slot_create(v->rel, NULL);
	if (!fetch_by_key(v->rel, v->idx, nkeys, keys, v->slot))
	{
		reader_release(v);
		return NULL;
	}
	slot_columns(r, v->slot, values, nulls, true);
	return v;
}

/*
 * Update the version reader_find() found, as update_version() does without
 * relocking (r: the columns update() is given, of the same table): TM_Ok
 * once written, else why not, with nothing written, for the caller to take
 * the row's lock.
 */
TM_Result
reader_update_version(RowVersion *v, RowReader *r, int nkeys, const char **keys,
					  ReaderUpdate update, void *arg, bool *waited)
{
	*waited = false;
	/* r's columns found in the table: its lock is held already */
	if (!OidIsValid(r->relid) || !r->attnums_valid)
		table_close(reader_open(r, RowExclusiveLock, NULL), NoLock);
	Assert(r->relid == RelationGetRelid(v->rel));
	return update_version(r, v->rel, v->idx, v->slot, nkeys, keys, update, arg, false, waited);
}

void
reader_release(RowVersion *v)
{
	ExecDropSingleTupleTableSlot(v->slot);
	/* like the executor, keep the locks until the transaction ends */
	index_close(v->idx, NoLock);
	table_close(v->rel, NoLock);
	pfree(v);
}

/*
 * Update the one row whose key is keys as an UPDATE statement run now
 * would, with a fresh snapshot (reader_update_in_snapshot).  The snapshot
 * stays active until the row is written.
 */
bool
reader_update_key(RowReader *r, int nkeys, const char **keys, ReaderUpdate update, void *arg,
				  bool *waited)
{
	bool		updated;

	reader_push_snapshot();
	updated = reader_update_in_snapshot(r, nkeys, keys, update, arg, waited);
	PopActiveSnapshot();
	return updated;
}

/*
 * Lock the one row whose key is keys in place of SELECT ... FOR UPDATE (mode
 * LockTupleExclusive) or FOR NO KEY UPDATE run now, and read its columns
 * (the reader's) into values/nulls, as locked.  Returns false when there is
 * no such row (or it was deleted concurrently); *waited tells whether
 * another transaction held it, and in *locked_tid (unless NULL) where the
 * locked version is, for reader_update().  The lock is kept until the
 * (sub)transaction ends.
 */
bool
reader_lock(RowReader *r, int nkeys, const char **keys, LockTupleMode mode,
			Datum *values, bool *nulls, bool *waited, ItemPointer locked_tid)
{
	ItemPointerData tid;
	bool		locked = false;

	*waited = false;
	reader_push_snapshot();
	if (find_row(r, nkeys, keys, &tid))
	{
		Relation	idx;
		Relation	rel = reader_open(r, RowShareLock, &idx);
		TupleTableSlot *slot = table_slot_create(rel, NULL);

		/*
		 * A share lock needs no sleep while only other share locks are held,
		 * so a stream of them would starve a writer waiting for the row.  A
		 * waiting writer holds the row's tuple lock (the lock manager's, as
		 * heap_lock_tuple and heap_update take it before they sleep): queue
		 * for it first, behind the writer.
		 */
		ItemPointerData queued = tid;	/* lock_version moves tid along */

		if (mode == LockTupleShare)
			LockTuple(rel, &queued, ShareLock);
		locked = lock_version(rel, &tid, slot, mode, waited) == TM_Ok &&
			has_key(r, idx, slot, nkeys, keys, 0);
		if (mode == LockTupleShare)
			UnlockTuple(rel, &queued, ShareLock);
		if (locked)
		{
			slot_columns(r, slot, values, nulls, true);
			if (locked_tid != NULL)
				*locked_tid = slot->tts_tid;
		}
		ExecDropSingleTupleTableSlot(slot);
		index_close(idx, NoLock);
		table_close(rel, NoLock);
	}
	PopActiveSnapshot();
	return locked;
}
