/*
 * meisa.c
 *		Module entry point: _PG_init asks every module to define its settings
 *		(and the delivery module to register its background worker), then
 *		reserves the "meisa." settings prefix.
 */
#include "common/common.h"
#include "templates/templates.h"
#include "contacts/contacts.h"
#include "delivery/delivery.h"
#include "outbox/outbox.h"
#include "policy/policy.h"
#include "broadcasts/broadcasts.h"
#include "segments/segments.h"
#include "automations/automations.h"

#include "miscadmin.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Defines every meisa setting and, when preloaded, the background worker. */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	contacts_init();
	template_init();
	outbox_init();
	sequence_init();
	policy_init();
	broadcasts_init();
	automation_init();
	segment_maint_init();
	delivery_init();
	restore_init();

	MarkGUCPrefixReserved("meisa");
}
