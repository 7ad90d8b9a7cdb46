-- credits 1.0 -> 1.1
--
-- Every schema change of 1.1, applied to a database at 1.0 by
-- ALTER EXTENSION credits UPDATE.  test/scripts/update.sh proves that an
-- updated 1.0 has the same catalog as a fresh 1.1 install.
\echo Use "ALTER EXTENSION credits UPDATE TO '1.1'" to load this file. \quit

-- No planner switches: the charge and hold functions and cost() ran with
-- enable_seqscan = off, which priced any sequential scan so high that the
-- cache-loading queries crossed jit_above_cost and were JIT-compiled on the
-- first call of every connection.
ALTER FUNCTION credits.cost(text, bigint, bigint) RESET enable_seqscan;
ALTER FUNCTION credits.credit_debit(text, text, text, bigint, bigint, text) RESET enable_seqscan;
ALTER FUNCTION credits.credit_reserve(text, text, text, bigint, bigint, text, interval) RESET enable_seqscan;
ALTER FUNCTION credits.credit_settle(bigint, bigint, bigint) RESET enable_seqscan;
ALTER FUNCTION credits.credit_release(bigint) RESET enable_seqscan;
