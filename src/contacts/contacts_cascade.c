/*
 * contacts_cascade.c
 *		The automations of a contact write, run in memory so the write
 *		happens once: the BEFORE trigger fires them against the row about to
 *		be written, and when every automation that matches, down the
 *		cascade, only changes this contact (add_tag, remove_tag, set_field)
 *		their changes go into that row, each with the change set and the
 *		automations it causes exactly as the UPDATE it stands for would have
 *		had.  The AFTER trigger then writes the activity rows in one
 *		statement and the automation runs kept.  When anything else matches
 *		(or anything fails), nothing is kept and the AFTER trigger fires the
 *		automations after the write as before.
 *
 *		A cascade kept by a BEFORE trigger waits in a list, by contact id,
 *		for its AFTER trigger (a statement writing several rows runs every
 *		BEFORE trigger first; at most MAX_KEPT wait); it is used only when
 *		the row written is the one the cascade left.
 */
#include "contacts/contacts_write.h"

#include "access/xact.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

/* One write whose cascade runs, or ran, in memory. */
typedef struct Cascade
{
	int64		id;
	bool		is_update;
	MemoryContext cxt;			/* everything below, dropped with the cascade */
	TupleDesc	desc;
	ContactAttrs a;
	HeapTuple	old;			/* the row before the write (NULL = insert) */
	HeapTuple	first;			/* the row the statement wrote, normalised */
	HeapTuple	cur;			/* with every change of the cascade so far */
	Jsonb	   *changes;		/* the statement's own change set */
	List	   *kinds;			/* activity rows: kind (text datum) ... */
	List	   *details;		/* ... and change set (jsonb datum) */
	List	   *runs;			/* automation runs kept (the engine's) */
} Cascade;

/*
 * Most cascades kept at once: the AFTER triggers of a statement run after
 * all its rows are written, so a statement writing many rows would keep
 * them all; beyond this many its rows fire their automations after the
 * write.
 */
#define MAX_KEPT 16

/* The cascade running now (inside automation_in_memory), or NULL. */
static Cascade *running = NULL;

/* Cascades kept for their AFTER trigger, and the transaction they belong to. */
static List *kept = NIL;
static LocalTransactionId kept_lxid = InvalidLocalTransactionId;

/* The kept list of this transaction (a former transaction's is gone). */
static List **
kept_list(void)
{
	if (kept_lxid != MyProc->lxid)
	{
		kept = NIL;
		kept_lxid = MyProc->lxid;
	}
	return &kept;
}

/* Takes the kept cascade of contact 'id' out of the list; NULL when none. */
static Cascade *
kept_take(int64 id)
{
	List	  **l = kept_list();
	ListCell   *lc;

	foreach(lc, *l)
	{
		Cascade    *c = (Cascade *) lfirst(lc);

		if (c->id == id)
		{
			*l = foreach_delete_current(*l, lc);
			return c;
		}
	}
	return NULL;
}

/* Forgets a cascade and everything it holds. */
static void
cascade_drop(Cascade *c)
{
	if (c != NULL)
		MemoryContextDelete(c->cxt);
}

/* True when no trigger but meisa's own sees a row write of the relation. */
static bool
only_meisa_triggers(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;
	int			n = 0;

	if (td == NULL)
		return false;
	for (int i = 0; i < td->numtriggers; i++)
	{
		Trigger    *t = &td->triggers[i];

		if (t->tgisinternal || t->tgenabled == TRIGGER_DISABLED ||
			!TRIGGER_FOR_ROW(t->tgtype) ||
			!(TRIGGER_FOR_INSERT(t->tgtype) || TRIGGER_FOR_UPDATE(t->tgtype)))
			continue;
		n++;
	}
	return n == 2;				/* contacts_normalize and contacts_changes */
}

/* Appends an activity row of the cascade (in its context). */
static void
add_activity(Cascade *c, const char *kind, Jsonb *changes)
{
	c->kinds = lappend(c->kinds, DatumGetPointer(CStringGetTextDatum(kind)));
	c->details = lappend(c->details, changes);
}

/* Fires the automations of the statement's own write (an automation_in_memory step). */
static void
fire_first(void *arg)
{
	Cascade    *c = (Cascade *) arg;
	WriteChanges wc;

	if (write_changes(c->desc, &c->a, c->old, c->first, &wc))
		write_fire(c->id, c->is_update, &wc);
}

/*
 * BEFORE trigger: runs the automations of the write of 'newtup' in memory
 * when every one that matches, down the cascade, only changes this contact;
 * returns the row with their changes (or 'newtup' as it was).
 */
HeapTuple
cascade_in_memory(Relation rel, const ContactAttrs *a, HeapTuple oldtup, HeapTuple newtup)
{
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext cxt;
	TupleDesc	desc = rel->rd_att;
	WriteChanges wc;
	Cascade    *c;
	bool		isnull;
	bool		ok = false;
	int64		id = DatumGetInt64(heap_getattr(newtup, a->id, desc, &isnull));

	cascade_drop(kept_take(id));
	/* a statement writing many rows keeps a few: the rest go the usual way */
	if (isnull || running != NULL || list_length(*kept_list()) >= MAX_KEPT ||
		!only_meisa_triggers(rel))
		return newtup;

	cxt = AllocSetContextCreate(TopTransactionContext, "meisa contact cascade",
								ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(cxt);
	c = palloc0(sizeof(Cascade));
	c->cxt = cxt;
	c->id = id;
	c->is_update = oldtup != NULL;
	c->desc = desc;
	c->a = *a;
	c->old = oldtup ? heap_copytuple(oldtup) : NULL;
	c->first = heap_copytuple(newtup);
	c->cur = c->first;
	if (write_changes(desc, a, c->old, c->first, &wc))
	{
		c->changes = wc.changes;
		/* a creation is no activity row: meisa.contact_activity derives it */
		if (c->is_update || creation_stored())
			add_activity(c, c->is_update ? "updated" : "created", wc.changes);
		running = c;
		PG_TRY();
		{
			ok = automation_in_memory(id, fire_first, c, &c->runs);
		}
		PG_FINALLY();
		{
			running = NULL;
		}
		PG_END_TRY();
	}
	MemoryContextSwitchTo(callercxt);
	if (!ok)
	{
		MemoryContextDelete(cxt);
		return newtup;
	}
	MemoryContextSwitchTo(TopTransactionContext);
	*kept_list() = lappend(*kept_list(), c);
	MemoryContextSwitchTo(callercxt);
	return c->cur == c->first ? newtup : heap_copytuple(c->cur);
}

/* True when two rows of the relation have the same values in every column. */
static bool
same_row(TupleDesc desc, HeapTuple x, HeapTuple y)
{
	if (x == NULL || y == NULL)
		return x == y;
	for (int att = 1; att <= desc->natts; att++)
		if (!TupleDescAttr(desc, att - 1)->attisdropped && column_changed(desc, x, y, att))
			return false;
	return true;
}

/*
 * AFTER trigger: when the BEFORE trigger ran this write's cascade in memory
 * and the row written is the one it left, writes the cascade's activity rows
 * and automation runs (as 'owner') and returns true.
 */
bool
cascade_written(int64 id, TupleDesc desc, HeapTuple oldtup, HeapTuple newtup, Oid owner)
{
	Cascade    *c = kept_take(id);
	Oid			save_userid;
	int			save_sec;
	int			n;
	Datum	   *kinds,
			   *details;

	if (c == NULL)
		return false;
	if (!same_row(desc, c->old, oldtup) || !same_row(desc, c->cur, newtup))
	{
		cascade_drop(c);
		return false;
	}
	write_capture(id, c->is_update, c->changes);

	GetUserIdAndSecContext(&save_userid, &save_sec);
	if (save_userid != owner)
		SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	n = list_length(c->kinds);
	if (n == 0)
	{
		automation_runs_write(c->runs);
		cascade_drop(c);
		return true;
	}
	kinds = palloc(sizeof(Datum) * n);
	details = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		kinds[i] = PointerGetDatum(list_nth(c->kinds, i));
		details[i] = PointerGetDatum(list_nth(c->details, i));
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	write_activity(id, n, kinds, details);
	SPI_finish();
	if (save_userid != owner)
		SetUserIdAndSecContext(save_userid, save_sec);

	automation_runs_write(c->runs);
	cascade_drop(c);
	return true;
}

/* The new tags of an add_tag/remove_tag edit, or NULL when it changes nothing. */
static Datum
edited_tags(Cascade *c, ContactEdit kind, const char *tag, bool *changed)
{
	bool		isnull;
	Datum		d = heap_getattr(c->cur, c->a.tags, c->desc, &isnull);
	Datum		t = CStringGetTextDatum(tag);
	Datum	   *elems = NULL;
	int			n = 0;
	ArrayType  *arr;
	ArrayType  *norm;
	bool		present;

	*changed = false;
	if (isnull)
		return (Datum) 0;		/* "tag = ANY (NULL)" is NULL: the UPDATE matches no row */
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, NULL, &n);
	present = text_in(t, elems, n);
	*changed = (kind == CONTACT_EDIT_ADD_TAG) ? !present : present;
	if (!*changed)
		return (Datum) 0;
	/* what the action's UPDATE computes: array_append / array_remove */
	if (kind == CONTACT_EDIT_ADD_TAG)
	{
		Datum	   *more = palloc(sizeof(Datum) * (n + 1));

		memcpy(more, elems, sizeof(Datum) * n);
		more[n] = t;
		arr = construct_array(more, n + 1, TEXTOID, -1, false, TYPALIGN_INT);
	}
	else
	{
		int			m = 0;

		for (int i = 0; i < n; i++)
			if (!text_in(elems[i], &t, 1))
				elems[m++] = elems[i];
		arr = m > 0 ? construct_array(elems, m, TEXTOID, -1, false, TYPALIGN_INT)
			: construct_empty_array(TEXTOID);
	}
	norm = normalize_tags(arr);
	return PointerGetDatum(norm ? norm : arr);
}

/* The new custom_fields of a set_field edit, or NULL when it changes nothing. */
static Datum
edited_fields(Cascade *c, ArrayType *remove, Jsonb *set, bool *changed)
{
	bool		isnull;
	Datum		d = heap_getattr(c->cur, c->a.custom_fields, c->desc, &isnull);
	Datum		n;
	Jsonb	   *cf;

	*changed = false;
	if (isnull)
		return (Datum) 0;		/* NULL - x || y is NULL: the UPDATE matches no row */
	n = DirectFunctionCall2(jsonb_delete_array, d, PointerGetDatum(remove));
	n = DirectFunctionCall2(jsonb_concat, n, JsonbPGetDatum(set));
	if (!DatumGetBool(DirectFunctionCall2(jsonb_ne, d, n)))
		return (Datum) 0;
	cf = DatumGetJsonbP(n);
	if (JB_ROOT_IS_SCALAR(cf))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"custom_fields\" must be a JSON object")));
	custom_fields_check(&cf->root, false, "custom_fields");
	*changed = true;
	return n;
}

/*
 * Applies an action to the row of contact 'contact_id', whose write's
 * cascade runs in memory; see contacts.h.
 */
void
contact_cascade_edit(int64 contact_id, ContactEdit kind, const char *tag,
					 ArrayType *remove, Jsonb *set)
{
	Cascade    *c = running;
	MemoryContext old;
	Datum		values[2];
	int			cols[2];
	bool		nulls[2] = {false, false};
	bool		changed;
	HeapTuple	prev;
	WriteChanges wc;

	if (c == NULL || c->id != contact_id)
		elog(ERROR, "meisa: no in-memory write of contact " INT64_FORMAT, contact_id);
	old = MemoryContextSwitchTo(c->cxt);
	if (kind == CONTACT_EDIT_SET_FIELD)
	{
		values[0] = edited_fields(c, remove, set, &changed);
		cols[0] = c->a.custom_fields;
	}
	else
	{
		values[0] = edited_tags(c, kind, tag, &changed);
		cols[0] = c->a.tags;
	}
	if (!changed)
	{
		MemoryContextSwitchTo(old);
		return;
	}
	/* updated_at follows the change, as the BEFORE trigger sets it */
	values[1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	cols[1] = c->a.updated_at;
	prev = c->cur;
	c->cur = heap_modify_tuple_by_cols(prev, c->desc, 2, cols, values, nulls);
	if (!write_changes(c->desc, &c->a, prev, c->cur, &wc))
	{
		MemoryContextSwitchTo(old);
		return;
	}
	add_activity(c, "updated", wc.changes);
	MemoryContextSwitchTo(old);
	write_fire(contact_id, true, &wc);
}

/* The contact data (as contact_data_jsonb) of a contact whose cascade runs in memory, else NULL. */
Jsonb *
contact_cascade_data(int64 contact_id)
{
	Cascade    *c = running;

	if (c == NULL || c->id != contact_id)
		return NULL;
	return contact_data_tuple(c->cur, c->desc, &c->a);
}
