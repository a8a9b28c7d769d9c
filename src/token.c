/*
 * token.c
 *		Signed unsubscribe tokens and URLs.
 *		(Skeleton: filled in by the delivery work.)
 */
#include "meisa.h"

/* The unsubscribe URL of a contact (skeleton: a placeholder). */
char *
unsubscribe_url(int64 contact_id)
{
	return psprintf("https://example.invalid/unsubscribe/%lld", (long long) contact_id);
}
