#!/usr/bin/env bash
# The main job: builds midonet and runs the sandbox — an embedded cluster,
# agents on three simulated hosts (network namespaces), VMs, an external
# network with a BGP router (BIRD) and a demo topology (two tenant networks
# on a router, a provider router whose uplink learns its default route by
# BGP, SNAT, a floating IP, a security group) — then
# checks connectivity with real packets. It keeps running with the REST API
# on :8181 until Ctrl-C; pass --check to run the checks and exit with their
# status. Run it as root on Debian 12 with Go 1.26 in /usr/local/go.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
# bird2: the external network's BGP router, from which the provider router
# learns its default route; isc-dhcp-client: the VMs are namespaces that get
# their addresses by DHCP with dhclient.
if ! command -v ip >/dev/null || ! command -v ping >/dev/null || ! command -v bird >/dev/null || ! command -v dhclient >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends iproute2 iputils-ping bird2 isc-dhcp-client >/dev/null
fi
echo "==> building midonet"
go build -o ./midonet ./cmd/midonet
exec ./midonet sandbox "$@"
