"""The numba CUDA backend: the same step program in, `@cuda.jit` source out.

    source, args = emit(program, np.float32)      # a Python module as text
    kernels = Kernels(module, args, source)        # .forward, .backward (numpy or device buffers)
    text = ptx(kernels, cc=(9, 0))                 # PTX of every kernel, no GPU needed

Two schedules of the time loops (`schedule_for`).  Persistent: the loops run
inside one kernel per pass (no launch per step); block k owns the sequences
b0 = k*S .. b0+S-1 and its threads share the (sequence, unit) pairs of every
stage, with `cuda.syncthreads()` between stages; per-step matmul weights sit
in shared memory when they fit.  Stepwise, for weights too big to re-read on
chip every step: the host loops over t and launches each stage as a kernel
over the whole grid (a tiled matmul, then the fused elementwise stage), the
same stage bodies with the grid for a block.  Around either, the hoisted
projections and every weight gradient are tiled GEMMs over all steps
(`_rows`, `_wgrad`, in `cuda_prelude`).  Adjoints that many sequences add
into (params, param-only values) go to per-sequence rows and are summed
after the loop by `_colsum`: no atomics anywhere.  Buffers and index
expressions are the CPU backend's (`unfold.runtime`, `Access`), and so is
the elementwise math (`ScalarPrinter` prints `math.*`, which numba.cuda
compiles).  See docs/cuda.md for the design and its performance model.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

from unfold import runtime
from unfold.codegen import Writer
from unfold.compiler import SCHEDULES
from unfold.errors import UnfoldError
from unfold.ir import Role
from unfold.lower import Fused, MatMul, OpStage, Program
from unfold.runargs import host_array, is_device_array
from unfold.runtime import forward_shapes, locate

from .cuda_prelude import HELPER_SIGNATURES, PRELUDE
from .numba_cpu import Emitter, steps

SHARED_BYTES = 40 * 1024   # weights copied to shared memory up to this size (48 KiB static limit)
WRITTEN = ("P_", "M_", "S_", "V_")


def require_device():
    """Raise a clear error unless a GPU or numba's CUDA simulator can run kernels."""
    try:
        from numba import cuda
    except ImportError as e:  # pragma: no cover - numba-cuda is an optional extra
        raise UnfoldError("target='cuda' needs numba-cuda: pip install 'unfold-rnn[cuda]', "
                          "or use target='cpu'") from e
    if not _simulated() and not cuda.is_available():
        raise UnfoldError("target='cuda' found no CUDA GPU (numba.cuda.is_available() is False): set "
                          "NUMBA_ENABLE_CUDASIM=1 to run the kernels in numba's CUDA simulator (slow, for "
                          "testing), or use target='cpu'")


def _simulated() -> bool:
    from numba.cuda.core import config
    return bool(config.ENABLE_CUDASIM)


class CudaWriter(Writer):
    """Lines of a kernel: the op templates' batch loop becomes this block's sequences."""
    batch_head = "for b in range(b0 + tid, b0 + nb, nthr):"


def _body() -> CudaWriter:
    """Lines at a function body's depth."""
    w = CudaWriter()
    w.depth = 1
    return w


class CudaEmitter(Emitter):
    """Prints stages as the body of a persistent kernel (`looped`) or of the
    one-block kernel of the param-only stages."""

    def __init__(self, program: Program, dtype, unroll: int = 1, tau: int | None = None):
        super().__init__(program, dtype, unroll, tau)
        self.looped = False
        self.stepwise = False               # printing one stage as a kernel over the whole grid
        self.partial: dict[str, int] = {}   # adjoint buffer -> width of its per-sequence rows
        self.shared: dict[str, tuple] = {}  # weight buffer -> shape, in shared memory

    # -- who does what -------------------------------------------------------
    @contextlib.contextmanager
    def units(self, w: Writer, n: int, j: str = "j"):
        """Every (b, j) of the block's sequences (or every j of a param-only stage), once."""
        if not self.looped:
            with w.block(f"for {j} in range(tid, {n}, nthr):"):
                yield
            return
        with w.block(f"for q in range(tid, nb * {n}, nthr):"):
            w.line(f"b = b0 + q // {n}")
            w.line(f"{j} = q % {n}")
            yield

    @contextlib.contextmanager
    def serial(self, w: Writer):
        """One thread per sequence (or thread 0 of a param-only stage)."""
        head = CudaWriter.batch_head if self.looped else "if tid == 0:"
        with w.block(head):
            yield

    def accumulate(self, w: Writer, vid: str, j: str, text: str):
        loc = self.acc.loc(vid)
        if self.looped and loc.kind in ("param", "static"):  # many sequences add here: a row each
            buf = f"d{loc.buf}"
            self.partial[buf] = 0
            self.acc.used.add(f"b{buf}")
            col = f"{loc.col} + {j}" if loc.col else j
            w.line(f"b{buf}[b, {'0' if loc.size == 1 else col}] += {text}")
            return
        super().accumulate(w, vid, j, text)

    # -- stages ----------------------------------------------------------------
    def fused(self, w: Writer, st: Fused, adjoint: bool):
        if adjoint and not st.adjoints:
            return
        w.line(f"# {st.id}: {', '.join(st.outputs)}" + (" (adjoint)" if adjoint else ""))
        if not adjoint:
            with self.units(w, st.size):
                self.fused_body(w, st, "j", False)
            return
        # a scalar input broadcast over the units sums over j: one thread per sequence does it
        scalar = {a for a in st.adjoints if self.p.values[a].size == 1 and st.size > 1}
        full = dataclasses.replace(st, adjoints={a: e for a, e in st.adjoints.items() if a not in scalar})
        if full.adjoints:
            with self.units(w, st.size):
                self.fused_body(w, full, "j", True)
        if scalar:
            part = dataclasses.replace(st, adjoints={a: st.adjoints[a] for a in sorted(scalar)})
            with self.serial(w):
                with w.block(f"for j in range({st.size}):"):
                    self.fused_body(w, part, "j", True)

    def weight(self, name: str, shape: tuple) -> str:
        self.acc.used.add(name)
        return f"s{name}" if name in self.shared else name

    def packed(self, st: MatMul, i: str, prefix: str = "") -> str:
        """Column i of a matmul stage's buffer (or of its adjoint) at step t."""
        self.acc.used.add(prefix + st.id)
        return f"{prefix}{st.id}[t - 1, b, {i}]" if st.batched else f"{prefix}{st.id}[{i}]"

    def matmul(self, w: Writer, st: MatMul):
        n = self.p.values[st.operand].size
        if self.stepwise:  # M[t-1] = x @ W^T over the whole grid: B x size outputs, in tiles
            wt = self.weight(f"WT_{st.id}", (n, st.size))
            self.tiled(w, st.size, n, lambda r: self.acc.read(st.operand, r), lambda r: f"{wt}[{r}, c]",
                       lambda w: w.line(f"{self.packed(st, 'c')} = acc"))
            return
        wt = self.weight(f"WT_{st.id}", (n, st.size))
        with self.units(w, st.size, "i"):
            w.line("acc = dt(0.0)")
            with w.block(f"for k in range({n}):"):
                w.line(f"acc += {wt}[k, i] * {self.acc.read(st.operand, 'k')}")
            w.line(f"{self.packed(st, 'i')} = acc")

    def matmul_adjoint(self, w: Writer, st: MatMul):
        if not self.differentiable(st.operand):
            return
        n = self.p.values[st.operand].size
        wm = self.weight(f"W_{st.id}", (st.size, n))
        if self.stepwise:  # dx (+)= dM[t-1] @ W: B x n outputs, in tiles
            self.acc.used.add(f"d{st.id}")
            self.tiled(w, n, st.size, lambda r: self.packed(st, r, "d"), lambda r: f"{wm}[{r}, c]",
                       lambda w: self.accumulate(w, st.operand, "c", "acc"))
            return
        with self.units(w, n, "k"):
            w.line("acc = dt(0.0)")
            with w.block(f"for i in range({st.size}):"):
                w.line(f"acc += {self.packed(st, 'i', 'd')} * {wm}[i, k]")
            self.accumulate(w, st.operand, "k", "acc")

    def static_weight_gradient(self, w: Writer, st: MatMul):
        """dW += outer(dM, x) for a param-only matmul (one block)."""
        n = self.p.values[st.operand].size
        with w.block(f"for q in range(tid, {st.size * n}, nthr):"):
            w.line(f"i = q // {n}")
            w.line(f"k = q % {n}")
            for _, name, lo, hi in st.parts:
                self.acc.used.add(f"dp_{name}")
                g = self.packed(st, "i", "d")
                w.line(f"if {lo} <= i < {hi}: dp_{name}[i - {lo}, k] += {g} * {self.acc.read(st.operand, 'k')}")

    def tiled(self, w: Writer, cols: int, inner: int, x, weight, store):
        """acc = sum_r x(b, r) weight(r, c) for every (b, c) of a B x cols output,
        TILE x TILE outputs per block, x and the weights staged in shared memory."""
        w.line("sx = cuda.shared.array((TILE, TILE), DT)")
        w.line("sw = cuda.shared.array((TILE, TILE), DT)")
        w.line("tx = cuda.threadIdx.x")
        w.line("ty = cuda.threadIdx.y")
        w.line(f"ncols = ({cols} + TILE - 1) // TILE")
        with w.block("for tile in range(cuda.blockIdx.x, (B + TILE - 1) // TILE * ncols, cuda.gridDim.x):"):
            w.line("b = tile // ncols * TILE + ty")
            w.line("c = tile % ncols * TILE + tx")
            w.line("acc = dt(0.0)")
            with w.block(f"for r0 in range(0, {inner}, TILE):"):
                w.line("r = r0 + tx")
                w.line(f"sx[ty, tx] = {x('r')} if b < B and r < {inner} else dt(0.0)")
                w.line("r = r0 + ty")
                w.line(f"sw[ty, tx] = {weight('r')} if r < {inner} and c < {cols} else dt(0.0)")
                w.line("cuda.syncthreads()")
                with w.block("for q in range(TILE):"):
                    w.line("acc += sx[ty, q] * sw[q, tx]")
                w.line("cuda.syncthreads()")
            with w.block(f"if b < B and c < {cols}:"):
                store(w)

    def stage(self, w: Writer, st, adjoint: bool):
        if isinstance(st, OpStage) and not self.looped:
            with w.block("if tid == 0:"):
                super().stage(w, st, adjoint)
        else:
            super().stage(w, st, adjoint)
        if not self.stepwise:  # there, the kernel's end is the barrier
            w.line("cuda.syncthreads()")

    # -- kernels -----------------------------------------------------------------
    def kernel(self, name: str, body, looped: bool) -> tuple[str, list[str]]:
        """A persistent kernel (`looped`: a block per slice of sequences) or the
        one-block kernel of the param-only stages."""
        self.acc.used, self.looped, self.stepwise = set(), looped, False
        w = _body()
        body(w)
        head = _body()
        head.line("dt = DT")
        head.line("tid = cuda.threadIdx.x")
        head.line("nthr = cuda.blockDim.x")
        if looped:
            head.line("b0 = cuda.blockIdx.x * S")
            head.line("nb = min(S, B - b0)")
        self.load_shared(head)
        return self.jit(name, ["T", "B", "S", "trunc"], head, w)

    def step_kernel(self, name: str, st, adjoint: bool) -> tuple[str, list[str]]:
        """One stage (or its adjoint) at step t as a kernel over the whole grid:
        the stepwise schedule, for weights too big to keep on chip."""
        self.acc.used, self.looped, self.stepwise = set(), True, True
        w = _body()
        if adjoint:
            self.keeps(w, [st])
        self.stage(w, st, adjoint)
        return self.jit(name, ["t", "T", "B", "trunc"], self.grid_head(tiled=isinstance(st, MatMul)), w)

    def loss_kernel(self) -> tuple[str, list[str]]:
        """Each sequence's weighted loss terms, over the grid (the stepwise schedule)."""
        self.acc.used, self.looped, self.stepwise = set(), True, True
        w = _body()
        self.loss_terms(w)
        return self.jit("forward_loss", ["T", "B", "trunc"], self.grid_head(), w)

    @staticmethod
    def grid_head(tiled: bool = False) -> Writer:
        """A stepwise kernel's threads: the whole grid shares every (sequence,
        unit) pair of the batch, strided; a tiled matmul indexes its own tiles."""
        head = _body()
        head.line("dt = DT")
        if not tiled:
            for line in ("tid = cuda.grid(1)", "nthr = cuda.gridsize(1)", "b0 = 0", "nb = B"):
                head.line(line)
        return head

    def jit(self, name: str, scalars: list[str], head: Writer, body: Writer) -> tuple[str, list[str]]:
        args = [*scalars, *sorted(self.acc.used)]
        return f"@cuda.jit(cache=True)\ndef {name}({', '.join(args)}):\n" + head.text() + body.text(), args

    def has_adjoint(self, st) -> bool:
        """Does a stage's adjoint print anything?"""
        if isinstance(st, Fused):
            return bool(st.adjoints)
        if isinstance(st, MatMul):
            return self.differentiable(st.operand)
        return True

    def load_shared(self, w: Writer):
        for name, (m, n) in self.shared.items():
            if name in self.acc.used:
                w.line(f"s{name} = cuda.shared.array(({m}, {n}), DT)")
                with w.block(f"for q in range(tid, {m * n}, nthr):"):
                    w.line(f"s{name}[q // {n}, q % {n}] = {name}[q // {n}, q % {n}]")
        if any(name in self.acc.used for name in self.shared):
            w.line("cuda.syncthreads()")

    def plan_shared(self, transposed: bool):
        """Per-step weights into shared memory, first come first served, while they fit."""
        self.shared, room = {}, SHARED_BYTES
        for loop in self.p.loops:
            for st in loop.stages:
                if isinstance(st, MatMul):
                    n = self.p.values[st.operand].size
                    size = st.size * n * self.dtype.itemsize
                    if size <= room:
                        room -= size
                        shape = (n, st.size) if transposed else (st.size, n)
                        self.shared[f"{'WT' if transposed else 'W'}_{st.id}"] = shape

    def loops_forward(self, w: Writer):
        for loop in self.p.loops:
            def body(w, loop=loop):
                for st in loop.stages:
                    self.stage(w, st, False)
            self.time_loop(w, loop, False, body)
        self.loss_terms(w)

    def loss_terms(self, w: Writer):
        if self.p.loss:  # each sequence's weighted loss terms, summed on the host
            self.acc.used.update({"lw", "lossb"})
            with self.serial(w):
                w.line("acc = dt(0.0)")
                with w.block("for t in range(1, T + 1):"):
                    w.line(f"acc += lw[t - 1, b] * {self.acc.at(self.acc.loc(self.p.loss), '0')}")
                w.line("lossb[b] = acc")

    def statics_forward(self, w: Writer):
        for st in self.p.statics:
            self.stage(w, st, False)

    def statics_backward(self, w: Writer):
        for st in reversed(self.p.statics):
            self.stage(w, st, True)
            if isinstance(st, MatMul):
                self.static_weight_gradient(w, st)
                w.line("cuda.syncthreads()")


# -- host code: launches around the kernels ----------------------------------------

def operand_rows(program: Program, vid: str) -> tuple[str, str, int, int, int]:
    """(buffer, its expression, first step, first column, step stride) of a
    value at t = 1..T: the operand of a weight gradient `_wgrad`."""
    loc = locate(program, vid)
    if loc.kind == "state":
        return loc.buf, loc.buf, loc.depth + loc.shift, 0, 1
    if loc.kind == "seq":
        return loc.buf, loc.buf, 0, loc.col, 1
    if loc.kind == "input_static":  # the same rows at every step
        return loc.buf, f"{loc.buf}.reshape(1, B, {loc.size})", 0, 0, 0
    raise UnfoldError(f"no weight-gradient layout for a per-step matmul of {vid} ({loc.kind})")


class Host:
    """The host functions `forward` and `backward`: kernel launches in stream order."""

    def __init__(self, program: Program, width: int, steps: dict | None = None):
        self.p, self.width = program, width
        self.steps = steps   # the stepwise schedule: adjoint? -> [(loop, [(kernel, grid)])]
        self.used: set[str] = set()

    def loops(self, w: Writer, kernels: dict, adjoint: bool):
        """The time loops: one persistent launch, or a host loop of launches per step."""
        if self.steps is None:
            self.launch(w, "backward_loops" if adjoint else "forward_loops", kernels)
            return
        for loop, launches in self.steps[adjoint]:
            w.line(f"# loop {loop.label}" + (", adjoint" if adjoint else ""))
            with w.block(f"for t in {steps(loop, adjoint)}:"):
                for name, grid in launches:
                    self.launch(w, name, kernels, grid)
        if not adjoint:
            self.launch(w, "forward_loss", kernels, "_spread(B), STEP_THREADS")

    def shape(self, w: Writer):
        """Launch shapes of the persistent and one-block kernels."""
        if self.steps is None or self.p.statics:
            w.line(f"S, blocks, threads = _launch(B, {self.width})")

    def forward(self, w: Writer, kernels: dict):
        self.shape(w)
        for h in self.p.hoists:  # P[t] = x[t + shift] @ W^T for all t (0 before x starts): one GEMM
            s = -h.shift
            self.used.update({f"in_{h.input}", f"WT_{h.id}", h.id})
            w.line(f"_rows[_tiles(T * B, {h.size}), GEMM_BLOCK]"
                   f"(in_{h.input}, {-s}, 0, WT_{h.id}, {h.id}, 0, 0, T * B, B, 0)")
        self.launch(w, "forward_statics", kernels, "1, threads")
        w.line("lossb = _zeros((B,))")
        self.loops(w, kernels, False)
        w.line("return float(lossb.copy_to_host().sum())")

    def backward(self, w: Writer, kernels: dict, partial: dict[str, int]):
        self.shape(w)
        for buf, n in partial.items():
            w.line(f"b{buf} = _zeros((B, {n}))")
        self.loops(w, kernels, True)
        for buf, n in partial.items():  # the per-sequence rows, summed
            self.used.add(buf)
            w.line(f"_colsum[_grid({n}, MAX_THREADS), MAX_THREADS](b{buf}, {buf})")
        self.launch(w, "backward_statics", kernels, "1, threads")
        for st in self.p.stages():
            if isinstance(st, MatMul) and st.batched:  # dW = sum over t, b of dM[t, b]^T x[t, b]
                buf, x, t0, col, xs = operand_rows(self.p, st.operand)
                for _, name, lo, hi in st.parts:
                    self.wgrad(w, f"d{st.id}", 0, lo, hi, buf, x, f"{t0}, {col}, {xs}", name, "T")
        for h in self.p.hoists:
            s = -h.shift
            with w.block(f"if T > {s}:"):
                for _, name, lo, hi in h.parts:
                    self.wgrad(w, f"d{h.id}", s, lo, hi, f"in_{h.input}", f"in_{h.input}", "0, 0, 1",
                               name, f"T - {s}")
                if self.p.rec.symbols[h.input].role.value == "input":
                    n = self.p.rec.symbols[h.input].shape[0]
                    self.used.update({f"W_{h.id}", f"din_{h.input}"})
                    w.line(f"_rows[_tiles((T - {s}) * B, {n}), GEMM_BLOCK]"
                           f"(d{h.id}, {s}, 0, W_{h.id}, din_{h.input}, 0, 0, (T - {s}) * B, B, 1)")

    def wgrad(self, w, g, gt0, lo, hi, buf, x, xpos, name, steps):
        self.used.update({g, buf, f"dp_{name}"})
        w.line(f"_wgrad[_tiles({hi - lo}, dp_{name}.shape[1]), GEMM_BLOCK]"
               f"({g}, {gt0}, {lo}, {x}, {xpos}, dp_{name}, {steps}, B)")

    def launch(self, w: Writer, name: str, kernels: dict, grid: str = "blocks, threads"):
        if name in kernels:  # (per-sequence rows, the loss terms and t are the host's own)
            self.used.update(a for a in kernels[name] if not a.startswith("bd") and a not in ("lossb", "t"))
            w.line(f"{name}[{grid}]({', '.join(kernels[name])})")

    def function(self, name: str, body) -> tuple[str, list[str]]:
        self.used = set()
        w = Writer()
        w.depth = 1
        body(w)
        args = ["T", "B", "trunc", *sorted(self.used - {"T", "B", "S", "trunc"})]
        return f"def {name}({', '.join(args)}):\n" + w.text(), args


def _ndims(program: Program) -> dict[str, int]:
    """Every buffer's number of dimensions (for the PTX signatures)."""
    nd = {name: len(shape) for name, shape in forward_shapes(program, 1, 1).items()}
    for s in program.rec.symbols.values():
        if s.role.value in ("param", "const"):
            nd[f"p_{s.name}"] = max(1, len(s.shape))
        elif s.role.value in ("input", "target"):
            nd[f"in_{s.name}"] = 3 if s.timed else 2
    for st in [*program.hoists, *(s for s in program.stages() if isinstance(s, MatMul))]:
        nd[f"W_{st.id}"] = nd[f"WT_{st.id}"] = 2
    nd.update(mask=2, lw=2, lossb=1)
    nd.update({f"d{k}": v for k, v in nd.items()})
    return nd


def _signature(args: list[str], ndims: dict[str, int], dtype) -> str:
    def one(a):
        if a in ("t", "T", "B", "S", "trunc"):
            return "int64"
        n = 2 if a.startswith("bd") else ndims[a]
        return f"{np.dtype(dtype).name}[{', '.join([':'] * n)}]"
    return f"void({', '.join(one(a) for a in args)})"





PERSISTENT_BYTES = 1 << 20  # "auto": per-step weights up to this stay in a persistent kernel (L1/L2)


def schedule_for(program: Program, dtype, schedule: str = "auto") -> str:
    """"persistent" (the time loop inside one kernel per pass) while the loops'
    weights are small enough for every block to re-read each step from the
    caches; "stepwise" (a launch per stage and step, each spread over the whole
    GPU) beyond.  See docs/cuda.md for the model behind the threshold."""
    if schedule not in SCHEDULES:
        raise UnfoldError(f"unknown CUDA schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if schedule != "auto":
        return schedule
    size = np.dtype(dtype).itemsize
    weights = sum(st.size * program.values[st.operand].size * size
                  for loop in program.loops for st in loop.stages if isinstance(st, MatMul))
    return "persistent" if weights <= PERSISTENT_BYTES else "stepwise"


def emit(program: Program, dtype=np.float64, unroll: int = 1, tau: int | None = None, schedule: str = "auto"):
    """The generated module's source and the host functions' argument names.
    `tau`: straight-line time loops for exactly that many steps (mode "unrolled";
    the stepwise schedule's loop is on the host and stays a loop)."""
    dt = np.dtype(dtype)
    stepwise = schedule_for(program, dt, schedule) == "stepwise"
    e = CudaEmitter(program, dt, unroll, tau)
    widths = {**{k: int(np.prod(v)) for k, v in forward_shapes(program, 1, 1).items()},
              **{f"p_{s.name}": int(np.prod(s.shape)) for s in program.rec.symbols.values()}}
    kernels, texts = {}, []

    def add(name, made):
        texts.append(made[0])
        kernels[name] = made[1]
    plan = [("forward_statics", e.statics_forward, False, None), ("forward_loops", e.loops_forward, True, True),
            ("backward_loops", e.loops_backward, True, False), ("backward_statics", e.statics_backward, False, None)]
    for name, body, looped, transposed in plan:
        if (not looped and not program.statics) or (looped and stepwise):
            continue
        e.shared = {}
        if transposed is not None:
            e.plan_shared(transposed)
        add(name, e.kernel(name, body, looped))
    steps = None
    if stepwise:
        e.shared = {}
        steps = {False: [], True: []}
        for loop in program.loops:
            launches = []
            for st in loop.stages:
                name = f"step_{st.id}"
                add(name, e.step_kernel(name, st, False))
                launches.append((name, _step_grid(program, st, False)))
            steps[False].append((loop, launches))
        for loop in reversed(program.loops):
            launches = []
            for st in reversed(loop.stages):
                if e.has_adjoint(st):
                    name = f"step_{st.id}_adjoint"
                    add(name, e.step_kernel(name, st, True))
                    launches.append((name, _step_grid(program, st, True)))
            steps[True].append((loop, launches))
        if program.loss:
            add("forward_loss", e.loss_kernel())
    partial = {buf: widths[buf[1:]] for buf in e.partial}
    host = Host(program, _width(program), steps)
    fwd, fargs = host.function("forward", lambda w: host.forward(w, kernels))
    bwd, bargs = host.function("backward", lambda w: host.backward(w, kernels, partial))
    ndims = _ndims(program)
    sigs = {k: _signature(a, ndims, dt) for k, a in kernels.items()}
    for k, sig in HELPER_SIGNATURES.items():
        for n in (1, 2, 3):
            sig = sig.replace(f"A{n}", f"{dt.name}[{', '.join([':'] * n)}]")
        sigs[k] = sig
    src = PRELUDE.format(name=program.rec.name, dtype=dt.name)
    src += "\n\n" + "\n\n".join(texts) + "\n\n" + fwd + "\n\n" + bwd
    src += "\n\n#: kernel -> signature, for `compile_ptx`\nSIGNATURES = {\n"
    src += "".join(f"    {k!r}: {v!r},\n" for k, v in sigs.items()) + "}\n"
    return src, {"forward": fargs, "backward": bargs}


def _step_grid(program: Program, st, adjoint: bool) -> str:
    """The launch shape of a stepwise kernel: output tiles of a matmul, or
    enough threads for every (sequence, unit) pair of the stage."""
    if isinstance(st, MatMul):
        cols = program.values[st.operand].size if adjoint else st.size
        return f"_tiles(B, {cols}), TILE_BLOCK"
    width = st.size if isinstance(st, Fused) else program.values[st.value].size
    return f"_spread(B * {width}), STEP_THREADS"


def _width(program: Program) -> int:
    """The widest stage of the time loops: threads per sequence."""
    sizes = [1]
    for loop in program.loops:
        for st in loop.stages:
            sizes.append(st.size if isinstance(st, (Fused, MatMul)) else 1)
            if isinstance(st, MatMul):
                sizes.append(program.values[st.operand].size)
    return max(sizes)


class Kernels:
    """The generated module's host functions, called with buffers by name.

    numpy buffers are copied to the device and what the pass writes is copied
    back into them; device arrays are used in place, and their results stay
    on the device.  A backward pass reuses the device copies that the forward
    pass just before it made of the same numpy arrays (value_and_grad runs
    them back to back); a forward pass always copies (workspaces are reused)."""

    def __init__(self, module, args: dict, source: str):
        self.module, self.args, self.source = module, args, source
        self._resident: dict = {}
        if _simulated():
            _serialize_shared_allocation()

    def _call(self, name, T, B, trunc, bufs, written, stay=False):
        require_device()
        from numba import cuda
        scalars = {"T": T, "B": B, "trunc": trunc}
        dev, reuse = {}, (self._resident if name == "backward" else {})
        for a in self.args[name]:
            if a in scalars:
                continue
            x, kept = bufs[a], reuse.get(a)
            if not isinstance(x, np.ndarray):
                dev[a] = x
            elif name == "forward" and a.startswith(("P_", "M_", "V_")):  # written before read
                dev[a] = cuda.device_array(x.shape, x.dtype)
            else:
                dev[a] = kept[1] if kept is not None and kept[0] is x else cuda.to_device(x)
        with _simulator_pace():
            result = getattr(self.module, name)(*[scalars[a] if a in scalars else dev[a] for a in self.args[name]])
        for a, d in dev.items():
            if a.startswith(written) and isinstance(bufs[a], np.ndarray) and not stay:
                d.copy_to_host(bufs[a])
        self._resident = {a: (bufs[a], d) for a, d in dev.items()} if name == "forward" else {}
        return (result, dev) if stay else result

    def forward(self, T, B, trunc, bufs, stay=False):
        """The loss; with `stay`, (loss, the device buffers), nothing copied back."""
        return self._call("forward", T, B, trunc, bufs, WRITTEN, stay)

    def backward(self, T, B, trunc, bufs, stay=False):
        return self._call("backward", T, B, trunc, bufs, ("d",), stay)


def device_outputs(program: Program, dev: dict, bufs: dict, T: int) -> dict:
    """The forward pass's values as device arrays: views of its fresh device
    buffers (states and per-step values); a param-only value, the same at every
    step, is broadcast on the host and copied over."""
    views = {"lw": bufs["lw"]}
    for vid in program.outputs.values():
        loc = locate(program, vid)
        views[loc.buf] = dev[loc.buf] if loc.kind in ("state", "seq") else dev[loc.buf].copy_to_host()
    return _on_device(runtime.outputs(program, views, T))


def _on_device(tree: dict) -> dict:
    """Host arrays of a dict copied to the device."""
    from numba import cuda
    return {k: v if is_device_array(v) else cuda.to_device(np.ascontiguousarray(v)) for k, v in tree.items()}


def device_gradients(program: Program, d: dict, dev: dict, run) -> dict:
    """Gradients as device arrays, from the adjoint buffers `d` and the device
    copies `dev` the backward pass left there.  Input gradients are its fresh
    device buffers; param and initial-state gradients (small, and summed over
    the first and last rows of a state's adjoint) come through the host."""
    host = {}
    for k, v in {**d, **dev}.items():
        if k.startswith("dp_"):
            host[k] = host_array(v)
        elif k.startswith("dS_"):  # only the initial rows (t <= 0, t > T) are read
            depth = (v.shape[0] - run.tau) // 2
            a = np.zeros(v.shape, v.dtype)
            a[:depth], a[run.tau + depth:] = host_array(v[:depth]), host_array(v[run.tau + depth:])
            host[k] = a
        elif k.startswith("din_"):
            host[k] = np.empty(0, v.dtype)   # stays on the device; put back below
    grads = runtime.gradients(program, host, run)
    grads.update({s.name: dev[f"din_{s.name}"] for s in program.rec.of_role(Role.INPUT)})
    return _on_device(grads)


@contextlib.contextmanager
def _simulator_pace():
    """numba's simulator busy-waits on its threads at every barrier, handing them
    the GIL every 5 ms; a short switch interval, only while kernels run, is 5x faster."""
    if not _simulated():
        yield
        return
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@functools.lru_cache(maxsize=None)
def _serialize_shared_allocation():
    """numba-cuda's simulator (`FakeCUDAShared.array`) gives a block's threads
    one shared array by looking the calling source line up in a dict and
    inserting a new array when absent, without a lock: a thread switch between
    the two leaves one thread with an array of its own that nobody else fills,
    so it reads garbage (a flaky GRU mismatch, an OverflowError in `math.exp`;
    `_simulator_pace`'s short switch interval makes it likelier).  The same lookup under
    one lock makes the allocation what a GPU's is: one array per block."""
    import threading
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support
    lock, dynamic = threading.Lock(), kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return dynamic(self, shape, dtype, alignment)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        dtype = numpy_support.as_dtype(dtype) if not isinstance(dtype, (type, np.dtype)) else dtype
        with lock:
            if caller not in self._allocations:
                self._allocations[caller] = np.empty(shape, dtype)
            return self._allocations[caller]
    kernelapi.FakeCUDAShared.array = array


def ptx(source_or_kernels, cc=(9, 0)) -> str:
    """PTX of every kernel of a generated module (its source text or its Kernels)."""
    from numba import cuda
    if _simulated() or cuda.compile_ptx is None:
        raise UnfoldError("PTX needs numba-cuda's compiler, not the simulator: unset NUMBA_ENABLE_CUDASIM")
    module = getattr(source_or_kernels, "module", None) or _module(source_or_kernels)
    out = []
    for name, sig in module.SIGNATURES.items():
        text, _ = cuda.compile_ptx(getattr(module, name).py_func, sig, cc=tuple(cc))
        out.append(f"// ---- kernel {name}: {sig}\n{text}")
    return "\n".join(out)


def _module(source: str):
    """Import generated source from a file of its own (numba caches need one)."""
    path = Path(tempfile.mkdtemp(prefix="unfold_ptx_")) / "unfold_ptx_module.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"unfold_ptx_{abs(hash(source))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


__all__ = ["emit", "Kernels", "ptx", "require_device", "CudaEmitter"]
