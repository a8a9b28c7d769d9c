/*
 * wake.c
 *		Waking the delivery worker: the worker publishes its latch in shared
 *		memory, and a transaction that queues mail sets that latch at commit,
 *		so mail leaves at once without a NOTIFY per row.
 */
#include "delivery/delivery.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

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

/* Asks for the shared state and creates it at startup (while preloading). */
void
delivery_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = delivery_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = delivery_shmem_startup;
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

/* Marks this process as the worker and publishes its latch until it exits. */
void
delivery_worker_publish(void)
{
	am_delivery_worker = true;
	if (delivery_shared == NULL)
		return;
	SpinLockAcquire(&delivery_shared->mutex);
	delivery_shared->procno = MyProc->pgprocno;
	delivery_shared->pid = MyProcPid;
	SpinLockRelease(&delivery_shared->mutex);
	on_shmem_exit(delivery_worker_detach, 0);
}
