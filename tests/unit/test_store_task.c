/*
 * test_store_task.c: callback tasks in the store (store_task.h). A delivery
 * makes its task once, for a customer that exists, with one timeline entry;
 * an empty assignee is nobody; each way of telling the assignee is recorded
 * on its own and reasons accumulate; listing filters by assignee, open and
 * overdue, in due order within a limit; closing a task works once and puts
 * its outcome on the timeline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"
#include "store_task.h"
#include "util.h"
#include "unit.h"

struct fixture {
    char dir[64];
    struct store *st;
};

static int
setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    if (tmp_store(f->dir, "store-task", &f->st) < 0) {
        free(f);
        return -1;
    }
    if (store_exec(f->st, "INSERT INTO customers (id, ext_id, name, phone) VALUES"
                          " (1, 'C1', 'Ana', '+15550001'), (2, 'C2', NULL, NULL)") < 0)
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    rmrf(f->dir);
    free(f);
    return 0;
}

/* The timeline of customer `id` as "kind=detail;" entries, in order. */
static char *
timeline_of(struct store *st, int64_t id)
{
    sqlite3_stmt *s;
    struct sbuf b;
    sbuf_init(&b);
    assert_int_equal(sqlite3_prepare_v2(st->db,
                                        "SELECT kind, detail FROM timeline WHERE customer_id = ?"
                                        " ORDER BY id",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(s, 1, id);
    while (sqlite3_step(s) == SQLITE_ROW)
        sbuf_printf(&b, "%s=%s;", sqlite3_column_text(s, 0), sqlite3_column_text(s, 1));
    sqlite3_finalize(s);
    return b.s ? b.s : xstrdup("");
}

static int
make(struct store *st, int64_t delivery, const char *customer, const char *assignee, ntime_t due)
{
    struct store_task_new t = {
        .delivery_id = delivery,
        .customer = customer,
        .rule = "vip-call",
        .kind = "callback",
        .assignee = assignee,
        .note = "call about the order",
        .due_at = due,
        .created_at = 1000,
        .timeline = "callback task for someone (vip-call)",
    };
    return store_task_create(st, &t);
}

static void
a_delivery_makes_its_task_once(void **state)
{
    struct fixture *f = *state;
    struct store_task t;
    char *tl;
    assert_int_equal(make(f->st, 7, "C1", "alice", 5000), 1);
    assert_int_equal(make(f->st, 7, "C1", "bob", 6000), 0); /* a retried send */
    assert_int_equal(make(f->st, 8, "nobody", "alice", 5000), 0);

    assert_int_equal(store_task_by_delivery(f->st, 7, &t), 0);
    assert_true(t.id > 0);
    assert_string_equal(t.assignee, "alice");
    assert_string_equal(t.kind, "callback");
    assert_string_equal(t.note, "call about the order");
    assert_int_equal(t.due_at, 5000);
    assert_false(t.notified_email);
    assert_false(t.notified_webhook);
    store_task_clear(&t);
    assert_int_equal(store_task_by_delivery(f->st, 8, &t), -ENOENT);
    store_task_clear(&t);

    tl = timeline_of(f->st, 1);
    assert_string_equal(tl, "task=callback task for someone (vip-call);");
    free(tl);
}

static void
an_empty_assignee_is_nobody(void **state)
{
    struct fixture *f = *state;
    struct store_task t;
    assert_int_equal(make(f->st, 9, "C2", "", 5000), 1);
    assert_int_equal(store_task_by_delivery(f->st, 9, &t), 0);
    assert_null(t.assignee);
    store_task_clear(&t);
}

static void
each_way_of_telling_is_recorded_and_reasons_add_up(void **state)
{
    struct fixture *f = *state;
    struct store_task_filter all = {.all = true, .limit = 10};
    struct store_task t, *v;
    size_t n;
    assert_int_equal(make(f->st, 7, "C1", "alice", 5000), 1);
    assert_int_equal(store_task_by_delivery(f->st, 7, &t), 0);
    assert_int_equal(store_task_mark_notified(f->st, t.id, STORE_TASK_BY_EMAIL, 2000, NULL), 0);
    store_task_clear(&t);

    assert_int_equal(store_task_by_delivery(f->st, 7, &t), 0);
    assert_true(t.notified_email);
    assert_false(t.notified_webhook);
    assert_int_equal(
        store_task_mark_notified(f->st, t.id, STORE_TASK_BY_WEBHOOK, 2100, "webhook: 410 Gone"), 0);
    assert_int_equal(
        store_task_mark_notified(f->st, t.id, STORE_TASK_BY_EMAIL, 2200, "email: no address"), 0);
    store_task_clear(&t);

    assert_int_equal(store_task_list(f->st, &all, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_true(v[0].notified_email);
    assert_int_equal(v[0].notified_email_at, 2200);
    assert_true(v[0].notified_webhook);
    assert_int_equal(v[0].notified_webhook_at, 2100);
    assert_string_equal(v[0].notify_error, "webhook: 410 Gone; email: no address");
    store_tasks_free(v, n);
}

static void
listing_filters_and_orders_by_due_date(void **state)
{
    struct fixture *f = *state;
    struct store_task *v;
    size_t n;
    assert_int_equal(make(f->st, 1, "C1", "alice", 3000), 1);
    assert_int_equal(make(f->st, 2, "C2", "bob", 1000), 1);
    assert_int_equal(make(f->st, 3, "C1", "alice", 2000), 1);
    assert_int_equal(make(f->st, 4, "C1", NULL, 9000), 1);

    struct store_task_filter open = {.limit = 100};
    assert_int_equal(store_task_list(f->st, &open, &v, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(v[0].due_at, 1000);
    assert_string_equal(v[0].customer, "C2");
    assert_null(v[0].customer_name);
    assert_null(v[0].customer_phone);
    assert_int_equal(v[1].due_at, 2000);
    assert_string_equal(v[1].customer_name, "Ana");
    assert_string_equal(v[1].customer_phone, "+15550001");
    assert_string_equal(v[1].rule, "vip-call");
    assert_int_equal(v[1].created_at, 1000);
    assert_false(v[1].done);
    assert_null(v[1].outcome);
    assert_null(v[1].notify_error);
    assert_null(v[3].assignee);
    store_tasks_free(v, n);

    struct store_task_filter alice = {.assignee = "alice", .limit = 100};
    assert_int_equal(store_task_list(f->st, &alice, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].due_at, 2000);
    assert_int_equal(v[1].due_at, 3000);
    store_tasks_free(v, n);

    struct store_task_filter overdue = {.overdue = true, .now = 2500, .limit = 100};
    assert_int_equal(store_task_list(f->st, &overdue, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].due_at, 1000);
    assert_int_equal(v[1].due_at, 2000);
    store_tasks_free(v, n);

    struct store_task_filter first = {.limit = 1};
    assert_int_equal(store_task_list(f->st, &first, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].due_at, 1000);
    store_tasks_free(v, n);

    struct store_task_filter nobody = {.assignee = "carol", .limit = 100};
    assert_int_equal(store_task_list(f->st, &nobody, &v, &n), 0);
    assert_int_equal(n, 0);
    store_tasks_free(v, n);
}

static void
closing_a_task_works_once_and_reaches_the_timeline(void **state)
{
    struct fixture *f = *state;
    struct store_task t, *v;
    struct store_task_filter open = {.limit = 100}, all = {.all = true, .limit = 100};
    size_t n;
    char *tl;
    assert_int_equal(make(f->st, 7, "C1", "alice", 5000), 1);
    assert_int_equal(store_task_by_delivery(f->st, 7, &t), 0);
    assert_int_equal(store_task_done(f->st, t.id, 4000, "reached, ordered again"), 0);
    assert_int_equal(store_task_done(f->st, t.id, 4100, "again"), -ENOENT);
    assert_int_equal(store_task_done(f->st, t.id + 100, 4100, "done"), -ENOENT);

    assert_int_equal(store_task_list(f->st, &open, &v, &n), 0);
    assert_int_equal(n, 0);
    store_tasks_free(v, n);
    assert_int_equal(store_task_list(f->st, &all, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].id, t.id);
    assert_true(v[0].done);
    assert_int_equal(v[0].done_at, 4000);
    assert_string_equal(v[0].outcome, "reached, ordered again");
    store_tasks_free(v, n);
    store_task_clear(&t);

    tl = timeline_of(f->st, 1);
    assert_string_equal(tl, "task=callback task for someone (vip-call);"
                            "task-done=callback: reached, ordered again;");
    free(tl);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_delivery_makes_its_task_once, setup, teardown),
        cmocka_unit_test_setup_teardown(an_empty_assignee_is_nobody, setup, teardown),
        cmocka_unit_test_setup_teardown(each_way_of_telling_is_recorded_and_reasons_add_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(listing_filters_and_orders_by_due_date, setup, teardown),
        cmocka_unit_test_setup_teardown(closing_a_task_works_once_and_reaches_the_timeline, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
