#!/usr/bin/env bash
# A two-firewall lab made of network namespaces, for failoverd's end-to-end tests and for trying
# failoverd by hand. See lab/README.md.
#
#   lab/lab.sh up [--no-shared] PREFIX  build the lab (every namespace named PREFIX-...);
#                                   --no-shared: the shared addresses on neither firewall (a
#                                   VRRP speaker adds them)
#   lab/lab.sh down PREFIX          remove it (never fails; kills what still runs inside it)
#   lab/lab.sh status PREFIX        namespaces, addresses, who holds the shared addresses, conntrack
#   lab/lab.sh move-to a|b PREFIX   move the virtual gateway and the SNAT address to that firewall
#   lab/lab.sh demo [PREFIX]        build a lab (default prefix fodemo), start failoverd with VRRP
#                                   on A and B, and show how to watch a failover
#
# Topology (namespaces):
#
#   PREFIX-client --- [PREFIX-lan: br0] ---+--- PREFIX-a ---+--- [PREFIX-wan: br0] --- PREFIX-server
#                                          |      | fo      |
#                                          +--- PREFIX-b ---+
#
# Interface names are the same in every lab (they live in the lab's namespaces, so they never
# collide): client `lan`; firewalls `lan`, `wan`, `fo`; server `wan`; bridge namespaces `br0`
# with ports `client`/`server`, `fw-a`, `fw-b`.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly LAB_DIR
readonly RULESET="$LAB_DIR/firewall.nft"
readonly NAMESPACES=(client a b server lan wan)

# Addresses (the tests in crates/lab/src rely on these).
readonly LAN4=10.0.1 LAN6=fd00:1: WAN4=10.0.2 WAN6=fd00:2:
readonly GATEWAY4=10.0.1.1 GATEWAY6=fd00:1::1 SNAT4=10.0.2.1 SNAT6=fd00:2::1
readonly FO_A=10.0.254.1 FO_B=10.0.254.2

usage() {
	sed -n '5,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

die() {
	echo "lab.sh: $*" >&2
	exit 1
}

check_prefix() {
	[[ $1 =~ ^[A-Za-z0-9_]{1,32}$ ]] || die "bad prefix '$1': 1 to 32 of [A-Za-z0-9_]"
}

# The lab's namespaces that exist now.
lab_namespaces() {
	local prefix=$1 name
	while read -r name _; do
		if [[ $name == "$prefix-"* ]]; then
			echo "$name"
		fi
	done < <(ip netns list 2>/dev/null)
}

ns_exists() {
	[[ -e /run/netns/$1 ]]
}

in_ns() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

# ---------------------------------------------------------------------------------------------
# up

# Set while `up` builds a lab, so that a failure tears down what was built.
BUILDING=""

on_exit() {
	local rc=$?
	if [[ -n $BUILDING ]]; then
		echo "lab.sh: building lab $BUILDING failed (exit $rc); tearing it down" >&2
		cmd_down "$BUILDING" || true
	fi
	exit "$rc"
}

# veth NS1 IF1 NS2 IF2: a veth pair with one end in each namespace, both up.
veth() {
	ip -n "$1" link add name "$2" type veth peer name "$4" netns "$3"
	ip -n "$1" link set dev "$2" up
	ip -n "$3" link set dev "$4" up
}

# port FIREWALL_OR_HOST_NS IF SEGMENT_NS PORT: a veth from a node into a segment's bridge.
port() {
	veth "$1" "$2" "$3" "$4"
	ip -n "$3" link set dev "$4" master br0
}

# cmd_up PREFIX [no-shared]
cmd_up() {
	local p=$1 shared=${2:-shared} n ns
	check_prefix "$p"
	command -v nft >/dev/null || die "nft is not installed"
	[[ -r $RULESET ]] || die "cannot read $RULESET"
	for n in "${NAMESPACES[@]}"; do
		! ns_exists "$p-$n" || die "namespace $p-$n exists: run 'lab.sh down $p' first"
	done
	BUILDING=$p

	for n in "${NAMESPACES[@]}"; do
		ns="$p-$n"
		ip netns add "$ns"
		ip -n "$ns" link set dev lo up
		# Addresses usable at once: no duplicate address detection on anything created from now.
		in_ns "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	done

	# L2 segments: a bridge each, without IPv6 of their own (no addresses, no router or listener
	# reports) and without multicast snooping, so that VRRP and neighbour discovery multicast
	# reach every port.
	for n in lan wan; do
		ns="$p-$n"
		in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
		ip -n "$ns" link add name br0 type bridge stp_state 0 mcast_snooping 0
		ip -n "$ns" link set dev br0 up
	done

	port "$p-client" lan "$p-lan" client
	port "$p-a" lan "$p-lan" fw-a
	port "$p-b" lan "$p-lan" fw-b
	port "$p-a" wan "$p-wan" fw-a
	port "$p-b" wan "$p-wan" fw-b
	port "$p-server" wan "$p-wan" server
	veth "$p-a" fo "$p-b" fo

	ip -n "$p-client" addr add "$LAN4.10/24" dev lan
	ip -n "$p-client" addr add "$LAN6:10/64" dev lan nodad
	ip -n "$p-client" route add default via "$GATEWAY4"
	ip -n "$p-client" -6 route add default via "$GATEWAY6"

	ip -n "$p-server" addr add "$WAN4.100/24" dev wan
	ip -n "$p-server" addr add "$WAN6:100/64" dev wan nodad
	# No route to the LAN: the server only ever sees the SNAT address.

	local fw host fo
	for fw in a b; do
		ns="$p-$fw"
		if [[ $fw == a ]]; then host=2 fo=$FO_A; else host=3 fo=$FO_B; fi
		ip -n "$ns" addr add "$LAN4.$host/24" dev lan
		ip -n "$ns" addr add "$LAN6:$host/64" dev lan nodad
		ip -n "$ns" addr add "$WAN4.$host/24" dev wan
		ip -n "$ns" addr add "$WAN6:$host/64" dev wan nodad
		ip -n "$ns" addr add "$fo/30" dev fo
		in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
			net.ipv6.conf.default.forwarding=1
		in_ns "$ns" nft -f "$RULESET"
	done

	if [[ $shared == no-shared ]]; then
		BUILDING=""
		echo "lab $p is up: neither firewall holds $GATEWAY4 $GATEWAY6 $SNAT4 $SNAT6"
		return 0
	fi
	# A starts as the active firewall.
	add_shared "$p-a"

	BUILDING=""
	echo "lab $p is up: A holds $GATEWAY4 $GATEWAY6 $SNAT4 $SNAT6"
}

# ---------------------------------------------------------------------------------------------
# down

cmd_down() {
	local p=$1 ns pids tries
	check_prefix "$p"
	local namespaces
	mapfile -t namespaces < <(lab_namespaces "$p")
	# Processes still running inside the lab (daemons, pings): TERM, a bounded wait, then KILL.
	# Only processes whose network namespace is one of the lab's are touched.
	for ns in "${namespaces[@]}"; do
		mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null || true)
		if ((${#pids[@]} > 0)); then
			kill -TERM "${pids[@]}" 2>/dev/null || true
		fi
	done
	for ns in "${namespaces[@]}"; do
		for ((tries = 0; tries < 20; tries++)); do
			[[ -z $(ip netns pids "$ns" 2>/dev/null || true) ]] && break
			sleep 0.1
		done
		mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null || true)
		if ((${#pids[@]} > 0)); then
			kill -KILL "${pids[@]}" 2>/dev/null || true
		fi
		ip netns del "$ns" 2>/dev/null || true
	done
	if ((${#namespaces[@]} > 0)); then
		echo "lab $p is down (${#namespaces[@]} namespaces removed)"
	fi
}

# ---------------------------------------------------------------------------------------------
# move-to

add_shared() {
	ip -n "$1" addr replace "$GATEWAY4/24" dev lan
	ip -n "$1" addr replace "$GATEWAY6/64" dev lan nodad
	ip -n "$1" addr replace "$SNAT4/24" dev wan
	ip -n "$1" addr replace "$SNAT6/64" dev wan nodad
}

del_shared() {
	local address dev
	for address in "$GATEWAY4/24 lan" "$GATEWAY6/64 lan" "$SNAT4/24 wan" "$SNAT6/64 wan"; do
		dev=${address#* }
		address=${address% *}
		# Absent already (never moved there, or moved twice): nothing to do.
		ip -n "$1" addr del "$address" dev "$dev" 2>/dev/null || true
	done
}

cmd_move_to() {
	local to=$1 p=$2 from
	check_prefix "$p"
	case $to in
	a) from=b ;;
	b) from=a ;;
	*) die "move-to: a or b, not '$to'" ;;
	esac
	for n in "${NAMESPACES[@]}"; do
		ns_exists "$p-$n" || die "namespace $p-$n does not exist: is lab $p up?"
	done
	# Never both at once: remove first, then add.
	del_shared "$p-$from"
	add_shared "$p-$to"
	# The client and the server learn the new owner's MAC at once: forget the old one, so their
	# next packet asks again and only the new owner answers.
	local host dev
	for host in "client lan" "server wan"; do
		dev=${host#* }
		host=${host% *}
		ip -n "$p-$host" -4 neigh flush dev "$dev"
		ip -n "$p-$host" -6 neigh flush dev "$dev"
	done
	echo "lab $p: $GATEWAY4 $GATEWAY6 $SNAT4 $SNAT6 moved to ${to^^}"
}

# ---------------------------------------------------------------------------------------------
# status

holder() {
	local p=$1 fw holders=()
	for fw in a b; do
		if ip -n "$p-$fw" -4 addr show dev lan 2>/dev/null | grep -q "inet $GATEWAY4/"; then
			holders+=("${fw^^}")
		fi
	done
	echo "${holders[*]:-nobody}"
}

cmd_status() {
	local p=$1 ns n
	check_prefix "$p"
	local namespaces
	mapfile -t namespaces < <(lab_namespaces "$p")
	if ((${#namespaces[@]} == 0)); then
		echo "lab $p: not up"
		return 0
	fi
	echo "lab $p: shared addresses held by: $(holder "$p")"
	for n in "${NAMESPACES[@]}"; do
		ns="$p-$n"
		if ! ns_exists "$ns"; then
			echo "  $ns: missing"
			continue
		fi
		echo "  $ns:"
		ip -n "$ns" -br addr show | grep -v '^lo ' | sed 's/^/    /'
		if [[ $n == a || $n == b ]]; then
			local count pids
			count=$(in_ns "$ns" conntrack -C 2>/dev/null || echo "?")
			pids=$(ip netns pids "$ns" | tr '\n' ' ')
			echo "    conntrack entries: $count; processes: ${pids:-none}"
		fi
	done
}

# ---------------------------------------------------------------------------------------------
# demo

# Where a built failoverd is, if any: $FAILOVERD_BIN_DIR, $CARGO_TARGET_DIR or the repo's target/.
find_bin_dir() {
	local dir
	for dir in "${FAILOVERD_BIN_DIR:-}" "${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/release}" \
		"${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/debug}" "$LAB_DIR/../target/release" \
		"$LAB_DIR/../target/debug"; do
		if [[ -n $dir && -x $dir/failoverd && -x $dir/failoverctl ]]; then
			(cd "$dir" && pwd)
			return 0
		fi
	done
	return 1
}

# demo_daemons PREFIX BIN_DIR WORK_DIR: start failoverd (conntrack backend, VRRP moving the
# gateway and SNAT addresses) in A and B.
demo_daemons() {
	local p=$1 bin=$2 work=$3 fw peer priority listen peer_addr fpr_a fpr_b
	mkdir -p "$work/a" "$work/b"
	fpr_a=$("$bin/failoverctl" keygen --out "$work/a/node.pem" --force | grep -o -m1 'sha256:[0-9a-fA-F]*')
	fpr_b=$("$bin/failoverctl" keygen --out "$work/b/node.pem" --force | grep -o -m1 'sha256:[0-9a-fA-F]*')
	for fw in a b; do
		if [[ $fw == a ]]; then
			peer=$fpr_b priority=200 listen=$FO_A peer_addr=$FO_B
		else
			peer=$fpr_a priority=100 listen=$FO_B peer_addr=$FO_A
		fi
		cat >"$work/$fw/failoverd.toml" <<EOF
[node]
name = "$fw"
key = "node.pem"
priority = $priority

[link]
listen = "$listen:7500"
peer = "$peer_addr:7500"
peer_key = "$peer"

[sessions]
backend = "conntrack"

[sessions.conntrack]
exclude = ["10.0.254.0/30"]

[takeover]
mode = "vrrp"

[[vrrp.instance]]
name = "lan"
interface = "lan"
vrid = 51
addresses = ["$GATEWAY4/24"]

[[vrrp.instance]]
name = "wan"
interface = "wan"
vrid = 52
addresses = ["$SNAT4/24"]

[[vrrp.instance]]
name = "lan6"
interface = "lan"
vrid = 61
addresses = ["fe80::1/64", "$GATEWAY6/64"]

[[vrrp.instance]]
name = "wan6"
interface = "wan"
vrid = 62
addresses = ["fe80::1/64", "$SNAT6/64"]

[control]
socket = "failoverd.sock"
EOF
		in_ns "$p-$fw" "$bin/failoverd" --config "$work/$fw/failoverd.toml" \
			>"$work/$fw/failoverd.log" 2>&1 &
	done
	sleep 1
	for fw in a b; do
		if [[ -z $(ip netns pids "$p-$fw") ]]; then
			echo "failoverd on ${fw^^} exited; its log ($work/$fw/failoverd.log):"
			tail -n 5 "$work/$fw/failoverd.log" | sed 's/^/    /'
			return 1
		fi
	done
	return 0
}

cmd_demo() {
	local p=${1:-fodemo}
	check_prefix "$p"
	if [[ -n $(lab_namespaces "$p") ]]; then
		cmd_down "$p"
	fi
	local bin work="/run/$p-failoverd"
	if ! bin=$(find_bin_dir); then
		# Without failoverd nobody would hold the gateway: the manual lab instead.
		cmd_up "$p"
		echo
		echo "== no built failoverd found (cargo build --release, or set FAILOVERD_BIN_DIR):"
		echo "   the shared addresses are on A; move them with: $LAB_DIR/lab.sh move-to b $p"
		return 0
	fi
	cmd_up "$p" no-shared
	echo
	echo "== failoverd from $bin on A and B: conntrack backend, VRRP (A 200, B 100); files in $work"
	demo_daemons "$p" "$bin" "$work" || return 1
	sleep 1
	echo
	echo "== through A: the client pings the server; A tracks it, SNATed to $SNAT4, ct mark 0x2a"
	in_ns "$p-client" ping -c 2 -i 0.2 -W 1 "$WAN4.100" | sed 's/^/    /'
	in_ns "$p-a" conntrack -L -p icmp 2>/dev/null | sed 's/^/    A: /'
	"$bin/failoverctl" --socket "$work/a/failoverd.sock" status | head -n 8 | sed 's/^/    A: /' || true

	cat <<EOF

== watch a failover (each in its own terminal):
    # a ping (or any TCP stream) from the client to the server:
    ip netns exec $p-client ping -i 0.2 $WAN4.100
    # B's conntrack table, as failoverd fills it:
    watch -n 0.5 "ip netns exec $p-b conntrack -L 2>/dev/null | tail -n 20"
    # the VRRP group, the trackers and the sessions:
    $bin/failoverctl --socket $work/b/failoverd.sock status
    # hand over on purpose, then back:
    $bin/failoverctl --socket $work/a/failoverd.sock switchover
    $bin/failoverctl --socket $work/b/failoverd.sock switchover
    # or fail A's WAN link: A's group goes to fault and B takes over both networks:
    ip -n $p-a link set wan down; ip -n $p-a link set wan up
    $LAB_DIR/lab.sh status $p
    $LAB_DIR/lab.sh down $p      # removes the lab and stops everything running inside it
EOF
}

# ---------------------------------------------------------------------------------------------

main() {
	(($# >= 1)) || usage
	[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
	trap on_exit EXIT
	# Interrupted: exit, so that the EXIT trap tears down a half-built lab.
	trap 'exit 130' INT
	trap 'exit 143' TERM
	local cmd=$1
	shift
	case "$cmd:$#" in
	up:1) cmd_up "$1" ;;
	up:2)
		[[ $1 == --no-shared ]] || usage
		cmd_up "$2" no-shared
		;;
	down:1) cmd_down "$1" ;;
	status:1) cmd_status "$1" ;;
	move-to:2) cmd_move_to "$1" "$2" ;;
	demo:0 | demo:1) cmd_demo "$@" ;;
	*) usage ;;
	esac
}

main "$@"
