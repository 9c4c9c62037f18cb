#!/usr/bin/env bash
# The OVN peer of run.sh's cross-host scenarios: OVN (Debian's ovn-central,
# ovn-host and openvswitch-switch) with TWO chassis on this machine, each an
# ovsdb-server + ovs-vswitchd (userspace "netdev" datapath) + ovn-controller
# of its own running in a host namespace, joined by Geneve tunnels that the
# userspace datapath encapsulates over a veth underlay. It measures new TCP
# connections per second with run.sh's connrate, client host -> server host:
#
#   routed-across-hosts  vm1 (chassis 1) -> vm3 (chassis 2), through lr1
#   snat-out             vm2 (chassis 1) -> ext, SNAT on the gateway chassis 2
#   floating-ip-in       ext -> 172.16.0.50 (dnat_and_snat of vm1, chassis 1)
#
# Topology (every address exists only inside the o2-* namespaces):
#   o2-vm1 10.0.0.11, o2-vm2 10.0.0.12 -- ls1 -- lr1 -- ls2 -- o2-vm3 10.0.1.13
#   lr1-pub 172.16.0.1 (gateway chassis: ch2) -- pub (localnet) -- br-ex -- o2-ext 172.16.0.100
#   NAT on lr1: snat 10.0.0.0/24 -> 172.16.0.1; dnat_and_snat 172.16.0.50 <-> 10.0.0.11
#   chassis: o2-h1 (ch1: vm1, vm2) and o2-h2 (ch2: vm3, ext), underlay 10.77.0.1-2
#
# Run as root. Knobs: SCEN (scenario names), CONN_SECS (default 5), PORT_TYPE
# (OVS interface type of the VM, ext and underlay ports: afxdp-nonpmd,
# default, or system; afxdp would start a busy-polling PMD thread per chassis
# on this 2-core machine), CONNRATE (a built bench/agent/connrate; built if
# unset), KEEP=1 (leave it up), OVN2_DIR (state, default /tmp/midonet-ovn2).
# Debian 12's ovs-vswitchd 3.1.0 can die on an assertion in its userspace
# conntrack after some thousands of NAT connections: the connection
# tracker is flushed before each run, and a run during which a chassis's
# vswitchd died is reported as "crashed" (it is then restarted).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
B=${OVN2_DIR:-/tmp/midonet-ovn2}
PORT_TYPE=${PORT_TYPE:-afxdp-nonpmd}
CONN_SECS=${CONN_SECS:-5}
SCEN=${SCEN:-"routed-across-hosts snat-out floating-ip-in"}
NS="o2-h1 o2-h2 o2-vm1 o2-vm2 o2-vm3 o2-ext"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

need=()
command -v ovs-vswitchd >/dev/null || need+=(openvswitch-switch)
command -v ovn-northd >/dev/null || need+=(ovn-central)
command -v ovn-controller >/dev/null || need+=(ovn-host)
command -v ethtool >/dev/null || need+=(ethtool)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Every daemon here has a pidfile under $B; stop only those, by their id.
stop() { # pidfile
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}
teardown() {
  local f n
  for f in "$B"/*/*.pid; do [ -e "$f" ] && stop "$f"; done
  for n in $NS; do ip netns del "$n" 2>/dev/null || true; done
}

# vsctl/appctl of chassis N.
vsctl() { local n=$1; shift; ovs-vsctl --db=unix:"$B/h$n/db.sock" --timeout=10 "$@"; }
appctl() { local n=$1; shift; ovs-appctl -t "$B/h$n/ovs-vswitchd.$(cat "$B/h$n/ovs-vswitchd.pid").ctl" --timeout=10 "$@"; }
nbctl() { ovn-nbctl --db=unix:"$B/central/nb.sock" "$@"; }
sbctl() { ovn-sbctl --db=unix:"$B/central/sb.sock" "$@"; }

start_central() {
  local d=$B/central
  mkdir -p "$d"
  ovsdb-tool create "$d/nb.db" /usr/share/ovn/ovn-nb.ovsschema
  ovsdb-tool create "$d/sb.db" /usr/share/ovn/ovn-sb.ovsschema
  ovsdb-server "$d/nb.db" --remote=punix:"$d/nb.sock" --pidfile="$d/nb.pid" --unixctl="$d/nb.ctl" \
    --log-file="$d/nb.log" --detach -vconsole:off
  ovsdb-server "$d/sb.db" --remote=punix:"$d/sb.sock" --pidfile="$d/sb.pid" --unixctl="$d/sb.ctl" \
    --log-file="$d/sb.log" --detach -vconsole:off
  nbctl --no-wait init
  sbctl init
  ovn-northd --ovnnb-db=unix:"$d/nb.sock" --ovnsb-db=unix:"$d/sb.sock" --pidfile="$d/northd.pid" \
    --unixctl="$d/northd.ctl" --log-file="$d/northd.log" --detach -vconsole:off
}

start_vswitchd() { # n
  local d=$B/h$1
  ip netns exec "o2-h$1" env OVS_RUNDIR="$d" ovs-vswitchd unix:"$d/db.sock" --pidfile="$d/ovs-vswitchd.pid" \
    --log-file="$d/ovs-vswitchd.log" --detach -vconsole:off
}

# A chassis: its own ovsdb-server, vswitchd and ovn-controller in o2-hN,
# an underlay port on br-phy carrying the tunnel address.
start_chassis() { # n
  local n=$1 d=$B/h$1
  mkdir -p "$d"
  ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server "$d/conf.db" --remote=punix:"$d/db.sock" --remote=db:Open_vSwitch,Open_vSwitch,manager_options \
    --pidfile="$d/ovsdb-server.pid" --unixctl="$d/ovsdb-server.ctl" --log-file="$d/ovsdb-server.log" --detach -vconsole:off
  vsctl "$n" --no-wait init
  start_vswitchd "$n"
  vsctl "$n" -- add-br br-phy -- set bridge br-phy datapath_type=netdev \
    -- add-port br-phy ul -- set interface ul type="$PORT_TYPE"
  ip -n "o2-h$n" addr add "10.77.0.$n/24" dev br-phy
  ip -n "o2-h$n" link set br-phy up
  vsctl "$n" -- add-br br-ex -- set bridge br-ex datapath_type=netdev \
    -- add-br br-int -- set bridge br-int datapath_type=netdev fail-mode=secure other-config:disable-in-band=true
  vsctl "$n" set Open_vSwitch . external-ids:system-id="ch$n" external-ids:ovn-remote=unix:"$B/central/sb.sock" \
    external-ids:ovn-encap-type=geneve external-ids:ovn-encap-ip="10.77.0.$n" \
    external-ids:ovn-bridge-datapath-type=netdev external-ids:ovn-bridge-mappings=physnet:br-ex
  ip netns exec "o2-h$n" env OVS_RUNDIR="$d" OVN_RUNDIR="$d" ovn-controller unix:"$d/db.sock" --pidfile="$d/ovn-controller.pid" \
    --log-file="$d/ovn-controller.log" --detach -vconsole:off
  for _ in $(seq 100); do
    [ -n "$(sbctl --bare --columns=name find Chassis name="ch$n")" ] && return 0
    sleep 0.1
  done
  die "chassis ch$n did not register"
}

# A namespace plugged into bridge br of chassis n through a veth.
plug() { # n br ns mac cidr gw iface-id
  local n=$1 br=$2 ns=$3 mac=$4 cidr=$5 gw=$6 id=$7 dev=${3#o2-}
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="10000 64999" net.ipv4.tcp_tw_reuse=1
  ip -n "o2-h$n" link add "$dev" type veth peer name eth0 netns "$ns"
  ip -n "o2-h$n" link set "$dev" up
  # The userspace datapath's AF_XDP/AF_PACKET ports see checksums the
  # sender left to offload unfilled: the namespace must fill them.
  ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
  local ext=()
  [ -z "$id" ] || ext=(external-ids:iface-id="$id")
  vsctl "$n" -- add-port "$br" "$dev" -- set interface "$dev" type="$PORT_TYPE" "${ext[@]}"
  ip -n "$ns" link set eth0 address "$mac"
  ip -n "$ns" addr add "$cidr" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$gw"
}

setup() {
  teardown
  rm -rf "$B"
  mkdir -p "$B"
  ip netns add o2-h1
  ip netns add o2-h2
  for n in 1 2; do ip -n "o2-h$n" link set lo up; done
  ip -n o2-h1 link add ul type veth peer name ul netns o2-h2
  for n in 1 2; do ip -n "o2-h$n" link set ul up; done
  start_central
  start_chassis 1
  start_chassis 2
  nbctl ls-add ls1 -- ls-add ls2 -- ls-add pub -- lr-add lr1 \
    -- lsp-add ls1 vm1 -- lsp-set-addresses vm1 "00:00:00:00:01:11 10.0.0.11" \
    -- lsp-add ls1 vm2 -- lsp-set-addresses vm2 "00:00:00:00:01:12 10.0.0.12" \
    -- lsp-add ls2 vm3 -- lsp-set-addresses vm3 "00:00:00:00:02:13 10.0.1.13" \
    -- lrp-add lr1 lr1-ls1 00:00:00:00:ff:01 10.0.0.1/24 \
    -- lrp-add lr1 lr1-ls2 00:00:00:00:ff:02 10.0.1.1/24 \
    -- lrp-add lr1 lr1-pub 00:00:00:00:ff:03 172.16.0.1/24 \
    -- lsp-add ls1 ls1-lr1 -- lsp-set-type ls1-lr1 router -- lsp-set-addresses ls1-lr1 router \
    -- lsp-set-options ls1-lr1 router-port=lr1-ls1 \
    -- lsp-add ls2 ls2-lr1 -- lsp-set-type ls2-lr1 router -- lsp-set-addresses ls2-lr1 router \
    -- lsp-set-options ls2-lr1 router-port=lr1-ls2 \
    -- lsp-add pub pub-lr1 -- lsp-set-type pub-lr1 router -- lsp-set-addresses pub-lr1 router \
    -- lsp-set-options pub-lr1 router-port=lr1-pub \
    -- lsp-add pub pub-ln -- lsp-set-type pub-ln localnet -- lsp-set-addresses pub-ln unknown \
    -- lsp-set-options pub-ln network_name=physnet \
    -- lrp-set-gateway-chassis lr1-pub ch2 20 \
    -- lr-nat-add lr1 snat 172.16.0.1 10.0.0.0/24 \
    -- lr-nat-add lr1 dnat_and_snat 172.16.0.50 10.0.0.11
  plug 1 br-int o2-vm1 00:00:00:00:01:11 10.0.0.11/24 10.0.0.1 vm1
  plug 1 br-int o2-vm2 00:00:00:00:01:12 10.0.0.12/24 10.0.0.1 vm2
  plug 2 br-int o2-vm3 00:00:00:00:02:13 10.0.1.13/24 10.0.1.1 vm3
  plug 2 br-ex o2-ext 00:00:00:00:03:64 172.16.0.100/24 172.16.0.1 ""
  for p in vm1 vm2 vm3; do nbctl --timeout=60 wait-until Logical_Switch_Port "$p" up=true; done
  nbctl --timeout=60 --wait=hv sync
  # The tunnels are up when a ping crosses each path.
  local ok
  for path in "o2-vm1 10.0.1.13" "o2-vm2 172.16.0.100" "o2-ext 172.16.0.50"; do
    ok=
    for _ in $(seq 30); do
      # shellcheck disable=SC2086
      if ip netns exec ${path% *} ping -c1 -W1 -q "${path#* }" >/dev/null 2>&1; then ok=1; break; fi
    done
    [ -n "$ok" ] || die "no ping from ${path% *} to ${path#* }: see $B/h*/ovs-vswitchd.log"
  done
}

# connrate as run.sh runs it; prints "N conns/s p50 D errors E", with
# "crashed" for N when a chassis's vswitchd died during the run.
connrate() { # client server addr p
  for n in 1 2; do appctl "$n" dpctl/flush-conntrack >/dev/null 2>&1 || true; done
  local pids=("$(cat "$B/h1/ovs-vswitchd.pid")" "$(cat "$B/h2/ovs-vswitchd.pid")")
  ip netns exec "$2" "$CONNRATE" -listen 0.0.0.0:7200 &
  local s=$!
  sleep 0.3
  local r
  r=$(ip netns exec "$1" "$CONNRATE" -connect "$3:7200" -p "$4" -d "${CONN_SECS}s")
  kill $s 2>/dev/null
  wait $s 2>/dev/null || true
  for n in 1 2; do
    if ! kill -0 "${pids[$((n - 1))]}" 2>/dev/null; then
      log "ovs-vswitchd of ch$n died: $(grep -h EMER "$B/h$n/ovs-vswitchd.log" | tail -1 | cut -c1-160)"
      start_vswitchd "$n"
      nbctl --timeout=60 --wait=hv sync >/dev/null
      r="crashed conns/s p50 - errors -"
    fi
  done
  echo "$r"
}

case ${1:-run} in
teardown)
  teardown
  exit 0
  ;;
setup | run) ;;
*) die "usage: $0 [run|setup|teardown]" ;;
esac
tool=
if [ -z "${CONNRATE:-}" ]; then
  tool=$(mktemp -d /tmp/midonet-ovn2-connrate.XXXXXX)
  CONNRATE=$tool/connrate
  go build -o "$CONNRATE" ./bench/agent/connrate
fi
[ "${1:-run}" = setup ] && KEEP=1
finish() {
  [ -n "${KEEP:-}" ] || teardown
  [ -z "$tool" ] || [ -n "${KEEP:-}" ] || rm -rf "$tool"
}
trap finish EXIT
log "two OVN chassis, $PORT_TYPE ports, Geneve over a veth underlay"
setup
[ "${1:-run}" = setup ] && exit 0
printf '%-28s %-38s %-38s\n' scenario "conns/s p=1" "conns/s p=8"
while read -r name from to addr; do
  [[ " $SCEN " == *" $name "* ]] || continue
  c1=$(connrate "$from" "$to" "$addr" 1)
  c8=$(connrate "$from" "$to" "$addr" 8)
  printf '%-28s %-38s %-38s\n' "ovn-$name" "$c1" "$c8"
done <<'EOF'
routed-across-hosts o2-vm1 o2-vm3 10.0.1.13
snat-out o2-vm2 o2-ext 172.16.0.100
floating-ip-in o2-ext o2-vm1 172.16.0.50
EOF
