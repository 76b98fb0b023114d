"""The op registry: each op's forward meaning and its adjoint rule, together.

An op is a class with two static methods on numpy arrays:

    forward(args, node, ctx) -> value
    vjp(i, g, args, node, ctx) -> the contribution of adjoint g to args[i]
    reads(i, n) -> which arguments that contribution reads (default: all)

`node` is the DAG node's attribute dict (its `fn`, `attrs`, `t`, ...), `ctx`
the run's context (batch size, the mask made from `lengths`).  Per-step values
are [B, n] ([B, 1] for scalars), params keep their own shape; `unbroadcast`
sums an adjoint back to the shape of what was broadcast.

The elementwise op `ew` serves every elementwise function: its derivative is
`sympy.diff` of the function, so the adjoint of a user's `softsign` is never
written by hand.  Backends lower the same op names (see `backends/`); a test
checks that none is missing.
"""
from __future__ import annotations

import numpy as np

from . import elementwise as ew
from .ir import Reduce

REGISTRY: dict[str, type] = {}


def _all_args(i, n):
    return tuple(range(n))


def register(cls):
    """Add an op; its adjoint reads all its arguments unless it says otherwise."""
    cls.reads = staticmethod(getattr(cls, "reads", _all_args))
    REGISTRY[cls.name] = cls
    return cls


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum g down to `shape` (the inverse of numpy broadcasting)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


def _env(fn, args):
    return dict(zip(fn.variables, args))


@register
class MatMul:
    """W @ v: W [m, n] a param, v [B, n] (or [n]) -> [B, m]."""
    name = "matmul"

    @staticmethod
    def reads(i, n):
        return (1 - i,)  # dW needs v, dv needs W

    @staticmethod
    def forward(args, node, ctx):
        a, v = args
        return v @ a.T

    @staticmethod
    def vjp(i, g, args, node, ctx):
        a, v = args
        if i == 0:
            return g.T @ v if g.ndim == 2 else np.outer(g, v)
        return g @ a


@register
class Elementwise:
    """f(a0, a1, ...) for a sympy Lambda f, broadcasting; d/d a_i by sympy.diff."""
    name = "ew"

    @staticmethod
    def forward(args, node, ctx):
        return ew.numpy_eval(node["fn"].expr, _env(node["fn"], args)) + np.zeros((), ctx.dtype)

    @staticmethod
    def vjp(i, g, args, node, ctx):
        d = ew.numpy_eval(ew.partials(node["fn"])[i], _env(node["fn"], args))
        return unbroadcast(np.broadcast_to(g * d, np.broadcast_shapes(g.shape, np.shape(d))),
                           np.shape(args[i]))


@register
class Concat:
    """concat(a, b, ...) along the unit axis."""
    name = "concat"

    @staticmethod
    def forward(args, node, ctx):
        lead = np.broadcast_shapes(*(a.shape[:-1] for a in args))
        return np.concatenate([np.broadcast_to(a, lead + a.shape[-1:]) for a in args], axis=-1)

    @staticmethod
    def vjp(i, g, args, node, ctx):
        lo = sum(a.shape[-1] for a in args[:i])
        return unbroadcast(g[..., lo:lo + args[i].shape[-1]], args[i].shape)


@register
class Slice:
    """v[lo:hi] along the unit axis."""
    name = "slice"

    @staticmethod
    def forward(args, node, ctx):
        lo, hi = node["attrs"]
        return args[0][..., lo:hi]

    @staticmethod
    def vjp(i, g, args, node, ctx):
        lo, hi = node["attrs"]
        d = np.zeros(np.broadcast_shapes(args[0].shape[:-1], g.shape[:-1]) + args[0].shape[-1:], g.dtype)
        d[..., lo:hi] = g
        return unbroadcast(d, args[0].shape)


@register
class Sum:
    """sum(v) over units -> a scalar per sequence."""
    name = "sum"

    @staticmethod
    def forward(args, node, ctx):
        return args[0].sum(axis=-1, keepdims=True)

    @staticmethod
    def vjp(i, g, args, node, ctx):
        return unbroadcast(np.broadcast_to(g, np.broadcast_shapes(g.shape, args[0].shape)), args[0].shape)


@register
class Mean:
    """mean(v) over units."""
    name = "mean"

    @staticmethod
    def forward(args, node, ctx):
        return args[0].mean(axis=-1, keepdims=True)

    @staticmethod
    def vjp(i, g, args, node, ctx):
        return Sum.vjp(i, g, args, node, ctx) / args[0].shape[-1]


@register
class MSE:
    """mse(a, b) = mean((a - b)**2) over units."""
    name = "mse"

    @staticmethod
    def forward(args, node, ctx):
        a, b = args
        return ((a - b) ** 2).mean(axis=-1, keepdims=True)

    @staticmethod
    def vjp(i, g, args, node, ctx):
        a, b = args
        d = g * (2.0 / a.shape[-1]) * (a - b)
        return unbroadcast(d if i == 0 else -d, args[i].shape)


def log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


@register
class SoftmaxCrossEntropy:
    """softmax_cross_entropy(z, y) = -sum(y * log_softmax(z)); y a distribution."""
    name = "softmax_cross_entropy"

    @staticmethod
    def forward(args, node, ctx):
        z, y = args
        return -(y * log_softmax(z)).sum(axis=-1, keepdims=True)

    @staticmethod
    def vjp(i, g, args, node, ctx):
        z, y = args
        lp = log_softmax(z)
        d = g * (np.exp(lp) * y.sum(axis=-1, keepdims=True) - y) if i == 0 else -g * lp
        return unbroadcast(d, args[i].shape)


# -- the ops unfolding adds around the equations ------------------------------

@register
class Assign:
    """v[t] = its equation's value; a state also reads its previous instance
    and keeps it where the sequence has ended (`lengths`)."""
    name = "assign"

    @staticmethod
    def reads(i, n):
        return (i,)  # for its shape only

    @staticmethod
    def forward(args, node, ctx):
        new = np.broadcast_to(args[0], (ctx.batch, *(node["shape"] or (1,))))
        if len(args) == 1 or ctx.mask is None:
            return new
        return np.where(ctx.mask[node["t"]][:, None], new, args[1])

    @staticmethod
    def vjp(i, g, args, node, ctx):
        held = len(node["inputs"]) == 2 and ctx.mask is not None  # only states hold
        m = ctx.mask[node["t"]][:, None] if held else 1.0
        return unbroadcast(g * m if i == 0 else g * (1 - m), np.shape(args[i]))


@register
class InitialState:
    """s[t] for t <= 0: a number, a param, or the `init` array given to the run."""
    name = "init"

    @staticmethod
    def forward(args, node, ctx):
        given = ctx.init.get(node["name"])
        src = given if given is not None else (args[0] if args else node["value"])
        return np.broadcast_to(np.asarray(src, ctx.dtype), (ctx.batch, *(node["shape"] or (1,)))).copy()

    @staticmethod
    def vjp(i, g, args, node, ctx):
        if ctx.init.get(node["name"]) is not None:
            return np.zeros_like(args[0])  # the run's own init replaced the param
        return unbroadcast(g, args[0].shape)


@register
class TimeReduce:
    """The loss: per-step terms [B, 1] reduced over time, then averaged over
    the batch.  sum_t: sum of valid steps; mean_t: divided by each length;
    last_t: the term at the last step (states hold their final value)."""
    name = "loss"

    @staticmethod
    def reads(i, n):
        return ()  # the weights come from the mask, not the terms

    @staticmethod
    def weights(node, ctx, t):
        m = np.ones(ctx.batch) if ctx.mask is None else ctx.mask[t].astype(float)
        if node["reduce"] is Reduce.MEAN:
            m = m / ctx.lengths_or_tau
        elif node["reduce"] is Reduce.LAST:
            m = np.ones(ctx.batch)
        return m / ctx.batch

    @staticmethod
    def forward(args, node, ctx):
        ts = [ctx.step_of(n) for n in node["inputs"]]
        return sum(float(TimeReduce.weights(node, ctx, t) @ a[:, 0]) for t, a in zip(ts, args))

    @staticmethod
    def vjp(i, g, args, node, ctx):
        w = TimeReduce.weights(node, ctx, ctx.step_of(node["inputs"][i]))
        return (g * w)[:, None].astype(ctx.dtype)
