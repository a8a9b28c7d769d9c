/*
 * email.c
 *		Email addresses: an address is trimmed of surrounding spaces,
 *		lower-cased and then checked against the RFC 5321 shape that meisa
 *		accepts: exactly one '@', a local part of at most 64 bytes that is a
 *		dot-atom or a quoted string, a domain of dot-separated labels (letters,
 *		digits, inner hyphens, at most 63 bytes each) with at least one dot and
 *		a last label that is not all digits, at most 254 bytes in all, ASCII
 *		only, no spaces and no control characters.  Address literals
 *		("[1.2.3.4]") and comments are not accepted.
 */
#include "contacts/contacts.h"

/* True for the RFC 5322 atext characters other than letters and digits. */
static bool
is_atext_special(char c)
{
	return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

/* True for letters and digits. */
static bool
is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* NULL when the local part is a valid dot-atom or quoted string, else why not. */
static const char *
local_part_problem(const char *s, int len)
{
	int			i;

	if (len == 0)
		return "The local part (before the \"@\") is empty.";
	if (len > 64)
		return "The local part (before the \"@\") is longer than 64 bytes.";
	if (s[0] == '"')
	{
		if (len < 3 || s[len - 1] != '"')
			return "The quoted local part is not a closed, non-empty quoted string.";
		for (i = 1; i < len - 1; i++)
		{
			unsigned char c = (unsigned char) s[i];

			if (c == '\\')
			{
				i++;
				if (i >= len - 1)
					return "The quoted local part ends with a lone backslash.";
				c = (unsigned char) s[i];
				if (c < 33 || c > 126)
					return "The quoted local part escapes a character that is not printable ASCII.";
			}
			else if (c == '"')
				return "The quoted local part holds an unescaped double quote.";
			else if (c < 33 || c > 126)
				return "The quoted local part holds a space, control or non-ASCII character.";
		}
		return NULL;
	}
	if (s[0] == '.')
		return "The local part starts with a dot.";
	if (s[len - 1] == '.')
		return "The local part ends with a dot.";
	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if (c == '.')
		{
			if (s[i + 1] == '.')
				return "The local part holds two consecutive dots.";
		}
		else if (!is_alnum(c) && !is_atext_special(c))
			return "The local part holds a character that is not allowed outside quotes.";
	}
	return NULL;
}

/* NULL when the domain is a valid dotted host name, else why not. */
static const char *
domain_problem(const char *s, int len)
{
	int			start = 0;
	int			labels = 0;
	bool		last_all_digits = false;

	if (len == 0)
		return "The domain (after the \"@\") is empty.";
	while (start <= len)
	{
		int			end = start;
		bool		all_digits = true;

		while (end < len && s[end] != '.')
		{
			char		c = s[end];

			if (!is_alnum(c) && c != '-')
				return "The domain holds a character other than letters, digits, hyphens and dots.";
			if (!(c >= '0' && c <= '9'))
				all_digits = false;
			end++;
		}
		if (end == start)
			return "The domain has an empty label (a leading, trailing or double dot).";
		if (end - start > 63)
			return "A domain label is longer than 63 bytes.";
		if (s[start] == '-' || s[end - 1] == '-')
			return "A domain label starts or ends with a hyphen.";
		labels++;
		last_all_digits = all_digits;
		start = end + 1;
	}
	if (labels < 2)
		return "The domain has no dot.";
	if (last_all_digits)
		return "The top-level domain is all digits.";
	return NULL;
}

/* NULL when 's' (already normalised) is a valid address, else why it is not. */
const char *
email_problem(const char *s, int len)
{
	int			at = -1;
	int			i;

	if (len == 0)
		return "The address is empty.";
	if (len > EMAIL_MAX_LENGTH)
		return "The address is longer than 254 bytes.";
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 32 || c == 127)
			return "The address holds a control character.";
		if (c > 127)
			return "The address holds a non-ASCII character.";
		if (c == ' ')
			return "The address holds a space.";
		if (c == '@')
		{
			if (at >= 0)
				return "The address holds more than one \"@\".";
			at = i;
		}
	}
	if (at < 0)
		return "The address has no \"@\".";
	{
		const char *p = local_part_problem(s, at);

		if (p)
			return p;
	}
	return domain_problem(s + at + 1, len - at - 1);
}

/*
 * The address trimmed of surrounding spaces and lower-cased (ASCII letters:
 * a valid address has no others), palloc'd, without validating it; *outlen
 * (unless NULL) is its length.  Every lookup of a contact by email folds
 * the address this way, as email_normalize does before validating.
 */
char *
email_fold(const char *s, int len, int *outlen)
{
	char	   *out;
	int			i;

	while (len > 0 && s[0] == ' ')
	{
		s++;
		len--;
	}
	while (len > 0 && s[len - 1] == ' ')
		len--;
	out = palloc(len + 1);
	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		out[i] = (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
	}
	out[len] = '\0';
	if (outlen)
		*outlen = len;
	return out;
}

/*
 * Trims spaces, lower-cases and validates an address; returns the palloc'd
 * normalised form.  ERROR 22023 naming 'field' when it is not a valid address.
 */
char *
email_normalize(const char *s, int len, const char *field)
{
	char	   *out;
	const char *problem;

	out = email_fold(s, len, &len);
	if (len > EMAIL_MAX_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid email address in field \"%s\"", field),
				 errdetail("The address is longer than 254 bytes.")));
	problem = email_problem(out, len);
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid email address in field \"%s\"", field),
				 errdetail("%s", problem)));
	return out;
}
