/*
 * store_consent.c: the SQL behind store_consent.h (the consents and
 * suppressions tables, and the timeline entry of an unsubscribe).
 */
#include "store_consent.h"

#include <errno.h>
#include <stdio.h>

#include "store_internal.h"

int
store_send_blocked(struct store *st, int64_t customer_id, const char *channel, const char *address,
                   char *reason, size_t reasonlen)
{
    /* The reason is never NULL for a suppressed address, so NULL in column
     * 1 means "not suppressed" (a NULL address matches no row). */
    sqlite3_stmt *s;
    int rc, hit = STORE_SEND_ALLOWED;
    if (store_prepare(st,
                      "SELECT (SELECT granted FROM consents WHERE customer_id = ?1 AND"
                      " channel = ?2), (SELECT coalesce(reason, '') FROM suppressions WHERE"
                      " channel = ?2 AND address = ?3)",
                      &s) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, customer_id);
    sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    if (address)
        sqlite3_bind_text(s, 3, address, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_type(s, 0) != SQLITE_NULL && sqlite3_column_int(s, 0) == 0) {
            hit = STORE_SEND_NO_CONSENT;
        } else if (sqlite3_column_type(s, 1) != SQLITE_NULL) {
            snprintf(reason, reasonlen, "%s", (const char *)sqlite3_column_text(s, 1));
            hit = STORE_SEND_SUPPRESSED;
        }
    }
    store_done(s);
    return rc == SQLITE_ROW ? hit : -EIO;
}

int
store_consent_withdraw(struct store *st, const char *ext_id, const char *channel,
                       const char *source, ntime_t at, const char *detail)
{
    sqlite3_stmt *s;
    int rc = -ENOENT;
    char iso[32];
    time_format_iso(at, iso, sizeof(iso));
    if (store_begin(st) < 0)
        return -EIO;
    if (sqlite3_prepare_v2(
            st->db,
            "INSERT INTO consents (customer_id, channel, granted, updated_at, source)"
            " SELECT id, ?, 0, ?, ? FROM customers WHERE ext_id = ?"
            " ON CONFLICT (customer_id, channel) DO UPDATE SET granted = 0,"
            " updated_at = excluded.updated_at, source = excluded.source"
            " WHERE consents.granted IS NOT 0",
            -1, &s, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(s, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, iso, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, source, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, ext_id, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) {
        sqlite3_finalize(s);
        goto fail;
    }
    sqlite3_finalize(s);
    if (sqlite3_changes(st->db) > 0) {
        rc = 0;
        if (sqlite3_prepare_v2(st->db,
                               "INSERT INTO timeline (customer_id, at, kind, detail) SELECT id, ?,"
                               " 'unsubscribed', ? FROM customers WHERE ext_id = ?",
                               -1, &s, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(s, 1, at);
            sqlite3_bind_text(s, 2, detail, -1, SQLITE_STATIC);
            sqlite3_bind_text(s, 3, ext_id, -1, SQLITE_STATIC);
            sqlite3_step(s);
            sqlite3_finalize(s);
        }
    } else if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM customers WHERE ext_id = ?", -1, &s,
                                  NULL) == SQLITE_OK) {
        /* Withdrawn already (a second click): nothing changes, no new
         * timeline entry; still a success for a customer who exists. */
        sqlite3_bind_text(s, 1, ext_id, -1, SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW)
            rc = 0;
        sqlite3_finalize(s);
    }
    if (store_commit(st) < 0)
        return -EIO;
    return rc;
fail:
    store_rollback(st);
    return -EIO;
}

int
store_suppress(struct store *st, const char *channel, const char *address, const char *reason,
               ntime_t at)
{
    sqlite3_stmt *s;
    int rc;
    if (store_prepare(st, "INSERT OR IGNORE INTO suppressions (channel, address, reason,"
                          " created_at) VALUES (?, ?, ?, ?)",
                      &s) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, address, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, at);
    rc = sqlite3_step(s);
    store_done(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}
