/*
 * mime.c
 *		RFC 5322 / MIME message assembly and header checks.
 *		(Skeleton: filled in by the delivery work.)
 */
#include "meisa.h"

/* Rejects header values holding CR, LF or NUL. */
void
mime_check_header_value(const char *value, const char *field)
{
	if (value && strpbrk(value, "\r\n"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("header field \"%s\" must not contain CR or LF", field)));
}
