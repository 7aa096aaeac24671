/*
 * outbox.c: claims, results, retries and dead letters on the deliveries
 * table. Every transition is one UPDATE guarded by the state it expects and,
 * for a claimed row, by the claim's owner and token (outbox.h), so two
 * dispatchers (or a restarted one) can never both finish a row, and a
 * result for a claim that is no longer current is logged and dropped.
 */
#include "outbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "store_internal.h"

void
delivery_clear(struct delivery *d)
{
    free(d->rule);
    free(d->occurrence);
    free(d->channel);
    memset(d, 0, sizeof(*d));
}

static char *
col_str(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return xstrdup(t ? (const char *)t : "");
}

int64_t
outbox_claim_token(void)
{
    uint64_t t = 0;
    while (!t) {
        if (RAND_bytes((unsigned char *)&t, sizeof(t)) != 1)
            t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&t;
        t &= INT64_MAX;
    }
    return (int64_t)t;
}

/* The rows an update for a claim of `what` changed: 0 means the claim was
 * no longer current (taken back, finished, or never ours), which is logged
 * and otherwise ignored. */
static int
claim_checked(struct store *st, sqlite3_stmt *s, const char *what, const char *owner,
              int64_t token, int64_t id, size_t want)
{
    int rc = sqlite3_step(s), changed;
    store_done(s);
    if (rc != SQLITE_DONE) {
        log_err("outbox", "%s: %s", what, sqlite3_errmsg(st->db));
        return -EIO;
    }
    changed = sqlite3_changes(st->db);
    if (want == 1 && changed == 0)
        log_warn("outbox", "delivery %lld: %s ignored: its claim (owner %s, token %lld) is no"
                           " longer current (the row was taken back or already settled)",
                 (long long)id, what, owner ? owner : "?", (long long)token);
    else if ((size_t)changed < want)
        log_warn("outbox", "%zu of %zu deliveries: %s ignored: their claim (owner %s, token %lld)"
                           " is no longer current (taken back or already settled)",
                 want - (size_t)changed, want, what, owner ? owner : "?", (long long)token);
    return 0;
}

int
outbox_claim(struct store *st, const char *channel, ntime_t now, int64_t lease, size_t max,
             const struct claim *who, struct delivery **out, size_t *n)
{
    /* Each state is taken from the deliveries_claim index in due order, at
     * most `max` each, and merged: no scan of the whole outbox per batch. A
     * row in 'sending' is taken only from another owner whose lease ran
     * out: the running instance's own claims never expire (outbox.h). */
    static const char sql[] =
        "UPDATE deliveries SET state = 'sending', lease_until = ?1, attempts = attempts + 1,"
        " claim_owner = ?5, claim_token = ?6"
        " WHERE id IN (SELECT id FROM ("
        "   SELECT id, t FROM (SELECT id, next_attempt_at AS t FROM deliveries"
        "     WHERE channel = ?2 AND state = 'pending' AND next_attempt_at <= ?3"
        "     ORDER BY next_attempt_at, id LIMIT ?4)"
        "   UNION ALL SELECT id, t FROM (SELECT id, next_attempt_at AS t FROM deliveries"
        "     WHERE channel = ?2 AND state = 'retry' AND next_attempt_at <= ?3"
        "     ORDER BY next_attempt_at, id LIMIT ?4)"
        "   UNION ALL SELECT id, t FROM (SELECT id, next_attempt_at AS t FROM deliveries"
        "     WHERE channel = ?2 AND state = 'sending' AND lease_until <= ?3"
        "     AND claim_owner IS NOT ?5"
        "     ORDER BY next_attempt_at, id LIMIT ?4)"
        "  ) ORDER BY t, id LIMIT ?4)"
        " RETURNING id, rule, customer_id, occurrence, action, channel, attempts, due_at,"
        " created_at, coalesce(snapshot, 0)";
    sqlite3_stmt *s;
    struct delivery *d = NULL;
    size_t k = 0;
    int rc;
    *out = NULL;
    *n = 0;
    if (store_prepare(st, sql, &s) != SQLITE_OK) {
        log_err("outbox", "claim: %s", sqlite3_errmsg(st->db));
        return -EIO;
    }
    sqlite3_bind_int64(s, 1, now + lease);
    sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now);
    sqlite3_bind_int64(s, 4, (int64_t)max);
    sqlite3_bind_text(s, 5, who->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, who->token);
    d = xcalloc(max ? max : 1, sizeof(*d));
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && k < max) {
        d[k].id = sqlite3_column_int64(s, 0);
        d[k].rule = col_str(s, 1);
        d[k].customer_id = sqlite3_column_int64(s, 2);
        d[k].occurrence = col_str(s, 3);
        d[k].action = sqlite3_column_int(s, 4);
        d[k].channel = col_str(s, 5);
        d[k].attempts = sqlite3_column_int(s, 6);
        d[k].due_at = sqlite3_column_int64(s, 7);
        d[k].created_at = sqlite3_column_int64(s, 8);
        d[k].snapshot = sqlite3_column_int64(s, 9);
        d[k].claim_owner = who->owner;
        d[k].claim_token = who->token;
        k++;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        log_err("outbox", "claim: %s", sqlite3_errmsg(st->db));
        store_done(s);
        for (size_t i = 0; i < k; i++)
            delivery_clear(&d[i]);
        free(d);
        return -EIO;
    }
    store_done(s);
    *out = d;
    *n = k;
    return 0;
}

int64_t
outbox_backoff(int attempts, int retry_after)
{
    int64_t base = 60;
    uint32_t r = 0;
    for (int i = 1; i < attempts && base < 6 * 3600; i++)
        base *= 2;
    if (base > 6 * 3600)
        base = 6 * 3600;
    /* Jitter spreads retries from one outage so they do not all return at once. */
    RAND_bytes((unsigned char *)&r, sizeof(r));
    base = base * 8 / 10 + (int64_t)(r % (uint32_t)(base * 4 / 10 + 1));
    if (retry_after > base)
        base = retry_after;
    return base;
}

int
outbox_record(struct store *st, const struct delivery *d, const struct send_result *res,
              ntime_t now, int64_t lifetime, int max_attempts)
{
    sqlite3_stmt *s;
    if (res->status == SEND_OK) {
        if (store_prepare(st, "UPDATE deliveries SET state = 'sent', sent_at = ?, lease_until ="
                               " NULL, last_error = NULL WHERE id = ? AND state = 'sending'"
                               " AND claim_owner = ? AND claim_token = ?", &s) != SQLITE_OK)
            return -EIO;
        sqlite3_bind_int64(s, 1, now);
        sqlite3_bind_int64(s, 2, d->id);
        sqlite3_bind_text(s, 3, d->claim_owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, d->claim_token);
        return claim_checked(st, s, "the sent result", d->claim_owner, d->claim_token, d->id, 1);
    }
    int64_t next = now + outbox_backoff(d->attempts, res->retry_after);
    const char *state = "retry";
    char why[400];
    snprintf(why, sizeof(why), "%s", res->error[0] ? res->error : "failed");
    if (res->status == SEND_PERMANENT) {
        state = "dead";
    } else if (max_attempts > 0 && d->attempts >= max_attempts) {
        state = "dead";
        snprintf(why, sizeof(why), "gave up after %d attempts (max_attempts): %s", d->attempts,
                 res->error[0] ? res->error : "failed");
    } else if (next > d->created_at + lifetime) {
        state = "dead";
        snprintf(why, sizeof(why), "gave up after %d attempts over the %llds lifetime: %s",
                 d->attempts, (long long)lifetime, res->error[0] ? res->error : "failed");
    }
    if (store_prepare(st, "UPDATE deliveries SET state = ?, next_attempt_at = ?, lease_until ="
                           " NULL, last_error = ? WHERE id = ? AND state = 'sending'"
                           " AND claim_owner = ? AND claim_token = ?", &s) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, next);
    sqlite3_bind_text(s, 3, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, d->id);
    sqlite3_bind_text(s, 5, d->claim_owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, d->claim_token);
    return claim_checked(st, s, "the failure", d->claim_owner, d->claim_token, d->id, 1);
}

int
outbox_record_sent(struct store *st, const struct claim *who, const int64_t *ids, size_t n,
                   ntime_t now)
{
    sqlite3_stmt *s;
    struct sbuf json;
    int rc;
    if (!n)
        return 0;
    if (n == 1) {
        struct delivery d = {.id = ids[0], .claim_owner = who->owner, .claim_token = who->token};
        struct send_result ok = {.status = SEND_OK};
        return outbox_record(st, &d, &ok, now, 0, 0);
    }
    if (store_prepare(st, "UPDATE deliveries SET state = 'sent', sent_at = ?1, lease_until = NULL,"
                           " last_error = NULL WHERE id IN (SELECT value FROM json_each(?2))"
                           " AND state = 'sending' AND claim_owner = ?3 AND claim_token = ?4",
                      &s) != SQLITE_OK)
        return -EIO;
    /* The ids as a JSON array: "[1,2,3]". */
    sbuf_init(&json);
    sbuf_addc(&json, '[');
    for (size_t i = 0; i < n; i++)
        sbuf_printf(&json, i ? ",%lld" : "%lld", (long long)ids[i]);
    sbuf_addc(&json, ']');
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_text(s, 2, json.s, (int)json.len, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, who->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, who->token);
    rc = claim_checked(st, s, "the sent results", who->owner, who->token, ids[0], n);
    sbuf_free(&json);
    return rc;
}

int
outbox_finish(struct store *st, const struct delivery *d, const char *state, const char *reason,
              ntime_t now)
{
    sqlite3_stmt *s;
    if (store_prepare(st, "UPDATE deliveries SET state = ?, last_error = ?, lease_until = NULL,"
                           " sent_at = NULL, next_attempt_at = ? WHERE id = ? AND state = 'sending'"
                           " AND claim_owner = ? AND claim_token = ?", &s) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_text(s, 1, state, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, now);
    sqlite3_bind_int64(s, 4, d->id);
    sqlite3_bind_text(s, 5, d->claim_owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, d->claim_token);
    return claim_checked(st, s, "finish", d->claim_owner, d->claim_token, d->id, 1);
}

int
outbox_defer(struct store *st, const struct delivery *d, ntime_t until, const char *why)
{
    sqlite3_stmt *s;
    if (store_prepare(st, "UPDATE deliveries SET state = CASE WHEN attempts > 1 THEN 'retry'"
                           " ELSE 'pending' END, attempts = attempts - 1, lease_until = NULL,"
                           " next_attempt_at = ?, last_error = ?, claim_owner = NULL,"
                           " claim_token = NULL WHERE id = ? AND state = 'sending'"
                           " AND claim_owner = ? AND claim_token = ?", &s) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, until);
    sqlite3_bind_text(s, 2, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, d->id);
    sqlite3_bind_text(s, 4, d->claim_owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, d->claim_token);
    return claim_checked(st, s, "defer", d->claim_owner, d->claim_token, d->id, 1);
}

int
outbox_release(struct store *st, const struct delivery *d)
{
    sqlite3_stmt *s;
    if (store_prepare(st, "UPDATE deliveries SET state = CASE WHEN attempts > 1 THEN 'retry'"
                           " ELSE 'pending' END, attempts = attempts - 1, lease_until = NULL,"
                           " claim_owner = NULL, claim_token = NULL"
                           " WHERE id = ? AND state = 'sending' AND claim_owner = ?"
                           " AND claim_token = ?", &s) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, d->id);
    sqlite3_bind_text(s, 2, d->claim_owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, d->claim_token);
    return claim_checked(st, s, "release", d->claim_owner, d->claim_token, d->id, 1);
}

struct outbox_journal {
    int fd;
    char *path;
    bool clear; /* nothing in the file is still needed */
};

int
outbox_journal_open(struct store *st, int n, struct outbox_journal **out)
{
    struct outbox_journal *j = xcalloc(1, sizeof(*j));
    j->path = xasprintf("%s.sent.%d", st->path, n);
    j->fd = open(j->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        int e = errno;
        log_err("outbox", "cannot create the sent journal %s: %s", j->path, strerror(e));
        free(j->path);
        free(j);
        return -e;
    }
    j->clear = true;
    *out = j;
    return 0;
}

int
outbox_journal_add(struct outbox_journal *j, const struct delivery *d, ntime_t at)
{
    char line[160];
    int len = snprintf(line, sizeof(line), "%s %lld %lld %lld\n",
                       d->claim_owner ? d->claim_owner : "-", (long long)d->claim_token,
                       (long long)d->id, (long long)at);
    if (len <= 0 || (size_t)len >= sizeof(line))
        return -EINVAL;
    j->clear = false;
    if (write(j->fd, line, (size_t)len) != len) {
        log_err("outbox", "cannot append to the sent journal %s: %s", j->path, strerror(errno));
        return -EIO;
    }
    return 0;
}

int
outbox_journal_clear(struct outbox_journal *j)
{
    if (j->clear)
        return 0;
    if (ftruncate(j->fd, 0) < 0) {
        log_err("outbox", "cannot empty the sent journal %s: %s", j->path, strerror(errno));
        return -EIO;
    }
    j->clear = true;
    return 0;
}

void
outbox_journal_close(struct outbox_journal *j)
{
    if (!j)
        return;
    close(j->fd);
    if (j->clear)
        unlink(j->path);
    free(j->path);
    free(j);
}

/* Records one journal line's message as sent, if its row is still in
 * 'sending' under the claim the line names. */
static int
replay_line(struct store *st, const char *line, int64_t *applied)
{
    char owner[64];
    long long token, id, at;
    sqlite3_stmt *s;
    int rc;
    /* A line cut short by a crash does not parse and is skipped: its
     * message was in flight. */
    if (sscanf(line, "%63s %lld %lld %lld", owner, &token, &id, &at) != 4)
        return 0;
    /* Its timeline entry, then the row (both only under the line's claim). */
    static const char *const sql[] = {
        "INSERT INTO timeline (customer_id, at, kind, detail)"
        " SELECT customer_id, ?1, 'sent', channel || ' ' || rule || ' (' || occurrence || ')'"
        " FROM deliveries WHERE id = ?2 AND state = 'sending' AND claim_owner = ?3"
        " AND claim_token = ?4",
        "UPDATE deliveries SET state = 'sent', sent_at = ?1, lease_until = NULL,"
        " last_error = NULL WHERE id = ?2 AND state = 'sending' AND claim_owner = ?3"
        " AND claim_token = ?4",
    };
    for (size_t i = 0; i < 2; i++) {
        if (store_prepare(st, sql[i], &s) != SQLITE_OK)
            return -EIO;
        sqlite3_bind_int64(s, 1, at);
        sqlite3_bind_int64(s, 2, id);
        sqlite3_bind_text(s, 3, owner, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 4, token);
        rc = sqlite3_step(s);
        store_done(s);
        if (rc != SQLITE_DONE)
            return -EIO;
    }
    *applied += sqlite3_changes(st->db);
    return 0;
}

/* The sent journals beside the database (<path>.sent.<n>), replayed into
 * the caller's transaction; their paths go to *files (strv). */
static int
replay_journals(struct store *st, int64_t *applied, char ***files)
{
    char *dir = xstrdup(st->path), *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : st->path;
    char *prefix = xasprintf("%s.sent.", base);
    size_t plen = strlen(prefix), nf = 0;
    struct dirent *e;
    DIR *dh;
    int rc = 0;
    if (slash)
        *slash = '\0';
    dh = opendir(slash ? (dir[0] ? dir : "/") : ".");
    *files = xcalloc(1, sizeof(char *));
    if (!dh) {
        free(dir);
        free(prefix);
        return 0;
    }
    while (rc == 0 && (e = readdir(dh))) {
        char *path, line[256];
        FILE *f;
        if (strncmp(e->d_name, prefix, plen) || !e->d_name[plen])
            continue;
        path = slash ? xasprintf("%s/%s", dir[0] ? dir : "", e->d_name) : xstrdup(e->d_name);
        if (!(f = fopen(path, "re"))) {
            log_warn("outbox", "cannot read the sent journal %s: %s", path, strerror(errno));
            free(path);
            continue;
        }
        while (rc == 0 && fgets(line, sizeof(line), f))
            if (strchr(line, '\n'))
                rc = replay_line(st, line, applied);
        fclose(f);
        *files = xrealloc(*files, (nf + 2) * sizeof(char *));
        (*files)[nf++] = path;
        (*files)[nf] = NULL;
    }
    closedir(dh);
    free(dir);
    free(prefix);
    return rc;
}

int
outbox_take_back(struct store *st, ntime_t now, int64_t *count)
{
    sqlite3_stmt *s;
    int64_t applied = 0;
    char **files = NULL;
    int rc;
    *count = 0;
    if (store_begin(st) < 0)
        return -EIO;
    if (replay_journals(st, &applied, &files) < 0) {
        log_err("outbox", "take back: replaying the sent journals: %s", sqlite3_errmsg(st->db));
        goto fail;
    }
    /* The rows in 'sending' are found channel by channel through
     * deliveries_claim (as in outbox_unsettled), not by reading the
     * outbox. Their attempt ended with the process that made it: it is
     * not counted, and the row is due at once (a frozen clock included). */
    if (sqlite3_prepare_v2(st->db,
                           "UPDATE deliveries SET state = CASE WHEN attempts > 1 THEN 'retry'"
                           " ELSE 'pending' END, attempts = max(attempts - 1, 0),"
                           " lease_until = NULL, next_attempt_at = min(next_attempt_at, ?1),"
                           " claim_owner = NULL, claim_token = NULL"
                           " WHERE id IN (WITH RECURSIVE ch(c) AS (SELECT min(channel) FROM"
                           "   deliveries UNION ALL SELECT (SELECT min(channel) FROM deliveries"
                           "   WHERE channel > ch.c) FROM ch WHERE ch.c IS NOT NULL)"
                           "   SELECT d.id FROM ch, deliveries d"
                           "   WHERE d.channel = ch.c AND d.state = 'sending')",
                           -1, &s, NULL) != SQLITE_OK) {
        log_err("outbox", "take back: %s", sqlite3_errmsg(st->db));
        goto fail;
    }
    sqlite3_bind_int64(s, 1, now);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        log_err("outbox", "take back: %s", sqlite3_errmsg(st->db));
        goto fail;
    }
    *count = sqlite3_changes(st->db);
    if (store_commit(st) < 0)
        goto fail;
    /* Committed: the journals are spent. */
    for (size_t i = 0; files[i]; i++)
        unlink(files[i]);
    strv_free(files);
    if (applied)
        log_notice("outbox", "recorded %lld deliver%s as sent from the sent journals of a"
                             " previous instance (accepted before it stopped)",
                   (long long)applied, applied == 1 ? "y" : "ies");
    return 0;
fail:
    store_rollback(st);
    strv_free(files);
    *count = 0;
    return -EIO;
}

json_t *
outbox_counts(struct store *st)
{
    static const char *const states[] = {"pending", "sending", "retry",   "sent",
                                         "dead",    "suppressed", "skipped", NULL};
    json_t *o = json_object();
    sqlite3_stmt *s;
    for (int i = 0; states[i]; i++)
        json_object_set_new(o, states[i], json_integer(0));
    /* Grouped by channel first, in deliveries_claim's order (channel, state,
     * ...): no sort of the whole outbox into a temporary tree. */
    if (sqlite3_prepare_v2(st->db,
                           "SELECT state, sum(n) FROM (SELECT channel, state, count(*) n FROM"
                           " deliveries GROUP BY channel, state) GROUP BY state",
                           -1, &s, NULL) != SQLITE_OK)
        return o;
    while (sqlite3_step(s) == SQLITE_ROW)
        json_object_set_new(o, (const char *)sqlite3_column_text(s, 0),
                            json_integer(sqlite3_column_int64(s, 1)));
    sqlite3_finalize(s);
    return o;
}

json_t *
outbox_list(struct store *st, const char *state, size_t limit)
{
    json_t *a = json_array();
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT d.id, d.rule, c.ext_id, d.occurrence, d.channel, d.state,"
                           " d.attempts, d.due_at, d.next_attempt_at, d.sent_at, d.last_error"
                           " FROM deliveries d LEFT JOIN customers c ON c.id = d.customer_id"
                           " WHERE ?1 IS NULL OR d.state = ?1 ORDER BY d.id LIMIT ?2",
                           -1, &s, NULL) != SQLITE_OK)
        return a;
    if (state)
        sqlite3_bind_text(s, 1, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (int64_t)limit);
    while (sqlite3_step(s) == SQLITE_ROW) {
        json_t *r = json_object();
        char t[32];
        json_object_set_new(r, "id", json_integer(sqlite3_column_int64(s, 0)));
        json_object_set_new(r, "rule", json_string((const char *)sqlite3_column_text(s, 1)));
        json_object_set_new(r, "customer",
                            sqlite3_column_type(s, 2) == SQLITE_NULL
                                ? json_null()
                                : json_string((const char *)sqlite3_column_text(s, 2)));
        json_object_set_new(r, "occurrence",
                            json_string((const char *)sqlite3_column_text(s, 3)));
        json_object_set_new(r, "channel", json_string((const char *)sqlite3_column_text(s, 4)));
        json_object_set_new(r, "state", json_string((const char *)sqlite3_column_text(s, 5)));
        json_object_set_new(r, "attempts", json_integer(sqlite3_column_int(s, 6)));
        time_format_iso(sqlite3_column_int64(s, 7), t, sizeof(t));
        json_object_set_new(r, "due_at", json_string(t));
        time_format_iso(sqlite3_column_int64(s, 8), t, sizeof(t));
        json_object_set_new(r, "next_attempt_at", json_string(t));
        if (sqlite3_column_type(s, 9) != SQLITE_NULL) {
            time_format_iso(sqlite3_column_int64(s, 9), t, sizeof(t));
            json_object_set_new(r, "sent_at", json_string(t));
        }
        if (sqlite3_column_type(s, 10) != SQLITE_NULL)
            json_object_set_new(r, "last_error",
                                json_string((const char *)sqlite3_column_text(s, 10)));
        json_array_append_new(a, r);
    }
    sqlite3_finalize(s);
    return a;
}

int
outbox_retry(struct store *st, int64_t id, ntime_t now)
{
    sqlite3_stmt *s;
    int rc;
    /* A manual retry gets a fresh lifetime: created_at moves to now. One row
     * is found by its id (an OR with the retry-all case would scan the
     * outbox for it). */
    if (sqlite3_prepare_v2(st->db,
                           id < 0 ? "UPDATE deliveries SET state = 'retry', next_attempt_at = ?1,"
                                    " created_at = ?1, attempts = 0 WHERE state = 'dead'"
                                  : "UPDATE deliveries SET state = 'retry', next_attempt_at = ?1,"
                                    " created_at = ?1, attempts = 0"
                                    " WHERE id = ?2 AND state IN ('dead', 'retry')",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, now);
    if (id >= 0)
        sqlite3_bind_int64(s, 2, id);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return -EIO;
    return sqlite3_changes(st->db);
}

int
outbox_unsettled(struct store *st, ntime_t now, int64_t *count)
{
    sqlite3_stmt *s;
    /* One seek of deliveries_claim per channel and state: the channels
     * present are found by skipping through the index (a few seeks), not by
     * reading it, so a large outbox of sent rows costs nothing here. */
    if (sqlite3_prepare_v2(st->db,
                           "WITH RECURSIVE ch(c) AS (SELECT min(channel) FROM deliveries"
                           "   UNION ALL SELECT (SELECT min(channel) FROM deliveries"
                           "   WHERE channel > ch.c) FROM ch WHERE ch.c IS NOT NULL),"
                           " st(s) AS (VALUES ('sending'), ('pending'), ('retry'))"
                           " SELECT count(*) FROM ch, st, deliveries d"
                           " WHERE d.channel = ch.c AND d.state = st.s"
                           " AND (st.s = 'sending' OR d.next_attempt_at <= ?)",
                           -1, &s, NULL) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, now);
    *count = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return 0;
}

int
outbox_retry_channel(struct store *st, const char *channel, ntime_t now)
{
    sqlite3_stmt *s;
    int rc;
    if (store_prepare(st, "UPDATE deliveries SET next_attempt_at = ?1 WHERE channel = ?2"
                           " AND state = 'retry' AND next_attempt_at > ?1", &s) != SQLITE_OK)
        return -EIO;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_text(s, 2, channel, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        log_err("outbox", "retry channel %s: %s", channel, sqlite3_errmsg(st->db));
        return -EIO;
    }
    return sqlite3_changes(st->db);
}
