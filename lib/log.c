/*
 * log.c: writes log lines to standard error with sd-daemon priority prefixes.
 * A mutex keeps lines from worker threads whole.
 */
#include "log.h"

#include <pthread.h>
#include <stdio.h>

static int log_level = LOG_LVL_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void
log_set_level(int level)
{
    log_level = level;
}

int
log_get_level(void)
{
    return log_level;
}

void
log_vmsg(int level, const char *module, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "<%d>%s: ", level, module);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

void
log_msg(int level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, module, fmt, ap);
    va_end(ap);
}
