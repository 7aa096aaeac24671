/*
 * channel_http_internal.h: what the files of the `http` transport share, and
 * nothing outside them includes.
 *
 *   channel_http.c        the backend (open/send/close/classify), the
 *                         settings both channels take, request and result
 *                         helpers, the channel table (http_chans)
 *   channel_webhook.c     the webhook channel: secret, signature, request,
 *                         answer (http_webhook)
 *   channel_sms_http.c    the sms channel over HTTP: the provider table
 *                         (generic, twilio, aliyun), requests, answers
 *                         (http_sms)
 *
 * A channel is one struct http_channel: its settings keys, how it reads them
 * into its own state (http_state.chan), builds a request and reads the answer.
 */
#ifndef NUDGE_CHANNEL_HTTP_INTERNAL_H
#define NUDGE_CHANNEL_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "channel_http.h"
#include "http_engine.h"
#include "util.h"
#include "ynode.h"

struct http_channel;

/* One configured http transport (a dispatcher slot). Settings are
 * read-only after open(); the engine part is used by send() only. */
struct http_state {
    char *channel;                  /* "webhook" or "sms" */
    const struct http_channel *ops; /* that channel's row of http_chans */
    void *chan;                     /* its own settings (ops->free releases) */
    long timeout_ms;                /* whole-request timeout */
    int max_conns;                  /* concurrent requests and cached connections */
    char *user_agent;               /* User-Agent header */
    char *proxy;                    /* proxy URL, NULL for none */
    char *tls_ca_file;              /* CA bundle, NULL for the system store */

    struct http_engine eng;           /* the requests (http_engine.c) */
    const struct nudge_message *msgs; /* the batch being sent */
};

/* ---- settings ------------------------------------------------------------ */

/* Where the settings came from, for located errors. */
struct conf_ctx {
    const char *channel; /* channel name */
    const char *file;    /* nudge.yaml path or NULL */
    int line;            /* line of the channel's mapping or 0 */
    struct nerr *err;    /* the caller's error */
};

/* Sets c->err to "channels.<channel>.<fmt...>" at the channel's mapping;
 * returns -EINVAL. */
int conf_err(const struct conf_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Who a key is for: bits of a channel (FOR_WEBHOOK) or of one of its
 * variants (the sms providers, FOR_SMS: one bit per provider). */
#define FOR_WEBHOOK 0x01u
#define FOR_SMS 0xFEu
#define FOR_ALL (~0u)

/* One accepted settings key. check() tests the value's type and stores
 * what the state keeps of it (0 or -EINVAL with c->err set); NULL: the
 * registry's or the dispatcher's, not read here. */
struct http_opt {
    const char *key; /* name in nudge.yaml */
    int (*check)(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st);
    unsigned applies; /* FOR_* mask */
};

/* A one-line, NUL-free, non-empty string. */
bool good_string(const json_t *v);
/* http_opt checks: a non-empty one-line string; an http:// or https:// URL. */
int opt_string(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st);
int opt_url(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st);

/* A JSON scalar as the text a comparison uses (malloc'd); NULL for a
 * mapping or a list. */
char *scalar_text(const json_t *v);
/* Reads one secret: the inline key or file_key's file (trimmed), exactly
 * one of them, into *out (malloc'd). 0 or -EINVAL with c->err set. */
int secret_get(const struct conf_ctx *c, const json_t *settings, const char *key,
               const char *file_key, char **out);
/* Wipes and frees a secret string (NULL is fine). */
void secret_free(char *s);
/* Trims ASCII white space at both ends, in place; returns s. */
char *trim(char *s);
/* Standard base64 (with padding) of in into a malloc'd string. */
char *b64_encode(const unsigned char *in, size_t len);
/* RFC 3986 percent-encoding of s onto b, keeping only the unreserved
 * characters (space is %20): form bodies and Aliyun's signature. */
void pct_encode(struct sbuf *b, const char *s);
/* Appends "key=value" (percent-encoded, '&' between pairs) to a form. */
void form_add(struct sbuf *b, const char *key, const char *value);

/* ---- requests and results ------------------------------------------------ */

/* Appends a request header line (aborts when out of memory). */
void add_header(struct http_xfer *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The message's idempotency key, or "nudge-<delivery id>" in buf. */
const char *idem_key(const struct nudge_message *m, char *buf, size_t size);
/* The first bytes of the response as one line of text. */
void snippet(const struct http_xfer *x, char *out, size_t size);
/* A result from the HTTP status alone (with Retry-After for transient);
 * detail NULL: a snippet of the response. */
void result_http(struct http_xfer *x, long code, bool sms, const char *detail);
/* Who a webhook endpoint's status blames, beyond our credentials
 * (channel_webhook.c; used by http_blame). */
enum send_blame webhook_status_blame(long code);

/* ---- channels ------------------------------------------------------------ */

/* One channel the http transport carries. */
struct http_channel {
    const struct http_opt *opts; /* its own keys (the shared ones are channel_http.c's) */
    size_t nopts;                /* their number */
    unsigned keys;               /* every FOR_* bit of its keys */
    /* Allocates st->chan and sets *mask to the FOR_* bits of the keys this
     * configuration takes (sms: the provider's). 0 or -EINVAL. */
    int (*prepare)(const struct conf_ctx *c, json_t *settings, struct http_state *st,
                   unsigned *mask);
    /* A known key outside *mask: -EINVAL with the error set, or 0 for the
     * default ("only the <other> channel takes this key"). May be NULL. */
    int (*misplaced)(const struct conf_ctx *c, const char *key, const struct http_opt *opt,
                     const struct http_state *st);
    /* What the channel reads once every key has passed its check. */
    int (*settings)(const struct conf_ctx *c, json_t *settings, struct http_state *st);
    /* Fills x for message m; 0, or < 0 with *r set (the message is not sent). */
    int (*build)(struct http_state *st, struct http_xfer *x, const struct nudge_message *m,
                 struct send_result *r);
    /* Sets *x->res from an answer that is neither a transport error nor a 3xx. */
    void (*finish)(struct http_xfer *x, long code);
    /* Releases st->chan (may be NULL). */
    void (*free)(void *chan);
};

extern const struct http_channel http_webhook; /* channel_webhook.c */
extern const struct http_channel http_sms;     /* channel_sms_http.c */

#endif
