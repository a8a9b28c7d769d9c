/*
 * backend_cache.c
 *		What the per-backend caches of stored rows share (the rule cache of
 *		automations, the segment cache): the relcache callback that stales a
 *		cache when its table changes (a statement trigger on the table
 *		invalidates its relcache entry, as pg_cron does for its job cache),
 *		finding the table and its owner, and loading a fresh copy so that an
 *		invalidation during the load, or an error in it, leaves it stale.
 */
#include "common/common.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* Relcache callback: a change of the cached table (or a reset) stales the cache. */
static void
backend_cache_callback(Datum arg, Oid relid)
{
	BackendCache *bc = (BackendCache *) DatumGetPointer(arg);

	if (relid == InvalidOid || relid == bc->relid)
		bc->valid = false;
}

/* Registers the invalidation callback of a cache (once per backend). */
void
backend_cache_register(BackendCache *bc)
{
	CacheRegisterRelcacheCallback(backend_cache_callback, PointerGetDatum(bc));
}

/* The role the cache's rules act as: the owner of the cached table. */
Oid
backend_cache_owner(const BackendCache *bc)
{
	return OidIsValid(bc->owner) ? bc->owner : GetUserId();
}

/*
 * Finds the table meisa.'relname' and its owner for the cache; false when
 * meisa is not installed.
 */
bool
backend_cache_relation(BackendCache *bc, const char *relname)
{
	Oid			nsp = get_namespace_oid("meisa", true);
	Oid			relid;
	HeapTuple	reltup;

	if (!OidIsValid(nsp))
		return false;
	relid = get_relname_relid(relname, nsp);
	if (!OidIsValid(relid))
		return false;
	reltup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(reltup))
		return false;
	bc->owner = ((Form_pg_class) GETSTRUCT(reltup))->relowner;
	ReleaseSysCache(reltup);
	bc->relid = relid;
	return true;
}

/*
 * Runs load() with the cache marked valid first: an invalidation arriving
 * while it reads marks it stale again, so the copy is never valid over a
 * newer change.  An error, or load() returning NULL (meisa not installed),
 * leaves it stale.  Returns what load() returned.
 */
void *
backend_cache_load(BackendCache *bc, void *(*load) (void))
{
	void	   *volatile fresh = NULL;

	bc->valid = true;
	PG_TRY();
	{
		fresh = load();
	}
	PG_CATCH();
	{
		bc->valid = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (fresh == NULL)
		bc->valid = false;
	return fresh;
}
