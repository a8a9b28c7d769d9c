-- test/hardening/sql/stress_setup.sql
--	The stress database: meisa with templates, a two-step onboarding
--	sequence and automations on every trigger kind, plus schema "stress":
--	wrappers the pgbench scripts call (each records an error it catches in
--	stress.errors instead of aborting the client, so every error is counted
--	by SQLSTATE).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS meisa;
CREATE EXTENSION IF NOT EXISTS amcheck;
RESET client_min_messages;

INSERT INTO meisa.templates (key, kind, subject, html, text) VALUES
  ('welcome', 'marketing', 'Welcome {{first_name}}', '<p>Hello {{first_name}}</p><a href="{{{unsubscribe_url}}}">unsubscribe</a>', 'Hello {{first_name}}'),
  ('day2', 'marketing', 'Day two, {{first_name}}', '<p>Plan: {{custom_fields.plan}}</p>', 'Plan: {{custom_fields.plan}}'),
  ('churn_survey', 'marketing', 'Why did you leave?', '<p>Tell us</p>', 'Tell us'),
  ('receipt', 'transactional', 'Receipt {{data.order}}', '<p>Order {{data.order}} for {{email}}</p>', 'Order {{data.order}}');

INSERT INTO meisa.sequences (name) VALUES ('onboarding');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, 1, interval '0', 'welcome' FROM meisa.sequences WHERE name = 'onboarding'
UNION ALL
SELECT id, 2, interval '1 second', 'day2' FROM meisa.sequences WHERE name = 'onboarding';

INSERT INTO meisa.automations (name, trigger, trigger_filter, conditions, actions, position) VALUES
  ('welcome', 'contact_created', NULL, NULL, '[{"enroll": "onboarding"}]', 1),
  ('upgrade', 'contact_updated', NULL,
   '{"field": "custom_fields.plan", "changed_from": "free", "changed_to": {"in": ["standard", "pro"]}}',
   '[{"add_tag": "paid"}, {"notify": {"channel": "sales", "message": "{{email}} upgraded"}}]', 2),
  ('churn', 'contact_updated', NULL, '{"field": "custom_fields.plan", "changed_to": "churned"}',
   '[{"unenroll": "onboarding"}, {"send_email": "churn_survey"}]', 3),
  ('vip', 'tag_added', 'vip', NULL, '[{"set_field": {"custom_fields.vip": true}}]', 4),
  ('big_spender', 'custom_event', 'purchase', '{"event": "properties.amount", "gte": 100}',
   '[{"add_tag": "big_spender"}]', 5);

CREATE SCHEMA stress;
CREATE TABLE stress.errors (
  at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  op       text NOT NULL,
  sqlstate text NOT NULL,
  message  text
);

-- meisa_upsert of user n: email and external_id always belong together.
CREATE FUNCTION stress.upsert(n int, plan int, posts int, with_ext boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM meisa_upsert(
    jsonb_build_object('email', 'user' || n || '@stress.test',
                       'first_name', 'User' || (posts % 3),
                       'custom_fields', jsonb_build_object(
                          'plan', (ARRAY['free', 'free', 'standard', 'pro', 'churned'])[plan],
                          'posts_generated', posts))
    || CASE WHEN with_ext THEN jsonb_build_object('external_id', 'ext-' || n) ELSE '{}' END);
EXCEPTION WHEN OTHERS THEN
  INSERT INTO stress.errors (op, sqlstate, message) VALUES ('upsert', SQLSTATE, SQLERRM);
END $$;

-- meisa_track: purchases (amount decides the big_spender rule) and logins;
-- event ids repeat on purpose (idempotency under concurrency).
CREATE FUNCTION stress.track(n int, amount int, ev int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM meisa_track(CASE WHEN ev % 2 = 0 THEN 'purchase' ELSE 'login' END,
    jsonb_build_object('email', 'user' || n || '@stress.test',
                       'properties', jsonb_build_object('amount', amount),
                       'event_id', 'ev-' || n || '-' || ev));
EXCEPTION WHEN OTHERS THEN
  INSERT INTO stress.errors (op, sqlstate, message) VALUES ('track', SQLSTATE, SQLERRM);
END $$;

-- tag changes
CREATE FUNCTION stress.tag(n int, tag int, add boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE t text := (ARRAY['vip', 'beta', 'news'])[tag];
BEGIN
  IF add THEN
    PERFORM meisa_add_tag('user' || n || '@stress.test', t);
  ELSE
    PERFORM meisa_remove_tag('user' || n || '@stress.test', t);
  END IF;
EXCEPTION WHEN no_data_found THEN
  NULL;  -- the contact does not exist yet (documented P0002)
WHEN OTHERS THEN
  INSERT INTO stress.errors (op, sqlstate, message) VALUES ('tag', SQLSTATE, SQLERRM);
END $$;

-- transactional mail with repeating idempotency keys
CREATE FUNCTION stress.mail(n int, k int) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM meisa_trigger_email('receipt',
    jsonb_build_object('email', 'user' || n || '@stress.test',
                       'data_variables', jsonb_build_object('order', k),
                       'idempotency_key', 'order-' || n || '-' || k));
EXCEPTION WHEN OTHERS THEN
  INSERT INTO stress.errors (op, sqlstate, message) VALUES ('mail', SQLSTATE, SQLERRM);
END $$;

-- unsubscribe / resubscribe
CREATE FUNCTION stress.subscription(n int, unsub boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF unsub THEN
    PERFORM meisa_unsubscribe('user' || n || '@stress.test');
  ELSE
    PERFORM meisa_resubscribe('user' || n || '@stress.test');
  END IF;
EXCEPTION WHEN undefined_object OR no_data_found THEN
  NULL;  -- the contact does not exist yet
WHEN OTHERS THEN
  INSERT INTO stress.errors (op, sqlstate, message) VALUES ('subscription', SQLSTATE, SQLERRM);
END $$;

-- the SQL entry points of the scheduler and the sender, beside the worker
CREATE FUNCTION stress.run_due() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM meisa_run_due();
EXCEPTION WHEN OTHERS THEN
  INSERT INTO stress.errors (op, sqlstate, message) VALUES ('run_due', SQLSTATE, SQLERRM);
END $$;

CREATE FUNCTION stress.deliver() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM meisa_deliver(10);
EXCEPTION WHEN OTHERS THEN
  INSERT INTO stress.errors (op, sqlstate, message) VALUES ('deliver', SQLSTATE, SQLERRM);
END $$;
