/*
 * store_timeline.h: the customer timeline (what happened to whom, when),
 * as the dispatcher writes it. Readers (nudgectl timeline, insight) come
 * through their own store functions.
 */
#ifndef NUDGE_STORE_TIMELINE_H
#define NUDGE_STORE_TIMELINE_H

#include <stdint.h>

#include "util.h"

struct store;

/* Adds an entry: kind ("sent", ...) and a free-text detail. In the
 * caller's transaction. 0, or -EIO. */
int store_timeline_add(struct store *st, int64_t customer_id, ntime_t at, const char *kind,
                       const char *detail);

#endif
