/*
 * test_render.c: from a queued delivery to a message. An email renders its
 * subject, text and HTML from the customer's fields, with a coupon and an
 * unsubscribe link that other code can recompute; the last-moment checks
 * (no address, consent withdrawn, address suppressed, quiet hours, a row
 * whose channel is not its action's) say what to do instead and why; the
 * unsubscribe token is the HMAC-SHA256 the documentation promises, as
 * OpenSSL computes it on its own; the installation secret is made once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "outbox.h"
#include "render.h"
#include "rules.h"
#include "store_internal.h"
#include "store_snapshot.h"
#include "template.h"
#include "util.h"
#include "unit.h"

static const struct rules_env rules_env = {NULL, NULL};

#define SECRET "0123456789abcdef-test-secret"

/* A store with one rules directory beside it, and what renders from them. */
struct fx {
    char dir[64]; /* the store's directory; rules in dir/rules */
    char *rules;
    struct store *st;
    struct config *cfg;
    struct ruleset *rs;
    struct render_env env;
};

static void
sql(struct store *st, const char *q)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, q, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", q, msg ? msg : "?");
}

static void
putf(const char *dir, const char *name, const char *text)
{
    free(put(dir, name, text));
}

/* Rules: "promo" (marketing, coupon, email), "care-note" (care, email),
 * "promo-sms" (marketing, sms). */
static int
setup(void **state)
{
    struct fx *f = xcalloc(1, sizeof(*f));
    char *errors = NULL;
    if (tmp_store(f->dir, "render", &f->st) < 0) {
        free(f);
        return -1;
    }
    f->rules = xasprintf("%s/rules", f->dir);
    if (mkdir(f->rules, 0700) < 0)
        return -1;
    putf(f->rules, "promo.yaml",
         "name: promo\ncategory: marketing\ntrigger: { daily: { at: \"10:00\" } }\n"
         "coupon: { percent_off: 15, valid_days: 30, prefix: SPRING }\n"
         "actions:\n  - email: { template: promo }\n");
    putf(f->rules, "promo.subject", "Hi {{first_name}},\nyour {{coupon.percent_off}}% off\n");
    putf(f->rules, "promo.txt",
         "Dear {{first_name}}, use {{coupon.code}} by {{coupon.expires}}.\n"
         "Unsubscribe: {{unsubscribe_url}}\n");
    putf(f->rules, "promo.html",
         "<p>Dear {{name}} ({{tier}}), code <b>{{coupon.code}}</b></p>"
         "<a href=\"{{unsubscribe_url}}\">unsubscribe</a>\n");
    putf(f->rules, "care-note.yaml",
         "name: care-note\ncategory: care\ntrigger: { daily: { at: \"10:00\" } }\n"
         "actions:\n  - email: { template: care }\n");
    putf(f->rules, "care.subject", "About your order, {{first_name}}\n");
    putf(f->rules, "care.txt",
         "Your order is on its way.{{#unsubscribe_url}} LINK{{/unsubscribe_url}}\n");
    putf(f->rules, "promo-sms.yaml",
         "name: promo-sms\ncategory: marketing\ntrigger: { daily: { at: \"10:00\" } }\n"
         "actions:\n  - sms: { text: \"Hi {{first_name}}\" }\n");
    if (ruleset_load(f->rules, &rules_env, &f->rs, &errors) < 0) {
        fprintf(stderr, "rules did not load: %s\n", errors);
        free(errors);
        return -1;
    }
    f->cfg = config_defaults(f->dir);
    f->env = (struct render_env){f->st, f->cfg, f->rs, SECRET, iso("2027-03-01T10:00:00Z")};
    /* Customer 1 has everything; 2 has no email and no first name; 3
     * lives in Shanghai. */
    sql(f->st,
        "INSERT INTO customers (id, ext_id, name, first_name, email, phone, tz, tier, attrs)"
        " VALUES (1, 'C+1 é', 'Carol & <Co>', 'Carol', 'carol@example.com', '+8613800000000',"
        " 'UTC', 'gold', '{\"pet\": \"cat\"}'),"
        " (2, 'C2', 'Dan Doe', NULL, NULL, NULL, 'UTC', NULL, '{}'),"
        " (3, 'C3', 'Wei Wang', 'Wei', 'wei@example.com', NULL, 'Asia/Shanghai', NULL, '{}')");
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;
    ruleset_unref(f->rs);
    config_free(f->cfg);
    store_close(f->st);
    rmrf(f->dir);
    free(f->rules);
    free(f);
    return 0;
}

/* A delivery of rule's action 0 to customer, enqueued with the rule's
 * snapshot as the outbox does (the strings are static in the test). */
static struct delivery
delivery_of(struct fx *f, const char *rule, int64_t customer, const char *channel)
{
    const struct rule *r = ruleset_find(f->rs, rule);
    struct delivery d = {0};
    assert_non_null(r);
    assert_int_equal(
        store_snapshot_put(f->st, r->snapshot_hash, r->name, r->snapshot, 0, &d.snapshot), 0);
    d.id = 42;
    d.rule = (char *)r->name;
    d.customer_id = customer;
    d.occurrence = "2027-03-01";
    d.action = 0;
    d.channel = (char *)channel;
    d.attempts = 1;
    d.due_at = d.created_at = iso("2027-03-01T10:00:00Z");
    return d;
}

/* HMAC-SHA256(key, data) as 64 lowercase hex digits, by OpenSSL's one-shot
 * HMAC(): the truth render.c's own MAC contexts must agree with. */
static void
ref_hmac(const char *key, const char *data, char hex[65], unsigned char raw[32])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)data,
                         strlen(data), mac, &len));
    assert_int_equal(len, 32);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    if (raw)
        memcpy(raw, mac, 32);
}

/* ---- a message ------------------------------------------------------------ */

static void
email_renders_customer_fields_coupon_and_unsubscribe_link(void **state)
{
    struct fx *f = *state;
    struct delivery d = delivery_of(f, "promo", 1, "email");
    struct rendered out;
    char why[512] = "", tok[40], ref[65], *want, code[16];
    unsigned char mac[32];
    static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    json_t *p, *cust;

    assert_int_equal(render_delivery(&f->env, &d, true, &out, why, sizeof(why)), RENDER_OK);
    assert_int_equal(out.msg.delivery_id, 42);
    assert_string_equal(out.msg.idempotency_key, "nudge-42");
    assert_string_equal(out.msg.rule, "promo");
    assert_string_equal(out.msg.channel, "email");
    assert_string_equal(out.msg.customer_id, "C+1 é");
    assert_string_equal(out.msg.to, "carol@example.com");
    assert_string_equal(out.msg.to_name, "Carol & <Co>");
    assert_true(out.msg.marketing);
    /* The subject is one line: the final newline dropped, the rest folded. */
    assert_string_equal(out.msg.subject, "Hi Carol, your 15% off");

    /* The coupon: prefix and 8 characters of HMAC(secret, "coupon\nrule\next
     * id\noccurrence") over the alphabet without 0/O/1/I, valid 30 days
     * from the local day of the fire. */
    ref_hmac(SECRET, "coupon\npromo\nC+1 é\n2027-03-01", ref, mac);
    memcpy(code, "SPRING-", 7);
    for (int i = 0; i < 8; i++)
        code[7 + i] = alphabet[mac[i] % 32];
    code[15] = '\0';

    /* The link: public_url/unsubscribe?c=EXT&ch=CHANNEL&t=TOKEN, the ext id
     * percent-encoded, the token unsubscribe_token's and 32 hex digits. */
    unsubscribe_token(SECRET, "C+1 é", "email", tok, sizeof(tok));
    assert_int_equal(strlen(tok), 32);
    want = xasprintf("http://127.0.0.1:8025/unsubscribe?c=C%%2B1%%20%%C3%%A9&ch=email&t=%s", tok);
    assert_string_equal(out.msg.unsubscribe_url, want);

    char *text = xasprintf("Dear Carol, use %s by 2027-03-31.\nUnsubscribe: %s\n", code, want);
    assert_string_equal(out.msg.text, text);
    free(text);
    /* HTML escapes the customer's fields and the link as mustache.js does
     * ('&', '<', '>', '"', '\'', '/', '`', '='). */
    char *html =
        xasprintf("<p>Dear Carol &amp; &lt;Co&gt; (gold), code <b>%s</b></p><a href=\""
                  "http:&#x2F;&#x2F;127.0.0.1:8025&#x2F;unsubscribe?c&#x3D;C%%2B1%%20%%C3%%A9"
                  "&amp;ch&#x3D;email&amp;t&#x3D;%s\">unsubscribe</a>\n",
                  code, tok);
    assert_string_equal(out.msg.html, html);
    free(html);

    /* The payload: the customer's own fields only (custom attributes
     * included), the coupon beside them. */
    p = out.msg.payload;
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "to")), "carol@example.com");
    assert_string_equal(json_string_value(json_object_get(p, "due_at")), "2027-03-01T10:00:00Z");
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "coupon"), "code")),
                        code);
    cust = json_object_get(p, "customer");
    assert_string_equal(json_string_value(json_object_get(cust, "id")), "C+1 é");
    assert_string_equal(json_string_value(json_object_get(cust, "pet")), "cat");
    assert_null(json_object_get(cust, "unsubscribe_url"));
    assert_null(json_object_get(cust, "coupon"));
    assert_null(json_object_get(cust, "rule"));
    free(want);
    rendered_free(&out);
}

static void
care_email_has_no_unsubscribe_link_or_coupon(void **state)
{
    struct fx *f = *state;
    struct delivery d = delivery_of(f, "care-note", 1, "email");
    struct rendered out;
    char why[512] = "";
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_OK);
    assert_false(out.msg.marketing);
    assert_null(out.msg.unsubscribe_url);
    assert_null(out.msg.payload);
    assert_null(out.msg.html);
    assert_string_equal(out.msg.subject, "About your order, Carol");
    assert_string_equal(out.msg.text, "Your order is on its way.\n");
    rendered_free(&out);
}

/* ---- what is not sent, and why --------------------------------------------- */

static void
customer_without_address_is_skipped_with_the_reason(void **state)
{
    struct fx *f = *state;
    struct delivery d = delivery_of(f, "promo", 2, "email");
    struct rendered out;
    char why[512] = "";
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_SKIP);
    assert_string_equal(why, "customer has no email address");
    rendered_free(&out);

    d = delivery_of(f, "promo-sms", 2, "sms");
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_SKIP);
    assert_string_equal(why, "customer has no phone number");
    rendered_free(&out);

    /* A customer deleted since the row was enqueued. */
    d = delivery_of(f, "promo", 99, "email");
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_SKIP);
    assert_string_equal(why, "customer 99 no longer exists");
    rendered_free(&out);
}

static void
withdrawn_consent_suppresses_marketing_at_render_time(void **state)
{
    struct fx *f = *state;
    struct delivery d = delivery_of(f, "promo", 1, "email");
    struct rendered out;
    char why[512] = "";

    /* Granted, or never given: sent. */
    sql(f->st, "INSERT INTO consents (customer_id, channel, granted) VALUES (1, 'email', 1)");
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_OK);
    rendered_free(&out);
    /* Withdrawn after the row was enqueued: suppressed now. */
    sql(f->st, "UPDATE consents SET granted = 0 WHERE customer_id = 1");
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_SUPPRESS);
    assert_string_equal(why, "no consent for email (unsubscribed)");
    rendered_free(&out);
    /* Only for that channel. */
    d = delivery_of(f, "promo-sms", 1, "sms");
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_OK);
    assert_string_equal(out.msg.text, "Hi Carol");
    rendered_free(&out);
    /* A care message is not marketing: consent does not hold it. */
    d = delivery_of(f, "care-note", 1, "email");
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_OK);
    rendered_free(&out);
}

static void
suppressed_address_is_suppressed_at_render_time(void **state)
{
    struct fx *f = *state;
    struct delivery d = delivery_of(f, "promo", 1, "email");
    struct rendered out;
    char why[512] = "";
    sql(f->st, "INSERT INTO suppressions (channel, address, reason, created_at)"
               " VALUES ('email', 'carol@example.com', '550 5.1.1 no such user', 0),"
               " ('sms', 'carol@example.com', 'other channel', 0)");
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_SUPPRESS);
    assert_string_equal(why, "address suppressed: 550 5.1.1 no such user");
    rendered_free(&out);
    /* Another customer's address is not. */
    d = delivery_of(f, "promo", 3, "email");
    f->env.now = iso("2027-03-01T04:00:00Z"); /* noon in Shanghai */
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_OK);
    assert_string_equal(out.msg.to, "wei@example.com");
    rendered_free(&out);
}

static void
row_whose_channel_is_not_its_actions_is_refused(void **state)
{
    struct fx *f = *state;
    struct delivery d = delivery_of(f, "promo", 1, "sms");
    struct rendered out;
    char why[512] = "";
    assert_int_equal(render_delivery(&f->env, &d, true, &out, why, sizeof(why)), RENDER_FAIL);
    assert_non_null(strstr(why, "delivery is queued for the sms channel but action 0 of rule"
                                " 'promo' is for the email channel; not sent"));
    assert_null(out.msg.to);
    rendered_free(&out);
    /* An action the snapshot does not have. */
    d = delivery_of(f, "promo", 1, "email");
    d.action = 3;
    assert_int_equal(render_delivery(&f->env, &d, true, &out, why, sizeof(why)), RENDER_FAIL);
    assert_non_null(strstr(why, "has no action 3 for this delivery"));
    rendered_free(&out);
    /* Without a snapshot, a rule no longer loaded is skipped. */
    d.snapshot = 0;
    d.rule = "gone";
    d.action = 0;
    assert_int_equal(render_delivery(&f->env, &d, true, &out, why, sizeof(why)), RENDER_SKIP);
    assert_string_equal(why, "rule 'gone' (action 0) is no longer loaded");
    rendered_free(&out);
}

static void
quiet_hours_defer_marketing_to_their_end_in_the_customers_zone(void **state)
{
    struct fx *f = *state;
    struct delivery d = delivery_of(f, "promo", 3, "email");
    struct rendered out;
    char why[512] = "";
    f->cfg->policy.quiet_start = 21 * 60;
    f->cfg->policy.quiet_end = 8 * 60;
    /* 22:00 in Shanghai (14:00 UTC): held until 08:00 there, 00:00 UTC. */
    f->env.now = iso("2027-03-01T14:00:00Z");
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_DEFER);
    assert_int_equal(out.defer_until, iso("2027-03-02T00:00:00Z"));
    assert_string_equal(why, "quiet hours until 08:00 Asia/Shanghai");
    rendered_free(&out);
    /* A care message goes out at night. */
    d = delivery_of(f, "care-note", 3, "email");
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_OK);
    rendered_free(&out);
    /* 09:00 in Shanghai: sent. */
    d = delivery_of(f, "promo", 3, "email");
    f->env.now = iso("2027-03-02T01:00:00Z");
    assert_int_equal(render_delivery(&f->env, &d, false, &out, why, sizeof(why)), RENDER_OK);
    rendered_free(&out);
}

/* ---- the context and templates ----------------------------------------------- */

static void
customer_context_has_fields_tags_and_first_name_fallback(void **state)
{
    struct fx *f = *state;
    json_t *ctx;
    sql(f->st, "INSERT INTO customer_tags (customer_id, tag) VALUES (2, 'vip'), (2, 'lunar')");
    ctx = render_customer_context(f->st, 2);
    assert_non_null(ctx);
    assert_string_equal(json_string_value(json_object_get(ctx, "id")), "C2");
    /* No first name: the name stands in. */
    assert_string_equal(json_string_value(json_object_get(ctx, "first_name")), "Dan Doe");
    assert_int_equal(json_array_size(json_object_get(ctx, "tags")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(ctx, "tags"), 0)),
                        "lunar");
    json_decref(ctx);
    assert_null(render_customer_context(f->st, 404));
}

static void
rule_context_adds_today_in_the_customers_zone_and_link_for_marketing_only(void **state)
{
    struct fx *f = *state;
    json_t *ctx = render_customer_context(f->st, 3);
    char tok[40], *want;
    /* 20:00 UTC on 1 March is 04:00 on 2 March in Shanghai. */
    render_add_rule_context(ctx, &f->env, ruleset_find(f->rs, "promo"), "occ-1", "email",
                            iso("2027-03-01T20:00:00Z"));
    assert_string_equal(json_string_value(json_object_get(ctx, "today")), "2027-03-02");
    assert_string_equal(json_string_value(json_object_get(ctx, "rule")), "promo");
    assert_string_equal(json_string_value(json_object_get(ctx, "occurrence")), "occ-1");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(ctx, "coupon"), "expires")),
        "2027-04-01");
    unsubscribe_token(SECRET, "C3", "email", tok, sizeof(tok));
    want = xasprintf("http://127.0.0.1:8025/unsubscribe?c=C3&ch=email&t=%s", tok);
    assert_string_equal(json_string_value(json_object_get(ctx, "unsubscribe_url")), want);
    free(want);
    json_decref(ctx);

    ctx = render_customer_context(f->st, 3);
    render_add_rule_context(ctx, &f->env, ruleset_find(f->rs, "care-note"), "occ-1", "email",
                            iso("2027-03-01T20:00:00Z"));
    assert_null(json_object_get(ctx, "unsubscribe_url"));
    assert_null(json_object_get(ctx, "coupon"));
    json_decref(ctx);
}

static void
render_tmpl_escapes_html_only_when_asked(void **state)
{
    struct tmpl *t = NULL;
    struct nerr err;
    char why[512] = "", *s;
    json_t *ctx = json_pack("{ss}", "name", "A&B <x>");
    (void)state;
    nerr_clear(&err);
    const char *src = "Hi {{name}}{{> nope}}";
    assert_int_equal(tmpl_compile("t", src, strlen(src), &t, &err), 0);
    s = render_tmpl(t, ctx, false, NULL, why, sizeof(why));
    assert_string_equal(s, "Hi A&B <x>"); /* no rule: partials render empty */
    free(s);
    s = render_tmpl(t, ctx, true, NULL, why, sizeof(why));
    assert_string_equal(s, "Hi A&amp;B &lt;x&gt;");
    free(s);
    tmpl_free(t);
    json_decref(ctx);
}

/* ---- tokens and the secret ------------------------------------------------ */

static void
unsubscribe_token_is_hmac_sha256_of_customer_and_channel(void **state)
{
    char a[40], b[40], ref[65];
    (void)state;
    unsubscribe_token("k1", "C1", "email", a, sizeof(a));
    /* Independent truth: HMAC-SHA256(secret, "unsubscribe\nEXT\nCHANNEL"),
     * the first 128 bits in lowercase hex. */
    ref_hmac("k1", "unsubscribe\nC1\nemail", ref, NULL);
    ref[32] = '\0';
    assert_string_equal(a, ref);
    /* Stable across calls (the cached per-thread key state is reset). */
    unsubscribe_token("k2", "C1", "email", b, sizeof(b));
    unsubscribe_token("k1", "C1", "email", b, sizeof(b));
    assert_string_equal(a, b);
    /* Any change of secret, customer or channel changes it. */
    unsubscribe_token("k2", "C1", "email", b, sizeof(b));
    assert_string_not_equal(a, b);
    unsubscribe_token("k1", "C2", "email", b, sizeof(b));
    assert_string_not_equal(a, b);
    unsubscribe_token("k1", "C1", "sms", b, sizeof(b));
    assert_string_not_equal(a, b);
    /* The parts are joined with a newline: moving the split between them
     * changes the MAC. */
    unsubscribe_token("k1", "C", "1email", b, sizeof(b));
    assert_string_not_equal(a, b);
    /* A short buffer gets a prefix, terminated. */
    unsubscribe_token("k1", "C1", "email", b, 9);
    assert_int_equal(strlen(b), 8);
    assert_memory_equal(b, ref, 8);
}

static void
hmac_hex_matches_openssl_and_truncates(void **state)
{
    char out[65], ref[65];
    (void)state;
    ref_hmac(SECRET, "some data", ref, NULL);
    hmac_hex(SECRET, "some data", out, 64);
    assert_string_equal(out, ref);
    memset(out, 'X', sizeof(out));
    hmac_hex(SECRET, "some data", out, 16);
    assert_int_equal(strlen(out), 16);
    assert_memory_equal(out, ref, 16);
    /* The empty key and data are a MAC like any other. */
    ref_hmac("", "", ref, NULL);
    hmac_hex("", "", out, 64);
    assert_string_equal(out, ref);
}

/* An odd length gets all its characters: the last is the high nibble of
 * the next byte (to_hex once stopped at the last whole byte). */
static void
hmac_hex_truncates_to_an_odd_length(void **state)
{
    char out[65], ref[65];
    (void)state;
    ref_hmac(SECRET, "some data", ref, NULL);
    memset(out, 'X', sizeof(out));
    hmac_hex(SECRET, "some data", out, 5);
    assert_int_equal(strlen(out), 5);
    assert_memory_equal(out, ref, 5);
}

static void
render_secret_is_made_once_and_kept(void **state)
{
    struct fx *f = *state;
    char *s1 = NULL, *s2 = NULL, *db, *stored = NULL;
    assert_int_equal(store_meta_get(f->st, "secret", &stored), -ENOENT);
    assert_int_equal(render_secret(f->st, &s1), 0);
    assert_int_equal(strlen(s1), 64);
    for (const char *p = s1; *p; p++)
        assert_true(isxdigit((unsigned char)*p) && !isupper((unsigned char)*p));
    assert_int_equal(render_secret(f->st, &s2), 0);
    assert_string_equal(s1, s2);
    free(s2);
    /* Kept in the database: the next start reads the same one. */
    db = xstrdup(store_path(f->st));
    store_close(f->st);
    struct nerr err;
    nerr_clear(&err);
    assert_int_equal(store_open(db, &f->st, &err), 0);
    assert_int_equal(render_secret(f->st, &s2), 0);
    assert_string_equal(s1, s2);
    assert_int_equal(store_meta_get(f->st, "secret", &stored), 0);
    assert_string_equal(stored, s1);
    /* Another installation gets another. */
    char dir2[64];
    struct store *st2;
    char *s3 = NULL;
    assert_int_equal(tmp_store(dir2, "render2", &st2), 0);
    assert_int_equal(render_secret(st2, &s3), 0);
    assert_string_not_equal(s1, s3);
    store_close(st2);
    rmrf(dir2);
    free(s3);
    free(stored);
    free(db);
    free(s1);
    free(s2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(email_renders_customer_fields_coupon_and_unsubscribe_link,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(care_email_has_no_unsubscribe_link_or_coupon, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(customer_without_address_is_skipped_with_the_reason, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(withdrawn_consent_suppresses_marketing_at_render_time,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(suppressed_address_is_suppressed_at_render_time, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(row_whose_channel_is_not_its_actions_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            quiet_hours_defer_marketing_to_their_end_in_the_customers_zone, setup, teardown),
        cmocka_unit_test_setup_teardown(customer_context_has_fields_tags_and_first_name_fallback,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            rule_context_adds_today_in_the_customers_zone_and_link_for_marketing_only, setup,
            teardown),
        cmocka_unit_test(render_tmpl_escapes_html_only_when_asked),
        cmocka_unit_test(unsubscribe_token_is_hmac_sha256_of_customer_and_channel),
        cmocka_unit_test(hmac_hex_matches_openssl_and_truncates),
        cmocka_unit_test_setup_teardown(render_secret_is_made_once_and_kept, setup, teardown),
        cmocka_unit_test(hmac_hex_truncates_to_an_odd_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
