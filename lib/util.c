/*
 * util.c: located errors, string buffers, checked parsing, file helpers and
 * civil-date arithmetic shared by every module.
 */
#include "util.h"

#include <unicode/uchar.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void
nerr_clear(struct nerr *e)
{
    memset(e, 0, sizeof(*e));
}

int
nerr_set(struct nerr *e, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    if (!e)
        return -EINVAL;
    nerr_clear(e);
    snprintf(e->file, sizeof(e->file), "%s", file ? file : "");
    e->line = line;
    e->col = col;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return -EINVAL;
}

void
nerr_hint(struct nerr *e, const char *fmt, ...)
{
    va_list ap;
    if (!e)
        return;
    va_start(ap, fmt);
    vsnprintf(e->hint, sizeof(e->hint), fmt, ap);
    va_end(ap);
}

void
nerr_source(struct nerr *e, const char *text, size_t len)
{
    int line = 1;
    size_t i = 0, start, end;
    if (!e || !text || e->line <= 0)
        return;
    while (i < len && line < e->line) {
        if (text[i] == '\n')
            line++;
        i++;
    }
    if (line != e->line)
        return;
    start = i;
    end = start;
    while (end < len && text[end] != '\n' && text[end] != '\r')
        end++;
    snprintf(e->src_line, sizeof(e->src_line), "%.*s", (int)(end - start), text + start);
}

void
nerr_format(const struct nerr *e, char *buf, size_t size)
{
    struct sbuf b;
    sbuf_init(&b);
    if (e->file[0])
        sbuf_adds(&b, e->file);
    if (e->line > 0) {
        sbuf_printf(&b, "%s%d", e->file[0] ? ":" : "line ", e->line);
        if (e->col > 0)
            sbuf_printf(&b, ":%d", e->col);
    }
    if (b.len)
        sbuf_adds(&b, ": ");
    sbuf_printf(&b, "error: %s\n", e->msg);
    if (e->src_line[0]) {
        int col = e->col > 0 ? e->col : 1;
        sbuf_printf(&b, "    %s\n    ", e->src_line);
        /* Columns count characters; on screen a wide (CJK) character takes
         * two cells and a tab stays a tab, so the caret lines up. */
        int chars = 0;
        const char *p = e->src_line;
        while (*p && chars < col - 1) {
            int len = 1;
            int cells = utf8_char_cells(p, &len);
            if (*p == '\t')
                sbuf_addc(&b, '\t');
            else
                sbuf_add(&b, "  ", (size_t)cells);
            p += len;
            chars++;
        }
        sbuf_adds(&b, "^\n");
    }
    if (e->hint[0])
        sbuf_printf(&b, "    %s\n", e->hint);
    snprintf(buf, size, "%s", b.s ? b.s : "");
    sbuf_free(&b);
}

void
sbuf_init(struct sbuf *b)
{
    b->s = NULL;
    b->len = 0;
    b->cap = 0;
}

void
sbuf_free(struct sbuf *b)
{
    free(b->s);
    sbuf_init(b);
}

static void
sbuf_grow(struct sbuf *b, size_t need)
{
    size_t cap;
    if (b->len + need + 1 <= b->cap)
        return;
    cap = b->cap ? b->cap : 64;
    while (cap < b->len + need + 1)
        cap *= 2;
    b->s = xrealloc(b->s, cap);
    b->cap = cap;
}

void
sbuf_reserve(struct sbuf *b, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->s = xrealloc(b->s, b->len + n + 1);
        b->cap = b->len + n + 1;
    }
}

void
sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    sbuf_grow(b, n);
    if (n)
        memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void
sbuf_adds(struct sbuf *b, const char *s)
{
    sbuf_add(b, s, strlen(s));
}

void
sbuf_addc(struct sbuf *b, char c)
{
    sbuf_add(b, &c, 1);
}

void
sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    int n;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    sbuf_grow(b, (size_t)n);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

char *
sbuf_steal(struct sbuf *b)
{
    char *s = b->s ? b->s : xstrdup("");
    sbuf_init(b);
    return s;
}

static void
oom(void)
{
    fputs("<2>nudge: out of memory\n", stderr);
    abort();
}

void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *
xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p)
        oom();
    return p;
}

void *
xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        oom();
    return p;
}

char *
xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *
xasprintf(const char *fmt, ...)
{
    va_list ap;
    int n;
    char *p;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return xstrdup("");
    p = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void
strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

int
parse_i64(const char *s, int64_t *out)
{
    char *end;
    long long v;
    if (!s || !*s)
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return -ERANGE;
    if (*end || end == s)
        return -EINVAL;
    *out = v;
    return 0;
}

int
parse_int_range(const char *s, int lo, int hi, int *out)
{
    int64_t v;
    int r = parse_i64(s, &v);
    if (r < 0)
        return r;
    if (v < lo || v > hi)
        return -ERANGE;
    *out = (int)v;
    return 0;
}

int
read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct sbuf b;
    char chunk[65536];
    size_t n;
    int r = 0;
    if (!f)
        return -errno;
    sbuf_init(&b);
    sbuf_add(&b, "", 0);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        sbuf_add(&b, chunk, n);
    if (ferror(f))
        r = -EIO;
    fclose(f);
    if (r < 0) {
        sbuf_free(&b);
        return r;
    }
    if (len)
        *len = b.len;
    *out = sbuf_steal(&b);
    return 0;
}

int
write_file_atomic(const char *path, const char *data, size_t len)
{
    char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
    int fd, r = 0;
    size_t off = 0;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600); /* private: customer data */
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            close(fd);
            unlink(tmp);
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
out:
    free(tmp);
    return r;
}

int
mkdir_p(const char *path, unsigned mode)
{
    char *p = xstrdup(path);
    int r = 0;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST) {
            r = -errno;
            goto out;
        }
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        r = -errno;
out:
    free(p);
    return r;
}

int
mkdir_p_check(const char *path)
{
    char *p = xstrdup(path);
    struct stat sb;
    int r;
    for (;;) {
        char *slash;
        if (stat(p, &sb) == 0) {
            r = !S_ISDIR(sb.st_mode) ? -ENOTDIR : access(p, W_OK | X_OK) < 0 ? -errno : 0;
            break;
        }
        if (errno != ENOENT) {
            r = -errno; /* ENOTDIR: a file where a directory would have to be */
            break;
        }
        /* Missing: mkdir_p would create it in its parent. */
        if (!(slash = strrchr(p, '/'))) {
            r = access(".", W_OK | X_OK) < 0 ? -errno : 0;
            break;
        }
        if (slash == p)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    free(p);
    return r;
}

int
edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int *prev, *cur, d;
    if (la > 64 || lb > 64)
        return 99;
    prev = xcalloc(lb + 1, sizeof(int));
    cur = xcalloc(lb + 1, sizeof(int));
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c)
                c = prev[j] + 1;
            if (cur[j - 1] + 1 < c)
                c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(int));
    }
    d = prev[lb];
    free(prev);
    free(cur);
    return d;
}

const char *
did_you_mean(const char *word, const char *const *candidates)
{
    const char *best = NULL;
    int bestd = 3;
    for (; candidates && *candidates; candidates++) {
        int d = edit_distance(word, *candidates);
        if (d < bestd) {
            bestd = d;
            best = *candidates;
        }
    }
    return best;
}

bool
utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

bool
is_leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int
days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12)
        return 0;
    return m == 2 && is_leap_year(y) ? 29 : dm[m - 1];
}

/* Howard Hinnant's algorithms, valid over the whole proleptic Gregorian range. */
int64_t
days_from_civil(int y, int m, int d)
{
    int64_t yy = y - (m <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void
civil_from_days(int64_t z, int *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp, yy;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    yy = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yy + (*m <= 2));
}

static int
digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int
date_parse(const char *s, int *y, int *m, int *d)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return -EINVAL;
    if (digits(s, 4, y) || digits(s + 5, 2, m) || digits(s + 8, 2, d))
        return -EINVAL;
    if (*y < 1 || *m < 1 || *m > 12 || *d < 1 || *d > days_in_month(*y, *m))
        return -ERANGE;
    return 0;
}

int
time_parse_iso(const char *s, ntime_t *out)
{
    int y, mo, d, hh = 0, mi = 0, ss = 0, off = 0;
    size_t n = strlen(s);
    const char *p;
    char date[11];
    if (n < 10)
        return -EINVAL;
    memcpy(date, s, 10);
    date[10] = '\0';
    if (date_parse(date, &y, &mo, &d) < 0)
        return -EINVAL;
    p = s + 10;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (strlen(p) < 5 || digits(p, 2, &hh) || p[2] != ':' || digits(p + 3, 2, &mi))
            return -EINVAL;
        p += 5;
        if (*p == ':') {
            if (digits(p + 1, 2, &ss))
                return -EINVAL;
            p += 3;
        }
        if (hh > 23 || mi > 59 || ss > 60)
            return -EINVAL;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, sign = *p == '-' ? -1 : 1;
        if (strlen(p) < 6 || digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om))
            return -EINVAL;
        off = sign * (oh * 3600 + om * 60);
        p += 6;
    }
    if (*p)
        return -EINVAL;
    *out = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - off;
    return 0;
}

void
time_format_iso(ntime_t t, char *buf, size_t size)
{
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t secs = t - days * 86400;
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, (int)(secs / 3600),
             (int)(secs / 60 % 60), (int)(secs % 60));
}

int
utf8_char_cells(const char *s, int *len)
{
    const unsigned char *u = (const unsigned char *)s;
    UChar32 cp;
    int n, w;
    if (u[0] < 0x80) {
        *len = 1;
        return u[0] < 0x20 ? 0 : 1;
    }
    n = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC0 ? 2 : 1;
    cp = u[0] & (n == 4 ? 0x07 : n == 3 ? 0x0F : 0x1F);
    for (int i = 1; i < n; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *len = i;
            return 1;
        }
        cp = (cp << 6) | (u[i] & 0x3F);
    }
    *len = n;
    w = u_getIntPropertyValue(cp, UCHAR_EAST_ASIAN_WIDTH);
    return w == U_EA_WIDE || w == U_EA_FULLWIDTH ? 2 : 1;
}
