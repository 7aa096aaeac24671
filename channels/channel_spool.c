/*
 * channel_spool.c: the `spool` transport. Email becomes
 * SPOOL/email/<delivery-id>.eml, a complete RFC 5322 message, byte for byte
 * what SMTP would have carried; every other channel becomes
 * SPOOL/<channel>/<delivery-id>.json with delivery_id, rule, customer,
 * occurrence, channel, to and the rendered content. Files appear atomically
 * (written beside, fsync'd, renamed), and a retry overwrites the same name,
 * so a reader never sees a half message or two copies of one delivery.
 * Each file's result is reported as soon as it is renamed into place
 * (send_result_report), and files are private (0600, in a 0700 directory).
 */
#include "channel_spool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel_registry.h"
#include "mime.h"
#include "util.h"

struct spool {
    char *dir;     /* SPOOL/<channel> */
    char *channel; /* which channel this session writes */
    char *from;    /* email: the From header */
    bool eml;      /* the channel's address is an email address: .eml files */
};

static const char *const spool_channels[] = {"email", "sms", "webhook", "task", NULL};

static int
spool_open(const char *channel, json_t *settings, void **state, struct nerr *err)
{
    const char *key;
    json_t *v;
    const char *dir = json_string_value(json_object_get(settings, "_spool_dir"));
    const char *from = json_string_value(json_object_get(settings, "from"));
    const char *file = json_string_value(json_object_get(settings, "_file"));
    int line = (int)json_integer_value(json_object_get(settings, "_line"));
    struct spool *s;
    int r;
    json_object_foreach(settings, key, v)
    {
        if (key[0] == '_' || !strcmp(key, "transport") || !strcmp(key, "from") ||
            !strcmp(key, "dir"))
            continue;
        nerr_set(err, file, line, 0, "unknown setting '%s' for the spool transport of %s", key,
                 channel);
        nerr_hint(err, "the spool transport takes: dir (default: spool_dir/%s), from", channel);
        return -EINVAL;
    }
    if (json_string_value(json_object_get(settings, "dir")))
        dir = json_string_value(json_object_get(settings, "dir"));
    if (!dir) {
        nerr_set(err, file, line, 0, "the spool transport of %s has no directory", channel);
        return -EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->channel = xstrdup(channel);
    s->dir = json_object_get(settings, "dir") ? xstrdup(dir) : xasprintf("%s/%s", dir, channel);
    s->from = xstrdup(from ? from : "nudge <nudge@localhost>");
    s->eml = channel_info_find(channel) && channel_info_find(channel)->address == CHAN_ADDR_EMAIL;
    if (s->eml) {
        char *name = NULL, *addr = NULL;
        if (mime_parse_mailbox(s->from, &name, &addr) < 0) {
            nerr_set(err, file, line, 0, "from '%s' is not a mail address", s->from);
            nerr_hint(err, "write it as \"Shop <shop@example.com>\" or shop@example.com");
            free(s->from);
            free(s->dir);
            free(s->channel);
            free(s);
            return -EINVAL;
        }
        free(name);
        free(addr);
    }
    /* A configuration check (nudged --check) creates nothing, but finds
     * what would stop mkdir_p. */
    if (json_is_true(json_object_get(settings, "_check")))
        r = mkdir_p_check(s->dir);
    else
        r = mkdir_p(s->dir, 0700);
    if (r < 0) {
        nerr_set(err, file, line, 0, "cannot create spool directory %s: %s", s->dir,
                 strerror(-r));
        free(s->from);
        free(s->dir);
        free(s->channel);
        free(s);
        return r;
    }
    *state = s;
    return 0;
}

static void
spool_send(void *state, const struct nudge_message *msgs, size_t n, struct send_result *res)
{
    struct spool *s = state;
    for (size_t i = 0; i < n; i++) {
        const struct nudge_message *m = &msgs[i];
        struct sbuf body;
        struct nerr err;
        char *path = NULL;
        int r;
        send_result_clear(&res[i]);
        sbuf_init(&body);
        nerr_clear(&err);
        if (s->eml) {
            path = xasprintf("%s/%lld.eml", s->dir, (long long)m->delivery_id);
            r = mime_compose_email(m, s->from, NULL, m->date, &body, &err);
            if (r < 0) {
                send_result_set(&res[i], SEND_PERMANENT, r, "cannot compose: %s", err.msg);
                goto next;
            }
        } else {
            char *j;
            json_t *doc = json_object();
            const char *k;
            json_t *v;
            /* Keys starting with '_' are instructions to backends, not content. */
            json_object_foreach(m->payload, k, v)
            {
                if (k[0] != '_')
                    json_object_set(doc, k, v);
            }
            path = xasprintf("%s/%lld.json", s->dir, (long long)m->delivery_id);
            j = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
            json_decref(doc);
            sbuf_adds(&body, j ? j : "{}");
            sbuf_addc(&body, '\n');
            free(j);
        }
        r = write_file_atomic(path, body.s, body.len);
        if (r < 0) {
            /* A full disk or a permission problem may be fixed by a person. */
            send_result_set(&res[i], SEND_TRANSIENT, r, "cannot write %s: %s", path,
                            strerror(-r));
        } else {
            res[i].status = SEND_OK;
        }
    next:
        /* The file is in place (or will not be): the dispatcher records
         * this message before the next one is written. */
        send_result_report(&res[i]);
        free(path);
        sbuf_free(&body);
    }
}

static void
spool_close(void *state)
{
    struct spool *s = state;
    if (!s)
        return;
    free(s->dir);
    free(s->channel);
    free(s->from);
    free(s);
}

static enum send_status
spool_classify(int code)
{
    return code == -EINVAL ? SEND_PERMANENT : SEND_TRANSIENT;
}

const struct channel_backend channel_backend_spool = {
    .name = "spool",
    .max_concurrency = 1, /* local writes */
    .channels = spool_channels,
    .open = spool_open,
    .send = spool_send,
    .close = spool_close,
    .classify_error = spool_classify,
    .batch_max = 100,
    .needs_payload = true,
};
