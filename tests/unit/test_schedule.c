/*
 * test_schedule.c: which fires a trigger has in a window, in a time zone
 * (model/schedule.c): every trigger kind, the occurrence keys that make
 * fires idempotent, the (from, to] boundaries, daylight-saving gaps and
 * overlaps, 29 February, short months, holidays from the shipped calendars,
 * and cron expressions compared with an independent implementation
 * (tests/data/cron/expected.tsv, generated from the npm package cron-parser
 * by tests/data/cron/gen.js; see the header of that file for the DST lines
 * that are computed from nudge's documented rule instead).
 *
 * Data and calendars are found through $NUDGE_SRC (set by ctest).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "rules.h"
#include "schedule.h"
#include "util.h"
#include "unit.h"

/* ---- helpers ------------------------------------------------------- */

static const char *
src_dir(void)
{
    const char *s = getenv("NUDGE_SRC");
    return s && *s ? s : ".";
}

static struct holiday_set *holidays;

static int
group_setup(void **state)
{
    char *dir = xasprintf("%s/calendars", src_dir());
    struct nerr err;
    nerr_clear(&err);
    if (holiday_set_load_dir(dir, &holidays, &err) < 0) {
        char buf[2048];
        nerr_format(&err, buf, sizeof(buf));
        fprintf(stderr, "cannot load %s: %s", dir, buf);
        free(dir);
        return -1;
    }
    free(dir);
    (void)state;
    return 0;
}

static int
group_teardown(void **state)
{
    holiday_set_free(holidays);
    cal_thread_cleanup();
    (void)state;
    return 0;
}

/* Every fire of one schedule_fires() call, in the order they came. */
struct fires {
    struct fire *f;
    size_t n, cap;
};

static int
collect(void *ud, const struct fire *f)
{
    struct fires *fs = ud;
    if (fs->n == fs->cap) {
        fs->cap = fs->cap ? fs->cap * 2 : 64;
        fs->f = xrealloc(fs->f, fs->cap * sizeof(*fs->f));
    }
    fs->f[fs->n++] = *f;
    return 0;
}

static void
run(const struct rule *r, bool feb29_mar1, const char *tz, const char *from, const char *to,
    struct fires *out)
{
    struct sched_env env = {holidays, feb29_mar1};
    memset(out, 0, sizeof(*out));
    assert_int_equal(schedule_fires(r, &env, tz, iso(from), iso(to), collect, out), 0);
    for (size_t i = 1; i < out->n; i++)
        if (out->f[i].at < out->f[i - 1].at)
            fail_msg("fires out of time order at %zu", i);
}

static void
fires_free(struct fires *fs)
{
    free(fs->f);
    memset(fs, 0, sizeof(*fs));
}

static void
assert_at(const struct fire *f, const char *want)
{
    char buf[32];
    time_format_iso(f->at, buf, sizeof(buf));
    if (strcmp(buf, want) != 0)
        fail_msg("fire at %s, want %s (occurrence %s)", buf, want, f->occurrence);
}

static bool
has_md(const struct fire *f, const char *md)
{
    for (int i = 0; i < f->nmd; i++)
        if (strcmp(f->md[i], md) == 0)
            return true;
    return false;
}

/* The fire whose local date is y-m-d, or NULL. */
static const struct fire *
on_date(const struct fires *fs, int y, int m, int d)
{
    for (size_t i = 0; i < fs->n; i++)
        if (fs->f[i].y == y && fs->f[i].m == m && fs->f[i].d == d)
            return &fs->f[i];
    return NULL;
}

static struct rule
simple_rule(enum trigger_kind kind, int hh, int mi)
{
    struct rule r;
    memset(&r, 0, sizeof(r));
    r.name = (char *)"test-rule";
    r.trigger.kind = kind;
    r.trigger.at_h = hh;
    r.trigger.at_m = mi;
    r.trigger.month_day = 1;
    return r;
}

static char birthday_field[] = "birthday";

static struct rule
anniversary_rule(int days_before)
{
    struct rule r = simple_rule(TRIG_ANNIVERSARY, 9, 0);
    r.trigger.field = birthday_field;
    r.trigger.days_before = days_before;
    return r;
}

static struct rule
cron_rule(const char *expr)
{
    struct rule r = simple_rule(TRIG_CRON, 0, 0);
    char why[256];
    int col = 0;
    if (cron_parse(expr, &r.trigger.cron, why, sizeof(why), &col) < 0)
        fail_msg("cron_parse(\"%s\") failed at column %d: %s", expr, col, why);
    return r;
}

/* ---- daily and time zones ------------------------------------------ */

static void
daily_0900_in_shanghai_fires_at_0100_utc(void **state)
{
    struct rule r = simple_rule(TRIG_DAILY, 9, 0);
    struct fires fs;
    (void)state;
    run(&r, false, "Asia/Shanghai", "2027-06-01T00:00:00Z", "2027-06-04T00:00:00Z", &fs);
    assert_int_equal(fs.n, 3);
    assert_at(&fs.f[0], "2027-06-01T01:00:00Z");
    assert_at(&fs.f[1], "2027-06-02T01:00:00Z");
    assert_at(&fs.f[2], "2027-06-03T01:00:00Z");
    assert_int_equal(fs.f[0].y, 2027);
    assert_int_equal(fs.f[0].m, 6);
    assert_int_equal(fs.f[0].d, 1);
    assert_int_equal(fs.f[0].hh, 9);
    assert_int_equal(fs.f[0].mi, 0);
    fires_free(&fs);
}

static void
daily_0900_in_new_york_follows_winter_and_summer_offsets(void **state)
{
    struct rule r = simple_rule(TRIG_DAILY, 9, 0);
    struct fires fs;
    (void)state;
    run(&r, false, "America/New_York", "2027-01-15T00:00:00Z", "2027-01-16T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_at(&fs.f[0], "2027-01-15T14:00:00Z"); /* EST, UTC-5 */
    fires_free(&fs);
    run(&r, false, "America/New_York", "2027-07-15T00:00:00Z", "2027-07-16T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_at(&fs.f[0], "2027-07-15T13:00:00Z"); /* EDT, UTC-4 */
    fires_free(&fs);
}

static void
daily_in_dst_gap_fires_at_first_valid_instant_after(void **state)
{
    struct rule r = simple_rule(TRIG_DAILY, 2, 30);
    struct fires fs;
    const struct fire *f;
    (void)state;
    run(&r, false, "America/New_York", "2027-03-13T12:00:00Z", "2027-03-15T12:00:00Z", &fs);
    assert_int_equal(fs.n, 2);
    f = on_date(&fs, 2027, 3, 14);
    assert_non_null(f);
    assert_at(f, "2027-03-14T07:00:00Z"); /* 03:00 EDT, the end of the gap */
    assert_string_equal(f->occurrence, "2027-03-14");
    assert_int_equal(f->hh, 2); /* as scheduled */
    assert_int_equal(f->mi, 30);
    f = on_date(&fs, 2027, 3, 15);
    assert_non_null(f);
    assert_at(f, "2027-03-15T06:30:00Z");
    fires_free(&fs);
}

static void
daily_in_dst_overlap_fires_once_at_first_occurrence(void **state)
{
    struct rule r = simple_rule(TRIG_DAILY, 1, 30);
    struct fires fs;
    (void)state;
    run(&r, false, "America/New_York", "2027-11-06T12:00:00Z", "2027-11-08T12:00:00Z", &fs);
    assert_int_equal(fs.n, 2);
    assert_at(&fs.f[0], "2027-11-07T05:30:00Z"); /* 01:30 EDT; never 06:30Z (01:30 EST) */
    assert_string_equal(fs.f[0].occurrence, "2027-11-07");
    assert_at(&fs.f[1], "2027-11-08T06:30:00Z");
    fires_free(&fs);
    /* A window holding only the second 01:30 has nothing. */
    run(&r, false, "America/New_York", "2027-11-07T06:00:00Z", "2027-11-07T07:00:00Z", &fs);
    assert_int_equal(fs.n, 0);
    fires_free(&fs);
}

static void
fires_are_in_window_excluding_from_including_to(void **state)
{
    struct rule r = simple_rule(TRIG_DAILY, 9, 0);
    struct fires fs;
    (void)state;
    run(&r, false, "UTC", "2027-01-01T09:00:00Z", "2027-01-02T09:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_at(&fs.f[0], "2027-01-02T09:00:00Z");
    fires_free(&fs);
    run(&r, false, "UTC", "2027-01-01T08:59:59Z", "2027-01-01T09:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    fires_free(&fs);
    run(&r, false, "UTC", "2027-01-01T09:00:00Z", "2027-01-01T09:00:00Z", &fs);
    assert_int_equal(fs.n, 0);
    fires_free(&fs);
    run(&r, false, "UTC", "2027-01-02T09:00:00Z", "2027-01-01T00:00:00Z", &fs);
    assert_int_equal(fs.n, 0);
    fires_free(&fs);
}

static int
stop_at_first(void *ud, const struct fire *f)
{
    int *seen = ud;
    (void)f;
    (*seen)++;
    return -ECANCELED;
}

static void
negative_callback_value_stops_the_walk(void **state)
{
    struct rule r = simple_rule(TRIG_DAILY, 9, 0);
    struct sched_env env = {holidays, false};
    int seen = 0;
    (void)state;
    assert_int_equal(schedule_fires(&r, &env, "UTC", iso("2027-01-01T00:00:00Z"),
                                    iso("2027-01-10T00:00:00Z"), stop_at_first, &seen),
                     -ECANCELED);
    assert_int_equal(seen, 1);
}

static void
schedule_next_finds_the_first_fire_after(void **state)
{
    struct rule r = simple_rule(TRIG_MONTHLY, 9, 30);
    struct sched_env env = {holidays, false};
    struct fire f;
    (void)state;
    r.trigger.month_day = 15;
    assert_int_equal(schedule_next(&r, &env, "Asia/Shanghai", iso("2027-03-15T01:30:00Z"), &f), 0);
    assert_at(&f, "2027-04-15T01:30:00Z");
    assert_string_equal(f.occurrence, "2027-04");
}

/* ---- weekly and monthly -------------------------------------------- */

static void
weekly_fires_on_listed_weekdays_only(void **state)
{
    struct rule r = simple_rule(TRIG_WEEKLY, 8, 15);
    struct fires fs;
    (void)state;
    r.trigger.weekdays = (1u << 1) | (1u << 5); /* mon, fri */
    /* 2027-03-01 is a Monday. */
    run(&r, false, "Europe/Berlin", "2027-03-01T00:00:00Z", "2027-03-15T00:00:00Z", &fs);
    assert_int_equal(fs.n, 4);
    assert_non_null(on_date(&fs, 2027, 3, 1));
    assert_non_null(on_date(&fs, 2027, 3, 5));
    assert_non_null(on_date(&fs, 2027, 3, 8));
    assert_non_null(on_date(&fs, 2027, 3, 12));
    assert_at(&fs.f[0], "2027-03-01T07:15:00Z");
    assert_string_equal(fs.f[1].occurrence, "2027-03-05");
    fires_free(&fs);
}

static void
monthly_day_31_fires_on_last_day_of_shorter_months(void **state)
{
    struct rule r = simple_rule(TRIG_MONTHLY, 9, 0);
    struct fires fs;
    static const int want_day[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    (void)state;
    r.trigger.month_day = 31;
    run(&r, false, "UTC", "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z", &fs);
    assert_int_equal(fs.n, 12);
    for (int i = 0; i < 12; i++) {
        char occ[16];
        assert_int_equal(fs.f[i].m, i + 1);
        assert_int_equal(fs.f[i].d, want_day[i]);
        snprintf(occ, sizeof(occ), "2027-%02d", i + 1);
        assert_string_equal(fs.f[i].occurrence, occ);
    }
    assert_at(&fs.f[3], "2027-04-30T09:00:00Z");
    fires_free(&fs);
}

static void
monthly_last_fires_on_feb_28_or_29(void **state)
{
    struct rule r = simple_rule(TRIG_MONTHLY, 9, 0);
    struct fires fs;
    (void)state;
    r.trigger.month_day = -1;
    run(&r, false, "UTC", "2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_at(&fs.f[0], "2027-02-28T09:00:00Z");
    assert_string_equal(fs.f[0].occurrence, "2027-02");
    fires_free(&fs);
    run(&r, false, "UTC", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_at(&fs.f[0], "2028-02-29T09:00:00Z");
    fires_free(&fs);
}

/* ---- anniversaries -------------------------------------------------- */

static void
feb29_birthday_is_matched_on_feb28_in_common_year(void **state)
{
    struct rule r = anniversary_rule(0);
    struct fires fs;
    const struct fire *f;
    (void)state;
    run(&r, false, "UTC", "2027-02-27T00:00:00Z", "2027-03-02T00:00:00Z", &fs);
    f = on_date(&fs, 2027, 2, 28);
    assert_non_null(f);
    assert_true(has_md(f, "02-28"));
    assert_true(has_md(f, "02-29"));
    assert_string_equal(f->occurrence, "birthday:2027");
    assert_int_equal(f->year, 2027);
    assert_at(f, "2027-02-28T09:00:00Z");
    f = on_date(&fs, 2027, 3, 1);
    assert_non_null(f);
    assert_true(has_md(f, "03-01"));
    assert_false(has_md(f, "02-29"));
    fires_free(&fs);
}

static void
feb29_birthday_is_matched_on_mar1_when_configured(void **state)
{
    struct rule r = anniversary_rule(0);
    struct fires fs;
    const struct fire *f;
    (void)state;
    run(&r, true, "UTC", "2027-02-27T00:00:00Z", "2027-03-02T00:00:00Z", &fs);
    f = on_date(&fs, 2027, 2, 28);
    assert_non_null(f);
    assert_false(has_md(f, "02-29"));
    f = on_date(&fs, 2027, 3, 1);
    assert_non_null(f);
    assert_true(has_md(f, "03-01"));
    assert_true(has_md(f, "02-29"));
    assert_string_equal(f->occurrence, "birthday:2027");
    fires_free(&fs);
}

static void
feb29_birthday_is_matched_on_feb29_in_leap_year(void **state)
{
    struct rule r = anniversary_rule(0);
    struct fires fs;
    const struct fire *f;
    (void)state;
    for (int mar1 = 0; mar1 < 2; mar1++) {
        run(&r, mar1, "UTC", "2028-02-27T00:00:00Z", "2028-03-02T00:00:00Z", &fs);
        f = on_date(&fs, 2028, 2, 29);
        assert_non_null(f);
        assert_int_equal(f->nmd, 1);
        assert_string_equal(f->md[0], "02-29");
        assert_string_equal(f->occurrence, "birthday:2028");
        f = on_date(&fs, 2028, 2, 28);
        assert_non_null(f);
        assert_false(has_md(f, "02-29"));
        f = on_date(&fs, 2028, 3, 1);
        assert_non_null(f);
        assert_false(has_md(f, "02-29"));
        fires_free(&fs);
    }
}

static void
anniversary_days_before_fires_early_for_the_later_date(void **state)
{
    struct rule r = anniversary_rule(2);
    struct fires fs;
    const struct fire *f;
    (void)state;
    /* Fires on 2027-12-30 for birthdays on 2028-01-01: the year celebrated is 2028. */
    run(&r, false, "Asia/Shanghai", "2027-12-29T12:00:00Z", "2027-12-30T12:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    f = &fs.f[0];
    assert_int_equal(f->y, 2027);
    assert_int_equal(f->m, 12);
    assert_int_equal(f->d, 30);
    assert_int_equal(f->nmd, 1);
    assert_string_equal(f->md[0], "01-01");
    assert_int_equal(f->year, 2028);
    assert_string_equal(f->occurrence, "birthday:2028");
    assert_at(f, "2027-12-30T01:00:00Z");
    fires_free(&fs);
}

static void
lunar_anniversary_matches_lunar_month_day(void **state)
{
    struct rule r = anniversary_rule(0);
    struct fires fs;
    const struct fire *f;
    (void)state;
    r.trigger.lunar = true;
    /* Spring Festival 2027 (lunar 2027-01-01) is 2027-02-06. */
    run(&r, false, "Asia/Shanghai", "2027-02-05T12:00:00Z", "2027-02-06T12:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    f = &fs.f[0];
    assert_int_equal(f->d, 6);
    assert_true(has_md(f, "01-01"));
    assert_string_equal(f->occurrence, "birthday-lunar:2027");
    assert_int_equal(f->year, 2027);
    fires_free(&fs);
}

/* ---- holidays ------------------------------------------------------- */

static void
holiday_days_before_fires_before_spring_festival(void **state)
{
    struct rule r = simple_rule(TRIG_HOLIDAY, 10, 0);
    struct fires fs;
    (void)state;
    r.trigger.holiday = (char *)"spring-festival";
    r.trigger.days_before = 3;
    run(&r, false, "Asia/Shanghai", "2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_int_equal(fs.f[0].m, 2);
    assert_int_equal(fs.f[0].d, 3);
    assert_at(&fs.f[0], "2027-02-03T02:00:00Z");
    assert_string_equal(fs.f[0].occurrence, "spring-festival:2027");
    fires_free(&fs);
}

static void
holiday_days_after_fires_after_the_holiday(void **state)
{
    struct rule r = simple_rule(TRIG_HOLIDAY, 10, 0);
    struct fires fs;
    (void)state;
    r.trigger.holiday = (char *)"christmas";
    r.trigger.days_after = 2;
    run(&r, false, "Europe/London", "2027-06-01T00:00:00Z", "2028-06-01T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_int_equal(fs.f[0].y, 2027);
    assert_int_equal(fs.f[0].m, 12);
    assert_int_equal(fs.f[0].d, 27);
    assert_string_equal(fs.f[0].occurrence, "christmas:2027");
    fires_free(&fs);
}

/*
 * Laba is lunar 12-08: laba 2023 falls on 2024-01-18 and laba 2024 on
 * 2025-01-07 (calendar.h). A lunar holiday in January belongs to the
 * previous year number, so a Gregorian year may hold zero or two of them.
 */
static void
lunar_holiday_in_january_fires_on_its_real_date(void **state)
{
    struct rule r = simple_rule(TRIG_HOLIDAY, 10, 0);
    struct fires fs;
    int y, m, d;
    (void)state;
    assert_int_equal(holiday_date_ymd(holidays, "laba", 2023, &y, &m, &d), 0);
    assert_int_equal(y * 10000 + m * 100 + d, 20240118);
    assert_int_equal(holiday_date_ymd(holidays, "laba", 2024, &y, &m, &d), 0);
    assert_int_equal(y * 10000 + m * 100 + d, 20250107);
    r.trigger.holiday = (char *)"laba";
    run(&r, false, "Asia/Shanghai", "2024-01-01T00:00:00Z", "2025-02-01T00:00:00Z", &fs);
    for (size_t i = 0; i < fs.n; i++)
        print_message("laba fire: %04d-%02d-%02d %s\n", fs.f[i].y, fs.f[i].m, fs.f[i].d,
                      fs.f[i].occurrence);
    assert_int_equal(fs.n, 2);
    assert_int_equal(fs.f[0].y * 10000 + fs.f[0].m * 100 + fs.f[0].d, 20240118);
    assert_string_equal(fs.f[0].occurrence, "laba:2023");
    assert_int_equal(fs.f[1].y * 10000 + fs.f[1].m * 100 + fs.f[1].d, 20250107);
    assert_string_equal(fs.f[1].occurrence, "laba:2024");
    fires_free(&fs);
}

/* Every holiday of the shipped calendars fires once a year, on the date
 * calendar.c gives, with occurrence "slug:YEAR". */
struct slugs {
    char *v[64];
    int n;
};

static void
add_slug(void *ud, const char *slug, const char *title)
{
    struct slugs *s = ud;
    (void)title;
    if (s->n < 64)
        s->v[s->n++] = xstrdup(slug);
}

static void
every_shipped_holiday_fires_on_its_calendar_date(void **state)
{
    struct slugs s = {{0}, 0};
    (void)state;
    holiday_foreach(holidays, add_slug, &s);
    assert_true(s.n >= 10);
    for (int i = 0; i < s.n; i++) {
        struct rule r = simple_rule(TRIG_HOLIDAY, 12, 0);
        struct fires fs;
        int checked = 0;
        r.trigger.holiday = s.v[i];
        run(&r, false, "UTC", "2025-06-01T00:00:00Z", "2031-12-31T00:00:00Z", &fs);
        for (int year = 2026; year <= 2030; year++) {
            int y, m, d, n = 0;
            char want[64];
            const struct fire *f;
            if (holiday_date_ymd(holidays, s.v[i], year, &y, &m, &d) < 0)
                continue;
            f = on_date(&fs, y, m, d);
            if (!f)
                fail_msg("%s %d (%04d-%02d-%02d) does not fire", s.v[i], year, y, m, d);
            snprintf(want, sizeof(want), "%s:%d", s.v[i], year);
            if (strcmp(f->occurrence, want) != 0)
                fail_msg("%s on %04d-%02d-%02d has occurrence %s, want %s", s.v[i], y, m, d,
                         f->occurrence, want);
            for (size_t k = 0; k < fs.n; k++)
                n += strcmp(fs.f[k].occurrence, want) == 0;
            if (n != 1)
                fail_msg("%s fires %d times", want, n);
            checked++;
        }
        assert_int_equal(checked, 5);
        fires_free(&fs);
        free(s.v[i]);
    }
}

/* ---- occurrence keys ----------------------------------------------- */

static void
occurrence_keys_name_the_period_of_each_kind(void **state)
{
    struct fires fs;
    struct rule r;
    (void)state;

    r = simple_rule(TRIG_DAILY, 9, 0);
    run(&r, false, "UTC", "2027-03-04T00:00:00Z", "2027-03-05T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_string_equal(fs.f[0].occurrence, "2027-03-04");
    fires_free(&fs);

    r = simple_rule(TRIG_WEEKLY, 9, 0);
    r.trigger.weekdays = 1u << 4; /* thursday */
    run(&r, false, "UTC", "2027-03-01T00:00:00Z", "2027-03-08T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_string_equal(fs.f[0].occurrence, "2027-03-04");
    fires_free(&fs);

    r = simple_rule(TRIG_MONTHLY, 9, 0);
    run(&r, false, "UTC", "2027-03-01T00:00:00Z", "2027-03-08T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_string_equal(fs.f[0].occurrence, "2027-03");
    fires_free(&fs);

    r = cron_rule("45 7 4 3 *");
    run(&r, false, "UTC", "2027-03-01T00:00:00Z", "2027-03-08T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_string_equal(fs.f[0].occurrence, "2027-03-04T07:45");
    fires_free(&fs);

    r = anniversary_rule(0);
    run(&r, false, "UTC", "2027-03-04T00:00:00Z", "2027-03-05T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_string_equal(fs.f[0].occurrence, "birthday:2027");
    fires_free(&fs);

    r = simple_rule(TRIG_HOLIDAY, 9, 0);
    r.trigger.holiday = (char *)"national-day";
    run(&r, false, "UTC", "2027-09-30T00:00:00Z", "2027-10-02T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_string_equal(fs.f[0].occurrence, "national-day:2027");
    fires_free(&fs);

    r = simple_rule(TRIG_ENTERED, 11, 0);
    run(&r, false, "UTC", "2027-03-04T00:00:00Z", "2027-03-05T00:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_string_equal(fs.f[0].occurrence, "entered:2027-03-04");
    fires_free(&fs);
}

/* ---- cron against cron-parser -------------------------------------- */

static void
cron_fires_match_cron_parser_table(void **state)
{
    char *path = xasprintf("%s/tests/data/cron/expected.tsv", src_dir());
    char *text = NULL, *line, *save = NULL;
    size_t len;
    int ncases = 0, nfires = 0, nbad = 0, nskip = 0, lineno = 0;
    struct rule r;
    struct fires fs = {0};
    char expr[128] = "", tz[64] = "", from[32] = "", to[32] = "";
    ntime_t *want = NULL;
    size_t nwant = 0, capwant = 0;
    (void)state;
    if (read_file(path, &text, &len) < 0)
        fail_msg("cannot read %s (is NUDGE_SRC set?)", path);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[5] = {0}, *fsave = NULL, *tok;
        int nf = 0;
        lineno++;
        if (line[0] == '#')
            continue;
        for (tok = strtok_r(line, "\t", &fsave); tok && nf < 5; tok = strtok_r(NULL, "\t", &fsave))
            f[nf++] = tok;
        if (!strcmp(f[0], "case")) {
            if (nf != 5)
                fail_msg("%s:%d: a case line has 5 fields", path, lineno);
            snprintf(expr, sizeof(expr), "%s", f[1]);
            snprintf(tz, sizeof(tz), "%s", f[2]);
            snprintf(from, sizeof(from), "%s", f[3]);
            snprintf(to, sizeof(to), "%s", f[4]);
            nwant = 0;
        } else if (!strcmp(f[0], "fire")) {
            if (nwant == capwant) {
                capwant = capwant ? capwant * 2 : 256;
                want = xrealloc(want, capwant * sizeof(*want));
            }
            want[nwant++] = iso(f[1]);
        } else if (!strcmp(f[0], "skip")) {
            nskip++;
        } else if (!strcmp(f[0], "end")) {
            size_t i;
            r = cron_rule(expr);
            run(&r, false, tz, from, to, &fs);
            ncases++;
            nfires += (int)nwant;
            for (i = 0; i < fs.n && i < nwant; i++)
                if (fs.f[i].at != want[i])
                    break;
            if (i < fs.n || i < nwant) {
                char got[32] = "(none)", exp[32] = "(none)";
                if (i < fs.n)
                    time_format_iso(fs.f[i].at, got, sizeof(got));
                if (i < nwant)
                    time_format_iso(want[i], exp, sizeof(exp));
                print_error("cron \"%s\" in %s, (%s, %s]: %zu fires, cron-parser %zu; first "
                            "difference at #%zu: nudge %s, expected %s (line %d)\n",
                            expr, tz, from, to, fs.n, nwant, i, got, exp, lineno);
                nbad++;
            }
            fires_free(&fs);
        } else {
            fail_msg("%s:%d: unknown line kind '%s'", path, lineno, f[0]);
        }
    }
    print_message("%d cron cases, %d fires compared, %d cron-parser fires skipped (DST overlap)\n",
                  ncases, nfires, nskip);
    free(want);
    free(text);
    free(path);
    assert_true(ncases >= 20);
    assert_int_equal(nbad, 0);
}

static void
cron_in_dst_gap_and_overlap_follows_the_documented_rule(void **state)
{
    struct rule r = cron_rule("30 2 * * *");
    struct fires fs;
    const struct fire *f;
    (void)state;
    run(&r, false, "America/New_York", "2027-03-13T12:00:00Z", "2027-03-14T12:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    assert_at(&fs.f[0], "2027-03-14T07:00:00Z");
    assert_string_equal(fs.f[0].occurrence, "2027-03-14T02:30");
    fires_free(&fs);
    r = cron_rule("30 1 * * *");
    run(&r, false, "America/New_York", "2027-11-06T12:00:00Z", "2027-11-07T12:00:00Z", &fs);
    assert_int_equal(fs.n, 1);
    f = &fs.f[0];
    assert_at(f, "2027-11-07T05:30:00Z");
    fires_free(&fs);
}

static void
cron_either_or_rule_for_day_of_month_and_weekday(void **state)
{
    struct rule r = cron_rule("0 0 1,15 * 5");
    struct fires fs;
    (void)state;
    /* January 2027: Fridays 1, 8, 15, 22, 29; the 1st and 15th are Fridays too. */
    run(&r, false, "UTC", "2026-12-31T23:00:00Z", "2027-01-31T23:00:00Z", &fs);
    assert_int_equal(fs.n, 5);
    fires_free(&fs);
    /* February 2027: Fridays 5, 12, 19, 26 and the 1st and 15th (Mondays). */
    run(&r, false, "UTC", "2027-01-31T23:00:00Z", "2027-02-28T23:00:00Z", &fs);
    assert_int_equal(fs.n, 6);
    assert_non_null(on_date(&fs, 2027, 2, 1));
    assert_non_null(on_date(&fs, 2027, 2, 15));
    assert_non_null(on_date(&fs, 2027, 2, 5));
    fires_free(&fs);
    /* With day of week '*', only the day of month counts. */
    r = cron_rule("0 0 1,15 * *");
    run(&r, false, "UTC", "2027-01-31T23:00:00Z", "2027-02-28T23:00:00Z", &fs);
    assert_int_equal(fs.n, 2);
    fires_free(&fs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(daily_0900_in_shanghai_fires_at_0100_utc),
        cmocka_unit_test(daily_0900_in_new_york_follows_winter_and_summer_offsets),
        cmocka_unit_test(daily_in_dst_gap_fires_at_first_valid_instant_after),
        cmocka_unit_test(daily_in_dst_overlap_fires_once_at_first_occurrence),
        cmocka_unit_test(fires_are_in_window_excluding_from_including_to),
        cmocka_unit_test(negative_callback_value_stops_the_walk),
        cmocka_unit_test(schedule_next_finds_the_first_fire_after),
        cmocka_unit_test(weekly_fires_on_listed_weekdays_only),
        cmocka_unit_test(monthly_day_31_fires_on_last_day_of_shorter_months),
        cmocka_unit_test(monthly_last_fires_on_feb_28_or_29),
        cmocka_unit_test(feb29_birthday_is_matched_on_feb28_in_common_year),
        cmocka_unit_test(feb29_birthday_is_matched_on_mar1_when_configured),
        cmocka_unit_test(feb29_birthday_is_matched_on_feb29_in_leap_year),
        cmocka_unit_test(anniversary_days_before_fires_early_for_the_later_date),
        cmocka_unit_test(lunar_anniversary_matches_lunar_month_day),
        cmocka_unit_test(holiday_days_before_fires_before_spring_festival),
        cmocka_unit_test(holiday_days_after_fires_after_the_holiday),
        cmocka_unit_test(lunar_holiday_in_january_fires_on_its_real_date),
        cmocka_unit_test(every_shipped_holiday_fires_on_its_calendar_date),
        cmocka_unit_test(occurrence_keys_name_the_period_of_each_kind),
        cmocka_unit_test(cron_fires_match_cron_parser_table),
        cmocka_unit_test(cron_in_dst_gap_and_overlap_follows_the_documented_rule),
        cmocka_unit_test(cron_either_or_rule_for_day_of_month_and_weekday),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
