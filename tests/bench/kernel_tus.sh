#!/usr/bin/env bash
# Prepare real preprocessed Linux 6.1 x86-64 translation units that contain
# paravirt sites (x86_64 defconfig + PARAVIRT_XXL + XEN_PV), for
# tests/bench/scan_vs_gcc.py and the opt-in kernel tests. Heavy: run by hand.
#
#   tests/bench/kernel_tus.sh [WORKDIR]      (default: out/kernel)
#
# Leaves WORKDIR/tus/*.i, plus WORKDIR/tus/*.flags with the gcc flags that
# compile each .i as the kernel build would.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$here/out/kernel}
mkdir -p "$work"
cd "$work"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ! -f /usr/src/linux-source-6.1.tar.xz ]; then
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q linux-source-6.1 >/dev/null
fi
for pkg in flex bison bc libelf-dev libssl-dev cpio; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="${missing:-} $pkg"
done
if [ -n "${missing:-}" ]; then
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing >/dev/null
fi
[ -d linux-source-6.1 ] || tar xJf /usr/src/linux-source-6.1.tar.xz
cd linux-source-6.1
if [ ! -f .config ]; then
  make -s x86_64_defconfig
  ./scripts/config -e HYPERVISOR_GUEST -e PARAVIRT -e PARAVIRT_XXL -e XEN -e XEN_PV \
    -d PARAVIRT_SPINLOCKS -d DEBUG_INFO -d DEBUG_INFO_BTF
  make -s olddefconfig
fi
make -s -j"$(nproc)" prepare >/dev/null
mkdir -p "$work/tus"
for tu in arch/x86/kernel/paravirt arch/x86/kernel/process_64 arch/x86/mm/fault \
          kernel/sched/core mm/memory arch/x86/xen/enlighten_pv; do
  make -s "$tu.i" >/dev/null 2>&1 || { echo "skip $tu" >&2; continue; }
  name=$(echo "$tu" | tr / _)
  cp "$tu.i" "$work/tus/$name.i"
  # the flags kbuild used, minus preprocessing ones, to compile the .i
  flags=$(sed -n 's/^cmd_.*:= //p' "$(dirname "$tu")/.$(basename "$tu").i.cmd" 2>/dev/null | head -1)
  echo "$flags" | tr ' ' '\n' | grep -E '^-(m|f|O|W|std|g|D__KERNEL__|nostdinc|pipe)' | grep -v '^-Wp,' \
    | tr '\n' ' ' > "$work/tus/$name.flags" || true
done
ls -la "$work/tus"
