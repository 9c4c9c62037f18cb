#!/usr/bin/env bash
# The main job: builds midonet, starts a cluster node (embedded etcd and the
# REST API on :8181) and creates a demo topology through the API: two tenant
# networks on a tenant router, a provider router with an uplink, SNAT and a
# floating IP, a security group chain, a host in a tunnel zone with a
# binding. It keeps running until Ctrl-C; --check builds the demo, prints it
# and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
check=false
[ "${1:-}" = "--check" ] && check=true

data=$(mktemp -d /tmp/midonet-run.XXXXXX)
echo "== building midonet"
go build -o "$data/midonet" ./cmd/midonet
mn="$data/midonet"
"$mn" cluster --data-dir "$data/nsdb" --listen :8181 --nsdb-listen 127.0.0.1:2379 >"$data/cluster.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
api=http://127.0.0.1:8181/midonet-api
for _ in $(seq 100); do curl -sf "$api" >/dev/null && break; sleep 0.1; done
curl -sf "$api" >/dev/null || { cat "$data/cluster.log"; echo "cluster did not start"; exit 1; }
echo "== cluster up: API $api, store 127.0.0.1:2379 (log: $data/cluster.log)"

J=(-sf -H 'Content-Type: application/json')
post() { curl "${J[@]}" -X POST -d "$2" -D - -o /dev/null "$api$1" | tr -d '\r' | awk '/^Location:/ {print $2}'; }
id() { basename "$1"; }

echo "== building the demo topology"
tr=$(id "$(post /routers '{"name":"tenant-router","tenantId":"demo"}')")
pr=$(id "$(post /routers '{"name":"provider-router","tenantId":"admin"}')")
for n in 1 2; do
  br=$(id "$(post /bridges "{\"name\":\"tenant-net-$n\",\"tenantId\":\"demo\"}")")
  bp=$(id "$(post "/bridges/$br/ports" '{"type":"Bridge"}')")
  rp=$(id "$(post "/routers/$tr/ports" "{\"type\":\"Router\",\"portAddress\":\"10.0.$n.1\",\"networkAddress\":\"10.0.$n.0\",\"networkLength\":24}")")
  post "/ports/$bp/link" "{\"peerId\":\"$rp\"}" >/dev/null
  post "/routers/$tr/routes" "{\"type\":\"Normal\",\"srcNetworkAddr\":\"0.0.0.0\",\"srcNetworkLength\":0,\"dstNetworkAddr\":\"10.0.$n.0\",\"dstNetworkLength\":24,\"nextHopPort\":\"$rp\"}" >/dev/null
  post "/bridges/$br/dhcp" "{\"subnetPrefix\":\"10.0.$n.0\",\"subnetLength\":24,\"defaultGateway\":\"10.0.$n.1\",\"serverAddr\":\"10.0.$n.2\"}" >/dev/null
  vm=$(id "$(post "/bridges/$br/ports" '{"type":"Bridge"}')")
  eval "vm$n=$vm"
done
# Tenant router to provider router, and the provider's uplink.
tu=$(id "$(post "/routers/$tr/ports" '{"type":"Router","portAddress":"169.254.0.2","networkAddress":"169.254.0.0","networkLength":30}')")
pd=$(id "$(post "/routers/$pr/ports" '{"type":"Router","portAddress":"169.254.0.1","networkAddress":"169.254.0.0","networkLength":30}')")
post "/ports/$tu/link" "{\"peerId\":\"$pd\"}" >/dev/null
post "/routers/$tr/routes" "{\"type\":\"Normal\",\"srcNetworkAddr\":\"0.0.0.0\",\"dstNetworkAddr\":\"0.0.0.0\",\"nextHopPort\":\"$tu\",\"nextHopGateway\":\"169.254.0.1\"}" >/dev/null
up=$(id "$(post "/routers/$pr/ports" '{"type":"Router","portAddress":"192.0.2.2","networkAddress":"192.0.2.0","networkLength":24}')")
post "/routers/$pr/routes" "{\"type\":\"Normal\",\"srcNetworkAddr\":\"0.0.0.0\",\"dstNetworkAddr\":\"0.0.0.0\",\"nextHopPort\":\"$up\",\"nextHopGateway\":\"192.0.2.1\"}" >/dev/null
# SNAT for the tenants and a floating IP for the first VM's address.
nat=$(id "$(post /chains '{"name":"tenant-nat","tenantId":"demo"}')")
post "/chains/$nat/rules" "{\"type\":\"snat\",\"flowAction\":\"accept\",\"outPorts\":[\"$tu\"],\"nwSrcAddress\":\"10.0.0.0\",\"nwSrcLength\":16,\"natTargets\":[{\"addressFrom\":\"169.254.0.2\",\"addressTo\":\"169.254.0.2\",\"portFrom\":1024,\"portTo\":65535}]}" >/dev/null
post "/chains/$nat/rules" "{\"type\":\"dnat\",\"flowAction\":\"accept\",\"position\":1,\"nwDstAddress\":\"192.0.2.10\",\"nwDstLength\":32,\"natTargets\":[{\"addressFrom\":\"10.0.1.10\",\"addressTo\":\"10.0.1.10\",\"portFrom\":0,\"portTo\":0}]}" >/dev/null
# A security group: allow return traffic and SSH, drop the rest inbound.
sg=$(id "$(post /chains '{"name":"sg-web","tenantId":"demo"}')")
post "/chains/$sg/rules" '{"type":"accept","matchReturnFlow":true,"position":1}' >/dev/null
post "/chains/$sg/rules" '{"type":"accept","nwProto":6,"tpDst":{"start":22,"end":22},"position":2}' >/dev/null
post "/chains/$sg/rules" '{"type":"drop","position":3}' >/dev/null
curl "${J[@]}" -X PUT -d "{\"type\":\"Bridge\",\"outboundFilterId\":\"$sg\"}" "$api/ports/$vm2" >/dev/null
# A host in a tunnel zone, with the first VM's port bound to its tap.
host=$(cat /proc/sys/kernel/random/uuid)
post /hosts "{\"id\":\"$host\",\"name\":\"demo-host-1\"}" >/dev/null
tz=$(id "$(post /tunnel_zones '{"name":"underlay","type":"vxlan"}')")
post "/tunnel_zones/$tz/hosts" "{\"hostId\":\"$host\",\"ipAddress\":\"192.168.100.1\"}" >/dev/null
post "/hosts/$host/ports" "{\"portId\":\"$vm1\",\"interfaceName\":\"vm1-tap\"}" >/dev/null

echo "== demo topology"
count() { curl -sf "$api/$1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
printf '  %-14s %s\n' routers "$(count routers)" bridges "$(count bridges)" ports "$(count ports)" \
  chains "$(count chains)" hosts "$(count hosts)" "tenant routes" "$(count routers/$tr/routes)"
echo
echo "Explore it: curl -s $api/ | python3 -m json.tool, or $mn --api $api bridge list"
$check && exit 0
echo "Running; Ctrl-C stops and cleans up."
wait "$pid"
