\echo Use "ALTER EXTENSION meisa UPDATE TO '1.3'" to load this file. \quit
-- meisa 1.2 -> 1.3 upgrade script.  ALTER EXTENSION meisa UPDATE takes it
-- from 1.2, after meisa--1.0--1.2.sql from 1.0 and after meisa--1.1--1.2.sql
-- from 1.1; every path must end in the catalog of a fresh 1.3 install
-- (meisa--1.3.sql; test/hardening/upgrade.sh compares them).  What 1.3
-- changes is listed per section below.
-- Everything below is schema-qualified (operators as OPERATOR(pg_catalog.=),
-- functions as pg_catalog.f(...), casts to pg_catalog types): this script,
-- like every extension script, runs as superuser with the install schema in
-- search_path, and pg_catalog wins only for exact matches.

-- ==========================================================================
-- restore: pg_restore -j loads every row
-- ==========================================================================
-- (the same block as in meisa--1.3.sql)
-- (1.3) Parallel restore.  The foreign keys between these tables belong to
-- the extension: CREATE EXTENSION creates them before any data is loaded,
-- and pg_restore -j loads the tables' data in any order (pg_dump orders an
-- extension's table data by foreign key only in the archive's entry order,
-- not in the dependencies a parallel restore schedules by), so
-- meisa.events could load before meisa.contacts and fail on its foreign
-- key.  On every table with a foreign key, a statement of a restore-mode
-- session (check_function_bodies off, superuser: pg_dump's scripts and
-- pg_restore) runs with session_replication_role = replica: no foreign key
-- check and no row trigger fires for the dumped rows; the end trigger
-- (ENABLE REPLICA: it fires in replica mode) switches back after the
-- statement.  Any other write is checked as usual; meisa.check_invariants()
-- reports a row whose referenced row is missing.
CREATE FUNCTION meisa.restore_load() RETURNS trigger
    LANGUAGE C AS 'MODULE_PATHNAME', 'meisa_restore_load';
CREATE TRIGGER events_restore_load BEFORE INSERT ON meisa.events
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
CREATE TRIGGER events_restore_load_end AFTER INSERT ON meisa.events
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
ALTER TABLE meisa.events ENABLE REPLICA TRIGGER events_restore_load_end;
CREATE TRIGGER sequence_steps_restore_load BEFORE INSERT ON meisa.sequence_steps
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
CREATE TRIGGER sequence_steps_restore_load_end AFTER INSERT ON meisa.sequence_steps
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
ALTER TABLE meisa.sequence_steps ENABLE REPLICA TRIGGER sequence_steps_restore_load_end;
CREATE TRIGGER enrollments_restore_load BEFORE INSERT ON meisa.enrollments
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
CREATE TRIGGER enrollments_restore_load_end AFTER INSERT ON meisa.enrollments
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
ALTER TABLE meisa.enrollments ENABLE REPLICA TRIGGER enrollments_restore_load_end;
CREATE TRIGGER messages_restore_load BEFORE INSERT ON meisa.messages
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
CREATE TRIGGER messages_restore_load_end AFTER INSERT ON meisa.messages
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
ALTER TABLE meisa.messages ENABLE REPLICA TRIGGER messages_restore_load_end;
CREATE TRIGGER automation_runs_restore_load BEFORE INSERT ON meisa.automation_runs
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
CREATE TRIGGER automation_runs_restore_load_end AFTER INSERT ON meisa.automation_runs
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
ALTER TABLE meisa.automation_runs ENABLE REPLICA TRIGGER automation_runs_restore_load_end;
CREATE TRIGGER notifications_restore_load BEFORE INSERT ON meisa.notifications
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
CREATE TRIGGER notifications_restore_load_end AFTER INSERT ON meisa.notifications
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
ALTER TABLE meisa.notifications ENABLE REPLICA TRIGGER notifications_restore_load_end;
REVOKE ALL ON FUNCTION meisa.restore_load() FROM PUBLIC;

-- meisa.check_invariants() also reports a row whose referenced row is
-- missing (one invariant per foreign key; same text as meisa--1.3.sql).
CREATE OR REPLACE FUNCTION meisa.check_invariants()
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
  -- (1.3) every foreign key holds: a restore loads rows unchecked (restore.c)
  UNION ALL
  SELECT 'events.contact_id names a contact (events_contact_id_fkey)', count(*), min(x.id::text)
    FROM meisa.events x
   WHERE x.contact_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.contacts p WHERE p.id = x.contact_id)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'sequence_steps.sequence_id names a sequence (sequence_steps_sequence_id_fkey)', count(*), min(x.id::text)
    FROM meisa.sequence_steps x
   WHERE x.sequence_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.sequences p WHERE p.id = x.sequence_id)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'sequence_steps.template names a template (sequence_steps_template_fkey)', count(*), min(x.id::text)
    FROM meisa.sequence_steps x
   WHERE x.template IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.templates p WHERE p.key = x.template)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'enrollments.contact_id names a contact (enrollments_contact_id_fkey)', count(*), min(x.id::text)
    FROM meisa.enrollments x
   WHERE x.contact_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.contacts p WHERE p.id = x.contact_id)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'enrollments.sequence_id names a sequence (enrollments_sequence_id_fkey)', count(*), min(x.id::text)
    FROM meisa.enrollments x
   WHERE x.sequence_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.sequences p WHERE p.id = x.sequence_id)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'messages.contact_id names a contact (messages_contact_id_fkey)', count(*), min(x.id::text)
    FROM meisa.messages x
   WHERE x.contact_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.contacts p WHERE p.id = x.contact_id)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'automation_runs.automation_id names an automation (automation_runs_automation_id_fkey)', count(*), min(x.id::text)
    FROM meisa.automation_runs x
   WHERE x.automation_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.automations p WHERE p.id = x.automation_id)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'automation_runs.contact_id names a contact (automation_runs_contact_id_fkey)', count(*), min(x.id::text)
    FROM meisa.automation_runs x
   WHERE x.contact_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.contacts p WHERE p.id = x.contact_id)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'notifications.contact_id names a contact (notifications_contact_id_fkey)', count(*), min(x.id::text)
    FROM meisa.notifications x
   WHERE x.contact_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.contacts p WHERE p.id = x.contact_id)
  HAVING count(*) > 0
$fn$;
