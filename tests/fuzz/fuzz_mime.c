/*
 * fuzz_mime.c: the email composer, differentially. The input's first two
 * bytes pick the message's shape (marketing, unsubscribe URL, which parts,
 * rule, recipient, From, date); the rest, split at 0xff bytes, gives the
 * recipient's name, the subject, the text, the HTML and the rule name.
 * mime_compose_email (the thread's cached message, the direct writer) must
 * give exactly the bytes of mime_compose_email_gmime (a fresh message
 * written by GMime), or the same refusal. The cache carries over from one
 * input to the next, as it does from one delivery to the next.
 */
#include <stdlib.h>
#include <string.h>

#include "mime.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *const tos[] = {"a@example.net", "Zhang.San+vip@Example-Shop.com",
                                      "o'neil@example.org", "x_y@mail.example.co.uk"};
    static const char *const froms[] = {"Shop 商店 <shop@example.com>", "shop@example.com",
                                        "\"Shop, Inc.\" <news@example.com>",
                                        "Ünïcode Shop <a@example.org>"};
    char *field[5] = {NULL};
    struct nudge_message m = {0};
    struct sbuf a, b;
    struct nerr ea, eb;
    unsigned f, g;
    size_t start;
    int ra, rb, k = 0;

    if (size < 2)
        return 0;
    f = data[0];
    g = data[1];
    start = 2;
    for (size_t i = 2; i <= size && k < 5; i++) {
        if (i == size || data[i] == 0xff) {
            field[k++] = xstrndup((const char *)data + start, i - start);
            start = i + 1;
        }
    }
    m.delivery_id = (int64_t)(g * 7919u);
    m.idempotency_key = (g & 1) ? "key" : NULL;
    m.channel = "email";
    m.to = tos[(f >> 5) & 3];
    m.to_name = field[0];
    m.subject = field[1];
    m.text = (f & 4) ? (field[2] ? field[2] : "") : NULL;
    m.html = (f & 8) ? (field[3] ? field[3] : "") : NULL;
    if (!m.text && !m.html)
        m.text = field[2];
    m.rule = (f & 16) ? field[4] : NULL;
    m.marketing = f & 1;
    m.unsubscribe_url = (f & 2) ? "https://shop.example.com/u?c=1&t=abc" : NULL;
    sbuf_init(&a);
    sbuf_init(&b);
    nerr_clear(&ea);
    nerr_clear(&eb);
    ra = mime_compose_email(&m, froms[(g >> 1) & 3], (g & 8) ? "mail.example.org" : NULL,
                            1800000000 + (g >> 4), &a, &ea);
    rb = mime_compose_email_gmime(&m, froms[(g >> 1) & 3], (g & 8) ? "mail.example.org" : NULL,
                                  1800000000 + (g >> 4), &b, &eb);
    if (ra != rb || (ra == 0 && (a.len != b.len || memcmp(a.s, b.s, a.len) != 0)) ||
        (ra < 0 && strcmp(ea.msg, eb.msg) != 0))
        abort();
    sbuf_free(&a);
    sbuf_free(&b);
    for (int i = 0; i < 5; i++)
        free(field[i]);
    return 0;
}
