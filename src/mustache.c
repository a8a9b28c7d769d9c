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
