/*
 * render.c: the template context and the last checks before a send.
 *
 * A delivery is rendered from the rule snapshot it was enqueued with
 * (store_snapshot.h), never from the rule set loaded now: a reload, an
 * edited, reordered or deleted rule, or an edited partial changes what is
 * enqueued afterwards, not what is queued. Rows enqueued before schema 7
 * have no snapshot and are rendered from the loaded rule set as before, with
 * one guard for both: a row whose channel is not its action's is refused.
 */
#include "render.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "channel_registry.h"
#include "config.h"
#include "log.h"
#include "policy.h"
#include "store.h"
#include "store_consent.h"
#include "store_customer.h"
#include "store_snapshot.h"
#include "template.h"

/*
 * HMAC-SHA256 under the installation secret, two of which run for every
 * message rendered (coupon code, unsubscribe token). OpenSSL's one-shot
 * HMAC() fetches the HMAC and SHA-256 implementations by name, under locks,
 * on every call; instead each thread keeps an EVP_MAC context keyed with the
 * secret, and EVP_MAC_init with no key starts a new MAC from the key state
 * already computed. The pthread key only frees the context when the thread
 * ends.
 */
struct hmac_key {
    char *secret;
    EVP_MAC_CTX *ctx;
};

static _Thread_local struct hmac_key *thread_key;
static pthread_key_t key_cleanup;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac_alg;

static void
hmac_key_free(void *p)
{
    struct hmac_key *k = p;
    EVP_MAC_CTX_free(k->ctx);
    free(k->secret);
    free(k);
}

static void
hmac_once(void)
{
    if (pthread_key_create(&key_cleanup, hmac_key_free) != 0 ||
        !(hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL)))
        abort();
}

/* This thread's MAC context, keyed with secret and ready for data. */
static EVP_MAC_CTX *
hmac_start(const char *secret)
{
    struct hmac_key *k = thread_key;
    pthread_once(&key_once, hmac_once);
    if (!k) {
        k = xcalloc(1, sizeof(*k));
        if (!(k->ctx = EVP_MAC_CTX_new(hmac_alg)) || pthread_setspecific(key_cleanup, k) != 0)
            abort();
        thread_key = k;
    }
    if (!k->secret || strcmp(k->secret, secret) != 0) {
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                               OSSL_PARAM_construct_end()};
        if (EVP_MAC_init(k->ctx, (const unsigned char *)secret, strlen(secret), params) != 1)
            abort(); /* OpenSSL fails here only without memory */
        free(k->secret);
        k->secret = xstrdup(secret);
    } else if (EVP_MAC_init(k->ctx, NULL, 0, NULL) != 1) {
        abort();
    }
    return k->ctx;
}

/* HMAC-SHA256 under secret of parts[0] '\n' parts[1] '\n' ... (NULL
 * terminated) into mac (32 bytes), fed piece by piece: the same MAC as of
 * the joined string, without building it. */
static void
hmac_parts(const char *secret, const char *const *parts, unsigned char mac[32])
{
    EVP_MAC_CTX *ctx = hmac_start(secret);
    size_t n = 0;
    int ok = 1;
    for (int i = 0; ok && parts[i]; i++) {
        if (i)
            ok = EVP_MAC_update(ctx, (const unsigned char *)"\n", 1);
        if (ok)
            ok = EVP_MAC_update(ctx, (const unsigned char *)parts[i], strlen(parts[i]));
    }
    if (!ok || EVP_MAC_final(ctx, mac, &n, 32) != 1 || n != 32)
        abort();
}

static void
to_hex(const unsigned char mac[32], char *out, size_t chars)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    if (chars > 64)
        chars = 64;
    for (i = 0; i < chars; i++)
        out[i] = hex[i % 2 ? mac[i / 2] & 15 : mac[i / 2] >> 4];
    out[chars] = '\0';
}

void
hmac_hex(const char *secret, const char *data, char *out, size_t chars)
{
    const char *parts[] = {data, NULL};
    unsigned char mac[32];
    hmac_parts(secret, parts, mac);
    to_hex(mac, out, chars);
}

void
unsubscribe_token(const char *secret, const char *ext_id, const char *channel, char *out,
                  size_t size)
{
    const char *parts[] = {"unsubscribe", ext_id, channel, NULL};
    unsigned char mac[32];
    char hex[33];
    hmac_parts(secret, parts, mac);
    to_hex(mac, hex, 32);
    if (size > 32)
        memcpy(out, hex, 33);
    else
        snprintf(out, size, "%s", hex);
}

int
render_secret(struct store *st, char **out)
{
    unsigned char b[32];
    char hex[65];
    if (store_meta_get(st, "secret", out) == 0)
        return 0;
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -EIO;
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(hex + 2 * i, 3, "%02x", b[i]);
    if (store_meta_set(st, "secret", hex) < 0)
        return -EIO;
    *out = xstrdup(hex);
    return 0;
}

json_t *
render_customer_context(struct store *st, int64_t customer_id)
{
    json_t *o = store_customer_doc(st, customer_id);
    if (o && json_is_null(json_object_get(o, "first_name")))
        json_object_set(o, "first_name", json_object_get(o, "name"));
    return o;
}

/* Coupon codes: the same for every action and retry of one occurrence, and
 * unguessable without the installation secret. */
static void
coupon_code(const struct render_env *env, const struct rule *r, const char *ext_id,
            const char *occurrence, char *out, size_t size)
{
    static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    const char *parts[] = {"coupon", r->name, ext_id, occurrence, NULL};
    unsigned char mac[32];
    char code[9];
    hmac_parts(env->secret, parts, mac);
    for (int i = 0; i < 8; i++)
        code[i] = alphabet[mac[i] % 32];
    code[8] = '\0';
    if (r->coupon.prefix)
        snprintf(out, size, "%s-%s", r->coupon.prefix, code);
    else if (size > 8)
        memcpy(out, code, 9);
    else
        snprintf(out, size, "%s", code);
}

/* Appends s percent-encoded (RFC 3986 unreserved characters kept). */
static void
url_escape(struct sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            continue;
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        sbuf_add(b, run, (size_t)(s - run));
        sbuf_add(b, esc, 3);
        run = s + 1;
    }
    sbuf_add(b, run, (size_t)(s - run));
}

void
render_add_rule_context(json_t *ctx, const struct render_env *env, const struct rule *r,
                        const char *occurrence, const char *channel, ntime_t fire_at)
{
    const char *ext_id = json_string_value(json_object_get(ctx, "id"));
    const char *tz = json_string_value(json_object_get(ctx, "tz"));
    struct cal_local l;
    char today[16] = "";
    if (!tz)
        tz = env->cfg->timezone;
    if (cal_utc_to_local(tz, fire_at, &l) == 0)
        snprintf(today, sizeof(today), "%04d-%02d-%02d", l.year, l.month, l.day);
    json_object_set_new_nocheck(ctx, "rule", json_string(r->name));
    json_object_set_new_nocheck(ctx, "occurrence", json_string(occurrence));
    json_object_set_new_nocheck(ctx, "channel", json_string(channel));
    json_object_set_new_nocheck(ctx, "today", json_string_nocheck(today));
    if (r->coupon.enabled && ext_id) {
        char code[40], exp[16] = "";
        json_t *c = json_object();
        int64_t days = days_from_civil(l.year, l.month, l.day) + r->coupon.valid_days;
        int y, m, d;
        civil_from_days(days, &y, &m, &d);
        snprintf(exp, sizeof(exp), "%04d-%02d-%02d", y, m, d);
        coupon_code(env, r, ext_id, occurrence, code, sizeof(code));
        json_object_set_new_nocheck(c, "code", json_string(code));
        if (r->coupon.percent_off)
            json_object_set_new_nocheck(c, "percent_off", json_integer(r->coupon.percent_off));
        if (r->coupon.amount_off_cents)
            json_object_set_new_nocheck(c, "amount_off",
                                        json_integer(r->coupon.amount_off_cents / 100));
        json_object_set_new_nocheck(c, "expires", json_string_nocheck(exp));
        json_object_set_new_nocheck(ctx, "coupon", c);
    }
    if (r->marketing && ext_id) {
        char tok[40];
        struct sbuf url;
        unsubscribe_token(env->secret, ext_id, channel, tok, sizeof(tok));
        /* public_url "/unsubscribe?c=" ext_id "&ch=" channel "&t=" token */
        sbuf_init(&url);
        sbuf_adds(&url, env->cfg->public_url);
        sbuf_add(&url, "/unsubscribe?c=", 15);
        url_escape(&url, ext_id);
        sbuf_add(&url, "&ch=", 4);
        sbuf_adds(&url, channel);
        sbuf_add(&url, "&t=", 3);
        sbuf_adds(&url, tok);
        json_object_set_new_nocheck(ctx, "unsubscribe_url", json_stringn(url.s, url.len));
        sbuf_free(&url);
    }
}

char *
render_tmpl(const struct tmpl *t, json_t *ctx, bool html, const struct rule *r, char *why,
            size_t whylen)
{
    struct sbuf out;
    struct nerr err;
    sbuf_init(&out);
    err.msg[0] = '\0'; /* tmpl_render sets it on failure (nerr_clear is a 2 kB memset) */
    if (tmpl_render(t, ctx, html ? TMPL_ESCAPE_HTML : 0, r ? rule_partial : NULL, (void *)r, &out,
                    &err) < 0) {
        snprintf(why, whylen, "template: %s", err.msg);
        sbuf_free(&out);
        return NULL;
    }
    return sbuf_steal(&out);
}

static const char *
keep(struct rendered *r, char *s)
{
    if (r->nstrs < (int)(sizeof(r->strs) / sizeof(r->strs[0])))
        r->strs[r->nstrs++] = s;
    return s;
}

/* ---- snapshots ------------------------------------------------------------
 *
 * Decoded snapshots (a rule with compiled templates and partials) are kept
 * in a small process-wide cache shared by the dispatcher's threads, so a
 * batch compiles a rule version once, not once per row. Ids are unique per
 * database (AUTOINCREMENT), so the key is the database path and the id. A
 * rendered message points into its rule (name, channel), so it holds a
 * reference until rendered_free.
 */
struct snap_entry {
    char *db;
    int64_t id;
    struct rule *rule;
    int refs; /* the cache's own, plus one per rendered message using it */
    uint64_t used;
    struct snap_entry *next;
};

#define SNAP_CACHE_MAX 64

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snap_entry *snap_cache;
static size_t snap_count;
static uint64_t snap_clock;

static void
snap_entry_free(struct snap_entry *e)
{
    rule_free(e->rule);
    free(e->db);
    free(e);
}

static void
snap_release(struct snap_entry *e)
{
    bool last;
    if (!e)
        return;
    pthread_mutex_lock(&snap_lock);
    last = --e->refs == 0;
    pthread_mutex_unlock(&snap_lock);
    if (last)
        snap_entry_free(e);
}

/* The decoded snapshot id of st's database, with a reference for the
 * caller; NULL with why filled if it is missing or unreadable. */
static struct snap_entry *
snap_acquire(struct store *st, int64_t id, char *why, size_t whylen)
{
    struct snap_entry *e, **pp, *lru = NULL;
    struct rule *r = NULL;
    char *body = NULL;
    size_t len = 0;
    int rc;

    pthread_mutex_lock(&snap_lock);
    for (e = snap_cache; e; e = e->next)
        if (e->id == id && !strcmp(e->db, store_path(st)))
            break;
    if (e) {
        e->refs++;
        e->used = ++snap_clock;
    }
    pthread_mutex_unlock(&snap_lock);
    if (e)
        return e;

    if ((rc = store_snapshot_get(st, id, &body, &len)) < 0) {
        snprintf(why, whylen, rc == -ENOENT ? "rule snapshot %lld is missing from the database"
                                            : "cannot read rule snapshot %lld",
                 (long long)id);
        return NULL;
    }
    rc = rule_snapshot_decode(body, len, &r, why, whylen);
    free(body);
    if (rc < 0)
        return NULL;
    e = xcalloc(1, sizeof(*e));
    e->db = xstrdup(store_path(st));
    e->id = id;
    e->rule = r;
    e->refs = 2;

    pthread_mutex_lock(&snap_lock);
    e->used = ++snap_clock;
    e->next = snap_cache;
    snap_cache = e;
    snap_count++;
    /* Over the limit: drop the least recently used entry (a message still
     * using it keeps it alive through its reference). */
    if (snap_count > SNAP_CACHE_MAX) {
        for (struct snap_entry *x = snap_cache->next; x; x = x->next)
            if (!lru || x->used < lru->used)
                lru = x;
        for (pp = &snap_cache; *pp != lru; pp = &(*pp)->next)
            ;
        *pp = lru->next;
        snap_count--;
        if (--lru->refs > 0)
            lru = NULL;
    }
    pthread_mutex_unlock(&snap_lock);
    if (lru)
        snap_entry_free(lru);
    return e;
}

void
rendered_free(struct rendered *r)
{
    snap_release(r->snap);
    for (int i = 0; i < r->nstrs; i++)
        free(r->strs[i]);
    json_decref(r->ctx);
    json_decref(r->msg.payload);
    memset(r, 0, sizeof(*r));
}

/* 1 if the customer explicitly withdrew consent for channel, or the address
 * is suppressed (why says which). A store failure blocks nothing. */
static int
suppressed(struct store *st, int64_t customer_id, const char *channel, const char *address,
           char *why, size_t whylen)
{
    char reason[1024];
    switch (store_send_blocked(st, customer_id, channel, address, reason, sizeof(reason))) {
    case STORE_SEND_NO_CONSENT:
        snprintf(why, whylen, "no consent for %s (unsubscribed)", channel);
        return 1;
    case STORE_SEND_SUPPRESSED:
        snprintf(why, whylen, "address suppressed: %s", reason);
        return 1;
    default:
        return 0;
    }
}

/* "nudge-<id>", as xasprintf("nudge-%lld") would write it. */
static char *
idempotency_key(int64_t id)
{
    char digits[24], *k;
    size_t n = 0;
    uint64_t v = id < 0 ? 0 - (uint64_t)id : (uint64_t)id;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (id < 0)
        digits[n++] = '-';
    k = xmalloc(6 + n + 1);
    memcpy(k, "nudge-", 6);
    for (size_t i = 0; i < n; i++)
        k[6 + i] = digits[n - 1 - i];
    k[6 + n] = '\0';
    return k;
}

enum render_status
render_delivery(const struct render_env *env, const struct delivery *d, bool payload,
                struct rendered *out, char *why, size_t whylen)
{
    const struct rule *r;
    const struct action *a;
    struct nudge_message *m = &out->msg;
    const struct channel_info *ci;
    const char *to = NULL, *name;
    char *s;

    memset(out, 0, sizeof(*out));
    if (d->snapshot) {
        /* As enqueued: whatever the rule files say now. */
        if (!(out->snap = snap_acquire(env->st, d->snapshot, why, whylen)))
            return RENDER_FAIL;
        r = out->snap->rule;
        if (d->action < 0 || (size_t)d->action >= r->nactions || strcmp(r->name, d->rule) != 0) {
            snprintf(why, whylen, "rule snapshot %lld of '%s' has no action %d for this delivery",
                     (long long)d->snapshot, r->name, d->action);
            return RENDER_FAIL;
        }
    } else {
        /* Enqueued before snapshots existed: the rule as loaded now. */
        r = ruleset_find(env->rs, d->rule);
        if (!r || d->action < 0 || (size_t)d->action >= r->nactions) {
            snprintf(why, whylen, "rule '%s' (action %d) is no longer loaded", d->rule,
                     d->action);
            return RENDER_SKIP;
        }
    }
    a = &r->actions[d->action];
    if (d->channel && strcmp(a->channel, d->channel) != 0) {
        /* Never hand one channel's message to another's backend. */
        snprintf(why, whylen, "delivery is queued for the %s channel but action %d of rule '%s'"
                              " is for the %s channel; not sent (was the rule changed after it"
                              " was enqueued?)", d->channel, d->action, r->name, a->channel);
        return RENDER_FAIL;
    }
    out->ctx = render_customer_context(env->st, d->customer_id);
    if (!out->ctx) {
        snprintf(why, whylen, "customer %lld no longer exists", (long long)d->customer_id);
        return RENDER_SKIP;
    }
    render_add_rule_context(out->ctx, env, r, d->occurrence, a->channel, d->due_at);
    json_object_set_new(out->ctx, "delivery_id", json_integer(d->id));

    /* The address: the customer field the registry names for the channel
     * (email, phone), else the rule's URL or the assigned staff member. */
    ci = &channel_infos[a->kind];
    if (ci->customer_field)
        to = json_string_value(json_object_get(out->ctx, ci->customer_field));
    else if (ci->address == CHAN_ADDR_URL)
        to = a->url;
    else if (ci->address == CHAN_ADDR_STAFF)
        to = a->assign && !strcmp(a->assign, "owner")
                 ? json_string_value(json_object_get(out->ctx, "owner"))
                 : NULL;
    if (ci->customer_field && (!to || !*to)) {
        snprintf(why, whylen, "customer has no %s", ci->address_desc);
        return RENDER_SKIP;
    }
    if (r->marketing && ci->consent &&
        suppressed(env->st, d->customer_id, a->channel, to, why, whylen))
        return RENDER_SUPPRESS;
    switch (policy_check(env->st, env->cfg, r->marketing, a->channel, d->customer_id,
                         json_string_value(json_object_get(out->ctx, "tz")), env->now,
                         &out->defer_until, why, whylen)) {
    case POLICY_DEFER:
        return RENDER_DEFER;
    case POLICY_DROP:
        return RENDER_SUPPRESS;
    case POLICY_SEND:
        break;
    }

    m->delivery_id = d->id;
    m->idempotency_key = keep(out, idempotency_key(d->id));
    m->rule = r->name;
    m->occurrence = d->occurrence;
    m->channel = a->channel;
    m->customer_id = json_string_value(json_object_get(out->ctx, "id"));
    m->to = to;
    name = json_string_value(json_object_get(out->ctx, "name"));
    m->to_name = name;
    m->marketing = r->marketing;
    m->created_at = d->created_at;
    m->unsubscribe_url = json_string_value(json_object_get(out->ctx, "unsubscribe_url"));

    if (a->subject) {
        if (!(s = render_tmpl(a->subject, out->ctx, false, r, why, whylen)))
            return RENDER_FAIL;
        /* A subject is one line: drop the file's final newline, fold the rest. */
        for (size_t n = strlen(s); n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'); n--)
            s[n - 1] = '\0';
        for (char *p = s; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        m->subject = keep(out, s);
    }
    if (a->text) {
        if (!(s = render_tmpl(a->text, out->ctx, false, r, why, whylen)))
            return RENDER_FAIL;
        m->text = keep(out, s);
    }
    if (a->html) {
        if (!(s = render_tmpl(a->html, out->ctx, true, r, why, whylen)))
            return RENDER_FAIL;
        m->html = keep(out, s);
    }
    if (a->note) {
        if (!(s = render_tmpl(a->note, out->ctx, false, r, why, whylen)))
            return RENDER_FAIL;
        m->text = keep(out, s);
    }

    /* The JSON document: webhook body, spool file, task details. */
    if (!payload)
        return RENDER_OK;
    json_t *p = json_object();
    char t[32];
    json_object_set_new(p, "delivery_id", json_integer(d->id));
    json_object_set_new(p, "idempotency_key", json_string(m->idempotency_key));
    json_object_set_new(p, "rule", json_string(r->name));
    json_object_set_new(p, "occurrence", json_string(d->occurrence));
    json_object_set_new(p, "channel", json_string(a->channel));
    /* The customer's fields of the context, sharing its values (nothing
     * changes them once rendered) instead of a deep copy to prune. */
    json_t *cust = json_object();
    static const char *const not_customer[] = {"rule",     "occurrence",      "channel", "today",
                                               "coupon",   "unsubscribe_url", "delivery_id", NULL};
    const char *key;
    json_t *val;
    json_object_foreach(out->ctx, key, val)
    {
        int i = 0;
        while (not_customer[i] && strcmp(not_customer[i], key) != 0)
            i++;
        if (!not_customer[i])
            json_object_set(cust, key, val);
    }
    json_object_set_new(p, "customer", cust);
    json_object_set_new(p, "to", to ? json_string(to) : json_null());
    time_format_iso(d->due_at, t, sizeof(t));
    json_object_set_new(p, "due_at", json_string(t));
    if (json_object_get(out->ctx, "coupon"))
        json_object_set(p, "coupon", json_object_get(out->ctx, "coupon"));
    if (m->subject)
        json_object_set_new(p, "subject", json_string(m->subject));
    if (m->text)
        json_object_set_new(p, a->kind == ACT_TASK ? "note" : "text", json_string(m->text));
    if (m->html)
        json_object_set_new(p, "html", json_string(m->html));
    if (a->kind == ACT_TASK) {
        json_object_set_new(p, "kind", json_string(a->task_kind));
        json_object_set_new(p, "assign", json_string(a->assign));
        json_object_set_new(p, "due_in", json_integer(a->due_in));
    }
    /* Keys starting with '_' are for the backend, never sent or written. */
    if (a->kind == ACT_WEBHOOK && a->secret_file)
        json_object_set_new(p, "_secret_file", json_string(a->secret_file));
    m->payload = p;
    return RENDER_OK;
}
