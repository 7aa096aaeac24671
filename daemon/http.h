/*
 * http.h: the daemon's small HTTP endpoint (libmicrohttpd), enabled by
 * http.listen in nudge.yaml:
 *
 *   GET  /health                       200 {"status":"ok"} while the store answers
 *   GET  /metrics                      Prometheus text: deliveries by state, totals
 *   GET  /unsubscribe?c=ID&ch=CHANNEL&t=TOKEN   a page with one button
 *   POST /unsubscribe?c=ID&ch=CHANNEL&t=TOKEN   unsubscribes at once (RFC 8058
 *                                      one-click, body List-Unsubscribe=One-Click,
 *                                      or the page's button)
 *
 * The token is an HMAC of (customer, channel) under the installation
 * secret, so links cannot be forged or pointed at someone else. An
 * unsubscribe sets the customer's consent for the channel to 0 (source
 * "unsubscribe-link") and records it on the timeline; deliveries already
 * queued are then suppressed at send time.
 */
#ifndef NUDGE_HTTP_H
#define NUDGE_HTTP_H

#include "util.h"

struct config;
struct nclock;
struct http_server;

/* What the listener needs of the daemon, all safe to use from its own
 * thread: it knows nothing else of it (no struct daemon). */
struct http_env {
    const struct config *cfg;   /* http.listen, database (its own connection) */
    const char *secret;         /* the installation secret behind the tokens */
    const struct nclock *clock; /* the daemon's clock (atomic) */
    /* Appends the dispatcher's metrics (Prometheus text: counters, paused
     * channels) to out; called on the listener's thread. */
    void (*metrics)(void *ud, struct sbuf *out);
    void *ud;
};

int http_start(const struct http_env *env, struct http_server **out, struct nerr *err);
void http_stop(struct http_server *h);

#endif
