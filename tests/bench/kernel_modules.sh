#!/bin/sh
# Build the module oracle's modules against a kernel build directory that
# ran `make vmlinux` only, without writing into it:
#
#     tests/bench/kernel_modules.sh BUILD_DIR WORKDIR
#
# `make -C BUILD_DIR M=... modules` needs two files such a build has not
# made: scripts/module.lds (`make modules_prepare`) and Module.symvers
# (`make modules`; vmlinux.symvers holds vmlinux's part). So WORKDIR/objtree
# is a copy of BUILD_DIR made of symbolic links, with those two files of its
# own: module.lds preprocessed from the source tree's scripts/module.lds.S
# as kbuild's cpp_lds_S does, Module.symvers a copy of vmlinux.symvers.
# Builds WORKDIR/pvmod/{pvmod,pvmod_inline}.ko (tests/bench/kmod) and
# WORKDIR/kmods/x86_pkg_temp_thermal.ko, the one module of the x86-64
# defconfig (+ PARAVIRT_XXL XEN_PV) that holds paravirt sites.
set -eu
K=$(cd "$1" && pwd)
mkdir -p "$2"
W=$(cd "$2" && pwd)
S=$(readlink -f "$K/source")
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$W/objtree" "$W/pvmod" "$W/kmods"
mkdir -p "$W/objtree/scripts" "$W/pvmod" "$W/kmods"
for f in "$K"/* "$K"/.config; do
	[ "$(basename "$f")" = scripts ] || ln -s "$f" "$W/objtree/$(basename "$f")"
done
for f in "$K"/scripts/*; do
	ln -s "$f" "$W/objtree/scripts/$(basename "$f")"
done
cp "$K/vmlinux.symvers" "$W/objtree/Module.symvers"
gcc -E -P -Ux86 -D__ASSEMBLY__ -DLINKER_SCRIPT -nostdinc -I"$S/arch/x86/include" \
	-I"$K/arch/x86/include/generated" -I"$S/include" -I"$K/include" \
	-include "$S/include/linux/kconfig.h" -x c "$S/scripts/module.lds.S" -o "$W/objtree/scripts/module.lds"
cp "$HERE"/kmod/* "$W/pvmod/"
cp "$S/drivers/thermal/intel/x86_pkg_temp_thermal.c" "$S/drivers/thermal/intel/thermal_interrupt.h" "$W/kmods/"
echo "obj-m += x86_pkg_temp_thermal.o" > "$W/kmods/Kbuild"
for m in pvmod kmods; do
	nice -n 10 make -C "$W/objtree" M="$W/$m" modules
done
ls -l "$W"/pvmod/*.ko "$W"/kmods/*.ko
