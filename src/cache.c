/*
 * cache.c
 *	  Backend-local cache of the configuration every call reads: the model
 *	  catalog, each org's existence, thresholds and enabled providers, and
 *	  each member's status, cap, team and the team's cap.
 *
 * A statement-level trigger on models, orgs, org_providers, members and
 * teams (credits._config_changed) sends a relcache invalidation for its table; at
 * commit every backend receives it and drops what it cached from that
 * table, so a change is seen by the next transaction of every backend, as a
 * READ COMMITTED query would see it.  Balances are never cached.
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "credits.h"

static void cache_refresh(void);

#define KEYLEN	(2 * CREDITS_MAX_ID_LEN + 2)

typedef struct ModelEntry
{
	const char *key;			/* model */
	ModelInfo	info;
	bool		active;
	char	   *display_name;
} ModelEntry;

typedef struct FallbackEntry
{
	const char *key;			/* provider */
	char	   *model;
} FallbackEntry;

typedef struct OrgEntry
{
	const char *key;			/* org_id */
	bool		exists;
	int			nthresholds;
	int			thresholds[16];
	int			stripes;		/* orgs.stripes, -1 when NULL */
	bool		auto_recharge;	/* orgs.auto_recharge_below is set ... */
	Credit		auto_recharge_below;	/* ... to this */
	List	   *providers;		/* enabled providers (char *) */
	int			pool_stripes;	/* pools.stripes as last seen here, -1: not yet */
	bool		pool_empty;		/* the pool was empty when last charged here */
	/* allowed_models' rows, built from the models cache of models_loaded */
	uint64		models_of;		/* 0: not built */
	int			nmodels;
	OrgModel   *models;
} OrgEntry;

typedef struct MemberEntry
{
	const char *key;			/* org_id, '\x01', user_id */
	bool		active;
	MemberConfig config;		/* config.team_id in the cache's memory */
} MemberEntry;

/* each cached table lives in its own memory context, dropped as a whole */
static HTAB *models = NULL;
static HTAB *fallbacks = NULL;
static HTAB *orgs = NULL;
static HTAB *members = NULL;
static MemoryContext models_cxt = NULL;
static MemoryContext orgs_cxt = NULL;
static MemoryContext members_cxt = NULL;
static uint64 models_loaded = 0;	/* how many times the models were loaded */
static Oid	models_relid = InvalidOid;
static Oid	orgs_relid = InvalidOid;
static Oid	org_providers_relid = InvalidOid;
static Oid	members_relid = InvalidOid;
static Oid	teams_relid = InvalidOid;
static bool relids_known = false;	/* the five above are current */
static int	has_teams = -1;		/* members.team_id exists (1.1); -1: not known */
static bool callback_registered = false;

/*
 * The entry found last in each table: a debit asks for its org's some ten
 * times and for its member's twice.  Entries stay where they are until
 * their table is dropped, which resets these.
 */
static struct OrgEntry *last_org = NULL;
static struct MemberEntry *last_member = NULL;

/*
 * An org's row, its enabled providers and a member's row, read directly.
 * Each reader's enum names the positions of its columns in the values it
 * reads: the enum must list them in the same order as the reader.
 */
static RowReader orgs_reader = ROW_READER("orgs", "orgs_pkey", "thresholds", "stripes",
										  "?auto_recharge_below");
enum
{
	OR_THRESHOLDS, OR_STRIPES, OR_AUTO_RECHARGE_BELOW,
	OR_NCOLS
};

static RowReader org_providers_reader = ROW_READER("org_providers", "org_providers_pkey",
												   "provider");
enum
{
	OP_PROVIDER,
	OP_NCOLS
};

static RowReader members_reader = ROW_READER("members", "members_pkey",
											 "user_id", "active", "cap", "?team_id");
enum
{
	MR_USER_ID, MR_ACTIVE, MR_CAP, MR_TEAM_ID,
	MR_NCOLS
};

static RowReader teams_reader = ROW_READER("teams", "teams_pkey", "team_id", "cap");
enum
{
	TR_TEAM_ID, TR_CAP,
	TR_NCOLS
};

static void
drop_cache(MemoryContext *cxt)
{
	if (*cxt != NULL)
	{
		MemoryContextDelete(*cxt);
		*cxt = NULL;
	}
}

static void
cache_callback(Datum arg, Oid relid)
{
	/* a cached table dropped or replaced: look the OIDs up again */
	if (relid == InvalidOid || relid == models_relid || relid == orgs_relid ||
		relid == org_providers_relid || relid == members_relid || relid == teams_relid)
		relids_known = false;
	if (relid == InvalidOid || relid == models_relid)
	{
		drop_cache(&models_cxt);
		models = NULL;
		fallbacks = NULL;
	}
	if (relid == InvalidOid || relid == orgs_relid || relid == org_providers_relid)
	{
		drop_cache(&orgs_cxt);
		orgs = NULL;
		last_org = NULL;
	}
	/* a member's entry holds the cap of the member's team */
	if (relid == InvalidOid || relid == members_relid || relid == teams_relid)
	{
		drop_cache(&members_cxt);
		members = NULL;
		last_member = NULL;
		has_teams = -1;
	}
}

/*
 * Entries are keyed by a string (an id, or two joined), stored once in the
 * cache's memory: the key is a pointer to it, hashed and compared as the
 * string, so that an entry is small whatever the ids' length (entries with
 * room for the longest key filled the CPU caches of busy backends).
 */
static uint32
key_hash(const void *key, Size keysize)
{
	const char *s = *(const char *const *) key;

	return hash_bytes((const unsigned char *) s, (int) strlen(s));
}

static int
key_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * The entry of key in table; with enter, created when missing, its key
 * copied into cxt (the table's memory).  NULL when missing otherwise.
 */
static void *
cache_entry(HTAB *table, const char *key, bool enter, MemoryContext cxt)
{
	bool		found;
	void	   *e = hash_search(table, &key, enter ? HASH_ENTER : HASH_FIND, &found);

	if (enter && !found)
		*(const char **) e = MemoryContextStrdup(cxt, key);
	return e;
}

static HTAB *
new_table(MemoryContext *cxt, const char *name, Size entrysize)
{
	HASHCTL		ctl;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(cache_callback, (Datum) 0);
		callback_registered = true;
	}
	if (*cxt == NULL)
		*cxt = AllocSetContextCreate(TopMemoryContext, "credits cache", ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(char *);
	ctl.entrysize = entrysize;
	ctl.hash = key_hash;
	ctl.match = key_match;
	ctl.hcxt = *cxt;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/*
 * Remember the OIDs of the cached tables, for the invalidation callback:
 * looked up again only after one of them was invalidated (dropped, replaced
 * by a new extension, altered), not on every load.
 */
static void
remember_relids(void)
{
	Oid			nsp;

	if (relids_known)
		return;
	nsp = get_namespace_oid("credits", false);
	/* before the lookups: an invalidation they process resets it */
	relids_known = true;

	models_relid = get_relname_relid("models", nsp);
	orgs_relid = get_relname_relid("orgs", nsp);
	org_providers_relid = get_relname_relid("org_providers", nsp);
	members_relid = get_relname_relid("members", nsp);
	teams_relid = get_relname_relid("teams", nsp);
}

/*
 * Does the database have teams (1.1)?  Until ALTER EXTENSION credits UPDATE
 * has run, the library serves a 1.0 database, which has none.  The answer
 * is dropped with the members cache (the update alters credits.members).
 */
bool
cache_schema_1_1(void)
{
	cache_refresh();
	if (has_teams < 0)
	{
		remember_relids();
		has_teams = OidIsValid(members_relid) &&
			get_attnum(members_relid, "team_id") != InvalidAttrNumber;
	}
	return has_teams > 0;
}

/*
 * every model, in no particular order (a provider has one active fallback at
 * most, so none matters); M_* in the same order as its columns
 */
static RowReader models_reader = ROW_READER("models", "models_pkey",
											"model", "provider", "input_price", "output_price",
											"request_price", "is_fallback", "active",
											"display_name");
enum
{
	M_MODEL, M_PROVIDER, M_INPUT_PRICE, M_OUTPUT_PRICE, M_REQUEST_PRICE, M_IS_FALLBACK,
	M_ACTIVE, M_DISPLAY_NAME, M_NCOLS
};

static void
load_models(void)
{
	typedef struct Loaded
	{
		Datum		v[M_NCOLS];
		bool		n[M_NCOLS];
	}			Loaded;
	List	   *rows = NIL;
	ListCell   *lc;
	RowScan    *scan;
	Loaded		row;
	HTAB	   *m;
	HTAB	   *f;

	remember_relids();
	scan = reader_begin(&models_reader, 0, NULL, READER_LATEST);
	while (reader_next(scan, row.v, row.n))
	{
		Loaded	   *copy = palloc(sizeof(Loaded));

		*copy = row;
		rows = lappend(rows, copy);
	}
	reader_end(scan);

	/* no lock is taken from here on: the cache cannot be dropped under us */
	drop_cache(&models_cxt);
	m = new_table(&models_cxt, "credits models", sizeof(ModelEntry));
	f = new_table(&models_cxt, "credits fallbacks", sizeof(FallbackEntry));
	foreach(lc, rows)
	{
		Loaded	   *r = lfirst(lc);
		char	   *model = TextDatumGetCString(r->v[M_MODEL]);
		char	   *provider = TextDatumGetCString(r->v[M_PROVIDER]);
		ModelEntry *e = cache_entry(m, model, true, models_cxt);

		e->info.model = e->key;
		e->info.provider = MemoryContextStrdup(models_cxt, provider);
		e->info.input_price = DatumGetCredit(r->v[M_INPUT_PRICE]);
		e->info.output_price = DatumGetCredit(r->v[M_OUTPUT_PRICE]);
		e->info.request_price = DatumGetCredit(r->v[M_REQUEST_PRICE]);
		e->info.is_fallback = DatumGetBool(r->v[M_IS_FALLBACK]);
		e->active = DatumGetBool(r->v[M_ACTIVE]);
		e->display_name = MemoryContextStrdup(models_cxt,
											  TextDatumGetCString(r->v[M_DISPLAY_NAME]));
		if (e->info.is_fallback && e->active)
		{
			FallbackEntry *fe = cache_entry(f, provider, true, models_cxt);

			fe->model = MemoryContextStrdup(models_cxt, model);
		}
	}
	models = m;
	fallbacks = f;
	models_loaded++;
}

/*
 * Every accessor first processes the invalidations other backends sent so
 * far (cheap when there are none: an unlocked check).  PostgreSQL does that
 * when a lock is newly taken, but a transaction that already holds its
 * locks would otherwise keep what it cached until it ends, missing a price,
 * member or provider change another session committed in the meantime.
 */
static void
cache_refresh(void)
{
	AcceptInvalidationMessages();
}

/*
 * The accessors copy what they return into the caller's memory: an
 * invalidation may drop the cache at any later lock acquisition.  Entries
 * are only created after their query ran, for the same reason.
 */

/* A model (active, or any with any), or false. */
bool
cache_model(const char *model, bool any, ModelInfo *info)
{
	ModelEntry *e;

	cache_refresh();
	if (models == NULL)
		load_models();
	e = cache_entry(models, model, false, NULL);
	if (e == NULL || (!e->active && !any))
		return false;
	*info = e->info;
	info->model = pstrdup(e->key);
	info->provider = pstrdup(e->info.provider);
	return true;
}

/* The provider's active fallback model, or NULL. */
char *
cache_fallback(const char *provider)
{
	FallbackEntry *e;

	cache_refresh();
	if (fallbacks == NULL)
		load_models();
	e = cache_entry(fallbacks, provider, false, NULL);
	return e ? pstrdup(e->model) : NULL;
}

static OrgEntry *
org_entry(const char *org_id)
{
	OrgEntry	loaded;
	OrgEntry   *e;
	Datum		v[OR_NCOLS];
	bool		n[OR_NCOLS];
	List	   *providers = NIL;
	ListCell   *lc;
	MemoryContext old;

	cache_refresh();
	if (last_org != NULL && strcmp(last_org->key, org_id) == 0)
		return last_org;
	if (orgs != NULL && (e = cache_entry(orgs, org_id, false, NULL)) != NULL)
		return last_org = e;

	remember_relids();
	memset(&loaded, 0, sizeof(loaded));
	loaded.stripes = -1;
	loaded.pool_stripes = -1;
	loaded.exists = reader_get(&orgs_reader, 1, &org_id, READER_LATEST, v, n);
	if (loaded.exists)
	{
		ArrayType  *a = DatumGetArrayTypeP(v[OR_THRESHOLDS]);
		Datum	   *elems;
		bool	   *nulls;
		int			count;
		RowScan    *scan;
		Datum		pv[OP_NCOLS];
		bool		pn[OP_NCOLS];

		deconstruct_array(a, INT4OID, 4, true, TYPALIGN_INT, &elems, &nulls, &count);
		loaded.nthresholds = Min(count, lengthof(loaded.thresholds));
		for (int j = 0; j < loaded.nthresholds; j++)
			loaded.thresholds[j] = DatumGetInt32(elems[j]);
		if (!n[OR_STRIPES])
			loaded.stripes = DatumGetInt32(v[OR_STRIPES]);
		loaded.auto_recharge = !n[OR_AUTO_RECHARGE_BELOW];
		if (loaded.auto_recharge)
			loaded.auto_recharge_below = DatumGetCredit(v[OR_AUTO_RECHARGE_BELOW]);

		scan = reader_begin(&org_providers_reader, 1, &org_id, READER_LATEST);
		while (reader_next(scan, pv, pn))
			providers = lappend(providers, TextDatumGetCString(pv[OP_PROVIDER]));
		reader_end(scan);
	}

	/* no lock is taken from here on: the cache cannot be dropped under us */
	if (orgs == NULL)
		orgs = new_table(&orgs_cxt, "credits orgs", sizeof(OrgEntry));
	old = MemoryContextSwitchTo(orgs_cxt);
	foreach(lc, providers)
		loaded.providers = lappend(loaded.providers, pstrdup((char *) lfirst(lc)));
	MemoryContextSwitchTo(old);

	e = cache_entry(orgs, org_id, true, orgs_cxt);
	loaded.key = e->key;
	*e = loaded;
	return last_org = e;
}

bool
cache_org_exists(const char *org_id)
{
	return org_entry(org_id)->exists;
}

/* Does the org recharge itself when available falls under a threshold (below)? */
bool
cache_auto_recharge(const char *org_id, Credit *below)
{
	OrgEntry   *e = org_entry(org_id);

	*below = e->auto_recharge_below;
	return e->auto_recharge;
}

bool
cache_provider_enabled(const char *org_id, const char *provider)
{
	ListCell   *lc;

	foreach(lc, org_entry(org_id)->providers)
	{
		if (strcmp((char *) lfirst(lc), provider) == 0)
			return true;
	}
	return false;
}

static int
cmp_org_model(const void *a, const void *b)
{
	const OrgModel *x = a;
	const OrgModel *y = b;
	int			c = strcmp(x->provider, y->provider);

	if (c != 0)
		return c;
	if (x->is_fallback != y->is_fallback)
		return x->is_fallback ? 1 : -1;
	return strcmp(x->model, y->model);
}

/*
 * The active models of the org's enabled providers, in the order of
 * allowed_models (provider, fallback last, model; bytewise, as COLLATE "C");
 * returns how many.  The rows are the cache's own, kept with the org's entry
 * until the org or the catalog changes: the caller reads them before it
 * takes any lock (which may drop the cache), and does not change them.
 */
int
cache_org_models(const char *org_id, OrgModel **out)
{
	OrgEntry   *org;
	HASH_SEQ_STATUS status;
	ModelEntry *e;
	int			n = 0;
	OrgModel   *rows;
	MemoryContext old;

	/*
	 * Both caches loaded, the org's last: loading either may take a lock and
	 * so drop the other.  No lock is taken below, nothing can drop them then.
	 */
	do
	{
		if (models == NULL)
			load_models();
		org = org_entry(org_id);
	} while (models == NULL);

	/* built once per org and loaded catalog */
	if (org->models_of == models_loaded)
	{
		*out = org->models;
		return org->nmodels;
	}

	old = MemoryContextSwitchTo(orgs_cxt);
	rows = palloc(sizeof(OrgModel) * Max(hash_get_num_entries(models), 1));
	hash_seq_init(&status, models);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		ListCell   *lc;
		bool		enabled = false;

		if (!e->active)
			continue;
		foreach(lc, org->providers)
		{
			if (strcmp((char *) lfirst(lc), e->info.provider) == 0)
			{
				enabled = true;
				break;
			}
		}
		if (!enabled)
			continue;
		rows[n].provider = pstrdup(e->info.provider);
		rows[n].model = pstrdup(e->key);
		rows[n].display_name = pstrdup(e->display_name);
		rows[n].is_fallback = e->info.is_fallback;
		rows[n].input_price = e->info.input_price;
		rows[n].output_price = e->info.output_price;
		n++;
	}
	MemoryContextSwitchTo(old);
	qsort(rows, n, sizeof(OrgModel), cmp_org_model);
	org->models = rows;
	org->nmodels = n;
	org->models_of = models_loaded;
	*out = rows;
	return n;
}

/* The org's thresholds (percent) into thresholds[16]; returns how many. */
int
cache_thresholds(const char *org_id, int *thresholds)
{
	OrgEntry   *e = org_entry(org_id);

	memcpy(thresholds, e->thresholds, sizeof(int) * e->nthresholds);
	return e->nthresholds;
}

/* The org's fixed number of escrow stripes, or -1 to let it grow them. */
int
cache_org_stripes(const char *org_id)
{
	return org_entry(org_id)->stripes;
}

/*
 * How many stripes this backend last saw the org's pool split over (-1: it
 * has not seen the pool yet).  A hint, not a fact: a debit uses it only to
 * skip the fast path's read of a pool that is one balance, and the slow path
 * is right for any pool.
 */
int
cache_pool_stripes(const char *org_id)
{
	return org_entry(org_id)->pool_stripes;
}

void
cache_note_pool_stripes(const char *org_id, int stripes)
{
	org_entry(org_id)->pool_stripes = stripes;
}

/*
 * Was the org's pool empty when this backend last charged it?  A hint too:
 * a debit then tries the empty pool's path first, which decides for itself.
 */
bool
cache_pool_empty(const char *org_id)
{
	return org_entry(org_id)->pool_empty;
}

void
cache_note_pool_empty(const char *org_id, bool empty)
{
	org_entry(org_id)->pool_empty = empty;
}

/* an org with more members than this is cached member by member */
#define ORG_MEMBERS_AT_ONCE 1024

/* a member's row (members_reader's columns) as a configuration, team cap aside */
static void
member_from_row(const Datum *v, const bool *n, MemberConfig *c)
{
	c->has_cap = !n[MR_CAP];
	c->cap = c->has_cap ? DatumGetCredit(v[MR_CAP]) : 0;
	c->team_id = !n[MR_TEAM_ID] ? TextDatumGetCString(v[MR_TEAM_ID]) : NULL;
	c->team_has_cap = false;
	c->team_cap = 0;
}

/* a team of an org, as load_org_members() reads them */
typedef struct TeamRow
{
	char	   *team_id;
	bool		has_cap;
	Credit		cap;
} TeamRow;

/* Fill in the cap of a member's team, from the org's teams. */
static void
team_cap_of(MemberConfig *c, int nteams, const TeamRow *teams)
{
	for (int i = 0; c->team_id != NULL && i < nteams; i++)
	{
		if (strcmp(teams[i].team_id, c->team_id) == 0)
		{
			c->team_has_cap = teams[i].has_cap;
			c->team_cap = teams[i].cap;
			return;
		}
	}
}

/*
 * Cache every member of an org (a range scan of members_pkey), with the caps
 * of their teams (one of teams_pkey), and mark the org as complete
 * ("org\x02"), so that any member of it, or any user who is not one, is then
 * answered without a read.  Returns false, having cached none, for an org
 * with more than ORG_MEMBERS_AT_ONCE members.
 */
static bool
load_org_members(const char *org_id)
{
	typedef struct Loaded
	{
		char	   *user_id;
		bool		active;
		MemberConfig config;
	}			Loaded;
	Loaded	   *loaded = palloc(sizeof(Loaded) * ORG_MEMBERS_AT_ONCE);
	int			n = 0;
	bool		complete = true;
	bool		any_team = false;
	RowScan    *scan;
	Datum		v[MR_NCOLS];
	bool		isnull[MR_NCOLS];
	char		key[KEYLEN];

	remember_relids();
	scan = reader_begin(&members_reader, 1, &org_id, READER_LATEST);
	while (reader_next(scan, v, isnull))
	{
		if (n == ORG_MEMBERS_AT_ONCE)
		{
			complete = false;
			break;
		}
		loaded[n].user_id = TextDatumGetCString(v[MR_USER_ID]);
		loaded[n].active = DatumGetBool(v[MR_ACTIVE]);
		member_from_row(v, isnull, &loaded[n].config);
		any_team |= loaded[n].config.team_id != NULL;
		n++;
	}
	reader_end(scan);
	if (!complete)
		return false;

	if (any_team)
	{
		int			nteams = 0;
		int			size = 16;
		TeamRow    *teams = palloc(sizeof(TeamRow) * size);
		Datum		tv[TR_NCOLS];
		bool		tn[TR_NCOLS];

		scan = reader_begin(&teams_reader, 1, &org_id, READER_LATEST);
		while (reader_next(scan, tv, tn))
		{
			if (nteams == size)
				teams = repalloc(teams, sizeof(TeamRow) * (size *= 2));
			teams[nteams].team_id = TextDatumGetCString(tv[TR_TEAM_ID]);
			teams[nteams].has_cap = !tn[TR_CAP];
			teams[nteams].cap = tn[TR_CAP] ? 0 : DatumGetCredit(tv[TR_CAP]);
			nteams++;
		}
		reader_end(scan);
		for (int m = 0; m < n; m++)
			team_cap_of(&loaded[m].config, nteams, teams);
	}

	/* no lock is taken from here on: the cache cannot be dropped under us */
	if (members == NULL)
		members = new_table(&members_cxt, "credits members", sizeof(MemberEntry));
	for (int i = 0; i < n; i++)
	{
		MemberEntry *e;

		snprintf(key, sizeof(key), "%s\x01%s", org_id, loaded[i].user_id);
		e = cache_entry(members, key, true, members_cxt);
		e->active = loaded[i].active;
		e->config = loaded[i].config;
		if (e->config.team_id != NULL)
			e->config.team_id = MemoryContextStrdup(members_cxt, e->config.team_id);
	}
	snprintf(key, sizeof(key), "%s\x02", org_id);
	(void) cache_entry(members, key, true, members_cxt);
	return true;
}

/* Is key a member's: org_id, '\x01', user_id? */
static bool
is_member_key(const char *key, const char *org_id, const char *user_id)
{
	size_t		len = strlen(org_id);

	return strncmp(key, org_id, len) == 0 && key[len] == '\x01' &&
		strcmp(key + len + 1, user_id) == 0;
}

/*
 * Is the user an active member?  Fills in the member's configuration (an
 * unknown user has none): the personal cap, the team and its cap.  The
 * team's id is copied into the caller's memory.
 */
bool
cache_member(const char *org_id, const char *user_id, MemberConfig *config)
{
	char		key[KEYLEN];
	char		org_key[KEYLEN];
	MemberEntry *e;

	cache_refresh();
	if (last_member != NULL && is_member_key(last_member->key, org_id, user_id))
	{
		e = last_member;
		goto found;
	}
	snprintf(key, sizeof(key), "%s\x01%s", org_id, user_id);
	if (members == NULL || (e = cache_entry(members, key, false, NULL)) == NULL)
	{
		bool		complete;
		bool		active = false;
		MemberConfig c = {0};

		snprintf(org_key, sizeof(org_key), "%s\x02", org_id);
		complete = (members != NULL && cache_entry(members, org_key, false, NULL) != NULL) ||
			load_org_members(org_id);
		if (members != NULL && (e = cache_entry(members, key, false, NULL)) != NULL)
			goto found;
		if (!complete)
		{
			const char *keys[2] = {org_id, user_id};
			Datum		v[MR_NCOLS];
			bool		n[MR_NCOLS];

			remember_relids();
			if (reader_get(&members_reader, 2, keys, READER_LATEST, v, n))
			{
				active = DatumGetBool(v[MR_ACTIVE]);
				member_from_row(v, n, &c);
			}
			if (c.team_id != NULL)
			{
				const char *tkeys[2] = {org_id, c.team_id};
				Datum		tv[TR_NCOLS];
				bool		tn[TR_NCOLS];

				if (reader_get(&teams_reader, 2, tkeys, READER_LATEST, tv, tn) && !tn[TR_CAP])
				{
					c.team_has_cap = true;
					c.team_cap = DatumGetCredit(tv[TR_CAP]);
				}
			}
		}
		/* not a member (complete), or read by itself */
		if (members == NULL)
			members = new_table(&members_cxt, "credits members", sizeof(MemberEntry));
		e = cache_entry(members, key, true, members_cxt);
		e->active = active;
		e->config = c;
		if (c.team_id != NULL)
			e->config.team_id = MemoryContextStrdup(members_cxt, c.team_id);
	}
found:
	last_member = e;
	*config = e->config;
	if (config->team_id != NULL)
		config->team_id = pstrdup(config->team_id);
	return e->active;
}

/*
 * Does the org's team have a cap (and which)?  Read as committed now, not
 * cached: for the rarer charges in a team other than the member's own (a
 * hold's).  An unknown team has none.
 */
bool
cache_team_cap(const char *org_id, const char *team_id, Credit *cap)
{
	const char *keys[2] = {org_id, team_id};
	Datum		v[TR_NCOLS];
	bool		n[TR_NCOLS];

	*cap = 0;
	if (!cache_schema_1_1() || !reader_get(&teams_reader, 2, keys, READER_LATEST, v, n) ||
		n[TR_CAP])
		return false;
	*cap = DatumGetCredit(v[TR_CAP]);
	return true;
}

/*
 * credits._config_changed(): statement-level trigger on the cached tables;
 * every backend drops what it cached from the table once this commits.
 */
PG_FUNCTION_INFO_V1(credits_config_changed);
Datum
credits_config_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "credits._config_changed() must be called as a trigger");
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
