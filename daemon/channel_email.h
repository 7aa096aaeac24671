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
 * Results: 2xx -> SEND_OK; 4xx -> SEND_TRANSIENT; 5xx to MAIL, RCPT or the
 * message -> SEND_PERMANENT; an AUTH failure (535) -> SEND_PERMANENT with
 * code 535 (the operator must fix the credentials; callers should not feed
 * it to the recipient's suppression list). Failures before the transaction
 * starts (connection refused, timeout, greeting/EHLO errors, STARTTLS missing
 * when required, an untrusted certificate) say nothing about the recipient
 * and are SEND_TRANSIENT, whatever the reply code, so a misconfigured or
 * impostor server never dead-letters customers. A connection lost after the
 * message was sent but before the final reply is SEND_TRANSIENT too: the
 * retry may duplicate, and the stable Message-ID lets the receiver drop it.
 */
#ifndef NUDGE_CHANNEL_EMAIL_H
#define NUDGE_CHANNEL_EMAIL_H

#include "nudge/channel.h"

extern const struct channel_backend channel_backend_smtp;

#endif
