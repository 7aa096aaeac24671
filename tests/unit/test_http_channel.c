/*
 * test_http_channel.c: the http transport (channel_http.c, channel_webhook.c,
 * channel_sms_http.c) against a real local HTTP server,
 * tests/http/receiver.py, which records every request and checks Standard
 * Webhooks and Aliyun signatures with Python's own hmac, independently of
 * our C code. Covers: a concurrent, signed webhook batch under the
 * connection cap with keep-alive reuse; the classification
 * of 410, 503 + Retry-After, 429, 400, 302 (not followed), a refused and a
 * reset connection and a timeout; the generic, Twilio and Aliyun SMS
 * request shapes; E.164 normalisation, GSM-7 / UCS-2 segment counting, and
 * the settings checks of open().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "channel_http.h"
#include "util.h"

#define WEBHOOK_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define ALIYUN_SECRET "testsecret"
#define TWILIO_TOKEN "twilio-token-42"

/* The receiver shared by every test of the program. */
static struct {
    char *dir;           /* temporary directory */
    char *log;           /* the receiver's JSON-lines request log */
    char *secret;        /* webhook secret file (whsec_...) */
    char *twilio_tok;    /* Twilio auth_token_file */
    pid_t pid;           /* the receiver process */
    int port;            /* where it listens */
    char retry_date[64]; /* the HTTP-date given as Retry-After on /hook/busydate */
} R;

/* ---- helpers ---------------------------------------------------------- */

static char *repeat(const char *unit, int n);

static const char *
src_dir(void)
{
    static char dir[1024];
    const char *env = getenv("NUDGE_SRC");
    const char *tail = "/tests/unit/test_http_channel.c";
    size_t len = strlen(__FILE__);
    if (env && env[0])
        return env;
    if (len > strlen(tail) && strcmp(&__FILE__[len - strlen(tail)], tail) == 0)
        snprintf(dir, sizeof(dir), "%.*s", (int)(len - strlen(tail)), __FILE__);
    else
        snprintf(dir, sizeof(dir), ".");
    return dir;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void
write_text(const char *path, const char *text)
{
    assert_int_equal(write_file_atomic(path, text, strlen(text)), 0);
}

/* A port on 127.0.0.1 that nothing listens on (bound, then released). */
static int
dead_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Starts receiver.py with --port 0 and reads the port from its first line. */
static pid_t
start_receiver(const char *config, int *port)
{
    int fds[2];
    pid_t pid;
    char line[32];
    size_t n = 0;
    char *script = xasprintf("%s/tests/http/receiver.py", src_dir());
    char *errlog = xasprintf("%s/receiver.err", R.dir);
    if (pipe(fds) < 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        int fd = open(errlog, O_WRONLY | O_CREAT | O_APPEND, 0644);
        /* A failed assertion longjmps past the teardown: die with the test. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        if (fd >= 0)
            dup2(fd, 2);
        close(fds[0]);
        close(fds[1]);
        execl("/usr/bin/python3", "python3", script, "--port", "0", "--log", R.log, "--config",
              config, (char *)NULL);
        _exit(127);
    }
    free(script);
    free(errlog);
    close(fds[1]);
    while (pid > 0 && n + 1 < sizeof(line)) {
        struct pollfd pfd = {fds[0], POLLIN, 0};
        ssize_t got;
        if (poll(&pfd, 1, 15000) <= 0)
            break;
        got = read(fds[0], line + n, 1);
        if (got <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    close(fds[0]);
    if (parse_int_range(line, 1, 65535, port) < 0) {
        fprintf(stderr, "receiver.py did not report a port (got '%s')\n", line);
        return -1;
    }
    return pid;
}

/* Every logged request whose path starts with prefix, oldest first. */
static json_t *
requests(const char *prefix)
{
    char *text = NULL, *save = NULL;
    size_t len = 0;
    json_t *out = json_array();
    if (read_file(R.log, &text, &len) < 0)
        return out;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *e = json_loads(line, 0, NULL);
        const char *path = json_string_value(json_object_get(e, "path"));
        if (path && strncmp(path, prefix, strlen(prefix)) == 0)
            json_array_append(out, e);
        json_decref(e);
    }
    free(text);
    return out;
}

static const char *
header(const json_t *req, const char *name)
{
    return json_string_value(json_object_get(json_object_get(req, "headers"), name));
}

/* The single value of a form field (from the body, or the query for GET). */
static const char *
form(const json_t *req, const char *name)
{
    json_t *v = json_object_get(json_object_get(req, "form"), name);
    if (json_array_size(v) != 1)
        return NULL;
    return json_string_value(json_array_get(v, 0));
}

static void *
open_ok(const char *channel, json_t *settings)
{
    struct nerr err;
    void *st = NULL;
    assert_non_null(settings);
    nerr_clear(&err);
    if (channel_backend_http.open(channel, settings, &st, &err) < 0)
        fail_msg("open(%s) failed: %s (%s)", channel, err.msg, err.hint);
    json_decref(settings);
    return st;
}

/* open() must fail with a message containing want. */
static void
open_fails(const char *channel, json_t *settings, const char *want)
{
    struct nerr err;
    void *st = NULL;
    int rc;
    assert_non_null(settings);
    nerr_clear(&err);
    rc = channel_backend_http.open(channel, settings, &st, &err);
    json_decref(settings);
    if (rc == 0)
        channel_backend_http.close(st);
    assert_int_equal(rc, -EINVAL);
    assert_null(st);
    if (!strstr(err.msg, want))
        fail_msg("error '%s' does not mention '%s'", err.msg, want);
}

static char *
url(const char *path)
{
    return xasprintf("http://127.0.0.1:%d%s", R.port, path);
}

/* A webhook message; strings live in the caller's buffers. */
static struct nudge_message
hook_msg(int64_t id, const char *to, char *key, size_t keysize, const char *secret_file)
{
    struct nudge_message m;
    memset(&m, 0, sizeof(m));
    snprintf(key, keysize, "nudge-%lld", (long long)id);
    m.delivery_id = id;
    m.idempotency_key = key;
    m.rule = "winback-coupon";
    m.occurrence = "entered:2027-03-01";
    m.channel = "webhook";
    m.customer_id = "c-1";
    m.to = to;
    m.date = 1803859200 + id; /* 2027-03-01T00:00:00Z + id */
    m.payload = json_pack("{sIsssssssss{ssss}}", "delivery_id", (json_int_t)id, "idempotency_key",
                          key, "rule", "winback-coupon", "occurrence", "entered:2027-03-01",
                          "channel", "webhook", "customer", "id", "c-1", "name", "王芳 \"Fang\"");
    if (secret_file)
        json_object_set_new(m.payload, "_secret_file", json_string(secret_file));
    json_object_set_new(m.payload, "_internal", json_true());
    return m;
}

/* Sends one webhook to path with settings and returns its result. */
static struct send_result
send_one_hook(json_t *settings, const char *path, int64_t id)
{
    void *st = open_ok("webhook", settings);
    char key[40];
    char *to = url(path);
    struct nudge_message m = hook_msg(id, to, key, sizeof(key), R.secret);
    struct send_result res = {0};
    channel_backend_http.send(st, &m, 1, &res);
    channel_backend_http.close(st);
    json_decref(m.payload);
    free(to);
    return res;
}

static json_t *
hook_settings(void)
{
    return json_pack("{sssisi}", "transport", "http", "timeout", 10, "max_connections", 16);
}

/* ---- set-up ----------------------------------------------------------- */

static int
group_setup(void **state)
{
    char tmpl[] = "/tmp/nudge-http-XXXXXX";
    char *cfg;
    json_t *c, *routes;
    time_t later = time(NULL) + 600;
    struct tm tm;
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (!mkdtemp(tmpl))
        return -1;
    R.dir = xstrdup(tmpl);
    R.log = xasprintf("%s/requests.jsonl", R.dir);
    R.secret = xasprintf("%s/hook.secret", R.dir);
    R.twilio_tok = xasprintf("%s/twilio.token", R.dir);
    write_text(R.secret, "  " WEBHOOK_SECRET "\n");
    write_text(R.twilio_tok, TWILIO_TOKEN "\n");
    gmtime_r(&later, &tm);
    strftime(R.retry_date, sizeof(R.retry_date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    c = json_pack("{sssss{}}", "webhook_secret", WEBHOOK_SECRET, "aliyun_secret", ALIYUN_SECRET,
                  "routes");
    routes = json_object_get(c, "routes");
    json_object_set_new(routes, "/hook/slow", json_pack("{sf}", "delay", 0.2));
    json_object_set_new(routes, "/hook/gone", json_pack("{si}", "status", 410));
    json_object_set_new(routes, "/hook/busy",
                        json_pack("{siss}", "status", 503, "retry_after", "120"));
    json_object_set_new(routes, "/hook/busydate",
                        json_pack("{siss}", "status", 503, "retry_after", R.retry_date));
    json_object_set_new(routes, "/hook/moved",
                        json_pack("{siss}", "status", 302, "location", "/hook/target"));
    json_object_set_new(routes, "/hook/toomany",
                        json_pack("{siss}", "status", 429, "retry_after", "7"));
    json_object_set_new(routes, "/hook/reset", json_pack("{sb}", "reset", 1));
    json_object_set_new(routes, "/hook/timeout", json_pack("{sf}", "delay", 3.0));
    json_object_set_new(routes, "/hook/bad",
                        json_pack("{siss}", "status", 400, "body", "{\"error\":\"bad\"}"));
    json_object_set_new(routes, "/hook/server", json_pack("{si}", "status", 500));
    json_object_set_new(routes, "/sms/fail", json_pack("{s{ss}}", "body", "status", "fail"));
    json_object_set_new(routes, "/sms/busy", json_pack("{si}", "status", 503));
    json_object_set_new(routes, "/twilio-err",
                        json_pack("{sis{siss}}", "status", 400, "body", "code", 21211, "message",
                                  "The 'To' number is not valid."));
    json_object_set_new(routes, "/aliyun-bad",
                        json_pack("{s{ssss}}", "body", "Code", "isv.MOBILE_NUMBER_ILLEGAL",
                                  "Message", "illegal number"));
    json_object_set_new(routes, "/aliyun-busy",
                        json_pack("{s{ssss}}", "body", "Code", "isv.BUSINESS_LIMIT_CONTROL",
                                  "Message", "触发流控"));
    json_object_set_new(routes, "/aliyun-sig",
                        json_pack("{sis{ssss}}", "status", 400, "body", "Code",
                                  "SignatureDoesNotMatch", "Message",
                                  "Specified signature is not matched"));
    cfg = xasprintf("%s/receiver.json", R.dir);
    {
        char *text = json_dumps(c, JSON_INDENT(1));
        write_text(cfg, text);
        free(text);
    }
    json_decref(c);
    R.pid = start_receiver(cfg, &R.port);
    free(cfg);
    return R.pid > 0 ? 0 : -1;
}

static int
group_teardown(void **state)
{
    int status;
    (void)state;
    if (R.pid > 0) {
        kill(R.pid, SIGTERM);
        waitpid(R.pid, &status, 0);
    }
    if (R.dir && !getenv("KEEP"))
        nftw(R.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(R.dir);
    free(R.log);
    free(R.secret);
    free(R.twilio_tok);
    return 0;
}

/* ---- webhooks ------------------------------------------------------------- */

static void
webhook_batch_of_50_is_signed_concurrent_capped_and_kept_alive(void **state)
{
    enum { N = 50, N2 = 16 };
    void *st = open_ok("webhook", hook_settings());
    struct nudge_message msgs[N];
    struct send_result res[N] = {0};
    char keys[N][40], *tos[N];
    json_t *reqs, *r, *again;
    size_t i;
    double t0, elapsed;
    int ports[N];
    size_t nports = 0;
    (void)state;

    for (i = 0; i < N; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/hook/slow/%zu", i);
        tos[i] = url(path);
        msgs[i] = hook_msg(1000 + (int64_t)i, tos[i], keys[i], sizeof(keys[i]), R.secret);
    }
    t0 = now_s();
    channel_backend_http.send(st, msgs, N, res);
    elapsed = now_s() - t0;
    for (i = 0; i < N; i++) {
        if (res[i].status != SEND_OK)
            fail_msg("message %zu: status %d code %d: %s", i, res[i].status, res[i].code,
                     res[i].error);
        assert_int_equal(res[i].code, 200);
    }
    /* 50 requests of 200 ms each: one after another would take 10 s; 16 at a
     * time take 4 rounds (0.8 s); with no cap they would take 0.2 s. */
    if (elapsed >= 5.0)
        fail_msg("the batch took %.2f s: requests did not run concurrently", elapsed);
    if (elapsed < 0.75)
        fail_msg("the batch took %.2f s: more than max_connections requests ran at once", elapsed);

    reqs = requests("/hook/slow/");
    assert_int_equal(json_array_size(reqs), N);
    json_array_foreach(reqs, i, r)
    {
        const char *path = json_string_value(json_object_get(r, "path"));
        int k;
        char want_id[40], want_ts[32];
        json_t *expect;
        char *expect_body;
        bool seen = false;
        int port = (int)json_integer_value(json_object_get(r, "client_port"));
        assert_int_equal(parse_int_range(path + strlen("/hook/slow/"), 0, N - 1, &k), 0);
        snprintf(want_id, sizeof(want_id), "nudge-%d", 1000 + k);
        snprintf(want_ts, sizeof(want_ts), "%lld", (long long)msgs[k].date);
        assert_string_equal(json_string_value(json_object_get(r, "method")), "POST");
        assert_true(json_is_true(json_object_get(r, "signature_valid")));
        assert_string_equal(header(r, "webhook-id"), want_id);
        assert_string_equal(header(r, "webhook-timestamp"), want_ts);
        assert_string_equal(header(r, "content-type"), "application/json");
        assert_non_null(strstr(header(r, "webhook-signature"), "v1,"));
        assert_null(header(r, "expect"));
        /* The body is the payload minus '_' keys, compact, UTF-8 as is. */
        expect = json_deep_copy(msgs[k].payload);
        json_object_del(expect, "_secret_file");
        json_object_del(expect, "_internal");
        expect_body = json_dumps(expect, JSON_COMPACT);
        assert_string_equal(json_string_value(json_object_get(r, "body")), expect_body);
        assert_non_null(strstr(expect_body, "王芳"));
        assert_null(strstr(json_string_value(json_object_get(r, "body")), "_secret_file"));
        free(expect_body);
        json_decref(expect);
        for (size_t p = 0; p < nports; p++)
            seen |= ports[p] == port;
        if (!seen)
            ports[nports++] = port;
    }
    /* Keep-alive: 50 requests over at most 16 connections. */
    if (nports > 16)
        fail_msg("%zu connections for 50 requests with max_connections 16", nports);
    json_decref(reqs);

    /* A second batch on the same state reuses the cached connections. */
    for (i = 0; i < N2; i++) {
        char path[64];
        free(tos[i]);
        snprintf(path, sizeof(path), "/hook/slow2/%zu", i);
        tos[i] = url(path);
        msgs[i].to = tos[i];
    }
    channel_backend_http.send(st, msgs, N2, res);
    again = requests("/hook/slow2/");
    assert_int_equal(json_array_size(again), N2);
    json_array_foreach(again, i, r)
    {
        int port = (int)json_integer_value(json_object_get(r, "client_port"));
        bool seen = false;
        assert_int_equal(res[i].status, SEND_OK);
        for (size_t p = 0; p < nports; p++)
            seen |= ports[p] == port;
        if (!seen)
            fail_msg("second batch opened a new connection (port %d) instead of reusing one", port);
    }
    json_decref(again);
    channel_backend_http.close(st);
    for (i = 0; i < N; i++) {
        json_decref(msgs[i].payload);
        free(tos[i]);
    }
}

static void
webhook_id_is_stable_across_retries_and_signature_follows_timestamp(void **state)
{
    void *st = open_ok("webhook", hook_settings());
    char key[40];
    char *to = url("/hook/retry");
    struct nudge_message m = hook_msg(77, to, key, sizeof(key), R.secret);
    struct send_result res = {0};
    json_t *reqs;
    (void)state;
    channel_backend_http.send(st, &m, 1, &res);
    assert_int_equal(res.status, SEND_OK);
    m.date += 3600; /* the retry, an hour later */
    channel_backend_http.send(st, &m, 1, &res);
    assert_int_equal(res.status, SEND_OK);
    reqs = requests("/hook/retry");
    assert_int_equal(json_array_size(reqs), 2);
    assert_string_equal(header(json_array_get(reqs, 0), "webhook-id"), "nudge-77");
    assert_string_equal(header(json_array_get(reqs, 1), "webhook-id"), "nudge-77");
    assert_string_not_equal(header(json_array_get(reqs, 0), "webhook-timestamp"),
                            header(json_array_get(reqs, 1), "webhook-timestamp"));
    assert_true(json_is_true(json_object_get(json_array_get(reqs, 0), "signature_valid")));
    assert_true(json_is_true(json_object_get(json_array_get(reqs, 1), "signature_valid")));
    json_decref(reqs);
    json_decref(m.payload);
    free(to);
    channel_backend_http.close(st);
}

static void
webhook_channel_secret_file_signs_and_no_secret_means_no_signature(void **state)
{
    json_t *s = hook_settings();
    void *st;
    char key[40];
    char *to1 = url("/hook/chansecret"), *to2 = url("/hook/unsigned");
    struct nudge_message m1 = hook_msg(80, to1, key, sizeof(key), NULL);
    struct nudge_message m2 = hook_msg(81, to2, key, sizeof(key), NULL);
    struct send_result res = {0};
    json_t *reqs;
    (void)state;
    json_object_set_new(s, "secret_file", json_string(R.secret));
    st = open_ok("webhook", s);
    channel_backend_http.send(st, &m1, 1, &res);
    assert_int_equal(res.status, SEND_OK);
    channel_backend_http.close(st);
    reqs = requests("/hook/chansecret");
    assert_int_equal(json_array_size(reqs), 1);
    assert_true(json_is_true(json_object_get(json_array_get(reqs, 0), "signature_valid")));
    json_decref(reqs);

    st = open_ok("webhook", hook_settings());
    channel_backend_http.send(st, &m2, 1, &res);
    assert_int_equal(res.status, SEND_OK);
    channel_backend_http.close(st);
    reqs = requests("/hook/unsigned");
    assert_int_equal(json_array_size(reqs), 1);
    assert_null(header(json_array_get(reqs, 0), "webhook-signature"));
    /* ... and the receiver's check does say so (it can fail). */
    assert_true(json_is_false(json_object_get(json_array_get(reqs, 0), "signature_valid")));
    assert_string_equal(header(json_array_get(reqs, 0), "webhook-id"), "nudge-81");
    json_decref(reqs);
    json_decref(m1.payload);
    json_decref(m2.payload);
    free(to1);
    free(to2);
}

static void
webhook_unreadable_secret_is_transient_and_nothing_is_sent_unsigned(void **state)
{
    void *st = open_ok("webhook", hook_settings());
    char key[40], *missing = xasprintf("%s/no-such.secret", R.dir), *bad;
    char *to = url("/hook/nosecret");
    struct nudge_message m = hook_msg(90, to, key, sizeof(key), missing);
    struct send_result res = {0};
    json_t *reqs;
    (void)state;
    channel_backend_http.send(st, &m, 1, &res);
    assert_int_equal(res.status, SEND_TRANSIENT);
    assert_int_equal(res.code, -ENOENT);
    assert_non_null(strstr(res.error, "secret_file"));
    bad = xasprintf("%s/bad.secret", R.dir);
    write_text(bad, "whsec_not*base64!\n");
    json_object_set_new(m.payload, "_secret_file", json_string(bad));
    channel_backend_http.send(st, &m, 1, &res);
    assert_int_equal(res.status, SEND_TRANSIENT);
    assert_non_null(strstr(res.error, "whsec_"));
    reqs = requests("/hook/nosecret");
    assert_int_equal(json_array_size(reqs), 0);
    json_decref(reqs);
    json_decref(m.payload);
    channel_backend_http.close(st);
    free(missing);
    free(bad);
    free(to);
}

static void
webhook_410_is_permanent(void **state)
{
    struct send_result r = send_one_hook(hook_settings(), "/hook/gone", 1);
    (void)state;
    assert_int_equal(r.status, SEND_PERMANENT);
    assert_int_equal(r.code, 410);
    assert_non_null(strstr(r.error, "410"));
}

static void
webhook_503_with_retry_after_is_transient_with_retry_after(void **state)
{
    struct send_result r = send_one_hook(hook_settings(), "/hook/busy", 2);
    (void)state;
    assert_int_equal(r.status, SEND_TRANSIENT);
    assert_int_equal(r.code, 503);
    assert_int_equal(r.retry_after, 120);
}

static void
webhook_retry_after_http_date_is_relative_to_the_response(void **state)
{
    struct send_result r = send_one_hook(hook_settings(), "/hook/busydate", 3);
    (void)state;
    assert_int_equal(r.status, SEND_TRANSIENT);
    assert_int_equal(r.code, 503);
    /* The date was now + 600 s when the receiver was configured. */
    if (r.retry_after < 500 || r.retry_after > 600)
        fail_msg("Retry-After %s gave %d s", R.retry_date, r.retry_after);
}

static void
webhook_429_is_transient_and_other_4xx_permanent_5xx_transient(void **state)
{
    struct send_result r = send_one_hook(hook_settings(), "/hook/toomany", 4);
    (void)state;
    assert_int_equal(r.status, SEND_TRANSIENT);
    assert_int_equal(r.code, 429);
    assert_int_equal(r.retry_after, 7);
    r = send_one_hook(hook_settings(), "/hook/bad", 5);
    assert_int_equal(r.status, SEND_PERMANENT);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.error, "bad")); /* the response body is quoted */
    r = send_one_hook(hook_settings(), "/hook/server", 6);
    assert_int_equal(r.status, SEND_TRANSIENT);
    assert_int_equal(r.code, 500);
    assert_int_equal(r.retry_after, 0);
}

static void
webhook_302_is_permanent_and_not_followed(void **state)
{
    struct send_result r = send_one_hook(hook_settings(), "/hook/moved", 7);
    json_t *target;
    (void)state;
    assert_int_equal(r.status, SEND_PERMANENT);
    assert_int_equal(r.code, 302);
    assert_non_null(strstr(r.error, "redirects are not followed"));
    target = requests("/hook/target");
    assert_int_equal(json_array_size(target), 0);
    json_decref(target);
}

static void
webhook_connection_refused_is_transient(void **state)
{
    json_t *s = hook_settings();
    void *st = open_ok("webhook", s);
    char key[40];
    char *to = xasprintf("http://127.0.0.1:%d/hook", dead_port());
    struct nudge_message m = hook_msg(8, to, key, sizeof(key), R.secret);
    struct send_result res = {0};
    (void)state;
    channel_backend_http.send(st, &m, 1, &res);
    assert_int_equal(res.status, SEND_TRANSIENT);
    assert_int_equal(res.code, -ECONNREFUSED);
    assert_true(res.error[0] != '\0');
    channel_backend_http.close(st);
    json_decref(m.payload);
    free(to);
}

static void
webhook_connection_reset_is_transient(void **state)
{
    struct send_result r = send_one_hook(hook_settings(), "/hook/reset", 9);
    (void)state;
    assert_int_equal(r.status, SEND_TRANSIENT);
    assert_true(r.code < 0);
    assert_true(r.error[0] != '\0');
}

static void
webhook_timeout_is_transient(void **state)
{
    json_t *s = hook_settings();
    struct send_result r = {0};
    double t0 = now_s(), elapsed;
    (void)state;
    json_object_set_new(s, "timeout", json_real(1.0));
    r = send_one_hook(s, "/hook/timeout", 10);
    elapsed = now_s() - t0;
    assert_int_equal(r.status, SEND_TRANSIENT);
    assert_int_equal(r.code, -ETIMEDOUT);
    assert_true(elapsed < 2.9); /* gave up at the timeout, not at the answer */
}

static void
webhook_mixed_batch_gets_one_result_each(void **state)
{
    void *st = open_ok("webhook", hook_settings());
    const char *paths[] = {"/hook/mixed-ok", "/hook/gone", "/hook/busy", "/hook/moved"};
    enum send_status want[] = {SEND_OK, SEND_PERMANENT, SEND_TRANSIENT, SEND_PERMANENT};
    struct nudge_message m[4];
    struct send_result res[4] = {0};
    char keys[4][40], *tos[4];
    (void)state;
    for (int i = 0; i < 4; i++) {
        tos[i] = url(paths[i]);
        m[i] = hook_msg(200 + i, tos[i], keys[i], sizeof(keys[i]), R.secret);
    }
    channel_backend_http.send(st, m, 4, res);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(res[i].status, want[i]);
        json_decref(m[i].payload);
        free(tos[i]);
    }
    channel_backend_http.close(st);
}

static void
webhook_bad_url_is_permanent(void **state)
{
    void *st = open_ok("webhook", hook_settings());
    char key[40];
    struct nudge_message m = hook_msg(11, "ftp://127.0.0.1/x", key, sizeof(key), R.secret);
    struct send_result res = {0};
    (void)state;
    channel_backend_http.send(st, &m, 1, &res);
    assert_int_equal(res.status, SEND_PERMANENT);
    assert_int_equal(res.code, -EINVAL);
    channel_backend_http.close(st);
    json_decref(m.payload);
}

static void
webhook_signature_matches_the_standard_webhooks_example(void **state)
{
    /* The example of the Standard Webhooks specification. */
    unsigned char key[64];
    int keylen =
        EVP_DecodeBlock(key, (const unsigned char *)"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 32);
    char sig[128];
    const char *body = "{\"test\": 2432232314}";
    (void)state;
    assert_int_equal(keylen, 24);
    assert_int_equal(webhook_signature(key, 24, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                                       strlen(body), sig, sizeof(sig)),
                     0);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

static void
classify_error_maps_bare_codes(void **state)
{
    (void)state;
    assert_int_equal(channel_backend_http.classify_error(200), SEND_OK);
    assert_int_equal(channel_backend_http.classify_error(410), SEND_PERMANENT);
    assert_int_equal(channel_backend_http.classify_error(404), SEND_PERMANENT);
    assert_int_equal(channel_backend_http.classify_error(302), SEND_PERMANENT);
    assert_int_equal(channel_backend_http.classify_error(429), SEND_TRANSIENT);
    assert_int_equal(channel_backend_http.classify_error(503), SEND_TRANSIENT);
    assert_int_equal(channel_backend_http.classify_error(-ECONNREFUSED), SEND_TRANSIENT);
    assert_int_equal(channel_backend_http.classify_error(-EINVAL), SEND_PERMANENT);
}

/* ---- SMS ----------------------------------------------------------------- */

static struct nudge_message
sms_msg(int64_t id, const char *to, const char *text, char *key, size_t keysize)
{
    struct nudge_message m;
    memset(&m, 0, sizeof(m));
    snprintf(key, keysize, "nudge-%lld", (long long)id);
    m.delivery_id = id;
    m.idempotency_key = key;
    m.rule = "spring-festival-offer";
    m.occurrence = "spring-festival:2027";
    m.channel = "sms";
    m.customer_id = "c-9";
    m.to = to;
    m.text = text;
    m.date = 1803859200;
    return m;
}

static struct send_result
send_sms(json_t *settings, const char *to, const char *text, int64_t id)
{
    void *st = open_ok("sms", settings);
    char key[40];
    struct nudge_message m = sms_msg(id, to, text, key, sizeof(key));
    struct send_result res = {0};
    channel_backend_http.send(st, &m, 1, &res);
    channel_backend_http.close(st);
    return res;
}

static void
sms_generic_form_post_fills_placeholders(void **state)
{
    char *u = url("/sms/form?ref={{id}}&n={{to}}");
    json_t *s = json_pack("{sssssssssss{ssss}s{sssssssssssbsi}s{s[iii]ssss}}", "transport", "http",
                          "provider", "generic", "url", u, "default_country_code", "1", "from",
                          "Shop", "headers", "X-Api-Key", "k123", "X-Tenant", "t1", "body", "to",
                          "{{to}}", "msg", "{{ text }}", "sender", "{{from}}", "ref", "{{id}}",
                          "parts", "{{segments}}", "flag", 1, "n", 5, "success", "status", 200, 201,
                          202, "json_field", "status", "json_value", "ok");
    const char *text = "Hi Fang & co = 100% off? 😀";
    struct send_result r = {0};
    json_t *reqs, *q;
    (void)state;
    free(u);
    r = send_sms(s, "(617) 555-0180", text, 300);
    if (r.status != SEND_OK)
        fail_msg("status %d: %s", r.status, r.error);
    reqs = requests("/sms/form");
    assert_int_equal(json_array_size(reqs), 1);
    q = json_array_get(reqs, 0);
    assert_string_equal(json_string_value(json_object_get(q, "method")), "POST");
    assert_string_equal(header(q, "content-type"), "application/x-www-form-urlencoded");
    assert_string_equal(header(q, "x-api-key"), "k123");
    assert_string_equal(header(q, "x-tenant"), "t1");
    assert_string_equal(header(q, "idempotency-key"), "nudge-300");
    assert_string_equal(json_string_value(json_object_get(q, "query")),
                        "ref=nudge-300&n=%2B16175550180");
    assert_string_equal(form(q, "to"), "+16175550180");
    assert_string_equal(form(q, "msg"), text);
    assert_string_equal(form(q, "sender"), "Shop");
    assert_string_equal(form(q, "ref"), "nudge-300");
    assert_string_equal(form(q, "parts"), "1");
    assert_string_equal(form(q, "flag"), "true");
    assert_string_equal(form(q, "n"), "5");
    json_decref(reqs);
}

static void
sms_generic_json_body_nests_and_counts_segments(void **state)
{
    char *u = url("/sms/json");
    json_t *s =
        json_pack("{ssssssssss s{s{ss}sss[ss]ssss}}", "transport", "http", "provider", "generic",
                  "url", u, "default_country_code", "86", "body_format", "json", "body",
                  "recipient", "number", "{{to}}", "text", "{{text}}", "tags", "nudge", "{{id}}",
                  "segments", "{{segments}}", "note", "to {{to}}: {{text}}");
    /* 71 Chinese characters: UCS-2, two segments. */
    char *text = repeat("春", 71);
    struct send_result r = {0};
    json_t *reqs, *j;
    (void)state;
    free(u);
    r = send_sms(s, "139 1234 5678", text, 301);
    if (r.status != SEND_OK)
        fail_msg("status %d: %s", r.status, r.error);
    reqs = requests("/sms/json");
    assert_int_equal(json_array_size(reqs), 1);
    assert_string_equal(header(json_array_get(reqs, 0), "content-type"), "application/json");
    j = json_object_get(json_array_get(reqs, 0), "json");
    assert_non_null(j);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "recipient"), "number")),
        "+8613912345678");
    assert_string_equal(json_string_value(json_object_get(j, "text")), text);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "tags"), 1)),
                        "nudge-301");
    assert_string_equal(json_string_value(json_object_get(j, "segments")), "2");
    assert_non_null(strstr(json_string_value(json_object_get(j, "note")), "to +8613912345678: "));
    json_decref(reqs);
    free(text);
}

static void
sms_generic_get_puts_fields_in_the_query(void **state)
{
    char *u = url("/sms/get?key=abc");
    json_t *s = json_pack("{sssssssssss{ssss}}", "transport", "http", "provider", "generic", "url",
                          u, "method", "GET", "default_country_code", "44", "body", "dest",
                          "{{to}}", "txt", "{{text}}");
    struct send_result r = {0};
    json_t *reqs, *q;
    (void)state;
    free(u);
    r = send_sms(s, "07911 123456", "Hello [world]", 302);
    assert_int_equal(r.status, SEND_OK);
    reqs = requests("/sms/get");
    assert_int_equal(json_array_size(reqs), 1);
    q = json_array_get(reqs, 0);
    assert_string_equal(json_string_value(json_object_get(q, "method")), "GET");
    assert_string_equal(form(q, "key"), "abc");
    assert_string_equal(form(q, "dest"), "+447911123456");
    assert_string_equal(form(q, "txt"), "Hello [world]");
    assert_string_equal(json_string_value(json_object_get(q, "body")), "");
    json_decref(reqs);
}

static void
sms_generic_success_check_and_http_errors(void **state)
{
    char *fail_url = url("/sms/fail"), *busy_url = url("/sms/busy");
    json_t *s1 =
        json_pack("{sssssss{ssss}}", "transport", "http", "url", fail_url, "default_country_code",
                  "1", "success", "json_field", "status", "json_value", "ok");
    json_t *s2 =
        json_pack("{ssssss}", "transport", "http", "url", busy_url, "default_country_code", "1");
    json_t *s3 = json_pack("{sssssss{s[i]}}", "transport", "http", "url", busy_url,
                           "default_country_code", "1", "success", "status", 202);
    struct send_result r = {0};
    (void)state;
    r = send_sms(s1, "6175550180", "x", 303);
    assert_int_equal(r.status, SEND_PERMANENT);
    assert_non_null(strstr(r.error, "\"fail\""));
    r = send_sms(s2, "6175550180", "x", 304);
    assert_int_equal(r.status, SEND_TRANSIENT);
    assert_int_equal(r.code, 503);
    r = send_sms(s3, "6175550180", "x", 305);
    assert_int_equal(r.status, SEND_TRANSIENT); /* 503 is not listed: HTTP rules apply */
    free(fail_url);
    free(busy_url);
}

static void
sms_invalid_number_is_permanent_and_not_sent(void **state)
{
    char *u = url("/sms/invalid");
    json_t *s = json_pack("{ssssss}", "transport", "http", "url", u, "default_country_code", "1");
    struct send_result r = {0};
    json_t *reqs;
    (void)state;
    free(u);
    r = send_sms(s, "555-CALL-NOW", "x", 306);
    assert_int_equal(r.status, SEND_PERMANENT);
    assert_int_equal(r.code, -EINVAL);
    assert_non_null(strstr(r.error, "invalid phone number"));
    reqs = requests("/sms/invalid");
    assert_int_equal(json_array_size(reqs), 0);
    json_decref(reqs);
}

static void
sms_twilio_posts_form_with_basic_auth_and_idempotency(void **state)
{
    char *base = url("/twilio");
    json_t *s = json_pack("{ssssssssssssss}", "transport", "http", "provider", "twilio", "base_url",
                          base, "account_sid", "AC0123abc", "auth_token_file", R.twilio_tok, "from",
                          "+15005550006", "default_country_code", "1");
    struct send_result r = {0};
    json_t *reqs, *q;
    unsigned char b64[128];
    char *auth;
    (void)state;
    free(base);
    r = send_sms(s, "+1 (617) 555-0180", "Your code: 1234 — thanks", 400);
    if (r.status != SEND_OK)
        fail_msg("status %d: %s", r.status, r.error);
    assert_int_equal(r.code, 201);
    reqs = requests("/twilio/");
    assert_int_equal(json_array_size(reqs), 1);
    q = json_array_get(reqs, 0);
    assert_string_equal(json_string_value(json_object_get(q, "path")),
                        "/twilio/2010-04-01/Accounts/AC0123abc/Messages.json");
    assert_string_equal(json_string_value(json_object_get(q, "method")), "POST");
    assert_string_equal(form(q, "To"), "+16175550180");
    assert_string_equal(form(q, "From"), "+15005550006");
    assert_string_equal(form(q, "Body"), "Your code: 1234 — thanks");
    EVP_EncodeBlock(b64, (const unsigned char *)"AC0123abc:" TWILIO_TOKEN,
                    (int)strlen("AC0123abc:" TWILIO_TOKEN));
    auth = xasprintf("Basic %s", b64);
    assert_string_equal(header(q, "authorization"), auth);
    assert_string_equal(header(q, "i-twilio-idempotency-token"), "nudge-400");
    assert_string_equal(header(q, "idempotency-key"), "nudge-400");
    free(auth);
    json_decref(reqs);
}

static void
sms_twilio_error_quotes_twilio_code(void **state)
{
    char *base = url("/twilio-err");
    json_t *s = json_pack("{ssssssssssss}", "transport", "http", "provider", "twilio", "base_url",
                          base, "account_sid", "AC1", "auth_token", "tok", "from", "MG123");
    struct send_result r = {0};
    json_t *reqs;
    (void)state;
    free(base);
    r = send_sms(s, "+16175550180", "x", 401);
    assert_int_equal(r.status, SEND_PERMANENT);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.error, "21211"));
    reqs = requests("/twilio-err/");
    assert_int_equal(json_array_size(reqs), 1);
    assert_string_equal(form(json_array_get(reqs, 0), "MessagingServiceSid"), "MG123");
    assert_null(form(json_array_get(reqs, 0), "From"));
    json_decref(reqs);
}

static json_t *
aliyun_settings(const char *path)
{
    char *base = url(path);
    json_t *s =
        json_pack("{ssssssssssssssss}", "transport", "http", "provider", "aliyun", "base_url", base,
                  "access_key_id", "LTAI4testkey", "access_key_secret", ALIYUN_SECRET, "sign_name",
                  "阿里云短信测试", "template_code", "SMS_154950909", "default_country_code", "86");
    free(base);
    return s;
}

static void
sms_aliyun_sendsms_is_signed_per_the_rpc_scheme(void **state)
{
    const char *text = "【Shop】王芳，新春快乐！凭券 SPRING-8 享八折。回T退订 ~*+/ &=";
    struct send_result r = send_sms(aliyun_settings("/aliyun"), "+86 139-1234-5678", text, 500);
    json_t *reqs, *q, *tp;
    (void)state;
    if (r.status != SEND_OK)
        fail_msg("status %d: %s", r.status, r.error);
    reqs = requests("/aliyun/");
    assert_int_equal(json_array_size(reqs), 1);
    q = json_array_get(reqs, 0);
    assert_string_equal(json_string_value(json_object_get(q, "method")), "POST");
    assert_true(json_is_true(json_object_get(q, "aliyun_signature_valid")));
    assert_string_equal(form(q, "Action"), "SendSms");
    assert_string_equal(form(q, "Version"), "2017-05-25");
    assert_string_equal(form(q, "PhoneNumbers"), "8613912345678");
    assert_string_equal(form(q, "SignName"), "阿里云短信测试");
    assert_string_equal(form(q, "TemplateCode"), "SMS_154950909");
    assert_string_equal(form(q, "AccessKeyId"), "LTAI4testkey");
    assert_string_equal(form(q, "SignatureMethod"), "HMAC-SHA1");
    assert_string_equal(form(q, "SignatureVersion"), "1.0");
    assert_string_equal(form(q, "OutId"), "nudge-500");
    assert_int_equal(strlen(form(q, "SignatureNonce")), 32);
    assert_int_equal(strlen(form(q, "Timestamp")), strlen("2027-02-03T02:00:00Z"));
    tp = json_loads(form(q, "TemplateParam"), 0, NULL);
    assert_non_null(tp);
    assert_string_equal(json_string_value(json_object_get(tp, "text")), text);
    assert_string_equal(header(q, "idempotency-key"), "nudge-500");
    json_decref(tp);
    json_decref(reqs);
}

static void
sms_aliyun_wrong_secret_fails_the_receivers_check(void **state)
{
    /* The check in receiver.py can fail: a different secret does. */
    json_t *s = aliyun_settings("/aliyun-wrong");
    json_t *reqs;
    (void)state;
    json_object_set_new(s, "access_key_secret", json_string("not-the-secret"));
    send_sms(s, "13912345678", "x", 501);
    reqs = requests("/aliyun-wrong/");
    assert_int_equal(json_array_size(reqs), 1);
    assert_true(json_is_false(json_object_get(json_array_get(reqs, 0), "aliyun_signature_valid")));
    json_decref(reqs);
}

static void
sms_aliyun_codes_decide_permanent_or_transient(void **state)
{
    struct send_result r = {0};
    (void)state;
    r = send_sms(aliyun_settings("/aliyun-bad"), "13912345678", "x", 502);
    assert_int_equal(r.status, SEND_PERMANENT);
    assert_non_null(strstr(r.error, "isv.MOBILE_NUMBER_ILLEGAL"));
    r = send_sms(aliyun_settings("/aliyun-busy"), "13912345678", "x", 503);
    assert_int_equal(r.status, SEND_TRANSIENT);
    assert_non_null(strstr(r.error, "BUSINESS_LIMIT_CONTROL"));
    r = send_sms(aliyun_settings("/aliyun-sig"), "13912345678", "x", 504);
    assert_int_equal(r.status, SEND_TRANSIENT);
    assert_int_equal(r.code, 400);
}

/* ---- E.164 and segments --------------------------------------------------- */

static void
e164_normalises_what_people_write(void **state)
{
    static const struct {
        const char *in, *cc, *out;
    } ok[] = {
        {"+86 139-1234-5678", NULL, "+8613912345678"},
        {"+86 139-1234-5678", "1", "+8613912345678"},
        {"(617) 555-0180", "1", "+16175550180"},
        {"1-617-555-0180", "1", "+16175550180"},
        {"617.555.0180", "1", "+16175550180"},
        {"011 86 139 1234 5678", "1", "+8613912345678"},
        {"139 1234 5678", "86", "+8613912345678"},
        {"8613912345678", "86", "+8613912345678"},
        {"0086 13912345678", "86", "+8613912345678"},
        {"010 6552 9988", "86", "+861065529988"},
        {"07911 123456", "44", "+447911123456"},
        {"+44 (0)20 7946 0958", NULL, "+442079460958"},
        {"0044 20 7946 0958", "1", "+442079460958"},
        {"  +49 30 901820", NULL, "+4930901820"},
    };
    static const struct {
        const char *in, *cc;
    } bad[] = {
        {"(617) 555-0180", NULL}, /* no country code known */
        {"", "1"},
        {"+", NULL},
        {"12345", "1"},
        {"+1 555 0180", NULL},      /* too short for NANP */
        {"(017) 555-0180", "1"},    /* NPA cannot start with 0 */
        {"(617) 155-0180", "1"},    /* NXX cannot start with 1 */
        {"+86 139 1234 567", NULL}, /* a digit short */
        {"+86 1391 2345 6789", NULL},
        {"555-CALL-NOW", "1"},
        {"+1 617 555 0180 x12", NULL},
        {"++16175550180", NULL},
        {"+0 123 456 789", NULL},
        {"+1234567890123456", NULL}, /* 16 digits */
    };
    char out[32];
    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int rc = sms_normalize_e164(ok[i].in, ok[i].cc, out, sizeof(out));
        if (rc != 0 || strcmp(out, ok[i].out) != 0)
            fail_msg("'%s' (cc %s): rc %d, got '%s', want '%s'", ok[i].in,
                     ok[i].cc ? ok[i].cc : "-", rc, rc ? "" : out, ok[i].out);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = sms_normalize_e164(bad[i].in, bad[i].cc, out, sizeof(out));
        if (rc != -EINVAL)
            fail_msg("'%s' (cc %s) should be invalid, got rc %d '%s'", bad[i].in,
                     bad[i].cc ? bad[i].cc : "-", rc, rc ? "" : out);
    }
    assert_int_equal(sms_normalize_e164("+8613912345678", NULL, out, 10), -ENOSPC);
}

static char *
repeat(const char *unit, int n)
{
    struct sbuf b;
    sbuf_init(&b);
    sbuf_adds(&b, "");
    for (int i = 0; i < n; i++)
        sbuf_adds(&b, unit);
    return sbuf_steal(&b);
}

static void
check_segments(const char *unit, int n, int want, bool want_ucs2)
{
    char *s = repeat(unit, n);
    bool ucs2 = !want_ucs2;
    int got = sms_segments(s, &ucs2);
    if (got != want || ucs2 != want_ucs2)
        fail_msg("%d x '%s': %d segments (%s), want %d (%s)", n, unit, got,
                 ucs2 ? "UCS-2" : "GSM-7", want, want_ucs2 ? "UCS-2" : "GSM-7");
    free(s);
}

static void
segments_count_gsm7_and_ucs2(void **state)
{
    bool ucs2;
    (void)state;
    check_segments("a", 160, 1, false);
    check_segments("a", 161, 2, false);
    check_segments("a", 306, 2, false);
    check_segments("a", 307, 3, false);
    check_segments("春", 70, 1, true);
    check_segments("春", 71, 2, true);
    check_segments("春", 134, 2, true);
    check_segments("春", 135, 3, true);
    /* Extension characters take two septets. */
    check_segments("€", 80, 1, false);
    check_segments("€", 81, 2, false);
    check_segments("{", 81, 2, false);
    /* Basic-set non-ASCII letters are one septet each. */
    check_segments("é", 160, 1, false);
    check_segments("Δ", 161, 2, false);
    /* One character outside GSM-7 makes the whole message UCS-2. */
    {
        char *a = repeat("a", 69), *t = xasprintf("%sç", a); /* ç (not Ç) is not GSM */
        assert_int_equal(sms_segments(t, &ucs2), 1);
        assert_true(ucs2);
        free(t);
        t = xasprintf("%s`", a); /* backtick is not GSM either */
        free(a);
        a = repeat("a", 70);
        free(t);
        t = xasprintf("%s`", a);
        assert_int_equal(sms_segments(t, &ucs2), 2);
        assert_true(ucs2);
        free(t);
        free(a);
    }
    /* An escape pair is never split: 152 septets + '€' makes 154 > 153. */
    {
        char *a = repeat("a", 152), *t = xasprintf("%s€%s", a, "aaaaaaaaa");
        assert_int_equal(sms_segments(t, &ucs2), 2);
        free(t);
        free(a);
        a = repeat("a", 152);
        t = xasprintf("%s€", a); /* 154 septets fit one 160-septet message */
        assert_int_equal(sms_segments(t, &ucs2), 1);
        free(t);
        free(a);
    }
    /* Emoji are two UTF-16 units. */
    check_segments("😀", 35, 1, true);
    check_segments("😀", 36, 2, true);
    assert_int_equal(sms_segments("", &ucs2), 1);
    assert_int_equal(sms_segments("\xff\xfe", &ucs2), -EINVAL);
    assert_int_equal(sms_segments("Hello", NULL), 1);
}

/* ---- settings -------------------------------------------------------------- */

static void
open_rejects_bad_settings_naming_the_key(void **state)
{
    (void)state;
    open_fails("webhook", json_pack("{sssi}", "transport", "http", "timout", 5), "timout");
    open_fails("webhook", json_pack("{ssss}", "transport", "http", "timeout", "soon"), "timeout");
    open_fails("webhook", json_pack("{sssi}", "transport", "http", "max_connections", 0),
               "max_connections");
    open_fails("webhook", json_pack("{ssss}", "transport", "http", "url", "http://x/"), "url");
    open_fails("webhook", json_pack("{ssss}", "transport", "http", "secret_file", "/nonexistent"),
               "secret_file");
    open_fails("sms", json_pack("{ss}", "transport", "http"), "url");
    open_fails("sms", json_pack("{ssss}", "transport", "http", "provider", "nexmo"), "provider");
    open_fails("sms", json_pack("{ssss}", "transport", "http", "url", "ftp://x/"), "url");
    open_fails("sms",
               json_pack("{sssss{ss}}", "transport", "http", "url", "http://x/", "body", "to",
                         "{{phone}}"),
               "{{phone}}");
    open_fails("sms",
               json_pack("{sssss{s{ss}}}", "transport", "http", "url", "http://x/", "body", "to",
                         "a", "b"),
               "body.to");
    open_fails("sms",
               json_pack("{ssssss}", "transport", "http", "url", "http://x/", "method", "PUT"),
               "method");
    open_fails("sms",
               json_pack("{sssssi}", "transport", "http", "url", "http://x/",
                         "default_country_code", 1234),
               "default_country_code");
    open_fails("sms",
               json_pack("{sssss{ss}}", "transport", "http", "url", "http://x/", "success",
                         "json_field", "status"),
               "json_value");
    open_fails("sms",
               json_pack("{ssssssss}", "transport", "http", "provider", "twilio", "auth_token", "t",
                         "from", "+15005550006"),
               "account_sid");
    open_fails("sms",
               json_pack("{ssssssss}", "transport", "http", "provider", "twilio", "account_sid",
                         "AC1", "from", "+15005550006"),
               "auth_token");
    open_fails("sms",
               json_pack("{ssssssssss}", "transport", "http", "provider", "twilio", "account_sid",
                         "AC1", "auth_token", "t", "url", "http://x/"),
               "url");
    open_fails("sms",
               json_pack("{ssssssssss}", "transport", "http", "provider", "aliyun", "access_key_id",
                         "id", "access_key_secret", "s", "sign_name", "n"),
               "template_code");
    open_fails("sms",
               json_pack("{ssssssssssssss}", "transport", "http", "provider", "aliyun",
                         "access_key_id", "id", "access_key_secret", "s", "sign_name", "n",
                         "template_code", "SMS_1", "from", "+8613912345678"),
               "from");
    open_fails("email", json_pack("{ss}", "transport", "http"), "email");
}

static void
open_ignores_daemon_keys_and_accepts_a_full_config(void **state)
{
    void *st;
    (void)state;
    st = open_ok("webhook",
                 json_pack("{sssssisssssisfss}", "transport", "http", "_file", "nudge.yaml",
                           "_line", 12, "_spool_dir", "/tmp", "user_agent", "test/1", "concurrency",
                           4, "timeout", 2.5, "proxy", "http://127.0.0.1:9"));
    channel_backend_http.close(st);
    st = open_ok("sms",
                 json_pack("{sssssssisssss{si}}", "transport", "http", "provider", "generic", "url",
                           "https://sms.example.com/{{id}}", "default_country_code", 86,
                           "body_format", "json", "from", "Shop", "success", "status", 200));
    channel_backend_http.close(st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(webhook_batch_of_50_is_signed_concurrent_capped_and_kept_alive),
        cmocka_unit_test(webhook_id_is_stable_across_retries_and_signature_follows_timestamp),
        cmocka_unit_test(webhook_channel_secret_file_signs_and_no_secret_means_no_signature),
        cmocka_unit_test(webhook_unreadable_secret_is_transient_and_nothing_is_sent_unsigned),
        cmocka_unit_test(webhook_410_is_permanent),
        cmocka_unit_test(webhook_503_with_retry_after_is_transient_with_retry_after),
        cmocka_unit_test(webhook_retry_after_http_date_is_relative_to_the_response),
        cmocka_unit_test(webhook_429_is_transient_and_other_4xx_permanent_5xx_transient),
        cmocka_unit_test(webhook_302_is_permanent_and_not_followed),
        cmocka_unit_test(webhook_connection_refused_is_transient),
        cmocka_unit_test(webhook_connection_reset_is_transient),
        cmocka_unit_test(webhook_timeout_is_transient),
        cmocka_unit_test(webhook_mixed_batch_gets_one_result_each),
        cmocka_unit_test(webhook_bad_url_is_permanent),
        cmocka_unit_test(webhook_signature_matches_the_standard_webhooks_example),
        cmocka_unit_test(classify_error_maps_bare_codes),
        cmocka_unit_test(sms_generic_form_post_fills_placeholders),
        cmocka_unit_test(sms_generic_json_body_nests_and_counts_segments),
        cmocka_unit_test(sms_generic_get_puts_fields_in_the_query),
        cmocka_unit_test(sms_generic_success_check_and_http_errors),
        cmocka_unit_test(sms_invalid_number_is_permanent_and_not_sent),
        cmocka_unit_test(sms_twilio_posts_form_with_basic_auth_and_idempotency),
        cmocka_unit_test(sms_twilio_error_quotes_twilio_code),
        cmocka_unit_test(sms_aliyun_sendsms_is_signed_per_the_rpc_scheme),
        cmocka_unit_test(sms_aliyun_wrong_secret_fails_the_receivers_check),
        cmocka_unit_test(sms_aliyun_codes_decide_permanent_or_transient),
        cmocka_unit_test(e164_normalises_what_people_write),
        cmocka_unit_test(segments_count_gsm7_and_ucs2),
        cmocka_unit_test(open_rejects_bad_settings_naming_the_key),
        cmocka_unit_test(open_ignores_daemon_keys_and_accepts_a_full_config),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
