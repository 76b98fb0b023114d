"""Losses of two vectors, a scalar per sequence and step."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ModelError
from ..ir import expr_text
from .base import register, unbroadcast
from .vector import VectorOp


class PairLoss(VectorOp):
    """f(a, b) of two vectors of one shape -> a scalar per sequence."""
    arity = 2
    in_models = True
    signature = "a, b"

    def shape(self, e, args, ctx):
        self.vectors(e, args, ctx)
        if args[0].shape != args[1].shape:
            raise ModelError(f"shape mismatch in `{expr_text(e)}`: {ctx.describe(args[0])} but "
                             f"{ctx.describe(args[1])}", e.loc, "two vectors of one shape")
        return dataclasses.replace(e, shape=(), batched=any(a.batched for a in args))


@register
class MSE(PairLoss):
    """mse(a, b) = mean((a - b)**2) over units."""
    name = "mse"

    def forward(self, args, node, ctx):
        a, b = args
        return ((a - b) ** 2).mean(axis=-1, keepdims=True)

    def vjp(self, i, g, args, node, ctx):
        a, b = args
        d = g * (2.0 / a.shape[-1]) * (a - b)
        return unbroadcast(d if i == 0 else -d, args[i].shape)

    def numba(self, e, w, v, adjoint):
        a, y = v.args
        n = e.size(a)
        with e.batch(w, v):
            if adjoint:
                w.line(f"_g = {e.at(v.id, '0', adjoint=True)} * dt({2.0 / n!r})")
                with w.block(f"for j in range({n}):"):
                    w.line(f"_r = {e.read(a, 'j')} - {e.read(y, 'j')}")
                    e.write(w, a, "j", "_g * _r")
                    e.write(w, y, "j", "-_g * _r")
            else:
                w.line("_s = dt(0.0)")
                with w.block(f"for j in range({n}):"):
                    w.line(f"_r = {e.read(a, 'j')} - {e.read(y, 'j')}")
                    w.line("_s += _r * _r")
                w.line(f"{e.at(v.id, '0')} = _s / dt({n}.0)")


def log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


@register
class SoftmaxCrossEntropy(PairLoss):
    """softmax_cross_entropy(z, y) = -sum(y * log_softmax(z)); y a distribution.
    Log-sum-exp shifted by the max, so large logits do not overflow."""
    name = "softmax_cross_entropy"
    signature = "z, y"

    def forward(self, args, node, ctx):
        z, y = args
        return -(y * log_softmax(z)).sum(axis=-1, keepdims=True)

    def vjp(self, i, g, args, node, ctx):
        z, y = args
        lp = log_softmax(z)
        d = g * (np.exp(lp) * y.sum(axis=-1, keepdims=True) - y) if i == 0 else -g * lp
        return unbroadcast(d, args[i].shape)

    def numba(self, e, w, v, adjoint):
        z, y = v.args
        n = e.size(z)
        with e.batch(w, v):
            w.line(f"_m = {e.read(z, '0')}")
            with w.block(f"for j in range(1, {n}):"):
                w.line(f"_m = max(_m, {e.read(z, 'j')})")
            w.line("_s = dt(0.0)")
            w.line("_ys = dt(0.0)")
            with w.block(f"for j in range({n}):"):
                w.line(f"_s += math.exp({e.read(z, 'j')} - _m)")
                w.line(f"_ys += {e.read(y, 'j')}")
            w.line("_lse = _m + math.log(_s)")
            if adjoint:
                w.line(f"_g = {e.at(v.id, '0', adjoint=True)}")
                with w.block(f"for j in range({n}):"):
                    w.line(f"_zj = {e.read(z, 'j')}")
                    e.write(w, z, "j", f"_g * (math.exp(_zj - _lse) * _ys - {e.read(y, 'j')})")
                    e.write(w, y, "j", "_g * (_lse - _zj)")
            else:
                w.line("_acc = dt(0.0)")
                with w.block(f"for j in range({n}):"):
                    w.line(f"_acc += {e.read(y, 'j')} * (_lse - {e.read(z, 'j')})")
                w.line(f"{e.at(v.id, '0')} = _acc")
