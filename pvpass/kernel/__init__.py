"""The Linux kernel's own boot-time patcher, read from an image: the oracle for
what pvpass writes into a vmlinux (`patch`, `show`, `verify` on a kernel image)."""
