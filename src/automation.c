/*
 * automation.c
 *		The automation engine: triggers, conditions and actions.
 *		(Skeleton: filled in by the automation work.)
 */
#include "meisa.h"

/* Defines the automation settings. */
void
automation_init(void)
{
}

/* Runs the automations matching a trigger (skeleton: none yet). */
void
automation_fire(MeisaTrigger trigger, int64 contact_id, const char *filter,
				Jsonb *changes, Jsonb *properties)
{
}

/* Evaluates conditions against a contact (skeleton: always true). */
bool
condition_holds(Jsonb *conditions, int64 contact_id)
{
	return true;
}
