/*
 * meisa.h
 *		Shared prelude of meisa: the PostgreSQL includes every module uses and
 *		the interfaces between modules (contacts, automations, outbox,
 *		sequences, tokens, delivery).  Each module keeps its private helpers in
 *		its own header beside its .c file.
 */
#ifndef MEISA_H
#define MEISA_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/jsonb.h"

/* ---- module init: each module defines its own GUCs (called from _PG_init) */
extern void contacts_init(void);	/* contacts.c */
extern void template_init(void);	/* mustache.c */
extern void outbox_init(void);		/* outbox.c */
extern void sequence_init(void);	/* sequences.c */
extern void automation_init(void);	/* automation.c */
extern void delivery_init(void);	/* worker.c: delivery GUCs and the worker */
extern void restore_init(void);		/* restore.c */

/* ---- restore.c */

/*
 * True while a dump is being restored: pg_dump/pg_restore scripts turn
 * check_function_bodies off, and only a superuser can restore meisa (the
 * role outside any SECURITY DEFINER function, i.e. after SET ROLE).  Any
 * session may turn the setting off (migration tools do), so for others it
 * never changes what meisa checks and does.
 */
extern bool restore_mode(void);

/* ---- contacts.c */

/*
 * The contact as template and condition data:
 * {"id","email","external_id","first_name","last_name","custom_fields",
 *  "tags","subscribed","created_at","updated_at"}; NULL when no such contact.
 */
extern Jsonb *contact_data_jsonb(int64 contact_id);

/* True when a contact has this id (looked up as the owner of meisa.contacts). */
extern bool contact_exists(int64 contact_id);

/* ---- events.c */

/* True when 'name' (len bytes) matches ^[A-Za-z0-9_.:-]{1,100}$. */
extern bool event_name_valid(const char *name, int len);

/* ---- automation.c: the rule engine */
typedef enum MeisaTrigger
{
	MEISA_TRIGGER_CONTACT_CREATED,
	MEISA_TRIGGER_CONTACT_UPDATED,
	MEISA_TRIGGER_TAG_ADDED,
	MEISA_TRIGGER_TAG_REMOVED,
	MEISA_TRIGGER_CUSTOM_EVENT,
	MEISA_TRIGGER_SEQUENCE_ENROLLED
} MeisaTrigger;

/*
 * Runs the enabled automations whose trigger (and trigger_filter, compared
 * with 'filter': tag, event name or sequence name) matches.  'changes' is the
 * contact's change set (see meisa.jsonb_diff) or NULL, 'properties' the custom
 * event's properties or NULL.  Never throws for a failing automation.
 */
extern void automation_fire(MeisaTrigger trigger, int64 contact_id,
							const char *filter, Jsonb *changes,
							Jsonb *properties);

/* True when 'conditions' (NULL = always) hold for the contact's current state. */
extern bool condition_holds(Jsonb *conditions, int64 contact_id);

/* ---- outbox.c: rendering and queueing messages */
typedef struct MessageSource
{
	const char *required_kind;	/* "transactional"/"marketing" or NULL = any */
	int64		automation_id;	/* 0 = none */
	int64		enrollment_id;	/* 0 = none */
	int64		sequence_id;	/* 0 = none */
	int32		step_position;	/* 0 = none */
	const char *trigger_key;	/* NULL = none */
	const char *idempotency_key;	/* NULL = none */
} MessageSource;

/*
 * Renders template 'template_key' for the contact with 'data' (may be NULL)
 * and queues it in meisa.messages; applies the suppression rules of its kind
 * (the row is then recorded with status 'suppressed' and *suppressed_reason
 * is set).  Returns the message id.
 */
extern int64 outbox_queue(int64 contact_id, const char *template_key,
						  Jsonb *data, const MessageSource *src,
						  char **suppressed_reason);

/* ---- sequences.c */
/* Enrols the contact; returns the enrolment id, 0 when not enrolled (already active, no re-entry). */
extern int64 sequence_enroll(int64 contact_id, const char *sequence_name);
/* Removes the contact's active enrolment; false when there was none. */
extern bool sequence_unenroll(int64 contact_id, const char *sequence_name);

/* ---- token.c */
/* meisa.unsubscribe_base_url followed by a signed token for the contact. */
extern char *unsubscribe_url(int64 contact_id);
/* The contact id a valid unsubscribe token names; ERROR 22023 when invalid or the contact is gone. */
extern int64 unsubscribe_token_contact(const char *token);

/* ---- mime.c */
/* ERROR 22023 naming 'field' when a header value holds CR, LF or NUL. */
extern void mime_check_header_value(const char *value, const char *field);

/* ---- mustache.c: the template engine (see mustache.h for more) */
/* Looks up a partial by name; NULL when there is none (renders as empty). */
typedef const char *(*mustache_partial_fn) (const char *name, void *arg);
/* ERROR 22023 naming 'field' and the line when 'tmpl' is not a valid template. */
extern void mustache_validate(const char *tmpl, const char *field);
/* Renders 'tmpl' with 'data' (may be NULL); partials come from 'partial' (may be NULL). */
extern char *mustache_render_jsonb(const char *tmpl, Jsonb *data,
								   mustache_partial_fn partial, void *arg);

/* ---- worker.c */
/* Wakes the delivery worker when the current transaction commits. */
extern void delivery_wake_at_commit(void);

#endif							/* MEISA_H */
