/*
 * contacts_write.h
 *		Inside the contacts stage: what the contacts triggers
 *		(contacts_trigger.c) share with the in-memory cascade of a contact
 *		write (contacts_cascade.c), defined in contacts_write.c: the contact
 *		columns, the change set of a write, its activity rows and the
 *		automations it fires; and the two entry points of the cascade.
 */
#ifndef MEISA_CONTACTS_WRITE_H
#define MEISA_CONTACTS_WRITE_H

#include "contacts/contacts.h"

#include "access/htup_details.h"
#include "utils/rel.h"

/* Attribute numbers of the contact columns in the trigger's relation. */
typedef struct ContactAttrs
{
	int			id;
	int			email;
	int			external_id;
	int			first_name;
	int			last_name;
	int			custom_fields;
	int			tags;
	int			subscribed;
	int			unsubscribe_reason;
	int			unsubscribed_at;
	int			bounced_at;
	int			complained_at;
	int			created_at;
	int			updated_at;
} ContactAttrs;

/* The change set of one write and the tags it added and removed. */
typedef struct WriteChanges
{
	Jsonb	   *changes;
	Datum	   *otags;			/* tags before (text datums) */
	Datum	   *ntags;			/* tags after */
	int			onum;
	int			nnum;
	bool	   *added;			/* ntags[i] is new */
	bool	   *removed;		/* otags[i] is gone */
	int			nadded;
	int			nremoved;
} WriteChanges;

/* Finds the attribute numbers of every contact column by name. */
extern void contact_attrs(TupleDesc desc, ContactAttrs *a);
/* True when column 'att' differs between the old tuple (NULL = insert) and the new one. */
extern bool column_changed(TupleDesc desc, HeapTuple oldtup, HeapTuple newtup, int att);
/* Normalises a text[] of tags; returns NULL when it is already normal. */
extern ArrayType *normalize_tags(ArrayType *arr);
/* The jsonb column 'att' of 'tup' as a JsonbValue (JSON null for SQL NULL or no tuple). */
extern void jsonb_column_value(HeapTuple tup, int att, TupleDesc desc, JsonbValue *out);
/* Pushes the object key 'key' (a C string). */
extern void push_key(JsonbParseState **state, const char *key);
/* The contact data (as contact_data_jsonb) of a meisa.contacts tuple (contact_data.c). */
extern Jsonb *contact_data_tuple(HeapTuple tup, TupleDesc desc, const ContactAttrs *a);
/* contact_data_tuple with only the keys of 'mask' (contact_data_key_mask). */
extern Jsonb *contact_data_tuple_keys(HeapTuple tup, TupleDesc desc, const ContactAttrs *a,
									  uint32 mask);
/* True when text datum 'x' is among elems[0..n). */
extern bool text_in(Datum x, Datum *elems, int n);

/*
 * The change set of a write from 'oldtup' (NULL = insert) to 'newtup', with
 * the tags it added and removed, into *wc; false when nothing tracked changed.
 */
extern bool write_changes(TupleDesc desc, const ContactAttrs *a, HeapTuple oldtup,
						  HeapTuple newtup, WriteChanges *wc);
/* Fires the automations of a write: contact_created or contact_updated, then each tag added and removed. */
extern void write_fire(int64 id, bool is_update, const WriteChanges *wc);
/* Hands the change set of a write to the function that caused it (contact_write_capture). */
extern void write_capture(int64 id, bool is_update, Jsonb *changes);
/* Inserts activity rows (kinds[i], details[i]) of a contact, in order, in one statement (SPI connected). */
extern void write_activity(int64 id, int n, Datum *kinds, Datum *details);

/* True when the installed schema (before 1.3) stores a creation as an activity row. */
extern bool creation_stored(void);

/*
 * BEFORE trigger: runs the automations of the write of 'newtup' in memory
 * when every one that matches, down the cascade, only changes this contact;
 * returns the row with their changes (or 'newtup' as it was).
 */
extern HeapTuple cascade_in_memory(Relation rel, const ContactAttrs *a,
								   HeapTuple oldtup, HeapTuple newtup);

/*
 * AFTER trigger: when the BEFORE trigger ran this write's cascade in memory
 * and the row written is the one it left, writes the cascade's activity rows
 * and automation runs (as 'owner') and returns true.
 */
extern bool cascade_written(int64 id, TupleDesc desc, HeapTuple oldtup,
							HeapTuple newtup, Oid owner);

#endif							/* MEISA_CONTACTS_WRITE_H */
