\echo Use "ALTER EXTENSION meisa UPDATE TO '1.2'" to load this file. \quit
-- meisa 1.0 -> 1.2 upgrade script: the direct update.  ALTER EXTENSION
-- meisa UPDATE takes the shortest path, so from 1.0 it runs this script
-- instead of meisa--1.0--1.1.sql + meisa--1.1--1.2.sql.  Same effect as the
-- two together (test/hardening/upgrade.sh compares the catalogs of a fresh
-- 1.2, 1.0 -> 1.2 and 1.1 -> 1.2), but fully schema-qualified: the released
-- meisa--1.0--1.1.sql compares pg_depend.classid (oid) with a regclass in a
-- DO block; pg_catalog has no =(oid, regclass), so an =(oid, regclass)
-- operator that a role with CREATE on the install schema planted there is
-- an exact match and runs as the superuser during the update.  Released
-- scripts stay as they are; this one avoids them.
-- 1.1 (see meisa--1.0--1.1.sql):
--  * the identity sequences of every meisa table are registered with
--    pg_extension_config_dump, so pg_dump saves their positions;
--  * meisa.check_invariants() lists violations of the data invariants.
-- 1.2 (see meisa--1.1--1.2.sql):
--  * meisa.automation_stats and meisa.sequence_funnel re-created with
--    pg_catalog-qualified functions (1.0 bound count(r.id) and
--    lag(st.position, 1, 0) by search_path), every view a security_barrier
--    view, meisa.contact_activity over a subquery;
--  * meisa.automation_stats gets a last column last_run (= last_run_at);
--  * indexes enrollments_contact_idx, notifications_contact_idx and
--    contacts_unsubscribed_idx; messages_due_idx gets id as second column.
-- Everything below is schema-qualified (operators as OPERATOR(pg_catalog.=),
-- functions as pg_catalog.f(...), casts to pg_catalog types).

-- Identity sequences of the registered (config) tables: dump their state too.
DO $seqs$
DECLARE s pg_catalog.regclass;
BEGIN
  FOR s IN
    SELECT d.objid::pg_catalog.regclass
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_class seq ON seq.oid OPERATOR(pg_catalog.=) d.objid AND seq.relkind OPERATOR(pg_catalog.=) 'S'
      JOIN pg_catalog.pg_class tab ON tab.oid OPERATOR(pg_catalog.=) d.refobjid
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) tab.relnamespace
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND (d.deptype OPERATOR(pg_catalog.=) 'i' OR d.deptype OPERATOR(pg_catalog.=) 'a')
       AND n.nspname OPERATOR(pg_catalog.=) 'meisa'
       AND tab.oid OPERATOR(pg_catalog.=) ANY (SELECT pg_catalog.unnest(e.extconfig)
                            FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'meisa')
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

CREATE OR REPLACE VIEW meisa.automation_stats WITH (security_barrier = true) AS
SELECT a.id                                          AS automation_id,
       a.name,
       a.trigger,
       a.trigger_filter,
       a.enabled,
       pg_catalog.count(r.id)                                     AS matched,
       pg_catalog.count(r.id) FILTER (WHERE r.status OPERATOR(pg_catalog.=) 'done')    AS done,
       pg_catalog.count(r.id) FILTER (WHERE r.status OPERATOR(pg_catalog.=) 'failed')  AS failed,
       pg_catalog.count(r.id) FILTER (WHERE r.status OPERATOR(pg_catalog.=) 'stopped') AS stopped,
       pg_catalog.max(r.at)                                       AS last_run_at,
       pg_catalog.max(r.at)                                       AS last_run
  FROM meisa.automations a
  LEFT JOIN meisa.automation_runs r ON r.automation_id OPERATOR(pg_catalog.=) a.id
 GROUP BY a.id, a.name, a.trigger, a.trigger_filter, a.enabled;

CREATE OR REPLACE VIEW meisa.sequence_funnel WITH (security_barrier = true) AS
WITH steps AS (
    SELECT st.sequence_id, st.position, st.template,
           pg_catalog.lag(st.position, 1, 0) OVER (PARTITION BY st.sequence_id ORDER BY st.position) AS prev_position
      FROM meisa.sequence_steps st
), enrolled AS (
    SELECT sequence_id, status, current_step, pg_catalog.count(*) AS n
      FROM meisa.enrollments
     GROUP BY sequence_id, status, current_step
), mailed AS (
    SELECT sequence_id, step_position,
           pg_catalog.count(*) FILTER (WHERE status OPERATOR(pg_catalog.<>) 'suppressed') AS sent,
           pg_catalog.count(*) FILTER (WHERE status OPERATOR(pg_catalog.=) 'suppressed') AS suppressed
      FROM meisa.messages
     WHERE sequence_id IS NOT NULL
     GROUP BY sequence_id, step_position
)
SELECT s.id AS sequence_id,
       s.name AS sequence,
       st.position,
       st.template,
       COALESCE((SELECT pg_catalog.sum(n) FROM enrolled e WHERE e.sequence_id OPERATOR(pg_catalog.=) st.sequence_id
                   AND e.current_step OPERATOR(pg_catalog.>=) st.prev_position), 0)::bigint AS entered,
       COALESCE((SELECT pg_catalog.sum(n) FROM enrolled e WHERE e.sequence_id OPERATOR(pg_catalog.=) st.sequence_id
                   AND e.status OPERATOR(pg_catalog.=) 'active' AND e.current_step OPERATOR(pg_catalog.>=) st.prev_position
                   AND e.current_step OPERATOR(pg_catalog.<) st.position), 0)::bigint AS active,
       COALESCE(m.sent, 0) AS sent,
       COALESCE(m.suppressed, 0) AS suppressed,
       COALESCE((SELECT pg_catalog.sum(n) FROM enrolled e WHERE e.sequence_id OPERATOR(pg_catalog.=) st.sequence_id
                   AND e.status OPERATOR(pg_catalog.=) 'exited' AND e.current_step OPERATOR(pg_catalog.>=) st.prev_position
                   AND e.current_step OPERATOR(pg_catalog.<) st.position), 0)::bigint AS exited,
       COALESCE((SELECT pg_catalog.sum(n) FROM enrolled e WHERE e.sequence_id OPERATOR(pg_catalog.=) st.sequence_id
                   AND e.status OPERATOR(pg_catalog.=) 'removed' AND e.current_step OPERATOR(pg_catalog.>=) st.prev_position
                   AND e.current_step OPERATOR(pg_catalog.<) st.position), 0)::bigint AS removed,
       COALESCE((SELECT pg_catalog.sum(n) FROM enrolled e WHERE e.sequence_id OPERATOR(pg_catalog.=) st.sequence_id
                   AND e.current_step OPERATOR(pg_catalog.>=) st.position), 0)::bigint AS completed
  FROM meisa.sequences s
  JOIN steps st ON st.sequence_id OPERATOR(pg_catalog.=) s.id
  LEFT JOIN mailed m ON m.sequence_id OPERATOR(pg_catalog.=) st.sequence_id
                    AND m.step_position OPERATOR(pg_catalog.=) st.position;

ALTER VIEW meisa.unsubscribed_emails SET (security_barrier = true);
CREATE OR REPLACE VIEW meisa.contact_activity WITH (security_barrier = true) AS
SELECT u.contact_id, u.at, u.kind, u.detail
  FROM (
SELECT a.contact_id, a.at, 'created'::pg_catalog.text AS kind, a.detail
  FROM meisa.activity a
 WHERE a.kind OPERATOR(pg_catalog.=) 'created'
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
       ) u;
ALTER VIEW meisa.message_stats SET (security_barrier = true);

-- Indexes by contact for the tables that lacked one: the enrolment paths
-- look a contact's enrolment of a sequence up by (contact_id, sequence_id)
-- whatever its status (without it, each meisa_enroll and each automation
-- enroll scanned every enrolment of the sequence: O(enrolments) per call), a
-- contact's timeline reads its notifications, and deleting a contact
-- cascades to both tables.
CREATE INDEX enrollments_contact_idx ON meisa.enrollments (contact_id, sequence_id);
CREATE INDEX notifications_contact_idx ON meisa.notifications (contact_id, at);

-- The application's poll of meisa.unsubscribed_emails (WHERE changed_at >
-- $last_poll) read every contact; a partial index over the view's
-- changed_at holds only the contacts that must not get marketing mail (a
-- new, subscribed contact adds no entry).  The worker's claim takes the
-- first due messages in (next_attempt_at, id) order: with only
-- next_attempt_at in messages_due_idx it read and sorted every due message
-- for each batch (a run of meisa_run_due queues thousands at one time).
CREATE INDEX contacts_unsubscribed_idx ON meisa.contacts (GREATEST(unsubscribed_at, bounced_at, complained_at))
    WHERE NOT subscribed OR bounced_at IS NOT NULL OR complained_at IS NOT NULL;
DROP INDEX meisa.messages_due_idx;
CREATE INDEX messages_due_idx ON meisa.messages (next_attempt_at, id) WHERE status OPERATOR(pg_catalog.=) 'queued';
