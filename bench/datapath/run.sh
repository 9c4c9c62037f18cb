#!/usr/bin/env bash
# Compare two network namespaces joined by
#   veth      a plain veth pair (kernel baseline; "-nooff" = TX offloads off)
#   dpfwd-vN  our userspace datapath (bench/datapath/dpfwd) with installed flows,
#             AF_PACKET ring version N (2: wake per frame, 3: per 1 ms block)
#   dpfwd-vN-gso  the same with PACKET_VNET_HDR offload; the peers keep TSO on
#   dpfwd-vN-gso-fast  the same with the kernel fast path (eBPF), as the agent
#             runs by default: the flows forward in the senders' softirq, so
#             the switch's own CPU stays near zero and "pps/core" is not
#             meaningful (the work is charged to the generator's core)
#   dpfwd-xdp our datapath with AF_XDP ports
#   upcalls   dpfwd with no flows: every 64-byte frame is a miss; reports the
#             misses delivered to the handler per second and those dropped
#   ovs       Open vSwitch's userspace datapath (datapath_type=netdev), if installed
# measuring ping RTT, iperf3 TCP throughput (one stream) and the 64-byte packet
# rate delivered (pktblast on one side, the receiver's rx counter on the other;
# the frames go to an absent MAC so the receiving stack drops them at once and
# the rate measures the path, not the receiver's UDP stack).
#
# Everything runs in namespaces named dpb<pid>-*, removed on exit. Needs root,
# iperf3, ping and ethtool (installed with apt-get when missing and APT=1).
# Knobs: DUR (seconds per measurement, default 5), PINGS (default 200),
# MODES (default "veth veth-nooff dpfwd ovs"), OVS_PORT_TYPE (afxdp|system,
# default afxdp), DP_CPU / GEN_CPU (cores for the switch and the generators),
# DP_PROCS (dpfwd's GOMAXPROCS, default 1), DPFWD_ARGS (extra dpfwd flags,
# e.g. "-busy-poll 200us" as the agent runs, or "-cpuprofile /tmp/dpfwd.prof").
set -euo pipefail

DUR=${DUR:-5}
PINGS=${PINGS:-200}
MODES=${MODES:-"veth veth-nooff dpfwd-v2 dpfwd-v3 dpfwd-v2-gso dpfwd-v3-gso dpfwd-xdp upcalls ovs"}
OVS_PORT_TYPE=${OVS_PORT_TYPE:-afxdp}
DP_CPU=${DP_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
APT=${APT:-1}
P=dpb$$
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=$(mktemp -d /tmp/dpbench.XXXXXX)
PIDS=()

die() { echo "run.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"

cleanup() {
	set +e
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
	ovs_stop
	for ns in $(ip netns list | awk '{print $1}' | grep "^$P-"); do ip netns del "$ns"; done
	rm -rf "$WORK"
}
trap cleanup EXIT

need() {
	local missing=()
	for t in iperf3:iperf3 ping:iputils-ping ethtool:ethtool; do
		command -v "${t%%:*}" >/dev/null || missing+=("${t##*:}")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		[ "$APT" = 1 ] || die "missing packages: ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
}

build() {
	(cd "$ROOT" && go build -o "$WORK/dpfwd" ./bench/datapath/dpfwd && go build -o "$WORK/pktblast" ./bench/datapath/pktblast)
}

# topology MODE: namespaces A (10.9.0.1) and B (10.9.0.2); with a switch
# their veth peers a1, b1 live in namespace D.
topology() {
	local mode=$1
	for ns in A B D; do ip netns add "$P-$ns"; ip -n "$P-$ns" link set lo up; done
	if [[ $mode == veth* ]]; then
		ip -n "$P-A" link add a0 type veth peer name b0 netns "$P-B"
	else
		ip -n "$P-A" link add a0 type veth peer name a1 netns "$P-D"
		ip -n "$P-B" link add b0 type veth peer name b1 netns "$P-D"
		ip -n "$P-D" link set a1 up; ip -n "$P-D" link set b1 up
	fi
	ip -n "$P-A" addr add 10.9.0.1/24 dev a0; ip -n "$P-A" link set a0 up
	ip -n "$P-B" addr add 10.9.0.2/24 dev b0; ip -n "$P-B" link set b0 up
	if [[ $mode != veth && $mode != *-gso* ]]; then
		# Userspace switches forward MTU-sized frames only: no TSO/checksum offload.
		ip netns exec "$P-A" ethtool -K a0 tx off >/dev/null
		ip netns exec "$P-B" ethtool -K b0 tx off >/dev/null
	fi
}

teardown() {
	for ns in A B D; do ip netns del "$P-$ns" 2>/dev/null || true; done
}

cpu_ticks() { # utime+stime of a pid, in clock ticks
	awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

measure() { # MODE SWITCH_PID
	local mode=$1 spid=${2:-} t0 t1 rtt mbps pps ok=0
	for _ in $(seq 50); do
		ip netns exec "$P-A" ping -c1 -W1 10.9.0.2 >/dev/null 2>&1 && { ok=1; break; }
	done
	[ $ok = 1 ] || { printf '%-12s %s\n' "$mode" "no connectivity"; tail -5 "$WORK/dpfwd.log" 2>/dev/null; return; }
	rtt=$(ip netns exec "$P-A" ping -c "$PINGS" -i 0.01 10.9.0.2 | python3 -c '
import re,sys
v=sorted(float(m.group(1)) for m in re.finditer(r"time=([0-9.]+)", sys.stdin.read()))
print("%.0f / %.0f" % (v[len(v)//2]*1000, v[int(len(v)*0.99)-1]*1000) if v else "-")')
	ip netns exec "$P-B" iperf3 -s -1 -D >/dev/null 2>&1; sleep 0.3
	t0=$( [ -n "$spid" ] && cpu_ticks "$spid" || echo 0)
	mbps=$(ip netns exec "$P-A" taskset -c "$GEN_CPU" iperf3 -c 10.9.0.2 -t "$DUR" -J 2>/dev/null | python3 -c '
import json,sys
try: print("%.0f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))
except Exception: print("-")')
	t1=$( [ -n "$spid" ] && cpu_ticks "$spid" || echo 0)
	local cpu=$(( (t1 - t0) * 100 / $(getconf CLK_TCK) / DUR ))
	local mac=02:00:00:00:00:99 rx0 rx1
	rx0=$(ip netns exec "$P-B" cat /sys/class/net/b0/statistics/rx_packets)
	t0=$( [ -n "$spid" ] && cpu_ticks "$spid" || echo 0)
	local sent
	sent=$(ip netns exec "$P-A" taskset -c "$GEN_CPU" "$WORK/pktblast" -i a0 -dst-mac "$mac" -d "${DUR}s" | sed -n 's/.*: \([0-9]*\) pps/\1/p')
	rx1=$(ip netns exec "$P-B" cat /sys/class/net/b0/statistics/rx_packets)
	t1=$( [ -n "$spid" ] && cpu_ticks "$spid" || echo 0)
	local pcpu=$(( (t1 - t0) * 100 / $(getconf CLK_TCK) / DUR ))
	pps=$(( (rx1 - rx0) / DUR ))
	printf '%-12s %-14s %-12s %-8s %-12s %-10s %-8s %s\n' "$mode" "$rtt" "$mbps" "${cpu}%" "$pps" "$sent" "${pcpu}%" \
		"$([ "$pcpu" -gt 0 ] && echo $((pps * 100 / pcpu)) || echo -)"
}

ovs_start() {
	command -v ovs-vswitchd >/dev/null || { [ "$APT" = 1 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openvswitch-switch >/dev/null 2>&1; }
	command -v ovs-vswitchd >/dev/null || return 1
	local B=$WORK/ovs
	mkdir -p "$B/run" "$B/db" "$B/log"
	export OVS_RUNDIR=$B/run OVS_LOGDIR=$B/log OVS_DBDIR=$B/db
	ovsdb-tool create "$B/db/conf.db" /usr/share/openvswitch/vswitch.ovsschema
	ovsdb-server "$B/db/conf.db" --remote=punix:"$B/run/db.sock" --pidfile --log-file --detach -vconsole:off
	ovs-vsctl --no-wait init
	ip netns exec "$P-D" taskset -c "$DP_CPU" ovs-vswitchd unix:"$B/run/db.sock" --pidfile --log-file --detach -vconsole:off \
		--mlockall=no 2>/dev/null || ip netns exec "$P-D" ovs-vswitchd unix:"$B/run/db.sock" --pidfile --log-file --detach -vconsole:off
	ovs-vsctl set Open_vSwitch . other_config:pmd-cpu-mask=$((1 << DP_CPU))
	ovs-vsctl -- add-br br0 -- set bridge br0 datapath_type=netdev
	ovs-vsctl add-port br0 a1 -- set interface a1 type="$OVS_PORT_TYPE"
	ovs-vsctl add-port br0 b1 -- set interface b1 type="$OVS_PORT_TYPE"
	ovs-ofctl del-flows br0
	ovs-ofctl add-flow br0 in_port=a1,actions=output:b1
	ovs-ofctl add-flow br0 in_port=b1,actions=output:a1
}

ovs_stop() {
	[ -n "${OVS_RUNDIR:-}" ] || return 0
	ovs-appctl -t ovs-vswitchd exit --cleanup 2>/dev/null || true
	[ -f "$OVS_RUNDIR/ovsdb-server.pid" ] && kill "$(cat "$OVS_RUNDIR/ovsdb-server.pid")" 2>/dev/null || true
	unset OVS_RUNDIR
}

need
build
printf '%-12s %-14s %-12s %-8s %-12s %-10s %-8s %s\n' mode "rtt p50/p99us" "iperf3 Mb/s" "sw cpu" "64B rx pps" "offered" "sw cpu" "pps/core"
for mode in $MODES; do
	topology "$mode"
	case $mode in
	veth | veth-nooff)
		measure "$mode"
		;;
	dpfwd-*)
		if [[ $mode == dpfwd-xdp ]]; then
			local_args=(-xdp)
		else
			local_args=(-ring "$(echo "$mode" | cut -d- -f2)")
		fi
		[[ $mode == *-gso* ]] && local_args+=(-offload)
		[[ $mode == *-fast ]] && local_args+=(-fast-path)
		ip netns exec "$P-D" env GOMAXPROCS="${DP_PROCS:-1}" taskset -c "$DP_CPU" "$WORK/dpfwd" "${local_args[@]}" ${DPFWD_ARGS:-} -a a1 -b b1 >"$WORK/dpfwd.json" 2>"$WORK/dpfwd.log" &
		pid=$!
		PIDS+=("$pid")
		sleep 0.5
		measure "$mode" "$pid"
		kill "$pid"; wait "$pid" || true
		echo "  dpfwd counters: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["Stats"]); [print("   ", p["Spec"]["Name"], p["Stats"]) for p in d["Ports"]]' "$WORK/dpfwd.json" 2>/dev/null)"
		;;
	upcalls)
		ip netns exec "$P-D" env GOMAXPROCS="${DP_PROCS:-1}" taskset -c "$DP_CPU" "$WORK/dpfwd" -upcalls-only -a a1 -b b1 >"$WORK/dpfwd.json" 2>"$WORK/dpfwd.log" &
		pid=$!
		PIDS+=("$pid")
		sleep 0.5
		ip netns exec "$P-A" taskset -c "$GEN_CPU" "$WORK/pktblast" -i a0 -dst-mac 02:00:00:00:00:99 -flows 1000 -d "${DUR}s" >/dev/null
		kill "$pid"; wait "$pid" || true
		python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["Stats"]; d=int(sys.argv[2]); print("%-12s misses delivered %d/s, dropped %d/s (per-port queue full)" % ("upcalls", s["Upcalls"]//d, s["UpcallDropped"]//d))' "$WORK/dpfwd.json" "$DUR"
		;;
	ovs)
		if ovs_start; then
			sleep 1
			measure "ovs-$OVS_PORT_TYPE" "$(cat "$OVS_RUNDIR/ovs-vswitchd.pid")"
			ovs_stop
		else
			printf '%-12s %s\n' ovs "Open vSwitch is not installed (apt-get install openvswitch-switch); skipped"
		fi
		;;
	esac
	teardown
done
