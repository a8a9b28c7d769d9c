/*
 * automation_actions.c
 *		The actions of an automation: add_tag, remove_tag, set_field (null
 *		removes), enroll, unenroll, send_email (a marketing template through
 *		the outbox, suppression applies), notify (a row in
 *		meisa.notifications and one NOTIFY meisa_notifications per
 *		transaction) and unsubscribe.  Actions that change the contact UPDATE
 *		meisa.contacts, so the contacts trigger fires the automations those
 *		changes cause (cascades), or, when the contact's write runs its
 *		cascade in memory, edit the row about to be written
 *		(contact_cascade_edit).  Every statement is a saved plan.
 */
#include "templates/templates.h"
#include "contacts/contacts.h"
#include "outbox/outbox.h"
#include "automations/automations.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

/* The saved plans of the actions, prepared on first use. */
enum
{
	PLAN_ADD_TAG,
	PLAN_REMOVE_TAG,
	PLAN_SET_FIELD,
	PLAN_NOTIFY,
	PLAN_UNSUBSCRIBE,
	NPLANS
};

static SPIPlanPtr plans[NPLANS];

static const char *const plan_sql[NPLANS] = {
	"UPDATE meisa.contacts SET tags = pg_catalog.array_append(tags, $2) "
	"WHERE id OPERATOR(pg_catalog.=) $1 AND NOT ($2 OPERATOR(pg_catalog.=) ANY (tags))",
	"UPDATE meisa.contacts SET tags = pg_catalog.array_remove(tags, $2) "
	"WHERE id OPERATOR(pg_catalog.=) $1 AND $2 OPERATOR(pg_catalog.=) ANY (tags)",
	"UPDATE meisa.contacts SET custom_fields = "
	"(custom_fields OPERATOR(pg_catalog.-) $2) OPERATOR(pg_catalog.||) $3 "
	"WHERE id OPERATOR(pg_catalog.=) $1 AND custom_fields OPERATOR(pg_catalog.<>) "
	"((custom_fields OPERATOR(pg_catalog.-) $2) OPERATOR(pg_catalog.||) $3)",
	"INSERT INTO meisa.notifications (contact_id, channel, message) VALUES ($1, $2, $3)",
	"UPDATE meisa.contacts SET subscribed = false, unsubscribe_reason = 'unsubscribed', "
	"unsubscribed_at = pg_catalog.now() WHERE id OPERATOR(pg_catalog.=) $1 AND subscribed",
};

static const int plan_nargs[NPLANS] = {2, 2, 3, 3, 1};

/*
 * A NOTIFY meisa_notifications is owed at commit: the lowest transaction
 * nesting level that wrote a notifications row still alive (0 = none).  A
 * rolled-back subtransaction (an automation's own, or the application's
 * ROLLBACK TO SAVEPOINT) takes its rows and its NOTIFY with it.
 */
static int	notify_level = 0;

/* Sends the owed NOTIFY before commit; forgets it when a transaction ends. */
static void
notify_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (notify_level > 0)
			{
				notify_level = 0;
				Async_Notify("meisa_notifications", "");
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PRE_PREPARE:
		case XACT_EVENT_COMMIT:
			notify_level = 0;
			break;
		default:
			break;
	}
}

/* Moves the owed NOTIFY to the parent on subcommit; drops it on subabort. */
static void
notify_subxact_callback(SubXactEvent event,
							SubTransactionId mySubid pg_attribute_unused(),
							SubTransactionId parentSubid pg_attribute_unused(),
							void *arg pg_attribute_unused())
{
	int			level = GetCurrentTransactionNestLevel();

	if (notify_level < level)
		return;					/* owed by an outer level: unaffected */
	if (event == SUBXACT_EVENT_COMMIT_SUB)
		notify_level = level - 1;
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		notify_level = 0;
}

/* Sends the one NOTIFY meisa_notifications of this transaction at commit. */
static void
notify_at_commit(void)
{
	int			level = GetCurrentTransactionNestLevel();

	if (notify_level == 0 || level < notify_level)
		notify_level = level;
}

/* Registers the callbacks that send or drop the owed NOTIFY (once per backend). */
void
automation_actions_init(void)
{
	RegisterXactCallback(notify_xact_callback, NULL);
	RegisterSubXactCallback(notify_subxact_callback, NULL);
}

/* Runs saved plan 'which' with 'values' in an SPI connection of its own. */
static void
run_plan(int which, Datum *values)
{
	static const Oid types[NPLANS][3] = {
		{INT8OID, TEXTOID},
		{INT8OID, TEXTOID},
		{INT8OID, TEXTARRAYOID, JSONBOID},
		{INT8OID, TEXTOID, TEXTOID},
		{INT8OID},
	};
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	if (plans[which] == NULL)
	{
		plans[which] = spi_keep_plan(plan_sql[which], plan_nargs[which],
									 types[which]);
	}
	rc = SPI_execute_plan(plans[which], values, NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "meisa: action failed: %s", SPI_result_code_string(rc));
	SPI_finish();
}

/* The data a notify message is rendered with: the contact plus "data". */
static Jsonb *
notify_data(int64 contact_id, Jsonb *properties)
{
	Jsonb	   *contact = contact_data_jsonb(contact_id);
	JsonbParseState *state = NULL;
	JsonbValue	k,
				v;
	Jsonb	   *extra;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "data";
	k.val.string.len = 4;
	pushJsonbValue(&state, WJB_KEY, &k);
	if (properties && !JB_ROOT_IS_SCALAR(properties))
	{
		v.type = jbvBinary;
		v.val.binary.data = &properties->root;
		v.val.binary.len = VARSIZE(properties) - VARHDRSZ;
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	else
	{
		pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
		pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	}
	extra = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
	if (contact == NULL)
		return extra;
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(contact),
											  JsonbPGetDatum(extra)));
}

/* Runs one action for a contact; raises an error when it fails. */
void
automation_run_action(const Automation *a, const AutomationAction *act,
					  int64 contact_id, Jsonb *properties)
{
	Datum		values[3];

	values[0] = Int64GetDatum(contact_id);
	switch (act->kind)
	{
		case ACT_ADD_TAG:
		case ACT_REMOVE_TAG:
			values[1] = CStringGetTextDatum(act->name);
			run_plan(act->kind == ACT_ADD_TAG ? PLAN_ADD_TAG : PLAN_REMOVE_TAG, values);
			break;
		case ACT_SET_FIELD:
			{
				Datum	   *names = palloc(sizeof(Datum) * Max(act->nremove, 1));

				for (int i = 0; i < act->nremove; i++)
					names[i] = CStringGetTextDatum(act->remove[i]);
				values[1] = PointerGetDatum(construct_array(names, act->nremove, TEXTOID,
															-1, false, TYPALIGN_INT));
				values[2] = JsonbPGetDatum(act->set_values);
				run_plan(PLAN_SET_FIELD, values);
				break;
			}
		case ACT_ENROLL:
			sequence_enroll(contact_id, act->name);
			break;
		case ACT_UNENROLL:
			sequence_unenroll(contact_id, act->name);
			break;
		case ACT_SEND_EMAIL:
			{
				MessageSource src;
				char	   *reason = NULL;

				memset(&src, 0, sizeof(src));
				src.required_kind = "marketing";
				src.automation_id = a->id;
				outbox_queue(contact_id, act->name, properties, &src, &reason);
				break;
			}
		case ACT_NOTIFY:
			{
				char	   *message = mustache_render_jsonb_plain(act->message,
															notify_data(contact_id, properties),
															NULL, NULL);

				values[1] = CStringGetTextDatum(act->channel);
				values[2] = CStringGetTextDatum(message);
				run_plan(PLAN_NOTIFY, values);
				notify_at_commit();
				break;
			}
		case ACT_UNSUBSCRIBE:
			run_plan(PLAN_UNSUBSCRIBE, values);
			break;
	}
}

/* True when the action changes only its contact (add_tag, remove_tag, set_field). */
bool
automation_action_edits_contact(const AutomationAction *act)
{
	return act->kind == ACT_ADD_TAG || act->kind == ACT_REMOVE_TAG ||
		act->kind == ACT_SET_FIELD;
}

/* Applies such an action to the contact whose write's cascade runs in memory. */
void
automation_edit_contact(const AutomationAction *act, int64 contact_id)
{
	Datum	   *names;

	switch (act->kind)
	{
		case ACT_ADD_TAG:
			contact_cascade_edit(contact_id, CONTACT_EDIT_ADD_TAG, act->name, NULL, NULL);
			break;
		case ACT_REMOVE_TAG:
			contact_cascade_edit(contact_id, CONTACT_EDIT_REMOVE_TAG, act->name, NULL, NULL);
			break;
		case ACT_SET_FIELD:
			names = palloc(sizeof(Datum) * Max(act->nremove, 1));
			for (int i = 0; i < act->nremove; i++)
				names[i] = CStringGetTextDatum(act->remove[i]);
			contact_cascade_edit(contact_id, CONTACT_EDIT_SET_FIELD, NULL,
								 construct_array(names, act->nremove, TEXTOID,
												 -1, false, TYPALIGN_INT),
								 act->set_values);
			break;
		default:
			elog(ERROR, "meisa: action %d does not only edit the contact", (int) act->kind);
	}
}
