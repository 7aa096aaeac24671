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
 *  - a sender fault pauses the channel: the spool never blames the sender,
 *    so this one runs the smtp transport against a small SMTP server on
 *    127.0.0.1 in a thread of the test that refuses MAIL FROM with 5.7.1:
 *    the delivery waits (retry), nobody is suppressed, no claims during the
 *    pause, one probe message after it, a doubled pause when the probe
 *    fails too, and dispatch_resume sends it at once once the server
 *    accepts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <sys/socket.h>
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

/* ---- a sender fault over SMTP ------------------------------------------ */

/* An SMTP server on 127.0.0.1 (one session at a time): refuses MAIL FROM
 * with 550 5.7.1 (the sender's fault) until told to accept. */
struct smtpd {
    int fd;
    int port;
    pthread_t th;
    atomic_bool accept_mail;
    atomic_bool stop;
    atomic_int mail_from; /* MAIL FROM commands seen */
    atomic_int stored;    /* messages accepted */
};

static void
smtpd_say(int fd, const char *s)
{
    (void)!send(fd, s, strlen(s), MSG_NOSIGNAL);
}

static void
smtpd_session(struct smtpd *s, int fd)
{
    FILE *in = fdopen(dup(fd), "r");
    char line[2048];
    bool data = false;
    if (!in)
        return;
    smtpd_say(fd, "220 test ESMTP\r\n");
    while (fgets(line, sizeof(line), in)) {
        if (data) {
            if (!strcmp(line, ".\r\n")) {
                data = false;
                atomic_fetch_add(&s->stored, 1);
                smtpd_say(fd, "250 2.0.0 Ok: stored\r\n");
            }
            continue;
        }
        if (!strncasecmp(line, "EHLO", 4) || !strncasecmp(line, "HELO", 4))
            smtpd_say(fd, "250 test\r\n");
        else if (!strncasecmp(line, "MAIL", 4)) {
            atomic_fetch_add(&s->mail_from, 1);
            smtpd_say(fd, atomic_load(&s->accept_mail)
                              ? "250 2.1.0 Ok\r\n"
                              : "550 5.7.1 Sender address rejected: not authorised\r\n");
        } else if (!strncasecmp(line, "RCPT", 4))
            smtpd_say(fd, "250 2.1.5 Ok\r\n");
        else if (!strncasecmp(line, "DATA", 4)) {
            data = true;
            smtpd_say(fd, "354 End data with <CR><LF>.<CR><LF>\r\n");
        } else if (!strncasecmp(line, "QUIT", 4)) {
            smtpd_say(fd, "221 2.0.0 Bye\r\n");
            break;
        } else
            smtpd_say(fd, "250 2.0.0 Ok\r\n"); /* RSET, NOOP */
    }
    fclose(in);
}

static void *
smtpd_main(void *arg)
{
    struct smtpd *s = arg;
    for (;;) {
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR && !atomic_load(&s->stop))
                continue;
            break;
        }
        smtpd_session(s, fd);
        close(fd);
    }
    return NULL;
}

/* Listening before it returns: no waiting for the server to come up. */
static void
smtpd_start(struct smtpd *s)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->fd, 8), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, smtpd_main, s), 0);
}

static void
smtpd_stop(struct smtpd *s)
{
    atomic_store(&s->stop, true);
    shutdown(s->fd, SHUT_RDWR); /* wakes accept() */
    pthread_join(s->th, NULL);
    close(s->fd);
}

static json_t *
email_pause(struct tdaemon *t)
{
    json_t *chans = dispatch_channels_json(&t->d);
    json_t *e = json_incref(json_object_get(chans, "email"));
    json_decref(chans);
    assert_non_null(e);
    return e;
}

static void
sender_fault_pauses_the_channel_then_probes_then_resumes(void **state)
{
    struct smtpd srv;
    struct tdaemon *t;
    struct store *st;
    struct nerr err;
    json_t *e;
    char *yml;
    (void)state;
    memset(&srv, 0, sizeof(srv));
    smtpd_start(&srv);
    yml = xasprintf("channels:\n"
                    "  email:\n"
                    "    transport: smtp\n"
                    "    host: 127.0.0.1\n"
                    "    port: %d\n"
                    "    starttls: \"no\"\n"
                    "    from: \"Shop <shop@example.com>\"\n"
                    "    timeout: 10\n"
                    "    concurrency: 1\n"
                    "  sms: { transport: spool }\n"
                    "  webhook: { transport: spool }\n",
                    srv.port);
    t = tdaemon_new("dispatch-smtp", yml, iso(NOW));
    free(yml);
    st = t->d.st;
    tdaemon_rules(t, "bday.yaml", birthday_rule, "bday.subject", "Happy birthday, {{first_name}}\n",
                  "bday.txt", "Dear {{first_name}}, happy birthday!\n", (const char *)NULL);
    tdaemon_load(t);
    sql(st, "INSERT INTO customers (id, ext_id, first_name, email, birthday, tz) VALUES"
            " (1, 'c1', 'Li', 'li@example.com', '1990-03-10', 'Asia/Shanghai'),"
            " (2, 'c2', 'Ann', 'ann@example.com', '1988-03-10', 'UTC');"
            "INSERT INTO consents (customer_id, channel, granted) VALUES"
            " (1, 'email', 1), (2, 'email', 1);");
    {
        struct evaluator ev = {st, t->d.cfg, {NULL, false}, NULL, false};
        struct eval_stats stats = {0, 0, 0};
        assert_int_equal(evaluate_window(&ev, ruleset_find(t->d.rs, "bday"),
                                         iso("2027-03-09T00:00:00Z"), iso(NOW), iso(NOW), NULL,
                                         NULL, &stats),
                         0);
        assert_int_equal(stats.enqueued, 2);
    }
    nerr_clear(&err);
    if (dispatch_open(&t->d, &err) < 0)
        fail_msg("dispatch_open: %s", err.msg);

    /* The server refuses the sender: both wait, nobody is suppressed, the
     * channel pauses for a minute. */
    tdaemon_settle(t);
    assert_string_equal(state_of(st, 1), "retry");
    assert_string_equal(state_of(st, 2), "retry");
    assert_int_equal(sql_int(st, "SELECT count(*) FROM suppressions"), 0);
    assert_non_null(
        strstr(sql_text(st, "SELECT last_error FROM deliveries WHERE customer_id = 1"), "5.7.1"));
    assert_int_equal(t->d.sent_total, 0);
    e = email_pause(t);
    assert_true(json_is_true(json_object_get(e, "paused")));
    assert_non_null(strstr(json_string_value(json_object_get(e, "reason")), "5.7.1"));
    assert_int_equal(json_integer_value(json_object_get(e, "pauses")), 1);
    assert_string_equal(json_string_value(json_object_get(e, "until")), "2027-03-10T10:01:00Z");
    json_decref(e);
    {
        /* /metrics says so too. */
        struct sbuf m;
        sbuf_init(&m);
        dispatch_metrics(&t->d, &m);
        assert_non_null(strstr(m.s, "nudge_channel_paused{channel=\"email\"} 1"));
        sbuf_free(&m);
    }

    /* Past the rows' backoff but inside the pause: nothing is claimed. */
    {
        int tried = atomic_load(&srv.mail_from);
        clock_set(&t->d.clock, iso("2027-03-10T10:00:50Z"));
        sql(st, "UPDATE deliveries SET next_attempt_at = 0");
        tdaemon_settle(t);
        assert_int_equal(atomic_load(&srv.mail_from), tried);
        assert_int_equal(sql_int(st, "SELECT sum(attempts) FROM deliveries"), 2);

        /* The pause ran out: one probe message, refused again: the pause
         * doubles. */
        clock_set(&t->d.clock, iso("2027-03-10T10:01:00Z"));
        tdaemon_settle(t);
        assert_int_equal(atomic_load(&srv.mail_from), tried + 1);
        assert_int_equal(sql_int(st, "SELECT sum(attempts) FROM deliveries"), 3);
    }
    e = email_pause(t);
    assert_true(json_is_true(json_object_get(e, "paused")));
    assert_int_equal(json_integer_value(json_object_get(e, "pauses")), 2);
    assert_string_equal(json_string_value(json_object_get(e, "until")), "2027-03-10T10:03:00Z");
    json_decref(e);

    /* The operator fixes the server and reloads: resumed at once, the
     * waiting deliveries go now. */
    atomic_store(&srv.accept_mail, true);
    dispatch_resume(&t->d, "the test fixed the server");
    tdaemon_settle(t);
    assert_string_equal(state_of(st, 1), "sent");
    assert_string_equal(state_of(st, 2), "sent");
    assert_int_equal(atomic_load(&srv.stored), 2);
    assert_int_equal(t->d.sent_total, 2);
    assert_int_equal(sql_int(st, "SELECT count(*) FROM timeline WHERE kind = 'sent'"), 2);
    e = email_pause(t);
    assert_true(json_is_false(json_object_get(e, "paused")));
    json_decref(e);

    tdaemon_free(t); /* closes the SMTP session */
    smtpd_stop(&srv);
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
        cmocka_unit_test(sender_fault_pauses_the_channel_then_probes_then_resumes),
    };
    int failed;
    log_set_level(3);
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    tdaemon_release_pool_threads();
    return failed;
}
