#!/usr/bin/env bash
# Side by side with OVN, alternated in one run: ROUNDS times (default 3)
# run.sh's connection rates on the sandbox (ours: three hosts, overlay),
# then ovn2.sh's (OVN, two chassis, Geneve), and, when OVN_PEER names the
# one-chassis peer script (the project's shared notes' bench/ovn-peer.sh),
# its SNAT on one chassis beside our snat-out-same-host. Prints each round,
# then the medians and our ratio to OVN, with the load (uptime) of each
# round. Run as root. Knobs: ROUNDS, CONN_SECS (default 5), AGENT_ARGS (as
# run.sh's), LOCK (a file to flock around each step, e.g. /work/e2e.lock on
# a shared machine), OVN_PEER.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
export CONN_SECS=${CONN_SECS:-5}
locked() { if [ -n "${LOCK:-}" ]; then flock "$LOCK" "$@"; else "$@"; fi; }
rows=$(mktemp /tmp/midonet-versus.XXXXXX)
trap 'rm -f "$rows" "$rows.peer"' EXIT
rate() { awk '{print ($2 == "conns/s" ? $1 : "NA")}' <<<"$1"; }
for r in $(seq "$ROUNDS"); do
  echo "round $r: $(uptime)"
  # ours: the row's conns/s p=1 is field 5, p=8 field 12 (run.sh's layout).
  locked env SKIP_PING_IPERF=1 SCEN="routed-across-hosts snat-out floating-ip-in snat-out-same-host" ./bench/agent/run.sh |
    awk '$2 == "-" {print "ours", $1, $5, $12}' | tee -a "$rows"
  locked ./bench/agent/ovn2.sh 2>/dev/null | awk '/^ovn-/ {sub(/^ovn-/, "", $1); print "ovn2", $1, ($2 ~ /^[0-9]+$/ ? $2 : "NA"), ($8 ~ /^[0-9]+$/ ? $8 : "NA")}' |
    tee -a "$rows"
  if [ -n "${OVN_PEER:-}" ]; then
    : >"$rows.peer"
    locked env SCEN=ovn-snat RUNS=1 PING_RUNS=1 PING_COUNT=10 IPERF_SECS=1 CONN_PAR="1 8" RESULTS="$rows.peer" \
      "$OVN_PEER" >/dev/null 2>&1 || true
    # Its TSV: the p=1 rate is column 12, the p=8 rate column 16.
    awk -F'\t' '$2 == "ovn-snat" {print "ovn1", "snat-out-same-host", $12, $16}' "$rows.peer" | tee -a "$rows"
  fi
done
echo "after: $(uptime)"
echo
echo "medians over $ROUNDS rounds, conns/s (ratio ours/OVN)"
printf '%-22s %-10s %-10s %-10s %-10s %-8s %-8s\n' scenario "ours p=1" "OVN p=1" "ours p=8" "OVN p=8" "p=1" "p=8"
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) {print "NA"; exit} print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
for s in routed-across-hosts snat-out floating-ip-in snat-out-same-host; do
  peer=ovn2
  [ "$s" = snat-out-same-host ] && peer=ovn1
  o1=$(awk -v s="$s" '$1 == "ours" && $2 == s && $3 != "NA" {print $3}' "$rows" | median)
  o8=$(awk -v s="$s" '$1 == "ours" && $2 == s && $4 != "NA" {print $4}' "$rows" | median)
  v1=$(awk -v s="$s" -v p=$peer '$1 == p && $2 == s && $3 != "NA" {print $3}' "$rows" | median)
  v8=$(awk -v s="$s" -v p=$peer '$1 == p && $2 == s && $4 != "NA" {print $4}' "$rows" | median)
  [ "$v1" = NA ] && [ "$peer" = ovn1 ] && continue
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2fx", a / b}'; }
  printf '%-22s %-10s %-10s %-10s %-10s %-8s %-8s\n' "$s" "$o1" "$v1 ($peer)" "$o8" "$v8" "$(ratio "$o1" "$v1")" "$(ratio "$o8" "$v8")"
done
