"""The python -S -I variant (tests/bench/fastpath.py): the compiler, then
pvpass's own ELF reader and candidate test; exit 100 = undecided."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../.."))
def main():
    obj, cc = sys.argv[1], sys.argv[3:]
    pid = os.posix_spawnp(cc[0], cc, os.environ)
    _, st = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(st):
        return 1
    from pvpass.link.elfobj import ElfObject
    from pvpass.link.tablecheck import call_candidates
    o = ElfObject.read(obj)
    if o.section(".parainstructions") is not None or call_candidates(o):
        return 100
    return 0
sys.exit(main())
