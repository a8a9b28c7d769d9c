/*
 * outbox.c
 *		The outbox: rendering a template for a contact and queueing the
 *		message in meisa.messages.  Rendering happens when a message is
 *		queued, so the row keeps exactly what will be sent: the rendered
 *		subject, html and text, the sender, and a Message-ID fixed now
 *		(a resend after a crash reuses it).  Suppression (marketing mail to
 *		unsubscribed contacts, any mail to bounced or complained addresses)
 *		is applied here: such a message is recorded with status 'suppressed'
 *		and the reason in last_error, and is never handed to delivery.
 */
#include "templates/templates.h"
#include "contacts/contacts.h"
#include "delivery/delivery.h"
#include "outbox/outbox.h"

#include "lib/stringinfo.h"
#include "port.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "access/xact.h"

/* Domain used in Message-IDs when the sender's address has none. */
#define OUTBOX_DEFAULT_DOMAIN "meisa.local"

/* What the partial callback needs: which part is rendered, where to copy. */
typedef struct PartialContext
{
	const char *column;			/* "html" or "text" */
	MemoryContext cxt;			/* where returned partial text lives */
} PartialContext;

/* Which template and part is being rendered, for the CONTEXT of an error. */
typedef struct RenderErrorContext
{
	const char *key;
	const char *part;			/* "subject", "html", "text"; NULL = headers */
} RenderErrorContext;

/* Error context callback: names the template (and part) being queued. */
static void
render_error_context(void *arg)
{
	RenderErrorContext *rec = (RenderErrorContext *) arg;

	if (rec->part)
		errcontext("rendering the %s of template \"%s\"", rec->part, rec->key);
	else
		errcontext("queueing a message of template \"%s\"", rec->key);
}

/* Defines the outbox settings (the outbox has none of its own). */
void
outbox_init(void)
{
}

/* Loads a template by key; NULL when there is none. */
TemplateRow *
template_lookup(const char *key)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1];
	TemplateRow *t;
	HeapTuple	tup;
	TupleDesc	desc;

	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan = spi_keep_plan("SELECT key, kind, subject, html, text, \"from\", reply_to, topic"
							 " FROM meisa.templates WHERE key OPERATOR(pg_catalog.=) $1",
							 1, types);
	}
	values[0] = CStringGetTextDatum(key);
	if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: template lookup failed");
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return NULL;
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	t = palloc(sizeof(TemplateRow));
	t->key = spi_get_text(tup, desc, 1);
	t->kind = spi_get_text(tup, desc, 2);
	t->subject = spi_get_text(tup, desc, 3);
	t->html = spi_get_text(tup, desc, 4);
	t->text = spi_get_text(tup, desc, 5);
	t->from = spi_get_text(tup, desc, 6);
	t->reply_to = spi_get_text(tup, desc, 7);
	t->topic = spi_get_text(tup, desc, 8);
	SPI_freetuptable(SPI_tuptable);
	return t;
}

/* Finds a partial (another template by key) for the part being rendered. */
static const char *
outbox_partial(const char *name, void *arg)
{
	static SPIPlanPtr plan = NULL;
	PartialContext *pc = (PartialContext *) arg;
	Datum		values[1];
	char	   *val = NULL;
	int			col = strcmp(pc->column, "html") == 0 ? 1 : 2;

	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan = spi_keep_plan("SELECT html, text FROM meisa.templates"
							 " WHERE key OPERATOR(pg_catalog.=) $1",
							 1, types);
	}
	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: partial lookup failed");
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, col, &isnull);

		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(pc->cxt);

			val = TextDatumGetCString(d);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_freetuptable(SPI_tuptable);
	return val;
}

/* Pushes a string pair key: value into an object being built. */
static void
push_string_pair(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	k,
				v;

	k.type = jbvString;
	k.val.string.len = strlen(key);
	k.val.string.val = (char *) key;
	pushJsonbValue(state, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.len = strlen(value);
	v.val.string.val = (char *) value;
	pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * The top frame of the template data: "data" ('data', or {} when NULL) and
 * "unsubscribe_url" (leaving topic 'topic_id', 0 = all marketing mail).
 * The contact's data is the frame below it (template_contact_frame), so its
 * keys are seen at top level and these two always win over its own.
 */
static Jsonb *
template_top_frame(const ContactState *cs, Jsonb *data, int64 topic_id)
{
	JsonbParseState *state = NULL;
	JsonbValue	k,
				v;
	JsonbValue *res;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.len = 4;
	k.val.string.val = "data";
	pushJsonbValue(&state, WJB_KEY, &k);
	if (data != NULL)
	{
		v.type = jbvBinary;
		v.val.binary.data = &data->root;
		v.val.binary.len = VARSIZE(data) - VARHDRSZ;
		if (JB_ROOT_IS_SCALAR(data))
		{
			JsonbValue	scalar;

			if (!JsonbExtractScalar(&data->root, &scalar))
				elog(ERROR, "meisa: could not read scalar data");
			pushJsonbValue(&state, WJB_VALUE, &scalar);
		}
		else
			pushJsonbValue(&state, WJB_VALUE, &v);
	}
	else
	{
		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	push_string_pair(&state, "unsubscribe_url", unsubscribe_url_topic(cs->id, topic_id));
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* The bottom frame of the template data: the contact's data, else just its address. */
static Jsonb *
template_contact_frame(const ContactState *cs, Jsonb *contact)
{
	JsonbParseState *state = NULL;

	if (contact != NULL && JB_ROOT_IS_OBJECT(contact))
		return contact;
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_string_pair(&state, "email", cs->email);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/* The lower-cased domain of an address ("Name <a@b.io>" or "a@b.io"), or NULL. */
static char *
address_domain(const char *addr)
{
	const char *at;
	const char *p;
	StringInfoData buf;

	if (addr == NULL || (at = strrchr(addr, '@')) == NULL)
		return NULL;
	initStringInfo(&buf);
	for (p = at + 1; *p && *p != '>'; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (!(isalnum(c) || c == '.' || c == '-'))
			return NULL;
		appendStringInfoChar(&buf, pg_tolower(c));
	}
	if (buf.len == 0 || buf.data[0] == '.' || buf.data[0] == '-')
		return NULL;
	return buf.data;
}

/* 24 random hex digits for the left part of a Message-ID. */
static char *
random_hex(void)
{
	uint8		bytes[12];
	char	   *out = palloc(sizeof(bytes) * 2 + 1);
	int			i;

	if (!pg_strong_random(bytes, sizeof(bytes)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a Message-ID")));
	for (i = 0; i < (int) sizeof(bytes); i++)
		sprintf(out + i * 2, "%02x", bytes[i]);
	return out;
}

/* The sender of a template: its "from", else the meisa.from_address setting. */
static const char *
sender_address(const TemplateRow *t)
{
	const char *guc;

	if (t->from != NULL && t->from[0] != '\0')
		return t->from;
	guc = GetConfigOption("meisa.from_address", true, false);
	if (guc != NULL && guc[0] != '\0')
		return guc;
	return NULL;
}

/* The message queued earlier with (trigger_key, idempotency_key), or 0. */
int64
outbox_idempotent_message(const char *trigger_key, const char *idem,
						  char **status, char **last_error, char **to_email)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[2];
	bool		isnull;
	int64		id;
	HeapTuple	tup;
	TupleDesc	desc;

	/*
	 * Both callers have a trigger key (meisa_trigger_email requires one, and
	 * only a non-null key can conflict in messages_idempotency_idx).  "="
	 * binds both columns of that index; "IS NOT DISTINCT FROM", as this once
	 * read, no index can answer: it scanned every message with a key.
	 */
	if (trigger_key == NULL)
		elog(ERROR, "meisa: idempotency lookup without a trigger key");
	if (plan == NULL)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};

		plan = spi_keep_plan("SELECT id, status, last_error, to_email FROM meisa.messages"
							 " WHERE trigger_key OPERATOR(pg_catalog.=) $1"
							 " AND idempotency_key OPERATOR(pg_catalog.=) $2",
							 2, types);
	}
	values[0] = CStringGetTextDatum(trigger_key);
	values[1] = CStringGetTextDatum(idem);
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: idempotency lookup failed");
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return 0;
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	*status = spi_get_text(tup, desc, 2);
	*last_error = spi_get_text(tup, desc, 3);
	if (to_email)
		*to_email = spi_get_text(tup, desc, 4);
	SPI_freetuptable(SPI_tuptable);
	return id;
}

/*
 * Renders template 't' for the contact with 'data' and the unsubscribe link
 * of 'topic_id'; 'contact' is the contact's data (NULL: read it).  Checks
 * every header value (22023 naming it).
 */
void
outbox_render(const ContactState *cs, const TemplateRow *t, Jsonb *contact,
			  Jsonb *data, int64 topic_id, RenderedMessage *out)
{
	Jsonb	   *frames[2];
	PartialContext pc;
	RenderErrorContext rec;
	ErrorContextCallback errcb;
	char	   *domain;

	if (contact == NULL)
		contact = contact_data_jsonb(cs->id);
	frames[0] = template_contact_frame(cs, contact);
	frames[1] = template_top_frame(cs, data, topic_id);
	pc.cxt = CurrentMemoryContext;
	rec.key = t->key;
	rec.part = "subject";
	errcb.callback = render_error_context;
	errcb.arg = &rec;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	pc.column = "text";
	out->subject = mustache_render_text_frames(t->subject, frames, 2, outbox_partial, &pc, false);
	out->html = NULL;
	out->text = NULL;
	if (t->html)
	{
		rec.part = "html";
		pc.column = "html";
		out->html = mustache_render_text_frames(t->html, frames, 2, outbox_partial, &pc, true);
	}
	if (t->text)
	{
		rec.part = "text";
		pc.column = "text";
		out->text = mustache_render_text_frames(t->text, frames, 2, outbox_partial, &pc, false);
	}

	rec.part = NULL;
	out->from = sender_address(t);
	mime_check_header_value(cs->email, "to");
	mime_check_header_value(out->from, "from");
	mime_check_header_value(t->reply_to, "reply_to");
	mime_check_header_value(out->subject, "subject");
	error_context_stack = errcb.previous;

	domain = address_domain(out->from);
	out->domain = domain ? domain : OUTBOX_DEFAULT_DOMAIN;
	out->random = random_hex();
}

/* When a message of 'kind' queued for the contact may first be sent, at or after 'at' (quiet hours). */
TimestampTz
outbox_first_attempt(const ContactState *cs, const char *kind, TimestampTz at)
{
	if (strcmp(kind, "marketing") != 0 || !policy_quiet_set())
		return at;
	return policy_quiet_end(at, policy_contact_zone(cs->timezone));
}

/*
 * Why a message of template 't' from 'src' under 'topic' must not be queued
 * for the contact (NULL = it may): the suppression reasons, then for
 * marketing mail meisa.frequency_cap.
 */
static const char *
queue_suppression_reason(const ContactState *cs, const TemplateRow *t,
						 const MessageSource *src, const char *topic)
{
	const char *reason = policy_suppression_reason(cs, t->kind, topic);

	if (reason == NULL && strcmp(t->kind, "marketing") == 0 && policy_cap_set() &&
		policy_cap_reached(cs->id, (src && src->now) ? src->now :
						   GetCurrentTransactionStartTimestamp(), NULL))
		reason = "frequency_cap";
	return reason;
}

#define NARGS_INSERT 22

/* outbox_queue for a contact whose state the caller already loaded (SPI connected). */
int64
outbox_queue_contact(const ContactState *cs, const char *template_key,
					 Jsonb *data, const MessageSource *src,
					 char **suppressed_reason)
{
	TemplateRow *t = template_lookup(template_key);

	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("template \"%s\" does not exist", template_key)));
	return outbox_queue_template(cs, t, data, src, suppressed_reason);
}

/* Prepares the INSERT of a message (kept for the backend's life). */
static SPIPlanPtr
insert_plan(void)
{
	static SPIPlanPtr plan = NULL;

	if (plan == NULL)
	{
		Oid			types[NARGS_INSERT] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
			TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID,
			INT8OID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID,
		TIMESTAMPTZOID};

		plan = spi_keep_plan(
							 "INSERT INTO meisa.messages (id, contact_id, to_email, from_address, reply_to,"
							 " kind, template_key, subject, html, text, status, last_error,"
							 " automation_id, enrollment_id, sequence_id, step_position,"
							 " trigger_key, idempotency_key, message_id, topic, broadcast_id,"
							 " next_attempt_at)"
							 " SELECT n.id, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
							 " $14, $15, $16, $17, pg_catalog.concat('<', $18, '.', n.id, '@', $19, '>'),"
							 " $20, $21, $22"
							 " FROM (SELECT pg_catalog.nextval('meisa.messages_id_seq'::pg_catalog.regclass) AS id) n"
							 " ON CONFLICT (trigger_key, idempotency_key) WHERE idempotency_key IS NOT NULL"
							 " DO NOTHING RETURNING id",
							 NARGS_INSERT, types);
	}
	return plan;
}

/* outbox_queue with the template row already loaded (SPI connected). */
int64
outbox_queue_template(const ContactState *cs, const TemplateRow *t,
					  Jsonb *data, const MessageSource *src,
					  char **suppressed_reason)
{
	RenderedMessage r;
	const char *topic;
	const char *reason;
	TimestampTz first;
	Datum		values[NARGS_INSERT];
	char		nulls[NARGS_INSERT];
	int64		id = 0;
	int			i;

	if (suppressed_reason)
		*suppressed_reason = NULL;

	if (src && src->required_kind && strcmp(src->required_kind, t->kind) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("template \"%s\" is a %s template, not a %s template",
						t->key, t->kind, src->required_kind)));

	/* render: the row keeps exactly what will be sent */
	topic = strcmp(t->kind, "marketing") != 0 ? NULL :
		(src && src->topic) ? src->topic : t->topic;
	outbox_render(cs, t, NULL, data, topic ? topic_id_by_name(topic) : 0, &r);
	reason = queue_suppression_reason(cs, t, src, topic);
	first = outbox_first_attempt(cs, t->kind,
								 Max(GetCurrentTransactionStartTimestamp(),
									 src ? src->not_before : 0));

	for (i = 0; i < NARGS_INSERT; i++)
		nulls[i] = ' ';
#define SET_TEXT(n, s) do { if (s) values[n] = CStringGetTextDatum(s); else nulls[n] = 'n'; } while (0)
#define SET_INT8(n, x) do { if ((x) != 0) values[n] = Int64GetDatum(x); else nulls[n] = 'n'; } while (0)
	values[0] = Int64GetDatum(cs->id);
	SET_TEXT(1, cs->email);
	SET_TEXT(2, r.from);
	SET_TEXT(3, t->reply_to);
	SET_TEXT(4, t->kind);
	SET_TEXT(5, t->key);
	SET_TEXT(6, r.subject);
	SET_TEXT(7, r.html);
	SET_TEXT(8, r.text);
	SET_TEXT(9, reason ? "suppressed" : "queued");
	SET_TEXT(10, reason);
	SET_INT8(11, src ? src->automation_id : 0);
	SET_INT8(12, src ? src->enrollment_id : 0);
	SET_INT8(13, src ? src->sequence_id : 0);
	if (src && src->step_position != 0)
		values[14] = Int32GetDatum(src->step_position);
	else
		nulls[14] = 'n';
	SET_TEXT(15, src ? src->trigger_key : NULL);
	SET_TEXT(16, src ? src->idempotency_key : NULL);
	SET_TEXT(17, r.random);
	SET_TEXT(18, r.domain);
	SET_TEXT(19, topic);
	SET_INT8(20, src ? src->broadcast_id : 0);
	values[21] = TimestampTzGetDatum(first);
#undef SET_TEXT
#undef SET_INT8

	if (SPI_execute_plan(insert_plan(), values, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "meisa: could not insert the message");
	if (SPI_processed == 1)
	{
		bool		isnull;

		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		SPI_freetuptable(SPI_tuptable);
		if (reason == NULL)
			delivery_wake_at_commit();
	}
	else
	{
		/* a message with this idempotency key exists: that one is the answer */
		char	   *status = NULL;
		char	   *last_error = NULL;

		SPI_freetuptable(SPI_tuptable);
		id = outbox_idempotent_message(src->trigger_key, src->idempotency_key,
										 &status, &last_error, NULL);
		if (id == 0)
			elog(ERROR, "meisa: message with idempotency key \"%s\" vanished",
				 src->idempotency_key);
		reason = (status && strcmp(status, "suppressed") == 0) ?
			(last_error ? last_error : "suppressed") : NULL;
	}

	if (suppressed_reason && reason)
		*suppressed_reason = pstrdup(reason);
	return id;
}

/*
 * Renders template 'template_key' for the contact with 'data' and queues it
 * (see outbox.h).  *suppressed_reason is allocated in the caller's context.
 */
int64
outbox_queue(int64 contact_id, const char *template_key, Jsonb *data,
			 const MessageSource *src, char **suppressed_reason)
{
	MemoryContext callercxt = CurrentMemoryContext;
	ContactState cs;
	char	   *reason = NULL;
	int64		id;

	if (suppressed_reason)
		*suppressed_reason = NULL;
	if (template_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("template key must not be null")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	if (!contact_state_lookup(contact_id, &cs))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("contact %lld does not exist", (long long) contact_id)));
	id = outbox_queue_contact(&cs, template_key, data, src, &reason);
	if (reason && suppressed_reason)
		*suppressed_reason = MemoryContextStrdup(callercxt, reason);
	SPI_finish();
	return id;
}
