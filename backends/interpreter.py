"""Target "numpy": an interpreter of the step program.

It runs the program's stages one by one with numpy, reading and writing the
same buffers, in the same places, that the numba targets print index
expressions for: the elementwise stages by evaluating their sympy entries
(`numpy_eval`), the barrier ops by their registry entry's numpy meaning and
adjoint, the matmuls with `@`.  So every pass is checked on numbers before
any kernel is printed: this interpreter must agree with the reference
interpreter of the unfolded DAG on every model.

    fn = uf.compile(rec, target="numpy")
    loss, grads = fn.value_and_grad(params, {"x": x}, {"y": y})
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from unfold.compiler.backend import Backend
from unfold.compiler.listing import listing
from unfold.compiler.program import Layout, Place, Program, symbol
from unfold.compiler.stages import (ApplyAdjoint, Fused, FusedAdjoint, GuardKind, MaskRows, MatMul,
                                    MatMulAdjoint, Mode, Project, ProjectGrad, SumRows, WeightGrad, Write)
from unfold.lang.elementwise import numpy_eval


def same_window(t: int, u: int, T: int, trunc: int) -> bool:
    """Truncated BPTT: are steps t and u in one window of `trunc` steps?"""
    if trunc == 0:
        return True
    return (min(max(t, 1), T) - 1) // trunc == (min(max(u, 1), T) - 1) // trunc


class _Run:
    """One pass over the buffers of a run of T steps and B sequences."""

    def __init__(self, p: Program, T: int, B: int, trunc: int, bufs: dict):
        self.p, self.T, self.B, self.trunc, self.bufs = p, T, B, trunc, bufs
        self.ctx = SimpleNamespace(batch=B, dtype=next(iter(bufs.values())).dtype)

    # -- places --------------------------------------------------------------
    def view(self, place: Place, t: int | None):
        """The array a place names at step t: [B, size], or [size] for params and statics."""
        b, a = place.buffer, self.bufs[place.buffer.name]
        cols = slice(place.col, place.col + place.size)
        if b.layout in (Layout.PARAM, Layout.STATIC):
            return a.reshape(-1)[cols]
        if b.layout in (Layout.STATIC_INPUT, Layout.ROWS):
            return a[:, cols]
        if b.layout is Layout.MASK:
            return a[t - 1][:, None]
        step = t - 1 + place.shift + (b.depth if b.layout is Layout.STATE else 0)
        if b.layout is Layout.INPUT and t + place.shift < 1:
            return None  # before the sequence starts
        return a[step, :, cols]

    def read(self, place: Place, t: int | None):
        v = self.view(place, t)
        return np.zeros((self.B, place.size), self.ctx.dtype) if v is None else v

    def value(self, vid: str, t):
        return self.read(self.p.places[vid], t)

    def store(self, place: Place, t, value):
        self.view(place, t)[...] = value

    def allowed(self, w: Write, t) -> bool:
        g = w.guard
        if g is None:
            return True
        if g.kind is GuardKind.AFTER:
            return t > g.k
        return same_window(t, t + g.k, self.T, self.trunc)

    def put(self, w: Write, t, value):
        """An adjoint write: assigned or accumulated, if its guard allows."""
        if not self.allowed(w, t):
            return
        target = self.view(w.place, t)
        value = np.asarray(value)
        if w.reduce_units:
            value = value.sum(axis=-1, keepdims=True)
        if w.place.buffer.layout is Layout.ROWS and value.ndim == 1:
            target = target[0]   # already summed over the sequences: row 0 holds it
        if w.mode is Mode.SET:
            target[...] = value
        else:
            target += value

    def shaped(self, value, size: int, batched: bool):
        return np.broadcast_to(value, (self.B, size) if batched else (size,))

    # -- forward ---------------------------------------------------------------
    def project(self, st: Project):
        x = self.bufs[self.p.places[st.input].buffer.name]
        out = self.bufs[st.out.name]
        WT = self.bufs[st.weights.WT.name]
        for t in range(1, self.T + 1):
            out[t - 1] = 0.0 if t + st.shift < 1 else x[t - 1 + st.shift] @ WT

    def forward(self, st, t):
        if isinstance(st, MatMul):
            x = self.value(st.operand, t)
            if st.batched:
                self.bufs[st.out.name][t - 1] = x @ self.bufs[st.weights.WT.name]
            else:
                self.bufs[st.out.name][:] = self.bufs[st.weights.W.name] @ x
        elif isinstance(st, Fused):
            env = {symbol(a): self.value(a, t) for a in st.inputs}
            for vid, e in st.entries:
                env[symbol(vid)] = self.shaped(numpy_eval(e, env), st.size, st.batched)
                self.store(self.p.places[vid], t, env[symbol(vid)])
        else:
            v = self.p.values[st.value]
            out = v.op.forward([self.value(a, t) for a in v.args], {**v.node(), "t": t}, self.ctx)
            self.store(self.p.places[v.id], t, self.shaped(out, v.size, v.batched))

    def loss(self) -> float:
        ls = self.p.loss_sum
        place = self.p.places[ls.value]
        lw = self.bufs[self.p.weights.name]
        total = 0.0
        for t in range(1, self.T + 1):
            term = self.read(place, t)[:, 0] if place.buffer.layout.timed else self.read(place, t)[0]
            total += float(np.where(lw[t - 1] != 0, lw[t - 1] * term, 0.0).sum())
        return total

    # -- backward ----------------------------------------------------------------
    def adjoint(self, st, t):
        if isinstance(st, FusedAdjoint):
            self.fused_adjoint(st, t)
        elif isinstance(st, MatMulAdjoint):
            self.matmul_adjoint(st, t)
        elif isinstance(st, ApplyAdjoint):
            self.apply_adjoint(st, t)
        else:
            self.after(st)

    def fused_adjoint(self, st: FusedAdjoint, t):
        f = st.stage
        env = {symbol(a): self.value(a, t) for a in f.inputs}
        env.update({symbol(vid): self.value(vid, t) for vid, _ in f.entries})
        env.update({s: self.read(self.p.places[vid].adjoint(), t) for vid, s in st.external.items()})
        with np.errstate(all="ignore"):   # padding may hold anything: it is selected away below
            for g, e in st.grads:
                env[g] = numpy_eval(e, env)
            values = [self.shaped(numpy_eval(e, env), f.size, f.batched) for _, e in st.writes]
        running = self.running(t) if st.masked else None
        for (w, _), value in zip(st.writes, values):
            self.put(w, t, value if running is None else np.where(running, value, 0.0))
        for w, g in st.holds:   # after a sequence's end a held state passes its adjoint on
            self.put(w, t, np.where(running, 0.0, env[g]))

    def running(self, t) -> np.ndarray:
        """[B, 1]: is each sequence still running at step t?"""
        return self.bufs[self.p.mask.name][t - 1][:, None] != 0

    def apply_adjoint(self, st: ApplyAdjoint, t):
        """The op's vjp; in a masked stage on the running sequences only."""
        v = self.p.values[st.stage.value]
        args = [self.value(a, t) for a in v.args]
        g = self.read(self.p.places[v.id].adjoint(), t)
        rows = self.running(t)[:, 0] if st.masked else np.ones(self.B, bool)
        per_seq = [self.p.values[a].batched for a in v.args]
        args = [a[rows] if b else a for a, b in zip(args, per_seq)]
        ctx = SimpleNamespace(batch=int(rows.sum()), dtype=self.ctx.dtype)
        for i, a in enumerate(v.args):
            if a in st.writes:
                part = v.op.vjp(i, g[rows], args, v.node(), ctx)
                if per_seq[i]:
                    full = np.zeros((self.B,) + part.shape[1:], part.dtype)
                    full[rows] = part
                    part = full
                self.put(st.writes[a], t, part)

    def matmul_adjoint(self, st: MatMulAdjoint, t):
        m = st.stage
        dout = self.bufs[m.out.adjoint.name]
        W = self.bufs[m.weights.W.name]
        if st.write is not None:
            self.put(st.write, t, dout[t - 1] @ W if m.batched else dout @ W)
        if st.parts:
            self.add_parts(st.parts, np.outer(dout, self.value(m.operand, t)))

    def add_parts(self, parts, dW):
        """dW's rows lo..hi into each param's gradient (`parts` lists params, not consts)."""
        for _, name, lo, hi in parts:
            grad = self.bufs[self.p.param_adjoint(name).name]
            grad += dW[lo:hi].reshape(grad.shape)

    def after(self, st):
        if isinstance(st, SumRows):
            self.view(st.target, None)[...] += self.bufs[st.rows.name].sum(axis=0)
        elif isinstance(st, WeightGrad):
            m = st.stage
            dout = self.bufs[m.out.adjoint.name]
            dW = sum(dout[t - 1].T @ self.value(m.operand, t) for t in range(1, self.T + 1))
            self.add_parts(st.parts, dW)
        elif isinstance(st, ProjectGrad):
            self.project_grad(st)
        elif isinstance(st, MaskRows):
            mask = self.bufs[self.p.mask.name][:, :, None] != 0
            self.bufs[st.target.name][...] = np.where(mask, self.bufs[st.source.name], 0.0)
        else:
            self.adjoint(st, None)

    def project_grad(self, st: ProjectGrad):
        pr = st.stage
        dP = self.bufs[pr.out.adjoint.name]
        x = self.bufs[st.x.name]
        W = self.bufs[pr.weights.W.name]
        dW = np.zeros((pr.weights.rows, pr.weights.cols), W.dtype)
        for t in range(max(1, 1 - pr.shift), self.T + 1):
            dW += dP[t - 1].T @ x[t - 1 + pr.shift]
            if st.input_grad is not None:
                self.bufs[st.input_grad.name][t - 1 + pr.shift] += dP[t - 1] @ W
        self.add_parts(st.parts, dW)


def steps(direction: int, T: int):
    return range(1, T + 1) if direction > 0 else range(T, 0, -1)


class Interpreter:
    """The kernels of target "numpy": forward and backward passes that run the program."""

    def __init__(self, program: Program):
        self.program = program
        self.source = listing(program)

    def forward(self, T, B, trunc, bufs, device=False):
        run = _Run(self.program, T, B, trunc, bufs)
        for st in self.program.projects:
            run.project(st)
        for st in self.program.statics:
            run.forward(st, None)
        for loop in self.program.loops:
            for t in steps(loop.direction, T):
                for st in loop.stages:
                    run.forward(st, t)
        return (run.loss() if self.program.loss_sum else 0.0), None

    def backward(self, T, B, trunc, bufs, device=False):
        run = _Run(self.program, T, B, trunc, bufs)
        for loop in self.program.backward.loops:
            for t in steps(loop.direction, T):
                for st in loop.stages:
                    run.adjoint(st, t)
        for st in self.program.backward.after:
            run.after(st)
        return None


class NumpyBackend(Backend):
    name = "numpy"
    generates_source = False

    def kernels(self, program, dtype, unroll=1, tau=None, **options):
        return Interpreter(program)


BACKEND = NumpyBackend()
