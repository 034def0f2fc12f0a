"""The build path's per-statement memos (pvpass/frontend/stmtsites.py,
asmstmt's per-text reading, scan's annotations): a statement met again is
what reading it afresh gives, and what its key leaves out cannot change it.
The oracle is the whole-function parse that `pvpass scan` uses."""
from __future__ import annotations

import random

from pycparser import c_ast

from conftest import INCLUDE, TESTDATA, run_pvpass
from pvpass.arch import get_arch
from pvpass.frontend.asmstmt import _ASM_KW, find_asm, keywords
from pvpass.frontend.preprocess import preprocess
from pvpass.frontend.scan import scan_reported

OPS_H = TESTDATA / "pvpass/ops.h"

# Which names are typedef names is the one context a C expression's parse
# reads, and the statement text leaves it out: `(U)(x)` is a call where U
# is a parameter and a cast where the function itself declares U a
# typedef; `(T)(x)` is a cast where T is the TU's typedef and a call where
# a local variable shadows it.
TYPEDEF_CONTEXT = f'''#include "{OPS_H}"
typedef unsigned long T;
void cast(unsigned long x) {{ PV_VCALL1(irq.restore_fl, (T)(x)); }}
void shadowed(unsigned long x, unsigned long (*T)(unsigned long)) {{ PV_VCALL1(irq.restore_fl, (T)(x)); }}
void local_var(unsigned long x) {{ unsigned long (*T)(unsigned long) = 0; PV_VCALL1(irq.restore_fl, (T)(x)); }}
void param(unsigned long x, unsigned long (*U)(unsigned long)) {{ PV_VCALL1(irq.restore_fl, (U)(x)); }}
void local(unsigned long x) {{ typedef unsigned long U; PV_VCALL1(irq.restore_fl, (U)(x)); }}
void twice(unsigned long x) {{
	PV_VCALL1(irq.restore_fl, x + 1);
	PV_VCALL1(irq.restore_fl, x + 1);
}}
'''


def _scan(tmp, text: str, compiled: bool):
    src = tmp / "t.c"
    src.write_text(text)
    arch = get_arch("x86_64")
    flags = [f"-I{INCLUDE}"]
    return scan_reported(preprocess(str(src), arch, flags), arch, flags, report=False, compiled=compiled)


def _argument(s) -> type:
    """The node type of a site's first argument's expression (inside the
    macro's `(unsigned long)(a)` cast)."""
    node = next(e for i, e in s.operand_exprs.items() if s.asm.operands[i].name == "pv_a1")
    return type(node.expr if isinstance(node, c_ast.Cast) else node)


def test_typedef_context_is_not_taken_from_another_function(tmp):
    fast, whole = _scan(tmp, TYPEDEF_CONTEXT, True), _scan(tmp, TYPEDEF_CONTEXT, False)
    got = [(s.site.function, _argument(s)) for s in fast.sources]
    assert got == [(s.site.function, _argument(s)) for s in whole.sources]
    # (pycparser keeps T a typedef name in `shadowed`'s body: the same
    # statement there is the same reading, which is all the memo may give)
    kinds = dict(got)
    assert (kinds["cast"], kinds["local_var"], kinds["param"], kinds["local"]) == (
        c_ast.Cast, c_ast.FuncCall, c_ast.FuncCall, c_ast.Cast)
    # the memo was used: the second statement of `twice` is the first's again
    a, b = [s for s in fast.sources if s.site.function == "twice"]
    assert a.operand_exprs is b.operand_exprs and a.site.loc != b.site.loc
    assert [s.site for s in fast.sources] == [s.site for s in whole.sources]


def test_statements_differing_past_the_guessed_end(tmp):
    """A statement's text runs to its closing ')', not to the first ");"
    (a statement expression in an operand holds one): two statements that
    agree up to that guess are two statements."""
    head = 'asm volatile("nop" : : "r"(({ f(); '
    text = f"void g(void) {{ {head}1; }}))); {head}2; }}))); }}"
    stmts = find_asm(text, 0, len(text), None)
    assert [o.expr for a in stmts for o in a.operands] == ["({ f(); 1; })", "({ f(); 2; })"]


def test_annotations_at_file_scope_are_not_those_of_a_function(tmp):
    """The same template in a function (a site) and at file scope (no site
    can be there): the annotations' memo keys on where it stands too."""
    src = tmp / "f.c"
    src.write_text(f'#include "{OPS_H}"\n'
                   'void f(void) { asm volatile("# pvpass: site cpu.io_delay clobbers(any)\\n\\tcall *%[pv_op]"'
                   ' : : [pv_op] "m" (pv_ops.cpu.io_delay) : "memory"); }\n'
                   'asm("# pvpass: site cpu.io_delay clobbers(any)\\n\\tcall *%[pv_op]");\n')
    r = run_pvpass("scan", str(src))
    assert r.returncode == 2 and "outside a function" in r.stderr and f"{src}:3:" in r.stderr, r.stderr


def test_asm_keywords_are_where_the_regex_finds_them():
    """`keywords` (str.find) against the regex it replaces, \\b at both ends
    of the search window included."""
    rnd = random.Random(7)
    alphabet = ["a", "s", "m", "_", "x", " ", "1", "é", "(", "asm", "__asm__", "__asm", "\n"]
    for _ in range(20000):
        t = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 14)))
        start = rnd.randint(0, len(t))
        end = rnd.randint(start, len(t))
        assert list(keywords(t, start, end)) == [m.start() for m in _ASM_KW.finditer(t, start, end)], (t, start, end)


def test_a_statement_met_in_another_function_is_read_afresh_there():
    """The asm statements' memo spans chunks (one macro in 5,000 functions
    is tokenized once): each statement it gives is what reading it at its
    own place gives, offsets, template map and operands moved there."""
    from pvpass.frontend.asmstmt import _parse_one
    stmt = 'asm volatile("# pvpass: x\\n\\t" "call *%[p]" : [o] "=r" (v) : [p] "m" (ops.a), "r" (k + 1) : "memory")'
    text = "".join(f"void f{i}(void) {{{' ' * i}{stmt}; {stmt};\n}}\n" for i in range(4))
    starts = [text.find("void f", 1 + text.find(f"void f{i}")) if i < 3 else len(text) for i in range(4)]
    lo = 0
    for hi in starts:
        got = find_asm(text, lo, hi, None)
        assert [_read(a) for a in got] == [_read(_parse_one(text, a.off, hi)) for a in got]
        assert [text[a.off:a.end] for a in got] == [stmt, stmt]
        lo = hi


def _read(a) -> tuple:
    """What a statement says, its template's map as offsets in the text (a
    moved statement shares its map and moves its base)."""
    return (a.off, a.end, a.qualifiers, a.template, [a.template_off(i) for i in range(len(a.tmap))],
            a.outputs, a.inputs, a.clobbers, a.labels, a.basic, a.blanks)


HEADS = f'''#include "{OPS_H}"
typedef unsigned long T;
#define SITE PV_VCALL1(irq.restore_fl, 1)
static void a1(void) {{ SITE; }}
static void a2(void) {{ SITE; }}
void a3(void) {{ SITE; }}
static void (*r1(void))(void) {{ SITE; return 0; }}
static void (*r2(void))(void) {{ SITE; return 0; }}
int f(int f) {{ SITE; return f; }}
int g(int f) {{ SITE; return f; }}
int h(int f) {{ SITE; return f; }}
int i(int i, int j) {{ SITE; return i; }}
__attribute__((noinline)) T t1(T x) {{ SITE; return x; }}
__attribute__((noinline)) T t2(T x) {{ SITE; return x; }}
T *p1(T (*cb)(T), T y) {{ SITE; return 0; }}
T *p2(T (*cb)(T), T y) {{ SITE; return 0; }}
int
s$1(void) {{ SITE; return 0; }}
int
s$2(void) {{ SITE; return 0; }}
'''


def test_a_head_of_a_known_shape_is_named_as_its_parse_names_it(tmp, monkeypatch):
    """Functions whose statements were all met before are named from a
    head parsed once per shape: each gets the name the whole-function
    parse gives, and heads that differ only in their name share one parse."""
    from pvpass.frontend.cparse import ChunkParser
    parsed = []
    real = ChunkParser.parse_text
    monkeypatch.setattr(ChunkParser, "parse_text", lambda self, text, file: parsed.append(text) or
                        real(self, text, file))
    fast = _scan(tmp, HEADS, True)
    heads = [p.split("\n", 1)[1].split("(")[0].split()[-1].strip("*") for p in parsed]
    whole = _scan(tmp, HEADS, False)
    assert [s.site for s in fast.sources] == [s.site for s in whole.sources]
    assert [s.site.function for s in fast.sources] == [
        "a1", "a2", "a3", "r1", "r2", "f", "g", "h", "i", "t1", "t2", "p1", "p2", "s$1", "s$2"]
    # parsed: a1 (its statement is new), a2 and a3 (the first of their
    # shapes), r1 and r2 (no plain name), f and g (f names itself twice),
    # i, t1, p1, s$1 and s$2 ('$' is no part of the names pvpass reads)
    assert heads == [
        "a1", "a2", "a3", "void", "void", "f", "g", "i", "t1", "p1", "s$1", "s$2"]


# Each kind of text the prepared chunk blanks or rewrites, in a function's
# head and around its statements: attributes, an asm label, a label
# declaration running to its ';', __int128, an imaginary constant, a
# statement with `goto` labels, and plain ones.
PREPARED = f'''#include "{OPS_H}"
__attribute__((noinline)) static int attr_head(int x) __asm__("attr_head_sym");
__attribute__((noinline)) static int attr_head(int x) {{
	__attribute__((unused)) int y = x;
	PV_VCALL0(cpu.io_delay);
	return y;
}}
void plain(void) {{ PV_VCALL0(cpu.io_delay); PV_VCALL0(irq.irq_disable); }}
void labels(void) {{ __label__ out; PV_VCALL0(cpu.io_delay); asm goto("" : : : : out); out: ; }}
void wide(void) {{ unsigned __int128 w = 0; (void)w; PV_VCALL0(cpu.io_delay); }}
void imaginary(void) {{ double _Complex z = 2.0i; (void)z; PV_VCALL0(cpu.io_delay); }}
'''


def test_prepared_parts_are_the_prepared_chunk_s(tmp):
    """ChunkParser.prepared_parts, which prepares a function's head and its
    new statements alone, gives what slicing the whole prepared function
    gives, for every function and statement of PREPARED (the rewrites'
    functions take the whole path; the others the sliced one)."""
    from pvpass.frontend.chunks import split
    from pvpass.frontend.cparse import ChunkParser
    src = tmp / "p.c"
    src.write_text(PREPARED)
    arch = get_arch("x86_64")
    pp = preprocess(str(src), arch, [f"-I{INCLUDE}"])
    tu = split(pp.text)
    parser = ChunkParser(pp, tu)
    checked = 0
    for chunk in tu.chunks:
        if not chunk.is_func or chunk.body < chunk.start:
            continue
        asm = parser.asm(chunk)
        ranges = [(chunk.start, chunk.body)] + [(a.off, a.end) for a in asm] + [(chunk.start, chunk.end)]
        whole = parser.prepared(chunk)
        assert parser.prepared_parts(chunk, ranges) == [whole[a - chunk.start:b - chunk.start] for a, b in ranges]
        checked += bool(asm)
    assert checked == 5


def test_lint_shares_a_header_statements_parse_with_the_next_tu(tmp, monkeypatch):
    """Lint's scan (`shared`) keeps the reduced functions' parses in the
    parse cache: a header inline's site statement met in one TU is not
    parsed again in the next, and reads as the unshared parse reads it."""
    from pvpass.frontend.gnuc import CParser
    calls = []
    real = CParser.parse
    monkeypatch.setattr(CParser, "parse", lambda self, text, *a, **k: calls.append(text) or real(self, text, *a, **k))
    (tmp / "h.h").write_text(f'#include "{OPS_H}"\n'
                             "static inline void hd(unsigned long x) { PV_VCALL1(irq.restore_fl, x + 7); }\n")
    arch = get_arch("x86_64")
    flags = [f"-I{INCLUDE}"]

    def scan(name: str, shared: bool):
        src = tmp / name
        src.write_text(f'#include "h.h"\nint {name[0]}(void) {{ return 1; }}\n')
        return scan_reported(preprocess(str(src), arch, flags), arch, flags, report=False,
                             compiled=True, shared=shared)
    first = scan("a.c", True)
    seen = len(calls)
    assert seen and any("x + 7" in c for c in calls)
    again = scan("b.c", True)
    assert len(calls) == seen                      # no parse: the cache's
    alone = scan("c.c", False)
    assert len(calls) == seen + 1                  # unshared: parsed again
    assert [s.site for s in first.sources] == [s.site for s in again.sources] == [s.site for s in alone.sources]
    assert [s.operand_exprs.keys() for s in again.sources] == [s.operand_exprs.keys() for s in alone.sources]
