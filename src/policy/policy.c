/*
 * policy.c
 *		The settings of the sending policy and its two rules of time:
 *		meisa.frequency_cap ('N per INTERVAL': a contact's marketing messages
 *		queued, sending or sent within the interval count, and mail over the
 *		cap is suppressed, or waits for a sequence step) and
 *		meisa.quiet_hours ('HH:MM-HH:MM' in the contact's zone: marketing
 *		mail inside waits for their end).  meisa.default_timezone is the zone
 *		of a contact without custom_fields.timezone; meisa.broadcast_batch_size
 *		the messages a broadcast queues per meisa_run_due call.
 *		Transactional mail follows neither rule.
 */
#include "policy/policy.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"

int			meisa_broadcast_batch_size = 5000;
static char *frequency_cap_setting = NULL;
static char *quiet_hours_setting = NULL;
static char *default_timezone_setting = NULL;

/* The parsed meisa.frequency_cap (count 0 = none). */
typedef struct FrequencyCap
{
	int			count;
	int64		window_us;
} FrequencyCap;

/* The parsed meisa.quiet_hours (set false = none). */
typedef struct QuietHours
{
	bool		set;
	int64		start_us;		/* local start, microseconds after midnight */
	int64		end_us;			/* local end (exclusive) */
} QuietHours;

static FrequencyCap cap = {0, 0};
static QuietHours quiet = {false, 0, 0};

/* Skips spaces and tabs. */
static const char *
skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* Reads a decimal number of at most 9 digits into *n; NULL when there is none. */
static const char *
read_number(const char *p, int *n)
{
	int			digits = 0;

	*n = 0;
	while (*p >= '0' && *p <= '9' && digits < 9)
	{
		*n = *n * 10 + (*p++ - '0');
		digits++;
	}
	return (digits == 0 || (*p >= '0' && *p <= '9')) ? NULL : p;
}

/* The length of a unit name in microseconds, 0 when unknown ("day", "days", ...). */
static int64
unit_us(const char *u, int len)
{
	static const struct
	{
		const char *name;
		int64		us;
	}			units[] = {
		{"second", USECS_PER_SEC}, {"minute", USECS_PER_MINUTE},
		{"hour", USECS_PER_HOUR}, {"day", USECS_PER_DAY},
		{"week", 7 * USECS_PER_DAY}
	};

	if (len > 1 && u[len - 1] == 's')
		len--;
	for (int i = 0; i < (int) lengthof(units); i++)
		if ((int) strlen(units[i].name) == len && pg_strncasecmp(u, units[i].name, len) == 0)
			return units[i].us;
	return 0;
}

/* Parses 'N per [M] unit' ("3 per 7 days", "1 per day"); false when malformed. */
static bool
parse_cap(const char *s, FrequencyCap *out)
{
	const char *p = skip_blanks(s);
	const char *u;
	int			n,
				m = 1;
	int64		us;

	out->count = 0;
	out->window_us = 0;
	if (*p == '\0')
		return true;			/* empty: no cap */
	if ((p = read_number(p, &n)) == NULL || n < 1)
		return false;
	p = skip_blanks(p);
	if (pg_strncasecmp(p, "per", 3) != 0 || (p[3] != ' ' && p[3] != '\t'))
		return false;
	p = skip_blanks(p + 3);
	if (*p >= '0' && *p <= '9')
	{
		if ((p = read_number(p, &m)) == NULL || m < 1 || m > 3660)
			return false;
		p = skip_blanks(p);
	}
	for (u = p; (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'); p++)
		;
	us = unit_us(u, (int) (p - u));
	if (us == 0 || *skip_blanks(p) != '\0')
		return false;
	out->count = n;
	out->window_us = us * m;
	return true;
}

/* Reads "HH:MM" into microseconds after midnight; NULL when malformed. */
static const char *
read_clock(const char *p, int64 *us)
{
	int			h,
				m;

	if (!(p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9' && p[2] == ':' &&
		  p[3] >= '0' && p[3] <= '9' && p[4] >= '0' && p[4] <= '9'))
		return NULL;
	h = (p[0] - '0') * 10 + (p[1] - '0');
	m = (p[3] - '0') * 10 + (p[4] - '0');
	if (h > 23 || m > 59)
		return NULL;
	*us = h * USECS_PER_HOUR + m * USECS_PER_MINUTE;
	return p + 5;
}

/* Parses 'HH:MM-HH:MM' (start and end differ); false when malformed. */
static bool
parse_quiet(const char *s, QuietHours *out)
{
	const char *p = skip_blanks(s);

	out->set = false;
	if (*p == '\0')
		return true;
	if ((p = read_clock(p, &out->start_us)) == NULL)
		return false;
	p = skip_blanks(p);
	if (*p++ != '-')
		return false;
	p = skip_blanks(p);
	if ((p = read_clock(p, &out->end_us)) == NULL || *skip_blanks(p) != '\0' ||
		out->start_us == out->end_us)
		return false;
	out->set = true;
	return true;
}

/* Check hook of meisa.frequency_cap. */
static bool
check_frequency_cap(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	FrequencyCap c;

	if (*newval && !parse_cap(*newval, &c))
	{
		GUC_check_errdetail("meisa.frequency_cap is 'N per INTERVAL', e.g. '3 per 7 days' or '1 per day' (units second, minute, hour, day, week), or empty for none.");
		return false;
	}
	return true;
}

/* Assign hook of meisa.frequency_cap. */
static void
assign_frequency_cap(const char *newval, void *extra pg_attribute_unused())
{
	if (newval == NULL || !parse_cap(newval, &cap))
		cap.count = 0;
}

/* Check hook of meisa.quiet_hours. */
static bool
check_quiet_hours(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	QuietHours q;

	if (*newval && !parse_quiet(*newval, &q))
	{
		GUC_check_errdetail("meisa.quiet_hours is 'HH:MM-HH:MM' in the contact's time zone, e.g. '21:00-08:00', with different start and end, or empty for none.");
		return false;
	}
	return true;
}

/* Assign hook of meisa.quiet_hours. */
static void
assign_quiet_hours(const char *newval, void *extra pg_attribute_unused())
{
	if (newval == NULL || !parse_quiet(newval, &quiet))
		quiet.set = false;
}

/* Check hook of meisa.default_timezone: a zone of the time zone database. */
static bool
check_default_timezone(char **newval, void **extra pg_attribute_unused(), GucSource source pg_attribute_unused())
{
	if (*newval == NULL || send_window_contact_zone(*newval) == NULL)
	{
		GUC_check_errdetail("meisa.default_timezone must name a time zone of pg_timezone_names, e.g. 'UTC' or 'Europe/Berlin'.");
		return false;
	}
	return true;
}

/* Defines the policy settings (called from _PG_init). */
void
policy_init(void)
{
	DefineCustomStringVariable("meisa.frequency_cap",
							   "Most marketing messages per contact in a window, as 'N per INTERVAL' (empty = no cap).",
							   NULL, &frequency_cap_setting, "", PGC_SUSET, 0,
							   check_frequency_cap, assign_frequency_cap, NULL);
	DefineCustomStringVariable("meisa.quiet_hours",
							   "Local hours 'HH:MM-HH:MM' in which no marketing mail is sent (empty = none).",
							   NULL, &quiet_hours_setting, "", PGC_SUSET, 0,
							   check_quiet_hours, assign_quiet_hours, NULL);
	DefineCustomStringVariable("meisa.default_timezone",
							   "Time zone of a contact without custom_fields.timezone (quiet hours, local-time broadcasts).",
							   NULL, &default_timezone_setting, "UTC", PGC_SUSET, 0,
							   check_default_timezone, NULL, NULL);
	DefineCustomIntVariable("meisa.broadcast_batch_size",
							"Messages of each due broadcast queued per meisa_run_due call.",
							NULL, &meisa_broadcast_batch_size, 5000, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
}

/* The zone of a contact: its custom_fields.timezone, else meisa.default_timezone. */
pg_tz *
policy_contact_zone(const char *contact_tz)
{
	pg_tz	   *tz = send_window_contact_zone(contact_tz);

	if (tz == NULL)
		tz = send_window_contact_zone(default_timezone_setting);
	return tz ? tz : pg_tzset("UTC");
}

/* The wall-clock time of 'at' in meisa.default_timezone. */
Timestamp
policy_default_local(TimestampTz at)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tzoff;
	Timestamp	local;

	if (timestamp2tm(at, &tzoff, &tm, &fsec, NULL, policy_contact_zone(NULL)) != 0 ||
		tm2timestamp(&tm, fsec, NULL, &local) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return local;
}

/* True when meisa.frequency_cap is set. */
bool
policy_cap_set(void)
{
	return cap.count > 0;
}

/*
 * True when the contact's marketing messages queued, sending or sent in the
 * cap's window before 'at' reach the cap; *free_at is then when the oldest
 * of the newest 'count' leaves the window (the cap allows one more).
 */
bool
policy_cap_reached(int64 contact_id, TimestampTz at, TimestampTz *free_at)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext callercxt = CurrentMemoryContext;
	Datum		values[3];
	bool		reached;

	if (cap.count <= 0)
		return false;
	if (plan == NULL)
	{
		Oid			types[3] = {INT8OID, TIMESTAMPTZOID, INT4OID};

		plan = spi_keep_plan("SELECT created_at FROM meisa.messages"
							 " WHERE contact_id OPERATOR(pg_catalog.=) $1"
							 " AND created_at OPERATOR(pg_catalog.>) $2"
							 " AND kind OPERATOR(pg_catalog.=) 'marketing'"
							 " AND status OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'sending', 'sent'])"
							 " ORDER BY created_at DESC LIMIT $3", 3, types);
	}
	values[0] = Int64GetDatum(contact_id);
	values[1] = TimestampTzGetDatum(at - cap.window_us);
	values[2] = Int32GetDatum(cap.count);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "meisa: frequency cap lookup failed");
	reached = SPI_processed >= (uint64) cap.count;
	if (reached && free_at)
	{
		bool		isnull;

		*free_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[cap.count - 1],
													 SPI_tuptable->tupdesc, 1, &isnull)) + cap.window_us;
		if (*free_at <= at)
			*free_at = at + USECS_PER_SEC;
	}
	SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(callercxt);	/* SPI left its own current */
	return reached;
}

/*
 * The first instant at or after 'at' outside meisa.quiet_hours in 'tz'.
 * Quiet hours may cross midnight ('21:00-08:00'); the end is found as a
 * wall-clock time, so a DST change inside them moves the instant, not the
 * local end (an end in a gap comes at the first instant after it).
 */
TimestampTz
policy_quiet_end(TimestampTz at, pg_tz *tz)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tzoff;
	Timestamp	local;
	int64		day,
				tod;
	bool		inside;

	if (!quiet.set)
		return at;
	if (timestamp2tm(at, &tzoff, &tm, &fsec, NULL, tz) != 0 ||
		tm2timestamp(&tm, fsec, NULL, &local) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	day = local / USECS_PER_DAY;
	if (local < 0 && local % USECS_PER_DAY != 0)
		day--;
	tod = local - day * USECS_PER_DAY;
	if (quiet.start_us < quiet.end_us)
		inside = tod >= quiet.start_us && tod < quiet.end_us;
	else
		inside = tod >= quiet.start_us || tod < quiet.end_us;
	if (!inside)
		return at;
	/* crossing midnight and already past the start: they end tomorrow */
	if (quiet.start_us > quiet.end_us && tod >= quiet.start_us)
		day++;
	return Max(at, local_to_instant(day * USECS_PER_DAY + quiet.end_us, tz));
}
