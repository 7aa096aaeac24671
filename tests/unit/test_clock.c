/*
 * test_clock.c: the injectable clock (lib/clock.c): a frozen clock reads
 * what it was set to and moves only by clock_set, also while other threads
 * read it; a running clock started at T reads T (plus the seconds the test
 * takes) and keeps running.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <time.h>

#include "clock.h"

static void
frozen_clock_reads_its_instant_until_set(void **state)
{
    struct nclock c;
    (void)state;
    clock_init_frozen(&c, 1800000000);
    assert_true(clock_is_frozen(&c));
    assert_int_equal(clock_now(&c), 1800000000);
    assert_int_equal(clock_now_ms(&c), 1800000000LL * 1000);
    clock_set(&c, 1800003600);
    assert_int_equal(clock_now(&c), 1800003600);
}

static void
running_clock_starts_where_it_is_told_and_runs(void **state)
{
    struct nclock c;
    ntime_t t;
    (void)state;
    clock_init_running(&c, 1800000000);
    assert_false(clock_is_frozen(&c));
    t = clock_now(&c);
    assert_true(t >= 1800000000 && t <= 1800000002);
    assert_true(clock_now_ms(&c) / 1000 >= 1800000000);
    clock_init_running(&c, 0); /* real time */
    t = clock_now(&c);
    assert_true(t >= (ntime_t)time(NULL) - 1 && t <= (ntime_t)time(NULL));
}

static void *
reader(void *arg)
{
    const struct nclock *c = arg;
    ntime_t last = 0;
    for (int i = 0; i < 200000; i++) {
        ntime_t t = clock_now(c);
        if (t < last)
            return (void *)1; /* went backwards */
        last = t;
    }
    return NULL;
}

static void
readers_on_other_threads_see_a_clock_that_only_moves_forward(void **state)
{
    struct nclock c;
    pthread_t th[2];
    void *rv;
    (void)state;
    clock_init_frozen(&c, 1000);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, reader, &c), 0);
    for (ntime_t t = 1001; t < 201000; t++)
        clock_set(&c, t);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], &rv), 0);
        assert_null(rv);
    }
    assert_int_equal(clock_now(&c), 200999);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frozen_clock_reads_its_instant_until_set),
        cmocka_unit_test(running_clock_starts_where_it_is_told_and_runs),
        cmocka_unit_test(readers_on_other_threads_see_a_clock_that_only_moves_forward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
