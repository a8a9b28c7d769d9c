/*
 * curl_prelude.h
 *		Every libcurl include of meisa and the libcurl version checks, in one
 *		place: the SMTP client (smtp.c, smtp_multi.c, through smtp_session.h)
 *		includes this header only.
 */
#ifndef MEISA_CURL_PRELUDE_H
#define MEISA_CURL_PRELUDE_H

#include <curl/curl.h>

/* CURLOPT_PROTOCOLS_STR replaced the bitmask CURLOPT_PROTOCOLS in 7.85.0. */
#if LIBCURL_VERSION_NUM >= 0x075500
#define MEISA_CURL_HAS_PROTOCOLS_STR 1
#else
#define MEISA_CURL_HAS_PROTOCOLS_STR 0
#endif

/*
 * CURLOPT_XFERINFOFUNCTION (progress with curl_off_t) appeared in 7.32.0,
 * CURLINFO_ACTIVESOCKET (the socket of one transfer in a multi handle) and
 * curl_multi_wait's behaviour relied on in 7.45.0.
 */
#if LIBCURL_VERSION_NUM < 0x072D00
#error "meisa needs libcurl 7.45.0 or later"
#endif

#endif							/* MEISA_CURL_PRELUDE_H */
