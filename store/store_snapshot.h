/*
 * store_snapshot.h: rule snapshots, the content of a rule version that
 * queued deliveries are sent from.
 *
 * Why a content-addressed snapshot per rule version and not a copy of the
 * action in every delivery row: the evaluator enqueues up to hundreds of
 * thousands of rows in one statement (INSERT ... SELECT); a copy of the
 * templates and partials per row would multiply the bytes written (and the
 * database size) by the size of the templates, a few kB per row, while a
 * snapshot is written once per rule version (one lookup by hash per rule
 * and evaluation) and a row only carries its integer id. Equal content gives
 * an equal hash, so evaluating an unchanged rule again reuses its snapshot.
 *
 * A snapshot is kept while any delivery that may still be sent refers to it
 * (any state but sent, suppressed and skipped: a dead row can be retried);
 * store_snapshot_gc removes the others.
 */
#ifndef NUDGE_STORE_SNAPSHOT_H
#define NUDGE_STORE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* The id of the snapshot with this hash, inserting (hash, rule, body) if
 * there is none. Run it in the transaction that enqueues the rows referring
 * to it, so that garbage collection cannot remove it in between. */
int store_snapshot_put(struct store *st, const char *hash, const char *rule, const char *body,
                       ntime_t now, int64_t *id);
/* The body of snapshot id (malloc'd, NUL-terminated); -ENOENT if there is none. */
int store_snapshot_get(struct store *st, int64_t id, char **body, size_t *len);
/* Removes snapshots no deliverable row refers to; *removed (may be NULL)
 * says how many. One scan of deliveries: run it now and then, not per row. */
int store_snapshot_gc(struct store *st, long *removed);

#endif
