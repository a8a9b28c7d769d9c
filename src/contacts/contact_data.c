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

/* The contact data (as contact_data_jsonb) of a meisa.contacts tuple. */
Jsonb *
contact_data_tuple(HeapTuple tup, TupleDesc desc, const ContactAttrs *a)
{
	JsonbParseState *st = NULL;
	JsonbValue	v;
	bool		isnull;
	Datum		d;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	push_key(&st, "id");
	d = heap_getattr(tup, a->id, desc, &isnull);
	v.type = isnull ? jbvNull : jbvNumeric;
	if (!isnull)
		v.val.numeric = int64_to_numeric(DatumGetInt64(d));
	pushJsonbValue(&st, WJB_VALUE, &v);
	push_col(&st, "email", tup, desc, a->email, false);
	push_col(&st, "external_id", tup, desc, a->external_id, false);
	push_col(&st, "first_name", tup, desc, a->first_name, false);
	push_col(&st, "last_name", tup, desc, a->last_name, false);
	push_key(&st, "custom_fields");
	jsonb_column_value(tup, a->custom_fields, desc, &v);
	pushJsonbValue(&st, WJB_VALUE, &v);
	push_key(&st, "tags");
	d = heap_getattr(tup, a->tags, desc, &isnull);
	if (isnull)
	{
		v.type = jbvNull;
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	else
		push_tags(&st, d);
	push_key(&st, "subscribed");
	d = heap_getattr(tup, a->subscribed, desc, &isnull);
	v.type = isnull ? jbvNull : jbvBool;
	v.val.boolean = isnull ? false : DatumGetBool(d);
	pushJsonbValue(&st, WJB_VALUE, &v);
	push_col(&st, "created_at", tup, desc, a->created_at, true);
	push_col(&st, "updated_at", tup, desc, a->updated_at, true);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/* contact_data_jsonb of each of the first n rows of an SPI result holding every contact column. */
void
contact_data_of_rows(SPITupleTable *tt, uint64 n, Jsonb **out)
{
	ContactAttrs a;

	contact_attrs(tt->tupdesc, &a);
	for (uint64 i = 0; i < n; i++)
		out[i] = contact_data_tuple(tt->vals[i], tt->tupdesc, &a);
}
