#!/usr/bin/env bash
# 34-import-errors: `nudgectl import` reports row errors as FILE:LINE: ...
# and then imports nothing; a good file imports idempotently.
#
# Proves, against a running daemon:
#   1. Customers files with one bad row each -- a missing id, the impossible
#      date 2026-02-30, invalid UTF-8 bytes, an unknown time zone, a
#      duplicate id, a month 13, a row with too few fields, an unclosed
#      quote -- are reported as FILE:LINE: with the line of the bad row
#      (physical lines: a quoted value spanning two lines, a byte-order mark
#      and CRLF line ends must not shift it), nudgectl exits 1, and the
#      database is byte-for-byte unchanged (`sqlite3 .dump` before and after).
#      Every bad row of a file is reported, not only the first.
#   2. The same good customers file imported twice leaves an identical dump
#      (idempotent upsert; the second run reports every row unchanged); the
#      same holds for a good orders file.
#   3. An orders file naming an unknown customer, an impossible amount or an
#      impossible time is an error at its line, and nothing is imported.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 34-import-errors

data=$E2E_DIR/data
inst=$E2E_TMP/inst
make_instance "$inst" "$NUDGE_SRC/rules" Asia/Shanghai
start_daemon "$inst" 2027-01-01T00:00:00Z
# Settle the start-up cycle so the database only changes through imports.
ctl "$inst" advance --to 2027-01-01T00:00:00Z >/dev/null || die "settling advance failed"

bad=$E2E_TMP/bad
mkdir -p "$bad"
H='id,name,first_name,email,phone,birthday,tz,tier'
ok1='K1,Kim Good,Kim,kim@example.com,+12025550171,1990-01-01,UTC,normal'
ok2='K2,Lee Good,Lee,lee@example.com,+12025550172,1991-02-02,Europe/Berlin,potential'

# expect_import_error KIND FILE LINE NEEDLE...: the import of FILE fails with
# FILE:LINE: and every NEEDLE in the message; the dump is unchanged.
expect_import_error() {
	local kind=$1 f=$2 line=$3 what before after
	shift 3
	what="$kind $(basename "$f")"
	before=$(db_dump "$inst")
	run_cmd ctl "$inst" import "$kind" "$f"
	check_rc "import $what fails" 1 "$RC"
	check_match "import $what reports $(basename "$f"):$line:" "$ERR" \
		"(^|/)$(basename "$f" | sed 's/\./\\./g'):$line: "
	local n
	for n in "$@"; do
		check_contains "import $what says '$n'" "$ERR" "$n"
	done
	after=$(db_dump "$inst")
	if [ "$before" = "$after" ]; then
		pass "import $what leaves the database unchanged"
	else
		fail "import $what leaves the database unchanged" "(the .dump differs:)"
		diff <(printf '%s\n' "$before") <(printf '%s\n' "$after") | head -20 | sed 's/^/    | /' >&2
	fi
}

# Start from a populated database so that "unchanged" means something.
run_cmd ctl "$inst" import customers "$data/customers-good.csv"
check_rc "import the good customers file" 0 "$RC"
check_match "the first import inserts 5 rows" "$OUT" "5 rows: 5 inserted"

# ---- 1. customers ----------------------------------------------------------------
printf '%s\n%s\n,No Id,No,noid@example.com,,1990-01-01,UTC,normal\n%s\n' "$H" "$ok1" "$ok2" >"$bad/missing-id.csv"
expect_import_error customers "$bad/missing-id.csv" 3 "id"

printf '%s\n%s\n%s\nK3,Feb Thirty,Feb,feb@example.com,,2026-02-30,UTC,normal\n' "$H" "$ok1" "$ok2" >"$bad/feb-30.csv"
expect_import_error customers "$bad/feb-30.csv" 4 "2026-02-30"

printf '%s\n%s\n%s\nK3,Bad \xff\xfe Bytes,Bad,bad@example.com,,1990-01-01,UTC,normal\n%s\n' "$H" "$ok1" "$ok2" \
	'K4,Fine,Fine,fine@example.com,,1990-01-01,UTC,normal' >"$bad/bad-utf8.csv"
expect_import_error customers "$bad/bad-utf8.csv" 4 "UTF-8"

printf '%s\n%s\nK3,Mars Man,Mars,mars@example.com,,1990-01-01,Mars/Olympus,normal\n%s\n' "$H" "$ok1" "$ok2" >"$bad/bad-zone.csv"
expect_import_error customers "$bad/bad-zone.csv" 3 "Mars/Olympus"

printf '%s\n%s\n%s\nK1,Kim Again,Kim,kim2@example.com,,1990-01-01,UTC,normal\n' "$H" "$ok1" "$ok2" >"$bad/dup-id.csv"
expect_import_error customers "$bad/dup-id.csv" 4 "K1"

printf '%s\n%s\nK3,Month Thirteen,M,m13@example.com,,1990-13-01,UTC,normal\n' "$H" "$ok1" >"$bad/month-13.csv"
expect_import_error customers "$bad/month-13.csv" 3 "1990-13-01"

printf '%s\n%s\nK3,Short Row,Short,short@example.com,,1990-01-01,UTC\n' "$H" "$ok1" >"$bad/short-row.csv"
expect_import_error customers "$bad/short-row.csv" 3

printf '%s\n%s\nK3,"Never Closed,N,n@example.com,,1990-01-01,UTC,normal\n%s\n' "$H" "$ok1" "$ok2" >"$bad/open-quote.csv"
expect_import_error customers "$bad/open-quote.csv" 3

# A quoted value over two lines: the bad row after it is on physical line 4.
printf '%s\nK1,"Kim\nGood",Kim,kim@example.com,,1990-01-01,UTC,normal\nK3,Bad Date,B,bd@example.com,,1990-02-31,UTC,normal\n' "$H" >"$bad/multiline.csv"
expect_import_error customers "$bad/multiline.csv" 4 "1990-02-31"

# A byte-order mark and CRLF line ends do not shift the line either.
printf '\xef\xbb\xbf%s\r\n%s\r\nK3,Bad Date,B,bd@example.com,,2026-02-30,UTC,normal\r\n' "$H" "$ok1" >"$bad/bom-crlf.csv"
expect_import_error customers "$bad/bom-crlf.csv" 3 "2026-02-30"

# Every bad row is reported.
printf '%s\n%s\n,x,x,x@example.com,,1990-01-01,UTC,normal\n%s\nK9,Late,L,l@example.com,,2026-02-30,Nowhere/Land,normal\n' \
	"$H" "$ok1" "$ok2" >"$bad/two-errors.csv"
expect_import_error customers "$bad/two-errors.csv" 3 "two-errors.csv:5:"

# ---- 2. idempotent upsert ---------------------------------------------------------
d1=$(db_dump "$inst")
run_cmd ctl "$inst" import customers "$data/customers-good.csv"
check_rc "the good customers file again" 0 "$RC"
check_match "the second import reports every row unchanged" "$OUT" "5 rows: 0 inserted, 0 updated, 5 unchanged"
d2=$(db_dump "$inst")
if [ "$d1" = "$d2" ]; then
	pass "importing the same customers file twice leaves an identical dump"
else
	fail "importing the same customers file twice leaves an identical dump" "(diff:)"
	diff <(printf '%s\n' "$d1") <(printf '%s\n' "$d2") | head -20 | sed 's/^/    | /' >&2
fi
check_eq "5 customers in the store" 5 "$(sql "$inst" "SELECT count(*) FROM customers")"
check_eq "a quoted name with a comma and doubled quotes survives" 'Renée "Rae" Núñez' \
	"$(sql "$inst" "SELECT name FROM customers WHERE ext_id = 'G004'")"
check_eq "an empty tz means the default zone (stored as NULL)" "null" \
	"$(sql "$inst" "SELECT coalesce(tz, 'null') FROM customers WHERE ext_id = 'G003'")"

run_cmd ctl "$inst" import orders "$data/orders-good.csv"
check_rc "import the good orders file" 0 "$RC"
check_match "the orders import inserts 5 rows" "$OUT" "5 rows: 5 inserted"
o1=$(db_dump "$inst")
run_cmd ctl "$inst" import orders "$data/orders-good.csv"
check_rc "the good orders file again" 0 "$RC"
check_match "the second orders import reports every row unchanged" "$OUT" "5 rows: 0 inserted, 0 updated, 5 unchanged"
o2=$(db_dump "$inst")
if [ "$o1" = "$o2" ]; then
	pass "importing the same orders file twice leaves an identical dump"
else
	fail "importing the same orders file twice leaves an identical dump" "(diff:)"
	diff <(printf '%s\n' "$o1") <(printf '%s\n' "$o2") | head -20 | sed 's/^/    | /' >&2
fi
check_eq "5 orders in the store" 5 "$(sql "$inst" "SELECT count(*) FROM orders")"

# A changed row is an update, and only that row changes.
sed 's/^G005,陳怡君,怡君,,/G005,陳怡君,怡君,yijun@example.com,/' "$data/customers-good.csv" >"$E2E_TMP/customers-changed.csv"
run_cmd ctl "$inst" import customers "$E2E_TMP/customers-changed.csv"
check_rc "import with one changed row" 0 "$RC"
check_match "one row is reported updated" "$OUT" "5 rows: 0 inserted, 1 updated, 4 unchanged"
check_eq "the change is stored" yijun@example.com \
	"$(sql "$inst" "SELECT email FROM customers WHERE ext_id = 'G005'")"

# ---- 3. orders errors --------------------------------------------------------------
OH='customer_id,order_id,amount,currency,ordered_at'
printf '%s\nG001,O-9001,10.00,GBP,2026-12-01T10:00:00Z\nNOPE-42,O-9002,10.00,USD,2026-12-01T10:00:00Z\n' "$OH" >"$bad/orders-unknown.csv"
expect_import_error orders "$bad/orders-unknown.csv" 3 "NOPE-42"
printf '%s\nG001,O-9001,ten pounds,GBP,2026-12-01T10:00:00Z\n' "$OH" >"$bad/orders-amount.csv"
expect_import_error orders "$bad/orders-amount.csv" 2 "ten pounds"
printf '%s\nG001,O-9001,10.00,GBP,2026-12-01T10:00:00Z\nG002,O-9002,10.00,CNY,2026-02-30T10:00:00Z\n' "$OH" >"$bad/orders-date.csv"
expect_import_error orders "$bad/orders-date.csv" 3 "2026-02-30"
printf '%s\nG001,O-9001,10.00,GBP,2026-12-01T10:00:00Z\n' 'customer,order_id,amount,currency,ordered_at' >"$bad/orders-header.csv"
expect_import_error orders "$bad/orders-header.csv" 1 "customer_id"

check_true "the daemon is alive after the failed imports" daemon_alive "$inst"
stop_daemon "$inst"
check_eq "the daemon stops with status 0" 0 "$EXIT_STATUS"
check_log_clean "$inst"

e2e_finish
