/*
 * delivery.h
 *		The delivery stage: the background worker's loop (worker.c), its
 *		settings (settings.c) and waking it (wake.c), message assembly
 *		(mime.c), the SMTP client (smtp.c: one session; smtp_multi.c:
 *		several at once), the claim/send/settle cycle
 *		(delivery.c), unsubscribe tokens (token.c) and the secrets read from
 *		files (secret.c).
 */
#ifndef MEISA_DELIVERY_H
#define MEISA_DELIVERY_H

#include "common/common.h"

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

/* Defines the delivery settings and, when preloaded, registers the worker (called from _PG_init). */
extern void delivery_init(void);

/* ---- wake.c: waking the worker */

/* Wakes the delivery worker when the current transaction commits. */
extern void delivery_wake_at_commit(void);
/* Asks for the shared state where the worker's latch is (while preloading). */
extern void delivery_shmem_init(void);
/* In the worker: sets am_delivery_worker and publishes its latch until it exits. */
extern void delivery_worker_publish(void);

/* True in the delivery background worker process. */
extern bool am_delivery_worker;

/* ---- settings.c */

/* Defines the delivery settings, the secret files' among them. */
extern void delivery_settings_init(void);

extern char *meisa_database;
extern char *meisa_smtp_url;
extern char *meisa_smtp_user;
extern char *meisa_from_address;
extern char *meisa_unsubscribe_base_url;
extern char *meisa_smtp_ca_file;
extern int	meisa_worker_naptime;		/* ms */
extern int	meisa_max_send_rate;		/* messages per second, 0 = no limit */
extern int	meisa_batch_size;
extern int	meisa_lease_time;			/* s */
extern int	meisa_retry_backoff_base;	/* s */
extern int	meisa_retry_backoff_max;	/* s */
extern int	meisa_retry_give_up_after;	/* s */
extern int	meisa_smtp_connect_timeout; /* s */
extern int	meisa_smtp_timeout;			/* s */
extern int	meisa_smtp_connections;		/* SMTP sessions the worker keeps busy at once */

/* ---- secret.c: secrets read from the files the settings name */

/* Defines meisa.secret_file, meisa.smtp_password_file and the refused inline settings. */
extern void secret_init(void);
/* The key of unsubscribe tokens; NULL when meisa.secret_file is empty; ERROR when its file is unusable. */
extern const char *secret_token_key(size_t *len);
/* True when a key of unsubscribe tokens is usable; a file that is not is reported (LOG/WARNING). */
extern bool secret_token_key_ready(void);
/* Errors out (55000, naming meisa.secret_file) unless a key of unsubscribe tokens is set. */
extern void secret_require_token_key(void);
/* The SMTP password ("" when meisa.smtp_password_file is empty); ERROR when its file is unusable. */
extern const char *secret_smtp_password(void);
/* True unless meisa.smtp_password_file names an unusable file (reported at LOG/WARNING). */
extern bool secret_smtp_password_ready(void);

/* ---- mime.c */

/* ERROR 22023 naming 'field' when a header value holds CR, LF or NUL. */
extern void mime_check_header_value(const char *value, const char *field);

/* Longest line of a message, without its CRLF (RFC 5322 §2.1.1). */
#define MIME_LINE_LIMIT 998

/*
 * Length of the longest unsubscribe token: base64url of 45 bytes, no
 * padding (a topic's token; one of all marketing mail has 44, token.c).
 */
#define UNSUBSCRIBE_TOKEN_LENGTH 60

/*
 * Longest meisa.unsubscribe_base_url: "List-Unsubscribe: <" + base + token +
 * ">" is one line (a URL cannot be folded) within MIME_LINE_LIMIT.
 */
#define UNSUBSCRIBE_BASE_URL_MAX (MIME_LINE_LIMIT - 20 - UNSUBSCRIBE_TOKEN_LENGTH)

/* What a message is made of; strings in the server encoding. */
typedef struct MimeMessage
{
	const char *from;			/* "addr" or "Display Name <addr>" */
	const char *reply_to;		/* same forms, or NULL */
	const char *to;				/* bare address */
	const char *subject;
	const char *html;			/* NULL = no HTML part */
	const char *text;			/* NULL = no text part */
	const char *message_id;		/* with or without angle brackets */
	TimestampTz date;
	const char *unsubscribe_url;	/* NULL = transactional (no List-Unsubscribe) */
} MimeMessage;

/* The message as RFC 5322 bytes with CRLF line ends (not dot-stuffed). */
extern char *mime_build(const MimeMessage *msg);

/* ERROR 54000 when a Message-ID is too long for its one header line. */
extern void mime_check_message_id_length(const char *message_id);

/*
 * Splits "Name <addr>", "\"Name\" <addr>" or "addr" into the display name
 * (NULL when none) and the bare address; ERROR 22023 naming 'field' when the
 * address is unusable.
 */
extern void mime_parse_mailbox(const char *value, const char *field,
							   char **name, char **addr);

/* ---- token.c */

/* meisa.unsubscribe_base_url followed by a signed token for the contact. */
extern char *unsubscribe_url(int64 contact_id);
/* The contact id a valid unsubscribe token names; ERROR 22023 when invalid or the contact is gone. */
extern int64 unsubscribe_token_contact(const char *token);

/* unsubscribe_url for a message of a topic (topic id, 0 = none): the token leaves that topic. */
extern char *unsubscribe_url_topic(int64 contact_id, int64 topic_id);
/*
 * The contact id a valid unsubscribe token names and in *topic_id the topic
 * it leaves (0 = all marketing mail); ERROR 22023 when invalid.
 */
extern int64 unsubscribe_token_verify(const char *token, int64 *topic_id);

/* The signed token for a contact issued at 'issued' (seconds since 1970). */
extern char *unsubscribe_token_make(int64 contact_id, int64 issued);
/* The same for a message of a topic (0 = none). */
extern char *unsubscribe_token_make_topic(int64 contact_id, int64 issued, int64 topic_id);

/* The unsubscribe URL of a contact with a token issued at 'issued'; NULL without meisa.secret_file. */
extern char *unsubscribe_url_at(int64 contact_id, int64 issued);
/* The same for a message of a topic (0 = none). */
extern char *unsubscribe_url_topic_at(int64 contact_id, int64 issued, int64 topic_id);

/* ---- smtp.c */
typedef enum SmtpOutcome
{
	SMTP_SENT,					/* 2xx after the message data */
	SMTP_TEMPFAIL,				/* 4xx for this message: retry later */
	SMTP_PERMFAIL,				/* 5xx for this message: failed */
	SMTP_CONNFAIL,				/* no usable session (down, timeout, TLS, auth, sender) */
	SMTP_INTERRUPTED			/* cancelled or terminating */
} SmtpOutcome;

typedef struct SmtpResult
{
	SmtpOutcome outcome;
	int			code;			/* last SMTP reply code, 0 = none */
	bool		rcpt_rejected;	/* the 5xx answered RCPT TO */
	char		error[512];		/* human-readable reason */
} SmtpResult;

/* ---- smtp_multi.c: several SMTP sessions at once (smtp.c is one session) */

typedef struct SmtpMulti SmtpMulti;

/* A driver of 'sessions' SMTP sessions for meisa.smtp_url (connections open on first use). */
extern SmtpMulti *smtp_multi_open(int sessions);
/* The number of sessions of the driver. */
extern int	smtp_multi_sessions(const SmtpMulti *mm);
/* True while a send runs on the session or waits to be collected. */
extern bool smtp_multi_busy(const SmtpMulti *mm, int slot);
/*
 * Starts sending a message on the idle session 'slot'; false (r says why,
 * a session failure) when it could not start.  data must stay valid until
 * the send is collected.
 */
extern bool smtp_multi_start(SmtpMulti *mm, int slot, const char *from_addr, const char *to_addr,
							 const char *data, size_t len, SmtpResult *r);
/* Runs the transfers; waits up to timeout_ms unless one finished. */
extern void smtp_multi_run(SmtpMulti *mm, long timeout_ms);
/*
 * On a pending cancel or SIGTERM, aborts the sends not handed over and the
 * handed-over ones unanswered for a second; they are collected as interrupted.
 */
extern void smtp_multi_interrupt(SmtpMulti *mm);
/* Collects one finished send: true with its session in *slot and its outcome in r. */
extern bool smtp_multi_done(SmtpMulti *mm, int *slot, SmtpResult *r);
/*
 * Closes the connections and frees the driver: with quit, healthy
 * connections say QUIT (answers awaited meisa.smtp_connect_timeout at most
 * in all); with a cancel or SIGTERM pending, or without quit, they are
 * dropped at once.
 */
extern void smtp_multi_close(SmtpMulti *mm, bool quit);

/* ---- delivery.c */

/*
 * Delivers up to 'max' due messages.  With own_transactions (the worker, no
 * transaction open), claims, sends and settles in separate transactions;
 * otherwise everything runs in the caller's transaction.  Returns the number
 * of messages sent.  *more is set when the batch was full.
 */
extern int	delivery_run_batch(int max, bool own_transactions, bool *more);

/*
 * Closes the worker's SMTP sessions (kept open across the batches of a
 * round); quit as for smtp_multi_close.  Never call it inside a
 * transaction: a server that does not answer QUIT holds it up to
 * meisa.smtp_connect_timeout.
 */
extern void delivery_session_close(bool quit);

/*
 * The earliest time a queued message or an expiring lease (with_messages)
 * or an enrolment step (with_steps) needs the worker (0 = none).
 */
extern TimestampTz delivery_next_due(bool with_steps, bool with_messages);

/* Starts a transaction with SPI connected and a snapshot (worker only). */
extern void delivery_xact_begin(const char *activity);
/* Commits it and returns to the memory context current before the begin. */
extern void delivery_xact_commit(void);

/*
 * True when meisa.smtp_url is set and the SMTP password, if one is needed,
 * can be read; otherwise logs (once) why nothing is sent.
 */
extern bool delivery_configured(void);

#endif							/* MEISA_DELIVERY_H */
