-- Templates, the outbox, transactional email and sequences (DESIGN §2, §4):
-- validation triggers on meisa.templates / meisa.sequences /
-- meisa.sequence_steps, the API functions meisa_trigger_email,
-- meisa_enroll, meisa_unenroll, meisa_run_due, and the reporting views
-- meisa.sequence_funnel and meisa.message_stats.

-- Rendered bodies are compressed with lz4 where the server supports it
-- (much cheaper than pglz when meisa_run_due queues thousands of messages).
DO $lz4$
BEGIN
  ALTER TABLE meisa.messages ALTER COLUMN html SET COMPRESSION lz4,
                             ALTER COLUMN text SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
  NULL;
END
$lz4$;

-- Private: validates a template row on write (key, kind, html or text,
-- Mustache syntax of subject/html/text, no line breaks in headers).
CREATE FUNCTION meisa.template_check() RETURNS trigger
    AS 'MODULE_PATHNAME', 'meisa_template_check' LANGUAGE C;
CREATE TRIGGER templates_check BEFORE INSERT OR UPDATE ON meisa.templates
    FOR EACH ROW EXECUTE FUNCTION meisa.template_check();

-- Private: validates a sequence row on write (name, timezone, send window,
-- exit_conditions is an object).
CREATE FUNCTION meisa.sequence_check() RETURNS trigger
    AS 'MODULE_PATHNAME', 'meisa_sequence_check' LANGUAGE C;
CREATE TRIGGER sequences_check BEFORE INSERT OR UPDATE ON meisa.sequences
    FOR EACH ROW EXECUTE FUNCTION meisa.sequence_check();

-- Private: validates a sequence step on write (delay not negative,
-- conditions is an object).
CREATE FUNCTION meisa.sequence_step_check() RETURNS trigger
    AS 'MODULE_PATHNAME', 'meisa_sequence_step_check' LANGUAGE C;
CREATE TRIGGER sequence_steps_check BEFORE INSERT OR UPDATE ON meisa.sequence_steps
    FOR EACH ROW EXECUTE FUNCTION meisa.sequence_step_check();

-- API: Public (meisa_app). Renders the transactional template 'trigger_key'
-- for payload.email with payload.data_variables and queues one message.
CREATE FUNCTION meisa_trigger_email(trigger_key text, payload jsonb) RETURNS bigint
    AS 'MODULE_PATHNAME', 'meisa_trigger_email' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, meisa, pg_temp;

-- API: Admin. Enrols a contact in a sequence; NULL when not enrolled.
CREATE FUNCTION meisa_enroll(email text, sequence text) RETURNS bigint
    AS 'MODULE_PATHNAME', 'meisa_enroll' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, meisa, pg_temp;

-- API: Admin. Removes a contact's active enrolment; false when there was none.
CREATE FUNCTION meisa_unenroll(email text, sequence text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'meisa_unenroll' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, meisa, pg_temp;

-- API: Admin. Advances every enrolment due at 'at'; returns how many advanced.
CREATE FUNCTION meisa_run_due("at" timestamptz DEFAULT now()) RETURNS integer
    AS 'MODULE_PATHNAME', 'meisa_run_due' LANGUAGE C VOLATILE
    SECURITY DEFINER SET search_path = pg_catalog, meisa, pg_temp;

-- Reporting: per sequence and step.  An enrolment "entered" a step once it
-- was done with the step before it (or enrolled, for the first step),
-- "completed" the step once its current_step reached it (message queued or
-- step skipped), and is counted "active", "exited" or "removed" at the step
-- it was waiting for.  "sent"/"suppressed" count the step's messages.
CREATE VIEW meisa.sequence_funnel AS
WITH steps AS (
    SELECT st.sequence_id, st.position, st.template,
           lag(st.position, 1, 0) OVER (PARTITION BY st.sequence_id ORDER BY st.position) AS prev_position
      FROM meisa.sequence_steps st
), enrolled AS (
    SELECT sequence_id, status, current_step, count(*) AS n
      FROM meisa.enrollments
     GROUP BY sequence_id, status, current_step
), mailed AS (
    SELECT sequence_id, step_position,
           count(*) FILTER (WHERE status <> 'suppressed') AS sent,
           count(*) FILTER (WHERE status = 'suppressed') AS suppressed
      FROM meisa.messages
     WHERE sequence_id IS NOT NULL
     GROUP BY sequence_id, step_position
)
SELECT s.id AS sequence_id,
       s.name AS sequence,
       st.position,
       st.template,
       COALESCE((SELECT sum(n) FROM enrolled e WHERE e.sequence_id = st.sequence_id
                   AND e.current_step >= st.prev_position), 0)::bigint AS entered,
       COALESCE((SELECT sum(n) FROM enrolled e WHERE e.sequence_id = st.sequence_id
                   AND e.status = 'active' AND e.current_step >= st.prev_position
                   AND e.current_step < st.position), 0)::bigint AS active,
       COALESCE(m.sent, 0) AS sent,
       COALESCE(m.suppressed, 0) AS suppressed,
       COALESCE((SELECT sum(n) FROM enrolled e WHERE e.sequence_id = st.sequence_id
                   AND e.status = 'exited' AND e.current_step >= st.prev_position
                   AND e.current_step < st.position), 0)::bigint AS exited,
       COALESCE((SELECT sum(n) FROM enrolled e WHERE e.sequence_id = st.sequence_id
                   AND e.status = 'removed' AND e.current_step >= st.prev_position
                   AND e.current_step < st.position), 0)::bigint AS removed,
       COALESCE((SELECT sum(n) FROM enrolled e WHERE e.sequence_id = st.sequence_id
                   AND e.current_step >= st.position), 0)::bigint AS completed
  FROM meisa.sequences s
  JOIN steps st ON st.sequence_id = s.id
  LEFT JOIN mailed m ON m.sequence_id = st.sequence_id AND m.step_position = st.position;

-- Reporting: messages per UTC day of queueing, kind and status.
CREATE VIEW meisa.message_stats AS
SELECT (m.created_at AT TIME ZONE 'UTC')::date AS day,
       m.kind,
       m.status,
       count(*) AS count
  FROM meisa.messages m
 GROUP BY 1, 2, 3;

GRANT SELECT ON meisa.sequence_funnel, meisa.message_stats TO meisa_reader, meisa_admin;
GRANT EXECUTE ON FUNCTION meisa_trigger_email(text, jsonb) TO meisa_app;
GRANT EXECUTE ON FUNCTION meisa_enroll(text, text), meisa_unenroll(text, text),
      meisa_run_due(timestamptz) TO meisa_admin;
