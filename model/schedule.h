/*
 * schedule.h: which occurrences of a rule fall due in a window of time, in
 * one time zone. Pure computation over the calendar: no database.
 *
 * The evaluator asks, for every zone its customers live in, which local
 * dates and times in (from, to] a rule fires at, and gets each fire's UTC
 * instant and occurrence key (the idempotency key of the fire). Anniversary
 * fires also say which month-days of the customer's date field match.
 */
#ifndef NUDGE_SCHEDULE_H
#define NUDGE_SCHEDULE_H

#include <stdbool.h>

#include "rules.h"
#include "util.h"

struct holiday_set;

struct sched_env {
    const struct holiday_set *holidays;
    bool feb29_mar1; /* 29 Feb anniversaries in common years fall on 1 Mar (else 28 Feb) */
};

struct fire {
    ntime_t at;           /* UTC instant */
    int y, m, d;          /* local date of the fire */
    int hh, mi;           /* local time of the fire as scheduled (before any DST shift) */
    char occurrence[64];  /* e.g. "birthday:2027", "spring-festival:2027", "2027-03" */
    /* Anniversary: match customers whose field's month-day ("MM-DD", lunar
     * month-day for calendar: chinese) is one of these. */
    char md[3][6];
    int nmd;
    int year; /* anniversary: the year being celebrated; the field must be earlier */
};

typedef int (*fire_cb)(void *ud, const struct fire *f);

/*
 * Calls cb for every fire of rule r in zone tz with from < at <= to, in time
 * order. Stops early and returns cb's value if it is negative.
 */
int schedule_fires(const struct rule *r, const struct sched_env *env, const char *tz,
                   ntime_t from, ntime_t to, fire_cb cb, void *ud);

/* The first fire after `after` in zone tz (within ~2 years), or -ENOENT. */
int schedule_next(const struct rule *r, const struct sched_env *env, const char *tz,
                  ntime_t after, struct fire *out);

/* Does a cron spec match this local date (month and day fields)? */
bool cron_matches_date(const struct cron_spec *c, int y, int m, int d);

#endif
