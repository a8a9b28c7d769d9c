/*
 * worker.c
 *		The delivery background worker's loop.  When meisa is in
 *		shared_preload_libraries, one worker per cluster connects to
 *		meisa.database and loops: advance due sequence steps
 *		(meisa_run_due(), when the function exists), then deliver due
 *		messages in batches, then sleep until the next message or lease is
 *		due, meisa.worker_naptime at most.  A transaction that queues mail
 *		wakes it at commit by setting its latch (wake.c).  The worker skips
 *		its work while the server is in recovery or the extension is missing,
 *		and the postmaster restarts it after a crash.
 */
#include "delivery/delivery.h"

#include "access/xact.h"
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
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PGDLLEXPORT void meisa_worker_main(Datum arg);

/* Defines the delivery settings and registers the worker when preloaded. */
void
delivery_init(void)
{
	BackgroundWorker worker;

	delivery_settings_init();
	if (!process_shared_preload_libraries_in_progress)
		return;
	delivery_shmem_init();

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
	/* a broadcast with more to queue: meisa_run_due again at once */
	if (more || broadcasts_work_left)
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

	delivery_worker_publish();
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
