"""The command reference cannot drift from the code: docs/commands.md has a
section per command whose option table lists exactly the options the
command's own parser takes (the parser `--help` and `pvpass help` print)."""
from __future__ import annotations

import re

import pytest

from pvpass import cli
from conftest import ROOT, run_pvpass

DOC = ROOT / "docs" / "commands.md"
SECTION = re.compile(r"^## `pvpass (\w+)`\s*$", re.M)
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def documented() -> dict[str, set[str]]:
    """command -> the options in the first cell of its section's table rows."""
    parts = re.split(r"^(## .*)$", DOC.read_text(), flags=re.M)     # [before, head, body, head, body...]
    out: dict[str, set[str]] = {}
    for head, body in zip(parts[1::2], parts[2::2]):
        if m := SECTION.match(head):
            out[m.group(1)] = {o for line in body.splitlines() if line.startswith("| `-")
                               for code in re.findall(r"`([^`]*)`", line.split(" | ")[0])
                               for o in OPTION.findall(code)}
    return out


def parsed(name: str) -> set[str]:
    """Every option string the command's parser takes, less -h/--help and
    hidden ones (an option refused with a reason, like cache's --arch)."""
    import argparse
    return {s for a in cli.parser_of(name)._actions
            if a.option_strings and a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
            for s in a.option_strings}


def test_every_command_has_a_section_and_every_section_a_command():
    docs, cmds = set(documented()), set(cli._COMMANDS)
    assert not cmds - docs, (f"{DOC.relative_to(ROOT)}: no section for command(s) {sorted(cmds - docs)}; "
                             "add '## `pvpass NAME`' with an option table")
    assert not docs - cmds, f"{DOC.relative_to(ROOT)}: section(s) for no command: {sorted(docs - cmds)}"


@pytest.mark.parametrize("name", sorted(cli._COMMANDS))
def test_options_match_the_parser_both_ways(name):
    doc, code = documented().get(name, set()), parsed(name)
    where = f"{DOC.relative_to(ROOT)}, section `pvpass {name}`"
    problems = [f"{where}: option {o} (in `pvpass help {name}`) is not documented: "
                f"add a row '| `{o}` | what it does |' to the section's table" for o in sorted(code - doc)]
    problems += [f"{where}: documents {o}, which `pvpass {name}` does not take (see `pvpass help {name}`): "
                 "remove the row or add the option" for o in sorted(doc - code)]
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_missing_and_an_extra_option(tmp_path, monkeypatch):
    """The comparison itself: a row taken out and a row for no option are both named."""
    text = DOC.read_text()
    gone = text.replace("| `--no-builtin` |", "| no builtin |", 1)
    gone = gone.replace("| `--werror` |", "| `--werror`, `--wall` |", 1)
    assert gone != text
    monkeypatch.setattr(DOC.__class__, "read_text", lambda self, *a, **k: gone)
    with pytest.raises(AssertionError, match=r"section `pvpass emit`: option --no-builtin .* is not documented"):
        test_options_match_the_parser_both_ways("emit")
    with pytest.raises(AssertionError, match=r"section `pvpass lint`: documents --wall, which"):
        test_options_match_the_parser_both_ways("lint")


@pytest.mark.parametrize("name", ["lint", "cc", "cache"])
def test_help_command_prints_what_dash_dash_help_prints(name):
    a, b = run_pvpass("help", name), run_pvpass(name, "--help")
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and a.stdout.startswith(f"usage: pvpass {name} ")
    assert all(o in a.stdout for o in parsed(name))


def pv(capsys, *args: str) -> tuple[int, str]:
    """pvpass in-process (no interpreter start-up per call): exit code, stderr."""
    capsys.readouterr()
    code = cli.main(list(args))
    return code, capsys.readouterr().err


def test_arch_is_checked_the_same_way_everywhere_and_refused_where_it_means_nothing(tmp_path, capsys):
    src = tmp_path / "x.c"
    src.write_text("int x;\n")
    takes = sorted(n for n in cli._COMMANDS if "--arch" in parsed(n))
    assert set(takes) == set(cli._COMMANDS) - {"cc", "cache", "ldscript"}
    for name in takes:
        code, err = pv(capsys, name, "--arch", "arm", str(src))
        assert code == 2, (name, err)
        assert err == (f"pvpass: error: pvpass {name}: argument --arch: unknown architecture 'arm' "
                       "(expected i386 or x86_64)\n"), err
    for name, why in (("ldscript", "the fragment is the same for i386 and x86_64"),
                      ("cache", "the caches hold both archs' entries"),
                      ("cc", "the compiler's flags (-m32/-m64) select the target")):
        code, err = pv(capsys, name, "--arch", "x86_64", "--", "gcc", "-c", str(src), "-o", str(tmp_path / "x.o"))
        assert code == 2 and err == f"pvpass: error: pvpass {name} takes no --arch: {why}\n", err
    assert not (tmp_path / "x.o").exists()


def test_table_refuses_an_object_of_the_other_arch(tmp_path, capsys):
    import subprocess
    obj = tmp_path / "x.o"
    subprocess.run(["gcc", "-m64", "-c", "-x", "c", "-", "-o", str(obj)], input=b"int x;\n", check=True)
    assert pv(capsys, "table", str(obj), "--arch", "amd64")[0] == 0
    code, err = pv(capsys, "table", str(obj), "--arch", "i386")
    assert code == 2 and err == f"pvpass: error: {obj}: an x86_64 object, not i386\n", err


def test_man_page_is_every_commands_help():
    r = run_pvpass("help", "--man")
    assert r.returncode == 0 and r.stdout.startswith(".TH PVPASS 1 "), r.stderr
    for name in cli._COMMANDS:
        section = r.stdout.split(f"\n.SS {name}\n.nf\n", 1)[1].split("\n.fi\n", 1)[0]
        assert section.replace("\\e", "\\") == cli.parser_of(name).format_help().rstrip("\n")
