/*
 * fuzz_rules.c: any bytes as a rule file, loaded with the shipped calendars
 * and a template beside it. A failed load must explain itself; a successful
 * one must yield exactly one rule.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include "calendar.h"
#include "rules.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static char dir[64];
static struct holiday_set *hs;

static void
setup(void)
{
    struct nerr err;
    const char *src = getenv("NUDGE_SRC");
    char *caldir;
    snprintf(dir, sizeof(dir), "/tmp/nudge-fuzz-rules-%ld", (long)getpid());
    mkdir_p(dir, 0700);
    caldir = xasprintf("%s/calendars", src ? src : ".");
    if (holiday_set_load_dir(caldir, &hs, &err) < 0)
        hs = NULL; /* holiday triggers then fail with a message, which is fine */
    free(caldir);
    /* The shipped templates, so the seed rules load and mutations go deep. */
    char *rdir = xasprintf("%s/rules", src ? src : ".");
    DIR *d = opendir(rdir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        char *from, *to, *text;
        size_t len;
        if (de->d_name[0] == '.' || (l > 5 && !strcmp(de->d_name + l - 5, ".yaml")))
            continue;
        from = xasprintf("%s/%s", rdir, de->d_name);
        to = xasprintf("%s/%s", dir, de->d_name);
        if (read_file(from, &text, &len) == 0) {
            write_file_atomic(to, text, len);
            free(text);
        }
        free(from);
        free(to);
    }
    if (d)
        closedir(d);
    free(rdir);
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct rules_env env;
    struct ruleset *rs = NULL;
    char *errors = NULL, *path;
    if (!dir[0])
        setup();
    env.holidays = hs;
    env.known_attrs = NULL;
    path = xasprintf("%s/r.yaml", dir);
    write_file_atomic(path, (const char *)data, size);
    if (ruleset_load(dir, &env, &rs, &errors) == 0) {
        if (rs->n != 1)
            abort();
        ruleset_unref(rs);
    } else if (!errors || !strstr(errors, "error")) {
        abort();
    }
    free(errors);
    free(path);
    return 0;
}
