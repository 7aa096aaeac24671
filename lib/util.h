/*
 * util.h: small helpers every module uses: located error messages, a growable
 * string buffer, checked number parsing, whole-file reads, "did you mean".
 *
 * Return convention (as in libuv): 0 on success, a negative errno value on
 * failure. Errors that a person must fix are described in a struct nerr.
 */
#ifndef NUDGE_UTIL_H
#define NUDGE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NERR_MSG_MAX 1024

/*
 * A located error: FILE:LINE:COL, what is wrong, the source line with a caret,
 * and an optional hint (what was expected, how to fix it). line/col are
 * 1-based; 0 means unknown.
 */
struct nerr {
    char file[512];
    int line;
    int col;
    char msg[NERR_MSG_MAX];
    char hint[NERR_MSG_MAX];
    char src_line[512]; /* the offending line of input, if known */
};

void nerr_clear(struct nerr *e);
/* Sets location and message; returns -EINVAL so callers can `return nerr_set(...)`. */
int nerr_set(struct nerr *e, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void nerr_hint(struct nerr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies line number `line` (1-based) of text into e->src_line. */
void nerr_source(struct nerr *e, const char *text, size_t len);
/* "file:line:col: error: msg\n  src\n  ^\n  hint\n" into buf (always terminated). */
void nerr_format(const struct nerr *e, char *buf, size_t size);

/* Growable NUL-terminated string buffer. Aborts on out-of-memory. */
struct sbuf {
    char *s;
    size_t len;
    size_t cap;
};
void sbuf_init(struct sbuf *b);
void sbuf_free(struct sbuf *b);
void sbuf_add(struct sbuf *b, const char *s, size_t n);
/* Makes room for n more bytes at once (for a string whose size is known
 * roughly in advance: one allocation instead of a doubling series). */
void sbuf_reserve(struct sbuf *b, size_t n);
void sbuf_adds(struct sbuf *b, const char *s);
void sbuf_addc(struct sbuf *b, char c);
void sbuf_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the string over to the caller (free()), leaves b empty. */
char *sbuf_steal(struct sbuf *b);

/* Out-of-memory is fatal: these abort with a message instead of returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* snprintf into a malloc'd string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Frees a NULL-terminated array of strings. */
void strv_free(char **v);

/* Strict decimal parsing of the whole string; -EINVAL or -ERANGE on failure. */
int parse_i64(const char *s, int64_t *out);
int parse_int_range(const char *s, int lo, int hi, int *out);

/* Reads a whole file; *out is NUL-terminated and malloc'd. */
int read_file(const char *path, char **out, size_t *len);
/* Writes atomically: temp file in the same directory, fsync, rename. */
int write_file_atomic(const char *path, const char *data, size_t len);
/* mkdir -p */
int mkdir_p(const char *path, unsigned mode);
/* Whether mkdir_p(path) could succeed, creating nothing: path is a writable
 * directory, or its nearest existing ancestor is. 0 or -errno (ENOTDIR,
 * EACCES, ...), for a configuration check. */
int mkdir_p_check(const char *path);

/* Levenshtein distance, for "did you mean". */
int edit_distance(const char *a, const char *b);
/* The closest candidate within distance 2 (or NULL). candidates ends with NULL. */
const char *did_you_mean(const char *word, const char *const *candidates);

/* Screen cells of the UTF-8 character at s (2 for East Asian wide and
 * fullwidth ones); *len gets its length in bytes. */
int utf8_char_cells(const char *s, int *len);

/* True if s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
bool utf8_valid(const char *s, size_t len);

/* Time: seconds since the epoch, UTC. */
typedef int64_t ntime_t;
/* Parses RFC 3339 / ISO 8601 "2027-02-03T10:00:00+08:00", "...Z", or
 * "2027-02-03 10:00" (UTC). */
int time_parse_iso(const char *s, ntime_t *out);
/* Formats as "2027-02-03T02:00:00Z". */
void time_format_iso(ntime_t t, char *buf, size_t size);
/* Days from civil date (proleptic Gregorian); y-m-d -> days since 1970-01-01. */
int64_t days_from_civil(int y, int m, int d);
void civil_from_days(int64_t z, int *y, int *m, int *d);
bool is_leap_year(int y);
int days_in_month(int y, int m);
/* Validates and parses "YYYY-MM-DD" (year 1..9999). */
int date_parse(const char *s, int *y, int *m, int *d);

#endif
