/*
 * import.c: customers and orders CSV files -> the store, as one idempotent
 * transaction per file (see import.h for the columns and what they mean).
 *
 * The file is read with libcsv (RFC 4180, strict quoting) one physical line at
 * a time, so that every message can name the line on which its record starts
 * even when a quoted field spans several lines. Each record is checked as soon
 * as it is complete and, while the file has been clean so far, upserted at
 * once through prepared statements; after the first problem nothing more is
 * written but every row is still checked, so that one run lists every
 * problem, and the transaction is rolled back at the end.
 *
 * A row that matches what is stored is not written at all: that is what makes
 * a repeated import a no-op down to the bytes of the database file, and it is
 * also what keeps updated_at meaningful.
 */
#include "channel_registry.h"
#include "import.h"

#include <csv.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calendar.h"
#include "log.h"
#include "store_import.h"

#define MAX_MESSAGES 100
#define PROGRESS_EVERY 1000
/* Rowids above this are not tracked for "already on line N" (4 bytes each). */
#define ROWID_LINES_MAX (64L << 20)

/* ---- the clock ------------------------------------------------------- */

static ntime_t (*clock_fn)(void *ud);
static void *clock_ud;

void
import_set_clock(ntime_t (*now)(void *ud), void *ud)
{
    clock_fn = now;
    clock_ud = ud;
}

static ntime_t
import_now(void)
{
    return clock_fn ? clock_fn(clock_ud) : (ntime_t)time(NULL);
}

/* ---- ids seen in this file (for "already on line N") ------------------- */

struct idset {
    char **keys;
    long *lines;
    size_t cap, n;
};

static uint64_t
hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void
idset_free(struct idset *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->keys[i]);
    free(s->keys);
    free(s->lines);
    memset(s, 0, sizeof(*s));
}

static void
idset_grow(struct idset *s)
{
    struct idset n = {0};
    n.cap = s->cap ? s->cap * 2 : 1024;
    n.keys = xcalloc(n.cap, sizeof(char *));
    n.lines = xcalloc(n.cap, sizeof(long));
    for (size_t i = 0; i < s->cap; i++) {
        size_t j;
        if (!s->keys[i])
            continue;
        j = hash_str(s->keys[i]) & (n.cap - 1);
        while (n.keys[j])
            j = (j + 1) & (n.cap - 1);
        n.keys[j] = s->keys[i];
        n.lines[j] = s->lines[i];
    }
    n.n = s->n;
    free(s->keys);
    free(s->lines);
    *s = n;
}

/* The line key was first seen on, or 0. */
static long
idset_get(const struct idset *s, const char *key)
{
    size_t j;
    if (!s->n)
        return 0;
    j = hash_str(key) & (s->cap - 1);
    while (s->keys[j]) {
        if (strcmp(s->keys[j], key) == 0)
            return s->lines[j];
        j = (j + 1) & (s->cap - 1);
    }
    return 0;
}

/* Remembers key at line; returns 0, or the line it was first seen on. */
static long
idset_put(struct idset *s, const char *key, long line)
{
    size_t j;
    if ((s->n + 1) * 2 > s->cap)
        idset_grow(s);
    j = hash_str(key) & (s->cap - 1);
    while (s->keys[j]) {
        if (strcmp(s->keys[j], key) == 0)
            return s->lines[j];
        j = (j + 1) & (s->cap - 1);
    }
    s->keys[j] = xstrdup(key);
    s->lines[j] = line;
    s->n++;
    return 0;
}

/* ---- the import context ---------------------------------------------- */

struct imp;
typedef void (*row_fn)(struct imp *im, char **fv, size_t nf);

struct imp {
    struct store *st;
    const char *name;
    struct import_stats stats;
    import_progress_fn progress;
    void *ud;
    size_t bytes_total, bytes_done;

    /* Messages for the caller. */
    struct sbuf msgs;
    long nmsgs, nmore;
    bool failed; /* a bad row or header: check on, write nothing more */
    int dberr;   /* -EIO once the database failed: stop */

    /* The file as it arrives: the bytes of an incomplete last line, and
     * how far they have been searched for a line end. */
    struct sbuf pend;
    size_t pend_scan;
    bool bom_checked;
    struct csv_parser csv;
    bool csv_ok;
    bool in_tx;

    /* Duplicate ids: the line that named each rowid, and the ids of bad
     * rows (never written, so not in the table). */
    uint32_t *line_of;
    size_t nline_of;
    struct idset bad_ids;

    /* The record being assembled by libcsv. */
    struct sbuf rec;
    size_t *foff;
    size_t nf, fcap;
    long line;     /* physical line being fed */
    long rec_line; /* line on which the current record started */
    bool rec_open;
    bool have_header;
    size_t ncols;

    row_fn header, row;
    void *kind; /* struct cust or struct ord */

    const char *default_tz; /* the configured zone, for the no-tz warning (owned) */
    char now_iso[32]; /* one instant for the whole import */
    char show[4][96]; /* rotating buffers for values quoted in messages */
    int show_i;
};

static void __attribute__((format(printf, 4, 0)))
vmsg(struct imp *im, long line, bool warning, const char *fmt, va_list ap)
{
    if (warning)
        im->stats.warnings++;
    else
        im->failed = true;
    if (im->nmsgs >= MAX_MESSAGES) {
        im->nmore++;
        return;
    }
    im->nmsgs++;
    if (line > 0)
        sbuf_printf(&im->msgs, "%s:%ld: ", im->name, line);
    else
        sbuf_printf(&im->msgs, "%s: ", im->name);
    if (warning)
        sbuf_adds(&im->msgs, "warning: ");
    {
        char buf[1024];
        vsnprintf(buf, sizeof(buf), fmt, ap);
        sbuf_adds(&im->msgs, buf);
    }
    sbuf_addc(&im->msgs, '\n');
}

static void __attribute__((format(printf, 3, 4)))
row_error(struct imp *im, long line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(im, line, false, fmt, ap);
    va_end(ap);
}

static void __attribute__((format(printf, 3, 4)))
row_warning(struct imp *im, long line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(im, line, true, fmt, ap);
    va_end(ap);
}

static void
db_error(struct imp *im, const char *what)
{
    const char *m = store_errmsg(im->st);
    log_err("import", "%s: %s: %s", im->name, what, m);
    row_error(im, im->rec_line, "database error while %s: %s", what, m);
    im->dberr = -EIO;
}

/*
 * A value as it can be shown inside a message: at most ~60 bytes, control
 * characters and bytes that are not UTF-8 escaped, so that a binary cell
 * cannot break the one-line-per-message promise.
 */
static const char *
show(struct imp *im, const char *s)
{
    char *out = im->show[im->show_i];
    size_t o = 0, cap = sizeof(im->show[0]);
    im->show_i = (im->show_i + 1) % 4;
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t n = 1;
        if (o + 8 >= cap || o >= 60) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x80) {
            n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (utf8_valid(s + i, strnlen(s + i, n)) && strnlen(s + i, n) == n) {
                memcpy(out + o, s + i, n);
                o += n;
                i += n - 1;
                continue;
            }
            o += (size_t)snprintf(out + o, cap - o, "\\x%02X", c);
        } else if (c < 0x20 || c == 0x7F) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02X", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- small parsers ---------------------------------------------------- */

static bool
is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Trims ASCII white space in place (quoted cells keep theirs through libcsv). */
static char *
trim(char *s)
{
    size_t n;
    while (is_ws(*s))
        s++;
    n = strlen(s);
    while (n > 0 && is_ws(s[n - 1]))
        s[--n] = '\0';
    return s;
}

static void
ascii_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static bool
is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool
streq_null(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* yes/no/true/false/1/0/y/n, any case: 1, 0, or -EINVAL. */
static int
parse_yesno(const char *s)
{
    static const char *const yes[] = {"yes", "true", "1", "y", NULL};
    static const char *const no[] = {"no", "false", "0", "n", NULL};
    for (int i = 0; yes[i]; i++)
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
    for (int i = 0; no[i]; i++)
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    return -EINVAL;
}

/*
 * Checks and normalises an address in place: trimmed, the domain part
 * lower-cased (the local part is the receiving server's business, so its case
 * is kept). Deliberately a sanity check, not RFC 5321 in full: it catches the
 * typos that happen in spreadsheets (missing @, commas, spaces, a domain
 * without a dot) and lets through the unusual-but-valid.
 */
static int
email_normalize(char *s)
{
    char *at = strchr(s, '@'), *dom;
    size_t local_len, dom_len;
    if (!at || strchr(at + 1, '@'))
        return -EINVAL;
    local_len = (size_t)(at - s);
    dom = at + 1;
    dom_len = strlen(dom);
    if (local_len == 0 || local_len > 64 || dom_len == 0 || dom_len > 253)
        return -EINVAL;
    if (s[0] == '.' || at[-1] == '.')
        return -EINVAL;
    for (char *p = s; p < at; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7F || strchr("()<>,;:\\\"[]", c) || (c == '.' && p[1] == '.'))
            return -EINVAL;
    }
    if (!strchr(dom, '.'))
        return -EINVAL;
    /* Labels: letters, digits, hyphens, or UTF-8 for internationalised names;
     * none empty, none starting or ending with a hyphen. */
    for (char *label = dom; *label;) {
        char *end = strchr(label, '.');
        size_t n = end ? (size_t)(end - label) : strlen(label);
        if (n == 0 || n > 63 || label[0] == '-' || label[n - 1] == '-')
            return -EINVAL;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)label[i];
            if (!(c >= 0x80 || is_alpha((char)c) || is_digit((char)c) || c == '-'))
                return -EINVAL;
        }
        if (!end)
            break;
        label = end + 1;
        if (!*label)
            return -EINVAL; /* trailing dot */
    }
    ascii_lower(dom);
    return 0;
}

/*
 * Keeps digits and one leading '+', drops the usual separators, in place.
 * -EILSEQ for letters (a vanity number or a name in the wrong column),
 * -EINVAL for anything else odd, -ERANGE when fewer than 3 digits remain.
 * s is only rewritten once it is known to be good, so that a message can
 * still quote what the file said.
 */
static int
phone_normalize(char *s)
{
    size_t o = 0, ndig = 0;
    bool lead = true; /* nothing but separators so far: a '+' may come */
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        if (is_digit(c)) {
            ndig++;
            lead = false;
        } else if (c == '+' && lead) {
            lead = false;
        } else if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '\t') {
            continue;
        } else if (is_alpha(c) || (unsigned char)c >= 0x80) {
            return -EILSEQ;
        } else {
            return -EINVAL;
        }
    }
    if (ndig < 3)
        return -ERANGE;
    for (size_t i = 0; s[i]; i++)
        if (is_digit(s[i]) || (s[i] == '+' && o == 0))
            s[o++] = s[i];
    s[o] = '\0';
    return 0;
}

/* YYYY-MM-DD or --MM-DD. -EINVAL for the wrong shape, -ERANGE for a date
 * that does not exist (2026-02-30, --04-31). */
static int
birthday_check(const char *s)
{
    int y, m, d;
    if (s[0] == '-' && s[1] == '-') {
        if (strlen(s) != 7 || s[4] != '-' || !is_digit(s[2]) || !is_digit(s[3]) ||
            !is_digit(s[5]) || !is_digit(s[6]))
            return -EINVAL;
        m = (s[2] - '0') * 10 + (s[3] - '0');
        d = (s[5] - '0') * 10 + (s[6] - '0');
        /* Without a year, 29 February is a real birthday. */
        if (m < 1 || m > 12 || d < 1 || d > days_in_month(2000, m))
            return -ERANGE;
        return 0;
    }
    return date_parse(s, &y, &m, &d);
}

/* Why a date that has the right shape is impossible, for the message. */
static void
date_why(const char *s, char *buf, size_t size)
{
    int y = 2000, m = 0, d = 0;
    if (s[0] == '-')
        sscanf(s, "--%2d-%2d", &m, &d);
    else
        sscanf(s, "%4d-%2d-%2d", &y, &m, &d);
    if (m < 1 || m > 12)
        snprintf(buf, size, "there is no month %02d", m);
    else if (s[0] == '-')
        snprintf(buf, size, "month %02d has %d days", m, days_in_month(2000, m));
    else
        snprintf(buf, size, "%04d-%02d has %d days", y, m, days_in_month(y, m));
}

/*
 * A decimal amount to cents: "12.50" -> 1250, "-3" -> -300, "0.5" -> 50.
 * More than two fractional digits are accepted only as trailing zeros; a
 * thousands separator, currency sign or exponent is an error.
 */
static int
amount_parse(const char *s, int64_t *cents)
{
    int sign = 1;
    int64_t whole = 0, frac = 0;
    int nwhole = 0, nfrac = 0;
    if (*s == '-' || *s == '+') {
        sign = *s == '-' ? -1 : 1;
        s++;
    }
    for (; is_digit(*s); s++) {
        if (++nwhole > 15)
            return -ERANGE;
        whole = whole * 10 + (*s - '0');
    }
    if (*s == '.') {
        for (s++; is_digit(*s); s++) {
            if (nfrac < 2) {
                frac = frac * 10 + (*s - '0');
            } else if (*s != '0') {
                return -EDOM; /* a third significant decimal: not cents */
            }
            nfrac++;
        }
    }
    if (*s || nwhole + nfrac == 0)
        return -EINVAL;
    if (nfrac == 1)
        frac *= 10;
    *cents = sign * (whole * 100 + frac);
    return 0;
}

/* ---- attribute values -------------------------------------------------- */

/*
 * A cell as a JSON value. Canonical integers and decimals (no leading zeros,
 * no '+', at most 15 digits) become numbers so that audiences can compare
 * them ("lifetime_value > 100"); everything else, including zip codes and
 * phone numbers that start with 0 or +, stays a string, exactly as written.
 */
static json_t *
attr_value(const char *s)
{
    const char *p = s;
    int ndig = 0;
    bool dot = false;
    if (*p == '-')
        p++;
    if (*p == '0' && is_digit(p[1]))
        return json_string(s);
    for (; *p; p++) {
        if (is_digit(*p)) {
            ndig++;
        } else if (*p == '.' && !dot && ndig > 0 && is_digit(p[1])) {
            dot = true;
        } else {
            return json_string(s);
        }
    }
    if (ndig == 0 || ndig > 15)
        return json_string(s);
    if (!dot) {
        int64_t v;
        if (parse_i64(s, &v) == 0)
            return json_integer(v);
        return json_string(s);
    }
    return json_real(strtod(s, NULL));
}

/* ---- reading records ---------------------------------------------------- */

static void
csv_on_field(void *s, size_t len, void *data)
{
    struct imp *im = data;
    if (im->nf == im->fcap) {
        im->fcap = im->fcap ? im->fcap * 2 : 32;
        im->foff = xrealloc(im->foff, im->fcap * sizeof(size_t));
    }
    im->foff[im->nf++] = im->rec.len;
    /* Each field is stored NUL-terminated; an embedded NUL is caught later by
     * comparing strlen with the recorded length. */
    sbuf_add(&im->rec, s ? s : "", s ? len : 0);
    sbuf_addc(&im->rec, '\0');
}

static void
csv_on_record(int term, void *data)
{
    struct imp *im = data;
    char *stackv[64], **fv = stackv;
    bool all_empty = true;
    (void)term;
    if (im->nf > 64)
        fv = xmalloc(im->nf * sizeof(char *));
    for (size_t i = 0; i < im->nf; i++) {
        fv[i] = im->rec.s + im->foff[i];
        if (fv[i][0])
            all_empty = false;
    }
    /* Spreadsheets like to append rows of bare commas: not data. */
    if (!im->dberr && !(all_empty && im->have_header)) {
        if (!im->have_header) {
            im->have_header = true;
            im->ncols = im->nf;
            im->header(im, fv, im->nf);
        } else {
            im->row(im, fv, im->nf);
        }
    }
    if (fv != stackv)
        free(fv);
    im->nf = 0;
    im->rec.len = 0;
    im->rec_open = false;
}

/* Checks each field for NUL bytes and invalid UTF-8; false if any is bad. */
static bool
fields_clean(struct imp *im, char **fv, size_t nf, char *const *colnames)
{
    bool ok = true;
    for (size_t i = 0; i < nf; i++) {
        size_t len = (i + 1 < im->nf ? im->foff[i + 1] : im->rec.len) - im->foff[i] - 1;
        size_t slen = strlen(fv[i]);
        const char *col = colnames && colnames[i] && colnames[i][0] ? colnames[i] : NULL;
        char colbuf[32];
        if (!col) {
            snprintf(colbuf, sizeof(colbuf), "%zu", i + 1);
        }
        if (slen != len) {
            row_error(im, im->rec_line,
                      "column %s%s%s contains a NUL byte (is this a CSV text file?)",
                      col ? "'" : "", col ? col : colbuf, col ? "'" : "");
            ok = false;
        } else if (!utf8_valid(fv[i], len)) {
            row_error(im, im->rec_line,
                      "column %s%s%s is not valid UTF-8: %s (save the file as UTF-8, e.g. "
                      "\"CSV UTF-8\" in Excel; it may be GBK or Latin-1)",
                      col ? "'" : "", col ? col : colbuf, col ? "'" : "", show(im, fv[i]));
            ok = false;
        }
    }
    return ok;
}

/* libcsv skips lines of only spaces, tabs and line ends between records. */
static bool
line_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static void
progress_tick(struct imp *im)
{
    if (im->progress && im->stats.rows % PROGRESS_EVERY == 0)
        im->progress(im->ud, im->stats.rows, im->bytes_done, im->bytes_total);
}

/*
 * The line of the row that first named the customer or order stored under
 * rowid in this file, 0 if none has yet. Every good row is looked up or
 * written, so the table itself is the set of ids seen; this dense array
 * (4 bytes per rowid) only remembers where, which keeps a 4,000,000-row file
 * in a few MB where a set of the id strings took hundreds.
 */
static long
rowid_line(struct imp *im, int64_t rowid)
{
    if (rowid <= 0 || (size_t)rowid >= im->nline_of)
        return 0;
    return (long)im->line_of[rowid];
}

static void
rowid_line_set(struct imp *im, int64_t rowid, long line)
{
    if (rowid <= 0 || rowid > ROWID_LINES_MAX)
        return; /* a sparse, huge rowid: not tracked (no "already on line N") */
    if ((size_t)rowid >= im->nline_of) {
        size_t n = im->nline_of ? im->nline_of : 4096;
        while (n <= (size_t)rowid)
            n *= 2;
        im->line_of = xrealloc(im->line_of, n * sizeof(*im->line_of));
        memset(im->line_of + im->nline_of, 0, (n - im->nline_of) * sizeof(*im->line_of));
        im->nline_of = n;
    }
    im->line_of[rowid] = line > (long)UINT32_MAX ? UINT32_MAX : (uint32_t)line;
}

/* Feeds one physical line [s, s + n) to libcsv. */
static int
feed_line(struct imp *im, const char *s, size_t n)
{
    size_t used;
    im->line++;
    im->bytes_done += n;
    if (!im->rec_open && !line_blank(s, n)) {
        im->rec_open = true;
        im->rec_line = im->line;
    }
    used = csv_parse(&im->csv, s, n, csv_on_field, csv_on_record, im);
    if (used == n)
        return 0;
    if (csv_error(&im->csv) != CSV_EPARSE)
        return -ENOMEM;
    if (im->line != im->rec_line)
        row_error(im, im->rec_line,
                  "stray double quote on line %ld (a value that contains \" must be "
                  "quoted, with the inner quotes doubled: \"5\"\" screen\")",
                  im->line);
    else
        row_error(im, im->rec_line,
                  "stray double quote (a value that contains \" must be quoted, with the "
                  "inner quotes doubled: \"5\"\" screen\")");
    /* Drop the broken record and carry on with the next line so that the
     * rest of the file is still checked. */
    csv_free(&im->csv);
    if (csv_init(&im->csv, CSV_STRICT | CSV_STRICT_FINI) != 0) {
        im->csv_ok = false;
        return -ENOMEM;
    }
    im->nf = 0;
    im->rec.len = 0;
    im->rec_open = false;
    if (!im->have_header) {
        /* Without a header nothing after it can be checked. */
        im->have_header = true;
        im->ncols = 0;
        im->failed = true;
    }
    return 0;
}

/*
 * Feeds every complete physical line held in im->pend (ended by "\n", "\r\n"
 * or a lone "\r"), keeping the incomplete rest for the next chunk; at the end
 * of the file (final) the rest is a line too. Each byte is scanned once
 * however the file is cut into chunks: pend_scan remembers how far the
 * search for a line end has got.
 */
static int
feed_pending(struct imp *im, bool final)
{
    char *d = im->pend.s;
    size_t len = im->pend.len, pos = 0, i;
    int r = 0;
    if (!im->bom_checked) {
        if (len < 3 && !final)
            return 0;
        im->bom_checked = true;
        if (len >= 3 && memcmp(d, "\xEF\xBB\xBF", 3) == 0) {
            pos = 3;
            im->bytes_done += 3;
        }
    }
    i = im->pend_scan > pos ? im->pend_scan : pos;
    while (i < len && !im->dberr && r == 0) {
        size_t end;
        if (d[i] == '\n') {
            end = i + 1;
        } else if (d[i] == '\r') {
            if (i + 1 == len && !final)
                break; /* "\r" or "\r\n": the next chunk tells */
            end = i + 1 < len && d[i + 1] == '\n' ? i + 2 : i + 1;
        } else {
            i++;
            continue;
        }
        r = feed_line(im, d + pos, end - pos);
        pos = i = end;
    }
    if (final && pos < len && !im->dberr && r == 0) {
        r = feed_line(im, d + pos, len - pos);
        pos = i = len;
    }
    memmove(d, d + pos, len - pos);
    im->pend.len = len - pos;
    if (im->pend.s)
        im->pend.s[im->pend.len] = '\0';
    im->pend_scan = i - pos;
    return r;
}

/* ---- shared driver ------------------------------------------------------ */

static void
imp_init(struct imp *im, struct store *st, const char *name, size_t len,
         import_progress_fn progress, void *ud)
{
    memset(im, 0, sizeof(*im));
    im->st = st;
    im->name = xstrdup(name ? name : "<input>");
    im->progress = progress;
    im->ud = ud;
    im->bytes_total = len;
    sbuf_init(&im->msgs);
    sbuf_init(&im->rec);
    sbuf_init(&im->pend);
    time_format_iso(import_now(), im->now_iso, sizeof(im->now_iso));
}

/* Opens the transaction and the CSV reader; false (with a message) if not. */
static bool
imp_begin(struct imp *im)
{
    if (csv_init(&im->csv, CSV_STRICT | CSV_STRICT_FINI) != 0) {
        row_error(im, 0, "out of memory while reading the file");
        im->dberr = -ENOMEM;
        return false;
    }
    im->csv_ok = true;
    /* The store bounds its page cache for a big file (store_import_begin). */
    if (store_import_begin(im->st) < 0) {
        row_error(im, 0, "cannot start a transaction: %s (is the database writable?)",
                  store_errmsg(im->st));
        im->dberr = -EIO;
        return false;
    }
    im->in_tx = true;
    return true;
}

static int
imp_feed(struct imp *im, const char *data, size_t len)
{
    int r;
    if (im->dberr)
        return im->dberr;
    sbuf_add(&im->pend, data, len);
    r = feed_pending(im, false);
    if (r == -ENOMEM) {
        row_error(im, 0, "out of memory while reading the file");
        im->dberr = -ENOMEM;
    }
    return im->dberr ? im->dberr : 0;
}

/* Ends the file: the verdict, then commit or roll back. abort = the sender
 * went away before the end: roll back without a verdict. */
static int
imp_end(struct imp *im, bool abort, int (*finish)(struct imp *))
{
    int r = im->dberr;
    if (r == 0 && abort) {
        row_error(im, 0, "the file ended early (the connection was closed); nothing was imported");
        r = -ECANCELED;
    }
    if (r == 0 && feed_pending(im, true) == -ENOMEM) {
        row_error(im, 0, "out of memory while reading the file");
        r = -ENOMEM;
    }
    if (r == 0 && !im->dberr && csv_fini(&im->csv, csv_on_field, csv_on_record, im) != 0)
        row_error(im, im->rec_line,
                  "a quoted value starting on this record is never closed (add the closing \", "
                  "or double any \" inside it)");
    if (r == 0 && !im->have_header && !im->failed)
        row_error(im, 1, "the file is empty (the first row must name the columns)");
    if (r == 0 && !im->failed && !im->dberr)
        r = finish(im);
    if (r == 0 && im->dberr)
        r = im->dberr;
    if (r == 0 && im->failed)
        r = -EINVAL;
    if (r == 0 && store_import_commit(im->st) < 0) {
        row_error(im, 0, "cannot commit: %s", store_errmsg(im->st));
        r = -EIO;
    }
    if (r < 0) {
        if (im->in_tx)
            store_import_rollback(im->st);
        im->stats.inserted = im->stats.updated = im->stats.unchanged = 0;
    }
    im->in_tx = false;
    if (r == -ENOMEM || r == -ECANCELED)
        r = -EIO;
    if (im->progress)
        im->progress(im->ud, im->stats.rows, im->bytes_done, im->bytes_total);
    return r;
}

static void
imp_done(struct imp *im, struct import_stats *stats, char **errors)
{
    if (im->nmore)
        sbuf_printf(&im->msgs, "... and %ld more\n", im->nmore);
    if (stats)
        *stats = im->stats;
    if (errors)
        *errors = im->msgs.len ? sbuf_steal(&im->msgs) : NULL;
    if (im->csv_ok)
        csv_free(&im->csv);
    sbuf_free(&im->msgs);
    sbuf_free(&im->rec);
    sbuf_free(&im->pend);
    free(im->foff);
    free(im->line_of);
    idset_free(&im->bad_ids);
    free((char *)im->name);
}

/* ======================================================================= */
/* customers                                                               */
/* ======================================================================= */

/* The plain text columns, in the order of the customers table. */
enum {
    T_NAME = STORE_CUST_NAME,
    T_FIRST_NAME = STORE_CUST_FIRST_NAME,
    T_EMAIL = STORE_CUST_EMAIL,
    T_PHONE = STORE_CUST_PHONE,
    T_BIRTHDAY = STORE_CUST_BIRTHDAY,
    T_TZ = STORE_CUST_TZ,
    T_TIER = STORE_CUST_TIER,
    T_OWNER = STORE_CUST_OWNER,
    N_TEXT = STORE_CUST_NFIELDS
};

static const char *const text_cols[N_TEXT] = {
    "name", "first_name", "email", "phone", "birthday", "tz", "tier", "owner",
};

enum col_kind { K_IGNORE, K_ID, K_TEXT, K_TAGS, K_CREATED_AT, K_CONSENT, K_ATTR };

/* Every column name with a meaning, for "did you mean". */
static const char *const known_cols[] = {
    "id",   "name",  "first_name", "email",         "phone",       "birthday",   "tz",
    "tier", "owner", "tags",       "consent_email", "consent_sms", "created_at", NULL,
};


struct ccol {
    enum col_kind kind;
    int text;        /* K_TEXT: T_* */
    const char *key; /* K_CONSENT: channel; K_ATTR: attribute key */
};

struct cust {
    struct ccol *cols;
    char **names; /* lower-cased header names (owned), for messages */
    size_t ncols; /* entries in cols and names */
    bool present[N_TEXT];
    bool has_tags, has_attrs;
    bool empty_start;   /* no customers before this file: insert without looking up */
    long no_tz;         /* customers left without a zone of their own */
    struct store_saved_indexes *idx; /* dropped for a bulk load, built again at the end */
    struct store_customers_import *sc; /* the store's side of this import */
    char *source; /* consents.source */
};

/* Names other tools use for the known columns: a file exported from a CRM
 * says "timezone" or "mobile", and should be told that nudge calls it "tz". */
static const char *const col_aliases[][2] = {
    {"e-mail", "email"},
    {"mail", "email"},
    {"email_address", "email"},
    {"phone_number", "phone"},
    {"mobile", "phone"},
    {"mobile_phone", "phone"},
    {"cell", "phone"},
    {"telephone", "phone"},
    {"tel", "phone"},
    {"full_name", "name"},
    {"firstname", "first_name"},
    {"given_name", "first_name"},
    {"dob", "birthday"},
    {"date_of_birth", "birthday"},
    {"birthdate", "birthday"},
    {"birth_date", "birthday"},
    {"timezone", "tz"},
    {"time_zone", "tz"},
    {"tag", "tags"},
    {"created", "created_at"},
    {"signup_date", "created_at"},
};

/* Is `cand` close enough to `col` to be a misspelling, not a new attribute?
 * Short names need a closer match: "age" is not a typo for "name". */
static const char *
misspelt(const char *col, const char *const *cands)
{
    const char *best = did_you_mean(col, cands);
    int d;
    if (!best)
        return NULL;
    d = edit_distance(col, best);
    if (d <= 1 || (strlen(col) >= 5 && strlen(best) >= 5))
        return best;
    return NULL;
}

/* The known column an unknown customers column was probably meant to be. */
static const char *
column_hint(const char *col)
{
    for (size_t i = 0; i < sizeof(col_aliases) / sizeof(col_aliases[0]); i++)
        if (strcmp(col, col_aliases[i][0]) == 0)
            return col_aliases[i][1];
    return misspelt(col, known_cols);
}

static void
cust_header(struct imp *im, char **fv, size_t nf)
{
    struct cust *c = im->kind;
    long id_col = -1;
    c->cols = xcalloc(nf, sizeof(*c->cols));
    c->names = xcalloc(nf, sizeof(char *));
    c->ncols = nf;
    if (!fields_clean(im, fv, nf, NULL)) {
        im->ncols = 0;
        return;
    }
    for (size_t i = 0; i < nf; i++) {
        /* Copied: the record buffer is reused for the rows. */
        char *n = xstrdup(trim(fv[i]));
        struct ccol *cc = &c->cols[i];
        ascii_lower(n);
        c->names[i] = n;
        for (size_t j = 0; j < i; j++) {
            if (n[0] && strcmp(c->names[j], n) == 0) {
                row_error(im, im->rec_line,
                          "duplicate column '%s' (columns %zu and %zu; rename or remove one)",
                          show(im, n), j + 1, i + 1);
                break;
            }
        }
        if (!n[0]) {
            row_warning(im, im->rec_line, "column %zu has no name; its values are ignored", i + 1);
            cc->kind = K_IGNORE;
            continue;
        }
        if (strcmp(n, "id") == 0) {
            cc->kind = K_ID;
            id_col = (long)i;
            continue;
        }
        if (strcmp(n, "tags") == 0) {
            cc->kind = K_TAGS;
            c->has_tags = true;
            continue;
        }
        if (strcmp(n, "created_at") == 0) {
            cc->kind = K_CREATED_AT;
            continue;
        }
        if (strcmp(n, "updated_at") == 0 || strcmp(n, "attrs") == 0) {
            row_warning(im, im->rec_line,
                        "column '%s' is maintained by nudge; its values are ignored", n);
            cc->kind = K_IGNORE;
            continue;
        }
        cc->kind = K_ATTR;
        for (int t = 0; t < N_TEXT; t++) {
            if (strcmp(n, text_cols[t]) == 0) {
                cc->kind = K_TEXT;
                cc->text = t;
                c->present[t] = true;
            }
        }
        if (cc->kind == K_TEXT)
            continue;
        if (strncmp(n, "consent_", 8) == 0) {
            const char *ch = n + 8, *sugg;
            bool ok = ch[0] != '\0';
            for (const char *p = ch; *p; p++)
                if (!(is_alpha(*p) || is_digit(*p) || *p == '_' || *p == '-'))
                    ok = false;
            if (!ok) {
                row_error(im, im->rec_line,
                          "column '%s' does not name a channel (expected consent_email, "
                          "consent_sms, ...)",
                          show(im, n));
                cc->kind = K_IGNORE;
                continue;
            }
            cc->kind = K_CONSENT;
            cc->key = ch;
            /* The registry's consent names, to catch "consent_emial". */
            sugg = misspelt(ch, channel_consent_names());
            if (sugg && strcmp(sugg, ch) != 0)
                row_warning(im, im->rec_line,
                            "column '%s' records consent for a channel called '%s' (did you "
                            "mean 'consent_%s'?)",
                            n, ch, sugg);
            continue;
        }
        {
            const char *sugg = column_hint(n);
            cc->key = n;
            c->has_attrs = true;
            if (sugg)
                row_warning(im, im->rec_line,
                            "column '%s' is not a known column and will be stored as a custom "
                            "attribute (did you mean '%s'?)",
                            show(im, n), sugg);
        }
    }
    if (id_col < 0) {
        static const char *const aliases[] = {"customer_id", "customerid",  "customer id",
                                              "ext_id",      "external_id", "user_id",
                                              "uid",         "cid",         NULL};
        const char *alias = NULL;
        for (size_t i = 0; i < nf && !alias; i++)
            for (int a = 0; aliases[a]; a++)
                if (strcmp(c->names[i], aliases[a]) == 0)
                    alias = c->names[i];
        if (alias)
            row_error(im, im->rec_line,
                      "no 'id' column (rename column '%s' to 'id': it must hold your own "
                      "customer id)",
                      show(im, alias));
        else
            row_error(im, im->rec_line,
                      "no 'id' column (the first row must name the columns and one must be "
                      "'id', your own customer id, e.g. id,name,email)");
        im->ncols = 0; /* rows cannot be checked without it */
    }
}

/* Values of one customer row, after checking. */
struct crow {
    const char *id;
    const char *text[N_TEXT]; /* NULL = empty cell */
    const char *created_at;   /* NULL = keep / default */
    char **tags;              /* sorted, unique; valid when has_tags */
    size_t ntags;
    int *consent; /* per column: -1 leave, 0, 1 */
};

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Splits "vip; wholesale;;vip" into sorted unique {"vip", "wholesale"}, in place. */
static void
split_tags(char *s, struct crow *r)
{
    size_t n = 0, cap = 0;
    char **v = NULL;
    for (char *p = s; p;) {
        char *semi = strchr(p, ';'), *t;
        if (semi)
            *semi = '\0';
        t = trim(p);
        if (t[0]) {
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                v = xrealloc(v, cap * sizeof(char *));
            }
            v[n++] = t;
        }
        p = semi ? semi + 1 : NULL;
    }
    if (n > 1) {
        size_t o = 1;
        qsort(v, n, sizeof(char *), cmp_str);
        for (size_t i = 1; i < n; i++)
            if (strcmp(v[i], v[o - 1]) != 0)
                v[o++] = v[i];
        n = o;
    }
    free(r->tags); /* a second tags column (already an error) */
    r->tags = v;
    r->ntags = n;
}

/* Builds the attrs JSON text from the stored text and this row's cells.
 * Returns a malloc'd string; keys sorted so equal objects are equal text. */
static char *
merge_attrs(struct imp *im, struct cust *c, const char *old, char **fv, size_t nf)
{
    json_error_t jerr;
    json_t *o = old ? json_loads(old, 0, &jerr) : NULL;
    char *out;
    if (!o || !json_is_object(o)) {
        if (o || (old && old[0]))
            log_warn("import", "%s: stored attrs are not a JSON object; replacing them", im->name);
        json_decref(o);
        o = json_object();
    }
    for (size_t i = 0; i < nf; i++) {
        if (c->cols[i].kind != K_ATTR)
            continue;
        if (fv[i][0])
            json_object_set_new(o, c->cols[i].key, attr_value(fv[i]));
        else
            json_object_del(o, c->cols[i].key);
    }
    out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    json_decref(o);
    if (!out)
        out = xstrdup("{}");
    return out;
}

/* Validates one row into r; false if anything was wrong (all reported). */
static bool
cust_check(struct imp *im, struct cust *c, char **fv, size_t nf, struct crow *r)
{
    bool ok = true;
    long line = im->rec_line;
    const char *bad_id_col = NULL;
    for (size_t i = 0; i < nf; i++) {
        struct ccol *cc = &c->cols[i];
        char *v = trim(fv[i]);
        fv[i] = v;
        switch (cc->kind) {
        case K_IGNORE:
        case K_ATTR:
            break;
        case K_ID: {
            long first;
            bad_id_col = v;
            if (!v[0]) {
                row_error(im, line,
                          "missing id (every customer needs your own id in the 'id' "
                          "column)");
                ok = false;
                break;
            }
            r->id = v;
            /* A row seen good was written or looked up (cust_write finds
             * the repeat there); only earlier bad rows are remembered here. */
            first = idset_get(&im->bad_ids, v);
            if (first) {
                row_error(im, line,
                          "id %s already on line %ld (each customer may appear once per file; "
                          "merge the two rows)",
                          show(im, v), first);
                ok = false;
            }
            break;
        }
        case K_TEXT:
            if (!v[0]) {
                r->text[cc->text] = NULL;
                break;
            }
            r->text[cc->text] = v;
            if (cc->text == T_EMAIL) {
                /* email_normalize changes nothing when it fails. */
                if (email_normalize(v) < 0) {
                    row_error(im, line, "malformed email '%s' (expected name@example.com)",
                              show(im, v));
                    ok = false;
                }
            } else if (cc->text == T_PHONE) {
                int e = phone_normalize(v);
                const char *orig = e < 0 ? show(im, v) : NULL;
                if (e == -EILSEQ) {
                    row_error(im, line,
                              "phone '%s' contains letters (write digits only, with a leading + "
                              "and the country code for international numbers)",
                              orig);
                    ok = false;
                } else if (e == -EINVAL) {
                    row_error(im, line,
                              "phone '%s' contains characters that are not part of a number "
                              "(use digits, spaces, dashes, parentheses and a leading +)",
                              orig);
                    ok = false;
                } else if (e < 0) {
                    row_error(im, line, "phone '%s' is too short (expected at least 3 digits)",
                              orig);
                    ok = false;
                }
            } else if (cc->text == T_BIRTHDAY) {
                int e = birthday_check(v);
                if (e == -ERANGE) {
                    char why[64];
                    date_why(v, why, sizeof(why));
                    row_error(im, line, "birthday '%s' is not a real date (%s)", show(im, v), why);
                    ok = false;
                } else if (e < 0) {
                    row_error(im, line,
                              "birthday '%s' is not a date (expected YYYY-MM-DD, or --MM-DD "
                              "when the year is unknown)",
                              show(im, v));
                    ok = false;
                }
            } else if (cc->text == T_TZ) {
                if (!cal_zone_valid(v)) {
                    row_error(im, line,
                              "unknown time zone '%s' (expected an IANA name such as "
                              "Asia/Shanghai)",
                              show(im, v));
                    ok = false;
                }
            }
            break;
        case K_TAGS:
            split_tags(v, r);
            break;
        case K_CREATED_AT: {
            ntime_t t;
            if (!v[0])
                break;
            if (time_parse_iso(v, &t) < 0) {
                row_error(im, line,
                          "created_at '%s' is not a date or time (expected YYYY-MM-DD or RFC "
                          "3339 such as 2027-02-03T10:00:00+08:00)",
                          show(im, v));
                ok = false;
            } else {
                r->created_at = v;
            }
            break;
        }
        case K_CONSENT: {
            int g;
            if (!v[0])
                break;
            g = parse_yesno(v);
            if (g < 0) {
                row_error(im, line,
                          "%s '%s' is not yes or no (use yes/no, true/false, 1/0 or y/n; leave "
                          "it empty to keep the current consent)",
                          c->names[i], show(im, v));
                ok = false;
            } else {
                r->consent[i] = g;
            }
            break;
        }
        }
    }
    if (!ok && bad_id_col && bad_id_col[0])
        idset_put(&im->bad_ids, bad_id_col, line);
    return ok;
}

/* Tags stored for customer id differ from r's? */
static int
tags_differ(struct imp *im, struct cust *c, int64_t id, const struct crow *r)
{
    int d = store_import_customer_tags_differ(c->sc, id, r->tags, r->ntags);
    if (d < 0)
        db_error(im, "reading tags");
    return d;
}

static bool
write_tags(struct imp *im, struct cust *c, int64_t id, const struct crow *r, bool fresh)
{
    /* A customer inserted just now has no tags to delete. */
    if (!fresh && store_import_customer_tags_clear(c->sc, id) < 0) {
        db_error(im, "replacing tags");
        return false;
    }
    for (size_t i = 0; i < r->ntags; i++) {
        if (store_import_customer_tag_add(c->sc, id, r->tags[i]) < 0) {
            db_error(im, "adding a tag");
            return false;
        }
    }
    return true;
}

/*
 * Does consent column i differ from what is stored (or is nothing stored)?
 * 1 yes, 0 no, CONSENT_WITHDRAWN when the file would grant a consent that
 * was withdrawn by some other way than an import (an unsubscribe link, the
 * admin): a spreadsheet exported before the customer opted out must not opt
 * them back in, so that case is left alone with a warning.
 */
#define CONSENT_WITHDRAWN 2

static int
consent_differs(struct imp *im, struct cust *c, int64_t id, size_t i, int granted)
{
    int stored, differ = 1;
    const char *source;
    int e = store_import_consent_get(c->sc, id, c->cols[i].key, &stored, &source);
    if (e == 0) {
        differ = stored != granted;
        if (differ && granted && (!source || strncmp(source, "import", 6) != 0))
            differ = CONSENT_WITHDRAWN;
    } else if (e != -ENOENT) {
        db_error(im, "reading consents");
        return -EIO;
    }
    return differ;
}

static bool
write_consent(struct imp *im, struct cust *c, int64_t id, size_t i, int granted)
{
    if (store_import_consent_set(c->sc, id, c->cols[i].key, granted, im->now_iso, c->source) <
        0) {
        db_error(im, "recording a consent");
        return false;
    }
    return true;
}

static void
dup_customer(struct imp *im, const char *id, long first)
{
    row_error(im, im->rec_line,
              "id %s already on line %ld (each customer may appear once per file; merge the "
              "two rows)",
              show(im, id), first);
}

/* Upserts a checked row. */
static void
cust_write(struct imp *im, struct cust *c, char **fv, size_t nf, struct crow *r)
{
    struct store_import_customer old, upd = {0};
    int64_t id;
    int e;
    bool row_changed = false, other_changed = false;
    char *attrs = NULL;

    if (c->empty_start) {
        /* Nothing was stored before this file: every id is new unless the
         * file repeats it, which the insert's unique key tells. */
        e = -ENOENT;
    } else {
        e = store_import_customer_find(c->sc, r->id, &old);
        if (e < 0 && e != -ENOENT) {
            db_error(im, "looking up a customer");
            return;
        }
    }

    if (e == -ENOENT) {
        /* A new customer. */
        struct store_import_customer add = {0};
        attrs = c->has_attrs ? merge_attrs(im, c, NULL, fv, nf) : xstrdup("{}");
        add.ext_id = r->id;
        for (int t = 0; t < N_TEXT; t++)
            add.field[t] = r->text[t];
        add.created_at = r->created_at ? r->created_at : im->now_iso;
        add.updated_at = im->now_iso;
        add.attrs = attrs;
        e = store_import_customer_add(c->sc, &add, &id);
        if (e == -EEXIST && c->empty_start) {
            /* The file names this id twice: find the first. */
            if (store_import_customer_find(c->sc, r->id, &old) < 0) {
                db_error(im, "looking up a customer");
                goto out;
            }
            dup_customer(im, r->id, rowid_line(im, old.id));
            goto out;
        }
        if (e < 0) {
            db_error(im, "adding a customer");
            goto out;
        }
        rowid_line_set(im, id, im->rec_line);
        if (!r->text[T_TZ])
            c->no_tz++;
        if (c->has_tags && !write_tags(im, c, id, r, true))
            goto out;
        for (size_t i = 0; i < nf; i++)
            if (c->cols[i].kind == K_CONSENT && r->consent[i] >= 0 &&
                !write_consent(im, c, id, i, r->consent[i]))
                goto out;
        im->stats.inserted++;
        goto out;
    }

    /* An existing customer: compare everything, write only what changed.
     * A column absent from the file keeps the stored value. The store
     * keeps old's strings until its next lookup. */
    id = old.id;
    if (rowid_line(im, id)) {
        dup_customer(im, r->id, rowid_line(im, id));
        return;
    }
    rowid_line_set(im, id, im->rec_line);
    if (!(c->present[T_TZ] ? r->text[T_TZ] : old.field[T_TZ]))
        c->no_tz++;
    for (int t = 0; t < N_TEXT; t++)
        if (c->present[t] && !streq_null(r->text[t], old.field[t]))
            row_changed = true;
    if (r->created_at && !streq_null(r->created_at, old.created_at))
        row_changed = true;
    if (c->has_attrs) {
        attrs = merge_attrs(im, c, old.attrs, fv, nf);
        if (!streq_null(attrs, old.attrs))
            row_changed = true;
    }
    if (row_changed) {
        upd.id = id;
        for (int t = 0; t < N_TEXT; t++)
            upd.field[t] = c->present[t] ? r->text[t] : old.field[t];
        upd.created_at = r->created_at ? r->created_at : old.created_at;
        upd.updated_at = im->now_iso;
        upd.attrs = attrs ? attrs : old.attrs;
    }

    if (c->has_tags) {
        int d = tags_differ(im, c, id, r);
        if (d < 0 || (d && !write_tags(im, c, id, r, false)))
            goto out;
        other_changed |= d;
    }
    for (size_t i = 0; i < nf; i++) {
        int d;
        if (c->cols[i].kind != K_CONSENT || r->consent[i] < 0)
            continue;
        d = consent_differs(im, c, id, i, r->consent[i]);
        if (d == CONSENT_WITHDRAWN) {
            row_warning(im, im->rec_line,
                        "customer %s withdrew %s consent outside an import; the file's '%s' is "
                        "ignored (the customer must opt in again)",
                        show(im, r->id), c->cols[i].key, show(im, fv[i]));
            continue;
        }
        if (d < 0 || (d && !write_consent(im, c, id, i, r->consent[i])))
            goto out;
        other_changed |= d;
    }
    if (row_changed) {
        if (store_import_customer_update(c->sc, &upd) == 0)
            im->stats.updated++;
        else
            db_error(im, "updating a customer");
    } else if (other_changed) {
        /* Only tags or consents changed: the customer did change, so its
         * updated_at moves, but its fields stay as stored. */
        if (store_import_customer_touch(c->sc, id, im->now_iso) == 0)
            im->stats.updated++;
        else
            db_error(im, "updating a customer");
    } else {
        im->stats.unchanged++;
    }
out:
    free(attrs);
}

static void
cust_row(struct imp *im, char **fv, size_t nf)
{
    struct cust *c = im->kind;
    struct crow r;
    int stackc[64];
    bool ok;
    if (im->ncols == 0)
        return; /* the header was unusable; it has been reported */
    im->stats.rows++;
    if (nf != im->ncols) {
        row_error(im, im->rec_line,
                  "row has %zu fields but the header has %zu (put values that contain commas "
                  "in double quotes)",
                  nf, im->ncols);
        progress_tick(im);
        return;
    }
    if (!fields_clean(im, fv, nf, c->names)) {
        progress_tick(im);
        return;
    }
    memset(&r, 0, sizeof(r));
    r.consent = nf <= 64 ? stackc : xmalloc(nf * sizeof(int));
    for (size_t i = 0; i < nf; i++)
        r.consent[i] = -1;
    ok = cust_check(im, c, fv, nf, &r);
    /* Good rows are written even after a bad one (all of it is rolled back
     * at the end): the table is what tells a repeated id. */
    if (ok && !im->dberr)
        cust_write(im, c, fv, nf, &r);
    free(r.tags);
    if (r.consent != stackc)
        free(r.consent);
    progress_tick(im);
}

static int
cust_finish(struct imp *im)
{
    struct cust *c = im->kind;
    if (c->idx && store_import_indexes_restore(im->st, c->idx) < 0) {
        db_error(im, "building the customer indexes");
        return -EIO;
    }
    if (im->ncols == 0)
        return 0;
    /* Every attribute column of the file is a key audiences may use, even if
     * all its cells are empty this time. */
    for (size_t i = 0; i < im->ncols; i++) {
        if (c->cols[i].kind != K_ATTR)
            continue;
        if (store_import_attribute_key(c->sc, c->cols[i].key) < 0) {
            db_error(im, "recording attribute names");
            return -EIO;
        }
    }
    /* A customer without a zone gets messages at the default zone's hours:
     * right for most, 3 a.m. for someone abroad, so the count is said. */
    if (c->no_tz > 0 && im->default_tz)
        row_warning(im, 0,
                    "%ld customer%s no tz; %s %s (add a tz column with an IANA zone such as "
                    "Europe/Berlin for customers elsewhere)",
                    c->no_tz, c->no_tz == 1 ? " has" : "s have", c->no_tz == 1 ? "it uses" : "they use",
                    im->default_tz);
    return 0;
}

static void
cust_begin(struct imp *im, struct cust *c)
{
    int n;
    im->kind = c;
    im->header = cust_header;
    im->row = cust_row;
    c->source = xasprintf("import:%s", im->name);
    if (store_import_customers_open(im->st, &c->sc) < 0) {
        db_error(im, "preparing a statement");
        return;
    }
    if (!imp_begin(im))
        return;
    /* Into an empty table, a file loads like sqlite3 .import: rows first,
     * then each secondary index built once, sorted, in the same
     * transaction (a rollback brings the old ones back). Inserting into
     * three random-order indexes row by row was most of the time. */
    n = store_import_is_empty(im->st, "customers");
    if (n < 0) {
        db_error(im, "counting customers");
        return;
    }
    c->empty_start = n == 1;
    if (c->empty_start && store_import_indexes_drop(im->st, "customers", &c->idx) < 0)
        db_error(im, "dropping the customer indexes for a bulk load");
}

static void
cust_free(struct cust *c)
{
    store_import_customers_close(c->sc);
    store_import_indexes_free(c->idx);
    for (size_t i = 0; c->names && i < c->ncols; i++)
        free(c->names[i]);
    free(c->cols);
    free(c->names);
    free(c->source);
}

/* ======================================================================= */
/* orders                                                                  */
/* ======================================================================= */

enum { O_CUSTOMER_ID, O_ORDER_ID, O_AMOUNT, O_CURRENCY, O_ORDERED_AT, N_OCOLS };

static const char *const order_cols[N_OCOLS + 1] = {
    "customer_id", "order_id", "amount", "currency", "ordered_at", NULL,
};

struct ord {
    int col[N_OCOLS]; /* field index of each known column, -1 if absent */
    char **names;     /* lower-cased header names (owned), for messages */
    size_t ncols;     /* entries in names */
    bool empty_start; /* no orders before this file: insert without looking up */
    struct store_saved_indexes *idx; /* dropped for a bulk load, built again at the end */
    char *last_cust;  /* the customer id of the previous row and its rowid: */
    int64_t last_cid; /* orders come grouped by customer */
    int64_t *affected; /* customers whose stats need recomputing */
    size_t naff, capaff;
    struct store_orders_import *so; /* the store's side of this import */
};

static void
ord_header(struct imp *im, char **fv, size_t nf)
{
    struct ord *o = im->kind;
    char **names = xcalloc(nf ? nf : 1, sizeof(char *));
    o->names = names;
    o->ncols = nf;
    for (int k = 0; k < N_OCOLS; k++)
        o->col[k] = -1;
    if (!fields_clean(im, fv, nf, NULL)) {
        im->ncols = 0;
        return;
    }
    for (size_t i = 0; i < nf; i++) {
        /* Copied: the record buffer is reused for the rows. */
        char *n = xstrdup(trim(fv[i]));
        bool known = false;
        ascii_lower(n);
        names[i] = n;
        for (size_t j = 0; j < i; j++) {
            if (n[0] && strcmp(names[j], n) == 0) {
                row_error(im, im->rec_line,
                          "duplicate column '%s' (columns %zu and %zu; rename or remove one)",
                          show(im, n), j + 1, i + 1);
                break;
            }
        }
        for (int k = 0; k < N_OCOLS; k++) {
            if (strcmp(n, order_cols[k]) == 0) {
                if (o->col[k] < 0)
                    o->col[k] = (int)i;
                known = true;
            }
        }
        if (known)
            continue;
        if (!n[0]) {
            row_warning(im, im->rec_line, "column %zu has no name; its values are ignored", i + 1);
        } else {
            const char *sugg = misspelt(n, order_cols);
            if (sugg)
                row_warning(im, im->rec_line,
                            "column '%s' is not used and its values are ignored (did you mean "
                            "'%s'?)",
                            show(im, n), sugg);
            else
                row_warning(im, im->rec_line,
                            "column '%s' is not used and its values are ignored (orders take "
                            "customer_id, order_id, amount, currency, ordered_at)",
                            show(im, n));
        }
    }
    for (int k = 0; k < N_OCOLS; k++) {
        const char *sugg;
        if (o->col[k] >= 0 || k == O_CURRENCY)
            continue;
        sugg = NULL;
        for (size_t i = 0; i < nf && !sugg; i++) {
            const char *cand[2] = {names[i], NULL};
            if (names[i][0] && misspelt(order_cols[k], cand))
                sugg = names[i];
        }
        if (sugg)
            row_error(im, im->rec_line, "no '%s' column (rename column '%s' to '%s')",
                      order_cols[k], show(im, sugg), order_cols[k]);
        else
            row_error(im, im->rec_line,
                      "no '%s' column (the first row must name the columns: customer_id, "
                      "order_id, amount, currency, ordered_at)",
                      order_cols[k]);
        im->ncols = 0;
    }
}

static void
ord_affect(struct ord *o, int64_t cid)
{
    if (o->empty_start) {
        o->naff = 1; /* every customer with orders is recomputed at the end */
        return;
    }
    if (o->naff && o->affected[o->naff - 1] == cid)
        return; /* orders usually come grouped by customer */
    if (o->naff == o->capaff) {
        o->capaff = o->capaff ? o->capaff * 2 : 256;
        o->affected = xrealloc(o->affected, o->capaff * sizeof(*o->affected));
    }
    o->affected[o->naff++] = cid;
}

/* The timeline entry of an order, as sorted compact JSON. */
static bool
json_plain(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' || (unsigned char)*s >= 0x7F)
            return false;
    return true;
}

static char *
order_detail(const char *order_id, int64_t cents, const char *currency)
{
    json_t *d;
    /* The usual ids need no escaping: written directly, byte for byte what
     * jansson writes (sorted keys, compact), without building a tree per
     * order. Anything else goes through jansson. */
    if (json_plain(order_id) && json_plain(currency))
        return xasprintf("{\"amount_cents\":%lld,\"currency\":\"%s\",\"order_id\":\"%s\"}",
                         (long long)cents, currency, order_id);
    d = json_pack("{s:s, s:I, s:s}", "order_id", order_id, "amount_cents",
                          (json_int_t)cents, "currency", currency);
    char *out = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(d);
    return out ? out : xstrdup("{}");
}

static void
dup_order(struct imp *im, const char *order_id, long first)
{
    row_error(im, im->rec_line,
              "order_id %s already on line %ld (each order may appear once per file; merge the "
              "two rows)",
              show(im, order_id), first);
}

static void
ord_row(struct imp *im, char **fv, size_t nf)
{
    struct ord *o = im->kind;
    long line = im->rec_line;
    const char *cust_id, *order_id, *amount, *currency = "", *ordered_at;
    char cur[4];
    int64_t cents = 0;
    ntime_t at = 0;
    int64_t cid = 0, oid;
    struct store_import_order old;
    char *detail = NULL;
    bool ok = true;
    int rc;

    if (im->ncols == 0)
        return;
    im->stats.rows++;
    if (nf != im->ncols) {
        row_error(im, line,
                  "row has %zu fields but the header has %zu (put values that contain commas "
                  "in double quotes)",
                  nf, im->ncols);
        goto done;
    }
    if (!fields_clean(im, fv, nf, o->names))
        goto done;
    for (size_t i = 0; i < nf; i++)
        fv[i] = trim(fv[i]);
    cust_id = fv[o->col[O_CUSTOMER_ID]];
    order_id = fv[o->col[O_ORDER_ID]];
    amount = fv[o->col[O_AMOUNT]];
    ordered_at = fv[o->col[O_ORDERED_AT]];
    if (o->col[O_CURRENCY] >= 0)
        currency = fv[o->col[O_CURRENCY]];

    if (!order_id[0]) {
        row_error(im, line, "missing order_id (every order needs your own order id)");
        ok = false;
    } else {
        /* Good rows are found in the table (below); earlier bad ones here. */
        long first = idset_get(&im->bad_ids, order_id);
        if (first) {
            row_error(im, line,
                      "order_id %s already on line %ld (each order may appear once per file; "
                      "merge the two rows)",
                      show(im, order_id), first);
            ok = false;
        }
    }
    if (!amount[0]) {
        row_error(im, line, "missing amount (e.g. 12.50, or -12.50 for a refund)");
        ok = false;
    } else {
        int e = amount_parse(amount, &cents);
        if (e == -EDOM) {
            row_error(im, line,
                      "amount '%s' has more than two decimals (amounts are kept in cents; "
                      "round it)",
                      show(im, amount));
            ok = false;
        } else if (e < 0) {
            row_error(im, line,
                      "amount '%s' is not a decimal amount (expected e.g. 12.50 or -3.00: a "
                      "dot for decimals, no currency sign or thousands separator)",
                      show(im, amount));
            ok = false;
        }
    }
    if (currency[0]) {
        if (strlen(currency) != 3 || !is_alpha(currency[0]) || !is_alpha(currency[1]) ||
            !is_alpha(currency[2])) {
            row_error(im, line,
                      "currency '%s' is not a 3-letter code (expected ISO 4217 such as CNY, "
                      "USD or EUR, or leave it empty)",
                      show(im, currency));
            ok = false;
        } else {
            for (int k = 0; k < 3; k++)
                cur[k] = (char)(currency[k] >= 'a' ? currency[k] - 'a' + 'A' : currency[k]);
            cur[3] = '\0';
            currency = cur;
        }
    }
    if (!ordered_at[0]) {
        row_error(im, line, "missing ordered_at (expected YYYY-MM-DD or RFC 3339)");
        ok = false;
    } else if (time_parse_iso(ordered_at, &at) < 0) {
        row_error(im, line,
                  "ordered_at '%s' is not a date or time (expected YYYY-MM-DD or RFC 3339 such "
                  "as 2027-02-03T10:00:00+08:00)",
                  show(im, ordered_at));
        ok = false;
    }
    if (!cust_id[0]) {
        row_error(im, line, "missing customer_id (the 'id' of a customer already imported)");
        ok = false;
    } else if (o->last_cust && strcmp(o->last_cust, cust_id) == 0) {
        cid = o->last_cid;
    } else if (!im->dberr) {
        rc = store_import_order_customer(o->so, cust_id, &cid);
        if (rc == 0) {
            free(o->last_cust);
            o->last_cust = xstrdup(cust_id);
            o->last_cid = cid;
        } else if (rc == -ENOENT) {
            row_error(im, line, "unknown customer_id %s (import the customer first, or fix the id)",
                      show(im, cust_id));
            ok = false;
        } else {
            db_error(im, "looking up a customer");
            ok = false;
        }
    }
    if (!ok) {
        if (order_id[0])
            idset_put(&im->bad_ids, order_id, line);
        goto done;
    }
    /* Good rows are written even after a bad one (all of it is rolled back
     * at the end): the table is what tells a repeated order_id. */
    if (im->dberr)
        goto done;

    if (o->empty_start)
        rc = -ENOENT;
    else
        rc = store_import_order_find(o->so, order_id, &old);
    if (rc == -ENOENT) {
        struct store_import_order add = {0, order_id, cid, cents, currency, ordered_at};
        rc = store_import_order_add(o->so, &add, &oid);
        if (rc == -EEXIST && o->empty_start) {
            /* The file names this order twice: find the first. */
            if (store_import_order_find(o->so, order_id, &old) < 0)
                db_error(im, "looking up an order");
            else
                dup_order(im, order_id, rowid_line(im, old.id));
            goto done;
        }
        if (rc < 0) {
            db_error(im, "adding an order");
            goto done;
        }
        rowid_line_set(im, oid, line);
        detail = order_detail(order_id, cents, currency);
        if (store_import_order_timeline_add(o->so, cid, at, detail) < 0) {
            db_error(im, "adding to the timeline");
            goto done;
        }
        ord_affect(o, cid);
        im->stats.inserted++;
        goto done;
    }
    if (rc < 0) {
        db_error(im, "looking up an order");
        goto done;
    }
    oid = old.id;
    if (rowid_line(im, oid)) {
        dup_order(im, order_id, rowid_line(im, oid));
        goto done;
    }
    rowid_line_set(im, oid, line);
    if (old.customer_id == cid && old.amount_cents == cents &&
        streq_null(old.currency, currency) && streq_null(old.ordered_at, ordered_at)) {
        im->stats.unchanged++;
        goto done;
    }
    {
        struct store_import_order upd = {oid, NULL, cid, cents, currency, ordered_at};
        if (store_import_order_update(o->so, &upd) < 0) {
            db_error(im, "updating an order");
            goto done;
        }
    }
    /* The order's timeline entry follows it: it tells what was bought, by
     * whom and when, so a corrected order corrects the entry. */
    detail = order_detail(order_id, cents, currency);
    if (store_import_order_timeline_update(o->so, old.customer_id, order_id, cid, at, detail) <
        0) {
        db_error(im, "updating the timeline");
        goto done;
    }
    /* An order moved to another customer changes both customers' stats. */
    if (old.customer_id != cid)
        ord_affect(o, old.customer_id);
    ord_affect(o, cid);
    im->stats.updated++;
done:
    free(detail);
    progress_tick(im);
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* customer_stats for every customer whose orders changed, from the orders
 * table itself (the same aggregation as schema migration 1 -> 2), so the
 * stats never drift from the orders however often a file is re-imported. */
static int
ord_finish(struct imp *im)
{
    struct ord *o = im->kind;
    int64_t prev = 0;
    if (o->idx && store_import_indexes_restore(im->st, o->idx) < 0) {
        db_error(im, "building the order indexes");
        return -EIO;
    }
    if (o->empty_start) {
        /* Every order in the table came from this file: one grouped pass
         * instead of one query per customer. */
        if (o->naff && store_import_stats_all(im->st) < 0) {
            db_error(im, "computing customer stats");
            return -EIO;
        }
        return 0;
    }
    if (o->naff > 1)
        qsort(o->affected, o->naff, sizeof(*o->affected), cmp_i64);
    for (size_t i = 0; i < o->naff; i++) {
        if (i > 0 && o->affected[i] == prev)
            continue;
        prev = o->affected[i];
        if (store_import_customer_stats(o->so, prev) < 0) {
            db_error(im, "recomputing customer stats");
            return -EIO;
        }
    }
    return 0;
}

static void
ord_begin(struct imp *im, struct ord *o)
{
    int n;
    im->kind = o;
    im->header = ord_header;
    im->row = ord_row;
    if (store_import_orders_open(im->st, &o->so) < 0) {
        db_error(im, "preparing a statement");
        return;
    }
    if (!imp_begin(im))
        return;
    n = store_import_is_empty(im->st, "orders");
    if (n < 0)
        db_error(im, "counting orders");
    o->empty_start = n == 1;
    if (o->empty_start && store_import_indexes_drop(im->st, "orders", &o->idx) < 0)
        db_error(im, "dropping the order indexes for a bulk load");
}

static void
ord_free(struct ord *o)
{
    store_import_orders_close(o->so);
    for (size_t i = 0; o->names && i < o->ncols; i++)
        free(o->names[i]);
    free(o->names);
    free(o->affected);
    free(o->last_cust);
    store_import_indexes_free(o->idx);
}

/* ======================================================================= */
/* the streaming interface                                                 */
/* ======================================================================= */

struct import {
    struct imp im;
    enum import_kind kind;
    struct cust c;
    struct ord o;
};

struct import *
import_begin(struct store *st, enum import_kind kind, const char *name,
             const struct import_opts *opts)
{
    struct import *imp = xcalloc(1, sizeof(*imp));
    imp_init(&imp->im, st, name, opts ? opts->total : 0, opts ? opts->progress : NULL,
             opts ? opts->ud : NULL);
    if (opts && opts->default_tz)
        imp->im.default_tz = xstrdup(opts->default_tz);
    imp->kind = kind;
    if (kind == IMPORT_CUSTOMERS)
        cust_begin(&imp->im, &imp->c);
    else
        ord_begin(&imp->im, &imp->o);
    return imp;
}

int
import_feed(struct import *imp, const char *data, size_t len)
{
    return imp_feed(&imp->im, data, len);
}

int
import_end(struct import *imp, bool abort, struct import_stats *stats, char **errors)
{
    int r = imp_end(&imp->im, abort, imp->kind == IMPORT_CUSTOMERS ? cust_finish : ord_finish);
    if (imp->kind == IMPORT_CUSTOMERS)
        cust_free(&imp->c);
    else
        ord_free(&imp->o);
    free((char *)imp->im.default_tz);
    imp_done(&imp->im, stats, errors);
    free(imp);
    return r;
}

static int
import_whole(struct store *st, enum import_kind kind, const char *name, const char *data,
             size_t len, struct import_stats *stats, char **errors, import_progress_fn progress,
             void *ud)
{
    struct import_opts o = {NULL, len, progress, ud};
    struct import *imp = import_begin(st, kind, name, &o);
    import_feed(imp, data, len);
    return import_end(imp, false, stats, errors);
}

int
import_customers(struct store *st, const char *name, const char *data, size_t len,
                 struct import_stats *stats, char **errors, import_progress_fn progress, void *ud)
{
    return import_whole(st, IMPORT_CUSTOMERS, name, data, len, stats, errors, progress, ud);
}

int
import_orders(struct store *st, const char *name, const char *data, size_t len,
              struct import_stats *stats, char **errors, import_progress_fn progress, void *ud)
{
    return import_whole(st, IMPORT_ORDERS, name, data, len, stats, errors, progress, ud);
}
