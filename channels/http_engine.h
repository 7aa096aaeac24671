/*
 * http_engine.h: concurrent HTTP requests for a channel backend, libcurl's
 * multi interface driven from a private libuv loop (the standard curl +
 * libuv integration: CURLMOPT_SOCKETFUNCTION starts and stops one uv_poll_t
 * per socket, CURLMOPT_TIMERFUNCTION arms one uv_timer_t, and both feed
 * curl_multi_socket_action()). A batch of n requests runs on the calling
 * thread; at most max_conns are in flight, the next starting as one ends, so
 * each request's timeout runs from its own start. The multi handle (curl's
 * connection cache) and the easy handles (DNS cache, TLS sessions) live in
 * the engine between batches, so connections are reused.
 *
 * The engine knows nothing of webhooks or SMS: a backend gives it a `build`
 * callback that turns message i into a request (URL, headers, body, basic
 * auth) and a `finish` callback that turns the answer into a send_result.
 * Every request: no redirects followed, the configured timeout for the whole
 * request, no proxy from the environment (CURLOPT_PROXY "" unless `proxy` is
 * set), CURLOPT_NOSIGNAL, http and https only.
 *
 * Threading: one engine is used by one thread at a time (a dispatcher slot).
 */
#ifndef NUDGE_HTTP_ENGINE_H
#define NUDGE_HTTP_ENGINE_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include <nudge/channel.h>

#include "util.h"

/* Response bytes kept for classification and error messages. */
#define HTTP_RESP_MAX (64 * 1024)

struct http_engine;

/* One request slot: an easy handle kept between batches and the buffers of
 * the message it is carrying now. build() fills url, get, headers, body,
 * user and password; the engine fills the rest. */
struct http_xfer {
    struct http_engine *eng;      /* owner */
    void *owner;                  /* the backend's state (http_engine.owner) */
    CURL *easy;                   /* kept for reuse (DNS cache, TLS sessions) */
    bool busy;                    /* in the multi handle now */
    struct send_result *res;      /* where this message's result goes */
    char *url;                    /* the request URL */
    bool get;                     /* GET (else POST with body) */
    struct curl_slist *headers;   /* request headers */
    struct sbuf body;             /* request body */
    char *user;                   /* basic auth user, NULL for none */
    const char *password;         /* basic auth password (owned by the backend) */
    struct sbuf resp;             /* the first HTTP_RESP_MAX bytes of the response */
    char reason[96];              /* reason phrase of the final status line */
    char retry_after[96];         /* Retry-After header value, "" if none */
    char date[96];                /* Date header value, "" if none */
    char errbuf[CURL_ERROR_SIZE]; /* curl's explanation of a failure */
};

struct http_engine {
    /* Set by the backend before the first run; read-only afterwards. */
    const char *name;         /* for log messages ("sms") */
    long timeout_ms;          /* whole-request timeout */
    int max_conns;            /* concurrent requests and cached connections */
    const char *user_agent;   /* User-Agent header */
    const char *proxy;        /* proxy URL, NULL for none */
    const char *tls_ca_file;  /* CA bundle, NULL for the system store */
    void *owner;              /* passed to build and finish */
    /* Fills x for message i (x->res is its result); 0, or < 0 with the
     * result already set (the message is not sent). */
    int (*build)(void *owner, struct http_xfer *x, size_t i);
    /* Sets *x->res from a finished transfer (rc: curl's verdict). */
    void (*finish)(void *owner, struct http_xfer *x, CURLcode rc);

    /* The engine's own. */
    bool ready;               /* loop, timer and multi are initialised */
    uv_loop_t loop;           /* private loop, run only inside http_engine_run */
    uv_timer_t timer;         /* curl's timeout */
    CURLM *multi;             /* curl multi handle: the connection cache */
    struct http_xfer **xfers; /* request slots, max_conns at most */
    size_t nxfers;            /* slots created so far */
    size_t active;            /* transfers in the multi handle */
    struct send_result *res;  /* the batch's results */
    size_t n;                 /* its size */
    size_t next;              /* first message not started yet */
};

/* Sends messages 0..n-1 (through build) and returns when each has a result
 * in res[i]. */
void http_engine_run(struct http_engine *e, size_t n, struct send_result *res);
/* Releases the handles and connections (the configuration stays). */
void http_engine_free(struct http_engine *e);

#endif
