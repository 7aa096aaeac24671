/*
 * audience.h: the audience expression language, compiled to parameterised SQL.
 *
 * A rule's `audience:` is a small boolean language over customer fields:
 *
 *   tier in ('high-value', 'potential') and consents('sms')
 *   days_since(last_order_date) >= 90 and not has_tag('churned')
 *   email is not null and (total_spent > 500 or orders_count between 3 and 10)
 *
 * Grammar (keywords are case-insensitive; precedence not > and > or, and
 * comparisons bind tighter than not):
 *
 *   expr      = or
 *   or        = and { "or" and }
 *   and       = not { "and" not }
 *   not       = "not" not | condition
 *   condition = "(" expr ")"
 *             | value cmp value                    cmp: = == != <> < <= > >=
 *             | value ["not"] "in" "(" literal { "," literal } ")"
 *             | value ["not"] "between" value "and" value
 *             | value ["not"] "like" 'pattern'     (% and _, \ escapes them)
 *             | value "is" ["not"] "null"
 *             | consents('email') | has_tag('vip') | true | false
 *   value     = field | custom attribute | literal | function call
 *   literal   = 'text' ('' is a quote) | 42 | -3.5 | true | false
 *
 * Fields are a fixed whitelist (audience_fields); an identifier that is not a
 * field may name a custom attribute the caller knows of (the attribute_keys
 * table); attr('any key') reaches any attribute, including ones whose names
 * are not identifiers or collide with a field. Functions: consents(channel),
 * has_tag(tag), days_since(date), days_until_anniversary(date), attr(key).
 *
 * Values compare the way a marketer reads them:
 *   - orders_count and total_spent are 0 for customers without orders;
 *   - numeric fields accept '42' as 42, text fields accept 42 as '42', and
 *     date fields only accept quoted dates ('2024-01-31', '--12-25' or an
 *     ISO 8601 timestamp), compared as ISO text;
 *   - a custom attribute compares as a number against an unquoted number
 *     (so a CSV value "120" is > 99) and as text against a quoted string;
 *   - a comparison with a missing value is false, and the negative forms are
 *     exact negations: `tier != 'gold'`, `tier not in (...)`, `not like`,
 *     `not between` and `not (...)` all include customers with no tier.
 *
 * Security: no text from the expression is ever pasted into the SQL. Fields
 * map to fixed snippets from a table; every literal, attribute path, channel
 * and tag becomes a `?` parameter.
 */
#ifndef NUDGE_AUDIENCE_H
#define NUDGE_AUDIENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum aud_param_kind {
    AUD_TEXT,
    AUD_INT,
    AUD_REAL,
    AUD_NOW_DATE /* bind today's date 'YYYY-MM-DD' supplied by the caller */
};

struct aud_param {
    enum aud_param_kind kind;
    char *text; /* AUD_TEXT: owned, NUL-terminated */
    int64_t i;  /* AUD_INT */
    double r;   /* AUD_REAL */
};

/* A value that changes from day to day: days_since(x) or
 * days_until_anniversary(x). */
enum aud_day_kind { AUD_DAYS_SINCE, AUD_DAYS_UNTIL_ANNIV };

struct aud_dayref {
    enum aud_day_kind kind;
    /* x on its own, as SQL over c and s with its own parameters:
     * julianday(x) for days_since, x's 'MM-DD' for days_until_anniversary. */
    struct audience *arg;
};

struct audience {
    char *sql;                /* a boolean SQL expression over aliases c and s */
    struct aud_param *params; /* in the order of the `?` in sql */
    size_t nparams;
    char *source; /* the expression as written ("" for everyone) */
    char *warnings; /* NULL, or "file:line:col: warning: ...\n" lines (names read as
                     * custom attributes not imported yet) */

    /*
     * How the expression depends on the day, so that a caller evaluating it
     * over many days (forecast) can skip the days where it cannot change.
     * stepwise: every day-dependent value (dayrefs) is compared only with
     * numbers (cuts), so for a given customer the truth of the expression can
     * differ between two days only if some dayref falls on a different side
     * of some cut (audience_day_signature). Not stepwise (a dayref compared
     * with a field or another dayref, or matched with like): evaluate every
     * day.
     */
    bool stepwise;
    struct aud_dayref *dayrefs;
    size_t ndayrefs;
    double *cuts;
    size_t ncuts;
};

/* One customer's dayref arguments, read once (audience_day_args). */
struct aud_dayarg {
    bool valid; /* false: x is missing or not a date, so the value is NULL */
    double jd;  /* AUD_DAYS_SINCE: julianday(x) */
    int m, d;   /* AUD_DAYS_UNTIL_ANNIV: x's month and day */
};

/*
 * Compiles expr. file/line/col give where the expression starts in the rule
 * file, so errors point at the real place (col counts UTF-8 characters from
 * 1; later lines of a multi-line expression count from column 1). On error
 * err gets the message, a hint naming what was expected, and the offending
 * line of the expression in src_line, indented by col - 1 spaces so the caret
 * lines up; a caller holding the whole file may call nerr_source() to show
 * the real line instead. known_attrs is NULL-terminated and may be NULL.
 * An empty (or NULL) expression means everyone: sql "1".
 * Returns 0, -EINVAL (err says why) or -E2BIG (expression too large).
 */
int audience_compile(const char *expr, const char *file, int line, int col,
                     const char *const *known_attrs, struct audience **out, struct nerr *err);
void audience_free(struct audience *a);

/*
 * The value of parameter k (0-based, in the order of the `?` in a->sql) on
 * day `today` ('YYYY-MM-DD', needed only if the expression uses days_since
 * or days_until_anniversary; may otherwise be NULL): AUD_NOW_DATE comes out
 * as the text of today, so v->kind is AUD_TEXT, AUD_INT or AUD_REAL. This is
 * what the store binds. Returns 0, -EINVAL for a bad date or -ERANGE for k
 * out of range.
 */
struct aud_value {
    enum aud_param_kind kind;
    const char *text; /* AUD_TEXT: not owned, len bytes */
    size_t len;
    int64_t i; /* AUD_INT */
    double r;  /* AUD_REAL */
};
int audience_param(const struct audience *a, size_t k, const char *today, struct aud_value *v);

/* One day-argument column of a row, as the store read it. */
struct aud_dayval {
    bool null;        /* SQL NULL */
    double real;      /* AUD_DAYS_SINCE: the column as a number */
    const char *text; /* AUD_DAYS_UNTIL_ANNIV: the column as text (not owned; may be NULL) */
    size_t len;       /* its length in bytes */
};

/*
 * Day dependence (see struct audience). audience_day_select appends
 * ", arg1, arg2, ..." (one column per dayref) to a SELECT list; the
 * parameters of column k are those of a->dayrefs[k].arg, which the store
 * binds in order (without a day). audience_day_args turns those columns as
 * read (vals[ndayrefs], reading dayref k as a number for AUD_DAYS_SINCE and
 * as text otherwise) into args[ndayrefs]. audience_day_signature writes
 * ndayrefs * ncuts bytes to sig: on day `day` (days since 1970-01-01), the
 * side of each cut each dayref's value is on, computed exactly as the
 * compiled SQL computes the value.
 */
void audience_day_select(const struct audience *a, struct sbuf *q);
void audience_day_args(const struct audience *a, const struct aud_dayval *vals,
                       struct aud_dayarg *args);
void audience_day_signature(const struct audience *a, const struct aud_dayarg *args, int64_t day,
                            unsigned char *sig);

/* The SQL "FROM" clause the expression expects:
 * "customers c LEFT JOIN customer_stats s ON s.customer_id = c.id" */
const char *audience_from_clause(void);

/* Names of built-in fields and functions (NULL-terminated), for help and
 * did-you-mean. */
extern const char *const audience_fields[];
extern const char *const audience_functions[];

#endif
