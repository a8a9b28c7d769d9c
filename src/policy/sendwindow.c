/*
 * sendwindow.c
 *		Local time in a contact's zone: send windows of sequences (a step
 *		that falls due outside the window, allowed ISO week days and local
 *		opening and closing time, waits for the next opening, computed in
 *		the contact's time zone, custom_fields.timezone, or the sequence's),
 *		the zones themselves, and a wall-clock time turned into an instant.
 */
#include "policy/policy.h"

#include "datatype/timestamp.h"
#include "utils/datetime.h"

/* The time zone named 'name', or NULL when it is unknown (never throws). */
pg_tz *
send_window_zone(const char *name)
{
	if (name == NULL || name[0] == '\0' || strlen(name) > TZ_STRLEN_MAX)
		return NULL;
	return pg_tzset(name);
}

/*
 * The time zone a contact's custom_fields.timezone names, or NULL (never
 * throws).  Only names of the time zone database (pg_timezone_names) are
 * taken, never POSIX specifications such as "ABC-5:30" or "EST5EDT,M3.2.0,M11.1.0":
 * pg_tzset() keeps every zone it resolves in a per-backend cache for the
 * life of the backend (some 24 kB each), and a POSIX specification is
 * resolved without any file, so contacts holding many distinct ones would
 * grow a backend that runs meisa_run_due without bound (20,000 distinct
 * values: 480 MB).  Database names are a fixed set (about 1,200).  A POSIX
 * specification needs a digit after its name and has no "/" unless it has
 * a rule (","); the only database names without "/" that hold a digit are
 * listed below.
 */
pg_tz *
send_window_contact_zone(const char *name)
{
	static const char *const digit_names[] = {
		"EST5EDT", "CST6CDT", "MST7MDT", "PST8PDT", "GMT0", "GMT+0", "GMT-0", NULL
	};
	bool		has_slash = false;
	bool		has_digit = false;
	const char *p;

	if (name == NULL || name[0] == '\0' || strlen(name) > TZ_STRLEN_MAX)
		return NULL;
	for (p = name; *p; p++)
	{
		if (*p == ',' || *p == '<' || *p == '>')
			return NULL;
		if (*p == '/')
			has_slash = true;
		else if (*p >= '0' && *p <= '9')
			has_digit = true;
	}
	if (has_digit && !has_slash)
	{
		int			i;

		for (i = 0; digit_names[i] != NULL; i++)
			if (pg_strcasecmp(name, digit_names[i]) == 0)
				break;
		if (digit_names[i] == NULL)
			return NULL;
	}
	return pg_tzset(name);
}

/* The instant at which local wall-clock time 'local' occurs in 'tz'. */
TimestampTz
local_to_instant(Timestamp local, pg_tz *tz)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tzoff;
	TimestampTz result;

	if (timestamp2tm(local, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	tzoff = DetermineTimeZoneOffset(&tm, tz);
	if (tm2timestamp(&tm, fsec, &tzoff, &result) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return result;
}

/* The wall-clock time of 'at' in 'tz', as a timestamp without zone. */
Timestamp
local_time_of(TimestampTz at, pg_tz *tz)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tzoff;
	Timestamp	local;

	if (timestamp2tm(at, &tzoff, &tm, &fsec, NULL, tz) != 0 ||
		tm2timestamp(&tm, fsec, NULL, &local) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return local;
}

/* The local day (days since 2000-01-01) and time of day (microseconds) of 'at' in 'tz'. */
void
local_day_and_time(TimestampTz at, pg_tz *tz, int64 *day, int64 *tod)
{
	Timestamp	local = local_time_of(at, tz);

	*day = local / USECS_PER_DAY;
	if (local < 0 && local % USECS_PER_DAY != 0)
		(*day)--;
	*tod = local - *day * USECS_PER_DAY;
}

/* The first instant at or after 'at' inside the window, in time zone 'tz'. */
TimestampTz
send_window_next(TimestampTz at, pg_tz *tz, const SendWindow *w)
{
	int64		day;
	int64		tod;
	int			d;

	local_day_and_time(at, tz, &day, &tod);

	for (d = 0; d <= 7; d++)
	{
		int64		date = day + d;
		int			dow = j2day((int) (date + POSTGRES_EPOCH_JDATE));	/* 0 = Sunday */
		int			iso = dow == 0 ? 7 : dow;

		if (w->days_mask != 0 && (w->days_mask & (1 << iso)) == 0)
			continue;
		if (d == 0)
		{
			if (tod >= w->start_us && tod < w->end_us)
				return at;
			if (tod >= w->end_us)
				continue;
		}
		return local_to_instant(date * USECS_PER_DAY + w->start_us, tz);
	}
	/* an empty day set is rejected on write; never wait forever */
	return at;
}
