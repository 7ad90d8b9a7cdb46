-- Structural integrity of every table and btree index of schema credits,
-- with amcheck (shipped with the server).  Prints one line per problem and
-- nothing when all is well; test scripts fail on any output.
--   verify_heapam: every heap page and tuple of each table (and its TOAST)
--   bt_index_parent_check(index, heapallindexed => true): each btree's
--     structure, and that every heap tuple has its index entry
CREATE EXTENSION IF NOT EXISTS amcheck;
SELECT 'heap ' || c.oid::regclass || ' block ' || v.blkno || ' offset ' || coalesce(v.offnum, 0)
       || ': ' || v.msg
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
       LATERAL verify_heapam(c.oid, check_toast => true) v
 WHERE n.nspname = 'credits' AND c.relkind = 'r';
SELECT count(bt_index_parent_check(c.oid, true)) AS btree_indexes_checked
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_am a ON a.oid = c.relam
  JOIN pg_index i ON i.indexrelid = c.oid
 WHERE n.nspname = 'credits' AND c.relkind = 'i' AND a.amname = 'btree' AND i.indisvalid
\gset
SELECT 'amcheck: no btree index was checked' WHERE :btree_indexes_checked = 0;
