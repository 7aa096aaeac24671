/*
 * import.c: customers and orders CSV files -> the store, as one idempotent
 * transaction per file (see import.h for the columns and what they mean).
 *
 * The file is read with libcsv (RFC 4180, strict quoting) one physical line at
 * a time, so that every message can name the line on which its record starts
 * even when a quoted field spans several lines (import_csv.c). Each record is
 * checked as soon as it is complete and, while the file has been clean so
 * far, upserted at once through the store's prepared statements
 * (import_customers.c, import_orders.c, store_import.c); after the first
 * problem nothing more is written but every row is still checked, so that
 * one run lists every problem, and the transaction is rolled back at the end.
 *
 * A row that matches what is stored is not written at all: that is what makes
 * a repeated import a no-op down to the bytes of the database file, and it is
 * also what keeps updated_at meaningful.
 *
 * This file holds the clock and the public interface that drives the two.
 */
#include "import.h"

#include <stdlib.h>
#include <time.h>

#include "import_csv.h"

/* ---- the clock ------------------------------------------------------- */

static ntime_t (*clock_fn)(void *ud);
static void *clock_ud;

void
import_set_clock(ntime_t (*now)(void *ud), void *ud)
{
    clock_fn = now;
    clock_ud = ud;
}

ntime_t
imp_now(void)
{
    return clock_fn ? clock_fn(clock_ud) : (ntime_t)time(NULL);
}

/* ---- the streaming interface ------------------------------------------ */

struct import {
    struct imp im;
    enum import_kind kind;
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
        imp_customers_start(&imp->im);
    else
        imp_orders_start(&imp->im);
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
    int r = imp_end(&imp->im, abort,
                    imp->kind == IMPORT_CUSTOMERS ? imp_customers_finish : imp_orders_finish);
    if (imp->kind == IMPORT_CUSTOMERS)
        imp_customers_free(&imp->im);
    else
        imp_orders_free(&imp->im);
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
