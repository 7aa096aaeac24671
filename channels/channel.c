/*
 * channel.c: the one table of transport backends, and the send_result
 * helpers of <nudge/channel.h>. A new transport is a new channel_*.c file
 * and one line here; the channels themselves are described by the registry
 * (lib/channel_registry.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <nudge/channel.h>

#include "channel_email.h"
#include "channel_http.h"
#include "channel_spool.h"

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
