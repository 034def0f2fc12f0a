"""Mutation suite: break built artifacts (not pvpass's source) the way a
generator bug would, and require `pvpass verify` to fail on every mutant
with a message naming the site copy.

Bytes are located through the file's own sections, symbols, relocations
and patch records (the layout of pvpass_rt.h, decoded here with struct),
instructions through capstone, and replacement instructions are
assembled by GNU as."""
from __future__ import annotations

import dataclasses
import functools
import io
import re
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from capstone import CS_ARCH_X86, CS_MODE_32, CS_MODE_64, Cs
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from pvpass.verify.run import verify

from conftest import run_pvpass
from verify_artifacts import RT, artifact, declared, demo_dir, maps, workdir


@functools.cache
def gas(bits: int, text: str) -> bytes:
    """`text` assembled by GNU as."""
    with tempfile.TemporaryDirectory() as d:
        s, o, b = Path(d, "m.s"), Path(d, "m.o"), Path(d, "m.bin")
        s.write_text(f".text\n{text}\n")
        subprocess.run(["as", "--64" if bits == 64 else "--32", "-o", str(o), str(s)], check=True)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(o), str(b)], check=True)
        return b.read_bytes()


def nops(bits: int, n: int) -> bytes:
    """n bytes of NOPs, as few instructions as GNU as makes them."""
    return gas(bits, f".nops {n}") if n else b""


@dataclass
class Rel:
    entry: int        # file offset of the relocation entry
    offset: int       # r_offset
    sym: int
    type: int
    addend: int | None


class Elf:
    """A relocatable object as bytes to edit, read with pyelftools."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = bytearray(path.read_bytes())
        self.elf = ELFFile(io.BytesIO(bytes(self.data)))
        self.bits = self.elf.elfclass
        self.w = self.bits // 8
        self.cs = Cs(CS_ARCH_X86, CS_MODE_64 if self.bits == 64 else CS_MODE_32)

    def sec(self, name: str):
        return self.elf.get_section_by_name(name)

    def off(self, name: str, at: int = 0) -> int:
        return self.sec(name)["sh_offset"] + at

    def symbols(self):
        return list(self.elf.get_section_by_name(".symtab").iter_symbols())

    def sym(self, pred):
        return next((i, s) for i, s in enumerate(self.symbols()) if pred(s))

    def relocs(self, name: str) -> list[Rel]:
        idx = next(i for i, s in enumerate(self.elf.iter_sections()) if s.name == name)
        out = []
        for s in self.elf.iter_sections():
            if isinstance(s, RelocationSection) and s["sh_info"] == idx:
                for k, r in enumerate(s.iter_relocations()):
                    out.append(Rel(s["sh_offset"] + k * s["sh_entsize"], r["r_offset"], r["r_info_sym"],
                                   r["r_info_type"], r["r_addend"] if r.is_RELA() else None))
        return out

    def reloc_at(self, name: str, offset: int) -> Rel:
        return next(r for r in self.relocs(name) if r.offset == offset)

    def set_reloc(self, r: Rel, sym: int | None = None, type_: int | None = None,
                  offset: int | None = None, addend: int | None = None) -> None:
        sym = r.sym if sym is None else sym
        type_ = r.type if type_ is None else type_
        if self.bits == 64:
            struct.pack_into("<QQq", self.data, r.entry, r.offset if offset is None else offset,
                             (sym << 32) | type_, r.addend if addend is None else addend)
        else:
            struct.pack_into("<II", self.data, r.entry, r.offset if offset is None else offset,
                             (sym << 8) | type_)

    def addend(self, sec: str, r: Rel) -> int:
        if r.addend is not None:
            return r.addend
        return struct.unpack_from("<i", self.data, self.off(sec, r.offset))[0]

    def insns(self, sec: str, start: int, size: int):
        o = self.off(sec, start)
        return list(self.cs.disasm(bytes(self.data[o:o + size]), start))

    def put(self, sec: str, at: int, b: bytes) -> None:
        o = self.off(sec, at)
        self.data[o:o + len(b)] = b

    def save(self, tag: str) -> Path:
        out = workdir() / f"mutant-{tag}.o"
        out.write_bytes(bytes(self.data))
        return out

    # --- the patch records (struct pvpass_patch of pvpass_rt.h) ---

    def records(self) -> list[dict]:
        w, size = self.w, 3 * self.w + 8
        sec = self.sec(".pvpass.patches")
        rel = {r.offset: r for r in self.relocs(".pvpass.patches")}
        names = {i: s.name for i, s in enumerate(self.symbols())}
        strings = bytes(self.sec(".pvpass.strings").data())
        out = []
        for at in range(0, sec["sh_size"], size):
            typ, ln, clob, call, kind, pcrel = struct.unpack_from("<BBHBBB", self.data,
                                                                  sec["sh_offset"] + at + 3 * w)
            b = self.addend(".pvpass.patches", rel[at])
            out.append({"at": at, "backend": strings[b:strings.index(b"\0", b)].decode(),
                        "code": self.addend(".pvpass.patches", rel[at + w]), "type": typ, "len": ln,
                        "call_off": None if call == 0xFF else call, "kind": kind,
                        "pcrel_off": None if pcrel == 0xFF else pcrel,
                        "target": rel.get(at + 2 * w) and names[rel[at + 2 * w].sym]})
        return out

    def record(self, **want) -> dict:
        return next(r for r in self.records() if all(r[k] == v for k, v in want.items()))

    def set_field(self, rec: dict, field: str, value: int) -> None:
        pos = {"type": 0, "len": 1, "call_off": 4, "pcrel_off": 6}[field]
        self.data[self.off(".pvpass.patches", rec["at"] + 3 * self.w + pos)] = value

    # --- sites (the table's entries) and trampolines ---

    def sites(self) -> list[tuple[str, int, int]]:
        """(section, offset, len) per table entry."""
        size = 16 if self.bits == 64 else 8
        out = []
        for r in sorted(self.relocs(".parainstructions"), key=lambda r: r.offset):
            sec = self.elf.get_section(self.symbols()[r.sym]["st_shndx"]).name
            ln = self.data[self.off(".parainstructions", r.offset + self.w + 1)]
            out.append((sec, self.addend(".parainstructions", r), ln))
            assert r.offset % size == 0
        return out

    def site_with_call(self) -> tuple[str, int, int, Rel]:
        """The first site whose bytes start with a relocated call rel32."""
        for sec, at, ln in self.sites():
            o = self.off(sec, at)
            if self.data[o] == 0xE8:
                return sec, at, ln, self.reloc_at(sec, at + 1)
        raise AssertionError("no site with a call")

    def trampoline(self, with_arg: bool = False):
        """(symbol, instructions) of a trampoline; with_arg: one whose target
        takes an argument (pte_val) when there is one."""
        tr = [s for s in self.symbols() if s.name.startswith("__pvpass_tramp_")]
        if with_arg:
            tr = [s for s in tr if "pte_val" in s.name] or tr
        s = tr[0]
        return s, self.insns(".text.pvpass", s["st_value"], s["st_size"])


def first(insns, pred):
    return next(i for i in insns if pred(i))


# --- the mutants: each edits a copy and returns it -------------------------

def drop_push(e: Elf):
    _, ins = e.trampoline()
    p = first(ins, lambda i: i.mnemonic == "push")
    e.put(".text.pvpass", p.address, nops(e.bits, p.size))


def swap_pops(e: Elf):
    _, ins = e.trampoline()
    pops = [i for i in ins if i.mnemonic == "pop" and i.size == 1]
    a, b = next((a, b) for a, b in zip(pops, pops[1:]) if b.address == a.address + 1)
    e.put(".text.pvpass", a.address, bytes(b.bytes) + bytes(a.bytes))


def _lea_pair(e: Elf):
    _, ins = e.trampoline(with_arg=True)
    leas = [i for i in ins if i.mnemonic in ("lea", "sub", "add") and "sp" in i.op_str]
    assert len(leas) == 2, [f"{i.mnemonic} {i.op_str}" for i in ins]
    return leas


def break_alignment(e: Elf):
    for i in _lea_pair(e):
        e.put(".text.pvpass", i.address, nops(e.bits, i.size))


def save_result(e: Elf):
    """push/pop %rax in place of the alignment slot: the result is lost."""
    down, up = _lea_pair(e)
    e.put(".text.pvpass", down.address, gas(64, "pushq %rax") + nops(64, down.size - 1))
    e.put(".text.pvpass", up.address, nops(64, up.size - 1) + gas(64, "popq %rax"))


def zero_arg_in_trampoline(e: Elf):
    down, _ = _lea_pair(e)
    code = gas(64, "pushq %rax; xorl %edi, %edi")
    e.put(".text.pvpass", down.address, code + nops(64, down.size - len(code)))


def wrong_target_in_trampoline(e: Elf):
    s, ins = e.trampoline()
    call = first(ins, lambda i: i.mnemonic == "call")
    r = e.reloc_at(".text.pvpass", call.address + 1)
    other, _ = e.sym(lambda x: x["st_info"]["type"] == "STT_FUNC" and x["st_shndx"] != "SHN_UNDEF"
                     and not x.name.startswith("__pvpass") and e.symbols()[r.sym].name != x.name)
    e.set_reloc(r, sym=other)


def record_call_to_nops(e: Elf):
    rec = next(r for r in e.records() if r["call_off"] is not None)
    e.put(".pvpass.code", rec["code"] + rec["call_off"], nops(e.bits, 5))
    e.set_field(rec, "call_off", 0xFF)


def record_shorter(e: Elf):
    rec = next(r for r in e.records() if r["call_off"] is not None)
    e.set_field(rec, "len", rec["len"] - 1)


def record_longer(e: Elf):
    rec = next(r for r in e.records() if r["call_off"] is not None)
    e.set_field(rec, "len", rec["len"] + 1)


def _inline(e: Elf):
    return next(r for r in e.records() if r["kind"] == 1 and r["len"] >= 6)


def _inline_insns(e: Elf, rec):
    return e.insns(".pvpass.code", rec["code"], rec["len"])


def inline_extra_write(e: Elf):
    """A register write in the padding: on x86-64 the zero-extending
    `movl %esi, %esi` (the low half is unchanged)."""
    rec = _inline(e)
    ins = _inline_insns(e, rec)
    pad = first(ins, lambda i: i.mnemonic == "nop" and i.size >= 2)
    extra = gas(e.bits, "movl %esi, %esi" if e.bits == 64 else "xorl %ebx, %ebx")
    e.put(".pvpass.code", pad.address, extra + nops(e.bits, rec["code"] + rec["len"] - pad.address - len(extra)))


def inline_swapgs_stack_low(e: Elf):
    rec = next(r for r in e.records() if r["kind"] == 1 and r["len"] == 6)
    e.put(".pvpass.code", rec["code"], gas(64, "swapgs; pushfq; popq %rax; pushq %rax"))


def inline_writes_caller_frame(e: Elf):
    rec = next(r for r in e.records() if r["kind"] == 1 and r["len"] == 6)
    code = gas(64, "movq %rax, 8(%rsp)")
    e.put(".pvpass.code", rec["code"], code + nops(64, 6 - len(code)))


def zero_arg_in_record(e: Elf):
    """i386: `xorl %eax, %eax` (the first regparm argument) before the call."""
    rec = next(r for r in e.records() if r["call_off"] == 0 and r["len"] >= 7)
    code = gas(32, "xorl %eax, %eax") + bytes([0xE8, 0, 0, 0, 0])
    e.put(".pvpass.code", rec["code"], code + nops(32, rec["len"] - len(code)))
    e.set_field(rec, "call_off", 2)


# ahead-of-time patched objects: the site's own bytes

def aot_call_to_nops(e: Elf):
    sec, at, _, r = e.site_with_call()
    e.put(sec, at, nops(e.bits, 5))
    e.set_reloc(r, type_=0)                      # R_X86_64_NONE / R_386_NONE


def aot_wrong_target(e: Elf):
    sec, at, _, r = e.site_with_call()
    other, _ = e.sym(lambda x: x["st_info"]["type"] == "STT_FUNC" and x["st_shndx"] != "SHN_UNDEF"
                     and x.name != e.symbols()[r.sym].name and not x.name.startswith("__pvpass"))
    e.set_reloc(r, sym=other)


def _last_pad(e: Elf, sec: str, at: int, ln: int):
    ins = e.insns(sec, at, ln)
    assert ins[-1].address + ins[-1].size == at + ln
    return ins[-1]


def aot_padding_short(e: Elf, unpatched: Path):
    """One byte short: the last byte keeps what the unpatched site held."""
    sec, at, ln, _ = e.site_with_call()
    last = _last_pad(e, sec, at, ln)
    old = Elf(unpatched)
    e.put(sec, last.address, nops(e.bits, last.size - 1) + bytes([old.data[old.off(sec, at + ln - 1)]]))


def aot_padding_long(e: Elf):
    """One byte long: the last NOP, one byte longer (one instruction), runs
    over the byte after the site."""
    for sec, at, ln in e.sites():
        last = _last_pad(e, sec, at, ln)
        longer = nops(e.bits, last.size + 1)
        if last.mnemonic == "nop" and next(e.cs.disasm(longer, 0)).size == len(longer):
            e.put(sec, last.address, longer)
            return
    raise AssertionError("no site whose padding GNU as can lengthen by one instruction")


def aot_extra_write(e: Elf):
    for sec, at, ln in e.sites():
        ins = e.insns(sec, at, ln)
        pad = [i for i in ins if i.mnemonic == "nop" and i.size >= 2]
        if ins[0].mnemonic != "call" and pad:
            extra = gas(e.bits, "movl %esi, %esi" if e.bits == 64 else "xorl %ebx, %ebx")
            e.put(sec, pad[0].address, extra + nops(e.bits, at + ln - pad[0].address - len(extra)))
            return
    raise AssertionError("no inline site with padding")


def aot_zero_arg(e: Elf):
    """i386: `xorl %eax, %eax` before the site's call; the call (and its REL
    relocation, the addend in place) moved past it."""
    pre = gas(32, "xorl %eax, %eax")
    sec, at, ln = next(s for s in e.sites() if e.data[e.off(s[0], s[1])] == 0xE8 and s[2] >= 5 + len(pre))
    r = e.reloc_at(sec, at + 1)
    call = bytes(e.data[e.off(sec, at):e.off(sec, at + 5)])
    e.put(sec, at, pre + call + nops(32, ln - 5 - len(pre)))
    e.set_reloc(r, offset=at + len(pre) + 1)


# inline replacements that name symbols: the fixups in .pvpass.code (linked
# objects), the site's own relocations (ahead of time)

def _fixup(e: Elf, sec: str, type_name: str, at: int = 0, size: int | None = None,
           sym: str | None = None) -> Rel:
    """The first relocation of that type (against sym) in [at, at + size) of the section."""
    types = {"R_X86_64_PC32": 2, "R_X86_64_32S": 11, "R_X86_64_32": 10, "R_386_32": 1}
    return next(r for r in sorted(e.relocs(sec), key=lambda r: r.offset) if r.type == types[type_name]
                and at <= r.offset < at + (size if size is not None else 1 << 62)
                and (sym is None or e.symbols()[r.sym].name == sym))


def _symbol(e: Elf, name: str) -> int:
    return e.sym(lambda x: x.name == name)[0]


def pcrel_not_rebased(e: Elf):
    rec = next(r for r in e.records() if r["pcrel_off"] is not None)
    e.set_field(rec, "pcrel_off", 0xFF)


def pcrel_off_by_one(e: Elf):
    rec = next(r for r in e.records() if r["pcrel_off"] is not None)
    e.set_field(rec, "pcrel_off", rec["pcrel_off"] + 1)


def fixup_wrong_displacement(e: Elf):
    """The RIP-relative fixup's addend 4 KiB off: the store names no datum."""
    r = _fixup(e, ".pvpass.code", "R_X86_64_PC32")
    e.set_reloc(r, addend=r.addend - 0x1000)


def fixup_names_code(e: Elf):
    """The absolute store's fixup against a function: it would write code."""
    r = _fixup(e, ".pvpass.code", "R_X86_64_32S")
    e.set_reloc(r, sym=_symbol(e, "f_set_abs"))


def fixup_other_datum(e: Elf, rtype: str, other: str):
    """The store's fixup against another data symbol: only the function the
    ops object holds for the op says it is the wrong one."""
    r = _fixup(e, ".pvpass.code", rtype)
    e.set_reloc(r, sym=_symbol(e, other))


def fixup_one_byte_late(e: Elf):
    """i386 (REL): the R_386_32 field one byte later, over the immediate."""
    r = _fixup(e, ".pvpass.code", "R_386_32")
    e.set_reloc(r, offset=r.offset + 1)


def store_through_register(e: Elf, rtype: str, insn: str):
    """The named store made a store through a register that holds no
    argument (its fixup dropped: R_*_NONE)."""
    r = _fixup(e, ".pvpass.code", rtype)
    rec = next(x for x in e.records() if x["code"] <= r.offset < x["code"] + x["len"])
    code = gas(e.bits, insn)
    e.put(".pvpass.code", rec["code"], code + nops(e.bits, rec["len"] - len(code)))
    e.set_reloc(r, type_=0)


def _site_fixup(e: Elf, type_name: str, sym: str | None = None) -> tuple[str, Rel]:
    for sec, at, ln in e.sites():
        try:
            return sec, _fixup(e, sec, type_name, at, ln, sym)
        except StopIteration:
            continue
    raise AssertionError(f"no site holds a {type_name} fixup")


def aot_wrong_displacement(e: Elf):
    """The site's RIP-relative store 4 bytes on: reloc_arr+12, not +8."""
    _, r = _site_fixup(e, "R_X86_64_PC32")
    e.set_reloc(r, addend=r.addend + 4)


def aot_other_datum(e: Elf, rtype: str, other: str):
    """The site's absolute store relocated against another data symbol."""
    _, r = _site_fixup(e, rtype)
    e.set_reloc(r, sym=_symbol(e, other))


def aot_percpu_through_fs(e: Elf):
    """`movl $9, %gs:reloc_pcpu` turned into a %fs: store (prefix 0x65 -> 0x64)."""
    sec, r = _site_fixup(e, "R_X86_64_32S", "reloc_pcpu")
    ins = e.insns(sec, r.offset - 4, 4)
    assert e.data[e.off(sec, r.offset - 4)] == 0x65, [f"{i.mnemonic} {i.op_str}" for i in ins]
    e.data[e.off(sec, r.offset - 4)] = 0x64


# issue 17: what only the function a patch stands for, the backend's
# declared text (GNU as, ld) or the compiled caller can tell

def _op_type(name: str, backend: str, op: str) -> int:
    """The op's type number, as the artifact's source declares it."""
    return next(t for (b, t), d in declared(name).targets.items() if b == backend and d.op == op)


def _inline_of(e: Elf, name: str, backend: str, op: str) -> dict:
    return e.record(backend=backend, type=_op_type(name, backend, op), kind=1)


def inline_text(name: str, backend: str, op: str, text: str, keep_fixups: bool = False):
    """The record's inline code replaced by `text` (then NOPs): what an
    encoder bug or a wrong table would give. The code's fixups go (R_*_NONE)
    unless `text` keeps the declared symbol's field where it was."""
    def mutate(e: Elf):
        rec = _inline_of(e, name, backend, op)
        code = gas(e.bits, text)
        e.put(".pvpass.code", rec["code"], code + nops(e.bits, rec["len"] - len(code)))
        for r in e.relocs(".pvpass.code"):
            if rec["code"] <= r.offset < rec["code"] + rec["len"] and not keep_fixups:
                e.set_reloc(r, type_=0)
    return mutate


def fixup_addend(rtype: str, sym: str, by: int = 4):
    """The inline code's fixup a few bytes off (still inside the symbol):
    the addend of RELA, the field's bytes of REL (i386)."""
    def mutate(e: Elf):
        r = _fixup(e, ".pvpass.code", rtype, sym=sym)
        if r.addend is not None:
            e.set_reloc(r, addend=r.addend + by)
        else:
            at = e.off(".pvpass.code", r.offset)
            struct.pack_into("<i", e.data, at, struct.unpack_from("<i", e.data, at)[0] + by)
    return mutate


def drop_segment_prefix(name: str, op: str, prefix: int):
    """The per-CPU store's segment prefix lost: a DS prefix (no effect) in
    its place keeps the length and the fixup where they were."""
    def mutate(e: Elf):
        rec = _inline_of(e, name, "sym_ops", op)
        at = e.off(".pvpass.code", rec["code"])
        assert e.data[at] == prefix, e.data[at:at + 4].hex()
        e.data[at] = 0x3E
    return mutate


def widen_callee_save_masks(extra: int):
    """Every callee-save site (mask: the result register only) and every
    record for one, annotated with `extra` clobbered too: the table and
    the records agree with each other, not with gcc's asm constraints."""
    def mutate(e: Elf):
        entry = 16 if e.bits == 64 else 8
        tab = e.sec(".parainstructions")
        for at in range(0, tab["sh_size"], entry):
            o = tab["sh_offset"] + at + e.w + 2
            if struct.unpack_from("<H", e.data, o)[0] == 1:
                struct.pack_into("<H", e.data, o, 1 | extra)
        for rec in e.records():
            o = e.off(".pvpass.patches", rec["at"] + 3 * e.w + 2)
            if struct.unpack_from("<H", e.data, o)[0] == 1:
                struct.pack_into("<H", e.data, o, 1 | extra)
    return mutate


# (artifact, what, mutation, what verify is given, what it must say): "text",
# the source's declarations (the declared text is checked first); "target",
# only the functions the backends name (the route where no text is declared:
# the patch against that function, from the same start states)
EQUIVALENCE = [
    ("demo.o", "a wrong-value inline (pte_val: movq %rsi, %rax)",
     inline_text("demo.o", "native_ops", "mmu.pte_val", "mov %rsi, %rax"), "text", "not the declared replacement"),
    ("demo.o", "a wrong-value inline (pte_val: movq %rsi, %rax)",
     inline_text("demo.o", "native_ops", "mmu.pte_val", "mov %rsi, %rax"), "target", "result %rax is"),
    ("systems32", "a wrong-value inline (save_fl: movl %edx, %eax)",
     inline_text("systems32", "lguest_ops", "irq.save_fl", "movl %edx, %eax"), "text",
     "not the declared replacement"),
    ("systems32", "a wrong-value inline (save_fl: movl %edx, %eax)",
     inline_text("systems32", "lguest_ops", "irq.save_fl", "movl %edx, %eax"), "target", "result %eax is"),
    ("reloc64", "R_X86_64_PC32 addend 4 off (before a trailing immediate)",
     fixup_addend("R_X86_64_PC32", "reloc_arr"), "text", "not the declared replacement"),
    ("reloc64", "R_X86_64_32S (%gs:) addend 4 off", fixup_addend("R_X86_64_32S", "reloc_pcpu"), "text",
     "not the declared replacement"),
    ("reloc64", "R_X86_64_32 (immediate) addend 4 off", fixup_addend("R_X86_64_32", "reloc_abs"), "text",
     "not the declared replacement"),
    ("reloc32", "R_386_32 (%fs:) field 4 off", fixup_addend("R_386_32", "reloc_pcpu"), "text",
     "not the declared replacement"),
    ("reloc32", "R_386_32 (immediate) field 4 off", lambda e: _reloc32_imm(e), "text",
     "not the declared replacement"),
    ("reloc64", "a dropped %gs: prefix", drop_segment_prefix("reloc64", "set_pcpu", 0x65), "text",
     "not the declared replacement"),
    ("reloc32", "a dropped %fs: prefix", drop_segment_prefix("reloc32", "set_pcpu", 0x64), "text",
     "not the declared replacement"),
    ("demo.o", "callee-save masks wider than gcc was told (rax, rcx)", widen_callee_save_masks(2), "text",
     ("lets a patch change %rcx, but the caller still needs it", "(the site is written at ", "demo.c:")),
    ("k2621", "callee-save masks wider than gcc was told (eax, ecx)", widen_callee_save_masks(2), "text",
     "lets a patch change %ecx, but the caller still needs it"),
    ("demo.o", "a patch that leaves the site (swapgs; sysretq)",
     inline_text("demo.o", "native_ops", "irq.save_fl", "swapgs; sysretq"), "target", "leaves the site"),
    ("systems32", "a patch that leaves the site (sti; sysexit)",
     inline_text("systems32", "lguest_ops", "irq.save_fl", "sti; sysexit"), "target", "leaves the site"),
    ("demo.o", "a patch that changes a segment base (swapgs; movq %rdi, %rax)",
     inline_text("demo.o", "native_ops", "mmu.pte_val", "swapgs; mov %rdi, %rax"), "target", "the GS base is"),
    ("reloc32", "a patch that loads a segment register (movl $7, reloc_abs; movw %dx, %gs)",
     inline_text("reloc32", "sym_ops", "set_abs", "movl $7, reloc_abs; movw %dx, %gs", keep_fixups=True),
     "target", "emulation stopped"),
    ("systems32", "a patch that changes the interrupt flag (movl lguest_irq_enabled, %eax; cli)",
     inline_text("systems32", "lguest_ops", "irq.save_fl", "movl lguest_irq_enabled, %eax; cli",
                 keep_fixups=True), "target",
     "the interrupt flag (IF) is"),
]


def given(name: str, mode: str):
    """What verify is given of the artifact's source (EQUIVALENCE)."""
    d = declared(name)
    return d if mode == "text" else dataclasses.replace(
        d, targets={k: dataclasses.replace(v, text=None) for k, v in d.targets.items()})


def _reloc32_imm(e: Elf):
    """The `movl $reloc_abs, %eax` field (the R_386_32 that is no memory operand) 4 off."""
    rec = _inline_of(e, "reloc32", "sym_ops", "addr_abs")
    r = _fixup(e, ".pvpass.code", "R_386_32", rec["code"], rec["len"])
    at = e.off(".pvpass.code", r.offset)
    struct.pack_into("<i", e.data, at, struct.unpack_from("<i", e.data, at)[0] + 4)


MUTANTS = [
    # linked objects: trampolines and patch records the runtime applies
    ("demo.o", "drop a push", drop_push),
    ("demo.o", "swap two pops", swap_pops),
    ("demo.o", "break the stack alignment", break_alignment),
    ("demo.o", "save and restore the result register", save_result),
    ("demo.o", "zero an argument register before the call", zero_arg_in_trampoline),
    ("demo.o", "point the trampoline's rel32 at the wrong target", wrong_target_in_trampoline),
    ("demo.o", "turn the call into NOPs", record_call_to_nops),
    ("demo.o", "padding one short (record len)", record_shorter),
    ("demo.o", "padding one long (record len)", record_longer),
    ("demo.o", "add a zero-extending register write", inline_extra_write),
    ("demo.o", "swapgs; pushfq; popq %rax; pushq %rax", inline_swapgs_stack_low),
    ("demo.o", "write the caller's frame", inline_writes_caller_frame),
    ("sites32", "drop a push", drop_push),
    ("sites32", "swap two pops", swap_pops),
    ("sites32", "turn the call into NOPs", record_call_to_nops),
    ("sites32", "add a register write", inline_extra_write),
    ("k61_64", "drop a push", drop_push),
    ("k61_64", "break the stack alignment", break_alignment),
    ("k61_64", "padding one long (record len)", record_longer),
    ("k61_64", "add a zero-extending register write", inline_extra_write),
    ("k2621", "zero an argument register before the call", zero_arg_in_record),
    ("k2621", "swap two pops", swap_pops),
    ("k2621", "point the trampoline's rel32 at the wrong target", wrong_target_in_trampoline),
    ("k2621", "padding one short (record len)", record_shorter),
    # ahead-of-time patched objects: the site's bytes are what runs
    ("demo:c_ops", "turn the call into NOPs", aot_call_to_nops),
    ("demo:c_ops", "point the rel32 at the wrong target", aot_wrong_target),
    ("demo:c_ops", "padding one short", lambda e: aot_padding_short(e, artifact("demo.o"))),
    ("demo:c_ops", "padding one long", aot_padding_long),
    ("demo:native_ops", "add a zero-extending register write", aot_extra_write),
    ("demo:native_ops", "point the rel32 at the wrong target", aot_wrong_target),
    ("k2621:c-calls", "zero an argument register before the call", aot_zero_arg),
    ("k2621:c-calls", "turn the call into NOPs", aot_call_to_nops),
    ("k2621:c-calls", "padding one long", aot_padding_long),
    ("k2621:native", "add a register write", aot_extra_write),
    # relocated inline patches: linked objects, and patched ahead of time
    ("reloc64", "RIP-relative field not rebased (pcrel_off cleared)", pcrel_not_rebased),
    ("reloc64", "pcrel_off one byte off", pcrel_off_by_one),
    ("reloc64", "wrong displacement (PC32 addend -4 KiB)", fixup_wrong_displacement),
    ("reloc64", "write to code (32S fixup against a function)", fixup_names_code),
    ("systems32", "write to another address (R_386_32: xen_vcpu)",
     lambda e: fixup_other_datum(e, "R_386_32", "xen_vcpu")),
    ("systems64", "RIP-relative field not rebased (pcrel_off cleared)", pcrel_not_rebased),
    ("systems32", "wrong displacement (R_386_32 field one byte late)", fixup_one_byte_late),
    ("reloc64", "write elsewhere: movl $7, (%rax)", lambda e: store_through_register(e, "R_X86_64_32S",
                                                                                     "movl $7, (%rax)")),
    ("systems32", "write elsewhere: movl $0, (%ebx)", lambda e: store_through_register(e, "R_386_32",
                                                                                       "movl $0, (%ebx)")),
    ("reloc64:sym_ops", "wrong displacement (reloc_arr+12 for +8)", aot_wrong_displacement),
    ("reloc64:sym_ops", "write to another address (32S: reloc_pcpu for reloc_abs)",
     lambda e: aot_other_datum(e, "R_X86_64_32S", "reloc_pcpu")),
    ("reloc64:sym_ops", "per-CPU store through %fs, not %gs", aot_percpu_through_fs),
    ("systems32:lguest_ops", "write to another address (R_386_32: xen_vcpu)",
     lambda e: aot_other_datum(e, "R_386_32", "xen_vcpu")),
    ("systems64:lguest_ops", "wrong displacement (PC32 +4)", aot_wrong_displacement),
]


def _names_a_site(path: str, line: str) -> bool:
    return re.match(rf"^{re.escape(path)}: ([\w.]+\+0x[0-9a-f]+|0x[0-9a-f]+)( <[\w.]+\+0x[0-9a-f]+>)?: "
                    rf"(backend \S+|the clobber mask 0x[0-9a-f]+ )", line) is not None


def test_every_mutant_is_killed():
    killed, survivors = 0, []
    for i, (name, what, mutate) in enumerate(MUTANTS):
        e = Elf(artifact(name))
        mutate(e)
        path = str(e.save(f"{i}"))
        assert e.data != Path(artifact(name)).read_bytes(), (name, what)
        rep = verify(path, None, "pvpass", 32, maps=maps(name), declared=declared(name))
        if rep.failed and rep.lines and all(_names_a_site(path, ln) for ln in rep.lines
                                             if "not emulated" not in ln):
            killed += 1
        else:
            survivors.append(f"{name}: {what}: {rep.summary()} {rep.lines[:2]}")
    print(f"mutants killed: {killed}/{len(MUTANTS)}")
    assert not survivors, "\n".join(survivors)


def test_each_property_fails_on_its_mutant():
    """Issue 17's kinds, on both arches: each is killed for its own reason
    (the message that property gives), with or without the declared text."""
    missed = []
    for i, (name, what, mutate, mode, says) in enumerate(EQUIVALENCE):
        e = Elf(artifact(name))
        mutate(e)
        path = str(e.save(f"eq{i}"))
        rep = verify(path, None, "pvpass", 8, maps=maps(name), declared=given(name, mode))
        wanted = (says,) if isinstance(says, str) else says
        if not rep.failed or not any(all(w in ln for w in wanted) and _names_a_site(path, ln) for ln in rep.lines):
            missed.append(f"{name}: {what} ({mode}): no '{says}' in {rep.lines[:2]}")
    assert not missed, "\n".join(missed)


def test_the_command_reads_the_source():
    """`verify OBJ --source SRC -- CPPFLAGS`: the declared text is what the
    wrong-value mutant fails on; the object as built passes; --source with
    a C source to build is a usage error."""
    e = Elf(artifact("demo.o"))
    inline_text("demo.o", "native_ops", "mmu.pte_val", "mov %rsi, %rax")(e)
    path = str(e.save("cmd-source"))
    src = ["--source", str(demo_dir() / "demo.c"), "--", f"-I{RT}"]
    r = run_pvpass("verify", path, *src)
    assert r.returncode == 1 and "is not the declared replacement 'mov %rdi, %rax'" in r.stderr, r.stderr
    r = run_pvpass("verify", str(artifact("demo.o")), *src)
    assert r.returncode == 0, r.stderr
    r = run_pvpass("verify", str(demo_dir() / "demo.c"), "--source", str(demo_dir() / "demo.c"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--source is for an object" in r.stderr, r.stderr


def test_a_mutant_fails_the_command():
    e = Elf(artifact("demo.o"))
    save_result(e)
    path = str(e.save("cmd"))
    r = run_pvpass("verify", path, "--backend", "c_ops")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "result %rax is" in r.stderr and "the target returned" in r.stderr and "start state" in r.stderr
    assert all(_names_a_site(path, ln) for ln in r.stderr.splitlines()), r.stderr


def _iretq_for_save_fl(e: Elf) -> None:
    inline_text("demo.o", "native_ops", "irq.save_fl", "iretq")(e)


def test_a_replacement_that_leaves_the_site_fails():
    """iretq leaves for good where the op returns (its site calls): a
    failure, not "not emulated"."""
    e = Elf(artifact("demo.o"))
    _iretq_for_save_fl(e)
    path = str(e.save("iret"))
    rep = verify(path, None, "pvpass", 4)
    assert rep.failed == 1 and rep.not_emulated == 0, rep.lines
    assert all("'iretq' leaves the site: the op returns" in ln and _names_a_site(path, ln) for ln in rep.lines)


def test_an_op_whose_site_jumps_may_leave():
    """The same patch where the site as built jumps through the op (as the
    kernel's iret and irq_enable_sysexit sites do: `call *` made `jmp *`,
    ModRM /2 -> /4): the op does not return, so leaving is its contract;
    unicorn cannot follow it: counted as not emulated."""
    e = Elf(artifact("demo.o"))
    _iretq_for_save_fl(e)
    t = _op_type("demo.o", "native_ops", "irq.save_fl")
    for sec, off, _ in e.sites():
        if _site_type(e, sec, off) == t:
            o = e.off(sec, off)
            assert e.data[o:o + 2] == b"\xff\x15", e.data[o:o + 6].hex()
            e.data[o + 1] = 0x25
    path = str(e.save("jmp"))
    rep = verify(path, None, "pvpass", 4)
    assert rep.failed == 0 and rep.not_emulated == 1, rep.lines
    assert "not emulated: 'iretq' leaves the site, as the op does" in rep.lines[0]


def _site_type(e: Elf, sec: str, off: int) -> int:
    """The type of the table entry whose site is at sec+off."""
    for r in e.relocs(".parainstructions"):
        if e.elf.get_section(e.symbols()[r.sym]["st_shndx"]).name == sec and \
                e.addend(".parainstructions", r) == off:
            return e.data[e.off(".parainstructions", r.offset + e.w)]
    raise AssertionError("no entry")
