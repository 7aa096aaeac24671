/*
 * check.h: the offline validation of rule files that `nudged --check` and
 * `nudgectl check` share, so both give the same verdict and the same
 * messages on the same files.
 */
#ifndef NUDGE_CHECK_H
#define NUDGE_CHECK_H

#include "rules.h"

/*
 * Loads the calendars and the rules of rules_dir. Custom attribute names
 * come from `database` when it is given and exists, opened read-only (never
 * created, migrated or written; any schema version); a name no import has
 * brought yet is a warning, not an error. Errors and warnings go to stderr
 * ("file:line:col: ..."), unless `messages` is given: then they are
 * returned there (malloc'd, or NULL). Returns 0 with *out set, or -EINVAL.
 */
int check_rules(const char *rules_dir, const char *calendars_dir, const char *database,
                struct ruleset **out, char **messages);

#endif
