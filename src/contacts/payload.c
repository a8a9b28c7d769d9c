/*
 * payload.c
 *		Validation helpers shared by the JSON API functions (meisa_upsert,
 *		meisa_track) and the contacts triggers: payload shape and size, short
 *		text fields, event names, custom field names and values, tag
 *		normalisation, and the limit settings meisa.max_payload_size,
 *		meisa.max_custom_fields, meisa.max_tags, meisa.max_tag_length and
 *		meisa.max_property_size.
 */
#include "contacts/contacts.h"

#include "mb/pg_wchar.h"
#include "utils/memutils.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/numeric.h"

int			meisa_max_payload_size = 256 * 1024;
int			meisa_max_custom_fields = 100;
int			meisa_max_tags = 100;
int			meisa_max_tag_length = 64;
int			meisa_max_property_size = 64 * 1024;

/* Defines the meisa.max_* limit settings. */
void
payload_define_limits(void)
{
	DefineCustomIntVariable("meisa.max_payload_size",
							"Largest JSON payload accepted by meisa_upsert and meisa_track.",
							NULL, &meisa_max_payload_size, 256 * 1024, 1024, (int) (MaxAllocSize / 2),
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.max_custom_fields",
							"Most custom fields a contact may have.",
							NULL, &meisa_max_custom_fields, 100, 1, 10000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.max_tags",
							"Most tags a contact may have.",
							NULL, &meisa_max_tags, 100, 1, 10000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.max_tag_length",
							"Longest tag, in characters.",
							NULL, &meisa_max_tag_length, 64, 1, 1000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("meisa.max_property_size",
							"Largest properties object of a tracked event.",
							NULL, &meisa_max_property_size, 64 * 1024, 16, (int) (MaxAllocSize / 2),
							PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
}

/* ERROR 54000 when the payload is larger than meisa.max_payload_size. */
void
payload_check_size(Jsonb *payload, const char *what)
{
	Size		size = VARSIZE(payload) - VARHDRSZ;

	if (size > (Size) meisa_max_payload_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large", what),
				 errdetail("The payload takes %zu bytes; meisa.max_payload_size allows %d.",
						   size, meisa_max_payload_size)));
}

/* ERROR 22023 unless 'payload' is a JSON object. */
void
payload_check_object(Jsonb *payload, const char *what)
{
	if (!JB_ROOT_IS_OBJECT(payload) || JB_ROOT_IS_SCALAR(payload))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what)));
}

/* A key name cut to a printable length for messages. */
char *
payload_key_for_message(const char *key, int len)
{
	int			cut = len > 64 ? pg_mbcliplen(key, len, 64) : len;

	return pnstrdup(key, cut);
}

/* ERROR 22023 for a key the payload does not accept, listing the valid ones. */
void
payload_unknown_key(const char *key, int len, const char *valid)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown key \"%s\" in payload", payload_key_for_message(key, len)),
			 errhint("Valid keys are %s.", valid)));
}

/* A JSON type name for messages ("string", "number", ...). */
const char *
payload_type_name(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvArray:
			return "array";
		case jbvObject:
			return "object";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "array" : "object";
		default:
			return "unknown";
	}
}

/* The value of a string field as a palloc'd C string; ERROR 22023 when not a string. */
char *
payload_string(JsonbValue *v, const char *field)
{
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"%s\" must be a string, not %s", field, payload_type_name(v))));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * True when the text holds a control character: C0 (U+0000-U+001F), DEL
 * (U+007F) or C1 (U+0080-U+009F, UTF-8 0xC2 0x80-0x9F).
 */
static bool
has_control(const char *s, int len)
{
	int			i;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 32 || c == 127 ||
			(c == 0xC2 && i + 1 < len && (unsigned char) s[i + 1] >= 0x80 &&
			 (unsigned char) s[i + 1] <= 0x9F && GetDatabaseEncoding() == PG_UTF8))
			return true;
	}
	return false;
}

/* ERROR 22023 when the text holds a control character (has_control). */
static void
check_no_control(const char *s, int len, const char *field)
{
	if (has_control(s, len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for field \"%s\"", field),
				 errdetail("The value holds a control character.")));
}

/*
 * A short identifier-like text field: string (or an integer number when
 * allow_integer), no control characters, not empty, at most
 * PAYLOAD_MAX_NAME_LENGTH characters.
 */
char *
payload_short_text(JsonbValue *v, const char *field, bool allow_integer)
{
	char	   *s;
	int			len;

	if (v->type == jbvNumeric && allow_integer)
	{
		s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		if (strchr(s, '.') != NULL || strchr(s, 'N') != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("field \"%s\" must be a string or an integer, not %s", field,
							payload_key_for_message(s, strlen(s)))));
		/* an integer like 1e300 prints as 301 digits: the same length limit */
		if (strlen(s) > PAYLOAD_MAX_NAME_LENGTH)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("field \"%s\" is too long", field),
					 errdetail("At most %d characters are allowed.", PAYLOAD_MAX_NAME_LENGTH)));
		return s;
	}
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(allow_integer ? "field \"%s\" must be a string or an integer, not %s"
						: "field \"%s\" must be a string, not %s",
						field, payload_type_name(v))));
	len = v->val.string.len;
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"%s\" must not be empty", field)));
	if (len > PAYLOAD_MAX_NAME_LENGTH &&
		pg_mbstrlen_with_len(v->val.string.val, len) > PAYLOAD_MAX_NAME_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("field \"%s\" is too long", field),
				 errdetail("At most %d characters are allowed.", PAYLOAD_MAX_NAME_LENGTH)));
	check_no_control(v->val.string.val, len, field);
	s = pnstrdup(v->val.string.val, len);
	return s;
}

/* True when 'name' (len bytes) matches ^[A-Za-z0-9_.:-]{1,100}$. */
bool
event_name_valid(const char *name, int len)
{
	int			i;
	bool		ok = len >= 1 && len <= 100;

	for (i = 0; ok && i < len; i++)
	{
		char		c = name[i];

		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' || c == '-';
	}
	return ok;
}

/* ERROR 22023 unless 'name' is a valid custom field name. */
void
custom_field_check_name(const char *name, int len, const char *field)
{
	int			i;
	bool		ok = len >= 1 && len <= 64;

	for (i = 0; ok && i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
			  (i > 0 && c >= '0' && c <= '9')))
			ok = false;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid custom field name \"%s\" in field \"%s\"",
						payload_key_for_message(name, len), field),
				 errdetail("Custom field names match ^[A-Za-z_][A-Za-z0-9_]{0,63}$.")));
}

/*
 * Checks a custom_fields object: names, value types (string, number,
 * boolean; JSON null only when allow_null) and the field count.
 */
void
custom_fields_check(JsonbContainer *fields, bool allow_null, const char *field)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			count = 0;
	char	   *name = NULL;
	int			namelen = 0;

	if (!JsonContainerIsObject(fields))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"%s\" must be a JSON object", field)));
	it = JsonbIteratorInit(fields);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			name = v.val.string.val;
			namelen = v.val.string.len;
			custom_field_check_name(name, namelen, field);
		}
		else if (tok == WJB_VALUE)
		{
			if (v.type == jbvNull && allow_null)
				continue;
			if (v.type != jbvString && v.type != jbvNumeric && v.type != jbvBool)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for custom field \"%s\"",
								payload_key_for_message(name, namelen)),
						 errdetail("Custom field values must be strings, numbers or booleans, not %s.",
								   payload_type_name(&v))));
			count++;
		}
	}
	if (!allow_null && count > meisa_max_custom_fields)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many custom fields in field \"%s\"", field),
				 errdetail("The contact would have %d custom fields; meisa.max_custom_fields allows %d.",
						   count, meisa_max_custom_fields)));
}

/*
 * What keeps a tag from being stored, TAG_OK when nothing: checked after
 * trimming spaces and tabs, whose bounds are returned in *start and *tlen.
 */
TagProblem
tag_problem(const char *s, int len, int *start, int *tlen)
{
	int			b = 0;

	while (b < len && (s[b] == ' ' || s[b] == '\t'))
		b++;
	while (len > b && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	*start = b;
	*tlen = len - b;
	if (len == b)
		return TAG_EMPTY;
	if (len - b > meisa_max_tag_length &&
		pg_mbstrlen_with_len(s + b, len - b) > meisa_max_tag_length)
		return TAG_TOO_LONG;
	if (has_control(s + b, len - b))
		return TAG_CONTROL;
	return TAG_OK;
}

/* Trims a tag and checks it (not empty, no control characters, length); palloc'd. */
char *
tag_normalize(const char *s, int len, const char *field)
{
	int			start,
				tlen;

	switch (tag_problem(s, len, &start, &tlen))
	{
		case TAG_EMPTY:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("empty tag in field \"%s\"", field),
					 errdetail("Tags must hold at least one character besides spaces.")));
			break;
		case TAG_TOO_LONG:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("tag too long in field \"%s\"", field),
					 errdetail("meisa.max_tag_length allows %d characters.", meisa_max_tag_length)));
			break;
		case TAG_CONTROL:
			check_no_control(s + start, tlen, field);
			break;
		case TAG_OK:
			break;
	}
	return pnstrdup(s + start, tlen);
}

/* qsort comparator of C strings in byte order. */
static int
tag_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sorts and de-duplicates an array of normalised tags in place; returns the new count. */
int
tags_sort_unique(char **tags, int ntags)
{
	int			i,
				n = 0;
	bool		sorted = true;

	for (i = 1; i < ntags && sorted; i++)
		if (strcmp(tags[i - 1], tags[i]) >= 0)
			sorted = false;
	if (sorted)
		return ntags;
	qsort(tags, ntags, sizeof(char *), tag_cmp);
	for (i = 0; i < ntags; i++)
		if (n == 0 || strcmp(tags[n - 1], tags[i]) != 0)
			tags[n++] = tags[i];
	return n;
}

/* ERROR 54000 when a contact would have more than meisa.max_tags tags. */
void
tags_check_count(int ntags, const char *field)
{
	if (ntags > meisa_max_tags)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many tags in field \"%s\"", field),
				 errdetail("The contact would have %d tags; meisa.max_tags allows %d.",
						   ntags, meisa_max_tags)));
}

/*
 * The upsert payload's "topics": an object of topic names and booleans
 * ({"product-updates": false}); ERROR 22023 naming the field otherwise.
 * Whether each topic exists is checked when it is set (42704).
 */
JsonbContainer *
payload_topics(JsonbValue *v)
{
	JsonbIterator *it;
	JsonbValue	k,
				e;
	JsonbIteratorToken tok;

	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("field \"topics\" must be an object, not %s", payload_type_name(v))));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		JsonbIteratorNext(&it, &e, true);
		if (k.val.string.len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("field \"topics\" must not hold an empty topic name")));
		if (e.type != jbvBool)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("field \"topics.%s\" must be a boolean, not %s",
							payload_key_for_message(k.val.string.val, k.val.string.len),
							payload_type_name(&e))));
	}
	return v->val.binary.data;
}
