/*
 * segment_sql.c
 *		Compiles a rule of the condition language into set-based SQL over
 *		"meisa.contacts c" with the evaluator's type rules (condition_eval.c):
 *		the SQL and the C evaluator give the same answer for every contact
 *		(sql/91_segment_agreement.sql compares them on random rules).  Every
 *		value of the rule is a parameter; the SQL text holds only fixed
 *		fragments.  Also computes, in SQL for rebuilds and in C for one
 *		contact, the next moment a rule's clock tests can change their result,
 *		and the SQL-callable meisa.condition_number / meisa.condition_time the
 *		compiled SQL reads strings with.
 */
#include "segments/segments.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(meisa_condition_number);
PG_FUNCTION_INFO_V1(meisa_condition_time);

static void node_sql(const CondNode *node, SegmentSql *sql, StringInfo out);
static void test_sql(const CondTest *t, const char *v, SegmentSql *sql, StringInfo out);

/* The text of a JSON scalar expression v. */
#define SCALAR_TEXT "((%s) OPERATOR(pg_catalog.#>>) '{}'::pg_catalog.text[])"

/* Appends a parameter of 'type' to sql and returns its reference "$n". */
const char *
segment_sql_param(SegmentSql *sql, Oid type, Datum value)
{
	if (sql->nparams == sql->cap)
	{
		sql->cap = sql->cap ? sql->cap * 2 : 16;
		sql->types = sql->types ? repalloc(sql->types, sizeof(Oid) * sql->cap)
			: palloc(sizeof(Oid) * sql->cap);
		sql->values = sql->values ? repalloc(sql->values, sizeof(Datum) * sql->cap)
			: palloc(sizeof(Datum) * sql->cap);
	}
	sql->types[sql->nparams] = type;
	sql->values[sql->nparams] = value;
	sql->nparams++;
	return psprintf("$%d", sql->nparams);
}

/* The SQL operator of a comparison test. */
static const char *
op_sql(CondOp op)
{
	switch (op)
	{
		case COP_GT:
			return "OPERATOR(pg_catalog.>)";
		case COP_GTE:
			return "OPERATOR(pg_catalog.>=)";
		case COP_LT:
			return "OPERATOR(pg_catalog.<)";
		case COP_LTE:
			return "OPERATOR(pg_catalog.<=)";
		default:
			return "OPERATOR(pg_catalog.=)";
	}
}

/* The JSON text of a string literal ("..." with escapes), for jsonb_in. */
static char *
jsonb_string_literal(const CondValue *lit)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, pnstrdup(lit->str, lit->len));
	return buf.data;
}

/*
 * Appends "v compares with lit under op" (compare_values of condition_eval.c):
 * true only when both are comparable and the comparison holds; may be NULL
 * (callers wrap it in COALESCE).
 */
static void
cmp_sql(const char *v, const CondValue *lit, CondOp op, SegmentSql *sql, StringInfo out)
{
	const char *o = op_sql(op);
	char	   *s = psprintf(SCALAR_TEXT, v);

	if (op == COP_EQ && lit->type == CV_STRING && !lit->has_num && !lit->has_ts)
	{
		/* only a string can equal it, byte for byte: jsonb's own equality */
		appendStringInfo(out, "(%s OPERATOR(pg_catalog.=) %s)", v,
						 segment_sql_param(sql, JSONBOID,
										   DirectFunctionCall1(jsonb_in,
															   CStringGetDatum(jsonb_string_literal(lit)))));
		return;
	}

	appendStringInfo(out, "(CASE pg_catalog.jsonb_typeof(%s)", v);
	if (lit->has_num)
		appendStringInfo(out, " WHEN 'number' THEN (%s)::pg_catalog.numeric %s %s", v, o,
						 segment_sql_param(sql, NUMERICOID, NumericGetDatum(lit->num)));
	switch (lit->type)
	{
		case CV_NUMBER:
			appendStringInfo(out, " WHEN 'string' THEN meisa.condition_number(%s) %s %s", s, o,
							 segment_sql_param(sql, NUMERICOID, NumericGetDatum(lit->num)));
			break;
		case CV_STRING:
			{
				const char *str = segment_sql_param(sql, TEXTOID,
													PointerGetDatum(cstring_to_text_with_len(lit->str, lit->len)));

				if (lit->has_ts)
					appendStringInfo(out, " WHEN 'string' THEN CASE WHEN meisa.condition_time(%s) IS NOT NULL"
									 " THEN meisa.condition_time(%s) %s meisa.condition_time(%s)"
									 " ELSE (%s COLLATE pg_catalog.\"C\") %s %s END",
									 s, s, o, str, s, o, str);
				else
					appendStringInfo(out, " WHEN 'string' THEN (%s COLLATE pg_catalog.\"C\") %s %s",
									 s, o, str);
				break;
			}
		case CV_BOOL:
			appendStringInfo(out, " WHEN 'boolean' THEN (%s)::pg_catalog.bool %s %s", v, o,
							 segment_sql_param(sql, BOOLOID, BoolGetDatum(lit->b)));
			break;
	}
	appendStringInfoString(out, " ELSE false END)");
}

/* Appends "v equals one of the literals" as a never-NULL boolean. */
static void
any_equal_sql(const char *v, const CondMatch *m, SegmentSql *sql, StringInfo out)
{
	if (m->nvalues == 0)
	{
		appendStringInfoString(out, "false");
		return;
	}
	appendStringInfoString(out, "COALESCE(");
	for (int i = 0; i < m->nvalues; i++)
	{
		if (i > 0)
			appendStringInfoString(out, " OR ");
		cmp_sql(v, &m->values[i], COP_EQ, sql, out);
	}
	appendStringInfoString(out, ", false)");
}

/* The result of a test on a missing value (test_holds with actual NULL). */
static bool
missing_result(const CondTest *t)
{
	if (t->op == COP_EQ && t->match.kind == CM_TESTS)
	{
		for (int i = 0; i < t->match.ntests; i++)
			if (!missing_result(&t->match.tests[i]))
				return false;
		return true;
	}
	if (t->op == COP_EXISTS)
		return !t->flag;
	return t->op == COP_NE;
}

/* Appends "every test holds for v" (AND of test_sql). */
static void
tests_sql(const CondTest *tests, int n, const char *v, SegmentSql *sql, StringInfo out)
{
	appendStringInfoChar(out, '(');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(out, " AND ");
		test_sql(&tests[i], v, sql, out);
	}
	appendStringInfoString(out, n ? ")" : "true)");
}

/* Appends match_holds(m, v) for a present v as a never-NULL boolean. */
static void
match_sql(const CondMatch *m, const char *v, SegmentSql *sql, StringInfo out)
{
	if (m->kind != CM_TESTS)
	{
		any_equal_sql(v, m, sql, out);
		return;
	}
	tests_sql(m->tests, m->ntests, v, sql, out);
}

/* Appends the test on a present value v (test_holds), maybe NULL. */
static void
present_sql(const CondTest *t, const char *v, SegmentSql *sql, StringInfo out)
{
	char	   *s = psprintf(SCALAR_TEXT, v);

	switch (t->op)
	{
		case COP_EQ:
		case COP_IN:
			match_sql(&t->match, v, sql, out);
			return;
		case COP_NE:
		case COP_NOT_IN:
			appendStringInfoString(out, "NOT ");
			match_sql(&t->match, v, sql, out);
			return;
		case COP_GT:
		case COP_GTE:
		case COP_LT:
		case COP_LTE:
			appendStringInfoChar(out, '(');
			for (int i = 0; i < t->match.nvalues; i++)
			{
				if (i > 0)
					appendStringInfoString(out, " OR ");
				appendStringInfoString(out, "COALESCE(");
				cmp_sql(v, &t->match.values[i], t->op, sql, out);
				appendStringInfoString(out, ", false)");
			}
			appendStringInfoString(out, t->match.nvalues ? ")" : "false)");
			return;
		case COP_CONTAINS:
			appendStringInfo(out, "(CASE pg_catalog.jsonb_typeof(%s) WHEN 'string' THEN (false", v);
			for (int i = 0; i < t->match.nvalues; i++)
				if (t->match.values[i].type == CV_STRING)
					appendStringInfo(out, " OR pg_catalog.strpos(%s COLLATE pg_catalog.\"C\", %s) OPERATOR(pg_catalog.>) 0",
									 s, segment_sql_param(sql, TEXTOID,
														  PointerGetDatum(cstring_to_text_with_len(t->match.values[i].str,
																								   t->match.values[i].len))));
			appendStringInfo(out, ") WHEN 'array' THEN EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(%s) x(e) WHERE ", v);
			any_equal_sql("x.e", &t->match, sql, out);
			appendStringInfoString(out, ") ELSE false END)");
			return;
		case COP_STARTS_WITH:
			appendStringInfo(out, "(pg_catalog.jsonb_typeof(%s) OPERATOR(pg_catalog.=) 'string' AND (false", v);
			for (int i = 0; i < t->match.nvalues; i++)
				appendStringInfo(out, " OR pg_catalog.starts_with(%s COLLATE pg_catalog.\"C\", %s)", s,
								 segment_sql_param(sql, TEXTOID,
												   PointerGetDatum(cstring_to_text_with_len(t->match.values[i].str,
																							t->match.values[i].len))));
			appendStringInfoString(out, "))");
			return;
		case COP_EXISTS:
			appendStringInfoString(out, t->flag ? "true" : "false");
			return;
		case COP_WITHIN_LAST:
		case COP_OLDER_THAN:
			{
				TimestampTz edge = condition_edge(sql->now, &t->span);
				const char *e = segment_sql_param(sql, TIMESTAMPTZOID, TimestampTzGetDatum(edge));

				appendStringInfo(out, "(pg_catalog.jsonb_typeof(%s) OPERATOR(pg_catalog.=) 'string' AND ", v);
				if (t->op == COP_OLDER_THAN)
					appendStringInfo(out, "meisa.condition_time(%s) OPERATOR(pg_catalog.<) %s)", s, e);
				else
					appendStringInfo(out, "meisa.condition_time(%s) OPERATOR(pg_catalog.>=) %s AND "
									 "meisa.condition_time(%s) OPERATOR(pg_catalog.<=) %s)", s, e, s,
									 segment_sql_param(sql, TIMESTAMPTZOID, TimestampTzGetDatum(sql->now)));
				return;
			}
		case COP_CHANGED:
		case COP_CHANGED_FROM:
		case COP_CHANGED_TO:
			appendStringInfoString(out, "false");
			return;
	}
	appendStringInfoString(out, "false");
}

/* Appends the next-check candidate of a clock test on v (NULL when none). */
static void
clock_candidate(const CondTest *t, const char *v, SegmentSql *sql)
{
	char	   *s = psprintf(SCALAR_TEXT, v);
	char	   *ts = psprintf("meisa.condition_time(%s)", s);
	Interval   *span = palloc(sizeof(Interval));
	const char *sp,
			   *now,
			   *edge,
			   *soon;
	StringInfoData c;

	*span = t->span;
	sp = segment_sql_param(sql, INTERVALOID, PointerGetDatum(span));
	now = segment_sql_param(sql, TIMESTAMPTZOID, TimestampTzGetDatum(sql->now));
	edge = segment_sql_param(sql, TIMESTAMPTZOID, TimestampTzGetDatum(condition_edge(sql->now, &t->span)));
	soon = segment_sql_param(sql, TIMESTAMPTZOID, TimestampTzGetDatum(sql->now + 1));
	initStringInfo(&c);

	/*
	 * ts + span is never after the moment "older" flips (month arithmetic
	 * clamps); when it is already past but the test has not flipped, the
	 * next run checks at once and the C evaluator finds the exact moment.
	 */
	appendStringInfo(&c, "CASE WHEN pg_catalog.jsonb_typeof(%s) OPERATOR(pg_catalog.<>) 'string' THEN NULL"
					 " WHEN (%s OPERATOR(pg_catalog.+) %s) OPERATOR(pg_catalog.>) %s THEN %s OPERATOR(pg_catalog.+) %s"
					 " WHEN NOT (%s OPERATOR(pg_catalog.<) %s) THEN %s END",
					 v, ts, sp, now, ts, sp, ts, edge, soon);
	sql->candidates = lappend(sql->candidates, c.data);
	if (t->op == COP_WITHIN_LAST)
		sql->candidates = lappend(sql->candidates,
								  psprintf("CASE WHEN pg_catalog.jsonb_typeof(%s) OPERATOR(pg_catalog.=) 'string'"
										   " AND %s OPERATOR(pg_catalog.>) %s THEN %s END", v, ts, now, ts));
}

/* Appends test_holds(t, v) as a never-NULL boolean; collects clock candidates. */
static void
test_sql(const CondTest *t, const char *v, SegmentSql *sql, StringInfo out)
{
	if (t->op == COP_WITHIN_LAST || t->op == COP_OLDER_THAN)
		clock_candidate(t, v, sql);
	else if (t->match.kind == CM_TESTS)
	{
		/* nested clock tests read the same value */
		for (int i = 0; i < t->match.ntests; i++)
			if (t->match.tests[i].op == COP_WITHIN_LAST || t->match.tests[i].op == COP_OLDER_THAN)
				clock_candidate(&t->match.tests[i], v, sql);
	}
	/*
	 * A test false on a missing value whose SQL is false or NULL on SQL
	 * NULL and on JSON null alike needs no case for them (not so ne,
	 * not_in and exists).  Otherwise JSON null is missing, like an absent
	 * key.
	 */
	if (!missing_result(t) && t->op != COP_EXISTS && t->op != COP_NE && t->op != COP_NOT_IN)
	{
		appendStringInfoString(out, "COALESCE(");
		present_sql(t, v, sql, out);
		appendStringInfoString(out, ", false)");
		return;
	}
	appendStringInfo(out, "(CASE WHEN pg_catalog.jsonb_typeof(%s) IS NULL OR pg_catalog.jsonb_typeof(%s)"
					 " OPERATOR(pg_catalog.=) 'null' THEN %s ELSE COALESCE(", v, v,
					 missing_result(t) ? "true" : "false");
	present_sql(t, v, sql, out);
	appendStringInfoString(out, ", false) END)");
}

/* The contact columns a rule may name, as the condition compiler admits them. */
static const char *const plain_columns[] = {
	"email", "external_id", "first_name", "last_name", "subscribed",
	"created_at", "updated_at", "tags"
};

/* The JSON value of a field path of a contact row c (SQL NULL when missing). */
static char *
field_value_sql(const CondNode *node, SegmentSql *sql)
{
	if (node->nsegs == 2 && strcmp(node->segs[0], "custom_fields") == 0)
	{
		const char *k = segment_sql_param(sql, TEXTOID, CStringGetTextDatum(node->segs[1]));

		return psprintf("(c.custom_fields OPERATOR(pg_catalog.->) %s)", k);
	}
	/* plain columns: the compiler admits only these names */
	for (int i = 0; i < (int) lengthof(plain_columns); i++)
		if (strcmp(node->path, plain_columns[i]) == 0)
			return psprintf("pg_catalog.to_jsonb(c.%s)", plain_columns[i]);
	elog(ERROR, "meisa: no SQL for field \"%s\"", node->path);
	return NULL;
}

/* Appends a "performed" node: tests on the count of the contact's events. */
static void
performed_sql(const CondNode *node, SegmentSql *sql, StringInfo out)
{
	TimestampTz since = node->has_within ? condition_edge(sql->now, &node->within) : DT_NOBEGIN;
	const char *name = segment_sql_param(sql, TEXTOID, CStringGetTextDatum(node->name));
	const char *sn = segment_sql_param(sql, TIMESTAMPTZOID, TimestampTzGetDatum(since));
	char	   *v = psprintf("pg_catalog.to_jsonb((SELECT pg_catalog.count(*) FROM meisa.events e"
							 " WHERE e.contact_id OPERATOR(pg_catalog.=) c.id AND e.name OPERATOR(pg_catalog.=) %s"
							 " AND e.occurred_at OPERATOR(pg_catalog.>=) %s))", name, sn);

	if (node->has_within)
	{
		Interval   *w = palloc(sizeof(Interval));
		const char *now = segment_sql_param(sql, TIMESTAMPTZOID, TimestampTzGetDatum(sql->now));

		*w = node->within;
		sql->candidates = lappend(sql->candidates,
								  psprintf("(SELECT CASE WHEN pg_catalog.min(e.occurred_at) OPERATOR(pg_catalog.+) %s OPERATOR(pg_catalog.>) %s"
										   " THEN pg_catalog.min(e.occurred_at) OPERATOR(pg_catalog.+) %s"
										   " WHEN pg_catalog.min(e.occurred_at) IS NOT NULL THEN %s END"
										   " FROM meisa.events e WHERE e.contact_id OPERATOR(pg_catalog.=) c.id"
										   " AND e.name OPERATOR(pg_catalog.=) %s AND e.occurred_at OPERATOR(pg_catalog.>=) %s)",
										   segment_sql_param(sql, INTERVALOID, PointerGetDatum(w)), now,
										   segment_sql_param(sql, INTERVALOID, PointerGetDatum(w)),
										   segment_sql_param(sql, TIMESTAMPTZOID, TimestampTzGetDatum(sql->now + 1)),
										   name, sn));
	}
	tests_sql(node->tests, node->ntests, v, sql, out);
}

/* Appends the SQL of a condition node. */
static void
node_sql(const CondNode *node, SegmentSql *sql, StringInfo out)
{
	check_stack_depth();
	switch (node->kind)
	{
		case CK_ALL:
		case CK_ANY:
			if (node->nchildren == 0)
			{
				appendStringInfoString(out, node->kind == CK_ALL ? "true" : "false");
				return;
			}
			appendStringInfoChar(out, '(');
			for (int i = 0; i < node->nchildren; i++)
			{
				if (i > 0)
					appendStringInfoString(out, node->kind == CK_ALL ? " AND " : " OR ");
				node_sql(node->children[i], sql, out);
			}
			appendStringInfoChar(out, ')');
			return;
		case CK_NOT:
			appendStringInfoString(out, "(NOT ");
			node_sql(node->children[0], sql, out);
			appendStringInfoChar(out, ')');
			return;
		case CK_FIELD:
		case CK_EVENT:
			{
				/* an event's properties are not a contact's: always missing here */
				char	   *v = node->kind == CK_FIELD ? field_value_sql(node, sql) : "NULL::pg_catalog.jsonb";

				tests_sql(node->tests, node->ntests, v, sql, out);
				return;
			}
		case CK_HAS_TAG:
		case CK_LACKS_TAG:
			appendStringInfo(out, "(%sCOALESCE(%s OPERATOR(pg_catalog.=) ANY (c.tags), false))",
							 node->kind == CK_LACKS_TAG ? "NOT " : "",
							 segment_sql_param(sql, TEXTOID, CStringGetTextDatum(node->name)));
			return;
		case CK_PERFORMED:
			performed_sql(node, sql, out);
			return;
		case CK_IN_SEGMENT:
		case CK_NOT_IN_SEGMENT:
			appendStringInfo(out, "(%sEXISTS (SELECT 1 FROM meisa.segment_members m JOIN meisa.segments s"
							 " ON s.id OPERATOR(pg_catalog.=) m.segment_id"
							 " WHERE m.contact_id OPERATOR(pg_catalog.=) c.id AND s.name OPERATOR(pg_catalog.=) %s))",
							 node->kind == CK_NOT_IN_SEGMENT ? "NOT " : "",
							 segment_sql_param(sql, TEXTOID, CStringGetTextDatum(node->name)));
			return;
	}
	appendStringInfoString(out, "false");
}

/* Compiles 'node' (NULL = always) into sql->where and sql->next, clock tests at 'now'. */
void
segment_sql_compile(const CondNode *node, TimestampTz now, SegmentSql *sql)
{
	ListCell   *lc;

	memset(sql, 0, sizeof(*sql));
	initStringInfo(&sql->where);
	initStringInfo(&sql->next);
	sql->now = now;
	if (node == NULL)
		appendStringInfoString(&sql->where, "true");
	else
		node_sql(node, sql, &sql->where);
	if (sql->candidates == NIL)
		return;
	if (list_length(sql->candidates) == 1)
	{
		appendStringInfoString(&sql->next, (char *) linitial(sql->candidates));
		return;
	}
	appendStringInfoString(&sql->next, "LEAST(");
	foreach(lc, sql->candidates)
	{
		if (lc != list_head(sql->candidates))
			appendStringInfoString(&sql->next, ", ");
		appendStringInfoString(&sql->next, (char *) lfirst(lc));
	}
	appendStringInfoChar(&sql->next, ')');
}

/* True when a test (or a test nested in its value) is a clock test. */
static bool
test_has_clock(const CondTest *t)
{
	if (t->op == COP_WITHIN_LAST || t->op == COP_OLDER_THAN)
		return true;
	if (t->match.kind == CM_TESTS)
		for (int i = 0; i < t->match.ntests; i++)
			if (test_has_clock(&t->match.tests[i]))
				return true;
	return false;
}

/* True when the rule has a clock test. */
bool
segment_has_clock(const CondNode *node)
{
	if (node == NULL)
		return false;
	for (int i = 0; i < node->nchildren; i++)
		if (segment_has_clock(node->children[i]))
			return true;
	if (node->kind == CK_PERFORMED && node->has_within)
		return true;
	if (node->kind == CK_FIELD)
		for (int i = 0; i < node->ntests; i++)
			if (test_has_clock(&node->tests[i]))
				return true;
	return false;
}

/* ts + span, or the end of time when that is out of range. */
static TimestampTz
plus_span(TimestampTz ts, const Interval *span)
{
	int64		bound = ((int64) span->month * 31 + (int64) span->day + 1) * USECS_PER_DAY +
		span->time;

	if (ts > END_TIMESTAMP - bound - USECS_PER_DAY)
		return DT_NOEND;
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(ts),
												   PointerGetDatum(span)));
}

/*
 * The first moment T with T - span > ts: when a time 'ts' stops being
 * "within the last span" and becomes "older than span".  ts + span is never
 * later (month arithmetic clamps to the end of a month); from there a search
 * finds the exact microsecond.
 */
static TimestampTz
flip_time(TimestampTz ts, const Interval *span)
{
	TimestampTz lo = plus_span(ts, span),
				hi;

	if (lo == DT_NOEND)
		return 0;
	if (condition_edge(lo, span) > ts)
		return lo;
	hi = lo + 4 * USECS_PER_DAY;
	while (condition_edge(hi, span) <= ts)
		hi += 4 * USECS_PER_DAY;
	/* condition_edge(lo) <= ts < condition_edge(hi) */
	while (hi - lo > 1)
	{
		TimestampTz mid = lo + (hi - lo) / 2;

		if (condition_edge(mid, span) > ts)
			hi = mid;
		else
			lo = mid;
	}
	return hi;
}

/* The earlier of two moments, 0 meaning none. */
static TimestampTz
earliest(TimestampTz a, TimestampTz b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return Min(a, b);
}

/* The next flip after now of a clock test on a value (0 = none). */
static TimestampTz
test_next(const CondTest *t, const JsonbValue *v, TimestampTz now)
{
	TimestampTz ts,
				next = 0,
				f;

	if (t->match.kind == CM_TESTS)
		for (int i = 0; i < t->match.ntests; i++)
			next = earliest(next, test_next(&t->match.tests[i], v, now));
	if (t->op != COP_WITHIN_LAST && t->op != COP_OLDER_THAN)
		return next;
	if (v == NULL || v->type != jbvString ||
		!condition_parse_timestamp(v->val.string.val, v->val.string.len, &ts))
		return next;
	if (t->op == COP_WITHIN_LAST && ts > now)
		next = earliest(next, ts);
	f = flip_time(ts, &t->span);
	if (f > now)
		next = earliest(next, f);
	return next;
}

/* Follows a field path through the contact data; false when missing or null. */
static bool
contact_field(Jsonb *contact, const CondNode *node, JsonbValue *out)
{
	JsonbContainer *c = (contact && !JB_ROOT_IS_SCALAR(contact)) ? &contact->root : NULL;

	for (int i = 0; i < node->nsegs; i++)
	{
		if (c == NULL || !JsonContainerIsObject(c) ||
			getKeyJsonValueFromContainer(c, node->segs[i], strlen(node->segs[i]), out) == NULL ||
			out->type == jbvNull)
			return false;
		c = (out->type == jbvBinary) ? out->val.binary.data : NULL;
	}
	return true;
}

/*
 * The next moment after ctx->now at which the rule's result for the
 * context's contact can change by time alone (0 = never).
 */
TimestampTz
segment_next_check(const CondNode *node, CondContext *ctx)
{
	TimestampTz next = 0;

	if (node == NULL)
		return 0;
	check_stack_depth();
	for (int i = 0; i < node->nchildren; i++)
		next = earliest(next, segment_next_check(node->children[i], ctx));
	if (node->kind == CK_FIELD && segment_has_clock(node))
	{
		JsonbValue	v;
		bool		present;

		if (!ctx->contact_loaded)
		{
			ctx->contact = ctx->contact_id ? contact_data_jsonb(ctx->contact_id) : NULL;
			ctx->contact_loaded = true;
		}
		present = contact_field(ctx->contact, node, &v);
		for (int i = 0; i < node->ntests; i++)
			next = earliest(next, test_next(&node->tests[i], present ? &v : NULL, ctx->now));
	}
	if (node->kind == CK_PERFORMED && node->has_within && ctx->contact_id != 0)
	{
		TimestampTz first = condition_first_event(ctx->contact_id, node->name,
											  condition_edge(ctx->now, &node->within));

		if (first != 0)
		{
			TimestampTz f = flip_time(first, &node->within);

			if (f > ctx->now)
				next = earliest(next, f);
		}
	}
	return next;
}

/* meisa.condition_number(text) returns numeric: a string as the rules read numbers. */
Datum
meisa_condition_number(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	Numeric		n = condition_parse_number(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));

	if (n == NULL)
		PG_RETURN_NULL();
	PG_RETURN_NUMERIC(n);
}

/* meisa.condition_time(text) returns timestamptz: a string as the rules read times. */
Datum
meisa_condition_time(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	TimestampTz ts;

	if (!condition_parse_timestamp(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &ts))
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(ts);
}
