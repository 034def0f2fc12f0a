"""Parsed C chunks (pycparser ASTs) kept on disk across runs.

The same header chunk (same text, same place in the same file, same typedef
names in scope) parses to the same AST in every translation unit of a build,
so after the first TU the headers cost a file read. PVPASS_CACHE=0 turns it
off; PVPASS_CACHE_DIR moves it (default: $XDG_CACHE_HOME/pvpass).

A cache directory is not trusted. An entry is a header (format tag, its own
key, the SHA-256 of the rest) and a pickle, read by an unpickler that
resolves only pycparser's and pycparserext's AST node classes and their
Coord (so loading an entry cannot run code), and checked node by node against the shape pycparser
gives its nodes (attributes hold strings, children hold nodes). Any
entry that fails to load or to check, for whatever reason, is a miss and is
parsed again; an AST too deep to pickle is not cached. An entry that is no
regular file (a FIFO, a device, a symlink) is a miss, never opened for a
blocking read, and a store replaces it.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from pathlib import Path

from pycparser import c_ast
from pycparser.c_parser import Coord

from .atomicio import write_atomic

FORMAT = "pvpass-chunk-2"
_PYCPARSER = "pycparser3.0"
_MAX_ENTRY = 32 << 20
_IDENTS = re.compile(r'[A-Za-z_]\w*')
_MODULES = frozenset({"pycparser.c_ast", "pycparser.c_parser", "pycparserext.ext_c_parser"})


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module in _MODULES:
            import importlib
            cls = getattr(importlib.import_module(module), name, None)
            if isinstance(cls, type) and (issubclass(cls, c_ast.Node) or cls is Coord):
                return cls
        raise pickle.UnpicklingError(f"{module}.{name} is not an AST class")


def loads(data: bytes, key: str):
    """(ast, line_index) from an entry's bytes, or None if anything is wrong."""
    from .buildcache import unseal
    body = unseal(FORMAT, key, data)
    if body is None:
        return None                # another entry's, or corrupted (a flip in a name too)
    try:
        v = _Unpickler(io.BytesIO(body)).load()
        if not (isinstance(v, tuple) and len(v) == 2):
            return None
        ast, index = v
        if not isinstance(ast, c_ast.FileAST) or not _index_ok(index) or not _tree_ok(ast):
            return None
    except Exception:              # any way a pickle can be broken is a miss
        return None
    return ast, index


def dumps(key: str, ast, index) -> bytes | None:
    try:
        body = pickle.dumps((ast, index), protocol=pickle.HIGHEST_PROTOCOL)
    except RecursionError:
        return None                # too deep to keep: parsed again next time
    from .buildcache import seal
    return seal(FORMAT, key, body)


def _index_ok(index) -> bool:
    return isinstance(index, dict) and all(
        isinstance(k, tuple) and len(k) == 2 and isinstance(k[0], str) and type(k[1]) is int
        and type(v) is int for k, v in index.items())


# pycparser's attributes that hold lists, and children that are always lists
_LIST_ATTRS = frozenset({"quals", "storage", "funcspec", "align", "names", "dim_quals"})
_LIST_CHILD = frozenset({"ext", "params", "exprs"})
_ONE_CHILD = frozenset({"type", "init", "bitsize", "cond", "iftrue", "iffalse", "expr",
                        "left", "right", "lvalue", "rvalue", "body", "decl", "args", "subscript",
                        "to_type", "field", "dim", "stmt", "value"})
_SHAPES: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def _slots(cls) -> tuple[str, ...]:
    got = _SHAPES.get(cls)
    if got is None:
        names = tuple(s for c in cls.__mro__ for s in getattr(c, "__slots__", ()) if s != "__weakref__")
        got = _SHAPES[cls] = (names, frozenset(getattr(cls, "attr_names", ())))
    return got




def _coord_ok(v) -> bool:
    return v is None or (type(v) is Coord and isinstance(v.file, (str, type(None)))
                         and isinstance(v.line, (int, type(None)))
                         and isinstance(v.column, (int, type(None))))


def _tree_ok(root) -> bool:
    """Every node's attributes hold strings (or lists of them), its coord a
    Coord, its children nodes (or lists of nodes). Iterative: no depth limit."""
    stack = [root]
    Node = c_ast.Node
    while stack:
        n = stack.pop()
        slots, attrs = _slots(type(n))
        fields = [(s, getattr(n, s)) for s in slots if hasattr(n, s)]
        d = getattr(n, "__dict__", None)
        if d:
            fields += d.items()
        for name, v in fields:
            if isinstance(v, Node):
                if name in attrs or name == "coord":
                    return False
                stack.append(v)
            elif name == "coord":
                if not _coord_ok(v):
                    return False
            elif name in attrs:       # a name, an operator, qualifiers (or _Alignas nodes)
                if type(v) is list and name in _LIST_ATTRS:
                    for x in v:
                        if isinstance(x, Node):
                            stack.append(x)
                        elif type(x) is not str:
                            return False
                elif v is not None and type(v) is not str:
                    return False
            elif type(v) is list and name not in _ONE_CHILD:
                for x in v:
                    if isinstance(x, Node):
                        stack.append(x)
                    elif x is not None:
                        return False
            elif v is not None or name in _LIST_CHILD:
                return False
    return True


class ParseCache:
    # Entries already loaded (and checked) by this process: a lint over a
    # build's TUs meets the same header chunks in every TU, and reading,
    # unpickling and checking each again was a fifth of its time. The ASTs
    # are shared, so nothing downstream may change them (nothing does).
    _MEMORY = 4096

    def __init__(self) -> None:
        self.dir: Path | None = None
        self._mem: dict[str, tuple] = {}
        if os.environ.get("PVPASS_CACHE", "1") != "0":
            from .buildcache import cache_root, code_identity
            self.dir = cache_root() / f"chunks-{code_identity()}-{_PYCPARSER}"

    def key(self, text: str, file: str, line: int, col: int, typedefs: frozenset[str]) -> str:
        used = sorted(set(_IDENTS.findall(text)) & typedefs)
        h = hashlib.sha256()
        for part in (text, file, str(line), str(col), " ".join(used)):
            h.update(part.encode(errors="surrogateescape"))
            h.update(b"\0")
        return h.hexdigest()

    def get(self, key: str):
        if self.dir is None:
            return None
        got = self._mem.get(key)
        if got is not None:
            return got
        from .buildcache import read_regular
        data = read_regular(self.dir / key[:2] / key, _MAX_ENTRY, follow=False)   # a FIFO is a miss
        got = loads(data, key) if data is not None and len(data) <= _MAX_ENTRY else None
        if got is not None:
            self._remember(key, got)
        return got

    def _remember(self, key: str, value: tuple) -> None:
        if len(self._mem) >= self._MEMORY:
            self._mem.clear()
        self._mem[key] = value

    def put(self, key: str, ast, index) -> None:
        if self.dir is None:
            return
        data = dumps(key, ast, index)
        if data is None:
            return                  # too deep to pickle: parsed again each time
        self._remember(key, (ast, index))
        try:
            d = self.dir / key[:2]
            d.mkdir(parents=True, exist_ok=True)
            write_atomic(d / key, data, durable=False, sweep=False, through=False)     # a torn entry is a miss
        except OSError:
            pass            # a cache that cannot be written is no cache


_cache: ParseCache | None = None


def parse_cache() -> ParseCache:
    global _cache
    if _cache is None:
        _cache = ParseCache()
    return _cache
