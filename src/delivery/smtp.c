/*
 * smtp.c
 *		The SMTP client, on libcurl.  A session holds one easy handle, so
 *		libcurl keeps the connection open between messages of a batch and
 *		closes it (QUIT) when the session ends.  smtp:// upgrades with
 *		STARTTLS when the server offers it, smtps:// is TLS from the start;
 *		only these two protocols are allowed.  Each send is classified by the
 *		SMTP reply and the command it answered (seen through libcurl's debug
 *		callback): 2xx after DATA is sent, 4xx is a temporary failure, 5xx to
 *		RCPT TO is a rejected recipient, 5xx to DATA a rejected message; a
 *		failure anywhere else (connect, TLS, EHLO, AUTH, MAIL FROM) is a
 *		session failure that leaves the message for later.
 *
 *		A server that stops answering must not hold the caller: libcurl
 *		keeps a connection whose send timed out and, when the handle is
 *		cleaned up, sends QUIT and waits up to 120 s for the answer
 *		(CURLOPT_TIMEOUT does not apply there).  So the session opens its
 *		sockets itself (CURLOPT_OPENSOCKETFUNCTION) and, after a failed or
 *		interrupted send, shuts them down: libcurl finds the connection
 *		dead and closes it without a QUIT.  A healthy session's QUIT is
 *		waited for at most meisa.smtp_connect_timeout (a SIGALRM timeout
 *		shuts the sockets down), and not at all once a cancel or SIGTERM is
 *		pending.
 */
#include "delivery/delivery.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "delivery/curl_prelude.h"
#include "miscadmin.h"
#include "utils/timeout.h"

/* Sockets a session can have open at once (happy eyeballs opens two). */
#define SMTP_MAX_SOCKETS 8
/* How long a message already handed over waits for its answer after a cancel or SIGTERM. */
#define SMTP_ANSWER_GRACE_MS 1000
/* How often the close watchdog looks at the clock and for a pending SIGTERM. */
#define SMTP_WATCHDOG_MS 100

struct SmtpSession
{
	CURL	   *curl;
	/* per-send state */
	const char *data;
	size_t		len;
	size_t		pos;
	char		last_cmd[8];	/* verb of the last command sent */
	int			last_code;		/* last reply code received */
	char		last_reply[256];	/* first line of that reply */
	char		fail_cmd[8];	/* command of the first 4xx/5xx reply */
	int			fail_code;		/* first 4xx/5xx reply code, 0 = none */
	char		fail_reply[256];	/* first line of that reply */
	char		errbuf[CURL_ERROR_SIZE];
	TimestampTz interrupted_at; /* first cancel/SIGTERM seen after the hand-over, 0 = none */
	bool		broken;			/* the last send failed: the connection is dead */
	volatile sig_atomic_t sockets[SMTP_MAX_SOCKETS];	/* open sockets, -1 = free */
};

static bool curl_ready = false;

static void smtp_session_break(SmtpSession *s);

/* The close watchdog: the session being closed and the ticks it has left. */
static TimeoutId smtp_watchdog_id;
static bool smtp_watchdog_registered = false;
static SmtpSession *volatile smtp_closing = NULL;
static volatile sig_atomic_t smtp_closing_ticks = 0;

/* Initialises libcurl once per process. */
static void
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
 * libcurl progress callback (called at least once a second, and at once
 * when a signal arrives): aborts the transfer on cancel or shutdown.  Once
 * the message is completely handed over the server may be accepting it, so
 * its answer is awaited SMTP_ANSWER_GRACE_MS longer, which a working server
 * needs, and a hanging one cannot stretch; without an answer the message is
 * sent again later (at least once).
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

/* libcurl open-socket callback: opens the socket and remembers it. */
static curl_socket_t
smtp_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
	SmtpSession *s = (SmtpSession *) arg;
	int			i;
	int			fd;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	for (i = 0; i < SMTP_MAX_SOCKETS; i++)
		if (s->sockets[i] < 0)
			break;
	if (i == SMTP_MAX_SOCKETS)
		return CURL_SOCKET_BAD;
	fd = socket(addr->family, addr->socktype, addr->protocol);
	if (fd >= 0)
		s->sockets[i] = fd;
	return fd;
}

/* libcurl close-socket callback: forgets the socket and closes it. */
static int
smtp_close_socket(void *arg, curl_socket_t fd)
{
	SmtpSession *s = (SmtpSession *) arg;
	int			i;

	for (i = 0; i < SMTP_MAX_SOCKETS; i++)
		if (s->sockets[i] == fd)
			s->sockets[i] = -1;
	return close(fd);
}

/*
 * Shuts down every open socket of the session (async-signal-safe): libcurl
 * then sees the connection closed, so a QUIT fails at once instead of
 * waiting for an answer, and the connection is never reused.
 */
static void
smtp_shutdown_sockets(SmtpSession *s)
{
	int			i;

	for (i = 0; i < SMTP_MAX_SOCKETS; i++)
	{
		int			fd = s->sockets[i];

		if (fd >= 0)
			(void) shutdown(fd, SHUT_RDWR);
	}
}

/* SIGALRM timeout handler: ends a QUIT wait past its time or on cancel/SIGTERM. */
static void
smtp_watchdog(void)
{
	SmtpSession *s = smtp_closing;

	if (s == NULL)
		return;
	if (ProcDiePending || QueryCancelPending || --smtp_closing_ticks <= 0)
		smtp_shutdown_sockets(s);
}

/* Starts the watchdog that bounds the close of s by meisa.smtp_connect_timeout. */
static void
smtp_watchdog_start(SmtpSession *s)
{
	if (!smtp_watchdog_registered)
	{
		smtp_watchdog_id = RegisterTimeout(USER_TIMEOUT, smtp_watchdog);
		smtp_watchdog_registered = true;
	}
	smtp_closing_ticks = Max(meisa_smtp_connect_timeout * 1000 / SMTP_WATCHDOG_MS, 1);
	smtp_closing = s;
	enable_timeout_every(smtp_watchdog_id,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SMTP_WATCHDOG_MS),
						 SMTP_WATCHDOG_MS);
}

/* Stops the close watchdog. */
static void
smtp_watchdog_stop(void)
{
	smtp_closing = NULL;
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

/* Opens a session object for meisa.smtp_url (the connection opens on first send). */
SmtpSession *
smtp_session_open(void)
{
	SmtpSession *s;
	CURL	   *c;
	int			i;

	smtp_global_init();
	c = curl_easy_init();
	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	s = palloc0(sizeof(SmtpSession));
	s->curl = c;
	for (i = 0; i < SMTP_MAX_SOCKETS; i++)
		s->sockets[i] = -1;

	PG_TRY();
	{
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
		smtp_check(curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, s), "CURLOPT_OPENSOCKETDATA");
		smtp_check(curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, smtp_close_socket), "CURLOPT_CLOSESOCKETFUNCTION");
		smtp_check(curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, s), "CURLOPT_CLOSESOCKETDATA");
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
	PG_CATCH();
	{
		curl_easy_cleanup(c);
		pfree(s);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return s;
}

/*
 * Sends one message; the connection is kept for the next send, but after a
 * session failure or an interruption it is dead (its sockets shut down).
 */
void
smtp_send(SmtpSession *s, const char *from_addr, const char *to_addr,
		  const char *data, size_t len, SmtpResult *r)
{
	struct curl_slist *rcpt;
	char	   *from_env = psprintf("<%s>", from_addr);
	char	   *to_env = psprintf("<%s>", to_addr);
	CURLcode	rc;
	long		code = 0;

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

	rcpt = curl_slist_append(NULL, to_env);
	if (rcpt == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (curl_easy_setopt(s->curl, CURLOPT_MAIL_FROM, from_env) != CURLE_OK ||
		curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, rcpt) != CURLE_OK ||
		curl_easy_setopt(s->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t) len) != CURLE_OK)
	{
		curl_slist_free_all(rcpt);
		pfree(from_env);
		pfree(to_env);
		r->outcome = SMTP_CONNFAIL;
		strlcpy(r->error, "could not set the SMTP envelope", sizeof(r->error));
		return;
	}
	rc = curl_easy_perform(s->curl);
	curl_easy_setopt(s->curl, CURLOPT_MAIL_RCPT, NULL);
	curl_slist_free_all(rcpt);
	pfree(from_env);
	pfree(to_env);

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
		/* a timeout leaves libcurl's connection open, an answer perhaps still to come */
		r->outcome = SMTP_CONNFAIL;
		smtp_session_break(s);
	}
}

/* Marks the session's connection dead and shuts its sockets down. */
static void
smtp_session_break(SmtpSession *s)
{
	s->broken = true;
	smtp_shutdown_sockets(s);
}

/*
 * Closes the connection and frees the session.  With quit, a healthy
 * connection says QUIT, its answer awaited meisa.smtp_connect_timeout at
 * most; a dead one, or any with a cancel or SIGTERM pending, or without
 * quit (error cleanup), is dropped at once.
 */
void
smtp_session_close(SmtpSession *s, bool quit)
{
	if (s == NULL)
		return;
	if (s->curl)
	{
		bool		watched = false;

		if (!quit || s->broken || ProcDiePending || QueryCancelPending)
			smtp_shutdown_sockets(s);
		else
		{
			smtp_watchdog_start(s);
			watched = true;
		}
		curl_easy_cleanup(s->curl);
		s->curl = NULL;
		if (watched)
			smtp_watchdog_stop();
	}
	pfree(s);
}
