/*
 * topics.c
 *		Topics: marketing mail a contact can leave one topic at a time
 *		(meisa.topics, meisa.topic_subscriptions; no row = the topic's
 *		default_subscribed).  The one order of suppression reasons of a
 *		message lives here: the contact's (complained, bounced, and for
 *		marketing unsubscribed), then the topic's (topic_unsubscribed).
 */
#include "policy/policy.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

/*
 * The id of the topic named 'name', 0 when there is none (SPI connected).
 * The caller's memory context is kept: SPI_execute_plan leaves the SPI
 * procedure context current, and the delivery's message text built after
 * this lookup would otherwise live there and be freed by SPI_finish.
 */
int64
topic_id_by_name(const char *name)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext callercxt = CurrentMemoryContext;
	Datum		arg;
	int64		id = 0;

	if (name == NULL)
		return 0;
	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan = spi_keep_plan("SELECT id FROM meisa.topics WHERE name OPERATOR(pg_catalog.=) $1",
							 1, types);
	}
	arg = CStringGetTextDatum(name);
	if (SPI_execute_plan(plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: topic lookup failed");
	if (SPI_processed > 0)
		id = spi_get_int64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, 0);
	SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(callercxt);
	return id;
}

/* The name of topic 'id' (palloc'd in the caller's context), NULL when there is none. */
char *
topic_name_by_id(int64 id)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext callercxt = CurrentMemoryContext;
	Datum		arg = Int64GetDatum(id);
	char	   *name = NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	if (plan == NULL)
	{
		Oid			types[1] = {INT8OID};

		plan = spi_keep_plan("SELECT name FROM meisa.topics WHERE id OPERATOR(pg_catalog.=) $1",
							 1, types);
	}
	if (SPI_execute_plan(plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: topic lookup failed");
	if (SPI_processed > 0)
	{
		char	   *n = spi_get_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		name = n ? MemoryContextStrdup(callercxt, n) : NULL;
	}
	SPI_finish();
	return name;
}

/*
 * True when the contact left the topic named 'topic': a row saying so, or
 * none and a topic whose default is out.  A topic deleted since leaves no
 * one out.
 */
bool
topic_left(int64 contact_id, const char *topic)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext callercxt = CurrentMemoryContext;
	Datum		values[2];
	bool		left = false;

	if (topic == NULL)
		return false;
	if (plan == NULL)
	{
		Oid			types[2] = {INT8OID, TEXTOID};

		plan = spi_keep_plan("SELECT coalesce((SELECT s.subscribed FROM meisa.topic_subscriptions s"
							 " WHERE s.contact_id OPERATOR(pg_catalog.=) $1"
							 " AND s.topic_id OPERATOR(pg_catalog.=) t.id), t.default_subscribed)"
							 " FROM meisa.topics t WHERE t.name OPERATOR(pg_catalog.=) $2",
							 2, types);
	}
	values[0] = Int64GetDatum(contact_id);
	values[1] = CStringGetTextDatum(topic);
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: topic subscription lookup failed");
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		left = !isnull && !DatumGetBool(d);
	}
	SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(callercxt);	/* SPI left its own current */
	return left;
}

/*
 * Why a message of 'kind' under 'topic' must not go to the contact, NULL
 * when it may (SPI connected): the contact's reason first, then the topic's.
 */
const char *
policy_suppression_reason(const ContactState *cs, const char *kind, const char *topic)
{
	const char *reason = contact_suppression_reason(cs, kind);

	if (reason == NULL && topic != NULL && strcmp(kind, "marketing") == 0 &&
		topic_left(cs->id, topic))
		reason = "topic_unsubscribed";
	return reason;
}
