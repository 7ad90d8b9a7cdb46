/*
 * spi.c
 *	  Saved SPI plans.  Every query names its objects with their schema
 *	  (credits.*, pg_catalog.*), so a caller's search_path cannot change
 *	  what runs; the plan cache replans them after DDL.
 *
 * Queries always run as the owner of the credits schema, with search_path
 * pinned.  Most C functions are SECURITY DEFINER with a SET clause, which
 * does both for the whole call.  The read path (allowed_models,
 * resolve_model) runs before every AI request and usually runs no query at
 * all (the configuration cache and direct index reads answer it), so it is
 * SECURITY INVOKER without a SET clause, whose save and restore of settings
 * would cost more than the rest of the call: the owner and the settings are
 * switched here, only around the queries that do run.  On error the
 * (sub)transaction's abort restores both, as for a SECURITY DEFINER call.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "credits.h"

/* what every SET clause of the extension's functions pins */
#define PINNED_SEARCH_PATH "pg_catalog, credits, pg_temp"

typedef struct AsOwner
{
	Oid			save_userid;
	int			save_sec_context;
	int			nestlevel;		/* -1: nothing was switched */
} AsOwner;

static void
as_owner_begin(AsOwner *state)
{
	Oid			nsp = get_namespace_oid("credits", false);
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);

	GetUserIdAndSecContext(&state->save_userid, &state->save_sec_context);
	state->nestlevel = -1;
	/* in a SECURITY DEFINER function with its SET clause: done already */
	if (state->save_userid == owner &&
		strcmp(namespace_search_path, PINNED_SEARCH_PATH) == 0)
		return;

	state->nestlevel = NewGUCNestLevel();
	SetUserIdAndSecContext(owner, state->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	(void) set_config_option("search_path", PINNED_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
}

static void
as_owner_end(AsOwner *state)
{
	if (state->nestlevel < 0)
		return;
	AtEOXact_GUC(true, state->nestlevel);
	SetUserIdAndSecContext(state->save_userid, state->save_sec_context);
}

/*
 * Prepare and keep a plan.  It is always a generic plan: every query here is
 * a handful of index lookups whose best plan does not depend on the values,
 * and planning anew for each call (a custom plan) costs more than the query.
 */
SPIPlanPtr
spi_prepare_saved(const char *sql, int nargs, Oid *argtypes)
{
	AsOwner		state;
	SPIPlanPtr	plan;

	as_owner_begin(&state);
	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	as_owner_end(&state);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

/* Run a saved plan; returns SPI_processed. */
uint64
spi_run(SPIPlanPtr plan, Datum *values, bool read_only, long limit)
{
	AsOwner		state;
	int			rc;

	as_owner_begin(&state);
	rc = SPI_execute_plan(plan, values, NULL, read_only, limit);
	as_owner_end(&state);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

Datum
spi_value(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* A column of the last result as a string in the caller's memory context
 * (it outlives SPI_finish); NULL for SQL NULL. */
char *
spi_string(int row, int col)
{
	char	   *value = SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
	char	   *copy;

	if (value == NULL)
		return NULL;
	copy = SPI_palloc(strlen(value) + 1);
	strcpy(copy, value);
	return copy;
}
