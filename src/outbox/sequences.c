/*
 * sequences.c
 *		Drip sequences: the sequence settings, enrolment and unenrolment
 *		(sequence_enroll / sequence_unenroll for the automation engine,
 *		meisa_enroll / meisa_unenroll for admins) and the checks run when
 *		meisa.sequences and meisa.sequence_steps rows are written.
 *		The runner that advances due enrolments lives in rundue.c.
 *
 *		Re-entry rule: a contact has at most one active enrolment per
 *		sequence.  With allow_reentry = false a contact that was ever
 *		enrolled (whatever became of that enrolment) is not enrolled again;
 *		with allow_reentry = true it is enrolled again once the previous
 *		enrolment is no longer active.
 *
 *		Lock order: enrolling and unenrolling lock the contact (FOR NO KEY
 *		UPDATE) before the enrolment, as every contact write does before its
 *		automations reach the enrolments (lock_contact).
 */
#include "conditions/conditions.h"
#include "outbox/outbox.h"
#include "segments/segments.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(meisa_enroll);
PG_FUNCTION_INFO_V1(meisa_unenroll);
PG_FUNCTION_INFO_V1(meisa_sequence_check);
PG_FUNCTION_INFO_V1(meisa_sequence_step_check);

int			meisa_run_due_batch_size = 1000;
int			meisa_sequence_retry_delay = 3600;

/* Why sequence_enroll_why did not enrol. */
typedef enum EnrollOutcome
{
	ENROLL_DONE,
	ENROLL_ACTIVE,				/* an active enrolment exists */
	ENROLL_NO_REENTRY,			/* enrolled before, allow_reentry is false */
	ENROLL_DISABLED				/* the sequence is disabled */
} EnrollOutcome;

/* Defines the sequence settings. */
void
sequence_init(void)
{
	DefineCustomIntVariable("meisa.run_due_batch_size",
							"Enrolments meisa_run_due locks and advances per batch.",
							NULL,
							&meisa_run_due_batch_size,
							1000, 1, 100000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.sequence_retry_delay",
							"Wait before an enrolment whose step failed is tried again.",
							NULL,
							&meisa_sequence_retry_delay,
							3600, 1, 86400 * 30,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* Finds a sequence by name (ERROR 42704 when unknown); sets enabled/reentry. */
static int64
sequence_by_name(const char *name, bool *enabled, bool *allow_reentry)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1];
	bool		isnull;
	int64		id;

	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan = spi_keep_plan("SELECT id, enabled, allow_reentry FROM meisa.sequences"
							 " WHERE name OPERATOR(pg_catalog.=) $1", 1, types);
	}
	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: sequence lookup failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sequence \"%s\" does not exist", name)));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*enabled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	*allow_reentry = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return id;
}

/*
 * Locks the contact FOR NO KEY UPDATE before an enrolment of it is written
 * (SPI connected); ERROR 42704 when there is no such contact.
 *
 * Lock order: contact, then its enrolments.  A contact write (meisa_upsert,
 * meisa_add_tag, meisa_unsubscribe, ...) locks the contact first and reaches
 * the enrolments through its automations' enroll/unenroll actions.
 * meisa_enroll and the automations of meisa_track (custom_event) held no
 * more than the FOR KEY SHARE of a foreign key check on the contact, which
 * does not conflict with a contact write: they inserted or updated the
 * enrolment first and wrote the contact afterwards (a sequence_enrolled
 * automation's add_tag, an add_tag after an unenroll), so both waited for
 * each other when the contact write enrolled or unenrolled the same
 * enrolment.  The lock is the one a contact write takes, so either of the
 * two waits for the other before touching any enrolment.  A path that
 * already wrote the contact holds it and takes nothing new; meisa_run_due
 * holds FOR KEY SHARE only, which this lock does not wait for (and run_due
 * never waits for a row lock: SKIP LOCKED).
 */
static void
lock_contact(int64 contact_id)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1];

	if (plan == NULL)
	{
		Oid			types[1] = {INT8OID};

		plan = spi_keep_plan("SELECT 1 FROM meisa.contacts"
							 " WHERE id OPERATOR(pg_catalog.=) $1"
							 " FOR NO KEY UPDATE", 1, types);
	}
	values[0] = Int64GetDatum(contact_id);
	if (SPI_execute_plan(plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: could not lock the contact");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("contact %lld does not exist", (long long) contact_id)));
	SPI_freetuptable(SPI_tuptable);
}

/* Enrols the contact (SPI connected); returns the id or 0 and why not. */
static int64
sequence_enroll_why(int64 contact_id, const char *sequence_name, EnrollOutcome *why)
{
	static SPIPlanPtr seen_plan = NULL;
	static SPIPlanPtr insert_plan = NULL;
	bool		enabled,
				allow_reentry;
	int64		seq_id;
	int64		id = 0;
	Datum		values[2];
	bool		isnull;

	if (sequence_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sequence must not be null")));
	seq_id = sequence_by_name(sequence_name, &enabled, &allow_reentry);
	if (!enabled)
	{
		*why = ENROLL_DISABLED;
		return 0;
	}
	values[0] = Int64GetDatum(contact_id);
	values[1] = Int64GetDatum(seq_id);

	if (!allow_reentry)
	{
		if (seen_plan == NULL)
		{
			Oid			types[2] = {INT8OID, INT8OID};

			seen_plan = spi_keep_plan("SELECT status FROM meisa.enrollments"
									  " WHERE contact_id OPERATOR(pg_catalog.=) $1"
									  " AND sequence_id OPERATOR(pg_catalog.=) $2"
									  " ORDER BY status OPERATOR(pg_catalog.<>) 'active' LIMIT 1",
									  2, types);
		}
		if (SPI_execute_plan(seen_plan, values, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "meisa: enrolment lookup failed");
		if (SPI_processed > 0)
		{
			char	   *status = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			*why = strcmp(status, "active") == 0 ? ENROLL_ACTIVE : ENROLL_NO_REENTRY;
			SPI_freetuptable(SPI_tuptable);
			return 0;
		}
		SPI_freetuptable(SPI_tuptable);
	}

	/* the contact before the enrolment: see lock_contact */
	lock_contact(contact_id);
	if (insert_plan == NULL)
	{
		Oid			types[2] = {INT8OID, INT8OID};

		insert_plan = spi_keep_plan(
									"INSERT INTO meisa.enrollments (contact_id, sequence_id, next_run_at)"
									" SELECT $1, $2, pg_catalog.now() OPERATOR(pg_catalog.+) COALESCE("
									"  (SELECT st.delay FROM meisa.sequence_steps st"
									"   WHERE st.sequence_id OPERATOR(pg_catalog.=) $2"
									"   ORDER BY st.position LIMIT 1), '0'::pg_catalog.interval)"
									" ON CONFLICT (contact_id, sequence_id) WHERE status OPERATOR(pg_catalog.=) 'active' DO NOTHING"
									" RETURNING id", 2, types);
	}
	if (SPI_execute_plan(insert_plan, values, NULL, false, 1) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "meisa: could not insert the enrolment");
	if (SPI_processed > 0)
	{
		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		*why = ENROLL_DONE;
	}
	else
		*why = ENROLL_ACTIVE;
	SPI_freetuptable(SPI_tuptable);
	return id;
}

/* Checks that the contact exists (ERROR 42704 otherwise). */
static void
require_contact(int64 contact_id)
{
	ContactState cs;

	if (!contact_state_lookup(contact_id, &cs))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("contact %lld does not exist", (long long) contact_id)));
}

/*
 * Enrols the contact; returns the enrolment id, 0 when not enrolled (already
 * active, no re-entry, or the sequence is disabled).  Fires sequence_enrolled.
 */
int64
sequence_enroll(int64 contact_id, const char *sequence_name)
{
	EnrollOutcome why;
	int64		id;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	require_contact(contact_id);
	id = sequence_enroll_why(contact_id, sequence_name, &why);
	SPI_finish();
	if (id != 0)
		automation_fire(MEISA_TRIGGER_SEQUENCE_ENROLLED, contact_id,
						sequence_name, NULL, NULL);
	return id;
}

/* Removes the contact's active enrolment (SPI connected); false when none. */
static bool
sequence_unenroll_spi(int64 contact_id, const char *sequence_name)
{
	static SPIPlanPtr plan = NULL;
	bool		enabled,
				allow_reentry;
	int64		seq_id;
	Datum		values[2];
	bool		found;

	if (sequence_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sequence must not be null")));
	seq_id = sequence_by_name(sequence_name, &enabled, &allow_reentry);
	if (plan == NULL)
	{
		Oid			types[2] = {INT8OID, INT8OID};

		plan = spi_keep_plan("UPDATE meisa.enrollments SET status = 'removed',"
							 " exit_reason = 'unenrolled', next_run_at = NULL,"
							 " updated_at = pg_catalog.now()"
							 " WHERE contact_id OPERATOR(pg_catalog.=) $1"
							 " AND sequence_id OPERATOR(pg_catalog.=) $2"
							 " AND status OPERATOR(pg_catalog.=) 'active'", 2, types);
	}
	/* the contact before the enrolment: see lock_contact */
	lock_contact(contact_id);
	values[0] = Int64GetDatum(contact_id);
	values[1] = Int64GetDatum(seq_id);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "meisa: could not remove the enrolment");
	found = SPI_processed > 0;
	return found;
}

/* Removes the contact's active enrolment; false when there was none. */
bool
sequence_unenroll(int64 contact_id, const char *sequence_name)
{
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	found = sequence_unenroll_spi(contact_id, sequence_name);
	SPI_finish();
	return found;
}

/* The id of the contact with this email (trimmed, lower-cased); ERROR 42704 if none. */
static int64
contact_by_email(const char *email)
{
	int64		id = contact_id_by_email(email);

	if (id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("contact \"%s\" does not exist", email)));
	return id;
}

/* Reads the (email, sequence) arguments of meisa_enroll / meisa_unenroll. */
static void
email_sequence_args(FunctionCallInfo fcinfo, char **email, char **sequence)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("email must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sequence must not be null")));
	*email = text_to_cstring(PG_GETARG_TEXT_PP(0));
	*sequence = text_to_cstring(PG_GETARG_TEXT_PP(1));
}

/* meisa_enroll(email text, sequence text) returns bigint (NULL when not enrolled) */
Datum
meisa_enroll(PG_FUNCTION_ARGS)
{
	char	   *email,
			   *sequence;
	int64		contact_id;
	int64		id;
	EnrollOutcome why;

	email_sequence_args(fcinfo, &email, &sequence);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	contact_id = contact_by_email(email);
	id = sequence_enroll_why(contact_id, sequence, &why);
	SPI_finish();

	if (id == 0)
	{
		ereport(NOTICE,
				(errmsg("contact \"%s\" was not enrolled in sequence \"%s\"", email, sequence),
				 errdetail("%s",
						   why == ENROLL_ACTIVE ? "The contact is already enrolled." :
						   why == ENROLL_DISABLED ? "The sequence is disabled." :
						   "The contact was enrolled before and the sequence does not allow re-entry.")));
		PG_RETURN_NULL();
	}
	automation_fire(MEISA_TRIGGER_SEQUENCE_ENROLLED, contact_id, sequence, NULL, NULL);
	PG_RETURN_INT64(id);
}

/* meisa_unenroll(email text, sequence text) returns boolean */
Datum
meisa_unenroll(PG_FUNCTION_ARGS)
{
	char	   *email,
			   *sequence;
	int64		contact_id;
	bool		found;

	email_sequence_args(fcinfo, &email, &sequence);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	contact_id = contact_by_email(email);
	found = sequence_unenroll_spi(contact_id, sequence);
	SPI_finish();
	PG_RETURN_BOOL(found);
}

/*
 * Checks a conditions value with the automation engine's compiler: an object
 * of the condition language testing the contact's current state (no
 * "event" or "changed*" tests); ERROR 22023 pointing at the offending part.
 */
static void
check_conditions(Datum d, bool isnull, const char *field, const char *owner)
{
	Jsonb	   *jb;
	CondNode   *node;
	MemoryContext cxt,
				old;

	if (isnull)
		return;
	jb = DatumGetJsonbP(d);
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s of %s must be a JSON object", field, owner),
				 errhint("Use the condition language, e.g. {\"has_tag\": \"activated\"}.")));
	cxt = AllocSetContextCreate(CurrentMemoryContext, "meisa condition check",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	node = condition_compile_or_error(jb, field, 0);
	/* a restore may load the segments after the sequences */
	if (check_function_bodies && segment_unknown_ref(node) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("%s of %s: no segment named \"%s\"", field, owner, segment_unknown_ref(node))));
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* BEFORE INSERT OR UPDATE trigger on meisa.sequences: validates the row. */
Datum
meisa_sequence_check(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull,
				start_null,
				end_null;
	char	   *name;
	char	   *owner;
	Datum		d,
				start,
				end;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "meisa.sequence_check() must be a BEFORE ROW trigger");
	tup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = td->tg_relation->rd_att;

	d = trigger_row_value(tup, desc, "name", &isnull);
	name = isnull ? "" : TextDatumGetCString(d);
	if (strspn(name, " \t\r\n") == strlen(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name of a sequence must not be empty")));
	if (strlen(name) > 200)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("name of sequence is too long"),
				 errdetail("A sequence name is at most 200 bytes.")));
	owner = psprintf("sequence \"%s\"", name);

	/*
	 * Only names of the time zone database, as for custom_fields.timezone:
	 * pg_tzset() alone would also take POSIX specifications ("UTC+5"), which
	 * are not zone names (and whose sign is the reverse of ISO 8601's).
	 */
	d = trigger_row_value(tup, desc, "timezone", &isnull);
	if (isnull || send_window_contact_zone(TextDatumGetCString(d)) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timezone of %s is not a known time zone", owner),
				 errhint("Use a name from pg_timezone_names, e.g. \"Europe/Berlin\".")));

	d = trigger_row_value(tup, desc, "send_days", &isnull);
	if (!isnull)
	{
		ArrayType  *arr = DatumGetArrayTypeP(d);
		Datum	   *elems;
		bool	   *nulls;
		int			n,
					i;

		deconstruct_array(arr, INT4OID, 4, true, TYPALIGN_INT, &elems, &nulls, &n);
		if (n == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("send_days of %s must not be empty", owner),
					 errhint("Use null for every day.")));
		for (i = 0; i < n; i++)
			if (nulls[i] || DatumGetInt32(elems[i]) < 1 || DatumGetInt32(elems[i]) > 7)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("send_days of %s must hold ISO week days 1 (Monday) to 7 (Sunday)", owner)));
	}

	start = trigger_row_value(tup, desc, "send_start", &start_null);
	end = trigger_row_value(tup, desc, "send_end", &end_null);
	if (start_null != end_null)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("send_start and send_end of %s must be set together", owner)));
	if (!start_null && DatumGetTimeADT(start) >= DatumGetTimeADT(end))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("send_start of %s must be before send_end", owner),
				 errdetail("A send window opens and closes on the same local day.")));

	d = trigger_row_value(tup, desc, "exit_conditions", &isnull);
	check_conditions(d, isnull, "exit_conditions", owner);

	return PointerGetDatum(trigger_row_touch_updated_at(td, tup));
}

/* BEFORE INSERT OR UPDATE trigger on meisa.sequence_steps: validates the row. */
Datum
meisa_sequence_step_check(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	int32		position;
	char	   *owner;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "meisa.sequence_step_check() must be a BEFORE ROW trigger");
	tup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = td->tg_relation->rd_att;

	d = trigger_row_value(tup, desc, "position", &isnull);
	position = isnull ? 0 : DatumGetInt32(d);
	owner = psprintf("step %d", position);

	d = trigger_row_value(tup, desc, "delay", &isnull);
	if (!isnull)
	{
		Interval   *iv = DatumGetIntervalP(d);

		if (iv->month < 0 || iv->day < 0 || iv->time < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("delay of %s must not be negative", owner)));
	}
	d = trigger_row_value(tup, desc, "conditions", &isnull);
	check_conditions(d, isnull, "conditions", owner);
	return PointerGetDatum(tup);
}
