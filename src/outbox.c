/*
 * outbox.c
 *		The outbox: rendering a template for a contact and queueing the message.
 *		(Skeleton: filled in by the outbox work.)
 */
#include "meisa.h"

/* Defines the outbox settings. */
void
outbox_init(void)
{
}

/* Renders and queues one message (skeleton: not yet available). */
int64
outbox_queue(int64 contact_id, const char *template_key, Jsonb *data,
			 const MessageSource *src, char **suppressed_reason)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("meisa: queueing messages is not available yet")));
	return 0;
}
