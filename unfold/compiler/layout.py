"""The arrays of a run, laid out as the step program's buffers say.

    bufs = prepare(program, run, workspace)     # every forward buffer by name (a `Plan` per shape)
    d = adjoints(program, bufs, run, workspace) # zeroed and seeded as `program.backward` says
    out = outputs(program, bufs, T, B)          # states and intermediates [T, B, ...]
    grads = gradients(program, d, run)          # params, inputs, init:<state>

This is the target-neutral work around the kernels, done on the host for
every target: packing weights, initial values in a state's padding slots,
loss weights, the gradients of initial states.  Workspaces are reused across
calls of one shape: fresh memory costs page faults on every call, more than
the kernels themselves at small sizes.
"""
from __future__ import annotations

import numpy as np

from ..graph.runargs import RunArgs
from ..lang.ir import Reduce, Role
from .program import Layout, Program


class Plan:
    """The arrays of a program's runs of T steps and B sequences, made once:
    the workspace the passes write, the packed weights, the adjoint buffers,
    and what each call fills in.  A call then costs a few dict operations and
    copies (issue: 280 us of Python around a 15 us kernel call at T = 1)."""

    def __init__(self, program: Program, T: int, B: int, dtype):
        self.program, self.T, self.B, self.dtype = program, T, B, np.dtype(dtype)
        written = (Layout.SEQ, Layout.STATE, Layout.STATIC, Layout.PADDED)
        self.arrays = {b.name: np.zeros(b.dims(T, B), dtype) for b in program.buffers if b.layout in written}
        self.packs = []
        for st in [*program.projects, *program.matmuls]:
            w = st.weights
            W, WT = np.zeros(w.W.shape, dtype), np.zeros(w.WT.shape, dtype)
            self.arrays[w.W.name], self.arrays[w.WT.name] = W, WT
            self.packs.append((W, WT, [(name, lo, hi) for _, name, lo, hi in w.parts]))
        self.given = [(b.name, b.symbol, b.dims(T, B)) for b in program.buffers
                      if b.layout in (Layout.PARAM, Layout.INPUT, Layout.STATIC_INPUT)]
        self.states = [(program.places[s.value].buffer.name, s) for s in program.states]
        self.ones = np.ones((T, B), dtype)
        self.masks = [b.name for b in program.buffers if b.layout is Layout.MASK]
        self.lw = [b.name for b in program.buffers if b.layout is Layout.WEIGHTS]
        self.shapes = {b.name: b.dims(T, B) for b in program.buffers}
        self._adjoint = None
        self.calls = 0   # how many runs it was prepared for: a pullback's check that its values are still here

    def prepare(self, run: RunArgs, fresh=()) -> dict[str, np.ndarray]:
        """Every forward buffer; those named in `fresh` are new arrays (returned to the caller)."""
        self.calls += 1
        bufs = dict(self.arrays)
        for name in fresh:
            bufs[name] = np.empty(self.shapes[name], self.dtype)
        for name, symbol, shape in self.given:
            a = run.params.get(symbol)
            if a is None:
                a = run.inputs.get(symbol)
            bufs[name] = (a.reshape(1) if a.ndim == 0 else a) if a is not None else np.zeros(shape, self.dtype)
        for W, WT, parts in self.packs:   # [W1; W2; ...] and its transpose
            for name, lo, hi in parts:
                W[lo:hi] = run.params[name]
                WT[:, lo:hi] = run.params[name].T
        for name in self.masks:
            bufs[name] = self.ones if run.mask is None else np.ascontiguousarray(run.mask[1:], self.dtype)
        for name in self.lw:
            bufs[name] = loss_weights(self.program, run)
        for name, s in self.states:
            S = bufs[name]
            S[:s.depth] = S[self.T + s.depth:] = initial_value(s, run)
        return bufs

    def reused(self):
        """Every array this plan hands to more than one call."""
        yield from self.arrays.values()
        yield from (self._adjoint or {}).values()

    def adjoints(self, bufs: dict, loss_seed: float = 1.0) -> dict[str, np.ndarray]:
        """Every adjoint buffer of the backward pass, zeroed where the program says,
        and the loss seed: d(loss term at t) = loss_seed * lw[t]."""
        bw = self.program.backward
        if self._adjoint is None:
            self._adjoint = {b.name: np.zeros(b.dims(self.T, self.B), self.dtype) for b in bw.buffers}
            self._zero = [self._adjoint[b.name] for b in bw.zero]
        for a in self._zero:
            a.fill(0)
        if bw.seed is not None and loss_seed:
            self._adjoint[bw.seed.buffer.name][:, :, bw.seed.col] += loss_seed * bufs[self.lw[0]]
        return self._adjoint


#: plans kept per workspace: runs of a few shapes reuse their arrays; a
#: stream of ever new shapes (T varying batch to batch) does not pile up memory
PLANS = 4


def plan(program: Program, run: RunArgs, ws: dict) -> Plan:
    """The plan of this program and run shape, from the workspace `ws` (made on first use)."""
    plans = ws.setdefault("plans", {})
    key = (id(program), run.tau, run.batch, run.dtype)
    p = plans.pop(key, None)          # re-inserted below: the dict's order is the use order
    if p is None or p.program is not program:
        p = Plan(program, run.tau, run.batch, run.dtype)
    plans[key] = p
    while len(plans) > PLANS:
        del plans[next(iter(plans))]
    return p


def loss_weights(program: Program, run: RunArgs) -> np.ndarray:
    """lw[t, b]: the weight of step t's loss term of sequence b in the loss."""
    T, B = run.tau, run.batch
    mask = np.ones((T, B)) if run.mask is None else run.mask[1:].astype(float)
    if program.reduce is Reduce.MEAN:
        mask = mask / run.lengths_or_tau[None, :]
    elif program.reduce is Reduce.LAST:  # each sequence's own last step
        mask = np.zeros((T, B))
        mask[run.lengths_or_tau.astype(int) - 1, np.arange(B)] = 1.0
    return np.ascontiguousarray(mask / B, dtype=run.dtype)


def initial_value(s, run: RunArgs) -> np.ndarray:
    given = run.init.get(s.name)
    if given is not None:
        return given
    value = run.params[s.init] if isinstance(s.init, str) else s.init
    return np.broadcast_to(np.asarray(value, run.dtype), (run.batch, s.size))


def output_buffers(program: Program) -> set[str]:
    """Buffers that hold a state or intermediate the forward pass returns."""
    return {program.places[vid].buffer.name for vid in program.outputs.values()}


def prepare(program: Program, run: RunArgs, ws: dict | None = None, fresh=()) -> dict[str, np.ndarray]:
    """Every forward buffer (see `Plan.prepare`); `ws`: where plans are kept."""
    return plan(program, run, {} if ws is None else ws).prepare(run, fresh)


def adjoints(program: Program, bufs: dict, run: RunArgs, ws: dict | None = None,
             loss_seed: float = 1.0) -> dict[str, np.ndarray]:
    """Every adjoint buffer of the backward pass (see `Plan.adjoints`)."""
    return plan(program, run, {} if ws is None else ws).adjoints(bufs, loss_seed)


def outputs(program: Program, bufs: dict, T: int, B: int) -> dict[str, np.ndarray]:
    """Every state and intermediate as [T, B, ...]: views of the buffers made fresh for them."""
    out = {}
    for name, vid in program.outputs.items():
        place = program.places[vid]
        a = bufs[place.buffer.name]
        cols = slice(place.col, place.col + place.size)
        if place.buffer.layout is Layout.STATE:
            out[name] = a[place.buffer.depth:place.buffer.depth + T]
        elif place.buffer.layout is Layout.SEQ:
            out[name] = a[:, :, cols]
        else:  # a param-only value: the same at every step
            out[name] = np.broadcast_to(a[cols], (T, B, place.size)).copy()
    return out


def _gradient_spec(program: Program):
    """What `gradients` reads, worked out once per program: (param and input
    adjoint buffers by key, the keys that no buffer holds, the states)."""
    spec = program.__dict__.get("_gradient_spec")
    if spec is None:
        rec = program.rec
        held = [(b.symbol, b.adjoint.name, rec.symbols[b.symbol].shape if b.layout is Layout.PARAM else None)
                for b in program.buffers
                if b.adjoint is not None and b.layout in (Layout.PARAM, Layout.INPUT, Layout.STATIC_INPUT)]
        names = {k for k, _, _ in held}
        absent = [s for s in rec.of_role(Role.PARAM) + rec.of_role(Role.INPUT) if s.name not in names]
        states = [(s, program.places[s.value].buffer.adjoint.name) for s in program.states]
        spec = program.__dict__["_gradient_spec"] = (held, absent, states)
    return spec


def gradients(program: Program, d: dict, run: RunArgs) -> dict[str, np.ndarray]:
    """The gradients asked for (`program.wrt`: params, inputs, `init:<state>`)
    from the adjoint buffers."""
    held, absent, states = _gradient_spec(program)
    T, B = run.tau, run.batch
    grads = {key: (d[name].reshape(shape) if shape is not None else d[name]).copy()
             for key, name, shape in held if name in d}
    for s in absent:  # read by no equation: no gradient flows to it
        grads[s.name] = np.zeros(s.shape if s.role is Role.PARAM else
                                 ((T,) if s.timed else ()) + (B,) + s.shape, run.dtype)
    for s, name in states:
        dS = d.get(name)
        dinit = np.zeros((B, s.size), run.dtype) if dS is None else dS[:s.depth].sum(0) + dS[T + s.depth:].sum(0)
        grads[f"init:{s.name}"] = dinit
        if isinstance(s.init, str) and run.init.get(s.name) is None and s.init in grads:
            p = grads[s.init]
            grads[s.init] = p + (dinit.sum() if p.shape == () else dinit.sum(0))
    return grads if program.wrt is None else {k: g for k, g in grads.items() if k in program.wrt}
