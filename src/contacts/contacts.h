/*
 * contacts.h
 *		Contacts module internals: the identity lookups (the one place that
 *		finds a contact by email or external_id), contact creation, and the
 *		hand-over of a write's change set from the contacts trigger to the
 *		function that caused the write.
 */
#ifndef MEISA_CONTACTS_H
#define MEISA_CONTACTS_H

#include "access/transam.h"
#include "utils/array.h"
#include "utils/jsonb.h"

/* A contact as read by an identity lookup (values live in the SPI context). */
typedef struct ContactRow
{
	int64		id;
	TransactionId xmin;			/* row version read (optimistic update check) */
	char	   *email;
	char	   *external_id;	/* NULL when none */
	char	   *first_name;		/* NULL when none */
	char	   *last_name;		/* NULL when none */
	Jsonb	   *custom_fields;
	ArrayType  *tags;
	bool		subscribed;
} ContactRow;

/*
 * Where the contacts trigger leaves the change set of the next write of
 * contact 'contact_id' (0 = the next insert).  The writer sets
 * contact_write_capture around its statement (saving and restoring the
 * previous value, so nested writes are safe); the trigger fills it once and
 * ignores it afterwards.
 */
typedef struct ContactWriteCapture
{
	int64		contact_id;
	bool		filled;
	MemoryContext cxt;			/* where the change set is copied */
	Jsonb	   *changes;
} ContactWriteCapture;

extern ContactWriteCapture *contact_write_capture;

/* Finds a contact by normalised email (SPI connected); false when none. */
extern bool contact_find_by_email(const char *email, ContactRow *row);

/* Finds a contact by external_id (SPI connected); false when none. */
extern bool contact_find_by_external_id(const char *external_id, ContactRow *row);

/*
 * The contact of an event or API call, by external_id then email; creates it
 * from the email when unknown and 'create' (sets *created).  SPI connected.
 */
extern int64 contact_resolve(const char *email, const char *external_id,
							 bool create, bool *created);

#endif							/* MEISA_CONTACTS_H */
