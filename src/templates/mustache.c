/*
 * mustache.c
 *		The template engine's entry points: its settings
 *		(meisa.max_render_depth, meisa.max_render_size,
 *		meisa.max_render_steps), the C interface other modules use
 *		(mustache_validate, mustache_render_jsonb, declared in templates.h) and
 *		the SQL functions meisa.render(template, data, partials),
 *		meisa.render_text (the same for plain text) and
 *		meisa.validate_template(template, field).  Parsing lives in
 *		mustache_parse.c, rendering and the compiled-template cache in
 *		mustache_render.c.
 */
#include "templates/templates.h"

#include <limits.h>

#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

int			mustache_max_render_depth = 64;
int			mustache_max_render_size = 1024 * 1024;
int			mustache_max_render_steps = 10000000;

/* Defines the template settings. */
void
template_init(void)
{
	DefineCustomIntVariable("meisa.max_render_depth",
							"Maximum nesting of sections and partials while rendering a template.",
							"A partial that includes itself without end stops here with an error.",
							&mustache_max_render_depth,
							64, 1, 1000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.max_render_size",
							"Maximum size of a rendered template.",
							NULL,
							&mustache_max_render_size,
							1024 * 1024, 1, (int) (MaxAllocSize - 1),
							PGC_USERSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.max_render_steps",
							"Maximum number of template nodes visited (plus list elements iterated) while rendering one template.",
							"Bounds the work of loops over large lists and of partials that include themselves several times.",
							&mustache_max_render_steps,
							10000000, 1000, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
}

/* Checks a template's syntax; ERROR naming 'field' and the line when invalid. */
void
mustache_validate(const char *tmpl, const char *field)
{
	MemoryContext cxt;
	MemoryContext old;

	if (tmpl == NULL)
		return;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "meisa template check",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	(void) mustache_parse(tmpl, strlen(tmpl),
						  psprintf("\"%s\"", field ? field : "template"));
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* Renders a template (compiled once per backend through the cache). */
char *
mustache_render_jsonb(const char *tmpl, Jsonb *data,
					  mustache_partial_fn partial, void *arg)
{
	MustacheTemplate *t;

	if (tmpl == NULL)
		return NULL;
	t = mustache_compile_cached(tmpl, strlen(tmpl), "\"template\"");
	return mustache_render(t, data, partial, arg, true);
}

/* Renders a template for plain text: {{name}} is not HTML-escaped. */
char *
mustache_render_jsonb_plain(const char *tmpl, Jsonb *data,
							mustache_partial_fn partial, void *arg)
{
	MustacheTemplate *t;

	if (tmpl == NULL)
		return NULL;
	t = mustache_compile_cached(tmpl, strlen(tmpl), "\"template\"");
	return mustache_render(t, data, partial, arg, false);
}

/* Compiles template text (cached) and renders it over a stack of frames. */
char *
mustache_render_text_frames(const char *tmpl, Jsonb **frames, int nframes,
							mustache_partial_fn partial, void *arg, bool escape_html)
{
	MustacheTemplate *t;

	if (tmpl == NULL)
		return NULL;
	t = mustache_compile_cached(tmpl, strlen(tmpl), "\"template\"");
	return mustache_render_frames(t, frames, nframes, partial, arg, escape_html);
}

/* ---- SQL functions */

/* Partial lookup for meisa.render: a key of the partials object. */
static const char *
jsonb_partial(const char *name, void *arg)
{
	Jsonb	   *partials = (Jsonb *) arg;
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(&partials->root, name, strlen(name), &v) == NULL)
		return NULL;
	/* checked in meisa.render: every value is a string */
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/* Checks that the partials argument is an object of strings. */
static void
check_partials(Jsonb *partials)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (!JB_ROOT_IS_OBJECT(partials))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid partials: not a JSON object"),
				 errdetail("Partials are an object of template texts by name, e.g. {\"footer\": \"<p>{{company}}</p>\"}.")));
	it = JsonbIteratorInit(&partials->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid partials: the value of \"%s\" is not a string", key),
					 errdetail("Partials are an object of template texts by name, e.g. {\"footer\": \"<p>{{company}}</p>\"}.")));
	}
}

/* Renders the template of a meisa.render / meisa.render_text call. */
static Datum
render_call(FunctionCallInfo fcinfo, bool escape)
{
	text	   *tmpl;
	Jsonb	   *data = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	Jsonb	   *partials = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	MustacheTemplate *t;
	char	   *out;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	tmpl = PG_GETARG_TEXT_PP(0);
	if (partials != NULL)
		check_partials(partials);
	t = mustache_compile_cached(VARDATA_ANY(tmpl), VARSIZE_ANY_EXHDR(tmpl),
								"\"template\"");
	out = mustache_render(t, data, partials ? jsonb_partial : NULL, partials, escape);
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

PG_FUNCTION_INFO_V1(meisa_render);

/* meisa.render(template text, data jsonb, partials jsonb): the rendered HTML. */
Datum
meisa_render(PG_FUNCTION_ARGS)
{
	return render_call(fcinfo, true);
}

PG_FUNCTION_INFO_V1(meisa_render_text);

/* meisa.render_text(template, data, partials): rendered without HTML escaping. */
Datum
meisa_render_text(PG_FUNCTION_ARGS)
{
	return render_call(fcinfo, false);
}

PG_FUNCTION_INFO_V1(meisa_validate_template);

/* meisa.validate_template(template text, field text): true, or ERROR when invalid. */
Datum
meisa_validate_template(PG_FUNCTION_ARGS)
{
	char	   *tmpl = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *field = text_to_cstring(PG_GETARG_TEXT_PP(1));

	mustache_validate(tmpl, field);
	PG_RETURN_BOOL(true);
}
