/*
 * automation_validate.c
 *		Triggers on meisa.automations: the row validator (BEFORE INSERT OR
 *		UPDATE), which compiles the rule and rejects it with ERROR 22023 naming
 *		the offending part (42704 for an unknown sequence or template, 54000
 *		for an action over a contact limit that would fail every run), and the
 *		statement trigger that invalidates every backend's rule cache through
 *		the relcache when the table changes.
 */
#include "templates/templates.h"
#include "contacts/contacts.h"
#include "segments/segments.h"
#include "automations/automations.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(meisa_automations_validate);
PG_FUNCTION_INFO_V1(meisa_automations_changed);

/* A jsonb column of the row, or NULL. */
static Jsonb *
row_jsonb(HeapTuple tuple, TupleDesc desc, const char *column)
{
	bool		isnull;
	Datum		d = trigger_row_value(tuple, desc, column, &isnull);

	return isnull ? NULL : DatumGetJsonbP(d);
}

/* Runs a one-parameter lookup; returns the first column as text or NULL when no row. */
static char *
lookup_text(const char *sql, const char *param, bool *found)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *result = NULL;

	values[0] = CStringGetTextDatum(param);
	if (SPI_execute_with_args(sql, 1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: lookup failed: %s", sql);
	*found = (SPI_processed > 0);
	if (*found)
		result = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return result;
}

/* Raises ERROR 42704: the automation's 'part' names no 'what' called 'missing'. */
static void
unknown_row(const char *automation, const char *part, const char *what, const char *missing)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("invalid automation \"%s\": %s: no %s named \"%s\"", automation, part, what, missing),
			 errdetail("%s: no %s named \"%s\"", part, what, missing)));
}

/* Raises unknown_row unless the lookup 'sql' finds 'key' (SPI connected). */
static void
require_row(const char *sql, const char *key, const char *automation, const char *part,
			const char *what)
{
	bool		found;

	lookup_text(sql, key, &found);
	if (!found)
		unknown_row(automation, part, what, key);
}

/* Checks the sequences and templates the actions name. */
static void
check_references(const Automation *a, const char *name)
{
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	if (a->trigger == MEISA_TRIGGER_SEQUENCE_ENROLLED && a->filter)
		require_row("SELECT name FROM meisa.sequences WHERE name OPERATOR(pg_catalog.=) $1",
					a->filter, name, "trigger_filter", "sequence");
	if ((a->trigger == MEISA_TRIGGER_SEGMENT_ENTERED || a->trigger == MEISA_TRIGGER_SEGMENT_EXITED) &&
		a->filter)
		require_row("SELECT name FROM meisa.segments WHERE name OPERATOR(pg_catalog.=) $1",
					a->filter, name, "trigger_filter", "segment");
	if (segment_unknown_ref(a->cond) != NULL)
		unknown_row(name, "conditions", "segment", segment_unknown_ref(a->cond));
	for (int i = 0; i < a->nactions; i++)
	{
		const AutomationAction *act = &a->actions[i];

		if (act->kind == ACT_ENROLL || act->kind == ACT_UNENROLL)
		{
			const char *what = act->kind == ACT_ENROLL ? "enroll" : "unenroll";

			require_row("SELECT name FROM meisa.sequences WHERE name OPERATOR(pg_catalog.=) $1",
						act->name, name, psprintf("actions[%d].%s", i, what), "sequence");
		}
		else if (act->kind == ACT_SEND_EMAIL)
		{
			char	   *kind = lookup_text("SELECT kind FROM meisa.templates WHERE key OPERATOR(pg_catalog.=) $1",
										   act->name, &found);

			if (!found)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_OBJECT),
						 errmsg("invalid automation \"%s\": actions[%d].send_email: no template with key \"%s\"",
								name, i, act->name),
						 errdetail("actions[%d].send_email: no template with key \"%s\"", i, act->name)));
			if (strcmp(kind, "marketing") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid automation \"%s\": actions[%d].send_email: template \"%s\" is %s, automations send marketing templates",
								name, i, act->name, kind),
						 errdetail("actions[%d].send_email: template \"%s\" is %s, automations send marketing templates",
								   i, act->name, kind),
						 errhint("Transactional mail is sent by meisa_trigger_email().")));
		}
		else if (act->kind == ACT_NOTIFY)
		{
			char	   *field = psprintf("actions[%d].notify.message", i);

			mustache_validate(act->message, field);
		}
	}
	SPI_finish();
}

static void action_error(int sqlstate, const char *name, const char *problem) pg_attribute_noreturn();

/* ERROR with the validator's form: "invalid automation \"name\": PATH: problem". */
static void
action_error(int sqlstate, const char *name, const char *problem)
{
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("invalid automation \"%s\": %s", name, problem),
			 errdetail("%s", problem)));
}

/*
 * Rejects actions that would fail on every run against the limits a contact
 * write is checked with (payload.c): a tag that tag_normalize() refuses
 * (empty after trimming, over meisa.max_tag_length, control characters) in
 * add_tag or remove_tag, and a set_field that sets more custom fields than
 * meisa.max_custom_fields allows a contact to have.
 */
static void
check_action_limits(const Automation *a, const char *name)
{
	for (int i = 0; i < a->nactions; i++)
	{
		const AutomationAction *act = &a->actions[i];

		if (act->kind == ACT_ADD_TAG || act->kind == ACT_REMOVE_TAG)
		{
			const char *what = act->kind == ACT_ADD_TAG ? "add_tag" : "remove_tag";
			int			start,
						tlen;

			switch (tag_problem(act->name, strlen(act->name), &start, &tlen))
			{
				case TAG_EMPTY:
					action_error(ERRCODE_INVALID_PARAMETER_VALUE, name,
								 psprintf("actions[%d].%s: the tag is blank (tags hold at least one character besides spaces)", i, what));
					break;
				case TAG_TOO_LONG:
					action_error(ERRCODE_PROGRAM_LIMIT_EXCEEDED, name,
								 psprintf("actions[%d].%s: the tag has %d characters, meisa.max_tag_length allows %d",
										  i, what, pg_mbstrlen_with_len(act->name + start, tlen),
										  meisa_max_tag_length));
					break;
				case TAG_CONTROL:
					action_error(ERRCODE_INVALID_PARAMETER_VALUE, name,
								 psprintf("actions[%d].%s: the tag holds a control character", i, what));
					break;
				case TAG_OK:
					break;
			}
		}
		else if (act->kind == ACT_SET_FIELD)
		{
			int			nset = JB_ROOT_COUNT(act->set_values);

			if (nset > meisa_max_custom_fields)
				action_error(ERRCODE_PROGRAM_LIMIT_EXCEEDED, name,
							 psprintf("actions[%d].set_field: sets %d custom fields, meisa.max_custom_fields allows %d",
									  i, nset, meisa_max_custom_fields));
		}
	}
}

/*
 * meisa.automations_validate(): BEFORE INSERT OR UPDATE row trigger that
 * rejects an invalid automation and keeps updated_at current.
 */
Datum
meisa_automations_validate(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	Automation	a;
	char	   *name,
			   *trigger,
			   *error;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "meisa.automations_validate() must be a BEFORE ROW trigger");
	tuple = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);

	name = trigger_row_text(tuple, desc, "name");
	trigger = trigger_row_text(tuple, desc, "trigger");
	if (name == NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid automation: name: must not be empty"),
				 errdetail("name: must not be empty")));
	if (trigger == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid automation \"%s\": trigger: is required", name),
				 errdetail("trigger: is required")));
	memset(&a, 0, sizeof(a));
	if (!automation_compile(&a, trigger, trigger_row_text(tuple, desc, "trigger_filter"),
							row_jsonb(tuple, desc, "conditions"),
							row_jsonb(tuple, desc, "actions"), &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid automation \"%s\": %s", name, error),
				 errdetail("%s", error),
				 errhint("See the rule language in the automations documentation.")));
	/*
	 * pg_dump and pg_restore run with check_function_bodies = false: a
	 * restored rule may name sequences and templates restored after it, and
	 * loads as dumped whatever the limits of the restoring session.
	 */
	if (check_function_bodies)
	{
		check_action_limits(&a, name);
		check_references(&a, name);
	}

	return PointerGetDatum(trigger_row_touch_updated_at(td, tuple));
}

/*
 * meisa.automations_changed(): AFTER statement trigger that invalidates the
 * rule cache of every backend (relcache invalidation of meisa.automations).
 */
Datum
meisa_automations_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "meisa.automations_changed() must be a trigger");
	CacheInvalidateRelcache(td->tg_relation);
	return PointerGetDatum(NULL);
}
