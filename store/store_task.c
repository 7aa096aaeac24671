/*
 * store_task.c: the SQL behind callback tasks (store_task.h): the tasks
 * table, and the timeline entries made when a task is made or closed.
 */
#include "store_task.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* A copy of column i, NULL when the column is. */
static char *
col_str(sqlite3_stmt *s, int i)
{
    const unsigned char *v = sqlite3_column_text(s, i);
    return v ? xstrdup((const char *)v) : NULL;
}

int
store_task_create(struct store *st, const struct store_task_new *t)
{
    static const char sql[] =
        "INSERT OR IGNORE INTO tasks (delivery_id, customer_id, rule, kind, assignee, note,"
        " due_at, created_at) SELECT ?, c.id, ?, ?, ?, ?, ?, ? FROM customers c"
        " WHERE c.ext_id = ?";
    static const char tl[] = "INSERT INTO timeline (customer_id, at, kind, detail)"
                             " SELECT c.id, ?, 'task', ? FROM customers c WHERE c.ext_id = ?";
    sqlite3_stmt *s = NULL;
    int rc;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, t->delivery_id);
    sqlite3_bind_text(s, 2, t->rule, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, t->kind, -1, SQLITE_STATIC);
    if (t->assignee && *t->assignee)
        sqlite3_bind_text(s, 4, t->assignee, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, t->note, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, t->due_at);
    sqlite3_bind_int64(s, 7, t->created_at);
    sqlite3_bind_text(s, 8, t->customer, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return -EIO;
    if (sqlite3_changes(st->db) == 0)
        return 0;
    if (sqlite3_prepare_v2(st->db, tl, -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, t->created_at);
        sqlite3_bind_text(s, 2, t->timeline, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, t->customer, -1, SQLITE_STATIC);
        sqlite3_step(s);
        sqlite3_finalize(s);
    }
    return 1;
}

int
store_task_by_delivery(struct store *st, int64_t delivery_id, struct store_task *out)
{
    static const char get[] = "SELECT id, assignee, due_at, kind, note,"
                              " notified_email_at IS NOT NULL, notified_webhook_at IS NOT NULL"
                              " FROM tasks WHERE delivery_id = ?";
    sqlite3_stmt *s;
    int rc;
    memset(out, 0, sizeof(*out));
    if (sqlite3_prepare_v2(st->db, get, -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, delivery_id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(s, 0);
        out->assignee = col_str(s, 1);
        out->due_at = sqlite3_column_int64(s, 2);
        out->kind = col_str(s, 3);
        out->note = col_str(s, 4);
        out->notified_email = sqlite3_column_int(s, 5);
        out->notified_webhook = sqlite3_column_int(s, 6);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int
store_task_mark_notified(struct store *st, int64_t id, enum store_task_notice way, ntime_t at,
                         const char *why)
{
    /* ?2 is left NULL when there is nothing to add to notify_error. */
    static const char by_email[] =
        "UPDATE tasks SET notified_email_at = ?, notify_error = CASE WHEN ?2 IS NULL THEN"
        " notify_error ELSE coalesce(notify_error || '; ', '') || ?2 END WHERE id = ?3";
    static const char by_webhook[] =
        "UPDATE tasks SET notified_webhook_at = ?, notify_error = CASE WHEN ?2 IS NULL THEN"
        " notify_error ELSE coalesce(notify_error || '; ', '') || ?2 END WHERE id = ?3";
    sqlite3_stmt *s;
    int rc;
    if (sqlite3_prepare_v2(st->db, way == STORE_TASK_BY_EMAIL ? by_email : by_webhook, -1, &s,
                           NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, at);
    if (why)
        sqlite3_bind_text(s, 2, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, id);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int
store_task_list(struct store *st, const struct store_task_filter *f, struct store_task **out,
                size_t *n)
{
    sqlite3_stmt *s;
    struct store_task *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    *out = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT t.id, t.kind, t.assignee, t.note, t.due_at, t.created_at,"
                           " t.done_at, t.outcome, t.rule, cu.ext_id, cu.name, cu.phone,"
                           " t.notified_email_at, t.notified_webhook_at, t.notify_error"
                           " FROM tasks t JOIN customers cu ON cu.id = t.customer_id"
                           " WHERE (?1 IS NULL OR t.assignee = ?1)"
                           " AND (?2 OR t.done_at IS NULL)"
                           " AND (NOT ?3 OR t.due_at < ?4)"
                           " ORDER BY t.due_at, t.id LIMIT ?5",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    if (f->assignee)
        sqlite3_bind_text(s, 1, f->assignee, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, f->all);
    sqlite3_bind_int(s, 3, f->overdue);
    sqlite3_bind_int64(s, 4, f->now);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)f->limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_task *t;
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof(*v));
        }
        t = &v[len++];
        memset(t, 0, sizeof(*t));
        t->id = sqlite3_column_int64(s, 0);
        t->kind = col_str(s, 1);
        t->assignee = col_str(s, 2);
        t->note = col_str(s, 3);
        t->due_at = sqlite3_column_int64(s, 4);
        t->created_at = sqlite3_column_int64(s, 5);
        if (sqlite3_column_type(s, 6) != SQLITE_NULL) {
            t->done = true;
            t->done_at = sqlite3_column_int64(s, 6);
            t->outcome = col_str(s, 7);
        }
        t->rule = col_str(s, 8);
        t->customer = col_str(s, 9);
        t->customer_name = col_str(s, 10);
        t->customer_phone = col_str(s, 11);
        if (sqlite3_column_type(s, 12) != SQLITE_NULL) {
            t->notified_email = true;
            t->notified_email_at = sqlite3_column_int64(s, 12);
        }
        if (sqlite3_column_type(s, 13) != SQLITE_NULL) {
            t->notified_webhook = true;
            t->notified_webhook_at = sqlite3_column_int64(s, 13);
        }
        t->notify_error = col_str(s, 14);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        store_tasks_free(v, len);
        return -EIO;
    }
    *out = v;
    *n = len;
    return 0;
}

int
store_task_done(struct store *st, int64_t id, ntime_t at, const char *outcome)
{
    sqlite3_stmt *s;
    int rc;
    if (sqlite3_prepare_v2(st->db,
                           "UPDATE tasks SET done_at = ?, outcome = ? WHERE id = ? AND done_at IS"
                           " NULL",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, at);
    sqlite3_bind_text(s, 2, outcome, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, id);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return -EIO;
    if (sqlite3_changes(st->db) == 0)
        return -ENOENT;
    /* The outcome goes on the customer's timeline. */
    if (sqlite3_prepare_v2(
            st->db,
            "INSERT INTO timeline (customer_id, at, kind, detail) SELECT"
            " customer_id, ?, 'task-done', kind || ': ' || ? FROM tasks WHERE id = ?",
            -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, at);
        sqlite3_bind_text(s, 2, outcome, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, id);
        sqlite3_step(s);
        sqlite3_finalize(s);
    }
    return 0;
}

void
store_task_clear(struct store_task *t)
{
    if (!t)
        return;
    free(t->kind);
    free(t->assignee);
    free(t->note);
    free(t->rule);
    free(t->outcome);
    free(t->customer);
    free(t->customer_name);
    free(t->customer_phone);
    free(t->notify_error);
    memset(t, 0, sizeof(*t));
}

void
store_tasks_free(struct store_task *tasks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_task_clear(&tasks[i]);
    free(tasks);
}
