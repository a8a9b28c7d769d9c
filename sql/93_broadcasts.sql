-- Broadcasts: a marketing template sent once to each member of a segment,
-- queued batch by batch by meisa_run_due; status draft -> scheduled ->
-- sending -> sent (or cancelled); exactly one message per broadcast and
-- contact; the audience fixed at the start and re-checked per contact.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';
SET meisa.from_address = 'news@example.com';
COPY (SELECT 'broadcast-secret-0123456789abcdef') TO PROGRAM 'umask 077 && cat > meisa_regress_key_93';
SET meisa.secret_file = 'meisa_regress_key_93';
SET meisa.unsubscribe_base_url = 'https://example.com/u/';

INSERT INTO meisa.topics (name) VALUES ('product-updates');
INSERT INTO meisa.templates (key, kind, subject, text, html) VALUES
  ('launch', 'marketing', 'Big news, {{first_name}}', 'Hello {{first_name}} ({{custom_fields.plan}})', '<p>Hello {{first_name}}</p>'),
  ('receipt', 'transactional', 'Receipt', 'r', NULL);
SELECT meisa_upsert(format('{"email": "b%s@example.com", "first_name": "B%s", "custom_fields": {"plan": "%s"}}',
                           i, i, CASE WHEN i <= 6 THEN 'pro' ELSE 'free' END)::jsonb) ->> 'created'
  FROM generate_series(1, 8) i;
INSERT INTO meisa.segments (name, conditions) VALUES
  ('pro', '{"field": "custom_fields.plan", "eq": "pro"}'),
  ('nobody', '{"field": "custom_fields.plan", "eq": "enterprise"}'),
  ('paused', '{"field": "custom_fields.plan", "eq": "free"}');
UPDATE meisa.segments SET enabled = false WHERE name = 'paused';

-- rows: a new broadcast is a draft (or scheduled with a time); the template
-- must be a marketing one, the segment and topic must exist
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('pro launch', 'launch', 'pro');
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('bad kind', 'receipt', 'pro');
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('bad template', 'nope', 'pro');
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('bad segment', 'launch', 'nope');
INSERT INTO meisa.broadcasts (name, template, topic) VALUES ('bad topic', 'launch', 'nope');
INSERT INTO meisa.broadcasts (name, template, status) VALUES ('bad status', 'launch', 'sent');
INSERT INTO meisa.broadcasts (name, template, status) VALUES ('no time', 'launch', 'scheduled');
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('pro launch', 'launch', 'pro');
SELECT name, status, send_at, audience, started_at, finished_at FROM meisa.broadcasts;

-- a draft is never sent
SELECT meisa_run_due();
SELECT count(*) AS messages FROM meisa.messages;

-- meisa_schedule_broadcast: true when the schedule changed
SELECT meisa_schedule_broadcast('pro launch', '2036-01-01 09:00+00') AS scheduled;
SELECT meisa_schedule_broadcast('pro launch', '2036-01-01 09:00+00') AS same_time;
SELECT meisa_schedule_broadcast('pro launch', '2036-01-01 10:00+00') AS moved;
SELECT meisa_schedule_broadcast('nope');
SELECT meisa_schedule_broadcast(NULL);
SELECT meisa_schedule_broadcast('pro launch', NULL);
SELECT meisa_schedule_broadcast('pro launch', 'infinity');
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('paused one', 'launch', 'paused');
SELECT meisa_schedule_broadcast('paused one');
-- not due yet
SELECT meisa_run_due('2036-01-01 09:59+00');
SELECT name, status FROM meisa.broadcasts WHERE name = 'pro launch';

-- due: batches of meisa.broadcast_batch_size per call
SET meisa.broadcast_batch_size = 2;
SELECT meisa_unsubscribe('b2@example.com');                        -- suppressed: unsubscribed
SELECT meisa_set_topic('b3@example.com', 'product-updates', true);  -- no topic on this broadcast: sent
SELECT meisa_run_due('2036-01-01 10:00+00');
SELECT name, status, audience, queue_cursor > 0 AS moved, started_at IS NOT NULL AS started, finished_at
  FROM meisa.broadcasts WHERE name = 'pro launch';
SELECT to_email, status, last_error, subject FROM meisa.messages ORDER BY contact_id;
-- a running broadcast can be neither rescheduled nor changed nor deleted
SELECT meisa_schedule_broadcast('pro launch');
UPDATE meisa.broadcasts SET template = 'launch', segment = NULL WHERE name = 'pro launch';
DELETE FROM meisa.broadcasts WHERE name = 'pro launch';
-- between batches: b4 leaves the segment (no message), b7 enters it after
-- the start (no message), b5 is bounced (suppressed)
SELECT meisa_upsert('{"email": "b4@example.com", "custom_fields": {"plan": "free"}}') ->> 'created';
SELECT meisa_upsert('{"email": "b7@example.com", "custom_fields": {"plan": "pro"}}') ->> 'created';
SELECT meisa_record_bounce('b5@example.com', 'hard');
SELECT meisa_run_due('2036-01-01 10:00+00');
SELECT meisa_run_due('2036-01-01 10:00+00');
SELECT meisa_run_due('2036-01-01 10:00+00');
SELECT to_email, status, last_error FROM meisa.messages ORDER BY contact_id;
SELECT name, status, audience, finished_at IS NOT NULL AS finished FROM meisa.broadcasts WHERE name = 'pro launch';
-- once sent, nothing more: running again queues no second message
SELECT meisa_run_due('2036-01-01 10:00+00');
SELECT count(*) AS messages, count(DISTINCT contact_id) AS contacts FROM meisa.messages;
-- the unique index holds whatever writes them
INSERT INTO meisa.messages (contact_id, to_email, kind, subject, message_id, broadcast_id)
  SELECT contact_id, to_email, kind, subject, message_id || 'x', broadcast_id FROM meisa.messages LIMIT 1;
SELECT broadcast, status, audience, queued, sent, failed, suppressed, opened, clicked, unsubscribed, cancelled
  FROM meisa.broadcast_stats ORDER BY broadcast;

-- a disabled segment keeps no members: the broadcast sends nothing
SELECT meisa_run_due();
SELECT name, status, audience FROM meisa.broadcasts WHERE name = 'paused one';
UPDATE meisa.segments SET enabled = true WHERE name = 'paused';
UPDATE meisa.broadcasts SET status = 'draft' WHERE name = 'paused one';
SELECT meisa_schedule_broadcast('paused one');
UPDATE meisa.segments SET enabled = false WHERE name = 'paused';
SELECT meisa_run_due();
SELECT name, status, audience FROM meisa.broadcasts WHERE name = 'paused one';
-- an empty segment: sent at once, to nobody
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('empty', 'launch', 'nobody');
SELECT meisa_schedule_broadcast('empty');
SELECT meisa_run_due();
SELECT broadcast, status, audience, queued FROM meisa.broadcast_stats WHERE broadcast = 'empty';

-- no segment: every subscribed contact (not unsubscribed, bounced or complained)
SET meisa.broadcast_batch_size = 100;
INSERT INTO meisa.broadcasts (name, template, topic) VALUES ('everyone', 'launch', 'product-updates');
SELECT meisa_set_topic('b6@example.com', 'product-updates', false);
SELECT meisa_schedule_broadcast('everyone');
SELECT meisa_run_due();
SELECT m.to_email, m.status, m.last_error, m.topic FROM meisa.messages m
  JOIN meisa.broadcasts b ON b.id = m.broadcast_id WHERE b.name = 'everyone' ORDER BY m.contact_id;
SELECT broadcast, audience, queued, suppressed FROM meisa.broadcast_stats WHERE broadcast = 'everyone';

-- cancel: the messages not yet sent become cancelled, nothing more is queued
SET meisa.broadcast_batch_size = 2;
INSERT INTO meisa.broadcasts (name, template) VALUES ('to cancel', 'launch');
SELECT meisa_schedule_broadcast('to cancel');
SELECT meisa_run_due();
UPDATE meisa.messages m SET status = 'sent', sent_at = now()
  FROM meisa.broadcasts b WHERE b.id = m.broadcast_id AND b.name = 'to cancel'
   AND m.contact_id = (SELECT min(contact_id) FROM meisa.messages x WHERE x.broadcast_id = b.id);
SELECT meisa_cancel_broadcast('to cancel') AS cancelled;
SELECT meisa_cancel_broadcast('to cancel') AS again;
SELECT meisa_run_due();
SELECT broadcast, status, queued, sent, cancelled FROM meisa.broadcast_stats WHERE broadcast = 'to cancel';
SELECT meisa_schedule_broadcast('to cancel');
SELECT meisa_cancel_broadcast('nope');
SELECT meisa_cancel_broadcast(NULL);
-- a draft or scheduled broadcast is cancelled with nothing to cancel
INSERT INTO meisa.broadcasts (name, template) VALUES ('draft one', 'launch');
SELECT meisa_cancel_broadcast('draft one');
SELECT status FROM meisa.broadcasts WHERE name = 'draft one';
-- a sent broadcast keeps its status when nothing was left to cancel
UPDATE meisa.messages m SET status = 'sent', sent_at = now() FROM meisa.broadcasts b
 WHERE b.id = m.broadcast_id AND b.name = 'everyone' AND m.status = 'queued';
SELECT meisa_cancel_broadcast('everyone');
SELECT status FROM meisa.broadcasts WHERE name = 'everyone';

-- a template that fails to render for one contact: that contact's message
-- fails, the others go
SET meisa.max_render_size = 200;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('bio', 'marketing', 'About you', 'You: {{custom_fields.bio}}');
SELECT meisa_upsert(jsonb_build_object('email', 'long@example.com', 'custom_fields', jsonb_build_object('plan', 'pro', 'bio', repeat('x', 300)))) ->> 'created';
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('bios', 'bio', 'pro');
SET meisa.broadcast_batch_size = 100;
SELECT meisa_schedule_broadcast('bios');
SELECT meisa_run_due();
SELECT m.to_email, m.status, left(m.last_error, 90) AS last_error FROM meisa.messages m
  JOIN meisa.broadcasts b ON b.id = m.broadcast_id WHERE b.name = 'bios' ORDER BY m.contact_id;
RESET meisa.max_render_size;

-- the broadcast's messages are delivered like any other
SELECT count(*) > 0 AS has_queued FROM meisa.messages WHERE status = 'queued';
SELECT * FROM meisa.check_invariants();
SELECT meisa.mime(m.id) ~ 'List-Unsubscribe-Post: List-Unsubscribe=One-Click' AS one_click
  FROM meisa.messages m JOIN meisa.broadcasts b ON b.id = m.broadcast_id
 WHERE b.name = 'bios' AND m.status = 'queued' LIMIT 1;
