/*
 * calendar.h: civil time in IANA zones (ICU), the Chinese lunar calendar
 * (liblunar-date's table, 1900-2100), the 24 solar terms, and holiday
 * calendars loaded from YAML files (the .yaml files in calendars/).
 *
 * Everything here is safe to call from several threads at once:
 * - ICU calendars are kept per thread (a small cache keyed by zone name);
 *   a thread that is about to exit may call cal_thread_cleanup(), and a
 *   pthread key destructor does it anyway for threads that end normally.
 * - The lunar table is read from liblunar-date once (pthread_once) into a
 *   static array; afterwards conversions are lock-free table look-ups.
 *   Two places where liblunar-date 3.0.1 disagrees with python3-lunardate
 *   and the ephemeris (lunar 2057-8/9 and 2060-3/4) are corrected; see
 *   lunar_fixes in calendar.c.
 * - Solar-term dates are computed once each and kept in an atomic table.
 * - A struct holiday_set is immutable once loaded.
 *
 * Return convention: 0 or a negative errno value. -EINVAL for malformed
 * arguments, -ERANGE for dates outside what a rule or table covers, -ENOENT
 * for things that do not exist (a zone, a slug, a lunar day).
 */
#ifndef NUDGE_CALENDAR_H
#define NUDGE_CALENDAR_H

#include <stdbool.h>

#include "util.h"

/* ---- time zones ------------------------------------------------------ */

/* A moment seen on the wall clock of some zone. */
struct cal_local {
    int year, month, day;     /* month 1-12, day 1-31 */
    int hour, minute, second; /* 0-23, 0-59, 0-59 */
    int wday;                 /* 0 = Sunday ... 6 = Saturday */
    int utc_offset;           /* seconds east of UTC, DST included */
};

/* True for an IANA zone that ICU knows as a system zone ("Asia/Shanghai",
 * "UTC", "Etc/GMT+5"). False for "", NULL, custom "GMT+05:00" ids, and names
 * ICU does not know; ICU would otherwise treat those silently as GMT. */
bool cal_zone_valid(const char *tz);

/* The UTC instant of wall time y-m-d hh:mi:00 in tz. A time in a
 * spring-forward gap maps to the first valid instant after the gap
 * (02:30 on 2027-03-14 in New York -> 03:00 EDT = 07:00Z); an ambiguous time
 * in a fall-back overlap maps to its first occurrence (01:30 on 2027-11-07 in
 * New York -> 05:30Z). Years 1-9999, proleptic Gregorian.
 * -ENOENT for an unknown zone, -EINVAL for an impossible date or time. */
int cal_local_to_utc(const char *tz, int y, int m, int d, int hh, int mi, ntime_t *out);

/* The wall clock in tz at UTC instant t. -ENOENT unknown zone, -ERANGE for
 * instants outside years 1-9999. */
int cal_utc_to_local(const char *tz, ntime_t t, struct cal_local *out);

/* Frees the calling thread's cached ICU calendars (idempotent). */
void cal_thread_cleanup(void);

/* ---- Chinese lunar calendar ---------------------------------------- */

struct cal_lunar {
    int year;  /* the lunar year, named by the Gregorian year it starts in */
    int month; /* 1-12 */
    int day;   /* 1-30 */
    bool leap; /* a leap (intercalary) month, following the month of the same number */
};

/* Lunar years the table covers (the first and last may be partial). */
#define CAL_LUNAR_MIN_YEAR 1900
#define CAL_LUNAR_MAX_YEAR 2100

/* -EINVAL for an impossible solar date, -ERANGE outside the table
 * (1900-01-31 .. end of lunar 2100), -EIO if the table could not be built. */
int cal_lunar_from_solar(int y, int m, int d, struct cal_lunar *out);

/* -ENOENT if that lunar date does not exist that year (day 30 of a 29-day
 * month; a leap month the year lacks), -EINVAL for month/day out of 1-12/1-30,
 * -ERANGE for a year outside the table. */
int cal_solar_from_lunar(int lyear, int lmonth, int lday, bool leap, int *y, int *m, int *d);

/* Days in lunar month (29 or 30), or a negative errno as above. */
int cal_lunar_month_days(int lyear, int lmonth, bool leap);

/* Number of the leap month in lunar year lyear (1-12), 0 if none, or -ERANGE. */
int cal_lunar_leap_month(int lyear);

/* Wall-clock microseconds spent building the lunar table (for the record). */
long cal_lunar_build_usec(void);

/* ---- solar terms (jieqi) ------------------------------------------- */

/* The 24 terms by index, 0 = xiaohan (minor cold, ~Jan 5), 5 = chunfen (vernal
 * equinox), 6 = qingming (~Apr 5), ..., 23 = dongzhi (winter solstice).
 * Names are lowercase pinyin without tones: "qingming", "dongzhi". */
int cal_solar_term_index(const char *name); /* index or -ENOENT */
const char *cal_solar_term_name(int index); /* NULL if out of range */

/* The China Standard Time (UTC+8) date of solar term `index` in Gregorian
 * year `year`, the convention of the Chinese calendar. Computed from the
 * Sun's apparent longitude (VSOP87 as abridged by Meeus, "Astronomical
 * Algorithms" ch. 25 and appendix III, about 1 arcsecond, i.e. ~25 s) plus
 * Espenak-Meeus delta-T. Years 1901-2099 (-ERANGE otherwise). A term within a
 * minute or so of midnight may land on the neighbouring day, as it may in
 * published almanacs that use a different delta-T; the tests check every
 * term of every year against an independent ephemeris. *instant receives
 * the UTC moment if non-NULL. */
int cal_solar_term_date(int year, int index, int *m, int *d, ntime_t *instant);

/* ---- anniversaries ------------------------------------------------- */

/* The date an anniversary of (month, day) falls on in `year`. 29 February
 * falls on 28 February in common years, or on 1 March when feb29_to_mar1.
 * Other dates are returned unchanged. */
void cal_anniversary(int year, int month, int day, bool feb29_to_mar1, int *m, int *d);

/* ---- holiday calendars --------------------------------------------- */

struct holiday_set;

/* Loads every *.yaml file of dir (in name order) into a new set. On error
 * *out is untouched and err says file:line:col with the line and a caret. */
int holiday_set_load_dir(const char *dir, struct holiday_set **out, struct nerr *err);

/* An empty set, to load single files into. */
struct holiday_set *holiday_set_new(void);

/* Adds the holidays of one file. A slug already defined (in this or an earlier
 * file) is an error. On error hs is unchanged. */
int holiday_set_load_file(struct holiday_set *hs, const char *path, struct nerr *err);

/* The same, from text in memory (`name` is used in messages). */
int holiday_set_load_text(struct holiday_set *hs, const char *name, const char *text, size_t len,
                          struct nerr *err);

void holiday_set_free(struct holiday_set *hs);

/* The date of holiday `slug` for year number `year`: the occurrence whose
 * occurrence key is "slug:year". For rules on the lunar calendar `year` is the
 * lunar year: "laba 2022" is lunar 2022-12-08, which falls on 2022-12-30, and
 * "laba 2023" falls on 2024-01-18 (festivals of lunar months 1-10 always fall
 * in the Gregorian year of the same number). This gives every rule exactly
 * one occurrence per year number, never zero or two; an offset may also move
 * a date into the neighbouring Gregorian year (01-01 with offset -1).
 * Because of that, holiday_date() alone cannot say whether a given Gregorian
 * day is the holiday: use holiday_date_ymd() or holiday_on() for that.
 * -ENOENT unknown slug (or a 5th weekday the month lacks that year); -ERANGE
 * year outside what the rule can compute (lunar and solar-term rules:
 * 1901-2099; Easter 1583-9999; others 1-9999). */
int holiday_date(const struct holiday_set *hs, const char *slug, int year, int *m, int *d);

/* The same, with the Gregorian year the date falls in. */
int holiday_date_ymd(const struct holiday_set *hs, const char *slug, int year, int *y, int *m,
                     int *d);

/* 1 if Gregorian y-m-d is an occurrence of `slug` (*key_year, if non-NULL,
 * receives the occurrence's year number, for "slug:YEAR" keys), 0 if not,
 * -ENOENT for an unknown slug. This is the question a scheduler walking day
 * by day asks. */
int holiday_on(const struct holiday_set *hs, const char *slug, int y, int m, int d, int *key_year);

bool holiday_exists(const struct holiday_set *hs, const char *slug);

/* The closest known slug (edit distance <= 2), or NULL. */
const char *holiday_suggest(const struct holiday_set *hs, const char *slug);

/* Title of a holiday (the slug if the file gave none), NULL if unknown. */
const char *holiday_title(const struct holiday_set *hs, const char *slug);

/* Calls cb for every holiday, in slug order. */
void holiday_foreach(const struct holiday_set *hs,
                     void (*cb)(void *ud, const char *slug, const char *title), void *ud);

/* Number of holidays in the set. */
int holiday_count(const struct holiday_set *hs);

#endif
