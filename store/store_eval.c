/*
 * store_eval.c: the queries of rule evaluation (see store_eval.h). All SQL
 * text here is fixed or comes from the audience compiler's whitelist; values
 * are bound as parameters.
 */
#include "store_eval.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audience.h"
#include "log.h"
#include "store_internal.h"

/*
 * Binds the parameters of audience a to s from index idx on, with `today`
 * for its day functions. Returns the next free index, -EINVAL for a bad
 * date, or -ERANGE/-ENOMEM/-EIO if SQLite refuses.
 */
static int
bind_audience(sqlite3_stmt *s, int idx, const struct audience *a, const char *today)
{
    if (!a || !s || idx < 1)
        return -EINVAL;
    if (a->nparams > (size_t)(INT_MAX - idx))
        return -ERANGE;
    for (size_t k = 0; k < a->nparams; k++, idx++) {
        struct aud_value v;
        int rc = audience_param(a, k, today, &v);
        if (rc < 0)
            return rc;
        switch (v.kind) {
        case AUD_INT:
            rc = sqlite3_bind_int64(s, idx, v.i);
            break;
        case AUD_REAL:
            rc = sqlite3_bind_double(s, idx, v.r);
            break;
        default:
            rc = sqlite3_bind_text(s, idx, v.text, (int)v.len, SQLITE_TRANSIENT);
            break;
        }
        if (rc == SQLITE_RANGE)
            return -ERANGE;
        if (rc == SQLITE_NOMEM)
            return -ENOMEM;
        if (rc != SQLITE_OK)
            return -EIO;
    }
    return idx;
}

/* Binds the parameters of a's day arguments (audience_day_select). */
static int
bind_day_args(sqlite3_stmt *s, int idx, const struct audience *a)
{
    for (size_t k = 0; k < a->ndayrefs && idx >= 0; k++)
        idx = bind_audience(s, idx, a->dayrefs[k].arg, NULL);
    return idx;
}

/* Reads a's day arguments from the columns starting at col. */
static void
read_day_args(sqlite3_stmt *s, int col, const struct audience *a, struct aud_dayval *vals)
{
    for (size_t k = 0; k < a->ndayrefs; k++, col++) {
        struct aud_dayval *v = &vals[k];
        memset(v, 0, sizeof(*v));
        if (sqlite3_column_type(s, col) == SQLITE_NULL) {
            v->null = true;
        } else if (a->dayrefs[k].kind == AUD_DAYS_SINCE) {
            v->real = sqlite3_column_double(s, col);
        } else {
            v->text = (const char *)sqlite3_column_text(s, col);
            v->len = (size_t)sqlite3_column_bytes(s, col);
        }
    }
}

static int
prepare(struct store *st, const char *sql, sqlite3_stmt **s)
{
    if (sqlite3_prepare_v2(st->db, sql, -1, s, NULL) != SQLITE_OK) {
        log_err("eval", "cannot prepare query: %s", sqlite3_errmsg(st->db));
        return -EIO;
    }
    return 0;
}

/* A fixed statement, kept prepared in the connection's cache. */
static int
prepare_cached(struct store *st, const char *sql, sqlite3_stmt **s)
{
    if (store_prepare(st, sql, s) != SQLITE_OK) {
        log_err("eval", "cannot prepare query: %s", sqlite3_errmsg(st->db));
        return -EIO;
    }
    return 0;
}

static int
run(struct store *st, sqlite3_stmt *s, long *changes)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        log_err("eval", "query failed: %s", sqlite3_errmsg(st->db));
        return -EIO;
    }
    if (changes)
        *changes += sqlite3_changes(st->db);
    return 0;
}

/* ---- windows ------------------------------------------------------------------ */

/* The SQL expression holding a date field's text, and whether it needs the
 * attribute path bound as a parameter. */
static const char *
date_field_sql(const char *field, bool *param)
{
    *param = false;
    if (!strcmp(field, "birthday"))
        return "c.birthday";
    if (!strcmp(field, "created_at"))
        return "c.created_at";
    if (!strcmp(field, "first_order_date"))
        return "s.first_order_date";
    if (!strcmp(field, "last_order_date"))
        return "s.last_order_date";
    *param = true;
    return "json_extract(c.attrs, ?)";
}

static void
bind_attr_path(sqlite3_stmt *s, int idx, const char *field)
{
    char *path = xasprintf("$.\"%s\"", field);
    sqlite3_bind_text(s, idx, path, -1, SQLITE_TRANSIENT);
    free(path);
}

/*
 * Builds "FROM ... WHERE zone AND trigger-filter [AND audience]" for
 * window_bind. The audience's own SQL has plain '?' parameters, numbered by
 * position, so the order of appends (window_sql) and binds (window_bind)
 * must match exactly.
 */
static void
window_sql(const struct store_window *w, struct sbuf *q)
{
    sbuf_adds(q, " FROM ");
    sbuf_adds(q, audience_from_clause());
    /* Written so that the index on customers(tz) can serve it; for
     * anniversaries the date index is far more selective, so the zone test
     * is kept off the tz index there (unary +). */
    sbuf_adds(q, w->anniversary ? " WHERE (+c.tz = ? OR (c.tz IS NULL AND ? = ?))"
                                : " WHERE (c.tz = ? OR (c.tz IS NULL AND ? = ?))");
    if (w->anniversary) {
        bool param;
        const char *fs = date_field_sql(w->field, &param);
        if (w->lunar) {
            if (!strcmp(w->field, "birthday"))
                sbuf_adds(q, " AND c.birthday IN ("); /* uses customers_birthday_date */
            else
                sbuf_printf(q, " AND substr(%s, 1, 10) IN (", fs);
            for (size_t i = 0; i < w->ndates; i++)
                sbuf_adds(q, i ? ", ?" : "?");
            sbuf_adds(q, w->ndates ? ")" : "NULL)");
        } else {
            if (!strcmp(w->field, "birthday"))
                sbuf_adds(q, " AND substr(c.birthday, -5) IN ("); /* uses customers_birthday */
            else
                sbuf_printf(q,
                            " AND (CASE WHEN substr(%s, 1, 2) = '--' THEN substr(%s, 3, 5)"
                            " ELSE substr(%s, 6, 5) END) IN (",
                            fs, fs, fs);
            for (int i = 0; i < w->nmd; i++)
                sbuf_adds(q, i ? ", ?" : "?");
            sbuf_printf(q,
                        ") AND (substr(%s, 1, 2) = '--' OR CAST(substr(%s, 1, 4) AS INTEGER)"
                        " < ?)",
                        fs, fs);
        }
    }
    if (w->audience)
        sbuf_printf(q, " AND (%s)", w->audience->sql);
}

static int
window_bind(const struct store_window *w, sqlite3_stmt *s, int idx)
{
    sqlite3_bind_text(s, idx++, w->tz, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, idx++, w->tz, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, idx++, w->default_tz, -1, SQLITE_STATIC);
    if (w->anniversary) {
        bool param;
        date_field_sql(w->field, &param);
        if (w->lunar) {
            if (param)
                bind_attr_path(s, idx++, w->field);
            for (size_t i = 0; i < w->ndates; i++)
                sqlite3_bind_text(s, idx++, w->dates[i], -1, SQLITE_STATIC);
        } else {
            /* The field expression appears three times in the CASE... */
            if (param)
                for (int i = 0; i < 3; i++)
                    bind_attr_path(s, idx++, w->field);
            for (int i = 0; i < w->nmd; i++)
                sqlite3_bind_text(s, idx++, w->md[i], -1, SQLITE_TRANSIENT);
            /* ...and twice in the year test. */
            if (param) {
                bind_attr_path(s, idx++, w->field);
                bind_attr_path(s, idx++, w->field);
            }
            sqlite3_bind_int(s, idx++, w->year);
        }
    }
    if (w->audience)
        idx = bind_audience(s, idx, w->audience, w->today);
    return idx;
}

/* ---- zones and members ----------------------------------------------------------- */

int
store_eval_zones(struct store *st, const char *default_tz, char ***zones, size_t *n)
{
    sqlite3_stmt *s;
    char **z = NULL;
    size_t k = 0;
    if (prepare(st, "SELECT DISTINCT coalesce(tz, ?) FROM customers", &s) < 0)
        return -EIO;
    sqlite3_bind_text(s, 1, default_tz, -1, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (!t)
            continue;
        z = xrealloc(z, (k + 1) * sizeof(*z));
        z[k++] = xstrdup(t);
    }
    sqlite3_finalize(s);
    *zones = z;
    *n = k;
    return 0;
}

int
store_eval_members(struct store *st, const char *rule, void (*cb)(void *ud, int64_t id), void *ud)
{
    sqlite3_stmt *s;
    if (prepare(st, "SELECT customer_id FROM rule_members WHERE rule = ?", &s) < 0)
        return -EIO;
    sqlite3_bind_text(s, 1, rule, -1, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW)
        cb(ud, sqlite3_column_int64(s, 0));
    sqlite3_finalize(s);
    return 0;
}

int
store_eval_member_join(struct store *st, const char *rule, int64_t customer, const char *since)
{
    sqlite3_stmt *s;
    int rc;
    if (prepare_cached(st,
                       "INSERT OR IGNORE INTO rule_members (rule, customer_id, since)"
                       " VALUES (?, ?, ?)",
                       &s) < 0)
        return -EIO;
    sqlite3_bind_text(s, 1, rule, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, customer);
    sqlite3_bind_text(s, 3, since, -1, SQLITE_STATIC);
    rc = run(st, s, NULL);
    store_done(s);
    return rc;
}

int
store_eval_member_leave(struct store *st, const char *rule, int64_t customer)
{
    sqlite3_stmt *s;
    int rc;
    if (prepare_cached(st, "DELETE FROM rule_members WHERE rule = ? AND customer_id = ?", &s) < 0)
        return -EIO;
    sqlite3_bind_text(s, 1, rule, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, customer);
    rc = run(st, s, NULL);
    store_done(s);
    return rc;
}

/* ---- deliveries ------------------------------------------------------------------- */

/* Binds d from index idx on, in the column order of the INSERTs below after
 * rule (and customer): occurrence, action, channel, due_at, created_at,
 * next_attempt_at, marketing, snapshot. */
static void
bind_delivery_tail(sqlite3_stmt *s, int idx, const struct store_delivery *d)
{
    sqlite3_bind_text(s, idx++, d->occurrence, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, idx++, (int64_t)d->action);
    sqlite3_bind_text(s, idx++, d->channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, idx++, d->due_at);
    sqlite3_bind_int64(s, idx++, d->created_at);
    sqlite3_bind_int64(s, idx++, d->due_at);
    sqlite3_bind_int(s, idx++, d->marketing);
    if (d->snapshot)
        sqlite3_bind_int64(s, idx, d->snapshot);
    else
        sqlite3_bind_null(s, idx);
}

int
store_eval_enqueue_window(struct store *st, const struct store_window *w,
                          const struct store_delivery *d, long *enqueued)
{
    struct sbuf q;
    sqlite3_stmt *s = NULL;
    int rc, idx;

    sbuf_init(&q);
    sbuf_adds(&q, "INSERT OR IGNORE INTO deliveries (rule, customer_id, occurrence, action,"
                  " channel, due_at, created_at, next_attempt_at, marketing, snapshot)"
                  " SELECT ?, c.id, ?, ?, ?, ?, ?, ?, ?, ?");
    window_sql(w, &q);
    if ((rc = prepare(st, q.s, &s)) < 0)
        goto out;
    sqlite3_bind_text(s, 1, d->rule, -1, SQLITE_STATIC);
    bind_delivery_tail(s, 2, d);
    if ((idx = window_bind(w, s, 10)) < 0) {
        rc = idx;
        goto out;
    }
    rc = run(st, s, enqueued);
out:
    sqlite3_finalize(s);
    sbuf_free(&q);
    return rc;
}

int
store_eval_enqueue_one(struct store *st, const struct store_delivery *d, int64_t customer,
                       long *enqueued)
{
    sqlite3_stmt *s;
    int rc;
    if (prepare_cached(st,
                       "INSERT OR IGNORE INTO deliveries (rule, customer_id, occurrence,"
                       " action, channel, due_at, created_at, next_attempt_at, marketing,"
                       " snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       &s) < 0)
        return -EIO;
    sqlite3_bind_text(s, 1, d->rule, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, customer);
    bind_delivery_tail(s, 3, d);
    rc = run(st, s, enqueued);
    store_done(s);
    return rc;
}

/* ---- scans ------------------------------------------------------------------------ */

int
store_eval_customers(struct store *st, const struct store_window *w, store_customer_cb cb, void *ud)
{
    struct sbuf q;
    sqlite3_stmt *s = NULL;
    int rc, idx;

    sbuf_init(&q);
    sbuf_adds(&q, "SELECT c.id, c.ext_id");
    window_sql(w, &q);
    sbuf_adds(&q, " ORDER BY c.ext_id");
    if ((rc = prepare(st, q.s, &s)) < 0)
        goto out;
    if ((idx = window_bind(w, s, 1)) < 0) {
        rc = idx;
        goto out;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if ((rc = cb(ud, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1))) < 0)
            goto out;
    rc = rc == SQLITE_DONE ? 0 : -EIO;
out:
    sqlite3_finalize(s);
    sbuf_free(&q);
    return rc;
}

int
store_eval_condition(struct store *st, const struct store_window *w, const struct audience *cond,
                     int flags, store_condition_cb cb, void *ud)
{
    bool days = flags & STORE_EVAL_DAY_ARGS;
    struct aud_dayval *vals = NULL;
    struct sbuf q;
    sqlite3_stmt *s = NULL;
    int rc, idx;

    sbuf_init(&q);
    sbuf_printf(&q, "SELECT c.id, c.ext_id, coalesce((%s), 0)", cond->sql);
    if (days)
        audience_day_select(cond, &q);
    window_sql(w, &q);
    if (flags & STORE_EVAL_BY_EXT_ID)
        sbuf_adds(&q, " ORDER BY c.ext_id");
    if ((rc = prepare(st, q.s, &s)) < 0)
        goto out;
    if ((idx = bind_audience(s, 1, cond, w->today)) < 0 ||
        (days && (idx = bind_day_args(s, idx, cond)) < 0) || window_bind(w, s, idx) < 0) {
        rc = -EIO;
        goto out;
    }
    if (days)
        vals = xcalloc(cond->ndayrefs + 1, sizeof(*vals));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (days)
            read_day_args(s, 3, cond, vals);
        if ((rc = cb(ud, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1),
                     sqlite3_column_int(s, 2) != 0, vals)) < 0)
            goto out;
    }
    rc = rc == SQLITE_DONE ? 0 : -EIO;
out:
    sqlite3_finalize(s);
    sbuf_free(&q);
    free(vals);
    return rc;
}

/* ---- one customer ------------------------------------------------------------------ */

struct store_holds {
    struct store *st;
    const struct audience *a;
    sqlite3_stmt *s;
    int id_idx;   /* the customer id's parameter */
    char day[11]; /* the day a's parameters are bound for */
};

int
store_eval_holds_open(struct store *st, const struct audience *a, const char *today,
                      struct store_holds **out)
{
    struct store_holds *h = xcalloc(1, sizeof(*h));
    char *sql = xasprintf("SELECT coalesce((%s), 0) FROM %s WHERE c.id = ?", a->sql,
                          audience_from_clause());
    int rc = prepare(st, sql, &h->s);
    free(sql);
    h->st = st;
    h->a = a;
    if (rc == 0 && (h->id_idx = bind_audience(h->s, 1, a, today)) < 0)
        rc = -EIO;
    if (rc < 0) {
        store_eval_holds_close(h);
        return rc;
    }
    snprintf(h->day, sizeof(h->day), "%s", today ? today : "");
    *out = h;
    return 0;
}

int
store_eval_holds(struct store_holds *h, const char *today, int64_t customer)
{
    int rc;
    if (strcmp(today ? today : "", h->day)) {
        if (bind_audience(h->s, 1, h->a, today) < 0)
            return -EIO;
        snprintf(h->day, sizeof(h->day), "%s", today ? today : "");
    }
    sqlite3_bind_int64(h->s, h->id_idx, customer);
    rc = sqlite3_step(h->s);
    if (rc == SQLITE_ROW)
        rc = sqlite3_column_int(h->s, 0) != 0;
    else if (rc == SQLITE_DONE)
        rc = 0;
    else {
        log_err("eval", "query failed: %s", sqlite3_errmsg(h->st->db));
        rc = -EIO;
    }
    sqlite3_reset(h->s);
    return rc;
}

void
store_eval_holds_close(struct store_holds *h)
{
    if (!h)
        return;
    sqlite3_finalize(h->s);
    free(h);
}

/* ---- reload -------------------------------------------------------------------- */

int
store_eval_audience_delta(struct store *st, const struct audience *nw, const struct audience *old,
                          const char *today, int64_t *enter, int64_t *leave)
{
    struct sbuf q;
    sqlite3_stmt *s = NULL;
    int idx = 1, rc = -EIO;
    sbuf_init(&q);
    sbuf_printf(&q,
                "SELECT coalesce(sum(n AND NOT o), 0), coalesce(sum(o AND NOT n), 0) FROM"
                " (SELECT coalesce((%s), 0) AS n, coalesce((%s), 0) AS o FROM %s)",
                nw ? nw->sql : "1", old ? old->sql : "1", audience_from_clause());
    if (sqlite3_prepare_v2(st->db, q.s, -1, &s, NULL) != SQLITE_OK)
        goto out;
    if (nw && (idx = bind_audience(s, idx, nw, today)) < 0)
        goto out;
    if (old && (idx = bind_audience(s, idx, old, today)) < 0)
        goto out;
    if (sqlite3_step(s) == SQLITE_ROW) {
        *enter = sqlite3_column_int64(s, 0);
        *leave = sqlite3_column_int64(s, 1);
        rc = 0;
    }
out:
    sqlite3_finalize(s);
    sbuf_free(&q);
    return rc;
}
