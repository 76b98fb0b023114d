"""Ops on whole vectors: join, slice, reduce to a scalar per sequence."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ModelError
from ..sizes import SizeError, eval_size
from .base import Op, register, unbroadcast


class VectorOp(Op):
    """An op whose arguments are vectors (no numbers)."""

    def vectors(self, e, args, ctx):
        ctx.no_literals(e, args)
        for a in args:
            if len(a.shape) != 1:
                raise ModelError(f"{self.name}() needs a vector; {ctx.describe(a)}", a.loc, "a vector")


@register
class Concat(VectorOp):
    """concat(a, b, ...) along the unit axis."""
    name = "concat"
    arity = None
    in_models = True
    signature = "a, b, ..."

    def shape(self, e, args, ctx):
        self.vectors(e, args, ctx)
        return dataclasses.replace(e, shape=(sum(a.shape[0] for a in args),),
                                   batched=any(a.batched for a in args))

    def forward(self, args, node, ctx):
        lead = np.broadcast_shapes(*(a.shape[:-1] for a in args))
        return np.concatenate([np.broadcast_to(a, lead + a.shape[-1:]) for a in args], axis=-1)

    def vjp(self, i, g, args, node, ctx):
        lo = sum(a.shape[-1] for a in args[:i])
        return unbroadcast(g[..., lo:lo + args[i].shape[-1]], args[i].shape)

    def numba(self, e, w, v, adjoint):
        with e.batch(w, v):
            lo = 0
            for a in v.args:
                with w.block(f"for j in range({e.size(a)}):"):
                    if adjoint:
                        e.write(w, a, "j", e.at(v.id, f"{lo} + j", adjoint=True))
                    else:
                        w.line(f"{e.at(v.id, f'{lo} + j')} = {e.read(a, 'j')}")
                lo += e.size(a)


@register
class Slice(VectorOp):
    """v[lo:hi] along the unit axis."""
    name = "slice"

    def shape(self, e, args, ctx):
        (a,) = args
        self.vectors(e, args, ctx)
        try:
            lo, hi = (eval_size(x, ctx.dims) for x in e.attrs)
        except KeyError as k:
            raise ModelError(f"undeclared dim `{k.args[0]}` in a slice", e.loc,
                             "a dim declared with `name = dim(n)`") from None
        except SizeError as err:
            raise ModelError(f"bad slice bound: {err}", e.loc, "whole numbers 0 <= lo < hi") from None
        if not (0 <= lo < hi <= a.shape[0]):
            raise ModelError(f"slice [{lo}:{hi}] is out of range: {ctx.describe(a)}", e.loc,
                             f"0 <= lo < hi <= {a.shape[0]}")
        return dataclasses.replace(e, attrs=(lo, hi), shape=(hi - lo,), batched=a.batched)

    def forward(self, args, node, ctx):
        lo, hi = node["attrs"]
        return args[0][..., lo:hi]

    def vjp(self, i, g, args, node, ctx):
        lo, hi = node["attrs"]
        d = np.zeros(np.broadcast_shapes(args[0].shape[:-1], g.shape[:-1]) + args[0].shape[-1:], g.dtype)
        d[..., lo:hi] = g
        return unbroadcast(d, args[0].shape)

    def numba(self, e, w, v, adjoint):
        lo, _ = v.attrs
        (a,) = v.args
        with e.batch(w, v):
            with w.block(f"for j in range({v.size}):"):
                if adjoint:
                    e.write(w, a, f"{lo} + j", e.at(v.id, "j", adjoint=True))
                else:
                    w.line(f"{e.at(v.id, 'j')} = {e.read(a, f'{lo} + j')}")

    def text(self, e, sub, prec):
        return f"{sub(e.args[0], 9)}[{e.attrs[0]}:{e.attrs[1]}]"


class Reduction(VectorOp):
    """A vector -> a scalar per sequence: the sum of its units over `divisor(n)`."""

    def shape(self, e, args, ctx):
        self.vectors(e, args, ctx)
        return dataclasses.replace(e, shape=(), batched=args[0].batched)

    def divisor(self, n: int) -> int:
        return 1

    def forward(self, args, node, ctx):
        return args[0].sum(axis=-1, keepdims=True) / self.divisor(args[0].shape[-1])

    def vjp(self, i, g, args, node, ctx):
        full = np.broadcast_to(g, np.broadcast_shapes(g.shape, args[0].shape))
        return unbroadcast(full, args[0].shape) / self.divisor(args[0].shape[-1])

    def numba(self, e, w, v, adjoint):
        (a,) = v.args
        n = e.size(a)
        k = "" if self.divisor(n) == 1 else f" / dt({n}.0)"
        with e.batch(w, v):
            if adjoint:
                w.line(f"_g = {e.at(v.id, '0', adjoint=True)}{k}")
                with w.block(f"for j in range({n}):"):
                    e.write(w, a, "j", "_g")
            else:
                w.line("_s = dt(0.0)")
                with w.block(f"for j in range({n}):"):
                    w.line(f"_s += {e.read(a, 'j')}")
                w.line(f"{e.at(v.id, '0')} = _s{k}")


@register
class Sum(Reduction):
    """sum(v) over units -> a scalar per sequence."""
    name = "sum"
    in_models = True


@register
class Mean(Reduction):
    """mean(v) over units."""
    name = "mean"
    in_models = True

    def divisor(self, n):
        return n
