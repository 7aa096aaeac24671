/*
 * import_customers.c: the customers file (see import.h for its columns):
 * the header row mapped to columns, each row checked and normalised, then
 * looked up and written through store_import.h, comparing first so that an
 * unchanged customer is not written at all.
 */
#include "import_csv.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "calendar.h"
#include "channel_registry.h"
#include "log.h"
#include "store_import.h"

/* ---- checking cells ------------------------------------------------------ */

/* yes/no/true/false/1/0/y/n, any case: 1, 0, or -EINVAL. */
static int
parse_yesno(const char *s)
{
    static const char *const yes[] = {"yes", "true", "1", "y", NULL};
    static const char *const no[] = {"no", "false", "0", "n", NULL};
    for (int i = 0; yes[i]; i++)
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
    for (int i = 0; no[i]; i++)
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    return -EINVAL;
}

/*
 * Checks and normalises an address in place: trimmed, the domain part
 * lower-cased (the local part is the receiving server's business, so its case
 * is kept). Deliberately a sanity check, not RFC 5321 in full: it catches the
 * typos that happen in spreadsheets (missing @, commas, spaces, a domain
 * without a dot) and lets through the unusual-but-valid.
 */
static int
email_normalize(char *s)
{
    char *at = strchr(s, '@'), *dom;
    size_t local_len, dom_len;
    if (!at || strchr(at + 1, '@'))
        return -EINVAL;
    local_len = (size_t)(at - s);
    dom = at + 1;
    dom_len = strlen(dom);
    if (local_len == 0 || local_len > 64 || dom_len == 0 || dom_len > 253)
        return -EINVAL;
    if (s[0] == '.' || at[-1] == '.')
        return -EINVAL;
    for (char *p = s; p < at; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7F || strchr("()<>,;:\\\"[]", c) || (c == '.' && p[1] == '.'))
            return -EINVAL;
    }
    if (!strchr(dom, '.'))
        return -EINVAL;
    /* Labels: letters, digits, hyphens, or UTF-8 for internationalised names;
     * none empty, none starting or ending with a hyphen. */
    for (char *label = dom; *label;) {
        char *end = strchr(label, '.');
        size_t n = end ? (size_t)(end - label) : strlen(label);
        if (n == 0 || n > 63 || label[0] == '-' || label[n - 1] == '-')
            return -EINVAL;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)label[i];
            if (!(c >= 0x80 || is_alpha((char)c) || is_digit((char)c) || c == '-'))
                return -EINVAL;
        }
        if (!end)
            break;
        label = end + 1;
        if (!*label)
            return -EINVAL; /* trailing dot */
    }
    ascii_lower(dom);
    return 0;
}

/*
 * Keeps digits and one leading '+', drops the usual separators, in place.
 * -EILSEQ for letters (a vanity number or a name in the wrong column),
 * -EINVAL for anything else odd, -ERANGE when fewer than 3 digits remain.
 * s is only rewritten once it is known to be good, so that a message can
 * still quote what the file said.
 */
static int
phone_normalize(char *s)
{
    size_t o = 0, ndig = 0;
    bool lead = true; /* nothing but separators so far: a '+' may come */
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        if (is_digit(c)) {
            ndig++;
            lead = false;
        } else if (c == '+' && lead) {
            lead = false;
        } else if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '\t') {
            continue;
        } else if (is_alpha(c) || (unsigned char)c >= 0x80) {
            return -EILSEQ;
        } else {
            return -EINVAL;
        }
    }
    if (ndig < 3)
        return -ERANGE;
    for (size_t i = 0; s[i]; i++)
        if (is_digit(s[i]) || (s[i] == '+' && o == 0))
            s[o++] = s[i];
    s[o] = '\0';
    return 0;
}

/* YYYY-MM-DD or --MM-DD. -EINVAL for the wrong shape, -ERANGE for a date
 * that does not exist (2026-02-30, --04-31). */
static int
birthday_check(const char *s)
{
    int y, m, d;
    if (s[0] == '-' && s[1] == '-') {
        if (strlen(s) != 7 || s[4] != '-' || !is_digit(s[2]) || !is_digit(s[3]) ||
            !is_digit(s[5]) || !is_digit(s[6]))
            return -EINVAL;
        m = (s[2] - '0') * 10 + (s[3] - '0');
        d = (s[5] - '0') * 10 + (s[6] - '0');
        /* Without a year, 29 February is a real birthday. */
        if (m < 1 || m > 12 || d < 1 || d > days_in_month(2000, m))
            return -ERANGE;
        return 0;
    }
    return date_parse(s, &y, &m, &d);
}

/* Why a date that has the right shape is impossible, for the message. */
static void
date_why(const char *s, char *buf, size_t size)
{
    int y = 2000, m = 0, d = 0;
    if (s[0] == '-')
        sscanf(s, "--%2d-%2d", &m, &d);
    else
        sscanf(s, "%4d-%2d-%2d", &y, &m, &d);
    if (m < 1 || m > 12)
        snprintf(buf, size, "there is no month %02d", m);
    else if (s[0] == '-')
        snprintf(buf, size, "month %02d has %d days", m, days_in_month(2000, m));
    else
        snprintf(buf, size, "%04d-%02d has %d days", y, m, days_in_month(y, m));
}

/* ---- attribute values -------------------------------------------------- */

/*
 * A cell as a JSON value. Canonical integers and decimals (no leading zeros,
 * no '+', at most 15 digits) become numbers so that audiences can compare
 * them ("lifetime_value > 100"); everything else, including zip codes and
 * phone numbers that start with 0 or +, stays a string, exactly as written.
 */
static json_t *
attr_value(const char *s)
{
    const char *p = s;
    int ndig = 0;
    bool dot = false;
    if (*p == '-')
        p++;
    if (*p == '0' && is_digit(p[1]))
        return json_string(s);
    for (; *p; p++) {
        if (is_digit(*p)) {
            ndig++;
        } else if (*p == '.' && !dot && ndig > 0 && is_digit(p[1])) {
            dot = true;
        } else {
            return json_string(s);
        }
    }
    if (ndig == 0 || ndig > 15)
        return json_string(s);
    if (!dot) {
        int64_t v;
        if (parse_i64(s, &v) == 0)
            return json_integer(v);
        return json_string(s);
    }
    return json_real(strtod(s, NULL));
}

/* ======================================================================= */
/* customers                                                               */
/* ======================================================================= */

/* The plain text columns, in the order of the customers table. */
enum {
    T_NAME = STORE_CUST_NAME,
    T_FIRST_NAME = STORE_CUST_FIRST_NAME,
    T_EMAIL = STORE_CUST_EMAIL,
    T_PHONE = STORE_CUST_PHONE,
    T_BIRTHDAY = STORE_CUST_BIRTHDAY,
    T_TZ = STORE_CUST_TZ,
    T_TIER = STORE_CUST_TIER,
    T_OWNER = STORE_CUST_OWNER,
    N_TEXT = STORE_CUST_NFIELDS
};

static const char *const text_cols[N_TEXT] = {
    "name", "first_name", "email", "phone", "birthday", "tz", "tier", "owner",
};

enum col_kind { K_IGNORE, K_ID, K_TEXT, K_TAGS, K_CREATED_AT, K_CONSENT, K_ATTR };

/* Every column name with a meaning, for "did you mean": these, and
 * consent_<name> for each consent the channel registry knows. */
static const char *const fixed_cols[] = {
    "id", "name", "first_name", "email", "phone", "birthday", "tz", "tier", "owner", "tags",
    "created_at",
};
#define N_FIXED_COLS (sizeof(fixed_cols) / sizeof(fixed_cols[0]))
static const char *known_cols[N_FIXED_COLS + 16 + 1];
static char consent_cols[16][48];
static char consent_expected[256]; /* "consent_email, consent_sms" */
static pthread_once_t known_once = PTHREAD_ONCE_INIT;

static void
known_init(void)
{
    const char *const *c = channel_consent_names();
    size_t n = 0, k = 0, len = 0;
    for (; n < N_FIXED_COLS; n++)
        known_cols[n] = fixed_cols[n];
    for (; c[k] && k < 16; k++) {
        snprintf(consent_cols[k], sizeof(consent_cols[k]), "consent_%s", c[k]);
        known_cols[n++] = consent_cols[k];
        len += (size_t)snprintf(consent_expected + len, sizeof(consent_expected) - len, "%s%s",
                                k ? ", " : "", consent_cols[k]);
        if (len >= sizeof(consent_expected))
            len = sizeof(consent_expected) - 1;
    }
    known_cols[n] = NULL;
}

struct ccol {
    enum col_kind kind;
    int text;        /* K_TEXT: T_* */
    const char *key; /* K_CONSENT: channel; K_ATTR: attribute key */
};

struct cust {
    struct ccol *cols;
    char **names; /* lower-cased header names (owned), for messages */
    size_t ncols; /* entries in cols and names */
    bool present[N_TEXT];
    bool has_tags, has_attrs;
    bool empty_start;                /* no customers before this file: insert without looking up */
    long no_tz;                      /* customers left without a zone of their own */
    struct store_saved_indexes *idx; /* dropped for a bulk load, built again at the end */
    struct store_customers_import *sc; /* the store's side of this import */
    char *source;                      /* consents.source */
};

/* Names other tools use for the known columns: a file exported from a CRM
 * says "timezone" or "mobile", and should be told that nudge calls it "tz". */
static const char *const col_aliases[][2] = {
    {"e-mail", "email"},
    {"mail", "email"},
    {"email_address", "email"},
    {"phone_number", "phone"},
    {"mobile", "phone"},
    {"mobile_phone", "phone"},
    {"cell", "phone"},
    {"telephone", "phone"},
    {"tel", "phone"},
    {"full_name", "name"},
    {"firstname", "first_name"},
    {"given_name", "first_name"},
    {"dob", "birthday"},
    {"date_of_birth", "birthday"},
    {"birthdate", "birthday"},
    {"birth_date", "birthday"},
    {"timezone", "tz"},
    {"time_zone", "tz"},
    {"tag", "tags"},
    {"created", "created_at"},
    {"signup_date", "created_at"},
};

/* The known column an unknown customers column was probably meant to be. */
static const char *
column_hint(const char *col)
{
    for (size_t i = 0; i < sizeof(col_aliases) / sizeof(col_aliases[0]); i++)
        if (strcmp(col, col_aliases[i][0]) == 0)
            return col_aliases[i][1];
    pthread_once(&known_once, known_init);
    return imp_misspelt(col, known_cols);
}

static void
cust_header(struct imp *im, char **fv, size_t nf)
{
    struct cust *c = im->kind;
    long id_col = -1;
    c->cols = xcalloc(nf, sizeof(*c->cols));
    c->names = xcalloc(nf, sizeof(char *));
    c->ncols = nf;
    if (!imp_fields_clean(im, fv, nf, NULL)) {
        im->ncols = 0;
        return;
    }
    for (size_t i = 0; i < nf; i++) {
        /* Copied: the record buffer is reused for the rows. */
        char *n = xstrdup(trim(fv[i]));
        struct ccol *cc = &c->cols[i];
        ascii_lower(n);
        c->names[i] = n;
        for (size_t j = 0; j < i; j++) {
            if (n[0] && strcmp(c->names[j], n) == 0) {
                imp_error(im, im->rec_line,
                          "duplicate column '%s' (columns %zu and %zu; rename or remove one)",
                          imp_show(im, n), j + 1, i + 1);
                break;
            }
        }
        if (!n[0]) {
            imp_warning(im, im->rec_line, "column %zu has no name; its values are ignored", i + 1);
            cc->kind = K_IGNORE;
            continue;
        }
        if (strcmp(n, "id") == 0) {
            cc->kind = K_ID;
            id_col = (long)i;
            continue;
        }
        if (strcmp(n, "tags") == 0) {
            cc->kind = K_TAGS;
            c->has_tags = true;
            continue;
        }
        if (strcmp(n, "created_at") == 0) {
            cc->kind = K_CREATED_AT;
            continue;
        }
        if (strcmp(n, "updated_at") == 0 || strcmp(n, "attrs") == 0) {
            imp_warning(im, im->rec_line,
                        "column '%s' is maintained by nudge; its values are ignored", n);
            cc->kind = K_IGNORE;
            continue;
        }
        cc->kind = K_ATTR;
        for (int t = 0; t < N_TEXT; t++) {
            if (strcmp(n, text_cols[t]) == 0) {
                cc->kind = K_TEXT;
                cc->text = t;
                c->present[t] = true;
            }
        }
        if (cc->kind == K_TEXT)
            continue;
        if (strncmp(n, "consent_", 8) == 0) {
            const char *ch = n + 8, *sugg;
            bool ok = ch[0] != '\0';
            for (const char *p = ch; *p; p++)
                if (!(is_alpha(*p) || is_digit(*p) || *p == '_' || *p == '-'))
                    ok = false;
            if (!ok) {
                pthread_once(&known_once, known_init);
                imp_error(im, im->rec_line,
                          "column '%s' does not name a channel (expected %s, ...)",
                          imp_show(im, n), consent_expected);
                cc->kind = K_IGNORE;
                continue;
            }
            cc->kind = K_CONSENT;
            cc->key = ch;
            /* The registry's consent names, to catch "consent_emial". */
            sugg = imp_misspelt(ch, channel_consent_names());
            if (sugg && strcmp(sugg, ch) != 0)
                imp_warning(im, im->rec_line,
                            "column '%s' records consent for a channel called '%s' (did you "
                            "mean 'consent_%s'?)",
                            n, ch, sugg);
            continue;
        }
        {
            const char *sugg = column_hint(n);
            cc->key = n;
            c->has_attrs = true;
            if (sugg)
                imp_warning(im, im->rec_line,
                            "column '%s' is not a known column and will be stored as a custom "
                            "attribute (did you mean '%s'?)",
                            imp_show(im, n), sugg);
        }
    }
    if (id_col < 0) {
        static const char *const aliases[] = {"customer_id", "customerid",  "customer id",
                                              "ext_id",      "external_id", "user_id",
                                              "uid",         "cid",         NULL};
        const char *alias = NULL;
        for (size_t i = 0; i < nf && !alias; i++)
            for (int a = 0; aliases[a]; a++)
                if (strcmp(c->names[i], aliases[a]) == 0)
                    alias = c->names[i];
        if (alias)
            imp_error(im, im->rec_line,
                      "no 'id' column (rename column '%s' to 'id': it must hold your own "
                      "customer id)",
                      imp_show(im, alias));
        else
            imp_error(im, im->rec_line,
                      "no 'id' column (the first row must name the columns and one must be "
                      "'id', your own customer id, e.g. id,name,email)");
        im->ncols = 0; /* rows cannot be checked without it */
    }
}

/* Values of one customer row, after checking. */
struct crow {
    const char *id;
    const char *text[N_TEXT]; /* NULL = empty cell */
    const char *created_at;   /* NULL = keep / default */
    char **tags;              /* sorted, unique; valid when has_tags */
    size_t ntags;
    int *consent; /* per column: -1 leave, 0, 1 */
};

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Splits "vip; wholesale;;vip" into sorted unique {"vip", "wholesale"}, in place. */
static void
split_tags(char *s, struct crow *r)
{
    size_t n = 0, cap = 0;
    char **v = NULL;
    for (char *p = s; p;) {
        char *semi = strchr(p, ';'), *t;
        if (semi)
            *semi = '\0';
        t = trim(p);
        if (t[0]) {
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                v = xrealloc(v, cap * sizeof(char *));
            }
            v[n++] = t;
        }
        p = semi ? semi + 1 : NULL;
    }
    if (n > 1) {
        size_t o = 1;
        qsort(v, n, sizeof(char *), cmp_str);
        for (size_t i = 1; i < n; i++)
            if (strcmp(v[i], v[o - 1]) != 0)
                v[o++] = v[i];
        n = o;
    }
    free(r->tags); /* a second tags column (already an error) */
    r->tags = v;
    r->ntags = n;
}

/* Builds the attrs JSON text from the stored text and this row's cells.
 * Returns a malloc'd string; keys sorted so equal objects are equal text. */
static char *
merge_attrs(struct imp *im, struct cust *c, const char *old, char **fv, size_t nf)
{
    json_error_t jerr;
    json_t *o = old ? json_loads(old, 0, &jerr) : NULL;
    char *out;
    if (!o || !json_is_object(o)) {
        if (o || (old && old[0]))
            log_warn("import", "%s: stored attrs are not a JSON object; replacing them", im->name);
        json_decref(o);
        o = json_object();
    }
    for (size_t i = 0; i < nf; i++) {
        if (c->cols[i].kind != K_ATTR)
            continue;
        if (fv[i][0])
            json_object_set_new(o, c->cols[i].key, attr_value(fv[i]));
        else
            json_object_del(o, c->cols[i].key);
    }
    out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    json_decref(o);
    if (!out)
        out = xstrdup("{}");
    return out;
}

/* Validates one row into r; false if anything was wrong (all reported). */
static bool
cust_check(struct imp *im, struct cust *c, char **fv, size_t nf, struct crow *r)
{
    bool ok = true;
    long line = im->rec_line;
    const char *bad_id_col = NULL;
    for (size_t i = 0; i < nf; i++) {
        struct ccol *cc = &c->cols[i];
        char *v = trim(fv[i]);
        fv[i] = v;
        switch (cc->kind) {
        case K_IGNORE:
        case K_ATTR:
            break;
        case K_ID: {
            long first;
            bad_id_col = v;
            if (!v[0]) {
                imp_error(im, line,
                          "missing id (every customer needs your own id in the 'id' "
                          "column)");
                ok = false;
                break;
            }
            r->id = v;
            /* A row seen good was written or looked up (cust_write finds
             * the repeat there); only earlier bad rows are remembered here. */
            first = imp_idset_get(&im->bad_ids, v);
            if (first) {
                imp_error(im, line,
                          "id %s already on line %ld (each customer may appear once per file; "
                          "merge the two rows)",
                          imp_show(im, v), first);
                ok = false;
            }
            break;
        }
        case K_TEXT:
            if (!v[0]) {
                r->text[cc->text] = NULL;
                break;
            }
            r->text[cc->text] = v;
            if (cc->text == T_EMAIL) {
                /* email_normalize changes nothing when it fails. */
                if (email_normalize(v) < 0) {
                    imp_error(im, line, "malformed email '%s' (expected name@example.com)",
                              imp_show(im, v));
                    ok = false;
                }
            } else if (cc->text == T_PHONE) {
                int e = phone_normalize(v);
                const char *orig = e < 0 ? imp_show(im, v) : NULL;
                if (e == -EILSEQ) {
                    imp_error(im, line,
                              "phone '%s' contains letters (write digits only, with a leading + "
                              "and the country code for international numbers)",
                              orig);
                    ok = false;
                } else if (e == -EINVAL) {
                    imp_error(im, line,
                              "phone '%s' contains characters that are not part of a number "
                              "(use digits, spaces, dashes, parentheses and a leading +)",
                              orig);
                    ok = false;
                } else if (e < 0) {
                    imp_error(im, line, "phone '%s' is too short (expected at least 3 digits)",
                              orig);
                    ok = false;
                }
            } else if (cc->text == T_BIRTHDAY) {
                int e = birthday_check(v);
                if (e == -ERANGE) {
                    char why[64];
                    date_why(v, why, sizeof(why));
                    imp_error(im, line, "birthday '%s' is not a real date (%s)", imp_show(im, v),
                              why);
                    ok = false;
                } else if (e < 0) {
                    imp_error(im, line,
                              "birthday '%s' is not a date (expected YYYY-MM-DD, or --MM-DD "
                              "when the year is unknown)",
                              imp_show(im, v));
                    ok = false;
                }
            } else if (cc->text == T_TZ) {
                if (!cal_zone_valid(v)) {
                    imp_error(im, line,
                              "unknown time zone '%s' (expected an IANA name such as "
                              "Asia/Shanghai)",
                              imp_show(im, v));
                    ok = false;
                }
            }
            break;
        case K_TAGS:
            split_tags(v, r);
            break;
        case K_CREATED_AT: {
            ntime_t t;
            if (!v[0])
                break;
            if (time_parse_iso(v, &t) < 0) {
                imp_error(im, line,
                          "created_at '%s' is not a date or time (expected YYYY-MM-DD or RFC "
                          "3339 such as 2027-02-03T10:00:00+08:00)",
                          imp_show(im, v));
                ok = false;
            } else {
                r->created_at = v;
            }
            break;
        }
        case K_CONSENT: {
            int g;
            if (!v[0])
                break;
            g = parse_yesno(v);
            if (g < 0) {
                imp_error(im, line,
                          "%s '%s' is not yes or no (use yes/no, true/false, 1/0 or y/n; leave "
                          "it empty to keep the current consent)",
                          c->names[i], imp_show(im, v));
                ok = false;
            } else {
                r->consent[i] = g;
            }
            break;
        }
        }
    }
    if (!ok && bad_id_col && bad_id_col[0])
        imp_idset_put(&im->bad_ids, bad_id_col, line);
    return ok;
}

/* Tags stored for customer id differ from r's? */
static int
tags_differ(struct imp *im, struct cust *c, int64_t id, const struct crow *r)
{
    int d = store_import_customer_tags_differ(c->sc, id, r->tags, r->ntags);
    if (d < 0)
        imp_db_error(im, "reading tags");
    return d;
}

static bool
write_tags(struct imp *im, struct cust *c, int64_t id, const struct crow *r, bool fresh)
{
    /* A customer inserted just now has no tags to delete. */
    if (!fresh && store_import_customer_tags_clear(c->sc, id) < 0) {
        imp_db_error(im, "replacing tags");
        return false;
    }
    for (size_t i = 0; i < r->ntags; i++) {
        if (store_import_customer_tag_add(c->sc, id, r->tags[i]) < 0) {
            imp_db_error(im, "adding a tag");
            return false;
        }
    }
    return true;
}

/*
 * Does consent column i differ from what is stored (or is nothing stored)?
 * 1 yes, 0 no, CONSENT_WITHDRAWN when the file would grant a consent that
 * was withdrawn by some other way than an import (an unsubscribe link, the
 * admin): a spreadsheet exported before the customer opted out must not opt
 * them back in, so that case is left alone with a warning.
 */
#define CONSENT_WITHDRAWN 2

static int
consent_differs(struct imp *im, struct cust *c, int64_t id, size_t i, int granted)
{
    int stored, differ = 1;
    const char *source;
    int e = store_import_consent_get(c->sc, id, c->cols[i].key, &stored, &source);
    if (e == 0) {
        differ = stored != granted;
        if (differ && granted && (!source || strncmp(source, "import", 6) != 0))
            differ = CONSENT_WITHDRAWN;
    } else if (e != -ENOENT) {
        imp_db_error(im, "reading consents");
        return -EIO;
    }
    return differ;
}

static bool
write_consent(struct imp *im, struct cust *c, int64_t id, size_t i, int granted)
{
    if (store_import_consent_set(c->sc, id, c->cols[i].key, granted, im->now_iso, c->source) < 0) {
        imp_db_error(im, "recording a consent");
        return false;
    }
    return true;
}

static void
dup_customer(struct imp *im, const char *id, long first)
{
    imp_error(im, im->rec_line,
              "id %s already on line %ld (each customer may appear once per file; merge the "
              "two rows)",
              imp_show(im, id), first);
}

/* Upserts a checked row. */
static void
cust_write(struct imp *im, struct cust *c, char **fv, size_t nf, struct crow *r)
{
    struct store_import_customer old, upd = {0};
    int64_t id;
    int e;
    bool row_changed = false, other_changed = false;
    char *attrs = NULL;

    if (c->empty_start) {
        /* Nothing was stored before this file: every id is new unless the
         * file repeats it, which the insert's unique key tells. */
        e = -ENOENT;
    } else {
        e = store_import_customer_find(c->sc, r->id, &old);
        if (e < 0 && e != -ENOENT) {
            imp_db_error(im, "looking up a customer");
            return;
        }
    }

    if (e == -ENOENT) {
        /* A new customer. */
        struct store_import_customer add = {0};
        attrs = c->has_attrs ? merge_attrs(im, c, NULL, fv, nf) : xstrdup("{}");
        add.ext_id = r->id;
        for (int t = 0; t < N_TEXT; t++)
            add.field[t] = r->text[t];
        add.created_at = r->created_at ? r->created_at : im->now_iso;
        add.updated_at = im->now_iso;
        add.attrs = attrs;
        e = store_import_customer_add(c->sc, &add, &id);
        if (e == -EEXIST && c->empty_start) {
            /* The file names this id twice: find the first. */
            if (store_import_customer_find(c->sc, r->id, &old) < 0) {
                imp_db_error(im, "looking up a customer");
                goto out;
            }
            dup_customer(im, r->id, imp_rowid_line(im, old.id));
            goto out;
        }
        if (e < 0) {
            imp_db_error(im, "adding a customer");
            goto out;
        }
        imp_rowid_line_set(im, id, im->rec_line);
        if (!r->text[T_TZ])
            c->no_tz++;
        if (c->has_tags && !write_tags(im, c, id, r, true))
            goto out;
        for (size_t i = 0; i < nf; i++)
            if (c->cols[i].kind == K_CONSENT && r->consent[i] >= 0 &&
                !write_consent(im, c, id, i, r->consent[i]))
                goto out;
        im->stats.inserted++;
        goto out;
    }

    /* An existing customer: compare everything, write only what changed.
     * A column absent from the file keeps the stored value. The store
     * keeps old's strings until its next lookup. */
    id = old.id;
    if (imp_rowid_line(im, id)) {
        dup_customer(im, r->id, imp_rowid_line(im, id));
        return;
    }
    imp_rowid_line_set(im, id, im->rec_line);
    if (!(c->present[T_TZ] ? r->text[T_TZ] : old.field[T_TZ]))
        c->no_tz++;
    for (int t = 0; t < N_TEXT; t++)
        if (c->present[t] && !streq_null(r->text[t], old.field[t]))
            row_changed = true;
    if (r->created_at && !streq_null(r->created_at, old.created_at))
        row_changed = true;
    if (c->has_attrs) {
        attrs = merge_attrs(im, c, old.attrs, fv, nf);
        if (!streq_null(attrs, old.attrs))
            row_changed = true;
    }
    if (row_changed) {
        upd.id = id;
        for (int t = 0; t < N_TEXT; t++)
            upd.field[t] = c->present[t] ? r->text[t] : old.field[t];
        upd.created_at = r->created_at ? r->created_at : old.created_at;
        upd.updated_at = im->now_iso;
        upd.attrs = attrs ? attrs : old.attrs;
    }

    if (c->has_tags) {
        int d = tags_differ(im, c, id, r);
        if (d < 0 || (d && !write_tags(im, c, id, r, false)))
            goto out;
        other_changed |= d;
    }
    for (size_t i = 0; i < nf; i++) {
        int d;
        if (c->cols[i].kind != K_CONSENT || r->consent[i] < 0)
            continue;
        d = consent_differs(im, c, id, i, r->consent[i]);
        if (d == CONSENT_WITHDRAWN) {
            imp_warning(im, im->rec_line,
                        "customer %s withdrew %s consent outside an import; the file's '%s' is "
                        "ignored (the customer must opt in again)",
                        imp_show(im, r->id), c->cols[i].key, imp_show(im, fv[i]));
            continue;
        }
        if (d < 0 || (d && !write_consent(im, c, id, i, r->consent[i])))
            goto out;
        other_changed |= d;
    }
    if (row_changed) {
        if (store_import_customer_update(c->sc, &upd) == 0)
            im->stats.updated++;
        else
            imp_db_error(im, "updating a customer");
    } else if (other_changed) {
        /* Only tags or consents changed: the customer did change, so its
         * updated_at moves, but its fields stay as stored. */
        if (store_import_customer_touch(c->sc, id, im->now_iso) == 0)
            im->stats.updated++;
        else
            imp_db_error(im, "updating a customer");
    } else {
        im->stats.unchanged++;
    }
out:
    free(attrs);
}

static void
cust_row(struct imp *im, char **fv, size_t nf)
{
    struct cust *c = im->kind;
    struct crow r;
    int stackc[64];
    bool ok;
    if (im->ncols == 0)
        return; /* the header was unusable; it has been reported */
    im->stats.rows++;
    if (nf != im->ncols) {
        imp_error(im, im->rec_line,
                  "row has %zu fields but the header has %zu (put values that contain commas "
                  "in double quotes)",
                  nf, im->ncols);
        imp_progress_tick(im);
        return;
    }
    if (!imp_fields_clean(im, fv, nf, c->names)) {
        imp_progress_tick(im);
        return;
    }
    memset(&r, 0, sizeof(r));
    r.consent = nf <= 64 ? stackc : xmalloc(nf * sizeof(int));
    for (size_t i = 0; i < nf; i++)
        r.consent[i] = -1;
    ok = cust_check(im, c, fv, nf, &r);
    /* Good rows are written even after a bad one (all of it is rolled back
     * at the end): the table is what tells a repeated id. */
    if (ok && !im->dberr)
        cust_write(im, c, fv, nf, &r);
    free(r.tags);
    if (r.consent != stackc)
        free(r.consent);
    imp_progress_tick(im);
}

int
imp_customers_finish(struct imp *im)
{
    struct cust *c = im->kind;
    if (c->idx && store_import_indexes_restore(im->st, c->idx) < 0) {
        imp_db_error(im, "building the customer indexes");
        return -EIO;
    }
    if (im->ncols == 0)
        return 0;
    /* Every attribute column of the file is a key audiences may use, even if
     * all its cells are empty this time. */
    for (size_t i = 0; i < im->ncols; i++) {
        if (c->cols[i].kind != K_ATTR)
            continue;
        if (store_import_attribute_key(c->sc, c->cols[i].key) < 0) {
            imp_db_error(im, "recording attribute names");
            return -EIO;
        }
    }
    /* A customer without a zone gets messages at the default zone's hours:
     * right for most, 3 a.m. for someone abroad, so the count is said. */
    if (c->no_tz > 0 && im->default_tz)
        imp_warning(im, 0,
                    "%ld customer%s no tz; %s %s (add a tz column with an IANA zone such as "
                    "Europe/Berlin for customers elsewhere)",
                    c->no_tz, c->no_tz == 1 ? " has" : "s have",
                    c->no_tz == 1 ? "it uses" : "they use", im->default_tz);
    return 0;
}

void
imp_customers_start(struct imp *im)
{
    struct cust *c = xcalloc(1, sizeof(*c));
    int n;
    im->kind = c;
    im->header = cust_header;
    im->row = cust_row;
    c->source = xasprintf("import:%s", im->name);
    if (store_import_customers_open(im->st, &c->sc) < 0) {
        imp_db_error(im, "preparing a statement");
        return;
    }
    if (!imp_begin(im))
        return;
    /* Into an empty table, a file loads like sqlite3 .import: rows first,
     * then each secondary index built once, sorted, in the same
     * transaction (a rollback brings the old ones back). Inserting into
     * three random-order indexes row by row was most of the time. */
    n = store_import_is_empty(im->st, "customers");
    if (n < 0) {
        imp_db_error(im, "counting customers");
        return;
    }
    c->empty_start = n == 1;
    if (c->empty_start && store_import_indexes_drop(im->st, "customers", &c->idx) < 0)
        imp_db_error(im, "dropping the customer indexes for a bulk load");
}

void
imp_customers_free(struct imp *im)
{
    struct cust *c = im->kind;
    store_import_customers_close(c->sc);
    store_import_indexes_free(c->idx);
    for (size_t i = 0; c->names && i < c->ncols; i++)
        free(c->names[i]);
    free(c->cols);
    free(c->names);
    free(c->source);
    free(c);
}
