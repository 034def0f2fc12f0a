"""C type layout for the i386 and x86-64 System V ABIs, and integer constant
expressions (array bounds, offsetof, sizeof, enum constants).

Types come from pycparser AST nodes; typedefs, struct tags and enum
constants are looked up through the chunk index and parsed on demand.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from pycparser import c_ast

from ..arch import Arch
from ..diag import Loc, PvError
from .cparse import ChunkParser, ParsedChunk, walk


@dataclass
class Member:
    name: str | None
    offset: int
    ctype: "CType"
    loc: Loc | None = None


@dataclass
class CType:
    kind: str                  # int float void ptr array struct union enum func
    size: int
    align: int
    name: str = ""            # tag or spelling, for messages
    members: list[Member] = field(default_factory=list)
    elem: "CType | None" = None      # pointee / element / return type
    count: int = 0
    func: c_ast.Node | None = None   # the FuncDecl a function (pointer) type came from
    loc: Loc | None = None

    @property
    def is_func_ptr(self) -> bool:
        return self.kind == "ptr" and self.elem is not None and self.elem.kind == "func"

    def member(self, name: str) -> Member | None:
        for m in self.members:
            if m.name == name:
                return m
            if m.name is None and m.ctype.kind in ("struct", "union"):
                inner = m.ctype.member(name)
                if inner is not None:
                    return Member(inner.name, m.offset + inner.offset, inner.ctype, inner.loc)
        return None


_INT_SIZES = {"char": 1, "short": 2, "int": 4, "_Bool": 1}


class TypeEnv:
    def __init__(self, parser: ChunkParser, arch: Arch) -> None:
        self.p = parser
        self.arch = arch
        self._tags: dict[tuple[str, str], CType] = {}
        self._typedefs: dict[str, CType] = {}
        self._enums: dict[str, int] = {}
        self._typedef_chunks: dict[str, int] | None = None
        self._in_progress: set[tuple[str, str]] = set()   # what is being laid out now

    # --- lookups --------------------------------------------------------------

    def typedef(self, name: str, loc: Loc | None) -> CType:
        if name in self._typedefs:
            return self._typedefs[name]
        builtin = self._builtin_typedef(name)
        if builtin is not None:
            return builtin
        idx = self._typedef_index().get(name)
        if idx is None:
            raise PvError(f"unknown type '{name}'", loc)
        pc = self.p.parse(self.p.tu.chunks[idx])
        for td in walk(pc.ast, c_ast.Typedef):
            if td.name == name:
                with self._laying_out(("typedef", name), f"type '{name}'", loc):
                    t = self._type(td.type, pc)
                self._typedefs[name] = t
                return t
        raise PvError(f"cannot find the definition of type '{name}'", loc)

    @contextmanager
    def _laying_out(self, key: tuple[str, str], what: str, loc: Loc | None):
        """A type that contains itself by value has no layout (gcc: an
        incomplete type); without this the layout would recurse forever."""
        if key in self._in_progress:
            raise PvError(f"{what} contains itself: it has no size", loc)
        self._in_progress.add(key)
        try:
            yield
        finally:
            self._in_progress.discard(key)

    def _typedef_index(self) -> dict[str, int]:
        if self._typedef_chunks is None:
            from .chunks import typedef_names_of
            idx: dict[str, int] = {}
            t = self.p.pp.text
            for c in self.p.tu.typedef_chunks:
                for n in typedef_names_of(t[c.start:c.end]):
                    idx.setdefault(n, c.index)
            self._typedef_chunks = idx
        return self._typedef_chunks

    def _builtin_typedef(self, name: str) -> CType | None:
        if name in ("__int128_t", "__uint128_t", "_pvi128_", "_pvu128_"):
            return CType("int", 16, 16, name)
        if name == "__builtin_va_list":
            return CType("ptr", 4, 4, name) if self.arch.bits == 32 else CType("struct", 24, 8, name)
        if name in ("_Float128", "__float128"):
            return CType("float", 16, 16, name)
        return None

    def tag(self, kind: str, name: str, loc: Loc | None) -> CType:
        key = (kind, name)
        if key in self._tags:
            return self._tags[key]
        chunk = self.p.tu.tag_index.get(key)
        if chunk is None:
            raise PvError(f"{kind} {name} is used but never defined in this translation unit", loc)
        pc = self.p.parse(chunk)
        cls = {"struct": c_ast.Struct, "union": c_ast.Union, "enum": c_ast.Enum}[kind]
        for node in walk(pc.ast, cls):
            if node.name == name and (node.values if kind == "enum" else node.decls) is not None:
                with self._laying_out(key, f"{kind} {name}", loc):
                    t = self._aggregate(node, pc)
                self._tags[key] = t
                return t
        raise PvError(f"cannot find the definition of {kind} {name}", loc)

    def enum_const(self, name: str, loc: Loc | None) -> int:
        if name in self._enums:
            return self._enums[name]
        text = self.p.pp.text
        for m in re.finditer(r'\b%s\b\s*[=,}]' % re.escape(name), text):
            chunk = self.p.tu.chunk_at(m.start())
            if chunk is None or "enum" not in chunk.text(text):
                continue
            pc = self.p.parse(chunk)
            for en in walk(pc.ast, c_ast.Enum):
                if en.values is not None:
                    self._enum_values(en, pc)
            if name in self._enums:
                return self._enums[name]
        raise PvError(f"'{name}' is not a constant known in this translation unit", loc)

    def _enum_values(self, en: c_ast.Enum, pc: ParsedChunk) -> None:
        v = -1
        for e in en.values.enumerators:
            v = self.const(e.value, pc) if e.value is not None else v + 1
            self._enums.setdefault(e.name, v)

    # --- types ----------------------------------------------------------------

    def loc(self, node, pc: ParsedChunk | None = None) -> Loc | None:
        c = getattr(node, "coord", None)
        if c is None or c.line is None:
            return None
        return Loc(c.file, c.line, c.column or 0)

    def from_decl_type(self, node, pc: ParsedChunk) -> CType:
        """The layout of a declared type. Recursive, three frames per level
        of nesting: a type nested past Python's limit (gcc takes thousands
        of levels) is laid out again on a deep stack, as deep parses are;
        beyond that, one error."""
        try:
            return self._type(node, pc)
        except RecursionError:
            pass
        from .deep import deep_call
        try:
            return deep_call(self._type, node, pc)
        except RecursionError:
            raise PvError("type nested too deep for pvpass's layout (it follows about "
                          "100,000 levels)", self.loc(node)) from None

    def _type(self, node, pc: ParsedChunk) -> CType:
        if isinstance(node, c_ast.TypeDecl):
            return self._type(node.type, pc)
        if isinstance(node, c_ast.PtrDecl):
            return CType("ptr", self.arch.ptr_size, self.arch.ptr_size, "*",
                         elem=self._pointee(node.type, pc))
        if isinstance(node, c_ast.ArrayDecl):
            elem = self._type(node.type, pc)
            n = self.const(node.dim, pc) if node.dim is not None else 0
            return CType("array", elem.size * n, elem.align, elem.name + "[]", elem=elem, count=n)
        if isinstance(node, c_ast.IdentifierType):
            return self._scalar(node.names, pc, self.loc(node))
        if isinstance(node, (c_ast.Struct, c_ast.Union, c_ast.Enum)):
            kind = {c_ast.Struct: "struct", c_ast.Union: "union", c_ast.Enum: "enum"}[
                next(k for k in (c_ast.Struct, c_ast.Union, c_ast.Enum) if isinstance(node, k))]
            body = node.values if kind == "enum" else node.decls
            if body is None:
                if kind == "enum":
                    return CType("enum", 4, 4, node.name or "")
                return self.tag(kind, node.name, self.loc(node))
            if node.name and (kind, node.name) in self._tags:
                return self._tags[(kind, node.name)]
            t = self._aggregate(node, pc)
            if node.name:
                self._tags[(kind, node.name)] = t
            return t
        if type(node).__name__ in ("FuncDecl", "FuncDeclExt"):
            return CType("func", 1, 1, "function", func=node)
        if isinstance(node, c_ast.Typename):
            return self._type(node.type, pc)
        raise PvError(f"cannot lay out a type written as {type(node).__name__}", self.loc(node))

    def _pointee(self, node, pc: ParsedChunk) -> CType:
        # Pointers to incomplete or unknown types are fine: only functions matter.
        inner = node.type if isinstance(node, c_ast.TypeDecl) else node
        if type(node).__name__ in ("FuncDecl", "FuncDeclExt"):
            return CType("func", 1, 1, "function", func=node)
        if isinstance(inner, (c_ast.Struct, c_ast.Union)) and inner.decls is None:
            return CType("struct", 0, 1, inner.name or "")
        try:
            return self._type(node, pc)
        except PvError:
            return CType("void", 0, 1, "?")

    def _scalar(self, names: list[str], pc: ParsedChunk, loc: Loc | None) -> CType:
        kw = [n for n in names if n not in ("signed", "unsigned", "const", "volatile")]
        if len(kw) == 1 and kw[0] not in _INT_SIZES and kw[0] not in (
                "long", "float", "double", "void"):
            return self.typedef(kw[0], loc)
        if not kw:
            return CType("int", 4, 4, "int")
        if kw == ["void"]:
            return CType("void", 1, 1, "void")
        if "double" in kw:
            if kw.count("long"):
                return CType("float", 12, 4, "long double") if self.arch.bits == 32 \
                    else CType("float", 16, 16, "long double")
            return CType("float", 8, 4 if self.arch.bits == 32 else 8, "double")
        if kw == ["float"]:
            return CType("float", 4, 4, "float")
        longs = kw.count("long")
        if longs >= 2:
            return CType("int", 8, 4 if self.arch.bits == 32 else 8, "long long")
        if longs == 1:
            return CType("int", self.arch.ptr_size, self.arch.ptr_size, "long")
        for k in kw:
            if k in _INT_SIZES:
                return CType("int", _INT_SIZES[k], _INT_SIZES[k], k)
        return self.typedef(kw[-1], loc)

    def _aggregate(self, node, pc: ParsedChunk) -> CType:
        kind = "union" if isinstance(node, c_ast.Union) else \
            "enum" if isinstance(node, c_ast.Enum) else "struct"
        if kind == "enum":
            self._enum_values(node, pc)
            return CType("enum", 4, 4, node.name or "")
        s_packed, s_aligned = self._struct_attrs(node, pc)
        members: list[Member] = []
        bit = 0          # current offset in bits
        size_bits = 0
        align = 1
        for d in node.decls or []:
            t = self._type(d.type, pc)
            m_packed, m_aligned = self._member_attrs(d, pc)
            packed = s_packed or m_packed
            falign = 1 if packed else t.align
            if m_aligned is not None:
                falign = max(falign, m_aligned)
            if d.bitsize is not None:
                width = self.const(d.bitsize, pc)
                unit = t.size * 8
                if kind == "union":
                    start = 0
                elif width == 0:
                    bit = _round(bit, t.align * 8)
                    continue
                elif not packed and _spans(bit, width, t.align * 8) > unit // (t.align * 8):
                    # gcc (PCC_BITFIELD_TYPE_MATTERS): a field may not touch
                    # more alignment units of its type than the type has.
                    start = _round(bit, t.align * 8)
                else:
                    start = bit
                if d.name and not packed:
                    align = max(align, falign)
                bit = start + width
                size_bits = max(size_bits, bit)
                members.append(Member(d.name, start // 8, t, self.loc(d)))
                continue
            if kind == "union":
                off = 0
                size_bits = max(size_bits, t.size * 8)
            else:
                off = _round((bit + 7) // 8, falign)
                bit = (off + t.size) * 8
                size_bits = bit
            align = max(align, falign)
            members.append(Member(d.name, off, t, self.loc(d)))
        if s_aligned is not None:
            align = max(align, s_aligned)
        size = _round((size_bits + 7) // 8, align)
        return CType(kind, size, align, node.name or "<anonymous>", members, loc=self.loc(node))

    # --- attributes (kept by cparse as text spans) -----------------------------

    def _align_value(self, text: str, pc: ParsedChunk) -> int:
        if text == "":
            return 16
        return self.const_text(text, pc)

    def _struct_attrs(self, node, pc: ParsedChunk) -> tuple[bool, int | None]:
        start = pc.offset_of(node.coord)
        if start is None:
            return False, None
        t = pc.text
        kw = max(t.rfind("struct", 0, start + 1), t.rfind("union", 0, start + 1))
        brace = t.find("{", start)
        end = _match_brace(t, brace) if brace >= 0 else -1
        after = end + 1 if end >= 0 else start
        # attributes after the body run up to the declarator or ';'
        stop = after
        for a in sorted(pc.attrs, key=lambda a: a.start):
            if a.start >= stop and not t[stop:a.start].strip():
                stop = a.end
        packed, aligned = False, None
        for a in pc.attrs:
            if (kw <= a.start < brace) or (after <= a.start < stop):
                packed |= a.packed
                if a.aligned is not None:
                    v = self._align_value(a.aligned, pc)
                    aligned = max(aligned or 1, v)
        return packed, aligned

    def _member_attrs(self, d, pc: ParsedChunk) -> tuple[bool, int | None]:
        pos = pc.offset_of(d.coord)
        if pos is None:
            return False, None
        t = pc.text
        a0 = max(t.rfind(";", 0, pos), t.rfind("{", 0, pos)) + 1
        a1 = _decl_end(t, pos)
        packed, aligned = False, None
        for a in pc.attrs:
            if a0 <= a.start < a1 and not _inside_braces(t, a0, a.start):
                packed |= a.packed
                if a.aligned is not None:
                    v = self._align_value(a.aligned, pc)
                    aligned = max(aligned or 1, v)
        return packed, aligned

    # --- constant expressions -----------------------------------------------------

    def const_text(self, text: str, pc: ParsedChunk | None) -> int:
        try:
            ast = self.p._parser.parse(f"int __pv_c[{text}];", "<const>",
                                       initial_type_symbols=self.p._typedefs)
        except Exception:
            raise PvError(f"cannot evaluate '{text}'", None) from None
        return self.const(ast.ext[0].type.dim, pc)

    def const(self, e, pc: ParsedChunk | None) -> int:
        loc = self.loc(e)
        if isinstance(e, c_ast.Constant):
            if e.type == "char":
                return ord(e.value.strip("'").encode().decode("unicode_escape")[:1] or "\0")
            if e.type in ("string",):
                raise PvError("a string is not an integer constant", loc)
            return _int_literal(e.value, loc)
        if isinstance(e, c_ast.ID):
            return self.enum_const(e.name, loc)
        if isinstance(e, c_ast.Cast):
            v = self.const(e.expr, pc)
            t = self._type(e.to_type.type, pc)
            if t.kind in ("int", "enum", "ptr") and t.size < 8:
                v &= (1 << (t.size * 8)) - 1
            return v
        if isinstance(e, c_ast.UnaryOp):
            if e.op == "sizeof":
                return self.type_of_operand(e.expr, pc).size
            if e.op in ("_Alignof", "__alignof__", "alignof"):
                return self.type_of_operand(e.expr, pc).align
            v = self.const(e.expr, pc)
            return {"-": -v, "+": v, "~": ~v, "!": int(not v)}.get(e.op, v) \
                if e.op in ("-", "+", "~", "!") else _bad(e, loc)
        if isinstance(e, c_ast.BinaryOp):
            a, b = self.const(e.left, pc), self.const(e.right, pc)
            return _binop(e.op, a, b, loc)
        if isinstance(e, c_ast.TernaryOp):
            c = self.const(e.cond, pc)
            if not c:
                return self.const(e.iffalse, pc)
            return c if e.iftrue is None else self.const(e.iftrue, pc)      # GNU `c ?: y`
        if isinstance(e, c_ast.FuncCall) and isinstance(e.name, c_ast.ID) and e.name.name == "offsetof":
            t_node, desig = e.args.exprs
            return self.offsetof(self._type(t_node.type, pc), desig, pc)[0]
        if isinstance(e, c_ast.ExprList) and e.exprs:
            return self.const(e.exprs[-1], pc)
        return _bad(e, loc)

    def type_of_operand(self, e, pc) -> CType:
        if isinstance(e, c_ast.Typename):
            return self._type(e.type, pc)
        raise PvError("sizeof of an expression is not supported here", self.loc(e))

    def offsetof(self, t: CType, desig, pc) -> tuple[int, CType, list[str]]:
        """Offset, type and member path of a designator (a.b[2].c) in `t`."""
        if isinstance(desig, c_ast.ID):
            m = t.member(desig.name)
            if m is None:
                raise PvError(f"{t.kind} {t.name} has no member '{desig.name}'", self.loc(desig))
            return m.offset, m.ctype, [desig.name]
        if isinstance(desig, c_ast.StructRef):
            off, inner, path = self.offsetof(t, desig.name, pc)
            off2, t2, p2 = self.offsetof(inner, desig.field, pc)
            return off + off2, t2, path + p2
        if isinstance(desig, c_ast.ArrayRef):
            off, inner, path = self.offsetof(t, desig.name, pc)
            i = self.const(desig.subscript, pc)
            return off + i * inner.elem.size, inner.elem, path[:-1] + [f"{path[-1]}[{i}]"]
        raise PvError("unsupported offsetof designator", self.loc(desig))


def _spans(bit: int, width: int, align_bits: int) -> int:
    return (bit + width + align_bits - 1) // align_bits - bit // align_bits


def _round(x: int, a: int) -> int:
    return (x + a - 1) // a * a if a > 1 else x


def _int_literal(s: str, loc) -> int:
    s = s.rstrip("uUlL")
    try:
        if s.lower().startswith("0x"):
            return int(s, 16)
        if s.lower().startswith("0b"):
            return int(s[2:], 2)
        if len(s) > 1 and s.startswith("0"):
            return int(s, 8)
        return int(s)
    except ValueError:
        raise PvError(f"'{s}' is not an integer constant", loc) from None


def _binop(op: str, a: int, b: int, loc) -> int:
    if op in ("/", "%") and b == 0:
        raise PvError("division by zero in a constant expression", loc)
    ops = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
           "/": lambda: int(a / b), "%": lambda: a - int(a / b) * b,
           "<<": lambda: a << b, ">>": lambda: a >> b, "&": lambda: a & b,
           "|": lambda: a | b, "^": lambda: a ^ b, "&&": lambda: int(bool(a and b)),
           "||": lambda: int(bool(a or b)), "==": lambda: int(a == b),
           "!=": lambda: int(a != b), "<": lambda: int(a < b), ">": lambda: int(a > b),
           "<=": lambda: int(a <= b), ">=": lambda: int(a >= b)}
    if op not in ops:
        raise PvError(f"operator '{op}' in a constant expression", loc)
    return ops[op]()


def _bad(e, loc):
    raise PvError("not an integer constant expression", loc)


def _match_brace(t: str, i: int) -> int:
    depth = 0
    for j in range(i, len(t)):
        if t[j] == "{":
            depth += 1
        elif t[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _decl_end(t: str, pos: int) -> int:
    depth = 0
    for j in range(pos, len(t)):
        ch = t[j]
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            if depth == 0:
                return j
            depth -= 1
        elif ch in ";," and depth == 0:
            return j
    return len(t)


def _inside_braces(t: str, a: int, b: int) -> bool:
    seg = t[a:b]
    return seg.count("{") > seg.count("}")
