"""Buffers of a compiled step program: where every value lives, and the
target-neutral work around the kernels (packing weights, initial states,
loss weights, gradients of initial states).

Layout (time-major, t = 1..T is index t-1 unless said otherwise):

    p_W        a param                       in_x   an input [T, B, n] (or [B, n])
    W_M, WT_M  a packed weight [m, n], its transpose [n, m]
    P_x        hoisted projections [T, B, m]  M_op   a per-step matmul group [T, B, m]
    V_v        any other stored value [T, B, n] ([n] if it reads only params)
    S_h        a state's history [T + 2d, B, n]: step t at index t-1+d; the d
               slots on each side hold the initial value (d = deepest delay)
    mask, lw   [T, B]: 1 where a sequence is running; the loss weight of each step

Adjoints use the same names with a `d` in front; `dp_W` is a param's gradient.
Both backends index buffers through `Loc`, so they agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import Reduce, Role
from .lower import Fused, MatMul, Program
from .runargs import RunArgs


@dataclass(frozen=True)
class Loc:
    buf: str
    kind: str          # seq | state | input | input_static | static | param | mask
    size: int
    col: int = 0       # first column in the buffer
    shift: int = 0     # read at step t + shift
    depth: int = 0     # states: padding on each side


def locate(program: Program, vid: str) -> Loc:
    v = program.values[vid]
    for s in program.states:
        if s.value == vid:
            return Loc(f"S_{s.name}", "state", s.size, depth=s.depth)
    if v.op == "carry":
        s = next(s for s in program.states if s.name == v.name)
        return Loc(f"S_{s.name}", "state", s.size, shift=-v.offset * s.direction, depth=s.depth)
    if v.op == "param":
        return Loc(f"p_{v.name}", "param", v.size)
    if v.op in ("input", "target"):
        return Loc(f"in_{v.name}", "input" if v.offset is not None else "input_static", v.size,
                   shift=v.offset or 0)
    if v.op == "mask":
        return Loc("mask", "mask", 1)
    for st in [*program.hoists, *(s for s in program.stages() if isinstance(s, MatMul))]:
        for member, _, lo, _ in st.parts:
            if member == vid:
                return Loc(st.id, "seq" if v.batched else "static", v.size, col=lo)
    return Loc(f"V_{vid}", "seq" if v.batched else "static", v.size)


def buffer_widths(program: Program) -> dict[str, int]:
    """Columns of the packed buffers (hoisted projections and matmul groups)."""
    return {st.id: st.size for st in [*program.hoists, *matmul_stages(program)]}


def matmul_stages(program: Program) -> list[MatMul]:
    return [s for s in program.stages() if isinstance(s, MatMul)]


def stored_values(program: Program) -> list[str]:
    """Values with a V_ buffer of their own."""
    out = []
    for st in program.stages():
        ids = st.outputs if isinstance(st, Fused) else [] if isinstance(st, MatMul) else [st.value]
        out += [v for v in ids if locate(program, v).buf == f"V_{v}"]
    return out


def forward_shapes(program: Program, T: int, B: int) -> dict[str, tuple]:
    """Every buffer the forward pass writes, with its shape."""
    shapes = {}
    for h in program.hoists:
        shapes[h.id] = (T, B, h.size)
    for st in matmul_stages(program):
        shapes[st.id] = (T, B, st.size) if st.batched else (st.size,)
    for s in program.states:
        shapes[f"S_{s.name}"] = (T + 2 * s.depth, B, s.size)
    for vid in stored_values(program):
        v = program.values[vid]
        shapes[f"V_{vid}"] = (T, B, v.size) if v.batched else (v.size,)
    return shapes


def packed_weights(program: Program, params: dict[str, np.ndarray], dtype) -> dict[str, np.ndarray]:
    """W_<stage> = [W1; W2; ...] and its transpose, for every hoist and matmul stage."""
    out = {}
    for st in [*program.hoists, *matmul_stages(program)]:
        w = np.concatenate([params[name] for _, name, _, _ in st.parts], axis=0).astype(dtype)
        out[f"W_{st.id}"] = np.ascontiguousarray(w)
        out[f"WT_{st.id}"] = np.ascontiguousarray(w.T)
    return out


def loss_weights(program: Program, run: RunArgs) -> np.ndarray:
    """lw[t, b]: the weight of step t's loss term of sequence b in the loss."""
    T, B = run.tau, run.batch
    mask = np.ones((T, B)) if run.mask is None else run.mask[1:].astype(float)
    if program.reduce is Reduce.MEAN:
        mask = mask / run.lengths_or_tau[None, :]
    elif program.reduce is Reduce.LAST:
        mask = np.zeros((T, B))
        mask[-1] = 1.0
    return np.ascontiguousarray(mask / B, dtype=run.dtype)


def buffer(ws: dict, name: str, shape: tuple, dtype, zero: bool = False) -> np.ndarray:
    """A workspace array, reused across calls of one shape: fresh memory costs
    page faults on every call, more than the kernels themselves at small sizes."""
    a = ws.get(name)
    if a is None or a.shape != tuple(shape) or a.dtype != dtype:
        a = ws[name] = np.zeros(shape, dtype)
    elif zero:
        a.fill(0)
    return a


def output_buffers(program: Program) -> set[str]:
    """Buffers that hold a state or intermediate the forward pass returns."""
    return {locate(program, vid).buf for vid in program.outputs.values()}


def prepare(program: Program, run: RunArgs, ws: dict | None = None, fresh=()) -> dict[str, np.ndarray]:
    """Every forward buffer: params, packed weights, inputs, states with their
    initial values, histories, mask and loss weights.  Buffers named in `fresh`
    are new arrays (returned to the caller); the rest come from the workspace."""
    ws = {} if ws is None else ws
    dt, T, B = run.dtype, run.tau, run.batch
    bufs = {f"p_{k}": (v.reshape(1) if v.ndim == 0 else v) for k, v in run.params.items()}
    bufs.update(packed_weights(program, run.params, dt))
    bufs.update({f"in_{k}": v for k, v in run.inputs.items()})
    for s in program.rec.of_role(Role.TARGET):  # a target the run does not need
        if f"in_{s.name}" not in bufs:
            bufs[f"in_{s.name}"] = buffer(ws, f"in_{s.name}", ((T,) if s.timed else ()) + (B,) + s.shape, dt, True)
    for name, shape in forward_shapes(program, T, B).items():  # the forward pass writes every step
        bufs[name] = np.empty(shape, dt) if name in fresh else buffer(ws, name, shape, dt)
    for s in program.states:
        bufs[f"S_{s.name}"][:s.depth] = initial_value(program, s, run)
        bufs[f"S_{s.name}"][T + s.depth:] = initial_value(program, s, run)
    bufs["mask"] = np.ascontiguousarray((np.ones((T, B)) if run.mask is None else run.mask[1:]), dt)
    bufs["lw"] = loss_weights(program, run)
    return bufs


def initial_value(program: Program, s, run: RunArgs) -> np.ndarray:
    given = run.init.get(s.name)
    if given is not None:
        return given
    value = run.params[s.init] if isinstance(s.init, str) else s.init
    return np.broadcast_to(np.asarray(value, run.dtype), (run.batch, s.size))


def stage_reads(program: Program, st) -> list[str]:
    """The values a stage reads (an elementwise stage's inputs, a matmul's
    operand, a barrier op's arguments)."""
    if isinstance(st, Fused):
        return list(st.inputs)
    if isinstance(st, MatMul):
        return [st.operand]
    return list(program.values[st.value].args)


def assigned_adjoints(program: Program) -> set[str]:
    """Values whose adjoint one elementwise stage writes whole, once per step:
    the backward pass stores it (`=`) instead of adding, and its buffer needs
    no zeroing when every value in it is such a value."""
    readers: dict[str, int] = {}
    writer: dict[str, Fused] = {}
    for st in program.stages():
        for vid in stage_reads(program, st):
            readers[vid] = readers.get(vid, 0) + 1
            if isinstance(st, Fused) and vid in st.adjoints:
                writer[vid] = st
    return {vid for vid, n in readers.items() if n == 1 and vid in writer and vid != program.loss
            and writer[vid].size == program.values[vid].size
            and locate(program, vid).kind == "seq"}


def unzeroed_buffers(program: Program) -> set[str]:
    """Adjoint buffers written whole by `assigned_adjoints` values."""
    assigned = assigned_adjoints(program)
    by_buf: dict[str, list[str]] = {}
    for vid, v in program.values.items():
        if v.batched and v.op not in ("param", "input", "target", "carry", "mask"):
            by_buf.setdefault(locate(program, vid).buf, []).append(vid)
    covered = {}
    for buf, vids in by_buf.items():
        width = sum(program.values[v].size for v in vids)
        full = buffer_widths(program).get(buf, width)
        covered[buf] = all(v in assigned for v in vids) and width == full
    return {f"d{b}" for b, ok in covered.items() if ok}


def adjoint_buffers(program: Program, bufs: dict[str, np.ndarray], run: RunArgs, names,
                    ws: dict | None = None) -> dict[str, np.ndarray]:
    """Zeroed adjoints of the buffers in `names` (what the backward kernel reads),
    of every param and input, and the loss seed: d(loss term at t) = lw[t]."""
    ws = {} if ws is None else ws
    wanted = {n[1:] for n in names if n.startswith("d")} | {f"p_{k}" for k in run.params} \
        | {f"in_{k}" for k in run.inputs} | {f"S_{s.name}" for s in program.states}
    keep = unzeroed_buffers(program)
    d = {f"d{n}": buffer(ws, f"d{n}", bufs[n].shape, bufs[n].dtype, zero=f"d{n}" not in keep)
         for n in sorted(wanted)}
    if program.loss:
        loc = locate(program, program.loss)
        seed = d[f"d{loc.buf}"]
        seed[loc.depth:loc.depth + run.tau, :, loc.col] += bufs["lw"]
    return d


def outputs(program: Program, bufs: dict[str, np.ndarray], T: int) -> dict[str, np.ndarray]:
    """Every state and intermediate as [T, B, ...], like the reference's evaluate:
    views of the buffers `prepare` made fresh for them."""
    out = {}
    for name, vid in program.outputs.items():
        loc = locate(program, vid)
        a = bufs[loc.buf]
        if loc.kind == "state":
            out[name] = a[loc.depth:loc.depth + T]
        elif loc.kind == "seq":
            out[name] = a[:, :, loc.col:loc.col + loc.size]
        else:  # a param-only value: the same at every step (every variable has a value of
            # its own, so an output never is an input's or a carry's buffer; see lower.extract)
            out[name] = np.broadcast_to(a[loc.col:loc.col + loc.size], (T, bufs["lw"].shape[1], loc.size)).copy()
    return out


def gradients(program: Program, d: dict[str, np.ndarray], run: RunArgs) -> dict[str, np.ndarray]:
    """Param, input and initial-state gradients from the adjoint buffers."""
    rec, T = program.rec, run.tau
    grads = {s.name: d[f"dp_{s.name}"].reshape(s.shape).copy() for s in rec.of_role(Role.PARAM)}
    grads.update({s.name: d[f"din_{s.name}"].copy() for s in rec.of_role(Role.INPUT)})
    for s in program.states:
        dS = d[f"dS_{s.name}"]
        dinit = dS[:s.depth].sum(0) + dS[T + s.depth:].sum(0)
        grads[f"init:{s.name}"] = dinit
        if isinstance(s.init, str) and run.init.get(s.name) is None and s.init in grads:
            p = grads[s.init]
            grads[s.init] = p + (dinit.sum() if p.shape == () else dinit.sum(0))
    return grads


__all__ = ["Loc", "locate", "prepare", "adjoint_buffers", "outputs", "gradients"]
