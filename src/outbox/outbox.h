/*
 * outbox.h
 *		The outbox stage: rendering and queueing messages (outbox.c), the
 *		template checks (template_check.c), meisa_trigger_email (trigger_email.c),
 *		sequence enrolment (sequences.c), the send window (sendwindow.c) and
 *		the sequence runner (rundue.c).
 */
#ifndef MEISA_OUTBOX_H
#define MEISA_OUTBOX_H

#include "contacts/contacts.h"

#include "executor/spi.h"
#include "pgtime.h"
#include "utils/timestamp.h"

/* Define the outbox and sequence settings (called from _PG_init). */
extern void outbox_init(void);
extern void sequence_init(void);

/* ---- outbox.c, template_check.c: rendering and queueing messages */

/* Where a queued message comes from. */
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


/* A row of meisa.templates, copied into the caller's memory context. */
typedef struct TemplateRow
{
	char	   *key;
	char	   *kind;			/* "transactional" or "marketing" */
	char	   *subject;
	char	   *html;			/* NULL when absent */
	char	   *text;			/* NULL when absent */
	char	   *from;			/* NULL when absent */
	char	   *reply_to;		/* NULL when absent */
} TemplateRow;

/* Loads a template by key; NULL when there is none. */
extern TemplateRow *template_lookup(const char *key);

/* outbox_queue for a contact whose state the caller already loaded. */
extern int64 outbox_queue_contact(const ContactState *cs,
								  const char *template_key, Jsonb *data,
								  const MessageSource *src,
								  char **suppressed_reason);

/*
 * The message queued earlier with (trigger_key, idempotency_key), or 0;
 * sets *status, *last_error and (unless NULL) *to_email from it.
 */
extern int64 outbox_idempotent_message(const char *trigger_key, const char *idem,
									   char **status, char **last_error,
									   char **to_email);

/* outbox_queue_contact with the template row already loaded. */
extern int64 outbox_queue_template(const ContactState *cs, const TemplateRow *t,
								   Jsonb *data, const MessageSource *src,
								   char **suppressed_reason);

/* Checks a template key (22023 naming the field when malformed). */
extern void template_check_key(const char *key, const char *field);

/* ---- sequences.c, sendwindow.c, rundue.c: sequences */

/* Enrols the contact; returns the enrolment id, 0 when not enrolled (already active, no re-entry). */
extern int64 sequence_enroll(int64 contact_id, const char *sequence_name);
/* Removes the contact's active enrolment; false when there was none. */
extern bool sequence_unenroll(int64 contact_id, const char *sequence_name);

/* meisa.run_due_batch_size: enrolments locked and advanced per batch. */
extern int	meisa_run_due_batch_size;
/* meisa.sequence_retry_delay (seconds): wait after a failed enrolment run. */
extern int	meisa_sequence_retry_delay;

/* A send window: ISO days as a bit mask (bit 1 = Monday .. bit 7 = Sunday). */
typedef struct SendWindow
{
	int			days_mask;		/* 0 = every day */
	int64		start_us;		/* local opening, microseconds after midnight */
	int64		end_us;			/* local closing (exclusive) */
} SendWindow;

/*
 * The first instant at or after 'at' inside the window, in time zone 'tz':
 * 'at' itself when the window is open then.
 */
extern TimestampTz send_window_next(TimestampTz at, pg_tz *tz, const SendWindow *w);

/* The time zone named 'name', or NULL when it is unknown (never throws). */
extern pg_tz *send_window_zone(const char *name);

/* The zone a contact's custom_fields.timezone names: database names only. */
extern pg_tz *send_window_contact_zone(const char *name);

#endif							/* MEISA_OUTBOX_H */
