/*
 * store_consent.h: consents and the suppression list as sending reads them
 * (may this message reach this address?), and the consent an unsubscribe
 * link withdraws (http.c), and what a recipient's permanent fault adds to
 * the suppression list (dispatch.c).
 */
#ifndef NUDGE_STORE_CONSENT_H
#define NUDGE_STORE_CONSENT_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct store;

/* Why a message may not go out (store_send_blocked). */
enum store_block {
    STORE_SEND_ALLOWED = 0,
    STORE_SEND_NO_CONSENT = 1, /* the customer withdrew consent for the channel */
    STORE_SEND_SUPPRESSED = 2, /* the address is on the channel's suppression list */
};

/*
 * Whether customer customer_id (customers.id) explicitly withdrew consent
 * for channel (a consent never given is no withdrawal), or else whether
 * address (NULL: none) is suppressed on channel, with the suppression's
 * reason copied to reason ("" when it has none). One statement, kept
 * prepared: it runs once per marketing message. A store_block, or -EIO.
 */
int store_send_blocked(struct store *st, int64_t customer_id, const char *channel,
                       const char *address, char *reason, size_t reasonlen);

/*
 * Withdraws the consent of the customer with ext_id for channel (granted 0,
 * updated at `at`, with `source`) and puts an 'unsubscribed' entry (detail)
 * on their timeline, in one transaction; a consent withdrawn already is
 * left as it is (no second timeline entry). 0, -ENOENT if there is no such
 * customer, -EIO.
 */
int store_consent_withdraw(struct store *st, const char *ext_id, const char *channel,
                           const char *source, ntime_t at, const char *detail);

/*
 * Puts address on channel's suppression list with reason (a recipient's
 * permanent fault), unless it is there already. In the caller's
 * transaction. 0, or -EIO.
 */
int store_suppress(struct store *st, const char *channel, const char *address,
                   const char *reason, ntime_t at);

#endif
