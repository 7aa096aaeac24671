/*
 * fuzz_audience.c: any bytes through the audience compiler; whatever
 * compiles must also prepare and run as SQL against the real schema, and
 * its day-dependent parts (dayrefs) must select, bind and give signatures
 * for a few customers with ordinary and odd dates.
 */
#include <stdlib.h>
#include <string.h>

#include "audience.h"
#include "store_internal.h"

static struct store *st;

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
        if ((idx = audience_day_bind(a, s, 1)) < 0 || audience_bind(a, s, idx, "2027-01-01") < 0)
            abort();
        while (sqlite3_step(s) == SQLITE_ROW) {
            struct aud_dayarg *args = xcalloc(a->ndayrefs + 1, sizeof(*args));
            unsigned char *sig = xcalloc(a->ndayrefs * a->ncuts + 1, 1);
            audience_day_args(a, s, 1, args);
            for (int64_t day = 20000; day < 20800; day += 97)
                audience_day_signature(a, args, day, sig);
            free(args);
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
