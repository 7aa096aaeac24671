/*
 * channel_http.h: the `http` transport backend, carrying the webhook and sms
 * channels, sent by the HTTP engine (http_engine.c: curl multi on a private
 * libuv loop), plus the SMS helpers other modules may use (E.164
 * normalisation, GSM-7 / UCS-2 segment counting, provider blame tables:
 * channel_sms.c). The backend is three files joined by the private header
 * channel_http_internal.h: channel_http.c (open/send/close, the settings
 * both channels share, request and result helpers), channel_webhook.c (the
 * webhook channel and its Standard Webhooks signature) and
 * channel_sms_http.c (the sms channel; its providers are rows of the
 * sms_providers table).
 *
 * ---- Design -----------------------------------------------------------------
 *
 * The dispatcher calls send() on a worker thread with a batch of n messages
 * and one backend state per slot (never two threads on one state). send()
 * drives libcurl's multi interface from a private libuv loop owned by the
 * state, the standard curl + libuv integration: CURLMOPT_SOCKETFUNCTION
 * starts/stops one uv_poll_t per socket, CURLMOPT_TIMERFUNCTION arms one
 * uv_timer_t, and both callbacks feed curl_multi_socket_action(). So all n
 * requests of a batch run concurrently on that one thread, not a thread per
 * request. At most `max_connections` transfers are in the multi handle at a
 * time; the next message is added as one finishes, so each request's
 * `timeout` runs from its own start, not from the batch's. The multi handle
 * (and with it curl's connection cache, CURLMOPT_MAXCONNECTS =
 * max_connections) and the easy handles (DNS cache, TLS sessions) live in the
 * state between batches, so a slot keeps its connections alive and reuses
 * them. send() returns when every message of the batch has a result.
 *
 * Every request: no redirects followed (a 3xx is a permanent failure,
 * "redirects are not followed"), the configured timeout for the whole
 * request, no proxy from the environment (CURLOPT_PROXY "" unless `proxy` is
 * set), CURLOPT_NOSIGNAL, http and https only, no "Expect: 100-continue".
 *
 * ---- Results ----------------------------------------------------------------
 *
 *   2xx                   SEND_OK (sms: subject to the provider's own check)
 *   3xx                   SEND_PERMANENT "redirects are not followed"
 *   410                   webhook: SEND_PERMANENT, blame recipient (the
 *                         endpoint URL is suppressed); sms: SEND_PERMANENT
 *   408, 429, 5xx         SEND_TRANSIENT; Retry-After (delta-seconds or an
 *                         HTTP-date, taken relative to the response's Date
 *                         header, else the local clock) -> res.retry_after
 *                         (capped at 7 days)
 *   401, 403, 407         SEND_TRANSIENT, blame sender: our credentials or
 *                         signature; the channel pauses until fixed
 *   other 4xx             SEND_PERMANENT, blame nobody
 *   provider codes        twilio_error_blame / aliyun_code_blame refine the
 *                         above: an invalid or unreachable number is the
 *                         recipient's (permanent), account and sender errors
 *                         ours (transient, pause)
 *   connection refused, reset, timeout, DNS and TLS failures
 *                         SEND_TRANSIENT, res.code = -errno (ECONNREFUSED,
 *                         ECONNRESET, ETIMEDOUT, EHOSTUNREACH, EPROTO), the
 *                         text from curl's error buffer
 *   malformed URL, other scheme
 *                         SEND_PERMANENT, res.code = -EINVAL
 *   invalid phone number  SEND_PERMANENT, res.code = -EINVAL, blame
 *                         recipient (nobody when a number written without
 *                         a country code meets no default_country_code)
 *   unreadable or malformed webhook secret file
 *                         SEND_TRANSIENT, res.code = -errno / -EINVAL, blame
 *                         sender (a person can fix it; a configured secret
 *                         is never skipped: nothing goes out unsigned)
 * res.code is the HTTP status otherwise. classify_error() applies the
 * webhook column to a bare code.
 *
 * ---- Settings (the channel's mapping in nudge.yaml) ---------------------------
 *
 * Keys starting with '_' are the daemon's own (_file, _line, ...) and are
 * ignored. Unknown keys, keys of another provider, wrong types and missing
 * required keys are errors at open(), naming the key and what is expected.
 *
 * Both channels:
 *   transport        "http" (read by the registry)
 *   concurrency      read by the dispatcher (slots, each with its own state)
 *   timeout          seconds for a whole request, a number > 0 and <= 3600
 *                    (default 10; fractions allowed)
 *   max_connections  concurrent requests (and cached connections) per slot,
 *                    1-256 (default 16)
 *   user_agent       User-Agent header (default "nudge/VERSION")
 *   proxy            proxy URL (default: none; the environment's http_proxy
 *                    and friends are ignored on purpose)
 *   tls_ca_file      PEM bundle of trusted CAs (default: the system store)
 *
 * channels.webhook (the URL is the rule action's `url`, i.e. msg->to):
 *   secret_file      default secret for actions without their own
 *                    `secret_file`; read (and checked) at open()
 * Each message is POSTed as Content-Type: application/json: the payload
 * minus keys starting with '_', compact, UTF-8. Standard Webhooks headers:
 *   webhook-id: <idempotency key>      (stable across retries)
 *   webhook-timestamp: <msg->date, unix seconds>
 *   webhook-signature: v1,<base64(HMAC-SHA256(key, "id.timestamp.body"))>
 * where the key is the base64 decoding of the secret file's trimmed text
 * after its "whsec_" prefix (a file without the prefix is taken as plain
 * base64, as the reference implementations do). The action's secret comes
 * in the payload as "_secret_file" (re-read for each message, so a rotated
 * file is picked up without a restart) and wins over the channel's. With no
 * secret at all the request carries no webhook-signature header.
 *
 * channels.sms (the number is msg->to; the text is msg->text):
 *   provider         generic | twilio | aliyun (default generic)
 *   default_country_code
 *                    country calling code for numbers written without one,
 *                    e.g. 1 or "86" (default: none; such numbers are then
 *                    invalid)
 *   from             generic, twilio: the sender (number, alphanumeric id
 *                    or, for twilio, a Messaging Service SID starting "MG");
 *                    Aliyun's sender is the sign_name
 * Numbers are normalised to E.164 first (sms_normalize_e164); an impossible
 * one is SEND_PERMANENT "invalid phone number". Every request carries
 * `Idempotency-Key: <idempotency key>`.
 *
 *  provider: generic
 *   url              http(s) URL (required); may hold placeholders, whose
 *                    values are percent-encoded
 *   method           POST (default) or GET (the body fields go into the
 *                    query string)
 *   headers          mapping of header name -> fixed value
 *   body_format      form (default, application/x-www-form-urlencoded) or
 *                    json (application/json)
 *   body             mapping of field -> value; string values are templates
 *                    with the placeholders {{to}} (E.164), {{text}},
 *                    {{from}}, {{id}} (the idempotency key) and
 *                    {{segments}}; numbers and booleans are sent as they
 *                    are; json bodies may nest mappings and lists. Default:
 *                    { to: "{{to}}", text: "{{text}}" } (+ from if set).
 *   success          optional mapping: status (a code or a list of codes that
 *                    mean accepted; default any 2xx), json_field (a dotted
 *                    path into the JSON response) with json_value (what it
 *                    must equal). A listed status whose JSON check fails is
 *                    SEND_PERMANENT, quoting the field.
 *  provider: twilio
 *   account_sid      (required)
 *   auth_token | auth_token_file   (exactly one; the file is trimmed)
 *   from             (required)
 *   base_url         default https://api.twilio.com
 *   -> POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json, form
 *      To, From (or MessagingServiceSid), Body; HTTP basic auth sid:token;
 *      I-Twilio-Idempotency-Token as well as Idempotency-Key.
 *  provider: aliyun
 *   access_key_id    (required)
 *   access_key_secret | access_key_secret_file   (exactly one)
 *   sign_name        (required) 短信签名
 *   template_code    (required) e.g. SMS_123456789; the template must use
 *                    the variable ${text}
 *   region_id        default cn-hangzhou
 *   base_url         default https://dysmsapi.aliyuncs.com
 *   -> POST {base_url}/ form: the RPC API SendSms (Version 2017-05-25,
 *      PhoneNumbers = the E.164 digits without '+', SignName, TemplateCode,
 *      TemplateParam {"text": ...}, OutId = the idempotency key) with the
 *      RPC signature: HMAC-SHA1, SignatureVersion 1.0, a random
 *      SignatureNonce, Timestamp from the real clock (Aliyun rejects
 *      timestamps 15 minutes off, so not the daemon's frozen clock).
 *      The answer's Code decides: OK -> SEND_OK; throttling, isp.* and
 *      account/credential/signature codes -> SEND_TRANSIENT; others (an
 *      illegal number, blacklisted content, ...) -> SEND_PERMANENT.
 *
 * Example:
 *   channels:
 *     webhook: { transport: http, timeout: 10, secret_file: /etc/nudge/hook.secret }
 *     sms:
 *       transport: http
 *       provider: generic
 *       default_country_code: 86
 *       url: https://sms.example.com/send
 *       headers: { Authorization: "Bearer abc" }
 *       body_format: json
 *       body: { to: "{{to}}", message: "{{text}}", parts: "{{segments}}" }
 *       success: { status: [200, 201, 202], json_field: status, json_value: ok }
 */
#ifndef NUDGE_CHANNEL_HTTP_H
#define NUDGE_CHANNEL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nudge/channel.h>

/* Transport "http", channels "webhook" and "sms". */
extern const struct channel_backend channel_backend_http;

/* Who is to blame for HTTP status code from the webhook endpoint (sms
 * false) or an SMS provider (sms true): 401/403/407 the sender (our
 * credentials or signature), 410 from a webhook endpoint the recipient,
 * anything else nobody (see Results above). */
enum send_blame http_blame(bool sms, long code);
/* Twilio's error code (the "code" of its error JSON): invalid or unreachable
 * numbers and STOP replies are the recipient's, account, sender-number and
 * permission errors ours, anything else nobody. */
enum send_blame twilio_error_blame(long code);
/* Aliyun's answer Code: isv.MOBILE_NUMBER_ILLEGAL the recipient's; keys,
 * signature name, template, account and balance ours; anything else
 * (throttling, isp.*, limits) nobody. */
enum send_blame aliyun_code_blame(const char *code);
/* Whether an Aliyun answer Code is one a retry (or an operator) can fix:
 * throttling, isp.*, service errors, keys, signature, account, balance,
 * limits. */
bool aliyun_code_transient(const char *code);

/*
 * How many SMS segments utf8 takes. GSM-7 when every character is in the
 * GSM 03.38 basic set or its extension table (extension characters such as
 * '€', '[', '{', '^', '~' take two septets): up to 160 septets is one
 * segment, longer messages are 153 septets per segment. Otherwise UCS-2
 * (*ucs2 set): up to 70 UTF-16 units is one segment, else 67 per segment
 * (a character outside the BMP takes two units). Like a handset, never
 * splits an escape pair or a surrogate pair across segments. An empty text
 * is one segment. Returns the count, or -EINVAL for invalid UTF-8.
 * ucs2 may be NULL.
 */
int sms_segments(const char *utf8, bool *ucs2);

/*
 * Normalises a phone number as people write it ("+86 139-1234-5678",
 * "(617) 555-0180", "0044 20 7946 0958") to E.164 ("+8613912345678") in
 * out. Spaces, '-', '.', '/' and parentheses are dropped (and "(0)" after a
 * '+', the trunk prefix some write in international form); a leading '+',
 * "00" (or "011" when the default country is 1) introduces the country
 * code; otherwise default_cc (digits, may be NULL) is prefixed after
 * dropping a national trunk prefix ('1' in NANP, '0' elsewhere). Checks the
 * length (7-15 digits) and, for +1 and +86, the national numbering plan.
 * Returns 0, -EINVAL for an impossible number, -ENOSPC if out is too small.
 */
int sms_normalize_e164(const char *number, const char *default_cc, char *out, size_t size);

/*
 * The Standard Webhooks signature "v1,<base64 HMAC-SHA256>" of
 * "msg_id.timestamp.body" under key, into out (>= 50 bytes).
 * Returns 0 or -ENOSPC.
 */
int webhook_signature(const unsigned char *key, size_t keylen, const char *msg_id,
                      int64_t timestamp, const char *body, size_t len, char *out, size_t size);

#endif
