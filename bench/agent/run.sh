#!/usr/bin/env bash
# Measures the virtual network end to end on the sandbox (real agents on
# three host namespaces, userspace datapath): ping RTT p50/p99, iperf3 TCP
# throughput and new TCP connections per second, on the same scenarios as
# the OVN/Open vSwitch peer benchmark in the project's shared notes
# (bench/README.md there): routed on one host, routed across hosts through
# the overlay, SNAT out (from another host than the uplink's, and from the
# uplink's host), floating IP in. Run as root. DUR sets iperf3's
# seconds (default 5); SCEN, a space-separated list of scenario names,
# runs only those; AGENT_ARGS adds agent flags (e.g. "--busy-poll=0"),
# SANDBOX_ARGS sandbox flags (e.g. "--pin-datapath=false").
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
DUR=${DUR:-5}
command -v iperf3 >/dev/null || { apt-get update -qq; apt-get install -y -qq iperf3 >/dev/null; }
out=$(mktemp -d /tmp/midonet-bench.XXXXXX)
go build -o "$out/midonet" ./cmd/midonet
go build -o "$out/connrate" ./bench/agent/connrate
# APP_CPUS pins the connection-rate client and server (taskset list), to
# keep them off processors given to the agents with --datapath-cpus.
pin=${APP_CPUS:+taskset -c $APP_CPUS}
agentargs=()
# PROFILE=dir saves each agent's CPU profile of every one-client
# connection-rate run there (dir/<scenario>-h<N>.pprof).
[ -z "${PROFILE:-}" ] || { mkdir -p "$PROFILE"; AGENT_ARGS="${AGENT_ARGS:-} --pprof"; }
for a in ${AGENT_ARGS:-}; do agentargs+=(--agent-arg="$a"); done
"$out/midonet" sandbox --data-dir "$out/data" --listen 127.0.0.1:18199 ${SANDBOX_ARGS:-} "${agentargs[@]}" >"$out/sandbox.log" 2>&1 &
sbpid=$!
cleanup() {
  kill -INT $sbpid 2>/dev/null || true
  wait $sbpid 2>/dev/null || true
  pkill -f "$out/connrate" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT
for _ in $(seq 120); do grep -q "The sandbox is running" "$out/sandbox.log" && break; sleep 0.5; done
grep -q "The sandbox is running" "$out/sandbox.log" || { cat "$out/sandbox.log"; exit 1; }
grep -E "passed, .* failed" "$out/sandbox.log"
# As the OVN peer benchmark does: thousands of connections a second from one
# client would otherwise run out of ephemeral ports held in TIME_WAIT.
for n in $(ip netns list | awk '/^mnsb-(vm-|ext)/{print $1}'); do
  ip netns exec "$n" sysctl -qw net.ipv4.ip_local_port_range="10000 64999" net.ipv4.tcp_tw_reuse=1
done

ns() { [ "$1" = ext ] && echo mnsb-ext || echo "mnsb-$1"; }
pingstats() { # from to-addr: p50 and p99 over 5x100 echoes at 10 ms
  for _ in 1 2 3 4 5; do ip netns exec "$(ns "$1")" ping -n -c 100 -i 0.01 "$2"; done |
    awk -F'time=' '/time=/{split($2,a," "); print a[1]*1000}' | sort -n |
    awk '{v[NR]=$1} END {printf "%d %d", v[int(NR*0.5)], v[int(NR*0.99)]}'
}
iperf() { # client server-ns addr: median Gbit/s of 3 runs
  for _ in 1 2 3; do
    ip netns exec "$(ns "$2")" iperf3 -s -1 -D >/dev/null 2>&1; sleep 0.3
    ip netns exec "$(ns "$1")" iperf3 -c "$3" -t "$DUR" -J 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)'
  done | sort -n | sed -n 2p
}
connrate() { # client server-ns addr p
  ip netns exec "$(ns "$2")" $pin "$out/connrate" -listen 0.0.0.0:7200 & local s=$!
  sleep 0.3
  ip netns exec "$(ns "$1")" $pin "$out/connrate" -connect "$3:7200" -p "$4" -d "${CONN_SECS:-5}s"
  kill $s 2>/dev/null; wait $s 2>/dev/null || true
}
upcalls() { # the agents' upcalls so far, all hosts together
  for h in 1 2 3; do ip netns exec "mnsb-h$h" curl -s localhost:9100/metrics; done |
    awk '/^midonet_agent_upcalls_total /{n+=$2} END {printf "%d", n}'
}
# SKIP_PING_IPERF=1 measures connection rates only.
printf '%-28s %-12s %-12s %-10s %-26s %-10s %-26s\n' scenario "ping p50 us" "ping p99 us" "iperf Gb/s" "conns/s p=1" "upc/conn" "conns/s p=8"
while read -r name from to addr connaddr; do
  [ -z "${SCEN:-}" ] || [[ " $SCEN " == *" $name "* ]] || continue
  p50=- p99=- g=0
  if [ -z "${SKIP_PING_IPERF:-}" ]; then
    read -r p50 p99 <<<"$(pingstats "$from" "$addr")"
    g=$(iperf "$from" "$to" "$addr")
  fi
  u0=$(upcalls)
  profs=()
  if [ -n "${PROFILE:-}" ]; then
    for h in 1 2 3; do
      ip netns exec "mnsb-h$h" curl -s -o "$PROFILE/$name-h$h.pprof" "localhost:9100/debug/pprof/profile?seconds=${CONN_SECS:-5}" &
      profs+=($!)
    done
  fi
  c1=$(connrate "$from" "$to" "$connaddr" 1)
  [ ${#profs[@]} -eq 0 ] || wait "${profs[@]}"
  u1=$(upcalls)
  # Upcalls per connection of the one-client run, every host counted.
  upc=$(awk -v d=$((u1 - u0)) -v r="${c1%% *}" -v s="${CONN_SECS:-5}" 'BEGIN {printf "%.2f", (r > 0 ? d / (r * s) : 0)}')
  c8=$(connrate "$from" "$to" "$connaddr" 8)
  printf '%-28s %-12s %-12s %-10.2f %-26s %-10s %-26s\n' "$name" "$p50" "$p99" "$g" "$c1" "$upc" "$c8"
done <<'EOF2'
routed-same-host vm-a2 vm-b1 10.0.2.10 10.0.2.10
routed-across-hosts vm-a1 vm-b1 10.0.2.10 10.0.2.10
snat-out vm-b1 ext 192.0.2.1 192.0.2.1
snat-out-same-host vm-b2 ext 192.0.2.1 192.0.2.1
floating-ip-in ext vm-a1 203.0.113.10 203.0.113.10
EOF2
