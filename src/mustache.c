/*
 * mustache.c
 *		The Mustache template engine behind meisa.render and template checks.
 *		(Skeleton: filled in by the template work.)
 */
#include "meisa.h"

/* Defines the template settings. */
void
template_init(void)
{
}

/* Checks a template's syntax (skeleton: accepts everything). */
void
mustache_validate(const char *tmpl, const char *field)
{
}

/* Renders a template (skeleton: returns it unchanged). */
char *
mustache_render_jsonb(const char *tmpl, Jsonb *data,
					  mustache_partial_fn partial, void *arg)
{
	return pstrdup(tmpl);
}
