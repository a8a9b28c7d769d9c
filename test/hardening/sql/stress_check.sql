-- test/hardening/sql/stress_check.sql
--	Invariants after a stress run (and after each crash): one line per
--	check, "name|violations|example".  Zero violations everywhere = healthy.
--	:crashed is 1 after a crash (messages may then wait in 'sending' for
--	their lease to expire).
WITH
welcome AS (SELECT id FROM meisa.automations WHERE name = 'welcome'),
onb AS (SELECT id FROM meisa.sequences WHERE name = 'onboarding'),
runs AS (
  SELECT r.contact_id, a.name, count(*) AS n
    FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id
   WHERE r.status = 'done'
   GROUP BY 1, 2),
changes AS (  -- the change sets recorded in meisa.activity, by contact
  SELECT a.contact_id,
         count(*) FILTER (WHERE jsonb_path_exists(a.detail,
           '$.**."custom_fields.plan" ? (@.old == "free" && (@.new == "standard" || @.new == "pro"))')) AS upgrades,
         count(*) FILTER (WHERE jsonb_path_exists(a.detail,
           '$.**."custom_fields.plan" ? (@.new == "churned" && (!exists(@.old) || @.old != "churned"))')) AS churns,
         count(*) FILTER (WHERE jsonb_path_exists(a.detail,
           '$.**."tags".added[*] ? (@ == "vip")')) AS vips
    FROM meisa.activity a
   -- a creation lists every field with "old": null; only updates count here
   WHERE NOT jsonb_path_exists(a.detail, '$.**."email" ? (@.old == null)')
   GROUP BY 1),
purchases AS (
  SELECT e.contact_id, count(*) AS big
    FROM meisa.events e
   WHERE e.name = 'purchase' AND (e.properties ->> 'amount')::numeric >= 100
   GROUP BY 1),
per_contact AS (
  SELECT c.id, c.email,
         coalesce((SELECT n FROM runs WHERE runs.contact_id = c.id AND runs.name = 'welcome'), 0) AS welcome_runs,
         (SELECT count(*) FROM meisa.enrollments e, onb WHERE e.contact_id = c.id AND e.sequence_id = onb.id) AS onboarding_enrolments,
         coalesce((SELECT n FROM runs WHERE runs.contact_id = c.id AND runs.name = 'upgrade'), 0) AS upgrade_runs,
         coalesce((SELECT n FROM runs WHERE runs.contact_id = c.id AND runs.name = 'churn'), 0) AS churn_runs,
         coalesce((SELECT n FROM runs WHERE runs.contact_id = c.id AND runs.name = 'vip'), 0) AS vip_runs,
         coalesce((SELECT n FROM runs WHERE runs.contact_id = c.id AND runs.name = 'big_spender'), 0) AS big_runs,
         coalesce(ch.upgrades, 0) AS upgrades, coalesce(ch.churns, 0) AS churns, coalesce(ch.vips, 0) AS vips,
         coalesce(p.big, 0) AS big
    FROM meisa.contacts c
    LEFT JOIN changes ch ON ch.contact_id = c.id
    LEFT JOIN purchases p ON p.contact_id = c.id),
checks AS (
  SELECT 'meisa.check_invariants: ' || invariant AS name, violations, example FROM meisa.check_invariants()
  UNION ALL
  SELECT 'contacts exist', CASE WHEN count(*) > 0 THEN 0 ELSE 1 END, count(*)::text FROM meisa.contacts
  UNION ALL
  SELECT 'one contact per email', count(*), min(email) FROM
    (SELECT email FROM meisa.contacts GROUP BY email HAVING count(*) > 1) x
  UNION ALL
  SELECT 'one contact per external_id', count(*), min(external_id) FROM
    (SELECT external_id FROM meisa.contacts WHERE external_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) x
  UNION ALL
  SELECT 'external_id belongs to its email', count(*), min(email) FROM meisa.contacts
   WHERE external_id IS NOT NULL AND external_id <> 'ext-' || substring(email FROM '^user([0-9]+)@')
  UNION ALL
  SELECT 'welcome ran once per created contact', count(*), min(email || ' runs=' || welcome_runs)
    FROM per_contact WHERE welcome_runs <> 1
  UNION ALL
  SELECT 'one onboarding enrolment per contact', count(*), min(email || ' enrolments=' || onboarding_enrolments)
    FROM per_contact WHERE onboarding_enrolments <> 1
  UNION ALL
  SELECT 'upgrade ran once per free->paid change', count(*), min(email || ' runs=' || upgrade_runs || ' changes=' || upgrades)
    FROM per_contact WHERE upgrade_runs <> upgrades
  UNION ALL
  SELECT 'churn ran once per change to churned', count(*), min(email || ' runs=' || churn_runs || ' changes=' || churns)
    FROM per_contact WHERE churn_runs <> churns
  UNION ALL
  SELECT 'vip ran once per vip tag added', count(*), min(email || ' runs=' || vip_runs || ' added=' || vips)
    FROM per_contact WHERE vip_runs <> vips
  UNION ALL
  SELECT 'big_spender ran once per purchase >= 100', count(*), min(email || ' runs=' || big_runs || ' purchases=' || big)
    FROM per_contact WHERE big_runs <> big
  UNION ALL
  SELECT 'every upgrade run notified', abs((SELECT count(*) FROM meisa.notifications WHERE channel = 'sales')
                                        - (SELECT coalesce(sum(upgrade_runs), 0) FROM per_contact)), NULL
  UNION ALL
  SELECT 'automation runs all done (none failed or stopped)', count(*), min(status || ': ' || coalesce(error, ''))
    FROM meisa.automation_runs WHERE status <> 'done'
  UNION ALL
  SELECT 'no enrolment step queued twice', count(*), min(enrollment_id || '/' || step_position) FROM
    (SELECT enrollment_id, step_position FROM meisa.messages
      WHERE enrollment_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) x
  UNION ALL
  -- a step beyond the enrolment's progress may only be a suppressed one
  -- (the contact unsubscribed: the enrolment exits at that step)
  SELECT 'no step queued beyond the enrolment progress', count(*), min(e.id || '/' || m.step_position)
    FROM meisa.enrollments e JOIN meisa.messages m ON m.enrollment_id = e.id
   WHERE m.step_position > e.current_step AND m.status <> 'suppressed'
  UNION ALL
  SELECT 'steps of an enrolment queued in order without gaps', count(*), min(e.id::text)
    FROM meisa.enrollments e
   WHERE (SELECT count(DISTINCT m.step_position) FROM meisa.messages m WHERE m.enrollment_id = e.id)
         <> coalesce((SELECT max(m.step_position) FROM meisa.messages m WHERE m.enrollment_id = e.id), 0)
  UNION ALL
  SELECT 'event ids recorded once', count(*), min(event_id) FROM
    (SELECT event_id FROM meisa.events WHERE event_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1) x
  UNION ALL
  SELECT 'idempotency keys queued once', count(*), min(idempotency_key) FROM
    (SELECT trigger_key, idempotency_key FROM meisa.messages WHERE idempotency_key IS NOT NULL
      GROUP BY 1, 2 HAVING count(*) > 1) x
  UNION ALL
  SELECT 'messages final or queued', count(*), min(id || ':' || status)
    FROM meisa.messages
   WHERE status NOT IN ('queued', 'sent', 'failed', 'suppressed', 'cancelled')
     AND NOT (:crashed = 1 AND status = 'sending' AND lease_until IS NOT NULL)
  UNION ALL
  SELECT 'no errors caught by the workload', count(*), min(op || ' ' || sqlstate || ' ' || message)
    FROM stress.errors
  UNION ALL
  SELECT 'no deadlocks or serialization failures', count(*), min(op || ' ' || message)
    FROM stress.errors WHERE sqlstate IN ('40P01', '40001')
)
SELECT name || '|' || violations || '|' || coalesce(example, '') FROM checks;
