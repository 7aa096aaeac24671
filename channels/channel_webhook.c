/*
 * channel_webhook.c: the webhook channel of the `http` transport: its
 * settings (secret_file), the Standard Webhooks signature (webhook_signature,
 * webhook_load_key), each message as a signed JSON POST (build_webhook) and
 * what an endpoint's answer means (410: the recipient's fault). The design,
 * settings and result tables are in channel_http.h; the backend that runs
 * the requests is channel_http.c.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channel_http_internal.h"

/* The webhook channel's own settings (http_state.chan). */
struct webhook_conf {
    unsigned char *key; /* default HMAC key, NULL if none */
    size_t keylen;      /* its length */
};

/* Strict standard base64; the final padding may be left out. */
static int
b64_decode(const char *in, unsigned char **out, size_t *outlen)
{
    size_t len = strlen(in), data = len, pad, full;
    char *padded;
    unsigned char *buf;
    int n;
    while (data > 0 && in[data - 1] == '=')
        data--;
    if (data == 0 || len - data > 2 || data % 4 == 1 || (len != data && len % 4))
        return -EINVAL;
    for (size_t i = 0; i < data; i++)
        if (!isalnum((unsigned char)in[i]) && in[i] != '+' && in[i] != '/')
            return -EINVAL;
    pad = (4 - data % 4) % 4;
    full = data + pad;
    padded = xmalloc(full + 1);
    memcpy(padded, in, data);
    memset(padded + data, '=', pad);
    padded[full] = '\0';
    buf = xmalloc(full / 4 * 3 + 1);
    n = EVP_DecodeBlock(buf, (const unsigned char *)padded, (int)full);
    free(padded);
    if (n < 0 || (size_t)n < pad) {
        free(buf);
        return -EINVAL;
    }
    *out = buf;
    *outlen = (size_t)n - pad; /* EVP_DecodeBlock counts the padding as zero bytes */
    return 0;
}

int
webhook_signature(const unsigned char *key, size_t keylen, const char *msg_id, int64_t timestamp,
                  const char *body, size_t len, char *out, size_t size)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    struct sbuf signed_content;
    char *b64;
    int rc = 0;
    /* The signed content is "id.timestamp.body". */
    sbuf_init(&signed_content);
    sbuf_printf(&signed_content, "%s.%" PRId64 ".", msg_id, timestamp);
    sbuf_add(&signed_content, body, len);
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)signed_content.s,
              signed_content.len, mac, &maclen)) {
        sbuf_free(&signed_content);
        return -EIO;
    }
    sbuf_free(&signed_content);
    b64 = b64_encode(mac, maclen);
    if (strlen(b64) + 4 > size)
        rc = -ENOSPC;
    else
        snprintf(out, size, "v1,%s", b64);
    free(b64);
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

/* Reads a Standard Webhooks secret file: trimmed text, "whsec_" prefix
 * optional, standard base64. why gets the reason on failure. */
static int
webhook_load_key(const char *path, unsigned char **key, size_t *keylen, char *why, size_t whylen)
{
    char *text = NULL;
    const char *b64;
    size_t len = 0;
    int rc = read_file(path, &text, &len);
    if (rc < 0) {
        snprintf(why, whylen, "cannot read webhook secret_file %s: %s", path, strerror(-rc));
        return rc;
    }
    b64 = trim(text);
    if (strncmp(b64, "whsec_", 6) == 0)
        b64 += 6;
    rc = b64_decode(b64, key, keylen);
    if (rc == 0 && *keylen == 0) {
        free(*key);
        rc = -EINVAL;
    }
    if (rc < 0)
        snprintf(why, whylen, "webhook secret_file %s: expected whsec_<base64> (Standard Webhooks)",
                 path);
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

/* ---- settings ------------------------------------------------------------ */

static const struct http_opt webhook_opts[] = {
    {"secret_file", opt_string, FOR_WEBHOOK},
};

static int
webhook_prepare(const struct conf_ctx *c, json_t *settings, struct http_state *st, unsigned *mask)
{
    (void)c;
    (void)settings;
    st->chan = xcalloc(1, sizeof(struct webhook_conf));
    *mask = FOR_WEBHOOK;
    return 0;
}

static int
webhook_misplaced(const struct conf_ctx *c, const char *key, const struct http_opt *opt,
                  const struct http_state *st)
{
    int rc;
    (void)opt;
    (void)st;
    if (strcmp(key, "url") == 0) {
        rc = conf_err(c, "url: not a setting of the webhook channel");
        nerr_hint(c->err, "each rule's webhook action names its url");
        return rc;
    }
    return 0;
}

static int
webhook_settings(const struct conf_ctx *c, json_t *settings, struct http_state *st)
{
    struct webhook_conf *w = st->chan;
    const char *path = json_string_value(json_object_get(settings, "secret_file"));
    char why[512];
    if (path && webhook_load_key(path, &w->key, &w->keylen, why, sizeof(why)) < 0)
        return conf_err(c, "secret_file: %s", why);
    return 0;
}

static void
webhook_free(void *chan)
{
    struct webhook_conf *w = chan;
    if (!w)
        return;
    if (w->key) {
        OPENSSL_cleanse(w->key, w->keylen);
        free(w->key);
    }
    free(w);
}

/* ---- requests and answers ------------------------------------------------ */

static int
build_webhook(struct http_state *st, struct http_xfer *x, const struct nudge_message *m,
              struct send_result *r)
{
    const char *secret_path = json_string_value(json_object_get(m->payload, "_secret_file"));
    const struct webhook_conf *w = st->chan;
    unsigned char *key = w->key, *own = NULL;
    size_t keylen = w->keylen;
    char idbuf[40], sig[128];
    const char *id = idem_key(m, idbuf, sizeof(idbuf));
    int64_t ts = m->date ? m->date : (int64_t)time(NULL);
    json_t *doc = json_object();
    const char *k;
    json_t *v;
    char *text;
    int rc;

    if (!m->to || !m->to[0]) {
        json_decref(doc);
        send_result_set(r, SEND_PERMANENT, -EINVAL, "the webhook has no URL");
        return -EINVAL;
    }
    if (secret_path) {
        char why[sizeof(r->error)];
        if ((rc = webhook_load_key(secret_path, &own, &keylen, why, sizeof(why))) < 0) {
            json_decref(doc);
            /* A person can fix the file; never send unsigned instead. */
            send_result_set(r, SEND_TRANSIENT, rc, "%s", why);
            send_result_blame(r, BLAME_SENDER);
            return rc;
        }
        key = own;
    }
    /* Keys starting with '_' are instructions to backends, not content. */
    json_object_foreach(m->payload, k, v)
    {
        if (k[0] != '_')
            json_object_set(doc, k, v);
    }
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    sbuf_adds(&x->body, text ? text : "{}");
    free(text);

    x->url = xstrdup(m->to);
    add_header(x, "Content-Type: application/json");
    add_header(x, "Expect:");
    add_header(x, "webhook-id: %s", id);
    add_header(x, "webhook-timestamp: %" PRId64, ts);
    if (key) {
        rc = webhook_signature(key, keylen, id, ts, x->body.s, x->body.len, sig, sizeof(sig));
        if (own) {
            OPENSSL_cleanse(own, keylen);
            free(own);
        }
        if (rc < 0) {
            send_result_set(r, SEND_TRANSIENT, rc, "cannot sign the webhook: %s", strerror(-rc));
            return rc;
        }
        add_header(x, "webhook-signature: %s", sig);
    }
    return 0;
}

enum send_blame
webhook_status_blame(long code)
{
    if (code == 410)
        return BLAME_RECIPIENT; /* the endpoint says it is gone for good */
    return BLAME_NOBODY;
}

static void
webhook_finish(struct http_xfer *x, long code)
{
    if (code >= 200 && code < 300)
        send_result_set(x->res, SEND_OK, (int)code, "%s", "");
    else
        result_http(x, code, false, NULL);
}

const struct http_channel http_webhook = {
    .opts = webhook_opts,
    .nopts = sizeof(webhook_opts) / sizeof(webhook_opts[0]),
    .keys = FOR_WEBHOOK,
    .prepare = webhook_prepare,
    .misplaced = webhook_misplaced,
    .settings = webhook_settings,
    .build = build_webhook,
    .finish = webhook_finish,
    .free = webhook_free,
};
