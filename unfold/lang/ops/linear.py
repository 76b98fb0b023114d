"""The two ops most of a cell is made of: `W @ v` and elementwise math."""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import elementwise as ew
from ..errors import ModelError
from ..ir import Lit, expr_text, infix_text
from .base import Lowering, Op, register, snippet, unbroadcast


def _env(fn, args):
    return dict(zip(fn.variables, args))


@register
class MatMul(Op):
    """W @ v: W [m, n] a param or const, v [B, n] (or [n]) -> [B, m]."""
    name = "matmul"
    arity = 2
    lowering = Lowering.MATMUL

    def reads(self, i, n):
        return (1 - i,)  # dW needs v, dv needs W

    def shape(self, e, args, ctx):
        ctx.no_literals(e, args)
        a, v = args
        if a.batched or len(a.shape) != 2:
            raise ModelError(f"the left side of `@` must be a param or const matrix; {ctx.describe(a)}"
                             + (" and changes every step" if a.batched else ""), a.loc,
                             "W @ v with W = param(m, n)")
        if len(v.shape) != 1 or v.shape[0] != a.shape[1]:
            raise ModelError(f"shape mismatch in `{expr_text(e)}`: {ctx.describe(a)} but {ctx.describe(v)}",
                             e.loc, f"a vector of length {a.shape[1]} (the columns of {expr_text(a)})")
        return dataclasses.replace(e, shape=(a.shape[0],), batched=v.batched)

    def forward(self, args, node, ctx):
        a, v = args
        return v @ a.T

    def vjp(self, i, g, args, node, ctx):
        a, v = args
        if i == 0:
            return g.T @ v if g.ndim == 2 else np.outer(g, v)
        return g @ a

    def text(self, e, sub, prec):
        s = f"{sub(e.args[0], 3)} @ {sub(e.args[1], 3)}"
        return f"({s})" if prec > 2 else s


@register
class Elementwise(Op):
    """f(a0, a1, ...) for a sympy Lambda f, broadcasting; d/d a_i by sympy.diff."""
    name = "ew"
    arity = None
    lowering = Lowering.FUSED

    def shape(self, e, args, ctx):
        shapes = {a.shape for a in args if not isinstance(a, Lit) and a.shape != ()}
        if len(shapes) > 1:
            a, b = [a for a in args if not isinstance(a, Lit)][:2]
            raise ModelError(f"shape mismatch in `{expr_text(e)}`: {ctx.describe(a)} but {ctx.describe(b)}",
                             e.loc, "elementwise operands of one shape (or scalars)")
        literals = {i: a.value for i, a in enumerate(args) if isinstance(a, Lit)}
        if len(literals) == len(args):  # all numbers: fold to one number, as the kernels would compute it
            try:
                return Lit(ew.fold(e.fn, [a.value for a in args]), e.loc)
            except ValueError as err:
                raise ModelError(f"`{snippet(e)}` {err}", e.loc, "a finite real number") from None
        try:
            fn = ew.bind_literals(e.fn, literals) if literals else e.fn
            if not fn.expr.free_symbols & set(fn.variables):  # reads nothing (`h[t-1] * 0`): a number
                return Lit(ew.fold(fn, [0.0] * len(fn.variables)), e.loc)
        except ValueError as err:
            raise ModelError(f"`{snippet(e)}` {err}", e.loc, "a finite real number") from None
        out = dataclasses.replace(e, fn=fn, shape=shapes.pop() if shapes else (),
                                  batched=any(a.batched for a in args))
        ctx.elementwise(out, [a for a in args if not isinstance(a, Lit)])
        return out

    def forward(self, args, node, ctx):
        return ew.numpy_eval(node["fn"].expr, _env(node["fn"], args)) + np.zeros((), ctx.dtype)

    def vjp(self, i, g, args, node, ctx):
        d = ew.numpy_eval(ew.partials(node["fn"])[i], _env(node["fn"], args))
        return unbroadcast(np.broadcast_to(g * d, np.broadcast_shapes(g.shape, np.shape(d))),
                           np.shape(args[i]))

    def text(self, e, sub, prec):
        return infix_text(e, sub, prec)


MATMUL, EW = MatMul, Elementwise
