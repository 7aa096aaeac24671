/*
 * http.c: health, metrics and one-click unsubscribe over libmicrohttpd.
 * Requests are served on libmicrohttpd's own thread with its own database
 * connection; nothing here touches the event loop's state.
 */
#include "http.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "outbox.h"
#include "render.h"
#include "store.h"
#include "store_consent.h"

struct http_server {
    struct MHD_Daemon *mhd;
    struct store *st;   /* this thread's connection */
    struct http_env env; /* what it reads of the daemon (http.h) */
};

/* Per-request state: a POST body is read in pieces before we answer. */
struct req {
    struct sbuf body;
};

static enum MHD_Result
send_text(struct MHD_Connection *c, unsigned status, const char *type, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static char *
html_escape(const char *s)
{
    struct sbuf b;
    sbuf_init(&b);
    sbuf_add(&b, "", 0);
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            sbuf_adds(&b, "&amp;");
            break;
        case '<':
            sbuf_adds(&b, "&lt;");
            break;
        case '>':
            sbuf_adds(&b, "&gt;");
            break;
        case '"':
            sbuf_adds(&b, "&quot;");
            break;
        case '\'':
            sbuf_adds(&b, "&#39;");
            break;
        default:
            sbuf_addc(&b, *s);
        }
    }
    return sbuf_steal(&b);
}

static enum MHD_Result
page(struct MHD_Connection *c, unsigned status, const char *title, const char *body_html)
{
    char *doc = xasprintf("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                          "<meta name=\"viewport\" content=\"width=device-width\">"
                          "<title>%s</title></head>\n<body style=\"font-family: sans-serif; "
                          "max-width: 32em; margin: 3em auto\">\n<h1>%s</h1>\n%s\n</body></html>\n",
                          title, title, body_html);
    enum MHD_Result r = send_text(c, status, "text/html; charset=utf-8", doc);
    free(doc);
    return r;
}

static bool
token_ok(const struct http_env *d, const char *id, const char *ch, const char *tok)
{
    char want[40];
    if (!id || !ch || !tok)
        return false;
    unsubscribe_token(d->secret, id, ch, want, sizeof(want));
    /* Constant-time comparison: the token is a secret. */
    size_t n = strlen(want);
    if (strlen(tok) != n)
        return false;
    unsigned diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)tok[i];
    return diff == 0;
}

static int
unsubscribe(struct http_server *h, const char *id, const char *ch)
{
    char *detail = xasprintf("%s, by the link in a message", ch);
    int rc = store_consent_withdraw(h->st, id, ch, "unsubscribe-link", clock_now(h->env.clock), detail);
    free(detail);
    return rc;
}

static enum MHD_Result
serve_unsubscribe(struct http_server *h, struct MHD_Connection *c, bool post)
{
    const char *id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "c");
    const char *ch = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "ch");
    const char *tok = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "t");
    char *eid, *ech, *etok, *html;
    enum MHD_Result r;
    int rc;
    if (!token_ok(&h->env, id, ch, tok))
        return page(c, MHD_HTTP_FORBIDDEN, "Link not valid",
                    "<p>This unsubscribe link is incomplete or has been altered. Please use the "
                    "link from the message exactly as it arrived.</p>");
    eid = html_escape(id);
    ech = html_escape(ch);
    etok = html_escape(tok);
    if (!post) {
        /* A GET never changes anything: mail scanners follow links. */
        html = xasprintf("<p>Stop receiving %s messages from us?</p>\n"
                         "<form method=\"post\" action=\"unsubscribe?c=%s&amp;ch=%s&amp;t=%s\">"
                         "<button type=\"submit\">Unsubscribe</button></form>",
                         ech, eid, ech, etok);
        r = page(c, MHD_HTTP_OK, "Unsubscribe", html);
    } else {
        rc = unsubscribe(h, id, ch);
        if (rc == 0 || rc == -ENOENT) {
            html = xasprintf("<p>Done: you will receive no more %s messages from us.</p>", ech);
            r = page(c, MHD_HTTP_OK, "Unsubscribed", html);
            log_info("http", "unsubscribe from %s by link", ch);
        } else {
            html = xstrdup("<p>We could not record this just now. Please try again in a "
                           "minute.</p>");
            r = page(c, MHD_HTTP_SERVICE_UNAVAILABLE, "Please try again", html);
        }
    }
    free(html);
    free(eid);
    free(ech);
    free(etok);
    return r;
}

static enum MHD_Result
serve_metrics(struct http_server *h, struct MHD_Connection *c)
{
    json_t *counts = outbox_counts(h->st), *v;
    const char *k;
    struct sbuf b;
    enum MHD_Result r;
    sbuf_init(&b);
    sbuf_adds(&b, "# HELP nudge_deliveries Deliveries in the outbox by state.\n"
                  "# TYPE nudge_deliveries gauge\n");
    json_object_foreach(counts, k, v)
        sbuf_printf(&b, "nudge_deliveries{state=\"%s\"} %lld\n", k,
                    (long long)json_integer_value(v));
    json_decref(counts);
    h->env.metrics(h->env.ud, &b);
    r = send_text(c, MHD_HTTP_OK, "text/plain; version=0.0.4", b.s);
    sbuf_free(&b);
    return r;
}

static enum MHD_Result
handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
        const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    struct http_server *h = cls;
    struct req *rq = *con_cls;
    bool post = !strcmp(method, MHD_HTTP_METHOD_POST);
    (void)version;
    if (!rq) {
        /* First call: headers only. Bodies are small; cap them. */
        rq = xcalloc(1, sizeof(*rq));
        sbuf_init(&rq->body);
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_size) {
        if (rq->body.len + *upload_size <= 4096)
            sbuf_add(&rq->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (!strcmp(url, "/unsubscribe")) {
        if (!post && strcmp(method, MHD_HTTP_METHOD_GET))
            return send_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "GET or POST\n");
        return serve_unsubscribe(h, c, post);
    }
    if (!strcmp(url, "/health") && !post) {
        int64_t n = 0;
        if (outbox_unsettled(h->st, clock_now(h->env.clock), &n) < 0)
            return send_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
                             "{\"status\":\"store unavailable\"}\n");
        char *j = xasprintf("{\"status\":\"ok\",\"due\":%lld}\n", (long long)n);
        enum MHD_Result r = send_text(c, MHD_HTTP_OK, "application/json", j);
        free(j);
        return r;
    }
    if (!strcmp(url, "/metrics") && !post)
        return serve_metrics(h, c);
    return send_text(c, MHD_HTTP_NOT_FOUND, "text/plain",
                     "not found: try /health, /metrics or an unsubscribe link\n");
}

static void
completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    struct req *rq = *con_cls;
    (void)cls;
    (void)c;
    (void)t;
    if (rq) {
        sbuf_free(&rq->body);
        free(rq);
        *con_cls = NULL;
    }
}

int
http_start(const struct http_env *env, struct http_server **out, struct nerr *err)
{
    const struct config *cfg = env->cfg;
    const char *listen = cfg->http_listen;
    const char *colon = strrchr(listen, ':');
    struct sockaddr_in sa;
    struct http_server *h;
    int port;
    char host[64];
    *out = NULL;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
    if (parse_int_range(colon + 1, 1, 65535, &port) < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        nerr_set(err, cfg->file, 0, 0, "http.listen '%s' is not IPV4ADDRESS:PORT", listen);
        nerr_hint(err, "e.g. http: { listen: \"127.0.0.1:8025\" }");
        return -EINVAL;
    }
    sa.sin_port = htons((uint16_t)port);
    h = xcalloc(1, sizeof(*h));
    h->env = *env;
    if (store_open(cfg->database, &h->st, err) < 0) {
        free(h);
        return -EIO;
    }
    h->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                              handler, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_NOTIFY_COMPLETED, completed, h,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)256, MHD_OPTION_END);
    if (!h->mhd) {
        nerr_set(err, cfg->file, 0, 0, "cannot listen on %s for HTTP", listen);
        nerr_hint(err, "is the port in use? change http.listen in nudge.yaml");
        store_close(h->st);
        free(h);
        return -EADDRINUSE;
    }
    log_notice("http", "listening on http://%s", listen);
    *out = h;
    return 0;
}

void
http_stop(struct http_server *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->mhd);
    store_close(h->st);
    free(h);
}
