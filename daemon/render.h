/*
 * render.h: from a claimed delivery to a message a backend can send.
 *
 * Builds the template context (customer fields, custom attributes, tags,
 * order figures, coupon, unsubscribe link), applies the last-moment checks
 * that must see the present state (consent withdrawn, address suppressed,
 * no address at all), and renders the action's templates.
 */
#ifndef NUDGE_RENDER_H
#define NUDGE_RENDER_H

#include <jansson.h>

#include <nudge/channel.h>

#include "outbox.h"
#include "rules.h"

struct config;
struct store;

struct render_env {
    struct store *st;
    const struct config *cfg;
    const struct ruleset *rs;
    const char *secret; /* per-installation HMAC key (meta 'secret') */
    ntime_t now;
};

struct snap_entry;

enum render_status {
    RENDER_OK,       /* msg is ready to send */
    RENDER_SKIP,     /* nothing to send (rule removed, no address): state skipped */
    RENDER_SUPPRESS, /* consent withdrawn or address suppressed: state suppressed */
    RENDER_FAIL,     /* a template failed: state dead with the reason */
    RENDER_DEFER,    /* quiet hours: back to pending until out->defer_until */
};

/* A rendered message and the storage its strings point into. */
struct rendered {
    struct nudge_message msg;
    json_t *ctx;
    char *strs[12];
    int nstrs;
    ntime_t defer_until;    /* RENDER_DEFER */
    struct snap_entry *snap; /* the rule snapshot msg points into (render.c) */
};

/* payload: build msg.payload (for a backend with needs_payload), else leave
 * it NULL. */
enum render_status render_delivery(const struct render_env *env, const struct delivery *d,
                                   bool payload, struct rendered *out, char *why, size_t whylen);
void rendered_free(struct rendered *r);

/* The template context for one customer (also used by preview). NULL if no such customer. */
json_t *render_customer_context(struct store *st, int64_t customer_id);
/* Adds rule-specific values: coupon, unsubscribe_url, rule, occurrence, today. */
void render_add_rule_context(json_t *ctx, const struct render_env *env, const struct rule *r,
                             const char *occurrence, const char *channel, ntime_t fire_at);
/* Renders a template to a malloc'd string, or NULL with why filled.
 * Partials ({{> name}}) are the ones rule r loaded with its templates (the
 * rules directory is not read), or render empty when r is NULL. */
char *render_tmpl(const struct tmpl *t, json_t *ctx, bool html, const struct rule *r, char *why,
                  size_t whylen);

/* Loads or creates the installation secret (hex). */
int render_secret(struct store *st, char **out);
/* HMAC-SHA256(secret, data) as lowercase hex, truncated to `chars`. */
void hmac_hex(const char *secret, const char *data, char *out, size_t chars);
/* The unsubscribe token for (customer ext id, channel). */
void unsubscribe_token(const char *secret, const char *ext_id, const char *channel, char *out,
                       size_t size);

#endif
