/*
 * channel_task.c: the `task` transport. A task action becomes a row of the
 * tasks table, assigned to the customer's owner or round-robin over the
 * staff list in nudge.yaml (channels.task.staff), with a due date and the
 * rendered note; `nudgectl tasks` lists them. The delivery id is unique in
 * tasks, so a retried or repeated send never makes a second task.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel_spool.h"
#include "util.h"

struct task_state {
    sqlite3 *db;   /* our own connection: sends run on a worker thread */
    char **staff;  /* round-robin list, may be empty */
    size_t nstaff;
};

static const char *const task_channels[] = {"task", NULL};

static void
task_close(void *state)
{
    struct task_state *t = state;
    if (!t)
        return;
    sqlite3_close_v2(t->db);
    for (size_t i = 0; i < t->nstaff; i++)
        free(t->staff[i]);
    free(t->staff);
    free(t);
}

static int
task_open(const char *channel, json_t *settings, void **state, struct nerr *err)
{
    const char *db = json_string_value(json_object_get(settings, "_database"));
    const char *file = json_string_value(json_object_get(settings, "_file"));
    int line = (int)json_integer_value(json_object_get(settings, "_line"));
    json_t *staff = json_object_get(settings, "staff"), *v;
    const char *key;
    struct task_state *t;
    size_t i;
    json_object_foreach(settings, key, v)
    {
        if (key[0] == '_' || !strcmp(key, "transport") || !strcmp(key, "staff"))
            continue;
        nerr_set(err, file, line, 0, "unknown setting '%s' for the task transport", key);
        nerr_hint(err, "the task transport takes: staff (a list of names for round-robin)");
        return -EINVAL;
    }
    if (staff && !json_is_array(staff)) {
        nerr_set(err, file, line, 0, "channels.%s.staff must be a list of names", channel);
        return -EINVAL;
    }
    if (!db) {
        nerr_set(err, file, line, 0, "the task transport needs the database");
        return -EINVAL;
    }
    t = xcalloc(1, sizeof(*t));
    if (sqlite3_open_v2(db, &t->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        nerr_set(err, file, line, 0, "task transport: cannot open %s", db);
        task_close(t);
        return -EIO;
    }
    sqlite3_busy_timeout(t->db, 10000);
    json_array_foreach(staff, i, v)
    {
        if (!json_is_string(v)) {
            nerr_set(err, file, line, 0, "channels.%s.staff must be a list of names", channel);
            task_close(t);
            return -EINVAL;
        }
        t->staff = xrealloc(t->staff, (t->nstaff + 1) * sizeof(*t->staff));
        t->staff[t->nstaff++] = xstrdup(json_string_value(v));
    }
    *state = t;
    return 0;
}

static void
task_send(void *state, const struct nudge_message *msgs, size_t n, struct send_result *res)
{
    struct task_state *t = state;
    static const char sql[] =
        "INSERT OR IGNORE INTO tasks (delivery_id, customer_id, rule, kind, assignee, note,"
        " due_at, created_at) SELECT ?, c.id, ?, ?, ?, ?, ?, ? FROM customers c"
        " WHERE c.ext_id = ?";
    static const char tl[] = "INSERT INTO timeline (customer_id, at, kind, detail)"
                             " SELECT c.id, ?, 'task', ? FROM customers c WHERE c.ext_id = ?";
    for (size_t i = 0; i < n; i++) {
        const struct nudge_message *m = &msgs[i];
        json_t *p = m->payload;
        const char *assignee = m->to;
        int64_t due_in = json_integer_value(json_object_get(p, "due_in"));
        const char *kind = json_string_value(json_object_get(p, "kind"));
        sqlite3_stmt *s = NULL;
        int rc;
        memset(&res[i], 0, sizeof(res[i]));
        if ((!assignee || !*assignee) && t->nstaff)
            assignee = t->staff[(size_t)m->delivery_id % t->nstaff];
        if (sqlite3_prepare_v2(t->db, sql, -1, &s, NULL) != SQLITE_OK)
            goto fail;
        sqlite3_bind_int64(s, 1, m->delivery_id);
        sqlite3_bind_text(s, 2, m->rule, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, kind ? kind : "callback", -1, SQLITE_STATIC);
        if (assignee && *assignee)
            sqlite3_bind_text(s, 4, assignee, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, m->text ? m->text : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 6, m->date + due_in);
        sqlite3_bind_int64(s, 7, m->date);
        sqlite3_bind_text(s, 8, m->customer_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(s);
        sqlite3_finalize(s);
        s = NULL;
        if (rc != SQLITE_DONE)
            goto fail;
        if (sqlite3_changes(t->db) > 0 && sqlite3_prepare_v2(t->db, tl, -1, &s, NULL) == SQLITE_OK) {
            char *detail = xasprintf("%s task for %s (%s)", kind ? kind : "callback",
                                     assignee && *assignee ? assignee : "nobody yet", m->rule);
            sqlite3_bind_int64(s, 1, m->date);
            sqlite3_bind_text(s, 2, detail, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(s, 3, m->customer_id, -1, SQLITE_STATIC);
            sqlite3_step(s);
            sqlite3_finalize(s);
            free(detail);
        }
        res[i].status = SEND_OK;
        continue;
    fail:
        res[i].status = SEND_TRANSIENT;
        res[i].code = -EIO;
        snprintf(res[i].error, sizeof(res[i].error), "tasks table: %s", sqlite3_errmsg(t->db));
    }
}

static enum send_status
task_classify(int code)
{
    (void)code;
    return SEND_TRANSIENT;
}

const struct channel_backend channel_backend_task = {
    .name = "task",
    .channels = task_channels,
    .open = task_open,
    .send = task_send,
    .close = task_close,
    .classify_error = task_classify,
    .batch_max = 100,
};
