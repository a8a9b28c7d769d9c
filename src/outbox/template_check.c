/*
 * template_check.c
 *		Validation of meisa.templates rows on write: the BEFORE INSERT OR
 *		UPDATE trigger function meisa.template_check() checks the key, the
 *		kind, that html or text is present, the Mustache syntax of subject,
 *		html and text, and that the sender headers (from, reply_to) and the
 *		subject hold no line breaks; it also keeps updated_at current.  A bad
 *		row is rejected with SQLSTATE 22023 naming the column.
 */
#include "templates/templates.h"
#include "delivery/delivery.h"
#include "outbox/outbox.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(meisa_template_check);

/* Longest template key accepted. */
#define TEMPLATE_KEY_MAX 100

/* Checks a template key: 1..100 characters of [A-Za-z0-9_.:-]. */
void
template_check_key(const char *key, const char *field)
{
	const char *p;

	if (key == NULL || key[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", field)));
	for (p = key; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (!(isalnum(c) || c == '_' || c == '.' || c == ':' || c == '-') || c >= 0x80)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s \"%s\" is not a valid template key", field, key),
					 errdetail("A template key is 1 to %d characters from A-Z, a-z, 0-9, \"_\", \".\", \":\" and \"-\".",
							   TEMPLATE_KEY_MAX)));
	}
	if (p - key > TEMPLATE_KEY_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", field),
				 errdetail("A template key is at most %d characters.", TEMPLATE_KEY_MAX)));
}

/* Rejects an empty or whitespace-only value of an optional column. */
static bool
is_blank(const char *s)
{
	if (s == NULL)
		return true;
	for (; *s; s++)
		if (!isspace((unsigned char) *s))
			return false;
	return true;
}

/* BEFORE INSERT OR UPDATE trigger on meisa.templates: validates the row. */
Datum
meisa_template_check(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *key,
			   *kind,
			   *subject,
			   *html,
			   *text,
			   *from,
			   *reply_to;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "meisa.template_check() must be a BEFORE ROW trigger");

	tup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = td->tg_relation->rd_att;

	key = trigger_row_text(tup, desc, "key");
	kind = trigger_row_text(tup, desc, "kind");
	subject = trigger_row_text(tup, desc, "subject");
	html = trigger_row_text(tup, desc, "html");
	text = trigger_row_text(tup, desc, "text");
	from = trigger_row_text(tup, desc, "from");
	reply_to = trigger_row_text(tup, desc, "reply_to");

	template_check_key(key, "key");
	if (kind == NULL || (strcmp(kind, "transactional") != 0 && strcmp(kind, "marketing") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("kind of template \"%s\" must be \"transactional\" or \"marketing\"", key)));
	if (subject == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subject of template \"%s\" must not be null", key)));
	if (is_blank(html) && is_blank(text))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("template \"%s\" needs an html or a text body", key),
				 errhint("Set html, text or both.")));

	mime_check_header_value(subject, "subject");
	mime_check_header_value(from, "from");
	mime_check_header_value(reply_to, "reply_to");
	if (from != NULL && strchr(from, '@') == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from of template \"%s\" is not an email address", key),
				 errdetail("Use \"name@example.com\" or \"Name <name@example.com>\".")));
	if (reply_to != NULL && strchr(reply_to, '@') == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("reply_to of template \"%s\" is not an email address", key),
				 errdetail("Use \"name@example.com\" or \"Name <name@example.com>\".")));

	mustache_validate(subject, "subject");
	if (html)
		mustache_validate(html, "html");
	if (text)
		mustache_validate(text, "text");

	return PointerGetDatum(trigger_row_touch_updated_at(td, tup));
}
