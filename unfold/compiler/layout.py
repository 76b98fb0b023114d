"""The arrays of a run, laid out as the step program's buffers say.

    bufs = prepare(program, run, workspace)     # every forward buffer by name
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
from .program import Buffer, Layout, Program


def buffer(ws: dict, name: str, shape: tuple, dtype, zero: bool = False) -> np.ndarray:
    """A workspace array of this shape and dtype (zeroed if asked)."""
    a = ws.get(name)
    if a is None or a.shape != tuple(shape) or a.dtype != dtype:
        a = ws[name] = np.zeros(shape, dtype)
    elif zero:
        a.fill(0)
    return a


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


def initial_value(program: Program, s, run: RunArgs) -> np.ndarray:
    given = run.init.get(s.name)
    if given is not None:
        return given
    value = run.params[s.init] if isinstance(s.init, str) else s.init
    return np.broadcast_to(np.asarray(value, run.dtype), (run.batch, s.size))


def output_buffers(program: Program) -> set[str]:
    """Buffers that hold a state or intermediate the forward pass returns."""
    return {program.places[vid].buffer.name for vid in program.outputs.values()}


def _given(b: Buffer, run: RunArgs, ws: dict):
    """A param's or an input's array, as the run gave it (a target the run does not need: zeros)."""
    if b.layout is Layout.PARAM:
        v = run.params[b.symbol]
        return v.reshape(1) if v.ndim == 0 else v
    if b.symbol in run.inputs:
        return run.inputs[b.symbol]
    return buffer(ws, b.name, b.dims(run.tau, run.batch), run.dtype, zero=True)


def _packed(program: Program, run: RunArgs) -> dict[str, np.ndarray]:
    """W = [W1; W2; ...] and its transpose for every projection and matmul stage."""
    out = {}
    for st in [*program.projects, *program.matmuls]:
        w = np.concatenate([run.params[name] for _, name, _, _ in st.weights.parts], axis=0).astype(run.dtype)
        out[st.weights.W.name] = np.ascontiguousarray(w)
        out[st.weights.WT.name] = np.ascontiguousarray(w.T)
    return out


def prepare(program: Program, run: RunArgs, ws: dict | None = None, fresh=()) -> dict[str, np.ndarray]:
    """Every forward buffer.  Buffers named in `fresh` are new arrays (returned
    to the caller); the rest come from the workspace."""
    ws = {} if ws is None else ws
    T, B, dt = run.tau, run.batch, run.dtype
    bufs = _packed(program, run)
    for b in program.buffers:
        if b.layout in (Layout.PARAM, Layout.INPUT, Layout.STATIC_INPUT):
            bufs[b.name] = _given(b, run, ws)
        elif b.layout is Layout.MASK:
            bufs[b.name] = np.ascontiguousarray(np.ones((T, B)) if run.mask is None else run.mask[1:], dt)
        elif b.layout is Layout.WEIGHTS:
            bufs[b.name] = loss_weights(program, run)
        elif b.layout is not Layout.PACKED:  # the forward pass writes every step
            shape = b.dims(T, B)
            bufs[b.name] = np.empty(shape, dt) if b.name in fresh else buffer(ws, b.name, shape, dt)
    for s in program.states:
        S = bufs[program.places[s.value].buffer.name]
        S[:s.depth] = S[T + s.depth:] = initial_value(program, s, run)
    return bufs


def adjoints(program: Program, bufs: dict, run: RunArgs, ws: dict | None = None,
             loss_seed: float = 1.0) -> dict[str, np.ndarray]:
    """Every adjoint buffer of the backward pass, zeroed where the program says,
    and the loss seed: d(loss term at t) = loss_seed * lw[t]."""
    ws = {} if ws is None else ws
    bw = program.backward
    zero = {b.name for b in bw.zero}
    d = {b.name: buffer(ws, b.name, b.dims(run.tau, run.batch), run.dtype, zero=b.name in zero)
         for b in bw.buffers}
    if bw.seed is not None and loss_seed:
        lw = bufs[program.weights.name]
        d[bw.seed.buffer.name][:, :, bw.seed.col] += loss_seed * lw
    return d


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


def gradients(program: Program, d: dict, run: RunArgs) -> dict[str, np.ndarray]:
    """The gradients asked for (`program.wrt`: params, inputs, `init:<state>`)
    from the adjoint buffers."""
    rec, T = program.rec, run.tau
    grads = {}
    for b in program.buffers:
        if b.adjoint is None or b.adjoint.name not in d:
            continue
        if b.layout is Layout.PARAM:
            grads[b.symbol] = d[b.adjoint.name].reshape(rec.symbols[b.symbol].shape).copy()
        elif b.layout in (Layout.INPUT, Layout.STATIC_INPUT):
            grads[b.symbol] = d[b.adjoint.name].copy()
    for s in rec.of_role(Role.PARAM):  # a param no equation reads
        grads.setdefault(s.name, np.zeros(s.shape, run.dtype))
    for s in rec.of_role(Role.INPUT):
        grads.setdefault(s.name, np.zeros(((T,) if s.timed else ()) + (run.batch,) + s.shape, run.dtype))
    for s in program.states:
        dS = d.get(program.places[s.value].buffer.adjoint.name)
        dinit = np.zeros((run.batch, s.size), run.dtype) if dS is None else \
            dS[:s.depth].sum(0) + dS[T + s.depth:].sum(0)
        grads[f"init:{s.name}"] = dinit
        if isinstance(s.init, str) and run.init.get(s.name) is None and s.init in grads:
            p = grads[s.init]
            grads[s.init] = p + (dinit.sum() if p.shape == () else dinit.sum(0))
    return {k: g for k, g in grads.items() if program.wants(k)}
