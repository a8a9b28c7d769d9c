/*
 * diff.c
 *		The change set of a JSON document: meisa.jsonb_diff(old, new) and the
 *		helpers the contacts trigger uses to describe a contact write.  Paths
 *		are flattened with dots ("custom_fields.plan"); every changed leaf is
 *		{"old": v, "new": v} where a side that did not exist (or is JSON null)
 *		is null; array leaves also list the "added" and "removed" elements.
 */
#include "contacts/contacts.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(meisa_jsonb_diff);

/* True when the value is an object container. */
static bool
is_object(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* True when the value is an array container. */
static bool
is_array(JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* True when two JSON values (never absent) are equal; numbers compare numerically. */
bool
diff_values_equal(JsonbValue *a, JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
													 NumericGetDatum(a->val.numeric),
													 NumericGetDatum(b->val.numeric))) == 0;
		case jbvBinary:
			if (JsonContainerIsArray(a->val.binary.data) != JsonContainerIsArray(b->val.binary.data))
				return false;
			return compareJsonbContainers(a->val.binary.data, b->val.binary.data) == 0;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) a->type);
	}
	return false;
}

/*
 * A total order of array elements that agrees with diff_values_equal: by
 * type, then by value (strings bytewise, numbers numerically, containers in
 * jsonb's btree order, which tells arrays from objects).
 */
static int
elem_cmp(const void *a, const void *b)
{
	const JsonbValue *x = (const JsonbValue *) a;
	const JsonbValue *y = (const JsonbValue *) b;

	if (x->type != y->type)
		return x->type < y->type ? -1 : 1;
	switch (x->type)
	{
		case jbvString:
			{
				int			c = memcmp(x->val.string.val, y->val.string.val,
									   Min(x->val.string.len, y->val.string.len));

				if (c != 0)
					return c;
				return (x->val.string.len > y->val.string.len) - (x->val.string.len < y->val.string.len);
			}
		case jbvNumeric:
			return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
													 NumericGetDatum(x->val.numeric),
													 NumericGetDatum(y->val.numeric)));
		case jbvBool:
			return (int) x->val.boolean - (int) y->val.boolean;
		case jbvBinary:
			return compareJsonbContainers(x->val.binary.data, y->val.binary.data);
		default:
			return 0;
	}
}

/*
 * The elements of an array container, sorted by elem_cmp (palloc'd; *n =
 * count).  Sorting once makes the added/removed lists O(n log n) instead of
 * a scan of one array per element of the other (minutes for two arrays of
 * 50,000 numbers, and not cancellable).
 */
static JsonbValue *
sorted_elements(JsonbContainer *arr, int *n)
{
	JsonbValue *elems = palloc(sizeof(JsonbValue) * (JsonContainerSize(arr) + 1));
	JsonbIterator *it = JsonbIteratorInit(arr);
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			count = 0;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_ELEM)
			elems[count++] = v;
	if (count > 1)
		qsort(elems, count, sizeof(JsonbValue), elem_cmp);
	*n = count;
	return elems;
}

/* Pushes the elements of 'from' missing in 'other' (absent = empty) as an array value. */
static void
push_missing_elements(JsonbParseState **state, JsonbValue *from, JsonbValue *other)
{
	pushJsonbValue(state, WJB_BEGIN_ARRAY, NULL);
	if (from != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(from->val.binary.data);
		JsonbValue	v;
		JsonbIteratorToken tok;
		JsonbValue *sorted = NULL;
		int			nsorted = 0;

		if (other != NULL)
			sorted = sorted_elements(other->val.binary.data, &nsorted);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			CHECK_FOR_INTERRUPTS();
			if (nsorted == 0 || bsearch(&v, sorted, nsorted, sizeof(JsonbValue), elem_cmp) == NULL)
				pushJsonbValue(state, WJB_ELEM, &v);
		}
	}
	pushJsonbValue(state, WJB_END_ARRAY, NULL);
}

/* Pushes one change entry for 'path' (NULL values = JSON null). */
void
diff_push_entry(JsonbParseState **state, const char *path, int pathlen,
				JsonbValue *oldv, JsonbValue *newv,
				JsonbValue *added, JsonbValue *removed)
{
	JsonbValue	k;
	JsonbValue	null;

	null.type = jbvNull;
	k.type = jbvString;
	k.val.string.val = pnstrdup(path, pathlen);	/* the state keeps the pointer */
	k.val.string.len = pathlen;
	pushJsonbValue(state, WJB_KEY, &k);
	pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
	k.val.string.val = "old";
	k.val.string.len = 3;
	pushJsonbValue(state, WJB_KEY, &k);
	pushJsonbValue(state, WJB_VALUE, oldv ? oldv : &null);
	k.val.string.val = "new";
	pushJsonbValue(state, WJB_KEY, &k);
	pushJsonbValue(state, WJB_VALUE, newv ? newv : &null);
	if (added != NULL)
	{
		k.val.string.val = "added";
		k.val.string.len = 5;
		pushJsonbValue(state, WJB_KEY, &k);
		pushJsonbValue(state, WJB_VALUE, added);
	}
	if (removed != NULL)
	{
		k.val.string.val = "removed";
		k.val.string.len = 7;
		pushJsonbValue(state, WJB_KEY, &k);
		pushJsonbValue(state, WJB_VALUE, removed);
	}
	pushJsonbValue(state, WJB_END_OBJECT, NULL);
}

/* Pushes a changed leaf (neither side an object). */
static int
push_leaf(JsonbParseState **state, StringInfo path, JsonbValue *oldv, JsonbValue *newv)
{
	JsonbValue	k;

	if (oldv == NULL && newv == NULL)
		return 0;
	if (oldv != NULL && newv != NULL && diff_values_equal(oldv, newv))
		return 0;
	if ((oldv == NULL || is_array(oldv)) && (newv == NULL || is_array(newv)))
	{
		/* entry with added/removed element lists, built in place */
		k.type = jbvString;
		k.val.string.val = pnstrdup(path->data, path->len);	/* the state keeps the pointer */
		k.val.string.len = path->len;
		pushJsonbValue(state, WJB_KEY, &k);
		pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
		k.val.string.val = "old";
		k.val.string.len = 3;
		pushJsonbValue(state, WJB_KEY, &k);
		if (oldv)
			pushJsonbValue(state, WJB_VALUE, oldv);
		else
		{
			JsonbValue	null = {.type = jbvNull};

			pushJsonbValue(state, WJB_VALUE, &null);
		}
		k.val.string.val = "new";
		pushJsonbValue(state, WJB_KEY, &k);
		if (newv)
			pushJsonbValue(state, WJB_VALUE, newv);
		else
		{
			JsonbValue	null = {.type = jbvNull};

			pushJsonbValue(state, WJB_VALUE, &null);
		}
		k.val.string.val = "added";
		k.val.string.len = 5;
		pushJsonbValue(state, WJB_KEY, &k);
		push_missing_elements(state, newv, oldv);
		k.val.string.val = "removed";
		k.val.string.len = 7;
		pushJsonbValue(state, WJB_KEY, &k);
		push_missing_elements(state, oldv, newv);
		pushJsonbValue(state, WJB_END_OBJECT, NULL);
		return 1;
	}
	diff_push_entry(state, path->data, path->len, oldv, newv, NULL, NULL);
	return 1;
}

/* Appends ".key" (or "key" at the top) to the path; returns the old length. */
static int
path_append(StringInfo path, const char *key, int len)
{
	int			oldlen = path->len;

	if (oldlen > 0)
		appendStringInfoChar(path, '.');
	appendBinaryStringInfo(path, key, len);
	return oldlen;
}

/* Truncates the path back to 'len' bytes. */
static void
path_truncate(StringInfo path, int len)
{
	path->len = len;
	path->data[len] = '\0';
}

/*
 * Pushes the changes between two object containers (NULL = empty object)
 * under 'path'; returns the number of entries pushed.
 */
static int
diff_objects(JsonbParseState **state, StringInfo path,
			 JsonbContainer *oldc, JsonbContainer *newc)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	int			n = 0;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	if (oldc != NULL)
	{
		it = JsonbIteratorInit(oldc);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			JsonbValue *nv = NULL;
			int			save;

			if (tok != WJB_KEY)
				continue;
			tok = JsonbIteratorNext(&it, &v, true);
			if (newc != NULL)
				nv = getKeyJsonValueFromContainer(newc, k.val.string.val, k.val.string.len, NULL);
			save = path_append(path, k.val.string.val, k.val.string.len);
			n += diff_push(state, path, &v, nv);
			path_truncate(path, save);
		}
	}
	if (newc != NULL)
	{
		it = JsonbIteratorInit(newc);
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			int			save;

			if (tok != WJB_KEY)
				continue;
			tok = JsonbIteratorNext(&it, &v, true);
			if (oldc != NULL &&
				getKeyJsonValueFromContainer(oldc, k.val.string.val, k.val.string.len, NULL) != NULL)
				continue;
			save = path_append(path, k.val.string.val, k.val.string.len);
			n += diff_push(state, path, NULL, &v);
			path_truncate(path, save);
		}
	}
	return n;
}

/*
 * Pushes into the open object *state one entry per changed leaf between
 * 'oldv' and 'newv' (NULL or JSON null = absent) under the dotted 'path'.
 */
int
diff_push(JsonbParseState **state, StringInfo path, JsonbValue *oldv, JsonbValue *newv)
{
	bool		oobj,
				nobj;
	int			n = 0;

	if (oldv != NULL && oldv->type == jbvNull)
		oldv = NULL;
	if (newv != NULL && newv->type == jbvNull)
		newv = NULL;
	oobj = is_object(oldv);
	nobj = is_object(newv);
	if (oobj || nobj)
	{
		n += diff_objects(state, path,
						  oobj ? oldv->val.binary.data : NULL,
						  nobj ? newv->val.binary.data : NULL);
		return n + push_leaf(state, path, oobj ? NULL : oldv, nobj ? NULL : newv);
	}
	return push_leaf(state, path, oldv, newv);
}

/*
 * meisa.jsonb_diff(old jsonb, new jsonb) returns jsonb: the flattened change
 * set from 'old' to 'new' (objects; SQL NULL = empty object).
 */
Datum
meisa_jsonb_diff(PG_FUNCTION_ARGS)
{
	Jsonb	   *oldj = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	Jsonb	   *newj = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	JsonbParseState *state = NULL;
	JsonbValue *res;
	StringInfoData path;

	if (oldj && (!JB_ROOT_IS_OBJECT(oldj) || JB_ROOT_IS_SCALAR(oldj)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("jsonb_diff arguments must be JSON objects"),
				 errdetail("Argument \"old\" is not an object.")));
	if (newj && (!JB_ROOT_IS_OBJECT(newj) || JB_ROOT_IS_SCALAR(newj)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("jsonb_diff arguments must be JSON objects"),
				 errdetail("Argument \"new\" is not an object.")));
	initStringInfo(&path);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	diff_objects(&state, &path, oldj ? &oldj->root : NULL, newj ? &newj->root : NULL);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}
