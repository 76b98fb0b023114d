"""The CUDA target's kernels: the shared stage printer, with threads.

The stages print as in the CPU target (`backends.loops`); what differs is who
does what.  In a persistent kernel block k owns the sequences
_b0 = k*S .. _b0+S-1 and its threads share the (sequence, unit) pairs of each
stage (`units`), with a barrier after each stage; one thread per sequence runs
an op template's loop (`batch_head`) and sums a scalar's adjoint over the
units.  In the one-block kernel of the param-only stages the threads share
the units.  A stepwise kernel is one stage at one step over the whole grid:
a tiled matmul, or the same stage body with the grid for a block.
"""
from __future__ import annotations

import contextlib
import dataclasses

from unfold.compiler.printer import Writer
from unfold.compiler.program import Program
from unfold.compiler.stages import Apply, ApplyAdjoint, Fused, FusedAdjoint, MatMul, MatMulAdjoint

from ..loops import StagePrinter


def body() -> Writer:
    """Lines at a function body's depth."""
    w = Writer()
    w.depth = 1
    return w


class CudaPrinter(StagePrinter):
    batch_head = "for b in range(_b0 + _tid, _b0 + _nb, _nthr):"

    def __init__(self, program: Program, dtype, unroll: int = 1, tau: int | None = None):
        super().__init__(program, dtype, unroll, tau)
        self.stepwise = False               # printing one stage as a kernel over the whole grid
        self.shared: dict[str, tuple] = {}  # weight buffer -> shape, in shared memory

    # -- who does what -------------------------------------------------------
    @contextlib.contextmanager
    def units(self, w: Writer, st):
        """Every (sequence, unit) of the block's sequences (or every unit of a param-only stage), once."""
        n = st.size
        if not st.batched:
            with w.block(f"for j in range(_tid, {n}, _nthr):"):
                yield
            return
        with w.block(f"for q in range(_tid, _nb * {n}, _nthr):"):
            w.line(f"b = _b0 + q // {n}")
            w.line(f"j = q % {n}")
            yield

    @contextlib.contextmanager
    def batch(self, w: Writer, v):
        """One thread per sequence (thread 0 for a param-only value); inside a
        masked adjoint (runs with lengths) only the running sequences."""
        with w.block(self.batch_head if v.batched else "if _tid == 0:"):
            if self.running_only and v.batched:
                w.line(f"if {self.mask()}[t - 1, b] == 0: continue")
            yield

    # -- stages ----------------------------------------------------------------
    def fused_adjoint(self, w: Writer, st: FusedAdjoint):
        w.line(f"# {st.stage.id} (adjoint)")
        full = [(wr, e) for wr, e in st.writes if not wr.reduce_units]
        scalar = [(wr, e) for wr, e in st.writes if wr.reduce_units]
        if full or st.holds:
            with self.units(w, st.stage):
                if not st.masked:
                    self.adjoint_body(w, st, full)
                else:  # where a sequence has ended only its held states pass adjoints on
                    with w.block(f"if {self.mask()}[t - 1, b] != 0:"):
                        self.adjoint_body(w, st, full)
                    with w.block("else:"):
                        self.hold_body(w, st)
        if scalar:  # a scalar broadcast over the units sums over them: one thread per sequence
            self.running_only = st.masked
            with self.batch(w, st.stage):
                with w.block(f"for j in range({st.stage.size}):"):
                    self.adjoint_body(w, st, scalar)
            self.running_only = False

    def weight(self, buf) -> str:
        self.used.add(buf.name)
        return f"_s{buf.name}" if buf.name in self.shared else buf.name

    def out(self, m: MatMul, j: str, adjoint: bool = False) -> str:
        """Column j of a matmul's output (or of its adjoint) at step t."""
        buf = m.out.adjoint if adjoint else m.out
        self.used.add(buf.name)
        return f"{buf.name}[t - 1, b, {j}]" if m.batched else f"{buf.name}[{j}]"

    def matmul(self, w: Writer, st: MatMul):
        n, wt = st.weights.cols, self.weight(st.weights.WT)
        if self.stepwise:  # out[t-1] = x @ W^T over the whole grid: B x rows outputs, in tiles
            self.tiled(w, st.weights.rows, n, lambda r: self.read(st.operand, r), lambda r: f"{wt}[{r}, _c]",
                       lambda w: w.line(f"{self.out(st, '_c')} = _acc"))
            return
        with self.units(w, _Shape(st.weights.rows, st.batched)):
            w.line("_acc = dt(0.0)")
            with w.block(f"for k in range({n}):"):
                w.line(f"_acc += {wt}[k, j] * {self.read(st.operand, 'k')}")
            w.line(f"{self.out(st, 'j')} = _acc")

    def matmul_adjoint(self, w: Writer, st: MatMulAdjoint):
        m = st.stage
        n, rows, wm = m.weights.cols, m.weights.rows, self.weight(m.weights.W)
        if st.write is not None:
            if self.stepwise:  # d operand (+)= dout[t-1] @ W: B x n outputs, in tiles
                self.tiled(w, n, rows, lambda r: self.out(m, r, True), lambda r: f"{wm}[{r}, _c]",
                           lambda w: self.put(w, st.write, "_c", "_acc"))
            else:
                with self.units(w, _Shape(n, m.batched)):
                    w.line("_acc = dt(0.0)")
                    with w.block(f"for k in range({rows}):"):
                        w.line(f"_acc += {self.out(m, 'k', True)} * {wm}[k, j]")
                    self.put(w, st.write, "j", "_acc")
        if st.parts:
            self.sync(w)
            self.static_weight_gradient(w, m, st.parts)

    def static_weight_gradient(self, w: Writer, st: MatMul, parts):
        """dW += outer(dout, x) for a param-only matmul (one block)."""
        n = st.weights.cols
        with w.block(f"for q in range(_tid, {st.weights.rows * n}, _nthr):"):
            w.line(f"_i = q // {n}")
            w.line(f"j = q % {n}")
            for _, name, lo, hi in parts:
                dW = self.p.param_adjoint(name).name
                self.used.add(dW)
                w.line(f"if {lo} <= _i < {hi}: {dW}[_i - {lo}, j] += "
                       f"{self.out(st, '_i', True)} * {self.read(st.operand, 'j')}")

    def tiled(self, w: Writer, cols: int, inner: int, x, weight, store):
        """_acc = sum_r x(b, r) weight(r, _c) for every (b, _c) of a B x cols output,
        TILE x TILE outputs per block, x and the weights staged in shared memory."""
        w.line("_sx = cuda.shared.array((TILE, TILE), DT)")
        w.line("_sw = cuda.shared.array((TILE, TILE), DT)")
        w.line("_tx = cuda.threadIdx.x")
        w.line("_ty = cuda.threadIdx.y")
        w.line(f"_ncols = ({cols} + TILE - 1) // TILE")
        with w.block("for _tile in range(cuda.blockIdx.x, (B + TILE - 1) // TILE * _ncols, cuda.gridDim.x):"):
            w.line("b = _tile // _ncols * TILE + _ty")
            w.line("_c = _tile % _ncols * TILE + _tx")
            w.line("_acc = dt(0.0)")
            with w.block(f"for _r0 in range(0, {inner}, TILE):"):
                w.line("_r = _r0 + _tx")
                w.line(f"_sx[_ty, _tx] = {x('_r')} if b < B and _r < {inner} else dt(0.0)")
                w.line("_r = _r0 + _ty")
                w.line(f"_sw[_ty, _tx] = {weight('_r')} if _r < {inner} and _c < {cols} else dt(0.0)")
                w.line("cuda.syncthreads()")
                with w.block("for k in range(TILE):"):
                    w.line("_acc += _sx[_ty, k] * _sw[k, _tx]")
                w.line("cuda.syncthreads()")
            with w.block(f"if b < B and _c < {cols}:"):
                store(w)

    def sync(self, w: Writer):
        if not self.stepwise:  # there, the kernel's end is the barrier
            w.line("cuda.syncthreads()")

    def stage(self, w: Writer, st):
        kind = {Fused: self.fused, MatMul: self.matmul, Apply: self.apply, FusedAdjoint: self.fused_adjoint,
                MatMulAdjoint: self.matmul_adjoint, ApplyAdjoint: self.apply_adjoint}
        kind[type(st)](w, st)
        self.sync(w)

    # -- kernels -----------------------------------------------------------------
    def kernel(self, name: str, write, looped: bool) -> tuple[str, list[str]]:
        """A persistent kernel (`looped`: a block per slice of sequences) or the
        one-block kernel of the param-only stages."""
        self.used, self.stepwise = set(), False
        w = body()
        write(w)
        head = body()
        head.line("dt = DT")
        head.line("_tid = cuda.threadIdx.x")
        head.line("_nthr = cuda.blockDim.x")
        if looped:
            head.line("_b0 = cuda.blockIdx.x * S")
            head.line("_nb = min(S, B - _b0)")
        self.load_shared(head)
        return self.jit(name, ["T", "B", "S", "trunc"], head, w)

    def step_kernel(self, name: str, st, loop=None) -> tuple[str, list[str]]:
        """One stage (or adjoint stage) at step t as a kernel over the whole grid:
        the stepwise schedule, for weights too big to keep on chip."""
        self.used, self.stepwise = set(), True
        w = body()
        if loop is not None:
            self.windows(w, loop)
        self.stage(w, st)
        return self.jit(name, ["t", "T", "B", "trunc"], self.grid_head(isinstance(getattr(st, "stage", st), MatMul)), w)

    def loss_kernel(self) -> tuple[str, list[str]]:
        """Each sequence's weighted loss terms, over the grid (the stepwise schedule)."""
        self.used, self.stepwise = set(), True
        w = body()
        self.loss_terms(w)
        return self.jit("forward_loss", ["T", "B", "trunc"], self.grid_head(), w)

    @staticmethod
    def grid_head(tiled: bool = False) -> Writer:
        """A stepwise kernel's threads: the whole grid shares every (sequence,
        unit) pair of the batch, strided; a tiled matmul indexes its own tiles."""
        head = body()
        head.line("dt = DT")
        if not tiled:
            for line in ("_tid = cuda.grid(1)", "_nthr = cuda.gridsize(1)", "_b0 = 0", "_nb = B"):
                head.line(line)
        return head

    def jit(self, name: str, scalars: list[str], head: Writer, w: Writer) -> tuple[str, list[str]]:
        args = [*scalars, *sorted(self.used)]
        return f"@cuda.jit(cache=True)\ndef {name}({', '.join(args)}):\n" + head.text() + w.text(), args

    def load_shared(self, w: Writer):
        loaded = [name for name in self.shared if name in self.used]
        for name in loaded:
            m, n = self.shared[name]
            w.line(f"_s{name} = cuda.shared.array(({m}, {n}), DT)")
            with w.block(f"for q in range(_tid, {m * n}, _nthr):"):
                w.line(f"_s{name}[q // {n}, q % {n}] = {name}[q // {n}, q % {n}]")
        if loaded:
            w.line("cuda.syncthreads()")

    def loss_terms(self, w: Writer):
        """Each sequence's weighted loss terms into `_lossb`, summed on the host."""
        ls = self.p.loss_sum
        if ls is None:
            return
        lw = self.p.weights.name
        self.used.update({lw, "_lossb"})
        with w.block(self.batch_head):
            w.line("_acc = dt(0.0)")
            with w.block("for t in range(1, T + 1):"):
                w.line(f"if {lw}[t - 1, b] != 0: _acc += {lw}[t - 1, b] * {self.at(ls.value, '0')}")
            w.line("_lossb[b] = _acc")

    def loops_forward(self, w: Writer):
        for loop in self.p.loops:
            def each(w, loop=loop):
                for st in loop.stages:
                    self.stage(w, st)
            self.time_loop(w, loop, each)
        self.loss_terms(w)

    def loops_backward(self, w: Writer):
        for loop in self.p.backward.loops:
            def each(w, loop=loop):
                self.windows(w, loop)
                for st in loop.stages:
                    self.stage(w, st)
            self.time_loop(w, loop, each)

    def statics(self, stages):
        def write(w):
            for st in stages:
                self.stage(w, st)
        return write


@dataclasses.dataclass
class _Shape:
    """What `units` needs of a stage: its number of units and whether it is per sequence."""
    size: int
    batched: bool


def is_static_adjoint(st) -> bool:
    """A backward stage of the param-only statics (run by the one-block kernel)."""
    return isinstance(st, (FusedAdjoint, MatMulAdjoint, ApplyAdjoint)) and not st.stage.batched


__all__ = ["CudaPrinter", "is_static_adjoint"]
