-- credits_router--1.1.sql: the credits API of a router database, over
-- shard databases that each run the credits extension (PL/Proxy).
--
-- Applications call the same credits.* functions, with the same signatures,
-- results and SQLSTATEs, as on a single node; each call runs on the
-- partition that holds its org (hashtext(org_id)), on the partition a hold
-- id names, or on every partition (catalog changes, reports, jobs).  The
-- cluster is the SQL/MED server credits_cluster (one option pK per
-- partition, a power of two of them); see README "Scale-out with PL/Proxy".
--
-- Layers, for every routed function:
--   credits.F                 the public function (same signature as on a
--                             node): PL/pgSQL, SECURITY DEFINER with its
--                             search_path pinned; maps a partition that
--                             cannot be reached to 08001/08006
--   credits_router._p_F       the PL/Proxy function that runs the call on
--                             its partition(s), in the shard's own credits
--   credits_router.org_hash   checks the org id (22004, 22023) and the
--                             session's credits.org_id (42501) on the
--                             router, before anything is sent
-- Nothing here writes on the router: every call commits on its shard on its
-- own (there is no transaction spanning the router).

\echo Use "CREATE EXTENSION credits_router" to load this file. \quit

-- ---------------------------------------------------------------------------
-- The credits.credit type, its operators, casts and aggregates: credits'
-- own definitions (src/sql/010_credit.sql, which the Makefile puts here
-- when it builds this script from src/router/), over the same C
-- library ($libdir/credits), so that amounts travel as text and mean the
-- same on the router and on every shard.  test/scripts/router.sh checks
-- that router and shard define the same functions, operators, casts and
-- aggregates.
-- ---------------------------------------------------------------------------

