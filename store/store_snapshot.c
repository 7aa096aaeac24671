/*
 * store_snapshot.c: the rule_snapshots table (see store_snapshot.h).
 */
#include "store_snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_internal.h"

int
store_snapshot_put(struct store *st, const char *hash, const char *rule, const char *body,
                   ntime_t now, int64_t *id)
{
    sqlite3_stmt *s;
    int rc;
    /* Almost always the snapshot exists already: look it up first, so an
     * evaluation of an unchanged rule writes nothing. */
    if (store_prepare(st, "SELECT id FROM rule_snapshots WHERE hash = ?", &s) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(s, 1, hash, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(s, 0);
    store_done(s);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc != SQLITE_DONE)
        goto fail;
    if (store_prepare(st, "INSERT INTO rule_snapshots (hash, rule, body, created_at)"
                          " VALUES (?, ?, ?, ?)", &s) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(s, 1, hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, rule, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, now);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE)
        goto fail;
    *id = sqlite3_last_insert_rowid(st->db);
    return 0;
fail:
    log_err("store", "%s: rule snapshot of %s: %s", st->path, rule, sqlite3_errmsg(st->db));
    return -EIO;
}

int
store_snapshot_get(struct store *st, int64_t id, char **body, size_t *len)
{
    sqlite3_stmt *s;
    int rc;
    if (store_prepare(st, "SELECT body FROM rule_snapshots WHERE id = ?", &s) != SQLITE_OK) {
        log_err("store", "%s: rule snapshot %lld: %s", st->path, (long long)id,
                sqlite3_errmsg(st->db));
        return -EIO;
    }
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(s, 0);
        const void *p = sqlite3_column_text(s, 0);
        *body = xmalloc(n + 1);
        if (n)
            memcpy(*body, p, n);
        (*body)[n] = '\0';
        *len = n;
    }
    store_done(s);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return -ENOENT;
    log_err("store", "%s: rule snapshot %lld: %s", st->path, (long long)id,
            sqlite3_errmsg(st->db));
    return -EIO;
}

int
store_snapshot_gc(struct store *st, long *removed)
{
    /* Final states are listed rather than the others, so that a state added
     * later keeps its snapshot until someone decides otherwise. */
    if (store_exec_cached(st, "DELETE FROM rule_snapshots WHERE id NOT IN (SELECT snapshot FROM"
                              " deliveries WHERE snapshot IS NOT NULL AND state NOT IN"
                              " ('sent', 'suppressed', 'skipped'))") < 0)
        return -EIO;
    if (removed)
        *removed = sqlite3_changes(st->db);
    return 0;
}
