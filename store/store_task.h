/*
 * store_task.h: callback tasks for staff (the tasks table) and the entries
 * they put on a customer's timeline. The task transport makes them and
 * records how their assignee was told (channel_task.c); `nudgectl tasks`
 * lists them and `nudgectl task done` closes them (admin.c).
 *
 * A task belongs to the delivery that made it (delivery_id is unique), so
 * making the task of a delivery twice makes it once.
 */
#ifndef NUDGE_STORE_TASK_H
#define NUDGE_STORE_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct store;

/* A task to make (strings are the caller's). */
struct store_task_new {
    int64_t delivery_id;  /* the delivery making it */
    const char *customer; /* the customer's ext_id */
    const char *rule;
    const char *kind;     /* "callback", ... */
    const char *assignee; /* NULL or "": nobody yet */
    const char *note;
    ntime_t due_at, created_at;
    const char *timeline; /* the detail of the customer's 'task' timeline entry */
};

/* The ways an assignee is told about a new task (channels.task.notify). */
enum store_task_notice {
    STORE_TASK_BY_EMAIL,
    STORE_TASK_BY_WEBHOOK,
};

/* One task as read back. Strings are malloc'd and NULL where the row has
 * none; store_task_clear frees them. */
struct store_task {
    int64_t id;
    char *kind, *assignee, *note, *rule;
    ntime_t due_at; /* 0 when the task has no due date */
    ntime_t created_at;
    bool done; /* closed: done_at and outcome are set */
    ntime_t done_at;
    char *outcome;
    char *customer;                        /* customers.ext_id */
    char *customer_name;                   /* customers.name */
    char *customer_phone;                  /* customers.phone */
    bool notified_email, notified_webhook; /* the assignee told, or given up */
    ntime_t notified_email_at, notified_webhook_at;
    char *notify_error; /* what could not be told, "; "-separated */
};

/* Which tasks store_task_list returns. */
struct store_task_filter {
    const char *assignee; /* NULL: everyone's */
    bool all;             /* closed tasks too */
    bool overdue;         /* only tasks due before `now` */
    ntime_t now;
    size_t limit; /* at most this many (by due date, then id) */
};

/*
 * Makes the task of t->delivery_id for the customer with ext_id
 * t->customer, unless that delivery's task exists already, and puts a
 * 'task' entry (t->timeline) on the customer's timeline when it makes one.
 * 1 made, 0 not made (it exists, or there is no such customer), -EIO
 * (store_errmsg says why). Not a transaction of its own beyond each
 * statement: the timeline entry is best effort.
 */
int store_task_create(struct store *st, const struct store_task_new *t);

/* The task made by delivery_id: id, kind, assignee, note, due_at,
 * notified_email and notified_webhook are filled. -ENOENT if there is none,
 * -EIO. */
int store_task_by_delivery(struct store *st, int64_t delivery_id, struct store_task *out);

/* Records that telling the assignee of task `id` by `way` is done (why
 * NULL) or given up for good at `at` (why is appended to notify_error).
 * 0 or -EIO (store_errmsg says why). */
int store_task_mark_notified(struct store *st, int64_t id, enum store_task_notice way, ntime_t at,
                             const char *why);

/* The tasks f selects, with their customer's ext_id, name and phone,
 * ordered by due date then id; *out is an array of *n (store_tasks_free).
 * 0 or -EIO. */
int store_task_list(struct store *st, const struct store_task_filter *f, struct store_task **out,
                    size_t *n);

/* Closes open task `id` at `at` with `outcome` and puts a 'task-done'
 * entry ("KIND: OUTCOME") on the customer's timeline (best effort).
 * -ENOENT if there is no such task or it is closed already, -EIO. */
int store_task_done(struct store *st, int64_t id, ntime_t at, const char *outcome);

void store_task_clear(struct store_task *t);
void store_tasks_free(struct store_task *tasks, size_t n);

#endif
