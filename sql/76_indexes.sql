-- 76_indexes: every foreign key to meisa.contacts has an index that leads
-- with its column (a contact's rows are found, and a contact's deletion
-- cascades, without scanning the table), and the lookup of the enrolment
-- paths uses its index; so do the poll of meisa.unsubscribed_emails, the
-- idempotency lookup of meisa_trigger_email and the delivery worker's claim.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

-- foreign keys to meisa.contacts without an index whose first column is the
-- key's column: none
SELECT c.conrelid::regclass AS tab, a.attname AS fk_column
  FROM pg_constraint c
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
 WHERE c.contype = 'f' AND c.confrelid = 'meisa.contacts'::regclass
   AND NOT EXISTS (SELECT 1 FROM pg_index i
                    WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1]
                      AND i.indpred IS NULL)
 ORDER BY 1, 2;

-- the foreign keys to meisa.contacts (all covered, above)
SELECT conrelid::regclass AS tab FROM pg_constraint
 WHERE contype = 'f' AND confrelid = 'meisa.contacts'::regclass ORDER BY 1;

-- the indexes by contact, by name
SELECT indexrelid::regclass AS index, pg_get_indexdef(indexrelid) AS definition
  FROM pg_index
 WHERE indrelid IN ('meisa.enrollments'::regclass, 'meisa.notifications'::regclass)
   AND indexrelid::regclass::text LIKE '%contact%'
 ORDER BY 1;

-- the enrolment lookup of meisa_enroll (a contact's enrolment of a sequence,
-- whatever its status) on a sequence with many enrolments: an index scan on
-- enrollments_contact_idx, not the whole sequence's enrolments
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('ix1', 'marketing', 'One', 'one');
INSERT INTO meisa.sequences (name) VALUES ('ix');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, 1, '1 day', 'ix1' FROM meisa.sequences WHERE name = 'ix';
INSERT INTO meisa.contacts (email) SELECT 'ix' || i || '@example.com' FROM generate_series(1, 3000) i;
SELECT count(meisa_enroll(email, 'ix')) AS enrolled FROM meisa.contacts;
ANALYZE meisa.enrollments;
PREPARE seen(bigint, bigint) AS
  SELECT status FROM meisa.enrollments
   WHERE contact_id OPERATOR(pg_catalog.=) $1 AND sequence_id OPERATOR(pg_catalog.=) $2
   ORDER BY status OPERATOR(pg_catalog.<>) 'active' LIMIT 1;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE seen(1, 1);
RESET plan_cache_mode;
DEALLOCATE seen;
-- a second enrol of the same contact is refused (already active) and a
-- removed one is not enrolled again (no re-entry): the lookup finds both
SELECT meisa_enroll('ix1@example.com', 'ix') AS again_active;
SELECT meisa_unenroll('ix1@example.com', 'ix') AS removed;
SELECT meisa_enroll('ix1@example.com', 'ix') AS again_removed;
SELECT status, count(*) FROM meisa.enrollments GROUP BY 1 ORDER BY 1;

-- the application's poll of meisa.unsubscribed_emails (WHERE changed_at >
-- $last_poll): an index scan on contacts_unsubscribed_idx, which holds only
-- the contacts that must not get marketing mail, not a scan of every contact
SELECT meisa_unsubscribe(email) FROM meisa.contacts WHERE id % 100 = 0 ORDER BY id LIMIT 3;
SELECT count(*) AS unsubscribed FROM (SELECT meisa_unsubscribe(email) FROM meisa.contacts WHERE id % 100 = 0) u;
ANALYZE meisa.contacts;
PREPARE poll(timestamptz) AS
  SELECT email, reason, changed_at FROM meisa.unsubscribed_emails WHERE changed_at > $1;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE poll(now() - interval '1 hour');
RESET plan_cache_mode;
SELECT count(*) AS polled FROM meisa.unsubscribed_emails WHERE changed_at > now() - interval '1 hour';
SELECT meisa_resubscribe('ix100@example.com') AS resubscribed;
SELECT count(*) AS polled FROM meisa.unsubscribed_emails WHERE changed_at > now() - interval '1 hour';
SELECT pg_get_indexdef('meisa.contacts_unsubscribed_idx'::regclass) AS definition;
DEALLOCATE poll;

-- the idempotency lookup of meisa_trigger_email (src/outbox.c): both
-- columns of messages_idempotency_idx bound ("trigger_key IS NOT DISTINCT
-- FROM $1" could not be: it read the whole index)
INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('ixreset', 'transactional', 'Reset', 'Code {{data.code}}'),
  ('ixother', 'transactional', 'Other', 'Other');
INSERT INTO meisa.messages (contact_id, to_email, kind, template_key, subject, text, status,
                            message_id, trigger_key, idempotency_key, sent_at)
SELECT id, email, 'transactional', 'ixreset', 'Reset', 'x', 'sent', '<ix' || id || '@x>',
       'ixreset', 'order-' || id, now()
  FROM meisa.contacts;
ANALYZE meisa.messages;
PREPARE idem(text, text) AS
  SELECT id, status, last_error, to_email FROM meisa.messages
   WHERE trigger_key OPERATOR(pg_catalog.=) $1 AND idempotency_key OPERATOR(pg_catalog.=) $2;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE idem('ixreset', 'order-1');
RESET plan_cache_mode;
DEALLOCATE idem;
-- a repeated key answers with the first message, more than 5 times (the
-- kept plan goes generic); the same key under another template is another message
SELECT count(DISTINCT meisa_trigger_email('ixreset', '{"email": "ix7@example.com", "idempotency_key": "k-1", "data_variables": {"code": 1}}'))
       AS distinct_ids FROM generate_series(1, 8);
SELECT meisa_trigger_email('ixreset', '{"email": "ix9@example.com", "idempotency_key": "order-5"}')
       = (SELECT id FROM meisa.messages WHERE idempotency_key = 'order-5') AS earlier_message;
SELECT meisa_trigger_email('ixother', '{"email": "ix7@example.com", "idempotency_key": "k-1"}')
       <> (SELECT id FROM meisa.messages WHERE trigger_key = 'ixreset' AND idempotency_key = 'k-1') AS other_template_other_message;

-- the delivery worker's claim (src/delivery.c) with a backlog queued at one
-- time: an ordered scan of messages_due_idx (next_attempt_at, id) that stops
-- after the batch, no sort of every due message
INSERT INTO meisa.messages (contact_id, to_email, kind, template_key, subject, text, message_id, next_attempt_at)
SELECT id, email, 'marketing', 'ix1', 'One', 'x', '<q' || id || '@x>', now() - interval '1 minute'
  FROM meisa.contacts;
ANALYZE meisa.messages;
-- (the batch the claim's UPDATE takes, exactly as in Q_CLAIM)
PREPARE claim(int, bool, bool) AS
  SELECT x.id FROM meisa.messages x WHERE x.status = 'queued'
     AND x.next_attempt_at <= pg_catalog.now()
     AND (x.from_address IS NOT NULL OR $2) AND (x.kind <> 'marketing' OR $3)
   ORDER BY x.next_attempt_at, x.id LIMIT $1 FOR UPDATE SKIP LOCKED;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE claim(100, true, true);
RESET plan_cache_mode;
DEALLOCATE claim;
SELECT pg_get_indexdef('meisa.messages_due_idx'::regclass) AS definition;
