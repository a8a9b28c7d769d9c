/*
 * condition_value.c
 *		The literal readers of the condition language: ISO 8601 dates and
 *		date-times, plain decimal numbers and spans such as "7 days".  They
 *		never raise an error for bad input (they say false / NULL), so that
 *		evaluating a rule against any stored value cannot fail.
 */
#include "conditions/conditions.h"

#include <ctype.h>

#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

/* Reads exactly 'n' digits at *p into *out, advancing *p; false otherwise. */
static bool
read_digits(const char **p, const char *end, int n, int *out)
{
	int			v = 0;

	if (end - *p < n)
		return false;
	for (int i = 0; i < n; i++)
	{
		char		c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* Parses an ISO 8601 date or date-time; false when it is not one. */
bool
condition_parse_timestamp(const char *s, int len, TimestampTz *ts)
{
	bool		local;

	return condition_parse_timestamp_local(s, len, ts, &local);
}

/*
 * condition_parse_timestamp, also saying in *local whether the string has no
 * UTC offset (then it was read in the session time zone, which may change).
 */
bool
condition_parse_timestamp_local(const char *s, int len, TimestampTz *ts,
								bool *local)
{
	const char *p = s;
	const char *end = s + len;
	int			year,
				mon,
				mday,
				hour = 0,
				min = 0,
				sec = 0;
	int64		fsec = 0;
	bool		has_offset = false;
	int			offset_sec = 0;	/* east of UTC */
	int			jd;
	int64		result;

	if (len < 10 || len > 64)
		return false;
	if (!read_digits(&p, end, 4, &year) || p >= end || *p++ != '-' ||
		!read_digits(&p, end, 2, &mon) || p >= end || *p++ != '-' ||
		!read_digits(&p, end, 2, &mday))
		return false;
	if (year < 1 || mon < 1 || mon > 12 || mday < 1 ||
		mday > day_tab[isleap(year)][mon - 1])
		return false;
	if (p < end)
	{
		if (*p != 'T' && *p != 't' && *p != ' ')
			return false;
		p++;
		if (!read_digits(&p, end, 2, &hour) || p >= end || *p++ != ':' ||
			!read_digits(&p, end, 2, &min))
			return false;
		if (p < end && *p == ':')
		{
			p++;
			if (!read_digits(&p, end, 2, &sec))
				return false;
			if (p < end && (*p == '.' || *p == ','))
			{
				int64		scale = 100000;
				bool		any = false;

				p++;
				while (p < end && *p >= '0' && *p <= '9')
				{
					fsec += (*p - '0') * scale;
					scale /= 10;
					any = true;
					p++;
				}
				if (!any)
					return false;
			}
		}
		if (hour > 24 || min > 59 || sec > 60 ||
			(hour == 24 && (min > 0 || sec > 0 || fsec > 0)))
			return false;
		if (p < end)
		{
			if (*p == 'Z' || *p == 'z')
			{
				has_offset = true;
				p++;
			}
			else if (*p == '+' || *p == '-')
			{
				int			sign = (*p == '-') ? -1 : 1;
				int			oh,
							om = 0;

				p++;
				if (!read_digits(&p, end, 2, &oh))
					return false;
				if (p < end && *p == ':')
					p++;
				if (p < end && !read_digits(&p, end, 2, &om))
					return false;
				if (oh > 15 || om > 59)
					return false;
				has_offset = true;
				offset_sec = sign * (oh * 3600 + om * 60);
			}
			if (p != end)
				return false;
		}
	}

	jd = date2j(year, mon, mday) - POSTGRES_EPOCH_JDATE;
	result = (int64) jd * USECS_PER_DAY + (int64) hour * USECS_PER_HOUR +
		(int64) min * USECS_PER_MINUTE + (int64) sec * USECS_PER_SEC + fsec;
	if (has_offset)
		result -= (int64) offset_sec * USECS_PER_SEC;
	else
	{
		struct pg_tm tm;
		int			tz;

		memset(&tm, 0, sizeof(tm));
		tm.tm_year = year;
		tm.tm_mon = mon;
		tm.tm_mday = mday;
		tm.tm_hour = hour;
		tm.tm_min = min;
		tm.tm_sec = sec;
		tz = DetermineTimeZoneOffset(&tm, session_timezone);
		result += (int64) tz * USECS_PER_SEC;
	}
	*ts = result;
	*local = !has_offset;
	return true;
}

/* Parses a plain decimal number ("-12.5"); NULL when it is not one. */
Numeric
condition_parse_number(const char *s, int len)
{
	char		buf[64];
	int			i = 0;
	bool		digits = false;

	if (len <= 0 || len >= (int) sizeof(buf))
		return NULL;
	if (s[i] == '-' || s[i] == '+')
		i++;
	while (i < len && s[i] >= '0' && s[i] <= '9')
		i++, digits = true;
	if (i < len && s[i] == '.')
	{
		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++, digits = true;
	}
	if (i != len || !digits)
		return NULL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return DatumGetNumeric(DirectFunctionCall3(numeric_in,
											   CStringGetDatum(buf),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

/* Parses "7 days", "1 hour 30 minutes", ... into *iv; false when invalid. */
bool
condition_parse_interval(const char *s, Interval *iv)
{
	const char *p = s;
	int			pairs = 0;

	memset(iv, 0, sizeof(*iv));
	for (;;)
	{
		int64		n = 0;
		int			ndig = 0;
		char		unit[16];
		int			ulen = 0;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		while (*p >= '0' && *p <= '9')
		{
			n = n * 10 + (*p - '0');
			if (++ndig > 7)
				return false;
			p++;
		}
		if (ndig == 0)
			return false;
		while (*p == ' ')
			p++;
		while (isalpha((unsigned char) *p))
		{
			if (ulen >= (int) sizeof(unit) - 1)
				return false;
			unit[ulen++] = tolower((unsigned char) *p);
			p++;
		}
		unit[ulen] = '\0';
		if (ulen > 1 && unit[ulen - 1] == 's')
			unit[--ulen] = '\0';
		if (strcmp(unit, "second") == 0 || strcmp(unit, "sec") == 0)
			iv->time += n * USECS_PER_SEC;
		else if (strcmp(unit, "minute") == 0 || strcmp(unit, "min") == 0)
			iv->time += n * USECS_PER_MINUTE;
		else if (strcmp(unit, "hour") == 0)
			iv->time += n * USECS_PER_HOUR;
		else if (strcmp(unit, "day") == 0)
			iv->day += (int32) n;
		else if (strcmp(unit, "week") == 0)
			iv->day += (int32) (n * 7);
		else if (strcmp(unit, "month") == 0)
			iv->month += (int32) n;
		else if (strcmp(unit, "year") == 0)
			iv->month += (int32) (n * 12);
		else
			return false;
		/* bounded, so that no sum of pairs can overflow */
		if (iv->day > 1000000 || iv->month > 120000 ||
			iv->time > (int64) 1000000 * USECS_PER_DAY)
			return false;
		pairs++;
	}
	return pairs > 0;
}
