"""pvpass: find, check, table and patch paravirt-ops call sites in C builds."""
__version__ = "0.1.0"
