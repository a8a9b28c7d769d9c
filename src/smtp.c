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
 */
#include "delivery.h"

#include "curl_prelude.h"
#include "miscadmin.h"

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
};

static bool curl_ready = false;

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
 * libcurl progress callback: aborts the transfer on cancel or shutdown, but
 * only while the message is not yet completely handed over; after that the
 * server may already have accepted it, so its answer is awaited (at most
 * meisa.smtp_timeout) rather than risking a resend of a delivered message.
 */
static int
smtp_progress(void *arg, curl_off_t dltotal pg_attribute_unused(), curl_off_t dlnow pg_attribute_unused(),
			  curl_off_t ultotal pg_attribute_unused(), curl_off_t ulnow pg_attribute_unused())
{
	SmtpSession *s = (SmtpSession *) arg;

	if ((ProcDiePending || QueryCancelPending) && s->pos < s->len)
		return 1;
	return 0;
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

	smtp_global_init();
	c = curl_easy_init();
	if (c == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	s = palloc0(sizeof(SmtpSession));
	s->curl = c;

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
		PG_RE_THROW();
	}
	PG_END_TRY();
	return s;
}

/* Sends one message; the connection is kept for the next send. */
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
		r->outcome = SMTP_CONNFAIL;
}

/* Closes the connection (QUIT) and frees the session. */
void
smtp_session_close(SmtpSession *s)
{
	if (s == NULL)
		return;
	if (s->curl)
		curl_easy_cleanup(s->curl);
	pfree(s);
}
