"""Generated sources for the kept-sites property test: N sites of several
shapes (pvpass.h's macros, and hand-written sites whose call takes an "m"
operand, where gcc chooses the address form) spread over functions, some
in loops and in static inline helpers that gcc copies where it inlines."""
from __future__ import annotations

import random

OPS = 6


def source(seed: int, n: int) -> str:
    rnd = random.Random(seed)
    out = ["struct pv_ops_t {"]
    out += [f"\tunsigned long (*op{i})(unsigned long);" for i in range(OPS)]
    out += ["};", "struct pv_ops_t pv_ops;", "#define PVPASS_OPS pv_ops", "#include <pvpass.h>",
            "#ifdef __x86_64__",
            '#define HAND(op) __asm__ __volatile__(PVPASS_RZ_SKIP PVPASS_SITE(op, "rax") PVPASS_CALL '
            'PVPASS_RZ_END : : [pv_op] "m" (pv_ops.op) PVPASS_RZ_FRAME : "rax", "memory", "cc")',
            "#else",
            '#define HAND(op) __asm__ __volatile__(PVPASS_SITE(op, "eax") "pushl %%ecx; pushl %%edx; " '
            'PVPASS_CALL "; popl %%edx; popl %%ecx" : : [pv_op] "m" (pv_ops.op) : "eax", "memory", "cc")',
            "#endif", "unsigned long sink;"]
    shapes = ["PV_VCALL1(op{o}, x);", "x += PV_CALL1(unsigned long, op{o}, x);", "PV_VCALLEE0(op{o});",
              "HAND(op{o});"]
    helpers = []
    left, f = n, 0
    while left > 0:
        k = min(left, rnd.randint(1, 4))
        left -= k
        body = [rnd.choice(shapes).format(o=rnd.randrange(OPS)) for _ in range(k)]
        name = f"f{f}"
        if rnd.random() < 0.3:
            helpers.append(name)
            out.append(f"static inline unsigned long {name}(unsigned long x)\n{{")
        else:
            out.append(f"unsigned long {name}(unsigned long x)\n{{")
        if rnd.random() < 0.5:
            out.append(f"\tfor (int i = 0; i < (int)x; i++) {{\n\t\t{' '.join(body)}\n\t\tsink += i;\n\t}}")
        else:
            out.append("\t" + "\n\t".join(body))
        if helpers and helpers[-1] != name and rnd.random() < 0.6:
            out.append(f"\tx += {rnd.choice(helpers)}(x);")
        out.append("\treturn x;\n}")
        f += 1
    for h in helpers:                 # each helper used (copied) at least twice
        out.append(f"unsigned long use_{h}(unsigned long x) {{ return {h}(x) + {h}(x + 1); }}")
    return "\n".join(out) + "\n"
