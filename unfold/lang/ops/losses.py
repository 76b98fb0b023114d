"""Losses of two vectors, a scalar per sequence and step."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ModelError
from ..ir import Read, Role, expr_text
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
    Log-sum-exp shifted by the max, so large logits do not overflow.

    softmax_cross_entropy(z, k) with `k = target(1)`: k holds a class index
    (a whole number 0..K-1, stored as a float) per step, or per sequence if
    read without [t]: -log_softmax(z)[k].  The call is marked attrs=("class",).
    The run's arrays are checked on the host (`graph.runargs`); the kernels
    also read an index outside 0..K-1 (a NaN in padding) as 0, never out of bounds."""
    name = "softmax_cross_entropy"
    signature = "z, y"

    def shape(self, e, args, ctx):
        z, k = args
        if not (len(z.shape) == 1 and z.shape[0] > 1 and k.shape == (1,)):
            return super().shape(e, args, ctx)
        self.vectors(e, args, ctx)
        sym = ctx.symbols.get(k.name) if isinstance(k, Read) else None
        if sym is None or sym.role is not Role.TARGET:
            raise ModelError(f"the class index of `{expr_text(e)}` must be a target; {ctx.describe(k)}", k.loc,
                             "k = target(1) holding class indices 0..K-1, read as k[t] (or k, one per "
                             "sequence); or a distribution y of z's size")
        return dataclasses.replace(e, attrs=("class",), shape=(), batched=True)

    def forward(self, args, node, ctx):
        z, y = args
        if node["attrs"] == ("class",):
            lp = np.broadcast_to(log_softmax(z), y.shape[:-1] + z.shape[-1:])  # y: [B, 1]
            return -np.take_along_axis(lp, _classes(y, z.shape[-1]), axis=-1)
        return -(y * log_softmax(z)).sum(axis=-1, keepdims=True)

    def vjp(self, i, g, args, node, ctx):
        z, y = args
        lp = log_softmax(z)
        if node["attrs"] == ("class",):
            if i == 1:
                return np.zeros_like(y)  # an index: no gradient
            lp = np.broadcast_to(lp, y.shape[:-1] + z.shape[-1:])
            onehot = np.zeros(lp.shape, lp.dtype)
            np.put_along_axis(onehot, _classes(y, z.shape[-1]), 1.0, axis=-1)
            return unbroadcast(g * (np.exp(lp) - onehot), z.shape)
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
                if v.attrs != ("class",):
                    w.line(f"_ys += {e.read(y, 'j')}")
            w.line("_lse = _m + math.log(_s)")
            if v.attrs == ("class",):
                self.numba_class(e, w, v, adjoint)
            elif adjoint:
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

    def numba_class(self, e, w, v, adjoint):
        """The class-index form, inside the batch loop, after _lse.  `_c < n`
        and `_c >= 0` are both false for NaN: a bad index reads class 0."""
        z, k = v.args
        n = e.size(z)
        w.line(f"_c = {e.read(k, '0')}")
        w.line(f"_k = int(_c) if _c >= dt(0.0) and _c < dt({n}.0) else 0")
        if not adjoint:
            w.line(f"{e.at(v.id, '0')} = _lse - {e.read(z, '_k')}")
            return
        w.line(f"_g = {e.at(v.id, '0', adjoint=True)}")
        with w.block(f"for j in range({n}):"):
            e.write(w, z, "j", f"_g * (math.exp({e.read(z, 'j')} - _lse) - (dt(1.0) if j == _k else dt(0.0)))")


def _classes(k: np.ndarray, n: int) -> np.ndarray:
    """Class indices as integers; outside 0..n-1 (padding, NaN) read as 0, as the kernels do."""
    ok = (k >= 0) & (k < n)
    return np.where(ok, k, 0).astype(np.intp)
