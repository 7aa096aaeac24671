/*
 * policy.h: the last word before a marketing message goes out.
 *
 * Quiet hours (policy.quiet_hours in nudge.yaml) hold a message until the
 * quiet window ends in the customer's own zone. Frequency caps
 * (policy.max_per_day, policy.max_per_week) count marketing email and SMS
 * per local calendar day in the customer's zone (a week is that day and the
 * six before it); a message over a cap waits for the next local day the caps
 * allow (after quiet hours, if that morning is quiet), or, for a rule with
 * `on_cap: drop`, is recorded as suppressed with the reason. On a crowded
 * day, rule `priority` decides: a message lets through only while room is
 * left for the customer's messages of higher-priority rules still due that
 * day. Both apply to customer-facing marketing channels (email, sms); care
 * rules, tasks and webhooks are never held or capped.
 *
 * Why caps cannot be passed by two slots at once: each slot (email and SMS
 * run several in parallel, each with its own connection) decides its
 * batch's caps with policy_admit inside one write transaction (BEGIN
 * IMMEDIATE), counting and marking what it lets through (deliveries.cap_at)
 * before the batch is sent. SQLite admits one writer at a time, so the
 * count a slot reads includes everything every other slot let through, sent
 * or still on its way; and the transaction is short (a few indexed reads
 * per message, no network), so slots barely wait for each other. This was
 * chosen over serialising claims per customer, which would change the
 * claim query every channel shares and hold back care messages too.
 */
#ifndef NUDGE_POLICY_H
#define NUDGE_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

struct config;
struct ruleset;

enum policy_verdict {
    POLICY_SEND,  /* go ahead */
    POLICY_DEFER, /* quiet hours or a cap: try again at *until */
    POLICY_DROP,  /* over a frequency cap with on_cap: drop: suppressed with *why */
};

/* Quiet hours, at render time (inside the batch's read transaction). */
enum policy_verdict policy_check(struct store *st, const struct config *cfg, bool marketing,
                                 const char *channel, int64_t customer_id, const char *tz,
                                 ntime_t now, ntime_t *until, char *why, size_t whylen);

/* One rendered message for policy_admit. */
struct policy_msg {
    int64_t delivery_id;
    int64_t customer_id;
    const char *rule;    /* its rule's name (priority, on_cap) */
    const char *channel; /* only marketing email and sms are counted */
    bool marketing;
    const char *tz;      /* the customer's zone; NULL: the default zone */
    ntime_t due_at;
    /* Out: POLICY_SEND (let through and counted), POLICY_DEFER until, or POLICY_DROP. */
    enum policy_verdict verdict;
    ntime_t until;
    char why[200];
};

/*
 * Frequency caps for n messages about to be sent, in one write transaction
 * of st (see above), highest priority first. Returns 0, or a negative errno
 * when the store failed (then every capped channel message is deferred by a
 * minute: nothing over a cap goes out because a count could not be read).
 */
int policy_admit(struct store *st, const struct config *cfg, const struct ruleset *rs, ntime_t now,
                 struct policy_msg *m, size_t n);

/* Minutes after local midnight -> inside the window [start, end) (wrapping midnight). */
bool policy_in_quiet(int start, int end, int minute_of_day);

#endif
