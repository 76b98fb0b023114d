"""The invariants a step program keeps after every pass (`verify(program)`).

- ids: every value id, buffer name and stage id is unique and handed out
  by the program's namespace; a value's arguments are defined before it;
- stages: each value is computed by one stage, and every value a stage reads
  is a leaf, a state carry, or computed by an earlier stage;
- sizes: a packed matmul's members fill its rows; a fused stage's entries
  have its size or are scalars; a place fits in its buffer;
- memory: a buffer is written before it is read within a step; every adjoint
  a backward stage reads is zeroed or assigned first.

A broken invariant is an `AssertionError` naming the pass that broke it.
"""
from __future__ import annotations

from .program import Layout, Leaf, Program
from .stages import Fused, adjoint_reads, produced, stage_reads, writes_of


def _check(ok: bool, message: str):
    if not ok:
        raise AssertionError(message)


def verify(p: Program):
    after = p.passes[-1] if p.passes else "nothing"
    _ids(p, after)
    if p.loops or p.statics:
        _stages(p, after)
    if p.places:
        _places(p, after)
    if p.backward:
        _backward(p, after)


def _ids(p: Program, after: str):
    seen = set()
    for vid, v in p.values.items():
        _check(vid == v.id and vid in p.names, f"after {after}: value {vid} has no id of the namespace")
        for a in v.args:
            _check(a in seen, f"after {after}: {vid} reads {a} before it is defined")
        seen.add(vid)
    names = [b.name for b in p.buffers] + [b.adjoint.name for b in p.buffers if b.adjoint]
    names += [st.id for st in p.fused]  # a projection or matmul stage shares its id with its buffer
    if not p.buffers:
        names += [st.id for st in [*p.projects, *p.matmuls]]
    _check(len(names) == len(set(names)), f"after {after}: a name is used twice: {sorted(names)}")
    clash = set(names) & set(p.values)
    for n in clash:
        _check(False, f"after {after}: {n} is both a value and a buffer or stage")
    for n in names:
        _check(n in p.names, f"after {after}: {n} did not come from the namespace")


def _stages(p: Program, after: str):
    made: dict[str, object] = {}
    ready = {vid for vid, v in p.values.items() if v.leaf is not None}
    for st in p.stages():
        for vid in stage_reads(p, st):
            _check(vid in ready, f"after {after}: stage {st.id} reads {vid} before any stage computes it")
        for vid in produced(st):
            _check(vid not in made, f"after {after}: {vid} is computed by {made.get(vid)} and {st.id}")
            made[vid] = st.id
            ready.add(vid)
        if isinstance(st, Fused):
            for vid, _ in st.entries:
                size = p.values[vid].size
                _check(size in (st.size, 1), f"after {after}: {vid} has {size} units in a stage of {st.size}")
    for st in [*p.projects, *p.matmuls]:
        rows = sum(hi - lo for _, _, lo, hi in st.weights.parts)
        _check(rows == st.weights.rows, f"after {after}: {st.id}'s members do not fill its weights")


def _places(p: Program, after: str):
    for vid, place in p.places.items():
        _check(place.col + place.size <= place.buffer.width,
               f"after {after}: {vid} does not fit in {place.buffer.name}")
        v = p.values[vid]
        _check(place.size == v.size, f"after {after}: {vid} has {v.size} units but its place {place.size}")
    written = {b.name for b in p.buffers if b.layout in (Layout.PARAM, Layout.PACKED, Layout.INPUT,
                                                            Layout.STATIC_INPUT, Layout.MASK, Layout.WEIGHTS)}
    written |= {p.places[s.value].buffer.name for s in p.states}  # the initial values: written by the runtime
    for st in p.stages():
        for vid in stage_reads(p, st):
            v = p.values[vid]
            if v.leaf is None:
                _check(p.places[vid].buffer.name in written,
                       f"after {after}: {st.id} reads {vid} from a buffer nothing wrote yet")
        written |= {p.places[vid].buffer.name for vid in produced(st) if vid in p.places}
    for v in p.values.values():
        if v.leaf is Leaf.CARRY:
            _check(p.places[v.id].shift != 0, f"after {after}: the carry {v.id} reads its own step")


def _backward(p: Program, after: str):
    bw = p.backward
    ready = {b.name for b in bw.zero}
    if bw.seed:
        _check(bw.seed.buffer.name in ready, f"after {after}: the loss seed's buffer is not zeroed")
    for loop in bw.loops:
        for st in loop.stages:
            for b in adjoint_reads(p, st):
                _check(b.name in ready or any(b is w.place.buffer for w in writes_of(st)),
                       f"after {after}: {b.name} is read before it is zeroed or written")
            ready |= {w.place.buffer.name for w in writes_of(st)}
