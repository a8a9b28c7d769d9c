/*
 * segment_admin.c
 *		The segments as the growth team manages them: the row validator of
 *		meisa.segments (the rule, the segments it reads, no cycle), the row
 *		trigger that rebuilds a segment's members with set-based SQL when it
 *		is created, enabled or changed (and the segments reading it after
 *		it), and the SQL functions meisa.segment_count,
 *		meisa.segment_preview and meisa.segment_mismatches.  A rebuild fires
 *		nothing and logs nothing.
 */
#include "segments/segments.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(meisa_segments_validate);
PG_FUNCTION_INFO_V1(meisa_segments_changed);
PG_FUNCTION_INFO_V1(meisa_segment_count);
PG_FUNCTION_INFO_V1(meisa_segment_preview);
PG_FUNCTION_INFO_V1(meisa_segment_mismatches);

/* A stored segment: its name, rule and the segments it reads. */
typedef struct StoredSegment
{
	int64		id;
	char	   *name;
	bool		enabled;
	Jsonb	   *conditions;
	List	   *refs;
} StoredSegment;

/* Every stored segment, with what it reads (SPI connected); *n their number. */
static StoredSegment *
stored_segments(int *n)
{
	StoredSegment *out;

	if (SPI_execute("SELECT id, name, enabled, conditions FROM meisa.segments ORDER BY id",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "meisa: could not read meisa.segments");
	*n = (int) SPI_processed;
	out = palloc0(sizeof(StoredSegment) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		char	   *error;
		Segment		reads;

		out[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		out[i].name = SPI_getvalue(tup, desc, 2);
		out[i].enabled = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		d = SPI_getbinval(tup, desc, 4, &isnull);
		out[i].conditions = isnull ? NULL : DatumGetJsonbPCopy(d);
		memset(&reads, 0, sizeof(reads));
		segment_collect_reads(&reads, condition_compile(out[i].conditions, "conditions", 0, &error));
		out[i].refs = reads.refs;
	}
	SPI_freetuptable(SPI_tuptable);
	return out;
}

/* The stored segment named 'name' among all[0, n), or NULL. */
static StoredSegment *
stored_by_name(StoredSegment *all, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(all[i].name, name) == 0)
			return &all[i];
	return NULL;
}

/* True when 'from' reads 'target', directly or through other segments. */
static bool
reads_segment(StoredSegment *all, int n, const char *from, const char *target, int depth)
{
	StoredSegment *s = stored_by_name(all, n, from);
	ListCell   *lc;

	if (s == NULL || depth > n)
		return false;
	foreach(lc, s->refs)
	{
		const char *r = (const char *) lfirst(lc);

		if (strcmp(r, target) == 0 || reads_segment(all, n, r, target, depth + 1))
			return true;
	}
	return false;
}

/*
 * The first segment the rule reads (in_segment / not_in_segment) that does
 * not exist, or NULL.
 */
const char *
segment_unknown_ref(const CondNode *node)
{
	Segment		reads;
	ListCell   *lc;
	const char *missing = NULL;

	memset(&reads, 0, sizeof(reads));
	segment_collect_reads(&reads, node);
	if (reads.refs == NIL)
		return NULL;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	foreach(lc, reads.refs)
	{
		Oid			t[1] = {TEXTOID};
		Datum		v[1] = {CStringGetTextDatum((char *) lfirst(lc))};

		if (SPI_execute_with_args("SELECT 1 FROM meisa.segments WHERE name OPERATOR(pg_catalog.=) $1",
								  1, t, v, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "meisa: could not read meisa.segments");
		if (SPI_processed == 0)
		{
			missing = (const char *) lfirst(lc);
			break;
		}
	}
	SPI_finish();
	return missing;
}

/* Raises the ERROR of an invalid segment row, naming the offending part. */
static void
segment_error(int code, const char *name, const char *detail) pg_attribute_noreturn();

static void
segment_error(int code, const char *name, const char *detail)
{
	ereport(ERROR,
			(errcode(code),
			 errmsg("invalid segment \"%s\": %s", name, detail),
			 errdetail("%s", detail),
			 errhint("See the segments documentation.")));
}

/* Checks the segments a new or changed row reads: they exist, no cycle. */
static void
check_segment_refs(int64 id, const char *name, const CondNode *node)
{
	Segment		reads;
	StoredSegment *all;
	int			n;
	ListCell   *lc;

	memset(&reads, 0, sizeof(reads));
	segment_collect_reads(&reads, node);
	if (reads.refs == NIL)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	all = stored_segments(&n);
	foreach(lc, reads.refs)
	{
		const char *r = (const char *) lfirst(lc);
		StoredSegment *s = stored_by_name(all, n, r);

		if (strcmp(r, name) == 0)
			segment_error(ERRCODE_INVALID_PARAMETER_VALUE, name,
						  psprintf("conditions: a segment cannot read itself (in_segment \"%s\")", r));
		if (s == NULL || s->id == id)
			segment_error(ERRCODE_UNDEFINED_OBJECT, name,
						  psprintf("conditions: no segment named \"%s\"", r));
		if (reads_segment(all, n, r, name, 0))
			segment_error(ERRCODE_INVALID_PARAMETER_VALUE, name,
						  psprintf("conditions: segment \"%s\" reads \"%s\", which reads it back (a cycle)",
								   name, r));
	}
	SPI_finish();
}

/* Rejects renaming or deleting a segment that another segment reads. */
static void
check_not_read(int64 id, const char *name, const char *doing)
{
	StoredSegment *all;
	int			n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	all = stored_segments(&n);
	for (int i = 0; i < n; i++)
	{
		ListCell   *lc;

		if (all[i].id == id)
			continue;
		foreach(lc, all[i].refs)
			if (strcmp((char *) lfirst(lc), name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
						 errmsg("cannot %s segment \"%s\": segment \"%s\" reads it", doing, name,
								all[i].name),
						 errhint("Change the conditions of segment \"%s\" first.", all[i].name)));
	}
	SPI_finish();
}

/*
 * meisa.segments_validate(): BEFORE INSERT OR UPDATE OR DELETE row trigger
 * that rejects an invalid segment (ERROR 22023 pointing at the offending
 * part of its conditions), a rule reading an unknown segment or itself, a
 * cycle, and renaming or deleting a segment another one reads.
 */
Datum
meisa_segments_validate(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	char	   *name;
	char	   *error;
	bool		isnull;
	Datum		d;
	CondNode   *node;
	int64		id;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "meisa.segments_validate() must be a BEFORE ROW trigger");
	desc = RelationGetDescr(td->tg_relation);
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		tuple = td->tg_trigtuple;
		if (!restore_mode())
			check_not_read(DatumGetInt64(trigger_row_value(tuple, desc, "id", &isnull)),
						   trigger_row_text(tuple, desc, "name"), "delete");
		return PointerGetDatum(tuple);
	}
	tuple = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	name = trigger_row_text(tuple, desc, "name");
	if (name == NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid segment: name: must not be empty"),
				 errdetail("name: must not be empty")));
	d = trigger_row_value(tuple, desc, "conditions", &isnull);
	if (isnull)
		segment_error(ERRCODE_NOT_NULL_VIOLATION, name, "conditions: is required");
	node = condition_compile(DatumGetJsonbP(d), "conditions", 0, &error);
	if (error)
		segment_error(ERRCODE_INVALID_PARAMETER_VALUE, name, error);
	id = DatumGetInt64(trigger_row_value(tuple, desc, "id", &isnull));
	/* a restore loads segments in id order: a rule may read a later one */
	if (!restore_mode() && check_function_bodies)
	{
		check_segment_refs(id, name, node);
		if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		{
			char	   *old = trigger_row_text(td->tg_trigtuple, desc, "name");

			if (strcmp(old, name) != 0)
				check_not_read(id, old, "rename");
		}
	}
	return PointerGetDatum(trigger_row_touch_updated_at(td, tuple));
}

/* Runs 'sql' with the compiled rule's parameters (SPI connected); returns the rows processed. */
static uint64
run_compiled(const char *sql, SegmentSql *s, bool read_only, long limit)
{
	int			rc = SPI_execute_with_args(sql, s->nparams, s->types, s->values, NULL,
										   read_only, limit);

	if (rc < 0)
		elog(ERROR, "meisa: segment query failed (%d)", rc);
	return SPI_processed;
}

/*
 * Rebuilds the members and clock checks of segment 'id' from all contacts
 * with the rule's SQL (SPI connected, as the owner).  Writers of contacts and
 * events wait meanwhile, so no write is evaluated against stale members.
 */
static void
rebuild(int64 id, Jsonb *conditions)
{
	char	   *error;
	CondNode   *node = condition_compile(conditions, "conditions", 0, &error);
	SegmentSql	s;
	const char *idp;
	bool		had_members;

	if (error)
		return;					/* a broken stored rule (restore): no members */
	if (SPI_execute("LOCK TABLE meisa.contacts, meisa.events IN SHARE MODE", false, 0) < 0 ||
		SPI_execute("LOCK TABLE meisa.segment_members, meisa.segment_checks IN SHARE ROW EXCLUSIVE MODE",
					false, 0) < 0)
		elog(ERROR, "meisa: could not lock for a segment rebuild");
	segment_sql_compile(node, condition_now(), &s);
	idp = segment_sql_param(&s, INT8OID, Int64GetDatum(id));
	had_members = run_compiled(psprintf("SELECT 1 FROM meisa.segment_members WHERE segment_id OPERATOR(pg_catalog.=) %s",
										idp), &s, false, 1) > 0;
	if (!had_members)
		run_compiled(psprintf("INSERT INTO meisa.segment_members (segment_id, contact_id, entered_at)"
							  " SELECT %s, c.id, pg_catalog.now() FROM meisa.contacts c WHERE %s",
							  idp, s.where.data), &s, false, 0);
	else
		run_compiled(psprintf("WITH want AS MATERIALIZED (SELECT c.id FROM meisa.contacts c WHERE %s),"
							  " gone AS (DELETE FROM meisa.segment_members m WHERE m.segment_id OPERATOR(pg_catalog.=) %s"
							  " AND NOT EXISTS (SELECT 1 FROM want w WHERE w.id OPERATOR(pg_catalog.=) m.contact_id))"
							  " INSERT INTO meisa.segment_members (segment_id, contact_id, entered_at)"
							  " SELECT %s, w.id, pg_catalog.now() FROM want w ON CONFLICT DO NOTHING",
							  s.where.data, idp, idp), &s, false, 0);
	run_compiled(psprintf("DELETE FROM meisa.segment_checks WHERE segment_id OPERATOR(pg_catalog.=) %s", idp),
				 &s, false, 0);
	if (s.next.len > 0)
		run_compiled(psprintf("INSERT INTO meisa.segment_checks (segment_id, contact_id, check_at)"
							  " SELECT %s, c.id, x.at FROM meisa.contacts c CROSS JOIN LATERAL (SELECT %s) x(at)"
							  " WHERE x.at IS NOT NULL", idp, s.next.data), &s, false, 0);
}

/* Empties the members and checks of segment 'id' (SPI connected). */
static void
clear_segment(int64 id, bool log_too)
{
	Oid			t[1] = {INT8OID};
	Datum		v[1] = {Int64GetDatum(id)};

	if (SPI_execute_with_args("DELETE FROM meisa.segment_members WHERE segment_id OPERATOR(pg_catalog.=) $1",
							  1, t, v, NULL, false, 0) < 0 ||
		SPI_execute_with_args("DELETE FROM meisa.segment_checks WHERE segment_id OPERATOR(pg_catalog.=) $1",
							  1, t, v, NULL, false, 0) < 0 ||
		(log_too &&
		 SPI_execute_with_args("DELETE FROM meisa.segment_changes WHERE segment_id OPERATOR(pg_catalog.=) $1",
							   1, t, v, NULL, false, 0) < 0))
		elog(ERROR, "meisa: could not clear segment %lld", (long long) id);
}

/* Rebuilds the enabled segments that read 'name', and those reading them, in order. */
static void
rebuild_readers(const char *name, int depth)
{
	StoredSegment *all;
	int			n;

	all = stored_segments(&n);
	if (depth > n)
		return;
	for (int i = 0; i < n; i++)
	{
		ListCell   *lc;

		if (!all[i].enabled)
			continue;
		foreach(lc, all[i].refs)
			if (strcmp((char *) lfirst(lc), name) == 0)
			{
				rebuild(all[i].id, all[i].conditions);
				rebuild_readers(all[i].name, depth + 1);
				break;
			}
	}
}

/*
 * meisa.segments_changed(): AFTER INSERT OR UPDATE OR DELETE row trigger:
 * rebuilds a segment created, enabled or with changed conditions, empties a
 * disabled or deleted one, rebuilds the segments reading it, and stales
 * every backend's segment cache.
 */
Datum
meisa_segments_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	newtup,
				oldtup;
	bool		isnull;
	bool		enabled,
				was_enabled = false;
	Jsonb	   *conditions = NULL;
	int64		id;
	Oid			saved_uid;
	int			saved_sec;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "meisa.segments_changed() must be an AFTER ROW trigger");
	CacheInvalidateRelcache(td->tg_relation);
	/* restoring a dump: members and checks are restored as data */
	if (restore_mode())
		return PointerGetDatum(NULL);
	desc = RelationGetDescr(td->tg_relation);
	oldtup = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? NULL : td->tg_trigtuple;
	newtup = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple :
		TRIGGER_FIRED_BY_INSERT(td->tg_event) ? td->tg_trigtuple : NULL;
	id = DatumGetInt64(trigger_row_value(newtup ? newtup : oldtup, desc, "id", &isnull));
	enabled = newtup && DatumGetBool(trigger_row_value(newtup, desc, "enabled", &isnull));
	if (oldtup)
		was_enabled = DatumGetBool(trigger_row_value(oldtup, desc, "enabled", &isnull));
	if (newtup)
		conditions = DatumGetJsonbP(trigger_row_value(newtup, desc, "conditions", &isnull));
	if (enabled && was_enabled && oldtup &&
		DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(conditions),
										 trigger_row_value(oldtup, desc, "conditions", &isnull))))
		return PointerGetDatum(NULL);	/* nothing a member depends on changed */
	if (!enabled && !was_enabled && newtup)
		return PointerGetDatum(NULL);

	GetUserIdAndSecContext(&saved_uid, &saved_sec);
	SetUserIdAndSecContext(segment_cache_owner(), saved_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	if (enabled)
		rebuild(id, conditions);
	else
		clear_segment(id, newtup == NULL);
	rebuild_readers(trigger_row_text(newtup ? newtup : oldtup, desc, "name"), 0);
	SPI_finish();
	SetUserIdAndSecContext(saved_uid, saved_sec);
	return PointerGetDatum(NULL);
}

/* Compiles a draft rule of segment_count / segment_preview (ERROR when invalid). */
static CondNode *
draft_rule(FunctionCallInfo fcinfo, SegmentSql *s)
{
	CondNode   *node;
	const char *missing;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("conditions must not be null")));
	node = condition_compile_or_error(PG_GETARG_JSONB_P(0), "conditions", 0);
	missing = segment_unknown_ref(node);
	if (missing)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("conditions: no segment named \"%s\"", missing)));
	segment_sql_compile(node, condition_now(), s);
	return node;
}

/* meisa.segment_count(conditions jsonb) returns bigint: contacts a draft rule holds for. */
Datum
meisa_segment_count(PG_FUNCTION_ARGS)
{
	SegmentSql	s;
	int64		count;
	bool		isnull;

	draft_rule(fcinfo, &s);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	run_compiled(psprintf("SELECT pg_catalog.count(*) FROM meisa.contacts c WHERE %s", s.where.data),
				 &s, true, 1);
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(count);
}

/*
 * meisa.segment_preview(conditions jsonb, lim int default 20) returns setof
 * meisa.contacts: the first 'lim' contacts (by id) a draft rule holds for.
 */
Datum
meisa_segment_preview(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SegmentSql	s;
	int32		lim;
	const char *limp;

	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lim must be zero or more")));
	lim = PG_GETARG_INT32(1);
	draft_rule(fcinfo, &s);
	InitMaterializedSRF(fcinfo, 0);
	limp = segment_sql_param(&s, INT4OID, Int32GetDatum(lim));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	run_compiled(psprintf("SELECT c.* FROM meisa.contacts c WHERE %s ORDER BY c.id LIMIT %s",
						  s.where.data, limp), &s, true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum	   *values = palloc(sizeof(Datum) * rsinfo->setDesc->natts);
		bool	   *nulls = palloc(sizeof(bool) * rsinfo->setDesc->natts);

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * meisa.segment_mismatches() returns table (segment text, contact_id bigint,
 * member boolean): every contact whose membership of an enabled segment
 * differs from its rule's answer (member says what segment_members holds),
 * leaving out contacts with a clock check already due (the next
 * meisa_run_due settles them).  meisa.check_invariants() counts them.
 */
Datum
meisa_segment_mismatches(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	StoredSegment *all;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "meisa: SPI_connect failed");
	all = stored_segments(&n);
	for (int i = 0; i < n; i++)
	{
		char	   *error;
		CondNode   *node;
		SegmentSql	s;
		const char *idp;

		if (!all[i].enabled)
			continue;
		node = condition_compile(all[i].conditions, "conditions", 0, &error);
		if (error)
			continue;
		segment_sql_compile(node, condition_now(), &s);
		idp = segment_sql_param(&s, INT8OID, Int64GetDatum(all[i].id));
		run_compiled(psprintf("SELECT c.id, m.contact_id IS NOT NULL FROM meisa.contacts c"
							  " LEFT JOIN meisa.segment_members m ON m.segment_id OPERATOR(pg_catalog.=) %s"
							  " AND m.contact_id OPERATOR(pg_catalog.=) c.id"
							  " WHERE (m.contact_id IS NOT NULL) OPERATOR(pg_catalog.<>) (%s)"
							  " AND NOT EXISTS (SELECT 1 FROM meisa.segment_checks k"
							  " WHERE k.segment_id OPERATOR(pg_catalog.=) %s AND k.contact_id OPERATOR(pg_catalog.=) c.id"
							  " AND k.check_at OPERATOR(pg_catalog.<=) pg_catalog.now())"
							  " UNION ALL SELECT m.contact_id, true FROM meisa.segment_members m"
							  " WHERE m.segment_id OPERATOR(pg_catalog.=) %s AND NOT EXISTS"
							  " (SELECT 1 FROM meisa.contacts c WHERE c.id OPERATOR(pg_catalog.=) m.contact_id)",
							  idp, s.where.data, idp, idp), &s, true, 0);
		for (uint64 r = 0; r < SPI_processed; r++)
		{
			Datum		values[3];
			bool		nulls[3] = {false, false, false};
			bool		isnull;

			values[0] = CStringGetTextDatum(all[i].name);
			values[1] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull);
			values[2] = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	SPI_finish();
	return (Datum) 0;
}
