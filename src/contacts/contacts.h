/*
 * contacts.h
 *		The contacts stage, the first of the write path: validation of the
 *		application API's JSON payloads and their limits (payload.c), email
 *		normalisation (email.c), flattened change sets (diff.c), contact
 *		identity, creation and reading (contacts.c), the contacts trigger
 *		(contacts_trigger.c) and custom events (events.c).
 */
#ifndef MEISA_CONTACTS_H
#define MEISA_CONTACTS_H

#include "common/common.h"

#include "access/transam.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/jsonb.h"

/* Defines the contact settings and the meisa.max_* limits (called from _PG_init). */
extern void contacts_init(void);

/* ---- payload.c: validation of payloads */

/* Longest external_id, first_name and last_name, in characters. */
#define PAYLOAD_MAX_NAME_LENGTH 255

extern int	meisa_max_payload_size;
extern int	meisa_max_custom_fields;
extern int	meisa_max_tags;
extern int	meisa_max_tag_length;
extern int	meisa_max_property_size;

/* Defines the meisa.max_* limit settings. */
extern void payload_define_limits(void);

/* ERROR 54000 when the payload is larger than meisa.max_payload_size. */
extern void payload_check_size(Jsonb *payload, const char *what);

/* ERROR 22023 unless 'payload' is a JSON object. */
extern void payload_check_object(Jsonb *payload, const char *what);

/* A key name cut to a printable length for messages. */
extern char *payload_key_for_message(const char *key, int len);

/* ERROR 22023 for a key the payload does not accept, listing the valid ones. */
extern void payload_unknown_key(const char *key, int len, const char *valid);

/* The upsert payload's "topics" object, checked (names, boolean values). */
extern JsonbContainer *payload_topics(JsonbValue *v);

/* A JSON type name for messages ("string", "number", ...). */
extern const char *payload_type_name(JsonbValue *v);

/* The value of a string field as a palloc'd C string; ERROR 22023 when not a string. */
extern char *payload_string(JsonbValue *v, const char *field);

/*
 * A short identifier-like text field (external_id, first_name, last_name,
 * event_id): string (or an integer number when allow_integer), no control
 * characters, at most PAYLOAD_MAX_NAME_LENGTH characters, not empty.
 */
extern char *payload_short_text(JsonbValue *v, const char *field, bool allow_integer);

/* ERROR 22023 unless 'name' is a valid custom field name. */
extern void custom_field_check_name(const char *name, int len, const char *field);

/*
 * Checks a custom_fields object: names, value types (string, number,
 * boolean; JSON null only when allow_null) and the field count.
 */
extern void custom_fields_check(JsonbContainer *fields, bool allow_null, const char *field);

/* What keeps a tag from being stored (tag_problem). */
typedef enum TagProblem
{
	TAG_OK,
	TAG_EMPTY,					/* nothing but spaces and tabs */
	TAG_TOO_LONG,				/* over meisa.max_tag_length characters */
	TAG_CONTROL					/* holds a control character */
} TagProblem;

/*
 * What keeps a tag from being stored, TAG_OK when nothing: checked after
 * trimming spaces and tabs, whose bounds are returned in *start and *tlen.
 */
extern TagProblem tag_problem(const char *s, int len, int *start, int *tlen);

/* Trims a tag and checks it (not empty, no control characters, length); palloc'd. */
extern char *tag_normalize(const char *s, int len, const char *field);

/* Sorts and de-duplicates an array of normalised tags in place; returns the new count. */
extern int	tags_sort_unique(char **tags, int ntags);

/* ERROR 54000 when a contact would have more than meisa.max_tags tags. */
extern void tags_check_count(int ntags, const char *field);

/* True when 'name' (len bytes) matches ^[A-Za-z0-9_.:-]{1,100}$. */
extern bool event_name_valid(const char *name, int len);

/* ---- email.c: addresses (RFC 5321 shape) */

/* Longest address accepted, in bytes (RFC 5321 path limit minus the brackets). */
#define EMAIL_MAX_LENGTH 254

/*
 * The address trimmed of surrounding spaces and lower-cased, not validated
 * (palloc'd; *outlen, unless NULL, its length): the form every lookup by
 * email uses.
 */
extern char *email_fold(const char *s, int len, int *outlen);

/*
 * Trims spaces, lower-cases and validates an address; returns the palloc'd
 * normalised form.  ERROR 22023 naming 'field' when it is not a valid address.
 */
extern char *email_normalize(const char *s, int len, const char *field);

/* NULL when 's' (already normalised) is a valid address, else why it is not. */
extern const char *email_problem(const char *s, int len);

/* ---- diff.c: change sets {"a.b": {"old": v, "new": v}, ...} */

/* True when two JSON values (never absent) are equal; numbers compare numerically. */
extern bool diff_values_equal(JsonbValue *a, JsonbValue *b);

/*
 * Pushes into the open object *state one entry per changed leaf between
 * 'oldv' and 'newv' (NULL or JSON null = absent) under the dotted 'path';
 * objects are descended, other values compared whole.  An entry is
 * {"old": v, "new": v}, plus "added"/"removed" element lists when both sides
 * are arrays or absent.  Returns the number of entries pushed.
 */
extern int	diff_push(JsonbParseState **state, StringInfo path,
					  JsonbValue *oldv, JsonbValue *newv);

/* Pushes one change entry for 'path' (NULL values = JSON null). */
extern void diff_push_entry(JsonbParseState **state, const char *path, int pathlen,
							JsonbValue *oldv, JsonbValue *newv,
							JsonbValue *added, JsonbValue *removed);

/* ---- contacts.c: identity, creation and reading */

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

/*
 * The contact of an event or API call, by external_id then email; creates it
 * from the email when unknown and 'create' (sets *created).  SPI connected.
 */
extern int64 contact_resolve(const char *email, const char *external_id,
							 bool create, bool *created);

/*
 * The contact as template and condition data:
 * {"id","email","external_id","first_name","last_name","custom_fields",
 *  "tags","subscribed","created_at","updated_at"}; NULL when no such contact.
 */
extern Jsonb *contact_data_jsonb(int64 contact_id);

/* Every key of the contact data (a mask of contact_data_key_mask). */
#define CONTACT_DATA_ALL_KEYS 0x3FFu

/*
 * The keys of the contact data that template texts may read (a key that
 * appears nowhere in them cannot be; a partial or "{{." takes every key).
 */
extern uint32 contact_data_key_mask(const char *const *texts, int n);

/*
 * contact_data_jsonb, with the keys of 'mask', of each of the first n rows
 * of an SPI result that holds every column of meisa.contacts by name
 * (SELECT c.* ...): out[i] for row i, in the current memory context.
 */
extern void contact_data_of_rows(SPITupleTable *tt, uint64 n, uint32 mask, Jsonb **out);

/* True when a contact has this id (looked up as the owner of meisa.contacts). */
extern bool contact_exists(int64 contact_id);

/* The id of the contact with this email (folded by email_fold), or 0 (SPI connected). */
extern int64 contact_id_by_email(const char *email);

/* ---- contacts_cascade.c: the automations of a contact write, in memory */

/* An action that changes only its contact. */
typedef enum ContactEdit
{
	CONTACT_EDIT_ADD_TAG,
	CONTACT_EDIT_REMOVE_TAG,
	CONTACT_EDIT_SET_FIELD
} ContactEdit;

/*
 * Applies an action to the row of contact 'contact_id', whose write's
 * cascade runs in memory (automation_in_memory): add_tag/remove_tag 'tag',
 * or set_field (custom_fields minus 'remove', then 'set' merged).  Like the
 * UPDATE it stands for: no change, no write; a change is normalised and
 * checked as the BEFORE trigger would, recorded as an activity row, and
 * fires the automations it causes.
 */
extern void contact_cascade_edit(int64 contact_id, ContactEdit kind, const char *tag,
								 ArrayType *remove, Jsonb *set);

/* The contact data (as contact_data_jsonb) of a contact whose cascade runs in memory, else NULL. */
extern Jsonb *contact_cascade_data(int64 contact_id);

/* ---- deliverability.c: may a contact get mail */

/* What the outbox and delivery need to know about a contact to mail it. */
typedef struct ContactState
{
	int64		id;
	char	   *email;
	bool		subscribed;
	bool		bounced;
	bool		complained;
	char	   *timezone;		/* custom_fields.timezone, NULL when none */
} ContactState;

/* Loads the contact's delivery state (SPI connected); false when there is no such contact. */
extern bool contact_state_lookup(int64 contact_id, ContactState *cs);

/* contact_state_lookup by email (folded by email_fold); false when no contact has it. */
extern bool contact_state_by_email(const char *email, ContactState *cs);

/*
 * Why mail of 'kind' ("transactional"/"marketing") must not go to the
 * contact: "complained", "bounced" or "unsubscribed" (marketing only), in
 * that order, the order of meisa.unsubscribed_emails; NULL when it may.
 */
extern const char *contact_suppression_reason(const ContactState *cs,
											  const char *kind);

/*
 * Records a hard bounce of the contact (SPI connected), as
 * meisa_record_bounce(email, 'hard', detail) does: a 'bounce' activity row,
 * and the contact bounced and unsubscribed unless it already was.
 */
extern void contact_mark_bounced(int64 contact_id, const char *detail);

#endif							/* MEISA_CONTACTS_H */
