/*
 * channel_registry.h: what each channel is, in one table (channel.c).
 *
 * A channel is what a rule action names (email, sms, webhook, task) and what
 * nudge.yaml configures under `channels:`; a transport backend carries it
 * (include/nudge/channel.h). Everything that needs to know the channels
 * (config checks, the rule loader, the audience language's consents(),
 * import's consent_<name> columns, policy, the dispatcher's suppression)
 * reads this table instead of naming them, so a new channel is one row here
 * plus its backend.
 *
 * The table's order is the order of enum action_kind in rules.h (email,
 * sms, webhook, task): the rule loader stores the row's index as the kind.
 */
#ifndef NUDGE_CHANNEL_REGISTRY_H
#define NUDGE_CHANNEL_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

/* What a channel's address (nudge_message.to) is. */
enum channel_address {
    CHAN_ADDR_EMAIL, /* an email address, from the customer's `email` */
    CHAN_ADDR_PHONE, /* a phone number (E.164 once normalised), from `phone` */
    CHAN_ADDR_URL,   /* a URL the rule action gives */
    CHAN_ADDR_STAFF, /* a staff member (the customer's owner or a pool) */
};

struct channel_info {
    const char *name;            /* as in rules and nudge.yaml: "email" */
    enum channel_address address; /* what `to` is */
    const char *address_desc;    /* the same for people: "email address" */
    /* The customer field the address comes from ("email", "phone"); a
     * customer without it is skipped. NULL: the address is not the
     * customer's (a URL, a staff member). */
    const char *customer_field;
    /* A recipient fault (BLAME_RECIPIENT) puts the address on the
     * suppression list; `suppression` says what that means. */
    bool suppresses;
    const char *suppression;
    /* The consent name: consents('<consent>') in audiences, the import
     * column consent_<consent>, the consents table's channel. NULL: the
     * channel does not reach the customer and asks no consent. */
    const char *consent;
    /* Marketing policy (quiet hours, frequency caps) applies to marketing
     * messages on this channel. */
    bool policy;
    /* Parallel sessions when neither the channel, the transport nor
     * dispatch.concurrency says otherwise. */
    int default_concurrency;
    /* The transport nudge.yaml gets when it has no `channels:` at all. */
    const char *default_transport;
};

/* The channels, in enum action_kind order; ends with a row whose name is NULL. */
extern const struct channel_info channel_infos[];
/* Number of rows (without the terminator). */
extern const size_t channel_count;

/* The row of channel `name`, or NULL. */
const struct channel_info *channel_info_find(const char *name);
/* The row whose consent name is `consent`, or NULL. */
const struct channel_info *channel_info_by_consent(const char *consent);
/* The channel names, NULL-terminated (for did_you_mean and hints). */
const char *const *channel_names(void);
/* The consent names (consents('…'), consent_<name> columns), NULL-terminated. */
const char *const *channel_consent_names(void);
/* The channel whose address is an email address (task notifications), or NULL. */
const struct channel_info *channel_info_by_address(enum channel_address address);
/* "email, sms, webhook, task": the names joined for a message (static). */
const char *channel_names_joined(void);

#endif
