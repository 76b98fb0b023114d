"""What a call of a compiled function asks beyond its arrays: which gradients,
which cotangents, which final states.

    Variant(masked, wrt, seeds)     the step program a call needs (one per combination)
    wanted(rec, "params")           -> frozenset({'W', 'U', 'b'}): the gradients to compute
    cotangents(program, c, run)     outside cotangents checked, by output name
    seed(program, d, c, run)        ... added into the adjoint buffers before the backward pass
    final_states(program, bufs, run)   each state's last value: the next chunk's `init`
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..graph.runargs import RunArgs
from ..lang.errors import InputError
from ..lang.ir import Role
from ..lang.recurrence import Recurrence
from .program import Layout, Program


class Variant(NamedTuple):
    masked: bool
    wrt: frozenset | None
    seeds: frozenset

    @property
    def text(self) -> str:
        wrt = "all" if self.wrt is None else ",".join(sorted(self.wrt))
        return f"masked={self.masked} wrt={wrt} seeds={','.join(sorted(self.seeds))}"


def wanted(rec: Recurrence, wrt) -> frozenset | None:
    """The gradients to compute: None (all: params, inputs, initial states),
    "params", or names of params, inputs and `init:<state>`s."""
    if wrt is None or (isinstance(wrt, str) and wrt == "all"):
        return None
    if isinstance(wrt, str) and wrt == "params":
        return frozenset(s.name for s in rec.of_role(Role.PARAM))
    names = [wrt] if isinstance(wrt, str) else list(wrt)
    known = every_gradient(rec)
    for name in names:
        if name not in known:
            raise InputError(f"wrt={name!r} is not a param, an input or an initial state of `{rec.name}`; "
                             f"expected \"params\", \"all\" or names from: {', '.join(sorted(known))}")
    return frozenset(names)


def every_gradient(rec: Recurrence) -> frozenset:
    """The gradients a call may ask for: params, inputs and `init:<state>`s."""
    return frozenset(s.name for s in rec.of_role(Role.PARAM, Role.INPUT)) | {f"init:{s.name}" for s in rec.states}


def seed_names(rec: Recurrence, given) -> list[str]:
    """The outputs that cotangents are given for (checked by name; `loss` aside)."""
    if not isinstance(given, dict) or not given:
        raise InputError("cotangents must be a dict: output name -> [T, B, n] array (`loss`: a number), "
                         f"not {given!r}")
    outputs = {s.name for s in rec.of_role(Role.STATE, Role.INTER)}
    for name in given:
        if name == "loss" and rec.loss is None:
            raise InputError(f"a cotangent for `loss`, but `{rec.name}` has no loss")
        if name != "loss" and name not in outputs:
            raise InputError(f"a cotangent for `{name}`, which is no output; outputs: "
                             f"{', '.join(sorted(outputs)) or '(none)'}" + (", loss" if rec.loss else ""))
    return sorted(k for k in given if k != "loss")


def cotangents(rec: Recurrence, given: dict, run: RunArgs) -> dict[str, np.ndarray]:
    """Outside cotangents by output name: [T, B, n] like the output (`loss`: a number)."""
    outputs = {s.name: s for s in rec.of_role(Role.STATE, Role.INTER)}
    out = {}
    for name, c in given.items():
        if name == "loss":
            out[name] = float(c)
            continue
        want = (run.tau, run.batch) + (outputs[name].shape or (1,))
        c = np.asarray(c)
        if c.shape != want or c.dtype.kind != "f":
            raise InputError(f"the cotangent of `{name}` has shape {list(c.shape)} and dtype {c.dtype}; "
                             f"expected floats of shape {list(want)} (like the output)")
        out[name] = c
    return out


def seed(program: Program, d: dict, given: dict, run: RunArgs):
    """Add outside cotangents into the adjoint buffers of their outputs."""
    T = run.tau
    for name, c in given.items():
        if name == "loss":
            continue
        place = program.places[program.outputs[name]]
        a = d[place.buffer.adjoint.name]
        cols = slice(place.col, place.col + place.size)
        if place.buffer.layout is Layout.STATE:
            a[place.buffer.depth:place.buffer.depth + T] += c
        elif place.buffer.layout is Layout.SEQ:
            a[:, :, cols] += c
        else:   # a param-only value, the same at every step: its cotangents add up
            a[cols] += c.sum(axis=(0, 1))


def final_states(program: Program, bufs: dict, run: RunArgs) -> dict[str, np.ndarray]:
    """Each state's value after its last step (t = T; t = 1 for a backward
    state; with lengths, held since each sequence's end): `init` of the next chunk."""
    out = {}
    for s in program.states:
        S = bufs[program.places[s.value].buffer.name]
        out[s.name] = np.array(S[s.depth - 1 + (run.tau if s.direction > 0 else 1)])
    return out
