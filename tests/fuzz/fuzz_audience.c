/*
 * fuzz_audience.c: any bytes through the audience compiler; whatever
 * compiles must also prepare and run as SQL against the real schema.
 */
#include <stdlib.h>
#include <string.h>

#include "audience.h"
#include "store.h"

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
        if (store_open(":memory:", &st, &err) < 0)
            abort();
    }
    if (audience_compile(expr, "fuzz", 1, 1, attrs, &a, &err) == 0) {
        char *sql = xasprintf("SELECT c.id FROM %s WHERE %s", audience_from_clause(), a->sql);
        sqlite3_stmt *s;
        /* Whatever compiles must be valid SQL with the right parameters. */
        if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
            abort();
        if (audience_bind(a, s, 1, "2027-01-01") < 0)
            abort();
        while (sqlite3_step(s) == SQLITE_ROW)
            ;
        sqlite3_finalize(s);
        free(sql);
        audience_free(a);
    } else if (!err.msg[0]) {
        abort(); /* every failure says why */
    }
    free(expr);
    return 0;
}
