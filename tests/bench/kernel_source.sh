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
