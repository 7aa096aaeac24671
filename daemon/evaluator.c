/*
 * evaluator.c: from fires to deliveries. All SQL text here is fixed or comes
 * from the audience compiler's whitelist; values are bound as parameters.
 */
#include "evaluator.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audience.h"
#include "calendar.h"
#include "config.h"
#include "log.h"

/* nudge_lunar_md('YYYY-MM-DD') -> lunar 'MM-DD' of that solar date, or NULL. */
static void
sql_lunar_md(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const unsigned char *s = sqlite3_value_text(argv[0]);
    char date[11], out[6];
    int y, m, d;
    struct cal_lunar l;
    (void)argc;
    if (!s || strlen((const char *)s) < 10) {
        sqlite3_result_null(ctx);
        return;
    }
    memcpy(date, s, 10);
    date[10] = '\0';
    if (date_parse(date, &y, &m, &d) < 0 || cal_lunar_from_solar(y, m, d, &l) < 0) {
        sqlite3_result_null(ctx);
        return;
    }
    snprintf(out, sizeof(out), "%02d-%02d", l.month, l.day);
    sqlite3_result_text(ctx, out, -1, SQLITE_TRANSIENT);
}

int
evaluator_register_functions(sqlite3 *db)
{
    if (sqlite3_create_function(db, "nudge_lunar_md", 1,
                                SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                sql_lunar_md, NULL, NULL) != SQLITE_OK)
        return -EIO;
    return 0;
}

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

struct query {
    struct sbuf sql;
    /* Parameters bound in order before the audience's own. */
    int nfixed;
};

struct win {
    struct evaluator *ev;
    const struct rule *r;
    const char *tz;
    ntime_t now;
    eval_row_cb cb;
    void *ud;
    struct eval_stats *stats;
};

static void
bind_attr_path(sqlite3_stmt *s, int idx, const char *field)
{
    char *path = xasprintf("$.\"%s\"", field);
    sqlite3_bind_text(s, idx, path, -1, SQLITE_TRANSIENT);
    free(path);
}

/*
 * Builds "FROM ... WHERE zone AND trigger-filter AND audience [AND extra]"
 * and binds it starting at *idx. The audience's own SQL has plain '?'
 * parameters, numbered by position, so the order of appends and binds must
 * match exactly.
 */
static void
where_sql(struct win *w, const struct fire *f, struct sbuf *q, bool with_audience,
          const struct audience *cond, const char *extra)
{
    const struct trigger *t = &w->r->trigger;
    sbuf_adds(q, " FROM ");
    sbuf_adds(q, audience_from_clause());
    sbuf_adds(q, " WHERE coalesce(c.tz, ?) = ?");
    if (t->kind == TRIG_ANNIVERSARY) {
        bool param;
        const char *fs = date_field_sql(t->field, &param);
        if (t->lunar) {
            sbuf_printf(q, " AND nudge_lunar_md(%s) IN (", fs);
        } else if (!strcmp(t->field, "birthday")) {
            sbuf_adds(q, " AND substr(c.birthday, -5) IN ("); /* uses customers_birthday */
        } else {
            sbuf_printf(q, " AND (CASE WHEN substr(%s, 1, 2) = '--' THEN substr(%s, 3, 5)"
                           " ELSE substr(%s, 6, 5) END) IN (",
                        fs, fs, fs);
        }
        for (int i = 0; i < f->nmd; i++)
            sbuf_adds(q, i ? ", ?" : "?");
        sbuf_printf(q, ") AND (substr(%s, 1, 2) = '--' OR CAST(substr(%s, 1, 4) AS INTEGER) < ?)",
                    fs, fs);
    }
    if (cond)
        sbuf_printf(q, " AND coalesce((%s), 0)", cond->sql);
    if (with_audience && w->r->audience)
        sbuf_printf(q, " AND (%s)", w->r->audience->sql);
    if (extra)
        sbuf_adds(q, extra);
}

static int
where_bind(struct win *w, const struct fire *f, sqlite3_stmt *s, int idx, bool with_audience,
           const struct audience *cond, const char *today)
{
    const struct trigger *t = &w->r->trigger;
    sqlite3_bind_text(s, idx++, w->ev->cfg->timezone, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, idx++, w->tz, -1, SQLITE_STATIC);
    if (t->kind == TRIG_ANNIVERSARY) {
        bool param;
        int uses = t->lunar ? 1 : !strcmp(t->field, "birthday") ? 1 : 3;
        date_field_sql(t->field, &param);
        /* The field expression appears `uses` times in the IN test... */
        if (param && !t->lunar && strcmp(t->field, "birthday"))
            for (int i = 0; i < 3; i++)
                bind_attr_path(s, idx++, t->field);
        else if (param)
            bind_attr_path(s, idx++, t->field);
        (void)uses;
        for (int i = 0; i < f->nmd; i++)
            sqlite3_bind_text(s, idx++, f->md[i], -1, SQLITE_TRANSIENT);
        /* ...and twice in the year test. */
        if (param) {
            bind_attr_path(s, idx++, t->field);
            bind_attr_path(s, idx++, t->field);
        }
        sqlite3_bind_int(s, idx++, f->year);
    }
    if (cond) {
        idx = audience_bind(cond, s, idx, today);
        if (idx < 0)
            return idx;
    }
    if (with_audience && w->r->audience) {
        idx = audience_bind(w->r->audience, s, idx, today);
        if (idx < 0)
            return idx;
    }
    return idx;
}

static int
prepare(struct evaluator *ev, const char *sql, sqlite3_stmt **s)
{
    if (sqlite3_prepare_v2(ev->st->db, sql, -1, s, NULL) != SQLITE_OK) {
        log_err("eval", "cannot prepare query: %s", sqlite3_errmsg(ev->st->db));
        return -EIO;
    }
    return 0;
}

static int
run(struct evaluator *ev, sqlite3_stmt *s, long *changes)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
        log_err("eval", "query failed: %s", sqlite3_errmsg(ev->st->db));
        return -EIO;
    }
    if (changes)
        *changes += sqlite3_changes(ev->st->db);
    return 0;
}

static const char *const members_extra =
    " AND c.id NOT IN (SELECT customer_id FROM rule_members WHERE rule = ?)";

static int
on_fire(void *ud, const struct fire *f)
{
    struct win *w = ud;
    const struct rule *r = w->r;
    const struct audience *cond = r->trigger.kind == TRIG_ENTERED ? r->trigger.condition : NULL;
    char today[11];
    struct sbuf q;
    sqlite3_stmt *s = NULL;
    int rc = 0, idx;

    snprintf(today, sizeof(today), "%04d-%02d-%02d", f->y, f->m, f->d);
    w->stats->fires++;
    sbuf_init(&q);

    if (w->cb) {
        /* Listing: who would receive what, without writing. */
        sbuf_adds(&q, "SELECT c.id, c.ext_id");
        where_sql(w, f, &q, true, cond, cond ? members_extra : NULL);
        sbuf_adds(&q, " ORDER BY c.ext_id");
        if ((rc = prepare(w->ev, q.s, &s)) < 0)
            goto out;
        idx = where_bind(w, f, s, 1, true, cond, today);
        if (idx < 0) {
            rc = idx;
            goto out;
        }
        if (cond)
            sqlite3_bind_text(s, idx++, r->name, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            for (size_t a = 0; a < r->nactions; a++) {
                struct eval_row row = {r,
                                       f,
                                       w->tz,
                                       sqlite3_column_int64(s, 0),
                                       (const char *)sqlite3_column_text(s, 1),
                                       a};
                w->stats->enqueued++;
                if ((rc = w->cb(w->ud, &row)) < 0)
                    goto out;
            }
        }
        rc = rc == SQLITE_DONE ? 0 : -EIO;
        goto out;
    }

    if (cond) {
        /* Members who no longer satisfy the condition leave, so that
         * entering again fires again. */
        sbuf_adds(&q, "DELETE FROM rule_members WHERE rule = ? AND customer_id IN (SELECT c.id");
        where_sql(w, f, &q, false, NULL, NULL);
        sbuf_printf(&q, " AND NOT coalesce((%s), 0))", cond->sql);
        if ((rc = prepare(w->ev, q.s, &s)) < 0)
            goto out;
        sqlite3_bind_text(s, 1, r->name, -1, SQLITE_STATIC);
        idx = where_bind(w, f, s, 2, false, NULL, today);
        if (idx < 0 || (idx = audience_bind(cond, s, idx, today)) < 0) {
            rc = -EIO;
            goto out;
        }
        if ((rc = run(w->ev, s, NULL)) < 0)
            goto out;
        sqlite3_finalize(s);
        s = NULL;
    }

    for (size_t a = 0; a < r->nactions; a++) {
        q.len = 0;
        sbuf_adds(&q, "INSERT OR IGNORE INTO deliveries (rule, customer_id, occurrence, action,"
                      " channel, due_at, created_at, next_attempt_at)"
                      " SELECT ?, c.id, ?, ?, ?, ?, ?, ?");
        where_sql(w, f, &q, true, cond, cond ? members_extra : NULL);
        if ((rc = prepare(w->ev, q.s, &s)) < 0)
            goto out;
        sqlite3_bind_text(s, 1, r->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, f->occurrence, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, (int64_t)a);
        sqlite3_bind_text(s, 4, r->actions[a].channel, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, f->at);
        sqlite3_bind_int64(s, 6, w->now);
        sqlite3_bind_int64(s, 7, f->at);
        idx = where_bind(w, f, s, 8, true, cond, today);
        if (idx < 0) {
            rc = idx;
            goto out;
        }
        if (cond)
            sqlite3_bind_text(s, idx++, r->name, -1, SQLITE_STATIC);
        if ((rc = run(w->ev, s, &w->stats->enqueued)) < 0)
            goto out;
        sqlite3_finalize(s);
        s = NULL;
    }

    if (cond) {
        q.len = 0;
        sbuf_adds(&q, "INSERT OR IGNORE INTO rule_members (rule, customer_id, since)"
                      " SELECT ?, c.id, ?");
        where_sql(w, f, &q, false, cond, NULL);
        if ((rc = prepare(w->ev, q.s, &s)) < 0)
            goto out;
        sqlite3_bind_text(s, 1, r->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, today, -1, SQLITE_STATIC);
        idx = where_bind(w, f, s, 3, false, cond, today);
        if (idx < 0) {
            rc = idx;
            goto out;
        }
        rc = run(w->ev, s, NULL);
    }
out:
    sqlite3_finalize(s);
    sbuf_free(&q);
    return rc;
}

/* Every zone customers live in (customers without one use the default). */
static int
zones(struct evaluator *ev, char ***out, size_t *n)
{
    sqlite3_stmt *s;
    char **z = NULL;
    size_t k = 0;
    bool have_default = false;
    if (prepare(ev, "SELECT DISTINCT coalesce(tz, ?) FROM customers", &s) < 0)
        return -EIO;
    sqlite3_bind_text(s, 1, ev->cfg->timezone, -1, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (!t)
            continue;
        z = xrealloc(z, (k + 1) * sizeof(*z));
        z[k++] = xstrdup(t);
        have_default |= !strcmp(t, ev->cfg->timezone);
    }
    sqlite3_finalize(s);
    (void)have_default;
    *out = z;
    *n = k;
    return 0;
}

int
evaluate_window(struct evaluator *ev, const struct rule *r, ntime_t from, ntime_t to, ntime_t now,
                eval_row_cb cb, void *ud, struct eval_stats *stats)
{
    char **z = NULL;
    size_t nz = 0;
    int rc;
    if ((rc = zones(ev, &z, &nz)) < 0)
        return rc;
    for (size_t i = 0; i < nz && rc >= 0; i++) {
        struct win w = {ev, r, z[i], now, cb, ud, stats};
        if (!cal_zone_valid(z[i])) {
            log_warn("eval", "customers with unknown time zone '%s' are skipped", z[i]);
            continue;
        }
        rc = schedule_fires(r, &ev->senv, z[i], from, to, on_fire, &w);
    }
    for (size_t i = 0; i < nz; i++)
        free(z[i]);
    free(z);
    return rc < 0 ? rc : 0;
}

int
evaluate_due(struct evaluator *ev, const struct ruleset *rs, ntime_t now, int64_t catch_up,
             struct eval_stats *stats)
{
    for (size_t i = 0; i < rs->n; i++) {
        const struct rule *r = rs->rules[i];
        ntime_t from, horizon = catch_up >= now ? 0 : now - catch_up;
        struct eval_stats late = {0, 0, 0};
        int rc;
        if (store_rule_progress_get(ev->st, r->name, &from) < 0) {
            /* A new rule starts now: it does not reach back into the past. */
            if (store_rule_progress_set(ev->st, r->name, now) < 0)
                return -EIO;
            continue;
        }
        if (from >= now)
            continue;
        if (store_begin(ev->st) < 0)
            return -EIO;
        if (from < horizon) {
            /* Missed while down for longer than catch_up: say so, send nothing. */
            rc = evaluate_window(ev, r, from, horizon, now, NULL, NULL, &late);
            (void)rc;
            store_rollback(ev->st);
            if (late.fires) {
                char a[32], b[32];
                time_format_iso(from, a, sizeof(a));
                time_format_iso(horizon, b, sizeof(b));
                log_warn("eval", "rule %s: %ld fire(s) between %s and %s are older than "
                                 "catch_up and were skipped (%ld deliveries not sent)",
                         r->name, late.fires, a, b, late.enqueued);
                stats->skipped_late += late.fires;
            }
            if (store_begin(ev->st) < 0)
                return -EIO;
            from = horizon;
        }
        rc = evaluate_window(ev, r, from, now, now, NULL, NULL, stats);
        if (rc < 0 || store_rule_progress_set(ev->st, r->name, now) < 0) {
            store_rollback(ev->st);
            log_err("eval", "rule %s: evaluation failed; it will be retried", r->name);
            continue;
        }
        if (store_commit(ev->st) < 0)
            return -EIO;
    }
    return 0;
}
