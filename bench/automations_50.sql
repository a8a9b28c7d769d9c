-- bench/automations_50.sql: the 50 automations of the write benchmarks
-- (meisa installed first): 10 on contact_updated, of which one ("signed in") matches a
-- change of custom_fields.signin_count and runs add_tag + set_field; 40 on
-- contact_created, tag_added, tag_removed, custom_event and
-- sequence_enrolled whose filters or conditions do not match these writes.
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('t', 'marketing', 'Hi', 'Hi');
INSERT INTO meisa.sequences (name) VALUES ('s');
INSERT INTO meisa.automations (name, trigger, conditions, actions, position)
  SELECT 'updated ' || i, 'contact_updated',
         jsonb_build_object('field', 'custom_fields.f' || i, 'changed_to', jsonb_build_object('gte', i)),
         '[{"add_tag": "x"}]', i
    FROM generate_series(1, 9) i;
INSERT INTO meisa.automations (name, trigger, conditions, actions, position) VALUES
  ('signed in', 'contact_updated', '{"field": "custom_fields.signin_count", "changed": true}',
   '[{"add_tag": "active"}, {"set_field": {"custom_fields.stage": "active"}}]', 10);
INSERT INTO meisa.automations (name, trigger, trigger_filter, conditions, actions)
  SELECT 'other ' || i, t.trigger,
         CASE t.trigger WHEN 'contact_created' THEN NULL WHEN 'sequence_enrolled' THEN 's' ELSE 'f' || i END,
         CASE WHEN t.trigger IN ('contact_created', 'sequence_enrolled')
              THEN '{"field": "custom_fields.plan", "eq": "enterprise"}'::jsonb END,
         CASE WHEN t.trigger = 'custom_event' THEN '[{"send_email": "t"}]'::jsonb ELSE '[{"enroll": "s"}]'::jsonb END
    FROM generate_series(1, 40) i,
         LATERAL (SELECT (ARRAY['contact_created', 'tag_added', 'tag_removed', 'custom_event', 'sequence_enrolled'])[1 + i % 5] AS trigger) t;
