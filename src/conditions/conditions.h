/*
 * conditions.h
 *		The condition language of automations, sequence step conditions and
 *		sequence exit conditions: a JSON rule compiled once into a tree of
 *		CondNode and evaluated in C against a contact, the change set of the
 *		write that fired it and, for custom events, the event's properties.
 *		See docs/automations.md for the language.
 */
#ifndef MEISA_CONDITIONS_H
#define MEISA_CONDITIONS_H

#include "common/common.h"

#include "datatype/timestamp.h"
#include "pgtime.h"
#include "utils/numeric.h"

/* The comparison operators and other tests of a field. */
typedef enum CondOp
{
	COP_EQ,
	COP_NE,
	COP_GT,
	COP_GTE,
	COP_LT,
	COP_LTE,
	COP_IN,
	COP_NOT_IN,
	COP_CONTAINS,
	COP_STARTS_WITH,
	COP_EXISTS,
	COP_WITHIN_LAST,
	COP_OLDER_THAN,
	COP_CHANGED,
	COP_CHANGED_FROM,
	COP_CHANGED_TO
} CondOp;

/* A literal of a rule (JSON null is never a literal). */
typedef enum CondValueType
{
	CV_STRING,
	CV_NUMBER,
	CV_BOOL
} CondValueType;

typedef struct CondValue
{
	CondValueType type;
	char	   *str;			/* CV_STRING: the text (NUL-terminated) */
	int			len;			/* CV_STRING: its length in bytes */
	Numeric		num;			/* CV_NUMBER, or a string that reads as one */
	bool		has_num;
	TimestampTz ts;				/* a string that reads as an ISO 8601 time */
	bool		has_ts;
	pg_tz	   *ts_zone;		/* has_ts without a UTC offset: the session
								 * time zone it was read in (NULL with an
								 * offset); read again when compared under
								 * another one */
	bool		b;				/* CV_BOOL */
} CondValue;

struct CondTest;

/* The right-hand side V of a test: a literal, a list (any of) or tests. */
typedef enum CondMatchKind
{
	CM_LITERAL,
	CM_LIST,
	CM_TESTS
} CondMatchKind;

typedef struct CondMatch
{
	CondMatchKind kind;
	int			nvalues;		/* CM_LITERAL: 1, CM_LIST: n */
	CondValue  *values;
	int			ntests;			/* CM_TESTS */
	struct CondTest *tests;
} CondMatch;

/* One TEST: VALUE pair. */
typedef struct CondTest
{
	CondOp		op;
	CondMatch	match;			/* eq ne gt.. in not_in contains starts_with changed_from/to */
	bool		flag;			/* exists, changed */
	Interval	span;			/* within_last, older_than */
} CondTest;

typedef enum CondKind
{
	CK_ALL,
	CK_ANY,
	CK_NOT,
	CK_FIELD,					/* a contact field */
	CK_EVENT,					/* a property of the custom event */
	CK_HAS_TAG,
	CK_LACKS_TAG,
	CK_PERFORMED,				/* count of events of a name */
	CK_IN_SEGMENT,				/* a member of the segment 'name' */
	CK_NOT_IN_SEGMENT
} CondKind;

typedef struct CondNode
{
	CondKind	kind;
	int			nchildren;		/* all / any / not */
	struct CondNode **children;
	char	   *path;			/* field: "email", "custom_fields.plan"; event: "properties.x.y" */
	int			pathlen;
	int			nsegs;			/* path split at dots */
	char	  **segs;
	int			ntests;			/* field / event / performed count tests */
	CondTest   *tests;
	char	   *name;			/* has_tag / lacks_tag: tag; performed: event
								 * name; in_segment / not_in_segment: segment */
	bool		has_within;		/* performed: "within" given */
	Interval	within;
} CondNode;

/* What a compiled rule may use (automations of other triggers may not test events). */
#define COND_ALLOW_EVENT	0x01	/* "event" tests (custom_event automations) */
#define COND_ALLOW_CHANGES	0x02	/* changed / changed_from / changed_to */

/*
 * Compiles 'conditions' (NULL or JSON null = always: returns NULL with no
 * error) in the current memory context.  On a bad rule returns NULL and sets
 * *error to "PATH: message", PATH starting with 'root' (e.g. "conditions").
 */
extern CondNode *condition_compile(Jsonb *conditions, const char *root,
								   int allow, char **error);

/* Raises ERROR 22023 for 'error', a "PATH: message" of condition_compile. */
extern void condition_raise(const char *error) pg_attribute_noreturn();

/* Compiles and raises ERROR 22023 with the offending part when invalid. */
extern CondNode *condition_compile_or_error(Jsonb *conditions,
											const char *root, int allow);

/* What a rule is evaluated against; the contact is loaded only when needed. */
typedef struct CondContext
{
	int64		contact_id;		/* 0 = unknown (then "performed" counts 0) */
	Jsonb	   *contact;		/* contact data, loaded on demand */
	bool		contact_loaded;
	Jsonb	   *changes;		/* change set or NULL */
	Jsonb	   *properties;		/* event properties or NULL */
	TimestampTz now;
} CondContext;

/*
 * The "now" of clock tests (older_than, within_last, performed ... within):
 * the transaction's start, or the time set by condition_set_now (what
 * meisa_run_due(at) does for everything it evaluates).  condition_set_now
 * returns the previous setting; 0 goes back to the transaction's start.
 */
extern TimestampTz condition_now(void);
extern TimestampTz condition_set_now(TimestampTz at);

/* Prepares a context for a contact (the contact is read when first needed). */
extern void condition_context_init(CondContext *ctx, int64 contact_id,
								   Jsonb *changes, Jsonb *properties);

/* True when the compiled rule holds (NULL = always). */
extern bool condition_eval(const CondNode *node, CondContext *ctx);

/*
 * The edge of a clock test at 'now': now minus the span, or -infinity when
 * that is before the earliest timestamp (an accepted rule never fails).
 */
extern TimestampTz condition_edge(TimestampTz now, const Interval *span);

/* The earliest occurred_at of the contact's events of a name since 'since' (0 = none). */
extern TimestampTz condition_first_event(int64 contact_id, const char *name, TimestampTz since);

/* Parses "7 days", "1 hour 30 minutes", ... into *iv; false when invalid. */
extern bool condition_parse_interval(const char *s, Interval *iv);

/* Parses an ISO 8601 date or date-time; false when it is not one. */
extern bool condition_parse_timestamp(const char *s, int len, TimestampTz *ts);

/* The same; *local is set when the string has no offset (session time zone). */
extern bool condition_parse_timestamp_local(const char *s, int len, TimestampTz *ts,
											bool *local);

/* Parses a plain decimal number ("-12.5"); NULL when it is not one. */
extern Numeric condition_parse_number(const char *s, int len);

/*
 * The error of a compiler as "path: message" (palloc'd), the form of every
 * condition and automation compile error.
 */
extern char *compile_error_va(const char *path, const char *fmt, va_list args) pg_attribute_printf(2, 0);

#endif							/* MEISA_CONDITIONS_H */
