-- test/hardening/sql/catalog_describe.sql: an ordered, OID-free description
-- of everything meisa installs, one line per fact (upgrade.sh diffs it
-- between a fresh install and every update path).  Run with psql -At.
SET search_path = pg_catalog;
WITH ext AS (SELECT e.* FROM pg_extension e WHERE e.extname = 'meisa'),
members AS (
  SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
   WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype::text = 'e'),
rels AS (
  SELECT c.* FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'meisa')),
procs AS (
  SELECT p.* FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid)
SELECT line FROM (
  SELECT 'extension|' || extversion || '|' || extrelocatable || '|' || extnamespace::regnamespace::text
         || '|' || extowner::regrole::text AS line FROM ext
  UNION ALL
  SELECT 'extconfig|' || c.cfg::regclass::text || '|' || coalesce(c.cond, '<null>')
    FROM ext, unnest(ext.extconfig, ext.extcondition) AS c(cfg, cond)
  UNION ALL
  SELECT 'member|' || pg_describe_object(m.classid, m.objid, m.objsubid) FROM members m
  UNION ALL
  SELECT 'comment|' || pg_describe_object(m.classid, m.objid, m.objsubid) || '|' || d.description
    FROM members m JOIN pg_description d ON d.classoid = m.classid AND d.objoid = m.objid
  UNION ALL
  SELECT 'comment|' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || '|' || d.description
    FROM pg_description d JOIN rels r ON d.classoid = 'pg_class'::regclass AND d.objoid = r.oid
  UNION ALL
  SELECT 'schema|' || n.nspname || '|' || n.nspowner::regrole::text || '|' || coalesce((SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(n.nspacl) i), '<null>')
    FROM pg_namespace n WHERE n.nspname = 'meisa'
  UNION ALL
  SELECT 'function|' || p.oid::regprocedure::text
         || '|args=' || pg_get_function_arguments(p.oid)
         || '|returns=' || coalesce(pg_get_function_result(p.oid), '<none>')
         || '|kind=' || p.prokind::text || '|secdef=' || p.prosecdef || '|volatile=' || p.provolatile::text
         || '|parallel=' || p.proparallel::text || '|strict=' || p.proisstrict || '|leakproof=' || p.proleakproof
         || '|cost=' || p.procost || '|rows=' || p.prorows || '|retset=' || p.proretset
         || '|lang=' || l.lanname || '|owner=' || p.proowner::regrole::text
         || '|config=' || coalesce(p.proconfig::text, '<null>')
         || '|acl=' || coalesce((SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(p.proacl) i), '<null>')
         || '|bin=' || coalesce(p.probin, '<null>') || '|src=' || md5(p.prosrc)
    FROM procs p JOIN pg_language l ON l.oid = p.prolang
  UNION ALL
  SELECT 'relation|' || r.oid::regclass::text || '|kind=' || r.relkind::text || '|persistence=' || r.relpersistence::text
         || '|owner=' || r.relowner::regrole::text || '|options=' || coalesce(r.reloptions::text, '<null>')
         || '|acl=' || coalesce((SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(r.relacl) i), '<null>') || '|rowsecurity=' || r.relrowsecurity
         || '|replident=' || r.relreplident::text || '|natts=' || r.relnatts
    FROM rels r
  UNION ALL
  SELECT 'column|' || a.attrelid::regclass::text || '|' || lpad(a.attnum::text, 3, '0') || '|' || a.attname
         || '|' || format_type(a.atttypid, a.atttypmod) || '|notnull=' || a.attnotnull
         || '|default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '<none>')
         || '|identity=' || a.attidentity::text || '|generated=' || a.attgenerated::text
         || '|compression=' || a.attcompression::text || '|storage=' || a.attstorage::text
         || '|collation=' || coalesce(NULLIF(a.attcollation, 0)::regcollation::text, '<none>')
         || '|acl=' || coalesce((SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(a.attacl) i), '<null>') || '|dropped=' || a.attisdropped
    FROM pg_attribute a JOIN rels r ON r.oid = a.attrelid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
   WHERE a.attnum > 0
  UNION ALL
  SELECT 'constraint|' || co.conrelid::regclass::text || '|' || co.conname || '|' || co.contype::text
         || '|' || pg_get_constraintdef(co.oid) || '|deferrable=' || co.condeferrable
         || '|validated=' || co.convalidated
    FROM pg_constraint co JOIN rels r ON r.oid = co.conrelid
  UNION ALL
  SELECT 'index|' || pg_get_indexdef(i.indexrelid) || '|unique=' || i.indisunique || '|primary=' || i.indisprimary
    FROM pg_index i JOIN rels r ON r.oid = i.indrelid
  UNION ALL
  SELECT 'trigger|' || pg_get_triggerdef(t.oid) || '|enabled=' || t.tgenabled::text
    FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal
  UNION ALL
  SELECT 'viewdef|' || r.relname || '|' || lpad(v.n::text, 3, '0') || '|' || v.l
    FROM rels r, regexp_split_to_table(pg_get_viewdef(r.oid), E'\n') WITH ORDINALITY AS v(l, n)
   WHERE r.relkind::text = 'v'
  UNION ALL
  SELECT 'sequence|' || s.schemaname || '.' || s.sequencename || '|' || s.data_type::text || '|start=' || s.start_value
         || '|min=' || s.min_value || '|max=' || s.max_value || '|inc=' || s.increment_by || '|cycle=' || s.cycle
         || '|cache=' || s.cache_size || '|owner=' || s.sequenceowner
    FROM pg_sequences s WHERE s.schemaname = 'meisa'
  UNION ALL
  SELECT 'sequence_owned_by|' || d.objid::regclass::text || '|' || d.refobjid::regclass::text || '.'
         || (SELECT attname FROM pg_attribute WHERE attrelid = d.refobjid AND attnum = d.refobjsubid) || '|' || d.deptype::text
    FROM pg_depend d JOIN rels r ON r.oid = d.objid
   WHERE d.classid = 'pg_class'::regclass AND r.relkind::text = 'S' AND d.refclassid = 'pg_class'::regclass
  UNION ALL
  SELECT 'init_privs|' || pg_describe_object(ip.classoid, ip.objoid, ip.objsubid) || '|' || ip.privtype::text
         || '|' || coalesce((SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(ip.initprivs) i), '<null>')
    FROM pg_init_privs ip
   WHERE (ip.classoid, ip.objoid) IN (SELECT m.classid, m.objid FROM members m)
      OR (ip.classoid = 'pg_class'::regclass AND ip.objoid IN (SELECT oid FROM rels))
  UNION ALL
  -- (internal RI trigger names carry an OID)
  SELECT 'dependency|' || regexp_replace(pg_describe_object(d.classid, d.objid, d.objsubid),
                                         'RI_ConstraintTrigger_([ac])_[0-9]+', 'RI_ConstraintTrigger_\1_N') || ' -> '
         || pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) || '|' || d.deptype::text
    FROM pg_depend d
   WHERE d.deptype::text <> 'e'
     AND ((d.classid, d.objid) IN (SELECT m.classid, m.objid FROM members m)
          OR (d.classid = 'pg_class'::regclass AND d.objid IN (SELECT oid FROM rels))
          OR (d.classid = 'pg_rewrite'::regclass AND d.objid IN (SELECT rw.oid FROM pg_rewrite rw JOIN rels r ON r.oid = rw.ev_class))
          OR (d.classid = 'pg_constraint'::regclass AND d.objid IN (SELECT co.oid FROM pg_constraint co JOIN rels r ON r.oid = co.conrelid))
          OR (d.classid = 'pg_trigger'::regclass AND d.objid IN (SELECT t.oid FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid))
          OR (d.classid = 'pg_attrdef'::regclass AND d.objid IN (SELECT ad.oid FROM pg_attrdef ad JOIN rels r ON r.oid = ad.adrelid)))
  UNION ALL
  SELECT 'role|' || ro.rolname || '|super=' || ro.rolsuper || '|inherit=' || ro.rolinherit || '|createrole=' || ro.rolcreaterole
         || '|createdb=' || ro.rolcreatedb || '|login=' || ro.rolcanlogin || '|replication=' || ro.rolreplication
         || '|bypassrls=' || ro.rolbypassrls || '|connlimit=' || ro.rolconnlimit
    FROM pg_roles ro WHERE ro.rolname LIKE 'meisa\_%'
  UNION ALL
  SELECT 'role_member|' || am.roleid::regrole::text || '|' || am.member::regrole::text || '|admin=' || am.admin_option
    FROM pg_auth_members am
   WHERE am.roleid IN (SELECT oid FROM pg_roles WHERE rolname LIKE 'meisa\_%')
      OR am.member IN (SELECT oid FROM pg_roles WHERE rolname LIKE 'meisa\_%')
  UNION ALL
  SELECT 'grant|' || g.grantee || '|' || g.table_schema || '.' || g.table_name || '|' || g.privilege_type
    FROM information_schema.role_table_grants g
   WHERE g.grantee LIKE 'meisa\_%' OR (g.table_schema = 'meisa' AND g.grantee = 'PUBLIC')
  UNION ALL
  SELECT 'grant|' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END || '|'
         || p.oid::regprocedure::text || '|' || a.privilege_type || '|grantable=' || a.is_grantable
    FROM procs p, aclexplode(p.proacl) a
  UNION ALL
  SELECT 'public_execute|' || p.oid::regprocedure::text FROM procs p WHERE has_function_privilege('public', p.oid, 'EXECUTE')
) x
ORDER BY line COLLATE "C";
