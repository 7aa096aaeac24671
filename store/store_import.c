/*
 * store_import.c: the SQL of bulk loading (see store_import.h): connection
 * tuning, emptiness checks and the drop-and-rebuild of secondary indexes
 * around a load into an empty table, and the statements that look up and
 * write customers and orders row by row. Those are prepared once per import
 * (SQLITE_PREPARE_PERSISTENT) and reset after each row, so that a file of
 * millions of rows parses each statement once.
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
store_import_begin(struct store *st)
{
    /* A big file goes through a page cache of bounded size, without memory
     * mapping (mapped pages of the database would count against the
     * daemon's memory) and with temporary files (index builds sort on disk,
     * not in RAM). */
    if (store_exec(st, "PRAGMA cache_size = -16384") < 0 ||
        store_exec(st, "PRAGMA mmap_size = 0") < 0 ||
        store_exec(st, "PRAGMA temp_store = FILE") < 0 || store_begin(st) < 0)
        return -EIO;
    return 0;
}

int
store_import_commit(struct store *st)
{
    return store_commit(st);
}

int
store_import_rollback(struct store *st)
{
    return store_rollback(st);
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

/* ---- rows, statement by statement -------------------------------------- */

static int
prepare(struct store *st, sqlite3_stmt **s, const char *sql)
{
    if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, s, NULL) != SQLITE_OK)
        return -EIO;
    return 0;
}

/* Every value bound here outlives the step that follows in the same call:
 * no copies. */
static void
bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* Steps a statement that returns no rows; resets it either way. */
static int
exec_stmt(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* Steps an INSERT: 0 and the new row's id, -EEXIST when a constraint says
 * no (a unique key already taken), -EIO. */
static int
exec_insert(struct store *st, sqlite3_stmt *s, int64_t *id)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_CONSTRAINT)
        return -EEXIST;
    if (rc != SQLITE_DONE)
        return -EIO;
    *id = sqlite3_last_insert_rowid(st->db);
    return 0;
}

/*
 * Copies column i of the current row of s into b, so that the statement can
 * be reset (no read left open while the import writes) and the value still
 * be compared and written back. Returns its offset in b, -1 for NULL.
 */
static long
keep_text(struct sbuf *b, sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    long off;
    if (!t)
        return -1;
    off = (long)b->len;
    sbuf_add(b, (const char *)t, (size_t)sqlite3_column_bytes(s, i));
    sbuf_addc(b, '\0');
    return off;
}

static const char *
kept(const struct sbuf *b, long off)
{
    return off < 0 ? NULL : b->s + off;
}

/* ---- customers ---------------------------------------------------------- */

struct store_customers_import {
    struct store *st;
    sqlite3_stmt *find, *ins, *upd, *touch, *tags_get, *tags_del, *tag_ins, *consent_get,
        *consent_set, *attr_key;
    struct sbuf found;  /* the strings of the last customer found */
    struct sbuf source; /* the source of the last consent read */
};

void
store_import_customers_close(struct store_customers_import *ci)
{
    if (!ci)
        return;
    sqlite3_finalize(ci->find);
    sqlite3_finalize(ci->ins);
    sqlite3_finalize(ci->upd);
    sqlite3_finalize(ci->touch);
    sqlite3_finalize(ci->tags_get);
    sqlite3_finalize(ci->tags_del);
    sqlite3_finalize(ci->tag_ins);
    sqlite3_finalize(ci->consent_get);
    sqlite3_finalize(ci->consent_set);
    sqlite3_finalize(ci->attr_key);
    sbuf_free(&ci->found);
    sbuf_free(&ci->source);
    free(ci);
}

int
store_import_customers_open(struct store *st, struct store_customers_import **out)
{
    struct store_customers_import *ci = xcalloc(1, sizeof(*ci));
    ci->st = st;
    sbuf_init(&ci->found);
    sbuf_init(&ci->source);
    *out = NULL;
    if (prepare(st, &ci->find,
                "SELECT id, name, first_name, email, phone, birthday, tz, tier, owner,"
                " created_at, attrs FROM customers WHERE ext_id = ?1") < 0 ||
        prepare(st, &ci->ins,
                "INSERT INTO customers (ext_id, name, first_name, email, phone, birthday, tz,"
                " tier, owner, created_at, updated_at, attrs)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)") < 0 ||
        prepare(st, &ci->upd,
                "UPDATE customers SET name = ?2, first_name = ?3, email = ?4, phone = ?5,"
                " birthday = ?6, tz = ?7, tier = ?8, owner = ?9, created_at = ?10,"
                " updated_at = ?11, attrs = ?12 WHERE id = ?1") < 0 ||
        prepare(st, &ci->touch, "UPDATE customers SET updated_at = ?1 WHERE id = ?2") < 0 ||
        prepare(st, &ci->tags_get,
                "SELECT tag FROM customer_tags WHERE customer_id = ?1 ORDER BY tag") < 0 ||
        prepare(st, &ci->tags_del, "DELETE FROM customer_tags WHERE customer_id = ?1") < 0 ||
        prepare(st, &ci->tag_ins, "INSERT INTO customer_tags (customer_id, tag) VALUES (?1, ?2)") <
            0 ||
        prepare(st, &ci->consent_get,
                "SELECT granted, source FROM consents WHERE customer_id = ?1 AND channel = ?2") <
            0 ||
        prepare(st, &ci->consent_set,
                "INSERT INTO consents (customer_id, channel, granted, updated_at, source)"
                " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (customer_id, channel) DO UPDATE SET"
                " granted = excluded.granted, updated_at = excluded.updated_at,"
                " source = excluded.source") < 0 ||
        prepare(st, &ci->attr_key, "INSERT OR IGNORE INTO attribute_keys (key) VALUES (?1)") < 0) {
        /* Finalizing statements that never ran keeps the error message. */
        store_import_customers_close(ci);
        return -EIO;
    }
    *out = ci;
    return 0;
}

int
store_import_customer_find(struct store_customers_import *ci, const char *ext_id,
                           struct store_import_customer *out)
{
    sqlite3_stmt *f = ci->find;
    long off[STORE_CUST_NFIELDS + 2];
    int rc;
    sqlite3_bind_text(f, 1, ext_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(f);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(f);
        return rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    memset(out, 0, sizeof(*out));
    out->id = sqlite3_column_int64(f, 0);
    ci->found.len = 0;
    /* Columns 1..8 the fields, 9 created_at, 10 attrs. */
    for (int i = 0; i < STORE_CUST_NFIELDS + 2; i++)
        off[i] = keep_text(&ci->found, f, 1 + i);
    sqlite3_reset(f);
    for (int i = 0; i < STORE_CUST_NFIELDS; i++)
        out->field[i] = kept(&ci->found, off[i]);
    out->created_at = kept(&ci->found, off[STORE_CUST_NFIELDS]);
    out->attrs = kept(&ci->found, off[STORE_CUST_NFIELDS + 1]);
    return 0;
}

/* Binds ?2 .. ?12 of the insert and the update, which share their order. */
static void
bind_customer(sqlite3_stmt *s, const struct store_import_customer *c)
{
    for (int t = 0; t < STORE_CUST_NFIELDS; t++)
        bind_text(s, 2 + t, c->field[t]);
    bind_text(s, 2 + STORE_CUST_NFIELDS, c->created_at);
    bind_text(s, 3 + STORE_CUST_NFIELDS, c->updated_at);
    bind_text(s, 4 + STORE_CUST_NFIELDS, c->attrs);
}

int
store_import_customer_add(struct store_customers_import *ci, const struct store_import_customer *c,
                          int64_t *id)
{
    sqlite3_bind_text(ci->ins, 1, c->ext_id, -1, SQLITE_STATIC);
    bind_customer(ci->ins, c);
    return exec_insert(ci->st, ci->ins, id);
}

int
store_import_customer_update(struct store_customers_import *ci,
                             const struct store_import_customer *c)
{
    sqlite3_bind_int64(ci->upd, 1, c->id);
    bind_customer(ci->upd, c);
    return exec_stmt(ci->upd);
}

int
store_import_customer_touch(struct store_customers_import *ci, int64_t id, const char *updated_at)
{
    sqlite3_bind_text(ci->touch, 1, updated_at, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ci->touch, 2, id);
    return exec_stmt(ci->touch);
}

int
store_import_customer_tags_differ(struct store_customers_import *ci, int64_t id, char *const *tags,
                                  size_t n)
{
    size_t k = 0;
    int rc, differ = 0;
    sqlite3_bind_int64(ci->tags_get, 1, id);
    while ((rc = sqlite3_step(ci->tags_get)) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(ci->tags_get, 0);
        if (k >= n || !t || strcmp(t, tags[k]) != 0)
            differ = 1;
        k++;
    }
    sqlite3_reset(ci->tags_get);
    if (rc != SQLITE_DONE)
        return -EIO;
    return differ || k != n;
}

int
store_import_customer_tags_clear(struct store_customers_import *ci, int64_t id)
{
    sqlite3_bind_int64(ci->tags_del, 1, id);
    return exec_stmt(ci->tags_del);
}

int
store_import_customer_tag_add(struct store_customers_import *ci, int64_t id, const char *tag)
{
    sqlite3_bind_int64(ci->tag_ins, 1, id);
    sqlite3_bind_text(ci->tag_ins, 2, tag, -1, SQLITE_STATIC);
    return exec_stmt(ci->tag_ins);
}

int
store_import_consent_get(struct store_customers_import *ci, int64_t id, const char *channel,
                         int *granted, const char **source)
{
    sqlite3_stmt *s = ci->consent_get;
    int rc;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        ci->source.len = 0;
        *granted = sqlite3_column_int(s, 0);
        *source = kept(&ci->source, keep_text(&ci->source, s, 1));
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int
store_import_consent_set(struct store_customers_import *ci, int64_t id, const char *channel,
                         int granted, const char *updated_at, const char *source)
{
    sqlite3_stmt *s = ci->consent_set;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, granted);
    sqlite3_bind_text(s, 4, updated_at, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, source, -1, SQLITE_STATIC);
    return exec_stmt(s);
}

int
store_import_attribute_key(struct store_customers_import *ci, const char *key)
{
    sqlite3_bind_text(ci->attr_key, 1, key, -1, SQLITE_STATIC);
    return exec_stmt(ci->attr_key);
}

/* ---- orders ------------------------------------------------------------- */

struct store_orders_import {
    struct store *st;
    sqlite3_stmt *cust, *find, *ins, *upd, *stats;
    struct sbuf found; /* the strings of the last order found */
};

void
store_import_orders_close(struct store_orders_import *oi)
{
    if (!oi)
        return;
    sqlite3_finalize(oi->cust);
    sqlite3_finalize(oi->find);
    sqlite3_finalize(oi->ins);
    sqlite3_finalize(oi->upd);
    sqlite3_finalize(oi->stats);
    sbuf_free(&oi->found);
    free(oi);
}

int
store_import_orders_open(struct store *st, struct store_orders_import **out)
{
    struct store_orders_import *oi = xcalloc(1, sizeof(*oi));
    oi->st = st;
    sbuf_init(&oi->found);
    *out = NULL;
    if (prepare(st, &oi->cust, "SELECT id FROM customers WHERE ext_id = ?1") < 0 ||
        prepare(st, &oi->find,
                "SELECT id, customer_id, amount_cents, currency, ordered_at FROM orders"
                " WHERE ext_id = ?1") < 0 ||
        prepare(st, &oi->ins,
                "INSERT INTO orders (ext_id, customer_id, amount_cents, currency, ordered_at)"
                " VALUES (?1, ?2, ?3, ?4, ?5)") < 0 ||
        prepare(st, &oi->upd,
                "UPDATE orders SET customer_id = ?2, amount_cents = ?3, currency = ?4,"
                " ordered_at = ?5 WHERE id = ?1") < 0 ||
        prepare(st, &oi->stats,
                "INSERT INTO customer_stats (customer_id, orders_count, total_cents,"
                " first_order_date, last_order_date)"
                " SELECT ?1, count(*), coalesce(sum(amount_cents), 0),"
                " min(substr(ordered_at, 1, 10)), max(substr(ordered_at, 1, 10))"
                " FROM orders WHERE customer_id = ?1"
                " ON CONFLICT (customer_id) DO UPDATE SET orders_count = excluded.orders_count,"
                " total_cents = excluded.total_cents,"
                " first_order_date = excluded.first_order_date,"
                " last_order_date = excluded.last_order_date") < 0) {
        /* Finalizing statements that never ran keeps the error message. */
        store_import_orders_close(oi);
        return -EIO;
    }
    *out = oi;
    return 0;
}

int
store_import_order_customer(struct store_orders_import *oi, const char *ext_id, int64_t *id)
{
    int rc;
    sqlite3_bind_text(oi->cust, 1, ext_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(oi->cust);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(oi->cust, 0);
    sqlite3_reset(oi->cust);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int
store_import_order_find(struct store_orders_import *oi, const char *ext_id,
                        struct store_import_order *out)
{
    sqlite3_stmt *f = oi->find;
    long cur, at;
    int rc;
    sqlite3_bind_text(f, 1, ext_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(f);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(f);
        return rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    memset(out, 0, sizeof(*out));
    out->id = sqlite3_column_int64(f, 0);
    out->customer_id = sqlite3_column_int64(f, 1);
    out->amount_cents = sqlite3_column_int64(f, 2);
    oi->found.len = 0;
    cur = keep_text(&oi->found, f, 3);
    at = keep_text(&oi->found, f, 4);
    sqlite3_reset(f);
    out->currency = kept(&oi->found, cur);
    out->ordered_at = kept(&oi->found, at);
    return 0;
}

int
store_import_order_add(struct store_orders_import *oi, const struct store_import_order *o,
                       int64_t *id)
{
    sqlite3_bind_text(oi->ins, 1, o->ext_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(oi->ins, 2, o->customer_id);
    sqlite3_bind_int64(oi->ins, 3, o->amount_cents);
    sqlite3_bind_text(oi->ins, 4, o->currency, -1, SQLITE_STATIC);
    sqlite3_bind_text(oi->ins, 5, o->ordered_at, -1, SQLITE_STATIC);
    return exec_insert(oi->st, oi->ins, id);
}

int
store_import_order_update(struct store_orders_import *oi, const struct store_import_order *o)
{
    sqlite3_bind_int64(oi->upd, 1, o->id);
    sqlite3_bind_int64(oi->upd, 2, o->customer_id);
    sqlite3_bind_int64(oi->upd, 3, o->amount_cents);
    sqlite3_bind_text(oi->upd, 4, o->currency, -1, SQLITE_STATIC);
    sqlite3_bind_text(oi->upd, 5, o->ordered_at, -1, SQLITE_STATIC);
    return exec_stmt(oi->upd);
}

int
store_import_customer_stats(struct store_orders_import *oi, int64_t customer_id)
{
    sqlite3_bind_int64(oi->stats, 1, customer_id);
    return exec_stmt(oi->stats);
}
