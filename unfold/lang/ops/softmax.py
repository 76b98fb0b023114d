"""Vector functions: softmax(v) and log_softmax(v), a vector of the same size.

Both subtract the vector's largest entry before `exp` (stable for large
logits).  Their adjoints are Jacobian-vector products that read the stored
output y, never the n x n Jacobian:

    softmax:      dv = y * (g - sum(g * y))
    log_softmax:  dv = g - exp(y) * sum(g)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .base import register, unbroadcast
from .losses import log_softmax
from .vector import VectorOp


class VectorFunction(VectorOp):
    """A function of a whole vector to a vector of its size."""
    in_models = True

    def shape(self, e, args, ctx):
        self.vectors(e, args, ctx)
        return dataclasses.replace(e, shape=args[0].shape, batched=args[0].batched)

    def numba(self, e, w, v, adjoint):
        (z,) = v.args
        n = e.size(z)
        with e.batch(w, v):
            if adjoint:
                w.line("_s = dt(0.0)")
                with w.block(f"for j in range({n}):"):
                    w.line(f"_s += {self.summand(e, v)}")
                with w.block(f"for j in range({n}):"):
                    e.write(w, z, "j", self.adjoint_text(e, v))
                return
            w.line(f"_m = {e.read(z, '0')}")
            with w.block(f"for j in range(1, {n}):"):
                w.line(f"_m = max(_m, {e.read(z, 'j')})")
            w.line("_s = dt(0.0)")
            with w.block(f"for j in range({n}):"):
                w.line(f"_s += math.exp({e.read(z, 'j')} - _m)")
            with w.block(f"for j in range({n}):"):
                w.line(f"{e.at(v.id, 'j')} = {self.output_text(e, z)}")


@register
class Softmax(VectorFunction):
    """softmax(v)_j = exp(v_j) / sum_k exp(v_k)."""
    name = "softmax"

    def forward(self, args, node, ctx):
        return np.exp(log_softmax(args[0]))

    def vjp(self, i, g, args, node, ctx):
        y = np.exp(log_softmax(args[0]))
        return unbroadcast(y * (g - (g * y).sum(axis=-1, keepdims=True)), args[0].shape)

    def output_text(self, e, z):
        return f"math.exp({e.read(z, 'j')} - _m) / _s"

    def summand(self, e, v):
        return f"{e.at(v.id, 'j', adjoint=True)} * {e.at(v.id, 'j')}"

    def adjoint_text(self, e, v):
        return f"{e.at(v.id, 'j')} * ({e.at(v.id, 'j', adjoint=True)} - _s)"


@register
class LogSoftmax(VectorFunction):
    """log_softmax(v)_j = v_j - log sum_k exp(v_k)."""
    name = "log_softmax"

    def forward(self, args, node, ctx):
        return log_softmax(args[0])

    def vjp(self, i, g, args, node, ctx):
        y = log_softmax(args[0])
        return unbroadcast(g - np.exp(y) * g.sum(axis=-1, keepdims=True), args[0].shape)

    def output_text(self, e, z):
        return f"{e.read(z, 'j')} - _m - math.log(_s)"

    def summand(self, e, v):
        return e.at(v.id, "j", adjoint=True)

    def adjoint_text(self, e, v):
        return f"{e.at(v.id, 'j', adjoint=True)} - math.exp({e.at(v.id, 'j')}) * _s"
