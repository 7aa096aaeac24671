/*
 * log.h: the daemon's few logging functions.
 *
 * Lines go to standard error with a sd-daemon priority prefix ("<3>") so that
 * journald files them at the right level; each carries a module prefix.
 * Personal data (addresses, names) is logged at debug level only.
 */
#ifndef NUDGE_LOG_H
#define NUDGE_LOG_H

#include <stdarg.h>

enum log_level { LOG_LVL_ERR = 3, LOG_LVL_WARN = 4, LOG_LVL_NOTICE = 5, LOG_LVL_INFO = 6,
                 LOG_LVL_DEBUG = 7 };

/* Messages above this level are dropped; set from -v / config. */
void log_set_level(int level);
int log_get_level(void);

void log_msg(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(int level, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define log_err(mod, ...) log_msg(LOG_LVL_ERR, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_LVL_WARN, mod, __VA_ARGS__)
#define log_notice(mod, ...) log_msg(LOG_LVL_NOTICE, mod, __VA_ARGS__)
#define log_info(mod, ...) log_msg(LOG_LVL_INFO, mod, __VA_ARGS__)
#define log_debug(mod, ...) log_msg(LOG_LVL_DEBUG, mod, __VA_ARGS__)

#endif
