/*
 * unit_daemon.h: a struct daemon wired up the way daemon/main.c does it,
 * for the unit tests of the daemon's modules (dispatch.c, admin.c): a
 * temporary directory holding nudge.yaml, the database, the rules and the
 * spool; a frozen clock; a libuv loop of the test's own. Include after
 * unit.h.
 */
#ifndef NUDGE_TEST_UNIT_DAEMON_H
#define NUDGE_TEST_UNIT_DAEMON_H

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>

#include "calendar.h"
#include "daemon.h"
#include "render.h"

struct tdaemon {
    char dir[64];
    struct daemon d;
};

/* Writes each rule file given as name, text pairs (NULL-terminated) into
 * the configuration's rules directory. */
static inline void
tdaemon_rules(struct tdaemon *t, ...)
{
    va_list ap;
    const char *name;
    mkdir(t->d.cfg->rules_dir, 0700);
    va_start(ap, t);
    while ((name = va_arg(ap, const char *))) {
        const char *text = va_arg(ap, const char *);
        free(put(t->d.cfg->rules_dir, name, text));
    }
    va_end(ap);
}

/* Makes /tmp/nudge-test-NAME-XXXXXX with nudge.yaml (yaml: its text), loads
 * it, starts a frozen clock at `now` and opens what main.c opens before the
 * rules: the loop, both database connections, the installation secret. */
static inline struct tdaemon *
tdaemon_new(const char *name, const char *yaml, ntime_t now)
{
    struct tdaemon *t = xcalloc(1, sizeof(*t));
    struct daemon *d = &t->d;
    struct nerr err;
    char *path;
    nerr_clear(&err);
    snprintf(t->dir, sizeof(t->dir), "/tmp/nudge-test-%s-XXXXXX", name);
    assert_non_null(mkdtemp(t->dir));
    path = put(t->dir, "nudge.yaml", yaml);
    if (config_load(path, &d->cfg, &err) < 0)
        fail_msg("nudge.yaml: %s", err.msg);
    free(path);
    d->lock_fd = -1;
    clock_init_frozen(&d->clock, now);
    d->started = (ntime_t)time(NULL);
    d->loop = xmalloc(sizeof(*d->loop));
    assert_int_equal(uv_loop_init(d->loop), 0);
    snprintf(d->instance, sizeof(d->instance), "%s", "0123456789abcdef0123456789abcdef");
    if (store_open(d->cfg->database, &d->st, &err) < 0 ||
        store_open(d->cfg->database, &d->eval_st, &err) < 0)
        fail_msg("store_open: %s", err.msg);
    assert_int_equal(render_secret(d->st, &d->secret), 0);
    return t;
}

/* Loads the rules (daemon_reload, as main.c does at start); fails the test
 * on rule errors. */
static inline void
tdaemon_load(struct tdaemon *t)
{
    json_t *rep = daemon_reload(&t->d);
    if (!json_is_true(json_object_get(rep, "ok")))
        fail_msg("rules do not load: %s", json_string_value(json_object_get(rep, "error")));
    json_decref(rep);
}

/* Closes everything in main.c's order, then removes the directory. */
static inline void
tdaemon_free(struct tdaemon *t)
{
    struct daemon *d;
    if (!t)
        return;
    d = &t->d;
    admin_close(d);
    while (uv_run(d->loop, UV_RUN_NOWAIT))
        ;
    dispatch_close(d);
    ruleset_unref(d->rs);
    strv_free(d->attrs);
    holiday_set_free(d->hs);
    store_close(d->eval_st);
    store_close(d->st);
    free(d->secret);
    while (d->waiters) {
        struct waiter *w = d->waiters;
        d->waiters = w->next;
        free(w);
    }
    assert_int_equal(uv_loop_close(d->loop), 0);
    free(d->loop);
    config_free(d->cfg);
    rmrf(t->dir);
    free(t);
    cal_thread_cleanup();
}

static inline void
tdaemon_settled_cb(struct daemon *d, void *ud)
{
    (void)d;
    *(bool *)ud = true;
}

/* Dispatches everything due at the clock's instant and runs the loop until
 * evaluation and dispatch are idle again (daemon_when_settled). */
static inline void
tdaemon_settle(struct tdaemon *t)
{
    bool settled = false;
    daemon_when_settled(&t->d, tdaemon_settled_cb, &settled);
    /* Nothing else keeps this loop alive: it returns once the last batch's
     * after-callback ran. The bound only guards against a hang. */
    for (int i = 0; i < 10000 && !settled; i++)
        uv_run(t->d.loop, UV_RUN_ONCE);
    assert_true(settled);
    assert_int_equal(t->d.jobs, 0);
}

struct tdaemon_pool_stop {
    uv_work_t w;
    pthread_barrier_t *all;
};

static inline void
tdaemon_pool_stop_work(uv_work_t *w)
{
    OPENSSL_thread_stop();
    /* Held until every item runs: each one is on a thread of its own. */
    pthread_barrier_wait(((struct tdaemon_pool_stop *)w)->all);
}

static inline void
tdaemon_pool_stop_after(uv_work_t *w, int status)
{
    (void)w;
    (void)status;
}

/* Frees OpenSSL's per-thread state (error queue, random generators) on
 * every thread of libuv's pool. The pool's threads are joined only by
 * libuv's destructor at exit, after OpenSSL's own atexit cleanup has
 * dropped the key that would have freed that state, so valgrind would
 * report it as lost. Call once at the end of main. */
static inline void
tdaemon_release_pool_threads(void)
{
    const char *env = getenv("UV_THREADPOOL_SIZE");
    long n = env ? strtol(env, NULL, 10) : 4; /* libuv's default and bounds */
    uv_loop_t loop;
    pthread_barrier_t all;
    struct tdaemon_pool_stop *items;
    if (n < 1)
        n = 1;
    if (n > 1024)
        n = 1024;
    items = xcalloc((size_t)n, sizeof(*items));
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(pthread_barrier_init(&all, NULL, (unsigned)n), 0);
    for (long i = 0; i < n; i++) {
        items[i].all = &all;
        assert_int_equal(
            uv_queue_work(&loop, &items[i].w, tdaemon_pool_stop_work, tdaemon_pool_stop_after), 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    pthread_barrier_destroy(&all);
    free(items);
}

#endif
