/*
 * broadcasts.h
 *		Broadcasts: a marketing template sent once to every member of a
 *		segment (or every subscribed contact), the stage above the outbox
 *		(docs/broadcasts.md).  broadcast_queue.c queues the messages of due
 *		broadcasts batch by batch for meisa_run_due; scheduling, cancelling
 *		and the row checks are SQL functions of the install script.
 */
#ifndef MEISA_BROADCASTS_H
#define MEISA_BROADCASTS_H

#include "outbox/outbox.h"

/* Sets the hook through which meisa_run_due queues broadcasts (called from _PG_init). */
extern void broadcasts_init(void);

#endif							/* MEISA_BROADCASTS_H */
