/*
 * store_import.h: the store side of bulk imports (import.c): the connection
 * settings a big file is loaded with, whether a table starts empty, and the
 * secondary indexes of a table dropped for a bulk load and built again, in
 * the same transaction, once the rows are in.
 */
#ifndef NUDGE_STORE_IMPORT_H
#define NUDGE_STORE_IMPORT_H

#include "store.h"

struct store_saved_indexes;

/* Bounded page cache (16 MB), no memory mapping, temporary files on disk:
 * a connection that loads a 4,000,000-row file stays small. 0 or -EIO. */
int store_import_tune(struct store *st);

/* SQLite's last error message on this connection. */
const char *store_errmsg(struct store *st);

/* 1 if table ("customers" or "orders") has no rows, 0 if it has, -EIO. */
int store_import_is_empty(struct store *st, const char *table);

/*
 * Inside a transaction: remembers and drops every index of table that
 * SQLite can rebuild from its CREATE statement (not the ones behind UNIQUE or
 * PRIMARY KEY constraints, which the upsert needs). *out is NULL when there
 * are none. 0 or -EIO.
 */
int store_import_indexes_drop(struct store *st, const char *table,
                              struct store_saved_indexes **out);
/* Creates them again (one sort each). 0 or -EIO. */
int store_import_indexes_restore(struct store *st, struct store_saved_indexes *saved);
void store_import_indexes_free(struct store_saved_indexes *saved);

/* customer_stats of every customer with orders, in one pass over orders
 * (for a load into an empty orders table, where that is every customer the
 * file touched). 0 or -EIO. */
int store_import_stats_all(struct store *st);

#endif
