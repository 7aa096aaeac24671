/*
 * template.h: Mustache templates for message subjects, bodies, SMS texts and
 * task notes: compiling (with located syntax errors), rendering against a
 * jansson value, partials, and listing the names a template uses.
 *
 * Two references: the official Mustache spec's core modules (comments,
 * delimiters, interpolation, inverted, partials, sections), all of whose
 * cases pass (tests/e2e/11-mustache-spec.sh runs the vendored
 * tests/mustache-spec/ through `nudgectl render`), and mustache.js, because
 * that is what marketers try their templates with:
 * tests/e2e/10-template-diff.sh renders a corpus with both and compares the
 * bytes. Supported: {{x}} (HTML-escaped exactly like
 * mustache.js: & < > " ' / ` =), {{{x}}} and {{& x}} (raw), dotted names,
 * the implicit iterator {{.}}, the context stack, sections over lists,
 * objects, strings, numbers and booleans, inverted sections, comments,
 * partials, set-delimiter tags and the standalone-line rules. Lambdas are not
 * supported (JSON has none).
 *
 * Where the spec and mustache.js disagree, the spec wins on everything its
 * core modules test (the first three points); elsewhere we follow
 * mustache.js 3.0.1, the Debian package the differential test runs against:
 *
 *  - Partial indentation: a partial tag that is the first tag on a line that
 *    is removed as standalone, with whitespace before it, has every non-empty
 *    line of the partial indented by that whitespace (spaces and tabs only),
 *    as the spec and mustache.js >= 4 do. mustache.js 3.0.1 drops the
 *    indentation instead; render.js in the tests adds it back with a shim.
 *    Interpolated values are not indented (spec: "Standalone Indentation").
 *  - A standalone tag on the last line with no newline after it is removed
 *    with the whitespace before it, as the spec's "Standalone Without
 *    Newline" cases require (mustache.js 3 keeps the whitespace).
 *  - Dotted names: a.b.c looks up `a` in the context stack; the first
 *    context that has `a` resolves the rest, and if `b` or `c` is missing
 *    there the name is not found (the spec's "Dotted Names - Context
 *    Precedence"); mustache.js 3 goes on to the parent contexts.
 *  - Standalone lines otherwise follow mustache.js: a line whose only
 *    non-whitespace content is tags other than {{x}}/{{{x}}}/{{&x}} is
 *    removed, even with several tags on it (the spec only tests lines with a
 *    single tag). "Whitespace" is JavaScript's \s (includes U+00A0, U+3000
 *    ...); only \n ends a line, so \r\n works and a lone \r does not.
 *  - Falsey, for sections and inverted sections: missing, null, false, 0,
 *    0.0 and "". An empty list is falsey for inverted sections and renders
 *    its section zero times.
 *  - Values render as JavaScript's String(): reals in the shortest form that
 *    reads back the same (1.5, 0.1, 1e+21), true/false, lists joined with
 *    commas, objects as "[object Object]". Integers beyond 2^53 render exactly
 *    here, while JavaScript would round them to the nearest double.
 *  - A null element of a list, pushed as the context of a section: mustache.js
 *    throws on any name looked up inside it; here the lookup moves on to the
 *    outer contexts.
 *  - Names the JavaScript prototype chain would find ({{toString}},
 *    {{list.map}}) are not found; "length" of lists and strings (strings count
 *    UTF-16 units) and numeric indexes (list.0) are, as in mustache.js.
 *  - Errors where mustache.js silently renders something: an empty tag
 *    ({{}}, {{#}}), sections nested deeper than TMPL_MAX_NESTING, partials
 *    nested deeper than TMPL_MAX_PARTIAL_DEPTH.
 *  - Partials always start with the default {{ }} delimiters (as in both).
 */
#ifndef NUDGE_TEMPLATE_H
#define NUDGE_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

#include "util.h"

struct tmpl; /* a parsed template */

/*
 * Loads partial NAME: on success *text is a malloc'd buffer (the renderer
 * frees it) of *len bytes. -ENOENT renders as empty (per spec); any other
 * negative value fails the render.
 */
typedef int (*tmpl_partial_fn)(void *ud, const char *name, char **text, size_t *len);

/* {{x}} escapes HTML; without it {{x}} is raw (used for .txt, .subject, SMS). */
#define TMPL_ESCAPE_HTML 1u

/* Deepest section nesting a template may have. */
#define TMPL_MAX_NESTING 100
/* Deepest chain of partials including partials, so a partial that includes
 * itself fails with an error instead of overflowing the stack. */
#define TMPL_MAX_PARTIAL_DEPTH 64

/*
 * Parses SRC[0..len) (it need not be NUL-terminated; it is copied). NAME is
 * used in error locations (usually the file path). Syntax errors fill err
 * with name:line:col of the offending tag (col counts UTF-8 characters), the
 * source line and a hint, and return -EINVAL.
 */
int tmpl_compile(const char *name, const char *src, size_t len, struct tmpl **out,
                 struct nerr *err);

/*
 * Renders T with DATA (any JSON value, or NULL) and appends the result to OUT. PARTIAL
 * may be NULL (partials then render as empty). On failure OUT is left as it
 * was, err says why (located in the template or partial at fault) and a
 * negative errno is returned.
 */
int tmpl_render(const struct tmpl *t, json_t *data, unsigned flags, tmpl_partial_fn partial,
                void *ud, struct sbuf *out, struct nerr *err);

void tmpl_free(struct tmpl *t);

/*
 * Calls cb for every variable and section name the template references, as
 * the first segment of dotted names ("coupon" for {{coupon.code}}), with its
 * line and column, so a rule checker can report unknown template variables.
 * Names inside a {{#section}} are not reported, because they may name fields
 * of the section's own value (a list item, an object) that the checker cannot
 * know; names inside {{^inverted}} sections are reported (they push nothing).
 * {{.}} and partials are not reported.
 */
void tmpl_foreach_name(const struct tmpl *t,
                       void (*cb)(void *ud, const char *name, int line, int col), void *ud);

/*
 * Calls cb for every partial tag ({{> name}}) of the template, sections
 * included, with its line and column, so that a rule loader can read every
 * partial a template may include when the rules are loaded.
 */
void tmpl_foreach_partial(const struct tmpl *t,
                          void (*cb)(void *ud, const char *name, int line, int col), void *ud);

/*
 * Partial loader that reads DIR/NAME.mustache; ud is the directory path
 * (const char *). Names that are empty, contain '/' or start with '.' are
 * rejected with -EINVAL so a template cannot read outside DIR.
 */
int tmpl_partials_from_dir(void *ud, const char *name, char **text, size_t *len);

/*
 * Convenience for `nudgectl render`: reads PATH, compiles it and renders it
 * with DATA, loading partials from PARTIALS_DIR (NULL: the directory that
 * holds PATH). Appends to OUT.
 */
int tmpl_render_file(const char *path, json_t *data, unsigned flags, const char *partials_dir,
                     struct sbuf *out, struct nerr *err);

#endif
