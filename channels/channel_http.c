/*
 * channel_http.c: the `http` transport backend (open/send/close/classify)
 * and what its channels share: the settings every channel takes (timeout,
 * max_connections, user_agent, proxy, tls_ca_file) and the checks of the
 * whole mapping (unknown keys, keys of another channel or provider), request
 * helpers (headers, idempotency key, form encoding) and result helpers
 * (curl errors, HTTP status classes, Retry-After, response snippets). The
 * channels themselves are rows of http_chans: the webhook channel in
 * channel_webhook.c, the sms channel and its providers in
 * channel_sms_http.c (channel_http_internal.h joins them). Each batch runs
 * concurrently through the HTTP engine (http_engine.c: libcurl's multi
 * interface on a private libuv loop). The design and the settings reference
 * are in channel_http.h.
 *
 * libcurl details the HTTP engine (http_engine.c) relies on (7.88); they
 * belong in that file's header:
 * - The socket callback gets CURL_POLL_REMOVE before curl closes a socket,
 *   so a uv_poll_t never outlives its descriptor in an active state. A
 *   connection that goes back to the cache is REMOVEd too: between batches
 *   no poll handle is active and uv_run() would return on its own; we stop
 *   the loop explicitly once the last transfer of the batch is done.
 * - curl asks for a timeout of 0 right after curl_multi_add_handle(); the
 *   libuv timer turns that into a call on the next loop iteration, as curl
 *   wants (never call curl_multi_socket_action from inside its callbacks).
 * - curl_multi_cleanup() sets the handle bad before closing connections, so
 *   curl_multi_assign() from a late REMOVE fails harmlessly; poll handles it
 *   did not remove are closed by a uv_walk() in close().
 */
#include "channel_http_internal.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HTTP_DEFAULT_TIMEOUT_MS 10000L
#define HTTP_DEFAULT_MAX_CONNS 16
#define HTTP_MAX_CONNS 256
/* A Retry-After further out than this is taken as this. */
#define HTTP_RETRY_AFTER_MAX (7 * 86400)
/* Messages per send(): a batch is one burst of concurrent requests. */
#define HTTP_BATCH_MAX 100

/* The channels http carries; http_chans is in the same order. */
static const char *const http_channels[] = {"webhook", "sms", NULL};
static const struct http_channel *const http_chans[] = {&http_webhook, &http_sms};
#define N_HTTP_CHANS (sizeof(http_chans) / sizeof(http_chans[0]))

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
static CURLcode http_init_rc = CURLE_OK;

static void
http_global_init(void)
{
    /* Not thread-safe by contract: once, from the loop thread's open(). */
    http_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- helpers ------------------------------------------------------------- */

void
secret_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

char *
trim(char *s)
{
    size_t n = strlen(s);
    char *p = s;
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    while (*p && isspace((unsigned char)*p))
        p++;
    if (p != s)
        memmove(s, p, strlen(p) + 1);
    return s;
}

/* RFC 3986 percent-encoding, keeping only the unreserved characters: what
 * both form bodies and Aliyun's signature scheme want (space is %20). */
void
pct_encode(struct sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            sbuf_addc(b, (char)*p);
        } else {
            sbuf_addc(b, '%');
            sbuf_addc(b, hex[*p >> 4]);
            sbuf_addc(b, hex[*p & 15]);
        }
    }
}

void
form_add(struct sbuf *b, const char *key, const char *value)
{
    if (b->len)
        sbuf_addc(b, '&');
    pct_encode(b, key);
    sbuf_addc(b, '=');
    pct_encode(b, value ? value : "");
}

/* Standard base64 (with padding) of in into a malloc'd string. */
char *
b64_encode(const unsigned char *in, size_t len)
{
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}

int
conf_err(const struct conf_ctx *c, const char *fmt, ...)
{
    char msg[NERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return nerr_set(c->err, c->file, c->line, 0, "channels.%s.%s", c->channel, msg);
}

/* A JSON scalar as the text a comparison uses. */
char *
scalar_text(const json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_integer(v))
        return xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    if (json_is_real(v))
        return xasprintf("%.17g", json_real_value(v));
    if (json_is_boolean(v))
        return xstrdup(json_is_true(v) ? "true" : "false");
    if (json_is_null(v))
        return xstrdup("null");
    return NULL;
}

/* Reads one secret: inline key or key_file (trimmed), exactly one of them. */
int
secret_get(const struct conf_ctx *c, const json_t *settings, const char *key, const char *file_key,
           char **out)
{
    const char *inl = json_string_value(json_object_get(settings, key));
    const char *path = json_string_value(json_object_get(settings, file_key));
    char *text = NULL;
    size_t len = 0;
    int rc;
    if (inl && path)
        return conf_err(c, "%s: give either %s or %s, not both", key, key, file_key);
    if (inl) {
        *out = xstrdup(inl);
        return 0;
    }
    if (!path) {
        rc = conf_err(c, "%s: missing (the provider needs %s or %s)", key, key, file_key);
        nerr_hint(c->err, "keep it out of nudge.yaml: %s: /etc/nudge/%s", file_key, key);
        return rc;
    }
    if ((rc = read_file(path, &text, &len)) < 0)
        return conf_err(c, "%s: cannot read %s: %s", file_key, path, strerror(-rc));
    trim(text);
    if (!text[0]) {
        free(text);
        return conf_err(c, "%s: %s is empty", file_key, path);
    }
    *out = text;
    return 0;
}

/* ---- settings ------------------------------------------------------------ */

bool
good_string(const json_t *v)
{
    const char *s = json_string_value(v);
    return s && s[0] && strlen(s) == json_string_length(v) && !strpbrk(s, "\r\n");
}

int
opt_string(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st)
{
    (void)st;
    if (!good_string(v))
        return conf_err(c, "%s: expected a non-empty one-line string, got %s", key,
                        json_is_string(v) ? "an empty or multi-line string" : json_kind(v));
    return 0;
}

int
opt_url(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st)
{
    const char *s = json_string_value(v);
    (void)st;
    if (!good_string(v) || (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0))
        return conf_err(c, "%s: expected an http:// or https:// URL, got %s%s%s", key,
                        s ? "\"" : json_kind(v), s ? s : "", s ? "\"" : "");
    return 0;
}

static int
opt_seconds(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st)
{
    double secs = -1;
    const char *s = json_string_value(v);
    char *end = NULL;
    if (json_is_number(v))
        secs = json_number_value(v);
    else if (s && s[0]) {
        secs = strtod(s, &end);
        if (*end)
            secs = -1;
    }
    if (!(secs > 0 && secs <= 3600))
        return conf_err(c, "%s: expected seconds, more than 0 and at most 3600, got %s", key,
                        json_kind(v));
    st->timeout_ms = (long)(secs * 1000 + 0.5);
    if (st->timeout_ms < 1)
        st->timeout_ms = 1;
    return 0;
}

static int
opt_conns(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st)
{
    int n;
    if (json_get_int(v, 1, HTTP_MAX_CONNS, &n) < 0)
        return conf_err(c, "%s: expected an integer 1-%d, got %s", key, HTTP_MAX_CONNS,
                        json_kind(v));
    st->max_conns = n;
    return 0;
}

/* The keys every channel takes; each channel adds its own (http_channel.opts). */
static const struct http_opt http_opts[] = {
    {"transport", NULL, FOR_ALL},         {"concurrency", NULL, FOR_ALL},
    {"timeout", opt_seconds, FOR_ALL},    {"max_connections", opt_conns, FOR_ALL},
    {"user_agent", opt_string, FOR_ALL},  {"proxy", opt_string, FOR_ALL},
    {"tls_ca_file", opt_string, FOR_ALL},
};
#define HTTP_NOPTS (sizeof(http_opts) / sizeof(http_opts[0]))

/* The i-th of all keys: the shared ones first, then each channel's, in
 * table order; NULL past the last. */
static const struct http_opt *
opt_at(size_t i)
{
    if (i < HTTP_NOPTS)
        return &http_opts[i];
    i -= HTTP_NOPTS;
    for (size_t j = 0; j < N_HTTP_CHANS; j++) {
        if (i < http_chans[j]->nopts)
            return &http_chans[j]->opts[i];
        i -= http_chans[j]->nopts;
    }
    return NULL;
}

/* Finds key among the keys and checks it belongs to this channel/provider. */
static int
check_key(const struct conf_ctx *c, const char *key, unsigned mask, const struct http_state *st,
          const struct http_opt **out)
{
    const struct http_opt *opt = NULL, *o;
    size_t total;
    int rc;
    for (total = 0; (o = opt_at(total)); total++)
        if (strcmp(o->key, key) == 0)
            opt = o;
    if (!opt) {
        const char **names = xcalloc(total + 1, sizeof(*names)), *near;
        size_t k = 0;
        for (size_t i = 0; i < total; i++)
            if (opt_at(i)->applies & mask)
                names[k++] = opt_at(i)->key;
        near = did_you_mean(key, names);
        rc = nerr_set(c->err, c->file, c->line, 0,
                      "channels.%s: unknown key '%s' for the http transport", c->channel, key);
        if (near) {
            nerr_hint(c->err, "did you mean '%s'?", near);
        } else {
            struct sbuf all;
            sbuf_init(&all);
            for (size_t i = 0; names[i]; i++)
                sbuf_printf(&all, "%s%s", i ? ", " : "", names[i]);
            nerr_hint(c->err, "known keys here: %s", all.s);
            sbuf_free(&all);
        }
        free(names);
        return rc;
    }
    if (!(opt->applies & mask)) {
        if (st->ops->misplaced && (rc = st->ops->misplaced(c, key, opt, st)) < 0)
            return rc;
        for (size_t j = 0; j < N_HTTP_CHANS; j++)
            if (http_chans[j]->keys & opt->applies)
                return conf_err(c, "%s: only the %s channel takes this key", key, http_channels[j]);
    }
    *out = opt;
    return 0;
}

static int
parse_settings(const struct conf_ctx *c, json_t *settings, struct http_state *st)
{
    const char *key;
    json_t *v;
    unsigned mask = 0;
    int rc;

    st->timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
    st->max_conns = HTTP_DEFAULT_MAX_CONNS;
    for (size_t j = 0; j < N_HTTP_CHANS && !st->ops; j++)
        if (strcmp(c->channel, http_channels[j]) == 0)
            st->ops = http_chans[j];
    if (!st->ops) {
        struct sbuf names;
        sbuf_init(&names);
        for (size_t j = 0; j < N_HTTP_CHANS; j++)
            sbuf_printf(&names, "%s%s",
                        j == 0                  ? ""
                        : j + 1 == N_HTTP_CHANS ? " and "
                                                : ", ",
                        http_channels[j]);
        rc = nerr_set(c->err, c->file, c->line, 0, "the http transport cannot carry the %s channel",
                      c->channel);
        nerr_hint(c->err, "http carries %s", names.s);
        sbuf_free(&names);
        return rc;
    }
    if (settings && !json_is_object(settings))
        return nerr_set(c->err, c->file, c->line, 0, "channels.%s: expected a mapping, got %s",
                        c->channel, json_kind(settings));
    if ((rc = st->ops->prepare(c, settings, st, &mask)) < 0)
        return rc;

    json_object_foreach(settings, key, v)
    {
        const struct http_opt *opt = NULL;
        if (key[0] == '_')
            continue; /* the daemon's own annotations */
        if ((rc = check_key(c, key, mask, st, &opt)) < 0 ||
            (opt->check && (rc = opt->check(c, key, v, st)) < 0))
            return rc;
    }

    if ((v = json_object_get(settings, "user_agent")))
        st->user_agent = xstrdup(json_string_value(v));
    else
        st->user_agent = xstrdup("nudge/" NUDGE_VERSION);
    if ((v = json_object_get(settings, "proxy")))
        st->proxy = xstrdup(json_string_value(v));
    if ((v = json_object_get(settings, "tls_ca_file")))
        st->tls_ca_file = xstrdup(json_string_value(v));
    return st->ops->settings(c, settings, st);
}

/* ---- building requests --------------------------------------------------- */

void
add_header(struct http_xfer *x, const char *fmt, ...)
{
    char line[1024];
    struct curl_slist *l;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    l = curl_slist_append(x->headers, line);
    if (!l) {
        fprintf(stderr, "nudged: out of memory\n");
        abort();
    }
    x->headers = l;
}

const char *
idem_key(const struct nudge_message *m, char *buf, size_t size)
{
    if (m->idempotency_key && m->idempotency_key[0] && !strpbrk(m->idempotency_key, "\r\n"))
        return m->idempotency_key;
    snprintf(buf, size, "nudge-%" PRId64, m->delivery_id);
    return buf;
}

/* ---- results ------------------------------------------------------------- */

static int
curl_code_errno(CURLcode rc, long os_errno)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return os_errno > 0 ? -(int)os_errno : -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return os_errno > 0 ? -(int)os_errno : -ECONNRESET;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return -EINVAL;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return -EPROTO;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* Seconds a Retry-After value asks for, 0 if none or unreadable. */
static int
retry_after_seconds(const char *value, const char *date)
{
    int64_t secs;
    time_t when, ref;
    if (!value[0])
        return 0;
    if (value[0] >= '0' && value[0] <= '9') {
        if (parse_i64(value, &secs) < 0)
            return 0;
    } else {
        /* An HTTP-date: relative to the response's own Date when it has
         * one, so the server's clock error does not matter. */
        when = curl_getdate(value, NULL);
        if (when < 0)
            return 0;
        ref = date[0] ? curl_getdate(date, NULL) : -1;
        if (ref < 0)
            ref = time(NULL);
        secs = (int64_t)when - (int64_t)ref;
    }
    if (secs <= 0)
        return 0;
    return secs > HTTP_RETRY_AFTER_MAX ? HTTP_RETRY_AFTER_MAX : (int)secs;
}

static enum send_status
http_status_class(long code, bool sms)
{
    if (code >= 200 && code < 300)
        return SEND_OK;
    if (code == 408 || code == 429 || code >= 500)
        return SEND_TRANSIENT;
    /* The provider refusing our credentials says nothing about the number. */
    if (code == 401 || code == 403 || code == 407)
        return SEND_TRANSIENT;
    (void)sms;
    return SEND_PERMANENT;
}

enum send_blame
http_blame(bool sms, long code)
{
    if (code == 401 || code == 403 || code == 407)
        return BLAME_SENDER; /* our credentials or our signature */
    return sms ? BLAME_NOBODY : webhook_status_blame(code);
}

/* The first bytes of the response as one line of text. */
void
snippet(const struct http_xfer *x, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < x->resp.len && n + 1 < size && n < 160; i++) {
        unsigned char c = (unsigned char)x->resp.s[i];
        out[n++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    /* Do not cut a UTF-8 sequence in half. */
    while (n > 0 && ((unsigned char)out[n - 1] & 0xC0) == 0x80)
        n--;
    if (n > 0 && (unsigned char)out[n - 1] >= 0xC0)
        n--;
    out[n] = '\0';
}

/* A result from the HTTP status alone (with Retry-After for transient). */
void
result_http(struct http_xfer *x, long code, bool sms, const char *detail)
{
    struct send_result *r = x->res;
    enum send_status s = http_status_class(code, sms);
    char body[200];
    if (!detail) {
        snippet(x, body, sizeof(body));
        detail = body;
    }
    send_result_set(r, s, (int)code, "HTTP %ld%s%s%s%s", code, x->reason[0] ? " " : "", x->reason,
                    detail[0] ? ": " : "", detail);
    send_result_blame(r, http_blame(sms, code));
    if (s == SEND_TRANSIENT) {
        r->retry_after = retry_after_seconds(x->retry_after, x->date);
        if (r->retry_after) {
            size_t len = strlen(r->error);
            snprintf(r->error + len, sizeof(r->error) - len, " (retry after %d s)", r->retry_after);
        }
    }
}

/* ---- the backend --------------------------------------------------------- */

static void
xfer_finish(struct http_xfer *x, CURLcode rc)
{
    struct http_state *st = x->owner;
    long code = 0, os_errno = 0;
    if (rc != CURLE_OK) {
        int e;
        curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &os_errno);
        e = curl_code_errno(rc, os_errno);
        send_result_set(x->res, e == -EINVAL ? SEND_PERMANENT : SEND_TRANSIENT, e, "%s",
                        x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
        return;
    }
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 300 && code < 400) {
        char *loc = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &loc);
        send_result_set(x->res, SEND_PERMANENT, (int)code,
                        "HTTP %ld: redirects are not followed%s%s", code, loc ? " (to " : "",
                        loc ? loc : "");
        if (loc) {
            size_t len = strlen(x->res->error);
            if (len + 1 < sizeof(x->res->error))
                snprintf(x->res->error + len, sizeof(x->res->error) - len, ")");
        }
        return;
    }
    st->ops->finish(x, code);
}

/* The engine's build callback: message i as a webhook or SMS request. */
static int
http_build(void *owner, struct http_xfer *x, size_t i)
{
    struct http_state *st = owner;
    const struct nudge_message *m = &st->msgs[i];
    return st->ops->build(st, x, m, x->res);
}

static void
http_finish(void *owner, struct http_xfer *x, CURLcode rc)
{
    (void)owner;
    xfer_finish(x, rc);
}

static void
http_send(void *state, const struct nudge_message *msgs, size_t n, struct send_result *res)
{
    struct http_state *st = state;
    st->msgs = msgs;
    http_engine_run(&st->eng, n, res);
    st->msgs = NULL;
}

static void
http_close(void *state)
{
    struct http_state *st = state;
    if (!st)
        return;
    http_engine_free(&st->eng);
    if (st->ops)
        st->ops->free(st->chan);
    free(st->channel);
    free(st->user_agent);
    free(st->proxy);
    free(st->tls_ca_file);
    free(st);
}

static int
http_open(const char *channel, json_t *settings, void **state, struct nerr *err)
{
    struct conf_ctx c = {
        .channel = channel ? channel : "",
        .file = json_string_value(json_object_get(settings, "_file")),
        .line = (int)json_integer_value(json_object_get(settings, "_line")),
        .err = err,
    };
    struct http_state *st;
    int rc;

    *state = NULL;
    pthread_once(&http_once, http_global_init);
    if (http_init_rc != CURLE_OK)
        return nerr_set(err, c.file, c.line, 0, "channels.%s: libcurl failed to initialise: %s",
                        c.channel, curl_easy_strerror(http_init_rc));
    st = xcalloc(1, sizeof(*st));
    st->channel = xstrdup(c.channel);
    if ((rc = parse_settings(&c, settings, st)) < 0) {
        http_close(st);
        return rc;
    }
    st->eng.name = st->channel;
    st->eng.timeout_ms = st->timeout_ms;
    st->eng.max_conns = st->max_conns;
    st->eng.user_agent = st->user_agent;
    st->eng.proxy = st->proxy;
    st->eng.tls_ca_file = st->tls_ca_file;
    st->eng.owner = st;
    st->eng.build = http_build;
    st->eng.finish = http_finish;
    *state = st;
    return 0;
}

static enum send_status
http_classify_error(int code)
{
    if (code < 0)
        return code == -EINVAL ? SEND_PERMANENT : SEND_TRANSIENT;
    return http_status_class(code, false);
}

const struct channel_backend channel_backend_http = {
    .name = "http",
    .channels = http_channels,
    .open = http_open,
    .send = http_send,
    .close = http_close,
    .classify_error = http_classify_error,
    .batch_max = HTTP_BATCH_MAX,
    .needs_payload = true,
};
