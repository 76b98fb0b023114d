"""One namespace for every identifier of a step program and its generated code.

Ids are never made by joining a user's names with prefixes and hoping: a
`Namespace` hands out each one, legal and unique whatever the user called
things (torch.fx's habit):

    ns = Namespace()
    ns.fresh("h")        # 'h'
    ns.fresh("h")        # 'h_1'
    ns.fresh("in")       # 'in_1'   (a Python keyword is never handed out)
    ns.fresh("t")        # 't_1'    (nor a name the generated code uses itself)

`RESERVED` lists the names printers write as they are (loop variables,
modules, helper functions); a test walks every generated module and fails on
any other name that did not come from the program's namespace.
"""
from __future__ import annotations

import builtins
import keyword
import re

#: what generated code writes itself: modules, the scalar type, the run's
#: sizes, the loop variables t (step), b (sequence), j (unit), k, q, the
#: module's functions and constants.  Every other local a printer writes
#: starts with an underscore, which no handed-out name does.
PRINTED = """
    math numba np cuda DT dt T B S t b j k q trunc forward backward ARGS SIGNATURES MODEL WRITES FRESH
    SIM TILE WARP MAX_THREADS GEMM_BLOCKS BLOCKS STEP_THREADS TILE_BLOCK GEMM_BLOCK
""".split()

RESERVED = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins)) \
    | frozenset(PRINTED)

_ILLEGAL = re.compile(r"[^0-9A-Za-z_]")


def legal(hint: str) -> str:
    """An ASCII identifier close to `hint`: `α'` -> `v`, `2x` -> `v2x`, `__x` -> `x`."""
    base = _ILLEGAL.sub("_", hint).strip("_")
    if not base:
        return "v"
    return f"v{base}" if base[0].isdigit() else base


class Namespace:
    """Unique identifiers, none of them reserved; see the module docstring.

    Helpers of generated modules start with an underscore (`_mm`, `_acc`):
    handed-out names never do, so they cannot meet."""

    def __init__(self, taken=()):
        self.taken: set[str] = set(taken)

    def fresh(self, hint: str) -> str:
        base = legal(hint)
        name, k = base, 0
        while name in self.taken or name in RESERVED:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def child(self) -> "Namespace":
        """A namespace that knows every name of this one (for a function's locals)."""
        return Namespace(self.taken)

    def __contains__(self, name: str) -> bool:
        return name in self.taken
