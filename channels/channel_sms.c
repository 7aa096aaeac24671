/*
 * channel_sms.c: what the sms channel knows whatever the provider: phone
 * numbers (E.164 normalisation), text (GSM-7 / UCS-2 segments), and which
 * provider answers blame the recipient or the sender (twilio_error_blame,
 * aliyun_code_blame) and which a retry can fix (aliyun_code_transient). The
 * HTTP requests themselves are built in channel_sms_http.c. Declared in
 * channel_http.h.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "channel_http.h"
#include "util.h"

/* ---- SMS text and numbers ------------------------------------------------ */

/* Decodes one UTF-8 sequence of already validated text. */
static uint32_t
utf8_next(const unsigned char **pp)
{
    const unsigned char *p = *pp;
    uint32_t c = *p++;
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (more)
        c &= 0x3F >> more;
    while (more-- > 0)
        c = (c << 6) | (*p++ & 0x3F);
    *pp = p;
    return c;
}

/* Septets a character takes in GSM 03.38: 1 (basic set), 2 (extension
 * table, ESC + code), 0 (not representable). */
static int
gsm_septets(uint32_t c)
{
    static const uint32_t basic[] = {
        0x00A3, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, 0x00F2, 0x00C7, 0x00D8, 0x00F8,
        0x00C5, 0x00E5, 0x0394, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8, 0x03A3,
        0x0398, 0x039E, 0x00C6, 0x00E6, 0x00DF, 0x00C9, 0x00A4, 0x00A1, 0x00C4, 0x00D6,
        0x00D1, 0x00DC, 0x00A7, 0x00BF, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0,
    };
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return 1;
    if (c < 0x80) {
        if (c && strchr(" !\"#%&'()*+,-./:;<=>?@$_\n\r", (int)c))
            return 1;
        if (c == 0x0C || (c && strchr("^{}\\[~]|", (int)c)))
            return 2;
        return 0; /* '`', tab and other control characters */
    }
    if (c == 0x20AC) /* euro sign: extension table */
        return 2;
    for (size_t i = 0; i < sizeof(basic) / sizeof(basic[0]); i++)
        if (basic[i] == c)
            return 1;
    return 0;
}

int
sms_segments(const char *utf8, bool *ucs2)
{
    const unsigned char *p;
    bool wide = false;
    size_t total = 0, single, per, used = 0;
    int segs = 1;
    if (ucs2)
        *ucs2 = false;
    if (!utf8 || !utf8_valid(utf8, strlen(utf8)))
        return -EINVAL;
    for (p = (const unsigned char *)utf8; *p;)
        if (gsm_septets(utf8_next(&p)) == 0)
            wide = true;
    /* Second pass: the size of each character in the chosen encoding. */
    for (p = (const unsigned char *)utf8; *p;) {
        uint32_t c = utf8_next(&p);
        total += wide ? (c > 0xFFFF ? 2 : 1) : (size_t)gsm_septets(c);
    }
    single = wide ? 70 : 160;
    per = wide ? 67 : 153;
    if (ucs2)
        *ucs2 = wide;
    if (total <= single)
        return 1;
    /* A concatenated message never splits an escape or surrogate pair. */
    for (p = (const unsigned char *)utf8; *p;) {
        uint32_t c = utf8_next(&p);
        size_t w = wide ? (c > 0xFFFF ? 2 : 1) : (size_t)gsm_septets(c);
        if (used + w > per) {
            segs++;
            used = 0;
        }
        used += w;
    }
    return segs;
}

/* The national significant number for +1 and +86 follows their plans. */
static bool
national_plan_ok(const char *full)
{
    size_t len = strlen(full);
    if (full[0] == '1') {
        /* NANP: NPA-NXX-XXXX, neither NPA nor NXX starting with 0 or 1. */
        return len == 11 && full[1] >= '2' && full[4] >= '2';
    }
    if (full[0] == '8' && full[1] == '6') {
        const char *nat = full + 2;
        size_t n = len - 2;
        if (nat[0] == '1' && n == 11)
            return nat[1] >= '3'; /* mobile: 1[3-9]X XXXX XXXX */
        if (nat[0] == '1' && nat[1] == '0')
            return n == 10;                        /* Beijing landline 10 XXXX XXXX */
        return nat[0] >= '2' && n >= 9 && n <= 11; /* other landlines */
    }
    return true;
}

int
sms_normalize_e164(const char *number, const char *default_cc, char *out, size_t size)
{
    char d[24], full[24];
    size_t nd = 0;
    bool plus = false;
    const char *p = number, *intl = NULL;
    if (!number)
        return -EINVAL;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '+') {
        plus = true;
        p++;
    }
    for (; *p; p++) {
        if (plus && strncmp(p, "(0)", 3) == 0) {
            p += 2; /* "+44 (0)20 ...": the trunk prefix, not dialled from abroad */
        } else if (*p >= '0' && *p <= '9') {
            if (nd + 1 >= sizeof(d))
                return -EINVAL;
            d[nd++] = *p;
        } else if (!strchr(" \t-./()", *p)) {
            return -EINVAL; /* letters, a second '+', an extension, ... */
        }
    }
    d[nd] = '\0';
    if (plus)
        intl = d;
    else if (default_cc && strcmp(default_cc, "1") == 0 && strncmp(d, "011", 3) == 0)
        intl = d + 3;
    else if (strncmp(d, "00", 2) == 0)
        intl = d + 2;
    if (intl) {
        snprintf(full, sizeof(full), "%s", intl);
    } else {
        const char *nat = d;
        if (!default_cc || !default_cc[0] || nd == 0)
            return -EINVAL;
        if (strcmp(default_cc, "1") == 0) {
            if (nd == 11 && d[0] == '1')
                nat = d + 1; /* 1-617-555-0180 */
        } else if (strcmp(default_cc, "86") == 0 && nd == 13 && strncmp(d, "861", 3) == 0) {
            nat = d + 2; /* 86 139 1234 5678 written without the '+' */
        } else if (d[0] == '0') {
            nat = d + 1; /* trunk prefix: 07911 123456 */
        }
        if (strlen(default_cc) + strlen(nat) + 1 > sizeof(full))
            return -EINVAL;
        snprintf(full, sizeof(full), "%s%s", default_cc, nat);
    }
    if (strlen(full) < 7 || strlen(full) > 15 || full[0] == '0' || !national_plan_ok(full))
        return -EINVAL;
    if (strlen(full) + 2 > size)
        return -ENOSPC;
    snprintf(out, size, "+%s", full);
    return 0;
}

enum send_blame
twilio_error_blame(long code)
{
    switch (code) {
    case 21211: /* invalid 'To' phone number */
    case 21214: /* 'To' phone number cannot be reached */
    case 21217: /* phone number does not appear to be valid */
    case 21401: /* invalid phone number */
    case 21407: /* this phone number type does not support SMS */
    case 21421: /* PhoneNumber is invalid */
    case 21610: /* the recipient replied STOP */
    case 21612: /* the 'To' number is not currently reachable via SMS */
    case 21614: /* 'To' number is not a valid mobile number */
        return BLAME_RECIPIENT;
    case 20003: /* authentication failed */
    case 20005: /* account not active */
    case 20008: /* test credentials against the live API */
    case 21210: /* 'From' number is not verified for the account */
    case 21212: /* invalid 'From' number */
    case 21408: /* permission to send to this region is not enabled */
    case 21606: /* the 'From' number cannot send SMS */
    case 21608: /* a trial account may only message verified numbers */
    case 21659: /* 'From' is not a Twilio number */
    case 21660: /* 'From' does not belong to the account */
    case 21703: /* the Messaging Service has no senders */
        return BLAME_SENDER;
    default:
        return BLAME_NOBODY;
    }
}

/* Whether code c starts with one of prefixes or equals one of exact (both
 * NULL-terminated; prefixes may be NULL). */
static bool
code_in(const char *c, const char *const *prefixes, const char *const *exact)
{
    for (int i = 0; prefixes && prefixes[i]; i++)
        if (strncmp(c, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    for (int i = 0; exact[i]; i++)
        if (strcmp(c, exact[i]) == 0)
            return true;
    return false;
}

enum send_blame
aliyun_code_blame(const char *c)
{
    /* Our account, keys, signature name or template. */
    static const char *const sender_prefixes[] = {
        "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "isv.SMS_SIGNATURE",
        "isv.SMS_TEMPLATE",   "isv.ACCOUNT_",          NULL,
    };
    static const char *const sender_exact[] = {
        "isv.OUT_OF_SERVICE",
        "isv.AMOUNT_NOT_ENOUGH",
        "isv.PRODUCT_UN_SUBSCRIPT",
        "isv.PRODUCT_UNSUBSCRIBE",
        "isv.DOMESTIC_NUMBER_NOT_SUPPORTED",
        NULL,
    };
    static const char *const recipient_exact[] = {
        "isv.MOBILE_NUMBER_ILLEGAL",
        NULL,
    };
    if (code_in(c, sender_prefixes, sender_exact))
        return BLAME_SENDER;
    if (code_in(c, NULL, recipient_exact))
        return BLAME_RECIPIENT;
    return BLAME_NOBODY;
}

bool
aliyun_code_transient(const char *c)
{
    static const char *const prefixes[] = {
        "Throttling",         "isp.",
        "ServiceUnavailable", "InternalError",
        "InvalidAccessKeyId", "SignatureDoesNotMatch",
        "SignatureNonceUsed", "InvalidTimeStamp",
        "Forbidden",          NULL,
    };
    static const char *const exact[] = {
        "isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL",    "isv.OUT_OF_SERVICE",
        "isv.AMOUNT_NOT_ENOUGH",      "isv.ACCOUNT_ABNORMAL",     "isv.ACCOUNT_NOT_EXISTS",
        "isv.SMS_SIGNATURE_ILLEGAL",  "isv.SMS_TEMPLATE_ILLEGAL", NULL,
    };
    return code_in(c, prefixes, exact);
}
