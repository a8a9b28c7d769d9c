/*
 * token.c
 *		Signed unsubscribe tokens and URLs.  A token names a contact and the
 *		time it was issued, signed with HMAC-SHA256 under meisa.secret and
 *		written in base64url (RFC 4648 §5, no padding), so it can sit in a URL
 *		path or query.  Verification recomputes the signature and compares it
 *		in constant time.  Layout of the 33 signed bytes:
 *		version (1) | contact id (8, big-endian) | issued, seconds since 1970
 *		(8, big-endian) | first 16 bytes of
 *		HMAC-SHA256(secret, "meisa-unsubscribe" | version | id | issued).
 */
#include "delivery.h"

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

static const char b64url[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Errors out unless meisa.secret is set. */
static void
require_secret(void)
{
	if (meisa_secret == NULL || meisa_secret[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("meisa.secret is not set"),
				 errdetail("Unsubscribe tokens are signed with meisa.secret."),
				 errhint("Set meisa.secret in postgresql.conf (a long random string) and reload.")));
}

/* Writes the 16-byte signature of the token body into mac. */
static void
token_sign(const uint8 *body, uint8 *mac)
{
	pg_hmac_ctx *ctx;
	uint8		full[PG_SHA256_DIGEST_LENGTH];

	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, (const uint8 *) meisa_secret, strlen(meisa_secret)) < 0 ||
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

/* Encodes len bytes as base64url without padding. */
static char *
b64url_encode(const uint8 *src, int len)
{
	char	   *out = palloc((len + 2) / 3 * 4 + 1);
	char	   *p = out;
	int			i;

	for (i = 0; i + 2 < len; i += 3)
	{
		uint32		v = (src[i] << 16) | (src[i + 1] << 8) | src[i + 2];

		*p++ = b64url[(v >> 18) & 63];
		*p++ = b64url[(v >> 12) & 63];
		*p++ = b64url[(v >> 6) & 63];
		*p++ = b64url[v & 63];
	}
	if (len - i == 1)
	{
		uint32		v = src[i] << 16;

		*p++ = b64url[(v >> 18) & 63];
		*p++ = b64url[(v >> 12) & 63];
	}
	else if (len - i == 2)
	{
		uint32		v = (src[i] << 16) | (src[i + 1] << 8);

		*p++ = b64url[(v >> 18) & 63];
		*p++ = b64url[(v >> 12) & 63];
		*p++ = b64url[(v >> 6) & 63];
	}
	*p = '\0';
	return out;
}

/* Decodes exactly 'len' bytes of base64url; false on any other input. */
static bool
b64url_decode_exact(const char *src, uint8 *dst, int len)
{
	int			need = (len * 4 + 2) / 3;
	uint32		acc = 0;
	int			bits = 0;
	int			n = 0;
	int			i;

	if ((int) strlen(src) != need)
		return false;
	for (i = 0; i < need; i++)
	{
		const char *pos = strchr(b64url, src[i]);

		if (src[i] == '\0' || pos == NULL)
			return false;
		acc = (acc << 6) | (uint32) (pos - b64url);
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			if (n < len)
				dst[n++] = (acc >> bits) & 0xFF;
		}
	}
	/* leftover bits must be zero (canonical encoding) */
	if (bits > 0 && (acc & ((1 << bits) - 1)) != 0)
		return false;
	return n == len;
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

	require_secret();
	buf[0] = TOKEN_VERSION;
	for (i = 0; i < 8; i++)
	{
		buf[1 + i] = ((uint64) contact_id >> (56 - 8 * i)) & 0xFF;
		buf[9 + i] = ((uint64) issued >> (56 - 8 * i)) & 0xFF;
	}
	token_sign(buf, buf + TOKEN_BODY);
	return b64url_encode(buf, TOKEN_BYTES);
}

/* The unsubscribe URL of a contact with a token issued at 'issued'; NULL without meisa.secret. */
char *
unsubscribe_url_at(int64 contact_id, int64 issued)
{
	if (meisa_secret == NULL || meisa_secret[0] == '\0')
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
 * empty string when meisa.secret is unset (no link can be signed).
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

	require_secret();
	if (token == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid unsubscribe token"),
				 errdetail("The token is null.")));
	/* a whole unsubscribe URL is accepted too */
	if (base && base[0] != '\0' && strncmp(token, base, strlen(base)) == 0)
		token += strlen(base);
	if (!b64url_decode_exact(token, buf, TOKEN_BYTES) || buf[0] != TOKEN_VERSION)
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

	require_secret();
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
