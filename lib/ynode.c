/*
 * ynode.c: builds a located tree from libyaml events, and the typed getters
 * that turn a wrong value into an error a person can act on.
 */
#include "ynode.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static void
ynode_free(struct ynode *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            ynode_free(n->keys[i]);
        ynode_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->value);
    free(n);
}

void
ydoc_free(struct ydoc *d)
{
    if (!d)
        return;
    ynode_free(d->root);
    free(d->file);
    free(d->text);
    free(d);
}

int
yerr(const struct ydoc *d, const struct ynode *n, struct nerr *err, const char *fmt, ...)
{
    va_list ap;
    char msg[NERR_MSG_MAX];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    nerr_set(err, d->file, n ? n->line : 0, n ? n->col : 0, "%s", msg);
    nerr_source(err, d->text, d->len);
    return -EINVAL;
}

struct builder {
    yaml_parser_t parser;
    struct ydoc *doc;
    struct nerr *err;
    int depth;
};

static struct ynode *
node_new(enum ynode_type t, yaml_mark_t m)
{
    struct ynode *n = xcalloc(1, sizeof(*n));
    n->type = t;
    n->line = (int)m.line + 1;
    n->col = (int)m.column + 1;
    return n;
}

static void
node_push(struct ynode *parent, struct ynode *key, struct ynode *item)
{
    parent->items = xrealloc(parent->items, (parent->n + 1) * sizeof(*parent->items));
    if (parent->type == YN_MAP) {
        parent->keys = xrealloc(parent->keys, (parent->n + 1) * sizeof(*parent->keys));
        parent->keys[parent->n] = key;
    }
    parent->items[parent->n++] = item;
}

static int parse_node(struct builder *b, yaml_event_t *ev, struct ynode **out);

static int
next_event(struct builder *b, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&b->parser, ev)) {
        const char *what = b->parser.problem ? b->parser.problem : "invalid YAML";
        yaml_mark_t m = b->parser.problem_mark;
        /* An unclosed bracket or quote is noticed only lines later (often at
         * the end of the file); the place to fix is where it was opened. */
        const char *ctx = b->parser.context;
        if (ctx && (strstr(ctx, "flow") || strstr(ctx, "quoted"))) {
            yaml_mark_t c = b->parser.context_mark;
            nerr_set(b->err, b->doc->file, (int)c.line + 1, (int)c.column + 1,
                     "%s opened here is not closed (%s, at line %d)",
                     strstr(ctx, "quoted") ? "the quote" : "the bracket", what, (int)m.line + 1);
            nerr_source(b->err, b->doc->text, b->doc->len);
            nerr_hint(b->err, "close it on the same line, e.g. [a, b] or \"text\"");
            return -EINVAL;
        }
        nerr_set(b->err, b->doc->file, (int)m.line + 1, (int)m.column + 1, "%s%s%s", what,
                 b->parser.context ? " " : "", b->parser.context ? b->parser.context : "");
        nerr_source(b->err, b->doc->text, b->doc->len);
        nerr_hint(b->err, "check the indentation and quoting; values containing ': ' or "
                          "starting with '{', '[', '*' or '&' need quotes");
        return -EINVAL;
    }
    return 0;
}

static int
parse_children(struct builder *b, struct ynode *parent, yaml_event_type_t end)
{
    for (;;) {
        yaml_event_t ev;
        struct ynode *key = NULL, *val = NULL;
        int r;
        if ((r = next_event(b, &ev)) < 0)
            return r;
        if (ev.type == end) {
            yaml_event_delete(&ev);
            return 0;
        }
        r = parse_node(b, &ev, parent->type == YN_MAP ? &key : &val);
        yaml_event_delete(&ev);
        if (r < 0)
            return r;
        if (parent->type == YN_MAP) {
            if (key->type != YN_SCALAR) {
                struct ydoc *d = b->doc;
                r = yerr(d, key, b->err, "a mapping key must be a plain word");
                ynode_free(key);
                return r;
            }
            for (size_t i = 0; i < parent->n; i++) {
                if (strcmp(parent->keys[i]->value, key->value) == 0) {
                    r = yerr(b->doc, key, b->err, "duplicate key '%s' (first at line %d)",
                             key->value, parent->keys[i]->line);
                    nerr_hint(b->err, "remove one of them; a later key would silently win");
                    ynode_free(key);
                    return r;
                }
            }
            if ((r = next_event(b, &ev)) < 0) {
                ynode_free(key);
                return r;
            }
            r = parse_node(b, &ev, &val);
            yaml_event_delete(&ev);
            if (r < 0) {
                ynode_free(key);
                return r;
            }
        }
        node_push(parent, key, val);
    }
}

static int
parse_node(struct builder *b, yaml_event_t *ev, struct ynode **out)
{
    struct ynode *n;
    int r;
    if (++b->depth > 64) {
        nerr_set(b->err, b->doc->file, (int)ev->start_mark.line + 1,
                 (int)ev->start_mark.column + 1, "nesting deeper than 64 levels");
        b->depth--;
        return -EINVAL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n = node_new(YN_SCALAR, ev->start_mark);
        n->value = xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (strlen(n->value) != ev->data.scalar.length) {
            r = yerr(b->doc, n, b->err, "a NUL byte inside a value");
            ynode_free(n);
            b->depth--;
            return r;
        }
        *out = n;
        break;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT:
        n = node_new(ev->type == YAML_MAPPING_START_EVENT ? YN_MAP : YN_SEQ, ev->start_mark);
        r = parse_children(b, n, ev->type == YAML_MAPPING_START_EVENT ? YAML_MAPPING_END_EVENT
                                                                       : YAML_SEQUENCE_END_EVENT);
        if (r < 0) {
            ynode_free(n);
            b->depth--;
            return r;
        }
        *out = n;
        break;
    case YAML_ALIAS_EVENT:
        nerr_set(b->err, b->doc->file, (int)ev->start_mark.line + 1,
                 (int)ev->start_mark.column + 1, "YAML aliases (*name) are not supported here");
        nerr_source(b->err, b->doc->text, b->doc->len);
        nerr_hint(b->err, "write the value out in full");
        b->depth--;
        return -EINVAL;
    default:
        nerr_set(b->err, b->doc->file, (int)ev->start_mark.line + 1,
                 (int)ev->start_mark.column + 1, "unexpected YAML event");
        b->depth--;
        return -EINVAL;
    }
    b->depth--;
    return 0;
}

int
ydoc_parse(const char *file, const char *text, size_t len, struct ydoc **out, struct nerr *err)
{
    struct builder b;
    yaml_event_t ev;
    int r = 0;
    bool have_doc = false;
    memset(&b, 0, sizeof(b));
    b.doc = xcalloc(1, sizeof(*b.doc));
    b.doc->file = xstrdup(file);
    b.doc->text = xstrndup(text, len);
    b.doc->len = len;
    b.err = err;
    if (!utf8_valid(text, len)) {
        /* Find the first bad byte: line and column (in characters). */
        int line = 1, col = 1;
        size_t i = 0, ls = 0;
        while (i < len) {
            size_t j = i + 1;
            while (j < len && ((unsigned char)text[j] & 0xC0) == 0x80 && j - i < 4)
                j++;
            if (!utf8_valid(text + i, j - i))
                break;
            if (text[i] == '\n') {
                line++;
                col = 1;
                ls = j;
            } else {
                col++;
            }
            i = j;
        }
        (void)ls;
        nerr_set(err, file, line, col, "invalid UTF-8 (byte 0x%02x)",
                 i < len ? (unsigned char)text[i] : 0);
        nerr_hint(err, "save the file as UTF-8");
        ydoc_free(b.doc);
        return -EINVAL;
    }
    yaml_parser_initialize(&b.parser);
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)b.doc->text, len);
    for (;;) {
        if ((r = next_event(&b, &ev)) < 0)
            break;
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type == YAML_DOCUMENT_START_EVENT) {
            yaml_mark_t m = ev.start_mark;
            yaml_event_delete(&ev);
            if (have_doc) {
                nerr_set(err, file, (int)m.line + 1, (int)m.column + 1,
                         "more than one YAML document in one file");
                nerr_source(err, b.doc->text, len);
                nerr_hint(err, "put one rule per file; remove the '---' separator");
                r = -EINVAL;
                break;
            }
            have_doc = true;
            if ((r = next_event(&b, &ev)) < 0)
                break;
            if (ev.type == YAML_DOCUMENT_END_EVENT) {
                yaml_event_delete(&ev);
                continue;
            }
            r = parse_node(&b, &ev, &b.doc->root);
            yaml_event_delete(&ev);
            if (r < 0)
                break;
            continue;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&b.parser);
    if (r < 0) {
        ydoc_free(b.doc);
        return r;
    }
    *out = b.doc;
    return 0;
}

int
ydoc_load_file(const char *path, struct ydoc **out, struct nerr *err)
{
    char *text;
    size_t len;
    int r = read_file(path, &text, &len);
    if (r < 0) {
        nerr_set(err, path, 0, 0, "cannot read: %s", strerror(-r));
        return r;
    }
    r = ydoc_parse(path, text, len, out, err);
    free(text);
    return r;
}

struct ynode *
ymap_get(const struct ynode *n, const char *key)
{
    if (!n || n->type != YN_MAP)
        return NULL;
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(n->keys[i]->value, key) == 0)
            return n->items[i];
    return NULL;
}

struct ynode *
ymap_key(const struct ynode *n, const char *key)
{
    if (!n || n->type != YN_MAP)
        return NULL;
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(n->keys[i]->value, key) == 0)
            return n->keys[i];
    return NULL;
}

static const char *
type_name(const struct ynode *n)
{
    if (!n)
        return "nothing";
    switch (n->type) {
    case YN_MAP:
        return "a mapping";
    case YN_SEQ:
        return "a list";
    default:
        return "a single value";
    }
}

int
yexpect_map(const struct ydoc *d, const struct ynode *n, const char *what, struct nerr *err)
{
    if (n && n->type == YN_MAP)
        return 0;
    yerr(d, n, err, "%s must be a mapping (key: value lines), found %s", what, type_name(n));
    return -EINVAL;
}

int
ymap_check_keys(const struct ydoc *d, const struct ynode *n, const char *what,
                const char *const *allowed, struct nerr *err)
{
    if (yexpect_map(d, n, what, err) < 0)
        return -EINVAL;
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->keys[i]->value;
        bool ok = false;
        struct sbuf list;
        const char *guess;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, k) == 0)
                ok = true;
        if (ok)
            continue;
        yerr(d, n->keys[i], err, "unknown key '%s' in %s", k, what);
        guess = did_you_mean(k, allowed);
        sbuf_init(&list);
        for (const char *const *a = allowed; *a; a++)
            sbuf_printf(&list, "%s%s", a == allowed ? "" : ", ", *a);
        if (guess)
            nerr_hint(err, "did you mean '%s'? (expected one of: %s)", guess, list.s);
        else
            nerr_hint(err, "expected one of: %s", list.s);
        sbuf_free(&list);
        return -EINVAL;
    }
    return 0;
}

int
yget_str(const struct ydoc *d, const struct ynode *n, const char *what, const char **out,
         struct nerr *err)
{
    if (!n || n->type != YN_SCALAR)
        return yerr(d, n, err, "%s must be a single value, found %s", what, type_name(n));
    *out = n->value;
    return 0;
}

int
yget_int(const struct ydoc *d, const struct ynode *n, const char *what, int64_t lo, int64_t hi,
         int64_t *out, struct nerr *err)
{
    int64_t v;
    if (!n || n->type != YN_SCALAR || parse_i64(n->value, &v) < 0) {
        yerr(d, n, err, "%s must be a whole number, found %s%s%s", what,
             n && n->type == YN_SCALAR ? "'" : "", n && n->type == YN_SCALAR ? n->value : type_name(n),
             n && n->type == YN_SCALAR ? "'" : "");
        nerr_hint(err, "expected a number from %lld to %lld", (long long)lo, (long long)hi);
        return -EINVAL;
    }
    if (v < lo || v > hi) {
        yerr(d, n, err, "%s is %lld, out of range", what, (long long)v);
        nerr_hint(err, "expected a number from %lld to %lld", (long long)lo, (long long)hi);
        return -ERANGE;
    }
    *out = v;
    return 0;
}

int
yget_bool(const struct ydoc *d, const struct ynode *n, const char *what, bool *out,
          struct nerr *err)
{
    static const char *const yes[] = {"true", "yes", "on", "True", "Yes", "On", "TRUE", NULL};
    static const char *const no[] = {"false", "no", "off", "False", "No", "Off", "FALSE", NULL};
    if (n && n->type == YN_SCALAR) {
        for (const char *const *p = yes; *p; p++)
            if (strcmp(*p, n->value) == 0)
                return *out = true, 0;
        for (const char *const *p = no; *p; p++)
            if (strcmp(*p, n->value) == 0)
                return *out = false, 0;
    }
    yerr(d, n, err, "%s must be true or false", what);
    return -EINVAL;
}

int
parse_duration(const char *s, int64_t *secs)
{
    char *end;
    long long v;
    int64_t mult = 1;
    if (!s || !*s || *s == '-' || *s == '+')
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    if (*end) {
        if (end[1])
            return -EINVAL;
        switch (*end) {
        case 's':
            mult = 1;
            break;
        case 'm':
            mult = 60;
            break;
        case 'h':
            mult = 3600;
            break;
        case 'd':
            mult = 86400;
            break;
        case 'w':
            mult = 7 * 86400;
            break;
        default:
            return -EINVAL;
        }
    }
    if (v > INT64_MAX / mult)
        return -ERANGE;
    *secs = v * mult;
    return 0;
}

int
yget_duration(const struct ydoc *d, const struct ynode *n, const char *what, int64_t *secs,
              struct nerr *err)
{
    if (!n || n->type != YN_SCALAR || parse_duration(n->value, secs) < 0) {
        yerr(d, n, err, "%s must be a duration", what);
        nerr_hint(err, "write a number with a unit: 30s, 5m, 24h, 3d or 1w");
        return -EINVAL;
    }
    return 0;
}

int
yget_hhmm(const struct ydoc *d, const struct ynode *n, const char *what, int *hh, int *mm,
          struct nerr *err)
{
    const char *s;
    if (n && n->type == YN_SCALAR) {
        s = n->value;
        /* YAML 1.1 reads an unquoted 09:30 as a sexagesimal number; libyaml keeps
         * the text, so both quoted and plain forms arrive here as written. */
        if (strlen(s) == 5 && s[2] == ':' && s[0] >= '0' && s[0] <= '2' && s[1] >= '0' &&
            s[1] <= '9' && s[3] >= '0' && s[3] <= '5' && s[4] >= '0' && s[4] <= '9') {
            *hh = (s[0] - '0') * 10 + (s[1] - '0');
            *mm = (s[3] - '0') * 10 + (s[4] - '0');
            if (*hh < 24)
                return 0;
        }
    }
    yerr(d, n, err, "%s must be a time of day", what);
    nerr_hint(err, "write it as \"HH:MM\" on a 24-hour clock, e.g. \"09:00\"");
    return -EINVAL;
}

json_t *
ynode_to_json(const struct ynode *n)
{
    json_t *j;
    if (!n)
        return json_null();
    switch (n->type) {
    case YN_MAP:
        j = json_object();
        for (size_t i = 0; i < n->n; i++)
            json_object_set_new(j, n->keys[i]->value, ynode_to_json(n->items[i]));
        return j;
    case YN_SEQ:
        j = json_array();
        for (size_t i = 0; i < n->n; i++)
            json_array_append_new(j, ynode_to_json(n->items[i]));
        return j;
    default:
        if (n->plain) {
            int64_t v;
            char *end;
            double r;
            if (parse_i64(n->value, &v) == 0)
                return json_integer(v);
            if (!strcmp(n->value, "true") || !strcmp(n->value, "yes"))
                return json_true();
            if (!strcmp(n->value, "false") || !strcmp(n->value, "no"))
                return json_false();
            if (!strcmp(n->value, "null") || !strcmp(n->value, "~"))
                return json_null();
            r = strtod(n->value, &end);
            if (*n->value && !*end && end != n->value)
                return json_real(r);
        }
        return json_string(n->value);
    }
}

const char *
json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "a mapping";
    case JSON_ARRAY:
        return "a list";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

int
json_get_int(const json_t *v, int lo, int hi, int *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < lo || i > hi)
            return -ERANGE;
        *out = (int)i;
        return 0;
    }
    if (json_is_string(v))
        return parse_int_range(json_string_value(v), lo, hi, out);
    return -EINVAL;
}
