"""Fatal errors and the documented exit codes, importable for nothing.

The build path (`pvpass cc`) runs on every compile of a build, so what it
imports on its common paths is kept small: this module needs no other, and
`diag` (locations, diagnostics, rendering) is loaded only when something is
reported.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1     # lint findings at error level
EXIT_BAD_INPUT = 2    # bad input or usage
EXIT_NO_TOOL = 3      # a required external tool is missing


class PvError(Exception):
    """A fatal problem with the input or the environment."""

    def __init__(self, message: str, loc=None, code: int = EXIT_BAD_INPUT, rule: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc            # a diag.Loc, or None
        self.code = code
        self.rule = rule

    def diagnostic(self):
        from .diag import Diagnostic, Loc
        return Diagnostic(self.loc or Loc("pvpass"), "error", self.message, self.rule)


class ToolMissing(PvError):
    def __init__(self, tool: str, why: str = "") -> None:
        extra = f" ({why})" if why else ""
        super().__init__(f"required tool '{tool}' not found{extra}", None, EXIT_NO_TOOL)
