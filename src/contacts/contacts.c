/*
 * contacts.c
 *		Contacts: meisa_upsert (the application's sync call), the identity
 *		lookups (the one place that finds a contact by email or external_id,
 *		so they can later move to identity tables), contact creation with
 *		retry on concurrent inserts, the contact as JSON data and whether a
 *		contact id exists.
 *
 *		meisa_upsert reads the contact without locking and compares the
 *		payload with it in memory; a payload that changes nothing returns
 *		without writing.  A change is written with an UPDATE guarded by the
 *		row version read (xmin), so a concurrent write makes it re-read and
 *		re-merge instead of losing either change; a new contact is inserted
 *		with ON CONFLICT DO NOTHING and, when another session won the race,
 *		updated instead.  The change set reported back is the one the
 *		contacts trigger computed for the write.
 *
 *		Under READ COMMITTED the lookup by external_id and the lookup by
 *		email are two statements with a snapshot each: a conflict they seem
 *		to show is checked in one snapshot before it is reported.  An UPDATE
 *		that gives the contact a new email or external_id runs in a
 *		subtransaction: a concurrent insert of that key makes it fail with
 *		the unique index's error, which is caught so that the payload is
 *		resolved again.  contact_resolve (events) locks the contact it finds
 *		FOR KEY SHARE, so it cannot vanish before the caller's row for it.
 */
#include "contacts/contacts.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(meisa_upsert);
PG_FUNCTION_INFO_V1(meisa_normalize_email);
PG_FUNCTION_INFO_V1(meisa_normalize_tag);
PG_FUNCTION_INFO_V1(meisa_contact_data);

/* Attempts of the read-merge-write loop before giving up. */
#define UPSERT_MAX_ATTEMPTS 20

#define UPSERT_KEYS "email, external_id, first_name, last_name, custom_fields, tag_names, subscribed, topics"

ContactWriteCapture *contact_write_capture = NULL;

/* Saved plans (prepared on first use, kept for the backend's life). */
static SPIPlanPtr plan_by_email = NULL;
static SPIPlanPtr plan_by_external_id = NULL;
static SPIPlanPtr plan_by_email_locked = NULL;
static SPIPlanPtr plan_by_external_id_locked = NULL;
static SPIPlanPtr plan_by_either = NULL;
static SPIPlanPtr plan_insert = NULL;
static SPIPlanPtr plan_update = NULL;
static SPIPlanPtr plan_data = NULL;

/* A parsed and validated meisa_upsert payload. */
typedef struct UpsertPayload
{
	char	   *email;			/* normalised, NULL when absent */
	char	   *external_id;	/* NULL when absent or null */
	bool		has_first_name;
	char	   *first_name;		/* NULL = JSON null */
	bool		has_last_name;
	char	   *last_name;
	JsonbContainer *custom_fields;	/* NULL when absent */
	char	  **tags;			/* normalised, sorted, unique */
	int			ntags;
	bool		has_subscribed;
	bool		subscribed;
	JsonbContainer *topics;		/* {"topic": boolean}, NULL when absent */
} UpsertPayload;

/* Defines the contact settings. */
void
contacts_init(void)
{
	payload_define_limits();
}

#define CONTACT_COLUMNS "id, xmin, email, external_id, first_name, last_name, custom_fields, tags, subscribed"

/* Prepares the identity and write plans on first use. */
static void
prepare_plans(void)
{
	if (plan_by_email == NULL)
	{
		Oid			t[1] = {TEXTOID};

		plan_by_email = spi_keep_plan("SELECT " CONTACT_COLUMNS " FROM meisa.contacts WHERE email OPERATOR(pg_catalog.=) $1", 1, t);
	}
	if (plan_by_external_id == NULL)
	{
		Oid			t[1] = {TEXTOID};

		plan_by_external_id = spi_keep_plan("SELECT " CONTACT_COLUMNS " FROM meisa.contacts WHERE external_id OPERATOR(pg_catalog.=) $1", 1, t);
	}
	if (plan_by_email_locked == NULL)
	{
		Oid			t[1] = {TEXTOID};

		plan_by_email_locked = spi_keep_plan("SELECT " CONTACT_COLUMNS " FROM meisa.contacts WHERE email OPERATOR(pg_catalog.=) $1 "
											 "FOR KEY SHARE", 1, t);
	}
	if (plan_by_external_id_locked == NULL)
	{
		Oid			t[1] = {TEXTOID};

		plan_by_external_id_locked = spi_keep_plan("SELECT " CONTACT_COLUMNS " FROM meisa.contacts WHERE external_id OPERATOR(pg_catalog.=) $1 "
												   "FOR KEY SHARE", 1, t);
	}
	if (plan_by_either == NULL)
	{
		Oid			t[2] = {TEXTOID, TEXTOID};

		plan_by_either = spi_keep_plan("SELECT id, email, external_id FROM meisa.contacts "
									   "WHERE external_id OPERATOR(pg_catalog.=) $1 OR email OPERATOR(pg_catalog.=) $2", 2, t);
	}
	if (plan_insert == NULL)
	{
		Oid			t[7] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTARRAYOID, BOOLOID};

		plan_insert = spi_keep_plan("INSERT INTO meisa.contacts (email, external_id, first_name, last_name, "
									"custom_fields, tags, subscribed) VALUES ($1, $2, $3, $4, $5, $6, $7) "
									"ON CONFLICT DO NOTHING RETURNING id", 7, t);
	}
	if (plan_update == NULL)
	{
		Oid			t[9] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTARRAYOID, BOOLOID, XIDOID};

		plan_update = spi_keep_plan("UPDATE meisa.contacts SET email = $2, external_id = $3, first_name = $4, "
									"last_name = $5, custom_fields = $6, tags = $7, subscribed = $8 "
									"WHERE id OPERATOR(pg_catalog.=) $1 AND xmin OPERATOR(pg_catalog.=) $9", 9, t);
	}
}

/* Runs an identity lookup plan; fills 'row' and returns true when found. */
static bool
contact_find(SPIPlanPtr plan, const char *key, ContactRow *row)
{
	Datum		arg = CStringGetTextDatum(key);
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	if (SPI_execute_plan(plan, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: contact lookup failed");
	if (SPI_processed == 0)
		return false;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	row->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	row->xmin = DatumGetTransactionId(SPI_getbinval(tup, desc, 2, &isnull));
	row->email = spi_get_text(tup, desc, 3);
	row->external_id = spi_get_text(tup, desc, 4);
	row->first_name = spi_get_text(tup, desc, 5);
	row->last_name = spi_get_text(tup, desc, 6);
	row->custom_fields = DatumGetJsonbP(SPI_getbinval(tup, desc, 7, &isnull));
	row->tags = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 8, &isnull));
	row->subscribed = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
	return true;
}

/* True when two nullable C strings are equal. */
static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* A nullable C string as a text datum for a plan argument. */
static Datum
text_arg(const char *s, char *nulls, int i)
{
	nulls[i] = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* ERROR 23505: the email belongs to a contact with another external_id. */
static void
identity_conflict(const char *email, const char *their_ext, const char *given_ext)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("email \"%s\" belongs to a contact with a different external_id", email),
			 errdetail("The contact with that email has external_id \"%s\"; the payload gives \"%s\".",
					   their_ext, given_ext),
			 errhint("meisa never merges two contacts; change or remove one of them first.")));
}

/* ERROR 23505: the email belongs to another contact than the one with the external_id. */
static void
email_taken_conflict(const char *email, const char *external_id, int64 other_id, bool email_change)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("email \"%s\" belongs to another contact", email),
			 email_change ?
			 errdetail("The contact with external_id \"%s\" cannot take the email of contact %lld.",
					   external_id, (long long) other_id) :
			 errdetail("The contact with external_id \"%s\" has a different email.", external_id),
			 errhint("meisa never merges two contacts; change or remove one of them first.")));
}

/*
 * Checks in one snapshot an identity conflict that the lookups by
 * external_id and by email, each a statement with its own snapshot under
 * READ COMMITTED, seemed to show: a write committed between them (the
 * contact took the email, or the external_id moved to the contact with the
 * email) must not pass for a conflict.  ERROR 23505 when the conflict holds
 * in this snapshot; returns when it does not (the caller resolves again).
 * 'email_change': the payload would change the email of the contact with
 * the external_id (meisa_upsert), for the wording of the error.
 */
static void
identity_check_conflict(const char *email, const char *external_id, bool email_change)
{
	Datum		args[2];
	char		nulls[2];
	int64		by_ext = 0,
				by_email = 0;
	char	   *their_ext = NULL;
	uint64		i;

	args[0] = text_arg(external_id, nulls, 0);
	args[1] = text_arg(email, nulls, 1);
	if (SPI_execute_plan(plan_by_either, args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "meisa: contact lookup failed");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *row_email = spi_get_text(tup, desc, 2);
		char	   *row_ext = spi_get_text(tup, desc, 3);

		if (external_id && str_eq(row_ext, external_id))
			by_ext = id;
		if (str_eq(row_email, email))
		{
			by_email = id;
			their_ext = row_ext;
		}
	}
	if (by_ext != 0 && by_email != 0 && by_ext != by_email)
		email_taken_conflict(email, external_id, by_email, email_change);
	if (by_ext == 0 && by_email != 0 && external_id && their_ext &&
		strcmp(their_ext, external_id) != 0)
		identity_conflict(email, their_ext, external_id);
}

/*
 * ERROR 23505 when an insert that did nothing (ON CONFLICT) is followed by a
 * re-read that finds no contact with that email or external_id: the conflict
 * was on the id, i.e. the identity sequence is behind rows inserted with
 * explicit ids (a plain-SQL import).  Retrying would only burn ids, and
 * "concurrent writes" would send the caller the wrong way.
 */
static void
id_conflict(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("could not create the contact: the id drawn for it is already taken"),
			 errdetail("The identity sequence of meisa.contacts is behind the ids in the table "
					   "(rows inserted with explicit ids?)."),
			 errhint("Run SELECT setval(pg_get_serial_sequence('meisa.contacts', 'id'), max(id)) FROM meisa.contacts;")));
}

/*
 * Inserts a contact; returns its id, or 0 when a concurrent insert of the
 * same email or external_id won (the caller re-reads).  'cap' (may be
 * NULL) receives the change set.
 */
static int64
contact_insert(Datum *args, char *nulls, ContactWriteCapture *cap)
{
	ContactWriteCapture *saved = contact_write_capture;
	int			ret;
	bool		isnull;

	contact_write_capture = cap;
	PG_TRY();
	{
		ret = SPI_execute_plan(plan_insert, args, nulls, false, 0);
	}
	PG_FINALLY();
	{
		contact_write_capture = saved;
	}
	PG_END_TRY();
	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "meisa: contact insert failed");
	if (SPI_processed == 0)
		return 0;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* An empty text[] datum. */
static Datum
empty_tags(void)
{
	return PointerGetDatum(construct_empty_array(TEXTOID));
}

/* An empty JSON object datum. */
static Datum
empty_object(void)
{
	JsonbParseState *st = NULL;
	JsonbValue *v;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	v = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(v));
}

/* What contact_identify found. */
typedef enum IdentityResult
{
	IDENTITY_NONE,				/* no contact: create one */
	IDENTITY_FOUND,				/* the payload's contact is in 'row' */
	IDENTITY_AGAIN				/* a concurrent write moved a key: look again */
} IdentityResult;

/*
 * The identity decision of every write (SPI connected): the contact of an
 * email and/or external_id, by external_id first, then by email.  An
 * apparent conflict is checked in one snapshot (the two lookups have one
 * each): ERROR 23505 when it holds, IDENTITY_AGAIN when a concurrent write
 * explains it.  'lock': the contact found is locked FOR KEY SHARE;
 * 'email_change': the write would give the contact with the external_id
 * this email (for the wording of the error).
 */
static IdentityResult
contact_identify(const char *email, const char *external_id, bool lock,
				 bool email_change, ContactRow *row)
{
	if (external_id &&
		contact_find(lock ? plan_by_external_id_locked : plan_by_external_id,
					 external_id, row))
	{
		ContactRow	other;

		if (email && strcmp(email, row->email) != 0 &&
			contact_find(plan_by_email, email, &other))
		{
			/* the same contact: it took the email since the first lookup */
			if (other.id != row->id)
				identity_check_conflict(email, external_id, email_change);
			return IDENTITY_AGAIN;
		}
		return IDENTITY_FOUND;
	}
	if (email && contact_find(lock ? plan_by_email_locked : plan_by_email, email, row))
	{
		if (external_id && row->external_id && strcmp(row->external_id, external_id) != 0)
		{
			identity_check_conflict(email, external_id, email_change);
			return IDENTITY_AGAIN;
		}
		return IDENTITY_FOUND;
	}
	return IDENTITY_NONE;
}

/*
 * The contact of an event or API call, by external_id then email; creates it
 * from the email when unknown and 'create' (sets *created).  SPI connected.
 * The contact found is locked FOR KEY SHARE (the lock the foreign key of a
 * row written for it takes anyway): it cannot be deleted, nor its email or
 * external_id changed, before the caller's transaction ends; a lookup that
 * waited for a concurrent write reads the contact's new version.
 */
int64
contact_resolve(const char *email, const char *external_id, bool create, bool *created)
{
	int			attempt;
	ContactRow	row;
	bool		lost_insert = false;

	*created = false;
	prepare_plans();
	for (attempt = 0; attempt < UPSERT_MAX_ATTEMPTS; attempt++)
	{
		Datum		args[7];
		char		nulls[7];
		int64		id;

		switch (contact_identify(email, external_id, true, false, &row))
		{
			case IDENTITY_FOUND:
				return row.id;
			case IDENTITY_AGAIN:
				lost_insert = false;
				continue;
			case IDENTITY_NONE:
				break;
		}
		if (lost_insert)
			id_conflict();
		if (!create || email == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NO_DATA_FOUND),
					 email ? errmsg("no contact has email \"%s\"", email)
					 : errmsg("no contact has external_id \"%s\"", external_id),
					 create ? errhint("Give the contact's email to create it.") : 0));
		args[0] = text_arg(email, nulls, 0);
		args[1] = text_arg(external_id, nulls, 1);
		args[2] = text_arg(NULL, nulls, 2);
		args[3] = text_arg(NULL, nulls, 3);
		args[4] = empty_object();
		nulls[4] = ' ';
		args[5] = empty_tags();
		nulls[5] = ' ';
		args[6] = BoolGetDatum(true);
		nulls[6] = ' ';
		id = contact_insert(args, nulls, NULL);
		if (id != 0)
		{
			*created = true;
			return id;
		}
		lost_insert = true;
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not resolve the contact because of concurrent writes")));
	return 0;
}

/* A first_name/last_name value: string (may be empty) or JSON null (= NULL). */
static char *
payload_name(JsonbValue *v, const char *field)
{
	if (v->type == jbvNull)
		return NULL;
	if (v->type == jbvString && v->val.string.len == 0)
		return pstrdup("");
	return payload_short_text(v, field, false);
}

/* Parses and validates a meisa_upsert payload. */
static void
parse_upsert_payload(Jsonb *payload, UpsertPayload *p)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;

	memset(p, 0, sizeof(*p));
	payload_check_size(payload, "meisa_upsert payload");
	payload_check_object(payload, "meisa_upsert payload");
	it = JsonbIteratorInit(&payload->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		const char *key;
		int			len;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		key = k.val.string.val;
		len = k.val.string.len;
#define KEY_IS(s) (len == (int) strlen(s) && memcmp(key, s, len) == 0)
		if (KEY_IS("email"))
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("field \"email\" must be a string, not %s", payload_type_name(&v))));
			p->email = email_normalize(v.val.string.val, v.val.string.len, "email");
		}
		else if (KEY_IS("external_id"))
		{
			if (v.type != jbvNull)
				p->external_id = payload_short_text(&v, "external_id", true);
		}
		else if (KEY_IS("first_name"))
		{
			p->has_first_name = true;
			p->first_name = payload_name(&v, "first_name");
		}
		else if (KEY_IS("last_name"))
		{
			p->has_last_name = true;
			p->last_name = payload_name(&v, "last_name");
		}
		else if (KEY_IS("custom_fields"))
		{
			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("field \"custom_fields\" must be an object, not %s", payload_type_name(&v))));
			custom_fields_check(v.val.binary.data, true, "custom_fields");
			p->custom_fields = v.val.binary.data;
		}
		else if (KEY_IS("tag_names"))
		{
			JsonbIterator *ti;
			JsonbValue	e;
			int			n;

			if (v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("field \"tag_names\" must be an array, not %s", payload_type_name(&v))));
			/* the limit applies to the contact's tags, counted after de-duplication */
			n = JsonContainerSize(v.val.binary.data);
			p->tags = palloc(sizeof(char *) * (n + 1));
			ti = JsonbIteratorInit(v.val.binary.data);
			while ((tok = JsonbIteratorNext(&ti, &e, true)) != WJB_DONE)
			{
				if (tok != WJB_ELEM)
					continue;
				if (e.type != jbvString)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("field \"tag_names\" must hold only strings, not %s",
									payload_type_name(&e))));
				p->tags[p->ntags++] = tag_normalize(e.val.string.val, e.val.string.len, "tag_names");
			}
			p->ntags = tags_sort_unique(p->tags, p->ntags);
			tags_check_count(p->ntags, "tag_names");
		}
		else if (KEY_IS("subscribed"))
		{
			if (v.type != jbvBool)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("field \"subscribed\" must be a boolean, not %s", payload_type_name(&v))));
			p->has_subscribed = true;
			p->subscribed = v.val.boolean;
		}
		else if (KEY_IS("topics"))
			p->topics = payload_topics(&v);
		else
			payload_unknown_key(key, len, UPSERT_KEYS);
#undef KEY_IS
	}
}

/* Sets the contact's topic choices of the payload's "topics" (meisa.topic_set each). */
static void
upsert_apply_topics(int64 contact_id, JsonbContainer *topics)
{
	static SPIPlanPtr plan = NULL;
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;

	if (topics == NULL)
		return;
	if (plan == NULL)
	{
		Oid			types[3] = {INT8OID, TEXTOID, BOOLOID};

		plan = spi_keep_plan("SELECT meisa.topic_set($1, $2, $3)", 3, types);
	}
	it = JsonbIteratorInit(topics);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		Datum		values[3];

		if (tok != WJB_KEY)
			continue;
		JsonbIteratorNext(&it, &v, true);
		values[0] = Int64GetDatum(contact_id);
		values[1] = PointerGetDatum(cstring_to_text_with_len(k.val.string.val, k.val.string.len));
		values[2] = BoolGetDatum(v.val.boolean);
		if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "meisa: could not set a topic of the contact");
	}
}

/* Pushes every non-null pair of 'given' that is not skipped. */
static void
push_given_fields(JsonbParseState **st, JsonbContainer *given)
{
	JsonbIterator *it = JsonbIteratorInit(given);
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		JsonbIteratorNext(&it, &v, true);
		if (v.type == jbvNull)
			continue;
		pushJsonbValue(st, WJB_KEY, &k);
		pushJsonbValue(st, WJB_VALUE, &v);
	}
}

/* Builds a custom_fields object from a pushed state; ERROR when over the field limit. */
static Jsonb *
finish_fields(JsonbParseState **st)
{
	JsonbValue *res = pushJsonbValue(st, WJB_END_OBJECT, NULL);

	if (res->val.object.nPairs > meisa_max_custom_fields)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many custom fields in field \"custom_fields\""),
				 errdetail("The contact would have %d custom fields; meisa.max_custom_fields allows %d.",
						   res->val.object.nPairs, meisa_max_custom_fields)));
	return JsonbValueToJsonb(res);
}

/*
 * custom_fields after merging 'given' into 'old' (null removes a key), or
 * NULL when the merge changes nothing.
 */
static Jsonb *
merge_custom_fields(Jsonb *old, JsonbContainer *given)
{
	JsonbIterator *it = JsonbIteratorInit(given);
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	bool		changed = false;
	JsonbParseState *st = NULL;

	while (!changed && (tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue *ov;

		if (tok != WJB_KEY)
			continue;
		JsonbIteratorNext(&it, &v, true);
		ov = getKeyJsonValueFromContainer(&old->root, k.val.string.val, k.val.string.len, NULL);
		if (v.type == jbvNull)
			changed = (ov != NULL);
		else
			changed = (ov == NULL || !diff_values_equal(ov, &v));
	}
	if (!changed)
		return NULL;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(&old->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		JsonbIteratorNext(&it, &v, true);
		if (getKeyJsonValueFromContainer(given, k.val.string.val, k.val.string.len, NULL) != NULL)
			continue;
		pushJsonbValue(&st, WJB_KEY, &k);
		pushJsonbValue(&st, WJB_VALUE, &v);
	}
	push_given_fields(&st, given);
	return finish_fields(&st);
}

/* A text[] datum of C strings. */
static Datum
tags_datum(char **tags, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * (n + 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(tags[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* The contact's tags with the given ones added, or NULL when none is new. */
static Datum
merge_tags(ArrayType *old, char **add, int nadd, bool *changed)
{
	Datum	   *elems;
	int			n,
				i,
				j,
				total;
	char	  **all;

	*changed = false;
	deconstruct_array(old, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &n);
	all = palloc(sizeof(char *) * (n + nadd + 1));
	for (i = 0; i < n; i++)
		all[i] = TextDatumGetCString(elems[i]);
	total = n;
	for (j = 0; j < nadd; j++)
	{
		bool		found = false;

		for (i = 0; i < n && !found; i++)
			found = strcmp(all[i], add[j]) == 0;
		if (!found)
			all[total++] = add[j];
	}
	if (total == n)
		return (Datum) 0;
	*changed = true;
	total = tags_sort_unique(all, total);
	tags_check_count(total, "tag_names");
	return tags_datum(all, total);
}

/* Runs the guarded UPDATE; true when the row version read was the one updated. */
static bool
contact_update(Datum *args, char *nulls, ContactWriteCapture *cap)
{
	ContactWriteCapture *saved = contact_write_capture;
	int			ret;

	contact_write_capture = cap;
	PG_TRY();
	{
		ret = SPI_execute_plan(plan_update, args, nulls, false, 0);
	}
	PG_FINALLY();
	{
		contact_write_capture = saved;
	}
	PG_END_TRY();
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "meisa: contact update failed");
	return SPI_processed == 1;
}

/* What update_key_step runs, and what it leaves. */
typedef struct KeyUpdate
{
	Datum	   *args;
	char	   *nulls;
	ContactWriteCapture *cap;
	bool		updated;
} KeyUpdate;

/* contact_update as a spi_run_step step. */
static void
update_key_step(void *arg)
{
	KeyUpdate  *u = (KeyUpdate *) arg;

	u->updated = contact_update(u->args, u->nulls, u->cap);
}

/*
 * contact_update of a write that gives the contact a new email or
 * external_id, in a subtransaction: when a concurrent transaction inserted
 * that key and committed after the lookups (the index check waits for it),
 * the UPDATE fails with 23505 on contacts_email_key or
 * contacts_external_id_key; that error is caught and false returned (the
 * caller resolves the payload again, and answers with the identity rules).
 * Any other error is re-thrown.  Only key changes pay for the
 * subtransaction.
 */
static bool
contact_update_key(Datum *args, char *nulls, ContactWriteCapture *cap)
{
	KeyUpdate	u = {args, nulls, cap, false};
	ErrorData  *edata = spi_run_step(update_key_step, NULL, &u);

	if (edata == NULL)
		return u.updated;
	if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION || edata->constraint_name == NULL ||
		edata->table_name == NULL || strcmp(edata->table_name, "contacts") != 0 ||
		(strcmp(edata->constraint_name, "contacts_email_key") != 0 &&
		 strcmp(edata->constraint_name, "contacts_external_id_key") != 0))
		ReThrowError(edata);
	FreeErrorData(edata);
	return false;
}

/* qsort comparator of C strings. */
static int
cstring_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The result {"id","created","changed"}, with the change set's paths sorted. */
static Jsonb *
upsert_result(int64 id, bool created, Jsonb *changes)
{
	JsonbParseState *st = NULL;
	JsonbValue	k,
				v;
	char	  **paths = NULL;
	int			npaths = 0,
				i;

	if (changes != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&changes->root);
		JsonbIteratorToken tok;

		paths = palloc(sizeof(char *) * (JsonContainerSize(&changes->root) + 1));
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
			if (tok == WJB_KEY)
				paths[npaths++] = pnstrdup(k.val.string.val, k.val.string.len);
		qsort(paths, npaths, sizeof(char *), cstring_cmp);
	}

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "id";
	k.val.string.len = 2;
	pushJsonbValue(&st, WJB_KEY, &k);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(id);
	pushJsonbValue(&st, WJB_VALUE, &v);
	k.val.string.val = "created";
	k.val.string.len = 7;
	pushJsonbValue(&st, WJB_KEY, &k);
	v.type = jbvBool;
	v.val.boolean = created;
	pushJsonbValue(&st, WJB_VALUE, &v);
	k.val.string.val = "changed";
	k.val.string.len = 7;
	pushJsonbValue(&st, WJB_KEY, &k);
	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < npaths; i++)
	{
		v.type = jbvString;
		v.val.string.val = paths[i];
		v.val.string.len = strlen(paths[i]);
		pushJsonbValue(&st, WJB_ELEM, &v);
	}
	pushJsonbValue(&st, WJB_END_ARRAY, NULL);
	return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
}

/*
 * Inserts the contact of an upsert payload that found none (SPI connected);
 * its id, or 0 when a concurrent insert of its email or external_id won.
 */
static int64
upsert_insert(const UpsertPayload *p, ContactWriteCapture *cap)
{
	Datum		args[7];
	char		nulls[7];

	if (p->email == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"email\" is required"),
				 p->external_id ? errdetail("No contact has external_id \"%s\".", p->external_id)
				 : errdetail("The payload has neither an email nor an external_id.")));
	args[0] = text_arg(p->email, nulls, 0);
	args[1] = text_arg(p->external_id, nulls, 1);
	args[2] = text_arg(p->first_name, nulls, 2);
	args[3] = text_arg(p->last_name, nulls, 3);
	nulls[4] = nulls[5] = nulls[6] = ' ';
	if (p->custom_fields)
	{
		JsonbParseState *st = NULL;

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		push_given_fields(&st, p->custom_fields);
		args[4] = JsonbPGetDatum(finish_fields(&st));
	}
	else
		args[4] = empty_object();
	tags_check_count(p->ntags, "tag_names");
	args[5] = tags_datum(p->tags, p->ntags);
	args[6] = BoolGetDatum(p->has_subscribed ? p->subscribed : true);
	return contact_insert(args, nulls, cap);
}

/*
 * meisa_upsert(payload jsonb) returns jsonb: creates or updates the contact
 * the payload identifies; returns {"id", "created", "changed"}.
 */
Datum
meisa_upsert(PG_FUNCTION_ARGS)
{
	Jsonb	   *payload;
	UpsertPayload p;
	MemoryContext callercxt = CurrentMemoryContext;
	ContactWriteCapture cap;
	Jsonb	   *result = NULL;
	int			attempt;
	bool		lost_insert = false;
	int64		result_id = 0;
	MemoryContext spicxt;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meisa_upsert payload must be a JSON object, not SQL NULL")));
	payload = PG_GETARG_JSONB_P(0);
	parse_upsert_payload(payload, &p);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	spicxt = CurrentMemoryContext;
	prepare_plans();

	for (attempt = 0; attempt < UPSERT_MAX_ATTEMPTS && result == NULL; attempt++)
	{
		ContactRow	row;
		IdentityResult ident;
		Datum		args[9];
		char		nulls[9];
		bool		changed = false;
		bool		key_changed = false;	/* email or external_id */
		Jsonb	   *fields = NULL;

		memset(&cap, 0, sizeof(cap));
		cap.cxt = callercxt;

		ident = contact_identify(p.email, p.external_id, false, true, &row);
		if (ident != IDENTITY_NONE)
			lost_insert = false;	/* the insert race was a real one */
		if (ident == IDENTITY_AGAIN)
			continue;
		if (ident == IDENTITY_NONE)
		{
			int64		id;

			if (lost_insert)
				id_conflict();
			id = upsert_insert(&p, &cap);
			if (id == 0)
			{
				lost_insert = true;
				continue;		/* lost an insert race: re-read and update */
			}
			result_id = id;
			MemoryContextSwitchTo(callercxt);
			result = upsert_result(id, true, cap.filled ? cap.changes : NULL);
			MemoryContextSwitchTo(spicxt);
			break;
		}

		/* merge the payload into the contact read */
		args[0] = Int64GetDatum(row.id);
		nulls[0] = ' ';
		if (p.email && strcmp(p.email, row.email) != 0)
			changed = key_changed = true;
		args[1] = text_arg(p.email ? p.email : row.email, nulls, 1);
		if (p.external_id && !str_eq(p.external_id, row.external_id))
			changed = key_changed = true;
		args[2] = text_arg(p.external_id ? p.external_id : row.external_id, nulls, 2);
		if (p.has_first_name && !str_eq(p.first_name, row.first_name))
			changed = true;
		args[3] = text_arg(p.has_first_name ? p.first_name : row.first_name, nulls, 3);
		if (p.has_last_name && !str_eq(p.last_name, row.last_name))
			changed = true;
		args[4] = text_arg(p.has_last_name ? p.last_name : row.last_name, nulls, 4);
		if (p.custom_fields)
			fields = merge_custom_fields(row.custom_fields, p.custom_fields);
		if (fields)
			changed = true;
		args[5] = JsonbPGetDatum(fields ? fields : row.custom_fields);
		nulls[5] = ' ';
		args[6] = PointerGetDatum(row.tags);
		if (p.ntags > 0)
		{
			bool		tags_changed;
			Datum		t = merge_tags(row.tags, p.tags, p.ntags, &tags_changed);

			if (tags_changed)
			{
				args[6] = t;
				changed = true;
			}
		}
		nulls[6] = ' ';
		if (p.has_subscribed && p.subscribed != row.subscribed)
			changed = true;
		args[7] = BoolGetDatum(p.has_subscribed ? p.subscribed : row.subscribed);
		nulls[7] = ' ';
		args[8] = TransactionIdGetDatum(row.xmin);
		nulls[8] = ' ';

		if (!changed)
		{
			/* the login case: nothing to write */
			result_id = row.id;
			MemoryContextSwitchTo(callercxt);
			result = upsert_result(row.id, false, NULL);
			MemoryContextSwitchTo(spicxt);
			break;
		}
		cap.contact_id = row.id;
		if (!(key_changed ? contact_update_key(args, nulls, &cap) : contact_update(args, nulls, &cap)))
			continue;			/* the row or a key changed since it was read: re-read */
		result_id = row.id;
		MemoryContextSwitchTo(callercxt);
		result = upsert_result(row.id, false, cap.filled ? cap.changes : NULL);
		MemoryContextSwitchTo(spicxt);
	}
	if (result == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not upsert the contact because of concurrent writes"),
				 errhint("Retry the call.")));
	upsert_apply_topics(result_id, p.topics);
	SPI_finish();
	PG_RETURN_JSONB_P(result);
}

/*
 * The contact as template and condition data:
 * {"id","email","external_id","first_name","last_name","custom_fields",
 *  "tags","subscribed","created_at","updated_at"}; NULL when no such contact.
 */
Jsonb *
contact_data_jsonb(int64 contact_id)
{
	Datum		arg = Int64GetDatum(contact_id);
	Jsonb	   *result = contact_cascade_data(contact_id);
	MemoryContext callercxt = CurrentMemoryContext;

	/* a contact whose write's automations run in memory: the row in memory */
	if (result != NULL)
		return result;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan_data == NULL)
	{
		Oid			t[1] = {INT8OID};

		plan_data = spi_keep_plan("SELECT c.* FROM meisa.contacts c WHERE c.id OPERATOR(pg_catalog.=) $1",
								  1, t);
	}
	if (SPI_execute_plan(plan_data, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: contact data lookup failed");
	if (SPI_processed > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(callercxt);

		contact_data_of_rows(SPI_tuptable, 1, CONTACT_DATA_ALL_KEYS, &result);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return result;
}

/*
 * True when a contact has this id.  The lookup runs as the owner of
 * meisa.contacts, so it answers alike for every caller: the app role may
 * build unsubscribe links but cannot read the table.
 */
bool
contact_exists(int64 contact_id)
{
	static SPIPlanPtr plan_exists = NULL;
	Oid			relid = get_relname_relid("contacts", get_namespace_oid("meisa", false));
	HeapTuple	tp;
	Oid			owner;
	Oid			save_userid;
	int			save_sec;
	Datum		arg = Int64GetDatum(contact_id);
	bool		found;

	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "meisa: table meisa.contacts does not exist");
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);

	/* an error on the way aborts the (sub)transaction, which restores the user */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan_exists == NULL)
	{
		Oid			t[1] = {INT8OID};

		plan_exists = spi_keep_plan("SELECT 1 FROM meisa.contacts WHERE id OPERATOR(pg_catalog.=) $1", 1, t);
	}
	if (SPI_execute_plan(plan_exists, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: contact lookup failed");
	found = SPI_processed > 0;
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
	return found;
}

/* The id of the contact with this email (folded by email_fold), or 0 (SPI connected). */
int64
contact_id_by_email(const char *email)
{
	static SPIPlanPtr plan = NULL;
	Datum		arg = CStringGetTextDatum(email_fold(email, strlen(email), NULL));
	int64		id = 0;

	if (plan == NULL)
	{
		Oid			t[1] = {TEXTOID};

		plan = spi_keep_plan("SELECT id FROM meisa.contacts WHERE email OPERATOR(pg_catalog.=) $1", 1, t);
	}
	if (SPI_execute_plan(plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: contact lookup failed");
	if (SPI_processed > 0)
		id = spi_get_int64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, 0);
	SPI_freetuptable(SPI_tuptable);
	return id;
}

/* meisa.contact_data(id bigint) returns jsonb: contact_data_jsonb for SQL. */
Datum
meisa_contact_data(PG_FUNCTION_ARGS)
{
	Jsonb	   *j = contact_data_jsonb(PG_GETARG_INT64(0));

	if (j == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(j);
}

/* meisa.normalize_email(text) returns text: the normalised address, or ERROR 22023. */
Datum
meisa_normalize_email(PG_FUNCTION_ARGS)
{
	text	   *t;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"email\" must not be null")));
	t = PG_GETARG_TEXT_PP(0);
	PG_RETURN_TEXT_P(cstring_to_text(email_normalize(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), "email")));
}

/* meisa.normalize_tag(text) returns text: the trimmed tag, or ERROR 22023/54000. */
Datum
meisa_normalize_tag(PG_FUNCTION_ARGS)
{
	text	   *t;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"tag\" must not be null")));
	t = PG_GETARG_TEXT_PP(0);
	PG_RETURN_TEXT_P(cstring_to_text(tag_normalize(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), "tag")));
}
