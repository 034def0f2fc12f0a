#!/usr/bin/env bash
# The defconfig kernels of the oracle (tests/bench/kernel_oracle.py and
# kernel_verify.py), the configs issue 18 names:
#   x86-64: x86_64_defconfig + PARAVIRT_XXL + XEN_PV, as kernel_tus.sh
#           configures it (PARAVIRT_SPINLOCKS off, no debug info), plus PVH
#           so QEMU boots the ELF directly (defconfig already has
#           BLK_DEV_INITRD, RD_GZIP, DEVTMPFS, SERIAL_8250_CONSOLE).
#   i386:   i386_defconfig + PARAVIRT + PARAVIRT_SPINLOCKS + KVM_GUEST, as
#           kernel_build.py configures it, plus PVH.
# Heavy: run by hand (x86-64 about 1000 s CPU).
#
#   tests/bench/kernel_defconfig.sh [WORKDIR [i386]]    (default: /work/kernel, x86-64)
#
# Leaves WORKDIR/build-def/vmlinux and WORKDIR/build-def.log (with GNU
# time's figures); for i386 WORKDIR/build-def-i386/vmlinux and its log.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
work=${1:-/work/kernel}
mkdir -p "$work"
cd "$work"
. "$bench/kernel_source.sh"
if [ "${2:-x86_64}" = i386 ]; then
b=$work/build-def-i386 arch=ARCH=i386 log=$work/build-def-i386.log
mkdir -p "$b"
make -s -C "$src" O="$b" $arch i386_defconfig >/dev/null
"$src/scripts/config" --file "$b/.config" -e HYPERVISOR_GUEST -e PARAVIRT -e PARAVIRT_SPINLOCKS \
  -e KVM_GUEST -e PVH -d DEBUG_INFO -d DEBUG_INFO_BTF
else
b=$work/build-def arch="" log=$work/build-def.log
mkdir -p "$b"
make -s -C "$src" O="$b" x86_64_defconfig >/dev/null
"$src/scripts/config" --file "$b/.config" -e HYPERVISOR_GUEST -e PARAVIRT -e PARAVIRT_XXL \
  -e XEN -e XEN_PV -d PARAVIRT_SPINLOCKS -d DEBUG_INFO -d DEBUG_INFO_BTF -e PVH
fi
make -s -C "$src" O="$b" $arch olddefconfig >/dev/null
kbuild 10 "$b" "$log" $arch
