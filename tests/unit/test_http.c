/*
 * test_http.c: the HTTP listener, asked by real libcurl requests on
 * 127.0.0.1. /health counts what is due by the daemon's clock; /metrics is
 * Prometheus text with the documented names; an unknown path is 404. The
 * unsubscribe link a message carries (built by render.c) shows a page on
 * GET and changes nothing, withdraws the consent on POST (the page's button
 * or RFC 8058 one-click), and is refused when forged. http_stop closes the
 * port.
 *
 * The listener sees no struct daemon, only its struct http_env (http.h):
 * cfg (http.listen, database), secret, clock, and a metrics callback. The
 * fixture points that callback at the real dispatch_metrics over a struct
 * daemon holding counters and two channels' names and pause state, and
 * nothing of the loop or the dispatcher.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "http.h"
#include "render.h"
#include "rules.h"
#include "store_internal.h"
#include "util.h"
#include "unit.h"

#define SECRET "5f1e0c7a9b2d4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"
#define NOW "2027-03-01T10:00:00Z"

struct fx {
    char dir[64];
    struct store *st; /* the test's own connection */
    struct config *cfg;
    struct http_env env; /* what the listener sees of d */
    struct daemon d;
    struct http_server *http;
    char base[64]; /* http://127.0.0.1:PORT */
};

static void
sql(struct store *st, const char *q)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, q, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", q, msg ? msg : "?");
}

static int64_t
sql_int(struct store *st, const char *q)
{
    sqlite3_stmt *s;
    int64_t v = INT64_MIN;
    if (sqlite3_prepare_v2(st->db, q, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(st->db));
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* The first column of the first row as text (malloc'd), or NULL. */
static char *
sql_text(struct store *st, const char *q)
{
    sqlite3_stmt *s;
    char *v = NULL;
    if (sqlite3_prepare_v2(st->db, q, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(st->db));
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        v = xstrdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return v;
}

/* A port on 127.0.0.1 nobody listens on just now. */
static int
free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;
    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void
metrics(void *ud, struct sbuf *out)
{
    dispatch_metrics(ud, out);
}

static int
setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof(*f));
    struct nerr err;
    int rc = -1;
    if (tmp_store(f->dir, "http", &f->st) < 0) {
        free(f);
        return -1;
    }
    f->cfg = config_defaults(f->dir); /* database: dir/nudge.db, the store above */
    f->d.cfg = f->cfg;
    f->d.secret = xstrdup(SECRET);
    clock_init_frozen(&f->d.clock, iso(NOW));
    f->env = (struct http_env){f->cfg, f->d.secret, &f->d.clock, metrics, &f->d};
    f->d.sent_total = 5;
    f->d.failed_total = 2;
    f->d.nchans = 2;
    f->d.chans[0].name = "email";
    f->d.chans[1].name = "sms";
    pthread_mutex_init(&f->d.chans[0].pause.mu, NULL);
    pthread_mutex_init(&f->d.chans[1].pause.mu, NULL);
    /* Another process may take the port between free_port and the listen:
     * try a few. */
    for (int i = 0; i < 5 && rc < 0; i++) {
        int port = free_port();
        free(f->cfg->http_listen);
        f->cfg->http_listen = xasprintf("127.0.0.1:%d", port);
        snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", port);
        free(f->cfg->public_url);
        f->cfg->public_url = xstrdup(f->base);
        nerr_clear(&err);
        rc = http_start(&f->env, &f->http, &err);
        if (rc < 0 && rc != -EADDRINUSE)
            break;
    }
    if (rc < 0) {
        fprintf(stderr, "http_start: %s\n", err.msg);
        return -1;
    }
    sql(f->st, "INSERT INTO customers (id, ext_id, name, email, phone) VALUES"
               " (1, 'C1', 'Carol', 'carol@example.com', '+8613800000001'),"
               " (2, 'C 2+x/é', 'Dan', 'dan@example.com', NULL),"
               " (3, 'C3', 'Eve', 'eve@example.com', NULL)");
    sql(f->st, "INSERT INTO consents (customer_id, channel, granted, updated_at, source) VALUES"
               " (1, 'email', 1, '2027-01-01T00:00:00Z', 'import'),"
               " (1, 'sms', 1, '2027-01-01T00:00:00Z', 'import'),"
               " (3, 'email', 1, '2027-01-01T00:00:00Z', 'import')");
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    http_stop(f->http);
    pthread_mutex_destroy(&f->d.chans[0].pause.mu);
    pthread_mutex_destroy(&f->d.chans[1].pause.mu);
    free(f->d.secret);
    config_free(f->cfg);
    store_close(f->st);
    rmrf(f->dir);
    free(f);
    return 0;
}

/* ---- requests ------------------------------------------------------------------ */

struct resp {
    long status;
    char *type; /* Content-Type */
    char *body;
};

static size_t
collect(char *p, size_t size, size_t n, void *ud)
{
    sbuf_add(ud, p, size * n);
    return size * n;
}

/* A request with a fresh handle (its own connection). post_body NULL: GET.
 * Returns the curl code; r is filled when it is CURLE_OK. */
static CURLcode
request(const char *method, const char *url, const char *post_body, struct resp *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct sbuf b;
    char *type = NULL;
    CURLcode rc;
    assert_non_null(c);
    sbuf_init(&b);
    sbuf_add(&b, "", 0);
    memset(r, 0, sizeof(*r));
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (post_body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post_body);
        h = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    }
    if (strcmp(method, "GET") && strcmp(method, "POST"))
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
        r->type = xstrdup(type ? type : "");
        r->body = sbuf_steal(&b);
    } else {
        sbuf_free(&b);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

static void
resp_free(struct resp *r)
{
    free(r->type);
    free(r->body);
}

static struct resp
get(struct fx *f, const char *path)
{
    struct resp r;
    char *url = xasprintf("%s%s", f->base, path);
    assert_int_equal(request("GET", url, NULL, &r), CURLE_OK);
    free(url);
    return r;
}

/* The unsubscribe link a marketing message to customer `cust` on `channel`
 * carries, as render.c builds it (public_url is the listener). */
static char *
message_link(struct fx *f, int64_t cust, const char *channel)
{
    struct rule r = {.name = "promo", .marketing = true};
    struct render_env env = {f->st, f->cfg, NULL, f->d.secret, iso(NOW)};
    json_t *ctx = render_customer_context(f->st, cust);
    char *url;
    assert_non_null(ctx);
    render_add_rule_context(ctx, &env, &r, "2027-03-01", channel, iso(NOW));
    url = xstrdup(json_string_value(json_object_get(ctx, "unsubscribe_url")));
    json_decref(ctx);
    return url;
}

/* consents.granted of customer for channel; -1 if there is no row. */
static int64_t
granted(struct fx *f, int64_t cust, const char *channel)
{
    char *q = xasprintf("SELECT coalesce((SELECT granted FROM consents WHERE customer_id = %lld"
                        " AND channel = '%s'), -1)",
                        (long long)cust, channel);
    int64_t v = sql_int(f->st, q);
    free(q);
    return v;
}

static int64_t
timeline_count(struct fx *f)
{
    return sql_int(f->st, "SELECT count(*) FROM timeline");
}

/* ---- health, metrics, the rest --------------------------------------------------- */

static void
health_is_ok_with_the_deliveries_due_by_the_daemons_clock(void **state)
{
    struct fx *f = *state;
    struct resp r = get(f, "/health");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.type, "application/json");
    assert_string_equal(r.body, "{\"status\":\"ok\",\"due\":0}\n");
    resp_free(&r);

    /* One pending row due at the clock's instant, one an hour later, one
     * sent: one is due. */
    char *q = xasprintf(
        "INSERT INTO deliveries (rule, customer_id, occurrence, action, channel, state, due_at,"
        " created_at, next_attempt_at) VALUES"
        " ('promo', 1, 'a', 0, 'email', 'pending', %lld, %lld, %lld),"
        " ('promo', 1, 'b', 0, 'email', 'pending', %lld, %lld, %lld),"
        " ('promo', 1, 'c', 0, 'email', 'sent', %lld, %lld, %lld)",
        (long long)iso(NOW), (long long)iso(NOW), (long long)iso(NOW), (long long)iso(NOW) + 3600,
        (long long)iso(NOW), (long long)iso(NOW) + 3600, (long long)iso(NOW), (long long)iso(NOW),
        (long long)iso(NOW));
    sql(f->st, q);
    free(q);
    r = get(f, "/health");
    assert_string_equal(r.body, "{\"status\":\"ok\",\"due\":1}\n");
    resp_free(&r);
    /* The frozen clock moves (nudgectl advance): the second one is due too. */
    clock_set(&f->d.clock, iso(NOW) + 3600);
    r = get(f, "/health");
    assert_string_equal(r.body, "{\"status\":\"ok\",\"due\":2}\n");
    resp_free(&r);
}

static void
metrics_are_prometheus_text_with_the_documented_names(void **state)
{
    struct fx *f = *state;
    struct resp r;
    sql(f->st, "INSERT INTO deliveries (rule, customer_id, occurrence, action, channel, state,"
               " due_at, created_at, next_attempt_at) VALUES"
               " ('promo', 1, 'a', 0, 'email', 'pending', 0, 0, 0),"
               " ('promo', 1, 'b', 0, 'email', 'dead', 0, 0, 0),"
               " ('promo', 1, 'c', 0, 'sms', 'dead', 0, 0, 0)");
    pthread_mutex_lock(&f->d.chans[1].pause.mu);
    f->d.chans[1].pause.level = 1;
    pthread_mutex_unlock(&f->d.chans[1].pause.mu);
    r = get(f, "/metrics");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.type, "text/plain; version=0.0.4");
    static const char *const want[] = {
        "# TYPE nudge_deliveries gauge\n",
        "\nnudge_deliveries{state=\"pending\"} 1\n",
        "\nnudge_deliveries{state=\"dead\"} 2\n",
        "\nnudge_deliveries{state=\"sent\"} 0\n",
        "# TYPE nudge_sent_total counter\nnudge_sent_total 5\n",
        "# TYPE nudge_failed_total counter\nnudge_failed_total 2\n",
        /* man nudged.8 and the README name this one. */
        "# TYPE nudge_channel_paused gauge\n",
        "\nnudge_channel_paused{channel=\"email\"} 0\n",
        "\nnudge_channel_paused{channel=\"sms\"} 1\n",
        NULL,
    };
    for (int i = 0; want[i]; i++)
        if (!strstr(r.body, want[i]))
            fail_msg("/metrics lacks %s in:\n%s", want[i], r.body);
    /* Every line is a comment or `name{labels} integer`, ends with a newline. */
    assert_int_equal(r.body[strlen(r.body) - 1], '\n');
    for (char *line = r.body, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        if (line[0] == '#') {
            assert_true(!strncmp(line, "# HELP nudge_", 13) || !strncmp(line, "# TYPE nudge_", 13));
            continue;
        }
        char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        assert_true(!strncmp(line, "nudge_", 6));
        for (char *p = sp + 1; *p; p++)
            assert_true(isdigit((unsigned char)*p));
        assert_true(sp[1] != '\0');
    }
    resp_free(&r);
}

static void
unknown_path_or_method_is_refused(void **state)
{
    struct fx *f = *state;
    struct resp r = get(f, "/nope");
    char *url;
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "not found"));
    resp_free(&r);
    url = xasprintf("%s/health", f->base);
    assert_int_equal(request("POST", url, "", &r), CURLE_OK);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    free(url);
    url = message_link(f, 1, "email");
    assert_int_equal(request("DELETE", url, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    free(url);
    assert_int_equal(granted(f, 1, "email"), 1);
}

/* ---- unsubscribe ------------------------------------------------------------------ */

static void
message_link_has_the_documented_shape(void **state)
{
    struct fx *f = *state;
    char tok[40], *url = message_link(f, 1, "email"), *want;
    /* http.public_url + /unsubscribe?c=EXT_ID&ch=CHANNEL&t=TOKEN (32 hex) */
    assert_int_equal(strncmp(url, f->base, strlen(f->base)), 0);
    const char *rest = url + strlen(f->base);
    assert_int_equal(strncmp(rest, "/unsubscribe?c=C1&ch=email&t=", 29), 0);
    assert_int_equal(strlen(rest + 29), 32);
    for (const char *p = rest + 29; *p; p++)
        assert_true(isxdigit((unsigned char)*p));
    unsubscribe_token(SECRET, "C1", "email", tok, sizeof(tok));
    want = xasprintf("%s/unsubscribe?c=C1&ch=email&t=%s", f->base, tok);
    assert_string_equal(url, want);
    free(want);
    free(url);
}

static void
get_on_a_valid_link_shows_a_page_and_changes_nothing(void **state)
{
    struct fx *f = *state;
    char *url = message_link(f, 1, "email"), tok[40], *form;
    struct resp r;
    assert_int_equal(request("GET", url, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.type, "text/html; charset=utf-8");
    assert_non_null(strstr(r.body, "Stop receiving email messages"));
    /* The button posts to the same link. */
    unsubscribe_token(SECRET, "C1", "email", tok, sizeof(tok));
    form =
        xasprintf("<form method=\"post\" action=\"unsubscribe?c=C1&amp;ch=email&amp;t=%s\">", tok);
    assert_non_null(strstr(r.body, form));
    free(form);
    resp_free(&r);
    /* Mail scanners follow links: twice, nothing changed. */
    assert_int_equal(request("GET", url, NULL, &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(granted(f, 1, "email"), 1);
    char *src = sql_text(f->st, "SELECT source FROM consents WHERE customer_id = 1"
                                " AND channel = 'email'");
    assert_string_equal(src, "import");
    free(src);
    assert_int_equal(timeline_count(f), 0);
    free(url);
}

static void
post_withdraws_the_consent_at_once(void **state)
{
    struct fx *f = *state;
    char *url = message_link(f, 1, "email"), *s;
    struct resp r;
    clock_set(&f->d.clock, iso("2027-03-02T08:30:00Z"));
    /* The page's button: a form POST with no fields. */
    assert_int_equal(request("POST", url, "", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "Done: you will receive no more email messages"));
    resp_free(&r);
    /* Answered after the commit: the test's connection sees it now. */
    assert_int_equal(granted(f, 1, "email"), 0);
    s = sql_text(f->st, "SELECT source || ' ' || updated_at FROM consents WHERE customer_id = 1"
                        " AND channel = 'email'");
    assert_string_equal(s, "unsubscribe-link 2027-03-02T08:30:00Z");
    free(s);
    assert_int_equal(timeline_count(f), 1);
    s = sql_text(f->st, "SELECT customer_id || ' ' || at || ' ' || kind || ' ' || detail"
                        " FROM timeline");
    char *want = xasprintf("1 %lld unsubscribed email, by the link in a message",
                           (long long)iso("2027-03-02T08:30:00Z"));
    assert_string_equal(s, want);
    free(want);
    free(s);
    /* Only that channel and that customer. */
    assert_int_equal(granted(f, 1, "sms"), 1);
    assert_int_equal(granted(f, 3, "email"), 1);
    /* A second click later changes nothing: same answer, no new entry. */
    clock_set(&f->d.clock, iso("2027-03-03T10:00:00Z"));
    assert_int_equal(request("POST", url, "", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    s = sql_text(f->st, "SELECT source || ' ' || updated_at FROM consents WHERE customer_id = 1"
                        " AND channel = 'email'");
    assert_string_equal(s, "unsubscribe-link 2027-03-02T08:30:00Z");
    free(s);
    assert_int_equal(timeline_count(f), 1);
    free(url);
}

static void
one_click_post_of_rfc8058_withdraws_the_consent(void **state)
{
    struct fx *f = *state;
    /* An ext id the link must percent-encode, and no consent row yet. */
    char *url = message_link(f, 2, "email");
    struct resp r;
    assert_non_null(strstr(url, "?c=C%202%2Bx%2F%C3%A9&ch=email&t="));
    assert_int_equal(granted(f, 2, "email"), -1);
    assert_int_equal(request("POST", url, "List-Unsubscribe=One-Click", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(granted(f, 2, "email"), 0);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM timeline WHERE customer_id = 2 AND"
                                    " kind = 'unsubscribed'"),
                     1);
    /* The sms link of customer 1 works the same. */
    free(url);
    url = message_link(f, 1, "sms");
    assert_int_equal(request("POST", url, "List-Unsubscribe=One-Click", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(granted(f, 1, "sms"), 0);
    assert_int_equal(granted(f, 1, "email"), 1);
    free(url);
}

/* Asks for url by GET and by one-click POST; both must be 403. */
static void
refused(const char *url)
{
    struct resp r;
    assert_int_equal(request("GET", url, NULL, &r), CURLE_OK);
    if (r.status != 403)
        fail_msg("GET %s: %ld, not 403", url, r.status);
    assert_non_null(strstr(r.body, "Link not valid"));
    resp_free(&r);
    assert_int_equal(request("POST", url, "List-Unsubscribe=One-Click", &r), CURLE_OK);
    if (r.status != 403)
        fail_msg("POST %s: %ld, not 403", url, r.status);
    resp_free(&r);
}

static void
forged_link_is_refused_and_changes_nothing(void **state)
{
    struct fx *f = *state;
    char *url = message_link(f, 1, "email"), *bad, *t;
    size_t n = strlen(url);
    char was;
    /* One character of the token changed, the last or the first. */
    was = url[n - 1];
    url[n - 1] = was == '0' ? '1' : '0';
    refused(url);
    url[n - 1] = was;
    t = strstr(url, "&t=") + 3;
    was = t[0];
    t[0] = was == 'a' ? 'b' : 'a';
    refused(url);
    t[0] = was;
    /* The token one character short; no token at all. */
    bad = xasprintf("%.*s", (int)(n - 1), url);
    refused(bad);
    free(bad);
    bad = xasprintf("%.*s", (int)(t - url - 3), url);
    refused(bad);
    free(bad);
    /* Customer 1's token pointed at customer 3, or at another channel. */
    bad = xasprintf("%s/unsubscribe?c=C3&ch=email&t=%s", f->base, t);
    refused(bad);
    free(bad);
    bad = xasprintf("%s/unsubscribe?c=C1&ch=sms&t=%s", f->base, t);
    refused(bad);
    free(bad);
    /* A token made with another secret. */
    char other[40];
    unsubscribe_token("another installation", "C1", "email", other, sizeof(other));
    bad = xasprintf("%s/unsubscribe?c=C1&ch=email&t=%s", f->base, other);
    refused(bad);
    free(bad);

    assert_int_equal(granted(f, 1, "email"), 1);
    assert_int_equal(granted(f, 1, "sms"), 1);
    assert_int_equal(granted(f, 3, "email"), 1);
    assert_int_equal(timeline_count(f), 0);
    /* The genuine link still works after all that. */
    struct resp r;
    assert_int_equal(request("POST", url, "List-Unsubscribe=One-Click", &r), CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(granted(f, 1, "email"), 0);
    free(url);
}

static void
stop_closes_the_port(void **state)
{
    struct fx *f = *state;
    struct resp r = get(f, "/health");
    char *url = xasprintf("%s/health", f->base);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    http_stop(f->http);
    f->http = NULL;
    assert_int_equal(request("GET", url, NULL, &r), CURLE_COULDNT_CONNECT);
    free(url);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(health_is_ok_with_the_deliveries_due_by_the_daemons_clock,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_are_prometheus_text_with_the_documented_names,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_path_or_method_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(message_link_has_the_documented_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(get_on_a_valid_link_shows_a_page_and_changes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(post_withdraws_the_consent_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(one_click_post_of_rfc8058_withdraws_the_consent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(forged_link_is_refused_and_changes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stop_closes_the_port, setup, teardown),
    };
    int rc;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
