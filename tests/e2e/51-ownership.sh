#!/usr/bin/env bash
# 51-ownership: one daemon owns a database, takes back at once what a dead
# instance left in flight, and keeps every file it creates private.
#
#   1. Private files: after a run that sends through the spool, `stat` of
#      every file the daemon created (nudge.db, -wal, -shm, nudge.db.lock,
#      each spool file) says 0600, and the spool directories 0700.
#   2. A second nudged on the same database refuses to start, exits non-zero
#      and names the pid of the one holding it; the first keeps running and
#      other readers (sqlite3) still read the database.
#   3. Take-back on a frozen clock: rows left in 'sending' by a "dead"
#      instance (another claim owner, a lease far in the future) are due at
#      start: `nudgectl advance` to the very same instant sends them, and
#      their unfinished attempt is not counted.
#   4. A database found group/world-readable at start is warned about in the
#      log, with the chmod that fixes it.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_init 51-ownership

CUSTOMERS=20
data=$E2E_DIR/data/crash
rules=$E2E_TMP/rules
mkdir -p "$rules"
cp "$data"/crash-greeting.subject "$data"/crash-greeting.txt "$rules/"
# The webhook goes to the spool: the URL is never dialled.
sed "s|@WEBHOOK_URL@|http://127.0.0.1:9/hooks|" "$data/crash-greeting.yaml.in" \
	>"$rules/crash-greeting.yaml"
{
	echo "id,name,first_name,email,birthday,tz,tier,consent_email"
	for i in $(seq -w 1 "$CUSTOMERS"); do
		echo "P$i,Private $i,P$i,p$i@example.com,1990-03-10,UTC,normal,yes"
	done
} >"$E2E_TMP/customers.csv"

inst=$E2E_TMP/inst
make_instance "$inst" "$rules"
# A permissive umask in the caller must not leak into the daemon's files.
umask 022

start_daemon "$inst" 2027-03-10T08:00:00Z
run_cmd ctl "$inst" import customers "$E2E_TMP/customers.csv"
check_rc "import $CUSTOMERS customers" 0 "$RC"
run_cmd ctl "$inst" advance --to 2027-03-10T09:01:00Z
check_rc "advance past the 09:00 fire" 0 "$RC"
check_eq "every delivery was sent through the spool" $((2 * CUSTOMERS)) \
	"$(sql "$inst" "SELECT count(*) FROM deliveries WHERE state = 'sent'")"

# ---- 1. private files -----------------------------------------------------------
mode_of() { stat -c %a "$1"; }
bad=
nfiles=0
for f in "$inst/nudge.db" "$inst/nudge.db-wal" "$inst/nudge.db-shm" "$inst/nudge.db.lock" \
	"$inst"/spool/*/*; do
	[ -e "$f" ] || { bad+=" $f(missing)"; continue; }
	nfiles=$((nfiles + 1))
	m=$(mode_of "$f")
	[ "$m" = 600 ] || bad+=" ${f#"$inst"/}($m)"
done
check_eq "all $nfiles files the daemon created are 0600 (database, -wal, -shm, lock, spool)" "" "$bad"
check_true "the spool holds the $((2 * CUSTOMERS)) messages checked above" \
	test "$(find "$inst/spool" -type f | wc -l)" -eq $((2 * CUSTOMERS))
bad=
for dir in "$inst"/spool/*/; do
	m=$(mode_of "$dir")
	[ "$m" = 700 ] || bad+=" ${dir#"$inst"/}($m)"
done
check_eq "the spool directories are 0700" "" "$bad"
check_eq "the lock file names the daemon's pid" "$(daemon_pid "$inst")" "$(cat "$inst/nudge.db.lock")"

# ---- 2. a second daemon on the same database ----------------------------------
first=$(daemon_pid "$inst")
run_cmd timeout 20 "$NUDGED" -c "$inst/nudge.yaml" --now 2027-03-10T09:01:00Z --frozen
check_true "a second nudged on the same database exits non-zero (exit $RC)" \
	test "$RC" != 0 -a "$RC" != 124
check_contains "it says the database is in use and names the pid holding it" "$ERR" \
	"is in use by another nudged (pid $first)"
check_contains "it names the lock file" "$ERR" "$inst/nudge.db.lock"
check_true "the first daemon still runs and answers" daemon_alive "$inst"
check_eq "other readers still read the database while the daemon holds it" \
	$((2 * CUSTOMERS)) "$(sql "$inst" "SELECT count(*) FROM deliveries")"
stop_daemon "$inst"
check_eq "the daemon stops cleanly" 0 "$EXIT_STATUS"

# ---- 3. take-back at start, on a frozen clock -------------------------------------
# Ten emails look as a killed instance left them: claimed by another owner,
# their lease far beyond the clock, their spool files never written.
ids=$(sql "$inst" "SELECT group_concat(id) FROM (SELECT id FROM deliveries
                   WHERE channel = 'email' ORDER BY id LIMIT 10)")
sqlite3 "$inst/nudge.db" "UPDATE deliveries SET state = 'sending', sent_at = NULL,
	attempts = 1, lease_until = strftime('%s', '2030-01-01'), claim_owner = 'dead0000',
	claim_token = 42 WHERE id IN ($ids)" || die "cannot stage the rows in flight"
for id in ${ids//,/ }; do rm -f "$inst/spool/email/$id.eml"; done
# ... and the database was left readable by everyone.
chmod 644 "$inst/nudge.db"
start_daemon "$inst" 2027-03-10T09:01:00Z
check_contains "the start-up log says the rows were taken back" "$(cat "$inst/nudged.log")" \
	"took back 10 deliveries a previous instance left in flight"
check_eq "none of them is still in 'sending' right after start" 0 \
	"$(sql "$inst" "SELECT count(*) FROM deliveries WHERE state = 'sending'")"
run_cmd ctl "$inst" advance --to 2027-03-10T09:01:00Z
check_rc "advance to the same instant (the clock does not move)" 0 "$RC"
check_eq "all ten are sent again at once, on the frozen clock" 10 \
	"$(sql "$inst" "SELECT count(*) FROM deliveries WHERE id IN ($ids) AND state = 'sent'")"
check_eq "the dead instance's attempt was not counted (attempts stays 1)" 10 \
	"$(sql "$inst" "SELECT count(*) FROM deliveries WHERE id IN ($ids) AND attempts = 1")"
missing=0
for id in ${ids//,/ }; do [ -f "$inst/spool/email/$id.eml" ] || missing=$((missing + 1)); done
check_eq "their spool files were written again" 0 "$missing"

# ---- 4. the readable database was warned about ------------------------------
log=$(cat "$inst/nudged.log")
check_contains "a world-readable database is warned about" "$log" \
	"$inst/nudge.db is readable by everyone (mode 0644)"
check_contains "the warning gives the chmod that fixes it" "$log" \
	"chmod 600 $inst/nudge.db $inst/nudge.db-wal $inst/nudge.db-shm"
stop_daemon "$inst"
check_eq "the daemon stops cleanly" 0 "$EXIT_STATUS"
check_log_clean "$inst"
e2e_finish
