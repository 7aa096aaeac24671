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
 *
 * Two writers give the same bytes: a message whose parts are all 7bit is
 * written directly from GMime's formatted header values and the canonical
 * text (write_direct), any other by GMime's own writer. The unit tests and
 * tests/fuzz/fuzz_mime.c hold the first to the second, byte for byte.
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
/* CRLF output; read-only once made, shared by every thread. */
static GMimeFormatOptions *mime_format;
/* Each thread's struct mime_cache (see below). */
static pthread_key_t mime_cache_key;
/* Every live cache, so that none is unreachable while its thread runs. */
static pthread_mutex_t mime_caches_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mime_cache *mime_caches;

/*
 * One thread's composer state. Building a GMimeMessage costs a few dozen
 * GObjects (a header list with one object per header, six address lists,
 * their change events) and freeing it as many again; for a batch of
 * messages that differ only in their values that was most of the
 * composition time. So each thread keeps the message it composed last, and
 * the next message with the same From and the same set of headers rewrites
 * that message's header values in place (GMime keeps a header's position
 * when its value is set) and gets a new body. Any other message builds a
 * fresh one, exactly as the first did, so the output is the same bytes
 * either way.
 */
struct mime_cache {
    GMimeMessage *msg; /* last message composed, NULL if none */
    unsigned shape;    /* MIME_HAS_* of msg */
    /* The values msg's headers carry now, so that an unchanged one is not
     * set again (NULL: none, or not known). */
    char *to, *to_name, *subject, *rule;
    ntime_t date;
    /* msg's MIME part, kept and refilled while the next message has the
     * same parts: the multipart/alternative (or the single text part) and
     * the text/plain and text/html parts in it (NULL if absent). */
    GMimeObject *body;
    GMimeTextPart *plain, *html;
    /* The next message's text and html in canonical form (CRLF, see
     * canon_crlf) and what canon_crlf saw in them; while both are 7bit the
     * parts' content is written from here and never handed to GMime. */
    struct sbuf canon_plain, canon_html;
    bool seven_plain, seven_html;
    bool ascii_plain, ascii_html;   /* no byte >= 0x80: valid UTF-8 as it is */
    char *from;                     /* the From spec of msg, NULL if none */
    char *from_name;                /* its display name, NULL if none */
    char *from_addr;                /* its address */
    struct mime_cache *prev, *next; /* in mime_caches */
};

/* The optional headers a message has; a cached message is reused only for a
 * message with the same ones, so no header is ever added or removed. */
#define MIME_HAS_MARKETING 1u   /* Precedence */
#define MIME_HAS_UNSUBSCRIBE 2u /* List-Unsubscribe, List-Unsubscribe-Post */
#define MIME_HAS_RULE 4u        /* X-Nudge-Rule */

static void
cache_forget_body(struct mime_cache *c)
{
    if (c->body)
        g_object_unref(c->body);
    c->body = NULL;
    c->plain = c->html = NULL;
}

static void
cache_forget_message(struct mime_cache *c)
{
    if (c->msg)
        g_object_unref(c->msg);
    c->msg = NULL;
    c->shape = 0;
    free(c->to);
    free(c->to_name);
    free(c->subject);
    free(c->rule);
    c->to = c->to_name = c->subject = c->rule = NULL;
    c->date = 0;
    cache_forget_body(c);
}

static void
cache_destroy(struct mime_cache *c)
{
    cache_forget_message(c);
    free(c->from);
    free(c->from_name);
    free(c->from_addr);
    sbuf_free(&c->canon_plain);
    sbuf_free(&c->canon_html);
    free(c);
}

static void
cache_free(void *p)
{
    struct mime_cache *c = p;
    if (!c)
        return;
    pthread_mutex_lock(&mime_caches_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        mime_caches = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&mime_caches_lock);
    cache_destroy(c);
}

static void
mime_init_once(void)
{
    g_mime_init();
    mime_format = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(mime_format, GMIME_NEWLINE_FORMAT_DOS);
    /* The destructor runs when a thread exits; the process's own exit
     * leaves the caches reachable from mime_caches. */
    pthread_key_create(&mime_cache_key, cache_free);
}

/* GMime must be initialised once per process before any other call; the
 * dispatcher's worker threads may race to be first. */
static void
mime_init(void)
{
    pthread_once(&mime_once, mime_init_once);
}

static struct mime_cache *
cache_get(void)
{
    struct mime_cache *c = pthread_getspecific(mime_cache_key);
    if (c)
        return c;
    c = xcalloc(1, sizeof(*c));
    pthread_mutex_lock(&mime_caches_lock);
    c->next = mime_caches;
    if (mime_caches)
        mime_caches->prev = c;
    mime_caches = c;
    pthread_mutex_unlock(&mime_caches_lock);
    pthread_setspecific(mime_cache_key, c);
    return c;
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

/* What GMime's best-encoding filter would find in a canonical (CRLF) text,
 * gathered while canon_crlf writes it: enough to know when its answer under
 * the 7-bit constraint is 7bit without running the filter. */
struct text_stats {
    bool eight;     /* a byte >= 0x80 */
    size_t maxline; /* longest line in octets before its LF (the CR counts) */
    bool from;      /* a line starts with "From " (GMime then picks QP) */
};

/* Text with every line break (CRLF, LF or a lone CR) as CRLF and a final
 * CRLF, the canonical form RFC 2045 wants before a transfer encoding. Copies
 * whole runs between line breaks rather than byte by byte. */
static void
canon_crlf(const char *s, struct sbuf *out, struct text_stats *st)
{
    const char *p = s;
    size_t n = strlen(s);
    memset(st, 0, sizeof(*st));
    /* out keeps its buffer from the last message: room for s with a CR
     * added to every tenth byte or so is rarely outgrown. */
    out->len = 0;
    sbuf_reserve(out, n + n / 8 + 16);
    out->s[0] = '\0';
    for (;;) {
        const char *q = p;
        unsigned char high = 0;
        if (strncmp(p, "From ", 5) == 0)
            st->from = true;
        while (*q && *q != '\r' && *q != '\n')
            high |= (unsigned char)*q++;
        if (high & 0x80)
            st->eight = true;
        if ((size_t)(q - p) + 1 > st->maxline)
            st->maxline = (size_t)(q - p) + 1;
        if (!*q) {
            /* The last line, or nothing after the final line break. */
            if (q > p || out->len == 0) {
                sbuf_add(out, p, (size_t)(q - p));
                sbuf_add(out, "\r\n", 2);
            }
            break;
        }
        sbuf_add(out, p, (size_t)(q - p));
        sbuf_add(out, "\r\n", 2);
        p = q[0] == '\r' && q[1] == '\n' ? q + 2 : q + 1;
    }
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

static void freeze_headers(GMimeObject *obj);

/* True when GMime's best-encoding filter would answer 7bit under the 7-bit
 * constraint for a text with these statistics: ASCII, lines of at most 998
 * octets, no "From " line. */
static bool
stats_7bit(const struct text_stats *st)
{
    return !st->eight && !st->from && st->maxline <= 998;
}

/* Sets part's Content-Transfer-Encoding to enc unless it has it already. */
static void
part_encoding(GMimePart *part, GMimeContentEncoding enc)
{
    if (g_mime_part_get_content_encoding(part) != enc) {
        g_mime_part_set_content_encoding(part, enc);
        freeze_headers(GMIME_OBJECT(part));
    }
}

/* Fills a text part labelled utf-8 with canonical text (canon_crlf) and the
 * transfer encoding GMime picks under a 7-bit constraint: 7bit for short
 * ASCII lines, else quoted-printable or base64, whichever is smaller for
 * this content. The 7bit case is known from canon_crlf's statistics, exactly
 * what GMime's filter would say; only other text goes through
 * g_mime_part_get_best_content_encoding. A refilled part keeps its
 * Content-Transfer-Encoding header when the encoding is the one it has. */
static void
text_fill(GMimePart *part, const struct sbuf *canon, bool seven)
{
    GMimeStream *stream;
    GMimeDataWrapper *content;
    GMimeContentEncoding enc;

    stream = g_mime_stream_mem_new_with_buffer(canon->s, canon->len);
    content = g_mime_data_wrapper_new_with_stream(stream, GMIME_CONTENT_ENCODING_DEFAULT);
    g_object_unref(stream);
    g_mime_part_set_content(part, content);
    g_object_unref(content);
    if (seven)
        enc = GMIME_CONTENT_ENCODING_7BIT;
    else
        enc = g_mime_part_get_best_content_encoding(part, GMIME_ENCODING_CONSTRAINT_7BIT);
    if (enc == GMIME_CONTENT_ENCODING_DEFAULT)
        enc = GMIME_CONTENT_ENCODING_7BIT;
    part_encoding(part, enc);
}

/* A new text/subtype part labelled utf-8; its content comes later. */
static GMimeTextPart *
text_part(const char *subtype)
{
    GMimeTextPart *part = g_mime_text_part_new_with_subtype(subtype);
    g_mime_text_part_set_charset(part, "utf-8");
    return part;
}

/* The first header called name of obj. */
static GMimeHeader *
header_of(GMimeObject *obj, const char *name)
{
    return g_mime_header_list_get_header(g_mime_object_get_header_list(obj), name);
}

/* Gives a header the raw value " value" and a newline, which GMime then
 * writes as it is instead of formatting the value again on every write. */
static void
header_set_raw(GMimeHeader *h, const char *value)
{
    char *raw = xasprintf(" %s\n", value);
    g_mime_header_set_raw_value(h, raw);
    free(raw);
}

/*
 * Makes GMime write every header of obj as it is now instead of formatting
 * its value again on each write: GMime formats a value when it is set and
 * keeps the result as the raw value, but writes a header whose value was set
 * (rather than its raw value) by formatting the value once more. Setting the
 * raw value to what it already is changes no byte of the output.
 */
static void
freeze_headers(GMimeObject *obj)
{
    GMimeHeaderList *list = g_mime_object_get_header_list(obj);
    int n = g_mime_header_list_get_count(list);
    for (int i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(list, i);
        const char *raw = g_mime_header_get_raw_value(h);
        char *copy;
        if (!raw)
            continue;
        copy = g_strdup(raw);
        g_mime_header_set_raw_value(h, copy);
        g_free(copy);
    }
}

/* Sets a header to exactly `value`, bypassing GMime's folding and RFC 2047
 * encoding; only for values already checked to be short printable ASCII. */
static void
set_raw_header(GMimeObject *obj, const char *name, const char *value)
{
    g_mime_object_set_header(obj, name, value, NULL);
    header_set_raw(header_of(obj, name), value);
}

/* True if GMime formats `value` for an unstructured header `name` as the
 * value itself on one line: words of printable ASCII between single spaces,
 * none that could be taken for an RFC 2047 encoded word, the whole line
 * short of the folding column. */
static bool
plain_short(const char *name, const char *value)
{
    size_t n = strlen(value);
    if (n == 0 || strlen(name) + 2 + n > 76 || value[0] == ' ' || value[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c < 0x20 || c > 0x7e || (c == ' ' && value[i + 1] == ' ') ||
            (c == '=' && value[i + 1] == '?'))
            return false;
    }
    return true;
}

/* The raw value GMime gives an unstructured header `name` of obj for value
 * in charset (" value\n", folded and RFC 2047-encoded as GMime does): the
 * value itself when plain_short, else formatted by GMime's own formatter
 * for the header. NULL for a value GMime would first trim, which the caller
 * sets the usual way. */
static char *
unstructured_raw(GMimeObject *obj, const char *name, const char *value, const char *charset)
{
    size_t n = strlen(value);
    char *graw, *raw;
    if (plain_short(name, value))
        return xasprintf(" %s\n", value);
    if (n == 0 || g_ascii_isspace(value[0]) || g_ascii_isspace(value[n - 1]))
        return NULL;
    graw = g_mime_header_format_default(header_of(obj, name), NULL, value, charset);
    raw = xstrdup(graw);
    g_free(graw);
    return raw;
}

/* Sets an unstructured header of a message built by build_message to what
 * GMime would write for value in charset (see unstructured_raw). False
 * (nothing set) for a value GMime would first trim. */
static bool
set_unstructured(GMimeObject *obj, const char *name, const char *value, const char *charset)
{
    char *raw = unstructured_raw(obj, name, value, charset);
    if (!raw)
        return false;
    g_mime_header_set_raw_value(header_of(obj, name), raw);
    free(raw);
    return true;
}

/* True if GMime writes a To header of one mailbox (name may be NULL) as
 * "name <addr>" or "addr" on one line: a name of ASCII letters and digits
 * between single spaces, an address of characters that need neither quoting
 * nor IDN encoding (lowercase domain), the line short of the folding column. */
static bool
to_plain(const char *name, const char *addr)
{
    const char *at = strrchr(addr, '@');
    size_t len = strlen("To: ") + strlen(addr);
    if (!at)
        return false;
    for (const char *p = addr; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              (p < at && ((c >= 'A' && c <= 'Z') || c == '_' || c == '+')) || p == at))
            return false;
    }
    if (name) {
        size_t n = strlen(name);
        if (n == 0 || name[0] == ' ' || name[n - 1] == ' ')
            return false;
        for (size_t i = 0; i < n; i++) {
            char c = name[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (c == ' ' && name[i + 1] != ' ')))
                return false;
        }
        len += n + strlen(" <>");
    }
    return len <= 76;
}

static int
check_text(const char *what, const char *s, struct nerr *err)
{
    if (s && !utf8_valid(s, strlen(s)))
        return nerr_set(err, NULL, 0, 0, "email %s is not valid UTF-8", what);
    return 0;
}

/* The From setting parsed, from the thread's cache when it is the one the
 * cached message carries (a new one drops that message). */
static int
cache_from(struct mime_cache *c, const char *from)
{
    char *name, *addr;
    if (c->from && from && strcmp(c->from, from) == 0)
        return 0;
    if (mime_parse_mailbox(from, &name, &addr) < 0)
        return -EINVAL;
    cache_forget_message(c);
    free(c->from);
    free(c->from_name);
    free(c->from_addr);
    c->from = xstrdup(from);
    c->from_name = name;
    c->from_addr = addr;
    return 0;
}

/* Remembers in *slot a copy of v (NULL for none). */
static void
remember(char **slot, const char *v)
{
    free(*slot);
    *slot = v ? xstrdup(v) : NULL;
}

static bool
same(const char *a, const char *b)
{
    return a ? b && strcmp(a, b) == 0 : !b;
}

/* A new message with every header of m, in the order GMime and the calls
 * below give them: Date, From, Subject, To (GMime's own slots), Message-Id,
 * Auto-Submitted, [Precedence, [List-Unsubscribe, List-Unsubscribe-Post]],
 * [X-Nudge-Rule], X-Nudge-Delivery; MIME-Version comes with the body. */
static GMimeMessage *
build_message(const struct mime_cache *c, const struct nudge_message *m, const char *to_name,
              const char *subject, GDateTime *dt, const char *id, const char *rule,
              const char *delivery)
{
    GMimeMessage *msg = g_mime_message_new(TRUE);
    g_mime_message_add_mailbox(msg, GMIME_ADDRESS_TYPE_FROM, c->from_name, c->from_addr);
    g_mime_message_add_mailbox(msg, GMIME_ADDRESS_TYPE_TO, to_name, m->to);
    g_mime_message_set_subject(msg, subject, "utf-8");
    g_mime_message_set_date(msg, dt);
    g_mime_message_set_message_id(msg, id);

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
    if (rule)
        g_mime_object_set_header(GMIME_OBJECT(msg), "X-Nudge-Rule", rule, "utf-8");
    g_mime_object_set_header(GMIME_OBJECT(msg), "X-Nudge-Delivery", delivery, NULL);
    return msg;
}

/* Gives the cached message's To the mailbox name <addr> through GMime's
 * address list (for a mailbox GMime must quote or encode). */
static void
set_to_mailbox(struct mime_cache *c, const char *name, const char *addr)
{
    InternetAddressList *to = g_mime_message_get_addresses(c->msg, GMIME_ADDRESS_TYPE_TO);
    InternetAddress *ia = internet_address_mailbox_new(name, addr);
    internet_address_list_set_address(to, 0, ia);
    g_object_unref(ia);
}

/*
 * Rewrites the values of the cached message (of the same shape) for m; every
 * header keeps its place, so the result is what build_message would give.
 * A header whose value is the one it has is left alone, and a new value is
 * set raw, as GMime formats it, where that is known without GMime (plain
 * short ASCII, the Message-Id, the date) or else formatted by GMime once:
 * a value set the usual way is formatted when set and again on every write,
 * and GMime re-encodes an address list (with an IDN lookup per address)
 * each time.
 */
static void
update_message(struct mime_cache *c, const struct nudge_message *m, const char *to_name,
               const char *subject, ntime_t date, GDateTime *dt, const char *id, const char *rule,
               const char *delivery)
{
    GMimeObject *obj = GMIME_OBJECT(c->msg);
    char *s;

    if (!same(c->to, m->to) || !same(c->to_name, to_name)) {
        if (to_plain(to_name, m->to)) {
            if (to_name) {
                s = xasprintf("%s <%s>", to_name, m->to);
                header_set_raw(header_of(obj, "To"), s);
                free(s);
            } else {
                header_set_raw(header_of(obj, "To"), m->to);
            }
        } else {
            set_to_mailbox(c, to_name, m->to);
        }
        remember(&c->to, m->to);
        remember(&c->to_name, to_name);
    }
    if (!same(c->subject, subject)) {
        if (!set_unstructured(obj, "Subject", subject, "utf-8"))
            g_mime_message_set_subject(c->msg, subject, "utf-8");
        remember(&c->subject, subject);
    }
    if (c->date != date) {
        s = g_mime_utils_header_format_date(dt);
        header_set_raw(header_of(obj, "Date"), s);
        g_free(s);
        c->date = date;
    }
    s = xasprintf("<%s>", id);
    header_set_raw(header_of(obj, "Message-Id"), s);
    free(s);
    if (m->marketing && m->unsubscribe_url) {
        s = xasprintf("<%s>", m->unsubscribe_url);
        header_set_raw(header_of(obj, "List-Unsubscribe"), s);
        free(s);
    }
    if (rule && !same(c->rule, rule)) {
        if (!set_unstructured(obj, "X-Nudge-Rule", rule, "utf-8"))
            g_mime_object_set_header(obj, "X-Nudge-Rule", rule, "utf-8");
        remember(&c->rule, rule);
    }
    header_set_raw(header_of(obj, "X-Nudge-Delivery"), delivery);
}

/* The cache's canonical text of m's parts, and whether each is 7bit. */
static void
canon_body(struct mime_cache *c, const struct nudge_message *m)
{
    struct text_stats st;
    c->canon_plain.len = c->canon_html.len = 0;
    c->seven_plain = c->seven_html = c->ascii_plain = c->ascii_html = true;
    if (m->text) {
        canon_crlf(m->text, &c->canon_plain, &st);
        c->seven_plain = stats_7bit(&st);
        c->ascii_plain = !st.eight;
    }
    if (m->html) {
        canon_crlf(m->html, &c->canon_html, &st);
        c->seven_html = stats_7bit(&st);
        c->ascii_html = !st.eight;
    }
}

/* Gives the cached message m's parts: the ones it has, kept, when they are
 * the same parts as m's, else new ones. Their content is the cache's
 * canonical text (see write_direct and fill_parts). */
static void
set_parts(struct mime_cache *c, const struct nudge_message *m)
{
    if (c->body && (c->plain != NULL) == (m->text != NULL) &&
        (c->html != NULL) == (m->html != NULL))
        return;
    cache_forget_body(c);
    if (m->text && m->html) {
        /* Not g_mime_multipart_new_with_subtype: it reads a random boundary
         * from /dev/urandom (open, read, close) that would be replaced at
         * once. */
        GMimeMultipart *alt = g_object_new(GMIME_TYPE_MULTIPART, NULL);
        GMimeContentType *ctype = g_mime_content_type_new("multipart", "alternative");
        g_mime_object_set_content_type(GMIME_OBJECT(alt), ctype);
        g_object_unref(ctype);
        c->plain = text_part("plain");
        g_mime_multipart_add(alt, GMIME_OBJECT(c->plain));
        g_object_unref(c->plain);
        c->html = text_part("html");
        g_mime_multipart_add(alt, GMIME_OBJECT(c->html));
        g_object_unref(c->html);
        c->body = GMIME_OBJECT(alt);
    } else if (m->text) {
        c->plain = text_part("plain");
        c->body = GMIME_OBJECT(c->plain);
    } else {
        c->html = text_part("html");
        c->body = GMIME_OBJECT(c->html);
    }
}

/* m's MIME boundary into out (set up, reset first): derived from the key,
 * so that retries are byte-identical; the "=-" prefix can never occur in
 * quoted-printable or base64 text. Always "=-nudge-" and 24 hex digits. */
static void
boundary_of(const struct nudge_message *m, struct sbuf *out)
{
    char keybuf[32];
    sbuf_free(out);
    sbuf_adds(out, "=-nudge-");
    add_hash_hex(out, "boundary:", id_key(m, keybuf, sizeof(keybuf)), 24);
}

/* Gives a multipart body the boundary, in GMime. */
static void
set_boundary(struct mime_cache *c, const char *boundary)
{
    const char *old;
    if (!GMIME_IS_MULTIPART(c->body))
        return;
    old = g_mime_multipart_get_boundary(GMIME_MULTIPART(c->body));
    if (!old || strcmp(old, boundary) != 0)
        g_mime_multipart_set_boundary(GMIME_MULTIPART(c->body), boundary);
}

/*
 * Header values of one message for write_direct that the cached GMime
 * message does not carry: raw values (" value\n", as GMime formats them)
 * by header name. Setting a value in GMime makes it parse the value back
 * (an address list, a date, a Message-ID) and re-encode the body's
 * Content-Type for a new boundary; for the direct writer the values are
 * only written, so they are kept here and GMime's message is left alone.
 */
#define MIME_OVERRIDES 8
struct overrides {
    int n;
    int used; /* overrides put_headers found a header for */
    const char *name[MIME_OVERRIDES];
    char *raw[MIME_OVERRIDES];
};

static void
ov_add(struct overrides *o, const char *name, char *raw)
{
    if (o->n == MIME_OVERRIDES)
        abort(); /* a programming error: more overridden headers than exist */
    o->name[o->n] = name;
    o->raw[o->n++] = raw;
}

static const char *
ov_get(struct overrides *o, const char *name)
{
    for (int i = 0; o && i < o->n; i++)
        if (!strcmp(o->name[i], name)) {
            o->used++;
            return o->raw[i];
        }
    return NULL;
}

static void
ov_free(struct overrides *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->raw[i]);
    o->n = 0;
}

/*
 * What update_message would set, as overrides where that is known without
 * GMime's parser (see update_message for the formats); a To of a mailbox
 * GMime must encode, and values GMime would trim, are set in the message
 * the usual way instead. The cache's remembered values stay those of the
 * GMime message.
 */
static void
message_overrides(struct mime_cache *c, const struct nudge_message *m, const char *to_name,
                  const char *subject, ntime_t date, GDateTime *dt, const char *id,
                  const char *rule, const char *delivery, struct overrides *ov)
{
    GMimeObject *obj = GMIME_OBJECT(c->msg);
    char *raw;

    if (!same(c->to, m->to) || !same(c->to_name, to_name)) {
        if (to_plain(to_name, m->to)) {
            ov_add(ov, "To",
                   to_name ? xasprintf(" %s <%s>\n", to_name, m->to) : xasprintf(" %s\n", m->to));
        } else {
            set_to_mailbox(c, to_name, m->to);
            remember(&c->to, m->to);
            remember(&c->to_name, to_name);
        }
    }
    if (!same(c->subject, subject)) {
        if ((raw = unstructured_raw(obj, "Subject", subject, "utf-8"))) {
            ov_add(ov, "Subject", raw);
        } else {
            g_mime_message_set_subject(c->msg, subject, "utf-8");
            remember(&c->subject, subject);
        }
    }
    if (c->date != date) {
        /* The dispatcher's clock for a whole batch: set once in GMime. */
        char *s = g_mime_utils_header_format_date(dt);
        header_set_raw(header_of(obj, "Date"), s);
        g_free(s);
        c->date = date;
    }
    ov_add(ov, "Message-Id", xasprintf(" <%s>\n", id));
    if (m->marketing && m->unsubscribe_url)
        ov_add(ov, "List-Unsubscribe", xasprintf(" <%s>\n", m->unsubscribe_url));
    if (rule && !same(c->rule, rule)) {
        if ((raw = unstructured_raw(obj, "X-Nudge-Rule", rule, "utf-8"))) {
            ov_add(ov, "X-Nudge-Rule", raw);
        } else {
            g_mime_object_set_header(obj, "X-Nudge-Rule", rule, "utf-8");
            remember(&c->rule, rule);
        }
    }
    ov_add(ov, "X-Nudge-Delivery", xasprintf(" %s\n", delivery));
}

/* The body's Content-Type for a new boundary as an override: GMime's raw
 * value with the old boundary replaced (both are "=-nudge-" and 24 hex
 * digits, see boundary_of). False where that does not apply; the caller then
 * sets the boundary in GMime. */
static bool
boundary_override(struct mime_cache *c, const char *boundary, struct overrides *ov)
{
    const char *old, *raw, *at;
    char *copy;
    if (!GMIME_IS_MULTIPART(c->body))
        return true;
    old = g_mime_multipart_get_boundary(GMIME_MULTIPART(c->body));
    if (old && !strcmp(old, boundary))
        return true;
    raw = g_mime_header_get_raw_value(header_of(c->body, "Content-Type"));
    if (!old || strlen(old) != strlen(boundary) || !raw || !(at = strstr(raw, old)) ||
        strstr(at + 1, old))
        return false;
    copy = xstrdup(raw);
    memcpy(copy + (at - raw), boundary, strlen(boundary));
    ov_add(ov, "Content-Type", copy);
    return true;
}

/* Hands the cache's canonical text to the GMime parts, for GMime's writer. */
static void
fill_parts(struct mime_cache *c)
{
    if (c->plain)
        text_fill(GMIME_PART(c->plain), &c->canon_plain, c->seven_plain);
    if (c->html)
        text_fill(GMIME_PART(c->html), &c->canon_html, c->seven_html);
}

/* Makes the message carry its body (once per new body). */
static void
attach_body(struct mime_cache *c)
{
    if (g_mime_message_get_mime_part(c->msg) != c->body) {
        g_mime_message_set_mime_part(c->msg, c->body);
        freeze_headers(GMIME_OBJECT(c->msg));
    }
}

/* Appends s, each LF not preceded by CR written as CRLF: what the DOS
 * newline filter of GMime's writer does to a header's raw value. */
static void
put_crlf(struct sbuf *out, const char *s)
{
    const char *p = s, *lf;
    while ((lf = strchr(p, '\n'))) {
        size_t n = (size_t)(lf - p);
        bool cr = lf > s && lf[-1] == '\r';
        sbuf_add(out, p, n);
        sbuf_add(out, cr ? "\n" : "\r\n", cr ? 1 : 2);
        p = lf + 1;
    }
    sbuf_adds(out, p);
}

/* Appends obj's headers as GMime's writer gives them, "Name:" and the raw
 * value, or the value in ov for that name; the slots a GMimeMessage keeps
 * for headers never set (Reply-To, Cc, ...: no value, no raw value) are not
 * written. False for a header with a value but no raw value (GMime would
 * format it as it writes). */
static bool
put_headers(struct sbuf *out, GMimeObject *obj, struct overrides *ov)
{
    GMimeHeaderList *list = g_mime_object_get_header_list(obj);
    int n = g_mime_header_list_get_count(list);
    for (int i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(list, i);
        const char *name = g_mime_header_get_name(h);
        const char *raw = ov_get(ov, name);
        size_t len;
        if (!raw)
            raw = g_mime_header_get_raw_value(h);
        if (!raw && !g_mime_header_get_value(h))
            continue;
        if (!raw || !(len = strlen(raw)) || raw[len - 1] != '\n')
            return false;
        sbuf_adds(out, name);
        sbuf_addc(out, ':');
        put_crlf(out, raw);
    }
    return true;
}

/* Appends one text part, headers and content, from the cache. */
static bool
put_part(struct sbuf *out, GMimeTextPart *part, const struct sbuf *canon)
{
    if (!put_headers(out, GMIME_OBJECT(part), NULL))
        return false;
    sbuf_add(out, "\r\n", 2);
    sbuf_add(out, canon->s, canon->len);
    return true;
}

/*
 * Writes the cached message into out the way g_mime_object_write_to_stream
 * with CRLF newlines does, when every part is 7bit: the message headers, the
 * body's headers, a blank line, then the single part's text or each part
 * after its boundary line and the closing boundary. GMime's writer builds
 * and frees about ten stream and filter objects for every message, each
 * taking GLib's process-wide signal lock as it goes; with one writer per
 * dispatch thread that was the largest part of composing. The output is
 * compared with GMime's own writer, byte for byte, in
 * tests/unit/test_email.c. ov holds the message's header values GMime's
 * message does not carry (message_overrides, boundary_override), boundary
 * is the message's. False (out unspecified) where this does not apply: an
 * encoded part, or a header GMime would format as it writes.
 */
static bool
write_direct(struct mime_cache *c, struct overrides *ov, const char *boundary, struct sbuf *out)
{
    if (!c->seven_plain || !c->seven_html)
        return false;
    if (c->plain)
        part_encoding(GMIME_PART(c->plain), GMIME_CONTENT_ENCODING_7BIT);
    if (c->html)
        part_encoding(GMIME_PART(c->html), GMIME_CONTENT_ENCODING_7BIT);
    /* The headers are rarely more than 1.5 kB: one allocation. */
    sbuf_reserve(out, c->canon_plain.len + c->canon_html.len + 1536);
    ov->used = 0;
    if (!put_headers(out, GMIME_OBJECT(c->msg), ov) || !put_headers(out, c->body, ov))
        return false;
    /* Every override replaced a header (a name GMime spelt otherwise would
     * leave the old value in place): else GMime's writer does it. */
    if (ov->used != ov->n)
        return false;
    sbuf_add(out, "\r\n", 2);
    if (!GMIME_IS_MULTIPART(c->body)) {
        const struct sbuf *canon = c->plain ? &c->canon_plain : &c->canon_html;
        sbuf_add(out, canon->s, canon->len);
        return true;
    }
    if (g_mime_multipart_get_count(GMIME_MULTIPART(c->body)) != 2 ||
        g_mime_multipart_get_prologue(GMIME_MULTIPART(c->body)) ||
        g_mime_multipart_get_epilogue(GMIME_MULTIPART(c->body)))
        return false;
    sbuf_adds(out, "--");
    sbuf_adds(out, boundary);
    sbuf_add(out, "\r\n", 2);
    if (!put_part(out, c->plain, &c->canon_plain))
        return false;
    sbuf_adds(out, "\r\n--");
    sbuf_adds(out, boundary);
    sbuf_add(out, "\r\n", 2);
    if (!put_part(out, c->html, &c->canon_html))
        return false;
    sbuf_adds(out, "\r\n--");
    sbuf_adds(out, boundary);
    sbuf_adds(out, "--\r\n");
    return true;
}

/* mime_compose_email with the given cache, written by write_direct or,
 * where that does not apply or gmime_writer is set, by GMime's writer. */
static int
compose(struct mime_cache *cache, bool gmime_writer, const struct nudge_message *m,
        const char *from, const char *message_id_domain, ntime_t date, struct sbuf *out,
        struct nerr *err)
{
    char *to_name = NULL, *subject = NULL, *rule = NULL, *rendered = NULL;
    char idbuf[32];
    const char *domain;
    GDateTime *dt = NULL;
    struct sbuf id, boundary;
    struct overrides ov = {0};
    unsigned shape;
    bool direct;
    int rc = 0;

    sbuf_init(&id);
    sbuf_init(&boundary);
    sbuf_free(out);
    if (!m || !out)
        return -EINVAL;

    if (cache_from(cache, from) < 0) {
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
    /* The canonical text first: an all-ASCII part needs no UTF-8 check. */
    canon_body(cache, m);
    if ((rc = check_text("subject", m->subject, err)) < 0 ||
        (rc = check_text("recipient name", m->to_name, err)) < 0 ||
        (rc = check_text("text part", cache->ascii_plain ? NULL : m->text, err)) < 0 ||
        (rc = check_text("html part", cache->ascii_html ? NULL : m->html, err)) < 0 ||
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
    domain = message_id_domain ? message_id_domain : strrchr(cache->from_addr, '@') + 1;
    if (mime_message_id(m, domain, &id) < 0) {
        rc = nerr_set(err, NULL, 0, 0, "Message-ID domain \"%s\" is not a valid domain name",
                      domain);
        goto out;
    }
    dt = g_date_time_new_from_unix_utc(date);
    if (!dt) {
        rc = nerr_set(err, NULL, 0, 0, "date %" PRId64 " is out of range", (int64_t)date);
        goto out;
    }
    if (m->to_name) {
        to_name = fold_to_line(m->to_name);
        if (!to_name[0]) {
            free(to_name);
            to_name = NULL;
        }
    }
    subject = fold_to_line(m->subject ? m->subject : "");
    if (m->rule)
        rule = fold_to_line(m->rule);
    snprintf(idbuf, sizeof(idbuf), "%" PRId64, m->delivery_id);

    shape = (m->marketing ? MIME_HAS_MARKETING : 0) |
            (m->marketing && m->unsubscribe_url ? MIME_HAS_UNSUBSCRIBE : 0) |
            (m->rule ? MIME_HAS_RULE : 0);
    /* Only 7bit messages can be written directly (write_direct). */
    direct = !gmime_writer && cache->seven_plain && cache->seven_html;
    if (m->text && m->html) /* only a multipart body has a boundary */
        boundary_of(m, &boundary);
    if (cache->msg && cache->shape == shape) {
        if (direct)
            message_overrides(cache, m, to_name, subject, date, dt, id.s, rule, idbuf, &ov);
        else
            update_message(cache, m, to_name, subject, date, dt, id.s, rule, idbuf);
    } else {
        cache_forget_message(cache);
        cache->msg = build_message(cache, m, to_name, subject, dt, id.s, rule, idbuf);
        cache->shape = shape;
        cache->to = xstrdup(m->to);
        cache->to_name = to_name ? xstrdup(to_name) : NULL;
        cache->subject = xstrdup(subject);
        cache->rule = rule ? xstrdup(rule) : NULL;
        cache->date = date;
    }
    set_parts(cache, m);
    if (!direct || !boundary_override(cache, boundary.s, &ov))
        set_boundary(cache, boundary.s);
    attach_body(cache);

    if (!direct || !write_direct(cache, &ov, boundary.s, out)) {
        sbuf_free(out);
        if (ov.n) {
            /* The direct writer declined after all: GMime's message gets
             * every value instead. */
            ov_free(&ov);
            update_message(cache, m, to_name, subject, date, dt, id.s, rule, idbuf);
            set_boundary(cache, boundary.s);
        }
        fill_parts(cache);
        rendered = g_mime_object_to_string(GMIME_OBJECT(cache->msg), mime_format);
        if (!rendered) {
            nerr_set(err, NULL, 0, 0, "GMime could not write the message");
            cache_forget_message(cache);
            rc = -EIO;
            goto out;
        }
        sbuf_adds(out, rendered);
    }
    if (out->len < 2 || memcmp(out->s + out->len - 2, "\r\n", 2) != 0)
        sbuf_add(out, "\r\n", 2);

out:
    if (rendered)
        g_free(rendered);
    if (dt)
        g_date_time_unref(dt);
    free(to_name);
    free(subject);
    free(rule);
    sbuf_free(&id);
    sbuf_free(&boundary);
    ov_free(&ov);
    if (rc < 0)
        sbuf_free(out);
    return rc;
}

int
mime_compose_email(const struct nudge_message *m, const char *from, const char *message_id_domain,
                   ntime_t date, struct sbuf *out, struct nerr *err)
{
    mime_init();
    return compose(cache_get(), false, m, from, message_id_domain, date, out, err);
}

int
mime_compose_email_gmime(const struct nudge_message *m, const char *from,
                         const char *message_id_domain, ntime_t date, struct sbuf *out,
                         struct nerr *err)
{
    struct mime_cache *c;
    int rc;
    mime_init();
    c = xcalloc(1, sizeof(*c));
    rc = compose(c, true, m, from, message_id_domain, date, out, err);
    cache_destroy(c);
    return rc;
}
