/*
 * config.c: reads nudge.yaml into struct config, with a located error for
 * every unknown key, wrong type or impossible value.
 */
#include "channel_registry.h"
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calendar.h"
#include "log.h"
#include "ynode.h"

static char *
resolve(const char *base, const char *p)
{
    if (p[0] == '/' || !base || !*base)
        return xstrdup(p);
    return xasprintf("%s/%s", base, p);
}

struct config *
config_defaults(const char *base)
{
    struct config *c = xcalloc(1, sizeof(*c));
    c->database = resolve(base, "nudge.db");
    c->rules_dir = resolve(base, "rules");
    /* Installed calendars; a build that is run from its source tree uses
     * the tree's own. */
    c->calendars_dir = xstrdup(access(NUDGE_DATADIR "/calendars", R_OK) == 0
                                   ? NUDGE_DATADIR "/calendars"
                                   : NUDGE_SOURCE_DIR "/calendars");
    c->timezone = xstrdup("UTC");
    c->admin_socket = resolve(base, "nudge.sock");
    c->spool_dir = resolve(base, "spool");
    c->catch_up = 24 * 3600;
    c->log_level = 6;
    c->feb29_mar1 = false;
    c->http_listen = NULL;
    c->public_url = xstrdup("http://127.0.0.1:8025");
    c->dispatch.batch = 200;
    c->dispatch.concurrency = 4;
    c->dispatch.lease = 300;
    c->dispatch.lifetime = 3 * 86400;
    c->dispatch.tick = 60;
    c->policy.quiet_start = -1;
    c->policy.quiet_end = -1;
    c->policy.max_per_day = 0;
    c->policy.max_per_week = 0;
    c->channels = json_object();
    for (size_t i = 0; i < channel_count; i++)
        json_object_set_new(c->channels, channel_infos[i].name,
                            json_pack("{ss}", "transport", channel_infos[i].default_transport));
    return c;
}

void
config_free(struct config *c)
{
    if (!c)
        return;
    free(c->file);
    free(c->database);
    free(c->rules_dir);
    free(c->calendars_dir);
    free(c->timezone);
    free(c->admin_socket);
    free(c->spool_dir);
    free(c->http_listen);
    free(c->public_url);
    json_decref(c->channels);
    free(c);
}

static int
set_path(const struct ydoc *d, const struct ynode *n, const char *what, const char *base,
         char **dst, struct nerr *err)
{
    const char *s;
    if (yget_str(d, n, what, &s, err) < 0)
        return -EINVAL;
    if (!*s)
        return yerr(d, n, err, "%s must not be empty", what);
    free(*dst);
    *dst = resolve(base, s);
    return 0;
}

static int
load_dispatch(const struct ydoc *d, const struct ynode *n, struct config *c, struct nerr *err)
{
    static const char *const keys[] = {"batch", "concurrency", "lease", "lifetime", "tick", NULL};
    struct ynode *v;
    if (ymap_check_keys(d, n, "dispatch", keys, err) < 0)
        return -EINVAL;
    if ((v = ymap_get(n, "batch")) && yget_int(d, v, "dispatch.batch", 1, 10000,
                                               &c->dispatch.batch, err) < 0)
        return -EINVAL;
    if ((v = ymap_get(n, "concurrency"))) {
        if (yget_int(d, v, "dispatch.concurrency", 1, 256, &c->dispatch.concurrency, err) < 0)
            return -EINVAL;
        c->dispatch.concurrency_set = true;
    }
    if ((v = ymap_get(n, "lease")) && yget_duration(d, v, "dispatch.lease", &c->dispatch.lease,
                                                    err) < 0)
        return -EINVAL;
    if ((v = ymap_get(n, "lifetime")) &&
        yget_duration(d, v, "dispatch.lifetime", &c->dispatch.lifetime, err) < 0)
        return -EINVAL;
    if ((v = ymap_get(n, "tick"))) {
        if (yget_duration(d, v, "dispatch.tick", &c->dispatch.tick, err) < 0)
            return -EINVAL;
        if (c->dispatch.tick < 1 || c->dispatch.tick > 3600 || 3600 % c->dispatch.tick)
            return yerr(d, v, err, "dispatch.tick must divide an hour evenly (e.g. 60s, 5m)");
    }
    return 0;
}

static int
load_policy(const struct ydoc *d, const struct ynode *n, struct config *c, struct nerr *err)
{
    static const char *const keys[] = {"quiet_hours", "max_per_day", "max_per_week", NULL};
    static const char *const qkeys[] = {"start", "end", NULL};
    struct ynode *v;
    if (ymap_check_keys(d, n, "policy", keys, err) < 0)
        return -EINVAL;
    if ((v = ymap_get(n, "quiet_hours"))) {
        int hh, mm;
        struct ynode *s = ymap_get(v, "start"), *e = ymap_get(v, "end");
        if (ymap_check_keys(d, v, "policy.quiet_hours", qkeys, err) < 0)
            return -EINVAL;
        if (!s || !e)
            return yerr(d, v, err, "policy.quiet_hours needs both start and end, e.g. "
                                   "{ start: \"21:00\", end: \"08:00\" }");
        if (yget_hhmm(d, s, "quiet_hours.start", &hh, &mm, err) < 0)
            return -EINVAL;
        c->policy.quiet_start = hh * 60 + mm;
        if (yget_hhmm(d, e, "quiet_hours.end", &hh, &mm, err) < 0)
            return -EINVAL;
        c->policy.quiet_end = hh * 60 + mm;
    }
    if ((v = ymap_get(n, "max_per_day")) &&
        yget_int(d, v, "policy.max_per_day", 0, 1000, &c->policy.max_per_day, err) < 0)
        return -EINVAL;
    if ((v = ymap_get(n, "max_per_week")) &&
        yget_int(d, v, "policy.max_per_week", 0, 10000, &c->policy.max_per_week, err) < 0)
        return -EINVAL;
    return 0;
}

static int
load_channels(const struct ydoc *d, const struct ynode *n, struct config *c, struct nerr *err)
{
    if (ymap_check_keys(d, n, "channels", channel_names(), err) < 0)
        return -EINVAL;
    for (size_t i = 0; i < n->n; i++) {
        struct ynode *v = n->items[i], *t;
        const char *transport;
        json_t *j;
        if (yexpect_map(d, v, n->keys[i]->value, err) < 0)
            return -EINVAL;
        t = ymap_get(v, "transport");
        if (!t)
            return yerr(d, v, err, "channel '%s' needs a transport (e.g. transport: spool)",
                        n->keys[i]->value);
        if (yget_str(d, t, "transport", &transport, err) < 0)
            return -EINVAL;
        j = ynode_to_json(v);
        /* Positions let a backend's own validation point into nudge.yaml. */
        json_object_set_new(j, "_line", json_integer(v->line));
        json_object_set_new(j, "_file", json_string(d->file));
        json_object_set_new(c->channels, n->keys[i]->value, j);
    }
    return 0;
}

static int
load_log_level(const struct ydoc *d, const struct ynode *n, struct config *c, struct nerr *err)
{
    static const char *const names[] = {"err", "warn", "notice", "info", "debug", NULL};
    static const int levels[] = {3, 4, 5, 6, 7};
    const char *s;
    if (yget_str(d, n, "log_level", &s, err) < 0)
        return -EINVAL;
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], s))
            return c->log_level = levels[i], 0;
    yerr(d, n, err, "unknown log_level '%s'", s);
    nerr_hint(err, "expected one of: err, warn, notice, info, debug");
    return -EINVAL;
}

int
config_load(const char *path, struct config **out, struct nerr *err)
{
    static const char *const keys[] = {
        "database", "rules",   "calendars", "timezone", "admin_socket", "catch_up", "log_level",
        "spool_dir", "feb29",  "http",      "dispatch", "policy",       "channels", NULL};
    static const char *const http_keys[] = {"listen", "public_url", NULL};
    struct ydoc *d = NULL;
    struct config *c = NULL;
    struct ynode *root, *v;
    char *dir = xstrdup(path), *base;
    int r = -EINVAL;

    base = dirname(dir);
    if (ydoc_load_file(path, &d, err) < 0)
        goto out;
    c = config_defaults(base);
    c->file = xstrdup(path);
    root = d->root;
    if (!root)
        goto ok; /* an empty file means all defaults */
    if (ymap_check_keys(d, root, "nudge.yaml", keys, err) < 0)
        goto out;
    if ((v = ymap_get(root, "database")) &&
        set_path(d, v, "database", base, &c->database, err) < 0)
        goto out;
    if ((v = ymap_get(root, "rules")) && set_path(d, v, "rules", base, &c->rules_dir, err) < 0)
        goto out;
    if ((v = ymap_get(root, "calendars")) &&
        set_path(d, v, "calendars", base, &c->calendars_dir, err) < 0)
        goto out;
    if ((v = ymap_get(root, "spool_dir")) &&
        set_path(d, v, "spool_dir", base, &c->spool_dir, err) < 0)
        goto out;
    if ((v = ymap_get(root, "admin_socket")) &&
        set_path(d, v, "admin_socket", base, &c->admin_socket, err) < 0)
        goto out;
    if ((v = ymap_get(root, "timezone"))) {
        const char *tz;
        if (yget_str(d, v, "timezone", &tz, err) < 0)
            goto out;
        if (!cal_zone_valid(tz)) {
            yerr(d, v, err, "unknown time zone '%s'", tz);
            nerr_hint(err, "use an IANA zone name such as Asia/Shanghai, Europe/Berlin or UTC");
            goto out;
        }
        free(c->timezone);
        c->timezone = xstrdup(tz);
    }
    if ((v = ymap_get(root, "catch_up")) && yget_duration(d, v, "catch_up", &c->catch_up, err) < 0)
        goto out;
    if ((v = ymap_get(root, "log_level")) && load_log_level(d, v, c, err) < 0)
        goto out;
    if ((v = ymap_get(root, "feb29"))) {
        const char *s;
        if (yget_str(d, v, "feb29", &s, err) < 0)
            goto out;
        if (!strcmp(s, "feb28"))
            c->feb29_mar1 = false;
        else if (!strcmp(s, "mar1"))
            c->feb29_mar1 = true;
        else {
            yerr(d, v, err, "feb29 must be feb28 or mar1");
            nerr_hint(err, "it says when 29 February anniversaries fire in common years");
            goto out;
        }
    }
    if ((v = ymap_get(root, "http"))) {
        struct ynode *w;
        const char *s;
        if (ymap_check_keys(d, v, "http", http_keys, err) < 0)
            goto out;
        if ((w = ymap_get(v, "listen"))) {
            if (yget_str(d, w, "http.listen", &s, err) < 0)
                goto out;
            if (!strchr(s, ':')) {
                yerr(d, w, err, "http.listen must be ADDRESS:PORT, e.g. 127.0.0.1:8025");
                goto out;
            }
            c->http_listen = xstrdup(s);
        }
        if ((w = ymap_get(v, "public_url"))) {
            if (yget_str(d, w, "http.public_url", &s, err) < 0)
                goto out;
            if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8)) {
                yerr(d, w, err, "http.public_url must start with http:// or https://");
                goto out;
            }
            free(c->public_url);
            c->public_url = xstrdup(s);
        }
    }
    if ((v = ymap_get(root, "dispatch")) && load_dispatch(d, v, c, err) < 0)
        goto out;
    if ((v = ymap_get(root, "policy")) && load_policy(d, v, c, err) < 0)
        goto out;
    if ((v = ymap_get(root, "channels")) && load_channels(d, v, c, err) < 0)
        goto out;
ok:
    *out = c;
    c = NULL;
    r = 0;
out:
    config_free(c);
    ydoc_free(d);
    free(dir);
    return r;
}
