/*
 * automations.h
 *		The automation engine, the top of the write path: a compiled automation
 *		(trigger, filter, condition tree, actions), the per-backend rule cache,
 *		the action compiler shared by the row validator and the cache, and
 *		the action runner.
 */
#ifndef MEISA_AUTOMATIONS_H
#define MEISA_AUTOMATIONS_H

#include "common/common.h"
#include "conditions/conditions.h"

#define MEISA_NTRIGGERS 8

/*
 * Defines the automation settings, registers the engine's callbacks and sets
 * automation_fire_hook (called from _PG_init).
 */
extern void automation_init(void);

typedef enum ActionKind
{
	ACT_ADD_TAG,
	ACT_REMOVE_TAG,
	ACT_SET_FIELD,
	ACT_ENROLL,
	ACT_UNENROLL,
	ACT_SEND_EMAIL,
	ACT_NOTIFY,
	ACT_UNSUBSCRIBE
} ActionKind;

/* One compiled action. */
typedef struct AutomationAction
{
	ActionKind	kind;
	char	   *name;			/* tag, sequence name or template key */
	Jsonb	   *set_values;		/* set_field: {"name": value} of fields to set */
	int			nremove;		/* set_field: custom field names to remove */
	char	  **remove;
	char	   *channel;		/* notify */
	char	   *message;		/* notify: Mustache template */
} AutomationAction;

/* One compiled automation. */
typedef struct Automation
{
	int64		id;
	char	   *name;
	MeisaTrigger trigger;
	char	   *filter;			/* trigger_filter or NULL */
	CondNode   *cond;			/* NULL = always */
	int			nactions;
	AutomationAction *actions;
	char	   *broken;			/* compile error of a stored row, or NULL */
} Automation;

/* The trigger named 'name'; false when there is none. */
extern bool automation_trigger_from_name(const char *name, MeisaTrigger *trigger);
/* The name of a trigger. */
extern const char *automation_trigger_name(MeisaTrigger trigger);

/*
 * Compiles an automation's parts into 'a' (in the current memory context);
 * false with *error = "PATH: message" when invalid.  No catalog lookups.
 */
extern bool automation_compile(Automation *a, const char *trigger,
							   const char *filter, Jsonb *conditions,
							   Jsonb *actions, char **error);

/*
 * The enabled automations of a trigger in run order (position, id), from the
 * per-backend cache; *n is their number.  Loads the cache when invalid.  When
 * *n > 0 the cache is pinned until automation_cache_release().
 */
extern Automation *automation_cache_get(MeisaTrigger trigger, int *n);
/* Unpins the cache pinned by automation_cache_get(). */
extern void automation_cache_release(void);
/* The role automations act as (the owner of meisa.automations). */
extern Oid	automation_cache_owner(void);
/* Forgets pins after an aborted transaction. */
extern void automation_cache_reset_pins(void);

/* Registers the cache invalidation callback (once per backend). */
extern void automation_cache_init(void);

/* Runs one action for a contact; raises an error when it fails. */
extern void automation_run_action(const Automation *a, const AutomationAction *act,
								  int64 contact_id, Jsonb *properties);

/* Registers the callbacks of the notify action's NOTIFY (once per backend). */
extern void automation_actions_init(void);

/* True when the action changes only its contact (add_tag, remove_tag, set_field). */
extern bool automation_action_edits_contact(const AutomationAction *act);
/* Applies such an action to the contact whose write's cascade runs in memory. */
extern void automation_edit_contact(const AutomationAction *act, int64 contact_id);

#endif							/* MEISA_AUTOMATIONS_H */
