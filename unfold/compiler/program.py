"""The step program: one period of the unfolded DAG, complete and executable.

Parameter sharing says one step of the DAG is enough; the step program is that
step run inside time loops, plus everything that can leave the loops, forward
*and* backward.  The passes (`unfold.compiler.passes`) build it; every target
only prints or interprets it, deciding nothing:

    values    one `Value` per op of every equation, and the leaves they read
              (params, inputs, state carries s[t-k], the mask)
    stages    Project (a hoisted GEMM over all steps), MatMul (one packed
              product per step), Fused (one loop of elementwise math), Apply
              (an op of the registry), in `statics` (params only, run once)
              and `loops` (one per direction), then the loss
    places    where each value lives: a `Buffer`, a column range and a time shift
    backward  which adjoint buffers are zeroed, the seed, each loop's adjoint
              stages in reverse with what they assign (=) or accumulate (+=)
              under which guard, and what runs after the loops: per-sequence
              rows summed, weight-gradient GEMMs, the statics' adjoints, the
              projections' gradients

Buffer layouts, time-major, t = 1..T (step t at index t-1 unless said):

    PARAM   a param's own array        PACKED  [m, n] packed weights ([W1; W2; ...])
    INPUT   [T, B, n] the run's array  STATIC_INPUT  [B, n] one per sequence
    SEQ     [T, B, n]                  STATE   [T + 2d, B, n], step t at t-1+d;
    STATIC  [n] a param-only value             the d slots each side hold the initial value
    MASK    [T, B] 1 where running     WEIGHTS [T, B] each step's weight in the loss
    ROWS    [B, n] per-sequence adjoint rows of a param or static value
    PADDED  [T, B, n] an input with its steps after each sequence's end zeroed
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import sympy as sp

from ..lang.ir import Reduce, Role
from ..lang.recurrence import Recurrence
from .names import Namespace


class Leaf(enum.Enum):
    PARAM = "param"      # a param or const
    INPUT = "input"      # an input or target, read at t + offset (offset None: one per sequence)
    CARRY = "carry"      # a state read `offset` steps back (ahead, for a backward state)
    MASK = "mask"        # 1 where a sequence is running (runs with lengths)


@dataclass(eq=False)
class Value:
    """One value of a step.  `size`: units per sequence (1 for a scalar);
    batched values are [B, size] per step, the others [size]."""
    id: str
    size: int
    batched: bool = True
    leaf: Leaf | None = None
    op: object = None                 # computed values: the op's registry entry
    args: tuple[str, ...] = ()
    fn: sp.Lambda | None = None       # elementwise: the function of the args
    attrs: tuple = ()
    name: str = ""                    # leaves: the symbol's name
    role: Role | None = None          # leaves: the symbol's role
    offset: int | None = 0            # inputs: t + offset; carries: steps back
    var: str | None = None            # the variable (equation left side) this value is
    shape: tuple = ()                 # params: their own shape

    def node(self) -> dict:
        """The attributes an op's numpy meaning reads (as a DAG node has them)."""
        return {"fn": self.fn, "attrs": self.attrs, "shape": (self.size,)}


class Layout(enum.Enum):
    PARAM = "param"
    PACKED = "packed"
    INPUT = "input"
    STATIC_INPUT = "static input"
    SEQ = "seq"
    STATE = "state"
    STATIC = "static"
    MASK = "mask"
    WEIGHTS = "weights"
    ROWS = "rows"
    PADDED = "padded input"

    @property
    def timed(self) -> bool:
        return self in (Layout.INPUT, Layout.SEQ, Layout.STATE, Layout.PADDED)


@dataclass(frozen=True, eq=False)
class Buffer:
    """A named array of the run; `adjoint` is its gradient's buffer (if any)."""
    name: str
    layout: Layout
    width: int
    depth: int = 0                    # STATE: slots for initial values on each side
    holds: str = ""                   # what it holds, for listings: "state h", "[Wi; Wf] @ x"
    symbol: str = ""                  # PARAM, INPUT: the model's symbol; STATE: the state
    shape: tuple = ()                 # PARAM: the param's own shape
    adjoint: "Buffer | None" = None

    def dims(self, T: int, B: int) -> tuple:
        """The array's shape for T steps and B sequences."""
        return {Layout.PARAM: self.shape or (1,), Layout.PACKED: self.shape, Layout.STATIC: (self.width,),
                Layout.INPUT: (T, B, self.width), Layout.STATIC_INPUT: (B, self.width),
                Layout.SEQ: (T, B, self.width), Layout.STATE: (T + 2 * self.depth, B, self.width),
                Layout.MASK: (T, B), Layout.WEIGHTS: (T, B), Layout.ROWS: (B, self.width),
                Layout.PADDED: (T, B, self.width)}[self.layout]


@dataclass(frozen=True)
class Place:
    """Where a value lives: columns col..col+size of `buffer`, read at step t + shift."""
    buffer: Buffer
    col: int
    size: int
    shift: int = 0

    @property
    def whole(self) -> bool:
        return self.col == 0 and self.size == self.buffer.width

    def adjoint(self) -> "Place":
        return Place(self.buffer.adjoint, self.col, self.size, self.shift)


@dataclass
class StateInfo:
    name: str
    size: int
    direction: int
    depth: int                # how many steps back it is read (>= 1)
    value: str                # the value id of its new value
    init: object              # a number or a param name


@dataclass
class Program:
    """See the module docstring; fields are filled pass by pass."""
    rec: Recurrence
    masked: bool
    #: what the backward pass differentiates: names of params, inputs and
    #: `init:<state>`s (None: all of them) ...
    wrt: frozenset | None = None
    #: ... and the variables that receive an outside cotangent (`fn.vjp`)
    seeds: frozenset = frozenset()
    names: Namespace = field(default_factory=Namespace)
    values: dict[str, Value] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)     # variable name -> value id
    loss: str | None = None                                   # the loss term's value id
    states: list[StateInfo] = field(default_factory=list)
    projects: list = field(default_factory=list)              # of stages.Project
    matmuls: list = field(default_factory=list)               # of stages.MatMul
    fused: list = field(default_factory=list)                 # Fused and Apply stages
    loop_of: dict = field(default_factory=dict)               # value id -> stages.LoopKind
    statics: list = field(default_factory=list)
    loops: list = field(default_factory=list)                 # of stages.Loop
    loss_sum: object = None                                   # stages.LossSum
    places: dict[str, Place] = field(default_factory=dict)
    buffers: list[Buffer] = field(default_factory=list)
    backward: object = None                                   # stages.Backward
    passes: list[str] = field(default_factory=list)           # the passes run so far

    @property
    def reduce(self) -> Reduce | None:
        return self.rec.loss.reduce if self.rec.loss else None

    def wants(self, key: str) -> bool:
        """Is the gradient of a param, an input or `init:<state>` asked for?"""
        return self.wrt is None or key in self.wrt

    def stages(self):
        """Every forward stage in execution order (projections first)."""
        yield from self.projects
        yield from self.statics
        for loop in self.loops:
            yield from loop.stages

    def buffer(self, name: str) -> Buffer:
        return next(b for b in self.buffers if b.name == name)

    @property
    def mask(self) -> Buffer:
        """The mask[t, b] of a masked program (runs with lengths)."""
        return next(b for b in self.buffers if b.layout is Layout.MASK)

    @property
    def weights(self) -> Buffer:
        """The loss weights lw[t, b] (programs with a loss)."""
        return next(b for b in self.buffers if b.layout is Layout.WEIGHTS)

    def param_adjoint(self, name: str) -> Buffer:
        """The adjoint buffer of param `name`."""
        return next(b.adjoint for b in self.buffers if b.layout is Layout.PARAM and b.symbol == name)


def symbol(vid: str) -> sp.Symbol:
    """The scalar symbol of a value in elementwise expressions."""
    return sp.Symbol(vid, real=True)
