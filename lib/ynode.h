/*
 * ynode.h: YAML documents as a small tree that remembers where every node
 * came from, so that config and rule errors can say file:line:col, show the
 * line with a caret and name what was expected.
 *
 * Only the YAML that configuration needs is accepted: mappings, sequences and
 * scalars. Aliases, tags other than the standard ones, and duplicate keys are
 * errors (a duplicate key in a hand-edited file is almost always a mistake
 * that would otherwise silently override the first value).
 */
#ifndef NUDGE_YNODE_H
#define NUDGE_YNODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum ynode_type { YN_SCALAR, YN_MAP, YN_SEQ };

struct ynode {
    enum ynode_type type;
    int line, col;     /* 1-based position of the node's first character */
    char *value;       /* scalars: the text */
    bool plain;        /* scalars: written without quotes (so `no` may mean false) */
    size_t n;          /* maps: number of pairs; sequences: number of items */
    struct ynode **keys;   /* maps: key scalars */
    struct ynode **items;  /* maps: values; sequences: items */
};

struct ydoc {
    char *file;         /* the name used in messages */
    char *text;         /* the whole source, for caret lines */
    size_t len;
    struct ynode *root; /* NULL for an empty document */
};

int ydoc_parse(const char *file, const char *text, size_t len, struct ydoc **out, struct nerr *err);
int ydoc_load_file(const char *path, struct ydoc **out, struct nerr *err);
void ydoc_free(struct ydoc *d);

/* Records an error at node n (with its source line); returns -EINVAL. */
int yerr(const struct ydoc *d, const struct ynode *n, struct nerr *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The value for key in map n, or NULL (also when n is not a map). */
struct ynode *ymap_get(const struct ynode *n, const char *key);
/* The key node for key (for error positions), or NULL. */
struct ynode *ymap_key(const struct ynode *n, const char *key);
/* Every key of map n must be in allowed (NULL-terminated); else an error with a
 * "did you mean" and the list of allowed keys. what names the map ("rule", "trigger"). */
int ymap_check_keys(const struct ydoc *d, const struct ynode *n, const char *what,
                    const char *const *allowed, struct nerr *err);
int yexpect_map(const struct ydoc *d, const struct ynode *n, const char *what, struct nerr *err);

/* Typed getters; each reports a located error naming the expected form. */
int yget_str(const struct ydoc *d, const struct ynode *n, const char *what, const char **out,
             struct nerr *err);
int yget_int(const struct ydoc *d, const struct ynode *n, const char *what, int64_t lo, int64_t hi,
             int64_t *out, struct nerr *err);
int yget_bool(const struct ydoc *d, const struct ynode *n, const char *what, bool *out,
              struct nerr *err);
/* "30s", "5m", "24h", "3d", "1w" or a bare number of seconds. */
int yget_duration(const struct ydoc *d, const struct ynode *n, const char *what, int64_t *secs,
                  struct nerr *err);
/* "HH:MM" (24-hour). */
int yget_hhmm(const struct ydoc *d, const struct ynode *n, const char *what, int *hh, int *mm,
              struct nerr *err);
/* Parses a duration string; shared with the command line. */
int parse_duration(const char *s, int64_t *secs);

/* Converts a subtree to JSON (plain scalars that look like integers, reals or
 * true/false become numbers and booleans). */
json_t *ynode_to_json(const struct ynode *n);

/* "a mapping", "a list", "a string", ... for messages about a JSON setting. */
const char *json_kind(const json_t *v);
/* An integer setting in [lo, hi], as a JSON number or, quoted in YAML, as a
 * digit string. -EINVAL (not an integer) or -ERANGE. */
int json_get_int(const json_t *v, int lo, int hi, int *out);

#endif
