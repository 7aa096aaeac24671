/*
 * test_rules.c: rule files (model/rules.c): the shipped rules load, every
 * trigger form parses, every mistake becomes "file:line:col: error:" with the
 * source line, a caret under the offending character and a hint, and a rule
 * set with any error is never returned (whole set or nothing). Also the cron
 * expression parser on its own.
 *
 * Rule files are written to temporary directories by the tests; the shipped
 * rules and calendars are found through $NUDGE_SRC (set by ctest).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calendar.h"
#include "rules.h"
#include "util.h"
#include "unit.h"

/* ---- helpers ------------------------------------------------------- */

static const char *
src_dir(void)
{
    const char *s = getenv("NUDGE_SRC");
    return s && *s ? s : ".";
}

static struct holiday_set *holidays;
static struct rules_env env;

static int
group_setup(void **state)
{
    char *dir = xasprintf("%s/calendars", src_dir());
    struct nerr err;
    nerr_clear(&err);
    if (holiday_set_load_dir(dir, &holidays, &err) < 0) {
        char buf[2048];
        nerr_format(&err, buf, sizeof(buf));
        fprintf(stderr, "cannot load %s: %s", dir, buf);
        free(dir);
        return -1;
    }
    free(dir);
    env.holidays = holidays;
    env.known_attrs = NULL;
    (void)state;
    return 0;
}

static int
group_teardown(void **state)
{
    holiday_set_free(holidays);
    cal_thread_cleanup();
    (void)state;
    return 0;
}

/* A fresh temporary directory for one test (state), removed afterwards. */
static int
setup_dir(void **state)
{
    char *dir = xstrdup("/tmp/nudge-test-rules-XXXXXX");
    if (!mkdtemp(dir)) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static int
teardown_dir(void **state)
{
    rmrf(*state);
    free(*state);
    return 0;
}

/*
 * errors holds "PATH:LINE:COL: error: ...MSG...", then the source line
 * indented by four spaces, then a caret under column COL (one space per
 * character before it), then, if hint is not NULL, a line containing hint.
 */
static void
expect_located(const char *errors, const char *path, const char *text, int line, int col,
               const char *msg, const char *hint)
{
    char *head = xasprintf("%s:%d:%d: error: ", path, line, col);
    const char *p = errors ? strstr(errors, head) : NULL, *eol;
    struct sbuf want;
    if (!p)
        fail_msg("no error at %s in:\n%s", head, errors ? errors : "(null)");
    eol = strchr(p, '\n');
    assert_non_null(eol);
    if (!memmem(p, (size_t)(eol - p), msg, strlen(msg)))
        fail_msg("error at %s does not say '%s':\n%s", head, msg, errors);
    sbuf_init(&want);
    sbuf_printf(&want, "\n    %s\n    ", text ? line_of(text, line) : "");
    /* One cell per character before the column, two for wide (CJK) ones. */
    const char *src = text ? line_of(text, line) : "";
    for (int i = 1; i < col && *src; i++) {
        int len;
        int cells = utf8_char_cells(src, &len);
        sbuf_add(&want, "  ", (size_t)cells);
        src += len;
    }
    sbuf_adds(&want, "^\n");
    if (text && strncmp(eol, want.s, want.len) != 0)
        fail_msg("after \"%s\" the source line and caret should be\n%s\nin:\n%s", head, want.s,
                 errors);
    if (hint) {
        const char *h = eol + want.len, *he = strchr(h, '\n');
        if (!he || !memmem(h, (size_t)(he - h), hint, strlen(hint)))
            fail_msg("the hint after %s does not say '%s':\n%s", head, hint, errors);
    }
    sbuf_free(&want);
    free(head);
}

static struct ruleset *const UNTOUCHED = (struct ruleset *)&env;

/* Loads dir expecting failure; *out must stay untouched. Returns the errors. */
static char *
load_bad(const char *dir)
{
    struct ruleset *rs = UNTOUCHED;
    char *errors = NULL;
    assert_int_equal(ruleset_load(dir, &env, &rs, &errors), -EINVAL);
    assert_ptr_equal(rs, UNTOUCHED);
    assert_non_null(errors);
    return errors;
}

static struct ruleset *
load_good(const char *dir)
{
    struct ruleset *rs = NULL;
    char *errors = NULL;
    int r = ruleset_load(dir, &env, &rs, &errors);
    if (r < 0)
        fail_msg("ruleset_load(%s) = %d:\n%s", dir, r, errors ? errors : "(no errors)");
    assert_null(errors);
    assert_non_null(rs);
    return rs;
}

/* Writes one rule file and expects one error in it. */
static char *
one_bad(const char *dir, const char *name, const char *text, char **path)
{
    *path = put(dir, name, text);
    return load_bad(dir);
}

#define HOOK "actions:\n  - webhook: { url: \"http://127.0.0.1:9/hook\" }\n"

/* ---- the shipped rules ---------------------------------------------- */

static void
shipped_rules_load_with_their_triggers_actions_and_coupons(void **state)
{
    char *dir = xasprintf("%s/rules", src_dir());
    struct ruleset *rs = load_good(dir);
    const struct rule *r;
    (void)state;
    assert_int_equal(rs->n, 6);
    assert_true(rs->version > 0);

    r = ruleset_find(rs, "birthday-greeting");
    assert_non_null(r);
    assert_int_equal(r->trigger.kind, TRIG_ANNIVERSARY);
    assert_string_equal(r->trigger.field, "birthday");
    assert_false(r->trigger.lunar);
    assert_int_equal(r->trigger.at_h, 9);
    assert_int_equal(r->trigger.at_m, 0);
    assert_true(r->marketing);
    assert_true(r->coupon.enabled);
    assert_int_equal(r->coupon.percent_off, 15);
    assert_int_equal(r->coupon.valid_days, 30);
    assert_string_equal(r->coupon.prefix, "BDAY");
    assert_non_null(r->audience);
    assert_int_equal(r->nactions, 1);
    assert_int_equal(r->actions[0].kind, ACT_EMAIL);
    assert_string_equal(r->actions[0].channel, "email");
    assert_string_equal(r->actions[0].template_name, "birthday");
    assert_non_null(r->actions[0].subject);
    assert_non_null(r->actions[0].text);
    assert_non_null(r->actions[0].html);
    assert_int_equal(strlen(r->digest), 64);

    r = ruleset_find(rs, "christmas-offer");
    assert_non_null(r);
    assert_int_equal(r->trigger.kind, TRIG_HOLIDAY);
    assert_string_equal(r->trigger.holiday, "christmas");
    assert_int_equal(r->trigger.days_before, 7);
    assert_int_equal(r->trigger.at_h, 10);
    assert_non_null(r->actions[0].subject);
    assert_null(r->actions[0].html); /* no christmas.html */

    r = ruleset_find(rs, "lunar-birthday");
    assert_non_null(r);
    assert_int_equal(r->trigger.kind, TRIG_ANNIVERSARY);
    assert_true(r->trigger.lunar);
    assert_false(r->coupon.enabled);
    assert_int_equal(r->actions[0].kind, ACT_SMS);
    assert_non_null(r->actions[0].text);

    r = ruleset_find(rs, "monthly-callback");
    assert_non_null(r);
    assert_int_equal(r->trigger.kind, TRIG_MONTHLY);
    assert_int_equal(r->trigger.month_day, 1);
    assert_int_equal(r->trigger.at_h, 9);
    assert_int_equal(r->trigger.at_m, 30);
    assert_false(r->marketing);
    assert_int_equal(r->actions[0].kind, ACT_TASK);
    assert_string_equal(r->actions[0].task_kind, "callback");
    assert_string_equal(r->actions[0].assign, "owner");
    assert_int_equal(r->actions[0].due_in, 5 * 86400);
    assert_non_null(r->actions[0].note);

    r = ruleset_find(rs, "spring-festival-offer");
    assert_non_null(r);
    assert_int_equal(r->trigger.kind, TRIG_HOLIDAY);
    assert_string_equal(r->trigger.holiday, "spring-festival");
    assert_int_equal(r->trigger.days_before, 3);
    assert_int_equal(r->trigger.at_h, 10);
    assert_int_equal(r->coupon.percent_off, 20);
    assert_int_equal(r->actions[0].kind, ACT_SMS);

    r = ruleset_find(rs, "winback-coupon");
    assert_non_null(r);
    assert_int_equal(r->trigger.kind, TRIG_ENTERED);
    assert_non_null(r->trigger.condition);
    assert_int_equal(r->trigger.at_h, 11);
    assert_int_equal(r->nactions, 2);
    assert_int_equal(r->actions[0].kind, ACT_EMAIL);
    assert_int_equal(r->actions[1].kind, ACT_WEBHOOK);
    assert_string_equal(r->actions[1].url, "http://127.0.0.1:8080/hooks/winback");

    assert_null(ruleset_find(rs, "no-such-rule"));
    ruleset_unref(rs);
    free(dir);
}

/* ---- trigger forms -------------------------------------------------- */

static void
every_trigger_form_parses(void **state)
{
    const char *dir = *state;
    struct ruleset *rs;
    const struct rule *r;
    free(put(dir, "a-daily.yaml", "name: t-daily\ntrigger: { daily: { at: \"07:45\" } }\n" HOOK));
    free(put(dir, "b-weekly.yaml",
        "name: t-weekly\ntrigger: { weekly: { days: [mon, fri], at: \"08:00\" } }\n" HOOK));
    free(put(dir, "c-monthly31.yaml", "name: t-monthly31\ntrigger: { monthly: { day: 31 } }\n" HOOK));
    free(put(dir, "d-monthlylast.yaml",
        "name: t-monthlylast\ntrigger: { monthly: { day: last, at: \"18:00\" } }\n" HOOK));
    free(put(dir, "e-cron.yaml", "name: t-cron\ntrigger: { cron: \"30 9 * * mon-fri\" }\n" HOOK));
    free(put(dir, "f-lunar.yaml",
        "name: t-lunar\n"
        "trigger: { anniversary: birthday, calendar: chinese, days_before: 2, at: \"08:30\" "
        "}\n" HOOK));
    free(put(dir, "g-holiday-before.yaml",
        "name: t-holiday-before\n"
        "trigger:\n  holiday: spring-festival\n  days_before: 3\n  at: \"10:00\"\n" HOOK));
    free(put(dir, "h-holiday-after.yaml",
        "name: t-holiday-after\ntrigger: { holiday: mid-autumn, days_after: 1 }\n" HOOK));
    free(put(dir, "i-entered.yaml",
        "name: t-entered\n"
        "trigger: { entered: \"days_since(last_order_date) >= 90\", at: \"11:00\" }\n" HOOK));
    rs = load_good(dir);
    assert_int_equal(rs->n, 9);

    r = ruleset_find(rs, "t-daily");
    assert_int_equal(r->trigger.kind, TRIG_DAILY);
    assert_int_equal(r->trigger.at_h, 7);
    assert_int_equal(r->trigger.at_m, 45);
    assert_true(r->marketing); /* the default category */
    assert_null(r->audience);  /* no audience: everyone */

    r = ruleset_find(rs, "t-weekly");
    assert_int_equal(r->trigger.kind, TRIG_WEEKLY);
    assert_int_equal(r->trigger.weekdays, (1u << 1) | (1u << 5));
    assert_int_equal(r->trigger.at_h, 8);

    r = ruleset_find(rs, "t-monthly31");
    assert_int_equal(r->trigger.kind, TRIG_MONTHLY);
    assert_int_equal(r->trigger.month_day, 31);
    assert_int_equal(r->trigger.at_h, 9); /* the default time */
    assert_int_equal(r->trigger.at_m, 0);

    r = ruleset_find(rs, "t-monthlylast");
    assert_int_equal(r->trigger.month_day, -1);
    assert_int_equal(r->trigger.at_h, 18);

    r = ruleset_find(rs, "t-cron");
    assert_int_equal(r->trigger.kind, TRIG_CRON);
    assert_true(r->trigger.cron.minute == (uint64_t)1 << 30);
    assert_int_equal(r->trigger.cron.hour, 1u << 9);
    assert_int_equal(r->trigger.cron.dow, 0x3e); /* mon..fri */
    assert_true(r->trigger.cron.dom_any);
    assert_false(r->trigger.cron.dow_any);

    r = ruleset_find(rs, "t-lunar");
    assert_int_equal(r->trigger.kind, TRIG_ANNIVERSARY);
    assert_string_equal(r->trigger.field, "birthday");
    assert_true(r->trigger.lunar);
    assert_int_equal(r->trigger.days_before, 2);
    assert_int_equal(r->trigger.at_h, 8);
    assert_int_equal(r->trigger.at_m, 30);

    r = ruleset_find(rs, "t-holiday-before");
    assert_int_equal(r->trigger.kind, TRIG_HOLIDAY);
    assert_string_equal(r->trigger.holiday, "spring-festival");
    assert_int_equal(r->trigger.days_before, 3);
    assert_int_equal(r->trigger.days_after, 0);
    assert_int_equal(r->trigger.at_h, 10);

    r = ruleset_find(rs, "t-holiday-after");
    assert_string_equal(r->trigger.holiday, "mid-autumn");
    assert_int_equal(r->trigger.days_after, 1);
    assert_int_equal(r->trigger.days_before, 0);

    r = ruleset_find(rs, "t-entered");
    assert_int_equal(r->trigger.kind, TRIG_ENTERED);
    assert_non_null(r->trigger.condition);
    assert_int_equal(r->trigger.at_h, 11);
    ruleset_unref(rs);
}

/* ---- located errors ------------------------------------------------- */

static void
misspelt_top_level_key_suggests_trigger(void **state)
{
    static const char text[] = "name: typo\ntigger: { daily: { at: \"09:00\" } }\n" HOOK;
    char *path, *errors = one_bad(*state, "typo.yaml", text, &path);
    expect_located(errors, path, text, 2, 1, "unknown key 'tigger'", "did you mean 'trigger'?");
    free(errors);
    free(path);
}

static void
unknown_trigger_kind_names_the_kinds(void **state)
{
    static const char text[] = "name: yearly\ntrigger: { yearly: { at: \"09:00\" } }\n" HOOK;
    char *path, *errors = one_bad(*state, "yearly.yaml", text, &path);
    expect_located(errors, path, text, 2, col_of(text, 2, "yearly"), "unknown key 'yearly'",
                   "anniversary");
    free(errors);
    free(path);
}

static void
two_trigger_kinds_are_an_error_at_the_second(void **state)
{
    static const char text[] =
        "name: both\ntrigger:\n  daily: { at: \"09:00\" }\n  weekly: { days: [mon] }\n" HOOK;
    char *path, *errors = one_bad(*state, "both.yaml", text, &path);
    expect_located(errors, path, text, 4, 3, "exactly one kind", NULL);
    assert_non_null(strstr(errors, "'daily' and 'weekly'"));
    free(errors);
    free(path);
}

static void
bad_at_time_says_hh_mm(void **state)
{
    static const char text[] = "name: nine\ntrigger: { daily: { at: \"9am\" } }\n" HOOK;
    char *path, *errors = one_bad(*state, "nine.yaml", text, &path);
    expect_located(errors, path, text, 2, col_of(text, 2, "\"9am\""), "time of day", "HH:MM");
    free(errors);
    free(path);
}

static void
unknown_holiday_suggests_the_closest_slug(void **state)
{
    static const char text[] =
        "name: cny\ntrigger: { holiday: sprng-festival, days_before: 3 }\n" HOOK;
    char *path, *errors = one_bad(*state, "cny.yaml", text, &path);
    expect_located(errors, path, text, 2, col_of(text, 2, "sprng"),
                   "unknown holiday 'sprng-festival'", "did you mean 'spring-festival'?");
    free(errors);
    free(path);
}

static void
unknown_audience_field_points_at_it(void **state)
{
    static const char text[] = "name: tiers\ntrigger: { daily: { at: \"09:00\" } }\n"
                               "audience: email is not null and teir = 'gold'\n" HOOK;
    char *path, *errors = one_bad(*state, "tiers.yaml", text, &path);
    expect_located(errors, path, text, 3, col_of(text, 3, "teir"), "unknown field 'teir'", "tier");
    free(errors);
    free(path);
}

static void
audience_syntax_error_points_at_the_column(void **state)
{
    static const char text[] = "name: paren\ntrigger: { daily: { at: \"09:00\" } }\n"
                               "audience: \"tier = 'gold' ) or tier = 'silver'\"\n" HOOK;
    char *path, *errors = one_bad(*state, "paren.yaml", text, &path);
    expect_located(errors, path, text, 3, col_of(text, 3, ")"), "unmatched ')'", "'('");
    free(errors);
    free(path);
}

static void
missing_template_file_is_an_error_at_the_template_name(void **state)
{
    static const char text[] = "name: mail\ntrigger: { daily: { at: \"09:00\" } }\n"
                               "actions:\n  - email: { template: nothere }\n";
    char *path, *errors = one_bad(*state, "mail.yaml", text, &path);
    expect_located(errors, path, text, 4, col_of(text, 4, "nothere"), "nothere.subject",
                   "NAME.subject");
    free(errors);
    free(path);
}

static void
unknown_template_variable_points_into_the_template_file(void **state)
{
    static const char text[] = "name: mail\ntrigger: { daily: { at: \"09:00\" } }\n"
                               "actions:\n  - email: { template: greet }\n";
    static const char txt[] = "Hello,\n\nDear {{frist_name}}, welcome.\n";
    char *tpath, *path, *errors;
    free(put(*state, "greet.subject", "Hi {{first_name}}\n"));
    tpath = put(*state, "greet.txt", txt);
    errors = one_bad(*state, "mail.yaml", text, &path);
    expect_located(errors, tpath, txt, 3, col_of(txt, 3, "{{"),
                   "unknown template variable 'frist_name'", "did you mean 'first_name'?");
    free(errors);
    free(path);
    free(tpath);
}

static void
unknown_variable_in_inline_text_points_into_the_rule_file(void **state)
{
    /* The caret counts characters, not bytes: 【Shop】 is 6 columns. */
    static const char text[] = "name: sms\ntrigger: { daily: { at: \"09:00\" } }\n"
                               "actions:\n  - sms: { text: \"【Shop】{{frist_name}} hi\" }\n";
    char *path, *errors = one_bad(*state, "sms.yaml", text, &path);
    expect_located(errors, path, text, 4, col_of(text, 4, "{{"),
                   "unknown template variable 'frist_name'", "did you mean 'first_name'?");
    free(errors);
    free(path);
}

static void
bad_cron_field_points_at_the_field(void **state)
{
    static const char text[] = "name: cronbad\ntrigger: { cron: \"30 25 * * *\" }\n" HOOK;
    char *path, *errors = one_bad(*state, "cronbad.yaml", text, &path);
    /* "trigger: { cron: \"30 " is 21 characters: the hour starts at column 22. */
    assert_int_equal(col_of(text, 2, "25"), 22);
    expect_located(errors, path, text, 2, 22, "hour", "minute hour day-of-month");
    free(errors);
    free(path);
}

static void
duplicate_rule_names_across_files_name_both_files(void **state)
{
    const char *dir = *state;
    char *a = put(dir, "a.yaml", "name: same\ntrigger: { daily: { at: \"09:00\" } }\n" HOOK);
    char *b = put(dir, "b.yaml", "name: same\ntrigger: { daily: { at: \"10:00\" } }\n" HOOK);
    char *errors = load_bad(dir);
    const char *p = strstr(errors, b);
    assert_non_null(p);
    assert_non_null(strstr(p, "'same'"));
    assert_non_null(strstr(p, a));
    free(errors);
    free(a);
    free(b);
}

static void
empty_rules_directory_loads_zero_rules(void **state)
{
    struct ruleset *rs = load_good(*state);
    assert_int_equal(rs->n, 0);
    ruleset_unref(rs);
}

static void
missing_rules_directory_is_an_error(void **state)
{
    char *dir = xasprintf("%s/does-not-exist", (const char *)*state);
    char *errors = load_bad(dir);
    assert_non_null(strstr(errors, dir));
    assert_non_null(strstr(errors, "No such file"));
    free(errors);
    free(dir);
}

static void
any_error_returns_nothing_and_lists_every_bad_file(void **state)
{
    const char *dir = *state;
    static const char bad1[] = "name: bad-one\ntigger: { daily: { at: \"09:00\" } }\n" HOOK;
    static const char bad2[] = "name: bad-two\ntrigger: { daily: { at: \"25:00\" } }\n" HOOK;
    char *good = put(dir, "a-good.yaml", "name: good\ntrigger: { daily: {} }\n" HOOK);
    char *p1 = put(dir, "b-bad.yaml", bad1);
    char *p2 = put(dir, "c-bad.yaml", bad2);
    char *errors = load_bad(dir);
    int n = 0;
    expect_located(errors, p1, bad1, 2, 1, "unknown key 'tigger'", NULL);
    expect_located(errors, p2, bad2, 2, col_of(bad2, 2, "\"25:00\""), "time of day", NULL);
    assert_null(strstr(errors, good));
    for (const char *p = errors; (p = strstr(p, ": error: ")); p++)
        n++;
    assert_int_equal(n, 2);
    assert_non_null(strstr(errors, "2 errors"));
    free(errors);
    free(good);
    free(p1);
    free(p2);
}

static void
yaml_syntax_error_in_a_rule_is_located(void **state)
{
    static const char text[] = "name: indent\ntrigger:\n  daily: { at: \"09:00\" }\n"
                               " audience: tier = 'gold'\n" HOOK;
    char *path, *errors = one_bad(*state, "indent.yaml", text, &path);
    /* libyaml notices the stray indentation where " audience" starts. */
    expect_located(errors, path, text, 4, 2, "expected key", "indentation");
    free(errors);
    free(path);
}

/* ---- cron_parse ------------------------------------------------------ */

static struct cron_spec
cron_ok(const char *expr)
{
    struct cron_spec c;
    char why[256] = "";
    int col = 0;
    if (cron_parse(expr, &c, why, sizeof(why), &col) < 0)
        fail_msg("cron_parse(\"%s\") failed at column %d: %s", expr, col, why);
    return c;
}

static void
cron_bad(const char *expr, int want_col, const char *want_why)
{
    struct cron_spec c;
    char why[256] = "";
    int col = 0;
    if (cron_parse(expr, &c, why, sizeof(why), &col) != -EINVAL)
        fail_msg("cron_parse(\"%s\") accepted a bad expression", expr);
    if (col != want_col)
        fail_msg("cron_parse(\"%s\"): error at column %d, want %d (%s)", expr, col, want_col, why);
    if (!strstr(why, want_why))
        fail_msg("cron_parse(\"%s\"): '%s' does not say '%s'", expr, why, want_why);
}

static void
cron_parse_accepts_names_ranges_lists_and_steps(void **state)
{
    struct cron_spec c;
    (void)state;
    c = cron_ok("0 0 * jan,MAR sun-tue");
    assert_int_equal(c.month, (1u << 1) | (1u << 3));
    assert_int_equal(c.dow, 0x07);
    assert_true(c.dom_any);
    assert_false(c.dow_any);

    c = cron_ok("0-4 8-10 1-3 * *");
    assert_true(c.minute == 0x1f);
    assert_int_equal(c.hour, 0x700);
    assert_int_equal(c.dom, 0x0e);
    assert_int_equal(c.month, 0x1ffe);
    assert_int_equal(c.dow, 0x7f);
    assert_true(c.dow_any);

    c = cron_ok("*/15 */6 */10 * *");
    assert_true(c.minute == (((uint64_t)1 << 0) | ((uint64_t)1 << 15) | ((uint64_t)1 << 30) |
                             ((uint64_t)1 << 45)));
    assert_int_equal(c.hour, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
    assert_int_equal(c.dom, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
    assert_false(c.dom_any); /* only a bare '*' is unrestricted */

    c = cron_ok("10-30/10 9,17 * * *");
    assert_true(c.minute == (((uint64_t)1 << 10) | ((uint64_t)1 << 20) | ((uint64_t)1 << 30)));
    assert_int_equal(c.hour, (1u << 9) | (1u << 17));

    c = cron_ok("  5\t4  *   * sun ");
    assert_true(c.minute == (uint64_t)1 << 5);
    assert_int_equal(c.dow, 0x01);
}

static void
cron_parse_reads_7_as_sunday(void **state)
{
    struct cron_spec c;
    (void)state;
    c = cron_ok("0 0 * * 7");
    assert_int_equal(c.dow, 0x01);
    c = cron_ok("0 0 * * 0,7");
    assert_int_equal(c.dow, 0x01);
    c = cron_ok("0 0 * * 5-7");
    assert_int_equal(c.dow, (1u << 5) | (1u << 6) | 1u);
    c = cron_ok("0 0 * * 1-7/2"); /* 1, 3, 5, 7 */
    assert_int_equal(c.dow, (1u << 1) | (1u << 3) | (1u << 5) | 1u);
    c = cron_ok("0 0 * * 2-7/2"); /* 2, 4, 6: the step never reaches 7 */
    assert_int_equal(c.dow, (1u << 2) | (1u << 4) | (1u << 6));
}

static void
cron_parse_errors_name_the_field_and_column(void **state)
{
    (void)state;
    cron_bad("60 * * * *", 1, "minute");
    cron_bad("* 24 * * *", 3, "hour");
    cron_bad("* * 0 * *", 5, "day of month");
    cron_bad("* * 32 * *", 5, "day of month");
    cron_bad("* * * 13 *", 7, "month");
    cron_bad("* * * * 8", 9, "day of week");
    cron_bad("1,x * * * *", 3, "minute");
    cron_bad("0 9 * * mon-fry", 9, "day of week");
    cron_bad("*/0 * * * *", 1, "minute");
    cron_bad("5-1 * * * *", 1, "minute");
    cron_bad("* * * * * *", 11, "too many fields");
    cron_bad("* * *", 1, "5 fields");
    cron_bad("", 1, "5 fields");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(shipped_rules_load_with_their_triggers_actions_and_coupons),
        cmocka_unit_test_setup_teardown(every_trigger_form_parses, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(misspelt_top_level_key_suggests_trigger, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(unknown_trigger_kind_names_the_kinds, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(two_trigger_kinds_are_an_error_at_the_second, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(bad_at_time_says_hh_mm, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(unknown_holiday_suggests_the_closest_slug, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(unknown_audience_field_points_at_it, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(audience_syntax_error_points_at_the_column, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(missing_template_file_is_an_error_at_the_template_name,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(unknown_template_variable_points_into_the_template_file,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(unknown_variable_in_inline_text_points_into_the_rule_file,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(bad_cron_field_points_at_the_field, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(duplicate_rule_names_across_files_name_both_files,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(missing_rules_directory_is_an_error, setup_dir,
                                        teardown_dir),
        cmocka_unit_test_setup_teardown(any_error_returns_nothing_and_lists_every_bad_file,
                                        setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(yaml_syntax_error_in_a_rule_is_located, setup_dir,
                                        teardown_dir),
        cmocka_unit_test(cron_parse_accepts_names_ranges_lists_and_steps),
        cmocka_unit_test(cron_parse_reads_7_as_sunday),
        cmocka_unit_test(cron_parse_errors_name_the_field_and_column),
        /* Last: under UBSan a failure here aborts the whole program. */
        cmocka_unit_test_setup_teardown(empty_rules_directory_loads_zero_rules, setup_dir,
                                        teardown_dir),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
