/*
 * rules.h: rule files, the marketer's interface.
 *
 * One rule per *.yaml file in the rules directory; templates (NAME.subject,
 * NAME.txt, NAME.html) beside them. A rule set is loaded whole and is
 * immutable afterwards: a reload builds a new set and swaps it in only if
 * every file is valid, so a typo never stops what is already running.
 */
#ifndef NUDGE_RULES_H
#define NUDGE_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct audience;
struct tmpl;
struct holiday_set;

enum trigger_kind {
    TRIG_DAILY,       /* every day at `at` */
    TRIG_WEEKLY,      /* on the listed weekdays at `at` */
    TRIG_MONTHLY,     /* on day N (or the last day) of each month at `at` */
    TRIG_CRON,        /* a 5-field cron expression, in the customer's zone */
    TRIG_ANNIVERSARY, /* each year on a date field's month and day (solar or lunar) */
    TRIG_HOLIDAY,     /* a named holiday from the calendars */
    TRIG_ENTERED,     /* once each time a customer newly satisfies a condition */
};

/* Cron fields as bit sets: minute 0-59, hour 0-23, dom 1-31, month 1-12, dow 0-6. */
struct cron_spec {
    uint64_t minute;
    uint32_t hour;
    uint32_t dom;
    uint16_t month;
    uint8_t dow;
    bool dom_any; /* written as '*' (matters for the either-or rule) */
    bool dow_any;
};

struct trigger {
    enum trigger_kind kind;
    int at_h, at_m;      /* local time of day (all kinds but cron) */
    uint8_t weekdays;    /* weekly: bit 0 = Sunday ... bit 6 = Saturday */
    int month_day;       /* monthly: 1..31, or -1 for the last day */
    struct cron_spec cron;
    char *field;         /* anniversary: the date field */
    bool lunar;          /* anniversary: calendar: chinese */
    int days_before;     /* anniversary, holiday: fire this many days earlier */
    int days_after;      /* holiday: fire this many days later */
    char *holiday;       /* holiday slug */
    struct audience *condition; /* entered */
    bool backfill;       /* entered: the first evaluation fires for customers already inside
                          * (true, the default) or only records them (backfill: false) */
};

enum action_kind { ACT_EMAIL, ACT_SMS, ACT_WEBHOOK, ACT_TASK };

struct action {
    enum action_kind kind;
    const char *channel;  /* "email", "sms", "webhook", "task" */
    char *template_name;  /* email: base name of NAME.subject/.txt/.html */
    struct tmpl *subject; /* email */
    struct tmpl *text;    /* email text part; sms text */
    struct tmpl *html;    /* email HTML part, may be NULL */
    char *url;            /* webhook */
    char *secret_file;    /* webhook: file holding the whsec_ secret */
    char *task_kind;      /* task: "callback", ... */
    char *assign;         /* task: "owner" or "round-robin" */
    int64_t due_in;       /* task: seconds */
    struct tmpl *note;    /* task note */
    /* The source text each template above was compiled from, kept for the
     * rule's snapshot (rule_snapshot_*): NULL where the template is. */
    struct {
        char *subject, *text, *html, *note;
        size_t subject_len, text_len, html_len, note_len;
    } src;
};

/* A partial template ({{> name}}), read from DIR/name.mustache when the rule
 * was loaded: rendering never reads the rules directory. */
struct partial {
    char *name;
    char *src;
    size_t len;
};

struct coupon {
    bool enabled;
    int percent_off;
    int64_t amount_off_cents;
    int valid_days;
    char *prefix;
};

struct rule {
    char *name;
    char *description;
    char *file;
    int name_line, name_col; /* where `name:` is, for duplicate-name errors */
    bool marketing; /* category: marketing (caps, quiet hours, unsubscribe) or care */
    int priority;   /* on a day a frequency cap fills, higher goes first (default 0) */
    bool cap_drop;  /* on_cap: drop (suppress a message over a cap) instead of defer */
    struct trigger trigger;
    struct audience *audience; /* NULL = everyone */
    char *audience_src;
    struct coupon coupon;
    struct action *actions;
    size_t nactions;
    char digest[65]; /* SHA-256 of the rule file and its templates, to report changes */
    /* Every partial the templates include, directly or through another
     * partial, sorted by name. */
    struct partial *partials;
    size_t npartials;
    /* What a delivery needs to be sent as it was enqueued (name, category,
     * coupon, actions with their template sources, partials) as canonical
     * JSON, and its SHA-256: the key of its row in rule_snapshots. */
    char *snapshot;
    char snapshot_hash[65];
};

struct ruleset {
    struct rule **rules;
    size_t n;
    char *dir;
    char *warnings;   /* NULL, or "file:line:col: warning: ...\n" lines (custom attributes
                       * named before any import brought them) */
    uint64_t version; /* increases with every successful load */
    int refs;         /* the scheduler holds a reference while it evaluates */
};

struct rules_env {
    const struct holiday_set *holidays; /* may be NULL: then holiday triggers are errors */
    const char *const *known_attrs;     /* custom customer attributes, NULL-terminated */
};

/*
 * Loads every *.yaml in dir. On any error returns -EINVAL and *errors holds
 * every problem found (each "file:line:col: error: ..." with caret and hint);
 * *out is untouched. On success *errors is NULL.
 */
int ruleset_load(const char *dir, const struct rules_env *env, struct ruleset **out,
                 char **errors);
struct ruleset *ruleset_ref(struct ruleset *rs);
void ruleset_unref(struct ruleset *rs);
const struct rule *ruleset_find(const struct ruleset *rs, const char *name);

/*
 * A tmpl_partial_fn feeding partials from a loaded (or decoded) rule; ud is
 * the const struct rule *. A name the rule did not load is -ENOENT, which
 * cannot happen for a template of that rule (the loader read them all).
 */
int rule_partial(void *ud, const char *name, char **text, size_t *len);

/*
 * Builds a rule from its snapshot (struct rule.snapshot, as stored in
 * rule_snapshots): name, category, coupon, actions with compiled templates,
 * partials. Trigger and audience are not part of a snapshot. On failure
 * returns -EINVAL with why filled.
 */
int rule_snapshot_decode(const char *body, size_t len, struct rule **out, char *why,
                         size_t whylen);
/* Frees a rule made by rule_snapshot_decode. */
void rule_free(struct rule *r);

/* Parses a cron expression; errors locate themselves within `expr` via col. */
int cron_parse(const char *expr, struct cron_spec *out, char *why, size_t whylen, int *badcol);

/* Names for display. */
const char *trigger_kind_name(enum trigger_kind k);

#endif
