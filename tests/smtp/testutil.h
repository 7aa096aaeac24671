/*
 * tests/smtp/testutil.h: process and file helpers shared by the email unit
 * tests (test_email.c, test_email_tls.c): temporary directories, free ports,
 * starting and stopping a test server, waiting for it without connecting to
 * it (a probe connection would count as an SMTP session).
 *
 * Header-only and static: each test program is a single translation unit.
 */
#ifndef NUDGE_TEST_SMTP_UTIL_H
#define NUDGE_TEST_SMTP_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* Each test program uses only some of these. */
#define TU_API static __attribute__((unused))

TU_API void
tu_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The source tree: $NUDGE_SRC from ctest, else derived from this file. */
TU_API const char *
tu_src_dir(void)
{
    static char dir[1024];
    const char *env = getenv("NUDGE_SRC");
    const char *tail = "/tests/smtp/testutil.h";
    size_t len;
    if (env && env[0])
        return env;
    len = strlen(__FILE__);
    if (len > strlen(tail) && strcmp(&__FILE__[len - strlen(tail)], tail) == 0)
        snprintf(dir, sizeof(dir), "%.*s", (int)(len - strlen(tail)), __FILE__);
    else
        snprintf(dir, sizeof(dir), ".");
    return dir;
}

TU_API char *
tu_mkdtemp(const char *tag)
{
    char *path = xasprintf("/tmp/nudge-%s-XXXXXX", tag);
    if (!mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

TU_API int
tu_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

TU_API void
tu_rmrf(const char *dir)
{
    if (dir)
        nftw(dir, tu_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A TCP port on 127.0.0.1 that was free a moment ago. */
TU_API int
tu_free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

/* True once something listens on 127.0.0.1:port, judged from /proc/net/tcp
 * so that no connection is made. */
TU_API bool
tu_wait_listening(int port, int timeout_ms)
{
    char want[32];
    snprintf(want, sizeof(want), "0100007F:%04X", port);
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        FILE *f = fopen("/proc/net/tcp", "r");
        char line[512];
        bool found = false;
        while (f && fgets(line, sizeof(line), f)) {
            char local[64], remote[64], st[8];
            int slot;
            if (sscanf(line, " %d: %63s %63s %7s", &slot, local, remote, st) == 4 &&
                strcmp(local, want) == 0 && strcmp(st, "0A") == 0)
                found = true;
        }
        if (f)
            fclose(f);
        if (found)
            return true;
        tu_sleep_ms(20);
    }
    return false;
}

TU_API bool
tu_wait_file(const char *path, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (access(path, F_OK) == 0)
            return true;
        tu_sleep_ms(20);
    }
    return false;
}

/* Starts argv[0] with stdout and stderr appended to log_path. */
TU_API pid_t
tu_spawn(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        /* A failed assertion longjmps past tu_stop: die with the test. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Waits for pid to exit by itself; true (and *status) if it did in time. */
TU_API bool
tu_wait_exit(pid_t pid, int timeout_ms, int *status)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return true;
        if (r < 0)
            return false;
        tu_sleep_ms(20);
    }
    return false;
}

TU_API void
tu_stop(pid_t pid)
{
    int status;
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    if (!tu_wait_exit(pid, 5000, &status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
}

/* Names in dir starting with prefix, sorted; NULL-terminated, free with tu_free_list. */
TU_API char **
tu_list(const char *dir, const char *prefix, size_t *count)
{
    struct dirent **ents = NULL;
    char **out;
    size_t n = 0;
    int total = scandir(dir, &ents, NULL, alphasort);
    out = xcalloc((size_t)(total > 0 ? total : 0) + 1, sizeof(*out));
    for (int i = 0; i < total; i++) {
        if (strncmp(ents[i]->d_name, prefix, strlen(prefix)) == 0)
            out[n++] = xasprintf("%s/%s", dir, ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
    if (count)
        *count = n;
    return out;
}

TU_API void
tu_free_list(char **list)
{
    for (size_t i = 0; list && list[i]; i++)
        free(list[i]);
    free(list);
}

TU_API char *
tu_slurp(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    if (read_file(path, &text, &len) < 0)
        return NULL;
    return text;
}

#endif
