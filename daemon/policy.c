/*
 * policy.c: quiet hours (at render time) and frequency caps (policy_admit,
 * just before a batch is sent), both in the customer's zone. policy.h says
 * what each promises and why caps are decided in a write transaction.
 */
#include "channel_registry.h"
#include "policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "config.h"
#include "log.h"
#include "rules.h"
#include "store_policy.h"

bool
policy_in_quiet(int start, int end, int m)
{
    if (start < 0 || end < 0 || start == end)
        return false;
    if (start < end)
        return m >= start && m < end;
    return m >= start || m < end; /* e.g. 21:00-08:00 */
}

static bool
capped_channel(bool marketing, const char *channel)
{
    const struct channel_info *ci = channel_info_find(channel);
    /* Quiet hours and caps are for marketing that reaches a customer. */
    return marketing && ci && ci->policy;
}

enum policy_verdict
policy_check(struct store *st, const struct config *cfg, bool marketing, const char *channel,
             int64_t customer_id, const char *tz, ntime_t now, ntime_t *until, char *why,
             size_t whylen)
{
    struct cal_local l;
    (void)st;
    (void)customer_id;
    if (!capped_channel(marketing, channel))
        return POLICY_SEND;
    if (!tz)
        tz = cfg->timezone;
    if (cfg->policy.quiet_start >= 0 && cal_utc_to_local(tz, now, &l) == 0) {
        int m = l.hour * 60 + l.minute;
        if (policy_in_quiet(cfg->policy.quiet_start, cfg->policy.quiet_end, m)) {
            /* The end of the window, today or tomorrow, in the customer's zone. */
            int64_t day = days_from_civil(l.year, l.month, l.day);
            int y, mo, d;
            if (m >= cfg->policy.quiet_end)
                day++;
            civil_from_days(day, &y, &mo, &d);
            if (cal_local_to_utc(tz, y, mo, d, cfg->policy.quiet_end / 60,
                                 cfg->policy.quiet_end % 60, until) == 0 &&
                *until > now) {
                snprintf(why, whylen, "quiet hours until %02d:%02d %s", cfg->policy.quiet_end / 60,
                         cfg->policy.quiet_end % 60, tz);
                return POLICY_DEFER;
            }
        }
    }
    return POLICY_SEND;
}

/* The UTC instant local day `day` (days since 1970-01-01) starts in tz, or,
 * when quiet hours cover local midnight, the end of quiet hours that day. */
static int
day_start(const struct config *cfg, const char *tz, int64_t day, bool after_quiet, ntime_t *out)
{
    int y, m, d, at = 0;
    civil_from_days(day, &y, &m, &d);
    if (after_quiet && policy_in_quiet(cfg->policy.quiet_start, cfg->policy.quiet_end, 0))
        at = cfg->policy.quiet_end;
    return cal_local_to_utc(tz, y, m, d, at / 60, at % 60, out);
}

static int
rule_priority(const struct ruleset *rs, const char *name)
{
    const struct rule *r = rs ? ruleset_find(rs, name) : NULL;
    return r ? r->priority : 0;
}

/* A message with its rule's priority, for sorting. */
struct ranked {
    int prio;
    struct policy_msg *m;
};

/* Highest priority first; then due first, then the older delivery. */
static int
cmp_ranked(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->prio != y->prio)
        return x->prio > y->prio ? -1 : 1;
    if (x->m->due_at != y->m->due_at)
        return x->m->due_at < y->m->due_at ? -1 : 1;
    return x->m->delivery_id < y->m->delivery_id ? -1 : x->m->delivery_id > y->m->delivery_id;
}

/* Decides one message; the caller holds the write transaction. */
static int
admit_one(struct store *st, const struct config *cfg, const struct ruleset *rs, ntime_t now,
          struct policy_msg *m)
{
    const char *tz = m->tz && cal_zone_valid(m->tz) ? m->tz : cfg->timezone;
    const struct rule *r = rs ? ruleset_find(rs, m->rule) : NULL;
    int prio = r ? r->priority : 0;
    struct cal_local l;
    int64_t today;
    ntime_t from, to, week_from;
    long n_day = 0, n_week = 0, higher = 0;
    char **waiting = NULL, date[11];
    const char *cap = NULL;
    long limit = 0, used = 0;

    if (cal_utc_to_local(tz, now, &l) < 0)
        return -EINVAL;
    today = days_from_civil(l.year, l.month, l.day);
    if (day_start(cfg, tz, today, false, &from) < 0 ||
        day_start(cfg, tz, today + 1, false, &to) < 0 ||
        day_start(cfg, tz, today - 6, false, &week_from) < 0)
        return -EINVAL;
    if (cfg->policy.max_per_day > 0 &&
        store_cap_count(st, m->customer_id, from, to, m->delivery_id, &n_day) < 0)
        return -EIO;
    if (cfg->policy.max_per_week > 0 &&
        store_cap_count(st, m->customer_id, week_from, to, m->delivery_id, &n_week) < 0)
        return -EIO;
    /* Room is kept for the customer's higher-priority messages still due today. */
    if (store_cap_waiting(st, m->customer_id, from, to, m->delivery_id, &waiting) < 0)
        return -EIO;
    for (char **w = waiting; *w; w++)
        higher += rule_priority(rs, *w) > prio;
    strv_free(waiting);

    if (cfg->policy.max_per_day > 0 && n_day + higher >= cfg->policy.max_per_day) {
        cap = "max_per_day";
        limit = (long)cfg->policy.max_per_day;
        used = n_day;
    } else if (cfg->policy.max_per_week > 0 && n_week + higher >= cfg->policy.max_per_week) {
        cap = "max_per_week";
        limit = (long)cfg->policy.max_per_week;
        used = n_week;
    }
    if (!cap) {
        m->verdict = POLICY_SEND;
        return store_cap_admit(st, m->delivery_id, now);
    }
    snprintf(date, sizeof(date), "%04d-%02d-%02d", l.year, l.month, l.day);
    if (higher && used < limit)
        snprintf(m->why, sizeof(m->why),
                 "frequency cap (%s %ld): %ld sent on %s (%s), room kept for %ld "
                 "higher-priority message(s)",
                 cap, limit, used, date, tz, higher);
    else
        snprintf(m->why, sizeof(m->why), "frequency cap (%s %ld): %ld already on %s (%s)", cap,
                 limit, used, date, tz);
    if (r && r->cap_drop) {
        m->verdict = POLICY_DROP;
        return 0;
    }
    /* The next local day: the caps are counted again then (a weekly cap
     * that is still full waits another day). */
    if (day_start(cfg, tz, today + 1, true, &m->until) < 0)
        return -EINVAL;
    m->verdict = POLICY_DEFER;
    {
        size_t k = strlen(m->why);
        char t[32];
        time_format_iso(m->until, t, sizeof(t));
        snprintf(m->why + k, sizeof(m->why) - k, "; deferred to %s", t);
    }
    return 0;
}

int
policy_admit(struct store *st, const struct config *cfg, const struct ruleset *rs, ntime_t now,
             struct policy_msg *m, size_t n)
{
    struct ranked *order;
    size_t k = 0;
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        m[i].verdict = POLICY_SEND;
        m[i].why[0] = '\0';
        if (capped_channel(m[i].marketing, m[i].channel))
            k++;
    }
    if (!k || (cfg->policy.max_per_day <= 0 && cfg->policy.max_per_week <= 0))
        return 0;
    order = xcalloc(k, sizeof(*order));
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (capped_channel(m[i].marketing, m[i].channel))
            order[k++] = (struct ranked){rule_priority(rs, m[i].rule), &m[i]};
    qsort(order, k, sizeof(*order), cmp_ranked);
    if (store_begin(st) < 0) {
        rc = -EIO;
    } else {
        for (size_t i = 0; i < k && rc == 0; i++)
            rc = admit_one(st, cfg, rs, now, order[i].m);
        if (rc == 0 && store_commit(st) < 0)
            rc = -EIO;
        if (rc < 0)
            store_rollback(st);
    }
    if (rc < 0) {
        log_err("policy", "frequency caps could not be counted; %zu message(s) wait a minute", k);
        for (size_t i = 0; i < k; i++) {
            order[i].m->verdict = POLICY_DEFER;
            order[i].m->until = now + 60;
            snprintf(order[i].m->why, sizeof(order[i].m->why),
                     "frequency caps could not be counted; trying again");
        }
    }
    free(order);
    return rc;
}
