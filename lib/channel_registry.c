/*
 * channel_registry.c: the one table of channels (what each is, see
 * channel_registry.h). A new channel is one row in channel_infos plus a
 * transport that carries it (channels/).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "channel_registry.h"

const struct channel_info channel_infos[] = {
    {
        .name = "email",
        .address = CHAN_ADDR_EMAIL,
        .address_desc = "email address",
        .customer_field = "email",
        .suppresses = true,
        .suppression = "the email address (an unknown or refused mailbox)",
        .consent = "email",
        .policy = true,
        .default_concurrency = 4,
        .default_transport = "spool",
    },
    {
        .name = "sms",
        .address = CHAN_ADDR_PHONE,
        .address_desc = "phone number",
        .customer_field = "phone",
        .suppresses = true,
        .suppression = "the phone number (invalid, unreachable, or replied STOP)",
        .consent = "sms",
        .policy = true,
        .default_concurrency = 4,
        .default_transport = "spool",
    },
    {
        .name = "webhook",
        .address = CHAN_ADDR_URL,
        .address_desc = "URL",
        .customer_field = NULL,
        /* The URL is the rule's, not a customer's: a 410 dead-letters the
         * delivery and the rule's author fixes the action. */
        .suppresses = false,
        .suppression = "nothing (the URL belongs to the rule; 410 dead-letters the delivery)",
        .consent = NULL,
        .policy = false,
        .default_concurrency = 4,
        .default_transport = "spool",
    },
    {
        .name = "task",
        .address = CHAN_ADDR_STAFF,
        .address_desc = "staff member",
        .customer_field = NULL,
        .suppresses = false,
        .suppression = "nothing (a task is for staff)",
        .consent = NULL,
        .policy = false,
        .default_concurrency = 1,
        .default_transport = "task",
    },
    {0},
};
const size_t channel_count = sizeof(channel_infos) / sizeof(channel_infos[0]) - 1;

const struct channel_info *
channel_info_find(const char *name)
{
    for (size_t i = 0; name && i < channel_count; i++)
        if (!strcmp(channel_infos[i].name, name))
            return &channel_infos[i];
    return NULL;
}

const struct channel_info *
channel_info_by_consent(const char *consent)
{
    for (size_t i = 0; consent && i < channel_count; i++)
        if (channel_infos[i].consent && !strcmp(channel_infos[i].consent, consent))
            return &channel_infos[i];
    return NULL;
}

/* Built from channel_infos at compile time would need the names twice;
 * these are filled once, thread-safely. */
static const char *names_v[sizeof(channel_infos) / sizeof(channel_infos[0])];
static const char *consents_v[sizeof(channel_infos) / sizeof(channel_infos[0])];
static char names_joined[256];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void
names_init(void)
{
    size_t n = 0, nc = 0;
    for (size_t i = 0; i < channel_count; i++) {
        names_v[i] = channel_infos[i].name;
        if (channel_infos[i].consent)
            consents_v[nc++] = channel_infos[i].consent;
        n += (size_t)snprintf(names_joined + n, sizeof(names_joined) - n, "%s%s", i ? ", " : "",
                              channel_infos[i].name);
        if (n >= sizeof(names_joined))
            n = sizeof(names_joined) - 1;
    }
    names_v[channel_count] = NULL;
    consents_v[nc] = NULL;
}

const char *const *
channel_consent_names(void)
{
    pthread_once(&names_once, names_init);
    return consents_v;
}

const struct channel_info *
channel_info_by_address(enum channel_address address)
{
    for (size_t i = 0; i < channel_count; i++)
        if (channel_infos[i].address == address)
            return &channel_infos[i];
    return NULL;
}

const char *const *
channel_names(void)
{
    pthread_once(&names_once, names_init);
    return names_v;
}

const char *
channel_names_joined(void)
{
    pthread_once(&names_once, names_init);
    return names_joined;
}
