/*
 * mime.c: composes RFC 5322 email from a rendered struct nudge_message with
 * GMime, and the small address checks the email channels share.
 *
 * GMime is told exactly what to do rather than asked to guess: text parts are
 * labelled utf-8 (GMime's own g_mime_text_part_set_text would silently
 * re-encode mostly-Latin text as iso-8859-1 and send it 8bit), the body is
 * canonicalised to CRLF before encoding as RFC 2045 asks of text, and the
 * List-Unsubscribe URL is written raw because GMime folds long unstructured
 * headers into RFC 2047 words, which no mail client would read as a URL.
 */
#include "mime.h"

#include <errno.h>
#include <gmime/gmime.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Longest URL we put in List-Unsubscribe: the header line must stay below
 * RFC 5322's 998 octets and URLs cannot be folded. */
#define MIME_URL_MAX 900
/* Hex digits of SHA-256(idempotency key) in the Message-ID: 48 bits, enough to
 * make a forged or colliding ID for the same delivery id implausible. */
#define MIME_ID_HASH_HEX 12

static pthread_once_t mime_once = PTHREAD_ONCE_INIT;

static void
mime_init_once(void)
{
    g_mime_init();
}

/* GMime must be initialised once per process before any other call; the
 * dispatcher's worker threads may race to be first. */
static void
mime_init(void)
{
    pthread_once(&mime_once, mime_init_once);
}

static bool
domain_valid(const char *d)
{
    size_t len = strlen(d), label = 0;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = d[i];
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return false;
        if (label == 0 && c == '-')
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && d[len - 1] != '-';
}

bool
mime_addr_valid(const char *addr)
{
    const char *at;
    size_t local_len;
    if (!addr)
        return false;
    at = strrchr(addr, '@');
    if (!at || strlen(addr) > 254)
        return false;
    local_len = (size_t)(at - addr);
    if (local_len == 0 || local_len > 64 || addr[0] == '.' || at[-1] == '.')
        return false;
    for (size_t i = 0; i < local_len; i++) {
        unsigned char c = (unsigned char)addr[i];
        /* Printable ASCII minus the specials that would need quoting. */
        if (c <= 0x20 || c >= 0x7f || strchr("()<>[]:;@\\,\"", c))
            return false;
        if (c == '.' && addr[i + 1] == '.')
            return false;
    }
    return domain_valid(at + 1);
}

/* Copies s with every run of CR, LF and TAB turned into one space and the
 * ends trimmed: header text cannot hold a line break, and folding it to a
 * space is what a reader of the original would have meant. */
static char *
fold_to_line(const char *s)
{
    struct sbuf b;
    bool space = false;
    sbuf_init(&b);
    sbuf_adds(&b, "");
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n' || *s == '\t' || *s == ' ') {
            space = true;
            continue;
        }
        if (space && b.len)
            sbuf_addc(&b, ' ');
        space = false;
        sbuf_addc(&b, *s);
    }
    return sbuf_steal(&b);
}

/* Text with every line break (CRLF, LF or a lone CR) as CRLF and a final
 * CRLF, the canonical form RFC 2045 wants before a transfer encoding. */
static void
canon_crlf(const char *s, struct sbuf *out)
{
    sbuf_init(out);
    sbuf_adds(out, "");
    for (; *s; s++) {
        if (*s == '\r') {
            if (s[1] == '\n')
                s++;
            sbuf_add(out, "\r\n", 2);
        } else if (*s == '\n') {
            sbuf_add(out, "\r\n", 2);
        } else {
            sbuf_addc(out, *s);
        }
    }
    if (out->len < 2 || memcmp(out->s + out->len - 2, "\r\n", 2) != 0)
        sbuf_add(out, "\r\n", 2);
}

/* Only absolute http(s) and mailto URLs in plain printable ASCII: anything
 * else could break out of the <...> of List-Unsubscribe. */
static bool
url_valid(const char *url)
{
    size_t len = strlen(url);
    if (len == 0 || len > MIME_URL_MAX)
        return false;
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0 &&
        strncmp(url, "mailto:", 7) != 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '"')
            return false;
    }
    return true;
}

/* Lowercase hex SHA-256 of s, truncated to n digits, appended to out. */
static void
add_hash_hex(struct sbuf *out, const char *prefix, const char *s, size_t n)
{
    GChecksum *ck = g_checksum_new(G_CHECKSUM_SHA256);
    const char *hex;
    if (prefix)
        g_checksum_update(ck, (const guchar *)prefix, (gssize)strlen(prefix));
    g_checksum_update(ck, (const guchar *)s, (gssize)strlen(s));
    hex = g_checksum_get_string(ck);
    sbuf_add(out, hex, n < strlen(hex) ? n : strlen(hex));
    g_checksum_free(ck);
}

/* The key the Message-ID and boundary hash: the dispatcher's idempotency key,
 * or the delivery id itself if a caller left the key out. */
static const char *
id_key(const struct nudge_message *m, char *buf, size_t size)
{
    if (m->idempotency_key && m->idempotency_key[0])
        return m->idempotency_key;
    snprintf(buf, size, "%" PRId64, m->delivery_id);
    return buf;
}

int
mime_message_id(const struct nudge_message *m, const char *domain, struct sbuf *out)
{
    char keybuf[32];
    sbuf_free(out);
    if (!m || !domain || !domain_valid(domain))
        return -EINVAL;
    sbuf_printf(out, "nudge-%" PRId64 "-", m->delivery_id);
    add_hash_hex(out, NULL, id_key(m, keybuf, sizeof(keybuf)), MIME_ID_HASH_HEX);
    sbuf_printf(out, "@%s", domain);
    return 0;
}

int
mime_parse_mailbox(const char *spec, char **name, char **addr)
{
    const char *start, *end, *lt;
    char *nm = NULL, *ad = NULL;
    *name = NULL;
    *addr = NULL;
    if (!spec)
        return -EINVAL;
    start = spec;
    while (*start == ' ' || *start == '\t')
        start++;
    end = start + strlen(start);
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end > start && end[-1] == '>' && (lt = memchr(start, '<', (size_t)(end - start)))) {
        const char *ns = start, *ne;
        /* The last '<' starts the address, so a quoted display name may
         * itself contain '<'. */
        for (const char *p = lt + 1; p < end - 1; p++)
            if (*p == '<')
                lt = p;
        ne = lt;
        ad = xstrndup(lt + 1, (size_t)(end - 1 - (lt + 1)));
        while (ne > ns && (ne[-1] == ' ' || ne[-1] == '\t'))
            ne--;
        if (ne - ns >= 2 && ns[0] == '"' && ne[-1] == '"') {
            struct sbuf b;
            sbuf_init(&b);
            sbuf_adds(&b, "");
            for (const char *p = ns + 1; p < ne - 1; p++) {
                if (*p == '\\' && p + 1 < ne - 1)
                    p++;
                sbuf_addc(&b, *p);
            }
            nm = sbuf_steal(&b);
        } else if (ne > ns) {
            nm = xstrndup(ns, (size_t)(ne - ns));
        }
    } else {
        ad = xstrndup(start, (size_t)(end - start));
    }
    if (!mime_addr_valid(ad) || (nm && !utf8_valid(nm, strlen(nm)))) {
        free(nm);
        free(ad);
        return -EINVAL;
    }
    if (nm) {
        char *folded = fold_to_line(nm);
        free(nm);
        nm = folded;
        if (!nm[0]) {
            free(nm);
            nm = NULL;
        }
    }
    *name = nm;
    *addr = ad;
    return 0;
}

/* A text part labelled utf-8 whose transfer encoding GMime picks under a
 * 7-bit constraint: 7bit for short ASCII lines, else quoted-printable or
 * base64, whichever is smaller for this content. */
static GMimeObject *
text_part(const char *subtype, const char *text)
{
    GMimeTextPart *part = g_mime_text_part_new_with_subtype(subtype);
    GMimeStream *stream;
    GMimeDataWrapper *content;
    GMimeContentEncoding enc;
    struct sbuf canon;

    canon_crlf(text, &canon);
    g_mime_text_part_set_charset(part, "utf-8");
    stream = g_mime_stream_mem_new_with_buffer(canon.s, canon.len);
    content = g_mime_data_wrapper_new_with_stream(stream, GMIME_CONTENT_ENCODING_DEFAULT);
    g_object_unref(stream);
    g_mime_part_set_content(GMIME_PART(part), content);
    g_object_unref(content);
    sbuf_free(&canon);
    enc = g_mime_part_get_best_content_encoding(GMIME_PART(part), GMIME_ENCODING_CONSTRAINT_7BIT);
    if (enc == GMIME_CONTENT_ENCODING_DEFAULT)
        enc = GMIME_CONTENT_ENCODING_7BIT;
    g_mime_part_set_content_encoding(GMIME_PART(part), enc);
    return GMIME_OBJECT(part);
}

/* Sets a header to exactly `value`, bypassing GMime's folding and RFC 2047
 * encoding; only for values already checked to be short printable ASCII. */
static void
set_raw_header(GMimeObject *obj, const char *name, const char *value)
{
    GMimeHeaderList *list = g_mime_object_get_header_list(obj);
    GMimeHeader *h;
    char *raw;
    g_mime_object_set_header(obj, name, value, NULL);
    h = g_mime_header_list_get_header(list, name);
    raw = xasprintf(" %s\n", value);
    g_mime_header_set_raw_value(h, raw);
    free(raw);
}

static int
check_text(const char *what, const char *s, struct nerr *err)
{
    if (s && !utf8_valid(s, strlen(s)))
        return nerr_set(err, NULL, 0, 0, "email %s is not valid UTF-8", what);
    return 0;
}

int
mime_compose_email(const struct nudge_message *m, const char *from, const char *message_id_domain,
                   ntime_t date, struct sbuf *out, struct nerr *err)
{
    char *from_name = NULL, *from_addr = NULL, *to_name = NULL, *subject = NULL;
    char *rule = NULL, *rendered = NULL, keybuf[32];
    const char *domain;
    GMimeMessage *msg = NULL;
    GMimeObject *body = NULL;
    GMimeFormatOptions *opts = NULL;
    GDateTime *dt = NULL;
    struct sbuf id, boundary;
    int rc = 0;

    sbuf_init(&id);
    sbuf_init(&boundary);
    sbuf_free(out);
    if (!m || !out)
        return -EINVAL;
    mime_init();

    if (mime_parse_mailbox(from, &from_name, &from_addr) < 0) {
        rc = nerr_set(err, NULL, 0, 0, "email From \"%s\" is not a valid mailbox",
                      from ? from : "(none)");
        nerr_hint(err, "write it as an address or as \"Display Name <user@example.com>\"");
        goto out;
    }
    if (!mime_addr_valid(m->to)) {
        rc = nerr_set(err, NULL, 0, 0, "recipient \"%s\" is not a valid email address",
                      m->to ? m->to : "(none)");
        goto out;
    }
    if (!m->text && !m->html) {
        rc = nerr_set(err, NULL, 0, 0, "email for delivery %" PRId64 " has neither text nor html",
                      m->delivery_id);
        goto out;
    }
    if ((rc = check_text("subject", m->subject, err)) < 0 ||
        (rc = check_text("recipient name", m->to_name, err)) < 0 ||
        (rc = check_text("text part", m->text, err)) < 0 ||
        (rc = check_text("html part", m->html, err)) < 0 ||
        (rc = check_text("rule name", m->rule, err)) < 0)
        goto out;
    if (m->marketing && m->unsubscribe_url && !url_valid(m->unsubscribe_url)) {
        rc = nerr_set(err, NULL, 0, 0, "unsubscribe URL \"%s\" cannot go in List-Unsubscribe",
                      m->unsubscribe_url);
        nerr_hint(err,
                  "use an absolute http(s):// or mailto: URL of printable ASCII, "
                  "at most %d characters",
                  MIME_URL_MAX);
        goto out;
    }
    domain = message_id_domain ? message_id_domain : strrchr(from_addr, '@') + 1;
    if (mime_message_id(m, domain, &id) < 0) {
        rc = nerr_set(err, NULL, 0, 0, "Message-ID domain \"%s\" is not a valid domain name",
                      domain);
        goto out;
    }

    msg = g_mime_message_new(TRUE);
    g_mime_message_add_mailbox(msg, GMIME_ADDRESS_TYPE_FROM, from_name, from_addr);
    if (m->to_name) {
        to_name = fold_to_line(m->to_name);
    }
    g_mime_message_add_mailbox(msg, GMIME_ADDRESS_TYPE_TO, to_name && to_name[0] ? to_name : NULL,
                               m->to);
    subject = fold_to_line(m->subject ? m->subject : "");
    g_mime_message_set_subject(msg, subject, "utf-8");
    dt = g_date_time_new_from_unix_utc(date);
    if (!dt) {
        rc = nerr_set(err, NULL, 0, 0, "date %" PRId64 " is out of range", (int64_t)date);
        goto out;
    }
    g_mime_message_set_date(msg, dt);
    g_mime_message_set_message_id(msg, id.s);

    /* RFC 3834: tells autoresponders (vacation mail) not to answer us. */
    g_mime_object_set_header(GMIME_OBJECT(msg), "Auto-Submitted", "auto-generated", NULL);
    if (m->marketing) {
        g_mime_object_set_header(GMIME_OBJECT(msg), "Precedence", "bulk", NULL);
        if (m->unsubscribe_url) {
            char *lu = xasprintf("<%s>", m->unsubscribe_url);
            set_raw_header(GMIME_OBJECT(msg), "List-Unsubscribe", lu);
            free(lu);
            /* RFC 8058: the URL unsubscribes on a bare POST, no page to click. */
            g_mime_object_set_header(GMIME_OBJECT(msg), "List-Unsubscribe-Post",
                                     "List-Unsubscribe=One-Click", NULL);
        }
    }
    if (m->rule) {
        rule = fold_to_line(m->rule);
        g_mime_object_set_header(GMIME_OBJECT(msg), "X-Nudge-Rule", rule, "utf-8");
    }
    {
        char idbuf[32];
        snprintf(idbuf, sizeof(idbuf), "%" PRId64, m->delivery_id);
        g_mime_object_set_header(GMIME_OBJECT(msg), "X-Nudge-Delivery", idbuf, NULL);
    }

    if (m->text && m->html) {
        GMimeMultipart *alt = g_mime_multipart_new_with_subtype("alternative");
        GMimeObject *part;
        /* A boundary derived from the key keeps retries byte-identical; the
         * "=-" prefix can never occur in quoted-printable or base64 text. */
        sbuf_adds(&boundary, "=-nudge-");
        add_hash_hex(&boundary, "boundary:", id_key(m, keybuf, sizeof(keybuf)), 24);
        g_mime_multipart_set_boundary(alt, boundary.s);
        part = text_part("plain", m->text);
        g_mime_multipart_add(alt, part);
        g_object_unref(part);
        part = text_part("html", m->html);
        g_mime_multipart_add(alt, part);
        g_object_unref(part);
        body = GMIME_OBJECT(alt);
    } else {
        body = m->text ? text_part("plain", m->text) : text_part("html", m->html);
    }
    g_mime_message_set_mime_part(msg, body);

    opts = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(opts, GMIME_NEWLINE_FORMAT_DOS);
    rendered = g_mime_object_to_string(GMIME_OBJECT(msg), opts);
    if (!rendered) {
        rc = nerr_set(err, NULL, 0, 0, "GMime could not write the message");
        rc = -EIO;
        goto out;
    }
    sbuf_adds(out, rendered);
    if (out->len < 2 || memcmp(out->s + out->len - 2, "\r\n", 2) != 0)
        sbuf_add(out, "\r\n", 2);

out:
    if (rendered)
        g_free(rendered);
    if (opts)
        g_mime_format_options_free(opts);
    if (body)
        g_object_unref(body);
    if (dt)
        g_date_time_unref(dt);
    if (msg)
        g_object_unref(msg);
    free(from_name);
    free(from_addr);
    free(to_name);
    free(subject);
    free(rule);
    sbuf_free(&id);
    sbuf_free(&boundary);
    if (rc < 0)
        sbuf_free(out);
    return rc;
}
