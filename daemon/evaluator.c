/*
 * evaluator.c: from fires to deliveries. Which customers a fire reaches is
 * described as a store_window; the store (store_eval.c) runs the queries.
 */
#include "evaluator.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audience.h"
#include "calendar.h"
#include "config.h"
#include "log.h"
#include "store.h"
#include "store_eval.h"
#include "store_snapshot.h"

/* A set of customer ids: who is inside an `entered` condition. */
struct idset {
    int64_t *v; /* open addressing; 0 = empty (customer ids start at 1) */
    size_t cap, n;
};

static void
idset_free(struct idset *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static size_t
idset_slot(const struct idset *s, int64_t id)
{
    size_t h = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull) & (s->cap - 1);
    while (s->v[h] && s->v[h] != id)
        h = (h + 1) & (s->cap - 1);
    return h;
}

static bool
idset_has(const struct idset *s, int64_t id)
{
    return s->cap && s->v[idset_slot(s, id)] == id;
}

static void
idset_add(struct idset *s, int64_t id)
{
    if ((s->n + 1) * 2 > s->cap) {
        struct idset g = {xcalloc(s->cap ? s->cap * 2 : 1024, sizeof(int64_t)),
                          s->cap ? s->cap * 2 : 1024, 0};
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i])
                idset_add(&g, s->v[i]);
        free(s->v);
        *s = g;
    }
    size_t h = idset_slot(s, id);
    if (!s->v[h]) {
        s->v[h] = id;
        s->n++;
    }
}

static void
idset_del(struct idset *s, int64_t id)
{
    size_t h;
    if (!idset_has(s, id))
        return;
    /* Backward-shift deletion keeps probe chains intact. */
    h = idset_slot(s, id);
    s->v[h] = 0;
    s->n--;
    for (size_t j = (h + 1) & (s->cap - 1); s->v[j]; j = (j + 1) & (s->cap - 1)) {
        int64_t x = s->v[j];
        s->v[j] = 0;
        s->n--;
        idset_add(s, x);
    }
}

struct win {
    struct evaluator *ev;
    const struct rule *r;
    const char *tz;
    ntime_t now;
    eval_row_cb cb;
    void *ud;
    struct eval_stats *stats;
    struct idset *members; /* entered triggers */
    int64_t *snapshot;     /* the rule's rule_snapshots id once written, else 0 */
    bool seeding; /* entered, backfill: false: record who is inside, send nothing */
};

/*
 * Solar birth dates whose lunar month-day is one of f->md, in every lunar
 * year before the one being celebrated: a lunar birthday becomes an indexed
 * `birthday IN (...)` lookup instead of a conversion per customer. A birth in
 * a leap month counts for the regular month of the same number.
 */
static char **
lunar_birth_dates(const struct fire *f, size_t *n)
{
    char **v = NULL;
    size_t k = 0;
    for (int i = 0; i < f->nmd; i++) {
        int lm = (f->md[i][0] - '0') * 10 + (f->md[i][1] - '0');
        int ld = (f->md[i][3] - '0') * 10 + (f->md[i][4] - '0');
        for (int ly = CAL_LUNAR_MIN_YEAR; ly < f->year && ly <= CAL_LUNAR_MAX_YEAR; ly++) {
            for (int leap = 0; leap <= 1; leap++) {
                int y, m, d;
                if (cal_solar_from_lunar(ly, lm, ld, leap, &y, &m, &d) < 0)
                    continue;
                v = xrealloc(v, (k + 1) * sizeof(*v));
                v[k++] = xasprintf("%04d-%02d-%02d", y, m, d);
            }
        }
    }
    *n = k;
    return v;
}

/* The customers fire f reaches in w's zone: with the rule's audience
 * (with_audience) or all of them, for the day `today`. lunar holds the
 * lunar anniversaries' solar dates (lunar_birth_dates). */
static void
window_of(const struct win *w, const struct fire *f, bool with_audience, char **lunar,
          size_t nlunar, const char *today, const char *md[3], struct store_window *sw)
{
    const struct trigger *t = &w->r->trigger;
    memset(sw, 0, sizeof(*sw));
    sw->tz = w->tz;
    sw->default_tz = w->ev->cfg->timezone;
    sw->anniversary = t->kind == TRIG_ANNIVERSARY;
    sw->field = t->field;
    sw->lunar = t->lunar;
    for (int i = 0; i < f->nmd && i < 3; i++)
        md[i] = f->md[i];
    sw->md = md;
    sw->nmd = f->nmd;
    sw->year = f->year;
    sw->dates = (const char *const *)lunar;
    sw->ndates = nlunar;
    sw->audience = with_audience ? w->r->audience : NULL;
    sw->today = today;
}

/*
 * The rule's snapshot, written (or found by its hash) the first time the
 * window enqueues anything, in the same transaction as the rows that refer
 * to it. Each delivery carries only its id: the content is stored once per
 * rule version, not once per row (store_snapshot.h says why).
 */
static int
win_snapshot(struct win *w)
{
    if (*w->snapshot || !w->r->snapshot)
        return 0;
    return store_snapshot_put(w->ev->st, w->r->snapshot_hash, w->r->name, w->r->snapshot, w->now,
                              w->snapshot);
}

/* Delivery of action a of fire f. */
static void
delivery_of(const struct win *w, const struct fire *f, size_t a, struct store_delivery *d)
{
    d->rule = w->r->name;
    d->occurrence = f->occurrence;
    d->action = a;
    d->channel = w->r->actions[a].channel;
    d->due_at = f->at;
    d->created_at = w->now;
    d->marketing = w->r->marketing;
    d->snapshot = *w->snapshot;
}

/* Emits one listed row per action of the rule. */
static int
list_customer(struct win *w, const struct fire *f, int64_t id, const char *ext_id)
{
    for (size_t a = 0; a < w->r->nactions; a++) {
        struct eval_row row = {w->r, f, w->tz, id, ext_id, a};
        int rc;
        w->stats->enqueued++;
        if ((rc = w->cb(w->ud, &row)) < 0)
            return rc;
    }
    return 0;
}

/* The local date of fire f, "YYYY-MM-DD": what days_since() and friends
 * count from. */
static void
fire_date(const struct fire *f, char day[11])
{
    snprintf(day, 11, "%04d-%02d-%02d", f->y, f->m, f->d);
}

/* One `entered` pass (on_fire_entered) over a zone's customers. */
struct entered {
    struct win *w;
    const struct fire *f;
    const char *today;
    struct store_holds *aud; /* the rule's audience; NULL: everyone */
};

static int
entered_row(void *ud, int64_t id, const char *ext_id, bool inside, const struct aud_dayval *days)
{
    struct entered *e = ud;
    struct win *w = e->w;
    const struct rule *r = w->r;
    bool member = idset_has(w->members, id);
    (void)days;
    if (member && !inside) {
        idset_del(w->members, id);
        if (!w->cb && store_eval_member_leave(w->ev->st, r->name, id) < 0)
            return -EIO;
        return 0;
    }
    if (member || !inside)
        return 0;
    idset_add(w->members, id);
    if (w->seeding)
        w->stats->enqueued++; /* seeding counts the members it records */
    if (!w->cb && store_eval_member_join(w->ev->st, r->name, id, e->today) < 0)
        return -EIO;
    if (w->seeding)
        return 0; /* already inside when the rule started: a member, no message */
    if (e->aud && store_eval_holds(e->aud, e->today, id) <= 0)
        return 0;
    if (w->cb)
        return list_customer(w, e->f, id, ext_id);
    for (size_t a = 0; a < r->nactions; a++) {
        struct store_delivery d;
        delivery_of(w, e->f, a, &d);
        if (store_eval_enqueue_one(w->ev->st, &d, id, &w->stats->enqueued) < 0)
            return -EIO;
    }
    return 0;
}

/*
 * `entered`: one pass over the zone's customers computes, for each, whether
 * the condition and the audience hold today; membership (who is already
 * inside) lives in a set, so a customer fires on entering, leaves when the
 * condition stops holding, and fires again on entering again.
 */
static int
on_fire_entered(struct win *w, const struct fire *f, const char *today)
{
    const struct rule *r = w->r;
    struct entered e = {w, f, today, NULL};
    struct store_window sw;
    const char *md[3];
    int rc;

    /* The condition for everyone in the zone; the audience only for the
     * few who enter (it often holds subqueries, and this runs every day). */
    window_of(w, f, false, NULL, 0, today, md, &sw);
    if (r->audience && (rc = store_eval_holds_open(w->ev->st, r->audience, today, &e.aud)) < 0)
        return rc;
    if (!w->cb && win_snapshot(w) < 0)
        rc = -EIO;
    else
        rc = store_eval_condition(w->ev->st, &sw, r->trigger.condition, 0, entered_row, &e);
    store_eval_holds_close(e.aud);
    return rc;
}

/* Fires of one zone, collected for list_entered. */
struct fires {
    struct fire *v;
    size_t n, cap;
};

static int
collect_fire(void *ud, const struct fire *f)
{
    struct fires *fs = ud;
    if (fs->n == fs->cap) {
        fs->cap = fs->cap ? fs->cap * 2 : 64;
        fs->v = xrealloc(fs->v, fs->cap * sizeof(*fs->v));
    }
    fs->v[fs->n++] = *f;
    return 0;
}

/* What list_entered carries from customer to customer. */
struct listing {
    struct win *w;
    struct fires fs;
    int64_t *days;                /* day number of each fire */
    struct store_holds *pt, *aud; /* the condition and the audience, per customer and day */
    struct aud_dayarg *args;
    unsigned char *sig, *prev;
    size_t siglen;
};

/* Evaluates the condition or audience of h for customer `id` on the day of
 * fire f: 1, 0 or < 0. */
static int
holds_on(struct store_holds *h, int64_t id, const struct fire *f)
{
    char day[11];
    fire_date(f, day);
    return store_eval_holds(h, day, id);
}

static int
listed_row(void *ud, int64_t id, const char *ext_id, bool holds, const struct aud_dayval *vals)
{
    struct listing *l = ud;
    struct win *w = l->w;
    const struct audience *cond = w->r->trigger.condition;
    bool member = idset_has(w->members, id), varies = false;
    int inside = holds, rc;

    audience_day_args(cond, vals, l->args);
    for (size_t k = 0; k < cond->ndayrefs; k++)
        varies |= l->args[k].valid;
    varies &= l->siglen > 0;
    if (varies)
        audience_day_signature(cond, l->args, l->days[0], l->prev);
    for (size_t i = 0; i < l->fs.n; i++) {
        if (i > 0) {
            if (!varies)
                break;
            audience_day_signature(cond, l->args, l->days[i], l->sig);
            if (!memcmp(l->sig, l->prev, l->siglen))
                continue;
            memcpy(l->prev, l->sig, l->siglen);
            if ((inside = holds_on(l->pt, id, &l->fs.v[i])) < 0)
                return inside;
        }
        if (member && !inside) {
            member = false;
        } else if (!member && inside) {
            member = true;
            if (l->aud) {
                int in_aud = holds_on(l->aud, id, &l->fs.v[i]);
                if (in_aud < 0)
                    return in_aud;
                if (!in_aud)
                    continue;
            }
            if ((rc = list_customer(w, &l->fs.v[i], id, ext_id)) < 0)
                return rc;
        }
    }
    return 0;
}

/*
 * Listing an `entered` trigger over a long window (forecast) for a
 * condition that is stepwise in the day (audience.h): instead of evaluating
 * the condition for every customer on every fire, as on_fire_entered does,
 * one query evaluates it on the first fire and reads each customer's
 * day-dependent arguments (e.g. last_order_date for days_since); the
 * condition is then re-evaluated for that customer only on the fires where
 * its signature changes (days_since(last_order_date) >= 90 changes once,
 * 90 days after the last order). The rows listed are the same as those
 * on_fire_entered lists fire by fire, as a test checks.
 */
static int
list_entered(struct win *w, ntime_t from, ntime_t to)
{
    const struct rule *r = w->r;
    const struct audience *cond = r->trigger.condition;
    struct store *st = w->ev->st;
    struct listing l;
    struct store_window sw;
    const char *md[3];
    int rc;
    char day0[11];

    memset(&l, 0, sizeof(l));
    l.w = w;
    l.siglen = cond->ndayrefs * cond->ncuts;
    if ((rc = schedule_fires(r, &w->ev->senv, w->tz, from, to, collect_fire, &l.fs)) < 0)
        goto out;
    w->stats->fires += (long)l.fs.n;
    if (!l.fs.n)
        goto out;
    l.days = xcalloc(l.fs.n, sizeof(*l.days));
    for (size_t i = 0; i < l.fs.n; i++)
        l.days[i] = days_from_civil(l.fs.v[i].y, l.fs.v[i].m, l.fs.v[i].d);
    fire_date(&l.fs.v[0], day0);

    window_of(w, &l.fs.v[0], false, NULL, 0, day0, md, &sw);
    if ((rc = store_eval_holds_open(st, cond, day0, &l.pt)) < 0 ||
        (r->audience && (rc = store_eval_holds_open(st, r->audience, day0, &l.aud)) < 0))
        goto out;
    l.args = xcalloc(cond->ndayrefs + 1, sizeof(*l.args));
    l.sig = xcalloc(l.siglen + 1, 1);
    l.prev = xcalloc(l.siglen + 1, 1);
    rc = store_eval_condition(st, &sw, cond, STORE_EVAL_DAY_ARGS | STORE_EVAL_BY_EXT_ID, listed_row,
                              &l);
out:
    store_eval_holds_close(l.pt);
    store_eval_holds_close(l.aud);
    free(l.fs.v);
    free(l.days);
    free(l.args);
    free(l.sig);
    free(l.prev);
    return rc;
}

/* A customer listed for a fire (on_fire). */
struct listed {
    struct win *w;
    const struct fire *f;
};

static int
list_row(void *ud, int64_t id, const char *ext_id)
{
    struct listed *l = ud;
    return list_customer(l->w, l->f, id, ext_id);
}

static int
on_fire(void *ud, const struct fire *f)
{
    struct win *w = ud;
    const struct rule *r = w->r;
    char today[11];
    struct store_window sw;
    const char *md[3];
    char **lunar = NULL;
    size_t nlunar = 0;
    int rc = 0;

    fire_date(f, today);
    w->stats->fires++;
    if (r->trigger.kind == TRIG_ENTERED)
        return on_fire_entered(w, f, today);
    if (r->trigger.kind == TRIG_ANNIVERSARY && r->trigger.lunar)
        lunar = lunar_birth_dates(f, &nlunar);
    window_of(w, f, true, lunar, nlunar, today, md, &sw);
    if (w->cb) {
        /* Listing: who would receive what, without writing. */
        struct listed l = {w, f};
        rc = store_eval_customers(w->ev->st, &sw, list_row, &l);
        goto out;
    }
    if ((rc = win_snapshot(w)) < 0)
        goto out;
    for (size_t a = 0; a < r->nactions && rc >= 0; a++) {
        struct store_delivery d;
        delivery_of(w, f, a, &d);
        rc = store_eval_enqueue_window(w->ev->st, &sw, &d, &w->stats->enqueued);
    }
out:
    for (size_t i = 0; i < nlunar; i++)
        free(lunar[i]);
    free(lunar);
    return rc;
}

/* Every zone customers live in (customers without one use the default). */
static int
zones(struct evaluator *ev, char ***out, size_t *n)
{
    return store_eval_zones(ev->st, ev->cfg->timezone, out, n);
}

static void
add_member(void *ud, int64_t id)
{
    idset_add(ud, id);
}

int
evaluate_window(struct evaluator *ev, const struct rule *r, ntime_t from, ntime_t to, ntime_t now,
                eval_row_cb cb, void *ud, struct eval_stats *stats)
{
    char **z = NULL;
    size_t nz = 0;
    int rc;
    int64_t snapshot = 0;
    struct idset members = {NULL, 0, 0};
    if (r->trigger.kind == TRIG_ENTERED) {
        /* Who is inside the condition already. Listing works on this copy
         * only; enqueueing also writes every change to rule_members. */
        if (store_eval_members(ev->st, r->name, add_member, &members) < 0)
            return -EIO;
    }
    if ((rc = zones(ev, &z, &nz)) < 0)
        return rc;
    for (size_t i = 0; i < nz && rc >= 0; i++) {
        struct win w = {ev, r, z[i], now, cb, ud, stats, &members, &snapshot, false};
        if (!cal_zone_valid(z[i])) {
            log_warn("eval", "customers with unknown time zone '%s' are skipped", z[i]);
            continue;
        }
        if (cb && r->trigger.kind == TRIG_ENTERED && r->trigger.condition->stepwise &&
            !ev->day_by_day)
            rc = list_entered(&w, from, to);
        else
            rc = schedule_fires(r, &ev->senv, z[i], from, to, on_fire, &w);
    }
    for (size_t i = 0; i < nz; i++)
        free(z[i]);
    free(z);
    idset_free(&members);
    return rc < 0 ? rc : 0;
}

/*
 * Removes rule snapshots no deliverable row refers to any more. It scans the
 * deliveries once, so it runs after a rule set was (re)loaded, when versions
 * are replaced, and otherwise at most once a day: a replaced version's
 * snapshot goes once its last row is settled and a day has passed.
 */
static void
snapshots_gc(struct evaluator *ev, const struct ruleset *rs, ntime_t now)
{
    static _Atomic uint64_t done_version;
    static _Atomic ntime_t done_at;
    long removed = 0;
    if (rs->version == atomic_load(&done_version) && now >= atomic_load(&done_at) &&
        now - atomic_load(&done_at) < 86400)
        return;
    if (store_snapshot_gc(ev->st, &removed) < 0)
        return;
    atomic_store(&done_version, rs->version);
    atomic_store(&done_at, now);
    if (removed)
        log_info("eval", "removed %ld rule snapshot(s) no queued delivery refers to", removed);
}

/*
 * `entered` with backfill: false, on the rule's first evaluation: every
 * customer inside the condition today (in their own zone) becomes a member
 * without a message, so only those who enter later fire. The rule is new, so
 * rule_members holds nothing for it yet (a renamed rule is a new rule).
 */
static int
seed_members(struct evaluator *ev, const struct rule *r, ntime_t now, struct eval_stats *stats)
{
    char **z = NULL;
    size_t nz = 0;
    int rc;
    struct idset members = {NULL, 0, 0};
    if ((rc = zones(ev, &z, &nz)) < 0)
        return rc;
    for (size_t i = 0; i < nz && rc >= 0; i++) {
        int64_t no_snapshot = 0; /* seeding enqueues nothing */
        struct win w = {ev, r, z[i], now, NULL, NULL, stats, &members, &no_snapshot, true};
        struct fire f = {.at = now};
        struct cal_local l;
        char today[11];
        if (!cal_zone_valid(z[i]) || cal_utc_to_local(z[i], now, &l) < 0)
            continue;
        f.y = l.year;
        f.m = l.month;
        f.d = l.day;
        fire_date(&f, today);
        rc = on_fire_entered(&w, &f, today);
    }
    for (size_t i = 0; i < nz; i++)
        free(z[i]);
    free(z);
    idset_free(&members);
    return rc < 0 ? rc : 0;
}

int
evaluate_due(struct evaluator *ev, const struct ruleset *rs, ntime_t now, int64_t catch_up,
             struct eval_stats *stats)
{
    for (size_t i = 0; i < rs->n; i++) {
        const struct rule *r = rs->rules[i];
        if (ev->stop && atomic_load(ev->stop))
            return -ECANCELED; /* the rest is evaluated on the next start */
        ntime_t from, horizon = catch_up >= now ? 0 : now - catch_up;
        struct eval_stats late = {0, 0, 0};
        int rc;
        if (store_rule_progress_get(ev->st, r->name, &from) < 0) {
            /* A new rule starts now: it does not reach back into the past. */
            if (r->trigger.kind == TRIG_ENTERED && !r->trigger.backfill) {
                struct eval_stats seeded = {0, 0, 0};
                if (store_begin(ev->st) < 0)
                    return -EIO;
                if (seed_members(ev, r, now, &seeded) < 0 ||
                    store_rule_progress_set(ev->st, r->name, now) < 0) {
                    store_rollback(ev->st);
                    log_err("eval", "rule %s: recording the customers already inside failed; "
                                    "it will be retried", r->name);
                    continue;
                }
                if (store_commit(ev->st) < 0)
                    return -EIO;
                log_info("eval", "rule %s starts without a backlog (backfill: false): %ld "
                                 "customer(s) already inside recorded as members, not sent",
                         r->name, seeded.enqueued);
                continue;
            }
            if (store_rule_progress_set(ev->st, r->name, now) < 0)
                return -EIO;
            continue;
        }
        if (from >= now)
            continue;
        if (store_begin(ev->st) < 0)
            return -EIO;
        if (from < horizon) {
            /* Missed while down for longer than catch_up: say so, send nothing. */
            rc = evaluate_window(ev, r, from, horizon, now, NULL, NULL, &late);
            (void)rc;
            store_rollback(ev->st);
            if (late.fires) {
                char a[32], b[32];
                time_format_iso(from, a, sizeof(a));
                time_format_iso(horizon, b, sizeof(b));
                log_warn("eval", "rule %s: %ld fire(s) between %s and %s are older than "
                                 "catch_up and were skipped (%ld deliveries not sent)",
                         r->name, late.fires, a, b, late.enqueued);
                stats->skipped_late += late.fires;
            }
            if (store_begin(ev->st) < 0)
                return -EIO;
            from = horizon;
        }
        rc = evaluate_window(ev, r, from, now, now, NULL, NULL, stats);
        if (rc < 0 || store_rule_progress_set(ev->st, r->name, now) < 0) {
            store_rollback(ev->st);
            log_err("eval", "rule %s: evaluation failed; it will be retried", r->name);
            continue;
        }
        if (store_commit(ev->st) < 0)
            return -EIO;
    }
    snapshots_gc(ev, rs, now);
    return 0;
}
