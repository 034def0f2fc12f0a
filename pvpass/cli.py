"""The command line: argument parsing, dispatch, exit codes. Each subcommand
is a thin shell over a pure pipeline stage."""
from __future__ import annotations

import argparse
import sys

from . import __version__
from .arch import get_arch
from .diag import EXIT_BAD_INPUT, EXIT_OK, PvError, emit

_COMMANDS: dict[str, tuple] = {}


def command(name: str, help: str):
    def deco(fn):
        _COMMANDS[name] = (fn, help)
        return fn
    return deco


def split_cppflags(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise PvError(f"{self.prog}: {message}")


def _base(name: str, help: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"pvpass {name}", description=help)
    p.add_argument("--arch", default=None, help="i386 or x86_64 (default: the host's)")
    return p


@command("scan", "site inventory of one C source as JSON")
def cmd_scan(argv: list[str]) -> int:
    from .frontend.scan import scan
    from .jsonout import dumps, inventory_json
    args, cpp = split_cppflags(argv)
    p = _base("scan", "site inventory of one C source as JSON")
    p.add_argument("source")
    p.add_argument("-o", "--output", help="write the JSON here (atomically)")
    a = p.parse_args(args)
    res = scan(a.source, get_arch(a.arch), cpp)
    out = dumps(inventory_json(res.inventory))
    return write_output(a.output, out)


def write_output(path: str | None, text: str) -> int:
    if path:
        from .atomicio import write_atomic
        write_atomic(path, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _usage() -> str:
    lines = [f"usage: pvpass [--version|--include-dir] COMMAND [ARGS] [-- CPPFLAGS]", "", "commands:"]
    for name, (_, help) in sorted(_COMMANDS.items()):
        lines.append(f"  {name:<9} {help}")
    return "\n".join(lines)


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
    name = argv[0]
    if name not in _COMMANDS:
        raise PvError(f"unknown command '{name}'\n{_usage()}")
    return _COMMANDS[name][0](argv[1:])
