/*
 * smtp_multi.c
 *		Several SMTP sessions at once: a libcurl multi handle with one easy
 *		handle per session (smtp.c), meisa.smtp_connections of them in the
 *		worker.  The caller puts a message on an idle session, lets the
 *		transfers run for a while (smtp_multi_run polls every socket of every
 *		session together) and collects the finished ones with their outcome.
 *		The multi handle's connection cache keeps at most one connection per
 *		session and keeps them open across messages and batches, until the
 *		driver is closed (QUIT, bounded by meisa.smtp_connect_timeout in all).
 *		A cancel or SIGTERM aborts each transfer not yet handed over at once
 *		and waits for the answer to a handed-over message one second longer,
 *		as a single session does (smtp.c); an aborted transfer's connection
 *		is shut down, never reused.
 */
#include "delivery/smtp_session.h"

#include "miscadmin.h"

/* How long a message already handed over waits for its answer after a cancel or SIGTERM. */
#define SMTP_MULTI_GRACE_MS 1000

/* One session of the driver and the send it runs. */
typedef struct SmtpSlot
{
	SmtpSession *s;
	bool		busy;			/* a send is running or not yet collected */
	bool		attached;		/* its easy handle is in the multi handle */
	bool		aborted;		/* interrupted: 'result' waits to be collected */
	TimestampTz interrupted_at; /* first cancel/SIGTERM seen after the hand-over */
	SmtpResult	result;
} SmtpSlot;

struct SmtpMulti
{
	CURLM	   *multi;
	SmtpSockets *socks;			/* every socket of every session */
	int			n;
	int			attached;		/* easy handles in the multi handle */
	SmtpSlot   *slots;
};

/* Fails with the libcurl error of a multi call that did not work. */
static void
smtp_multi_check(CURLMcode rc, const char *what)
{
	if (rc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("libcurl %s failed: %s", what, curl_multi_strerror(rc))));
}

/* A driver of 'sessions' SMTP sessions for meisa.smtp_url (connections open on first use). */
SmtpMulti *
smtp_multi_open(int sessions)
{
	SmtpMulti  *mm;

	smtp_global_init();
	mm = palloc0(sizeof(SmtpMulti));
	mm->n = Max(sessions, 1);
	/* a connection attempt may open two sockets (happy eyeballs) */
	mm->socks = smtp_sockets_new(2 * mm->n + 2);
	mm->slots = palloc0(sizeof(SmtpSlot) * mm->n);
	mm->multi = curl_multi_init();
	if (mm->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	PG_TRY();
	{
		smtp_multi_check(curl_multi_setopt(mm->multi, CURLMOPT_MAXCONNECTS, (long) mm->n),
						 "CURLMOPT_MAXCONNECTS");
		for (int i = 0; i < mm->n; i++)
			mm->slots[i].s = smtp_session_new(mm->socks);
	}
	PG_CATCH();
	{
		smtp_multi_close(mm, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return mm;
}

/* The number of sessions of the driver. */
int
smtp_multi_sessions(const SmtpMulti *mm)
{
	return mm->n;
}

/* True while a send runs on the session or waits to be collected. */
bool
smtp_multi_busy(const SmtpMulti *mm, int slot)
{
	return mm->slots[slot].busy;
}

/*
 * Starts sending a message on the idle session 'slot'; false (r says why,
 * a session failure) when it could not start.  data must stay valid until
 * the send is collected.
 */
bool
smtp_multi_start(SmtpMulti *mm, int slot, const char *from_addr, const char *to_addr,
				 const char *data, size_t len, SmtpResult *r)
{
	SmtpSlot   *sl = &mm->slots[slot];
	CURLMcode	mc;

	Assert(!sl->busy);
	if (!smtp_session_begin(sl->s, from_addr, to_addr, data, len, r))
		return false;
	mc = curl_multi_add_handle(mm->multi, sl->s->curl);
	if (mc != CURLM_OK)
	{
		smtp_session_end(sl->s, CURLE_FAILED_INIT, r);
		r->outcome = SMTP_CONNFAIL;
		snprintf(r->error, sizeof(r->error), "could not start the SMTP transfer: %s",
				 curl_multi_strerror(mc));
		return false;
	}
	sl->busy = sl->attached = sl->s->in_multi = true;
	sl->aborted = false;
	sl->interrupted_at = 0;
	mm->attached++;
	return true;
}

/*
 * Runs the transfers: does what the sockets allow now and, unless a
 * transfer finished, waits up to timeout_ms for one of them to be ready.
 */
void
smtp_multi_run(SmtpMulti *mm, long timeout_ms)
{
	int			running = 0;
	int			numfds = 0;

	if (mm->attached == 0)
		return;
	smtp_multi_check(curl_multi_perform(mm->multi, &running), "curl_multi_perform");
	if (running < mm->attached || timeout_ms <= 0)
		return;
	/* a signal ends the wait early (poll returns EINTR, libcurl treats it as a timeout) */
	smtp_multi_check(curl_multi_wait(mm->multi, NULL, 0, (int) Min(timeout_ms, 1000L), &numfds),
					 "curl_multi_wait");
	smtp_multi_check(curl_multi_perform(mm->multi, &running), "curl_multi_perform");
}

/* Takes the easy handle of slot sl out of the multi handle. */
static void
smtp_multi_detach(SmtpMulti *mm, SmtpSlot *sl)
{
	if (!sl->attached)
		return;
	(void) curl_multi_remove_handle(mm->multi, sl->s->curl);
	sl->attached = sl->s->in_multi = false;
	mm->attached--;
}

/* Aborts the send on slot sl (its connection shut down, never reused): interrupted. */
static void
smtp_multi_abort(SmtpMulti *mm, SmtpSlot *sl)
{
	/* classified while attached: the break finds the transfer's socket */
	smtp_session_end(sl->s, CURLE_ABORTED_BY_CALLBACK, &sl->result);
	smtp_multi_detach(mm, sl);
	sl->aborted = true;
}

/*
 * On a pending cancel or SIGTERM: aborts each send whose message is not
 * completely handed over, and each handed-over one whose answer did not
 * come within SMTP_MULTI_GRACE_MS; they are collected as interrupted.
 */
void
smtp_multi_interrupt(SmtpMulti *mm)
{
	TimestampTz now;

	if (!ProcDiePending && !QueryCancelPending)
		return;
	now = GetCurrentTimestamp();
	for (int i = 0; i < mm->n; i++)
	{
		SmtpSlot   *sl = &mm->slots[i];

		if (!sl->attached)
			continue;
		if (sl->s->pos < sl->s->len)
			smtp_multi_abort(mm, sl);
		else if (sl->interrupted_at == 0)
			sl->interrupted_at = now;
		else if (TimestampDifferenceExceeds(sl->interrupted_at, now, SMTP_MULTI_GRACE_MS))
			smtp_multi_abort(mm, sl);
	}
}

/* Collects one finished send: true with its session in *slot and its outcome in r. */
bool
smtp_multi_done(SmtpMulti *mm, int *slot, SmtpResult *r)
{
	CURLMsg    *msg;
	int			left;

	for (int i = 0; i < mm->n; i++)
	{
		SmtpSlot   *sl = &mm->slots[i];

		if (sl->busy && sl->aborted)
		{
			*r = sl->result;
			sl->busy = sl->aborted = false;
			*slot = i;
			return true;
		}
	}
	while ((msg = curl_multi_info_read(mm->multi, &left)) != NULL)
	{
		CURL	   *easy = msg->easy_handle;
		CURLcode	rc = msg->data.result;

		if (msg->msg != CURLMSG_DONE)
			continue;
		for (int i = 0; i < mm->n; i++)
		{
			SmtpSlot   *sl = &mm->slots[i];

			if (!sl->attached || sl->s->curl != easy)
				continue;
			smtp_session_end(sl->s, rc, r);
			smtp_multi_detach(mm, sl);
			sl->busy = false;
			*slot = i;
			return true;
		}
	}
	return false;
}

/*
 * Closes the driver's connections and frees it: with quit, healthy
 * connections say QUIT, the answers awaited meisa.smtp_connect_timeout at
 * most in all; with a cancel or SIGTERM pending, or without quit (error
 * cleanup), every connection is dropped at once.  A send still running is
 * aborted.
 */
void
smtp_multi_close(SmtpMulti *mm, bool quit)
{
	bool		watched = false;

	if (mm == NULL)
		return;
	for (int i = 0; i < mm->n; i++)
	{
		SmtpSlot   *sl = &mm->slots[i];

		if (sl->s && sl->attached)
		{
			smtp_session_break(sl->s);
			smtp_multi_detach(mm, sl);
		}
	}
	if (!quit || ProcDiePending || QueryCancelPending)
		smtp_sockets_shutdown(mm->socks);
	else
	{
		smtp_watchdog_start(mm->socks);
		watched = true;
	}
	if (mm->multi)
		(void) curl_multi_cleanup(mm->multi);
	mm->multi = NULL;
	if (watched)
		smtp_watchdog_stop();
	for (int i = 0; i < mm->n; i++)
		smtp_session_free(mm->slots[i].s);
	pfree(mm->slots);
	pfree(mm->socks);
	pfree(mm);
}
