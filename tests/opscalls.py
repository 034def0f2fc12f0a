"""Count the indirect calls through an ops object in a compiled object,
apart from pvpass's own finders: pyelftools reads the relocations, capstone
(detail mode: operand structures and the registers each instruction
writes) decodes each function, and a register holds the object's address
from a relocated `mov`/`lea` (plain, GOT or GOTOFF) until an instruction
writes it, a `pop` restoring what a `push` saved keeping it. A call
counts when a relocation against the object lies in it or its memory
operand's base or index register holds the address."""
from __future__ import annotations

import capstone
from capstone import x86 as cx
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

# sub-registers to one name (capstone names them as AT&T does, without %)
_FULL = {}
for _n in ("a", "b", "c", "d"):
    for _v in (f"r{_n}x", f"e{_n}x", f"{_n}x", f"{_n}l", f"{_n}h"):
        _FULL[_v] = f"r{_n}x"
for _n in ("si", "di", "bp", "sp"):
    for _v in (f"r{_n}", f"e{_n}", _n, _n + "l"):
        _FULL[_v] = f"r{_n}"
for _i in range(8, 16):
    for _v in (f"r{_i}", f"r{_i}d", f"r{_i}w", f"r{_i}b"):
        _FULL[_v] = f"r{_i}"
_SCRATCH = {64: {"rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"}, 32: {"rax", "rcx", "rdx"}}


# GOTPCREL, GOTPCRELX, REX_GOTPCRELX; GOT32, GOT32X: a load of the address
_GOT = {64: {9, 41, 42}, 32: {3, 43}}


def _full(name: str) -> str:
    return _FULL.get(name, name)


def ops_calls(path, ops: str = "pv_ops") -> list[tuple[str, int]]:
    """(section, offset) of every call through `ops` in the object at path."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        bits = elf.elfclass
        cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64 if bits == 64 else capstone.CS_MODE_32)
        cs.detail = True
        symtab = elf.get_section_by_name(".symtab")
        out = []
        for idx, sec in enumerate(elf.iter_sections()):
            if not sec["sh_flags"] & 4 or sec["sh_type"] == "SHT_NOBITS":
                continue
            rel = elf.get_section_by_name((".rela" if bits == 64 else ".rel") + sec.name)
            hits: dict[int, int] = {}       # offset -> relocation type
            if isinstance(rel, RelocationSection):
                for r in rel.iter_relocations():
                    sym = symtab.get_symbol(r["r_info_sym"])
                    if sym.name == ops or (sym["st_info"]["type"] == "STT_SECTION" and _static_ops(elf, symtab, sym, ops)):
                        hits[r["r_offset"]] = r["r_info_type"]
            if not hits:
                continue
            data = sec.data()
            funcs = sorted((s["st_value"], s["st_value"] + s["st_size"]) for s in symtab.iter_symbols()
                           if s["st_info"]["type"] == "STT_FUNC" and s["st_shndx"] == idx and s["st_size"])
            for lo, hi in funcs or [(0, len(data))]:
                held: set[str] = set()
                stack: list[bool] = []
                for ins in cs.disasm(data[lo:hi], lo):
                    marked = [t for h, t in hits.items() if ins.address <= h < ins.address + ins.size]
                    if ins.group(capstone.CS_GRP_CALL) or ins.group(capstone.CS_GRP_JUMP):
                        op = ins.operands[0] if ins.operands else None
                        if op is not None and op.type == cx.X86_OP_MEM:
                            regs = {_full(ins.reg_name(r)) for r in (op.mem.base, op.mem.index) if r}
                            if marked or regs & held:
                                out.append((sec.name, ins.address))
                        elif ins.group(capstone.CS_GRP_CALL) and op is not None and op.type == cx.X86_OP_IMM:
                            held -= _SCRATCH[bits]
                        continue
                    if ins.mnemonic.startswith("push"):
                        op = ins.operands[0] if ins.operands else None
                        stack.append(op is not None and op.type == cx.X86_OP_REG
                                     and _full(ins.reg_name(op.reg)) in held)
                        continue
                    if ins.mnemonic.startswith("pop") and ins.operands and \
                            ins.operands[0].type == cx.X86_OP_REG and stack:
                        r = _full(ins.reg_name(ins.operands[0].reg))
                        (held.add if stack.pop() else held.discard)(r)
                        continue
                    _, written = ins.regs_access()
                    written = {_full(ins.reg_name(r)) for r in written}
                    dst = ins.operands[0] if ins.operands else None
                    if marked and len(ins.operands) == 2 and dst.type == cx.X86_OP_REG and (
                            ins.mnemonic.startswith("lea") or (ins.mnemonic.startswith("mov") and (
                                ins.operands[1].type == cx.X86_OP_IMM or marked[0] in _GOT[bits]))):
                        # (operands in Intel order: the destination first)
                        held.add(_full(ins.reg_name(dst.reg)))
                        continue
                    if ins.mnemonic.startswith("mov") and len(ins.operands) == 2 and dst.type == cx.X86_OP_REG \
                            and ins.operands[1].type == cx.X86_OP_REG \
                            and _full(ins.reg_name(ins.operands[1].reg)) in held:
                        held.add(_full(ins.reg_name(dst.reg)))
                        continue
                    held -= written
        return out


def _static_ops(elf, symtab, sym, ops: str) -> bool:
    """A section symbol of the section that holds a static `ops`."""
    for s in symtab.iter_symbols():
        if s.name == ops and s["st_shndx"] == sym["st_shndx"]:
            return True
    return False
