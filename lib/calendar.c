/*
 * calendar.c: what day and hour it is where a customer lives, and which day a
 * holiday falls on.
 *
 * Owns three things:
 *  1. Time zones through ICU's ucal. ICU calendar handles must not be shared
 *     between threads and opening one costs a zone load, so each thread keeps a
 *     few open handles keyed by zone name (a pthread key frees them when the
 *     thread ends). The gap/overlap policy of DESIGN.md "Time" is ICU's
 *     UCAL_WALLTIME_NEXT_VALID / UCAL_WALLTIME_FIRST.
 *  2. The Chinese lunar calendar. ICU's Chinese calendar is astronomical and
 *     disagrees with the official calendar in real years (2027, 2030), so the
 *     month table comes from liblunar-date (table-based, 1900-2100). Its
 *     objects are neither cheap (each one parses a holiday key file and
 *     compiles regexes to format) nor thread-safe (a static buffer, an
 *     unlocked static init flag), so the whole table is read once under
 *     pthread_once into a static array of month starts and lengths; after
 *     that every conversion is plain arithmetic with no lock.
 *  3. Holiday calendars: YAML files naming holidays by rule (fixed date, lunar
 *     date, nth weekday, Easter, solar term) plus a day offset. The format is
 *     documented at the top of calendars/cn.yaml and calendars/western.yaml.
 *
 * Solar terms (Qingming) are computed here from the Sun's apparent longitude
 * (abridged VSOP87): liblunar-date computes terms with a mean-motion formula
 * that can be a day off, and hands them out only as a translated holiday
 * string built in a static buffer.
 */
#include "calendar.h"

#include <dirent.h>
#include <errno.h>
#include <lunar-date/lunar-date.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unicode/ucal.h>
#include <unicode/ustring.h>

#include "ynode.h"

/* ==== time zones ===================================================== */

#define TZ_NAME_MAX 64
#define ZCACHE_SLOTS 32

/* A thread's open calendars, least recently used evicted. Opening one costs
 * ~12 us (the zone's rules are loaded and parsed) against ~0.2 us for a
 * conversion on an open one (measured in test_calendar), and a customer base
 * rarely spans more than a few dozen zones. */
struct zcache {
    unsigned long clock;
    struct {
        char tz[TZ_NAME_MAX];
        UCalendar *cal;
        unsigned long used;
    } slot[ZCACHE_SLOTS];
};

static pthread_key_t zcache_key;
static pthread_once_t zcache_once = PTHREAD_ONCE_INIT;

static void
zcache_free(void *p)
{
    struct zcache *zc = p;
    if (!zc)
        return;
    for (int i = 0; i < ZCACHE_SLOTS; i++)
        if (zc->slot[i].cal)
            ucal_close(zc->slot[i].cal);
    free(zc);
}

static void
zcache_key_init(void)
{
    /* Cannot fail short of EAGAIN on key exhaustion; then every call opens
     * and closes its own calendar (see zone_open). */
    (void)pthread_key_create(&zcache_key, zcache_free);
}

void
cal_thread_cleanup(void)
{
    pthread_once(&zcache_once, zcache_key_init);
    zcache_free(pthread_getspecific(zcache_key));
    pthread_setspecific(zcache_key, NULL);
}

/* Zone names are ASCII ("America/Argentina/Buenos_Aires", "Etc/GMT+5"); the
 * check keeps u_charsToUChars within the invariant character set. */
static int
zone_to_uchars(const char *tz, UChar *out, size_t cap)
{
    size_t n;
    if (!tz)
        return -EINVAL;
    n = strlen(tz);
    if (n == 0 || n >= cap || n >= TZ_NAME_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = tz[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '_' || c == '-' || c == '+'))
            return -EINVAL;
    }
    u_charsToUChars(tz, out, (int32_t)n + 1);
    return (int)n;
}

bool
cal_zone_valid(const char *tz)
{
    UChar uz[TZ_NAME_MAX + 1], canon[TZ_NAME_MAX * 2];
    UBool system_id = 0;
    UErrorCode st = U_ZERO_ERROR;
    int n = zone_to_uchars(tz, uz, TZ_NAME_MAX + 1);
    if (n < 0)
        return false;
    /* ICU maps an unknown id to GMT without complaint when a calendar is
     * opened; canonicalisation is the call that admits it does not know it.
     * isSystemID is false for custom ids such as "GMT+05:00". */
    ucal_getCanonicalTimeZoneID(uz, n, canon, (int32_t)(sizeof(canon) / sizeof(canon[0])),
                                &system_id, &st);
    return U_SUCCESS(st) && system_id;
}

static UCalendar *
zone_open_new(const char *tz)
{
    UChar uz[TZ_NAME_MAX + 1];
    UErrorCode st = U_ZERO_ERROR;
    UCalendar *cal;
    int n;
    if (!cal_zone_valid(tz))
        return NULL;
    n = zone_to_uchars(tz, uz, TZ_NAME_MAX + 1);
    /* UCAL_GREGORIAN whatever the locale; the locale only picks the first
     * day of the week, which nothing here reads. */
    cal = ucal_open(uz, n, "en_US_POSIX", UCAL_GREGORIAN, &st);
    if (U_FAILURE(st) || !cal)
        return NULL;
    ucal_setAttribute(cal, UCAL_SKIPPED_WALL_TIME, UCAL_WALLTIME_NEXT_VALID);
    ucal_setAttribute(cal, UCAL_REPEATED_WALL_TIME, UCAL_WALLTIME_FIRST);
    ucal_setAttribute(cal, UCAL_LENIENT, 1);
    /* Proleptic Gregorian like days_from_civil: move the Julian cutover of
     * 1582 out of reach so year 1000 means the same thing everywhere. */
    st = U_ZERO_ERROR;
    ucal_setGregorianChange(cal, -8.64e15, &st);
    return cal;
}

/* A calendar for tz owned by the calling thread, or NULL if tz is unknown.
 * *own is set when the caller must close it (no thread cache available). */
static UCalendar *
zone_open(const char *tz, bool *own)
{
    struct zcache *zc;
    UCalendar *cal;
    int victim;
    *own = false;
    if (!tz || strlen(tz) >= TZ_NAME_MAX)
        return NULL;
    pthread_once(&zcache_once, zcache_key_init);
    zc = pthread_getspecific(zcache_key);
    if (!zc) {
        zc = xcalloc(1, sizeof(*zc));
        if (pthread_setspecific(zcache_key, zc) != 0) {
            free(zc);
            *own = true;
            return zone_open_new(tz);
        }
    }
    victim = 0;
    for (int i = 0; i < ZCACHE_SLOTS; i++) {
        if (zc->slot[i].cal && strcmp(zc->slot[i].tz, tz) == 0) {
            zc->slot[i].used = ++zc->clock;
            return zc->slot[i].cal;
        }
        if (zc->slot[i].used < zc->slot[victim].used)
            victim = i; /* empty slots have used == 0 and go first */
    }
    cal = zone_open_new(tz);
    if (!cal)
        return NULL;
    if (zc->slot[victim].cal)
        ucal_close(zc->slot[victim].cal);
    zc->slot[victim].cal = cal;
    zc->slot[victim].used = ++zc->clock;
    snprintf(zc->slot[victim].tz, sizeof(zc->slot[victim].tz), "%s", tz);
    return cal;
}

static void
zone_done(UCalendar *cal, bool own)
{
    if (own && cal)
        ucal_close(cal);
}

int
cal_local_to_utc(const char *tz, int y, int m, int d, int hh, int mi, ntime_t *out)
{
    UErrorCode st = U_ZERO_ERROR;
    UCalendar *cal;
    UDate ms;
    bool own;
    if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m) || hh < 0 ||
        hh > 23 || mi < 0 || mi > 59)
        return -EINVAL;
    cal = zone_open(tz, &own);
    if (!cal)
        return -ENOENT;
    /* clear() resets the fields but keeps the zone and the wall-time
     * attributes, so a cached handle behaves like a fresh one. */
    ucal_clear(cal);
    ucal_setDateTime(cal, y, m - 1, d, hh, mi, 0, &st);
    ucal_set(cal, UCAL_MILLISECOND, 0);
    ms = ucal_getMillis(cal, &st);
    zone_done(cal, own);
    if (U_FAILURE(st))
        return -EINVAL;
    *out = (ntime_t)floor(ms / 1000.0);
    return 0;
}

int
cal_utc_to_local(const char *tz, ntime_t t, struct cal_local *out)
{
    /* Years 1..9999 in UTC; the zone may shift that by a day at the ends. */
    static const ntime_t lo = -62135596800LL, hi = 253402300799LL;
    UErrorCode st = U_ZERO_ERROR;
    UCalendar *cal;
    bool own;
    if (t < lo || t > hi)
        return -ERANGE;
    cal = zone_open(tz, &own);
    if (!cal)
        return -ENOENT;
    ucal_setMillis(cal, (UDate)t * 1000.0, &st);
    out->year = ucal_get(cal, UCAL_EXTENDED_YEAR, &st);
    out->month = ucal_get(cal, UCAL_MONTH, &st) + 1;
    out->day = ucal_get(cal, UCAL_DATE, &st);
    out->hour = ucal_get(cal, UCAL_HOUR_OF_DAY, &st);
    out->minute = ucal_get(cal, UCAL_MINUTE, &st);
    out->second = ucal_get(cal, UCAL_SECOND, &st);
    out->wday = ucal_get(cal, UCAL_DAY_OF_WEEK, &st) - 1;
    out->utc_offset =
        (ucal_get(cal, UCAL_ZONE_OFFSET, &st) + ucal_get(cal, UCAL_DST_OFFSET, &st)) / 1000;
    zone_done(cal, own);
    return U_FAILURE(st) ? -EINVAL : 0;
}

/* ==== lunar calendar ================================================= */

#define LUNAR_YEARS (CAL_LUNAR_MAX_YEAR - CAL_LUNAR_MIN_YEAR + 1)

/* One lunar year: its first day as days since 1970-01-01, the months in
 * order (a leap month sits right after the month it repeats), their lengths. */
struct lunar_year {
    int32_t start;
    uint8_t nmonths; /* 12 or 13 */
    uint8_t leap;    /* number of the repeated month, 0 if none */
    uint8_t len[13]; /* 29 or 30, in calendar order */
    int16_t total;   /* days in the year */
};

static struct lunar_year lunar_tab[LUNAR_YEARS];
static int lunar_status = -EIO;
static long lunar_usec;
static pthread_once_t lunar_once = PTHREAD_ONCE_INIT;
static LunarDate *volatile lunar_keep; /* see lunar_build; volatile: never read */

/* Index of month (lmonth, leap) within lunar year ly, or -ENOENT. */
static int
lunar_month_index(const struct lunar_year *ly, int lmonth, bool leap)
{
    if (leap)
        return ly->leap == lmonth ? lmonth : -ENOENT;
    return ly->leap && lmonth > ly->leap ? lmonth : lmonth - 1;
}

/* Reads the next decimal number from *p; liblunar-date hands dates back only
 * as formatted text. */
static int
next_num(const char **p, int *out)
{
    char *end;
    long v;
    while (**p == ' ')
        (*p)++;
    errno = 0;
    v = strtol(*p, &end, 10);
    if (end == *p || errno || v < 0 || v > 100000)
        return -EINVAL;
    *out = (int)v;
    *p = end;
    return 0;
}

/* The solar day (days since the epoch) of lunar y-m-d, -ENOENT if the
 * library says that date does not exist. */
static int
ld_solar_day(LunarDate *ld, int y, int m, int d, bool leap, int32_t *out)
{
    GError *e = NULL;
    char *s;
    const char *p;
    int sy, sm, sd, r;
    lunar_date_set_lunar_date(ld, (GDateYear)y, (GDateMonth)m, (GDateDay)d, 0, leap, &e);
    if (e) {
        g_error_free(e);
        return -ENOENT;
    }
    s = lunar_date_strftime(ld, "%(year) %(month) %(day)");
    p = s;
    r = next_num(&p, &sy);
    if (r == 0)
        r = next_num(&p, &sm);
    if (r == 0)
        r = next_num(&p, &sd);
    g_free(s);
    if (r < 0 || sm < 1 || sm > 12 || sd < 1 || sd > days_in_month(sy, sm))
        return -EIO;
    *out = (int32_t)days_from_civil(sy, sm, sd);
    return 0;
}

static int
lunar_build_year(LunarDate *ld, int y, struct lunar_year *ly)
{
    int32_t starts[14];
    int n = 0, r;
    memset(ly, 0, sizeof(*ly));
    for (int m = 1; m <= 12; m++) {
        int32_t s;
        if ((r = ld_solar_day(ld, y, m, 1, false, &s)) < 0)
            return -EIO;
        starts[n++] = s;
        if (ld_solar_day(ld, y, m, 1, true, &s) == 0) {
            if (ly->leap)
                return -EIO; /* two leap months: the table is corrupt */
            ly->leap = (uint8_t)m;
            starts[n++] = s;
        }
    }
    ly->nmonths = (uint8_t)n;
    ly->start = starts[0];
    if (y < CAL_LUNAR_MAX_YEAR) {
        if ((r = ld_solar_day(ld, y + 1, 1, 1, false, &starts[n])) < 0)
            return -EIO;
    } else {
        /* No following year to measure against: ask whether day 30 exists. */
        int32_t s;
        bool last_leap = ly->leap == 12;
        starts[n] = starts[n - 1] + (ld_solar_day(ld, y, 12, 30, last_leap, &s) == 0 ? 30 : 29);
    }
    for (int i = 0; i < n; i++) {
        int len = starts[i + 1] - starts[i];
        if (len != 29 && len != 30)
            return -EIO;
        ly->len[i] = (uint8_t)len;
        ly->total = (int16_t)(ly->total + len);
    }
    return 0;
}

/*
 * Months where liblunar-date 3.0.1's table disagrees with both
 * python3-lunardate and the astronomy the official calendar is defined by
 * (GB/T 33661-2017: a month begins on the day of the new moon, China Standard
 * Time). Each pair moves one day between two neighbouring months, so the
 * year's length is unchanged. A fix applies only if the library still has
 * the old length, so a corrected liblunar-date makes this a no-op.
 *  - 2060: the new moon is at 10:10 UTC = 18:10 CST on 30 April (PyEphem),
 *    so the 4th month starts on 30 April; liblunar-date says 1 May.
 *  - 2057: the new moon is at 23:59:50 CST on 28 September, ten seconds
 *    before midnight; python3-lunardate and the ephemeris both start the 9th
 *    month on 28 September (Double Ninth on 6 October), liblunar-date on 29.
 * tests/data/lunar-months.tsv checks every month 1900-2099 against
 * python3-lunardate, so a new disagreement fails the unit tests.
 */
static const struct {
    int year, month;
    uint8_t lib_len, len;
} lunar_fixes[] = {
    {2057, 8, 30, 29},
    {2057, 9, 29, 30},
    {2060, 3, 30, 29},
    {2060, 4, 29, 30},
};

static void
lunar_apply_fixes(void)
{
    for (size_t i = 0; i + 1 < sizeof(lunar_fixes) / sizeof(lunar_fixes[0]); i += 2) {
        struct lunar_year *ly = &lunar_tab[lunar_fixes[i].year - CAL_LUNAR_MIN_YEAR];
        int a = lunar_month_index(ly, lunar_fixes[i].month, false);
        int b = lunar_month_index(ly, lunar_fixes[i + 1].month, false);
        if (a < 0 || b < 0 || ly->len[a] != lunar_fixes[i].lib_len ||
            ly->len[b] != lunar_fixes[i + 1].lib_len)
            continue;
        ly->len[a] = lunar_fixes[i].len;
        ly->len[b] = lunar_fixes[i + 1].len;
    }
}

static void
lunar_build(void)
{
    struct timespec t0, t1;
    LunarDate *ld;
    int r = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ld = lunar_date_new();
    for (int i = 0; i < LUNAR_YEARS && r == 0; i++) {
        r = lunar_build_year(ld, CAL_LUNAR_MIN_YEAR + i, &lunar_tab[i]);
        if (r == 0 && i > 0 &&
            lunar_tab[i].start != lunar_tab[i - 1].start + lunar_tab[i - 1].total)
            r = -EIO; /* years must tile the timeline */
    }
    if (r == 0)
        lunar_apply_fixes();
    /* Kept, not freed: in liblunar-date 3.0.1 lunar_date_free() leaks the
     * object and g_object_unref() leaks its fields, while newer releases
     * free the fields in the finalizer too, so free()+unref() would be a
     * double free there. One object alive for the process is harmless. */
    lunar_keep = ld;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    lunar_usec = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
    lunar_status = r;
}

static int
lunar_ready(void)
{
    pthread_once(&lunar_once, lunar_build);
    return lunar_status;
}

long
cal_lunar_build_usec(void)
{
    lunar_ready();
    return lunar_usec;
}

static int
lunar_year_of(int lyear, const struct lunar_year **out)
{
    int r = lunar_ready();
    if (r < 0)
        return r;
    if (lyear < CAL_LUNAR_MIN_YEAR || lyear > CAL_LUNAR_MAX_YEAR)
        return -ERANGE;
    *out = &lunar_tab[lyear - CAL_LUNAR_MIN_YEAR];
    return 0;
}

int
cal_lunar_from_solar(int y, int m, int d, struct cal_lunar *out)
{
    const struct lunar_year *ly;
    int32_t z;
    int lo = 0, hi = LUNAR_YEARS - 1, r;
    if ((r = lunar_ready()) < 0)
        return r;
    if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
        return -EINVAL;
    z = (int32_t)days_from_civil(y, m, d);
    if (z < lunar_tab[0].start ||
        z >= lunar_tab[LUNAR_YEARS - 1].start + lunar_tab[LUNAR_YEARS - 1].total)
        return -ERANGE;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (lunar_tab[mid].start <= z)
            lo = mid;
        else
            hi = mid - 1;
    }
    ly = &lunar_tab[lo];
    z -= ly->start;
    for (int i = 0; i < ly->nmonths; i++) {
        if (z < ly->len[i]) {
            bool leap = ly->leap && i == ly->leap;
            out->year = CAL_LUNAR_MIN_YEAR + lo;
            out->month = ly->leap && i >= ly->leap ? i : i + 1;
            out->day = z + 1;
            out->leap = leap;
            return 0;
        }
        z -= ly->len[i];
    }
    return -EIO; /* unreachable when the table tiles */
}

int
cal_lunar_month_days(int lyear, int lmonth, bool leap)
{
    const struct lunar_year *ly;
    int r, i;
    if (lmonth < 1 || lmonth > 12)
        return -EINVAL;
    if ((r = lunar_year_of(lyear, &ly)) < 0)
        return r;
    if ((i = lunar_month_index(ly, lmonth, leap)) < 0)
        return i;
    return ly->len[i];
}

int
cal_lunar_leap_month(int lyear)
{
    const struct lunar_year *ly;
    int r = lunar_year_of(lyear, &ly);
    return r < 0 ? r : ly->leap;
}

int
cal_solar_from_lunar(int lyear, int lmonth, int lday, bool leap, int *y, int *m, int *d)
{
    const struct lunar_year *ly;
    int r, idx;
    int32_t z;
    if (lmonth < 1 || lmonth > 12 || lday < 1 || lday > 30)
        return -EINVAL;
    if ((r = lunar_year_of(lyear, &ly)) < 0)
        return r;
    if ((idx = lunar_month_index(ly, lmonth, leap)) < 0)
        return idx;
    if (lday > ly->len[idx])
        return -ENOENT;
    z = ly->start;
    for (int i = 0; i < idx; i++)
        z += ly->len[i];
    civil_from_days(z + lday - 1, y, m, d);
    return 0;
}

/* ==== solar terms ==================================================== */

static const char *const term_names[24] = {
    "xiaohan", "dahan",   "lichun",    "yushui",      "jingzhe", "chunfen", "qingming", "guyu",
    "lixia",   "xiaoman", "mangzhong", "xiazhi",      "xiaoshu", "dashu",   "liqiu",    "chushu",
    "bailu",   "qiufen",  "hanlu",     "shuangjiang", "lidong",  "xiaoxue", "daxue",    "dongzhi",
};

int
cal_solar_term_index(const char *name)
{
    for (int i = 0; i < 24; i++)
        if (name && strcmp(name, term_names[i]) == 0)
            return i;
    return -ENOENT;
}

const char *
cal_solar_term_name(int index)
{
    return index >= 0 && index < 24 ? term_names[index] : NULL;
}

/* TT - UT in seconds: the Espenak-Meeus polynomials (NASA eclipse site,
 * "Polynomial expressions for Delta T"). A second of error here moves a term
 * by a second; beyond the present the true value is unknown by up to a
 * minute or two by 2100, which limits any published table as much. */
static double
delta_t(double y)
{
    double t;
    if (y < 1920) {
        t = y - 1900;
        return -2.79 + 1.494119 * t - 0.0598939 * t * t + 0.0061966 * t * t * t -
               0.000197 * t * t * t * t;
    }
    if (y < 1941) {
        t = y - 1920;
        return 21.20 + 0.84493 * t - 0.076100 * t * t + 0.0020936 * t * t * t;
    }
    if (y < 1961) {
        t = y - 1950;
        return 29.07 + 0.407 * t - t * t / 233 + t * t * t / 2547;
    }
    if (y < 1986) {
        t = y - 1975;
        return 45.45 + 1.067 * t - t * t / 260 - t * t * t / 718;
    }
    if (y < 2005) {
        t = y - 2000;
        return 63.86 + 0.3345 * t - 0.060374 * t * t + 0.0017275 * t * t * t +
               0.000651814 * t * t * t * t + 0.00002373599 * t * t * t * t * t;
    }
    if (y < 2050) {
        t = y - 2000;
        return 62.92 + 0.32217 * t + 0.005589 * t * t;
    }
    t = (y - 1820) / 100;
    return -20 + 32 * t * t - 0.5628 * (2150 - y);
}

static double
norm360(double x)
{
    x = fmod(x, 360.0);
    return x < 0 ? x + 360.0 : x;
}

/* The Earth's heliocentric longitude from VSOP87 as abridged in Meeus,
 * "Astronomical Algorithms" (2nd ed.), appendix III: terms A cos(B + C tau),
 * A in 1e-8 radian, tau in Julian millennia from J2000.0. The abridgement is
 * good to about one arcsecond, i.e. the Sun's place to some 25 seconds of
 * time, which leaves delta-T as the larger uncertainty. */
struct vsop_term {
    double a, b, c;
};

static const struct vsop_term earth_l0[] = {
    {175347046, 0, 0},
    {3341656, 4.6692568, 6283.0758500},
    {34894, 4.62610, 12566.15170},
    {3497, 2.7441, 5753.3849},
    {3418, 2.8289, 3.5231},
    {3136, 3.6277, 77713.7715},
    {2676, 4.4181, 7860.4194},
    {2343, 6.1352, 3930.2097},
    {1324, 0.7425, 11506.7698},
    {1273, 2.0371, 529.6910},
    {1199, 1.1096, 1577.3435},
    {990, 5.233, 5884.927},
    {902, 2.045, 26.298},
    {857, 3.508, 398.149},
    {780, 1.179, 5223.694},
    {753, 2.533, 5507.553},
    {505, 4.583, 18849.228},
    {492, 4.205, 775.523},
    {357, 2.920, 0.067},
    {317, 5.849, 11790.629},
    {284, 1.899, 796.298},
    {271, 0.315, 10977.079},
    {243, 0.345, 5486.778},
    {206, 4.806, 2544.314},
    {205, 1.869, 5573.143},
    {202, 2.458, 6069.777},
    {156, 0.833, 213.299},
    {132, 3.411, 2942.463},
    {126, 1.083, 20.775},
    {115, 0.645, 0.980},
    {103, 0.636, 4694.003},
    {102, 0.976, 15720.839},
    {102, 4.267, 7.114},
    {99, 6.21, 2146.17},
    {98, 0.68, 155.42},
    {86, 5.98, 161000.69},
    {85, 1.30, 6275.96},
    {85, 3.67, 71430.70},
    {80, 1.81, 17260.15},
    {79, 3.04, 12036.46},
    {75, 1.76, 5088.63},
    {74, 3.50, 3154.69},
    {74, 4.68, 801.82},
    {70, 0.83, 9437.76},
    {62, 3.98, 8827.39},
    {61, 1.82, 7084.90},
    {57, 2.78, 6286.60},
    {56, 4.39, 14143.50},
    {56, 3.47, 6279.55},
    {52, 0.19, 12139.55},
    {52, 1.33, 1748.02},
    {51, 0.28, 5856.48},
    {49, 0.49, 1194.45},
    {41, 5.37, 8429.24},
    {41, 2.40, 19651.05},
    {39, 6.17, 10447.39},
    {37, 6.04, 10213.29},
    {37, 2.57, 1059.38},
    {36, 1.71, 2352.87},
    {36, 1.78, 6812.77},
    {33, 0.59, 17789.85},
    {30, 0.44, 83996.85},
    {30, 2.74, 1349.87},
    {25, 3.16, 4690.48},
};

static const struct vsop_term earth_l1[] = {
    {628331966747.0, 0, 0},     {206059, 2.678235, 6283.075850},
    {4303, 2.6351, 12566.1517}, {425, 1.590, 3.523},
    {119, 5.796, 26.298},       {109, 2.966, 1577.344},
    {93, 2.59, 18849.23},       {72, 1.14, 529.69},
    {68, 1.87, 398.15},         {67, 4.41, 5507.55},
    {59, 2.89, 5223.69},        {56, 2.17, 155.42},
    {45, 0.40, 796.30},         {36, 0.47, 775.52},
    {29, 2.65, 7.11},           {21, 5.34, 0.98},
    {19, 1.85, 5486.78},        {19, 4.97, 213.30},
    {17, 2.99, 6275.96},        {16, 0.03, 2544.31},
    {16, 1.43, 2146.17},        {15, 1.21, 10977.08},
    {12, 2.83, 1748.02},        {12, 3.26, 5088.63},
    {12, 5.27, 1194.45},        {12, 2.08, 4694.00},
    {11, 0.77, 553.57},         {10, 1.30, 6286.60},
    {10, 4.24, 1349.87},        {9, 2.70, 242.73},
    {9, 5.64, 951.72},          {8, 5.30, 2352.87},
    {6, 2.65, 9437.76},         {6, 4.67, 4690.48},
};

static const struct vsop_term earth_l2[] = {
    {52919, 0, 0},     {8720, 1.0721, 6283.0758}, {309, 0.867, 12566.152}, {27, 0.05, 3.52},
    {16, 5.19, 26.30}, {16, 3.68, 155.42},        {10, 0.76, 18849.23},    {9, 2.06, 77713.77},
    {7, 0.83, 775.52}, {5, 4.66, 1577.34},        {4, 1.03, 7.11},         {4, 3.44, 5573.14},
    {3, 5.14, 796.30}, {3, 6.05, 5507.55},        {3, 1.19, 242.73},       {3, 6.12, 529.69},
    {3, 0.31, 398.15}, {3, 2.28, 553.57},         {2, 4.38, 5223.69},      {2, 3.75, 0.98},
};

static const struct vsop_term earth_l3[] = {
    {289, 5.844, 6283.076}, {35, 0, 0},          {17, 5.49, 12566.15}, {3, 5.20, 155.42},
    {1, 4.72, 3.52},        {1, 5.30, 18849.23}, {1, 5.97, 242.73},
};

static const struct vsop_term earth_l4[] = {
    {114, 3.142, 0}, {8, 4.13, 6283.08}, {1, 3.84, 12566.15}};

static const struct vsop_term earth_l5[] = {{1, 3.14, 0}};

static double
vsop_sum(const struct vsop_term *t, size_t n, double tau)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += t[i].a * cos(t[i].b + t[i].c * tau);
    return s;
}

#define VSOP(t, tau) vsop_sum((t), sizeof(t) / sizeof((t)[0]), (tau))

/* Apparent geocentric longitude of the Sun in degrees at Julian Ephemeris
 * Day jde (Meeus ch. 25, "higher accuracy"): the Earth's VSOP87 longitude
 * plus 180 degrees, moved to the FK5 frame, plus nutation in longitude (the
 * four largest terms, Meeus ch. 22) and annual aberration. */
static double
sun_apparent_longitude(double jde)
{
    const double rad = M_PI / 180.0;
    double tau = (jde - 2451545.0) / 365250.0, T = tau * 10.0;
    double L = (VSOP(earth_l0, tau) +
                tau * (VSOP(earth_l1, tau) +
                       tau * (VSOP(earth_l2, tau) +
                              tau * (VSOP(earth_l3, tau) +
                                     tau * (VSOP(earth_l4, tau) + tau * VSOP(earth_l5, tau)))))) /
               1e8;
    double omega = (125.04452 - 1934.136261 * T) * rad;
    double ls = (280.4665 + 36000.7698 * T) * rad, lm = (218.3165 + 481267.8813 * T) * rad;
    double dpsi = -17.20 * sin(omega) - 1.32 * sin(2 * ls) - 0.23 * sin(2 * lm) +
                  0.21 * sin(2 * omega); /* arcseconds */
    double M = (357.52911 + 35999.05029 * T) * rad, e = 0.016708634 - 0.000042037 * T;
    double R = 1.000001018 * (1 - e * e) / (1 + e * cos(M + 1.914602 * rad * sin(M)));
    return norm360(L / rad + 180.0 + (-0.09033 + dpsi - 20.4898 / R) / 3600.0);
}

/* The UTC instant of a term as a Julian Day. */
static double
solar_term_jd(int year, int index)
{
    /* Term 0 (xiaohan, 285 degrees) is near 6 January and the terms are
     * about 15.2 days apart; Newton steps on the Sun's mean motion converge
     * from there in three or four iterations. */
    double target = norm360(285.0 + 15.0 * index);
    double jd = 2440587.5 + (double)days_from_civil(year, 1, 1) + 5.0 + 15.2184 * index;
    double dt = delta_t(year + (5.0 + 15.2184 * index) / 365.25) / 86400.0;
    for (int i = 0; i < 20; i++) {
        double diff = target - sun_apparent_longitude(jd + dt);
        if (diff > 180)
            diff -= 360;
        else if (diff < -180)
            diff += 360;
        jd += diff / 0.98564736;
        if (fabs(diff) < 1e-7)
            break;
    }
    return jd;
}

/* Computed dates (days since the epoch + 1; 0 = not yet). A holiday check
 * per customer per day would otherwise redo ~130 cosines several times.
 * Entries are filled lazily by whichever thread gets there first; the value
 * is deterministic, so racing writers store the same number, and relaxed
 * atomics keep that well defined without a lock. */
static _Atomic int32_t term_days[2099 - 1901 + 1][24];

int
cal_solar_term_date(int year, int index, int *m, int *d, ntime_t *instant)
{
    const double unix_jd = 2440587.5; /* JD of 1970-01-01T00:00Z */
    int32_t cached;
    double jd = 0;
    int y;
    if (index < 0 || index > 23)
        return -EINVAL;
    if (year < 1901 || year > 2099)
        return -ERANGE;
    cached = atomic_load_explicit(&term_days[year - 1901][index], memory_order_relaxed);
    if (!cached || instant) {
        jd = solar_term_jd(year, index);
        /* The Chinese calendar counts days in China Standard Time (UTC+8). */
        cached = (int32_t)floor(jd - unix_jd + 8.0 / 24.0) + 1;
        atomic_store_explicit(&term_days[year - 1901][index], cached, memory_order_relaxed);
    }
    civil_from_days(cached - 1, &y, m, d);
    if (instant)
        *instant = (ntime_t)llround((jd - unix_jd) * 86400.0);
    return y == year ? 0 : -ERANGE;
}

/* ==== small date helpers ============================================= */

void
cal_anniversary(int year, int month, int day, bool feb29_to_mar1, int *m, int *d)
{
    *m = month;
    *d = day;
    if (month == 2 && day == 29 && !is_leap_year(year)) {
        if (feb29_to_mar1) {
            *m = 3;
            *d = 1;
        } else {
            *d = 28;
        }
    }
}

/* 0 = Sunday; 1970-01-01 was a Thursday. */
static int
weekday_of(int64_t days)
{
    int w = (int)((days + 4) % 7);
    return w < 0 ? w + 7 : w;
}

/* Gregorian Easter Sunday: the anonymous algorithm (Meeus/Jones/Butcher). */
static void
easter_western(int y, int *m, int *d)
{
    int a = y % 19, b = y / 100, c = y % 100, dd = b / 4, e = b % 4, f = (b + 8) / 25;
    int g = (b - f + 1) / 3, h = (19 * a + b - dd - g + 15) % 30, i = c / 4, k = c % 4;
    int l = (32 + 2 * e + 2 * i - h - k) % 7, mm = (a + 11 * h + 22 * l) / 451;
    *m = (h + l - 7 * mm + 114) / 31;
    *d = (h + l - 7 * mm + 114) % 31 + 1;
}

/* Orthodox Easter: Meeus's Julian computus, then the Julian date shifted onto
 * the Gregorian calendar (13 days in 1900-2099). */
static void
easter_orthodox(int y, int *m, int *d)
{
    int a = y % 4, b = y % 7, c = y % 19, dd = (19 * c + 15) % 30;
    int e = (2 * a + 4 * b - dd + 34) % 7;
    int jm = (dd + e + 114) / 31, jd = (dd + e + 114) % 31 + 1, yy;
    civil_from_days(days_from_civil(y, jm, jd) + (y / 100 - y / 400 - 2), &yy, m, d);
}

/* ==== holiday calendars ============================================== */

enum hrule { HR_DATE, HR_LUNAR, HR_NTH, HR_EASTER, HR_ORTHODOX, HR_TERM };

struct holiday {
    char *slug;
    char *title;
    char *calendar; /* the file's `calendar:` name */
    char *file;     /* where it was defined, for duplicate errors */
    int line;
    enum hrule kind;
    int month, day; /* HR_DATE, HR_LUNAR, HR_NTH (month) */
    int weekday, n; /* HR_NTH: 0 = Sunday; n = 1..5 or -1..-5 (last) */
    int term;       /* HR_TERM */
    int offset;     /* days added to the rule's date */
};

struct holiday_set {
    struct holiday *h; /* sorted by slug */
    size_t n;
    const char **names; /* slugs, NULL-terminated, for did_you_mean */
};

static const char *const weekday_names[7] = {"sunday",   "monday", "tuesday", "wednesday",
                                             "thursday", "friday", "saturday"};

struct holiday_set *
holiday_set_new(void)
{
    struct holiday_set *hs = xcalloc(1, sizeof(*hs));
    hs->names = xcalloc(1, sizeof(*hs->names));
    return hs;
}

static void
holiday_clear(struct holiday *h)
{
    free(h->slug);
    free(h->title);
    free(h->calendar);
    free(h->file);
}

void
holiday_set_free(struct holiday_set *hs)
{
    if (!hs)
        return;
    for (size_t i = 0; i < hs->n; i++)
        holiday_clear(&hs->h[i]);
    free(hs->h);
    free(hs->names);
    free(hs);
}

static int
holiday_cmp(const void *a, const void *b)
{
    return strcmp(((const struct holiday *)a)->slug, ((const struct holiday *)b)->slug);
}

static const struct holiday *
holiday_find(const struct holiday_set *hs, const char *slug)
{
    struct holiday key;
    if (!hs || !slug || !hs->n)
        return NULL;
    key.slug = (char *)slug;
    return bsearch(&key, hs->h, hs->n, sizeof(*hs->h), holiday_cmp);
}

static bool
slug_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 48 || !(s[0] >= 'a' && s[0] <= 'z') || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* "MM-DD" with a day that exists in month MM of some year (02-29 allowed,
 * lunar days up to 30). */
static int
parse_month_day(const char *s, bool lunar, int *m, int *d)
{
    if (strlen(s) != 5 || s[2] != '-')
        return -EINVAL;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return -EINVAL;
    *m = (s[0] - '0') * 10 + (s[1] - '0');
    *d = (s[3] - '0') * 10 + (s[4] - '0');
    if (*m < 1 || *m > 12 || *d < 1)
        return -ERANGE;
    if (*d > (lunar ? 30 : days_in_month(2000, *m))) /* 2000: a leap year */
        return -ERANGE;
    return 0;
}

static const char *const month_names[12] = {"January",   "February", "March",    "April",
                                            "May",       "June",     "July",     "August",
                                            "September", "October",  "November", "December"};

static int
load_date_rule(const struct ydoc *doc, const struct ynode *v, bool lunar, struct holiday *h,
               struct nerr *err)
{
    const char *what = lunar ? "lunar" : "date";
    const char *s;
    int r;
    if (yget_str(doc, v, what, &s, err) < 0)
        return -EINVAL;
    r = parse_month_day(s, lunar, &h->month, &h->day);
    if (r == -EINVAL) {
        yerr(doc, v, err, "%s '%s' is not a month and day", what, s);
        nerr_hint(err, "write it as \"MM-DD\", e.g. %s",
                  lunar ? "\"08-15\" (the 15th day of "
                          "the 8th lunar month)"
                        : "\"10-01\" for 1 October");
        return -EINVAL;
    }
    if (r == -ERANGE) {
        yerr(doc, v, err, "%s '%s' does not exist", what, s);
        if (h->month < 1 || h->month > 12)
            nerr_hint(err, "the month must be 01 to 12");
        else if (lunar)
            nerr_hint(err, "lunar months have 29 or 30 days");
        else
            nerr_hint(err, "%s has at most %d days", month_names[h->month - 1],
                      days_in_month(2000, h->month));
        return -EINVAL;
    }
    h->kind = lunar ? HR_LUNAR : HR_DATE;
    return 0;
}

static int
load_nth_rule(const struct ydoc *doc, const struct ynode *v, struct holiday *h, struct nerr *err)
{
    static const char *const keys[] = {"month", "weekday", "n", NULL};
    const struct ynode *wn;
    const char *w;
    int64_t month, n;
    if (ymap_check_keys(doc, v, "nth_weekday", keys, err) < 0)
        return -EINVAL;
    if (!ymap_get(v, "month") || !ymap_get(v, "weekday") || !ymap_get(v, "n")) {
        yerr(doc, v, err, "nth_weekday needs month, weekday and n");
        nerr_hint(err, "e.g. { month: 5, weekday: sunday, n: 2 } for the second Sunday of May; "
                       "n: -1 means the last");
        return -EINVAL;
    }
    if (yget_int(doc, ymap_get(v, "month"), "month", 1, 12, &month, err) < 0)
        return -EINVAL;
    if (yget_int(doc, ymap_get(v, "n"), "n", -5, 5, &n, err) < 0)
        return -EINVAL;
    if (n == 0) {
        yerr(doc, ymap_get(v, "n"), err, "n must not be 0");
        nerr_hint(err, "1 is the first, 2 the second ...; -1 is the last, -2 the one before");
        return -EINVAL;
    }
    wn = ymap_get(v, "weekday");
    if (yget_str(doc, wn, "weekday", &w, err) < 0)
        return -EINVAL;
    h->weekday = -1;
    for (int i = 0; i < 7; i++)
        if (strcmp(w, weekday_names[i]) == 0 ||
            (strlen(w) == 3 && strncmp(w, weekday_names[i], 3) == 0))
            h->weekday = i;
    if (h->weekday < 0) {
        const char *const cands[] = {
            weekday_names[0], weekday_names[1], weekday_names[2], weekday_names[3],
            weekday_names[4], weekday_names[5], weekday_names[6], NULL};
        const char *guess = did_you_mean(w, cands);
        yerr(doc, wn, err, "unknown weekday '%s'", w);
        if (guess)
            nerr_hint(err, "did you mean '%s'? (sunday ... saturday, lowercase)", guess);
        else
            nerr_hint(err, "expected sunday, monday, tuesday, wednesday, thursday, friday or "
                           "saturday");
        return -EINVAL;
    }
    h->kind = HR_NTH;
    h->month = (int)month;
    h->n = (int)n;
    return 0;
}

static int
load_easter_rule(const struct ydoc *doc, const struct ynode *v, struct holiday *h, struct nerr *err)
{
    bool b;
    if (v && v->type == YN_SCALAR && strcmp(v->value, "western") == 0) {
        h->kind = HR_EASTER;
        return 0;
    }
    if (v && v->type == YN_SCALAR && strcmp(v->value, "orthodox") == 0) {
        h->kind = HR_ORTHODOX;
        return 0;
    }
    if (v && v->type == YN_SCALAR && v->plain && yget_bool(doc, v, "easter", &b, err) == 0 && b) {
        h->kind = HR_EASTER;
        return 0;
    }
    yerr(doc, v, err, "easter must be true, western or orthodox");
    nerr_hint(err, "easter: true is Western (Gregorian) Easter Sunday; add offset: -2 for "
                   "Good Friday");
    return -EINVAL;
}

static int
load_term_rule(const struct ydoc *doc, const struct ynode *v, struct holiday *h, struct nerr *err)
{
    const char *s, *guess;
    const char *cands[25];
    if (yget_str(doc, v, "solar_term", &s, err) < 0)
        return -EINVAL;
    if ((h->term = cal_solar_term_index(s)) >= 0) {
        h->kind = HR_TERM;
        return 0;
    }
    for (int i = 0; i < 24; i++)
        cands[i] = term_names[i];
    cands[24] = NULL;
    guess = did_you_mean(s, cands);
    yerr(doc, v, err, "unknown solar term '%s'", s);
    if (guess)
        nerr_hint(err, "did you mean '%s'?", guess);
    else
        nerr_hint(err, "expected a term in pinyin without tones: lichun, qingming, xiazhi, "
                       "dongzhi ...");
    return -EINVAL;
}

static const char *const rule_keys[] = {"date",   "lunar",      "nth_weekday",
                                        "easter", "solar_term", NULL};

static int
load_holiday(const struct ydoc *doc, const struct ynode *key, const struct ynode *v,
             const char *calname, struct holiday *h, struct nerr *err)
{
    static const char *const keys[] = {"title",  "description", "date",   "lunar", "nth_weekday",
                                       "easter", "solar_term",  "offset", NULL};
    const struct ynode *rule = NULL, *n;
    const char *rule_key = NULL;
    int r;
    memset(h, 0, sizeof(*h));
    if (!slug_valid(key->value)) {
        yerr(doc, key, err, "holiday name '%s' is not a slug", key->value);
        nerr_hint(err, "use lowercase letters, digits and '-', starting with a letter, e.g. "
                       "spring-festival");
        return -EINVAL;
    }
    if (ymap_check_keys(doc, v, "a holiday", keys, err) < 0)
        return -EINVAL;
    for (const char *const *k = rule_keys; *k; k++) {
        if (!(n = ymap_get(v, *k)))
            continue;
        if (rule) {
            yerr(doc, ymap_key(v, *k), err, "holiday '%s' has both %s and %s", key->value, rule_key,
                 *k);
            nerr_hint(err, "give exactly one rule; use offset to move it by days");
            return -EINVAL;
        }
        rule = n;
        rule_key = *k;
    }
    if (!rule) {
        yerr(doc, key, err, "holiday '%s' has no rule", key->value);
        nerr_hint(err, "add one of: date: \"MM-DD\", lunar: \"MM-DD\", nth_weekday: { month, "
                       "weekday, n }, easter: true, solar_term: qingming");
        return -EINVAL;
    }
    if (strcmp(rule_key, "date") == 0 || strcmp(rule_key, "lunar") == 0)
        r = load_date_rule(doc, rule, rule_key[0] == 'l', h, err);
    else if (strcmp(rule_key, "nth_weekday") == 0)
        r = load_nth_rule(doc, rule, h, err);
    else if (strcmp(rule_key, "easter") == 0)
        r = load_easter_rule(doc, rule, h, err);
    else
        r = load_term_rule(doc, rule, h, err);
    if (r < 0)
        return r;
    if ((n = ymap_get(v, "offset"))) {
        int64_t off;
        if (yget_int(doc, n, "offset", -366, 366, &off, err) < 0)
            return -EINVAL;
        h->offset = (int)off;
    }
    if ((n = ymap_get(v, "title"))) {
        const char *t;
        if (yget_str(doc, n, "title", &t, err) < 0)
            return -EINVAL;
        h->title = xstrdup(t);
    } else {
        h->title = xstrdup(key->value);
    }
    if ((n = ymap_get(v, "description"))) {
        const char *t;
        if (yget_str(doc, n, "description", &t, err) < 0) {
            free(h->title);
            h->title = NULL;
            return -EINVAL;
        }
    }
    h->slug = xstrdup(key->value);
    h->calendar = xstrdup(calname);
    h->file = xstrdup(doc->file);
    h->line = key->line;
    return 0;
}

static void
rebuild_names(struct holiday_set *hs)
{
    qsort(hs->h, hs->n, sizeof(*hs->h), holiday_cmp);
    free(hs->names);
    hs->names = xcalloc(hs->n + 1, sizeof(*hs->names));
    for (size_t i = 0; i < hs->n; i++)
        hs->names[i] = hs->h[i].slug;
}

/* The calendar name a file gets when it has no `calendar:` key: its base
 * name without ".yaml". */
static char *
default_calendar_name(const char *file)
{
    const char *b = strrchr(file, '/');
    size_t n;
    b = b ? b + 1 : file;
    n = strlen(b);
    if (n > 5 && strcmp(b + n - 5, ".yaml") == 0)
        n -= 5;
    return xstrndup(b, n);
}

static int
load_doc(struct holiday_set *hs, const struct ydoc *doc, struct nerr *err)
{
    static const char *const top_keys[] = {"calendar", "description", "holidays", NULL};
    const struct ynode *root = doc->root, *hol, *n;
    struct holiday *add = NULL;
    size_t nadd = 0;
    char *calname = NULL;
    int r = -EINVAL;
    if (!root) {
        nerr_set(err, doc->file, 1, 1, "the calendar file is empty");
        nerr_hint(err, "start with 'calendar: NAME' and a 'holidays:' mapping");
        return -EINVAL;
    }
    if (ymap_check_keys(doc, root, "a calendar file", top_keys, err) < 0)
        return -EINVAL;
    if ((n = ymap_get(root, "calendar"))) {
        const char *s;
        if (yget_str(doc, n, "calendar", &s, err) < 0)
            return -EINVAL;
        if (!slug_valid(s)) {
            yerr(doc, n, err, "calendar name '%s' is not a slug", s);
            nerr_hint(err, "use lowercase letters, digits and '-', e.g. cn or western");
            return -EINVAL;
        }
        calname = xstrdup(s);
    } else {
        calname = default_calendar_name(doc->file);
    }
    if ((n = ymap_get(root, "description"))) {
        const char *s;
        if (yget_str(doc, n, "description", &s, err) < 0)
            goto out;
    }
    hol = ymap_get(root, "holidays");
    if (!hol) {
        yerr(doc, root, err, "no 'holidays:' mapping in this calendar file");
        nerr_hint(err, "add 'holidays:' with one 'slug: { title: ..., date: \"MM-DD\" }' per line");
        goto out;
    }
    if (yexpect_map(doc, hol, "holidays", err) < 0)
        goto out;
    add = xcalloc(hol->n ? hol->n : 1, sizeof(*add));
    for (size_t i = 0; i < hol->n; i++) {
        const struct holiday *dup;
        if (load_holiday(doc, hol->keys[i], hol->items[i], calname, &add[nadd], err) < 0)
            goto out;
        nadd++;
        if ((dup = holiday_find(hs, hol->keys[i]->value))) {
            yerr(doc, hol->keys[i], err, "holiday '%s' is already defined in %s:%d",
                 hol->keys[i]->value, dup->file, dup->line);
            nerr_hint(err, "holiday names are shared by all calendar files; rename one");
            goto out;
        }
    }
    hs->h = xrealloc(hs->h, (hs->n + nadd) * sizeof(*hs->h));
    memcpy(hs->h + hs->n, add, nadd * sizeof(*add));
    hs->n += nadd;
    nadd = 0;
    rebuild_names(hs);
    r = 0;
out:
    for (size_t i = 0; i < nadd; i++)
        holiday_clear(&add[i]);
    free(add);
    free(calname);
    return r;
}

int
holiday_set_load_text(struct holiday_set *hs, const char *name, const char *text, size_t len,
                      struct nerr *err)
{
    struct ydoc *doc;
    int r;
    if (!hs || !name || !text)
        return -EINVAL;
    if ((r = ydoc_parse(name, text, len, &doc, err)) < 0)
        return r;
    r = load_doc(hs, doc, err);
    ydoc_free(doc);
    return r;
}

int
holiday_set_load_file(struct holiday_set *hs, const char *path, struct nerr *err)
{
    struct ydoc *doc;
    int r;
    if (!hs || !path)
        return -EINVAL;
    if ((r = ydoc_load_file(path, &doc, err)) < 0)
        return r;
    r = load_doc(hs, doc, err);
    ydoc_free(doc);
    return r;
}

static int
name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int
holiday_set_load_dir(const char *dir, struct holiday_set **out, struct nerr *err)
{
    struct holiday_set *hs;
    DIR *dh;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;
    int r = 0;
    if (!dir || !out)
        return -EINVAL;
    if (!(dh = opendir(dir))) {
        r = -errno;
        nerr_set(err, dir, 0, 0, "cannot open the calendar directory: %s", strerror(-r));
        return r;
    }
    while ((de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        /* Hidden files are editor backups and swap files, not calendars. */
        if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".yaml") != 0)
            continue;
        names = xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = xasprintf("%s/%s", dir, de->d_name);
    }
    closedir(dh);
    /* Name order, so that "already defined in" errors are reproducible. */
    qsort(names, n, sizeof(*names), name_cmp);
    hs = holiday_set_new();
    for (size_t i = 0; i < n && r == 0; i++)
        r = holiday_set_load_file(hs, names[i], err);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (r < 0) {
        holiday_set_free(hs);
        return r;
    }
    *out = hs;
    return 0;
}

/* The rule's date in `year` as days since 1970-01-01, before the offset. */
static int
holiday_base_day(const struct holiday *h, int year, int64_t *days)
{
    int m, d, y, r;
    switch (h->kind) {
    case HR_DATE:
        if (year < 1 || year > 9999)
            return -ERANGE;
        /* 29 February falls back like a birthday does. */
        cal_anniversary(year, h->month, h->day, false, &m, &d);
        break;
    case HR_LUNAR:
        if (year < 1901 || year > 2099)
            return -ERANGE;
        r = cal_solar_from_lunar(year, h->month, h->day, false, &y, &m, &d);
        /* Day 30 of a month that has 29 this year: its last day instead,
         * the lunar counterpart of 29 February. */
        if (r == -ENOENT && h->day == 30)
            r = cal_solar_from_lunar(year, h->month, 29, false, &y, &m, &d);
        if (r < 0)
            return r;
        /* Late-year festivals (Laba) may fall in the next January. */
        *days = days_from_civil(y, m, d);
        return 0;
    case HR_NTH: {
        int dim;
        if (year < 1 || year > 9999)
            return -ERANGE;
        dim = days_in_month(year, h->month);
        m = h->month;
        if (h->n > 0) {
            int first = weekday_of(days_from_civil(year, m, 1));
            d = 1 + (h->weekday - first + 7) % 7 + 7 * (h->n - 1);
        } else {
            int last = weekday_of(days_from_civil(year, m, dim));
            d = dim - (last - h->weekday + 7) % 7 - 7 * (-h->n - 1);
        }
        if (d < 1 || d > dim)
            return -ENOENT; /* a fifth weekday this month does not have */
        break;
    }
    case HR_EASTER:
    case HR_ORTHODOX:
        if (year < 1583 || year > 9999)
            return -ERANGE;
        if (h->kind == HR_EASTER)
            easter_western(year, &m, &d);
        else
            easter_orthodox(year, &m, &d);
        break;
    case HR_TERM:
        if ((r = cal_solar_term_date(year, h->term, &m, &d, NULL)) < 0)
            return r;
        break;
    default:
        return -EINVAL;
    }
    *days = days_from_civil(year, m, d);
    return 0;
}

int
holiday_date_ymd(const struct holiday_set *hs, const char *slug, int year, int *y, int *m, int *d)
{
    const struct holiday *h = holiday_find(hs, slug);
    int64_t days;
    int r;
    if (!h)
        return -ENOENT;
    if ((r = holiday_base_day(h, year, &days)) < 0)
        return r;
    civil_from_days(days + h->offset, y, m, d);
    return 0;
}

int
holiday_date(const struct holiday_set *hs, const char *slug, int year, int *m, int *d)
{
    int y;
    return holiday_date_ymd(hs, slug, year, &y, m, d);
}

int
holiday_on(const struct holiday_set *hs, const char *slug, int y, int m, int d, int *key_year)
{
    if (!holiday_find(hs, slug))
        return -ENOENT;
    /* A rule's base date lies within about a month of its year number (Laba
     * in the next January) and an offset moves it at most 366 days, so the
     * occurrence that lands on y-m-d has a year number within two of y. */
    for (int ky = y - 2; ky <= y + 2; ky++) {
        int oy, om, od;
        if (holiday_date_ymd(hs, slug, ky, &oy, &om, &od) == 0 && oy == y && om == m && od == d) {
            if (key_year)
                *key_year = ky;
            return 1;
        }
    }
    return 0;
}

bool
holiday_exists(const struct holiday_set *hs, const char *slug)
{
    return holiday_find(hs, slug) != NULL;
}

const char *
holiday_suggest(const struct holiday_set *hs, const char *slug)
{
    if (!hs || !slug)
        return NULL;
    return did_you_mean(slug, hs->names);
}

const char *
holiday_title(const struct holiday_set *hs, const char *slug)
{
    const struct holiday *h = holiday_find(hs, slug);
    return h ? h->title : NULL;
}

void
holiday_foreach(const struct holiday_set *hs,
                void (*cb)(void *ud, const char *slug, const char *title), void *ud)
{
    for (size_t i = 0; hs && i < hs->n; i++)
        cb(ud, hs->h[i].slug, hs->h[i].title);
}

int
holiday_count(const struct holiday_set *hs)
{
    return hs ? (int)hs->n : 0;
}
