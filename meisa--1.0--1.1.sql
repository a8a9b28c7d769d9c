\echo Use "ALTER EXTENSION meisa UPDATE TO '1.1'" to load this file. \quit
-- meisa 1.0 -> 1.1 upgrade script.
-- 1.1 makes dumps restorable and data checkable:
--  * the identity sequences of every meisa table are registered with
--    pg_extension_config_dump, so pg_dump saves their positions and a
--    restored database continues numbering after the restored rows (without
--    it the next insert after a restore reuses id 1 and fails with a
--    duplicate key);
--  * meisa.check_invariants() lists violations of the data invariants
--    (one contact per email / external_id, one active enrolment per contact
--    and sequence, no sequence step queued twice for one enrolment, no
--    message without a lease in 'sending', ...), for health checks after a
--    crash, a restore or an upgrade.  Granted to meisa_admin.

-- Identity sequences of the registered (config) tables: dump their state too.
DO $seqs$
DECLARE s regclass;
BEGIN
  FOR s IN
    SELECT d.objid::regclass
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_class seq ON seq.oid = d.objid AND seq.relkind = 'S'
      JOIN pg_catalog.pg_class tab ON tab.oid = d.refobjid
      JOIN pg_catalog.pg_namespace n ON n.oid = tab.relnamespace
     WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.deptype IN ('i', 'a')
       AND n.nspname = 'meisa'
       AND tab.oid = ANY (SELECT pg_catalog.unnest(e.extconfig)
                            FROM pg_catalog.pg_extension e WHERE e.extname = 'meisa')
     ORDER BY 1
  LOOP
    PERFORM pg_catalog.pg_extension_config_dump(s, '');
  END LOOP;
END
$seqs$;

-- API: Admin. One row per violated invariant (no rows = healthy).
CREATE FUNCTION meisa.check_invariants()
RETURNS TABLE (invariant text, violations bigint, example text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, meisa, pg_temp
AS $fn$
  SELECT 'one contact per email', count(*), min(e)
    FROM (SELECT lower(btrim(c.email)) AS e FROM meisa.contacts c
           GROUP BY 1 HAVING count(*) > 1) x
  HAVING count(*) > 0
  UNION ALL
  SELECT 'one contact per external_id', count(*), min(e)
    FROM (SELECT c.external_id AS e FROM meisa.contacts c
           WHERE c.external_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) x
  HAVING count(*) > 0
  UNION ALL
  SELECT 'emails stored trimmed and lower-case', count(*), min(c.email)
    FROM meisa.contacts c WHERE c.email <> lower(btrim(c.email))
  HAVING count(*) > 0
  UNION ALL
  SELECT 'one active enrolment per contact and sequence', count(*), min(k)
    FROM (SELECT e.contact_id || '/' || e.sequence_id AS k FROM meisa.enrollments e
           WHERE e.status = 'active' GROUP BY e.contact_id, e.sequence_id HAVING count(*) > 1) x
  HAVING count(*) > 0
  UNION ALL
  SELECT 'enrolment step not beyond the last step', count(*), min(e.id::text)
    FROM meisa.enrollments e
   WHERE e.current_step > (SELECT coalesce(max(s.position), 0) FROM meisa.sequence_steps s
                            WHERE s.sequence_id = e.sequence_id)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'each enrolment step queued at most once', count(*), min(k)
    FROM (SELECT m.enrollment_id || '/' || m.step_position AS k FROM meisa.messages m
           WHERE m.enrollment_id IS NOT NULL AND m.step_position IS NOT NULL
           GROUP BY m.enrollment_id, m.step_position HAVING count(*) > 1) x
  HAVING count(*) > 0
  UNION ALL
  SELECT 'message in sending holds a lease', count(*), min(m.id::text)
    FROM meisa.messages m WHERE m.status = 'sending' AND m.lease_until IS NULL
  HAVING count(*) > 0
  UNION ALL
  SELECT 'sent message has a send time', count(*), min(m.id::text)
    FROM meisa.messages m WHERE m.status = 'sent' AND m.sent_at IS NULL
  HAVING count(*) > 0
  UNION ALL
  SELECT 'message ids unique', count(*), min(k)
    FROM (SELECT m.message_id AS k FROM meisa.messages m GROUP BY 1 HAVING count(*) > 1) x
  HAVING count(*) > 0
  UNION ALL
  SELECT 'event ids unique', count(*), min(k)
    FROM (SELECT v.event_id AS k FROM meisa.events v WHERE v.event_id IS NOT NULL
           GROUP BY 1 HAVING count(*) > 1) x
  HAVING count(*) > 0
$fn$;
COMMENT ON FUNCTION meisa.check_invariants() IS
  'meisa data invariants: one row per violated invariant (count and an example); no rows means healthy';
REVOKE ALL ON FUNCTION meisa.check_invariants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION meisa.check_invariants() TO meisa_admin;
