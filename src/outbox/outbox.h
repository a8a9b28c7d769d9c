/*
 * outbox.h
 *		The outbox stage: rendering and queueing messages (outbox.c), the
 *		template checks (template_check.c), meisa_trigger_email (trigger_email.c),
 *		sequence enrolment (sequences.c) and the sequence runner (rundue.c).
 */
#ifndef MEISA_OUTBOX_H
#define MEISA_OUTBOX_H

#include "contacts/contacts.h"
#include "policy/policy.h"

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
	const char *topic;			/* the sequence's or broadcast's; NULL = the template's */
	int64		broadcast_id;	/* 0 = none */
	TimestampTz not_before;		/* earliest send (0 = now) */
	TimestampTz now;			/* the clock of meisa.frequency_cap (0 = the transaction's start) */
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
	char	   *topic;			/* NULL when none */
} TemplateRow;

/* A template rendered for a contact: what a meisa.messages row keeps. */
typedef struct RenderedMessage
{
	char	   *subject;
	char	   *html;			/* NULL when the template has none */
	char	   *text;			/* NULL when the template has none */
	const char *from;			/* the sender, NULL = none configured */
	const char *domain;			/* of the Message-ID */
	char	   *random;			/* left part of the Message-ID */
} RenderedMessage;

/*
 * Renders template 't' for the contact (its data 'contact' as
 * contact_data_jsonb gives it, or NULL to read it) with 'data' (may be NULL)
 * and the unsubscribe link of 'topic_id' (0 = all marketing mail); checks
 * every header value.  ERROR naming the template and part on failure.
 */
extern void outbox_render(const ContactState *cs, const TemplateRow *t, Jsonb *contact,
						  Jsonb *data, int64 topic_id, RenderedMessage *out);

/* When a message of 'kind' queued for the contact may first be sent, at or after 'at' (quiet hours). */
extern TimestampTz outbox_first_attempt(const ContactState *cs, const char *kind, TimestampTz at);

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

#endif							/* MEISA_OUTBOX_H */
