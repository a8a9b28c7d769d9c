/*
 * smtp.c
 *		One SMTP session on libcurl: an easy handle set up for meisa.smtp_url,
 *		the envelope of one send, and the classification of its outcome.  The
 *		multi-session driver (smtp_multi.c) runs several sessions at once in
 *		one libcurl multi handle, whose connection cache keeps the connections
 *		open between messages and batches.  smtp:// upgrades with STARTTLS
 *		when the server offers it, smtps:// is TLS from the start; only these
 *		two protocols are allowed.  Each send is classified by the SMTP reply
 *		and the command it answered (seen through libcurl's debug callback):
 *		2xx after DATA is sent, 4xx is a temporary failure, 5xx to RCPT TO is
 *		a rejected recipient, 5xx to DATA a rejected message; a failure
 *		anywhere else (connect, TLS, EHLO, AUTH, MAIL FROM) is a session
 *		failure that leaves the message for later.
 *
 *		A server that stops answering must not hold the caller: libcurl
 *		sends QUIT to every cached connection when the multi handle is
 *		cleaned up and waits up to meisa.smtp_timeout for each answer.  So
 *		the sessions open their sockets themselves (CURLOPT_OPENSOCKETFUNCTION,
 *		into a registry shared by the sessions of a driver) and, after a
 *		failed or interrupted send, shut that send's socket down: libcurl
 *		finds the connection dead and closes it without a QUIT.  The QUITs of
 *		a healthy close are waited for at most meisa.smtp_connect_timeout in
 *		all (a SIGALRM timeout shuts the sockets down), and not at all once a
 *		cancel or SIGTERM is pending.
 */
#include "delivery/smtp_session.h"

#include <sys/socket.h>
#include <unistd.h>

#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timeout.h"

/* How long a message already handed over waits for its answer after a cancel or SIGTERM. */
#define SMTP_ANSWER_GRACE_MS 1000
/* How often the close watchdog looks at the clock and for a pending SIGTERM. */
#define SMTP_WATCHDOG_MS 100

static bool curl_ready = false;

/* The close watchdog: the sockets being closed and the ticks it has left. */
static TimeoutId smtp_watchdog_id;
static bool smtp_watchdog_registered = false;
static SmtpSockets *volatile smtp_closing = NULL;
static volatile sig_atomic_t smtp_closing_ticks = 0;

/* Initialises libcurl once per process. */
void
smtp_global_init(void)
{
	if (curl_ready)
		return;
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	curl_ready = true;
}

/* libcurl read callback: hands out the message bytes. */
static size_t
smtp_read(char *buffer, size_t size, size_t nitems, void *arg)
{
	SmtpSession *s = (SmtpSession *) arg;
	size_t		room = size * nitems;
	size_t		n = Min(room, s->len - s->pos);

	memcpy(buffer, s->data + s->pos, n);
	s->pos += n;
	return n;
}

/* libcurl debug callback: remembers the last command verb and reply. */
static int
smtp_debug(CURL *handle pg_attribute_unused(), curl_infotype type, char *data, size_t size, void *arg)
{
	SmtpSession *s = (SmtpSession *) arg;

	if (type == CURLINFO_HEADER_OUT && size >= 4)
	{
		size_t		n = 0;

		while (n < size && n < sizeof(s->last_cmd) - 1 && data[n] != ' ' &&
			   data[n] != '\r' && data[n] != '\n' && data[n] != ':')
		{
			s->last_cmd[n] = data[n];
			n++;
		}
		s->last_cmd[n] = '\0';
	}
	else if (type == CURLINFO_HEADER_IN && size >= 3 &&
			 data[0] >= '2' && data[0] <= '5' &&
			 data[1] >= '0' && data[1] <= '9' && data[2] >= '0' && data[2] <= '9')
	{
		size_t		n = 0;

		s->last_code = (data[0] - '0') * 100 + (data[1] - '0') * 10 + (data[2] - '0');
		while (n < size && n < sizeof(s->last_reply) - 1 && data[n] != '\r' && data[n] != '\n')
		{
			unsigned char c = data[n];

			s->last_reply[n] = (c < 0x20 || c > 0x7E) ? '?' : c;
			n++;
		}
		s->last_reply[n] = '\0';
		/* keep the first failure: a later QUIT or RSET answer must not hide it */
		if (s->last_code >= 400 && s->fail_code == 0)
		{
			s->fail_code = s->last_code;
			memcpy(s->fail_cmd, s->last_cmd, sizeof(s->fail_cmd));
			memcpy(s->fail_reply, s->last_reply, sizeof(s->fail_reply));
		}
	}
	return 0;
}

/*
 * libcurl progress callback: aborts the transfer on cancel or shutdown.
 * Once the message is completely handed over the server may be accepting
 * it, so its answer is awaited SMTP_ANSWER_GRACE_MS longer, which a working
 * server needs, and a hanging one cannot stretch; without an answer the
 * message is sent again later (at least once).  The driver (smtp_multi.c)
 * applies the same rule between its polls.
 */
static int
smtp_progress(void *arg, curl_off_t dltotal pg_attribute_unused(), curl_off_t dlnow pg_attribute_unused(),
			  curl_off_t ultotal pg_attribute_unused(), curl_off_t ulnow pg_attribute_unused())
{
	SmtpSession *s = (SmtpSession *) arg;
	TimestampTz now;

	if (!ProcDiePending && !QueryCancelPending)
		return 0;
	if (s->pos < s->len)
		return 1;
	now = GetCurrentTimestamp();
	if (s->interrupted_at == 0)
		s->interrupted_at = now;
	return TimestampDifferenceExceeds(s->interrupted_at, now, SMTP_ANSWER_GRACE_MS) ? 1 : 0;
}

/* libcurl open-socket callback: opens the socket and registers it. */
static curl_socket_t
smtp_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
	SmtpSockets *socks = (SmtpSockets *) arg;
	int			i;
	int			fd;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	for (i = 0; i < socks->nslots; i++)
		if (socks->fd[i] < 0)
			break;
	if (i == socks->nslots)
		return CURL_SOCKET_BAD;
	fd = socket(addr->family, addr->socktype, addr->protocol);
	if (fd >= 0)
		socks->fd[i] = fd;
	return fd;
}

/* libcurl close-socket callback: forgets the socket and closes it. */
static int
smtp_close_socket(void *arg, curl_socket_t fd)
{
	SmtpSockets *socks = (SmtpSockets *) arg;
	int			i;

	for (i = 0; i < socks->nslots; i++)
		if (socks->fd[i] == fd)
			socks->fd[i] = -1;
	return close(fd);
}

/* A registry for nslots sockets, all free (in CurrentMemoryContext). */
SmtpSockets *
smtp_sockets_new(int nslots)
{
	SmtpSockets *socks = palloc0(offsetof(SmtpSockets, fd) + sizeof(sig_atomic_t) * nslots);

	socks->nslots = nslots;
	for (int i = 0; i < nslots; i++)
		socks->fd[i] = -1;
	return socks;
}

/*
 * Shuts down every open socket of the registry (async-signal-safe): libcurl
 * then sees the connections closed, so a QUIT fails at once instead of
 * waiting for an answer, and no connection is reused.
 */
void
smtp_sockets_shutdown(SmtpSockets *socks)
{
	for (int i = 0; i < socks->nslots; i++)
	{
		int			fd = socks->fd[i];

		if (fd >= 0)
			(void) shutdown(fd, SHUT_RDWR);
	}
}

/* SIGALRM timeout handler: ends a QUIT wait past its time or on cancel/SIGTERM. */
static void
smtp_watchdog(void)
{
	SmtpSockets *socks = smtp_closing;

	if (socks == NULL)
		return;
	if (ProcDiePending || QueryCancelPending || --smtp_closing_ticks <= 0)
		smtp_sockets_shutdown(socks);
}

/* Starts the watchdog that ends a wait for QUIT answers after meisa.smtp_connect_timeout. */
void
smtp_watchdog_start(SmtpSockets *socks)
{
	if (!smtp_watchdog_registered)
	{
		smtp_watchdog_id = RegisterTimeout(USER_TIMEOUT, smtp_watchdog);
		smtp_watchdog_registered = true;
	}
	smtp_closing_ticks = Max(meisa_smtp_connect_timeout * 1000 / SMTP_WATCHDOG_MS, 1);
	smtp_closing = socks;
	enable_timeout_every(smtp_watchdog_id,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SMTP_WATCHDOG_MS),
						 SMTP_WATCHDOG_MS);
}

/* Stops the close watchdog. */
void
smtp_watchdog_stop(void)
{
	smtp_closing = NULL;
	if (smtp_watchdog_registered)
		disable_timeout(smtp_watchdog_id, false);
}

/* Fails with the libcurl error of a setopt call that did not take. */
static void
smtp_check(CURLcode rc, const char *what)
{
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not set libcurl option %s: %s", what, curl_easy_strerror(rc))));
}

/* Sets the options of a session's easy handle for meisa.smtp_url. */
static void
smtp_session_setopts(SmtpSession *s)
{
	CURL	   *c = s->curl;

	smtp_check(curl_easy_setopt(c, CURLOPT_URL, meisa_smtp_url), "CURLOPT_URL");
#if MEISA_CURL_HAS_PROTOCOLS_STR
	smtp_check(curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps"), "CURLOPT_PROTOCOLS_STR");
	smtp_check(curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "smtp,smtps"), "CURLOPT_REDIR_PROTOCOLS_STR");
#else
	smtp_check(curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long) (CURLPROTO_SMTP | CURLPROTO_SMTPS)), "CURLOPT_PROTOCOLS");
	smtp_check(curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_SMTP | CURLPROTO_SMTPS)), "CURLOPT_REDIR_PROTOCOLS");
#endif
	smtp_check(curl_easy_setopt(c, CURLOPT_USE_SSL, (long) CURLUSESSL_TRY), "CURLOPT_USE_SSL");
	if (meisa_smtp_ca_file && meisa_smtp_ca_file[0] != '\0')
		smtp_check(curl_easy_setopt(c, CURLOPT_CAINFO, meisa_smtp_ca_file), "CURLOPT_CAINFO");
	if (meisa_smtp_user && meisa_smtp_user[0] != '\0')
	{
		smtp_check(curl_easy_setopt(c, CURLOPT_USERNAME, meisa_smtp_user), "CURLOPT_USERNAME");
		smtp_check(curl_easy_setopt(c, CURLOPT_PASSWORD, secret_smtp_password()), "CURLOPT_PASSWORD");
	}
	smtp_check(curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long) meisa_smtp_connect_timeout), "CURLOPT_CONNECTTIMEOUT");
	smtp_check(curl_easy_setopt(c, CURLOPT_TIMEOUT, (long) meisa_smtp_timeout), "CURLOPT_TIMEOUT");
	/* each answer, also to the QUIT libcurl sends after a refused command */
	smtp_check(curl_easy_setopt(c, CURLOPT_SERVER_RESPONSE_TIMEOUT, (long) meisa_smtp_timeout),
			   "CURLOPT_SERVER_RESPONSE_TIMEOUT");
	smtp_check(curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, smtp_open_socket), "CURLOPT_OPENSOCKETFUNCTION");
	smtp_check(curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, s->socks), "CURLOPT_OPENSOCKETDATA");
	smtp_check(curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, smtp_close_socket), "CURLOPT_CLOSESOCKETFUNCTION");
	smtp_check(curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, s->socks), "CURLOPT_CLOSESOCKETDATA");
	smtp_check(curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L), "CURLOPT_NOSIGNAL");
	smtp_check(curl_easy_setopt(c, CURLOPT_UPLOAD, 1L), "CURLOPT_UPLOAD");
	smtp_check(curl_easy_setopt(c, CURLOPT_READFUNCTION, smtp_read), "CURLOPT_READFUNCTION");
	smtp_check(curl_easy_setopt(c, CURLOPT_READDATA, s), "CURLOPT_READDATA");
	smtp_check(curl_easy_setopt(c, CURLOPT_VERBOSE, 1L), "CURLOPT_VERBOSE");
	smtp_check(curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, smtp_debug), "CURLOPT_DEBUGFUNCTION");
	smtp_check(curl_easy_setopt(c, CURLOPT_DEBUGDATA, s), "CURLOPT_DEBUGDATA");
	smtp_check(curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L), "CURLOPT_NOPROGRESS");
	smtp_check(curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, smtp_progress), "CURLOPT_XFERINFOFUNCTION");
	smtp_check(curl_easy_setopt(c, CURLOPT_XFERINFODATA, s), "CURLOPT_XFERINFODATA");
	smtp_check(curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s->errbuf), "CURLOPT_ERRORBUFFER");
	smtp_check(curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L), "CURLOPT_TCP_KEEPALIVE");
}

/* A session for meisa.smtp_url registering its sockets in socks (no connection yet). */
SmtpSession *
smtp_session_new(SmtpSockets *socks)
{
	SmtpSession *s;
	CURL	   *c;

	smtp_global_init();
	c = curl_easy_init();
	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	s = palloc0(sizeof(SmtpSession));
	s->curl = c;
	s->socks = socks;
	PG_TRY();
	{
		smtp_session_setopts(s);
	}
	PG_CATCH();
	{
		curl_easy_cleanup(c);
		pfree(s);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return s;
}

/* Frees the current send's envelope. */
static void
smtp_session_free_envelope(SmtpSession *s)
{
	if (s->rcpt)
	{
		curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, NULL);
		curl_slist_free_all(s->rcpt);
		s->rcpt = NULL;
	}
	if (s->from_env)
	{
		pfree(s->from_env);
		s->from_env = NULL;
	}
}

/* Sets up the envelope and state of one send; false (r says why) when libcurl refused it. */
bool
smtp_session_begin(SmtpSession *s, const char *from_addr, const char *to_addr,
				   const char *data, size_t len, SmtpResult *r)
{
	char	   *to_env = psprintf("<%s>", to_addr);
	MemoryContext old;

	memset(r, 0, sizeof(*r));
	s->data = data;
	s->len = len;
	s->pos = 0;
	s->last_cmd[0] = '\0';
	s->last_code = 0;
	s->last_reply[0] = '\0';
	s->fail_cmd[0] = '\0';
	s->fail_code = 0;
	s->fail_reply[0] = '\0';
	s->errbuf[0] = '\0';
	s->interrupted_at = 0;
	s->broken = false;

	smtp_session_free_envelope(s);
	/* in the session's context: it may outlive the caller's */
	old = MemoryContextSwitchTo(GetMemoryChunkContext(s));
	s->from_env = psprintf("<%s>", from_addr);
	MemoryContextSwitchTo(old);
	s->rcpt = curl_slist_append(NULL, to_env);
	pfree(to_env);
	if (s->rcpt == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (curl_easy_setopt(s->curl, CURLOPT_MAIL_FROM, s->from_env) != CURLE_OK ||
		curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, s->rcpt) != CURLE_OK ||
		curl_easy_setopt(s->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t) len) != CURLE_OK)
	{
		smtp_session_free_envelope(s);
		r->outcome = SMTP_CONNFAIL;
		strlcpy(r->error, "could not set the SMTP envelope", sizeof(r->error));
		return false;
	}
	return true;
}

/*
 * Classifies the finished send (libcurl result rc) into r and frees its
 * envelope; after a session failure or an interruption the connection is
 * shut down.  Call it while the handle is still in its multi handle.
 */
void
smtp_session_end(SmtpSession *s, CURLcode rc, SmtpResult *r)
{
	long		code = 0;

	memset(r, 0, sizeof(*r));
	smtp_session_free_envelope(s);
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code);
	if (rc == CURLE_OK)
	{
		r->code = (int) code;
		r->outcome = SMTP_SENT;
		return;
	}
	if (rc == CURLE_ABORTED_BY_CALLBACK)
	{
		r->outcome = SMTP_INTERRUPTED;
		strlcpy(r->error, "sending was interrupted", sizeof(r->error));
		smtp_session_break(s);
		return;
	}
	if (s->fail_code)
	{
		/* the server said no: the first failing reply and the command it answered */
		r->code = s->fail_code;
		snprintf(r->error, sizeof(r->error), "%s: %s",
				 s->fail_cmd[0] ? s->fail_cmd : "connect", s->fail_reply);
	}
	else
	{
		r->code = (int) code;
		snprintf(r->error, sizeof(r->error), "%s%s%s", curl_easy_strerror(rc),
				 s->errbuf[0] ? ": " : "", s->errbuf);
	}

	if (s->fail_code && (strcmp(s->fail_cmd, "RCPT") == 0 || strcmp(s->fail_cmd, "DATA") == 0))
	{
		if (s->fail_code < 500)
			r->outcome = SMTP_TEMPFAIL;
		else
		{
			r->outcome = SMTP_PERMFAIL;
			r->rcpt_rejected = (strcmp(s->fail_cmd, "RCPT") == 0);
		}
	}
	else
	{
		/* a timeout may leave the connection open, an answer perhaps still to come */
		r->outcome = SMTP_CONNFAIL;
		smtp_session_break(s);
	}
}

/*
 * Marks the session's connection dead and shuts its socket down (the one
 * its last transfer used, if libcurl still keeps it): the other sessions'
 * connections are left alone.
 */
void
smtp_session_break(SmtpSession *s)
{
	curl_socket_t fd = CURL_SOCKET_BAD;

	s->broken = true;
	/* libcurl finds the transfer's connection through the multi handle */
	if (!s->in_multi)
		return;
	if (curl_easy_getinfo(s->curl, CURLINFO_ACTIVESOCKET, &fd) == CURLE_OK &&
		fd != CURL_SOCKET_BAD)
		(void) shutdown(fd, SHUT_RDWR);
}

/* Frees the easy handle and the session (its connections belong to the multi handle). */
void
smtp_session_free(SmtpSession *s)
{
	if (s == NULL)
		return;
	smtp_session_free_envelope(s);
	if (s->curl)
		curl_easy_cleanup(s->curl);
	pfree(s);
}
