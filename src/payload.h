/*
 * payload.h
 *		Validation of JSON payloads of the application API and the limits
 *		(meisa.max_* settings) they are checked against.
 */
#ifndef MEISA_PAYLOAD_H
#define MEISA_PAYLOAD_H

#include "utils/jsonb.h"

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

#endif							/* MEISA_PAYLOAD_H */
