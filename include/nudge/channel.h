/*
 * nudge/channel.h: the channel backend interface.
 *
 * A channel (email, sms, webhook, task) is delivered by one transport backend
 * chosen in nudge.yaml (smtp, http, spool, ...). A backend is a const struct of
 * function pointers, listed in one registry table (channel.c). The dispatcher
 * knows only this interface: adding a backend touches neither the evaluator
 * nor the scheduler.
 *
 * Threading: `send` is blocking and is called from a worker thread, never from
 * the event loop; one backend state is used by one thread at a time (the
 * dispatcher opens `concurrency` states for parallel sessions).
 */
#ifndef NUDGE_CHANNEL_H
#define NUDGE_CHANNEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nerr;
struct store; /* the store (store/store.h): an opaque handle here */

/* What became of one message. */
enum send_status {
    SEND_OK = 0,        /* accepted by the peer */
    SEND_TRANSIENT = 1, /* try again later (4xx, timeout, connection refused, 429, 5xx HTTP) */
    SEND_PERMANENT = 2, /* never retry (5xx SMTP, invalid address, 410) */
};

/*
 * Who a failure is attributed to; it decides what the failure does beyond
 * the one delivery (the dispatcher, dispatch.c):
 *   BLAME_NOBODY     nobody in particular: the network, a busy or broken
 *                    peer (4xx, timeouts, resets, 429, HTTP 5xx), or a
 *                    message that cannot be sent as written. Transient or
 *                    permanent as status says; suppresses nobody.
 *   BLAME_RECIPIENT  the address itself is bad (SMTP RCPT 5.1.x, 5xx after
 *                    DATA for that recipient, an invalid or unreachable
 *                    number, HTTP 410 from a webhook endpoint). Always
 *                    SEND_PERMANENT; the address goes on the suppression
 *                    list as the channel registry says (channel.c).
 *   BLAME_SENDER     our side: the sender or the configuration (MAIL FROM
 *                    or AUTH rejected, STARTTLS required but absent, a TLS
 *                    certificate refused, provider 401/403). Always
 *                    SEND_TRANSIENT: the message is retried with backoff,
 *                    the channel pauses with an alert, nobody is suppressed.
 * A backend that does not know leaves BLAME_NOBODY (the zero value).
 */
enum send_blame {
    BLAME_NOBODY = 0,
    BLAME_RECIPIENT = 1,
    BLAME_SENDER = 2,
};

struct send_result {
    enum send_status status;
    int code;             /* protocol status (SMTP reply code, HTTP status) or -errno */
    int retry_after;      /* seconds the peer asked us to wait, 0 if none */
    char error[256];      /* human-readable reason, kept as the delivery's last_error */
    enum send_blame blame; /* who is at fault when status is not SEND_OK */
    /* Set by the caller of send() before the call (NULL: nobody listens);
     * backends leave it alone (send_result_clear keeps it) and call
     * send_result_report() once the message's outcome is known. */
    struct send_reporter *reporter;
};

/*
 * Per-message results. The dispatcher records each message's outcome
 * durably before the next message goes out on that session, so a crash
 * repeats at most the message in flight. It points every res[i].reporter at
 * one of these before send(); a backend calls send_result_report(&res[i])
 * the moment the peer has accepted or refused message i (an SMTP reply
 * after DATA, a spool file renamed into place), on the thread running
 * send(), and carries on once it returns: the outcome is committed then.
 * A result never reported is recorded after send() returns, with the rest
 * of the batch (as the HTTP backends do). Reporting is optional and
 * idempotent for a backend: the dispatcher records a message once.
 */
struct send_reporter {
    /* Records res[i] (i = index into the array send() got). */
    void (*report)(struct send_reporter *rep, size_t i, const struct send_result *r);
    const struct send_result *base; /* res[0] of the send() call */
    size_t n;                       /* messages in that call */
};

/* A rendered message, ready for a backend. Strings are UTF-8 and owned by the dispatcher. */
struct nudge_message {
    int64_t delivery_id;
    const char *idempotency_key; /* stable across retries: derived from delivery_id */
    const char *rule;
    const char *occurrence;
    const char *channel;     /* "email", "sms", "webhook", "task" */
    const char *customer_id; /* the business's id */
    const char *to;          /* address, E.164 number, URL or owner, by channel */
    const char *to_name;     /* display name, may be NULL */
    const char *subject;     /* email */
    const char *text;        /* email text part, SMS text, task note */
    const char *html;        /* email HTML part, may be NULL */
    const char *unsubscribe_url; /* marketing messages: one-click unsubscribe, may be NULL */
    bool marketing;          /* category: marketing (List-Unsubscribe, caps) or care */
    int64_t created_at;      /* when the delivery was enqueued (unix seconds) */
    int64_t date;            /* the send time to stamp (Date:), from the daemon's clock */
    json_t *payload;         /* full JSON document (webhook body, spool .json); NULL
                                for a backend without needs_payload */
};

/*
 * Backend settings are the channel's mapping from nudge.yaml, as JSON. Keys
 * starting with '_' are added by the daemon, not written by users: _file and
 * _line (where the mapping is, for error messages), _spool_dir, _database.
 * Backends use the ones they need and ignore the rest.
 */
struct channel_backend {
    /* Transport name used in nudge.yaml ("spool", "smtp", "http", "task"). */
    const char *name;
    /* Channels this backend can carry, NULL-terminated. */
    const char *const *channels;
    /* Validates settings and prepares a session; *state is backend-private.
     * Called on the loop thread; must not block on the network. */
    int (*open)(const char *channel, json_t *settings, void **state, struct nerr *err);
    /* Sends n messages over one session (a reused SMTP connection, one HTTP
     * handle); fills res[i] for every message. Blocking; worker thread. */
    void (*send)(void *state, const struct nudge_message *msgs, size_t n, struct send_result *res);
    /* Releases the session. */
    void (*close)(void *state);
    /* Maps a protocol code to transient or permanent, for callers that only
     * have a code (a bounce, an admin retry decision). */
    enum send_status (*classify_error)(int code);
    /* How many messages one send() call should get at most. */
    size_t batch_max;
    /* Parallel sessions when nudge.yaml sets neither dispatch.concurrency nor
     * the channel's own concurrency (0: dispatch.concurrency's default). */
    int default_concurrency;
    /* At most this many parallel sessions whatever nudge.yaml says (0: no
     * limit): 1 for local writes (spool files, tasks), which gain nothing
     * from parallel sessions. */
    int max_concurrency;
    /* Whether send() reads nudge_message.payload; the dispatcher leaves it
     * NULL (and does not build it) for a backend that does not. */
    bool needs_payload;
    /* Optional, for a backend whose delivery is a write to the store (the
     * task transport): called once after open() with the store handle of
     * the dispatch slot that owns the session (opaque; the store's typed
     * functions take it). send() runs on that slot's thread, so it may use
     * the handle there; the dispatcher closes it after close(). */
    void (*use_store)(void *state, struct store *st);
};

/* Fills r for a backend's send(): status, code, a printf-style reason, and
 * no Retry-After; blame is BLAME_NOBODY (see send_result_blame). */
void send_result_set(struct send_result *r, enum send_status status, int code, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));
/* Sets r->blame and the status that goes with it: a recipient fault is
 * permanent, a sender fault transient; BLAME_NOBODY leaves the status. */
void send_result_blame(struct send_result *r, enum send_blame blame);
/* "recipient", "sender" or "nobody", for logs and status. */
const char *send_blame_name(enum send_blame blame);

/* Zeroes r's outcome, keeping the reporter the caller set. */
void send_result_clear(struct send_result *r);
/* Tells r's reporter, if any, that r holds its message's final outcome. A
 * result outside the reporter's array (a backend's private send_result, as
 * the task backend's notification mail) is ignored. */
void send_result_report(struct send_result *r);

/* The registry (channel.c): finds a backend by transport name. */
const struct channel_backend *channel_backend_find(const char *transport);
/* NULL-terminated list of all backends, for help and validation. */
extern const struct channel_backend *const channel_backends[];

#endif
