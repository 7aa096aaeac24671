/*
 * schedule.c: turns triggers into fire instants. Every trigger is a set of
 * local dates and times in the customer's zone; calendar.c turns a local
 * time into an instant (a time skipped by DST fires at the first valid
 * instant after the gap; a repeated time fires once, at its first
 * occurrence).
 */
#include "schedule.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "calendar.h"

static int
weekday(int64_t days)
{
    /* 1970-01-01 was a Thursday (4). */
    int w = (int)((days + 4) % 7);
    return w < 0 ? w + 7 : w;
}

bool
cron_matches_date(const struct cron_spec *c, int y, int m, int d)
{
    bool dom, dow;
    if (!(c->month & (1u << m)))
        return false;
    dom = c->dom & (1u << d);
    dow = c->dow & (1u << weekday(days_from_civil(y, m, d)));
    /* Vixie cron: when both day fields are restricted, either may match. */
    if (!c->dom_any && !c->dow_any)
        return dom || dow;
    return dom && dow;
}

/* Local date of an instant in tz, as days since the epoch. */
static int
local_days(const char *tz, ntime_t t, int64_t *days)
{
    struct cal_local l;
    int r = cal_utc_to_local(tz, t, &l);
    if (r < 0)
        return r;
    *days = days_from_civil(l.year, l.month, l.day);
    return 0;
}

static int
emit(const char *tz, struct fire *f, ntime_t from, ntime_t to, fire_cb cb, void *ud)
{
    int r = cal_local_to_utc(tz, f->y, f->m, f->d, f->hh, f->mi, &f->at);
    if (r < 0)
        return r;
    if (f->at <= from || f->at > to)
        return 0;
    return cb(ud, f);
}

static void
add_md(struct fire *f, int m, int d)
{
    if (f->nmd < 3)
        snprintf(f->md[f->nmd++], sizeof(f->md[0]), "%02d-%02d", m, d);
}

/*
 * Anniversary fires on local date D celebrate date A = D + days_before -
 * days_after. Returns 1 when there is something to match on A.
 */
static int
anniversary_target(const struct rule *r, const struct sched_env *env, int64_t a, struct fire *f)
{
    const struct trigger *t = &r->trigger;
    int y, m, d;
    civil_from_days(a, &y, &m, &d);
    if (!t->lunar) {
        f->year = y;
        add_md(f, m, d);
        /* 29 February birthdays in common years. */
        if (!is_leap_year(y) && m == 2 && d == 28 && !env->feb29_mar1)
            add_md(f, 2, 29);
        if (!is_leap_year(y) && m == 3 && d == 1 && env->feb29_mar1)
            add_md(f, 2, 29);
        snprintf(f->occurrence, sizeof(f->occurrence), "%s:%04d", t->field, y);
        return 1;
    }
    struct cal_lunar l;
    if (cal_lunar_from_solar(y, m, d, &l) < 0)
        return 0;
    /* A birthday in a leap month is kept in the regular month of that number,
     * so leap months themselves celebrate nobody. */
    if (l.leap)
        return 0;
    f->year = l.year;
    add_md(f, l.month, l.day);
    /* Born on the 30th: in a year whose month has 29 days, the 29th. */
    if (l.day == 29 && cal_lunar_month_days(l.year, l.month, false) == 29)
        add_md(f, l.month, 30);
    snprintf(f->occurrence, sizeof(f->occurrence), "%s-lunar:%04d", t->field, l.year);
    return 1;
}

int
schedule_fires(const struct rule *r, const struct sched_env *env, const char *tz, ntime_t from,
               ntime_t to, fire_cb cb, void *ud)
{
    const struct trigger *t = &r->trigger;
    int64_t d0, d1;
    int rc;
    if (to <= from)
        return 0;
    if ((rc = local_days(tz, from, &d0)) < 0 || (rc = local_days(tz, to, &d1)) < 0)
        return rc;
    /* A day either side: an instant's local date can differ from the date
     * whose scheduled time maps to it across a DST change. */
    for (int64_t day = d0 - 1; day <= d1 + 1; day++) {
        struct fire f;
        int y, m, d, dim;
        memset(&f, 0, sizeof(f));
        civil_from_days(day, &y, &m, &d);
        f.y = y;
        f.m = m;
        f.d = d;
        f.hh = t->at_h;
        f.mi = t->at_m;
        dim = days_in_month(y, m);
        switch (t->kind) {
        case TRIG_DAILY:
            snprintf(f.occurrence, sizeof(f.occurrence), "%04d-%02d-%02d", y, m, d);
            break;
        case TRIG_ENTERED:
            snprintf(f.occurrence, sizeof(f.occurrence), "entered:%04d-%02d-%02d", y, m, d);
            break;
        case TRIG_WEEKLY:
            if (!(t->weekdays & (1u << weekday(day))))
                continue;
            snprintf(f.occurrence, sizeof(f.occurrence), "%04d-%02d-%02d", y, m, d);
            break;
        case TRIG_MONTHLY:
            /* Day 31 in a 30-day month fires on the last day; -1 means last. */
            if (t->month_day == -1 ? d != dim : (t->month_day <= dim ? d != t->month_day
                                                                      : d != dim))
                continue;
            snprintf(f.occurrence, sizeof(f.occurrence), "%04d-%02d", y, m);
            break;
        case TRIG_CRON:
            if (!cron_matches_date(&t->cron, y, m, d))
                continue;
            for (int hh = 0; hh < 24; hh++) {
                if (!(t->cron.hour & (1u << hh)))
                    continue;
                for (int mi = 0; mi < 60; mi++) {
                    if (!(t->cron.minute & ((uint64_t)1 << mi)))
                        continue;
                    f.hh = hh;
                    f.mi = mi;
                    snprintf(f.occurrence, sizeof(f.occurrence), "%04d-%02d-%02dT%02d:%02d", y,
                             m, d, hh, mi);
                    if ((rc = emit(tz, &f, from, to, cb, ud)) < 0)
                        return rc;
                }
            }
            continue;
        case TRIG_HOLIDAY: {
            int64_t target = day + t->days_before - t->days_after;
            int ty, tm, td, key_year = 0;
            civil_from_days(target, &ty, &tm, &td);
            /* The occurrence year is the holiday's own (Laba 2023 falls on
             * 2024-01-18), so ask about the day, not about a year. */
            if (holiday_on(env->holidays, t->holiday, ty, tm, td, &key_year) != 1)
                continue;
            snprintf(f.occurrence, sizeof(f.occurrence), "%s:%04d", t->holiday, key_year);
            break;
        }
        case TRIG_ANNIVERSARY:
            if (!anniversary_target(r, env, day + t->days_before - t->days_after, &f))
                continue;
            break;
        }
        if ((rc = emit(tz, &f, from, to, cb, ud)) < 0)
            return rc;
    }
    return 0;
}

struct first {
    struct fire *out;
    bool found;
};

static int
take_first(void *ud, const struct fire *f)
{
    struct first *x = ud;
    *x->out = *f;
    x->found = true;
    return -ECANCELED; /* stop at the first one */
}

int
schedule_next(const struct rule *r, const struct sched_env *env, const char *tz, ntime_t after,
              struct fire *out)
{
    struct first x = {out, false};
    /* Walk forward a month at a time so frequent triggers answer quickly. */
    for (int i = 0; i < 26 && !x.found; i++) {
        ntime_t a = after + (ntime_t)i * 31 * 86400, b = a + 31 * 86400;
        int rc = schedule_fires(r, env, tz, a, b, take_first, &x);
        if (rc < 0 && rc != -ECANCELED)
            return rc;
    }
    return x.found ? 0 : -ENOENT;
}
