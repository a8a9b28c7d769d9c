/*
 * mustache_parse.c
 *		Compiles Mustache template text into a node tree (see templates.h):
 *		tags with the current delimiters, set-delimiter tags, comments,
 *		sections and inverted sections, partials, and the specification's
 *		standalone-line rules (a section, inverted, closing, comment, partial
 *		or set-delimiter tag alone on its line removes that whole line; a
 *		standalone partial keeps the line's indentation for its content).
 *		Parsing is iterative, so a deeply nested template cannot exhaust the
 *		C stack; every syntax error names the line it was found on.
 */
#include "templates/templates.h"

#include "miscadmin.h"

/* An open section while parsing. */
typedef struct OpenSection
{
	MustacheNode *node;			/* the section node */
	MustacheNode **tail;		/* where the next node of the outer list goes */
} OpenSection;

/* Parser state. */
typedef struct ParseState
{
	const char *src;
	int			len;
	const char *what;			/* "\"html\"" or "partial \"x\"" */
	char		otag[32];
	int			olen;
	char		ctag[32];
	int			clen;
	int			line;			/* line number at 'linepos' */
	int			linepos;		/* position up to which lines are counted */
	MustacheNode **tail;		/* where the next node goes */
	OpenSection *open;
	int			nopen;
	int			maxopen;
	int			max_nesting;
} ParseState;

/* Returns the 1-based line number of position 'pos' (positions only grow). */
static int
line_at(ParseState *ps, int pos)
{
	while (ps->linepos < pos)
	{
		if (ps->src[ps->linepos] == '\n')
			ps->line++;
		ps->linepos++;
	}
	return ps->line;
}

/* Raises the syntax error 'msg' (already formatted) for the template. */
static void
syntax_error(ParseState *ps, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid template in %s: %s", ps->what, msg),
			 hint ? errhint("%s", hint) : 0));
}

/* Finds 'needle' (nlen bytes) in src[from, len); returns its position or -1. */
static int
find_bytes(const char *src, int len, int from, const char *needle, int nlen)
{
	const char *p = src + from;
	const char *end = src + len - nlen;

	if (nlen <= 0)
		return -1;
	while (p <= end)
	{
		p = memchr(p, needle[0], end - p + 1);
		if (p == NULL)
			return -1;
		if (memcmp(p, needle, nlen) == 0)
			return p - src;
		p++;
	}
	return -1;
}

/* True for the whitespace Mustache trims around names and on standalone lines. */
static inline bool
is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* True for any whitespace that may pad a tag's content. */
static inline bool
is_pad(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Appends a new node of 'type' at the current position and returns it. */
static MustacheNode *
add_node(ParseState *ps, MustacheNodeType type, int line)
{
	MustacheNode *n = palloc0(sizeof(MustacheNode));

	n->type = type;
	n->line = line;
	*ps->tail = n;
	ps->tail = &n->next;
	return n;
}

/* Fills in the name of tag node 'n' from content c[0, clen), splitting dotted names. */
static void
set_name(ParseState *ps, MustacheNode *n, const char *c, int clen, int line,
		 bool dotted)
{
	char		buf[128];
	int			i;

	n->name = pnstrdup(c, clen);
	if (clen == 0)
	{
		snprintf(buf, sizeof(buf), "empty tag name on line %d", line);
		syntax_error(ps, buf, "A tag names a value, e.g. {{first_name}} or {{data.plan}}.");
	}
	for (i = 0; i < clen; i++)
	{
		if (is_pad(c[i]))
		{
			char	   *m = psprintf("invalid tag name \"%s\" on line %d",
									 n->name, line);

			syntax_error(ps, m, "Tag names cannot contain whitespace.");
		}
	}
	if (!dotted)
		return;
	if (clen == 1 && c[0] == '.')
	{
		n->nparts = 0;
		return;
	}
	/* split on '.'; every part must be non-empty */
	n->nparts = 1;
	for (i = 0; i < clen; i++)
		if (c[i] == '.')
			n->nparts++;
	n->parts = palloc(sizeof(char *) * n->nparts);
	n->partlens = palloc(sizeof(int) * n->nparts);
	{
		int			k = 0;
		int			start = 0;

		for (i = 0; i <= clen; i++)
		{
			if (i == clen || c[i] == '.')
			{
				if (i == start)
				{
					char	   *m = psprintf("invalid tag name \"%s\" on line %d",
											 n->name, line);

					syntax_error(ps, m, "Dotted names have no empty parts, e.g. {{custom_fields.plan}}.");
				}
				n->parts[k] = n->name + start;
				n->partlens[k] = i - start;
				k++;
				start = i + 1;
			}
		}
	}
}

/* Applies a set-delimiter tag's content c[0, clen). */
static void
set_delimiters(ParseState *ps, const char *c, int clen, int line)
{
	int			i = 0;
	int			s1,
				e1,
				s2,
				e2;
	bool		ok = true;

	s1 = i;
	while (i < clen && !is_pad(c[i]))
		i++;
	e1 = i;
	while (i < clen && is_pad(c[i]))
		i++;
	s2 = i;
	while (i < clen && !is_pad(c[i]))
		i++;
	e2 = i;
	if (e1 == s1 || e2 == s2 || i != clen)
		ok = false;
	if (e1 - s1 >= (int) sizeof(ps->otag) || e2 - s2 >= (int) sizeof(ps->ctag))
		ok = false;
	for (i = s1; ok && i < e2; i++)
		if (c[i] == '=')
			ok = false;
	if (!ok)
	{
		char	   *m = psprintf("invalid delimiters \"%s\" on line %d",
								 pnstrdup(c, clen), line);

		syntax_error(ps, m,
					 "A set-delimiter tag holds two delimiters of at most 31 bytes, without whitespace or \"=\", separated by whitespace, e.g. {{=<% %>=}}.");
	}
	memcpy(ps->otag, c + s1, e1 - s1);
	ps->olen = e1 - s1;
	memcpy(ps->ctag, c + s2, e2 - s2);
	ps->clen = e2 - s2;
}

/* One tag found in the source: its kind and where its parts are. */
typedef struct Tag
{
	char		type;			/* 'v' (variable), '{', '&', '#', '^', '/', '!', '>', '=' */
	int			start;			/* offset of the opening delimiter */
	int			cstart;			/* content, trimmed: [cstart, cend) */
	int			cend;
	int			end;			/* offset after the closing delimiter */
	int			line;
} Tag;

/*
 * Finds the next tag at or after 'pos'; false when there is none.  ERROR
 * for a tag that is not closed.
 */
static bool
scan_tag(ParseState *ps, int pos, Tag *tag)
{
	const char *src = ps->src;
	int			len = ps->len;
	int			after;
	int			close;

	tag->start = find_bytes(src, len, pos, ps->otag, ps->olen);
	if (tag->start < 0)
		return false;
	tag->line = line_at(ps, tag->start);
	after = tag->start + ps->olen;
	tag->type = after < len ? src[after] : '\0';

	switch (tag->type)
	{
		case '{':
		case '=':
			{
				/* closed by "}" or "=" followed by the closing delimiter */
				char		closer[33];

				closer[0] = tag->type == '{' ? '}' : '=';
				memcpy(closer + 1, ps->ctag, ps->clen);
				close = find_bytes(src, len, after + 1, closer, ps->clen + 1);
				tag->cstart = after + 1;
				tag->end = close < 0 ? -1 : close + ps->clen + 1;
				break;
			}
		case '&':
		case '#':
		case '^':
		case '/':
		case '!':
		case '>':
			close = find_bytes(src, len, after + 1, ps->ctag, ps->clen);
			tag->cstart = after + 1;
			tag->end = close < 0 ? -1 : close + ps->clen;
			break;
		default:
			tag->type = 'v';
			close = find_bytes(src, len, after, ps->ctag, ps->clen);
			tag->cstart = after;
			tag->end = close < 0 ? -1 : close + ps->clen;
			break;
	}
	tag->cend = close;
	if (close < 0)
	{
		char	   *m = psprintf("unclosed tag on line %d", tag->line);
		char	   *h;

		if (tag->type == '{')
			h = psprintf("A raw tag opened with \"%s{\" ends with \"}%s\".",
						 ps->otag, ps->ctag);
		else if (tag->type == '=')
			h = psprintf("A set-delimiter tag ends with \"=%s\".", ps->ctag);
		else
			h = psprintf("A tag opened with \"%s\" ends with \"%s\".",
						 ps->otag, ps->ctag);
		syntax_error(ps, m, h);
	}
	/* trim the content */
	while (tag->cstart < tag->cend && is_pad(src[tag->cstart]))
		tag->cstart++;
	while (tag->cend > tag->cstart && is_pad(src[tag->cend - 1]))
		tag->cend--;
	return true;
}

/*
 * True when a tag other than an interpolation stands alone on its line
 * (only whitespace around it); then *line_start is where its line starts
 * and *next where the next line does.
 */
static bool
tag_standalone(ParseState *ps, const Tag *tag, int *line_start, int *next)
{
	const char *src = ps->src;
	int			len = ps->len;
	int			b = tag->start;
	int			f = tag->end;

	if (tag->type == 'v' || tag->type == '{' || tag->type == '&')
		return false;
	while (b > 0 && is_space(src[b - 1]))
		b--;
	if (b != 0 && src[b - 1] != '\n')
		return false;
	while (f < len && is_space(src[f]))
		f++;
	if (f < len && src[f] == '\n')
		f++;
	else if (f < len && src[f] == '\r' && f + 1 < len && src[f + 1] == '\n')
		f += 2;
	else if (f < len)
		return false;
	*line_start = b;
	*next = f;
	return true;
}

/* Opens a section (or inverted section) node; ERROR when nested too deep. */
static void
open_section(ParseState *ps, const Tag *tag)
{
	MustacheNode *n = add_node(ps, tag->type == '#' ? MN_SECTION : MN_INVERTED,
							   tag->line);

	set_name(ps, n, ps->src + tag->cstart, tag->cend - tag->cstart, tag->line, true);
	if (ps->nopen == ps->maxopen)
	{
		ps->maxopen *= 2;
		ps->open = repalloc(ps->open, sizeof(OpenSection) * ps->maxopen);
	}
	ps->open[ps->nopen].node = n;
	ps->open[ps->nopen].tail = ps->tail;
	ps->nopen++;
	if (ps->nopen > ps->max_nesting)
		ps->max_nesting = ps->nopen;
	if (ps->nopen > mustache_max_render_depth)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("invalid template in %s: sections nested deeper than meisa.max_render_depth (%d) on line %d",
						ps->what, mustache_max_render_depth, tag->line)));
	ps->tail = &n->children;
}

/* Closes the innermost open section; ERROR when the tag does not match it. */
static void
close_section(ParseState *ps, const Tag *tag)
{
	char	   *name = pnstrdup(ps->src + tag->cstart, tag->cend - tag->cstart);
	OpenSection *o;

	if (ps->nopen == 0)
		syntax_error(ps,
					 psprintf("closing tag \"%s\" on line %d has no open section",
							  name, tag->line), NULL);
	o = &ps->open[ps->nopen - 1];
	if (strcmp(o->node->name, name) != 0)
		syntax_error(ps,
					 psprintf("closing tag \"%s\" on line %d does not match section \"%s\" opened on line %d",
							  name, tag->line, o->node->name, o->node->line),
					 NULL);
	ps->tail = o->tail;
	ps->nopen--;
}

/*
 * Adds what a tag stands for; a standalone partial keeps the indentation
 * before it, from 'indent_start'.
 */
static void
emit_tag(ParseState *ps, const Tag *tag, bool standalone, int indent_start)
{
	const char *src = ps->src;

	switch (tag->type)
	{
		case 'v':
		case '&':
		case '{':
			{
				MustacheNode *n = add_node(ps, tag->type == 'v' ? MN_VAR : MN_RAW, tag->line);

				set_name(ps, n, src + tag->cstart, tag->cend - tag->cstart, tag->line, true);
				break;
			}
		case '#':
		case '^':
			open_section(ps, tag);
			break;
		case '/':
			close_section(ps, tag);
			break;
		case '!':
			break;
		case '>':
			{
				MustacheNode *n = add_node(ps, MN_PARTIAL, tag->line);

				set_name(ps, n, src + tag->cstart, tag->cend - tag->cstart, tag->line, false);
				if (standalone)
				{
					n->text = src + indent_start;
					n->len = tag->start - indent_start;
				}
				break;
			}
		case '=':
			set_delimiters(ps, src + tag->cstart, tag->cend - tag->cstart, tag->line);
			break;
	}
}

/* Compiles a template; see templates.h. */
MustacheTemplate *
mustache_parse(const char *src_in, int len, const char *what)
{
	ParseState	ps;
	MustacheTemplate *t = palloc0(sizeof(MustacheTemplate));
	int			pos = 0;
	int			text_start = 0;
	Tag			tag;

	memset(&ps, 0, sizeof(ps));
	{
		char	   *copy = palloc(len + 1);	/* text nodes point into this copy */

		memcpy(copy, src_in, len);
		copy[len] = '\0';
		ps.src = copy;
	}
	ps.len = len;
	ps.what = what;
	strcpy(ps.otag, "{{");
	ps.olen = 2;
	strcpy(ps.ctag, "}}");
	ps.clen = 2;
	ps.line = 1;
	ps.tail = &t->nodes;
	ps.maxopen = 8;
	ps.open = palloc(sizeof(OpenSection) * ps.maxopen);

	for (;;)
	{
		int			text_end;
		int			next;
		int			indent_start = 0;
		bool		standalone;

		CHECK_FOR_INTERRUPTS();

		if (!scan_tag(&ps, pos, &tag))
			break;
		text_end = tag.start;
		next = tag.end;
		standalone = tag_standalone(&ps, &tag, &indent_start, &next);
		if (standalone)
			text_end = indent_start;

		/* the text before the tag */
		if (text_end > text_start)
		{
			MustacheNode *n = add_node(&ps, MN_TEXT, tag.line);

			n->text = ps.src + text_start;
			n->len = text_end - text_start;
		}
		emit_tag(&ps, &tag, standalone, indent_start);
		pos = text_start = next;
	}

	if (ps.nopen > 0)
	{
		OpenSection *o = &ps.open[ps.nopen - 1];

		syntax_error(&ps,
					 psprintf("unclosed section \"%s\" opened on line %d",
							  o->node->name, o->node->line),
					 psprintf("Close it with {{/%s}}.", o->node->name));
	}
	if (len > text_start)
	{
		MustacheNode *n = add_node(&ps, MN_TEXT, line_at(&ps, text_start));

		n->text = ps.src + text_start;
		n->len = len - text_start;
	}
	t->max_nesting = ps.max_nesting;
	t->srclen = len;
	pfree(ps.open);
	return t;
}
