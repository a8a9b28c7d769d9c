/*
 * events.c
 *		meisa_track: records a custom event of a contact (found by external_id
 *		or email, created from the email when unknown) in meisa.events and
 *		fires the custom_event automations.  An event_id makes the call
 *		idempotent: a repeat returns the first event's id and does nothing
 *		else.
 */
#include "contacts/contacts.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(meisa_track);

#define TRACK_KEYS "email, external_id, properties, event_id, occurred_at"

static SPIPlanPtr plan_event_by_id = NULL;
static SPIPlanPtr plan_event_insert = NULL;

/* ERROR 22023 unless the event name matches ^[A-Za-z0-9_.:-]{1,100}$. */
static void
check_event_name(const char *name, int len)
{
	if (!event_name_valid(name, len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event name \"%s\"", payload_key_for_message(name, len)),
				 errdetail("Event names match ^[A-Za-z0-9_.:-]{1,100}$.")));
}

/* Number of ASCII digits at s[0..n) (all must be digits). */
static bool
digits(const char *s, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * True when 's' has the ISO 8601 shape YYYY-MM-DD[(T| )HH:MM[:SS[.f]][Z|+HH[:MM]]].
 */
static bool
iso8601_shape(const char *s)
{
	int			len = strlen(s);
	int			i;

	if (len < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2))
		return false;
	if (len == 10)
		return true;
	if ((s[10] != 'T' && s[10] != 't' && s[10] != ' ') || len < 16 ||
		!digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2))
		return false;
	i = 16;
	if (i < len && s[i] == ':')
	{
		if (i + 3 > len || !digits(s + i + 1, 2))
			return false;
		i += 3;
		if (i < len && s[i] == '.')
		{
			i++;
			if (i >= len || !digits(s + i, 1))
				return false;
			while (i < len && s[i] >= '0' && s[i] <= '9')
				i++;
		}
	}
	if (i == len)
		return true;
	if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len)
		return true;
	if (s[i] != '+' && s[i] != '-')
		return false;
	i++;
	if (i + 2 > len || !digits(s + i, 2))
		return false;
	i += 2;
	if (i == len)
		return true;
	if (s[i] == ':')
		i++;
	return i + 2 == len && digits(s + i, 2);
}

/* Parses occurred_at (ISO 8601 string) into a timestamptz; ERROR 22007/22008 naming the field. */
static TimestampTz
parse_occurred_at(JsonbValue *v)
{
	char	   *s = payload_string(v, "occurred_at");
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz ts = 0;
	char	   *problem = NULL;

	if (!iso8601_shape(s))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
				 errmsg("field \"occurred_at\" must be an ISO 8601 timestamp"),
				 errdetail("Expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.fff]][Z|+HH:MM].")));
	/* the date/time parser holds no resources: its error is replaced by ours */
	PG_TRY();
	{
		ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
													 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		problem = e->message;
	}
	PG_END_TRY();
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("field \"occurred_at\" is not a valid timestamp"),
				 errdetail("%s.", problem)));
	return ts;
}

/* A parsed and checked meisa_track payload. */
typedef struct TrackPayload
{
	char	   *email;			/* normalised, NULL when absent */
	char	   *external_id;	/* NULL when absent or null */
	char	   *event_id;		/* NULL when absent or null */
	TimestampTz occurred_at;	/* the transaction's start when absent */
	Jsonb	   *properties;		/* NULL when absent or null */
} TrackPayload;

/* Reads and checks the keys of a meisa_track payload into 'p'. */
static void
parse_track_payload(Jsonb *payload, TrackPayload *p)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;

	p->email = NULL;
	p->external_id = NULL;
	p->event_id = NULL;
	p->occurred_at = GetCurrentTransactionStartTimestamp();
	p->properties = NULL;
	it = JsonbIteratorInit(&payload->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		const char *key;
		int			len;

		if (tok != WJB_KEY)
			continue;
		JsonbIteratorNext(&it, &v, true);
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
		else if (KEY_IS("event_id"))
		{
			if (v.type != jbvNull)
				p->event_id = payload_short_text(&v, "event_id", true);
		}
		else if (KEY_IS("occurred_at"))
		{
			if (v.type != jbvNull)
				p->occurred_at = parse_occurred_at(&v);
		}
		else if (KEY_IS("properties"))
		{
			if (v.type == jbvNull)
				continue;
			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("field \"properties\" must be an object, not %s", payload_type_name(&v))));
			p->properties = JsonbValueToJsonb(&v);
			if (VARSIZE(p->properties) - VARHDRSZ > (Size) meisa_max_property_size)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("field \"properties\" is too large"),
						 errdetail("It takes %zu bytes; meisa.max_property_size allows %d.",
								   (Size) (VARSIZE(p->properties) - VARHDRSZ), meisa_max_property_size)));
		}
		else
			payload_unknown_key(key, len, TRACK_KEYS);
#undef KEY_IS
	}
}

/*
 * meisa_track(event_name text, payload jsonb) returns bigint: records the
 * event and fires its automations; returns the event id.
 */
Datum
meisa_track(PG_FUNCTION_ARGS)
{
	text	   *name_t;
	char	   *name;
	Jsonb	   *payload;
	TrackPayload tp;
	char	   *email;
	char	   *external_id;
	char	   *event_id;
	Jsonb	   *properties;
	TimestampTz occurred_at;
	int64		contact_id;
	int64		id = 0;
	bool		created;
	bool		isnull;
	MemoryContext callercxt = CurrentMemoryContext;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"event_name\" must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meisa_track payload must be a JSON object, not SQL NULL")));
	name_t = PG_GETARG_TEXT_PP(0);
	check_event_name(VARDATA_ANY(name_t), VARSIZE_ANY_EXHDR(name_t));
	name = text_to_cstring(name_t);
	payload = PG_GETARG_JSONB_P(1);
	payload_check_size(payload, "meisa_track payload");
	payload_check_object(payload, "meisa_track payload");

	parse_track_payload(payload, &tp);
	email = tp.email;
	external_id = tp.external_id;
	event_id = tp.event_id;
	occurred_at = tp.occurred_at;
	properties = tp.properties;
	if (email == NULL && external_id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"email\" or \"external_id\" is required")));
	if (properties == NULL)
	{
		JsonbParseState *st = NULL;

		pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
		properties = JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL));
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan_event_by_id == NULL)
	{
		Oid			t[1] = {TEXTOID};

		plan_event_by_id = spi_keep_plan("SELECT id FROM meisa.events WHERE event_id OPERATOR(pg_catalog.=) $1", 1, t);
	}
	if (plan_event_insert == NULL)
	{
		Oid			t[5] = {INT8OID, TEXTOID, JSONBOID, TEXTOID, TIMESTAMPTZOID};

		plan_event_insert = spi_keep_plan("INSERT INTO meisa.events (contact_id, name, properties, event_id, occurred_at) "
										  "VALUES ($1, $2, $3, $4, $5) "
										  "ON CONFLICT (event_id) WHERE event_id IS NOT NULL DO NOTHING RETURNING id",
										  5, t);
	}

	/* a repeated event_id returns the first event and does nothing else */
	if (event_id)
	{
		Datum		arg = CStringGetTextDatum(event_id);

		if (SPI_execute_plan(plan_event_by_id, &arg, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "meisa: event lookup failed");
		if (SPI_processed > 0)
		{
			id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			SPI_finish();
			PG_RETURN_INT64(id);
		}
	}

	contact_id = contact_resolve(email, external_id, true, &created);
	{
		Datum		args[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

		args[0] = Int64GetDatum(contact_id);
		args[1] = CStringGetTextDatum(name);
		args[2] = JsonbPGetDatum(properties);
		args[3] = event_id ? CStringGetTextDatum(event_id) : (Datum) 0;
		nulls[3] = event_id ? ' ' : 'n';
		args[4] = TimestampTzGetDatum(occurred_at);
		if (SPI_execute_plan(plan_event_insert, args, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "meisa: event insert failed");
		if (SPI_processed > 0)
			id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		else
		{
			/* a concurrent call with the same event_id won */
			Datum		arg = CStringGetTextDatum(event_id);

			if (SPI_execute_plan(plan_event_by_id, &arg, NULL, false, 1) != SPI_OK_SELECT ||
				SPI_processed == 0)
				elog(ERROR, "meisa: event with event_id \"%s\" vanished", event_id);
			id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			SPI_finish();
			PG_RETURN_INT64(id);
		}
	}
	SPI_finish();

	MemoryContextSwitchTo(callercxt);
	segments_note_change(contact_id, NULL, false, name);
	automation_fire(MEISA_TRIGGER_CUSTOM_EVENT, contact_id, name, NULL, properties);
	PG_RETURN_INT64(id);
}
