"""The passes that lower a recurrence to its step program, in order.

    program = lower(rec)                      # every pass, verified after each
    program = lower(rec, until="fuse")        # what `unfold compile M --ir-after fuse` prints

Each pass is a function Program -> Program in a module of its own; `verify`
checks the program's invariants after every one.
"""
from __future__ import annotations

import dataclasses

from ...lang.errors import UnfoldError
from ...lang.recurrence import Recurrence
from .. import noise, tied
from ..program import Program
from ..verify import verify
from .backward import derive_backward
from .extract import extract
from .fuse import fuse
from .group import group
from .hoist import hoist
from .memory import plan_memory
from .schedule import schedule

PASSES = [extract, hoist, group, fuse, schedule, plan_memory, derive_backward]
PASS_NAMES = [p.__name__ for p in PASSES]


def lower(rec: Recurrence, masked: bool = False, until: str | None = None, wrt=None, seeds=()) -> Program:
    """The step program of `rec` (`masked`: for runs with `lengths`), after
    every pass or after `until`.  `wrt`: the gradients the backward pass
    computes (names of params, inputs, `init:<state>`; None: all); `seeds`:
    variables whose outside cotangents it takes (`fn.vjp`).  A product with a
    transposed param and a dropout are rewritten first (tied.py, noise.py;
    nothing to do when the compiler has done it)."""
    if until is not None and until not in PASS_NAMES:
        raise UnfoldError(f"unknown pass {until!r}; expected one of {', '.join(PASS_NAMES)}")
    untied, _ = tied.untie(rec)
    lowered, masks = noise.lower(untied)
    wrt = noise.wanted(wrt, untied, masks)
    program = Program(lowered, masked, None if wrt is None else frozenset(wrt), frozenset(seeds))
    for step in PASSES:
        program = step(program)
        program = dataclasses.replace(program, passes=[*program.passes, step.__name__])
        verify(program)
        if step.__name__ == until:
            break
    return program


__all__ = ["PASSES", "PASS_NAMES", "lower"]
