#!/usr/bin/env bash
# 36-callback-note: the shipped monthly-callback rule writes a note that
# reads well for every customer: "no orders yet" for one who never ordered
# (not "0 orders, last on "), the count and the last order date for one who
# did, and no empty "()" for a missing phone.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 36-callback-note

rules=$E2E_TMP/rules
mkdir -p "$rules"
cp "$NUDGE_SRC/rules/monthly-callback.yaml" "$rules/"
inst=$E2E_TMP/inst
make_instance "$inst" "$rules" UTC
printf 'id,name,phone,tier,owner\nbuyer,Bea Buyer,+15550000001,high-value,alice\nnewbie,Ned New,,high-value,alice\n' >"$inst/customers.csv"
printf 'customer_id,order_id,amount,currency,ordered_at\nbuyer,O1,10.00,USD,2027-03-01T10:00:00Z\nbuyer,O2,12.00,USD,2027-04-11T10:00:00Z\n' >"$inst/orders.csv"
start_daemon "$inst" 2027-04-30T00:00:00Z
run_cmd ctl "$inst" import customers "$inst/customers.csv"
check_rc "import customers" 0 "$RC"
run_cmd ctl "$inst" import orders "$inst/orders.csv"
check_rc "import orders" 0 "$RC"
ctl "$inst" advance --to 2027-05-01T10:00:00Z >/dev/null
note() { sql "$inst" "SELECT t.note FROM tasks t JOIN customers c ON c.id = t.customer_id WHERE c.ext_id = '$1'"; }
check_eq "a customer without orders: no orders yet, no empty phone" \
	"Monthly check-in with Ned New; no orders yet" "$(note newbie)"
check_eq "a customer with orders: count and last order date" \
	"Monthly check-in with Bea Buyer (+15550000001); 2 order(s), last on 2027-04-11" "$(note buyer)"
stop_daemon "$inst"
check_log_clean "$inst"
e2e_finish
