/*
 * check.c: offline validation of the rules, shared by `nudged --check` and
 * `nudgectl check` (check.h).
 */
#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "calendar.h"
#include "store.h"
#include "util.h"

int
check_rules(const char *rules_dir, const char *calendars_dir, const char *database,
            struct ruleset **out, char **messages)
{
    struct holiday_set *hs = NULL;
    struct rules_env env = {NULL, NULL};
    struct store *st = NULL;
    struct nerr err;
    struct sbuf msg;
    char **attrs = NULL, *errors = NULL, buf[4096];
    int rc = -EINVAL;

    *out = NULL;
    sbuf_init(&msg);
    nerr_clear(&err);
    /* Custom attribute names, if there is a database already. */
    if (database && access(database, R_OK) == 0 && store_open_readonly(database, &st, &err) == 0)
        store_attribute_keys(st, &attrs);
    store_close(st);
    nerr_clear(&err);
    if (holiday_set_load_dir(calendars_dir, &hs, &err) < 0) {
        nerr_format(&err, buf, sizeof(buf));
        sbuf_adds(&msg, buf);
        goto out;
    }
    env.holidays = hs;
    env.known_attrs = (const char *const *)attrs;
    if (ruleset_load(rules_dir, &env, out, &errors) < 0) {
        sbuf_adds(&msg, errors);
        goto out;
    }
    if ((*out)->warnings)
        sbuf_adds(&msg, (*out)->warnings);
    rc = 0;
out:
    free(errors);
    strv_free(attrs);
    holiday_set_free(hs);
    if (messages) {
        *messages = msg.len ? sbuf_steal(&msg) : NULL;
    } else if (msg.len) {
        fputs(msg.s, stderr);
    }
    sbuf_free(&msg);
    return rc;
}
