/*
 * test_audience.c: the audience language against a real SQLite database.
 *
 * The fixture is ten customers with order stats, consents, tags and custom
 * attributes, in an in-memory database with the tables from store.h. Each
 * test compiles expressions, runs them with a fixed "today" and compares the
 * exact set of ext_ids that match; error tests check message and file:line:col;
 * the injection tests show that hostile text stays a value; the fuzz test
 * pushes thousands of random and mutated strings through the compiler.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "audience.h"
#include "util.h"

#define TODAY "2024-06-15"
#define RULE_FILE "rules/winback.yaml"
#define RULE_LINE 7
#define RULE_COL 11 /* after "audience: " */

static sqlite3 *db;

static const char *const known_attrs[] = {"points", "city", "store", "vip_since",
                                          "newsletter", "loyalty points", NULL};

static const char schema[] =
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, ext_id TEXT NOT NULL UNIQUE,"
    "  name TEXT, first_name TEXT, email TEXT, phone TEXT, birthday TEXT, tz TEXT,"
    "  tier TEXT, owner TEXT, created_at TEXT, updated_at TEXT,"
    "  attrs TEXT NOT NULL DEFAULT '{}');"
    "CREATE TABLE customer_tags (customer_id INTEGER NOT NULL, tag TEXT NOT NULL,"
    "  PRIMARY KEY (customer_id, tag)) WITHOUT ROWID;"
    "CREATE TABLE consents (customer_id INTEGER NOT NULL, channel TEXT NOT NULL,"
    "  granted INTEGER NOT NULL, updated_at TEXT, source TEXT,"
    "  PRIMARY KEY (customer_id, channel)) WITHOUT ROWID;"
    "CREATE TABLE customer_stats (customer_id INTEGER PRIMARY KEY,"
    "  orders_count INTEGER NOT NULL DEFAULT 0, total_cents INTEGER NOT NULL DEFAULT 0,"
    "  first_order_date TEXT, last_order_date TEXT);"
    "CREATE TABLE attribute_keys (key TEXT PRIMARY KEY) WITHOUT ROWID;";

/* id, ext_id, name, first_name, email, phone, birthday, tz, tier, owner, created_at, attrs */
static const char data[] =
    "INSERT INTO customers (id, ext_id, name, first_name, email, phone, birthday, tz, tier,"
    "  owner, created_at, attrs) VALUES"
    " (1, 'c01', 'Ann Lee', 'Ann', 'ann@example.com', '+8613800000001', '1990-03-15',"
    "  'Asia/Shanghai', 'high-value', 'alice', '2023-01-10T08:00:00Z',"
    "  '{\"points\":\"120\",\"city\":\"Shanghai\",\"store\":7,\"vip_since\":\"2020-05-01\","
    "    \"loyalty points\":50}'),"
    " (2, 'c02', 'Bob O''Neil', 'Bob', 'bob@example.org', NULL, '--12-25', 'Europe/London',"
    "  'potential', 'bob', '2023-06-01T00:00:00Z',"
    "  '{\"points\":\"99\",\"city\":\"London\",\"store\":\"7\"}'),"
    " (3, 'c03', 'Chen Wei', 'Wei', NULL, '+8613800000003', '1984-02-29', 'Asia/Shanghai',"
    "  'high-value', 'alice', '2022-11-11T11:11:11Z',"
    "  '{\"points\":300,\"city\":\"Beijing\",\"newsletter\":true}'),"
    " (4, 'c04', 'Dana', 'Dana', 'dana@example.com', NULL, NULL, NULL, NULL, NULL,"
    "  '2024-02-01T00:00:00Z', '{}'),"
    " (5, 'c05', 'Eve', 'Eve', 'eve@example.com', NULL, '1995-11-30', 'Europe/Paris',"
    "  'churned', 'bob', '2021-05-05T00:00:00Z', '{\"points\":\"abc\"}'),"
    " (6, 'c06', 'Frank', 'Frank', 'frank@example.com', NULL, NULL, 'America/New_York',"
    "  'potential', 'carol', '2023-03-03T00:00:00Z',"
    "  '{\"points\":\"1e3\",\"vip_since\":\"not a date\"}'),"
    " (7, 'c07', 'Gina', 'Gina', 'gina@shop.cn', NULL, '2000-06-15', 'Asia/Shanghai',"
    "  'high-value', 'carol', '2024-06-01T00:00:00Z', '{}'),"
    " (8, 'c08', 'Hao', 'Hao', 'hao@shop.cn', '+8613800000008', '1970-06-20', 'Asia/Shanghai',"
    "  'standard', 'alice', '2020-01-01T00:00:00Z', '{\"city\":\"Shanghai\"}'),"
    " (9, 'c09', 'Ivy', 'Ivy', 'promo%off@example.com', NULL, NULL, NULL, 'standard', NULL,"
    "  '2024-05-30T00:00:00Z', '{}'),"
    " (10, 'c10', 'x'' or 1=1 --', NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
    "  '2024-06-01T00:00:00Z', '{}');"
    "INSERT INTO customer_stats VALUES"
    " (1, 5, 125000, '2023-02-01', '2024-05-20'),"
    " (2, 1, 1999, '2024-01-15', '2024-01-15'),"
    " (3, 12, 560000, '2022-12-01', '2024-06-10'),"
    " (5, 2, 5000, '2021-06-01', '2023-01-01'),"
    " (6, 3, 30000, '2023-03-03', '2024-03-01'),"
    " (8, 8, 99900, '2022-01-01', '2024-06-14'),"
    " (9, 1, 1000, '2024-06-01', '2024-06-01');"
    "INSERT INTO consents (customer_id, channel, granted) VALUES"
    " (1, 'email', 1), (1, 'sms', 1), (2, 'email', 1), (2, 'sms', 0), (3, 'sms', 1),"
    " (5, 'email', 0), (6, 'email', 1), (8, 'email', 1), (8, 'sms', 1), (9, 'email', 1);"
    "INSERT INTO customer_tags VALUES"
    " (1, 'vip'), (3, 'vip'), (3, 'wholesale'), (6, 'churn-risk'), (8, 'vip');"
    "INSERT INTO attribute_keys VALUES ('points'), ('city'), ('store'), ('vip_since'),"
    " ('newsletter'), ('loyalty points');";

static int
setup_db(void **state)
{
    char *msg = NULL;
    (void)state;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        return -1;
    if (sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(db, data, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "fixture: %s\n", msg);
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int
teardown_db(void **state)
{
    (void)state;
    sqlite3_close(db);
    db = NULL;
    return 0;
}

static int64_t
count_rows(const char *table)
{
    char sql[128];
    sqlite3_stmt *st;
    int64_t n = -1;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Binds a's parameters from index `first` on, as the store does
 * (store_eval.c): the next free index, or audience_param's error. */
static int
bind_params(const struct audience *a, sqlite3_stmt *st, int first, const char *today)
{
    int idx = first;
    for (size_t k = 0; k < a->nparams; k++, idx++) {
        struct aud_value v;
        int rc = audience_param(a, k, today, &v);
        if (rc < 0)
            return rc;
        if (v.kind == AUD_INT)
            rc = sqlite3_bind_int64(st, idx, v.i);
        else if (v.kind == AUD_REAL)
            rc = sqlite3_bind_double(st, idx, v.r);
        else
            rc = sqlite3_bind_text(st, idx, v.text, (int)v.len, SQLITE_TRANSIENT);
        if (rc != SQLITE_OK)
            return rc == SQLITE_RANGE ? -ERANGE : -EIO;
    }
    return idx;
}

/* Runs a compiled audience; returns the matching ext_ids, space-separated in
 * order, as a malloc'd string. */
static char *
select_ids(const struct audience *a, const char *today)
{
    struct sbuf q, ids;
    sqlite3_stmt *st = NULL;
    int rc;

    sbuf_init(&q);
    sbuf_init(&ids);
    sbuf_add(&ids, "", 0);
    sbuf_printf(&q, "SELECT c.ext_id FROM %s WHERE %s ORDER BY c.ext_id",
                audience_from_clause(), a->sql);
    rc = sqlite3_prepare_v2(db, q.s, -1, &st, NULL);
    if (rc != SQLITE_OK)
        fail_msg("prepare failed: %s\nSQL: %s", sqlite3_errmsg(db), q.s);
    assert_int_equal(sqlite3_bind_parameter_count(st), (int)a->nparams);
    assert_int_equal(bind_params(a, st, 1, today), (int)a->nparams + 1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        sbuf_printf(&ids, "%s%s", ids.len ? " " : "", (const char *)sqlite3_column_text(st, 0));
    if (rc != SQLITE_DONE)
        fail_msg("step failed: %s\nSQL: %s", sqlite3_errmsg(db), q.s);
    sqlite3_finalize(st);
    sbuf_free(&q);
    return sbuf_steal(&ids);
}

static void
expect_ids_on(const char *expr, const char *today, const char *want)
{
    struct audience *a = NULL;
    struct nerr err;
    char buf[2048], *got;
    nerr_clear(&err);
    if (audience_compile(expr, RULE_FILE, RULE_LINE, RULE_COL, known_attrs, &a, &err) != 0) {
        nerr_format(&err, buf, sizeof(buf));
        fail_msg("%s: did not compile:\n%s", expr, buf);
    }
    got = select_ids(a, today);
    if (strcmp(got, want) != 0)
        fail_msg("%s\n  want [%s]\n  got  [%s]\n  SQL: %s", expr, want, got, a->sql);
    free(got);
    audience_free(a);
}

static void
expect_ids(const char *expr, const char *want)
{
    expect_ids_on(expr, TODAY, want);
}

/* Compiling must fail with exactly this message at this line:col, and a hint. */
static void
expect_error(const char *expr, int line, int col, const char *msg)
{
    struct audience *a = (struct audience *)0x1;
    struct nerr err;
    int r;
    nerr_clear(&err);
    r = audience_compile(expr, RULE_FILE, RULE_LINE, RULE_COL, known_attrs, &a, &err);
    if (r == 0)
        fail_msg("%s: compiled to %s, expected \"%s\"", expr, a->sql, msg);
    assert_int_equal(r, -EINVAL);
    assert_null(a);
    if (strcmp(err.msg, msg) != 0 || err.line != line || err.col != col)
        fail_msg("%s\n  want %d:%d: %s\n  got  %d:%d: %s", expr, line, col, msg, err.line,
                 err.col, err.msg);
    assert_string_equal(err.file, RULE_FILE);
    assert_true(err.hint[0] != '\0');
    assert_true(err.src_line[0] != '\0');
}

static void
expect_hint(const char *expr, const char *hint)
{
    struct audience *a = NULL;
    struct nerr err;
    nerr_clear(&err);
    assert_int_equal(audience_compile(expr, RULE_FILE, RULE_LINE, RULE_COL, known_attrs, &a,
                                      &err),
                     -EINVAL);
    if (strcmp(err.hint, hint) != 0)
        fail_msg("%s\n  want hint: %s\n  got  hint: %s", expr, hint, err.hint);
}

#define ALL "c01 c02 c03 c04 c05 c06 c07 c08 c09 c10"

/* ---- selection ------------------------------------------------------------- */

static void
test_empty_expression_selects_everyone(void **state)
{
    struct audience *a = NULL;
    (void)state;
    expect_ids("", ALL);
    expect_ids("   \n\t", ALL);
    assert_int_equal(audience_compile(NULL, RULE_FILE, 1, 1, NULL, &a, NULL), 0);
    assert_string_equal(a->sql, "1");
    assert_int_equal(a->nparams, 0);
    assert_string_equal(a->source, "");
    audience_free(a);
}

static void
test_text_equality_and_inequality(void **state)
{
    (void)state;
    expect_ids("tier = 'high-value'", "c01 c03 c07");
    expect_ids("tier == 'high-value'", "c01 c03 c07");
    expect_ids("TIER = 'high-value'", "c01 c03 c07");
    expect_ids("'high-value' = tier", "c01 c03 c07");
    expect_ids("id = 'c03'", "c03");
    expect_ids("owner = 'alice'", "c01 c03 c08");
    expect_ids("name = 'Bob O''Neil'", "c02");
    expect_ids("first_name > 'F' and first_name < 'I'", "c06 c07 c08");
}

static void
test_not_equal_includes_missing_values(void **state)
{
    (void)state;
    /* c04 and c10 have no tier: they are "not high-value" too. */
    expect_ids("tier != 'high-value'", "c02 c04 c05 c06 c08 c09 c10");
    expect_ids("tier <> 'high-value'", "c02 c04 c05 c06 c08 c09 c10");
    expect_ids("not tier = 'high-value'", "c02 c04 c05 c06 c08 c09 c10");
}

static void
test_in_and_not_in(void **state)
{
    (void)state;
    expect_ids("tier in ('high-value', 'potential')", "c01 c02 c03 c06 c07");
    expect_ids("tier IN ('high-value','potential')", "c01 c02 c03 c06 c07");
    expect_ids("tier not in ('high-value', 'potential')", "c04 c05 c08 c09 c10");
    expect_ids("id in ('c01', 'c09', 'nobody')", "c01 c09");
    expect_ids("orders_count in (1, '2', 3)", "c02 c05 c06 c09");
}

static void
test_between_is_inclusive_and_not_between_negates(void **state)
{
    (void)state;
    expect_ids("orders_count between 2 and 5", "c01 c05 c06");
    expect_ids("orders_count not between 2 and 5", "c02 c03 c04 c07 c08 c09 c10");
    expect_ids("last_order_date between '2024-01-01' and '2024-05-31'", "c01 c02 c06");
    expect_ids("total_spent between 19.99 and 50", "c02 c05");
}

static void
test_null_tests(void **state)
{
    (void)state;
    expect_ids("email is null", "c03 c10");
    expect_ids("email IS NOT NULL", "c01 c02 c04 c05 c06 c07 c08 c09");
    expect_ids("last_order_date is null", "c04 c07 c10");
    expect_ids("phone is not null and tier is not null", "c01 c03 c08");
}

static void
test_like_patterns_and_escapes(void **state)
{
    (void)state;
    expect_ids("email like '%@shop.cn'", "c07 c08");
    expect_ids("name like 'a%'", "c01"); /* ASCII case-insensitive, as in SQLite */
    expect_ids("email like '%\\%%'", "c09");
    expect_ids("email like 'promo\\_off%'", "");
    expect_ids("email not like '%@example.com'", "c02 c03 c07 c08 c10");
}

static void
test_order_stats_count_missing_as_zero(void **state)
{
    (void)state;
    expect_ids("orders_count = 0", "c04 c07 c10");
    expect_ids("total_spent < 1", "c04 c07 c10");
    expect_ids("orders_count >= 5", "c01 c03 c08");
    expect_ids("orders_count > '4'", "c01 c03 c08");
}

static void
test_total_spent_is_in_currency_units(void **state)
{
    (void)state;
    expect_ids("total_spent = 19.99", "c02");
    expect_ids("total_spent >= 1000", "c01 c03");
    expect_ids("total_spent > '999'", "c01 c03");
    expect_ids("total_spent >= 999", "c01 c03 c08");
    expect_ids("total_spent < 1.5e1", "c04 c07 c09 c10");
}

static void
test_consents_need_a_granted_row(void **state)
{
    (void)state;
    expect_ids("consents('email')", "c01 c02 c06 c08 c09");
    expect_ids("consents('sms')", "c01 c03 c08");
    expect_ids("not consents('email')", "c03 c04 c05 c07 c10");
    expect_ids("consents('email') = false", "c03 c04 c05 c07 c10");
    expect_ids("consents('webhook')", "");
    expect_ids("CONSENTS('sms') and email is not null", "c01 c08");
}

static void
test_has_tag(void **state)
{
    (void)state;
    expect_ids("has_tag('vip')", "c01 c03 c08");
    expect_ids("has_tag('vip') and not has_tag('wholesale')", "c01 c08");
    expect_ids("has_tag('VIP')", ""); /* tags are exact */
    expect_ids("has_tag('churn-risk') or has_tag('wholesale')", "c03 c06");
}

static void
test_days_since_counts_whole_days_to_today(void **state)
{
    (void)state;
    expect_ids("days_since(last_order_date) >= 90", "c02 c05 c06");
    expect_ids("days_since(last_order_date) = 26", "c01");
    expect_ids("days_since(last_order_date) = 531", "c05");
    expect_ids("days_since(last_order_date) < 7", "c03 c08");
    expect_ids("days_since(created_at) <= 15", "c07 c10");
    /* The winback rule: lapsed, has ordered, may be emailed. */
    expect_ids("days_since(last_order_date) >= 90 and orders_count >= 1 and consents('email')",
               "c02 c06");
    /* Today moves, the answer moves. */
    expect_ids_on("days_since(last_order_date) >= 90", "2024-08-19", "c01 c02 c05 c06");
    /* A custom attribute that is not a date counts as missing. */
    expect_ids("days_since(vip_since) > 365", "c01");
    expect_ids("days_since(attr('vip_since')) = 1506", "c01");
}

static void
test_days_until_anniversary(void **state)
{
    (void)state;
    expect_ids("days_until_anniversary(birthday) <= 7", "c07 c08");
    expect_ids("days_until_anniversary(birthday) = 0", "c07");
    expect_ids("days_until_anniversary(birthday) = 193", "c02"); /* '--12-25' */
    expect_ids("days_until_anniversary(birthday) = 273", "c01"); /* into next year */
    /* Feb 29: on the day in a leap year, on Mar 1 in a common year. */
    expect_ids_on("days_until_anniversary(birthday) = 1", "2024-02-28", "c03");
    expect_ids_on("days_until_anniversary(birthday) = 0", "2024-02-29", "c03");
    expect_ids_on("days_until_anniversary(birthday) = 1", "2025-02-28", "c03");
    expect_ids_on("days_until_anniversary(birthday) = 0", "2025-03-01", "c03");
}

static void
test_custom_attributes(void **state)
{
    (void)state;
    /* "120" and "1e3" are numbers to an unquoted number; "abc" is not. */
    expect_ids("points > 100", "c01 c03 c06");
    expect_ids("points < 100", "c02");
    expect_ids("points = 120", "c01");
    expect_ids("points between 100 and 500", "c01 c03");
    expect_ids("points in (99, 300)", "c02 c03");
    /* A quoted value compares as text, whatever the JSON type. */
    expect_ids("store = '7'", "c01 c02");
    expect_ids("store = 7", "c01 c02");
    expect_ids("city = 'Shanghai'", "c01 c08");
    expect_ids("city in ('London', 'Beijing')", "c02 c03");
    expect_ids("city not in ('London', 'Beijing')", "c01 c04 c05 c06 c07 c08 c09 c10");
    expect_ids("city is null", "c04 c05 c06 c07 c09 c10");
    expect_ids("city like 'shang%'", "c01 c08");
    expect_ids("newsletter = true", "c03");
    /* attr() reaches keys that are not identifiers, or not known yet. */
    expect_ids("attr('loyalty points') >= 50", "c01");
    expect_ids("attr('city') = 'Shanghai'", "c01 c08");
    expect_ids("attr('never.seen[0]') is null", ALL);
}

static void
test_attribute_names_do_not_shadow_fields(void **state)
{
    struct audience *a = NULL;
    static const char *const attrs[] = {"tier", "Region", NULL};
    struct nerr err;
    (void)state;
    assert_int_equal(audience_compile("tier = 'x' and Region = 'y'", NULL, 1, 1, attrs, &a, &err),
                     0);
    assert_non_null(strstr(a->sql, "c.tier"));
    assert_int_equal(a->nparams, 3); /* 'x', the path of Region, 'y' */
    assert_string_equal(a->params[1].text, "$.\"Region\"");
    audience_free(a);
    /* Attribute names are case-sensitive, unlike fields. */
    assert_int_equal(audience_compile("region = 'y'", NULL, 1, 1, attrs, &a, &err), -EINVAL);
    assert_string_equal(err.msg, "unknown field 'region'");
    assert_string_equal(err.hint, "did you mean 'Region'?");
}

static void
test_precedence_not_and_or(void **state)
{
    (void)state;
    /* and binds tighter than or */
    expect_ids("tier = 'potential' or tier = 'standard' and consents('sms')", "c02 c06 c08");
    expect_ids("(tier = 'potential' or tier = 'standard') and consents('sms')", "c08");
    /* not binds tighter than and, looser than comparisons */
    expect_ids("not tier = 'high-value' and has_tag('vip')", "c08");
    expect_ids("not (tier = 'high-value' and has_tag('vip'))", "c02 c04 c05 c06 c07 c08 c09 c10");
    expect_ids("not not consents('sms')", "c01 c03 c08");
    expect_ids("TIER = 'high-value' AND CONSENTS('sms') Or Has_Tag('vip')", "c01 c03 c08");
    expect_ids("true", ALL);
    expect_ids("false", "");
    expect_ids("not false and (false or true)", ALL);
    expect_ids("((((tier = 'churned'))))", "c05");
}

static void
test_multiline_expression(void **state)
{
    (void)state;
    expect_ids("tier = 'high-value'\n  and consents('sms')\n  and not has_tag('vip')", "");
    expect_ids("tier = 'high-value'\r\n  and consents('sms')", "c01 c03");
}

/* ---- injection --------------------------------------------------------------- */

static void
expect_value_not_sql(const char *expr, const char *want)
{
    struct audience *a = NULL;
    struct nerr err;
    assert_int_equal(audience_compile(expr, RULE_FILE, 1, 1, known_attrs, &a, &err), 0);
    /* None of the hostile text reaches the SQL. */
    assert_null(strstr(a->sql, "1=1"));
    assert_null(strstr(a->sql, "drop"));
    assert_null(strstr(a->sql, "--"));
    assert_null(strstr(a->sql, ";"));
    audience_free(a);
    expect_ids(expr, want);
}

static void
test_injection_attempts_stay_values(void **state)
{
    (void)state;
    /* c10's name is literally "x' or 1=1 --": it alone matches. */
    expect_value_not_sql("name = 'x'' or 1=1 --'", "c10");
    expect_value_not_sql("name = 'nobody'' or ''1''=''1'", "");
    expect_value_not_sql("tier = 'a''); drop table customers; --'", "");
    expect_value_not_sql("has_tag('vip'' or 1=1 --')", "");
    expect_value_not_sql("attr('a'') or 1=1 --') = 'x'", "");
    expect_value_not_sql("name like '%'' or 1=1 --'", "c10");
    expect_value_not_sql("tier in ('x'') or 1=1; drop table customers; --')", "");
    expect_value_not_sql("id = '1 or 1=1'", "");
    assert_int_equal(count_rows("customers"), 10);
    assert_int_equal(count_rows("consents"), 10);
}

static void
test_injection_attempts_outside_strings_are_rejected(void **state)
{
    (void)state;
    expect_error("tier = 'a'); drop table customers; --", RULE_LINE, RULE_COL + 10,
                 "unmatched ')'");
    expect_error("tier = 'gold'; drop table customers", RULE_LINE, RULE_COL + 13,
                 "unexpected character ';'");
    expect_error("tier = 'x' union select ext_id from customers", RULE_LINE, RULE_COL + 11,
                 "unexpected 'union' after a complete condition");
    expect_error("1=1 or tier = 'x' -- comment", RULE_LINE, RULE_COL + 18,
                 "unexpected character '-'");
    expect_error("tier = 'x' /* c */", RULE_LINE, RULE_COL + 11, "unexpected character '/'");
    expect_error("attr('x\"); drop table customers; --') = 1", RULE_LINE, RULE_COL + 5,
                 "attribute names cannot contain '\"'");
    expect_error("consents('email''; drop table consents; --')", RULE_LINE, RULE_COL + 9,
                 "'email''; drop table consents; --' is not a channel name");
    /* An unknown bare name is read as a custom attribute (with a warning):
     * its name is a bound JSON path, never SQL text. */
    {
        struct audience *a = NULL;
        struct nerr err;
        nerr_clear(&err);
        assert_int_equal(audience_compile("sqlite_master = 'x'", RULE_FILE, RULE_LINE, RULE_COL,
                                          known_attrs, &a, &err),
                         0);
        assert_null(strstr(a->sql, "sqlite_master"));
        assert_non_null(a->warnings);
        assert_non_null(strstr(a->warnings, "warning: 'sqlite_master' is not a customer field"));
        audience_free(a);
    }
    expect_error("c.tier = 'x'", RULE_LINE, RULE_COL, "unknown field 'c'");
    expect_error("tier = x'00'", RULE_LINE, RULE_COL + 7, "unknown field 'x'");
    assert_int_equal(count_rows("customers"), 10);
    assert_int_equal(count_rows("consents"), 10);
}

static void
test_sql_contains_only_placeholders_for_literals(void **state)
{
    struct audience *a = NULL;
    struct nerr err;
    (void)state;
    assert_int_equal(audience_compile("tier in ('gold', 'silver') and total_spent > 12.5 and "
                                      "points >= 7 and has_tag('vip') and consents('sms')",
                                      NULL, 1, 1, known_attrs, &a, &err),
                     0);
    assert_null(strstr(a->sql, "gold"));
    assert_null(strstr(a->sql, "12.5"));
    assert_null(strstr(a->sql, "points"));
    assert_null(strstr(a->sql, "vip"));
    assert_null(strstr(a->sql, "'sms'"));
    assert_int_equal(a->params[0].kind, AUD_TEXT);
    assert_string_equal(a->params[0].text, "gold");
    assert_int_equal(a->params[2].kind, AUD_REAL);
    assert_true(a->params[2].r == 12.5);
    audience_free(a);
}

/* ---- errors -------------------------------------------------------------------- */

static void
test_errors_point_at_the_offending_column(void **state)
{
    (void)state;
    expect_error("tier = ", RULE_LINE, RULE_COL + 7, "expected a value after '='");
    expect_error("tier =", RULE_LINE, RULE_COL + 6, "expected a value after '='");
    expect_error("orders_count >= and", RULE_LINE, RULE_COL + 16, "expected a value after '>='");
    expect_error("tier in 'a'", RULE_LINE, RULE_COL + 8, "expected '(' after 'in'");
    expect_error("tier in ()", RULE_LINE, RULE_COL + 9, "expected a value after '('");
    expect_error("tier in ('a' 'b')", RULE_LINE, RULE_COL + 13,
                 "expected ',' or ')' in the list, found 'b'");
    expect_error("tier in ('a', tier)", RULE_LINE, RULE_COL + 14,
                 "only values can be listed in 'in (...)'");
    expect_error("name = 'Ann", RULE_LINE, RULE_COL + 7, "unterminated string");
    expect_error("tier = \"gold\"", RULE_LINE, RULE_COL + 7, "strings are written in single quotes");
    expect_error("tier = 'gold' extra", RULE_LINE, RULE_COL + 14,
                 "unexpected 'extra' after a complete condition");
    expect_error("tier = 'a' and", RULE_LINE, RULE_COL + 14, "expected a condition after 'and'");
    expect_error("(tier = 'a'", RULE_LINE, RULE_COL + 11,
                 "expected ')' to close the '(' at 7:11, found the end of the expression");
    expect_error("tier", RULE_LINE, RULE_COL, "'tier' is not a condition on its own");
    expect_error("tier gold", RULE_LINE, RULE_COL + 5,
                 "expected a comparison after 'tier', found 'gold'");
    expect_error("tier not 'a'", RULE_LINE, RULE_COL + 9,
                 "expected 'in', 'between' or 'like' after 'not', found 'a'");
    expect_error("email is 'x'", RULE_LINE, RULE_COL + 9,
                 "expected 'null' or 'not null' after 'is', found 'x'");
    expect_error("email = null", RULE_LINE, RULE_COL + 8,
                 "use 'is null' to test for a missing value");
    expect_error("email like name", RULE_LINE, RULE_COL + 11,
                 "expected a quoted pattern after 'like'");
    expect_error("orders_count between 1 or 5", RULE_LINE, RULE_COL + 23,
                 "expected 'and' after the lower bound of 'between', found 'or'");
    expect_error("tier = 'a' && consents('sms')", RULE_LINE, RULE_COL + 11, "unexpected '&'");
    expect_error("!consents('sms')", RULE_LINE, RULE_COL, "unexpected '!'");
    expect_error("orders_count > 5abc", RULE_LINE, RULE_COL + 15, "invalid number '5abc'");
    expect_error("orders_count > 99999999999999999999", RULE_LINE, RULE_COL + 15,
                 "number out of range '99999999999999999999'");
}

static void
test_function_errors(void **state)
{
    (void)state;
    expect_error("consents(email)", RULE_LINE, RULE_COL + 9,
                 "consents() takes a quoted channel name, e.g. consents('email')");
    expect_error("has_tag(vip)", RULE_LINE, RULE_COL + 8,
                 "has_tag() takes a quoted tag, e.g. has_tag('vip')");
    expect_error("consents('email', 'sms')", RULE_LINE, RULE_COL,
                 "consents() takes 1 argument, got 2");
    expect_error("days_since() > 3", RULE_LINE, RULE_COL, "days_since() takes 1 argument, got 0");
    expect_error("consents('email'", RULE_LINE, RULE_COL + 16,
                 "missing ')' after the argument of consents()");
    expect_error("foo('x')", RULE_LINE, RULE_COL, "unknown function 'foo'");
    expect_error("consent('email')", RULE_LINE, RULE_COL, "unknown function 'consent'");
    expect_hint("consent('email')", "did you mean 'consents'?");
    expect_error("tier('x')", RULE_LINE, RULE_COL, "'tier' is a field, not a function");
    expect_error("consents('emial')", RULE_LINE, RULE_COL + 9, "unknown channel 'emial'");
    expect_hint("consents('emial')", "did you mean 'email'?");
    expect_error("days_since(tier) > 3", RULE_LINE, RULE_COL + 11,
                 "days_since() takes a date field, but 'tier' is not a date");
    expect_error("days_since('2024-01-01') > 3", RULE_LINE, RULE_COL + 11,
                 "days_since() takes a date field, e.g. days_since(last_order_date)");
    expect_error("days_since(last_order_date)", RULE_LINE, RULE_COL,
                 "days_since() is not a condition on its own");
    expect_error("attr(points) > 1", RULE_LINE, RULE_COL + 5,
                 "attr() takes a quoted attribute name, e.g. attr('loyalty_points')");
    expect_error("attr('') > 1", RULE_LINE, RULE_COL + 5, "attr() needs a non-empty name");
}

static void
test_unknown_fields_suggest_the_nearest_name(void **state)
{
    (void)state;
    expect_error("teir = 'gold'", RULE_LINE, RULE_COL, "unknown field 'teir'");
    expect_hint("teir = 'gold'", "did you mean 'tier'?");
    expect_hint("Teir = 'gold'", "did you mean 'tier'?");
    expect_hint("pionts > 5", "did you mean 'points'?");
    expect_hint("loyalty_points > 5", "did you mean attr('loyalty points')?");
    expect_hint("has_tagg('vip')", "did you mean 'has_tag'?");
    expect_hint("days_snce(birthday) > 1", "did you mean 'days_since'?");
    expect_hint("tier = 'a' adn consents('sms')", "did you mean 'and'?");
    /* Close to nothing known: a custom attribute not imported yet, a warning. */
    {
        struct audience *a = NULL;
        assert_int_equal(audience_compile("zzzzzz = 1", RULE_FILE, RULE_LINE, RULE_COL,
                                          known_attrs, &a, NULL),
                         0);
        assert_non_null(a->warnings);
        assert_non_null(strstr(a->warnings, "it is read as the custom attribute attr('zzzzzz')"));
        audience_free(a);
    }
}

static void
test_type_errors(void **state)
{
    (void)state;
    expect_error("orders_count > 'many'", RULE_LINE, RULE_COL + 15,
                 "orders_count is a number, but 'many' is not");
    expect_error("last_order_date > '2024-13-01'", RULE_LINE, RULE_COL + 18,
                 "last_order_date is a date, but '2024-13-01' is not");
    expect_error("birthday = 19900315", RULE_LINE, RULE_COL + 11,
                 "birthday is a date; write dates in quotes");
    expect_error("orders_count = tier", RULE_LINE, RULE_COL + 15,
                 "cannot compare orders_count (a number) with tier (text)");
    expect_error("consents('sms') = 'yes'", RULE_LINE, RULE_COL + 18,
                 "consents() is true or false, not text");
    expect_error("tier = true", RULE_LINE, RULE_COL + 7, "tier is text, not true or false");
    /* Dates may be plain, yearless or timestamps. */
    expect_ids("birthday = '--12-25'", "c02");
    expect_ids("created_at < '2021-01-01T00:00:00Z'", "c08");
    expect_ids("id = 1", ""); /* a number against text compares as its spelling */
}

static void
test_error_positions_count_characters_and_lines(void **state)
{
    char buf[2048];
    struct audience *a = NULL;
    struct nerr err;
    (void)state;
    /* Line 2 of the expression is line 8 of the file, counted from column 1. */
    expect_error("tier = 'gold'\n  and teir = 'x'", RULE_LINE + 1, 7, "unknown field 'teir'");
    /* Columns count UTF-8 characters, not bytes. */
    expect_error("name = '\xe5\xbc\xa0\xe4\xb8\x89' and teir = 1", RULE_LINE, RULE_COL + 16,
                 "unknown field 'teir'");
    expect_error("name = '\xff'", RULE_LINE, RULE_COL + 8,
                 "invalid UTF-8 in the audience expression");
    expect_error("tier in \xef\xbc\x88'a')", RULE_LINE, RULE_COL + 8,
                 "full-width '\xef\xbc\x88' is not allowed here");
    /* A no-break space is just a space. */
    expect_ids("tier\xc2\xa0= 'churned'", "c05");

    /* The formatted error shows the line with a caret under the column. */
    nerr_clear(&err);
    assert_int_equal(audience_compile("tier = ", RULE_FILE, RULE_LINE, RULE_COL, NULL, &a, &err),
                     -EINVAL);
    nerr_format(&err, buf, sizeof(buf));
    assert_string_equal(buf, "rules/winback.yaml:7:18: error: expected a value after '='\n"
                             "              tier = \n"
                             "                     ^\n"
                             "    e.g. 'gold', 42, 19.99, true, or a field such as tier\n");
    /* Unknown position: the expression's own line and column. */
    assert_int_equal(audience_compile("x", NULL, 0, 0, NULL, &a, &err), -EINVAL);
    assert_int_equal(err.line, 1);
    assert_int_equal(err.col, 1);
}

static void
test_limits(void **state)
{
    struct sbuf b;
    struct audience *a = NULL;
    struct nerr err;
    char *ids;
    (void)state;
    /* Deep nesting is refused, not a stack overflow. */
    sbuf_init(&b);
    for (int i = 0; i < 200; i++)
        sbuf_adds(&b, "(");
    sbuf_adds(&b, "true");
    for (int i = 0; i < 200; i++)
        sbuf_adds(&b, ")");
    assert_int_equal(audience_compile(b.s, NULL, 1, 1, NULL, &a, &err), -EINVAL);
    assert_string_equal(err.msg, "expression nested too deeply (more than 64 levels)");
    sbuf_free(&b);
    sbuf_init(&b);
    for (int i = 0; i < 100; i++)
        sbuf_adds(&b, "not ");
    sbuf_adds(&b, "true");
    assert_int_equal(audience_compile(b.s, NULL, 1, 1, NULL, &a, &err), -EINVAL);
    sbuf_free(&b);

    /* Long flat chains and lists are fine. */
    sbuf_init(&b);
    sbuf_adds(&b, "tier = 'churned'");
    for (int i = 0; i < 3000; i++)
        sbuf_printf(&b, " or id = 'x%d'", i);
    assert_int_equal(audience_compile(b.s, NULL, 1, 1, NULL, &a, &err), 0);
    ids = select_ids(a, TODAY);
    assert_string_equal(ids, "c05");
    free(ids);
    audience_free(a);
    sbuf_free(&b);

    /* Absurdly long input is refused up front. */
    sbuf_init(&b);
    for (int i = 0; i < 70000; i++)
        sbuf_addc(&b, ' ');
    sbuf_adds(&b, "true");
    assert_int_equal(audience_compile(b.s, NULL, 1, 1, NULL, &a, &err), -E2BIG);
    assert_null(a);
    sbuf_free(&b);
}

/* ---- API ---------------------------------------------------------------------------- */

static void
test_params_resolve_today_and_bind_after_others(void **state)
{
    struct audience *a = NULL;
    struct nerr err;
    struct aud_value v;
    sqlite3_stmt *st;
    struct sbuf q;
    (void)state;
    assert_int_equal(audience_compile("days_since(last_order_date) < 30 and tier = 'high-value'",
                                      NULL, 1, 1, NULL, &a, &err),
                     0);
    assert_int_equal(a->nparams, 3); /* today, 30, 'high-value' */
    assert_int_equal(a->params[0].kind, AUD_NOW_DATE);
    assert_int_equal(a->params[1].kind, AUD_INT);
    assert_int_equal(a->params[1].i, 30);
    /* Today comes out as text; the others as compiled. */
    assert_int_equal(audience_param(a, 0, TODAY, &v), 0);
    assert_int_equal(v.kind, AUD_TEXT);
    assert_int_equal(v.len, 10);
    assert_memory_equal(v.text, TODAY, 10);
    assert_int_equal(audience_param(a, 1, TODAY, &v), 0);
    assert_int_equal(v.kind, AUD_INT);
    assert_int_equal(v.i, 30);
    assert_int_equal(audience_param(a, 2, NULL, &v), 0);
    assert_int_equal(v.kind, AUD_TEXT);
    assert_int_equal(v.len, strlen("high-value"));
    assert_memory_equal(v.text, "high-value", v.len);
    /* days_since needs a real date. */
    assert_int_equal(audience_param(a, 0, NULL, &v), -EINVAL);
    assert_int_equal(audience_param(a, 0, "2024-6-15", &v), -EINVAL);
    assert_int_equal(audience_param(a, 0, "2024-02-30", &v), -EINVAL);
    assert_int_equal(audience_param(a, 3, TODAY, &v), -ERANGE);
    assert_int_equal(audience_param(NULL, 0, TODAY, &v), -EINVAL);

    /* The parameters are numbered by position: they bind after a caller's own. */
    sbuf_init(&q);
    sbuf_printf(&q, "SELECT count(*) FROM %s WHERE c.owner = ? AND %s", audience_from_clause(),
                a->sql);
    assert_int_equal(sqlite3_prepare_v2(db, q.s, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_bind_text(st, 1, "alice", -1, SQLITE_STATIC), SQLITE_OK);
    assert_int_equal(bind_params(a, st, 2, TODAY), 5);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 2); /* c01, c03 */
    sqlite3_reset(st);
    /* Too many parameters for the statement. */
    assert_int_equal(bind_params(a, st, 3, TODAY), -ERANGE);
    sqlite3_finalize(st);
    sbuf_free(&q);
    audience_free(a);

    /* Without date functions, today is not needed. */
    assert_int_equal(audience_compile("tier = 'x'", NULL, 1, 1, NULL, &a, &err), 0);
    assert_int_equal(audience_param(a, 0, NULL, &v), 0);
    assert_int_equal(v.kind, AUD_TEXT);
    assert_memory_equal(v.text, "x", 2);
    audience_free(a);
    audience_free(NULL);
}

static void
test_name_tables_and_from_clause(void **state)
{
    bool tier = false, consents = false;
    size_t n = 0;
    (void)state;
    assert_string_equal(audience_from_clause(),
                        "customers c LEFT JOIN customer_stats s ON s.customer_id = c.id");
    for (const char *const *f = audience_fields; *f; f++, n++)
        tier |= strcmp(*f, "tier") == 0;
    assert_int_equal(n, 14);
    for (const char *const *f = audience_functions; *f; f++)
        consents |= strcmp(*f, "consents") == 0;
    assert_true(tier);
    assert_true(consents);
}

static void
test_source_is_kept(void **state)
{
    struct audience *a = NULL;
    struct nerr err;
    (void)state;
    assert_int_equal(audience_compile("tier = 'x'", NULL, 1, 1, NULL, &a, &err), 0);
    assert_string_equal(a->source, "tier = 'x'");
    audience_free(a);
}

/* ---- fuzz -------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t
rng(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static const char *const fuzz_seeds[] = {
    "tier in ('high-value', 'potential') and consents('sms')",
    "days_since(last_order_date) >= 90 and orders_count >= 1 and consents('email')",
    "email is not null and (total_spent > 500 or orders_count between 3 and 10)",
    "not has_tag('vip') or name like 'A%'",
    "points > 100 and city not in ('London', 'Beijing')",
    "days_until_anniversary(birthday) <= 7 and attr('loyalty points') >= 50",
    "name = 'x'' or 1=1 --' and tier != 'gold'",
    "birthday = '--12-25' or created_at < '2021-01-01T00:00:00Z'",
    "(((tier = 'a') or (tier = 'b')) and not (email is null))",
    "store = 7 and newsletter = true and total_spent <= 19.99e0",
};

static const char *const fuzz_tokens[] = {
    "tier", "email", "orders_count", "total_spent", "last_order_date", "birthday", "points",
    "city", "store", "newsletter", "id", "and", "or", "not", "in", "between", "is", "null",
    "like", "true", "false", "(", ")", ",", "=", "!=", "<>", "<", "<=", ">", ">=", "==",
    "'gold'", "'2024-01-01'", "'%a%'", "''", "'x'' or 1=1'", "42", "-3.5", "1e3",
    "consents", "has_tag", "days_since", "days_until_anniversary", "attr", "('email')",
    "('vip')", "(birthday)", "('points')", "teir", "\xe5\xbc\xa0", "\xef\xbc\x88", "\"",
    "'", "!", "&&", "-", "0x1", "9223372036854775808",
};

#define PICK(arr) (arr)[rng() % (sizeof(arr) / sizeof((arr)[0]))]

static const char *const gen_values[] = {
    "tier", "email", "orders_count", "total_spent", "last_order_date", "birthday",
    "created_at", "id", "points", "city", "store", "newsletter", "attr('loyalty points')",
    "days_since(last_order_date)", "days_since(vip_since)", "days_until_anniversary(birthday)",
    "'gold'", "'2024-01-01'", "'12'", "42", "-3.5", "1e3", "true", "'--12-25'", "'x''y'",
};
static const char *const gen_literals[] = {
    "'gold'", "'2024-01-01'", "'12'", "42", "-3.5", "1e3", "0", "'--12-25'", "'x''y'", "''",
};
static const char *const gen_cmps[] = {"=", "==", "!=", "<>", "<", "<=", ">", ">="};

/* A random expression from the grammar: most are well-formed, some are
 * type errors; either way they go deep into the parser and the emitter. */
static void
gen_expr(struct sbuf *b, int depth);

static void
gen_cond(struct sbuf *b, int depth)
{
    switch (rng() % 10) {
    case 0:
        if (depth < 4) {
            sbuf_adds(b, "(");
            gen_expr(b, depth + 1);
            sbuf_adds(b, ")");
            break;
        }
        /* fall through */
    case 1:
        sbuf_adds(b, "not ");
        if (depth < 4)
            gen_cond(b, depth + 1);
        else
            sbuf_adds(b, "true");
        break;
    case 2:
        sbuf_printf(b, "%s %s %s", PICK(gen_values), PICK(gen_cmps), PICK(gen_values));
        break;
    case 3: {
        int n = 1 + (int)(rng() % 4);
        sbuf_printf(b, "%s %sin (", PICK(gen_values), rng() % 2 ? "not " : "");
        for (int i = 0; i < n; i++)
            sbuf_printf(b, "%s%s", i ? ", " : "", PICK(gen_literals));
        sbuf_adds(b, ")");
        break;
    }
    case 4:
        sbuf_printf(b, "%s %sbetween %s and %s", PICK(gen_values), rng() % 2 ? "not " : "",
                    PICK(gen_literals), PICK(gen_literals));
        break;
    case 5:
        sbuf_printf(b, "%s is %snull", PICK(gen_values), rng() % 2 ? "not " : "");
        break;
    case 6:
        sbuf_printf(b, "%s %slike '%%a_\\%%'", PICK(gen_values), rng() % 2 ? "not " : "");
        break;
    case 7:
        sbuf_adds(b, rng() % 2 ? "consents('email')" : "has_tag('vip')");
        break;
    case 8:
        sbuf_adds(b, rng() % 2 ? "true" : "false");
        break;
    default:
        sbuf_printf(b, "%s %s %s", PICK(gen_values), PICK(gen_cmps), PICK(gen_literals));
        break;
    }
}

static void
gen_expr(struct sbuf *b, int depth)
{
    int n = 1 + (int)(rng() % 3);
    for (int i = 0; i < n; i++) {
        if (i)
            sbuf_adds(b, rng() % 2 ? " and " : " OR ");
        gen_cond(b, depth);
    }
}

static void
mutate(struct sbuf *b)
{
    static const char interesting[] = "()',= <>!-9a_%\\\"\n\t";
    int edits = 1 + (int)(rng() % 4);
    for (int e = 0; e < edits; e++) {
        size_t pos = b->len ? rng() % b->len : 0;
        switch (rng() % 5) {
        case 0: /* replace with any byte but NUL */
            if (b->len)
                b->s[pos] = (char)(1 + rng() % 255);
            break;
        case 1: /* replace with a byte the grammar cares about */
            if (b->len)
                b->s[pos] = interesting[rng() % (sizeof(interesting) - 1)];
            break;
        case 2: /* delete a run */
            if (b->len) {
                size_t n = 1 + rng() % 6;
                if (pos + n > b->len)
                    n = b->len - pos;
                memmove(b->s + pos, b->s + pos + n, b->len - pos - n + 1);
                b->len -= n;
            }
            break;
        case 3: { /* insert a token */
            const char *t = fuzz_tokens[rng() % (sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]))];
            struct sbuf nb;
            sbuf_init(&nb);
            sbuf_add(&nb, b->s, pos);
            sbuf_adds(&nb, t);
            sbuf_adds(&nb, b->s + pos);
            sbuf_free(b);
            *b = nb;
            break;
        }
        default: /* truncate */
            b->s[pos] = '\0';
            b->len = pos;
            break;
        }
    }
}

static void
test_fuzz_never_crashes_and_always_yields_valid_sql(void **state)
{
    int ok = 0, bad = 0;
    (void)state;
    for (int iter = 0; iter < 6000; iter++) {
        struct sbuf b;
        struct audience *a = NULL;
        struct nerr err;
        int r, mode = iter % 5;

        sbuf_init(&b);
        sbuf_add(&b, "", 0);
        if (mode == 0) { /* random bytes */
            int n = (int)(rng() % 80);
            for (int i = 0; i < n; i++)
                sbuf_addc(&b, (char)(1 + rng() % 255));
        } else if (mode == 1) { /* a mutated real expression */
            sbuf_adds(&b, fuzz_seeds[rng() % (sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]))]);
            mutate(&b);
        } else if (mode >= 3) { /* from the grammar, sometimes mutated */
            gen_expr(&b, 0);
            if (mode == 4)
                mutate(&b);
        } else { /* a soup of tokens */
            int n = 1 + (int)(rng() % 12);
            for (int i = 0; i < n; i++) {
                sbuf_adds(&b, fuzz_tokens[rng() % (sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]))]);
                if (rng() % 4)
                    sbuf_addc(&b, ' ');
            }
        }

        nerr_clear(&err);
        r = audience_compile(b.s, RULE_FILE, RULE_LINE, RULE_COL, known_attrs, &a, &err);
        if (r == 0) {
            /* Whatever compiles must prepare and run. */
            char *ids = select_ids(a, TODAY);
            free(ids);
            audience_free(a);
            ok++;
        } else {
            if (r != -EINVAL && r != -E2BIG)
                fail_msg("unexpected return %d for [%s]", r, b.s);
            assert_null(a);
            assert_true(err.msg[0] != '\0');
            assert_true(err.line >= RULE_LINE);
            assert_true(err.col >= 1);
            bad++;
        }
        sbuf_free(&b);
    }
    print_message("fuzz: %d compiled, %d rejected\n", ok, bad);
    /* Both paths were exercised in earnest. */
    assert_true(ok > 800);
    assert_true(bad > 3000);
    assert_int_equal(count_rows("customers"), 10);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_expression_selects_everyone),
        cmocka_unit_test(test_text_equality_and_inequality),
        cmocka_unit_test(test_not_equal_includes_missing_values),
        cmocka_unit_test(test_in_and_not_in),
        cmocka_unit_test(test_between_is_inclusive_and_not_between_negates),
        cmocka_unit_test(test_null_tests),
        cmocka_unit_test(test_like_patterns_and_escapes),
        cmocka_unit_test(test_order_stats_count_missing_as_zero),
        cmocka_unit_test(test_total_spent_is_in_currency_units),
        cmocka_unit_test(test_consents_need_a_granted_row),
        cmocka_unit_test(test_has_tag),
        cmocka_unit_test(test_days_since_counts_whole_days_to_today),
        cmocka_unit_test(test_days_until_anniversary),
        cmocka_unit_test(test_custom_attributes),
        cmocka_unit_test(test_attribute_names_do_not_shadow_fields),
        cmocka_unit_test(test_precedence_not_and_or),
        cmocka_unit_test(test_multiline_expression),
        cmocka_unit_test(test_injection_attempts_stay_values),
        cmocka_unit_test(test_injection_attempts_outside_strings_are_rejected),
        cmocka_unit_test(test_sql_contains_only_placeholders_for_literals),
        cmocka_unit_test(test_errors_point_at_the_offending_column),
        cmocka_unit_test(test_function_errors),
        cmocka_unit_test(test_unknown_fields_suggest_the_nearest_name),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_error_positions_count_characters_and_lines),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_params_resolve_today_and_bind_after_others),
        cmocka_unit_test(test_name_tables_and_from_clause),
        cmocka_unit_test(test_source_is_kept),
        cmocka_unit_test(test_fuzz_never_crashes_and_always_yields_valid_sql),
    };
    return cmocka_run_group_tests(tests, setup_db, teardown_db);
}
