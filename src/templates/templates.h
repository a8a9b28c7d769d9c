/*
 * templates.h
 *		The Mustache template engine (mustache.c, mustache_parse.c,
 *		mustache_render.c): a parser that compiles a template into a node tree
 *		once, and a renderer that walks that tree over Jsonb data.  The
 *		validate and render entry points come first; the parse-once API and
 *		the pieces shared by the engine's own files follow.
 */
#ifndef MEISA_TEMPLATES_H
#define MEISA_TEMPLATES_H

#include "common/common.h"

/* Defines the meisa.max_render_* settings (called from _PG_init). */
extern void template_init(void);

/* Looks up a partial by name; NULL when there is none (renders as empty). */
typedef const char *(*mustache_partial_fn) (const char *name, void *arg);
/* ERROR 22023 naming 'field' and the line when 'tmpl' is not a valid template. */
extern void mustache_validate(const char *tmpl, const char *field);
/* Renders 'tmpl' with 'data' (may be NULL); partials come from 'partial' (may be NULL). */
extern char *mustache_render_jsonb(const char *tmpl, Jsonb *data,
								   mustache_partial_fn partial, void *arg);

/* Kinds of nodes in a compiled template. */
typedef enum MustacheNodeType
{
	MN_TEXT,					/* literal text */
	MN_VAR,						/* {{name}}: HTML-escaped interpolation */
	MN_RAW,						/* {{{name}}} or {{& name}}: raw interpolation */
	MN_SECTION,					/* {{#name}} ... {{/name}} */
	MN_INVERTED,				/* {{^name}} ... {{/name}} */
	MN_PARTIAL					/* {{> name}} */
} MustacheNodeType;

/* One node of a compiled template; siblings are chained through 'next'. */
typedef struct MustacheNode
{
	MustacheNodeType type;
	struct MustacheNode *next;
	int			line;			/* source line of the tag (1-based) */
	/* MN_TEXT: the text; MN_PARTIAL: the standalone indentation (may be 0 long) */
	const char *text;
	int			len;
	/* tags: the name as written (trimmed), and its dotted parts */
	const char *name;
	int			nparts;			/* 0 for the implicit iterator "." */
	const char **parts;
	int		   *partlens;
	struct MustacheNode *children;	/* sections */
} MustacheNode;

/* A compiled template. */
typedef struct MustacheTemplate
{
	MustacheNode *nodes;
	int			max_nesting;	/* deepest static section nesting */
	int			srclen;			/* bytes of the source text */
} MustacheTemplate;

/* Settings (defined in mustache.c). */
extern int	mustache_max_render_depth;
extern int	mustache_max_render_size;
extern int	mustache_max_render_steps;

/*
 * Compiles 'src' (len bytes) in the current memory context; ERROR 22023
 * (54000 for nesting deeper than meisa.max_render_depth) with a message
 * "invalid template in <what>: ..." naming the line.
 */
extern MustacheTemplate *mustache_parse(const char *src, int len,
										const char *what);

/*
 * Compiles 'src' through the per-backend cache of compiled templates; the
 * result stays valid at least until the current memory context is reset.
 */
extern MustacheTemplate *mustache_compile_cached(const char *src, int len,
												 const char *what);

/*
 * Renders a compiled template; 'data' and 'partial' may be NULL.  With
 * escape_html false, {{name}} is not HTML-escaped (plain-text output).
 */
extern char *mustache_render(MustacheTemplate *tmpl, Jsonb *data,
							 mustache_partial_fn partial, void *arg,
							 bool escape_html);

/*
 * mustache_render over a context stack of documents, frames[nframes - 1]
 * on top: a name is looked up from the top down (NULL frames left out).
 */
extern char *mustache_render_frames(MustacheTemplate *tmpl, Jsonb **frames, int nframes,
									mustache_partial_fn partial, void *arg,
									bool escape_html);

/* Compiles template text (cached) and renders it with mustache_render_frames; NULL text: NULL. */
extern char *mustache_render_text_frames(const char *tmpl, Jsonb **frames, int nframes,
										 mustache_partial_fn partial, void *arg,
										 bool escape_html);

/*
 * mustache_render_jsonb for plain text (a subject line, the text/plain
 * part): like it, but {{name}} is not HTML-escaped.
 */
extern char *mustache_render_jsonb_plain(const char *tmpl, Jsonb *data,
										 mustache_partial_fn partial, void *arg);

#endif							/* MEISA_TEMPLATES_H */
