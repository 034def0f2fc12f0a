#!/usr/bin/env bash
# Prepare real Linux 6.1 x86-64 translation units that contain paravirt
# sites (x86_64 defconfig + PARAVIRT_XXL + XEN_PV), for tests/bench/*.py and
# the opt-in kernel tests. Heavy: run by hand.
#
#   tests/bench/kernel_tus.sh [WORKDIR]      (default: out/kernel)
#
# The source tree WORKDIR/linux-source-6.1 stays clean: the build is out of
# tree (make O=WORKDIR/build-x86_64), so other configs can share the source.
# Leaves WORKDIR/tus/NAME.i and NAME.flags (gcc flags that compile the .i as
# the kernel build would), and NAME.cmd: the kernel's own compile command of
# the .c, run from WORKDIR/build-x86_64 (first line: that directory).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$here/out/kernel}
mkdir -p "$work"
work=$(cd "$work" && pwd)
cd "$work"
. "$here/tests/bench/kernel_source.sh"
build=$work/build-x86_64
mkdir -p "$build"
if [ ! -f "$build/.config" ]; then
  make -s -C "$src" O="$build" x86_64_defconfig >/dev/null
  "$src/scripts/config" --file "$build/.config" -e HYPERVISOR_GUEST -e PARAVIRT -e PARAVIRT_XXL \
    -e XEN -e XEN_PV -d PARAVIRT_SPINLOCKS -d DEBUG_INFO -d DEBUG_INFO_BTF
  make -s -C "$src" O="$build" olddefconfig >/dev/null
fi
make -s -C "$src" O="$build" -j"$(nproc)" prepare >/dev/null
mkdir -p "$work/tus"
for tu in arch/x86/kernel/paravirt arch/x86/kernel/process_64 arch/x86/mm/fault \
          kernel/sched/core mm/memory arch/x86/xen/enlighten_pv; do
  make -s -C "$src" O="$build" "$tu.i" "$tu.o" >/dev/null 2>&1 || { echo "skip $tu" >&2; continue; }
  name=$(echo "$tu" | tr / _)
  cp "$build/$tu.i" "$work/tus/$name.i"
  d=$(dirname "$tu"); b=$(basename "$tu")
  # the flags kbuild used, minus preprocessing ones, to compile the .i
  flags=$(sed -n 's/^cmd_.*:= //p' "$build/$d/.$b.i.cmd" 2>/dev/null | head -1)
  echo "$flags" | tr ' ' '\n' | grep -E '^-(m|f|O|W|std|g|D__KERNEL__|nostdinc|pipe)' | grep -v '^-Wp,' \
    | tr '\n' ' ' > "$work/tus/$name.flags" || true
  # the compile command of the .o, without the objtool run kbuild chains to it
  { echo "$build"; sed -n 's/^cmd_.*:= //p' "$build/$d/.$b.o.cmd" | head -1 | sed 's/ *;.*$//'; } \
    > "$work/tus/$name.cmd"
done
ls -la "$work/tus"
