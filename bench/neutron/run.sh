#!/usr/bin/env bash
# Neutron calls per second, side by side in one run: port creates with two
# security groups (the call that matters: every VM boot makes one)
#   1. straight to the cluster's endpoint through the REST API and the
#      translation (go test -bench EndpointPortCreate ./internal/neutron:
#      8 clients, a store without fsync unless MIDONET_BENCH_FSYNC=1);
#   2. through Debian's neutron-server and the plugin, and straight to the
#      cluster's endpoint of the same rig (test/neutron TestNeutronCallRate:
#      TLS, local authentication, 1 then 4 clients, medians of 3 rounds of 50).
# The time from `openstack port create --host` to the VM's first packet
# forwarded is logged by test/neutron's main test (FIGURE lines). Run as
# root with python3-neutron and python3-openstackclient installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
echo "== load: $(uptime)"
echo "== the cluster's endpoint alone"
go test -run '^$' -bench EndpointPortCreate -benchtime 1000x -count 3 ./internal/neutron | grep -E '^Benchmark'
echo "== through neutron-server and the plugin, then the endpoint of the same rig"
MIDONET_NEUTRON_BENCH=1 go test -count=1 -v -run 'TestNeutronCallRate' -timeout 20m ./test/neutron | grep -E 'FIGURE|^(--- |ok|FAIL)'
