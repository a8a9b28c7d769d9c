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
-- privilege sets: meisa.privileges, meisa.grant, meisa.revoke
-- ==========================================================================
-- 1.3 creates no role.  An install from 1.2 keeps its roles meisa_app,
-- meisa_admin and meisa_reader and their privileges, which now count as
-- grants of this database (as meisa.grant makes them) rather than as part
-- of the extension: they are taken out of pg_init_privs, so pg_dump writes
-- them out and a restore into a fresh 1.3 install gives them back.
-- The three privilege sets are data: meisa.privileges(set) lists each
-- privilege of a set, and meisa.grant / meisa.revoke apply them as ordinary
-- GRANT / REVOKE statements on this database's objects, so the grants stay
-- inside this database and pg_dump carries them.  No role is created.
CREATE FUNCTION meisa.privileges(privilege_set text)
RETURNS TABLE (object_type text, object_name text, privilege text)
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  IF privilege_set NOT IN ('app', 'admin', 'reader') THEN
    RAISE EXCEPTION 'invalid privilege set "%"', privilege_set
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'privilege_set must be ''app'', ''admin'' or ''reader''.';
  END IF;
  -- every set uses schema meisa
  RETURN QUERY SELECT 'SCHEMA'::text, 'meisa'::text, 'USAGE'::text;
  -- functions: the documented list of each set
  RETURN QUERY
    SELECT 'FUNCTION', f.fn::regprocedure::text, 'EXECUTE'
      FROM (VALUES
        ('app', '@extschema@.meisa_upsert(jsonb)'),
        ('app', '@extschema@.meisa_track(text, jsonb)'),
        ('app', '@extschema@.meisa_add_tag(text, text)'),
        ('app', '@extschema@.meisa_remove_tag(text, text)'),
        ('app', '@extschema@.meisa_unsubscribe(text, text)'),
        ('app', '@extschema@.meisa_resubscribe(text)'),
        ('app', '@extschema@.meisa_record_bounce(text, text, text)'),
        ('app', '@extschema@.meisa_record_complaint(text)'),
        ('app', '@extschema@.meisa_trigger_email(text, jsonb)'),
        ('app', '@extschema@.meisa_set_topic(text, text, boolean)'),
        ('app', '@extschema@.meisa_unsubscribe_topic(text, text)'),
        ('app', 'meisa.unsubscribe_url(bigint)'),
        ('app', 'meisa.jsonb_diff(jsonb, jsonb)'),
        ('admin', 'meisa.jsonb_diff(jsonb, jsonb)'),
        ('admin', 'meisa.contact_data(bigint)'),
        ('admin', 'meisa.render(text, jsonb, jsonb)'),
        ('admin', 'meisa.render_text(text, jsonb, jsonb)'),
        ('admin', 'meisa.validate_template(text, text)'),
        ('admin', '@extschema@.meisa_enroll(text, text)'),
        ('admin', '@extschema@.meisa_unenroll(text, text)'),
        ('admin', '@extschema@.meisa_run_due(timestamptz)'),
        ('admin', 'meisa.condition_test(jsonb, jsonb, jsonb, jsonb)'),
        ('admin', '@extschema@.meisa_deliver(integer)'),
        ('admin', 'meisa.mime(bigint)'),
        ('admin', 'meisa.unsubscribe_url(bigint)'),
        ('admin', 'meisa.unsubscribe_token_contact(text)'),
        ('admin', 'meisa.check_invariants()'),
        ('admin', 'meisa.segment_count(jsonb)'),
        ('admin', 'meisa.segment_preview(jsonb, integer)'),
        ('admin', 'meisa.segment_mismatches()'),
        ('admin', '@extschema@.meisa_set_topic(text, text, boolean)'),
        ('admin', '@extschema@.meisa_unsubscribe_topic(text, text)'),
        ('admin', 'meisa.unsubscribe_token_topic(text)'),
        ('admin', '@extschema@.meisa_schedule_broadcast(text, timestamptz)'),
        ('admin', '@extschema@.meisa_cancel_broadcast(text)'),
        ('reader', 'meisa.jsonb_diff(jsonb, jsonb)')
      ) AS f(s, fn)
     WHERE f.s = privilege_set;
  -- views and tables
  RETURN QUERY
    SELECT 'TABLE', v.rel::regclass::text, 'SELECT'
      FROM (VALUES
        ('app', 'meisa.unsubscribed_emails'),
        ('reader', 'meisa.unsubscribed_emails'),
        ('reader', 'meisa.sequence_funnel'),
        ('reader', 'meisa.message_stats'),
        ('reader', 'meisa.automation_stats'),
        ('reader', 'meisa.contact_activity'),
        ('reader', 'meisa.segment_stats'),
        ('reader', 'meisa.segment_contacts'),
        ('app', 'meisa.topic_opt_outs'),
        ('reader', 'meisa.topic_opt_outs'),
        ('reader', 'meisa.broadcast_stats')
      ) AS v(s, rel)
     WHERE v.s = privilege_set;
  IF privilege_set = 'admin' THEN
    -- admin reads every table and view of meisa, writes the configuration
    RETURN QUERY
      SELECT 'TABLE', c.oid::regclass::text, 'SELECT'
        FROM pg_class c
        JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
        JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
       WHERE e.extname = 'meisa' AND c.relkind IN ('r', 'v', 'p')
       ORDER BY c.relname;
    RETURN QUERY
      SELECT 'TABLE', t.rel::regclass::text, p.priv
        FROM (VALUES ('meisa.automations'), ('meisa.sequences'), ('meisa.sequence_steps'),
                     ('meisa.templates'), ('meisa.segments'), ('meisa.topics'),
                     ('meisa.broadcasts')) AS t(rel),
             (VALUES ('INSERT'), ('UPDATE'), ('DELETE')) AS p(priv);
    RETURN QUERY
      SELECT 'SEQUENCE', c.oid::regclass::text, 'USAGE'
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'meisa' AND c.relkind = 'S'
       ORDER BY c.relname;
  END IF;
END
$fn$;

COMMENT ON FUNCTION meisa.privileges(text) IS 'the privileges of a privilege set (app, admin, reader): object type, object, privilege';

-- Whether 'role' holds 'privilege' on the object directly (its own ACL
-- entry, not through membership).
CREATE FUNCTION meisa.privilege_held(role regrole, object_type text, object_name text, privilege text)
RETURNS boolean
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT EXISTS (
    SELECT 1
      FROM (SELECT CASE object_type
                     WHEN 'SCHEMA' THEN (SELECT nspacl FROM pg_namespace WHERE nspname = object_name)
                     WHEN 'FUNCTION' THEN (SELECT proacl FROM pg_proc WHERE oid = object_name::regprocedure)
                     ELSE (SELECT relacl FROM pg_class WHERE oid = object_name::regclass)
                   END AS acl) a,
           LATERAL aclexplode(a.acl) x
     WHERE x.grantee = role AND x.privilege_type = privilege)
$fn$;
COMMENT ON FUNCTION meisa.privilege_held(regrole, text, text, text) IS 'whether a role holds a privilege on an object of meisa through its own ACL entry';

-- Grants a privilege set to a role of this database's cluster.
CREATE FUNCTION meisa.grant(role regrole, privilege_set text)
RETURNS void
LANGUAGE plpgsql STRICT
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  p record;
BEGIN
  FOR p IN SELECT * FROM meisa.privileges(privilege_set) LOOP
    EXECUTE format('GRANT %s ON %s %s TO %s', p.privilege, p.object_type, p.object_name, role);
  END LOOP;
END
$fn$;
COMMENT ON FUNCTION meisa.grant(regrole, text) IS 'grants the privilege set app, admin or reader to a role, as ordinary ACLs of this database';

-- Takes a privilege set back from a role.  Privileges the set shares with
-- another set the role holds whole are kept (an app that was also a reader
-- keeps schema usage), unless that other set is contained in this one
-- (admin includes everything reader has: revoking admin takes them all).
CREATE FUNCTION meisa.revoke(role regrole, privilege_set text)
RETURNS void
LANGUAGE plpgsql STRICT
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  kinds text[];
  names text[];
  privs text[];
BEGIN
  -- decided before the first REVOKE: which other sets the role holds whole
  SELECT array_agg(s.object_type), array_agg(s.object_name), array_agg(s.privilege)
    INTO kinds, names, privs
    FROM meisa.privileges(privilege_set) s
   WHERE NOT EXISTS (
     SELECT 1
       FROM unnest(ARRAY['app', 'admin', 'reader']) AS other(set_name)
      WHERE other.set_name <> privilege_set
        AND NOT EXISTS (SELECT 1 FROM meisa.privileges(other.set_name) o
                         WHERE NOT meisa.privilege_held(role, o.object_type, o.object_name, o.privilege))
        AND EXISTS (SELECT 1 FROM meisa.privileges(other.set_name) o
                     WHERE NOT EXISTS (SELECT 1 FROM meisa.privileges(privilege_set) x
                                        WHERE x.object_type = o.object_type AND x.object_name = o.object_name
                                          AND x.privilege = o.privilege))
        AND EXISTS (SELECT 1 FROM meisa.privileges(other.set_name) o
                     WHERE o.object_type = s.object_type AND o.object_name = s.object_name
                       AND o.privilege = s.privilege));
  FOR i IN 1 .. coalesce(array_length(kinds, 1), 0) LOOP
    EXECUTE format('REVOKE %s ON %s %s FROM %s', privs[i], kinds[i], names[i], role);
  END LOOP;
END
$fn$;
COMMENT ON FUNCTION meisa.revoke(regrole, text) IS 'takes the privilege set app, admin or reader back from a role (keeping what another set it holds needs)';

REVOKE ALL ON FUNCTION meisa.privileges(text), meisa.privilege_held(regrole, text, text, text),
       meisa.grant(regrole, text), meisa.revoke(regrole, text) FROM PUBLIC;

-- (extension scripts run with client_min_messages = warning: a NOTICE
-- would not reach the DBA)
DO $notice$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles
              WHERE rolname OPERATOR(pg_catalog.=) ANY (ARRAY['meisa_app', 'meisa_admin', 'meisa_reader'])) THEN
    RAISE WARNING 'meisa 1.3 creates no roles; meisa_app, meisa_admin and meisa_reader keep their privileges in this database'
      USING DETAIL = 'Their grants are now ordinary grants of this database: pg_dump writes them out.',
            HINT = 'Grant a privilege set to a role of your own with SELECT meisa.grant(''my_app'', ''app''); take one back with SELECT meisa.revoke(''meisa_app'', ''app'').';
  END IF;
END
$notice$;

-- ==========================================================================
-- (1.3) segments
-- ==========================================================================

-- (1.3) Segments: named, always-current sets of contacts (docs/segments.md).
-- The members, checks and changes have no foreign keys: the checks would
-- cost a locking query per row on every write and rebuild; the triggers of
-- meisa.contacts and meisa.segments delete them with their contact or segment.
CREATE TABLE meisa.segments (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    conditions jsonb NOT NULL,
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE TABLE meisa.segment_members (
    segment_id bigint NOT NULL,
    contact_id bigint NOT NULL,
    entered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (segment_id, contact_id)
);
CREATE INDEX segment_members_contact_idx ON meisa.segment_members (contact_id);

-- The next moment a contact's result of a segment's clock tests can change.
CREATE TABLE meisa.segment_checks (
    segment_id bigint NOT NULL,
    contact_id bigint NOT NULL,
    check_at   timestamptz NOT NULL,
    PRIMARY KEY (segment_id, contact_id)
);
CREATE INDEX segment_checks_due_idx ON meisa.segment_checks (check_at);

-- Memberships entered and left by writes, events and time (not rebuilds).
CREATE TABLE meisa.segment_changes (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    segment_id bigint NOT NULL,
    contact_id bigint NOT NULL,
    change     text NOT NULL CHECK (change OPERATOR(pg_catalog.=) ANY (ARRAY['entered', 'exited'])),
    at         timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX segment_changes_segment_idx ON meisa.segment_changes (segment_id, at);
CREATE INDEX segment_changes_contact_idx ON meisa.segment_changes (contact_id, at);

SELECT pg_catalog.pg_extension_config_dump('meisa.segments', '');
SELECT pg_catalog.pg_extension_config_dump('meisa.segment_members', '');
SELECT pg_catalog.pg_extension_config_dump('meisa.segment_checks', '');
SELECT pg_catalog.pg_extension_config_dump('meisa.segment_changes', '');
SELECT pg_catalog.pg_extension_config_dump('meisa.segments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('meisa.segment_changes_id_seq', '');

-- ==========================================================================
-- (1.3) Segments: validation, rebuilds, the SQL functions and views
-- ==========================================================================
-- Private: rejects an invalid segment row (ERROR naming the offending part
-- of its conditions), a rule reading an unknown segment, itself or a cycle,
-- and renaming or deleting a segment another one reads.
CREATE FUNCTION meisa.segments_validate() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'meisa_segments_validate';
CREATE TRIGGER segments_validate BEFORE INSERT OR UPDATE OR DELETE ON meisa.segments
    FOR EACH ROW EXECUTE FUNCTION meisa.segments_validate();
-- Private: rebuilds the members of a segment created, enabled or changed,
-- empties a disabled or deleted one, and stales the segment cache.
CREATE FUNCTION meisa.segments_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'meisa_segments_changed';
CREATE TRIGGER segments_changed AFTER INSERT OR UPDATE OR DELETE ON meisa.segments
    FOR EACH ROW EXECUTE FUNCTION meisa.segments_changed();

-- API: Private. How the condition language reads a string as a number or a
-- time (NULL when it is not one); the SQL of segments uses them.
CREATE FUNCTION meisa.condition_number(value text) RETURNS numeric
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'meisa_condition_number';
CREATE FUNCTION meisa.condition_time(value text) RETURNS timestamptz
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'meisa_condition_time';

-- API: Admin. How many contacts a draft rule holds for (the live count).
CREATE FUNCTION meisa.segment_count(conditions jsonb) RETURNS bigint
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'meisa_segment_count';
-- API: Admin. The first 'lim' contacts (by id) a draft rule holds for.
CREATE FUNCTION meisa.segment_preview(conditions jsonb, lim int DEFAULT 20)
    RETURNS SETOF meisa.contacts
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'meisa_segment_preview';
-- API: Admin. Contacts whose membership of an enabled segment differs from
-- what its rule says (none when healthy; due clock checks left out).
CREATE FUNCTION meisa.segment_mismatches()
    RETURNS TABLE (segment text, contact_id bigint, member boolean)
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'meisa_segment_mismatches';

-- API: Reader. Per segment: members now, memberships entered and left in
-- the last 7 days (by writes, events and time; a rebuild records none).
CREATE VIEW meisa.segment_stats WITH (security_barrier = true) AS
SELECT s.name AS segment,
       (SELECT pg_catalog.count(*) FROM meisa.segment_members m
         WHERE m.segment_id OPERATOR(pg_catalog.=) s.id) AS members,
       (SELECT pg_catalog.count(*) FROM meisa.segment_changes x
         WHERE x.segment_id OPERATOR(pg_catalog.=) s.id AND x.change OPERATOR(pg_catalog.=) 'entered'
           AND x.at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) '7 days'::pg_catalog.interval)) AS entered_7d,
       (SELECT pg_catalog.count(*) FROM meisa.segment_changes x
         WHERE x.segment_id OPERATOR(pg_catalog.=) s.id AND x.change OPERATOR(pg_catalog.=) 'exited'
           AND x.at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) '7 days'::pg_catalog.interval)) AS exited_7d
  FROM meisa.segments s;

-- API: Reader. The members of every segment, with their email.
CREATE VIEW meisa.segment_contacts WITH (security_barrier = true) AS
SELECT s.name AS segment, m.contact_id, c.email, m.entered_at
  FROM meisa.segment_members m
  JOIN meisa.segments s ON s.id OPERATOR(pg_catalog.=) m.segment_id
  JOIN meisa.contacts c ON c.id OPERATOR(pg_catalog.=) m.contact_id;

-- automations fire on segment_entered and segment_exited
ALTER TABLE meisa.automations DROP CONSTRAINT automations_trigger_check;
ALTER TABLE meisa.automations ADD CONSTRAINT automations_trigger_check
    CHECK (trigger OPERATOR(pg_catalog.=) ANY (ARRAY['contact_created', 'contact_updated', 'tag_added',
                                                    'tag_removed', 'custom_event', 'sequence_enrolled',
                                                    'segment_entered', 'segment_exited']));

-- nothing of the segments for PUBLIC (a role holding a privilege set gets
-- the new objects with meisa.grant(role, set) again)
REVOKE ALL ON meisa.segments, meisa.segment_members, meisa.segment_checks, meisa.segment_changes,
              meisa.segment_stats, meisa.segment_contacts FROM PUBLIC;
REVOKE ALL ON SEQUENCE meisa.segments_id_seq, meisa.segment_changes_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION meisa.segments_validate(), meisa.segments_changed(),
              meisa.condition_number(text), meisa.condition_time(text),
              meisa.segment_count(jsonb), meisa.segment_preview(jsonb, integer),
              meisa.segment_mismatches() FROM PUBLIC;

-- a contact's memberships, checks and segment changes go with it
CREATE OR REPLACE FUNCTION meisa.contacts_deleted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
BEGIN
    DELETE FROM meisa.activity a WHERE a.contact_id = OLD.id;
    DELETE FROM meisa.segment_members m WHERE m.contact_id = OLD.id;
    DELETE FROM meisa.segment_checks k WHERE k.contact_id = OLD.id;
    DELETE FROM meisa.segment_changes x WHERE x.contact_id = OLD.id;
    RETURN NULL;
END
$$;

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
  UNION ALL
  -- (1.3) topics and broadcasts
  SELECT 'templates.topic names a topic (templates_topic_fkey)', count(*), min(x.key::text)
    FROM meisa.templates x
   WHERE x.topic IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.topics p WHERE p.name = x.topic)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'sequences.topic names a topic (sequences_topic_fkey)', count(*), min(x.id::text)
    FROM meisa.sequences x
   WHERE x.topic IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.topics p WHERE p.name = x.topic)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'topic_subscriptions.topic_id names a topic (topic_subscriptions_topic_id_fkey)', count(*), min(x.contact_id::text)
    FROM meisa.topic_subscriptions x
   WHERE x.topic_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.topics p WHERE p.id = x.topic_id)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'broadcasts.template names a template (broadcasts_template_fkey)', count(*), min(x.id::text)
    FROM meisa.broadcasts x
   WHERE x.template IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.templates p WHERE p.key = x.template)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'broadcasts.segment names a segment (broadcasts_segment_fkey)', count(*), min(x.id::text)
    FROM meisa.broadcasts x
   WHERE x.segment IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.segments p WHERE p.name = x.segment)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'broadcasts.topic names a topic (broadcasts_topic_fkey)', count(*), min(x.id::text)
    FROM meisa.broadcasts x
   WHERE x.topic IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.topics p WHERE p.name = x.topic)
  HAVING count(*) > 0
  UNION ALL
  -- (1.3) segments: members are exactly the contacts their rule holds for
  SELECT 'segment members are the contacts its rule holds for', count(*), min(x.segment || '/' || x.contact_id)
    FROM meisa.segment_mismatches() x
  HAVING count(*) > 0
  UNION ALL
  SELECT 'segment_members.segment_id names an enabled segment', count(*), min(x.segment_id || '/' || x.contact_id)
    FROM meisa.segment_members x
   WHERE NOT EXISTS (SELECT 1 FROM meisa.segments p WHERE p.id = x.segment_id AND p.enabled)
  HAVING count(*) > 0
  UNION ALL
  SELECT 'segment_checks.contact_id names a contact', count(*), min(x.segment_id || '/' || x.contact_id)
    FROM meisa.segment_checks x
   WHERE NOT EXISTS (SELECT 1 FROM meisa.contacts p WHERE p.id = x.contact_id)
  HAVING count(*) > 0
$fn$;

-- ==========================================================================
-- contact activity: a creation is derived, not stored
-- ==========================================================================
-- 1.3 writes no 'created' row in meisa.activity: a new contact is one row,
-- and meisa.contact_activity derives its 'created' entry (and the tags it
-- was created with) from the contact: created_at, and each field as the
-- first change recorded for it found it, else as it is now.  The 'created'
-- rows 1.2 stored go; the view shows the same entries in their place.
DELETE FROM meisa.activity WHERE kind OPERATOR(pg_catalog.=) 'created';
CREATE OR REPLACE VIEW meisa.contact_activity WITH (security_barrier = true) AS
SELECT u.contact_id, u.at, u.kind, u.detail
  FROM (
SELECT c.id AS contact_id, c.created_at AS at, 'created'::pg_catalog.text AS kind,
       (SELECT pg_catalog.jsonb_object_agg(i.key,
                 CASE WHEN i.key OPERATOR(pg_catalog.=) 'tags'
                      THEN pg_catalog.jsonb_build_object('old', NULL, 'new', i.v, 'added', i.v, 'removed', '[]'::pg_catalog.jsonb)
                      ELSE pg_catalog.jsonb_build_object('old', NULL, 'new', i.v) END)
          FROM (SELECT coalesce(f.key, n.key) AS key,
                       CASE WHEN f.key IS NULL THEN n.value ELSE f.value OPERATOR(pg_catalog.->) 'old' END AS v
                  FROM (SELECT e.key, e.value
                          FROM pg_catalog.jsonb_each(pg_catalog.jsonb_build_object(
                                 'email', c.email, 'external_id', c.external_id,
                                 'first_name', c.first_name, 'last_name', c.last_name,
                                 'subscribed', c.subscribed, 'unsubscribe_reason', c.unsubscribe_reason,
                                 'bounced_at', c.bounced_at, 'complained_at', c.complained_at,
                                 'tags', pg_catalog.to_jsonb(c.tags))) e
                        UNION ALL
                        SELECT pg_catalog.concat('custom_fields.', e.key), e.value
                          FROM pg_catalog.jsonb_each(c.custom_fields) e) n
                  FULL JOIN (SELECT DISTINCT ON (d.key) d.key, d.value
                               FROM meisa.activity a
                              CROSS JOIN LATERAL pg_catalog.jsonb_each(a.detail) d
                              WHERE a.contact_id OPERATOR(pg_catalog.=) c.id
                                AND a.kind OPERATOR(pg_catalog.=) 'updated'
                              ORDER BY d.key, a.id) f ON f.key OPERATOR(pg_catalog.=) n.key) i
         WHERE i.v IS NOT NULL AND pg_catalog.jsonb_typeof(i.v) OPERATOR(pg_catalog.<>) 'null'
           AND i.v OPERATOR(pg_catalog.<>) '[]'::pg_catalog.jsonb) AS detail
  FROM meisa.contacts c
UNION ALL
SELECT c.id, c.created_at, 'tag_added', pg_catalog.jsonb_build_object('tag', t.tag)
  FROM meisa.contacts c
 CROSS JOIN LATERAL pg_catalog.jsonb_array_elements_text(coalesce(
         (SELECT a.detail OPERATOR(pg_catalog.->) 'tags' OPERATOR(pg_catalog.->) 'old'
            FROM meisa.activity a
           WHERE a.contact_id OPERATOR(pg_catalog.=) c.id AND a.kind OPERATOR(pg_catalog.=) 'updated'
             AND a.detail OPERATOR(pg_catalog.?) 'tags'
           ORDER BY a.id LIMIT 1),
         pg_catalog.to_jsonb(c.tags), '[]'::pg_catalog.jsonb)) t(tag)
UNION ALL
SELECT a.contact_id, a.at, 'field_changed',
       pg_catalog.jsonb_build_object('field', d.key, 'old', d.value OPERATOR(pg_catalog.->) 'old', 'new', d.value OPERATOR(pg_catalog.->) 'new')
  FROM meisa.activity a
 CROSS JOIN LATERAL pg_catalog.jsonb_each(a.detail) d
 WHERE a.kind OPERATOR(pg_catalog.<>) 'created' AND d.key OPERATOR(pg_catalog.<>) 'tags'
   AND pg_catalog.jsonb_typeof(d.value) OPERATOR(pg_catalog.=) 'object'
   AND (d.value OPERATOR(pg_catalog.?) 'old' OR d.value OPERATOR(pg_catalog.?) 'new')
UNION ALL
SELECT a.contact_id, a.at, 'tag_added', pg_catalog.jsonb_build_object('tag', t.tag)
  FROM meisa.activity a
 CROSS JOIN LATERAL pg_catalog.jsonb_array_elements_text(
         CASE WHEN pg_catalog.jsonb_typeof(a.detail OPERATOR(pg_catalog.->) 'tags' OPERATOR(pg_catalog.->) 'added') OPERATOR(pg_catalog.=) 'array'
              THEN a.detail OPERATOR(pg_catalog.->) 'tags' OPERATOR(pg_catalog.->) 'added' ELSE '[]'::pg_catalog.jsonb END) t(tag)
UNION ALL
SELECT a.contact_id, a.at, 'tag_removed', pg_catalog.jsonb_build_object('tag', t.tag)
  FROM meisa.activity a
 CROSS JOIN LATERAL pg_catalog.jsonb_array_elements_text(
         CASE WHEN pg_catalog.jsonb_typeof(a.detail OPERATOR(pg_catalog.->) 'tags' OPERATOR(pg_catalog.->) 'removed') OPERATOR(pg_catalog.=) 'array'
              THEN a.detail OPERATOR(pg_catalog.->) 'tags' OPERATOR(pg_catalog.->) 'removed' ELSE '[]'::pg_catalog.jsonb END) t(tag)
UNION ALL
SELECT e.contact_id, e.occurred_at, 'event',
       pg_catalog.jsonb_build_object('event', e.id, 'name', e.name,
                                     'properties', e.properties, 'event_id', e.event_id)
  FROM meisa.events e
UNION ALL
SELECT en.contact_id, en.created_at, 'enrolled',
       pg_catalog.jsonb_build_object('enrollment', en.id, 'sequence', s.name)
  FROM meisa.enrollments en
  JOIN meisa.sequences s ON s.id OPERATOR(pg_catalog.=) en.sequence_id
UNION ALL
SELECT en.contact_id, en.updated_at, en.status,
       pg_catalog.jsonb_build_object('enrollment', en.id, 'sequence', s.name,
                                     'reason', en.exit_reason)
  FROM meisa.enrollments en
  JOIN meisa.sequences s ON s.id OPERATOR(pg_catalog.=) en.sequence_id
 WHERE en.status OPERATOR(pg_catalog.<>) 'active'
UNION ALL
SELECT m.contact_id, m.created_at, 'message',
       pg_catalog.jsonb_build_object('message', m.id, 'template_key', m.template_key,
                                     'kind', m.kind, 'subject', m.subject,
                                     'status', m.status, 'automation', m.automation_id)
  FROM meisa.messages m
 WHERE m.contact_id IS NOT NULL
UNION ALL
SELECT r.contact_id, r.at, 'automation_run',
       pg_catalog.jsonb_build_object('automation', r.automation_id, 'name', au.name,
                                     'trigger', r.trigger, 'status', r.status,
                                     'error', r.error, 'actions_done', r.actions_done,
                                     'depth', r.depth)
  FROM meisa.automation_runs r
  JOIN meisa.automations au ON au.id OPERATOR(pg_catalog.=) r.automation_id
 WHERE r.contact_id IS NOT NULL
UNION ALL
SELECT n.contact_id, n.at, 'notification',
       pg_catalog.jsonb_build_object('notification', n.id, 'channel', n.channel,
                                     'message', n.message)
  FROM meisa.notifications n
 WHERE n.contact_id IS NOT NULL
UNION ALL
SELECT x.contact_id, x.at, 'segment_' OPERATOR(pg_catalog.||) x.change,
       pg_catalog.jsonb_build_object('segment', s.name)
  FROM meisa.segment_changes x
  JOIN meisa.segments s ON s.id OPERATOR(pg_catalog.=) x.segment_id
       ) u;

-- ==========================================================================
-- (1.3) topics, broadcasts and sending policy
-- ==========================================================================
-- Topics a contact can leave one by one, broadcasts of a marketing template
-- to a segment, and the policy every marketing message follows
-- (meisa.frequency_cap, meisa.quiet_hours): docs/broadcasts.md.

-- API: Admin (write), reader via views. Mailing topics.
CREATE TABLE meisa.topics (
    id                 bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name               text NOT NULL UNIQUE
                       CHECK (pg_catalog.length(name) OPERATOR(pg_catalog.<=) 100
                              AND name OPERATOR(pg_catalog.~) '^[A-Za-z0-9][A-Za-z0-9 _.-]*$'),
    description        text,
    default_subscribed boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- A contact's own choice per topic (no row: the topic's default_subscribed).
-- No foreign key to meisa.contacts: the contacts trigger deletes them.
CREATE TABLE meisa.topic_subscriptions (
    contact_id bigint NOT NULL,
    topic_id   bigint NOT NULL REFERENCES meisa.topics (id) ON DELETE CASCADE,
    subscribed boolean NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (contact_id, topic_id)
);
CREATE INDEX topic_subscriptions_topic_idx ON meisa.topic_subscriptions (topic_id, changed_at);

-- Marketing templates and sequences may name a topic; each message keeps
-- the topic it was queued under (the broadcast's, else the sequence's,
-- else the template's), and the broadcast it belongs to.
ALTER TABLE meisa.templates ADD COLUMN topic text REFERENCES meisa.topics (name) ON UPDATE CASCADE;
ALTER TABLE meisa.sequences ADD COLUMN topic text REFERENCES meisa.topics (name) ON UPDATE CASCADE;
ALTER TABLE meisa.messages ADD COLUMN topic text;
ALTER TABLE meisa.messages ADD COLUMN broadcast_id bigint;
-- exactly one message per broadcast and contact, whatever crashes or
-- concurrent runners do
CREATE UNIQUE INDEX messages_broadcast_idx ON meisa.messages (broadcast_id, contact_id)
    WHERE broadcast_id IS NOT NULL;

-- API: Admin. A marketing announcement to a segment (or to every
-- subscribed contact).  queue_cursor and audience are the progress of
-- sending: the last contact id queued and the audience counted at start.
CREATE TABLE meisa.broadcasts (
    id           bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    template     text NOT NULL REFERENCES meisa.templates (key) ON UPDATE CASCADE,
    segment      text REFERENCES meisa.segments (name) ON UPDATE CASCADE,
    topic        text REFERENCES meisa.topics (name) ON UPDATE CASCADE,
    send_at      timestamptz,
    local_time   boolean NOT NULL DEFAULT false,
    status       text NOT NULL DEFAULT 'draft'
                 CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['draft', 'scheduled', 'sending', 'sent', 'cancelled'])),
    audience     bigint,
    queue_cursor bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX broadcasts_due_idx ON meisa.broadcasts (send_at)
    WHERE status OPERATOR(pg_catalog.=) ANY (ARRAY['scheduled', 'sending']);

SELECT pg_catalog.pg_extension_config_dump('meisa.topics', '');
SELECT pg_catalog.pg_extension_config_dump('meisa.topic_subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('meisa.broadcasts', '');
SELECT pg_catalog.pg_extension_config_dump('meisa.topics_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('meisa.broadcasts_id_seq', '');

-- parallel restore: as for the other tables with foreign keys (templates
-- and sequences have one now, to their topic)
CREATE TRIGGER templates_restore_load BEFORE INSERT ON meisa.templates
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
CREATE TRIGGER templates_restore_load_end AFTER INSERT ON meisa.templates
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
ALTER TABLE meisa.templates ENABLE REPLICA TRIGGER templates_restore_load_end;
CREATE TRIGGER sequences_restore_load BEFORE INSERT ON meisa.sequences
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
CREATE TRIGGER sequences_restore_load_end AFTER INSERT ON meisa.sequences
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
ALTER TABLE meisa.sequences ENABLE REPLICA TRIGGER sequences_restore_load_end;
CREATE TRIGGER topic_subscriptions_restore_load BEFORE INSERT ON meisa.topic_subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
CREATE TRIGGER topic_subscriptions_restore_load_end AFTER INSERT ON meisa.topic_subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
ALTER TABLE meisa.topic_subscriptions ENABLE REPLICA TRIGGER topic_subscriptions_restore_load_end;
CREATE TRIGGER broadcasts_restore_load BEFORE INSERT ON meisa.broadcasts
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
CREATE TRIGGER broadcasts_restore_load_end AFTER INSERT ON meisa.broadcasts
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.restore_load();
ALTER TABLE meisa.broadcasts ENABLE REPLICA TRIGGER broadcasts_restore_load_end;

-- Private: a topic only on marketing templates and sequences of them.
CREATE FUNCTION meisa.topic_owner_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
BEGIN
    IF NEW.topic IS NOT NULL AND TG_TABLE_NAME = 'templates' AND NEW.kind <> 'marketing' THEN
        RAISE EXCEPTION 'invalid value for field "topic": a transactional template has no topic'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Topics are for marketing mail; transactional mail is always sent.';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER templates_topic_check BEFORE INSERT OR UPDATE OF kind, topic ON meisa.templates
    FOR EACH ROW EXECUTE FUNCTION meisa.topic_owner_check();

-- Private: a broadcast row is valid (a marketing template, a schedule
-- with its time) and keeps what it sends while it is sent.
CREATE FUNCTION meisa.broadcasts_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    k text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status = 'sending' THEN
            RAISE EXCEPTION 'broadcast "%" is sending and cannot be deleted', OLD.name
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Cancel it first with meisa_cancel_broadcast.';
        END IF;
        RETURN OLD;
    END IF;
    SELECT t.kind INTO k FROM meisa.templates t WHERE t.key = NEW.template;
    IF k IS NULL THEN
        RAISE EXCEPTION 'invalid value for field "template": template "%" does not exist', NEW.template
            USING ERRCODE = 'undefined_object';
    ELSIF k <> 'marketing' THEN
        RAISE EXCEPTION 'invalid value for field "template": template "%" is a % template, not a marketing template',
            NEW.template, k
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NEW.status = 'scheduled' AND NEW.send_at IS NULL THEN
        RAISE EXCEPTION 'field "send_at" must be set for a scheduled broadcast'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.status NOT IN ('draft', 'scheduled') THEN
            RAISE EXCEPTION 'invalid value for field "status": a new broadcast is draft or scheduled, not %', NEW.status
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSIF OLD.status IN ('sending', 'sent', 'cancelled')
          AND (NEW.template, NEW.segment, NEW.topic, NEW.local_time, NEW.send_at)
              IS DISTINCT FROM (OLD.template, OLD.segment, OLD.topic, OLD.local_time, OLD.send_at) THEN
        RAISE EXCEPTION 'broadcast "%" is % and can no longer be changed', OLD.name, OLD.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;
CREATE TRIGGER broadcasts_check BEFORE INSERT OR UPDATE OR DELETE ON meisa.broadcasts
    FOR EACH ROW EXECUTE FUNCTION meisa.broadcasts_check();

-- API: Private. Sets a contact's choice for a topic (by name, ERROR 42704
-- when unknown); true when whether the contact gets the topic changed.
CREATE FUNCTION meisa.topic_set(contact_id bigint, topic text, subscribed boolean) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    tid bigint;
    def boolean;
    before boolean;
BEGIN
    IF $3 IS NULL THEN
        RAISE EXCEPTION 'field "subscribed" must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT t.id, t.default_subscribed INTO tid, def FROM meisa.topics t WHERE t.name = $2;
    IF tid IS NULL THEN
        RAISE EXCEPTION 'topic "%" does not exist', $2
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT s.subscribed INTO before FROM meisa.topic_subscriptions s
     WHERE s.contact_id = $1 AND s.topic_id = tid FOR UPDATE;
    IF before IS NOT DISTINCT FROM $3 THEN
        RETURN false;
    END IF;
    INSERT INTO meisa.topic_subscriptions AS s (contact_id, topic_id, subscribed)
    VALUES ($1, tid, $3)
    ON CONFLICT ON CONSTRAINT topic_subscriptions_pkey
    DO UPDATE SET subscribed = EXCLUDED.subscribed, changed_at = pg_catalog.now();
    RETURN coalesce(before, def) IS DISTINCT FROM $3;
END
$$;

-- API: Public. A contact joins or leaves a topic by email; true when this
-- changed whether the contact gets it.
CREATE FUNCTION @extschema@.meisa_set_topic(email text, topic text, subscribed boolean) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION 'field "%" must not be null', CASE WHEN $1 IS NULL THEN 'email' ELSE 'topic' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN meisa.topic_set(meisa.contact_id_by_email($1), $2, $3);
END
$$;

-- API: Private (admin). The topic a message's unsubscribe token leaves,
-- NULL for a token that unsubscribes from all marketing mail.
CREATE FUNCTION meisa.unsubscribe_token_topic(token text) RETURNS text
    LANGUAGE C STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'meisa_unsubscribe_token_topic_sql';

-- API: Public. Leaves a topic by email or by an unsubscribe token; true
-- when this changed whether the contact gets it.
CREATE FUNCTION @extschema@.meisa_unsubscribe_topic(email_or_token text, topic text) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    cid bigint;
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION 'field "%" must not be null', CASE WHEN $1 IS NULL THEN 'email_or_token' ELSE 'topic' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.strpos($1, '@') > 0 THEN
        cid := meisa.contact_id_by_email($1);
    ELSE
        cid := meisa.unsubscribe_token_contact($1);
    END IF;
    RETURN meisa.topic_set(cid, $2, false);
END
$$;

-- (1.3) The token of a message with a topic leaves that topic; any other
-- token, or an email, unsubscribes from all marketing mail.
CREATE OR REPLACE FUNCTION @extschema@.meisa_unsubscribe(email_or_token text, reason text DEFAULT 'unsubscribed')
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    cid bigint;
    tname text;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'field "email_or_token" must not be null'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $2 IS NULL OR $2 NOT IN ('unsubscribed', 'bounced', 'complained') THEN
        RAISE EXCEPTION 'invalid value for field "reason": %', coalesce(pg_catalog.quote_literal($2), 'null')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The reason is one of unsubscribed, bounced, complained.';
    END IF;
    IF pg_catalog.strpos($1, '@') > 0 THEN
        cid := meisa.contact_id_by_email($1);
    ELSE
        cid := meisa.unsubscribe_token_contact($1);
        tname := meisa.unsubscribe_token_topic($1);
        IF tname IS NOT NULL AND $2 = 'unsubscribed' THEN
            RETURN meisa.topic_set(cid, tname, false);
        END IF;
    END IF;
    UPDATE meisa.contacts c
       SET subscribed = false, unsubscribe_reason = $2, unsubscribed_at = pg_catalog.now()
     WHERE c.id = cid AND (c.subscribed OR c.unsubscribe_reason IS DISTINCT FROM $2);
    IF FOUND THEN
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM meisa.contacts c WHERE c.id = cid) THEN
        RAISE EXCEPTION 'no contact has id %', cid USING ERRCODE = 'no_data_found';
    END IF;
    RETURN false;
END
$$;

-- API: Public (app, reader). Contacts who left a topic, polled like
-- meisa.unsubscribed_emails.
CREATE VIEW meisa.topic_opt_outs WITH (security_barrier = true) AS
SELECT c.email, c.external_id, t.name AS topic, s.changed_at
  FROM meisa.topic_subscriptions s
  JOIN meisa.topics t ON t.id OPERATOR(pg_catalog.=) s.topic_id
  JOIN meisa.contacts c ON c.id OPERATOR(pg_catalog.=) s.contact_id
 WHERE NOT s.subscribed;

-- API: Admin. Schedules a draft (or reschedules a scheduled) broadcast;
-- true when its schedule changed.
CREATE FUNCTION @extschema@.meisa_schedule_broadcast(name text, "at" timestamptz DEFAULT pg_catalog.now())
    RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    b meisa.broadcasts;
BEGIN
    IF $1 IS NULL OR $2 IS NULL OR NOT pg_catalog.isfinite($2) THEN
        RAISE EXCEPTION 'field "%" must be %', CASE WHEN $1 IS NULL THEN 'name' ELSE 'at' END,
            CASE WHEN $1 IS NULL THEN 'set' ELSE 'a finite timestamp' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO b FROM meisa.broadcasts x WHERE x.name = $1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'broadcast "%" does not exist', $1 USING ERRCODE = 'undefined_object';
    END IF;
    IF b.status NOT IN ('draft', 'scheduled') THEN
        RAISE EXCEPTION 'broadcast "%" is % and cannot be scheduled', $1, b.status
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF b.segment IS NOT NULL AND NOT EXISTS (SELECT 1 FROM meisa.segments s
                                              WHERE s.name = b.segment AND s.enabled) THEN
        RAISE EXCEPTION 'segment "%" of broadcast "%" is disabled', b.segment, $1
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'A disabled segment keeps no members; enable it first.';
    END IF;
    IF b.status = 'scheduled' AND b.send_at = $2 THEN
        RETURN false;
    END IF;
    UPDATE meisa.broadcasts x SET status = 'scheduled', send_at = $2 WHERE x.id = b.id;
    RETURN true;
END
$$;

-- API: Admin. Cancels a broadcast: its messages not yet sent become
-- cancelled; returns how many.
CREATE FUNCTION @extschema@.meisa_cancel_broadcast(name text) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
DECLARE
    b meisa.broadcasts;
    n integer;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'field "name" must not be null' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO b FROM meisa.broadcasts x WHERE x.name = $1 FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'broadcast "%" does not exist', $1 USING ERRCODE = 'undefined_object';
    END IF;
    UPDATE meisa.messages m SET status = 'cancelled', last_error = 'broadcast cancelled',
           lease_until = NULL, updated_at = pg_catalog.now()
     WHERE m.broadcast_id = b.id AND m.status = 'queued';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF b.status IN ('draft', 'scheduled', 'sending') OR n > 0 THEN
        UPDATE meisa.broadcasts x SET status = 'cancelled',
               finished_at = coalesce(x.finished_at, pg_catalog.now())
         WHERE x.id = b.id;
    END IF;
    RETURN n;
END
$$;

-- API: Reader. Per broadcast: the audience counted when sending started
-- and what became of its messages; opened / clicked count contacts with an
-- email_opened / email_clicked event naming one of its messages
-- (property "message_id"), unsubscribed those who left all marketing mail
-- or the broadcast's topic after its message was queued.
CREATE VIEW meisa.broadcast_stats WITH (security_barrier = true) AS
SELECT b.name AS broadcast, b.status, b.audience,
       coalesce(s.queued, 0) AS queued, coalesce(s.sent, 0) AS sent,
       coalesce(s.failed, 0) AS failed, coalesce(s.suppressed, 0) AS suppressed,
       (SELECT pg_catalog.count(DISTINCT e.contact_id) FROM meisa.events e
          JOIN meisa.messages m ON m.id OPERATOR(pg_catalog.=) (e.properties OPERATOR(pg_catalog.->>) 'message_id')::pg_catalog.int8
         WHERE e.name OPERATOR(pg_catalog.=) 'email_opened' AND m.broadcast_id OPERATOR(pg_catalog.=) b.id
           AND e.contact_id OPERATOR(pg_catalog.=) m.contact_id
           AND (e.properties OPERATOR(pg_catalog.->>) 'message_id') OPERATOR(pg_catalog.~) '^[0-9]{1,18}$') AS opened,
       (SELECT pg_catalog.count(DISTINCT e.contact_id) FROM meisa.events e
          JOIN meisa.messages m ON m.id OPERATOR(pg_catalog.=) (e.properties OPERATOR(pg_catalog.->>) 'message_id')::pg_catalog.int8
         WHERE e.name OPERATOR(pg_catalog.=) 'email_clicked' AND m.broadcast_id OPERATOR(pg_catalog.=) b.id
           AND e.contact_id OPERATOR(pg_catalog.=) m.contact_id
           AND (e.properties OPERATOR(pg_catalog.->>) 'message_id') OPERATOR(pg_catalog.~) '^[0-9]{1,18}$') AS clicked,
       coalesce(s.unsubscribed, 0) AS unsubscribed,
       coalesce(s.cancelled, 0) AS cancelled,
       b.send_at, b.started_at, b.finished_at
  FROM meisa.broadcasts b
  LEFT JOIN LATERAL (
    SELECT pg_catalog.count(*) FILTER (WHERE m.status OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'sending'])) AS queued,
           pg_catalog.count(*) FILTER (WHERE m.status OPERATOR(pg_catalog.=) 'sent') AS sent,
           pg_catalog.count(*) FILTER (WHERE m.status OPERATOR(pg_catalog.=) 'failed') AS failed,
           pg_catalog.count(*) FILTER (WHERE m.status OPERATOR(pg_catalog.=) 'suppressed') AS suppressed,
           pg_catalog.count(*) FILTER (WHERE m.status OPERATOR(pg_catalog.=) 'cancelled') AS cancelled,
           pg_catalog.count(*) FILTER (WHERE m.status OPERATOR(pg_catalog.<>) 'suppressed' AND (
               (NOT c.subscribed AND c.unsubscribed_at OPERATOR(pg_catalog.>=) m.created_at)
               OR EXISTS (SELECT 1 FROM meisa.topic_subscriptions ts
                            JOIN meisa.topics t ON t.id OPERATOR(pg_catalog.=) ts.topic_id
                           WHERE ts.contact_id OPERATOR(pg_catalog.=) m.contact_id
                             AND t.name OPERATOR(pg_catalog.=) m.topic AND NOT ts.subscribed
                             AND ts.changed_at OPERATOR(pg_catalog.>=) m.created_at))) AS unsubscribed
      FROM meisa.messages m
      LEFT JOIN meisa.contacts c ON c.id OPERATOR(pg_catalog.=) m.contact_id
     WHERE m.broadcast_id OPERATOR(pg_catalog.=) b.id) s ON true;

-- a contact's memberships, checks, segment changes and topic choices go with it
CREATE OR REPLACE FUNCTION meisa.contacts_deleted() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, meisa, pg_temp
    AS $$
BEGIN
    DELETE FROM meisa.activity a WHERE a.contact_id = OLD.id;
    DELETE FROM meisa.segment_members m WHERE m.contact_id = OLD.id;
    DELETE FROM meisa.segment_checks k WHERE k.contact_id = OLD.id;
    DELETE FROM meisa.segment_changes x WHERE x.contact_id = OLD.id;
    DELETE FROM meisa.topic_subscriptions s WHERE s.contact_id = OLD.id;
    RETURN NULL;
END
$$;

-- nothing of the topics and broadcasts for PUBLIC (a role holding a
-- privilege set gets the new objects with meisa.grant(role, set) again)
REVOKE ALL ON meisa.topics, meisa.topic_subscriptions, meisa.broadcasts,
              meisa.topic_opt_outs, meisa.broadcast_stats FROM PUBLIC;
REVOKE ALL ON SEQUENCE meisa.topics_id_seq, meisa.broadcasts_id_seq FROM PUBLIC;
REVOKE ALL ON FUNCTION meisa.topic_owner_check(), meisa.broadcasts_check(),
              meisa.topic_set(bigint, text, boolean),
              @extschema@.meisa_set_topic(text, text, boolean),
              meisa.unsubscribe_token_topic(text),
              @extschema@.meisa_unsubscribe_topic(text, text),
              @extschema@.meisa_unsubscribe(text, text),
              @extschema@.meisa_schedule_broadcast(text, timestamptz),
              @extschema@.meisa_cancel_broadcast(text) FROM PUBLIC;
-- ---- end of (1.3) topics, broadcasts and sending policy

-- ==========================================================================
-- grants of the roles 1.2 made
-- ==========================================================================
-- the roles 1.2 created get the new objects of their set
DO $grants$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'meisa_app') THEN
    PERFORM meisa.grant('meisa_app', 'app');
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'meisa_admin') THEN
    PERFORM meisa.grant('meisa_admin', 'admin');
  END IF;
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'meisa_reader') THEN
    PERFORM meisa.grant('meisa_reader', 'reader');
  END IF;
END
$grants$;
-- the privileges of the roles 1.2 made (the grants above included) are
-- this database's, not the extension's: out of pg_init_privs, so pg_dump
-- writes them out and a restore into a fresh 1.3 install gives them back
UPDATE pg_catalog.pg_init_privs ip
   SET initprivs = ARRAY(
         SELECT i FROM pg_catalog.unnest(ip.initprivs) i
          WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(ARRAY[i]) x
                             JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) x.grantee
                            WHERE r.rolname OPERATOR(pg_catalog.=) ANY (ARRAY['meisa_app', 'meisa_admin', 'meisa_reader'])))
 WHERE ip.privtype OPERATOR(pg_catalog.=) 'e'
   AND EXISTS (SELECT 1 FROM pg_catalog.aclexplode(ip.initprivs) x
                 JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) x.grantee
                WHERE r.rolname OPERATOR(pg_catalog.=) ANY (ARRAY['meisa_app', 'meisa_admin', 'meisa_reader']));
