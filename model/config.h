/*
 * config.h: nudge.yaml, the daemon's configuration.
 *
 * Every key has a default (see contrib/nudge.yaml.example and nudge.yaml(5));
 * unknown keys and wrong types are errors with file:line:col. Relative paths
 * are taken relative to the directory holding nudge.yaml.
 */
#ifndef NUDGE_CONFIG_H
#define NUDGE_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct config {
    char *file;          /* the nudge.yaml path as given */
    char *database;      /* SQLite file */
    char *rules_dir;     /* one rule per *.yaml, templates beside */
    char *calendars_dir; /* holiday calendars */
    char *timezone;      /* default IANA zone for customers without one */
    char *admin_socket;  /* Unix socket path */
    char *spool_dir;     /* where the spool transport writes */
    int64_t catch_up;    /* seconds: missed fires younger than this still go out */
    int log_level;       /* LOG_LVL_* */
    bool feb29_mar1;     /* 29 Feb anniversaries in common years: false = 28 Feb, true = 1 Mar */
    char *http_listen;   /* "127.0.0.1:8025", or NULL for no HTTP endpoint */
    char *public_url;    /* base of unsubscribe links */
    struct {
        int64_t batch;       /* messages per backend send() */
        int64_t concurrency; /* parallel sessions per channel */
        bool concurrency_set; /* written in nudge.yaml (else a backend may prefer its own) */
        int64_t lease;       /* seconds a claim is held before another may take it */
        int64_t lifetime;    /* seconds before a retrying delivery goes dead */
        int64_t tick;        /* scheduler period in seconds (aligned) */
    } dispatch;
    struct {
        int quiet_start; /* minutes after local midnight, -1 = no quiet hours */
        int quiet_end;
        int64_t max_per_day;  /* marketing messages per customer per local day, 0 = no cap */
        int64_t max_per_week; /* per rolling 7 days, 0 = no cap */
    } policy;
    json_t *channels; /* channel name -> settings object with at least "transport" */
};

/* Loads and validates; on error *out is untouched and err says where and why. */
int config_load(const char *path, struct config **out, struct nerr *err);
/* Defaults only, paths relative to base_dir (used by tests and `nudgectl check`). */
struct config *config_defaults(const char *base_dir);
void config_free(struct config *c);

#endif
