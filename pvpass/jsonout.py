"""JSON forms of the model (schema documented in docs/commands.md), deterministic:
sorted keys where order carries no meaning, fixed list orders elsewhere."""
from __future__ import annotations

import json

from .arch import Arch, get_arch
from .diag import Loc
from .emit.stubs import inline_stub
from .encode import EncodeError
from .model import SCHEMA_VERSION, Backend, Contract, Inventory, OpsStruct, Site


def loc_json(loc: Loc | None) -> dict | None:
    if loc is None:
        return None
    return {"file": loc.file, "line": loc.line, "col": loc.col}


def ops_json(o: OpsStruct) -> dict:
    return {
        "struct": o.tag, "object": o.obj, "size": o.size, "loc": loc_json(o.loc),
        "ops": [{"path": op.path, "type": op.type_number, "offset": op.offset,
                 "callee_save_slot": op.callee_save_slot, "nargs": op.nargs,
                 "returns": op.returns, "loc": loc_json(op.loc)} for op in o.ops],
    }


def contract_json(c: Contract, arch: Arch) -> dict:
    d = {"kind": c.kind, "clobbers": list(c.clobbers), "text": c.text}
    if c.kind == "inline" and c.text is not None:
        try:           # the memory an inline replacement stores to ("sym+4", "%gs:sym")
            d["writes_memory"] = list(inline_stub(arch, c.text).memory_writes)
        except EncodeError:
            d["writes_memory"] = None      # lint reports it (PV004)
    return d


def backend_json(b: Backend, arch: Arch) -> dict:
    return {
        "name": b.name, "loc": loc_json(b.loc), "builtin": b.builtin,
        "absent": sorted(b.absent),
        "targets": [{"op": t.op, "function": t.function, "contract": contract_json(t.contract, arch),
                     "loc": loc_json(t.loc)}
                    for _, t in sorted(b.targets.items())],
    }


def site_json(s: Site) -> dict:
    return {
        **loc_json(s.loc), "function": s.function, "dialect": s.dialect,
        "ops_object": s.ops_object, "op": s.op, "type": s.type_number,
        "clobbers": list(s.clobbers), "mask": s.mask,
        "instructions": list(s.instructions), "length": s.length,
        "nargs": s.nargs, "returns": s.returns,
    }


def inventory_json(inv: Inventory) -> dict:
    return {
        "schema": SCHEMA_VERSION, "tool": "pvpass", "kind": "inventory",
        "source": inv.source, "arch": inv.arch,
        "ops": [ops_json(o) for o in inv.ops],
        "backends": [backend_json(b, get_arch(inv.arch)) for b in inv.backends],
        "sites": [site_json(s) for s in inv.sites],
    }


def dumps(obj) -> str:
    return json.dumps(obj, indent=2) + "\n"


def inventory_text(inv: Inventory) -> str:
    """A short human summary of an inventory (`pvpass scan --format text`)."""
    out = []
    for o in inv.ops:
        out.append(f"ops struct {o.tag} (object {o.obj}, {o.size} bytes): "
                   + ", ".join(f"{op.path}={op.type_number}" for op in o.ops))
    for b in inv.backends:
        out.append(f"backend {b.name}: " + ", ".join(
            f"{t.op}->{t.function or '-'} ({t.contract.kind})" for _, t in sorted(b.targets.items())))
    for s in inv.sites:
        out.append(f"site {s.loc} {s.function}: {s.op} type {s.type_number} len {s.length} "
                   f"clobbers {','.join(s.clobbers) or 'none'}")
    return "\n".join(out) + "\n"
