"""Ops objects and their template structs: every function-pointer member
becomes an op, numbered by its offset divided by the pointer size."""
from __future__ import annotations

from pycparser import c_ast

from ..diag import Loc, PvError
from ..model import Op, OpsStruct
from ..textsplit import whole_words
from .cparse import ChunkParser
from .layout import CType, TypeEnv


class OpsIndex:
    """Finds ops objects by name and lays out their structs, each once."""

    def __init__(self, parser: ChunkParser, env: TypeEnv) -> None:
        self.p = parser
        self.env = env
        self._objs: dict[str, tuple[CType, Loc | None]] = {}
        self._structs: dict[str, OpsStruct] = {}

    def object_type(self, name: str, loc: Loc | None) -> tuple[CType, Loc | None]:
        """The (struct) type of the global `name`, from its declaration."""
        if name in self._objs:
            return self._objs[name]
        for at in whole_words(self.p.pp.text, name):
            chunk = self.p.tu.chunk_at(at)
            if chunk is None or chunk.is_func:
                continue
            pc = self.p.parse(chunk)
            for d in pc.ast.ext:
                if isinstance(d, c_ast.Decl) and d.name == name and not isinstance(
                        d.type, c_ast.FuncDecl) and type(d.type).__name__ != "FuncDeclExt":
                    t = self.env.from_decl_type(d.type, pc)
                    res = (t, self.env.loc(d))
                    self._objs[name] = res
                    return res
        raise PvError(f"'{name}' is used as an ops object but not declared in this "
                      f"translation unit", loc)

    def ops_struct(self, obj: str, loc: Loc | None) -> OpsStruct:
        if obj in self._structs:
            return self._structs[obj]
        t, dloc = self.object_type(obj, loc)
        if t.kind not in ("struct", "union"):
            raise PvError(f"ops object '{obj}' is not a struct", loc)
        ops: list[Op] = []
        _collect(t, "", 0, self.env.arch.ptr_size, ops, self._words)
        s = OpsStruct(t.name, obj, t.size, tuple(ops), t.loc or dloc)
        self._structs[obj] = s
        return s

    def _words(self, param) -> int:
        """Argument registers a parameter takes (two for 64-bit on i386)."""
        if self.env.arch.bits == 64:
            return 1
        try:
            size = self.env.from_decl_type(param.type, None).size
        except Exception:
            return 1
        return 2 if size > 4 else 1


def is_callee_save_slot(t: CType) -> bool:
    """The kernel's `struct paravirt_callee_save { void *func; }`: a struct
    holding exactly one data (not function) pointer."""
    return (t.kind == "struct" and len(t.members) == 1
            and t.members[0].ctype.kind == "ptr" and not t.members[0].ctype.is_func_ptr)


def _collect(t: CType, prefix: str, base: int, psize: int, out: list[Op], words) -> None:
    """The ops of `t` in declaration order, depth first; iterative, as
    structs nest as deep as gcc takes them."""
    stack = [(t, prefix, base, 0)]
    while stack:
        t, prefix, base, i = stack.pop()
        if i >= len(t.members):
            continue
        stack.append((t, prefix, base, i + 1))
        m = t.members[i]
        path = f"{prefix}{m.name}" if m.name else prefix.rstrip(".")
        off = base + m.offset
        mt = m.ctype
        if mt.is_func_ptr:
            nargs, returns = _prototype(mt.elem.func, words)
            out.append(Op(path, off // psize, off, False, nargs, returns, m.loc))
        elif is_callee_save_slot(mt):
            out.append(Op(path, off // psize, off, True, None, None, m.loc))
        elif mt.kind in ("struct", "union"):
            stack.append((mt, f"{path}." if path else "", off, 0))


def _prototype(fd, words) -> tuple[int | None, bool | None]:
    if fd is None:
        return None, None
    params = fd.args.params if fd.args is not None else []
    if len(params) == 1 and _is_void(params[0]):
        params = []
    variadic = any(isinstance(p, c_ast.EllipsisParam) for p in params)
    ret = fd.type
    while isinstance(ret, c_ast.TypeDecl) or type(ret).__name__ == "TypeDeclExt":
        ret = ret.type
    returns = not (isinstance(ret, c_ast.IdentifierType) and ret.names == ["void"])
    return (None if variadic else sum(words(p) for p in params)), returns


def _is_void(p) -> bool:
    t = getattr(p, "type", None)
    return (isinstance(t, c_ast.TypeDecl) and isinstance(t.type, c_ast.IdentifierType)
            and t.type.names == ["void"] and getattr(p, "name", None) is None)


def member_path(expr) -> tuple[str, list[str]] | None:
    """`pv_ops.irq.save_fl.func` -> ("pv_ops", ["irq", "save_fl", "func"])."""
    path: list[str] = []
    e = expr
    while isinstance(e, c_ast.StructRef) and e.type == ".":
        path.append(e.field.name)
        e = e.name
    if isinstance(e, c_ast.ID):
        return e.name, list(reversed(path))
    return None


def op_path(ops: OpsStruct, members: list[str]) -> str:
    """The op a member path names: a trailing `.func` of a callee-save slot
    belongs to the slot."""
    p = ".".join(members)
    if ops.op(p) is None and len(members) > 1 and ops.op(".".join(members[:-1])):
        return ".".join(members[:-1])
    return p
