/*
 * debit.c
 *	  credits.credit_debit: record a completed call and charge the pool.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "credits.h"

/*
 * Attribute positions of credits.debit_result (050_ledger.sql): in the same
 * order as the type's attributes.
 */
enum
{
	DR_ENTRY_ID, DR_MODEL, DR_COST, DR_CHARGED, DR_SHORTFALL, DR_AVAILABLE, DR_EXHAUSTED,
	DR_REPLAYED,
	DR_NCOLS
};

/* Build a credits.debit_result from a ledger entry. */
Datum
debit_result(FunctionCallInfo fcinfo, const LedgerEntry *e, bool replayed)
{
	Datum		values[DR_NCOLS];
	bool		nulls[DR_NCOLS] = {false};

	values[DR_ENTRY_ID] = Int64GetDatum(e->entry_id);
	values[DR_MODEL] = CStringGetTextDatum(e->model);
	values[DR_COST] = CreditGetDatum(e->cost);
	values[DR_CHARGED] = CreditGetDatum(e->charged);
	values[DR_SHORTFALL] = CreditGetDatum(e->shortfall);
	values[DR_AVAILABLE] = CreditGetDatum(e->available_after);
	values[DR_EXHAUSTED] = BoolGetDatum(e->available_after == 0);
	values[DR_REPLAYED] = BoolGetDatum(replayed);
	return row_result(fcinfo, values, nulls);
}

/*
 * A request_id seen before: the same call is replayed, anything else is
 * UC007.
 */
void
check_replay(const LedgerEntry *prev, const char *kind, const char *user_id,
			 const char *model, int64 input_tokens, int64 output_tokens)
{
	if (strcmp(prev->kind, kind) != 0 ||
		prev->user_id == NULL || strcmp(prev->user_id, user_id) != 0 ||
		prev->model == NULL || strcmp(prev->model, model) != 0 ||
		prev->input_tokens != input_tokens || prev->output_tokens != output_tokens)
		ereport(ERROR,
				(errcode(ERRCODE_CREDITS_REQUEST_REUSED),
				 errmsg("request_id \"%s\" of org \"%s\" was already used with different arguments",
						prev->request_id, prev->org_id),
				 errdetail("Ledger entry " INT64_FORMAT " is a %s by user \"%s\" of model \"%s\" with " INT64_FORMAT " input and " INT64_FORMAT " output tokens.",
						   prev->entry_id, prev->kind,
						   prev->user_id ? prev->user_id : "", prev->model ? prev->model : "",
						   prev->input_tokens, prev->output_tokens),
				 errhint("Use a new request_id for a different call.")));
}

/*
 * The debit of a member without a cap, in no team with a cap, without the
 * pool lock: on the fast path of a pool split into stripes, or as an UPDATE
 * of a pool that is one balance.  False when it must be made under the
 * lock, with nothing written.  A pool this backend has not charged yet is
 * read once, by the unlocked debit of a one-balance pool, which notes how
 * it is split: a split one is then charged on the fast path.
 */
static bool
unlocked_debit(const char *org_id, const char *user_id, PoolCharge *charge, LedgerEntry *e)
{
	if (cache_pool_stripes(org_id) < 0)
		return pool_try_debit(org_id, user_id, charge, e) ||
			pool_fast_debit(org_id, e, charge->is_fallback);
	return pool_fast_debit(org_id, e, charge->is_fallback) ||
		pool_try_debit(org_id, user_id, charge, e);
}

/*
 * credits.credit_debit(org_id, user_id, model, input_tokens,
 *						 output_tokens DEFAULT 0, request_id DEFAULT NULL)
 *	 RETURNS credits.debit_result
 */
PG_FUNCTION_INFO_V1(credits_credit_debit);
Datum
credits_credit_debit(PG_FUNCTION_ARGS)
{
	char	   *org_id = arg_id(fcinfo, 0, "org_id");
	char	   *user_id = arg_id(fcinfo, 1, "user_id");
	char	   *model = arg_id(fcinfo, 2, "model");
	int64		input_tokens = arg_tokens(fcinfo, 3, "input_tokens");
	int64		output_tokens = arg_tokens(fcinfo, 4, "output_tokens");
	char	   *request_id = PG_ARGISNULL(5) ? NULL : arg_id(fcinfo, 5, "request_id");
	MemberState member;
	ModelInfo	info;
	PoolState	ps;
	PoolCharge	charge;
	LedgerEntry e;
	Datum		result;

	check_writable("credit_debit()");
	SPI_connect();

	pool_check_org(org_id);
	pool_get_member(org_id, user_id, true, &member);
	catalog_get_model(model, &info);
	check_provider_enabled(org_id, &info);

	if (request_id != NULL)
	{
		ledger_lock_request(org_id, request_id);
		if (ledger_find_request(org_id, request_id, &e))
		{
			check_replay(&e, "debit", user_id, model, input_tokens, output_tokens);
			result = SPI_datumTransfer(debit_result(fcinfo, &e, true), false, -1);
			SPI_finish();
			PG_RETURN_DATUM(result);
		}
	}

	charge.cost = catalog_cost(&info, input_tokens, output_tokens);
	charge.is_fallback = info.is_fallback;
	charge.release = 0;

	ledger_entry_init(&e, org_id, "debit");
	e.user_id = user_id;
	e.model = model;
	e.input_tokens = input_tokens;
	e.output_tokens = output_tokens;
	e.request_id = request_id;
	e.cost = charge.cost;

	/*
	 * A member without a cap, in no team with a cap, whose stripe covers the
	 * cost: one row lock; of an org that is one balance: the pools row
	 * written as an UPDATE writes it, without a lock first.  Caps are checked
	 * under the pool lock.
	 */
	if (member.has_cap || member.team_has_cap ||
		!unlocked_debit(org_id, user_id, &charge, &e))
	{
		pool_lock(org_id, &ps);
		(void) pool_limit(&ps, user_id);

		ps.escrow = true;		/* so that the next debits take the fast path */

		/*
		 * A capped member's debits always take the pool lock: stripes do not
		 * relieve their waits, so those do not split the pool further (an
		 * org whose members are all capped, or in capped teams, stays one
		 * balance instead of folding and escrowing its stripes on every
		 * debit).
		 */
		if (member.has_cap || member.team_has_cap)
			ps.contended = false;
		(void) pool_charge(&ps, &charge, &e);
	}

	result = SPI_datumTransfer(debit_result(fcinfo, &e, false), false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
