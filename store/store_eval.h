/*
 * store_eval.h: what rule evaluation reads and writes in the store: the
 * customers a fire reaches (by zone, anniversary date and audience), the
 * members of an `entered` condition, and the deliveries it enqueues.
 *
 * The evaluator describes a fire as a store_window in domain terms; the
 * audience expressions it passes are the audience compiler's output (a
 * boolean over customers c and their stats s, with typed parameters,
 * audience.h), which only this module binds and runs. Deliveries are
 * enqueued with INSERT OR IGNORE on UNIQUE(rule, customer, occurrence,
 * action), so enqueueing the same window twice changes nothing. Callers
 * that write hold a transaction (store_begin) around a whole evaluation.
 */
#ifndef NUDGE_STORE_EVAL_H
#define NUDGE_STORE_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

struct store;
struct audience;
struct aud_dayval;

/* The customers one fire reaches. */
struct store_window {
    const char *tz;         /* the zone evaluated */
    const char *default_tz; /* the zone of customers without one */
    /* Anniversary triggers: customers whose date field (birthday,
     * created_at, first_order_date, last_order_date or a custom attribute)
     * falls on the fire's day. */
    bool anniversary;
    const char *field;
    bool lunar;                      /* lunar calendar: match `dates` exactly */
    const char *const *md;           /* solar: month-days "MM-DD" ... */
    int nmd;                         /* ... (how many) ... */
    int year;                        /* ... of a year before this one (or a yearless "--MM-DD") */
    const char *const *dates;        /* lunar: solar dates "YYYY-MM-DD" the field may be */
    size_t ndates;                   /* (none: nobody) */
    const struct audience *audience; /* NULL: everyone in the window */
    const char *today;               /* "YYYY-MM-DD": day of the audience's day functions */
};

/* One delivery to enqueue (the customer comes from the window or the call). */
struct store_delivery {
    const char *rule;
    const char *occurrence;
    size_t action;
    const char *channel;
    ntime_t due_at; /* also its first attempt */
    ntime_t created_at;
    bool marketing;
    int64_t snapshot; /* rule_snapshots id, 0 for none */
};

/* Every zone customers live in, customers without one counting in
 * default_tz (malloc'd strings, *n of them). */
int store_eval_zones(struct store *st, const char *default_tz, char ***zones, size_t *n);

/* Calls cb for each customer recorded as inside rule's `entered` condition. */
int store_eval_members(struct store *st, const char *rule, void (*cb)(void *ud, int64_t id),
                       void *ud);
/* Records customer as inside rule's condition since day `since` (no-op if
 * already recorded). */
int store_eval_member_join(struct store *st, const char *rule, int64_t customer, const char *since);
/* Records that customer left rule's condition. */
int store_eval_member_leave(struct store *st, const char *rule, int64_t customer);

/* Enqueues d for every customer in window w; *enqueued grows by the rows
 * inserted (not those already there). */
int store_eval_enqueue_window(struct store *st, const struct store_window *w,
                              const struct store_delivery *d, long *enqueued);
/* Enqueues d for one customer; *enqueued grows by 1 if the row is new. */
int store_eval_enqueue_one(struct store *st, const struct store_delivery *d, int64_t customer,
                           long *enqueued);

/* A customer found by a scan: id, ext_id (valid during the call). */
typedef int (*store_customer_cb)(void *ud, int64_t id, const char *ext_id);
/* Calls cb for every customer in window w, by ext_id; stops at and returns
 * cb's first negative value. */
int store_eval_customers(struct store *st, const struct store_window *w, store_customer_cb cb,
                         void *ud);

/* A customer found by store_eval_condition: whether the condition holds on
 * the window's day, and (STORE_EVAL_DAY_ARGS) the condition's day arguments
 * (audience_day_args). */
typedef int (*store_condition_cb)(void *ud, int64_t id, const char *ext_id, bool holds,
                                  const struct aud_dayval *days);
enum {
    STORE_EVAL_DAY_ARGS = 1, /* also read the condition's day arguments */
    STORE_EVAL_BY_EXT_ID = 2 /* in ext_id order */
};
/* Calls cb for every customer in window w (whose audience must be NULL)
 * with the value of cond for them; stops at and returns cb's first
 * negative value. The callback may write (members, deliveries). */
int store_eval_condition(struct store *st, const struct store_window *w,
                         const struct audience *cond, int flags, store_condition_cb cb, void *ud);

/* "Does audience a hold for this customer on this day?", kept prepared for
 * many customers. */
struct store_holds;
int store_eval_holds_open(struct store *st, const struct audience *a, const char *today,
                          struct store_holds **out);
/* 1 if a holds for customer on day `today` ("YYYY-MM-DD"), 0 if not, < 0
 * on error. */
int store_eval_holds(struct store_holds *h, const char *today, int64_t customer);
void store_eval_holds_close(struct store_holds *h);

/* How many customers audience nw holds for and old does not (*enter) and
 * the other way round (*leave) on day `today`; NULL means everyone. */
int store_eval_audience_delta(struct store *st, const struct audience *nw,
                              const struct audience *old, const char *today, int64_t *enter,
                              int64_t *leave);

#endif
