/*
 * daemon.h: the running daemon's state, shared by main.c (lifecycle),
 * dispatch.c (the outbox workers) and admin.c (the control socket).
 * Everything here is touched on the loop thread only, except where a field
 * says otherwise.
 */
#ifndef NUDGE_DAEMON_H
#define NUDGE_DAEMON_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include <nudge/channel.h>

#include "clock.h"
#include "config.h"
#include "evaluator.h"
#include "rules.h"
#include "store.h"

struct holiday_set;
struct daemon;

/* One slot = one backend session working through batches on a worker thread. */
struct slot {
    struct chan *chan;
    ntime_t now;             /* the clock when the job was queued */
    struct ruleset *rs;      /* held for the job */
    void *state;        /* backend session, used by one job at a time */
    struct store *st;   /* this slot's own database connection */
    struct outbox_journal *journal; /* its sent journal (outbox.h) */
    bool busy;
    uv_work_t work;
    /* Results of the last job, read on the loop thread after it ran. */
    size_t claimed;
    long sent, failed, other;
    bool probe;             /* this job is a paused channel's one probe message */
    bool sender_fault;      /* a result blamed the sender or configuration */
    bool settled_clean;     /* results came back and none blamed the sender */
    char sender_why[256];   /* the first such result's error */
};

/* A channel paused after a sender or configuration fault (dispatch.c):
 * no claims until `until`, then one probe message; a clean result, a
 * reload or `nudgectl retry` resumes it. Written on the loop thread; read
 * there and, under mu, by the HTTP listener's thread (/metrics). */
struct chan_pause {
    pthread_mutex_t mu;
    int level;          /* consecutive pauses; 0 = running */
    ntime_t since;      /* when the first of them began */
    ntime_t until;      /* no claims before this */
    char reason[256];   /* the fault, as the backend put it */
};

struct chan {
    struct daemon *d;
    char *name;                         /* "email", "sms", ... */
    const struct channel_backend *be;
    json_t *settings;
    struct slot *slots;
    int nslots;
    int batch;        /* deliveries claimed at a time: the channel's own, else dispatch.batch */
    int64_t lifetime; /* retry lifetime: the channel's own, else dispatch.lifetime */
    int max_attempts; /* 0 = bounded by lifetime only */
    struct chan_pause pause;
};

/* Someone waiting for "everything due up to now is settled" (advance). */
struct waiter {
    void (*done)(struct daemon *d, void *ud);
    void *ud;
    struct waiter *next;
};

struct daemon {
    uv_loop_t *loop;
    struct config *cfg;
    struct store *st;            /* the loop thread's connection (admin queries) */
    struct store *eval_st;       /* the evaluator's connection (worker thread) */
    struct ruleset *rs;          /* current rule set; swapped whole on reload */
    struct holiday_set *hs;
    char *secret;                /* installation HMAC key */
    char **attrs;                /* known custom attributes, NULL-terminated */
    int lock_fd;                 /* the database's lock (store_lock), -1 if not held */
    /* Serialises the dispatch slots' write transactions (claims, each
     * message's result, a batch's rest): a slot waiting here is woken the
     * moment the writer before it commits, where SQLite's busy handler
     * would sleep a millisecond or more per collision. */
    uv_mutex_t write_mu;
    bool write_mu_ready;
    char instance[33];           /* this run's id: the owner of its claims (hex) */

    /* The clock: real time plus an offset, or frozen and moved by advance
     * (clock.h; safe to read from any thread). */
    struct nclock clock;

    uv_timer_t tick_timer;
    uv_timer_t dispatch_timer;
    uv_timer_t watchdog_timer;
    uv_signal_t sig_hup, sig_term, sig_int;
    uv_pipe_t admin;
    bool admin_open;

    /* A reload runs on a worker (engine.c); at most one at a time. */
    bool reload_busy;
    bool reload_again; /* a SIGHUP came during one */

    /* Evaluation runs on a worker; at most one at a time. */
    bool eval_busy;
    bool eval_again;
    uv_work_t eval_work;
    ntime_t eval_to;
    struct ruleset *eval_rs;
    struct eval_stats eval_stats;
    int eval_rc;
    ntime_t last_tick;       /* the instant the last evaluation reached */
    long cycles;             /* evaluations finished since start */
    struct eval_stats totals;

    struct chan chans[4];
    int nchans;
    int jobs;                /* dispatch jobs running */
    struct waiter *waiters;  /* notified when evaluation and dispatch are idle */
    /* Also read by the HTTP listener's thread (/metrics). */
    atomic_long sent_total, failed_total;

    struct http_server *http;  /* health, metrics, unsubscribe; NULL if not configured */
    atomic_bool stopping;    /* read by workers: release instead of sending */
    ntime_t started;
    int exit_code;
};

/* engine.c */
ntime_t daemon_now(const struct daemon *d);
/* What evaluation has done since start (loop thread). */
struct engine_stats {
    ntime_t started;   /* wall-clock start of this process */
    ntime_t last_tick; /* the instant the last evaluation reached (0: none yet) */
    long cycles;
    struct eval_stats totals; /* fires, enqueued, skipped_late */
};
void engine_stats(const struct daemon *d, struct engine_stats *out);
/* daemon_now for import_set_clock (ud: the daemon). */
ntime_t engine_import_clock(void *ud);
/* Starts the timers: tick and dispatch (running clock), watchdog (wd_usec > 0). */
void engine_start(struct daemon *d, uint64_t wd_usec);
/* Evaluates up to now (the clock's instant) and then dispatches. */
void daemon_cycle(struct daemon *d);
/* Calls done once evaluation and dispatch are both idle. */
void daemon_when_settled(struct daemon *d, void (*done)(struct daemon *, void *), void *ud);
/* Loads the rules directory again; on error keeps the running set. Returns a
 * JSON report {ok, version, added, removed, changed, errors}. */
json_t *daemon_reload(struct daemon *d);
/* The same on the thread pool: done(d, report, ud) on the loop thread when
 * the new rule set is in place (or the reload failed). -EBUSY while another
 * reload runs (with done NULL, a SIGHUP, it runs again after that one). */
int daemon_reload_async(struct daemon *d, void (*done)(struct daemon *d, json_t *rep, void *ud),
                        void *ud);

/* dispatch.c */
int dispatch_open(struct daemon *d, struct nerr *err);
/* Checks every channel's settings the way dispatch_open does, through each
 * backend's own open() and close() with `_check` set (so nothing is
 * created or connected): for nudged --check. */
int dispatch_check(struct config *cfg, struct nerr *err);
void dispatch_kick(struct daemon *d);
void dispatch_close(struct daemon *d);
/* The operator acted (reload, retry): every paused channel resumes at once
 * and its retrying deliveries become due now. `why` goes to the log. */
void dispatch_resume(struct daemon *d, const char *why);
/* Each channel's transport and pause state, for status:
 * {"email": {"transport": "smtp", "paused": true, "reason": "...",
 * "since": T, "until": T}, ...}. Safe from any thread. */
json_t *dispatch_channels_json(struct daemon *d);
/* The dispatcher's counters since start (any thread). */
struct dispatch_stats {
    long sent, failed; /* messages sent, failed attempts */
    int batches;       /* batches running now (loop thread's view) */
};
void dispatch_stats(struct daemon *d, struct dispatch_stats *out);
/* Prometheus lines: the sent and failed totals and
 * nudge_channel_paused{channel="..."} 0|1. Safe from any thread. */
void dispatch_metrics(struct daemon *d, struct sbuf *out);

/* admin.c */
int admin_listen(struct daemon *d, struct nerr *err);
void admin_close(struct daemon *d);

#endif
