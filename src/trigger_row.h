/*
 * trigger_row.h
 *		Helpers of the row validators (BEFORE ROW triggers on
 *		meisa.templates, meisa.sequences, meisa.sequence_steps and
 *		meisa.automations): reading a column of the new row by name and
 *		keeping updated_at current.
 */
#ifndef MEISA_TRIGGER_ROW_H
#define MEISA_TRIGGER_ROW_H

#include "meisa.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "commands/trigger.h"

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

#endif							/* MEISA_TRIGGER_ROW_H */
