-- identity.sh, self part: contact self1 takes email sc-a or sc-b (upsert),
-- or an event names it by both (track); no call may fail
\set e random(0, 1)
\set op random(0, 3)
SELECT idrace.call('self', CASE WHEN :op = 0 THEN 'track' ELSE 'upsert' END,
       jsonb_build_object('external_id', 'self1',
                          'email', CASE WHEN :e = 0 THEN 'sc-a@race.test' ELSE 'sc-b@race.test' END));
