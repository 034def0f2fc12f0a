"""Inline-asm templates, parsed with grammar/asm.lark into a small model.

The model keeps template positions (for diagnostics) and the sections
statements land in (`.pushsection` blocks are not part of the site's bytes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput

from ..grammars import grammar_text

# --- expressions: tiny tuples, cheap to build and to render -----------------
# ("num", int) ("sym", name) ("local", "771b") ("opc", modifier, ref)
# ("bin", op, a, b) ("un", op, a)
Expr = tuple


@dataclass(frozen=True)
class Reg:
    name: str             # without '%'


@dataclass(frozen=True)
class OpRef:
    ref: str              # "[name]" or "0"
    modifier: str = ""


@dataclass(frozen=True)
class Imm:
    expr: Expr


@dataclass(frozen=True)
class Mem:
    disp: Expr | None
    base: Reg | OpRef | None = None
    index: Reg | OpRef | None = None
    scale: Expr | None = None
    seg: str | None = None


@dataclass(frozen=True)
class Direct:             # a bare expression operand (symbol or absolute)
    expr: Expr
    seg: str | None = None


@dataclass(frozen=True)
class Str:
    value: str


@dataclass(frozen=True)
class AtName:
    name: str


@dataclass(frozen=True)
class Indirect:
    target: object


@dataclass
class Stmt:
    name: str             # mnemonic or directive, lower case
    prefixes: tuple[str, ...]
    args: tuple
    pos: int              # template index of the statement
    end: int
    section: str          # the section it assembles into ("" = the code's own)

    @property
    def is_directive(self) -> bool:
        return self.name.startswith(".")


@dataclass
class Label:
    name: str
    pos: int
    section: str


@dataclass
class Comment:
    text: str
    pos: int


@dataclass
class Template:
    items: list            # Label | Stmt in order
    comments: list[Comment] = field(default_factory=list)

    def stmts(self, section: str | None = None) -> list[Stmt]:
        return [s for s in self.items if isinstance(s, Stmt)
                and (section is None or s.section == section)]


class TemplateError(Exception):
    def __init__(self, msg: str, pos: int) -> None:
        super().__init__(msg)
        self.pos = pos


@lru_cache(maxsize=1)
def _parser() -> Lark:
    # cache=True keeps the built LALR tables in the temp dir: 90 ms -> 5 ms a run
    return Lark(grammar_text("asm.lark"), parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=True, cache=True)


@v_args(inline=True)
class _ToModel(Transformer):
    def num(self, t):
        s = str(t).lower()
        return ("num", int(s, 0) if not s.startswith("0b") else int(s[2:], 2)) if s[:2] in ("0x", "0b") \
            else ("num", int(s, 10))

    def localref(self, t):
        return ("local", str(t).lower())

    def sym(self, t):
        return ("sym", str(t))

    def oprefc(self, t):
        s = str(t)
        return ("opc", s[1], s[2:])

    def neg(self, a):
        return ("un", "-", a)

    def unop(self, op, a):
        return ("un", str(op), a)

    def binop(self, *parts):
        acc = parts[0]
        for i in range(1, len(parts), 2):
            acc = ("bin", str(parts[i]), acc, parts[i + 1])
        return acc

    def _fold(op):
        def f(self, *parts):
            acc = parts[0]
            for p in parts[1:]:
                acc = ("bin", op, acc, p)
            return acc
        return f

    bor = _fold("|")
    bxor = _fold("^")
    band = _fold("&")

    def reg(self, t):
        return Reg(str(t).lstrip("%").lower())

    def opref(self, t):
        s = str(t)[1:]
        mod = "" if s[0] in "[0123456789" else s[0]
        return OpRef(s[len(mod):], mod)

    def mreg(self, t):
        return self.reg(t) if t.type == "REG" else self.opref(t)

    def imm(self, e):
        return Imm(e)

    def direct(self, e):
        return Direct(e)

    def mem(self, disp, base, index, scale):
        return Mem(disp, base, index, scale)

    def seg(self, r, m):
        s = str(r).lstrip("%").lower()
        if isinstance(m, Mem):
            return Mem(m.disp, m.base, m.index, m.scale, s)
        return Direct(m.expr, s)

    def indirect(self, star, o):
        return Indirect(o)

    def string(self, t):
        return Str(str(t))

    def at_name(self, t):
        return AtName(str(t))

    def args(self, *a):
        return tuple(a)


@lru_cache(maxsize=4096)
def parse_template(text: str) -> Template:
    """Parse a decoded asm template; TemplateError carries the index. Deeply
    parenthesised operands (lark's tree walks recurse) are parsed again on a
    deep stack (frontend/deep.py), and beyond that are one error."""
    try:
        return _parse_template(text)
    except RecursionError:
        pass
    from .deep import deep_call
    try:
        return deep_call(_parse_template, text)
    except RecursionError:
        raise TemplateError("cannot parse asm template: nested too deeply", 0) from None


def _parse_template(text: str) -> Template:
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as e:
        pos = getattr(e, "pos_in_stream", None)
        if pos is None:
            pos = len(text)
        tok = getattr(e, "token", None)
        what = f"unexpected '{tok}'" if tok is not None and str(tok) else \
            f"unexpected '{text[pos:pos + 1]}'" if pos < len(text) else "unexpected end of template"
        raise TemplateError(f"cannot parse asm template: {what}", pos) from None
    conv = _ToModel()
    items: list = []
    comments: list[Comment] = []
    sections: list[str] = [""]
    for line in tree.children:
        for child in line.children:
            if child is None:
                continue
            if child.data == "label":
                tok = child.children[0]
                items.append(Label(str(tok).lower(), tok.start_pos, sections[-1]))
            elif child.data == "comment":
                tok = child.children[0]
                comments.append(Comment(str(tok), tok.start_pos))
            elif child.data == "prefix_stmt":     # "lock;" on its own
                for tok in child.children:
                    items.append(Stmt(str(tok).lower(), (), (), tok.start_pos,
                                      tok.end_pos, sections[-1]))
            elif child.data == "stmt":
                toks = [c for c in child.children if isinstance(c, Token)]
                prefixes = tuple(str(t).lower() for t in toks if t.type == "PREFIX")
                name_tok = next(t for t in toks if t.type == "NAME")
                argtree = child.children[-1]
                args = conv.transform(argtree) if argtree is not None else ()
                name = str(name_tok).lower()
                st = Stmt(name, prefixes, args, (toks[0]).start_pos,
                          child.meta.end_pos if not child.meta.empty else name_tok.end_pos,
                          sections[-1])
                _track_sections(st, sections)
                items.append(st)
    return Template(items, comments)


def _track_sections(st: Stmt, sections: list[str]) -> None:
    """Keep the section stack (.pushsection/.popsection/.section/.previous)."""
    first = st.args[0] if st.args else None
    name = first.expr[1] if isinstance(first, Direct) and first.expr[0] == "sym" else None
    if st.name == ".pushsection" and name:
        sections.append(name)
    elif st.name == ".popsection" and len(sections) > 1:
        sections.pop()
    elif st.name == ".section" and name:
        sections[-1] = name
    elif st.name in (".text", ".data", ".bss"):
        sections[-1] = st.name


# --- rendering -----------------------------------------------------------------

def render_expr(e: Expr, subst=None) -> str:
    """Print an expression; `subst(node)` replaces operand refs ("opc"
    nodes) and, when it returns a string for them, symbols ("sym" nodes)."""
    k = e[0]
    if k == "sym" and subst is not None and e[1] != ".":
        r = subst(e)
        if r is not None:
            return r
    if k == "num":
        # Hex always: keystone (0.9.2) reads AT&T decimal immediates as hex.
        return hex(e[1])
    if k in ("sym", "local"):
        return e[1]
    if k == "opc":
        if subst is None:
            return f"%{e[1]}{e[2]}"
        return subst(e)
    if k == "un":
        return f"{e[1]}{_paren(e[2], subst)}"
    return f"{_paren(e[2], subst)}{e[1]}{_paren(e[3], subst)}"


def _paren(e: Expr, subst) -> str:
    s = render_expr(e, subst)
    return f"({s})" if e[0] in ("bin", "un") else s



def render_operand(a, subst_ref, subst_expr) -> str:
    """AT&T text of one operand; operand references are replaced by
    `subst_ref(OpRef)` and `subst_expr(("opc", mod, ref))`."""
    if isinstance(a, Reg):
        return "%" + a.name
    if isinstance(a, OpRef):
        return subst_ref(a)
    if isinstance(a, Imm):
        return "$" + render_expr(a.expr, subst_expr)
    if isinstance(a, Indirect):
        return "*" + render_operand(a.target, subst_ref, subst_expr)
    if isinstance(a, Direct):
        seg = f"%{a.seg}:" if a.seg else ""
        return seg + render_expr(a.expr, subst_expr)
    if isinstance(a, Mem):
        seg = f"%{a.seg}:" if a.seg else ""
        disp = render_expr(a.disp, subst_expr) if a.disp is not None else ""
        regs = [render_operand(r, subst_ref, subst_expr) if r is not None else "" for r in (a.base, a.index)]
        inner = regs[0]
        if a.index is not None or a.scale is not None:
            inner += "," + regs[1]
            if a.scale is not None:
                inner += "," + render_expr(a.scale, subst_expr)
        return f"{seg}{disp}({inner})"
    if isinstance(a, Str):
        return a.value
    if isinstance(a, AtName):
        return a.name
    raise TypeError(a)


def render_stmt(st: Stmt, subst_ref=None, subst_expr=None) -> str:
    ref = subst_ref or (lambda r: f"%{r.modifier}{r.ref}")
    args = ", ".join(render_operand(a, ref, subst_expr) for a in st.args)
    head = " ".join(st.prefixes + (st.name,))
    return f"{head} {args}" if args else head
