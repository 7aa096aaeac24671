/*
 * test_admin.c: the admin socket (daemon/admin.c) on a daemon wired up as
 * main.c does it (unit_daemon.h). A real client on a thread of its own
 * connects to the Unix socket, writes request lines and reads the reply
 * lines, as nudgectl does, while the test's thread runs the daemon's loop
 * until the client is done:
 *
 *  - status answers ok with the clock, rule set, queue and channels;
 *  - an unknown command is an error naming it, with a did-you-mean when a
 *    command is close;
 *  - malformed JSON is an error saying where and what to send; the same
 *    connection, and the next one, are still served;
 *  - a request line over the size limit is refused with an error and the
 *    connection closed; the daemon serves the next connection;
 *  - the socket is 0660; a socket a live listener answers on is not taken
 *    (clear error, that listener keeps serving), a stale one is replaced, a
 *    file that is not a socket is left alone;
 *  - admin_close removes the socket file and closes every handle (the loop
 *    then closes cleanly).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "util.h"
#include "unit.h"
#include "unit_daemon.h"

/* admin.c's limit on one request line. */
#define MAX_REQUEST (64u << 20)

static const char yaml[] = "channels:\n"
                           "  email:\n"
                           "    transport: spool\n"
                           "    from: \"Shop <shop@example.com>\"\n";

static const char birthday_rule[] = "name: bday\n"
                                    "trigger: { anniversary: birthday, at: \"09:00\" }\n"
                                    "audience: email is not null and consents('email')\n"
                                    "actions:\n"
                                    "  - email: { template: bday }\n";

#define NOW "2027-03-10T10:00:00Z"

static int
setup(void **state)
{
    struct tdaemon *t = tdaemon_new("admin", yaml, iso(NOW));
    struct nerr err;
    nerr_clear(&err);
    tdaemon_rules(t, "bday.yaml", birthday_rule, "bday.subject", "Happy birthday\n", "bday.txt",
                  "Dear {{first_name}}\n", (const char *)NULL);
    tdaemon_load(t);
    if (dispatch_open(&t->d, &err) < 0)
        fail_msg("dispatch_open: %s", err.msg);
    *state = t;
    return 0;
}

static int
teardown(void **state)
{
    tdaemon_free(*state);
    return 0;
}

static void
listen_ok(struct tdaemon *t)
{
    struct nerr err;
    nerr_clear(&err);
    if (admin_listen(&t->d, &err) < 0)
        fail_msg("admin_listen: %s (%s)", err.msg, err.hint);
    assert_true(t->d.admin_open);
}

/* ---- the client thread ------------------------------------------------ */

struct client {
    const char *path;
    const char *req; /* written as is */
    size_t flood;    /* then this many bytes of 'x' and no newline */
    int want;        /* reply lines to read (fewer if the daemon closes) */
    struct sbuf in;  /* what came back */
    int lines;
    int err;       /* errno of a failed connect or read, else 0 */
    bool send_err; /* a write failed (the daemon closed the connection) */
    bool eof;      /* the daemon closed the connection */
    uv_async_t wake;
    atomic_bool done;
};

static void
send_all(struct client *c, int fd, const char *p, size_t n)
{
    while (n && !c->send_err) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            c->send_err = true;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void *
client_main(void *arg)
{
    struct client *c = arg;
    struct sockaddr_un a;
    struct timeval tv = {30, 0}; /* a daemon that never answers fails the test, not hangs it */
    char buf[65536];
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", c->path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        c->err = errno;
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    send_all(c, fd, c->req, strlen(c->req));
    if (c->flood) {
        memset(buf, 'x', sizeof(buf));
        for (size_t sent = 0; sent < c->flood && !c->send_err; sent += sizeof(buf))
            send_all(c, fd, buf, sizeof(buf));
    }
    while (c->lines < c->want) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            c->err = errno;
            break;
        }
        if (r == 0) {
            c->eof = true;
            break;
        }
        sbuf_add(&c->in, buf, (size_t)r);
        c->lines = 0;
        for (size_t i = 0; i < c->in.len; i++)
            c->lines += c->in.s[i] == '\n';
    }
out:
    if (fd >= 0)
        close(fd);
    atomic_store(&c->done, true);
    uv_async_send(&c->wake);
    return NULL;
}

static void
on_wake(uv_async_t *a)
{
    (void)a;
}

/* Runs a client that writes req (then `flood` bytes without a newline) and
 * reads `want` reply lines, while this thread runs the daemon's loop until
 * the client is done. Returns the reply lines as a JSON array (each parsed
 * line), the caller decrefs it; *client_out, if given, gets the client's
 * view of the connection. */
static json_t *
ask_raw(struct tdaemon *t, const char *path, const char *req, size_t flood, int want,
        struct client *client_out)
{
    struct client c;
    pthread_t th;
    json_t *lines = json_array();
    const char *p;
    memset(&c, 0, sizeof(c));
    c.path = path;
    c.req = req;
    c.flood = flood;
    c.want = want;
    sbuf_init(&c.in);
    atomic_init(&c.done, false);
    assert_int_equal(uv_async_init(t->d.loop, &c.wake, on_wake), 0);
    assert_int_equal(pthread_create(&th, NULL, client_main, &c), 0);
    /* The admin socket and the wake-up handle keep the loop waiting; each
     * round returns after at least one event. The bound only guards
     * against a hang. */
    for (int i = 0; i < 1000000 && !atomic_load(&c.done); i++)
        uv_run(t->d.loop, UV_RUN_ONCE);
    assert_true(atomic_load(&c.done));
    /* Joined before the handle closes: uv_async_send has returned. */
    pthread_join(th, NULL);
    uv_close((uv_handle_t *)&c.wake, NULL);
    uv_run(t->d.loop, UV_RUN_NOWAIT);
    if (c.err && c.err != ECONNRESET)
        fail_msg("client: %s", strerror(c.err));
    p = c.in.s ? c.in.s : "";
    for (const char *nl; (nl = strchr(p, '\n')); p = nl + 1) {
        json_error_t je;
        json_t *j = json_loadb(p, (size_t)(nl - p), 0, &je);
        if (!j)
            fail_msg("reply is not JSON (%s): %.*s", je.text, (int)(nl - p), p);
        json_array_append_new(lines, j);
    }
    if (*p)
        fail_msg("reply not ended by a newline: %s", p);
    sbuf_free(&c.in);
    if (client_out) {
        *client_out = c;
        memset(&client_out->in, 0, sizeof(client_out->in));
    }
    return lines;
}

/* One request line, one reply (the caller decrefs it). */
static json_t *
ask(struct tdaemon *t, const char *req)
{
    json_t *lines = ask_raw(t, t->d.cfg->admin_socket, req, 0, 1, NULL), *rep;
    assert_int_equal(json_array_size(lines), 1);
    rep = json_incref(json_array_get(lines, 0));
    json_decref(lines);
    return rep;
}

static const char *
jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (!s)
        fail_msg("no string '%s' in the reply", k);
    return s;
}

/* ---- tests ----------------------------------------------------------- */

static void
status_answers_ok_with_clock_rules_queue_and_channels(void **state)
{
    struct tdaemon *t = *state;
    json_t *rep, *email;
    listen_ok(t);
    rep = ask(t, "{\"cmd\":\"status\"}\n");
    assert_true(json_is_true(json_object_get(rep, "ok")));
    assert_string_equal(jstr(rep, "version"), NUDGE_VERSION);
    assert_true(json_is_integer(json_object_get(rep, "uptime")));
    {
        char now[32];
        time_format_iso(iso(NOW), now, sizeof(now));
        assert_string_equal(jstr(rep, "now"), now);
    }
    assert_true(json_is_true(json_object_get(rep, "frozen")));
    assert_int_equal(json_integer_value(json_object_get(rep, "rules")), 1);
    assert_int_equal(json_integer_value(json_object_get(rep, "ruleset_version")),
                     (json_int_t)t->d.rs->version);
    assert_true(json_is_null(json_object_get(rep, "last_tick"))); /* no cycle ran */
    assert_true(json_is_object(json_object_get(rep, "queue")));
    assert_int_equal(json_integer_value(json_object_get(rep, "batches_running")), 0);
    assert_int_equal(json_integer_value(json_object_get(rep, "fires")), 0);
    email = json_object_get(json_object_get(rep, "channels"), "email");
    assert_non_null(email);
    assert_string_equal(jstr(email, "transport"), "spool");
    assert_true(json_is_false(json_object_get(email, "paused")));
    assert_string_equal(jstr(rep, "database"), t->d.cfg->database);
    assert_string_equal(jstr(rep, "rules_dir"), t->d.cfg->rules_dir);
    json_decref(rep);
}

static void
unknown_command_is_an_error_naming_it_with_a_suggestion(void **state)
{
    struct tdaemon *t = *state;
    json_t *rep;
    listen_ok(t);
    rep = ask(t, "{\"cmd\":\"stauts\"}\n");
    assert_true(json_is_false(json_object_get(rep, "ok")));
    assert_string_equal(jstr(rep, "error"), "unknown command 'stauts'; did you mean 'status'?");
    json_decref(rep);

    rep = ask(t, "{\"cmd\":\"frobnicate\"}\n");
    assert_true(json_is_false(json_object_get(rep, "ok")));
    assert_non_null(strstr(jstr(rep, "error"), "unknown command 'frobnicate'"));
    assert_null(strstr(jstr(rep, "error"), "did you mean"));
    json_decref(rep);

    /* A known command with an argument of the wrong type: an error too,
     * never ignored. */
    rep = ask(t, "{\"cmd\":\"queue\",\"limit\":\"ten\"}\n");
    assert_true(json_is_false(json_object_get(rep, "ok")));
    assert_string_equal(jstr(rep, "error"), "argument 'limit' must be an integer");
    json_decref(rep);
}

static void
malformed_json_is_an_error_and_the_daemon_keeps_serving(void **state)
{
    struct tdaemon *t = *state;
    json_t *lines, *rep;
    listen_ok(t);
    /* Two lines on one connection: the bad one answered, the good one too. */
    lines =
        ask_raw(t, t->d.cfg->admin_socket, "{\"cmd\": status}\n{\"cmd\":\"help\"}\n", 0, 2, NULL);
    assert_int_equal(json_array_size(lines), 2);
    rep = json_array_get(lines, 0);
    assert_true(json_is_false(json_object_get(rep, "ok")));
    assert_non_null(strstr(jstr(rep, "error"), "bad request at column"));
    assert_non_null(strstr(jstr(rep, "error"), "send one JSON object per line"));
    rep = json_array_get(lines, 1);
    assert_true(json_is_true(json_object_get(rep, "ok")));
    assert_true(json_array_size(json_object_get(rep, "commands")) > 0);
    json_decref(lines);

    /* JSON that is not an object, and an object with no command. */
    rep = ask(t, "[1, 2]\n");
    assert_true(json_is_false(json_object_get(rep, "ok")));
    assert_non_null(strstr(jstr(rep, "error"), "not an object"));
    json_decref(rep);
    rep = ask(t, "{\"limit\": 3}\n");
    assert_true(json_is_false(json_object_get(rep, "ok")));
    assert_non_null(strstr(jstr(rep, "error"), "no \"cmd\""));
    json_decref(rep);

    /* A new connection is served as usual. */
    rep = ask(t, "{\"cmd\":\"status\"}\n");
    assert_true(json_is_true(json_object_get(rep, "ok")));
    json_decref(rep);
}

static void
request_over_the_size_limit_is_refused_and_the_connection_closed(void **state)
{
    struct tdaemon *t = *state;
    struct client c;
    json_t *lines, *rep;
    char want[128];
    listen_ok(t);
    /* A line that never ends: 64 KiB past the limit, then wait for more
     * replies than the daemon will give. */
    lines = ask_raw(t, t->d.cfg->admin_socket, "{\"cmd\":\"status\",\"pad\":\"",
                    MAX_REQUEST + 65536, 2, &c);
    assert_int_equal(json_array_size(lines), 1);
    assert_true(c.eof || c.err == ECONNRESET); /* closed after the one reply */
    rep = json_array_get(lines, 0);
    assert_true(json_is_false(json_object_get(rep, "ok")));
    snprintf(want, sizeof(want), "request larger than %u bytes", MAX_REQUEST);
    assert_non_null(strstr(jstr(rep, "error"), want));
    json_decref(lines);

    rep = ask(t, "{\"cmd\":\"status\"}\n");
    assert_true(json_is_true(json_object_get(rep, "ok")));
    json_decref(rep);
}

static void
socket_is_group_rw_and_admin_close_removes_it(void **state)
{
    struct tdaemon *t = *state;
    struct stat sb;
    listen_ok(t);
    assert_int_equal(lstat(t->d.cfg->admin_socket, &sb), 0);
    assert_true(S_ISSOCK(sb.st_mode));
    assert_int_equal(sb.st_mode & 07777, 0660);
    admin_close(&t->d);
    assert_false(t->d.admin_open);
    assert_int_equal(lstat(t->d.cfg->admin_socket, &sb), -1);
    assert_int_equal(errno, ENOENT);
    /* Closing twice is harmless (main.c closes on SIGTERM and at exit). */
    admin_close(&t->d);
}

static void
live_socket_is_not_taken_from_the_daemon_listening_on_it(void **state)
{
    struct tdaemon *t = *state, *t2;
    struct nerr err;
    struct stat before, after;
    json_t *rep;
    listen_ok(t);
    assert_int_equal(lstat(t->d.cfg->admin_socket, &before), 0);

    /* A second daemon configured with the same socket. */
    t2 = tdaemon_new("admin2", yaml, iso(NOW));
    free(t2->d.cfg->admin_socket);
    t2->d.cfg->admin_socket = xstrdup(t->d.cfg->admin_socket);
    nerr_clear(&err);
    assert_int_equal(admin_listen(&t2->d, &err), -EADDRINUSE);
    assert_false(t2->d.admin_open);
    assert_non_null(strstr(err.msg, "is in use: another nudged is listening on it"));
    assert_non_null(strstr(err.msg, t->d.cfg->admin_socket));
    assert_non_null(strstr(err.hint, "stop that daemon first"));
    /* admin_close of the one that failed must not remove the other's socket. */
    tdaemon_free(t2);

    /* The same socket file, still answering for the first daemon. */
    assert_int_equal(lstat(t->d.cfg->admin_socket, &after), 0);
    assert_int_equal(after.st_ino, before.st_ino);
    rep = ask(t, "{\"cmd\":\"status\"}\n");
    assert_true(json_is_true(json_object_get(rep, "ok")));
    json_decref(rep);
}

static void
stale_socket_is_replaced_and_other_files_are_left_alone(void **state)
{
    struct tdaemon *t = *state;
    const char *path = t->d.cfg->admin_socket;
    struct sockaddr_un a;
    struct nerr err;
    struct stat sb;
    json_t *rep;
    char *text = NULL;
    size_t len;
    int fd;

    /* A socket file nobody listens on, as a daemon that died leaves it. */
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
    assert_int_equal(lstat(path, &sb), 0);
    assert_true(S_ISSOCK(sb.st_mode));

    listen_ok(t);
    rep = ask(t, "{\"cmd\":\"status\"}\n");
    assert_true(json_is_true(json_object_get(rep, "ok")));
    json_decref(rep);
    assert_int_equal(lstat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0660);
    admin_close(&t->d);

    /* A regular file at the path is nobody's socket: refused, not removed. */
    free(put(t->dir, "nudge.sock", "not a socket\n"));
    nerr_clear(&err);
    assert_int_equal(admin_listen(&t->d, &err), -EEXIST);
    assert_false(t->d.admin_open);
    assert_non_null(strstr(err.msg, "a file that is not a socket is in the way"));
    assert_int_equal(read_file(path, &text, &len), 0);
    assert_string_equal(text, "not a socket\n");
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(status_answers_ok_with_clock_rules_queue_and_channels,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_command_is_an_error_naming_it_with_a_suggestion,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_json_is_an_error_and_the_daemon_keeps_serving,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            request_over_the_size_limit_is_refused_and_the_connection_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(socket_is_group_rw_and_admin_close_removes_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(live_socket_is_not_taken_from_the_daemon_listening_on_it,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(stale_socket_is_replaced_and_other_files_are_left_alone,
                                        setup, teardown),
    };
    int failed;
    log_set_level(3);
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    tdaemon_release_pool_threads();
    return failed;
}
