-- The condition language evaluated by meisa.condition_test(): every test,
-- the type rules, missing fields and nulls, dates, mixed types, changes.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DROP SCHEMA IF EXISTS t50 CASCADE;
CREATE SCHEMA t50;
RESET client_min_messages;
SET search_path = t50, public;
SET timezone = 'UTC';

CREATE TEMP TABLE c AS SELECT '{"id": 0, "email": "ann@example.com", "first_name": "Ann",
  "last_name": null, "subscribed": true, "created_at": "2020-01-15T10:00:00+00:00",
  "tags": ["beta", "vip"],
  "custom_fields": {"plan": "pro", "age": 42, "score": "17", "ratio": 0.5, "active": true,
                    "trial_ends": "2020-02-01", "signup": "2020-01-15T10:00:00Z",
                    "recent": "2999-01-01", "nickname": "Annie"}}'::jsonb AS d;
CREATE FUNCTION t(cond text) RETURNS boolean LANGUAGE sql AS
  $$ SELECT meisa.condition_test(cond::jsonb, (SELECT d FROM c)) $$;

-- eq / ne on strings, numbers, booleans
SELECT t('{"field": "custom_fields.plan", "eq": "pro"}') AS eq_str,
       t('{"field": "custom_fields.plan", "eq": "Pro"}') AS eq_case,
       t('{"field": "custom_fields.plan", "ne": "free"}') AS ne_str,
       t('{"field": "custom_fields.plan", "ne": "pro"}') AS ne_same,
       t('{"field": "custom_fields.age", "eq": 42}') AS eq_num,
       t('{"field": "custom_fields.age", "eq": 42.0}') AS eq_num_scale,
       t('{"field": "custom_fields.active", "eq": true}') AS eq_bool,
       t('{"field": "subscribed", "eq": false}') AS eq_bool_false,
       t('{"field": "first_name", "eq": "Ann"}') AS eq_plain_field,
       t('{"field": "email", "eq": "ann@example.com"}') AS eq_email;
-- lists mean "any of"
SELECT t('{"field": "custom_fields.plan", "eq": ["free", "pro"]}') AS eq_list,
       t('{"field": "custom_fields.plan", "eq": ["free", "standard"]}') AS eq_list_no,
       t('{"field": "custom_fields.plan", "ne": ["free", "standard"]}') AS ne_list,
       t('{"field": "custom_fields.plan", "ne": ["free", "pro"]}') AS ne_list_no,
       t('{"field": "custom_fields.plan", "in": ["standard", "pro"]}') AS in_list,
       t('{"field": "custom_fields.plan", "in": ["standard"]}') AS in_list_no,
       t('{"field": "custom_fields.plan", "in": []}') AS in_empty,
       t('{"field": "custom_fields.plan", "not_in": ["free", "standard"]}') AS not_in,
       t('{"field": "custom_fields.plan", "not_in": ["pro"]}') AS not_in_no,
       t('{"field": "custom_fields.age", "in": [1, 42]}') AS in_num;
-- ordering: numbers numerically (not as text)
SELECT t('{"field": "custom_fields.age", "gt": 9}') AS gt_9,
       t('{"field": "custom_fields.age", "gt": 42}') AS gt_eq,
       t('{"field": "custom_fields.age", "gte": 42}') AS gte_eq,
       t('{"field": "custom_fields.age", "lt": 100}') AS lt_100,
       t('{"field": "custom_fields.age", "lt": 42}') AS lt_eq,
       t('{"field": "custom_fields.age", "lte": 42}') AS lte_eq,
       t('{"field": "custom_fields.ratio", "lt": 1}') AS lt_frac,
       t('{"field": "custom_fields.ratio", "gt": 0.25}') AS gt_frac,
       t('{"field": "custom_fields.age", "gte": 40, "lte": 50}') AS range,
       t('{"field": "custom_fields.age", "gte": 43, "lte": 50}') AS range_no;
-- strings order byte-wise
SELECT t('{"field": "custom_fields.plan", "gt": "free"}') AS str_gt,
       t('{"field": "custom_fields.plan", "lt": "free"}') AS str_lt,
       t('{"field": "custom_fields.plan", "gte": "pro"}') AS str_gte;
-- mixed types: a numeric string compares with a number, otherwise never equal
SELECT t('{"field": "custom_fields.score", "gt": 9}') AS numstr_gt_num,
       t('{"field": "custom_fields.score", "eq": 17}') AS numstr_eq_num,
       t('{"field": "custom_fields.age", "eq": "42"}') AS num_eq_numstr,
       t('{"field": "custom_fields.score", "gt": "9"}') AS numstr_gt_str_bytewise,
       t('{"field": "custom_fields.plan", "eq": 1}') AS str_eq_num,
       t('{"field": "custom_fields.plan", "ne": 1}') AS str_ne_num,
       t('{"field": "custom_fields.plan", "gt": 1}') AS str_gt_num,
       t('{"field": "custom_fields.active", "eq": "true"}') AS bool_eq_str,
       t('{"field": "custom_fields.active", "eq": 1}') AS bool_eq_num,
       t('{"field": "custom_fields.age", "eq": true}') AS num_eq_bool;
-- contains / starts_with
SELECT t('{"field": "email", "contains": "@example."}') AS contains,
       t('{"field": "email", "contains": "@other."}') AS contains_no,
       t('{"field": "email", "contains": ["x", "ann"]}') AS contains_list,
       t('{"field": "email", "starts_with": "ann@"}') AS starts,
       t('{"field": "email", "starts_with": "example"}') AS starts_no,
       t('{"field": "email", "starts_with": ["bob", "an"]}') AS starts_list,
       t('{"field": "custom_fields.age", "contains": "4"}') AS contains_on_number,
       t('{"field": "custom_fields.age", "starts_with": "4"}') AS starts_on_number;
-- exists, missing fields and nulls: a missing (or null) field fails every
-- test but "exists": false and "ne"
SELECT t('{"field": "custom_fields.plan", "exists": true}') AS exists_t,
       t('{"field": "custom_fields.plan", "exists": false}') AS exists_f,
       t('{"field": "custom_fields.nope", "exists": false}') AS missing_exists_f,
       t('{"field": "custom_fields.nope", "exists": true}') AS missing_exists_t,
       t('{"field": "custom_fields.nope", "ne": "x"}') AS missing_ne,
       t('{"field": "custom_fields.nope", "ne": ["x", "y"]}') AS missing_ne_list,
       t('{"field": "custom_fields.nope", "eq": "x"}') AS missing_eq,
       t('{"field": "custom_fields.nope", "not_in": ["x"]}') AS missing_not_in,
       t('{"field": "custom_fields.nope", "lt": 5}') AS missing_lt,
       t('{"field": "custom_fields.nope", "older_than": "1 day"}') AS missing_older;
SELECT t('{"field": "last_name", "exists": false}') AS null_is_missing,
       t('{"field": "last_name", "ne": "x"}') AS null_ne,
       t('{"field": "last_name", "eq": "x"}') AS null_eq,
       t('{"field": "external_id", "exists": false}') AS absent_key,
       meisa.condition_test('{"field": "email", "exists": false}', NULL) AS no_contact_exists_f,
       meisa.condition_test('{"field": "email", "eq": "a"}', NULL) AS no_contact_eq,
       meisa.condition_test(NULL, NULL) AS null_rule_always,
       meisa.condition_test('null', '{}') AS json_null_rule_always;
-- dates: ISO 8601 strings compare as times when both sides parse
SELECT t('{"field": "custom_fields.trial_ends", "gt": "2020-01-31T23:59:59Z"}') AS date_gt_ts,
       t('{"field": "custom_fields.trial_ends", "lt": "2020-02-01T00:00:01+00:00"}') AS date_lt_ts,
       t('{"field": "custom_fields.trial_ends", "eq": "2020-02-01T00:00:00Z"}') AS date_eq_ts,
       t('{"field": "custom_fields.signup", "eq": "2020-01-15T11:00:00+01:00"}') AS tz_offsets_equal,
       t('{"field": "custom_fields.signup", "eq": "2020-01-15T10:00:00.000000Z"}') AS fraction_equal,
       t('{"field": "created_at", "lt": "2020-01-15T10:00:01Z"}') AS created_lt,
       t('{"field": "created_at", "gte": "2020-01-15"}') AS created_gte_date,
       t('{"field": "custom_fields.nickname", "gt": "2020-01-01"}') AS text_vs_date_bytewise;
-- within_last / older_than against now()
SELECT t('{"field": "created_at", "older_than": "30 days"}') AS older,
       t('{"field": "created_at", "within_last": "30 days"}') AS within,
       t('{"field": "custom_fields.recent", "within_last": "7 days"}') AS future_not_within,
       t('{"field": "custom_fields.recent", "older_than": "7 days"}') AS future_not_older,
       t('{"field": "custom_fields.plan", "within_last": "7 days"}') AS not_a_date,
       t('{"field": "custom_fields.age", "older_than": "7 days"}') AS number_not_a_date,
       meisa.condition_test('{"field": "custom_fields.d", "within_last": "2 hours 30 minutes"}',
         jsonb_build_object('custom_fields', jsonb_build_object('d', to_char(now() - interval '2 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))) AS within_hours,
       meisa.condition_test('{"field": "custom_fields.d", "within_last": "1 hour"}',
         jsonb_build_object('custom_fields', jsonb_build_object('d', to_char(now() - interval '2 hours', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))) AS not_within_hour,
       meisa.condition_test('{"field": "custom_fields.d", "older_than": "1 week"}',
         jsonb_build_object('custom_fields', jsonb_build_object('d', to_char(current_date - 8, 'YYYY-MM-DD')))) AS older_week,
       meisa.condition_test('{"field": "custom_fields.d", "within_last": "1 month"}',
         jsonb_build_object('custom_fields', jsonb_build_object('d', to_char(current_date - 8, 'YYYY-MM-DD')))) AS within_month;
-- has_tag / lacks_tag, all / any / not, an array means all
SELECT t('{"has_tag": "vip"}') AS has_vip,
       t('{"has_tag": "VIP"}') AS has_vip_case,
       t('{"lacks_tag": "vip"}') AS lacks_vip,
       t('{"lacks_tag": "churned"}') AS lacks_churned,
       t('{"all": [{"has_tag": "vip"}, {"field": "custom_fields.age", "gt": 40}]}') AS all_t,
       t('{"all": [{"has_tag": "vip"}, {"field": "custom_fields.age", "gt": 50}]}') AS all_f,
       t('{"any": [{"has_tag": "nope"}, {"field": "custom_fields.age", "gt": 40}]}') AS any_t,
       t('{"any": [{"has_tag": "nope"}, {"field": "custom_fields.age", "gt": 50}]}') AS any_f,
       t('{"not": {"has_tag": "vip"}}') AS not_f,
       t('{"all": []}') AS all_empty,
       t('{"any": []}') AS any_empty,
       t('[{"has_tag": "vip"}, {"has_tag": "beta"}]') AS array_all;
-- the tags array as a field: contains an element, changed in the change set
SELECT t('{"field": "tags", "contains": "vip"}') AS tags_contains,
       t('{"field": "tags", "contains": ["x", "beta"]}') AS tags_contains_any,
       t('{"field": "tags", "contains": "vi"}') AS tags_no_substring,
       t('{"field": "tags", "eq": "vip"}') AS tags_not_a_scalar,
       meisa.condition_test('{"field": "tags", "changed": true}', '{}', '{"tags": {"old": [], "new": ["a"], "added": ["a"], "removed": []}}') AS tags_changed;
-- an object of tests as the value of eq / ne
SELECT t('{"field": "custom_fields.age", "eq": {"gte": 40, "lt": 50}}') AS eq_tests,
       t('{"field": "custom_fields.age", "ne": {"gte": 40, "lt": 50}}') AS ne_tests;

-- changed / changed_from / changed_to read the change set
CREATE FUNCTION tc(cond text, changes text) RETURNS boolean LANGUAGE sql AS
  $$ SELECT meisa.condition_test(cond::jsonb, (SELECT d FROM c), changes::jsonb) $$;
SELECT tc('{"field": "custom_fields.plan", "changed": true}', '{"custom_fields.plan": {"old": "free", "new": "pro"}}') AS changed_t,
       tc('{"field": "custom_fields.plan", "changed": true}', '{"email": {"old": "a@x.io", "new": "b@x.io"}}') AS changed_other,
       tc('{"field": "custom_fields.plan", "changed": false}', '{"email": {"old": "a@x.io", "new": "b@x.io"}}') AS not_changed,
       tc('{"field": "custom_fields.plan", "changed": true}', NULL) AS changed_no_set,
       tc('{"field": "custom_fields.plan", "changed": false}', NULL) AS not_changed_no_set;
-- the four examples of the product guide
SELECT tc('{"field":"custom_fields.plan","changed_from":"free","changed_to":{"in":["standard","pro"]}}',
          '{"custom_fields.plan": {"old": "free", "new": "pro"}}') AS free_to_pro,
       tc('{"field":"custom_fields.plan","changed_from":"free","changed_to":{"in":["standard","pro"]}}',
          '{"custom_fields.plan": {"old": "free", "new": "churned"}}') AS free_to_churned,
       tc('{"field":"custom_fields.plan","changed_from":"free","changed_to":{"in":["standard","pro"]}}',
          '{"custom_fields.plan": {"old": "standard", "new": "pro"}}') AS standard_to_pro,
       tc('{"field":"custom_fields.plan","changed_from":"free","changed_to":{"in":["standard","pro"]}}',
          '{"custom_fields.plan": {"old": null, "new": "pro"}}') AS new_pro,
       tc('{"field":"custom_fields.plan","changed_to":"churned"}',
          '{"custom_fields.plan": {"old": "pro", "new": "churned"}}') AS to_churned,
       tc('{"field":"custom_fields.plan","changed_to":"churned"}',
          '{"custom_fields.other": {"old": "pro", "new": "churned"}}') AS other_to_churned,
       tc('{"field":"custom_fields.onboarding_completed","changed_to":true}',
          '{"custom_fields.onboarding_completed": {"old": false, "new": true}}') AS onboarded,
       tc('{"field":"custom_fields.onboarding_completed","changed_to":true}',
          '{"custom_fields.onboarding_completed": {"old": true, "new": false}}') AS un_onboarded,
       tc('{"field":"custom_fields.onboarding_completed","changed_to":true}',
          '{"custom_fields.onboarding_completed": {"old": null, "new": "true"}}') AS string_true_is_not_true;
SELECT tc('{"field":"custom_fields.posts_generated","changed_from":{"lt":5},"changed_to":{"gte":5}}',
          '{"custom_fields.posts_generated": {"old": 4, "new": 5}}') AS crossed_5,
       tc('{"field":"custom_fields.posts_generated","changed_from":{"lt":5},"changed_to":{"gte":5}}',
          '{"custom_fields.posts_generated": {"old": 5, "new": 6}}') AS already_past,
       tc('{"field":"custom_fields.posts_generated","changed_from":{"lt":5},"changed_to":{"gte":5}}',
          '{"custom_fields.posts_generated": {"old": null, "new": 7}}') AS new_field_old_missing,
       tc('{"field":"custom_fields.posts_generated","changed_from":{"exists": false},"changed_to":{"gte":5}}',
          '{"custom_fields.posts_generated": {"old": null, "new": 7}}') AS from_missing,
       tc('{"field":"custom_fields.x","changed_to":{"exists": false}}',
          '{"custom_fields.x": {"old": 1, "new": null}}') AS removed,
       tc('{"field":"custom_fields.x","changed_from":["a", "b"]}',
          '{"custom_fields.x": {"old": "b", "new": "c"}}') AS from_list;

-- event property tests
SELECT meisa.condition_test('{"event": "properties.feature", "eq": "export"}', '{}', NULL, '{"feature": "export"}') AS prop_eq,
       meisa.condition_test('{"event": "properties.feature", "eq": "export"}', '{}', NULL, '{"feature": "import"}') AS prop_ne,
       meisa.condition_test('{"event": "properties.plan.seats", "gte": 10}', '{}', NULL, '{"plan": {"seats": 12}}') AS prop_nested,
       meisa.condition_test('{"event": "properties.items.1", "eq": "b"}', '{}', NULL, '{"items": ["a", "b"]}') AS prop_index,
       meisa.condition_test('{"event": "properties.items", "contains": "b"}', '{}', NULL, '{"items": ["a", "b"]}') AS prop_array_contains,
       meisa.condition_test('{"event": "properties.items", "contains": 3}', '{}', NULL, '{"items": [1, 3]}') AS prop_array_contains_num,
       meisa.condition_test('{"event": "properties.x", "exists": false}', '{}', NULL, '{"x": null}') AS prop_null_missing,
       meisa.condition_test('{"event": "properties.x", "ne": 1}', '{}', NULL, NULL) AS no_props_ne,
       meisa.condition_test('{"event": "properties.x", "eq": 1}', '{}', NULL, NULL) AS no_props_eq;

-- invalid rules are rejected naming the offending part
SELECT meisa.condition_test('{"all": [{"has_tag": "a"}, {"field": "custom_fields.n", "gte5": 3}]}', '{}');
SELECT meisa.condition_test('{"field": "custom_fields.n"}', '{}');
SELECT meisa.condition_test('{"field": "nickname", "eq": 1}', '{}');
SELECT meisa.condition_test('{"field": "custom_fields.9x", "eq": 1}', '{}');
SELECT meisa.condition_test('{"field": 3, "eq": 1}', '{}');
SELECT meisa.condition_test('{"field": "email", "eq": null}', '{}');
SELECT meisa.condition_test('{"field": "email", "gt": {"lt": 3}}', '{}');
SELECT meisa.condition_test('{"field": "email", "in": [1, [2]]}', '{}');
SELECT meisa.condition_test('{"field": "email", "starts_with": 5}', '{}');
SELECT meisa.condition_test('{"field": "email", "exists": "yes"}', '{}');
SELECT meisa.condition_test('{"field": "email", "within_last": "7 fortnights"}', '{}');
SELECT meisa.condition_test('{"field": "email", "older_than": 7}', '{}');
SELECT meisa.condition_test('{"field": "email", "changed_to": {"changed": true}}', '{}');
SELECT meisa.condition_test('{"field": "email", "changed_to": {"foo": 1}}', '{}');
SELECT meisa.condition_test('{"field": "email", "eq": {}}', '{}');
SELECT meisa.condition_test('{"any": {"has_tag": "a"}}', '{}');
SELECT meisa.condition_test('{"all": [{"not": {"nope": 1}}]}', '{}');
SELECT meisa.condition_test('{"has_tag": "a", "lacks_tag": "b"}', '{}');
SELECT meisa.condition_test('{"has_tag": ""}', '{}');
SELECT meisa.condition_test('{}', '{}');
SELECT meisa.condition_test('"x"', '{}');
SELECT meisa.condition_test('{"eq": 1}', '{}');
SELECT meisa.condition_test('{"event": "feature", "eq": 1}', '{}');
SELECT meisa.condition_test('{"event": "properties.a..b", "eq": 1}', '{}');
SELECT meisa.condition_test('{"event": "properties.a", "changed": true}', '{}');
SELECT meisa.condition_test('{"performed": "x", "count": {"gte": "3"}}', '{}');
SELECT meisa.condition_test('{"performed": "x", "count": {"contains": 3}}', '{}');
SELECT meisa.condition_test('{"performed": "x", "within": "soon"}', '{}');
SELECT meisa.condition_test('{"performed": "x", "every": "day"}', '{}');
SELECT meisa.condition_test('{"field": "email", "eq": 1}', '[1]');
-- deep nesting is refused, not a crash
SELECT meisa.condition_test((repeat('{"not": ', 5000) || '{"has_tag": "a"}' || repeat('}', 5000))::jsonb, '{}');

-- "eq" with an object of tests holds when every test holds, also for a
-- missing (or null) value: {"exists": false} and "ne" hold there
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"exists": false}}', '{}') AS eq_exists_false_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"exists": false}}',
                            '{"custom_fields": {"x": null}}') AS eq_exists_false_null;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"exists": false}}',
                            '{"custom_fields": {"x": 1}}') AS eq_exists_false_present;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"exists": true}}', '{}') AS eq_exists_true_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"gte": 5}}', '{}') AS eq_gte_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"ne": 5}}', '{}') AS eq_ne_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"gte": 5, "lt": 10}}',
                            '{"custom_fields": {"x": 7}}') AS eq_range_present;
-- unchanged: a literal or a list never equals a missing value; ne holds
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": 5}', '{}') AS eq_literal_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": [5, 6]}', '{}') AS eq_list_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "ne": {"gte": 5}}', '{}') AS ne_tests_missing;

-- "within_last"/"older_than"/"within" spans up to the accepted maximum
-- (110000 months): now() minus such a span is before 4714 BC, which the
-- comparison treats as the beginning of time instead of failing
SELECT meisa.condition_test('{"field": "created_at", "within_last": "10000 years"}',
                            '{"created_at": "2020-01-01T00:00:00Z"}') AS within_10000y;
SELECT meisa.condition_test('{"field": "created_at", "older_than": "10000 years"}',
                            '{"created_at": "2020-01-01T00:00:00Z"}') AS older_10000y;
SELECT meisa.condition_test('{"performed": "login", "within": "10000 years"}',
                            '{"id": 1}') AS performed_10000y;
SELECT meisa.condition_test('{"field": "created_at", "within_last": "1000000 days 9999999 hours"}',
                            '{"created_at": "2020-01-01T00:00:00Z"}') AS within_huge_days;
-- an hour count that would overflow the span's microseconds is invalid
SELECT meisa.condition_test(jsonb_build_object('field', 'created_at', 'within_last',
                            repeat('9999999 hours ', 3)), '{}');

-- the path in a message about a deeply nested part stops growing after 200
-- bytes (compiling a deep rule costs linear, not quadratic, memory)
SELECT meisa.condition_test((repeat('{"not": ', 60) || '{"has_tag": 1}' || repeat('}', 60))::jsonb, '{}');
