/*
 * spi_util.c
 *		The SPI toolkit every module uses: plans prepared once and kept for
 *		the life of the backend, reading a column of a result row, and
 *		running a step in a subtransaction of its own with one rethrow
 *		policy (see spi_run_step).
 */
#include "common/common.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

/* Prepares 'sql' (SPI connected) and keeps the plan for the life of the backend. */
SPIPlanPtr
spi_keep_plan(const char *sql, int nargs, const Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, (Oid *) argtypes);
	int			rc;

	if (plan == NULL)
		elog(ERROR, "meisa: could not prepare \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	rc = SPI_keepplan(plan);
	if (rc != 0)
		elog(ERROR, "meisa: could not keep the plan of \"%s\": %s",
			 sql, SPI_result_code_string(rc));
	return plan;
}

/* Column 'col' (1-based) of 'tup' as a palloc'd C string; NULL when null. */
char *
spi_get_text(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* The int8 column 'col' (1-based) of 'tup'; 'if_null' when null. */
int64
spi_get_int64(HeapTuple tup, TupleDesc desc, int col, int64 if_null)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? if_null : DatumGetInt64(d);
}

/* The int4 column 'col' (1-based) of 'tup'; 'if_null' when null. */
int32
spi_get_int32(HeapTuple tup, TupleDesc desc, int col, int32 if_null)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? if_null : DatumGetInt32(d);
}

/*
 * Runs the plan of 'sql' (kept in *plan) with 'values' in an SPI connection
 * of its own; the first column of the first row, *found false when none.
 */
Datum
spi_first_value(SPIPlanPtr *plan, const char *sql, int nargs, const Oid *types,
				Datum *values, bool *found)
{
	Datum		result = (Datum) 0;
	bool		isnull = true;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	if (*plan == NULL)
		*plan = spi_keep_plan(sql, nargs, types);
	if (SPI_execute_plan(*plan, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "meisa: query failed: %s", sql);
	if (SPI_processed > 0)
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	SPI_finish();
	*found = !isnull;
	return result;
}

/*
 * Runs fn(arg) in a subtransaction of its own, in the caller's memory
 * context and resource owner.  NULL when it succeeded (the subtransaction is
 * committed into the caller's); else the subtransaction is rolled back,
 * undo(arg) (unless NULL) runs, and the error is handled by the one policy
 * of meisa:
 *   - a query cancel (57014: a cancel request, statement_timeout) or an
 *     administrator's shutdown (57P01) belongs to the caller: rethrown;
 *   - any other ERROR is returned, copied into the caller's memory context,
 *     for the caller to record.
 * A FATAL error never gets here (the process exits).  An ERROR resets the
 * interrupt holdoff count; the caller's HOLD_INTERRUPTS survives it.
 */
ErrorData *
spi_run_step(spi_step_fn fn, spi_step_fn undo, void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	uint32		holdoff = InterruptHoldoffCount;
	ErrorData  *volatile error = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		InterruptHoldoffCount = holdoff;
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (undo)
			undo(arg);
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		if (edata->message == NULL)
			edata->message = pstrdup("unknown error");
		error = edata;
	}
	PG_END_TRY();
	return error;
}
