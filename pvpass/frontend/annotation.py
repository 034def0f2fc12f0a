"""pvpass-dialect annotations (grammar/annotation.lark): assembler comments
starting with `pvpass:` inside asm templates."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from lark import Lark, Transformer, v_args
from lark.exceptions import UnexpectedInput

from ..grammars import grammar_text

_LEAD = re.compile(r'^(#|/\*)\s*(?=pvpass\s*:)')


@dataclass(frozen=True)
class Annotation:
    kind: str                      # site | end | target | inline | nop | absent
    op: str | None = None          # op path
    backend: str | None = None     # backend (ops object) name
    function: str | None = None    # target function
    clobbers: tuple[str, ...] = ()
    text: str | None = None        # inline replacement
    pos: int = 0                   # index of the annotation in the comment


class AnnotationError(Exception):
    def __init__(self, msg: str, pos: int) -> None:
        super().__init__(msg)
        self.pos = pos


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(grammar_text("annotation.lark"), parser="lalr", maybe_placeholders=True, cache=True)


@v_args(inline=True)
class _ToModel(Transformer):
    def op(self, *names):
        return ".".join(str(n) for n in names)

    def reg(self, t):
        return str(t).lower()

    def clobbers(self, *regs):
        return tuple(r for r in regs if r is not None)

    def site(self, op, clob):
        return Annotation("site", op=op, clobbers=clob)

    def target(self, fn, clob):
        return Annotation("target", function=str(fn), clobbers=clob)

    def inline(self, backend, op, text, clob):
        s = str(text)[1:-1].encode().decode("unicode_escape")
        return Annotation("inline", op=op, backend=str(backend), text=s, clobbers=clob)

    def end(self):
        return Annotation("end")

    def ops(self, name):
        return Annotation("ops", backend=str(name))

    def nop(self, backend, op):
        return Annotation("nop", op=op, backend=str(backend))

    def absent(self, backend, op):
        return Annotation("absent", op=op, backend=str(backend))

    def start(self, d):
        return d


def is_annotation(comment: str) -> bool:
    return bool(_LEAD.match(comment))


@lru_cache(maxsize=4096)      # one text per op and clobber set: sites repeat it
def parse_annotation(comment: str) -> Annotation:
    """Parse one comment ('# pvpass: ...' or '/* pvpass: ... */').
    AnnotationError.pos is the index inside `comment`."""
    m = _LEAD.match(comment)
    if not m:
        raise AnnotationError("not a pvpass annotation", 0)
    body = comment[m.end():]
    if comment.startswith("/*"):
        body = body[:-2] if body.endswith("*/") else body
    try:
        ann = _ToModel().transform(_parser().parse(body))
    except UnexpectedInput as e:
        pos = getattr(e, "pos_in_stream", None)
        pos = len(body) if pos is None else pos
        tok = getattr(e, "token", None)
        if tok is not None and getattr(tok, "type", "") == "$END":
            pos, what = len(body.rstrip()), "unexpected end of annotation"
        elif tok is not None and str(tok):
            what = f"unexpected '{tok}'"
        elif pos < len(body):
            what = f"unexpected '{body[pos]}'"
        else:
            what = "unexpected end of annotation"
        exp = sorted(getattr(e, "expected", None) or getattr(e, "allowed", None) or [])
        hint = f" (expected {', '.join(_pretty(x) for x in exp[:6])})" if exp else ""
        raise AnnotationError(f"malformed pvpass annotation: {what}{hint}", m.end() + pos) from None
    return Annotation(ann.kind, ann.op, ann.backend, ann.function, ann.clobbers, ann.text, m.end())


_PRETTY = {"LPAR": "'('", "RPAR": "')'", "COMMA": "','", "DOT": "'.'", "COLON": "':'",
           "IDENT": "a name", "STRING": "a string", "$END": "end"}


def _pretty(t: str) -> str:
    return _PRETTY.get(t, f"'{t.lower()}'" if t.isupper() and len(t) < 12 else t)
