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
        if (d->jobs == 0)
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

/* How many customers a changed audience lets in and drops (reported by reload). */
static json_t *
audience_delta(struct daemon *d, const struct rule *old, const struct rule *nw)
{
    char today[16];
    struct cal_local l;
    int64_t enter, leave;
    if (!strcmp(old->audience_src ? old->audience_src : "", nw->audience_src ? nw->audience_src : ""))
        return NULL;
    if (cal_utc_to_local(d->cfg->timezone, daemon_now(d), &l) < 0)
        return NULL;
    snprintf(today, sizeof(today), "%04d-%02d-%02d", l.year, l.month, l.day);
    if (store_eval_audience_delta(d->st, nw->audience, old->audience, today, &enter, &leave) < 0)
        return NULL;
    return json_pack("{sIsI}", "enter", (json_int_t)enter, "leave", (json_int_t)leave);
}

/* ---- reload -------------------------------------------------------------- */

static json_t *
names_of(const struct ruleset *rs)
{
    json_t *a = json_array();
    for (size_t i = 0; rs && i < rs->n; i++)
        json_array_append_new(a, json_string(rs->rules[i]->name));
    return a;
}

json_t *
daemon_reload(struct daemon *d)
{
    struct ruleset *nrs = NULL;
    char *errors = NULL;
    char **attrs = NULL;
    json_t *rep = json_object(), *added = json_array(), *removed = json_array(),
           *changed = json_array();
    struct rules_env env;
    sd_notify(0, "RELOADING=1");
    store_attribute_keys(d->st, &attrs);
    env.holidays = d->hs;
    env.known_attrs = (const char *const *)attrs;
    if (ruleset_load(d->cfg->rules_dir, &env, &nrs, &errors) < 0) {
        log_err("nudged", "reload failed; the running rules stay in place:\n%s", errors);
        json_object_set_new(rep, "ok", json_false());
        json_object_set_new(rep, "error", json_string(errors));
        json_object_set_new(rep, "version", json_integer((json_int_t)(d->rs ? d->rs->version : 0)));
        free(errors);
        strv_free(attrs);
        json_decref(added);
        json_decref(removed);
        json_decref(changed);
        sd_notify(0, "READY=1");
        return rep;
    }
    if (nrs->warnings)
        log_warn("nudged", "rules loaded with warnings:\n%s", nrs->warnings);
    for (size_t i = 0; i < nrs->n; i++) {
        const struct rule *old = d->rs ? ruleset_find(d->rs, nrs->rules[i]->name) : NULL;
        if (!old)
            json_array_append_new(added, json_string(nrs->rules[i]->name));
        else if (strcmp(old->digest, nrs->rules[i]->digest)) {
            json_t *c = json_pack("{ss}", "name", nrs->rules[i]->name);
            json_t *delta = audience_delta(d, old, nrs->rules[i]);
            if (delta)
                json_object_set_new(c, "audience", delta);
            json_array_append_new(changed, c);
        }
    }
    for (size_t i = 0; d->rs && i < d->rs->n; i++)
        if (!ruleset_find(nrs, d->rs->rules[i]->name))
            json_array_append_new(removed, json_string(d->rs->rules[i]->name));
    ruleset_unref(d->rs);
    d->rs = nrs;
    strv_free(d->attrs);
    d->attrs = attrs;
    /* A reload is the operator's "I fixed it": paused channels try again. */
    dispatch_resume(d, "the rules were reloaded");
    log_notice("nudged", "rules loaded from %s: %zu rule(s), version %llu (%zu added, %zu "
                         "removed, %zu changed)",
               nrs->dir, nrs->n, (unsigned long long)nrs->version, json_array_size(added),
               json_array_size(removed), json_array_size(changed));
    json_object_set_new(rep, "ok", json_true());
    json_object_set_new(rep, "version", json_integer((json_int_t)nrs->version));
    json_object_set_new(rep, "rules", names_of(nrs));
    json_object_set_new(rep, "added", added);
    json_object_set_new(rep, "removed", removed);
    json_object_set_new(rep, "changed", changed);
    sd_notify(0, "READY=1");
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
