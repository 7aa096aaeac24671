/*
 * test_template.c: unit tests for the Mustache renderer (lib/template.c):
 * escaping, lookup, sections, partials, delimiters, the standalone-line
 * rules, located syntax errors and the limits. Every rendering expectation is
 * the exact output of mustache.js (with standalone partial indentation, see
 * template.h), except integers beyond 2^53, which nudge keeps exact, and the
 * cases where the official spec decides otherwise (dotted-name precedence,
 * standalone tags on a last line without '\n'), which follow the spec;
 * tests/e2e/10-template-diff.sh checks a larger corpus against mustache.js and
 * tests/e2e/11-mustache-spec.sh the spec's core modules.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "template.h"

/* Partials for tests: a NULL-terminated list of name, text pairs. */
static int
table_partial(void *ud, const char *name, char **text, size_t *len)
{
    const char *const *p = ud;
    for (; p && p[0]; p += 2) {
        if (strcmp(p[0], name) == 0) {
            *text = xstrdup(p[1]);
            *len = strlen(p[1]);
            return 0;
        }
    }
    return -ENOENT;
}

/* Renders src with the JSON text data; returns the output (free()) or NULL
 * on error, with the error in *err. */
static char *
render_ex(const char *src, const char *data, unsigned flags, const char *const *partials,
          struct nerr *err)
{
    struct tmpl *t = NULL;
    struct sbuf out;
    json_error_t je;
    json_t *j = json_loads(data, JSON_DECODE_ANY, &je);
    char *res = NULL;
    if (!j)
        fail_msg("bad test JSON %s: %s", data, je.text);
    nerr_clear(err);
    sbuf_init(&out);
    if (tmpl_compile("t.mustache", src, strlen(src), &t, err) == 0 &&
        tmpl_render(t, j, flags, table_partial, (void *)partials, &out, err) == 0)
        res = sbuf_steal(&out);
    sbuf_free(&out);
    tmpl_free(t);
    json_decref(j);
    return res;
}

static void
check(const char *src, const char *data, const char *const *partials, const char *want)
{
    struct nerr err;
    char *got = render_ex(src, data, TMPL_ESCAPE_HTML, partials, &err);
    if (!got)
        fail_msg("render of \"%s\" failed: %s", src, err.msg);
    assert_string_equal(got, want);
    free(got);
}

/* Compiles src, expects a syntax error at line:col whose message contains msg. */
static void
check_error(const char *src, int line, int col, const char *msg, const char *hint_part)
{
    struct tmpl *t = NULL;
    struct nerr err;
    int r = tmpl_compile("t.mustache", src, strlen(src), &t, &err);
    assert_int_equal(r, -EINVAL);
    assert_null(t);
    assert_string_equal(err.file, "t.mustache");
    assert_int_equal(err.line, line);
    assert_int_equal(err.col, col);
    if (!strstr(err.msg, msg))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, msg);
    if (hint_part && !strstr(err.hint, hint_part))
        fail_msg("hint \"%s\" lacks \"%s\"", err.hint, hint_part);
}

/* --- interpolation ---------------------------------------------------- */

static void
test_escape_html_like_mustachejs(void **state)
{
    (void)state;
    check("{{s}}", "{\"s\": \"& < > \\\" ' / ` = x\"}", NULL,
          "&amp; &lt; &gt; &quot; &#39; &#x2F; &#x60; &#x3D; x");
}

static void
test_escape_flag_off_renders_names_raw(void **state)
{
    struct nerr err;
    char *got = render_ex("{{s}}|{{{s}}}", "{\"s\": \"<a href='/x'>\"}", 0, NULL, &err);
    (void)state;
    assert_non_null(got);
    assert_string_equal(got, "<a href='/x'>|<a href='/x'>");
    free(got);
}

static void
test_triple_mustache_and_ampersand_are_raw(void **state)
{
    (void)state;
    check("{{{s}}} {{&s}} {{{ s }}} {{& s }}", "{\"s\": \"<b>&</b>\"}", NULL,
          "<b>&</b> <b>&</b> <b>&</b> <b>&</b>");
}

static void
test_missing_and_null_render_empty(void **state)
{
    (void)state;
    check("[{{x}}][{{{x}}}][{{n}}][{{a.b.c}}]", "{\"n\": null, \"a\": {}}", NULL, "[][][][]");
}

static void
test_numbers_render_like_javascript(void **state)
{
    (void)state;
    check("{{a}} {{b}} {{c}} {{d}} {{e}} {{f}} {{g}} {{h}} {{i}} {{j}}",
          "{\"a\": 42, \"b\": -7, \"c\": 1.5, \"d\": 0.1, \"e\": 1.0, \"f\": 1e21, "
          "\"g\": 1e-7, \"h\": 0.000001, \"i\": -0.0, \"j\": 0.30000000000000004}",
          NULL, "42 -7 1.5 0.1 1 1e+21 1e-7 0.000001 0 0.30000000000000004");
    /* Integers beyond 2^53 stay exact; JavaScript would print ...992 (template.h). */
    check("{{a}} {{b}} {{c}}", "{\"a\": 123e18, \"b\": 1.5e300, \"c\": 9007199254740993}", NULL,
          "123000000000000000000 1.5e+300 9007199254740993");
}

static void
test_booleans_lists_objects_render_like_string(void **state)
{
    (void)state;
    check("{{t}} {{f}} [{{l}}] [{{e}}] {{o}}",
          "{\"t\": true, \"f\": false, \"l\": [1, \"a\", null, [2, 3]], \"e\": [], "
          "\"o\": {\"k\": 1}}",
          NULL, "true false [1,a,,2,3] [] [object Object]");
}

static void
test_utf8_text_and_values_pass_through(void **state)
{
    (void)state;
    check("【Shop】{{first_name}}，新春快乐！凭券 {{coupon.code}} 享八折。",
          "{\"first_name\": \"李雷\", \"coupon\": {\"code\": \"CNY&27\"}}", NULL,
          "【Shop】李雷，新春快乐！凭券 CNY&amp;27 享八折。");
}

/* --- lookup ------------------------------------------------------------ */

static void
test_dotted_names_walk_objects(void **state)
{
    (void)state;
    check("{{a.b.c}}|{{#a.b}}{{c}}{{/a.b}}|{{^a.x.y}}none{{/a.x.y}}",
          "{\"a\": {\"b\": {\"c\": \"deep\"}}}", NULL, "deep|deep|none");
}

static void
test_dotted_names_stop_where_first_part_is_found(void **state)
{
    (void)state;
    /* The spec's "Dotted Names - Context Precedence": a has a b, so b.c is
     * resolved there and is missing; the outer b is not asked (mustache.js 3
     * would print "parent"). */
    check("{{#a}}[{{b.c}}]{{/a}}", "{\"a\": {\"b\": {}}, \"b\": {\"c\": \"parent\"}}",
          NULL, "[]");
    check("{{#a}}[{{#b.c}}yes{{/b.c}}{{^b.c}}no{{/b.c}}]{{/a}}",
          "{\"a\": {\"b\": null}, \"b\": {\"c\": true}}", NULL, "[no]");
    /* An inner context without b lets the lookup reach the outer one. */
    check("{{#a}}[{{b.c}}]{{/a}}", "{\"a\": {\"x\": 1}, \"b\": {\"c\": \"parent\"}}",
          NULL, "[parent]");
    /* A broken chain at the top is empty, not an error. */
    check("[{{a.b.c}}]", "{\"a\": {\"b\": {}}, \"c\": \"no\"}", NULL, "[]");
}

static void
test_data_may_be_any_json_value(void **state)
{
    (void)state;
    check("Hello, {{.}}!", "\"world\"", NULL, "Hello, world!");
    check("{{.}} {{{.}}}", "\"<b>\"", NULL, "&lt;b&gt; <b>");
    check("{{.}}", "85", NULL, "85");
    check("[{{.}}|{{x}}]", "null", NULL, "[|]");
    check("{{#.}}({{v}}){{/.}}", "[{\"v\": 1}, {\"v\": 2}]", NULL, "(1)(2)");
}

static void
test_context_stack_finds_outer_names(void **state)
{
    (void)state;
    check("{{#items}}{{name}}/{{who}};{{/items}}",
          "{\"who\": \"outer\", \"items\": [{\"name\": \"a\"}, {\"name\": \"b\", \"who\": \"in\"}]}",
          NULL, "a/outer;b/in;");
}

static void
test_implicit_iterator(void **state)
{
    (void)state;
    check("{{#l}}({{.}}){{/l}} {{#l}}{{{.}}}{{/l}} {{#n}}<{{.}}>{{/n}}",
          "{\"l\": [\"a\", \"<b>\"], \"n\": [1, 2.5]}", NULL,
          "(a)(&lt;b&gt;) a<b> <1><2.5>");
}

static void
test_length_and_index_of_lists_and_strings(void **state)
{
    (void)state;
    check("{{l.length}} {{l.1}} {{s.length}} {{e.length}} {{s.0}}"
          "{{#l.length}} some{{/l.length}}{{^z.length}} none{{/z.length}}",
          "{\"l\": [\"x\", \"y\"], \"s\": \"中文\", \"e\": \"🎉\", \"z\": []}", NULL,
          "2 y 2 2 中 some none");
}

/* --- sections ---------------------------------------------------------- */

static void
test_section_iterates_list_of_objects(void **state)
{
    (void)state;
    check("{{#orders}}{{id}}={{total}} {{/orders}}",
          "{\"orders\": [{\"id\": \"A\", \"total\": 10.5}, {\"id\": \"B\", \"total\": 99}]}", NULL,
          "A=10.5 B=99 ");
}

static void
test_section_pushes_object_string_number(void **state)
{
    (void)state;
    check("{{#c}}{{code}}{{/c}} {{#s}}[{{.}}]{{/s}} {{#n}}[{{.}}]{{/n}}",
          "{\"c\": {\"code\": \"X1\"}, \"s\": \"str\", \"n\": 3}", NULL, "X1 [str] [3]");
}

static void
test_section_true_keeps_context_false_hides(void **state)
{
    (void)state;
    check("{{#t}}{{x}}{{/t}}|{{#f}}{{x}}{{/f}}|", "{\"t\": true, \"f\": false, \"x\": \"X\"}",
          NULL, "X||");
}

static void
test_section_falsey_values_like_javascript(void **state)
{
    (void)state;
    check("[{{#z}}z{{/z}}{{#r}}r{{/r}}{{#e}}e{{/e}}{{#n}}n{{/n}}{{#l}}l{{/l}}{{#m}}m{{/m}}]",
          "{\"z\": 0, \"r\": 0.0, \"e\": \"\", \"n\": null, \"l\": []}", NULL, "[]");
}

static void
test_inverted_sections(void **state)
{
    (void)state;
    check("[{{^z}}z{{/z}}{{^e}}e{{/e}}{{^n}}n{{/n}}{{^l}}l{{/l}}{{^m}}m{{/m}}]"
          "[{{^t}}t{{/t}}{{^ll}}ll{{/ll}}{{^o}}o{{/o}}]",
          "{\"z\": 0, \"e\": \"\", \"n\": null, \"l\": [], \"t\": true, \"ll\": [0], \"o\": {}}",
          NULL, "[zenlm][]");
}

static void
test_nested_sections_and_same_name(void **state)
{
    (void)state;
    check("{{#cs}}{{name}}:{{#os}} {{id}}{{#gift}}*{{/gift}}{{/os}};{{/cs}}",
          "{\"cs\": [{\"name\": \"A\", \"os\": [{\"id\": 1, \"gift\": true}, {\"id\": 2}]}, "
          "{\"name\": \"B\", \"os\": []}]}",
          NULL, "A: 1* 2;B:;");
    check("{{#a}}{{#a}}{{b}}{{/a}}{{/a}}", "{\"a\": {\"a\": {\"b\": \"in\"}, \"b\": \"out\"}}",
          NULL, "in");
}

static void
test_comments_inline_and_multiline(void **state)
{
    (void)state;
    check("12{{! c }}34{{!\n multi\n line\n}}56", "{}", NULL, "123456");
}

/* --- standalone lines -------------------------------------------------- */

static void
test_standalone_lines_removed(void **state)
{
    (void)state;
    check("Dear {{n}},\n{{#vip}}\nVIP\n{{/vip}}\n  {{! note }}\n{{^vip}}\nnot\n{{/vip}}\nBye\n",
          "{\"n\": \"A\", \"vip\": true}", NULL, "Dear A,\nVIP\nBye\n");
    check("|\n  {{#b}}\n    in\n\t{{/b}}\n|\n", "{\"b\": true}", NULL, "|\n    in\n|\n");
}

static void
test_standalone_lines_removed_with_crlf(void **state)
{
    (void)state;
    check("|\r\n{{#b}}\r\n{{/b}}\r\n|", "{\"b\": true}", NULL, "|\r\n|");
    check("Hi\r\n  {{#l}}\r\n  * {{.}}\r\n  {{/l}}\r\nBye\r\n", "{\"l\": [\"x\", \"y\"]}", NULL,
          "Hi\r\n  * x\r\n  * y\r\nBye\r\n");
}

static void
test_standalone_without_previous_line(void **state)
{
    (void)state;
    check("  {{#b}}\n#{{/b}}\n/", "{\"b\": true}", NULL, "#\n/");
}

static void
test_standalone_on_last_line_without_newline(void **state)
{
    static const char *const parts[] = {"p", ">\n>", NULL};
    (void)state;
    /* The spec's "Standalone Without Newline" cases: the whitespace before
     * the tag goes too (mustache.js 3 keeps it). */
    check("#{{#b}}\n/\n  {{/b}}", "{\"b\": true}", NULL, "#\n/\n");
    check("!\n  {{! c }}", "{}", NULL, "!\n");
    check("a\n  {{=<% %>=}}", "{}", NULL, "a\n");
    check(">\n  {{>p}}", "{}", parts, ">\n  >\n  >");
    check("x\n  {{#b}}{{/b}}\t", "{\"b\": false}", NULL, "x\n");
    /* Not standalone: text or an interpolation on the same line. */
    check("a\n x {{! c }}", "{}", NULL, "a\n x ");
    check("a\n  {{x}}", "{\"x\": 1}", NULL, "a\n  1");
}

static void
test_several_tags_on_a_standalone_line(void **state)
{
    (void)state;
    check("a\n  {{#b}} {{! c }} {{/b}}  \nz\n", "{\"b\": true}", NULL, "a\nz\n");
}

static void
test_interpolation_makes_line_not_standalone(void **state)
{
    (void)state;
    /* Line 2 keeps its indentation; line 3 is standalone on its own. */
    check("a\n  {{#b}}{{x}}\n  {{/b}}\nz\n", "{\"b\": true, \"x\": \"X\"}", NULL,
          "a\n  X\nz\n");
    check(" {{#b}}YES{{/b}}\n {{#b}}GOOD{{/b}}\n", "{\"b\": true}", NULL, " YES\n GOOD\n");
}

static void
test_unicode_whitespace_counts_for_standalone(void **state)
{
    (void)state;
    /* JavaScript's \s includes U+3000 and U+00A0. */
    check("a\n\xE3\x80\x80{{#b}}\nbody\n\xC2\xA0{{/b}}\nz\n", "{\"b\": true}", NULL,
          "a\nbody\nz\n");
}

/* --- delimiters ---------------------------------------------------------- */

static void
test_set_delimiters(void **state)
{
    (void)state;
    check("{{=<% %>=}}(<% text %>) {{text}}", "{\"text\": \"Hey!\"}", NULL, "(Hey!) {{text}}");
    check("({{=[ ]=}}[text]) [={{ }}=]{{text}}", "{\"text\": \"ok\"}", NULL, "(ok) ok");
    check("{{=[ ]=}}[{s}] [&s] [#b]y[/b]", "{\"s\": \"<\", \"b\": true}", NULL, "< < y");
}

static void
test_set_delimiters_standalone_line(void **state)
{
    (void)state;
    check("Begin.\n{{=@ @=}}\n@#b@\n  @v@\n@/b@\nEnd.\n", "{\"b\": true, \"v\": \"V\"}", NULL,
          "Begin.\n  V\nEnd.\n");
}

/* --- partials ------------------------------------------------------------ */

static void
test_partial_renders_in_context_and_missing_is_empty(void **state)
{
    static const char *const parts[] = {"row", "<{{n}}>", NULL};
    (void)state;
    check("{{#p}}{{>row}}{{/p}}[{{> nope }}]", "{\"p\": [{\"n\": 1}, {\"n\": 2}]}", parts,
          "<1><2>[]");
}

static void
test_partial_without_loader_is_empty(void **state)
{
    struct tmpl *t;
    struct sbuf out;
    struct nerr err;
    (void)state;
    assert_int_equal(tmpl_compile("x", "a{{>p}}b", 8, &t, &err), 0);
    sbuf_init(&out);
    assert_int_equal(tmpl_render(t, NULL, 0, NULL, NULL, &out, &err), 0);
    assert_string_equal(out.s, "ab");
    sbuf_free(&out);
    tmpl_free(t);
}

static void
test_partial_standalone_indentation(void **state)
{
    static const char *const parts[] = {"sig", "--\n\nBest,\n{{co}}\n", NULL};
    (void)state;
    /* Every non-empty line of the partial gets the tag's indentation. */
    check("<div>\n  {{>sig}}\n</div>\n", "{\"co\": \"Shop\"}", parts,
          "<div>\n  --\n\n  Best,\n  Shop\n</div>\n");
}

static void
test_partial_indentation_not_applied_to_values(void **state)
{
    static const char *const parts[] = {"p", "|\n{{{content}}}\n|\n", NULL};
    (void)state;
    check("\\\n {{>p}}\n/\n", "{\"content\": \"<\\n->\"}", parts, "\\\n |\n <\n->\n |\n/\n");
}

static void
test_partial_indentation_with_crlf(void **state)
{
    static const char *const parts[] = {"p", "a\r\nb\r\n", NULL};
    (void)state;
    check("|\r\n  {{>p}}\r\n|\r\n", "{}", parts, "|\r\n  a\r\n  b\r\n|\r\n");
}

static void
test_partial_inline_is_not_indented(void **state)
{
    static const char *const parts[] = {"p", ">\n>", NULL};
    (void)state;
    check("  {{x}}  {{> p}}\n", "{\"x\": \"|\"}", parts, "  |  >\n>\n");
}

static void
test_nested_partials_accumulate_indentation(void **state)
{
    static const char *const parts[] = {"outer", "o1\n  {{>inner}}\no2\n", "inner", "i1\ni2\n",
                                        NULL};
    (void)state;
    check("A\n  {{>outer}}\nZ\n", "{}", parts, "A\n  o1\n    i1\n    i2\n  o2\nZ\n");
}

static void
test_partial_starts_with_default_delimiters(void **state)
{
    static const char *const parts[] = {"p", "[{{x}}]{{=| |=}}|x|", NULL};
    (void)state;
    check("{{=<% %>=}}<%>p%> {{x}} <%x%>", "{\"x\": \"X\"}", parts, "[X]X {{x}} X");
}

static void
test_partial_recursion_ends_with_data(void **state)
{
    static const char *const parts[] = {"node", "{{c}}<{{#nodes}}{{>node}}{{/nodes}}>", NULL};
    (void)state;
    check("{{>node}}", "{\"c\": \"X\", \"nodes\": [{\"c\": \"Y\", \"nodes\": []}]}", parts,
          "X<Y<>>");
}

static void
test_partial_recursion_limit_is_an_error(void **state)
{
    static const char *const parts[] = {"loop", "x{{>loop}}", NULL};
    struct sbuf out;
    struct nerr err;
    char *got;
    (void)state;
    sbuf_init(&out);
    sbuf_adds(&out, "keep");
    got = render_ex("a\n {{>loop}}", "{}", 0, parts, &err);
    assert_null(got);
    assert_non_null(strstr(err.msg, "partials nested more than 64 deep at 'loop'"));
    assert_string_equal(err.file, "loop");
    assert_int_equal(err.line, 1);
    assert_int_equal(err.col, 2);
    assert_non_null(strstr(err.hint, "includes itself"));

    /* A failed render leaves the output buffer as it was. */
    {
        struct tmpl *t;
        assert_int_equal(tmpl_compile("t", "{{>loop}}", 9, &t, &err), 0);
        assert_int_equal(tmpl_render(t, NULL, 0, table_partial, (void *)parts, &out, &err),
                         -EINVAL);
        assert_string_equal(out.s, "keep");
        tmpl_free(t);
    }
    sbuf_free(&out);
}

static void
test_partial_syntax_error_is_located_in_the_partial(void **state)
{
    static const char *const parts[] = {"foot", "ok\n  {{#x}}\n", NULL};
    struct nerr err;
    char *got;
    (void)state;
    got = render_ex("line1\n    {{>foot}}\n", "{}", 0, parts, &err);
    assert_null(got);
    assert_string_equal(err.file, "foot");
    /* Positions are those of the partial as written, not as indented. */
    assert_int_equal(err.line, 2);
    assert_int_equal(err.col, 3);
    assert_non_null(strstr(err.msg, "unclosed section 'x'"));
    assert_non_null(strstr(err.hint, "partial 'foot' included at t.mustache:2:5"));
}

static void
test_partial_loader_error_is_reported(void **state)
{
    struct tmpl *t;
    struct sbuf out;
    struct nerr err;
    char dir[] = "/tmp/nudge-tmpl-XXXXXX";
    (void)state;
    assert_non_null(mkdtemp(dir));
    assert_int_equal(tmpl_compile("t", "a\n{{>../etc}}", 13, &t, &err), 0);
    sbuf_init(&out);
    assert_int_equal(tmpl_render(t, NULL, 0, tmpl_partials_from_dir, dir, &out, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "cannot load partial '../etc'"));
    assert_int_equal(err.line, 2);
    assert_int_equal(err.col, 1);
    sbuf_free(&out);
    tmpl_free(t);
    rmdir(dir);
}

/* --- errors -------------------------------------------------------------- */

static void
test_error_unclosed_section_points_at_opening_tag(void **state)
{
    (void)state;
    check_error("Hello\n\nitem {{#items}}\n  {{name}}\n", 3, 6, "unclosed section 'items'",
                "opened at 3:6 is never closed; add {{/items}}");
}

static void
test_error_mismatched_section_points_at_closing_tag(void **state)
{
    (void)state;
    check_error("{{#a}}\n {{#b}}\n {{/a}}\n{{/b}}", 3, 2,
                "{{/a}} does not match the open section 'b' (opened at 2:2)",
                "add {{/b}} before this tag");
}

static void
test_error_unopened_section(void **state)
{
    (void)state;
    check_error("x\n  {{/done}}", 2, 3, "{{/done}} closes a section that was never opened",
                "{{#done}}");
}

static void
test_error_unclosed_tag(void **state)
{
    (void)state;
    check_error("ok {{x}}\nbad {{name\n", 2, 5, "unclosed tag", "}}");
    check_error("{{{raw}}", 1, 1, "unclosed tag", "}}}");
}

static void
test_error_invalid_and_empty_tags(void **state)
{
    (void)state;
    check_error("a {{=<%=}}", 1, 3, "invalid delimiters '<%'", "{{=<% %>=}}");
    check_error("{{=<% %>=}}\n <%#%>", 2, 2, "empty tag", "<%#first_name%>");
    check_error("{{ }}", 1, 1, "empty tag", "{{first_name}}");
    check_error("x {{{ }}}", 1, 3, "empty tag", "{{{first_name}}}");
}

static void
test_error_column_counts_utf8_characters(void **state)
{
    (void)state;
    check_error("新春快乐 {{/x}}", 1, 6, "never opened", NULL);
}

static void
test_error_message_shows_source_line_and_caret(void **state)
{
    struct tmpl *t;
    struct nerr err;
    char buf[2048];
    const char *src = "Hi\n  {{#items}} {{name}}\n";
    (void)state;
    assert_int_equal(tmpl_compile("b.html", src, strlen(src), &t, &err), -EINVAL);
    nerr_format(&err, buf, sizeof(buf));
    assert_string_equal(buf, "b.html:2:3: error: unclosed section 'items'\n"
                             "      {{#items}} {{name}}\n"
                             "      ^\n"
                             "    section 'items' opened at 2:3 is never closed; add {{/items}} "
                             "where it should end\n");
}

static void
test_error_nesting_limit(void **state)
{
    struct sbuf src;
    struct tmpl *t;
    struct nerr err;
    (void)state;
    sbuf_init(&src);
    for (int i = 0; i <= TMPL_MAX_NESTING; i++)
        sbuf_adds(&src, "{{#a}}");
    assert_int_equal(tmpl_compile("deep", src.s, src.len, &t, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "sections nested more than 100 deep"));
    assert_int_equal(err.col, 6 * TMPL_MAX_NESTING + 1);
    sbuf_free(&src);
}

static void
test_compile_reads_exactly_len_bytes(void **state)
{
    struct tmpl *t;
    struct sbuf out;
    struct nerr err;
    json_t *d = json_pack("{s:s}", "x", "v");
    (void)state;
    /* The source need not be NUL-terminated; bytes after len are ignored. */
    assert_int_equal(tmpl_compile("x", "a{{x}}b{{#junk", 7, &t, &err), 0);
    sbuf_init(&out);
    assert_int_equal(tmpl_render(t, d, 0, NULL, NULL, &out, &err), 0);
    assert_int_equal(out.len, 3);
    assert_string_equal(out.s, "avb");
    sbuf_free(&out);
    tmpl_free(t);
    json_decref(d);
}

/* --- names, files ------------------------------------------------------ */

struct seen {
    char buf[512];
};

static void
collect(void *ud, const char *name, int line, int col)
{
    struct seen *s = ud;
    size_t n = strlen(s->buf);
    snprintf(s->buf + n, sizeof(s->buf) - n, "%s@%d:%d ", name, line, col);
}

static void
test_foreach_name_lists_top_level_names(void **state)
{
    struct tmpl *t;
    struct nerr err;
    struct seen s = {""};
    const char *src = "Hi {{first_name}} {{{coupon.code}}}\n"
                      "{{#orders}}{{id}}{{/orders}}{{^vip}}{{tier}}{{/vip}}{{.}}{{>foot}}{{! c }}";
    (void)state;
    assert_int_equal(tmpl_compile("n", src, strlen(src), &t, &err), 0);
    tmpl_foreach_name(t, collect, &s);
    assert_string_equal(s.buf, "first_name@1:4 coupon@1:19 orders@2:1 vip@2:29 tier@2:37 ");
    tmpl_free(t);
}

static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void
test_partials_from_dir_reads_and_rejects(void **state)
{
    char dir[] = "/tmp/nudge-tmpl-XXXXXX", path[256];
    char *text = NULL;
    size_t len = 0;
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/foot.mustache", dir);
    write_text(path, "-- {{co}}\n");
    assert_int_equal(tmpl_partials_from_dir(dir, "foot", &text, &len), 0);
    assert_int_equal(len, 10);
    assert_string_equal(text, "-- {{co}}\n");
    free(text);
    assert_int_equal(tmpl_partials_from_dir(dir, "nope", &text, &len), -ENOENT);
    assert_int_equal(tmpl_partials_from_dir(dir, "../foot", &text, &len), -EINVAL);
    assert_int_equal(tmpl_partials_from_dir(dir, ".hidden", &text, &len), -EINVAL);
    assert_int_equal(tmpl_partials_from_dir(dir, "", &text, &len), -EINVAL);
    unlink(path);
    rmdir(dir);
}

static void
test_render_file_loads_partials_beside_template(void **state)
{
    char dir[] = "/tmp/nudge-tmpl-XXXXXX", tpath[256], ppath[256];
    struct sbuf out;
    struct nerr err;
    json_t *d = json_pack("{s:s}", "name", "A&B");
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(tpath, sizeof(tpath), "%s/mail.html", dir);
    snprintf(ppath, sizeof(ppath), "%s/foot.mustache", dir);
    write_text(tpath, "<p>{{name}}</p>\n  {{>foot}}\n");
    write_text(ppath, "<a href=\"/u\">x</a>\n");
    sbuf_init(&out);
    assert_int_equal(tmpl_render_file(tpath, d, TMPL_ESCAPE_HTML, NULL, &out, &err), 0);
    assert_string_equal(out.s, "<p>A&amp;B</p>\n  <a href=\"/u\">x</a>\n");
    sbuf_free(&out);

    sbuf_init(&out);
    assert_int_equal(tmpl_render_file("/nonexistent/x.html", d, 0, NULL, &out, &err), -ENOENT);
    assert_string_equal(err.file, "/nonexistent/x.html");
    assert_null(out.s);
    sbuf_free(&out);

    unlink(tpath);
    unlink(ppath);
    rmdir(dir);
    json_decref(d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_html_like_mustachejs),
        cmocka_unit_test(test_escape_flag_off_renders_names_raw),
        cmocka_unit_test(test_triple_mustache_and_ampersand_are_raw),
        cmocka_unit_test(test_missing_and_null_render_empty),
        cmocka_unit_test(test_numbers_render_like_javascript),
        cmocka_unit_test(test_booleans_lists_objects_render_like_string),
        cmocka_unit_test(test_utf8_text_and_values_pass_through),
        cmocka_unit_test(test_dotted_names_walk_objects),
        cmocka_unit_test(test_dotted_names_stop_where_first_part_is_found),
        cmocka_unit_test(test_data_may_be_any_json_value),
        cmocka_unit_test(test_context_stack_finds_outer_names),
        cmocka_unit_test(test_implicit_iterator),
        cmocka_unit_test(test_length_and_index_of_lists_and_strings),
        cmocka_unit_test(test_section_iterates_list_of_objects),
        cmocka_unit_test(test_section_pushes_object_string_number),
        cmocka_unit_test(test_section_true_keeps_context_false_hides),
        cmocka_unit_test(test_section_falsey_values_like_javascript),
        cmocka_unit_test(test_inverted_sections),
        cmocka_unit_test(test_nested_sections_and_same_name),
        cmocka_unit_test(test_comments_inline_and_multiline),
        cmocka_unit_test(test_standalone_lines_removed),
        cmocka_unit_test(test_standalone_lines_removed_with_crlf),
        cmocka_unit_test(test_standalone_without_previous_line),
        cmocka_unit_test(test_standalone_on_last_line_without_newline),
        cmocka_unit_test(test_several_tags_on_a_standalone_line),
        cmocka_unit_test(test_interpolation_makes_line_not_standalone),
        cmocka_unit_test(test_unicode_whitespace_counts_for_standalone),
        cmocka_unit_test(test_set_delimiters),
        cmocka_unit_test(test_set_delimiters_standalone_line),
        cmocka_unit_test(test_partial_renders_in_context_and_missing_is_empty),
        cmocka_unit_test(test_partial_without_loader_is_empty),
        cmocka_unit_test(test_partial_standalone_indentation),
        cmocka_unit_test(test_partial_indentation_not_applied_to_values),
        cmocka_unit_test(test_partial_indentation_with_crlf),
        cmocka_unit_test(test_partial_inline_is_not_indented),
        cmocka_unit_test(test_nested_partials_accumulate_indentation),
        cmocka_unit_test(test_partial_starts_with_default_delimiters),
        cmocka_unit_test(test_partial_recursion_ends_with_data),
        cmocka_unit_test(test_partial_recursion_limit_is_an_error),
        cmocka_unit_test(test_partial_syntax_error_is_located_in_the_partial),
        cmocka_unit_test(test_partial_loader_error_is_reported),
        cmocka_unit_test(test_error_unclosed_section_points_at_opening_tag),
        cmocka_unit_test(test_error_mismatched_section_points_at_closing_tag),
        cmocka_unit_test(test_error_unopened_section),
        cmocka_unit_test(test_error_unclosed_tag),
        cmocka_unit_test(test_error_invalid_and_empty_tags),
        cmocka_unit_test(test_error_column_counts_utf8_characters),
        cmocka_unit_test(test_error_message_shows_source_line_and_caret),
        cmocka_unit_test(test_error_nesting_limit),
        cmocka_unit_test(test_compile_reads_exactly_len_bytes),
        cmocka_unit_test(test_foreach_name_lists_top_level_names),
        cmocka_unit_test(test_partials_from_dir_reads_and_rejects),
        cmocka_unit_test(test_render_file_loads_partials_beside_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
