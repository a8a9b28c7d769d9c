-- Automations (DESIGN §3): the row validator and cache invalidation triggers
-- on meisa.automations, the condition tester, and the reporting views
-- meisa.automation_stats and meisa.contact_activity.

-- Private: rejects an invalid automation (ERROR 22023 naming the offending
-- part, 42704 for an unknown sequence or template); keeps updated_at current.
CREATE FUNCTION meisa.automations_validate() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'meisa_automations_validate';

CREATE TRIGGER automations_validate
    BEFORE INSERT OR UPDATE ON meisa.automations
    FOR EACH ROW EXECUTE FUNCTION meisa.automations_validate();

-- Private: invalidates every backend's compiled rule cache (relcache
-- invalidation of meisa.automations) after any change of the table.
CREATE FUNCTION meisa.automations_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'meisa_automations_changed';

CREATE TRIGGER automations_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON meisa.automations
    FOR EACH STATEMENT EXECUTE FUNCTION meisa.automations_changed();

-- API: Admin.  Evaluates a condition (the language of automations.conditions,
-- sequence_steps.conditions and sequences.exit_conditions) against contact
-- data, a change set and event properties, without touching any contact.
CREATE FUNCTION meisa.condition_test(conditions jsonb, contact jsonb,
                                     changes jsonb DEFAULT NULL,
                                     properties jsonb DEFAULT NULL)
    RETURNS boolean
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'meisa_condition_test';

-- API: Reader.  One row per automation: how often it matched and how its
-- runs ended.
CREATE VIEW meisa.automation_stats AS
SELECT a.id                                          AS automation_id,
       a.name,
       a.trigger,
       a.trigger_filter,
       a.enabled,
       count(r.id)                                   AS matched,
       count(r.id) FILTER (WHERE r.status = 'done')    AS done,
       count(r.id) FILTER (WHERE r.status = 'failed')  AS failed,
       count(r.id) FILTER (WHERE r.status = 'stopped') AS stopped,
       max(r.at)                                     AS last_run_at
  FROM meisa.automations a
  LEFT JOIN meisa.automation_runs r ON r.automation_id = a.id
 GROUP BY a.id, a.name, a.trigger, a.trigger_filter, a.enabled;

-- API: Reader.  One timeline per contact: creation, field changes (old and
-- new value), tags, events, enrolments, messages, automation runs and
-- notifications.  ORDER BY contact_id, at to read it.
CREATE VIEW meisa.contact_activity AS
SELECT a.contact_id, a.at, 'created'::text AS kind, a.detail
  FROM meisa.activity a
 WHERE a.kind = 'created'
UNION ALL
SELECT a.contact_id, a.at, 'field_changed',
       pg_catalog.jsonb_build_object('field', d.key, 'old', d.value -> 'old', 'new', d.value -> 'new')
  FROM meisa.activity a
 CROSS JOIN LATERAL pg_catalog.jsonb_each(a.detail) d
 WHERE a.kind <> 'created' AND d.key <> 'tags'
   AND pg_catalog.jsonb_typeof(d.value) = 'object'
   AND (d.value ? 'old' OR d.value ? 'new')
UNION ALL
SELECT a.contact_id, a.at, 'tag_added', pg_catalog.jsonb_build_object('tag', t.tag)
  FROM meisa.activity a
 CROSS JOIN LATERAL pg_catalog.jsonb_array_elements_text(
         CASE WHEN pg_catalog.jsonb_typeof(a.detail -> 'tags' -> 'added') = 'array'
              THEN a.detail -> 'tags' -> 'added' ELSE '[]'::jsonb END) t(tag)
UNION ALL
SELECT a.contact_id, a.at, 'tag_removed', pg_catalog.jsonb_build_object('tag', t.tag)
  FROM meisa.activity a
 CROSS JOIN LATERAL pg_catalog.jsonb_array_elements_text(
         CASE WHEN pg_catalog.jsonb_typeof(a.detail -> 'tags' -> 'removed') = 'array'
              THEN a.detail -> 'tags' -> 'removed' ELSE '[]'::jsonb END) t(tag)
UNION ALL
SELECT e.contact_id, e.occurred_at, 'event',
       pg_catalog.jsonb_build_object('event', e.id, 'name', e.name,
                                     'properties', e.properties, 'event_id', e.event_id)
  FROM meisa.events e
UNION ALL
SELECT en.contact_id, en.created_at, 'enrolled',
       pg_catalog.jsonb_build_object('enrollment', en.id, 'sequence', s.name)
  FROM meisa.enrollments en
  JOIN meisa.sequences s ON s.id = en.sequence_id
UNION ALL
SELECT en.contact_id, en.updated_at, en.status,
       pg_catalog.jsonb_build_object('enrollment', en.id, 'sequence', s.name,
                                     'reason', en.exit_reason)
  FROM meisa.enrollments en
  JOIN meisa.sequences s ON s.id = en.sequence_id
 WHERE en.status <> 'active'
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
  JOIN meisa.automations au ON au.id = r.automation_id
 WHERE r.contact_id IS NOT NULL
UNION ALL
SELECT n.contact_id, n.at, 'notification',
       pg_catalog.jsonb_build_object('notification', n.id, 'channel', n.channel,
                                     'message', n.message)
  FROM meisa.notifications n
 WHERE n.contact_id IS NOT NULL;

REVOKE ALL ON FUNCTION meisa.condition_test(jsonb, jsonb, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION meisa.condition_test(jsonb, jsonb, jsonb, jsonb) TO meisa_admin;
GRANT SELECT ON meisa.automation_stats, meisa.contact_activity TO meisa_reader, meisa_admin;
