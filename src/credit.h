/*
 * credit.h
 *	  The credits.credit type: the stable interface for other extensions.
 *
 * An extension that wants to read or produce credits.credit values (take one
 * as an argument, return one, store or compute amounts) includes this header
 * and nothing else of the credits extension.  `make install` puts it in the
 * server's include directory:
 *
 *		#include "postgres.h"
 *		#include "extension/credits/credit.h"
 *
 * A credit is a signed 64-bit count of micro-credits (CREDIT_SCALE of them
 * make one credit, CREDIT_DIGITS decimal places), passed by value like int8:
 * a Datum holds it as Int64GetDatum would.  This representation is part of
 * the interface and does not change.
 *
 * The macros need nothing at run time.  The functions are defined in
 * credits.so (which must be loaded: resolve them with, for instance,
 * load_external_function("$libdir/credits", "credit_add", true, NULL)).
 * Arithmetic that overflows raises "credit out of range" (22003).
 */
#ifndef CREDITS_CREDIT_H
#define CREDITS_CREDIT_H

#include "fmgr.h"

/* A credit amount: signed 64-bit count of micro-credits. */
typedef int64 Credit;

#define CREDIT_SCALE		INT64CONST(1000000)
#define CREDIT_DIGITS		6

#define DatumGetCredit(X)	((Credit) DatumGetInt64(X))
#define CreditGetDatum(X)	Int64GetDatum(X)
#define PG_GETARG_CREDIT(n)	DatumGetCredit(PG_GETARG_DATUM(n))
#define PG_RETURN_CREDIT(x)	return CreditGetDatum(x)

/* the amount as credits.credit's text output shows it, palloc'd */
extern char *credit_to_cstring(Credit value);

/* a + b and a - b; overflow is credit_out_of_range() */
extern Credit credit_add(Credit a, Credit b);
extern Credit credit_sub(Credit a, Credit b);

/* ERROR "credit out of range" (22003) */
extern void credit_out_of_range(void) pg_attribute_noreturn();

#endif							/* CREDITS_CREDIT_H */
