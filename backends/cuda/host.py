"""The CUDA module's host functions: kernel launches in stream order, and `emit`.

    forward(T, B, trunc, <buffers>)    projections (`_rows`, one GEMM over all
                                       steps), the statics' kernel, the time loops
                                       (one persistent kernel, or a host loop of
                                       stepwise launches), each sequence's loss
    backward(T, B, trunc, <buffers>)   the loops' adjoints, then the program's
                                       `after` stages: per-sequence rows summed
                                       (`_colsum`), weight gradients (`_wgrad`),
                                       the statics' adjoints, the projections'
                                       gradients (`_wgrad`, `_rows`)
"""
from __future__ import annotations

import numpy as np

from unfold.compiler.printer import Writer
from unfold.compiler.program import Layout, Program
from unfold.compiler.stages import MaskRows, ProjectGrad, SumRows, WeightGrad

from ..loops import steps
from .kernels import CudaPrinter, is_static_adjoint
from .prelude import HELPER_SIGNATURES, PRELUDE
from .ptx import signatures
from .schedule import plan_shared, schedule_for, step_grid, width

_HOST_NAMES = {"S": "_S"}   # kernel arguments the host computes itself


def operand_rows(program: Program, vid: str) -> tuple[str, int, int, int]:
    """(its expression, first step, first column, step stride) of a value at
    t = 1..T: the operand of a weight gradient `_wgrad`."""
    place = program.places[vid]
    buf = place.buffer
    if buf.layout is Layout.STATE:
        return buf.name, buf.depth + place.shift, 0, 1
    if buf.layout is Layout.SEQ:
        return buf.name, 0, place.col, 1
    if buf.layout is Layout.STATIC_INPUT:  # the same rows at every step
        return f"{buf.name}.reshape(1, B, {place.size})", 0, 0, 0
    raise AssertionError(f"no weight-gradient layout for a per-step matmul of {vid} ({buf.layout})")


class Host:
    def __init__(self, program: Program, kernels: dict, steps_of: dict | None):
        self.p, self.kernels, self.steps_of = program, kernels, steps_of
        self.used: set[str] = set()

    def launch(self, w: Writer, name: str, grid: str):
        if name in self.kernels:
            args = self.kernels[name]
            self.used.update(a for a in args if a not in ("t", "T", "B", "S", "trunc", "_lossb"))
            w.line(f"{name}[{grid}]({', '.join(_HOST_NAMES.get(a, a) for a in args)})")

    def loops(self, w: Writer, adjoint: bool):
        if self.steps_of is None:
            self.launch(w, "backward_loops" if adjoint else "forward_loops", "_blocks, _threads")
            return
        for loop, launches in self.steps_of[adjoint]:
            w.line(f"# loop {loop.kind.value}")
            with w.block(f"for t in {steps(loop.direction)}:"):
                for name, grid in launches:
                    self.launch(w, name, grid)
        if not adjoint:
            self.launch(w, "forward_loss", "_spread(B), STEP_THREADS")

    def forward(self, w: Writer):
        w.line(f"_S, _blocks, _threads = _launch(B, {width(self.p)})")
        for st in self.p.projects:  # P[t] = x[t + shift] @ W^T for all t (0 before x starts): one GEMM
            x = self.p.places[st.input].buffer.name
            self.used.update({x, st.weights.WT.name, st.out.name})
            w.line(f"_rows[_tiles(T * B, {st.weights.rows}), GEMM_BLOCK]"
                   f"({x}, {st.shift}, 0, {st.weights.WT.name}, {st.out.name}, 0, 0, T * B, B, 0)")
        self.launch(w, "forward_statics", "1, _threads")
        w.line("_lossb = _zeros((B,))")
        self.loops(w, False)
        w.line("return float(_lossb.copy_to_host().sum())")

    def backward(self, w: Writer):
        w.line(f"_S, _blocks, _threads = _launch(B, {width(self.p)})")
        self.loops(w, True)
        statics_done = False
        for st in self.p.backward.after:
            if is_static_adjoint(st):
                if not statics_done:
                    self.launch(w, "backward_statics", "1, _threads")
                statics_done = True
            elif isinstance(st, SumRows):
                self.used.update({st.rows.name, st.target.buffer.name})
                w.line(f"_colsum[_grid({st.rows.width}, MAX_THREADS), MAX_THREADS]"
                       f"({st.rows.name}, {st.target.buffer.name})")
            elif isinstance(st, MaskRows):   # steps after a sequence's end read as 0
                m = self.p.mask.name
                self.used.update({st.source.name, st.target.name, m})
                w.line(f"_mask_rows[_spread(T * B * {st.source.width}), STEP_THREADS]"
                       f"({st.source.name}, {st.target.name}, {m})")
            elif isinstance(st, WeightGrad):  # dW = sum over t, b of dout[t, b]^T x[t, b]
                x, t0, col, stride = operand_rows(self.p, st.stage.operand)
                self.used.add(x.split(".")[0])
                for _, name, lo, hi in st.parts:
                    self.wgrad(w, st.stage.out.adjoint.name, 0, lo, hi, x, f"{t0}, {col}, {stride}", name, "T")
            else:
                self.project_grad(w, st)

    def project_grad(self, w: Writer, st: ProjectGrad):
        pr = st.stage
        s, dP, x = -pr.shift, pr.out.adjoint.name, st.x.name
        self.used.update({dP, x})
        with w.block(f"if T > {s}:"):
            for _, name, lo, hi in st.parts:
                self.wgrad(w, dP, s, lo, hi, x, "0, 0, 1", name, f"T - {s}")
            if st.input_grad is not None:
                self.used.update({pr.weights.W.name, st.input_grad.name})
                w.line(f"_rows[_tiles((T - {s}) * B, {pr.weights.cols}), GEMM_BLOCK]({dP}, {s}, 0, "
                       f"{pr.weights.W.name}, {st.input_grad.name}, 0, 0, (T - {s}) * B, B, 1)")

    def wgrad(self, w: Writer, g: str, gt0, lo: int, hi: int, x: str, xpos: str, name: str, steps: str):
        dW = self.p.param_adjoint(name).name
        self.used.update({g, dW})
        w.line(f"_wgrad[_tiles({hi - lo}, {dW}.shape[1]), GEMM_BLOCK]({g}, {gt0}, {lo}, {x}, {xpos}, {dW}, {steps}, B)")

    def function(self, name: str, write) -> tuple[str, list[str]]:
        self.used = set()
        w = Writer()
        w.depth = 1
        write(w)
        args = ["T", "B", "trunc", *sorted(self.used)]
        return f"def {name}({', '.join(args)}):\n" + w.text(), args


def _kernels(program: Program, dtype, unroll, tau, stepwise: bool):
    """Every generated kernel's source and arguments, and the stepwise launches."""
    e = CudaPrinter(program, dtype, unroll, tau)
    texts, args = [], {}

    def add(name, made):
        texts.append(made[0])
        args[name] = made[1]
    after = [st for st in program.backward.after if is_static_adjoint(st)]
    plan = [("forward_statics", e.statics(program.statics), False, None, bool(program.statics)),
            ("forward_loops", e.loops_forward, True, True, not stepwise),
            ("backward_loops", e.loops_backward, True, False, not stepwise),
            ("backward_statics", e.statics(after), False, None, bool(after))]
    for name, write, looped, transposed, wanted in plan:
        if wanted:
            e.shared = plan_shared(program, dtype, transposed) if transposed is not None else {}
            add(name, e.kernel(name, write, looped))
    if not stepwise:
        return texts, args, None
    e.shared = {}
    launches = {False: [], True: []}
    for loop in program.loops:
        launches[False].append((loop, [(f"step_{st.id}", step_grid(st, False)) for st in loop.stages]))
        for st in loop.stages:
            add(f"step_{st.id}", e.step_kernel(f"step_{st.id}", st))
    for loop in program.backward.loops:
        launches[True].append((loop, [(f"step_{st.stage.id}_adjoint", step_grid(st.stage, True))
                                      for st in loop.stages]))
        for st in loop.stages:
            add(f"step_{st.stage.id}_adjoint", e.step_kernel(f"step_{st.stage.id}_adjoint", st, loop))
    if program.loss_sum:
        add("forward_loss", e.loss_kernel())
    return texts, args, launches


def emit(program: Program, dtype=np.float64, unroll: int = 1, tau: int | None = None, schedule: str = "auto"):
    """The generated module's source and the host functions' argument names.
    `tau`: straight-line time loops for exactly that many steps (mode "unrolled";
    the stepwise schedule's loop is on the host and stays a loop)."""
    dt = np.dtype(dtype)
    stepwise = schedule_for(program, dt, schedule) == "stepwise"
    texts, kernel_args, launches = _kernels(program, dt, unroll, tau, stepwise)
    host = Host(program, kernel_args, launches)
    fwd, fargs = host.function("forward", host.forward)
    bwd, bargs = host.function("backward", host.backward)
    src = PRELUDE.format(name=program.rec.name, dtype=dt.name)
    src += "\n\n" + "\n\n".join(texts) + "\n\n" + fwd + "\n\n" + bwd
    src += "\n\n#: kernel -> signature, for `compile_ptx`\nSIGNATURES = {\n"
    src += "".join(f"    {k!r}: {v!r},\n" for k, v in signatures(program, kernel_args, dt, HELPER_SIGNATURES).items())
    src += "}\n"
    src += f"#: buffers each pass writes (copied back from the device)\nWRITES = {_writes(program)!r}\n"
    fresh = sorted(b.name for b in program.buffers if b.layout in (Layout.SEQ, Layout.STATIC))
    src += f"#: buffers the forward pass writes before it reads them (not copied to the device)\nFRESH = {fresh!r}\n"
    return src, {"forward": fargs, "backward": bargs}


def _writes(program: Program) -> dict[str, list[str]]:
    forward = [b.name for b in program.buffers if b.layout in (Layout.SEQ, Layout.STATE, Layout.STATIC)]
    return {"forward": sorted(forward), "backward": sorted(b.name for b in program.backward.buffers)}
