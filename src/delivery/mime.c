/*
 * mime.c
 *		RFC 5322 / MIME message assembly and header checks.  A message is
 *		written in UTF-8 with CRLF line ends: the RFC 5322 header fields
 *		(Date, From with display name, Reply-To, To, Subject, Message-ID,
 *		MIME-Version, and for marketing mail List-Unsubscribe and
 *		List-Unsubscribe-Post per RFC 8058), folded at spaces so header lines
 *		stay within 78 characters (an ASCII display name as a folded
 *		quoted-string), non-ASCII header text and words too long to fold as
 *		RFC 2047 encoded-words of at most 75 characters; a value that cannot
 *		be folded (Message-ID, the List-Unsubscribe URL) is refused when its
 *		line would pass RFC 5322's 998 characters.  Addresses are judged by
 *		the rule that admits a contact's address (email.c).  The body is
 *		multipart/alternative (text/plain, then text/html) when both parts
 *		exist.  Bodies are quoted-printable with lines of at most 76
 *		characters; a line never starts with "." (encoded as =2E), so the
 *		SMTP dot-stuffing libcurl applies on upload never changes the content.
 */
#include "contacts/contacts.h"
#include "delivery/delivery.h"

#include "common/base64.h"
#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "utils/datetime.h"

#define MAX_LINE	78			/* recommended header line length (RFC 5322 §2.1.1) */
#define QP_LINE		76			/* quoted-printable line limit (RFC 2045 §6.7) */
#define EW_MAX		75			/* encoded-word limit (RFC 2047 §2) */
#define EW_OVERHEAD 12			/* strlen("=?UTF-8?B?") + strlen("?=") */

/* Rejects header values holding CR, LF or NUL (header injection). */
void
mime_check_header_value(const char *value, const char *field)
{
	/*
	 * A C string ends at its first NUL and PostgreSQL text cannot hold one,
	 * so a NUL never reaches this point; CR and LF are what is left to catch.
	 */
	if (value && strpbrk(value, "\r\n"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("header field \"%s\" must not contain CR, LF or NUL", field),
				 errdetail("A line break in a header value could inject other header fields."),
				 errhint("Remove the line breaks from the %s.", field)));
}

/* The string converted from the server encoding to UTF-8. */
static const char *
to_utf8(const char *s)
{
	if (s == NULL)
		return NULL;
	return (const char *) pg_server_to_any(s, strlen(s), PG_UTF8);
}

/* True when every byte is printable ASCII or a tab and no "=?" appears. */
static bool
plain_ascii(const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *) s; *p; p++)
		if ((*p < 0x20 && *p != '\t') || *p > 0x7E)
			return false;
	return strstr(s, "=?") == NULL;
}

/* Appends the base64 (standard alphabet, padded) of len bytes. */
static void
append_base64(StringInfo buf, const unsigned char *src, int len)
{
	int			need = pg_b64_enc_len(len);
	int			n;

	enlargeStringInfo(buf, need);
	n = pg_b64_encode((const char *) src, len, buf->data + buf->len, need);
	if (n < 0)
		elog(ERROR, "could not base64-encode %d bytes", len);
	buf->len += n;
	buf->data[buf->len] = '\0';
}

/* Length of the UTF-8 character starting at p (1 for stray bytes). */
static int
utf8_char_len(const unsigned char *p)
{
	int			n = pg_utf_mblen(p);
	int			i;

	for (i = 1; i < n; i++)
		if (p[i] == '\0')
			return 1;
	return n < 1 ? 1 : n;
}

/*
 * Appends UTF-8 text as encoded-words separated by folding (CRLF SP);
 * 'col' is the column where the first word starts.  Returns the column
 * after the last word.  Words never split a character.
 */
static int
append_encoded_words(StringInfo buf, const char *utf8, int col)
{
	const unsigned char *p = (const unsigned char *) utf8;
	bool		first = true;

	while (*p || first)
	{
		int			room = Min(EW_MAX, MAX_LINE - col) - EW_OVERHEAD;
		int			maxbytes;
		int			take = 0;

		if (!first || room < 8)
		{
			if (!first || col > 1)
			{
				appendStringInfoString(buf, "\r\n ");
				col = 1;
			}
			room = EW_MAX - EW_OVERHEAD;
		}
		maxbytes = room / 4 * 3;
		while (p[take])
		{
			int			n = utf8_char_len(p + take);

			if (take + n > maxbytes)
				break;
			take += n;
		}
		if (take == 0 && *p)
			take = utf8_char_len(p);	/* cannot happen: a character is at most 4 bytes */
		appendStringInfoString(buf, "=?UTF-8?B?");
		append_base64(buf, p, take);
		appendStringInfoString(buf, "?=");
		col += EW_OVERHEAD + (take + 2) / 3 * 4;
		p += take;
		first = false;
	}
	return col;
}

/* Appends ASCII text, folding before a space when a line grows past 78. */
static int
append_folded_ascii(StringInfo buf, const char *s, int col)
{
	int			i = 0;
	int			len = strlen(s);

	while (i < len)
	{
		/* a segment: from here to the next space that starts a word */
		int			j = i + 1;

		while (j < len && !(s[j] == ' ' && j + 1 < len && s[j + 1] != ' '))
			j++;
		if (col + (j - i) > MAX_LINE && i > 0 && s[i] == ' ')
		{
			appendStringInfoString(buf, "\r\n");
			col = 0;
		}
		appendBinaryStringInfo(buf, s + i, j - i);
		col += j - i;
		i = j;
	}
	return col;
}

/*
 * True when ASCII text folded at spaces keeps every line within 78
 * characters and has no leading or trailing blank (which parsers drop).
 */
static bool
folds_cleanly(const char *s, int col)
{
	StringInfoData tmp;
	const char *line;
	bool		ok = true;
	int			len = strlen(s);

	if (len > 0 && (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t'))
		return false;
	initStringInfo(&tmp);
	appendStringInfoSpaces(&tmp, col);
	append_folded_ascii(&tmp, s, col);
	for (line = tmp.data; ok && *line;)
	{
		const char *eol = strstr(line, "\r\n");

		if (eol == NULL)
			eol = line + strlen(line);
		ok = (eol - line) <= MAX_LINE;
		line = *eol ? eol + 2 : eol;
	}
	pfree(tmp.data);
	return ok;
}

/* Appends "Name: value\r\n" for unstructured text (Subject). */
static void
append_unstructured(StringInfo buf, const char *name, const char *value)
{
	int			col;
	const char *utf8 = to_utf8(value);

	appendStringInfo(buf, "%s: ", name);
	col = strlen(name) + 2;
	/* a word too long to fold, or edge blanks: encoded-words keep both intact */
	if (plain_ascii(utf8) && folds_cleanly(utf8, col))
		append_folded_ascii(buf, utf8, col);
	else if (utf8[0] != '\0')
		append_encoded_words(buf, utf8, col);
	appendStringInfoString(buf, "\r\n");
}

/* True when every byte is printable ASCII (no encoding needed). */
static bool
printable_ascii(const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *) s; *p; p++)
		if (*p < 0x20 || *p > 0x7E)
			return false;
	return true;
}

/*
 * Appends a display name, returning the column after it: printable ASCII as
 * a quoted-string folded at its spaces when every line then stays within 78
 * characters (RFC 5322 §3.2.4: the folds are not part of the name), anything
 * else (non-ASCII, "=?", a word too long to fold) as encoded-words.
 */
static int
append_display_name(StringInfo buf, const char *display, int col)
{
	const char *utf8 = to_utf8(display);

	if (printable_ascii(utf8) && strstr(utf8, "=?") == NULL)
	{
		StringInfoData quoted;
		const char *p;

		/* a quoted-string: escape quote and backslash */
		initStringInfo(&quoted);
		appendStringInfoChar(&quoted, '"');
		for (p = utf8; *p; p++)
		{
			if (*p == '"' || *p == '\\')
				appendStringInfoChar(&quoted, '\\');
			appendStringInfoChar(&quoted, *p);
		}
		appendStringInfoChar(&quoted, '"');
		if (folds_cleanly(quoted.data, col))
		{
			col = append_folded_ascii(buf, quoted.data, col);
			pfree(quoted.data);
			return col;
		}
		pfree(quoted.data);
	}
	return append_encoded_words(buf, utf8, col);
}

/* Appends "Name: display <addr>\r\n" for a mailbox header (From, Reply-To). */
static void
append_mailbox(StringInfo buf, const char *name, const char *value)
{
	char	   *display;
	char	   *addr;
	int			col;

	mime_parse_mailbox(value, name, &display, &addr);
	appendStringInfo(buf, "%s: ", name);
	col = strlen(name) + 2;
	if (display)
	{
		col = append_display_name(buf, display, col);
		if (col + (int) strlen(addr) + 3 > MAX_LINE)
			appendStringInfoString(buf, "\r\n");
		appendStringInfo(buf, " <%s>\r\n", addr);
	}
	else
		appendStringInfo(buf, "%s\r\n", addr);
}

/*
 * ERROR 22023 unless addr is an address meisa accepts for a contact: the
 * same rule (email.c) judges what is stored and what is sent, so every
 * address a contact can have is one delivery can send.
 */
static void
check_address(const char *addr, const char *field)
{
	const char *problem = email_problem(addr, strlen(addr));

	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid email address in %s: \"%s\"", field, addr),
				 errdetail("%s", problem)));
}

/*
 * The first of 'stops' in s outside quoted strings (where a backslash
 * escapes the next character), or NULL; with last, the last one instead.
 */
static const char *
find_unquoted(const char *s, const char *stops, bool last)
{
	const char *found = NULL;
	bool		quoted = false;

	for (; *s; s++)
	{
		if (quoted)
		{
			if (*s == '\\' && s[1] != '\0')
				s++;
			else if (*s == '"')
				quoted = false;
		}
		else if (*s == '"')
			quoted = true;
		else if (strchr(stops, *s) != NULL)
		{
			found = s;
			if (!last)
				break;
		}
	}
	return found;
}

/*
 * Splits "Name <addr>", "\"Name\" <addr>" or "addr" into the display name
 * (NULL when none) and the bare address.  Angle brackets inside quoted
 * strings (a display name, or a quoted local part such as "x>y"@example.com)
 * are text, not delimiters.
 */
void
mime_parse_mailbox(const char *value, const char *field, char **name, char **addr)
{
	const char *lt;
	const char *gt;
	char	   *n = NULL;
	char	   *a;

	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("missing email address in %s", field)));
	mime_check_header_value(value, field);
	lt = find_unquoted(value, "<", true);
	if (lt)
	{
		const char *start = value;
		const char *end = lt;

		gt = find_unquoted(lt + 1, ">", false);
		if (gt == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid mailbox in %s: \"%s\"", field, value),
					 errdetail("An address that opens with \"<\" must close with \">\".")));
		for (const char *q = gt + 1; *q; q++)
			if (*q != ' ' && *q != '\t')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid mailbox in %s: \"%s\"", field, value),
						 errdetail("Nothing may follow the address in angle brackets.")));
		a = pnstrdup(lt + 1, gt - lt - 1);
		while (start < end && (*start == ' ' || *start == '\t'))
			start++;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (end - start >= 2 && *start == '"' && end[-1] == '"')
		{
			StringInfoData sb;
			const char *q;

			initStringInfo(&sb);
			for (q = start + 1; q < end - 1; q++)
			{
				if (*q == '\\' && q + 1 < end - 1)
					q++;
				appendStringInfoChar(&sb, *q);
			}
			n = sb.data;
		}
		else if (end > start)
			n = pnstrdup(start, end - start);
		if (n && n[0] == '\0')
			n = NULL;
	}
	else
	{
		const char *start = value;
		const char *end = value + strlen(value);

		while (start < end && (*start == ' ' || *start == '\t'))
			start++;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		a = pnstrdup(start, end - start);
	}
	check_address(a, field);
	*name = n;
	*addr = a;
}

/* Appends the RFC 5322 date of ts in UTC: "Sun, 22 Nov 2026 13:53:09 +0000". */
static void
append_date(StringInfo buf, TimestampTz ts)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("message date out of range")));
	appendStringInfo(buf, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
					 days[j2day(date2j(tm.tm_year, tm.tm_mon, tm.tm_mday))],
					 tm.tm_mday, months[tm.tm_mon - 1], tm.tm_year,
					 tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * Appends text as quoted-printable with CRLF line ends: any of CRLF, CR or
 * LF in the input is a line break.
 */
static void
append_qp(StringInfo buf, const char *s)
{
	static const char hex_upper[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *) s;
	int			col = 0;

	while (*p)
	{
		unsigned char c = *p;
		bool		encode;
		char		piece[4];
		int			plen;

		if (c == '\r' || c == '\n')
		{
			appendStringInfoString(buf, "\r\n");
			col = 0;
			p += (c == '\r' && p[1] == '\n') ? 2 : 1;
			continue;
		}
		encode = (c == '=' || (c < 0x20 && c != '\t') || c > 0x7E);
		/* whitespace before a line break or the end must be encoded */
		if ((c == ' ' || c == '\t') && (p[1] == '\0' || p[1] == '\r' || p[1] == '\n'))
			encode = true;
		plen = encode ? 3 : 1;
		if (col + plen > QP_LINE - 1)
		{
			appendStringInfoString(buf, "=\r\n");
			col = 0;
		}
		/* a line starting with "." or "From " is encoded (SMTP, mbox) */
		if (col == 0 && (c == '.' || (c == 'F' && strncmp((const char *) p, "From ", 5) == 0)))
			encode = true, plen = 3;
		if (encode)
		{
			piece[0] = '=';
			piece[1] = hex_upper[c >> 4];
			piece[2] = hex_upper[c & 0x0F];
			appendBinaryStringInfo(buf, piece, 3);
		}
		else
			appendStringInfoCharMacro(buf, (char) c);
		col += plen;
		p++;
	}

	/*
	 * End with a line break so the next boundary (or the end of the message)
	 * starts a line: the content's own last line break when it has one,
	 * otherwise a soft line break, which decodes to nothing, so the content
	 * round-trips exactly (no line break is added to it).
	 */
	if (p > (const unsigned char *) s && p[-1] != '\r' && p[-1] != '\n')
		appendStringInfoString(buf, "=\r\n");
}

/* Appends one MIME body part's headers and quoted-printable content. */
static void
append_part(StringInfo buf, const char *subtype, const char *content)
{
	appendStringInfo(buf, "Content-Type: text/%s; charset=UTF-8\r\n", subtype);
	appendStringInfoString(buf, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	append_qp(buf, to_utf8(content));
}

/*
 * True when a Message-ID has angle brackets only as one enclosing pair
 * around a non-empty id ("<id@host>"), or none at all ("id@host").
 */
static bool
message_id_brackets_ok(const char *mid)
{
	size_t		len = strlen(mid);

	if (mid[0] != '<')
		return strpbrk(mid, "<>") == NULL;
	if (len < 3 || mid[len - 1] != '>')
		return false;
	return strcspn(mid + 1, "<>") == len - 2;
}

/* ERROR 54000 when a Message-ID is too long for its one header line. */
void
mime_check_message_id_length(const char *message_id)
{
	size_t		len;

	if (message_id == NULL)
		return;
	len = strlen(message_id);
	/* "Message-ID: " and the angle brackets the header adds when missing */
	if (len + 12 + (message_id[0] == '<' ? 0 : 2) > MIME_LINE_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message_id is too long: %zu characters", len),
				 errdetail("A Message-ID cannot be folded, and its header line may hold at most %d characters (RFC 5322).",
						   MIME_LINE_LIMIT)));
}

/*
 * ERROR 54000 when a line of the header section 'head' (CRLF line ends) is
 * longer than RFC 5322 allows; names the header field the line belongs to.
 * The builders above fold or refuse every value, so this is a last guard.
 */
static void
check_header_lines(const char *head)
{
	const char *line = head;
	const char *field = head;

	while (*line)
	{
		const char *eol = strstr(line, "\r\n");

		if (eol == NULL)
			eol = line + strlen(line);
		if (*line != ' ' && *line != '\t')
			field = line;
		if (eol - line > MIME_LINE_LIMIT)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("header field \"%.*s\" has a line of %d characters",
							(int) Min(strcspn(field, ":"), 64), field, (int) (eol - line)),
					 errdetail("RFC 5322 allows at most %d characters per line.", MIME_LINE_LIMIT)));
		line = *eol ? eol + 2 : eol;
	}
}

/* The message as RFC 5322 bytes with CRLF line ends (not dot-stuffed). */
char *
mime_build(const MimeMessage *msg)
{
	StringInfoData buf;
	const char *mid = msg->message_id;

	mime_check_header_value(msg->subject, "subject");
	mime_check_header_value(msg->message_id, "message_id");
	mime_check_header_value(msg->unsubscribe_url, "unsubscribe_url");
	if (mid == NULL || mid[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message_id must not be empty")));
	if (!printable_ascii(mid) || strchr(mid, ' ') || !message_id_brackets_ok(mid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid message_id: \"%s\"", mid),
				 errdetail("A Message-ID is printable ASCII without spaces, with angle brackets only around it.")));
	mime_check_message_id_length(mid);
	/* a bare address, as the envelope's RCPT TO sends it */
	if (msg->to == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("missing email address in to_email")));
	mime_check_header_value(msg->to, "to_email");
	check_address(msg->to, "to_email");

	initStringInfo(&buf);
	append_date(&buf, msg->date);
	append_mailbox(&buf, "From", msg->from);
	if (msg->reply_to && msg->reply_to[0] != '\0')
		append_mailbox(&buf, "Reply-To", msg->reply_to);
	appendStringInfo(&buf, "To: %s\r\n", msg->to);
	append_unstructured(&buf, "Subject", msg->subject ? msg->subject : "");
	if (mid[0] == '<')
		appendStringInfo(&buf, "Message-ID: %s\r\n", mid);
	else
		appendStringInfo(&buf, "Message-ID: <%s>\r\n", mid);
	appendStringInfoString(&buf, "MIME-Version: 1.0\r\n");
	if (msg->unsubscribe_url)
	{
		if (!printable_ascii(msg->unsubscribe_url))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("meisa.unsubscribe_base_url must be printable ASCII")));
		/*
		 * One line even past 78 characters (the limit is 998): a URL cannot
		 * be folded, and a value that starts on a continuation line keeps a
		 * leading blank in parsers (Python's email: " <https://...>").
		 */
		if (strlen(msg->unsubscribe_url) + 20 > MIME_LINE_LIMIT)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("meisa.unsubscribe_base_url is too long for the List-Unsubscribe header"),
					 errdetail("The unsubscribe URL takes %zu characters; a URL cannot be folded, and the header line may hold at most %d.",
							   strlen(msg->unsubscribe_url), MIME_LINE_LIMIT),
					 errhint("Use a base URL of at most %d characters.", UNSUBSCRIBE_BASE_URL_MAX)));
		appendStringInfo(&buf, "List-Unsubscribe: <%s>\r\n", msg->unsubscribe_url);
		appendStringInfoString(&buf, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
	}
	check_header_lines(buf.data);

	if (msg->text && msg->html)
	{
		/* "=_" never occurs in quoted-printable text, so it cannot clash */
		uint32		h = hash_bytes((const unsigned char *) mid, strlen(mid));
		char	   *boundary = psprintf("=_meisa_%08x_%zu", h, strlen(mid));

		appendStringInfo(&buf, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n", boundary);
		appendStringInfoString(&buf, "This is a multi-part message in MIME format.\r\n");
		appendStringInfo(&buf, "\r\n--%s\r\n", boundary);
		append_part(&buf, "plain", msg->text);
		appendStringInfo(&buf, "\r\n--%s\r\n", boundary);
		append_part(&buf, "html", msg->html);
		appendStringInfo(&buf, "\r\n--%s--\r\n", boundary);
	}
	else if (msg->html)
		append_part(&buf, "html", msg->html);
	else
		append_part(&buf, "plain", msg->text ? msg->text : "");
	return buf.data;
}
