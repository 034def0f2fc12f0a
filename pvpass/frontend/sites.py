"""Annotated asm statements -> sites, in both dialects.

Kernel dialect: the template records a `.parainstructions` entry itself
(`paravirt_alt`); the entry's label references delimit the site, its
`.byte`/`.short` operands give type number and clobber mask, and the op
comes from the memory operand of `call *...` (6.1) or from the type
number's `offsetof` (2.6.21).
pvpass dialect: a `# pvpass: site OP clobbers(...)` comment in the
template; the pass computes the type number from the struct layout.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from pycparser import c_ast

from ..arch import Arch
from ..diag import Loc, PvError
from ..encode import EncodeError, assemble
from ..model import OpsStruct, Site
from ..textsplit import whole_words
from .annotation import Annotation, AnnotationError, is_annotation, parse_annotation
from .asmstmt import AsmStmt, Operand
from .asmtemplate import (Direct, Indirect, Label, Mem, OpRef, Reg, Stmt, Template, TemplateError,
                          parse_template, render_stmt)
from .cparse import walk
from .layout import TypeEnv
from .operands import PLACEHOLDER, CodeModel, argument_registers, is_lvalue_global, print_operand
from .ops import OpsIndex, member_path, op_path
from .pptext import PPText

_PTR_DIRECTIVES = {".long", ".quad", ".4byte", ".8byte", ".int"}
_SKIP_DIRECTIVES = {".balign", ".align", ".p2align"}


@dataclass
class SiteSource:
    """What lint needs beyond the Site: the C-level statement it came from."""
    site: Site
    asm: AsmStmt
    template: Template
    annotation: Annotation | None
    operand_exprs: dict[int, object]   # operand index -> pycparser expression
    call_operand: Operand | None
    site_stmts: list[Stmt] = field(default_factory=list)


class SiteBuilder:
    def __init__(self, pp: PPText, arch: Arch, env: TypeEnv, ops: OpsIndex,
                 model: CodeModel) -> None:
        self.pp, self.arch, self.env, self.ops, self.model = pp, arch, env, ops, model
        self._tag_objects: dict[str, str | None] = {}

    # --- locations -----------------------------------------------------------

    def tloc(self, a: AsmStmt, i: int, token: str = "") -> Loc:
        """Source location of template index i (inside the C string)."""
        return self.pp.source_loc(a.template_off(i), token)

    def site_loc(self, a: AsmStmt) -> Loc:
        """Where a site of statement `a` is reported: its keyword."""
        return self.pp.source_loc(a.off, "asm" if self.pp.text.startswith("asm", a.off)
                                  else self.pp.text[a.off:a.off + 7])

    def annotation_error(self, a: AsmStmt, comment_pos: int, e: AnnotationError) -> PvError:
        return PvError(str(e), self.tloc(a, comment_pos + e.pos), rule="PV008")

    # --- entry point -----------------------------------------------------------

    def sites_of(self, a: AsmStmt, exprs: dict[int, object], function: str | None) -> list[SiteSource]:
        """The sites of one asm statement; `exprs` maps operand index to its
        parsed expression."""
        try:
            tpl = parse_template(a.template)
        except TemplateError as e:
            raise PvError(str(e), self.tloc(a, e.pos)) from None
        ann = None
        end = len(a.template)
        for c in tpl.comments:
            if is_annotation(c.text):
                try:
                    x = parse_annotation(c.text)
                except AnnotationError as e:
                    raise self.annotation_error(a, c.pos, e) from None
                if x.kind == "site":
                    ann = (x, c.pos)
                elif x.kind == "end" and ann is not None:
                    end = c.pos
        kernel = any(s.section == ".parainstructions" for s in tpl.stmts())
        if kernel:
            return self._kernel(a, tpl, exprs, function, ann)
        if ann is not None:
            return [self._pvpass(a, tpl, exprs, function, ann[0], ann[1], end)]
        return []

    # --- kernel dialect -------------------------------------------------------

    def _kernel(self, a, tpl: Template, exprs, function, ann) -> list[SiteSource]:
        entry = [s for s in tpl.stmts(".parainstructions") if s.name not in _SKIP_DIRECTIVES
                 and s.name not in (".pushsection", ".popsection")]
        out = []
        i = 0
        while i < len(entry):
            s = entry[i]
            if s.name not in _PTR_DIRECTIVES:
                raise PvError(f"unexpected '{s.name}' in a .parainstructions entry",
                              self.tloc(a, s.pos, s.name))
            fields = entry[i + 1:i + 4]
            if len(fields) < 2 or any(f.name not in (".byte", ".short", ".word", ".2byte") for f in fields[:2]):
                raise PvError(".parainstructions entry must be: pointer, .byte type, "
                              ".byte length[, .short clobbers]", self.tloc(a, s.pos, s.name))
            has_clobber = len(fields) > 2 and fields[2].name in (".short", ".word", ".2byte")
            i += 4 if has_clobber else 3
            start = _label_ref(s)
            type_st, len_st = fields[0], fields[1]
            end = _len_end(len_st)
            if start is None or end is None:
                raise PvError("cannot find the site's start and end labels",
                              self.tloc(a, s.pos, s.name))
            body = _between(tpl, start, end)
            type_expr = _arg_expr(type_st)
            typenum, struct_op = self._eval_field(a, exprs, type_expr, type_st)
            mask = 0
            if has_clobber:
                mask, _ = self._eval_field(a, exprs, _arg_expr(fields[2]), fields[2])
            call_op, obj, members = self._call_target(a, body, exprs)
            if obj is None and struct_op is not None:
                obj = struct_op[0]
            if obj is None:
                raise PvError("cannot tell which ops object this site calls through",
                              self.tloc(a, body[0].pos if body else 0))
            ops = self.ops.ops_struct(obj, self.tloc(a, 0))
            if members is not None:
                path = op_path(ops, members)
            elif struct_op is not None:
                path = op_path(ops, struct_op[1])
            else:
                op = ops.by_type(typenum)
                path = op.path if op else f"#{typenum}"
            mask &= 0xFFFF
            clobbers = self.arch.regs_of_mask(mask)
            site = self._site(a, body, exprs, function, "kernel", ops, path,
                              typenum, clobbers, mask)
            out.append(SiteSource(site, a, tpl, ann[0] if ann else None, exprs, call_op, body))
        return out

    def _eval_field(self, a, exprs, e, st: Stmt):
        """Value of a .byte/.short field; with the (struct obj, path) of an
        offsetof inside it when there is one."""
        if e is None:
            raise PvError("empty .parainstructions field", self.tloc(a, st.pos))
        if e[0] == "num":
            return e[1], None
        if e[0] == "opc":
            op = a.operand(e[2])
            if op is None or op.index not in exprs:
                raise PvError(f"'%{e[1]}{e[2]}' names no operand of this asm statement",
                              self.tloc(a, st.pos, st.name))
            node = exprs[op.index]
            v = self.env.const(node, None)
            return v, self._offsetof_op(node)
        raise PvError("cannot evaluate this .parainstructions field", self.tloc(a, st.pos, st.name))

    def _offsetof_op(self, node):
        for fc in walk(node, c_ast.FuncCall):
            if isinstance(fc.name, c_ast.ID) and fc.name.name == "offsetof":
                t_node, desig = fc.args.exprs
                path = _designator_path(desig)
                tag = _struct_tag(t_node)
                obj = self._object_of_tag(tag) if tag else None
                return (obj, path) if path else None
        return None

    def _object_of_tag(self, tag: str) -> str | None:
        """The global object of type `struct tag` (the ops object)."""
        if tag not in self._tag_objects:
            self._tag_objects[tag] = _object_of(self.pp.text, tag)
        return self._tag_objects[tag]

    # --- pvpass dialect ----------------------------------------------------------

    def _pvpass(self, a, tpl, exprs, function, ann: Annotation, cpos: int,
                end: int) -> SiteSource:
        body = [s for s in tpl.stmts("") if cpos < s.pos < end]
        call_op, obj, members = self._call_target(a, body, exprs)
        if obj is None:
            raise PvError("pvpass site has no 'call *%[...]' through an ops object",
                          self.tloc(a, cpos), rule="PV008")
        ops = self.ops.ops_struct(obj, self.tloc(a, 0))
        op = ops.op(ann.op)
        if op is None:
            raise PvError(f"unknown op '{ann.op}' (not a function pointer of struct {ops.tag})",
                          self.tloc(a, cpos + _find(tpl, cpos, ann.op), ann.op), rule="PV005")
        clobbers = self.clobber_set(a, cpos, ann)
        mask = self.arch.mask(clobbers)
        site = self._site(a, body, exprs, function, "pvpass", ops, op.path,
                          op.type_number, clobbers, mask)
        return SiteSource(site, a, tpl, ann, exprs, call_op, body)

    def clobber_set(self, a: AsmStmt, cpos: int, ann: Annotation) -> tuple[str, ...]:
        regs: set[str] = set()
        for r in ann.clobbers:
            if r == "any":
                regs.update(n for n, _ in self.arch.clobber_bits)
                continue
            if r in ("cc", "memory"):
                continue
            c = self.arch.canon_reg(r)
            if c is None or c not in dict(self.arch.clobber_bits):
                comment = a.template[cpos:]
                col = comment.find(r)
                raise PvError(f"'{r}' is not a clobberable register on {self.arch.name}",
                              self.tloc(a, cpos + max(col, 0), r), rule="PV008")
            regs.add(c)
        return tuple(n for n, _ in self.arch.clobber_bits if n in regs)

    # --- shared ---------------------------------------------------------------------

    def _call_target(self, a: AsmStmt, body: list[Stmt], exprs):
        """(operand, ops object, member path) of the site's `call *X`."""
        for s in body:
            if s.name not in ("call", "calll", "callq") or not s.args:
                continue
            t = s.args[0]
            if not isinstance(t, Indirect):
                continue
            t = _operand_ref(t.target)
            if isinstance(t, OpRef):
                op = a.operand(t.ref)
                if op is None:
                    raise PvError(f"'%{t.ref}' names no operand of this asm statement",
                                  self.tloc(a, s.pos, "call"))
                node = exprs.get(op.index)
                if isinstance(node, c_ast.UnaryOp) and node.op == "&":
                    node = node.expr        # "i" (&ops.op), printed with %c
                mp = member_path(node) if node is not None else None
                if mp:
                    return op, mp[0], mp[1]
                return op, None, None
            if isinstance(t, Direct):
                sym = _first_sym(t.expr)
                if sym:
                    return None, sym, None
        return None, None, None

    def _site(self, a, body, exprs, function, dialect, ops: OpsStruct, path, typenum,
              clobbers, mask) -> Site:
        instrs, length = self.encode(a, body, exprs, ops)
        nargs = len(argument_registers(self.arch, a))
        if dialect == "pvpass":
            names = {o.name for o in a.operands if o.name}
            # named arguments (the 4th may be on the stack), or hand-written registers
            nargs = max(nargs, sum(1 for i in range(1, 7) if f"pv_a{i}" in names))
            returns = "pv_ret" in names
        else:
            returns = None
        return Site(self.site_loc(a), function, dialect, path, typenum, clobbers, mask, tuple(instrs), length,
                    ops.obj, a.template, nargs, returns)

    def encode(self, a: AsmStmt, body: list[Stmt], exprs, ops: OpsStruct):
        taken = set()
        for o in a.operands:
            for ch in o.constraint:
                r = self.arch.constraint_reg(ch)
                if r:
                    taken.add(r)

        def operand_text(ref: OpRef) -> str:
            o = a.operand(ref.ref)
            if o is None:
                raise PvError(f"'%{ref.modifier}{ref.ref}' names no operand of this asm statement",
                              self.tloc(a, 0))
            node = exprs.get(o.index)
            off, value, local = None, None, False
            if node is not None and is_lvalue_global(node):
                mp = member_path(node)
                if mp and mp[0] == ops.obj:
                    op = ops.op(op_path(ops, mp[1]))
                    off = op.offset if op else 0
                else:
                    off = 0
                local = True
            elif node is not None:
                try:
                    value = self.env.const(node, None)
                except PvError:
                    value = None
            return print_operand(self.arch, self.model, o.constraint, ref.modifier, off,
                                 local, value, taken).text

        def expr_text(e) -> str:
            if e[0] == "sym":       # keystone has no symbols: a 32-bit placeholder
                return hex(PLACEHOLDER)
            return operand_text(OpRef(e[2], e[1]))

        instrs = []
        length = 0
        for s in body:
            if s.is_directive:
                continue
            text = render_stmt(s, operand_text, expr_text)
            try:
                code = assemble(self.arch, text)
            except EncodeError as e:
                raise PvError(str(e), self.tloc(a, s.pos, s.name)) from None
            instrs.append(render_stmt(s))
            length += len(code)
        return instrs, length


_AFTER_TAG = re.compile(r'\s+([A-Za-z_]\w*)\s*[;=\[]')
_WORD = re.compile(r'\w')


def _object_of(text: str, tag: str) -> str | None:
    """NAME of the first `struct TAG NAME` followed by `;`, `=` or `[`, as
    the regex `\\bstruct\\s+TAG\\s+NAME\\s*[;=\\[]` finds it, from where TAG
    stands (str.find: such a regex takes ~8 ms over a kernel TU)."""
    for i in whole_words(text, tag):
        j = i
        while j and text[j - 1].isspace():
            j -= 1
        if j == i or j < 6 or text[j - 6:j] != "struct" or (j > 6 and _WORD.match(text, j - 7)):
            continue
        m = _AFTER_TAG.match(text, i + len(tag))
        if m:
            return m.group(1)
    return None


def _label_ref(s: Stmt) -> str | None:
    e = _arg_expr(s)
    if e is not None and e[0] == "local":
        return e[1][:-1]
    if e is not None and e[0] == "sym":
        return e[1]
    return None


def _len_end(s: Stmt) -> str | None:
    e = _arg_expr(s)
    if e is not None and e[0] == "bin" and e[1] == "-" and e[2][0] in ("local", "sym"):
        return e[2][1][:-1] if e[2][0] == "local" else e[2][1]
    return None


def _arg_expr(s: Stmt):
    if s.args and isinstance(s.args[0], Direct):
        return s.args[0].expr
    return None


def _between(tpl: Template, start: str, end: str) -> list[Stmt]:
    out, inside = [], False
    for it in tpl.items:
        if isinstance(it, Label) and it.section == "":
            if it.name == start:
                inside = True
                continue
            if it.name == end and inside:
                return out
        elif inside and isinstance(it, Stmt) and it.section == "" and it.name not in (
                ".pushsection", ".popsection"):
            out.append(it)
    return out


def _operand_ref(t):
    """The operand a call target names: `*%[op]`, or the disp32 forms of an
    "i" operand printed bare, `*%c[op]` (i386) and `*%c[op](%rip)`."""
    if isinstance(t, Direct) and t.expr[0] == "opc":
        return OpRef(t.expr[2], t.expr[1])
    if isinstance(t, Mem) and t.disp is not None and t.disp[0] == "opc" and t.index is None \
            and (t.base is None or t.base == Reg("rip")):
        return OpRef(t.disp[2], t.disp[1])
    return t


def _first_sym(e):
    if e[0] == "sym":
        return e[1]
    if e[0] == "bin":
        return _first_sym(e[2]) or _first_sym(e[3])
    if e[0] == "un":
        return _first_sym(e[2])
    return None


def _designator_path(d) -> list[str] | None:
    if isinstance(d, c_ast.ID):
        return [d.name]
    if isinstance(d, c_ast.StructRef):
        p = _designator_path(d.name)
        return p + [d.field.name] if p is not None else None
    return None


def _struct_tag(t_node) -> str | None:
    t = getattr(t_node, "type", None)
    t = getattr(t, "type", t)
    return t.name if isinstance(t, c_ast.Struct) else None


def _find(tpl: Template, cpos: int, text: str) -> int:
    for c in tpl.comments:
        if c.pos == cpos:
            i = c.text.find(" " + text)
            return i + 1 if i >= 0 else 0
    return 0
