/*
 * fuzz_template.c: any bytes as a Mustache template, rendered against a
 * fixed context with and without HTML escaping; errors must carry a reason.
 */
#include <stdlib.h>
#include <string.h>

#include "template.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int
partial(void *ud, const char *name, char **text, size_t *len)
{
    (void)ud;
    if (strcmp(name, "p"))
        return -2; /* -ENOENT */
    *text = xstrdup("[{{name}}{{> p}}]");
    *len = strlen(*text);
    return 0;
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct tmpl *t = NULL;
    struct nerr err;
    json_t *ctx = json_pack("{sss[ss]s{si}sb}", "name", "王芳 <&>", "items", "a", "b", "coupon",
                            "percent_off", 15, "vip", 1);
    if (tmpl_compile("fuzz", (const char *)data, size, &t, &err) == 0) {
        for (unsigned flags = 0; flags <= TMPL_ESCAPE_HTML; flags++) {
            struct sbuf out;
            sbuf_init(&out);
            if (tmpl_render(t, ctx, flags, partial, NULL, &out, &err) < 0 && !err.msg[0])
                abort();
            sbuf_free(&out);
        }
        tmpl_free(t);
    } else if (!err.msg[0]) {
        abort();
    }
    json_decref(ctx);
    return 0;
}
