/*
 * automation_cache.c
 *		The per-backend rule cache: the enabled automations compiled once, in
 *		a long-lived memory context, grouped by trigger in run order.  A
 *		statement trigger on meisa.automations invalidates the relcache entry
 *		of the table (as pg_cron does for its job cache); the callback
 *		(common/backend_cache.c) marks the cache stale and the next
 *		automation_fire() loads it again.  Nothing is read from the table while the cache is
 *		valid.  A cache in use by a running automation_fire() (pinned) is kept
 *		until it is released, even when a newer one replaced it meanwhile.
 */
#include "automations/automations.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

typedef struct RuleCache
{
	MemoryContext cxt;
	Automation *by_trigger[MEISA_NTRIGGERS];
	int			count[MEISA_NTRIGGERS];
	int			pins;
} RuleCache;

static RuleCache *current = NULL;
static BackendCache cache;

/* Caches replaced while pinned, freed when their last pin goes. */
static List *stale = NIL;

/* Pins held by running automation_fire() calls, innermost last. */
#define MAX_PINS 256
static RuleCache *pinned[MAX_PINS];
static int	npinned = 0;

/* Registers the cache invalidation callback (once per backend). */
void
automation_cache_init(void)
{
	backend_cache_register(&cache);
}

/* Frees a cache now, or when its last pin goes. */
static void
cache_discard(RuleCache *rc)
{
	if (rc == NULL)
		return;
	if (rc->pins > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		stale = lappend(stale, rc);
		MemoryContextSwitchTo(old);
		return;
	}
	MemoryContextDelete(rc->cxt);
}

/* Reads and compiles the enabled automations; NULL when meisa is not installed. */
static void *
cache_load(void)
{
	MemoryContext cxt,
				old;
	RuleCache  *rc;
	int			cap[MEISA_NTRIGGERS];

	if (!backend_cache_relation(&cache, "automations"))
		return NULL;

	/*
	 * Built under the caller's context, so that an error while loading frees
	 * it; moved under TopMemoryContext once complete.
	 */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "meisa automation cache",
								ALLOCSET_DEFAULT_SIZES);
	rc = MemoryContextAllocZero(cxt, sizeof(RuleCache));
	rc->cxt = cxt;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	if (SPI_execute("SELECT id, name, trigger, trigger_filter, conditions, actions "
					"FROM meisa.automations WHERE enabled ORDER BY position, id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "meisa: could not read meisa.automations");
	old = MemoryContextSwitchTo(cxt);
	for (int t = 0; t < MEISA_NTRIGGERS; t++)
	{
		cap[t] = 4;
		rc->by_trigger[t] = palloc0(sizeof(Automation) * cap[t]);
	}
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Automation	a;
		char	   *trigger = SPI_getvalue(tup, desc, 3);
		char	   *filter = SPI_getvalue(tup, desc, 4);
		Datum		cond = SPI_getbinval(tup, desc, 5, &isnull);
		Jsonb	   *conditions = isnull ? NULL : DatumGetJsonbP(cond);
		Datum		acts = SPI_getbinval(tup, desc, 6, &isnull);
		Jsonb	   *actions = isnull ? NULL : DatumGetJsonbP(acts);
		char	   *error;
		int			t;

		memset(&a, 0, sizeof(a));
		a.id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		a.name = SPI_getvalue(tup, desc, 2);
		if (!automation_compile(&a, trigger, filter, conditions, actions, &error))
			a.broken = error;
		if (!automation_trigger_from_name(trigger, &a.trigger))
			continue;
		t = (int) a.trigger;
		if (rc->count[t] == cap[t])
		{
			cap[t] *= 2;
			rc->by_trigger[t] = repalloc(rc->by_trigger[t], sizeof(Automation) * cap[t]);
		}
		rc->by_trigger[t][rc->count[t]++] = a;
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
	MemoryContextSetParent(cxt, TopMemoryContext);
	return rc;
}

/*
 * The enabled automations of a trigger in run order (position, id), from the
 * per-backend cache; *n is their number.  Loads the cache when invalid.  When
 * *n > 0 the cache is pinned until automation_cache_release().
 */
Automation *
automation_cache_get(MeisaTrigger trigger, int *n)
{
	*n = 0;
	if (!cache.valid || current == NULL)
	{
		RuleCache  *fresh = backend_cache_load(&cache, cache_load);

		if (fresh == NULL)
			return NULL;
		cache_discard(current);
		current = fresh;
	}
	if ((int) trigger < 0 || (int) trigger >= MEISA_NTRIGGERS)
		return NULL;
	if (current->count[trigger] == 0)
		return NULL;
	if (npinned >= MAX_PINS)
		elog(ERROR, "meisa: automations nested too deeply");
	current->pins++;
	pinned[npinned++] = current;
	*n = current->count[trigger];
	return current->by_trigger[trigger];
}

/* Frees stale caches that are no longer pinned. */
static void
free_unpinned_stale(void)
{
	ListCell   *lc;
	List	   *keep = NIL;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	foreach(lc, stale)
	{
		RuleCache  *rc = (RuleCache *) lfirst(lc);

		if (rc->pins > 0)
			keep = lappend(keep, rc);
		else
			MemoryContextDelete(rc->cxt);
	}
	list_free(stale);
	stale = keep;
	MemoryContextSwitchTo(old);
}

/* Unpins the cache pinned by automation_cache_get(). */
void
automation_cache_release(void)
{
	RuleCache  *rc;

	if (npinned == 0)
		return;
	rc = pinned[--npinned];
	rc->pins--;
	if (rc->pins == 0 && rc != current)
		free_unpinned_stale();
}

/* Forgets pins after an aborted transaction. */
void
automation_cache_reset_pins(void)
{
	while (npinned > 0)
		pinned[--npinned]->pins--;
	if (stale != NIL)
		free_unpinned_stale();
}

/* The role automations act as (the owner of meisa.automations). */
Oid
automation_cache_owner(void)
{
	return backend_cache_owner(&cache);
}
