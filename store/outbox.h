/*
 * outbox.h: the deliveries table as a queue with leases.
 *
 * A delivery moves pending -> sending (claimed with a lease) -> sent, or
 * retry (exponential backoff with jitter) until its lifetime runs out, then
 * dead with its last error. suppressed and skipped are final states for
 * messages policy or data kept from being sent.
 *
 * Claims are owned: each names the daemon instance that made it (an id made
 * at start) and the batch (a token per claim), and every later update of the
 * row (result, release, defer, finish) matches both in its WHERE clause. An
 * update whose claim is no longer current is logged and ignored. One daemon
 * owns a database (store_lock), so rows a previous instance left in
 * 'sending' are taken back at start (outbox_take_back); the running
 * instance's own claims never expire, whatever a batch takes, and the lease
 * only bounds a claim whose owner is not the running instance.
 */
#ifndef NUDGE_OUTBOX_H
#define NUDGE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include <nudge/channel.h>

#include "store.h"

struct delivery {
    int64_t id;
    char *rule;
    int64_t customer_id;
    char *occurrence;
    int action;
    char *channel;
    int attempts; /* including the current one */
    ntime_t due_at;
    ntime_t created_at;
    int64_t snapshot; /* rule_snapshots.id the row is sent from; 0: none (before schema 7) */
    const char *claim_owner; /* the claim's owner (not owned: the claimer's string) */
    int64_t claim_token;     /* and its token */
};

/* Who makes a claim: the daemon instance and this batch's token. */
struct claim {
    const char *owner;
    int64_t token;
};

/* A fresh random claim token (never 0). */
int64_t outbox_claim_token(void);

void delivery_clear(struct delivery *d);

/* Claims up to max due rows of channel for `who` (pending, retry, or
 * sending with an expired lease and another owner); *out is malloc'd and
 * each row carries who's owner and token. */
int outbox_claim(struct store *st, const char *channel, ntime_t now, int64_t lease, size_t max,
                 const struct claim *who, struct delivery **out, size_t *n);

/* Records the result of one attempt. Retries stop (dead, with the last error)
 * once the next try would fall after created_at + lifetime, or after
 * max_attempts attempts when max_attempts > 0. */
int outbox_record(struct store *st, const struct delivery *d, const struct send_result *res,
                  ntime_t now, int64_t lifetime, int max_attempts);
/* Records n successful sends of one claim at once (the same rows and
 * states as outbox_record with SEND_OK for each): one statement for a batch. */
int outbox_record_sent(struct store *st, const struct claim *who, const int64_t *ids, size_t n,
                       ntime_t now);
/* Final states that are not send results. state: "suppressed", "skipped" or "dead". */
int outbox_finish(struct store *st, const struct delivery *d, const char *state,
                  const char *reason, ntime_t now);
/* Holds a claimed row until `until` without counting an attempt (quiet hours). */
int outbox_defer(struct store *st, const struct delivery *d, ntime_t until, const char *why);
/* Hands a claimed row back untouched (shutdown). */
int outbox_release(struct store *st, const struct delivery *d);
/* Start-up, with the database's lock held: the rows a previous instance
 * left in 'sending' that its sent journals name (same claim) are recorded
 * sent, with their timeline entries, and the journals removed; every other
 * row left in 'sending' is made due at `now`, its unfinished attempt not
 * counted. *count: how many were made due. */
int outbox_take_back(struct store *st, ntime_t now, int64_t *count);

/*
 * The sent journal: a session's record of the messages its peer accepted,
 * one line appended (write(2), no fsync) per message before the session
 * sends the next one, so a crash repeats at most the message in flight on
 * each session. It is what makes per-message results cheap: the rows
 * themselves are updated with the rest of the batch in one transaction
 * (outbox_record_sent), after which the journal is emptied. Lines survive
 * a crash of the process like the database's own commits do
 * (synchronous=NORMAL: a power loss may lose the last ones of both).
 * Files: <database>.sent.<n>, mode 0600, one per session; outbox_take_back
 * replays and removes every one of them at start.
 */
struct outbox_journal;
/* Opens (empty) the journal file number n of the database st. */
int outbox_journal_open(struct store *st, int n, struct outbox_journal **out);
/* Appends "delivery d, claimed by d's claim, was accepted at `at`". */
int outbox_journal_add(struct outbox_journal *j, const struct delivery *d, ntime_t at);
/* Forgets what was appended: the batch's results are committed. */
int outbox_journal_clear(struct outbox_journal *j);
/* Closes; removes the file when it holds nothing that is still needed. */
void outbox_journal_close(struct outbox_journal *j);

/* Every result above returns 0 also when the row's claim is no longer the
 * caller's (the row was taken back or finished): that is logged and the
 * row left as it is. */

/* The delay before attempt n+1 after n failures: 1 min doubling to 6 h, +-20 % jitter. */
int64_t outbox_backoff(int attempts, int retry_after);

/* Admin: counts by state as a JSON object; a listing; retries. */
json_t *outbox_counts(struct store *st);
json_t *outbox_list(struct store *st, const char *state, size_t limit);
/* Makes a dead (or retrying) delivery due now; id < 0: every dead one. Returns how many. */
int outbox_retry(struct store *st, int64_t id, ntime_t now);
/* Makes every retrying delivery of channel due now (a paused channel
 * resumed by the operator). Returns how many, or -EIO. */
int outbox_retry_channel(struct store *st, const char *channel, ntime_t now);
/* Rows still to be settled at or before `now` (pending/retry due, sending). */
int outbox_unsettled(struct store *st, ntime_t now, int64_t *count);

#endif
