/*
 * contacts.c
 *		Contacts: meisa_upsert, the identity lookups and the contact as data.
 *		(Skeleton: filled in by the foundation work.)
 */
#include "meisa.h"

/* Defines the contact settings. */
void
contacts_init(void)
{
}

/* The contact as data for templates and conditions (skeleton: none yet). */
Jsonb *
contact_data_jsonb(int64 contact_id)
{
	return NULL;
}
