/*
 * import_csv.c: the reader under both imports (see import_csv.h). The file
 * is read with libcsv (RFC 4180, strict quoting) one physical line at a
 * time, so that every message can name the line on which its record starts
 * even when a quoted field spans several lines; each record goes to the
 * kind's row function as soon as it is complete.
 */
#include "import_csv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "store_import.h"

#define MAX_MESSAGES 100
#define PROGRESS_EVERY 1000
/* Rowids above this are not tracked for "already on line N" (4 bytes each). */
#define ROWID_LINES_MAX (64L << 20)

/* ---- ids seen in this file (for "already on line N") ------------------- */

static uint64_t
hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void
imp_idset_free(struct idset *s)
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
long
imp_idset_get(const struct idset *s, const char *key)
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
long
imp_idset_put(struct idset *s, const char *key, long line)
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

void __attribute__((format(printf, 3, 4)))
imp_error(struct imp *im, long line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(im, line, false, fmt, ap);
    va_end(ap);
}

void __attribute__((format(printf, 3, 4)))
imp_warning(struct imp *im, long line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(im, line, true, fmt, ap);
    va_end(ap);
}

void
imp_db_error(struct imp *im, const char *what)
{
    const char *m = store_errmsg(im->st);
    log_err("import", "%s: %s: %s", im->name, what, m);
    imp_error(im, im->rec_line, "database error while %s: %s", what, m);
    im->dberr = -EIO;
}

/*
 * A value as it can be shown inside a message: at most ~60 bytes, control
 * characters and bytes that are not UTF-8 escaped, so that a binary cell
 * cannot break the one-line-per-message promise.
 */
const char *
imp_show(struct imp *im, const char *s)
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

/* Is `cand` close enough to `col` to be a misspelling, not a new attribute?
 * Short names need a closer match: "age" is not a typo for "name". */
const char *
imp_misspelt(const char *col, const char *const *cands)
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
bool
imp_fields_clean(struct imp *im, char **fv, size_t nf, char *const *colnames)
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
            imp_error(im, im->rec_line,
                      "column %s%s%s contains a NUL byte (is this a CSV text file?)",
                      col ? "'" : "", col ? col : colbuf, col ? "'" : "");
            ok = false;
        } else if (!utf8_valid(fv[i], len)) {
            imp_error(im, im->rec_line,
                      "column %s%s%s is not valid UTF-8: %s (save the file as UTF-8, e.g. "
                      "\"CSV UTF-8\" in Excel; it may be GBK or Latin-1)",
                      col ? "'" : "", col ? col : colbuf, col ? "'" : "", imp_show(im, fv[i]));
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

void
imp_progress_tick(struct imp *im)
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
long
imp_rowid_line(struct imp *im, int64_t rowid)
{
    if (rowid <= 0 || (size_t)rowid >= im->nline_of)
        return 0;
    return (long)im->line_of[rowid];
}

void
imp_rowid_line_set(struct imp *im, int64_t rowid, long line)
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
        imp_error(im, im->rec_line,
                  "stray double quote on line %ld (a value that contains \" must be "
                  "quoted, with the inner quotes doubled: \"5\"\" screen\")",
                  im->line);
    else
        imp_error(im, im->rec_line,
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

void
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
    time_format_iso(imp_now(), im->now_iso, sizeof(im->now_iso));
}

/* Opens the transaction and the CSV reader; false (with a message) if not. */
bool
imp_begin(struct imp *im)
{
    if (csv_init(&im->csv, CSV_STRICT | CSV_STRICT_FINI) != 0) {
        imp_error(im, 0, "out of memory while reading the file");
        im->dberr = -ENOMEM;
        return false;
    }
    im->csv_ok = true;
    /* The store bounds its page cache for a big file (store_import_begin). */
    if (store_import_begin(im->st) < 0) {
        imp_error(im, 0, "cannot start a transaction: %s (is the database writable?)",
                  store_errmsg(im->st));
        im->dberr = -EIO;
        return false;
    }
    im->in_tx = true;
    return true;
}

int
imp_feed(struct imp *im, const char *data, size_t len)
{
    int r;
    if (im->dberr)
        return im->dberr;
    sbuf_add(&im->pend, data, len);
    r = feed_pending(im, false);
    if (r == -ENOMEM) {
        imp_error(im, 0, "out of memory while reading the file");
        im->dberr = -ENOMEM;
    }
    return im->dberr ? im->dberr : 0;
}

/* Ends the file: the verdict, then commit or roll back. abort = the sender
 * went away before the end: roll back without a verdict. */
int
imp_end(struct imp *im, bool abort, int (*finish)(struct imp *))
{
    int r = im->dberr;
    if (r == 0 && abort) {
        imp_error(im, 0, "the file ended early (the connection was closed); nothing was imported");
        r = -ECANCELED;
    }
    if (r == 0 && feed_pending(im, true) == -ENOMEM) {
        imp_error(im, 0, "out of memory while reading the file");
        r = -ENOMEM;
    }
    if (r == 0 && !im->dberr && csv_fini(&im->csv, csv_on_field, csv_on_record, im) != 0)
        imp_error(im, im->rec_line,
                  "a quoted value starting on this record is never closed (add the closing \", "
                  "or double any \" inside it)");
    if (r == 0 && !im->have_header && !im->failed)
        imp_error(im, 1, "the file is empty (the first row must name the columns)");
    if (r == 0 && !im->failed && !im->dberr)
        r = finish(im);
    if (r == 0 && im->dberr)
        r = im->dberr;
    if (r == 0 && im->failed)
        r = -EINVAL;
    if (r == 0 && store_import_commit(im->st) < 0) {
        imp_error(im, 0, "cannot commit: %s", store_errmsg(im->st));
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

void
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
    imp_idset_free(&im->bad_ids);
    free((char *)im->name);
}
