/*
 * credits.h
 *	  Shared declarations of the credits extension: internal, not installed
 *	  (other extensions use credit.h, the credit type only).
 */
#ifndef CREDITS_H
#define CREDITS_H

#include "postgres.h"

#include "access/tableam.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "nodes/lockoptions.h"
#include "storage/itemptr.h"
#include "storage/lockdefs.h"
#include "utils/array.h"
#include "utils/numeric.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

/* the credit type (Credit and its macros): the installed public header */
#include "credit.h"

/* Custom SQLSTATEs, class UC. */
#define ERRCODE_CREDITS_NO_FALLBACK		MAKE_SQLSTATE('U','C','0','0','1')
#define ERRCODE_CREDITS_UNKNOWN_MODEL	MAKE_SQLSTATE('U','C','0','0','2')
#define ERRCODE_CREDITS_PROVIDER_DISABLED MAKE_SQLSTATE('U','C','0','0','3')
#define ERRCODE_CREDITS_UNKNOWN_ORG		MAKE_SQLSTATE('U','C','0','0','4')
#define ERRCODE_CREDITS_NOT_MEMBER		MAKE_SQLSTATE('U','C','0','0','5')
#define ERRCODE_CREDITS_UNKNOWN_HOLD	MAKE_SQLSTATE('U','C','0','0','6')
#define ERRCODE_CREDITS_REQUEST_REUSED	MAKE_SQLSTATE('U','C','0','0','7')

/* longest org, user, provider, model or request id, in bytes */
#define CREDITS_MAX_ID_LEN	255

/* credits.c: settings */
extern int	credits_hold_ttl;
extern int	credits_stripe;
extern int	credits_max_stripes;
extern int	credits_split_after;
extern void check_tenant(const char *org_id);

/* credit.c (credit_to_cstring, credit_add, credit_sub: see credit.h) */
extern Credit credit_available(Credit allowance, Credit allowance_used, Credit topup,
							   Credit reserved);
extern Datum credit_to_numeric(Credit value);
extern Credit numeric_to_credit(Numeric num);

/* args.c: checks at the SQL boundary */
extern void arg_not_null(FunctionCallInfo fcinfo, int n, const char *name);
extern text *arg_text(FunctionCallInfo fcinfo, int n, const char *name);
extern char *arg_id(FunctionCallInfo fcinfo, int n, const char *name);
extern int64 arg_tokens(FunctionCallInfo fcinfo, int n, const char *name);
extern Credit arg_amount(FunctionCallInfo fcinfo, int n, const char *name);
extern Datum row_result(FunctionCallInfo fcinfo, Datum *values, bool *nulls);
extern void check_writable(const char *function);

/* spi.c */
extern SPIPlanPtr spi_prepare_saved(const char *sql, int nargs, Oid *argtypes);
extern uint64 spi_run(SPIPlanPtr plan, Datum *values, bool read_only, long limit);
extern Datum spi_value(int row, int col, bool *isnull);
extern char *spi_string(int row, int col);

/* reader.c: direct index lookups on a credits table */
#define READER_MAX_COLS 20
typedef struct RowReader
{
	const char *table;
	const char *index;			/* its leading columns are text keys */
	int			ncols;
	const char *cols[READER_MAX_COLS];	/* the columns read ("?name": optional) */
	Oid			relid;			/* looked up once; reset by invalidation */
	Oid			indexid;
	bool		attnums_valid;	/* attnums found in the opened table */
	AttrNumber	attnums[READER_MAX_COLS];
} RowReader;

#define ROW_READER(table, index, ...) \
	{table, index, lengthof(((const char *[]) {__VA_ARGS__})), {__VA_ARGS__}}

typedef struct RowScan RowScan;

/* a snapshot taken after the table is locked: see reader_begin() */
#define READER_LATEST ((Snapshot) 1)

extern RowScan *reader_begin(RowReader *r, int nkeys, const char **keys, Snapshot snapshot);
extern bool reader_next(RowScan *s, Datum *values, bool *nulls);
extern ItemPointer reader_tid(RowScan *s);
extern void reader_end(RowScan *s);
extern bool reader_find_numbered(RowReader *r, const char *key, int32 number, ItemPointer tid);
typedef bool (*ReaderUpdate) (Datum *values, bool *nulls, bool *replace, void *arg);
extern bool reader_update(RowReader *r, int nkeys, const char **keys, int32 number,
						  ItemPointer tid, ReaderUpdate update, void *arg, bool *waited);
extern bool reader_update_key(RowReader *r, int nkeys, const char **keys,
							  ReaderUpdate update, void *arg, bool *waited);
extern bool reader_update_in_snapshot(RowReader *r, int nkeys, const char **keys,
									  ReaderUpdate update, void *arg, bool *waited);
extern void reader_push_snapshot(void);
typedef struct RowVersion RowVersion;
extern RowVersion *reader_find(RowReader *r, int nkeys, const char **keys, Datum *values,
							   bool *nulls);
extern TM_Result reader_update_version(RowVersion *v, RowReader *r, int nkeys,
									   const char **keys, ReaderUpdate update, void *arg,
									   bool *waited);
extern void reader_release(RowVersion *v);
extern bool reader_lock(RowReader *r, int nkeys, const char **keys, LockTupleMode mode,
						Datum *values, bool *nulls, bool *waited, ItemPointer locked_tid);
extern Relation reader_open(RowReader *r, LOCKMODE lockmode, Relation *idx);
extern bool reader_has(const RowReader *r, int i, Datum *value, bool *isnull);
extern bool reader_unfiltered(RowReader *r);
extern AttrNumber column_of(TupleDesc desc, const char *name);
extern bool reader_get(RowReader *r, int nkeys, const char **keys, Snapshot snapshot,
					   Datum *values, bool *nulls);

/* write.c: rows written as INSERT and UPDATE statements would */
extern void write_insert(Relation rel, Datum *values, bool *nulls, const bool *set);
extern void write_update(Relation rel, TupleTableSlot *oldslot, const Datum *values,
						 const bool *nulls, const bool *replace);
typedef struct TableWrite TableWrite;
extern TableWrite *write_update_begin(Relation rel, const bool *replace);
extern TM_Result write_update_row(TableWrite *w, TupleTableSlot *oldslot, const Datum *values,
								  const bool *nulls, const bool *replace, bool locked,
								  bool *waited);
extern void write_update_end(TableWrite *w);

/* catalog.c */
typedef struct ModelInfo
{
	const char *model;
	char	   *provider;
	Credit		input_price;	/* per 1M input tokens */
	Credit		output_price;	/* per 1M output tokens */
	Credit		request_price;	/* per call */
	bool		is_fallback;
} ModelInfo;

extern bool catalog_lookup_model(const char *model, bool any, ModelInfo *info);
extern void catalog_get_model(const char *model, ModelInfo *info);
extern char *catalog_fallback_model(const char *provider);
extern Credit catalog_cost(const ModelInfo *info, int64 input_tokens, int64 output_tokens);

/* a row of allowed_models, before availability */
typedef struct OrgModel
{
	char	   *provider;
	char	   *model;
	char	   *display_name;
	bool		is_fallback;
	Credit		input_price;
	Credit		output_price;
} OrgModel;

/* cache.c: backend-local copies of the configuration tables */
extern int	cache_org_models(const char *org_id, OrgModel **models);
extern bool cache_model(const char *model, bool any, ModelInfo *info);
extern char *cache_fallback(const char *provider);
extern bool cache_org_exists(const char *org_id);
extern bool cache_auto_recharge(const char *org_id, Credit *below);
extern bool cache_provider_enabled(const char *org_id, const char *provider);
extern int	cache_thresholds(const char *org_id, int *thresholds);
extern int	cache_org_stripes(const char *org_id);
extern int	cache_pool_stripes(const char *org_id);
extern void cache_note_pool_stripes(const char *org_id, int stripes);
extern bool cache_pool_empty(const char *org_id);
extern void cache_note_pool_empty(const char *org_id, bool empty);
/* a member's configuration: personal cap, team and the team's cap */
typedef struct MemberConfig
{
	bool		has_cap;
	Credit		cap;
	char	   *team_id;		/* NULL: in no team */
	bool		team_has_cap;
	Credit		team_cap;
} MemberConfig;

extern bool cache_member(const char *org_id, const char *user_id, MemberConfig *config);
extern bool cache_schema_1_1(void);
extern bool cache_team_cap(const char *org_id, const char *team_id, Credit *cap);

/* ledger.c */
typedef struct LedgerEntry
{
	int64		entry_id;
	const char *org_id;
	const char *kind;
	TimestampTz period_start;
	const char *user_id;
	const char *model;
	int64		input_tokens;	/* -1: none */
	int64		output_tokens;	/* -1: none */
	Credit		cost;
	Credit		charged;
	Credit		shortfall;
	Credit		from_allowance;
	Credit		from_topup;
	Credit		reserved_change;
	Credit		available_after;
	const char *request_id;
	int64		hold_id;		/* 0: none */
	const char *team_id;		/* the team charged, NULL: none */
} LedgerEntry;

extern void ledger_entry_init(LedgerEntry *e, const char *org_id, const char *kind);
extern void ledger_lock_request(const char *org_id, const char *request_id);
extern bool ledger_find_request(const char *org_id, const char *request_id, LedgerEntry *entry);
extern void ledger_append(LedgerEntry *entry);

/* pool.c: the only module that knows how an org's balance is stored */
typedef struct OrgState
{
	const char *org_id;
	bool		has_credits;	/* the whole pool's available credits are > 0 */
	TimestampTz period_end;		/* when the period ends: the next one starts */
} OrgState;

typedef struct MemberState
{
	bool		has_cap;
	Credit		cap;
	Credit		used;			/* drawn from the pool this period */
	Credit		reserved;		/* held by the member's open holds */
	/* the member's team, and what it drew and holds if it has a cap */
	const char *team_id;
	bool		team_has_cap;
	Credit		team_cap;
	Credit		team_used;
	Credit		team_reserved;
} MemberState;

/* An org's pool, locked for this transaction. */
typedef struct PoolState
{
	const char *org_id;
	TimestampTz period_start;
	Credit		allowance;
	Credit		allowance_used;
	Credit		topup;
	Credit		topup_used;
	Credit		reserved;
	int			alert_level;
	int64		folded_calls;	/* debits folded in from the stripes */
	Credit		folded_shortfall;	/* and their shortfall */
	bool		stripes_locked; /* the stripes were not empty: folded, locked */
	int			stripes;		/* pools.stripes: how many the pool is split over */
	bool		contended;		/* this session had to wait for the pool lock */
	int			waits;			/* pools.waits: recent such waits (escrow_stripes) */
	int64		row_calls;		/* pools.calls as locked */
	bool		escrow;			/* escrow the stripes anew (a debit) */
	bool		optimistic;		/* the row was read, not locked: pool_try_debit() ... */
	RowVersion *row_version;	/* ... this version of it */
	ItemPointerData row_tid;	/* the pools row version locked ... */
	CommandId	row_cid;		/* ... and the command counter then */
	/* the member being charged, read under the lock by pool_limit() */
	const char *user_id;
	bool		has_cap;
	Credit		cap_left;
	/* the team charged (NULL: none); what its cap leaves, if it has one */
	const char *team_id;
	bool		team_has_cap;
	Credit		team_cap_left;
} PoolState;

typedef struct PoolCharge
{
	/* in */
	Credit		cost;
	bool		is_fallback;
	Credit		release;		/* a settled hold's reservation, else 0 */
	/* out */
	Credit		charged;
	Credit		shortfall;
} PoolCharge;

extern void pool_check_org(const char *org_id);
extern void pool_get_org(const char *org_id, OrgState *org);
extern bool pool_stripes_used(const char *org_id, Credit *used);
extern void pool_get_member(const char *org_id, const char *user_id, bool active_only,
							MemberState *member);
extern bool member_cap_reached(const MemberState *member);
extern bool team_cap_reached(const MemberState *member);
extern void check_provider_enabled(const char *org_id, const ModelInfo *model);

/* escrow stripes of each org's allowance (see 030_orgs.sql) */
#define CREDITS_STRIPES 32

extern bool pool_fast_debit(const char *org_id, LedgerEntry *e, bool is_fallback);
extern void pool_lock(const char *org_id, PoolState *ps);
extern Credit pool_available(const PoolState *ps);
extern Credit pool_limit(PoolState *ps, const char *user_id);
extern Credit pool_limit_in_team(PoolState *ps, const char *user_id, const char *team_id);
extern void pool_set_team(PoolState *ps, const char *team_id);
extern bool pool_charge(PoolState *ps, PoolCharge *c, LedgerEntry *e);
extern bool pool_try_debit(const char *org_id, const char *user_id, PoolCharge *c,
						   LedgerEntry *e);
extern void pool_reserve(PoolState *ps, Credit amount, TimestampTz expires_at, LedgerEntry *e);
extern void pool_release(PoolState *ps, Credit amount, LedgerEntry *e);

/* events.c */
extern int	events_thresholds(const char *org_id, int old_level, TimestampTz period_start,
							  Credit spent, Credit total, Credit available);
extern bool events_would_cross(const char *org_id, int old_level, Credit spent,
							   Credit total);

/* debit.c */
extern Datum debit_result(FunctionCallInfo fcinfo, const LedgerEntry *entry, bool replayed);
extern void check_replay(const LedgerEntry *prev, const char *kind, const char *user_id,
						 const char *model, int64 input_tokens, int64 output_tokens);

/* periods.c */
extern bool period_is_valid(const Interval *period);
extern void check_period(const Interval *period);
extern void check_time_zone(text *zone);
extern TimestampTz period_start(TimestampTz anchor, const Interval *period, text *zone, int64 k);
extern int64 period_index(TimestampTz anchor, const Interval *period, text *zone, TimestampTz as_of);
extern int64 billing_period_of(TimestampTz anchor, const Interval *period, text *zone,
							   TimestampTz as_of, TimestampTz *start, TimestampTz *end);

#endif							/* CREDITS_H */
