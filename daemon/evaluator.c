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
#include "store_snapshot.h"
#include "store_internal.h" /* until its SQL moves to the store */

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

/* A set of customer ids: who is inside an `entered` condition. */
struct idset {
    int64_t *v; /* open addressing; 0 = empty (customer ids start at 1) */
    size_t cap, n;
};

static void
idset_free(struct idset *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static size_t
idset_slot(const struct idset *s, int64_t id)
{
    size_t h = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull) & (s->cap - 1);
    while (s->v[h] && s->v[h] != id)
        h = (h + 1) & (s->cap - 1);
    return h;
}

static bool
idset_has(const struct idset *s, int64_t id)
{
    return s->cap && s->v[idset_slot(s, id)] == id;
}

static void
idset_add(struct idset *s, int64_t id)
{
    if ((s->n + 1) * 2 > s->cap) {
        struct idset g = {xcalloc(s->cap ? s->cap * 2 : 1024, sizeof(int64_t)),
                          s->cap ? s->cap * 2 : 1024, 0};
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i])
                idset_add(&g, s->v[i]);
        free(s->v);
        *s = g;
    }
    size_t h = idset_slot(s, id);
    if (!s->v[h]) {
        s->v[h] = id;
        s->n++;
    }
}

static void
idset_del(struct idset *s, int64_t id)
{
    size_t h;
    if (!idset_has(s, id))
        return;
    /* Backward-shift deletion keeps probe chains intact. */
    h = idset_slot(s, id);
    s->v[h] = 0;
    s->n--;
    for (size_t j = (h + 1) & (s->cap - 1); s->v[j]; j = (j + 1) & (s->cap - 1)) {
        int64_t x = s->v[j];
        s->v[j] = 0;
        s->n--;
        idset_add(s, x);
    }
}

struct win {
    struct evaluator *ev;
    const struct rule *r;
    const char *tz;
    ntime_t now;
    eval_row_cb cb;
    void *ud;
    struct eval_stats *stats;
    struct idset *members; /* entered triggers */
    int64_t *snapshot;     /* the rule's rule_snapshots id once written, else 0 */
    bool seeding; /* entered, backfill: false: record who is inside, send nothing */
};

static void
bind_attr_path(sqlite3_stmt *s, int idx, const char *field)
{
    char *path = xasprintf("$.\"%s\"", field);
    sqlite3_bind_text(s, idx, path, -1, SQLITE_TRANSIENT);
    free(path);
}

/*
 * Solar birth dates whose lunar month-day is one of f->md, in every lunar
 * year before the one being celebrated: a lunar birthday becomes an indexed
 * `birthday IN (...)` lookup instead of a conversion per customer. A birth in
 * a leap month counts for the regular month of the same number.
 */
static char **
lunar_birth_dates(const struct fire *f, size_t *n)
{
    char **v = NULL;
    size_t k = 0;
    for (int i = 0; i < f->nmd; i++) {
        int lm = (f->md[i][0] - '0') * 10 + (f->md[i][1] - '0');
        int ld = (f->md[i][3] - '0') * 10 + (f->md[i][4] - '0');
        for (int ly = CAL_LUNAR_MIN_YEAR; ly < f->year && ly <= CAL_LUNAR_MAX_YEAR; ly++) {
            for (int leap = 0; leap <= 1; leap++) {
                int y, m, d;
                if (cal_solar_from_lunar(ly, lm, ld, leap, &y, &m, &d) < 0)
                    continue;
                v = xrealloc(v, (k + 1) * sizeof(*v));
                v[k++] = xasprintf("%04d-%02d-%02d", y, m, d);
            }
        }
    }
    *n = k;
    return v;
}

/*
 * Builds "FROM ... WHERE zone AND trigger-filter [AND audience]" and binds
 * it. The audience's own SQL has plain '?' parameters, numbered by
 * position, so the order of appends (where_sql) and binds (where_bind) must
 * match exactly.
 */
static void
where_sql(struct win *w, const struct fire *f, struct sbuf *q, bool with_audience, size_t nlunar)
{
    const struct trigger *t = &w->r->trigger;
    sbuf_adds(q, " FROM ");
    sbuf_adds(q, audience_from_clause());
    /* Written so that the index on customers(tz) can serve it; for
     * anniversaries the date index is far more selective, so the zone test
     * is kept off the tz index there (unary +). */
    sbuf_adds(q, t->kind == TRIG_ANNIVERSARY ? " WHERE (+c.tz = ? OR (c.tz IS NULL AND ? = ?))"
                                             : " WHERE (c.tz = ? OR (c.tz IS NULL AND ? = ?))");
    if (t->kind == TRIG_ANNIVERSARY) {
        bool param;
        const char *fs = date_field_sql(t->field, &param);
        if (t->lunar) {
            if (!strcmp(t->field, "birthday"))
                sbuf_adds(q, " AND c.birthday IN ("); /* uses customers_birthday_date */
            else
                sbuf_printf(q, " AND substr(%s, 1, 10) IN (", fs);
            for (size_t i = 0; i < nlunar; i++)
                sbuf_adds(q, i ? ", ?" : "?");
            sbuf_adds(q, nlunar ? ")" : "NULL)");
        } else {
            if (!strcmp(t->field, "birthday"))
                sbuf_adds(q, " AND substr(c.birthday, -5) IN ("); /* uses customers_birthday */
            else
                sbuf_printf(q, " AND (CASE WHEN substr(%s, 1, 2) = '--' THEN substr(%s, 3, 5)"
                               " ELSE substr(%s, 6, 5) END) IN (",
                            fs, fs, fs);
            for (int i = 0; i < f->nmd; i++)
                sbuf_adds(q, i ? ", ?" : "?");
            sbuf_printf(q, ") AND (substr(%s, 1, 2) = '--' OR CAST(substr(%s, 1, 4) AS INTEGER)"
                           " < ?)",
                        fs, fs);
        }
    }
    if (with_audience && w->r->audience)
        sbuf_printf(q, " AND (%s)", w->r->audience->sql);
}

static int
where_bind(struct win *w, const struct fire *f, sqlite3_stmt *s, int idx, bool with_audience,
           char **lunar, size_t nlunar, const char *today)
{
    const struct trigger *t = &w->r->trigger;
    sqlite3_bind_text(s, idx++, w->tz, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, idx++, w->tz, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, idx++, w->ev->cfg->timezone, -1, SQLITE_STATIC);
    if (t->kind == TRIG_ANNIVERSARY) {
        bool param;
        date_field_sql(t->field, &param);
        if (t->lunar) {
            if (param)
                bind_attr_path(s, idx++, t->field);
            for (size_t i = 0; i < nlunar; i++)
                sqlite3_bind_text(s, idx++, lunar[i], -1, SQLITE_STATIC);
        } else {
            /* The field expression appears three times in the CASE... */
            if (param)
                for (int i = 0; i < 3; i++)
                    bind_attr_path(s, idx++, t->field);
            for (int i = 0; i < f->nmd; i++)
                sqlite3_bind_text(s, idx++, f->md[i], -1, SQLITE_TRANSIENT);
            /* ...and twice in the year test. */
            if (param) {
                bind_attr_path(s, idx++, t->field);
                bind_attr_path(s, idx++, t->field);
            }
            sqlite3_bind_int(s, idx++, f->year);
        }
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

/* "Does expression a hold for customer ?": a statement whose parameters are
 * a's, then the customer id. */
static int
prepare_holds(struct evaluator *ev, const struct audience *a, sqlite3_stmt **s)
{
    char *sql = xasprintf("SELECT coalesce((%s), 0) FROM %s WHERE c.id = ?", a->sql,
                          audience_from_clause());
    int rc = prepare(ev, sql, s);
    free(sql);
    return rc;
}

static const char insert_delivery[] =
    "INSERT OR IGNORE INTO deliveries (rule, customer_id, occurrence, action, channel, due_at,"
    " created_at, next_attempt_at, marketing, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/*
 * The rule's snapshot, written (or found by its hash) the first time the
 * window enqueues anything, in the same transaction as the rows that refer
 * to it. Each delivery carries only its id: the content is stored once per
 * rule version, not once per row (store_snapshot.h says why).
 */
static int
win_snapshot(struct win *w)
{
    if (*w->snapshot || !w->r->snapshot)
        return 0;
    return store_snapshot_put(w->ev->st, w->r->snapshot_hash, w->r->name, w->r->snapshot, w->now,
                              w->snapshot);
}

static void
bind_snapshot(const struct win *w, sqlite3_stmt *s, int idx)
{
    if (*w->snapshot)
        sqlite3_bind_int64(s, idx, *w->snapshot);
    else
        sqlite3_bind_null(s, idx);
}

static void
bind_delivery(struct win *w, const struct fire *f, sqlite3_stmt *s, int64_t customer, size_t a)
{
    sqlite3_bind_text(s, 1, w->r->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, customer);
    sqlite3_bind_text(s, 3, f->occurrence, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (int64_t)a);
    sqlite3_bind_text(s, 5, w->r->actions[a].channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, f->at);
    sqlite3_bind_int64(s, 7, w->now);
    sqlite3_bind_int64(s, 8, f->at);
    sqlite3_bind_int(s, 9, w->r->marketing);
    bind_snapshot(w, s, 10);
}

/* Emits one listed row per action of the rule. */
static int
list_customer(struct win *w, const struct fire *f, int64_t id, const char *ext_id)
{
    for (size_t a = 0; a < w->r->nactions; a++) {
        struct eval_row row = {w->r, f, w->tz, id, ext_id, a};
        int rc;
        w->stats->enqueued++;
        if ((rc = w->cb(w->ud, &row)) < 0)
            return rc;
    }
    return 0;
}

/*
 * `entered`: one pass over the zone's customers computes, for each, whether
 * the condition and the audience hold today; membership (who is already
 * inside) lives in a set, so a customer fires on entering, leaves when the
 * condition stops holding, and fires again on entering again.
 */
static int
on_fire_entered(struct win *w, const struct fire *f, const char *today)
{
    const struct rule *r = w->r;
    const struct audience *cond = r->trigger.condition;
    struct sbuf q;
    sqlite3_stmt *s = NULL, *ins = NULL, *join = NULL, *leave = NULL, *aud = NULL;
    int rc = 0, idx, aud_id = 0;

    sbuf_init(&q);
    /* The condition for everyone in the zone; the audience only for the
     * few who enter (it often holds subqueries, and this runs every day). */
    sbuf_printf(&q, "SELECT c.id, c.ext_id, coalesce((%s), 0)", cond->sql);
    where_sql(w, f, &q, false, 0);
    if ((rc = prepare(w->ev, q.s, &s)) < 0)
        goto out;
    idx = audience_bind(cond, s, 1, today);
    if (idx < 0 || where_bind(w, f, s, idx, false, NULL, 0, today) < 0) {
        rc = -EIO;
        goto out;
    }
    if (r->audience) {
        if ((rc = prepare_holds(w->ev, r->audience, &aud)) < 0)
            goto out;
        if ((aud_id = audience_bind(r->audience, aud, 1, today)) < 0) {
            rc = -EIO;
            goto out;
        }
    }
    if (!w->cb &&
        (win_snapshot(w) < 0 || prepare(w->ev, insert_delivery, &ins) < 0 ||
         prepare(w->ev, "INSERT OR IGNORE INTO rule_members (rule, customer_id, since)"
                        " VALUES (?, ?, ?)", &join) < 0 ||
         prepare(w->ev, "DELETE FROM rule_members WHERE rule = ? AND customer_id = ?", &leave) <
             0)) {
        rc = -EIO;
        goto out;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        bool inside = sqlite3_column_int(s, 2) != 0, in_aud = true;
        bool member = idset_has(w->members, id);
        if (member && !inside) {
            idset_del(w->members, id);
            if (leave) {
                sqlite3_bind_text(leave, 1, r->name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(leave, 2, id);
                if (run(w->ev, leave, NULL) < 0)
                    goto fail;
                sqlite3_reset(leave);
            }
            continue;
        }
        if (member || !inside)
            continue;
        idset_add(w->members, id);
        if (w->seeding)
            w->stats->enqueued++; /* seeding counts the members it records */
        if (join) {
            sqlite3_bind_text(join, 1, r->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(join, 2, id);
            sqlite3_bind_text(join, 3, today, -1, SQLITE_STATIC);
            if (run(w->ev, join, NULL) < 0)
                goto fail;
            sqlite3_reset(join);
        }
        if (w->seeding)
            continue; /* already inside when the rule started: a member, no message */
        if (aud) {
            sqlite3_bind_int64(aud, aud_id, id);
            in_aud = sqlite3_step(aud) == SQLITE_ROW && sqlite3_column_int(aud, 0);
            sqlite3_reset(aud);
        }
        if (!in_aud)
            continue;
        if (w->cb) {
            if ((rc = list_customer(w, f, id, (const char *)sqlite3_column_text(s, 1))) < 0)
                goto out;
            continue;
        }
        for (size_t a = 0; a < r->nactions; a++) {
            bind_delivery(w, f, ins, id, a);
            if (run(w->ev, ins, &w->stats->enqueued) < 0)
                goto fail;
            sqlite3_reset(ins);
        }
    }
    rc = rc == SQLITE_DONE ? 0 : -EIO;
    goto out;
fail:
    rc = -EIO;
out:
    sqlite3_finalize(s);
    sqlite3_finalize(ins);
    sqlite3_finalize(join);
    sqlite3_finalize(leave);
    sqlite3_finalize(aud);
    sbuf_free(&q);
    return rc;
}

/* The local date of fire f, "YYYY-MM-DD": what days_since() and friends
 * count from. */
static void
fire_date(const struct fire *f, char day[11])
{
    snprintf(day, 11, "%04d-%02d-%02d", f->y, f->m, f->d);
}

/* Fires of one zone, collected for list_entered. */
struct fires {
    struct fire *v;
    size_t n, cap;
};

static int
collect_fire(void *ud, const struct fire *f)
{
    struct fires *fs = ud;
    if (fs->n == fs->cap) {
        fs->cap = fs->cap ? fs->cap * 2 : 64;
        fs->v = xrealloc(fs->v, fs->cap * sizeof(*fs->v));
    }
    fs->v[fs->n++] = *f;
    return 0;
}

/* Evaluates `cond` for customer `id` on the day of fire f: 1, 0 or < 0. */
static int
holds_on(struct win *w, sqlite3_stmt *s, const struct audience *cond, int64_t id,
         const struct fire *f)
{
    char day[11];
    int idx, rc;
    fire_date(f, day);
    sqlite3_reset(s);
    if ((idx = audience_bind(cond, s, 1, day)) < 0)
        return -EIO;
    sqlite3_bind_int64(s, idx, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        return sqlite3_column_int(s, 0) != 0;
    if (rc == SQLITE_DONE)
        return 0;
    log_err("eval", "query failed: %s", sqlite3_errmsg(w->ev->st->db));
    return -EIO;
}

/*
 * Listing an `entered` trigger over a long window (forecast) for a
 * condition that is stepwise in the day (audience.h): instead of evaluating
 * the condition for every customer on every fire, as on_fire_entered does,
 * one query evaluates it on the first fire and reads each customer's
 * day-dependent arguments (e.g. last_order_date for days_since); the
 * condition is then re-evaluated for that customer only on the fires where
 * its signature changes (days_since(last_order_date) >= 90 changes once,
 * 90 days after the last order). The rows listed are the same as those
 * on_fire_entered lists fire by fire, as a test checks.
 */
static int
list_entered(struct win *w, ntime_t from, ntime_t to)
{
    const struct rule *r = w->r;
    const struct audience *cond = r->trigger.condition;
    struct fires fs = {NULL, 0, 0};
    struct sbuf q;
    sqlite3_stmt *s = NULL, *pt = NULL, *aud = NULL;
    struct aud_dayarg *args = NULL;
    unsigned char *sig = NULL, *prev = NULL;
    int64_t *days = NULL;
    size_t siglen = cond->ndayrefs * cond->ncuts;
    int rc, idx;
    char day0[11];

    sbuf_init(&q);
    if ((rc = schedule_fires(r, &w->ev->senv, w->tz, from, to, collect_fire, &fs)) < 0)
        goto out;
    w->stats->fires += (long)fs.n;
    if (!fs.n)
        goto out;
    days = xcalloc(fs.n, sizeof(*days));
    for (size_t i = 0; i < fs.n; i++)
        days[i] = days_from_civil(fs.v[i].y, fs.v[i].m, fs.v[i].d);
    fire_date(&fs.v[0], day0);

    sbuf_printf(&q, "SELECT c.id, c.ext_id, coalesce((%s), 0)", cond->sql);
    audience_day_select(cond, &q);
    where_sql(w, &fs.v[0], &q, false, 0);
    sbuf_adds(&q, " ORDER BY c.ext_id");
    if ((rc = prepare(w->ev, q.s, &s)) < 0)
        goto out;
    if ((idx = audience_bind(cond, s, 1, day0)) < 0 || (idx = audience_day_bind(cond, s, idx)) < 0 ||
        where_bind(w, &fs.v[0], s, idx, false, NULL, 0, day0) < 0) {
        rc = -EIO;
        goto out;
    }
    if ((rc = prepare_holds(w->ev, cond, &pt)) < 0 ||
        (r->audience && (rc = prepare_holds(w->ev, r->audience, &aud)) < 0))
        goto out;
    args = xcalloc(cond->ndayrefs + 1, sizeof(*args));
    sig = xcalloc(siglen + 1, 1);
    prev = xcalloc(siglen + 1, 1);

    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        const char *ext_id = (const char *)sqlite3_column_text(s, 1);
        bool member = idset_has(w->members, id), varies = false;
        int inside = sqlite3_column_int(s, 2) != 0;

        audience_day_args(cond, s, 3, args);
        for (size_t k = 0; k < cond->ndayrefs; k++)
            varies |= args[k].valid;
        varies &= siglen > 0;
        if (varies)
            audience_day_signature(cond, args, days[0], prev);
        for (size_t i = 0; i < fs.n; i++) {
            if (i > 0) {
                if (!varies)
                    break;
                audience_day_signature(cond, args, days[i], sig);
                if (!memcmp(sig, prev, siglen))
                    continue;
                memcpy(prev, sig, siglen);
                if ((inside = holds_on(w, pt, cond, id, &fs.v[i])) < 0) {
                    rc = inside;
                    goto out;
                }
            }
            if (member && !inside) {
                member = false;
            } else if (!member && inside) {
                member = true;
                if (aud) {
                    int in_aud = holds_on(w, aud, r->audience, id, &fs.v[i]);
                    if (in_aud < 0) {
                        rc = in_aud;
                        goto out;
                    }
                    if (!in_aud)
                        continue;
                }
                if ((rc = list_customer(w, &fs.v[i], id, ext_id)) < 0)
                    goto out;
            }
        }
    }
    rc = rc == SQLITE_DONE ? 0 : -EIO;
out:
    sqlite3_finalize(s);
    sqlite3_finalize(pt);
    sqlite3_finalize(aud);
    sbuf_free(&q);
    free(fs.v);
    free(days);
    free(args);
    free(sig);
    free(prev);
    return rc;
}

static int
on_fire(void *ud, const struct fire *f)
{
    struct win *w = ud;
    const struct rule *r = w->r;
    char today[11];
    struct sbuf q;
    sqlite3_stmt *s = NULL;
    char **lunar = NULL;
    size_t nlunar = 0;
    int rc = 0, idx;

    fire_date(f, today);
    w->stats->fires++;
    if (r->trigger.kind == TRIG_ENTERED)
        return on_fire_entered(w, f, today);
    if (r->trigger.kind == TRIG_ANNIVERSARY && r->trigger.lunar)
        lunar = lunar_birth_dates(f, &nlunar);

    sbuf_init(&q);
    if (w->cb) {
        /* Listing: who would receive what, without writing. */
        sbuf_adds(&q, "SELECT c.id, c.ext_id");
        where_sql(w, f, &q, true, nlunar);
        sbuf_adds(&q, " ORDER BY c.ext_id");
        if ((rc = prepare(w->ev, q.s, &s)) < 0)
            goto out;
        if ((idx = where_bind(w, f, s, 1, true, lunar, nlunar, today)) < 0) {
            rc = idx;
            goto out;
        }
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            if ((rc = list_customer(w, f, sqlite3_column_int64(s, 0),
                                    (const char *)sqlite3_column_text(s, 1))) < 0)
                goto out;
        rc = rc == SQLITE_DONE ? 0 : -EIO;
        goto out;
    }
    if ((rc = win_snapshot(w)) < 0)
        goto out;
    for (size_t a = 0; a < r->nactions; a++) {
        q.len = 0;
        sbuf_adds(&q, "INSERT OR IGNORE INTO deliveries (rule, customer_id, occurrence, action,"
                      " channel, due_at, created_at, next_attempt_at, marketing, snapshot)"
                      " SELECT ?, c.id, ?, ?, ?, ?, ?, ?, ?, ?");
        where_sql(w, f, &q, true, nlunar);
        if ((rc = prepare(w->ev, q.s, &s)) < 0)
            goto out;
        sqlite3_bind_text(s, 1, r->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, f->occurrence, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, (int64_t)a);
        sqlite3_bind_text(s, 4, r->actions[a].channel, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, f->at);
        sqlite3_bind_int64(s, 6, w->now);
        sqlite3_bind_int64(s, 7, f->at);
        sqlite3_bind_int(s, 8, r->marketing);
        bind_snapshot(w, s, 9);
        if ((idx = where_bind(w, f, s, 10, true, lunar, nlunar, today)) < 0) {
            rc = idx;
            goto out;
        }
        if ((rc = run(w->ev, s, &w->stats->enqueued)) < 0)
            goto out;
        sqlite3_finalize(s);
        s = NULL;
    }
out:
    for (size_t i = 0; i < nlunar; i++)
        free(lunar[i]);
    free(lunar);
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
    int64_t snapshot = 0;
    struct idset members = {NULL, 0, 0};
    if (r->trigger.kind == TRIG_ENTERED) {
        /* Who is inside the condition already. Listing works on this copy
         * only; enqueueing also writes every change to rule_members. */
        sqlite3_stmt *s;
        if (prepare(ev, "SELECT customer_id FROM rule_members WHERE rule = ?", &s) < 0)
            return -EIO;
        sqlite3_bind_text(s, 1, r->name, -1, SQLITE_STATIC);
        while (sqlite3_step(s) == SQLITE_ROW)
            idset_add(&members, sqlite3_column_int64(s, 0));
        sqlite3_finalize(s);
    }
    if ((rc = zones(ev, &z, &nz)) < 0)
        return rc;
    for (size_t i = 0; i < nz && rc >= 0; i++) {
        struct win w = {ev, r, z[i], now, cb, ud, stats, &members, &snapshot, false};
        if (!cal_zone_valid(z[i])) {
            log_warn("eval", "customers with unknown time zone '%s' are skipped", z[i]);
            continue;
        }
        if (cb && r->trigger.kind == TRIG_ENTERED && r->trigger.condition->stepwise &&
            !ev->day_by_day)
            rc = list_entered(&w, from, to);
        else
            rc = schedule_fires(r, &ev->senv, z[i], from, to, on_fire, &w);
    }
    for (size_t i = 0; i < nz; i++)
        free(z[i]);
    free(z);
    idset_free(&members);
    return rc < 0 ? rc : 0;
}

/*
 * Removes rule snapshots no deliverable row refers to any more. It scans the
 * deliveries once, so it runs after a rule set was (re)loaded, when versions
 * are replaced, and otherwise at most once a day: a replaced version's
 * snapshot goes once its last row is settled and a day has passed.
 */
static void
snapshots_gc(struct evaluator *ev, const struct ruleset *rs, ntime_t now)
{
    static _Atomic uint64_t done_version;
    static _Atomic ntime_t done_at;
    long removed = 0;
    if (rs->version == atomic_load(&done_version) && now >= atomic_load(&done_at) &&
        now - atomic_load(&done_at) < 86400)
        return;
    if (store_snapshot_gc(ev->st, &removed) < 0)
        return;
    atomic_store(&done_version, rs->version);
    atomic_store(&done_at, now);
    if (removed)
        log_info("eval", "removed %ld rule snapshot(s) no queued delivery refers to", removed);
}

/*
 * `entered` with backfill: false, on the rule's first evaluation: every
 * customer inside the condition today (in their own zone) becomes a member
 * without a message, so only those who enter later fire. The rule is new, so
 * rule_members holds nothing for it yet (a renamed rule is a new rule).
 */
static int
seed_members(struct evaluator *ev, const struct rule *r, ntime_t now, struct eval_stats *stats)
{
    char **z = NULL;
    size_t nz = 0;
    int rc;
    struct idset members = {NULL, 0, 0};
    if ((rc = zones(ev, &z, &nz)) < 0)
        return rc;
    for (size_t i = 0; i < nz && rc >= 0; i++) {
        int64_t no_snapshot = 0; /* seeding enqueues nothing */
        struct win w = {ev, r, z[i], now, NULL, NULL, stats, &members, &no_snapshot, true};
        struct fire f = {.at = now};
        struct cal_local l;
        char today[11];
        if (!cal_zone_valid(z[i]) || cal_utc_to_local(z[i], now, &l) < 0)
            continue;
        f.y = l.year;
        f.m = l.month;
        f.d = l.day;
        fire_date(&f, today);
        rc = on_fire_entered(&w, &f, today);
    }
    for (size_t i = 0; i < nz; i++)
        free(z[i]);
    free(z);
    idset_free(&members);
    return rc < 0 ? rc : 0;
}

int
evaluate_due(struct evaluator *ev, const struct ruleset *rs, ntime_t now, int64_t catch_up,
             struct eval_stats *stats)
{
    for (size_t i = 0; i < rs->n; i++) {
        const struct rule *r = rs->rules[i];
        if (ev->stop && atomic_load(ev->stop))
            return -ECANCELED; /* the rest is evaluated on the next start */
        ntime_t from, horizon = catch_up >= now ? 0 : now - catch_up;
        struct eval_stats late = {0, 0, 0};
        int rc;
        if (store_rule_progress_get(ev->st, r->name, &from) < 0) {
            /* A new rule starts now: it does not reach back into the past. */
            if (r->trigger.kind == TRIG_ENTERED && !r->trigger.backfill) {
                struct eval_stats seeded = {0, 0, 0};
                if (store_begin(ev->st) < 0)
                    return -EIO;
                if (seed_members(ev, r, now, &seeded) < 0 ||
                    store_rule_progress_set(ev->st, r->name, now) < 0) {
                    store_rollback(ev->st);
                    log_err("eval", "rule %s: recording the customers already inside failed; "
                                    "it will be retried", r->name);
                    continue;
                }
                if (store_commit(ev->st) < 0)
                    return -EIO;
                log_info("eval", "rule %s starts without a backlog (backfill: false): %ld "
                                 "customer(s) already inside recorded as members, not sent",
                         r->name, seeded.enqueued);
                continue;
            }
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
    snapshots_gc(ev, rs, now);
    return 0;
}
