/*
 * test_import.c: customers and orders CSV import: counts, idempotence down to
 * the database bytes, every kind of bad row reported as NAME:LINE with the
 * line on which its record starts, all-or-nothing transactions, UTF-8,
 * attributes, tags, consents, order stats, progress, and a printed speed.
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
#include <time.h>
#include <unistd.h>

#include "import.h"
#include "store_internal.h"
#include "util.h"

struct fixture {
    char dir[64];
    char path[128];
    struct store *st;
};

static ntime_t fake_now;

static ntime_t
fixed_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

static int
setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    struct nerr err;
    snprintf(f->dir, sizeof(f->dir), "/tmp/nudge-test-import-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/nudge.db", f->dir);
    nerr_clear(&err);
    assert_int_equal(store_open(f->path, &f->st, &err), 0);
    fake_now = 1800000000; /* 2027-01-15T08:00:00Z */
    import_set_clock(fixed_clock, NULL);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char p[192];
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    store_close(f->st);
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    import_set_clock(NULL, NULL);
    return 0;
}

static char *
fixture_text(const char *name, size_t *len)
{
    const char *src = getenv("NUDGE_SRC");
    char *path = xasprintf("%s/tests/data/import/%s", src ? src : "../..", name);
    char *data = NULL;
    assert_int_equal(read_file(path, &data, len), 0);
    free(path);
    return data;
}

/* Every table's rows in a stable order, as text. */
static char *
dump(struct store *st)
{
    struct sbuf b;
    sqlite3_stmt *t;
    sbuf_init(&b);
    assert_int_equal(sqlite3_prepare_v2(st->db,
                                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                                        " ORDER BY name",
                                        -1, &t, NULL),
                     SQLITE_OK);
    while (sqlite3_step(t) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(t, 0);
        sqlite3_stmt *s;
        char *q = xasprintf("SELECT * FROM \"%s\"", name);
        struct sbuf order;
        int n;
        assert_int_equal(sqlite3_prepare_v2(st->db, q, -1, &s, NULL), SQLITE_OK);
        n = sqlite3_column_count(s);
        sqlite3_finalize(s);
        free(q);
        sbuf_init(&order);
        for (int i = 1; i <= n; i++)
            sbuf_printf(&order, "%s%d", i > 1 ? ", " : "", i);
        q = xasprintf("SELECT * FROM \"%s\" ORDER BY %s", name, order.s);
        sbuf_free(&order);
        assert_int_equal(sqlite3_prepare_v2(st->db, q, -1, &s, NULL), SQLITE_OK);
        sbuf_printf(&b, "== %s\n", name);
        while (sqlite3_step(s) == SQLITE_ROW) {
            for (int i = 0; i < n; i++) {
                const unsigned char *v = sqlite3_column_text(s, i);
                sbuf_printf(&b, "%s%s", i ? "|" : "", v ? (const char *)v : "NULL");
            }
            sbuf_addc(&b, '\n');
        }
        sqlite3_finalize(s);
        free(q);
    }
    sqlite3_finalize(t);
    return sbuf_steal(&b);
}

/* The database file's bytes as SQLite would serialize them. */
static unsigned char *
image(struct store *st, sqlite3_int64 *size)
{
    unsigned char *p = sqlite3_serialize(st->db, "main", size, 0);
    assert_non_null(p);
    return p;
}

static char *
q_text(struct store *st, const char *sql)
{
    sqlite3_stmt *s;
    char *out = NULL;
    assert_int_equal(sqlite3_prepare_v2(st->db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
        out = xstrdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
}

static int64_t
q_int(struct store *st, const char *sql)
{
    sqlite3_stmt *s;
    int64_t v = -999;
    assert_int_equal(sqlite3_prepare_v2(st->db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

#define assert_query(st, sql, expect)                                                              \
    do {                                                                                           \
        char *got_ = q_text((st), (sql));                                                          \
        if ((expect) == NULL) {                                                                    \
            assert_null(got_);                                                                     \
        } else {                                                                                   \
            assert_non_null(got_);                                                                 \
            assert_string_equal(got_, (const char *)(expect));                                     \
        }                                                                                          \
        free(got_);                                                                                \
    } while (0)

static int
imp_c(struct fixture *f, const char *name, const char *csv, struct import_stats *stats,
      char **errors)
{
    return import_customers(f->st, name, csv, strlen(csv), stats, errors, NULL, NULL);
}

static int
imp_o(struct fixture *f, const char *name, const char *csv, struct import_stats *stats,
      char **errors)
{
    return import_orders(f->st, name, csv, strlen(csv), stats, errors, NULL, NULL);
}

static void
import_fixture(struct fixture *f, const char *file, bool orders, struct import_stats *stats)
{
    size_t len;
    char *data = fixture_text(file, &len), *errors = NULL;
    int r = orders ? import_orders(f->st, file, data, len, stats, &errors, NULL, NULL)
                   : import_customers(f->st, file, data, len, stats, &errors, NULL, NULL);
    if (r != 0 || errors)
        print_message("%s", errors ? errors : "(no message)\n");
    assert_int_equal(r, 0);
    assert_null(errors);
    free(data);
}

/* ---- customers: the happy path ---------------------------------------- */

static void
good_customers_are_counted_and_normalised(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    import_fixture(f, "customers_good.csv", false, &s);
    assert_int_equal(s.rows, 5);
    assert_int_equal(s.inserted, 5);
    assert_int_equal(s.updated, 0);
    assert_int_equal(s.unchanged, 0);
    assert_int_equal(s.warnings, 0);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM customers"), 5);

    /* Domain lower-cased, local part kept; phone down to digits and '+'. */
    assert_query(f->st, "SELECT email FROM customers WHERE ext_id = '1'",
                 "Alice.Martin@example.com");
    assert_query(f->st, "SELECT phone FROM customers WHERE ext_id = '1'", "+14155550100");
    assert_query(f->st, "SELECT phone FROM customers WHERE ext_id = '2'", "13800138000");
    assert_query(f->st, "SELECT phone FROM customers WHERE ext_id = '4'", "02079460000");
    assert_query(f->st, "SELECT email FROM customers WHERE ext_id = '5'", "zoe@example.fr");
    assert_query(f->st, "SELECT birthday FROM customers WHERE ext_id = '1'", "1990-03-15");
    assert_query(f->st, "SELECT birthday FROM customers WHERE ext_id = '2'", "--02-29");
    assert_query(f->st, "SELECT birthday FROM customers WHERE ext_id = '3'", "1904-02-29");
    assert_query(f->st, "SELECT tz FROM customers WHERE ext_id = '1'", "America/New_York");
    /* Empty cells of known columns are NULL, not ''. */
    assert_query(f->st, "SELECT tz FROM customers WHERE ext_id = '3'", NULL);
    assert_query(f->st, "SELECT phone FROM customers WHERE ext_id = '3'", NULL);
    assert_query(f->st, "SELECT tier FROM customers WHERE ext_id = '3'", NULL);
    /* Quoted commas, quotes and newlines survive. */
    assert_query(f->st, "SELECT name FROM customers WHERE ext_id = '3'", "Smith, John");
    assert_query(f->st, "SELECT name FROM customers WHERE ext_id = '4'", "Multi\nLine \"Name\"");
    assert_query(f->st, "SELECT created_at FROM customers WHERE ext_id = '2'",
                 "2024-02-01T10:00:00+08:00");
    /* No created_at in the file: the import time. */
    assert_query(f->st, "SELECT created_at FROM customers WHERE ext_id = '3'",
                 "2027-01-15T08:00:00Z");
    assert_query(f->st, "SELECT updated_at FROM customers WHERE ext_id = '3'",
                 "2027-01-15T08:00:00Z");
}

static void
chinese_text_round_trips(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    const char *csv = "id,name,first_name,tier,城市,备注\n"
                      "cn-1,张伟,伟,高价值,上海,\"喜欢绿茶，\n不要打电话\"\n";
    char *errors = NULL;
    assert_int_equal(imp_c(f, "zh.csv", csv, &s, &errors), 0);
    assert_null(errors);
    assert_query(f->st, "SELECT name FROM customers WHERE ext_id = 'cn-1'", "张伟");
    assert_query(f->st, "SELECT first_name FROM customers WHERE ext_id = 'cn-1'", "伟");
    assert_query(f->st, "SELECT tier FROM customers WHERE ext_id = 'cn-1'", "高价值");
    assert_query(f->st, "SELECT json_extract(attrs, '$.城市') FROM customers", "上海");
    assert_query(f->st, "SELECT json_extract(attrs, '$.备注') FROM customers",
                 "喜欢绿茶，\n不要打电话");
    assert_query(f->st,
                 "SELECT group_concat(key, ',') FROM (SELECT key FROM attribute_keys"
                 " ORDER BY key)",
                 "城市,备注");
    /* The fixture with a Chinese name and an internationalised domain. */
    import_fixture(f, "customers_good.csv", false, &s);
    assert_query(f->st,
                 "SELECT name || '/' || first_name || '/' || email FROM customers"
                 " WHERE ext_id = '2'",
                 "张伟/伟/zhang.wei@例子.中国");
}

static void
reimporting_the_same_file_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *d1, *d2;
    unsigned char *i1, *i2;
    sqlite3_int64 n1, n2;
    import_fixture(f, "customers_good.csv", false, &s);
    import_fixture(f, "orders_good.csv", true, &s);
    d1 = dump(f->st);
    i1 = image(f->st, &n1);

    /* A day later: the wall clock must not leak into a no-op import. */
    fake_now += 86400;
    import_fixture(f, "customers_good.csv", false, &s);
    assert_int_equal(s.rows, 5);
    assert_int_equal(s.inserted, 0);
    assert_int_equal(s.updated, 0);
    assert_int_equal(s.unchanged, 5);
    import_fixture(f, "orders_good.csv", true, &s);
    assert_int_equal(s.rows, 5);
    assert_int_equal(s.inserted, 0);
    assert_int_equal(s.unchanged, 5);

    d2 = dump(f->st);
    assert_string_equal(d1, d2);
    i2 = image(f->st, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(i1, i2, (size_t)n1);
    sqlite3_free(i1);
    sqlite3_free(i2);
    free(d1);
    free(d2);
}

static void
changed_rows_are_updated_and_only_they_move_updated_at(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    import_fixture(f, "customers_good.csv", false, &s);
    fake_now += 3600;
    /* Only the columns in the file are touched: a tier-only file keeps names. */
    assert_int_equal(imp_c(f, "tiers.csv", "id,tier\n1,high-value\n3,gold\n", &s, &errors), 0);
    assert_null(errors);
    assert_int_equal(s.rows, 2);
    assert_int_equal(s.updated, 1);
    assert_int_equal(s.unchanged, 1);
    assert_query(f->st,
                 "SELECT tier || ' ' || name || ' ' || updated_at FROM customers"
                 " WHERE ext_id = '3'",
                 "gold Smith, John 2027-01-15T09:00:00Z");
    assert_query(f->st, "SELECT updated_at FROM customers WHERE ext_id = '1'",
                 "2027-01-15T08:00:00Z");
    /* An empty cell clears a known column. */
    assert_int_equal(imp_c(f, "t.csv", "id,tier,owner\n1,,bob\n", &s, &errors), 0);
    assert_int_equal(s.updated, 1);
    assert_query(f->st, "SELECT tier FROM customers WHERE ext_id = '1'", NULL);
    assert_query(f->st, "SELECT owner FROM customers WHERE ext_id = '1'", "bob");
    /* created_at given is replaced; empty keeps it. */
    assert_int_equal(imp_c(f, "t.csv", "id,created_at\n1,\n3,2020-01-01\n", &s, &errors), 0);
    assert_int_equal(s.updated, 1);
    assert_int_equal(s.unchanged, 1);
    assert_query(f->st, "SELECT created_at FROM customers WHERE ext_id = '1'", "2024-01-05");
    assert_query(f->st, "SELECT created_at FROM customers WHERE ext_id = '3'", "2020-01-01");
}

static void
attributes_land_in_attrs_and_attribute_keys(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    import_fixture(f, "customers_good.csv", false, &s);
    /* Canonical numbers become JSON numbers; zip codes with a leading 0 stay text. */
    assert_query(f->st, "SELECT attrs FROM customers WHERE ext_id = '1'",
                 "{\"city\":\"Paris\",\"ltv\":150,\"zip\":75001}");
    assert_query(f->st, "SELECT attrs FROM customers WHERE ext_id = '2'",
                 "{\"city\":\"上海\",\"ltv\":88.5,\"zip\":200000}");
    assert_query(f->st, "SELECT attrs FROM customers WHERE ext_id = '5'",
                 "{\"city\":\"Lyon\",\"ltv\":-3,\"zip\":\"01234\"}");
    /* Empty cells leave no key behind. */
    assert_query(f->st, "SELECT attrs FROM customers WHERE ext_id = '3'", "{}");
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM customers WHERE"
                                  " json_extract(attrs, '$.ltv') > 100"),
                     1);
    assert_query(f->st,
                 "SELECT group_concat(key, ',') FROM (SELECT key FROM attribute_keys"
                 " ORDER BY key)",
                 "city,ltv,zip");
    /* A later file merges: new keys are added, untouched keys kept, empty removes. */
    assert_int_equal(imp_c(f, "a.csv", "id,city,Segment\n1,,A\n", &s, &errors), 0);
    assert_null(errors);
    assert_int_equal(s.updated, 1);
    assert_query(f->st, "SELECT attrs FROM customers WHERE ext_id = '1'",
                 "{\"ltv\":150,\"segment\":\"A\",\"zip\":75001}");
    assert_query(f->st,
                 "SELECT group_concat(key, ',') FROM (SELECT key FROM attribute_keys"
                 " ORDER BY key)",
                 "city,ltv,segment,zip");
}

static void
tags_are_replaced_as_a_set(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    import_fixture(f, "customers_good.csv", false, &s);
    assert_query(f->st,
                 "SELECT group_concat(tag, ',') FROM (SELECT tag FROM customer_tags"
                 " JOIN customers ON customers.id = customer_id WHERE ext_id = '1'"
                 " ORDER BY tag)",
                 "newsletter,vip");
    /* Trimmed, empty parts dropped, duplicates merged. */
    assert_query(f->st,
                 "SELECT group_concat(tag, ',') FROM (SELECT tag FROM customer_tags"
                 " JOIN customers ON customers.id = customer_id WHERE ext_id = '5'"
                 " ORDER BY tag)",
                 "a,b");
    fake_now += 60;
    assert_int_equal(imp_c(f, "t.csv", "id,tags\n1,wholesale;vip\n5,\n2,vip\n", &s, &errors), 0);
    assert_null(errors);
    assert_int_equal(s.updated, 2);
    assert_int_equal(s.unchanged, 1);
    assert_query(f->st,
                 "SELECT group_concat(tag, ',') FROM (SELECT tag FROM customer_tags"
                 " JOIN customers ON customers.id = customer_id WHERE ext_id = '1'"
                 " ORDER BY tag)",
                 "vip,wholesale");
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM customer_tags JOIN customers ON"
                                  " customers.id = customer_id WHERE ext_id = '5'"),
                     0);
    /* A tag change is a change of the customer. */
    assert_query(f->st, "SELECT updated_at FROM customers WHERE ext_id = '1'",
                 "2027-01-15T08:01:00Z");
    /* A file without a tags column leaves tags alone. */
    assert_int_equal(imp_c(f, "t.csv", "id,tier\n1,x\n", &s, &errors), 0);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM customer_tags JOIN customers ON"
                                  " customers.id = customer_id WHERE ext_id = '1'"),
                     2);
}

static void
consents_are_recorded_and_empty_leaves_them(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    import_fixture(f, "customers_good.csv", false, &s);
    assert_query(f->st,
                 "SELECT group_concat(channel || '=' || granted, ',') FROM (SELECT"
                 " channel, granted FROM consents JOIN customers ON customers.id ="
                 " customer_id WHERE ext_id = '1' ORDER BY channel)",
                 "email=1,sms=0");
    assert_query(f->st,
                 "SELECT group_concat(channel || '=' || granted, ',') FROM (SELECT"
                 " channel, granted FROM consents JOIN customers ON customers.id ="
                 " customer_id WHERE ext_id = '4' ORDER BY channel)",
                 "email=0");
    assert_query(f->st,
                 "SELECT source || ' ' || updated_at FROM consents WHERE channel = 'sms'"
                 " AND customer_id = (SELECT id FROM customers WHERE ext_id = '1')",
                 "import:customers_good.csv 2027-01-15T08:00:00Z");
    fake_now += 120;
    /* Empty leaves alone; a change is recorded; any consent_<channel> works. */
    assert_int_equal(imp_c(f, "c.csv",
                           "id,consent_email,consent_sms,consent_wechat\n"
                           "1,,YES,n\n"
                           "3,,,\n",
                           &s, &errors),
                     0);
    assert_null(errors);
    assert_int_equal(s.updated, 1);
    assert_int_equal(s.unchanged, 1);
    assert_query(f->st,
                 "SELECT group_concat(channel || '=' || granted, ',') FROM (SELECT"
                 " channel, granted FROM consents JOIN customers ON customers.id ="
                 " customer_id WHERE ext_id = '1' ORDER BY channel)",
                 "email=1,sms=1,wechat=0");
    assert_query(f->st,
                 "SELECT updated_at FROM consents WHERE channel = 'sms' AND"
                 " customer_id = (SELECT id FROM customers WHERE ext_id = '1')",
                 "2027-01-15T08:02:00Z");
    assert_query(f->st,
                 "SELECT updated_at FROM consents WHERE channel = 'email' AND"
                 " customer_id = (SELECT id FROM customers WHERE ext_id = '1')",
                 "2027-01-15T08:00:00Z");
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM consents JOIN customers ON"
                                  " customers.id = customer_id WHERE ext_id = '3'"),
                     0);
}

static void
an_import_never_reverses_an_unsubscribe(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    import_fixture(f, "customers_good.csv", false, &s);
    /* Customer 1 unsubscribes by link after the spreadsheet was exported. */
    assert_int_equal(store_exec(f->st, "UPDATE consents SET granted = 0, source = 'unsubscribe'"
                                       " WHERE channel = 'email' AND customer_id ="
                                       " (SELECT id FROM customers WHERE ext_id = '1')"),
                     0);
    assert_int_equal(imp_c(f, "old.csv", "id,consent_email,consent_sms\n1,yes,yes\n", &s, &errors),
                     0);
    assert_non_null(errors);
    assert_string_equal(errors, "old.csv:2: warning: customer 1 withdrew email consent outside an "
                                "import; the file's 'yes' is ignored (the customer must opt in "
                                "again)\n");
    free(errors);
    assert_int_equal(s.warnings, 1);
    assert_int_equal(s.updated, 1); /* sms: imported no -> yes is fine */
    assert_query(f->st,
                 "SELECT group_concat(channel || '=' || granted, ',') FROM (SELECT"
                 " channel, granted FROM consents JOIN customers ON customers.id ="
                 " customer_id WHERE ext_id = '1' ORDER BY channel)",
                 "email=0,sms=1");
    /* Withdrawing by import is always allowed. */
    assert_int_equal(imp_c(f, "new.csv", "id,consent_sms\n1,no\n", &s, &errors), 0);
    assert_null(errors);
    assert_query(f->st,
                 "SELECT granted FROM consents WHERE channel = 'sms' AND customer_id ="
                 " (SELECT id FROM customers WHERE ext_id = '1')",
                 "0");
}

static void
bom_and_crlf_are_accepted(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    assert_int_equal(
        imp_c(f, "bom.csv", "\xEF\xBB\xBFId , Name\r\n1,Ann\r\n\r\n2,\"Bo\r\nb\"\r\n", &s, &errors),
        0);
    assert_null(errors);
    assert_int_equal(s.inserted, 2);
    assert_query(f->st, "SELECT name FROM customers WHERE ext_id = '1'", "Ann");
    assert_query(f->st, "SELECT name FROM customers WHERE ext_id = '2'", "Bo\r\nb");
    /* Line numbers count CRLF lines and blank lines. */
    assert_int_equal(
        imp_c(f, "crlf.csv", "id,email\r\n1,a@b.co\r\n\r\n2,\"x\r\ny\"\r\n3,bad\r\n", &s, &errors),
        -EINVAL);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "crlf.csv:4: malformed email"));
    assert_non_null(strstr(errors, "crlf.csv:6: malformed email 'bad'"));
    free(errors);
}

/* ---- customers: errors ------------------------------------------------- */

static void
each_bad_row_is_reported_with_its_line_and_nothing_is_written(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    size_t len;
    char *data, *errors = NULL, *before, *after;
    import_fixture(f, "customers_good.csv", false, &s);
    before = dump(f->st);

    data = fixture_text("customers_bad.csv", &len);
    fake_now += 60;
    assert_int_equal(import_customers(f->st, "bad.csv", data, len, &s, &errors, NULL, NULL),
                     -EINVAL);
    free(data);
    assert_non_null(errors);
    print_message("%s", errors);
    assert_int_equal(s.rows, 13);
    assert_int_equal(s.inserted, 0);
    assert_int_equal(s.updated, 0);

    static const char *const expected[] = {
        "bad.csv:4: missing id (",
        "bad.csv:6: id 11 already on line 5 (",
        "bad.csv:7: birthday '2026-02-30' is not a real date (2026-02 has 28 days)",
        "bad.csv:8: column 'name' is not valid UTF-8: Bad \\xFF\\xFE Bytes (",
        ("bad.csv:9: unknown time zone 'Mars/Olympus' (expected an IANA name such as "
         "Asia/Shanghai)"),
        "bad.csv:10: malformed email 'not-an-email' (",
        "bad.csv:11: row has 3 fields but the header has 7 (",
        "bad.csv:12: malformed email 'h@example,com' (",
        "bad.csv:14: phone '555-CALL-NOW' contains letters (",
        "bad.csv:15: consent_email 'maybe' is not yes or no (",
    };
    const char *p = errors;
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        const char *hit = strstr(p, expected[i]);
        if (!hit)
            fail_msg("missing, or out of order: %s", expected[i]);
        /* Each message is at the start of its own line. */
        assert_true(hit == errors || hit[-1] == '\n');
        p = hit;
    }
    /* Exactly one message per bad row: nothing about the good ones. */
    {
        int lines = 0;
        for (const char *q = errors; *q; q++)
            lines += *q == '\n';
        assert_int_equal(lines, 10);
    }
    assert_null(strstr(errors, "bad.csv:2:"));
    assert_null(strstr(errors, "bad.csv:16:"));
    free(errors);

    /* All or nothing: not even the good rows 10 and 20 went in. */
    after = dump(f->st);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void
more_bad_rows_than_the_cap_are_summarised(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    struct sbuf b;
    char *errors = NULL;
    int lines = 0;
    sbuf_init(&b);
    sbuf_adds(&b, "id,email\n");
    for (int i = 0; i < 150; i++)
        sbuf_printf(&b, "%d,nope\n", i);
    assert_int_equal(imp_c(f, "many.csv", b.s, &s, &errors), -EINVAL);
    sbuf_free(&b);
    for (const char *q = errors; *q; q++)
        lines += *q == '\n';
    assert_int_equal(lines, 101);
    assert_non_null(strstr(errors, "many.csv:101: malformed email 'nope'"));
    assert_null(strstr(errors, "many.csv:102:"));
    assert_non_null(strstr(errors, "\n... and 50 more\n"));
    free(errors);
}

static void
header_problems_are_reported(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;

    assert_int_equal(imp_c(f, "dup.csv", "id,email,name,EMAIL\n1,a@b.co,A,c@d.co\n", &s, &errors),
                     -EINVAL);
    assert_non_null(strstr(errors, "dup.csv:1: duplicate column 'email' (columns 2 and 4"));
    free(errors);

    assert_int_equal(imp_c(f, "noid.csv", "customer_id,name\n1,A\n", &s, &errors), -EINVAL);
    assert_non_null(strstr(errors, "noid.csv:1: no 'id' column (rename column 'customer_id' to "
                                   "'id'"));
    free(errors);

    assert_int_equal(imp_c(f, "empty.csv", "", &s, &errors), -EINVAL);
    assert_non_null(strstr(errors, "empty.csv:1: the file is empty"));
    free(errors);

    /* A misspelt column is a warning, not an error: it becomes an attribute. */
    assert_int_equal(
        imp_c(f, "typo.csv", "id,emial,birth_day,age\n1,a@b.co,1990-01-01,30\n", &s, &errors), 0);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "typo.csv:1: warning: column 'emial' is not a known column and "
                                   "will be stored as a custom attribute (did you mean 'email'?)"));
    assert_non_null(strstr(errors, "typo.csv:1: warning: column 'birth_day' is not a known "
                                   "column and will be stored as a custom attribute (did you "
                                   "mean 'birthday'?)"));
    /* "age" is not a typo of "name". */
    assert_null(strstr(errors, "'age'"));
    assert_int_equal(s.warnings, 2);
    assert_int_equal(s.inserted, 1);
    free(errors);
    assert_query(f->st, "SELECT attrs FROM customers WHERE ext_id = '1'",
                 "{\"age\":30,\"birth_day\":\"1990-01-01\",\"emial\":\"a@b.co\"}");

    /* Names other tools use are pointed at ours. */
    assert_int_equal(imp_c(f, "alias.csv", "id,timezone,Mobile\n9,UTC,1\n", &s, &errors), 0);
    assert_non_null(strstr(errors, "alias.csv:1: warning: column 'timezone' is not a known "
                                   "column and will be stored as a custom attribute (did you "
                                   "mean 'tz'?)\n"));
    assert_non_null(strstr(errors, "(did you mean 'phone'?)\n"));
    free(errors);

    assert_int_equal(imp_c(f, "ch.csv", "id,consent_emial\n2,yes\n", &s, &errors), 0);
    assert_non_null(strstr(errors, "ch.csv:1: warning: column 'consent_emial' records consent "
                                   "for a channel called 'emial' (did you mean "
                                   "'consent_email'?)"));
    free(errors);
}

static void
quoting_errors_name_the_record_line(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    /* A stray quote in an unquoted field, then a good row that is still checked. */
    assert_int_equal(imp_c(f, "q.csv", "id,name\n1,\"A\nB\"\n2,5\" screen\n3,x,y\n", &s, &errors),
                     -EINVAL);
    assert_string_equal(errors, "q.csv:4: stray double quote (a value that contains \" must be "
                                "quoted, with the inner quotes doubled: \"5\"\" screen\")\n"
                                "q.csv:5: row has 3 fields but the header has 2 (put values that "
                                "contain commas in double quotes)\n");
    free(errors);
    /* A quote never closed swallows the rest: reported where it starts. */
    assert_int_equal(imp_c(f, "open.csv", "id,name\n1,A\n2,\"B\n3,C\n4,D\n", &s, &errors), -EINVAL);
    assert_non_null(strstr(errors, "open.csv:3: a quoted value starting on this record is never "
                                   "closed"));
    free(errors);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM customers"), 0);
}

static void
other_value_checks(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    assert_int_equal(imp_c(f, "v.csv",
                           "id,birthday,phone,created_at,email\n"
                           "1,15/03/1990,,,\n"
                           "2,--02-30,,,\n"
                           "3,,12,,\n"
                           "4,,+86#1,,\n"
                           "5,,,yesterday,\n"
                           "6,,,,a@b\n"
                           "7,,,,a b@c.de\n"
                           "8,2023-13-01,,,\n",
                           &s, &errors),
                     -EINVAL);
    assert_non_null(strstr(errors, "v.csv:2: birthday '15/03/1990' is not a date (expected "
                                   "YYYY-MM-DD, or --MM-DD"));
    assert_non_null(strstr(errors, "v.csv:3: birthday '--02-30' is not a real date (month 02 "
                                   "has 29 days)"));
    assert_non_null(strstr(errors, "v.csv:4: phone '12' is too short"));
    assert_non_null(strstr(errors, "v.csv:5: phone '+86#1' contains characters"));
    assert_non_null(strstr(errors, "v.csv:6: created_at 'yesterday' is not a date or time"));
    assert_non_null(strstr(errors, "v.csv:7: malformed email 'a@b'"));
    assert_non_null(strstr(errors, "v.csv:8: malformed email 'a b@c.de'"));
    assert_non_null(strstr(errors, "v.csv:9: birthday '2023-13-01' is not a real date (there is "
                                   "no month 13)"));
    free(errors);
}

/* ---- orders --------------------------------------------------------------- */

static void
orders_fill_stats_and_stay_off_the_timeline(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    import_fixture(f, "customers_good.csv", false, &s);
    import_fixture(f, "orders_good.csv", true, &s);
    assert_int_equal(s.rows, 5);
    assert_int_equal(s.inserted, 5);
    assert_query(f->st,
                 "SELECT group_concat(ext_id || ':' || amount_cents || ':' || currency,"
                 " ',') FROM (SELECT * FROM orders ORDER BY ext_id)",
                 "A-1:1250:USD,A-2:10000:USD,B-1:8880:CNY,B-2:-880:CNY,C-1:99:");
    assert_query(f->st,
                 "SELECT orders_count || ' ' || total_cents || ' ' || first_order_date"
                 " || ' ' || last_order_date FROM customer_stats JOIN customers ON"
                 " customers.id = customer_id WHERE ext_id = '1'",
                 "2 11250 2024-03-01 2024-05-02");
    assert_query(f->st,
                 "SELECT orders_count || ' ' || total_cents || ' ' || first_order_date"
                 " || ' ' || last_order_date FROM customer_stats JOIN customers ON"
                 " customers.id = customer_id WHERE ext_id = '2'",
                 "2 8000 2024-04-04 2024-04-10");
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM customer_stats"), 3);
    /* Orders live in their table only: no copy on the timeline. */
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM orders"), 5);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM timeline"), 0);

    /* Re-importing an order with a new amount updates it and the stats, and
     * moving an order to another customer fixes both customers' stats. */
    assert_int_equal(imp_o(f, "o2.csv",
                           "customer_id,order_id,amount,currency,ordered_at\n"
                           "1,A-1,20,USD,2024-03-01\n"
                           "3,A-2,100,USD,2024-06-01\n"
                           "1,A-3,1.05,usd,2024-07-01\n"
                           "2,B-1,88.8,CNY,2024-04-04\n",
                           &s, &errors),
                     0);
    assert_null(errors);
    assert_int_equal(s.inserted, 1);
    assert_int_equal(s.updated, 2);
    assert_int_equal(s.unchanged, 1);
    assert_query(f->st,
                 "SELECT orders_count || ' ' || total_cents || ' ' || first_order_date"
                 " || ' ' || last_order_date FROM customer_stats JOIN customers ON"
                 " customers.id = customer_id WHERE ext_id = '1'",
                 "2 2105 2024-03-01 2024-07-01");
    assert_query(f->st,
                 "SELECT orders_count || ' ' || total_cents || ' ' || first_order_date"
                 " || ' ' || last_order_date FROM customer_stats JOIN customers ON"
                 " customers.id = customer_id WHERE ext_id = '3'",
                 "2 10099 2023-01-01 2024-06-01");
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM orders"), 6);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM timeline"), 0);
    /* The moved order is the other customer's now. */
    assert_query(f->st,
                 "SELECT customers.ext_id || ' ' || amount_cents FROM orders JOIN customers"
                 " ON customers.id = customer_id WHERE orders.ext_id = 'A-2'",
                 "3 10000");
}

static void
bad_orders_are_reported_and_nothing_is_written(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    size_t len;
    char *data, *errors = NULL, *before, *after;
    import_fixture(f, "customers_good.csv", false, &s);
    import_fixture(f, "orders_good.csv", true, &s);
    before = dump(f->st);
    data = fixture_text("orders_bad.csv", &len);
    assert_int_equal(import_orders(f->st, "ob.csv", data, len, &s, &errors, NULL, NULL), -EINVAL);
    free(data);
    print_message("%s", errors);
    assert_non_null(strstr(errors, "ob.csv:3: unknown customer_id 999 ("));
    assert_non_null(strstr(errors, "ob.csv:4: amount '12.345' has more than two decimals"));
    assert_non_null(strstr(errors, "ob.csv:5: amount '1,234.00' is not a decimal amount"));
    assert_non_null(strstr(errors, "ob.csv:6: currency 'DOLLARS' is not a 3-letter code"));
    assert_non_null(strstr(errors, "ob.csv:7: ordered_at '2024-13-01' is not a date or time"));
    assert_non_null(strstr(errors, "ob.csv:8: order_id X-1 already on line 2"));
    assert_non_null(strstr(errors, "ob.csv:9: missing customer_id"));
    assert_null(strstr(errors, "ob.csv:2:"));
    free(errors);
    after = dump(f->st);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void
an_order_for_an_unknown_customer_is_an_error(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    assert_int_equal(imp_c(f, "c.csv", "id\n1\n", &s, &errors), 0);
    assert_int_equal(imp_o(f, "o.csv",
                           "customer_id,order_id,amount,ordered_at\n"
                           "1,A,1.00,2024-01-01\n"
                           "2,B,1.00,2024-01-01\n",
                           &s, &errors),
                     -EINVAL);
    assert_string_equal(errors, "o.csv:3: unknown customer_id 2 (import the customer first, or "
                                "fix the id)\n");
    free(errors);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM orders"), 0);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM customer_stats"), 0);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM timeline"), 0);

    /* Missing required columns are named. */
    assert_int_equal(imp_o(f, "o.csv", "customer_id,orderid,amount,ordered_at\n", &s, &errors),
                     -EINVAL);
    assert_non_null(strstr(errors, "o.csv:1: no 'order_id' column (rename column 'orderid' to "
                                   "'order_id')"));
    free(errors);
}

/* ---- progress and speed ------------------------------------------------- */

struct prog {
    long calls, last_rows;
    size_t last_bytes, total;
};

static void
on_progress(void *ud, long rows, size_t done, size_t total)
{
    struct prog *p = ud;
    p->calls++;
    assert_true(rows >= p->last_rows);
    assert_true(done >= p->last_bytes);
    assert_true(done <= total);
    p->last_rows = rows;
    p->last_bytes = done;
    p->total = total;
}

static char *
generate_customers(long n, size_t *len)
{
    struct sbuf b;
    static const char *const zones[] = {"Asia/Shanghai", "Europe/Paris", "America/New_York",
                                        "Asia/Tokyo", ""};
    sbuf_init(&b);
    sbuf_adds(&b, "id,name,first_name,email,phone,birthday,tz,tier,tags,consent_email,"
                  "consent_sms,city,ltv\n");
    for (long i = 1; i <= n; i++)
        sbuf_printf(&b,
                    "%ld,Customer %ld,名%ld,user%ld@Example.com,+86 138 %04ld %04ld,"
                    "%04ld-%02ld-%02ld,%s,%s,vip;t%ld,%s,%s,City %ld,%ld\n",
                    i, i, i % 100, i, i / 10000 % 10000, i % 10000, 1950 + i % 60, 1 + i % 12,
                    1 + i % 28, zones[i % 5], i % 3 ? "potential" : "high-value", i % 7,
                    i % 2 ? "yes" : "no", i % 3 ? "y" : "", i % 50, i * 7 % 1000);
    *len = b.len;
    return sbuf_steal(&b);
}

static void
progress_is_reported_every_1000_rows_and_at_the_end(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    struct prog p = {0};
    size_t len;
    char *csv = generate_customers(2500, &len), *errors = NULL;
    assert_int_equal(import_customers(f->st, "gen.csv", csv, len, &s, &errors, on_progress, &p), 0);
    assert_null(errors);
    assert_int_equal(p.calls, 3);
    assert_int_equal(p.last_rows, 2500);
    assert_int_equal(p.last_bytes, len);
    assert_int_equal(p.total, len);
    free(csv);
}

static double
seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Prints the speed (no assertion on it: machines and sanitizers vary). */
static void
import_speed_is_printed(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    size_t len;
    const char *env = getenv("NUDGE_IMPORT_ROWS");
    long n = env ? strtol(env, NULL, 10) : 100000;
    char *csv = generate_customers(n, &len), *errors = NULL;
    double t0 = seconds(), t1, t2;
    assert_int_equal(import_customers(f->st, "gen.csv", csv, len, &s, &errors, NULL, NULL), 0);
    t1 = seconds();
    assert_null(errors);
    assert_int_equal(s.inserted, n);
    assert_int_equal(import_customers(f->st, "gen.csv", csv, len, &s, &errors, NULL, NULL), 0);
    t2 = seconds();
    assert_int_equal(s.unchanged, n);
    print_message("import speed: %ld customers (%.1f MB) inserted in %.2f s = %.0f rows/s; "
                  "re-imported unchanged in %.2f s = %.0f rows/s\n",
                  n, len / 1e6, t1 - t0, n / (t1 - t0), t2 - t1, n / (t2 - t1));
    free(csv);

    /* Orders: one or two per customer, so that every customer's stats are
     * recomputed once at the end. */
    {
        struct sbuf b;
        long no = 0;
        sbuf_init(&b);
        sbuf_adds(&b, "customer_id,order_id,amount,currency,ordered_at\n");
        for (long i = 1; i <= n; i++) {
            for (long k = 0; k < 1 + i % 2; k++, no++)
                sbuf_printf(&b, "%ld,o%ld-%ld,%ld.%02ld,CNY,2026-%02ld-%02ldT10:00:00+08:00\n", i,
                            i, k, i % 500, i % 100, 1 + (i + k) % 12, 1 + i % 28);
        }
        t0 = seconds();
        assert_int_equal(import_orders(f->st, "orders.csv", b.s, b.len, &s, &errors, NULL, NULL),
                         0);
        t1 = seconds();
        assert_null(errors);
        assert_int_equal(s.inserted, no);
        assert_int_equal(q_int(f->st, "SELECT count(*) FROM customer_stats"), n);
        print_message("import speed: %ld orders inserted (with stats) in %.2f s = "
                      "%.0f rows/s\n",
                      no, t1 - t0, no / (t1 - t0));
        sbuf_free(&b);
    }
}

/* ---- streaming: the file in pieces --------------------------------------- */

/* Feeds csv in pieces of `piece` bytes (the last may be shorter). */
static int
imp_chunked(struct fixture *f, enum import_kind kind, const char *name, const char *csv,
            size_t len, size_t piece, const char *default_tz, struct import_stats *stats,
            char **errors)
{
    struct import_opts o = {default_tz, len, NULL, NULL};
    struct import *imp = import_begin(f->st, kind, name, &o);
    for (size_t off = 0; off < len; off += piece)
        import_feed(imp, csv + off, len - off < piece ? len - off : piece);
    return import_end(imp, false, stats, errors);
}

static void
a_file_in_many_pieces_imports_like_the_whole(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    size_t len;
    char *csv = generate_customers(5000, &len), *errors = NULL;
    /* Pieces of 4093 bytes cut lines and UTF-8 sequences anywhere. */
    assert_int_equal(imp_chunked(f, IMPORT_CUSTOMERS, "gen.csv", csv, len, 4093, NULL, &s, &errors), 0);
    assert_null(errors);
    assert_int_equal(s.rows, 5000);
    assert_int_equal(s.inserted, 5000);
    assert_true(len > 20 * 4093);
    /* The whole file again finds every row as the pieces stored it. */
    assert_int_equal(import_customers(f->st, "gen.csv", csv, len, &s, &errors, NULL, NULL), 0);
    assert_null(errors);
    assert_int_equal(s.unchanged, 5000);
    /* And byte by byte, CRLF split between two pieces included. */
    assert_int_equal(imp_chunked(f, IMPORT_CUSTOMERS, "gen.csv", csv, len, 1, NULL, &s, &errors), 0);
    assert_int_equal(s.unchanged, 5000);
    free(csv);
    {
        const char *crlf = "id,name\r\nB1,One\r\nB2,\"Two\r\nLines\"\r\n,No Id\r\n";
        assert_int_equal(imp_chunked(f, IMPORT_CUSTOMERS, "crlf.csv", crlf, strlen(crlf), 1,
                                     NULL, &s, &errors),
                         -EINVAL);
        assert_non_null(errors);
        assert_non_null(strstr(errors, "crlf.csv:5: missing id"));
        free(errors);
    }
}

static void
a_bad_row_in_the_last_piece_imports_nothing(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    size_t len;
    char *csv = generate_customers(5000, &len), *errors = NULL;
    csv = xrealloc(csv, len + 128);
    len += (size_t)snprintf(csv + len, 128, "X1,Late,L,late@example.com,,2026-02-30,UTC,normal,,,,,\n");
    assert_int_equal(imp_chunked(f, IMPORT_CUSTOMERS, "big.csv", csv, len, 4096, NULL, &s, &errors),
                     -EINVAL);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "big.csv:5002: "));
    assert_int_equal(s.inserted, 0);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM customers"), 0);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM customer_tags"), 0);
    /* The indexes dropped for the bulk load came back with the rollback. */
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM sqlite_schema WHERE type = 'index'"
                                  " AND tbl_name = 'customers' AND sql IS NOT NULL"),
                     3);
    free(errors);
    free(csv);
}

static void
a_repeated_id_far_apart_names_the_first_line(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    size_t len;
    char *csv = generate_customers(3000, &len), *errors = NULL;
    size_t first = (size_t)(strchr(csv, '\n') + 1 - csv); /* the first data row: line 2 */
    size_t rowlen = (size_t)(strchr(csv + first, '\n') - (csv + first)) + 1;
    csv = xrealloc(csv, len + rowlen + 1);
    memcpy(csv + len, csv + first, rowlen);
    len += rowlen;
    csv[len] = '\0';
    /* Into an empty table (insert first) and into a full one (look up first). */
    for (int round = 0; round < 2; round++) {
        assert_int_equal(imp_chunked(f, IMPORT_CUSTOMERS, "dup.csv", csv, len, 8192, NULL, &s, &errors),
                         -EINVAL);
        assert_non_null(errors);
        assert_non_null(strstr(errors, "dup.csv:3002: id "));
        assert_non_null(strstr(errors, "already on line 2"));
        free(errors);
        errors = NULL;
        if (round == 0)
            assert_int_equal(import_customers(f->st, "gen.csv", csv, len - rowlen, &s, &errors,
                                              NULL, NULL),
                             0);
    }
    free(csv);
}

static void
customers_without_a_zone_are_counted(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    const char *csv = "id,name,tz\nZ1,A,\nZ2,B,Europe/Berlin\nZ3,C,\n";
    assert_int_equal(imp_chunked(f, IMPORT_CUSTOMERS, "tz.csv", csv, strlen(csv), 5,
                                 "Asia/Shanghai", &s, &errors),
                     0);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "tz.csv: warning: 2 customers have no tz; they use "
                                   "Asia/Shanghai"));
    assert_int_equal(s.warnings, 1);
    free(errors);
    /* A file without a tz column keeps stored zones: only Z1 and Z3 lack one. */
    csv = "id,name\nZ1,A2\nZ2,B2\nZ3,C2\n";
    assert_int_equal(imp_chunked(f, IMPORT_CUSTOMERS, "tz2.csv", csv, strlen(csv), 64,
                                 "Asia/Shanghai", &s, &errors),
                     0);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "2 customers have no tz"));
    free(errors);
    csv = "id,name,tz\nZ1,A,UTC\nZ3,C,UTC\n";
    assert_int_equal(imp_chunked(f, IMPORT_CUSTOMERS, "tz3.csv", csv, strlen(csv), 64,
                                 "Asia/Shanghai", &s, &errors),
                     0);
    assert_null(errors);
    csv = "id,name,tz\nZ4,D,\n";
    assert_int_equal(imp_chunked(f, IMPORT_CUSTOMERS, "tz4.csv", csv, strlen(csv), 64, "UTC", &s,
                                 &errors),
                     0);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "tz4.csv: warning: 1 customer has no tz; it uses UTC"));
    free(errors);
}

static void
an_aborted_stream_imports_nothing(void **state)
{
    struct fixture *f = *state;
    struct import_stats s;
    char *errors = NULL;
    const char *csv = "id,name\nA1,One\nA2,Two\n";
    struct import *imp = import_begin(f->st, IMPORT_CUSTOMERS, "cut.csv", NULL);
    import_feed(imp, csv, strlen(csv));
    assert_true(import_end(imp, true, &s, &errors) < 0);
    assert_non_null(errors);
    assert_non_null(strstr(errors, "ended early"));
    free(errors);
    assert_int_equal(q_int(f->st, "SELECT count(*) FROM customers"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(good_customers_are_counted_and_normalised),
        T(chinese_text_round_trips),
        T(reimporting_the_same_file_changes_nothing),
        T(changed_rows_are_updated_and_only_they_move_updated_at),
        T(attributes_land_in_attrs_and_attribute_keys),
        T(tags_are_replaced_as_a_set),
        T(consents_are_recorded_and_empty_leaves_them),
        T(an_import_never_reverses_an_unsubscribe),
        T(bom_and_crlf_are_accepted),
        T(each_bad_row_is_reported_with_its_line_and_nothing_is_written),
        T(more_bad_rows_than_the_cap_are_summarised),
        T(header_problems_are_reported),
        T(quoting_errors_name_the_record_line),
        T(other_value_checks),
        T(orders_fill_stats_and_stay_off_the_timeline),
        T(bad_orders_are_reported_and_nothing_is_written),
        T(an_order_for_an_unknown_customer_is_an_error),
        T(progress_is_reported_every_1000_rows_and_at_the_end),
        T(a_file_in_many_pieces_imports_like_the_whole),
        T(a_bad_row_in_the_last_piece_imports_nothing),
        T(a_repeated_id_far_apart_names_the_first_line),
        T(customers_without_a_zone_are_counted),
        T(an_aborted_stream_imports_nothing),
        T(import_speed_is_printed),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
