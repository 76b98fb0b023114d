"""An embedding lookup, `E[x[t]]`: column x[t] of E, as math E @ one_hot(x[t]).

A model writes `E[x[t]]` with `E = param(H, V)` and `x = input(1)` holding a
token index 0..V-1 per step (an integer array is accepted); the parser and
the builder make it `E @ one_hot(x[t])`, so the lookup is an ordinary matmul
stage (packed, on the micro-kernels) and its gradient an ordinary weight
gradient, scattered into E's column x[t] by the one-hot.  The index gets no
gradient.  An index outside 0..V-1 (a NaN in the padding after a sequence's
end) gives the zero vector, never a read out of bounds; `graph.runargs`
checks the indices of running steps on the host.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ModelError
from ..ir import Call, Read, Role, expr_text
from .base import register
from .linear import MATMUL
from .vector import VectorOp

HELP = "E[x[t]] with E = param(H, V) and x = input(1) holding token indices 0..V-1"


@register
class OneHot(VectorOp):
    """one_hot(k): the unit vector e_k as wide as the param it indexes
    (attrs: (that param's name,), and after the checker (name, V))."""
    name = "one_hot"

    def shape(self, e, args, ctx):
        (k,) = args
        sym = ctx.symbols.get(k.name) if isinstance(k, Read) else None
        if sym is None or sym.role is not Role.INPUT or k.shape != (1,):
            raise ModelError(f"the index of an embedding lookup must be an input of size 1; {ctx.describe(k)}",
                             k.loc, HELP)
        table = ctx.symbols.get(e.attrs[0])
        if table is None or table.role not in (Role.PARAM, Role.CONST) or len(table.shape) != 2:
            raise ModelError(f"`{e.attrs[0]}` indexed by a token must be a param matrix", e.loc, HELP)
        width = table.shape[1]
        return dataclasses.replace(e, shape=(width,), batched=True, attrs=(e.attrs[0], width))

    def forward(self, args, node, ctx):
        k = args[0]
        n = node["attrs"][1]
        out = np.zeros(k.shape[:-1] + (n,), ctx.dtype)
        ok = (k >= 0) & (k < n)
        np.put_along_axis(out, np.where(ok, k, 0).astype(np.intp), np.where(ok, 1.0, 0.0), axis=-1)
        return out

    def vjp(self, i, g, args, node, ctx):
        return np.zeros_like(args[0])   # an index: no gradient

    def numba(self, e, w, v, adjoint):
        if adjoint:
            return   # no gradient flows into an index
        (k,) = v.args
        n = v.attrs[1]
        with e.batch(w, v):
            w.line(f"_c = {e.read(k, '0')}")
            w.line(f"_k = int(_c) if _c >= dt(0.0) and _c < dt({n}.0) else -1")   # NaN: no row
            with w.block(f"for j in range({n}):"):
                w.line(f"{e.at(v.id, 'j')} = dt(1.0) if j == _k else dt(0.0)")

    def text(self, e, sub, prec):
        return f"one_hot({sub(e.args[0])})"


def lookup(table, index, loc):
    """The IR of `table[index]`: table @ one_hot(index)."""
    if not isinstance(table, Read) or table.offset is not None:
        raise ModelError(f"only a param is indexed by a token (`{expr_text(table)}[...]`)", loc, HELP)
    return Call(MATMUL, (table, Call(OneHot, (index,), loc, attrs=(table.name,))), loc)

