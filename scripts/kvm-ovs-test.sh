#!/usr/bin/env bash
# Run the Open vSwitch kernel datapath tests (internal/datapath/ovs) against
# the real openvswitch module inside a throw-away qemu VM.
#
#   scripts/kvm-ovs-test.sh [go test flags passed to the test binary, e.g. -test.run=VXLAN]
#
# Steps: install the host tools (qemu, static busybox, cpio, kmod) if absent;
# download the Debian cloud kernel and build a tiny initramfs with the
# openvswitch module closure (cached in $CACHE, so reruns take seconds); build
# the package's tests as a static binary; boot one VM that runs them; print
# the counted line "N passed, N failed". Exit status 0 only if every test
# passed and none was skipped (a skip inside the VM means a broken setup).
#
# Env: CACHE (default /var/cache/midonet-kvm-ovs), KPKG (pin the kernel
# package), TIMEOUT (VM wall limit, default 300 s), PKG (default
# ./internal/datapath/ovs), BENCH=1 also runs the benchmarks in the VM.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CACHE:-/var/cache/midonet-kvm-ovs}
PKG=${PKG:-./internal/datapath/ovs}
TIMEOUT=${TIMEOUT:-300}
mkdir -p "$CACHE"
t0=$(date +%s.%N)

# --- host tools
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
{ [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; } || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v modinfo >/dev/null || need+=(kmod)
command -v file >/dev/null || need+=(file)
command -v xz >/dev/null || need+=(xz-utils)
command -v lz4 >/dev/null || need+=(lz4)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
  echo "kvm-ovs: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# --- kernel: the package behind linux-image-cloud-amd64, cached
if [ -z "${KPKG:-}" ]; then
  KPKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  if [ -z "$KPKG" ]; then
    apt-get update -q >/dev/null
    KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  fi
fi
[ -n "$KPKG" ] || { echo "kvm-ovs: cannot resolve the kernel package" >&2; exit 1; }
deb=$(ls "$CACHE/${KPKG}"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  echo "kvm-ovs: downloading $KPKG"
  (cd "$CACHE" && apt-get download "$KPKG" >/dev/null 2>&1)
  deb=$(ls "$CACHE/${KPKG}"_*.deb | head -1)
fi
KX=$CACHE/kernel-x
if [ ! -f "$KX/.done-$(basename "$deb")" ]; then
  rm -rf "$KX"; mkdir -p "$KX"; dpkg -x "$deb" "$KX"; touch "$KX/.done-$(basename "$deb")"
fi
KVER=$(ls "$KX/lib/modules" | head -1)
MODROOT=$KX/lib/modules/$KVER

# The ELF vmlinux inside the bzImage boots through its PVH note: no
# real-mode setup and no in-guest decompression (seconds under TCG).
VMLINUX=$CACHE/vmlinux-$KVER
if [ ! -s "$VMLINUX" ]; then
  z=$KX/boot/vmlinuz-$KVER
  for pair in "28b52ffd:zstd -dcq" "02214c18:lz4 -dc" "fd377a585a00:xz -dc" "1f8b0800:gzip -dc"; do
    magic=${pair%%:*}; tool=${pair#*:}
    for off in $(LC_ALL=C grep -abo -P "$(echo "$magic" | sed 's/../\\x&/g')" "$z" | cut -d: -f1 | head -3); do
      tail -c +$((off + 1)) "$z" | $tool > "$VMLINUX.tmp" 2>/dev/null || true
      if [ "$(head -c 4 "$VMLINUX.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
        mv "$VMLINUX.tmp" "$VMLINUX"; break 2
      fi
    done
  done
  rm -f "$VMLINUX.tmp"
  [ -s "$VMLINUX" ] || { echo "kvm-ovs: could not extract vmlinux from $z" >&2; exit 1; }
fi

# --- modules: openvswitch, the tunnel vports (no modprobe in the guest to
# autoload them), veth, and xfrm_user (the userspace backend's netlink
# handle opens NETLINK_XFRM and NETLINK_NETFILTER; it runs in the benchmarks for comparison),
# with their dependency closure in load order.
declare -A FILE=() SEEN=()
while IFS= read -r f; do n=$(basename "$f"); n=${n%%.ko*}; FILE[${n//-/_}]=$f; done < <(find "$MODROOT" -name '*.ko*')
ORDER=()
visit() {
  local m=${1//-/_} d f
  [ -n "${SEEN[$m]:-}" ] && return 0
  SEEN[$m]=1
  f=${FILE[$m]:-}
  if [ -z "$f" ]; then
    [ -n "${FILE[${m}_generic]:-}" ] && visit "${m}_generic"
    return 0 # built in
  fi
  for d in $(modinfo -F softdep "$f" | tr ' ' '\n' | awk '/^pre:/{p=1;next} /:$/{p=0} p'); do visit "$d"; done
  for d in $(modinfo -F depends "$f" | tr ',' ' '); do visit "$d"; done
  ORDER+=("$m")
}
ROOTS=(openvswitch vport_vxlan veth xfrm_user nfnetlink)
for r in "${ROOTS[@]}"; do visit "$r"; done

# --- base image (busybox, modules, init), cached per kernel
BASE=$CACHE/base-$KVER-$(echo "${ROOTS[*]}" | md5sum | cut -c1-8).cpio
if [ ! -s "$BASE" ]; then
  R=$(mktemp -d)
  mkdir -p "$R"/{bin,proc,sys,dev,tmp,run,lib/modules}
  cp /bin/busybox "$R/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
  : > "$R/lib/modules/order"
  for m in "${ORDER[@]}"; do
    f=${FILE[$m]}
    case "$f" in
      *.ko) cp "$f" "$R/lib/modules/$m.ko" ;;
      *.ko.xz) xz -dc "$f" > "$R/lib/modules/$m.ko" ;;
      *.ko.zst) zstd -qdc "$f" > "$R/lib/modules/$m.ko" ;;
    esac
    echo "$m" >> "$R/lib/modules/order"
  done
  cat > "$R/init" <<'INIT'
#!/bin/sh
# PID 1 of the test VM: load the modules, run /tests, report, power off.
export PATH=/bin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /var/run/netns && mount -t tmpfs tmpfs /var/run/netns
# The tests' embedded stores preallocate a 64 MB log each: /tmp on the
# initramfs (half the RAM, shared with the test binaries) ran out of space.
mount -t tmpfs -o size=70% tmpfs /tmp
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || echo "INIT: insmod $m FAILED"; done
# No IPv6 on new links: router solicitations and MLD would be upcalls.
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6
ip link set lo up
ARGS=$(sed -n 's/.*test_args=\([^ ]*\).*/\1/p' /proc/cmdline | tr ',' ' ')
cd /tmp && /tests -test.v $ARGS
echo "VM-TEST-EXIT=$?"
dmesg | grep -i 'openvswitch' | tail -n 20
sync
reboot -f
INIT
  chmod 755 "$R/init"
  (cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$BASE"
  rm -rf "$R"
fi

# --- the static test binary, appended to the base image as a second cpio
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
(cd "$ROOT" && CGO_ENABLED=0 go test -c -trimpath -o "$W/tests" "$PKG")
# The midonet binary too, so that `midonet agent --datapath ovs` itself runs
# against the module (TestMidonetAgentBinaryForwardsThroughKernel).
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$W/midonet" ./cmd/midonet)
(cd "$W" && printf 'tests\nmidonet\n' | cpio -o -H newc --quiet -R 0:0) > "$W/tests.cpio"
cat "$BASE" "$W/tests.cpio" | gzip -1 > "$W/initramfs.gz"

args=${1:+$(echo "$*" | tr ' ' ',')}
if [ "${BENCH:-}" = 1 ]; then args="${args:+$args,}-test.bench=.,-test.benchtime=${BENCHTIME:-2000x},-test.benchmem"; fi

accel=(-accel tcg -cpu max)
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
  accel=(-accel kvm -cpu host,-arch-capabilities)
fi
append="console=ttyS0 panic=-1 quiet reboot=t lpj=1000000 tsc=reliable no_timer_check"
append+=" i8042.noaux i8042.nokbd i8042.nopnp cryptomgr.notests mitigations=off audit=0 8250.nr_uarts=1"
[ -n "$args" ] && append+=" test_args=$args"
LOG=$CACHE/console.log # kept for a look after a failure
t1=$(date +%s.%N)
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -M pc "${accel[@]}" -m 1024 -smp 1 \
  -nodefaults -no-user-config -nographic -serial stdio -no-reboot \
  -kernel "$VMLINUX" -initrd "$W/initramfs.gz" -append "$append" </dev/null >"$LOG" 2>&1
qrc=$?
set -e
t2=$(date +%s.%N)
tr -d '\r' < "$LOG" | grep -av '^\s*$' | sed 's/^/vm: /'

passed=$(tr -d '\r' < "$LOG" | grep -ac '^--- PASS: ' || true)
failed=$(tr -d '\r' < "$LOG" | grep -ac '^--- FAIL: ' || true)
skipped=$(tr -d '\r' < "$LOG" | grep -ac '^--- SKIP: ' || true)
failed=$((failed + skipped)) # a skip inside the VM is a broken setup
rc=$(tr -d '\r' < "$LOG" | sed -n 's/^VM-TEST-EXIT=\([0-9]*\).*/\1/p' | tail -1)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v q="$qrc" -v s="$skipped" 'BEGIN{printf "kvm-ovs: prepare %.1fs, vm %.1fs, qemu exit %d, %d skipped (counted as failed)\n", b-a, c-b, q, s}'
echo "$passed passed, $failed failed"
min_passed=1
[ "${BENCH:-}" = 1 ] && min_passed=0 # benchmarks alone (-test.run=^$) run no tests
if [ "${rc:-x}" != 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -lt "$min_passed" ]; then
  [ "${rc:-x}" = x ] && echo "kvm-ovs: the VM did not report an exit status (timeout $TIMEOUT s or crash)" >&2
  exit 1
fi
