/*
 * channel_task.c: the `task` transport. A task action becomes a row of the
 * tasks table, assigned to the customer's owner or round-robin over the
 * staff list in nudge.yaml (channels.task.staff), with a due date and the
 * rendered note; `nudgectl tasks` lists them. The delivery id is unique in
 * tasks, so a retried or repeated send never makes a second task.
 *
 * Optionally (channels.task.notify) the assignee is also told about each new
 * task, by email over the transport of channels.email and/or by a signed
 * webhook over the http transport:
 *
 *   task:
 *     transport: task
 *     staff: [alice, bob]
 *     notify:
 *       email: { alice: alice@shop.example, bob: bob@shop.example }
 *       webhook: { url: "https://crm.example/hooks/tasks", secret_file: tasks.whsec }
 *
 * An assignee missing from the email map is written to directly if the name
 * is itself an address. Notifying is part of delivering the task: if a way
 * fails transiently the delivery is retried (the task already exists and is
 * not made twice) and only that way is tried again, with the same key
 * (webhook-id "task-<id>", Message-ID from "task-<id>-email"). Each way done,
 * or given up for good (no address, a 5xx reply, a 410), sets
 * tasks.notified_email_at / notified_webhook_at; notify_error says what
 * could not be done.
 *
 * Tasks are written through the store (store_task.h), never in SQL here,
 * on the store handle of the dispatch slot that runs the session
 * (channel_backend.use_store): send() runs on that slot's worker thread,
 * and the task, its timeline entry and the delivery's result share one
 * connection.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calendar.h"
#include "channel_registry.h"
#include "channel_spool.h"
#include "log.h"
#include "store.h"
#include "store_import.h" /* store_errmsg */
#include "store_task.h"
#include "util.h"

/* A backend used to notify assignees, with its session. */
struct notifier {
    const struct channel_backend *be;
    void *state;
};

struct task_state {
    struct store *st; /* the dispatch slot's (use_store); not ours to close */
    char **staff;  /* round-robin list, may be empty */
    size_t nstaff;
    struct notifier mail, hook; /* channels.task.notify; be NULL when not used */
    json_t *mail_to;            /* notify.email: assignee -> address */
    char *hook_url;             /* notify.webhook.url */
};

/* The channels notifications go out on, as the registry names them: the
 * one whose address is an email address, and the one whose address is a
 * URL. (The notify: keys in nudge.yaml, email and webhook, are the
 * documented names of the two ways.) */
static const char *
mail_channel(void)
{
    return channel_info_by_address(CHAN_ADDR_EMAIL)->name;
}

static const char *
hook_channel(void)
{
    return channel_info_by_address(CHAN_ADDR_URL)->name;
}

static const char *const task_channels[] = {"task", NULL};

static void
task_close(void *state)
{
    struct task_state *t = state;
    if (!t)
        return;
    for (size_t i = 0; i < t->nstaff; i++)
        free(t->staff[i]);
    free(t->staff);
    if (t->mail.be && t->mail.state)
        t->mail.be->close(t->mail.state);
    if (t->hook.be && t->hook.state)
        t->hook.be->close(t->hook.state);
    json_decref(t->mail_to);
    free(t->hook_url);
    free(t);
}

/* Opens backend `transport` for `channel` with a copy of settings that also
 * carries the daemon's annotations (_file, _line, _spool_dir, _check). */
static int
notifier_open(struct notifier *n, const char *transport, const char *channel, json_t *settings,
              json_t *task_settings, struct nerr *err)
{
    static const char *const notes[] = {"_file", "_line", "_spool_dir", "_check", NULL};
    json_t *copy = json_deep_copy(settings);
    int rc;
    n->be = channel_backend_find(transport);
    if (!n->be) {
        json_decref(copy);
        return -EINVAL;
    }
    for (int i = 0; notes[i]; i++)
        if (!json_object_get(copy, notes[i]) && json_object_get(task_settings, notes[i]))
            json_object_set(copy, notes[i], json_object_get(task_settings, notes[i]));
    /* The dispatcher's own per-channel settings are not the backend's. */
    json_object_del(copy, "concurrency");
    json_object_del(copy, "batch");
    json_object_del(copy, "lifetime");
    json_object_del(copy, "max_attempts");
    rc = n->be->open(channel, copy, &n->state, err);
    json_decref(copy);
    if (rc < 0)
        n->be = NULL;
    return rc;
}

static int
notify_open(struct task_state *t, const char *channel, json_t *settings, struct nerr *err)
{
    json_t *notify = json_object_get(settings, "notify"), *v, *mail, *hook;
    const char *file = json_string_value(json_object_get(settings, "_file"));
    int line = (int)json_integer_value(json_object_get(settings, "_line"));
    const char *key;

    if (!notify)
        return 0;
    if (!json_is_object(notify)) {
        nerr_set(err, file, line, 0, "channels.%s.notify must be a mapping", channel);
        nerr_hint(err, "e.g. notify: { email: { alice: alice@shop.example } }");
        return -EINVAL;
    }
    json_object_foreach(notify, key, v)
    {
        static const char *const keys[] = {"email", "webhook", NULL};
        const char *best;
        if (strcmp(key, "email") && strcmp(key, "webhook")) {
            nerr_set(err, file, line, 0, "unknown key '%s' in channels.%s.notify", key, channel);
            if ((best = did_you_mean(key, keys)))
                nerr_hint(err, "did you mean '%s'?", best);
            else
                nerr_hint(err, "notify takes email (assignee: address) and webhook (url, "
                               "secret_file)");
            return -EINVAL;
        }
    }
    if ((mail = json_object_get(notify, "email"))) {
        json_t *email = json_object_get(settings, "_email");
        const char *transport = json_string_value(json_object_get(email, "transport"));
        if (!json_is_object(mail)) {
            nerr_set(err, file, line, 0, "channels.%s.notify.email must map staff names to "
                     "email addresses", channel);
            nerr_hint(err, "e.g. email: { alice: alice@shop.example, bob: bob@shop.example }");
            return -EINVAL;
        }
        json_object_foreach(mail, key, v)
        {
            if (!json_is_string(v) || !strchr(json_string_value(v), '@')) {
                nerr_set(err, file, line, 0, "channels.%s.notify.email.%s must be an email "
                         "address", channel, key);
                return -EINVAL;
            }
        }
        if (!json_is_object(email)) {
            nerr_set(err, file, line, 0, "channels.%s.notify.email sends over channels.email, "
                     "which is not configured", channel);
            nerr_hint(err, "add channels.email (e.g. { transport: smtp, host: ..., from: ... })");
            return -EINVAL;
        }
        if (notifier_open(&t->mail, transport ? transport : "spool", mail_channel(), email, settings,
                          err) < 0)
            return -EINVAL;
        t->mail_to = json_incref(mail);
    }
    if ((hook = json_object_get(notify, "webhook"))) {
        const char *url = json_string_value(json_object_get(hook, "url"));
        json_t *copy;
        int rc;
        if (!json_is_object(hook) || !url ||
            (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
            nerr_set(err, file, line, 0, "channels.%s.notify.webhook needs a url "
                     "(http:// or https://)", channel);
            nerr_hint(err, "e.g. webhook: { url: \"https://crm.example/hooks/tasks\", "
                      "secret_file: tasks.whsec }");
            return -EINVAL;
        }
        copy = json_deep_copy(hook);
        json_object_del(copy, "url");
        json_object_set_new(copy, "transport", json_string("http"));
        rc = notifier_open(&t->hook, "http", hook_channel(), copy, settings, err);
        json_decref(copy);
        if (rc < 0)
            return -EINVAL;
        t->hook_url = xstrdup(url);
    }
    return 0;
}

static int
task_open(const char *channel, json_t *settings, void **state, struct nerr *err)
{
    const char *file = json_string_value(json_object_get(settings, "_file"));
    int line = (int)json_integer_value(json_object_get(settings, "_line"));
    json_t *staff = json_object_get(settings, "staff"), *v;
    const char *key;
    struct task_state *t;
    size_t i;
    json_object_foreach(settings, key, v)
    {
        if (key[0] == '_' || !strcmp(key, "transport") || !strcmp(key, "staff") ||
            !strcmp(key, "notify"))
            continue;
        static const char *const keys[] = {"transport", "staff", "notify", NULL};
        const char *best = did_you_mean(key, keys);
        nerr_set(err, file, line, 0, "unknown setting '%s' for the task transport", key);
        if (best)
            nerr_hint(err, "did you mean '%s'?", best);
        else
            nerr_hint(err, "the task transport takes: staff (a list of names for round-robin) "
                           "and notify (email and/or webhook)");
        return -EINVAL;
    }
    if (staff && !json_is_array(staff)) {
        nerr_set(err, file, line, 0, "channels.%s.staff must be a list of names", channel);
        return -EINVAL;
    }
    t = xcalloc(1, sizeof(*t));
    json_array_foreach(staff, i, v)
    {
        /* A name, or { name: N, tz: ZONE } for staff whose tasks `nudgectl
         * tasks` shows in their own zone. */
        json_t *tz = json_is_object(v) ? json_object_get(v, "tz") : NULL;
        json_t *name = json_is_object(v) ? json_object_get(v, "name") : v;
        if (!json_is_string(name) || (tz && (!json_is_string(tz) ||
                                             !cal_zone_valid(json_string_value(tz))))) {
            nerr_set(err, file, line, 0,
                     "channels.%s.staff must be a list of names or { name, tz } mappings",
                     channel);
            nerr_hint(err, "e.g. staff: [alice, { name: chen.li, tz: Asia/Shanghai }] (tz an "
                           "IANA zone)");
            task_close(t);
            return -EINVAL;
        }
        t->staff = xrealloc(t->staff, (t->nstaff + 1) * sizeof(*t->staff));
        t->staff[t->nstaff++] = xstrdup(json_string_value(name));
    }
    if (notify_open(t, channel, settings, err) < 0) {
        task_close(t);
        return -EINVAL;
    }
    *state = t;
    return 0;
}

/* One task as the notifications describe it. */
struct task_row {
    int64_t id, due_at;
    const char *assignee, *kind, *note;
    bool mail_done, hook_done; /* notified_email_at / notified_webhook_at set */
};

/* The notification document: the webhook body, and the spool's .json. */
static json_t *
task_doc(const struct nudge_message *m, const struct task_row *k, const char *due)
{
    json_t *task = json_object(), *customer = json_object_get(m->payload, "customer");
    json_object_set_new(task, "id", json_integer((json_int_t)k->id));
    json_object_set_new(task, "kind", json_string(k->kind));
    json_object_set_new(task, "assignee",
                        k->assignee && k->assignee[0] ? json_string(k->assignee) : json_null());
    json_object_set_new(task, "note", json_string(k->note));
    json_object_set_new(task, "due_at", json_string(due));
    json_object_set_new(task, "rule", json_string(m->rule));
    json_object_set_new(task, "occurrence", json_string(m->occurrence ? m->occurrence : ""));
    json_object_set_new(task, "customer_id", json_string(m->customer_id ? m->customer_id : ""));
    json_object_set_new(task, "delivery_id", json_integer((json_int_t)m->delivery_id));
    return json_pack("{sssoso}", "type", "task.created", "task", task, "customer",
                     customer ? json_incref(customer) : json_null());
}

/* The assignee's address for notify.email, or NULL. */
static const char *
mail_address(const struct task_state *t, const char *assignee)
{
    const char *to;
    if (!assignee || !assignee[0])
        return NULL;
    if ((to = json_string_value(json_object_get(t->mail_to, assignee))))
        return to;
    return strchr(assignee, '@') ? assignee : NULL;
}

/* A notification about the task made by delivery m, over channel to `to`,
 * keyed by key (the rest, subject and text, is the caller's). */
static struct nudge_message
notice(const struct nudge_message *m, const char *channel, const char *to, const char *key,
       json_t *doc)
{
    struct nudge_message n = {0};
    n.delivery_id = m->delivery_id;
    n.idempotency_key = key;
    n.rule = m->rule;
    n.occurrence = m->occurrence;
    n.channel = channel;
    n.customer_id = m->customer_id;
    n.to = to;
    n.created_at = m->created_at;
    n.date = m->date;
    n.payload = doc;
    return n;
}

/* Sends the notification email; fills r. */
static void
send_mail(struct task_state *t, const struct nudge_message *m, const struct task_row *k,
          const char *to, const char *due, const char *key, json_t *doc, struct send_result *r)
{
    json_t *customer = json_object_get(m->payload, "customer");
    const char *name = json_string_value(json_object_get(customer, "name"));
    const char *phone = json_string_value(json_object_get(customer, "phone"));
    const char *email = json_string_value(json_object_get(customer, "email"));
    const char *cid = m->customer_id ? m->customer_id : "-";
    struct nudge_message e;
    struct sbuf subject, text;
    char mkey[64];

    sbuf_init(&subject);
    sbuf_init(&text);
    snprintf(mkey, sizeof(mkey), "%s-email", key);
    sbuf_printf(&subject, "New %s task: %s (due %.10s)", k->kind, name && name[0] ? name : cid,
                due);
    sbuf_printf(&text,
                "A %s task is assigned to you (%s).\n\n"
                "%s\n\n"
                "Customer: %s (id %s)\n"
                "Phone:    %s\n"
                "Email:    %s\n"
                "Due:      %s\n"
                "Rule:     %s\n\n"
                "When it is done: nudgectl task done %" PRId64 " --outcome \"...\"\n",
                k->kind, k->assignee, k->note, name ? name : "", cid, phone ? phone : "-",
                email ? email : "-", due, m->rule, k->id);
    e = notice(m, mail_channel(), to, mkey, doc);
    e.to_name = k->assignee;
    e.subject = subject.s;
    e.text = text.s;
    memset(r, 0, sizeof(*r));
    t->mail.be->send(t->mail.state, &e, 1, r);
    sbuf_free(&subject);
    sbuf_free(&text);
}

/* Sends the notification webhook; fills r. */
static void
send_hook(struct task_state *t, const struct nudge_message *m, const char *key, json_t *doc,
          struct send_result *r)
{
    struct nudge_message h = notice(m, hook_channel(), t->hook_url, key, doc);
    memset(r, 0, sizeof(*r));
    t->hook.be->send(t->hook.state, &h, 1, r);
}

/*
 * After the task row exists: tells its assignee by each configured way not
 * done yet. Each way is recorded as soon as it is done or given up, so a
 * retry repeats only what failed transiently; that failure becomes res.
 */
static void
task_notify(struct task_state *t, const struct nudge_message *m, struct send_result *res)
{
    struct store_task row;
    struct task_row k;
    char key[48], due[32];
    struct sbuf failed;
    json_t *doc = NULL;

    sbuf_init(&failed);
    memset(&row, 0, sizeof(row));
    if ((!t->mail.be && !t->hook.be) || store_task_by_delivery(t->st, m->delivery_id, &row) < 0)
        goto out;
    k.id = row.id;
    k.due_at = row.due_at;
    k.assignee = row.assignee;
    k.kind = row.kind ? row.kind : "";
    k.note = row.note ? row.note : "";
    k.mail_done = !t->mail.be || row.notified_email;
    k.hook_done = !t->hook.be || row.notified_webhook;
    if (k.mail_done && k.hook_done)
        goto out;

    snprintf(key, sizeof(key), "task-%" PRId64, k.id);
    time_format_iso(k.due_at, due, sizeof(due));
    doc = task_doc(m, &k, due);
    for (int way = 0; way < 2; way++) {
        bool mail = way == 1;
        struct send_result r;
        char why[400];
        const char *to = NULL;
        if (mail ? k.mail_done : k.hook_done)
            continue;
        memset(&r, 0, sizeof(r));
        if (mail && !(to = mail_address(t, k.assignee))) {
            r.status = SEND_PERMANENT;
            snprintf(r.error, sizeof(r.error), "no address for %s (add it to notify.email)",
                     k.assignee && k.assignee[0] ? k.assignee : "a task without assignee");
        } else if (mail) {
            send_mail(t, m, &k, to, due, key, doc, &r);
        } else {
            send_hook(t, m, key, doc, &r);
        }
        if (r.status == SEND_TRANSIENT) {
            sbuf_printf(&failed, "%s%s: %s", failed.len ? "; " : "", mail ? "email" : "webhook",
                        r.error);
            if (r.retry_after > res->retry_after)
                res->retry_after = r.retry_after;
            continue;
        }
        snprintf(why, sizeof(why), "%s: %s", mail ? "email" : "webhook", r.error);
        if (r.status != SEND_OK)
            log_warn("task", "task %" PRId64 ": notifying %s by %s failed for good: %s", k.id,
                     k.assignee && k.assignee[0] ? k.assignee : "its assignee",
                     mail ? "email" : "webhook", r.error);
        if (store_task_mark_notified(t->st, k.id, mail ? STORE_TASK_BY_EMAIL : STORE_TASK_BY_WEBHOOK,
                                     m->date, r.status == SEND_OK ? NULL : why) < 0)
            sbuf_printf(&failed, "%stasks table: %s", failed.len ? "; " : "",
                        store_errmsg(t->st));
    }
    if (failed.len) {
        int retry_after = res->retry_after; /* the notifiers' own */
        send_result_set(res, SEND_TRANSIENT, -EAGAIN, "task %" PRId64 " made; notifying %s: %s",
                        k.id, k.assignee && k.assignee[0] ? k.assignee : "its assignee", failed.s);
        res->retry_after = retry_after;
    }
out:
    json_decref(doc);
    sbuf_free(&failed);
    store_task_clear(&row);
}

static void
task_send(void *state, const struct nudge_message *msgs, size_t n, struct send_result *res)
{
    struct task_state *t = state;
    for (size_t i = 0; i < n; i++) {
        const struct nudge_message *m = &msgs[i];
        json_t *p = m->payload;
        const char *assignee = m->to;
        int64_t due_in = json_integer_value(json_object_get(p, "due_in"));
        const char *kind = json_string_value(json_object_get(p, "kind"));
        struct store_task_new nt;
        char *detail;
        int rc;
        send_result_clear(&res[i]);
        if ((!assignee || !*assignee) && t->nstaff)
            assignee = t->staff[(size_t)m->delivery_id % t->nstaff];
        detail = xasprintf("%s task for %s (%s)", kind ? kind : "callback",
                           assignee && *assignee ? assignee : "nobody yet", m->rule);
        nt = (struct store_task_new){
            .delivery_id = m->delivery_id,
            .customer = m->customer_id,
            .rule = m->rule,
            .kind = kind ? kind : "callback",
            .assignee = assignee,
            .note = m->text ? m->text : "",
            .due_at = m->date + due_in,
            .created_at = m->date,
            .timeline = detail,
        };
        rc = t->st ? store_task_create(t->st, &nt) : -ENXIO;
        free(detail);
        if (rc == -ENXIO) {
            send_result_set(&res[i], SEND_TRANSIENT, rc,
                            "the task transport was given no store to write tasks to");
            continue;
        }
        if (rc < 0) {
            send_result_set(&res[i], SEND_TRANSIENT, -EIO, "tasks table: %s",
                            store_errmsg(t->st));
            send_result_report(&res[i]);
            continue;
        }
        res[i].status = SEND_OK;
        task_notify(t, m, &res[i]);
        /* The task exists (and its assignee was told, or why not is in
         * res): recorded now, before the next task. */
        send_result_report(&res[i]);
    }
}

static void
task_use_store(void *state, struct store *st)
{
    struct task_state *t = state;
    t->st = st;
}

static enum send_status
task_classify(int code)
{
    (void)code;
    return SEND_TRANSIENT;
}

const struct channel_backend channel_backend_task = {
    .name = "task",
    .max_concurrency = 1, /* local writes */
    .channels = task_channels,
    .open = task_open,
    .send = task_send,
    .close = task_close,
    .classify_error = task_classify,
    .batch_max = 100,
    .needs_payload = true,
    .use_store = task_use_store,
};
