/*
 * credits.c
 *	  Module entry point: settings of the credits extension.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "credits.h"

PG_MODULE_MAGIC;

/* credits.org_id: the org a session's row-level security lets it see */
static char *credits_org_id = NULL;

/* credits.hold_ttl: default lifetime of a hold, in seconds */
int			credits_hold_ttl = 15 * 60;

/* credits.stripe: the escrow stripe of this session's debits (-1: by pid) */
int			credits_stripe = -1;

/* credits.max_stripes: escrow stripes a contended pool grows to */
int			credits_max_stripes = 32;

/*
 * credits.split_after: recent waits for the pool lock (pool.c forgets one
 * every 4 calls of the pool) before a pool splits, or doubles its stripes
 */
int			credits_split_after = 8;

void		_PG_init(void);

/*
 * With credits.org_id set, the functions work on that org only: any other is
 * refused like a missing privilege.
 */
void
check_tenant(const char *org_id)
{
	if (credits_org_id != NULL && credits_org_id[0] != '\0' &&
		strcmp(credits_org_id, org_id) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("org \"%s\" is not the org of this session", org_id),
				 errdetail("credits.org_id is set to \"%s\".", credits_org_id)));
}

/* credits._check_tenant(org_id text), for the SQL functions */
PG_FUNCTION_INFO_V1(credits_check_tenant);
Datum
credits_check_tenant(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
		check_tenant(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}

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

	DefineCustomIntVariable("credits.max_stripes",
							"Escrow stripes a contended org's pool grows to.",
							"A pool starts as one balance; after credits.split_after recent waits "
							"for its lock it splits into stripes, and doubles them after as many "
							"more, up to this. orgs.stripes overrides it.",
							&credits_max_stripes,
							32,
							1,
							CREDITS_STRIPES,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("credits.split_after",
							"Recent waits for a pool's lock before it splits into stripes, or doubles them.",
							"A wait is forgotten every 4 calls of the pool: orgs whose debits collide now and then stay one balance.",
							&credits_split_after,
							8,
							1,
							INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("credits.stripe",
							"Escrow stripe this session's debits are charged to.",
							"-1 (the default) picks it from the backend's PGPROC slot. "
							"For tests and diagnosis.",
							&credits_stripe,
							-1,
							-1,
							CREDITS_STRIPES - 1,
							PGC_USERSET,
							GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("credits");
}
