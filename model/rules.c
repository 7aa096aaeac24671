/*
 * rules.c: loads rule files into an immutable rule set. Every mistake a
 * marketer can make in a rule file becomes a located error with a caret and
 * a suggestion; a set with any error is never returned.
 */
#include "rules.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audience.h"
#include "channel_registry.h"
#include "calendar.h"
#include "template.h"
#include "ynode.h"

static const char *const trigger_kinds[] = {"daily",       "weekly",  "monthly", "cron",
                                            "anniversary", "holiday", "entered", NULL};

const char *
trigger_kind_name(enum trigger_kind k)
{
    return trigger_kinds[k];
}

/* Date fields an anniversary can follow; custom attributes holding dates work too. */
static const char *const date_fields[] = {"birthday", "created_at", "first_order_date",
                                          "last_order_date", NULL};

/* Variables every template may use, besides customer attributes. */
static const char *const template_vars[] = {
    "id", "name", "first_name", "email", "phone", "birthday", "tz", "tier", "owner",
    "created_at", "tags", "orders_count", "total_spent", "last_order_date", "first_order_date",
    "coupon", "code", "percent_off", "amount_off", "expires", "unsubscribe_url", "rule",
    "occurrence", "today", "customer", "channel", "delivery_id", NULL};

void
rule_free(struct rule *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->description);
    free(r->file);
    free(r->trigger.field);
    free(r->trigger.holiday);
    audience_free(r->trigger.condition);
    audience_free(r->audience);
    free(r->audience_src);
    free(r->coupon.prefix);
    for (size_t i = 0; i < r->nactions; i++) {
        struct action *a = &r->actions[i];
        free(a->template_name);
        tmpl_free(a->subject);
        tmpl_free(a->text);
        tmpl_free(a->html);
        free(a->url);
        free(a->secret_file);
        free(a->task_kind);
        free(a->assign);
        tmpl_free(a->note);
        free(a->src.subject);
        free(a->src.text);
        free(a->src.html);
        free(a->src.note);
    }
    free(r->actions);
    for (size_t i = 0; i < r->npartials; i++) {
        free(r->partials[i].name);
        free(r->partials[i].src);
    }
    free(r->partials);
    free(r->snapshot);
    free(r);
}

/* ---- cron ---------------------------------------------------------------- */

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static int
cron_value(const char *s, size_t n, const char *const *names, int base, int *out)
{
    int v = 0;
    if (n == 0)
        return -EINVAL;
    if (names && n == 3) {
        for (int i = 0; names[i]; i++)
            if (strncasecmp(s, names[i], 3) == 0)
                return *out = i + base, 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > 1000)
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Parses one comma-separated field into a bit set. */
static int
cron_field(const char *s, size_t len, int lo, int hi, const char *const *names, int name_base,
           uint64_t *bits, bool *any, char *why, size_t whylen, int *badoff)
{
    size_t i = 0;
    *bits = 0;
    *any = len == 1 && s[0] == '*';
    while (i < len) {
        size_t j = i, dash = 0, slash = 0;
        int a, b, step = 1;
        while (j < len && s[j] != ',') {
            if (s[j] == '-' && !dash && !slash)
                dash = j;
            else if (s[j] == '/' && !slash)
                slash = j;
            j++;
        }
        size_t end = slash ? slash : j;
        if (s[i] == '*' && end == i + 1) {
            a = lo;
            b = hi;
        } else if (dash && dash < end) {
            if (cron_value(s + i, dash - i, names, name_base, &a) < 0 ||
                cron_value(s + dash + 1, end - dash - 1, names, name_base, &b) < 0)
                goto bad;
        } else {
            if (cron_value(s + i, end - i, names, name_base, &a) < 0)
                goto bad;
            b = slash ? hi : a;
        }
        if (slash && cron_value(s + slash + 1, j - slash - 1, NULL, 0, &step) < 0)
            goto bad;
        if (a < lo || b > hi || a > b || step < 1) {
            snprintf(why, whylen, "value out of range %d-%d", lo, hi);
            *badoff = (int)i;
            return -EINVAL;
        }
        /* Day of week 7 is Sunday as well, as in Vixie cron; only values the
         * step actually reaches count. */
        for (int v = a; v <= b; v += step)
            *bits |= (uint64_t)1 << (names == dow_names && v == 7 ? 0 : v);
        i = j + 1;
        continue;
    bad:
        snprintf(why, whylen, "expected a number%s, a range a-b, a step */n or '*'",
                 names ? " or name" : "");
        *badoff = (int)i;
        return -EINVAL;
    }
    return 0;
}

int
cron_parse(const char *expr, struct cron_spec *out, char *why, size_t whylen, int *badcol)
{
    static const int lo[] = {0, 0, 1, 1, 0}, hi[] = {59, 23, 31, 12, 7};
    static const char *const fname[] = {"minute", "hour", "day of month", "month", "day of week"};
    const char *p = expr;
    uint64_t bits[5];
    bool any[5];
    int nf = 0;
    memset(out, 0, sizeof(*out));
    while (*p) {
        const char *start;
        int off;
        char fwhy[160];
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        start = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (nf == 5) {
            snprintf(why, whylen, "too many fields: a cron expression has 5 (minute hour "
                                  "day-of-month month day-of-week)");
            *badcol = (int)(start - expr) + 1;
            return -EINVAL;
        }
        if (cron_field(start, (size_t)(p - start), lo[nf], hi[nf],
                       nf == 3 ? month_names : nf == 4 ? dow_names : NULL, nf == 3 ? 1 : 0,
                       &bits[nf], &any[nf], fwhy, sizeof(fwhy), &off) < 0) {
            snprintf(why, whylen, "bad %s field: %s", fname[nf], fwhy);
            *badcol = (int)(start - expr) + off + 1;
            return -EINVAL;
        }
        nf++;
    }
    if (nf != 5) {
        snprintf(why, whylen, "a cron expression has 5 fields (minute hour day-of-month month "
                              "day-of-week), found %d",
                 nf);
        *badcol = 1;
        return -EINVAL;
    }
    out->minute = bits[0];
    out->hour = (uint32_t)bits[1];
    out->dom = (uint32_t)bits[2];
    out->month = (uint16_t)bits[3];
    out->dow = (uint8_t)(bits[4] & 0x7f);
    out->dom_any = any[2];
    out->dow_any = any[4];
    return 0;
}

/* ---- loading --------------------------------------------------------------- */

struct loader {
    const char *dir;
    const struct rules_env *env;
    struct ydoc *doc;
    struct nerr *err;
    EVP_MD_CTX *md;
    struct rule *rule;  /* the rule being loaded: where partials go */
    bool err_elsewhere; /* err is located in a partial's file, not the template */
    struct sbuf *warn; /* warnings of the whole load ("file:line:col: warning: ...\n") */
};

static int
parse_weekdays(struct loader *L, const struct ynode *n, uint8_t *mask)
{
    static const char *const full[] = {"sunday",   "monday", "tuesday", "wednesday",
                                       "thursday", "friday", "saturday", NULL};
    *mask = 0;
    if (!n)
        return yerr(L->doc, n, L->err, "weekly needs days, e.g. weekly: { days: [mon, thu] }");
    const struct ynode *const *items = n->type == YN_SEQ ? (const struct ynode *const *)n->items
                                                         : (const struct ynode *const *)&n;
    size_t count = n->type == YN_SEQ ? n->n : 1;
    for (size_t i = 0; i < count; i++) {
        const struct ynode *it = items[i];
        bool ok = false;
        if (it->type != YN_SCALAR)
            return yerr(L->doc, it, L->err, "a weekday must be a name such as mon or friday");
        for (int d = 0; d < 7 && !ok; d++)
            if (!strcasecmp(it->value, full[d]) || !strcasecmp(it->value, dow_names[d]))
                *mask |= 1u << d, ok = true;
        if (!ok) {
            const char *g = did_you_mean(it->value, full);
            yerr(L->doc, it, L->err, "unknown weekday '%s'", it->value);
            nerr_hint(L->err, "%s%s%sexpected mon, tue, wed, thu, fri, sat or sun", g ? "did you mean '" : "",
                      g ? g : "", g ? "'? " : "");
            return -EINVAL;
        }
    }
    return 0;
}

static int
parse_at(struct loader *L, const struct ynode *n, struct trigger *t)
{
    return yget_hhmm(L->doc, n, "at", &t->at_h, &t->at_m, L->err);
}

static int
parse_trigger(struct loader *L, struct rule *r, const struct ynode *n)
{
    static const char *const keys[] = {"daily",   "weekly",  "monthly",     "cron",
                                       "anniversary", "holiday", "entered", "at",
                                       "days_before", "days_after", "calendar", "days",
                                       "day", "backfill", NULL};
    struct trigger *t = &r->trigger;
    const struct ynode *kind_node = NULL, *v, *at = NULL;
    int nk = 0;
    int64_t iv;
    if (!n)
        return yerr(L->doc, L->doc->root, L->err, "rule '%s' has no trigger", r->name),
               nerr_hint(L->err, "add e.g. trigger: { daily: { at: \"09:00\" } }"), -EINVAL;
    if (ymap_check_keys(L->doc, n, "trigger", keys, L->err) < 0)
        return -EINVAL;
    for (size_t i = 0; i < n->n; i++) {
        for (int k = 0; trigger_kinds[k]; k++) {
            if (strcmp(n->keys[i]->value, trigger_kinds[k]) == 0) {
                if (nk++) {
                    yerr(L->doc, n->keys[i], L->err, "a trigger has exactly one kind; found "
                                                     "both '%s' and '%s'",
                         trigger_kinds[t->kind], trigger_kinds[k]);
                    nerr_hint(L->err, "split it into two rules");
                    return -EINVAL;
                }
                t->kind = (enum trigger_kind)k;
                kind_node = n->items[i];
            }
        }
    }
    if (!kind_node) {
        yerr(L->doc, n, L->err, "the trigger names no kind");
        nerr_hint(L->err, "expected one of: daily, weekly, monthly, cron, anniversary, holiday, "
                          "entered");
        return -EINVAL;
    }
    at = ymap_get(n, "at");
    if (kind_node->type == YN_MAP) {
        static const char *const inner_weekly[] = {"at", "days", NULL};
        static const char *const inner_monthly[] = {"at", "day", NULL};
        static const char *const inner_other[] = {"at", NULL};
        const char *const *inner = t->kind == TRIG_WEEKLY    ? inner_weekly
                                   : t->kind == TRIG_MONTHLY ? inner_monthly
                                                             : inner_other;
        if (ymap_check_keys(L->doc, kind_node, trigger_kinds[t->kind], inner, L->err) < 0)
            return -EINVAL;
        if (ymap_get(kind_node, "at")) {
            if (at)
                return yerr(L->doc, ymap_get(kind_node, "at"), L->err,
                            "'at' is given twice in this trigger");
            at = ymap_get(kind_node, "at");
        }
    }
    t->at_h = 9;
    t->at_m = 0;
    t->month_day = 1;

    switch (t->kind) {
    case TRIG_DAILY:
        if (kind_node->type == YN_SCALAR && !at && strchr(kind_node->value, ':'))
            at = kind_node;
        break;
    case TRIG_WEEKLY:
        v = kind_node->type == YN_MAP ? ymap_get(kind_node, "days") : ymap_get(n, "days");
        if (!v && kind_node->type != YN_MAP)
            v = kind_node;
        if (!v) {
            yerr(L->doc, kind_node, L->err, "weekly needs days");
            nerr_hint(L->err, "e.g. weekly: { days: [mon, thu], at: \"10:00\" }");
            return -EINVAL;
        }
        if (parse_weekdays(L, v, &t->weekdays) < 0)
            return -EINVAL;
        break;
    case TRIG_MONTHLY:
        v = kind_node->type == YN_MAP ? ymap_get(kind_node, "day") : ymap_get(n, "day");
        if (v && v->type == YN_SCALAR && !strcmp(v->value, "last"))
            t->month_day = -1;
        else if (v) {
            if (yget_int(L->doc, v, "day", 1, 31, &iv, L->err) < 0) {
                nerr_hint(L->err, "expected a day of the month from 1 to 31, or last");
                return -EINVAL;
            }
            t->month_day = (int)iv;
        }
        break;
    case TRIG_CRON: {
        const char *expr;
        char why[256];
        int col = 0;
        if (yget_str(L->doc, kind_node, "cron", &expr, L->err) < 0)
            return -EINVAL;
        if (cron_parse(expr, &t->cron, why, sizeof(why), &col) < 0) {
            struct ynode where = *kind_node;
            where.col += col - 1 + (kind_node->plain ? 0 : 1);
            yerr(L->doc, &where, L->err, "%s", why);
            nerr_hint(L->err, "e.g. cron: \"30 9 * * mon-fri\" (minute hour day-of-month month "
                              "day-of-week)");
            return -EINVAL;
        }
        if (at)
            return yerr(L->doc, at, L->err, "a cron trigger carries its own time; remove 'at'");
        break;
    }
    case TRIG_ANNIVERSARY: {
        const char *f;
        const struct ynode *cal;
        bool known = false;
        if (yget_str(L->doc, kind_node, "anniversary", &f, L->err) < 0)
            return -EINVAL;
        for (int i = 0; date_fields[i]; i++)
            known |= !strcmp(date_fields[i], f);
        for (const char *const *a = L->env->known_attrs; a && *a && !known; a++)
            known |= !strcmp(*a, f);
        if (!known && !did_you_mean(f, date_fields)) {
            /* Not a typo of a date field: a custom attribute not imported yet. */
            sbuf_printf(L->warn, "%s:%d:%d: warning: '%s' is not a date field or an imported "
                                 "attribute; it is read as a custom attribute (YYYY-MM-DD), "
                                 "empty until an import brings it\n",
                        L->doc->file, kind_node->line, kind_node->col, f);
            known = true;
        }
        if (!known) {
            const char *g = did_you_mean(f, date_fields);
            yerr(L->doc, kind_node, L->err, "'%s' is not a date field of customers", f);
            if (g)
                nerr_hint(L->err, "did you mean '%s'? (date fields: birthday, created_at, "
                                  "first_order_date, last_order_date, or a custom attribute)",
                          g);
            else
                nerr_hint(L->err, "date fields: birthday, created_at, first_order_date, "
                                  "last_order_date, or a custom attribute holding YYYY-MM-DD");
            return -EINVAL;
        }
        t->field = xstrdup(f);
        if ((cal = ymap_get(n, "calendar"))) {
            const char *c;
            if (yget_str(L->doc, cal, "calendar", &c, L->err) < 0)
                return -EINVAL;
            if (!strcmp(c, "chinese") || !strcmp(c, "lunar"))
                t->lunar = true;
            else if (strcmp(c, "gregorian") != 0)
                return yerr(L->doc, cal, L->err, "unknown calendar '%s'", c),
                       nerr_hint(L->err, "expected gregorian (the default) or chinese"), -EINVAL;
        }
        break;
    }
    case TRIG_HOLIDAY: {
        const char *h;
        if (yget_str(L->doc, kind_node, "holiday", &h, L->err) < 0)
            return -EINVAL;
        if (!L->env->holidays || !holiday_exists(L->env->holidays, h)) {
            const char *g = L->env->holidays ? holiday_suggest(L->env->holidays, h) : NULL;
            yerr(L->doc, kind_node, L->err, "unknown holiday '%s'", h);
            if (g)
                nerr_hint(L->err, "did you mean '%s'? (holidays come from the calendars "
                                  "directory)", g);
            else
                nerr_hint(L->err, "holidays are slugs such as spring-festival, mid-autumn, "
                                  "christmas; see the calendars directory");
            return -EINVAL;
        }
        t->holiday = xstrdup(h);
        break;
    }
    case TRIG_ENTERED: {
        const char *expr;
        if (yget_str(L->doc, kind_node, "entered", &expr, L->err) < 0)
            return -EINVAL;
        if (audience_compile(expr, L->doc->file, kind_node->line,
                             kind_node->col + (kind_node->plain ? 0 : 1), L->env->known_attrs,
                             &t->condition, L->err) < 0) {
            nerr_source(L->err, L->doc->text, L->doc->len);
            return -EINVAL;
        }
        if (t->condition->warnings)
            sbuf_adds(L->warn, t->condition->warnings);
        t->backfill = true;
        if ((v = ymap_get(n, "backfill"))) {
            if (v->type != YN_SCALAR || (strcmp(v->value, "true") && strcmp(v->value, "false")))
                return yerr(L->doc, v, L->err, "backfill must be true or false"),
                       nerr_hint(L->err, "backfill: false records the customers already inside "
                                         "the condition at the first evaluation without a "
                                         "message"),
                       -EINVAL;
            t->backfill = !strcmp(v->value, "true");
        }
        break;
    }
    }
    if (t->kind != TRIG_ENTERED && (v = ymap_get(n, "backfill")))
        return yerr(L->doc, v, L->err, "backfill applies only to an entered trigger"), -EINVAL;
    if (at && parse_at(L, at, t) < 0)
        return -EINVAL;
    if ((v = ymap_get(n, "days_before"))) {
        if (t->kind != TRIG_ANNIVERSARY && t->kind != TRIG_HOLIDAY)
            return yerr(L->doc, v, L->err, "days_before applies to anniversary and holiday "
                                           "triggers only");
        if (yget_int(L->doc, v, "days_before", 0, 60, &iv, L->err) < 0)
            return -EINVAL;
        t->days_before = (int)iv;
    }
    if ((v = ymap_get(n, "days_after"))) {
        if (t->kind != TRIG_ANNIVERSARY && t->kind != TRIG_HOLIDAY)
            return yerr(L->doc, v, L->err, "days_after applies to anniversary and holiday "
                                           "triggers only");
        if (yget_int(L->doc, v, "days_after", 0, 60, &iv, L->err) < 0)
            return -EINVAL;
        t->days_after = (int)iv;
    }
    if (t->days_before && t->days_after)
        return yerr(L->doc, ymap_get(n, "days_after"), L->err,
                    "use either days_before or days_after, not both");
    if ((v = ymap_get(n, "calendar")) && t->kind != TRIG_ANNIVERSARY)
        return yerr(L->doc, v, L->err, "calendar applies to anniversary triggers only");
    if ((v = ymap_key(n, "days")) && t->kind != TRIG_WEEKLY)
        return yerr(L->doc, v, L->err, "days applies to weekly triggers only");
    if ((v = ymap_key(n, "day")) && t->kind != TRIG_MONTHLY)
        return yerr(L->doc, v, L->err, "day applies to monthly triggers only");
    return 0;
}

struct var_check {
    struct loader *L;
    const char *path;
    const char *text;
    size_t len;
    int bad;
};

static void
check_var(void *ud, const char *name, int line, int col)
{
    struct var_check *vc = ud;
    const char *g;
    if (vc->bad || !strcmp(name, "."))
        return;
    for (const char *const *v = template_vars; *v; v++)
        if (!strcmp(*v, name))
            return;
    for (const char *const *a = vc->L->env->known_attrs; a && *a; a++)
        if (!strcmp(*a, name))
            return;
    g = did_you_mean(name, template_vars);
    if (!g && !strchr(name, '.')) {
        /* Not a typo of a known variable: a custom attribute not imported yet. */
        sbuf_printf(vc->L->warn, "%s:%d:%d: warning: template variable '%s' is no customer "
                                 "field or imported attribute; it renders empty until an "
                                 "import brings it\n",
                    vc->path, line, col, name);
        return;
    }
    vc->bad = 1;
    nerr_set(vc->L->err, vc->path, line, col, "unknown template variable '%s'", name);
    nerr_source(vc->L->err, vc->text, vc->len);
    if (g)
        nerr_hint(vc->L->err, "did you mean '%s'?", g);
    else
        nerr_hint(vc->L->err, "customer fields (name, first_name, email, tier, ...), custom "
                              "attributes, coupon.code, unsubscribe_url, rule and occurrence "
                              "are available");
}

/* ---- partials ---------------------------------------------------------------
 *
 * Every partial a template includes is read and compiled when the rule is
 * loaded, and kept in the rule (and so in its snapshot): a missing or broken
 * partial is a load error located at the {{> name}} tag, and rendering never
 * reads the rules directory, so editing a partial changes what is enqueued
 * after the next reload and never what is already queued.
 */

struct partial_scan {
    struct loader *L;
    const char *path; /* the template holding the tags */
    const char *text;
    size_t len;
    bool is_partial; /* the tags are in a partial's file (not the rule's template) */
    int bad;
};

static int load_partial(struct loader *L, const char *name, const struct partial_scan *from,
                        int line, int col);

static void
scan_partial(void *ud, const char *name, int line, int col)
{
    struct partial_scan *ps = ud;
    if (!ps->bad && load_partial(ps->L, name, ps, line, col) < 0)
        ps->bad = 1;
}

/* Reads, compiles and keeps partial NAME (and the partials it includes)
 * unless the rule has it already. */
static int
load_partial(struct loader *L, const char *name, const struct partial_scan *from, int line,
             int col)
{
    struct rule *r = L->rule;
    struct tmpl *t = NULL;
    char *path, *text = NULL;
    size_t len = 0, at;
    int rc;

    for (size_t i = 0; i < r->npartials; i++)
        if (!strcmp(r->partials[i].name, name))
            return 0;
    if (!name[0] || name[0] == '.' || strchr(name, '/')) {
        nerr_set(L->err, from->path, line, col, "partial name '%s' is not a plain name", name);
        nerr_source(L->err, from->text, from->len);
        nerr_hint(L->err, "partials are files NAME.mustache in the rules directory; a name "
                          "cannot be empty, contain '/' or start with '.'");
        L->err_elsewhere = from->is_partial;
        return -EINVAL;
    }
    path = xasprintf("%s/%s.mustache", L->dir, name);
    if ((rc = read_file(path, &text, &len)) < 0) {
        nerr_set(L->err, from->path, line, col, "partial '%s': cannot read %s: %s", name, path,
                 strerror(-rc));
        nerr_source(L->err, from->text, from->len);
        nerr_hint(L->err, "create %s, or remove the {{> %s}} tag", path, name);
        L->err_elsewhere = from->is_partial;
        free(path);
        return -EINVAL;
    }
    if (tmpl_compile(path, text, len, &t, L->err) < 0) {
        L->err_elsewhere = true;
        free(text);
        free(path);
        return -EINVAL;
    }
    EVP_DigestUpdate(L->md, text, len);
    /* Kept sorted by name, so that the snapshot is the same whatever order
     * the templates include them in. */
    for (at = 0; at < r->npartials && strcmp(r->partials[at].name, name) < 0; at++)
        ;
    r->partials = xrealloc(r->partials, (r->npartials + 1) * sizeof(*r->partials));
    memmove(&r->partials[at + 1], &r->partials[at], (r->npartials - at) * sizeof(*r->partials));
    r->partials[at] = (struct partial){xstrdup(name), text, len};
    r->npartials++;
    {
        /* The partial's own text stays valid: the rule owns it now. */
        struct partial_scan ps = {L, path, r->partials[at].src, len, true, 0};
        tmpl_foreach_partial(t, scan_partial, &ps);
        rc = ps.bad ? -EINVAL : 0;
    }
    tmpl_free(t);
    free(path);
    return rc;
}

static int
compile_tmpl(struct loader *L, const char *path, const char *text, size_t len, struct tmpl **out)
{
    struct var_check vc = {L, path, text, len, 0};
    struct partial_scan ps = {L, path, text, len, false, 0};
    if (tmpl_compile(path, text, len, out, L->err) < 0)
        return -EINVAL;
    tmpl_foreach_name(*out, check_var, &vc);
    if (!vc.bad)
        tmpl_foreach_partial(*out, scan_partial, &ps);
    if (vc.bad || ps.bad) {
        tmpl_free(*out);
        *out = NULL;
        return -EINVAL;
    }
    EVP_DigestUpdate(L->md, text, len);
    return 0;
}

/* A copy of a template's source for the rule's snapshot. */
static void
keep_src(const char *text, size_t len, char **src, size_t *srclen)
{
    *src = xmalloc(len + 1);
    memcpy(*src, text, len);
    (*src)[len] = '\0';
    *srclen = len;
}

/* Loads DIR/NAME.EXT; a missing optional file leaves *out NULL. */
static int
load_tmpl_file(struct loader *L, const struct ynode *where, const char *name, const char *ext,
               bool required, struct tmpl **out, char **src, size_t *srclen)
{
    char *path = xasprintf("%s/%s.%s", L->dir, name, ext), *text = NULL;
    size_t len;
    int r = read_file(path, &text, &len);
    if (r < 0) {
        if (required || r != -ENOENT) {
            yerr(L->doc, where, L->err, "template file %s: %s", path, strerror(-r));
            nerr_hint(L->err, "an email template NAME needs NAME.subject and NAME.txt "
                              "(NAME.html optional) beside the rule");
        } else {
            r = 0;
        }
        goto out;
    }
    r = compile_tmpl(L, path, text, len, out);
    if (r == 0)
        keep_src(text, len, src, srclen);
out:
    free(text);
    free(path);
    return r;
}

static int
inline_tmpl(struct loader *L, const struct ynode *n, const char *what, struct tmpl **out,
            char **src, size_t *srclen)
{
    const char *s;
    int r;
    if (yget_str(L->doc, n, what, &s, L->err) < 0)
        return -EINVAL;
    L->err_elsewhere = false;
    r = compile_tmpl(L, L->doc->file, s, strlen(s), out);
    if (r == 0)
        keep_src(s, strlen(s), src, srclen);
    if (r < 0 && L->err->line > 0 && !L->err_elsewhere) {
        /* Point into the rule file: the template starts at the scalar. */
        if (L->err->line == 1)
            L->err->col += n->col - 1 + (n->plain ? 0 : 1);
        L->err->line += n->line - 1;
        nerr_source(L->err, L->doc->text, L->doc->len);
    }
    return r;
}

static int
valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
            return 0;
    return 1;
}

static int
parse_action(struct loader *L, struct rule *r, const struct ynode *n, struct action *a)
{
    /* The registry's order is enum action_kind's (channel_registry.h). */
    const char *const *kinds = channel_names();
    static const char *const email_keys[] = {"template", NULL};
    static const char *const sms_keys[] = {"text", "template", NULL};
    static const char *const hook_keys[] = {"url", "secret_file", NULL};
    static const char *const task_keys[] = {"kind", "assign", "due_in", "note", NULL};
    const struct ynode *body, *v;
    const char *s;
    if (!n || n->type != YN_MAP || n->n != 1) {
        yerr(L->doc, n, L->err, "each action is one channel with its settings");
        nerr_hint(L->err, "e.g. - email: { template: birthday }");
        return -EINVAL;
    }
    int k = -1;
    for (int i = 0; kinds[i]; i++)
        if (!strcmp(kinds[i], n->keys[0]->value))
            k = i;
    if (k < 0) {
        const char *g = did_you_mean(n->keys[0]->value, kinds);
        yerr(L->doc, n->keys[0], L->err, "unknown action '%s'", n->keys[0]->value);
        nerr_hint(L->err, "%s%s%sexpected one of: %s", g ? "did you mean '" : "", g ? g : "",
                  g ? "'? " : "", channel_names_joined());
        return -EINVAL;
    }
    a->kind = (enum action_kind)k;
    a->channel = kinds[k];
    body = n->items[0];
    switch (a->kind) {
    case ACT_EMAIL:
        if (ymap_check_keys(L->doc, body, "email action", email_keys, L->err) < 0)
            return -EINVAL;
        if (!(v = ymap_get(body, "template")))
            return yerr(L->doc, body, L->err, "the email action needs a template"),
                   nerr_hint(L->err, "e.g. email: { template: birthday } with birthday.subject, "
                                     "birthday.txt and birthday.html beside the rule"),
                   -EINVAL;
        if (yget_str(L->doc, v, "template", &s, L->err) < 0)
            return -EINVAL;
        if (!*s || strchr(s, '/') || s[0] == '.')
            return yerr(L->doc, v, L->err, "template names are plain words like 'birthday'");
        a->template_name = xstrdup(s);
        if (load_tmpl_file(L, v, s, "subject", true, &a->subject, &a->src.subject,
                           &a->src.subject_len) < 0 ||
            load_tmpl_file(L, v, s, "txt", true, &a->text, &a->src.text, &a->src.text_len) < 0 ||
            load_tmpl_file(L, v, s, "html", false, &a->html, &a->src.html, &a->src.html_len) < 0)
            return -EINVAL;
        break;
    case ACT_SMS:
        if (ymap_check_keys(L->doc, body, "sms action", sms_keys, L->err) < 0)
            return -EINVAL;
        if ((v = ymap_get(body, "text"))) {
            if (inline_tmpl(L, v, "text", &a->text, &a->src.text, &a->src.text_len) < 0)
                return -EINVAL;
        } else if ((v = ymap_get(body, "template"))) {
            if (yget_str(L->doc, v, "template", &s, L->err) < 0)
                return -EINVAL;
            if (strchr(s, '/') || s[0] == '.')
                return yerr(L->doc, v, L->err, "template names are plain words like 'offer'");
            a->template_name = xstrdup(s);
            if (load_tmpl_file(L, v, s, "sms", true, &a->text, &a->src.text, &a->src.text_len) < 0)
                return -EINVAL;
        } else {
            return yerr(L->doc, body, L->err, "the sms action needs text or a template"),
                   nerr_hint(L->err, "e.g. sms: { text: \"Hi {{first_name}} ...\" }"), -EINVAL;
        }
        break;
    case ACT_WEBHOOK:
        if (ymap_check_keys(L->doc, body, "webhook action", hook_keys, L->err) < 0)
            return -EINVAL;
        if (!(v = ymap_get(body, "url")))
            return yerr(L->doc, body, L->err, "the webhook action needs a url");
        if (yget_str(L->doc, v, "url", &s, L->err) < 0)
            return -EINVAL;
        if (strncmp(s, "http://", 7) && strncmp(s, "https://", 8))
            return yerr(L->doc, v, L->err, "webhook url must start with http:// or https://");
        a->url = xstrdup(s);
        if ((v = ymap_get(body, "secret_file"))) {
            if (yget_str(L->doc, v, "secret_file", &s, L->err) < 0)
                return -EINVAL;
            a->secret_file = s[0] == '/' ? xstrdup(s) : xasprintf("%s/%s", L->dir, s);
        }
        break;
    case ACT_TASK:
        if (ymap_check_keys(L->doc, body, "task action", task_keys, L->err) < 0)
            return -EINVAL;
        a->task_kind = xstrdup("callback");
        a->assign = xstrdup("owner");
        a->due_in = 3 * 86400;
        if ((v = ymap_get(body, "kind"))) {
            if (yget_str(L->doc, v, "kind", &s, L->err) < 0)
                return -EINVAL;
            free(a->task_kind);
            a->task_kind = xstrdup(s);
        }
        if ((v = ymap_get(body, "assign"))) {
            if (yget_str(L->doc, v, "assign", &s, L->err) < 0)
                return -EINVAL;
            if (strcmp(s, "owner") && strcmp(s, "round-robin"))
                return yerr(L->doc, v, L->err, "assign must be owner or round-robin"), -EINVAL;
            free(a->assign);
            a->assign = xstrdup(s);
        }
        if ((v = ymap_get(body, "due_in")) &&
            yget_duration(L->doc, v, "due_in", &a->due_in, L->err) < 0)
            return -EINVAL;
        if ((v = ymap_get(body, "note")) &&
            inline_tmpl(L, v, "note", &a->note, &a->src.note, &a->src.note_len) < 0)
            return -EINVAL;
        break;
    }
    (void)r;
    return 0;
}

static int
parse_coupon(struct loader *L, struct rule *r, const struct ynode *n)
{
    static const char *const keys[] = {"percent_off", "amount_off", "valid_days", "prefix", NULL};
    const struct ynode *v;
    int64_t iv;
    const char *s;
    if (ymap_check_keys(L->doc, n, "coupon", keys, L->err) < 0)
        return -EINVAL;
    r->coupon.enabled = true;
    r->coupon.valid_days = 30;
    if ((v = ymap_get(n, "percent_off"))) {
        if (yget_int(L->doc, v, "percent_off", 1, 100, &iv, L->err) < 0)
            return -EINVAL;
        r->coupon.percent_off = (int)iv;
    }
    if ((v = ymap_get(n, "amount_off"))) {
        if (yget_int(L->doc, v, "amount_off", 1, 1000000, &iv, L->err) < 0)
            return -EINVAL;
        r->coupon.amount_off_cents = iv * 100;
    }
    if (!r->coupon.percent_off && !r->coupon.amount_off_cents)
        return yerr(L->doc, n, L->err, "a coupon needs percent_off or amount_off");
    if ((v = ymap_get(n, "valid_days"))) {
        if (yget_int(L->doc, v, "valid_days", 1, 3650, &iv, L->err) < 0)
            return -EINVAL;
        r->coupon.valid_days = (int)iv;
    }
    if ((v = ymap_get(n, "prefix"))) {
        if (yget_str(L->doc, v, "prefix", &s, L->err) < 0)
            return -EINVAL;
        if (strlen(s) > 16)
            return yerr(L->doc, v, L->err, "coupon prefix is at most 16 characters");
        r->coupon.prefix = xstrdup(s);
    }
    return 0;
}

/* ---- snapshots ----------------------------------------------------------------
 *
 * A rule's snapshot is what its deliveries need to be sent as they were
 * enqueued: name, category, coupon settings, and each action with its
 * template sources, plus the partials, as JSON with sorted keys (so equal
 * content gives equal bytes and equal hashes). Trigger and audience decide
 * who gets a delivery, not what it says, so they are left out: changing an
 * audience alone does not make a new snapshot.
 */

static void
set_src(json_t *o, const char *key, const char *src, size_t len)
{
    if (src)
        json_object_set_new(o, key, json_stringn(src, len));
}

static void
snapshot_encode(struct rule *r)
{
    json_t *root = json_object(), *acts = json_array(), *parts = json_object();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    json_object_set_new(root, "format", json_integer(1));
    json_object_set_new(root, "name", json_string(r->name));
    json_object_set_new(root, "category", json_string(r->marketing ? "marketing" : "care"));
    if (r->coupon.enabled) {
        json_t *c = json_object();
        json_object_set_new(c, "percent_off", json_integer(r->coupon.percent_off));
        json_object_set_new(c, "amount_off_cents", json_integer(r->coupon.amount_off_cents));
        json_object_set_new(c, "valid_days", json_integer(r->coupon.valid_days));
        if (r->coupon.prefix)
            json_object_set_new(c, "prefix", json_string(r->coupon.prefix));
        json_object_set_new(root, "coupon", c);
    }
    for (size_t i = 0; i < r->nactions; i++) {
        const struct action *a = &r->actions[i];
        json_t *o = json_object();
        json_object_set_new(o, "kind", json_string(channel_infos[a->kind].name));
        if (a->template_name)
            json_object_set_new(o, "template", json_string(a->template_name));
        set_src(o, "subject", a->src.subject, a->src.subject_len);
        set_src(o, "text", a->src.text, a->src.text_len);
        set_src(o, "html", a->src.html, a->src.html_len);
        set_src(o, "note", a->src.note, a->src.note_len);
        if (a->url)
            json_object_set_new(o, "url", json_string(a->url));
        if (a->secret_file)
            json_object_set_new(o, "secret_file", json_string(a->secret_file));
        if (a->kind == ACT_TASK) {
            json_object_set_new(o, "task_kind", json_string(a->task_kind));
            json_object_set_new(o, "assign", json_string(a->assign));
            json_object_set_new(o, "due_in", json_integer(a->due_in));
        }
        json_array_append_new(acts, o);
    }
    json_object_set_new(root, "actions", acts);
    for (size_t i = 0; i < r->npartials; i++)
        json_object_set_new(parts, r->partials[i].name,
                            json_stringn(r->partials[i].src, r->partials[i].len));
    json_object_set_new(root, "partials", parts);
    r->snapshot = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(root);
    if (!r->snapshot)
        abort(); /* jansson fails here only without memory */
    EVP_Digest(r->snapshot, strlen(r->snapshot), md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(r->snapshot_hash + 2 * i, 3, "%02x", md[i]);
}

int
rule_partial(void *ud, const char *name, char **text, size_t *len)
{
    const struct rule *r = ud;
    for (size_t i = 0; i < r->npartials; i++) {
        if (!strcmp(r->partials[i].name, name)) {
            *text = xmalloc(r->partials[i].len + 1);
            memcpy(*text, r->partials[i].src, r->partials[i].len);
            (*text)[r->partials[i].len] = '\0';
            *len = r->partials[i].len;
            return 0;
        }
    }
    return -ENOENT;
}

/* Compiles the template source at key of o, if present, keeping the source. */
static int
decode_tmpl(const json_t *o, const char *key, const char *rule, struct tmpl **t, char **src,
            size_t *srclen, char *why, size_t whylen)
{
    const json_t *v = json_object_get(o, key);
    struct nerr err;
    char *name;
    int rc;
    if (!v)
        return 0;
    if (!json_is_string(v)) {
        snprintf(why, whylen, "snapshot of rule '%s': %s is not a string", rule, key);
        return -EINVAL;
    }
    keep_src(json_string_value(v), json_string_length(v), src, srclen);
    name = xasprintf("snapshot of %s (%s)", rule, key);
    err.msg[0] = '\0';
    rc = tmpl_compile(name, *src, *srclen, t, &err);
    free(name);
    if (rc < 0) {
        snprintf(why, whylen, "snapshot of rule '%s': %s: %s", rule, key, err.msg);
        return -EINVAL;
    }
    return 0;
}

static char *
dup_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? xstrdup(s) : NULL;
}

int
rule_snapshot_decode(const char *body, size_t len, struct rule **out, char *why, size_t whylen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr), *acts, *parts, *v;
    struct rule *r = NULL;
    const char *key;
    int rc = -EINVAL;

    if (!json_is_object(root) || json_integer_value(json_object_get(root, "format")) != 1 ||
        !json_is_string(json_object_get(root, "name")) ||
        !json_is_array(acts = json_object_get(root, "actions")) ||
        !json_is_object(parts = json_object_get(root, "partials"))) {
        snprintf(why, whylen, "rule snapshot is not in a format this nudged reads%s%s",
                 root ? "" : ": ", root ? "" : jerr.text);
        goto out;
    }
    r = xcalloc(1, sizeof(*r));
    r->name = dup_str(root, "name");
    key = json_string_value(json_object_get(root, "category"));
    r->marketing = !key || strcmp(key, "care") != 0;
    if ((v = json_object_get(root, "coupon"))) {
        r->coupon.enabled = true;
        r->coupon.percent_off = (int)json_integer_value(json_object_get(v, "percent_off"));
        r->coupon.amount_off_cents = json_integer_value(json_object_get(v, "amount_off_cents"));
        r->coupon.valid_days = (int)json_integer_value(json_object_get(v, "valid_days"));
        r->coupon.prefix = dup_str(v, "prefix");
    }
    r->actions = xcalloc(json_array_size(acts) ? json_array_size(acts) : 1, sizeof(*r->actions));
    for (size_t i = 0; i < json_array_size(acts); i++) {
        const json_t *o = json_array_get(acts, i);
        struct action *a = &r->actions[i];
        const char *kind = json_string_value(json_object_get(o, "kind"));
        /* The registry's order is enum action_kind's (channel_registry.h). */
        const struct channel_info *ci = channel_info_find(kind);
        r->nactions = i + 1;
        if (!ci) {
            snprintf(why, whylen, "snapshot of rule '%s': action %zu has unknown kind '%s'",
                     r->name, i, kind ? kind : "");
            goto out;
        }
        a->kind = (enum action_kind)(ci - channel_infos);
        a->channel = ci->name;
        a->template_name = dup_str(o, "template");
        a->url = dup_str(o, "url");
        a->secret_file = dup_str(o, "secret_file");
        a->task_kind = dup_str(o, "task_kind");
        a->assign = dup_str(o, "assign");
        a->due_in = json_integer_value(json_object_get(o, "due_in"));
        if (decode_tmpl(o, "subject", r->name, &a->subject, &a->src.subject, &a->src.subject_len,
                        why, whylen) < 0 ||
            decode_tmpl(o, "text", r->name, &a->text, &a->src.text, &a->src.text_len, why,
                        whylen) < 0 ||
            decode_tmpl(o, "html", r->name, &a->html, &a->src.html, &a->src.html_len, why,
                        whylen) < 0 ||
            decode_tmpl(o, "note", r->name, &a->note, &a->src.note, &a->src.note_len, why,
                        whylen) < 0)
            goto out;
        if ((a->kind == ACT_EMAIL && (!a->subject || !a->text)) ||
            (a->kind == ACT_SMS && !a->text) || (a->kind == ACT_WEBHOOK && !a->url) ||
            (a->kind == ACT_TASK && (!a->task_kind || !a->assign))) {
            snprintf(why, whylen, "snapshot of rule '%s': %s action %zu is incomplete", r->name,
                     a->channel, i);
            goto out;
        }
    }
    r->partials = xcalloc(json_object_size(parts) ? json_object_size(parts) : 1,
                          sizeof(*r->partials));
    json_object_foreach(parts, key, v)
    {
        struct partial *p = &r->partials[r->npartials];
        if (!json_is_string(v)) {
            snprintf(why, whylen, "snapshot of rule '%s': partial '%s' is not a string", r->name,
                     key);
            goto out;
        }
        p->name = xstrdup(key);
        keep_src(json_string_value(v), json_string_length(v), &p->src, &p->len);
        r->npartials++;
    }
    *out = r;
    r = NULL;
    rc = 0;
out:
    json_decref(root);
    rule_free(r);
    return rc;
}

static int
load_rule(struct loader *L, const char *path, struct rule **out)
{
    static const char *const keys[] = {"name",     "description", "category", "trigger",
                                       "audience", "coupon",      "actions",  "priority",
                                       "on_cap",   NULL};
    struct rule *r = xcalloc(1, sizeof(*r));
    const struct ynode *root, *v;
    const char *s;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int rc = -EINVAL;

    L->md = EVP_MD_CTX_new();
    L->rule = r;
    EVP_DigestInit_ex(L->md, EVP_sha256(), NULL);
    if (ydoc_load_file(path, &L->doc, L->err) < 0)
        goto out;
    EVP_DigestUpdate(L->md, L->doc->text, L->doc->len);
    r->file = xstrdup(path);
    root = L->doc->root;
    if (!root) {
        yerr(L->doc, NULL, L->err, "the rule file is empty");
        goto out;
    }
    if (ymap_check_keys(L->doc, root, "rule", keys, L->err) < 0)
        goto out;
    if (!(v = ymap_get(root, "name"))) {
        yerr(L->doc, root, L->err, "the rule has no name");
        nerr_hint(L->err, "add e.g. name: birthday-greeting (lowercase letters, digits, '-')");
        goto out;
    }
    if (yget_str(L->doc, v, "name", &s, L->err) < 0)
        goto out;
    if (!valid_name(s) || strlen(s) > 64) {
        yerr(L->doc, v, L->err, "rule name '%s' is not a slug", s);
        nerr_hint(L->err, "use lowercase letters, digits, '-' and '_' (at most 64)");
        goto out;
    }
    r->name = xstrdup(s);
    r->name_line = v->line;
    r->name_col = v->col;
    if ((v = ymap_get(root, "description"))) {
        if (yget_str(L->doc, v, "description", &s, L->err) < 0)
            goto out;
        r->description = xstrdup(s);
    }
    r->marketing = true;
    if ((v = ymap_get(root, "category"))) {
        if (yget_str(L->doc, v, "category", &s, L->err) < 0)
            goto out;
        if (!strcmp(s, "care"))
            r->marketing = false;
        else if (strcmp(s, "marketing")) {
            yerr(L->doc, v, L->err, "unknown category '%s'", s);
            nerr_hint(L->err, "expected marketing (caps, quiet hours, unsubscribe link) or care "
                              "(service messages and staff tasks)");
            goto out;
        }
    }
    if ((v = ymap_get(root, "priority"))) {
        int64_t pr;
        if (yget_int(L->doc, v, "priority", -1000, 1000, &pr, L->err) < 0) {
            nerr_hint(L->err, "expected a whole number from -1000 to 1000; higher wins a "
                              "crowded day, the default is 0");
            goto out;
        }
        r->priority = (int)pr;
    }
    if ((v = ymap_get(root, "on_cap"))) {
        if (yget_str(L->doc, v, "on_cap", &s, L->err) < 0)
            goto out;
        if (!strcmp(s, "drop"))
            r->cap_drop = true;
        else if (strcmp(s, "defer")) {
            yerr(L->doc, v, L->err, "unknown on_cap '%s'", s);
            nerr_hint(L->err, "expected defer (the default: send on the next day the caps "
                              "allow) or drop (record it as suppressed)");
            goto out;
        }
    }
    if (parse_trigger(L, r, ymap_get(root, "trigger")) < 0)
        goto out;
    if ((v = ymap_get(root, "audience"))) {
        if (yget_str(L->doc, v, "audience", &s, L->err) < 0)
            goto out;
        r->audience_src = xstrdup(s);
        if (audience_compile(s, L->doc->file, v->line, v->col + (v->plain ? 0 : 1),
                             L->env->known_attrs, &r->audience, L->err) < 0) {
            nerr_source(L->err, L->doc->text, L->doc->len);
            goto out;
        }
        if (r->audience->warnings)
            sbuf_adds(L->warn, r->audience->warnings);
    }
    if ((v = ymap_get(root, "coupon")) && parse_coupon(L, r, v) < 0)
        goto out;
    v = ymap_get(root, "actions");
    if (!v || v->type != YN_SEQ || v->n == 0) {
        yerr(L->doc, v ? v : root, L->err, "the rule needs a list of actions");
        nerr_hint(L->err, "e.g.\n    actions:\n      - email: { template: birthday }");
        goto out;
    }
    r->actions = xcalloc(v->n, sizeof(*r->actions));
    for (size_t i = 0; i < v->n; i++) {
        r->nactions = i + 1;
        if (parse_action(L, r, v->items[i], &r->actions[i]) < 0)
            goto out;
    }
    EVP_DigestFinal_ex(L->md, md, &mdlen);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(r->digest + 2 * i, 3, "%02x", md[i]);
    snapshot_encode(r);
    *out = r;
    r = NULL;
    rc = 0;
out:
    EVP_MD_CTX_free(L->md);
    L->md = NULL;
    L->rule = NULL;
    ydoc_free(L->doc);
    L->doc = NULL;
    rule_free(r);
    return rc;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int
ruleset_load(const char *dir, const struct rules_env *env, struct ruleset **out, char **errors)
{
    static atomic_uint_fast64_t versions;
    struct sbuf errs, warns;
    struct ruleset *rs = xcalloc(1, sizeof(*rs));
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t nn = 0;
    int nerrs = 0;

    sbuf_init(&errs);
    sbuf_init(&warns);
    *errors = NULL;
    rs->dir = xstrdup(dir);
    rs->refs = 1;
    if (!d) {
        sbuf_printf(&errs, "%s: error: cannot open the rules directory: %s\n", dir,
                    strerror(errno));
        nerrs++;
        goto done;
    }
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l < 6 || strcmp(de->d_name + l - 5, ".yaml"))
            continue;
        names = xrealloc(names, (nn + 1) * sizeof(*names));
        names[nn++] = xasprintf("%s/%s", dir, de->d_name);
    }
    closedir(d);
    /* Sorted, so that errors and listings come out the same every time. */
    if (nn)
        qsort(names, nn, sizeof(*names), cmp_str);
    rs->rules = xcalloc(nn ? nn : 1, sizeof(*rs->rules));
    for (size_t i = 0; i < nn; i++) {
        struct nerr err;
        struct loader L = {dir, env, NULL, &err, NULL, NULL, false, &warns};
        struct rule *r = NULL;
        char buf[4096];
        nerr_clear(&err);
        if (load_rule(&L, names[i], &r) < 0) {
            nerr_format(&err, buf, sizeof(buf));
            sbuf_adds(&errs, buf);
            nerrs++;
            continue;
        }
        for (size_t j = 0; j < rs->n; j++) {
            if (!strcmp(rs->rules[j]->name, r->name)) {
                sbuf_printf(&errs, "%s:%d:%d: error: rule name '%s' is also used by %s:%d:%d\n"
                                   "    rule names must be unique: rename one of them\n",
                            names[i], r->name_line, r->name_col, r->name, rs->rules[j]->file,
                            rs->rules[j]->name_line, rs->rules[j]->name_col);
                nerrs++;
                rule_free(r);
                r = NULL;
                break;
            }
        }
        if (r)
            rs->rules[rs->n++] = r;
    }
done:
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    if (nerrs) {
        sbuf_adds(&errs, warns.len ? warns.s : "");
        sbuf_free(&warns);
        sbuf_printf(&errs, "%d error%s in %s; nothing was changed\n", nerrs, nerrs == 1 ? "" : "s",
                    dir);
        *errors = sbuf_steal(&errs);
        ruleset_unref(rs);
        return -EINVAL;
    }
    sbuf_free(&errs);
    rs->warnings = warns.len ? sbuf_steal(&warns) : NULL;
    sbuf_free(&warns);
    rs->version = ++versions;
    *out = rs;
    return 0;
}

struct ruleset *
ruleset_ref(struct ruleset *rs)
{
    __atomic_add_fetch(&rs->refs, 1, __ATOMIC_SEQ_CST);
    return rs;
}

void
ruleset_unref(struct ruleset *rs)
{
    if (!rs || __atomic_sub_fetch(&rs->refs, 1, __ATOMIC_SEQ_CST) > 0)
        return;
    for (size_t i = 0; i < rs->n; i++)
        rule_free(rs->rules[i]);
    free(rs->rules);
    free(rs->dir);
    free(rs->warnings);
    free(rs);
}

const struct rule *
ruleset_find(const struct ruleset *rs, const char *name)
{
    for (size_t i = 0; i < rs->n; i++)
        if (!strcmp(rs->rules[i]->name, name))
            return rs->rules[i];
    return NULL;
}
