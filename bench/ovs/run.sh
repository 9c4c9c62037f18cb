#!/usr/bin/env bash
# Kernel datapath (openvswitch.ko over generic netlink) benchmarks next to
# the userspace backend, both inside the qemu VM of scripts/kvm-ovs-test.sh,
# plus the codec benchmarks on the host. Under TCG only the ratios between
# the two backends mean something. About 1-2 minutes.
#
#   bench/ovs/run.sh            (BENCHTIME=2000x by default)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
echo "== host: codec (no kernel module needed)"
go test -run '^$' -bench 'Encode|Decode' -benchmem ./internal/datapath/ovs | grep -E '^Benchmark|^cpu'
echo "== VM: kernel vs userspace backend"
BENCH=1 scripts/kvm-ovs-test.sh '-test.run=^$' | grep -E '^vm: Benchmark.*ns/op|^kvm-ovs:'
