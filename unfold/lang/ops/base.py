"""The op registry's base: what one op says about itself, in one place.

An op is one `Op` subclass, instantiated once and registered by name.  Every
stage of unfold reads the same entry:

    name, arity, in_models   the parser and the builder: `mse(a, b)`, `concat(a, b, ...)`
    shape(e, args, ctx)      the checker: the shape rule (a `ModelError` on misuse)
    forward(args, node, ctx) the interpreters: the numpy meaning on [B, n] arrays
    vjp(i, g, args, node, ctx)  ... and the adjoint of argument i (BPTT)
    reads(i, n)              which arguments that adjoint reads
    lowering                 how the step program runs it: MATMUL (a matmul stage),
                             FUSED (an elementwise loop), APPLY (a stage of its own,
                             printed by `numba`), DAG_ONLY (`why` says why) or
                             REWRITTEN (`why` says into what)
    numba(e, w, v, adjoint)  APPLY ops: the loops that numba CPU and CUDA print

`node` is a mapping with the op instance's attributes (`fn`, `attrs`,
`shape`, `t`, `inputs`); `ctx` the run (batch, dtype, mask, init).  Per-step
values are [B, n] ([B, 1] for scalars), params keep their own shape.

The `numba` template prints through the stage printer `e` of the numba
backends (`unfold.backends.loops`): `e.read(vid, j)` and `e.at(vid, j)` are
index expressions, `e.write(w, vid, j, text)` writes an adjoint as the step
program's memory plan says, `e.batch(w, v)` loops over the sequences.
"""
from __future__ import annotations

import enum

import numpy as np

from ..errors import ModelError
from ..ir import expr_text

REGISTRY: dict[str, "Op"] = {}


class Lowering(enum.Enum):
    MATMUL = "a matmul stage (packed, hoisted or per step)"
    FUSED = "part of a fused elementwise stage"
    APPLY = "a stage of its own, printed by the op's numba template"
    DAG_ONLY = "only in the unfolded DAG"
    REWRITTEN = "rewritten by the compiler into ops that lower, before it lowers (`why` says how)"


def lookup(name: str) -> "Op":
    return REGISTRY[name]


class Op:
    """The base of every op; see the module docstring."""
    name = ""
    arity: int | None = 1            # None: one or more
    in_models = False                # callable by name in a model file
    lowering = Lowering.APPLY
    why = ""                         # DAG_ONLY, REWRITTEN: how the step program does without it

    @property
    def barrier(self) -> bool:
        """Does it end a chain of elementwise math (the fuse pass stops here)?"""
        return self.lowering is not Lowering.FUSED

    def reads(self, i: int, n: int) -> tuple[int, ...]:
        """The arguments the adjoint of argument i reads (default: all)."""
        return tuple(range(n))

    def shape(self, e, args, ctx):
        raise NotImplementedError(self.name)

    def forward(self, args, node, ctx):
        raise NotImplementedError(self.name)

    def vjp(self, i, g, args, node, ctx):
        raise NotImplementedError(self.name)

    def numba(self, e, w, v, adjoint: bool):
        raise NotImplementedError(f"{self.name} has no numba template ({self.lowering.value})")

    def text(self, e, sub, prec: int) -> str:
        """Source-like text of a call; `sub(arg, prec)` prints an argument."""
        return f"{self.name}({', '.join(sub(a) for a in e.args)})"

    def check_arity(self, n: int, loc):
        if (self.arity is None and n < 1) or (self.arity is not None and n != self.arity):
            want = "one or more arguments" if self.arity is None else \
                f"{self.arity} argument{'s' if self.arity != 1 else ''}"
            raise ModelError(f"{self.name}() takes {want}, got {n}", loc, f"{self.name}({self.signature})")

    signature = "v"

    def __reduce__(self):  # pickled by name: a step program on disk refers to the registry
        return lookup, (self.name,)

    def __repr__(self) -> str:
        return self.name


def register(cls):
    """Instantiate an op class once and add it to the registry."""
    op = cls()
    if op.name in REGISTRY:
        raise AssertionError(f"op {op.name} registered twice")
    REGISTRY[op.name] = op
    return op


def snippet(e, width: int = 60) -> str:
    """An expression's text for a message, cut to `width` characters."""
    text = expr_text(e)
    return text if len(text) <= width else text[:width - 3] + "..."


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum g down to `shape` (the inverse of numpy broadcasting)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g
