/*
 * rundue.c
 *		meisa_run_due(at): advances every active enrolment of an enabled
 *		sequence whose next_run_at is at or before 'at'.  Enrolments are
 *		locked with FOR UPDATE SKIP LOCKED, so concurrent callers
 *		never process the same enrolment twice (a cursor per pass, fetched in
 *		batches of meisa.run_due_batch_size).  Per enrolment, in order:
 *		  1. exit conditions hold -> status 'exited', exit_reason 'exit_conditions';
 *		  2. no step after current_step -> status 'completed';
 *		  3. outside the send window -> next_run_at = the next opening;
 *		  4. step conditions do not hold -> the step is skipped;
 *		  5. otherwise the step's message is queued (outbox_queue); a
 *		     suppressed message exits the enrolment with the reason
 *		     ('unsubscribed', 'bounced', 'complained');
 *		then the next step is scheduled 'delay' after 'at', or the enrolment
 *		completes after its last step.  Each enrolment runs in its own
 *		subtransaction: a failure is rolled back, recorded in last_error and
 *		retried after meisa.sequence_retry_delay, and the batch goes on.
 *		To keep that cheap, a whole batch first runs in one subtransaction;
 *		only when something in it fails is the batch redone one enrolment per
 *		subtransaction.
 */
#include "conditions/conditions.h"
#include "outbox/outbox.h"
#include "segments/segments.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(meisa_run_due);

/*
 * Exit or step conditions, compiled on first use and kept for the rest of
 * the run (not once per enrolment).
 */
typedef struct RunCondition
{
	Jsonb	   *json;			/* NULL = none (always holds) */
	bool		compiled;
	CondNode   *node;
	char	   *error;			/* compile error, raised for every enrolment */
} RunCondition;

/* A step of a sequence, as loaded for one run. */
typedef struct RunStep
{
	int32		position;
	Interval	delay;
	char	   *template_key;
	RunCondition conditions;	/* send the step only when they hold */
	TemplateRow *template;		/* loaded on first use in this run */
} RunStep;

/* A sequence with its steps (ordered by position), as loaded for one run. */
typedef struct RunSequence
{
	int64		id;				/* hash key */
	char	   *name;
	RunCondition exit_conditions;	/* leave the sequence when they hold */
	bool		has_window;
	SendWindow	window;
	pg_tz	   *tz;				/* the sequence's time zone */
	char	   *topic;			/* the sequence's topic, NULL = the templates' */
	int			nsteps;
	int			maxsteps;		/* allocated entries of steps */
	RunStep    *steps;
} RunSequence;

/* One locked enrolment of a batch and what became of it. */
typedef struct RunItem
{
	int64		id;
	int64		contact_id;
	int64		sequence_id;
	int32		current_step;
	ContactState cs;
	char	   *contact_tz;		/* custom_fields.timezone or NULL */
	/* outcome */
	const char *status;
	int32		new_step;
	bool		has_next;
	TimestampTz next_run_at;
	const char *exit_reason;
	char	   *last_error;
	bool		advanced;		/* counted in the result */
} RunItem;

/* Loads the enabled sequences and their steps into a hash in 'cxt'. */
static HTAB *
load_sequences(MemoryContext cxt, ArrayType **enabled_ids)
{
	HASHCTL		ctl;
	HTAB	   *htab;
	MemoryContext old;
	uint64		i;
	Datum	   *ids;
	int			nids;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(RunSequence);
	ctl.hcxt = cxt;
	htab = hash_create("meisa run_due sequences", 64, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	if (SPI_execute("SELECT id, name, exit_conditions, send_days, send_start, send_end, timezone,"
					" (SELECT pg_catalog.count(*) FROM meisa.sequence_steps st"
					"  WHERE st.sequence_id OPERATOR(pg_catalog.=) s.id), topic"
					" FROM meisa.sequences s WHERE enabled",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "meisa: could not load sequences");

	old = MemoryContextSwitchTo(cxt);
	nids = (int) SPI_processed;
	ids = palloc(sizeof(Datum) * (nids + 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		RunSequence *rs;
		bool		found;
		Datum		d;
		char	   *tzname;

		rs = hash_search(htab, &id, HASH_ENTER, &found);
		ids[i] = Int64GetDatum(id);
		rs->name = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		rs->topic = spi_get_text(tup, desc, 9);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		memset(&rs->exit_conditions, 0, sizeof(RunCondition));
		rs->exit_conditions.json = isnull ? NULL : DatumGetJsonbPCopy(d);
		rs->has_window = false;
		rs->window.days_mask = 0;
		rs->window.start_us = 0;
		rs->window.end_us = USECS_PER_DAY;
		d = SPI_getbinval(tup, desc, 4, &isnull);
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *nulls;
			int			n,
						j;

			deconstruct_array(DatumGetArrayTypeP(d), INT4OID, 4, true, TYPALIGN_INT,
							  &elems, &nulls, &n);
			for (j = 0; j < n; j++)
				if (!nulls[j] && DatumGetInt32(elems[j]) >= 1 && DatumGetInt32(elems[j]) <= 7)
					rs->window.days_mask |= 1 << DatumGetInt32(elems[j]);
			rs->has_window = rs->window.days_mask != 0;
		}
		d = SPI_getbinval(tup, desc, 5, &isnull);
		if (!isnull)
		{
			rs->window.start_us = DatumGetTimeADT(d);
			d = SPI_getbinval(tup, desc, 6, &isnull);
			rs->window.end_us = isnull ? USECS_PER_DAY : DatumGetTimeADT(d);
			rs->has_window = true;
		}
		tzname = TextDatumGetCString(SPI_getbinval(tup, desc, 7, &isnull));
		rs->tz = send_window_zone(tzname);
		if (rs->tz == NULL)
			rs->tz = send_window_zone("UTC");
		rs->nsteps = 0;
		rs->maxsteps = (int) DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull)) + 1;
		rs->steps = palloc0(sizeof(RunStep) * rs->maxsteps);
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);

	if (SPI_execute("SELECT sequence_id, position, delay, template, conditions"
					" FROM meisa.sequence_steps ORDER BY sequence_id, position",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "meisa: could not load sequence steps");
	old = MemoryContextSwitchTo(cxt);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		RunSequence *rs = hash_search(htab, &seq, HASH_FIND, NULL);
		RunStep    *st;
		Datum		d;

		if (rs == NULL)
			continue;			/* disabled sequence, or added since */
		if (rs->nsteps >= rs->maxsteps)
		{
			rs->maxsteps *= 2;
			rs->steps = repalloc(rs->steps, sizeof(RunStep) * rs->maxsteps);
		}
		st = &rs->steps[rs->nsteps++];
		memset(st, 0, sizeof(RunStep));
		st->position = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		st->delay = *DatumGetIntervalP(SPI_getbinval(tup, desc, 3, &isnull));
		st->template_key = TextDatumGetCString(SPI_getbinval(tup, desc, 4, &isnull));
		d = SPI_getbinval(tup, desc, 5, &isnull);
		st->conditions.json = isnull ? NULL : DatumGetJsonbPCopy(d);
	}
	*enabled_ids = construct_array(ids, nids, INT8OID, 8, true, TYPALIGN_DOUBLE);
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
	return htab;
}

/* 'at' + 'delay'. */
static TimestampTz
add_delay(TimestampTz at, Interval *delay)
{
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(at),
												   IntervalPGetDatum(delay)));
}

/* Schedules the step after index 'idx' (or completes) on item 'it'. */
static void
schedule_after(RunItem *it, RunSequence *rs, int idx, TimestampTz at)
{
	if (idx + 1 < rs->nsteps)
	{
		it->status = "active";
		it->has_next = true;
		it->next_run_at = add_delay(at, &rs->steps[idx + 1].delay);
	}
	else
	{
		it->status = "completed";
		it->has_next = false;
	}
}

/* Loads a step's template into 'cxt' for the rest of the run; ERROR if gone. */
static TemplateRow *
load_template(const char *key, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TemplateRow *t = template_lookup(key);

	MemoryContextSwitchTo(old);
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("template \"%s\" does not exist", key)));
	return t;
}

/*
 * True when the conditions hold for the contact of 'ctx'; compiles them into
 * 'runcxt' on first use.  An invalid rule raises its error (22023).
 */
static bool
run_condition_holds(RunCondition *rc, CondContext *ctx, MemoryContext runcxt)
{
	if (rc->json == NULL)
		return true;
	if (!rc->compiled)
	{
		MemoryContext old = MemoryContextSwitchTo(runcxt);

		rc->node = condition_compile(rc->json, "conditions",
									 COND_ALLOW_EVENT | COND_ALLOW_CHANGES,
									 &rc->error);
		rc->compiled = true;
		MemoryContextSwitchTo(old);
	}
	if (rc->error)
		condition_raise(rc->error);
	return condition_eval(rc->node, ctx);
}

/* Advances one enrolment (may throw: the caller holds a subtransaction). */
static void
run_one(RunItem *it, RunSequence *rs, TimestampTz at, MemoryContext runcxt)
{
	RunStep    *step = NULL;
	int			idx;
	MessageSource src;
	char	   *reason = NULL;
	CondContext ctx;

	it->new_step = it->current_step;
	it->status = "active";
	it->has_next = false;
	it->exit_reason = NULL;
	it->last_error = NULL;
	it->advanced = true;

	/* the contact's data is read once, when a condition first needs it */
	condition_context_init(&ctx, it->contact_id, NULL, NULL);

	/* 1. exit conditions */
	if (rs->exit_conditions.json != NULL &&
		run_condition_holds(&rs->exit_conditions, &ctx, runcxt))
	{
		it->status = "exited";
		it->exit_reason = "exit_conditions";
		return;
	}

	/* 2. the next step, or done */
	for (idx = 0; idx < rs->nsteps; idx++)
		if (rs->steps[idx].position > it->current_step)
		{
			step = &rs->steps[idx];
			break;
		}
	if (step == NULL)
	{
		it->status = "completed";
		return;
	}

	/* 3. the send window */
	if (rs->has_window)
	{
		pg_tz	   *tz = send_window_contact_zone(it->contact_tz);
		TimestampTz open;

		open = send_window_next(at, tz ? tz : rs->tz, &rs->window);
		if (open > at)
		{
			it->has_next = true;
			it->next_run_at = open;
			it->advanced = false;
			return;
		}
	}

	/* 4. step conditions: skip the step when they do not hold */
	if (!run_condition_holds(&step->conditions, &ctx, runcxt))
	{
		it->new_step = step->position;
		schedule_after(it, rs, idx, at);
		return;
	}

	/* 5. queue the step's message; over meisa.frequency_cap, wait instead */
	if (step->template == NULL)
		step->template = load_template(step->template_key, runcxt);
	if (strcmp(step->template->kind, "marketing") == 0 && policy_cap_set())
	{
		TimestampTz free_at;

		if (policy_cap_reached(it->contact_id, at, &free_at))
		{
			it->has_next = true;
			it->next_run_at = free_at;
			it->advanced = false;
			return;
		}
	}
	memset(&src, 0, sizeof(src));
	src.enrollment_id = it->id;
	src.sequence_id = rs->id;
	src.step_position = step->position;
	src.topic = rs->topic;
	src.now = at;
	outbox_queue_template(&it->cs, step->template, NULL, &src, &reason);
	if (reason)
	{
		/* constant strings: 'reason' lives in the per-item context */
		it->status = "exited";
		it->exit_reason = strcmp(reason, "bounced") == 0 ? "bounced" :
			strcmp(reason, "complained") == 0 ? "complained" :
			strcmp(reason, "unsubscribed") == 0 ? "unsubscribed" :
			strcmp(reason, "topic_unsubscribed") == 0 ? "topic_unsubscribed" : "suppressed";
		return;
	}
	it->new_step = step->position;
	schedule_after(it, rs, idx, at);
}

/* Records a failure of item 'it': keep its step, retry later. */
static void
record_failure(RunItem *it, ErrorData *edata, TimestampTz at)
{
	it->status = "active";
	it->new_step = it->current_step;
	it->has_next = true;
	it->next_run_at = at + (int64) meisa_sequence_retry_delay * USECS_PER_SEC;
	/* near the end of the timestamp range: retry at its last instant */
	if (!IS_VALID_TIMESTAMP(it->next_run_at))
		it->next_run_at = END_TIMESTAMP - 1;
	it->exit_reason = NULL;
	it->last_error = pstrdup(edata->message);
	it->advanced = false;
}

/* What run_items runs: items [0, n) of a batch. */
typedef struct RunBatch
{
	RunItem    *items;
	int			n;
	HTAB	   *seqs;
	TimestampTz at;
	MemoryContext runcxt;
	MemoryContext itemcxt;
} RunBatch;

/* Runs the items of a batch, one after the other (a spi_run_step step). */
static void
run_items(void *arg)
{
	RunBatch   *b = (RunBatch *) arg;

	for (int i = 0; i < b->n; i++)
	{
		RunSequence *rs = hash_search(b->seqs, &b->items[i].sequence_id, HASH_FIND, NULL);
		MemoryContext prev;

		CHECK_FOR_INTERRUPTS();
		prev = MemoryContextSwitchTo(b->itemcxt);
		run_one(&b->items[i], rs, b->at, b->runcxt);
		MemoryContextSwitchTo(prev);
		MemoryContextReset(b->itemcxt);
	}
}

/*
 * Runs items [0, n) inside one subtransaction (spi_run_step).  NULL when
 * all succeeded; on failure all of them are rolled back and the error is
 * returned.  A query cancel or shutdown is rethrown, never swallowed.
 */
static ErrorData *
run_in_subxact(RunItem *items, int n, HTAB *seqs, TimestampTz at,
			   MemoryContext runcxt, MemoryContext itemcxt)
{
	RunBatch	b = {items, n, seqs, at, runcxt, itemcxt};

	return spi_run_step(run_items, NULL, &b);
}

/* Writes the outcome of a batch in one UPDATE. */
static void
store_outcomes(RunItem *items, int n)
{
	static SPIPlanPtr plan = NULL;
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *statuses = palloc(sizeof(Datum) * n);
	Datum	   *steps = palloc(sizeof(Datum) * n);
	Datum	   *nexts = palloc(sizeof(Datum) * n);
	bool	   *nexts_null = palloc(sizeof(bool) * n);
	Datum	   *reasons = palloc(sizeof(Datum) * n);
	bool	   *reasons_null = palloc(sizeof(bool) * n);
	Datum	   *errors = palloc(sizeof(Datum) * n);
	bool	   *errors_null = palloc(sizeof(bool) * n);
	int			dims[1] = {n};
	int			lbs[1] = {1};
	Datum		values[6];
	int			i;

	if (plan == NULL)
	{
		Oid			types[6] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID};

		plan = spi_keep_plan("UPDATE meisa.enrollments e SET status = u.status,"
							 " current_step = u.step, next_run_at = u.next_run_at,"
							 " exit_reason = u.exit_reason, last_error = u.last_error,"
							 " updated_at = pg_catalog.now()"
							 " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
							 "  pg_catalog.unnest($3), pg_catalog.unnest($4),"
							 "  pg_catalog.unnest($5), pg_catalog.unnest($6))"
							 "  AS u(id, status, step, next_run_at, exit_reason, last_error)"
							 " WHERE e.id OPERATOR(pg_catalog.=) u.id", 6, types);
	}
	for (i = 0; i < n; i++)
	{
		RunItem    *it = &items[i];

		ids[i] = Int64GetDatum(it->id);
		statuses[i] = CStringGetTextDatum(it->status);
		steps[i] = Int32GetDatum(it->new_step);
		nexts[i] = TimestampTzGetDatum(it->has_next ? it->next_run_at : 0);
		nexts_null[i] = !it->has_next;
		reasons_null[i] = it->exit_reason == NULL;
		reasons[i] = it->exit_reason ? CStringGetTextDatum(it->exit_reason) : (Datum) 0;
		errors_null[i] = it->last_error == NULL;
		errors[i] = it->last_error ? CStringGetTextDatum(it->last_error) : (Datum) 0;
	}
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, true, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(statuses, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(steps, n, INT4OID, 4, true, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_md_array(nexts, nexts_null, 1, dims, lbs,
												   TIMESTAMPTZOID, 8, true, TYPALIGN_DOUBLE));
	values[4] = PointerGetDatum(construct_md_array(reasons, reasons_null, 1, dims, lbs,
												   TEXTOID, -1, false, TYPALIGN_INT));
	values[5] = PointerGetDatum(construct_md_array(errors, errors_null, 1, dims, lbs,
												   TEXTOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "meisa: could not update enrolments");
}

/*
 * Opens a cursor over the due enrolments of enabled sequences, oldest first,
 * locking each row as it is fetched (FOR UPDATE SKIP LOCKED).  One cursor
 * per pass keeps the index scan moving forward instead of rescanning the
 * entries of rows already advanced.
 *
 * The contact is locked first, FOR KEY SHARE: the lock the foreign keys of
 * the queued message and of the enrolment take anyway, taken before the
 * enrolment's so that the order is the one meisa_upsert uses (contact, then
 * the enrolments an automation unenrols).  Taking it after the enrolment,
 * through the message's foreign key, deadlocked with an upsert that changed
 * the contact's email or external_id and unenrolled it in the same call.  A
 * contact whose key an open transaction is changing is skipped, like a
 * locked enrolment, and taken by a later run.
 */
static Portal
open_due_cursor(TimestampTz at, ArrayType *enabled_ids)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[2];
	Portal		portal;

	if (plan == NULL)
	{
		Oid			types[2] = {TIMESTAMPTZOID, INT8ARRAYOID};

		plan = spi_keep_plan("SELECT e.id, e.contact_id, e.sequence_id, e.current_step,"
							 " c.email, c.subscribed, c.bounced_at IS NOT NULL,"
							 " c.complained_at IS NOT NULL,"
							 " c.custom_fields OPERATOR(pg_catalog.->>) 'timezone'"
							 " FROM meisa.enrollments e"
							 " JOIN meisa.contacts c ON c.id OPERATOR(pg_catalog.=) e.contact_id"
							 " WHERE e.status OPERATOR(pg_catalog.=) 'active'"
							 " AND e.next_run_at OPERATOR(pg_catalog.<=) $1"
							 " AND e.sequence_id OPERATOR(pg_catalog.=) ANY ($2)"
							 " ORDER BY e.next_run_at"
							 " FOR KEY SHARE OF c SKIP LOCKED"
							 " FOR UPDATE OF e SKIP LOCKED", 2, types);
	}
	values[0] = TimestampTzGetDatum(at);
	values[1] = PointerGetDatum(enabled_ids);
	portal = SPI_cursor_open(NULL, plan, values, NULL, false);
	if (portal == NULL)
		elog(ERROR, "meisa: could not open the due enrolments cursor");
	return portal;
}

/* Fetches and locks the next batch of due enrolments; returns how many. */
static int
fetch_batch(Portal portal, RunItem *items, int max)
{
	uint64		i;
	int			n;

	SPI_cursor_fetch(portal, true, max);
	n = (int) SPI_processed;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		RunItem    *it = &items[i];

		memset(it, 0, sizeof(RunItem));
		it->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		it->contact_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		it->sequence_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		it->current_step = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		it->cs.id = it->contact_id;
		it->cs.email = TextDatumGetCString(SPI_getbinval(tup, desc, 5, &isnull));
		it->cs.subscribed = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
		it->cs.bounced = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
		it->cs.complained = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull));
		it->contact_tz = SPI_getvalue(tup, desc, 9);
		it->cs.timezone = it->contact_tz;
	}
	SPI_freetuptable(SPI_tuptable);
	return n;
}

/* Advances every enrolment due at 'at'; returns how many advanced. */
static int64
run_due_enrolments(TimestampTz at)
{
	MemoryContext runcxt,
				batchcxt,
				itemcxt,
				oldcxt;
	HTAB	   *seqs;
	ArrayType  *enabled_ids;
	RunItem    *items;
	int			batch = meisa_run_due_batch_size;
	int64		advanced = 0;

	runcxt = AllocSetContextCreate(CurrentMemoryContext, "meisa run_due",
								   ALLOCSET_DEFAULT_SIZES);
	batchcxt = AllocSetContextCreate(runcxt, "meisa run_due batch",
									 ALLOCSET_DEFAULT_SIZES);
	itemcxt = AllocSetContextCreate(runcxt, "meisa run_due item",
									ALLOCSET_DEFAULT_SIZES);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	seqs = load_sequences(runcxt, &enabled_ids);
	items = MemoryContextAlloc(runcxt, sizeof(RunItem) * batch);

	/*
	 * Passes: each walks the due enrolments once.  A step with a zero delay
	 * makes its enrolment due again at once; the next pass takes it (the
	 * cursor of a pass does not see rows changed after it opened).
	 */
	for (;;)
	{
		Portal		portal = open_due_cursor(at, enabled_ids);
		int64		pass_rows = 0;

		for (;;)
		{
			int			n,
						i;
			ErrorData  *error = NULL;

			oldcxt = MemoryContextSwitchTo(batchcxt);
			n = fetch_batch(portal, items, batch);
			if (n == 0)
			{
				MemoryContextSwitchTo(oldcxt);
				break;
			}
			pass_rows += n;

			/* optimistic: the whole batch in one subtransaction */
			error = run_in_subxact(items, n, seqs, at, runcxt, itemcxt);
			if (error != NULL)
			{
				/* something failed: redo one enrolment per subtransaction */
				FreeErrorData(error);
				for (i = 0; i < n; i++)
				{
					error = run_in_subxact(&items[i], 1, seqs, at, runcxt, itemcxt);
					if (error != NULL)
						record_failure(&items[i], error, at);
				}
			}
			for (i = 0; i < n; i++)
				if (items[i].advanced)
					advanced++;
			store_outcomes(items, n);
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(batchcxt);
		}
		SPI_cursor_close(portal);
		if (pass_rows == 0)
			break;
	}

	SPI_finish();
	MemoryContextDelete(runcxt);
	return advanced;
}

/*
 * meisa_run_due(at timestamptz default now()) returns int: processes the
 * segment checks due at 'at', queues the next batch of each due broadcast,
 * then advances the enrolments due at 'at';
 * every clock test evaluated meanwhile takes 'at' as now.  Returns how many
 * enrolments advanced.
 */
Datum
meisa_run_due(PG_FUNCTION_ARGS)
{
	TimestampTz at;
	TimestampTz prev;
	volatile int64 advanced = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must not be null")));
	at = PG_GETARG_TIMESTAMPTZ(0);
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("at must be a finite timestamp")));

	prev = condition_set_now(at);
	PG_TRY();
	{
		segments_run_checks(at);
		broadcasts_run(at);
		advanced = run_due_enrolments(at);
	}
	PG_FINALLY();
	{
		condition_set_now(prev);
	}
	PG_END_TRY();
	PG_RETURN_INT32((int32) Min(advanced, PG_INT32_MAX));
}
