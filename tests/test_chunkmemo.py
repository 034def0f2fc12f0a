"""Chunk facts kept across a process's TUs (pvpass/frontend/chunkmemo.py):
a fact met again in another TU, at another offset or after other text, is
what computing it afresh gives."""
from __future__ import annotations

from pvpass.frontend import chunkmemo
from pvpass.frontend.asmstmt import _find_asm, _moved, find_asm
from pvpass.frontend.chunks import Chunk
from pvpass.lint.reach import _IDENT, mentions

ASM = ('static inline void f(void) { asm volatile("call *%c[op] # pvpass: site" : "=a"(r), [x] "+r"(y) '
       ': [op] "i"(&ops.f), "m"(z) : "memory", "cc" : lbl); }')


def _view(a):
    """An asm statement's fields, its template map as offsets (a moved
    statement shares the map and moves its base)."""
    return (a.off, a.end, a.qualifiers, a.template, [a.template_off(i) for i in range(len(a.tmap))],
            a.outputs, a.inputs, a.clobbers, a.labels, a.basic, a.blanks)


def test_asm_statements_move_with_their_chunk():
    chunkmemo._memo.clear()
    for before in ("int a;\n", "struct s { int b; };\n\n", ""):
        text = before + ASM + "\nint c;\n"
        start, end = len(before), len(before) + len(ASM)
        got = find_asm(text, start, end, None)
        assert [_view(a) for a in got] == [_view(_moved(a, d)) for a, d in _find_asm(text, start, end, None)]
        assert got[0].off == text.index("asm") and got[0].outputs[1].name == "x"
    kinds = [k for k, _ in chunkmemo._memo]   # the text after a ';' or '\n' is met again,
    assert sorted(kinds) == ["asm0", "asm1", "asmstmt"]   # and its statement in each


def test_mentions_are_where_the_name_regex_reads_the_name():
    """reach.mentions (str.find) finds a name where `_IDENT` reads it: not
    inside a longer word, not a member after `.` or `->`."""
    text = "abc = s.abc + p->abc + xabc + abc_1 + 1abc + - >abc + f(abc);\nabc"
    want = [m.start() for m in _IDENT.finditer(text) if m.group() == "abc"]
    assert list(mentions(text, "abc")) == want and len(want) == 4


def test_the_struct_object_is_the_one_the_regex_finds():
    """sites._object_of (str.find) names the object `\\bstruct\\s+TAG\\s+NAME\\s*[;=\\[]` finds."""
    import re
    from pvpass.frontend.sites import _object_of
    for text in ("struct ops x(void); xstruct ops a; struct opsy b; struct  ops\n c [2];",
                 "mystruct ops a; struct ops\tb = {0};", "struct ops *p; struct ops q;", "struct ops"):
        m = re.search(r"\bstruct\s+ops\s+([A-Za-z_]\w*)\s*[;=\[]", text)
        assert _object_of(text, "ops") == (m.group(1) if m else None), text


def test_a_split_by_stretches_is_the_split_of_the_whole_text():
    """chunks.split reads the text from line marker to line marker and
    keeps each stretch's chunks: every prefix of these texts, met after
    others that share their headers, splits as the whole text does (line
    markers inside a struct and between a function's head and body, a
    literal holding a brace or a ';', a directive-only tail, a stray '}',
    a '{' never closed, text after the last ';')."""
    from pvpass.frontend.chunks import _split, split
    head = ('# 1 "h.h"\ntypedef int t;\nstruct s {\n# 3 "h.h"\n int a;\n# 5 "h.h"\n};\n'
            'static inline int f(void)\n# 7 "h.h"\n{ return \'}\'; }\n')
    texts = [head + '# 1 "a.c"\nint x;\n# 2 "a.c"\n', head + '# 1 "b.c"\nint y = f();\nint g(void) {',
             head + '# 1 "c.c"\n}\nint z', '#pragma x\nchar *p = "a;{b" ;\n# 2 "d.c"\nchar c = \'{\';']
    chunkmemo._memo.clear()
    for text in texts + texts:
        for cut in range(len(text) + 1):
            want, got = _split(text[:cut]), split(text[:cut])
            assert (got.chunks, got.broken) == (want.chunks, want.broken), text[:cut]


def test_literal_runs_split_as_literals_one_by_one(monkeypatch):
    """chunks._split blanks a run of adjacent string literals as one match:
    the chunks are those of blanking each literal alone (the blanks and
    tabs between them read alike), directive lines and char literals among
    them included."""
    import random
    import re
    from pvpass.frontend import chunks
    one_by_one = re.compile(r'''"[^"\\\n]*(?:\\.[^"\\\n]*)*"|'[^'\\\n]*(?:\\.[^'\\\n]*)*'|\n[ \t]*\#[^\n]*''')
    rnd = random.Random(15)
    alphabet = ['"a"', '"b\\"c;"', '"{"', ' ', '\t', '\n', '\n# 1 "f.c"\n', '{', '}', ';', ')', '(',
                "'x'", "'}'", '"', "'", 'x', '\\', '#']
    for _ in range(5000):
        t = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
        got = chunks._split(t)
        with monkeypatch.context() as m:
            m.setattr(chunks, "_LITERAL", one_by_one)
            want = chunks._split(t)
        assert (got.chunks, got.broken) == (want.chunks, want.broken), repr(t)
