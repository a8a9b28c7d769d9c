/*
 * delivery.c
 *		The delivery cycle: claim, send, settle.  A batch of due messages is
 *		claimed in one short transaction (status 'sending', attempts + 1, a
 *		lease until now + meisa.lease_time, FOR UPDATE SKIP LOCKED so several
 *		workers or nodes never take the same row) and committed; the batch
 *		is then checked against suppression again and assembled (mime.c) in
 *		one transaction, sent outside any transaction over
 *		meisa.smtp_connections SMTP sessions at once (smtp_multi.c), and
 *		settled in batched transactions as the messages finish: sent, retried
 *		later with exponential backoff, failed, or suppressed.  A 5xx to RCPT
 *		TO marks the contact bounced (the worker in the settling transaction,
 *		meisa_deliver after the batch; in contact id order).
 *		Rows whose lease expired (a crash between claim and settle) are queued
 *		again and resent with the same Message-ID: at least once, never lost.
 *		meisa_deliver() runs the same cycle inside the caller's transaction.
 */
#include "contacts/contacts.h"
#include "delivery/delivery.h"
#include "policy/policy.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(meisa_deliver);
PG_FUNCTION_INFO_V1(meisa_mime);
PG_FUNCTION_INFO_V1(meisa_messages_check_write);

/* A message taken from meisa.messages, copied out of SPI memory. */
typedef struct DeliveryMsg
{
	int64		id;
	int64		contact_id;		/* 0 = none */
	char	   *to_email;
	char	   *from_address;	/* NULL = meisa.from_address */
	char	   *reply_to;
	char	   *kind;
	char	   *subject;
	char	   *html;
	char	   *text;
	char	   *message_id;
	int32		attempts;
	TimestampTz created_at;
	char	   *topic;			/* NULL = none */
	/* assembled for sending */
	char	   *data;
	char	   *envelope_from;
} DeliveryMsg;

/* The columns every query below returns for a message, in this order. */
#define MSG_COLUMNS "m.id, m.contact_id, m.to_email, m.from_address, m.reply_to, m.kind, " \
	"m.subject, m.html, m.text, m.message_id, m.attempts, m.created_at, m.topic"

enum
{
	Q_REQUEUE,
	Q_CLAIM,
	Q_LOAD,
	Q_SENT,
	Q_RETRY,
	Q_FAILED,
	Q_SUPPRESSED,
	Q_RELEASE,
	Q_NEXT_DUE,
	Q_NEXT_RUN,
	Q_SENT_MANY,
	Q_COUNT
};

static const char *const query_sql[Q_COUNT] = {
	/* Q_REQUEUE: expired leases go back to the queue */
	"UPDATE meisa.messages m SET status = 'queued', lease_until = NULL, updated_at = pg_catalog.now() "
	"WHERE m.id IN (SELECT x.id FROM meisa.messages x WHERE x.status = 'sending' "
	"AND (x.lease_until < pg_catalog.now() OR x.lease_until IS NULL) FOR UPDATE SKIP LOCKED)",
	/* Q_CLAIM: $1 limit, $2 default sender set, $3 secret set, $4 lease seconds */
	"WITH c AS (SELECT x.id FROM meisa.messages x WHERE x.status = 'queued' "
	"AND x.next_attempt_at <= pg_catalog.now() "
	"AND (x.from_address IS NOT NULL OR $2) AND (x.kind <> 'marketing' OR $3) "
	"ORDER BY x.next_attempt_at, x.id LIMIT $1 FOR UPDATE SKIP LOCKED) "
	"UPDATE meisa.messages m SET status = 'sending', attempts = m.attempts + 1, "
	"lease_until = pg_catalog.now() + $4 * interval '1 second', updated_at = pg_catalog.now() "
	"FROM c WHERE m.id = c.id RETURNING " MSG_COLUMNS,
	/* Q_LOAD: $1 id */
	"SELECT " MSG_COLUMNS " FROM meisa.messages m WHERE m.id = $1",
	/* Q_SENT: $1 id, $2 attempts (the lease we hold) */
	"UPDATE meisa.messages SET status = 'sent', sent_at = pg_catalog.now(), lease_until = NULL, "
	"last_error = NULL, updated_at = pg_catalog.now() "
	"WHERE id = $1 AND status = 'sending' AND attempts = $2",
	/* Q_RETRY: $1 id, $2 attempts, $3 error, $4 delay seconds, $5 give-up age seconds */
	"UPDATE meisa.messages SET "
	"status = CASE WHEN created_at + $5 * interval '1 second' <= pg_catalog.now() THEN 'failed' ELSE 'queued' END, "
	"last_error = CASE WHEN created_at + $5 * interval '1 second' <= pg_catalog.now() "
	"THEN 'gave up after ' || attempts || ' attempts: ' || $3 ELSE $3 END, "
	"next_attempt_at = pg_catalog.now() + $4 * interval '1 second', lease_until = NULL, "
	"updated_at = pg_catalog.now() WHERE id = $1 AND status = 'sending' AND attempts = $2",
	/* Q_FAILED: $1 id, $2 attempts, $3 error */
	"UPDATE meisa.messages SET status = 'failed', last_error = $3, lease_until = NULL, "
	"updated_at = pg_catalog.now() WHERE id = $1 AND status = 'sending' AND attempts = $2",
	/* Q_SUPPRESSED: $1 id, $2 attempts, $3 reason */
	"UPDATE meisa.messages SET status = 'suppressed', attempts = attempts - 1, "
	"last_error = 'suppressed when sending: contact ' || $3, "
	"lease_until = NULL, updated_at = pg_catalog.now() "
	"WHERE id = $1 AND status = 'sending' AND attempts = $2",
	/* Q_RELEASE: $1 id, $2 attempts, $3 delay seconds: back to the queue, not attempted */
	"UPDATE meisa.messages SET status = 'queued', attempts = attempts - 1, lease_until = NULL, "
	"next_attempt_at = GREATEST(next_attempt_at, pg_catalog.now() + $3 * interval '1 second'), "
	"updated_at = pg_catalog.now() WHERE id = $1 AND status = 'sending' AND attempts = $2",
	/* Q_NEXT_DUE: $1 default sender set, $2 secret set */
	"SELECT LEAST((SELECT min(x.next_attempt_at) FROM meisa.messages x WHERE x.status = 'queued' "
	"AND (x.from_address IS NOT NULL OR $1) AND (x.kind <> 'marketing' OR $2)), "
	"(SELECT min(y.lease_until) FROM meisa.messages y WHERE y.status = 'sending'))",
	/* Q_NEXT_RUN: the next enrolment step due in the future (past ones wait for the naptime) */
	"SELECT min(e.next_run_at) FROM meisa.enrollments e WHERE e.status = 'active' "
	"AND e.next_run_at > pg_catalog.now()",
	/* Q_SENT_MANY: $1 ids, $2 their attempts (the leases we hold): Q_SENT for many */
	"UPDATE meisa.messages m SET status = 'sent', sent_at = pg_catalog.now(), lease_until = NULL, "
	"last_error = NULL, updated_at = pg_catalog.now() "
	"WHERE m.id = ANY ($1) AND m.status = 'sending' "
	"AND m.attempts = ($2)[pg_catalog.array_position($1, m.id)]"
};

static const int query_nargs[Q_COUNT] = {0, 4, 1, 2, 5, 3, 3, 3, 2, 0, 2};
static const Oid query_types[Q_COUNT][5] = {
	{0},
	{INT4OID, BOOLOID, BOOLOID, FLOAT8OID},
	{INT8OID},
	{INT8OID, INT4OID},
	{INT8OID, INT4OID, TEXTOID, FLOAT8OID, FLOAT8OID},
	{INT8OID, INT4OID, TEXTOID},
	{INT8OID, INT4OID, TEXTOID},
	{INT8OID, INT4OID, FLOAT8OID},
	{BOOLOID, BOOLOID},
	{0},
	{INT8ARRAYOID, INT4ARRAYOID},
};

static SPIPlanPtr plans[Q_COUNT];

/* The worker's SMTP sessions, kept open across the batches of a round. */
static SmtpMulti *worker_multi = NULL;

/* When the next message may be sent under meisa.max_send_rate (across batches). */
static TimestampTz rate_next_send = 0;
static MemoryContext xact_saved_ctx = NULL;

static void delivery_lock_extension(void);

/* Starts a transaction with SPI connected and a snapshot (worker only). */
void
delivery_xact_begin(const char *activity)
{
	xact_saved_ctx = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	delivery_lock_extension();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/*
 * Takes a share lock on the meisa extension object for the transaction.
 * DROP EXTENSION locks that object exclusively before it locks the member
 * tables one by one, so a worker transaction that reads several meisa tables
 * either finishes before the DROP starts or waits for it: the two never hold
 * one table each while waiting for the other's (a deadlock).
 */
static void
delivery_lock_extension(void)
{
	Oid			ext = get_extension_oid("meisa", true);

	if (OidIsValid(ext))
		LockDatabaseObject(ExtensionRelationId, ext, 0, AccessShareLock);
}

/* Commits it and returns to the memory context current before the begin. */
void
delivery_xact_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	if (xact_saved_ctx)
		MemoryContextSwitchTo(xact_saved_ctx);
}

/* Runs saved plan q with the given arguments; returns the SPI result code. */
static int
run_query(int q, Datum *values, const char *nulls, bool read_only, long limit)
{
	int			rc;

	if (plans[q] == NULL)
		plans[q] = spi_keep_plan(query_sql[q], query_nargs[q], query_types[q]);
	rc = SPI_execute_plan(plans[q], values, nulls, read_only, limit);
	if (rc < 0)
		elog(ERROR, "meisa delivery query failed: %s", SPI_result_code_string(rc));
	return rc;
}

/* Copies one SPI row of MSG_COLUMNS into m, strings in ctx. */
static void
msg_from_row(DeliveryMsg *m, HeapTuple tup, TupleDesc desc, MemoryContext ctx)
{
	bool		isnull;
	MemoryContext old = MemoryContextSwitchTo(ctx);

	memset(m, 0, sizeof(*m));
	m->id = spi_get_int64(tup, desc, 1, 0);
	m->contact_id = spi_get_int64(tup, desc, 2, 0);
	m->to_email = spi_get_text(tup, desc, 3);
	m->from_address = spi_get_text(tup, desc, 4);
	m->reply_to = spi_get_text(tup, desc, 5);
	m->kind = spi_get_text(tup, desc, 6);
	m->subject = spi_get_text(tup, desc, 7);
	m->html = spi_get_text(tup, desc, 8);
	m->text = spi_get_text(tup, desc, 9);
	m->message_id = spi_get_text(tup, desc, 10);
	m->attempts = spi_get_int32(tup, desc, 11, 0);
	m->created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 12, &isnull));
	m->topic = spi_get_text(tup, desc, 13);
	MemoryContextSwitchTo(old);
}

/* The sender of a message: its own from_address or meisa.from_address. */
static const char *
msg_sender(const DeliveryMsg *m)
{
	if (m->from_address && m->from_address[0] != '\0')
		return m->from_address;
	if (meisa_from_address && meisa_from_address[0] != '\0')
		return meisa_from_address;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("message %lld has no sender address", (long long) m->id),
			 errhint("Set meisa.from_address, or \"from\" on the template.")));
	return NULL;
}

/* Assembles the RFC 5322 bytes of a message (and its envelope sender). */
static char *
msg_mime(DeliveryMsg *m)
{
	MimeMessage mm;
	char	   *name;
	char	   *addr;

	memset(&mm, 0, sizeof(mm));
	mm.from = msg_sender(m);
	mm.reply_to = m->reply_to;
	mm.to = m->to_email;
	mm.subject = m->subject;
	mm.html = m->html;
	mm.text = m->text;
	mm.message_id = m->message_id;
	mm.date = m->created_at;
	if (m->kind && strcmp(m->kind, "marketing") == 0 && m->contact_id != 0)
		mm.unsubscribe_url = psprintf("%s%s",
									  meisa_unsubscribe_base_url ? meisa_unsubscribe_base_url : "",
									  unsubscribe_token_make_topic(m->contact_id,
																   (int64) timestamptz_to_time_t(m->created_at),
																   topic_id_by_name(m->topic)));
	mime_parse_mailbox(mm.from, "from_address", &name, &addr);
	m->envelope_from = addr;
	return mime_build(&mm);
}

/* ---- guarded steps: errors are caught in a subtransaction (spi_run_step) */

/* Runs fn in a subtransaction; NULL on success, else the error message. */
static char *
run_guarded(spi_step_fn fn, void *arg)
{
	ErrorData  *ed = spi_run_step(fn, NULL, arg);

	return ed ? ed->message : NULL;
}

typedef struct BuildArg
{
	DeliveryMsg *m;
	MemoryContext ctx;
} BuildArg;

/* Guarded step: assembles the message into the batch context. */
static void
build_step(void *arg)
{
	BuildArg   *b = (BuildArg *) arg;
	MemoryContext old = MemoryContextSwitchTo(b->ctx);

	b->m->data = msg_mime(b->m);
	MemoryContextSwitchTo(old);
}

typedef struct BounceArg
{
	int64		contact_id;
	const char *detail;
} BounceArg;

/* Guarded step: marks the contact bounced. */
static void
bounce_step(void *arg)
{
	BounceArg  *b = (BounceArg *) arg;

	contact_mark_bounced(b->contact_id, b->detail);
}

/* qsort comparator of BounceArg by contact id. */
static int
bounce_cmp(const void *a, const void *b)
{
	int64		x = ((const BounceArg *) a)->contact_id;
	int64		y = ((const BounceArg *) b)->contact_id;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* True when contact_id is among the n bounces not applied yet. */
static bool
bounce_pending(const BounceArg *bounces, int n, int64 contact_id)
{
	int			i;

	for (i = 0; i < n; i++)
		if (bounces[i].contact_id == contact_id)
			return true;
	return false;
}

/*
 * Marks the contacts of the batch's bounces bounced, in contact id order
 * (each once); a failure is a WARNING, the rest go on.
 */
static void
apply_bounces(BounceArg *bounces, int n)
{
	int			i;

	qsort(bounces, n, sizeof(BounceArg), bounce_cmp);
	for (i = 0; i < n; i++)
	{
		char	   *err;

		if (i > 0 && bounces[i].contact_id == bounces[i - 1].contact_id)
			continue;
		err = run_guarded(bounce_step, &bounces[i]);
		if (err)
			ereport(WARNING,
					(errmsg("meisa: could not mark contact %lld bounced: %s",
							(long long) bounces[i].contact_id, err)));
	}
}

/* ---- settling */

/* Runs a settle query for message m with an optional text and delay. */
static void
settle(int q, const DeliveryMsg *m, const char *text, double delay)
{
	Datum		v[5];

	v[0] = Int64GetDatum(m->id);
	v[1] = Int32GetDatum(m->attempts);
	switch (q)
	{
		case Q_SENT:
			break;
		case Q_RETRY:
			v[2] = CStringGetTextDatum(text);
			v[3] = Float8GetDatum(delay);
			v[4] = Float8GetDatum((double) meisa_retry_give_up_after);
			break;
		case Q_FAILED:
		case Q_SUPPRESSED:
			v[2] = CStringGetTextDatum(text);
			break;
		case Q_RELEASE:
			v[2] = Float8GetDatum(delay);
			break;
	}
	run_query(q, v, NULL, false, 0);
	if (SPI_processed == 0)
		elog(DEBUG1, "meisa: message %lld was no longer ours to settle", (long long) m->id);
}

/* Exponential backoff after 'attempts' tries, capped at meisa.retry_backoff_max. */
static double
backoff_seconds(int attempts)
{
	double		d = (double) meisa_retry_backoff_base * pow(2.0, Max(attempts - 1, 0));

	return Min(d, (double) meisa_retry_backoff_max);
}

/*
 * The suppression reason for a message now, NULL when it may be sent; for
 * marketing mail inside the contact's meisa.quiet_hours, *quiet_wait is set
 * to the seconds until they end (0 otherwise).
 */
static const char *
suppression_reason(const DeliveryMsg *m, double *quiet_wait)
{
	ContactState cs;
	bool		found;
	const char *reason;

	*quiet_wait = 0;
	if (m->contact_id != 0)
		found = contact_state_lookup(m->contact_id, &cs);
	else
		found = contact_state_by_email(m->to_email, &cs);
	if (!found)
		return NULL;
	reason = policy_suppression_reason(&cs, m->kind, m->topic);
	if (reason == NULL && strcmp(m->kind, "marketing") == 0)
	{
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz end = policy_quiet_end(now, policy_contact_zone(cs.timezone));

		if (end > now)
			*quiet_wait = (double) (end - now) / USECS_PER_SEC;
	}
	return reason;
}

/*
 * True when meisa.smtp_url is set and the SMTP password, if one is needed,
 * can be read; otherwise logs (once) why nothing is sent.
 */
bool
delivery_configured(void)
{
	static bool logged = false;

	if (meisa_smtp_url && meisa_smtp_url[0] != '\0')
	{
		logged = false;
		/* an unreadable password file is reported by the check itself */
		return meisa_smtp_user == NULL || meisa_smtp_user[0] == '\0' ||
			secret_smtp_password_ready();
	}
	if (!am_delivery_worker)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("meisa.smtp_url is not set: no message is delivered"),
				 errhint("Set meisa.smtp_url, e.g. 'smtp://localhost:25'.")));
	else if (!logged)
		ereport(LOG,
				(errmsg("meisa delivery worker: meisa.smtp_url is not set; messages stay queued")));
	logged = true;
	return false;
}

/* Logs a problem with the SMTP server (WARNING for a SQL caller). */
static void
report_smtp_problem(const char *what)
{
	ereport(am_delivery_worker ? LOG : WARNING,
			(errmsg("meisa: SMTP server unavailable, messages stay queued: %s", what)));
}

/* What became of a message of the batch until it is settled. */
typedef enum SendState
{
	SEND_WAITING,				/* checked and assembled, not started */
	SEND_RUNNING,				/* on a session */
	SEND_DONE,					/* outcome known, to be settled */
	SEND_SETTLED				/* settled (or never to be sent) */
} SendState;

/* A message's send: its state and, once done, how it is settled. */
typedef struct MsgSend
{
	SendState	state;
	int			q;				/* the settle query */
	char	   *text;			/* its error or reason */
	double		delay;			/* its delay */
} MsgSend;

/* A batch being delivered (in its own memory context, batch_ctx). */
typedef struct Batch
{
	bool		own_transactions;	/* the worker: one transaction per step */
	MemoryContext ctx;
	DeliveryMsg *msgs;			/* the claimed messages */
	MsgSend    *send;			/* what became of each */
	int			n;
	int			sent;
	int			next;			/* the first message not started yet */
	int			ndone;			/* messages done, not settled yet */
	TimestampTz first_done;		/* when the oldest of them was done */
	BounceArg  *bounces;		/* the batch's rejected recipients */
	int			nbounces;
	int			bounces_marked; /* bounces[0 .. bounces_marked) are marked */
	SmtpMulti  *mm;				/* the SMTP sessions */
	int		   *slot_msg;		/* the message each session sends, -1 = none */
	bool	   *slot_dead;		/* the session failed: unused for the rest of the batch */
	int			live;			/* sessions not dead */
	int			running;		/* sends in progress */
	bool		session_dead;	/* a session failed: the connections are closed after the batch */
	bool		connfailed;		/* a session failure was counted as an attempt */
	bool		stop;			/* interrupted: start nothing more */
	TimestampTz lease_end;		/* when the claim's leases run out */
	long		margin_ms;		/* stop sending this long before lease_end */
	double		release_delay;	/* delay of the messages not attempted */
} Batch;

/* Settle a batch's finished messages once this many are done ... */
#define SETTLE_EVERY 256
/* ... or the oldest of them has waited this long (ms). */
#define SETTLE_AFTER_MS 200

/* Starts a step's transaction (the worker only). */
static void
batch_begin(Batch *b, const char *activity)
{
	if (b->own_transactions)
		delivery_xact_begin(activity);
}

/* Commits a step's transaction (the worker only). */
static void
batch_commit(Batch *b)
{
	if (b->own_transactions)
		delivery_xact_commit();
}

/* Claims up to 'max' due messages into the batch (requeueing expired leases first). */
static void
batch_claim(Batch *b, int max)
{
	Datum		v[4];

	v[0] = Int32GetDatum(max);
	v[1] = BoolGetDatum(meisa_from_address && meisa_from_address[0] != '\0');
	v[2] = BoolGetDatum(secret_token_key_ready());
	v[3] = Float8GetDatum((double) meisa_lease_time);
	batch_begin(b, "meisa delivery: claiming");
	run_query(Q_REQUEUE, NULL, NULL, false, 0);
	run_query(Q_CLAIM, v, NULL, false, 0);
	b->n = (int) SPI_processed;
	b->msgs = MemoryContextAllocZero(b->ctx, sizeof(DeliveryMsg) * Max(b->n, 1));
	for (int i = 0; i < b->n; i++)
		msg_from_row(&b->msgs[i], SPI_tuptable->vals[i], SPI_tuptable->tupdesc, b->ctx);
	b->send = MemoryContextAllocZero(b->ctx, sizeof(MsgSend) * Max(b->n, 1));
	b->bounces = MemoryContextAlloc(b->ctx, sizeof(BounceArg) * Max(b->n, 1));
	batch_commit(b);
	MemoryContextSwitchTo(b->ctx);
	b->lease_end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) meisa_lease_time * 1000);
	b->margin_ms = Min((long) meisa_smtp_timeout * 1000, (long) meisa_lease_time * 500);
}

/*
 * Checks suppression again and assembles message m; false when it was
 * settled instead (suppressed, or failed as an invalid message).  Runs in
 * the batch's checking transaction (batch_prepare_all).
 */
static bool
batch_prepare(Batch *b, DeliveryMsg *m)
{
	const char *reason;
	char	   *err;
	BuildArg	ba;
	double		quiet_wait = 0;

	if (b->nbounces > 0 && m->contact_id != 0 &&
		bounce_pending(b->bounces, b->nbounces, m->contact_id))
		reason = "bounced";
	else
		reason = suppression_reason(m, &quiet_wait);
	if (reason)
	{
		settle(Q_SUPPRESSED, m, reason, 0);
		return false;
	}
	if (quiet_wait > 0)
	{
		/* inside the contact's quiet hours: back to the queue until they end */
		settle(Q_RELEASE, m, NULL, quiet_wait);
		return false;
	}
	ba.m = m;
	ba.ctx = b->ctx;
	err = run_guarded(build_step, &ba);
	if (err)
	{
		char	   *e = MemoryContextStrdup(b->ctx, err);

		settle(Q_FAILED, m, psprintf("invalid message: %s", e), 0);
		return false;
	}
	return true;
}

/* Checks and assembles every claimed message, in one transaction. */
static void
batch_prepare_all(Batch *b)
{
	batch_begin(b, "meisa delivery: checking");
	for (int i = 0; i < b->n; i++)
		b->send[i].state = batch_prepare(b, &b->msgs[i]) ? SEND_WAITING : SEND_SETTLED;
	batch_commit(b);
}

/*
 * 0 when a message may start now under meisa.max_send_rate (a global cap:
 * one schedule for every session, across batches), else the ms to wait.
 */
static long
batch_pace(void)
{
	TimestampTz now;

	if (meisa_max_send_rate <= 0)
		return 0;
	now = GetCurrentTimestamp();
	if (rate_next_send > now)
		return Max((long) ((rate_next_send - now + 999) / 1000), 1L);
	rate_next_send = Max(now, rate_next_send) +
		(TimestampTz) (1000000.0 / meisa_max_send_rate);
	return 0;
}

/* True when the batch must start no more message (the rest is released). */
static bool
batch_stopping(Batch *b)
{
	return b->stop || b->live == 0 || ProcDiePending || QueryCancelPending ||
		(am_delivery_worker && !PostmasterIsAlive()) ||
		GetCurrentTimestamp() > TimestampTzPlusMilliseconds(b->lease_end, -b->margin_ms);
}

/* Message i is done: it is settled with query q (text, delay) in the next settling. */
static void
batch_done(Batch *b, int i, int q, const char *text, double delay)
{
	MsgSend    *ms = &b->send[i];

	ms->state = SEND_DONE;
	ms->q = q;
	ms->text = text ? MemoryContextStrdup(b->ctx, text) : NULL;
	ms->delay = delay;
	if (b->ndone++ == 0)
		b->first_done = GetCurrentTimestamp();
}

/* Records the SMTP outcome 'r' of message i sent on session 'slot'. */
static void
batch_outcome(Batch *b, int i, int slot, const SmtpResult *r)
{
	DeliveryMsg *m = &b->msgs[i];

	if (m->data)
		pfree(m->data);
	m->data = NULL;
	switch (r->outcome)
	{
		case SMTP_SENT:
			batch_done(b, i, Q_SENT, NULL, 0);
			b->sent++;
			break;
		case SMTP_TEMPFAIL:
			batch_done(b, i, Q_RETRY, r->error, backoff_seconds(m->attempts));
			break;
		case SMTP_PERMFAIL:
			batch_done(b, i, Q_FAILED, r->error, 0);
			if (r->rcpt_rejected && m->contact_id != 0)
			{
				/*
				 * The worker marks the contact in the next settling
				 * transaction; meisa_deliver after the batch, in contact id
				 * order: marked in the order of the batch, two meisa_deliver
				 * calls whose batches held messages to the same two rejected
				 * contacts locked them in opposite orders and deadlocked.  A
				 * later message of the batch to such a contact is suppressed
				 * as bounced meanwhile.
				 */
				b->bounces[b->nbounces].contact_id = m->contact_id;
				b->bounces[b->nbounces].detail = MemoryContextStrdup(b->ctx, r->error);
				b->nbounces++;
			}
			break;
		case SMTP_CONNFAIL:

			/*
			 * This session sits out the batch; the others go on.  The first
			 * session failure of a batch counts as the message's attempt,
			 * as with one session; a message a later one hits (the server
			 * down for every session at once) goes back to the queue with
			 * the same delay, not attempted, as do those never started.
			 */
			if (b->connfailed)
				batch_done(b, i, Q_RELEASE, NULL, b->release_delay);
			else
			{
				b->release_delay = backoff_seconds(m->attempts);
				batch_done(b, i, Q_RETRY, r->error, b->release_delay);
				report_smtp_problem(r->error);
			}
			b->connfailed = true;
			b->slot_dead[slot] = true;
			b->live--;
			b->session_dead = true;
			break;
		case SMTP_INTERRUPTED:
			batch_done(b, i, Q_RELEASE, NULL, 0);
			b->session_dead = true;
			b->stop = true;
			break;
	}
}

/* Settles the messages sent since the last time in one UPDATE. */
static void
settle_sent(Batch *b)
{
	Datum	   *ids = palloc(sizeof(Datum) * b->n);
	Datum	   *att = palloc(sizeof(Datum) * b->n);
	Datum		v[2];
	int			k = 0;

	for (int i = 0; i < b->n; i++)
		if (b->send[i].state == SEND_DONE && b->send[i].q == Q_SENT)
		{
			ids[k] = Int64GetDatum(b->msgs[i].id);
			att[k] = Int32GetDatum(b->msgs[i].attempts);
			k++;
		}
	if (k > 0)
	{
		v[0] = PointerGetDatum(construct_array(ids, k, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		v[1] = PointerGetDatum(construct_array(att, k, INT4OID, sizeof(int32), true, TYPALIGN_INT));
		run_query(Q_SENT_MANY, v, NULL, false, 0);
		if (SPI_processed < (uint64) k)
			elog(DEBUG1, "meisa: %d sent messages were no longer ours to settle", k - (int) SPI_processed);
	}
	pfree(ids);
	pfree(att);
}

/*
 * Settles every message done since the last time, in one transaction of
 * the worker: the sent ones in one UPDATE, the others one by one; the
 * worker marks the new bounces in it too.
 */
static void
batch_settle(Batch *b)
{
	bool		mark = b->own_transactions && b->nbounces > b->bounces_marked;

	if (b->ndone == 0 && !mark)
		return;
	batch_begin(b, "meisa delivery: settling");
	settle_sent(b);
	for (int i = 0; i < b->n; i++)
	{
		MsgSend    *ms = &b->send[i];

		if (ms->state != SEND_DONE)
			continue;
		if (ms->q != Q_SENT)
			settle(ms->q, &b->msgs[i], ms->text, ms->delay);
		ms->state = SEND_SETTLED;
	}
	b->ndone = 0;
	if (mark)
	{
		apply_bounces(b->bounces + b->bounces_marked, b->nbounces - b->bounces_marked);
		b->bounces_marked = b->nbounces;
	}
	batch_commit(b);
	if (b->own_transactions)
		pgstat_report_activity(STATE_RUNNING, "meisa delivery: sending");
}

/*
 * Starts the next waiting message on the idle session 'slot'; returns 0
 * when one started or none is left, else the ms to wait for
 * meisa.max_send_rate.
 */
static long
batch_start(Batch *b, int slot)
{
	while (b->next < b->n)
	{
		int			i = b->next;
		DeliveryMsg *m = &b->msgs[i];
		SmtpResult	r;
		long		wait;

		if (b->send[i].state != SEND_WAITING)
		{
			b->next++;
			continue;
		}
		/* a recipient rejected earlier in the batch */
		if (b->nbounces > 0 && m->contact_id != 0 &&
			bounce_pending(b->bounces, b->nbounces, m->contact_id))
		{
			batch_done(b, i, Q_SUPPRESSED, "bounced", 0);
			b->next++;
			continue;
		}
		if ((wait = batch_pace()) > 0)
			return wait;
		b->next++;
		if (!smtp_multi_start(b->mm, slot, m->envelope_from, m->to_email,
							  m->data, strlen(m->data), &r))
		{
			batch_outcome(b, i, slot, &r);
			return 0;
		}
		b->send[i].state = SEND_RUNNING;
		b->slot_msg[slot] = i;
		b->running++;
		return 0;
	}
	return 0;
}

/* Starts messages on the idle sessions; returns the ms to wait for the rate (0 = none). */
static long
batch_fill(Batch *b)
{
	int			nslots = smtp_multi_sessions(b->mm);

	for (int slot = 0; slot < nslots && b->next < b->n; slot++)
	{
		long		wait;

		if (smtp_multi_busy(b->mm, slot) || b->slot_dead[slot] || batch_stopping(b))
			continue;
		if ((wait = batch_start(b, slot)) > 0)
			return wait;
	}
	return 0;
}

/* Collects the finished sends of the sessions. */
static void
batch_collect(Batch *b)
{
	int			slot;
	SmtpResult	r;

	smtp_multi_interrupt(b->mm);
	while (smtp_multi_done(b->mm, &slot, &r))
	{
		int			i = b->slot_msg[slot];

		b->slot_msg[slot] = -1;
		b->running--;
		if (i >= 0)
			batch_outcome(b, i, slot, &r);
	}
}

/*
 * Sends the claimed messages over the sessions, each kept busy while
 * messages wait, outside any transaction in the worker; settles them in
 * batches as they finish.  Messages not attempted stay SEND_WAITING.
 */
static void
batch_send(Batch *b)
{
	int			nslots = smtp_multi_sessions(b->mm);

	b->slot_msg = palloc(sizeof(int) * nslots);
	b->slot_dead = palloc0(sizeof(bool) * nslots);
	for (int s = 0; s < nslots; s++)
		b->slot_msg[s] = -1;
	b->live = nslots;
	pgstat_report_activity(STATE_RUNNING, "meisa delivery: sending");
	for (;;)
	{
		long		wait = batch_stopping(b) ? 0 : batch_fill(b);

		if (b->running == 0)
		{
			if (b->next >= b->n || batch_stopping(b))
				break;
			if (wait > 0)
				pg_usleep(Min(wait, 100L) * 1000L);
			continue;
		}
		smtp_multi_run(b->mm, wait > 0 ? Min(wait, 100L) : 100L);
		batch_collect(b);
		if (b->ndone >= SETTLE_EVERY ||
			(b->ndone > 0 && TimestampDifferenceExceeds(b->first_done, GetCurrentTimestamp(), SETTLE_AFTER_MS)))
			batch_settle(b);
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* The SMTP sessions of the batch: the worker's (kept across batches), or new ones. */
static SmtpMulti *
batch_sessions(Batch *b)
{
	MemoryContext sctx;
	SmtpMulti  *mm;

	if (b->own_transactions && worker_multi &&
		smtp_multi_sessions(worker_multi) == meisa_smtp_connections)
		return worker_multi;
	if (b->own_transactions)
		delivery_session_close(true);
	sctx = MemoryContextSwitchTo(b->own_transactions ? TopMemoryContext : b->ctx);
	mm = smtp_multi_open(b->own_transactions ? meisa_smtp_connections
						 : Min(meisa_smtp_connections, Max(b->n, 1)));
	MemoryContextSwitchTo(sctx);
	if (b->own_transactions)
		worker_multi = mm;
	return mm;
}

/*
 * Delivers up to 'max' due messages.  With own_transactions (the worker, no
 * transaction open), claims, checks, sends and settles in separate
 * transactions; otherwise everything runs in the caller's transaction.
 * Returns the number of messages sent.
 */
int
delivery_run_batch(int max, bool own_transactions, bool *more)
{
	MemoryContext batch_ctx;
	MemoryContext oldctx;
	Batch	   *b;
	int			sent;

	*more = false;
	if (!delivery_configured())
		return 0;

	batch_ctx = AllocSetContextCreate(CurrentMemoryContext, "meisa delivery batch",
									  ALLOCSET_DEFAULT_SIZES);
	oldctx = MemoryContextSwitchTo(batch_ctx);
	/* not on the stack: PG_CATCH below reads it after a longjmp */
	b = palloc0(sizeof(Batch));
	b->own_transactions = own_transactions;
	b->ctx = batch_ctx;

	/* claim */
	batch_claim(b, max);
	*more = (b->n == max);

	/*
	 * From here every claimed message is settled or released before a
	 * cancel or SIGTERM is honoured: they are checked for between polls and
	 * abort the transfers in progress (smtp_multi.c), and nothing is left
	 * 'sending' by a clean exit.
	 */
	HOLD_INTERRUPTS();
	PG_TRY();
	{
		/* suppression again and assembly, for the whole batch */
		batch_prepare_all(b);

		/* send and settle */
		if (b->n > 0)
		{
			b->mm = batch_sessions(b);
			batch_send(b);
		}

		/* messages not attempted go back to the queue */
		for (int i = 0; i < b->n; i++)
			if (b->send[i].state == SEND_WAITING)
			{
				batch_done(b, i, Q_RELEASE, NULL, b->release_delay);
				*more = false;
			}
		batch_settle(b);

		/* meisa_deliver: the batch's bounces, in contact id order */
		if (b->nbounces > b->bounces_marked)
			apply_bounces(b->bounces + b->bounces_marked, b->nbounces - b->bounces_marked);
		b->bounces_marked = b->nbounces;
	}
	PG_CATCH();
	{
		/* error cleanup: drop the connections, no QUIT */
		if (b->mm && b->mm != worker_multi)
			smtp_multi_close(b->mm, false);
		delivery_session_close(false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	RESUME_INTERRUPTS();

	/*
	 * The close comes after the settling transaction committed and with
	 * interrupts allowed: a dead connection (already shut down) goes at
	 * once; meisa_deliver's QUITs wait at most meisa.smtp_connect_timeout,
	 * inside the caller's transaction.  The worker reconnects for its next
	 * batch after a failure.
	 */
	if (!own_transactions)
		smtp_multi_close(b->mm, true);
	else if (b->session_dead)
		delivery_session_close(true);

	sent = b->sent;
	MemoryContextSwitchTo(oldctx);
	MemoryContextDelete(batch_ctx);
	return sent;
}

/*
 * Closes the worker's SMTP sessions (end of a round, errors, failures);
 * quit as for smtp_multi_close.
 */
void
delivery_session_close(bool quit)
{
	SmtpMulti  *mm = worker_multi;

	worker_multi = NULL;
	if (mm)
		smtp_multi_close(mm, quit);
}

/*
 * The earliest time a queued message or an expiring lease (with_messages)
 * or an enrolment step (with_steps) needs the worker (0 = none).
 */
TimestampTz
delivery_next_due(bool with_steps, bool with_messages)
{
	Datum		v[2];
	bool		isnull;
	TimestampTz next = 0;
	Datum		d;

	delivery_xact_begin("meisa delivery: next due");
	v[0] = BoolGetDatum(meisa_from_address && meisa_from_address[0] != '\0');
	v[1] = BoolGetDatum(secret_token_key_ready());
	if (with_messages)
	{
		run_query(Q_NEXT_DUE, v, NULL, true, 1);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			next = DatumGetTimestampTz(d);
	}
	if (with_steps)
	{
		run_query(Q_NEXT_RUN, NULL, NULL, true, 1);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull && (next == 0 || DatumGetTimestampTz(d) < next))
			next = DatumGetTimestampTz(d);
	}
	delivery_xact_commit();
	return next;
}

/* SQL meisa_deliver(max int default 100) returns int: one batch, synchronously. */
Datum
meisa_deliver(PG_FUNCTION_ARGS)
{
	int			max = PG_ARGISNULL(0) ? 100 : PG_GETARG_INT32(0);
	bool		more;
	int			sent;

	if (max < 1 || max > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max must be between 1 and 10000, not %d", max)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	sent = delivery_run_batch(max, false, &more);
	SPI_finish();
	CHECK_FOR_INTERRUPTS();
	PG_RETURN_INT32(sent);
}

/* SQL meisa.mime(message_id bigint) returns text: the exact bytes that are sent. */
Datum
meisa_mime(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	Datum		v[1];
	DeliveryMsg m;
	MemoryContext ctx = CurrentMemoryContext;
	char	   *data;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	v[0] = Int64GetDatum(id);
	run_query(Q_LOAD, v, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("message %lld does not exist", (long long) id)));
	msg_from_row(&m, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, ctx);
	SPI_finish();
	data = msg_mime(&m);
	PG_RETURN_TEXT_P(cstring_to_text(data));
}

/*
 * Trigger on meisa.messages (BEFORE INSERT OR UPDATE, each row): rejects CR
 * or LF in header values, and wakes the worker at commit when the row is
 * queued.
 */
Datum
meisa_messages_check_write(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	static const char *const fields[] = {"subject", "to_email", "from_address", "reply_to", "message_id"};
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *status;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!TRIGGER_FIRED_BEFORE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("meisa.messages_check_write() must be a BEFORE ROW trigger")));
	tup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = td->tg_relation->rd_att;
	for (i = 0; i < (int) lengthof(fields); i++)
	{
		int			att = SPI_fnumber(desc, fields[i]);

		if (att > 0)
			mime_check_header_value(SPI_getvalue(tup, desc, att), fields[i]);
	}
	mime_check_message_id_length(SPI_getvalue(tup, desc, SPI_fnumber(desc, "message_id")));
	status = SPI_getvalue(tup, desc, SPI_fnumber(desc, "status"));
	if (status && strcmp(status, "queued") == 0)
		delivery_wake_at_commit();
	return PointerGetDatum(tup);
}
