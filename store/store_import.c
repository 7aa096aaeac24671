/*
 * store_import.c: the SQL of bulk loading that is not about one row:
 * connection tuning, emptiness checks and the drop-and-rebuild of secondary
 * indexes around a load into an empty table (see store_import.h). The rows
 * themselves are written by import.c's prepared statements.
 */
#include "store_import.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_internal.h"

struct store_saved_indexes {
    char **sql;
    size_t n;
};

int
store_import_tune(struct store *st)
{
    if (store_exec(st, "PRAGMA cache_size = -16384") < 0 ||
        store_exec(st, "PRAGMA mmap_size = 0") < 0 ||
        store_exec(st, "PRAGMA temp_store = FILE") < 0)
        return -EIO;
    return 0;
}

const char *
store_errmsg(struct store *st)
{
    return sqlite3_errmsg(st->db);
}

/* Only the tables an import writes: the name goes into SQL text. */
static bool
import_table(const char *table)
{
    return strcmp(table, "customers") == 0 || strcmp(table, "orders") == 0;
}

int
store_import_is_empty(struct store *st, const char *table)
{
    sqlite3_stmt *s;
    char sql[64];
    int rc;
    if (!import_table(table))
        return -EINVAL;
    snprintf(sql, sizeof(sql), "SELECT NOT EXISTS (SELECT 1 FROM %s)", table);
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    rc = sqlite3_step(s);
    rc = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -EIO;
    sqlite3_finalize(s);
    return rc;
}

void
store_import_indexes_free(struct store_saved_indexes *saved)
{
    if (!saved)
        return;
    for (size_t i = 0; i < saved->n; i++)
        free(saved->sql[i]);
    free(saved->sql);
    free(saved);
}

int
store_import_indexes_drop(struct store *st, const char *table, struct store_saved_indexes **out)
{
    struct store_saved_indexes *sv = xcalloc(1, sizeof(*sv));
    char **names = NULL;
    sqlite3_stmt *s;
    int rc, r = 0;
    *out = NULL;
    if (!import_table(table)) {
        free(sv);
        return -EINVAL;
    }
    /* sql IS NULL: the automatic index of a UNIQUE or PRIMARY KEY constraint. */
    if (sqlite3_prepare_v2(st->db,
                           "SELECT name, sql FROM sqlite_schema WHERE type = 'index'"
                           " AND tbl_name = ?1 AND sql IS NOT NULL ORDER BY name",
                           -1, &s, NULL) != SQLITE_OK) {
        free(sv);
        return -EIO;
    }
    sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        sv->sql = xrealloc(sv->sql, (sv->n + 1) * sizeof(char *));
        names = xrealloc(names, (sv->n + 1) * sizeof(char *));
        names[sv->n] = xstrdup((const char *)sqlite3_column_text(s, 0));
        sv->sql[sv->n++] = xstrdup((const char *)sqlite3_column_text(s, 1));
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        r = -EIO;
    for (size_t i = 0; i < sv->n && r == 0; i++) {
        /* Index names come from the schema; quote them anyway. */
        char *q = sqlite3_mprintf("DROP INDEX \"%w\"", names[i]);
        if (!q || store_exec(st, q) < 0)
            r = -EIO;
        sqlite3_free(q);
    }
    for (size_t i = 0; i < sv->n; i++)
        free(names[i]);
    free(names);
    if (r < 0 || sv->n == 0) {
        store_import_indexes_free(sv);
        return r;
    }
    *out = sv;
    return 0;
}

int
store_import_indexes_restore(struct store *st, struct store_saved_indexes *saved)
{
    for (size_t i = 0; saved && i < saved->n; i++)
        if (store_exec(st, saved->sql[i]) < 0)
            return -EIO;
    return 0;
}

int
store_import_stats_all(struct store *st)
{
    /* WHERE true: an upsert after SELECT ... GROUP BY needs it to parse. */
    return store_exec(st,
                      "INSERT INTO customer_stats (customer_id, orders_count, total_cents,"
                      " first_order_date, last_order_date)"
                      " SELECT customer_id, count(*), coalesce(sum(amount_cents), 0),"
                      " min(substr(ordered_at, 1, 10)), max(substr(ordered_at, 1, 10))"
                      " FROM orders WHERE true GROUP BY customer_id"
                      " ON CONFLICT (customer_id) DO UPDATE SET orders_count = excluded.orders_count,"
                      " total_cents = excluded.total_cents,"
                      " first_order_date = excluded.first_order_date,"
                      " last_order_date = excluded.last_order_date");
}
