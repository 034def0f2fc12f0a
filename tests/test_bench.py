"""`pvpass bench` runs briefly (3 runs x 1000 calls, both arches): the shape
of its output, not its timings. Site lengths are checked against GNU as, and
the caller counts against the harness's own source (three sites a loop)."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from elftools.elf.elffile import ELFFile
from PIL import Image

from conftest import run_pvpass

ARCHS = ("x86_64", "i386")
CONVS = {"x86_64": ("cc", "callee-save"), "i386": ("cc", "callee-save", "eax-clobber")}
OPS = ("save_fl", "io_delay", "caller")
PATCHES = ("indirect-c", "indirect-cs", "direct-c", "trampoline-c", "saves-c", "direct-cs", "inline", "nop")

_NUM = {"type": "number", "exclusiveMinimum": 0}
_STATS = {k: {"anyOf": [_NUM, {"type": "null"}]} for k in ("median", "q1", "q3", "min", "max")}
SCHEMA = {
    "type": "object",
    "required": ["schema", "tool", "kind", "unit", "runs", "calls", "cpu", "gcc", "cflags",
                 "load_before", "load_after", "ticks_per_cycle", "rows", "callers"],
    "properties": {
        "schema": {"const": 1}, "tool": {"const": "pvpass"}, "kind": {"const": "bench"},
        "runs": {"const": 3}, "calls": {"const": 1000},
        "load_before": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
        "ticks_per_cycle": {"type": "object", "required": list(ARCHS),
                            "additionalProperties": {"type": "object", "required": ["median"],
                                                     "properties": {"median": _NUM}}},
        "rows": {"type": "array", "items": {
            "type": "object",
            "required": ["arch", "convention", "op", "patch", "site_len", "runs", "note",
                         "discarded", "dirty", *_STATS],
            "properties": {
                "arch": {"enum": list(ARCHS)},
                "convention": {"enum": ["none", "cc", "callee-save", "eax-clobber"]},
                "op": {"enum": list(OPS)},
                "patch": {"enum": ["bare", *PATCHES]},
                "site_len": {"anyOf": [{"type": "integer", "minimum": 5}, {"type": "null"}]},
                "runs": {"type": "array", "items": _NUM},
                "note": {"type": "string"},
                "discarded": {"type": "integer", "minimum": 0},
                "dirty": {"type": "integer", "minimum": 0},
                **_STATS}}},
        "callers": {"type": "array", "items": {
            "type": "object",
            "required": ["arch", "convention", "bytes", "insns", "saved_regs", "loop_insns",
                         "loop_stack_loads", "loop_stack_stores", "loop_push", "loop_pop"],
            "properties": {k: {"type": "integer", "minimum": 0}
                           for k in ("saved_regs", "loop_stack_loads", "loop_stack_stores",
                                     "loop_push", "loop_pop")}}},
    },
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    r = run_pvpass("bench", "--runs", "3", "--calls", "1000", "--format", "csv", "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def _as_len(arch: str, text: str, tmp) -> int:
    """Length of a site's template as GNU as encodes it (no pvpass model)."""
    obj = tmp / "site.o"
    subprocess.run(["as", "--32" if arch == "i386" else "--64", "-o", str(obj)],
                   input=f".text\n{text}\n", check=True, capture_output=True, text=True)
    with open(obj, "rb") as f:
        return ELFFile(f).get_section_by_name(".text").data_size


def test_every_row_and_number(bench):
    out, _ = bench
    doc = json.loads((out / "bench.json").read_text())
    jsonschema.validate(doc, SCHEMA)
    rows = {(r["arch"], r["convention"], r["op"], r["patch"]): r for r in doc["rows"]}
    for arch in ARCHS:
        for op in OPS:
            bare = rows[(arch, "none", op, "bare")]
            assert bare["median"] > 0 and len(bare["runs"]) == 3
            for conv in ("cc", "callee-save", "eax-clobber"):
                for patch in PATCHES:
                    r = rows[(arch, conv, op, patch)]          # every row, measured or not
                    if r["median"] is None:
                        assert r["note"] and r["runs"] == [] and r["site_len"] is None
                    else:
                        assert conv in CONVS[arch] and r["note"] == "" and len(r["runs"]) == 3
                        assert r["min"] <= r["q1"] <= r["median"] <= r["q3"] <= r["max"]
    measured = {k for k, r in rows.items() if r["median"] is not None}
    # what the conventions allow: C functions unpatched only where the site keeps
    # no register a C function clobbers; a trampoline only where it does
    for arch in ARCHS:
        assert (arch, "callee-save", "save_fl", "indirect-c") not in measured
        assert (arch, "cc", "save_fl", "direct-c") in measured
        assert (arch, "callee-save", "save_fl", "trampoline-c") in measured
        assert (arch, "cc", "io_delay", "nop") in measured
        assert (arch, "cc", "save_fl", "inline") in measured
    assert (("i386", "eax-clobber", "caller", "indirect-c") in measured
            and not any(k[0] == "x86_64" and k[1] == "eax-clobber" for k in measured))
    # a C function behind the eax-clobber site: only the site's call is patched
    assert ("i386", "eax-clobber", "caller", "saves-c") in measured
    assert ("i386", "eax-clobber", "caller", "trampoline-c") not in measured
    assert not any(k[3] == "saves-c" and k[1] != "eax-clobber" for k in measured)


def test_site_lengths_match_gnu_as(bench, tmp):
    out, _ = bench
    doc = json.loads((out / "bench.json").read_text())
    call = {"x86_64": "call *0x10(%rip)", "i386": "call *0x10"}
    want = {(a, c): _as_len(a, call[a], tmp) for a in ARCHS for c in ("cc", "callee-save")}
    want[("i386", "eax-clobber")] = _as_len("i386", f"push %ecx; push %edx; {call['i386']}; pop %edx; pop %ecx", tmp)
    assert want[("i386", "eax-clobber")] == 10          # the 2007 site
    for r in doc["rows"]:
        if r["site_len"] is not None:
            assert r["site_len"] == want[(r["arch"], r["convention"])], r


def test_caller_code(bench):
    out, _ = bench
    doc = json.loads((out / "bench.json").read_text())
    code = {(c["arch"], c["convention"]): c for c in doc["callers"]}
    assert set(code) == {(a, c) for a in ARCHS for c in ("none", *CONVS[a])}
    for c in code.values():
        assert 0 < c["loop_insns"] < c["insns"] and c["bytes"] > 0
    # the eax-clobber site pushes and pops %ecx and %edx; the loop has three sites
    eax = code[("i386", "eax-clobber")]
    assert eax["loop_push"] == eax["loop_pop"] == 6
    assert code[("i386", "cc")]["loop_push"] == 0
    # a cc site leaves fewer registers across the call: never fewer spills
    for arch in ARCHS:
        cc, cs = code[(arch, "cc")], code[(arch, "callee-save")]
        assert cc["loop_stack_loads"] + cc["loop_stack_stores"] >= cs["loop_stack_loads"] + cs["loop_stack_stores"]


def test_text_csv_and_plots(bench):
    out, stdout = bench
    assert (out / "bench.csv").read_text() == stdout
    doc = json.loads((out / "bench.json").read_text())
    table = list(csv.DictReader(io.StringIO(stdout)))
    assert len(table) == len(doc["rows"])
    assert {r["patch"] for r in table} == {"bare", *PATCHES}
    assert all(r["loop_insns"] for r in table if r["op"] == "caller" and r["median"])
    text = (out / "bench.txt").read_text()
    for arch in ARCHS:
        assert f"\n{arch} (" in text
    assert "caller-side code of each convention" in text and "cc-only against eax-clobber (i386)" in text
    with Image.open(out / "bench.png") as im:
        im.verify()
        assert im.format == "PNG" and im.size[0] > 300
    assert ET.parse(out / "bench.svg").getroot().tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize("args", [["--runs", "0"], ["--calls", "2"], ["--arch", "sparc"],
                                  ["--format", "xml"]])
def test_bad_usage(args, tmp):
    r = run_pvpass("bench", *args, "--out", str(tmp / "o"))
    assert r.returncode == 2 and r.stderr.startswith("pvpass: error:") and "Traceback" not in r.stderr
    assert not (tmp / "o").exists()


def test_out_under_a_file(tmp):
    (tmp / "f").write_text("")
    r = run_pvpass("bench", "--arch", "i386", "--runs", "1", "--calls", "100", "--out", str(tmp / "f" / "o"))
    assert r.returncode == 2 and r.stderr == f"pvpass: error: {tmp / 'f' / 'o'}: Not a directory\n"


def test_one_arch_as_json():
    r = run_pvpass("bench", "--arch", "x86_64", "--runs", "1", "--calls", "120", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert {x["arch"] for x in doc["rows"]} == {"x86_64"} and list(doc["ticks_per_cycle"]) == ["x86_64"]


def test_plot_needs_matplotlib(tmp):
    """Without matplotlib, --out is exit 3 before anything is built or written."""
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from pvpass.cli import main\n"
            f"sys.exit(main(['bench', '--out', {str(tmp / 'o')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 3 and "matplotlib" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp / "o").exists()
