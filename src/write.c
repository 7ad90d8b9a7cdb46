/*
 * write.c
 *	  Inserting and updating rows of the extension's tables with the
 *	  semantics of INSERT and UPDATE statements, without planning one.
 *
 * The charge paths write one row at a time, so they do not run a statement
 * for it: they build the executor state PostgreSQL's logical replication
 * apply worker builds for each replicated row (worker.c,
 * create_edata_for_relation) and write through the same entry points,
 * ExecSimpleRelationInsert and ExecSimpleRelationUpdate.  Those keep every
 * rule a statement keeps:
 *
 *	- every index is maintained as ExecInsertIndexTuples does it: partial and
 *	  expression indexes, uniqueness (23505), and an index that
 *	  CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY is still building is
 *	  written only once it is ready for inserts;
 *	- NOT NULL and CHECK constraints (23502, 23514), stored generated
 *	  columns, and, for an insert, each column's default (the identity's
 *	  next value included) for every column the caller does not set, so a
 *	  column a DBA adds with a DEFAULT gets it;
 *	- BEFORE and AFTER row triggers, and statement triggers around the one
 *	  row (the AFTER ones fire when the write ends, as at the end of a
 *	  statement); per-column UPDATE OF triggers see the columns written.
 *
 * What they do not do is what the API does itself: privileges and row
 * security (the callers are the extension's functions, which check the
 * tenant), and rows for transition tables of statement triggers
 * (REFERENCING ... TABLE), which PostgreSQL fills only for a statement.
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/readfuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_relation.h"
#include "rewrite/rewriteHandler.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "credits.h"

/*
 * A table's CHECK constraints and the default expressions of its columns,
 * planned once per backend and dropped when the table changes (a relcache
 * invalidation: ALTER TABLE ... ADD COLUMN, SET DEFAULT, ADD CONSTRAINT,
 * ...).  The checks are planned for every write; a column's default only
 * when an insert first leaves that column out (a new connection's first
 * charge plans the two defaults it uses, not those of every column of the
 * tables it writes).  A slot's relid is set only once its checks are
 * complete, so an invalidation processed while they are built (a catalog
 * lookup takes locks) leaves it alone, and a default is planned outside the
 * slot and stored only if the slot is still there; nothing that would change
 * them can commit while the caller holds its lock on the table.
 */
typedef struct TableDefaults
{
	Oid			relid;			/* InvalidOid: free slot */
	MemoryContext cxt;
	int			natts;			/* the columns of defaults[] ... */
	bool	   *known;			/* ... whose default was looked up ... */
	Expr	  **defaults;		/* ... and what it is (NULL: none), by attnum - 1 */
	int			nchecks;		/* the CHECK constraints, in the relcache's order */
	Expr	  **checks;
} TableDefaults;

static TableDefaults tables[8];
static bool callback_registered = false;

static void
tables_invalidate(Datum arg, Oid relid)
{
	for (int i = 0; i < lengthof(tables); i++)
	{
		if (OidIsValid(tables[i].relid) &&
			(relid == InvalidOid || relid == tables[i].relid))
		{
			MemoryContextDelete(tables[i].cxt);
			memset(&tables[i], 0, sizeof(TableDefaults));
		}
	}
}

/* rel's complete slot, or NULL */
static TableDefaults *
find_table(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < lengthof(tables); i++)
	{
		/* the constraints ExecRelCheck() will index, as it counts them */
		if (tables[i].relid == RelationGetRelid(rel) &&
			tables[i].natts == desc->natts &&
			tables[i].nchecks == (desc->constr ? desc->constr->num_check : 0))
			return &tables[i];
	}
	return NULL;
}

/* rel's slot (rel open and locked), its checks planned */
static TableDefaults *
table_defaults(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TableDefaults *d = find_table(rel);
	MemoryContext old;

	if (d != NULL)
		return d;
	for (int i = 0; i < lengthof(tables); i++)
	{
		/* one whose table changed without an invalidation seen yet */
		if (tables[i].relid == RelationGetRelid(rel))
			tables_invalidate((Datum) 0, tables[i].relid);
		if (d == NULL && !OidIsValid(tables[i].relid))
			d = &tables[i];
	}
	if (d == NULL)
		elog(ERROR, "too many credits tables written");
	if (d->cxt != NULL)
		MemoryContextDelete(d->cxt);	/* left by a build that failed */
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(tables_invalidate, (Datum) 0);
		callback_registered = true;
	}

	d->cxt = AllocSetContextCreate(TopMemoryContext, "credits column defaults",
								   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(d->cxt);
	d->natts = desc->natts;
	d->known = palloc0(sizeof(bool) * desc->natts);
	d->defaults = palloc0(sizeof(Expr *) * desc->natts);
	/* planned as ExecRelCheck() plans them (ExecPrepareExpr) */
	d->nchecks = desc->constr ? desc->constr->num_check : 0;
	d->checks = palloc(sizeof(Expr *) * Max(d->nchecks, 1));
	for (int i = 0; i < d->nchecks; i++)
		d->checks[i] = expression_planner(stringToNode(desc->constr->check[i].ccbin));
	MemoryContextSwitchTo(old);
	d->relid = RelationGetRelid(rel);
	return d;
}

/*
 * The planned default of rel's column attnum (NULL: none), in the current
 * memory context: a copy of the cached one, or planned here and cached.
 */
static Expr *
column_default(Relation rel, AttrNumber attnum)
{
	TableDefaults *d = table_defaults(rel);
	Expr	   *expr;
	MemoryContext old;

	if (d->known[attnum - 1])
		return d->defaults[attnum - 1] ? copyObject(d->defaults[attnum - 1]) : NULL;

	/* planned in the caller's memory: the lookups may drop the slot */
	expr = (Expr *) build_column_default(rel, attnum);
	if (expr != NULL)
		expr = expression_planner(expr);
	d = find_table(rel);
	if (d != NULL)
	{
		old = MemoryContextSwitchTo(d->cxt);
		d->defaults[attnum - 1] = expr ? copyObject(expr) : NULL;
		d->known[attnum - 1] = true;
		MemoryContextSwitchTo(old);
	}
	return expr;
}

/*
 * A copy of n cached expressions, in the current memory context.  Taken
 * before any of them is initialized or evaluated: that can take a lock (a
 * catalog lookup, nextval() of a sequence), which processes invalidations
 * and may drop the cache they came from.
 */
static Expr **
copy_exprs(Expr **exprs, int n)
{
	Expr	  **copy = palloc(sizeof(Expr *) * Max(n, 1));

	for (int i = 0; i < n; i++)
		copy[i] = copyObject(exprs[i]);
	return copy;
}

/* An executor state for writing one row of a table, as the apply worker's. */
struct TableWrite
{
	EState	   *estate;
	ResultRelInfo *rri;
	EPQState	epqstate;
	CmdType		cmd;
};

/*
 * Begin a write (cmd: CMD_INSERT or CMD_UPDATE) of rel, which the caller
 * holds RowExclusiveLock on; cols are the columns written (attribute
 * numbers less FirstLowInvalidHeapAttributeNumber, as in a range table).
 * BEFORE STATEMENT triggers fire here.
 */
static void
write_begin(TableWrite *w, Relation rel, CmdType cmd, Bitmapset *cols)
{
	EState	   *estate = CreateExecutorState();
	MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	AclMode		perms = cmd == CMD_INSERT ? ACL_INSERT : ACL_UPDATE;

	w->estate = estate;
	w->cmd = cmd;
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
#if PG_VERSION_NUM >= 160000
	{
		List	   *perminfos = NIL;
		RTEPermissionInfo *perminfo = addRTEPermissionInfo(&perminfos, rte);

		perminfo->requiredPerms = perms;
		if (cmd == CMD_INSERT)
			perminfo->insertedCols = cols;
		else
			perminfo->updatedCols = cols;
#if PG_VERSION_NUM >= 180000
		ExecInitRangeTable(estate, list_make1(rte), perminfos, bms_make_singleton(1));
#else
		ExecInitRangeTable(estate, list_make1(rte), perminfos);
#endif
	}
#else
	rte->requiredPerms = perms;
	if (cmd == CMD_INSERT)
		rte->insertedCols = cols;
	else
		rte->updatedCols = cols;
	ExecInitRangeTable(estate, list_make1(rte));
#endif

	w->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(w->rri, rel, 1, NULL, 0);

	/*
	 * The CHECK constraints' expressions, as ExecRelCheck() would build them
	 * on the first row from the catalog's text, but planned once per
	 * backend: this state serves one row.
	 */
	{
		TableDefaults *d = table_defaults(rel);
		int			nchecks = d->nchecks;
		Expr	  **checks = copy_exprs(d->checks, nchecks);

		/* d may be gone from here on (see copy_exprs) */
		if (nchecks > 0)
		{
			w->rri->ri_ConstraintExprs = palloc(sizeof(ExprState *) * nchecks);
			for (int i = 0; i < nchecks; i++)
				w->rri->ri_ConstraintExprs[i] = ExecInitExpr(checks[i], NULL);
		}
	}
	/* so that AFTER triggers find it (ExecGetTriggerResultRel), as worker.c */
	estate->es_opened_result_relations = lappend(estate->es_opened_result_relations, w->rri);
	estate->es_output_cid = GetCurrentCommandId(true);
	estate->es_snapshot = GetActiveSnapshot();
	ExecOpenIndices(w->rri, false);
	if (cmd == CMD_UPDATE)
#if PG_VERSION_NUM >= 160000
		EvalPlanQualInit(&w->epqstate, estate, NULL, NIL, -1, NIL);
#else
		EvalPlanQualInit(&w->epqstate, estate, NULL, NIL, -1);
#endif

	AfterTriggerBeginQuery();
	if (cmd == CMD_INSERT)
		ExecBSInsertTriggers(estate, w->rri);
	else
		ExecBSUpdateTriggers(estate, w->rri);
	MemoryContextSwitchTo(old);
}

/* End a write: AFTER STATEMENT triggers, then every queued AFTER trigger. */
static void
write_end(TableWrite *w)
{
	EState	   *estate = w->estate;

	if (w->cmd == CMD_INSERT)
		ExecASInsertTriggers(estate, w->rri, NULL);
	else
		ExecASUpdateTriggers(estate, w->rri, NULL);
	AfterTriggerEndQuery(estate);
	if (w->cmd == CMD_UPDATE)
		EvalPlanQualEnd(&w->epqstate);
	ExecCloseIndices(w->rri);
	/* the relation stays open: the caller opened it and closes it */
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	/* later reads of this transaction see the row, as after a statement */
	CommandCounterIncrement();
}

/*
 * 09000 unless the row in slot was written: the executor's simple insert and
 * update leave its place unset when a BEFORE trigger skipped it, and a
 * charge whose row is not written must not happen.
 */
static void
check_written(Relation rel, TupleTableSlot *slot, const char *command)
{
	if (!ItemPointerIsValid(&slot->tts_tid))
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
				 errmsg("a BEFORE %s trigger skipped a row of credits.%s",
						command, RelationGetRelationName(rel)),
				 errdetail("Every charge must write its rows; skipping one would lose it."),
				 errhint("Make the trigger return NEW for the extension's writes.")));
}

/*
 * Insert a row into rel (open, RowExclusiveLock held) as INSERT would:
 * values/nulls are indexed by attribute number - 1 for every column of the
 * table, and the columns not marked in set[] get their defaults.  On return
 * values/nulls hold the row as inserted (an identity or default included).
 * A BEFORE trigger that skips the row is an error (09000): a charge whose
 * ledger entry is not written must not happen.
 */
void
write_insert(Relation rel, Datum *values, bool *nulls, const bool *set)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TableWrite	w;
	TupleTableSlot *slot;
	ExprContext *econtext;
	Bitmapset  *cols = NULL;
	MemoryContext old;
	ExprState **exprs;

	for (int i = 0; i < desc->natts; i++)
	{
		if (set[i])
			cols = bms_add_member(cols, i + 1 - FirstLowInvalidHeapAttributeNumber);
	}
	write_begin(&w, rel, CMD_INSERT, cols);
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(w.estate));

	/*
	 * The defaults of the columns not set, each a copy (the table's own
	 * locks are all taken by now), all initialized before any is evaluated
	 */
	exprs = palloc0(sizeof(ExprState *) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Expr	   *expr;

		if (set[i] || att->attisdropped || att->attgenerated)
			continue;
		expr = column_default(rel, i + 1);
		if (expr != NULL)
			exprs[i] = ExecInitExpr(expr, NULL);
	}

	slot = ExecInitExtraTupleSlot(w.estate, desc, &TTSOpsVirtual);
	ExecClearTuple(slot);
	for (int i = 0; i < desc->natts; i++)
	{
		slot->tts_values[i] = set[i] ? values[i] : (Datum) 0;
		slot->tts_isnull[i] = set[i] ? nulls[i] : true;
	}
	econtext = GetPerTupleExprContext(w.estate);
	for (int i = 0; i < desc->natts; i++)
	{
		if (exprs[i] != NULL)
			slot->tts_values[i] = ExecEvalExpr(exprs[i], econtext, &slot->tts_isnull[i]);
	}
	ExecStoreVirtualTuple(slot);
	MemoryContextSwitchTo(old);

	/* the row's place tells whether a BEFORE trigger skipped it */
	ItemPointerSetInvalid(&slot->tts_tid);
	ExecSimpleRelationInsert(w.rri, w.estate, slot);
	check_written(rel, slot, "INSERT");

	slot_getallattrs(slot);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		nulls[i] = slot->tts_isnull[i];
		values[i] = nulls[i] || att->attbyval ? slot->tts_values[i] :
			datumCopy(slot->tts_values[i], false, att->attlen);
	}
	write_end(&w);
}

/*
 * An update of rows of rel (open, RowExclusiveLock held) as an UPDATE
 * statement makes it: write_update_begin() fires the BEFORE STATEMENT
 * triggers, write_update_row() writes a row, write_update_end() fires the
 * AFTER STATEMENT triggers and every queued AFTER trigger.  replace[]
 * (indexed by attribute number - 1) marks the columns written, for
 * per-column UPDATE OF triggers.
 */
TableWrite *
write_update_begin(Relation rel, const bool *replace)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TableWrite *w = palloc(sizeof(TableWrite));
	Bitmapset  *cols = NULL;

	for (int i = 0; i < desc->natts; i++)
	{
		if (replace[i])
			cols = bms_add_member(cols, i + 1 - FirstLowInvalidHeapAttributeNumber);
	}
	write_begin(w, rel, CMD_UPDATE, cols);
	return w;
}

void
write_update_end(TableWrite *w)
{
	write_end(w);
	pfree(w);
}

/*
 * Update the row version in oldslot as UPDATE would: the columns marked in
 * replace[] take values/nulls, the others keep theirs.
 *
 * locked: the caller locked that version, and it is updated through
 * ExecSimpleRelationUpdate (BEFORE and AFTER row triggers, generated
 * columns, constraints, indexes).  Returns TM_Ok.
 *
 * Else it is the version the caller's snapshot sees, as an UPDATE's scan
 * finds it, and the new version is written only if it is still the latest
 * one: table_tuple_update, as ExecUpdate calls it, waits for a transaction
 * that changes or locks it and then writes it, or returns why not
 * (TM_Updated, TM_Deleted, TM_SelfModified) with nothing written, for the
 * caller to lock the latest version and update that, as UPDATE's
 * EvalPlanQual recheck does.  It is tried without waiting first: *waited
 * (unless NULL) tells whether another transaction had the row.  No row lock
 * is taken before the write, so no lock is written to the WAL.  A table with
 * BEFORE ROW UPDATE triggers returns TM_WouldBlock untried: those lock the
 * row themselves (ExecBRUpdateTriggers), which needs a locked version.
 *
 * A BEFORE trigger that skips the row is an error (09000).
 */
TM_Result
write_update_row(TableWrite *w, TupleTableSlot *oldslot, const Datum *values, const bool *nulls,
				 const bool *replace, bool locked, bool *waited)
{
	Relation	rel = w->rri->ri_RelationDesc;
	TupleDesc	desc = RelationGetDescr(rel);
	TupleTableSlot *slot;
	TM_Result	result = TM_Ok;

	if (!locked && rel->trigdesc != NULL && rel->trigdesc->trig_update_before_row)
		return TM_WouldBlock;

	slot_getallattrs(oldslot);
	slot = ExecInitExtraTupleSlot(w->estate, desc, &TTSOpsVirtual);
	ExecClearTuple(slot);
	for (int i = 0; i < desc->natts; i++)
	{
		slot->tts_values[i] = replace[i] ? values[i] : oldslot->tts_values[i];
		slot->tts_isnull[i] = replace[i] ? nulls[i] : oldslot->tts_isnull[i];
	}
	ExecStoreVirtualTuple(slot);

	if (locked)
	{
		EvalPlanQualSetSlot(&w->epqstate, slot);
		/* the new version's place tells whether a BEFORE trigger skipped it */
		ItemPointerSetInvalid(&slot->tts_tid);
		ExecSimpleRelationUpdate(w->rri, w->estate, &w->epqstate, oldslot, slot);
		check_written(rel, slot, "UPDATE");
	}
	else
	{
		/* ExecSimpleRelationUpdate's steps, with ExecUpdate's call of the AM */
		ItemPointer tid = &oldslot->tts_tid;
		TM_FailureData tmfd;
		LockTupleMode lockmode;
#if PG_VERSION_NUM >= 160000
		TU_UpdateIndexes update_indexes;
#else
		bool		update_indexes;
#endif

		CheckCmdReplicaIdentity(rel, CMD_UPDATE);
		if (desc->constr && desc->constr->has_generated_stored)
			ExecComputeStoredGenerated(w->rri, w->estate, slot, CMD_UPDATE);
		if (desc->constr)
			ExecConstraints(w->rri, slot, w->estate);
		if (rel->rd_rel->relispartition)
			ExecPartitionCheck(w->rri, slot, w->estate, true);
		for (bool wait = false;; wait = true)
		{
			result = table_tuple_update(rel, tid, slot, w->estate->es_output_cid,
										w->estate->es_snapshot,
										w->estate->es_crosscheck_snapshot,
										wait, &tmfd, &lockmode, &update_indexes);
			if (result != TM_BeingModified || wait)
				break;
			/* a lock of this transaction's own is no other's */
			if (waited != NULL && !TransactionIdIsCurrentTransactionId(tmfd.xmax))
				*waited = true;
		}
		if (result == TM_Ok)
		{
			List	   *recheck = NIL;

#if PG_VERSION_NUM >= 160000
			if (w->rri->ri_NumIndices > 0 && update_indexes != TU_None)
				recheck = ExecInsertIndexTuples(w->rri, slot, w->estate, true, false, NULL, NIL,
												update_indexes == TU_Summarizing);
#else
			if (w->rri->ri_NumIndices > 0 && update_indexes)
				recheck = ExecInsertIndexTuples(w->rri, slot, w->estate, true, false, NULL, NIL);
#endif
			ExecARUpdateTriggers(w->estate, w->rri, NULL, NULL, tid, NULL, slot, recheck,
								 NULL, false);
			list_free(recheck);
		}
	}
	return result;
}

/*
 * Update the row version in oldslot (of rel, open with RowExclusiveLock;
 * the caller locked that version) as an UPDATE statement of the one row
 * would (write_update_row).
 */
void
write_update(Relation rel, TupleTableSlot *oldslot, const Datum *values, const bool *nulls,
			 const bool *replace)
{
	TableWrite *w = write_update_begin(rel, replace);

	(void) write_update_row(w, oldslot, values, nulls, replace, true, NULL);
	write_update_end(w);
}
