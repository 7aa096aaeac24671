/*
 * store.c: the SQLite customer store: opening, WAL and pragmas, the schema and
 * its migrations (PRAGMA user_version), transactions and small key/value
 * tables, and who may touch the file: one daemon per database (store_lock)
 * and private modes (a new database is created 0600; SQLite gives its -wal
 * and -shm the database's mode). Import lives in import.c, the outbox in
 * outbox.c; both use the schema defined here.
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/*
 * Each migration moves the schema from version i to i + 1. They only ever
 * append: a released step is never edited, so every database in the field
 * walks the same path.
 */
static const char *const migrations[] = {
    /* 0 -> 1: the first schema. */
    "CREATE TABLE customers ("
    "  id INTEGER PRIMARY KEY,"
    "  ext_id TEXT NOT NULL UNIQUE,"
    "  name TEXT, first_name TEXT, email TEXT, phone TEXT,"
    "  birthday TEXT, tz TEXT, tier TEXT, owner TEXT,"
    "  created_at TEXT, updated_at TEXT,"
    "  attrs TEXT NOT NULL DEFAULT '{}');"
    "CREATE TABLE customer_tags ("
    "  customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,"
    "  tag TEXT NOT NULL, PRIMARY KEY (customer_id, tag)) WITHOUT ROWID;"
    "CREATE TABLE consents ("
    "  customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,"
    "  channel TEXT NOT NULL, granted INTEGER NOT NULL,"
    "  updated_at TEXT, source TEXT,"
    "  PRIMARY KEY (customer_id, channel)) WITHOUT ROWID;"
    "CREATE TABLE orders ("
    "  id INTEGER PRIMARY KEY,"
    "  ext_id TEXT NOT NULL UNIQUE,"
    "  customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,"
    "  amount_cents INTEGER NOT NULL, currency TEXT, ordered_at TEXT NOT NULL);"
    "CREATE INDEX orders_customer ON orders(customer_id, ordered_at);"
    "CREATE TABLE deliveries ("
    "  id INTEGER PRIMARY KEY,"
    "  rule TEXT NOT NULL,"
    "  customer_id INTEGER NOT NULL,"
    "  occurrence TEXT NOT NULL,"
    "  action INTEGER NOT NULL DEFAULT 0,"
    "  channel TEXT NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'pending',"
    "  due_at INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_at INTEGER NOT NULL,"
    "  lease_until INTEGER,"
    "  last_error TEXT,"
    "  sent_at INTEGER,"
    "  UNIQUE (rule, customer_id, occurrence, action));"
    "CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);"
    "CREATE TABLE rule_runs (rule TEXT PRIMARY KEY, evaluated_to INTEGER NOT NULL);"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);",

    /* 1 -> 2: order aggregates for audiences, custom attribute names,
     * suppressions, the customer timeline and callback tasks. */
    "CREATE TABLE customer_stats ("
    "  customer_id INTEGER PRIMARY KEY REFERENCES customers(id) ON DELETE CASCADE,"
    "  orders_count INTEGER NOT NULL DEFAULT 0,"
    "  total_cents INTEGER NOT NULL DEFAULT 0,"
    "  first_order_date TEXT, last_order_date TEXT);"
    "INSERT INTO customer_stats (customer_id, orders_count, total_cents,"
    "  first_order_date, last_order_date)"
    "  SELECT customer_id, count(*), sum(amount_cents), min(substr(ordered_at, 1, 10)),"
    "  max(substr(ordered_at, 1, 10)) FROM orders GROUP BY customer_id;"
    "CREATE TABLE attribute_keys (key TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE suppressions ("
    "  channel TEXT NOT NULL, address TEXT NOT NULL, reason TEXT,"
    "  created_at INTEGER NOT NULL, PRIMARY KEY (channel, address)) WITHOUT ROWID;"
    "CREATE TABLE timeline ("
    "  id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, at INTEGER NOT NULL,"
    "  kind TEXT NOT NULL, detail TEXT);"
    "CREATE INDEX timeline_customer ON timeline(customer_id, at);"
    "CREATE TABLE tasks ("
    "  id INTEGER PRIMARY KEY,"
    "  delivery_id INTEGER UNIQUE,"
    "  customer_id INTEGER NOT NULL,"
    "  rule TEXT, kind TEXT NOT NULL, assignee TEXT, note TEXT,"
    "  due_at INTEGER, created_at INTEGER NOT NULL,"
    "  done_at INTEGER, outcome TEXT);"
    "CREATE INDEX tasks_assignee ON tasks(assignee, done_at, due_at);"
    "CREATE INDEX customers_birthday ON customers(substr(birthday, -5));",

    /* 2 -> 3: membership for `entered` triggers, so that leaving a condition
     * and entering it again fires again. */
    "CREATE TABLE rule_members ("
    "  rule TEXT NOT NULL, customer_id INTEGER NOT NULL, since TEXT NOT NULL,"
    "  PRIMARY KEY (rule, customer_id)) WITHOUT ROWID;"
    "CREATE INDEX deliveries_customer ON deliveries(customer_id, sent_at);"
    "CREATE INDEX customers_tz ON customers(tz);"
    "CREATE INDEX customers_birthday_date ON customers(birthday);"
    /* Marketing or care, as the rule said when the delivery was made:
     * frequency caps count marketing messages only. */
    "ALTER TABLE deliveries ADD COLUMN marketing INTEGER NOT NULL DEFAULT 1;"
    "CREATE INDEX deliveries_claim ON deliveries(channel, state, next_attempt_at);",

    /* 3 -> 4: notifying a task's assignee (channels.task.notify): when it
     * was done, or why it could not be. */
    "ALTER TABLE tasks ADD COLUMN notified_email_at INTEGER;"
    "ALTER TABLE tasks ADD COLUMN notified_webhook_at INTEGER;"
    "ALTER TABLE tasks ADD COLUMN notify_error TEXT;",

    /* 4 -> 5: deliveries_claim (channel, state, next_attempt_at) serves
     * every query by state (outbox.c); keeping a second index of the state
     * cost each claim and each result two more index updates, about a
     * third of the outbox's statement time in contrib/bench/email.sh. */
    "DROP INDEX IF EXISTS deliveries_due;",

    /* 5 -> 6: owned claims. A row in 'sending' names the daemon instance
     * that claimed it and the batch's token; every result checks both
     * (outbox.c), so a stale worker or a dead instance's claim can never
     * settle a row someone else holds now. */
    "ALTER TABLE deliveries ADD COLUMN claim_owner TEXT;"
    "ALTER TABLE deliveries ADD COLUMN claim_token INTEGER;",

    /* 6 -> 7: self-contained deliveries. A rule version's content (actions
     * with their template sources, partials, coupon, category) is written
     * once, keyed by its hash, and each delivery refers to it by id, so a
     * reload or an edited file never changes what is queued. AUTOINCREMENT:
     * an id freed by garbage collection is never given to another version
     * while a finished row may still name it. Rows enqueued before this
     * schema keep snapshot NULL and render from the rule set loaded at the
     * time of sending, as they always did (render.c). */
    "CREATE TABLE rule_snapshots ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  hash TEXT NOT NULL UNIQUE,"
    "  rule TEXT NOT NULL,"
    "  body TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "ALTER TABLE deliveries ADD COLUMN snapshot INTEGER;",

    /* 7 -> 8: frequency caps count what they let through (cap_at, the
     * instant; store_policy.c), so that parallel dispatch slots see each
     * other's messages before they are sent. Messages already sent count
     * from their sent_at. */
    "ALTER TABLE deliveries ADD COLUMN cap_at INTEGER;"
    "UPDATE deliveries SET cap_at = sent_at WHERE state = 'sent' AND marketing"
    "  AND channel IN ('email', 'sms');"
    "CREATE INDEX deliveries_cap ON deliveries(customer_id, cap_at) WHERE cap_at IS NOT NULL;",

    /* 8 -> 9: orders are no longer copied to the timeline (one row per
     * order, half the work of an orders import): a customer's history reads
     * them from the orders table. The copies made so far go. */
    "DELETE FROM timeline WHERE kind = 'order';",
};

#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

_Static_assert(N_MIGRATIONS == STORE_SCHEMA_VERSION, "one migration per schema version");

int
store_exec(struct store *st, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_err("store", "%s: %s", st->path, msg ? msg : "unknown error");
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

int
store_exec_cached(struct store *st, const char *sql)
{
    sqlite3_stmt *s;
    int rc = store_prepare(st, sql, &s);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        store_done(s);
    }
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        log_err("store", "%s: %s: %s", st->path, sql, sqlite3_errmsg(st->db));
        return -EIO;
    }
    return 0;
}

int
store_begin(struct store *st)
{
    return store_exec_cached(st, "BEGIN IMMEDIATE");
}

int
store_begin_read(struct store *st)
{
    return store_exec_cached(st, "BEGIN");
}

int
store_commit(struct store *st)
{
    return store_exec_cached(st, "COMMIT");
}

int
store_rollback(struct store *st)
{
    return store_exec(st, "ROLLBACK");
}

int
store_schema_version(struct store *st)
{
    sqlite3_stmt *s;
    int v = -EIO;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

int
store_migrate_to(struct store *st, int target, struct nerr *err)
{
    int v = store_schema_version(st);
    if (v < 0)
        return nerr_set(err, st->path, 0, 0, "cannot read the schema version");
    if (v > (int)N_MIGRATIONS) {
        nerr_set(err, st->path, 0, 0,
                 "database schema version %d is newer than this nudged knows (%d)", v,
                 (int)N_MIGRATIONS);
        nerr_hint(err, "run a newer nudged, or restore a backup made by this version");
        return -EINVAL;
    }
    while (v < target) {
        char *msg = NULL;
        char *sql = xasprintf("BEGIN IMMEDIATE; %s PRAGMA user_version = %d; COMMIT;",
                              migrations[v], v + 1);
        int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);
        free(sql);
        if (rc != SQLITE_OK) {
            nerr_set(err, st->path, 0, 0, "migrating schema %d -> %d failed: %s", v, v + 1,
                     msg ? msg : "?");
            sqlite3_free(msg);
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return -EIO;
        }
        log_info("store", "migrated %s to schema %d", st->path, v + 1);
        v++;
    }
    return 0;
}

int
store_migrate(struct store *st, struct nerr *err)
{
    return store_migrate_to(st, STORE_SCHEMA_VERSION, err);
}

int
store_open_version(const char *path, int version, struct store **out, struct nerr *err)
{
    struct store *st = xcalloc(1, sizeof(*st));
    int rc, fd;
    st->path = xstrdup(path);
    /* A new database is made 0600 before SQLite sees it (SQLite would use
     * 0644 less the umask): it holds customer data and the installation
     * secret. SQLite creates -wal and -shm with the database's mode. An
     * empty file is a valid empty database. */
    if (strcmp(path, ":memory:") != 0 &&
        (fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600)) >= 0)
        close(fd);
    rc = sqlite3_open_v2(path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        nerr_set(err, path, 0, 0, "cannot open database: %s",
                 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        nerr_hint(err, "check that the directory exists and is writable by nudged");
        store_close(st);
        return -EIO;
    }
    /* Writers from several threads wait for each other instead of failing. */
    sqlite3_busy_timeout(st->db, 10000);
    if (store_exec(st, "PRAGMA journal_mode = WAL") < 0 ||
        store_exec(st, "PRAGMA synchronous = NORMAL") < 0 ||
        store_exec(st, "PRAGMA foreign_keys = ON") < 0 ||
        /* Evaluations walk the customer table many times: map the file,
         * so pages are shared by all connections instead of copied into each
         * one's cache (kept at 8 MiB: a dozen connections exist). */
        store_exec(st, "PRAGMA cache_size = -8192") < 0 ||
        store_exec(st, "PRAGMA mmap_size = 1073741824") < 0 ||
        store_exec(st, "PRAGMA temp_store = MEMORY") < 0) {
        nerr_set(err, path, 0, 0, "cannot configure database: %s", sqlite3_errmsg(st->db));
        store_close(st);
        return -EIO;
    }
    if (store_migrate_to(st, version, err) < 0) {
        store_close(st);
        return -EIO;
    }
    *out = st;
    return 0;
}

int
store_open(const char *path, struct store **out, struct nerr *err)
{
    return store_open_version(path, STORE_SCHEMA_VERSION, out, err);
}

struct store_stmt_cache {
    const char *sql;
    sqlite3_stmt *stmt;
    struct store_stmt_cache *next;
};

int
store_prepare(struct store *st, const char *sql, sqlite3_stmt **out)
{
    struct store_stmt_cache *c;
    int rc;
    for (c = st->cache; c; c = c->next) {
        if (c->sql == sql || !strcmp(c->sql, sql)) {
            *out = c->stmt;
            return SQLITE_OK;
        }
    }
    rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    if (rc != SQLITE_OK)
        return rc;
    c = xcalloc(1, sizeof(*c));
    c->sql = sql;
    c->stmt = *out;
    c->next = st->cache;
    st->cache = c;
    return SQLITE_OK;
}

void
store_done(sqlite3_stmt *s)
{
    if (!s)
        return;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

void
store_close(struct store *st)
{
    if (!st)
        return;
    while (st->cache) {
        struct store_stmt_cache *c = st->cache;
        st->cache = c->next;
        sqlite3_finalize(c->stmt);
        free(c);
    }
    sqlite3_close_v2(st->db);
    free(st->path);
    free(st);
}

int
store_rule_progress_get(struct store *st, const char *rule, ntime_t *out)
{
    sqlite3_stmt *s;
    int r = -ENOENT;
    if (sqlite3_prepare_v2(st->db, "SELECT evaluated_to FROM rule_runs WHERE rule = ?", -1, &s,
                           NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, rule, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
        r = 0;
    }
    sqlite3_finalize(s);
    return r;
}

int
store_rule_progress_set(struct store *st, const char *rule, ntime_t t)
{
    sqlite3_stmt *s;
    int r = 0;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO rule_runs (rule, evaluated_to) VALUES (?, ?)"
                           " ON CONFLICT (rule) DO UPDATE SET evaluated_to = excluded.evaluated_to",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, rule, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, t);
    if (sqlite3_step(s) != SQLITE_DONE)
        r = -EIO;
    sqlite3_finalize(s);
    return r;
}

int
store_meta_get(struct store *st, const char *key, char **out)
{
    sqlite3_stmt *s;
    int r = -ENOENT;
    if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = ?", -1, &s, NULL) !=
        SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(s, 0);
        *out = xstrdup(v ? (const char *)v : "");
        r = 0;
    }
    sqlite3_finalize(s);
    return r;
}

int
store_meta_set(struct store *st, const char *key, const char *value)
{
    sqlite3_stmt *s;
    int r = 0;
    if (sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", -1,
                           &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) != SQLITE_DONE)
        r = -EIO;
    sqlite3_finalize(s);
    return r;
}

int
store_open_readonly(const char *path, struct store **out, struct nerr *err)
{
    struct store *st = xcalloc(1, sizeof(*st));
    char *uri;
    int rc;
    st->path = xstrdup(path);
    /* A URI with mode=ro: SQLite neither creates the file nor writes to it,
     * and nothing here migrates or sets a journal mode. */
    uri = sqlite3_mprintf("file:%s?mode=ro", path);
    rc = sqlite3_open_v2(uri, &st->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    sqlite3_free(uri);
    if (rc != SQLITE_OK) {
        nerr_set(err, path, 0, 0, "cannot open database read-only: %s",
                 st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        store_close(st);
        return -EIO;
    }
    sqlite3_busy_timeout(st->db, 2000);
    *out = st;
    return 0;
}

int
store_attribute_keys(struct store *st, char ***out)
{
    sqlite3_stmt *s;
    char **a = NULL;
    size_t n = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT key FROM attribute_keys ORDER BY key", -1, &s, NULL) !=
        SQLITE_OK) {
        /* An empty or older database (schema < 2) has no attribute names yet. */
        if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM sqlite_master WHERE name ="
                                       " 'attribute_keys'", -1, &s, NULL) == SQLITE_OK) {
            bool has = sqlite3_step(s) == SQLITE_ROW;
            sqlite3_finalize(s);
            if (!has) {
                *out = xcalloc(1, sizeof(**out));
                return 0;
            }
        }
        return -EIO;
    }
    while (sqlite3_step(s) == SQLITE_ROW) {
        a = xrealloc(a, (n + 2) * sizeof(*a));
        a[n++] = xstrdup((const char *)sqlite3_column_text(s, 0));
    }
    sqlite3_finalize(s);
    a = xrealloc(a, (n + 1) * sizeof(*a));
    a[n] = NULL;
    *out = a;
    return 0;
}

int
store_lock(const char *path, int *lock_fd, struct nerr *err)
{
    char *lock = xasprintf("%s.lock", path);
    char pid[32] = "";
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    ssize_t len;
    *lock_fd = -1;
    if (fd < 0) {
        int e = errno;
        nerr_set(err, path, 0, 0, "cannot create the lock file %s: %s", lock, strerror(e));
        nerr_hint(err, "the database's directory must be writable by nudged");
        free(lock);
        return -e;
    }
    /* flock belongs to the open file, not the process: it ends when this
     * descriptor is closed or the process dies (kill -9 included), and the
     * database connections the daemon opens later do not disturb it. */
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            len = pread(fd, pid, sizeof(pid) - 1, 0);
            pid[len > 0 ? len : 0] = '\0';
            pid[strcspn(pid, "\r\n")] = '\0';
            nerr_set(err, path, 0, 0, "the database is in use by another nudged (pid %s)",
                     pid[0] ? pid : "unknown: it is still starting");
            nerr_hint(err, "one daemon owns a database: stop that one first (kill -TERM %s), or "
                           "give this one another `database:`; the lock is %s",
                      pid[0] ? pid : "PID", lock);
        } else {
            nerr_set(err, path, 0, 0, "cannot lock %s: %s", lock, strerror(e));
        }
        close(fd);
        free(lock);
        return e == EWOULDBLOCK ? -EBUSY : -e;
    }
    /* Ours: the file says who holds it, for the next one to tell. */
    snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (fchmod(fd, 0600) < 0 || ftruncate(fd, 0) < 0 ||
        pwrite(fd, pid, strlen(pid), 0) != (ssize_t)strlen(pid))
        log_warn("store", "%s: cannot record our pid: %s", lock, strerror(errno));
    free(lock);
    *lock_fd = fd;
    return 0;
}

void
store_unlock(int lock_fd)
{
    /* The file stays: removing it would let a third daemon lock a new file
     * while a second still waits on the old one. */
    if (lock_fd >= 0)
        close(lock_fd);
}

void
store_warn_if_readable(const char *path)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", NULL};
    for (int i = 0; suffixes[i]; i++) {
        char *p = xasprintf("%s%s", path, suffixes[i]);
        struct stat sb;
        if (stat(p, &sb) == 0 && (sb.st_mode & 077))
            log_warn("store", "%s is readable by %s (mode %04o): it holds customer data and the "
                              "installation secret; fix it with: chmod 600 %s %s-wal %s-shm",
                     p, sb.st_mode & 007 ? "everyone" : "its group",
                     (unsigned)(sb.st_mode & 07777), path, path, path);
        free(p);
    }
}

const char *
store_path(const struct store *st)
{
    return st->path;
}
