/*
 * policy.c: quiet hours and frequency caps, evaluated at send time in the
 * customer's zone.
 */
#include "channel_registry.h"
#include "policy.h"

#include <stdio.h>
#include <string.h>

#include "calendar.h"
#include "config.h"

bool
policy_in_quiet(int start, int end, int m)
{
    if (start < 0 || end < 0 || start == end)
        return false;
    if (start < end)
        return m >= start && m < end;
    return m >= start || m < end; /* e.g. 21:00-08:00 */
}

static long
sent_since(struct store *st, int64_t customer_id, ntime_t since)
{
    sqlite3_stmt *s;
    long n = 0;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT count(*) FROM deliveries WHERE customer_id = ? AND state = 'sent'"
                           " AND marketing AND channel IN ('email', 'sms') AND sent_at > ?",
                           -1, &s, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(s, 1, customer_id);
    sqlite3_bind_int64(s, 2, since);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return n;
}

enum policy_verdict
policy_check(struct store *st, const struct config *cfg, bool marketing, const char *channel,
             int64_t customer_id, const char *tz, ntime_t now, ntime_t *until, char *why,
             size_t whylen)
{
    struct cal_local l;
    const struct channel_info *ci = channel_info_find(channel);
    /* Quiet hours and caps are for marketing that reaches a customer. */
    if (!marketing || !ci || !ci->policy)
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
    if (cfg->policy.max_per_day > 0 &&
        sent_since(st, customer_id, now - 86400) >= cfg->policy.max_per_day) {
        snprintf(why, whylen, "frequency cap: %lld marketing message(s) in 24 hours already",
                 (long long)cfg->policy.max_per_day);
        return POLICY_DROP;
    }
    if (cfg->policy.max_per_week > 0 &&
        sent_since(st, customer_id, now - 7 * 86400) >= cfg->policy.max_per_week) {
        snprintf(why, whylen, "frequency cap: %lld marketing message(s) in 7 days already",
                 (long long)cfg->policy.max_per_week);
        return POLICY_DROP;
    }
    return POLICY_SEND;
}
