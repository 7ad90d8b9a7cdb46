/*
 * events.c
 *	  Threshold crossings: each crossing of one of an org's thresholds is
 *	  written once per period to credits.events and sent with pg_notify in the
 *	  same transaction (credits._emit_event).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "credits.h"

static SPIPlanPtr threshold_plan = NULL;

static int
cmp_int(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	return (x > y) - (x < y);
}

static void
emit_threshold(const char *org_id, int threshold, TimestampTz period_start,
			   Credit spent, Credit total, Credit available)
{
	Datum		args[6];

	if (threshold_plan == NULL)
	{
		Oid			argtypes[6] = {TEXTOID, INT4OID, TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID};

		/* credits are passed as micro-credits and written as JSON numbers */
		threshold_plan = spi_prepare_saved(
			"SELECT credits._emit_event($1, 'threshold', pg_catalog.jsonb_build_object("
			"  'threshold', $2, 'period_start', $3,"
			"  'spent', credits._micro($4)::pg_catalog.numeric,"
			"  'total', credits._micro($5)::pg_catalog.numeric,"
			"  'available', credits._micro($6)::pg_catalog.numeric))",
			6, argtypes);
	}
	args[0] = CStringGetTextDatum(org_id);
	args[1] = Int32GetDatum(threshold);
	args[2] = TimestampTzGetDatum(period_start);
	args[3] = Int64GetDatum(spent);
	args[4] = Int64GetDatum(total);
	args[5] = Int64GetDatum(available);
	spi_run(threshold_plan, args, false, 0);
}

/* Is threshold t crossed: spent * 100 >= t * total? */
static bool
crossed(int t, Credit spent, Credit total)
{
	return (int128) spent * 100 >= (int128) t * total;
}

/*
 * Would events_thresholds() announce a threshold (spent, total and
 * old_level as for it)?  Nothing is written.
 */
bool
events_would_cross(const char *org_id, int old_level, Credit spent, Credit total)
{
	int			thresholds[16];
	int			n;

	if (total <= 0)
		return false;
	n = cache_thresholds(org_id, thresholds);
	for (int i = 0; i < n; i++)
	{
		if (thresholds[i] > old_level && crossed(thresholds[i], spent, total))
			return true;
	}
	return false;
}

/*
 * Announce every threshold in (old_level, new level]; returns the new level.
 * spent and total are the period's spent-or-reserved and all its credits;
 * a threshold t is crossed when spent * 100 >= t * total.
 */
int
events_thresholds(const char *org_id, int old_level, TimestampTz period_start,
				  Credit spent, Credit total, Credit available)
{
	int			thresholds[16];
	int			n;
	int			level = old_level;

	if (total <= 0)
		return old_level;

	n = cache_thresholds(org_id, thresholds);
	qsort(thresholds, n, sizeof(int), cmp_int);
	for (int i = 0; i < n; i++)
	{
		int			t = thresholds[i];

		if (t <= old_level)
			continue;
		if (crossed(t, spent, total))
		{
			emit_threshold(org_id, t, period_start, spent, total, available);
			if (t > level)
				level = t;
		}
	}
	return level;
}
