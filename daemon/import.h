/*
 * import.h: CSV import of customers and orders into the store.
 *
 * Both imports are idempotent upserts keyed on the business's own ids
 * (customers.ext_id, orders.ext_id), run in ONE transaction: either every row
 * of a file is applied or, when any row is bad, nothing is. Importing the same
 * file twice leaves the database byte for byte as it was after the first time:
 * a row whose values did not change is not written at all, so its updated_at
 * stays put and the wall clock never leaks into a no-op re-import.
 *
 * Customers CSV (header row required, names trimmed and lower-cased):
 *   id            required, the business's id; unique within the file
 *   name, first_name, tier, owner
 *                 text; an empty cell stores NULL
 *   email         trimmed, domain part lower-cased; must look like local@domain.tld
 *   phone         digits with an optional leading '+'; spaces, dashes, dots and
 *                 parentheses are dropped; letters are an error
 *   birthday      YYYY-MM-DD or --MM-DD (no year); impossible dates are errors
 *   tz            an IANA zone name; empty = the configured default (NULL)
 *   tags          ';'-separated; replaces the customer's whole tag set
 *   consent_CHANNEL  yes/no/true/false/1/0/y/n; empty leaves the consent alone.
 *                 An import never re-grants a consent that was withdrawn some
 *                 other way (unsubscribe link, admin: consents.source not
 *                 "import:..."); that cell is skipped with a warning.
 *   created_at    YYYY-MM-DD or RFC 3339; empty keeps the stored value (a new
 *                 customer gets the import time)
 *   anything else a custom attribute in customers.attrs (a JSON object) and
 *                 attribute_keys; canonical integers and decimals are stored as
 *                 JSON numbers so audiences can compare them, the rest as
 *                 strings; an empty cell removes the attribute.
 * A column that is absent from the file leaves that field of existing
 * customers untouched, so a file with just "id,tier" re-tiers customers.
 * Columns named updated_at or attrs are ignored with a warning, and so is a
 * column with no name; a misspelt or foreign name of a known column
 * ("emial", "timezone") is a warning with a suggestion, since it would
 * otherwise quietly become an attribute. Dates and times are stored as
 * written (after checking), so their local date is what the file said.
 *
 * Orders CSV: customer_id (must already exist), order_id (unique within the
 * file; re-importing an order updates it), amount (decimal, at most two
 * fractional digits, negative for refunds), currency (3 letters, upper-cased,
 * default empty), ordered_at (YYYY-MM-DD or RFC 3339). customer_stats is
 * recomputed for every customer whose orders changed (the same aggregation
 * as the schema migration: refunds count as orders and reduce the total),
 * and each new order adds a timeline row (kind 'order', at = the order's
 * instant, detail = {"amount_cents","currency","order_id"}) that follows the
 * order when a later file corrects it, all in the same transaction.
 *
 * Both: a UTF-8 BOM is skipped, CRLF, LF and CR line ends are accepted, blank
 * lines and rows of only empty cells are skipped, and every row must have as
 * many fields as the header.
 *
 * Messages: one per line, "NAME:LINE: what is wrong (how to fix)" for errors
 * and "NAME:LINE: warning: ..." for warnings, LINE being the physical line on
 * which the record starts (a quoted field may span lines). At most 100 are
 * listed, then a last line "... and N more".
 */
#ifndef NUDGE_IMPORT_H
#define NUDGE_IMPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct store;

struct import_stats {
    long rows;      /* data records read (the header and blank lines not counted) */
    long inserted;  /* new customers / orders (0 when the import was rolled back) */
    long updated;   /* existing ones that changed */
    long unchanged; /* existing ones identical to the file: nothing written */
    long warnings;
};

/* Called every 1000 rows and once at the end, from the importing thread. */
typedef void (*import_progress_fn)(void *ud, long rows_done, size_t bytes_done, size_t bytes_total);

/*
 * Streaming: import_begin() opens the transaction, import_feed() takes the
 * file in pieces of any size (cut anywhere, even inside a line or a UTF-8
 * sequence; each byte is scanned once), import_end() gives the verdict and
 * commits or rolls back, fills stats and *errors like import_customers()
 * and frees imp. abort = the sender went away before the end of the file:
 * roll back. Memory stays bounded by the longest line, the SQLite page cache
 * and 4 bytes per row of the target table (to tell "already on line N").
 *
 * The customers import ends with a warning counting the customers that are
 * left without a zone of their own: "N customers have no tz; they use
 * DEFAULT_TZ", when opts->default_tz is set.
 */
enum import_kind { IMPORT_CUSTOMERS, IMPORT_ORDERS };

struct import_opts {
    const char *default_tz; /* the configured zone, named in the no-tz warning */
    size_t total;           /* the file's size if known (progress), else 0 */
    import_progress_fn progress;
    void *ud;
};

struct import;
struct import *import_begin(struct store *st, enum import_kind kind, const char *name,
                            const struct import_opts *opts);
/* 0, or a negative errno once the import cannot go on (the database failed):
 * feeding more is useless; import_end() reports why. */
int import_feed(struct import *imp, const char *data, size_t len);
int import_end(struct import *imp, bool abort, struct import_stats *stats, char **errors);

/*
 * Parses data[0..len) (a whole CSV file; a UTF-8 BOM is skipped) and upserts
 * it in one transaction. name is the file name used in messages. stats,
 * errors and progress may be NULL. *errors receives a malloc'd string of
 * messages, or NULL when there is nothing to say.
 * Returns 0 (warnings allowed), -EINVAL when any row or the header was bad
 * (nothing written), or -EIO when the database failed (nothing written).
 */
int import_customers(struct store *st, const char *name, const char *data, size_t len,
                     struct import_stats *stats, char **errors, import_progress_fn progress,
                     void *ud);
int import_orders(struct store *st, const char *name, const char *data, size_t len,
                  struct import_stats *stats, char **errors, import_progress_fn progress, void *ud);

/*
 * The clock used for updated_at, consents.updated_at and a new customer's
 * default created_at. Defaults to the wall clock; the daemon points it at its
 * injectable clock (--now, frozen) and tests at a fixed instant. NULL restores
 * the wall clock.
 */
void import_set_clock(ntime_t (*now)(void *ud), void *ud);

#endif
