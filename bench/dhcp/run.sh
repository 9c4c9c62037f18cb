#!/usr/bin/env bash
# The DHCP figures, on the sandbox of the end-to-end tests (real agents in
# host namespaces, userspace datapath):
#  - answers per second by one agent: a Go load generator in a VM namespace
#    on host1 sends DHCP REQUESTs from 200 client MACs through the VM's
#    veth into the agent's datapath port, 64 outstanding, and checks every
#    ACK with gopacket (BenchmarkDHCPTransactions; N requests);
#  - time from `ip link set eth0 up` in a VM namespace to dhclient's exit
#    with a bound lease, a fresh lease file each time (BenchmarkDHCPLeaseTime;
#    p50 and p90 of LEASES runs).
# Run as root. N (default 20000) and LEASES (default 30) set the sizes; on a
# machine shared with other end-to-end runs, E2E_LOCK names the lock file to
# hold (flock) while the sandbox runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
command -v dhclient >/dev/null || { apt-get update -qq; apt-get install -y -qq --no-install-recommends isc-dhcp-client >/dev/null; }
uptime
lock=()
[ -n "${E2E_LOCK:-}" ] && lock=(flock "$E2E_LOCK")
"${lock[@]}" go test -count=1 -run '^$' -bench 'DHCPTransactions' -benchtime "${N:-20000}x" ./test/e2e
"${lock[@]}" go test -count=1 -run '^$' -bench 'DHCPLeaseTime' -benchtime "${LEASES:-30}x" ./test/e2e
