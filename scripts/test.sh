#!/usr/bin/env bash
# Runs the whole test suite as CI does:
#  1. every Go package with the race detector, including the fuzzers' seed
#     corpora, the megaflow property test with its fixed seed, and the
#     end-to-end tests in network namespaces (sandbox, real agents, real
#     packets);
#  2. the Open vSwitch kernel datapath tests inside a qemu VM with the real
#     openvswitch module (scripts/kvm-ovs-test.sh; MIDONET_VM_TESTS=0 skips).
# Run it as root: the end-to-end tests build network namespaces (without root
# they skip, saying why). The last line counts every test: N passed, N failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
log=$(mktemp /tmp/midonet-test.XXXXXX)
trap 'rm -f "$log" "$log.vm"' EXIT

# -p 2: this machine has two cores; more test binaries at once only thrash.
go test -race -count=1 -p 2 -timeout 40m -v ./... >"$log" 2>&1
status=$?
# Package results, and the full output of anything that failed.
grep -E '^(ok|FAIL|panic:)' "$log"
if [ $status -ne 0 ]; then
  echo "== failures"
  # What each failing test printed while it ran (with -v its errors come
  # right after its === RUN line, far from its --- FAIL line).
  for name in $(grep -oE -- '--- FAIL: [^ ]+' "$log" | cut -d' ' -f3 | sort -u); do
    awk -v run="=== RUN   $name" '$0 == run {on = 1; n = 0; print; next}
      on && /^=== (RUN|CONT|PAUSE)/ {on = 0} on && n++ < 40' "$log"
  done | head -300
  grep -E -B2 -A30 -- '--- FAIL|^panic:|\[build failed\]' "$log" | head -400
fi
passed=$(grep -cE '^\s*--- PASS' "$log")
failed=$(grep -cE '^\s*--- FAIL' "$log")
skipped=$(grep -cE '^\s*--- SKIP' "$log")
if [ $status -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1 # a build failure or a panic outside a test
fi

if [ "${MIDONET_VM_TESTS:-1}" != 0 ]; then
  echo "== OVS kernel datapath tests in a qemu VM"
  scripts/kvm-ovs-test.sh >"$log.vm" 2>&1
  vmstatus=$?
  tail -5 "$log.vm"
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log.vm" | tail -1)
  if [ -n "$line" ]; then
    vp=${line%% passed*}
    vf=${line#*, }
    vf=${vf%% failed*}
    passed=$((passed + vp))
    failed=$((failed + vf))
  fi
  if [ $vmstatus -ne 0 ]; then
    [ -z "$line" ] && failed=$((failed + 1))
    # The VM's tests run in a child process whose output precedes the
    # parent's --- FAIL line.
    grep -E -B30 -A10 -- '--- FAIL|panic' "$log.vm" | head -150
    status=1
  fi
fi

echo "tests: $passed passed, $failed failed, $skipped skipped"
[ $status -eq 0 ] && [ "$failed" -eq 0 ]
