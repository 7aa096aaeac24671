/*
 * template.c: the Mustache renderer: the tokenizer with mustache.js's
 * standalone-line rules, located syntax errors, context-stack lookup with
 * JavaScript's truthiness and String() conversion, partials (indented when
 * standalone, compiled on use and cached for one render), and the name
 * listing the rule checker uses. See template.h for the semantics chosen
 * where the spec and mustache.js disagree.
 *
 * The tokenizer mirrors mustache.js's parseTemplate() step by step (same
 * scans, same whitespace class, same order of checks) because byte-for-byte
 * agreement in the odd corners is easier to keep by construction than by
 * patching differences one at a time. The two places where the official
 * spec's core modules decide otherwise (a standalone last line without '\n',
 * dotted-name precedence) are marked where they depart from mustache.js.
 */
#include "template.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum tk {
    TK_TEXT,     /* literal text, at most one line (ends at a '\n') */
    TK_NAME,     /* {{x}}: escaped when TMPL_ESCAPE_HTML */
    TK_RAW,      /* {{{x}}} and {{&x}} */
    TK_SECTION,  /* {{#x}} */
    TK_INVERTED, /* {{^x}} */
    TK_CLOSE,    /* {{/x}}: only while parsing */
    TK_PARTIAL,  /* {{>x}} */
    TK_COMMENT,  /* {{!x}}: only while parsing */
    TK_DELIM,    /* {{=a b=}}: only while parsing */
};

struct node {
    enum tk type;
    bool deleted;      /* text on a standalone line, dropped when nesting */
    size_t off, len;   /* TK_TEXT: the text; tags: the name, both in tmpl->src */
    size_t tag_off;    /* where the tag's opening delimiter starts */
    int line, col;     /* of tag_off, 1-based, col in UTF-8 characters */
    size_t ind_off, ind_len; /* TK_PARTIAL on a standalone line: whitespace before it */
    size_t body;       /* sections: how many of the following nodes form the body */
};

/*
 * The compiled form is the node array in document order, where a section is
 * followed by its `body` nodes: a tree without pointers, walked by index.
 */
struct tmpl {
    char *name;
    char *src; /* private NUL-terminated copy; every node points into it */
    size_t len;
    struct node *nodes;
    size_t nnodes;
};

/* --- characters ------------------------------------------------------- */

/*
 * Length of the JavaScript \s character at s (0 if it is not one). mustache.js
 * tests whitespace with /\s/, which besides ASCII space and \t\n\v\f\r knows
 * U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 and
 * U+FEFF; a line indented with an ideographic space is still standalone there.
 */
static size_t
ws_len(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0)
        return 0;
    if (u[0] == ' ' || (u[0] >= '\t' && u[0] <= '\r'))
        return 1;
    if (u[0] == 0xC2 && n >= 2 && u[1] == 0xA0)
        return 2;
    if (n < 3)
        return 0;
    if (u[0] == 0xE1 && u[1] == 0x9A && u[2] == 0x80)
        return 3;
    if (u[0] == 0xE2 && u[1] == 0x80 &&
        ((u[2] >= 0x80 && u[2] <= 0x8A) || u[2] == 0xA8 || u[2] == 0xA9 || u[2] == 0xAF))
        return 3;
    if (u[0] == 0xE2 && u[1] == 0x81 && u[2] == 0x9F)
        return 3;
    if (u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x80)
        return 3;
    if (u[0] == 0xEF && u[1] == 0xBB && u[2] == 0xBF)
        return 3;
    return 0;
}

static size_t
skip_ws(const char *s, size_t pos, size_t n)
{
    size_t w;
    while (pos < n && (w = ws_len(s + pos, n - pos)) > 0)
        pos += w;
    return pos;
}

/* Moves end back over whitespace, not past start. */
static size_t
trim_back(const char *s, size_t start, size_t end)
{
    while (end > start) {
        size_t p = end - 1;
        while (p > start && end - p < 3 && ((unsigned char)s[p] & 0xC0) == 0x80)
            p--;
        if (ws_len(s + p, end - p) != end - p)
            break;
        end = p;
    }
    return end;
}

static bool
all_ws(const char *s, size_t a, size_t b)
{
    while (a < b) {
        size_t w = ws_len(s + a, b - a);
        if (!w)
            return false;
        a += w;
    }
    return true;
}

static const char *
find(const char *s, size_t pos, size_t n, const char *needle, size_t nlen)
{
    if (pos >= n)
        return NULL;
    return memmem(s + pos, n - pos, needle, nlen);
}

/* --- parsing ------------------------------------------------------------ */

struct parser {
    const char *name;
    const char *s;
    size_t n;
    struct nerr *err;
    /* Current delimiters: the defaults or slices of the source. */
    const char *open, *close;
    size_t open_len, close_len;
    /* The flat token list, as in mustache.js before squashTokens(). */
    struct node *toks;
    size_t ntoks, cap;
    /* The current line, for the standalone rule (mustache.js's stripSpace). */
    size_t line_first_tok, line_start_off;
    bool has_tag, non_space;
    /* Open sections (token indexes). */
    size_t stack[TMPL_MAX_NESTING];
    size_t depth;
    /* Cursor for offset -> line:col; offsets asked for only grow. */
    size_t lc_off;
    int lc_line, lc_col;
};

static void
locate(struct parser *p, size_t off, int *line, int *col)
{
    /* Incremental, so long one-line templates (minified HTML) stay linear. */
    for (; p->lc_off < off; p->lc_off++) {
        unsigned char c = (unsigned char)p->s[p->lc_off];
        if (c == '\n') {
            p->lc_line++;
            p->lc_col = 1;
        } else if ((c & 0xC0) != 0x80) {
            p->lc_col++;
        }
    }
    *line = p->lc_line;
    *col = p->lc_col;
}

static struct node *
push_tok(struct parser *p, enum tk type)
{
    struct node *t;
    if (p->ntoks == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->toks = xrealloc(p->toks, p->cap * sizeof(*p->toks));
    }
    t = &p->toks[p->ntoks++];
    memset(t, 0, sizeof(*t));
    t->type = type;
    return t;
}

static int
perr(struct parser *p, int line, int col, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int
perr(struct parser *p, int line, int col, const char *hint, const char *fmt, ...)
{
    char msg[NERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    nerr_set(p->err, p->name, line, col, "%s", msg);
    if (hint)
        nerr_hint(p->err, "%s", hint);
    nerr_source(p->err, p->s, p->n);
    return -EINVAL;
}

/*
 * End of a line of text (after its '\n'): if the line held a tag and nothing
 * but whitespace and non-interpolating tags, drop all its text, newline
 * included. A partial that was the line's first tag keeps the whitespace
 * before it as the indentation of the partial's lines.
 */
static void
end_line(struct parser *p, size_t next_line_off)
{
    if (p->has_tag && !p->non_space) {
        bool first_tag = true;
        for (size_t i = p->line_first_tok; i < p->ntoks; i++) {
            struct node *t = &p->toks[i];
            if (t->type == TK_TEXT) {
                t->deleted = true;
                continue;
            }
            if (first_tag && t->type == TK_PARTIAL && t->tag_off > p->line_start_off) {
                t->ind_off = p->line_start_off;
                t->ind_len = t->tag_off - p->line_start_off;
            }
            first_tag = false;
        }
    }
    p->has_tag = false;
    p->non_space = false;
    p->line_first_tok = p->ntoks;
    p->line_start_off = next_line_off;
}

static void
scan_text(struct parser *p, size_t a, size_t b)
{
    while (a < b) {
        const char *nl = memchr(p->s + a, '\n', b - a);
        size_t end = nl ? (size_t)(nl - p->s) + 1 : b;
        struct node *t = push_tok(p, TK_TEXT);
        t->off = a;
        t->len = end - a;
        t->tag_off = a;
        if (!all_ws(p->s, a, end))
            p->non_space = true;
        if (nl)
            end_line(p, end);
        a = end;
    }
}

/* "{{/name}}" with the current delimiters, for messages. */
static void
tag_text(const struct parser *p, char sigil, const char *name, size_t len, char *buf,
         size_t size)
{
    snprintf(buf, size, "%.*s%c%.*s%.*s", (int)p->open_len, p->open, sigil, (int)len, name,
             (int)p->close_len, p->close);
}

/* Applies a {{=open close=}} tag's value, split like mustache.js's split(/\s+/, 2). */
static int
set_delims(struct parser *p, size_t off, size_t len, int line, int col)
{
    const char *v = p->s + off;
    size_t a_end = 0, b_start, b_end;
    while (a_end < len && !ws_len(v + a_end, len - a_end))
        a_end++;
    b_start = skip_ws(v, a_end, len);
    if (a_end == 0 || b_start >= len) {
        char hint[256];
        snprintf(hint, sizeof(hint),
                 "write the new opening and closing delimiters separated by a space, "
                 "e.g. %.*s=<%% %%>=%.*s",
                 (int)p->open_len, p->open, (int)p->close_len, p->close);
        return perr(p, line, col, hint, "invalid delimiters '%.*s'", (int)len, v);
    }
    b_end = b_start;
    while (b_end < len && !ws_len(v + b_end, len - b_end))
        b_end++;
    p->open = v;
    p->open_len = a_end;
    p->close = v + b_start;
    p->close_len = b_end - b_start;
    return 0;
}

/* Parses the tag whose opening delimiter is at `at`; returns the offset after it. */
static int
scan_tag(struct parser *p, size_t at, size_t *next)
{
    const char *s = p->s;
    size_t n = p->n, pos, voff, vend;
    const char *c;
    char sigil = 0;
    enum tk type = TK_NAME;
    int line, col;
    struct node *t;

    locate(p, at, &line, &col);
    pos = skip_ws(s, at + p->open_len, n);
    p->has_tag = true;
    if (pos < n && strchr("#^/>{&=!", s[pos]) && s[pos] != '\0')
        sigil = s[pos++];
    pos = skip_ws(s, pos, n);
    voff = pos;

    if (sigil == '=') {
        const char *eq = memchr(s + pos, '=', n - pos);
        if (!eq)
            goto unclosed;
        vend = trim_back(s, voff, (size_t)(eq - s));
        c = find(s, (size_t)(eq - s) + 1, n, p->close, p->close_len);
        if (!c)
            goto unclosed;
        pos = (size_t)(c - s) + p->close_len;
    } else if (sigil == '{') {
        /* Look for '}' followed by the closing delimiter, as mustache.js's
         * closingCurlyRe does. */
        char *curly = xmalloc(p->close_len + 1);
        curly[0] = '}';
        memcpy(curly + 1, p->close, p->close_len);
        c = find(s, pos, n, curly, p->close_len + 1);
        free(curly);
        if (!c)
            goto unclosed;
        vend = trim_back(s, voff, (size_t)(c - s));
        pos = (size_t)(c - s) + 1 + p->close_len;
    } else {
        c = find(s, pos, n, p->close, p->close_len);
        if (!c)
            goto unclosed;
        vend = trim_back(s, voff, (size_t)(c - s));
        pos = (size_t)(c - s) + p->close_len;
    }

    switch (sigil) {
    case '#': type = TK_SECTION; break;
    case '^': type = TK_INVERTED; break;
    case '/': type = TK_CLOSE; break;
    case '>': type = TK_PARTIAL; break;
    case '{': case '&': type = TK_RAW; break;
    case '=': type = TK_DELIM; break;
    case '!': type = TK_COMMENT; break;
    default: type = TK_NAME; break;
    }

    if (vend == voff && type != TK_COMMENT) {
        char hint[256];
        if (type == TK_DELIM)
            return set_delims(p, voff, 0, line, col);
        snprintf(hint, sizeof(hint),
                 "put a name between the delimiters, e.g. %.*s%.1sfirst_name%s%.*s",
                 (int)p->open_len, p->open, sigil ? &sigil : "", sigil == '{' ? "}" : "",
                 (int)p->close_len, p->close);
        return perr(p, line, col, hint, "empty tag");
    }

    t = push_tok(p, type);
    t->off = voff;
    t->len = vend - voff;
    t->tag_off = at;
    t->line = line;
    t->col = col;

    if (type == TK_SECTION || type == TK_INVERTED) {
        if (p->depth == TMPL_MAX_NESTING)
            return perr(p, line, col, "flatten the template or move a part into a partial",
                        "sections nested more than %d deep", TMPL_MAX_NESTING);
        p->stack[p->depth++] = p->ntoks - 1;
    } else if (type == TK_CLOSE) {
        char want[300], got[300], hint[700];
        const struct node *o;
        if (p->depth == 0) {
            tag_text(p, '#', s + voff, vend - voff, want, sizeof(want));
            tag_text(p, '/', s + voff, vend - voff, got, sizeof(got));
            snprintf(hint, sizeof(hint), "remove %s or open the section with %s before it", got,
                     want);
            return perr(p, line, col, hint, "%s closes a section that was never opened", got);
        }
        o = &p->toks[p->stack[--p->depth]];
        if (o->len != t->len || memcmp(s + o->off, s + t->off, t->len) != 0) {
            tag_text(p, '/', s + o->off, o->len, want, sizeof(want));
            tag_text(p, '/', s + voff, vend - voff, got, sizeof(got));
            snprintf(hint, sizeof(hint),
                     "sections close innermost first: add %s before this tag, or fix the name",
                     want);
            return perr(p, line, col, hint,
                        "%s does not match the open section '%.*s' (opened at %d:%d)", got,
                        (int)o->len, s + o->off, o->line, o->col);
        }
    } else if (type == TK_NAME || type == TK_RAW) {
        p->non_space = true;
    } else if (type == TK_DELIM) {
        int r = set_delims(p, voff, vend - voff, line, col);
        if (r < 0)
            return r;
    }
    *next = pos;
    return 0;

unclosed: {
        char hint[300];
        snprintf(hint, sizeof(hint), "close the tag with %s%.*s",
                 sigil == '{' ? "}" : sigil == '=' ? "=" : "", (int)p->close_len, p->close);
        return perr(p, line, col, hint, "unclosed tag");
    }
}

/*
 * Drops deleted text, comments, delimiter changes and closing tags, merges
 * adjacent text, and records each section's body length.
 */
static void
nest(struct parser *p, struct tmpl *t)
{
    size_t stack[TMPL_MAX_NESTING], depth = 0, n = 0;
    t->nodes = xmalloc((p->ntoks ? p->ntoks : 1) * sizeof(*t->nodes));
    for (size_t i = 0; i < p->ntoks; i++) {
        const struct node *k = &p->toks[i];
        switch (k->type) {
        case TK_TEXT:
            if (k->deleted)
                break;
            if (n > 0 && t->nodes[n - 1].type == TK_TEXT &&
                t->nodes[n - 1].off + t->nodes[n - 1].len == k->off) {
                t->nodes[n - 1].len += k->len;
                break;
            }
            t->nodes[n++] = *k;
            break;
        case TK_COMMENT:
        case TK_DELIM:
            break;
        case TK_SECTION:
        case TK_INVERTED:
            stack[depth++] = n;
            t->nodes[n++] = *k;
            break;
        case TK_CLOSE:
            depth--;
            t->nodes[stack[depth]].body = n - stack[depth] - 1;
            break;
        default:
            t->nodes[n++] = *k;
        }
    }
    t->nnodes = n;
}

int
tmpl_compile(const char *name, const char *src, size_t len, struct tmpl **out, struct nerr *err)
{
    struct parser p;
    struct tmpl *t;
    size_t pos = 0;
    int r = 0;

    *out = NULL;
    t = xcalloc(1, sizeof(*t));
    t->name = xstrdup(name ? name : "template");
    t->src = xmalloc(len + 1);
    if (len)
        memcpy(t->src, src, len);
    t->src[len] = '\0';
    t->len = len;

    memset(&p, 0, sizeof(p));
    p.name = t->name;
    p.s = t->src;
    p.n = len;
    p.err = err;
    p.open = "{{";
    p.close = "}}";
    p.open_len = p.close_len = 2;
    p.lc_line = 1;
    p.lc_col = 1;

    while (pos < len) {
        const char *o = find(p.s, pos, len, p.open, p.open_len);
        size_t at = o ? (size_t)(o - p.s) : len;
        scan_text(&p, pos, at);
        if (!o)
            break;
        r = scan_tag(&p, at, &pos);
        if (r < 0)
            goto out;
    }
    /* The last line is standalone too when no '\n' ends it, as the spec's
     * "Standalone Without Newline" cases require (mustache.js 3 keeps its
     * whitespace): there is no next line, so it starts at the end. */
    if (p.has_tag)
        end_line(&p, len);
    if (p.depth > 0) {
        const struct node *o = &p.toks[p.stack[p.depth - 1]];
        char close[300], hint[600];
        tag_text(&p, '/', p.s + o->off, o->len, close, sizeof(close));
        snprintf(hint, sizeof(hint),
                 "section '%.*s' opened at %d:%d is never closed; add %s where it should end",
                 (int)o->len, p.s + o->off, o->line, o->col, close);
        r = perr(&p, o->line, o->col, hint, "unclosed section '%.*s'", (int)o->len,
                 p.s + o->off);
        goto out;
    }
    nest(&p, t);
    *out = t;
    t = NULL;
out:
    free(p.toks);
    tmpl_free(t);
    return r;
}

void
tmpl_free(struct tmpl *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->src);
    free(t->nodes);
    free(t);
}

/* --- values --------------------------------------------------------------- */

/* JavaScript's Number.prototype.toString() for a finite double. */
static void
add_js_number(struct sbuf *b, double x)
{
    char e[64], digits[32];
    int p, k = 0, n;
    long exp10;
    char *end;

    if (isnan(x)) {
        sbuf_adds(b, "NaN");
        return;
    }
    if (isinf(x)) {
        sbuf_adds(b, x < 0 ? "-Infinity" : "Infinity");
        return;
    }
    if (x == 0) { /* -0 too */
        sbuf_addc(b, '0');
        return;
    }
    if (x < 0) {
        sbuf_addc(b, '-');
        x = -x;
    }
    /* The fewest significant digits that read back as x; printf rounds
     * correctly, so the first precision that round-trips gives the digits
     * JavaScript picks. */
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof(e), "%.*e", p - 1, x);
        if (strtod(e, NULL) == x)
            break;
    }
    end = strchr(e, 'e');
    for (char *c = e; c < end; c++)
        if (*c >= '0' && *c <= '9')
            digits[k++] = *c;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    exp10 = strtol(end + 1, NULL, 10);
    n = (int)exp10 + 1; /* the decimal point sits after n digits */

    if (k <= n && n <= 21) {
        sbuf_add(b, digits, (size_t)k);
        for (int i = k; i < n; i++)
            sbuf_addc(b, '0');
    } else if (0 < n && n <= 21) {
        sbuf_add(b, digits, (size_t)n);
        sbuf_addc(b, '.');
        sbuf_add(b, digits + n, (size_t)(k - n));
    } else if (-6 < n && n <= 0) {
        sbuf_adds(b, "0.");
        for (int i = n; i < 0; i++)
            sbuf_addc(b, '0');
        sbuf_add(b, digits, (size_t)k);
    } else {
        sbuf_addc(b, digits[0]);
        if (k > 1) {
            sbuf_addc(b, '.');
            sbuf_add(b, digits + 1, (size_t)(k - 1));
        }
        sbuf_printf(b, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
    }
}

/* JavaScript's String(v) for a JSON value. */
static void
add_js_string(struct sbuf *b, const json_t *v)
{
    size_t i;
    json_t *el;
    switch (json_typeof(v)) {
    case JSON_STRING:
        sbuf_add(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        sbuf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        add_js_number(b, json_real_value(v));
        break;
    case JSON_TRUE:
        sbuf_adds(b, "true");
        break;
    case JSON_FALSE:
        sbuf_adds(b, "false");
        break;
    case JSON_NULL:
        sbuf_adds(b, "null");
        break;
    case JSON_ARRAY: /* Array.prototype.join(): null elements become "" */
        json_array_foreach(v, i, el) {
            if (i > 0)
                sbuf_addc(b, ',');
            if (!json_is_null(el))
                add_js_string(b, el);
        }
        break;
    case JSON_OBJECT:
        sbuf_adds(b, "[object Object]");
        break;
    }
}

/* mustache.js's escapeHtml() map, byte for byte. */
static void
add_escaped(struct sbuf *b, const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *ent;
        switch (s[i]) {
        case '&': ent = "&amp;"; break;
        case '<': ent = "&lt;"; break;
        case '>': ent = "&gt;"; break;
        case '"': ent = "&quot;"; break;
        case '\'': ent = "&#39;"; break;
        case '/': ent = "&#x2F;"; break;
        case '`': ent = "&#x60;"; break;
        case '=': ent = "&#x3D;"; break;
        default: continue;
        }
        sbuf_add(b, s + run, i - run);
        sbuf_adds(b, ent);
        run = i + 1;
    }
    sbuf_add(b, s + run, n - run);
}

static bool
js_truthy(const json_t *v)
{
    if (!v)
        return false;
    switch (json_typeof(v)) {
    case JSON_NULL:
    case JSON_FALSE:
        return false;
    case JSON_INTEGER:
        return json_integer_value(v) != 0;
    case JSON_REAL:
        return json_real_value(v) != 0 && !isnan(json_real_value(v));
    case JSON_STRING:
        return json_string_length(v) > 0;
    default:
        return true;
    }
}

/* Length of a UTF-8 string in UTF-16 code units, which is what .length counts. */
static size_t
utf16_len(const char *s, size_t n)
{
    size_t units = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) != 0x80)
            units += c >= 0xF0 ? 2 : 1;
    }
    return units;
}

/* A canonical array index ("0", "17", not "01" or "-1"); SIZE_MAX if not one. */
static size_t
parse_index(const char *k, size_t n)
{
    size_t v = 0;
    if (n == 0 || n > 15 || (k[0] == '0' && n > 1))
        return SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < '0' || k[i] > '9')
            return SIZE_MAX;
        v = v * 10 + (size_t)(k[i] - '0');
    }
    return v;
}

struct rstate {
    unsigned flags;
    tmpl_partial_fn partial;
    void *ud;
    struct sbuf *out;
    struct nerr *err;
    int depth;              /* partials currently being rendered */
    json_t *scratch;        /* values made up during lookup ("length"), freed at the end */
    struct pcache *partials;
};

static json_t *
keep(struct rstate *st, json_t *v)
{
    json_array_append_new(st->scratch, v);
    return v;
}

/*
 * JavaScript's `key in v` for objects and arrays (mustache.js's hasProperty),
 * and, when `own_prim` is set, also `v.hasOwnProperty(key)` for strings
 * (primitiveHasOwnProperty). Inherited prototype members are not modelled.
 */
static bool
has_prop(const json_t *v, const char *k, size_t n, bool own_prim)
{
    if (json_is_object(v))
        return json_object_getn(v, k, n) != NULL;
    if (json_is_array(v))
        return (n == 6 && memcmp(k, "length", 6) == 0) ||
               parse_index(k, n) < json_array_size(v);
    if (own_prim && json_is_string(v))
        return (n == 6 && memcmp(k, "length", 6) == 0) ||
               parse_index(k, n) < utf16_len(json_string_value(v), json_string_length(v));
    return false;
}

/* The string's UTF-16 unit at index idx, as node would write it. */
static json_t *
string_unit(const char *s, size_t n, size_t idx)
{
    size_t units = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t clen = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        size_t w = c >= 0xF0 ? 2 : 1;
        if (i + clen > n)
            clen = n - i;
        if (idx < units + w) {
            /* Half of a surrogate pair: node encodes a lone one as U+FFFD. */
            if (w == 2)
                return json_stringn("\xEF\xBF\xBD", 3);
            return json_stringn(s + i, clen);
        }
        units += w;
        i += clen;
    }
    return NULL;
}

/* v[key] in JavaScript, for the kinds of values JSON has; NULL is undefined. */
static json_t *
get_prop(struct rstate *st, json_t *v, const char *k, size_t n)
{
    size_t idx;
    if (json_is_object(v))
        return json_object_getn(v, k, n);
    if (json_is_array(v)) {
        if (n == 6 && memcmp(k, "length", 6) == 0)
            return keep(st, json_integer((json_int_t)json_array_size(v)));
        idx = parse_index(k, n);
        return idx == SIZE_MAX ? NULL : json_array_get(v, idx);
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (n == 6 && memcmp(k, "length", 6) == 0)
            return keep(st, json_integer((json_int_t)utf16_len(s, len)));
        idx = parse_index(k, n);
        if (idx != SIZE_MAX) {
            json_t *u = string_unit(s, len, idx);
            return u ? keep(st, u) : NULL;
        }
    }
    return NULL;
}

struct ctx {
    json_t *view;
    const struct ctx *parent;
};

/*
 * Resolves NAME against the context stack; NULL means not found. A plain name
 * is looked up in each context from the innermost out. A dotted name a.b.c
 * looks up only its first part that way; the context that has `a` then owns
 * the whole name: if `b` or `c` is missing there the result is not found, and
 * the outer contexts are not asked (the spec's "Dotted Names - Context
 * Precedence": {{#a}}{{b.c}}{{/a}} never shows the outer b's c once a has a
 * b). mustache.js 3 instead moves on to the parent contexts.
 */
static json_t *
lookup(struct rstate *st, const struct ctx *c, const char *name, size_t n)
{
    const char *dot = n > 1 ? memchr(name + 1, '.', n - 1) : NULL;
    size_t first = dot ? (size_t)(dot - name) : n;
    json_t *v;
    if (n == 1 && name[0] == '.')
        return c->view;
    /* Names are only looked up in objects (and arrays): a string context does
     * not answer {{length}}. */
    while (c && !(c->view && has_prop(c->view, name, first, false)))
        c = c->parent;
    if (!c)
        return NULL;
    v = get_prop(st, c->view, name, first);
    for (size_t a = first + 1; dot && v && a <= n;) {
        const char *e = memchr(name + a, '.', n - a);
        size_t b = e ? (size_t)(e - name) : n;
        if (!has_prop(v, name + a, b - a, true))
            return NULL;
        v = get_prop(st, v, name + a, b - a);
        if (!e)
            break;
        a = b + 1;
    }
    return v;
}

/* --- rendering ------------------------------------------------------------ */

/* Partials compiled during one render, keyed by name and indentation. */
struct pcache {
    char *name;
    char *indent;
    struct tmpl *t; /* NULL: the loader said -ENOENT */
    struct pcache *next;
};

static int render_nodes(struct rstate *st, const struct tmpl *t, size_t a, size_t b,
                        const struct ctx *c);

static int
rerr(struct rstate *st, const struct tmpl *t, const struct node *nd, const char *hint,
     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int
rerr(struct rstate *st, const struct tmpl *t, const struct node *nd, const char *hint,
     const char *fmt, ...)
{
    char msg[NERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    nerr_set(st->err, t->name, nd->line, nd->col, "%s", msg);
    if (hint)
        nerr_hint(st->err, "%s", hint);
    nerr_source(st->err, t->src, t->len);
    return -EINVAL;
}

/* Every non-empty line of src, prefixed with indent (as the spec and
 * mustache.js 4 do before parsing the partial). */
static char *
indent_lines(const char *src, size_t len, const char *indent, size_t *out_len)
{
    struct sbuf b;
    size_t a = 0;
    sbuf_init(&b);
    sbuf_add(&b, "", 0);
    while (a <= len) {
        const char *nl = memchr(src + a, '\n', len - a);
        size_t e = nl ? (size_t)(nl - src) : len;
        if (e > a)
            sbuf_adds(&b, indent);
        sbuf_add(&b, src + a, e - a);
        if (!nl)
            break;
        sbuf_addc(&b, '\n');
        a = e + 1;
    }
    *out_len = b.len;
    return sbuf_steal(&b);
}

/* Loads and compiles a partial once per render; *out NULL means render nothing. */
static int
get_partial(struct rstate *st, const struct tmpl *t, const struct node *nd, const char *name,
            const char *indent, struct tmpl **out)
{
    struct pcache *pc;
    char *text = NULL, *ind_text = NULL;
    size_t len = 0, ind_len;
    int r;

    for (pc = st->partials; pc; pc = pc->next) {
        if (strcmp(pc->name, name) == 0 && strcmp(pc->indent, indent) == 0) {
            *out = pc->t;
            return 0;
        }
    }
    r = st->partial(st->ud, name, &text, &len);
    if (r < 0 && r != -ENOENT) {
        return rerr(st, t, nd,
                    r == -EINVAL ? "partial names cannot be empty, contain '/' or start with '.'"
                                 : NULL,
                    "cannot load partial '%s': %s", name, strerror(-r));
    }
    pc = xcalloc(1, sizeof(*pc));
    pc->name = xstrdup(name);
    pc->indent = xstrdup(indent);
    pc->next = st->partials;
    st->partials = pc;
    if (r == -ENOENT) {
        *out = NULL;
        return 0;
    }
    if (indent[0]) {
        ind_text = indent_lines(text, len, indent, &ind_len);
        r = tmpl_compile(name, ind_text, ind_len, &pc->t, st->err);
        /* Report positions in the partial as written, not as indented. */
        if (r < 0) {
            struct tmpl *raw = NULL;
            if (tmpl_compile(name, text, len, &raw, st->err) == 0)
                tmpl_free(raw);
        }
    } else {
        r = tmpl_compile(name, text, len, &pc->t, st->err);
    }
    if (r < 0 && st->err) {
        struct sbuf hint;
        sbuf_init(&hint);
        sbuf_printf(&hint, "%s%s(partial '%s' included at %s:%d:%d)", st->err->hint,
                    st->err->hint[0] ? " " : "", name, t->name, nd->line, nd->col);
        nerr_hint(st->err, "%s", hint.s);
        sbuf_free(&hint);
    }
    free(ind_text);
    free(text);
    *out = pc->t;
    return r;
}

static int
render_partial(struct rstate *st, const struct tmpl *t, const struct node *nd,
               const struct ctx *c)
{
    char *name, indent[256];
    size_t ni = 0;
    struct tmpl *pt = NULL;
    int r;

    if (!st->partial)
        return 0;
    if (st->depth >= TMPL_MAX_PARTIAL_DEPTH)
        return rerr(st, t, nd,
                    "a partial probably includes itself; make the inclusion depend on a "
                    "section that ends",
                    "partials nested more than %d deep at '%.*s'", TMPL_MAX_PARTIAL_DEPTH,
                    (int)nd->len, t->src + nd->off);
    /* Only spaces and tabs indent, as in mustache.js 4's indentPartial(). */
    for (size_t i = 0; i < nd->ind_len && ni < sizeof(indent) - 1; i++) {
        char ch = t->src[nd->ind_off + i];
        if (ch == ' ' || ch == '\t')
            indent[ni++] = ch;
    }
    indent[ni] = '\0';
    name = xstrndup(t->src + nd->off, nd->len);
    r = get_partial(st, t, nd, name, indent, &pt);
    free(name);
    if (r < 0 || !pt)
        return r;
    st->depth++;
    r = render_nodes(st, pt, 0, pt->nnodes, c);
    st->depth--;
    return r;
}

static int
render_nodes(struct rstate *st, const struct tmpl *t, size_t a, size_t b, const struct ctx *c)
{
    int r = 0;
    for (size_t i = a; i < b && r == 0; i++) {
        const struct node *nd = &t->nodes[i];
        const char *name = t->src + nd->off;
        json_t *v;
        switch (nd->type) {
        case TK_TEXT:
            sbuf_add(st->out, name, nd->len);
            break;
        case TK_NAME:
        case TK_RAW:
            v = lookup(st, c, name, nd->len);
            if (!v || json_is_null(v))
                break;
            if (nd->type == TK_NAME && (st->flags & TMPL_ESCAPE_HTML)) {
                struct sbuf tmp;
                sbuf_init(&tmp);
                add_js_string(&tmp, v);
                add_escaped(st->out, tmp.s ? tmp.s : "", tmp.len);
                sbuf_free(&tmp);
            } else {
                add_js_string(st->out, v);
            }
            break;
        case TK_SECTION:
            v = lookup(st, c, name, nd->len);
            if (!js_truthy(v)) {
                /* nothing */
            } else if (json_is_array(v)) {
                size_t k;
                json_t *el;
                json_array_foreach(v, k, el) {
                    struct ctx sub = {el, c};
                    r = render_nodes(st, t, i + 1, i + 1 + nd->body, &sub);
                    if (r < 0)
                        break;
                }
            } else if (json_is_true(v)) {
                r = render_nodes(st, t, i + 1, i + 1 + nd->body, c);
            } else {
                struct ctx sub = {v, c};
                r = render_nodes(st, t, i + 1, i + 1 + nd->body, &sub);
            }
            i += nd->body;
            break;
        case TK_INVERTED:
            v = lookup(st, c, name, nd->len);
            if (!js_truthy(v) || (json_is_array(v) && json_array_size(v) == 0))
                r = render_nodes(st, t, i + 1, i + 1 + nd->body, c);
            i += nd->body;
            break;
        case TK_PARTIAL:
            r = render_partial(st, t, nd, c);
            break;
        default:
            break;
        }
    }
    return r;
}

int
tmpl_render(const struct tmpl *t, json_t *data, unsigned flags, tmpl_partial_fn partial,
            void *ud, struct sbuf *out, struct nerr *err)
{
    struct rstate st;
    struct sbuf buf;
    struct ctx top = {data, NULL};
    int r;

    sbuf_init(&buf);
    sbuf_add(&buf, "", 0);
    memset(&st, 0, sizeof(st));
    st.flags = flags;
    st.partial = partial;
    st.ud = ud;
    st.out = &buf;
    st.err = err;
    st.scratch = json_array();
    if (!st.scratch)
        abort(); /* jansson only fails on out-of-memory, which is fatal here */

    r = render_nodes(&st, t, 0, t->nnodes, &top);
    if (r == 0)
        sbuf_add(out, buf.s, buf.len);

    while (st.partials) {
        struct pcache *next = st.partials->next;
        tmpl_free(st.partials->t);
        free(st.partials->name);
        free(st.partials->indent);
        free(st.partials);
        st.partials = next;
    }
    json_decref(st.scratch);
    sbuf_free(&buf);
    return r;
}

void
tmpl_foreach_name(const struct tmpl *t,
                  void (*cb)(void *ud, const char *name, int line, int col), void *ud)
{
    for (size_t i = 0; i < t->nnodes; i++) {
        const struct node *nd = &t->nodes[i];
        const char *s = t->src + nd->off;
        size_t n = nd->len;
        char *first;
        if (nd->type != TK_NAME && nd->type != TK_RAW && nd->type != TK_SECTION &&
            nd->type != TK_INVERTED)
            continue;
        if (!(n == 1 && s[0] == '.')) {
            /* mustache.js splits on dots only when the first one is not
             * the first character. */
            const char *dot = n > 1 ? memchr(s + 1, '.', n - 1) : NULL;
            first = xstrndup(s, dot ? (size_t)(dot - s) : n);
            cb(ud, first, nd->line, nd->col);
            free(first);
        }
        if (nd->type == TK_SECTION)
            i += nd->body;
    }
}

void
tmpl_foreach_partial(const struct tmpl *t,
                     void (*cb)(void *ud, const char *name, int line, int col), void *ud)
{
    for (size_t i = 0; i < t->nnodes; i++) {
        const struct node *nd = &t->nodes[i];
        char *name;
        if (nd->type != TK_PARTIAL)
            continue;
        name = xstrndup(t->src + nd->off, nd->len);
        cb(ud, name, nd->line, nd->col);
        free(name);
    }
}

int
tmpl_partials_from_dir(void *ud, const char *name, char **text, size_t *len)
{
    const char *dir = ud;
    char *path;
    int r;
    if (!name[0] || name[0] == '.' || strchr(name, '/'))
        return -EINVAL;
    path = xasprintf("%s/%s.mustache", dir && dir[0] ? dir : ".", name);
    r = read_file(path, text, len);
    free(path);
    return r;
}

int
tmpl_render_file(const char *path, json_t *data, unsigned flags, const char *partials_dir,
                 struct sbuf *out, struct nerr *err)
{
    char *src = NULL, *dir = NULL;
    size_t len = 0;
    struct tmpl *t = NULL;
    int r;

    r = read_file(path, &src, &len);
    if (r < 0) {
        nerr_set(err, path, 0, 0, "cannot read template: %s", strerror(-r));
        goto out;
    }
    r = tmpl_compile(path, src, len, &t, err);
    if (r < 0)
        goto out;
    if (!partials_dir) {
        const char *slash = strrchr(path, '/');
        dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
    }
    r = tmpl_render(t, data, flags, tmpl_partials_from_dir,
                    (void *)(partials_dir ? partials_dir : dir), out, err);
out:
    tmpl_free(t);
    free(dir);
    free(src);
    return r;
}
