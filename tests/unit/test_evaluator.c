/*
 * test_evaluator.c: listing `entered` triggers over a long window (forecast).
 *
 * A condition that is stepwise in the day (audience.h) is listed by
 * evaluating it once per customer and again only where its day-dependent
 * values cross a cut; any other condition is evaluated on every fire. The
 * test lists each rule both ways (evaluator.day_by_day) over fourteen months
 * for a few hundred generated customers in five zones, with missing and
 * malformed dates, 29 February birthdays, and customers already inside the
 * condition at the start, and requires the same rows, row for row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audience.h"
#include "calendar.h"
#include "config.h"
#include "evaluator.h"
#include "rules.h"
#include "store_internal.h"
#include "util.h"
#include "unit.h"

struct fixture {
    char dir[64];
    struct store *st;
    struct config *cfg;
    struct evaluator ev;
};

static void
exec_sql(struct store *st, const char *q)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, q, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", q, msg ? msg : "?");
}

static uint64_t rng = 88172645463325252ull;

static unsigned
rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* A date between 2025-06-01 and 2028-04-01, as text. */
static void
rnd_date(char *buf, size_t size)
{
    int y, m, d;
    civil_from_days(days_from_civil(2025, 6, 1) + rnd(1035), &y, &m, &d);
    snprintf(buf, size, "%04d-%02d-%02d", y, m, d);
}

static void
add_customers(struct fixture *f, int n)
{
    static const char *const zones[] = {"UTC", "Asia/Shanghai", "America/New_York", "Europe/London",
                                        NULL};
    static const char *const tiers[] = {"gold", "silver", "bronze", NULL};
    static const char *const odd_birthdays[] = {"--02-29",    "2000-02-29", "--12-31",
                                                "1990-01-01", "not a date", "--13-01"};
    sqlite3_stmt *c, *s;
    exec_sql(f->st, "BEGIN");
    assert_int_equal(sqlite3_prepare_v2(f->st->db,
                                        "INSERT INTO customers (id, ext_id, birthday, tz, tier,"
                                        " created_at, attrs) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                        -1, &c, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(f->st->db,
                                        "INSERT INTO customer_stats (customer_id, orders_count,"
                                        " total_cents, last_order_date) VALUES (?, ?, ?, ?)",
                                        -1, &s, NULL),
                     SQLITE_OK);
    for (int i = 1; i <= n; i++) {
        char ext[16], bday[16], created[32], last[16], attrs[64], renewal[16];
        const char *zone = zones[rnd(5)], *tier = tiers[rnd(4)];
        snprintf(ext, sizeof(ext), "c%04d", i);
        if (rnd(6) == 0)
            snprintf(bday, sizeof(bday), "%s", odd_birthdays[rnd(6)]);
        else
            snprintf(bday, sizeof(bday), "%04u-%02u-%02u", 1950 + rnd(60), 1 + rnd(12),
                     1 + rnd(28));
        rnd_date(created, sizeof(created));
        if (rnd(3) == 0)
            snprintf(created + 10, sizeof(created) - 10, "T%02u:30:00Z", rnd(24));
        rnd_date(last, sizeof(last));
        rnd_date(renewal, sizeof(renewal));
        snprintf(attrs, sizeof(attrs), "{\"renewal\": \"%s\"}", rnd(5) == 0 ? "soon" : renewal);
        sqlite3_bind_int(c, 1, i);
        sqlite3_bind_text(c, 2, ext, -1, SQLITE_TRANSIENT);
        if (rnd(10))
            sqlite3_bind_text(c, 3, bday, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(c, 3);
        if (zone)
            sqlite3_bind_text(c, 4, zone, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(c, 4);
        if (tier)
            sqlite3_bind_text(c, 5, tier, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(c, 5);
        sqlite3_bind_text(c, 6, created, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(c, 7, attrs, -1, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(c), SQLITE_DONE);
        sqlite3_reset(c);
        sqlite3_clear_bindings(c);
        if (rnd(8)) {
            sqlite3_bind_int(s, 1, i);
            sqlite3_bind_int(s, 2, 1 + (int)rnd(9));
            sqlite3_bind_int(s, 3, (int)rnd(100000));
            sqlite3_bind_text(s, 4, last, -1, SQLITE_TRANSIENT);
            assert_int_equal(sqlite3_step(s), SQLITE_DONE);
            sqlite3_reset(s);
        }
    }
    sqlite3_finalize(c);
    sqlite3_finalize(s);
    exec_sql(f->st, "INSERT INTO attribute_keys (key) VALUES ('renewal'); COMMIT");
}

static int
setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    if (tmp_store(f->dir, "eval", &f->st) < 0) {
        free(f);
        return -1;
    }
    f->cfg = config_defaults(f->dir);
    f->ev.st = f->st;
    f->ev.cfg = f->cfg;
    add_customers(f, 600);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    config_free(f->cfg);
    rmrf(f->dir);
    free(f);
    cal_thread_cleanup();
    return 0;
}

static struct rule *
load_rule(struct fixture *f, const char *cond, const char *audience, struct ruleset **rs)
{
    static const char *const attrs[] = {"renewal", NULL};
    char *dir = xasprintf("%s/rules", f->dir), *path = xasprintf("%s/r.yaml", dir);
    char *errors = NULL;
    FILE *fp;
    mkdir(dir, 0700);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp,
            "name: r\n"
            "trigger: { entered: \"%s\", at: \"10:00\" }\n"
            "%s%s%s"
            "actions:\n"
            "  - webhook: { url: \"http://127.0.0.1:9/hook\" }\n"
            "  - task: { note: \"call\" }\n",
            cond, audience ? "audience: \"" : "", audience ? audience : "", audience ? "\"\n" : "");
    assert_int_equal(fclose(fp), 0);
    if (ruleset_load(dir, &(struct rules_env){NULL, attrs}, rs, &errors) < 0)
        fail_msg("rule does not load:\n%s", errors ? errors : "?");
    free(path);
    free(dir);
    return (struct rule *)ruleset_find(*rs, "r");
}

struct rows {
    char **v;
    size_t n;
};

static int
add_row(void *ud, const struct eval_row *row)
{
    struct rows *rs = ud;
    char at[32];
    time_format_iso(row->fire->at, at, sizeof(at));
    rs->v = xrealloc(rs->v, (rs->n + 1) * sizeof(*rs->v));
    rs->v[rs->n++] =
        xasprintf("%s %s %s %s %zu", at, row->tz, row->ext_id, row->fire->occurrence, row->action);
    return 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
rows_free(struct rows *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        free(rs->v[i]);
    free(rs->v);
}

/* Lists the rule both ways and compares; returns the number of rows. */
static size_t
compare_listings(struct fixture *f, const char *cond, const char *audience, bool stepwise)
{
    struct ruleset *rs = NULL;
    struct rule *r = load_rule(f, cond, audience, &rs);
    struct rows a = {NULL, 0}, b = {NULL, 0};
    struct eval_stats sa = {0, 0, 0}, sb = {0, 0, 0};
    ntime_t from = 0, to = 0, now;
    size_t n;

    assert_non_null(r);
    if (r->trigger.condition->stepwise != stepwise)
        fail_msg("%s: stepwise is %d, expected %d", cond, r->trigger.condition->stepwise, stepwise);
    assert_int_equal(time_parse_iso("2026-12-31T12:00:00Z", &from), 0);
    assert_int_equal(time_parse_iso("2028-03-01T00:00:00Z", &to), 0);
    now = from;
    f->ev.day_by_day = false;
    assert_int_equal(evaluate_window(&f->ev, r, from, to, now, add_row, &a, &sa), 0);
    f->ev.day_by_day = true;
    assert_int_equal(evaluate_window(&f->ev, r, from, to, now, add_row, &b, &sb), 0);
    qsort(a.v, a.n, sizeof(*a.v), cmp_str);
    qsort(b.v, b.n, sizeof(*b.v), cmp_str);
    for (size_t i = 0; i < a.n && i < b.n; i++)
        if (strcmp(a.v[i], b.v[i]))
            fail_msg("%s: row %zu differs:\n  stepwise:   %s\n  day by day: %s", cond, i, a.v[i],
                     b.v[i]);
    if (a.n != b.n)
        fail_msg("%s: %zu rows stepwise, %zu day by day", cond, a.n, b.n);
    assert_int_equal(sa.fires, sb.fires);
    assert_int_equal(sa.enqueued, sb.enqueued);
    n = a.n;
    rows_free(&a);
    rows_free(&b);
    ruleset_unref(rs);
    return n;
}

static void
test_same_rows_both_ways(void **state)
{
    struct fixture *f = *state;
    /* Some customers are inside already when the window starts: they fire
     * only after leaving and entering again. */
    exec_sql(f->st, "INSERT INTO rule_members (rule, customer_id, since)"
                    " SELECT 'r', id, '2026-12-01' FROM customers WHERE id % 7 = 0");

    assert_true(compare_listings(f, "days_since(last_order_date) >= 90", NULL, true) > 200);
    assert_true(compare_listings(f, "days_since(last_order_date) >= 90", "tier != 'bronze'", true) >
                100);
    assert_true(compare_listings(f, "days_since(last_order_date) between 30 and 60",
                                 "tier = 'gold'", true) > 30);
    assert_true(compare_listings(f,
                                 "days_since(last_order_date) in (7, 14, 45) or "
                                 "days_until_anniversary(birthday) <= 3",
                                 NULL, true) > 300);
    assert_true(compare_listings(f,
                                 "not (days_until_anniversary(birthday) > 10) and "
                                 "days_since(created_at) > 365",
                                 NULL, true) > 50);
    assert_true(compare_listings(f, "days_until_anniversary(birthday) = 0", NULL, true) > 300);
    assert_true(compare_listings(f, "days_since(renewal) = 100 or days_since(renewal) >= 400.5",
                                 NULL, true) > 50);
    assert_true(compare_listings(f, "days_since(last_order_date) < '45' and tier is not null",
                                 "days_since(created_at) > 200", true) > 30);
    assert_true(compare_listings(f, "days_since(last_order_date) is null", NULL, true) > 20);
    assert_true(compare_listings(f, "tier = 'gold'", NULL, true) > 50);
    /* Not stepwise: a day count compared with another one. */
    assert_true(compare_listings(f, "days_since(last_order_date) > days_since(created_at)", NULL,
                                 false) > 50);
}

/* What the compiler says about day dependence. */
static void
test_stepwise_analysis(void **state)
{
    static const struct {
        const char *expr;
        bool stepwise;
        size_t ndayrefs, ncuts;
    } cases[] = {
        {"tier = 'gold'", true, 0, 0},
        {"days_since(last_order_date) >= 90", true, 1, 1},
        {"days_since(last_order_date) between 30 and 60", true, 1, 2},
        {"days_since(last_order_date) in (1, 2, 2, 3) and days_until_anniversary(birthday) < 3",
         true, 2, 3},
        {"days_since(created_at) is not null", true, 1, 0},
        {"days_since(last_order_date) > orders_count", false, 1, 0},
        {"days_since(last_order_date) like '1%'", false, 1, 0},
        {"days_since(last_order_date) = days_until_anniversary(birthday)", false, 2, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct audience *a = NULL;
        struct nerr err;
        nerr_clear(&err);
        if (audience_compile(cases[i].expr, "t", 1, 1, NULL, &a, &err) < 0)
            fail_msg("%s: %s", cases[i].expr, err.msg);
        if (a->stepwise != cases[i].stepwise || a->ndayrefs != cases[i].ndayrefs ||
            (cases[i].stepwise && a->ncuts != cases[i].ncuts))
            fail_msg("%s: stepwise %d, %zu dayrefs, %zu cuts", cases[i].expr, a->stepwise,
                     a->ndayrefs, a->ncuts);
        audience_free(a);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_rows_both_ways, setup, teardown),
        cmocka_unit_test(test_stepwise_analysis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
