/*
 * email.h
 *		Email address normalisation and validation (RFC 5321 shape).
 */
#ifndef MEISA_EMAIL_H
#define MEISA_EMAIL_H

/* Longest address accepted, in bytes (RFC 5321 path limit minus the brackets). */
#define EMAIL_MAX_LENGTH 254

/*
 * Trims spaces, lower-cases and validates an address; returns the palloc'd
 * normalised form.  ERROR 22023 naming 'field' when it is not a valid address.
 */
extern char *email_normalize(const char *s, int len, const char *field);

/* NULL when 's' (already normalised) is a valid address, else why it is not. */
extern const char *email_problem(const char *s, int len);

#endif							/* MEISA_EMAIL_H */
