/*
 * store_timeline.c: timeline entries (store_timeline.h).
 */
#include "store_timeline.h"

#include <errno.h>

#include "store_internal.h"

int
store_timeline_add(struct store *st, int64_t customer_id, ntime_t at, const char *kind,
                   const char *detail)
{
    sqlite3_stmt *s;
    int rc;
    if (store_prepare(st, "INSERT INTO timeline (customer_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                      &s) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, customer_id);
    sqlite3_bind_int64(s, 2, at);
    sqlite3_bind_text(s, 3, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, detail, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(s);
    store_done(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}
