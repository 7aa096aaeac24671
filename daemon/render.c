/*
 * render.c: the template context and the last checks before a send.
 */
#include "render.h"

#include <errno.h>
#include <glib.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "config.h"
#include "log.h"
#include "policy.h"
#include "template.h"

/* HMAC-SHA256 of data under secret into mac (32 bytes). GLib's GHmac rather
 * than OpenSSL's one-shot HMAC(): OpenSSL 3 looks the HMAC and SHA-256
 * implementations up by name (under locks) on every call, and two of these
 * run for every message rendered. The MAC is the same. */
static void
hmac_sha256(const char *secret, const char *data, unsigned char mac[32])
{
    GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, (const guchar *)secret, strlen(secret));
    gsize len = 32;
    g_hmac_update(h, (const guchar *)data, (gssize)strlen(data));
    g_hmac_get_digest(h, mac, &len);
    g_hmac_unref(h);
}

void
hmac_hex(const char *secret, const char *data, char *out, size_t chars)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[32];
    size_t i;
    hmac_sha256(secret, data, mac);
    for (i = 0; i < sizeof(mac) && 2 * i + 1 < chars; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[chars < 2 * sizeof(mac) ? chars : 2 * sizeof(mac)] = '\0';
}

void
unsubscribe_token(const char *secret, const char *ext_id, const char *channel, char *out,
                  size_t size)
{
    char *data = xasprintf("unsubscribe\n%s\n%s", ext_id, channel);
    char mac[33];
    hmac_hex(secret, data, mac, 32);
    snprintf(out, size, "%s", mac);
    free(data);
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

static void
set_col(json_t *o, const char *key, sqlite3_stmt *s, int i)
{
    switch (sqlite3_column_type(s, i)) {
    case SQLITE_NULL:
        json_object_set_new(o, key, json_null());
        break;
    case SQLITE_INTEGER:
        json_object_set_new(o, key, json_integer(sqlite3_column_int64(s, i)));
        break;
    case SQLITE_FLOAT:
        json_object_set_new(o, key, json_real(sqlite3_column_double(s, i)));
        break;
    default:
        json_object_set_new(o, key, json_string((const char *)sqlite3_column_text(s, i)));
    }
}

json_t *
render_customer_context(struct store *st, int64_t customer_id)
{
    static const char *const cols[] = {"id",       "name",  "first_name", "email",  "phone",
                                       "birthday", "tz",    "tier",       "owner", "created_at",
                                       "orders_count", "total_spent", "last_order_date",
                                       "first_order_date", NULL};
    sqlite3_stmt *s;
    json_t *o = NULL, *attrs, *tags;
    if (store_prepare(st, "SELECT c.ext_id, c.name, c.first_name, c.email, c.phone, c.birthday,"
                           " c.tz, c.tier, c.owner, c.created_at, coalesce(s.orders_count, 0),"
                           " coalesce(s.total_cents, 0) / 100.0, s.last_order_date,"
                           " s.first_order_date, c.attrs FROM customers c LEFT JOIN"
                           " customer_stats s ON s.customer_id = c.id WHERE c.id = ?", &s) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(s, 1, customer_id);
    if (sqlite3_step(s) == SQLITE_ROW) {
        o = json_object();
        /* Custom attributes first, so that built-in fields win a name clash. */
        attrs = json_loads((const char *)sqlite3_column_text(s, 14), 0, NULL);
        if (json_is_object(attrs))
            json_object_update(o, attrs);
        json_decref(attrs);
        for (int i = 0; cols[i]; i++)
            set_col(o, cols[i], s, i);
        if (json_is_null(json_object_get(o, "first_name")))
            json_object_set(o, "first_name", json_object_get(o, "name"));
    }
    store_done(s);
    if (!o)
        return NULL;
    tags = json_array();
    if (store_prepare(st, "SELECT tag FROM customer_tags WHERE customer_id = ? ORDER BY tag", &s) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, customer_id);
        while (sqlite3_step(s) == SQLITE_ROW)
            json_array_append_new(tags, json_string((const char *)sqlite3_column_text(s, 0)));
        store_done(s);
    }
    json_object_set_new(o, "tags", tags);
    return o;
}

/* Coupon codes: the same for every action and retry of one occurrence, and
 * unguessable without the installation secret. */
static void
coupon_code(const char *secret, const struct rule *r, const char *ext_id, const char *occurrence,
            char *out, size_t size)
{
    static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    char *data = xasprintf("coupon\n%s\n%s\n%s", r->name, ext_id, occurrence);
    unsigned char mac[32];
    char code[9];
    hmac_sha256(secret, data, mac);
    for (int i = 0; i < 8; i++)
        code[i] = alphabet[mac[i] % 32];
    code[8] = '\0';
    snprintf(out, size, "%s%s%s", r->coupon.prefix ? r->coupon.prefix : "",
             r->coupon.prefix ? "-" : "", code);
    free(data);
}

static char *
url_escape(const char *s)
{
    struct sbuf b;
    sbuf_init(&b);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            sbuf_addc(&b, (char)c);
        else
            sbuf_printf(&b, "%%%02X", c);
    }
    return sbuf_steal(&b);
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
    json_object_set_new(ctx, "rule", json_string(r->name));
    json_object_set_new(ctx, "occurrence", json_string(occurrence));
    json_object_set_new(ctx, "channel", json_string(channel));
    json_object_set_new(ctx, "today", json_string(today));
    if (r->coupon.enabled && ext_id) {
        char code[40], exp[16] = "";
        json_t *c = json_object();
        int64_t days = days_from_civil(l.year, l.month, l.day) + r->coupon.valid_days;
        int y, m, d;
        civil_from_days(days, &y, &m, &d);
        snprintf(exp, sizeof(exp), "%04d-%02d-%02d", y, m, d);
        coupon_code(env->secret, r, ext_id, occurrence, code, sizeof(code));
        json_object_set_new(c, "code", json_string(code));
        if (r->coupon.percent_off)
            json_object_set_new(c, "percent_off", json_integer(r->coupon.percent_off));
        if (r->coupon.amount_off_cents)
            json_object_set_new(c, "amount_off", json_integer(r->coupon.amount_off_cents / 100));
        json_object_set_new(c, "expires", json_string(exp));
        json_object_set_new(ctx, "coupon", c);
    }
    if (r->marketing && ext_id) {
        char tok[40];
        char *e = url_escape(ext_id);
        char *url;
        unsubscribe_token(env->secret, ext_id, channel, tok, sizeof(tok));
        url = xasprintf("%s/unsubscribe?c=%s&ch=%s&t=%s", env->cfg->public_url, e, channel, tok);
        json_object_set_new(ctx, "unsubscribe_url", json_string(url));
        free(url);
        free(e);
    }
}

char *
render_tmpl(const struct tmpl *t, json_t *ctx, bool html, const char *partials_dir, char *why,
            size_t whylen)
{
    struct sbuf out;
    struct nerr err;
    sbuf_init(&out);
    nerr_clear(&err);
    if (tmpl_render(t, ctx, html ? TMPL_ESCAPE_HTML : 0, partials_dir ? tmpl_partials_from_dir : NULL,
                    (void *)partials_dir, &out, &err) < 0) {
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

void
rendered_free(struct rendered *r)
{
    for (int i = 0; i < r->nstrs; i++)
        free(r->strs[i]);
    json_decref(r->ctx);
    json_decref(r->msg.payload);
    memset(r, 0, sizeof(*r));
}

/* 1 if the customer explicitly withdrew consent for channel, or the address is suppressed. */
static int
suppressed(struct store *st, int64_t customer_id, const char *channel, const char *address,
           char *why, size_t whylen)
{
    sqlite3_stmt *s;
    int hit = 0;
    if (store_prepare(st, "SELECT granted FROM consents WHERE customer_id = ? AND channel = ?", &s) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, customer_id);
        sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 0) {
            snprintf(why, whylen, "no consent for %s (unsubscribed)", channel);
            hit = 1;
        }
        store_done(s);
    }
    if (!hit && address &&
        store_prepare(st, "SELECT reason FROM suppressions WHERE channel = ? AND address = ?", &s) == SQLITE_OK) {
        sqlite3_bind_text(s, 1, channel, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, address, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW) {
            snprintf(why, whylen, "address suppressed: %s",
                     sqlite3_column_text(s, 0) ? (const char *)sqlite3_column_text(s, 0) : "");
            hit = 1;
        }
        store_done(s);
    }
    return hit;
}

enum render_status
render_delivery(const struct render_env *env, const struct delivery *d, bool payload,
                struct rendered *out, char *why, size_t whylen)
{
    const struct rule *r = ruleset_find(env->rs, d->rule);
    const struct action *a;
    struct nudge_message *m = &out->msg;
    const char *to = NULL, *name;
    char *s;

    memset(out, 0, sizeof(*out));
    if (!r || d->action < 0 || (size_t)d->action >= r->nactions) {
        snprintf(why, whylen, "rule '%s' (action %d) is no longer loaded", d->rule, d->action);
        return RENDER_SKIP;
    }
    a = &r->actions[d->action];
    out->ctx = render_customer_context(env->st, d->customer_id);
    if (!out->ctx) {
        snprintf(why, whylen, "customer %lld no longer exists", (long long)d->customer_id);
        return RENDER_SKIP;
    }
    render_add_rule_context(out->ctx, env, r, d->occurrence, a->channel, d->due_at);
    json_object_set_new(out->ctx, "delivery_id", json_integer(d->id));

    switch (a->kind) {
    case ACT_EMAIL:
        to = json_string_value(json_object_get(out->ctx, "email"));
        break;
    case ACT_SMS:
        to = json_string_value(json_object_get(out->ctx, "phone"));
        break;
    case ACT_WEBHOOK:
        to = a->url;
        break;
    case ACT_TASK:
        to = a->assign && !strcmp(a->assign, "owner")
                 ? json_string_value(json_object_get(out->ctx, "owner"))
                 : NULL;
        break;
    }
    if ((a->kind == ACT_EMAIL || a->kind == ACT_SMS) && (!to || !*to)) {
        snprintf(why, whylen, "customer has no %s", a->kind == ACT_EMAIL ? "email address"
                                                                         : "phone number");
        return RENDER_SKIP;
    }
    if (r->marketing && a->kind != ACT_TASK && a->kind != ACT_WEBHOOK &&
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
    m->idempotency_key = keep(out, xasprintf("nudge-%lld", (long long)d->id));
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
        if (!(s = render_tmpl(a->subject, out->ctx, false, env->rs->dir, why, whylen)))
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
        if (!(s = render_tmpl(a->text, out->ctx, false, env->rs->dir, why, whylen)))
            return RENDER_FAIL;
        m->text = keep(out, s);
    }
    if (a->html) {
        if (!(s = render_tmpl(a->html, out->ctx, true, env->rs->dir, why, whylen)))
            return RENDER_FAIL;
        m->html = keep(out, s);
    }
    if (a->note) {
        if (!(s = render_tmpl(a->note, out->ctx, false, env->rs->dir, why, whylen)))
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
