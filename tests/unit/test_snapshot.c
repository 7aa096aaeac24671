/*
 * test_snapshot.c: self-contained deliveries. Partials are read when the
 * rules are loaded (a missing one is a located load error); a rule's
 * snapshot decodes to the same rule, its hash follows what a delivery sends
 * (templates and partials, not the audience); rule_snapshots rows are found
 * by hash, kept while a row that may still be sent refers to them and never
 * get a collected id again; render_delivery renders from the snapshot a row
 * was enqueued with, whatever the loaded rule set says now, and refuses a
 * row whose channel is not its action's.
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

#include "config.h"
#include "outbox.h"
#include "render.h"
#include "rules.h"
#include "store_internal.h"
#include "store_snapshot.h"
#include "template.h"
#include "util.h"
#include "unit.h"

static const struct rules_env env = {NULL, NULL};

static int
setup_dir(void **state)
{
    char *dir = xstrdup("/tmp/nudge-test-snapshot-XXXXXX");
    if (!mkdtemp(dir)) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static int
teardown_dir(void **state)
{
    rmrf(*state);
    free(*state);
    return 0;
}

static void
putf(const char *dir, const char *name, const char *text)
{
    free(put(dir, name, text));
}

/* The promo rule: [email (body includes partial footer, which includes
 * sign), webhook]. */
static void
write_promo(const char *dir, const char *order)
{
    char *y = xasprintf("name: promo\ncategory: care\ntrigger: { daily: { at: \"10:00\" } }\n"
                        "actions:\n%s",
                        !strcmp(order, "email-first")
                            ? "  - email: { template: promo }\n"
                              "  - webhook: { url: \"http://127.0.0.1:9/hook\" }\n"
                            : "  - webhook: { url: \"http://127.0.0.1:9/hook\" }\n"
                              "  - email: { template: promo }\n");
    putf(dir, "promo.yaml", y);
    free(y);
    putf(dir, "promo.subject", "Hi {{first_name}}\n");
    putf(dir, "promo.txt", "Dear {{first_name}},\n{{> footer}}\n");
    putf(dir, "footer.mustache", "FOOTER-V1 {{> sign}}\n");
    putf(dir, "sign.mustache", "-- the shop");
}

static struct ruleset *
load_ok(const char *dir)
{
    struct ruleset *rs = NULL;
    char *errors = NULL;
    if (ruleset_load(dir, &env, &rs, &errors) < 0)
        fail_msg("rules did not load: %s", errors);
    return rs;
}

static char *
load_err(const char *dir)
{
    struct ruleset *rs = NULL;
    char *errors = NULL;
    assert_int_equal(ruleset_load(dir, &env, &rs, &errors), -EINVAL);
    assert_null(rs);
    assert_non_null(errors);
    return errors;
}

static char *
render_str(const struct tmpl *t, const struct rule *r)
{
    char why[512];
    json_t *ctx = json_pack("{ss}", "first_name", "Carol");
    char *s = render_tmpl(t, ctx, false, r, why, sizeof(why));
    json_decref(ctx);
    if (!s)
        fail_msg("render failed: %s", why);
    return s;
}

/* ---- partials at load ------------------------------------------------------ */

static void
partials_are_read_when_the_rules_load(void **state)
{
    const char *dir = *state;
    struct ruleset *rs;
    const struct rule *r;
    char *s, *path;
    write_promo(dir, "email-first");
    rs = load_ok(dir);
    r = ruleset_find(rs, "promo");
    assert_non_null(r);
    assert_int_equal(r->npartials, 2); /* footer, and sign through footer */
    assert_string_equal(r->partials[0].name, "footer");
    assert_string_equal(r->partials[1].name, "sign");
    /* Editing or deleting the files afterwards changes nothing rendered
     * from the loaded rule. */
    putf(dir, "footer.mustache", "FOOTER-V2\n");
    path = xasprintf("%s/sign.mustache", dir);
    unlink(path);
    free(path);
    s = render_str(r->actions[0].text, r);
    assert_string_equal(s, "Dear Carol,\nFOOTER-V1 -- the shop\n");
    free(s);
    ruleset_unref(rs);
}

static void
missing_partial_is_a_load_error_at_the_tag(void **state)
{
    const char *dir = *state;
    char *e, *want;
    write_promo(dir, "email-first");
    putf(dir, "promo.txt", "Dear {{first_name}},\n  {{> nope}}\n");
    e = load_err(dir);
    want = xasprintf("%s/promo.txt:2:3: error: partial 'nope': cannot read %s/nope.mustache", dir,
                     dir);
    if (!strstr(e, want))
        fail_msg("expected '%s' in:\n%s", want, e);
    free(want);
    free(e);
}

static void
missing_nested_partial_is_located_in_the_partial(void **state)
{
    const char *dir = *state;
    char *e, *want, *path;
    write_promo(dir, "email-first");
    path = xasprintf("%s/sign.mustache", dir);
    unlink(path);
    free(path);
    e = load_err(dir);
    want = xasprintf("%s/footer.mustache:1:11: error: partial 'sign'", dir);
    if (!strstr(e, want))
        fail_msg("expected '%s' in:\n%s", want, e);
    free(want);
    free(e);
}

static void
missing_partial_in_inline_text_points_into_the_rule_file(void **state)
{
    const char *dir = *state;
    char *e, *want;
    putf(dir, "hi.yaml", "name: hi\ntrigger: { daily: { at: \"10:00\" } }\nactions:\n"
                         "  - sms: { text: \"Hi {{> gone}}\" }\n");
    e = load_err(dir);
    want = xasprintf("%s/hi.yaml:4:%d: error: partial 'gone'", dir,
                     col_of("  - sms: { text: \"Hi {{> gone}}\" }", 1, "{{>"));
    if (!strstr(e, want))
        fail_msg("expected '%s' in:\n%s", want, e);
    free(want);
    free(e);
}

/* ---- snapshots ------------------------------------------------------------- */

static void
snapshot_decodes_to_the_same_rule(void **state)
{
    const char *dir = *state;
    struct ruleset *rs;
    const struct rule *r;
    struct rule *d = NULL;
    char why[256], *a, *b;
    write_promo(dir, "email-first");
    putf(dir, "promo.yaml", "name: promo\ntrigger: { daily: { at: \"10:00\" } }\n"
                            "coupon: { percent_off: 15, valid_days: 7, prefix: SPR }\n"
                            "actions:\n  - email: { template: promo }\n"
                            "  - webhook: { url: \"http://127.0.0.1:9/hook\", secret_file: /x/s }\n"
                            "  - task: { kind: visit, assign: round-robin, due_in: 2d, note: \"N {{> sign}}\" }\n");
    rs = load_ok(dir);
    r = ruleset_find(rs, "promo");
    assert_int_equal(rule_snapshot_decode(r->snapshot, strlen(r->snapshot), &d, why, sizeof(why)),
                     0);
    assert_string_equal(d->name, "promo");
    assert_true(d->marketing);
    assert_true(d->coupon.enabled);
    assert_int_equal(d->coupon.percent_off, 15);
    assert_int_equal(d->coupon.valid_days, 7);
    assert_string_equal(d->coupon.prefix, "SPR");
    assert_int_equal(d->nactions, 3);
    assert_string_equal(d->actions[0].channel, "email");
    assert_string_equal(d->actions[1].channel, "webhook");
    assert_string_equal(d->actions[1].url, "http://127.0.0.1:9/hook");
    assert_string_equal(d->actions[1].secret_file, "/x/s");
    assert_string_equal(d->actions[2].task_kind, "visit");
    assert_string_equal(d->actions[2].assign, "round-robin");
    assert_int_equal(d->actions[2].due_in, 2 * 86400);
    assert_int_equal(d->npartials, 2);
    a = render_str(r->actions[0].text, r);
    b = render_str(d->actions[0].text, d);
    assert_string_equal(a, b);
    free(a);
    free(b);
    a = render_str(d->actions[2].note, d);
    assert_string_equal(a, "N -- the shop");
    free(a);
    a = render_str(d->actions[0].subject, d);
    assert_string_equal(a, "Hi Carol\n");
    free(a);
    rule_free(d);
    assert_int_equal(rule_snapshot_decode("{\"format\": 2}", 13, &d, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "not in a format"));
    ruleset_unref(rs);
}

static void
snapshot_hash_follows_content_not_audience(void **state)
{
    const char *dir = *state;
    struct ruleset *rs;
    char h1[65], h2[65];
    write_promo(dir, "email-first");
    rs = load_ok(dir);
    memcpy(h1, ruleset_find(rs, "promo")->snapshot_hash, 65);
    ruleset_unref(rs);

    rs = load_ok(dir); /* unchanged: same hash */
    assert_string_equal(ruleset_find(rs, "promo")->snapshot_hash, h1);
    ruleset_unref(rs);

    putf(dir, "sign.mustache", "-- the new shop");
    rs = load_ok(dir); /* a nested partial edited: new hash */
    memcpy(h2, ruleset_find(rs, "promo")->snapshot_hash, 65);
    assert_string_not_equal(h1, h2);
    ruleset_unref(rs);

    putf(dir, "promo.yaml", "name: promo\ncategory: care\ntrigger: { daily: { at: \"11:00\" } }\n"
                            "audience: tier = 'gold'\nactions:\n"
                            "  - email: { template: promo }\n"
                            "  - webhook: { url: \"http://127.0.0.1:9/hook\" }\n");
    rs = load_ok(dir); /* trigger and audience decide who, not what: same hash */
    assert_string_equal(ruleset_find(rs, "promo")->snapshot_hash, h2);
    ruleset_unref(rs);

    write_promo(dir, "webhook-first");
    putf(dir, "sign.mustache", "-- the new shop");
    rs = load_ok(dir); /* actions reordered: new hash */
    assert_string_not_equal(ruleset_find(rs, "promo")->snapshot_hash, h2);
    ruleset_unref(rs);
}

/* ---- the store --------------------------------------------------------------- */

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
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void
add_delivery(struct store *st, const char *occ, int action, const char *channel, int64_t snap,
             const char *state)
{
    char *q = xasprintf("INSERT INTO deliveries (rule, customer_id, occurrence, action, channel,"
                        " state, due_at, created_at, next_attempt_at, snapshot) VALUES ('promo', 1,"
                        " '%s', %d, '%s', '%s', 0, 0, 0, %lld)", occ, action, channel, state,
                        (long long)snap);
    sql(st, q);
    free(q);
}

static void
store_keeps_snapshots_while_rows_may_be_sent(void **state)
{
    char dir[64];
    struct store *st;
    int64_t a, a2, b, c;
    long removed = -1;
    char *body = NULL;
    size_t len = 0;
    (void)state;
    assert_int_equal(tmp_store(dir, "snapshot", &st), 0);
    assert_int_equal(store_snapshot_put(st, "h1", "promo", "{\"v\":1}", 0, &a), 0);
    assert_int_equal(store_snapshot_put(st, "h1", "promo", "{\"v\":1}", 0, &a2), 0);
    assert_int_equal(a, a2); /* found by hash, not written twice */
    assert_int_equal(store_snapshot_put(st, "h2", "promo", "{\"v\":2}", 0, &b), 0);
    assert_int_not_equal(a, b);
    assert_int_equal(store_snapshot_get(st, b, &body, &len), 0);
    assert_string_equal(body, "{\"v\":2}");
    assert_int_equal(len, 7);
    free(body);
    assert_int_equal(store_snapshot_get(st, 999, &body, &len), -ENOENT);

    add_delivery(st, "o1", 0, "email", a, "sent");
    add_delivery(st, "o2", 0, "email", a, "dead");  /* can be retried: keeps a */
    add_delivery(st, "o3", 0, "email", b, "sent");
    add_delivery(st, "o4", 0, "email", b, "skipped");
    assert_int_equal(store_snapshot_gc(st, &removed), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(sql_int(st, "SELECT count(*) FROM rule_snapshots WHERE id = 1"), 1);
    assert_int_equal(store_snapshot_get(st, b, &body, &len), -ENOENT);

    /* A collected id is never given to another version. */
    assert_int_equal(store_snapshot_put(st, "h3", "promo", "{\"v\":3}", 0, &c), 0);
    assert_true(c > b);

    sql(st, "UPDATE deliveries SET state = 'sent' WHERE occurrence = 'o2'");
    assert_int_equal(store_snapshot_gc(st, &removed), 0);
    assert_int_equal(removed, 2); /* a, and c that nothing refers to */
    store_close(st);
    rmrf(dir);
}

/* A database from before schema 7: its queued rows keep snapshot NULL (they
 * render from the loaded rule set) and new rows can refer to snapshots. */
static void
migration_keeps_old_rows_without_a_snapshot(void **state)
{
    char dir[64], *db;
    struct store *st;
    struct nerr err;
    int64_t id;
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/nudge-test-snapmig-XXXXXX");
    assert_non_null(mkdtemp(dir));
    db = xasprintf("%s/nudge.db", dir);
    nerr_clear(&err);
    assert_int_equal(store_open_version(db, 5, &st, &err), 0);
    sql(st, "INSERT INTO deliveries (rule, customer_id, occurrence, action, channel, due_at,"
            " created_at, next_attempt_at) VALUES ('promo', 1, 'o1', 0, 'email', 0, 0, 0)");
    assert_int_equal(store_migrate(st, &err), 0);
    assert_int_equal(store_schema_version(st), STORE_SCHEMA_VERSION);
    assert_int_equal(sql_int(st, "SELECT count(*) FROM deliveries WHERE snapshot IS NULL"), 1);
    assert_int_equal(store_snapshot_put(st, "h", "promo", "{}", 0, &id), 0);
    assert_int_equal(store_snapshot_gc(st, NULL), 0);
    assert_int_equal(sql_int(st, "SELECT count(*) FROM deliveries"), 1);
    store_close(st);
    rmrf(dir);
    free(db);
}

/* ---- render ---------------------------------------------------------------- */

static void
render_uses_the_snapshot_not_the_loaded_rules(void **state)
{
    const char *dir = *state;
    char sdir[64], why[512];
    struct store *st;
    struct config *cfg;
    struct ruleset *v1, *v2;
    struct rendered out;
    int64_t snap;
    struct delivery d = {0};
    (void)state;
    assert_int_equal(tmp_store(sdir, "snaprender", &st), 0);
    cfg = config_defaults(sdir);
    sql(st, "INSERT INTO customers (id, ext_id, name, first_name, email, tz)"
            " VALUES (1, 'C1', 'Carol Chen', 'Carol', 'carol@example.com', 'UTC')");
    write_promo(dir, "email-first");
    v1 = load_ok(dir);
    assert_int_equal(store_snapshot_put(st, ruleset_find(v1, "promo")->snapshot_hash, "promo",
                                        ruleset_find(v1, "promo")->snapshot, 0, &snap),
                     0);
    /* The marketer swaps the actions and edits the partial; the rule file is
     * then deleted altogether. */
    write_promo(dir, "webhook-first");
    putf(dir, "footer.mustache", "FOOTER-V2\n");
    v2 = load_ok(dir);
    struct ruleset empty = {.rules = NULL, .n = 0, .dir = (char *)dir, .version = 99, .refs = 1};
    struct render_env renv = {st, cfg, &empty, "secret", iso("2027-03-01T10:00:00Z")};

    d.id = 7;
    d.rule = "promo";
    d.customer_id = 1;
    d.occurrence = "2027-03-01";
    d.action = 1;
    d.channel = "webhook";
    d.snapshot = snap;
    d.due_at = d.created_at = iso("2027-03-01T10:00:00Z");
    assert_int_equal(render_delivery(&renv, &d, true, &out, why, sizeof(why)), RENDER_OK);
    assert_string_equal(out.msg.channel, "webhook");
    assert_string_equal(out.msg.to, "http://127.0.0.1:9/hook");
    assert_null(out.msg.subject);
    rendered_free(&out);

    d.action = 0;
    d.channel = "email";
    renv.rs = v2;
    assert_int_equal(render_delivery(&renv, &d, false, &out, why, sizeof(why)), RENDER_OK);
    assert_string_equal(out.msg.to, "carol@example.com");
    assert_string_equal(out.msg.text, "Dear Carol,\nFOOTER-V1 -- the shop\n");
    rendered_free(&out);

    /* A row whose channel is not its action's is refused. */
    d.channel = "webhook";
    assert_int_equal(render_delivery(&renv, &d, true, &out, why, sizeof(why)), RENDER_FAIL);
    assert_non_null(strstr(why, "queued for the webhook channel but action 0 of rule 'promo' is"
                                " for the email channel"));
    rendered_free(&out);

    /* Without a snapshot (enqueued before schema 7): the loaded rule, with
     * the same guard (v2's action 0 is the webhook now). */
    d.snapshot = 0;
    d.channel = "email";
    assert_int_equal(render_delivery(&renv, &d, false, &out, why, sizeof(why)), RENDER_FAIL);
    assert_non_null(strstr(why, "is for the webhook channel"));
    rendered_free(&out);
    d.channel = "webhook";
    assert_int_equal(render_delivery(&renv, &d, true, &out, why, sizeof(why)), RENDER_OK);
    rendered_free(&out);

    /* A snapshot that is gone: dead with a reason. */
    d.snapshot = snap + 100;
    assert_int_equal(render_delivery(&renv, &d, true, &out, why, sizeof(why)), RENDER_FAIL);
    assert_non_null(strstr(why, "is missing"));
    rendered_free(&out);

    ruleset_unref(v1);
    ruleset_unref(v2);
    config_free(cfg);
    store_close(st);
    rmrf(sdir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(partials_are_read_when_the_rules_load, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(missing_partial_is_a_load_error_at_the_tag, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(missing_nested_partial_is_located_in_the_partial,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(missing_partial_in_inline_text_points_into_the_rule_file,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(snapshot_decodes_to_the_same_rule, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(snapshot_hash_follows_content_not_audience, setup_dir,
                                        teardown_dir),
        cmocka_unit_test(store_keeps_snapshots_while_rows_may_be_sent),
        cmocka_unit_test(migration_keeps_old_rows_without_a_snapshot),
        cmocka_unit_test_setup_teardown(render_uses_the_snapshot_not_the_loaded_rules, setup_dir,
                                        teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
