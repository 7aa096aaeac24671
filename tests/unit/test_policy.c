/*
 * test_policy.c: frequency caps (daemon/policy.c policy_admit) on a
 * temporary store:
 *
 *  - two dispatch slots deciding at the same moment, each on its own
 *    connection and thread, never let more than the cap through between
 *    them (the count and the mark are one write transaction);
 *  - a daily cap is a local calendar day in the customer's zone;
 *  - within a batch the higher-priority rule goes first, a message over the
 *    cap is deferred to the start of the next local day, or dropped for
 *    on_cap: drop;
 *  - room is kept for a higher-priority message still due today.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "config.h"
#include "policy.h"
#include "rules.h"
#include "store_internal.h"
#include "util.h"
#include "unit.h"

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
    int64_t v = -1;
    if (sqlite3_prepare_v2(st->db, q, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(st->db));
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* A claimed marketing delivery of customer 1 for `rule`, due at `due`. */
static int64_t
add_delivery(struct store *st, const char *rule, const char *channel, int k, ntime_t due)
{
    char *q = xasprintf("INSERT INTO deliveries (rule, customer_id, occurrence, action, channel,"
                        " state, due_at, created_at, next_attempt_at, marketing)"
                        " VALUES ('%s', 1, 'o%d', 0, '%s', 'sending', %lld, %lld, %lld, 1)",
                        rule, k, channel, (long long)due, (long long)due, (long long)due);
    sql(st, q);
    free(q);
    return sqlite3_last_insert_rowid(st->db);
}

static struct policy_msg
msg(int64_t id, const char *rule, const char *channel, const char *tz, ntime_t due)
{
    struct policy_msg m;
    memset(&m, 0, sizeof(m));
    m.delivery_id = id;
    m.customer_id = 1;
    m.rule = rule;
    m.channel = channel;
    m.marketing = true;
    m.tz = tz;
    m.due_at = due;
    return m;
}

struct racer {
    const char *db;
    const struct config *cfg;
    struct policy_msg *m;
    size_t n;
    pthread_barrier_t *go;
};

static void *
race(void *arg)
{
    struct racer *r = arg;
    struct store *st;
    struct nerr err;
    nerr_clear(&err);
    if (store_open(r->db, &st, &err) < 0)
        return NULL;
    pthread_barrier_wait(r->go);
    for (size_t i = 0; i < r->n; i++)
        policy_admit(st, r->cfg, NULL, r->m[i].due_at, &r->m[i], 1);
    store_close(st);
    cal_thread_cleanup();
    return NULL;
}

static void
two_slots_never_pass_the_cap_together(void **state)
{
    char dir[64];
    struct store *st;
    struct config *cfg = config_defaults("/tmp");
    ntime_t t;
    (void)state;
    assert_int_equal(tmp_store(dir, "policy-race", &st), 0);
    cfg->policy.max_per_day = 3;
    sql(st, "INSERT INTO customers (id, ext_id, tz) VALUES (1, 'c1', 'UTC')");
    assert_int_equal(time_parse_iso("2027-05-02T10:00:00Z", &t), 0);
    for (int round = 0; round < 20; round++) {
        enum { N = 8 };
        struct policy_msg a[N], b[N];
        struct racer ra = {NULL, cfg, a, N, NULL}, rb = {NULL, cfg, b, N, NULL};
        pthread_barrier_t go;
        pthread_t ta, tb;
        char *db = xasprintf("%s/nudge.db", dir);
        ntime_t now = t + round * 86400; /* a fresh day each round */
        long sent;
        for (int i = 0; i < N; i++) {
            a[i] = msg(add_delivery(st, "promo", "email", round * 100 + i, now), "promo", "email",
                       "UTC", now);
            b[i] = msg(add_delivery(st, "promo", "sms", round * 100 + 50 + i, now), "promo", "sms",
                       "UTC", now);
        }
        pthread_barrier_init(&go, NULL, 2);
        ra.db = rb.db = db;
        ra.go = rb.go = &go;
        pthread_create(&ta, NULL, race, &ra);
        pthread_create(&tb, NULL, race, &rb);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        free(db);
        sent = 0;
        for (int i = 0; i < N; i++)
            sent += (a[i].verdict == POLICY_SEND) + (b[i].verdict == POLICY_SEND);
        assert_int_equal(sent, 3);
        /* The marks agree with the verdicts. */
        {
            char *q = xasprintf("SELECT count(*) FROM deliveries WHERE cap_at >= %lld",
                                (long long)now);
            assert_int_equal(sql_int(st, q), 3);
            free(q);
        }
    }
    store_close(st);
    config_free(cfg);
    rmrf(dir);
}

static void
a_day_is_a_local_calendar_day(void **state)
{
    char dir[64];
    struct store *st;
    struct config *cfg = config_defaults("/tmp");
    struct policy_msg m;
    ntime_t t1, t2, t3;
    (void)state;
    assert_int_equal(tmp_store(dir, "policy-day", &st), 0);
    cfg->policy.max_per_day = 1;
    sql(st, "INSERT INTO customers (id, ext_id, tz) VALUES (1, 'c1', 'Asia/Shanghai')");
    /* 23:30 on 1 May in Shanghai, then 00:30 on 2 May (an hour later). */
    assert_int_equal(time_parse_iso("2027-05-01T15:30:00Z", &t1), 0);
    assert_int_equal(time_parse_iso("2027-05-01T16:30:00Z", &t2), 0);
    assert_int_equal(time_parse_iso("2027-05-01T17:30:00Z", &t3), 0);
    m = msg(add_delivery(st, "a", "email", 1, t1), "a", "email", "Asia/Shanghai", t1);
    assert_int_equal(policy_admit(st, cfg, NULL, t1, &m, 1), 0);
    assert_int_equal(m.verdict, POLICY_SEND);
    m = msg(add_delivery(st, "a", "email", 2, t2), "a", "email", "Asia/Shanghai", t2);
    assert_int_equal(policy_admit(st, cfg, NULL, t2, &m, 1), 0);
    assert_int_equal(m.verdict, POLICY_SEND);
    m = msg(add_delivery(st, "a", "email", 3, t3), "a", "email", "Asia/Shanghai", t3);
    assert_int_equal(policy_admit(st, cfg, NULL, t3, &m, 1), 0);
    assert_int_equal(m.verdict, POLICY_DEFER);
    /* The next local midnight: 00:00 on 3 May in Shanghai = 16:00Z on 2 May. */
    assert_int_equal(time_parse_iso("2027-05-02T16:00:00Z", &t1), 0);
    assert_int_equal(m.until, t1);
    /* Care messages and webhooks are not counted. */
    m = msg(add_delivery(st, "a", "webhook", 4, t3), "a", "webhook", "Asia/Shanghai", t3);
    assert_int_equal(policy_admit(st, cfg, NULL, t3, &m, 1), 0);
    assert_int_equal(m.verdict, POLICY_SEND);
    store_close(st);
    config_free(cfg);
    rmrf(dir);
}

static void
write_rule(const char *dir, const char *name, const char *extra)
{
    char *p = xasprintf("%s/%s.yaml", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "name: %s\ntrigger: { daily: { at: \"09:00\" } }\n%s\nactions:\n"
               "  - sms: { text: \"hi\" }\n",
            name, extra);
    fclose(f);
    free(p);
}

static void
priority_wins_and_on_cap_drop(void **state)
{
    char dir[64], *rdir, *errors = NULL;
    struct store *st;
    struct config *cfg = config_defaults("/tmp");
    struct ruleset *rs = NULL;
    struct rules_env env = {NULL, NULL};
    struct policy_msg m[3];
    ntime_t t, later;
    (void)state;
    assert_int_equal(tmp_store(dir, "policy-prio", &st), 0);
    rdir = xasprintf("%s/rules", dir);
    mkdir(rdir, 0700);
    write_rule(rdir, "low", "");
    write_rule(rdir, "high", "priority: 5");
    write_rule(rdir, "dropper", "priority: -1\non_cap: drop");
    assert_int_equal(ruleset_load(rdir, &env, &rs, &errors), 0);
    cfg->policy.max_per_day = 1;
    sql(st, "INSERT INTO customers (id, ext_id, tz) VALUES (1, 'c1', 'UTC')");
    assert_int_equal(time_parse_iso("2027-05-02T09:00:00Z", &t), 0);
    /* The low one is first in the batch and older; the high one still wins. */
    m[0] = msg(add_delivery(st, "low", "sms", 1, t), "low", "sms", "UTC", t);
    m[1] = msg(add_delivery(st, "dropper", "sms", 2, t), "dropper", "sms", "UTC", t);
    m[2] = msg(add_delivery(st, "high", "sms", 3, t), "high", "sms", "UTC", t);
    assert_int_equal(policy_admit(st, cfg, rs, t, m, 3), 0);
    assert_int_equal(m[2].verdict, POLICY_SEND);
    assert_int_equal(m[0].verdict, POLICY_DEFER);
    assert_int_equal(m[1].verdict, POLICY_DROP);
    assert_non_null(strstr(m[1].why, "frequency cap (max_per_day 1)"));

    /* Next day: a high-priority message due later that day keeps its room. */
    sql(st, "UPDATE deliveries SET state = 'sent' WHERE occurrence = 'o3'");
    sql(st, "UPDATE deliveries SET state = 'suppressed' WHERE occurrence = 'o2'");
    later = t + 86400 + 6 * 3600;
    add_delivery(st, "high", "sms", 4, later);
    sql(st, "UPDATE deliveries SET state = 'pending' WHERE occurrence = 'o4'");
    m[0] = msg(m[0].delivery_id, "low", "sms", "UTC", t + 86400);
    assert_int_equal(policy_admit(st, cfg, rs, t + 86400, m, 1), 0);
    assert_int_equal(m[0].verdict, POLICY_DEFER);
    assert_non_null(strstr(m[0].why, "room kept for 1 higher-priority message(s)"));
    ruleset_unref(rs);
    free(errors);
    free(rdir);
    store_close(st);
    config_free(cfg);
    rmrf(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_slots_never_pass_the_cap_together),
        cmocka_unit_test(a_day_is_a_local_calendar_day),
        cmocka_unit_test(priority_wins_and_on_cap_drop),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cal_thread_cleanup();
    return rc;
}
