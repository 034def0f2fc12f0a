"""The command line: argument parsing, dispatch, exit codes. Each subcommand
is a thin shell over a pure pipeline stage."""
from __future__ import annotations

import sys

from . import __version__
from .arch import get_arch
from .errors import EXIT_BAD_INPUT, EXIT_OK, PvError

# name -> (run(argv) -> exit code, parser() -> ArgumentParser, one-line help).
# The parser is the one source of a command's options: the command parses
# with it, `--help` and `pvpass help COMMAND` print it, and tests/test_docs.py
# holds docs/commands.md to it.
_COMMANDS: dict[str, tuple] = {}


def emit(d) -> None:
    """diag.emit, imported when something is said (`pvpass cc` mostly says nothing)."""
    from .diag import emit as _emit
    _emit(d)


def command(name: str, help: str, parser):
    def deco(fn):
        _COMMANDS[name] = (fn, parser, help)
        return fn
    return deco


def parser_of(name: str) -> argparse.ArgumentParser:
    return _COMMANDS[name][1]()


def split_cppflags(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _Parser(**kw) -> argparse.ArgumentParser:
    """An ArgumentParser whose errors are PvErrors; argparse is imported here
    so that `pvpass cc`, which parses nothing, does not pay for it."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):
            raise PvError(f"{self.prog}: {message}")
    return Parser(**kw)


def _arch_name(name: str) -> str:
    """--arch's type: the canonical name of any accepted spelling, so every
    command refuses an unknown one the same way, before doing anything."""
    import argparse
    try:
        return get_arch(name).name
    except PvError as e:
        raise argparse.ArgumentTypeError(e.message) from None


# What --arch means depends only on what the command reads.
ARCH_SOURCE = "target: i386 or x86_64 (or x86-64, amd64, x86, ia32); default: the host's"
ARCH_OBJECT = ("i386 or x86_64 (or x86-64, amd64, x86, ia32): refuse a file of the other arch; "
               "default: the file's own")


def _base(name: str, help: str, arch: str = ARCH_SOURCE) -> argparse.ArgumentParser:
    p = _Parser(prog=f"pvpass {name}", description=help)
    p.add_argument("--arch", type=_arch_name, default=None, metavar="ARCH", help=arch)
    return p


def _no_arch(p: argparse.ArgumentParser, why: str) -> argparse.ArgumentParser:
    """A command for which --arch means nothing refuses it, saying why
    (hidden from --help: it is not an option of the command)."""
    import argparse

    class Refuse(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            raise PvError(f"{parser.prog} takes no --arch: {why}")
    p.add_argument("--arch", action=Refuse, help=argparse.SUPPRESS)
    return p


def _source_parser(name: str, help: str, formats: tuple[str, ...]) -> argparse.ArgumentParser:
    """The shape scan and emit share: one source, a format, an output."""
    p = _base(name, help)
    p.add_argument("source")
    p.add_argument("--format", choices=formats, default=formats[0])
    p.add_argument("-o", "--output", help="write here (atomically) instead of stdout")
    return p


SCAN_HELP = "site inventory of one C source as JSON or text"


def _scan_parser():
    return _source_parser("scan", SCAN_HELP, ("json", "text"))


@command("scan", SCAN_HELP, _scan_parser)
def cmd_scan(argv: list[str]) -> int:
    from .frontend.scan import scan
    from .jsonout import dumps, inventory_json
    args, cpp = split_cppflags(argv)
    a = _scan_parser().parse_args(args)
    _check_output("scan", a.output, [a.source])
    res = scan(a.source, get_arch(a.arch), cpp)
    if a.format == "text":
        from .jsonout import inventory_text
        out = inventory_text(res.inventory)
    else:
        out = dumps(inventory_json(res.inventory))
    return write_output(a.output, out)


EMIT_HELP = "table and stubs of one C source as asm, C, a C header, or JSON"


def _emit_parser():
    p = _source_parser("emit", EMIT_HELP, ("asm", "c", "h", "json"))
    p.add_argument("--nops", choices=("p6", "k8", "generic"), default="p6",
                   help="NOP table for padding (default: p6)")
    p.add_argument("--no-builtin", action="store_true",
                   help="only the source's own backends, not native and c-calls")
    return p


@command("emit", EMIT_HELP, _emit_parser)
def cmd_emit(argv: list[str]) -> int:
    from .diag import EXIT_FINDINGS
    from .emit.plan import make_plan
    from .emit.render import render_asm, render_c, render_h, render_json
    from .frontend.scan import scan
    from .jsonout import dumps
    args, cpp = split_cppflags(argv)
    a = _emit_parser().parse_args(args)
    _check_output("emit", a.output, [a.source])
    arch = get_arch(a.arch)
    res = scan(a.source, arch, cpp)
    plan = make_plan(arch, res.inventory, a.nops, builtin=not a.no_builtin)
    for d in plan.diagnostics:
        emit(d)
    if any(d.level == "error" for d in plan.diagnostics):
        return EXIT_FINDINGS
    text = {"asm": render_asm, "c": render_c, "h": render_h,
            "json": lambda pl: dumps(render_json(pl))}[a.format](plan)
    return write_output(a.output, text)


VERIFY_HELP = "prove by emulation every patch an object or program holds"


def _verify_parser():
    p = _base("verify", VERIFY_HELP, ARCH_OBJECT + " (a C source: the target, default the host's)")
    p.add_argument("file", help="an object or program (or a C source: built with gcc and linked first)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--backend", help="only this backend's patches")
    g.add_argument("--all", action="store_true", help="every backend the file has records for (default)")
    p.add_argument("--states", type=int, default=32, help="random start states per (site copy, backend)")
    p.add_argument("--seed", default="pvpass", help="seed of the start states")
    p.add_argument("--map", action="append", default=[], metavar="FILE@ADDR",
                   help="raw code the program maps at run time (a ROM), at ADDR; repeatable")
    p.add_argument("--source", metavar="SRC.c",
                   help="the object's source: each inline patch is held against its backend's declared text "
                        "(GNU as, ld) and each patch against the function its backend names for the op")
    _module_options(p)
    return p


def _check_module_options(prog: str, a) -> None:
    if a.kernel and a.source is not None:
        raise PvError(f"{prog}: --kernel is for a module, --source for an object of pvpass's own; not both")
    if getattr(a, "load_address", None) and not a.kernel:
        raise PvError(f"{prog}: --load-address places a module's sections: give --kernel VMLINUX too")


def _module_options(p: argparse.ArgumentParser, load: bool = True) -> None:
    p.add_argument("--kernel", metavar="VMLINUX",
                   help="the kernel image a module (.ko) is loaded into: its pv_ops, functions and NOPs")
    if load:
        p.add_argument("--load-address", action="append", default=[], metavar="SECTION=ADDR",
                       help="where the kernel loaded a module's section (/sys/module/NAME/sections/SECTION); "
                            "repeatable (default: a layout past the image)")


@command("verify", VERIFY_HELP, _verify_parser)
def cmd_verify(argv: list[str]) -> int:
    from .diag import EXIT_FINDINGS
    from .verify.build import build_for_verify, is_elf
    from .verify.declared import declarations, elf_arch
    from .verify.run import verify
    args, cpp = split_cppflags(argv)
    a = _verify_parser().parse_args(args)
    if a.states < 1:
        raise PvError("pvpass verify: --states takes a positive number")
    maps = [_file_at(m) for m in a.map]
    from .atomicio import guard
    with guard():            # a signal removes the temporary build directory
        return _verify(a, cpp, maps)


def _verify(a, cpp: list[str], maps) -> int:
    from .diag import EXIT_FINDINGS
    from .verify.build import build_for_verify, is_elf
    from .verify.declared import declarations, elf_arch
    from .verify.run import verify
    if is_elf(a.file):
        if cpp and not a.source:
            raise PvError("pvpass verify: preprocessor flags are for a C source (--source), not an object")
        _check_module_options("pvpass verify", a)
        kernel = _kernel_verify(a) if not a.source else None
        if kernel is not None:
            return kernel
        decl = declarations(a.source, get_arch(a.arch or elf_arch(a.file)), cpp) if a.source else None
        rep = verify(a.file, a.backend, a.seed, a.states, a.arch, maps, decl)
    elif not a.file.endswith((".c", ".i")):
        import os
        what = "an empty file" if os.path.getsize(a.file) == 0 else "not an ELF file"
        raise PvError(f"{a.file}: {what}: verify takes an object, a program or a C source (.c)")
    else:
        if a.source:
            raise PvError("pvpass verify: --source is for an object; a C source is its own")
        with build_for_verify(a.file, get_arch(a.arch), cpp) as obj:
            if obj is None:
                return EXIT_FINDINGS
            rep = verify(obj, a.backend, a.seed, a.states, maps=maps,
                         declared=declarations(a.file, get_arch(a.arch), cpp))
    for line in rep.notes + rep.lines:
        print(line, file=sys.stderr)
    print(rep.summary())
    return EXIT_FINDINGS if rep.failed else EXIT_OK


def _kernel_verify(a) -> int | None:
    """verify on a kernel image: its sites as the kernel patches them at
    boot, proved against the image's own code; None for any other file."""
    from .diag import EXIT_FINDINGS
    from .kernel.image import kernel_image
    from .link.tableread import read_checked
    obj = read_checked(a.file)
    if a.kernel:
        from .kernel.module import open_module, parse_addresses
        img = open_module(obj, a.kernel, parse_addresses(a.load_address))
    else:
        img = kernel_image(obj)
        if img is None:
            return None
    from .kernel.verify import verify_image
    rep, summary = verify_image(img, a.backend or "native", a.seed, a.states)
    for line in rep.lines:
        print(line, file=sys.stderr)
    print(summary)
    return EXIT_FINDINGS if rep.failed or rep.not_emulated else EXIT_OK


def _file_at(spec: str) -> tuple[str, int]:
    path, _, addr = spec.rpartition("@")
    try:
        if path:
            return path, int(addr, 0)
    except ValueError:
        pass
    raise PvError(f"pvpass verify: --map takes FILE@ADDR (ADDR like 0x50000000), not '{spec}'")


def _object_parser(name: str, help: str, backend: bool = True, kernel: bool = False) -> argparse.ArgumentParser:
    """The shape link, patch and show share: an object, the source it was
    built from (scanned for the object's arch), preprocessor flags."""
    p = _base(name, help, ARCH_OBJECT)
    p.add_argument("object")
    p.add_argument("--source", required=not kernel,
                   help="the C source the object was built from" + (" (none for a kernel image: "
                        "its own pv_ops, records and NOPs are read)" if kernel else ""))
    if backend:
        p.add_argument("--backend", required=True)
    if kernel:
        _module_options(p, load=name != "patch")
    return p


def _check_arch(path: str, have: str, want: str | None) -> None:
    if want and want != have:
        raise PvError(f"{path}: an {have} object, not {want}")


def _object_and_scan(p: argparse.ArgumentParser, argv: list[str], kernel: bool = False):
    from .frontend.scan import scan
    from .link.tableread import read_checked
    args, cpp = split_cppflags(argv)
    a = p.parse_args(args)
    _check_output(p.prog.split()[-1], getattr(a, "output", None), [a.object, a.source])
    obj = read_checked(a.object)
    _check_arch(a.object, obj.arch.name, a.arch)
    if kernel:
        _check_module_options(p.prog, a)
    if kernel and a.source is None:
        from .kernel.image import kernel_image
        from .kernel.module import is_module
        if a.kernel:
            if cpp:
                raise PvError(f"{p.prog}: preprocessor flags are for --source, not a kernel module")
            from .kernel.module import open_module, parse_addresses
            return a, open_module(obj, a.kernel, parse_addresses(getattr(a, "load_address", []))), None
        if kernel_image(obj) is None:
            raise PvError(f"{p.prog}: {a.object} is not a kernel image (no .parainstructions "
                          f"and pv_ops): give --source" + (", or --kernel VMLINUX for a kernel module"
                                                           if is_module(obj) else ""))
        if cpp:
            raise PvError(f"{p.prog}: preprocessor flags are for --source, not a kernel image")
        return a, obj, None
    return a, obj, scan(a.source, obj.arch, cpp)


PATCH_HELP = "apply one backend's patches to a linked object ahead of time"


def _patch_parser():
    p = _object_parser("patch", PATCH_HELP, kernel=True)
    p.add_argument("-o", "--output", required=True)
    return p


@command("patch", PATCH_HELP, _patch_parser)
def cmd_patch(argv: list[str]) -> int:
    from .atomicio import write_output
    from .patch.aot import patch_object
    a, obj, res = _object_and_scan(_patch_parser(), argv, kernel=True)
    if res is None and a.kernel:
        from .kernel.aot import patch_module
        data = patch_module(obj, a.backend)
    elif res is None:
        from .kernel.aot import patch_bytes
        data = patch_bytes(obj, a.backend)
    else:
        data = patch_object(obj, res, a.backend)
    write_output(a.output, data, mode=0o644)
    return EXIT_OK


SHOW_HELP = "each site copy of an object before and after one backend's patch"


def _show_parser():
    return _object_parser("show", SHOW_HELP, kernel=True)


@command("show", SHOW_HELP, _show_parser)
def cmd_show(argv: list[str]) -> int:
    from .patch.aot import show
    a, obj, res = _object_and_scan(_show_parser(), argv, kernel=True)
    if res is None and a.kernel:
        from .kernel.aot import show_image
        sys.stdout.write(show_image(obj, a.backend))
    elif res is None:
        from .kernel.aot import show as show_kernel
        sys.stdout.write(show_kernel(obj, a.backend))
    else:
        sys.stdout.write(show(obj, res, a.backend))
    return EXIT_OK


LINK_HELP = "merge the table and stubs into a compiled object"


def _link_parser():
    p = _object_parser("link", LINK_HELP, backend=False)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--builtin", action="store_true",
                   help="also record patches for the built-in c-calls backend")
    return p


@command("link", LINK_HELP, _link_parser)
def cmd_link(argv: list[str]) -> int:
    from .atomicio import write_output
    from .link.step import link_object
    a, obj, res = _object_and_scan(_link_parser(), argv)
    result = link_object(obj, res, a.builtin)
    write_output(a.output, result.data, mode=0o644)
    return EXIT_OK


BENCH_HELP = "TSC ticks per call of each site convention and patch, and each caller's cost"


def _bench_parser():
    p = _Parser(prog="pvpass bench", description="build a harness with gcc on this CPU and measure "
                "each site convention and patch (TSC ticks per call) and the caller-side cost of "
                "each convention")
    p.add_argument("--arch", type=_arch_name, default=None, metavar="ARCH",
                   help="measure only this arch: i386 or x86_64 (or x86-64, amd64, x86, ia32); default: both")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text")
    p.add_argument("--runs", type=int, default=11, help="timed runs per row (default: 11)")
    p.add_argument("--calls", type=int, default=1_000_000, help="calls per run (default: 10^6)")
    p.add_argument("--out", metavar="DIR", help="also write bench.{txt,json,csv,png,svg} here")
    return p


@command("bench", BENCH_HELP, _bench_parser)
def cmd_bench(argv: list[str]) -> int:
    from pathlib import Path
    from .bench.run import bench, render, write_outputs
    a = _bench_parser().parse_args(argv)
    if a.runs < 1 or a.calls < 12:
        raise PvError("pvpass bench: --runs must be at least 1 and --calls at least 12")
    archs = (a.arch,) if a.arch else ("x86_64", "i386")
    if a.out:
        from .bench.plot import require
        require()
    res = bench(archs, a.runs, a.calls)
    if a.out:
        write_outputs(res, Path(a.out))
    sys.stdout.write(render(res, a.format))
    return EXIT_OK


TABLE_HELP = "dump the patch-site table of an object or program"


def _table_parser():
    p = _base("table", TABLE_HELP, ARCH_OBJECT)
    p.add_argument("object")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--source", help="name ops from this source's ops struct")
    return p


@command("table", TABLE_HELP, _table_parser)
def cmd_table(argv: list[str]) -> int:
    from .link.dump import dump_json, dump_text
    from .jsonout import dumps
    args, cpp = split_cppflags(argv)
    a = _table_parser().parse_args(args)
    d = dump_json(a.object, a.source, cpp)
    _check_arch(a.object, d["arch"], a.arch)
    sys.stdout.write(dumps(d) if a.format == "json" else dump_text(a.object, d))
    return EXIT_OK


CC_HELP = "drop-in compiler: compile, then check or link each object"


def _cc_parser():
    """For help and the docs only: `pvpass cc` reads its one option itself
    (driver._records_option) and hands the rest to the compiler untouched."""
    import argparse
    p = _Parser(prog="pvpass cc", usage="pvpass cc [--records B,...] -- COMPILER ARGS...",
                description=CC_HELP + "; the target is the one the compiler's flags (-m32/-m64) select")
    p.add_argument("--records", metavar="B,...",
                   help="backends whose patch records to add to kernel-dialect objects (also PVPASS_RECORDS)")
    p.add_argument("compiler", nargs=argparse.REMAINDER, help="the compiler command, after --")
    return _no_arch(p, "the compiler's flags (-m32/-m64) select the target")


@command("cc", CC_HELP, _cc_parser)
def cmd_cc(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        _cc_parser().print_help()
        return EXIT_OK
    if argv and argv[0].split("=")[0] == "--arch":
        _cc_parser().parse_args(argv[:1] + ["x86_64"])     # the one refusal message
    from .driver import run_cc
    return run_cc(argv)


CACHE_HELP = "the build path's caches: statistics, or clear them"


def _cache_parser():
    p = _Parser(prog="pvpass cache", description="the build path's caches (PVPASS_CACHE_DIR)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--stats", action="store_true", help="entries, size, hits and misses")
    g.add_argument("--clear", action="store_true", help="remove every entry")
    return _no_arch(p, "the caches hold both archs' entries")


@command("cache", CACHE_HELP, _cache_parser)
def cmd_cache(argv: list[str]) -> int:
    from .buildcache import cache_root, clear, stats
    a = _cache_parser().parse_args(argv)
    root = cache_root()
    if root is None:
        print("pvpass cache: off (PVPASS_CACHE=0)")
        return EXIT_OK
    if a.clear:
        clear(root)
        return EXIT_OK
    for k, v in stats(root).items():
        print(f"{k:<15} {v}")
    return EXIT_OK


LDSCRIPT_HELP = "print the linker-script fragment for the final link"


def _ldscript_parser():
    p = _Parser(prog="pvpass ldscript", description=LDSCRIPT_HELP)
    p.add_argument("--path", action="store_true", help="print its path instead")
    p.add_argument("--records", action="store_true",
                   help="only the patch records (the program's script places .parainstructions)")
    return _no_arch(p, "the fragment is the same for i386 and x86_64")


@command("ldscript", LDSCRIPT_HELP, _ldscript_parser)
def cmd_ldscript(argv: list[str]) -> int:
    from importlib import resources
    a = _ldscript_parser().parse_args(argv)
    f = resources.files("pvpass") / "runtime" / ("pvpass-records.ld" if a.records else "pvpass.ld")
    sys.stdout.write(f"{f}\n" if a.path else f.read_text())
    return EXIT_OK


LINT_HELP = "check annotations: gcc-style, JSON or SARIF diagnostics"


def _lint_parser():
    p = _base("lint", LINT_HELP)
    p.add_argument("paths", nargs="*", help="files, or directories (every .c below)")
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    p.add_argument("-j", "--jobs", type=int, default=1)
    p.add_argument("-p", dest="build_dir", help="take flags from BUILD_DIR/compile_commands.json")
    p.add_argument("--no-gate", dest="gate", action="store_false",
                   help="under -p, lint every TU in full, even one whose up-to-date object shows "
                        "nothing to lint")
    p.add_argument("--werror", action="store_true", help="treat warnings as errors")
    p.add_argument("--ops", action="append", default=[], help="also check calls through this ops object")
    p.add_argument("--explain", metavar="PVnnn", help="print a rule's documentation")
    p.add_argument("-o", "--output", help="write the report here (atomically)")
    return p


@command("lint", LINT_HELP, _lint_parser)
def cmd_lint(argv: list[str]) -> int:
    from .lint import runner
    from .lint.rules import explain
    args, cpp = split_cppflags(argv)
    a = _lint_parser().parse_args(args)
    if a.explain:
        text = explain(a.explain)
        if not text:
            raise PvError(f"no rule {a.explain} (rules: PV001..PV010)")
        sys.stdout.write(text)
        return EXIT_OK
    if not a.paths and not a.build_dir:
        raise PvError("pvpass lint: give files or directories, or -p BUILD_DIR")
    if a.jobs < 1:
        raise PvError("pvpass lint: -j takes a positive number")
    _check_output("lint", a.output, a.paths)
    results = runner.run(a.paths, a.arch, cpp, a.jobs, a.build_dir, a.ops, a.gate)
    if not results:
        raise PvError("pvpass lint: no C files found")
    _check_output("lint", a.output, [r.path for r in results])    # the files found below a directory
    diags, code = runner.finish(results, a.werror)
    if a.format == "text":
        report = runner.render_text(diags, len(results), sum(r.gated for r in results))
        if a.output:
            write_output(a.output, report)
        else:
            sys.stderr.write(report)
    else:
        report = runner.render_json(diags) if a.format == "json" else runner.render_sarif(diags)
        write_output(a.output, report)
    return code


def _check_output(cmd: str, path: str | None, inputs: list[str]) -> None:
    if path:
        from .atomicio import check_output
        check_output(f"pvpass {cmd}", path, inputs)


def write_output(path: str | None, text: str) -> int:
    if path:
        from . import atomicio
        atomicio.write_output(path, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _usage() -> str:
    lines = ["usage: pvpass [--version|--include-dir|--runtime-dir] COMMAND [ARGS] [-- CPPFLAGS]",
             "       pvpass help COMMAND      (the same as pvpass COMMAND --help)",
             "       pvpass help --man        (all of it as a man page: pvpass help --man | man -l -)",
             "", "commands:"]
    for name, (_, _, help) in sorted(_COMMANDS.items()):
        lines.append(f"  {name:<9} {help}")
    return "\n".join(lines)


def man_page() -> str:
    """`pvpass help --man`: a man page (troff) made of every command's
    --help text, so it says what the parsers take and nothing else."""
    def lit(text: str) -> list[str]:        # troff: a backslash is \e; a line may not start with . or '
        return [("\\&" if ln.startswith((".", "'")) else "") + ln.replace("\\", "\\e") for ln in text.splitlines()]
    out = [f'.TH PVPASS 1 "" "pvpass {__version__}"', ".SH NAME",
           "pvpass \\- find, check, table and patch paravirt-ops call sites in C builds",
           ".SH SYNOPSIS", ".nf", *lit(_usage()), ".fi", ".SH COMMANDS"]
    for name in sorted(_COMMANDS):
        out += [f".SS {name}", ".nf", *lit(parser_of(name).format_help()), ".fi"]
    return "\n".join(out) + "\n"


def command_help(name: str) -> str:
    """`pvpass help COMMAND`: the command's --help text, from its parser."""
    if name not in _COMMANDS:
        raise PvError(f"unknown command '{name}'\n{_usage()}")
    return parser_of(name).format_help()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except PvError as e:
        report_error(e)
        return e.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


def report_error(e: PvError) -> None:
    if e.loc is None:
        import re
        if re.match(r'^[^:\s]+:\d+(:\d+)?: ', e.message):
            print(e.message, file=sys.stderr)      # already gcc-formatted
        else:
            print(f"pvpass: error: {e.message}", file=sys.stderr)
        return
    emit(e.diagnostic())


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["help"] and len(argv) == 2:
        sys.stdout.write(man_page() if argv[1] == "--man" else command_help(argv[1]))
        return EXIT_OK
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return EXIT_OK if argv else EXIT_BAD_INPUT
    if argv[0] == "--version":
        print(f"pvpass {__version__}")
        return EXIT_OK
    if argv[0] == "--include-dir":
        from .frontend.preprocess import include_dir
        print(include_dir())
        return EXIT_OK
    if argv[0] == "--runtime-dir":
        from importlib import resources
        print(resources.files("pvpass") / "runtime")
        return EXIT_OK
    name = argv[0]
    if name == "cc":          # everything after `cc` belongs to the compiler
        return _COMMANDS[name][0](argv[1:])
    if name not in _COMMANDS:
        raise PvError(f"unknown command '{name}'\n{_usage()}")
    return _COMMANDS[name][0](argv[1:])
