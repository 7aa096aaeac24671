/*
 * main.c: nudged's arguments, start-up and signals: the wiring. SIGHUP
 * reloads (engine.c), SIGTERM stops cleanly (stop taking new work, let
 * running batches finish or hand their rows back, exit 0).
 *
 * Start-up owns the database before anything else touches it: files are
 * created private (umask 077), the database's lock is taken (a second
 * nudged on the same file exits naming the pid that holds it), a
 * group/world-readable database is warned about, and every row a previous
 * instance left in 'sending' is taken back at once (outbox_take_back) under
 * a fresh instance id that owns this run's claims.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "calendar.h"
#include "check.h"
#include "daemon.h"
#include "http.h"
#include "import.h"
#include "log.h"
#include "outbox.h"
#include "render.h"
#include "ynode.h"

static const char usage[] =
    "Usage: nudged -c nudge.yaml [options]\n"
    "\n"
    "Evaluates marketing and customer-care rules against the customer store and\n"
    "delivers email, SMS, webhooks and callback tasks.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE   configuration file (default /etc/nudge/nudge.yaml)\n"
    "      --check         validate the configuration, channels and rules, then exit\n"
    "      --now TIME      start the clock at TIME (RFC 3339, e.g. 2027-02-03T10:00:00+08:00)\n"
    "      --frozen        keep the clock still; only `nudgectl advance` moves it\n"
    "  -v, --verbose       log debug messages\n"
    "  -h, --help          show this help\n"
    "  -V, --version       show the version\n";

/* ---- signals ------------------------------------------------------------- */

static void
on_hup(uv_signal_t *s, int sig)
{
    (void)sig;
    daemon_reload_async(s->data, NULL, NULL);
}

static void
on_term(uv_signal_t *s, int sig)
{
    struct daemon *d = s->data;
    if (atomic_load(&d->stopping))
        return;
    log_notice("nudged", "signal %d: stopping; %d batch(es) still running", sig, d->jobs);
    sd_notify(0, "STOPPING=1");
    atomic_store(&d->stopping, true);
    uv_timer_stop(&d->tick_timer);
    uv_timer_stop(&d->dispatch_timer);
    admin_close(d);
    if (d->jobs == 0 && !d->eval_busy && !d->reload_busy)
        uv_stop(d->loop);
}

/* ---- start-up ------------------------------------------------------------ */

/* /metrics asks the dispatcher (http.h: the listener sees no struct daemon). */
static void
http_metrics(void *ud, struct sbuf *out)
{
    dispatch_metrics(ud, out);
}

/* This run's id (32 hex digits): the owner of every claim it makes. */
static int
instance_id(char *out, size_t size)
{
    unsigned char b[16];
    if (size < 2 * sizeof(b) + 1 || RAND_bytes(b, sizeof(b)) != 1)
        return -EIO;
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

/* With the lock held, no other process is sending: whatever is in
 * 'sending' was left by a previous instance that died, and goes back to
 * the queue now, not when its lease would have run out. */
static int
take_back(struct daemon *d, struct nerr *err)
{
    int64_t n = 0;
    if (outbox_take_back(d->st, daemon_now(d), &n) < 0) {
        nerr_set(err, d->cfg->database, 0, 0, "cannot take back the deliveries left in flight");
        return -EIO;
    }
    if (n)
        log_notice("nudged", "took back %lld deliver%s a previous instance left in flight; "
                             "they are due now",
                   (long long)n, n == 1 ? "y" : "ies");
    log_info("nudged", "instance %s owns %s", d->instance, d->cfg->database);
    return 0;
}

static int
check_only(const char *path)
{
    struct config *cfg = NULL;
    struct nerr err;
    struct ruleset *rs = NULL;
    char buf[4096];
    int rc = 1;
    nerr_clear(&err);
    if (config_load(path, &cfg, &err) < 0) {
        nerr_format(&err, buf, sizeof(buf));
        fputs(buf, stderr);
        return 1;
    }
    /* The rules as `nudgectl check` sees them (check.c): the same verdict
     * and messages; the database is only read, if it exists. */
    if (check_rules(cfg->rules_dir, cfg->calendars_dir, cfg->database, &rs, NULL) < 0)
        goto out;
    /* Then each channel's settings, checked by its backend: start-up's order. */
    if (dispatch_check(cfg, &err) < 0) {
        nerr_format(&err, buf, sizeof(buf));
        fputs(buf, stderr);
        goto out;
    }
    printf("configuration OK (%zu rule%s in %s)\n", rs->n, rs->n == 1 ? "" : "s", cfg->rules_dir);
    rc = 0;
out:
    ruleset_unref(rs);
    config_free(cfg);
    return rc;
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'C'},
        {"now", required_argument, NULL, 'n'},    {"frozen", no_argument, NULL, 'f'},
        {"verbose", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0}};
    const char *cfgpath = NUDGE_SYSCONFDIR "/nudge.yaml";
    bool check = false, frozen = false, verbose = false;
    ntime_t start = 0;
    bool have_now = false;
    struct daemon d;
    struct nerr err;
    struct http_env http_env;
    char buf[4096];
    int c;
    uint64_t wd_usec = 0;
    json_t *rep;

    while ((c = getopt_long(argc, argv, "c:vhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cfgpath = optarg;
            break;
        case 'C':
            check = true;
            break;
        case 'n':
            if (time_parse_iso(optarg, &start) < 0) {
                fprintf(stderr, "nudged: --now '%s' is not a time; write it as RFC 3339, e.g. "
                                "2027-02-03T10:00:00+08:00\n",
                        optarg);
                return 2;
            }
            have_now = true;
            break;
        case 'f':
            frozen = true;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("nudged %s\n", NUDGE_VERSION);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nudged: unexpected argument '%s'\n%s", argv[optind], usage);
        return 2;
    }
    if (check)
        return check_only(cfgpath);
    if (frozen && !have_now) {
        fprintf(stderr, "nudged: --frozen needs --now TIME to say where the clock stands\n");
        return 2;
    }

    memset(&d, 0, sizeof(d));
    nerr_clear(&err);
    d.exit_code = 1;
    d.lock_fd = -1;
    /* Everything nudged creates (database, -wal, -shm, lock, spool files)
     * is for its own user only; the systemd unit says UMask=0077 too. */
    umask(077);
    /* glibc gives every worker thread its own malloc arena and keeps freed
     * memory in each; with a dozen dispatch threads and no trimming that
     * looked like growth (5 MB in use, 327 MB held after 1,000,000
     * deliveries). Eight arenas, trimmed when the outbox is idle, stay flat
     * (contrib/bench/memory.sh: +66 kB RssAnon per 100k deliveries) while the
     * dispatch threads rarely wait for each other's arena locks (2 arenas
     * cost email sending ~15 %). An explicit MALLOC_ARENA_MAX wins. */
    if (!getenv("MALLOC_ARENA_MAX"))
        mallopt(M_ARENA_MAX, 8);
    signal(SIGPIPE, SIG_IGN);
    if (config_load(cfgpath, &d.cfg, &err) < 0)
        goto fail;
    log_set_level(verbose ? LOG_LVL_DEBUG : d.cfg->log_level);
    if (frozen)
        clock_init_frozen(&d.clock, start);
    else
        clock_init_running(&d.clock, have_now ? start : 0);
    d.started = (ntime_t)time(NULL);
    d.loop = uv_default_loop();
    /* Imports stamp updated_at and consent times with the daemon's clock. */
    import_set_clock(engine_import_clock, &d);
    if (store_lock(d.cfg->database, &d.lock_fd, &err) < 0)
        goto fail;
    if (instance_id(d.instance, sizeof(d.instance)) < 0) {
        nerr_set(&err, NULL, 0, 0, "cannot make an instance id: no random numbers");
        goto fail;
    }
    store_warn_if_readable(d.cfg->database);
    if (store_open(d.cfg->database, &d.st, &err) < 0 ||
        store_open(d.cfg->database, &d.eval_st, &err) < 0 ||
        holiday_set_load_dir(d.cfg->calendars_dir, &d.hs, &err) < 0)
        goto fail;
    if (take_back(&d, &err) < 0)
        goto fail;
    if (render_secret(d.st, &d.secret) < 0) {
        nerr_set(&err, d.cfg->database, 0, 0, "cannot create the installation secret");
        goto fail;
    }
    rep = daemon_reload(&d);
    if (!json_is_true(json_object_get(rep, "ok"))) {
        json_decref(rep);
        nerr_set(&err, d.cfg->rules_dir, 0, 0, "the rules have errors (above)");
        nerr_hint(&err, "fix them (nudgectl check %s) and start again", d.cfg->rules_dir);
        goto fail;
    }
    json_decref(rep);
    if (dispatch_open(&d, &err) < 0 || admin_listen(&d, &err) < 0)
        goto fail;
    /* Every dispatch slot, the evaluator and two admin jobs get a thread of
     * libuv's pool (4 by default), so a stalled SMTP server cannot hold up
     * webhooks or the scheduler. Set before the pool's first use. */
    if (!getenv("UV_THREADPOOL_SIZE")) {
        int threads = 3;
        char n[16];
        for (int i = 0; i < d.nchans; i++)
            threads += d.chans[i].nslots;
        snprintf(n, sizeof(n), "%d", threads > 128 ? 128 : threads);
        setenv("UV_THREADPOOL_SIZE", n, 1);
    }
    http_env = (struct http_env){d.cfg, d.secret, &d.clock, http_metrics, &d};
    if (d.cfg->http_listen && http_start(&http_env, &d.http, &err) < 0)
        goto fail;
    d.exit_code = 0;

    uv_signal_init(d.loop, &d.sig_hup);
    uv_signal_init(d.loop, &d.sig_term);
    uv_signal_init(d.loop, &d.sig_int);
    d.sig_hup.data = d.sig_term.data = d.sig_int.data = &d;
    uv_signal_start(&d.sig_hup, on_hup, SIGHUP);
    uv_signal_start(&d.sig_term, on_term, SIGTERM);
    uv_signal_start(&d.sig_int, on_term, SIGINT);
    if (sd_watchdog_enabled(0, &wd_usec) <= 0)
        wd_usec = 0;
    engine_start(&d, wd_usec);

    {
        char t[32];
        time_format_iso(daemon_now(&d), t, sizeof(t));
        log_notice("nudged", "started: %zu rule(s), clock %s%s, admin socket %s", d.rs->n, t,
                   clock_is_frozen(&d.clock) ? " (frozen)" : "", d.cfg->admin_socket);
    }
    sd_notifyf(0, "READY=1\nSTATUS=%zu rules loaded", d.rs->n);
    /* Catch up with whatever fell due while we were down. */
    daemon_cycle(&d);
    uv_run(d.loop, UV_RUN_DEFAULT);

    /* Stopping: running batches have finished or released their rows. */
    uv_close((uv_handle_t *)&d.tick_timer, NULL);
    uv_close((uv_handle_t *)&d.dispatch_timer, NULL);
    uv_close((uv_handle_t *)&d.watchdog_timer, NULL);
    uv_close((uv_handle_t *)&d.sig_hup, NULL);
    uv_close((uv_handle_t *)&d.sig_term, NULL);
    uv_close((uv_handle_t *)&d.sig_int, NULL);
    log_notice("nudged", "stopped");
    if (0) {
    fail:
        nerr_format(&err, buf, sizeof(buf));
        fputs(buf, stderr);
    }
    admin_close(&d);
    http_stop(d.http);
    if (d.loop)
        while (uv_run(d.loop, UV_RUN_NOWAIT))
            ;
    dispatch_close(&d);
    ruleset_unref(d.rs);
    strv_free(d.attrs);
    holiday_set_free(d.hs);
    store_close(d.eval_st);
    store_close(d.st);
    free(d.secret);
    while (d.waiters) {
        struct waiter *w = d.waiters;
        d.waiters = w->next;
        free(w);
    }
    if (d.loop)
        uv_loop_close(d.loop);
    config_free(d.cfg);
    store_unlock(d.lock_fd);
    return d.exit_code;
}
