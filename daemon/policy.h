/*
 * policy.h: the last word before a marketing message goes out.
 *
 * Quiet hours (policy.quiet_hours in nudge.yaml) hold a message until the
 * quiet window ends in the customer's own zone; frequency caps
 * (policy.max_per_day, policy.max_per_week) drop a message that would be one
 * too many, as Braze and Customer.io do, with the reason kept on the
 * delivery (state suppressed). Both apply to customer-facing marketing
 * channels (email, sms); care rules, tasks and webhooks are never held or
 * capped. Caps count marketing messages sent on email and sms in the 24
 * hours and 7 days before now (not yet those in the same dispatch batch).
 */
#ifndef NUDGE_POLICY_H
#define NUDGE_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

struct config;

enum policy_verdict {
    POLICY_SEND,  /* go ahead */
    POLICY_DEFER, /* quiet hours: try again at *until */
    POLICY_DROP,  /* over a frequency cap: suppressed with *why */
};

enum policy_verdict policy_check(struct store *st, const struct config *cfg, bool marketing,
                                 const char *channel, int64_t customer_id, const char *tz,
                                 ntime_t now, ntime_t *until, char *why, size_t whylen);

/* Minutes after local midnight -> inside the window [start, end) (wrapping midnight). */
bool policy_in_quiet(int start, int end, int minute_of_day);

#endif
