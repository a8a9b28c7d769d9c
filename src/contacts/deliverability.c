/*
 * deliverability.c
 *		Whether a contact may get mail, for the outbox (when a message is
 *		queued) and delivery (again just before it is sent): the contact's
 *		delivery state, the one order of suppression reasons, and a hard
 *		bounce recorded against the contact.
 */
#include "contacts/contacts.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#define STATE_COLUMNS "id, email, subscribed, bounced_at IS NOT NULL, complained_at IS NOT NULL, " \
	"custom_fields OPERATOR(pg_catalog.->>) 'timezone'"

/* Runs a state lookup plan with one argument; fills 'cs' and returns true when found. */
static bool
state_lookup(SPIPlanPtr plan, Datum arg, ContactState *cs)
{
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	/* not read-only: a contact created earlier in this command must be seen */
	if (SPI_execute_plan(plan, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: contact lookup failed");
	if (SPI_processed == 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return false;
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	cs->id = spi_get_int64(tup, desc, 1, 0);
	cs->email = spi_get_text(tup, desc, 2);
	cs->subscribed = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	cs->bounced = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	cs->complained = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	cs->timezone = spi_get_text(tup, desc, 6);
	SPI_freetuptable(SPI_tuptable);
	return true;
}

/* Loads the contact's delivery state; false when there is no such contact. */
bool
contact_state_lookup(int64 contact_id, ContactState *cs)
{
	static SPIPlanPtr plan = NULL;

	if (plan == NULL)
	{
		Oid			types[1] = {INT8OID};

		plan = spi_keep_plan("SELECT " STATE_COLUMNS " FROM meisa.contacts"
							 " WHERE id OPERATOR(pg_catalog.=) $1", 1, types);
	}
	return state_lookup(plan, Int64GetDatum(contact_id), cs);
}

/* contact_state_lookup by email (folded by email_fold); false when no contact has it. */
bool
contact_state_by_email(const char *email, ContactState *cs)
{
	static SPIPlanPtr plan = NULL;

	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan = spi_keep_plan("SELECT " STATE_COLUMNS " FROM meisa.contacts"
							 " WHERE email OPERATOR(pg_catalog.=) $1", 1, types);
	}
	return state_lookup(plan, CStringGetTextDatum(email_fold(email, strlen(email), NULL)), cs);
}

/*
 * Why mail of 'kind' must not go to the contact, or NULL when it may: a
 * complaint, then a hard bounce, then (marketing only) an unsubscribe, the
 * order in which meisa.unsubscribed_emails names the reason.
 */
const char *
contact_suppression_reason(const ContactState *cs, const char *kind)
{
	if (cs->complained)
		return "complained";
	if (cs->bounced)
		return "bounced";
	if (!cs->subscribed && strcmp(kind, "marketing") == 0)
		return "unsubscribed";
	return NULL;
}

/* Records a hard bounce of the contact, as meisa_record_bounce(email, 'hard', detail) does. */
void
contact_mark_bounced(int64 contact_id, const char *detail)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	if (plan == NULL)
	{
		Oid			types[2] = {INT8OID, TEXTOID};

		plan = spi_keep_plan("WITH a AS (INSERT INTO meisa.activity (contact_id, kind, detail)"
							 " VALUES ($1, 'bounce', pg_catalog.jsonb_build_object('kind', 'hard', 'detail', $2)))"
							 " UPDATE meisa.contacts SET bounced_at = pg_catalog.now(), subscribed = false,"
							 " unsubscribe_reason = 'bounced', unsubscribed_at = pg_catalog.now(),"
							 " updated_at = pg_catalog.now()"
							 " WHERE id OPERATOR(pg_catalog.=) $1 AND bounced_at IS NULL",
							 2, types);
	}
	values[0] = Int64GetDatum(contact_id);
	if (detail)
		values[1] = CStringGetTextDatum(detail);
	else
		nulls[1] = 'n';
	if (SPI_execute_plan(plan, values, nulls, false, 0) < 0)
		elog(ERROR, "meisa: could not record the bounce of contact %lld", (long long) contact_id);
}
