-- Privileges (DESIGN §7): nothing for PUBLIC, then the three sets.
-- Each part grants what it adds to meisa_app / meisa_admin / meisa_reader;
-- this last part takes everything away from PUBLIC.
REVOKE ALL ON SCHEMA meisa FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA meisa FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA meisa FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA meisa FROM PUBLIC;
DO $revoke$
DECLARE f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
           JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
           JOIN pg_catalog.pg_extension e ON d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = e.oid
           WHERE e.extname = 'meisa' AND d.deptype = 'e'
  LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
  END LOOP;
END
$revoke$;

GRANT USAGE ON SCHEMA meisa TO meisa_app, meisa_admin, meisa_reader;
-- admin configures: automations, sequences, steps, templates; reads everything
GRANT SELECT ON ALL TABLES IN SCHEMA meisa TO meisa_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON meisa.automations, meisa.sequences,
      meisa.sequence_steps, meisa.templates TO meisa_admin;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA meisa TO meisa_admin;
