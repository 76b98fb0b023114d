"""The two ops most of a cell is made of: `W @ v` and elementwise math."""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import elementwise as ew
from ..errors import ModelError
from ..ir import Lit, Read, expr_text, infix_text
from .base import Lowering, Op, register, snippet, unbroadcast


def _env(fn, args):
    return dict(zip(fn.variables, args))


def _broadcast(e, args, ctx) -> tuple:
    """The shape of an elementwise call: its operands' one shape, a scalar
    (`param()`, a number) or a value of size 1 (`param(1)`, `input(1)`)
    broadcasting over the others, as numpy broadcasts [B, 1] against [B, n]."""
    values = [a for a in args if not isinstance(a, Lit)]
    wide = [a for a in values if a.shape not in ((), (1,))]
    for a in wide[1:]:
        if a.shape != wide[0].shape:
            raise ModelError(f"shape mismatch in `{expr_text(e)}`: {ctx.describe(wide[0])} but "
                             f"{ctx.describe(a)}", e.loc, "elementwise operands of one shape; only a "
                             "scalar or a value of size 1 (param(1), input(1)) broadcasts over a vector")
    if wide:
        return wide[0].shape
    return (1,) if any(a.shape == (1,) for a in values) else ()


def _entry(e):
    """The registry entry of a call of a built-in function (not a user's `def` of that name)."""
    entry = ew.ENTRIES.get(e.name)
    return entry if entry is not None and entry.public and ew.FUNCTIONS[e.name] == e.fn else None


def _refused_literals(e, literals) -> tuple[str, str] | None:
    entry = _entry(e)
    return entry.literals(literals) if entry is not None and entry.literals else None


@register
class MatMul(Op):
    """W @ v: W [m, n] a param or const, v [B, n] (or [n]) -> [B, m].
    W.T @ v (attrs ("T",)): W [m, n], v [B, m] -> [B, n]; the compiler runs it
    as a product with W's transpose, made from W at each call (compiler/tied.py)."""
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
        if not isinstance(a, Read):  # the step program packs the weights of a matmul from params
            raise ModelError(f"the left side of `@` must be a param or const matrix itself, not "
                             f"`{snippet(a)}`", a.loc, "W @ v with W = param(m, n); scale the product "
                             "instead: (W @ v) * 2")
        rows, cols = a.shape[::-1] if e.attrs == ("T",) else a.shape
        if len(v.shape) != 1 or v.shape[0] != cols:
            raise ModelError(f"shape mismatch in `{expr_text(e)}`: {ctx.describe(a)} but {ctx.describe(v)}",
                             e.loc, f"a vector of length {cols} (the columns of {expr_text(a)}"
                             f"{'.T' if e.attrs == ('T',) else ''})")
        return dataclasses.replace(e, shape=(rows,), batched=v.batched)

    def forward(self, args, node, ctx):
        a, v = args
        return v @ (a if node["attrs"] == ("T",) else a.T)

    def vjp(self, i, g, args, node, ctx):
        a, v = args
        t = node["attrs"] == ("T",)
        if i == 0:
            dw = g.T @ v if g.ndim == 2 else np.outer(g, v)
            return dw.T if t else dw
        return g @ (a.T if t else a)

    def text(self, e, sub, prec):
        s = f"{sub(e.args[0], 3)}{'.T' if e.attrs == ('T',) else ''} @ {sub(e.args[1], 3)}"
        return f"({s})" if prec > 2 else s


@register
class Elementwise(Op):
    """f(a0, a1, ...) for a sympy Lambda f, broadcasting; d/d a_i by sympy.diff."""
    name = "ew"
    arity = None
    lowering = Lowering.FUSED

    def shape(self, e, args, ctx):
        shape = _broadcast(e, args, ctx)
        literals = {i: a.value for i, a in enumerate(args) if isinstance(a, Lit)}
        refused = literals and _refused_literals(e, literals)
        if refused:
            raise ModelError(f"`{snippet(e)}`: {refused[0]}", e.loc, refused[1])
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
        out = dataclasses.replace(e, fn=fn, shape=shape,
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
