/*
 * store_internal.h: what the store modules (store*.c, outbox.c) share and
 * nothing else may include: the SQLite connection behind struct store and
 * the statement helpers.
 */
#ifndef NUDGE_STORE_INTERNAL_H
#define NUDGE_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store.h"

struct store_stmt_cache;

struct store {
    sqlite3 *db;
    char *path;
    struct store_stmt_cache *cache; /* prepared statements of the hot paths */
};

/*
 * Prepared statements for fixed SQL on hot paths (one per message): the
 * first call prepares, later calls with the same SQL text reuse it. `sql`
 * must be a string constant. Returns SQLITE_OK or an SQLite error code.
 * store_done() resets the statement for its next use instead of finalizing.
 */
int store_prepare(struct store *st, const char *sql, sqlite3_stmt **out);
void store_done(sqlite3_stmt *s);

/* Runs SQL with no results; logs and returns -EIO on failure. */
int store_exec(struct store *st, const char *sql);
/* One statement without results, kept prepared in the connection's cache
 * (see store_prepare): for the statements run once per batch, BEGIN and
 * COMMIT, which sqlite3_exec would parse every time. */
int store_exec_cached(struct store *st, const char *sql);

#endif
