/*
 * unit.h: helpers shared by the unit test programs: temporary directories
 * and files, times, and the lines and columns of test text. Each test_*.c
 * is its own program, so these are static inline; include this after
 * <cmocka.h>.
 */
#ifndef NUDGE_TEST_UNIT_H
#define NUDGE_TEST_UNIT_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

/* Removes dir and everything below it (a test's temporary directory). */
static inline void
rmrf(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d)
        return;
    while ((de = readdir(d))) {
        char *p;
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        p = xasprintf("%s/%s", dir, de->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rmrf(p);
        else
            unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Makes the temporary directory /tmp/nudge-test-NAME-XXXXXX in dir (64
 * bytes) and opens a store in it, dir/nudge.db. Returns 0, or -1 after
 * saying why. */
static inline int
tmp_store(char dir[64], const char *name, struct store **st)
{
    struct nerr err;
    char *db;
    snprintf(dir, 64, "/tmp/nudge-test-%s-XXXXXX", name);
    if (!mkdtemp(dir))
        return -1;
    db = xasprintf("%s/nudge.db", dir);
    nerr_clear(&err);
    if (store_open(db, st, &err) < 0) {
        fprintf(stderr, "store_open: %s\n", err.msg);
        free(db);
        rmrf(dir);
        return -1;
    }
    free(db);
    return 0;
}

/* Writes text to dir/name; returns the path (the caller frees it). */
static inline char *
put(const char *dir, const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    return path;
}

/* An ISO 8601 instant written in a test. */
static inline ntime_t
iso(const char *s)
{
    ntime_t t = 0;
    if (time_parse_iso(s, &t) < 0)
        fail_msg("bad time in test: %s", s);
    return t;
}

/* Line `line` (1-based) of text, in a static buffer. */
static inline const char *
line_of(const char *text, int line)
{
    static char buf[512];
    const char *p = text, *e;
    for (int i = 1; i < line && p; i++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (!p)
        fail_msg("no line %d in test text", line);
    e = strchr(p, '\n');
    snprintf(buf, sizeof(buf), "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
    return buf;
}

/* 1-based column, in characters, of the first `needle` on line `line`. */
static inline int
col_of(const char *text, int line, const char *needle)
{
    const char *l = line_of(text, line), *hit = strstr(l, needle);
    int col = 1;
    if (!hit)
        fail_msg("'%s' not on line %d of test text", needle, line);
    for (const char *p = l; p < hit; p++)
        if (((unsigned char)*p & 0xC0) != 0x80)
            col++;
    return col;
}

#endif
