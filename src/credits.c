/*
 * credits.c
 *	  Module entry point: settings of the credits extension.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "credits.h"

PG_MODULE_MAGIC;

/* credits.org_id: the org a session's row-level security lets it see */
static char *credits_org_id = NULL;

/* credits.hold_ttl: default lifetime of a hold, in seconds */
int			credits_hold_ttl = 15 * 60;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("credits.org_id",
							   "Organization whose rows row-level security lets this session see.",
							   "Empty means none. Only roles subject to the credits RLS policies are affected.",
							   &credits_org_id,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("credits.hold_ttl",
							"Default lifetime of a credit hold.",
							"A hold older than this is released by expire_holds() or by the next call for its org.",
							&credits_hold_ttl,
							15 * 60,
							1,
							INT_MAX,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("credits");
}
