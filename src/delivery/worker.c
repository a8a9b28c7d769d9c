/*
 * worker.c
 *		Delivery settings and the background worker.  When meisa is in
 *		shared_preload_libraries, one worker per cluster connects to
 *		meisa.database and loops: advance due sequence steps
 *		(meisa_run_due(), when the function exists), then deliver due
 *		messages in batches, then sleep until the next message or lease is
 *		due, meisa.worker_naptime at most.  A transaction that queues mail
 *		wakes it at commit by setting its latch (published in shared memory),
 *		so mail leaves at once without a NOTIFY per row.  The worker skips its
 *		work while the server is in recovery or the extension is missing, and
 *		the postmaster restarts it after a crash.
 */
#include "delivery/delivery.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void meisa_worker_main(Datum arg);

/* ---- settings */
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

bool		am_delivery_worker = false;

/* ---- shared state: where the worker's latch is */
typedef struct DeliveryShared
{
	slock_t		mutex;
	int			procno;			/* worker's PGPROC number, INVALID_PGPROCNO when none */
	pid_t		pid;
} DeliveryShared;

static DeliveryShared *delivery_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* ---- wake at commit */
static bool wake_pending = false;
static bool xact_callback_registered = false;

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

/* Asks for the shared memory of the worker's latch. */
static void
delivery_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(DeliveryShared)));
}

/* Creates (or attaches to) the shared state. */
static void
delivery_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	delivery_shared = ShmemInitStruct("meisa delivery", sizeof(DeliveryShared), &found);
	if (!found)
	{
		SpinLockInit(&delivery_shared->mutex);
		delivery_shared->procno = INVALID_PGPROCNO;
		delivery_shared->pid = 0;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Defines the delivery settings and registers the worker when preloaded. */
void
delivery_init(void)
{
	BackgroundWorker worker;

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

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = delivery_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = delivery_shmem_startup;

	if (meisa_database == NULL || meisa_database[0] == '\0')
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, "meisa", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "meisa_worker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "meisa delivery worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "meisa delivery", BGW_MAXLEN);
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

/* Sets the worker's latch when a transaction that queued mail commits. */
static void
delivery_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending && delivery_shared != NULL)
			{
				int			procno;

				SpinLockAcquire(&delivery_shared->mutex);
				procno = delivery_shared->procno;
				SpinLockRelease(&delivery_shared->mutex);
				if (procno != INVALID_PGPROCNO)
					SetLatch(&ProcGlobal->allProcs[procno].procLatch);
			}
			wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction is found by the next round */
			wake_pending = false;
			break;
		default:
			break;
	}
}

/* Wakes the delivery worker when the current transaction commits. */
void
delivery_wake_at_commit(void)
{
	if (delivery_shared == NULL || am_delivery_worker)
		return;
	if (!xact_callback_registered)
	{
		RegisterXactCallback(delivery_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_pending = true;
}

/* Removes the worker's latch from shared memory at exit. */
static void
delivery_worker_detach(int code pg_attribute_unused(), Datum arg pg_attribute_unused())
{
	if (delivery_shared == NULL)
		return;
	SpinLockAcquire(&delivery_shared->mutex);
	if (delivery_shared->pid == MyProcPid)
	{
		delivery_shared->procno = INVALID_PGPROCNO;
		delivery_shared->pid = 0;
	}
	SpinLockRelease(&delivery_shared->mutex);
}

/*
 * Checks that meisa is installed here (and not being created); returns
 * the qualified name of meisa_run_due(timestamptz) or NULL when absent.
 * *installed tells whether the extension is there.
 */
static char *
worker_find_extension(bool *installed, MemoryContext ctx)
{
	char	   *run_due = NULL;

	*installed = false;
	delivery_xact_begin("checking the meisa extension");
	if (OidIsValid(get_extension_oid("meisa", true)) && !creating_extension &&
		SPI_execute("SELECT pg_catalog.quote_ident(n.nspname), "
					"pg_catalog.to_regprocedure(pg_catalog.quote_ident(n.nspname) "
					"|| '.meisa_run_due(timestamptz)') IS NOT NULL "
					"FROM pg_catalog.pg_extension e "
					"JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
					"WHERE e.extname = 'meisa' "
					"AND pg_catalog.to_regnamespace('meisa') IS NOT NULL",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;
		Datum		has = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

		*installed = true;
		if (!isnull && DatumGetBool(has))
			run_due = MemoryContextStrdup(ctx, psprintf("%s.meisa_run_due",
														SPI_getvalue(SPI_tuptable->vals[0],
																	 SPI_tuptable->tupdesc, 1)));
	}
	delivery_xact_commit();
	return run_due;
}

/* Calls meisa_run_due(now()); a failure is logged and does not hold up delivery. */
static void
worker_run_due(const char *func, MemoryContext round_ctx)
{
	char	   *sql = psprintf("SELECT %s(pg_catalog.now())", func);

	PG_TRY();
	{
		delivery_xact_begin("meisa_run_due");
		SPI_execute(sql, false, 0);
		delivery_xact_commit();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(round_ctx);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(round_ctx);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_END_TRY();
}

/* One round: due sequence steps, then delivery batches; returns the sleep in ms. */
static long
worker_round(MemoryContext round_ctx)
{
	static bool logged_absent = false;
	bool		installed;
	char	   *run_due;
	bool		have_run_due;
	TimestampTz next;
	long		naptime = meisa_worker_naptime;
	int			batches = 0;
	bool		more = true;

	if (RecoveryInProgress())
		return naptime;

	run_due = worker_find_extension(&installed, round_ctx);
	have_run_due = (run_due != NULL);
	if (!installed)
	{
		if (!logged_absent)
			ereport(LOG,
					(errmsg("meisa delivery worker: extension meisa is not installed in database \"%s\"; waiting",
							meisa_database)));
		logged_absent = true;
		return naptime;
	}
	if (logged_absent)
		ereport(LOG, (errmsg("meisa delivery worker: extension meisa found, delivering")));
	logged_absent = false;

	if (run_due)
		worker_run_due(run_due, round_ctx);

	while (more && !ProcDiePending && !ConfigReloadPending)
	{
		int			sent;

		sent = delivery_run_batch(meisa_batch_size, true, &more);
		(void) sent;
		MemoryContextReset(round_ctx);
		if (++batches > 1000)
			break;
		if (!PostmasterIsAlive())
			proc_exit(1);
	}
	/* no idle connection while sleeping; settings may change before the next round */
	delivery_session_close(true);
	if (more)
		return 0;

	/*
	 * Sleep until the next message, lease or sequence step is due.  Without
	 * meisa.smtp_url no message can leave, so queued ones must not shorten
	 * the sleep (they would wake the worker every 100 ms).
	 */
	next = delivery_next_due(have_run_due,
							 meisa_smtp_url != NULL && meisa_smtp_url[0] != '\0');
	if (next != 0)
	{
		long		secs;
		int			usecs;
		TimestampTz now = GetCurrentTimestamp();

		if (next <= now)
			naptime = 100;		/* due but not claimable (locked elsewhere) */
		else
		{
			TimestampDifference(now, next, &secs, &usecs);
			naptime = Min(naptime, secs * 1000 + usecs / 1000 + 1);
		}
	}
	return naptime;
}

/* Entry point of the delivery background worker. */
void
meisa_worker_main(Datum arg pg_attribute_unused())
{
	MemoryContext round_ctx;

	am_delivery_worker = true;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(meisa_database, NULL, 0);

	/*
	 * The worker runs as a superuser: its queries must never resolve a name
	 * or an operator through the database's default search_path ("$user",
	 * public), where any role with CREATE on public could plant a better
	 * match (e.g. ||(text, integer)) and have it run as superuser.
	 */
	SetConfigOption("search_path", "pg_catalog, meisa, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	if (delivery_shared)
	{
		SpinLockAcquire(&delivery_shared->mutex);
		delivery_shared->procno = MyProc->pgprocno;
		delivery_shared->pid = MyProcPid;
		SpinLockRelease(&delivery_shared->mutex);
		on_shmem_exit(delivery_worker_detach, 0);
	}
	ereport(LOG,
			(errmsg("meisa delivery worker started in database \"%s\"", meisa_database)));

	round_ctx = AllocSetContextCreate(TopMemoryContext, "meisa delivery round",
									  ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		naptime = meisa_worker_naptime;
		MemoryContext oldctx;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		oldctx = MemoryContextSwitchTo(round_ctx);
		PG_TRY();
		{
			naptime = worker_round(round_ctx);
		}
		PG_CATCH();
		{
			/* log, clean up, and try again after a nap */
			MemoryContextSwitchTo(round_ctx);
			EmitErrorReport();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			delivery_session_close(false);
			pgstat_report_activity(STATE_IDLE, NULL);
			naptime = meisa_worker_naptime;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(oldctx);
		MemoryContextReset(round_ctx);

		if (naptime > 0)
		{
			/*
			 * A background worker has no idle loop that reports its table
			 * statistics: without this, autovacuum never learns about the
			 * rows the worker updates in meisa.messages.
			 */
			pgstat_report_stat(true);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 naptime, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}
