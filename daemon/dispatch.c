/*
 * dispatch.c: works through the outbox. Each channel has `concurrency`
 * slots; a slot is one backend session plus its own database connection,
 * and runs one batch at a time on libuv's thread pool: claim due rows (with
 * a lease), render them, hand them to the backend in one send() call, record
 * every result. A slot whose batch was full goes again at once.
 *
 * What a failure does follows its blame (struct send_result):
 *   recipient  the delivery is dead and the address goes on the suppression
 *              list when the channel registry says the channel suppresses
 *              (channel_info.suppresses);
 *   sender     the delivery is retried with backoff like a transient one,
 *              nobody is suppressed, and the channel pauses: no claims for
 *              1 min, doubling with each pause in a row up to 1 h, then one
 *              probe message; a probe without a sender fault resumes the
 *              channel. `nudgectl reload` (or SIGHUP) and `nudgectl retry`
 *              resume every paused channel at once and make its retrying
 *              deliveries due. The pause is logged as an error, shown by
 *              `nudgectl status` and exported as nudge_channel_paused;
 *   nobody     transient: retried with backoff; permanent: dead, nothing else.
 *
 * Results are durable one message at a time where the backend can say when
 * a message is settled (send_result_report in <nudge/channel.h>: smtp,
 * spool, task), before the backend goes on to the next message of the
 * session, so a crash repeats at most the message in flight on each
 * session: an accepted message is a line in the slot's sent journal
 * (outbox.h; replayed at start), a failure is committed in a small
 * transaction of its own. Rows are updated together after send() returns,
 * in one transaction with the rows rendering did not send and the results
 * a backend did not report (the HTTP backends); the journal is emptied
 * then. Every update names the batch's claim (this instance's id and a
 * token per batch): see outbox.h.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channel_registry.h"
#include "daemon.h"
#include "log.h"
#include "outbox.h"
#include "policy.h"
#include "render.h"
#include "store_consent.h"
#include "store_timeline.h"
#include "ynode.h"

/* "channel rule (occurrence)", the timeline detail of a sent message. */
static void
add_timeline_sent(struct store *st, int64_t customer_id, ntime_t at, const struct nudge_message *m)
{
    char *detail = xasprintf("%s %s (%s)", m->channel, m->rule, m->occurrence);
    store_timeline_add(st, customer_id, at, "sent", detail);
    free(detail);
}

/* What rendering decided for one claimed row that is not sent, applied
 * with the batch's results. */
struct held {
    enum render_status rs; /* RENDER_OK: sent (see res); others: finish/defer */
    bool release;          /* stopping: give the row back untouched */
    char *why;             /* the reason for skip/suppress/fail/defer (else NULL) */
};

/* Frequency caps for the batch's rendered messages (policy.h: one write
 * transaction, so parallel slots cannot both take a customer's last slot).
 * Messages over a cap leave the batch, held or dropped as policy says;
 * returns how many remain in msgs/idx. */
static size_t
admit_caps(const struct render_env *env, const struct delivery *ds, struct rendered *rd,
           struct nudge_message *msgs, size_t *idx, struct held *held, size_t nmsg)
{
    struct policy_msg *pm;
    size_t k = 0;
    if (!nmsg)
        return 0;
    pm = xcalloc(nmsg, sizeof(*pm));
    for (size_t j = 0; j < nmsg; j++) {
        const struct delivery *dl = &ds[idx[j]];
        pm[j].delivery_id = dl->id;
        pm[j].customer_id = dl->customer_id;
        pm[j].rule = dl->rule;
        pm[j].channel = msgs[j].channel;
        pm[j].marketing = msgs[j].marketing;
        pm[j].tz = json_string_value(json_object_get(rd[idx[j]].ctx, "tz"));
        pm[j].due_at = dl->due_at;
    }
    policy_admit(env->st, env->cfg, env->rs, env->now, pm, nmsg);
    for (size_t j = 0; j < nmsg; j++) {
        if (pm[j].verdict == POLICY_SEND) {
            msgs[k] = msgs[j];
            idx[k++] = idx[j];
            continue;
        }
        held[idx[j]].rs = pm[j].verdict == POLICY_DROP ? RENDER_SUPPRESS : RENDER_DEFER;
        held[idx[j]].why = xstrdup(pm[j].why);
        rd[idx[j]].defer_until = pm[j].until;
    }
    free(pm);
    return k;
}

/* One send() call as the per-message reporter sees it. */
struct batch {
    struct send_reporter rep; /* first: a backend's reporter is this */
    struct slot *s;
    struct delivery *ds;                /* the claimed rows */
    const struct nudge_message *msgs;   /* the messages sent, msgs[k] is ds[idx[k]] */
    const size_t *idx;
    bool *recorded;                     /* msgs[k]'s result is committed already */
};

/* Writes one sent message's result inside the caller's transaction: the
 * row's new state, and its timeline entry or the failure's consequences.
 * Returns 0, or a negative errno when the write failed. */
static int
record_result(struct slot *s, const struct delivery *dl, const struct nudge_message *m,
              const struct send_result *r)
{
    struct chan *c = s->chan;
    const struct channel_info *ci = channel_info_find(c->name);
    if (outbox_record(s->st, dl, r, s->now, c->lifetime, c->max_attempts) < 0)
        return -EIO;
    if (r->status == SEND_OK) {
        add_timeline_sent(s->st, dl->customer_id, s->now, m);
        return 0;
    }
    log_info("dispatch", "delivery %lld (%s, %s): %s (%s's fault): %s", (long long)dl->id,
             dl->rule, c->name, r->status == SEND_PERMANENT ? "permanent failure" : "will retry",
             send_blame_name(r->blame), r->error);
    /* Only a recipient fault keeps later sends away from the address; a
     * sender fault pauses the channel instead (job_after). */
    if (r->blame == BLAME_RECIPIENT && r->status == SEND_PERMANENT && m->to && m->to[0] && ci &&
        ci->suppresses)
        store_suppress(s->st, c->name, m->to, r->error, s->now);
    return 0;
}

/* The reporter (worker thread, inside the backend's send()): message k's
 * outcome is known and is made durable now, before the backend sends the
 * next one. An accepted message is one line in the slot's sent journal
 * (outbox.h); its row is updated with the rest of the batch after send().
 * A failure is committed at once in a small transaction of its own (its
 * consequences, suppression included, are in the database then). A write
 * that fails is rolled back and left to the batch's transaction. */
static void
on_report(struct send_reporter *rep, size_t k, const struct send_result *r)
{
    struct batch *b = (struct batch *)rep;
    struct slot *s = b->s;
    bool ok;
    if (b->recorded[k])
        return;
    if (r->status == SEND_OK && s->journal &&
        outbox_journal_add(s->journal, &b->ds[b->idx[k]], s->now) == 0)
        return;
    uv_mutex_lock(&s->chan->d->write_mu);
    ok = store_begin(s->st) == 0;
    if (ok && (record_result(s, &b->ds[b->idx[k]], &b->msgs[k], r) < 0 ||
               store_commit(s->st) < 0)) {
        store_rollback(s->st);
        ok = false;
    }
    uv_mutex_unlock(&s->chan->d->write_mu);
    if (!ok)
        return;
    b->recorded[k] = true;
    if (r->status == SEND_OK)
        s->sent++;
    else
        s->failed++;
}

/* Worker thread: one batch. */
static void
job_work(uv_work_t *w)
{
    struct slot *s = w->data;
    struct chan *c = s->chan;
    struct daemon *d = c->d;
    size_t max = (size_t)c->batch;
    struct delivery *ds = NULL;
    struct rendered *rd = NULL;
    struct nudge_message *msgs = NULL;
    struct send_result *res = NULL;
    struct held *held = NULL;
    size_t *idx = NULL, nmsg = 0, nsent = 0, n = 0;
    int64_t *sent_ids = NULL;
    bool *recorded = NULL;
    char why[512];
    struct render_env env = {s->st, d->cfg, s->rs, d->secret, s->now};
    /* This batch's claim: every update of its rows names it. */
    struct claim who = {d->instance, outbox_claim_token()};
    struct batch b;
    bool reading;

    s->claimed = 0;
    s->sent = s->failed = s->other = 0;
    s->sender_fault = s->settled_clean = false;
    s->sender_why[0] = '\0';
    if (c->be->batch_max && c->be->batch_max < max)
        max = c->be->batch_max;
    /* A paused channel whose pause ran out sends one probe message. */
    if (s->probe)
        max = 1;
    uv_mutex_lock(&d->write_mu);
    if (outbox_claim(s->st, c->name, s->now, d->cfg->dispatch.lease, max, &who, &ds, &n) < 0)
        n = 0;
    uv_mutex_unlock(&d->write_mu);
    if (!n)
        goto out;
    s->claimed = n;
    rd = xcalloc(n, sizeof(*rd));
    msgs = xcalloc(n, sizeof(*msgs));
    res = xcalloc(n, sizeof(*res));
    idx = xcalloc(n, sizeof(*idx));
    held = xcalloc(n, sizeof(*held));
    recorded = xcalloc(n, sizeof(*recorded));

    /* The batch renders from one read transaction: one snapshot and one
     * shared lock for its few queries per message instead of a lock taken
     * and dropped around each of them. Rendering only reads; what it decides
     * is written with the results below. */
    reading = store_begin_read(s->st) == 0;
    for (size_t i = 0; i < n; i++) {
        if (atomic_load(&d->stopping)) {
            held[i].release = true;
            continue;
        }
        held[i].rs = render_delivery(&env, &ds[i], c->be->needs_payload, &rd[i], why, sizeof(why));
        if (held[i].rs != RENDER_OK) {
            held[i].why = xstrdup(why);
        } else {
            rd[i].msg.date = s->now;
            msgs[nmsg] = rd[i].msg;
            idx[nmsg++] = i;
        }
    }
    if (reading)
        store_commit(s->st);
    uv_mutex_lock(&d->write_mu);
    nmsg = admit_caps(&env, ds, rd, msgs, idx, held, nmsg);
    uv_mutex_unlock(&d->write_mu);
    if (nmsg && atomic_load(&d->stopping)) {
        for (size_t k = 0; k < nmsg; k++)
            held[idx[k]].release = true;
        nmsg = 0;
    }
    if (nmsg) {
        b = (struct batch){{on_report, res, nmsg}, s, ds, msgs, idx, recorded};
        for (size_t k = 0; k < nmsg; k++)
            res[k].reporter = &b.rep;
        c->be->send(s->state, msgs, nmsg, res);
    }

    /* One transaction for the rest: rows not sent, and results the backend
     * did not report (one fsync, not one per row). */
    uv_mutex_lock(&d->write_mu);
    store_begin(s->st);
    for (size_t i = 0; i < n; i++) {
        if (held[i].release) {
            outbox_release(s->st, &ds[i]);
            continue;
        }
        switch (held[i].rs) {
        case RENDER_OK:
            break;
        case RENDER_SKIP:
            outbox_finish(s->st, &ds[i], "skipped", held[i].why, s->now);
            s->other++;
            break;
        case RENDER_SUPPRESS:
            outbox_finish(s->st, &ds[i], "suppressed", held[i].why, s->now);
            s->other++;
            break;
        case RENDER_FAIL:
            outbox_finish(s->st, &ds[i], "dead", held[i].why, s->now);
            s->failed++;
            break;
        case RENDER_DEFER:
            outbox_defer(s->st, &ds[i], rd[i].defer_until, held[i].why);
            s->other++;
            break;
        }
    }
    /* Unreported sent rows in one UPDATE (their timeline rows each in
     * order); the others one by one, as each has its own next state and
     * error. */
    if (nmsg)
        sent_ids = xmalloc(nmsg * sizeof(*sent_ids));
    for (size_t k = 0; k < nmsg; k++) {
        struct delivery *dl = &ds[idx[k]];
        const struct nudge_message *m = &msgs[k];
        if (res[k].status != SEND_OK && res[k].blame == BLAME_SENDER) {
            if (!s->sender_fault)
                snprintf(s->sender_why, sizeof(s->sender_why), "%s", res[k].error);
            s->sender_fault = true;
        }
        if (recorded[k])
            continue;
        if (res[k].status == SEND_OK) {
            sent_ids[nsent++] = dl->id;
            add_timeline_sent(s->st, dl->customer_id, s->now, m);
            s->sent++;
        } else {
            record_result(s, dl, m, &res[k]);
            s->failed++;
        }
    }
    s->settled_clean = nmsg > 0 && !s->sender_fault;
    outbox_record_sent(s->st, &who, sent_ids, nsent, s->now);
    /* The journal's lines are in the database now. */
    if (store_commit(s->st) == 0 && s->journal)
        outbox_journal_clear(s->journal);
    uv_mutex_unlock(&d->write_mu);
out:
    for (size_t i = 0; i < n; i++) {
        if (rd)
            rendered_free(&rd[i]);
        if (held)
            free(held[i].why);
        delivery_clear(&ds[i]);
    }
    free(sent_ids);
    free(recorded);
    free(ds);
    free(rd);
    free(msgs);
    free(res);
    free(idx);
    free(held);
}

static void job_start(struct slot *s);

/* True while a paused channel must not claim (its pause has not run out). */
static bool
chan_paused(struct chan *c, ntime_t now)
{
    return c->pause.level > 0 && now < c->pause.until;
}

static void
chan_pause(struct chan *c, ntime_t now, const char *why)
{
    char until[32];
    int64_t delay = 60;
    pthread_mutex_lock(&c->pause.mu);
    snprintf(c->pause.reason, sizeof(c->pause.reason), "%s", why);
    /* Slots already sending when the pause began report the same fault:
     * one pause, not one more doubling per slot. */
    if (chan_paused(c, now)) {
        pthread_mutex_unlock(&c->pause.mu);
        return;
    }
    for (int i = 0; i < c->pause.level && delay < 3600; i++)
        delay *= 2;
    if (delay > 3600)
        delay = 3600;
    if (!c->pause.level)
        c->pause.since = now;
    c->pause.level++;
    c->pause.until = now + delay;
    pthread_mutex_unlock(&c->pause.mu);
    time_format_iso(c->pause.until, until, sizeof(until));
    log_err("dispatch",
            "channel %s paused until %s by a sender or configuration fault: %s. Nobody was "
            "suppressed; its deliveries wait and are retried. Fix the channel's settings (or "
            "the server's), then `nudgectl reload` to resume at once",
            c->name, until, why);
}

static void
chan_resume(struct chan *c, const char *why)
{
    pthread_mutex_lock(&c->pause.mu);
    c->pause.level = 0;
    c->pause.since = c->pause.until = 0;
    c->pause.reason[0] = '\0';
    pthread_mutex_unlock(&c->pause.mu);
    log_notice("dispatch", "channel %s resumed: %s", c->name, why);
}

void
dispatch_resume(struct daemon *d, const char *why)
{
    ntime_t now = daemon_now(d);
    for (int i = 0; i < d->nchans; i++) {
        struct chan *c = &d->chans[i];
        if (!c->pause.level)
            continue;
        chan_resume(c, why);
        /* The deliveries the fault held back go now, not at the end of
         * their backoff. */
        outbox_retry_channel(d->st, c->name, now);
    }
}

json_t *
dispatch_channels_json(struct daemon *d)
{
    json_t *o = json_object();
    for (int i = 0; i < d->nchans; i++) {
        struct chan *c = &d->chans[i];
        json_t *e = json_object();
        char t[32];
        json_object_set_new(e, "transport", json_string(c->be->name));
        pthread_mutex_lock(&c->pause.mu);
        json_object_set_new(e, "paused", json_boolean(c->pause.level > 0));
        if (c->pause.level) {
            json_object_set_new(e, "reason", json_string(c->pause.reason));
            time_format_iso(c->pause.since, t, sizeof(t));
            json_object_set_new(e, "since", json_string(t));
            time_format_iso(c->pause.until, t, sizeof(t));
            json_object_set_new(e, "until", json_string(t));
            json_object_set_new(e, "pauses", json_integer(c->pause.level));
        }
        pthread_mutex_unlock(&c->pause.mu);
        json_object_set_new(o, c->name, e);
    }
    return o;
}

void
dispatch_stats(struct daemon *d, struct dispatch_stats *out)
{
    out->sent = atomic_load(&d->sent_total);
    out->failed = atomic_load(&d->failed_total);
    out->batches = d->jobs;
}

void
dispatch_metrics(struct daemon *d, struct sbuf *out)
{
    sbuf_printf(out, "# HELP nudge_sent_total Messages sent since start.\n"
                     "# TYPE nudge_sent_total counter\nnudge_sent_total %ld\n"
                     "# HELP nudge_failed_total Failed attempts since start.\n"
                     "# TYPE nudge_failed_total counter\nnudge_failed_total %ld\n",
                atomic_load(&d->sent_total), atomic_load(&d->failed_total));
    sbuf_adds(out, "# HELP nudge_channel_paused 1 while a sender or configuration fault keeps"
                   " the channel paused (reason: nudgectl status).\n"
                   "# TYPE nudge_channel_paused gauge\n");
    for (int i = 0; i < d->nchans; i++) {
        struct chan *c = &d->chans[i];
        int paused;
        pthread_mutex_lock(&c->pause.mu);
        paused = c->pause.level > 0;
        pthread_mutex_unlock(&c->pause.mu);
        sbuf_printf(out, "nudge_channel_paused{channel=\"%s\"} %d\n", c->name, paused);
    }
}

static void
check_settled(struct daemon *d)
{
    struct waiter *w;
    if (d->jobs || d->eval_busy)
        return;
    w = d->waiters;
    d->waiters = NULL;
    while (w) {
        struct waiter *next = w->next;
        w->done(d, w->ud);
        free(w);
        w = next;
    }
}

static void
job_after(uv_work_t *w, int status)
{
    struct slot *s = w->data;
    struct daemon *d = s->chan->d;
    (void)status;
    s->busy = false;
    d->jobs--;
    atomic_fetch_add(&d->sent_total, s->sent);
    atomic_fetch_add(&d->failed_total, s->failed);
    ruleset_unref(s->rs);
    s->rs = NULL;
    s->probe = false;
    if (s->sender_fault)
        chan_pause(s->chan, s->now, s->sender_why);
    else if (s->settled_clean && s->chan->pause.level)
        chan_resume(s->chan, "a message went through without a sender fault");
    if (s->claimed && !atomic_load(&d->stopping) && !chan_paused(s->chan, daemon_now(d))) {
        job_start(s);
        return;
    }
    if (d->jobs == 0 && !d->reload_busy && atomic_load(&d->stopping))
        uv_stop(d->loop);
    if (d->jobs == 0)
        malloc_trim(0); /* the outbox is idle: hand freed memory back */
    check_settled(d);
}

static void
job_start(struct slot *s)
{
    struct daemon *d = s->chan->d;
    struct chan *c = s->chan;
    ntime_t now = daemon_now(d);
    if (s->busy || atomic_load(&d->stopping) || !d->rs)
        return;
    /* No new claims while an evaluation cycle runs: the evaluator commits
     * rule by rule, and a batch claimed between two of those commits would
     * admit a low-priority message under a frequency cap before the
     * higher-priority one of the same cycle exists. The cycle's end kicks
     * the dispatcher (batches already running go on). */
    if (d->eval_busy)
        return;
    if (c->pause.level) {
        /* Paused: nothing until the pause runs out, then one slot sends one
         * probe message. */
        if (chan_paused(c, now) || s != &c->slots[0])
            return;
        s->probe = true;
    }
    s->busy = true;
    s->now = now;
    s->rs = ruleset_ref(d->rs);
    s->work.data = s;
    d->jobs++;
    uv_queue_work(d->loop, &s->work, job_work, job_after);
}

void
dispatch_kick(struct daemon *d)
{
    for (int i = 0; i < d->nchans; i++)
        for (int k = 0; k < d->chans[i].nslots; k++)
            job_start(&d->chans[i].slots[k]);
    check_settled(d);
}

/* batch, concurrency, lifetime and max_attempts in a channel's mapping
 * override the dispatch defaults for that channel. */
static int
take_channel_limits(struct daemon *d, struct chan *c, struct nerr *err)
{
    int line = (int)json_integer_value(json_object_get(c->settings, "_line"));
    json_t *v;
    if ((v = json_object_get(c->settings, "concurrency"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 256) {
            nerr_set(err, d->cfg->file, line, 0, "channels.%s.concurrency must be 1 to 256",
                     c->name);
            return -EINVAL;
        }
        c->nslots = (int)json_integer_value(v);
        json_object_del(c->settings, "concurrency");
    }
    if ((v = json_object_get(c->settings, "batch"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 10000) {
            nerr_set(err, d->cfg->file, line, 0, "channels.%s.batch must be 1 to 10000", c->name);
            return -EINVAL;
        }
        c->batch = (int)json_integer_value(v);
        json_object_del(c->settings, "batch");
    }
    if ((v = json_object_get(c->settings, "lifetime"))) {
        int64_t secs;
        if (json_is_integer(v))
            secs = json_integer_value(v);
        else if (!json_is_string(v) || parse_duration(json_string_value(v), &secs) < 0) {
            nerr_set(err, d->cfg->file, line, 0, "channels.%s.lifetime must be a duration",
                     c->name);
            nerr_hint(err, "e.g. lifetime: 6h (SMS are stale sooner than mail)");
            return -EINVAL;
        }
        c->lifetime = secs;
        json_object_del(c->settings, "lifetime");
    }
    if ((v = json_object_get(c->settings, "max_attempts"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000) {
            nerr_set(err, d->cfg->file, line, 0, "channels.%s.max_attempts must be 1 to 1000",
                     c->name);
            return -EINVAL;
        }
        c->max_attempts = (int)json_integer_value(v);
        json_object_del(c->settings, "max_attempts");
    }
    return 0;
}

/* Sets up channel `name` in c from its mapping in nudge.yaml: the backend,
 * the backend's copy of the settings with the daemon's annotations (and
 * _check for a configuration check: no directory, database or connection is
 * opened), the dispatch limits. */
static int
chan_setup(struct daemon *d, struct chan *c, const char *name, json_t *settings, bool check,
           struct nerr *err)
{
    const char *transport = json_string_value(json_object_get(settings, "transport"));
    const struct channel_backend *be = transport ? channel_backend_find(transport) : NULL;
    const struct channel_info *ci, *mail;
    bool carries = false;
    if (!be) {
        struct sbuf names;
        sbuf_init(&names);
        for (int i = 0; channel_backends[i]; i++)
            sbuf_printf(&names, "%s%s", i ? ", " : "", channel_backends[i]->name);
        nerr_set(err, d->cfg->file, (int)json_integer_value(json_object_get(settings, "_line")), 0,
                 "unknown transport '%s' for channel %s", transport ? transport : "", name);
        nerr_hint(err, "available transports: %s", names.s);
        sbuf_free(&names);
        return -EINVAL;
    }
    for (const char *const *ch = be->channels; *ch; ch++)
        carries |= !strcmp(*ch, name);
    if (!carries) {
        nerr_set(err, d->cfg->file, (int)json_integer_value(json_object_get(settings, "_line")), 0,
                 "the %s transport cannot carry the %s channel", transport, name);
        return -EINVAL;
    }
    c->d = d;
    c->name = xstrdup(name);
    c->be = be;
    c->settings = json_deep_copy(settings);
    json_object_set_new(c->settings, "_spool_dir", json_string(d->cfg->spool_dir));
    if (check)
        json_object_set_new(c->settings, "_check", json_true());
    /* The task transport may notify assignees over the email channel. */
    if ((mail = channel_info_by_address(CHAN_ADDR_EMAIL)) &&
        (ci = channel_info_find(name)) && ci->address == CHAN_ADDR_STAFF &&
        json_object_get(d->cfg->channels, mail->name))
        json_object_set_new(c->settings, "_email",
                            json_deep_copy(json_object_get(d->cfg->channels, mail->name)));
    /* Parallel sessions: nudge.yaml's dispatch.concurrency, else the
     * transport's own default, else the channel's (the registry). */
    c->nslots = (int)d->cfg->dispatch.concurrency;
    if (!d->cfg->dispatch.concurrency_set && be->default_concurrency > 0)
        c->nslots = be->default_concurrency;
    else if (!d->cfg->dispatch.concurrency_set && (ci = channel_info_find(name)))
        c->nslots = ci->default_concurrency;
    c->batch = (int)d->cfg->dispatch.batch;
    c->lifetime = d->cfg->dispatch.lifetime;
    /* Per-channel dispatch settings are the dispatcher's, not the backend's. */
    if (take_channel_limits(d, c, err) < 0)
        return -EINVAL;
    if (be->max_concurrency > 0 && c->nslots > be->max_concurrency)
        c->nslots = be->max_concurrency;
    return 0;
}

int
dispatch_open(struct daemon *d, struct nerr *err)
{
    const char *name;
    json_t *settings;
    int journals = 0;
    if (!d->write_mu_ready) {
        uv_mutex_init(&d->write_mu);
        d->write_mu_ready = true;
    }
    json_object_foreach(d->cfg->channels, name, settings)
    {
        struct chan *c = &d->chans[d->nchans++];
        pthread_mutex_init(&c->pause.mu, NULL);
        if (chan_setup(d, c, name, settings, false, err) < 0)
            return -EINVAL;
        c->slots = xcalloc((size_t)c->nslots, sizeof(*c->slots));
        for (int k = 0; k < c->nslots; k++) {
            struct slot *s = &c->slots[k];
            s->chan = c;
            if (c->be->open(name, c->settings, &s->state, err) < 0)
                return -EINVAL;
            if (store_open(d->cfg->database, &s->st, err) < 0 ||
                outbox_journal_open(s->st, journals++, &s->journal) < 0)
                return -EIO;
            if (c->be->use_store)
                c->be->use_store(s->state, s->st);
        }
    }
    return 0;
}

int
dispatch_check(struct config *cfg, struct nerr *err)
{
    struct daemon d = {.cfg = cfg};
    const char *name;
    json_t *settings;
    json_object_foreach(cfg->channels, name, settings)
    {
        struct chan c = {0};
        void *state = NULL;
        int rc = chan_setup(&d, &c, name, settings, true, err);
        if (rc == 0 && (rc = c.be->open(name, c.settings, &state, err)) == 0)
            c.be->close(state);
        free(c.name);
        json_decref(c.settings);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void
dispatch_close(struct daemon *d)
{
    for (int i = 0; i < d->nchans; i++) {
        struct chan *c = &d->chans[i];
        /* A channel whose set-up failed has no slots yet. */
        for (int k = 0; c->slots && k < c->nslots; k++) {
            if (c->slots[k].state)
                c->be->close(c->slots[k].state);
            outbox_journal_close(c->slots[k].journal);
            store_close(c->slots[k].st);
        }
        free(c->slots);
        free(c->name);
        json_decref(c->settings);
        pthread_mutex_destroy(&c->pause.mu);
    }
    d->nchans = 0;
    if (d->write_mu_ready) {
        uv_mutex_destroy(&d->write_mu);
        d->write_mu_ready = false;
    }
}
