/*
 * restore.c
 *		Restoring a dump.  pg_dump and pg_restore turn check_function_bodies
 *		off, and while it is off in a superuser's session meisa is in restore
 *		mode: rows load as dumped (see contacts_trigger.c).
 *
 *		The foreign keys between meisa's tables belong to the extension, so
 *		CREATE EXTENSION creates them before any data is loaded.  pg_dump
 *		orders the data of an extension's tables by their foreign keys only
 *		in the archive's entry order: a TABLE DATA entry depends on its table
 *		alone.  pg_restore -j schedules the entries by their dependencies,
 *		so its workers load meisa.events before meisa.contacts, or
 *		meisa.automation_runs before meisa.automations, and the COPY fails
 *		on the foreign key.  The statement triggers *_restore_load (BEFORE
 *		INSERT) and *_restore_load_end (AFTER INSERT, ENABLE REPLICA) on
 *		every meisa table with a foreign key therefore run the statement of
 *		a restore-mode session with session_replication_role = replica,
 *		as pg_restore --disable-triggers would: the rows are not checked
 *		against rows that may not be loaded yet, and no row trigger fires.
 *		The switch is local to the statement: the end trigger undoes it, an
 *		error undoes it with the (sub)transaction.  In any other session the
 *		foreign keys are checked as usual.
 */
#include "common/common.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/guc.h"

PG_FUNCTION_INFO_V1(meisa_restore_load);

/* transaction nest level whose statement runs as replica (0 = none) */
static int	switched_level = 0;

/* session_replication_role before the switch */
static char saved_role[NAMEDATALEN];

/* True in restore mode: check_function_bodies off, outer user a superuser. */
bool
restore_mode(void)
{
	return !check_function_bodies && superuser_arg(GetOuterUserId());
}

/* Sets session_replication_role for the rest of the transaction at most. */
static void
set_replication_role(const char *value)
{
	(void) set_config_option("session_replication_role", value,
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
							 true, 0, false);
}

/*
 * Trigger meisa.restore_load(): BEFORE INSERT FOR EACH STATEMENT it switches
 * a restore-mode session to replica for the statement; AFTER INSERT FOR EACH
 * STATEMENT (enabled REPLICA, so it fires in replica mode) it switches back.
 */
Datum
meisa_restore_load(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("meisa.restore_load() must be fired FOR EACH STATEMENT on INSERT")));

	if (TRIGGER_FIRED_BEFORE(td->tg_event))
	{
		if (SessionReplicationRole != SESSION_REPLICATION_ROLE_REPLICA &&
			restore_mode())
		{
			strlcpy(saved_role, GetConfigOption("session_replication_role", false, false),
					sizeof(saved_role));
			set_replication_role("replica");
			switched_level = GetCurrentTransactionNestLevel();
		}
	}
	else if (switched_level == GetCurrentTransactionNestLevel() &&
			 SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
	{
		switched_level = 0;
		set_replication_role(saved_role);
	}
	return PointerGetDatum(NULL);
}

/* The switch ends with the transaction (GUC_ACTION_LOCAL). */
static void
restore_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			switched_level = 0;
			break;
		default:
			break;
	}
}

/* An aborted subtransaction undoes a switch made inside it; a committed one passes it up. */
static void
restore_subxact_callback(SubXactEvent event,
						 SubTransactionId mySubid pg_attribute_unused(),
						 SubTransactionId parentSubid pg_attribute_unused(),
						 void *arg pg_attribute_unused())
{
	int			level = GetCurrentTransactionNestLevel();

	if (switched_level < level)
		return;					/* made by an outer level: unaffected */
	if (event == SUBXACT_EVENT_ABORT_SUB)
		switched_level = 0;
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		switched_level = level - 1;
}

/* Registers the callbacks that forget a switch its (sub)transaction undid. */
void
restore_init(void)
{
	RegisterXactCallback(restore_xact_callback, NULL);
	RegisterSubXactCallback(restore_subxact_callback, NULL);
}
