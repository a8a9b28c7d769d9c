/*
 * hooks.c
 *		The calls up the stages.  The contacts stage (a contact written, a
 *		custom event) and the outbox (a sequence enrolment) fire automations,
 *		and the automation engine sits above both: they call
 *		automation_fire(), which goes through the hook the engine sets when
 *		the module loads.  The contacts stage also runs a write's automations
 *		in memory (automation_in_memory(), and automation_runs_write() for
 *		the runs it kept), and keeps the segments current
 *		(segments_note_change(), through the hook the segments stage sets).
 *		meisa_run_due (the outbox) queues due broadcasts through
 *		broadcasts_run(), the hook of the broadcasts stage above it.
 *		So no lower stage includes a higher one.
 */
#include "common/common.h"

automation_fire_fn automation_fire_hook = NULL;
automation_in_memory_fn automation_in_memory_hook = NULL;
automation_runs_write_fn automation_runs_write_hook = NULL;

/* Runs the automations of a trigger through the engine's hook (none before it is set). */
void
automation_fire(MeisaTrigger trigger, int64 contact_id, const char *filter,
				Jsonb *changes, Jsonb *properties)
{
	if (automation_fire_hook != NULL)
		automation_fire_hook(trigger, contact_id, filter, changes, properties);
}

segments_changed_fn segments_changed_hook = NULL;
segments_watching_fn segments_watching_hook = NULL;

/* True when an enabled segment may need a write's change set (false before the hook is set). */
bool
segments_watching(void)
{
	return segments_watching_hook != NULL && segments_watching_hook();
}

/* Keeps the segments current after a contact write or event (nothing before the hook is set). */
void
segments_note_change(int64 contact_id, Jsonb *changes, bool created, const char *event)
{
	if (segments_changed_hook != NULL)
		segments_changed_hook(contact_id, changes, created, event);
}

/* Runs a write's automations in memory through the engine's hook; false without an engine. */
bool
automation_in_memory(int64 contact_id, spi_step_fn fire, void *arg, List **runs)
{
	*runs = NIL;
	if (automation_in_memory_hook == NULL)
		return false;
	return automation_in_memory_hook(contact_id, fire, arg, runs);
}

/* Writes the runs an in-memory cascade kept, through the engine's hook. */
void
automation_runs_write(List *runs)
{
	if (runs != NIL && automation_runs_write_hook != NULL)
		automation_runs_write_hook(runs);
}

broadcasts_run_fn broadcasts_run_hook = NULL;
bool		broadcasts_work_left = false;

/* Queues the next batch of every due broadcast through the stage's hook (0 before it is set). */
int64
broadcasts_run(TimestampTz at)
{
	broadcasts_work_left = false;
	if (broadcasts_run_hook == NULL)
		return 0;
	return broadcasts_run_hook(at);
}
