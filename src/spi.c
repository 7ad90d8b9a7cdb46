/*
 * spi.c
 *	  Saved SPI plans.  Every query names its objects with their schema
 *	  (credits.*, pg_catalog.*), so a caller's search_path cannot change
 *	  what runs; the plan cache replans them after DDL.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "nodes/parsenodes.h"

#include "credits.h"

/*
 * Prepare and keep a plan.  It is always a generic plan: every query here is
 * a handful of index lookups whose best plan does not depend on the values,
 * and planning anew for each call (a custom plan) costs more than the query.
 */
SPIPlanPtr
spi_prepare_saved(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

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
	int			rc = SPI_execute_plan(plan, values, NULL, read_only, limit);

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
