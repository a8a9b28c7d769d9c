-- 76_indexes: every foreign key to meisa.contacts has an index that leads
-- with its column (a contact's rows are found, and a contact's deletion
-- cascades, without scanning the table), and the lookup of the enrolment
-- paths uses its index.
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
