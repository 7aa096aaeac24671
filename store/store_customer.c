/*
 * store_customer.c: the SQL behind store_customer.h: one customer read as a
 * JSON object.
 */
#include "store_customer.h"

#include <errno.h>
#include <string.h>

#include "store_internal.h"

/* key is one of store_customer_doc's literal column names. */
static void
set_col(json_t *o, const char *key, sqlite3_stmt *s, int i)
{
    json_t *v;
    switch (sqlite3_column_type(s, i)) {
    case SQLITE_NULL:
        v = json_null();
        break;
    case SQLITE_INTEGER:
        v = json_integer(sqlite3_column_int64(s, i));
        break;
    case SQLITE_FLOAT:
        v = json_real(sqlite3_column_double(s, i));
        break;
    default:
        v = json_string((const char *)sqlite3_column_text(s, i));
    }
    json_object_set_new_nocheck(o, key, v);
}

json_t *
store_customer_doc(struct store *st, int64_t customer_id)
{
    static const char *const cols[] = {"id",
                                       "name",
                                       "first_name",
                                       "email",
                                       "phone",
                                       "birthday",
                                       "tz",
                                       "tier",
                                       "owner",
                                       "created_at",
                                       "orders_count",
                                       "total_spent",
                                       "last_order_date",
                                       "first_order_date",
                                       NULL};
    /* One statement for the customer, the order figures and the tags: one
     * row per tag (in tag order, from customer_tags' primary key), or one
     * row with a NULL tag. */
    sqlite3_stmt *s;
    json_t *o = NULL, *attrs, *tags;
    const char *text;
    if (store_prepare(st,
                      "SELECT c.ext_id, c.name, c.first_name, c.email, c.phone, c.birthday,"
                      " c.tz, c.tier, c.owner, c.created_at, coalesce(s.orders_count, 0),"
                      " coalesce(s.total_cents, 0) / 100.0, s.last_order_date,"
                      " s.first_order_date, c.attrs, t.tag FROM customers c LEFT JOIN"
                      " customer_stats s ON s.customer_id = c.id LEFT JOIN customer_tags t"
                      " ON t.customer_id = c.id WHERE c.id = ? ORDER BY t.tag",
                      &s) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(s, 1, customer_id);
    if (sqlite3_step(s) == SQLITE_ROW) {
        o = json_object();
        /* Custom attributes first, so that built-in fields win a name clash
         * (most customers have none: '{}' needs no parser). */
        text = (const char *)sqlite3_column_text(s, 14);
        if (text && strcmp(text, "{}") != 0) {
            attrs = json_loads(text, 0, NULL);
            if (json_is_object(attrs))
                json_object_update(o, attrs);
            json_decref(attrs);
        }
        for (int i = 0; cols[i]; i++)
            set_col(o, cols[i], s, i);
        tags = json_array();
        do {
            if ((text = (const char *)sqlite3_column_text(s, 15)))
                json_array_append_new(tags, json_string(text));
        } while (sqlite3_step(s) == SQLITE_ROW);
        json_object_set_new_nocheck(o, "tags", tags);
    }
    store_done(s);
    return o;
}
