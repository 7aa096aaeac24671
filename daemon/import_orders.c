/*
 * import_orders.c: the orders file (see import.h for its columns): each row
 * checked, its customer found, the order added or corrected through
 * store_import.h, and the stats of every customer whose orders changed
 * recomputed before the commit. Orders are not copied to the timeline: it
 * holds what nudge did and what has no table of its own, and a customer's
 * history reads orders from their table.
 */
#include "import_csv.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "store_import.h"

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

/* ======================================================================= */
/* orders                                                                  */
/* ======================================================================= */

enum { O_CUSTOMER_ID, O_ORDER_ID, O_AMOUNT, O_CURRENCY, O_ORDERED_AT, N_OCOLS };

static const char *const order_cols[N_OCOLS + 1] = {
    "customer_id", "order_id", "amount", "currency", "ordered_at", NULL,
};

struct ord {
    int col[N_OCOLS];                /* field index of each known column, -1 if absent */
    char **names;                    /* lower-cased header names (owned), for messages */
    size_t ncols;                    /* entries in names */
    bool empty_start;                /* no orders before this file: insert without looking up */
    struct store_saved_indexes *idx; /* dropped for a bulk load, built again at the end */
    char *last_cust;                 /* the customer id of the previous row and its rowid: */
    int64_t last_cid;                /* orders come grouped by customer */
    int64_t *affected;               /* customers whose stats need recomputing */
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
    if (!imp_fields_clean(im, fv, nf, NULL)) {
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
                imp_error(im, im->rec_line,
                          "duplicate column '%s' (columns %zu and %zu; rename or remove one)",
                          imp_show(im, n), j + 1, i + 1);
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
            imp_warning(im, im->rec_line, "column %zu has no name; its values are ignored", i + 1);
        } else {
            const char *sugg = imp_misspelt(n, order_cols);
            if (sugg)
                imp_warning(im, im->rec_line,
                            "column '%s' is not used and its values are ignored (did you mean "
                            "'%s'?)",
                            imp_show(im, n), sugg);
            else
                imp_warning(im, im->rec_line,
                            "column '%s' is not used and its values are ignored (orders take "
                            "customer_id, order_id, amount, currency, ordered_at)",
                            imp_show(im, n));
        }
    }
    for (int k = 0; k < N_OCOLS; k++) {
        const char *sugg;
        if (o->col[k] >= 0 || k == O_CURRENCY)
            continue;
        sugg = NULL;
        for (size_t i = 0; i < nf && !sugg; i++) {
            const char *cand[2] = {names[i], NULL};
            if (names[i][0] && imp_misspelt(order_cols[k], cand))
                sugg = names[i];
        }
        if (sugg)
            imp_error(im, im->rec_line, "no '%s' column (rename column '%s' to '%s')",
                      order_cols[k], imp_show(im, sugg), order_cols[k]);
        else
            imp_error(im, im->rec_line,
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

static void
dup_order(struct imp *im, const char *order_id, long first)
{
    imp_error(im, im->rec_line,
              "order_id %s already on line %ld (each order may appear once per file; merge the "
              "two rows)",
              imp_show(im, order_id), first);
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
    bool ok = true;
    int rc;

    if (im->ncols == 0)
        return;
    im->stats.rows++;
    if (nf != im->ncols) {
        imp_error(im, line,
                  "row has %zu fields but the header has %zu (put values that contain commas "
                  "in double quotes)",
                  nf, im->ncols);
        goto done;
    }
    if (!imp_fields_clean(im, fv, nf, o->names))
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
        imp_error(im, line, "missing order_id (every order needs your own order id)");
        ok = false;
    } else {
        /* Good rows are found in the table (below); earlier bad ones here. */
        long first = imp_idset_get(&im->bad_ids, order_id);
        if (first) {
            imp_error(im, line,
                      "order_id %s already on line %ld (each order may appear once per file; "
                      "merge the two rows)",
                      imp_show(im, order_id), first);
            ok = false;
        }
    }
    if (!amount[0]) {
        imp_error(im, line, "missing amount (e.g. 12.50, or -12.50 for a refund)");
        ok = false;
    } else {
        int e = amount_parse(amount, &cents);
        if (e == -EDOM) {
            imp_error(im, line,
                      "amount '%s' has more than two decimals (amounts are kept in cents; "
                      "round it)",
                      imp_show(im, amount));
            ok = false;
        } else if (e < 0) {
            imp_error(im, line,
                      "amount '%s' is not a decimal amount (expected e.g. 12.50 or -3.00: a "
                      "dot for decimals, no currency sign or thousands separator)",
                      imp_show(im, amount));
            ok = false;
        }
    }
    if (currency[0]) {
        if (strlen(currency) != 3 || !is_alpha(currency[0]) || !is_alpha(currency[1]) ||
            !is_alpha(currency[2])) {
            imp_error(im, line,
                      "currency '%s' is not a 3-letter code (expected ISO 4217 such as CNY, "
                      "USD or EUR, or leave it empty)",
                      imp_show(im, currency));
            ok = false;
        } else {
            for (int k = 0; k < 3; k++)
                cur[k] = (char)(currency[k] >= 'a' ? currency[k] - 'a' + 'A' : currency[k]);
            cur[3] = '\0';
            currency = cur;
        }
    }
    if (!ordered_at[0]) {
        imp_error(im, line, "missing ordered_at (expected YYYY-MM-DD or RFC 3339)");
        ok = false;
    } else if (time_parse_iso(ordered_at, &at) < 0) {
        imp_error(im, line,
                  "ordered_at '%s' is not a date or time (expected YYYY-MM-DD or RFC 3339 such "
                  "as 2027-02-03T10:00:00+08:00)",
                  imp_show(im, ordered_at));
        ok = false;
    }
    if (!cust_id[0]) {
        imp_error(im, line, "missing customer_id (the 'id' of a customer already imported)");
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
            imp_error(im, line, "unknown customer_id %s (import the customer first, or fix the id)",
                      imp_show(im, cust_id));
            ok = false;
        } else {
            imp_db_error(im, "looking up a customer");
            ok = false;
        }
    }
    if (!ok) {
        if (order_id[0])
            imp_idset_put(&im->bad_ids, order_id, line);
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
                imp_db_error(im, "looking up an order");
            else
                dup_order(im, order_id, imp_rowid_line(im, old.id));
            goto done;
        }
        if (rc < 0) {
            imp_db_error(im, "adding an order");
            goto done;
        }
        imp_rowid_line_set(im, oid, line);
        ord_affect(o, cid);
        im->stats.inserted++;
        goto done;
    }
    if (rc < 0) {
        imp_db_error(im, "looking up an order");
        goto done;
    }
    oid = old.id;
    if (imp_rowid_line(im, oid)) {
        dup_order(im, order_id, imp_rowid_line(im, oid));
        goto done;
    }
    imp_rowid_line_set(im, oid, line);
    if (old.customer_id == cid && old.amount_cents == cents && streq_null(old.currency, currency) &&
        streq_null(old.ordered_at, ordered_at)) {
        im->stats.unchanged++;
        goto done;
    }
    {
        struct store_import_order upd = {oid, NULL, cid, cents, currency, ordered_at};
        if (store_import_order_update(o->so, &upd) < 0) {
            imp_db_error(im, "updating an order");
            goto done;
        }
    }
    /* An order moved to another customer changes both customers' stats. */
    if (old.customer_id != cid)
        ord_affect(o, old.customer_id);
    ord_affect(o, cid);
    im->stats.updated++;
done:
    imp_progress_tick(im);
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
int
imp_orders_finish(struct imp *im)
{
    struct ord *o = im->kind;
    int64_t prev = 0;
    if (o->idx && store_import_indexes_restore(im->st, o->idx) < 0) {
        imp_db_error(im, "building the order indexes");
        return -EIO;
    }
    if (o->empty_start) {
        /* Every order in the table came from this file: one grouped pass
         * instead of one query per customer. */
        if (o->naff && store_import_stats_all(im->st) < 0) {
            imp_db_error(im, "computing customer stats");
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
            imp_db_error(im, "recomputing customer stats");
            return -EIO;
        }
    }
    return 0;
}

void
imp_orders_start(struct imp *im)
{
    struct ord *o = xcalloc(1, sizeof(*o));
    int n;
    im->kind = o;
    im->header = ord_header;
    im->row = ord_row;
    if (store_import_orders_open(im->st, &o->so) < 0) {
        imp_db_error(im, "preparing a statement");
        return;
    }
    if (!imp_begin(im))
        return;
    n = store_import_is_empty(im->st, "orders");
    if (n < 0)
        imp_db_error(im, "counting orders");
    o->empty_start = n == 1;
    if (o->empty_start && store_import_indexes_drop(im->st, "orders", &o->idx) < 0)
        imp_db_error(im, "dropping the order indexes for a bulk load");
}

void
imp_orders_free(struct imp *im)
{
    struct ord *o = im->kind;
    store_import_orders_close(o->so);
    for (size_t i = 0; o->names && i < o->ncols; i++)
        free(o->names[i]);
    free(o->names);
    free(o->affected);
    free(o->last_cust);
    store_import_indexes_free(o->idx);
    free(o);
}
