"""Pass 4, fuse: elementwise chains between barriers become one loop each.

Each value is given the time loop it runs in (`loops_of`: what forward
states need, backward states, what reads no state, what reads both).
Elementwise values of one level between barriers (matmuls, reductions, ...),
of one size and loop, are one `Fused` stage: a loop over (sequence, unit)
computing its `entries` in order.  An entry is a value that must be stored
(read outside the stage, a variable, a state, the loss term), written as one
sympy expression of the stage's inputs and of earlier entries; the values
between entries are inlined.  Every other op is an `Apply` stage.

    F_i: i = sigmoid(P_x[0:4] + M_h_m1[0:4] + bi) ... c = f*c_m1 + g*i; h = o*tanh(c)
"""
from __future__ import annotations

import dataclasses

from ...lang import elementwise as ew
from ...lang.ops import Lowering
from ..program import Leaf, Program, Value, symbol
from ..stages import Apply, Fused, LoopKind


def loops_of(p: Program) -> dict[str, LoopKind]:
    """Which time loop each value runs in.  With only forward states, one loop.

    A value's directions are those of the states it reads; a carry s[t-k] has
    the directions of s's own value, found by iterating to a fixed point (a
    forward state reading a backward one runs in `post`, and so does its carry)."""
    if all(s.direction > 0 for s in p.states):
        return {vid: LoopKind.FORWARD for vid in p.values}
    own = {s.value: {s.direction} for s in p.states}
    carried = {s.name: {s.direction} for s in p.states}
    while True:
        dirs: dict[str, set] = {}
        for vid, v in p.values.items():
            d = set(own.get(vid, ())) | (carried[v.name] if v.leaf is Leaf.CARRY else set())
            for a in v.args:
                d |= dirs[a]
            dirs[vid] = d
        new = {s.name: dirs[s.value] for s in p.states}
        if new == carried:
            break
        carried = new
    kinds = {frozenset(): LoopKind.PRE, frozenset({1}): LoopKind.FORWARD, frozenset({-1}): LoopKind.BACKWARD}
    return {vid: kinds.get(frozenset(d), LoopKind.POST) for vid, d in dirs.items()}


def _levels(values: dict[str, Value]) -> dict[str, int]:
    """Barriers raise the level; elementwise values of one level have no
    barrier between them, so they can share a loop."""
    level = {}
    for vid, v in values.items():
        base = max((level[a] for a in v.args), default=0)
        level[vid] = base + (v.leaf is None and v.op.barrier)
    return level


def groups_of(p: Program, loop_of) -> dict[str, tuple]:
    """elementwise value id -> its group key (level, size, batched, loop)."""
    level = _levels(p.values)
    return {v.id: (level[v.id], v.size, v.batched, loop_of[v.id])
            for v in p.values.values() if v.leaf is None and not v.op.barrier}


def stored(p: Program, groups: dict[str, tuple]) -> set[str]:
    """Values that need a place: read outside their own group, a variable, the loss term."""
    out = set(p.outputs.values()) | ({p.loss} if p.loss else set())
    for v in p.values.values():
        for a in v.args:
            if a not in groups or groups.get(v.id) != groups[a]:
                out.add(a)
    return out


def fused_stage(p: Program, members: list[Value], keep: set[str], stage_id: str) -> Fused:
    ids = {v.id for v in members}
    inputs: list[str] = []
    inline: dict[str, object] = {}
    entries = []
    for v in members:  # in dependency order
        args = []
        for a in v.args:
            if a not in ids and a not in inputs:
                inputs.append(a)
            args.append(inline[a] if a in inline else symbol(a))
        e = ew.compose(v.fn, args)
        if v.id in keep:
            entries.append((v.id, e))
        else:
            inline[v.id] = e
    first = members[0]
    return Fused(stage_id, first.size, inputs, entries, first.batched)


def fuse(p: Program) -> Program:
    loop_of = loops_of(p)
    groups = groups_of(p, loop_of)
    keep = stored(p, groups)
    members: dict[tuple, list[Value]] = {}
    for vid, key in groups.items():
        members.setdefault(key, []).append(p.values[vid])
    stages = [fused_stage(p, vs, keep, p.names.fresh(f"F_{vs[-1].var or vs[-1].id}"))
              for vs in members.values()]
    stages += [Apply(p.names.fresh(f"A_{v.id}"), v.id, v.batched) for v in p.values.values()
               if v.leaf is None and v.op.barrier and v.op.lowering is Lowering.APPLY]
    return dataclasses.replace(p, fused=stages, loop_of=loop_of)
