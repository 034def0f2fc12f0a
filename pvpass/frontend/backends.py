"""Backends: initializers of ops structs (designated or positional, nested),
assignments to ops members in init code, and pvpass annotations that give
targets their contracts (callee-save, inline replacement, no-op)."""
from __future__ import annotations

import re

from pycparser import c_ast

from ..arch import Arch
from ..diag import Loc
from ..model import Backend, Contract, OpsStruct, Target
from .annotation import Annotation
from .cparse import ChunkParser, walk
from .layout import CType, TypeEnv
from .ops import member_path, op_path


_INIT = re.compile(r'=\s*\{')


def c_contract(arch: Arch) -> Contract:
    return Contract("c", arch.caller_saved)


def callee_save_contract(arch: Arch, regs=None) -> Contract:
    return Contract("callee-save", tuple(regs) if regs is not None else (arch.ret_reg,))


class BackendFinder:
    def __init__(self, parser: ChunkParser, env: TypeEnv, arch: Arch) -> None:
        self.p, self.env, self.arch = parser, env, arch

    def find(self, ops: OpsStruct, obj_type: CType, annotations: list[tuple[Annotation, Loc]]) -> list[Backend]:
        text = self.p.pp.text
        # struct tags that hold ops: the template and every nested ops struct
        prefixes: dict[str, str] = {obj_type.name: ""}
        _nested_tags(obj_type, "", prefixes)
        backends: dict[str, Backend] = {}
        seen_chunks: set[int] = set()
        # Initializers are `= {` at file scope; keep the chunks whose head
        # names an ops struct (or typeof the ops object). One regex pass.
        head = re.compile(r'\bstruct\s+(?:%s)\b|\b(?:typeof|__typeof__|__typeof)\s*\(\s*%s\s*\)'
                          % ("|".join(re.escape(t) for t in prefixes if t), re.escape(ops.obj)))
        for m in _INIT.finditer(text):
            chunk = self.p.tu.chunk_at(m.start())
            if chunk is None or chunk.is_func or chunk.index in seen_chunks:
                continue
            seen_chunks.add(chunk.index)
            if not head.search(text, chunk.start, m.start()):
                continue
            pc = self.p.parse(chunk)
            for d in pc.ast.ext:
                if isinstance(d, c_ast.Decl) and isinstance(d.init, c_ast.InitList):
                    prefix = self._prefix_of(d, prefixes, ops)
                    if prefix is None:
                        continue
                    t = obj_type if prefix == "" else self._sub_type(obj_type, prefix)
                    b = backends.setdefault(d.name, Backend(d.name, self.env.loc(d), scope=prefix))
                    self._walk_init(d.init, t, prefix, ops, b)
        self._assignments(ops, backends)
        self._apply_annotations(ops, backends, annotations)
        return sorted(backends.values(), key=lambda b: (b.loc or Loc(""), b.name))

    def _prefix_of(self, d: c_ast.Decl, prefixes: dict[str, str], ops: OpsStruct) -> str | None:
        t = d.type
        while isinstance(t, c_ast.TypeDecl) or type(t).__name__ == "TypeDeclExt":
            t = t.type
        if isinstance(t, c_ast.Struct) and t.name in prefixes:
            return prefixes[t.name]
        if type(t).__name__ in ("TypeOfExpression",):
            e = getattr(t, "expr", None)
            if isinstance(e, c_ast.ID) and e.name == ops.obj:
                return ""
        return None

    def _sub_type(self, t: CType, prefix: str) -> CType:
        for name in prefix.rstrip(".").split("."):
            t = t.member(name).ctype
        return t

    def _walk_init(self, init: c_ast.InitList, t: CType, prefix: str, ops: OpsStruct,
                   b: Backend) -> None:
        pos = 0
        for e in init.exprs:
            if isinstance(e, c_ast.NamedInitializer):
                names = [n.name for n in e.name if isinstance(n, c_ast.ID)]
                if len(names) != len(e.name):
                    continue      # array designators: not ops
                sub_t, path = t, []
                for n in names:
                    m = sub_t.member(n) if sub_t else None
                    sub_t = m.ctype if m else None
                    path.append(n)
                value = e.expr
                # positional initializers after a designator continue from it
                member_names = [m.name for m in t.members]
                pos = member_names.index(names[0]) + 1 if names[0] in member_names else pos
            else:
                if pos >= len(t.members):
                    break
                m = t.members[pos]
                pos += 1
                sub_t, path, value = m.ctype, [m.name], e
            full = prefix + ".".join(path)
            if isinstance(value, c_ast.InitList) and sub_t is not None and ops.op(full) is None:
                self._walk_init(value, sub_t, full + ".", ops, b)
                continue
            if isinstance(value, c_ast.InitList) and ops.op(full) is not None:
                # callee-save slot written as { func }
                inner = value.exprs[0] if value.exprs else None
                if isinstance(inner, c_ast.NamedInitializer):
                    inner = inner.expr
                value = inner
            self._set_target(b, ops, full, value)

    def _set_target(self, b: Backend, ops: OpsStruct, path: str, value) -> None:
        op = ops.op(op_path(ops, path.split(".")))
        if op is None:
            return
        tgt = self._target_of(op.path, value, op.callee_save_slot)
        if tgt is None:
            b.targets.pop(op.path, None)
            return
        b.targets[op.path] = tgt

    def _target_of(self, op: str, value, slot: bool) -> Target | None:
        loc = self.env.loc(value)
        callee_save = False
        while True:
            if isinstance(value, c_ast.Cast):
                value = value.expr
            elif isinstance(value, c_ast.CompoundLiteral):
                callee_save = True
                exprs = value.init.exprs if value.init is not None else []
                value = exprs[0] if exprs else None
                if isinstance(value, c_ast.NamedInitializer):
                    value = value.expr
            elif isinstance(value, c_ast.UnaryOp) and value.op == "&":
                value = value.expr
            else:
                break
        if isinstance(value, c_ast.Constant) and value.value in ("0", "0L", "0UL"):
            return None
        if isinstance(value, c_ast.ID):
            name = value.name
            if name in ("NULL",):
                return None
            if "paravirt_nop" in name:
                return Target(op, None, Contract("nop", ()), loc)
            if name.startswith("__raw_callee_save_"):
                return Target(op, name, callee_save_contract(self.arch), loc)
            if callee_save:
                return Target(op, name, callee_save_contract(self.arch), loc)
            return Target(op, name, c_contract(self.arch), loc)
        return Target(op, None, c_contract(self.arch), loc)

    def _assignments(self, ops: OpsStruct, backends: dict[str, Backend]) -> None:
        """`pv_ops.irq.save_fl = f;` in a function: a backend named after it."""
        text = self.p.pp.text
        pat = re.compile(r'%s\s*\.\s*\w+(?:\s*\.\s*\w+)*\s*=(?!=)' % re.escape(ops.obj))
        seen: set[int] = set()
        for m in pat.finditer(text):
            chunk = self.p.tu.chunk_at(m.start())
            if chunk is None or not chunk.is_func or chunk.index in seen:
                continue
            seen.add(chunk.index)
            pc = self.p.parse(chunk)
            for fd in walk(pc.ast, c_ast.FuncDef):
                for asg in walk(fd.body, c_ast.Assignment):
                    if asg.op != "=":
                        continue
                    mp = member_path(asg.lvalue)
                    if not mp or mp[0] != ops.obj:
                        continue
                    b = backends.setdefault(fd.decl.name, Backend(fd.decl.name, self.env.loc(fd), scope=None))
                    self._set_target(b, ops, ".".join(mp[1]), asg.rvalue)

    def _apply_annotations(self, ops: OpsStruct, backends: dict[str, Backend],
                           annotations: list[tuple[Annotation, Loc]]) -> None:
        regs = lambda a: tuple(r for r in (self.arch.canon_reg(x) for x in a.clobbers) if r)
        for a, loc in annotations:
            if a.kind == "target":
                for b in backends.values():
                    for path, t in list(b.targets.items()):
                        if t.function == a.function:
                            b.targets[path] = Target(path, t.function,
                                                     callee_save_contract(self.arch, regs(a)), t.loc)
            elif a.kind in ("inline", "nop", "absent") and a.backend in backends:
                b = backends[a.backend]
                if a.kind == "absent":
                    b.absent.add(a.op)
                    continue
                old = b.targets.get(a.op)
                contract = Contract("inline", regs(a), a.text) if a.kind == "inline" \
                    else Contract("nop", ())
                b.targets[a.op] = Target(a.op, old.function if old else None, contract, loc)


def _nested_tags(t: CType, prefix: str, out: dict[str, str]) -> None:
    for m in t.members:
        if m.ctype.kind == "struct" and m.name and len(m.ctype.members) > 1:
            out.setdefault(m.ctype.name, prefix + m.name + ".")
            _nested_tags(m.ctype, prefix + m.name + ".", out)
