"""Emit: the patch-site table, per-backend patches and the stubs
(inline replacements, trampolines), and their renderings."""
