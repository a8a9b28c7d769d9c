/*
 * worker.c
 *		Delivery settings and the background worker.
 *		(Skeleton: filled in by the delivery work.)
 */
#include "meisa.h"

/* Defines the delivery settings and registers the worker when preloaded. */
void
delivery_init(void)
{
}

/* Wakes the worker at commit (skeleton: no worker yet). */
void
delivery_wake_at_commit(void)
{
}
