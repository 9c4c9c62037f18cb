#!/usr/bin/env bash
# Flow setups per second through one agent with 1 and 2 simulation workers
# (BenchmarkNewFlows in internal/agent: the mem datapath, a bridge with
# conntrack, every packet a new connection), RUNS rounds alternating the two,
# under the machine's benchmark lock. Prints each round, then the medians of
# flows/s, of the injector's cores (inj-cores) and of the rest of the
# process's (agent-cores), the ratio of the medians (2 workers over 1), and
# that ratio with the injector's cost taken out: with 2 workers the agent
# gets 2 - inj-cores of the two cores, so its rate is scaled by
# 2 / (2 - inj-cores) before dividing. N sets the flows per run (default
# 50000), PROFILE=file writes a CPU profile of one more 2-worker run, and
# NICE=-10 (say) runs the benchmark at that priority, so that compilations
# of others sharing the machine do not take the cores it measures: the
# rounds run in a session of their own whose scheduling group gets that
# nice value (with the kernel's autogroups on, a process's own nice value
# only ranks it within its session, and every other session's compiler
# got as much CPU as the whole benchmark). COMPARE=binary (a test binary
# of internal/agent built from another tree, e.g. main's) runs it too,
# after this tree's in each round, and prints its medians beside.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
RUNS=${RUNS:-5}
N=${N:-50000}
NICE=${NICE:-0}
bin=$(mktemp /tmp/agent-bench.XXXXXX)
out=$(mktemp /tmp/agent-bench-out.XXXXXX)
trap 'rm -f "$bin" "$out"' EXIT
go test -c -o "$bin" ./internal/agent
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "priority: nice $NICE (process and session group)"
# One hold of the lock for the rounds and the profile.
flock /work/e2e.lock setsid -w bash -c '
  nice=$1 n=$2 runs=$3 profile=$4 compare=$5 bin=$6
  if [ -w /proc/self/autogroup ]; then
    echo "$nice" > /proc/self/autogroup 2>/dev/null || echo "autogroup nice $nice refused: priority is per process only" >&2
  fi
  bench() { nice -n "$nice" "$1" -test.run "^\$" -test.benchtime "${n}x" -test.bench "NewFlows/workers=$2\$" "${@:3}"; }
  for i in $(seq "$runs"); do
    for w in 1 2; do
      bench "$bin" $w
      if [ -n "$compare" ]; then bench "$compare" $w | sed "s/^BenchmarkNewFlows/compared: &/"; fi
    done
  done
  if [ -n "$profile" ]; then
    bench "$bin" 2 -test.cpuprofile "$profile" | sed "s/^BenchmarkNewFlows/profiled: &/"
  fi' _ "$NICE" "$N" "$RUNS" "${PROFILE:-}" "${COMPARE:-}" "$bin" | grep 'BenchmarkNewFlows' | tee "$out"
if [ -n "${PROFILE:-}" ]; then
  echo "profile in $PROFILE (go tool pprof -top $bin $PROFILE; keep the binary: $bin)"
  trap 'rm -f "$out"' EXIT
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r'(compared: )?BenchmarkNewFlows/workers=(\d+)', line)
    if not m:
        continue
    vals = {unit: float(v) for v, unit in re.findall(r'([-\d.]+) (flows/s|inj-cores|agent-cores)', line)}
    runs.setdefault(('compared' if m.group(1) else 'this tree', int(m.group(2))), []).append(vals)
for label in ('this tree', 'compared'):
    med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for (l, w), rs in runs.items() if l == label}
    if not med:
        continue
    print(f"{label}:")
    for w in sorted(med):
        m = med[w]
        print(f"  workers={w}: median {m['flows/s']:.0f} flows/s, injector {m['inj-cores']:.2f} cores, rest {m['agent-cores']:.2f} cores ({len(runs[(label, w)])} runs)")
    if 1 in med and 2 in med:
        r = med[2]['flows/s'] / med[1]['flows/s']
        adj = r * 2 / (2 - med[2]['inj-cores'])
        print(f"  2 workers / 1 worker: {r:.2f}x; with the injector's cost taken out: {adj:.2f}x")
PY
