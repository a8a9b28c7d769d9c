/*
 * diff.h
 *		Flattened JSON change sets: {"a.b": {"old": v, "new": v}, ...}.
 */
#ifndef MEISA_DIFF_H
#define MEISA_DIFF_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

/* True when two JSON values (never absent) are equal; numbers compare numerically. */
extern bool diff_values_equal(JsonbValue *a, JsonbValue *b);

/*
 * Pushes into the open object *state one entry per changed leaf between
 * 'oldv' and 'newv' (NULL or JSON null = absent) under the dotted 'path';
 * objects are descended, other values compared whole.  An entry is
 * {"old": v, "new": v}, plus "added"/"removed" element lists when both sides
 * are arrays or absent.  Returns the number of entries pushed.
 */
extern int	diff_push(JsonbParseState **state, StringInfo path,
					  JsonbValue *oldv, JsonbValue *newv);

/* Pushes one change entry for 'path' (NULL values = JSON null). */
extern void diff_push_entry(JsonbParseState **state, const char *path, int pathlen,
							JsonbValue *oldv, JsonbValue *newv,
							JsonbValue *added, JsonbValue *removed);

#endif							/* MEISA_DIFF_H */
