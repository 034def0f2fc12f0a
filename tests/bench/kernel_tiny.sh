#!/usr/bin/env bash
# The small x86-64 Linux 6.1 kernel of the oracle (tests/bench/kernel_oracle.py
# and kernel_verify.py): tinyconfig plus what paravirt sites, a PVH boot in
# QEMU and a static init need. Heavy: run by hand (about 320 s CPU).
#
#   tests/bench/kernel_tiny.sh [WORKDIR [i386]]     (default: /work/kernel, x86-64)
#
# Leaves WORKDIR/build/vmlinux and WORKDIR/build.log (with GNU time's
# figures); for i386 WORKDIR/build-i386/vmlinux and WORKDIR/build-i386.log
# (tinyconfig + PARAVIRT, PARAVIRT_SPINLOCKS, KVM_GUEST, PVH: no XXL on i386).
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
work=${1:-/work/kernel}
mkdir -p "$work"
cd "$work"
. "$bench/kernel_source.sh"
if [ "${2:-x86_64}" = i386 ]; then
b=$work/build-i386
mkdir -p "$b"
make -s -C "$src" O="$b" ARCH=i386 tinyconfig >/dev/null
"$src/scripts/config" --file "$b/.config" -d 64BIT -e SMP -e HYPERVISOR_GUEST -e PARAVIRT -e KVM_GUEST \
  -e PARAVIRT_SPINLOCKS -e PVH -e BLK_DEV_INITRD -e PRINTK -e TTY -e SERIAL_8250 -e SERIAL_8250_CONSOLE \
  -e BINFMT_ELF -e DEVTMPFS -e DEVTMPFS_MOUNT -e EARLY_PRINTK -e PROC_FS -e SYSFS -e X86_LOCAL_APIC \
  -e X86_IO_APIC -e FUTEX -d DEBUG_INFO -d DEBUG_INFO_BTF -d ACPI -d PCI
make -s -C "$src" O="$b" ARCH=i386 olddefconfig >/dev/null
arch=ARCH=i386 log=$work/build-i386.log
else
b=$work/build
mkdir -p "$b"
make -s -C "$src" O="$b" tinyconfig >/dev/null
# two steps, as the measured build was configured: the first olddefconfig
# (with ACPI and PCI) leaves a few options (CPU_IDLE, THERMAL, ...) the
# second keeps
"$src/scripts/config" --file "$b/.config" -e 64BIT -e SMP -e HYPERVISOR_GUEST -e PARAVIRT \
  -e PARAVIRT_XXL -e XEN -e XEN_PV -e KVM_GUEST -e PARAVIRT_SPINLOCKS -e PVH -e XEN_PVH \
  -e BLK_DEV_INITRD -e RD_GZIP -e PRINTK -e TTY -e SERIAL_8250 -e SERIAL_8250_CONSOLE -e BINFMT_ELF \
  -e DEVTMPFS -e DEVTMPFS_MOUNT -e EARLY_PRINTK -e PCI -e ACPI -e PROC_FS -e SYSFS -e X86_LOCAL_APIC \
  -e X86_IO_APIC -d DEBUG_INFO -d DEBUG_INFO_BTF -e UNWINDER_FRAME_POINTER -e FUTEX 2>/dev/null
make -s -C "$src" O="$b" olddefconfig >/dev/null 2>&1
"$src/scripts/config" --file "$b/.config" -d ACPI -d PCI -d XEN_DOM0 -d XEN_PVHVM -d XEN_BALLOON \
  -d XEN_SAVE_RESTORE -d XEN_DEV_EVTCHN -d XEN_BACKEND -d XENFS -d XEN_SYS_HYPERVISOR -d XEN_GNTDEV \
  -d XEN_GRANT_DEV_ALLOC -d XEN_PRIVCMD
make -s -C "$src" O="$b" olddefconfig >/dev/null
arch="" log=$work/build.log
fi
kbuild 15 "$b" "$log" $arch
