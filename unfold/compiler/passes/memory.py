"""Pass 6, plan_memory: a buffer and a place for every value that is stored.

Everything the backward pass reads is stored once per step: each state's
history (with its initial values in the padding slots), each projection and
matmul output (one buffer per stage, a column range per member), each other
stored value.  Params, inputs and targets are the run's own arrays; packed
weights ([Wi; Wf; Wg; Wo] and its transpose) are made from the params per
call.  A buffer that can carry a gradient gets its adjoint buffer here too.
"""
from __future__ import annotations

import dataclasses

from ...lang.ir import Role
from ..program import Buffer, Layout, Leaf, Place, Program
from ..stages import Apply, Fused, MatMul, Packed, Project

_NO_ADJOINT = (Layout.PACKED, Layout.MASK, Layout.WEIGHTS)


class _Plan:
    def __init__(self, p: Program):
        self.p = p
        self.buffers: list[Buffer] = []
        self.places: dict[str, Place] = {}

    def buffer(self, hint: str, layout: Layout, width: int, adjoint: bool = True, name: str = "",
               **kw) -> Buffer:
        ns = self.p.names
        name = name or ns.fresh(hint)
        adj = None
        if adjoint and layout not in _NO_ADJOINT:
            adj = Buffer(ns.fresh(f"d{name}"), layout, width, holds=f"d {kw.get('holds', name)}",
                         **{k: v for k, v in kw.items() if k != "holds"})
        b = Buffer(name, layout, width, adjoint=adj, **kw)
        self.buffers.append(b)
        return b

    def leaves(self):
        p = self.p
        state_buf = {s.name: self.buffer(f"S_{s.name}", Layout.STATE, s.size, depth=s.depth,
                                         holds=f"state {s.name}", symbol=s.name) for s in p.states}
        for s in p.states:
            self.places[s.value] = Place(state_buf[s.name], 0, s.size)
        symbol_buf: dict[str, Buffer] = {}
        for v in p.values.values():
            if v.leaf is Leaf.CARRY:
                d = p.rec.symbols[v.name].direction
                self.places[v.id] = Place(state_buf[v.name], 0, v.size, -v.offset * d)
            elif v.leaf is Leaf.MASK:
                self.places[v.id] = Place(self.buffer("mask", Layout.MASK, 1, holds="mask"), 0, 1)
            elif v.leaf is not None:
                if v.name not in symbol_buf:
                    symbol_buf[v.name] = self.symbol_buffer(v)
                shift = v.offset if v.leaf is Leaf.INPUT and v.offset else 0
                self.places[v.id] = Place(symbol_buf[v.name], 0, v.size, shift)

    def symbol_buffer(self, v) -> Buffer:
        if v.leaf is Leaf.PARAM:
            return self.buffer(f"p_{v.name}", Layout.PARAM, v.size, adjoint=v.role is Role.PARAM,
                               holds=f"{v.role.value} {v.name}", symbol=v.name, shape=v.shape)
        layout = Layout.INPUT if v.offset is not None else Layout.STATIC_INPUT
        return self.buffer(f"in_{v.name}", layout, v.size, adjoint=v.role is Role.INPUT,
                           holds=f"{v.role.value} {v.name}", symbol=v.name)

    def packed(self, st, w: Packed) -> Packed:
        shape = (w.rows, w.cols)
        return dataclasses.replace(
            w, W=self.buffer(f"W_{st.id}", Layout.PACKED, w.cols, holds=w.text, shape=shape),
            WT=self.buffer(f"WT_{st.id}", Layout.PACKED, w.rows, holds=w.text + "^T", shape=shape[::-1]))

    def product(self, st):
        """A projection's or matmul's output buffer, a column range per member."""
        layout = Layout.SEQ if getattr(st, "batched", True) else Layout.STATIC
        operand = st.input if isinstance(st, Project) else st.operand
        # the stage's id names its output buffer too: they are one thing
        out = self.buffer(st.id, layout, st.weights.rows, name=st.id, holds=f"{st.weights.text} @ {operand}")
        for vid, _, lo, hi in st.weights.parts:
            self.places[vid] = Place(out, lo, hi - lo)
        return dataclasses.replace(st, out=out, weights=self.packed(st, st.weights))

    def value(self, vid: str):
        if vid not in self.places:
            v = self.p.values[vid]
            layout = Layout.SEQ if v.batched else Layout.STATIC
            self.places[vid] = Place(self.buffer(f"V_{vid}", layout, v.size, holds=vid), 0, v.size)

    def stage(self, st):
        if isinstance(st, (Project, MatMul)):
            return self.product(st)
        for vid in ([v for v, _ in st.entries] if isinstance(st, Fused) else [st.value]):
            self.value(vid)
        return st


def plan_memory(p: Program) -> Program:
    plan = _Plan(p)
    plan.leaves()
    projects = [plan.stage(st) for st in p.projects]
    statics = [plan.stage(st) for st in p.statics]
    loops = [dataclasses.replace(loop, stages=[plan.stage(st) for st in loop.stages]) for loop in p.loops]
    if p.loss_sum:
        plan.buffer("lw", Layout.WEIGHTS, 1, holds="loss weights")
    stages = [*statics, *(st for loop in loops for st in loop.stages)]
    return dataclasses.replace(p, projects=projects, statics=statics, loops=loops, places=plan.places,
                               buffers=plan.buffers, matmuls=[st for st in stages if isinstance(st, MatMul)],
                               fused=[st for st in stages if isinstance(st, (Fused, Apply))])
