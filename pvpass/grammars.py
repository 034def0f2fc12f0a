"""The lark grammars in grammar/ (installed as the data package pvpass.grammar;
read from the source tree when running from a checkout)."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path


@lru_cache(maxsize=None)
def grammar_text(name: str) -> str:
    try:
        return (resources.files("pvpass.grammar") / name).read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).resolve().parent.parent / "grammar" / name).read_text()
