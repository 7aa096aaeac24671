/*
 * channel_http.c: the `http` transport backend for the webhook and sms
 * channels: settings validation, building each request (Standard Webhooks
 * signing; generic, Twilio and Aliyun SMS shapes), and running a whole batch
 * concurrently through libcurl's multi interface on a private libuv loop.
 * The design and the settings reference are in channel_http.h.
 *
 * libcurl details this file relies on (7.88):
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
#include "channel_http.h"
#include "http_engine.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "log.h"
#include "util.h"
#include "ynode.h"

#define HTTP_DEFAULT_TIMEOUT_MS 10000L
#define HTTP_DEFAULT_MAX_CONNS 16
#define HTTP_MAX_CONNS 256
/* A Retry-After further out than this is taken as this. */
#define HTTP_RETRY_AFTER_MAX (7 * 86400)
/* Messages per send(): a batch is one burst of concurrent requests. */
#define HTTP_BATCH_MAX 100
#define TWILIO_DEFAULT_BASE "https://api.twilio.com"
#define ALIYUN_DEFAULT_BASE "https://dysmsapi.aliyuncs.com"
#define ALIYUN_DEFAULT_REGION "cn-hangzhou"

enum http_kind {
    HTTP_WEBHOOK, /* channel "webhook" */
    HTTP_SMS,     /* channel "sms" */
};

enum sms_provider {
    SMS_GENERIC, /* url / method / headers / body templates */
    SMS_TWILIO,  /* Twilio Messages API */
    SMS_ALIYUN,  /* Aliyun (Alibaba Cloud) SMS, RPC SendSms */
};

struct http_state;

/* One configured http transport (a dispatcher slot). Settings are
 * read-only after open(); the engine part is used by send() only. */
struct http_state {
    char *channel;       /* "webhook" or "sms" */
    enum http_kind kind; /* which of the two */
    long timeout_ms;     /* whole-request timeout */
    int max_conns;       /* concurrent requests and cached connections */
    char *user_agent;    /* User-Agent header */
    char *proxy;         /* proxy URL, NULL for none */
    char *tls_ca_file;   /* CA bundle, NULL for the system store */

    unsigned char *hook_key; /* webhook: default HMAC key, NULL if none */
    size_t hook_keylen;      /* its length */

    enum sms_provider provider; /* sms: which API */
    char *default_cc;           /* sms: digits, NULL if none */
    char *from;                 /* sms: sender, NULL if none */
    char *url;                  /* generic: URL template */
    bool method_get;            /* generic: GET instead of POST */
    bool body_json;             /* generic: JSON body (else form) */
    json_t *body;               /* generic: field -> template mapping */
    char **hdrs;                /* generic: "Name: value" lines, NULL-terminated */
    bool hdr_ctype;             /* generic: headers set Content-Type */
    int *ok_status;             /* generic: success statuses, NULL = any 2xx */
    size_t n_ok_status;         /* their number */
    char *json_field;           /* generic: dotted path into the response */
    char *json_value;           /* generic: what it must equal (as text) */
    char *base_url;             /* twilio, aliyun: API root without final '/' */
    char *account_sid;          /* twilio */
    char *auth_token;           /* twilio */
    char *access_key_id;        /* aliyun */
    char *access_key_secret;    /* aliyun */
    char *sign_name;            /* aliyun */
    char *template_code;        /* aliyun */
    char *region_id;            /* aliyun */

    struct http_engine eng;           /* the requests (http_engine.c) */
    const struct nudge_message *msgs; /* the batch being sent */
};

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
static CURLcode http_init_rc = CURLE_OK;

static void
http_global_init(void)
{
    /* Not thread-safe by contract: once, from the loop thread's open(). */
    http_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void
secret_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* Trims ASCII white space at both ends, in place; returns s. */
static char *
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

/* ---- encodings ----------------------------------------------------------- */

/* RFC 3986 percent-encoding, keeping only the unreserved characters: what
 * both form bodies and Aliyun's signature scheme want (space is %20). */
static void
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

static void
form_add(struct sbuf *b, const char *key, const char *value)
{
    if (b->len)
        sbuf_addc(b, '&');
    pct_encode(b, key);
    sbuf_addc(b, '=');
    pct_encode(b, value ? value : "");
}

/* Standard base64 (with padding) of in into a malloc'd string. */
static char *
b64_encode(const unsigned char *in, size_t len)
{
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    return out;
}

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

enum opt_type {
    OT_IGNORED,     /* the registry's or the dispatcher's */
    OT_STRING,      /* non-empty string, one line */
    OT_URL,         /* http:// or https:// string */
    OT_SECONDS,     /* number of seconds */
    OT_CONNS,       /* 1..HTTP_MAX_CONNS */
    OT_PROVIDER,    /* generic | twilio | aliyun */
    OT_CC,          /* country calling code */
    OT_METHOD,      /* POST | GET */
    OT_BODY_FORMAT, /* form | json */
    OT_HEADERS,     /* mapping of name -> value */
    OT_BODY,        /* mapping of field -> template */
    OT_SUCCESS,     /* mapping: status, json_field, json_value */
};

/* Who a key is for. */
#define FOR_WEBHOOK 0x01u
#define FOR_GENERIC 0x02u
#define FOR_TWILIO 0x04u
#define FOR_ALIYUN 0x08u
#define FOR_SMS (FOR_GENERIC | FOR_TWILIO | FOR_ALIYUN)
#define FOR_ALL (FOR_WEBHOOK | FOR_SMS)

/* One accepted settings key. */
struct http_opt {
    const char *key;    /* name in nudge.yaml */
    enum opt_type type; /* what its value must be */
    unsigned applies;   /* FOR_* mask */
};

static const struct http_opt http_opts[] = {
    {"transport", OT_IGNORED, FOR_ALL},
    {"concurrency", OT_IGNORED, FOR_ALL},
    {"timeout", OT_SECONDS, FOR_ALL},
    {"max_connections", OT_CONNS, FOR_ALL},
    {"user_agent", OT_STRING, FOR_ALL},
    {"proxy", OT_STRING, FOR_ALL},
    {"tls_ca_file", OT_STRING, FOR_ALL},
    {"secret_file", OT_STRING, FOR_WEBHOOK},
    {"provider", OT_PROVIDER, FOR_SMS},
    {"default_country_code", OT_CC, FOR_SMS},
    {"from", OT_STRING, FOR_GENERIC | FOR_TWILIO},
    {"url", OT_URL, FOR_GENERIC},
    {"method", OT_METHOD, FOR_GENERIC},
    {"headers", OT_HEADERS, FOR_GENERIC},
    {"body_format", OT_BODY_FORMAT, FOR_GENERIC},
    {"body", OT_BODY, FOR_GENERIC},
    {"success", OT_SUCCESS, FOR_GENERIC},
    {"account_sid", OT_STRING, FOR_TWILIO},
    {"auth_token", OT_STRING, FOR_TWILIO},
    {"auth_token_file", OT_STRING, FOR_TWILIO},
    {"base_url", OT_URL, FOR_TWILIO | FOR_ALIYUN},
    {"access_key_id", OT_STRING, FOR_ALIYUN},
    {"access_key_secret", OT_STRING, FOR_ALIYUN},
    {"access_key_secret_file", OT_STRING, FOR_ALIYUN},
    {"sign_name", OT_STRING, FOR_ALIYUN},
    {"template_code", OT_STRING, FOR_ALIYUN},
    {"region_id", OT_STRING, FOR_ALIYUN},
};
#define HTTP_NOPTS (sizeof(http_opts) / sizeof(http_opts[0]))

/* Placeholders of SMS templates. */
static const char *const sms_placeholders[] = {"to", "text", "from", "id", "segments", NULL};

/* Where the settings came from, for located errors. */
struct conf_ctx {
    const char *channel; /* channel name */
    const char *file;    /* nudge.yaml path or NULL */
    int line;            /* line of the channel's mapping or 0 */
    struct nerr *err;    /* the caller's error */
};

static int conf_err(const struct conf_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
conf_err(const struct conf_ctx *c, const char *fmt, ...)
{
    char msg[NERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return nerr_set(c->err, c->file, c->line, 0, "channels.%s.%s", c->channel, msg);
}



/* A one-line, NUL-free, non-empty string. */
static bool
good_string(const json_t *v)
{
    const char *s = json_string_value(v);
    return s && s[0] && strlen(s) == json_string_length(v) && !strpbrk(s, "\r\n");
}


/* Checks the placeholders of one template; what names it for the message. */
static int
tmpl_check(const struct conf_ctx *c, const char *what, const char *t)
{
    const char *p = t;
    while ((p = strstr(p, "{{"))) {
        const char *end = strstr(p + 2, "}}");
        char name[32];
        size_t n;
        const char *s;
        bool known = false;
        int rc;
        if (!end) {
            rc = conf_err(c, "%s: \"{{\" without a closing \"}}\"", what);
            nerr_hint(c->err, "placeholders are {{to}}, {{text}}, {{from}}, {{id}}, {{segments}}");
            return rc;
        }
        s = p + 2;
        while (s < end && *s == ' ')
            s++;
        n = (size_t)(end - s);
        while (n > 0 && s[n - 1] == ' ')
            n--;
        snprintf(name, sizeof(name), "%.*s", (int)n, s);
        for (int i = 0; sms_placeholders[i]; i++)
            known |= n < sizeof(name) && strcmp(name, sms_placeholders[i]) == 0;
        if (!known) {
            const char *near = did_you_mean(name, sms_placeholders);
            rc = conf_err(c, "%s: unknown placeholder {{%.*s}}", what, (int)(end - p - 2), p + 2);
            if (near)
                nerr_hint(c->err, "did you mean {{%s}}?", near);
            else
                nerr_hint(c->err,
                          "placeholders are {{to}}, {{text}}, {{from}}, {{id}}, {{segments}}");
            return rc;
        }
        p = end + 2;
    }
    return 0;
}

/* Values substituted into SMS templates. */
struct sms_vars {
    const char *to;    /* E.164 */
    const char *text;  /* the message */
    const char *from;  /* sender or "" */
    const char *id;    /* idempotency key */
    char segments[16]; /* segment count */
};

/* One SMS provider: its name in nudge.yaml, which settings belong to it,
 * how a message becomes a request (0 or a negative errno: the request could
 * not be signed) and how the answer becomes a result. A new provider is a
 * pair of functions and one row in sms_providers. */
struct sms_provider_ops {
    const char *name;
    unsigned mask; /* FOR_* bit of its settings */
    int (*build)(struct http_state *st, struct http_xfer *x, const struct sms_vars *vars);
    void (*finish)(struct http_xfer *x, long code);
};

static int build_generic(struct http_state *st, struct http_xfer *x, const struct sms_vars *vars);
static int build_twilio(struct http_state *st, struct http_xfer *x, const struct sms_vars *vars);
static int build_aliyun(struct http_state *st, struct http_xfer *x, const struct sms_vars *vars);
static void finish_generic(struct http_xfer *x, long code);
static void finish_twilio(struct http_xfer *x, long code);
static void finish_aliyun(struct http_xfer *x, long code);

/* Indexed by enum sms_provider. */
static const struct sms_provider_ops sms_providers[] = {
    [SMS_GENERIC] = {"generic", FOR_GENERIC, build_generic, finish_generic},
    [SMS_TWILIO] = {"twilio", FOR_TWILIO, build_twilio, finish_twilio},
    [SMS_ALIYUN] = {"aliyun", FOR_ALIYUN, build_aliyun, finish_aliyun},
};
#define N_SMS_PROVIDERS (sizeof(sms_providers) / sizeof(sms_providers[0]))

static const char *
provider_name(enum sms_provider p)
{
    return sms_providers[p].name;
}

static const char *
sms_var(const struct sms_vars *v, const char *name, size_t n)
{
    if (n == 2 && !strncmp(name, "to", 2))
        return v->to;
    if (n == 4 && !strncmp(name, "text", 4))
        return v->text;
    if (n == 4 && !strncmp(name, "from", 4))
        return v->from;
    if (n == 2 && !strncmp(name, "id", 2))
        return v->id;
    if (n == 8 && !strncmp(name, "segments", 8))
        return v->segments;
    return "";
}

/* Expands a checked template; pct percent-encodes the values (URLs). */
static void
tmpl_expand(struct sbuf *b, const char *t, const struct sms_vars *v, bool pct)
{
    const char *p = t, *open;
    sbuf_adds(b, "");
    while ((open = strstr(p, "{{"))) {
        const char *end = strstr(open + 2, "}}"), *s = open + 2, *val;
        size_t n;
        sbuf_add(b, p, (size_t)(open - p));
        if (!end) { /* cannot happen after tmpl_check; keep the text */
            p = open;
            break;
        }
        while (s < end && *s == ' ')
            s++;
        n = (size_t)(end - s);
        while (n > 0 && s[n - 1] == ' ')
            n--;
        val = sms_var(v, s, n);
        if (pct)
            pct_encode(b, val);
        else
            sbuf_adds(b, val);
        p = end + 2;
    }
    sbuf_adds(b, p);
}

/* Checks a body value: templates in strings; nesting only for JSON. */
static int
body_check(const struct conf_ctx *c, const char *path, const json_t *v, bool json, int depth)
{
    const char *k;
    json_t *item;
    size_t i;
    char sub[256];
    int rc;
    if (json_is_string(v)) {
        if (strlen(json_string_value(v)) != json_string_length(v))
            return conf_err(c, "%s: contains a NUL character", path);
        return tmpl_check(c, path, json_string_value(v));
    }
    if (json_is_number(v) || json_is_boolean(v) || (json && json_is_null(v)))
        return 0;
    if (!json || depth > 8 || !(json_is_object(v) || json_is_array(v))) {
        rc = conf_err(c, "%s: expected a string, number or boolean, got %s", path, json_kind(v));
        if (!json && (json_is_object(v) || json_is_array(v)))
            nerr_hint(c->err, "nested values need body_format: json");
        return rc;
    }
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, item)
        {
            snprintf(sub, sizeof(sub), "%s.%s", path, k);
            if ((rc = body_check(c, sub, item, json, depth + 1)) < 0)
                return rc;
        }
    } else {
        json_array_foreach(v, i, item)
        {
            snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
            if ((rc = body_check(c, sub, item, json, depth + 1)) < 0)
                return rc;
        }
    }
    return 0;
}

/* A JSON scalar as the text a comparison uses. */
static char *
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

static int
parse_status_code(const json_t *v, int *out)
{
    return json_get_int(v, 100, 599, out);
}

static int
parse_success(const struct conf_ctx *c, const json_t *v, struct http_state *st)
{
    const char *k;
    json_t *item;
    int rc;
    if (!json_is_object(v))
        return conf_err(c, "success: expected a mapping (status, json_field, json_value), got %s",
                        json_kind(v));
    json_object_foreach((json_t *)v, k, item)
    {
        if (strcmp(k, "status") == 0) {
            size_t n = json_is_array(item) ? json_array_size(item) : 1;
            if (n == 0)
                return conf_err(c, "success.status: the list is empty");
            st->ok_status = xcalloc(n, sizeof(int));
            st->n_ok_status = n;
            for (size_t i = 0; i < n; i++) {
                const json_t *e = json_is_array(item) ? json_array_get(item, i) : item;
                if (parse_status_code(e, &st->ok_status[i]) < 0)
                    return conf_err(c,
                                    "success.status: expected an HTTP status 100-599 or a "
                                    "list of them, got %s",
                                    json_kind(e));
            }
        } else if (strcmp(k, "json_field") == 0) {
            if (!good_string(item))
                return conf_err(c,
                                "success.json_field: expected a field name (a.b for nested), "
                                "got %s",
                                json_kind(item));
            st->json_field = xstrdup(json_string_value(item));
        } else if (strcmp(k, "json_value") == 0) {
            if (!(st->json_value = scalar_text(item)) || json_is_null(item))
                return conf_err(c,
                                "success.json_value: expected a string, number or boolean, "
                                "got %s",
                                json_kind(item));
        } else {
            static const char *const names[] = {"status", "json_field", "json_value", NULL};
            const char *near = did_you_mean(k, names);
            rc = conf_err(c, "success: unknown key '%s'", k);
            if (near)
                nerr_hint(c->err, "did you mean '%s'?", near);
            else
                nerr_hint(c->err, "success takes status, json_field and json_value");
            return rc;
        }
    }
    if (!st->json_field != !st->json_value)
        return conf_err(c, "success: json_field and json_value go together");
    return 0;
}

static int
parse_headers(const struct conf_ctx *c, const json_t *v, struct http_state *st)
{
    const char *k;
    json_t *item;
    size_t n = 0;
    if (!json_is_object(v))
        return conf_err(c, "headers: expected a mapping of header name -> value, got %s",
                        json_kind(v));
    st->hdrs = xcalloc(json_object_size(v) + 1, sizeof(char *));
    json_object_foreach((json_t *)v, k, item)
    {
        char *val;
        if (!k[0] || strpbrk(k, " \t\r\n:()<>@,;\\\"/[]?={}"))
            return conf_err(c, "headers: '%s' is not a header name", k);
        if (!(val = scalar_text(item)) || json_is_null(item) || strpbrk(val, "\r\n")) {
            free(val);
            return conf_err(c, "headers.%s: expected a one-line string, got %s", k,
                            json_kind(item));
        }
        if (strcasecmp(k, "Content-Type") == 0)
            st->hdr_ctype = true;
        st->hdrs[n++] = xasprintf("%s: %s", k, val);
        free(val);
    }
    return 0;
}

/* Reads one secret: inline key or key_file (trimmed), exactly one of them. */
static int
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

static int
require(const struct conf_ctx *c, const json_t *settings, const char *key, const char *provider,
        const char *example, char **out)
{
    const char *s = json_string_value(json_object_get(settings, key));
    int rc;
    if (!s) {
        rc = conf_err(c, "%s: missing (provider %s needs it)", key, provider);
        nerr_hint(c->err, "for example  %s: %s", key, example);
        return rc;
    }
    *out = xstrdup(s);
    return 0;
}

static char *
base_url(const json_t *settings, const char *dflt)
{
    const char *s = json_string_value(json_object_get(settings, "base_url"));
    char *u = xstrdup(s ? s : dflt);
    size_t n = strlen(u);
    while (n > 0 && u[n - 1] == '/')
        u[--n] = '\0';
    return u;
}

/* Finds key in the table and checks it belongs to this channel/provider. */
static int
check_key(const struct conf_ctx *c, const char *key, unsigned mask, const struct http_state *st,
          const struct http_opt **out)
{
    const struct http_opt *opt = NULL;
    int rc;
    for (size_t i = 0; i < HTTP_NOPTS; i++)
        if (strcmp(http_opts[i].key, key) == 0)
            opt = &http_opts[i];
    if (!opt) {
        const char *names[HTTP_NOPTS + 1], *near;
        size_t k = 0;
        for (size_t i = 0; i < HTTP_NOPTS; i++)
            if (http_opts[i].applies & mask)
                names[k++] = http_opts[i].key;
        names[k] = NULL;
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
        return rc;
    }
    if (!(opt->applies & mask)) {
        if (st->kind == HTTP_WEBHOOK && strcmp(key, "url") == 0) {
            rc = conf_err(c, "url: not a setting of the webhook channel");
            nerr_hint(c->err, "each rule's webhook action names its url");
            return rc;
        }
        if (st->kind == HTTP_WEBHOOK || !(opt->applies & FOR_SMS))
            return conf_err(c, "%s: only the %s channel takes this key", key,
                            st->kind == HTTP_WEBHOOK ? "sms" : "webhook");
        rc = conf_err(c, "%s: not a setting of provider %s", key, provider_name(st->provider));
        nerr_hint(c->err, "it belongs to provider %s%s%s%s%s",
                  opt->applies & FOR_GENERIC ? "generic" : "",
                  (opt->applies & FOR_GENERIC) && (opt->applies & (FOR_TWILIO | FOR_ALIYUN)) ? " / "
                                                                                             : "",
                  opt->applies & FOR_TWILIO ? "twilio" : "",
                  (opt->applies & FOR_TWILIO) && (opt->applies & FOR_ALIYUN) ? " / " : "",
                  opt->applies & FOR_ALIYUN ? "aliyun" : "");
        return rc;
    }
    *out = opt;
    return 0;
}

/* Checks one value's type and stores what the state keeps of it. */
static int
check_value(const struct conf_ctx *c, const struct http_opt *opt, const char *key, json_t *v,
            struct http_state *st)
{
    int rc, n;
    switch (opt->type) {
    case OT_IGNORED:
    case OT_PROVIDER:
        break;
    case OT_STRING:
        if (!good_string(v))
            return conf_err(c, "%s: expected a non-empty one-line string, got %s", key,
                            json_is_string(v) ? "an empty or multi-line string" : json_kind(v));
        break;
    case OT_URL: {
        const char *s = json_string_value(v);
        if (!good_string(v) || (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)) {
            rc = conf_err(c, "%s: expected an http:// or https:// URL, got %s%s%s", key,
                          s ? "\"" : json_kind(v), s ? s : "", s ? "\"" : "");
            return rc;
        }
        break;
    }
    case OT_SECONDS: {
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
        break;
    }
    case OT_CONNS:
        if (json_get_int(v, 1, HTTP_MAX_CONNS, &n) < 0)
            return conf_err(c, "%s: expected an integer 1-%d, got %s", key, HTTP_MAX_CONNS,
                            json_kind(v));
        st->max_conns = n;
        break;
    case OT_CC: {
        char *s = scalar_text(v);
        const char *d = s && s[0] == '+' ? s + 1 : s;
        size_t len = d ? strlen(d) : 0;
        bool ok = d && (json_is_string(v) || json_is_integer(v)) && len >= 1 && len <= 3 &&
                  d[0] != '0' && strspn(d, "0123456789") == len;
        if (ok)
            st->default_cc = xstrdup(d);
        free(s);
        if (!ok) {
            rc = conf_err(c, "%s: expected a country calling code (1-3 digits), got %s", key,
                          json_kind(v));
            nerr_hint(c->err, "for example  default_country_code: 86  (or 1, 44, ...)");
            return rc;
        }
        break;
    }
    case OT_METHOD: {
        const char *s = json_string_value(v);
        if (s && strcasecmp(s, "GET") == 0)
            st->method_get = true;
        else if (!s || strcasecmp(s, "POST") != 0)
            return conf_err(c, "%s: expected POST or GET, got %s%s%s", key, s ? "\"" : json_kind(v),
                            s ? s : "", s ? "\"" : "");
        break;
    }
    case OT_BODY_FORMAT: {
        const char *s = json_string_value(v);
        if (s && strcmp(s, "json") == 0)
            st->body_json = true;
        else if (!s || strcmp(s, "form") != 0)
            return conf_err(c, "%s: expected form or json, got %s%s%s", key,
                            s ? "\"" : json_kind(v), s ? s : "", s ? "\"" : "");
        break;
    }
    case OT_HEADERS:
        if ((rc = parse_headers(c, v, st)) < 0)
            return rc;
        break;
    case OT_BODY:
        if (!json_is_object(v))
            return conf_err(c, "body: expected a mapping of field -> template, got %s",
                            json_kind(v));
        break; /* checked below, once body_format is known */
    case OT_SUCCESS:
        if ((rc = parse_success(c, v, st)) < 0)
            return rc;
        break;
    }
    return 0;
}

static int
parse_settings(const struct conf_ctx *c, json_t *settings, struct http_state *st)
{
    const char *key;
    json_t *v;
    unsigned mask;
    int rc;

    st->timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
    st->max_conns = HTTP_DEFAULT_MAX_CONNS;
    if (strcmp(c->channel, "webhook") == 0) {
        st->kind = HTTP_WEBHOOK;
    } else if (strcmp(c->channel, "sms") == 0) {
        st->kind = HTTP_SMS;
    } else {
        rc = nerr_set(c->err, c->file, c->line, 0, "the http transport cannot carry the %s channel",
                      c->channel);
        nerr_hint(c->err, "http carries webhook and sms");
        return rc;
    }
    if (settings && !json_is_object(settings))
        return nerr_set(c->err, c->file, c->line, 0, "channels.%s: expected a mapping, got %s",
                        c->channel, json_kind(settings));

    /* The provider first: it decides which other keys belong. */
    v = json_object_get(settings, "provider");
    if (st->kind == HTTP_SMS && v) {
        const char *p = json_string_value(v);
        size_t i = 0;
        while (p && i < N_SMS_PROVIDERS && strcmp(p, sms_providers[i].name) != 0)
            i++;
        if (p && i < N_SMS_PROVIDERS)
            st->provider = (enum sms_provider)i;
        else {
            rc = conf_err(c, "provider: expected generic, twilio or aliyun, got %s%s%s",
                          p ? "\"" : json_kind(v), p ? p : "", p ? "\"" : "");
            return rc;
        }
    }
    mask = st->kind == HTTP_WEBHOOK ? FOR_WEBHOOK : sms_providers[st->provider].mask;

    json_object_foreach(settings, key, v)
    {
        const struct http_opt *opt = NULL;
        if (key[0] == '_')
            continue; /* the daemon's own annotations */
        if ((rc = check_key(c, key, mask, st, &opt)) < 0 ||
            (rc = check_value(c, opt, key, v, st)) < 0)
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

    if (st->kind == HTTP_WEBHOOK) {
        const char *path = json_string_value(json_object_get(settings, "secret_file"));
        char why[512];
        if (path && webhook_load_key(path, &st->hook_key, &st->hook_keylen, why, sizeof(why)) < 0)
            return conf_err(c, "secret_file: %s", why);
        return 0;
    }

    if ((v = json_object_get(settings, "from")))
        st->from = xstrdup(json_string_value(v));
    switch (st->provider) {
    case SMS_GENERIC: {
        const char *url = json_string_value(json_object_get(settings, "url"));
        if (!url) {
            rc = conf_err(c, "url: missing (the generic sms provider posts to it)");
            nerr_hint(c->err, "for example  url: https://sms.example.com/send, or choose "
                              "provider: twilio | aliyun");
            return rc;
        }
        if ((rc = tmpl_check(c, "url", url)) < 0)
            return rc;
        st->url = xstrdup(url);
        if ((v = json_object_get(settings, "body"))) {
            const char *field;
            json_t *item;
            json_object_foreach(v, field, item)
            {
                char path[256];
                snprintf(path, sizeof(path), "body.%s", field);
                if ((rc = body_check(c, path, item, st->body_json, 1)) < 0)
                    return rc;
            }
            st->body = json_deep_copy(v);
        } else {
            st->body = json_pack("{ssss}", "to", "{{to}}", "text", "{{text}}");
            if (st->from)
                json_object_set_new(st->body, "from", json_string("{{from}}"));
        }
        if (st->method_get && st->body_json)
            return conf_err(c, "body_format: json needs method POST (GET has no body)");
        break;
    }
    case SMS_TWILIO:
        if ((rc = require(c, settings, "account_sid", "twilio",
                          "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", &st->account_sid)) < 0)
            return rc;
        if (strspn(st->account_sid, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789") != strlen(st->account_sid))
            return conf_err(c, "account_sid: expected letters and digits (AC...)");
        if ((rc = secret_get(c, settings, "auth_token", "auth_token_file", &st->auth_token)) < 0)
            return rc;
        if (!st->from) {
            rc = conf_err(c, "from: missing (Twilio needs a sender)");
            nerr_hint(c->err, "a Twilio number in E.164 (+15005550006) or a Messaging "
                              "Service SID (MG...)");
            return rc;
        }
        st->base_url = base_url(settings, TWILIO_DEFAULT_BASE);
        break;
    case SMS_ALIYUN:
        if ((rc = require(c, settings, "access_key_id", "aliyun", "LTAI...", &st->access_key_id)) <
                0 ||
            (rc = secret_get(c, settings, "access_key_secret", "access_key_secret_file",
                             &st->access_key_secret)) < 0 ||
            (rc = require(c, settings, "sign_name", "aliyun", "\"阿里云短信测试\"",
                          &st->sign_name)) < 0 ||
            (rc = require(c, settings, "template_code", "aliyun", "SMS_154950909",
                          &st->template_code)) < 0)
            return rc;
        v = json_object_get(settings, "region_id");
        st->region_id = xstrdup(v ? json_string_value(v) : ALIYUN_DEFAULT_REGION);
        st->base_url = base_url(settings, ALIYUN_DEFAULT_BASE);
        break;
    }
    return 0;
}

/* ---- building requests --------------------------------------------------- */

static void add_header(struct http_xfer *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
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

static const char *
idem_key(const struct nudge_message *m, char *buf, size_t size)
{
    if (m->idempotency_key && m->idempotency_key[0] && !strpbrk(m->idempotency_key, "\r\n"))
        return m->idempotency_key;
    snprintf(buf, size, "nudge-%" PRId64, m->delivery_id);
    return buf;
}

static int
build_webhook(struct http_state *st, struct http_xfer *x, const struct nudge_message *m,
              struct send_result *r)
{
    const char *secret_path = json_string_value(json_object_get(m->payload, "_secret_file"));
    unsigned char *key = st->hook_key, *own = NULL;
    size_t keylen = st->hook_keylen;
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

/* Expands a generic body value (JSON): strings are templates. */
static json_t *
body_expand_json(const json_t *t, const struct sms_vars *vars)
{
    const char *k;
    json_t *item, *out;
    size_t i;
    if (json_is_string(t)) {
        struct sbuf b;
        sbuf_init(&b);
        tmpl_expand(&b, json_string_value(t), vars, false);
        out = json_stringn(b.s, b.len);
        sbuf_free(&b);
        return out ? out : json_string("");
    }
    if (json_is_object(t)) {
        out = json_object();
        json_object_foreach((json_t *)t, k, item)
            json_object_set_new(out, k, body_expand_json(item, vars));
        return out;
    }
    if (json_is_array(t)) {
        out = json_array();
        json_array_foreach(t, i, item) json_array_append_new(out, body_expand_json(item, vars));
        return out;
    }
    return json_deep_copy(t);
}

static int
build_generic(struct http_state *st, struct http_xfer *x, const struct sms_vars *vars)
{
    struct sbuf url, form;
    const char *k;
    json_t *v;
    sbuf_init(&url);
    sbuf_init(&form);
    tmpl_expand(&url, st->url, vars, true);
    if (st->body_json) {
        json_t *doc = body_expand_json(st->body, vars);
        char *text = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        sbuf_adds(&x->body, text ? text : "{}");
        free(text);
    } else {
        json_object_foreach(st->body, k, v)
        {
            struct sbuf val;
            sbuf_init(&val);
            if (json_is_string(v)) {
                tmpl_expand(&val, json_string_value(v), vars, false);
            } else {
                char *s = scalar_text(v);
                sbuf_adds(&val, s ? s : "");
                free(s);
            }
            form_add(&form, k, val.s);
            sbuf_free(&val);
        }
    }
    if (st->method_get) {
        x->get = true;
        if (form.len) {
            sbuf_addc(&url, strchr(url.s, '?') ? '&' : '?');
            sbuf_add(&url, form.s, form.len);
        }
    } else if (!st->body_json) {
        sbuf_add(&x->body, form.s ? form.s : "", form.len);
    }
    x->url = sbuf_steal(&url);
    sbuf_free(&form);
    for (size_t i = 0; st->hdrs && st->hdrs[i]; i++)
        add_header(x, "%s", st->hdrs[i]);
    if (!st->hdr_ctype && !x->get)
        add_header(x, "Content-Type: %s",
                   st->body_json ? "application/json" : "application/x-www-form-urlencoded");
    return 0;
}

static int
build_twilio(struct http_state *st, struct http_xfer *x, const struct sms_vars *vars)
{
    struct sbuf url;
    sbuf_init(&url);
    sbuf_printf(&url, "%s/2010-04-01/Accounts/", st->base_url);
    pct_encode(&url, st->account_sid);
    sbuf_adds(&url, "/Messages.json");
    x->url = sbuf_steal(&url);
    form_add(&x->body, "To", vars->to);
    /* A Messaging Service SID picks the sender from the service's pool. */
    form_add(&x->body, strncmp(st->from, "MG", 2) == 0 ? "MessagingServiceSid" : "From", st->from);
    form_add(&x->body, "Body", vars->text);
    add_header(x, "Content-Type: application/x-www-form-urlencoded");
    add_header(x, "I-Twilio-Idempotency-Token: %s", vars->id);
    x->user = xstrdup(st->account_sid);
    x->password = st->auth_token;
    return 0;
}

/* One parameter of an Aliyun RPC request. */
struct rpc_param {
    const char *key;   /* parameter name */
    const char *value; /* its value, unencoded */
};

static int
rpc_param_cmp(const void *a, const void *b)
{
    return strcmp(((const struct rpc_param *)a)->key, ((const struct rpc_param *)b)->key);
}

static int
build_aliyun(struct http_state *st, struct http_xfer *x, const struct sms_vars *vars)
{
    char ts[32], nonce[33];
    unsigned char rnd[16], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char *tparam, *sig;
    json_t *tp = json_pack("{ss}", "text", vars->text);
    struct sbuf canon, to_sign, key;
    struct rpc_param p[14];
    size_t n = 0;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        json_decref(tp);
        return -EIO;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(nonce + 2 * i, 3, "%02x", rnd[i]);
    /* Aliyun checks the timestamp against its own clock: the real one. */
    time_format_iso((ntime_t)time(NULL), ts, sizeof(ts));
    tparam = json_dumps(tp, JSON_COMPACT);
    json_decref(tp);

    p[n++] = (struct rpc_param){"AccessKeyId", st->access_key_id};
    p[n++] = (struct rpc_param){"Action", "SendSms"};
    p[n++] = (struct rpc_param){"Format", "JSON"};
    p[n++] = (struct rpc_param){"OutId", vars->id};
    p[n++] = (struct rpc_param){"PhoneNumbers", vars->to + 1}; /* digits, no '+' */
    p[n++] = (struct rpc_param){"RegionId", st->region_id};
    p[n++] = (struct rpc_param){"SignName", st->sign_name};
    p[n++] = (struct rpc_param){"SignatureMethod", "HMAC-SHA1"};
    p[n++] = (struct rpc_param){"SignatureNonce", nonce};
    p[n++] = (struct rpc_param){"SignatureVersion", "1.0"};
    p[n++] = (struct rpc_param){"TemplateCode", st->template_code};
    p[n++] = (struct rpc_param){"TemplateParam", tparam ? tparam : "{}"};
    p[n++] = (struct rpc_param){"Timestamp", ts};
    p[n++] = (struct rpc_param){"Version", "2017-05-25"};
    qsort(p, n, sizeof(p[0]), rpc_param_cmp);

    /* StringToSign = POST & enc("/") & enc(sorted enc(k)=enc(v) joined by &) */
    sbuf_init(&canon);
    sbuf_init(&to_sign);
    sbuf_init(&key);
    for (size_t i = 0; i < n; i++)
        form_add(&canon, p[i].key, p[i].value);
    sbuf_adds(&to_sign, "POST&");
    pct_encode(&to_sign, "/");
    sbuf_addc(&to_sign, '&');
    pct_encode(&to_sign, canon.s);
    sbuf_printf(&key, "%s&", st->access_key_secret);
    HMAC(EVP_sha1(), key.s, (int)key.len, (const unsigned char *)to_sign.s, to_sign.len, mac,
         &maclen);
    OPENSSL_cleanse(key.s, key.len);
    sig = b64_encode(mac, maclen);

    sbuf_add(&x->body, canon.s, canon.len);
    form_add(&x->body, "Signature", sig);
    x->url = xasprintf("%s/", st->base_url);
    add_header(x, "Content-Type: application/x-www-form-urlencoded");
    add_header(x, "Accept: application/json");
    free(sig);
    free(tparam);
    sbuf_free(&canon);
    sbuf_free(&to_sign);
    sbuf_free(&key);
    return 0;
}

static int
build_sms(struct http_state *st, struct http_xfer *x, const struct nudge_message *m,
          struct send_result *r)
{
    char e164[24], idbuf[40];
    struct sms_vars vars;
    bool ucs2;
    int segs, rc;
    const char *text = m->text ? m->text : "";

    if (sms_normalize_e164(m->to, st->default_cc, e164, sizeof(e164)) < 0) {
        send_result_set(r, SEND_PERMANENT, -EINVAL, "invalid phone number%s",
                   st->default_cc ? "" : " (no country code; set default_country_code?)");
        /* Without a default country, a national number may be fine and the
         * configuration incomplete: only an impossible number as written
         * is the recipient's. */
        if (st->default_cc || m->to[strspn(m->to, " ")] == '+')
            send_result_blame(r, BLAME_RECIPIENT);
        return -EINVAL;
    }
    if ((segs = sms_segments(text, &ucs2)) < 0) {
        send_result_set(r, SEND_PERMANENT, -EINVAL, "the text is not valid UTF-8");
        return -EINVAL;
    }
    memset(&vars, 0, sizeof(vars));
    vars.to = e164;
    vars.text = text;
    vars.from = st->from ? st->from : "";
    vars.id = idem_key(m, idbuf, sizeof(idbuf));
    snprintf(vars.segments, sizeof(vars.segments), "%d", segs);
    if ((rc = sms_providers[st->provider].build(st, x, &vars)) < 0) {
        send_result_set(r, SEND_TRANSIENT, rc, "cannot build the %s request",
                        sms_providers[st->provider].name);
        return rc;
    }
    add_header(x, "Expect:");
    add_header(x, "Idempotency-Key: %s", vars.id);
    return 0;
}

/* ---- results -------------------------------------------------------------- */

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
    if (!sms && code == 410)
        return BLAME_RECIPIENT; /* the endpoint says it is gone for good */
    return BLAME_NOBODY;
}

/* The first bytes of the response as one line of text. */
static void
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
static void
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

/* The value at a dotted path ("data.status", "messages.0.status"). */
static json_t *
json_path(json_t *doc, const char *path)
{
    char *copy = xstrdup(path), *save = NULL;
    json_t *v = doc;
    for (char *part = strtok_r(copy, ".", &save); part && v; part = strtok_r(NULL, ".", &save)) {
        int idx;
        if (json_is_object(v))
            v = json_object_get(v, part);
        else if (json_is_array(v) && parse_int_range(part, 0, 1 << 30, &idx) == 0)
            v = json_array_get(v, (size_t)idx);
        else
            v = NULL;
    }
    free(copy);
    return v;
}

static void
finish_generic(struct http_xfer *x, long code)
{
    struct http_state *st = x->owner;
    bool listed = false;
    if (!st->ok_status)
        listed = code >= 200 && code < 300;
    for (size_t i = 0; i < st->n_ok_status; i++)
        listed |= st->ok_status[i] == code;
    if (!listed) {
        if (code >= 200 && code < 300) {
            send_result_set(x->res, SEND_PERMANENT, (int)code,
                       "HTTP %ld is not a success status here (success.status)", code);
            return;
        }
        result_http(x, code, true, NULL);
        return;
    }
    if (st->json_field) {
        json_t *doc = json_loadb(x->resp.s ? x->resp.s : "", x->resp.len, 0, NULL);
        json_t *v = doc ? json_path(doc, st->json_field) : NULL;
        char *got = v ? scalar_text(v) : NULL;
        if (!got || strcmp(got, st->json_value) != 0) {
            char body[200];
            snippet(x, body, sizeof(body));
            send_result_set(x->res, SEND_PERMANENT, (int)code,
                       "HTTP %ld but %s is %s%s%s, not \"%s\": %s", code, st->json_field,
                       got ? "\"" : "", got ? got : "missing", got ? "\"" : "", st->json_value,
                       body);
            free(got);
            json_decref(doc);
            return;
        }
        free(got);
        json_decref(doc);
    }
    send_result_set(x->res, SEND_OK, (int)code, "%s", "");
}

static void
finish_twilio(struct http_xfer *x, long code)
{
    json_t *doc;
    const char *msg;
    char detail[200];
    if (code >= 200 && code < 300) {
        send_result_set(x->res, SEND_OK, (int)code, "%s", "");
        return;
    }
    /* Twilio errors: {"code": 21211, "message": "...", "status": 400} */
    doc = json_loadb(x->resp.s ? x->resp.s : "", x->resp.len, 0, NULL);
    msg = json_string_value(json_object_get(doc, "message"));
    if (msg) {
        json_int_t err = json_integer_value(json_object_get(doc, "code"));
        enum send_blame b = twilio_error_blame((long)err);
        snprintf(detail, sizeof(detail), "Twilio %" JSON_INTEGER_FORMAT ": %s", err, msg);
        result_http(x, code, true, detail);
        /* Twilio's own code is more precise than the HTTP status, except
         * that a busy or failing API stays a reason to wait. */
        if (b != BLAME_NOBODY && code != 429 && code < 500)
            send_result_blame(x->res, b);
    } else {
        result_http(x, code, true, NULL);
    }
    json_decref(doc);
}

/* Aliyun answer codes that a retry (or an operator) can fix. */
static bool
aliyun_code_transient(const char *c)
{
    static const char *const prefixes[] = {
        "Throttling",         "isp.",
        "ServiceUnavailable", "InternalError",
        "InvalidAccessKeyId", "SignatureDoesNotMatch",
        "SignatureNonceUsed", "InvalidTimeStamp",
        "Forbidden",          NULL,
    };
    static const char *const exact[] = {
        "isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL",    "isv.OUT_OF_SERVICE",
        "isv.AMOUNT_NOT_ENOUGH",      "isv.ACCOUNT_ABNORMAL",     "isv.ACCOUNT_NOT_EXISTS",
        "isv.SMS_SIGNATURE_ILLEGAL",  "isv.SMS_TEMPLATE_ILLEGAL", NULL,
    };
    for (int i = 0; prefixes[i]; i++)
        if (strncmp(c, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    for (int i = 0; exact[i]; i++)
        if (strcmp(c, exact[i]) == 0)
            return true;
    return false;
}

static void
finish_aliyun(struct http_xfer *x, long code)
{
    json_t *doc;
    const char *c, *msg;
    if (code == 429 || code >= 500) {
        result_http(x, code, true, NULL);
        return;
    }
    doc = json_loadb(x->resp.s ? x->resp.s : "", x->resp.len, 0, NULL);
    c = json_string_value(json_object_get(doc, "Code"));
    msg = json_string_value(json_object_get(doc, "Message"));
    if (!c) {
        if (code >= 200 && code < 300)
            send_result_set(x->res, SEND_TRANSIENT, (int)code,
                       "HTTP %ld without an Aliyun Code: is base_url right?", code);
        else
            result_http(x, code, true, NULL);
    } else if (strcmp(c, "OK") == 0 && code >= 200 && code < 300) {
        send_result_set(x->res, SEND_OK, (int)code, "%s", "");
    } else {
        send_result_set(x->res, aliyun_code_transient(c) ? SEND_TRANSIENT : SEND_PERMANENT, (int)code,
                   "Aliyun %s: %s", c, msg ? msg : "");
        send_result_blame(x->res, aliyun_code_blame(c));
    }
    json_decref(doc);
}

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
        send_result_set(x->res, SEND_PERMANENT, (int)code, "HTTP %ld: redirects are not followed%s%s",
                   code, loc ? " (to " : "", loc ? loc : "");
        if (loc) {
            size_t len = strlen(x->res->error);
            if (len + 1 < sizeof(x->res->error))
                snprintf(x->res->error + len, sizeof(x->res->error) - len, ")");
        }
        return;
    }
    if (st->kind == HTTP_WEBHOOK) {
        if (code >= 200 && code < 300)
            send_result_set(x->res, SEND_OK, (int)code, "%s", "");
        else
            result_http(x, code, false, NULL);
        return;
    }
    sms_providers[st->provider].finish(x, code);
}

/* The engine's build callback: message i as a webhook or SMS request. */
static int
http_build(void *owner, struct http_xfer *x, size_t i)
{
    struct http_state *st = owner;
    const struct nudge_message *m = &st->msgs[i];
    return st->kind == HTTP_WEBHOOK ? build_webhook(st, x, m, x->res)
                                    : build_sms(st, x, m, x->res);
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
    if (st->hook_key) {
        OPENSSL_cleanse(st->hook_key, st->hook_keylen);
        free(st->hook_key);
    }
    secret_free(st->auth_token);
    secret_free(st->access_key_secret);
    strv_free(st->hdrs);
    json_decref(st->body);
    free(st->ok_status);
    free(st->json_field);
    free(st->json_value);
    free(st->channel);
    free(st->user_agent);
    free(st->proxy);
    free(st->tls_ca_file);
    free(st->default_cc);
    free(st->from);
    free(st->url);
    free(st->base_url);
    free(st->account_sid);
    free(st->access_key_id);
    free(st->sign_name);
    free(st->template_code);
    free(st->region_id);
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

static const char *const http_channels[] = {"webhook", "sms", NULL};

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
