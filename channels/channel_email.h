/*
 * channel_email.h: the `smtp` transport backend for the email channel
 * (libESMTP, one SMTP session per send() call carrying the whole batch).
 *
 * Settings (the channel's mapping in nudge.yaml, e.g. channels.email):
 *   transport          "smtp" (read by the registry, accepted here)
 *   concurrency        read by the dispatcher, accepted here
 *   host               server name or IPv4 address (default 127.0.0.1);
 *                      IPv6 literals are not supported by libESMTP
 *   port               1-65535 (default 25)
 *   starttls           no | optional | required (default optional; YAML
 *                      booleans false/true mean no/required). optional is
 *                      opportunistic: TLS when offered, unverified unless
 *                      tls_verify or tls_ca_file says otherwise, and plain
 *                      text when not offered (a failed handshake is not
 *                      retried in clear: libESMTP ends the session)
 *   username           AUTH user; with password or password_file
 *   password           AUTH password, inline
 *   password_file      file whose first line is the password (keeps the
 *                      secret out of nudge.yaml)
 *   auth               the three keys above may also sit in an `auth` mapping
 *   from               "Display Name <addr>" (required); addr is also MAIL FROM
 *   helo               name for EHLO (default: the host's uname)
 *   timeout            seconds for each protocol step (default 60)
 *   tls_ca_file        PEM file of trusted CAs (default: the system store)
 *   tls_verify         check the certificate chain and that it names host
 *                      (default: true with starttls: required or a
 *                      tls_ca_file, else false); false is for tests
 *   (TLS is capped at 1.2: see make_ssl_ctx in channel_email.c)
 *   message_id_domain  right-hand side of Message-IDs (default: from's domain)
 *
 * Results and who is to blame (struct send_result.blame, see smtp_blame):
 *   2xx                                     SEND_OK
 *   any 4xx, connection refused, timeout, a connection lost mid-session
 *                                           transient, nobody
 *   AUTH refused (535, any 5xx), MAIL FROM refused with 5xx, STARTTLS
 *   required but not offered, the server's certificate refused, a 5xx
 *   greeting/EHLO, RCPT or DATA refused for a policy reason (enhanced
 *   code 5.7.x: relaying denied, DMARC, authentication required)
 *                                           transient, sender: retried
 *                                           with backoff, the channel
 *                                           pauses, nobody suppressed
 *   RCPT 5xx with enhanced code 5.1.x or 5.2.x, or without one (550, 551,
 *   553); 5xx to the message (after DATA) for its one recipient except
 *   5.7.x, 5.3.x and 5.6.x
 *                                           permanent, recipient
 *   other 5xx (e.g. 552 5.3.4 message too big, 554 5.6.0 content), a
 *   message that cannot be composed        permanent, nobody
 * A connection lost after the message was sent but before the final reply
 * is transient: the retry may duplicate, and the stable Message-ID lets the
 * receiver drop it.
 */
#ifndef NUDGE_CHANNEL_EMAIL_H
#define NUDGE_CHANNEL_EMAIL_H

#include "nudge/channel.h"

extern const struct channel_backend channel_backend_smtp;

/* Where in an SMTP session a reply came. */
enum smtp_stage {
    SMTP_STAGE_SESSION, /* greeting, EHLO, STARTTLS: before any transaction */
    SMTP_STAGE_AUTH,    /* the final reply to AUTH */
    SMTP_STAGE_MAIL,    /* MAIL FROM */
    SMTP_STAGE_RCPT,    /* RCPT TO of the message's one recipient */
    SMTP_STAGE_DATA,    /* the reply after the message data */
};

/* Who is to blame for a failing reply `code` at `stage`, with the RFC 3463
 * enhanced status code's class and subject (0, 0 when the reply had none):
 * the table above. A 2xx/3xx reply blames nobody. */
enum send_blame smtp_blame(enum smtp_stage stage, int code, int enh_class, int enh_subject);

/* Reads an enhanced status code "X.Y.Z" at the start of a reply's text
 * (after the 3-digit code, if present) into *cls and *subject; both 0 when
 * there is none. */
void smtp_enhanced_code(const char *text, int *cls, int *subject);

#endif
