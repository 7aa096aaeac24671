#!/usr/bin/env bash
# sms.sh: SMS requests/s from nudged through the generic HTTP provider into
# a fast local HTTP receiver.
#
#   contrib/bench/sms.sh [N]          (default N = 20000 customers)
#   PERF=1 contrib/bench/sms.sh [N]   also record a perf profile of nudged
#
# As webhook.sh, with one sms action (a Chinese text with a coupon code, the
# shape of rules/spring-festival.yaml) and channels.sms on the http
# transport, provider generic: JSON body { to, text, parts }, E.164
# normalisation with default_country_code 86, success checked on the
# status and on the answer's JSON field "status" = "ok" (sink-http answers
# {"status":"ok"}). Then wrk against the same sink with bodies of the same
# size. There is no goal in the issue for SMS; webhook.sh's 5,000/s is the
# reference.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${1:-20000}
CONC=${CONC:-4}
BATCH=${BATCH:-200}
MAXCONN=${MAXCONN:-16}
BENCH_CMD="contrib/bench/sms.sh $N"
bench_init sms
http_bench sms "$N" 'sms: { text: "【Shop】{{first_name}}，新春快乐！凭券 {{coupon.code}} 享九折，{{coupon.expires}} 前有效。回T退订" }' sms \
	"{ transport: http, provider: generic, url: \"SINK_URL/sms/send\", default_country_code: 86, timeout: 10, max_connections: $MAXCONN, body_format: json, body: { to: \"{{to}}\", text: \"{{text}}\", parts: \"{{segments}}\" }, success: { status: [200, 202], json_field: status, json_value: ok } }"
result "sms" "$H_SENT SMS requests of $H_SIZE B: nudged **$H_RATE/s** end to end (enqueue ${H_ENQ}s + dispatch ${H_DISP}s; $H_RATE_DISP/s dispatch only; ${H_CPU_MSG} us CPU/request); receiver alone (wrk -c$H_CONNS) **$H_WRK/s**; $H_BUSY"
