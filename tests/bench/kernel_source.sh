# Sourced by tests/bench/kernel_tus.sh and kernel_tiny.sh, in the work
# directory: installs what a Linux 6.1 build needs (apt) and unpacks
# Debian's linux-source-6.1 there; sets src to the tree.
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=""
for pkg in linux-source-6.1 flex bison bc libelf-dev libssl-dev cpio; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing >/dev/null
fi
[ -d linux-source-6.1 ] || tar xJf /usr/src/linux-source-6.1.tar.xz
src=$PWD/linux-source-6.1

# kbuild NICE BUILDDIR LOG [make args...]: `make vmlinux` of a configured
# build directory, reproducibly (fixed KBUILD_BUILD_*), under GNU time
# (its figures end LOG); prints the CPU and wall lines and the image.
kbuild() {
  local nice=$1 b=$2 log=$3
  shift 3
  KBUILD_BUILD_TIMESTAMP="Thu Jan  1 00:00:00 UTC 2026" KBUILD_BUILD_USER=pvpass \
    KBUILD_BUILD_HOST=pvpass KBUILD_BUILD_VERSION=1 \
    /usr/bin/time -v nice -n "$nice" make -C "$src" O="$b" "$@" -j2 vmlinux > "$log" 2>&1
  grep -E "User time|System time|Elapsed" "$log"
  ls -la "$b/vmlinux"
}
