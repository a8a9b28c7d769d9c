/*
 * condition.c
 *		Compiler of the condition language (docs/automations.md): turns the
 *		JSON of automations.conditions, sequence_steps.conditions and
 *		sequences.exit_conditions into a CondNode tree, checking every part.
 *		The compiler never raises an error for a bad rule: it reports the
 *		offending part as "PATH: message" (e.g. conditions.all[1]: unknown
 *		test "gte5") so that the validator can reject the row and the rule
 *		cache can record a broken automation without failing a write.
 */
#include "conditions/conditions.h"

#include "miscadmin.h"
#include "utils/builtins.h"

/* Compiler state: what the rule may use and the first error found. */
typedef struct CompileState
{
	int			allow;
	char	   *error;
	const char *root;			/* path of the whole rule, e.g. "conditions" */
	int			depth;			/* nesting of the condition being compiled */
} CompileState;

/* One key of a JSON object with its value. */
typedef struct JsonPair
{
	char	   *key;
	JsonbValue	val;
} JsonPair;

static const struct
{
	const char *name;
	CondOp		op;
}			cond_ops[] =
{
	{"eq", COP_EQ},
	{"ne", COP_NE},
	{"gt", COP_GT},
	{"gte", COP_GTE},
	{"lt", COP_LT},
	{"lte", COP_LTE},
	{"in", COP_IN},
	{"not_in", COP_NOT_IN},
	{"contains", COP_CONTAINS},
	{"starts_with", COP_STARTS_WITH},
	{"exists", COP_EXISTS},
	{"within_last", COP_WITHIN_LAST},
	{"older_than", COP_OLDER_THAN},
	{"changed", COP_CHANGED},
	{"changed_from", COP_CHANGED_FROM},
	{"changed_to", COP_CHANGED_TO},
};

/* The contact fields a "field" test may name (besides custom_fields.NAME). */
static const char *const plain_fields[] = {
	"email", "external_id", "first_name", "last_name", "subscribed",
	"created_at", "updated_at", "tags"
};

static CondNode *compile_node(JsonbValue *v, const char *path, CompileState *st);
static CondNode *compile_node_body(JsonbValue *v, const char *path, CompileState *st);
static bool compile_test(const char *opname, JsonbValue *v, const char *path,
						 bool nested, CondTest *t, CompileState *st);

static bool fail(CompileState *st, const char *path, const char *fmt,...) pg_attribute_printf(3, 4);

/*
 * The error of a compiler as "path: message" (palloc'd), the form of every
 * condition and automation compile error.
 */
char *
compile_error_va(const char *path, const char *fmt, va_list args)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s: ", path);
	for (;;)
	{
		va_list		copy;
		int			needed;

		va_copy(copy, args);
		needed = appendStringInfoVA(&buf, fmt, copy);
		va_end(copy);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	return buf.data;
}

/* Records the first error as "path: message" and returns false. */
static bool
fail(CompileState *st, const char *path, const char *fmt,...)
{
	va_list		args;

	if (st->error)
		return false;
	va_start(args, fmt);
	st->error = compile_error_va(path, fmt, args);
	va_end(args);
	return false;
}

/* Longest path of a nested condition kept in messages; deeper is "...". */
#define COND_PATH_MAX 200

/*
 * The path of a condition nested in 'path': ".key[index]", ".key" or
 * "[index]" appended (key NULL / index < 0 leave that part out).  Once the
 * path is long it ends in "..." and stops growing, so that compiling a deeply
 * nested rule costs memory linear in its depth, not quadratic.
 */
static const char *
nested_path(const char *path, const char *key, int index)
{
	size_t		len = strlen(path);

	if (len >= COND_PATH_MAX)
		return (len >= 3 && strcmp(path + len - 3, "...") == 0) ? path :
			psprintf("%s...", path);
	if (key && index >= 0)
		return psprintf("%s.%s[%d]", path, key, index);
	if (key)
		return psprintf("%s.%s", path, key);
	return psprintf("%s[%d]", path, index);
}

/* True when v is a JSON object (a nested container). */
static bool
jv_is_object(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* True when v is a JSON array (a nested container). */
static bool
jv_is_array(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* A JSON type name for error messages. */
static const char *
jv_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		default:
			return jv_is_object(v) ? "an object" : "an array";
	}
}

/* The top-level value of a Jsonb as a JsonbValue (scalars unwrapped). */
static void
jsonb_root_value(Jsonb *jb, JsonbValue *v)
{
	if (JB_ROOT_IS_SCALAR(jb))
		JsonbExtractScalar(&jb->root, v);
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = &jb->root;
		v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/* The key/value pairs of an object value; returns their number. */
static int
object_pairs(const JsonbValue *v, JsonPair **out)
{
	JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
	JsonbValue	tok;
	JsonbIteratorToken r;
	int			n = 0,
				cap = 8;
	JsonPair   *pairs = palloc(sizeof(JsonPair) * cap);

	while ((r = JsonbIteratorNext(&it, &tok, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
		{
			if (n == cap)
			{
				cap *= 2;
				pairs = repalloc(pairs, sizeof(JsonPair) * cap);
			}
			pairs[n].key = pnstrdup(tok.val.string.val, tok.val.string.len);
		}
		else if (r == WJB_VALUE)
			pairs[n++].val = tok;
	}
	*out = pairs;
	return n;
}

/* The elements of an array value; returns their number. */
static int
array_elems(const JsonbValue *v, JsonbValue **out)
{
	JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
	JsonbValue	tok;
	JsonbIteratorToken r;
	int			n = 0,
				cap = 8;
	JsonbValue *elems = palloc(sizeof(JsonbValue) * cap);

	while ((r = JsonbIteratorNext(&it, &tok, true)) != WJB_DONE)
	{
		if (r == WJB_ELEM)
		{
			if (n == cap)
			{
				cap *= 2;
				elems = repalloc(elems, sizeof(JsonbValue) * cap);
			}
			elems[n++] = tok;
		}
	}
	*out = elems;
	return n;
}

/* The operator named 'name'; false when there is none. */
static bool
lookup_op(const char *name, CondOp *op)
{
	for (int i = 0; i < (int) lengthof(cond_ops); i++)
	{
		if (strcmp(cond_ops[i].name, name) == 0)
		{
			*op = cond_ops[i].op;
			return true;
		}
	}
	return false;
}

/* Compiles one scalar literal into *cv. */
static bool
compile_literal(JsonbValue *v, const char *path, CondValue *cv, CompileState *st)
{
	bool		local;

	memset(cv, 0, sizeof(*cv));
	switch (v->type)
	{
		case jbvString:
			cv->type = CV_STRING;
			cv->str = pnstrdup(v->val.string.val, v->val.string.len);
			cv->len = v->val.string.len;
			cv->num = condition_parse_number(cv->str, cv->len);
			cv->has_num = (cv->num != NULL);
			cv->has_ts = condition_parse_timestamp_local(cv->str, cv->len, &cv->ts,
														 &local);
			cv->ts_zone = (cv->has_ts && local) ? session_timezone : NULL;
			return true;
		case jbvNumeric:
			cv->type = CV_NUMBER;
			cv->num = DatumGetNumericCopy(NumericGetDatum(v->val.numeric));
			cv->has_num = true;
			return true;
		case jbvBool:
			cv->type = CV_BOOL;
			cv->b = v->val.boolean;
			return true;
		case jbvNull:
			return fail(st, path, "null is not a value to compare with");
		default:
			return fail(st, path, "expected a string, number or boolean, not %s",
						jv_type_name(v));
	}
}

/* Compiles the right-hand side V of a test: literal, list or object of tests. */
static bool
compile_match(JsonbValue *v, const char *path, bool allow_tests,
			  CondMatch *m, CompileState *st)
{
	memset(m, 0, sizeof(*m));
	if (v->type == jbvNull)
		return fail(st, path, "null is not a value to compare with");
	if (jv_is_array(v))
	{
		JsonbValue *elems;
		int			n = array_elems(v, &elems);

		m->kind = CM_LIST;
		m->nvalues = n;
		m->values = palloc0(sizeof(CondValue) * Max(n, 1));
		for (int i = 0; i < n; i++)
		{
			char	   *epath = psprintf("%s[%d]", path, i);

			if (!compile_literal(&elems[i], epath, &m->values[i], st))
				return false;
		}
		return true;
	}
	if (jv_is_object(v))
	{
		JsonPair   *pairs;
		int			n;

		if (!allow_tests)
			return fail(st, path, "expected a value or a list of values, not an object");
		n = object_pairs(v, &pairs);
		if (n == 0)
			return fail(st, path, "an object of tests needs at least one test");
		m->kind = CM_TESTS;
		m->ntests = n;
		m->tests = palloc0(sizeof(CondTest) * n);
		for (int i = 0; i < n; i++)
		{
			if (!compile_test(pairs[i].key, &pairs[i].val, path, true,
							  &m->tests[i], st))
				return false;
		}
		return true;
	}
	m->kind = CM_LITERAL;
	m->nvalues = 1;
	m->values = palloc0(sizeof(CondValue));
	return compile_literal(v, path, &m->values[0], st);
}

/*
 * Compiles the test 'opname': 'v' of the node at 'path'.  'nested' is true
 * inside the object of tests of a V (where changed* make no sense).
 */
static bool
compile_test(const char *opname, JsonbValue *v, const char *path, bool nested,
			 CondTest *t, CompileState *st)
{
	char	   *tpath;

	memset(t, 0, sizeof(*t));
	if (!lookup_op(opname, &t->op))
		return fail(st, path, "unknown test \"%s\"", opname);
	tpath = psprintf("%s.%s", path, opname);
	switch (t->op)
	{
		case COP_EQ:
		case COP_NE:
			return compile_match(v, tpath, true, &t->match, st);
		case COP_GT:
		case COP_GTE:
		case COP_LT:
		case COP_LTE:
		case COP_IN:
		case COP_NOT_IN:
		case COP_CONTAINS:
			return compile_match(v, tpath, false, &t->match, st);
		case COP_STARTS_WITH:
			if (!compile_match(v, tpath, false, &t->match, st))
				return false;
			for (int i = 0; i < t->match.nvalues; i++)
				if (t->match.values[i].type != CV_STRING)
					return fail(st, tpath, "expected a string or a list of strings");
			return true;
		case COP_EXISTS:
		case COP_CHANGED:
			if (t->op == COP_CHANGED && nested)
				return fail(st, path, "\"changed\" cannot be used inside a value");
			if (v->type != jbvBool)
				return fail(st, tpath, "expected true or false, not %s", jv_type_name(v));
			t->flag = v->val.boolean;
			return true;
		case COP_WITHIN_LAST:
		case COP_OLDER_THAN:
			{
				char	   *s;

				if (v->type != jbvString)
					return fail(st, tpath, "expected a time span such as \"7 days\", not %s",
								jv_type_name(v));
				s = pnstrdup(v->val.string.val, v->val.string.len);
				if (!condition_parse_interval(s, &t->span))
					return fail(st, tpath, "invalid time span \"%s\" (expected e.g. \"7 days\" or \"2 hours 30 minutes\")", s);
				return true;
			}
		case COP_CHANGED_FROM:
		case COP_CHANGED_TO:
			if (nested)
				return fail(st, path, "\"%s\" cannot be used inside a value", opname);
			return compile_match(v, tpath, true, &t->match, st);
	}
	return false;
}

/* True when 'name' is a valid custom field name. */
static bool
valid_field_name(const char *name)
{
	int			len = strlen(name);

	if (len < 1 || len > 64)
		return false;
	if (!(isalpha((unsigned char) name[0]) || name[0] == '_'))
		return false;
	for (int i = 1; i < len; i++)
		if (!(isalnum((unsigned char) name[i]) || name[i] == '_') ||
			(unsigned char) name[i] >= 0x80)
			return false;
	return (unsigned char) name[0] < 0x80;
}

/* Splits 'path' at dots into node->segs. */
static void
split_path(CondNode *node, const char *path)
{
	char	   *copy = pstrdup(path);
	int			n = 1;
	char	   *p;

	for (p = copy; *p; p++)
		if (*p == '.')
			n++;
	node->segs = palloc(sizeof(char *) * n);
	node->nsegs = 0;
	p = copy;
	for (;;)
	{
		char	   *dot = strchr(p, '.');

		node->segs[node->nsegs++] = p;
		if (!dot)
			break;
		*dot = '\0';
		p = dot + 1;
	}
}

/* Compiles the field path of a "field" node; false (error set) when unknown. */
static bool
compile_field_path(CondNode *node, JsonbValue *v, const char *path, CompileState *st)
{
	char	   *name;

	if (v->type != jbvString)
		return fail(st, path, "\"field\" must be a string, not %s", jv_type_name(v));
	name = pnstrdup(v->val.string.val, v->val.string.len);
	node->path = name;
	node->pathlen = strlen(name);
	for (int i = 0; i < (int) lengthof(plain_fields); i++)
	{
		if (strcmp(name, plain_fields[i]) == 0)
		{
			split_path(node, name);
			return true;
		}
	}
	if (strncmp(name, "custom_fields.", 14) == 0 && valid_field_name(name + 14))
	{
		split_path(node, name);
		return true;
	}
	return fail(st, path, "unknown field \"%s\"", name);
}

/* Compiles the property path of an "event" node ("properties.a.b"). */
static bool
compile_event_path(CondNode *node, JsonbValue *v, const char *path, CompileState *st)
{
	char	   *name;

	if (!(st->allow & COND_ALLOW_EVENT))
		return fail(st, path, "\"event\" tests are only allowed in automations with trigger custom_event");
	if (v->type != jbvString)
		return fail(st, path, "\"event\" must be a string, not %s", jv_type_name(v));
	name = pnstrdup(v->val.string.val, v->val.string.len);
	if (strncmp(name, "properties.", 11) != 0 || name[11] == '\0')
		return fail(st, path, "\"event\" must name a property as \"properties.NAME\", not \"%s\"", name);
	node->path = name;
	node->pathlen = strlen(name);
	split_path(node, name + 11);
	for (int i = 0; i < node->nsegs; i++)
		if (node->segs[i][0] == '\0')
			return fail(st, path, "empty name in property path \"%s\"", name);
	return true;
}

/* Compiles the tests of a field / event node: every key except 'except'. */
static bool
compile_tests(CondNode *node, JsonPair *pairs, int n, const char *except,
			  const char *path, CompileState *st)
{
	node->tests = palloc0(sizeof(CondTest) * n);
	node->ntests = 0;
	for (int i = 0; i < n; i++)
	{
		CondTest   *t;

		if (strcmp(pairs[i].key, except) == 0)
			continue;
		t = &node->tests[node->ntests];
		if (!compile_test(pairs[i].key, &pairs[i].val, path, false, t, st))
			return false;
		if ((t->op == COP_CHANGED || t->op == COP_CHANGED_FROM || t->op == COP_CHANGED_TO) &&
			(node->kind == CK_EVENT || !(st->allow & COND_ALLOW_CHANGES)))
			return fail(st, path, "test \"%s\" is not available here (it reads the changes of a contact write)",
						pairs[i].key);
		node->ntests++;
	}
	if (node->ntests == 0)
		return fail(st, path, "no test given for %s \"%s\"",
					node->kind == CK_EVENT ? "event property" : "field", node->path);
	return true;
}

/* Compiles a non-empty string value (tag or event name). */
static bool
compile_name(JsonbValue *v, const char *path, const char *key, char **out, CompileState *st)
{
	if (v->type != jbvString || v->val.string.len == 0)
		return fail(st, path, "\"%s\" must be a non-empty string", key);
	*out = pnstrdup(v->val.string.val, v->val.string.len);
	return true;
}

/* Compiles a "performed" node: {"performed": name, "count": {..}, "within": span}. */
static CondNode *
compile_performed(CondNode *node, JsonPair *pairs, int n, const char *path, CompileState *st)
{
	node->kind = CK_PERFORMED;
	for (int i = 0; i < n; i++)
	{
		const char *key = pairs[i].key;
		JsonbValue *v = &pairs[i].val;
		char	   *kpath = psprintf("%s.%s", path, key);

		if (strcmp(key, "performed") == 0)
		{
			if (!compile_name(v, path, key, &node->name, st))
				return NULL;
		}
		else if (strcmp(key, "within") == 0)
		{
			char	   *s;

			if (v->type != jbvString)
				return fail(st, kpath, "expected a time span such as \"7 days\", not %s", jv_type_name(v)), NULL;
			s = pnstrdup(v->val.string.val, v->val.string.len);
			if (!condition_parse_interval(s, &node->within))
				return fail(st, kpath, "invalid time span \"%s\" (expected e.g. \"7 days\")", s), NULL;
			node->has_within = true;
		}
		else if (strcmp(key, "count") == 0)
		{
			JsonPair   *cp;
			int			cn;

			if (!jv_is_object(v))
				return fail(st, kpath, "expected an object of tests such as {\"gte\": 3}, not %s",
							jv_type_name(v)), NULL;
			cn = object_pairs(v, &cp);
			if (cn == 0)
				return fail(st, kpath, "an object of tests needs at least one test"), NULL;
			node->tests = palloc0(sizeof(CondTest) * cn);
			node->ntests = cn;
			for (int j = 0; j < cn; j++)
			{
				CondTest   *t = &node->tests[j];

				if (!compile_test(cp[j].key, &cp[j].val, kpath, true, t, st))
					return NULL;
				if (t->op > COP_NOT_IN)
					return fail(st, kpath, "test \"%s\" does not apply to a count", cp[j].key), NULL;
				for (int k = 0; k < t->match.nvalues; k++)
					if (t->match.values[k].type != CV_NUMBER)
						return fail(st, psprintf("%s.%s", kpath, cp[j].key),
									"a count is compared with numbers"), NULL;
			}
		}
		else
			return fail(st, path, "unknown key \"%s\" in a \"performed\" test (expected \"count\" or \"within\")",
						key), NULL;
	}
	if (node->ntests == 0)
	{
		/* no count given: at least once */
		node->ntests = 1;
		node->tests = palloc0(sizeof(CondTest));
		node->tests[0].op = COP_GTE;
		node->tests[0].match.kind = CM_LITERAL;
		node->tests[0].match.nvalues = 1;
		node->tests[0].match.values = palloc0(sizeof(CondValue));
		node->tests[0].match.values[0].type = CV_NUMBER;
		node->tests[0].match.values[0].has_num = true;
		node->tests[0].match.values[0].num = int64_to_numeric(1);
	}
	return node;
}

/* Compiles a condition (an object, or an array meaning "all"). */
static CondNode *
compile_node_body(JsonbValue *v, const char *path, CompileState *st)
{
	CondNode   *node;
	JsonPair   *pairs;
	int			n;
	const char *kinds[] = {"all", "any", "not", "field", "event", "has_tag", "lacks_tag", "performed",
	"in_segment", "not_in_segment"};
	int			found = -1;

	node = palloc0(sizeof(CondNode));
	if (jv_is_array(v))
	{
		JsonbValue *elems;

		node->kind = CK_ALL;
		node->nchildren = array_elems(v, &elems);
		node->children = palloc0(sizeof(CondNode *) * Max(node->nchildren, 1));
		for (int i = 0; i < node->nchildren; i++)
		{
			node->children[i] = compile_node(&elems[i], nested_path(path, NULL, i), st);
			if (!node->children[i])
				return NULL;
		}
		return node;
	}
	if (!jv_is_object(v))
		return fail(st, path, "a condition must be an object, not %s", jv_type_name(v)), NULL;
	n = object_pairs(v, &pairs);
	if (n == 0)
		return fail(st, path, "empty condition (expected one of \"all\", \"any\", \"not\", \"field\", \"event\", \"has_tag\", \"lacks_tag\", \"performed\", \"in_segment\", \"not_in_segment\")"), NULL;
	for (int k = 0; k < (int) lengthof(kinds) && found < 0; k++)
		for (int i = 0; i < n; i++)
			if (strcmp(pairs[i].key, kinds[k]) == 0)
			{
				found = k;
				break;
			}
	if (found < 0)
	{
		CondOp		op;

		if (lookup_op(pairs[0].key, &op))
			return fail(st, path, "test \"%s\" needs a \"field\" or \"event\" to test", pairs[0].key), NULL;
		return fail(st, path, "unknown condition \"%s\" (expected one of \"all\", \"any\", \"not\", \"field\", \"event\", \"has_tag\", \"lacks_tag\", \"performed\", \"in_segment\", \"not_in_segment\")",
					pairs[0].key), NULL;
	}
	switch (found)
	{
		case 0:					/* all */
		case 1:					/* any */
		case 2:					/* not */
		case 5:					/* has_tag */
		case 6:					/* lacks_tag */
		case 8:					/* in_segment */
		case 9:					/* not_in_segment */
			if (n > 1)
			{
				for (int i = 0; i < n; i++)
					if (strcmp(pairs[i].key, kinds[found]) != 0)
						return fail(st, path, "unexpected key \"%s\" beside \"%s\"",
									pairs[i].key, kinds[found]), NULL;
			}
			break;
		default:
			break;
	}

	switch (found)
	{
		case 0:
		case 1:
			{
				JsonbValue *elems;
				const char *key = kinds[found];

				node->kind = (found == 0) ? CK_ALL : CK_ANY;
				if (!jv_is_array(&pairs[0].val))
					return fail(st, path, "\"%s\" must be an array of conditions, not %s",
								key, jv_type_name(&pairs[0].val)), NULL;
				node->nchildren = array_elems(&pairs[0].val, &elems);
				node->children = palloc0(sizeof(CondNode *) * Max(node->nchildren, 1));
				for (int i = 0; i < node->nchildren; i++)
				{
					node->children[i] = compile_node(&elems[i],
													 nested_path(path, key, i), st);
					if (!node->children[i])
						return NULL;
				}
				return node;
			}
		case 2:
			node->kind = CK_NOT;
			node->nchildren = 1;
			node->children = palloc0(sizeof(CondNode *));
			node->children[0] = compile_node(&pairs[0].val, nested_path(path, "not", -1), st);
			return node->children[0] ? node : NULL;
		case 3:
		case 4:
			{
				const char *key = kinds[found];
				bool		ok;

				node->kind = (found == 3) ? CK_FIELD : CK_EVENT;
				for (int i = 0; i < n; i++)
				{
					if (strcmp(pairs[i].key, key) != 0)
						continue;
					ok = (found == 3)
						? compile_field_path(node, &pairs[i].val, path, st)
						: compile_event_path(node, &pairs[i].val, path, st);
					if (!ok)
						return NULL;
				}
				return compile_tests(node, pairs, n, key, path, st) ? node : NULL;
			}
		case 5:
		case 6:
			node->kind = (found == 5) ? CK_HAS_TAG : CK_LACKS_TAG;
			return compile_name(&pairs[0].val, path, kinds[found], &node->name, st) ? node : NULL;
		case 7:
			return compile_performed(node, pairs, n, path, st);
		case 8:
		case 9:
			node->kind = (found == 8) ? CK_IN_SEGMENT : CK_NOT_IN_SEGMENT;
			return compile_name(&pairs[0].val, path, kinds[found], &node->name, st) ? node : NULL;
	}
	return NULL;
}

/*
 * Compiles a condition nested one level deeper.  A rule nested deeper than
 * the stack allows is an invalid rule (reported like any other bad part), not
 * an ERROR: the rule cache compiles stored rows inside the write that fired
 * them, and a stored row must never fail that write.
 */
static CondNode *
compile_node(JsonbValue *v, const char *path, CompileState *st)
{
	CondNode   *node;

	if (stack_is_too_deep())
		return fail(st, st->root, "conditions nested too deeply (%d levels reached)",
					st->depth), NULL;
	st->depth++;
	node = compile_node_body(v, path, st);
	st->depth--;
	return node;
}

/*
 * Compiles 'conditions' (NULL or JSON null = always: returns NULL with no
 * error) in the current memory context.  On a bad rule returns NULL and sets
 * *error to "PATH: message", PATH starting with 'root'.
 */
CondNode *
condition_compile(Jsonb *conditions, const char *root, int allow, char **error)
{
	CompileState st;
	JsonbValue	v;
	CondNode   *node;

	*error = NULL;
	if (conditions == NULL)
		return NULL;
	jsonb_root_value(conditions, &v);
	if (v.type == jbvNull)
		return NULL;
	st.allow = allow;
	st.error = NULL;
	st.root = root;
	st.depth = 0;
	node = compile_node(&v, root, &st);
	if (!node && !st.error)
		fail(&st, root, "invalid condition");
	*error = st.error;
	return st.error ? NULL : node;
}

/* Raises ERROR 22023 for 'error', a "PATH: message" of condition_compile. */
void
condition_raise(const char *error)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s", error),
			 errhint("See the condition language in the automations documentation.")));
}

/* Compiles and raises ERROR 22023 with the offending part when invalid. */
CondNode *
condition_compile_or_error(Jsonb *conditions, const char *root, int allow)
{
	char	   *error;
	CondNode   *node = condition_compile(conditions, root, allow, &error);

	if (error)
		condition_raise(error);
	return node;
}
