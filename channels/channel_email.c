/*
 * channel_email.c: the `smtp` transport backend: validates the email
 * channel's settings, composes each message with mime.c, and submits a whole
 * batch over one libESMTP session (one connection, one TLS handshake, one
 * AUTH, then MAIL/RCPT/DATA per message), reading back a result per message.
 *
 * libESMTP details this file relies on (read in its sources, confirmed on
 * Debian's 1.1.0 by the tests):
 * - It recognises message lines only by CRLF; mime.c produces CRLF, and
 *   libESMTP dot-stuffs on its own. Headers we supply (Date, Message-Id,
 *   From, To) pass through untouched; it adds only the ones missing.
 * - It checks the server certificate itself after the handshake
 *   (SSL_get_verify_result, then the host name against DNS subjectAltNames
 *   only) and asks the event callback whether to go on; we answer there, and
 *   add the IP-address SAN check libESMTP lacks. Our SSL_CTX therefore runs
 *   with SSL_VERIFY_NONE so that the decision and its reason stay ours.
 * - smtp_starttls_set_ctx takes its own reference on our SSL_CTX.
 * - It stalls when a TLS 1.3 server's post-handshake session tickets arrive
 *   before EHLO is flushed, so TLS is capped at 1.2 (see make_ssl_ctx).
 * - After a failed AUTH it tries the next mechanism and then carries on to
 *   MAIL FROM unauthenticated; the protocol monitor callback is how we learn
 *   the AUTH reply (535) that explains the 530 which usually follows.
 * - It writes to the socket without MSG_NOSIGNAL, so SIGPIPE is blocked in
 *   the calling thread for the session and any pending one is consumed.
 * - connect() has no timeout of its own (the kernel's SYN retries apply);
 *   `timeout` covers every protocol step after that.
 * - Messages of a session go one after the other: after the final "." it
 *   waits for the reply, raises SMTP_EV_MESSAGESENT (also when DATA itself
 *   is refused, e.g. no valid recipient), and only then starts the next
 *   MAIL FROM; a refused MAIL FROM raises SMTP_EV_MAILSTATUS and skips the
 *   message. Those two events are where a message's outcome is reported
 *   (send_result_report): the dispatcher commits it before the callback
 *   returns, so a crash repeats at most the one message in flight per
 *   session.
 */
#include "channel_email.h"

#include <auth-client.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* libesmtp.h declares smtp_starttls_set_ctx only after <openssl/ssl.h>. */
#include <libesmtp.h>

#include "log.h"
#include "mime.h"
#include "util.h"
#include "ynode.h"

#define SMTP_DEFAULT_HOST "127.0.0.1"
#define SMTP_DEFAULT_PORT 25
#define SMTP_DEFAULT_TIMEOUT 60
/* Messages per session (one connection, EHLO to QUIT): enough to amortise
 * the handshake and the batch's claim and results (200 sends ~20 % faster
 * than 50 in contrib/bench/email.sh), few enough that a dropped connection
 * does not put a large batch back in the queue. */
#define SMTP_BATCH_MAX 200

/* The channels smtp carries; the first is open()'s default. */
static const char *const smtp_channels[] = {"email", NULL};

/* One configured SMTP transport; read-only once open() returns. */
struct smtp_state {
    char *channel;                 /* channel name ("email"), for messages */
    char *host;                    /* server host name or IPv4 address */
    char *hostport;                /* "host:port", as smtp_set_server wants it */
    enum starttls_option starttls; /* Starttls_DISABLED/ENABLED/REQUIRED */
    bool tls_verify;               /* refuse an untrusted or mismatched certificate */
    SSL_CTX *ssl_ctx;              /* trust store for STARTTLS; NULL when disabled */
    char *username;                /* AUTH user, NULL for no AUTH */
    char *password;                /* AUTH password, NULL for no AUTH */
    char *from;                    /* From header as configured */
    char *envelope_from;           /* the From address, used as MAIL FROM */
    char *helo;                    /* EHLO name, NULL for libESMTP's uname default */
    char *msgid_domain;            /* Message-ID domain, NULL for the From domain */
    long timeout_ms;               /* per protocol step */
};

/* What one session learned beyond libESMTP's per-message status. */
struct smtp_run {
    const struct smtp_state *st; /* the transport being used */
    char tls_error[160];         /* why the TLS session was refused, if it was */
    bool starttls_missing;       /* required STARTTLS was not offered */
    bool in_auth;                /* an AUTH exchange is awaiting its final reply */
    int auth_code;               /* final failing AUTH reply code, 0 if none */
    char auth_text[160];         /* its text */
    bool mail_sent;              /* a MAIL FROM went out: the transactions began */
    int early_code;              /* last failing (4xx/5xx) reply before that, or 0 */
    char early_text[160];        /* its text */
    char line[512];              /* partial reply line carried between reads */
    size_t line_len;             /* bytes in line */
    struct smtp_out *outs;       /* the batch's messages, for per-message reports */
    struct send_result *res;     /* and their results */
};

/* One message of the batch and the buffer libESMTP reads it from. */
struct smtp_out {
    struct sbuf data;      /* the composed message, CRLF */
    bool delivered_once;   /* the callback handed over the buffer already */
    smtp_message_t msg;    /* libESMTP's message, NULL if not queued */
    smtp_recipient_t rcpt; /* its single recipient */
    bool reported;         /* its outcome was settled and reported during the session */
};

static pthread_once_t smtp_once = PTHREAD_ONCE_INIT;

static void
smtp_init_once(void)
{
    auth_client_init();
}

static enum send_status
smtp_classify_error(int code)
{
    if (code >= 200 && code < 300)
        return SEND_OK;
    if (code >= 500 && code < 600)
        return SEND_PERMANENT;
    /* 4xx, negative errno values, and anything unexpected: try again. */
    return SEND_TRANSIENT;
}

enum send_blame
smtp_blame(enum smtp_stage stage, int code, int enh_class, int enh_subject)
{
    if (code < 500 || code > 599)
        return BLAME_NOBODY; /* 4xx waits; 2xx/3xx are not failures */
    /* 5.7.x is security or policy: relaying denied, authentication
     * required, SPF/DKIM/DMARC. Whatever the stage, that is about how we
     * send, not about the mailbox. */
    if (enh_class == 5 && enh_subject == 7)
        return BLAME_SENDER;
    switch (stage) {
    case SMTP_STAGE_SESSION:
    case SMTP_STAGE_AUTH:
    case SMTP_STAGE_MAIL:
        return BLAME_SENDER;
    case SMTP_STAGE_RCPT:
        if (enh_class == 5)
            return enh_subject == 1 || enh_subject == 2 ? BLAME_RECIPIENT : BLAME_NOBODY;
        /* No enhanced code: the classic mailbox replies (RFC 5321 4.2.3). */
        if (code == 530)
            return BLAME_SENDER; /* authentication required */
        return code == 550 || code == 551 || code == 553 ? BLAME_RECIPIENT : BLAME_NOBODY;
    case SMTP_STAGE_DATA:
        /* One recipient per message, so a refusal after DATA is about that
         * recipient, unless it names the system (5.3) or the content (5.6). */
        if (enh_class == 5 && (enh_subject == 3 || enh_subject == 6))
            return BLAME_NOBODY;
        return BLAME_RECIPIENT;
    }
    return BLAME_NOBODY;
}

void
smtp_enhanced_code(const char *text, int *cls, int *subject)
{
    const char *p = text;
    *cls = *subject = 0;
    if (!p)
        return;
    while (*p == ' ')
        p++;
    if (p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
        (p[3] == ' ' || p[3] == '-'))
        p += 4;
    while (*p == ' ')
        p++;
    if ((p[0] == '2' || p[0] == '4' || p[0] == '5') && p[1] == '.' && p[2] >= '0' && p[2] <= '9') {
        int sub = p[2] - '0';
        const char *q = p + 3;
        if (*q >= '0' && *q <= '9')
            sub = sub * 10 + (*q++ - '0');
        if (*q != '.' || q[1] < '0' || q[1] > '9')
            return;
        *cls = p[0] - '0';
        *subject = sub;
    }
}

/* The blame for a libESMTP status: its parsed enhanced code, else one read
 * from the text (libESMTP parses it only when the server advertises
 * ENHANCEDSTATUSCODES). */
static enum send_blame
status_blame(enum smtp_stage stage, const smtp_status_t *st)
{
    int cls = st->enh_class, sub = st->enh_subject;
    if (!cls)
        smtp_enhanced_code(st->text, &cls, &sub);
    return smtp_blame(stage, st->code, cls, sub);
}

/* Copies server text into dst with control characters (CRLF of multi-line
 * replies included) turned into spaces and the ends trimmed. */
static void
clean_text(char *dst, size_t size, const char *src)
{
    size_t n = 0;
    if (!size)
        return;
    if (src) {
        while (*src == ' ' || *src == '\t')
            src++;
        for (; *src && n + 1 < size; src++) {
            unsigned char c = (unsigned char)*src;
            dst[n++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
        }
    }
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

/* ---- settings ---------------------------------------------------------- */

enum opt_type {
    OPT_IGNORED, /* belongs to the registry or the dispatcher */
    OPT_STRING,
    OPT_PORT,
    OPT_SECONDS,
    OPT_BOOL,
    OPT_STARTTLS,
    OPT_AUTH, /* mapping of username / password / password_file */
};

/* One accepted settings key. */
struct smtp_opt {
    const char *key;    /* name in nudge.yaml */
    enum opt_type type; /* what its value must be */
};

static const struct smtp_opt smtp_opts[] = {
    {"transport", OPT_IGNORED},  {"concurrency", OPT_IGNORED},  {"host", OPT_STRING},
    {"port", OPT_PORT},          {"starttls", OPT_STARTTLS},    {"username", OPT_STRING},
    {"password", OPT_STRING},    {"password_file", OPT_STRING}, {"auth", OPT_AUTH},
    {"from", OPT_STRING},        {"helo", OPT_STRING},          {"timeout", OPT_SECONDS},
    {"tls_ca_file", OPT_STRING}, {"tls_verify", OPT_BOOL},      {"message_id_domain", OPT_STRING},
};
#define SMTP_NOPTS (sizeof(smtp_opts) / sizeof(smtp_opts[0]))

static const char *const smtp_opt_names[] = {
    "transport",         "concurrency", "host", "port", "starttls", "username",    "password",
    "password_file",     "auth",        "from", "helo", "timeout",  "tls_ca_file", "tls_verify",
    "message_id_domain", NULL,
};
static const char *const smtp_auth_names[] = {"username", "password", "password_file", NULL};

/* Values gathered from the settings before the state is built. */
struct smtp_conf {
    const char *host;          /* see struct smtp_state */
    int port;                  /* TCP port */
    int starttls;              /* enum starttls_option, -1 if not given */
    int tls_verify;            /* 0/1, -1 if not given */
    const char *username;      /* AUTH user */
    const char *password;      /* inline password */
    const char *password_file; /* or a file holding it */
    const char *from;          /* From header */
    const char *helo;          /* EHLO name */
    int timeout;               /* seconds */
    const char *tls_ca_file;   /* CA bundle */
    const char *msgid_domain;  /* Message-ID domain */
};



static int
get_bool(const json_t *v, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", NULL};
    static const char *const no[] = {"false", "no", "off", NULL};
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        for (int i = 0; yes[i]; i++) {
            if (strcmp(s, yes[i]) == 0) {
                *out = 1;
                return 0;
            }
        }
        for (int i = 0; no[i]; i++) {
            if (strcmp(s, no[i]) == 0) {
                *out = 0;
                return 0;
            }
        }
    }
    return -EINVAL;
}

static int
set_string(const char *channel, const char *key, const json_t *v, const char **out,
           struct nerr *err)
{
    if (!json_is_string(v) || json_string_length(v) == 0) {
        int rc = nerr_set(err, NULL, 0, 0, "channels.%s.%s: expected a non-empty string, got %s",
                          channel, key, json_is_string(v) ? "an empty string" : json_kind(v));
        return rc;
    }
    if (strlen(json_string_value(v)) != json_string_length(v))
        return nerr_set(err, NULL, 0, 0, "channels.%s.%s: contains a NUL character", channel, key);
    *out = json_string_value(v);
    return 0;
}

static int
parse_auth(const char *channel, const json_t *auth, struct smtp_conf *c, struct nerr *err)
{
    const char *key;
    json_t *v;
    int rc;
    if (!json_is_object(auth))
        return nerr_set(err, NULL, 0, 0,
                        "channels.%s.auth: expected a mapping of username and password, got %s",
                        channel, json_kind(auth));
    json_object_foreach((json_t *)auth, key, v)
    {
        const char **slot = strcmp(key, "username") == 0        ? &c->username
                            : strcmp(key, "password") == 0      ? &c->password
                            : strcmp(key, "password_file") == 0 ? &c->password_file
                                                                : NULL;
        char name[64];
        if (!slot) {
            const char *near = did_you_mean(key, smtp_auth_names);
            rc = nerr_set(err, NULL, 0, 0, "channels.%s.auth: unknown key '%s'", channel, key);
            if (near)
                nerr_hint(err, "did you mean '%s'?", near);
            else
                nerr_hint(err, "auth takes username, and password or password_file");
            return rc;
        }
        snprintf(name, sizeof(name), "auth.%s", key);
        if ((rc = set_string(channel, name, v, slot, err)) < 0)
            return rc;
    }
    return 0;
}

static int
parse_settings(const char *channel, const json_t *settings, struct smtp_conf *c, struct nerr *err)
{
    const char *key;
    json_t *v;
    int rc;

    memset(c, 0, sizeof(*c));
    c->host = SMTP_DEFAULT_HOST;
    c->port = SMTP_DEFAULT_PORT;
    c->starttls = -1;
    c->tls_verify = -1;
    c->timeout = SMTP_DEFAULT_TIMEOUT;
    if (!settings)
        return nerr_set(err, NULL, 0, 0,
                        "channels.%s: the smtp transport needs settings "
                        "(at least `from`)",
                        channel);
    if (!json_is_object(settings))
        return nerr_set(err, NULL, 0, 0, "channels.%s: expected a mapping, got %s", channel,
                        json_kind(settings));

    json_object_foreach((json_t *)settings, key, v)
    {
        const struct smtp_opt *opt = NULL;
        if (key[0] == '_')
            continue; /* the daemon's own annotations (_file, _line, _spool_dir, ...) */
        for (size_t i = 0; i < SMTP_NOPTS; i++)
            if (strcmp(smtp_opts[i].key, key) == 0)
                opt = &smtp_opts[i];
        if (!opt) {
            const char *near = did_you_mean(key, smtp_opt_names);
            rc = nerr_set(err, NULL, 0, 0, "channels.%s: unknown key '%s' for the smtp transport",
                          channel, key);
            if (near)
                nerr_hint(err, "did you mean '%s'?", near);
            else
                nerr_hint(err, "known keys: host, port, starttls, username, password, "
                               "password_file, from, helo, timeout, tls_ca_file, tls_verify, "
                               "message_id_domain");
            return rc;
        }
        switch (opt->type) {
        case OPT_IGNORED:
            break;
        case OPT_STRING: {
            const char **slot = strcmp(key, "host") == 0            ? &c->host
                                : strcmp(key, "username") == 0      ? &c->username
                                : strcmp(key, "password") == 0      ? &c->password
                                : strcmp(key, "password_file") == 0 ? &c->password_file
                                : strcmp(key, "from") == 0          ? &c->from
                                : strcmp(key, "helo") == 0          ? &c->helo
                                : strcmp(key, "tls_ca_file") == 0   ? &c->tls_ca_file
                                                                    : &c->msgid_domain;
            if ((rc = set_string(channel, key, v, slot, err)) < 0)
                return rc;
            break;
        }
        case OPT_PORT:
            if (json_get_int(v, 1, 65535, &c->port) < 0)
                return nerr_set(err, NULL, 0, 0,
                                "channels.%s.port: expected a port number 1-65535, got %s", channel,
                                json_kind(v));
            break;
        case OPT_SECONDS:
            if (json_get_int(v, 1, 3600, &c->timeout) < 0)
                return nerr_set(err, NULL, 0, 0,
                                "channels.%s.timeout: expected seconds 1-3600, got %s", channel,
                                json_kind(v));
            break;
        case OPT_BOOL:
            if (get_bool(v, &c->tls_verify) < 0)
                return nerr_set(err, NULL, 0, 0, "channels.%s.%s: expected true or false, got %s",
                                channel, key, json_kind(v));
            break;
        case OPT_STARTTLS: {
            int b;
            const char *s = json_is_string(v) ? json_string_value(v) : NULL;
            if (s && strcmp(s, "no") == 0)
                c->starttls = Starttls_DISABLED;
            else if (s && strcmp(s, "optional") == 0)
                c->starttls = Starttls_ENABLED;
            else if (s && strcmp(s, "required") == 0)
                c->starttls = Starttls_REQUIRED;
            else if (json_is_boolean(v) && get_bool(v, &b) == 0)
                c->starttls = b ? Starttls_REQUIRED : Starttls_DISABLED;
            else {
                rc = nerr_set(err, NULL, 0, 0,
                              "channels.%s.starttls: expected no, optional or required, got %s%s%s",
                              channel, s ? "\"" : json_kind(v), s ? s : "", s ? "\"" : "");
                nerr_hint(err, "use `required` for a server on another machine");
                return rc;
            }
            break;
        }
        case OPT_AUTH:
            if ((rc = parse_auth(channel, v, c, err)) < 0)
                return rc;
            break;
        }
    }

    if (!c->from) {
        rc = nerr_set(err, NULL, 0, 0, "channels.%s: the smtp transport needs `from`", channel);
        nerr_hint(err, "for example  from: \"Shop <shop@example.com>\"");
        return rc;
    }
    if (strpbrk(c->host, ": \t\r\n/")) {
        rc =
            nerr_set(err, NULL, 0, 0, "channels.%s.host: \"%s\" is not a host name or IPv4 address",
                     channel, c->host);
        nerr_hint(err, "give the port separately as `port`; libESMTP cannot use IPv6 literals");
        return rc;
    }
    if (c->password && c->password_file)
        return nerr_set(err, NULL, 0, 0,
                        "channels.%s: give either password or password_file, "
                        "not both",
                        channel);
    if (c->username && !c->password && !c->password_file) {
        rc = nerr_set(err, NULL, 0, 0, "channels.%s: username is set but no password", channel);
        nerr_hint(err, "add  password_file: /etc/nudge/smtp.password");
        return rc;
    }
    if (!c->username && (c->password || c->password_file))
        return nerr_set(err, NULL, 0, 0, "channels.%s: a password needs a username", channel);
    if (c->starttls == -1)
        c->starttls = Starttls_ENABLED;
    if (c->starttls == Starttls_DISABLED && (c->tls_ca_file || c->tls_verify != -1))
        return nerr_set(err, NULL, 0, 0,
                        "channels.%s: tls_ca_file/tls_verify are set but "
                        "starttls is no",
                        channel);
    return 0;
}

/* Reads the password: the first line of the file, without its line end. */
static int
read_password(const char *channel, const char *path, char **out, struct nerr *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len);
    if (rc < 0)
        return nerr_set(err, path, 0, 0, "channels.%s.password_file: cannot read: %s", channel,
                        strerror(-rc));
    text[strcspn(text, "\r\n")] = '\0';
    if (!text[0]) {
        free(text);
        return nerr_set(err, path, 0, 0, "channels.%s.password_file: the file is empty", channel);
    }
    *out = text;
    return 0;
}

static int
make_ssl_ctx(const char *channel, const char *ca_file, SSL_CTX **out, struct nerr *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return nerr_set(err, NULL, 0, 0, "channels.%s: cannot create a TLS context", channel);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* TLS 1.3 servers send NewSessionTicket records after the handshake.
     * libESMTP 1.1.0 polls for read and write together and serves the read
     * first, so when the tickets land before it has flushed EHLO it blocks
     * in SSL_read (no application data) until the timeout and then reports
     * a dropped connection: about one session in eight on loopback, seen
     * with strace. TLS 1.2 has no post-handshake messages. Lift this cap
     * when libESMTP handles it (or is replaced). */
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    /* Verification is done, but judged in smtp_event (see the file comment). */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    if (ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            char why[160];
            ERR_error_string_n(ERR_get_error(), why, sizeof(why));
            ERR_clear_error();
            SSL_CTX_free(ctx);
            return nerr_set(err, ca_file, 0, 0,
                            "channels.%s.tls_ca_file: cannot load certificates: %s", channel, why);
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ERR_clear_error();
        log_warn("email", "channels.%s: could not load the system CA store", channel);
    }
    *out = ctx;
    return 0;
}

static void
smtp_close(void *vstate)
{
    struct smtp_state *st = vstate;
    if (!st)
        return;
    if (st->ssl_ctx)
        SSL_CTX_free(st->ssl_ctx);
    if (st->password) {
        /* Do not leave the secret in freed heap memory (a plain memset
         * before free may be optimised away). */
        OPENSSL_cleanse(st->password, strlen(st->password));
        free(st->password);
    }
    free(st->channel);
    free(st->host);
    free(st->hostport);
    free(st->username);
    free(st->from);
    free(st->envelope_from);
    free(st->helo);
    free(st->msgid_domain);
    free(st);
}

/* Points an error without a file of its own at the channel's mapping in
 * nudge.yaml, from the _file/_line the daemon adds to the settings. */
static void
locate_error(const json_t *settings, struct nerr *err)
{
    const char *file;
    if (!err || err->file[0] || !json_is_object(settings))
        return;
    file = json_string_value(json_object_get(settings, "_file"));
    if (!file)
        return;
    snprintf(err->file, sizeof(err->file), "%s", file);
    err->line = (int)json_integer_value(json_object_get(settings, "_line"));
    err->col = 0;
}

static int
smtp_open(const char *channel, json_t *settings, void **state, struct nerr *err)
{
    struct smtp_conf c;
    struct smtp_state *st;
    char *from_name = NULL;
    int rc;

    *state = NULL;
    if (!channel)
        channel = smtp_channels[0];
    pthread_once(&smtp_once, smtp_init_once);
    if ((rc = parse_settings(channel, settings, &c, err)) < 0) {
        locate_error(settings, err);
        return rc;
    }

    st = xcalloc(1, sizeof(*st));
    st->channel = xstrdup(channel);
    st->host = xstrdup(c.host);
    st->hostport = xasprintf("%s:%d", c.host, c.port);
    st->starttls = (enum starttls_option)c.starttls;
    /* Opportunistic TLS (optional) encrypts without authenticating the
     * server, as MTAs do (RFC 7435); required TLS, or naming a CA file,
     * verifies unless told otherwise. */
    st->tls_verify =
        c.tls_verify != -1 ? c.tls_verify : st->starttls == Starttls_REQUIRED || c.tls_ca_file;
    st->timeout_ms = (long)c.timeout * 1000L;
    st->from = xstrdup(c.from);
    if (mime_parse_mailbox(c.from, &from_name, &st->envelope_from) < 0) {
        rc = nerr_set(err, NULL, 0, 0, "channels.%s.from: \"%s\" is not a valid mailbox", channel,
                      c.from);
        nerr_hint(err, "write it as \"Display Name <user@example.com>\" or a bare address");
        goto fail;
    }
    free(from_name);
    if (c.helo)
        st->helo = xstrdup(c.helo);
    if (c.msgid_domain) {
        struct nudge_message probe = {.delivery_id = 1};
        struct sbuf id;
        sbuf_init(&id);
        rc = mime_message_id(&probe, c.msgid_domain, &id);
        sbuf_free(&id);
        if (rc < 0) {
            rc = nerr_set(err, NULL, 0, 0,
                          "channels.%s.message_id_domain: \"%s\" is not a domain name", channel,
                          c.msgid_domain);
            goto fail;
        }
        st->msgid_domain = xstrdup(c.msgid_domain);
    }
    if (c.username) {
        st->username = xstrdup(c.username);
        if (c.password)
            st->password = xstrdup(c.password);
        else if ((rc = read_password(channel, c.password_file, &st->password, err)) < 0)
            goto fail;
        if (st->starttls == Starttls_DISABLED)
            log_warn("email",
                     "channels.%s: AUTH without STARTTLS sends the password in clear "
                     "text",
                     channel);
    }
    if (st->starttls != Starttls_DISABLED &&
        (rc = make_ssl_ctx(channel, c.tls_ca_file, &st->ssl_ctx, err)) < 0)
        goto fail;
    *state = st;
    return 0;

fail:
    locate_error(settings, err);
    smtp_close(st);
    return rc;
}

/* ---- one session ------------------------------------------------------- */

/* libESMTP reads the message through this: the whole buffer at once, then
 * end of data; a NULL len asks to rewind. */
static const char *
smtp_message_cb(void **ctx, int *len, void *arg)
{
    struct smtp_out *o = arg;
    (void)ctx; /* stays NULL: libESMTP would free() it */
    if (!len) {
        o->delivered_once = false;
        return NULL;
    }
    if (o->delivered_once) {
        *len = 0;
        return NULL;
    }
    o->delivered_once = true;
    *len = (int)o->data.len;
    return o->data.s;
}

static int
smtp_interact(auth_client_request_t req, char **result, int fields, void *arg)
{
    const struct smtp_state *st = arg;
    for (int i = 0; i < fields; i++) {
        if (req[i].flags & AUTH_USER)
            result[i] = st->username;
        else if (req[i].flags & AUTH_PASS)
            result[i] = st->password;
        else if (req[i].flags & AUTH_REALM)
            result[i] = (char *)"";
        else
            return 0;
    }
    return 1;
}

/* True when host is an IPv4 or IPv6 literal rather than a name. */
static bool
host_is_ip(const char *host)
{
    return host[strspn(host, "0123456789.")] == '\0' || strchr(host, ':');
}

/* The host-name check libESMTP skips: IP address subjectAltNames, and names
 * matched by OpenSSL's own RFC 6125 rules against the host we dialled. */
static bool
cert_matches_host(SSL *ssl, const char *host)
{
    X509 *cert = SSL_get1_peer_certificate(ssl);
    bool ok;
    if (!cert)
        return false;
    if (host_is_ip(host))
        ok = X509_check_ip_asc(cert, host, 0) == 1;
    else
        ok = X509_check_host(cert, host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1;
    X509_free(cert);
    /* A stale entry in this thread's error queue would make libESMTP's next
     * SSL_get_error report a failure instead of "want read". */
    ERR_clear_error();
    return ok;
}

static void settle(const struct smtp_run *run, const struct smtp_out *o, int session_err,
                   struct send_result *r);

/* Message `msg` has its final reply: settle its result and report it
 * (send_result_report), before libESMTP moves on to the next message. */
static void
report_message(struct smtp_run *run, smtp_message_t msg)
{
    struct smtp_out *o = msg ? smtp_message_get_application_data(msg) : NULL;
    struct send_result *r;
    if (!o || o->reported || !run->outs)
        return;
    r = &run->res[o - run->outs];
    settle(run, o, 0, r);
    o->reported = true;
    send_result_report(r);
}

static void
smtp_event(smtp_session_t session, int event, void *arg, ...)
{
    struct smtp_run *run = arg;
    const struct smtp_state *st = run->st;
    va_list ap;
    (void)session;
    va_start(ap, arg);
    switch (event) {
    case SMTP_EV_INVALID_PEER_CERTIFICATE: {
        long result = va_arg(ap, long);
        int *ok = va_arg(ap, int *);
        *ok = !st->tls_verify;
        if (!*ok)
            snprintf(run->tls_error, sizeof(run->tls_error), "server certificate not trusted: %s",
                     X509_verify_cert_error_string(result));
        break;
    }
    case SMTP_EV_NO_PEER_CERTIFICATE: {
        int *ok = va_arg(ap, int *);
        *ok = !st->tls_verify;
        if (!*ok)
            snprintf(run->tls_error, sizeof(run->tls_error), "server sent no certificate");
        break;
    }
    case SMTP_EV_WRONG_PEER_CERTIFICATE: {
        int *ok = va_arg(ap, int *);
        const char *name = va_arg(ap, const char *);
        SSL *ssl = va_arg(ap, SSL *);
        *ok = !st->tls_verify || cert_matches_host(ssl, st->host);
        if (!*ok)
            snprintf(run->tls_error, sizeof(run->tls_error),
                     "server certificate is for \"%s\", not \"%s\"", name ? name : "?", st->host);
        break;
    }
    case SMTP_EV_WEAK_CIPHER: {
        int bits = va_arg(ap, int);
        int *ok = va_arg(ap, int *);
        *ok = 0;
        snprintf(run->tls_error, sizeof(run->tls_error), "TLS cipher too weak (%d bits)", bits);
        break;
    }
    case SMTP_EV_NO_CLIENT_CERTIFICATE: {
        int *ok = va_arg(ap, int *);
        *ok = 0;
        snprintf(run->tls_error, sizeof(run->tls_error),
                 "libESMTP found a client certificate without a usable key");
        break;
    }
    case SMTP_EV_UNUSABLE_CLIENT_CERTIFICATE:
    case SMTP_EV_UNUSABLE_CA_LIST:
        snprintf(run->tls_error, sizeof(run->tls_error),
                 "libESMTP's per-user certificate files (~/.config/libesmtp) are unusable");
        break;
    case SMTP_EV_EXTNA_STARTTLS:
        run->starttls_missing = true;
        break;
    case SMTP_EV_MAILSTATUS: {
        /* A refused MAIL FROM ends that message's transaction. */
        const char *mailbox = va_arg(ap, const char *);
        smtp_message_t msg = va_arg(ap, smtp_message_t);
        const smtp_status_t *mail = msg ? smtp_reverse_path_status(msg) : NULL;
        (void)mailbox;
        if (mail && mail->code >= 300)
            report_message(run, msg);
        break;
    }
    case SMTP_EV_MESSAGESENT:
        report_message(run, va_arg(ap, smtp_message_t));
        break;
    default:
        break;
    }
    va_end(ap);
}

/* One complete reply line from the server: remember a failing reply from
 * before the first transaction (the greeting, EHLO, STARTTLS: libESMTP keeps
 * those to itself), and the outcome of an AUTH exchange. */
static void
smtp_reply_line(struct smtp_run *run, const char *line)
{
    char text[160];
    int code;
    if (strlen(line) < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
        line[2] < '0' || line[2] > '9' || (line[3] != ' ' && line[3] != '\0'))
        return; /* a continuation line ("250-...") or not a reply at all */
    code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    clean_text(text, sizeof(text), line[3] ? line + 4 : "");
    log_debug("email", "%s S: %d %s", run->st->hostport, code, text);
    if (code >= 400 && !run->mail_sent && !run->in_auth) {
        run->early_code = code;
        snprintf(run->early_text, sizeof(run->early_text), "%s", text);
    }
    if (!run->in_auth || code == 334)
        return;
    run->in_auth = false;
    if (code >= 400) {
        run->auth_code = code;
        snprintf(run->auth_text, sizeof(run->auth_text), "%s", text);
    } else {
        run->auth_code = 0; /* a later mechanism succeeded */
    }
}

/* Sees the protocol (never the message data: libESMTP turns monitoring off
 * for DATA). Commands are only inspected for the AUTH verb; credentials
 * that follow it are neither stored nor logged. */
static void
smtp_monitor(const char *buf, int len, int writing, void *arg)
{
    struct smtp_run *run = arg;
    if (writing == SMTP_CB_WRITING) {
        bool was_in_auth = run->in_auth;
        if (len >= 5 && strncmp(buf, "AUTH ", 5) == 0)
            run->in_auth = true;
        if (memmem(buf, (size_t)len, "MAIL FROM:", 10))
            run->mail_sent = true;
        if (log_get_level() >= LOG_LVL_DEBUG) {
            int cmd = (int)strcspn(buf, " \r\n");
            if (run->in_auth || was_in_auth)
                log_debug("email", "%s C: %.*s (credentials not logged)", run->st->hostport,
                          was_in_auth ? 0 : cmd, buf);
            else
                log_debug("email", "%s C: %.*s", run->st->hostport, (int)strcspn(buf, "\r\n"), buf);
        }
        return;
    }
    if (writing != SMTP_CB_READING)
        return;
    for (int i = 0; i < len; i++) {
        char c = buf[i];
        if (c == '\n') {
            while (run->line_len && run->line[run->line_len - 1] == '\r')
                run->line_len--;
            run->line[run->line_len] = '\0';
            smtp_reply_line(run, run->line);
            run->line_len = 0;
        } else if (run->line_len + 1 < sizeof(run->line)) {
            run->line[run->line_len++] = c;
        }
    }
}

/* The result of a message that never reached MAIL FROM: the session failed
 * as a whole. Transient whatever the reason (see channel_email.h). */
static void
settle_session_failure(const struct smtp_run *run, int session_err, struct send_result *r)
{
    char buf[128];
    const char *why;
    if (run->tls_error[0]) {
        send_result_set(r, SEND_TRANSIENT, -EPROTO, "STARTTLS with %s refused: %s", run->st->hostport,
                   run->tls_error);
        send_result_blame(r, BLAME_SENDER);
    } else if (run->starttls_missing) {
        send_result_set(r, SEND_TRANSIENT, -EPROTONOSUPPORT,
                   "%s does not offer STARTTLS and starttls is required", run->st->hostport);
        send_result_blame(r, BLAME_SENDER);
    } else if (run->early_code) {
        int cls, sub;
        send_result_set(r, SEND_TRANSIENT, run->early_code, "%s refused the session: %d %s",
                   run->st->hostport, run->early_code, run->early_text);
        /* Never the recipient's fault before a transaction began. */
        smtp_enhanced_code(run->early_text, &cls, &sub);
        if (smtp_blame(SMTP_STAGE_SESSION, run->early_code, cls, sub) == BLAME_SENDER)
            send_result_blame(r, BLAME_SENDER);
    } else if (session_err != 0) {
        why = smtp_strerror(session_err, buf, sizeof(buf));
        send_result_set(r, SEND_TRANSIENT, session_err < 0 ? session_err : -EIO, "%s: %s",
                   run->st->hostport, why ? why : "SMTP session failed");
    } else {
        send_result_set(r, SEND_TRANSIENT, -EIO, "%s: the session ended before MAIL FROM",
                   run->st->hostport);
    }
}

static void
settle_lost(const char *when, int session_err, struct send_result *r)
{
    char buf[128];
    const char *why = session_err ? smtp_strerror(session_err, buf, sizeof(buf)) : NULL;
    send_result_set(r, SEND_TRANSIENT, session_err < 0 ? session_err : -ECONNRESET,
               "connection lost %s%s%s", when, why ? ": " : "", why ? why : "");
}

/* Reads one message's fate from libESMTP's status of MAIL, RCPT and DATA. */
static void
settle(const struct smtp_run *run, const struct smtp_out *o, int session_err, struct send_result *r)
{
    const smtp_status_t *mail = smtp_reverse_path_status(o->msg);
    const smtp_status_t *rcpt = smtp_recipient_status(o->rcpt);
    const smtp_status_t *data = smtp_message_transfer_status(o->msg);
    char text[160];

    if (run->auth_code && (!mail || mail->code == 0 || mail->code >= 400)) {
        int cls, sub;
        send_result_set(r, smtp_classify_error(run->auth_code), run->auth_code,
                   "authentication as %s failed: %d %s", run->st->username, run->auth_code,
                   run->auth_text);
        smtp_enhanced_code(run->auth_text, &cls, &sub);
        send_result_blame(r, smtp_blame(SMTP_STAGE_AUTH, run->auth_code, cls, sub));
        if (r->blame == BLAME_NOBODY)
            r->status = SEND_TRANSIENT; /* 454: a temporary authentication failure */
        return;
    }
    if (!mail || mail->code == 0) {
        settle_session_failure(run, session_err, r);
        return;
    }
    if (mail->code >= 300) {
        clean_text(text, sizeof(text), mail->text);
        send_result_set(r, smtp_classify_error(mail->code), mail->code, "MAIL FROM rejected: %d %s",
                   mail->code, text);
        send_result_blame(r, status_blame(SMTP_STAGE_MAIL, mail));
        return;
    }
    if (!rcpt || rcpt->code == 0) {
        settle_lost("after MAIL FROM", session_err, r);
        return;
    }
    if (rcpt->code >= 300) {
        clean_text(text, sizeof(text), rcpt->text);
        send_result_set(r, smtp_classify_error(rcpt->code), rcpt->code, "RCPT TO rejected: %d %s",
                   rcpt->code, text);
        send_result_blame(r, status_blame(SMTP_STAGE_RCPT, rcpt));
        return;
    }
    /* libESMTP clears the status when the read of a reply fails, so a
     * lost final reply looks like no DATA at all; whether our callback
     * handed over the message tells the two apart. */
    if (!data || data->code == 0 || (data->code >= 300 && data->code < 400)) {
        settle_lost(o->delivered_once ? "after the message was sent (the server may have "
                                        "accepted it)"
                                      : "before DATA",
                    session_err, r);
        return;
    }
    if (data->code >= 400) {
        clean_text(text, sizeof(text), data->text);
        send_result_set(r, smtp_classify_error(data->code), data->code, "message rejected: %d %s",
                   data->code, text);
        send_result_blame(r, status_blame(SMTP_STAGE_DATA, data));
        return;
    }
    r->status = SEND_OK;
    r->code = data->code;
    r->retry_after = 0;
    r->blame = BLAME_NOBODY;
    r->error[0] = '\0';
}

static void
smtp_send(void *vstate, const struct nudge_message *msgs, size_t n, struct send_result *res)
{
    const struct smtp_state *st = vstate;
    struct smtp_run run;
    struct smtp_out *outs;
    smtp_session_t session;
    auth_context_t auth = NULL;
    sigset_t pipe_set, old_set, pending;
    size_t queued = 0;
    int session_err = 0;

    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        send_result_clear(&res[i]);
    memset(&run, 0, sizeof(run));
    run.st = st;
    outs = xcalloc(n, sizeof(*outs));
    run.outs = outs;
    run.res = res;

    session = smtp_create_session();
    if (!session) {
        for (size_t i = 0; i < n; i++)
            send_result_set(&res[i], SEND_TRANSIENT, -ENOMEM, "cannot create an SMTP session");
        free(outs);
        return;
    }
    smtp_set_server(session, st->hostport);
    if (st->helo)
        smtp_set_hostname(session, st->helo);
    smtp_set_timeout(session, Timeout_GREETING | Timeout_OVERRIDE_RFC2822_MINIMUM, st->timeout_ms);
    smtp_set_timeout(session, Timeout_ENVELOPE | Timeout_OVERRIDE_RFC2822_MINIMUM, st->timeout_ms);
    smtp_set_timeout(session, Timeout_DATA | Timeout_OVERRIDE_RFC2822_MINIMUM, st->timeout_ms);
    smtp_set_timeout(session, Timeout_TRANSFER | Timeout_OVERRIDE_RFC2822_MINIMUM, st->timeout_ms);
    smtp_set_timeout(session, Timeout_DATA2 | Timeout_OVERRIDE_RFC2822_MINIMUM, st->timeout_ms);
    smtp_set_eventcb(session, smtp_event, &run);
    smtp_set_monitorcb(session, smtp_monitor, &run, 0);
    if (st->starttls != Starttls_DISABLED) {
        smtp_starttls_enable(session, st->starttls);
        smtp_starttls_set_ctx(session, st->ssl_ctx);
    }
    if (st->username) {
        auth = auth_create_context();
        /* PLAIN and LOGIN are "plain text" mechanisms: allow them, since
         * that is what submission servers offer (inside TLS). */
        auth_set_mechanism_flags(auth, AUTH_PLUGIN_PLAIN, 0);
        auth_set_interact_cb(auth, smtp_interact, (void *)st);
        smtp_auth_set_context(session, auth);
    }

    for (size_t i = 0; i < n; i++) {
        const struct nudge_message *m = &msgs[i];
        struct smtp_out *o = &outs[i];
        struct nerr err;
        /* The daemon's (injectable) clock stamps Date; the enqueue time and
         * then the wall clock only stand in for a caller that left it 0. */
        ntime_t date = m->date ? m->date : m->created_at ? m->created_at : (ntime_t)time(NULL);
        int rc;

        nerr_clear(&err);
        sbuf_init(&o->data);
        rc = mime_compose_email(m, st->from, st->msgid_domain, date, &o->data, &err);
        if (rc < 0) {
            send_result_set(&res[i], SEND_PERMANENT, rc, "cannot compose the message: %s", err.msg);
            send_result_report(&res[i]);
            continue;
        }
        o->msg = smtp_add_message(session);
        if (!o->msg || !smtp_set_reverse_path(o->msg, st->envelope_from) ||
            !(o->rcpt = smtp_add_recipient(o->msg, m->to)) ||
            !smtp_set_messagecb(o->msg, smtp_message_cb, o)) {
            /* libESMTP failed to allocate; the message stays out of the
             * session (a message with no recipient is skipped). */
            send_result_set(&res[i], SEND_TRANSIENT, -ENOMEM, "cannot queue the message in libESMTP");
            o->msg = NULL;
            continue;
        }
        smtp_size_set_estimate(o->msg, (unsigned long)o->data.len);
        smtp_message_set_application_data_release(o->msg, o, NULL);
        queued++;
    }

    if (queued > 0) {
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
        /* libESMTP's error is per thread and never reset, so it is only
         * consulted for messages the session left without a status, where
         * the failure that ended the session has just set it. */
        smtp_start_session(session);
        session_err = smtp_errno();
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) &&
            !sigismember(&old_set, SIGPIPE)) {
            const struct timespec zero = {0, 0};
            sigtimedwait(&pipe_set, NULL, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &old_set, NULL);

        /* Messages the session ended without a final reply for (a lost
         * connection, a session refused as a whole) are settled here; the
         * dispatcher records them after send() returns. */
        for (size_t i = 0; i < n; i++)
            if (outs[i].msg && !outs[i].reported)
                settle(&run, &outs[i], session_err, &res[i]);
        if (run.tls_error[0] || run.starttls_missing || run.auth_code)
            log_warn("email", "%s: %s", st->hostport,
                     run.tls_error[0]       ? run.tls_error
                     : run.starttls_missing ? "STARTTLS required but not offered"
                                            : "authentication failed");
    }

    smtp_destroy_session(session);
    if (auth)
        auth_destroy_context(auth);
    for (size_t i = 0; i < n; i++)
        sbuf_free(&outs[i].data);
    free(outs);
}

const struct channel_backend channel_backend_smtp = {
    .name = "smtp",
    .channels = smtp_channels,
    .open = smtp_open,
    .send = smtp_send,
    .close = smtp_close,
    .classify_error = smtp_classify_error,
    .batch_max = SMTP_BATCH_MAX,
    /* An SMTP session spends most of its time waiting for the server's
     * replies (three round trips a message with libESMTP), so more sessions
     * than the other channels' 4 keep the CPU busy: 8 sent ~15 % more in
     * contrib/bench/email.sh. Postfix's smtp client allows 20 per destination. */
    .default_concurrency = 8,
    .needs_payload = false, /* composes from the fields */
};
