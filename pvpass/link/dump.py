"""`pvpass table`: any object's table, each entry resolved to section+offset,
its function, the op's name when known, and the site's disassembly."""
from __future__ import annotations

from bisect import bisect_left

from ..emit.stubs import disassemble
from ..model import SCHEMA_VERSION
from .elfobj import ElfObject
from .tableread import read_checked, read_entries


def _op_names(obj: ElfObject, source: str | None, cpp: list[str]) -> dict[int, str]:
    if not source:
        return {}
    from ..frontend.scan import scan
    inv = scan(source, obj.arch, cpp).inventory
    return {op.type_number: op.path for o in inv.ops for op in o.ops}


def dump_json(path: str, source: str | None = None, cpp: list[str] = ()) -> dict:
    obj = read_checked(path)
    from ..kernel.image import check_listed
    check_listed(obj)           # a kernel image's alternatives and pv_ops too, a stripped one's tables
    names = _op_names(obj, source, list(cpp))
    rows = []
    for e in read_entries(obj):
        sec = obj.section(e.section)
        code, addr = b"", e.offset
        if sec is not None and obj.is_relocatable:
            code = obj.section_data(sec)[e.offset:e.offset + e.length]
        elif sec is not None:
            base = sec["sh_addr"]
            code = obj.section_data(sec)[e.offset - base:e.offset - base + e.length]
        relocs = []
        if obj.is_relocatable and sec is not None:
            rs = obj.relocations_for(e.section)          # sorted by offset
            k = bisect_left(rs, e.offset, key=lambda r: r.offset)
            for r in rs[k:bisect_left(rs, e.offset + e.length, lo=k, key=lambda r: r.offset)]:
                name = r.symbol.name or obj.section_name_of(r.symbol) or "?"
                relocs.append(f"{r.type_name} {name}{r.addend:+#x}")
        fn = obj.function_at(e.section, e.offset)
        rows.append({
            "section": e.section, "offset": e.offset,
            "function": fn[0] if fn else None, "function_offset": fn[1] if fn else None,
            "type": e.type, "op": names.get(e.type), "len": e.length,
            "clobbers": e.clobbers, "clobber_regs": list(obj.arch.regs_of_mask(e.clobbers)),
            "bytes": code.hex(),
            "disassembly": [t for _, _, t in disassemble(obj.arch, code, addr)],
            "relocations": relocs,
        })
    return {"schema": SCHEMA_VERSION, "tool": "pvpass", "kind": "table", "object": path,
            "arch": obj.arch.name, "relocatable": obj.is_relocatable, "entries": rows}


def dump_text(path: str, d: dict) -> str:
    """The text form of dump_json's table `d` of the file at `path`."""
    lines = [f"{path}: {len(d['entries'])} sites ({d['arch']})"]
    for r in d["entries"]:
        where = f"{r['section']}+{r['offset']:#x}" if d["relocatable"] else f"{r['offset']:#x}"
        fn = f"<{r['function']}+{r['function_offset']:#x}>" if r["function"] else ""
        op = r["op"] or f"type {r['type']}"
        regs = ",".join(r["clobber_regs"]) or "none"
        lines.append(f"{where:<22} {fn:<34} {op:<24} len {r['len']:<3} clobbers {regs}")
        rel = f"   [{', '.join(r['relocations'])}]" if r["relocations"] else ""
        lines.append(f"{'':<22}   {'; '.join(r['disassembly'])}{rel}")
    return "\n".join(lines) + "\n"
