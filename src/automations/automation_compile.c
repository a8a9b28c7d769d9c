/*
 * automation_compile.c
 *		Compiles an automation row (trigger, trigger_filter, conditions,
 *		actions) into an Automation: used by the row validator, which rejects
 *		a bad rule naming the offending part, and by the rule cache, which
 *		keeps a broken stored row as a failing automation instead of failing
 *		the write that fired it.  No catalog access here.
 */
#include "contacts/contacts.h"
#include "conditions/conditions.h"
#include "automations/automations.h"

#include "utils/builtins.h"

static const char *const trigger_names[MEISA_NTRIGGERS] = {
	"contact_created", "contact_updated", "tag_added", "tag_removed",
	"custom_event", "sequence_enrolled", "segment_entered", "segment_exited"
};

static const char *const action_names[] = {
	"add_tag", "remove_tag", "set_field", "enroll", "unenroll",
	"send_email", "notify", "unsubscribe"
};

/* The trigger named 'name'; false when there is none. */
bool
automation_trigger_from_name(const char *name, MeisaTrigger *trigger)
{
	for (int i = 0; i < MEISA_NTRIGGERS; i++)
	{
		if (strcmp(trigger_names[i], name) == 0)
		{
			*trigger = (MeisaTrigger) i;
			return true;
		}
	}
	return false;
}

/* The name of a trigger. */
const char *
automation_trigger_name(MeisaTrigger trigger)
{
	if ((int) trigger < 0 || (int) trigger >= MEISA_NTRIGGERS)
		return "unknown";
	return trigger_names[trigger];
}

static bool compile_fail(char **error, const char *path, const char *fmt,...) pg_attribute_printf(3, 4);

/* Sets *error to "path: message" and returns false. */
static bool
compile_fail(char **error, const char *path, const char *fmt,...)
{
	va_list		args;

	va_start(args, fmt);
	*error = compile_error_va(path, fmt, args);
	va_end(args);
	return false;
}

/* A non-empty string without control characters; false when not. */
static bool
plain_string(const JsonbValue *v, char **out)
{
	if (v->type != jbvString || v->val.string.len == 0)
		return false;
	for (int i = 0; i < v->val.string.len; i++)
		if ((unsigned char) v->val.string.val[i] < 0x20)
			return false;
	*out = pnstrdup(v->val.string.val, v->val.string.len);
	return true;
}

/* True when 'name' matches ^[A-Za-z_][A-Za-z0-9_]{0,63}$. */
static bool
custom_field_name(const char *name)
{
	int			len = strlen(name);

	if (len < 1 || len > 64)
		return false;
	for (int i = 0; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
			  (i > 0 && c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

/* Compiles {"set_field": {"custom_fields.x": V, ...}}. */
static bool
compile_set_field(AutomationAction *act, const JsonbValue *v, const char *path,
				  char **error)
{
	JsonbIterator *it;
	JsonbValue	tok;
	JsonbIteratorToken r;
	JsonbParseState *state = NULL;
	char	   *key = NULL;
	int			nset = 0;
	int			cap = 4;

	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		return compile_fail(error, path, "expected an object such as {\"custom_fields.plan\": \"pro\"}");
	act->remove = palloc(sizeof(char *) * cap);
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(v->val.binary.data);
	while ((r = JsonbIteratorNext(&it, &tok, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
		{
			key = pnstrdup(tok.val.string.val, tok.val.string.len);
			if (strncmp(key, "custom_fields.", 14) != 0 || !custom_field_name(key + 14))
				return compile_fail(error, path,
									"cannot set \"%s\" (only custom_fields.NAME, NAME matching ^[A-Za-z_][A-Za-z0-9_]{0,63}$)",
									key);
		}
		else if (r == WJB_VALUE)
		{
			char	   *fname = key + 14;

			if (tok.type == jbvNull)
			{
				if (act->nremove == cap)
				{
					cap *= 2;
					act->remove = repalloc(act->remove, sizeof(char *) * cap);
				}
				act->remove[act->nremove++] = pstrdup(fname);
			}
			else if (tok.type == jbvString || tok.type == jbvNumeric || tok.type == jbvBool)
			{
				JsonbValue	k;

				k.type = jbvString;
				k.val.string.val = fname;
				k.val.string.len = strlen(fname);
				pushJsonbValue(&state, WJB_KEY, &k);
				pushJsonbValue(&state, WJB_VALUE, &tok);
				nset++;
			}
			else
				return compile_fail(error, psprintf("%s.%s", path, key),
									"a custom field value must be a string, number, boolean or null");
		}
	}
	if (nset == 0 && act->nremove == 0)
		return compile_fail(error, path, "no field to set");
	act->set_values = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
	return true;
}

/* Compiles {"notify": {"channel": "c", "message": "template"}}. */
static bool
compile_notify(AutomationAction *act, const JsonbValue *v, const char *path,
			   char **error)
{
	JsonbIterator *it;
	JsonbValue	tok;
	JsonbIteratorToken r;
	char	   *key = NULL;

	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		return compile_fail(error, path, "expected an object {\"channel\": \"...\", \"message\": \"...\"}");
	it = JsonbIteratorInit(v->val.binary.data);
	while ((r = JsonbIteratorNext(&it, &tok, true)) != WJB_DONE)
	{
		if (r == WJB_KEY)
			key = pnstrdup(tok.val.string.val, tok.val.string.len);
		else if (r == WJB_VALUE)
		{
			if (strcmp(key, "channel") == 0)
			{
				if (!plain_string(&tok, &act->channel))
					return compile_fail(error, psprintf("%s.channel", path), "expected a non-empty string");
			}
			else if (strcmp(key, "message") == 0)
			{
				if (tok.type != jbvString)
					return compile_fail(error, psprintf("%s.message", path), "expected a string (a Mustache template)");
				act->message = pnstrdup(tok.val.string.val, tok.val.string.len);
			}
			else
				return compile_fail(error, path, "unknown key \"%s\" (expected \"channel\" and \"message\")", key);
		}
	}
	if (act->channel == NULL)
		return compile_fail(error, path, "\"channel\" is required");
	if (act->message == NULL)
		return compile_fail(error, path, "\"message\" is required");
	return true;
}

/* Compiles the action array into a->actions. */
static bool
compile_actions(Automation *a, Jsonb *actions, char **error)
{
	JsonbIterator *it;
	JsonbValue	tok;
	JsonbIteratorToken r;
	int			n,
				idx = 0;

	if (actions == NULL || !JB_ROOT_IS_ARRAY(actions) || JB_ROOT_IS_SCALAR(actions))
		return compile_fail(error, "actions", "expected a non-empty array of actions");
	n = JB_ROOT_COUNT(actions);
	if (n == 0)
		return compile_fail(error, "actions", "expected a non-empty array of actions");
	a->actions = palloc0(sizeof(AutomationAction) * n);
	a->nactions = n;
	it = JsonbIteratorInit(&actions->root);
	while ((r = JsonbIteratorNext(&it, &tok, true)) != WJB_DONE)
	{
		AutomationAction *act;
		char	   *path;
		JsonbIterator *it2;
		JsonbValue	t2,
					val = {0};
		JsonbIteratorToken r2;
		char	   *key = NULL;
		int			nkeys = 0,
					kind = -1;

		if (r != WJB_ELEM)
			continue;
		act = &a->actions[idx];
		path = psprintf("actions[%d]", idx);
		idx++;
		if (tok.type != jbvBinary || !JsonContainerIsObject(tok.val.binary.data))
			return compile_fail(error, path, "an action must be an object such as {\"add_tag\": \"x\"}");
		it2 = JsonbIteratorInit(tok.val.binary.data);
		while ((r2 = JsonbIteratorNext(&it2, &t2, true)) != WJB_DONE)
		{
			if (r2 == WJB_KEY)
			{
				nkeys++;
				key = pnstrdup(t2.val.string.val, t2.val.string.len);
			}
			else if (r2 == WJB_VALUE)
				val = t2;
		}
		if (nkeys != 1)
			return compile_fail(error, path, "an action must have exactly one key, found %d", nkeys);
		for (int k = 0; k < (int) lengthof(action_names); k++)
			if (strcmp(action_names[k], key) == 0)
				kind = k;
		if (kind < 0)
			return compile_fail(error, path, "unknown action \"%s\"", key);
		act->kind = (ActionKind) kind;
		path = psprintf("%s.%s", path, key);
		switch (act->kind)
		{
			case ACT_ADD_TAG:
			case ACT_REMOVE_TAG:
				if (!plain_string(&val, &act->name))
					return compile_fail(error, path, "expected a tag name (a non-empty string)");
				{
					/* trimmed as tags are stored, so remove_tag " x " removes "x" */
					int			start,
								tlen;

					(void) tag_problem(act->name, strlen(act->name), &start, &tlen);
					act->name = pnstrdup(act->name + start, tlen);
				}
				break;
			case ACT_ENROLL:
			case ACT_UNENROLL:
				if (!plain_string(&val, &act->name))
					return compile_fail(error, path, "expected a sequence name (a non-empty string)");
				break;
			case ACT_SEND_EMAIL:
				if (!plain_string(&val, &act->name))
					return compile_fail(error, path, "expected a template key (a non-empty string)");
				break;
			case ACT_SET_FIELD:
				if (!compile_set_field(act, &val, path, error))
					return false;
				break;
			case ACT_NOTIFY:
				if (!compile_notify(act, &val, path, error))
					return false;
				break;
			case ACT_UNSUBSCRIBE:
				if (val.type != jbvBool || !val.val.boolean)
					return compile_fail(error, path, "expected true");
				break;
		}
	}
	return true;
}

/*
 * Compiles an automation's parts into 'a' (in the current memory context);
 * false with *error = "PATH: message" when invalid.  No catalog lookups.
 */
bool
automation_compile(Automation *a, const char *trigger, const char *filter,
				   Jsonb *conditions, Jsonb *actions, char **error)
{
	int			allow = COND_ALLOW_CHANGES;

	*error = NULL;
	if (!automation_trigger_from_name(trigger, &a->trigger))
		return compile_fail(error, "trigger",
							"unknown trigger \"%s\" (expected contact_created, contact_updated, tag_added, tag_removed, custom_event, sequence_enrolled, segment_entered or segment_exited)",
							trigger);
	if (filter != NULL)
	{
		if (a->trigger == MEISA_TRIGGER_CONTACT_CREATED ||
			a->trigger == MEISA_TRIGGER_CONTACT_UPDATED)
			return compile_fail(error, "trigger_filter",
								"trigger %s takes no filter (use conditions)", trigger);
		if (filter[0] == '\0')
			return compile_fail(error, "trigger_filter", "must not be empty (use null for any)");
		a->filter = pstrdup(filter);
		/* a filter no event name can have would never fire */
		if (a->trigger == MEISA_TRIGGER_CUSTOM_EVENT &&
			!event_name_valid(filter, (int) strlen(filter)))
			return compile_fail(error, "trigger_filter",
								"invalid event name \"%s\" (event names match ^[A-Za-z0-9_.:-]{1,100}$)",
								filter);
	}
	if (a->trigger == MEISA_TRIGGER_CUSTOM_EVENT)
		allow |= COND_ALLOW_EVENT;
	a->cond = condition_compile(conditions, "conditions", allow, error);
	if (*error)
		return false;
	return compile_actions(a, actions, error);
}
