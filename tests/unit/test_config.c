/*
 * test_config.c: nudge.yaml (model/config.c, lib/ynode.c): the defaults
 * of an empty file, every key read, relative paths taken from the file's own
 * directory, and every mistake reported as "file:line:col: error:" with the
 * source line, a caret under the offending character and a hint, while the
 * caller's configuration is left untouched.
 *
 * Files are written to a temporary directory by each test; the shipped
 * example is found through $NUDGE_SRC (set by ctest).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calendar.h"
#include "config.h"
#include "util.h"
#include "unit.h"
#include "ynode.h"

/* ---- helpers ------------------------------------------------------- */

struct fixture {
    char dir[64];
    char path[128]; /* DIR/nudge.yaml */
};

static int
setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/nudge-test-config-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/nudge.yaml", f->dir);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char p[192];
    unlink(f->path);
    snprintf(p, sizeof(p), "%s/conf/nudge.yaml", f->dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/conf", f->dir);
    rmdir(p);
    rmdir(f->dir);
    free(f);
    cal_thread_cleanup();
    return 0;
}

static void
write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static struct config *
load_ok(struct fixture *fx, const char *text)
{
    struct config *c = NULL;
    struct nerr err;
    write_file(fx->path, text, strlen(text));
    nerr_clear(&err);
    if (config_load(fx->path, &c, &err) < 0) {
        char buf[4096];
        nerr_format(&err, buf, sizeof(buf));
        fail_msg("config_load failed:\n%s", buf);
    }
    assert_non_null(c);
    return c;
}

static struct config *const UNTOUCHED = (struct config *)&put;

/* Loads text expecting an error; returns nerr_format's text (free it). */
static char *
load_bad_len(struct fixture *fx, const char *text, size_t len)
{
    struct config *c = UNTOUCHED;
    struct nerr err;
    char *buf = xmalloc(4096);
    write_file(fx->path, text, len);
    nerr_clear(&err);
    assert_int_equal(config_load(fx->path, &c, &err), -EINVAL);
    assert_ptr_equal(c, UNTOUCHED);
    nerr_format(&err, buf, 4096);
    return buf;
}

static char *
load_bad(struct fixture *fx, const char *text)
{
    return load_bad_len(fx, text, strlen(text));
}

/*
 * out is exactly "PATH:LINE:COL: error: ...MSG...\n", the source line
 * indented by four spaces, a caret under column COL, and (if hint is not
 * NULL) a hint line containing hint.
 */
static void
expect_located(const char *out, const char *path, const char *text, int line, int col,
               const char *msg, const char *hint)
{
    char *head = xasprintf("%s:%d:%d: error: ", path, line, col);
    const char *eol;
    struct sbuf want;
    if (strncmp(out, head, strlen(head)) != 0)
        fail_msg("error does not start with \"%s\":\n%s", head, out);
    eol = strchr(out, '\n');
    assert_non_null(eol);
    if (!memmem(out, (size_t)(eol - out), msg, strlen(msg)))
        fail_msg("error does not say '%s':\n%s", msg, out);
    sbuf_init(&want);
    sbuf_printf(&want, "\n    %s\n    ", line_of(text, line));
    for (int i = 1; i < col; i++)
        sbuf_addc(&want, ' ');
    sbuf_adds(&want, "^\n");
    if (strncmp(eol, want.s, want.len) != 0)
        fail_msg("the source line and caret should be\n%s\nin:\n%s", want.s, out);
    if (hint) {
        const char *h = eol + want.len, *he = strchr(h, '\n');
        if (!he || !memmem(h, (size_t)(he - h), hint, strlen(hint)))
            fail_msg("the hint does not say '%s':\n%s", hint, out);
    }
    sbuf_free(&want);
    free(head);
}

static const char *
channel_str(const struct config *c, const char *channel, const char *key)
{
    json_t *ch = json_object_get(c->channels, channel);
    json_t *v = ch ? json_object_get(ch, key) : NULL;
    return v ? json_string_value(v) : NULL;
}

/* ---- defaults and every key ---------------------------------------- */

static void
empty_file_gives_documented_defaults(void **state)
{
    struct fixture *fx = *state;
    struct config *c = load_ok(fx, "");
    char *p;
    assert_string_equal(c->file, fx->path);
    p = xasprintf("%s/nudge.db", fx->dir);
    assert_string_equal(c->database, p);
    free(p);
    p = xasprintf("%s/rules", fx->dir);
    assert_string_equal(c->rules_dir, p);
    free(p);
    p = xasprintf("%s/nudge.sock", fx->dir);
    assert_string_equal(c->admin_socket, p);
    free(p);
    p = xasprintf("%s/spool", fx->dir);
    assert_string_equal(c->spool_dir, p);
    free(p);
    assert_non_null(strstr(c->calendars_dir, "calendars"));
    assert_string_equal(c->timezone, "UTC");
    assert_int_equal(c->catch_up, 24 * 3600);
    assert_int_equal(c->log_level, 6);
    assert_false(c->feb29_mar1);
    assert_null(c->http_listen);
    assert_string_equal(c->public_url, "http://127.0.0.1:8025");
    assert_int_equal(c->dispatch.batch, 200);
    assert_int_equal(c->dispatch.concurrency, 4);
    assert_false(c->dispatch.concurrency_set); /* so the smtp transport may open 8 */
    assert_int_equal(c->dispatch.lease, 300);
    assert_int_equal(c->dispatch.lifetime, 3 * 86400);
    assert_int_equal(c->dispatch.tick, 60);
    assert_int_equal(c->policy.quiet_start, -1);
    assert_int_equal(c->policy.quiet_end, -1);
    assert_int_equal(c->policy.max_per_day, 0);
    assert_int_equal(c->policy.max_per_week, 0);
    assert_string_equal(channel_str(c, "email", "transport"), "spool");
    assert_string_equal(channel_str(c, "sms", "transport"), "spool");
    assert_string_equal(channel_str(c, "webhook", "transport"), "spool");
    assert_string_equal(channel_str(c, "task", "transport"), "task");
    config_free(c);

    /* Comments only is the same as empty. */
    c = load_ok(fx, "# nothing configured yet\n\n# really\n");
    assert_string_equal(c->timezone, "UTC");
    assert_int_equal(c->catch_up, 24 * 3600);
    config_free(c);
}

static void
every_key_is_read(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "# every key nudge.yaml knows\n"
                               "database: data/nudge.db\n"
                               "rules: my-rules\n"
                               "calendars: /opt/nudge/calendars\n"
                               "timezone: Asia/Shanghai\n"
                               "admin_socket: run/admin.sock\n"
                               "catch_up: 6h\n"
                               "log_level: debug\n"
                               "spool_dir: out/spool\n"
                               "feb29: mar1\n"
                               "http:\n"
                               "  listen: \"127.0.0.1:8099\"\n"
                               "  public_url: \"https://shop.example/u\"\n"
                               "dispatch:\n"
                               "  batch: 20\n"
                               "  concurrency: 8\n"
                               "  lease: 2m\n"
                               "  lifetime: 2d\n"
                               "  tick: 30s\n"
                               "policy:\n"
                               "  quiet_hours: { start: \"21:30\", end: \"08:00\" }\n"
                               "  max_per_day: 2\n"
                               "  max_per_week: 5\n"
                               "channels:\n"
                               "  email:\n"
                               "    transport: smtp\n"
                               "    host: 127.0.0.1\n"
                               "    port: 2525\n"
                               "    starttls: no\n"
                               "    from: \"Shop <shop@example.com>\"\n"
                               "  sms: { transport: http, url: \"http://127.0.0.1:9/sms\" }\n";
    struct config *c = load_ok(fx, text);
    json_t *email;
    char *p;

    p = xasprintf("%s/data/nudge.db", fx->dir);
    assert_string_equal(c->database, p);
    free(p);
    p = xasprintf("%s/my-rules", fx->dir);
    assert_string_equal(c->rules_dir, p);
    free(p);
    assert_string_equal(c->calendars_dir, "/opt/nudge/calendars"); /* absolute stays */
    assert_string_equal(c->timezone, "Asia/Shanghai");
    p = xasprintf("%s/run/admin.sock", fx->dir);
    assert_string_equal(c->admin_socket, p);
    free(p);
    assert_int_equal(c->catch_up, 6 * 3600);
    assert_int_equal(c->log_level, 7);
    p = xasprintf("%s/out/spool", fx->dir);
    assert_string_equal(c->spool_dir, p);
    free(p);
    assert_true(c->feb29_mar1);
    assert_string_equal(c->http_listen, "127.0.0.1:8099");
    assert_string_equal(c->public_url, "https://shop.example/u");
    assert_int_equal(c->dispatch.batch, 20);
    assert_int_equal(c->dispatch.concurrency, 8);
    assert_true(c->dispatch.concurrency_set);
    assert_int_equal(c->dispatch.lease, 120);
    assert_int_equal(c->dispatch.lifetime, 2 * 86400);
    assert_int_equal(c->dispatch.tick, 30);
    assert_int_equal(c->policy.quiet_start, 21 * 60 + 30);
    assert_int_equal(c->policy.quiet_end, 8 * 60);
    assert_int_equal(c->policy.max_per_day, 2);
    assert_int_equal(c->policy.max_per_week, 5);

    email = json_object_get(c->channels, "email");
    assert_non_null(email);
    assert_string_equal(channel_str(c, "email", "transport"), "smtp");
    assert_string_equal(channel_str(c, "email", "host"), "127.0.0.1");
    assert_int_equal(json_integer_value(json_object_get(email, "port")), 2525);
    assert_true(json_is_false(json_object_get(email, "starttls")));
    assert_string_equal(channel_str(c, "email", "from"), "Shop <shop@example.com>");
    assert_string_equal(channel_str(c, "sms", "transport"), "http");
    assert_string_equal(channel_str(c, "sms", "url"), "http://127.0.0.1:9/sms");
    /* Channels not mentioned keep their defaults. */
    assert_string_equal(channel_str(c, "webhook", "transport"), "spool");
    assert_string_equal(channel_str(c, "task", "transport"), "task");
    config_free(c);
}

static void
relative_paths_follow_a_relative_config_path(void **state)
{
    struct fixture *fx = *state;
    char cwd[PATH_MAX], sub[192], path[192];
    struct config *c = NULL;
    struct nerr err;
    static const char text[] = "database: data/n.db\nrules: ./r\n";
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(sub, sizeof(sub), "%s/conf", fx->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/conf/nudge.yaml", fx->dir);
    write_file(path, text, strlen(text));
    assert_int_equal(chdir(fx->dir), 0);
    nerr_clear(&err);
    assert_int_equal(config_load("conf/nudge.yaml", &c, &err), 0);
    assert_int_equal(chdir(cwd), 0);
    assert_string_equal(c->database, "conf/data/n.db");
    assert_string_equal(c->rules_dir, "conf/./r");
    assert_string_equal(c->admin_socket, "conf/nudge.sock");
    config_free(c);
}

static void
shipped_example_config_loads(void **state)
{
    const char *src = getenv("NUDGE_SRC");
    char *path = xasprintf("%s/contrib/nudge.yaml.example", src && *src ? src : ".");
    struct config *c = NULL;
    struct nerr err;
    (void)state;
    nerr_clear(&err);
    if (config_load(path, &c, &err) < 0) {
        char buf[4096];
        nerr_format(&err, buf, sizeof(buf));
        fail_msg("%s", buf);
    }
    assert_string_equal(c->database, "/var/lib/nudge/nudge.db");
    assert_string_equal(c->admin_socket, "/run/nudge/admin.sock");
    assert_int_equal(c->policy.quiet_start, 21 * 60);
    assert_int_equal(c->policy.quiet_end, 8 * 60);
    config_free(c);
    free(path);
}

/* ---- errors --------------------------------------------------------- */

static void
misspelt_key_suggests_the_right_one(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "timezone: UTC\ndatabse: shop.db\n";
    char *out = load_bad(fx, text);
    expect_located(out, fx->path, text, 2, 1, "unknown key 'databse'", "did you mean 'database'?");
    free(out);
}

static void
list_where_a_duration_belongs_is_a_type_error(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "catch_up: [1]\n";
    char *out = load_bad(fx, text);
    expect_located(out, fx->path, text, 1, 11, "catch_up", "30s, 5m, 24h");
    free(out);
}

static void
word_where_a_duration_belongs_is_an_error(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "log_level: info\ncatch_up: soon\n";
    char *out = load_bad(fx, text);
    expect_located(out, fx->path, text, 2, 11, "catch_up must be a duration", "30s, 5m, 24h");
    free(out);
}

static void
unknown_time_zone_is_rejected(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "database: x.db\ntimezone: Mars/Olympus\n";
    char *out = load_bad(fx, text);
    expect_located(out, fx->path, text, 2, 11, "unknown time zone 'Mars/Olympus'", "IANA");
    free(out);
}

static void
quiet_hours_out_of_range_is_rejected(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "policy:\n  quiet_hours: { start: \"25:00\", end: \"08:00\" }\n";
    char *out = load_bad(fx, text);
    expect_located(out, fx->path, text, 2, col_of(text, 2, "\"25:00\""), "quiet_hours.start",
                   "HH:MM");
    free(out);
}

static void
unknown_channel_name_suggests_the_right_one(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "channels:\n  email: { transport: spool }\n"
                               "  emial: { transport: spool }\n";
    char *out = load_bad(fx, text);
    expect_located(out, fx->path, text, 3, 3, "unknown key 'emial'", "did you mean 'email'?");
    free(out);
}

static void
channel_without_transport_is_an_error(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "channels:\n  sms:\n    url: \"http://127.0.0.1:9/sms\"\n";
    char *out = load_bad(fx, text);
    /* The channel's mapping starts on line 3. */
    expect_located(out, fx->path, text, 3, 5, "needs a transport", NULL);
    free(out);
}

static void
duplicate_key_names_the_first_one(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "timezone: UTC\ncatch_up: 1h\ntimezone: Asia/Shanghai\n";
    char *out = load_bad(fx, text);
    expect_located(out, fx->path, text, 3, 1, "duplicate key 'timezone' (first at line 1)",
                   "remove one");
    free(out);
}

static void
bad_indentation_points_at_the_offending_line(void **state)
{
    struct fixture *fx = *state;
    static const char text[] = "database: shop.db\n"
                               "dispatch:\n"
                               "  batch: 20\n"
                               " lease: 5m\n"
                               "timezone: UTC\n";
    char *out = load_bad(fx, text);
    expect_located(out, fx->path, text, 4, 2, "expected key", "indentation");
    free(out);
}

static void
non_utf8_file_is_rejected_at_the_bad_byte(void **state)
{
    struct fixture *fx = *state;
    /* Latin-1 é in a path on line 2. */
    static const char text[] = "timezone: UTC\ndatabase: caf\xe9.db\n";
    char *out = load_bad(fx, text);
    char head[256], msg[4096];
    bool utf8, located;
    snprintf(head, sizeof(head), "%s:2:14: error: ", fx->path);
    utf8 = strstr(out, "UTF-8") != NULL;
    located = !strncmp(out, head, strlen(head));
    snprintf(msg, sizeof(msg), "%s", out);
    free(out);
    if (!utf8)
        fail_msg("the error does not name UTF-8:\n%s", msg);
    if (!located)
        fail_msg("the error should start with \"%s\" (the line and column of the bad "
                 "byte):\n%s",
                 head, msg);
}

static void
other_bad_values_are_located(void **state)
{
    struct fixture *fx = *state;
    static const struct {
        const char *text;
        int line, col;
        const char *msg;
    } cases[] = {
        {"log_level: verbose\n", 1, 12, "unknown log_level 'verbose'"},
        {"feb29: mar2\n", 1, 8, "feb29 must be feb28 or mar1"},
        {"http:\n  listen: localhost\n", 2, 11, "ADDRESS:PORT"},
        {"http:\n  public_url: ftp://x\n", 2, 15, "http:// or https://"},
        {"dispatch:\n  tick: 7m\n", 2, 9, "divide an hour"},
        {"dispatch:\n  batch: 0\n", 2, 10, "out of range"},
        {"dispatch:\n  batch: many\n", 2, 10, "whole number"},
        {"policy:\n  quiet_hours: { start: \"21:00\" }\n", 2, 16, "both start and end"},
        {"database: \"\"\n", 1, 11, "must not be empty"},
        {"- database\n- rules\n", 1, 1, "must be a mapping"},
        {"channels:\n  email: spool\n", 2, 10, "must be a mapping"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = load_bad(fx, cases[i].text);
        expect_located(out, fx->path, cases[i].text, cases[i].line, cases[i].col, cases[i].msg,
                       NULL);
        free(out);
    }
}

static void
missing_file_is_an_error_naming_it(void **state)
{
    struct fixture *fx = *state;
    struct config *c = UNTOUCHED;
    struct nerr err;
    char buf[1024];
    nerr_clear(&err);
    assert_true(config_load(fx->path, &c, &err) < 0);
    assert_ptr_equal(c, UNTOUCHED);
    nerr_format(&err, buf, sizeof(buf));
    assert_non_null(strstr(buf, fx->path));
    assert_non_null(strstr(buf, "No such file"));
}

static void
parse_duration_accepts_units_and_rejects_the_rest(void **state)
{
    int64_t s = -1;
    (void)state;
    assert_int_equal(parse_duration("30s", &s), 0);
    assert_int_equal(s, 30);
    assert_int_equal(parse_duration("5m", &s), 0);
    assert_int_equal(s, 300);
    assert_int_equal(parse_duration("24h", &s), 0);
    assert_int_equal(s, 86400);
    assert_int_equal(parse_duration("3d", &s), 0);
    assert_int_equal(s, 3 * 86400);
    assert_int_equal(parse_duration("1w", &s), 0);
    assert_int_equal(s, 7 * 86400);
    assert_int_equal(parse_duration("90", &s), 0);
    assert_int_equal(s, 90);
    s = 42;
    assert_true(parse_duration("soon", &s) < 0);
    assert_true(parse_duration("", &s) < 0);
    assert_true(parse_duration("-5m", &s) < 0);
    assert_true(parse_duration("5mm", &s) < 0);
    assert_true(parse_duration("5 m", &s) < 0);
    assert_true(parse_duration("5y", &s) < 0);
    assert_int_equal(s, 42);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(empty_file_gives_documented_defaults),
        T(every_key_is_read),
        T(relative_paths_follow_a_relative_config_path),
        T(shipped_example_config_loads),
        T(misspelt_key_suggests_the_right_one),
        T(list_where_a_duration_belongs_is_a_type_error),
        T(word_where_a_duration_belongs_is_an_error),
        T(unknown_time_zone_is_rejected),
        T(quiet_hours_out_of_range_is_rejected),
        T(unknown_channel_name_suggests_the_right_one),
        T(channel_without_transport_is_an_error),
        T(duplicate_key_names_the_first_one),
        T(bad_indentation_points_at_the_offending_line),
        T(non_utf8_file_is_rejected_at_the_bad_byte),
        T(other_bad_values_are_located),
        T(missing_file_is_an_error_naming_it),
        T(parse_duration_accepts_units_and_rejects_the_rest),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
