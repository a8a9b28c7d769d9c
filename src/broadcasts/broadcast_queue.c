/*
 * broadcast_queue.c
 *		Queueing the messages of due broadcasts, one batch per broadcast and
 *		meisa_run_due call (meisa.broadcast_batch_size), never in one long
 *		transaction.  A due broadcast is locked (FOR UPDATE SKIP LOCKED: a
 *		concurrent caller passes it by); the first batch starts it (status
 *		'sending', started_at, the audience counted).  The audience is the
 *		segment's members who entered it at or before the start and are
 *		still in it (every contact created by then and subscribed, without a
 *		segment), walked in contact id order from queue_cursor.  Per contact:
 *		the suppression reasons (unsubscribed, bounced, complained, the
 *		broadcast's topic left, meisa.frequency_cap) give a 'suppressed'
 *		message; otherwise the template is rendered (a render error fails
 *		that contact's message only) and queued, at the contact's wall-clock
 *		send time for a local_time broadcast and after quiet hours.  The
 *		batch goes in one INSERT, the cursor moves in the same transaction,
 *		and the unique index on (broadcast_id, contact_id) makes a message
 *		twice impossible, whatever crashes or concurrent runners do.  The
 *		broadcast is 'sent' once its last batch is queued.
 */
#include "broadcasts/broadcasts.h"
#include "delivery/delivery.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

/* A locked due broadcast. */
typedef struct Broadcast
{
	int64		id;
	char	   *name;
	char	   *template_key;
	bool		has_segment;
	int64		segment_id;		/* 0: the segment is missing or disabled */
	char	   *topic;			/* the broadcast's topic, else its template's */
	int64		topic_id;
	bool		topic_default;	/* the topic's default_subscribed */
	TimestampTz send_at;
	bool		local_time;
	bool		scheduled;		/* not started yet */
	int64		cursor;
	TimestampTz started_at;
} Broadcast;

/* One contact of a batch and its message. */
typedef struct Recipient
{
	ContactState cs;
	Jsonb	   *contact;		/* its data, as contact_data_jsonb gives it */
	bool		topic_left;
	const char *reason;			/* suppression reason, NULL = none */
	char	   *error;			/* render error, NULL = none */
	RenderedMessage r;
	TimestampTz first;			/* next_attempt_at */
} Recipient;

/* What a batch's render step needs. */
typedef struct RenderBatch
{
	Broadcast  *b;
	TemplateRow *t;
	Recipient  *rs;
	int			from;			/* recipients [from, to) */
	int			to;
} RenderBatch;

/* Widest possible zone offset east of UTC: a local-time broadcast starts then. */
#define EARLIEST_ZONE_US (INT64CONST(14) * USECS_PER_HOUR)

/* Loads row 'i' of the due-broadcasts query into b. */
static void
broadcast_from_row(Broadcast *b, int i)
{
	HeapTuple	tup = SPI_tuptable->vals[i];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	char	   *status;

	b->id = spi_get_int64(tup, desc, 1, 0);
	b->name = spi_get_text(tup, desc, 2);
	b->template_key = spi_get_text(tup, desc, 3);
	(void) SPI_getbinval(tup, desc, 4, &isnull);
	b->has_segment = !isnull;
	b->segment_id = spi_get_int64(tup, desc, 5, 0);
	b->topic = spi_get_text(tup, desc, 6);
	b->topic_id = spi_get_int64(tup, desc, 7, 0);
	b->topic_default = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull)) || isnull;
	b->send_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 9, &isnull));
	b->local_time = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
	status = spi_get_text(tup, desc, 11);
	b->scheduled = strcmp(status, "scheduled") == 0;
	b->cursor = spi_get_int64(tup, desc, 12, 0);
	b->started_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 13, &isnull));
	if (isnull)
		b->started_at = 0;
}

/* The wall-clock send time of a local-time broadcast, as a timestamp without zone. */
static Timestamp
broadcast_local(const Broadcast *b)
{
	return policy_default_local(b->send_at);
}

/*
 * Locks the broadcasts due at 'at' (scheduled or sending; a local-time one
 * from the moment its wall-clock time comes in the earliest zone) into a
 * palloc'd array; *n their number.
 */
static Broadcast *
lock_due(TimestampTz at, int *n)
{
	static SPIPlanPtr plan = NULL;
	Datum		arg;
	Broadcast  *bs;
	int			k = 0;

	/* a local-time broadcast is read up to two days early (the widest zones) */
	arg = TimestampTzGetDatum(at < END_TIMESTAMP - 2 * USECS_PER_DAY ? at + 2 * USECS_PER_DAY : at);
	if (plan == NULL)
	{
		Oid			types[1] = {TIMESTAMPTZOID};

		plan = spi_keep_plan("SELECT b.id, b.name, b.template, b.segment,"
							 " CASE WHEN s.enabled THEN s.id END, t.name, t.id, t.default_subscribed,"
							 " b.send_at, b.local_time, b.status, b.queue_cursor, b.started_at"
							 " FROM meisa.broadcasts b"
							 " LEFT JOIN meisa.segments s ON s.name OPERATOR(pg_catalog.=) b.segment"
							 " LEFT JOIN meisa.templates tp ON tp.key OPERATOR(pg_catalog.=) b.template"
							 " LEFT JOIN meisa.topics t ON t.name OPERATOR(pg_catalog.=) coalesce(b.topic, tp.topic)"
							 " WHERE b.status OPERATOR(pg_catalog.=) ANY (ARRAY['scheduled', 'sending'])"
							 " AND b.send_at OPERATOR(pg_catalog.<=) $1"
							 " ORDER BY b.id FOR UPDATE OF b SKIP LOCKED", 1, types);
	}
	if (SPI_execute_plan(plan, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "meisa: could not read the due broadcasts");
	bs = palloc0(sizeof(Broadcast) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Broadcast  *b = &bs[k];
		TimestampTz due;

		broadcast_from_row(b, (int) i);
		due = b->local_time ? (TimestampTz) broadcast_local(b) - EARLIEST_ZONE_US : b->send_at;
		if (b->scheduled && due > at)
			continue;
		k++;
	}
	SPI_freetuptable(SPI_tuptable);
	*n = k;
	return bs;
}

/* Starts broadcast b: status 'sending', started_at now, the audience counted. */
static void
broadcast_start(Broadcast *b)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bool		isnull;

	if (plan == NULL)
	{
		Oid			types[2] = {INT8OID, INT8OID};

		plan = spi_keep_plan("UPDATE meisa.broadcasts b SET status = 'sending', started_at = pg_catalog.now(),"
							 " audience = CASE WHEN b.segment IS NULL THEN"
							 " (SELECT pg_catalog.count(*) FROM meisa.contacts c WHERE c.subscribed"
							 " AND c.bounced_at IS NULL AND c.complained_at IS NULL)"
							 " ELSE coalesce((SELECT pg_catalog.count(*) FROM meisa.segment_members m"
							 " WHERE m.segment_id OPERATOR(pg_catalog.=) $2), 0) END"
							 " WHERE b.id OPERATOR(pg_catalog.=) $1 RETURNING b.started_at",
							 2, types);
	}
	values[0] = Int64GetDatum(b->id);
	values[1] = Int64GetDatum(b->segment_id);
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_UPDATE_RETURNING || SPI_processed != 1)
		elog(ERROR, "meisa: could not start broadcast \"%s\"", b->name);
	b->started_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	b->scheduled = false;
}

/*
 * The columns of a recipient: the whole contact (its template data is
 * built from the row, contact_data_of_rows), its zone and its choice of the
 * broadcast's topic, read by name in recipients_from_rows.
 */
#define RECIPIENT_COLUMNS "c.*, c.custom_fields OPERATOR(pg_catalog.->>) 'timezone' AS contact_tz," \
	" ts.subscribed AS topic_subscribed"

/*
 * Fetches the next batch of b's audience after its cursor (at most 'max',
 * contact id order): members who entered the segment by the start, or every
 * subscribed contact created by then.
 */
static void
fetch_audience(const Broadcast *b, int max)
{
	static SPIPlanPtr plan_segment = NULL;
	static SPIPlanPtr plan_all = NULL;
	Oid			types[5] = {INT8OID, INT8OID, TIMESTAMPTZOID, INT8OID, INT4OID};
	Datum		values[5];

	/*
	 * The batch's contacts are picked in the subquery, along the primary
	 * key, and only they are turned into template data and joined to their
	 * topic choice: computed over the whole audience before a sort, the
	 * data cost more than everything else.
	 */
	if (plan_segment == NULL)
		plan_segment = spi_keep_plan("SELECT " RECIPIENT_COLUMNS " FROM"
									 " (SELECT m.contact_id FROM meisa.segment_members m"
									 " WHERE m.segment_id OPERATOR(pg_catalog.=) $1"
									 " AND m.contact_id OPERATOR(pg_catalog.>) $2"
									 " AND m.entered_at OPERATOR(pg_catalog.<=) $3"
									 " ORDER BY m.segment_id, m.contact_id LIMIT $5) p"
									 " JOIN meisa.contacts c ON c.id OPERATOR(pg_catalog.=) p.contact_id"
									 " LEFT JOIN meisa.topic_subscriptions ts ON ts.contact_id OPERATOR(pg_catalog.=) c.id"
									 " AND ts.topic_id OPERATOR(pg_catalog.=) $4"
									 " ORDER BY c.id", 5, types);
	if (plan_all == NULL)
		plan_all = spi_keep_plan("SELECT " RECIPIENT_COLUMNS " FROM"
								 " (SELECT x.id FROM meisa.contacts x"
								 " WHERE $1 OPERATOR(pg_catalog.=) 0 AND x.id OPERATOR(pg_catalog.>) $2"
								 " AND x.created_at OPERATOR(pg_catalog.<=) $3"
								 " AND x.subscribed AND x.bounced_at IS NULL AND x.complained_at IS NULL"
								 " ORDER BY x.id LIMIT $5) p"
								 " JOIN meisa.contacts c ON c.id OPERATOR(pg_catalog.=) p.id"
								 " LEFT JOIN meisa.topic_subscriptions ts ON ts.contact_id OPERATOR(pg_catalog.=) c.id"
								 " AND ts.topic_id OPERATOR(pg_catalog.=) $4"
								 " ORDER BY c.id", 5, types);
	values[0] = Int64GetDatum(b->has_segment ? b->segment_id : 0);
	values[1] = Int64GetDatum(b->cursor);
	values[2] = TimestampTzGetDatum(b->started_at);
	values[3] = Int64GetDatum(b->topic_id);
	values[4] = Int32GetDatum(max);
	if (SPI_execute_plan(b->has_segment ? plan_segment : plan_all, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "meisa: could not read the audience of broadcast \"%s\"", b->name);
}

/* The attribute number of column 'name' of the audience query. */
static int
audience_column(TupleDesc desc, const char *name)
{
	int			n = SPI_fnumber(desc, name);

	if (n <= 0)
		elog(ERROR, "meisa: audience column \"%s\" is missing", name);
	return n;
}

/*
 * Copies the n rows of the audience into rs (in the current memory
 * context), with the contact data template 't' may read.
 */
static void
recipients_from_rows(const Broadcast *b, const TemplateRow *t, Recipient *rs, int n)
{
	const char *texts[3] = {t->subject, t->html, t->text};
	TupleDesc	desc = SPI_tuptable->tupdesc;
	Jsonb	  **data = palloc(sizeof(Jsonb *) * Max(n, 1));
	int			c_id = audience_column(desc, "id");
	int			c_email = audience_column(desc, "email");
	int			c_sub = audience_column(desc, "subscribed");
	int			c_bounced = audience_column(desc, "bounced_at");
	int			c_complained = audience_column(desc, "complained_at");
	int			c_tz = audience_column(desc, "contact_tz");
	int			c_topic = audience_column(desc, "topic_subscribed");

	contact_data_of_rows(SPI_tuptable, n, contact_data_key_mask(texts, 3), data);
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		Recipient  *rc = &rs[i];
		bool		isnull;
		Datum		d;

		memset(rc, 0, sizeof(Recipient));
		rc->cs.id = spi_get_int64(tup, desc, c_id, 0);
		rc->cs.email = spi_get_text(tup, desc, c_email);
		rc->cs.subscribed = DatumGetBool(SPI_getbinval(tup, desc, c_sub, &isnull));
		(void) SPI_getbinval(tup, desc, c_bounced, &isnull);
		rc->cs.bounced = !isnull;
		(void) SPI_getbinval(tup, desc, c_complained, &isnull);
		rc->cs.complained = !isnull;
		rc->cs.timezone = spi_get_text(tup, desc, c_tz);
		rc->contact = data[i];
		d = SPI_getbinval(tup, desc, c_topic, &isnull);
		rc->topic_left = b->topic != NULL && !(isnull ? b->topic_default : DatumGetBool(d));
	}
}

/* Renders the messages of recipients [from, to) that are not suppressed (a spi_run_step step). */
static void
render_step(void *arg)
{
	RenderBatch *rb = (RenderBatch *) arg;

	for (int i = rb->from; i < rb->to; i++)
	{
		Recipient  *rc = &rb->rs[i];

		if (rc->reason == NULL && rc->error == NULL)
			outbox_render(&rc->cs, rb->t, rc->contact, NULL, rb->b->topic_id, &rc->r);
	}
}

/*
 * Renders the batch: all of it in one subtransaction, and only when that
 * fails one recipient per subtransaction, so that a template failing for
 * one contact fails that contact's message only.
 */
static void
render_batch(Broadcast *b, TemplateRow *t, Recipient *rs, int n)
{
	RenderBatch rb = {b, t, rs, 0, n};
	ErrorData  *err = spi_run_step(render_step, NULL, &rb);

	if (err == NULL)
		return;
	FreeErrorData(err);
	for (int i = 0; i < n; i++)
	{
		rb.from = i;
		rb.to = i + 1;
		err = spi_run_step(render_step, NULL, &rb);
		if (err)
		{
			rs[i].error = psprintf("could not render template \"%s\": %s", t->key,
								   err->message ? err->message : "error");
			FreeErrorData(err);
		}
	}
}

/* Decides each recipient's suppression and first attempt (before rendering). */
static void
decide_batch(const Broadcast *b, Recipient *rs, int n, TimestampTz at)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Timestamp	local = b->local_time ? broadcast_local(b) : 0;

	for (int i = 0; i < n; i++)
	{
		Recipient  *rc = &rs[i];
		TimestampTz first = now;

		rc->reason = contact_suppression_reason(&rc->cs, "marketing");
		if (rc->reason == NULL && rc->topic_left)
			rc->reason = "topic_unsubscribed";
		if (rc->reason == NULL && policy_cap_set() && policy_cap_reached(rc->cs.id, at, NULL))
			rc->reason = "frequency_cap";
		if (b->local_time)
			first = Max(now, local_to_instant(local, policy_contact_zone(rc->cs.timezone)));
		rc->first = outbox_first_attempt(&rc->cs, "marketing", first);
	}
}

/* The number of message columns passed as arrays to the batch INSERT. */
#define NCOLS 11

/* Inserts the batch's messages in one statement; returns how many were queued to send. */
static int64
insert_batch(const Broadcast *b, const TemplateRow *t, Recipient *rs, int n)
{
	static SPIPlanPtr plan = NULL;
	Datum	   *cols[NCOLS];
	bool	   *nulls[NCOLS];
	Oid			elem[NCOLS] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[NCOLS + 4];
	char		argnulls[NCOLS + 4];
	int64		queued = 0;

	if (plan == NULL)
	{
		Oid			types[NCOLS + 4] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
			TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TIMESTAMPTZARRAYOID, TEXTOID, TEXTOID, TEXTOID, INT8OID};

		plan = spi_keep_plan("INSERT INTO meisa.messages (id, contact_id, to_email, from_address,"
							 " reply_to, kind, template_key, subject, html, text, status, last_error,"
							 " message_id, topic, broadcast_id, next_attempt_at)"
							 " SELECT u.id, u.c, u.e, u.f, $12, 'marketing', $13, u.s, u.h, u.x, u.st, u.le,"
							 " pg_catalog.concat('<', u.r, '.', u.id, '@', u.d, '>'), $14, $15, u.na"
							 " FROM (SELECT pg_catalog.nextval('meisa.messages_id_seq'::pg_catalog.regclass) AS id, a.*"
							 " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
							 " pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5),"
							 " pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8),"
							 " pg_catalog.unnest($9), pg_catalog.unnest($10), pg_catalog.unnest($11))"
							 " AS a(c, e, f, s, h, x, st, le, r, d, na)) u"
							 " ON CONFLICT (broadcast_id, contact_id) WHERE broadcast_id IS NOT NULL DO NOTHING",
							 NCOLS + 4, types);
	}
	for (int c = 0; c < NCOLS; c++)
	{
		cols[c] = palloc(sizeof(Datum) * n);
		nulls[c] = palloc0(sizeof(bool) * n);
	}
#define PUT_TEXT(c, s) do { if (s) cols[c][i] = CStringGetTextDatum(s); else nulls[c][i] = true; } while (0)
	for (int i = 0; i < n; i++)
	{
		Recipient  *rc = &rs[i];
		bool		render_ok = rc->reason == NULL && rc->error == NULL;
		const char *status = rc->reason ? "suppressed" : rc->error ? "failed" : "queued";

		cols[0][i] = Int64GetDatum(rc->cs.id);
		PUT_TEXT(1, rc->cs.email);
		PUT_TEXT(2, render_ok ? rc->r.from : NULL);
		PUT_TEXT(3, render_ok ? rc->r.subject : "");
		PUT_TEXT(4, render_ok ? rc->r.html : NULL);
		PUT_TEXT(5, render_ok ? rc->r.text : NULL);
		PUT_TEXT(6, status);
		PUT_TEXT(7, rc->reason ? rc->reason : rc->error);
		PUT_TEXT(8, render_ok ? rc->r.random : "0");
		PUT_TEXT(9, render_ok ? rc->r.domain : "meisa.local");
		cols[10][i] = TimestampTzGetDatum(rc->first);
		if (render_ok)
			queued++;
	}
#undef PUT_TEXT
	memset(argnulls, ' ', sizeof(argnulls));
	for (int c = 0; c < NCOLS; c++)
	{
		int			dims[1] = {n};
		int			lbs[1] = {1};
		int16		typlen;
		bool		typbyval;
		char		typalign;

		get_typlenbyvalalign(elem[c], &typlen, &typbyval, &typalign);
		values[c] = PointerGetDatum(construct_md_array(cols[c], nulls[c], 1, dims, lbs,
													   elem[c], typlen, typbyval, typalign));
	}
	if (t->reply_to)
		values[NCOLS] = CStringGetTextDatum(t->reply_to);
	else
		argnulls[NCOLS] = 'n';
	values[NCOLS + 1] = CStringGetTextDatum(t->key);
	if (b->topic)
		values[NCOLS + 2] = CStringGetTextDatum(b->topic);
	else
		argnulls[NCOLS + 2] = 'n';
	values[NCOLS + 3] = Int64GetDatum(b->id);
	if (SPI_execute_plan(plan, values, argnulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "meisa: could not queue the messages of broadcast \"%s\"", b->name);
	return queued;
}

/* Moves b's cursor past 'last'; finished: status 'sent', finished_at now. */
static void
broadcast_advance(const Broadcast *b, int64 last, bool finished)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[3];

	if (plan == NULL)
	{
		Oid			types[3] = {INT8OID, INT8OID, BOOLOID};

		plan = spi_keep_plan("UPDATE meisa.broadcasts SET queue_cursor = $2,"
							 " status = CASE WHEN $3 THEN 'sent' ELSE status END,"
							 " finished_at = CASE WHEN $3 THEN pg_catalog.now() END"
							 " WHERE id OPERATOR(pg_catalog.=) $1", 3, types);
	}
	values[0] = Int64GetDatum(b->id);
	values[1] = Int64GetDatum(last);
	values[2] = BoolGetDatum(finished);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "meisa: could not record the progress of broadcast \"%s\"", b->name);
}

/* Queues the next batch of broadcast b at 'at'; returns the messages queued to send. */
static int64
broadcast_batch(Broadcast *b, TimestampTz at, MemoryContext batchcxt)
{
	int			max = meisa_broadcast_batch_size;
	TemplateRow *t;
	Recipient  *rs;
	int			n;
	int64		queued = 0;
	MemoryContext old;

	t = template_lookup(b->template_key);
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("template \"%s\" of broadcast \"%s\" does not exist", b->template_key, b->name)));
	if (b->scheduled)
		broadcast_start(b);
	/* a missing or disabled segment keeps no members: nobody to send to */
	if (b->has_segment && b->segment_id == 0)
	{
		broadcast_advance(b, b->cursor, true);
		return 0;
	}
	fetch_audience(b, max);
	n = (int) SPI_processed;
	old = MemoryContextSwitchTo(batchcxt);
	rs = palloc(sizeof(Recipient) * Max(n, 1));
	recipients_from_rows(b, t, rs, n);
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);

	old = MemoryContextSwitchTo(batchcxt);
	decide_batch(b, rs, n, at);
	render_batch(b, t, rs, n);
	if (n > 0)
		queued = insert_batch(b, t, rs, n);
	MemoryContextSwitchTo(old);
	broadcast_advance(b, n > 0 ? rs[n - 1].cs.id : b->cursor, n < max);
	if (n >= max)
		broadcasts_work_left = true;
	if (queued > 0)
		delivery_wake_at_commit();
	return queued;
}

/*
 * Queues the next batch of every broadcast due at 'at' (the hook of
 * meisa_run_due); returns the messages queued to send.
 */
static int64
broadcasts_run_due(TimestampTz at)
{
	MemoryContext batchcxt;
	Broadcast  *bs;
	int			n;
	int64		queued = 0;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	bs = lock_due(at, &n);
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "meisa broadcast batch",
									 ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < n; i++)
	{
		queued += broadcast_batch(&bs[i], at, batchcxt);
		MemoryContextReset(batchcxt);
	}
	MemoryContextDelete(batchcxt);
	SPI_finish();
	return queued;
}

/* Sets the hook through which meisa_run_due queues broadcasts. */
void
broadcasts_init(void)
{
	broadcasts_run_hook = broadcasts_run_due;
}
