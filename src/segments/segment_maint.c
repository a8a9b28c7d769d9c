/*
 * segment_maint.c
 *		Keeps meisa.segment_members current in the transaction that writes:
 *		the contacts stage calls segments_changed() (through the hook of
 *		common/hooks.c) for every contact write and every recorded event.
 *		Only the segments that read what changed are evaluated (the cache's
 *		index), every segment after the segments it reads, so in_segment sees
 *		the memberships just changed; a segment whose rule has clock tests
 *		keeps the next moment its result can change in meisa.segment_checks,
 *		processed by segments_run_checks() (meisa_run_due, the worker).  A
 *		membership entered or left is logged in meisa.segment_changes and
 *		fires segment_entered / segment_exited once the memberships are done.
 */
#include "segments/segments.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* A membership entered or left, to fire once the memberships are done. */
typedef struct Flip
{
	char	   *name;
	bool		entered;
} Flip;

/* The saved plans of the maintenance, prepared on first use. */
enum
{
	PLAN_MEMBERSHIPS,
	PLAN_ENTER,
	PLAN_EXIT,
	PLAN_LOG,
	PLAN_CHECK_SET,
	PLAN_CHECK_DROP,
	PLAN_LOCK_CONTACT,
	NPLANS
};

static SPIPlanPtr plans[NPLANS];

static const char *const plan_sql[NPLANS] = {
	"SELECT segment_id FROM meisa.segment_members WHERE contact_id OPERATOR(pg_catalog.=) $1",
	"INSERT INTO meisa.segment_members (segment_id, contact_id, entered_at) VALUES ($1, $2, $3)"
	" ON CONFLICT DO NOTHING",
	"DELETE FROM meisa.segment_members WHERE segment_id OPERATOR(pg_catalog.=) $1"
	" AND contact_id OPERATOR(pg_catalog.=) $2",
	"INSERT INTO meisa.segment_changes (segment_id, contact_id, change, at) VALUES ($1, $2, $3, $4)",
	"INSERT INTO meisa.segment_checks (segment_id, contact_id, check_at) VALUES ($1, $2, $3)"
	" ON CONFLICT (segment_id, contact_id) DO UPDATE SET check_at = EXCLUDED.check_at",
	"DELETE FROM meisa.segment_checks WHERE segment_id OPERATOR(pg_catalog.=) $1"
	" AND contact_id OPERATOR(pg_catalog.=) $2",
	"SELECT 1 FROM meisa.contacts WHERE id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
};

static const int plan_nargs[NPLANS] = {1, 3, 2, 4, 3, 2, 1};
static const Oid plan_types[NPLANS][4] = {
	{INT8OID},
	{INT8OID, INT8OID, TIMESTAMPTZOID},
	{INT8OID, INT8OID},
	{INT8OID, INT8OID, TEXTOID, TIMESTAMPTZOID},
	{INT8OID, INT8OID, TIMESTAMPTZOID},
	{INT8OID, INT8OID},
	{INT8OID},
};

/*
 * Forgets the saved plans: the next use plans again.  A long run of checks
 * grows the tables it reads by the thousand within one transaction, where
 * no new statistics arrive: plans made when they were small would scan them
 * whole.
 */
static void
forget_plans(void)
{
	for (int i = 0; i < NPLANS; i++)
		if (plans[i] != NULL)
		{
			SPI_freeplan(plans[i]);
			plans[i] = NULL;
		}
}

/* Runs saved plan 'which' (SPI connected); returns the rows it processed. */
static uint64
run_plan(int which, Datum *values)
{
	int			rc;

	if (plans[which] == NULL)
		plans[which] = spi_keep_plan(plan_sql[which], plan_nargs[which], plan_types[which]);
	rc = SPI_execute_plan(plans[which], values, NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "meisa: segment maintenance failed: %s", plan_sql[which]);
	return SPI_processed;
}

/* The segment ids the contact is a member of (SPI connected); *n their number. */
static int64 *
memberships(int64 contact_id, int *n)
{
	Datum		arg = Int64GetDatum(contact_id);
	int64	   *ids;

	run_plan(PLAN_MEMBERSHIPS, &arg);
	*n = (int) SPI_processed;
	ids = palloc(sizeof(int64) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		ids[i] = spi_get_int64(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, 0);
	SPI_freetuptable(SPI_tuptable);
	return ids;
}

/* True when id is among ids[0, n). */
static bool
id_in(int64 id, const int64 *ids, int n)
{
	for (int i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/*
 * Enters or leaves the segment when the evaluation says so; true when the
 * membership really changed (a concurrent writer may have done it first).
 */
static bool
set_membership(const Segment *seg, int64 contact_id, bool now_in, TimestampTz at)
{
	Datum		v[4];

	v[0] = Int64GetDatum(seg->id);
	v[1] = Int64GetDatum(contact_id);
	v[2] = TimestampTzGetDatum(at);
	if (run_plan(now_in ? PLAN_ENTER : PLAN_EXIT, v) == 0)
		return false;
	v[2] = CStringGetTextDatum(now_in ? "entered" : "exited");
	v[3] = TimestampTzGetDatum(at);
	run_plan(PLAN_LOG, v);
	return true;
}

/* Keeps the contact's next clock check of the segment (none: no row). */
static void
set_check(const Segment *seg, int64 contact_id, CondContext *ctx, bool had_row)
{
	TimestampTz next = seg->has_clock ? segment_next_check(seg->cond, ctx) : 0;
	Datum		v[3];

	if (next != 0 && next <= ctx->now)
		next = 0;				/* never due again at once: a run always ends */
	v[0] = Int64GetDatum(seg->id);
	v[1] = Int64GetDatum(contact_id);
	v[2] = TimestampTzGetDatum(next);
	if (next != 0)
		run_plan(PLAN_CHECK_SET, v);
	else if (had_row)
		run_plan(PLAN_CHECK_DROP, v);
}

/*
 * Evaluates the affected segments for the contact (and those reading a
 * segment whose membership changed), in cache order, at 'now'; returns the
 * memberships entered and left (SPI connected, acting as the segments' owner).
 * 'created': the contact is new (no memberships, no checks yet); 'checked':
 * the position whose due check is being processed (-1: none).  The flips
 * are allocated in 'flipcxt', which outlives the SPI connection.
 */
static List *
maintain(int64 contact_id, Segment *segs, int n, bool *affected, bool created,
		 int checked, TimestampTz now, MemoryContext flipcxt)
{
	CondContext ctx;
	int			nmember = 0;
	int64	   *member = created ? NULL : memberships(contact_id, &nmember);
	bool	   *flipped = palloc0(sizeof(bool) * n);
	List	   *flips = NIL;

	condition_context_init(&ctx, contact_id, NULL, NULL);
	ctx.now = now;
	for (int i = 0; i < n; i++)
	{
		Segment    *seg = &segs[i];
		bool		need = affected[i];
		bool		was_in,
					now_in;

		for (int j = 0; j < seg->nref && !need; j++)
			if (seg->ref_index[j] >= 0 && flipped[seg->ref_index[j]])
				need = true;
		if (!need)
			continue;
		CHECK_FOR_INTERRUPTS();
		was_in = id_in(seg->id, member, nmember);
		now_in = condition_eval(seg->cond, &ctx);
		if (was_in != now_in && set_membership(seg, contact_id, now_in, now))
		{
			MemoryContext old = MemoryContextSwitchTo(flipcxt);
			Flip	   *f = palloc(sizeof(Flip));

			f->name = pstrdup(seg->name);
			f->entered = now_in;
			flips = lappend(flips, f);
			MemoryContextSwitchTo(old);
			flipped[i] = true;
		}
		if (seg->has_clock || i == checked)
			set_check(seg, contact_id, &ctx, !created);
	}
	return flips;
}

/* Fires segment_entered / segment_exited for each flip, in order. */
static void
fire_flips(int64 contact_id, List *flips)
{
	ListCell   *lc;

	foreach(lc, flips)
	{
		Flip	   *f = (Flip *) lfirst(lc);

		automation_fire(f->entered ? MEISA_TRIGGER_SEGMENT_ENTERED : MEISA_TRIGGER_SEGMENT_EXITED,
						contact_id, f->name, NULL, NULL);
	}
}

/* Marks the segments reading a tag of the change set's tags.added / tags.removed. */
static void
mark_tags(Jsonb *changes, const char *side, bool *affected)
{
	JsonbValue	tags,
				list,
				v;
	JsonbIterator *it;
	JsonbIteratorToken r;

	if (getKeyJsonValueFromContainer(&changes->root, "tags", 4, &tags) == NULL ||
		tags.type != jbvBinary || !JsonContainerIsObject(tags.val.binary.data) ||
		getKeyJsonValueFromContainer(tags.val.binary.data, side, strlen(side), &list) == NULL ||
		list.type != jbvBinary || !JsonContainerIsArray(list.val.binary.data))
		return;
	it = JsonbIteratorInit(list.val.binary.data);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (r == WJB_ELEM && v.type == jbvString)
			segment_cache_mark('t', pnstrdup(v.val.string.val, v.val.string.len), affected);
}

/* Marks the segments a change set can change: each changed field and tag, updated_at. */
static bool
mark_changes(Jsonb *changes, bool *affected, int n)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken r;
	bool		any = false;

	if (changes == NULL || !JB_ROOT_IS_OBJECT(changes))
		return false;
	it = JsonbIteratorInit(&changes->root);
	while ((r = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (r != WJB_KEY)
			continue;
		segment_cache_mark('f', pnstrdup(v.val.string.val, v.val.string.len), affected);
	}
	mark_tags(changes, "added", affected);
	mark_tags(changes, "removed", affected);
	segment_cache_mark_every_write(affected);
	for (int i = 0; i < n; i++)
		any |= affected[i];
	return any;
}

/*
 * The segments hook (common/hooks.c): a contact was written ('changes' its
 * change set, 'created' when new) or recorded the event 'event'.
 */
static void
segments_changed(int64 contact_id, Jsonb *changes, bool created, const char *event)
{
	Segment    *segs;
	int			n;
	bool	   *affected;
	bool		any = false;
	List	   *flips;
	Oid			saved_uid;
	int			saved_sec;
	MemoryContext callercxt = CurrentMemoryContext;

	segs = segment_cache_get(&n);
	if (n == 0)
		return;
	affected = palloc0(sizeof(bool) * n);
	if (created)
	{
		memset(affected, true, sizeof(bool) * n);
		any = true;
	}
	else if (event != NULL)
	{
		segment_cache_mark('e', event, affected);
		for (int i = 0; i < n; i++)
			any |= affected[i];
	}
	else
		any = mark_changes(changes, affected, n);
	if (!any)
		return;

	/* the maintenance acts as the owner of the segments, whoever wrote */
	GetUserIdAndSecContext(&saved_uid, &saved_sec);
	SetUserIdAndSecContext(segment_cache_owner(), saved_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	if (event != NULL && !created)
	{
		/* an event does not write the contact: serialise with its writers */
		Datum		arg = Int64GetDatum(contact_id);

		run_plan(PLAN_LOCK_CONTACT, &arg);
	}
	flips = maintain(contact_id, segs, n, affected, created, -1, condition_now(), callercxt);
	SPI_finish();
	SetUserIdAndSecContext(saved_uid, saved_sec);
	fire_flips(contact_id, flips);
}

/* A due check: its segment and contact. */
typedef struct DueCheck
{
	int64		segment_id;
	int64		contact_id;
} DueCheck;

/* Number of due checks locked and processed per query. */
#define CHECK_BATCH 500

/* Locks and reads up to CHECK_BATCH due checks at 'at' (SPI connected) into 'cxt'. */
static DueCheck *
due_checks(TimestampTz at, int *n, MemoryContext cxt)
{
	static SPIPlanPtr plan = NULL;
	Datum		arg = TimestampTzGetDatum(at);
	DueCheck   *due;

	if (plan == NULL)
	{
		Oid			t[1] = {TIMESTAMPTZOID};

		/* a contact being written is skipped: its writer or the next run sees it */
		plan = spi_keep_plan("SELECT k.segment_id, k.contact_id FROM meisa.segment_checks k"
							 " JOIN meisa.contacts c ON c.id OPERATOR(pg_catalog.=) k.contact_id"
							 " WHERE k.check_at OPERATOR(pg_catalog.<=) $1 ORDER BY k.check_at"
							 " LIMIT " CppAsString2(CHECK_BATCH)
							 " FOR UPDATE OF k SKIP LOCKED FOR NO KEY UPDATE OF c SKIP LOCKED", 1, t);
	}
	if (SPI_execute_plan(plan, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "meisa: could not read the due segment checks");
	*n = (int) SPI_processed;
	due = MemoryContextAlloc(cxt, sizeof(DueCheck) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		due[i].segment_id = spi_get_int64(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, 0);
		due[i].contact_id = spi_get_int64(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, 0);
	}
	SPI_freetuptable(SPI_tuptable);
	return due;
}

/* Processes one due check at 'at'; returns the flips to fire (in 'cxt'). */
static List *
run_check(const DueCheck *dc, TimestampTz at, MemoryContext cxt)
{
	Segment    *segs;
	int			n,
				pos = -1;
	bool	   *affected;

	segs = segment_cache_get(&n);
	for (int i = 0; i < n; i++)
		if (segs[i].id == dc->segment_id)
			pos = i;
	if (pos < 0)
	{
		/* the segment is disabled or gone: nothing to check */
		Datum		v[2] = {Int64GetDatum(dc->segment_id), Int64GetDatum(dc->contact_id)};

		run_plan(PLAN_CHECK_DROP, v);
		return NIL;
	}
	affected = palloc0(sizeof(bool) * n);
	affected[pos] = true;
	return maintain(dc->contact_id, segs, n, affected, false, pos, at, cxt);
}

/*
 * Processes the segment checks due at 'at' (batched, FOR UPDATE SKIP LOCKED),
 * clock tests evaluated at 'at'; returns how many were processed.  Every
 * processed check is removed or moved after 'at', so a run always ends.
 */
int64
segments_run_checks(TimestampTz at)
{
	int64		done = 0;
	Oid			saved_uid;
	int			saved_sec;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "meisa segment checks",
											  ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		MemoryContext spicxt;
		DueCheck   *due;
		int			n;
		List	   *fired = NIL;

		GetUserIdAndSecContext(&saved_uid, &saved_sec);
		SetUserIdAndSecContext(segment_cache_owner(), saved_sec | SECURITY_LOCAL_USERID_CHANGE);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "meisa: SPI_connect failed");
		spicxt = CurrentMemoryContext;
		forget_plans();
		due = due_checks(at, &n, cxt);
		for (int i = 0; i < n; i++)
		{
			List	   *flips;

			CHECK_FOR_INTERRUPTS();
			flips = run_check(&due[i], at, cxt);
			MemoryContextSwitchTo(cxt);
			fired = lappend(fired, flips);
			MemoryContextSwitchTo(spicxt);
		}
		SPI_finish();
		SetUserIdAndSecContext(saved_uid, saved_sec);
		for (int i = 0; i < n; i++)
			fire_flips(due[i].contact_id, (List *) list_nth(fired, i));
		done += n;
		MemoryContextSwitchTo(old);
		MemoryContextReset(cxt);
		if (n == 0)
			break;
	}
	MemoryContextDelete(cxt);
	return done;
}

/* The segments_watching hook: any segment enabled (loads the cache when stale). */
static bool
segments_enabled(void)
{
	int			n;

	segment_cache_get(&n);
	return n > 0;
}

/* Registers the maintenance hooks and the segment cache (module load). */
void
segment_maint_init(void)
{
	segment_cache_init();
	segments_changed_hook = segments_changed;
	segments_watching_hook = segments_enabled;
}
