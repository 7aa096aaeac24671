/*
 * fuzz_audience.c: any bytes through the audience compiler; whatever
 * compiles must also prepare and run as SQL against the real schema, and
 * its day-dependent parts (dayrefs) must select, bind and give signatures
 * for a few customers with ordinary and odd dates.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audience.h"
#include "store_internal.h"

static struct store *st;

/* Binds a's parameters from index idx on, as the store does (store_eval.c). */
static int
bind_params(const struct audience *a, sqlite3_stmt *s, int idx, const char *today)
{
    for (size_t k = 0; k < a->nparams; k++, idx++) {
        struct aud_value v;
        int rc = audience_param(a, k, today, &v);
        if (rc < 0)
            return rc;
        if (v.kind == AUD_INT)
            rc = sqlite3_bind_int64(s, idx, v.i);
        else if (v.kind == AUD_REAL)
            rc = sqlite3_bind_double(s, idx, v.r);
        else
            rc = sqlite3_bind_text(s, idx, v.text, (int)v.len, SQLITE_TRANSIENT);
        if (rc != SQLITE_OK)
            return -EIO;
    }
    return idx;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *const attrs[] = {"city", "ltv", NULL};
    struct audience *a = NULL;
    struct nerr err;
    char *expr = xstrndup((const char *)data, size);
    if (!st) {
        if (store_open(":memory:", &st, &err) < 0 ||
            sqlite3_exec(st->db,
                         "INSERT INTO customers (id, ext_id, birthday, created_at, attrs) VALUES"
                         " (1, 'a', '1990-02-29', '2026-03-01T10:00:00Z', '{\"ltv\": 5}'),"
                         " (2, 'b', '--12-31', 'soon', '{\"city\": \"2024-01-31\"}'),"
                         " (3, 'c', NULL, NULL, '{}');"
                         "INSERT INTO customer_stats (customer_id, orders_count, total_cents,"
                         " last_order_date) VALUES (1, 2, 500, '2026-11-30'), (2, 1, 1, 'x');",
                         NULL, NULL, NULL) != SQLITE_OK)
            abort();
    }
    if (audience_compile(expr, "fuzz", 1, 1, attrs, &a, &err) == 0) {
        struct sbuf q;
        sqlite3_stmt *s;
        int idx;
        sbuf_init(&q);
        sbuf_adds(&q, "SELECT c.id");
        audience_day_select(a, &q);
        sbuf_printf(&q, " FROM %s WHERE %s", audience_from_clause(), a->sql);
        /* Whatever compiles must be valid SQL with the right parameters. */
        if (sqlite3_prepare_v2(st->db, q.s, -1, &s, NULL) != SQLITE_OK)
            abort();
        idx = 1;
        for (size_t k = 0; k < a->ndayrefs && idx >= 0; k++)
            idx = bind_params(a->dayrefs[k].arg, s, idx, NULL);
        if (idx < 0 || bind_params(a, s, idx, "2027-01-01") < 0)
            abort();
        while (sqlite3_step(s) == SQLITE_ROW) {
            struct aud_dayarg *args = xcalloc(a->ndayrefs + 1, sizeof(*args));
            struct aud_dayval *vals = xcalloc(a->ndayrefs + 1, sizeof(*vals));
            unsigned char *sig = xcalloc(a->ndayrefs * a->ncuts + 1, 1);
            for (size_t k = 0; k < a->ndayrefs; k++) {
                int col = (int)k + 1;
                vals[k].null = sqlite3_column_type(s, col) == SQLITE_NULL;
                if (a->dayrefs[k].kind == AUD_DAYS_SINCE) {
                    vals[k].real = sqlite3_column_double(s, col);
                } else {
                    vals[k].text = (const char *)sqlite3_column_text(s, col);
                    vals[k].len = (size_t)sqlite3_column_bytes(s, col);
                }
            }
            audience_day_args(a, vals, args);
            for (int64_t day = 20000; day < 20800; day += 97)
                audience_day_signature(a, args, day, sig);
            free(args);
            free(vals);
            free(sig);
        }
        sqlite3_finalize(s);
        sbuf_free(&q);
        audience_free(a);
    } else if (!err.msg[0]) {
        abort(); /* every failure says why */
    }
    free(expr);
    return 0;
}
