/*
 * store_policy.h: what frequency caps read and write in the store
 * (deliveries.cap_at, see store_policy.c). Callers hold a write transaction
 * (store_begin) around a count and the admit that follows it.
 */
#ifndef NUDGE_STORE_POLICY_H
#define NUDGE_STORE_POLICY_H

#include <stdint.h>

#include "util.h"

struct store;

/* Messages of customer let through by the caps at an instant in [from, to),
 * other than delivery `except`, not finished unsent. */
int store_cap_count(struct store *st, int64_t customer_id, ntime_t from, ntime_t to,
                    int64_t except, long *n);
/* The rule names of customer's marketing email/SMS deliveries other than
 * `except` still to go out before `before` and not let through since
 * `since` (NULL-terminated, strv_free). */
int store_cap_waiting(struct store *st, int64_t customer_id, ntime_t since, ntime_t before,
                      int64_t except, char ***rules);
/* Marks a delivery as let through by the caps at `at`. */
int store_cap_admit(struct store *st, int64_t delivery_id, ntime_t at);

#endif
