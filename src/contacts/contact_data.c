/*
 * contact_data.c
 *		The contact as template and condition data, built from a row of
 *		meisa.contacts: {"id", "email", "external_id", "first_name",
 *		"last_name", "custom_fields", "tags", "subscribed", "created_at",
 *		"updated_at"}, each value as to_jsonb writes it.  One builder for
 *		every path: a contact read by id (contact_data_jsonb), the row a
 *		cascade keeps in memory, and the rows of a broadcast's batch.
 */
#include "contacts/contacts_write.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/numeric.h"

/*
 * Pushes key 'k' with a text column's value, or (time) a timestamptz
 * column's as to_jsonb writes it; JSON null for SQL NULL.
 */
static void
push_col(JsonbParseState **st, const char *k, HeapTuple tup, TupleDesc desc, int att, bool time)
{
	JsonbValue	v;
	bool		isnull;
	Datum		d = heap_getattr(tup, att, desc, &isnull);
	char		buf[MAXDATELEN + 1];

	push_key(st, k);
	v.type = jbvString;
	if (isnull)
		v.type = jbvNull;
	else if (time)
	{
		v.val.string.val = pstrdup(JsonEncodeDateTime(buf, d, TIMESTAMPTZOID, NULL));
		v.val.string.len = strlen(v.val.string.val);
	}
	else
	{
		text	   *t = DatumGetTextPP(d);

		v.val.string.val = VARDATA_ANY(t);
		v.val.string.len = VARSIZE_ANY_EXHDR(t);
	}
	pushJsonbValue(st, WJB_VALUE, &v);
}

/* Pushes a tags array value as to_jsonb writes it. */
static void
push_tags(JsonbParseState **st, Datum d)
{
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	JsonbValue	v;

	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, &n);
	pushJsonbValue(st, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < n; i++)
	{
		if (enulls[i])
			v.type = jbvNull;
		else
		{
			text	   *t = DatumGetTextPP(elems[i]);

			v.type = jbvString;
			v.val.string.val = VARDATA_ANY(t);
			v.val.string.len = VARSIZE_ANY_EXHDR(t);
		}
		pushJsonbValue(st, WJB_ELEM, &v);
	}
	pushJsonbValue(st, WJB_END_ARRAY, NULL);
}

/* The keys of the contact data, in the order they are pushed; bit i of a key mask is keys[i]. */
static const char *const keys[] = {
	"id", "email", "external_id", "first_name", "last_name", "custom_fields",
	"tags", "subscribed", "created_at", "updated_at"
};

#define WANTS(mask, i) (((mask) & (1u << (i))) != 0)

/* The contact data (as contact_data_jsonb) of a meisa.contacts tuple: every key. */
Jsonb *
contact_data_tuple(HeapTuple tup, TupleDesc desc, const ContactAttrs *a)
{
	return contact_data_tuple_keys(tup, desc, a, CONTACT_DATA_ALL_KEYS);
}

/* contact_data_tuple with only the keys of 'mask' (see contact_data_key_mask). */
Jsonb *
contact_data_tuple_keys(HeapTuple tup, TupleDesc desc, const ContactAttrs *a, uint32 mask)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	bool		isnull;
	Datum		d;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	if (WANTS(mask, 0))
	{
		push_key(&st, "id");
		d = heap_getattr(tup, a->id, desc, &isnull);
		v.type = isnull ? jbvNull : jbvNumeric;
		if (!isnull)
			v.val.numeric = int64_to_numeric(DatumGetInt64(d));
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	if (WANTS(mask, 1))
		push_col(&st, "email", tup, desc, a->email, false);
	if (WANTS(mask, 2))
		push_col(&st, "external_id", tup, desc, a->external_id, false);
	if (WANTS(mask, 3))
		push_col(&st, "first_name", tup, desc, a->first_name, false);
	if (WANTS(mask, 4))
		push_col(&st, "last_name", tup, desc, a->last_name, false);
	if (WANTS(mask, 5))
	{
		push_key(&st, "custom_fields");
		jsonb_column_value(tup, a->custom_fields, desc, &v);
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	if (WANTS(mask, 6))
	{
		push_key(&st, "tags");
		d = heap_getattr(tup, a->tags, desc, &isnull);
		if (isnull)
		{
			v.type = jbvNull;
			pushJsonbValue(&st, WJB_VALUE, &v);
		}
		else
			push_tags(&st, d);
	}
	if (WANTS(mask, 7))
	{
		push_key(&st, "subscribed");
		d = heap_getattr(tup, a->subscribed, desc, &isnull);
		v.type = isnull ? jbvNull : jbvBool;
		v.val.boolean = isnull ? false : DatumGetBool(d);
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	if (WANTS(mask, 8))
		push_col(&st, "created_at", tup, desc, a->created_at, true);
	if (WANTS(mask, 9))
		push_col(&st, "updated_at", tup, desc, a->updated_at, true);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/*
 * True when a template text has a tag that may read any key: a partial
 * ("{{>"), the implicit iterator ("{{."), or a change of delimiters ("{{="),
 * after which tags are no longer found by "{{" (spaces allowed after it).
 */
static bool
reads_everything(const char *s)
{
	for (const char *p = strstr(s, "{{"); p != NULL; p = strstr(p + 2, "{{"))
	{
		const char *q = p + 2;

		while (*q == '{' || *q == ' ' || *q == '\t' || *q == '&')
			q++;
		if (*q == '>' || *q == '.' || *q == '=')
			return true;
	}
	return false;
}

/*
 * The keys of the contact data that the template texts may read: a
 * Mustache name is written out in the text, so a key that appears nowhere
 * in it cannot be read.  A partial (which may read anything) or the
 * implicit iterator "." takes every key.  NULL texts are skipped.
 */
uint32
contact_data_key_mask(const char *const *texts, int n)
{
	uint32		mask = 0;

	for (int t = 0; t < n; t++)
	{
		const char *s = texts[t];

		if (s == NULL)
			continue;
		if (reads_everything(s))
			return CONTACT_DATA_ALL_KEYS;
		for (int i = 0; i < (int) lengthof(keys); i++)
			if (!WANTS(mask, i) && strstr(s, keys[i]) != NULL)
				mask |= 1u << i;
	}
	return mask;
}

/* contact_data_jsonb (the keys of 'mask') of each of the first n rows of an SPI result holding every contact column. */
void
contact_data_of_rows(SPITupleTable *tt, uint64 n, uint32 mask, Jsonb **out)
{
	ContactAttrs a;

	contact_attrs(tt->tupdesc, &a);
	for (uint64 i = 0; i < n; i++)
		out[i] = contact_data_tuple_keys(tt->vals[i], tt->tupdesc, &a, mask);
}
