"""`pvpass cc -- gcc ARGS...`: a drop-in compiler.

The compiler runs exactly as asked (its object, warnings, debug info and
dependency files are its own), then each `-c` compile of one C source gets
only the work it needs:

- an object with a compiler-made table (kernel dialect): an object-only
  check of each entry (pvpass/link/tablecheck.py); nothing is added unless
  `--records` / PVPASS_RECORDS names backends whose patch records to add;
- an object with no relocated `call *` (no site can be there): nothing;
- a hit in the result cache (pvpass/buildcache.py): the recorded sections
  are added to the fresh object; no preprocessing, no analysis;
- otherwise the source is preprocessed with the user's own flags (no extra
  defines or include paths; dependency outputs stripped so the compiler's
  are not overwritten), analysed, and the link step merges the table and
  stubs in; the result is cached.

Why not preprocess once and compile the `.i` (`-fpreprocessed`): gcc then
loses -Wmisleading-indentation and the "in expansion of macro" notes, moves
some warning columns, and with -g writes other DW_AT_decl_column values
(tests/test_buildpath.py shows both), so the object and the diagnostics
would no longer be those of the build as written.

Anything else (linking, -E, -S, -M/-MM, several sources, assembler input)
passes through untouched.

All or nothing, as a compiler is: the compiler writes each object to a
temporary file beside it (`.NAME.PID.XXXXXXXX.tmp`, pvpass/atomicio.py), and
only a finished object (tabled, or needing no table) is renamed into place.
A failure, a signal (passed on to the compiler first), a full disk or a CPU
limit leaves no object, and the exit code is non-zero; SIGKILL leaves at
most the temporary file, which the next compile of that object removes. The
names gcc derives from `-o` are given to it explicitly (`-dumpdir`,
`-dumpbase`: .gcda, .dwo, .su, -save-temps files; `-MF`/`-MQ` for -MD), so
that its object, dependency file and side outputs are those of a plain
build (`tests/test_files.py` compares them)."""
from __future__ import annotations

import os
import sys

from .errors import PvError, ToolMissing

# Every compile of a build comes through here: the common paths (a kernel
# table to check, an object with no site) import only os, sys, struct and the
# ELF reader; the rest (subprocess, hashlib, pathlib, dataclasses, the front
# end) loads where it is needed.

# Options that take a separate argument.
_WITH_ARG = {"-o", "-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote",
             "-idirafter", "-MF", "-MT", "-MQ", "-x", "-Xlinker", "-Xassembler",
             "-Xpreprocessor", "-L", "-l", "-T", "--param", "-aux-info", "-iprefix",
             "-iwithprefix", "-iwithprefixbefore", "-isysroot", "-imultilib", "-dumpdir",
             "-dumpbase", "-dumpbase-ext"}
_NO_LINK_STEP = {"-E", "-S", "-M", "-MM", "-fsyntax-only"}
# Options with which gcc names a file, or writes a name into the object,
# after -o's base name (gcc >= 11's -dumpbase): .dwo, .gcda/.gcno, .su, .ci,
# -save-temps and -fdump-* files, LTO partitions.
_AUX_NAMED = ("-gsplit-dwarf", "-save-temps", "-fprofile", "--coverage", "-coverage",
              "-ftest-coverage", "-fbranch-probabilities", "-fauto-profile", "-fstack-usage",
              "-fcallgraph-info", "-fdump-", "-flto", "-fcompare-debug", "-dumpdir", "-dumpbase")
# Dropped from the preprocessor run: what names or writes the output and
# dependency files (the compiler run writes those).
_DROP_WITH_ARG = {"-o", "-MF", "-MT", "-MQ", "-dumpdir", "-dumpbase", "-dumpbase-ext", "-aux-info"}
_DROP = {"-c", "-MD", "-MMD", "-MP", "-MG", "-pipe"}
_WRAPPERS = {"ccache", "distcc", "icecc", "sccache", "buildcache"}
_LANG_C = ("c", "cpp-output")


class Compile:
    """One compiler command, taken apart."""
    __slots__ = ("compiler", "args", "sources", "source_at", "out", "compile_only", "work")

    def __init__(self, compiler: list[str], args: list[str]) -> None:
        self.compiler = compiler         # e.g. ["ccache", "gcc"]
        self.args = args
        self.sources: list[str] = []
        self.source_at: list[int] = []   # where each source is in args
        self.out: str | None = None
        self.compile_only = False
        self.work: str | None = None     # the file the compiler writes (a temporary beside the object)

    def each(self) -> list["Compile"]:
        """One compile per source, as `gcc -c a.c b.c` writes a.o and b.o:
        the same flags with the other sources left out."""
        if len(self.sources) == 1:
            return [self]
        out = []
        for s, at in zip(self.sources, self.source_at):
            drop = set(self.source_at) - {at}
            one = Compile(self.compiler, [x for i, x in enumerate(self.args) if i not in drop])
            one.sources, one.source_at, one.compile_only = [s], [at - sum(d < at for d in drop)], True
            out.append(one)
        return out

    @property
    def object(self) -> str:
        return self.out or os.path.splitext(os.path.basename(self.sources[0]))[0] + ".o"

    @property
    def written(self) -> str:
        return self.work or self.object

    @property
    def real_compiler(self) -> str:
        return self.compiler[-1]

    def arch_name(self) -> str:
        from .arch import host_arch_name
        m = [a for a in self.args if a in ("-m32", "-m64", "-mx32")]
        return {"-m32": "i386", "-m64": "x86_64"}.get(m[-1] if m else "", host_arch_name())

    def temp_args(self, tmp: str) -> list[str]:
        """The compiler's arguments writing the object to `tmp`, with every
        name gcc derives from -o given as the real object's."""
        out, i, a = [], 0, self.args
        while i < len(a):
            if a[i] == "-o":
                i += 2
                continue
            if not (a[i].startswith("-o") and len(a[i]) > 2):
                out.append(a[i])
            i += 1
        real = self.object
        given = set(a) | {x[:3] for x in a}
        if given & {"-MD", "-MMD"}:           # the driver's -MD: file and target named after -o
            if not given & {"-MF"}:
                out += ["-MF", _dep_name(self.out, self.sources[0])]
            if not given & {"-MT", "-MQ"}:
                out += ["-MQ", real]
        if ("clang" not in os.path.basename(self.real_compiler)    # gcc >= 11's aux names (clang
                # has no -dumpbase-ext; its -gsplit-dwarf .dwo is named after the temporary)
                and any(x.startswith(_AUX_NAMED) for x in a)):
            # Only where an option names a file after -o: an explicit -dumpbase
            # is hashed by ccache (no hit across object names) and keeps distcc
            # from compiling remotely, and a plain object does not depend on it.
            d, base = os.path.split(real)
            if "-dumpdir" not in given and d:
                out += ["-dumpdir", d + "/"]
            if "-dumpbase" not in given:
                ext = os.path.splitext(self.sources[0])[1]
                out += ["-dumpbase", os.path.splitext(base)[0] + ext]
                if "-dumpbase-ext" not in given and ext:
                    out += ["-dumpbase-ext", ext]
        return out + ["-o", tmp]

    def cpp_argv(self) -> list[str]:
        """The preprocessor run: the user's flags, minus outputs and dependency files."""
        out, i, a = [self.real_compiler, "-E"], 0, self.args
        while i < len(a):
            x = a[i]
            if x in _DROP_WITH_ARG:
                i += 2
                continue
            if not (x in _DROP or x.startswith(("-Wp,-M", "-MF", "-MT", "-MQ", "-save-temps", "-o"))):
                out.append(x)
            i += 1
        return out

    def cache_args(self) -> list[str]:
        """The flags that decide the result: all but the names of the object
        and of the dependency file."""
        out, i = [], 0
        while i < len(self.args):
            if self.args[i] in ("-o", "-MF", "-MT", "-MQ"):
                i += 2
                continue
            if not self.args[i].startswith(("-Wp,-MD,", "-Wp,-MMD,", "-o")):
                out.append(self.args[i])
            i += 1
        return out


def _dep_name(out: str | None, source: str) -> str:
    """gcc's name for -MD's file: -o's with its suffix made .d (the spec
    `%{o*:%.d%*}`), else the source's base name with .d (`%b.d`)."""
    if out is None:
        return os.path.splitext(os.path.basename(source))[0] + ".d"
    d, base = os.path.split(out)
    dot = base.rfind(".")
    return os.path.join(d, (base[:dot] if dot >= 0 else base) + ".d")


_CPP_WITH_ARG = {"-I", "-D", "-U", "-include", "-imacros", "-isystem", "-iquote", "-idirafter"}
_CPP_PREFIX = ("-I", "-D", "-U", "-std=", "-m", "-f", "-O", "--sysroot", "-nostdinc", "-iprefix")


def parse(argv: list[str]) -> tuple[str, list[str], str | None]:
    """For lint's compile database: (the compiler behind any ccache-style
    wrapper, the flags that matter to the preprocessor, the object it
    writes) of a whole command."""
    c = parse_compile(argv)
    args = c.args
    cpp, i = [], 0
    while i < len(args):
        a = args[i]
        if a in _WITH_ARG and i + 1 < len(args):
            if a in _CPP_WITH_ARG:
                cpp += [a, args[i + 1]]
            i += 2
            continue
        if a.startswith(_CPP_PREFIX) and not a.startswith(("-MF", "-MT", "-MQ")):
            cpp.append(a)
        i += 1
    return c.real_compiler, cpp, c.out if c.compile_only else None


def parse_compile(argv: list[str]) -> Compile:
    n = 1
    while n < len(argv) and os.path.basename(argv[n - 1]) in _WRAPPERS and not argv[n].startswith("-"):
        n += 1
    c = Compile(argv[:n], _expand_response_files(argv[n:]))
    lang = None
    skip = False
    i = 0
    a = c.args
    while i < len(a):
        x = a[i]
        if x in _WITH_ARG and i + 1 < len(a):
            if x == "-o":
                c.out = a[i + 1]
            elif x == "-x":
                lang = a[i + 1]
            i += 2
            continue
        if x.startswith("-o") and len(x) > 2:
            c.out = x[2:]
        elif x.startswith("-x") and len(x) > 2:
            lang = x[2:]
        elif not x.startswith("-") or x == "-":
            if lang in _LANG_C or (lang is None and x.endswith((".c", ".i"))):
                c.sources.append(x)
                c.source_at.append(i)
            else:
                skip = True          # assembler, C++, objects: not for the pass
        i += 1
    objects = {os.path.basename(os.path.splitext(s)[0]) for s in c.sources}
    c.compile_only = ("-c" in a and not (_NO_LINK_STEP & set(a)) and bool(c.sources) and not skip
                      and "-" not in c.sources and c.out != "-"
                      and (len(c.sources) == 1 or (c.out is None and len(objects) == len(c.sources))))
    return c


def _expand_response_files(args: list[str], depth: int = 0) -> list[str]:
    """gcc's `@FILE` arguments (CMake and ninja use them for long command
    lines) replaced by the words in FILE, as libiberty's expandargv does:
    shell-like quoting, nested files; an unreadable FILE stays a word."""
    if depth > 16 or not any(a.startswith("@") for a in args):
        return args
    import shlex
    out: list[str] = []
    for a in args:
        if a.startswith("@") and len(a) > 1:
            try:
                with open(a[1:], encoding="utf-8", errors="surrogateescape") as f:
                    words = shlex.split(f.read())
            except (OSError, ValueError):
                out.append(a)
                continue
            out += _expand_response_files(words, depth + 1)
        else:
            out.append(a)
    return out


def _records_option(argv: list[str], env=os.environ) -> tuple[tuple[str, ...] | None, list[str]]:
    """`--records B,C` (or PVPASS_RECORDS): the backends whose patch records
    to add to kernel-dialect objects; pvpass-dialect objects get native and
    their own backends unless it is given."""
    records = env.get("PVPASS_RECORDS")
    while argv and argv[0].startswith("--records"):
        if argv[0] == "--records" and len(argv) > 1 and argv[1] != "--":
            records, argv = argv[1], argv[2:]
        elif argv[0].startswith("--records="):
            records, argv = argv[0].split("=", 1)[1], argv[1:]
        else:
            raise PvError("pvpass cc: --records takes a comma-separated list of backends")
    if records is None:
        return None, argv
    return tuple(sorted({r.strip() for r in records.split(",") if r.strip() and r.strip() != "none"})), argv


def command(argv: list[str], env=os.environ) -> tuple[tuple[str, ...] | None, list[str], Compile]:
    """`pvpass cc`'s own arguments taken apart: (records, the compiler
    command, the compile it makes). PvError on a bad command."""
    records, argv = _records_option(argv, env)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise PvError("pvpass cc: expected a compiler command after '--'")
    if not argv[0]:
        raise PvError("pvpass cc: the compiler name is empty")
    return records, argv, parse_compile(argv)


def run_cc(argv: list[str]) -> int:
    from . import fastpath
    fastpath.after_handover()        # what the compiled client (pvpass/client/) asked for, if anything
    records, argv, c = command(argv)
    if len(c.compiler) > 1:          # the compiler behind a wrapper: say so ourselves
        from . import tools
        for w in c.compiler[1:]:
            tools.which(w)
    if not c.compile_only:
        try:
            os.execvp(argv[0], argv)      # nothing for the pass: become the compiler
        except OSError as e:
            raise ToolMissing(argv[0], e.strerror) from None
    from .atomicio import guard, same_file
    for u in c.each():
        for src in c.sources:
            if same_file(u.object, src):      # the compiler would say so, but it writes elsewhere
                raise PvError(f"pvpass cc: input file '{src}' is the same as output file")
    with guard():
        rc = 0
        for u in c.each():                # gcc -c a.c b.c: one compile per object, as gcc runs them
            rc = _compile_one(u, records) or rc
        return rc


class Undecided(Exception):
    """The cheap verdicts (the server's) cannot finish this compile: the
    Python path takes over the compiled temporary and decides."""


def start_temp(obj: str, pid: int | None = None) -> str | None:
    """Sweep what killed runs left beside `obj`, then make the temporary the
    compiler writes (None: the directory cannot hold one). `pid`: the
    process that owns it (the client's, when the server makes it)."""
    from . import atomicio
    atomicio.remove_stale(obj)               # of runs killed with SIGKILL
    try:
        return atomicio.temp_file(obj, pid)
    except OSError:          # no such directory, read-only: the compiler says so; should it
        return None          # still write the object, that is finished in place


def _compile_one(u: Compile, records) -> int:
    """Compile one source to a temporary file beside its object, finish it,
    rename it into place; on any failure remove it."""
    from . import atomicio, fastpath
    obj = u.object
    if _regular(obj) is False:               # -o /dev/null (kbuild's probes), a pipe: written
        return _call([*u.compiler, *u.args])  # directly, nothing to add
    tmp = fastpath.compiled_for(obj)          # the client ran the compiler already
    if tmp:
        u.work = tmp
        return finish(u, 0, records, obj)
    tmp = u.work = start_temp(obj)
    try:
        rc = _call([*u.compiler, *(u.temp_args(tmp) if tmp else u.args)])
    except BaseException:
        if tmp:
            atomicio.forget(tmp, unlink=True)
        raise
    return finish(u, rc, records, obj)


def finish(u: Compile, rc: int, records, obj: str, umask: int | None = None, cheap: bool = False,
           phase=None) -> int:
    """After the compiler ran (`rc`) writing `u.written`: check it and add
    what it needs, then rename it onto `obj`, or remove it. `cheap` (the
    server): only the verdicts that need neither the source nor the cache;
    anything else raises Undecided with the temporary and `obj` as the
    Python path expects them. `umask`: the compiling process's."""
    from . import atomicio
    tmp = u.work
    phase = phase or _phase
    try:
        if rc != 0 or not _regular(u.written):   # as gcc fails: an older object stays
            if tmp:
                atomicio.forget(tmp, unlink=True)
            return rc
        # From here a failure, even SIGKILL, leaves no object at all, as gcc's
        # assembler has truncated an older one by now: it would pass for
        # this compile's.
        mode = _new_mode(obj, umask)
        if tmp and _regular(obj):
            os.unlink(obj)
        phase("compiled")
        _after_compile(u, records, cheap)
        phase("finished")
        if tmp:
            os.chmod(tmp, mode)
            os.replace(tmp, obj)
            atomicio.forget(tmp)
    except BaseException as e:
        if cheap and isinstance(e, Exception):
            raise Undecided() from e         # the Python path decides, and says what went wrong
        if tmp:
            atomicio.forget(tmp, unlink=True)
        elif _regular(obj):
            _remove(obj)
        if isinstance(e, OSError):           # a full disk, a file size limit
            raise PvError(f"{obj}: {e.strerror}") from None
        raise
    return 0


def _new_mode(obj: str, umask: int | None = None) -> int:
    """The mode the compiler gives its output: an existing file keeps its
    own (it is truncated and rewritten), a new one gets 0666 minus umask
    (`umask`: the compiling process's, else this one's)."""
    import stat
    try:
        st = os.lstat(obj)
        if stat.S_ISREG(st.st_mode):
            return st.st_mode & 0o7777
    except OSError:
        pass
    if umask is None:
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _phase(name: str) -> None:
    """Tests set PVPASS_TEST_PAUSE=PHASE:FILE to be told (FILE is created)
    when a compile reaches PHASE, and kill it there."""
    spec = os.environ.get("PVPASS_TEST_PAUSE")
    if spec and spec.split(":", 1)[0] == name:
        open(spec.split(":", 1)[1], "w").close()
        import time
        time.sleep(60)


def _after_compile(c: Compile, records, cheap: bool = False) -> None:
    """What the fresh object needs. The two cheap verdicts come first, as a
    cache lookup (hashing the source, stat'ing its headers) would cost more
    than they do: a kernel-dialect table is checked from the object alone,
    and an object with no relocated `call *` needs nothing. A cache hit is
    taken before candidate calls are disassembled (capstone's import alone
    costs more than the hit). `cheap` (the server, where capstone stays
    loaded): candidates are decoded first, then the cache is asked;
    Undecided where the source is needed."""
    from itertools import chain
    from . import table
    from .link.elfobj import ElfObject, UnsupportedTarget
    from .link.regcalls import may_call_through_register, reg_calls
    from .link.tablecheck import check_table, confirmed_call, iter_call_candidates
    from .link.tableread import check
    data = _read(c.written, c.object)
    try:
        obj = ElfObject(c.object, data)
    except UnsupportedTarget as e:   # the compiler's own object for a target pvpass does not table
        if cheap:
            raise Undecided() from e
        _untabled_warning(c, f"{e.target} object", "pvpass tables i386 and x86-64 objects")
        return
    # checked as every reader checks (a compiler wrapper, a cache or a disk
    # can hand over a corrupt object): nothing follows or copies a bad field
    entries = check(obj)
    kernel = obj.section(table.SECTION) is not None
    if kernel and not records:
        check_table(obj, entries)    # needs neither the source nor the preprocessor
        return
    if not kernel and any(s.name.startswith(".gnu.lto_") for s in obj.sections):
        if cheap:
            raise Undecided()
        _untabled_warning(c, "-flto", "their code is made at link time; "
                          "compile this source with -fno-lto to have them patched")
    # relocated `call *` candidates, read as far as needed: none at all, or
    # the first that decodes as a call
    candidates = iter(()) if kernel else iter_call_candidates(obj)
    first = next(candidates, None)
    # calls through a register that holds an object's address (PIC code's
    # GOT, an "m" operand gcc put in a register): no relocation marks them.
    # The bytes say whether there may be some (no disassembler); a source
    # with annotations is then analysed, which names each site copy among them.
    via_register = not kernel and may_call_through_register(obj)
    if not kernel and first is None and not via_register:
        return                   # no site can be here; the object is not rewritten

    if cheap:
        # The server, where capstone stays loaded: decoding settles what the
        # bytes alone cannot, a relocated `call *` that is none, or a
        # relocated load whose register reaches no real `call *`/`jmp *` (the
        # bytes also match immediates and displacements: ~300 objects of a
        # Linux build, each of which the Python path would preprocess to
        # count its sites); a cache hit it takes too, the source is the
        # Python path's.
        if not kernel and not (first and confirmed_call(obj, chain((first,), candidates))) \
                and not (via_register and reg_calls(obj)):
            return
    from .buildcache import ResultCache, headers_of
    cache = ResultCache()
    key = cache.key(c.compiler, c.cache_args(), c.sources[0], c.arch_name(),
                    f"records={records}") if cache.dir else None
    hit = cache.get(key) if key else None
    if hit is not None and hit["object"] == _sha(data):
        try:
            # the server hands a failure over with the temporary as the
            # compiler wrote it: rewritten whole or not at all
            _apply(c, obj, hit["value"], atomic=cheap)
            sys.stderr.write(hit.get("stderr", ""))    # the warnings, as ccache replays gcc's
            return
        except Exception:        # the entry is untrusted data: failing to apply it is a miss
            pass
    if cheap:
        raise Undecided()
    if first and not via_register and not confirmed_call(obj, chain((first,), candidates)):  # capstone: after the cache
        return
    from .diag import recording
    with recording() as said:
        value, headers = _analyse(c, obj, kernel, records)
    if key:
        cache.put(key, headers_of(headers), _sha(data), value, "".join(f"{t}\n" for t in said))


def _site_count(c: Compile) -> int:
    import re
    return len(re.findall(r"pvpass\s*:\s*site\b", _preprocess(c).text))


def _untabled_warning(c: Compile, what: str, why: str, n: int | None = None) -> None:
    """Objects whose sites no table can name: an -flto object holds GIMPLE
    and its code is made at link time, after pvpass has seen it (a fat
    object's code is dropped by an LTO link too); an x32 or non-x86 object
    is no target of pvpass's. The program stays correct, with indirect
    calls: say so, once per source that holds pvpass sites, rather than
    leave them silently unpatched, and keep the compiler's object. Rare, so
    preprocessing to count them is affordable. The kernel dialect needs no
    word: its table comes from the asm, which the link-time compile emits.
    `n`: the count when the caller has it."""
    n = _site_count(c) if n is None else n
    if n:
        from .diag import Diagnostic, Loc, emit
        emit(Diagnostic(Loc(c.sources[0]), "warning",
                        f"{what}: the {n} pvpass site{'s' if n > 1 else ''} of this source cannot be "
                        f"tabled and stay indirect calls ({why})"))


def _call(argv: list[str]) -> int:
    """Run the compiler and wait: subprocess.call's result (-N: killed by
    signal N) without importing subprocess (~10 ms on every compile)."""
    import signal
    from .atomicio import _children
    # blocked until the child is registered, so that a signal is passed on
    # to it; the child starts with nothing blocked
    old = signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, setsigmask=())
        _children.add(pid)
    except OSError as e:
        raise ToolMissing(argv[0], e.strerror) from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    try:
        _, status = os.waitpid(pid, 0)
    except KeyboardInterrupt:         # the compiler got the same ^C: let it finish dying
        os.waitpid(pid, 0)
        raise
    finally:
        _children.discard(pid)
    return os.waitstatus_to_exitcode(status)


def _read(path: str, name: str | None = None) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise PvError(f"{name or path}: {e.strerror}") from None


def _sha(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def _analyse(c: Compile, obj, kernel: bool, records) -> tuple[object, list[str]]:
    """The full analysis of an object that may hold sites: (what was added,
    or None; the headers the analysis read, for the cache entry)."""
    pp = _preprocess(c)
    headers = pp.files()
    if not kernel and "pvpass" not in pp.text:
        return None, headers     # no annotation: the relocated `call *` is no site
    from .frontend.scan import fewer_collections
    with fewer_collections():
        return _analyse_pp(c, obj, kernel, records, pp, headers)


def _analyse_pp(c: Compile, obj, kernel: bool, records, pp, headers) -> tuple[object, list[str]]:
    from .arch import get_arch
    from .frontend.scan import scan_reported
    res = scan_reported(pp, get_arch(c.arch_name()), c.cache_args(), compiled=True, cc=c.real_compiler)
    if not res.inventory.sites:
        if kernel:
            from .link.tablecheck import check_table
            check_table(obj)     # the source shows no site: the object's table still holds
        return None, headers
    from .link.step import plan_link
    # a copy no table can hold is a warning, as gcc's own would be: the build
    # goes on with an indirect call there; -Werror makes it an error
    plan = plan_link(obj, res, records=records if records is not None or kernel else None,
                     lost="error" if "-Werror" in c.args else "warning")
    if not plan.sections:
        return None, headers
    value = _plan_json(plan)     # before writing: the writer fills REL addends in
    _add_sections(c.written, obj, plan.sections, plan.symbols)
    return value, headers


def _preprocess(c: Compile):
    from .frontend.pptext import PPText
    from . import tools
    src = c.sources[0]
    if src.endswith(".i") and "-x" not in c.args:
        return PPText(_read(src).decode(errors="replace"), src)
    r = tools.run(c.cpp_argv(), check=False)
    if r.returncode != 0:
        raise PvError(f"{src}: preprocessing for pvpass failed though the compile succeeded:\n"
                      + r.stderr.decode(errors="replace").strip())
    return PPText(r.stdout.decode(errors="replace"), src)


def _plan_json(plan) -> dict:
    def sec(s):
        return {"name": s.name, "flags": s.flags, "align": s.align, "data": s.data.hex(),
                "type": s.type, "entsize": s.entsize,
                "relocs": [[r.offset, r.type, r.target.section, r.target.symbol, r.addend]
                           for r in s.relocs]}
    return {"sections": [sec(s) for s in plan.sections],
            "symbols": [[s.name, s.section, s.value, s.size, s.kind] for s in plan.symbols]}


def _plan_from_json(v: dict):
    """The recorded sections and symbols; ValueError/TypeError/KeyError on a
    wrong shape (the caller treats it as a miss)."""
    from .link.elfwrite import NewReloc, NewSection, NewSymbol, SymRef
    secs = [NewSection(str(s["name"]), int(s["flags"]), int(s["align"]), bytes.fromhex(s["data"]),
                       [NewReloc(int(o), int(t), SymRef(sn, sy), int(ad)) for o, t, sn, sy, ad in s["relocs"]],
                       int(s["type"]), int(s["entsize"])) for s in v["sections"]]
    syms = [NewSymbol(str(n), str(s), int(val), int(sz), int(k)) for n, s, val, sz, k in v["symbols"]]
    return secs, syms


def _apply(c: Compile, obj, value, atomic: bool = False) -> None:
    """Add a cached result's sections to the compiler's (checked) object
    (None: nothing)."""
    if value is None:
        return
    secs, syms = _plan_from_json(value)
    _add_sections(c.written, obj, secs, syms, atomic)


def _add_sections(path: str, obj, secs, syms, atomic: bool = False) -> None:
    """Rewrite the compiler's object, a temporary file no one else sees
    (renamed into place when finished): written in place, or `atomic`ally
    (a temporary beside it, renamed); no fsync, as the compiler does not
    sync the objects of a build either."""
    from .link.elfwrite import add_sections
    data = add_sections(obj, secs, syms)
    if atomic:
        from .atomicio import write_atomic
        write_atomic(path, data, durable=False, through=False)
        return
    with open(path, "wb") as f:
        f.write(data)


def _regular(path: str) -> bool | None:
    """Whether the compiler's output is a regular file (symlinks followed);
    None when there is none."""
    import stat
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return None


