\echo Use "ALTER EXTENSION meisa UPDATE TO '1.2'" to load this file. \quit
-- meisa 1.1 -> 1.2 upgrade script (security audit, issue 6 items 5 and 6).
--  * meisa.automation_stats and meisa.sequence_funnel are re-created with
--    schema-qualified functions.  In 1.0 they call count(r.id) and
--    lag(st.position, 1, 0) unqualified; pg_catalog only has count("any")
--    and the polymorphic lag(anycompatible, integer, anycompatible), so a
--    count(bigint) or lag(integer, integer, integer) that a role with CREATE
--    on the install schema planted there before CREATE EXTENSION is an exact
--    match and was bound into the view: it then runs as whoever reads the
--    view (a superuser, the admin, the reader).  Re-creating the views binds
--    them to pg_catalog.  Same columns, same ACLs.
--  * every view is a security_barrier view: without it a role that may read
--    a view (meisa_reader, meisa_app) passes a cheap leaky function of its
--    own (CREATE FUNCTION pg_temp.f ...) in WHERE, the planner evaluates it
--    below the view's own WHERE, and it sees rows the view filters out (e.g.
--    bounce details and every activity row through meisa.contact_activity).
--    Leakproof comparisons (contact_id = 42, changed_at > $1) still push down.
--    meisa.contact_activity is a UNION ALL, which the planner flattens into
--    an append whatever the view's security_barrier option (the branches get
--    the caller's quals, leaky or not), so it is re-created as a
--    security_barrier view over the UNION ALL in a subquery.
--  * meisa.automation_stats gets a column last_run (timestamptz, the time
--    of the automation's last run, the same value as last_run_at), appended
--    as its last column; last_run_at stays.
--  * indexes enrollments_contact_idx (contact_id, sequence_id) and
--    notifications_contact_idx (contact_id, at): the enrolment lookup of
--    meisa_enroll and of automations' enroll scanned every enrolment of the
--    sequence.
--  * index contacts_unsubscribed_idx (the poll of meisa.unsubscribed_emails
--    read every contact); messages_due_idx becomes (next_attempt_at, id)
--    (the worker's claim sorted every due message for each batch).
-- Everything below is schema-qualified (operators as OPERATOR(pg_catalog.=),
-- functions as pg_catalog.f(...), casts to pg_catalog types): this script,
-- like every extension script, runs as superuser with the install schema in
-- search_path, and pg_catalog wins only for exact matches.  The same
-- release ships meisa--1.2.sql (a fresh install of 1.2) and
-- meisa--1.0--1.2.sql (the direct update from 1.0, which skips the
-- unqualified DO block of meisa--1.0--1.1.sql).

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
