/*
 * engine.c: the engine: the clock as the daemon reads it, an evaluation
 * cycle on a worker thread (rules due up to now, then dispatch), the
 * scheduler tick and the dispatch timer, the systemd watchdog, "when
 * settled" callbacks, and reloads (a new rule set swapped in whole, with
 * each changed audience's enter/leave counts). main.c wires it up; admin.c
 * and http.c call it through daemon.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "calendar.h"
#include "daemon.h"
#include "log.h"
#include "store_eval.h"

ntime_t
daemon_now(const struct daemon *d)
{
    return clock_now(&d->clock);
}

void
engine_stats(const struct daemon *d, struct engine_stats *out)
{
    out->started = d->started;
    out->last_tick = d->last_tick;
    out->cycles = d->cycles;
    out->totals = d->totals;
}

ntime_t
engine_import_clock(void *ud)
{
    return daemon_now(ud);
}

/* ---- evaluation ---------------------------------------------------------- */

static void
eval_work(uv_work_t *w)
{
    struct daemon *d = w->data;
    memset(&d->eval_stats, 0, sizeof(d->eval_stats));
    /* catch_up limits only the first cycle: the time the daemon was down. */
    d->eval_rc = evaluate_due(&(struct evaluator){d->eval_st, d->cfg, {d->hs, d->cfg->feb29_mar1},
                                                  &d->stopping, false},
                              d->eval_rs, d->eval_to, d->cycles ? INT64_MAX : d->cfg->catch_up,
                              &d->eval_stats);
}

static void
eval_after(uv_work_t *w, int status)
{
    struct daemon *d = w->data;
    (void)status;
    d->eval_busy = false;
    ruleset_unref(d->eval_rs);
    d->eval_rs = NULL;
    if (d->eval_rc == 0)
        d->last_tick = d->eval_to;
    d->cycles++;
    d->totals.fires += d->eval_stats.fires;
    d->totals.enqueued += d->eval_stats.enqueued;
    d->totals.skipped_late += d->eval_stats.skipped_late;
    if (d->eval_stats.enqueued)
        log_info("nudged", "%ld fire(s), %ld deliveries enqueued", d->eval_stats.fires,
                 d->eval_stats.enqueued);
    if (atomic_load(&d->stopping)) {
        /* A stop arrived while we evaluated: nothing more to start. */
        if (d->jobs == 0 && !d->reload_busy)
            uv_stop(d->loop);
        return;
    }
    if (d->eval_again) {
        d->eval_again = false;
        daemon_cycle(d);
        return;
    }
    dispatch_kick(d);
}

void
daemon_cycle(struct daemon *d)
{
    if (atomic_load(&d->stopping) || !d->rs)
        return;
    if (d->eval_busy) {
        d->eval_again = true;
        return;
    }
    d->eval_busy = true;
    d->eval_to = daemon_now(d);
    d->eval_rs = ruleset_ref(d->rs);
    d->eval_work.data = d;
    uv_queue_work(d->loop, &d->eval_work, eval_work, eval_after);
}

void
daemon_when_settled(struct daemon *d, void (*done)(struct daemon *, void *), void *ud)
{
    struct waiter *w = xcalloc(1, sizeof(*w));
    w->done = done;
    w->ud = ud;
    w->next = d->waiters;
    d->waiters = w;
    dispatch_kick(d); /* reports at once when already idle */
}

/* The next tick boundary, so fires land on whole minutes. */
static uint64_t
ms_to_next_tick(const struct daemon *d)
{
    int64_t tick_ms = d->cfg->dispatch.tick * 1000, now_ms = clock_now_ms(&d->clock);
    return (uint64_t)(tick_ms - now_ms % tick_ms);
}

static void
on_tick(uv_timer_t *t)
{
    struct daemon *d = t->data;
    daemon_cycle(d);
    uv_timer_start(&d->tick_timer, on_tick, ms_to_next_tick(d), 0);
}

static void
on_dispatch_timer(uv_timer_t *t)
{
    /* Retries come due between ticks. */
    dispatch_kick(t->data);
}

static void
on_watchdog(uv_timer_t *t)
{
    (void)t;
    sd_notify(0, "WATCHDOG=1");
}

/* ---- reload -------------------------------------------------------------- */

/*
 * A reload reads the rules directory and, for each rule whose audience
 * changed, counts over every customer who enters and who leaves: work that
 * takes seconds on a large store. It runs on the thread pool with its own
 * connection; the loop thread only swaps the new rule set in (reload_after)
 * and keeps answering `status` and the watchdog meanwhile. One reload runs
 * at a time: an admin request during one is told so, a SIGHUP during one
 * makes it run again when it ends.
 */
struct reload_job {
    uv_work_t work;
    struct daemon *d;
    ntime_t now;
    struct ruleset *old; /* the rule set running when the reload began (a reference) */
    struct ruleset *nrs; /* the new one, NULL if it has errors */
    char *errors;
    char **attrs;
    json_t *changed; /* [{name, audience: {enter, leave}}] */
    void (*done)(struct daemon *d, json_t *rep, void *ud);
    void *ud;
};

/* How many customers a changed audience lets in and drops (reported by reload). */
static json_t *
audience_delta(struct reload_job *j, struct store *st, const struct rule *old,
               const struct rule *nw)
{
    char today[16];
    struct cal_local l;
    int64_t enter, leave;
    if (!strcmp(old->audience_src ? old->audience_src : "", nw->audience_src ? nw->audience_src : ""))
        return NULL;
    if (!st || cal_utc_to_local(j->d->cfg->timezone, j->now, &l) < 0)
        return NULL;
    snprintf(today, sizeof(today), "%04d-%02d-%02d", l.year, l.month, l.day);
    if (store_eval_audience_delta(st, nw->audience, old->audience, today, &enter, &leave) < 0)
        return NULL;
    return json_pack("{sIsI}", "enter", (json_int_t)enter, "leave", (json_int_t)leave);
}

static json_t *
names_of(const struct ruleset *rs)
{
    json_t *a = json_array();
    for (size_t i = 0; rs && i < rs->n; i++)
        json_array_append_new(a, json_string(rs->rules[i]->name));
    return a;
}

/* Worker thread (or the caller's, at start-up): loads and compares. */
static void
reload_work(uv_work_t *w)
{
    struct reload_job *j = w->data;
    struct daemon *d = j->d;
    struct rules_env env;
    struct store *st = NULL;
    struct nerr err;
    nerr_clear(&err);
    if (store_open(d->cfg->database, &st, &err) < 0) {
        log_warn("nudged", "reload: cannot open %s to count audience changes", d->cfg->database);
        st = NULL;
    }
    if (st)
        store_attribute_keys(st, &j->attrs);
    env.holidays = d->hs;
    env.known_attrs = (const char *const *)j->attrs;
    j->changed = json_array();
    if (ruleset_load(d->cfg->rules_dir, &env, &j->nrs, &j->errors) < 0) {
        j->nrs = NULL;
    } else {
        for (size_t i = 0; i < j->nrs->n; i++) {
            const struct rule *old = j->old ? ruleset_find(j->old, j->nrs->rules[i]->name) : NULL;
            if (old && strcmp(old->digest, j->nrs->rules[i]->digest)) {
                json_t *c = json_pack("{ss}", "name", j->nrs->rules[i]->name);
                json_t *delta = audience_delta(j, st, old, j->nrs->rules[i]);
                if (delta)
                    json_object_set_new(c, "audience", delta);
                json_array_append_new(j->changed, c);
            }
        }
    }
    store_close(st);
}

static void reload_start(struct daemon *d, void (*done)(struct daemon *, json_t *, void *),
                         void *ud, bool async);

/* Loop thread: swaps the new rule set in and reports. */
static void
reload_after(uv_work_t *w, int status)
{
    struct reload_job *j = w->data;
    struct daemon *d = j->d;
    struct ruleset *nrs = j->nrs;
    json_t *rep = json_object(), *added = json_array(), *removed = json_array();
    (void)status;
    if (!nrs) {
        log_err("nudged", "reload failed; the running rules stay in place:\n%s",
                j->errors ? j->errors : "");
        json_object_set_new(rep, "ok", json_false());
        json_object_set_new(rep, "error", json_string(j->errors ? j->errors : ""));
        json_object_set_new(rep, "version", json_integer((json_int_t)(d->rs ? d->rs->version : 0)));
        strv_free(j->attrs);
        json_decref(added);
        json_decref(removed);
        json_decref(j->changed);
    } else {
        if (nrs->warnings)
            log_warn("nudged", "rules loaded with warnings:\n%s", nrs->warnings);
        for (size_t i = 0; i < nrs->n; i++)
            if (!j->old || !ruleset_find(j->old, nrs->rules[i]->name))
                json_array_append_new(added, json_string(nrs->rules[i]->name));
        for (size_t i = 0; j->old && i < j->old->n; i++)
            if (!ruleset_find(nrs, j->old->rules[i]->name))
                json_array_append_new(removed, json_string(j->old->rules[i]->name));
        ruleset_unref(d->rs);
        d->rs = nrs;
        strv_free(d->attrs);
        d->attrs = j->attrs;
        /* A reload is the operator's "I fixed it": paused channels try again. */
        dispatch_resume(d, "the rules were reloaded");
        log_notice("nudged", "rules loaded from %s: %zu rule(s), version %llu (%zu added, %zu "
                             "removed, %zu changed)",
                   nrs->dir, nrs->n, (unsigned long long)nrs->version, json_array_size(added),
                   json_array_size(removed), json_array_size(j->changed));
        json_object_set_new(rep, "ok", json_true());
        json_object_set_new(rep, "version", json_integer((json_int_t)nrs->version));
        json_object_set_new(rep, "rules", names_of(nrs));
        json_object_set_new(rep, "added", added);
        json_object_set_new(rep, "removed", removed);
        json_object_set_new(rep, "changed", j->changed);
    }
    free(j->errors);
    ruleset_unref(j->old);
    d->reload_busy = false;
    sd_notify(0, "READY=1");
    if (j->done)
        j->done(d, rep, j->ud);
    else
        json_decref(rep);
    free(j);
    if (atomic_load(&d->stopping)) {
        /* A stop arrived while we loaded: nothing more to start. */
        if (d->jobs == 0 && !d->eval_busy && d->loop)
            uv_stop(d->loop);
        return;
    }
    if (d->reload_again) {
        d->reload_again = false;
        reload_start(d, NULL, NULL, true);
    }
}

static void
reload_start(struct daemon *d, void (*done)(struct daemon *, json_t *, void *), void *ud,
             bool async)
{
    struct reload_job *j = xcalloc(1, sizeof(*j));
    j->d = d;
    j->now = daemon_now(d);
    j->old = d->rs ? ruleset_ref(d->rs) : NULL;
    j->done = done;
    j->ud = ud;
    j->work.data = j;
    d->reload_busy = true;
    sd_notify(0, "RELOADING=1");
    if (async && uv_queue_work(d->loop, &j->work, reload_work, reload_after) == 0)
        return;
    reload_work(&j->work);
    reload_after(&j->work, 0);
}

int
daemon_reload_async(struct daemon *d, void (*done)(struct daemon *d, json_t *rep, void *ud),
                    void *ud)
{
    if (d->reload_busy) {
        if (!done)
            d->reload_again = true; /* SIGHUP: once more when this one ends */
        return -EBUSY;
    }
    reload_start(d, done, ud, true);
    return 0;
}

static void
keep_report(struct daemon *d, json_t *rep, void *ud)
{
    (void)d;
    *(json_t **)ud = rep;
}

json_t *
daemon_reload(struct daemon *d)
{
    json_t *rep = NULL;
    reload_start(d, keep_report, &rep, false);
    return rep;
}

/* Starts the tick and dispatch timers (not on a frozen clock: advance
 * moves it) and, when wd_usec > 0, the watchdog at half its interval. */
void
engine_start(struct daemon *d, uint64_t wd_usec)
{
    uv_timer_init(d->loop, &d->tick_timer);
    uv_timer_init(d->loop, &d->dispatch_timer);
    uv_timer_init(d->loop, &d->watchdog_timer);
    d->tick_timer.data = d->dispatch_timer.data = d->watchdog_timer.data = d;
    if (!clock_is_frozen(&d->clock)) {
        uv_timer_start(&d->tick_timer, on_tick, ms_to_next_tick(d), 0);
        uv_timer_start(&d->dispatch_timer, on_dispatch_timer, 5000, 5000);
    }
    if (wd_usec > 0)
        uv_timer_start(&d->watchdog_timer, on_watchdog, wd_usec / 2000, wd_usec / 2000);
}
