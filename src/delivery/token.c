/*
 * token.c
 *		Signed unsubscribe tokens and URLs.  A token names a contact and the
 *		time it was issued, signed with HMAC-SHA256 under the key in the file
 *		meisa.secret_file names (read by secret.c), and written in base64url
 *		(RFC 4648 §5, no padding), so it can sit in a URL path or query.
 *		Verification recomputes the signature and compares it in constant
 *		time.  Layout of the 33 signed bytes:
 *		version (1) | contact id (8, big-endian) | issued, seconds since 1970
 *		(8, big-endian) | first 16 bytes of
 *		HMAC-SHA256(secret, "meisa-unsubscribe" | version | id | issued).
 */
#include "contacts/contacts.h"
#include "delivery/delivery.h"

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

StaticAssertDecl((TOKEN_BYTES * 4 + 2) / 3 == UNSUBSCRIBE_TOKEN_LENGTH,
				 "UNSUBSCRIBE_TOKEN_LENGTH must be the base64url length of a token");

PG_FUNCTION_INFO_V1(meisa_unsubscribe_url_sql);
PG_FUNCTION_INFO_V1(meisa_unsubscribe_token_contact_sql);

/* Writes the 16-byte signature of the token body into mac (the key must be set). */
static void
token_sign(const uint8 *body, uint8 *mac)
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
		pg_hmac_update(ctx, body, TOKEN_BODY) < 0 ||
		pg_hmac_final(ctx, full, sizeof(full)) < 0)
	{
		const char *err = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the unsubscribe token signature: %s", err)));
	}
	pg_hmac_free(ctx);
	memcpy(mac, full, TOKEN_MAC);
}

/*
 * The token's 33 bytes are a whole number of base64 groups: its base64url
 * form (44 characters) never needs padding, and base64url is base64 with
 * '-' and '_' for '+' and '/'.  PostgreSQL's encoder does the work; the
 * alphabet is mapped around it.
 */
StaticAssertDecl(TOKEN_BYTES % 3 == 0, "token bytes must fill whole base64 groups");
#define TOKEN_CHARS		(TOKEN_BYTES / 3 * 4)

/* Encodes the token's bytes as base64url (no padding needed). */
static char *
b64url_encode(const uint8 *src)
{
	char	   *out = palloc(TOKEN_CHARS + 1);
	int			n = pg_b64_encode((const char *) src, TOKEN_BYTES, out, TOKEN_CHARS);
	int			i;

	if (n != TOKEN_CHARS)
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

/* Decodes a token's base64url text into its bytes; false on any other input. */
static bool
b64url_decode_exact(const char *src, uint8 *dst)
{
	char		std[TOKEN_CHARS];
	char		out[TOKEN_BYTES + 3];	/* room for pg_b64_dec_len's bound */
	int			i;

	if (strlen(src) != TOKEN_CHARS)
		return false;
	for (i = 0; i < TOKEN_CHARS; i++)
	{
		char		c = src[i];

		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '+' || c == '/' || c == '=')
			return false;		/* not base64url, or padding it never has */
		std[i] = c;
	}
	if (pg_b64_decode(std, TOKEN_CHARS, out, sizeof(out)) != TOKEN_BYTES)
		return false;
	memcpy(dst, out, TOKEN_BYTES);
	return true;
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

/* The signed token for a contact issued at 'issued' (seconds since 1970). */
char *
unsubscribe_token_make(int64 contact_id, int64 issued)
{
	uint8		buf[TOKEN_BYTES];
	int			i;

	secret_require_token_key();
	buf[0] = TOKEN_VERSION;
	for (i = 0; i < 8; i++)
	{
		buf[1 + i] = ((uint64) contact_id >> (56 - 8 * i)) & 0xFF;
		buf[9 + i] = ((uint64) issued >> (56 - 8 * i)) & 0xFF;
	}
	token_sign(buf, buf + TOKEN_BODY);
	return b64url_encode(buf);
}

/* The unsubscribe URL of a contact with a token issued at 'issued'; NULL without meisa.secret_file. */
char *
unsubscribe_url_at(int64 contact_id, int64 issued)
{
	size_t		keylen;

	if (secret_token_key(&keylen) == NULL)
		return NULL;
	return psprintf("%s%s", meisa_unsubscribe_base_url ? meisa_unsubscribe_base_url : "",
					unsubscribe_token_make(contact_id, issued));
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
	char	   *url = unsubscribe_url_at(contact_id, issued_now());

	return url ? url : pstrdup("");
}

/*
 * The contact id a valid unsubscribe token names; ERROR 22023 when invalid
 * or when that contact does not exist.
 */
int64
unsubscribe_token_contact(const char *token)
{
	uint8		buf[TOKEN_BYTES];
	uint8		mac[TOKEN_MAC];
	uint64		id = 0;
	const char *base = meisa_unsubscribe_base_url;
	int			i;

	secret_require_token_key();
	if (token == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid unsubscribe token"),
				 errdetail("The token is null.")));
	/* a whole unsubscribe URL is accepted too */
	if (base && base[0] != '\0' && strncmp(token, base, strlen(base)) == 0)
		token += strlen(base);
	if (!b64url_decode_exact(token, buf) || buf[0] != TOKEN_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid unsubscribe token"),
				 errdetail("The token is not in the format meisa issues.")));
	token_sign(buf, mac);
	for (i = 0; i < 8; i++)
		id = (id << 8) | buf[1 + i];

	/*
	 * A token for a contact that does not exist (deleted since, or signed
	 * for a missing id by an older version) gets exactly the answer of a
	 * forged one, so the caller learns nothing about which ids exist.
	 */
	if (!equal_const_time(mac, buf + TOKEN_BODY, TOKEN_MAC) ||
		(int64) id <= 0 || !contact_exists((int64) id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid unsubscribe token"),
				 errdetail("The token's signature does not match, or it names no contact.")));
	return (int64) id;
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
