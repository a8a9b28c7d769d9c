/*
 * trigger_row.c
 *		Helpers shared by the row validators (the BEFORE ROW triggers on
 *		meisa.templates, meisa.sequences, meisa.sequence_steps and
 *		meisa.automations): a column of the new row by name, and updated_at
 *		kept current on UPDATE.
 */
#include "common/common.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

/* The value of column 'column' of 'tup' (sets *isnull); ERROR when there is no such column. */
Datum
trigger_row_value(HeapTuple tup, TupleDesc desc, const char *column, bool *isnull)
{
	int			att = SPI_fnumber(desc, column);

	if (att <= 0)
		elog(ERROR, "meisa: table has no column \"%s\"", column);
	return heap_getattr(tup, att, desc, isnull);
}

/* A text column of 'tup' as a C string, or NULL when it is null. */
char *
trigger_row_text(HeapTuple tup, TupleDesc desc, const char *column)
{
	bool		isnull;
	Datum		d = trigger_row_value(tup, desc, column, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* For an UPDATE, 'tup' with updated_at set to the transaction's start time. */
HeapTuple
trigger_row_touch_updated_at(TriggerData *td, HeapTuple tup)
{
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	int			att;
	Datum		now;
	bool		isnull = false;

	if (!TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		return tup;
	att = SPI_fnumber(desc, "updated_at");
	if (att <= 0)
		return tup;
	now = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	return heap_modify_tuple_by_cols(tup, desc, 1, &att, &now, &isnull);
}
