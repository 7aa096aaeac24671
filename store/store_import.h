/*
 * store_import.h: the store side of bulk imports (import.c). The import
 * reads and checks the file; these functions look customers and orders up and
 * write them, with their tags, consents and stats, one row
 * at a time through statements prepared once per import, all inside the one
 * transaction (store_import_begin ... store_import_commit) that makes a file
 * all or nothing. Also the connection settings a big file is loaded with,
 * whether a table starts empty, and the secondary indexes of a table dropped
 * for a bulk load and built again, in the same transaction, once the rows
 * are in.
 *
 * Errors are -EIO (or -ENOENT, -EEXIST where said); after -EIO,
 * store_errmsg() says why. Nothing here logs: the import names the file and
 * the line in its own message. Strings in a struct the store fills in stay
 * valid until the next call of the same function on the same handle.
 */
#ifndef NUDGE_STORE_IMPORT_H
#define NUDGE_STORE_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct store;
struct store_saved_indexes;
struct store_customers_import;
struct store_orders_import;

/* A bounded page cache (16 MB), no memory mapping, temporary files on disk
 * (a connection that loads a 4,000,000-row file stays small), then BEGIN
 * IMMEDIATE. 0 or -EIO. */
int store_import_begin(struct store *st);
/* Commits or rolls back what store_import_begin started. 0 or -EIO. */
int store_import_commit(struct store *st);
int store_import_rollback(struct store *st);

/* The database's last error message on this connection. */
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

/* ---- customers ---------------------------------------------------------- */

/* The text fields of a customer that an import sets, in the order of the
 * customers table. */
enum store_customer_field {
    STORE_CUST_NAME,
    STORE_CUST_FIRST_NAME,
    STORE_CUST_EMAIL,
    STORE_CUST_PHONE,
    STORE_CUST_BIRTHDAY,
    STORE_CUST_TZ,
    STORE_CUST_TIER,
    STORE_CUST_OWNER,
    STORE_CUST_NFIELDS
};

/* A customer as an import reads and writes it; a NULL string is no value. */
struct store_import_customer {
    int64_t id;                            /* the store's id */
    const char *ext_id;                    /* the business's id */
    const char *field[STORE_CUST_NFIELDS]; /* enum store_customer_field */
    const char *created_at;                /* as the file wrote it */
    const char *updated_at;                /* written only; a lookup leaves NULL */
    const char *attrs;                     /* a JSON object, as text */
};

/* The statements of one customers import, prepared once and reused for
 * every row. 0 or -EIO (nothing to close then). */
int store_import_customers_open(struct store *st, struct store_customers_import **out);
void store_import_customers_close(struct store_customers_import *ci);

/* The stored customer with ext_id into *out (ext_id and updated_at NULL):
 * 0, -ENOENT or -EIO. */
int store_import_customer_find(struct store_customers_import *ci, const char *ext_id,
                               struct store_import_customer *out);
/* Adds customer c (c->id unused); its id into *id. -EEXIST when the
 * business's id is already taken. */
int store_import_customer_add(struct store_customers_import *ci,
                              const struct store_import_customer *c, int64_t *id);
/* Overwrites every field of customer c->id (ext_id unused). */
int store_import_customer_update(struct store_customers_import *ci,
                                 const struct store_import_customer *c);
/* Only moves updated_at: the customer's tags or consents changed. */
int store_import_customer_touch(struct store_customers_import *ci, int64_t id,
                                const char *updated_at);

/* 1 if customer id's tags are not exactly tags[0..n) (sorted, unique), 0 if
 * they are, -EIO. */
int store_import_customer_tags_differ(struct store_customers_import *ci, int64_t id,
                                      char *const *tags, size_t n);
/* Removes every tag of customer id. */
int store_import_customer_tags_clear(struct store_customers_import *ci, int64_t id);
/* Gives customer id one more tag (not one it has). */
int store_import_customer_tag_add(struct store_customers_import *ci, int64_t id, const char *tag);

/* Customer id's consent to channel: 0 with *granted (0 or 1) and *source
 * (who recorded it, NULL if unknown), -ENOENT when none is stored, -EIO. */
int store_import_consent_get(struct store_customers_import *ci, int64_t id, const char *channel,
                             int *granted, const char **source);
/* Records customer id's consent to channel, granted or withdrawn. */
int store_import_consent_set(struct store_customers_import *ci, int64_t id, const char *channel,
                             int granted, const char *updated_at, const char *source);

/* Records key as the name of a custom attribute (store_attribute_keys). */
int store_import_attribute_key(struct store_customers_import *ci, const char *key);

/* ---- orders ------------------------------------------------------------- */

/* An order as an import reads and writes it. */
struct store_import_order {
    int64_t id;           /* the store's id */
    const char *ext_id;   /* the business's order id */
    int64_t customer_id;  /* the store's id of its customer */
    int64_t amount_cents; /* negative for a refund */
    const char *currency; /* 3 letters or empty */
    const char *ordered_at;
};

/* The statements of one orders import, prepared once and reused for every
 * row. 0 or -EIO (nothing to close then). */
int store_import_orders_open(struct store *st, struct store_orders_import **out);
void store_import_orders_close(struct store_orders_import *oi);

/* The store's id of the customer whose business id is ext_id: 0, -ENOENT or
 * -EIO. */
int store_import_order_customer(struct store_orders_import *oi, const char *ext_id, int64_t *id);
/* The stored order with ext_id into *out (ext_id NULL): 0, -ENOENT or -EIO. */
int store_import_order_find(struct store_orders_import *oi, const char *ext_id,
                            struct store_import_order *out);
/* Adds order o (o->id unused); its id into *id. -EEXIST when the order id is
 * already taken. */
int store_import_order_add(struct store_orders_import *oi, const struct store_import_order *o,
                           int64_t *id);
/* Overwrites every field of order o->id (ext_id unused). */
int store_import_order_update(struct store_orders_import *oi, const struct store_import_order *o);

/* Recomputes customer_stats of customer_id from its orders (refunds count as
 * orders and reduce the total). */
int store_import_customer_stats(struct store_orders_import *oi, int64_t customer_id);
/* customer_stats of every customer with orders, in one pass over orders
 * (for a load into an empty orders table, where that is every customer the
 * file touched). */
int store_import_stats_all(struct store *st);

#endif
