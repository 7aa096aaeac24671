/*
 * store_policy.c: the SQL behind frequency caps (policy.c decides).
 *
 * A marketing email or SMS the caps let through gets deliveries.cap_at, the
 * instant it was let through (schema 8). Caps count those instants in the
 * customer's local day (or week) rather than sent_at, so a message let
 * through by one dispatch slot counts for every other slot at once, before
 * it has even been handed to its channel. Rows that ended unsent (dead,
 * suppressed, skipped) no longer count.
 */
#include <errno.h>
#include <stdlib.h>

#include "log.h"
#include "store_internal.h"
#include "store_policy.h"

int
store_cap_count(struct store *st, int64_t customer_id, ntime_t from, ntime_t to, int64_t except,
                long *n)
{
    sqlite3_stmt *s;
    int rc;
    *n = 0;
    if (store_prepare(st, "SELECT count(*) FROM deliveries WHERE customer_id = ?1"
                          " AND cap_at >= ?2 AND cap_at < ?3 AND id <> ?4"
                          " AND state NOT IN ('dead', 'suppressed', 'skipped')",
                      &s) != SQLITE_OK) {
        log_err("store", "cap count: %s", sqlite3_errmsg(st->db));
        return -EIO;
    }
    sqlite3_bind_int64(s, 1, customer_id);
    sqlite3_bind_int64(s, 2, from);
    sqlite3_bind_int64(s, 3, to);
    sqlite3_bind_int64(s, 4, except);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *n = (long)sqlite3_column_int64(s, 0);
    store_done(s);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int
store_cap_waiting(struct store *st, int64_t customer_id, ntime_t since, ntime_t before,
                  int64_t except, char ***rules)
{
    sqlite3_stmt *s;
    char **v = NULL;
    size_t n = 0;
    int rc;
    if (store_prepare(st, "SELECT rule FROM deliveries WHERE customer_id = ?1"
                          " AND state IN ('pending', 'retry', 'sending') AND marketing"
                          " AND channel IN ('email', 'sms') AND next_attempt_at < ?3"
                          " AND (cap_at IS NULL OR cap_at < ?2) AND id <> ?4",
                      &s) != SQLITE_OK) {
        log_err("store", "cap waiting: %s", sqlite3_errmsg(st->db));
        return -EIO;
    }
    sqlite3_bind_int64(s, 1, customer_id);
    sqlite3_bind_int64(s, 2, since);
    sqlite3_bind_int64(s, 3, before);
    sqlite3_bind_int64(s, 4, except);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        v = xrealloc(v, (n + 2) * sizeof(*v));
        v[n++] = xstrdup((const char *)sqlite3_column_text(s, 0));
    }
    store_done(s);
    v = xrealloc(v, (n + 1) * sizeof(*v));
    v[n] = NULL;
    *rules = v;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int
store_cap_admit(struct store *st, int64_t delivery_id, ntime_t at)
{
    sqlite3_stmt *s;
    int rc;
    if (store_prepare(st, "UPDATE deliveries SET cap_at = ?1 WHERE id = ?2", &s) != SQLITE_OK) {
        log_err("store", "cap admit: %s", sqlite3_errmsg(st->db));
        return -EIO;
    }
    sqlite3_bind_int64(s, 1, at);
    sqlite3_bind_int64(s, 2, delivery_id);
    rc = sqlite3_step(s);
    store_done(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}
