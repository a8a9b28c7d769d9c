/*
 * segments.h
 *		Live segments: named, always-current sets of contacts defined by a
 *		rule of the condition language (docs/segments.md).  The stage sits
 *		above the conditions and below the outbox and the automations:
 *		- segment_sql.c compiles a rule into set-based SQL over meisa.contacts
 *		  (rebuilds, meisa.segment_count, meisa.segment_preview) and computes
 *		  when a contact's result of a clock test can next change;
 *		- segment_cache.c keeps the enabled segments compiled per backend,
 *		  with what each reads (fields, tags, events, other segments);
 *		- segment_maint.c keeps meisa.segment_members current in the writing
 *		  transaction and processes the due meisa.segment_checks;
 *		- segment_admin.c validates meisa.segments rows, rebuilds a segment's
 *		  members and answers the SQL functions.
 */
#ifndef MEISA_SEGMENTS_H
#define MEISA_SEGMENTS_H

#include "contacts/contacts.h"
#include "conditions/conditions.h"

#include "lib/stringinfo.h"

/* ---- segment_sql.c */

/* A rule compiled to SQL over "meisa.contacts c", with its parameters. */
typedef struct SegmentSql
{
	StringInfoData where;		/* a boolean expression, never NULL */
	StringInfoData next;		/* the next moment the result can change, or empty */
	int			nparams;
	int			cap;
	Oid		   *types;
	Datum	   *values;
	TimestampTz now;			/* the "now" of clock tests */
	List	   *candidates;		/* next-check expressions (char *) */
} SegmentSql;

/* Compiles 'node' (NULL = always) into sql->where and sql->next, clock tests at 'now'. */
extern void segment_sql_compile(const CondNode *node, TimestampTz now, SegmentSql *sql);

/* Appends a parameter of 'type' to sql and returns its reference "$n". */
extern const char *segment_sql_param(SegmentSql *sql, Oid type, Datum value);

/*
 * The next moment after ctx->now at which the rule's result for the
 * context's contact can change by time alone (0 = never): the earliest flip
 * of its clock tests (older_than, within_last, performed ... within).
 */
extern TimestampTz segment_next_check(const CondNode *node, CondContext *ctx);

/* True when the rule has a clock test. */
extern bool segment_has_clock(const CondNode *node);

/* ---- segment_cache.c */

/* An enabled segment as the maintenance sees it. */
typedef struct Segment
{
	int64		id;
	char	   *name;
	CondNode   *cond;
	bool		has_clock;
	bool		reads_updated_at;	/* reads a field every write changes */
	bool		reads_tags;		/* the field "tags" (any tag) */
	List	   *tags;			/* tag names of has_tag / lacks_tag (char *) */
	List	   *fields;			/* field paths read (char *) */
	List	   *events;			/* event names of "performed" (char *) */
	List	   *refs;			/* names of segments read by in_segment (char *) */
	int		   *ref_index;		/* their positions in the cache (-1: none) */
	int			nref;
} Segment;

/*
 * The enabled segments, every segment after the segments it reads; *n their
 * number.  Loads the cache when stale.  Valid until the next call (so not
 * after firing automations, whose writes may load it again).
 */
extern Segment *segment_cache_get(int *n);

/*
 * Marks in affected[] the segments of the last segment_cache_get that read
 * kind 'f' (a field path of a change set, "tags": any tag), 't' (a tag) or
 * 'e' (an event) 'name'.
 */
extern void segment_cache_mark(char kind, const char *name, bool *affected);

/* Marks the segments that every contact write can change (they read updated_at). */
extern void segment_cache_mark_every_write(bool *affected);

/* The role segment maintenance acts as (the owner of meisa.segments). */
extern Oid	segment_cache_owner(void);

/* Registers the cache invalidation callback (once per backend). */
extern void segment_cache_init(void);

/* Fills what the compiled rule reads into seg (fields, tags, events, refs). */
extern void segment_collect_reads(Segment *seg, const CondNode *node);

/* ---- segment_maint.c */

/* Registers the maintenance hook and the transaction callbacks (module load). */
extern void segment_maint_init(void);

/*
 * Processes the segment checks due at 'at' (batched, FOR UPDATE SKIP LOCKED),
 * clock tests evaluated at 'at'; returns how many were processed.
 */
extern int64 segments_run_checks(TimestampTz at);

/* ---- segment_admin.c */

/*
 * The first segment the rule reads (in_segment / not_in_segment) that does
 * not exist, or NULL: the validators of automations, sequence rules and
 * segments reject such a rule.
 */
extern const char *segment_unknown_ref(const CondNode *node);

#endif							/* MEISA_SEGMENTS_H */
