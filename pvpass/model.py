"""The shared model (see DESIGN.md for the words): ops, backends, targets,
contracts, sites, and the inventory the front end hands to every later stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .diag import Diagnostic, Loc

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Op:
    path: str                 # "irq.save_fl"
    type_number: int          # offset / pointer size
    offset: int
    callee_save_slot: bool    # declared as a callee-save wrapper (struct { void *func; })
    nargs: int | None         # argument registers the prototype uses; None when unknown
    returns: bool | None      # the prototype returns a value
    loc: Loc | None = None


@dataclass(frozen=True)
class OpsStruct:
    tag: str                  # "paravirt_patch_template"
    obj: str                  # the ops object call sites load from ("pv_ops")
    size: int
    ops: tuple[Op, ...]
    loc: Loc | None = None

    def op(self, path: str) -> Op | None:
        return next((o for o in self.ops if o.path == path), None)

    def by_type(self, n: int) -> Op | None:
        return next((o for o in self.ops if o.type_number == n), None)


@dataclass(frozen=True)
class Contract:
    kind: str                 # "c" | "callee-save" | "inline" | "nop"
    clobbers: tuple[str, ...] # registers the target may change
    text: str | None = None   # inline replacement (assembler text)


@dataclass(frozen=True)
class Target:
    op: str
    function: str | None      # symbol called; None for inline/nop
    contract: Contract
    loc: Loc | None = None


@dataclass
class Backend:
    name: str
    loc: Loc | None
    targets: dict[str, Target] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    builtin: bool = False
    # The ops an initializer covers ("" = all, "irq." = one nested struct);
    # None for backends made of assignments, which are partial by nature.
    scope: str | None = ""


@dataclass(frozen=True)
class Site:
    loc: Loc
    function: str | None
    dialect: str              # "kernel" | "pvpass"
    op: str
    type_number: int
    clobbers: tuple[str, ...] # register names, arch order
    mask: int
    instructions: tuple[str, ...]   # with operands substituted as gcc would
    length: int
    ops_object: str
    template: str = ""
    nargs: int | None = None  # argument registers the site loads
    returns: bool | None = None


@dataclass
class Inventory:
    source: str
    arch: str
    ops: list[OpsStruct] = field(default_factory=list)
    backends: list[Backend] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def ops_struct_for(self, obj: str) -> OpsStruct | None:
        return next((o for o in self.ops if o.obj == obj), None)
