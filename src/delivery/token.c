/*
 * token.c
 *		Signed unsubscribe tokens and URLs.  A token names a contact and the
 *		time it was issued (and, for a message with a topic, the topic it
 *		leaves), signed with HMAC-SHA256 under the key in the file
 *		meisa.secret_file names (read by secret.c), and written in base64url
 *		(RFC 4648 §5, no padding), so it can sit in a URL path or query.
 *		Verification recomputes the signature and compares it in constant
 *		time.  Layouts of the signed bytes:
 *		version 1 (33 bytes, 44 characters): 1 | contact id (8, big-endian) |
 *		issued, seconds since 1970 (8, big-endian) | first 16 bytes of
 *		HMAC-SHA256(secret, "meisa-unsubscribe" | version | id | issued);
 *		version 2 (45 bytes, 60 characters): 2 | contact id (8) | issued (8) |
 *		topic id (8) | first 20 bytes of HMAC-SHA256(secret,
 *		"meisa-unsubscribe" | the 25 bytes before it).
 */
#include "contacts/contacts.h"
#include "delivery/delivery.h"
#include "policy/policy.h"

#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "access/xact.h"

#define TOKEN_VERSION	1
#define TOKEN_BODY		17		/* version + id + issued */
#define TOKEN_MAC		16
#define TOKEN_BYTES		(TOKEN_BODY + TOKEN_MAC)
#define TOKEN_CONTEXT	"meisa-unsubscribe"
/* version 2: a topic's token */
#define TOPIC_VERSION	2
#define TOPIC_BODY		25		/* version + id + issued + topic id */
#define TOPIC_MAC		20
#define TOPIC_BYTES		(TOPIC_BODY + TOPIC_MAC)

StaticAssertDecl(TOPIC_BYTES / 3 * 4 == UNSUBSCRIBE_TOKEN_LENGTH,
				 "UNSUBSCRIBE_TOKEN_LENGTH must be the base64url length of the longest token");
StaticAssertDecl(TOPIC_BYTES % 3 == 0, "topic token bytes must fill whole base64 groups");

PG_FUNCTION_INFO_V1(meisa_unsubscribe_url_sql);
PG_FUNCTION_INFO_V1(meisa_unsubscribe_token_contact_sql);
PG_FUNCTION_INFO_V1(meisa_unsubscribe_token_topic_sql);

/* Writes the signature (maclen bytes) of a token body of 'bodylen' bytes into mac. */
static void
token_sign(const uint8 *body, int bodylen, uint8 *mac, int maclen)
{
	pg_hmac_ctx *ctx;
	uint8		full[PG_SHA256_DIGEST_LENGTH];
	size_t		keylen;
	const char *key = secret_token_key(&keylen);

	Assert(key != NULL);
	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, (const uint8 *) key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) TOKEN_CONTEXT, strlen(TOKEN_CONTEXT)) < 0 ||
		pg_hmac_update(ctx, body, bodylen) < 0 ||
		pg_hmac_final(ctx, full, sizeof(full)) < 0)
	{
		const char *err = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the unsubscribe token signature: %s", err)));
	}
	pg_hmac_free(ctx);
	memcpy(mac, full, maclen);
}

/*
 * A token's bytes (33 or 45) are a whole number of base64 groups: its
 * base64url form (44 or 60 characters) never needs padding, and base64url
 * is base64 with '-' and '_' for '+' and '/'.  PostgreSQL's encoder does
 * the work; the alphabet is mapped around it.
 */
StaticAssertDecl(TOKEN_BYTES % 3 == 0, "token bytes must fill whole base64 groups");
#define TOKEN_CHARS		(TOKEN_BYTES / 3 * 4)
#define TOPIC_CHARS		(TOPIC_BYTES / 3 * 4)

/* Encodes a token's 'len' bytes as base64url (no padding needed). */
static char *
b64url_encode(const uint8 *src, int len)
{
	int			chars = len / 3 * 4;
	char	   *out = palloc(chars + 1);
	int			n = pg_b64_encode((const char *) src, len, out, chars);
	int			i;

	if (n != chars)
		elog(ERROR, "could not encode an unsubscribe token");
	for (i = 0; i < n; i++)
	{
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	out[n] = '\0';
	return out;
}

/*
 * Decodes a token's base64url text (44 or 60 characters) into its bytes;
 * returns how many (0 on any other input).
 */
static int
b64url_decode_exact(const char *src, uint8 *dst)
{
	char		std[TOPIC_CHARS];
	char		out[TOPIC_BYTES + 3];	/* room for pg_b64_dec_len's bound */
	int			chars = strlen(src);
	int			bytes = chars / 4 * 3;
	int			i;

	if (chars != TOKEN_CHARS && chars != TOPIC_CHARS)
		return 0;
	for (i = 0; i < chars; i++)
	{
		char		c = src[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '+' || c == '/' || c == '=')
			return 0;			/* not base64url, or padding it never has */
		std[i] = c;
	}
	if (pg_b64_decode(std, chars, out, sizeof(out)) != bytes)
		return 0;
	memcpy(dst, out, bytes);
	return bytes;
}

/* Compares two buffers in time independent of where they differ. */
static bool
equal_const_time(const uint8 *a, const uint8 *b, int len)
{
	volatile uint8 diff = 0;
	int			i;

	for (i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/* Writes 'v' big-endian into the 8 bytes at p. */
static void
put_be64(uint8 *p, uint64 v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (v >> (56 - 8 * i)) & 0xFF;
}

/* The 8 big-endian bytes at p. */
static uint64
get_be64(const uint8 *p)
{
	uint64		v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* The signed token for a contact issued at 'issued' (seconds since 1970). */
char *
unsubscribe_token_make(int64 contact_id, int64 issued)
{
	return unsubscribe_token_make_topic(contact_id, issued, 0);
}

/* The signed token for a contact and a topic (0 = none: a version 1 token). */
char *
unsubscribe_token_make_topic(int64 contact_id, int64 issued, int64 topic_id)
{
	uint8		buf[TOPIC_BYTES];

	secret_require_token_key();
	buf[0] = topic_id ? TOPIC_VERSION : TOKEN_VERSION;
	put_be64(buf + 1, (uint64) contact_id);
	put_be64(buf + 9, (uint64) issued);
	if (topic_id == 0)
	{
		token_sign(buf, TOKEN_BODY, buf + TOKEN_BODY, TOKEN_MAC);
		return b64url_encode(buf, TOKEN_BYTES);
	}
	put_be64(buf + 17, (uint64) topic_id);
	token_sign(buf, TOPIC_BODY, buf + TOPIC_BODY, TOPIC_MAC);
	return b64url_encode(buf, TOPIC_BYTES);
}

/* The unsubscribe URL of a contact with a token issued at 'issued'; NULL without meisa.secret_file. */
char *
unsubscribe_url_at(int64 contact_id, int64 issued)
{
	return unsubscribe_url_topic_at(contact_id, issued, 0);
}

/* unsubscribe_url_at for a message of a topic (0 = none); NULL without meisa.secret_file. */
char *
unsubscribe_url_topic_at(int64 contact_id, int64 issued, int64 topic_id)
{
	size_t		keylen;

	if (secret_token_key(&keylen) == NULL)
		return NULL;
	return psprintf("%s%s", meisa_unsubscribe_base_url ? meisa_unsubscribe_base_url : "",
					unsubscribe_token_make_topic(contact_id, issued, topic_id));
}

/* Seconds since 1970 of the current transaction's start. */
static int64
issued_now(void)
{
	return (int64) (timestamptz_to_time_t(GetCurrentTransactionStartTimestamp()));
}

/*
 * meisa.unsubscribe_base_url followed by a signed token for the contact; an
 * empty string when meisa.secret_file is unset (no link can be signed).
 */
char *
unsubscribe_url(int64 contact_id)
{
	return unsubscribe_url_topic(contact_id, 0);
}

/* unsubscribe_url for a message of a topic (0 = none). */
char *
unsubscribe_url_topic(int64 contact_id, int64 topic_id)
{
	char	   *url = unsubscribe_url_topic_at(contact_id, issued_now(), topic_id);

	return url ? url : pstrdup("");
}

/*
 * The contact id a valid unsubscribe token names, and in *topic_id the
 * topic it leaves (0 = all marketing mail); ERROR 22023 when invalid or
 * when that contact does not exist.
 */
int64
unsubscribe_token_verify(const char *token, int64 *topic_id)
{
	uint8		buf[TOPIC_BYTES];
	uint8		mac[TOPIC_MAC];
	int			n;
	int			body;
	int			maclen;
	uint64		id;
	const char *base = meisa_unsubscribe_base_url;

	secret_require_token_key();
	if (token == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid unsubscribe token"),
				 errdetail("The token is null.")));
	/* a whole unsubscribe URL is accepted too */
	if (base && base[0] != '\0' && strncmp(token, base, strlen(base)) == 0)
		token += strlen(base);
	n = b64url_decode_exact(token, buf);
	if (!((n == TOKEN_BYTES && buf[0] == TOKEN_VERSION) ||
		  (n == TOPIC_BYTES && buf[0] == TOPIC_VERSION)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid unsubscribe token"),
				 errdetail("The token is not in the format meisa issues.")));
	body = n == TOKEN_BYTES ? TOKEN_BODY : TOPIC_BODY;
	maclen = n - body;
	token_sign(buf, body, mac, maclen);
	id = get_be64(buf + 1);
	*topic_id = n == TOPIC_BYTES ? (int64) get_be64(buf + 17) : 0;

	/*
	 * A token for a contact that does not exist (deleted since, or signed
	 * for a missing id by an older version) gets exactly the answer of a
	 * forged one, so the caller learns nothing about which ids exist.
	 */
	if (!equal_const_time(mac, buf + body, maclen) ||
		(int64) id <= 0 || !contact_exists((int64) id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid unsubscribe token"),
				 errdetail("The token's signature does not match, or it names no contact.")));
	return (int64) id;
}

/* The contact id a valid unsubscribe token names (unsubscribe_token_verify). */
int64
unsubscribe_token_contact(const char *token)
{
	int64		topic_id;

	return unsubscribe_token_verify(token, &topic_id);
}

/*
 * SQL meisa.unsubscribe_url(contact_id bigint) returns text; ERROR P0002
 * for an id no contact has (no token is signed for it).
 */
Datum
meisa_unsubscribe_url_sql(PG_FUNCTION_ARGS)
{
	int64		contact_id = PG_GETARG_INT64(0);

	secret_require_token_key();
	if (!contact_exists(contact_id))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no contact has id %lld", (long long) contact_id),
				 errdetail("Unsubscribe links are signed only for existing contacts.")));
	PG_RETURN_TEXT_P(cstring_to_text(unsubscribe_url_at(contact_id, issued_now())));
}

/* SQL meisa.unsubscribe_token_contact(token text) returns bigint. */
Datum
meisa_unsubscribe_token_contact_sql(PG_FUNCTION_ARGS)
{
	char	   *token = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_INT64(unsubscribe_token_contact(token));
}

/*
 * SQL meisa.unsubscribe_token_topic(token text) returns text: the name of
 * the topic a valid token leaves, NULL for a token of all marketing mail
 * (or of a topic deleted since).
 */
Datum
meisa_unsubscribe_token_topic_sql(PG_FUNCTION_ARGS)
{
	char	   *token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		topic_id;
	char	   *name;

	unsubscribe_token_verify(token, &topic_id);
	name = topic_id ? topic_name_by_id(topic_id) : NULL;
	if (name == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(name));
}
