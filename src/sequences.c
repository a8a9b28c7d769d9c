/*
 * sequences.c
 *		Drip sequences: enrolment, unenrolment and meisa_run_due.
 *		(Skeleton: filled in by the sequence work.)
 */
#include "meisa.h"

/* Defines the sequence settings. */
void
sequence_init(void)
{
}

/* Enrols a contact in a sequence (skeleton: not yet available). */
int64
sequence_enroll(int64 contact_id, const char *sequence_name)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("meisa: sequences are not available yet")));
	return 0;
}

/* Removes a contact from a sequence (skeleton: not yet available). */
bool
sequence_unenroll(int64 contact_id, const char *sequence_name)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("meisa: sequences are not available yet")));
	return false;
}
