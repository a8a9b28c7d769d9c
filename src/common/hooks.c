/*
 * hooks.c
 *		The two calls up the stages.  The contacts stage (a contact written, a
 *		custom event) and the outbox (a sequence enrolment) fire automations,
 *		and the automation engine sits above both: they call
 *		automation_fire(), which goes through the hook the engine sets when
 *		the module loads.  The contacts stage keeps the segments current, and
 *		the segments stage sits above it: segments_note_change() goes through
 *		the hook that stage sets.  So no lower stage includes a higher one.
 */
#include "common/common.h"

automation_fire_fn automation_fire_hook = NULL;

/* Runs the automations of a trigger through the engine's hook (none before it is set). */
void
automation_fire(MeisaTrigger trigger, int64 contact_id, const char *filter,
				Jsonb *changes, Jsonb *properties)
{
	if (automation_fire_hook != NULL)
		automation_fire_hook(trigger, contact_id, filter, changes, properties);
}

segments_changed_fn segments_changed_hook = NULL;

/* Keeps the segments current after a contact write or event (nothing before the hook is set). */
void
segments_note_change(int64 contact_id, Jsonb *changes, bool created, const char *event)
{
	if (segments_changed_hook != NULL)
		segments_changed_hook(contact_id, changes, created, event);
}
