"""The stages of a step program, forward and backward (see `program`).

Forward: `Project` (a hoisted GEMM over all steps), `MatMul` (one packed
product per step, or once for params), `Fused` (one loop of elementwise
math), `Apply` (an op of the registry), grouped in `Loop`s, and `LossSum`.
Backward: each forward stage's adjoint (`FusedAdjoint`, `MatMulAdjoint`,
`ApplyAdjoint`) made of `Write`s -- assigned or accumulated, under a `Guard`
-- and what runs after the loops (`SumRows`, `WeightGrad`, `ProjectGrad`),
all in one `Backward`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import sympy as sp

from ..lang.ir import Reduce
from .program import Buffer, Place, Program


# -- forward stages -----------------------------------------------------------------------

@dataclass(eq=False)
class Packed:
    """Weights of one matmul stage packed into one matrix: rows lo..hi are `param`."""
    parts: tuple[tuple[str, str, int, int], ...]   # (value id, param, lo, hi)
    rows: int
    cols: int
    W: Buffer | None = None          # [rows, cols]
    WT: Buffer | None = None         # its transpose

    @property
    def text(self) -> str:
        return "[" + "; ".join(p for _, p, _, _ in self.parts) + "]"


@dataclass(eq=False)
class Project:
    """out[t] = input[t + shift] @ W^T for every t at once, before the loops (0 before
    the input starts): the hoisted input projections, one GEMM over all steps."""
    id: str
    input: str                        # the input leaf's value id
    shift: int
    weights: Packed
    out: Buffer | None = None


@dataclass(eq=False)
class MatMul:
    """out[t] = operand[t] @ W^T, every member a column range of out."""
    id: str
    operand: str
    weights: Packed
    batched: bool = True
    out: Buffer | None = None


@dataclass(eq=False)
class Fused:
    """One loop over (sequence, unit): `entries` computed in order, each an
    expression of the stage's inputs and of earlier entries, each stored."""
    id: str
    size: int
    inputs: list[str]
    entries: list[tuple[str, sp.Expr]]
    batched: bool = True


@dataclass(eq=False)
class Apply:
    """An op of the registry that is a stage of its own (concat, slice, sum, mse, ...)."""
    id: str
    value: str
    batched: bool = True


class LoopKind(enum.Enum):
    PRE = "pre"              # reads no state
    FORWARD = "forward"      # forward states and what they need
    BACKWARD = "backward"    # backward states
    POST = "post"            # reads both directions


@dataclass(eq=False)
class Loop:
    """t = 1..T (direction +1) or T..1 (-1); `windows`: in a backward pass, the
    shifts of the state carries its adjoints flow into (truncated BPTT)."""
    kind: LoopKind
    direction: int
    stages: list
    windows: tuple[int, ...] = ()


@dataclass(eq=False)
class LossSum:
    """loss = sum over t, b of weights[t, b] * term[t, b] (a term of weight 0 is not read)."""
    value: str
    reduce: Reduce


# -- backward stages ----------------------------------------------------------------------

class Mode(enum.Enum):
    SET = "="
    ADD = "+="


class GuardKind(enum.Enum):
    AFTER = "after"          # an input read k steps late: no adjoint before it starts (t > k)
    WINDOW = "window"        # a state carry: only inside t's truncation window


@dataclass(frozen=True)
class Guard:
    kind: GuardKind
    k: int                   # AFTER: the delay; WINDOW: the shift of the carry (t + k)

    @property
    def text(self) -> str:
        if self.kind is GuardKind.AFTER:
            return f"t > {self.k}"
        return f"same window as t{self.k:+d}"


@dataclass(eq=False)
class Write:
    """An adjoint written into `place` (of value `value`): assigned or accumulated,
    under a guard; `reduce_units`: a scalar broadcast over the stage's units sums
    over them."""
    value: str
    place: Place
    mode: Mode
    guard: Guard | None = None
    reduce_units: bool = False


@dataclass(eq=False)
class FusedAdjoint:
    """The fused stage's local tape in reverse: `grads` are the entries' total
    adjoints (locals, in order), `writes` the inputs' adjoints.

    `masked` (runs with lengths): the tape runs only where a sequence is
    running; after its end a step is dead but for `holds` -- a held state
    passes its buffered adjoint on to its previous instance -- and its
    assigned writes store 0.  Padding, even NaN, is never read into a result."""
    stage: Fused
    external: dict[str, sp.Symbol]                      # entry -> symbol of its buffered adjoint
    grads: list[tuple[sp.Symbol, sp.Expr]]
    writes: list[tuple[Write, sp.Expr]]
    holds: list[tuple[Write, sp.Symbol]] = field(default_factory=list)
    masked: bool = False


@dataclass(eq=False)
class MatMulAdjoint:
    """operand (+)= dout[t] @ W; a static one also adds dW += outer(dout, operand)
    to the params (not consts) in `parts`."""
    stage: MatMul
    write: Write | None
    parts: tuple = ()


@dataclass(eq=False)
class ApplyAdjoint:
    """The op's adjoint template, writing each argument as `writes` says
    (`masked`: only where a sequence is running)."""
    stage: Apply
    writes: dict[str, Write]
    masked: bool = False


@dataclass(eq=False)
class WeightGrad:
    """dW += sum over t, b of dout[t, b]^T operand[t, b]: one GEMM after the loops;
    `parts` are the params (not consts) of the packed weights."""
    stage: MatMul
    parts: tuple[tuple[str, str, int, int], ...]


@dataclass(eq=False)
class ProjectGrad:
    """dW += dP^T x and, for an input, dx += dP W: two GEMMs over all steps.
    `x` is the input's buffer, or with lengths its copy with the padding zeroed."""
    stage: Project
    parts: tuple[tuple[str, str, int, int], ...]
    input_grad: Buffer | None
    x: Buffer | None = None


@dataclass(eq=False)
class MaskRows:
    """target[t, b] = source[t, b] where sequence b is running at step t, else 0
    (runs with lengths; target may be source): the weight-gradient GEMMs then
    never read padding, not even an input's (a copy of it)."""
    source: Buffer
    target: Buffer


@dataclass(eq=False)
class SumRows:
    """target[col:col+n] += rows summed over the sequences."""
    rows: Buffer
    target: Place


@dataclass(eq=False)
class Backward:
    zero: list[Buffer]                    # adjoint buffers the runtime zeroes before the pass
    seed: Place | None                    # d(loss term)[t, b] = weights[t, b]
    loops: list[Loop]
    after: list                           # SumRows, WeightGrad, statics' adjoints, ProjectGrad
    buffers: list[Buffer] = field(default_factory=list)   # every adjoint buffer the pass uses


def produced(st) -> list[str]:
    """The value ids a forward stage computes."""
    if isinstance(st, (Project, MatMul)):
        return [vid for vid, _, _, _ in st.weights.parts]
    if isinstance(st, Fused):
        return [vid for vid, _ in st.entries]
    if isinstance(st, Apply):
        return [st.value]
    return []


def stage_reads(program: Program, st) -> list[str]:
    """The value ids a forward stage reads."""
    if isinstance(st, Fused):
        return list(st.inputs)
    if isinstance(st, MatMul):
        return [st.operand]
    if isinstance(st, Project):
        return [st.input]
    if isinstance(st, Apply):
        return list(program.values[st.value].args)
    return []


def writes_of(stage) -> list[Write]:
    """Every adjoint write of a backward stage."""
    if isinstance(stage, FusedAdjoint):
        return [w for w, _ in stage.writes] + [w for w, _ in stage.holds]
    if isinstance(stage, MatMulAdjoint):
        return [stage.write] if stage.write else []
    if isinstance(stage, ApplyAdjoint):
        return list(stage.writes.values())
    return []


def adjoint_reads(p: Program, stage) -> list[Buffer]:
    """The adjoint buffers a backward stage reads."""
    if isinstance(stage, FusedAdjoint):
        return [p.places[vid].buffer.adjoint for vid in stage.external]
    if isinstance(stage, (MatMulAdjoint, WeightGrad, ProjectGrad)):
        return [stage.stage.out.adjoint]
    if isinstance(stage, ApplyAdjoint):
        return [p.places[stage.stage.value].buffer.adjoint]
    if isinstance(stage, SumRows):
        return [stage.rows]
    return []
