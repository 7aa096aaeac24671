/*
 * channel.c: the registry: the one table of channels (what each is, see
 * channel_registry.h) and the one table of transport backends. A new
 * transport is a new channel_*.c file and one line here; a new channel is
 * one row in channel_infos.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <nudge/channel.h>

#include "channel_email.h"
#include "channel_http.h"
#include "channel_registry.h"
#include "channel_spool.h"

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

const struct channel_backend *const channel_backends[] = {
    &channel_backend_spool,
    &channel_backend_smtp,
    &channel_backend_http,
    &channel_backend_task,
    NULL,
};

const struct channel_backend *
channel_backend_find(const char *transport)
{
    for (int i = 0; channel_backends[i]; i++)
        if (!strcmp(channel_backends[i]->name, transport))
            return channel_backends[i];
    return NULL;
}

void
send_result_set(struct send_result *r, enum send_status status, int code, const char *fmt, ...)
{
    va_list ap;
    r->status = status;
    r->code = code;
    r->retry_after = 0;
    r->blame = BLAME_NOBODY;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
}

void
send_result_blame(struct send_result *r, enum send_blame blame)
{
    r->blame = blame;
    if (blame == BLAME_RECIPIENT)
        r->status = SEND_PERMANENT;
    else if (blame == BLAME_SENDER)
        r->status = SEND_TRANSIENT;
}

const char *
send_blame_name(enum send_blame blame)
{
    switch (blame) {
    case BLAME_RECIPIENT:
        return "recipient";
    case BLAME_SENDER:
        return "sender";
    case BLAME_NOBODY:
        break;
    }
    return "nobody";
}

void
send_result_clear(struct send_result *r)
{
    struct send_reporter *rep = r->reporter;
    memset(r, 0, sizeof(*r));
    r->reporter = rep;
}

void
send_result_report(struct send_result *r)
{
    struct send_reporter *rep = r->reporter;
    if (!rep || !rep->report || r < rep->base || r >= rep->base + rep->n)
        return;
    rep->report(rep, (size_t)(r - rep->base), r);
}
