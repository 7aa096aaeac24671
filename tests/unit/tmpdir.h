/*
 * tmpdir.h: temporary directories for the unit test programs (each test_*.c
 * is its own program, so these are static).
 */
#ifndef NUDGE_TEST_TMPDIR_H
#define NUDGE_TEST_TMPDIR_H

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

#endif
