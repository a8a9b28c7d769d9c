/*
 * smtp_session.h
 *		One SMTP session (a libcurl easy handle and its per-message state)
 *		and the registry of the sockets the sessions open: the face of smtp.c
 *		for the multi-session driver (smtp_multi.c).  Only these two files
 *		include libcurl.
 */
#ifndef MEISA_SMTP_SESSION_H
#define MEISA_SMTP_SESSION_H

#include "delivery/delivery.h"

#include <signal.h>

#include "delivery/curl_prelude.h"

/* The sockets the sessions of one driver have open (-1 = free slot). */
typedef struct SmtpSockets
{
	int			nslots;
	volatile sig_atomic_t fd[FLEXIBLE_ARRAY_MEMBER];
} SmtpSockets;

/* One easy handle and the state of the message it is sending. */
typedef struct SmtpSession
{
	CURL	   *curl;
	SmtpSockets *socks;			/* where its sockets are registered */
	/* the envelope of the current send (libcurl keeps pointers to them) */
	struct curl_slist *rcpt;
	char	   *from_env;
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
	bool		broken;			/* the last send failed: its connection is dead */
	bool		in_multi;		/* the easy handle is in a multi handle (smtp_multi.c) */
} SmtpSession;

/* Initialises libcurl once per process. */
extern void smtp_global_init(void);
/* A registry for nslots sockets, all free (in CurrentMemoryContext). */
extern SmtpSockets *smtp_sockets_new(int nslots);
/* Shuts down every socket of the registry (async-signal-safe). */
extern void smtp_sockets_shutdown(SmtpSockets *socks);
/* A session for meisa.smtp_url registering its sockets in socks (no connection yet). */
extern SmtpSession *smtp_session_new(SmtpSockets *socks);
/* Sets up the envelope and state of one send; false (r says why) when libcurl refused it. */
extern bool smtp_session_begin(SmtpSession *s, const char *from_addr, const char *to_addr,
							   const char *data, size_t len, SmtpResult *r);
/*
 * Classifies the finished send (libcurl result rc) into r and frees its
 * envelope; after a session failure or an interruption the connection is
 * shut down.  Call it while the handle is still in its multi handle.
 */
extern void smtp_session_end(SmtpSession *s, CURLcode rc, SmtpResult *r);
/* Marks the session's connection dead and shuts its socket down (found while the handle is in its multi handle). */
extern void smtp_session_break(SmtpSession *s);
/* Frees the easy handle and the session (its connections belong to the multi handle). */
extern void smtp_session_free(SmtpSession *s);
/* Starts the watchdog that ends a wait for QUIT answers after meisa.smtp_connect_timeout. */
extern void smtp_watchdog_start(SmtpSockets *socks);
/* Stops the close watchdog. */
extern void smtp_watchdog_stop(void);

#endif							/* MEISA_SMTP_SESSION_H */
