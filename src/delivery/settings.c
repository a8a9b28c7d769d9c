/*
 * settings.c
 *		The delivery settings: the SMTP server and its credentials' user, the
 *		sender and unsubscribe URL, the worker's database and pace, leases,
 *		retries and timeouts, with the checks of their values.  The secrets
 *		read from files have their own file (secret.c).
 */
#include "delivery/delivery.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

char	   *meisa_database = NULL;
char	   *meisa_smtp_url = NULL;
char	   *meisa_smtp_user = NULL;
char	   *meisa_from_address = NULL;
char	   *meisa_unsubscribe_base_url = NULL;
char	   *meisa_smtp_ca_file = NULL;
int			meisa_worker_naptime = 10000;
int			meisa_max_send_rate = 0;
int			meisa_batch_size = 100;
int			meisa_lease_time = 300;
int			meisa_retry_backoff_base = 60;
int			meisa_retry_backoff_max = 3600;
int			meisa_retry_give_up_after = 3 * 86400;
int			meisa_smtp_connect_timeout = 10;
int			meisa_smtp_timeout = 60;
int			meisa_smtp_connections = 4;

/* Accepts only smtp:// and smtps:// URLs (or empty = no delivery). */
static bool
check_smtp_url(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (pg_strncasecmp(*newval, "smtp://", 7) != 0 &&
		pg_strncasecmp(*newval, "smtps://", 8) != 0)
	{
		GUC_check_errdetail("meisa.smtp_url must start with smtp:// or smtps://.");
		return false;
	}
	if (strpbrk(*newval, "\r\n "))
	{
		GUC_check_errdetail("meisa.smtp_url must not contain spaces or line breaks.");
		return false;
	}

	/*
	 * No credentials in the URL: libcurl would use smtp://user:password@host,
	 * and meisa.smtp_url is readable by every role (SHOW, current_setting).
	 */
	{
		const char *authority = strstr(*newval, "://") + 3;
		size_t		len = strcspn(authority, "/?#");

		if (memchr(authority, '@', len) != NULL)
		{
			GUC_check_errdetail("meisa.smtp_url must not contain a user name or password.");
			GUC_check_errhint("Set meisa.smtp_user, and meisa.smtp_password_file to a file holding the password.");
			return false;
		}
	}
	return true;
}

/* Accepts an empty value or a single mailbox ("Name <addr>" or "addr"). */
static bool
check_from_address(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	if (strpbrk(v, "\r\n"))
	{
		GUC_check_errdetail("meisa.from_address must not contain CR or LF.");
		return false;
	}
	if (strchr(v, '@') == NULL)
	{
		GUC_check_errdetail("meisa.from_address must hold an email address.");
		return false;
	}
	return true;
}

/* Accepts a printable ASCII base URL (or empty). */
static bool
check_base_url(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	const unsigned char *p;

	if (*newval == NULL)
		return true;
	for (p = (const unsigned char *) *newval; *p; p++)
		if (*p <= 0x20 || *p >= 0x7F || *p == '<' || *p == '>')
		{
			GUC_check_errdetail("meisa.unsubscribe_base_url must be printable ASCII without spaces, \"<\" or \">\".");
			return false;
		}
	if (strlen(*newval) > UNSUBSCRIBE_BASE_URL_MAX)
	{
		GUC_check_errdetail("meisa.unsubscribe_base_url may hold at most %d characters.",
							UNSUBSCRIBE_BASE_URL_MAX);
		GUC_check_errhint("The List-Unsubscribe header carries the URL with its token on one line of at most %d characters.",
						  MIME_LINE_LIMIT);
		return false;
	}
	return true;
}

/* Defines the delivery settings (and, through secret_init, the secret files). */
void
delivery_settings_init(void)
{
	DefineCustomStringVariable("meisa.database",
							   "Database the delivery worker connects to.",
							   "Empty disables the worker.",
							   &meisa_database, "postgres",
							   /* postmaster-only settings can be defined only while preloading */
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   0, NULL, NULL, NULL);
	DefineCustomStringVariable("meisa.smtp_url",
							   "SMTP server to deliver mail to: smtp://host:port or smtps://host:port.",
							   "Empty: nothing is delivered and messages stay queued.",
							   &meisa_smtp_url, "",
							   PGC_SUSET, 0, check_smtp_url, NULL, NULL);
	DefineCustomStringVariable("meisa.smtp_user",
							   "User name for SMTP authentication (empty: no authentication).",
							   NULL, &meisa_smtp_user, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("meisa.smtp_ca_file",
							   "File of CA certificates that verify the SMTP server's TLS certificate.",
							   "Empty: the system's CA store.",
							   &meisa_smtp_ca_file, "",
							   PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("meisa.from_address",
							   "Sender of messages whose template names none, e.g. 'Acme <hello@acme.io>'.",
							   NULL, &meisa_from_address, "",
							   PGC_SUSET, 0, check_from_address, NULL, NULL);
	DefineCustomStringVariable("meisa.unsubscribe_base_url",
							   "Start of unsubscribe links; the signed token is appended.",
							   NULL, &meisa_unsubscribe_base_url, "",
							   PGC_SUSET, 0, check_base_url, NULL, NULL);
	secret_init();
	DefineCustomIntVariable("meisa.worker_naptime",
							"Longest sleep of the delivery worker between rounds.",
							NULL, &meisa_worker_naptime, 10000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.max_send_rate",
							"Most messages sent per second (0: no limit).",
							NULL, &meisa_max_send_rate, 0, 0, 100000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.batch_size",
							"Messages claimed per delivery batch of the worker.",
							NULL, &meisa_batch_size, 100, 1, 10000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.lease_time",
							"How long a claimed message stays 'sending' before it is queued again.",
							NULL, &meisa_lease_time, 300, 1, 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.retry_backoff_base",
							"Delay before the first retry after a temporary failure; doubles each attempt.",
							NULL, &meisa_retry_backoff_base, 60, 1, 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.retry_backoff_max",
							"Longest delay between retries.",
							NULL, &meisa_retry_backoff_max, 3600, 1, 7 * 86400,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.retry_give_up_after",
							"Age of a message after which a temporary failure becomes 'failed'.",
							NULL, &meisa_retry_give_up_after, 3 * 86400, 1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.smtp_connect_timeout",
							"Timeout for connecting to the SMTP server.",
							NULL, &meisa_smtp_connect_timeout, 10, 1, 3600,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.smtp_timeout",
							"Timeout for sending one message.",
							NULL, &meisa_smtp_timeout, 60, 1, 3600,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.smtp_connections",
							"SMTP sessions a delivery batch keeps busy at once.",
							"Each is a connection to meisa.smtp_url, kept open across messages and batches.",
							&meisa_smtp_connections, 4, 1, 64,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}
