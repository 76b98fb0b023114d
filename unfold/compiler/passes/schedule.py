"""Pass 5, schedule: stages in dependency order, split into time loops.

Stages on params only (`batched=False`) run once before the loops
(`statics`); the rest go to their value's loop: `pre` (reads no state),
`forward`, `backward` (t = T..1), `post` (reads both directions), in that
order unless a loop reads a state of a later one (a forward state reading a
backward state's g[t+1]: then the backward loop runs first).  The loss term
is summed after the loops (`LossSum`).
"""
from __future__ import annotations

import dataclasses
import graphlib

from ...lang.errors import ModelError
from ..program import Leaf, Program
from ..stages import Loop, LoopKind, LossSum, produced, stage_reads

_ORDER = (LoopKind.PRE, LoopKind.FORWARD, LoopKind.BACKWARD, LoopKind.POST)


def _ordered(p: Program) -> list:
    """Every per-step stage (matmuls, fused, apply) in dependency order."""
    stages = [*p.matmuls, *p.fused]
    made_by = {vid: st for st in stages for vid in produced(st)}
    deps = {id(st): {id(made_by[a]) for a in stage_reads(p, st) if a in made_by and made_by[a] is not st}
            for st in stages}
    by_id = {id(st): st for st in stages}
    return [by_id[i] for i in graphlib.TopologicalSorter(deps).static_order()]


def loop_order(p: Program, kinds: set[LoopKind]) -> list[LoopKind]:
    """pre, forward, backward, post -- unless a loop reads a state of a later one."""
    state_value = {s.name: s.value for s in p.states}
    deps: dict[LoopKind, set] = {k: set() for k in kinds}
    for vid, v in p.values.items():
        for a in v.args:
            src = p.values[a]
            if src.leaf is Leaf.CARRY:
                a = state_value[src.name]
            elif src.leaf is not None:
                continue
            mine, theirs = p.loop_of[vid], p.loop_of[a]
            if mine in kinds and theirs in kinds and mine is not theirs:
                deps[mine].add(theirs)
    order, todo = [], [k for k in _ORDER if k in kinds]
    while todo:
        ready = next((k for k in todo if deps[k] <= set(order)), None)
        if ready is None:
            raise ModelError("the time loops depend on each other in a cycle: "
                             + ", ".join(k.value for k in todo), None,
                             "forward and backward states that do not read each other")
        order.append(ready)
        todo.remove(ready)
    return order


def schedule(p: Program) -> Program:
    statics, loops = [], {}
    for st in _ordered(p):
        if not st.batched:
            statics.append(st)
        else:
            loops.setdefault(p.loop_of[produced(st)[0]], []).append(st)
    order = loop_order(p, set(loops))
    direction = {LoopKind.BACKWARD: -1}
    made = [Loop(k, direction.get(k, 1), loops[k]) for k in order]
    loss = LossSum(p.loss, p.reduce) if p.loss else None
    return dataclasses.replace(p, statics=statics, loops=made, loss_sum=loss)
