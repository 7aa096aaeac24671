/*
 * nudgectl.c: the command-line client. Most commands are one JSON request
 * over the admin socket; `check` and `render` work offline, without a
 * daemon. Human-readable output by default, one JSON document with --json.
 *
 * Exit status: 0 success, 1 the command failed (or check found errors),
 * 2 usage error, 3 the daemon could not be reached.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "calendar.h"
#include "check.h"
#include "config.h"
#include "daemon.h"
#include "log.h"
#include "rules.h"
#include "store.h"
#include "template.h"

static const char usage[] =
    "Usage: nudgectl [-s SOCKET] [-c CONFIG] [--json] COMMAND [ARGS]\n"
    "\n"
    "Commands (talk to a running nudged):\n"
    "  status                          uptime, clock, rule set, queue depths, last tick\n"
    "  reload                          load the rules again; on error the old set keeps running\n"
    "  rules                           loaded rules with their next fire time\n"
    "  advance --to TIME               frozen clock: fire and deliver everything due up to TIME\n"
    "  queue [--state S] [--limit N]   deliveries (states: pending sending retry sent dead\n"
    "                                  suppressed skipped)\n"
    "  retry ID | retry --dead         send a dead delivery again (or every dead one)\n"
    "  import customers|orders FILE    upsert from CSV; nothing is imported if any row is bad\n"
    "  preview RULE [--at TIME] [--limit N]   who gets what at the rule's next fire\n"
    "  forecast --from TIME --to TIME [--rule R] [--limit N]   every fire in a window\n"
    "  tasks [--owner NAME] [--overdue] [--all]   callback tasks for staff\n"
    "  task done ID [--outcome TEXT]   close a task; the outcome goes on the customer's timeline\n"
    "\n"
    "Offline commands:\n"
    "  check DIR                       validate rule files; exit 1 on any error\n"
    "  render TEMPLATE --data FILE.json [--partials DIR] [--text]\n"
    "                                  render one Mustache template to standard output\n"
    "\n"
    "Options:\n"
    "  -s, --socket PATH   admin socket (default: admin_socket of CONFIG, else\n"
    "                      /run/nudge/admin.sock)\n"
    "  -c, --config FILE   nudge.yaml (default /etc/nudge/nudge.yaml)\n"
    "      --json          print the daemon's JSON answer\n"
    "  -h, --help          this help\n"
    "  -V, --version       the version\n"
    "\n"
    "TIME is RFC 3339, e.g. 2027-02-03T10:00:00+08:00 or 2027-02-03T02:00:00Z.\n";

static bool json_out;
/* The request being built; freed on a usage error. */
static json_t *pending_req;

static int die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
die_usage(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "nudgectl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'nudgectl --help'.\n");
    json_decref(pending_req);
    pending_req = NULL;
    return 2;
}

/* ---- talking to the daemon ------------------------------------------------------ */

static int
connect_socket(const char *path)
{
    struct sockaddr_un a;
    int fd;
    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    memcpy(a.sun_path, path, strlen(path) + 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Sends req, returns the final answer (the first line with "ok"). */
static json_t *
call(const char *sock, json_t *req, int *rc)
{
    char *s = json_dumps(req, JSON_COMPACT);
    struct sbuf in;
    size_t off = 0, len;
    int fd = connect_socket(sock);
    json_t *rep = NULL;
    bool progress_shown = false;
    *rc = 0;
    if (fd < 0) {
        fprintf(stderr, "nudgectl: cannot reach nudged at %s: %s\n"
                        "    is nudged running? Point at its socket with -s or -c nudge.yaml\n",
                sock, strerror(-fd));
        free(s);
        *rc = 3;
        return NULL;
    }
    len = strlen(s);
    s = xrealloc(s, len + 2);
    s[len++] = '\n';
    s[len] = '\0';
    while (off < len) {
        ssize_t w = write(fd, s + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "nudgectl: write to %s: %s\n", sock, strerror(errno));
            *rc = 3;
            goto out;
        }
        off += (size_t)w;
    }
    sbuf_init(&in);
    for (;;) {
        char buf[65536];
        ssize_t n = read(fd, buf, sizeof(buf));
        size_t scanned = in.len; /* a reply can be large: look for its end in new bytes only */
        char *nl;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "nudgectl: nudged closed the connection without an answer\n");
            *rc = 3;
            break;
        }
        sbuf_add(&in, buf, (size_t)n);
        while ((nl = memchr(in.s + scanned, '\n', in.len - scanned))) {
            json_t *msg = json_loadb(in.s, (size_t)(nl - in.s), 0, NULL);
            size_t used = (size_t)(nl - in.s) + 1;
            memmove(in.s, nl + 1, in.len - used);
            in.len -= used;
            scanned = 0;
            if (msg && json_object_get(msg, "ok")) {
                rep = msg;
                break;
            }
            if (msg && json_object_get(msg, "progress") && !json_out && isatty(2)) {
                fprintf(stderr, "\r  %s   ", json_string_value(json_object_get(msg, "progress")) ?: "");
                progress_shown = true;
            }
            json_decref(msg);
        }
        if (rep)
            break;
    }
    if (progress_shown)
        fputc('\n', stderr);
    sbuf_free(&in);
out:
    close(fd);
    free(s);
    return rep;
}

/* The progress bar of an import, on standard error, redrawn in place. */
static void
draw_bar(json_t *msg, size_t total)
{
    long long rows = (long long)json_integer_value(json_object_get(msg, "rows")),
              bytes = (long long)json_integer_value(json_object_get(msg, "bytes"));
    int pct = total ? (int)((double)bytes * 100 / (double)total) : 100, fill;
    char bar[31];
    if (pct > 100)
        pct = 100;
    fill = pct * 30 / 100;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[30] = '\0';
    fprintf(stderr, "\r  [%s] %3d%%  %lld rows  %.1f/%.1f MB\033[K", bar, pct, rows,
            (double)bytes / 1e6, (double)total / 1e6);
    fflush(stderr);
}

/*
 * An import: the request line, then the file's `size` bytes streamed from
 * fd in pieces while progress lines come back; returns the final answer.
 * The daemon reads the file at the pace it can import it (the socket holds
 * the rest back), so neither side holds the whole file in memory. A daemon
 * that answers early (a bad request) stops the sending; its answer is read.
 */
static json_t *
call_import(const char *sock, json_t *req, int fd, size_t size, int *rc)
{
    char *head = json_dumps(req, JSON_COMPACT), *buf = xmalloc(256 << 10);
    size_t hlen = strlen(head), hoff = 0, sent = 0, boff = 0, blen = 0;
    int s = connect_socket(sock);
    bool sending = true, bar = !json_out && isatty(1) && isatty(2), drawn = false;
    struct sbuf in;
    json_t *rep = NULL;
    *rc = 0;
    sbuf_init(&in);
    if (s < 0) {
        fprintf(stderr, "nudgectl: cannot reach nudged at %s: %s\n"
                        "    is nudged running? Point at its socket with -s or -c nudge.yaml\n",
                sock, strerror(-s));
        *rc = 3;
        goto out;
    }
    head = xrealloc(head, hlen + 2);
    head[hlen++] = '\n';
    head[hlen] = '\0';
    while (!rep) {
        struct pollfd p = {s, POLLIN | (sending ? POLLOUT : 0), 0};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (sending && (p.revents & POLLOUT)) {
            ssize_t w;
            if (hoff < hlen) {
                w = send(s, head + hoff, hlen - hoff, MSG_NOSIGNAL);
                if (w > 0)
                    hoff += (size_t)w;
            } else {
                if (boff == blen && sent < size) {
                    ssize_t r = read(fd, buf, 256 << 10);
                    if (r <= 0) {
                        fprintf(stderr, "nudgectl: reading the file: %s\n",
                                r < 0 ? strerror(errno) : "it became shorter while being sent");
                        *rc = 1;
                        goto out;
                    }
                    boff = 0;
                    blen = (size_t)r;
                    if (blen > size - sent)
                        blen = size - sent;
                }
                w = send(s, buf + boff, blen - boff, MSG_NOSIGNAL);
                if (w > 0) {
                    boff += (size_t)w;
                    sent += (size_t)w;
                }
            }
            if (w < 0 && errno != EINTR && errno != EAGAIN)
                sending = false; /* the daemon hung up: its answer may be waiting */
            if (hoff == hlen && sent == size)
                sending = false;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            char rb[65536];
            size_t scanned = in.len;
            char *nl;
            ssize_t n = read(s, rb, sizeof(rb));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                fprintf(stderr, "%snudgectl: nudged closed the connection without an answer\n",
                        drawn ? "\n" : "");
                *rc = 3;
                goto out;
            }
            sbuf_add(&in, rb, (size_t)n);
            while (!rep && (nl = memchr(in.s + scanned, '\n', in.len - scanned))) {
                json_t *msg = json_loadb(in.s, (size_t)(nl - in.s), 0, NULL);
                size_t used = (size_t)(nl - in.s) + 1;
                memmove(in.s, nl + 1, in.len - used);
                in.len -= used;
                scanned = 0;
                if (msg && json_object_get(msg, "ok"))
                    rep = json_incref(msg);
                else if (msg && json_object_get(msg, "progress") && bar) {
                    draw_bar(msg, size);
                    drawn = true;
                }
                json_decref(msg);
            }
        }
    }
out:
    if (drawn)
        fputs("\r\033[K", stderr); /* the bar goes; the summary stays */
    if (!rep && !*rc)
        *rc = 3;
    if (s >= 0)
        close(s);
    sbuf_free(&in);
    free(head);
    free(buf);
    return rep;
}

static const char *
jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long
jint(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void
print_counts(json_t *q)
{
    const char *k;
    json_t *v;
    json_object_foreach(q, k, v) printf("  %-11s %lld\n", k, (long long)json_integer_value(v));
}

/* status: each channel's transport, and why a paused one is paused. */
static void
print_channels(json_t *chans)
{
    const char *k;
    json_t *v;
    if (!json_object_size(chans))
        return;
    printf("channels:\n");
    json_object_foreach(chans, k, v)
    {
        if (json_is_true(json_object_get(v, "paused")))
            printf("  %-11s %s, PAUSED since %s until %s: %s\n"
                   "  %-11s (a sender or configuration fault; fix it, then nudgectl reload)\n",
                   k, jstr(v, "transport"), jstr(v, "since"), jstr(v, "until"), jstr(v, "reason"),
                   "");
        else
            printf("  %-11s %s, sending\n", k, jstr(v, "transport"));
    }
}

static void
print_human(const char *cmd, json_t *rep)
{
    size_t i;
    json_t *r;
    if (!strcmp(cmd, "status")) {
        printf("nudged %s, up %llds\n", jstr(rep, "version"), jint(rep, "uptime"));
        printf("clock:      %s%s\n", jstr(rep, "now"),
               json_is_true(json_object_get(rep, "frozen")) ? " (frozen)" : "");
        printf("rules:      %lld loaded from %s (version %lld)\n", jint(rep, "rules"),
               jstr(rep, "rules_dir"), jint(rep, "ruleset_version"));
        printf("last tick:  %s\n", json_is_null(json_object_get(rep, "last_tick"))
                                       ? "never"
                                       : jstr(rep, "last_tick"));
        printf("fires:      %lld, deliveries enqueued %lld, late fires skipped %lld\n",
               jint(rep, "fires"), jint(rep, "enqueued"), jint(rep, "skipped_late"));
        print_channels(json_object_get(rep, "channels"));
        printf("queue:\n");
        print_counts(json_object_get(rep, "queue"));
    } else if (!strcmp(cmd, "reload")) {
        printf("rules reloaded: version %lld, %zu rule(s)\n", jint(rep, "version"),
               json_array_size(json_object_get(rep, "rules")));
        const char *kinds[] = {"added", "removed", "changed"};
        for (int k = 0; k < 3; k++) {
            json_t *a = json_object_get(rep, kinds[k]);
            if (json_array_size(a) == 0)
                continue;
            printf("  %s:", kinds[k]);
            json_array_foreach(a, i, r)
            {
                if (json_is_string(r)) {
                    printf(" %s", json_string_value(r));
                    continue;
                }
                printf(" %s", jstr(r, "name"));
                if (json_object_get(r, "audience"))
                    printf(" (audience: %lld customers enter, %lld leave)",
                           jint(json_object_get(r, "audience"), "enter"),
                           jint(json_object_get(r, "audience"), "leave"));
            }
            printf("\n");
        }
    } else if (!strcmp(cmd, "rules")) {
        /* Each column as wide as its longest value, so a long name or a
         * list of several actions never pushes the next column out of line. */
        static const char *const head[] = {"RULE", "CATEGORY", "TRIGGER", "ACTIONS"};
        json_t *rules = json_object_get(rep, "rules");
        size_t nr = json_array_size(rules);
        char **acts = xcalloc(nr ? nr : 1, sizeof(*acts));
        int w[4];
        for (int c = 0; c < 4; c++)
            w[c] = (int)strlen(head[c]);
        json_array_foreach(rules, i, r)
        {
            struct sbuf sb;
            size_t k;
            json_t *a;
            const char *v[3] = {jstr(r, "name"), jstr(r, "category"), jstr(r, "trigger")};
            sbuf_init(&sb);
            sbuf_adds(&sb, "");
            json_array_foreach(json_object_get(r, "actions"), k, a)
                sbuf_printf(&sb, "%s%s", k ? "," : "", json_string_value(a));
            acts[i] = xstrdup(sb.s);
            sbuf_free(&sb);
            for (int c = 0; c < 3; c++)
                if ((int)strlen(v[c]) > w[c])
                    w[c] = (int)strlen(v[c]);
            if ((int)strlen(acts[i]) > w[3])
                w[3] = (int)strlen(acts[i]);
        }
        printf("%-*s  %-*s  %-*s  %-*s  %s\n", w[0], head[0], w[1], head[1], w[2], head[2], w[3],
               head[3], "NEXT FIRE (default zone)");
        json_array_foreach(rules, i, r)
        {
            printf("%-*s  %-*s  %-*s  %-*s  %s %s\n", w[0], jstr(r, "name"), w[1],
                   jstr(r, "category"), w[2], jstr(r, "trigger"), w[3], acts[i],
                   jstr(r, "next_fire_local"), jstr(r, "next_occurrence"));
            free(acts[i]);
        }
        free(acts);
    } else if (!strcmp(cmd, "advance")) {
        printf("clock advanced from %s to %s\n", jstr(rep, "from"), jstr(rep, "now"));
        printf("deliveries enqueued %lld, sent %lld, failed %lld\nqueue:\n",
               jint(rep, "enqueued"), jint(rep, "sent"), jint(rep, "failed"));
        print_counts(json_object_get(rep, "queue"));
    } else if (!strcmp(cmd, "queue")) {
        printf("queue:\n");
        print_counts(json_object_get(rep, "counts"));
        if (json_array_size(json_object_get(rep, "deliveries")))
            printf("\n%-8s %-22s %-10s %-8s %-11s %-4s %-20s %s\n", "ID", "RULE", "CUSTOMER",
                   "CHANNEL", "STATE", "TRY", "NEXT/SENT", "LAST ERROR");
        json_array_foreach(json_object_get(rep, "deliveries"), i, r)
            printf("%-8lld %-22s %-10s %-8s %-11s %-4lld %-20s %s\n", jint(r, "id"),
                   jstr(r, "rule"), jstr(r, "customer"), jstr(r, "channel"), jstr(r, "state"),
                   jint(r, "attempts"),
                   json_object_get(r, "sent_at") ? jstr(r, "sent_at") : jstr(r, "next_attempt_at"),
                   jstr(r, "last_error"));
    } else if (!strcmp(cmd, "retry")) {
        printf("%lld deliver%s made due again\n", jint(rep, "retried"),
               jint(rep, "retried") == 1 ? "y" : "ies");
    } else if (!strcmp(cmd, "import")) {
        /* Warnings first, so the summary is the last thing on the screen. */
        if (*jstr(rep, "messages"))
            fputs(jstr(rep, "messages"), stderr);
        fflush(stderr);
        printf("%lld rows: %lld inserted, %lld updated, %lld unchanged\n", jint(rep, "rows"),
               jint(rep, "inserted"), jint(rep, "updated"), jint(rep, "unchanged"));
    } else if (!strcmp(cmd, "forecast")) {
        printf("%-26s %-21s %-22s %-12s %s\n", "LOCAL TIME", "UTC", "RULE", "CUSTOMER",
               "CHANNEL");
        json_array_foreach(json_object_get(rep, "rows"), i, r)
            printf("%-26s %-21s %-22s %-12s %s\n", jstr(r, "local"), jstr(r, "at"),
                   jstr(r, "rule"), jstr(r, "customer"), jstr(r, "channel"));
        printf("%lld fire(s)%s\n", jint(rep, "count"),
               json_is_true(json_object_get(rep, "truncated")) ? " (list truncated: --limit)" : "");
    } else if (!strcmp(cmd, "preview")) {
        printf("rule %s: %lld deliver%s at the next fire%s%s\n", jstr(rep, "rule"),
               jint(rep, "count"), jint(rep, "count") == 1 ? "y" : "ies",
               *jstr(rep, "first_fire") ? " from " : "", jstr(rep, "first_fire"));
        json_array_foreach(json_object_get(rep, "recipients"), i, r)
        {
            printf("\n--- %s via %s to %s at %s\n", jstr(r, "customer"), jstr(r, "channel"),
                   jstr(r, "to"), jstr(r, "local"));
            if (*jstr(r, "subject"))
                printf("Subject: %s\n", jstr(r, "subject"));
            if (*jstr(r, "text"))
                printf("%s%s", jstr(r, "text"),
                       jstr(r, "text")[strlen(jstr(r, "text")) - 1] == '\n' ? "" : "\n");
            if (*jstr(r, "note"))
                printf("Note: %s\n", jstr(r, "note"));
        }
    } else if (!strcmp(cmd, "tasks")) {
        /* Due in the assignee's zone; the customer by id and name; a
         * notification given up for good is shown, not only stored. */
        printf("%-6s %-10s %-12s %-25s %-28s %s\n", "ID", "KIND", "ASSIGNEE",
               "DUE (assignee's zone)", "CUSTOMER", "NOTE");
        json_array_foreach(json_object_get(rep, "tasks"), i, r)
        {
            char *cust = xasprintf("%s%s%s", jstr(r, "customer"),
                                   *jstr(r, "customer_name") ? " " : "", jstr(r, "customer_name"));
            printf("%-6lld %-10s %-12s %-25s %-28s %s%s%s%s", jint(r, "id"), jstr(r, "kind"),
                   jstr(r, "assignee"),
                   *jstr(r, "due_local") ? jstr(r, "due_local") : jstr(r, "due_at"), cust,
                   jstr(r, "note"), json_object_get(r, "done_at") ? "  [done: " : "",
                   json_object_get(r, "done_at") ? jstr(r, "outcome") : "",
                   json_object_get(r, "done_at") ? "]" : "");
            if (*jstr(r, "notify_error"))
                printf("  [notify failed: %s]", jstr(r, "notify_error"));
            printf("\n");
            free(cust);
        }
    } else if (!strcmp(cmd, "task-done")) {
        printf("task %lld done\n", jint(rep, "id"));
    } else {
        char *s = json_dumps(rep, JSON_INDENT(2));
        puts(s);
        free(s);
    }
}

/* ---- offline commands -------------------------------------------------------------- */

static int
cmd_check(const char *cfgpath, bool cfg_given, const char *dir)
{
    struct config *cfg = NULL;
    struct ruleset *rs = NULL;
    struct nerr err;
    char *errors = NULL, buf[4096];
    const char *caldir = NUDGE_DATADIR "/calendars", *database = NULL;
    int rc = 1;
    nerr_clear(&err);
    log_set_level(LOG_LVL_WARN);
    if (cfg_given) {
        if (config_load(cfgpath, &cfg, &err) < 0) {
            nerr_format(&err, buf, sizeof(buf));
            fputs(buf, stderr);
            return 1;
        }
        caldir = cfg->calendars_dir;
        /* Custom attributes make audience fields valid: read them, read-only. */
        database = cfg->database;
    } else if (getenv("NUDGE_CALENDARS")) {
        caldir = getenv("NUDGE_CALENDARS");
    } else if (access(caldir, R_OK) != 0) {
        /* Not installed: the calendars beside the rules, else the source tree's. */
        static char alt[4096];
        snprintf(alt, sizeof(alt), "%s/../calendars", dir);
        caldir = access(alt, R_OK) == 0 ? alt : NUDGE_SOURCE_DIR "/calendars";
    }
    /* The same loading as `nudged --check` (check.c): same verdict, same messages. */
    if (check_rules(dir, caldir, database, &rs, json_out ? &errors : NULL) < 0) {
        if (json_out) {
            json_t *o = json_pack("{sbss}", "ok", 0, "error", errors ? errors : "");
            char *s = json_dumps(o, JSON_INDENT(2));
            puts(s);
            free(s);
            json_decref(o);
        }
        goto out;
    }
    if (json_out) {
        json_t *names = json_array();
        for (size_t i = 0; i < rs->n; i++)
            json_array_append_new(names, json_string(rs->rules[i]->name));
        json_t *o = json_pack("{sbso}", "ok", 1, "rules", names);
        if (errors)
            json_object_set_new(o, "warnings", json_string(errors));
        char *s = json_dumps(o, JSON_INDENT(2));
        puts(s);
        free(s);
        json_decref(o);
    } else {
        for (size_t i = 0; i < rs->n; i++)
            printf("%-28s %s (%s)\n", rs->rules[i]->name, rs->rules[i]->file,
                   trigger_kind_name(rs->rules[i]->trigger.kind));
        printf("%zu rule%s OK\n", rs->n, rs->n == 1 ? "" : "s");
    }
    rc = 0;
out:
    free(errors);
    ruleset_unref(rs);
    config_free(cfg);
    return rc;
}

static int
cmd_render(const char *tmpl, const char *data, const char *partials, bool text)
{
    char *raw;
    size_t len;
    json_error_t je;
    json_t *j;
    struct sbuf out;
    struct nerr err;
    char buf[4096];
    int r;
    if ((r = read_file(data, &raw, &len)) < 0) {
        fprintf(stderr, "nudgectl: cannot read %s: %s\n", data, strerror(-r));
        return 1;
    }
    j = json_loadb(raw, len, JSON_DECODE_ANY, &je);
    free(raw);
    if (!j) {
        fprintf(stderr, "%s:%d:%d: error: %s\n", data, je.line, je.column, je.text);
        return 1;
    }
    sbuf_init(&out);
    nerr_clear(&err);
    r = tmpl_render_file(tmpl, j, text ? 0 : TMPL_ESCAPE_HTML, partials, &out, &err);
    json_decref(j);
    if (r < 0) {
        nerr_format(&err, buf, sizeof(buf));
        fputs(buf, stderr);
        sbuf_free(&out);
        return 1;
    }
    if (out.len && fwrite(out.s, 1, out.len, stdout) != out.len)
        r = -EIO;
    sbuf_free(&out);
    return r < 0 ? 1 : 0;
}

/* ---- main ----------------------------------------------------------------------------- */

int
main(int argc, char **argv)
{
    static const struct option gopts[] = {{"socket", required_argument, NULL, 's'},
                                          {"config", required_argument, NULL, 'c'},
                                          {"json", no_argument, NULL, 'j'},
                                          {"help", no_argument, NULL, 'h'},
                                          {"version", no_argument, NULL, 'V'},
                                          {NULL, 0, NULL, 0}};
    static const struct option copts[] = {
        {"to", required_argument, NULL, 't'},    {"from", required_argument, NULL, 'f'},
        {"at", required_argument, NULL, 'a'},    {"rule", required_argument, NULL, 'r'},
        {"state", required_argument, NULL, 'S'}, {"limit", required_argument, NULL, 'l'},
        {"dead", no_argument, NULL, 'd'},        {"data", required_argument, NULL, 'D'},
        {"partials", required_argument, NULL, 'p'}, {"text", no_argument, NULL, 'x'},
        {"owner", required_argument, NULL, 'o'}, {"overdue", no_argument, NULL, 'O'},
        {"all", no_argument, NULL, 'A'},         {"outcome", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0}};
    const char *sock = NULL, *cfgpath = NUDGE_SYSCONFDIR "/nudge.yaml";
    bool cfg_given = false;
    const char *to = NULL, *from = NULL, *at = NULL, *rule = NULL, *state = NULL, *data = NULL,
               *partials = NULL, *owner = NULL, *outcome = NULL;
    long limit = 0;
    bool dead = false, text = false, overdue = false, all = false;
    const char *cmd;
    int c, rc;
    json_t *req, *rep;
    int import_fd = -1;
    size_t import_size = 0;

    while ((c = getopt_long(argc, argv, "+s:c:hV", gopts, NULL)) != -1) {
        switch (c) {
        case 's':
            sock = optarg;
            break;
        case 'c':
            cfgpath = optarg;
            cfg_given = true;
            break;
        case 'j':
            json_out = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("nudgectl %s\n", NUDGE_VERSION);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind >= argc)
        return die_usage("%s", "a command is needed");
    cmd = argv[optind];
    /* Command options may come anywhere after the command. */
    argc -= optind;
    argv += optind;
    optind = 0; /* glibc: 0 restarts scanning (and re-reads GNU extensions) */
    while ((c = getopt_long(argc, argv, "h", copts, NULL)) != -1) {
        int64_t v;
        switch (c) {
        case 't':
            to = optarg;
            break;
        case 'f':
            from = optarg;
            break;
        case 'a':
            at = optarg;
            break;
        case 'r':
            rule = optarg;
            break;
        case 'S':
            state = optarg;
            break;
        case 'l':
            if (parse_i64(optarg, &v) < 0 || v < 1)
                return die_usage("--limit needs a positive number, not '%s'", optarg);
            limit = (long)v;
            break;
        case 'd':
            dead = true;
            break;
        case 'D':
            data = optarg;
            break;
        case 'p':
            partials = optarg;
            break;
        case 'x':
            text = true;
            break;
        case 'o':
            owner = optarg;
            break;
        case 'O':
            overdue = true;
            break;
        case 'A':
            all = true;
            break;
        case 'u':
            outcome = optarg;
            break;
        case 'j':
            json_out = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return die_usage("%s", "unknown option for this command");
        }
    }
    /* --json may also follow the command. */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--json"))
            json_out = true;
    char **args = argv + optind;
    int nargs = argc - optind;

    if (!strcmp(cmd, "check")) {
        if (nargs != 1)
            return die_usage("%s", "usage: nudgectl check DIR");
        return cmd_check(cfgpath, cfg_given, args[0]);
    }
    if (!strcmp(cmd, "render")) {
        if (nargs != 1 || !data)
            return die_usage("%s", "usage: nudgectl render TEMPLATE --data FILE.json "
                                   "[--partials DIR]");
        return cmd_render(args[0], data, partials, text);
    }

    req = pending_req = json_object();
    if (!strcmp(cmd, "status") || !strcmp(cmd, "reload") || !strcmp(cmd, "rules") ||
        !strcmp(cmd, "help")) {
        if (nargs)
            return die_usage("'%s' takes no arguments", cmd);
        json_object_set_new(req, "cmd", json_string(cmd));
    } else if (!strcmp(cmd, "advance")) {
        if (!to || nargs)
            return die_usage("%s", "usage: nudgectl advance --to TIME");
        json_object_set_new(req, "cmd", json_string(cmd));
        json_object_set_new(req, "to", json_string(to));
    } else if (!strcmp(cmd, "queue")) {
        json_object_set_new(req, "cmd", json_string(cmd));
        if (state)
            json_object_set_new(req, "state", json_string(state));
        if (limit)
            json_object_set_new(req, "limit", json_integer(limit));
    } else if (!strcmp(cmd, "retry")) {
        int64_t id;
        json_object_set_new(req, "cmd", json_string(cmd));
        if (dead && nargs == 0)
            json_object_set_new(req, "dead", json_true());
        else if (!dead && nargs == 1 && parse_i64(args[0], &id) == 0)
            json_object_set_new(req, "id", json_integer(id));
        else
            return die_usage("%s", "usage: nudgectl retry ID | nudgectl retry --dead");
    } else if (!strcmp(cmd, "import")) {
        struct stat sb;
        if (nargs != 2 || (strcmp(args[0], "customers") && strcmp(args[0], "orders")))
            return die_usage("%s", "usage: nudgectl import customers|orders FILE.csv");
        import_fd = open(args[1], O_RDONLY | O_CLOEXEC);
        if (import_fd < 0 || fstat(import_fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
            fprintf(stderr, "nudgectl: cannot read %s: %s\n", args[1],
                    import_fd < 0 || !S_ISREG(sb.st_mode) ? strerror(import_fd < 0 ? errno : EISDIR)
                                                          : strerror(errno));
            if (import_fd >= 0)
                close(import_fd);
            json_decref(req);
            return 1;
        }
        import_size = (size_t)sb.st_size;
        if (!json_out)
            fprintf(stderr, "importing %s (%zu bytes)...\n", args[1], import_size);
        /* The file follows the request on the connection, streamed. */
        json_object_set_new(req, "cmd", json_string("import"));
        json_object_set_new(req, "kind", json_string(args[0]));
        json_object_set_new(req, "name", json_string(args[1]));
        json_object_set_new(req, "size", json_integer((json_int_t)import_size));
    } else if (!strcmp(cmd, "preview")) {
        if (nargs != 1)
            return die_usage("%s", "usage: nudgectl preview RULE [--at TIME] [--limit N]");
        json_object_set_new(req, "cmd", json_string(cmd));
        json_object_set_new(req, "rule", json_string(args[0]));
        if (at)
            json_object_set_new(req, "at", json_string(at));
        if (limit)
            json_object_set_new(req, "limit", json_integer(limit));
    } else if (!strcmp(cmd, "forecast")) {
        if (!from || !to || nargs)
            return die_usage("%s", "usage: nudgectl forecast --from TIME --to TIME [--rule R]");
        json_object_set_new(req, "cmd", json_string(cmd));
        json_object_set_new(req, "from", json_string(from));
        json_object_set_new(req, "to", json_string(to));
        if (rule)
            json_object_set_new(req, "rule", json_string(rule));
        if (limit)
            json_object_set_new(req, "limit", json_integer(limit));
    } else if (!strcmp(cmd, "tasks")) {
        json_object_set_new(req, "cmd", json_string(cmd));
        if (owner)
            json_object_set_new(req, "owner", json_string(owner));
        json_object_set_new(req, "overdue", json_boolean(overdue));
        json_object_set_new(req, "all", json_boolean(all));
    } else if (!strcmp(cmd, "task")) {
        int64_t id;
        if (nargs != 2 || strcmp(args[0], "done") || parse_i64(args[1], &id) < 0)
            return die_usage("%s", "usage: nudgectl task done ID [--outcome TEXT]");
        cmd = "task-done";
        json_object_set_new(req, "cmd", json_string(cmd));
        json_object_set_new(req, "id", json_integer(id));
        if (outcome)
            json_object_set_new(req, "outcome", json_string(outcome));
    } else {
        return die_usage("unknown command '%s'", cmd);
    }

    /* The socket: -s, else the config's admin_socket, else the systemd default. */
    struct config *cfg = NULL;
    if (!sock) {
        struct nerr err;
        nerr_clear(&err);
        if (config_load(cfgpath, &cfg, &err) == 0)
            sock = cfg->admin_socket;
        else if (cfg_given) {
            char buf[4096];
            nerr_format(&err, buf, sizeof(buf));
            fputs(buf, stderr);
            json_decref(req);
            return 1;
        } else
            sock = getenv("NUDGE_SOCKET") ? getenv("NUDGE_SOCKET") : "/run/nudge/admin.sock";
    }
    rep = import_fd >= 0 ? call_import(sock, req, import_fd, import_size, &rc)
                         : call(sock, req, &rc);
    if (import_fd >= 0)
        close(import_fd);
    json_decref(req);
    pending_req = NULL;
    config_free(cfg);
    if (!rep)
        return rc ? rc : 3;
    if (json_out) {
        char *s = json_dumps(rep, JSON_INDENT(2));
        puts(s);
        free(s);
    } else if (json_is_true(json_object_get(rep, "ok"))) {
        print_human(cmd, rep);
    } else {
        const char *e = jstr(rep, "error");
        fprintf(stderr, "%s%s", e, *e && e[strlen(e) - 1] == '\n' ? "" : "\n");
        if (!strcmp(cmd, "import"))
            fprintf(stderr, "nothing was imported\n");
    }
    rc = json_is_true(json_object_get(rep, "ok")) ? 0 : 1;
    json_decref(rep);
    return rc;
}
