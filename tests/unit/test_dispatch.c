/*
 * test_dispatch.c: the outbox workers (daemon/dispatch.c) on a daemon wired
 * up as main.c does it: nudge.yaml in a temporary directory with the spool
 * transport for email, a real SQLite database, rules loaded from files, the
 * evaluator filling the outbox and libuv's thread pool running the batches:
 *
 *  - every due delivery becomes one private .eml file in the spool, its row
 *    'sent', one 'sent' timeline entry and one count in sent_total; a row
 *    not yet due stays pending and is sent once the clock reaches it; a
 *    second dispatch sends nothing twice;
 *  - a customer who withdrew consent after the row was enqueued ends
 *    'suppressed', with no file;
 *  - each session's sent journal exists while dispatch is open and is gone
 *    after dispatch_close;
 *  - a spool write that fails is retried with backoff, nobody's fault: the
 *    channel is not paused and nobody is suppressed;
 *  - dispatch_check refuses an unknown transport, naming it, the channel,
 *    nudge.yaml's line and the transports there are.
 *
 * Not covered: the pause on a sender fault. The spool and task transports
 * never blame the sender (only smtp and the HTTP transports do), and the
 * backend table (channel_backends) is fixed at build time, so no backend
 * reachable without a network peer produces one; test_email.c and
 * test_http_channel.c cover the blame itself.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "evaluator.h"
#include "log.h"
#include "store_internal.h"
#include "util.h"
#include "unit.h"
#include "unit_daemon.h"

static void
sql(struct store *st, const char *q)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, q, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", q, msg ? msg : "?");
}

static int64_t
sql_int(struct store *st, const char *q)
{
    sqlite3_stmt *s;
    int64_t v = INT64_MIN;
    if (sqlite3_prepare_v2(st->db, q, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(st->db));
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* One text value (or "(null)"), in a static buffer. */
static const char *
sql_text(struct store *st, const char *q)
{
    static char buf[1024];
    sqlite3_stmt *s;
    snprintf(buf, sizeof(buf), "(no row)");
    if (sqlite3_prepare_v2(st->db, q, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(st->db));
    if (sqlite3_step(s) == SQLITE_ROW)
        snprintf(buf, sizeof(buf), "%s",
                 sqlite3_column_type(s, 0) == SQLITE_NULL
                     ? "(null)"
                     : (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return buf;
}

/* The state of customer `cid`'s delivery, in a static buffer. */
static const char *
state_of(struct store *st, int cid)
{
    char q[128];
    snprintf(q, sizeof(q), "SELECT state FROM deliveries WHERE customer_id = %d", cid);
    return sql_text(st, q);
}

static int64_t
delivery_of(struct store *st, int cid)
{
    char q[128];
    snprintf(q, sizeof(q), "SELECT id FROM deliveries WHERE customer_id = %d", cid);
    return sql_int(st, q);
}

static const char yaml[] = "channels:\n"
                           "  email:\n"
                           "    transport: spool\n"
                           "    from: \"Shop <shop@example.com>\"\n";

static const char birthday_rule[] = "name: bday\n"
                                    "trigger: { anniversary: birthday, at: \"09:00\" }\n"
                                    "audience: email is not null and consents('email')\n"
                                    "actions:\n"
                                    "  - email: { template: bday }\n";

/* The clock: 10:00 UTC on the day of the birthdays. */
#define NOW "2027-03-10T10:00:00Z"

static int
setup(void **state)
{
    struct tdaemon *t = tdaemon_new("dispatch", yaml, iso(NOW));
    tdaemon_rules(t, "bday.yaml", birthday_rule, "bday.subject", "Happy birthday, {{first_name}}\n",
                  "bday.txt", "Dear {{first_name}}, happy birthday!\n", (const char *)NULL);
    tdaemon_load(t);
    sql(t->d.st, "INSERT INTO customers (id, ext_id, first_name, email, birthday, tz) VALUES"
                 " (1, 'c1', 'Li', 'li@example.com', '1990-03-10', 'Asia/Shanghai'),"
                 " (2, 'c2', 'Ann', 'ann@example.com', '1988-03-10', 'UTC'),"
                 " (3, 'c3', 'Cy', 'cy@example.com', '1990-03-11', 'UTC'),"
                 " (4, 'c4', 'Di', 'di@example.com', '1991-03-10', 'UTC');"
                 "INSERT INTO consents (customer_id, channel, granted) VALUES"
                 " (1, 'email', 1), (2, 'email', 1), (3, 'email', 1), (4, 'email', 1);");
    *state = t;
    return 0;
}

static int
teardown(void **state)
{
    tdaemon_free(*state);
    return 0;
}

/* Enqueues the birthday fires of 10 and 11 March, as the evaluator does:
 * customers 1, 2 and 4 are due (01:00Z and 09:00Z on the 10th), customer 3
 * only on the 11th. */
static void
enqueue(struct tdaemon *t)
{
    struct evaluator ev = {t->d.st, t->d.cfg, {NULL, false}, NULL, false};
    struct eval_stats stats = {0, 0, 0};
    const struct rule *r = ruleset_find(t->d.rs, "bday");
    assert_non_null(r);
    assert_int_equal(evaluate_window(&ev, r, iso("2027-03-09T00:00:00Z"),
                                     iso("2027-03-12T00:00:00Z"), iso(NOW), NULL, NULL, &stats),
                     0);
    assert_int_equal(stats.enqueued, 4);
    assert_int_equal(sql_int(t->d.st, "SELECT count(*) FROM deliveries WHERE state = 'pending'"),
                     4);
}

static char *
eml_path(struct tdaemon *t, int64_t id)
{
    return xasprintf("%s/email/%lld.eml", t->d.cfg->spool_dir, (long long)id);
}

/* The number of files in the email spool. */
static int
spool_files(struct tdaemon *t)
{
    char *dir = xasprintf("%s/email", t->d.cfg->spool_dir);
    DIR *dp = opendir(dir);
    struct dirent *de;
    int n = 0;
    assert_non_null(dp);
    while ((de = readdir(dp)))
        if (de->d_name[0] != '.')
            n++;
    closedir(dp);
    free(dir);
    return n;
}

/* Asserts customer cid's message is in the spool: mode 0600, addressed to
 * `to`, greeting `name`. */
static void
assert_in_spool(struct tdaemon *t, int cid, const char *to, const char *name)
{
    char *path = eml_path(t, delivery_of(t->d.st, cid)), *text = NULL, *subject;
    size_t len = 0;
    struct stat sb;
    if (stat(path, &sb) < 0)
        fail_msg("%s: %s", path, strerror(errno));
    assert_int_equal(sb.st_mode & 07777, 0600);
    assert_int_equal(read_file(path, &text, &len), 0);
    assert_non_null(strstr(text, to));
    subject = xasprintf("Happy birthday, %s", name);
    assert_non_null(strstr(text, subject));
    free(subject);
    free(text);
    free(path);
}

static bool
journal_exists(struct tdaemon *t, int n)
{
    char *p = xasprintf("%s.sent.%d", t->d.cfg->database, n);
    bool yes = access(p, F_OK) == 0;
    free(p);
    return yes;
}

/* ---- tests ----------------------------------------------------------- */

static void
due_rows_become_one_private_eml_each_sent_once_and_counted(void **state)
{
    struct tdaemon *t = *state;
    struct store *st = t->d.st;
    struct nerr err;
    nerr_clear(&err);
    enqueue(t);
    /* Customer 4 unsubscribes after the fire was enqueued. */
    sql(st, "UPDATE consents SET granted = 0 WHERE customer_id = 4");

    assert_int_equal(dispatch_open(&t->d, &err), 0);
    assert_true(t->d.nchans >= 1);
    /* One journal per session, there while dispatch is open. */
    for (int i = 0; i < t->d.nchans; i++)
        assert_true(journal_exists(t, i));
    tdaemon_settle(t);

    assert_string_equal(state_of(st, 1), "sent");
    assert_string_equal(state_of(st, 2), "sent");
    assert_string_equal(state_of(st, 3), "pending"); /* due tomorrow */
    assert_string_equal(state_of(st, 4), "suppressed");
    assert_non_null(strstr(sql_text(st, "SELECT last_error FROM deliveries WHERE customer_id = 4"),
                           "no consent for email"));
    assert_in_spool(t, 1, "li@example.com", "Li");
    assert_in_spool(t, 2, "ann@example.com", "Ann");
    assert_int_equal(spool_files(t), 2);
    assert_int_equal(
        sql_int(st, "SELECT count(*) FROM timeline WHERE kind = 'sent' AND customer_id = 1"), 1);
    assert_int_equal(
        sql_int(st, "SELECT count(*) FROM timeline WHERE kind = 'sent' AND customer_id = 2"), 1);
    assert_int_equal(sql_int(st, "SELECT count(*) FROM timeline WHERE kind = 'sent'"), 2);
    assert_string_equal(sql_text(st, "SELECT detail FROM timeline WHERE customer_id = 2 AND kind = "
                                     "'sent'"),
                        "email bday (birthday:2027)");
    assert_int_equal(sql_int(st, "SELECT sent_at FROM deliveries WHERE customer_id = 1"), iso(NOW));
    assert_int_equal(t->d.sent_total, 2);
    assert_int_equal(t->d.failed_total, 0);
    assert_int_equal(t->d.jobs, 0);

    /* Dispatching again sends nothing twice. */
    tdaemon_settle(t);
    assert_int_equal(t->d.sent_total, 2);
    assert_int_equal(spool_files(t), 2);
    assert_int_equal(sql_int(st, "SELECT count(*) FROM timeline WHERE kind = 'sent'"), 2);

    /* The next day, customer 3's message falls due and goes. */
    clock_set(&t->d.clock, iso("2027-03-11T09:00:00Z"));
    tdaemon_settle(t);
    assert_string_equal(state_of(st, 3), "sent");
    assert_in_spool(t, 3, "cy@example.com", "Cy");
    assert_int_equal(spool_files(t), 3);
    assert_int_equal(t->d.sent_total, 3);
    assert_string_equal(state_of(st, 4), "suppressed"); /* finished: never claimed again */

    dispatch_close(&t->d);
    for (int i = 0; i < 4; i++)
        assert_false(journal_exists(t, i));
}

static void
failed_spool_write_is_retried_without_pausing_or_suppressing(void **state)
{
    struct tdaemon *t = *state;
    struct store *st = t->d.st;
    struct nerr err;
    char dir[128];
    json_t *chans;
    nerr_clear(&err);
    snprintf(dir, sizeof(dir), "%s/email", t->d.cfg->spool_dir);
    enqueue(t);
    assert_int_equal(dispatch_open(&t->d, &err), 0);
    /* A regular file where the spool directory was: every write fails
     * (ENOTDIR, whoever runs the test). */
    assert_int_equal(rmdir(dir), 0);
    free(put(t->d.cfg->spool_dir, "email", "in the way\n"));
    tdaemon_settle(t);

    assert_string_equal(state_of(st, 1), "retry");
    assert_string_equal(state_of(st, 2), "retry");
    assert_string_equal(state_of(st, 3), "pending");
    assert_string_equal(state_of(st, 4), "retry");
    assert_int_equal(sql_int(st, "SELECT attempts FROM deliveries WHERE customer_id = 1"), 1);
    assert_non_null(strstr(sql_text(st, "SELECT last_error FROM deliveries WHERE customer_id = 2"),
                           "cannot write"));
    assert_true(sql_int(st, "SELECT next_attempt_at FROM deliveries WHERE customer_id = 1") >
                iso(NOW));
    assert_int_equal(t->d.failed_total, 3);
    assert_int_equal(t->d.sent_total, 0);
    assert_int_equal(sql_int(st, "SELECT count(*) FROM timeline WHERE kind = 'sent'"), 0);
    /* Nobody's fault: no address suppressed, the channel keeps running. */
    assert_int_equal(sql_int(st, "SELECT count(*) FROM suppressions"), 0);
    chans = dispatch_channels_json(&t->d);
    assert_true(json_is_false(json_object_get(json_object_get(chans, "email"), "paused")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(chans, "email"), "transport")), "spool");
    json_decref(chans);

    /* Fixed, and past the first backoff (1 min +-20 %): all three go. */
    assert_int_equal(unlink(dir), 0);
    assert_int_equal(mkdir(dir, 0700), 0);
    clock_set(&t->d.clock, iso("2027-03-10T10:05:00Z"));
    tdaemon_settle(t);
    assert_string_equal(state_of(st, 1), "sent");
    assert_string_equal(state_of(st, 2), "sent");
    assert_string_equal(state_of(st, 4), "sent");
    assert_string_equal(state_of(st, 3), "pending");
    assert_int_equal(sql_int(st, "SELECT attempts FROM deliveries WHERE customer_id = 2"), 2);
    assert_int_equal(spool_files(t), 3);
    assert_int_equal(t->d.sent_total, 3);
    assert_int_equal(t->d.failed_total, 3);
    assert_int_equal(sql_int(st, "SELECT count(*) FROM timeline WHERE kind = 'sent'"), 3);
}

static void
check_refuses_an_unknown_transport_naming_it_and_the_choices(void **state)
{
    struct tdaemon *t = *state;
    struct config *cfg = NULL;
    struct nerr err;
    char *path = put(t->dir, "bad.yaml",
                     "spool_dir: spool\n"
                     "channels:\n"
                     "  email:\n"
                     "    transport: carrier-pigeon\n");
    nerr_clear(&err);
    assert_int_equal(config_load(path, &cfg, &err), 0);
    assert_int_equal(dispatch_check(cfg, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "unknown transport 'carrier-pigeon' for channel email"));
    assert_non_null(strstr(err.hint, "available transports:"));
    assert_non_null(strstr(err.hint, "spool"));
    assert_non_null(strstr(err.hint, "smtp"));
    assert_string_equal(err.file, path);
    assert_int_equal(err.line, 4);
    config_free(cfg);
    free(path);

    /* The configuration the other tests run with passes. */
    nerr_clear(&err);
    assert_int_equal(dispatch_check(t->d.cfg, &err), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(due_rows_become_one_private_eml_each_sent_once_and_counted,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            failed_spool_write_is_retried_without_pausing_or_suppressing, setup, teardown),
        cmocka_unit_test_setup_teardown(
            check_refuses_an_unknown_transport_naming_it_and_the_choices, setup, teardown),
    };
    int failed;
    log_set_level(3);
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    tdaemon_release_pool_threads();
    return failed;
}
