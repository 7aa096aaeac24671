/*
 * test_store.c: opening the SQLite store, WAL mode, and schema migrations:
 * a fresh file gets the current schema, an old file walks the migrations with
 * its data intact, a file from a newer nudged is refused, and opening again
 * changes nothing.
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
#include <unistd.h>

#include "store_internal.h"
#include "util.h"

struct fixture {
    char dir[64];
    char path[128];
};

static int
setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/nudge-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/nudge.db", f->dir);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    char p[192];
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* One text value from a query, or NULL; the caller frees it. */
static char *
query_text(struct store *st, const char *sql)
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
query_int(struct store *st, const char *sql)
{
    sqlite3_stmt *s;
    int64_t v = -1;
    assert_int_equal(sqlite3_prepare_v2(st->db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* The whole schema and content, in a stable order, as text. */
static char *
dump(struct store *st)
{
    struct sbuf b;
    sqlite3_stmt *t;
    sbuf_init(&b);
    assert_int_equal(sqlite3_prepare_v2(st->db,
                                        "SELECT name, sql FROM sqlite_master ORDER BY type, name",
                                        -1, &t, NULL),
                     SQLITE_OK);
    while (sqlite3_step(t) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(t, 0);
        const char *sql = (const char *)sqlite3_column_text(t, 1);
        sqlite3_stmt *s;
        char *q;
        sbuf_printf(&b, "== %s: %s\n", name, sql ? sql : "(auto)");
        if (!sql || strncmp(sql, "CREATE TABLE", 12) != 0)
            continue;
        q = xasprintf("SELECT * FROM \"%s\" ORDER BY 1", name);
        assert_int_equal(sqlite3_prepare_v2(st->db, q, -1, &s, NULL), SQLITE_OK);
        while (sqlite3_step(s) == SQLITE_ROW) {
            for (int i = 0; i < sqlite3_column_count(s); i++) {
                const unsigned char *v = sqlite3_column_text(s, i);
                sbuf_printf(&b, "%s%s", i ? "|" : "", v ? (const char *)v : "NULL");
            }
            sbuf_addc(&b, '\n');
        }
        sqlite3_finalize(s);
        free(q);
    }
    sqlite3_finalize(t);
    sbuf_printf(&b, "user_version=%d\n", store_schema_version(st));
    return sbuf_steal(&b);
}

static void
fresh_database_has_current_schema_and_wal(void **state)
{
    struct fixture *f = *state;
    struct store *st = NULL;
    struct nerr err;
    char *mode;
    nerr_clear(&err);
    assert_int_equal(store_open(f->path, &st, &err), 0);
    assert_int_equal(store_schema_version(st), STORE_SCHEMA_VERSION);
    assert_int_equal(query_int(st, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
    mode = query_text(st, "PRAGMA journal_mode");
    assert_string_equal(mode, "wal");
    free(mode);
    assert_int_equal(query_int(st, "PRAGMA foreign_keys"), 1);
    /* Every table the header documents exists. */
    assert_int_equal(query_int(st, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND"
                                   " name IN ('customers', 'customer_tags', 'consents', 'orders',"
                                   " 'customer_stats', 'attribute_keys', 'deliveries',"
                                   " 'suppressions', 'timeline', 'rule_runs', 'meta', 'tasks')"),
                     12);
    store_close(st);
}

static void
schema1_database_migrates_with_data_intact(void **state)
{
    struct fixture *f = *state;
    struct store *st = NULL;
    struct nerr err;
    char *s;
    nerr_clear(&err);
    assert_int_equal(store_open_version(f->path, 1, &st, &err), 0);
    assert_int_equal(store_schema_version(st), 1);
    /* Schema 1 has no customer_stats yet. */
    assert_int_equal(query_int(st, "SELECT count(*) FROM sqlite_master WHERE name ="
                                   " 'customer_stats'"),
                     0);
    assert_int_equal(store_exec(st, "INSERT INTO customers (id, ext_id, name, email, birthday)"
                                    " VALUES (7, 'c-7', '李娜', 'li.na@example.cn', '--02-29');"
                                    "INSERT INTO orders (ext_id, customer_id, amount_cents,"
                                    " currency, ordered_at) VALUES"
                                    " ('o-1', 7, 1250, 'CNY', '2026-05-01T10:00:00+08:00'),"
                                    " ('o-2', 7, -250, 'CNY', '2026-04-03');"
                                    "INSERT INTO meta (key, value) VALUES ('k', 'v');"),
                     0);
    store_close(st);

    assert_int_equal(store_open(f->path, &st, &err), 0);
    assert_int_equal(store_schema_version(st), STORE_SCHEMA_VERSION);
    s = query_text(st, "SELECT ext_id || ' ' || name || ' ' || email || ' ' || birthday"
                       " FROM customers WHERE id = 7");
    assert_string_equal(s, "c-7 李娜 li.na@example.cn --02-29");
    free(s);
    assert_int_equal(query_int(st, "SELECT count(*) FROM orders WHERE customer_id = 7"), 2);
    s = query_text(st, "SELECT orders_count || ' ' || total_cents || ' ' || first_order_date"
                       " || ' ' || last_order_date FROM customer_stats WHERE customer_id = 7");
    assert_string_equal(s, "2 1000 2026-04-03 2026-05-01");
    free(s);
    s = query_text(st, "SELECT value FROM meta WHERE key = 'k'");
    assert_string_equal(s, "v");
    free(s);
    store_close(st);
}

/* Schema 5 drops deliveries_due: the outbox keeps its rows and the claim
 * index that serves every query by state. */
static void
schema4_outbox_migrates_to_one_state_index(void **state)
{
    struct fixture *f = *state;
    struct store *st = NULL;
    struct nerr err;
    nerr_clear(&err);
    assert_int_equal(store_open_version(f->path, 4, &st, &err), 0);
    assert_int_equal(store_exec(st, "INSERT INTO deliveries (rule, customer_id, occurrence,"
                                    " channel, state, due_at, created_at, next_attempt_at) VALUES"
                                    " ('r', 1, 'o1', 'email', 'pending', 10, 10, 10),"
                                    " ('r', 2, 'o1', 'sms', 'sent', 10, 10, 10)"),
                     0);
    assert_int_equal(query_int(st, "SELECT count(*) FROM sqlite_master WHERE name ="
                                   " 'deliveries_due'"),
                     1);
    store_close(st);
    assert_int_equal(store_open(f->path, &st, &err), 0);
    assert_int_equal(store_schema_version(st), STORE_SCHEMA_VERSION);
    assert_int_equal(query_int(st, "SELECT count(*) FROM sqlite_master WHERE name ="
                                   " 'deliveries_due'"),
                     0);
    assert_int_equal(query_int(st, "SELECT count(*) FROM sqlite_master WHERE name ="
                                   " 'deliveries_claim'"),
                     1);
    assert_int_equal(query_int(st, "SELECT count(*) FROM deliveries WHERE state = 'pending'"), 1);
    assert_int_equal(query_int(st, "SELECT count(*) FROM deliveries"), 2);
    store_close(st);
}

/* Schema 9 stops copying orders to the timeline; the copies a schema-8
 * import made go, everything else on the timeline stays. */
static void
schema8_order_copies_leave_the_timeline(void **state)
{
    struct fixture *f = *state;
    struct store *st = NULL;
    struct nerr err;
    nerr_clear(&err);
    assert_int_equal(store_open_version(f->path, 8, &st, &err), 0);
    assert_int_equal(store_exec(st, "INSERT INTO timeline (customer_id, at, kind, detail) VALUES"
                                    " (1, 10, 'order', '{\"order_id\":\"A-1\"}'),"
                                    " (1, 20, 'sent', 'email r (o)'),"
                                    " (1, 30, 'unsubscribed', 'email')"),
                     0);
    store_close(st);
    assert_int_equal(store_open(f->path, &st, &err), 0);
    assert_int_equal(store_schema_version(st), STORE_SCHEMA_VERSION);
    assert_int_equal(query_int(st, "SELECT count(*) FROM timeline WHERE kind = 'order'"), 0);
    assert_int_equal(query_int(st, "SELECT count(*) FROM timeline"), 2);
    store_close(st);
}

static void
newer_schema_is_refused_with_a_clear_error(void **state)
{
    struct fixture *f = *state;
    struct store *st = NULL;
    struct nerr err;
    char buf[2048];
    nerr_clear(&err);
    assert_int_equal(store_open(f->path, &st, &err), 0);
    assert_int_equal(store_exec(st, "PRAGMA user_version = 99"), 0);
    store_close(st);

    st = NULL;
    nerr_clear(&err);
    assert_true(store_open(f->path, &st, &err) < 0);
    assert_null(st);
    nerr_format(&err, buf, sizeof(buf));
    assert_non_null(strstr(buf, f->path));
    assert_non_null(strstr(buf, "99"));
    assert_non_null(strstr(buf, "newer"));
    assert_true(err.hint[0] != '\0');
}

static void
reopening_is_a_no_op(void **state)
{
    struct fixture *f = *state;
    struct store *st = NULL;
    struct nerr err;
    char *before, *after;
    nerr_clear(&err);
    assert_int_equal(store_open(f->path, &st, &err), 0);
    assert_int_equal(store_exec(st, "INSERT INTO customers (ext_id, name) VALUES ('1', 'A')"), 0);
    before = dump(st);
    store_close(st);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(store_open(f->path, &st, &err), 0);
        after = dump(st);
        assert_string_equal(before, after);
        free(after);
        store_close(st);
    }
    free(before);
}

static void
unopenable_path_is_an_error(void **state)
{
    struct store *st = NULL;
    struct nerr err;
    (void)state;
    nerr_clear(&err);
    assert_true(store_open("/nonexistent-dir/sub/nudge.db", &st, &err) < 0);
    assert_null(st);
    assert_string_equal(err.file, "/nonexistent-dir/sub/nudge.db");
    assert_true(err.msg[0] != '\0');
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fresh_database_has_current_schema_and_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(schema1_database_migrates_with_data_intact, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(schema4_outbox_migrates_to_one_state_index, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(schema8_order_copies_leave_the_timeline, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_schema_is_refused_with_a_clear_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reopening_is_a_no_op, setup, teardown),
        cmocka_unit_test_setup_teardown(unopenable_path_is_an_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
