/*
 * test_email.c: the email path without TLS: composing messages with mime.c
 * (decoded back with GMime's own parser) and sending batches with the smtp
 * backend to Postfix's smtp-sink, including the 4xx / 5xx / dropped
 * connection / refused connection classifications, and the settings checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <gmime/gmime.h>
#include <inttypes.h>

#include "../smtp/testutil.h"
#include "channel_email.h"
#include "mime.h"
#include "util.h"

#define SINK "/usr/sbin/smtp-sink"
#define FROM "Shop 商店 <shop@example.com>"

/* 2027-02-03T02:00:00Z, an arbitrary injected "now". */
static ntime_t
t0(void)
{
    ntime_t t;
    assert_int_equal(time_parse_iso("2027-02-03T02:00:00Z", &t), 0);
    return t;
}

static struct nudge_message
sample(int64_t id, bool marketing)
{
    struct nudge_message m = {
        .delivery_id = id,
        .idempotency_key = NULL,
        .rule = "birthday-greeting",
        .occurrence = "birthday:2027",
        .channel = "email",
        .customer_id = "c-1",
        .to = "zhang.san@example.net",
        .to_name = "张三",
        .subject = "生日快乐, 张三! Your 15% coupon",
        .text = "亲爱的张三,\n生日快乐!\nCode: BDAY-15\n",
        .html = "<p>亲爱的张三, <b>生日快乐</b>!</p>\n",
        .unsubscribe_url = marketing ? "https://shop.example.com/u/abc123?t=XyZ" : NULL,
        .marketing = marketing,
        .created_at = 0,
        .payload = NULL,
    };
    return m;
}

/* Composes m and parses the result back; the caller unrefs. */
static GMimeMessage *
compose_and_parse(const struct nudge_message *m, ntime_t date, struct sbuf *raw)
{
    struct nerr err;
    GMimeStream *stream;
    GMimeParser *parser;
    GMimeMessage *msg;
    nerr_clear(&err);
    sbuf_init(raw);
    assert_int_equal(mime_compose_email(m, FROM, NULL, date, raw, &err), 0);
    assert_non_null(raw->s);
    stream = g_mime_stream_mem_new_with_buffer(raw->s, raw->len);
    parser = g_mime_parser_new_with_stream(stream);
    msg = g_mime_parser_construct_message(parser, NULL);
    g_object_unref(parser);
    g_object_unref(stream);
    assert_non_null(msg);
    return msg;
}

/* The decoded text of a text part with CRLF turned back into LF. */
static char *
part_text(GMimeObject *obj)
{
    char *t;
    struct sbuf b;
    assert_true(GMIME_IS_TEXT_PART(obj));
    t = g_mime_text_part_get_text(GMIME_TEXT_PART(obj));
    sbuf_init(&b);
    sbuf_adds(&b, "");
    for (const char *p = t; *p; p++)
        if (*p != '\r')
            sbuf_addc(&b, *p);
    g_free(t);
    return sbuf_steal(&b);
}

static void
compose_encodes_chinese_names_and_subject_per_rfc2047(void **state)
{
    struct nudge_message m = sample(42, true);
    struct sbuf raw;
    GMimeMessage *msg = compose_and_parse(&m, t0(), &raw);
    InternetAddressList *from = g_mime_message_get_from(msg);
    InternetAddressList *to = g_mime_message_get_to(msg);
    InternetAddress *a;
    (void)state;

    /* Every byte on the wire is 7-bit: the UTF-8 lives in encoded words. */
    for (size_t i = 0; i < raw.len; i++)
        assert_true((unsigned char)raw.s[i] < 0x80);
    assert_non_null(strstr(raw.s, "\r\nSubject: =?"));
    assert_non_null(strstr(raw.s, "=?UTF-8?"));

    assert_int_equal(internet_address_list_length(from), 1);
    a = internet_address_list_get_address(from, 0);
    assert_string_equal(internet_address_get_name(a), "Shop 商店");
    assert_string_equal(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a)),
                        "shop@example.com");
    assert_int_equal(internet_address_list_length(to), 1);
    a = internet_address_list_get_address(to, 0);
    assert_string_equal(internet_address_get_name(a), "张三");
    assert_string_equal(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(a)),
                        "zhang.san@example.net");
    assert_string_equal(g_mime_message_get_subject(msg), m.subject);
    g_object_unref(msg);
    sbuf_free(&raw);
}

static void
compose_builds_alternative_with_utf8_text_and_html(void **state)
{
    struct nudge_message m = sample(42, false);
    struct sbuf raw;
    GMimeMessage *msg = compose_and_parse(&m, t0(), &raw);
    GMimeObject *body = g_mime_message_get_mime_part(msg);
    GMimeMultipart *mp;
    GMimeObject *plain, *html;
    char *t;
    (void)state;

    assert_true(GMIME_IS_MULTIPART(body));
    assert_string_equal(g_mime_content_type_get_media_subtype(g_mime_object_get_content_type(body)),
                        "alternative");
    mp = GMIME_MULTIPART(body);
    assert_int_equal(g_mime_multipart_get_count(mp), 2);
    plain = g_mime_multipart_get_part(mp, 0);
    html = g_mime_multipart_get_part(mp, 1);
    assert_true(
        g_mime_content_type_is_type(g_mime_object_get_content_type(plain), "text", "plain"));
    assert_true(g_mime_content_type_is_type(g_mime_object_get_content_type(html), "text", "html"));
    assert_string_equal(g_mime_object_get_content_type_parameter(plain, "charset"), "utf-8");
    assert_string_equal(g_mime_object_get_content_type_parameter(html, "charset"), "utf-8");
    t = part_text(plain);
    assert_string_equal(t, m.text);
    free(t);
    t = part_text(html);
    assert_string_equal(t, m.html);
    free(t);
    g_object_unref(msg);
    sbuf_free(&raw);
}

static void
compose_sends_only_text_plain_when_html_is_missing(void **state)
{
    struct nudge_message m = sample(7, false);
    struct sbuf raw;
    GMimeMessage *msg;
    GMimeObject *body;
    char *t;
    (void)state;
    m.html = NULL;
    m.text = "Plain ASCII only.\nSecond line.\n";
    msg = compose_and_parse(&m, t0(), &raw);
    body = g_mime_message_get_mime_part(msg);
    assert_false(GMIME_IS_MULTIPART(body));
    assert_true(g_mime_content_type_is_type(g_mime_object_get_content_type(body), "text", "plain"));
    assert_null(strstr(raw.s, "text/html"));
    t = part_text(body);
    assert_string_equal(t, m.text);
    free(t);
    g_object_unref(msg);
    sbuf_free(&raw);
}

static void
compose_message_id_is_stable_for_the_same_delivery(void **state)
{
    struct nudge_message a = sample(42, true), b = sample(42, true), c = sample(43, true);
    struct sbuf ra, rb, rc;
    GMimeMessage *ma, *mb, *mc;
    const char *id;
    (void)state;
    a.idempotency_key = b.idempotency_key = "nudge:42";
    c.idempotency_key = "nudge:43";
    ma = compose_and_parse(&a, t0(), &ra);
    mb = compose_and_parse(&b, t0() + 3600, &rb); /* a retry an hour later */
    mc = compose_and_parse(&c, t0(), &rc);
    id = g_mime_message_get_message_id(ma);
    assert_non_null(id);
    assert_int_equal(strncmp(id, "nudge-42-", 9), 0);
    assert_int_equal(strlen(id), strlen("nudge-42-") + 12 + strlen("@example.com"));
    assert_non_null(strstr(id, "@example.com"));
    assert_string_equal(id, g_mime_message_get_message_id(mb));
    assert_string_not_equal(id, g_mime_message_get_message_id(mc));
    assert_int_equal(strncmp(g_mime_message_get_message_id(mc), "nudge-43-", 9), 0);
    g_object_unref(ma);
    g_object_unref(mb);
    g_object_unref(mc);
    sbuf_free(&ra);
    sbuf_free(&rb);
    sbuf_free(&rc);
}

static void
compose_is_byte_identical_for_the_same_input(void **state)
{
    struct nudge_message m = sample(42, true);
    struct sbuf a, b;
    struct nerr err;
    (void)state;
    sbuf_init(&a);
    sbuf_init(&b);
    assert_int_equal(mime_compose_email(&m, FROM, "mail.example.org", t0(), &a, &err), 0);
    assert_int_equal(mime_compose_email(&m, FROM, "mail.example.org", t0(), &b, &err), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.s, b.s, a.len);
    assert_non_null(strstr(a.s, "@mail.example.org>"));
    sbuf_free(&a);
    sbuf_free(&b);
}

/* Picks one of n strings with a small deterministic generator. */
static const char *
pick(uint32_t *seed, const char *const *v, size_t n)
{
    *seed = *seed * 1103515245u + 12345u;
    return v[(*seed >> 8) % n];
}

/*
 * mime_compose_email reuses each thread's last message and writes 7bit
 * messages itself; mime_compose_email_gmime builds every message afresh and
 * lets GMime write it. Over a long run of varied messages through one warm
 * cache, both must give the same bytes: names, subjects and rules that need
 * RFC 2047 or folding, bodies that need quoted-printable or base64 (8bit,
 * long lines, "From " lines, bare CR/LF), every body shape and the marketing
 * headers switching on and off between neighbours.
 */
static void
compose_matches_gmime_writer_byte_for_byte(void **state)
{
    static const char *const tos[] = {"a@example.net", "Zhang.San+vip@Example-Shop.com",
                                      "o'neil@example.org", "x_y@mail.example.co.uk"};
    static const char *const names[] = {
        NULL,
        "",
        "Ann Lee",
        "张三",
        "Müller, Jörg",
        "\"Quoted\" Name",
        "  Spaced  Out ",
        "A very long display name that goes on and on past the folding column of headers",
        "line\nbreak",
        "=?utf-8?q?not_an_encoded_word?="};
    static const char *const subjects[] = {
        "",
        "Hi",
        "Happy birthday, Ann! A gift inside 🎂",
        "生日快乐, 张三! Your 15% coupon",
        "An ASCII subject long enough to need folding because it runs far past the seventy-six "
        "column limit that GMime folds at",
        "  padded  ",
        "tab\there",
        "=?x?",
        "Spring Festival 春节 offer: 20% off until 2027-02-17"};
    static const char *const bodies[] = {
        NULL,
        "Dear Ann,\n\nHappy birthday!\n",
        "one line, no newline",
        "CRLF\r\nlines\r\n",
        "lone\rCR and\nLF\r\n\n",
        "亲爱的张三,\n生日快乐!\nCode: BDAY-15\n",
        "From the shop: hello\nFrom here on\n",
        ".leading dot\n..two\n.\n",
        "<p>Hello <b>Ann</b></p>\n<p>Bye</p>",
        "",
        NULL, /* a line of 1200 'x': set below */
    };
    static const char *const rules[] = {NULL, "birthday-greeting", "春节-offer", "winback coupon"};
    static const char *const urls[] = {NULL, "https://shop.example.com/u/abc123?t=XyZ",
                                       "mailto:unsubscribe@example.com?subject=stop"};
    static const char *const froms[] = {FROM, "shop@example.com",
                                        "\"Shop, Inc.\" <news@example.com>"};
    char longline[1300];
    const char *body[sizeof(bodies) / sizeof(bodies[0])];
    uint32_t seed = 7;
    int direct = 0;
    (void)state;
    memset(longline, 'x', 1200);
    longline[1200] = '\n';
    longline[1201] = '\0';
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
        body[i] = bodies[i] ? bodies[i] : i ? longline : NULL;
    body[0] = NULL;
    for (int i = 0; i < 3000; i++) {
        struct nudge_message m = sample(1000 + i, false);
        const char *from = froms[i % 300 == 299 ? (i / 300) % 3 : 0];
        char key[32];
        struct sbuf a, b;
        struct nerr ea, eb;
        int ra, rb;
        m.to = pick(&seed, tos, 4);
        m.to_name = pick(&seed, names, sizeof(names) / sizeof(names[0]));
        m.subject = pick(&seed, subjects, sizeof(subjects) / sizeof(subjects[0]));
        /* Mostly the common shape, so the cache is reused in long runs. */
        if (i % 5) {
            m.text = pick(&seed, body + 1, 3);
            m.html = body[8];
        } else {
            m.text = pick(&seed, body, sizeof(body) / sizeof(body[0]));
            m.html = pick(&seed, body, sizeof(body) / sizeof(body[0]));
        }
        if (!m.text && !m.html)
            m.text = body[1];
        m.rule = pick(&seed, rules, 4);
        m.marketing = (seed >> 3) & 1;
        m.unsubscribe_url = pick(&seed, urls, 3);
        snprintf(key, sizeof(key), "k%d", i % 7);
        m.idempotency_key = i % 3 ? key : NULL;
        sbuf_init(&a);
        sbuf_init(&b);
        nerr_clear(&ea);
        nerr_clear(&eb);
        ra = mime_compose_email(&m, from, i % 2 ? NULL : "mail.example.org", t0() + i % 4, &a, &ea);
        rb = mime_compose_email_gmime(&m, from, i % 2 ? NULL : "mail.example.org", t0() + i % 4, &b,
                                      &eb);
        assert_int_equal(ra, rb);
        if (ra == 0) {
            if (a.len != b.len || memcmp(a.s, b.s, a.len) != 0)
                fail_msg("message %d differs from GMime's writer:\n--- direct ---\n%s\n--- GMime "
                         "---\n%s",
                         i, a.s, b.s);
            /* Count the messages the direct writer can have made: all 7bit. */
            if (!strstr(a.s, "quoted-printable") && !strstr(a.s, "base64"))
                direct++;
        } else {
            assert_string_equal(ea.msg, eb.msg);
        }
        sbuf_free(&a);
        sbuf_free(&b);
    }
    /* Both writers were exercised in earnest. */
    assert_true(direct > 1000);
    assert_true(direct < 2900);
}

static void
compose_adds_list_unsubscribe_only_to_marketing_mail(void **state)
{
    struct nudge_message mk = sample(1, true), care = sample(2, false);
    struct sbuf rm, rc;
    GMimeMessage *m1, *m2;
    (void)state;
    care.unsubscribe_url = "https://shop.example.com/u/should-not-appear";
    m1 = compose_and_parse(&mk, t0(), &rm);
    m2 = compose_and_parse(&care, t0(), &rc);

    assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(m1), "List-Unsubscribe"),
                        "<https://shop.example.com/u/abc123?t=XyZ>");
    assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(m1), "List-Unsubscribe-Post"),
                        "List-Unsubscribe=One-Click");
    /* Raw on the wire, not an RFC 2047 word a client could not click. */
    assert_non_null(
        strstr(rm.s, "\r\nList-Unsubscribe: <https://shop.example.com/u/abc123?t=XyZ>\r\n"));
    assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(m1), "Precedence"), "bulk");
    assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(m1), "Auto-Submitted"),
                        "auto-generated");

    assert_null(g_mime_object_get_header(GMIME_OBJECT(m2), "List-Unsubscribe"));
    assert_null(g_mime_object_get_header(GMIME_OBJECT(m2), "List-Unsubscribe-Post"));
    assert_null(g_mime_object_get_header(GMIME_OBJECT(m2), "Precedence"));
    assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(m2), "Auto-Submitted"),
                        "auto-generated");
    assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(m2), "X-Nudge-Rule"),
                        "birthday-greeting");
    assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(m2), "X-Nudge-Delivery"), "2");
    g_object_unref(m1);
    g_object_unref(m2);
    sbuf_free(&rm);
    sbuf_free(&rc);
}

static void
compose_dates_the_message_with_the_injected_time(void **state)
{
    struct nudge_message m = sample(5, false);
    struct sbuf raw;
    GMimeMessage *msg = compose_and_parse(&m, t0(), &raw);
    GDateTime *d = g_mime_message_get_date(msg);
    (void)state;
    assert_non_null(d);
    assert_int_equal(g_date_time_to_unix(d), t0());
    assert_non_null(strstr(raw.s, "Date: Wed, 03 Feb 2027 02:00:00 +0000\r\n"));
    g_object_unref(msg);
    sbuf_free(&raw);
}

static void
compose_uses_crlf_and_short_lines(void **state)
{
    struct nudge_message m = sample(9, true);
    struct sbuf raw, longtext;
    struct nerr err;
    size_t col = 0;
    (void)state;
    sbuf_init(&longtext);
    for (int i = 0; i < 300; i++)
        sbuf_adds(&longtext, "word "); /* one 1500-character line */
    m.text = longtext.s;
    sbuf_init(&raw);
    assert_int_equal(mime_compose_email(&m, FROM, NULL, t0(), &raw, &err), 0);
    for (size_t i = 0; i < raw.len; i++) {
        if (raw.s[i] == '\n') {
            assert_true(i > 0 && raw.s[i - 1] == '\r');
            col = 0;
        } else if (raw.s[i] == '\r') {
            assert_true(i + 1 < raw.len && raw.s[i + 1] == '\n');
        } else {
            assert_true(++col <= 998);
        }
    }
    assert_int_equal(memcmp(raw.s + raw.len - 2, "\r\n", 2), 0);
    sbuf_free(&raw);
    sbuf_free(&longtext);
}

static void
compose_folds_line_breaks_in_the_subject(void **state)
{
    struct nudge_message m = sample(11, false);
    struct sbuf raw;
    GMimeMessage *msg;
    (void)state;
    m.subject = "Hello\r\nBcc: victim@example.org";
    msg = compose_and_parse(&m, t0(), &raw);
    assert_string_equal(g_mime_message_get_subject(msg), "Hello Bcc: victim@example.org");
    assert_null(g_mime_object_get_header(GMIME_OBJECT(msg), "Bcc"));
    g_object_unref(msg);
    sbuf_free(&raw);
}

static void
compose_refuses_bad_addresses_urls_and_empty_bodies(void **state)
{
    struct nudge_message m;
    struct sbuf raw;
    struct nerr err;
    (void)state;
    sbuf_init(&raw);

    m = sample(1, false);
    m.to = "victim@example.org\r\nBcc: all@example.org";
    assert_int_equal(mime_compose_email(&m, FROM, NULL, t0(), &raw, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "recipient"));
    assert_int_equal(raw.len, 0);

    m = sample(1, false);
    m.to = "no-at-sign";
    assert_int_equal(mime_compose_email(&m, FROM, NULL, t0(), &raw, &err), -EINVAL);

    m = sample(1, true);
    m.unsubscribe_url = "https://x.example/u> <mailto:evil@example.org";
    assert_int_equal(mime_compose_email(&m, FROM, NULL, t0(), &raw, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "unsubscribe"));

    m = sample(1, false);
    m.text = m.html = NULL;
    assert_int_equal(mime_compose_email(&m, FROM, NULL, t0(), &raw, &err), -EINVAL);

    m = sample(1, false);
    m.subject = "\xff\xfe broken";
    assert_int_equal(mime_compose_email(&m, FROM, NULL, t0(), &raw, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "UTF-8"));
    m = sample(1, false);
    m.text = "ok\nthen \xc3\x28 broken\n";
    assert_int_equal(mime_compose_email(&m, FROM, NULL, t0(), &raw, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "text part is not valid UTF-8"));
    m = sample(1, false);
    m.text = "plain ASCII\n";
    m.html = "<p>\xe4\xb8</p>";
    assert_int_equal(mime_compose_email(&m, FROM, NULL, t0(), &raw, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "html part is not valid UTF-8"));

    m = sample(1, false);
    assert_int_equal(mime_compose_email(&m, "Shop <not an address>", NULL, t0(), &raw, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "From"));
    assert_int_equal(mime_compose_email(&m, FROM, "bad domain", t0(), &raw, &err), -EINVAL);
    sbuf_free(&raw);
}

static void
parse_mailbox_splits_names_and_addresses(void **state)
{
    char *name, *addr;
    (void)state;
    assert_int_equal(mime_parse_mailbox("Shop 商店 <shop@example.com>", &name, &addr), 0);
    assert_string_equal(name, "Shop 商店");
    assert_string_equal(addr, "shop@example.com");
    free(name);
    free(addr);
    assert_int_equal(mime_parse_mailbox("\"Doe, \\\"J\\\" <x>\" <j@example.com>", &name, &addr), 0);
    assert_string_equal(name, "Doe, \"J\" <x>");
    assert_string_equal(addr, "j@example.com");
    free(name);
    free(addr);
    assert_int_equal(mime_parse_mailbox("  bare@example.com ", &name, &addr), 0);
    assert_null(name);
    assert_string_equal(addr, "bare@example.com");
    free(addr);
    assert_int_equal(mime_parse_mailbox("a b@example.com", &name, &addr), -EINVAL);
    assert_int_equal(mime_parse_mailbox("x@-bad-.example", &name, &addr), -EINVAL);
    assert_null(name);
    assert_null(addr);
}

/* ---- smtp-sink ---------------------------------------------------------- */

/* A running smtp-sink dumping each message into dir. */
struct sink {
    char *dir; /* temporary directory, also holds the log */
    int port;  /* where it listens on 127.0.0.1 */
    pid_t pid; /* the process */
};

/* Starts smtp-sink with extra options (NULL-terminated). */
static void
sink_start(struct sink *s, ...)
{
    char *argv[32], *tmpl, *addr, *log;
    int argc = 0;
    va_list ap;
    if (access(SINK, X_OK) != 0)
        skip();
    s->dir = tu_mkdtemp("sink");
    assert_non_null(s->dir);
    s->port = tu_free_port();
    assert_true(s->port > 0);
    tmpl = xasprintf("%s/m.", s->dir);
    addr = xasprintf("127.0.0.1:%d", s->port);
    log = xasprintf("%s/sink.log", s->dir);
    argv[argc++] = (char *)SINK;
    if (geteuid() == 0) {
        argv[argc++] = (char *)"-u";
        argv[argc++] = (char *)"root";
    }
    argv[argc++] = (char *)"-d";
    argv[argc++] = tmpl;
    va_start(ap, s);
    for (char *opt; (opt = va_arg(ap, char *));)
        argv[argc++] = opt;
    va_end(ap);
    argv[argc++] = addr;
    argv[argc++] = (char *)"100";
    argv[argc] = NULL;
    s->pid = tu_spawn(argv, log);
    assert_true(s->pid > 0);
    assert_true(tu_wait_listening(s->port, 10000));
    free(tmpl);
    free(addr);
    free(log);
}

static void
sink_stop(struct sink *s)
{
    tu_stop(s->pid);
    tu_rmrf(s->dir);
    free(s->dir);
    s->pid = 0;
}

static void *
open_smtp(int port, const char *extra_key, json_t *extra_val)
{
    json_t *settings =
        json_pack("{s:s, s:s, s:i, s:s, s:s, s:i}", "transport", "smtp", "host", "127.0.0.1",
                  "port", port, "starttls", "no", "from", FROM, "timeout", 10);
    void *st = NULL;
    struct nerr err;
    nerr_clear(&err);
    if (extra_key)
        json_object_set_new(settings, extra_key, extra_val);
    assert_int_equal(channel_backend_smtp.open("email", settings, &st, &err), 0);
    json_decref(settings);
    assert_non_null(st);
    return st;
}

static void
batch(struct nudge_message *msgs, size_t n)
{
    static const char *const to[] = {"alice@example.net", "bob@example.net", "carol@example.net",
                                     "dave@example.net"};
    for (size_t i = 0; i < n; i++) {
        msgs[i] = sample((int64_t)(100 + i), i % 2 == 0);
        msgs[i].to = to[i % 4];
        msgs[i].date = t0();
    }
}

/* The dump file whose X-Rcpt-Args names rcpt, or NULL. */
static char *
sink_find(const struct sink *s, const char *rcpt, size_t *files)
{
    char **list = tu_list(s->dir, "m.", files);
    char *found = NULL, *want = xasprintf("<%s>", rcpt);
    for (size_t i = 0; list[i] && !found; i++) {
        char *text = tu_slurp(list[i]);
        char *line = text ? strstr(text, "X-Rcpt-Args: ") : NULL;
        if (line && strstr(line, want) && strstr(line, want) < strchr(line, '\n'))
            found = text;
        else
            free(text);
    }
    free(want);
    tu_free_list(list);
    return found;
}

static int
count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void
send_delivers_a_batch_over_one_session(void **state)
{
    struct sink s;
    struct nudge_message msgs[3];
    struct send_result res[3] = {0};
    void *st;
    char *log, *text;
    size_t files = 0;
    (void)state;
    /* -v logs each connection: one batch must make exactly one. */
    sink_start(&s, "-v", NULL);
    st = open_smtp(s.port, NULL, NULL);
    batch(msgs, 3);
    channel_backend_smtp.send(st, msgs, 3, res);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].status, SEND_OK);
        assert_int_equal(res[i].code / 100, 2);
        assert_string_equal(res[i].error, "");
    }
    log = xasprintf("%s/sink.log", s.dir);
    text = tu_slurp(log);
    assert_non_null(text);
    assert_int_equal(count(text, ": connect ("), 1);
    assert_int_equal(count(text, "MAIL FROM:"), 3);
    free(text);
    free(log);
    for (int i = 0; i < 3; i++) {
        char id[64];
        text = sink_find(&s, msgs[i].to, &files);
        assert_non_null(text);
        snprintf(id, sizeof(id), "Message-Id: <nudge-%" PRId64 "-", msgs[i].delivery_id);
        assert_non_null(strstr(text, id));
        assert_non_null(strstr(text, "X-Mail-Args: <shop@example.com>"));
        assert_non_null(strstr(text, "Content-Type: multipart/alternative"));
        free(text);
    }
    assert_int_equal(files, 3);
    channel_backend_smtp.close(st);
    sink_stop(&s);
}

static void
send_reports_each_message_of_a_mixed_batch(void **state)
{
    struct sink s;
    struct nudge_message msgs[3];
    struct send_result res[3] = {0};
    void *st;
    size_t files = 0;
    char *text;
    (void)state;
    sink_start(&s, NULL);
    st = open_smtp(s.port, NULL, NULL);
    batch(msgs, 3);
    msgs[1].to = "not an address";
    channel_backend_smtp.send(st, msgs, 3, res);
    assert_int_equal(res[0].status, SEND_OK);
    assert_int_equal(res[1].status, SEND_PERMANENT);
    assert_int_equal(res[1].code, -EINVAL);
    assert_non_null(strstr(res[1].error, "compose"));
    assert_int_equal(res[2].status, SEND_OK);
    text = sink_find(&s, msgs[2].to, &files);
    assert_non_null(text);
    free(text);
    assert_int_equal(files, 2);
    channel_backend_smtp.close(st);
    sink_stop(&s);
}

/* What a test reporter saw: the order of reports and, at each, how many
 * messages had reached the sink. */
struct seen {
    struct send_reporter rep;
    const struct sink *sink;
    size_t order[8], files_then[8], n;
};

static void
seen_report(struct send_reporter *rep, size_t i, const struct send_result *r)
{
    struct seen *w = (struct seen *)rep;
    size_t files = 0;
    char **list = tu_list(w->sink->dir, "m.", &files);
    (void)r;
    tu_free_list(list);
    if (w->n < 8) {
        w->order[w->n] = i;
        w->files_then[w->n] = files;
    }
    w->n++;
}

static void
send_reports_each_outcome_before_the_next_message_goes_out(void **state)
{
    struct sink s;
    struct nudge_message msgs[4];
    struct send_result res[4] = {0};
    struct seen w;
    void *st;
    (void)state;
    sink_start(&s, NULL);
    st = open_smtp(s.port, NULL, NULL);
    batch(msgs, 4);
    msgs[2].to = "not an address"; /* refused before the session: reported at once */
    memset(&w, 0, sizeof(w));
    w.rep = (struct send_reporter){seen_report, res, 4};
    w.sink = &s;
    for (int i = 0; i < 4; i++)
        res[i].reporter = &w.rep;
    channel_backend_smtp.send(st, msgs, 4, res);
    assert_int_equal(res[0].status, SEND_OK);
    assert_int_equal(res[1].status, SEND_OK);
    assert_int_equal(res[2].status, SEND_PERMANENT);
    assert_int_equal(res[3].status, SEND_OK);
    /* Every message reported once, as its outcome became known: the
     * compose failure first, then the session's messages in order. */
    assert_int_equal(w.n, 4);
    assert_int_equal(w.order[0], 2);
    assert_int_equal(w.order[1], 0);
    assert_int_equal(w.order[2], 1);
    assert_int_equal(w.order[3], 3);
    /* When message k was reported, message k + 1 had not reached the
     * server yet: the dispatcher's commit comes before the next DATA. */
    assert_true(w.files_then[1] <= 1);
    assert_true(w.files_then[2] <= 2);
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(res[i].reporter, &w.rep); /* left alone by the backend */
    channel_backend_smtp.close(st);
    sink_stop(&s);
}

static void
send_classifies_4xx_recipient_reply_as_transient(void **state)
{
    struct sink s;
    struct nudge_message msgs[2];
    struct send_result res[2] = {0};
    void *st;
    size_t files = 0;
    char *text;
    (void)state;
    sink_start(&s, "-r", "RCPT", NULL);
    st = open_smtp(s.port, NULL, NULL);
    batch(msgs, 2);
    channel_backend_smtp.send(st, msgs, 2, res);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i].status, SEND_TRANSIENT);
        assert_int_equal(res[i].code / 100, 4);
        assert_non_null(strstr(res[i].error, "RCPT TO rejected: 4"));
    }
    text = sink_find(&s, msgs[0].to, &files);
    free(text);
    assert_null(text);
    channel_backend_smtp.close(st);
    sink_stop(&s);
}

static void
send_classifies_5xx_recipient_reply_as_permanent(void **state)
{
    struct sink s;
    struct nudge_message msgs[2];
    struct send_result res[2] = {0};
    void *st;
    (void)state;
    sink_start(&s, "-f", "RCPT", NULL);
    st = open_smtp(s.port, NULL, NULL);
    batch(msgs, 2);
    channel_backend_smtp.send(st, msgs, 2, res);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i].status, SEND_PERMANENT);
        assert_int_equal(res[i].code / 100, 5);
        assert_non_null(strstr(res[i].error, "RCPT TO rejected: 5"));
    }
    channel_backend_smtp.close(st);
    sink_stop(&s);
}

static void
send_classifies_5xx_end_of_data_as_permanent(void **state)
{
    struct sink s;
    struct nudge_message msgs[1];
    struct send_result res[1] = {0};
    void *st;
    (void)state;
    sink_start(&s, "-f", ".", NULL);
    st = open_smtp(s.port, NULL, NULL);
    batch(msgs, 1);
    channel_backend_smtp.send(st, msgs, 1, res);
    assert_int_equal(res[0].status, SEND_PERMANENT);
    assert_int_equal(res[0].code / 100, 5);
    assert_non_null(strstr(res[0].error, "message rejected"));
    channel_backend_smtp.close(st);
    sink_stop(&s);
}

static void
send_treats_a_connection_dropped_after_data_as_transient(void **state)
{
    struct sink s;
    struct nudge_message msgs[2];
    struct send_result res[2] = {0};
    void *st;
    (void)state;
    /* Disconnect without a reply after the final "."; the message may or
     * may not have been taken, so it must be retried (same Message-ID). */
    sink_start(&s, "-q", ".", NULL);
    st = open_smtp(s.port, NULL, NULL);
    batch(msgs, 2);
    channel_backend_smtp.send(st, msgs, 2, res);
    assert_int_equal(res[0].status, SEND_TRANSIENT);
    assert_true(res[0].code < 0);
    if (!strstr(res[0].error, "after the message was sent"))
        fail_msg("error: %s", res[0].error);
    assert_int_equal(res[1].status, SEND_TRANSIENT);
    assert_true(res[1].code < 0);
    channel_backend_smtp.close(st);
    sink_stop(&s);
}

static void
send_treats_a_rejected_greeting_as_transient(void **state)
{
    struct sink s;
    struct nudge_message msgs[1];
    struct send_result res[1] = {0};
    void *st;
    (void)state;
    /* A 5xx before any transaction says nothing about the recipient. */
    sink_start(&s, "-f", "CONNECT", NULL);
    st = open_smtp(s.port, NULL, NULL);
    batch(msgs, 1);
    channel_backend_smtp.send(st, msgs, 1, res);
    assert_int_equal(res[0].status, SEND_TRANSIENT);
    assert_int_equal(res[0].code / 100, 5);
    assert_non_null(strstr(res[0].error, "refused the session"));
    channel_backend_smtp.close(st);
    sink_stop(&s);
}

static void
send_to_a_closed_port_is_transient(void **state)
{
    struct nudge_message msgs[2];
    struct send_result res[2] = {0};
    int port = tu_free_port();
    void *st = open_smtp(port, NULL, NULL);
    (void)state;
    batch(msgs, 2);
    channel_backend_smtp.send(st, msgs, 2, res);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(res[i].status, SEND_TRANSIENT);
        assert_int_equal(res[i].code, -ECONNREFUSED);
        assert_non_null(strstr(res[i].error, "refused"));
    }
    channel_backend_smtp.close(st);
}

static void
classify_error_maps_codes(void **state)
{
    (void)state;
    assert_int_equal(channel_backend_smtp.classify_error(250), SEND_OK);
    assert_int_equal(channel_backend_smtp.classify_error(421), SEND_TRANSIENT);
    assert_int_equal(channel_backend_smtp.classify_error(452), SEND_TRANSIENT);
    assert_int_equal(channel_backend_smtp.classify_error(-ECONNREFUSED), SEND_TRANSIENT);
    assert_int_equal(channel_backend_smtp.classify_error(-ETIMEDOUT), SEND_TRANSIENT);
    assert_int_equal(channel_backend_smtp.classify_error(550), SEND_PERMANENT);
    assert_int_equal(channel_backend_smtp.classify_error(535), SEND_PERMANENT);
    assert_string_equal(channel_backend_smtp.name, "smtp");
    assert_string_equal(channel_backend_smtp.channels[0], "email");
    assert_null(channel_backend_smtp.channels[1]);
    assert_true(channel_backend_smtp.batch_max > 1);
}

/* open() must refuse settings with err describing key and problem. */
static void
expect_open_error(const char *json, const char *msg_part, const char *hint_part)
{
    json_error_t jerr;
    json_t *settings = json_loads(json, 0, &jerr);
    void *st = (void *)1;
    struct nerr err;
    nerr_clear(&err);
    assert_non_null(settings);
    assert_int_equal(channel_backend_smtp.open("email", settings, &st, &err), -EINVAL);
    assert_null(st);
    if (!strstr(err.msg, msg_part))
        fail_msg("error \"%s\" lacks \"%s\"", err.msg, msg_part);
    if (hint_part && !strstr(err.hint, hint_part))
        fail_msg("hint \"%s\" lacks \"%s\"", err.hint, hint_part);
    json_decref(settings);
}

static void
open_rejects_unknown_keys_and_wrong_types(void **state)
{
    (void)state;
    expect_open_error("{\"hots\": \"x\", \"from\": \"a@example.com\"}", "unknown key 'hots'",
                      "did you mean 'host'");
    expect_open_error("{\"port\": \"smtp\", \"from\": \"a@example.com\"}", "channels.email.port",
                      NULL);
    expect_open_error("{\"port\": 70000, \"from\": \"a@example.com\"}", "1-65535", NULL);
    expect_open_error("{\"starttls\": \"maybe\", \"from\": \"a@example.com\"}",
                      "no, optional or required", NULL);
    expect_open_error("{\"host\": 25, \"from\": \"a@example.com\"}", "expected a non-empty string",
                      NULL);
    expect_open_error("{\"host\": \"\"}", "non-empty", NULL);
    expect_open_error("{\"host\": \"127.0.0.1:25\", \"from\": \"a@example.com\"}", "host", "port");
    expect_open_error("{\"host\": \"127.0.0.1\"}", "needs `from`", "from:");
    expect_open_error("{\"from\": \"Shop <nope>\"}", "not a valid mailbox", NULL);
    expect_open_error("{\"from\": \"a@example.com\", \"username\": \"u\"}", "no password",
                      "password_file");
    expect_open_error("{\"from\": \"a@example.com\", \"username\": \"u\", \"password\": \"p\", "
                      "\"password_file\": \"/x\"}",
                      "not both", NULL);
    expect_open_error("{\"from\": \"a@example.com\", \"auth\": {\"user\": \"u\"}}",
                      "unknown key 'user'", NULL);
    expect_open_error("{\"from\": \"a@example.com\", \"tls_verify\": \"sometimes\"}",
                      "true or false", NULL);
    expect_open_error("{\"from\": \"a@example.com\", \"starttls\": \"no\", \"tls_verify\": true}",
                      "starttls is no", NULL);
    expect_open_error("{\"from\": \"a@example.com\", \"tls_ca_file\": \"/nonexistent/ca.pem\"}",
                      "tls_ca_file", NULL);
    expect_open_error("{\"from\": \"a@example.com\", \"username\": \"u\", "
                      "\"password_file\": \"/nonexistent/pw\"}",
                      "cannot read", NULL);
    expect_open_error("{\"from\": \"a@example.com\", \"message_id_domain\": \"a b\"}",
                      "message_id_domain", NULL);
    expect_open_error("[1, 2]", "expected a mapping", NULL);
}

static void
open_points_errors_into_nudge_yaml_and_ignores_daemon_keys(void **state)
{
    json_t *settings = json_loads("{\"_file\": \"/etc/nudge/nudge.yaml\", \"_line\": 12, "
                                  "\"_database\": \"nudge.db\", \"_spool_dir\": \"spool\", "
                                  "\"transport\": \"smtp\", \"from\": \"a@example.com\"}",
                                  0, NULL);
    void *st = NULL;
    struct nerr err;
    (void)state;
    assert_non_null(settings);
    nerr_clear(&err);
    assert_int_equal(channel_backend_smtp.open("email", settings, &st, &err), 0);
    channel_backend_smtp.close(st);
    json_object_set_new(settings, "prot", json_integer(25));
    assert_int_equal(channel_backend_smtp.open("email", settings, &st, &err), -EINVAL);
    assert_string_equal(err.file, "/etc/nudge/nudge.yaml");
    assert_int_equal(err.line, 12);
    assert_non_null(strstr(err.msg, "unknown key 'prot'"));
    assert_non_null(strstr(err.hint, "'port'"));
    json_decref(settings);
}

static void
open_accepts_yaml_style_scalars_and_a_password_file(void **state)
{
    char *dir = tu_mkdtemp("pw"), *pw = xasprintf("%s/pw", dir);
    char *json;
    json_t *settings;
    void *st = NULL;
    struct nerr err;
    (void)state;
    assert_int_equal(write_file_atomic(pw, "s3cret\n", 7), 0);
    json = xasprintf("{\"port\": \"2525\", \"timeout\": \"5\", \"starttls\": false, "
                     "\"from\": \"Shop <shop@example.com>\", "
                     "\"auth\": {\"username\": \"u\", \"password_file\": \"%s\"}}",
                     pw);
    settings = json_loads(json, 0, NULL);
    assert_non_null(settings);
    nerr_clear(&err);
    assert_int_equal(channel_backend_smtp.open("email", settings, &st, &err), 0);
    assert_non_null(st);
    channel_backend_smtp.close(st);
    json_decref(settings);
    free(json);
    tu_rmrf(dir);
    free(pw);
    free(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(compose_encodes_chinese_names_and_subject_per_rfc2047),
        cmocka_unit_test(compose_builds_alternative_with_utf8_text_and_html),
        cmocka_unit_test(compose_sends_only_text_plain_when_html_is_missing),
        cmocka_unit_test(compose_message_id_is_stable_for_the_same_delivery),
        cmocka_unit_test(compose_is_byte_identical_for_the_same_input),
        cmocka_unit_test(compose_matches_gmime_writer_byte_for_byte),
        cmocka_unit_test(compose_adds_list_unsubscribe_only_to_marketing_mail),
        cmocka_unit_test(compose_dates_the_message_with_the_injected_time),
        cmocka_unit_test(compose_uses_crlf_and_short_lines),
        cmocka_unit_test(compose_folds_line_breaks_in_the_subject),
        cmocka_unit_test(compose_refuses_bad_addresses_urls_and_empty_bodies),
        cmocka_unit_test(parse_mailbox_splits_names_and_addresses),
        cmocka_unit_test(send_delivers_a_batch_over_one_session),
        cmocka_unit_test(send_reports_each_message_of_a_mixed_batch),
        cmocka_unit_test(send_reports_each_outcome_before_the_next_message_goes_out),
        cmocka_unit_test(send_classifies_4xx_recipient_reply_as_transient),
        cmocka_unit_test(send_classifies_5xx_recipient_reply_as_permanent),
        cmocka_unit_test(send_classifies_5xx_end_of_data_as_permanent),
        cmocka_unit_test(send_treats_a_connection_dropped_after_data_as_transient),
        cmocka_unit_test(send_treats_a_rejected_greeting_as_transient),
        cmocka_unit_test(send_to_a_closed_port_is_transient),
        cmocka_unit_test(classify_error_maps_codes),
        cmocka_unit_test(open_rejects_unknown_keys_and_wrong_types),
        cmocka_unit_test(open_points_errors_into_nudge_yaml_and_ignores_daemon_keys),
        cmocka_unit_test(open_accepts_yaml_style_scalars_and_a_password_file),
    };
    g_mime_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
