-- Live segments: meisa.segments rows validated on write, members rebuilt
-- with set-based SQL when a segment is created, enabled or changed, kept
-- current in the writing transaction by every path that changes a contact
-- (the API, automation actions, plain SQL, deletes) or records an event,
-- segment_entered / segment_exited automations, clock tests settled by
-- meisa_run_due(at), meisa.segment_count / segment_preview, the views and
-- meisa.check_invariants().
SET client_min_messages = warning;
TRUNCATE meisa.contacts, meisa.activity, meisa.events, meisa.automations, meisa.automation_runs,
         meisa.segments, meisa.segment_members, meisa.segment_checks, meisa.segment_changes CASCADE;
RESET client_min_messages;

SELECT (meisa_upsert(format('{"email": "s%s@example.com", "custom_fields": {"plan": "%s", "signin_count": %s}}',
                            i, CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END, i)::jsonb) ->> 'created')::boolean
  FROM generate_series(1, 9) i;

-- ---------------------------------------------------------------- validation
-- write-time tests read a change set, which a segment has not
INSERT INTO meisa.segments (name, conditions) VALUES ('bad', '{"field": "custom_fields.plan", "changed_to": "pro"}');
INSERT INTO meisa.segments (name, conditions) VALUES ('bad', '{"all": [{"has_tag": "x"}, {"event": "properties.x", "eq": 1}]}');
INSERT INTO meisa.segments (name, conditions) VALUES ('bad', '{"field": "custom_fields.plan", "gte5": 1}');
INSERT INTO meisa.segments (name, conditions) VALUES ('bad', '{"in_segment": "nosuch"}');
INSERT INTO meisa.segments (name, conditions) VALUES ('bad', '{"not": {"in_segment": "bad"}}');
INSERT INTO meisa.segments (name, conditions) VALUES ('bad', NULL);
INSERT INTO meisa.segments (name, conditions) VALUES ('', '{"has_tag": "x"}');
INSERT INTO meisa.segments (name, conditions) VALUES ('bad', '{"in_segment": ""}');
SELECT count(*) AS no_segment_written FROM meisa.segments;

-- ---------------------------------------------------------------- rebuild on create
INSERT INTO meisa.segments (name, conditions) VALUES ('pro', '{"field": "custom_fields.plan", "eq": "pro"}');
SELECT c.email FROM meisa.segment_members m JOIN meisa.contacts c ON c.id = m.contact_id
  JOIN meisa.segments s ON s.id = m.segment_id WHERE s.name = 'pro' ORDER BY 1;
-- a rebuild fires nothing and logs nothing
SELECT count(*) AS changes_logged_by_rebuild FROM meisa.segment_changes;

-- ---------------------------------------------------------------- automations on entered / exited
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions)
VALUES ('welcome_pro', 'segment_entered', 'pro', '[{"add_tag": "pro_member"}]'),
       ('bye_pro', 'segment_exited', 'pro', '[{"remove_tag": "pro_member"}, {"add_tag": "ex_pro"}]');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions)
VALUES ('bad_filter', 'segment_entered', 'nosuch', '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, conditions, actions)
VALUES ('bad_ref', 'contact_updated', '{"in_segment": "nosuch"}', '[{"add_tag": "x"}]');

-- the API: s1 upgrades, s3 downgrades
SELECT meisa_upsert('{"email": "s1@example.com", "custom_fields": {"plan": "pro"}}') ->> 'changed';
SELECT meisa_upsert('{"email": "s3@example.com", "custom_fields": {"plan": "free"}}') ->> 'changed';
SELECT c.email, c.tags FROM meisa.contacts c WHERE c.email IN ('s1@example.com', 's3@example.com') ORDER BY 1;
SELECT s.name AS segment, c.email, x.change FROM meisa.segment_changes x
  JOIN meisa.segments s ON s.id = x.segment_id JOIN meisa.contacts c ON c.id = x.contact_id ORDER BY x.id;
SELECT a.name, r.status, c.email FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id
  JOIN meisa.contacts c ON c.id = r.contact_id ORDER BY r.id;
-- a write that touches no field a segment reads evaluates nothing and changes nothing
SELECT meisa_upsert('{"email": "s1@example.com", "first_name": "Ann"}') ->> 'changed';
SELECT count(*) AS changes_after_unrelated_write FROM meisa.segment_changes;

-- plain SQL DML, and an automation's own action
UPDATE meisa.contacts SET custom_fields = custom_fields || '{"plan": "pro"}' WHERE email = 's2@example.com';
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions)
VALUES ('vip_by_tag', 'tag_added', 'vip', '[{"set_field": {"custom_fields.plan": "pro"}}]');
SELECT meisa_add_tag('s4@example.com', 'vip');
SELECT c.email FROM meisa.segment_contacts sc JOIN meisa.contacts c ON c.id = sc.contact_id
 WHERE sc.segment = 'pro' ORDER BY 1;

-- ---------------------------------------------------------------- segments reading segments
INSERT INTO meisa.segments (name, conditions)
VALUES ('pro_regulars', '{"all": [{"in_segment": "pro"}, {"field": "custom_fields.signin_count", "gte": 5}]}'),
       ('not_pro', '{"not_in_segment": "pro"}');
SELECT segment, members FROM meisa.segment_stats ORDER BY 1;
-- s5 becomes pro: pro and, through it, pro_regulars and not_pro change in the same write
SELECT meisa_upsert('{"email": "s5@example.com", "custom_fields": {"plan": "pro"}}') ->> 'changed';
SELECT sc.segment FROM meisa.segment_contacts sc WHERE sc.email = 's5@example.com' ORDER BY 1;
-- a cycle, renaming or deleting a segment another reads: rejected
UPDATE meisa.segments SET conditions = '{"in_segment": "pro_regulars"}' WHERE name = 'pro';
UPDATE meisa.segments SET name = 'pro_plan' WHERE name = 'pro';
DELETE FROM meisa.segments WHERE name = 'pro';

-- ---------------------------------------------------------------- disable, change, enable
UPDATE meisa.segments SET enabled = false WHERE name = 'not_pro';
SELECT segment, members FROM meisa.segment_stats WHERE segment = 'not_pro';
UPDATE meisa.segments SET conditions = '{"field": "custom_fields.signin_count", "lt": 3}', enabled = true WHERE name = 'not_pro';
SELECT sc.email FROM meisa.segment_contacts sc WHERE sc.segment = 'not_pro' ORDER BY 1;

-- ---------------------------------------------------------------- deletes
DELETE FROM meisa.contacts WHERE email = 's1@example.com';
SELECT count(*) AS rows_left_of_deleted_contact
  FROM (SELECT contact_id FROM meisa.segment_members UNION ALL SELECT contact_id FROM meisa.segment_changes
        UNION ALL SELECT contact_id FROM meisa.segment_checks) x
 WHERE x.contact_id NOT IN (SELECT id FROM meisa.contacts);

-- ---------------------------------------------------------------- draft rules
SELECT meisa.segment_count('{"field": "custom_fields.plan", "eq": "pro"}') AS pro_count,
       meisa.segment_count('{"field": "custom_fields.signin_count", "gte": 7}') AS signin_7_or_more;
SELECT email FROM meisa.segment_preview('{"field": "custom_fields.plan", "eq": "free"}', 2);
SELECT count(*) AS preview_default_limit FROM meisa.segment_preview('{"all": []}');
SELECT meisa.segment_count('{"field": "custom_fields.plan", "changed": true}');
SELECT meisa.segment_count('{"in_segment": "nosuch"}');
SELECT meisa.segment_count(NULL);
SELECT * FROM meisa.segment_preview('{"has_tag": "x"}', -1);

-- ---------------------------------------------------------------- invariants
SELECT * FROM meisa.check_invariants();
SELECT count(*) AS mismatches FROM meisa.segment_mismatches();
-- a member removed behind meisa's back is reported
SET session_replication_role = replica;
DELETE FROM meisa.segment_members WHERE contact_id = (SELECT id FROM meisa.contacts WHERE email = 's5@example.com')
   AND segment_id = (SELECT id FROM meisa.segments WHERE name = 'pro');
RESET session_replication_role;
SELECT segment, member FROM meisa.segment_mismatches();
SELECT invariant, violations FROM meisa.check_invariants();
-- the next rebuild puts it back
UPDATE meisa.segments SET conditions = '{"field": "custom_fields.plan", "eq": "pro", "exists": true}' WHERE name = 'pro';
SELECT count(*) AS mismatches_after_rebuild FROM meisa.segment_mismatches();

-- ---------------------------------------------------------------- events
INSERT INTO meisa.segments (name, conditions)
VALUES ('active_posters', '{"performed": "post_created", "count": {"gte": 2}, "within": "7 days"}');
SELECT meisa_track('post_created', '{"email": "s2@example.com"}') > 0 AS tracked;
SELECT count(*) AS members_after_one_post FROM meisa.segment_contacts WHERE segment = 'active_posters';
SELECT meisa_track('post_created', '{"email": "s2@example.com"}') > 0 AS tracked;
SELECT sc.email FROM meisa.segment_contacts sc WHERE sc.segment = 'active_posters';
-- the events leave the 7-day window by time alone: the check is kept, and
-- meisa_run_due 8 days later takes s2 out
SELECT count(*) AS checks_kept FROM meisa.segment_checks k JOIN meisa.segments s ON s.id = k.segment_id
 WHERE s.name = 'active_posters';
SELECT meisa_run_due(now() + interval '8 days') AS enrolments_advanced;
SELECT count(*) AS members_8_days_later FROM meisa.segment_contacts WHERE segment = 'active_posters';

-- ---------------------------------------------------------------- time alone
-- "3 days after signup and not activated"
INSERT INTO meisa.segments (name, conditions)
VALUES ('not_activated_3d', '{"all": [{"field": "custom_fields.signup_date", "older_than": "3 days"}, {"lacks_tag": "activated"}]}');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions)
VALUES ('nudge', 'segment_entered', 'not_activated_3d', '[{"add_tag": "nudged"}]');
SELECT meisa_upsert(jsonb_build_object('email', 'new@example.com', 'custom_fields', jsonb_build_object('signup_date', now()))) ->> 'created';
SELECT meisa_upsert(jsonb_build_object('email', 'new2@example.com', 'tag_names', '["activated"]'::jsonb,
                                       'custom_fields', jsonb_build_object('signup_date', now()))) ->> 'created';
-- the next check: the moment signup_date becomes older than 3 days (kept for
-- new2 too: a check is where the result can change, whatever else holds)
SELECT c.email, k.check_at = (c.custom_fields ->> 'signup_date')::timestamptz + interval '3 days' + interval '1 microsecond' AS check_at_3_days
  FROM meisa.segment_checks k JOIN meisa.contacts c ON c.id = k.contact_id
  JOIN meisa.segments s ON s.id = k.segment_id WHERE s.name = 'not_activated_3d' ORDER BY 1;
SELECT meisa_run_due(now() + interval '2 days') AS at_2_days;
SELECT count(*) AS members_at_2_days FROM meisa.segment_contacts WHERE segment = 'not_activated_3d';
SELECT meisa_run_due(now() + interval '4 days') AS at_4_days;
SELECT sc.email, c.tags FROM meisa.segment_contacts sc JOIN meisa.contacts c ON c.id = sc.contact_id
 WHERE sc.segment = 'not_activated_3d';
SELECT count(*) AS checks_left FROM meisa.segment_checks k JOIN meisa.segments s ON s.id = k.segment_id
 WHERE s.name = 'not_activated_3d';
-- activating takes the contact out at once
SELECT meisa_add_tag('new@example.com', 'activated');
SELECT count(*) AS members_after_activation FROM meisa.segment_contacts WHERE segment = 'not_activated_3d';

-- ---------------------------------------------------------------- sequences: clock tests at 'at'
-- a step condition with a clock test is evaluated at meisa_run_due's 'at'
-- (new2 signed up now: at now + 3 days the signup is older than 2 days)
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('later', 'transactional', 'Later', 'Later');
INSERT INTO meisa.sequences (name) VALUES ('slow');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template, conditions)
  SELECT id, 1, interval '3 days', 'later', '{"field": "custom_fields.signup_date", "older_than": "2 days"}'
    FROM meisa.sequences WHERE name = 'slow';
SELECT meisa_enroll('new2@example.com', 'slow') IS NOT NULL AS enrolled;
SELECT meisa_run_due(now() + interval '3 days') AS advanced;
SELECT m.template_key, m.status, c.email FROM meisa.messages m JOIN meisa.contacts c ON c.id = m.contact_id
 WHERE m.template_key = 'later';

-- ---------------------------------------------------------------- privileges
-- admin writes segments and counts drafts, reader reads the views, app neither
SELECT meisa.grant('meisa_app', 'app'), meisa.grant('meisa_admin', 'admin'), meisa.grant('meisa_reader', 'reader');
SET ROLE meisa_reader;
SELECT segment, members FROM meisa.segment_stats WHERE segment = 'pro';
SELECT count(*) > 0 AS reads_members FROM meisa.segment_contacts;
INSERT INTO meisa.segments (name, conditions) VALUES ('by_reader', '{"has_tag": "x"}');
SELECT meisa.segment_count('{"has_tag": "x"}');
RESET ROLE;
SET ROLE meisa_admin;
INSERT INTO meisa.segments (name, conditions, enabled) VALUES ('by_admin', '{"has_tag": "x"}', false);
SELECT meisa.segment_count('{"has_tag": "vip"}') AS admin_counts;
DELETE FROM meisa.segments WHERE name = 'by_admin';
RESET ROLE;
SET ROLE meisa_app;
SELECT count(*) FROM meisa.segment_members;
RESET ROLE;

-- ---------------------------------------------------------------- reporting
SELECT segment, members, entered_7d, exited_7d FROM meisa.segment_stats ORDER BY 1;
SELECT kind, detail FROM meisa.contact_activity
 WHERE contact_id = (SELECT id FROM meisa.contacts WHERE email = 's3@example.com') AND kind LIKE 'segment%'
 ORDER BY at, kind;
-- (meisa_run_due ran the future above: clock segments now hold what they
-- will hold then, so only the segments without clock tests are compared)
SELECT segment, count(*) FROM meisa.segment_mismatches()
 WHERE segment NOT IN ('active_posters', 'not_activated_3d') GROUP BY 1;

-- ---------------------------------------------------------------- order within a write
-- a write's own automations see the memberships from before the write; the
-- segments follow, and entering fires segment_entered
INSERT INTO meisa.automations (name, trigger, conditions, actions)
VALUES ('sees_before', 'contact_updated',
        '{"all": [{"field": "custom_fields.plan", "changed_to": "pro"}, {"in_segment": "pro"}]}',
        '[{"add_tag": "was_pro_already"}]');
SELECT meisa_upsert('{"email": "s7@example.com", "custom_fields": {"plan": "pro"}}') ->> 'changed';
SELECT tags FROM meisa.contacts WHERE email = 's7@example.com';
SELECT sc.segment FROM meisa.segment_contacts sc WHERE sc.email = 's7@example.com' ORDER BY 1;

-- ---------------------------------------------------------------- a failing automation
-- a segment_entered automation that fails is recorded as failed, its
-- actions rolled back; the write and the membership stay
INSERT INTO meisa.templates (key, kind, subject, html) VALUES ('crlf_seg', 'marketing', 'Hi {{{custom_fields.s}}}', '<p>x</p>');
INSERT INTO meisa.segments (name, conditions) VALUES ('has_s', '{"field": "custom_fields.s", "exists": true}');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions)
VALUES ('seg_broken', 'segment_entered', 'has_s', '[{"add_tag": "partial"}, {"send_email": "crlf_seg"}]');
SELECT meisa_upsert(jsonb_build_object('email', 's8@example.com',
                    'custom_fields', jsonb_build_object('s', E'x\r\nBcc: evil@example.com'))) ->> 'changed' AS changed;
SELECT tags, custom_fields ? 's' AS written FROM meisa.contacts WHERE email = 's8@example.com';
SELECT r.status, r.actions_done, r.error IS NOT NULL AS has_error FROM meisa.automation_runs r
  JOIN meisa.automations a ON a.id = r.automation_id WHERE a.name = 'seg_broken';
SELECT sc.segment FROM meisa.segment_contacts sc WHERE sc.email = 's8@example.com' ORDER BY 1;
