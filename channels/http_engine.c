/*
 * http_engine.c: libcurl's multi interface on a private libuv loop, for the
 * HTTP channel backends (see http_engine.h). It owns the sockets, timers,
 * easy handles and connection cache; what a request says and what its
 * answer means are the backend's (build and finish callbacks).
 */
#include "http_engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

/* One socket curl asked us to watch; the poll handle comes first so that
 * the handle's memory is the struct's (freed in the close callback). */
struct http_sock {
    uv_poll_t poll;        /* libuv watcher for fd */
    curl_socket_t fd;      /* the socket */
    struct http_engine *st; /* owning engine (for the multi handle) */
};


/* ---- curl callbacks ------------------------------------------------------- */

static size_t
on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    struct http_xfer *x = ud;
    size_t n = size * nmemb, room = HTTP_RESP_MAX - x->resp.len;
    if (x->resp.len < HTTP_RESP_MAX)
        sbuf_add(&x->resp, data, n < room ? n : room);
    return n;
}

/* Copies a header's value (after "Name:") trimmed into dst. */
static void
header_value(char *dst, size_t size, const char *line, size_t len, size_t namelen)
{
    const char *v = line + namelen;
    size_t n = len - namelen;
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    snprintf(dst, size, "%.*s", (int)n, v);
}

static size_t
on_header(char *line, size_t size, size_t nmemb, void *ud)
{
    struct http_xfer *x = ud;
    size_t n = size * nmemb;
    if (n > 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx, say): forget the previous one's. */
        const char *sp = memchr(line, ' ', n);
        x->retry_after[0] = x->date[0] = x->reason[0] = '\0';
        if (sp) {
            const char *end = line + n;
            sp++;
            while (sp < end && *sp >= '0' && *sp <= '9')
                sp++;
            header_value(x->reason, sizeof(x->reason), sp, (size_t)(end - sp), 0);
        }
    } else if (n > 12 && strncasecmp(line, "Retry-After:", 12) == 0) {
        header_value(x->retry_after, sizeof(x->retry_after), line, n, 12);
    } else if (n > 5 && strncasecmp(line, "Date:", 5) == 0) {
        header_value(x->date, sizeof(x->date), line, n, 5);
    }
    return n;
}

static void drain_done(struct http_engine *st);

static void
on_poll(uv_poll_t *h, int status, int events)
{
    struct http_sock *s = (struct http_sock *)h;
    struct http_engine *st = s->st;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(st->multi, s->fd, flags, &running);
    drain_done(st);
}

static void
sock_free(uv_handle_t *h)
{
    free(h); /* the struct http_sock starts with the handle */
}

static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http_engine *st = userp;
    struct http_sock *s = socketp;
    int events = 0;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(st->multi, fd, NULL);
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, sock_free);
        }
        return 0;
    }
    if (!s) {
        s = xcalloc(1, sizeof(*s));
        s->fd = fd;
        s->st = st;
        if (uv_poll_init_socket(&st->loop, &s->poll, fd) < 0) {
            free(s);
            return -1;
        }
        curl_multi_assign(st->multi, fd, s);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void
on_timeout(uv_timer_t *t)
{
    struct http_engine *st = t->data;
    int running;
    curl_multi_socket_action(st->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_done(st);
}

static int
on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_engine *st = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&st->timer);
    else
        uv_timer_start(&st->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}


static void
xfer_clear(struct http_xfer *x)
{
    free(x->url);
    x->url = NULL;
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    sbuf_free(&x->body);
    sbuf_free(&x->resp);
    free(x->user);
    x->user = NULL;
    x->password = NULL;
    x->get = false;
    x->res = NULL;
    x->reason[0] = x->retry_after[0] = x->date[0] = x->errbuf[0] = '\0';
}

/* Builds message i on slot x and hands it to curl; 0, or <0 with the
 * result already filled. */
static int
xfer_start(struct http_engine *st, struct http_xfer *x, size_t i)
{
    struct send_result *r = &st->res[i];
    CURL *e = x->easy;
    CURLMcode mc;
    int rc;

    xfer_clear(x);
    x->res = r;
    sbuf_adds(&x->body, "");
    rc = st->build(st->owner, x, i);
    if (rc < 0)
        return rc;

    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, st->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, st->timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, st->proxy ? st->proxy : "");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, st->user_agent);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)x);
    if (x->get) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body.s);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body.len);
    }
    if (st->tls_ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, st->tls_ca_file);
    if (x->user) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, x->user);
        curl_easy_setopt(e, CURLOPT_PASSWORD, x->password);
    }
    if ((mc = curl_multi_add_handle(st->multi, e)) != CURLM_OK) {
        send_result_set(r, SEND_TRANSIENT, -EIO, "curl: %s", curl_multi_strerror(mc));
        return -EIO;
    }
    x->busy = true;
    st->active++;
    return 0;
}

/* Gives slot x the next message that can start, if any. */
static void
feed(struct http_engine *st, struct http_xfer *x)
{
    while (st->next < st->n)
        if (xfer_start(st, x, st->next++) == 0)
            return;
}

static void
drain_done(struct http_engine *st)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(st->multi, &left))) {
        CURL *e = msg->easy_handle;
        CURLcode rc = msg->data.result;
        char *priv = NULL;
        struct http_xfer *x;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        x = (struct http_xfer *)priv;
        st->finish(st->owner, x, rc);
        /* Settled: the dispatcher makes it durable before more go out. */
        send_result_report(x->res);
        curl_multi_remove_handle(st->multi, e); /* msg is invalid from here */
        x->busy = false;
        st->active--;
        feed(st, x);
    }
    if (st->active == 0)
        uv_stop(&st->loop);
}

static int
engine_init(struct http_engine *st)
{
    int rc;
    if (st->ready)
        return 0;
    if ((rc = uv_loop_init(&st->loop)) < 0)
        return rc;
    uv_timer_init(&st->loop, &st->timer);
    st->timer.data = st;
    if (!(st->multi = curl_multi_init())) {
        uv_close((uv_handle_t *)&st->timer, NULL);
        uv_run(&st->loop, UV_RUN_DEFAULT);
        uv_loop_close(&st->loop);
        return -ENOMEM;
    }
    curl_multi_setopt(st->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(st->multi, CURLMOPT_SOCKETDATA, (void *)st);
    curl_multi_setopt(st->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    curl_multi_setopt(st->multi, CURLMOPT_TIMERDATA, (void *)st);
    curl_multi_setopt(st->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)st->max_conns);
    curl_multi_setopt(st->multi, CURLMOPT_MAXCONNECTS, (long)st->max_conns);
    st->xfers = xcalloc((size_t)st->max_conns, sizeof(*st->xfers));
    st->ready = true;
    return 0;
}

static void
close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h))
        return;
    uv_close(h, h->type == UV_POLL ? sock_free : NULL);
}

void
http_engine_free(struct http_engine *st)
{
    if (!st->ready)
        return;
    for (size_t i = 0; i < st->nxfers; i++)
        if (st->xfers[i]->busy)
            curl_multi_remove_handle(st->multi, st->xfers[i]->easy);
    curl_multi_cleanup(st->multi);
    for (size_t i = 0; i < st->nxfers; i++) {
        curl_easy_cleanup(st->xfers[i]->easy);
        xfer_clear(st->xfers[i]);
        free(st->xfers[i]);
    }
    free(st->xfers);
    uv_walk(&st->loop, close_walk, NULL);
    uv_run(&st->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&st->loop) < 0)
        log_warn("http", "channels.%s: a handle was left open at close", st->name);
    st->ready = false;
}


void
http_engine_run(struct http_engine *st, size_t n, struct send_result *res)
{
    size_t want;
    int rc;

    for (size_t i = 0; i < n; i++)
        send_result_clear(&res[i]); /* the caller's reporter stays */
    if (n == 0)
        return;
    if ((rc = engine_init(st)) < 0) {
        for (size_t i = 0; i < n; i++)
            send_result_set(&res[i], SEND_TRANSIENT, rc, "cannot start the HTTP engine: %s",
                       strerror(-rc));
        return;
    }
    st->res = res;
    st->n = n;
    st->next = 0;
    st->active = 0;
    /* Slots (easy handles) grow to the most a batch has used, up to max_conns. */
    want = n < (size_t)st->max_conns ? n : (size_t)st->max_conns;
    while (st->nxfers < want) {
        struct http_xfer *x = xcalloc(1, sizeof(*x));
        x->eng = st;
        x->owner = st->owner;
        if (!(x->easy = curl_easy_init())) {
            free(x);
            break;
        }
        st->xfers[st->nxfers++] = x;
    }
    if (st->nxfers == 0) {
        for (size_t i = 0; i < n; i++)
            send_result_set(&res[i], SEND_TRANSIENT, -ENOMEM, "cannot create a curl handle");
        return;
    }
    for (size_t k = 0; k < st->nxfers && k < want; k++)
        feed(st, st->xfers[k]);
    if (st->active)
        uv_run(&st->loop, UV_RUN_DEFAULT);
    /* Only if the loop ran dry with transfers inside (it should not). */
    for (size_t k = 0; k < st->nxfers; k++) {
        struct http_xfer *x = st->xfers[k];
        if (x->busy) {
            curl_multi_remove_handle(st->multi, x->easy);
            x->busy = false;
            send_result_set(x->res, SEND_TRANSIENT, -EIO, "the transfer did not finish");
        }
        xfer_clear(x);
    }
    while (st->next < st->n)
        send_result_set(&res[st->next++], SEND_TRANSIENT, -EIO, "the transfer did not start");
    st->active = 0;
    st->res = NULL;
    st->n = 0;
}
