/*
 * test_blame.c: failure attribution. Who each SMTP reply, HTTP status and
 * provider error code blames (recipient, sender, nobody), what a blame does
 * to the status, and the channel registry the dispatcher reads to decide
 * what a recipient fault suppresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "channel_email.h"
#include "channel_http.h"
#include "channel_registry.h"
#include "rules.h"

static void
smtp_rcpt_unknown_mailbox_is_the_recipient(void **state)
{
    (void)state;
    assert_int_equal(smtp_blame(SMTP_STAGE_RCPT, 550, 5, 1), BLAME_RECIPIENT);
    assert_int_equal(smtp_blame(SMTP_STAGE_RCPT, 553, 5, 1), BLAME_RECIPIENT);
    assert_int_equal(smtp_blame(SMTP_STAGE_RCPT, 550, 5, 2), BLAME_RECIPIENT);
    /* Without an enhanced code, the classic mailbox replies. */
    assert_int_equal(smtp_blame(SMTP_STAGE_RCPT, 550, 0, 0), BLAME_RECIPIENT);
    assert_int_equal(smtp_blame(SMTP_STAGE_RCPT, 551, 0, 0), BLAME_RECIPIENT);
    /* Relaying denied or authentication required: ours. */
    assert_int_equal(smtp_blame(SMTP_STAGE_RCPT, 554, 5, 7), BLAME_SENDER);
    assert_int_equal(smtp_blame(SMTP_STAGE_RCPT, 530, 0, 0), BLAME_SENDER);
    /* Too many recipients, system trouble: nobody's. */
    assert_int_equal(smtp_blame(SMTP_STAGE_RCPT, 552, 5, 5), BLAME_NOBODY);
    assert_int_equal(smtp_blame(SMTP_STAGE_RCPT, 554, 0, 0), BLAME_NOBODY);
}

static void
smtp_sender_side_refusals_are_the_sender(void **state)
{
    (void)state;
    assert_int_equal(smtp_blame(SMTP_STAGE_MAIL, 550, 5, 7), BLAME_SENDER);
    assert_int_equal(smtp_blame(SMTP_STAGE_MAIL, 553, 5, 1), BLAME_SENDER);
    assert_int_equal(smtp_blame(SMTP_STAGE_MAIL, 550, 0, 0), BLAME_SENDER);
    assert_int_equal(smtp_blame(SMTP_STAGE_AUTH, 535, 5, 7), BLAME_SENDER);
    assert_int_equal(smtp_blame(SMTP_STAGE_AUTH, 535, 0, 0), BLAME_SENDER);
    assert_int_equal(smtp_blame(SMTP_STAGE_SESSION, 554, 0, 0), BLAME_SENDER);
    /* DMARC after DATA is about our domain, not the mailbox. */
    assert_int_equal(smtp_blame(SMTP_STAGE_DATA, 550, 5, 7), BLAME_SENDER);
}

static void
smtp_4xx_is_nobody_at_every_stage(void **state)
{
    (void)state;
    for (int stage = SMTP_STAGE_SESSION; stage <= SMTP_STAGE_DATA; stage++) {
        assert_int_equal(smtp_blame((enum smtp_stage)stage, 421, 4, 7), BLAME_NOBODY);
        assert_int_equal(smtp_blame((enum smtp_stage)stage, 450, 4, 2), BLAME_NOBODY);
        assert_int_equal(smtp_blame((enum smtp_stage)stage, 454, 4, 7), BLAME_NOBODY);
        assert_int_equal(smtp_blame((enum smtp_stage)stage, 250, 2, 0), BLAME_NOBODY);
    }
}

static void
smtp_after_data_is_the_recipient_unless_system_or_content(void **state)
{
    (void)state;
    assert_int_equal(smtp_blame(SMTP_STAGE_DATA, 550, 0, 0), BLAME_RECIPIENT);
    assert_int_equal(smtp_blame(SMTP_STAGE_DATA, 552, 5, 2), BLAME_RECIPIENT);
    assert_int_equal(smtp_blame(SMTP_STAGE_DATA, 552, 5, 3), BLAME_NOBODY);
    assert_int_equal(smtp_blame(SMTP_STAGE_DATA, 554, 5, 6), BLAME_NOBODY);
}

static void
smtp_enhanced_codes_are_read_from_the_text(void **state)
{
    int c, s;
    (void)state;
    smtp_enhanced_code("5.1.1 <x@example.com>: Recipient address rejected", &c, &s);
    assert_int_equal(c, 5);
    assert_int_equal(s, 1);
    smtp_enhanced_code("550 5.7.1 Sender rejected", &c, &s);
    assert_int_equal(c, 5);
    assert_int_equal(s, 7);
    smtp_enhanced_code("4.10.2 odd but valid", &c, &s);
    assert_int_equal(c, 4);
    assert_int_equal(s, 10);
    smtp_enhanced_code("Mailbox unavailable", &c, &s);
    assert_int_equal(c, 0);
    assert_int_equal(s, 0);
    smtp_enhanced_code("5.1 is not a code", &c, &s);
    assert_int_equal(c, 0);
    smtp_enhanced_code(NULL, &c, &s);
    assert_int_equal(c, 0);
}

static void
http_statuses(void **state)
{
    (void)state;
    assert_int_equal(http_blame(false, 410), BLAME_RECIPIENT);
    assert_int_equal(http_blame(true, 410), BLAME_NOBODY);
    for (int sms = 0; sms < 2; sms++) {
        assert_int_equal(http_blame(sms, 401), BLAME_SENDER);
        assert_int_equal(http_blame(sms, 403), BLAME_SENDER);
        assert_int_equal(http_blame(sms, 429), BLAME_NOBODY);
        assert_int_equal(http_blame(sms, 500), BLAME_NOBODY);
        assert_int_equal(http_blame(sms, 503), BLAME_NOBODY);
        assert_int_equal(http_blame(sms, 400), BLAME_NOBODY);
        assert_int_equal(http_blame(sms, 404), BLAME_NOBODY);
    }
}

static void
provider_codes(void **state)
{
    (void)state;
    assert_int_equal(twilio_error_blame(21211), BLAME_RECIPIENT);
    assert_int_equal(twilio_error_blame(21614), BLAME_RECIPIENT);
    assert_int_equal(twilio_error_blame(21610), BLAME_RECIPIENT);
    assert_int_equal(twilio_error_blame(20003), BLAME_SENDER);
    assert_int_equal(twilio_error_blame(21606), BLAME_SENDER);
    assert_int_equal(twilio_error_blame(20429), BLAME_NOBODY);
    assert_int_equal(aliyun_code_blame("isv.MOBILE_NUMBER_ILLEGAL"), BLAME_RECIPIENT);
    assert_int_equal(aliyun_code_blame("InvalidAccessKeyId.NotFound"), BLAME_SENDER);
    assert_int_equal(aliyun_code_blame("SignatureDoesNotMatch"), BLAME_SENDER);
    assert_int_equal(aliyun_code_blame("isv.SMS_SIGNATURE_ILLEGAL"), BLAME_SENDER);
    assert_int_equal(aliyun_code_blame("isv.AMOUNT_NOT_ENOUGH"), BLAME_SENDER);
    assert_int_equal(aliyun_code_blame("isv.BUSINESS_LIMIT_CONTROL"), BLAME_NOBODY);
    assert_int_equal(aliyun_code_blame("Throttling.User"), BLAME_NOBODY);
}

static void
blame_sets_the_status(void **state)
{
    struct send_result r = {0};
    (void)state;
    send_result_set(&r, SEND_PERMANENT, 535, "auth %s", "failed");
    assert_int_equal(r.blame, BLAME_NOBODY);
    send_result_blame(&r, BLAME_SENDER);
    assert_int_equal(r.status, SEND_TRANSIENT);
    send_result_set(&r, SEND_TRANSIENT, 550, "x");
    send_result_blame(&r, BLAME_RECIPIENT);
    assert_int_equal(r.status, SEND_PERMANENT);
    send_result_set(&r, SEND_PERMANENT, 554, "x");
    send_result_blame(&r, BLAME_NOBODY);
    assert_int_equal(r.status, SEND_PERMANENT);
    assert_string_equal(send_blame_name(BLAME_RECIPIENT), "recipient");
    assert_string_equal(send_blame_name(BLAME_SENDER), "sender");
    assert_string_equal(send_blame_name(BLAME_NOBODY), "nobody");
}

static void
registry_describes_every_channel(void **state)
{
    (void)state;
    assert_int_equal(channel_count, 4);
    /* The rule loader stores a row's index as the action kind. */
    assert_string_equal(channel_infos[ACT_EMAIL].name, "email");
    assert_string_equal(channel_infos[ACT_SMS].name, "sms");
    assert_string_equal(channel_infos[ACT_WEBHOOK].name, "webhook");
    assert_string_equal(channel_infos[ACT_TASK].name, "task");
    assert_null(channel_infos[channel_count].name);
    assert_true(channel_info_find("email")->suppresses);
    assert_true(channel_info_find("sms")->suppresses);
    assert_false(channel_info_find("webhook")->suppresses);
    assert_false(channel_info_find("task")->suppresses);
    assert_string_equal(channel_info_find("sms")->customer_field, "phone");
    assert_null(channel_info_find("push"));
    assert_ptr_equal(channel_info_by_consent("sms"), channel_info_find("sms"));
    assert_null(channel_info_by_consent("task"));
    assert_string_equal(channel_names_joined(), "email, sms, webhook, task");
    assert_string_equal(channel_names()[2], "webhook");
    assert_null(channel_names()[4]);
    for (size_t i = 0; i < channel_count; i++) {
        assert_non_null(channel_infos[i].address_desc);
        assert_non_null(channel_infos[i].suppression);
        assert_true(channel_infos[i].default_concurrency >= 1);
        /* Every channel has a transport that can carry it. */
        bool carried = false;
        for (int b = 0; channel_backends[b]; b++)
            for (const char *const *c = channel_backends[b]->channels; *c; c++)
                carried |= !strcmp(*c, channel_infos[i].name);
        assert_true(carried);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(smtp_rcpt_unknown_mailbox_is_the_recipient),
        cmocka_unit_test(smtp_sender_side_refusals_are_the_sender),
        cmocka_unit_test(smtp_4xx_is_nobody_at_every_stage),
        cmocka_unit_test(smtp_after_data_is_the_recipient_unless_system_or_content),
        cmocka_unit_test(smtp_enhanced_codes_are_read_from_the_text),
        cmocka_unit_test(http_statuses),
        cmocka_unit_test(provider_codes),
        cmocka_unit_test(blame_sets_the_status),
        cmocka_unit_test(registry_describes_every_channel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
