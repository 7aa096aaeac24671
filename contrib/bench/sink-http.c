/*
 * sink-http.c: a minimal, fast HTTP receiver for the nudge benchmarks.
 *
 * Listens on 127.0.0.1 only, answers every POST with 200 and the JSON body
 * {"status":"ok"} (so an SMS provider's `success: {json_field: status,
 * json_value: ok}` check passes too), and counts the POSTs and their body
 * bytes. GET /count answers "POSTS BYTES\n" and is not counted itself.
 * Keep-alive (HTTP/1.1) is on, as a real webhook receiver would have it.
 *
 *   cc -O2 -o sink-http sink-http.c $(pkg-config --cflags --libs libmicrohttpd)
 *   ./sink-http [PORT [THREADS [MAX_SECONDS]]]
 *
 * PORT 0 (the default) picks a free port; the port is printed as the first
 * line of standard output. THREADS (default 2) is libmicrohttpd's thread
 * pool (epoll, one listener per thread). The process exits by itself after
 * MAX_SECONDS (default 1800) so a forgotten sink cannot outlive a bench, or
 * on SIGTERM/SIGINT; either way it prints "posts=N bytes=M" last.
 *
 * Benchmark helper only: not built by CMake, not installed, not a test.
 */
#include <microhttpd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

static atomic_ullong posts, bytes;
static struct MHD_Response *ok_response;
static volatile sig_atomic_t stop;

static const char ok_body[] = "{\"status\":\"ok\"}";

static enum MHD_Result
handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
        const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    (void)cls, (void)version, (void)upload_data;
    if (!strcmp(method, "GET") && !strcmp(url, "/count")) {
        char buf[64];
        struct MHD_Response *r;
        enum MHD_Result ret;
        int n = snprintf(buf, sizeof(buf), "%llu %llu\n", (unsigned long long)atomic_load(&posts),
                         (unsigned long long)atomic_load(&bytes));
        r = MHD_create_response_from_buffer((size_t)n, buf, MHD_RESPMEM_MUST_COPY);
        ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(method, "POST") != 0)
        return MHD_queue_response(conn, MHD_HTTP_OK, ok_response);
    if (*con_cls == NULL) { /* headers only; the body follows */
        *con_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_data_size) { /* a piece of the body: count and drop it */
        atomic_fetch_add_explicit(&bytes, *upload_data_size, memory_order_relaxed);
        *upload_data_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add_explicit(&posts, 1, memory_order_relaxed);
    return MHD_queue_response(conn, MHD_HTTP_OK, ok_response);
}

static void
on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int
main(int argc, char **argv)
{
    unsigned port = argc > 1 ? (unsigned)atoi(argv[1]) : 0;
    unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : 2;
    long max_seconds = argc > 3 ? atol(argv[3]) : 1800;
    struct sockaddr_in sa;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_response = MHD_create_response_from_buffer(sizeof(ok_body) - 1, (void *)ok_body,
                                                  MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(ok_response, "Content-Type", "application/json");
    d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO, 0, NULL, NULL, handler,
                         NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_THREAD_POOL_SIZE, threads ? threads : 1,
                         MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
                         MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "sink-http: cannot listen on 127.0.0.1:%u\n", port);
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("%u\n", info ? (unsigned)info->port : port);
    fflush(stdout);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    for (long t = 0; !stop && t < max_seconds * 10; t++)
        usleep(100000);
    MHD_stop_daemon(d);
    printf("posts=%llu bytes=%llu\n", (unsigned long long)atomic_load(&posts),
           (unsigned long long)atomic_load(&bytes));
    MHD_destroy_response(ok_response);
    return 0;
}
