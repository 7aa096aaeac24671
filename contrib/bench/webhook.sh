#!/usr/bin/env bash
# webhook.sh: signed webhooks/s from nudged into a fast local HTTP receiver.
#
#   contrib/bench/webhook.sh [N]          (default N = 20000 customers)
#   PERF=1 contrib/bench/webhook.sh [N]   also record a perf profile of nudged
#
# The receiver is contrib/bench/sink-http.c (libmicrohttpd, 2 threads,
# answers 200, counts). A care rule fires once for N customers sharing a
# birthday, with one webhook action to the sink; channels.webhook is the
# http transport with a Standard Webhooks secret (every request signed),
# max_connections 16, dispatch { batch: 200, concurrency: 4 } (the defaults). Measured as in
# email.sh: total = `nudgectl advance` across the fire, split into enqueue
# and dispatch at the evaluator's log line. Then the receiver-only limit:
# wrk -t2 -c64 (4 slots x 16 connections) POSTing bodies of the same size to
# the same sink for 5 s. Goal: 5,000 webhooks/s.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${1:-20000}
CONC=${CONC:-4}
BATCH=${BATCH:-200}
MAXCONN=${MAXCONN:-16}
BENCH_CMD="contrib/bench/webhook.sh $N"
bench_init webhook
echo "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" >"$BT/hook.secret"
http_bench webhook "$N" 'webhook: { url: "SINK_URL/hooks/bench" }' webhook \
	"{ transport: http, timeout: 10, max_connections: $MAXCONN, secret_file: $BT/hook.secret }"
result "webhook" "$H_SENT signed webhooks of $H_SIZE B: nudged **$H_RATE/s** end to end (enqueue ${H_ENQ}s + dispatch ${H_DISP}s; $H_RATE_DISP/s dispatch only; ${H_CPU_MSG} us CPU/request); receiver alone (wrk -c$H_CONNS) **$H_WRK/s**; goal 5000/s: $(awk -v r="$H_RATE" 'BEGIN { print (r >= 5000 ? "met" : "not met") }'); $H_BUSY"
