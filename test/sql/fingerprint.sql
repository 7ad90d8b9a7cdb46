-- A catalog fingerprint of the credits extension: one line per fact about
-- every object the extension owns (and what hangs off its tables), sorted.
-- test/scripts/update.sh compares an updated 1.0 with a fresh install.
SELECT line FROM (
  -- every member object of the extension
  SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid) AS line
    FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
   WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'credits' AND d.deptype = 'e'
  UNION ALL
  -- comments on them
  SELECT 'comment ' || pg_describe_object(d.classid, d.objid, 0) || ': ' || ds.description
    FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
    JOIN pg_description ds ON ds.classoid = d.classid AND ds.objoid = d.objid
   WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'credits' AND d.deptype = 'e'
  UNION ALL
  -- functions: signature, result, defaults, volatility, security, settings, ACL, body
  SELECT 'function ' || p.oid::regprocedure || ' (' || pg_get_function_arguments(p.oid) || ') -> '
         || pg_get_function_result(p.oid) || ' kind ' || p.prokind::text || ' lang ' || l.lanname
         || ' vol ' || p.provolatile::text || ' strict ' || p.proisstrict || ' secdef ' || p.prosecdef
         || ' leakproof ' || p.proleakproof || ' parallel ' || p.proparallel::text
         || ' rows ' || p.prorows || ' cost ' || p.procost
         || ' config ' || coalesce(p.proconfig::text, '-') || ' acl ' || coalesce(p.proacl::text, '-')
         || ' owner ' || pg_get_userbyid(p.proowner)
         || ' src ' || md5(p.prosrc) || ' bin ' || coalesce(p.probin, '-')
    FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
   WHERE p.pronamespace = 'credits'::regnamespace
  UNION ALL
  -- relations: kind, options, ACL, row security
  SELECT 'relation ' || c.oid::regclass || ' kind ' || c.relkind::text
         || ' options ' || coalesce(c.reloptions::text, '-') || ' acl ' || coalesce(c.relacl::text, '-')
         || ' rls ' || c.relrowsecurity || ' force ' || c.relforcerowsecurity
         || ' persistence ' || c.relpersistence::text || ' replident ' || c.relreplident::text
    FROM pg_class c WHERE c.relnamespace = 'credits'::regnamespace
  UNION ALL
  -- columns, in order, with type, nullability, default, identity, generation, ACL
  SELECT 'column ' || a.attrelid::regclass || '.' || a.attnum || ' ' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod) || ' notnull ' || a.attnotnull
         || ' default ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '-')
         || ' identity ' || a.attidentity::text || ' generated ' || a.attgenerated::text
         || ' collation ' || a.attcollation || ' acl ' || coalesce(a.attacl::text, '-')
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
   WHERE c.relnamespace = 'credits'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
   WHERE c.relnamespace = 'credits'::regnamespace
  UNION ALL
  SELECT 'constraint ' || co.conrelid::regclass || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
         || ' deferrable ' || co.condeferrable || ' deferred ' || co.condeferred || ' valid ' || co.convalidated
    FROM pg_constraint co WHERE co.connamespace = 'credits'::regnamespace
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
   WHERE c.relnamespace = 'credits'::regnamespace AND NOT t.tgisinternal
  UNION ALL
  SELECT 'policy ' || pol.schemaname || '.' || pol.tablename || ' ' || pol.policyname || ' '
         || pol.permissive || ' ' || pol.roles::text || ' ' || pol.cmd || ' '
         || coalesce(pol.qual, '-') || ' ' || coalesce(pol.with_check, '-')
    FROM pg_policies pol WHERE pol.schemaname = 'credits'
  UNION ALL
  SELECT 'view ' || c.oid::regclass || ' ' || pg_get_viewdef(c.oid)
    FROM pg_class c WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind::text IN ('v', 'm')
  UNION ALL
  SELECT 'sequence ' || s.seqrelid::regclass || ' ' || format_type(s.seqtypid, NULL) || ' '
         || s.seqstart || ' ' || s.seqincrement || ' ' || s.seqmax || ' ' || s.seqmin || ' '
         || s.seqcache || ' ' || s.seqcycle
    FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
   WHERE c.relnamespace = 'credits'::regnamespace
  UNION ALL
  SELECT 'type ' || t.oid::regtype || ' ' || t.typtype::text || ' ' || t.typlen || ' ' || t.typbyval || ' '
         || t.typalign::text || ' ' || t.typstorage::text || ' ' || t.typcategory::text || ' ' || t.typispreferred
         || ' ' || t.typinput::regproc || ' ' || t.typoutput::regproc || ' ' || t.typreceive::regproc
         || ' ' || t.typsend::regproc || ' acl ' || coalesce(t.typacl::text, '-')
    FROM pg_type t WHERE t.typnamespace = 'credits'::regnamespace
  UNION ALL
  SELECT 'operator ' || o.oid::regoperator || ' ' || o.oprcode::regproc || ' com '
         || o.oprcom::regoperator || ' neg ' || o.oprnegate::regoperator || ' rest ' || o.oprrest::regproc
         || ' join ' || o.oprjoin::regproc || ' hashes ' || o.oprcanhash || ' merges ' || o.oprcanmerge
    FROM pg_operator o WHERE o.oprnamespace = 'credits'::regnamespace
  UNION ALL
  SELECT 'aggregate ' || a.aggfnoid::regprocedure || ' ' || a.aggtransfn::regproc || ' '
         || a.aggfinalfn::regproc || ' ' || a.aggcombinefn::regproc || ' ' || a.aggtranstype::regtype
         || ' ' || a.aggsortop::regoperator || ' ' || coalesce(a.agginitval, '-')
    FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
   WHERE p.pronamespace = 'credits'::regnamespace
  UNION ALL
  SELECT 'cast ' || ca.castsource::regtype || ' -> ' || ca.casttarget::regtype || ' '
         || ca.castfunc::regprocedure || ' ' || ca.castcontext::text || ' ' || ca.castmethod::text
    FROM pg_cast ca
   WHERE ca.castsource IN (SELECT oid FROM pg_type WHERE typnamespace = 'credits'::regnamespace)
      OR ca.casttarget IN (SELECT oid FROM pg_type WHERE typnamespace = 'credits'::regnamespace)
  UNION ALL
  SELECT 'opclass ' || am.amname || ' ' || oc.opcname || ' ' || oc.opcintype::regtype || ' default '
         || oc.opcdefault
    FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
   WHERE oc.opcnamespace = 'credits'::regnamespace
  UNION ALL
  SELECT 'amop ' || opf.opfname || ' ' || ao.amopstrategy || ' ' || ao.amopopr::regoperator
    FROM pg_amop ao JOIN pg_opfamily opf ON opf.oid = ao.amopfamily
   WHERE opf.opfnamespace = 'credits'::regnamespace
  UNION ALL
  SELECT 'amproc ' || opf.opfname || ' ' || ap.amprocnum || ' ' || ap.amproc::regprocedure
    FROM pg_amproc ap JOIN pg_opfamily opf ON opf.oid = ap.amprocfamily
   WHERE opf.opfnamespace = 'credits'::regnamespace
  UNION ALL
  SELECT 'schema ' || n.nspname || ' acl ' || coalesce(n.nspacl::text, '-') || ' owner '
         || pg_get_userbyid(n.nspowner)
    FROM pg_namespace n WHERE n.nspname = 'credits'
  UNION ALL
  -- tables whose rows pg_dump keeps, with their filters
  SELECT 'config_dump ' || cfg::regclass || ' ' || coalesce(e.extcondition[k], '-')
    FROM pg_extension e, unnest(e.extconfig) WITH ORDINALITY AS u(cfg, k)
   WHERE e.extname = 'credits'
  UNION ALL
  SELECT 'default_acl ' || coalesce(da.defaclrole::regrole::text, '-') || ' ' || da.defaclobjtype::text
         || ' ' || da.defaclacl::text
    FROM pg_default_acl da WHERE da.defaclnamespace = 'credits'::regnamespace
) f
ORDER BY line COLLATE "C";
