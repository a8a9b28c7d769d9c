/*
 * automation.c
 *		The automation engine: automation_fire() (through the hook this
 *		file sets, common/hooks.c) runs the enabled automations
 *		of a trigger whose filter and conditions match, each matched one's
 *		actions in a subtransaction of its own (a failing automation is
 *		recorded as 'failed' and never fails the caller's write), bounds
 *		cascades (once per automation and contact per top-level call, depth
 *		capped by meisa.max_cascade_depth; hitting the bound is recorded as a
 *		'stopped' run) and records every matched run in meisa.automation_runs.
 *		Rules come from a per-backend cache (automation_cache.c).
 */
#include "automations/automations.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

static void automation_fire_rules(MeisaTrigger trigger, int64 contact_id,
								  const char *filter, Jsonb *changes,
								  Jsonb *properties);
static bool automation_in_memory_rules(int64 contact_id, spi_step_fn fire,
									   void *arg, List **runs);
static void automation_write_runs(List *runs);

/* meisa.max_cascade_depth */
static int	max_cascade_depth = 8;

/* Nesting of running actions: 0 outside any automation's actions. */
static int	fire_depth = 0;

/* The contact whose write's cascade runs in memory (0 = none), and its runs. */
static int64 in_memory_contact = 0;
static List *in_memory_runs = NIL;
static MemoryContext in_memory_cxt = NULL;

/* (automation, contact) pairs that ran in the current top-level call. */
typedef struct RanKey
{
	int64		automation_id;
	int64		contact_id;
} RanKey;
static RanKey *ran = NULL;
static int	nran = 0;
static int	ran_cap = 0;

/* Forgets the cascade state when a transaction ends. */
static void
automation_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PRE_PREPARE:
		case XACT_EVENT_COMMIT:
			fire_depth = 0;
			nran = 0;
			in_memory_contact = 0;
			automation_cache_reset_pins();
			break;
		default:
			break;
	}
}

/* Defines the automation settings and registers the engine's callbacks. */
void
automation_init(void)
{
	DefineCustomIntVariable("meisa.max_cascade_depth",
							"Maximum depth of automations fired by other automations' actions.",
							"A run that would go deeper is recorded with status 'stopped'.",
							&max_cascade_depth,
							8, 1, 100,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	RegisterXactCallback(automation_xact_callback, NULL);
	automation_actions_init();
	automation_cache_init();
	automation_fire_hook = automation_fire_rules;
	automation_in_memory_hook = automation_in_memory_rules;
	automation_runs_write_hook = automation_write_runs;
}

/* True when the automation already ran for the contact in this call. */
static bool
already_ran(int64 automation_id, int64 contact_id)
{
	for (int i = 0; i < nran; i++)
		if (ran[i].automation_id == automation_id && ran[i].contact_id == contact_id)
			return true;
	return false;
}

/* Remembers that the automation ran for the contact in this call. */
static void
mark_ran(int64 automation_id, int64 contact_id)
{
	if (nran == ran_cap)
	{
		ran_cap = ran_cap ? ran_cap * 2 : 16;
		ran = ran ? repalloc(ran, sizeof(RanKey) * ran_cap)
			: MemoryContextAlloc(TopMemoryContext, sizeof(RanKey) * ran_cap);
	}
	ran[nran].automation_id = automation_id;
	ran[nran].contact_id = contact_id;
	nran++;
}

/* One run kept by an in-memory cascade, written after its contact. */
typedef struct KeptRun
{
	int64		automation_id;
	int64		contact_id;
	MeisaTrigger trigger;
	char	   *status;
	char	   *error;
	int			actions_done;
	int			depth;
} KeptRun;

/* Inserts one row into meisa.automation_runs. */
static void
insert_run(const KeptRun *r)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	if (plan == NULL)
	{
		Oid			types[7] = {INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID};

		plan = spi_keep_plan("INSERT INTO meisa.automation_runs "
							 "(automation_id, contact_id, trigger, status, error, actions_done, depth) "
							 "VALUES ($1, $2, $3, $4, $5, $6, $7)", 7, types);
	}
	values[0] = Int64GetDatum(r->automation_id);
	values[1] = Int64GetDatum(r->contact_id);
	if (r->contact_id <= 0)
		nulls[1] = 'n';
	values[2] = CStringGetTextDatum(automation_trigger_name(r->trigger));
	values[3] = CStringGetTextDatum(r->status);
	if (r->error)
		values[4] = CStringGetTextDatum(r->error);
	else
		nulls[4] = 'n';
	values[5] = Int32GetDatum(r->actions_done);
	values[6] = Int32GetDatum(r->depth);
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "meisa: could not record an automation run");
	SPI_finish();
}

/* Records a run in meisa.automation_runs, or keeps it when the cascade runs in memory. */
static void
record_run(const Automation *a, int64 contact_id, MeisaTrigger trigger,
		   const char *status, const char *error, int actions_done, int depth)
{
	KeptRun		r = {a->id, contact_id, trigger, (char *) status, (char *) error,
	actions_done, depth};

	if (in_memory_contact != 0 && contact_id == in_memory_contact)
	{
		MemoryContext old = MemoryContextSwitchTo(in_memory_cxt);
		KeptRun    *k = palloc(sizeof(KeptRun));

		*k = r;
		k->status = pstrdup(status);
		k->error = error ? pstrdup(error) : NULL;
		in_memory_runs = lappend(in_memory_runs, k);
		MemoryContextSwitchTo(old);
		return;
	}
	insert_run(&r);
}

/* What run_action_list runs, and what it leaves. */
typedef struct ActionRun
{
	const Automation *a;
	int64		contact_id;
	Jsonb	   *properties;
	int			done;			/* actions that completed */
	int			saved_depth;	/* fire_depth before the run */
	int			saved_nran;		/* nran before the run */
} ActionRun;

/* Runs the automation's actions one after the other (a spi_run_step step). */
static void
run_action_list(void *arg)
{
	ActionRun  *r = (ActionRun *) arg;

	fire_depth++;
	/* actions see everything written so far, like a new statement */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	for (int i = 0; i < r->a->nactions; i++)
	{
		automation_run_action(r->a, &r->a->actions[i], r->contact_id, r->properties);
		r->done++;
	}
	PopActiveSnapshot();
	fire_depth--;
}

/*
 * Forgets what a rolled-back run_action_list kept in memory: the runs its
 * cascades marked "ran" did not happen (an automation marked there would
 * otherwise be "stopped" for the rest of the call without ever having
 * acted).  The NOTIFY owed for its rolled-back notifications rows goes with
 * it in the subxact callback.
 */
static void
undo_action_list(void *arg)
{
	ActionRun  *r = (ActionRun *) arg;

	fire_depth = r->saved_depth;
	nran = r->saved_nran;
}

/*
 * Runs the actions of a matched automation in a subtransaction.  Returns
 * the error message when one failed (everything it did is rolled back), or
 * NULL; *done is the number of actions that completed.
 */
static char *
run_actions(const Automation *a, int64 contact_id, Jsonb *properties, int *done)
{
	ActionRun	r = {a, contact_id, properties, 0, fire_depth, nran};
	ErrorData  *edata;

	/* a cancel or timeout is the caller's, not the automation's: rethrown */
	edata = spi_run_step(run_action_list, undo_action_list, &r);
	*done = r.done;
	if (edata == NULL)
		return NULL;
	return psprintf("actions[%d]: %s", r.done, edata->message);
}

/*
 * Applies the actions of a matched automation to the contact whose write's
 * cascade runs in memory; NULL (no error).  An automation that does anything
 * else ends the in-memory cascade (an error caught by automation_in_memory).
 */
static char *
edit_in_memory(const Automation *a, int64 contact_id, int *done)
{
	for (int i = 0; i < a->nactions; i++)
		if (!automation_action_edits_contact(&a->actions[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("meisa: automation %s acts beyond its contact", a->name)));
	fire_depth++;
	for (int i = 0; i < a->nactions; i++)
	{
		automation_edit_contact(&a->actions[i], contact_id);
		(*done)++;
	}
	fire_depth--;
	return NULL;
}

/*
 * Runs the automations 'autos[0, n)' of a trigger whose filter and
 * conditions match, acting as the owner of the rules.
 */
static void
run_matching(const Automation *autos, int n, MeisaTrigger trigger,
			 int64 contact_id, const char *filter, Jsonb *changes,
			 Jsonb *properties)
{
	CondContext ctx;
	Oid			saved_uid;
	int			saved_sec;
	int			depth = fire_depth;
	bool		switched = false;

	if (depth == 0)
		nran = 0;
	condition_context_init(&ctx, contact_id, changes, properties);

	for (int i = 0; i < n; i++)
	{
		const Automation *a = &autos[i];
		char	   *error;
		int			done = 0;

		if (a->filter && (filter == NULL || strcmp(a->filter, filter) != 0))
			continue;
		if (!switched)
		{
			/* automations act as the owner of the rules, whoever wrote */
			GetUserIdAndSecContext(&saved_uid, &saved_sec);
			SetUserIdAndSecContext(automation_cache_owner(),
								   saved_sec | SECURITY_LOCAL_USERID_CHANGE);
			switched = true;
		}
		if (a->broken)
		{
			record_run(a, contact_id, trigger, "failed",
					   psprintf("invalid automation: %s", a->broken), 0, depth);
			continue;
		}
		if (!condition_eval(a->cond, &ctx))
			continue;
		if (depth >= max_cascade_depth)
		{
			record_run(a, contact_id, trigger, "stopped",
					   psprintf("cascade depth limit reached (meisa.max_cascade_depth = %d)",
								max_cascade_depth), 0, depth);
			continue;
		}
		if (already_ran(a->id, contact_id))
		{
			record_run(a, contact_id, trigger, "stopped",
					   "already ran for this contact in this call (cascade bound)", 0, depth);
			continue;
		}
		mark_ran(a->id, contact_id);
		if (in_memory_contact != 0 && contact_id == in_memory_contact)
			error = edit_in_memory(a, contact_id, &done);
		else
			error = run_actions(a, contact_id, properties, &done);
		record_run(a, contact_id, trigger, error ? "failed" : "done", error, done, depth);
		/* the actions may have changed the contact: read it again if needed */
		ctx.contact_loaded = false;
		ctx.contact = NULL;
	}
	/* on an error, aborting the (sub)transaction restores the user */
	if (switched)
		SetUserIdAndSecContext(saved_uid, saved_sec);
}

/*
 * Runs the enabled automations whose trigger (and trigger_filter, compared
 * with 'filter') matches.  Never throws for a failing automation.  Reached
 * through automation_fire_hook (common/hooks.c).
 */
static void
automation_fire_rules(MeisaTrigger trigger, int64 contact_id, const char *filter,
				Jsonb *changes, Jsonb *properties)
{
	Automation *autos;
	int			n;

	autos = automation_cache_get(trigger, &n);
	if (n == 0)
		return;

	/*
	 * The pin goes even when something fails here (recording a run, reading
	 * the contact): the caller may catch the error and write again, and a
	 * lost pin would stay until the transaction ends.
	 */
	PG_TRY();
	{
		run_matching(autos, n, trigger, contact_id, filter, changes, properties);
	}
	PG_FINALLY();
	{
		automation_cache_release();
	}
	PG_END_TRY();
}

/* What automation_in_memory_rules runs, and what it restores on failure. */
typedef struct InMemory
{
	spi_step_fn fire;
	void	   *arg;
	int			saved_depth;
	int			saved_nran;
} InMemory;

/* Runs the write's fire step (a spi_run_step step). */
static void
in_memory_step(void *arg)
{
	InMemory   *im = (InMemory *) arg;

	im->fire(im->arg);
}

/* Forgets what a failed in-memory cascade marked (a spi_run_step undo). */
static void
in_memory_undo(void *arg)
{
	InMemory   *im = (InMemory *) arg;

	fire_depth = im->saved_depth;
	nran = im->saved_nran;
}

/*
 * automation_in_memory_hook: runs fire(arg) with the actions on contact
 * 'contact_id' applied in memory and its runs kept in *runs (see
 * automation_in_memory); false when that could not be.
 */
static bool
automation_in_memory_rules(int64 contact_id, spi_step_fn fire, void *arg, List **runs)
{
	InMemory	im = {fire, arg, fire_depth, nran};
	ErrorData  *volatile edata = NULL;

	*runs = NIL;
	if (in_memory_contact != 0)
		return false;
	in_memory_contact = contact_id;
	in_memory_runs = NIL;
	in_memory_cxt = CurrentMemoryContext;
	PG_TRY();
	{
		edata = spi_run_step(in_memory_step, in_memory_undo, &im);
	}
	PG_FINALLY();
	{
		in_memory_contact = 0;
	}
	PG_END_TRY();
	if (edata != NULL)
	{
		FreeErrorData(edata);
		list_free_deep(in_memory_runs);
		in_memory_runs = NIL;
		return false;
	}
	*runs = in_memory_runs;
	in_memory_runs = NIL;
	return true;
}

/* automation_runs_write_hook: writes the runs an in-memory cascade kept, as the rules' owner. */
static void
automation_write_runs(List *runs)
{
	Oid			saved_uid;
	int			saved_sec;
	ListCell   *lc;

	GetUserIdAndSecContext(&saved_uid, &saved_sec);
	SetUserIdAndSecContext(automation_cache_owner(), saved_sec | SECURITY_LOCAL_USERID_CHANGE);
	foreach(lc, runs)
		insert_run((KeptRun *) lfirst(lc));
	SetUserIdAndSecContext(saved_uid, saved_sec);
}
