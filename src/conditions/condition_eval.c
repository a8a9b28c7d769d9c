/*
 * condition_eval.c
 *		Evaluator of compiled conditions (condition.c) against a contact, the
 *		change set of the write that fired a rule and a custom event's
 *		properties, and the SQL-callable meisa.condition_test() to try a rule
 *		on data without any contact.
 *		Type rules: numbers compare numerically (a string that reads as a
 *		plain number compares with a number), strings that both read as ISO
 *		8601 times compare as times, other strings byte-wise, booleans as
 *		booleans; anything else is not comparable (never equal).  A missing
 *		or null value fails every test but "exists": false and "ne".
 *		"contains" on strings is a linear, cancellable substring search.
 */
#include "contacts/contacts.h"
#include "conditions/conditions.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(meisa_condition_test);

static bool match_holds(const CondMatch *m, const JsonbValue *actual, CondContext *ctx);

/* The "now" of clock tests set by condition_set_now (0 = the transaction's start). */
static TimestampTz now_override = 0;

/* The "now" of clock tests: condition_set_now's time, else the transaction's start. */
TimestampTz
condition_now(void)
{
	return now_override != 0 ? now_override : GetCurrentTransactionStartTimestamp();
}

/* Sets the "now" of clock tests (0 = the transaction's start); returns the previous one. */
TimestampTz
condition_set_now(TimestampTz at)
{
	TimestampTz prev = now_override;

	now_override = at;
	return prev;
}

/* Prepares a context for a contact (the contact is read when first needed). */
void
condition_context_init(CondContext *ctx, int64 contact_id, Jsonb *changes,
					   Jsonb *properties)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->contact_id = contact_id;
	ctx->changes = changes;
	ctx->properties = properties;
	ctx->now = condition_now();
}

/* The contact data of the context, loading it on first use (NULL = none). */
static Jsonb *
context_contact(CondContext *ctx)
{
	if (!ctx->contact_loaded)
	{
		ctx->contact = ctx->contact_id ? contact_data_jsonb(ctx->contact_id) : NULL;
		ctx->contact_loaded = true;
	}
	return ctx->contact;
}

/* Looks up key in an object container; false when absent or null. */
static bool
get_key(JsonbContainer *c, const char *key, int keylen, JsonbValue *out)
{
	if (c == NULL || !JsonContainerIsObject(c))
		return false;
	if (getKeyJsonValueFromContainer(c, key, keylen, out) == NULL)
		return false;
	return out->type != jbvNull;
}

/* The container of a Jsonb that is an object or array (NULL for scalars). */
static JsonbContainer *
root_container(Jsonb *jb)
{
	if (jb == NULL || JB_ROOT_IS_SCALAR(jb))
		return NULL;
	return &jb->root;
}

/* Follows path segments through objects (and arrays by index); false when missing. */
static bool
follow_path(JsonbContainer *c, char **segs, int nsegs, JsonbValue *out)
{
	for (int i = 0; i < nsegs; i++)
	{
		if (c == NULL)
			return false;
		if (JsonContainerIsArray(c))
		{
			char	   *end;
			long		idx = strtol(segs[i], &end, 10);
			JsonbValue *elem;

			if (*end != '\0' || end == segs[i] || idx < 0 || idx > INT_MAX)
				return false;
			elem = getIthJsonbValueFromContainer(c, (uint32) idx);
			if (elem == NULL)
				return false;
			*out = *elem;
		}
		else if (!get_key(c, segs[i], strlen(segs[i]), out))
			return false;
		if (out->type == jbvNull)
			return false;
		if (i < nsegs - 1)
			c = (out->type == jbvBinary) ? out->val.binary.data : NULL;
	}
	return true;
}

/*
 * 'now' minus a span, or the beginning of time (-infinity) when that would
 * be before the earliest timestamp: timestamptz_mi_interval raises "timestamp
 * out of range" there, and evaluating an accepted rule must not fail.  The
 * check counts a month as 31 days and adds a day for time zone shifts, so it
 * is conservative: only spans of thousands of years reach it.
 */
TimestampTz
condition_edge(TimestampTz now, const Interval *span)
{
	/* spans are non-negative and bounded by condition_parse_interval */
	int64		bound = ((int64) span->month * 31 + (int64) span->day + 1) * USECS_PER_DAY +
		span->time;

	if (now - bound < MIN_TIMESTAMP)
		return DT_NOBEGIN;
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
												   TimestampTzGetDatum(now),
												   PointerGetDatum(span)));
}

/* Reads a JSON string value as an ISO 8601 time. */
static bool
value_timestamp(const JsonbValue *v, TimestampTz *ts)
{
	if (v->type != jbvString)
		return false;
	return condition_parse_timestamp(v->val.string.val, v->val.string.len, ts);
}

/* Compares actual with a literal; false when they are not comparable. */
static bool
compare_values(const JsonbValue *actual, const CondValue *lit, int *cmp)
{
	switch (actual->type)
	{
		case jbvNumeric:
			if (!lit->has_num)
				return false;
			*cmp = DatumGetInt32(DirectFunctionCall2(numeric_cmp,
													 NumericGetDatum(actual->val.numeric),
													 NumericGetDatum(lit->num)));
			return true;
		case jbvString:
			if (lit->type == CV_NUMBER)
			{
				Numeric		n = condition_parse_number(actual->val.string.val,
													   actual->val.string.len);

				if (n == NULL)
					return false;
				*cmp = DatumGetInt32(DirectFunctionCall2(numeric_cmp,
														 NumericGetDatum(n),
														 NumericGetDatum(lit->num)));
				return true;
			}
			if (lit->type == CV_STRING)
			{
				TimestampTz ts;
				int			len = actual->val.string.len;
				int			c;

				if (lit->has_ts && value_timestamp(actual, &ts))
				{
					TimestampTz lts = lit->ts;

					/*
					 * A literal without an offset is in the session time zone
					 * of now, not of when the rule was compiled and cached:
					 * read again only when the zone has changed since.
					 */
					if (lit->ts_zone != NULL && lit->ts_zone != session_timezone &&
						!condition_parse_timestamp(lit->str, lit->len, &lts))
						lts = lit->ts;
					*cmp = (ts < lts) ? -1 : (ts > lts) ? 1 : 0;
					return true;
				}
				c = memcmp(actual->val.string.val, lit->str, Min(len, lit->len));
				if (c == 0)
					c = (len < lit->len) ? -1 : (len > lit->len) ? 1 : 0;
				*cmp = c;
				return true;
			}
			return false;
		case jbvBool:
			if (lit->type != CV_BOOL)
				return false;
			*cmp = (int) actual->val.boolean - (int) lit->b;
			return true;
		default:
			return false;
	}
}

/* True when actual equals the literal under the type rules. */
static bool
values_equal(const JsonbValue *actual, const CondValue *lit)
{
	int			cmp;

	return compare_values(actual, lit, &cmp) && cmp == 0;
}

/* Bytes of haystack scanned between two checks for a cancel. */
#define SEARCH_CHECK_INTERVAL 65536

/*
 * True when the n bytes at s contain the m bytes at p (byte-wise, so case
 * sensitive; in UTF-8 a match always starts at a character boundary).
 * Knuth-Morris-Pratt: at most 2n + 2m comparisons whatever the input, with
 * memchr() skipping to the next candidate first byte; checks for a cancel
 * every SEARCH_CHECK_INTERVAL bytes.
 */
static bool
bytes_contain(const char *s, int n, const char *p, int m)
{
	int			small[64];
	int		   *fail;
	int			i,
				k,
				next_check;
	bool		found = false;

	if (m == 0)
		return true;
	if (m > n)
		return false;
	if (m == 1)
		return memchr(s, p[0], n) != NULL;

	/* fail[j]: length of the longest proper border of p[0..j] */
	fail = m <= (int) lengthof(small) ? small : palloc(sizeof(int) * m);
	fail[0] = 0;
	for (i = 1, k = 0; i < m; i++)
	{
		if ((i & (SEARCH_CHECK_INTERVAL - 1)) == 0)
			CHECK_FOR_INTERRUPTS();
		while (k > 0 && p[i] != p[k])
			k = fail[k - 1];
		if (p[i] == p[k])
			k++;
		fail[i] = k;
	}

	next_check = SEARCH_CHECK_INTERVAL;
	for (i = 0, k = 0; i < n; i++)
	{
		if (i >= next_check)
		{
			CHECK_FOR_INTERRUPTS();
			next_check = i + SEARCH_CHECK_INTERVAL;
		}
		if (k == 0)
		{
			/* no partial match: jump to the next place the needle can start */
			const char *c;

			if (n - i < m)
				break;
			c = memchr(s + i, p[0], n - i - m + 1);
			if (c == NULL)
				break;
			i = c - s;
		}
		while (k > 0 && s[i] != p[k])
			k = fail[k - 1];
		if (s[i] == p[k])
			k++;
		if (k == m)
		{
			found = true;
			break;
		}
	}
	if (fail != small)
		pfree(fail);
	return found;
}

/* True when a string actual contains / starts with the literal string. */
static bool
string_test(const JsonbValue *actual, const CondValue *lit, bool prefix)
{
	const char *s = actual->val.string.val;
	int			len = actual->val.string.len;

	if (lit->type != CV_STRING || lit->len > len)
		return false;
	if (prefix)
		return memcmp(s, lit->str, lit->len) == 0;
	return bytes_contain(s, len, lit->str, lit->len);
}

/* "contains": substring of a string, or an element of an array. */
static bool
contains_holds(const CondMatch *m, const JsonbValue *actual)
{
	if (actual->type == jbvString)
	{
		for (int i = 0; i < m->nvalues; i++)
			if (string_test(actual, &m->values[i], false))
				return true;
		return false;
	}
	if (actual->type == jbvBinary && JsonContainerIsArray(actual->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(actual->val.binary.data);
		JsonbValue	elem;
		JsonbIteratorToken r;

		while ((r = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		{
			if (r != WJB_ELEM)
				continue;
			for (int i = 0; i < m->nvalues; i++)
				if (values_equal(&elem, &m->values[i]))
					return true;
		}
	}
	return false;
}

/* One test on a value (NULL = missing); changed* are handled by the caller. */
static bool
test_holds(const CondTest *t, const JsonbValue *actual, CondContext *ctx)
{
	TimestampTz ts,
				edge;

	if (actual == NULL)
	{
		/* eq an object of tests: every test, on the missing value */
		if (t->op == COP_EQ && t->match.kind == CM_TESTS)
			return match_holds(&t->match, NULL, ctx);
		if (t->op == COP_EXISTS)
			return !t->flag;
		return t->op == COP_NE;
	}
	switch (t->op)
	{
		case COP_EQ:
		case COP_IN:
			return match_holds(&t->match, actual, ctx);
		case COP_NE:
		case COP_NOT_IN:
			return !match_holds(&t->match, actual, ctx);
		case COP_GT:
		case COP_GTE:
		case COP_LT:
		case COP_LTE:
			for (int i = 0; i < t->match.nvalues; i++)
			{
				int			cmp;

				if (!compare_values(actual, &t->match.values[i], &cmp))
					continue;
				if ((t->op == COP_GT && cmp > 0) || (t->op == COP_GTE && cmp >= 0) ||
					(t->op == COP_LT && cmp < 0) || (t->op == COP_LTE && cmp <= 0))
					return true;
			}
			return false;
		case COP_CONTAINS:
			return contains_holds(&t->match, actual);
		case COP_STARTS_WITH:
			if (actual->type != jbvString)
				return false;
			for (int i = 0; i < t->match.nvalues; i++)
				if (string_test(actual, &t->match.values[i], true))
					return true;
			return false;
		case COP_EXISTS:
			return t->flag;
		case COP_WITHIN_LAST:
		case COP_OLDER_THAN:
			if (!value_timestamp(actual, &ts))
				return false;
			edge = condition_edge(ctx->now, &t->span);
			if (t->op == COP_WITHIN_LAST)
				return ts >= edge && ts <= ctx->now;
			return ts < edge;
		case COP_CHANGED:
		case COP_CHANGED_FROM:
		case COP_CHANGED_TO:
			return false;
	}
	return false;
}

/* V holds for the value: equal to the literal / any listed / every test. */
static bool
match_holds(const CondMatch *m, const JsonbValue *actual, CondContext *ctx)
{
	if (m->kind == CM_TESTS)
	{
		for (int i = 0; i < m->ntests; i++)
			if (!test_holds(&m->tests[i], actual, ctx))
				return false;
		return true;
	}
	if (actual == NULL)
		return false;
	for (int i = 0; i < m->nvalues; i++)
		if (values_equal(actual, &m->values[i]))
			return true;
	return false;
}

/* The current value of a contact field; false when missing or null. */
static bool
field_value(const CondNode *node, CondContext *ctx, JsonbValue *out)
{
	return follow_path(root_container(context_contact(ctx)), node->segs, node->nsegs, out);
}

/* Evaluates the tests of a "field" node. */
static bool
field_holds(const CondNode *node, CondContext *ctx)
{
	JsonbValue	cur;
	bool		have_cur = false,
				cur_present = false;
	JsonbValue	entry;
	bool		have_entry = false,
				entry_present = false;

	for (int i = 0; i < node->ntests; i++)
	{
		const CondTest *t = &node->tests[i];

		if (t->op == COP_CHANGED || t->op == COP_CHANGED_FROM || t->op == COP_CHANGED_TO)
		{
			JsonbValue	side;
			bool		side_present;

			if (!have_entry)
			{
				JsonbContainer *c = root_container(ctx->changes);

				entry_present = get_key(c, node->path, node->pathlen, &entry) &&
					entry.type == jbvBinary && JsonContainerIsObject(entry.val.binary.data);
				have_entry = true;
			}
			if (t->op == COP_CHANGED)
			{
				if (entry_present != t->flag)
					return false;
				continue;
			}
			if (!entry_present)
				return false;
			side_present = get_key(entry.val.binary.data,
								   t->op == COP_CHANGED_FROM ? "old" : "new", 3,
								   &side);
			if (!match_holds(&t->match, side_present ? &side : NULL, ctx))
				return false;
			continue;
		}
		if (!have_cur)
		{
			cur_present = field_value(node, ctx, &cur);
			have_cur = true;
		}
		if (!test_holds(t, cur_present ? &cur : NULL, ctx))
			return false;
	}
	return true;
}

/* True when the contact carries the tag. */
static bool
has_tag(CondContext *ctx, const char *tag)
{
	JsonbValue	tags,
				key;

	if (!get_key(root_container(context_contact(ctx)), "tags", 4, &tags) ||
		tags.type != jbvBinary || !JsonContainerIsArray(tags.val.binary.data))
		return false;
	key.type = jbvString;
	key.val.string.val = (char *) tag;
	key.val.string.len = strlen(tag);
	return findJsonbValueFromContainer(tags.val.binary.data, JB_FARRAY, &key) != NULL;
}

/*
 * The count (which 0) or the earliest occurred_at (which 1) of the contact's
 * events of a name since 'since' (saved plans); *found false when none.
 */
static Datum
events_since(int64 contact_id, const char *name, TimestampTz since, int which, bool *found)
{
	static SPIPlanPtr plans[2];
	static const char *const sql[2] = {
		"SELECT pg_catalog.count(*) FROM meisa.events WHERE contact_id OPERATOR(pg_catalog.=) $1"
		" AND name OPERATOR(pg_catalog.=) $2 AND occurred_at OPERATOR(pg_catalog.>=) $3",
		"SELECT pg_catalog.min(occurred_at) FROM meisa.events WHERE contact_id OPERATOR(pg_catalog.=) $1"
		" AND name OPERATOR(pg_catalog.=) $2 AND occurred_at OPERATOR(pg_catalog.>=) $3",
	};
	Oid			types[3] = {INT8OID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[3] = {Int64GetDatum(contact_id), CStringGetTextDatum(name),
	TimestampTzGetDatum(since)};

	/* not read-only: sees the event being tracked right now */
	return spi_first_value(&plans[which], sql[which], 3, types, values, found);
}

/* Counts the contact's events of a name since 'since'. */
static int64
count_events(int64 contact_id, const char *name, TimestampTz since)
{
	bool		found;
	Datum		count;

	if (contact_id == 0)
		return 0;
	count = events_since(contact_id, name, since, 0, &found);
	return found ? DatumGetInt64(count) : 0;
}

/* The earliest occurred_at of the contact's events of a name since 'since' (0 = none). */
TimestampTz
condition_first_event(int64 contact_id, const char *name, TimestampTz since)
{
	bool		found;
	Datum		first = events_since(contact_id, name, since, 1, &found);

	return found ? DatumGetTimestampTz(first) : 0;
}

/* True when the contact is a member of the segment named 'name' (saved plan). */
static bool
in_segment(int64 contact_id, const char *name)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(contact_id), CStringGetTextDatum(name)};
	bool		found;

	if (contact_id == 0)
		return false;
	/* sees the memberships this transaction just changed */
	spi_first_value(&plan, "SELECT true FROM meisa.segment_members m JOIN meisa.segments s"
					" ON s.id OPERATOR(pg_catalog.=) m.segment_id"
					" WHERE m.contact_id OPERATOR(pg_catalog.=) $1 AND s.name OPERATOR(pg_catalog.=) $2",
					2, types, values, &found);
	return found;
}

/* Evaluates a "performed" node. */
static bool
performed_holds(const CondNode *node, CondContext *ctx)
{
	TimestampTz since = DT_NOBEGIN;
	int64		count;
	JsonbValue	v;

	if (node->has_within)
		since = condition_edge(ctx->now, &node->within);
	count = count_events(ctx->contact_id, node->name, since);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(count);
	for (int i = 0; i < node->ntests; i++)
		if (!test_holds(&node->tests[i], &v, ctx))
			return false;
	return true;
}

/* True when the compiled rule holds (NULL = always). */
bool
condition_eval(const CondNode *node, CondContext *ctx)
{
	if (node == NULL)
		return true;
	check_stack_depth();
	switch (node->kind)
	{
		case CK_ALL:
			for (int i = 0; i < node->nchildren; i++)
				if (!condition_eval(node->children[i], ctx))
					return false;
			return true;
		case CK_ANY:
			for (int i = 0; i < node->nchildren; i++)
				if (condition_eval(node->children[i], ctx))
					return true;
			return false;
		case CK_NOT:
			return !condition_eval(node->children[0], ctx);
		case CK_FIELD:
			return field_holds(node, ctx);
		case CK_EVENT:
			{
				JsonbValue	v;
				bool		present = follow_path(root_container(ctx->properties),
												  node->segs, node->nsegs, &v);

				for (int i = 0; i < node->ntests; i++)
					if (!test_holds(&node->tests[i], present ? &v : NULL, ctx))
						return false;
				return true;
			}
		case CK_HAS_TAG:
			return has_tag(ctx, node->name);
		case CK_LACKS_TAG:
			return !has_tag(ctx, node->name);
		case CK_PERFORMED:
			return performed_holds(node, ctx);
		case CK_IN_SEGMENT:
			return in_segment(ctx->contact_id, node->name);
		case CK_NOT_IN_SEGMENT:
			return !in_segment(ctx->contact_id, node->name);
	}
	return false;
}

/*
 * meisa.condition_test(conditions, contact, changes, properties): evaluates a
 * rule against the given contact data, change set and event properties.
 */
Datum
meisa_condition_test(PG_FUNCTION_ARGS)
{
	Jsonb	   *conditions = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	Jsonb	   *contact = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	Jsonb	   *changes = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	Jsonb	   *properties = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	CondNode   *node;
	CondContext ctx;
	int64		contact_id = 0;
	JsonbValue	id;

	node = condition_compile_or_error(conditions, "conditions",
									  COND_ALLOW_EVENT | COND_ALLOW_CHANGES);
	if (contact && !JB_ROOT_IS_OBJECT(contact))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("contact must be a JSON object")));
	if (changes && !JB_ROOT_IS_OBJECT(changes))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("changes must be a JSON object")));
	if (contact && get_key(&contact->root, "id", 2, &id) && id.type == jbvNumeric)
		contact_id = DatumGetInt64(DirectFunctionCall1(numeric_int8,
													   NumericGetDatum(id.val.numeric)));
	condition_context_init(&ctx, contact_id, changes, properties);
	ctx.contact = contact;
	ctx.contact_loaded = true;
	PG_RETURN_BOOL(condition_eval(node, &ctx));
}
