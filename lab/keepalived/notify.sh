#!/bin/sh
# keepalived's sync-group notify script for the lab: the sequence of conntrackd's
# primary-backup.sh (conntrack-tools' doc/sync/primary-backup.sh), with the lab's conntrackd
# configuration, and a timestamp line per step appended to the firewall's notify log, so that the
# benchmark can tell when the commit finished:
#
#   <event> <CLOCK_REALTIME in ns>
#
# events: primary-start, committed (after `conntrackd -c`), primary-done, backup-start,
# backup-done, fault-start, fault-done; `error <what>` when a conntrackd call fails.
#
# Usage (keepalived runs it): notify.sh CONNTRACKD_CONFIG NOTIFY_LOG primary|backup|fault

CONF=$1
LOG=$2
STATE=$3
CONNTRACKD=${CONNTRACKD:-conntrackd}

stamp() {
	echo "$1 $(date +%s%N)" >>"$LOG"
}

run() {
	if ! "$CONNTRACKD" -C "$CONF" "$@"; then
		stamp "error conntrackd$(printf '_%s' "$@")"
	fi
}

case "$STATE" in
primary)
	stamp primary-start
	# Commit the external cache (the peer's entries) into the kernel table.
	run -c
	stamp committed
	# Flush the internal and external caches, resynchronise the internal cache with the
	# kernel table, send a bulk update to the backup.
	run -f
	run -R
	run -B
	stamp primary-done
	;;
backup)
	stamp backup-start
	# Is conntrackd running? (primary-backup.sh starts it when not; here the lab starts it.)
	run -s >/dev/null
	# Shorten the kernel's timers to purge the zombie entries; ask the primary for a resync.
	run -t
	run -n
	stamp backup-done
	;;
fault)
	stamp fault-start
	run -t
	stamp fault-done
	;;
*)
	echo "usage: notify.sh CONNTRACKD_CONFIG NOTIFY_LOG primary|backup|fault" >&2
	exit 1
	;;
esac
exit 0
