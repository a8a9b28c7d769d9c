/*
 * segment_cache.c
 *		The per-backend segment cache: the enabled segments of meisa.segments
 *		compiled once, every segment after the segments it reads, and an
 *		index from what a write can change (a field path of the change set,
 *		a tag added or removed, an event name) to the segments that read it, so that a write
 *		touching none of them evaluates nothing.  The row trigger of
 *		meisa.segments invalidates the table's relcache entry; the callback
 *		(common/backend_cache.c) marks the cache stale and the next
 *		segment_cache_get() loads it again.  A loaded cache is only freed by the next load: callers use it
 *		until they fire automations (which may write and reload), never after.
 */
#include "segments/segments.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

/* An index key: "f:PATH" for a field of the change set, "t:TAG", "e:EVENT". */
#define SEG_KEY_LEN 160

typedef struct SegIndexEntry
{
	char		key[SEG_KEY_LEN];
	List	   *positions;		/* segment positions (int) */
} SegIndexEntry;

typedef struct SegCache
{
	MemoryContext cxt;
	Segment    *segs;
	int			n;
	HTAB	   *index;
	List	   *every_write;	/* positions of segments reading updated_at */
} SegCache;

static SegCache *current = NULL;
static BackendCache cache;

/* Registers the cache invalidation callback (once per backend). */
void
segment_cache_init(void)
{
	backend_cache_register(&cache);
}

/* Collects what a rule reads, node by node. */
static void
collect_node(Segment *seg, const CondNode *node)
{
	List	  **names = NULL;

	if (node == NULL)
		return;
	check_stack_depth();
	for (int i = 0; i < node->nchildren; i++)
		collect_node(seg, node->children[i]);
	switch (node->kind)
	{
		case CK_FIELD:
			if (strcmp(node->path, "updated_at") == 0)
				seg->reads_updated_at = true;
			else if (strcmp(node->path, "tags") == 0)
				seg->reads_tags = true;
			else
				seg->fields = lappend(seg->fields, pstrdup(node->path));
			break;
		case CK_HAS_TAG:
		case CK_LACKS_TAG:
			names = &seg->tags;
			break;
		case CK_PERFORMED:
			names = &seg->events;
			break;
		case CK_IN_SEGMENT:
		case CK_NOT_IN_SEGMENT:
			names = &seg->refs;
			break;
		default:
			break;
	}
	if (names != NULL)
		*names = lappend(*names, pstrdup(node->name));
}

/* Fills what the compiled rule reads into seg (fields, tags, events, refs). */
void
segment_collect_reads(Segment *seg, const CondNode *node)
{
	seg->fields = seg->events = seg->refs = seg->tags = NIL;
	seg->reads_tags = seg->reads_updated_at = false;
	collect_node(seg, node);
	seg->has_clock = segment_has_clock(node);
}

/* Adds position 'pos' under "kind:name" to the index. */
static void
index_add(HTAB *index, char kind, const char *name, int pos)
{
	char		key[SEG_KEY_LEN];
	SegIndexEntry *e;
	bool		found;

	memset(key, 0, sizeof(key));
	snprintf(key, sizeof(key), "%c:%s", kind, name);
	e = hash_search(index, key, HASH_ENTER, &found);
	if (!found)
		e->positions = NIL;
	if (!list_member_int(e->positions, pos))
		e->positions = lappend_int(e->positions, pos);
}

/* The position of the segment named 'name' among segs[0, n), -1 when none. */
static int
position_of(Segment *segs, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(segs[i].name, name) == 0)
			return i;
	return -1;
}

/*
 * Orders segs so that every segment comes after the segments it reads
 * (Kahn's algorithm; the validator rejects cycles, a stored one keeps id
 * order for what is left).
 */
static Segment *
order_segments(Segment *segs, int n)
{
	Segment    *out = palloc0(sizeof(Segment) * Max(n, 1));
	bool	   *placed = palloc0(sizeof(bool) * Max(n, 1));
	int			done = 0;

	while (done < n)
	{
		bool		progress = false;

		for (int i = 0; i < n; i++)
		{
			ListCell   *lc;
			bool		ready = true;

			if (placed[i])
				continue;
			foreach(lc, segs[i].refs)
			{
				int			p = position_of(segs, n, (char *) lfirst(lc));

				if (p >= 0 && p != i && !placed[p])
					ready = false;
			}
			if (!ready)
				continue;
			out[done++] = segs[i];
			placed[i] = true;
			progress = true;
		}
		if (!progress)
			for (int i = 0; i < n; i++)
				if (!placed[i])
				{
					out[done++] = segs[i];
					placed[i] = true;
				}
	}
	return out;
}

/* Builds the index of the ordered segments and resolves their references. */
static void
build_index(SegCache *sc)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = SEG_KEY_LEN;
	ctl.entrysize = sizeof(SegIndexEntry);
	ctl.hcxt = sc->cxt;
	sc->index = hash_create("meisa segment index", 64, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (int i = 0; i < sc->n; i++)
	{
		Segment    *seg = &sc->segs[i];
		ListCell   *lc;
		int			k = 0;

		foreach(lc, seg->fields)
			index_add(sc->index, 'f', (char *) lfirst(lc), i);
		foreach(lc, seg->events)
			index_add(sc->index, 'e', (char *) lfirst(lc), i);
		foreach(lc, seg->tags)
			index_add(sc->index, 't', (char *) lfirst(lc), i);
		if (seg->reads_tags)
			index_add(sc->index, 'f', "tags", i);
		if (seg->reads_updated_at)
			sc->every_write = lappend_int(sc->every_write, i);
		seg->nref = list_length(seg->refs);
		seg->ref_index = palloc(sizeof(int) * Max(seg->nref, 1));
		foreach(lc, seg->refs)
			seg->ref_index[k++] = position_of(sc->segs, sc->n, (char *) lfirst(lc));
	}
}

/* Reads and compiles the enabled segments; NULL when meisa is not installed. */
static void *
cache_load(void)
{
	MemoryContext cxt,
				old;
	SegCache   *sc;
	Segment    *segs;
	int			n = 0;

	if (!backend_cache_relation(&cache, "segments"))
		return NULL;

	/* built under the caller's context (an error frees it), then kept */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "meisa segment cache",
								ALLOCSET_DEFAULT_SIZES);
	sc = MemoryContextAllocZero(cxt, sizeof(SegCache));
	sc->cxt = cxt;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	if (SPI_execute("SELECT id, name, conditions FROM meisa.segments WHERE enabled ORDER BY id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "meisa: could not read meisa.segments");
	old = MemoryContextSwitchTo(cxt);
	segs = palloc0(sizeof(Segment) * Max(SPI_processed, 1));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d = SPI_getbinval(tup, desc, 3, &isnull);
		char	   *error;
		Segment    *seg = &segs[n];

		seg->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		seg->name = SPI_getvalue(tup, desc, 2);
		seg->cond = isnull ? NULL : condition_compile(DatumGetJsonbP(d), "conditions", 0, &error);
		if (!isnull && seg->cond == NULL && error != NULL)
			continue;			/* a broken stored row (a restore): no members */
		segment_collect_reads(seg, seg->cond);
		n++;
	}
	sc->segs = order_segments(segs, n);
	sc->n = n;
	build_index(sc);
	MemoryContextSwitchTo(old);
	SPI_finish();
	MemoryContextSetParent(cxt, TopMemoryContext);
	return sc;
}

/*
 * The enabled segments, every segment after the segments it reads; *n their
 * number.  Loads the cache when stale.  Valid until the next call.
 */
Segment *
segment_cache_get(int *n)
{
	*n = 0;
	if (!cache.valid || current == NULL)
	{
		SegCache   *fresh = backend_cache_load(&cache, cache_load);

		if (fresh == NULL)
			return NULL;
		if (current != NULL)
			MemoryContextDelete(current->cxt);
		current = fresh;
	}
	*n = current->n;
	return current->segs;
}

/*
 * Marks in affected[] the segments (positions of the last segment_cache_get)
 * that read the key "f:PATH" or "e:NAME".
 */
void
segment_cache_mark(char kind, const char *name, bool *affected)
{
	char		key[SEG_KEY_LEN];
	SegIndexEntry *e;
	ListCell   *lc;

	if (current == NULL || strlen(name) + 3 > SEG_KEY_LEN)
		return;
	memset(key, 0, sizeof(key));
	snprintf(key, sizeof(key), "%c:%s", kind, name);
	e = hash_search(current->index, key, HASH_FIND, NULL);
	if (e != NULL)
		foreach(lc, e->positions)
			affected[lfirst_int(lc)] = true;
}

/* Marks the segments that every contact write can change (they read updated_at). */
void
segment_cache_mark_every_write(bool *affected)
{
	ListCell   *lc;

	if (current == NULL)
		return;
	foreach(lc, current->every_write)
		affected[lfirst_int(lc)] = true;
}

/* The role segment maintenance acts as (the owner of meisa.segments). */
Oid
segment_cache_owner(void)
{
	return backend_cache_owner(&cache);
}
