#!/usr/bin/env bash
# Figures of the services on the sandbox (real agents, userspace datapath),
# every object configured with the midonet CLI:
#   1. new TCP connections per second from the external host through a VIP
#      (without and with source-IP persistence) next to the same through the
#      floating IP of the same VM (connrate, p=1 and p=8, median of RUNS);
#   2. the forwarding cost of a mirrored flow: iperf3 throughput and ping
#      RTT from vm-a1 (host 1) to vm-b1 (host 2), without and with a mirror
#      of that traffic to a tap VM on host 3;
#   3. the rate limiter's accuracy: iperf3 TCP from vm-a1 to vm-b1 under a
#      QoS bandwidth limit of 1, 10 and 100 Mbit/s on vm-a1's port.
# Run as root, under flock /work/e2e.lock on a shared machine. DUR sets the
# seconds of each iperf3 and connrate run (default 5), RUNS the runs per
# figure (default 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
DUR=${DUR:-5}
RUNS=${RUNS:-3}
command -v iperf3 >/dev/null || { apt-get update -qq; apt-get install -y -qq iperf3 >/dev/null; }
out=$(mktemp -d /tmp/midonet-svcbench.XXXXXX)
go build -o "$out/midonet" ./cmd/midonet
go build -o "$out/connrate" ./bench/agent/connrate
export MIDONET_API=http://127.0.0.1:18198/midonet-api
mn() { "$out/midonet" "$@"; }
"$out/midonet" sandbox --data-dir "$out/data" --listen 127.0.0.1:18198 >"$out/sandbox.log" 2>&1 &
sbpid=$!
tapns=mnbs-tap
cleanup() {
  kill -INT $sbpid 2>/dev/null || true
  wait $sbpid 2>/dev/null || true
  ip netns del $tapns 2>/dev/null || true
  pkill -f "$out/connrate" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT
for _ in $(seq 120); do grep -q "The sandbox is running" "$out/sandbox.log" && break; sleep 0.5; done
grep -q "The sandbox is running" "$out/sandbox.log" || { cat "$out/sandbox.log"; exit 1; }
for n in mnsb-ext mnsb-vm-a1; do
  ip netns exec "$n" sysctl -qw net.ipv4.ip_local_port_range="10000 64999" net.ipv4.tcp_tw_reuse=1
done
id() { sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' | head -1; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

echo "== load: $(uptime)"
# --- 1. connections per second to vm-a1: through a VIP, a sticky VIP and
# the floating IP, each to a server port of its own (7201, 7202, 7200), so
# that no scenario meets another's connections or flow state at the server
# (clients reuse their ports quickly at these rates).
lb=$(mn load-balancer create -o json | id)
mn router update tenant-router --load-balancer "$lb" >/dev/null
pool=$(mn pool create --load-balancer "$lb" -o json | id)
spool=$(mn pool create --load-balancer "$lb" -o json | id)
mn pool-member create --pool "$pool" --address 10.0.1.10 --protocol-port 7201 >/dev/null
mn pool-member create --pool "$spool" --address 10.0.1.10 --protocol-port 7202 >/dev/null
mn vip create --pool "$pool" --address 203.0.113.20 --protocol-port 7200 >/dev/null
mn vip create --pool "$spool" --address 203.0.113.21 --protocol-port 7200 --persistence SOURCE_IP >/dev/null
srvs=()
for p in 7200 7201 7202; do
  ip netns exec mnsb-vm-a1 "$out/connrate" -listen 0.0.0.0:$p &
  srvs+=($!)
done
sleep 0.5
connrate() { # addr parallelism: median conns/s of RUNS runs, and the errors of all
  for _ in $(seq "$RUNS"); do
    ip netns exec mnsb-ext "$out/connrate" -connect "$1:7200" -p "$2" -d "${DUR}s"
  done | awk '{print $1, $NF}' | sort -n | awk '{v[NR]=$1; e+=$2} END {printf "%s (%d err)", v[int((NR+1)/2)], e}'
}
printf '%-34s %-20s %-20s\n' "new connections/s from ext" "p=1" "p=8"
for s in "VIP 203.0.113.20" "sticky VIP 203.0.113.21" "floating IP 203.0.113.10"; do
  addr=${s##* }
  printf '%-34s %-20s %-20s\n' "$s" "$(connrate "$addr" 1)" "$(connrate "$addr" 8)"
done
kill "${srvs[@]}"; wait "${srvs[@]}" 2>/dev/null || true

# --- 2. a mirrored flow: vm-a1 -> vm-b1, copied to a tap VM on host 3
iperf() { # client server-addr [seconds]: median Mbit/s of RUNS runs
  for _ in $(seq "$RUNS"); do
    ip netns exec mnsb-vm-b1 iperf3 -s -1 -D >/dev/null 2>&1; sleep 0.3
    ip netns exec "$1" iperf3 -c "$2" -t "${3:-$DUR}" -J 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6)'
  done | median
}
rtt() { ip netns exec mnsb-vm-a1 ping -n -c 200 -i 0.01 "$1" | awk -F'time=' '/time=/{split($2,a," "); print a[1]*1000}' | median; }
printf '\n%-34s %-14s %-14s\n' "vm-a1 -> vm-b1 (across hosts)" "iperf Mbit/s" "ping p50 us"
printf '%-34s %-14s %-14s\n' "not mirrored" "$(iperf mnsb-vm-a1 10.0.2.10)" "$(rtt 10.0.2.10)"
taps=$(mn bridge create --name bench-taps -o json | id)
tap=$(mn port create --bridge "$taps" -o json | id)
ip netns add $tapns
ip link add bstap netns mnsb-h3 type veth peer name eth0 netns $tapns
ip -n mnsb-h3 link set bstap up
ip -n $tapns link set eth0 up
mn host bind --host host3 --port "$tap" --interface bstap >/dev/null
mirror=$(mn mirror create --to-port "$tap" --nw-dst 10.0.2.10/32 -o json | id)
vma1=$(mn port list -o json | python3 -c '
import json,sys
for p in json.load(sys.stdin):
    if p.get("interfaceName") == "tap-vm-a1": print(p["id"])')
mn port update "$vma1" --inbound-mirrors "$mirror" >/dev/null
sleep 1
before=$(ip -n $tapns -s link show eth0 | awk '/RX:/{getline; print $2}')
printf '%-34s %-14s %-14s\n' "mirrored to a tap on host 3" "$(iperf mnsb-vm-a1 10.0.2.10)" "$(rtt 10.0.2.10)"
after=$(ip -n $tapns -s link show eth0 | awk '/RX:/{getline; print $2}')
echo "(the tap received $((after - before)) packets)"
mn port update "$vma1" --inbound-mirrors "" >/dev/null

# --- 3. rate limiter accuracy on vm-a1's port
mn qos-policy create --name bench-limit >/dev/null
rule=$(mn qos-bw-limit create --policy bench-limit --max-kbps 1000 -o json | id)
mn port update "$vma1" --qos-policy bench-limit >/dev/null
printf '\n%-34s %-14s %-14s\n' "QoS limit on vm-a1's port" "iperf Mbit/s" "of the limit"
for mbit in 1 10 100; do
  mn qos-bw-limit update "$rule" --max-kbps $((mbit * 1000)) >/dev/null
  sleep 1
  got=$(iperf mnsb-vm-a1 10.0.2.10 $((DUR * 2)))
  printf '%-34s %-14.3f %-14s\n' "$mbit Mbit/s" "$got" "$(python3 -c "print(f'{$got/$mbit*100:.1f}%')")"
done
mn port update "$vma1" --qos-policy none >/dev/null
echo "== load: $(uptime)"
