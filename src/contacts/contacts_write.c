/*
 * contacts_write.c
 *		What the contacts triggers (contacts_trigger.c) and the in-memory
 *		cascade of a write (contacts_cascade.c) share: the contact columns,
 *		normalised tags, the change set of a write, its activity rows, the
 *		automations it fires, and whether the installed schema still stores
 *		a creation as an activity row.
 */
#include "contacts/contacts_write.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/* Saved plan inserting an activity row. */
static SPIPlanPtr activity_plan = NULL;

/* The attribute number of a column the trigger needs; ERROR when missing. */
static int
attnum(TupleDesc desc, const char *name)
{
	int			n = SPI_fnumber(desc, name);

	if (n <= 0)
		elog(ERROR, "meisa contacts trigger: column \"%s\" is missing", name);
	return n;
}

/* Finds the attribute numbers of every contact column by name. */
void
contact_attrs(TupleDesc desc, ContactAttrs *a)
{
	a->id = attnum(desc, "id");
	a->email = attnum(desc, "email");
	a->external_id = attnum(desc, "external_id");
	a->first_name = attnum(desc, "first_name");
	a->last_name = attnum(desc, "last_name");
	a->custom_fields = attnum(desc, "custom_fields");
	a->tags = attnum(desc, "tags");
	a->subscribed = attnum(desc, "subscribed");
	a->unsubscribe_reason = attnum(desc, "unsubscribe_reason");
	a->unsubscribed_at = attnum(desc, "unsubscribed_at");
	a->bounced_at = attnum(desc, "bounced_at");
	a->complained_at = attnum(desc, "complained_at");
	a->created_at = attnum(desc, "created_at");
	a->updated_at = attnum(desc, "updated_at");
}


/* True when column 'att' differs between the old tuple (NULL = insert) and the new one. */
bool
column_changed(TupleDesc desc, HeapTuple oldtup, HeapTuple newtup, int att)
{
	Form_pg_attribute fa = TupleDescAttr(desc, att - 1);
	bool		onull,
				nnull;
	Datum		o,
				n;

	n = heap_getattr(newtup, att, desc, &nnull);
	if (oldtup == NULL)
		return !nnull;
	o = heap_getattr(oldtup, att, desc, &onull);
	if (onull || nnull)
		return onull != nnull;
	if (datumIsEqual(o, n, fa->attbyval, fa->attlen))
		return false;
	if (fa->attlen == -1)
	{
		/* same bytes under different headers (short, toasted) are no change */
		struct varlena *a = PG_DETOAST_DATUM_PACKED(o);
		struct varlena *b = PG_DETOAST_DATUM_PACKED(n);

		return VARSIZE_ANY_EXHDR(a) != VARSIZE_ANY_EXHDR(b) ||
			memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) != 0;
	}
	return true;
}

/* Normalises a text[] of tags; returns NULL when it is already normal. */
ArrayType *
normalize_tags(ArrayType *arr)
{
	Datum	   *elems;
	bool	   *enulls;
	int			n,
				i,
				m;
	char	  **tags;
	bool		same;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"tags\" must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	tags = palloc(sizeof(char *) * (n + 1));
	for (i = 0; i < n; i++)
	{
		if (enulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("null tag in field \"tags\"")));
		tags[i] = tag_normalize(VARDATA_ANY(elems[i]), VARSIZE_ANY_EXHDR(elems[i]), "tags");
	}
	m = tags_sort_unique(tags, n);
	tags_check_count(m, "tags");
	same = (m == n) && ARR_LBOUND(arr)[0] == 1;
	for (i = 0; same && i < n; i++)
		if (strlen(tags[i]) != VARSIZE_ANY_EXHDR(elems[i]) ||
			memcmp(tags[i], VARDATA_ANY(elems[i]), VARSIZE_ANY_EXHDR(elems[i])) != 0)
			same = false;
	if (same && n > 0)
		return NULL;
	if (n == 0 && ARR_NDIM(arr) == 0)
		return NULL;
	for (i = 0; i < m; i++)
		elems[i] = CStringGetTextDatum(tags[i]);
	return construct_array(elems, m, TEXTOID, -1, false, TYPALIGN_INT);
}


/* Pushes a JSON string value, or null for SQL NULL. */
static void
jv_text(JsonbValue *v, Datum d, bool isnull)
{
	if (isnull)
	{
		v->type = jbvNull;
		return;
	}
	{
		text	   *t = DatumGetTextPP(d);

		v->type = jbvString;
		v->val.string.val = VARDATA_ANY(t);
		v->val.string.len = VARSIZE_ANY_EXHDR(t);
	}
}

/* Pushes a change entry for a scalar column when it changed; returns 1 when pushed. */
static int
column_entry(JsonbParseState **state, const char *name, TupleDesc desc,
			 HeapTuple oldtup, HeapTuple newtup, int att, char kind)
{
	JsonbValue	ov,
				nv;
	bool		onull = true,
				nnull;
	Datum		o = (Datum) 0,
				n;

	n = heap_getattr(newtup, att, desc, &nnull);
	if (oldtup)
		o = heap_getattr(oldtup, att, desc, &onull);
	if (onull && nnull)
		return 0;
	if (!onull && !nnull)
	{
		Form_pg_attribute fa = TupleDescAttr(desc, att - 1);

		if (datumIsEqual(o, n, fa->attbyval, fa->attlen))
			return 0;
		if (kind == 't')
		{
			text	   *a = DatumGetTextPP(o),
					   *b = DatumGetTextPP(n);

			if (VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
				memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0)
				return 0;
		}
	}
	switch (kind)
	{
		case 't':
			jv_text(&ov, o, onull);
			jv_text(&nv, n, nnull);
			break;
		case 'b':
			ov.type = onull ? jbvNull : jbvBool;
			ov.val.boolean = onull ? false : DatumGetBool(o);
			nv.type = nnull ? jbvNull : jbvBool;
			nv.val.boolean = nnull ? false : DatumGetBool(n);
			break;
		default:				/* timestamptz, as to_jsonb writes it */
			{
				char		buf[MAXDATELEN + 1];

				ov.type = jbvNull;
				nv.type = jbvNull;
				if (!onull)
				{
					ov.type = jbvString;
					ov.val.string.val = pstrdup(JsonEncodeDateTime(buf, o, TIMESTAMPTZOID, NULL));
					ov.val.string.len = strlen(ov.val.string.val);
				}
				if (!nnull)
				{
					nv.type = jbvString;
					nv.val.string.val = pstrdup(JsonEncodeDateTime(buf, n, TIMESTAMPTZOID, NULL));
					nv.val.string.len = strlen(nv.val.string.val);
				}
			}
			break;
	}
	diff_push_entry(state, name, strlen(name), &ov, &nv, NULL, NULL);
	return 1;
}

/* The elements of a tags column (NULL = none) as text datums. */
static void
tags_of(TupleDesc desc, HeapTuple tup, int att, Datum **elems, int *n)
{
	bool		isnull;
	Datum		d;

	*elems = NULL;
	*n = 0;
	if (tup == NULL)
		return;
	d = heap_getattr(tup, att, desc, &isnull);
	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  elems, NULL, n);
}

/* True when text datum 'x' is among elems[0..n). */
bool
text_in(Datum x, Datum *elems, int n)
{
	int			i;
	text	   *tx = DatumGetTextPP(x);

	for (i = 0; i < n; i++)
	{
		text	   *te = DatumGetTextPP(elems[i]);

		if (VARSIZE_ANY_EXHDR(tx) == VARSIZE_ANY_EXHDR(te) &&
			memcmp(VARDATA_ANY(tx), VARDATA_ANY(te), VARSIZE_ANY_EXHDR(tx)) == 0)
			return true;
	}
	return false;
}

/* Pushes a JSON array of the given text datums (only those flagged when 'pick'). */
static void
push_text_array(JsonbParseState **state, Datum *elems, int n, bool *pick)
{
	int			i;
	JsonbValue	v;

	pushJsonbValue(state, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < n; i++)
	{
		if (pick && !pick[i])
			continue;
		jv_text(&v, elems[i], false);
		pushJsonbValue(state, WJB_ELEM, &v);
	}
	pushJsonbValue(state, WJB_END_ARRAY, NULL);
}

/* Pushes a key. */
void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
}

/* The jsonb column 'att' of 'tup' as a JsonbValue (JSON null for SQL NULL or no tuple). */
void
jsonb_column_value(HeapTuple tup, int att, TupleDesc desc, JsonbValue *out)
{
	bool		isnull = true;
	Datum		d = tup ? heap_getattr(tup, att, desc, &isnull) : (Datum) 0;

	out->type = jbvNull;
	if (!isnull)
	{
		Jsonb	   *j = DatumGetJsonbP(d);

		out->type = jbvBinary;
		out->val.binary.data = &j->root;
		out->val.binary.len = VARSIZE(j) - VARHDRSZ;
	}
}

/* Pushes the change entries of custom_fields, key by key; returns how many. */
static int
custom_fields_entries(JsonbParseState **state, TupleDesc desc, HeapTuple oldtup,
					  HeapTuple newtup, int att)
{
	JsonbValue	ov,
				nv;
	StringInfoData path;

	jsonb_column_value(oldtup, att, desc, &ov);
	jsonb_column_value(newtup, att, desc, &nv);
	initStringInfo(&path);
	appendStringInfoString(&path, "custom_fields");
	return diff_push(state, &path, &ov, &nv);
}

/* Pushes the "tags" entry (old, new, added, removed) when tags were added or removed. */
static int
tags_entry(JsonbParseState **state, WriteChanges *wc, bool is_update)
{
	JsonbValue	null = {.type = jbvNull};

	if (wc->nadded == 0 && wc->nremoved == 0)
		return 0;
	push_key(state, "tags");
	pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
	push_key(state, "old");
	if (is_update)
		push_text_array(state, wc->otags, wc->onum, NULL);
	else
		pushJsonbValue(state, WJB_VALUE, &null);
	push_key(state, "new");
	push_text_array(state, wc->ntags, wc->nnum, NULL);
	push_key(state, "added");
	push_text_array(state, wc->ntags, wc->nnum, wc->added);
	push_key(state, "removed");
	push_text_array(state, wc->otags, wc->onum, wc->removed);
	pushJsonbValue(state, WJB_END_OBJECT, NULL);
	return 1;
}

/*
 * The change set of a write from 'oldtup' (NULL = insert) to 'newtup', with
 * the tags it added and removed, into *wc; false when nothing tracked changed.
 */
bool
write_changes(TupleDesc desc, const ContactAttrs *a, HeapTuple oldtup,
			  HeapTuple newtup, WriteChanges *wc)
{
	JsonbParseState *state = NULL;
	JsonbValue *res;
	int			n = 0,
				i;

	memset(wc, 0, sizeof(*wc));
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	n += column_entry(&state, "email", desc, oldtup, newtup, a->email, 't');
	n += column_entry(&state, "external_id", desc, oldtup, newtup, a->external_id, 't');
	n += column_entry(&state, "first_name", desc, oldtup, newtup, a->first_name, 't');
	n += column_entry(&state, "last_name", desc, oldtup, newtup, a->last_name, 't');
	n += column_entry(&state, "subscribed", desc, oldtup, newtup, a->subscribed, 'b');
	n += column_entry(&state, "unsubscribe_reason", desc, oldtup, newtup, a->unsubscribe_reason, 't');
	n += column_entry(&state, "bounced_at", desc, oldtup, newtup, a->bounced_at, 'T');
	n += column_entry(&state, "complained_at", desc, oldtup, newtup, a->complained_at, 'T');
	if (column_changed(desc, oldtup, newtup, a->custom_fields))
		n += custom_fields_entries(&state, desc, oldtup, newtup, a->custom_fields);

	tags_of(desc, oldtup, a->tags, &wc->otags, &wc->onum);
	tags_of(desc, newtup, a->tags, &wc->ntags, &wc->nnum);
	wc->added = palloc0(sizeof(bool) * (wc->nnum + 1));
	wc->removed = palloc0(sizeof(bool) * (wc->onum + 1));
	for (i = 0; i < wc->nnum; i++)
		if (!text_in(wc->ntags[i], wc->otags, wc->onum))
			wc->added[i] = true, wc->nadded++;
	for (i = 0; i < wc->onum; i++)
		if (!text_in(wc->otags[i], wc->ntags, wc->nnum))
			wc->removed[i] = true, wc->nremoved++;
	n += tags_entry(&state, wc, oldtup != NULL);
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	if (n == 0)
		return false;
	wc->changes = JsonbValueToJsonb(res);
	return true;
}

/* Fires the automations of a write: contact_created or contact_updated, then each tag added and removed. */
void
write_fire(int64 id, bool is_update, const WriteChanges *wc)
{
	int			i;

	automation_fire(is_update ? MEISA_TRIGGER_CONTACT_UPDATED : MEISA_TRIGGER_CONTACT_CREATED,
					id, NULL, wc->changes, NULL);
	for (i = 0; i < wc->nnum; i++)
		if (wc->added[i])
			automation_fire(MEISA_TRIGGER_TAG_ADDED, id, TextDatumGetCString(wc->ntags[i]),
							wc->changes, NULL);
	for (i = 0; i < wc->onum; i++)
		if (wc->removed[i])
			automation_fire(MEISA_TRIGGER_TAG_REMOVED, id, TextDatumGetCString(wc->otags[i]),
							wc->changes, NULL);
}

/* Hands the change set of a write to the function that caused it (contact_write_capture). */
void
write_capture(int64 id, bool is_update, Jsonb *changes)
{
	MemoryContext old;

	if (contact_write_capture == NULL || contact_write_capture->filled ||
		!(contact_write_capture->contact_id == id ||
		  (contact_write_capture->contact_id == 0 && !is_update)))
		return;
	old = MemoryContextSwitchTo(contact_write_capture->cxt);
	contact_write_capture->changes = palloc(VARSIZE(changes));
	memcpy(contact_write_capture->changes, changes, VARSIZE(changes));
	contact_write_capture->contact_id = id;
	contact_write_capture->filled = true;
	MemoryContextSwitchTo(old);
}

/* Inserts activity rows (kinds[i], details[i]) of a contact, in order, in one statement (SPI connected). */
void
write_activity(int64 id, int n, Datum *kinds, Datum *details)
{
	static SPIPlanPtr many_plan = NULL;
	Datum		args[3];

	args[0] = Int64GetDatum(id);
	if (n == 1)
	{
		if (activity_plan == NULL)
		{
			Oid			types[3] = {INT8OID, TEXTOID, JSONBOID};

			activity_plan = spi_keep_plan("INSERT INTO meisa.activity (contact_id, kind, detail) "
										  "VALUES ($1, $2, $3)", 3, types);
		}
		args[1] = kinds[0];
		args[2] = details[0];
		if (SPI_execute_plan(activity_plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "meisa: could not record contact activity");
		return;
	}
	if (many_plan == NULL)
	{
		Oid			types[3] = {INT8OID, TEXTARRAYOID, JSONBARRAYOID};

		many_plan = spi_keep_plan("INSERT INTO meisa.activity (contact_id, kind, detail) "
								  "SELECT $1, u.k, u.d FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3)) AS u(k, d)",
								  3, types);
	}
	args[1] = PointerGetDatum(construct_array(kinds, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_array(details, n, JSONBOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_plan(many_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "meisa: could not record contact activity");
}

/* creation_stored()'s answer, and whether it is still good. */
static bool stored_known = false;
static bool stored = false;

/* Forgets creation_stored()'s answer: an update of the extension replaces views. */
static void
forget_creation_stored(Datum arg pg_attribute_unused(), Oid relid pg_attribute_unused())
{
	stored_known = false;
}

/*
 * True when the installed schema stores a creation as an activity row: the
 * versions before 1.3, whose meisa.contact_activity reads it from there (the
 * library of 1.3 under a 1.2 schema not yet updated).  Looked up again after
 * any relcache invalidation (ALTER EXTENSION UPDATE replaces the views).
 */
bool
creation_stored(void)
{
	static bool registered = false;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (!registered)
	{
		CacheRegisterRelcacheCallback(forget_creation_stored, (Datum) 0);
		registered = true;
	}
	if (stored_known)
		return stored;
	stored = false;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("meisa"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);
		char	   *v = isnull ? "" : TextDatumGetCString(d);

		stored = strcmp(v, "1.0") == 0 || strcmp(v, "1.1") == 0 || strcmp(v, "1.2") == 0;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	stored_known = true;
	return stored;
}
