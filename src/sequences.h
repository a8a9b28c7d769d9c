/*
 * sequences.h
 *		Private helpers shared by the sequence modules: enrolment
 *		(sequences.c), the send window (sendwindow.c) and the runner
 *		(rundue.c).
 */
#ifndef MEISA_SEQUENCES_H
#define MEISA_SEQUENCES_H

#include "meisa.h"

#include "pgtime.h"
#include "utils/timestamp.h"

/* meisa.run_due_batch_size: enrolments locked and advanced per batch. */
extern int	meisa_run_due_batch_size;
/* meisa.sequence_retry_delay (seconds): wait after a failed enrolment run. */
extern int	meisa_sequence_retry_delay;

/* A send window: ISO days as a bit mask (bit 1 = Monday .. bit 7 = Sunday). */
typedef struct SendWindow
{
	int			days_mask;		/* 0 = every day */
	int64		start_us;		/* local opening, microseconds after midnight */
	int64		end_us;			/* local closing (exclusive) */
} SendWindow;

/*
 * The first instant at or after 'at' inside the window, in time zone 'tz':
 * 'at' itself when the window is open then.
 */
extern TimestampTz send_window_next(TimestampTz at, pg_tz *tz, const SendWindow *w);

/* The time zone named 'name', or NULL when it is unknown (never throws). */
extern pg_tz *send_window_zone(const char *name);

/* The zone a contact's custom_fields.timezone names: database names only. */
extern pg_tz *send_window_contact_zone(const char *name);

#endif							/* MEISA_SEQUENCES_H */
