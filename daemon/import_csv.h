/*
 * import_csv.h: what the customers and orders imports (import_customers.c,
 * import_orders.c) share, for import.c to drive: the reader that takes a CSV
 * file in pieces and hands over one record at a time with the line it
 * started on, the messages ("NAME:LINE: ..."), the transaction around the
 * file, and the small checks every column needs. Not a public interface:
 * import.h is.
 */
#ifndef NUDGE_IMPORT_CSV_H
#define NUDGE_IMPORT_CSV_H

#include <csv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "import.h"
#include "util.h"

/* Ids seen in this file (for "already on line N"). */
struct idset {
    char **keys;
    long *lines;
    size_t cap, n;
};

struct imp;
/* A kind of file gets its header row, then each data record. */
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
    char now_iso[32];       /* one instant for the whole import */
    char show[4][96];       /* rotating buffers for values quoted in messages */
    int show_i;
};

/* The instant the import writes as updated_at (import_set_clock). */
ntime_t imp_now(void);

/* The line key was first seen on, or 0. */
long imp_idset_get(const struct idset *s, const char *key);
/* Remembers key at line; returns 0, or the line it was first seen on. */
long imp_idset_put(struct idset *s, const char *key, long line);

/* A message about line (0: the whole file), or a warning; an error marks
 * the file failed. */
void imp_error(struct imp *im, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void imp_warning(struct imp *im, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The database failed while doing what: logged, reported, the import stops. */
void imp_db_error(struct imp *im, const char *what);
/* A value as it can be quoted in a message (escaped, shortened; one of four
 * rotating buffers). */
const char *imp_show(struct imp *im, const char *s);
/* Checks each field for NUL bytes and invalid UTF-8; false (reported) if
 * any is bad. colnames may be NULL. */
bool imp_fields_clean(struct imp *im, char **fv, size_t nf, char *const *colnames);
/* Reports progress every PROGRESS_EVERY rows. */
void imp_progress_tick(struct imp *im);
/* The line of the row that named the customer or order stored under rowid
 * in this file, or 0; and remembering it. */
long imp_rowid_line(struct imp *im, int64_t rowid);
void imp_rowid_line_set(struct imp *im, int64_t rowid, long line);
/* The candidate that column name col is probably a misspelling of, or NULL. */
const char *imp_misspelt(const char *col, const char *const *cands);

/* The file's life: set up, open the reader and the transaction, feed it,
 * end it (finish is the kind's last step before the commit), hand over. */
void imp_init(struct imp *im, struct store *st, const char *name, size_t len,
              import_progress_fn progress, void *ud);
bool imp_begin(struct imp *im);
int imp_feed(struct imp *im, const char *data, size_t len);
int imp_end(struct imp *im, bool abort, int (*finish)(struct imp *));
void imp_done(struct imp *im, struct import_stats *stats, char **errors);

/* The two kinds of file. start prepares them and calls imp_begin; finish
 * runs before the commit; free releases what start took (im->kind). */
void imp_customers_start(struct imp *im);
int imp_customers_finish(struct imp *im);
void imp_customers_free(struct imp *im);
void imp_orders_start(struct imp *im);
int imp_orders_finish(struct imp *im);
void imp_orders_free(struct imp *im);

/* ---- small checks every column needs ---------------------------------- */

static inline bool
is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Trims ASCII white space in place (quoted cells keep theirs through libcsv). */
static inline char *
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

static inline void
ascii_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

static inline bool
is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline bool
streq_null(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

#endif
