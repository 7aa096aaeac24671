/*
 * test_calendar.c: time zones, the lunar calendar, solar terms and holiday
 * calendars (lib/calendar.c).
 *
 * Expected dates come from outside calendar.c's own code paths:
 *  - tests/data/lunar-months.tsv and lunar-festivals.tsv: python3-lunardate
 *    (gen-lunar-festivals.py), a separate implementation from liblunar-date;
 *  - tests/data/solar-terms.tsv: PyEphem's VSOP87 Sun (gen-solar-terms.py),
 *    against calendar.c's Meeus formula, plus the shouxing rule-of-thumb
 *    formula for Qingming typed in below;
 *  - tests/data/western-holidays.tsv: dateutil.easter and Python's calendar
 *    module (gen-western-holidays.py);
 *  - a hand-typed list of published Spring Festival dates 2025-2050.
 * The data files are found through $NUDGE_SRC (set by ctest).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <unicode/ucal.h>
#include <unicode/uclean.h>
#include <unicode/uenum.h>

#include "calendar.h"
#include "util.h"
#include "unit.h"

/* ---- helpers ------------------------------------------------------- */

static const char *
src_dir(void)
{
    const char *s = getenv("NUDGE_SRC");
    return s && *s ? s : ".";
}

static char *
src_path(const char *rel)
{
    return xasprintf("%s/%s", src_dir(), rel);
}

static void
assert_utc(const char *tz, int y, int m, int d, int hh, int mi, const char *want)
{
    ntime_t t = 0;
    char buf[32];
    assert_int_equal(cal_local_to_utc(tz, y, m, d, hh, mi, &t), 0);
    time_format_iso(t, buf, sizeof(buf));
    if (strcmp(buf, want) != 0)
        fail_msg("%s %04d-%02d-%02d %02d:%02d -> %s, want %s", tz, y, m, d, hh, mi, buf, want);
}

static double
now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A TSV data file split into rows of tab-separated fields; '#' lines skipped. */
struct tsv {
    char *text;
    char **field; /* nrows * ncols pointers into text */
    int nrows, ncols;
};

static void
tsv_load(const char *rel, int ncols, struct tsv *t)
{
    char *path = src_path(rel);
    size_t len;
    char *line, *save = NULL;
    int cap = 0;
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    if (read_file(path, &t->text, &len) < 0)
        fail_msg("cannot read %s (is NUDGE_SRC set?)", path);
    free(path);
    for (line = strtok_r(t->text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *fsave = NULL, *f;
        int c = 0;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (t->nrows >= cap) {
            cap = cap ? cap * 2 : 1024;
            t->field = xrealloc(t->field, (size_t)cap * (size_t)ncols * sizeof(char *));
        }
        for (f = strtok_r(line, "\t", &fsave); f && c < ncols; f = strtok_r(NULL, "\t", &fsave))
            t->field[t->nrows * ncols + c++] = f;
        if (c != ncols)
            fail_msg("%s: row %d has %d fields, want %d", rel, t->nrows + 1, c, ncols);
        t->nrows++;
    }
}

static const char *
tsv_get(const struct tsv *t, int row, int col)
{
    return t->field[row * t->ncols + col];
}

static int
tsv_int(const struct tsv *t, int row, int col)
{
    int v = 0;
    assert_int_equal(parse_int_range(tsv_get(t, row, col), -100000, 100000, &v), 0);
    return v;
}

static void
tsv_free(struct tsv *t)
{
    free(t->field);
    free(t->text);
}

static struct holiday_set *
load_shipped(void)
{
    struct holiday_set *hs = NULL;
    struct nerr err;
    char *dir = src_path("calendars");
    char msg[2048];
    nerr_clear(&err);
    if (holiday_set_load_dir(dir, &hs, &err) < 0) {
        nerr_format(&err, msg, sizeof(msg));
        fail_msg("loading %s: %s", dir, msg);
    }
    free(dir);
    return hs;
}

static void
fmt_date(char *buf, size_t n, int y, int m, int d)
{
    snprintf(buf, n, "%04d-%02d-%02d", y, m, d);
}

/* ---- time zones ---------------------------------------------------- */

static void
test_zone_valid_accepts_iana_system_ids(void **state)
{
    (void)state;
    assert_true(cal_zone_valid("Asia/Shanghai"));
    assert_true(cal_zone_valid("America/New_York"));
    assert_true(cal_zone_valid("Europe/London"));
    assert_true(cal_zone_valid("UTC"));
    assert_true(cal_zone_valid("Etc/UTC"));
    assert_true(cal_zone_valid("Etc/GMT+5"));
    assert_true(cal_zone_valid("America/Argentina/Buenos_Aires"));
}

static void
test_zone_valid_rejects_unknown_and_custom_ids(void **state)
{
    (void)state;
    assert_false(cal_zone_valid("Mars/Olympus"));
    assert_false(cal_zone_valid("Etc/Unknown")); /* ICU's own name for "no idea" */
    assert_false(cal_zone_valid("utc"));         /* ids are case-sensitive */
    assert_false(cal_zone_valid(""));
    assert_false(cal_zone_valid(NULL));
    assert_false(cal_zone_valid("GMT+05:00"));      /* custom, not a system id */
    assert_false(cal_zone_valid("Asia/Shanghai ")); /* stray space */
    assert_false(cal_zone_valid("asia/shanghai\n"));
    assert_false(cal_zone_valid("../../etc/passwd"));
    assert_false(cal_zone_valid("Asia/Shanghai/Extra"));
    {
        char longname[200];
        memset(longname, 'A', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        assert_false(cal_zone_valid(longname));
    }
}

static void
test_unknown_zone_is_an_error_not_gmt(void **state)
{
    ntime_t t = 0;
    struct cal_local l;
    (void)state;
    /* ICU alone would happily compute this in GMT. */
    assert_int_equal(cal_local_to_utc("Mars/Olympus", 2027, 3, 14, 9, 0, &t), -ENOENT);
    assert_int_equal(cal_utc_to_local("Mars/Olympus", 0, &l), -ENOENT);
    assert_int_equal(cal_local_to_utc("", 2027, 3, 14, 9, 0, &t), -ENOENT);
    assert_int_equal(cal_local_to_utc(NULL, 2027, 3, 14, 9, 0, &t), -ENOENT);
}

static void
test_shanghai_0900_is_0100z(void **state)
{
    (void)state;
    assert_utc("Asia/Shanghai", 2027, 2, 3, 9, 0, "2027-02-03T01:00:00Z");
    assert_utc("Asia/Shanghai", 2027, 1, 1, 0, 0, "2026-12-31T16:00:00Z");
    assert_utc("UTC", 2027, 2, 3, 9, 0, "2027-02-03T09:00:00Z");
}

static void
test_dst_gap_fires_at_first_instant_after_gap(void **state)
{
    (void)state;
    /* 2027-03-14 02:00-02:59 does not exist in New York. */
    assert_utc("America/New_York", 2027, 3, 14, 2, 30, "2027-03-14T07:00:00Z");
    assert_utc("America/New_York", 2027, 3, 14, 2, 0, "2027-03-14T07:00:00Z");
    assert_utc("America/New_York", 2027, 3, 14, 2, 59, "2027-03-14T07:00:00Z");
    assert_utc("America/New_York", 2027, 3, 14, 1, 59, "2027-03-14T06:59:00Z");
    assert_utc("America/New_York", 2027, 3, 14, 3, 0, "2027-03-14T07:00:00Z");
    /* Europe/Berlin 2027-03-28 02:00-02:59 is missing too. */
    assert_utc("Europe/Berlin", 2027, 3, 28, 2, 30, "2027-03-28T01:00:00Z");
    /* A 30-minute DST shift: Lord Howe Island skips 02:00-02:29 on 2026-10-04. */
    assert_utc("Australia/Lord_Howe", 2026, 10, 4, 2, 15, "2026-10-03T15:30:00Z");
}

static void
test_dst_overlap_fires_at_first_occurrence(void **state)
{
    (void)state;
    /* 2027-11-07 01:00-01:59 happens twice in New York: EDT then EST. */
    assert_utc("America/New_York", 2027, 11, 7, 1, 30, "2027-11-07T05:30:00Z");
    assert_utc("America/New_York", 2027, 11, 7, 1, 0, "2027-11-07T05:00:00Z");
    assert_utc("America/New_York", 2027, 11, 7, 0, 59, "2027-11-07T04:59:00Z");
    assert_utc("America/New_York", 2027, 11, 7, 2, 0, "2027-11-07T07:00:00Z");
    assert_utc("Europe/Berlin", 2027, 10, 31, 2, 30, "2027-10-31T00:30:00Z");
}

static void
test_local_to_utc_rejects_impossible_wall_times(void **state)
{
    ntime_t t = 0;
    (void)state;
    assert_int_equal(cal_local_to_utc("UTC", 2027, 2, 29, 9, 0, &t), -EINVAL);
    assert_int_equal(cal_local_to_utc("UTC", 2027, 13, 1, 9, 0, &t), -EINVAL);
    assert_int_equal(cal_local_to_utc("UTC", 2027, 4, 31, 9, 0, &t), -EINVAL);
    assert_int_equal(cal_local_to_utc("UTC", 2027, 1, 1, 24, 0, &t), -EINVAL);
    assert_int_equal(cal_local_to_utc("UTC", 2027, 1, 1, 9, 60, &t), -EINVAL);
    assert_int_equal(cal_local_to_utc("UTC", 0, 1, 1, 9, 0, &t), -EINVAL);
    assert_int_equal(cal_local_to_utc("UTC", 2028, 2, 29, 9, 0, &t), 0);
}

static void
test_utc_to_local_known_offsets_and_weekdays(void **state)
{
    struct cal_local l;
    (void)state;
    assert_int_equal(cal_utc_to_local("America/New_York", iso("2027-07-04T16:00:00Z"), &l), 0);
    assert_int_equal(l.year, 2027);
    assert_int_equal(l.month, 7);
    assert_int_equal(l.day, 4);
    assert_int_equal(l.hour, 12);
    assert_int_equal(l.utc_offset, -4 * 3600);
    assert_int_equal(l.wday, 0); /* a Sunday */
    assert_int_equal(cal_utc_to_local("America/New_York", iso("2027-01-01T04:59:59Z"), &l), 0);
    assert_int_equal(l.year, 2026);
    assert_int_equal(l.month, 12);
    assert_int_equal(l.day, 31);
    assert_int_equal(l.hour, 23);
    assert_int_equal(l.minute, 59);
    assert_int_equal(l.second, 59);
    assert_int_equal(l.utc_offset, -5 * 3600);
    assert_int_equal(l.wday, 4); /* a Thursday */
    assert_int_equal(cal_utc_to_local("Asia/Kolkata", iso("2027-02-03T01:00:00Z"), &l), 0);
    assert_int_equal(l.hour, 6);
    assert_int_equal(l.minute, 30);
    assert_int_equal(l.utc_offset, 19800);
    assert_int_equal(cal_utc_to_local("Australia/Lord_Howe", iso("2027-01-15T00:00:00Z"), &l), 0);
    assert_int_equal(l.utc_offset, 11 * 3600);
    assert_int_equal(cal_utc_to_local("Australia/Lord_Howe", iso("2027-07-15T00:00:00Z"), &l), 0);
    assert_int_equal(l.utc_offset, 10 * 3600 + 1800);
}

/* Every quarter hour of 2026-2027 in zones with odd offsets and DST rules:
 * local -> UTC gives the instant back, except for the second pass through a
 * fall-back hour, which maps to the first (one hour or 30 minutes earlier). */
static void
test_utc_to_local_round_trips(void **state)
{
    static const char *const zones[] = {
        "Asia/Shanghai",  "America/New_York",  "Europe/London",     "Australia/Lord_Howe",
        "Asia/Kolkata",   "Pacific/Chatham",   "America/St_Johns",  "UTC",
        "Asia/Kathmandu", "America/Sao_Paulo", "Africa/Casablanca", "Pacific/Kiritimati",
    };
    ntime_t from = iso("2026-01-01T00:00:00Z"), to = iso("2028-01-01T00:00:00Z");
    long checked = 0, second_pass = 0;
    (void)state;
    for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
        for (ntime_t t = from; t < to; t += 900) {
            struct cal_local l, l2;
            ntime_t back = 0;
            int64_t wall;
            assert_int_equal(cal_utc_to_local(zones[z], t, &l), 0);
            wall = days_from_civil(l.year, l.month, l.day) * 86400 + l.hour * 3600 + l.minute * 60 +
                   l.second;
            assert_int_equal(wall - t, l.utc_offset);
            assert_int_equal(l.wday, (int)((days_from_civil(l.year, l.month, l.day) % 7 + 11) % 7));
            assert_int_equal(
                cal_local_to_utc(zones[z], l.year, l.month, l.day, l.hour, l.minute, &back), 0);
            if (back != t) {
                /* Only allowed when the same wall time happened earlier. */
                assert_true(back < t && t - back <= 3600);
                assert_int_equal(cal_utc_to_local(zones[z], back, &l2), 0);
                assert_int_equal(l2.hour, l.hour);
                assert_int_equal(l2.minute, l.minute);
                assert_int_equal(l2.day, l.day);
                second_pass++;
            }
            checked++;
        }
    }
    print_message("round trips: %ld instants, %ld in a repeated hour\n", checked, second_pass);
    assert_true(second_pass > 0); /* the overlap case was exercised */
}

/* Every canonical zone ICU knows (several hundred, far more than one thread
 * caches): valid, converts 12:00 local and back, and gives the same answer
 * when it comes back after being evicted. */
static char **
all_zones(int *n)
{
    UErrorCode st = U_ZERO_ERROR;
    UEnumeration *en = ucal_openTimeZoneIDEnumeration(UCAL_ZONE_TYPE_CANONICAL, NULL, NULL, &st);
    char **out = NULL;
    const char *id;
    int32_t len;
    *n = 0;
    assert_true(U_SUCCESS(st));
    while ((id = uenum_next(en, &len, &st)) && U_SUCCESS(st)) {
        out = xrealloc(out, (size_t)(*n + 1) * sizeof(*out));
        out[(*n)++] = xstrdup(id);
    }
    uenum_close(en);
    return out;
}

static void
test_every_icu_zone_validates_and_survives_eviction(void **state)
{
    int n = 0;
    char **zones = all_zones(&n);
    ntime_t *first;
    (void)state;
    assert_true(n > 300);
    first = xcalloc((size_t)n, sizeof(*first));
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < n; i++) {
            ntime_t t = 0;
            struct cal_local l;
            if (!cal_zone_valid(zones[i]))
                fail_msg("ICU zone %s not accepted", zones[i]);
            assert_int_equal(cal_local_to_utc(zones[i], 2027, 6, 1, 12, 0, &t), 0);
            assert_int_equal(cal_utc_to_local(zones[i], t, &l), 0);
            assert_int_equal(l.hour * 100 + l.minute, 1200);
            if (round == 0)
                first[i] = t;
            else
                assert_int_equal(t, first[i]);
        }
    }
    print_message("%d canonical ICU zones checked\n", n);
    for (int i = 0; i < n; i++)
        free(zones[i]);
    free(zones);
    free(first);
    cal_thread_cleanup();
    cal_thread_cleanup(); /* idempotent */
    {
        ntime_t t = 0;
        assert_int_equal(cal_local_to_utc("Asia/Shanghai", 2027, 6, 1, 9, 0, &t), 0);
        assert_int_equal(t, iso("2027-06-01T01:00:00Z"));
    }
}

/* ---- threads --------------------------------------------------------- */

struct thread_job {
    int id;
    int failures;
};

static void *
thread_work(void *p)
{
    struct thread_job *job = p;
    static const char *const zones[] = {"Asia/Shanghai", "America/New_York", "Europe/Berlin",
                                        "Asia/Kolkata", "Australia/Lord_Howe"};
    static const char *const want[] = {"2027-03-14T01:00:00Z", "2027-03-14T13:00:00Z",
                                       "2027-03-14T08:00:00Z", "2027-03-14T03:30:00Z",
                                       "2027-03-13T22:00:00Z"};
    for (int i = 0; i < 2000; i++) {
        int z = (i + job->id) % 5;
        ntime_t t = 0, w = 0;
        struct cal_lunar l;
        int y, m, d;
        time_parse_iso(want[z], &w);
        if (cal_local_to_utc(zones[z], 2027, 3, 14, 9, 0, &t) != 0 || t != w)
            job->failures++;
        /* The first of these races the one-time lunar table build. */
        if (cal_lunar_from_solar(2027, 2, 6, &l) != 0 || l.month != 1 || l.day != 1 || l.leap)
            job->failures++;
        if (cal_solar_from_lunar(2030, 1, 1, false, &y, &m, &d) != 0 || m != 2 || d != 3)
            job->failures++;
        /* Qingming is always 4 or 5 April in 1901-2099; fills the term cache
         * from several threads at once. */
        if (cal_solar_term_date(1901 + (i * 7 + job->id) % 199, 6, &m, &d, NULL) != 0 || m != 4 ||
            d < 4 || d > 6)
            job->failures++;
    }
    cal_thread_cleanup();
    return NULL;
}

static void
test_concurrent_threads_agree(void **state)
{
    pthread_t th[4];
    struct thread_job jobs[4];
    (void)state;
    for (int i = 0; i < 4; i++) {
        jobs[i].id = i;
        jobs[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, thread_work, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
    }
}

/* Threads that end without calling cal_thread_cleanup() must not leak their
 * calendars (the pthread key destructor closes them; valgrind checks). */
static void *
thread_no_cleanup(void *p)
{
    ntime_t t = 0;
    (void)p;
    cal_local_to_utc("Europe/Paris", 2027, 1, 1, 0, 0, &t);
    return NULL;
}

static void
test_thread_exit_releases_zone_cache(void **state)
{
    pthread_t th;
    (void)state;
    assert_int_equal(pthread_create(&th, NULL, thread_no_cleanup, NULL), 0);
    pthread_join(th, NULL);
}

/* ---- anniversaries ---------------------------------------------------- */

static void
test_feb29_anniversary_moves_to_feb28_or_mar1(void **state)
{
    int m = 0, d = 0;
    (void)state;
    cal_anniversary(2027, 2, 29, false, &m, &d);
    assert_int_equal(m, 2);
    assert_int_equal(d, 28);
    cal_anniversary(2027, 2, 29, true, &m, &d);
    assert_int_equal(m, 3);
    assert_int_equal(d, 1);
    cal_anniversary(2028, 2, 29, false, &m, &d); /* leap year: the day itself */
    assert_int_equal(m, 2);
    assert_int_equal(d, 29);
    cal_anniversary(2028, 2, 29, true, &m, &d);
    assert_int_equal(m, 2);
    assert_int_equal(d, 29);
    cal_anniversary(2100, 2, 29, false, &m, &d); /* 2100 is not a leap year */
    assert_int_equal(d, 28);
    cal_anniversary(2000, 2, 29, false, &m, &d); /* 2000 is */
    assert_int_equal(d, 29);
    cal_anniversary(2027, 2, 28, true, &m, &d); /* other days are untouched */
    assert_int_equal(m, 2);
    assert_int_equal(d, 28);
    cal_anniversary(2027, 12, 31, true, &m, &d);
    assert_int_equal(m, 12);
    assert_int_equal(d, 31);
}

/* ---- lunar calendar --------------------------------------------------- */

static void
test_lunar_spring_festival_2027_and_2030_where_icu_is_wrong(void **state)
{
    struct cal_lunar l;
    int y, m, d;
    (void)state;
    assert_int_equal(cal_solar_from_lunar(2027, 1, 1, false, &y, &m, &d), 0);
    assert_int_equal(y, 2027);
    assert_int_equal(m, 2);
    assert_int_equal(d, 6);
    assert_int_equal(cal_solar_from_lunar(2030, 1, 1, false, &y, &m, &d), 0);
    assert_int_equal(y, 2030);
    assert_int_equal(m, 2);
    assert_int_equal(d, 3);
    /* ICU's Chinese calendar says 2027-02-07 and 2030-02-02. */
    assert_int_equal(cal_lunar_from_solar(2027, 2, 7, &l), 0);
    assert_int_equal(l.month, 1);
    assert_int_equal(l.day, 2);
    assert_int_equal(cal_lunar_from_solar(2030, 2, 2, &l), 0);
    assert_int_equal(l.year, 2029);
    assert_int_equal(l.month, 12);
    assert_int_equal(l.day, 30);
}

/* Typed in from published Chinese New Year dates (public-holiday calendars
 * and almanacs), a source outside both lunar libraries. */
static void
test_lunar_published_spring_festivals_2025_2050(void **state)
{
    static const char *const published[] = {
        "2025-01-29", "2026-02-17", "2027-02-06", "2028-01-26", "2029-02-13", "2030-02-03",
        "2031-01-23", "2032-02-11", "2033-01-31", "2034-02-19", "2035-02-08", "2036-01-28",
        "2037-02-15", "2038-02-04", "2039-01-24", "2040-02-12", "2041-02-01", "2042-01-22",
        "2043-02-10", "2044-01-30", "2045-02-17", "2046-02-06", "2047-01-26", "2048-02-14",
        "2049-02-02", "2050-01-23",
    };
    struct holiday_set *hs = load_shipped();
    (void)state;
    for (int i = 0; i < 26; i++) {
        int m = 0, d = 0;
        char got[40];
        assert_int_equal(holiday_date(hs, "spring-festival", 2025 + i, &m, &d), 0);
        fmt_date(got, sizeof(got), 2025 + i, m, d);
        assert_string_equal(got, published[i]);
    }
    holiday_set_free(hs);
}

static void
test_lunar_every_month_matches_python_lunardate(void **state)
{
    struct tsv t;
    int leap_years = 0;
    (void)state;
    tsv_load("tests/data/lunar-months.tsv", 5, &t);
    assert_true(t.nrows > 2400);
    for (int r = 0; r < t.nrows; r++) {
        int ly = tsv_int(&t, r, 0), lm = tsv_int(&t, r, 1), leap = tsv_int(&t, r, 2);
        int days = tsv_int(&t, r, 4), y, m, d, ey, em, ed;
        struct cal_lunar l;
        char got[40];
        assert_int_equal(date_parse(tsv_get(&t, r, 3), &ey, &em, &ed), 0);
        assert_int_equal(cal_solar_from_lunar(ly, lm, 1, leap, &y, &m, &d), 0);
        fmt_date(got, sizeof(got), y, m, d);
        if (strcmp(got, tsv_get(&t, r, 3)) != 0)
            fail_msg("lunar %d-%s%d-1: got %s, lunardate says %s", ly, leap ? "*" : "", lm, got,
                     tsv_get(&t, r, 3));
        assert_int_equal(cal_lunar_month_days(ly, lm, leap), days);
        assert_int_equal(cal_solar_from_lunar(ly, lm, days + 1, leap, &y, &m, &d),
                         days == 29 ? -ENOENT : -EINVAL);
        assert_int_equal(cal_lunar_from_solar(ey, em, ed, &l), 0);
        assert_int_equal(l.year, ly);
        assert_int_equal(l.month, lm);
        assert_int_equal(l.day, 1);
        assert_int_equal(l.leap, leap);
        if (leap) {
            assert_int_equal(cal_lunar_leap_month(ly), lm);
            leap_years++;
        }
    }
    /* 2033 has the rare leap 11th month; 2023 a leap 2nd, 2025 a leap 6th. */
    assert_int_equal(cal_lunar_leap_month(2033), 11);
    assert_int_equal(cal_lunar_leap_month(2023), 2);
    assert_int_equal(cal_lunar_leap_month(2025), 6);
    assert_int_equal(cal_lunar_leap_month(2024), 0);
    assert_true(leap_years > 70);
    tsv_free(&t);
}

/* Every solar day the table covers converts to lunar and back, and
 * consecutive days advance by exactly one lunar day or start a new month. */
static void
test_lunar_every_day_round_trips(void **state)
{
    int64_t first = days_from_civil(1900, 1, 31), last = days_from_civil(2100, 12, 31);
    struct cal_lunar prev = {0, 0, 0, false};
    (void)state;
    for (int64_t z = first; z <= last; z++) {
        int y, m, d, y2, m2, d2;
        struct cal_lunar l;
        civil_from_days(z, &y, &m, &d);
        assert_int_equal(cal_lunar_from_solar(y, m, d, &l), 0);
        assert_int_equal(cal_solar_from_lunar(l.year, l.month, l.day, l.leap, &y2, &m2, &d2), 0);
        if (y2 != y || m2 != m || d2 != d)
            fail_msg("%04d-%02d-%02d -> lunar %d-%d-%d -> %04d-%02d-%02d", y, m, d, l.year, l.month,
                     l.day, y2, m2, d2);
        if (z > first && l.day != 1)
            assert_int_equal(l.day, prev.day + 1);
        if (z > first && l.day == 1)
            assert_true(prev.day == 29 || prev.day == 30);
        prev = l;
    }
}

/* liblunar-date 3.0.1 starts lunar 2060-4 on 1 May although the new moon is
 * at 18:10 CST on 30 April, and lunar 2057-9 on 29 September against both
 * python3-lunardate and the ephemeris; calendar.c corrects both. */
static void
test_lunar_corrects_liblunar_2057_and_2060(void **state)
{
    struct holiday_set *hs = load_shipped();
    struct cal_lunar l;
    int y, m, d;
    (void)state;
    assert_int_equal(cal_solar_from_lunar(2060, 4, 1, false, &y, &m, &d), 0);
    assert_int_equal(y * 10000 + m * 100 + d, 20600430);
    assert_int_equal(cal_lunar_month_days(2060, 3, false), 29);
    assert_int_equal(cal_lunar_month_days(2060, 4, false), 30);
    assert_int_equal(cal_solar_from_lunar(2057, 9, 1, false, &y, &m, &d), 0);
    assert_int_equal(y * 10000 + m * 100 + d, 20570928);
    assert_int_equal(cal_lunar_from_solar(2057, 9, 28, &l), 0);
    assert_int_equal(l.month * 100 + l.day, 901);
    assert_int_equal(holiday_date(hs, "double-ninth", 2057, &m, &d), 0);
    assert_int_equal(m * 100 + d, 1006);
    holiday_set_free(hs);
}

static void
test_lunar_nonexistent_dates_are_enoent(void **state)
{
    int y, m, d;
    struct cal_lunar l;
    (void)state;
    /* The 12th month of lunar 2024 has 29 days (New Year's Eve was the 29th). */
    assert_int_equal(cal_solar_from_lunar(2024, 12, 30, false, &y, &m, &d), -ENOENT);
    assert_int_equal(cal_solar_from_lunar(2024, 12, 29, false, &y, &m, &d), 0);
    assert_int_equal(m, 1);
    assert_int_equal(d, 28);
    /* 2025 repeats the 6th month, not the 5th. */
    assert_int_equal(cal_solar_from_lunar(2025, 5, 1, true, &y, &m, &d), -ENOENT);
    assert_int_equal(cal_solar_from_lunar(2025, 6, 1, true, &y, &m, &d), 0);
    assert_int_equal(y, 2025);
    assert_int_equal(m, 7);
    assert_int_equal(d, 25);
    assert_int_equal(cal_lunar_from_solar(2025, 7, 25, &l), 0);
    assert_true(l.leap);
    assert_int_equal(l.month, 6);
    assert_int_equal(cal_solar_from_lunar(2025, 13, 1, false, &y, &m, &d), -EINVAL);
    assert_int_equal(cal_solar_from_lunar(2025, 0, 1, false, &y, &m, &d), -EINVAL);
    assert_int_equal(cal_solar_from_lunar(2025, 1, 31, false, &y, &m, &d), -EINVAL);
    assert_int_equal(cal_solar_from_lunar(2025, 1, 0, false, &y, &m, &d), -EINVAL);
    assert_int_equal(cal_solar_from_lunar(1899, 1, 1, false, &y, &m, &d), -ERANGE);
    assert_int_equal(cal_solar_from_lunar(2101, 1, 1, false, &y, &m, &d), -ERANGE);
    assert_int_equal(cal_lunar_from_solar(1900, 1, 30, &l), -ERANGE);
    assert_int_equal(cal_lunar_from_solar(2200, 1, 1, &l), -ERANGE);
    assert_int_equal(cal_lunar_from_solar(2027, 2, 29, &l), -EINVAL);
    assert_int_equal(cal_lunar_month_days(2024, 12, false), 29);
    assert_int_equal(cal_lunar_month_days(2025, 5, true), -ENOENT);
    assert_int_equal(cal_lunar_leap_month(1800), -ERANGE);
}

/* ---- holidays ---------------------------------------------------------- */

static void
check_table(struct holiday_set *hs, const char *rel, int *rows)
{
    struct tsv t;
    int bad = 0;
    tsv_load(rel, 3, &t);
    for (int r = 0; r < t.nrows; r++) {
        int y = 0, m = 0, d = 0, year = tsv_int(&t, r, 1), rc, ky, ey, em, ed;
        char got[40];
        const char *slug = tsv_get(&t, r, 0);
        rc = holiday_date_ymd(hs, slug, year, &y, &m, &d);
        if (rc != 0)
            fail_msg("%s %d: holiday_date_ymd returned %d", slug, year, rc);
        fmt_date(got, sizeof(got), y, m, d);
        /* The scheduler's question must give the same answer. */
        ky = 0;
        assert_int_equal(date_parse(tsv_get(&t, r, 2), &ey, &em, &ed), 0);
        if (holiday_on(hs, slug, ey, em, ed, &ky) != 1 || ky != year)
            fail_msg("%s: holiday_on(%s) did not give year %d (got %d)", slug, tsv_get(&t, r, 2),
                     year, ky);
        if (strcmp(got, tsv_get(&t, r, 2)) != 0) {
            print_message("%s %d: got %s, want %s\n", slug, year, got, tsv_get(&t, r, 2));
            bad++;
        }
    }
    *rows = t.nrows;
    tsv_free(&t);
    assert_int_equal(bad, 0);
}

static void
test_cn_festivals_match_lunardate_table_1901_2099(void **state)
{
    struct holiday_set *hs = load_shipped();
    int rows = 0;
    (void)state;
    check_table(hs, "tests/data/lunar-festivals.tsv", &rows);
    assert_int_equal(rows, 8 * 199);
    holiday_set_free(hs);
}

static void
test_festival_year_is_the_lunar_year(void **state)
{
    struct holiday_set *hs = load_shipped();
    int m = 0, d = 0;
    (void)state;
    /* Laba of lunar 2022 fell in December 2022, that of lunar 2023 in
     * January 2024: one occurrence per year number, none skipped. */
    assert_int_equal(holiday_date(hs, "laba", 2022, &m, &d), 0);
    assert_int_equal(m * 100 + d, 1230);
    assert_int_equal(holiday_date(hs, "laba", 2023, &m, &d), 0);
    assert_int_equal(m * 100 + d, 118);
    /* New Year's Eve after a 29-day 12th month (2025) and a 30-day one (2024). */
    assert_int_equal(holiday_date(hs, "chinese-new-years-eve", 2025, &m, &d), 0);
    assert_int_equal(m * 100 + d, 128);
    assert_int_equal(holiday_date(hs, "chinese-new-years-eve", 2024, &m, &d), 0);
    assert_int_equal(m * 100 + d, 209);
    assert_int_equal(holiday_date(hs, "mid-autumn", 2027, &m, &d), 0);
    assert_int_equal(m * 100 + d, 915);
    holiday_set_free(hs);
}

/* Walking day by day, as the scheduler does, holiday_on() finds each
 * holiday exactly once per year number, on the day holiday_date_ymd() names,
 * including Laba in January and offsets that cross New Year. A naive check of
 * holiday_date(gregorian year) month/day would fire Laba on 2024-01-07 (the
 * month/day of lunar 2024's Laba, 2025-01-07). */
static void
test_holiday_on_finds_each_occurrence_once(void **state)
{
    static const char extra[] = "holidays:\n"
                                "  hogmanay-eve: { date: \"01-01\", offset: -1 }\n"
                                "  week-after-laba: { lunar: \"12-08\", offset: 7 }\n";
    struct holiday_set *hs = load_shipped();
    struct nerr err;
    int counts[32][12];
    const char *slugs[32];
    int nslugs = 0, ky = 0;
    (void)state;
    assert_int_equal(holiday_set_load_text(hs, "extra.yaml", extra, strlen(extra), &err), 0);
    slugs[nslugs++] = "laba";
    slugs[nslugs++] = "chinese-new-years-eve";
    slugs[nslugs++] = "spring-festival";
    slugs[nslugs++] = "qingming";
    slugs[nslugs++] = "easter";
    slugs[nslugs++] = "black-friday";
    slugs[nslugs++] = "hogmanay-eve";
    slugs[nslugs++] = "week-after-laba";
    memset(counts, 0, sizeof(counts));
    for (int64_t z = days_from_civil(2019, 1, 1); z <= days_from_civil(2031, 12, 31); z++) {
        int y, m, d;
        civil_from_days(z, &y, &m, &d);
        for (int i = 0; i < nslugs; i++) {
            int r = holiday_on(hs, slugs[i], y, m, d, &ky);
            assert_true(r == 0 || r == 1);
            if (r == 1 && ky >= 2020 && ky < 2030) {
                int yy, mm, dd;
                assert_int_equal(holiday_date_ymd(hs, slugs[i], ky, &yy, &mm, &dd), 0);
                assert_int_equal(yy * 10000 + mm * 100 + dd, y * 10000 + m * 100 + d);
                counts[i][ky - 2020]++;
            }
        }
    }
    for (int i = 0; i < nslugs; i++)
        for (int k = 0; k < 10; k++)
            if (counts[i][k] != 1)
                fail_msg("%s %d: found %d times", slugs[i], 2020 + k, counts[i][k]);
    assert_int_equal(holiday_on(hs, "laba", 2024, 1, 18, &ky), 1);
    assert_int_equal(ky, 2023);
    assert_int_equal(holiday_on(hs, "laba", 2024, 1, 7, &ky), 0);
    assert_int_equal(holiday_on(hs, "hogmanay-eve", 2025, 12, 31, &ky), 1);
    assert_int_equal(ky, 2026);
    assert_int_equal(holiday_on(hs, "no-such-day", 2025, 12, 31, &ky), -ENOENT);
    holiday_set_free(hs);
}

static void
test_qingming_matches_ephemeris_1901_2099(void **state)
{
    struct holiday_set *hs = load_shipped();
    struct tsv t;
    int n = 0;
    (void)state;
    tsv_load("tests/data/solar-terms.tsv", 5, &t);
    for (int r = 0; r < t.nrows; r++) {
        int m = 0, d = 0, year = tsv_int(&t, r, 1);
        char got[40];
        if (strcmp(tsv_get(&t, r, 0), "qingming") != 0)
            continue;
        assert_int_equal(holiday_date(hs, "qingming", year, &m, &d), 0);
        fmt_date(got, sizeof(got), year, m, d);
        if (strcmp(got, tsv_get(&t, r, 2)) != 0)
            fail_msg("qingming %d: got %s, PyEphem says %s", year, got, tsv_get(&t, r, 2));
        n++;
    }
    assert_int_equal(n, 199);
    tsv_free(&t);
    holiday_set_free(hs);
}

/* The "shouxing" rule of thumb for the 21st century, D = [Y*0.2422 + C] - [Y/4]
 * with Y the last two digits and C = 4.81 for Qingming, is a third,
 * independent source; it holds for every year 2001-2099. Plus dates from
 * published almanacs for 2025-2030. */
static void
test_qingming_matches_shouxing_formula_and_published_dates(void **state)
{
    static const char *const published[] = {"2025-04-04", "2026-04-05", "2027-04-05",
                                            "2028-04-04", "2029-04-04", "2030-04-05"};
    int m = 0, d = 0;
    (void)state;
    for (int year = 2001; year <= 2099; year++) {
        int yy = year % 100, want = (int)(yy * 0.2422 + 4.81) - yy / 4;
        assert_int_equal(cal_solar_term_date(year, 6, &m, &d, NULL), 0);
        assert_int_equal(m, 4);
        if (d != want)
            fail_msg("qingming %d: April %d, formula says April %d", year, d, want);
    }
    for (int i = 0; i < 6; i++) {
        char got[40];
        assert_int_equal(
            cal_solar_term_date(2025 + i, cal_solar_term_index("qingming"), &m, &d, NULL), 0);
        fmt_date(got, sizeof(got), 2025 + i, m, d);
        assert_string_equal(got, published[i]);
    }
}

/* All 24 terms against PyEphem. calendar.c is good to well under a minute
 * (abridged VSOP87 and its own delta-T), so a term that falls within a minute
 * or two of midnight China time may land on the other day; those are the only
 * misses allowed. */
static void
test_all_solar_terms_match_ephemeris_except_at_midnight(void **state)
{
    struct tsv t;
    int misses = 0, worst_edge = 0;
    long max_err = 0;
    (void)state;
    tsv_load("tests/data/solar-terms.tsv", 5, &t);
    assert_int_equal(t.nrows, 24 * 199);
    for (int r = 0; r < t.nrows; r++) {
        int idx = cal_solar_term_index(tsv_get(&t, r, 0)), year = tsv_int(&t, r, 1);
        int edge = tsv_int(&t, r, 4), m = 0, d = 0;
        ntime_t inst = 0, want = iso(tsv_get(&t, r, 3));
        char got[40];
        long err;
        assert_true(idx >= 0);
        assert_int_equal(cal_solar_term_date(year, idx, &m, &d, &inst), 0);
        err = labs((long)(inst - want));
        if (err > max_err)
            max_err = err;
        fmt_date(got, sizeof(got), year, m, d);
        if (strcmp(got, tsv_get(&t, r, 2)) != 0) {
            misses++;
            if (edge > worst_edge)
                worst_edge = edge;
            print_message("%s %d: got %s, PyEphem %s (%d min from midnight)\n", tsv_get(&t, r, 0),
                          year, got, tsv_get(&t, r, 2), edge);
        }
    }
    print_message("solar terms: %d rows, %d day misses (all within %d min of midnight), "
                  "max instant error %ld s\n",
                  t.nrows, misses, worst_edge, max_err);
    assert_true(worst_edge <= 2);
    assert_true(max_err < 120);
    assert_true(misses < 5);
    tsv_free(&t);
}

static void
test_western_holidays_match_dateutil_1901_2099(void **state)
{
    static const char extra[] = "calendar: test\n"
                                "holidays:\n"
                                "  orthodox-easter: { easter: orthodox }\n";
    struct holiday_set *hs = load_shipped();
    struct nerr err;
    int rows = 0;
    (void)state;
    assert_int_equal(holiday_set_load_text(hs, "extra.yaml", extra, strlen(extra), &err), 0);
    check_table(hs, "tests/data/western-holidays.tsv", &rows);
    assert_int_equal(rows, 7 * 199);
    holiday_set_free(hs);
}

static void
test_holiday_year_ranges(void **state)
{
    struct holiday_set *hs = load_shipped();
    int m = 0, d = 0;
    (void)state;
    assert_int_equal(holiday_date(hs, "spring-festival", 1900, &m, &d), -ERANGE);
    assert_int_equal(holiday_date(hs, "spring-festival", 2100, &m, &d), -ERANGE);
    assert_int_equal(holiday_date(hs, "spring-festival", 1901, &m, &d), 0);
    assert_int_equal(holiday_date(hs, "spring-festival", 2099, &m, &d), 0);
    assert_int_equal(holiday_date(hs, "qingming", 2100, &m, &d), -ERANGE);
    assert_int_equal(holiday_date(hs, "easter", 1500, &m, &d), -ERANGE);
    assert_int_equal(holiday_date(hs, "christmas", 3000, &m, &d), 0);
    assert_int_equal(holiday_date(hs, "christmas", 0, &m, &d), -ERANGE);
    assert_int_equal(holiday_date(hs, "no-such-day", 2027, &m, &d), -ENOENT);
    assert_int_equal(holiday_date(NULL, "christmas", 2027, &m, &d), -ENOENT);
    holiday_set_free(hs);
}

static void
collect(void *ud, const char *slug, const char *title)
{
    struct sbuf *b = ud;
    assert_non_null(title);
    sbuf_printf(b, "%s,", slug);
}

static void
test_shipped_calendars_define_the_design_slugs(void **state)
{
    struct holiday_set *hs = load_shipped();
    struct sbuf b;
    (void)state;
    sbuf_init(&b);
    holiday_foreach(hs, collect, &b);
    assert_string_equal(b.s, "black-friday,chinese-new-years-eve,christmas,double-ninth,"
                             "dragon-boat,easter,laba,lantern,mid-autumn,mothers-day,"
                             "national-day,new-year,qingming,qixi,spring-festival,"
                             "valentines,");
    assert_int_equal(holiday_count(hs), 16);
    assert_true(holiday_exists(hs, "qixi"));
    assert_false(holiday_exists(hs, "Qixi"));
    assert_string_equal(holiday_title(hs, "black-friday"), "Black Friday");
    assert_null(holiday_title(hs, "nope"));
    sbuf_free(&b);
    holiday_set_free(hs);
}

static void
test_holiday_suggest_offers_the_near_slug(void **state)
{
    struct holiday_set *hs = load_shipped();
    (void)state;
    assert_string_equal(holiday_suggest(hs, "spring-festval"), "spring-festival");
    assert_string_equal(holiday_suggest(hs, "chrismas"), "christmas");
    assert_string_equal(holiday_suggest(hs, "mothersday"), "mothers-day");
    assert_null(holiday_suggest(hs, "thanksgiving"));
    assert_null(holiday_suggest(hs, NULL));
    holiday_set_free(hs);
}

static struct holiday_set *
load_string(const char *text, int *rc, struct nerr *err, char *msg, size_t msgsz)
{
    struct holiday_set *hs = holiday_set_new();
    nerr_clear(err);
    *rc = holiday_set_load_text(hs, "test.yaml", text, strlen(text), err);
    nerr_format(err, msg, msgsz);
    return hs;
}

static void
test_rules_nth_weekday_last_fifth_and_offsets(void **state)
{
    static const char text[] =
        "holidays:\n"
        "  memorial-day: { nth_weekday: { month: 5, weekday: monday, n: -1 } }\n"
        "  fifth-sunday: { nth_weekday: { month: 2, weekday: sun, n: 5 } }\n"
        "  new-years-eve: { date: \"01-01\", offset: -1 }\n"
        "  leap-day: { date: \"02-29\" }\n"
        "  good-friday: { easter: true, offset: -2 }\n"
        "  dongzhi: { solar_term: dongzhi }\n"
        "  lunar-thirty: { lunar: \"12-30\" }\n";
    struct nerr err;
    char msg[2048];
    int rc, m = 0, d = 0;
    struct holiday_set *hs = load_string(text, &rc, &err, msg, sizeof(msg));
    (void)state;
    if (rc != 0)
        fail_msg("%s", msg);
    assert_int_equal(holiday_date(hs, "memorial-day", 2025, &m, &d), 0);
    assert_int_equal(m * 100 + d, 526);
    assert_int_equal(holiday_date(hs, "memorial-day", 2027, &m, &d), 0);
    assert_int_equal(m * 100 + d, 531);
    assert_int_equal(holiday_date(hs, "fifth-sunday", 2026, &m, &d), -ENOENT);
    assert_int_equal(holiday_date(hs, "fifth-sunday", 2032, &m, &d), 0); /* leap Feb, 5 Sundays */
    assert_int_equal(m * 100 + d, 229);
    assert_int_equal(holiday_date(hs, "new-years-eve", 2025, &m, &d), 0);
    assert_int_equal(m * 100 + d, 1231);
    assert_int_equal(holiday_date(hs, "leap-day", 2027, &m, &d), 0);
    assert_int_equal(m * 100 + d, 228);
    assert_int_equal(holiday_date(hs, "leap-day", 2028, &m, &d), 0);
    assert_int_equal(m * 100 + d, 229);
    assert_int_equal(holiday_date(hs, "good-friday", 2025, &m, &d), 0);
    assert_int_equal(m * 100 + d, 418);
    assert_int_equal(holiday_date(hs, "dongzhi", 2025, &m, &d), 0);
    assert_int_equal(m * 100 + d, 1221);
    /* Lunar 12-30 is the eve: 2025-01-28 (29-day month) falls back to 12-29. */
    assert_int_equal(holiday_date(hs, "lunar-thirty", 2024, &m, &d), 0);
    assert_int_equal(m * 100 + d, 128);
    assert_int_equal(holiday_date(hs, "lunar-thirty", 2023, &m, &d), 0);
    assert_int_equal(m * 100 + d, 209);
    holiday_set_free(hs);
}

/* ---- calendar file errors ---------------------------------------------- */

struct bad_case {
    const char *name;
    const char *text;
    int line, col;
    const char *msg_has;  /* in the formatted message */
    const char *hint_has; /* in the hint, or NULL */
};

static void
test_calendar_file_errors_are_located(void **state)
{
    static const struct bad_case cases[] = {
        {"bad YAML (unclosed flow mapping)",
         "calendar: x\nholidays:\n  a: { title: \"A\", date: \"10-01\"\n  b: { date: \"10-02\" }\n",
         /* Reported where the brace opens, the place to fix it. */
         3, 6, "test.yaml:3:6: error:", "close it"},
        {"unknown key with did-you-mean",
         "calendar: x\nholidays:\n  a: { titel: A, date: \"10-01\" }\n", 3, 8,
         "unknown key 'titel'", "did you mean 'title'"},
        {"impossible date 02-30", "calendar: x\nholidays:\n  a: { title: A, date: \"02-30\" }\n", 3,
         24, "date '02-30' does not exist", "February has at most 29 days"},
        {"malformed date", "holidays:\n  a: { date: \"Oct 1\" }\n", 2, 14, "not a month and day",
         "MM-DD"},
        {"lunar month 13", "holidays:\n  a: { lunar: \"13-01\" }\n", 2, 15, "does not exist",
         "01 to 12"},
        {"lunar day 31", "holidays:\n  a: { lunar: \"01-31\" }\n", 2, 15, "does not exist",
         "29 or 30"},
        {"misspelt weekday",
         "holidays:\n  a: { nth_weekday: { month: 5, weekday: sundy, n: 2 } }\n", 2, 42,
         "unknown weekday 'sundy'", "did you mean 'sunday'"},
        {"n = 0", "holidays:\n  a: { nth_weekday: { month: 5, weekday: sunday, n: 0 } }\n", 2, 53,
         "n must not be 0", NULL},
        {"month 13", "holidays:\n  a: { nth_weekday: { month: 13, weekday: sunday, n: 1 } }\n", 2,
         30, "month is 13, out of range", "1 to 12"},
        {"two rules", "holidays:\n  a: { date: \"10-01\", lunar: \"08-15\" }\n", 2, 23,
         "has both date and lunar", "exactly one rule"},
        {"no rule", "holidays:\n  a: { title: A }\n", 2, 3, "has no rule", "lunar"},
        {"unknown solar term", "holidays:\n  a: { solar_term: qingmin }\n", 2, 20,
         "unknown solar term 'qingmin'", "did you mean 'qingming'"},
        {"easter false", "holidays:\n  a: { easter: false }\n", 2, 16, "easter must be", NULL},
        {"offset too big", "holidays:\n  a: { date: \"10-01\", offset: 400 }\n", 2, 31,
         "offset is 400, out of range", NULL},
        {"bad slug", "holidays:\n  Spring_Festival: { lunar: \"01-01\" }\n", 2, 3,
         "'Spring_Festival' is not a slug", NULL},
        {"top-level typo", "calendar: x\nholiday:\n  a: { date: \"10-01\" }\n", 2, 1,
         "unknown key 'holiday'", "did you mean 'holidays'"},
        {"no holidays", "calendar: x\n", 1, 1, "no 'holidays:'", NULL},
        {"holidays is a list", "holidays:\n  - a\n", 2, 3, "must be a mapping", NULL},
        {"duplicate slug in one file",
         "holidays:\n  a: { date: \"10-01\" }\n  a: { date: \"10-02\" }\n", 3, 3,
         "duplicate key 'a'", NULL},
        {"empty file", "", 1, 1, "empty", NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct bad_case *c = &cases[i];
        struct nerr err;
        char msg[4096];
        int rc;
        struct holiday_set *hs = load_string(c->text, &rc, &err, msg, sizeof(msg));
        if (rc != -EINVAL)
            fail_msg("%s: rc %d, want -EINVAL", c->name, rc);
        if (err.line != c->line || err.col != c->col)
            fail_msg("%s: at %d:%d, want %d:%d\n%s", c->name, err.line, err.col, c->line, c->col,
                     msg);
        if (!strstr(msg, c->msg_has))
            fail_msg("%s: message lacks \"%s\":\n%s", c->name, c->msg_has, msg);
        if (c->hint_has && !strstr(err.hint, c->hint_has))
            fail_msg("%s: hint lacks \"%s\":\n%s", c->name, c->hint_has, msg);
        /* A caret under the offending column whenever the line is known. */
        if (c->text[0] && !strstr(msg, "^\n"))
            fail_msg("%s: no caret:\n%s", c->name, msg);
        assert_int_equal(holiday_count(hs), 0); /* nothing half-loaded */
        holiday_set_free(hs);
    }
}

static void
test_bad_date_error_shows_file_line_col_and_caret(void **state)
{
    static const char text[] = "calendar: x\n"
                               "holidays:\n"
                               "  a: { title: A, date: \"02-30\" }\n";
    struct nerr err;
    char msg[4096];
    int rc;
    struct holiday_set *hs = load_string(text, &rc, &err, msg, sizeof(msg));
    (void)state;
    assert_int_equal(rc, -EINVAL);
    assert_string_equal(msg, "test.yaml:3:24: error: date '02-30' does not exist\n"
                             "      a: { title: A, date: \"02-30\" }\n"
                             "                           ^\n"
                             "    February has at most 29 days\n");
    holiday_set_free(hs);
}

static char *
make_tmpdir(void)
{
    char tmpl[] = "/tmp/nudge-cal-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return xstrdup(d);
}

static void
write_text(const char *dir, const char *name, const char *text)
{
    char *p = xasprintf("%s/%s", dir, name);
    assert_int_equal(write_file_atomic(p, text, strlen(text)), 0);
    free(p);
}

static void
remove_tree(const char *dir, const char *const *names)
{
    for (; *names; names++) {
        char *p = xasprintf("%s/%s", dir, *names);
        unlink(p);
        free(p);
    }
    rmdir(dir);
}

static void
test_load_dir_rejects_slug_defined_in_two_files(void **state)
{
    static const char *const names[] = {"a.yaml", "b.yaml", "notes.txt", ".hidden.yaml", NULL};
    char *dir = make_tmpdir();
    struct holiday_set *hs = (struct holiday_set *)0x1;
    struct nerr err;
    char msg[4096];
    (void)state;
    write_text(dir, "a.yaml", "calendar: a\nholidays:\n  founders-day: { date: \"03-01\" }\n");
    write_text(dir, "b.yaml",
               "calendar: b\nholidays:\n  x: { date: \"01-02\" }\n"
               "  founders-day: { date: \"04-01\" }\n");
    write_text(dir, "notes.txt", "not a calendar");
    write_text(dir, ".hidden.yaml", "this: [is not valid");
    nerr_clear(&err);
    assert_int_equal(holiday_set_load_dir(dir, &hs, &err), -EINVAL);
    assert_ptr_equal(hs, (struct holiday_set *)0x1); /* untouched on error */
    nerr_format(&err, msg, sizeof(msg));
    assert_non_null(
        strstr(msg, "/b.yaml:4:3: error: holiday 'founders-day' is already defined in "));
    assert_non_null(strstr(msg, "/a.yaml:3"));
    /* Without the clash the directory loads, ignoring .txt and hidden files. */
    write_text(dir, "b.yaml", "calendar: b\nholidays:\n  x: { date: \"01-02\" }\n");
    hs = NULL;
    assert_int_equal(holiday_set_load_dir(dir, &hs, &err), 0);
    assert_int_equal(holiday_count(hs), 2);
    holiday_set_free(hs);
    remove_tree(dir, names);
    free(dir);
}

static void
test_load_errors_leave_the_set_unchanged(void **state)
{
    struct holiday_set *hs = load_shipped();
    struct nerr err;
    char *missing = xasprintf("%s/does-not-exist.yaml", src_dir());
    static const char half[] =
        "holidays:\n  ok-day: { date: \"10-01\" }\n  bad: { date: \"13-01\" }\n";
    static const char dup[] = "holidays:\n  easter: { date: \"04-01\" }\n";
    struct holiday_set *out = NULL;
    (void)state;
    assert_int_equal(holiday_count(hs), 16);
    assert_int_equal(holiday_set_load_file(hs, missing, &err), -ENOENT);
    assert_int_equal(holiday_set_load_text(hs, "half.yaml", half, strlen(half), &err), -EINVAL);
    assert_false(holiday_exists(hs, "ok-day"));
    assert_int_equal(holiday_count(hs), 16);
    /* A shipped slug redefined in a second file is refused. */
    assert_int_equal(holiday_set_load_text(hs, "dup.yaml", dup, strlen(dup), &err), -EINVAL);
    assert_non_null(strstr(err.msg, "western.yaml"));
    assert_int_equal(holiday_set_load_dir("/nonexistent/calendars", &out, &err), -ENOENT);
    assert_null(out);
    free(missing);
    holiday_set_free(hs);
}

/* ---- cost (printed, never asserted) ------------------------------------ */

static void
test_measure_conversion_cost(void **state)
{
    static const char *const zones[] = {
        "Asia/Shanghai", "America/New_York", "Europe/London",   "Asia/Tokyo",
        "Europe/Paris",  "Asia/Kolkata",     "America/Chicago", "UTC"};
    const int n = 100000;
    double t0, t1;
    ntime_t t = 0, sink = 0;
    struct cal_local l;
    (void)state;
    t0 = now_sec();
    for (int i = 0; i < n; i++) {
        cal_local_to_utc("Asia/Shanghai", 2027, 1 + i % 12, 1 + i % 28, i % 24, i % 60, &t);
        sink += t;
    }
    t1 = now_sec();
    print_message("cal_local_to_utc, one zone (cached calendar): %.2f us/call, %.0f calls/s\n",
                  (t1 - t0) * 1e6 / n, n / (t1 - t0));
    t0 = now_sec();
    for (int i = 0; i < n; i++) {
        cal_local_to_utc(zones[i % 8], 2027, 1 + i % 12, 1 + i % 28, i % 24, i % 60, &t);
        sink += t;
    }
    t1 = now_sec();
    print_message("cal_local_to_utc, 8 zones round-robin (all cached): %.2f us/call\n",
                  (t1 - t0) * 1e6 / n);
    {
        int nz = 0;
        char **all = all_zones(&nz);
        t0 = now_sec();
        for (int i = 0; i < n / 10; i++) {
            cal_local_to_utc(all[i % nz], 2027, 1 + i % 12, 1 + i % 28, i % 24, i % 60, &t);
            sink += t;
        }
        t1 = now_sec();
        print_message("cal_local_to_utc, %d zones round-robin (cache miss, opens a calendar "
                      "each call): %.2f us/call\n",
                      nz, (t1 - t0) * 1e6 / (n / 10));
        for (int i = 0; i < nz; i++)
            free(all[i]);
        free(all);
    }
    t0 = now_sec();
    for (int i = 0; i < n; i++) {
        cal_utc_to_local("America/New_York", 1800000000 + (ntime_t)i * 3607, &l);
        sink += l.hour;
    }
    t1 = now_sec();
    print_message("cal_utc_to_local, one zone: %.2f us/call\n", (t1 - t0) * 1e6 / n);
    t0 = now_sec();
    for (int i = 0; i < n; i++) {
        struct cal_lunar lu;
        cal_lunar_from_solar(1950 + i % 100, 1 + i % 12, 1 + i % 28, &lu);
        sink += lu.day;
    }
    t1 = now_sec();
    print_message("cal_lunar_from_solar: %.3f us/call; lunar table built once in %.1f ms\n",
                  (t1 - t0) * 1e6 / n, cal_lunar_build_usec() / 1000.0);
    {
        struct holiday_set *hs = load_shipped();
        const char *slugs[] = {"qingming", "laba", "easter", "black-friday"};
        for (int k = 0; k < 4; k++) {
            int hits = 0, ky;
            t0 = now_sec();
            for (int i = 0; i < n / 10; i++) {
                int y, m, d;
                civil_from_days(days_from_civil(2026, 1, 1) + i % 3650, &y, &m, &d);
                hits += holiday_on(hs, slugs[k], y, m, d, &ky);
            }
            t1 = now_sec();
            print_message("holiday_on(%s): %.2f us/call\n", slugs[k], (t1 - t0) * 1e6 / (n / 10));
            sink += hits;
        }
        holiday_set_free(hs);
    }
    (void)sink;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        /* First, so that its threads race the one-time lunar table build. */
        cmocka_unit_test(test_concurrent_threads_agree),
        cmocka_unit_test(test_thread_exit_releases_zone_cache),
        cmocka_unit_test(test_zone_valid_accepts_iana_system_ids),
        cmocka_unit_test(test_zone_valid_rejects_unknown_and_custom_ids),
        cmocka_unit_test(test_unknown_zone_is_an_error_not_gmt),
        cmocka_unit_test(test_shanghai_0900_is_0100z),
        cmocka_unit_test(test_dst_gap_fires_at_first_instant_after_gap),
        cmocka_unit_test(test_dst_overlap_fires_at_first_occurrence),
        cmocka_unit_test(test_local_to_utc_rejects_impossible_wall_times),
        cmocka_unit_test(test_utc_to_local_known_offsets_and_weekdays),
        cmocka_unit_test(test_utc_to_local_round_trips),
        cmocka_unit_test(test_every_icu_zone_validates_and_survives_eviction),
        cmocka_unit_test(test_feb29_anniversary_moves_to_feb28_or_mar1),
        cmocka_unit_test(test_lunar_spring_festival_2027_and_2030_where_icu_is_wrong),
        cmocka_unit_test(test_lunar_published_spring_festivals_2025_2050),
        cmocka_unit_test(test_lunar_every_month_matches_python_lunardate),
        cmocka_unit_test(test_lunar_every_day_round_trips),
        cmocka_unit_test(test_lunar_corrects_liblunar_2057_and_2060),
        cmocka_unit_test(test_lunar_nonexistent_dates_are_enoent),
        cmocka_unit_test(test_cn_festivals_match_lunardate_table_1901_2099),
        cmocka_unit_test(test_festival_year_is_the_lunar_year),
        cmocka_unit_test(test_holiday_on_finds_each_occurrence_once),
        cmocka_unit_test(test_qingming_matches_ephemeris_1901_2099),
        cmocka_unit_test(test_qingming_matches_shouxing_formula_and_published_dates),
        cmocka_unit_test(test_all_solar_terms_match_ephemeris_except_at_midnight),
        cmocka_unit_test(test_western_holidays_match_dateutil_1901_2099),
        cmocka_unit_test(test_holiday_year_ranges),
        cmocka_unit_test(test_shipped_calendars_define_the_design_slugs),
        cmocka_unit_test(test_holiday_suggest_offers_the_near_slug),
        cmocka_unit_test(test_rules_nth_weekday_last_fifth_and_offsets),
        cmocka_unit_test(test_calendar_file_errors_are_located),
        cmocka_unit_test(test_bad_date_error_shows_file_line_col_and_caret),
        cmocka_unit_test(test_load_dir_rejects_slug_defined_in_two_files),
        cmocka_unit_test(test_load_errors_leave_the_set_unchanged),
        cmocka_unit_test(test_measure_conversion_cost),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    cal_thread_cleanup();
    /* Frees ICU's caches so valgrind's leak report is about our code. */
    u_cleanup();
    return r;
}
