/*
 * contacts_trigger.c
 *		The triggers of meisa.contacts, which see every write whatever its
 *		path (the API functions, automation actions, plain SQL):
 *		- BEFORE INSERT/UPDATE normalises what a plain statement could get
 *		  wrong: the email (trimmed, lower-cased, validated), the external_id
 *		  (checked like the API's), the tags
 *		  (trimmed, checked, sorted, unique, counted), the custom_fields
 *		  (names, value types, count), the subscription bookkeeping
 *		  (unsubscribe_reason, unsubscribed_at) and updated_at;
 *		  then runs the write's automations in memory when all that they
 *		  do is change this contact (contacts_cascade.c);
 *		- AFTER INSERT/UPDATE computes the change set of the write, records
 *		  an update's in meisa.activity (a creation's is derived from the
 *		  contact by meisa.contact_activity) and fires the automations (contact_created or
 *		  contact_updated, then tag_added/tag_removed once per tag), or
 *		  writes what the in-memory cascade recorded.
 *		Neither keeps state between calls except saved plans, so automation
 *		actions may write contacts again from inside the AFTER trigger.
 */
#include "contacts/contacts.h"
#include "contacts/contacts_write.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(meisa_contacts_before);
PG_FUNCTION_INFO_V1(meisa_contacts_after);


/* ERROR unless called as a row trigger of the expected timing. */
static TriggerData *
check_trigger(FunctionCallInfo fcinfo, bool before)
{
	TriggerData *td;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("meisa contacts trigger functions must be called as triggers")));
	td = (TriggerData *) fcinfo->context;
	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		(before != TRIGGER_FIRED_BEFORE(td->tg_event)) ||
		!(TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("meisa contacts trigger fired at the wrong time")));
	return td;
}

/*
 * BEFORE INSERT OR UPDATE ON meisa.contacts: normalises the email, tags,
 * custom_fields, subscription bookkeeping and updated_at of the new row.
 */
Datum
meisa_contacts_before(PG_FUNCTION_ARGS)
{
	TriggerData *td = check_trigger(fcinfo, true);
	TupleDesc	desc = td->tg_relation->rd_att;
	bool		is_update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);
	HeapTuple	oldtup = is_update ? td->tg_trigtuple : NULL;
	HeapTuple	newtup = is_update ? td->tg_newtuple : td->tg_trigtuple;
	ContactAttrs a;
	int			natts = desc->natts;
	Datum	   *values = palloc0(sizeof(Datum) * natts);
	bool	   *nulls = palloc0(sizeof(bool) * natts);
	bool	   *repl = palloc0(sizeof(bool) * natts);
	bool		any_repl = false;
	bool		tracked = false;
	bool		isnull;
	Datum		d;
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	/* restoring a dump (check_function_bodies off): rows load as dumped */
	if (restore_mode())
		return PointerGetDatum(newtup);

	contact_attrs(desc, &a);

	/* email: trimmed, lower-cased, valid */
	if (column_changed(desc, oldtup, newtup, a.email))
	{
		tracked = true;
		d = heap_getattr(newtup, a.email, desc, &isnull);
		if (!isnull)
		{
			text	   *t = DatumGetTextPP(d);
			int			len = VARSIZE_ANY_EXHDR(t);
			char	   *norm = email_normalize(VARDATA_ANY(t), len, "email");

			if ((int) strlen(norm) != len || memcmp(norm, VARDATA_ANY(t), len) != 0)
			{
				values[a.email - 1] = CStringGetTextDatum(norm);
				repl[a.email - 1] = any_repl = true;
			}
		}
	}

	/* tags: normalised, sorted, unique, counted */
	if (column_changed(desc, oldtup, newtup, a.tags))
	{
		tracked = true;
		d = heap_getattr(newtup, a.tags, desc, &isnull);
		if (!isnull)
		{
			ArrayType  *norm = normalize_tags(DatumGetArrayTypeP(d));

			if (norm != NULL)
			{
				values[a.tags - 1] = PointerGetDatum(norm);
				repl[a.tags - 1] = any_repl = true;
			}
		}
	}

	/* custom_fields: an object of valid names and scalar values */
	if (column_changed(desc, oldtup, newtup, a.custom_fields))
	{
		tracked = true;
		d = heap_getattr(newtup, a.custom_fields, desc, &isnull);
		if (!isnull)
		{
			Jsonb	   *cf = DatumGetJsonbP(d);

			if (JB_ROOT_IS_SCALAR(cf))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("field \"custom_fields\" must be a JSON object")));
			custom_fields_check(&cf->root, false, "custom_fields");
		}
	}

	/* external_id: the same rules as the API's (not empty, no control characters, length) */
	if (column_changed(desc, oldtup, newtup, a.external_id))
	{
		tracked = true;
		d = heap_getattr(newtup, a.external_id, desc, &isnull);
		if (!isnull)
		{
			text	   *t = DatumGetTextPP(d);
			JsonbValue	v;

			v.type = jbvString;
			v.val.string.val = VARDATA_ANY(t);
			v.val.string.len = VARSIZE_ANY_EXHDR(t);
			(void) payload_short_text(&v, "external_id", false);
		}
	}

	if (column_changed(desc, oldtup, newtup, a.first_name) ||
		column_changed(desc, oldtup, newtup, a.last_name) ||
		column_changed(desc, oldtup, newtup, a.bounced_at) ||
		column_changed(desc, oldtup, newtup, a.complained_at) ||
		column_changed(desc, oldtup, newtup, a.unsubscribe_reason))
		tracked = true;

	/* subscription bookkeeping: reason and time of the last change */
	if (column_changed(desc, oldtup, newtup, a.subscribed) || !is_update)
	{
		bool		sub;
		bool		reason_null;

		d = heap_getattr(newtup, a.subscribed, desc, &isnull);
		sub = isnull ? true : DatumGetBool(d);
		if (is_update)
			tracked = true;
		(void) heap_getattr(newtup, a.unsubscribe_reason, desc, &reason_null);
		if (sub && !reason_null)
		{
			nulls[a.unsubscribe_reason - 1] = true;
			repl[a.unsubscribe_reason - 1] = any_repl = true;
		}
		else if (!sub && reason_null)
		{
			values[a.unsubscribe_reason - 1] = CStringGetTextDatum("unsubscribed");
			repl[a.unsubscribe_reason - 1] = any_repl = true;
		}
		if (is_update ? !column_changed(desc, oldtup, newtup, a.unsubscribed_at)
			: (!sub && heap_attisnull(newtup, a.unsubscribed_at, desc)))
		{
			values[a.unsubscribed_at - 1] = TimestampTzGetDatum(now);
			repl[a.unsubscribed_at - 1] = any_repl = true;
		}
	}

	/* updated_at follows every tracked change unless the statement set it */
	if (is_update && tracked && !column_changed(desc, oldtup, newtup, a.updated_at))
	{
		values[a.updated_at - 1] = TimestampTzGetDatum(now);
		repl[a.updated_at - 1] = any_repl = true;
	}

	if (any_repl)
		newtup = heap_modify_tuple(newtup, desc, values, nulls, repl);
	/* the automations that only change this contact apply to it now, in memory */
	newtup = cascade_in_memory(td->tg_relation, &a, oldtup, newtup);
	return PointerGetDatum(newtup);
}

/*
 * AFTER INSERT OR UPDATE ON meisa.contacts: records the change set of the
 * write in meisa.activity and fires the automations, unless the BEFORE
 * trigger ran the write's cascade in memory (contacts_cascade.c): then it
 * writes what that cascade recorded.  Either way the segments are kept
 * current last, against the row as written.
 */
Datum
meisa_contacts_after(PG_FUNCTION_ARGS)
{
	TriggerData *td = check_trigger(fcinfo, false);
	Relation	rel = td->tg_relation;
	TupleDesc	desc = rel->rd_att;
	bool		is_update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);
	HeapTuple	oldtup = is_update ? td->tg_trigtuple : NULL;
	HeapTuple	newtup = is_update ? td->tg_newtuple : td->tg_trigtuple;
	ContactAttrs a;
	WriteChanges wc;
	int64		id;
	bool		isnull;
	Oid			save_userid;
	int			save_sec;
	Oid			owner = rel->rd_rel->relowner;
	Datum		kind;
	Datum		detail;

	/* restoring a dump: the activity and its effects are restored as data */
	if (restore_mode())
		return PointerGetDatum(NULL);

	contact_attrs(desc, &a);
	id = DatumGetInt64(heap_getattr(newtup, a.id, desc, &isnull));
	if (cascade_written(id, desc, oldtup, newtup, owner))
	{
		/* the automations ran in memory: the segments see the written row */
		if (segments_watching() && write_changes(desc, &a, oldtup, newtup, &wc))
			segments_note_change(id, wc.changes, !is_update, NULL);
		return PointerGetDatum(NULL);
	}
	if (!write_changes(desc, &a, oldtup, newtup, &wc))
		return PointerGetDatum(NULL);
	write_capture(id, is_update, wc.changes);

	/* the rest runs as the owner of the contacts table */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	if (save_userid != owner)
		SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);

	/* a creation is no activity row: meisa.contact_activity derives it */
	if (is_update || creation_stored())
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		kind = CStringGetTextDatum(is_update ? "updated" : "created");
		detail = JsonbPGetDatum(wc.changes);
		write_activity(id, 1, &kind, &detail);
		SPI_finish();
	}

	write_fire(id, is_update, &wc);
	/* the segments see the write once its automations ran (docs/segments.md) */
	segments_note_change(id, wc.changes, !is_update, NULL);

	if (save_userid != owner)
		SetUserIdAndSecContext(save_userid, save_sec);
	return PointerGetDatum(NULL);
}
