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

/* The contact a token names (skeleton: tokens are not issued yet). */
int64
unsubscribe_token_contact(const char *token)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid unsubscribe token")));
	return 0;
}
