"""Pass 7, derive_backward: the adjoint of the whole program, as stages.

The backward pass is BPTT on the step program: the loops in reverse, each
stage's adjoint in reverse order, then what leaves the loops.  Decided here,
once, for every target:

- a fused stage's adjoint is its local tape in reverse: each entry's total
  adjoint G (its buffered adjoint, read by later stages, plus what later
  entries of the stage send it, by `sympy.diff`, in terms of stored
  outputs: s*(1-s), 1-tanh^2), then each input's;
- what is assigned (`=`) and what accumulated (`+=`): a value read by one
  stage only, whose adjoint that stage writes whole, is assigned, and a
  buffer of such values is never zeroed; every other adjoint buffer is;
- guards: an input read k steps late gets no adjoint before it starts
  (t > k), a state carry only inside t's truncation window;
- params and param-only values read per step accumulate into per-sequence
  rows [B, n], summed after the loops (no two sequences write one address);
- weight gradients are one GEMM each after the loops (dW = sum_t dM[t]^T x[t]),
  the hoisted projections' gradients two more (dW and dx);
- only what depends on a param, an input or an initial state is differentiated.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict

import sympy as sp

from ...lang.ir import Role
from ..program import Buffer, Layout, Leaf, Place, Program, symbol
from ..stages import (Apply, ApplyAdjoint, Backward, Fused, FusedAdjoint, Guard, GuardKind, Loop, MaskRows,
                      MatMul, MatMulAdjoint, Mode, ProjectGrad, SumRows, WeightGrad, Write, adjoint_reads,
                      stage_reads, writes_of)


def differentiable(p: Program) -> set[str]:
    """Values whose adjoint can reach a gradient that is asked for: those that
    depend on a wanted param or input, or on a state carry that does.  A
    carry s[t-k] does when its initial value is wanted or s's value depends on
    something wanted at any step: found by iterating to a fixed point (an
    echo-state reservoir fed by no wanted param is never differentiated)."""
    carries = {s.name for s in p.states   # an initial value, or the param it is, is asked for
               if p.wants(f"init:{s.name}") or (isinstance(s.init, str) and p.wants(s.init))}
    while True:
        out = set()
        for vid, v in p.values.items():
            if v.leaf is Leaf.CARRY:
                wanted = v.name in carries
            elif v.leaf in (Leaf.PARAM, Leaf.INPUT):
                wanted = v.role in (Role.PARAM, Role.INPUT) and p.wants(v.name)
            else:
                wanted = v.leaf is None and any(a in out for a in v.args)
            if wanted:
                out.add(vid)
        more = carries | {s.name for s in p.states if s.value in out}
        if more == carries:
            return out
        carries = more


def tape(p: Program, st: Fused, external: set[str], grad: set[str]):
    """(entry -> its buffered adjoint's symbol, [(G, total adjoint)], {input: adjoint expr})."""
    contrib: dict[str, list] = defaultdict(list)
    ext, grads = {}, []
    for vid, e in reversed(st.entries):
        terms = contrib.pop(vid, [])
        if vid not in grad:
            continue
        if vid in external:
            ext[vid] = sp.Symbol(p.names.fresh(f"g_{vid}"), real=True)
            terms.insert(0, ext[vid])
        if not terms:
            continue
        if len(terms) == 1 and terms[0] in ext.values():
            total = terms[0]
        else:
            total = sp.Symbol(p.names.fresh(f"G_{vid}"), real=True)
            grads.append((total, sp.Add(*terms)))
        for s in sorted(e.free_symbols, key=lambda s: s.name):
            if s.name not in grad:
                continue
            d = sp.diff(e, s)
            if d != 0:
                contrib[s.name].append(total * (d if e.is_Symbol else d.subs(e, symbol(vid))))
    return ext, grads, {a: sp.Add(*contrib[a]) for a in st.inputs if contrib.get(a)}


class _Derive:
    def __init__(self, p: Program):
        self.p = p
        self.grad = differentiable(p)
        self.rows: dict[str, tuple[Buffer, Buffer]] = {}   # param/static buffer -> (it, its rows)
        self.padded: dict[str, Buffer] = {}                 # input buffer -> its copy, padding zeroed
        self.readers = self._readers()
        #: values whose adjoint buffer receives something from outside the
        #: stages (the loss seed, a cotangent): never assigned over
        self.seeded = {p.outputs[name] for name in p.seeds} | ({p.loss} if p.loss else set())
        self.tapes = {}
        for st in p.fused:
            if isinstance(st, Fused):
                self.tapes[st.id] = tape(p, st, self._external(st), self.grad)
        self.assigned = self._assigned()

    def _readers(self) -> dict[str, list]:
        out = defaultdict(list)
        for st in self.p.stages():
            for vid in stage_reads(self.p, st):
                out[vid].append(st)
        return out

    def _external(self, st: Fused) -> set[str]:
        """Entries whose adjoint comes (partly) from their buffer: read by
        another stage, a state (its carries), or the loss term."""
        states = {s.value for s in self.p.states}
        seeded = {self.p.outputs[name] for name in self.p.seeds}
        return {vid for vid, _ in st.entries if vid in states or vid in seeded or vid == self.p.loss
                or any(r is not st for r in self.readers[vid])}

    def _assigned(self) -> set[str]:
        """Values whose adjoint one stage writes whole, once per step."""
        out = set()
        for vid, readers in self.readers.items():
            if len(readers) != 1 or vid in self.seeded or self.p.places[vid].buffer.layout is not Layout.SEQ:
                continue
            st = readers[0]
            whole = isinstance(st, MatMul) or (isinstance(st, Fused) and st.size == self.p.values[vid].size
                                                and vid in self.tapes[st.id][2])
            if whole and st.batched:
                out.add(vid)
        return out

    # -- writes ------------------------------------------------------------------
    def target(self, vid: str, batched: bool) -> Place:
        place = self.p.places[vid]
        buf = place.buffer
        if batched and buf.layout in (Layout.PARAM, Layout.STATIC):  # per-sequence rows
            if buf.name not in self.rows:
                self.rows[buf.name] = (buf, Buffer(self.p.names.fresh(f"dR_{buf.name}"), Layout.ROWS, buf.width,
                                                   holds=f"rows of d {buf.holds}"))
            return Place(self.rows[buf.name][1], place.col, place.size)
        return place.adjoint()

    def write(self, vid: str, batched: bool, reduce_units: bool = False) -> Write | None:
        if vid not in self.grad:
            return None
        v, place = self.p.values[vid], self.p.places[vid]
        guard = None
        if v.leaf is Leaf.CARRY:
            guard = Guard(GuardKind.WINDOW, place.shift)
        elif v.leaf is Leaf.INPUT and v.offset and v.offset < 0:
            guard = Guard(GuardKind.AFTER, -v.offset)
        mode = Mode.SET if vid in self.assigned and not reduce_units else Mode.ADD
        return Write(vid, self.target(vid, batched), mode, guard, reduce_units)

    # -- stages ------------------------------------------------------------------
    def adjoint(self, st):
        """The adjoint stage of a forward stage, or None when nothing flows back."""
        p = self.p
        if isinstance(st, Fused):
            return self.fused_adjoint(st)
        if isinstance(st, MatMul):
            parts = () if st.batched else self.params_of(st)   # batched: a WeightGrad after the loops
            w = self.write(st.operand, st.batched)
            return MatMulAdjoint(st, w, parts) if (w or parts) else None
        if isinstance(st, Apply):
            writes = {a: self.write(a, st.batched) for a in p.values[st.value].args}
            writes = {a: w for a, w in writes.items() if w is not None}
            return ApplyAdjoint(st, writes, masked=p.masked and st.batched) if writes else None
        raise AssertionError(st)

    def fused_adjoint(self, st: Fused) -> FusedAdjoint | None:
        p = self.p
        ext, grads, inputs = self.tapes[st.id]
        writes = [(self.write(a, st.batched, p.values[a].size == 1 and st.size > 1), e) for a, e in inputs.items()]
        writes = [(w, e) for w, e in writes if w is not None]
        if not (p.masked and st.batched):
            return FusedAdjoint(st, ext, grads, writes) if writes else None
        # with lengths the tape runs where a sequence is running: there where(running, new, prev)
        # is `new`; after its end each held state hands its adjoint to its previous instance
        running = {symbol(v.id): 1 for v in p.values.values() if v.leaf is Leaf.MASK}
        grads = [(g, e.subs(running)) for g, e in grads]
        writes = [(w, e.subs(running)) for w, e in writes]
        holds = [(self.write(p.values[s.value].args[2], True), ext[s.value])
                 for s in p.states if s.value in ext and p.values[s.value].args[2:]]
        holds = [(w, g) for w, g in holds if w is not None]
        return FusedAdjoint(st, ext, grads, writes, holds, masked=True) if writes or holds else None

    def is_param(self, name: str) -> bool:
        return self.p.rec.symbols[name].role is Role.PARAM

    def params_of(self, st) -> tuple:
        """The parts of a packed weight whose gradient is asked for (params, not consts)."""
        return tuple(part for part in st.weights.parts if self.is_param(part[1]) and self.p.wants(part[1]))

    def loops(self) -> list[Loop]:
        out = []
        for loop in reversed(self.p.loops):
            stages = [a for a in (self.adjoint(st) for st in reversed(loop.stages)) if a is not None]
            shifts = {w.guard.k for a in stages for w in writes_of(a)
                      if w.guard is not None and w.guard.kind is GuardKind.WINDOW}
            out.append(Loop(loop.kind, -loop.direction, stages, tuple(sorted(shifts))))
        return out

    def after(self) -> list:
        p = self.p
        out: list = [SumRows(rows, Place(src.adjoint, 0, src.width)) for src, rows in self.rows.values()]
        if p.masked:   # padding rows of what a weight gradient reads are 0
            out += [MaskRows(b, b) for b in dict.fromkeys(p.places[st.operand].buffer for st in p.matmuls
                                                          if st.batched and self.params_of(st)
                                                          and p.places[st.operand].buffer.layout is Layout.SEQ)]
        out += [WeightGrad(st, self.params_of(st)) for st in p.matmuls if st.batched and self.params_of(st)]
        out += [a for a in (self.adjoint(st) for st in reversed(p.statics)) if a is not None]
        for st in p.projects:
            x = p.values[st.input]
            din = p.places[x.id].buffer.adjoint if x.role is Role.INPUT and p.wants(x.name) else None
            if self.params_of(st) or din is not None:
                out += self.project_grad(st, din)
        return out

    def project_grad(self, st, din) -> list:
        """dW += dP^T x (and dx += dP W); with lengths x is read from a copy with the padding zeroed."""
        x = self.p.places[st.input].buffer
        if not self.p.masked:
            return [ProjectGrad(st, self.params_of(st), din, x)]
        if x.name not in self.padded:
            self.padded[x.name] = Buffer(self.p.names.fresh(f"{x.name}_running"), Layout.PADDED, x.width,
                                         holds=f"{x.holds}, 0 after each end", symbol=x.symbol)
        pad = self.padded[x.name]
        return [MaskRows(x, pad), ProjectGrad(st, self.params_of(st), din, pad)]


def _memory(p: Program, stages: list, assigned: set[str]) -> tuple[list[Buffer], list[Buffer]]:
    """(every adjoint buffer the pass uses, those the runtime zeroes first).
    A buffer needs no zeroing when every value in it is assigned, once per step."""
    used: dict[str, Buffer] = {}
    for st in stages:
        for b in [*adjoint_reads(p, st), *(w.place.buffer for w in writes_of(st))]:
            used[b.name] = b
        if isinstance(st, SumRows):
            used[st.target.buffer.name] = st.target.buffer
    for b in p.buffers:  # the gradients the run returns: params, inputs, initial states
        key = f"init:{b.symbol}" if b.layout is Layout.STATE else b.symbol
        if b.adjoint is not None and b.layout in (Layout.PARAM, Layout.INPUT, Layout.STATIC_INPUT, Layout.STATE) \
                and p.wants(key):
            used[b.adjoint.name] = b.adjoint
    for name in p.seeds:   # the adjoints that take outside cotangents
        b = p.places[p.outputs[name]].buffer.adjoint
        used[b.name] = b
    members = defaultdict(list)
    for vid, place in p.places.items():
        if place.buffer.adjoint is not None:
            members[place.buffer.adjoint.name].append(vid)
    zero = [b for name, b in used.items()
            if not (b.layout is Layout.SEQ and members[name] and all(v in assigned for v in members[name]))]
    return list(used.values()), zero


def derive_backward(p: Program) -> Program:
    d = _Derive(p)
    loops, after = d.loops(), d.after()
    stages = [*(st for loop in loops for st in loop.stages), *after]
    used, zero = _memory(p, stages, d.assigned)
    seed = p.places[p.loss].adjoint() if p.loss else None
    return dataclasses.replace(p, backward=Backward(zero, seed, loops, after, used),
                               buffers=[*p.buffers, *d.padded.values()])
