"""Renderings of an emit plan: GNU assembler source, C, and JSON.

The assembler form is also what the link step assembles, so its table
directives are the kernel's own (`.balign`, pointer, `.byte`, `.byte`,
`.short`, `.balign`), and its stubs are `.byte` lines with the disassembly
as a comment; calls are `.byte 0xe8` + `.long SYM - . - 4`, which gas turns
into a PC-relative relocation.
"""
from __future__ import annotations

from ..arch import Arch
from ..model import SCHEMA_VERSION
from .. import table
from .plan import EmitPlan, TableRow
from .patches import pcrel_offset
from .stubs import disassemble


def _ptr(arch: Arch) -> str:
    return ".quad" if arch.bits == 64 else ".long"


def table_asm(arch: Arch, rows: list[TableRow]) -> list[str]:
    out = [f'\t.pushsection {table.SECTION},"a"']
    for r in rows:
        regs = ", ".join(arch.regs_of_mask(r.clobbers)) or "none"
        out += [f"\t.balign {arch.ptr_size}",
                f"\t{_ptr(arch)} {r.label}\t# {r.comment}",
                f"\t.byte {r.type}\t# type",
                f"\t.byte {r.length}\t# len",
                f"\t.short {r.clobbers:#x}\t# clobbers: {regs}",
                f"\t.balign {arch.ptr_size}"]
    out.append("\t.popsection")
    return out


def code_asm(arch: Arch, code: bytes, call_offset: int | None = None,
             call_target: str | None = None, fixups=(), cfi=()) -> list[str]:
    """`.byte` lines, one per instruction, disassembly in the comment; a
    symbol's field (an inline replacement's fixup) is a `.reloc` + `.long 0`;
    `.cfi_*` directives after the instruction they follow."""
    out = []
    fields = {f.offset: f for f in fixups}
    for off, size, text in disassemble(arch, code):
        out += [f"\t{c.text()}" for c in cfi if c.at == off]
        chunk = code[off:off + size]
        if call_offset is not None and off == call_offset and chunk[0] == 0xE8:
            out.append(f"\t.byte 0xe8\t# call {call_target}")
            out.append(f"\t.long {call_target} - . - 4")
            continue
        at = next((o for o in sorted(fields) if off <= o < off + size), None)
        if at is None:
            out.append("\t.byte " + ", ".join(f"{b:#04x}" for b in chunk) + f"\t# {text}")
            continue
        f = fields[at]
        out.append("\t.byte " + ", ".join(f"{b:#04x}" for b in code[off:at]) + f"\t# {text}")
        out.append(f"\t.reloc ., {f.type}, {f.symbol}{f.addend:+d}")
        out.append("\t.long 0")
        if at + 4 < off + size:
            out.append("\t.byte " + ", ".join(f"{b:#04x}" for b in code[at + 4:off + size]))
    out += [f"\t{c.text()}" for c in cfi if c.at == len(code)]
    return out


def trampolines_asm(plan: EmitPlan) -> list[str]:
    out = []
    for t in plan.trampolines:
        out += [f'\t.pushsection .text.{t.name},"axG",@progbits,{t.name},comdat',
                f"\t.globl {t.name}", f"\t.hidden {t.name}", f"\t.type {t.name}, @function",
                f"{t.name}:\t# saves {', '.join(t.saved)} around {t.target}", "\t.cfi_startproc"]
        out += code_asm(plan.arch, t.code, t.call_offset, t.target, cfi=t.cfi)
        out += ["\t.cfi_endproc", f"\t.size {t.name}, . - {t.name}", "\t.popsection"]
    return out


def _sym(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def patch_records(plan: EmitPlan):
    """One record per (backend, type, len, clobbers): what the runtime looks
    up for each table entry. Yields (backend, site index, patch)."""
    seen = set()
    for b in plan.backends:
        for i, s in enumerate(plan.sites):
            p = plan.patches.get((i, b.name))
            key = (b.name, s.type_number, s.length, s.mask)
            if p is None or p.kind == "keep" or key in seen:
                continue
            seen.add(key)
            yield b, i, p


def patches_asm(plan: EmitPlan) -> list[str]:
    """Patch records (table.pack_patch layout), their code, backend names."""
    arch = plan.arch
    recs, code, names = [f'\t.pushsection {table.PATCH_SECTION},"a"'], \
        [f'\t.pushsection {table.CODE_SECTION},"a"'], set()
    for b, i, p in patch_records(plan):
        s = plan.sites[i]
        lab = f".Lpvpass_code_{_sym(b.name)}_{i}"
        names.add(b.name)
        call = "0xff" if p.call_offset is None else str(p.call_offset)
        recs += [f"\t.balign {arch.ptr_size}",
                 f"\t{_ptr(arch)} .Lpvpass_name_{_sym(b.name)}\t# backend {b.name}: {plan.rows[i].comment}",
                 f"\t{_ptr(arch)} {lab}",
                 f"\t{_ptr(arch)} {p.call_target or 0}",
                 f"\t.byte {s.type_number}, {s.length}\t# type, len",
                 f"\t.short {s.mask:#x}\t# clobbers",
                 f"\t.byte {call}, {table.KINDS[p.kind]}\t# call offset, kind: {p.kind}",
                 f"\t.byte {pcrel_offset(p) if pcrel_offset(p) is not None else '0xff'}, 0"
                 f"\t# RIP-relative field, pad"]
        # The call's rel32 stays zero here: the runtime computes it at the site.
        code += [f"{lab}:\t# {p.note}"] + code_asm(arch, p.code, fixups=p.inline.fixups if p.inline else ())
    recs.append("\t.popsection")
    code.append("\t.popsection")
    strs = [f'\t.pushsection {table.STRINGS_SECTION},"aMS",@progbits,1']
    strs += [f'.Lpvpass_name_{_sym(n)}:\t.asciz "{n}"' for n in sorted(names)]
    strs.append("\t.popsection")
    return recs + code + strs


def render_asm(plan: EmitPlan) -> str:
    lines = [f"# Generated by pvpass emit from {plan.source} ({plan.arch.name}). Do not edit.",
             f"# Site labels ({', '.join(r.label for r in plan.rows[:2])}{', ...' if len(plan.rows) > 2 else ''})"
             " are defined by the link step at each copy of the site.",
             "\t.text"]
    lines += table_asm(plan.arch, plan.rows)
    lines += patches_asm(plan)
    lines += trampolines_asm(plan)
    lines.append('\t.section .note.GNU-stack,"",@progbits')
    return "\n".join(lines) + "\n"


def render_h(plan: EmitPlan) -> str:
    """The header: op type numbers as an enum, the table's struct."""
    return render_c(plan, header_only=True)


def render_c(plan: EmitPlan, header_only: bool = False) -> str:
    arch = plan.arch
    ops = {op.path: op.type_number for o in plan.ops for op in o.ops}
    enum = "\n".join(f"\tPVPASS_OP_{_sym(op).upper()} = {n}," for op, n in sorted(ops.items(), key=lambda x: (x[1], x[0])))
    pad = "\n\tunsigned char pad[4];" if arch.bits == 64 else ""
    ptr = "unsigned long long" if arch.bits == 64 else "unsigned int"
    externs = "\n".join(f"extern unsigned char {r.label}[];" for r in plan.rows)
    rows = "\n".join(f"\t{{ (unsigned char *){r.label}, {r.type}, {r.length}, {r.clobbers:#x} }}, /* {r.comment} */"
                     for r in plan.rows)
    header = f"""/* Generated by pvpass emit from {plan.source} ({arch.name}). Do not edit. */
#ifndef PVPASS_TABLE_H
#define PVPASS_TABLE_H
/* Op type numbers: offset in the ops struct / sizeof(void *). */
enum pvpass_op {{
{enum}
}};

/* The kernel's struct paravirt_patch_site ({arch.entry_size} bytes on {arch.name}). */
struct paravirt_patch_site {{
	unsigned char *instr;		/* original instructions */
	unsigned char type;		/* type of this instruction */
	unsigned char len;		/* length of original instruction */
	unsigned short clobbers;	/* what registers you may clobber */{pad}
}};
_Static_assert(sizeof(struct paravirt_patch_site) == {arch.entry_size}, "table layout");
_Static_assert(sizeof(void *) == sizeof({ptr}), "built for {arch.name}");
#endif
"""
    if header_only:
        return header
    return header + f"""
{externs}

__attribute__((section("{table.SECTION}"), used, aligned({arch.ptr_size})))
static struct paravirt_patch_site pvpass_sites[] = {{
{rows}
}};
"""


def render_json(plan: EmitPlan) -> dict:
    from ..jsonout import loc_json
    arch = plan.arch
    reloc_pc = "R_386_PC32" if arch.bits == 32 else "R_X86_64_PC32"

    def patch_json(p):
        d = {"kind": p.kind, "bytes": p.code.hex(), "note": p.note,
             "disassembly": [t for _, _, t in disassemble(arch, p.code)]}
        if p.call_offset is not None:
            d["call"] = {"offset": p.call_offset, "target": p.call_target,
                         "reloc": {"offset": p.call_offset + 1, "type": reloc_pc,
                                   "symbol": p.call_target, "addend": -4}}
        if p.inline is not None and p.inline.fixups:
            d["relocs"] = [{"offset": f.offset, "type": f.type, "symbol": f.symbol, "addend": f.addend}
                           for f in p.inline.fixups]
            d["writes_memory"] = list(p.inline.memory_writes)
        return d

    return {
        "schema": SCHEMA_VERSION, "tool": "pvpass", "kind": "emit",
        "source": plan.source, "arch": arch.name,
        "table": [{"index": i, "site": {**loc_json(s.loc), "function": s.function},
                   "op": s.op, "type": r.type, "len": r.length, "clobbers": r.clobbers,
                   "clobber_regs": list(arch.regs_of_mask(r.clobbers)),
                   "entry": table.pack(arch, 0, r.type, r.length, r.clobbers).hex(),
                   "reloc": {"offset": 0, "type": arch.abs_reloc, "symbol": r.label}}
                  for i, (s, r) in enumerate(zip(plan.sites, plan.rows))],
        "backends": [{"name": b.name, "builtin": b.builtin,
                      "patches": [{"site": i, **patch_json(plan.patches[(i, b.name)])}
                                  for i in range(len(plan.sites)) if (i, b.name) in plan.patches]}
                     for b in plan.backends],
        "trampolines": [{"name": t.name, "target": t.target, "saved": list(t.saved),
                         "bytes": t.code.hex(), "lines": list(t.lines),
                         "call_reloc": {"offset": t.call_offset + 1, "type": reloc_pc,
                                        "symbol": t.target, "addend": -4},
                         "cfi": [{"offset": c.at, "directive": c.text()} for c in t.cfi]}
                        for t in plan.trampolines],
    }
