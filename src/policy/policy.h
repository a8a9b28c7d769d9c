/*
 * policy.h
 *		The sending policy stage, between the contacts and the outbox: what
 *		every marketing message follows wherever it comes from (docs/broadcasts.md).
 *		- sendwindow.c: local time in a contact's zone (send windows of
 *		  sequences, zones, wall-clock times as instants);
 *		- policy.c: the settings meisa.frequency_cap, meisa.quiet_hours,
 *		  meisa.default_timezone and meisa.broadcast_batch_size, the cap and
 *		  quiet-hours rules;
 *		- topics.c: topics and the contacts who left them, and the one
 *		  order of suppression reasons for a message.
 *		The outbox applies them when a message is queued, delivery again
 *		just before it is sent.
 */
#ifndef MEISA_POLICY_H
#define MEISA_POLICY_H

#include "contacts/contacts.h"

#include "pgtime.h"
#include "utils/timestamp.h"

/* ---- sendwindow.c */

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

/* The wall-clock time of 'at' in 'tz', as a timestamp without zone. */
extern Timestamp local_time_of(TimestampTz at, pg_tz *tz);

/* The local day (days since 2000-01-01) and time of day (microseconds) of 'at' in 'tz'. */
extern void local_day_and_time(TimestampTz at, pg_tz *tz, int64 *day, int64 *tod);

/* The instant at which local wall-clock time 'local' occurs in 'tz' (a skipped time is read as standard time). */
extern TimestampTz local_to_instant(Timestamp local, pg_tz *tz);

/* ---- policy.c */

/* Defines the policy settings (called from _PG_init). */
extern void policy_init(void);

/* meisa.broadcast_batch_size: messages queued per broadcast and meisa_run_due call. */
extern int	meisa_broadcast_batch_size;

/* The zone of a contact: its custom_fields.timezone, else meisa.default_timezone. */
extern pg_tz *policy_contact_zone(const char *contact_tz);

/* The wall-clock time of 'at' in meisa.default_timezone. */
extern Timestamp policy_default_local(TimestampTz at);

/* True when meisa.quiet_hours is set. */
extern bool policy_quiet_set(void);

/* True when meisa.frequency_cap is set. */
extern bool policy_cap_set(void);

/*
 * True when the contact's marketing messages queued, sending or sent in the
 * window of meisa.frequency_cap before 'at' reach the cap (SPI connected);
 * *free_at (unless NULL) is then when the oldest of them leaves the window.
 */
extern bool policy_cap_reached(int64 contact_id, TimestampTz at, TimestampTz *free_at);

/*
 * The first instant at or after 'at' outside meisa.quiet_hours in zone
 * 'tz' ('at' itself when there are none or it is outside them).
 */
extern TimestampTz policy_quiet_end(TimestampTz at, pg_tz *tz);

/* ---- topics.c */

/* The id of the topic named 'name', 0 when there is none. */
extern int64 topic_id_by_name(const char *name);

/* The name of topic 'id' (palloc'd), NULL when there is none. */
extern char *topic_name_by_id(int64 id);

/* True when the contact left the topic named 'topic' (SPI connected). */
extern bool topic_left(int64 contact_id, const char *topic);

/*
 * Why a message of 'kind' under 'topic' (NULL = none) must not go to the
 * contact: contact_suppression_reason's reasons, then, for marketing mail
 * with a topic the contact left, "topic_unsubscribed"; NULL when it may.
 */
extern const char *policy_suppression_reason(const ContactState *cs, const char *kind,
											 const char *topic);

#endif							/* MEISA_POLICY_H */
