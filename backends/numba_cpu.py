"""The numba CPU backend: a step program in, readable `@njit` source out.

    source = emit(program, dtype=np.float32)       # a Python module as text
    kernels = build(program, np.float32)            # .forward, .backward, .source

`forward(T, B, trunc, <buffers>)` runs the hoisted GEMMs, the static stages
and the time loops, and returns the loss; `backward(...)` runs the loops in
reverse with every stage's adjoint and ends with the weight-gradient GEMMs
(dW = sum_t dM[t]^T x[t], one matmul over all steps).  Buffers are named and
laid out as `unfold.runtime` says; `Access` turns a value into an index.

Elementwise stages are loops over (batch, unit) whose bodies are printed from
the step program's sympy expressions; `error_model="numpy"` keeps division
checks out of them so LLVM can vectorize, and fastmath leaves infinities
alone (a sigmoid of -1000 is 1/(1+inf) = 0).
"""
from __future__ import annotations

import numpy as np

from unfold.codegen import ScalarPrinter, Writer, assignments
from unfold.lower import Fused, MatMul, OpStage, Program, grad_symbol, symbol
from unfold.runtime import Loc, assigned_adjoints, buffer_widths, locate, stage_reads

FASTMATH = "{'nsz', 'arcp', 'contract', 'afn', 'reassoc'}"
DECORATOR = f"@numba.njit(cache=True, error_model='numpy', fastmath={FASTMATH})"


class Access:
    """Index expressions of values at step `t`, batch `b`, unit `j`."""

    def __init__(self, program: Program):
        self.program = program
        self.used: set[str] = set()

    def loc(self, vid: str) -> Loc:
        return locate(self.program, vid)

    def at(self, loc: Loc, j: str, b: str = "b", t: str = "t", adjoint: bool = False) -> str:
        buf = ("d" if adjoint else "") + loc.buf
        self.used.add(buf)
        j = "0" if loc.size == 1 else j
        col = f"{loc.col} + {j}" if loc.col else j
        if loc.kind == "seq":
            return f"{buf}[{t} - 1, {b}, {col}]"
        if loc.kind == "state":
            return f"{buf}[{plus(t, loc.depth + loc.shift - 1)}, {b}, {j}]"
        if loc.kind == "input":
            return f"{buf}[{plus(t, loc.shift - 1)}, {b}, {j}]"
        if loc.kind == "input_static":
            return f"{buf}[{b}, {j}]"
        if loc.kind == "mask":
            return f"{buf}[{t} - 1, {b}]"
        return f"{buf}[{col}]"

    def read(self, vid: str, j: str, **kw) -> str:
        loc = self.loc(vid)
        text = self.at(loc, j, **kw)
        if loc.kind == "input" and loc.shift < 0:  # before the sequence: zeros
            return f"({text} if t > {-loc.shift} else dt(0.0))"
        return text

    def guard(self, vid: str) -> str | None:
        """The condition under which an adjoint may flow into `vid` at step t."""
        loc = self.loc(vid)
        if loc.kind == "input" and loc.shift < 0:
            return f"t > {-loc.shift}"
        if loc.kind == "state" and loc.shift:
            return keep_name(loc.shift)
        return None

    def rows(self, vid: str, t: str = "t", adjoint: bool = False) -> str:
        """The [B, n] block of a batched value at step t (for matmuls)."""
        loc = self.loc(vid)
        buf = ("d" if adjoint else "") + loc.buf
        self.used.add(buf)
        if loc.kind == "seq":
            return f"{buf}[{t} - 1]" if not loc.col and _full(self.program, loc) else \
                f"{buf}[{t} - 1, :, {loc.col}:{loc.col + loc.size}]"
        if loc.kind == "state":
            return f"{buf}[{plus(t, loc.depth + loc.shift - 1)}]"
        if loc.kind == "input":
            return f"{buf}[{plus(t, loc.shift - 1)}]"
        if loc.kind == "input_static":
            return buf
        return f"{buf}[{loc.col}:{loc.col + loc.size}]" if loc.col or loc.kind == "static" else buf

    def all_rows(self, vid: str, adjoint: bool = False) -> str:
        """The value at every step as one [T*B, n] array (for weight gradients)."""
        loc = self.loc(vid)
        buf = ("d" if adjoint else "") + loc.buf
        self.used.add(buf)
        if loc.kind == "state":
            lo = loc.depth + loc.shift
            return f"{buf}[{lo}:{lo} + T].reshape(T * B, {loc.size})"
        if loc.kind == "input_static":
            return f"_tile({buf}, T)"
        if loc.kind == "seq" and not loc.col and _full(self.program, loc):
            return f"{buf}.reshape(T * B, {loc.size})"
        return f"np.ascontiguousarray({buf}[:, :, {loc.col}:{loc.col + loc.size}]).reshape(T * B, {loc.size})"


def plus(t: str, k: int) -> str:
    """`t + k` as it reads best: t, t + 2, t - 1."""
    return t if k == 0 else f"{t} + {k}" if k > 0 else f"{t} - {-k}"


def steps(loop, adjoint: bool) -> str:
    """The steps of a time loop in the order a pass visits them."""
    return "range(1, T + 1)" if (loop.direction > 0) != adjoint else "range(T, 0, -1)"


def keep_name(shift: int) -> str:
    """The flag saying whether adjoints may reach the state read at t + shift."""
    return f"keep_m{-shift}" if shift < 0 else f"keep_p{shift}"


def _full(program: Program, loc: Loc) -> bool:
    """Does the value fill its whole buffer (so a [B, n] row block is contiguous)?"""
    return loc.buf.startswith("V_") or buffer_widths(program).get(loc.buf) == loc.size


class Emitter:
    def __init__(self, program: Program, dtype, unroll: int = 1, tau: int | None = None):
        self.p = program
        self.dtype = np.dtype(dtype)
        self.unroll, self.tau = unroll, tau
        self.acc = Access(program)
        self.assigned = assigned_adjoints(program)

    # -- elementwise stages --------------------------------------------------
    def names(self, st: Fused, j: str, adjoint: bool):
        """Local names for the inputs, outputs and output adjoints of a stage."""
        env = {}
        for a in st.inputs:
            env[symbol(a)] = self.acc.read(a, j)
        if adjoint:
            for o in st.outputs:
                env[symbol(o)] = self.acc.read(o, j)
                env[grad_symbol(o)] = self.acc.at(self.acc.loc(o), j, adjoint=True)
        return env

    def fused_body(self, w: Writer, st: Fused, j: str, adjoint: bool):
        env = self.names(st, j, adjoint)
        exprs = st.adjoints if adjoint else st.exprs
        used = set().union(*(e.free_symbols for e in exprs.values())) if exprs else set()
        local = {sym: f"_{sym.name}" for sym in env}  # never a buffer's name
        for sym, text in env.items():
            if sym in used:
                w.line(f"{local[sym]} = {text}")
        fast = "_tanh" if self.dtype == np.float32 else "math.tanh"
        temps, results = assignments(exprs, ScalarPrinter(local, tanh=fast))
        for name, text in temps:
            w.line(f"{name} = {text}")
        for key, text in results.items():
            if adjoint:
                self.accumulate(w, key, j, text)
            else:
                w.line(f"{self.acc.at(self.acc.loc(key), j)} = {text}")

    def accumulate(self, w: Writer, vid: str, j: str, text: str):
        target = self.acc.at(self.acc.loc(vid), j, adjoint=True)
        guard = self.acc.guard(vid)
        op = "=" if vid in self.assigned else "+="
        w.line(f"{target} {op} {text}" if not guard else f"if {guard}: {target} {op} {text}")

    def fused(self, w: Writer, st: Fused, adjoint: bool):
        if adjoint and not st.adjoints:
            return
        w.line(f"# {st.id}: {', '.join(st.outputs)}" + (" (adjoint)" if adjoint else ""))
        if not st.batched:
            with w.block(f"for j in range({st.size}):"):
                self.fused_body(w, st, "j", adjoint)
            return
        with w.block("for b in range(B):"):
            with w.block(f"for j in range({st.size}):"):
                self.fused_body(w, st, "j", adjoint)

    # -- matmuls ---------------------------------------------------------------
    def matmul(self, w: Writer, st: MatMul):
        x = self.acc.rows(st.operand)
        self.acc.used.update({st.id, f"W_{st.id}" if not st.batched else f"WT_{st.id}"})
        if not st.batched:  # a param-only product: a matrix times a vector
            n = self.p.values[st.operand].size
            w.line(f"{st.id}[:] = _dot(W_{st.id}, {x}.reshape(({n}, 1)))[:, 0]")
            return
        if "[" in x and ":" in x.split("[", 1)[1]:  # a column block: numba's dot wants contiguous rows
            x = f"np.ascontiguousarray({x})"
        w.line(f"_mm({x}, WT_{st.id}, {st.id}[t - 1])")

    def matmul_adjoint(self, w: Writer, st: MatMul):
        if not self.differentiable(st.operand):
            return
        self.acc.used.update({f"W_{st.id}", f"d{st.id}"})
        if not st.batched:
            w.line(f"_d = _dot(d{st.id}.reshape((1, {st.size})), W_{st.id})[0]")
            self.add_rows(w, st.operand, "_d", static=True)
            return
        w.line(f"_d = _dot(d{st.id}[t - 1], W_{st.id})")
        self.add_rows(w, st.operand, "_d")

    def add_rows(self, w: Writer, vid: str, src: str, static: bool = False):
        guard = self.acc.guard(vid)
        target = self.acc.rows(vid, adjoint=True)
        line = f"_acc({target}, {src})"
        w.line(f"if {guard}: {line}" if guard else line)

    def differentiable(self, vid: str) -> bool:
        v = self.p.values[vid]
        return v.op not in ("mask", "target")

    def weight_gradients(self, w: Writer):
        for st in self.p.stages():
            if not isinstance(st, MatMul):
                continue
            self.acc.used.add(f"d{st.id}")
            if st.batched:
                w.line(f"_dw = _dot(d{st.id}.reshape(T * B, {st.size}).T, {self.acc.all_rows(st.operand)})")
            else:
                w.line(f"_dw = np.outer(d{st.id}, {self.acc.rows(st.operand)})")
            for _, name, lo, hi in st.parts:
                self.acc.used.add(f"dp_{name}")
                w.line(f"_acc(dp_{name}, _dw[{lo}:{hi}])")

    def hoists(self, w: Writer):
        for h in self.p.hoists:
            n = self.p.rec.symbols[h.input].shape[0]
            s = -h.shift
            self.acc.used.update({h.id, f"in_{h.input}", f"WT_{h.id}"})
            rows = plus("T", -s)
            if s:  # the steps before the input starts read zeros (workspaces are reused, not zeroed)
                w.line(f"{h.id}[:{s}] = 0.0")
            w.line(f"_mm(in_{h.input}[:{rows}].reshape(({rows}) * B, {n}), WT_{h.id}, "
                   f"{h.id}[{s}:].reshape(({rows}) * B, {h.size}))")

    def hoist_gradients(self, w: Writer):
        for h in self.p.hoists:
            n = self.p.rec.symbols[h.input].shape[0]
            s = -h.shift
            self.acc.used.update({f"d{h.id}", f"W_{h.id}", f"in_{h.input}"})
            rows = plus("T", -s)
            w.line(f"_dp = d{h.id}[{s}:].reshape(({rows}) * B, {h.size})")
            w.line(f"_dw = _dot(_dp.T, in_{h.input}[:{rows}].reshape(({rows}) * B, {n}))")
            for _, name, lo, hi in h.parts:
                self.acc.used.add(f"dp_{name}")
                w.line(f"_acc(dp_{name}, _dw[{lo}:{hi}])")
            if self.p.rec.symbols[h.input].role.value == "input":
                self.acc.used.add(f"din_{h.input}")
                w.line(f"_acc(din_{h.input}[:{rows}], _dot(_dp, W_{h.id}).reshape({rows}, B, {n}))")

    # -- barrier ops -----------------------------------------------------------
    def op(self, w: Writer, st: OpStage, adjoint: bool):
        from .numba_ops import TEMPLATES
        v = self.p.values[st.value]
        TEMPLATES[v.op](self, w, v, adjoint)

    # -- the whole module ------------------------------------------------------
    def stage(self, w: Writer, st, adjoint: bool):
        if isinstance(st, Fused):
            self.fused(w, st, adjoint)
        elif isinstance(st, MatMul):
            (self.matmul_adjoint if adjoint else self.matmul)(w, st)
        else:
            self.op(w, st, adjoint)

    def keeps(self, w: Writer, stages):
        """Truncated BPTT: may adjoints reach state instances k steps back?"""
        shifts = set()
        for st in stages:
            for vid in stage_reads(self.p, st):
                loc = self.acc.loc(vid)
                if loc.kind == "state" and loc.shift:
                    shifts.add(loc.shift)
        for k in sorted(shifts):
            w.line(f"{keep_name(k)} = _same_window(t, t + {k}, T, trunc)" if k > 0 else
                   f"{keep_name(k)} = _same_window(t, t - {-k}, T, trunc)")

    def time_loop(self, w: Writer, loop, adjoint: bool, body):
        """t over 1..T (or T..1): a loop, k steps per trip, or straight-line for a fixed T."""
        up = (loop.direction > 0) != adjoint
        w.line(f"# loop {loop.label}" + (", adjoint" if adjoint else ""))
        if self.unroll == 1 and self.tau is None:
            with w.block(f"for t in {steps(loop, adjoint)}:"):
                body(w)
            return
        if self.tau is not None:
            for t in (range(1, self.tau + 1) if up else range(self.tau, 0, -1)):
                w.line(f"t = {t}")
                body(w)
            return
        k = self.unroll
        with w.block(f"for t0 in {f'range(1, T + 1, {k})' if up else f'range(T, 0, -{k})'}:"):
            for u in range(k):
                w.line(f"t = t0 {'+' if up else '-'} {u}")
                with w.block("if 1 <= t <= T:"):
                    body(w)

    def forward_body(self, w: Writer):
        self.hoists(w)
        for st in self.p.statics:
            self.stage(w, st, False)
        for loop in self.p.loops:
            def body(w, loop=loop):
                for st in loop.stages:
                    self.stage(w, st, False)
            self.time_loop(w, loop, False, body)
        w.line("loss = 0.0")
        if self.p.loss:
            loc = self.acc.loc(self.p.loss)
            self.acc.used.add("lw")
            with w.block("for t in range(1, T + 1):"):
                with w.block("for b in range(B):"):
                    w.line(f"loss += lw[t - 1, b] * {self.acc.at(loc, '0')}")
        w.line("return loss")

    def loops_backward(self, w: Writer):
        """The time loops in reverse, each stage's adjoint in reverse order."""
        for loop in reversed(self.p.loops):
            def body(w, loop=loop):
                self.keeps(w, loop.stages)
                for st in reversed(loop.stages):
                    self.stage(w, st, True)
            self.time_loop(w, loop, True, body)

    def backward_body(self, w: Writer):
        self.loops_backward(w)
        self.weight_gradients(w)
        for st in reversed(self.p.statics):
            self.stage(w, st, True)
        self.hoist_gradients(w)

    def function(self, name: str, body) -> str:
        w = Writer()
        w.depth = 1
        body(w)
        args = ", ".join(["T", "B", "trunc", *sorted(self.acc.used)])
        head = f"{DECORATOR}\ndef {name}({args}):\n    dt = DT\n"
        return head + w.text(), ["T", "B", "trunc", *sorted(self.acc.used)]


PRELUDE = '''"""Generated by unfold from the step program of `{name}`; do not edit."""
import math

import numba
import numpy as np

from unfold.backends.numba_helpers import _acc, _dot, _mm, _same_window, _tanh, _tile

DT = np.{dtype}

'''


def emit(program: Program, dtype=np.float64, unroll: int = 1, tau: int | None = None):
    """The generated module's source and each function's argument names.
    `tau`: emit straight-line code for exactly that many steps (mode "unrolled")."""
    src = PRELUDE.format(name=program.rec.name, dtype=np.dtype(dtype).name)
    fe = Emitter(program, dtype, unroll, tau)
    fwd, fargs = fe.function("forward", fe.forward_body)
    be = Emitter(program, dtype, unroll, tau)
    bwd, bargs = be.function("backward", be.backward_body)
    return src + "\n" + fwd + "\n\n" + bwd, {"forward": fargs, "backward": bargs}


class Kernels:
    """The generated module's functions, called with buffers by name."""

    def __init__(self, module, args: dict, source: str):
        self.module, self.args, self.source = module, args, source

    def _call(self, name, T, B, trunc, bufs):
        scalars = {"T": T, "B": B, "trunc": trunc}
        return getattr(self.module, name)(*[scalars[a] if a in scalars else bufs[a] for a in self.args[name]])

    def forward(self, T, B, trunc, bufs):
        return self._call("forward", T, B, trunc, bufs)

    def backward(self, T, B, trunc, bufs):
        return self._call("backward", T, B, trunc, bufs)


__all__ = ["emit", "Kernels", "Access", "Emitter"]
