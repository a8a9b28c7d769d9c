/*
 * mustache_render.c
 *		Renders a compiled Mustache template (templates.h) over Jsonb data,
 *		reading values straight from the Jsonb containers: the context stack,
 *		name lookup (dotted names, the implicit iterator "."), sections over
 *		lists, objects and truthy values, inverted sections, HTML escaping,
 *		number formatting and partials (compiled once per name and
 *		indentation).  Rendering is bounded: nesting of sections and partials
 *		(meisa.max_render_depth), output bytes (meisa.max_render_size) and
 *		rendering steps (meisa.max_render_steps) end in ERROR 54000, and the
 *		stack depth and interrupts are checked as it goes.  Also keeps the
 *		per-backend cache of compiled templates.
 */
#include "templates/templates.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

/* A partial compiled for one render, by name and indentation. */
typedef struct PartialEntry
{
	struct PartialEntry *next;
	const char *name;
	const char *indent;
	int			indentlen;
	MustacheTemplate *tmpl;		/* NULL: no such partial (renders empty) */
} PartialEntry;

/* Rendering state. */
typedef struct RenderState
{
	StringInfoData out;
	JsonbValue *stack;			/* context stack, stack[nstack - 1] on top */
	int			nstack;
	int			maxstack;
	int			depth;			/* nesting of sections and partials */
	int64		steps;
	mustache_partial_fn partial;
	void	   *arg;
	PartialEntry *partials;
	bool		escape_html;	/* false: {{x}} renders like {{{x}}} */
} RenderState;

static void render_nodes(RenderState *st, MustacheNode *n);

/* Appends len bytes to the output, enforcing meisa.max_render_size. */
static inline void
emit(RenderState *st, const char *s, int len)
{
	if (len <= 0)
		return;
	if ((int64) st->out.len + len > (int64) mustache_max_render_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("rendered template exceeds meisa.max_render_size (%d bytes)",
						mustache_max_render_size),
				 errhint("Raise meisa.max_render_size or render less data.")));
	appendBinaryStringInfo(&st->out, s, len);
}

/* Appends s[0, len) with & " < > ' replaced by HTML entities. */
static void
emit_escaped(RenderState *st, const char *s, int len)
{
	int			start = 0;
	int			i;

	for (i = 0; i < len; i++)
	{
		const char *rep;

		switch (s[i])
		{
			case '&':
				rep = "&amp;";
				break;
			case '"':
				rep = "&quot;";
				break;
			case '<':
				rep = "&lt;";
				break;
			case '>':
				rep = "&gt;";
				break;
			case '\'':
				rep = "&#39;";
				break;
			default:
				continue;
		}
		emit(st, s + start, i - start);
		emit(st, rep, strlen(rep));
		start = i + 1;
	}
	emit(st, s + start, len - start);
}

/* Enters one level of section or partial nesting. */
static void
enter(RenderState *st, MustacheNode *n)
{
	check_stack_depth();
	if (++st->depth > mustache_max_render_depth)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("template nesting exceeds meisa.max_render_depth (%d)",
						mustache_max_render_depth),
				 errdetail("Sections and partials are nested more than %d deep at %s\"%s\" on line %d.",
						   mustache_max_render_depth,
						   n->type == MN_PARTIAL ? "partial " : "section ",
						   n->name, n->line),
				 errhint("A partial that includes itself needs a section that ends the recursion.")));
}

/* Pushes a value on the context stack. */
static void
push(RenderState *st, const JsonbValue *v)
{
	if (st->nstack == st->maxstack)
	{
		st->maxstack *= 2;
		st->stack = repalloc(st->stack, sizeof(JsonbValue) * st->maxstack);
	}
	st->stack[st->nstack++] = *v;
}

/* True when v is a Jsonb object. */
static inline bool
is_object(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* True when v is a Jsonb array. */
static inline bool
is_array(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* Looks up key k (klen bytes) in container value v; true and *res when found. */
static bool
get_member(const JsonbValue *v, const char *k, int klen, JsonbValue *res)
{
	if (is_object(v))
		return getKeyJsonValueFromContainer(v->val.binary.data, k, klen, res) != NULL;
	if (is_array(v) && klen > 0 && klen <= 9)
	{
		/* numeric part of a dotted name indexes a list: items.0.name */
		uint32		idx = 0;
		int			i;
		JsonbValue *e;

		for (i = 0; i < klen; i++)
		{
			if (k[i] < '0' || k[i] > '9')
				return false;
			idx = idx * 10 + (k[i] - '0');
		}
		e = getIthJsonbValueFromContainer(v->val.binary.data, idx);
		if (e == NULL)
			return false;
		*res = *e;
		pfree(e);
		return true;
	}
	return false;
}

/* Resolves a tag's name against the context stack; true and *res when found. */
static bool
lookup(RenderState *st, MustacheNode *n, JsonbValue *res)
{
	int			i;
	bool		found = false;

	if (n->nparts == 0)
	{
		if (st->nstack == 0)
			return false;
		*res = st->stack[st->nstack - 1];
		return true;
	}
	/* the first part: the nearest context that has it */
	for (i = st->nstack - 1; i >= 0; i--)
	{
		if (is_object(&st->stack[i]) &&
			get_member(&st->stack[i], n->parts[0], n->partlens[0], res))
		{
			found = true;
			break;
		}
	}
	if (!found)
		return false;
	/* the other parts: inside what was found, never further down the stack */
	for (i = 1; i < n->nparts; i++)
	{
		JsonbValue	cur = *res;

		if (!get_member(&cur, n->parts[i], n->partlens[i], res))
			return false;
	}
	return true;
}

/* True when a value counts as true for sections (see docs/templates.md). */
static bool
truthy(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return false;
		case jbvBool:
			return v->val.boolean;
		case jbvString:
			return v->val.string.len > 0;
		case jbvNumeric:
			return strcmp(numeric_normalize(v->val.numeric), "0") != 0;
		case jbvBinary:
			if (JsonContainerIsArray(v->val.binary.data))
				return JsonContainerSize(v->val.binary.data) > 0;
			return true;
		default:
			return true;
	}
}

/* Appends the text of a value, HTML-escaped when 'escape'. */
static void
emit_value(RenderState *st, const JsonbValue *v, bool escape)
{
	const char *s;
	int			len;

	switch (v->type)
	{
		case jbvNull:
			return;
		case jbvString:
			s = v->val.string.val;
			len = v->val.string.len;
			break;
		case jbvBool:
			s = v->val.boolean ? "true" : "false";
			len = strlen(s);
			break;
		case jbvNumeric:
			s = numeric_normalize(v->val.numeric);
			len = strlen(s);
			break;
		case jbvBinary:
			s = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
			len = strlen(s);
			break;
		default:
			return;
	}
	if (escape)
		emit_escaped(st, s, len);
	else
		emit(st, s, len);
}

/* Indents every line of partial text src (not after a final newline). */
static char *
indent_text(const char *src, int len, const char *indent, int ilen, int *outlen)
{
	StringInfoData b;
	int			i;
	int			start = 0;

	initStringInfo(&b);
	appendBinaryStringInfo(&b, indent, ilen);
	for (i = 0; i < len; i++)
	{
		if (src[i] == '\n' && i + 1 < len)
		{
			appendBinaryStringInfo(&b, src + start, i + 1 - start);
			appendBinaryStringInfo(&b, indent, ilen);
			start = i + 1;
		}
	}
	appendBinaryStringInfo(&b, src + start, len - start);
	*outlen = b.len;
	return b.data;
}

/* The compiled partial for a partial tag, or NULL when there is none. */
static MustacheTemplate *
get_partial(RenderState *st, MustacheNode *n)
{
	PartialEntry *e;
	const char *src;

	for (e = st->partials; e; e = e->next)
		if (e->indentlen == n->len && strcmp(e->name, n->name) == 0 &&
			(n->len == 0 || memcmp(e->indent, n->text, n->len) == 0))
			return e->tmpl;

	e = palloc0(sizeof(PartialEntry));
	e->name = n->name;
	e->indent = n->text;
	e->indentlen = n->len;
	src = st->partial ? st->partial(n->name, st->arg) : NULL;
	if (src != NULL)
	{
		char	   *what = psprintf("partial \"%s\"", n->name);
		int			len = strlen(src);

		if (n->len > 0)
		{
			char	   *ind = indent_text(src, len, n->text, n->len, &len);

			e->tmpl = mustache_compile_cached(ind, len, what);
		}
		else
			e->tmpl = mustache_compile_cached(src, len, what);
	}
	e->next = st->partials;
	st->partials = e;
	return e->tmpl;
}

/*
 * Counts one unit of rendering work (a node visited, or one element of a list
 * a section iterates over, even when the section's body is empty), so that
 * meisa.max_render_steps bounds the work of nested loops over large lists.
 */
static void
render_step(RenderState *st)
{
	CHECK_FOR_INTERRUPTS();
	if (++st->steps > mustache_max_render_steps)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("rendering exceeds meisa.max_render_steps (%d)",
						mustache_max_render_steps),
				 errhint("Loops over large lists or partials that include themselves several times multiply the work.")));
}

/* Renders a section or inverted section node. */
static void
render_section(RenderState *st, MustacheNode *n)
{
	JsonbValue	v;
	bool		found = lookup(st, n, &v);

	enter(st, n);
	if (n->type == MN_INVERTED)
	{
		if (!found || !truthy(&v))
			render_nodes(st, n->children);
	}
	else if (found && truthy(&v))
	{
		if (is_array(&v))
		{
			JsonbIterator *it = JsonbIteratorInit(v.val.binary.data);
			JsonbValue	e;
			JsonbIteratorToken tok;

			while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
			{
				if (tok != WJB_ELEM)
					continue;
				render_step(st);
				push(st, &e);
				render_nodes(st, n->children);
				st->nstack--;
			}
		}
		else
		{
			push(st, &v);
			render_nodes(st, n->children);
			st->nstack--;
		}
	}
	st->depth--;
}

/* Renders a list of sibling nodes. */
static void
render_nodes(RenderState *st, MustacheNode *n)
{
	for (; n; n = n->next)
	{
		render_step(st);
		switch (n->type)
		{
			case MN_TEXT:
				emit(st, n->text, n->len);
				break;
			case MN_VAR:
			case MN_RAW:
				{
					JsonbValue	v;

					if (lookup(st, n, &v))
						emit_value(st, &v, n->type == MN_VAR && st->escape_html);
					break;
				}
			case MN_SECTION:
			case MN_INVERTED:
				render_section(st, n);
				break;
			case MN_PARTIAL:
				{
					MustacheTemplate *p = get_partial(st, n);

					if (p != NULL)
					{
						enter(st, n);
						render_nodes(st, p->nodes);
						st->depth--;
					}
					break;
				}
		}
	}
}

/* Renders a compiled template; see templates.h. */
char *
mustache_render(MustacheTemplate *tmpl, Jsonb *data,
				mustache_partial_fn partial, void *arg, bool escape_html)
{
	return mustache_render_frames(tmpl, &data, 1, partial, arg, escape_html);
}

/*
 * Renders a compiled template over a context stack of 'nframes' documents,
 * frames[nframes - 1] on top (a name is looked up from the top down, as in
 * a section); NULL frames are left out.
 */
char *
mustache_render_frames(MustacheTemplate *tmpl, Jsonb **frames, int nframes,
					   mustache_partial_fn partial, void *arg, bool escape_html)
{
	RenderState st;

	memset(&st, 0, sizeof(st));
	/* room for the text plus some interpolated data, within the size limit */
	st.out.maxlen = (int) Min((int64) tmpl->srclen + tmpl->srclen / 2 + 256,
							  (int64) mustache_max_render_size + 1);
	st.out.data = palloc(st.out.maxlen);
	resetStringInfo(&st.out);
	st.maxstack = 16;
	st.stack = palloc(sizeof(JsonbValue) * st.maxstack);
	st.partial = partial;
	st.arg = arg;
	st.escape_html = escape_html;
	for (int i = 0; i < nframes; i++)
	{
		Jsonb	   *data = frames[i];
		JsonbValue	root;

		if (data == NULL)
			continue;
		if (JB_ROOT_IS_SCALAR(data))
			JsonbExtractScalar(&data->root, &root);
		else
		{
			root.type = jbvBinary;
			root.val.binary.data = &data->root;
			root.val.binary.len = VARSIZE(data) - VARHDRSZ;
		}
		push(&st, &root);
	}
	render_nodes(&st, tmpl->nodes);
	pfree(st.stack);
	return st.out.data;
}

/* ---- the per-backend cache of compiled templates */

#define CACHE_SIZE 64
#define CACHE_MAX_SOURCE (256 * 1024)	/* larger texts are not cached */
#define CACHE_MAX_BYTES (32 * 1024 * 1024)	/* compiled bytes of all entries */

typedef struct CacheEntry
{
	int			len;
	char	   *src;			/* NULL: empty slot */
	MemoryContext cxt;
	MustacheTemplate *tmpl;
	Size		bytes;			/* memory of cxt */
	uint64		used;
} CacheEntry;

static CacheEntry cache[CACHE_SIZE];
static uint64 cache_clock = 0;
static Size cache_bytes = 0;
static MemoryContext cache_cxt = NULL;

/*
 * Empties cache slot i.  The template may still be in use by a render in
 * progress: its memory goes to the caller's context, freed once done.
 */
static void
cache_evict(int i)
{
	MemoryContextSetParent(cache[i].cxt, CurrentMemoryContext);
	cache_bytes -= cache[i].bytes;
	cache[i].src = NULL;
	cache[i].cxt = NULL;
	cache[i].tmpl = NULL;
	cache[i].bytes = 0;
}

/* Compiles through the cache; see templates.h. */
MustacheTemplate *
mustache_compile_cached(const char *src, int len, const char *what)
{
	int			i;
	int			victim = 0;
	MemoryContext cxt;
	MemoryContext old;
	MustacheTemplate *t;
	char	   *copy;
	Size		bytes;

	if (len > CACHE_MAX_SOURCE)
		return mustache_parse(src, len, what);

	for (i = 0; i < CACHE_SIZE; i++)
	{
		CacheEntry *e = &cache[i];

		/* texts of another length never compare; memcmp stops at the first difference */
		if (e->src != NULL && e->len == len && memcmp(e->src, src, len) == 0)
		{
			e->used = ++cache_clock;
			return e->tmpl;
		}
		if (e->src == NULL || (cache[victim].src != NULL && e->used < cache[victim].used))
			victim = i;
	}

	/*
	 * Compile in a context under the caller's, so that a syntax error frees
	 * it; on success move it under the cache's long-lived context.
	 */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "meisa template",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	t = mustache_parse(src, len, what);
	copy = palloc(len);
	memcpy(copy, src, len);
	MemoryContextSwitchTo(old);

	bytes = MemoryContextMemAllocated(cxt, true);
	if (bytes > CACHE_MAX_BYTES / 4)
		return t;				/* too big to keep: lives in the caller's context */

	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(TopMemoryContext, "meisa template cache",
										  ALLOCSET_DEFAULT_SIZES);
	if (cache[victim].src != NULL)
		cache_evict(victim);
	/* keep the whole cache under its memory bound, oldest entries first */
	while (cache_bytes + bytes > CACHE_MAX_BYTES)
	{
		int			oldest = -1;

		for (i = 0; i < CACHE_SIZE; i++)
			if (cache[i].src != NULL &&
				(oldest < 0 || cache[i].used < cache[oldest].used))
				oldest = i;
		if (oldest < 0)
			break;
		cache_evict(oldest);
	}
	MemoryContextSetParent(cxt, cache_cxt);
	cache[victim].len = len;
	cache[victim].src = copy;
	cache[victim].cxt = cxt;
	cache[victim].tmpl = t;
	cache[victim].bytes = bytes;
	cache[victim].used = ++cache_clock;
	cache_bytes += bytes;
	return t;
}
