/*
 * outbox.h
 *		Private helpers of the outbox (outbox.c), the template checks
 *		(templates.c), meisa_trigger_email (trigger_email.c) and the sequence
 *		runner (sequences.c, rundue.c): template rows, the contact's delivery
 *		state and the SPI plan cache they share.
 */
#ifndef MEISA_OUTBOX_H
#define MEISA_OUTBOX_H

#include "meisa.h"

#include "executor/spi.h"

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

/* What the outbox needs to know about a contact to queue mail to it. */
typedef struct ContactState
{
	int64		id;
	char	   *email;
	bool		subscribed;
	bool		bounced;
	bool		complained;
} ContactState;

/* Keeps 'plan' for the life of the backend (SPI_prepare + SPI_keepplan). */
extern SPIPlanPtr outbox_keep_plan(const char *sql, int nargs, Oid *argtypes);

/* Loads a template by key; NULL when there is none. */
extern TemplateRow *template_lookup(const char *key);

/* The id of the contact with this email (trimmed, lower-cased), or 0 (SPI connected). */
extern int64 contact_id_by_email(const char *email);

/* Loads the contact's delivery state; false when there is no such contact. */
extern bool contact_state_lookup(int64 contact_id, ContactState *cs);

/*
 * The suppression reason for mail of 'kind' to the contact ("bounced",
 * "complained", "unsubscribed") or NULL when the mail may be sent.
 */
extern const char *outbox_suppression_reason(const ContactState *cs,
											 const char *kind);

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

#endif							/* MEISA_OUTBOX_H */
