/*
 * channel_sms_http.c: the sms channel of the `http` transport. Its SMS
 * providers are rows of one table (sms_providers: generic, twilio, aliyun),
 * each naming its settings, the settings it cannot do without, its default
 * base_url, how a message becomes a request and how the answer becomes a
 * result; nothing else here knows which providers exist. Also the settings
 * every provider shares (default_country_code, from) and the generic
 * provider's templates ({{to}}, {{text}}, ...). The design, settings and
 * result tables are in channel_http.h; numbers, segments and provider blame
 * tables are channel_sms.c's; the backend that runs the requests is
 * channel_http.c.
 */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "channel_http_internal.h"

#define TWILIO_DEFAULT_BASE "https://api.twilio.com"
#define ALIYUN_DEFAULT_BASE "https://dysmsapi.aliyuncs.com"
#define ALIYUN_DEFAULT_REGION "cn-hangzhou"

/* The providers' bits of FOR_SMS. */
#define FOR_GENERIC 0x02u
#define FOR_TWILIO 0x04u
#define FOR_ALIYUN 0x08u

struct sms_provider_ops;

/* The sms channel's own settings (http_state.chan). */
struct sms_conf {
    const struct sms_provider_ops *provider; /* which API: a row of sms_providers */
    char *default_cc;                        /* digits, NULL if none */
    char *from;                              /* sender, NULL if none */
    char *url;                               /* generic: URL template */
    bool method_get;                         /* generic: GET instead of POST */
    bool body_json;                          /* generic: JSON body (else form) */
    json_t *body;                            /* generic: field -> template mapping */
    char **hdrs;                             /* generic: "Name: value" lines, NULL-terminated */
    bool hdr_ctype;                          /* generic: headers set Content-Type */
    int *ok_status;                          /* generic: success statuses, NULL = any 2xx */
    size_t n_ok_status;                      /* their number */
    char *json_field;                        /* generic: dotted path into the response */
    char *json_value;                        /* generic: what it must equal (as text) */
    char *base_url;                          /* twilio, aliyun: API root without final '/' */
    char *account_sid;                       /* twilio */
    char *auth_token;                        /* twilio */
    char *access_key_id;                     /* aliyun */
    char *access_key_secret;                 /* aliyun */
    char *sign_name;                         /* aliyun */
    char *template_code;                     /* aliyun */
    char *region_id;                         /* aliyun */
};

/* ---- templates ----------------------------------------------------------- */

/* Placeholders of SMS templates. */
static const char *const sms_placeholders[] = {"to", "text", "from", "id", "segments", NULL};

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

/* A setting a provider cannot do without. */
struct sms_required {
    const char *key;      /* name in nudge.yaml; NULL ends the list */
    const char *file_key; /* a secret: the key naming a file that may hold it instead */
    const char *example;  /* a plain key: the value the hint shows */
    size_t offset;        /* where it goes: offsetof(struct sms_conf, ...) */
    /* More checks of the value (0, or -EINVAL with c->err set), or NULL. */
    int (*check)(const struct conf_ctx *c, const char *value);
};

/* One SMS provider: its name in nudge.yaml, which settings belong to it,
 * which it needs (read in this order), what base_url defaults to, how a
 * message becomes a request (0 or a negative errno: the request could not
 * be signed) and how the answer becomes a result. A new provider is a few
 * functions and one row in sms_providers. */
struct sms_provider_ops {
    const char *name;
    unsigned mask;                   /* FOR_* bit of its settings */
    struct sms_required required[5]; /* its indispensable settings */
    const char *default_base_url;    /* NULL: it takes no base_url */
    /* The rest of its settings, after the required ones; may be NULL. */
    int (*settings)(const struct conf_ctx *c, json_t *settings, struct sms_conf *sms);
    int (*build)(const struct sms_conf *sms, struct http_xfer *x, const struct sms_vars *vars);
    void (*finish)(struct http_xfer *x, long code);
};

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

static int
parse_status_code(const json_t *v, int *out)
{
    return json_get_int(v, 100, 599, out);
}

static int
parse_success(const struct conf_ctx *c, const json_t *v, struct sms_conf *sms)
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
            sms->ok_status = xcalloc(n, sizeof(int));
            sms->n_ok_status = n;
            for (size_t i = 0; i < n; i++) {
                const json_t *e = json_is_array(item) ? json_array_get(item, i) : item;
                if (parse_status_code(e, &sms->ok_status[i]) < 0)
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
            sms->json_field = xstrdup(json_string_value(item));
        } else if (strcmp(k, "json_value") == 0) {
            if (!(sms->json_value = scalar_text(item)) || json_is_null(item))
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
    if (!sms->json_field != !sms->json_value)
        return conf_err(c, "success: json_field and json_value go together");
    return 0;
}

static int
parse_headers(const struct conf_ctx *c, const json_t *v, struct sms_conf *sms)
{
    const char *k;
    json_t *item;
    size_t n = 0;
    if (!json_is_object(v))
        return conf_err(c, "headers: expected a mapping of header name -> value, got %s",
                        json_kind(v));
    sms->hdrs = xcalloc(json_object_size(v) + 1, sizeof(char *));
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
            sms->hdr_ctype = true;
        sms->hdrs[n++] = xasprintf("%s: %s", k, val);
        free(val);
    }
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

/* ---- settings ------------------------------------------------------------ */

static int
opt_cc(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st)
{
    struct sms_conf *sms = st->chan;
    char *s = scalar_text(v);
    const char *d = s && s[0] == '+' ? s + 1 : s;
    size_t len = d ? strlen(d) : 0;
    bool ok = d && (json_is_string(v) || json_is_integer(v)) && len >= 1 && len <= 3 &&
              d[0] != '0' && strspn(d, "0123456789") == len;
    int rc;
    if (ok)
        sms->default_cc = xstrdup(d);
    free(s);
    if (!ok) {
        rc = conf_err(c, "%s: expected a country calling code (1-3 digits), got %s", key,
                      json_kind(v));
        nerr_hint(c->err, "for example  default_country_code: 86  (or 1, 44, ...)");
        return rc;
    }
    return 0;
}

/* One of two words (nocase: in any case); *is_second tells which. */
static int
opt_either(const struct conf_ctx *c, const char *key, const json_t *v, const char *first,
           const char *second, bool nocase, bool *is_second)
{
    const char *s = json_string_value(v);
    int (*cmp)(const char *, const char *) = nocase ? strcasecmp : strcmp;
    if (s && cmp(s, second) == 0)
        *is_second = true;
    else if (!s || cmp(s, first) != 0)
        return conf_err(c, "%s: expected %s or %s, got %s%s%s", key, first, second,
                        s ? "\"" : json_kind(v), s ? s : "", s ? "\"" : "");
    return 0;
}

static int
opt_method(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st)
{
    return opt_either(c, key, v, "POST", "GET", true, &((struct sms_conf *)st->chan)->method_get);
}

static int
opt_body_format(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st)
{
    return opt_either(c, key, v, "form", "json", false, &((struct sms_conf *)st->chan)->body_json);
}

static int
opt_headers(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st)
{
    (void)key;
    return parse_headers(c, v, st->chan);
}

static int
opt_body(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st)
{
    (void)key;
    (void)st;
    if (!json_is_object(v))
        return conf_err(c, "body: expected a mapping of field -> template, got %s", json_kind(v));
    return 0; /* checked in generic_settings, once body_format is known */
}

static int
opt_success(const struct conf_ctx *c, const char *key, json_t *v, struct http_state *st)
{
    (void)key;
    return parse_success(c, v, st->chan);
}

static const struct http_opt sms_opts[] = {
    {"provider", NULL, FOR_SMS}, /* read first, by sms_prepare */
    {"default_country_code", opt_cc, FOR_SMS},
    {"from", opt_string, FOR_GENERIC | FOR_TWILIO},
    {"url", opt_url, FOR_GENERIC},
    {"method", opt_method, FOR_GENERIC},
    {"headers", opt_headers, FOR_GENERIC},
    {"body_format", opt_body_format, FOR_GENERIC},
    {"body", opt_body, FOR_GENERIC},
    {"success", opt_success, FOR_GENERIC},
    {"account_sid", opt_string, FOR_TWILIO},
    {"auth_token", opt_string, FOR_TWILIO},
    {"auth_token_file", opt_string, FOR_TWILIO},
    {"base_url", opt_url, FOR_TWILIO | FOR_ALIYUN},
    {"access_key_id", opt_string, FOR_ALIYUN},
    {"access_key_secret", opt_string, FOR_ALIYUN},
    {"access_key_secret_file", opt_string, FOR_ALIYUN},
    {"sign_name", opt_string, FOR_ALIYUN},
    {"template_code", opt_string, FOR_ALIYUN},
    {"region_id", opt_string, FOR_ALIYUN},
};

static int
generic_settings(const struct conf_ctx *c, json_t *settings, struct sms_conf *sms)
{
    const char *url = json_string_value(json_object_get(settings, "url"));
    json_t *v;
    int rc;
    if (!url) {
        rc = conf_err(c, "url: missing (the generic sms provider posts to it)");
        nerr_hint(c->err, "for example  url: https://sms.example.com/send, or choose "
                          "provider: twilio | aliyun");
        return rc;
    }
    if ((rc = tmpl_check(c, "url", url)) < 0)
        return rc;
    sms->url = xstrdup(url);
    if ((v = json_object_get(settings, "body"))) {
        const char *field;
        json_t *item;
        json_object_foreach(v, field, item)
        {
            char path[256];
            snprintf(path, sizeof(path), "body.%s", field);
            if ((rc = body_check(c, path, item, sms->body_json, 1)) < 0)
                return rc;
        }
        sms->body = json_deep_copy(v);
    } else {
        sms->body = json_pack("{ssss}", "to", "{{to}}", "text", "{{text}}");
        if (sms->from)
            json_object_set_new(sms->body, "from", json_string("{{from}}"));
    }
    if (sms->method_get && sms->body_json)
        return conf_err(c, "body_format: json needs method POST (GET has no body)");
    return 0;
}

static int
twilio_check_sid(const struct conf_ctx *c, const char *sid)
{
    if (strspn(sid, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    "0123456789") != strlen(sid))
        return conf_err(c, "account_sid: expected letters and digits (AC...)");
    return 0;
}

static int
twilio_settings(const struct conf_ctx *c, json_t *settings, struct sms_conf *sms)
{
    int rc;
    (void)settings;
    if (!sms->from) {
        rc = conf_err(c, "from: missing (Twilio needs a sender)");
        nerr_hint(c->err, "a Twilio number in E.164 (+15005550006) or a Messaging "
                          "Service SID (MG...)");
        return rc;
    }
    return 0;
}

static int
aliyun_settings(const struct conf_ctx *c, json_t *settings, struct sms_conf *sms)
{
    json_t *v = json_object_get(settings, "region_id");
    (void)c;
    sms->region_id = xstrdup(v ? json_string_value(v) : ALIYUN_DEFAULT_REGION);
    return 0;
}

/* ---- requests and answers ------------------------------------------------ */

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
build_generic(const struct sms_conf *sms, struct http_xfer *x, const struct sms_vars *vars)
{
    struct sbuf url, form;
    const char *k;
    json_t *v;
    sbuf_init(&url);
    sbuf_init(&form);
    tmpl_expand(&url, sms->url, vars, true);
    if (sms->body_json) {
        json_t *doc = body_expand_json(sms->body, vars);
        char *text = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        sbuf_adds(&x->body, text ? text : "{}");
        free(text);
    } else {
        json_object_foreach(sms->body, k, v)
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
    if (sms->method_get) {
        x->get = true;
        if (form.len) {
            sbuf_addc(&url, strchr(url.s, '?') ? '&' : '?');
            sbuf_add(&url, form.s, form.len);
        }
    } else if (!sms->body_json) {
        sbuf_add(&x->body, form.s ? form.s : "", form.len);
    }
    x->url = sbuf_steal(&url);
    sbuf_free(&form);
    for (size_t i = 0; sms->hdrs && sms->hdrs[i]; i++)
        add_header(x, "%s", sms->hdrs[i]);
    if (!sms->hdr_ctype && !x->get)
        add_header(x, "Content-Type: %s",
                   sms->body_json ? "application/json" : "application/x-www-form-urlencoded");
    return 0;
}

static int
build_twilio(const struct sms_conf *sms, struct http_xfer *x, const struct sms_vars *vars)
{
    struct sbuf url;
    sbuf_init(&url);
    sbuf_printf(&url, "%s/2010-04-01/Accounts/", sms->base_url);
    pct_encode(&url, sms->account_sid);
    sbuf_adds(&url, "/Messages.json");
    x->url = sbuf_steal(&url);
    form_add(&x->body, "To", vars->to);
    /* A Messaging Service SID picks the sender from the service's pool. */
    form_add(&x->body, strncmp(sms->from, "MG", 2) == 0 ? "MessagingServiceSid" : "From",
             sms->from);
    form_add(&x->body, "Body", vars->text);
    add_header(x, "Content-Type: application/x-www-form-urlencoded");
    add_header(x, "I-Twilio-Idempotency-Token: %s", vars->id);
    x->user = xstrdup(sms->account_sid);
    x->password = sms->auth_token;
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
build_aliyun(const struct sms_conf *sms, struct http_xfer *x, const struct sms_vars *vars)
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

    p[n++] = (struct rpc_param){"AccessKeyId", sms->access_key_id};
    p[n++] = (struct rpc_param){"Action", "SendSms"};
    p[n++] = (struct rpc_param){"Format", "JSON"};
    p[n++] = (struct rpc_param){"OutId", vars->id};
    p[n++] = (struct rpc_param){"PhoneNumbers", vars->to + 1}; /* digits, no '+' */
    p[n++] = (struct rpc_param){"RegionId", sms->region_id};
    p[n++] = (struct rpc_param){"SignName", sms->sign_name};
    p[n++] = (struct rpc_param){"SignatureMethod", "HMAC-SHA1"};
    p[n++] = (struct rpc_param){"SignatureNonce", nonce};
    p[n++] = (struct rpc_param){"SignatureVersion", "1.0"};
    p[n++] = (struct rpc_param){"TemplateCode", sms->template_code};
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
    sbuf_printf(&key, "%s&", sms->access_key_secret);
    HMAC(EVP_sha1(), key.s, (int)key.len, (const unsigned char *)to_sign.s, to_sign.len, mac,
         &maclen);
    OPENSSL_cleanse(key.s, key.len);
    sig = b64_encode(mac, maclen);

    sbuf_add(&x->body, canon.s, canon.len);
    form_add(&x->body, "Signature", sig);
    x->url = xasprintf("%s/", sms->base_url);
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
    const struct sms_conf *sms = st->chan;

    if (sms_normalize_e164(m->to, sms->default_cc, e164, sizeof(e164)) < 0) {
        send_result_set(r, SEND_PERMANENT, -EINVAL, "invalid phone number%s",
                        sms->default_cc ? "" : " (no country code; set default_country_code?)");
        /* Without a default country, a national number may be fine and the
         * configuration incomplete: only an impossible number as written
         * is the recipient's. */
        if (sms->default_cc || m->to[strspn(m->to, " ")] == '+')
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
    vars.from = sms->from ? sms->from : "";
    vars.id = idem_key(m, idbuf, sizeof(idbuf));
    snprintf(vars.segments, sizeof(vars.segments), "%d", segs);
    if ((rc = sms->provider->build(sms, x, &vars)) < 0) {
        send_result_set(r, SEND_TRANSIENT, rc, "cannot build the %s request", sms->provider->name);
        return rc;
    }
    add_header(x, "Expect:");
    add_header(x, "Idempotency-Key: %s", vars.id);
    return 0;
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
    const struct sms_conf *sms = ((struct http_state *)x->owner)->chan;
    bool listed = false;
    if (!sms->ok_status)
        listed = code >= 200 && code < 300;
    for (size_t i = 0; i < sms->n_ok_status; i++)
        listed |= sms->ok_status[i] == code;
    if (!listed) {
        if (code >= 200 && code < 300) {
            send_result_set(x->res, SEND_PERMANENT, (int)code,
                            "HTTP %ld is not a success status here (success.status)", code);
            return;
        }
        result_http(x, code, true, NULL);
        return;
    }
    if (sms->json_field) {
        json_t *doc = json_loadb(x->resp.s ? x->resp.s : "", x->resp.len, 0, NULL);
        json_t *v = doc ? json_path(doc, sms->json_field) : NULL;
        char *got = v ? scalar_text(v) : NULL;
        if (!got || strcmp(got, sms->json_value) != 0) {
            char body[200];
            snippet(x, body, sizeof(body));
            send_result_set(x->res, SEND_PERMANENT, (int)code,
                            "HTTP %ld but %s is %s%s%s, not \"%s\": %s", code, sms->json_field,
                            got ? "\"" : "", got ? got : "missing", got ? "\"" : "",
                            sms->json_value, body);
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
        send_result_set(x->res, aliyun_code_transient(c) ? SEND_TRANSIENT : SEND_PERMANENT,
                        (int)code, "Aliyun %s: %s", c, msg ? msg : "");
        send_result_blame(x->res, aliyun_code_blame(c));
    }
    json_decref(doc);
}

/* ---- the providers ------------------------------------------------------- */

static const struct sms_provider_ops sms_providers[] = {
    {
        .name = "generic",
        .mask = FOR_GENERIC,
        .settings = generic_settings,
        .build = build_generic,
        .finish = finish_generic,
    },
    {
        .name = "twilio",
        .mask = FOR_TWILIO,
        .required =
            {
                {"account_sid", NULL, "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                 offsetof(struct sms_conf, account_sid), twilio_check_sid},
                {"auth_token", "auth_token_file", NULL, offsetof(struct sms_conf, auth_token),
                 NULL},
            },
        .default_base_url = TWILIO_DEFAULT_BASE,
        .settings = twilio_settings,
        .build = build_twilio,
        .finish = finish_twilio,
    },
    {
        .name = "aliyun",
        .mask = FOR_ALIYUN,
        .required =
            {
                {"access_key_id", NULL, "LTAI...", offsetof(struct sms_conf, access_key_id), NULL},
                {"access_key_secret", "access_key_secret_file", NULL,
                 offsetof(struct sms_conf, access_key_secret), NULL},
                {"sign_name", NULL, "\"阿里云短信测试\"", offsetof(struct sms_conf, sign_name),
                 NULL},
                {"template_code", NULL, "SMS_154950909", offsetof(struct sms_conf, template_code),
                 NULL},
            },
        .default_base_url = ALIYUN_DEFAULT_BASE,
        .settings = aliyun_settings,
        .build = build_aliyun,
        .finish = finish_aliyun,
    },
};
#define N_SMS_PROVIDERS (sizeof(sms_providers) / sizeof(sms_providers[0]))

/* "generic, twilio or aliyun" (sep ", ", last " or ") or "generic / twilio"
 * (sep = last = " / "): the providers whose mask meets `mask`. */
static void
provider_list(struct sbuf *b, unsigned mask, const char *sep, const char *last)
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < N_SMS_PROVIDERS; i++)
        n += (sms_providers[i].mask & mask) != 0;
    for (size_t i = 0; i < N_SMS_PROVIDERS; i++) {
        if (!(sms_providers[i].mask & mask))
            continue;
        if (k)
            sbuf_adds(b, k + 1 == n ? last : sep);
        sbuf_adds(b, sms_providers[i].name);
        k++;
    }
}

/* Allocates the state and reads the provider first: it decides which other
 * keys belong. */
static int
sms_prepare(const struct conf_ctx *c, json_t *settings, struct http_state *st, unsigned *mask)
{
    struct sms_conf *sms = xcalloc(1, sizeof(*sms));
    json_t *v = json_object_get(settings, "provider");
    st->chan = sms;
    sms->provider = &sms_providers[0];
    if (v) {
        const char *p = json_string_value(v);
        size_t i = 0;
        while (p && i < N_SMS_PROVIDERS && strcmp(p, sms_providers[i].name) != 0)
            i++;
        if (p && i < N_SMS_PROVIDERS) {
            sms->provider = &sms_providers[i];
        } else {
            struct sbuf names;
            int rc;
            sbuf_init(&names);
            provider_list(&names, FOR_SMS, ", ", " or ");
            rc = conf_err(c, "provider: expected %s, got %s%s%s", names.s, p ? "\"" : json_kind(v),
                          p ? p : "", p ? "\"" : "");
            sbuf_free(&names);
            return rc;
        }
    }
    *mask = sms->provider->mask;
    return 0;
}

/* A key of another provider. */
static int
sms_misplaced(const struct conf_ctx *c, const char *key, const struct http_opt *opt,
              const struct http_state *st)
{
    const struct sms_conf *sms = st->chan;
    struct sbuf owners;
    int rc;
    if (!(opt->applies & FOR_SMS))
        return 0;
    rc = conf_err(c, "%s: not a setting of provider %s", key, sms->provider->name);
    sbuf_init(&owners);
    provider_list(&owners, opt->applies, " / ", " / ");
    nerr_hint(c->err, "it belongs to provider %s", owners.s);
    sbuf_free(&owners);
    return rc;
}

static int
sms_settings(const struct conf_ctx *c, json_t *settings, struct http_state *st)
{
    struct sms_conf *sms = st->chan;
    const struct sms_provider_ops *p = sms->provider;
    json_t *v;
    int rc;
    if ((v = json_object_get(settings, "from")))
        sms->from = xstrdup(json_string_value(v));
    for (const struct sms_required *q = p->required; q->key; q++) {
        char **out = (char **)((char *)sms + q->offset);
        if ((rc = q->file_key ? secret_get(c, settings, q->key, q->file_key, out)
                              : require(c, settings, q->key, p->name, q->example, out)) < 0 ||
            (q->check && (rc = q->check(c, *out)) < 0))
            return rc;
    }
    if (p->settings && (rc = p->settings(c, settings, sms)) < 0)
        return rc;
    if (p->default_base_url)
        sms->base_url = base_url(settings, p->default_base_url);
    return 0;
}

static void
sms_finish(struct http_xfer *x, long code)
{
    const struct sms_conf *sms = ((struct http_state *)x->owner)->chan;
    sms->provider->finish(x, code);
}

static void
sms_free(void *chan)
{
    struct sms_conf *sms = chan;
    if (!sms)
        return;
    secret_free(sms->auth_token);
    secret_free(sms->access_key_secret);
    strv_free(sms->hdrs);
    json_decref(sms->body);
    free(sms->ok_status);
    free(sms->json_field);
    free(sms->json_value);
    free(sms->default_cc);
    free(sms->from);
    free(sms->url);
    free(sms->base_url);
    free(sms->account_sid);
    free(sms->access_key_id);
    free(sms->sign_name);
    free(sms->template_code);
    free(sms->region_id);
    free(sms);
}

const struct http_channel http_sms = {
    .opts = sms_opts,
    .nopts = sizeof(sms_opts) / sizeof(sms_opts[0]),
    .keys = FOR_SMS,
    .prepare = sms_prepare,
    .misplaced = sms_misplaced,
    .settings = sms_settings,
    .build = build_sms,
    .finish = sms_finish,
    .free = sms_free,
};
