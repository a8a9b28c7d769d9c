/*
 * trigger_email.c
 *		meisa_trigger_email(trigger_key, payload): the transactional email
 *		endpoint.  Checks the payload (email, data_variables,
 *		idempotency_key), finds the contact by email (creating it with
 *		contact_resolve, the identity path of the API, when it is new),
 *		renders the transactional template with that key and queues one
 *		message.  Transactional mail goes to marketing-unsubscribed contacts;
 *		a hard-bounced or complained address gets a 'suppressed' message
 *		instead, announced with a NOTICE.  A repeated idempotency_key returns
 *		the first message's id and queues nothing.
 */
#include "contacts/contacts.h"
#include "outbox/outbox.h"

#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(meisa_trigger_email);

/* Longest idempotency_key accepted. */
#define IDEMPOTENCY_KEY_MAX 255

/* The text of a jsonb string value (palloc'd). */
static char *
jbv_cstring(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Tells the caller that message 'id' was recorded as suppressed, and why. */
static void
notice_suppressed(int64 id, const char *to_email, const char *reason)
{
	ereport(NOTICE,
			(errmsg("message %lld to \"%s\" was suppressed: the address %s",
					(long long) id, to_email ? to_email : "",
					strcmp(reason, "bounced") == 0 ? "hard-bounced" :
					strcmp(reason, "complained") == 0 ? "complained" : reason),
			 errdetail("The message is recorded with status \"suppressed\" and last_error \"%s\".",
					   reason)));
}

/* Reads and checks meisa_trigger_email's payload keys into *email, *data and *idem. */
static void
parse_trigger_payload(Jsonb *payload, char **email, Jsonb **data, char **idem)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;

	it = JsonbIteratorInit(&payload->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = jbv_cstring(&v);
		tok = JsonbIteratorNext(&it, &v, true);
		if (strcmp(key, "email") == 0)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("email must be a string, not %s", payload_type_name(&v))));
			*email = jbv_cstring(&v);
		}
		else if (strcmp(key, "data_variables") == 0)
		{
			if (v.type == jbvNull)
				continue;
			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("data_variables must be an object, not %s", payload_type_name(&v))));
			*data = JsonbValueToJsonb(&v);
			if (VARSIZE(*data) - VARHDRSZ > (Size) meisa_max_property_size)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("data_variables is too large"),
						 errdetail("It takes %zu bytes; meisa.max_property_size allows %d.",
								   (Size) (VARSIZE(*data) - VARHDRSZ), meisa_max_property_size)));
		}
		else if (strcmp(key, "idempotency_key") == 0)
		{
			if (v.type == jbvNull)
				continue;
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("idempotency_key must be a string, not %s", payload_type_name(&v))));
			*idem = jbv_cstring(&v);
			if ((*idem)[0] == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("idempotency_key must not be empty")));
			if (strlen(*idem) > IDEMPOTENCY_KEY_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("idempotency_key is too long"),
						 errdetail("The limit is %d bytes.", IDEMPOTENCY_KEY_MAX)));
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown key \"%s\" in payload", key),
					 errhint("The payload of meisa_trigger_email takes \"email\", \"data_variables\" and \"idempotency_key\".")));
	}
	if (*email == NULL || (*email)[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("email is required"),
				 errdetail("The payload of meisa_trigger_email must name the recipient in \"email\".")));

}

/* The transactional template with this trigger key; an error when there is none. */
static TemplateRow *
transactional_template(const char *trigger_key)
{
	TemplateRow *t;

	t = template_lookup(trigger_key);
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("template \"%s\" does not exist", trigger_key)));
	if (strcmp(t->kind, "transactional") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("transactional template \"%s\" does not exist", trigger_key),
				 errdetail("Template \"%s\" is a %s template.", trigger_key, t->kind),
				 errhint("meisa_trigger_email sends transactional templates only.")));
	return t;
}

/* meisa_trigger_email(trigger_key text, payload jsonb) returns bigint */
Datum
meisa_trigger_email(PG_FUNCTION_ARGS)
{
	char	   *trigger_key;
	Jsonb	   *payload;
	char	   *email = NULL;
	Jsonb	   *data = NULL;
	char	   *idem = NULL;
	TemplateRow *t;
	MessageSource src;
	ContactState cs;
	int64		contact_id;
	int64		id;
	char	   *reason = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger_key must not be null")));
	trigger_key = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payload must be a JSON object"),
				 errdetail("The payload is null.")));
	payload = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_OBJECT(payload))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payload must be a JSON object")));
	payload_check_size(payload, "payload");

	parse_trigger_payload(payload, &email, &data, &idem);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");

	/* the template first: an unknown key must not create a contact */
	t = transactional_template(trigger_key);

	/* a retry with the same idempotency_key: the first message answers */
	if (idem != NULL)
	{
		char	   *status = NULL;
		char	   *last_error = NULL;
		char	   *to_email = NULL;

		id = outbox_idempotent_message(trigger_key, idem, &status, &last_error, &to_email);
		if (id != 0)
		{
			if (status && strcmp(status, "suppressed") == 0)
				notice_suppressed(id, to_email, last_error ? last_error : "suppressed");
			SPI_finish();
			PG_RETURN_INT64(id);
		}
	}

	contact_id = contact_id_by_email(email);
	if (contact_id == 0)
	{
		bool		created;

		/* a new contact, created as meisa_upsert({"email": ...}) would */
		contact_id = contact_resolve(email_normalize(email, strlen(email), "email"),
									 NULL, true, &created);
	}
	if (!contact_state_lookup(contact_id, &cs))
		elog(ERROR, "meisa: contact %lld vanished", (long long) contact_id);

	memset(&src, 0, sizeof(src));
	src.required_kind = "transactional";
	src.trigger_key = trigger_key;
	src.idempotency_key = idem;
	id = outbox_queue_template(&cs, t, data, &src, &reason);
	if (reason)
		notice_suppressed(id, cs.email, reason);
	SPI_finish();
	PG_RETURN_INT64(id);
}
