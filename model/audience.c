/*
 * audience.c: the audience expression language (see audience.h) compiled to
 * a parameterised SQL boolean over `customers c LEFT JOIN customer_stats s`.
 *
 * Three small passes: a lexer turns the text into tokens, a recursive-descent
 * parser builds a tree, and an emitter walks the tree writing SQL. Type
 * checks (a date field compared with a number, a non-numeric string against
 * total_spent) happen in the emitter, where both sides of a comparison are
 * known.
 *
 * The security argument is local to the emitter: it only ever appends the
 * fixed strings written in this file and "?"; whatever the user wrote reaches
 * SQLite as a bound parameter (audience_param, bound by the store). The
 * fields table below is the whitelist.
 */
#include "audience.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "channel_registry.h"

/* Limits that keep hostile or runaway input cheap: an audience longer than
 * this is a mistake, nesting bounds the parser's recursion, and SQLite's
 * default SQLITE_MAX_VARIABLE_NUMBER bounds the parameters. */
#define AUD_MAX_LEN (64 * 1024)
#define AUD_MAX_DEPTH 64
#define AUD_MAX_PARAMS 32766

/* What a value is, for type checks and literal coercion. VT_ANY is a custom
 * attribute (JSON, type unknown until run time); VT_LIT a bare literal. */
enum vtype { VT_TEXT, VT_NUM, VT_DATE, VT_BOOL, VT_ANY, VT_LIT };

/*
 * The whitelist: name in the language, the SQL it stands for, its type.
 * One table drives lookup, did-you-mean and audience_fields[]. Stats columns
 * are COALESCEd because a customer without orders has no customer_stats row
 * and should count as 0 orders, 0 spent.
 */
#define AUD_FIELD_TABLE(X)                                                                         \
    X("id", "c.ext_id", VT_TEXT)                                                                   \
    X("name", "c.name", VT_TEXT)                                                                   \
    X("first_name", "c.first_name", VT_TEXT)                                                       \
    X("email", "c.email", VT_TEXT)                                                                 \
    X("phone", "c.phone", VT_TEXT)                                                                 \
    X("birthday", "c.birthday", VT_DATE)                                                           \
    X("tz", "c.tz", VT_TEXT)                                                                       \
    X("tier", "c.tier", VT_TEXT)                                                                   \
    X("owner", "c.owner", VT_TEXT)                                                                 \
    X("created_at", "c.created_at", VT_DATE)                                                       \
    X("orders_count", "COALESCE(s.orders_count, 0)", VT_NUM)                                       \
    X("total_spent", "(COALESCE(s.total_cents, 0) / 100.0)", VT_NUM)                               \
    X("last_order_date", "s.last_order_date", VT_DATE)                                             \
    X("first_order_date", "s.first_order_date", VT_DATE)

struct field {
    const char *name; /* as written in expressions (matched case-insensitively) */
    const char *sql;  /* fixed SQL snippet over aliases c and s */
    enum vtype type;
};

#define AUD_AS_FIELD(n, s, t) {n, s, t},
#define AUD_AS_NAME(n, s, t) n,
static const struct field fields[] = {AUD_FIELD_TABLE(AUD_AS_FIELD)};
const char *const audience_fields[] = {AUD_FIELD_TABLE(AUD_AS_NAME) NULL};
#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

enum fn_id { FN_CONSENTS, FN_HAS_TAG, FN_DAYS_SINCE, FN_DAYS_UNTIL_ANNIV, FN_ATTR };
enum fn_arg { ARG_STRING, ARG_DATE };

/* Functions, like fields, in one table. All take exactly one argument. */
struct func {
    const char *name;
    enum fn_id id;
    enum fn_arg arg;     /* a quoted string, or a date-valued field/attribute */
    enum vtype ret;      /* what the call yields */
    const char *example; /* shown in arity errors */
    const char *argmsg;  /* the error when the argument is of the wrong kind */
    const char *arghint; /* and its hint */
};

#define AUD_FUNC_TABLE(X)                                                                          \
    X("consents", FN_CONSENTS, ARG_STRING, VT_BOOL, "consents('email')",                           \
      "consents() takes a quoted channel name, e.g. consents('email')",                            \
      "channels are words such as 'email', 'sms' or 'webhook', in single quotes")                  \
    X("has_tag", FN_HAS_TAG, ARG_STRING, VT_BOOL, "has_tag('vip')",                                \
      "has_tag() takes a quoted tag, e.g. has_tag('vip')", "put the tag in single quotes")         \
    X("days_since", FN_DAYS_SINCE, ARG_DATE, VT_NUM, "days_since(last_order_date)",                \
      "days_since() takes a date field, e.g. days_since(last_order_date)",                         \
      "date fields: birthday, created_at, first_order_date, last_order_date, or a custom "         \
      "attribute")                                                                                 \
    X("days_until_anniversary", FN_DAYS_UNTIL_ANNIV, ARG_DATE, VT_NUM,                             \
      "days_until_anniversary(birthday)",                                                          \
      "days_until_anniversary() takes a date field, e.g. days_until_anniversary(birthday)",        \
      "date fields: birthday, created_at, first_order_date, last_order_date, or a custom "         \
      "attribute")                                                                                 \
    X("attr", FN_ATTR, ARG_STRING, VT_ANY, "attr('loyalty_points')",                               \
      "attr() takes a quoted attribute name, e.g. attr('loyalty_points')",                         \
      "put the attribute name in single quotes")

#define AUD_AS_FUNC(n, id, arg, ret, ex, msg, hint) {n, id, arg, ret, ex, msg, hint},
#define AUD_AS_FNAME(n, id, arg, ret, ex, msg, hint) n,
static const struct func funcs[] = {AUD_FUNC_TABLE(AUD_AS_FUNC)};
const char *const audience_functions[] = {AUD_FUNC_TABLE(AUD_AS_FNAME) NULL};
#define N_FUNCS (sizeof(funcs) / sizeof(funcs[0]))

/* Consent names we know, so that consents('emial') is caught as a typo:
 * the registry's (channel_registry.h) and these, recorded by imports for
 * channels nudge does not deliver on. Other names are allowed. */
static const char *const other_consents[] = {"push", "call", "whatsapp", "wechat", NULL};

/* The registry's consent names then other_consents, into v (NULL-terminated). */
static void
known_consents(const char **v, size_t size)
{
    size_t n = 0;
    for (const char *const *c = channel_consent_names(); *c && n + 1 < size; c++)
        v[n++] = *c;
    for (const char *const *c = other_consents; *c && n + 1 < size; c++)
        v[n++] = *c;
    v[n] = NULL;
}

static const char FROM_CLAUSE[] = "customers c LEFT JOIN customer_stats s ON s.customer_id = c.id";

/* ---- tokens ---------------------------------------------------------------- */

enum tk { TK_EOF, TK_IDENT, TK_STRING, TK_NUMBER, TK_LPAREN, TK_RPAREN, TK_COMMA, TK_CMP };
enum cmp_op { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };
static const char *const op_sql[] = {" = ", " <> ", " < ", " <= ", " > ", " >= "};

struct token {
    enum tk kind;
    size_t off, len;  /* span in the source */
    enum cmp_op op;   /* TK_CMP */
    char *str;        /* TK_STRING: the decoded text (owned) */
    bool is_real;     /* TK_NUMBER */
    int64_t i;
    double r;
};

enum nkind {
    N_OR, N_AND, N_NOT,                             /* kids / a */
    N_CMP, N_IN, N_BETWEEN, N_ISNULL, N_LIKE, N_TRUTH, /* conditions */
    N_FIELD, N_ATTR, N_CALL,                        /* values */
    N_STR, N_NUM, N_BOOL                            /* literals */
};

struct node {
    enum nkind kind;
    size_t off;              /* where it starts in the source, for errors */
    struct node *a, *b, *c;  /* operands */
    struct node *kids;       /* N_AND/N_OR children and N_IN items, via next */
    struct node *next;       /* sibling in kids */
    struct node *all;        /* every node, for freeing without recursion */
    enum cmp_op op;
    bool neg;                /* not in / not between / not like / is not null */
    bool bval;               /* N_BOOL */
    const struct field *field;
    const struct func *fn;
    const struct token *tok; /* literals and N_CALL string arguments */
    char *key;               /* N_ATTR: the attribute name (owned) */
};

struct parser {
    const char *src;
    size_t len;
    const char *file;
    int line0, col0;
    const char *const *attrs;
    struct nerr *err;      /* where perr() writes: the caller's, or lex_err */
    struct nerr *user_err; /* the caller's */
    struct sbuf warn;      /* warnings, "file:line:col: warning: ...\n" each */
    size_t err_off;        /* offset of the last error reported */

    /* A lexical error is held back until the parser reaches it, so that
     * errors are reported in reading order: in "tier = = 'a'; x" the
     * second '=' is the mistake, not the ';'. */
    struct nerr lex_err;
    bool lex_failed;
    size_t lex_err_off;

    struct token *toks;
    size_t ntoks, tokcap, pos;
    struct node *nodes;
    int depth;

    struct sbuf sql;
    struct aud_param *params;
    size_t nparams, pcap;

    struct aud_dayref *dayrefs; /* days_since / days_until_anniversary calls */
    size_t ndayrefs;
};

/* ---- errors ---------------------------------------------------------------- */

static void
locate(const struct parser *p, size_t off, int *line, int *col)
{
    *line = p->line0;
    *col = p->col0;
    for (size_t i = 0; i < off && i < p->len; i++) {
        unsigned char c = (unsigned char)p->src[i];
        if (c == '\n') {
            (*line)++;
            *col = 1;
        } else if ((c & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

/* Sets the error at source offset off. The source line is padded to the
 * expression's starting column so that nerr_format's caret lands right. */
static int __attribute__((format(printf, 3, 4)))
perr(struct parser *p, size_t off, const char *fmt, ...)
{
    char msg[NERR_MSG_MAX];
    va_list ap;
    int line, col;
    size_t ls, le;

    if (off > p->len)
        off = p->len;
    p->err_off = off;
    if (!p->err)
        return -EINVAL;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    locate(p, off, &line, &col);
    nerr_set(p->err, p->file, line, col, "%s", msg);

    ls = off;
    while (ls > 0 && p->src[ls - 1] != '\n')
        ls--;
    le = off;
    while (le < p->len && p->src[le] != '\n' && p->src[le] != '\r')
        le++;
    if (line == p->line0) {
        int pad = p->col0 - 1 < 256 ? p->col0 - 1 : 256;
        snprintf(p->err->src_line, sizeof(p->err->src_line), "%*s%.*s", pad, "",
                 (int)(le - ls), p->src + ls);
    } else {
        snprintf(p->err->src_line, sizeof(p->err->src_line), "%.*s", (int)(le - ls),
                 p->src + ls);
    }
    return -EINVAL;
}

static int __attribute__((format(printf, 2, 3)))
phint(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    if (!p->err)
        return -EINVAL;
    va_start(ap, fmt);
    vsnprintf(p->err->hint, sizeof(p->err->hint), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* A token as a person would name it: 'tier', or "the end of the expression".
 * Long tokens are cut at a character boundary. */
static const char *
tokdesc(const struct parser *p, const struct token *t, char *buf, size_t size)
{
    size_t n = t->len;
    bool cut = false;
    if (t->kind == TK_EOF) {
        snprintf(buf, size, "the end of the expression");
        return buf;
    }
    if (n > 40) {
        n = 40;
        while (n > 0 && ((unsigned char)p->src[t->off + n] & 0xC0) == 0x80)
            n--;
        cut = true;
    }
    /* A string token's span already carries its quotes. */
    if (t->kind == TK_STRING)
        snprintf(buf, size, "%.*s%s", (int)n, p->src + t->off, cut ? "..." : "");
    else
        snprintf(buf, size, "'%.*s%s'", (int)n, p->src + t->off, cut ? "..." : "");
    return buf;
}

/* ---- lexer ----------------------------------------------------------------- */

/* Full-width punctuation that a Chinese or Japanese input method produces
 * where ASCII was meant; flagged instead of silently becoming identifiers.
 * ascii 0 marks a space (U+00A0, U+3000), which is skipped as whitespace. */
static const struct {
    const char *utf8;
    char ascii;
} wide_chars[] = {
    {"\xef\xbc\x88", '('}, {"\xef\xbc\x89", ')'}, {"\xef\xbc\x8c", ','},
    {"\xe2\x80\x98", '\''}, {"\xe2\x80\x99", '\''}, {"\xe2\x80\x9c", '"'},
    {"\xe2\x80\x9d", '"'}, {"\xef\xbc\x9d", '='}, {"\xef\xbc\x9e", '>'},
    {"\xef\xbc\x9c", '<'}, {"\xef\xbc\x81", '!'}, {"\xc2\xa0", 0},
    {"\xe3\x80\x80", 0},
};

/* Length of the wide character at s (0 if none); *ascii gets its stand-in. */
static size_t
wide_char_at(const char *s, size_t avail, char *ascii)
{
    for (size_t k = 0; k < sizeof(wide_chars) / sizeof(wide_chars[0]); k++) {
        size_t n = strlen(wide_chars[k].utf8);
        if (n <= avail && memcmp(s, wide_chars[k].utf8, n) == 0) {
            *ascii = wide_chars[k].ascii;
            return n;
        }
    }
    return 0;
}

static bool
is_ident_char(const struct parser *p, size_t i, bool first)
{
    unsigned char c = (unsigned char)p->src[i];
    char dummy;
    if (c >= 0x80)
        return wide_char_at(p->src + i, p->len - i, &dummy) == 0;
    if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return !first && c >= '0' && c <= '9';
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Length of a number at s: -?D+(.D+)?([eE][+-]?D+)?, 0 if none; *is_real
 * says whether it had a fraction or an exponent. */
static size_t
number_span(const char *s, size_t avail, bool *is_real)
{
    size_t i = 0;
    *is_real = false;
    if (i < avail && s[i] == '-')
        i++;
    if (i >= avail || !is_digit(s[i]))
        return 0;
    while (i < avail && is_digit(s[i]))
        i++;
    if (i + 1 < avail && s[i] == '.' && is_digit(s[i + 1])) {
        *is_real = true;
        i++;
        while (i < avail && is_digit(s[i]))
            i++;
    }
    if (i < avail && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < avail && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j < avail && is_digit(s[j])) {
            *is_real = true;
            i = j;
            while (i < avail && is_digit(s[i]))
                i++;
        }
    }
    return i;
}

/* Converts the number spelled s[0..n) (already matched by number_span). */
static int
number_value(const char *s, size_t n, bool is_real, int64_t *iv, double *rv)
{
    char *copy = xstrndup(s, n), *end;
    int r = 0;
    if (is_real) {
        errno = 0;
        *rv = strtod(copy, &end);
        if (*end != '\0' || !isfinite(*rv))
            r = -ERANGE;
    } else {
        r = parse_i64(copy, iv);
    }
    free(copy);
    return r;
}

static struct token *
push_token(struct parser *p, enum tk kind, size_t off, size_t len)
{
    struct token *t;
    if (p->ntoks == p->tokcap) {
        p->tokcap = p->tokcap ? p->tokcap * 2 : 32;
        p->toks = xrealloc(p->toks, p->tokcap * sizeof(*p->toks));
    }
    t = &p->toks[p->ntoks++];
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->off = off;
    t->len = len;
    return t;
}

static int
lex_string(struct parser *p, size_t start, size_t *endp)
{
    struct sbuf b;
    size_t j = start + 1;
    struct token *t;
    sbuf_init(&b);
    sbuf_add(&b, "", 0); /* so that '' yields "" rather than NULL */
    for (;;) {
        if (j >= p->len) {
            sbuf_free(&b);
            perr(p, start, "unterminated string");
            return phint(p, "add the closing ' (write '' for a quote inside a string)");
        }
        if (p->src[j] == '\'') {
            if (j + 1 < p->len && p->src[j + 1] == '\'') {
                sbuf_addc(&b, '\'');
                j += 2;
                continue;
            }
            j++;
            break;
        }
        sbuf_addc(&b, p->src[j]);
        j++;
    }
    t = push_token(p, TK_STRING, start, j - start);
    t->str = sbuf_steal(&b);
    *endp = j;
    return 0;
}

static int
lex_number(struct parser *p, size_t start, size_t *endp)
{
    bool is_real;
    size_t n = number_span(p->src + start, p->len - start, &is_real), e = start + n;
    struct token *t;
    int r;
    /* "5abc" or "1.2.3" is one mistake, not a number followed by a name. */
    if (e < p->len && (is_ident_char(p, e, false) || p->src[e] == '.')) {
        while (e < p->len && (is_ident_char(p, e, false) || p->src[e] == '.'))
            e++;
        perr(p, start, "invalid number '%.*s'", (int)(e - start > 40 ? 40 : e - start),
             p->src + start);
        return phint(p, "numbers are written like 42 or 19.99; text goes in single quotes");
    }
    t = push_token(p, TK_NUMBER, start, n);
    t->is_real = is_real;
    r = number_value(p->src + start, n, is_real, &t->i, &t->r);
    if (r < 0) {
        perr(p, start, "number out of range '%.*s'", (int)(n > 40 ? 40 : n), p->src + start);
        return phint(p, "whole numbers must lie within +/-9223372036854775807");
    }
    *endp = e;
    return 0;
}

static int lex_tokens(struct parser *p, size_t *last_end);

/* Tokenises the whole source. On a lexical error the token list ends with
 * TK_EOF at the error, and the error waits in p->lex_err. */
static void
lex(struct parser *p)
{
    size_t last_end = 0;
    struct nerr *saved = p->err;
    p->err = &p->lex_err;
    if (lex_tokens(p, &last_end) < 0) {
        p->lex_failed = true;
        p->lex_err_off = p->err_off;
        push_token(p, TK_EOF, p->err_off, 0);
    } else {
        /* The end sits one column after the last token: where a missing
         * value would have gone ("tier = " points just past the '='). */
        push_token(p, TK_EOF, last_end + 1 < p->len ? last_end + 1 : p->len, 0);
    }
    p->err = saved;
}

static int
lex_tokens(struct parser *p, size_t *last_endp)
{
    size_t i = 0;
    while (i < p->len) {
        char c = p->src[i], wide;
        size_t wn;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            i++;
            continue;
        }
        wn = wide_char_at(p->src + i, p->len - i, &wide);
        if (wn && wide == 0) {
            i += wn; /* a no-break or ideographic space */
            continue;
        }
        if (wn) {
            perr(p, i, "full-width '%.*s' is not allowed here", (int)wn, p->src + i);
            return phint(p, "type the ASCII '%c' instead (half-width input)", wide);
        }
        if (is_ident_char(p, i, true)) {
            size_t s = i;
            while (i < p->len && is_ident_char(p, i, false))
                i++;
            push_token(p, TK_IDENT, s, i - s);
        } else if (is_digit(c) || (c == '-' && i + 1 < p->len && is_digit(p->src[i + 1]))) {
            if (lex_number(p, i, &i) < 0)
                return -EINVAL;
        } else if (c == '\'') {
            if (lex_string(p, i, &i) < 0)
                return -EINVAL;
        } else if (c == '(' || c == ')' || c == ',') {
            push_token(p, c == '(' ? TK_LPAREN : c == ')' ? TK_RPAREN : TK_COMMA, i, 1);
            i++;
        } else if (c == '=' || c == '<' || c == '>' || (c == '!' && i + 1 < p->len &&
                                                         p->src[i + 1] == '=')) {
            char d = i + 1 < p->len ? p->src[i + 1] : '\0';
            enum cmp_op op;
            size_t n = 1;
            if (c == '=') {
                op = OP_EQ;
                n = d == '=' ? 2 : 1;
            } else if (c == '!') {
                op = OP_NE;
                n = 2;
            } else if (c == '<') {
                op = d == '=' ? OP_LE : d == '>' ? OP_NE : OP_LT;
                n = (d == '=' || d == '>') ? 2 : 1;
            } else {
                op = d == '=' ? OP_GE : OP_GT;
                n = d == '=' ? 2 : 1;
            }
            push_token(p, TK_CMP, i, n)->op = op;
            i += n;
        } else if (c == '"') {
            perr(p, i, "strings are written in single quotes");
            return phint(p, "write 'gold', not \"gold\"");
        } else if (c == '&' || c == '|' || c == '!') {
            perr(p, i, "unexpected '%c'", c);
            return phint(p, "write '%s'", c == '&' ? "and" : c == '|' ? "or" : "not");
        } else {
            if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
                perr(p, i, "unexpected character '%c'", c);
            else
                perr(p, i, "unexpected byte 0x%02x", (unsigned char)c);
            return phint(p, "expected a field, a value, a comparison, 'and', 'or', '(' or ')'");
        }
        *last_endp = i;
    }
    return 0;
}

/* ---- parser ---------------------------------------------------------------- */

static const struct token *
cur(const struct parser *p)
{
    return &p->toks[p->pos];
}

static const struct token *
peek(const struct parser *p, size_t ahead)
{
    size_t k = p->pos + ahead;
    return &p->toks[k < p->ntoks ? k : p->ntoks - 1];
}

static void
advance(struct parser *p)
{
    if (p->toks[p->pos].kind != TK_EOF)
        p->pos++;
}

static bool
tok_is(const struct parser *p, const struct token *t, const char *word)
{
    size_t n = strlen(word);
    return t->kind == TK_IDENT && t->len == n && strncasecmp(p->src + t->off, word, n) == 0;
}

static bool
is_keyword(const struct parser *p, const struct token *t)
{
    static const char *const kw[] = {"and", "or", "not", "in", "between", "is",
                                     "null", "like", "true", "false"};
    for (size_t k = 0; k < sizeof(kw) / sizeof(kw[0]); k++)
        if (tok_is(p, t, kw[k]))
            return true;
    return false;
}

static struct node *
new_node(struct parser *p, enum nkind kind, size_t off)
{
    struct node *n = xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->off = off;
    n->all = p->nodes;
    p->nodes = n;
    return n;
}

static const struct field *
find_field(const struct parser *p, const struct token *t)
{
    for (size_t k = 0; k < N_FIELDS; k++)
        if (tok_is(p, t, fields[k].name))
            return &fields[k];
    return NULL;
}

static const struct func *
find_func(const struct parser *p, const struct token *t)
{
    for (size_t k = 0; k < N_FUNCS; k++)
        if (tok_is(p, t, funcs[k].name))
            return &funcs[k];
    return NULL;
}

static bool
find_attr(const struct parser *p, const struct token *t)
{
    for (const char *const *a = p->attrs; a && *a; a++)
        if (strlen(*a) == t->len && memcmp(*a, p->src + t->off, t->len) == 0)
            return true;
    return false;
}

static bool
is_identifier(const char *s)
{
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
              is_digit(*s)))
            return false;
    return true;
}

static int
err_unknown_ident(struct parser *p, const struct token *t)
{
    size_t n = N_FIELDS + N_FUNCS + 1, k = 0;
    const char **cands, *best;
    char *word = xstrndup(p->src + t->off, t->len);
    struct sbuf list;

    for (const char *const *a = p->attrs; a && *a; a++)
        n++;
    cands = xcalloc(n, sizeof(*cands));
    for (size_t f = 0; f < N_FIELDS; f++)
        cands[k++] = fields[f].name;
    for (size_t f = 0; f < N_FUNCS; f++)
        cands[k++] = funcs[f].name;
    for (const char *const *a = p->attrs; a && *a; a++)
        cands[k++] = *a;
    cands[k] = NULL;

    best = did_you_mean(word, cands);
    if (!best) {
        for (char *w = word; *w; w++)
            if (*w >= 'A' && *w <= 'Z')
                *w = (char)(*w - 'A' + 'a');
        best = did_you_mean(word, cands);
    }
    perr(p, t->off, "unknown field '%.*s'", (int)(t->len > 64 ? 64 : t->len), p->src + t->off);
    if (best && !is_identifier(best)) {
        phint(p, "did you mean attr('%s')?", best);
    } else if (best) {
        bool is_fn = false;
        for (size_t f = 0; f < N_FUNCS; f++)
            is_fn |= strcmp(best, funcs[f].name) == 0;
        phint(p, "did you mean '%s%s'?", best, is_fn ? "(...)" : "");
    } else {
        sbuf_init(&list);
        for (size_t f = 0; f < N_FIELDS; f++)
            sbuf_printf(&list, "%s%s", f ? ", " : "", fields[f].name);
        phint(p, "fields are %s; other customer attributes: attr('name')", list.s);
        sbuf_free(&list);
    }
    free(cands);
    free(word);
    return -EINVAL;
}

/*
 * A bare name that is no field, function or imported attribute, and close
 * to none of them (so not a typo): a custom attribute the first import has
 * not brought yet. It is read as attr('name') with a warning, so a rule
 * can be written (and the daemon started) before the data arrives.
 */
static bool
take_as_attr(struct parser *p, const struct token *t)
{
    size_t n = N_FIELDS + N_FUNCS + 1, k = 0;
    const char **cands;
    char *word = xstrndup(p->src + t->off, t->len), *lower;
    bool take;
    int line, col;

    for (const char *const *a = p->attrs; a && *a; a++)
        n++;
    cands = xcalloc(n, sizeof(*cands));
    for (size_t f = 0; f < N_FIELDS; f++)
        cands[k++] = fields[f].name;
    for (size_t f = 0; f < N_FUNCS; f++)
        cands[k++] = funcs[f].name;
    for (const char *const *a = p->attrs; a && *a; a++)
        cands[k++] = *a;
    cands[k] = NULL;
    lower = xstrdup(word);
    for (char *w = lower; *w; w++)
        if (*w >= 'A' && *w <= 'Z')
            *w = (char)(*w - 'A' + 'a');
    take = is_identifier(word) && !did_you_mean(word, cands) && !did_you_mean(lower, cands);
    if (take) {
        locate(p, t->off, &line, &col);
        sbuf_printf(&p->warn,
                    "%s:%d:%d: warning: '%s' is not a customer field or an imported attribute; "
                    "it is read as the custom attribute attr('%s'), empty until an import "
                    "brings it\n",
                    p->file ? p->file : "audience", line, col, word, word);
    }
    free(cands);
    free(lower);
    free(word);
    return take;
}

/* The error when a value or condition was needed and t cannot start one. */
static int
err_expected(struct parser *p, const char *what)
{
    const struct token *t = cur(p);
    char a[64], b[64];
    if (p->pos > 0)
        perr(p, t->off, "expected %s after %s", what, tokdesc(p, &p->toks[p->pos - 1], a, sizeof(a)));
    else
        perr(p, t->off, "expected %s, found %s", what, tokdesc(p, t, b, sizeof(b)));
    if (strcmp(what, "a condition") == 0)
        return phint(p, "e.g. tier = 'gold', consents('email') or orders_count >= 3");
    return phint(p, "e.g. 'gold', 42, 19.99, true, or a field such as tier");
}

static int parse_value(struct parser *p, const char *what, struct node **out);

static bool
valid_channel(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || is_digit(*s) || *s == '_' || *s == '-'))
            return false;
    return true;
}

static int
parse_call(struct parser *p, struct node **out)
{
    const struct token *name = cur(p), *t;
    const struct func *fn = find_func(p, name);
    size_t k, nargs = 0, commas = 0;
    int depth = 0;
    struct node *n, *arg = NULL;
    char d[64];

    if (!fn) {
        const char *best;
        char *word;
        if (find_field(p, name)) {
            perr(p, name->off, "'%.*s' is a field, not a function", (int)name->len,
                 p->src + name->off);
            return phint(p, "compare it instead, e.g. %.*s = 'gold'", (int)name->len,
                         p->src + name->off);
        }
        word = xstrndup(p->src + name->off, name->len);
        best = did_you_mean(word, audience_functions);
        free(word);
        perr(p, name->off, "unknown function '%.*s'", (int)(name->len > 64 ? 64 : name->len),
             p->src + name->off);
        if (best)
            return phint(p, "did you mean '%s'?", best);
        return phint(p, "functions are consents, has_tag, days_since, days_until_anniversary "
                        "and attr");
    }
    advance(p); /* name */
    advance(p); /* ( */

    /* Count the arguments first, so that the arity error comes before any
     * complaint about what the arguments are. */
    for (k = p->pos;; k++) {
        const struct token *x = &p->toks[k];
        if (x->kind == TK_EOF) {
            perr(p, x->off, "missing ')' after the argument of %s()", fn->name);
            return phint(p, "e.g. %s", fn->example);
        }
        if (x->kind == TK_LPAREN) {
            depth++;
        } else if (x->kind == TK_RPAREN) {
            if (depth == 0)
                break;
            depth--;
        } else if (x->kind == TK_COMMA && depth == 0) {
            commas++;
        }
    }
    nargs = k == p->pos ? 0 : commas + 1;
    if (nargs != 1) {
        perr(p, name->off, "%s() takes 1 argument, got %zu", fn->name, nargs);
        return phint(p, "e.g. %s", fn->example);
    }

    t = cur(p);
    n = new_node(p, N_CALL, name->off);
    n->fn = fn;
    if (fn->arg == ARG_STRING) {
        if (t->kind != TK_STRING) {
            perr(p, t->off, "%s", fn->argmsg);
            return phint(p, "%s", fn->arghint);
        }
        if (fn->id == FN_CONSENTS) {
            const char *known_channels[32];
            const char *best;
            bool known = false;
            known_consents(known_channels, sizeof(known_channels) / sizeof(known_channels[0]));
            best = did_you_mean(t->str, known_channels);
            for (const char *const *c = known_channels; *c; c++)
                known |= strcmp(*c, t->str) == 0;
            if (!valid_channel(t->str)) {
                perr(p, t->off, "%s is not a channel name", tokdesc(p, t, d, sizeof(d)));
                return phint(p, "%s", fn->arghint);
            }
            if (!known && best) {
                perr(p, t->off, "unknown channel %s", tokdesc(p, t, d, sizeof(d)));
                return phint(p, "did you mean '%s'?", best);
            }
        } else if (t->str[0] == '\0') {
            perr(p, t->off, "%s() needs a non-empty name", fn->name);
            return phint(p, "e.g. %s", fn->example);
        }
        if (fn->id == FN_ATTR) {
            /* SQLite's JSON path syntax has no escape for '"' inside a
             * quoted key, so such a key cannot be addressed safely. */
            if (strchr(t->str, '"')) {
                perr(p, t->off, "attribute names cannot contain '\"'");
                return phint(p, "rename the column in the customer import");
            }
            n->kind = N_ATTR;
            n->key = xstrdup(t->str);
        } else {
            n->tok = t;
        }
        advance(p);
    } else {
        if (t->kind != TK_IDENT || is_keyword(p, t)) {
            perr(p, t->off, "%s", fn->argmsg);
            return phint(p, "%s", fn->arghint);
        }
        if (parse_value(p, "a date field", &arg) < 0)
            return -EINVAL;
        if (arg->kind == N_FIELD && arg->field->type != VT_DATE) {
            perr(p, arg->off, "%s() takes a date field, but '%s' is not a date", fn->name,
                 arg->field->name);
            return phint(p, "%s", fn->arghint);
        }
        if (arg->kind != N_FIELD && arg->kind != N_ATTR) {
            perr(p, arg->off, "%s", fn->argmsg);
            return phint(p, "%s", fn->arghint);
        }
        n->a = arg;
    }
    if (cur(p)->kind != TK_RPAREN) {
        perr(p, cur(p)->off, "expected ')' after the argument of %s()", fn->name);
        return phint(p, "e.g. %s", fn->example);
    }
    advance(p);
    *out = n;
    return 0;
}

static int
parse_value(struct parser *p, const char *what, struct node **out)
{
    const struct token *t = cur(p);
    struct node *n;

    if (t->kind == TK_STRING || t->kind == TK_NUMBER) {
        n = new_node(p, t->kind == TK_STRING ? N_STR : N_NUM, t->off);
        n->tok = t;
        advance(p);
        *out = n;
        return 0;
    }
    if (t->kind != TK_IDENT)
        return err_expected(p, what);
    if (tok_is(p, t, "true") || tok_is(p, t, "false")) {
        n = new_node(p, N_BOOL, t->off);
        n->bval = tok_is(p, t, "true");
        n->tok = t;
        advance(p);
        *out = n;
        return 0;
    }
    if (tok_is(p, t, "null")) {
        perr(p, t->off, "'null' is not a value");
        return phint(p, "test for a missing value with 'is null' or 'is not null'");
    }
    if (is_keyword(p, t))
        return err_expected(p, what);
    if (peek(p, 1)->kind == TK_LPAREN)
        return parse_call(p, out);
    n = new_node(p, N_FIELD, t->off);
    n->field = find_field(p, t);
    if (!n->field) {
        if (!find_attr(p, t) && !take_as_attr(p, t))
            return err_unknown_ident(p, t);
        n->kind = N_ATTR;
        n->key = xstrndup(p->src + t->off, t->len);
    }
    advance(p);
    *out = n;
    return 0;
}

static bool
is_literal(const struct node *n)
{
    return n->kind == N_STR || n->kind == N_NUM || n->kind == N_BOOL;
}

static enum vtype
vtype_of(const struct node *n)
{
    switch (n->kind) {
    case N_FIELD:
        return n->field->type;
    case N_ATTR:
        return VT_ANY;
    case N_CALL:
        return n->fn->ret;
    default:
        return VT_LIT;
    }
}

static int parse_or(struct parser *p, struct node **out);

static int
parse_in_list(struct parser *p, struct node *n)
{
    struct node **tail = &n->kids, *item;
    char d[64];
    if (cur(p)->kind != TK_LPAREN) {
        perr(p, cur(p)->off, "expected '(' after 'in'");
        return phint(p, "e.g. tier in ('gold', 'silver')");
    }
    advance(p);
    for (;;) {
        if (parse_value(p, "a value", &item) < 0)
            return -EINVAL;
        if (!is_literal(item)) {
            perr(p, item->off, "only values can be listed in 'in (...)'");
            return phint(p, "e.g. tier in ('gold', 'silver')");
        }
        *tail = item;
        tail = &item->next;
        if (cur(p)->kind == TK_COMMA) {
            advance(p);
        } else if (cur(p)->kind == TK_RPAREN) {
            advance(p);
            return 0;
        } else {
            perr(p, cur(p)->off, "expected ',' or ')' in the list, found %s",
                 tokdesc(p, cur(p), d, sizeof(d)));
            return phint(p, "e.g. tier in ('gold', 'silver')");
        }
    }
}

static int
parse_condition(struct parser *p, struct node **out)
{
    const struct token *t = cur(p);
    struct node *x, *n;
    char d[64], e[64];

    if (t->kind == TK_LPAREN) {
        if (++p->depth > AUD_MAX_DEPTH) {
            perr(p, t->off, "expression nested too deeply (more than %d levels)", AUD_MAX_DEPTH);
            return phint(p, "simplify the expression");
        }
        advance(p);
        if (parse_or(p, &x) < 0)
            return -EINVAL;
        if (cur(p)->kind != TK_RPAREN) {
            int line, col;
            locate(p, t->off, &line, &col);
            perr(p, cur(p)->off, "expected ')' to close the '(' at %d:%d, found %s", line, col,
                 tokdesc(p, cur(p), d, sizeof(d)));
            return phint(p, "join conditions with 'and' or 'or'");
        }
        advance(p);
        p->depth--;
        *out = x;
        return 0;
    }
    if (parse_value(p, "a condition", &x) < 0)
        return -EINVAL;

    t = cur(p);
    if (t->kind == TK_CMP) {
        n = new_node(p, N_CMP, x->off);
        n->op = t->op;
        advance(p);
        if (tok_is(p, cur(p), "null")) {
            perr(p, cur(p)->off, "use 'is null' to test for a missing value");
            return phint(p, "e.g. email is null, or email is not null");
        }
        if (parse_value(p, "a value", &n->b) < 0)
            return -EINVAL;
        n->a = x;
        *out = n;
        return 0;
    }
    if (tok_is(p, t, "not")) {
        const struct token *u = peek(p, 1);
        if (!tok_is(p, u, "in") && !tok_is(p, u, "between") && !tok_is(p, u, "like")) {
            perr(p, u->off, "expected 'in', 'between' or 'like' after 'not', found %s",
                 tokdesc(p, u, d, sizeof(d)));
            return phint(p, "e.g. tier not in ('gold'); to negate a condition put 'not' "
                            "before it");
        }
        advance(p);
        t = cur(p);
        n = new_node(p, N_CMP, x->off);
        n->neg = true;
    } else {
        n = new_node(p, N_CMP, x->off);
    }
    n->a = x;
    if (tok_is(p, t, "in")) {
        n->kind = N_IN;
        advance(p);
        if (parse_in_list(p, n) < 0)
            return -EINVAL;
    } else if (tok_is(p, t, "between")) {
        n->kind = N_BETWEEN;
        advance(p);
        if (parse_value(p, "a value", &n->b) < 0)
            return -EINVAL;
        if (!tok_is(p, cur(p), "and")) {
            perr(p, cur(p)->off, "expected 'and' after the lower bound of 'between', found %s",
                 tokdesc(p, cur(p), d, sizeof(d)));
            return phint(p, "e.g. orders_count between 2 and 5");
        }
        advance(p);
        if (parse_value(p, "a value", &n->c) < 0)
            return -EINVAL;
    } else if (tok_is(p, t, "like")) {
        n->kind = N_LIKE;
        advance(p);
        if (cur(p)->kind != TK_STRING) {
            perr(p, cur(p)->off, "expected a quoted pattern after 'like'");
            return phint(p, "e.g. email like '%%@example.com' (%% is any text, _ one character)");
        }
        n->b = new_node(p, N_STR, cur(p)->off);
        n->b->tok = cur(p);
        advance(p);
    } else if (tok_is(p, t, "is")) {
        n->kind = N_ISNULL;
        advance(p);
        if (tok_is(p, cur(p), "not")) {
            n->neg = true;
            advance(p);
        }
        if (!tok_is(p, cur(p), "null")) {
            perr(p, cur(p)->off, "expected 'null' or 'not null' after 'is', found %s",
                 tokdesc(p, cur(p), d, sizeof(d)));
            return phint(p, "e.g. email is not null; compare values with =");
        }
        advance(p);
    } else if (vtype_of(x) == VT_BOOL || x->kind == N_BOOL) {
        n->kind = N_TRUTH;
    } else if (t->kind == TK_EOF || t->kind == TK_RPAREN || tok_is(p, t, "and") ||
               tok_is(p, t, "or")) {
        const struct token *xt = &p->toks[p->pos - 1];
        if (x->kind == N_CALL)
            snprintf(d, sizeof(d), "%s()", x->fn->name);
        else
            tokdesc(p, xt, d, sizeof(d));
        perr(p, x->off, "%s is not a condition on its own", d);
        if (x->kind == N_FIELD || x->kind == N_ATTR)
            return phint(p, "compare it, e.g. %.*s = 'gold', or test %.*s is not null",
                         (int)xt->len, p->src + xt->off, (int)xt->len, p->src + xt->off);
        return phint(p, "compare it, e.g. orders_count >= 3");
    } else {
        perr(p, t->off, "expected a comparison after %s, found %s",
             tokdesc(p, &p->toks[p->pos - 1], d, sizeof(d)), tokdesc(p, t, e, sizeof(e)));
        return phint(p, "e.g. = != < <= > >= in (...) between ... and ... like '...' is null");
    }
    *out = n;
    return 0;
}

static int
parse_not(struct parser *p, struct node **out)
{
    const struct token *t = cur(p);
    struct node *n;
    if (!tok_is(p, t, "not"))
        return parse_condition(p, out);
    if (++p->depth > AUD_MAX_DEPTH) {
        perr(p, t->off, "expression nested too deeply (more than %d levels)", AUD_MAX_DEPTH);
        return phint(p, "simplify the expression");
    }
    advance(p);
    n = new_node(p, N_NOT, t->off);
    if (parse_not(p, &n->a) < 0)
        return -EINVAL;
    p->depth--;
    *out = n;
    return 0;
}

/* and/or chains become one node with a list of children, so that a long
 * chain costs no recursion depth when emitted. */
static int
parse_chain(struct parser *p, const char *word, enum nkind kind,
            int (*sub)(struct parser *, struct node **), struct node **out)
{
    struct node *first, *n, **tail;
    if (sub(p, &first) < 0)
        return -EINVAL;
    if (!tok_is(p, cur(p), word)) {
        *out = first;
        return 0;
    }
    n = new_node(p, kind, first->off);
    n->kids = first;
    tail = &first->next;
    while (tok_is(p, cur(p), word)) {
        struct node *k;
        advance(p);
        if (sub(p, &k) < 0)
            return -EINVAL;
        *tail = k;
        tail = &k->next;
    }
    *out = n;
    return 0;
}

static int
parse_and(struct parser *p, struct node **out)
{
    return parse_chain(p, "and", N_AND, parse_not, out);
}

static int
parse_or(struct parser *p, struct node **out)
{
    return parse_chain(p, "or", N_OR, parse_and, out);
}

/* ---- emitter ----------------------------------------------------------------- */

static void
emit(struct parser *p, const char *sql)
{
    sbuf_adds(&p->sql, sql);
}

static struct aud_param *
push_param(struct parser *p, enum aud_param_kind kind)
{
    struct aud_param *a;
    if (p->nparams == p->pcap) {
        p->pcap = p->pcap ? p->pcap * 2 : 8;
        p->params = xrealloc(p->params, p->pcap * sizeof(*p->params));
    }
    a = &p->params[p->nparams++];
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    sbuf_adds(&p->sql, "?");
    return a;
}

static void
param_text(struct parser *p, const char *s)
{
    push_param(p, AUD_TEXT)->text = xstrdup(s);
}

static void
param_today(struct parser *p)
{
    push_param(p, AUD_NOW_DATE);
}

static void
param_number(struct parser *p, bool is_real, int64_t i, double r)
{
    struct aud_param *a = push_param(p, is_real ? AUD_REAL : AUD_INT);
    a->i = i;
    a->r = r;
}

static const char *
type_name(enum vtype t)
{
    switch (t) {
    case VT_TEXT:
        return "text";
    case VT_NUM:
        return "a number";
    case VT_DATE:
        return "a date";
    case VT_BOOL:
        return "true or false";
    default:
        return "a value";
    }
}

static const char *
describe(const struct node *n, char *buf, size_t size)
{
    if (!n)
        snprintf(buf, size, "the value");
    else if (n->kind == N_FIELD)
        snprintf(buf, size, "%s", n->field->name);
    else if (n->kind == N_ATTR)
        snprintf(buf, size, "attribute '%.40s'", n->key);
    else if (n->kind == N_CALL)
        snprintf(buf, size, "%s()", n->fn->name);
    else
        snprintf(buf, size, "the value");
    return buf;
}

/* Accepts what a date field may sensibly be compared with: 'YYYY-MM-DD',
 * a birthday without a year '--MM-DD', or an ISO 8601 timestamp. */
static bool
date_literal_ok(const char *s)
{
    int y, m, d;
    ntime_t t;
    if (date_parse(s, &y, &m, &d) == 0)
        return true;
    if (strlen(s) == 7 && s[0] == '-' && s[1] == '-' && s[4] == '-') {
        char full[11];
        snprintf(full, sizeof(full), "2000%s", s + 1); /* a leap year admits 02-29 */
        return date_parse(full, &y, &m, &d) == 0;
    }
    return time_parse_iso(s, &t) == 0;
}

static bool
text_as_number(const char *s, bool *is_real, int64_t *i, double *r)
{
    size_t n = strlen(s);
    if (n == 0 || number_span(s, n, is_real) != n)
        return false;
    return number_value(s, n, *is_real, i, r) == 0;
}

/* A literal, converted to what the other side of its comparison expects. */
static int
emit_literal(struct parser *p, const struct node *lit, const struct node *other)
{
    enum vtype ctx = other ? vtype_of(other) : VT_LIT;
    const struct token *t = lit->tok;
    char who[80];
    bool is_real;
    int64_t i = 0;
    double r = 0;

    describe(other, who, sizeof(who));
    if (lit->kind == N_STR) {
        switch (ctx) {
        case VT_NUM:
            if (!text_as_number(t->str, &is_real, &i, &r)) {
                perr(p, lit->off, "%s is a number, but '%.60s' is not", who, t->str);
                return phint(p, "write a number without quotes, e.g. 3 or 19.99");
            }
            param_number(p, is_real, i, r);
            return 0;
        case VT_DATE:
            if (!date_literal_ok(t->str)) {
                perr(p, lit->off, "%s is a date, but '%.60s' is not", who, t->str);
                return phint(p, "write dates as 'YYYY-MM-DD', e.g. '2024-01-31'");
            }
            param_text(p, t->str);
            return 0;
        case VT_BOOL:
            perr(p, lit->off, "%s is true or false, not text", who);
            return phint(p, "compare it with true or false, or use it on its own");
        case VT_ANY:
            /* TEXT affinity makes a JSON number compare as its text, so
             * store = '7' matches {"store": 7} as well as {"store": "7"}. */
            emit(p, "CAST(");
            param_text(p, t->str);
            emit(p, " AS TEXT)");
            return 0;
        default:
            param_text(p, t->str);
            return 0;
        }
    }
    if (lit->kind == N_NUM) {
        switch (ctx) {
        case VT_TEXT: {
            /* id = 1001 means the ext_id '1001': keep the spelling. */
            char *s = xstrndup(p->src + t->off, t->len);
            param_text(p, s);
            free(s);
            return 0;
        }
        case VT_DATE:
            perr(p, lit->off, "%s is a date; write dates in quotes", who);
            return phint(p, "e.g. '2024-01-31'");
        case VT_BOOL:
            perr(p, lit->off, "%s is true or false, not a number", who);
            return phint(p, "compare it with true or false, or use it on its own");
        default:
            /* An attribute on the other side is already in its numeric view
             * (emit_attr), so the number binds as it is. */
            param_number(p, t->is_real, t->i, t->r);
            return 0;
        }
    }
    /* N_BOOL */
    if (ctx == VT_TEXT || ctx == VT_DATE) {
        perr(p, lit->off, "%s is %s, not true or false", who, type_name(ctx));
        return phint(p, "compare it with a quoted value, e.g. 'gold'");
    }
    param_number(p, false, lit->bval ? 1 : 0, 0);
    return 0;
}

static int emit_value(struct parser *p, const struct node *n, const struct node *other);

/* The first ten characters of a date-valued operand ('YYYY-MM-DD'). A custom
 * attribute may hold anything, so it must look like a date first. */
static void
emit_date10(struct parser *p, const struct node *a)
{
    if (a->kind != N_ATTR) {
        emit(p, "substr(");
        emit_value(p, a, NULL);
        emit(p, ", 1, 10)");
        return;
    }
    emit(p, "(CASE WHEN ");
    emit_value(p, a, NULL);
    emit(p, " GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' THEN substr(");
    emit_value(p, a, NULL);
    emit(p, ", 1, 10) END)");
}

/* The 'MM-DD' of a date-valued operand; '--MM-DD' birthdays included. */
static void
emit_month_day(struct parser *p, const struct node *a)
{
    if (a->kind != N_ATTR) {
        emit(p, "substr(substr(");
        emit_value(p, a, NULL);
        emit(p, ", 1, 10), -5)");
        return;
    }
    emit(p, "(CASE WHEN substr(");
    emit_value(p, a, NULL);
    emit(p, ", 1, 10) GLOB '*-[0-9][0-9]-[0-9][0-9]' THEN substr(substr(");
    emit_value(p, a, NULL);
    emit(p, ", 1, 10), -5) END)");
}

/* Compiles a day-dependent value's date operand on its own (struct
 * aud_dayref), with parameters of its own. */
static void
push_dayref(struct parser *p, enum aud_day_kind kind, const struct node *x)
{
    struct sbuf sql = p->sql;
    struct aud_param *params = p->params;
    size_t nparams = p->nparams, pcap = p->pcap;
    struct audience *arg = xcalloc(1, sizeof(*arg));

    sbuf_init(&p->sql);
    p->params = NULL;
    p->nparams = p->pcap = 0;
    if (kind == AUD_DAYS_SINCE) {
        emit(p, "julianday(");
        emit_date10(p, x);
        emit(p, ")");
    } else {
        emit_month_day(p, x);
    }
    arg->sql = sbuf_steal(&p->sql);
    arg->params = p->params;
    arg->nparams = p->nparams;
    arg->source = xstrdup("");
    p->sql = sql;
    p->params = params;
    p->nparams = nparams;
    p->pcap = pcap;
    p->dayrefs = xrealloc(p->dayrefs, (p->ndayrefs + 1) * sizeof(*p->dayrefs));
    p->dayrefs[p->ndayrefs].kind = kind;
    p->dayrefs[p->ndayrefs].arg = arg;
    p->ndayrefs++;
}

static int
emit_call(struct parser *p, const struct node *n)
{
    switch (n->fn->id) {
    case FN_CONSENTS:
        emit(p, "EXISTS (SELECT 1 FROM consents aud_k WHERE aud_k.customer_id = c.id"
                " AND aud_k.channel = ");
        param_text(p, n->tok->str);
        emit(p, " AND aud_k.granted = 1)");
        return 0;
    case FN_HAS_TAG:
        emit(p, "EXISTS (SELECT 1 FROM customer_tags aud_t WHERE aud_t.customer_id = c.id"
                " AND aud_t.tag = ");
        param_text(p, n->tok->str);
        emit(p, ")");
        return 0;
    case FN_DAYS_SINCE:
        push_dayref(p, AUD_DAYS_SINCE, n->a);
        /* Both sides are midnight dates, so the difference is whole. */
        emit(p, "CAST(julianday(");
        param_today(p);
        emit(p, ") - julianday(");
        emit_date10(p, n->a);
        emit(p, ") AS INTEGER)");
        return 0;
    case FN_DAYS_UNTIL_ANNIV:
        push_dayref(p, AUD_DAYS_UNTIL_ANNIV, n->a);
        /* This year's anniversary if it is today or later, else next
         * year's. SQLite normalises 02-29 in a common year to 03-01. */
        emit(p, "CAST((CASE WHEN julianday(strftime('%Y', ");
        param_today(p);
        emit(p, ") || '-' || ");
        emit_month_day(p, n->a);
        emit(p, ") >= julianday(");
        param_today(p);
        emit(p, ") THEN julianday(strftime('%Y', ");
        param_today(p);
        emit(p, ") || '-' || ");
        emit_month_day(p, n->a);
        emit(p, ") ELSE julianday((strftime('%Y', ");
        param_today(p);
        emit(p, ") + 1) || '-' || ");
        emit_month_day(p, n->a);
        emit(p, ") END) - julianday(");
        param_today(p);
        emit(p, ") AS INTEGER)");
        return 0;
    case FN_ATTR:
        break; /* compiled to N_ATTR by the parser */
    }
    return 0;
}

static void
emit_attr_raw(struct parser *p, const struct node *n)
{
    /* The key travels as a bound JSON path, quoted so that dots and brackets
     * in it are part of the name. */
    struct sbuf path;
    sbuf_init(&path);
    sbuf_printf(&path, "$.\"%s\"", n->key);
    emit(p, "json_extract(c.attrs, ");
    param_text(p, path.s);
    emit(p, ")");
    sbuf_free(&path);
}

/*
 * A custom attribute compared with an unquoted number is read as a number:
 * CSV imports store "120" as text, and text never equals or orders like a
 * number in SQLite. Only values that are JSON numbers (checked with
 * json_valid first, since json_type raises an error on anything else) take
 * part; "abc" counts as missing rather than as greater than every number.
 */
static void
emit_attr_numeric(struct parser *p, const struct node *n)
{
    emit(p, "(CASE WHEN json_valid(");
    emit_attr_raw(p, n);
    emit(p, ") THEN (CASE WHEN json_type(");
    emit_attr_raw(p, n);
    emit(p, ") IN ('integer', 'real') THEN ");
    emit_attr_raw(p, n);
    emit(p, " + 0 END) END)");
}

static int
emit_value(struct parser *p, const struct node *n, const struct node *other)
{
    switch (n->kind) {
    case N_FIELD:
        emit(p, n->field->sql);
        return 0;
    case N_ATTR:
        if (other && other->kind == N_NUM)
            emit_attr_numeric(p, n);
        else
            emit_attr_raw(p, n);
        return 0;
    case N_CALL:
        return emit_call(p, n);
    default:
        return emit_literal(p, n, other);
    }
}

/* Two non-literal values may be compared if their types can meet. */
static int
check_comparable(struct parser *p, const struct node *a, const struct node *b)
{
    enum vtype ta = vtype_of(a), tb = vtype_of(b);
    char da[80], db[80];
    if (ta == VT_LIT || tb == VT_LIT || ta == VT_ANY || tb == VT_ANY || ta == tb)
        return 0;
    if ((ta == VT_TEXT && tb == VT_DATE) || (ta == VT_DATE && tb == VT_TEXT))
        return 0;
    perr(p, b->off, "cannot compare %s (%s) with %s (%s)", describe(a, da, sizeof(da)),
         type_name(ta), describe(b, db, sizeof(db)), type_name(tb));
    return phint(p, "compare values of the same kind");
}

static int emit_cond(struct parser *p, const struct node *n);

/*
 * Joins items with " AND " or " OR " as a balanced tree of parentheses.
 * SQLite parses a flat chain as a left-deep tree and refuses more than 1000
 * levels (SQLITE_MAX_EXPR_DEPTH), so 3000 ORs must nest only 12 deep.
 */
static int
emit_join(struct parser *p, const struct node *const *items, size_t n, const char *sep,
          const struct node *x)
{
    int r;
    if (n == 1) {
        if (!x)
            return emit_cond(p, items[0]);
        /* One item of an attribute's IN list: x = item. */
        emit(p, "(");
        emit_value(p, x, items[0]);
        emit(p, " = ");
        r = emit_value(p, items[0], x);
        emit(p, ")");
        return r;
    }
    emit(p, "(");
    if ((r = emit_join(p, items, n / 2, sep, x)) < 0)
        return r;
    emit(p, sep);
    r = emit_join(p, items + n / 2, n - n / 2, sep, x);
    emit(p, ")");
    return r;
}

static int
emit_list(struct parser *p, const struct node *first, const char *sep, const struct node *x)
{
    size_t n = 0, k = 0;
    const struct node **items;
    int r;
    for (const struct node *i = first; i; i = i->next)
        n++;
    items = xcalloc(n, sizeof(*items));
    for (const struct node *i = first; i; i = i->next)
        items[k++] = i;
    r = emit_join(p, items, n, sep, x);
    free(items);
    return r;
}

/* The negative forms are exact negations (see audience.h): NOT COALESCE(x, 0)
 * turns "unknown" into "false" before negating it. */
static void
open_neg(struct parser *p, bool neg)
{
    emit(p, neg ? "(NOT COALESCE(" : "(");
}

static void
close_neg(struct parser *p, bool neg)
{
    emit(p, neg ? ", 0))" : ")");
}

static int
emit_cond(struct parser *p, const struct node *n)
{
    const struct node *k;
    int r = 0;
    switch (n->kind) {
    case N_OR:
    case N_AND:
        return emit_list(p, n->kids, n->kind == N_OR ? " OR " : " AND ", NULL);
    case N_NOT:
        open_neg(p, true);
        r = emit_cond(p, n->a);
        close_neg(p, true);
        return r;
    case N_TRUTH:
        emit(p, "(");
        r = emit_value(p, n->a, NULL);
        emit(p, ")");
        return r;
    case N_CMP:
        if ((r = check_comparable(p, n->a, n->b)) < 0)
            return r;
        open_neg(p, n->op == OP_NE);
        if ((r = emit_value(p, n->a, n->b)) < 0)
            return r;
        emit(p, op_sql[n->op == OP_NE ? OP_EQ : n->op]);
        r = emit_value(p, n->b, n->a);
        close_neg(p, n->op == OP_NE);
        return r;
    case N_IN:
        open_neg(p, n->neg);
        if (vtype_of(n->a) == VT_ANY) {
            /* IN applies no affinity to its list, so an attribute gets one
             * comparison per item, each converting like '=' does. */
            r = emit_list(p, n->kids, " OR ", n->a);
        } else {
            if ((r = emit_value(p, n->a, NULL)) < 0)
                return r;
            emit(p, " IN (");
            for (k = n->kids; k && r == 0; k = k->next) {
                if (k != n->kids)
                    emit(p, ", ");
                r = emit_value(p, k, n->a);
            }
            emit(p, ")");
        }
        close_neg(p, n->neg);
        return r;
    case N_BETWEEN:
        if ((r = check_comparable(p, n->a, n->b)) < 0 ||
            (r = check_comparable(p, n->a, n->c)) < 0)
            return r;
        open_neg(p, n->neg);
        /* An attribute between numbers is read as a number (emit_attr_numeric). */
        if ((r = emit_value(p, n->a, n->b->kind == N_NUM ? n->b : n->c)) < 0)
            return r;
        emit(p, " BETWEEN ");
        if ((r = emit_value(p, n->b, n->a)) < 0)
            return r;
        emit(p, " AND ");
        r = emit_value(p, n->c, n->a);
        close_neg(p, n->neg);
        return r;
    case N_ISNULL:
        emit(p, "(");
        r = emit_value(p, n->a, NULL);
        emit(p, n->neg ? " IS NOT NULL)" : " IS NULL)");
        return r;
    case N_LIKE:
        open_neg(p, n->neg);
        if ((r = emit_value(p, n->a, NULL)) < 0)
            return r;
        emit(p, " LIKE ");
        param_text(p, n->b->tok->str);
        emit(p, " ESCAPE '\\'");
        close_neg(p, n->neg);
        return 0;
    default:
        /* A bare value never reaches here: parse_condition wraps it. */
        return -EINVAL;
    }
}

/* ---- day dependence (struct audience: stepwise, cuts) ------------------------ */

#define AUD_MAX_CUTS 64

static bool
is_day_call(const struct node *n)
{
    return n && n->kind == N_CALL &&
           (n->fn->id == FN_DAYS_SINCE || n->fn->id == FN_DAYS_UNTIL_ANNIV);
}

/* A literal as the number the compiled SQL compares a day count with. */
static bool
literal_number(const struct node *n, double *v)
{
    bool is_real;
    int64_t i;
    double r;
    if (n->kind == N_NUM) {
        *v = n->tok->is_real ? n->tok->r : (double)n->tok->i;
        return true;
    }
    if (n->kind == N_STR && text_as_number(n->tok->str, &is_real, &i, &r)) {
        *v = is_real ? r : (double)i;
        return true;
    }
    return false;
}

static void
add_cut(double **cuts, size_t *n, double v)
{
    for (size_t k = 0; k < *n; k++)
        if ((*cuts)[k] == v)
            return;
    *cuts = xrealloc(*cuts, (*n + 1) * sizeof(**cuts));
    (*cuts)[(*n)++] = v;
}

/*
 * Decides whether the expression is stepwise in the day and collects the
 * cuts: every condition holding a day-dependent value must compare it with
 * number literals only (=, <, in, between...); "is null" is fine as is, since
 * whether the value is missing does not depend on the day.
 */
static bool
analyse_days(struct parser *p, double **cuts, size_t *ncuts)
{
    for (const struct node *n = p->nodes; n; n = n->all) {
        const struct node *ops[3] = {n->a, n->b, n->c}, *k;
        size_t ndays = 0;
        double v;
        switch (n->kind) {
        case N_CMP:
        case N_BETWEEN:
        case N_IN:
            break;
        case N_LIKE:
        case N_TRUTH:
            if (is_day_call(n->a))
                return false;
            continue;
        default:
            continue;
        }
        for (int i = 0; i < 3; i++)
            ndays += is_day_call(ops[i]);
        for (k = n->kind == N_IN ? n->kids : NULL; k; k = k->next)
            ndays += is_day_call(k);
        if (ndays == 0)
            continue;
        if (ndays > 1)
            return false;
        for (int i = 0; i < 3; i++) {
            if (!ops[i] || is_day_call(ops[i]))
                continue;
            if (!literal_number(ops[i], &v))
                return false;
            add_cut(cuts, ncuts, v);
        }
        for (k = n->kind == N_IN ? n->kids : NULL; k; k = k->next) {
            if (!literal_number(k, &v))
                return false;
            add_cut(cuts, ncuts, v);
        }
        if (*ncuts > AUD_MAX_CUTS)
            return false;
    }
    return true;
}

void
audience_day_select(const struct audience *a, struct sbuf *q)
{
    for (size_t k = 0; k < a->ndayrefs; k++)
        sbuf_printf(q, ", %s", a->dayrefs[k].arg->sql);
}

void
audience_day_args(const struct audience *a, const struct aud_dayval *vals, struct aud_dayarg *args)
{
    for (size_t k = 0; k < a->ndayrefs; k++) {
        struct aud_dayarg *x = &args[k];
        const struct aud_dayval *v = &vals[k];
        const char *t = v->text;
        memset(x, 0, sizeof(*x));
        if (v->null)
            continue;
        if (a->dayrefs[k].kind == AUD_DAYS_SINCE) {
            x->jd = v->real;
            x->valid = true;
            continue;
        }
        /* julianday('YYYY-' || x) needs exactly "MM-DD", month 1-12 and
         * day 1-31 (a day past the month's end rolls over: 02-30 is 03-02). */
        if (t && v->len == 5 && t[0] >= '0' && t[0] <= '9' && t[1] >= '0' && t[1] <= '9' &&
            t[2] == '-' && t[3] >= '0' && t[3] <= '9' && t[4] >= '0' && t[4] <= '9') {
            x->m = (t[0] - '0') * 10 + (t[1] - '0');
            x->d = (t[3] - '0') * 10 + (t[4] - '0');
            x->valid = x->m >= 1 && x->m <= 12 && x->d >= 1 && x->d <= 31;
        }
    }
}

/* The day number of y-m-d, letting a day past the month's end roll over. */
static int64_t
day_rolled(int y, int m, int d)
{
    return days_from_civil(y, m, 1) + d - 1;
}

void
audience_day_signature(const struct audience *a, const struct aud_dayarg *args, int64_t day,
                       unsigned char *sig)
{
    for (size_t k = 0; k < a->ndayrefs; k++) {
        const struct aud_dayarg *x = &args[k];
        int64_t v = 0;
        if (x->valid && a->dayrefs[k].kind == AUD_DAYS_SINCE) {
            /* CAST(julianday(today) - julianday(x) AS INTEGER) */
            v = (int64_t)(((double)day + 2440587.5) - x->jd);
        } else if (x->valid) {
            int y, m, d;
            int64_t ann;
            civil_from_days(day, &y, &m, &d);
            ann = day_rolled(y, x->m, x->d);
            if (ann < day)
                ann = day_rolled(y + 1, x->m, x->d);
            v = ann - day;
        }
        for (size_t c = 0; c < a->ncuts; c++) {
            double cut = a->cuts[c];
            *sig++ = !x->valid ? 3 : (double)v < cut ? 0 : (double)v == cut ? 1 : 2;
        }
    }
}

/* ---- public API --------------------------------------------------------------- */

static void
parser_free(struct parser *p)
{
    struct node *n = p->nodes, *next;
    for (; n; n = next) {
        next = n->all;
        free(n->key);
        free(n);
    }
    for (size_t k = 0; k < p->ntoks; k++)
        free(p->toks[k].str);
    free(p->toks);
    for (size_t k = 0; k < p->nparams; k++)
        free(p->params[k].text);
    free(p->params);
    sbuf_free(&p->sql);
    for (size_t k = 0; k < p->ndayrefs; k++)
        audience_free(p->dayrefs[k].arg);
    free(p->dayrefs);
}

/* Something follows a complete condition. */
static int
err_trailing(struct parser *p)
{
    static const char *const joiners[] = {"and", "or", NULL};
    const struct token *t = cur(p);
    const char *best = NULL;
    char d[64];

    if (t->kind == TK_RPAREN) {
        perr(p, t->off, "unmatched ')'");
        return phint(p, "remove it, or add the '(' it closes");
    }
    if (t->kind == TK_IDENT && t->len < 16) {
        char *w = xstrndup(p->src + t->off, t->len);
        best = did_you_mean(w, joiners);
        free(w);
    }
    perr(p, t->off, "unexpected %s after a complete condition", tokdesc(p, t, d, sizeof(d)));
    if (best)
        return phint(p, "did you mean '%s'?", best);
    return phint(p, "expected 'and', 'or' or the end of the expression");
}

/* Where the first invalid UTF-8 sequence starts. */
static size_t
utf8_bad_offset(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (i + n > len || !utf8_valid(s + i, n))
            return i;
        i += n;
    }
    return len;
}

int
audience_compile(const char *expr, const char *file, int line, int col,
                 const char *const *known_attrs, struct audience **out, struct nerr *err)
{
    struct parser p;
    struct node *root = NULL;
    struct audience *a;
    bool blank = true;
    int r = -EINVAL;

    if (!out)
        return -EINVAL;
    *out = NULL;
    memset(&p, 0, sizeof(p));
    sbuf_init(&p.sql);
    p.src = expr ? expr : "";
    p.len = strlen(p.src);
    p.file = file;
    p.line0 = line > 0 ? line : 1;
    p.col0 = col > 0 ? col : 1;
    p.attrs = known_attrs;
    p.err = err;
    sbuf_init(&p.warn);

    if (p.len > AUD_MAX_LEN) {
        perr(&p, 0, "audience expression too long (%zu bytes, at most %d)", p.len, AUD_MAX_LEN);
        phint(&p, "select customers with a tag (has_tag) instead of listing them");
        r = -E2BIG;
        goto out;
    }
    if (!utf8_valid(p.src, p.len)) {
        perr(&p, utf8_bad_offset(p.src, p.len), "invalid UTF-8 in the audience expression");
        phint(&p, "save the rule file as UTF-8");
        goto out;
    }
    for (size_t i = 0; i < p.len && blank; i++)
        blank = p.src[i] == ' ' || p.src[i] == '\t' || p.src[i] == '\n' || p.src[i] == '\r';
    if (blank) {
        emit(&p, "1");
    } else {
        lex(&p);
        r = parse_or(&p, &root);
        if (r == 0 && cur(&p)->kind != TK_EOF)
            r = err_trailing(&p);
        /* The lexical error wins unless the parser stumbled before it. */
        if (p.lex_failed && (r == 0 || p.err_off >= p.lex_err_off)) {
            if (err)
                *err = p.lex_err;
            r = -EINVAL;
            goto out;
        }
        if (r < 0)
            goto out;
        r = -EINVAL;
        if (emit_cond(&p, root) < 0)
            goto out;
        if (p.nparams > AUD_MAX_PARAMS) {
            perr(&p, 0, "audience expression too large (%zu values, at most %d)", p.nparams,
                 AUD_MAX_PARAMS);
            phint(&p, "select customers with a tag (has_tag) instead of listing them");
            r = -E2BIG;
            goto out;
        }
    }

    a = xcalloc(1, sizeof(*a));
    a->sql = sbuf_steal(&p.sql);
    a->params = p.params;
    a->nparams = p.nparams;
    a->source = xstrdup(p.src);
    a->stepwise = analyse_days(&p, &a->cuts, &a->ncuts);
    a->dayrefs = p.dayrefs;
    a->ndayrefs = p.ndayrefs;
    a->warnings = p.warn.len ? sbuf_steal(&p.warn) : NULL;
    p.params = NULL;
    p.nparams = 0;
    p.dayrefs = NULL;
    p.ndayrefs = 0;
    *out = a;
    r = 0;
out:
    sbuf_free(&p.warn);
    parser_free(&p);
    return r;
}

void
audience_free(struct audience *a)
{
    if (!a)
        return;
    for (size_t k = 0; k < a->nparams; k++)
        free(a->params[k].text);
    free(a->params);
    free(a->sql);
    free(a->source);
    free(a->warnings);
    for (size_t k = 0; k < a->ndayrefs; k++)
        audience_free(a->dayrefs[k].arg);
    free(a->dayrefs);
    free(a->cuts);
    free(a);
}

int
audience_param(const struct audience *a, size_t k, const char *today, struct aud_value *v)
{
    const struct aud_param *pa;
    int y, m, d;

    if (!a || !v)
        return -EINVAL;
    if (k >= a->nparams)
        return -ERANGE;
    pa = &a->params[k];
    memset(v, 0, sizeof(*v));
    v->kind = pa->kind;
    switch (pa->kind) {
    case AUD_TEXT:
        v->text = pa->text;
        v->len = strlen(pa->text);
        break;
    case AUD_INT:
        v->i = pa->i;
        break;
    case AUD_REAL:
        v->r = pa->r;
        break;
    case AUD_NOW_DATE:
        if (!today || date_parse(today, &y, &m, &d) < 0)
            return -EINVAL;
        v->kind = AUD_TEXT;
        v->text = today;
        v->len = 10;
        break;
    }
    return 0;
}

const char *
audience_from_clause(void)
{
    return FROM_CLAUSE;
}
