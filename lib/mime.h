/*
 * mime.h: turns a rendered struct nudge_message into a complete RFC 5322
 * message (GMime formats every header value, with RFC 2047 where needed, and
 * encodes the parts; 7bit messages are assembled from those values directly,
 * see mime.c).
 *
 * Line endings: the composed message always uses CRLF. That is the canonical
 * form of RFC 5322 and what SMTP puts on the wire; libESMTP recognises a line
 * only by CRLF (a message with bare LF would reach it as one endless "line"),
 * and mail clients open .eml files with CRLF as readily as with LF. So the
 * spool backend and the SMTP backend share one byte-identical form: what the
 * spool writes is exactly what SMTP would have sent.
 *
 * Composition is deterministic: the same message, From, domain and date give
 * the same bytes (the MIME boundary is derived from the idempotency key), so a
 * retried delivery carries the same Message-ID and the same body.
 */
#ifndef NUDGE_MIME_H
#define NUDGE_MIME_H

#include <stdbool.h>
#include <stddef.h>

#include "nudge/channel.h"
#include "util.h"

/*
 * Composes the message m (channel "email") with the given From
 * ("Shop 商店 <shop@example.com>" or a bare address) into out (set up with
 * sbuf_init; reset first, left empty on error).
 *
 * The Message-ID is <nudge-{delivery_id}-{hash}@domain>, where hash is the
 * first 12 hex digits of SHA-256(idempotency_key) and domain is
 * message_id_domain, or the From address's domain when that is NULL. The Date
 * header is `date` (an injected clock, never the wall clock).
 *
 * Headers: From, To, Subject (RFC 2047 UTF-8 where needed), Date, Message-Id,
 * MIME-Version, Auto-Submitted: auto-generated (RFC 3834), X-Nudge-Rule,
 * X-Nudge-Delivery; marketing mail adds Precedence: bulk and, with an
 * unsubscribe_url, List-Unsubscribe and List-Unsubscribe-Post (RFC 8058).
 * Body: multipart/alternative (text/plain + text/html, charset=utf-8) or a
 * single text/plain (or text/html) part; transfer encodings are chosen by
 * GMime under a 7-bit constraint, so no 8BITMIME is ever needed.
 *
 * Line breaks in the subject and display names are folded to spaces; a bad
 * address, URL or domain is refused with -EINVAL and a message in err.
 */
int mime_compose_email(const struct nudge_message *m, const char *from,
                       const char *message_id_domain, ntime_t date, struct sbuf *out,
                       struct nerr *err);

/*
 * The same message composed from scratch and written by GMime's own writer
 * (g_mime_object_write_to_stream), with none of mime_compose_email's reuse
 * of the last message or its direct writer: the reference the unit tests
 * hold mime_compose_email to, byte for byte.
 */
int mime_compose_email_gmime(const struct nudge_message *m, const char *from,
                             const char *message_id_domain, ntime_t date, struct sbuf *out,
                             struct nerr *err);

/* The Message-ID compose uses, without angle brackets, into out (set up with
 * sbuf_init, reset first). -EINVAL for a bad domain. */
int mime_message_id(const struct nudge_message *m, const char *domain, struct sbuf *out);

/*
 * Splits "Display Name <addr>", "\"Quoted, Name\" <addr>" or a bare "addr"
 * into a malloc'd name (NULL when there is none) and addr. -EINVAL when the
 * address is not a plain ASCII addr-spec (see mime_addr_valid).
 */
int mime_parse_mailbox(const char *spec, char **name, char **addr);

/*
 * True for an ASCII addr-spec local@domain that is safe to put in a header
 * and an SMTP envelope: no whitespace or control characters, no quoting, a
 * domain of letters, digits, '-' and '.'. Internationalised addresses
 * (SMTPUTF8) are not supported.
 */
bool mime_addr_valid(const char *addr);

#endif
