/*
 * test_outbox.c: the deliveries table as a queue (store/outbox.c) and the
 * evaluator that fills it (daemon/evaluator.c), on a temporary SQLite store:
 *
 *  - evaluating the same window twice inserts each (rule, customer,
 *    occurrence, action) once;
 *  - a claim takes due rows only and leases them; a crashed claimer's rows
 *    come back once the lease has expired, never before;
 *  - results: sent, retry with exponential backoff and jitter, dead after the
 *    lifetime or at once for a permanent failure; release and manual retry;
 *  - evaluate_due: a new rule does not reach into the past, a later call
 *    fires what fell due in between, and fires older than catch_up are
 *    skipped rather than sent late.
 *
 * Customers are inserted with plain SQL; rules are loaded from files written
 * to the temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calendar.h"
#include "config.h"
#include "evaluator.h"
#include "log.h"
#include "outbox.h"
#include "rules.h"
#include "store_internal.h"
#include "util.h"
#include "unit.h"

/* ---- fixture ------------------------------------------------------- */

struct fixture {
    char dir[64];
    struct store *st;
    struct config *cfg;
    struct evaluator ev;
    struct ruleset *rs;
};

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
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* One text value (or "(null)"), in a static buffer. */
static const char *
sql_text(struct store *st, const char *q)
{
    static char buf[1024];
    sqlite3_stmt *s;
    snprintf(buf, sizeof(buf), "(no row)");
    if (sqlite3_prepare_v2(st->db, q, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", q, sqlite3_errmsg(st->db));
    if (sqlite3_step(s) == SQLITE_ROW)
        snprintf(buf, sizeof(buf), "%s",
                 sqlite3_column_type(s, 0) == SQLITE_NULL
                     ? "(null)"
                     : (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return buf;
}

static int
setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    if (tmp_store(f->dir, "outbox", &f->st) < 0) {
        free(f);
        return -1;
    }
    f->cfg = config_defaults(f->dir);
    f->ev.st = f->st;
    f->ev.cfg = f->cfg;
    f->ev.senv.holidays = NULL;
    f->ev.senv.feb29_mar1 = false;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    ruleset_unref(f->rs);
    store_close(f->st);
    config_free(f->cfg);
    rmrf(f->dir);
    free(f);
    cal_thread_cleanup();
    return 0;
}

/* Writes the rule files given as name, text pairs (NULL-terminated) into
 * DIR/rules and loads them. */
static void
load_rules(struct fixture *f, ...)
{
    char *dir = xasprintf("%s/rules", f->dir), *errors = NULL;
    va_list ap;
    const char *name;
    mkdir(dir, 0700);
    va_start(ap, f);
    while ((name = va_arg(ap, const char *))) {
        const char *text = va_arg(ap, const char *);
        free(put(dir, name, text));
    }
    va_end(ap);
    ruleset_unref(f->rs);
    f->rs = NULL;
    if (ruleset_load(dir, &(struct rules_env){NULL, NULL}, &f->rs, &errors) < 0)
        fail_msg("rules do not load:\n%s", errors ? errors : "?");
    free(dir);
}

static const char birthday_rule[] = "name: bday\n"
                                    "trigger: { anniversary: birthday, at: \"09:00\" }\n"
                                    "audience: email is not null and consents('email')\n"
                                    "actions:\n"
                                    "  - email: { template: bday }\n"
                                    "  - webhook: { url: \"http://127.0.0.1:9/hook\" }\n";

static void
add_birthday_customers(struct fixture *f)
{
    sql(f->st,
        "INSERT INTO customers (id, ext_id, first_name, email, birthday, tz) VALUES"
        " (1, 'c1', 'Li', 'li@example.com', '1990-03-10', 'Asia/Shanghai'),"
        " (2, 'c2', 'Ann', 'ann@example.com', '--03-10', NULL),"
        " (3, 'c3', 'Bo', NULL, '1985-03-10', 'UTC'),"             /* no email: not in audience */
        " (4, 'c4', 'Cy', 'cy@example.com', '1990-03-11', 'UTC')," /* another day */
        " (5, 'c5', 'Di', 'di@example.com', '1991-03-10', 'UTC')," /* no consent */
        " (6, 'c6', 'Ed', 'ed@example.com', '2027-03-10', 'UTC')," /* born that day */
        " (7, 'c7', 'Fa', 'fa@example.com', '1990-03-10', 'Mars/Olympus');" /* bad zone */
        "INSERT INTO consents (customer_id, channel, granted) VALUES"
        " (1, 'email', 1), (2, 'email', 1), (3, 'email', 1), (4, 'email', 1), (5, 'email', 0),"
        " (6, 'email', 1), (7, 'email', 1);");
}

/* ---- evaluate_window ------------------------------------------------ */

static void
same_window_evaluated_twice_inserts_each_delivery_once(void **state)
{
    struct fixture *f = *state;
    struct eval_stats st1 = {0, 0, 0}, st2 = {0, 0, 0};
    const struct rule *r;
    {
        char *rd = xasprintf("%s/rules", f->dir);
        mkdir(rd, 0700);
        free(put(rd, "bday.subject", "Happy birthday, {{first_name}}\n"));
        free(put(rd, "bday.txt", "Dear {{first_name}}, happy birthday!\n"));
        free(rd);
    }
    load_rules(f, "bday.yaml", birthday_rule, (const char *)NULL);
    r = ruleset_find(f->rs, "bday");
    assert_non_null(r);
    add_birthday_customers(f);

    assert_int_equal(evaluate_window(&f->ev, r, iso("2027-03-09T00:00:00Z"),
                                     iso("2027-03-11T00:00:00Z"), iso("2027-03-11T00:00:00Z"), NULL,
                                     NULL, &st1),
                     0);
    assert_int_equal(st1.enqueued, 4); /* customers 1 and 2, two actions each */
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries"), 4);
    assert_int_equal(evaluate_window(&f->ev, r, iso("2027-03-09T00:00:00Z"),
                                     iso("2027-03-11T00:00:00Z"), iso("2027-03-11T01:00:00Z"), NULL,
                                     NULL, &st2),
                     0);
    assert_int_equal(st2.enqueued, 0);
    assert_true(st2.fires > 0);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries"), 4);

    assert_int_equal(sql_int(f->st, "SELECT count(DISTINCT customer_id) FROM deliveries"), 2);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries WHERE customer_id IN (1, 2)"
                                    " AND rule = 'bday' AND occurrence = 'birthday:2027'"
                                    " AND state = 'pending' AND attempts = 0"),
                     4);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries WHERE action = 0"
                                    " AND channel = 'email'"),
                     2);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries WHERE action = 1"
                                    " AND channel = 'webhook'"),
                     2);
    /* 09:00 in each customer's zone: Shanghai, and the default zone (UTC). */
    assert_int_equal(sql_int(f->st, "SELECT DISTINCT due_at FROM deliveries WHERE customer_id = 1"),
                     iso("2027-03-10T01:00:00Z"));
    assert_int_equal(sql_int(f->st, "SELECT DISTINCT due_at FROM deliveries WHERE customer_id = 2"),
                     iso("2027-03-10T09:00:00Z"));
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries WHERE next_attempt_at = "
                                    "due_at"),
                     4);
    assert_int_equal(sql_int(f->st, "SELECT DISTINCT created_at FROM deliveries"),
                     iso("2027-03-11T00:00:00Z"));
}

/* ---- claims and leases ---------------------------------------------- */

static int64_t
add_delivery(struct fixture *f, const char *occurrence, const char *channel, ntime_t due,
             ntime_t created)
{
    char *q = xasprintf("INSERT INTO deliveries (rule, customer_id, occurrence, action, channel,"
                        " due_at, created_at, next_attempt_at) VALUES ('r', 1, '%s', 0, '%s',"
                        " %lld, %lld, %lld)",
                        occurrence, channel, (long long)due, (long long)created, (long long)due);
    sql(f->st, q);
    free(q);
    return sqlite3_last_insert_rowid(f->st->db);
}

static const char *
state_of(struct fixture *f, int64_t id)
{
    static char buf[32];
    char *q = xasprintf("SELECT state FROM deliveries WHERE id = %lld", (long long)id);
    snprintf(buf, sizeof(buf), "%s", sql_text(f->st, q));
    free(q);
    return buf;
}

static int64_t
delivery_col(struct fixture *f, int64_t id, const char *col)
{
    char *q = xasprintf("SELECT %s FROM deliveries WHERE id = %lld", col, (long long)id);
    int64_t v = sql_int(f->st, q);
    free(q);
    return v;
}

static const char *
error_of(struct fixture *f, int64_t id)
{
    char *q = xasprintf("SELECT last_error FROM deliveries WHERE id = %lld", (long long)id);
    const char *s = sql_text(f->st, q);
    free(q);
    return s;
}

/* Each claim here is made by another owner (as if by another daemon
 * instance), so a lease that ran out lets the next claim take the row. */
static void
claim(struct fixture *f, const char *channel, ntime_t now, int64_t lease, size_t max,
      struct delivery **out, size_t *n)
{
    static const char *const owners[] = {"test-a", "test-b", "test-c", "test-d"};
    static unsigned next;
    struct claim who = {owners[next++ % 4], outbox_claim_token()};
    assert_int_equal(outbox_claim(f->st, channel, now, lease, max, &who, out, n), 0);
}

static void
free_claimed(struct delivery *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        delivery_clear(&d[i]);
    free(d);
}

static void
claim_takes_due_rows_of_its_channel_and_leases_them(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 50);
    int64_t b = add_delivery(f, "b", "email", 200, 50); /* not yet due */
    int64_t c = add_delivery(f, "c", "sms", 100, 50);   /* another channel */
    struct delivery *d;
    size_t n;
    claim(f, "email", 150, 300, 10, &d, &n);
    assert_int_equal(n, 1);
    assert_int_equal(d[0].id, a);
    assert_string_equal(d[0].rule, "r");
    assert_int_equal(d[0].customer_id, 1);
    assert_string_equal(d[0].occurrence, "a");
    assert_string_equal(d[0].channel, "email");
    assert_int_equal(d[0].attempts, 1);
    assert_int_equal(d[0].due_at, 100);
    assert_int_equal(d[0].created_at, 50);
    free_claimed(d, n);
    assert_string_equal(state_of(f, a), "sending");
    assert_int_equal(delivery_col(f, a, "lease_until"), 450);
    assert_string_equal(state_of(f, b), "pending");
    assert_string_equal(state_of(f, c), "pending");
}

static void
claim_honours_max_and_due_order(void **state)
{
    struct fixture *f = *state;
    int64_t late = add_delivery(f, "late", "email", 120, 0);
    int64_t early = add_delivery(f, "early", "email", 100, 0);
    int64_t mid = add_delivery(f, "mid", "email", 110, 0);
    struct delivery *d;
    size_t n;
    claim(f, "email", 1000, 60, 2, &d, &n);
    assert_int_equal(n, 2);
    assert_int_equal(d[0].id + d[1].id, early + mid);
    free_claimed(d, n);
    claim(f, "email", 1000, 60, 2, &d, &n);
    assert_int_equal(n, 1);
    assert_int_equal(d[0].id, late);
    free_claimed(d, n);
}

static void
expired_lease_makes_a_claimed_row_claimable_again(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 50);
    struct delivery *d;
    size_t n;
    claim(f, "email", 150, 300, 10, &d, &n);
    assert_int_equal(n, 1);
    free_claimed(d, n);
    /* The claimer "crashes". Before its lease runs out nobody else gets the row... */
    claim(f, "email", 449, 300, 10, &d, &n);
    assert_int_equal(n, 0);
    free(d);
    /* ...and afterwards it comes back, as another attempt. */
    claim(f, "email", 450, 300, 10, &d, &n);
    assert_int_equal(n, 1);
    assert_int_equal(d[0].id, a);
    assert_int_equal(d[0].attempts, 2);
    free_claimed(d, n);
    assert_int_equal(delivery_col(f, a, "lease_until"), 750);
}

/* ---- results -------------------------------------------------------- */

static struct delivery
claim_one(struct fixture *f, ntime_t now)
{
    struct delivery *d, one;
    size_t n;
    claim(f, "email", now, 300, 1, &d, &n);
    assert_int_equal(n, 1);
    one = d[0];
    free(d);
    return one;
}

static struct send_result
result(enum send_status status, const char *error)
{
    struct send_result r;
    memset(&r, 0, sizeof(r));
    r.status = status;
    r.code = status == SEND_OK ? 250 : status == SEND_TRANSIENT ? 451 : 550;
    snprintf(r.error, sizeof(r.error), "%s", error);
    return r;
}

static void
ok_result_marks_the_delivery_sent(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 50);
    struct delivery d = claim_one(f, 150);
    struct send_result ok = result(SEND_OK, ""), late = result(SEND_PERMANENT, "late");
    assert_int_equal(outbox_record(f->st, &d, &ok, 160, 3 * 86400, 0), 0);
    assert_string_equal(state_of(f, a), "sent");
    assert_int_equal(delivery_col(f, a, "sent_at"), 160);
    assert_int_equal(delivery_col(f, a, "lease_until"), INT64_MIN); /* NULL */
    /* A second result for the same attempt (a stale worker) changes nothing. */
    assert_int_equal(outbox_record(f->st, &d, &late, 170, 3 * 86400, 0), 0);
    assert_string_equal(state_of(f, a), "sent");
    delivery_clear(&d);
}

static void
transient_failure_retries_after_backoff(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 1000, 1000);
    struct send_result tmp = result(SEND_TRANSIENT, "451 try again later");
    struct delivery d = claim_one(f, 1000), *none;
    size_t n;
    int64_t next;
    assert_int_equal(outbox_record(f->st, &d, &tmp, 1010, 3 * 86400, 0), 0);
    delivery_clear(&d);
    assert_string_equal(state_of(f, a), "retry");
    assert_string_equal(error_of(f, a), "451 try again later");
    next = delivery_col(f, a, "next_attempt_at");
    /* First failure: one minute, +-20 %. */
    assert_in_range(next - 1010, 48, 72);
    assert_int_equal(delivery_col(f, a, "lease_until"), INT64_MIN);
    claim(f, "email", next - 1, 300, 10, &none, &n);
    assert_int_equal(n, 0);
    free(none);
    d = claim_one(f, next);
    assert_int_equal(d.id, a);
    assert_int_equal(d.attempts, 2);
    /* Second failure: two minutes, +-20 %. */
    assert_int_equal(outbox_record(f->st, &d, &tmp, next, 3 * 86400, 0), 0);
    delivery_clear(&d);
    assert_in_range(delivery_col(f, a, "next_attempt_at") - next, 96, 144);
}

static void
backoff_doubles_from_one_minute_with_jitter_up_to_six_hours(void **state)
{
    (void)state;
    for (int n = 1; n <= 30; n++) {
        int64_t base = 60;
        int64_t lo, hi, first = -1;
        bool varied = false;
        for (int i = 1; i < n && base < 6 * 3600; i++)
            base *= 2;
        if (base > 6 * 3600)
            base = 6 * 3600;
        lo = base * 8 / 10;
        hi = base * 12 / 10;
        for (int k = 0; k < 200; k++) {
            int64_t b = outbox_backoff(n, 0);
            if (b < lo || b > hi)
                fail_msg("backoff after %d failures = %lld, want %lld..%lld", n, (long long)b,
                         (long long)lo, (long long)hi);
            if (first < 0)
                first = b;
            else if (b != first)
                varied = true;
        }
        if (!varied)
            fail_msg("backoff after %d failures has no jitter", n);
    }
    /* A peer's Retry-After is honoured when longer. */
    assert_true(outbox_backoff(1, 7200) >= 7200);
}

static void
transient_failure_past_lifetime_goes_dead_with_reason(void **state)
{
    struct fixture *f = *state;
    const int64_t life = 3 * 86400;
    int64_t a = add_delivery(f, "a", "email", 0, 0);
    struct send_result tmp = result(SEND_TRANSIENT, "connection refused");
    struct delivery d = claim_one(f, life - 10);
    assert_int_equal(outbox_record(f->st, &d, &tmp, life - 10, life, 0), 0);
    delivery_clear(&d);
    assert_string_equal(state_of(f, a), "dead");
    assert_non_null(strstr(error_of(f, a), "connection refused"));
    assert_non_null(strstr(error_of(f, a), "lifetime"));
    /* A dead row is never claimed again by itself. */
    {
        struct delivery *none;
        size_t n;
        claim(f, "email", life * 10, 300, 10, &none, &n);
        assert_int_equal(n, 0);
        free(none);
    }
}

static void
permanent_failure_goes_dead_at_once(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 100);
    struct send_result perm = result(SEND_PERMANENT, "550 no such user");
    struct delivery d = claim_one(f, 100);
    assert_int_equal(outbox_record(f->st, &d, &perm, 101, 3 * 86400, 0), 0);
    delivery_clear(&d);
    assert_string_equal(state_of(f, a), "dead");
    assert_string_equal(error_of(f, a), "550 no such user");
    assert_int_equal(delivery_col(f, a, "attempts"), 1);
}

static void
release_hands_a_claim_back_untouched(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 100);
    struct send_result tmp = result(SEND_TRANSIENT, "busy");
    struct delivery d = claim_one(f, 100);
    assert_int_equal(outbox_release(f->st, &d), 0);
    delivery_clear(&d);
    assert_string_equal(state_of(f, a), "pending");
    assert_int_equal(delivery_col(f, a, "attempts"), 0);
    assert_int_equal(delivery_col(f, a, "lease_until"), INT64_MIN);
    /* Claimable again at once, lease or not. */
    d = claim_one(f, 101);
    assert_int_equal(d.attempts, 1);
    /* After a failed attempt, a released retry stays a retry. */
    assert_int_equal(outbox_record(f->st, &d, &tmp, 101, 3 * 86400, 0), 0);
    delivery_clear(&d);
    d = claim_one(f, 100000);
    assert_int_equal(d.attempts, 2);
    assert_int_equal(outbox_release(f->st, &d), 0);
    delivery_clear(&d);
    assert_string_equal(state_of(f, a), "retry");
    assert_int_equal(delivery_col(f, a, "attempts"), 1);
}

static void
manual_retry_revives_dead_deliveries(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 100);
    int64_t b = add_delivery(f, "b", "email", 100, 100);
    int64_t c = add_delivery(f, "c", "email", 100, 100);
    struct send_result perm = result(SEND_PERMANENT, "550 rejected"), ok = result(SEND_OK, "");
    struct delivery d;
    for (int i = 0; i < 2; i++) {
        d = claim_one(f, 100);
        assert_int_equal(outbox_record(f->st, &d, &perm, 100, 3 * 86400, 0), 0);
        delivery_clear(&d);
    }
    d = claim_one(f, 100);
    assert_int_equal(d.id, c);
    assert_int_equal(outbox_record(f->st, &d, &ok, 100, 3 * 86400, 0), 0);
    delivery_clear(&d);
    assert_string_equal(state_of(f, a), "dead");
    assert_string_equal(state_of(f, b), "dead");

    assert_int_equal(outbox_retry(f->st, a, 5000), 1);
    assert_string_equal(state_of(f, a), "retry");
    assert_int_equal(delivery_col(f, a, "next_attempt_at"), 5000);
    assert_int_equal(delivery_col(f, a, "attempts"), 0);
    assert_string_equal(state_of(f, b), "dead");
    /* A sent delivery is not sent again. */
    assert_int_equal(outbox_retry(f->st, c, 5000), 0);
    assert_string_equal(state_of(f, c), "sent");
    /* Every dead one. */
    assert_int_equal(outbox_retry(f->st, -1, 6000), 1);
    assert_string_equal(state_of(f, b), "retry");
    d = claim_one(f, 6000);
    assert_true(d.id == a || d.id == b);
    assert_int_equal(d.attempts, 1);
    delivery_clear(&d);
}

static void
unsettled_counts_due_and_in_flight_rows(void **state)
{
    struct fixture *f = *state;
    int64_t count = -1;
    struct send_result ok = result(SEND_OK, ""), tmp = result(SEND_TRANSIENT, "later");
    struct delivery d;
    add_delivery(f, "due", "email", 100, 100);
    add_delivery(f, "future", "email", 10000, 100);
    add_delivery(f, "sent", "sms", 100, 100);
    add_delivery(f, "inflight", "webhook", 100, 100);
    add_delivery(f, "retry", "task", 100, 100);
    assert_int_equal(outbox_unsettled(f->st, 200, &count), 0);
    assert_int_equal(count, 4);
    {
        struct delivery *x;
        size_t n;
        claim(f, "sms", 200, 300, 10, &x, &n);
        assert_int_equal(n, 1);
        assert_int_equal(outbox_record(f->st, &x[0], &ok, 200, 86400, 0), 0);
        free_claimed(x, n);
        claim(f, "webhook", 200, 300, 10, &x, &n);
        assert_int_equal(n, 1);
        free_claimed(x, n);
        claim(f, "task", 200, 300, 10, &x, &n);
        assert_int_equal(n, 1);
        assert_int_equal(outbox_record(f->st, &x[0], &tmp, 200, 86400, 0), 0);
        free_claimed(x, n);
    }
    /* due (pending), inflight (sending); the retry is not due yet at 200. */
    assert_int_equal(outbox_unsettled(f->st, 200, &count), 0);
    assert_int_equal(count, 2);
    /* Later the retry is due, and so is the future one. */
    assert_int_equal(outbox_unsettled(f->st, 20000, &count), 0);
    assert_int_equal(count, 4);
    d = claim_one(f, 20000);
    assert_int_equal(outbox_finish(f->st, &d, "suppressed", "unsubscribed", 20000), 0);
    assert_string_equal(state_of(f, d.id), "suppressed");
    delivery_clear(&d);
    assert_int_equal(outbox_unsettled(f->st, 20000, &count), 0);
    assert_int_equal(count, 3);
}

/* ---- evaluate_due --------------------------------------------------- */

static const char daily_rule[] = "name: daily\n"
                                 "trigger: { daily: { at: \"09:00\" } }\n"
                                 "actions:\n"
                                 "  - webhook: { url: \"http://127.0.0.1:9/hook\" }\n";

static void
add_two_utc_customers(struct fixture *f)
{
    sql(f->st, "INSERT INTO customers (id, ext_id, tz) VALUES (1, 'u1', 'UTC'), (2, 'u2', NULL)");
}

static void
new_rule_does_not_reach_into_the_past(void **state)
{
    struct fixture *f = *state;
    struct eval_stats st = {0, 0, 0};
    load_rules(f, "daily.yaml", daily_rule, (const char *)NULL);
    add_two_utc_customers(f);
    /* 09:00 fires lie behind, but the rule is new. */
    assert_int_equal(evaluate_due(&f->ev, f->rs, iso("2027-03-10T12:00:00Z"), 30 * 86400, &st), 0);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries"), 0);
    assert_int_equal(st.fires, 0);
    assert_int_equal(sql_int(f->st, "SELECT evaluated_to FROM rule_runs WHERE rule = 'daily'"),
                     iso("2027-03-10T12:00:00Z"));
}

static void
later_evaluation_fires_what_fell_due_in_between(void **state)
{
    struct fixture *f = *state;
    struct eval_stats st = {0, 0, 0};
    load_rules(f, "daily.yaml", daily_rule, (const char *)NULL);
    add_two_utc_customers(f);
    assert_int_equal(evaluate_due(&f->ev, f->rs, iso("2027-03-10T12:00:00Z"), 86400, &st), 0);
    assert_int_equal(evaluate_due(&f->ev, f->rs, iso("2027-03-12T12:00:00Z"), 7 * 86400, &st), 0);
    assert_int_equal(st.fires, 2); /* 03-11 and 03-12, one zone */
    assert_int_equal(st.skipped_late, 0);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries"), 4);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries WHERE occurrence ="
                                    " '2027-03-11'"),
                     2);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries WHERE occurrence ="
                                    " '2027-03-12'"),
                     2);
    assert_int_equal(sql_int(f->st, "SELECT evaluated_to FROM rule_runs WHERE rule = 'daily'"),
                     iso("2027-03-12T12:00:00Z"));
    /* Nothing new in between: a third call at the same instant adds nothing. */
    assert_int_equal(evaluate_due(&f->ev, f->rs, iso("2027-03-12T12:00:00Z"), 0, &st), 0);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries"), 4);
}

static void
fires_older_than_catch_up_are_skipped_younger_ones_sent(void **state)
{
    struct fixture *f = *state;
    struct eval_stats st = {0, 0, 0};
    load_rules(f, "daily.yaml", daily_rule, (const char *)NULL);
    add_two_utc_customers(f);
    assert_int_equal(evaluate_due(&f->ev, f->rs, iso("2027-03-10T12:00:00Z"), 86400, &st), 0);
    /* Down for five days; catch_up 36 h reaches back to 03-14T00:00Z. */
    assert_int_equal(evaluate_due(&f->ev, f->rs, iso("2027-03-15T12:00:00Z"), 36 * 3600, &st), 0);
    assert_int_equal(st.skipped_late, 3); /* 03-11, 03-12, 03-13 */
    assert_int_equal(st.fires, 2);        /* 03-14, 03-15 */
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries"), 4);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries WHERE occurrence IN"
                                    " ('2027-03-11', '2027-03-12', '2027-03-13')"),
                     0);
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM deliveries WHERE occurrence IN"
                                    " ('2027-03-14', '2027-03-15')"),
                     4);
    assert_int_equal(sql_int(f->st, "SELECT evaluated_to FROM rule_runs WHERE rule = 'daily'"),
                     iso("2027-03-15T12:00:00Z"));
}

static void
max_attempts_ends_retries_with_the_count_in_the_reason(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 100);
    struct send_result tmp = result(SEND_TRANSIENT, "451 try later");
    struct delivery d = claim_one(f, 100);
    assert_int_equal(outbox_record(f->st, &d, &tmp, 100, 3 * 86400, 2), 0);
    delivery_clear(&d);
    assert_string_equal(state_of(f, a), "retry");
    d = claim_one(f, 100000);
    assert_int_equal(d.attempts, 2);
    assert_int_equal(outbox_record(f->st, &d, &tmp, 100000, 3 * 86400, 2), 0);
    delivery_clear(&d);
    assert_string_equal(state_of(f, a), "dead");
    char *why = NULL;
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(f->st->db, "SELECT last_error FROM deliveries WHERE id = ?",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(s, 1, a);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    why = xstrdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    assert_non_null(strstr(why, "gave up after 2 attempts"));
    assert_non_null(strstr(why, "451 try later"));
    free(why);
}

/* ---- owned claims ------------------------------------------------------ */

static void
results_check_the_claims_owner_and_token(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 50);
    struct delivery *d, stale;
    struct claim me = {"instance-1", 7};
    struct send_result perm = result(SEND_PERMANENT, "550 no");
    size_t n;
    assert_int_equal(outbox_claim(f->st, "email", 150, 300, 10, &me, &d, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].claim_owner, "instance-1");
    assert_int_equal(d[0].claim_token, 7);
    /* Another batch's token, then another owner: each update is ignored. */
    stale = d[0];
    stale.claim_token = 8;
    assert_int_equal(outbox_record(f->st, &stale, &perm, 160, 86400, 0), 0);
    assert_int_equal(outbox_finish(f->st, &stale, "skipped", "stale", 160), 0);
    assert_int_equal(outbox_defer(f->st, &stale, 9999, "stale"), 0);
    assert_int_equal(outbox_release(f->st, &stale), 0);
    stale.claim_token = 7;
    stale.claim_owner = "instance-2";
    assert_int_equal(outbox_record(f->st, &stale, &perm, 160, 86400, 0), 0);
    assert_int_equal(outbox_record_sent(f->st, &(struct claim){"instance-2", 7}, &a, 1, 160), 0);
    assert_string_equal(state_of(f, a), "sending");
    assert_int_equal(delivery_col(f, a, "attempts"), 1);
    /* The claim's own result lands. */
    assert_int_equal(outbox_record_sent(f->st, &me, &a, 1, 170), 0);
    assert_string_equal(state_of(f, a), "sent");
    assert_int_equal(delivery_col(f, a, "sent_at"), 170);
    free_claimed(d, n);
}

static void
the_running_owners_claims_never_expire(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 50);
    struct claim first = {"instance-1", 1}, again = {"instance-1", 2}, other = {"instance-2", 3};
    struct send_result ok = result(SEND_OK, "");
    struct delivery *d, *e;
    size_t n;
    assert_int_equal(outbox_claim(f->st, "email", 150, 300, 10, &first, &d, &n), 0);
    assert_int_equal(n, 1);
    /* Long past the lease, the same instance's next batch leaves it alone:
     * the batch holding it is still running. */
    assert_int_equal(outbox_claim(f->st, "email", 100000, 300, 10, &again, &e, &n), 0);
    assert_int_equal(n, 0);
    free(e);
    /* Another owner (a database without the lock) may take it after the
     * lease; the first batch's late result is then ignored. */
    assert_int_equal(outbox_claim(f->st, "email", 100000, 300, 10, &other, &e, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].attempts, 2);
    assert_int_equal(outbox_record(f->st, &d[0], &ok, 100001, 86400 * 30, 0), 0);
    assert_string_equal(state_of(f, a), "sending");
    assert_int_equal(outbox_record(f->st, &e[0], &ok, 100002, 86400 * 30, 0), 0);
    assert_string_equal(state_of(f, a), "sent");
    free_claimed(d, 1);
    free_claimed(e, 1);
}

static void
take_back_returns_rows_in_flight_at_once_without_counting_the_attempt(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 50);
    int64_t b = add_delivery(f, "b", "sms", 120, 50);
    int64_t c = add_delivery(f, "c", "email", 5000, 50); /* not due: stays pending */
    struct claim dead = {"dead-instance", 9}, me = {"new-instance", 1};
    struct send_result tmp = result(SEND_TRANSIENT, "451 later");
    struct delivery *d;
    size_t n;
    int64_t count = -1;
    /* b failed once and is claimed again: its second attempt is in flight. */
    assert_int_equal(outbox_claim(f->st, "sms", 150, 300, 10, &dead, &d, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(outbox_record(f->st, &d[0], &tmp, 150, 86400, 0), 0);
    free_claimed(d, n);
    assert_int_equal(store_exec(f->st, "UPDATE deliveries SET next_attempt_at = 150 WHERE state = 'retry'"), 0);
    assert_int_equal(outbox_claim(f->st, "sms", 150, 300, 10, &dead, &d, &n), 0);
    assert_int_equal(n, 1);
    free_claimed(d, n);
    assert_int_equal(outbox_claim(f->st, "email", 150, 300, 10, &dead, &d, &n), 0);
    assert_int_equal(n, 1);
    free_claimed(d, n);
    /* The dead instance's leases run to 450; the new one starts at 160. */
    assert_int_equal(outbox_take_back(f->st, 160, &count), 0);
    assert_int_equal(count, 2);
    assert_string_equal(state_of(f, a), "pending");
    assert_int_equal(delivery_col(f, a, "attempts"), 0);
    assert_string_equal(state_of(f, b), "retry");
    assert_int_equal(delivery_col(f, b, "attempts"), 1);
    assert_int_equal(delivery_col(f, a, "claim_token"), INT64_MIN); /* NULL */
    assert_string_equal(state_of(f, c), "pending");
    /* Due at once, well inside the dead instance's lease. */
    assert_int_equal(outbox_claim(f->st, "email", 160, 300, 10, &me, &d, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(d[0].id, a);
    assert_int_equal(d[0].attempts, 1);
    free_claimed(d, n);
    assert_int_equal(outbox_take_back(f->st, 170, &count), 0);
    assert_int_equal(count, 1); /* a again (as if this instance died too) */
}

/* A session's sent journal: what the peer accepted before a crash is
 * recorded sent at the next start (with its timeline entry), the rest of
 * the rows in flight are taken back, a line cut short is ignored, a line
 * for a claim that is no longer current changes nothing, and the journal
 * files are gone afterwards. */
static void
take_back_replays_the_sent_journals(void **state)
{
    struct fixture *f = *state;
    int64_t a = add_delivery(f, "a", "email", 100, 50);
    int64_t b = add_delivery(f, "b", "email", 100, 50);
    int64_t c = add_delivery(f, "c", "email", 100, 50);
    struct claim dead = {"dead-instance", 9};
    struct outbox_journal *j0, *j1;
    struct delivery *d, stale;
    struct stat sb;
    size_t n;
    int64_t count = -1;
    char *p0 = xasprintf("%s.sent.0", f->st->path), *p1 = xasprintf("%s.sent.1", f->st->path);
    FILE *fp;
    assert_int_equal(outbox_claim(f->st, "email", 150, 300, 10, &dead, &d, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(outbox_journal_open(f->st, 0, &j0), 0);
    assert_int_equal(outbox_journal_open(f->st, 1, &j1), 0);
    assert_int_equal(stat(p0, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* a was accepted on session 0, b on session 1; c was in flight. */
    assert_int_equal(outbox_journal_add(j0, &d[0], 155), 0);
    assert_int_equal(outbox_journal_add(j1, &d[1], 156), 0);
    /* A line naming another claim (an older token) is not applied. */
    stale = d[2];
    stale.claim_token = 8;
    assert_int_equal(outbox_journal_add(j1, &stale, 157), 0);
    /* The process dies: the files stay as they are. */
    outbox_journal_close(j0);
    outbox_journal_close(j1);
    assert_int_equal(stat(p0, &sb), 0);
    /* A torn last line (a crash in the middle of a write). */
    assert_non_null(fp = fopen(p1, "a"));
    fprintf(fp, "dead-instance 9 %lld", (long long)c);
    fclose(fp);
    assert_int_equal(outbox_take_back(f->st, 160, &count), 0);
    assert_int_equal(count, 1); /* c */
    assert_string_equal(state_of(f, a), "sent");
    assert_int_equal(delivery_col(f, a, "sent_at"), 155);
    assert_string_equal(state_of(f, b), "sent");
    assert_int_equal(delivery_col(f, b, "sent_at"), 156);
    assert_string_equal(state_of(f, c), "pending");
    assert_int_equal(sql_int(f->st, "SELECT count(*) FROM timeline WHERE kind = 'sent'"), 2);
    assert_string_equal(sql_text(f->st, "SELECT detail FROM timeline WHERE kind = 'sent'"
                                        " ORDER BY at LIMIT 1"),
                        "email r (a)");
    assert_int_equal(stat(p0, &sb), -1);
    assert_int_equal(stat(p1, &sb), -1);
    /* A clean session leaves no file behind. */
    assert_int_equal(outbox_journal_open(f->st, 0, &j0), 0);
    assert_int_equal(outbox_journal_add(j0, &d[2], 170), 0);
    assert_int_equal(outbox_journal_clear(j0), 0);
    outbox_journal_close(j0);
    assert_int_equal(stat(p0, &sb), -1);
    free_claimed(d, n);
    free(p0);
    free(p1);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(same_window_evaluated_twice_inserts_each_delivery_once),
        T(claim_takes_due_rows_of_its_channel_and_leases_them),
        T(claim_honours_max_and_due_order),
        T(expired_lease_makes_a_claimed_row_claimable_again),
        T(ok_result_marks_the_delivery_sent),
        T(transient_failure_retries_after_backoff),
        T(backoff_doubles_from_one_minute_with_jitter_up_to_six_hours),
        T(transient_failure_past_lifetime_goes_dead_with_reason),
        T(permanent_failure_goes_dead_at_once),
        T(release_hands_a_claim_back_untouched),
        T(manual_retry_revives_dead_deliveries),
        T(unsettled_counts_due_and_in_flight_rows),
        T(new_rule_does_not_reach_into_the_past),
        T(later_evaluation_fires_what_fell_due_in_between),
        T(fires_older_than_catch_up_are_skipped_younger_ones_sent),
        T(max_attempts_ends_retries_with_the_count_in_the_reason),
        T(results_check_the_claims_owner_and_token),
        T(the_running_owners_claims_never_expire),
        T(take_back_returns_rows_in_flight_at_once_without_counting_the_attempt),
        T(take_back_replays_the_sent_journals),
    };
#undef T
    log_set_level(4); /* warnings, not the store's migration notes */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
