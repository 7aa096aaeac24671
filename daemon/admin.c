/*
 * admin.c: the admin socket. One JSON request per line, one JSON response
 * per line ({"ok": true, ...} or {"ok": false, "error": "..."}); long
 * commands may send {"progress": ...} lines first. Commands are described in
 * one table that drives dispatch, argument checks and `help`. A malformed
 * request gets an error response; the daemon carries on.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "channel_registry.h"
#include "audience.h"
#include "calendar.h"
#include "daemon.h"
#include "import.h"
#include "log.h"
#include "outbox.h"
#include "render.h"
#include "store_task.h"
#include "template.h"

/* One request line; files travel as a streamed body after their request. */
#define ADMIN_MAX_REQUEST (64u << 20)
/* A streamed import: the loop stops reading the socket while this much
 * waits for the import thread, and reads again below the low mark, so the
 * sender is held back by the socket and memory stays bounded. */
#define IMPORT_QUEUE_HIGH (1u << 20)
#define IMPORT_QUEUE_LOW (256u << 10)

struct ijob;

struct conn {
    uv_pipe_t pipe;
    struct daemon *d;
    struct sbuf in;
    size_t scanned; /* bytes of `in` already searched for a newline */
    struct ijob *body; /* a streamed import is reading its file from this connection */
    int refs;       /* the pipe, and each job or waiter holding it */
    bool closed;
};

struct admin_cmd {
    const char *name;
    const char *usage;
    const char *help;
    void (*fn)(struct conn *c, json_t *req);
    bool needs_frozen;
};

static void conn_unref(struct conn *c);
static void conn_close(struct conn *c);

/* ---- replies --------------------------------------------------------------- */

struct wreq {
    uv_write_t w;
    char *buf;
};

static void
on_written(uv_write_t *w, int status)
{
    struct wreq *r = (struct wreq *)w;
    (void)status;
    free(r->buf);
    free(r);
}

static void
conn_send(struct conn *c, json_t *msg)
{
    struct wreq *r;
    uv_buf_t b;
    char *s;
    if (c->closed) {
        json_decref(msg);
        return;
    }
    s = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!s)
        return;
    r = xcalloc(1, sizeof(*r));
    r->buf = xasprintf("%s\n", s);
    free(s);
    b = uv_buf_init(r->buf, (unsigned)strlen(r->buf));
    if (uv_write(&r->w, (uv_stream_t *)&c->pipe, &b, 1, on_written) < 0) {
        free(r->buf);
        free(r);
    }
}

static void
reply_ok(struct conn *c, json_t *body)
{
    if (!body)
        body = json_object();
    json_object_set_new(body, "ok", json_true());
    conn_send(c, body);
}

static void
reply_err(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply_err(struct conn *c, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    conn_send(c, json_pack("{sbss}", "ok", 0, "error", msg));
}

static const char *
arg_str(json_t *req, const char *k)
{
    return json_string_value(json_object_get(req, k));
}

static int
arg_time(struct conn *c, json_t *req, const char *k, ntime_t *out, bool required)
{
    const char *s = arg_str(req, k);
    if (!s) {
        if (required)
            reply_err(c, "missing '%s' (a time such as 2027-02-03T10:00:00+08:00)", k);
        return required ? -EINVAL : 1;
    }
    if (time_parse_iso(s, out) < 0) {
        reply_err(c, "'%s' is not a time: '%s'; write RFC 3339, e.g. 2027-02-03T10:00:00+08:00",
                  k, s);
        return -EINVAL;
    }
    return 0;
}

static json_t *
jtime(ntime_t t)
{
    char b[32];
    time_format_iso(t, b, sizeof(b));
    return json_string(b);
}

/* "2027-02-03T10:00:00+08:00" in zone tz. */
static json_t *
jlocal(const char *tz, ntime_t t)
{
    struct cal_local l;
    char b[40];
    int off;
    if (cal_utc_to_local(tz, t, &l) < 0)
        return jtime(t);
    off = l.utc_offset;
    snprintf(b, sizeof(b), "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", l.year, l.month, l.day,
             l.hour, l.minute, l.second, off < 0 ? '-' : '+', abs(off) / 3600,
             abs(off) % 3600 / 60);
    return json_string(b);
}

/* ---- jobs on the thread pool -------------------------------------------------- */

struct job {
    uv_work_t w;
    struct conn *c;
    struct daemon *d;
    json_t *req;
    json_t *rep;   /* set by the worker: sent as is (with "ok" decided by the worker) */
    struct ruleset *rs;   /* held for the job */
    void (*fn)(struct job *j);
    /* Progress from the worker, forwarded to the client by the loop. */
    uv_async_t async;
    bool has_async;
    pthread_mutex_t mu;
    char progress[160];
};

static void
job_free(uv_handle_t *h)
{
    struct job *j = h->data;
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void
on_progress(uv_async_t *a)
{
    struct job *j = a->data;
    char text[160];
    pthread_mutex_lock(&j->mu);
    memcpy(text, j->progress, sizeof(text));
    pthread_mutex_unlock(&j->mu);
    if (text[0])
        conn_send(j->c, json_pack("{ss}", "progress", text));
}

static void
job_work(uv_work_t *w)
{
    struct job *j = w->data;
    j->fn(j);
}

static void
job_after(uv_work_t *w, int status)
{
    struct job *j = w->data;
    (void)status;
    if (j->rep)
        conn_send(j->c, j->rep);
    else
        reply_err(j->c, "internal error: the command produced no answer");
    json_decref(j->req);
    ruleset_unref(j->rs);
    conn_unref(j->c);
    uv_close((uv_handle_t *)&j->async, job_free);
}

static void
job_start(struct conn *c, json_t *req, void (*fn)(struct job *))
{
    struct job *j = xcalloc(1, sizeof(*j));
    j->c = c;
    j->d = c->d;
    j->req = json_incref(req);
    j->fn = fn;
    j->rs = ruleset_ref(c->d->rs);
    j->w.data = j;
    pthread_mutex_init(&j->mu, NULL);
    uv_async_init(c->d->loop, &j->async, on_progress);
    j->async.data = j;
    c->refs++;
    uv_queue_work(c->d->loop, &j->w, job_work, job_after);
}

static json_t *
job_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static json_t *
job_error(const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_pack("{sbss}", "ok", 0, "error", msg);
}

/* ---- commands ------------------------------------------------------------------ */

static void
cmd_status(struct conn *c, json_t *req)
{
    struct daemon *d = c->d;
    json_t *o = json_object();
    struct engine_stats es;
    struct dispatch_stats ds;
    (void)req;
    engine_stats(d, &es);
    dispatch_stats(d, &ds);
    json_object_set_new(o, "version", json_string(NUDGE_VERSION));
    json_object_set_new(o, "uptime", json_integer((json_int_t)(time(NULL) - es.started)));
    json_object_set_new(o, "now", jtime(daemon_now(d)));
    json_object_set_new(o, "frozen", json_boolean(clock_is_frozen(&d->clock)));
    json_object_set_new(o, "ruleset_version", json_integer((json_int_t)d->rs->version));
    json_object_set_new(o, "rules", json_integer((json_int_t)d->rs->n));
    json_object_set_new(o, "last_tick", es.last_tick ? jtime(es.last_tick) : json_null());
    json_object_set_new(o, "queue", outbox_counts(d->st));
    json_object_set_new(o, "fires", json_integer(es.totals.fires));
    json_object_set_new(o, "enqueued", json_integer(es.totals.enqueued));
    json_object_set_new(o, "skipped_late", json_integer(es.totals.skipped_late));
    json_object_set_new(o, "batches_running", json_integer(ds.batches));
    json_object_set_new(o, "channels", dispatch_channels_json(d));
    json_object_set_new(o, "database", json_string(d->cfg->database));
    json_object_set_new(o, "rules_dir", json_string(d->cfg->rules_dir));
    reply_ok(c, o);
}

static void
reload_done(struct daemon *d, json_t *rep, void *ud)
{
    struct conn *c = ud;
    (void)d;
    conn_send(c, rep);
    conn_unref(c);
}

/* The reload runs off the loop thread; the reply comes when it is done. */
static void
cmd_reload(struct conn *c, json_t *req)
{
    (void)req;
    c->refs++;
    if (daemon_reload_async(c->d, reload_done, c) < 0) {
        c->refs--;
        reply_err(c, "a reload is already running; try again when it has finished");
    }
}

static void
cmd_rules(struct conn *c, json_t *req)
{
    struct daemon *d = c->d;
    json_t *a = json_array();
    struct sched_env env = {d->hs, d->cfg->feb29_mar1};
    (void)req;
    for (size_t i = 0; i < d->rs->n; i++) {
        const struct rule *r = d->rs->rules[i];
        json_t *o = json_object(), *acts = json_array();
        struct fire f;
        json_object_set_new(o, "name", json_string(r->name));
        json_object_set_new(o, "category", json_string(r->marketing ? "marketing" : "care"));
        json_object_set_new(o, "trigger", json_string(trigger_kind_name(r->trigger.kind)));
        json_object_set_new(o, "audience", json_string(r->audience_src ? r->audience_src : ""));
        json_object_set_new(o, "file", json_string(r->file));
        if (r->description)
            json_object_set_new(o, "description", json_string(r->description));
        for (size_t k = 0; k < r->nactions; k++)
            json_array_append_new(acts, json_string(r->actions[k].channel));
        json_object_set_new(o, "actions", acts);
        if (schedule_next(r, &env, d->cfg->timezone, daemon_now(d), &f) == 0) {
            json_object_set_new(o, "next_fire", jtime(f.at));
            json_object_set_new(o, "next_fire_local", jlocal(d->cfg->timezone, f.at));
            json_object_set_new(o, "next_occurrence", json_string(f.occurrence));
        } else {
            json_object_set_new(o, "next_fire", json_null());
        }
        json_array_append_new(a, o);
    }
    reply_ok(c, json_pack("{sossso}", "rules", a, "timezone", d->cfg->timezone, "version",
                          json_integer((json_int_t)d->rs->version)));
}

struct advance_wait {
    struct conn *c;
    ntime_t from, target;
    long sent0, failed0, enq0;
};

/*
 * A frozen clock moves in steps of at most an hour, each evaluated and
 * dispatched to the end before the next: messages carry the time they would
 * really have gone out, and retries that fall due within the advance are
 * tried within it, as they would be on a running clock.
 */
#define ADVANCE_STEP 3600

static void
advance_step(struct daemon *d, void *ud)
{
    struct advance_wait *w = ud;
    struct engine_stats es;
    struct dispatch_stats ds;
    json_t *o;
    ntime_t now = daemon_now(d);
    if (now < w->target && !atomic_load(&d->stopping)) {
        clock_set(&d->clock, now + ADVANCE_STEP < w->target ? now + ADVANCE_STEP : w->target);
        daemon_cycle(d);
        daemon_when_settled(d, advance_step, w);
        return;
    }
    if (now < w->target) {
        char at[32];
        time_format_iso(now, at, sizeof(at));
        reply_err(w->c, "nudged is stopping: the clock stopped at %s, short of the target", at);
        conn_unref(w->c);
        free(w);
        return;
    }
    engine_stats(d, &es);
    dispatch_stats(d, &ds);
    o = json_object();
    json_object_set_new(o, "from", jtime(w->from));
    json_object_set_new(o, "now", jtime(daemon_now(d)));
    json_object_set_new(o, "enqueued", json_integer(es.totals.enqueued - w->enq0));
    json_object_set_new(o, "sent", json_integer(ds.sent - w->sent0));
    json_object_set_new(o, "failed", json_integer(ds.failed - w->failed0));
    json_object_set_new(o, "queue", outbox_counts(d->st));
    reply_ok(w->c, o);
    conn_unref(w->c);
    free(w);
}

static void
cmd_advance(struct conn *c, json_t *req)
{
    struct daemon *d = c->d;
    struct engine_stats es;
    struct dispatch_stats ds;
    struct advance_wait *w;
    ntime_t to;
    if (arg_time(c, req, "to", &to, true) < 0)
        return;
    if (to < daemon_now(d)) {
        char a[32];
        time_format_iso(daemon_now(d), a, sizeof(a));
        reply_err(c, "the clock only moves forward: it stands at %s", a);
        return;
    }
    w = xcalloc(1, sizeof(*w));
    w->c = c;
    w->from = daemon_now(d);
    w->target = to;
    engine_stats(d, &es);
    dispatch_stats(d, &ds);
    w->sent0 = ds.sent;
    w->failed0 = ds.failed;
    w->enq0 = es.totals.enqueued;
    c->refs++;
    /* First settle what is due now (an earlier advance may have left retries). */
    daemon_cycle(d);
    daemon_when_settled(d, advance_step, w);
}

static void
cmd_queue(struct conn *c, json_t *req)
{
    static const char *const states[] = {"pending", "sending", "retry",   "sent",
                                         "dead",    "suppressed", "skipped", NULL};
    const char *state = arg_str(req, "state");
    json_int_t limit = json_integer_value(json_object_get(req, "limit"));
    if (state) {
        bool ok = false;
        for (int i = 0; states[i]; i++)
            ok |= !strcmp(states[i], state);
        if (!ok) {
            reply_err(c, "unknown state '%s'; expected pending, sending, retry, sent, dead, "
                         "suppressed or skipped",
                      state);
            return;
        }
    }
    if (limit <= 0)
        limit = 100;
    reply_ok(c, json_pack("{soso}", "counts", outbox_counts(c->d->st), "deliveries",
                          outbox_list(c->d->st, state, (size_t)limit)));
}

static void
cmd_retry(struct conn *c, json_t *req)
{
    json_t *id = json_object_get(req, "id");
    int n;
    if (!json_is_integer(id) && !json_is_true(json_object_get(req, "dead"))) {
        reply_err(c, "retry needs a delivery id, or dead: true for every dead delivery");
        return;
    }
    n = outbox_retry(c->d->st, json_is_integer(id) ? json_integer_value(id) : -1,
                     daemon_now(c->d));
    if (n < 0) {
        reply_err(c, "retry failed: database error");
        return;
    }
    if (n == 0 && json_is_integer(id)) {
        reply_err(c, "delivery %lld is not dead or retrying (see nudgectl queue)",
                  (long long)json_integer_value(id));
        return;
    }
    reply_ok(c, json_pack("{si}", "retried", n));
    /* The operator is acting on the queue: a paused channel tries again. */
    dispatch_resume(c->d, "nudgectl retry");
    dispatch_kick(c->d);
}

/*
 * import: {"cmd":"import","kind":K,"name":N,"size":BYTES} followed on the
 * same connection by exactly BYTES bytes of the file (the streamed form), or
 * with "data" holding the whole file as a JSON string (small files, tools).
 * The file is parsed and written by a thread of its own with its own
 * database connection; the loop only moves bytes from the socket to a
 * bounded queue, so it keeps answering status and the watchdog. Progress
 * lines {"progress": TEXT, "rows": N, "bytes": B, "total": T} go out as the
 * import advances, then the answer.
 */
struct chunk {
    struct chunk *next;
    size_t len;
    char data[];
};

struct ijob {
    struct conn *c;
    struct daemon *d;
    enum import_kind kind;
    char *name;
    size_t total, received; /* the body's size, and bytes taken from the socket */
    pthread_t th;
    uv_async_t async;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu: */
    struct chunk *head, *tail;
    size_t queued;
    bool eof, aborted, paused, want_resume, done, progressed;
    long rows;
    size_t bytes;
    json_t *rep;
    struct ijob *next_active;
};

static struct ijob *active_imports;

static void
ijob_progress(void *ud, long rows, size_t done, size_t total)
{
    struct ijob *j = ud;
    (void)total;
    pthread_mutex_lock(&j->mu);
    j->rows = rows;
    j->bytes = done;
    j->progressed = true;
    pthread_mutex_unlock(&j->mu);
    uv_async_send(&j->async);
}

static void *
ijob_thread(void *arg)
{
    struct ijob *j = arg;
    struct store *st = NULL;
    struct nerr err;
    struct import_stats stats;
    struct import *imp = NULL;
    char *errors = NULL;
    bool aborted = false;
    int rc;
    memset(&stats, 0, sizeof(stats));
    nerr_clear(&err);
    if (store_open(j->d->cfg->database, &st, &err) == 0) {
        struct import_opts o = {j->d->cfg->timezone, j->total, ijob_progress, j};
        imp = import_begin(st, j->kind, j->name, &o);
    }
    pthread_mutex_lock(&j->mu);
    for (;;) {
        struct chunk *k;
        while (!j->head && !j->eof && !j->aborted)
            pthread_cond_wait(&j->cv, &j->mu);
        if (!j->head) {
            aborted = j->aborted && !j->eof;
            break;
        }
        k = j->head;
        j->head = k->next;
        if (!j->head)
            j->tail = NULL;
        j->queued -= k->len;
        if (j->paused && j->queued < IMPORT_QUEUE_LOW && !j->want_resume) {
            j->want_resume = true;
            uv_async_send(&j->async);
        }
        pthread_mutex_unlock(&j->mu);
        /* After a database failure the rest of the file is only drained. */
        if (imp)
            import_feed(imp, k->data, k->len);
        free(k);
        pthread_mutex_lock(&j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    if (!imp) {
        json_t *rep = job_error("cannot open the database: %s", err.msg);
        pthread_mutex_lock(&j->mu);
        j->rep = rep;
        j->done = true;
        pthread_mutex_unlock(&j->mu);
        uv_async_send(&j->async);
        return NULL;
    }
    rc = import_end(imp, aborted, &stats, &errors);
    store_close(st);
    json_t *rep = json_object();
    json_object_set_new(rep, "ok", json_boolean(rc == 0));
    json_object_set_new(rep, "rows", json_integer(stats.rows));
    json_object_set_new(rep, "inserted", json_integer(stats.inserted));
    json_object_set_new(rep, "updated", json_integer(stats.updated));
    json_object_set_new(rep, "unchanged", json_integer(stats.unchanged));
    json_object_set_new(rep, "warnings", json_integer(stats.warnings));
    if (errors)
        json_object_set_new(rep, rc == 0 ? "messages" : "error", json_string(errors));
    else if (rc < 0)
        json_object_set_new(rep, "error", json_string("import failed"));
    free(errors);
    pthread_mutex_lock(&j->mu);
    j->rep = rep;
    j->done = true;
    pthread_mutex_unlock(&j->mu);
    uv_async_send(&j->async);
    return NULL;
}

static void
ijob_free(uv_handle_t *h)
{
    struct ijob *j = h->data;
    struct chunk *k;
    while ((k = j->head)) {
        j->head = k->next;
        free(k);
    }
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->name);
    free(j);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* Loop side: progress to the client, reading again, the answer. */
static void
ijob_async(uv_async_t *a)
{
    struct ijob *j = a->data;
    bool resume, done, progressed;
    long rows;
    size_t bytes;
    json_t *rep;
    pthread_mutex_lock(&j->mu);
    resume = j->want_resume;
    j->want_resume = false;
    if (resume)
        j->paused = false;
    done = j->done;
    progressed = j->progressed;
    j->progressed = false;
    rows = j->rows;
    bytes = j->bytes;
    rep = done ? j->rep : NULL;
    if (done)
        j->rep = NULL;
    pthread_mutex_unlock(&j->mu);
    if (resume && !j->c->closed && j->c->body == j)
        uv_read_start((uv_stream_t *)&j->c->pipe, on_alloc, on_read);
    if (progressed && !done) {
        char text[96];
        if (j->total)
            snprintf(text, sizeof(text), "%ld rows (%d%%)", rows,
                     (int)((double)bytes * 100 / (double)j->total));
        else
            snprintf(text, sizeof(text), "%ld rows", rows);
        conn_send(j->c, json_pack("{sssIsIsI}", "progress", text, "rows", (json_int_t)rows,
                                  "bytes", (json_int_t)bytes, "total", (json_int_t)j->total));
    }
    if (!done)
        return;
    pthread_join(j->th, NULL);
    for (struct ijob **p = &active_imports; *p; p = &(*p)->next_active)
        if (*p == j) {
            *p = j->next_active;
            break;
        }
    if (j->c->body == j) {
        /* The import ended before its body did (an early failure): the rest
         * of the stream cannot be told from requests; hang up after the answer. */
        j->c->body = NULL;
        conn_send(j->c, rep);
        conn_close(j->c);
    } else {
        conn_send(j->c, rep);
    }
    conn_unref(j->c);
    uv_close((uv_handle_t *)&j->async, ijob_free);
}

/* Hands bytes of the body to the import thread (copied: the read buffer is
 * reused), pausing the socket when the queue is full. */
static void
ijob_push(struct ijob *j, const char *data, size_t len, bool eof)
{
    struct chunk *k = NULL;
    bool pause = false;
    if (len) {
        k = xmalloc(sizeof(*k) + len);
        k->next = NULL;
        k->len = len;
        memcpy(k->data, data, len);
    }
    pthread_mutex_lock(&j->mu);
    if (k) {
        if (j->tail)
            j->tail->next = k;
        else
            j->head = k;
        j->tail = k;
        j->queued += len;
    }
    j->received += len;
    if (eof)
        j->eof = true;
    if (!eof && j->queued >= IMPORT_QUEUE_HIGH && !j->paused) {
        j->paused = true;
        pause = true;
    }
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (pause)
        uv_read_stop((uv_stream_t *)&j->c->pipe);
}

static void
ijob_abort(struct ijob *j)
{
    pthread_mutex_lock(&j->mu);
    j->aborted = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static struct ijob *
ijob_start(struct conn *c, enum import_kind kind, const char *name, size_t total)
{
    struct ijob *j = xcalloc(1, sizeof(*j));
    j->c = c;
    j->d = c->d;
    j->kind = kind;
    j->name = xstrdup(name);
    j->total = total;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    uv_async_init(c->d->loop, &j->async, ijob_async);
    j->async.data = j;
    c->refs++;
    if (pthread_create(&j->th, NULL, ijob_thread, j) != 0) {
        reply_err(c, "cannot start the import: no thread");
        conn_unref(c);
        uv_close((uv_handle_t *)&j->async, ijob_free);
        return NULL;
    }
    j->next_active = active_imports;
    active_imports = j;
    return j;
}

static void
cmd_import(struct conn *c, json_t *req)
{
    const char *kind = arg_str(req, "kind"), *name = arg_str(req, "name"),
               *data = arg_str(req, "data");
    json_t *size = json_object_get(req, "size");
    enum import_kind k;
    struct ijob *j;
    if (!kind || (strcmp(kind, "customers") && strcmp(kind, "orders"))) {
        reply_err(c, "import needs kind: customers or orders");
        if (size)
            conn_close(c); /* the body that follows is not a request */
        return;
    }
    k = strcmp(kind, "customers") == 0 ? IMPORT_CUSTOMERS : IMPORT_ORDERS;
    if (!name || (!data && !json_is_integer(size)) || (data && size) ||
        (size && json_integer_value(size) < 0)) {
        reply_err(c, "import needs name and either size (the number of bytes of the file "
                     "that follow the request) or data (the CSV text)");
        if (size)
            conn_close(c);
        return;
    }
    if (data) {
        size_t len = strlen(data);
        if ((j = ijob_start(c, k, name, len)))
            ijob_push(j, data, len, true);
        return;
    }
    j = ijob_start(c, k, name, (size_t)json_integer_value(size));
    if (!j) {
        conn_close(c);
        return;
    }
    if (j->total == 0)
        ijob_push(j, NULL, 0, true);
    else
        c->body = j; /* on_read hands the next `total` bytes to the import */
}

/* forecast and preview: evaluate without writing. */
struct listing {
    struct job *j;
    struct render_env renv;
    json_t *rows;
    long count;
    long limit;
    bool render;
    ntime_t first_at;
    ntime_t *ats;   /* the instant of each row in rows, for sorting */
    size_t nats, capats;
    /* The values rows of one fire share (its rule, zone, instant, action):
     * the next row of the same fire takes references to them instead of
     * formatting and allocating them again (a year's forecast has hundreds
     * of thousands of rows and only thousands of fires). */
    struct {
        const struct rule *rule;
        ntime_t at;
        size_t action;
        json_t *at_s, *local, *tz_s, *rule_s, *channel, *occurrence;
    } same;
};

static void
listing_same_free(struct listing *L)
{
    json_decref(L->same.at_s);
    json_decref(L->same.local);
    json_decref(L->same.tz_s);
    json_decref(L->same.rule_s);
    json_decref(L->same.channel);
    json_decref(L->same.occurrence);
    memset(&L->same, 0, sizeof(L->same));
}

struct keyed {
    ntime_t at;
    size_t seq;
};

static int
cmp_keyed(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int
list_row(void *ud, const struct eval_row *row)
{
    struct listing *L = ud;
    const struct action *a = &row->rule->actions[row->action];
    json_t *o;
    if (L->first_at == 0 || row->fire->at < L->first_at)
        L->first_at = row->fire->at;
    L->count++;
    if (L->count > L->limit)
        return 0;
    if (!L->same.at_s || L->same.rule != row->rule || L->same.at != row->fire->at ||
        L->same.action != row->action || strcmp(json_string_value(L->same.tz_s), row->tz) != 0 ||
        strcmp(json_string_value(L->same.occurrence), row->fire->occurrence) != 0) {
        listing_same_free(L);
        L->same.rule = row->rule;
        L->same.at = row->fire->at;
        L->same.action = row->action;
        L->same.at_s = jtime(row->fire->at);
        L->same.local = jlocal(row->tz, row->fire->at);
        L->same.tz_s = json_string(row->tz);
        L->same.rule_s = json_string(row->rule->name);
        L->same.channel = json_string(a->channel);
        L->same.occurrence = json_string(row->fire->occurrence);
    }
    o = json_object();
    json_object_set(o, "at", L->same.at_s);
    json_object_set(o, "local", L->same.local);
    json_object_set(o, "tz", L->same.tz_s);
    json_object_set(o, "rule", L->same.rule_s);
    json_object_set_new(o, "customer", json_string(row->ext_id ? row->ext_id : ""));
    json_object_set(o, "channel", L->same.channel);
    json_object_set(o, "occurrence", L->same.occurrence);
    if (L->render) {
        json_t *ctx = render_customer_context(L->renv.st, row->customer_id);
        char why[512];
        if (ctx) {
            char *s;
            render_add_rule_context(ctx, &L->renv, row->rule, row->fire->occurrence, a->channel,
                                    row->fire->at);
            json_object_set(o, "to",
                            json_object_get(ctx, channel_infos[a->kind].customer_field
                                                     ? channel_infos[a->kind].customer_field
                                                 : a->kind == ACT_TASK ? "owner"
                                                                       : "id"));
            if (a->kind == ACT_WEBHOOK)
                json_object_set_new(o, "to", json_string(a->url));
            if (a->subject && (s = render_tmpl(a->subject, ctx, false, row->rule, why, sizeof(why))))
                json_object_set_new(o, "subject", json_string(s)), free(s);
            if (a->text && (s = render_tmpl(a->text, ctx, false, row->rule, why, sizeof(why))))
                json_object_set_new(o, "text", json_string(s)), free(s);
            if (a->html && (s = render_tmpl(a->html, ctx, true, row->rule, why, sizeof(why))))
                json_object_set_new(o, "html", json_string(s)), free(s);
            if (a->note && (s = render_tmpl(a->note, ctx, false, row->rule, why, sizeof(why))))
                json_object_set_new(o, "note", json_string(s)), free(s);
            json_decref(ctx);
        }
    }
    json_array_append_new(L->rows, o);
    if (L->nats == L->capats) {
        L->capats = L->capats ? L->capats * 2 : 1024;
        L->ats = xrealloc(L->ats, L->capats * sizeof(*L->ats));
    }
    L->ats[L->nats++] = row->fire->at;
    return 0;
}

static void
forecast_job(struct job *j)
{
    struct daemon *d = j->d;
    const char *only = arg_str(j->req, "rule");
    ntime_t from, to;
    struct store *st = NULL;
    struct nerr err;
    struct listing L;
    struct eval_stats stats = {0, 0, 0};
    json_int_t limit = json_integer_value(json_object_get(j->req, "limit"));
    time_parse_iso(arg_str(j->req, "from"), &from);
    time_parse_iso(arg_str(j->req, "to"), &to);
    nerr_clear(&err);
    if (store_open(d->cfg->database, &st, &err) < 0) {
        j->rep = job_error("cannot open the database: %s", err.msg);
        return;
    }
    memset(&L, 0, sizeof(L));
    L.j = j;
    L.rows = json_array();
    L.limit = limit > 0 ? (long)limit : 1000000;
    struct evaluator ev = {st, d->cfg, {d->hs, d->cfg->feb29_mar1}, NULL, false};
    for (size_t i = 0; i < j->rs->n; i++) {
        if (only && strcmp(only, j->rs->rules[i]->name))
            continue;
        /* The window is [from, to), as calendar APIs take it; the
         * evaluator's is (from, to], and fires fall on whole seconds. */
        if (evaluate_window(&ev, j->rs->rules[i], from - 1, to - 1, daemon_now(d), list_row, &L,
                            &stats) < 0) {
            json_decref(L.rows);
            free(L.ats);
            listing_same_free(&L);
            store_close(st);
            j->rep = job_error("forecast failed for rule %s", j->rs->rules[i]->name);
            return;
        }
    }
    /* Time order across rules and zones (stable: evaluation order breaks ties). */
    size_t n = json_array_size(L.rows);
    struct keyed *k = xcalloc(n ? n : 1, sizeof(*k));
    for (size_t i = 0; i < n; i++) {
        k[i].at = L.ats[i];
        k[i].seq = i;
    }
    qsort(k, n, sizeof(*k), cmp_keyed);
    json_t *sorted = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(sorted, json_array_get(L.rows, k[i].seq));
    free(k);
    free(L.ats);
    listing_same_free(&L);
    json_decref(L.rows);
    j->rep = json_pack("{sbsIsoso}", "ok", 1, "count", (json_int_t)L.count, "rows", sorted,
                       "truncated", json_boolean(L.count > L.limit));
    store_close(st);
}

static void
cmd_forecast(struct conn *c, json_t *req)
{
    ntime_t from, to;
    const char *rule = arg_str(req, "rule");
    if (arg_time(c, req, "from", &from, true) < 0 || arg_time(c, req, "to", &to, true) < 0)
        return;
    if (to <= from) {
        reply_err(c, "--to must be later than --from");
        return;
    }
    if (to - from > 3660 * 86400) {
        reply_err(c, "forecast windows are limited to ten years");
        return;
    }
    if (rule && !ruleset_find(c->d->rs, rule)) {
        reply_err(c, "no rule named '%s' (see nudgectl rules)", rule);
        return;
    }
    job_start(c, req, forecast_job);
}

static void
preview_job(struct job *j)
{
    struct daemon *d = j->d;
    const struct rule *r = ruleset_find(j->rs, arg_str(j->req, "rule"));
    ntime_t at = daemon_now(d);
    struct store *st = NULL;
    struct nerr err;
    struct listing L;
    struct eval_stats stats = {0, 0, 0};
    json_int_t limit = json_integer_value(json_object_get(j->req, "limit"));
    if (arg_str(j->req, "at"))
        time_parse_iso(arg_str(j->req, "at"), &at);
    nerr_clear(&err);
    if (!r) {
        j->rep = job_error("no rule named '%s' (see nudgectl rules)", arg_str(j->req, "rule"));
        return;
    }
    if (store_open(d->cfg->database, &st, &err) < 0) {
        j->rep = job_error("cannot open the database: %s", err.msg);
        return;
    }
    memset(&L, 0, sizeof(L));
    L.rows = json_array();
    L.limit = limit > 0 ? (long)limit : 5;
    L.render = true;
    L.renv = (struct render_env){st, d->cfg, j->rs, d->secret, at};
    struct evaluator ev = {st, d->cfg, {d->hs, d->cfg->feb29_mar1}, NULL, false};
    /* The next occurrence after `at`: look a day at a time, then take the
     * whole day after the first fire so every zone's share is counted. */
    ntime_t from = at;
    if (r->trigger.kind == TRIG_ENTERED && r->trigger.condition->stepwise)
        /* One pass finds each customer's entry day (evaluator.c) however
         * far ahead it is; day by day would run the condition 800 times. */
        evaluate_window(&ev, r, from, from + 800 * 86400, at, list_row, &L, &stats);
    else
        for (int day = 0; day < 800 && L.count == 0; day++, from += 86400)
            evaluate_window(&ev, r, from, from + 86400, at, list_row, &L, &stats);
    if (L.count) {
        /* Recount over [first fire, +24h) so the total covers all zones. */
        json_decref(L.rows);
        L.rows = json_array();
        L.count = 0;
        L.nats = 0;
        ntime_t first = L.first_at;
        evaluate_window(&ev, r, first - 1, first + 86400, at, list_row, &L, &stats);
    }
    j->rep = json_pack("{sbsssIso}", "ok", 1, "rule", r->name, "count", (json_int_t)L.count,
                       "recipients", L.rows);
    if (L.first_at)
        json_object_set_new(j->rep, "first_fire", jtime(L.first_at));
    free(L.ats);
    listing_same_free(&L);
    store_close(st);
}

static void
cmd_preview(struct conn *c, json_t *req)
{
    ntime_t at;
    const char *rule = arg_str(req, "rule");
    if (!rule) {
        reply_err(c, "preview needs a rule name");
        return;
    }
    if (!ruleset_find(c->d->rs, rule)) {
        const char *names[256];
        size_t n = 0;
        for (size_t i = 0; i < c->d->rs->n && n < 255; i++)
            names[n++] = c->d->rs->rules[i]->name;
        names[n] = NULL;
        const char *g = did_you_mean(rule, names);
        reply_err(c, "no rule named '%s'%s%s%s (see nudgectl rules)", rule,
                  g ? "; did you mean '" : "", g ? g : "", g ? "'?" : "");
        return;
    }
    if (arg_time(c, req, "at", &at, false) < 0)
        return;
    job_start(c, req, preview_job);
}

/* The zone of staff member `name` (channels.task.staff: { name, tz }), else
 * the default zone. */
static const char *
staff_zone(const struct config *cfg, const char *name)
{
    const char *key;
    json_t *ch, *v;
    size_t i;
    json_object_foreach(cfg->channels, key, ch)
    {
        json_array_foreach(json_object_get(ch, "staff"), i, v)
        {
            const char *n = json_string_value(json_object_get(v, "name"));
            const char *tz = json_string_value(json_object_get(v, "tz"));
            if (name && n && tz && !strcmp(n, name))
                return tz;
        }
    }
    return cfg->timezone;
}

static void
cmd_tasks(struct conn *c, json_t *req)
{
    struct store_task_filter f = {
        .assignee = arg_str(req, "owner"),
        .all = json_is_true(json_object_get(req, "all")),
        .overdue = json_is_true(json_object_get(req, "overdue")),
        .now = daemon_now(c->d),
        .limit = 1000,
    };
    struct store_task *tasks;
    size_t n;
    json_t *a;
    if (store_task_list(c->d->st, &f, &tasks, &n) < 0) {
        reply_err(c, "tasks: database error");
        return;
    }
    a = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct store_task *t = &tasks[i];
        /* Due as the assignee reads a clock: in their zone. */
        const char *tz = staff_zone(c->d->cfg, t->assignee);
        json_t *o = json_object();
        json_object_set_new(o, "id", json_integer(t->id));
        json_object_set_new(o, "kind", json_string(t->kind));
        json_object_set_new(o, "assignee", t->assignee ? json_string(t->assignee) : json_null());
        json_object_set_new(o, "note", json_string(t->note));
        json_object_set_new(o, "due_at", jtime(t->due_at));
        json_object_set_new(o, "due_local", jlocal(tz, t->due_at));
        json_object_set_new(o, "due_tz", json_string(tz));
        json_object_set_new(o, "created_at", jtime(t->created_at));
        if (t->done) {
            json_object_set_new(o, "done_at", jtime(t->done_at));
            json_object_set_new(o, "outcome", json_string(t->outcome));
        }
        json_object_set_new(o, "rule", json_string(t->rule));
        json_object_set_new(o, "customer", json_string(t->customer));
        json_object_set_new(o, "customer_name",
                            t->customer_name ? json_string(t->customer_name) : json_null());
        json_object_set_new(o, "phone",
                            t->customer_phone ? json_string(t->customer_phone) : json_null());
        /* channels.task.notify: when the assignee was told, and what failed. */
        if (t->notified_email)
            json_object_set_new(o, "notified_email_at", jtime(t->notified_email_at));
        if (t->notified_webhook)
            json_object_set_new(o, "notified_webhook_at", jtime(t->notified_webhook_at));
        if (t->notify_error)
            json_object_set_new(o, "notify_error", json_string(t->notify_error));
        json_array_append_new(a, o);
    }
    store_tasks_free(tasks, n);
    reply_ok(c, json_pack("{so}", "tasks", a));
}

static void
cmd_task_done(struct conn *c, json_t *req)
{
    json_t *id = json_object_get(req, "id");
    const char *outcome = arg_str(req, "outcome");
    int rc;
    if (!json_is_integer(id)) {
        reply_err(c, "task done needs the task id (see nudgectl tasks)");
        return;
    }
    rc = store_task_done(c->d->st, json_integer_value(id), daemon_now(c->d),
                         outcome ? outcome : "done");
    if (rc == -ENOENT) {
        reply_err(c, "task %lld does not exist or is already done",
                  (long long)json_integer_value(id));
        return;
    }
    if (rc < 0) {
        reply_err(c, "task done: database error");
        return;
    }
    reply_ok(c, json_pack("{sI}", "id", (json_int_t)json_integer_value(id)));
}

static void cmd_help(struct conn *c, json_t *req);

static const struct admin_cmd commands[] = {
    {"status", "", "uptime, clock, rule set version, queue depths, last tick", cmd_status, false},
    {"reload", "", "load the rules again; on any error keep the running set", cmd_reload, false},
    {"rules", "", "loaded rules with their next fire time", cmd_rules, false},
    {"advance", "to", "frozen clock: fire everything due up to TO, dispatch, wait until settled",
     cmd_advance, true},
    {"queue", "[state] [limit]", "deliveries by state", cmd_queue, false},
    {"retry", "id | dead", "make a dead delivery (or all) due again", cmd_retry, false},
    {"import", "kind name data", "upsert customers or orders from CSV text", cmd_import, false},
    {"forecast", "from to [rule] [limit]", "every fire in a window, without sending",
     cmd_forecast, false},
    {"preview", "rule [at] [limit]", "who would receive what at the next fire, rendered",
     cmd_preview, false},
    {"tasks", "[owner] [overdue] [all]", "open callback tasks", cmd_tasks, false},
    {"task-done", "id [outcome]", "close a task and record its outcome", cmd_task_done, false},
    {"help", "", "this list", cmd_help, false},
};

static void
cmd_help(struct conn *c, json_t *req)
{
    json_t *a = json_array();
    (void)req;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        json_array_append_new(a, json_pack("{ssssss}", "name", commands[i].name, "args",
                                           commands[i].usage, "help", commands[i].help));
    reply_ok(c, json_pack("{so}", "commands", a));
}

static void
handle_line(struct conn *c, const char *line, size_t len)
{
    json_error_t je;
    json_t *req = json_loadb(line, len, 0, &je);
    const char *name;
    if (!req || !json_is_object(req)) {
        reply_err(c, "bad request at column %d: %s; send one JSON object per line, e.g. "
                     "{\"cmd\":\"status\"}",
                  req ? 1 : je.column, req ? "not an object" : je.text);
        json_decref(req);
        return;
    }
    name = arg_str(req, "cmd");
    {
        /* Arguments of the wrong type are errors, never silently ignored. */
        static const char *const strings[] = {"to",   "from", "at",      "rule", "state",
                                              "owner", "kind", "name", "data", "outcome", NULL};
        static const char *const ints[] = {"limit", "id", "size", NULL};
        static const char *const bools[] = {"dead", "overdue", "all", NULL};
        const char *k;
        json_t *v;
        json_object_foreach(req, k, v)
        {
            const char *want = NULL;
            for (int i = 0; strings[i]; i++)
                if (!strcmp(k, strings[i]) && !json_is_string(v))
                    want = "a string";
            for (int i = 0; ints[i]; i++)
                if (!strcmp(k, ints[i]) && !json_is_integer(v))
                    want = "an integer";
            for (int i = 0; bools[i]; i++)
                if (!strcmp(k, bools[i]) && !json_is_boolean(v))
                    want = "true or false";
            if (!strcmp(k, "cmd") && !json_is_string(v))
                want = "a string";
            if (want) {
                reply_err(c, "argument '%s' must be %s", k, want);
                json_decref(req);
                return;
            }
        }
    }
    if (!name) {
        reply_err(c, "the request has no \"cmd\"; try {\"cmd\":\"help\"}");
        json_decref(req);
        return;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(commands[i].name, name))
            continue;
        if (commands[i].needs_frozen && !clock_is_frozen(&c->d->clock))
            reply_err(c, "%s works only on a frozen clock: start nudged with --now TIME --frozen",
                      name);
        else
            commands[i].fn(c, req);
        json_decref(req);
        return;
    }
    {
        const char *names[32];
        size_t n = 0;
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
            names[n++] = commands[i].name;
        names[n] = NULL;
        const char *g = did_you_mean(name, names);
        reply_err(c, "unknown command '%s'%s%s%s", name, g ? "; did you mean '" : "",
                  g ? g : "", g ? "'?" : "");
    }
    json_decref(req);
}

/* ---- connections --------------------------------------------------------------- */

static void
on_conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    conn_unref(c);
}

static void
conn_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    sbuf_free(&c->in);
    free(c);
}

static void
conn_close(struct conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = xmalloc(suggested);
    buf->len = suggested;
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    size_t off = 0;
    if (n < 0) {
        free(buf->base);
        if (c->body) {
            /* The client went away in the middle of a file: roll it back. */
            ijob_abort(c->body);
            c->body = NULL;
        }
        conn_close(c);
        return;
    }
    sbuf_add(&c->in, buf->base, (size_t)n);
    free(buf->base);
    while (off < c->in.len && !c->closed) {
        char *nl;
        if (c->body) {
            struct ijob *j = c->body;
            size_t take = c->in.len - off, left = j->total - j->received;
            if (take > left)
                take = left;
            if (take == left)
                c->body = NULL;
            ijob_push(j, c->in.s + off, take, take == left);
            off += take;
            continue;
        }
        /* Only bytes not searched before: a long line arriving in many
         * reads is scanned once, not once per read. */
        nl = memchr(c->in.s + off + c->scanned, '\n', c->in.len - off - c->scanned);
        if (!nl) {
            c->scanned = c->in.len - off;
            break;
        }
        c->scanned = 0;
        handle_line(c, c->in.s + off, (size_t)(nl - (c->in.s + off)));
        off = (size_t)(nl - c->in.s) + 1;
    }
    if (off) {
        memmove(c->in.s, c->in.s + off, c->in.len - off);
        c->in.len -= off;
        c->in.s[c->in.len] = '\0';
    }
    if (c->in.len > ADMIN_MAX_REQUEST && !c->closed) {
        reply_err(c, "request larger than %u bytes (send files as a streamed import body)",
                  ADMIN_MAX_REQUEST);
        conn_close(c);
    }
}

static void
on_connection(uv_stream_t *server, int status)
{
    struct daemon *d = server->data;
    struct conn *c;
    if (status < 0)
        return;
    c = xcalloc(1, sizeof(*c));
    c->d = d;
    c->refs = 1;
    sbuf_init(&c->in);
    uv_pipe_init(d->loop, &c->pipe, 0);
    c->pipe.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
        uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) < 0)
        conn_close(c);
}

/*
 * Is something listening on the socket at path? 1 yes, 0 no (nothing there,
 * or a socket file left by a daemon that died), negative errno when that
 * cannot be told (e.g. a path that is not a socket).
 */
static int
socket_live(const char *path)
{
    struct sockaddr_un a;
    struct stat sb;
    int fd, r;
    if (lstat(path, &sb) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(sb.st_mode))
        return -EEXIST;
    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path, strlen(path) + 1);
    r = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 ? 1
        : errno == ECONNREFUSED                             ? 0
                                                            : -errno;
    close(fd);
    return r;
}

int
admin_listen(struct daemon *d, struct nerr *err)
{
    const char *path = d->cfg->admin_socket;
    int r;
    /* Connect first: a live daemon answers, and its socket is not ours to
     * take (unlinking it would leave that daemon unreachable). Only a socket
     * nobody listens on is stale and replaced. */
    r = socket_live(path);
    if (r == 1) {
        nerr_set(err, d->cfg->file, 0, 0,
                 "admin socket %s is in use: another nudged is listening on it", path);
        nerr_hint(err, "stop that daemon first (nudgectl -s %s status shows it), or give this "
                       "one another admin_socket in nudge.yaml",
                  path);
        return -EADDRINUSE;
    }
    if (r < 0) {
        nerr_set(err, d->cfg->file, 0, 0, "cannot use admin socket %s: %s", path,
                 r == -EEXIST ? "a file that is not a socket is in the way" : strerror(-r));
        nerr_hint(err, "check admin_socket in nudge.yaml");
        return r;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        r = -errno;
        nerr_set(err, d->cfg->file, 0, 0, "cannot remove the stale admin socket %s: %s", path,
                 strerror(-r));
        nerr_hint(err, "remove it by hand, or check the permissions of its directory");
        return r;
    }
    uv_pipe_init(d->loop, &d->admin, 0);
    d->admin.data = d;
    if ((r = uv_pipe_bind(&d->admin, path)) < 0) {
        nerr_set(err, d->cfg->file, 0, 0, "cannot create admin socket %s: %s", path,
                 uv_strerror(r));
        nerr_hint(err, "check admin_socket in nudge.yaml and that its directory exists");
        uv_close((uv_handle_t *)&d->admin, NULL);
        return r;
    }
    /* Group access is how staff tools reach the daemon: a socket left at
     * the umask's mode would lock them out (or let everyone in). */
    if (chmod(path, 0660) < 0) {
        r = -errno;
        nerr_set(err, d->cfg->file, 0, 0, "cannot set the mode of admin socket %s to 0660: %s",
                 path, strerror(-r));
        nerr_hint(err, "check the ownership of the socket's directory");
        uv_close((uv_handle_t *)&d->admin, NULL);
        unlink(path);
        return r;
    }
    if ((r = uv_listen((uv_stream_t *)&d->admin, 64, on_connection)) < 0) {
        nerr_set(err, d->cfg->file, 0, 0, "cannot listen on %s: %s", path, uv_strerror(r));
        uv_close((uv_handle_t *)&d->admin, NULL);
        unlink(path);
        return r;
    }
    d->admin_open = true;
    return 0;
}

void
admin_close(struct daemon *d)
{
    /* Imports still waiting for their file end now, rolled back. */
    for (struct ijob *j = active_imports; j; j = j->next_active)
        ijob_abort(j);
    if (!d->admin_open)
        return;
    d->admin_open = false;
    uv_close((uv_handle_t *)&d->admin, NULL);
    unlink(d->cfg->admin_socket);
}
