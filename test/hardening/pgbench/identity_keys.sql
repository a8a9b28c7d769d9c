-- identity.sh, keys part: users 1..3 each have external_id rx<n> and the
-- emails r<n> / r<n>-alt; payloads with and without the external_id create
-- contacts, move emails and set external_ids that the other client inserts
-- at the same moment; one call in ten deletes the user's contacts to start
-- again.  Only the documented identity conflict (23505) may fail.
\set n random(1, 3)
\set k random(0, 9)
\set op random(0, 4)
SELECT CASE WHEN :k = 0 THEN (SELECT idrace.reset(:n))::text ELSE (SELECT idrace.call('keys',
         CASE WHEN :op = 0 THEN 'track' ELSE 'upsert' END,
         CASE WHEN :k <= 3 THEN jsonb_build_object('email', 'r' || :n || '@race.test', 'external_id', 'rx' || :n)
              WHEN :k <= 6 THEN jsonb_build_object('email', 'r' || :n || '-alt@race.test', 'external_id', 'rx' || :n)
              WHEN :k = 7 THEN jsonb_build_object('email', 'r' || :n || '@race.test')
              ELSE jsonb_build_object('email', 'r' || :n || '-alt@race.test') END))::text END;
