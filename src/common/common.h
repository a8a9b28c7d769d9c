/*
 * common.h
 *		Shared prelude of meisa, the bottom of its stages: the PostgreSQL
 *		includes every module uses, restore mode (restore.c), the helpers of
 *		the row validators (trigger_row.c), the SPI toolkit (spi_util.c) and
 *		the two calls up the stages, keeping segments current and firing
 *		automations (hooks.c).  Each stage (contacts, templates,
 *		delivery, conditions, outbox, automations) has one header in its
 *		folder as its public face; a stage includes only the stages below it.
 */
#ifndef MEISA_COMMON_H
#define MEISA_COMMON_H

#include "postgres.h"

#include "fmgr.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/jsonb.h"
#include "datatype/timestamp.h"

/* ---- restore.c */

/* Registers the callbacks restore mode needs (called from _PG_init). */
extern void restore_init(void);

/*
 * True while a dump is being restored: pg_dump/pg_restore scripts turn
 * check_function_bodies off, and only a superuser can restore meisa (the
 * role outside any SECURITY DEFINER function, i.e. after SET ROLE).  Any
 * session may turn the setting off (migration tools do), so for others it
 * never changes what meisa checks and does.
 */
extern bool restore_mode(void);

/* ---- trigger_row.c: helpers of the row validators (BEFORE ROW triggers on
 * meisa.templates, meisa.sequences, meisa.sequence_steps and
 * meisa.automations) */

/* The value of column 'column' of 'tup' (sets *isnull); ERROR when there is no such column. */
extern Datum trigger_row_value(HeapTuple tup, TupleDesc desc, const char *column,
							   bool *isnull);

/* A text column of 'tup' as a C string, or NULL when it is null. */
extern char *trigger_row_text(HeapTuple tup, TupleDesc desc, const char *column);

/*
 * For an UPDATE, 'tup' with updated_at set to the transaction's start time
 * (unchanged when the table has no updated_at); for an INSERT, 'tup'.
 */
extern HeapTuple trigger_row_touch_updated_at(TriggerData *td, HeapTuple tup);

/* ---- spi_util.c: the SPI toolkit */

/*
 * Prepares 'sql' (SPI connected) and keeps the plan for the life of the
 * backend; ERROR naming the query when preparing or keeping fails.
 */
extern SPIPlanPtr spi_keep_plan(const char *sql, int nargs, const Oid *argtypes);

/* Column 'col' (1-based) of 'tup' as a palloc'd C string; NULL when null. */
extern char *spi_get_text(HeapTuple tup, TupleDesc desc, int col);
/* The int8 column 'col' (1-based) of 'tup'; 'if_null' when null. */
extern int64 spi_get_int64(HeapTuple tup, TupleDesc desc, int col, int64 if_null);
/* The int4 column 'col' (1-based) of 'tup'; 'if_null' when null. */
extern int32 spi_get_int32(HeapTuple tup, TupleDesc desc, int col, int32 if_null);

/*
 * Runs the plan of 'sql' (prepared and kept in *plan on first use) with
 * 'values' in an SPI connection of its own, not read-only (it sees what the
 * caller's transaction wrote); returns the first column of the first row
 * (a by-value type), *found false when there is no row or it is NULL.
 */
extern Datum spi_first_value(SPIPlanPtr *plan, const char *sql, int nargs,
							 const Oid *types, Datum *values, bool *found);

/* A step run by spi_run_step, or what undoes its in-memory effects. */
typedef void (*spi_step_fn) (void *arg);

/*
 * Runs fn(arg) in a subtransaction of its own.  NULL when it succeeded;
 * otherwise the subtransaction is rolled back, undo(arg) (unless NULL) runs,
 * and a query cancel (57014) or shutdown (57P01) is rethrown while any other
 * ERROR is returned (in the caller's memory context, with a message).
 */
extern ErrorData *spi_run_step(spi_step_fn fn, spi_step_fn undo, void *arg);

/* ---- backend_cache.c: what the per-backend caches of stored rows share */

/* A per-backend cache of the rows of one table of meisa. */
typedef struct BackendCache
{
	bool		valid;			/* false: load again before use */
	Oid			relid;			/* the cached table */
	Oid			owner;			/* its owner */
} BackendCache;

/* Registers the invalidation callback of a cache (once per backend). */
extern void backend_cache_register(BackendCache *bc);

/* Finds the table meisa.'relname' and its owner; false when meisa is not installed. */
extern bool backend_cache_relation(BackendCache *bc, const char *relname);

/*
 * Runs load() with the cache marked valid first (an invalidation during the
 * load stales it again); an error or a NULL result leaves it stale.
 */
extern void *backend_cache_load(BackendCache *bc, void *(*load) (void));

/* The role the cache's rules act as: the owner of the cached table. */
extern Oid	backend_cache_owner(const BackendCache *bc);

/* ---- hooks.c: firing automations, a call up the stages */

/* The triggers of automations. */
typedef enum MeisaTrigger
{
	MEISA_TRIGGER_CONTACT_CREATED,
	MEISA_TRIGGER_CONTACT_UPDATED,
	MEISA_TRIGGER_TAG_ADDED,
	MEISA_TRIGGER_TAG_REMOVED,
	MEISA_TRIGGER_CUSTOM_EVENT,
	MEISA_TRIGGER_SEQUENCE_ENROLLED,
	MEISA_TRIGGER_SEGMENT_ENTERED,
	MEISA_TRIGGER_SEGMENT_EXITED
} MeisaTrigger;

/* The rule engine's entry point (see automation_fire). */
typedef void (*automation_fire_fn) (MeisaTrigger trigger, int64 contact_id,
									const char *filter, Jsonb *changes,
									Jsonb *properties);

/* Set by the automation engine when the module loads (automation_init). */
extern automation_fire_fn automation_fire_hook;

/*
 * Runs the enabled automations whose trigger (and trigger_filter, compared
 * with 'filter': tag, event name or sequence name) matches.  'changes' is the
 * contact's change set (see meisa.jsonb_diff) or NULL, 'properties' the custom
 * event's properties or NULL.  Never throws for a failing automation.  The
 * contacts stage (writes, events) and the outbox (sequence enrolments) call
 * it; the automation engine above them answers through automation_fire_hook.
 */
extern void automation_fire(MeisaTrigger trigger, int64 contact_id,
							const char *filter, Jsonb *changes,
							Jsonb *properties);

/* ---- hooks.c: keeping segments current, a call up the stages */

/* The segment maintenance's entry point (see segments_note_change). */
typedef void (*segments_changed_fn) (int64 contact_id, Jsonb *changes,
									 bool created, const char *event);

/* Whether any segment is enabled (so a write must compute what segments read). */
typedef bool (*segments_watching_fn) (void);

/* Set by the segments stage when the module loads (segment_maint_init). */
extern segments_changed_fn segments_changed_hook;
extern segments_watching_fn segments_watching_hook;

/* True when an enabled segment may need a write's change set (false before the hook is set). */
extern bool segments_watching(void);

/*
 * Keeps the segments current after a contact write ('changes' its change
 * set, 'created' when the contact is new) or a recorded event ('event' its
 * name, changes NULL).  Fires segment_entered / segment_exited.  The
 * contacts stage calls it; the segments stage above answers through
 * segments_changed_hook.
 */
extern void segments_note_change(int64 contact_id, Jsonb *changes, bool created,
								 const char *event);

/* ---- hooks.c: running a write's automations in memory */

/*
 * Runs fire(arg), which fires the automations of a write of contact
 * 'contact_id', with that contact's actions applied in memory
 * (contact_cascade_edit) and the automation runs kept in *runs instead of
 * written; in a subtransaction.  False (nothing done, nothing kept) when a
 * matching automation does anything else, or anything failed: the write's
 * automations must then run as usual, after it.
 */
typedef bool (*automation_in_memory_fn) (int64 contact_id, spi_step_fn fire,
										 void *arg, List **runs);
/* Writes automation runs kept by automation_in_memory. */
typedef void (*automation_runs_write_fn) (List *runs);

/* Set by the automation engine when the module loads (automation_init). */
extern automation_in_memory_fn automation_in_memory_hook;
extern automation_runs_write_fn automation_runs_write_hook;

/* automation_in_memory_hook's answer (false without an engine). */
extern bool automation_in_memory(int64 contact_id, spi_step_fn fire, void *arg,
								 List **runs);
/* Writes the runs through automation_runs_write_hook. */
extern void automation_runs_write(List *runs);

/* ---- hooks.c: queueing due broadcasts, a call up the stages */

/* The broadcasts stage's entry point (see broadcasts_run). */
typedef int64 (*broadcasts_run_fn) (TimestampTz at);

/* Set by the broadcasts stage when the module loads (broadcasts_init). */
extern broadcasts_run_fn broadcasts_run_hook;

/*
 * Queues the next batch of every broadcast due at 'at' (meisa_run_due);
 * returns the messages queued (0 before the hook is set).
 */
extern int64 broadcasts_run(TimestampTz at);

/* True when the last broadcasts_run of this backend left messages to queue. */
extern bool broadcasts_work_left;

#endif							/* MEISA_COMMON_H */
