/*
 * store.h: the customer store and the deliveries outbox, behind one interface.
 *
 * SQLite is the embedded backend (WAL mode). Everything the rest of the
 * daemon knows about the database goes through typed functions: these and
 * those of the other store modules (store_*.h, outbox.h), none of which
 * names an SQLite type, so that a PostgreSQL backend could later sit beside
 * this one. Only the store modules include store_internal.h (the
 * connection, prepared statements) and speak SQL.
 *
 * Schema (version STORE_SCHEMA_VERSION, PRAGMA user_version):
 *
 *   customers(id INTEGER PRIMARY KEY, ext_id TEXT UNIQUE NOT NULL, name, first_name,
 *             email, phone, birthday TEXT  -- 'YYYY-MM-DD' or '--MM-DD'
 *             , tz, tier, owner, created_at, updated_at,
 *             attrs TEXT NOT NULL DEFAULT '{}'  -- JSON object: other CSV columns)
 *   customer_tags(customer_id, tag)            PRIMARY KEY(customer_id, tag)
 *   consents(customer_id, channel, granted 0|1, updated_at, source)
 *                                              PRIMARY KEY(customer_id, channel)
 *   orders(id INTEGER PRIMARY KEY, ext_id TEXT UNIQUE NOT NULL, customer_id,
 *          amount_cents INTEGER, currency, ordered_at TEXT ISO-8601)
 *   customer_stats(customer_id PRIMARY KEY, orders_count, total_cents,
 *          first_order_date, last_order_date)   -- maintained by the orders import
 *   attribute_keys(key PRIMARY KEY)            -- every custom attribute seen
 *   deliveries(id INTEGER PRIMARY KEY, rule, customer_id, occurrence, action INTEGER,
 *          channel, state, due_at, created_at, attempts, next_attempt_at,
 *          lease_until, last_error, sent_at, marketing 0|1,
 *          snapshot  -- rule_snapshots.id; NULL for rows enqueued before schema 7
 *          , cap_at  -- when the frequency caps let it through (store_policy.c)
 *          , claim_owner, claim_token  -- who holds a row in 'sending' (outbox.h)
 *          , UNIQUE(rule, customer_id, occurrence, action))
 *       state: pending | sending | sent | retry | dead | suppressed | skipped
 *   rule_snapshots(id INTEGER PRIMARY KEY AUTOINCREMENT, hash TEXT UNIQUE NOT NULL,
 *          rule, body TEXT NOT NULL, created_at)  -- a rule version as its deliveries
 *                                                 -- are sent (store_snapshot.h)
 *   suppressions(channel, address, reason, created_at) PRIMARY KEY(channel, address)
 *   timeline(id, customer_id, at, kind, detail)   -- what nudge did for a customer and
 *                                                 -- what has no table of its own (orders
 *                                                 -- are not copied here, since schema 9)
 *   rule_runs(rule PRIMARY KEY, evaluated_to)     -- scheduler progress, for catch-up
 *   rule_members(rule, customer_id, since)        -- who is inside an `entered` condition
 *   tasks(id, delivery_id UNIQUE, customer_id, rule, kind, assignee, note, due_at,
 *         created_at, done_at, outcome,            -- callback tasks for staff
 *         notified_email_at, notified_webhook_at,  -- the assignee told
 *         notify_error)                            --   (channels.task.notify)
 *   meta(key PRIMARY KEY, value)
 */
#ifndef NUDGE_STORE_H
#define NUDGE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define STORE_SCHEMA_VERSION 9

/* An open database (a connection): opaque outside the store modules
 * (store_internal.h). */
struct store;

/* One daemon per database: takes an exclusive lock on <path>.lock (created
 * 0600, holding our pid) for as long as *lock_fd stays open. -EBUSY (err
 * names the pid holding it) when another process has it. */
int store_lock(const char *path, int *lock_fd, struct nerr *err);
void store_unlock(int lock_fd);
/* Logs a warning, with the chmod that fixes it, for each of the database's
 * files (the database, -wal, -shm) that its group or others can read. */
void store_warn_if_readable(const char *path);

/* Opens (creating if needed, mode 0600) and migrates to the current schema. */
int store_open(const char *path, struct store **out, struct nerr *err);
void store_close(struct store *st);
/* Opens an existing database read-only (file:PATH?mode=ro): no migration, no
 * pragma that writes, any schema version; for offline checks. */
int store_open_readonly(const char *path, struct store **out, struct nerr *err);
/* The schema version of an open database. */
int store_schema_version(struct store *st);
/* Migrates from whatever user_version the file has (0 = empty) to current. */
int store_migrate(struct store *st, struct nerr *err);
/* For tests and tools: open or migrate only up to an older schema version. */
int store_open_version(const char *path, int version, struct store **out, struct nerr *err);
int store_migrate_to(struct store *st, int target, struct nerr *err);

int store_begin(struct store *st);   /* BEGIN IMMEDIATE */
/* A deferred transaction for a run of reads: one snapshot and one shared
 * lock instead of one per statement; ended by store_commit. */
int store_begin_read(struct store *st);
int store_commit(struct store *st);
int store_rollback(struct store *st);
/* The database file's path, as given to store_open. */
const char *store_path(const struct store *st);

/* Scheduler progress per rule: the instant up to which it has been evaluated. */
int store_rule_progress_get(struct store *st, const char *rule, ntime_t *out); /* -ENOENT */
int store_rule_progress_set(struct store *st, const char *rule, ntime_t t);

/* meta key/value */
int store_meta_get(struct store *st, const char *key, char **out); /* -ENOENT */
int store_meta_set(struct store *st, const char *key, const char *value);

/* Names of every custom attribute seen by imports (NULL-terminated; strv_free). */
int store_attribute_keys(struct store *st, char ***out);

#endif
