"""Files and processes: an output is never an input, `pvpass cc` is all or
nothing (a signal at any phase, a full disk, a CPU limit or a failed check
leaves no object), what gcc writes is what it writes in a plain build, the
result cache is exact and never blocks, and bad outputs, names and commands
are one error each."""
from __future__ import annotations

import contextlib
import os
import resource
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pvpass import buildcache, parsecache
from pvpass.driver import _AUX_NAMED, parse_compile

from conftest import INCLUDE, ROOT, TESTDATA, run_pvpass

SRC = TESTDATA / "pvpass/sites.c"
CPP = ["-I", str(INCLUDE)]
FLAGS = ["-O2", "-fno-pie", *CPP]


def pvpass_bytes(*args: bytes | str, cwd=None, env=None) -> subprocess.CompletedProcess:
    """pvpass with arguments that may not be UTF-8."""
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "pvpass", *args], cwd=cwd, capture_output=True, env=e)


def one_error(r) -> str:
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode(errors="replace")
    assert r.returncode == 2, (r.returncode, err)
    assert "Traceback" not in err and err.count("error:") == 1, err
    return err


def no_temporaries(d: Path) -> list[str]:
    return [n for n in os.listdir(d) if n.endswith(".tmp")]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """sites.c, its gcc object and the object `pvpass link` made of it."""
    d = tmp_path_factory.mktemp("built")
    (d / "w.c").write_bytes(SRC.read_bytes().replace(b'"ops.h"', f'"{SRC.parent}/ops.h"'.encode()))
    subprocess.run(["gcc", *FLAGS, "-c", str(d / "w.c"), "-o", str(d / "w.o")], check=True)
    r = run_pvpass("link", str(d / "w.o"), "--source", str(d / "w.c"), "-o", str(d / "l.o"), "--", *CPP)
    assert r.returncode == 0, r.stderr
    return d


def commands(d: Path, out: str) -> dict[str, list[str]]:
    src, obj, linked = str(d / "w.c"), str(d / "w.o"), str(d / "l.o")
    return {"scan": ["scan", src, "-o", out, "--", *CPP],
            "emit": ["emit", src, "-o", out, "--", *CPP],
            "lint": ["lint", src, "-o", out, "--", *CPP],
            "link": ["link", obj, "--source", src, "-o", out, "--", *CPP],
            "patch": ["patch", linked, "--source", src, "--backend", "native", "-o", out, "--", *CPP]}


# -- an output is never an input ------------------------------------------------

@pytest.mark.parametrize("cmd", ["scan", "emit", "lint", "link", "patch"])
@pytest.mark.parametrize("how", ["same", "dotdot", "symlink", "hardlink", "object"])
def test_output_that_is_an_input_is_refused(built, tmp, cmd, how):
    """As gcc: "input file is the same as output file", exit 2, the input
    untouched, whatever name reaches it."""
    src = built / "w.c"
    before = {p: p.read_bytes() for p in (src, built / "w.o", built / "l.o")}
    out = {"same": str(src), "dotdot": f"{built}/../{built.name}/w.c", "symlink": str(tmp / "ln.c"),
           "hardlink": str(tmp / "hard.c"), "object": str(built / ("l.o" if cmd == "patch" else "w.o"))}[how]
    if how == "symlink":
        os.symlink(src, out)
    if how == "hardlink":
        os.link(src, out)
    if how == "object" and cmd in ("scan", "emit", "lint"):
        pytest.skip("no object input")
    err = one_error(run_pvpass(*commands(built, out)[cmd]))
    assert "is the same as output file" in err
    assert {p: p.read_bytes() for p in before} == before


def test_lint_output_onto_a_file_found_below_a_directory(built, tmp):
    (tmp / "d").mkdir()
    (tmp / "d" / "x.c").write_bytes((built / "w.c").read_bytes())
    err = one_error(run_pvpass("lint", str(tmp / "d"), "-o", str(tmp / "d" / "x.c"), "--", *CPP))
    assert "is the same as output file" in err
    assert (tmp / "d" / "x.c").read_bytes() == (built / "w.c").read_bytes()


def test_cc_output_that_is_the_source(tmp):
    """gcc refuses it itself, but pvpass cc has it write elsewhere: pvpass
    refuses it before running the compiler."""
    src = tmp / "x.c"
    src.write_text("int x;\n")
    r = run_pvpass("cc", "--", "gcc", "-c", str(src), "-o", str(tmp / "." / "x.c"))
    assert "is the same as output file" in one_error(r)
    assert src.read_text() == "int x;\n"


def test_cc_dev_null_in_and_out_is_gcc_s_own():
    """gcc exempts /dev/null from its same-file check (Kconfig and
    cc-option run `$(CC) ... -x c /dev/null -o /dev/null`-style probes):
    pvpass cc takes it as gcc does, and /dev/null stays a device (the fast
    path: tests/test_fastpath.py)."""
    want = subprocess.run(["gcc", "-c", "-x", "c", "/dev/null", "-o", "/dev/null"]).returncode
    assert want == 0
    r = run_pvpass("cc", "--", "gcc", "-c", "-x", "c", "/dev/null", "-o", "/dev/null")
    assert (r.returncode, r.stderr) == (0, "")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


# -- outputs that cannot be written -------------------------------------------

@pytest.fixture(scope="module")
def readonly_dir(tmp_path_factory):
    """A read-only file system (root ignores directory modes): a tmpfs
    mounted read-only, when this process may mount."""
    d = tmp_path_factory.mktemp("ro")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(d)],
                      capture_output=True).returncode != 0:
        if os.geteuid() == 0:
            yield None
            return
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.mark.parametrize("cmd", ["scan", "emit", "lint", "link", "patch"])
@pytest.mark.parametrize("where", ["missing", "directory", "readonly"])
def test_unwritable_output_is_one_error(built, tmp, readonly_dir, cmd, where):
    if where == "readonly" and readonly_dir is None:
        pytest.skip("cannot mount a read-only tmpfs here, and root ignores directory modes")
    out = {"missing": tmp / "no" / "such" / "x", "directory": tmp,
           "readonly": (readonly_dir or tmp) / "x"}[where]
    err = one_error(run_pvpass(*commands(built, str(out))[cmd]))
    assert str(out) in err and "cannot write the output" in err, err


@pytest.mark.parametrize("cmd", ["emit", "lint"])
def test_non_utf8_output_names(built, tmp, cmd):
    """Names are bytes to the OS: a name that is not UTF-8 is written as
    given, and one in a missing directory is one error."""
    name = os.fsencode(str(tmp)) + b"/\xff\xfe-out"
    args = [a.encode() for a in commands(built, "OUT")[cmd]]
    r = pvpass_bytes(*[name if a == b"OUT" else a for a in args])
    assert r.returncode == 0, r.stderr
    assert b"\xff\xfe-out" in os.listdir(os.fsencode(str(tmp)))
    bad = os.fsencode(str(tmp)) + b"/\xff-missing/x"
    one_error(pvpass_bytes(*[bad if a == b"OUT" else a for a in args]))


# -- the command line contract ---------------------------------------------------

def test_cc_help_and_usage_errors(built, tmp):
    r = run_pvpass("cc", "--help")
    assert r.returncode == 0 and "usage: pvpass cc" in r.stdout and "--records" in r.stdout
    assert "compiler name is empty" in one_error(run_pvpass("cc", "--", "", "-c", "x.c"))
    assert "--records takes" in one_error(run_pvpass("cc", "--records", "--", "gcc", "-c", "x.c"))
    out = tmp / "r.o"
    err = one_error(run_pvpass("cc", "--records", "nosuch", "--", "gcc", *FLAGS, "-c",
                               str(built / "w.c"), "-o", str(out), env={"PVPASS_CACHE": "0"}))
    assert "no backend 'nosuch'" in err and "native" in err, err
    assert not out.exists() and not no_temporaries(tmp)


def test_verify_names_its_input(tmp):
    (tmp / "empty").write_bytes(b"")
    (tmp / "junk.o").write_bytes(b"not an object at all\n")
    for f, what in (("empty", "an empty file"), ("junk.o", "not an ELF file")):
        err = one_error(run_pvpass("verify", str(tmp / f)))
        assert f"{tmp / f}: {what}" in err and "pvpass-verify" not in err, err


def test_show_on_a_source_with_no_backends(tmp):
    (tmp / "n.c").write_text("int f(int x) { return x + 1; }\n")
    subprocess.run(["gcc", "-O2", "-c", str(tmp / "n.c"), "-o", str(tmp / "n.o")], check=True)
    err = one_error(run_pvpass("show", str(tmp / "n.o"), "--source", str(tmp / "n.c"), "--backend", "xen"))
    assert "has no backends" in err and "(have: )" not in err


def nested_ops(depth: int, anonymous: bool) -> str:
    """An ops struct whose one op sits `depth` structs deep."""
    if anonymous:
        body, path = "struct { " * depth + "void (*f)(void);" + " };" * depth, "f"
    else:
        body, path = "struct { " * depth + "void (*f)(void);" + " } m;" * depth, "m." * depth + "f"
    return ("#define PVPASS_OPS pv_ops\n#include <pvpass.h>\n"
            f"struct ops_t {{ {body} }};\nextern struct ops_t pv_ops;\n"
            f"void g(void) {{ PV_VCALL0({path}); }}\n")


@pytest.mark.parametrize("depth,anonymous", [(350, True), (1200, False)])
def test_deeply_nested_structs_are_laid_out(tmp, depth, anonymous):
    """gcc takes both; the layout recursed three frames per level (a
    RecursionError traceback, and cc left gcc's object behind)."""
    (tmp / "n.c").write_text(nested_ops(depth, anonymous))
    r = run_pvpass("scan", str(tmp / "n.c"), "--", *CPP)
    assert r.returncode == 0 and '"op": "' in r.stdout, r.stderr[-2000:]
    r = run_pvpass("cc", "--", "gcc", *FLAGS, "-c", str(tmp / "n.c"), "-o", str(tmp / "n.o"),
                   env={"PVPASS_CACHE": "0"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "1 sites" in run_pvpass("table", str(tmp / "n.o")).stdout


# -- pvpass cc: what gcc writes is a plain build's -----------------------------

ARG_FORMS = [
    "-c a.c -o sub/x.o", "-c a.c", "-c a.c -o x.o", "-c -MD a.c -o sub/x.o", "-c -MMD -MP a.c -o sub/x.o",
    "-c -MD a.c", "-c -MD -MF dep.d a.c -o sub/x.o", "-c -MD -MT foo a.c -o sub/x.o",
    "-c -Wp,-MD,dep.d a.c -o sub/x.o", "-c -g -gsplit-dwarf a.c -o sub/x.o",
    "-c -fprofile-arcs -ftest-coverage a.c -o sub/x.o", "-c -save-temps a.c -o sub/x.o",
    "-c -save-temps=obj a.c -o sub/x.o", "-c -fstack-usage a.c -o sub/y.obj.o", "-c a.c -o sub/y",
    "-c -MD a.c -o sub/y", "-c -MD a.c -o sub/.y.o", "-c a.c -osub/x.o",
    "-c -dumpdir dd/ a.c -o sub/x.o -fstack-usage", "-c -dumpbase zz a.c -o sub/x.o -fstack-usage",
    "-c -MD -x c a.c -o sub/x.o", "-c -MD sub2/a.c -o x.o", "-c -MD a.c -o 'sub/a b$.o'",
]


def _driver_lines(argv: list[str], tmp_name: str | None = None, real: str | None = None,
                  dumpnames: bool = True) -> list[str]:
    """The commands gcc's driver would run (`-###`): its own temporary
    names and pvpass's temporary object replaced by fixed ones, and the
    dependency file as cc1 takes it (the last -MF, else -MD's)."""
    import re
    err = subprocess.run([*argv, "-###"], capture_output=True, text=True).stderr
    out = []
    for line in err.splitlines():
        if not line.startswith(" "):
            continue
        words = ["TMP" if re.fullmatch(r"/tmp/cc\w+\.\w+", w) else real if w == tmp_name and tmp_name else w
                 for w in shlex.split(line.replace("\\$", "$"))]    # shlex keeps \$ inside "..."
        dep, keep, i = None, [], 0
        while i < len(words):
            if not dumpnames and words[i] in ("-dumpdir", "-dumpbase", "-dumpbase-ext"):
                i += 2
                continue
            if words[i] in ("-MD", "-MMD", "-MF") and i + 1 < len(words):
                if words[i] != "-MF":
                    keep.append(words[i])
                dep = words[i + 1] if words[i] == "-MF" or dep is None else dep
                i += 2
                continue
            keep.append(words[i])
            i += 1
        out.append(" ".join(keep) + (f" DEP={dep}" if dep else ""))
    return out


@pytest.mark.parametrize("form", ARG_FORMS)
def test_temporary_output_changes_no_name_gcc_derives(form):
    """What gcc's driver runs for the temporary output is what it runs for
    the real one: every name it derives from -o (.d and its target, .dwo,
    .gcda/.gcno, .su, -save-temps files) is given explicitly."""
    c = parse_compile(["gcc", *shlex.split(form)])
    assert c.compile_only
    tmp_name = os.path.join(os.path.dirname(c.object), ".x.o.1.0.tmp")
    # Where no file is named after -o, the aux base name is left to gcc (an
    # explicit one costs ccache its hits and distcc its remote compile) and
    # is not compared; the objects are compared byte for byte below.
    aux = any(w.startswith(_AUX_NAMED) for w in shlex.split(form))
    assert aux == ("-dumpbase" in c.temp_args(tmp_name) or "-dumpbase" in form)
    plain = _driver_lines(["gcc", *shlex.split(form)], dumpnames=aux)
    mine = _driver_lines(["gcc", *c.temp_args(tmp_name)], tmp_name, c.object, dumpnames=aux)
    if "-MD" in form and "-o" not in form:    # gcc's own default target is the -MQ pvpass gives
        mine = [l.replace(f" -MQ {c.object}", "") for l in mine]
    assert mine == plain


@pytest.mark.parametrize("flags", ["-g -MD", "-g3 -MMD -MP", "-O2 -fprofile-arcs -ftest-coverage",
                                   "-g -gsplit-dwarf", "-save-temps -fstack-usage", "-Wp,-MD,dep.d",
                                   "-MD -MF dep.d -MT 'weird $name'"])
def test_outputs_are_a_plain_builds(tmp, flags):
    """Byte for byte the files a plain gcc build writes, and no others
    (a source with no site: pvpass adds nothing)."""
    def build(tool: list[str], src: str) -> dict[str, bytes]:
        for p in list(tmp.rglob("*")):
            if p.is_file() and p.suffix != ".c":
                p.unlink()
        (tmp / "sub").mkdir(exist_ok=True)
        r = subprocess.run([*tool, "-frandom-seed=1", *shlex.split(flags), "-c", src, "-o", "sub/x.o"],
                           cwd=tmp, capture_output=True, env=dict(os.environ, PVPASS_CACHE="0"))
        assert r.returncode == 0, r.stderr
        return {str(p.relative_to(tmp)): p.read_bytes() for p in tmp.rglob("*") if p.is_file()}
    (tmp / "a.c").write_text("#include <stdio.h>\nint f(int x) { return printf(\"%d\", x); }\n")
    (tmp / "a b$.c").write_text((tmp / "a.c").read_text())
    for src in ("a.c", "a b$.c"):
        plain = build(["gcc"], src)
        mine = build([sys.executable, "-m", "pvpass", "cc", "--", "gcc"], src)
        assert sorted(mine) == sorted(plain)
        assert mine == plain


def test_object_mode_is_the_compilers(tmp):
    """A new object gets 0666 minus umask, an existing one keeps its mode,
    as gcc's assembler leaves them."""
    (tmp / "a.c").write_text("int x;\n")
    run = lambda out: run_pvpass("cc", "--", "gcc", "-c", str(tmp / "a.c"), "-o", str(out))
    assert run(tmp / "n.o").returncode == 0
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp / "n.o").stat().st_mode & 0o777 == 0o666 & ~mask
    (tmp / "e.o").write_text("")
    (tmp / "e.o").chmod(0o640)
    assert run(tmp / "e.o").returncode == 0 and (tmp / "e.o").stat().st_mode & 0o777 == 0o640


# -- pvpass cc: all or nothing ----------------------------------------------------

def _spawn_cc(tmp: Path, out: Path, env: dict, compiler: str = "gcc", **kw) -> subprocess.Popen:
    e = dict(os.environ, PVPASS_CACHE="0", **env)
    return subprocess.Popen([sys.executable, "-m", "pvpass", "cc", "--", compiler, *FLAGS, "-c",
                             str(SRC), "-o", str(out)], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def _wait_for(flag: Path, p: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture
def slow_gcc(tmp) -> Path:
    """gcc, then a pause: the compiler is still running after writing."""
    p = tmp / "slow-gcc"
    p.write_text(f'#!/bin/sh\ngcc "$@" || exit $?\ncase " $* " in *" -E "*) exit 0;; esac\n'
                 f': > {tmp}/in-compiler\nexec sleep 30\n')
    p.chmod(0o755)
    return p


@pytest.mark.parametrize("phase", ["compiler", "compiled", "finished"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL])
def test_a_kill_at_any_phase_leaves_no_object(tmp, slow_gcc, phase, sig):
    """Killed while the compiler runs, after it wrote the object, or with
    the table added but not yet renamed in: no object at -o (an older one
    is gone once the compiler succeeded, as gcc's assembler truncates it),
    a non-zero status; SIGKILL leaves at most the temporary file, which the
    next compile removes."""
    out = tmp / "s.o"
    out.write_bytes(b"an older object")
    flag = tmp / "flag"
    if phase == "compiler":
        p = _spawn_cc(tmp, out, {}, compiler=str(slow_gcc), start_new_session=True)
        flag = tmp / "in-compiler"
    else:
        p = _spawn_cc(tmp, out, {"PVPASS_TEST_PAUSE": f"{phase}:{flag}"}, start_new_session=True)
    _wait_for(flag, p)
    os.kill(p.pid, sig)
    p.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(p.pid, signal.SIGKILL)        # what SIGKILL left running: the slow compiler
    p.communicate(timeout=60)
    assert p.returncode == -sig
    if phase == "compiler":   # as gcc killed: an older object stays, no new one appears
        assert out.read_bytes() == b"an older object"
    else:
        assert not out.exists()
    if sig != signal.SIGKILL:
        assert not no_temporaries(tmp)
    # the next run removes what a SIGKILL left, and builds the object
    r = run_pvpass("cc", "--", "gcc", *FLAGS, "-c", str(SRC), "-o", str(out), env={"PVPASS_CACHE": "0"})
    assert r.returncode == 0 and out.exists() and not no_temporaries(tmp), r.stderr


def test_cpu_limit_leaves_no_object(tmp):
    """SIGXCPU (RLIMIT_CPU) during the analysis: no object, the temporary
    removed, a non-zero status."""
    (tmp / "n.c").write_text(nested_ops(1200, False))      # seconds of front-end CPU
    out = tmp / "n.o"

    def limit():
        resource.setrlimit(resource.RLIMIT_CPU, (1, 5))   # SIGXCPU at 1 s, SIGKILL at 5
    r = subprocess.run([sys.executable, "-m", "pvpass", "cc", "--", "gcc", *FLAGS, "-c", str(tmp / "n.c"),
                        "-o", str(out)], env=dict(os.environ, PVPASS_CACHE="0"), preexec_fn=limit,
                       capture_output=True)
    assert r.returncode == -signal.SIGXCPU, r.stderr[-1000:]
    assert not out.exists() and not no_temporaries(tmp)


def test_failed_check_leaves_no_object(tmp):
    """A PvError after the compile (here: an unknown backend in
    --records) removes an older object too."""
    out = tmp / "s.o"
    out.write_bytes(b"older")
    r = run_pvpass("cc", "--records", "nosuch", "--", "gcc", *FLAGS, "-c", str(SRC), "-o", str(out),
                   env={"PVPASS_CACHE": "0"})
    one_error(r)
    assert not out.exists() and not no_temporaries(tmp)


@pytest.fixture
def small_fs(tmp):
    d = tmp / "fs"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _padded_sites(tmp: Path, pad: int) -> tuple[Path, int, int]:
    """sites.c with `pad` bytes of .rodata: (source, gcc's object size,
    pvpass cc's object size)."""
    src = tmp / f"p{pad}.c"
    src.write_text(SRC.read_text().replace('"ops.h"', f'"{SRC.parent}/ops.h"')
                   + f"const char pvpass_test_pad[{pad}] = {{1}};\n")
    subprocess.run(["gcc", *FLAGS, "-c", str(src), "-o", str(tmp / "g.o")], check=True)
    r = run_pvpass("cc", "--", "gcc", *FLAGS, "-c", str(src), "-o", str(tmp / "t.o"), env={"PVPASS_CACHE": "0"})
    assert r.returncode == 0, r.stderr
    return src, (tmp / "g.o").stat().st_size, (tmp / "t.o").stat().st_size


def test_full_disk_leaves_no_object(tmp, small_fs):
    """ENOSPC while pvpass writes the tabled object (gcc's smaller object
    fit: the file system has exactly its pages free): one error naming the
    object, no object, no temporary."""
    pages = lambda n: -(-n // 4096)
    _, g, t = _padded_sites(tmp, 1)
    pad = (4096 - g % 4096) - (t - g) // 2          # gcc's object ends just below a page boundary
    src, g, t = _padded_sites(tmp, pad if pad > 0 else pad + 4096)
    assert pages(t) > pages(g), (g, t)
    st = os.statvfs(small_fs)
    with open(small_fs / "filler", "wb") as f:
        f.write(b"\0" * ((st.f_bavail - pages(g)) * st.f_frsize))
    out = small_fs / "s.o"
    r = run_pvpass("cc", "--", "gcc", *FLAGS, "-c", str(src), "-o", str(out), env={"PVPASS_CACHE": "0"})
    err = one_error(r)
    assert "No space left on device" in err and str(out) in err
    assert not out.exists() and not no_temporaries(small_fs)


def test_file_size_limit_leaves_no_object(tmp):
    """RLIMIT_FSIZE between gcc's object and the tabled one: EFBIG (Python
    ignores SIGXFSZ), one error, no object."""
    src, g, t = _padded_sites(tmp, 1)
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, ((g + t) // 2,) * 2)
    out = tmp / "s.o"
    r = subprocess.run([sys.executable, "-m", "pvpass", "cc", "--", "gcc", "-pipe", *FLAGS, "-c", str(src),
                        "-o", str(out)],          # -pipe: no .s file over the limit
                       env=dict(os.environ, PVPASS_CACHE="0"), preexec_fn=limit, capture_output=True, text=True)
    assert "File too large" in one_error(r)
    assert not out.exists() and not no_temporaries(tmp)


# -- verify's temporary directory -------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_verify_build_directory_is_removed(tmp, sig):
    tmpdir = tmp / "t"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir), PVPASS_CACHE="0")
    p = subprocess.Popen([sys.executable, "-m", "pvpass", "verify", str(SRC), "--states", "100000",
                          "--", *CPP], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(n.startswith("pvpass-verify-") and os.listdir(tmpdir / n) for n in os.listdir(tmpdir)):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.02)
    os.kill(p.pid, sig)
    p.communicate(timeout=60)
    assert p.returncode == -sig
    ours = lambda: [n for n in os.listdir(tmpdir) if n.startswith("pvpass-")]   # lark caches there too
    if sig != signal.SIGKILL:
        assert ours() == []
        return
    assert len(ours()) == 1            # nothing could remove it
    r = subprocess.run([sys.executable, "-m", "pvpass", "verify", str(SRC), "--states", "1", "--", *CPP],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert ours() == []


# -- the result cache: exact, and never blocking ----------------------------------

def _cc_with_header(tmp: Path, value: int, env=None) -> subprocess.CompletedProcess:
    return run_pvpass("cc", "--", "gcc", *FLAGS, "-I", str(tmp), "-c", str(tmp / "h.c"), "-o", str(tmp / "h.o"),
                      env={"PVPASS_CACHE_DIR": str(tmp / "cache"), **(env or {})})


CLOBBER_SRC = """#include "clob.h"
#include "{ops}"
static inline unsigned long read_cr2(void)
{{
	unsigned long v, scratch;
	asm volatile(PVPASS_SITE(mmu.read_cr2, CLOBBERS) PVPASS_CALL
		     : "=a" (v), "=d" (scratch) : [pv_op] "m" (pv_ops.mmu.read_cr2) : "memory", "cc");
	return v;
}}
unsigned long f(void) {{ return read_cr2(); }}
"""


@pytest.mark.parametrize("keep", ["cp -p", "touch -r"])
def test_a_header_changed_under_the_same_size_and_mtime_is_a_miss(tmp, keep):
    """The clobber set comes from a header; its new contents have the old
    size and mtime (as `cp -p`, `tar`, `rsync -a` or `touch -r` leave
    them). The table must have the new mask."""
    (tmp / "h.c").write_text(CLOBBER_SRC.format(ops=SRC.parent / "ops.h"))
    hdr = tmp / "clob.h"
    hdr.write_text('#define CLOBBERS "rax, rdx"\n')
    old = hdr.stat()
    os.utime(hdr, ns=(old.st_atime_ns, old.st_mtime_ns - 10**10))   # not too new to be trusted
    assert _cc_with_header(tmp, 1).returncode == 0
    first = run_pvpass("table", str(tmp / "h.o")).stdout
    assert "clobbers rax,rdx" in first, first
    new = tmp / "new.h"
    new.write_text('#define CLOBBERS "rax, rcx"\n')                  # same size
    if keep == "cp -p":
        os.utime(new, ns=(hdr.stat().st_atime_ns, hdr.stat().st_mtime_ns))
        os.replace(new, hdr)
    else:
        hdr.write_text(new.read_text())
        os.utime(hdr, ns=(old.st_atime_ns, old.st_mtime_ns - 10**10))
    r = _cc_with_header(tmp, 2)
    assert r.returncode == 0, r.stderr
    second = run_pvpass("table", str(tmp / "h.o")).stdout
    assert "clobbers rax,rcx" in second, second


def test_an_untouched_header_is_not_read_again(tmp, monkeypatch):
    """The inode cache: a header whose stat is the one recorded is not
    hashed; one whose ctime moved (any write) is, once, and the entry is
    refreshed."""
    monkeypatch.setenv("PVPASS_CACHE_DIR", str(tmp / "cache"))
    hdr = tmp / "a.h"
    hdr.write_text("#define A 1\n")
    os.utime(hdr, ns=(1, 1))
    time.sleep(0)
    c = buildcache.ResultCache()
    h = buildcache.hashed(str(hdr))
    assert h is not None
    if not h.stat:                 # ctime is now: too new to trust, by design
        monkeypatch.setattr(buildcache, "_RACY_NS", -10**18)
        h = buildcache.hashed(str(hdr))
    c.put("ab" * 32, [h], "obj", None)
    reads = []
    real = buildcache.file_hash
    monkeypatch.setattr(buildcache, "file_hash", lambda p: reads.append(p) or real(p))
    assert c.get("ab" * 32) is not None and reads == []
    hdr.write_text("#define A 1\n")          # same bytes, new ctime
    assert c.get("ab" * 32) is not None and reads == [str(hdr)]
    assert c.get("ab" * 32) is not None and reads == [str(hdr)]     # refreshed: not read again


def _blocks_not(fn, *args):
    """fn(*args) in a child process that must finish within 20 s."""
    import multiprocessing
    p = multiprocessing.get_context("fork").Process(target=fn, args=args)
    p.start()
    p.join(20)
    alive = p.is_alive()
    if alive:
        p.kill()
    assert not alive, "blocked on a cache entry"
    assert p.exitcode == 0


def _get_result(cache_dir: str, key: str) -> None:
    os.environ["PVPASS_CACHE_DIR"] = cache_dir
    assert buildcache.ResultCache().get(key) is None


def _get_parse(cache_dir: str, key: str) -> None:
    os.environ["PVPASS_CACHE_DIR"] = cache_dir
    parsecache._cache = None
    c = parsecache.ParseCache()
    assert c.get(key) is None
    c.put(key, __import__("pycparser").c_ast.FileAST([]), {})
    assert os.path.isfile(c.dir / key[:2] / key)


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-fifo", "symlink-to-dev-zero", "directory"])
def test_cache_entries_that_are_no_regular_file_are_misses(tmp, kind, monkeypatch):
    """A FIFO (or a symlink to one, or to /dev/zero) where an entry goes
    is a miss, never a blocking read; a store replaces it."""
    key = "cd" * 32
    monkeypatch.setenv("PVPASS_CACHE_DIR", str(tmp / "cache"))
    rdir = buildcache.ResultCache().dir / key[:2]
    pdir = parsecache.ParseCache().dir / key[:2]
    for d in (rdir, pdir):
        d.mkdir(parents=True)
        p = d / key
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "symlink-to-fifo":
            os.mkfifo(d / "fifo")
            os.symlink(d / "fifo", p)
        elif kind == "symlink-to-dev-zero":
            os.symlink("/dev/zero", p)
        else:
            p.mkdir()
    (rdir.parent / "stats").mkdir(parents=True, exist_ok=True)
    os.mkfifo(rdir.parent / "stats" / "misses")
    _blocks_not(_get_result, str(tmp / "cache"), key)
    if kind != "directory":
        _blocks_not(_get_parse, str(tmp / "cache"), key)


def test_cc_and_scan_with_fifos_in_the_cache(tmp):
    """Every entry name of a first run made a FIFO: the second run of cc
    and scan finishes, with the right object."""
    env = {"PVPASS_CACHE_DIR": str(tmp / "cache")}
    args = ["cc", "--", "gcc", *FLAGS, "-c", str(SRC), "-o", str(tmp / "s.o")]
    assert run_pvpass(*args, env=env).returncode == 0
    want = (tmp / "s.o").read_bytes()
    for p in list((tmp / "cache").rglob("*")):
        if p.is_file():
            p.unlink()
            os.mkfifo(p)
    for cmd in (args, ["scan", str(SRC), "--", *CPP]):
        r = subprocess.run([sys.executable, "-m", "pvpass", *cmd], cwd=ROOT, capture_output=True,
                           env=dict(os.environ, **env), timeout=120)
        assert r.returncode == 0, r.stderr
    assert (tmp / "s.o").read_bytes() == want
