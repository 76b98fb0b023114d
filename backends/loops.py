"""The stage printer both numba targets share: stages as Python loops.

    printer = CpuPrinter(program, np.float32)      # or a CUDA kernel printer
    printer.stage(w, st)                           # a forward or backward stage, at step t

A place becomes an index expression (`S_h[t - 1, b, j]`, `P_x[t - 1, b, 4 + j]`),
a fused stage a loop over (sequence, unit) whose body is its sympy entries
printed by `ScalarPrinter`, a backward stage the writes the step program
decided (`=` or `+=`, under its guard).  What differs between targets is
data and a few methods: how a stage loops over its sequences and units
(`batch_head`, `units`), and how matmuls run (BLAS on the CPU, kernels on
the GPU).  The op templates of the registry (`Op.numba`) print through
`read`, `at`, `write`, `batch` and `size`.
"""
from __future__ import annotations

import contextlib
import itertools

import numpy as np

from unfold.compiler.printer import ScalarPrinter, Writer, assignments
from unfold.compiler.program import Layout, Place, Program
from unfold.compiler.stages import Apply, ApplyAdjoint, Fused, FusedAdjoint, GuardKind, Mode, Write

FASTMATH = "{'nsz', 'arcp', 'contract', 'afn', 'reassoc'}"


def plus(t: str, k: int) -> str:
    """`t + k` as it reads best: t, t + 2, t - 1."""
    return t if k == 0 else f"{t} + {k}" if k > 0 else f"{t} - {-k}"


def keep_name(shift: int) -> str:
    """The flag saying whether adjoints may reach the state read at t + shift."""
    return f"_keep_m{-shift}" if shift < 0 else f"_keep_p{shift}"


def steps(direction: int) -> str:
    """The steps of a time loop in the order it visits them."""
    return "range(1, T + 1)" if direction > 0 else "range(T, 0, -1)"


class StagePrinter:
    """See the module docstring.  `used` collects the buffers a function touches."""
    batch_head = "for b in range(B):"

    def __init__(self, program: Program, dtype, unroll: int = 1, tau: int | None = None):
        self.p, self.dtype = program, np.dtype(dtype)
        self.unroll, self.tau = unroll, tau
        self.temps = itertools.count()
        self.used: set[str] = set()
        self.writes: dict[str, Write] = {}
        self.running_only = False   # printing a masked stage: skip the sequences that have ended

    @property
    def tanh(self) -> str:
        return "math.tanh"

    # -- index expressions ------------------------------------------------------
    def index(self, place: Place, j: str, t: str = "t", b: str = "b") -> str:
        buf = place.buffer
        self.used.add(buf.name)
        j = "0" if place.size == 1 else j
        col = plus(j, place.col) if place.col else j
        layout = buf.layout
        if layout is Layout.SEQ:
            return f"{buf.name}[{t} - 1, {b}, {col}]"
        if layout is Layout.STATE:
            return f"{buf.name}[{plus(t, buf.depth + place.shift - 1)}, {b}, {j}]"
        if layout is Layout.INPUT:
            return f"{buf.name}[{plus(t, place.shift - 1)}, {b}, {j}]"
        if layout in (Layout.STATIC_INPUT, Layout.ROWS):
            return f"{buf.name}[{b}, {col}]"
        if layout is Layout.MASK:
            return f"{buf.name}[{t} - 1, {b}]"
        return f"{buf.name}[{col}]"

    def at(self, vid: str, j: str, adjoint: bool = False) -> str:
        place = self.p.places[vid]
        return self.index(place.adjoint() if adjoint else place, j)

    def read(self, vid: str, j: str) -> str:
        place = self.p.places[vid]
        text = self.index(place, j)
        if place.buffer.layout is Layout.INPUT and place.shift < 0:  # before the sequence: zeros
            return f"({text} if t > {-place.shift} else dt(0.0))"
        return text

    def size(self, vid: str) -> int:
        return self.p.values[vid].size

    def rows(self, place: Place, t: str = "t") -> str:
        """The [B, n] block of a batched place at step t (for matmuls)."""
        buf = place.buffer
        self.used.add(buf.name)
        cols = "" if place.whole else f", :, {place.col}:{place.col + place.size}"
        if buf.layout is Layout.SEQ:
            return f"{buf.name}[{t} - 1{cols}]"
        if buf.layout is Layout.STATE:
            return f"{buf.name}[{plus(t, buf.depth + place.shift - 1)}]"
        if buf.layout is Layout.INPUT:
            return f"{buf.name}[{plus(t, place.shift - 1)}]"
        if buf.layout in (Layout.STATIC_INPUT, Layout.ROWS):
            return buf.name
        return f"{buf.name}[{place.col}:{place.col + place.size}]" if not place.whole else buf.name

    # -- writes ------------------------------------------------------------------
    def guard(self, write: Write) -> str | None:
        g = write.guard
        if g is None:
            return None
        return f"t > {g.k}" if g.kind is GuardKind.AFTER else keep_name(g.k)

    def put(self, w: Writer, write: Write, j: str, text: str):
        """One adjoint write, as the program says: `=` or `+=`, under its guard."""
        line = f"{self.index(write.place, j)} {write.mode.value} {text}"
        cond = self.guard(write)
        w.line(f"if {cond}: {line}" if cond else line)

    def write(self, w: Writer, vid: str, j: str, text: str):
        """An op template's adjoint write for argument `vid` (nothing if it has none)."""
        if vid in self.writes:
            self.put(w, self.writes[vid], j, text)

    @contextlib.contextmanager
    def batch(self, w: Writer, v):
        """The loop over the sequences of a batched value (a param-only one has none);
        inside a masked adjoint (runs with lengths) only the running ones."""
        if v.batched:
            with w.block(self.batch_head):
                if self.running_only:
                    w.line(f"if {self.mask()}[t - 1, b] == 0: continue")
                yield
        else:
            yield

    def mask(self) -> str:
        self.used.add(self.p.mask.name)
        return self.p.mask.name

    @contextlib.contextmanager
    def units(self, w: Writer, st):
        """Every (sequence, unit) of a fused stage once."""
        with self.batch(w, st):
            with w.block(f"for j in range({st.size}):"):
                yield

    # -- elementwise stages ----------------------------------------------------------
    def printer(self) -> ScalarPrinter:
        return ScalarPrinter(tanh=self.tanh)

    def temp(self) -> str:
        """A new temporary of the function being printed (printer locals start with `_`)."""
        return f"_z{next(self.temps)}"

    def inputs(self, w: Writer, vids, used: set):
        """Locals for the stage inputs and entries the expressions read."""
        for vid in vids:
            if vid in used:
                w.line(f"{vid} = {self.read(vid, 'j')}")

    def assign(self, w: Writer, name: str, expr):
        lines, out = assignments({name: expr}, self.printer(), self.temp)
        for t, text in lines:
            w.line(f"{t} = {text}")
        w.line(f"{name} = {out[name]}")

    def fused(self, w: Writer, st: Fused):
        w.line(f"# {st.id}: {', '.join(v for v, _ in st.entries)}")
        with self.units(w, st):
            self.fused_body(w, st)

    def fused_body(self, w: Writer, st: Fused):
        used = {s.name for _, e in st.entries for s in e.free_symbols}
        self.inputs(w, st.inputs, used)
        for vid, e in st.entries:
            self.assign(w, vid, e)
            w.line(f"{self.at(vid, 'j')} = {vid}")

    def fused_adjoint(self, w: Writer, st: FusedAdjoint):
        w.line(f"# {st.stage.id} (adjoint)")
        if not st.masked:
            with self.units(w, st.stage):
                self.adjoint_body(w, st, st.writes)
            return
        with self.batch(w, st.stage):  # where a sequence has ended only its held states pass adjoints on
            with w.block(f"if {self.mask()}[t - 1, b] != 0:"):
                with w.block(f"for j in range({st.stage.size}):"):
                    self.adjoint_body(w, st, st.writes)
            with w.block("else:"):
                with w.block(f"for j in range({st.stage.size}):"):
                    self.hold_body(w, st)

    def hold_body(self, w: Writer, st: FusedAdjoint):
        """After a sequence's end: held states pass their adjoint on, assigned adjoints are 0."""
        for wr, g in st.holds:
            vid = next(v for v, s in st.external.items() if s == g)
            self.put(w, wr, "j", self.at(vid, "j", adjoint=True))
        for wr, _ in st.writes:
            if wr.mode is Mode.SET:
                self.put(w, wr, "j", "dt(0.0)")
        if not st.holds and not any(wr.mode is Mode.SET for wr, _ in st.writes):
            w.line("pass")

    def adjoint_body(self, w: Writer, st: FusedAdjoint, writes):
        """The local tape: buffered adjoints, each entry's total adjoint, the writes."""
        f = st.stage
        exprs = [e for _, e in st.grads] + [e for _, e in writes]
        used = {s.name for e in exprs for s in e.free_symbols}
        self.inputs(w, [*f.inputs, *(v for v, _ in f.entries)], used)
        for vid, s in st.external.items():
            if s.name in used:
                w.line(f"{s.name} = {self.at(vid, 'j', adjoint=True)}")
        lines, out = assignments({k: e for k, (_, e) in enumerate(writes)}, self.printer(), self.temp,
                                 defs=st.grads)
        for name, text in lines:
            w.line(f"{name} = {text}")
        for k, (wr, _) in enumerate(writes):
            self.put(w, wr, "j", out[k])

    # -- barrier ops -------------------------------------------------------------------
    def apply(self, w: Writer, st: Apply):
        v = self.p.values[st.value]
        v.op.numba(self, w, v, False)

    def apply_adjoint(self, w: Writer, st: ApplyAdjoint):
        v = self.p.values[st.stage.value]
        self.writes, self.running_only = st.writes, st.masked
        v.op.numba(self, w, v, True)
        self.writes, self.running_only = {}, False

    def mask_rows(self, w: Writer, st):
        """Steps after a sequence's end read as 0 by the weight gradients."""
        src, dst, m = st.source.name, st.target.name, self.mask()
        self.used.update({src, dst})
        with w.block("for t in range(1, T + 1):"):
            with w.block("for b in range(B):"):
                with w.block(f"if {m}[t - 1, b] == 0:"):
                    w.line(f"{dst}[t - 1, b, :] = 0.0")
                if src != dst:
                    with w.block("else:"):
                        w.line(f"{dst}[t - 1, b, :] = {src}[t - 1, b, :]")

    # -- time loops -----------------------------------------------------------------------
    def windows(self, w: Writer, loop):
        """Truncated BPTT: may adjoints reach the state instances at t + k?"""
        for k in loop.windows:
            w.line(f"{keep_name(k)} = _same_window(t, {plus('t', k)}, T, trunc)")

    def time_loop(self, w: Writer, loop, body):
        """t over the loop's steps: a loop, k steps per trip, or straight-line for a fixed T."""
        up = loop.direction > 0
        w.line(f"# loop {loop.kind.value}")
        if self.tau is not None:
            for t in (range(1, self.tau + 1) if up else range(self.tau, 0, -1)):
                w.line(f"t = {t}")
                body(w)
            return
        if self.unroll == 1:
            with w.block(f"for t in {steps(loop.direction)}:"):
                body(w)
            return
        k = self.unroll
        with w.block(f"for _t0 in {f'range(1, T + 1, {k})' if up else f'range(T, 0, -{k})'}:"):
            for u in range(k):
                w.line(f"t = _t0 {'+' if up else '-'} {u}")
                with w.block("if 1 <= t <= T:"):
                    body(w)

    def loss_sum(self, w: Writer):
        """_loss = sum over t, b of lw * term; a term of weight 0 is not read."""
        w.line("_loss = 0.0")
        ls = self.p.loss_sum
        if ls is None:
            return
        lw = self.p.weights.name
        self.used.add(lw)
        with w.block("for t in range(1, T + 1):"):
            with w.block("for b in range(B):"):
                w.line(f"if {lw}[t - 1, b] != 0: _loss += {lw}[t - 1, b] * {self.at(ls.value, '0')}")
