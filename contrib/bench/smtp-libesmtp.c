/*
 * smtp-libesmtp.c: libESMTP alone, for contrib/bench/email.sh: how fast the
 * SMTP library the smtp transport is built on delivers when it has nothing
 * else to do. THREADS threads each send sessions of BATCH copies of one
 * ready-made message (a file, sent as it is) to HOST:PORT, one connection
 * per session, MAIL FROM / RCPT TO / DATA per message, exactly as the smtp
 * transport drives libESMTP, but with no database, rendering or MIME work.
 *
 *   smtp-libesmtp HOST:PORT THREADS BATCH COUNT MESSAGE-FILE
 *
 * Prints "COUNT sent in SECONDS s" (wall time from the first connection to
 * the last reply); exits 1 if any session or message failed.
 */
#include <stddef.h>

#include <errno.h>
#include <libesmtp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *hostport;
static char *message;
static int message_len;
static long threads, batch, count;
static atomic_long failures;

struct feed {
    int given; /* 1 once the callback handed over the message */
};

/* libESMTP reads the message through this: all of it, then end of data;
 * a NULL len asks to rewind. */
static const char *
feed_cb(void **ctx, int *len, void *arg)
{
    struct feed *f = arg;
    (void)ctx;
    if (!len) {
        f->given = 0;
        return NULL;
    }
    if (f->given) {
        *len = 0;
        return NULL;
    }
    f->given = 1;
    *len = message_len;
    return message;
}

static void *
run(void *arg)
{
    long share = (long)(intptr_t)arg;
    struct feed *feeds = calloc((size_t)batch, sizeof(*feeds));
    smtp_message_t *msgs = calloc((size_t)batch, sizeof(*msgs));
    if (!feeds || !msgs) {
        atomic_fetch_add(&failures, share);
        return NULL;
    }
    for (long done = 0; done < share;) {
        long n = share - done < batch ? share - done : batch;
        smtp_session_t s = smtp_create_session();
        smtp_set_server(s, hostport);
        smtp_set_hostname(s, "bench.example.com");
        for (long i = 0; i < n; i++) {
            msgs[i] = smtp_add_message(s);
            smtp_set_reverse_path(msgs[i], "shop@example.com");
            smtp_add_recipient(msgs[i], "bench@example.com");
            smtp_set_messagecb(msgs[i], feed_cb, &feeds[i]);
        }
        if (!smtp_start_session(s)) {
            atomic_fetch_add(&failures, n);
        } else {
            for (long i = 0; i < n; i++) {
                const smtp_status_t *st = smtp_message_transfer_status(msgs[i]);
                if (!st || st->code / 100 != 2)
                    atomic_fetch_add(&failures, 1);
            }
        }
        smtp_destroy_session(s);
        done += n;
    }
    free(feeds);
    free(msgs);
    return NULL;
}

static long
num(const char *s, const char *what)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < 1) {
        fprintf(stderr, "smtp-libesmtp: %s must be a positive number, not '%s'\n", what, s);
        exit(2);
    }
    return v;
}

int
main(int argc, char **argv)
{
    pthread_t *th;
    struct timespec t0, t1;
    FILE *f;
    long size;
    if (argc != 6) {
        fprintf(stderr, "usage: smtp-libesmtp HOST:PORT THREADS BATCH COUNT MESSAGE-FILE\n");
        return 2;
    }
    hostport = argv[1];
    threads = num(argv[2], "THREADS");
    batch = num(argv[3], "BATCH");
    count = num(argv[4], "COUNT");
    if (!(f = fopen(argv[5], "rb")) || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) <= 0 ||
        size > 1 << 24 || fseek(f, 0, SEEK_SET) != 0 || !(message = malloc((size_t)size)) ||
        fread(message, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "smtp-libesmtp: cannot read %s\n", argv[5]);
        return 2;
    }
    fclose(f);
    message_len = (int)size;
    signal(SIGPIPE, SIG_IGN);
    th = calloc((size_t)threads, sizeof(*th));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < threads; i++) {
        long share = count / threads + (i < count % threads ? 1 : 0);
        if (pthread_create(&th[i], NULL, run, (void *)(intptr_t)share) != 0) {
            fprintf(stderr, "smtp-libesmtp: cannot start a thread\n");
            return 1;
        }
    }
    for (long i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%ld sent in %.3f s\n", count - atomic_load(&failures),
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    free(th);
    free(message);
    return atomic_load(&failures) ? 1 : 0;
}
