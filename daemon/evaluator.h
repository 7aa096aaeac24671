/*
 * evaluator.h: turns due fires into rows of the deliveries outbox.
 *
 * For each rule and each time zone its customers live in, the scheduler
 * says which occurrences fell due; the evaluator selects the matching
 * customers with the rule's audience SQL and inserts one delivery per
 * action with INSERT OR IGNORE on UNIQUE(rule, customer, occurrence, action),
 * so evaluating the same window twice changes nothing. It runs on a worker
 * thread with its own database connection.
 */
#ifndef NUDGE_EVALUATOR_H
#define NUDGE_EVALUATOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rules.h"
#include "schedule.h"

struct config;
struct store;

struct eval_stats {
    long fires;        /* (rule, zone, occurrence) fires found */
    long enqueued;     /* deliveries inserted (or, when listing, rows listed) */
    long skipped_late; /* fires older than catch_up, logged and skipped */
};

/* One would-be delivery, for preview and forecast. */
struct eval_row {
    const struct rule *rule;
    const struct fire *fire;
    const char *tz;
    int64_t customer_id;
    const char *ext_id;
    size_t action;
};
typedef int (*eval_row_cb)(void *ud, const struct eval_row *row);

struct evaluator {
    struct store *st;
    const struct config *cfg;
    struct sched_env senv;
    const atomic_bool *stop; /* when set, evaluate_due ends after the current rule; may be NULL */
    /* Listing `entered` triggers: evaluate the condition on every fire even
     * when it is stepwise in the day (for tests comparing the two ways). */
    bool day_by_day;
};

/*
 * Evaluates rule r for fires in (from, to]. With cb NULL the deliveries are
 * enqueued; otherwise nothing is written and cb sees every row that would be
 * (entered triggers then list customers satisfying the condition who are
 * not yet members).
 */
int evaluate_window(struct evaluator *ev, const struct rule *r, ntime_t from, ntime_t to,
                    ntime_t now, eval_row_cb cb, void *ud, struct eval_stats *stats);

/*
 * Brings every rule of rs up to `now` from where it was last evaluated
 * (rule_runs). Fires older than now - catch_up are logged and skipped, never
 * sent late by surprise; the daemon passes its catch_up on the first cycle
 * after start (time it was down) and no limit afterwards (time it was
 * running, including a frozen clock moved by advance). A rule never
 * evaluated before starts at `now`: it does not reach into the past.
 */
int evaluate_due(struct evaluator *ev, const struct ruleset *rs, ntime_t now, int64_t catch_up,
                 struct eval_stats *stats);


#endif
