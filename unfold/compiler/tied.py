"""`W.T @ v`: the compiler sees a param of its own for W's transpose.

The step program packs a matmul's weights from params as they are, so a
product with a transposed param is compiled as a product with a derived
param `W__T` (shape [n, m], a name no symbol has): `untie` rewrites the
recurrence the compiler lowers, and at every call `expand` puts W.T (a
contiguous copy) into the run's params, and `fold` adds the derived param's
gradient, transposed, into W's.  The user's recurrence, its params and its
gradients never show the derived name; the reference interpreter runs W.T
as it is (`lang/ops/linear.py`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..graph.runargs import host_array
from ..lang.ir import Call, Role, transform, walk
from ..lang.recurrence import Recurrence

SUFFIX = "__T"


def untie(rec: Recurrence) -> tuple[Recurrence, dict[str, str]]:
    """(the recurrence to lower, {derived param: the param it is the transpose of});
    `rec` itself when no product is transposed."""
    exprs = [eq.expr for eq in rec.equations] + ([rec.loss.expr] if rec.loss else [])
    used = sorted({e.args[0].name for x in exprs for e in walk(x) if _transposed(e)})
    if not used:
        return rec, {}
    ties = {}
    for name in used:
        derived = name + SUFFIX
        while derived in rec.symbols:
            derived += "_"
        ties[derived] = name
    names = {w: d for d, w in ties.items()}
    symbols = dict(rec.symbols)
    for derived, name in ties.items():
        s = rec.symbols[name]
        symbols[derived] = dataclasses.replace(s, name=derived, dims=s.dims[::-1], shape=s.shape[::-1], init=None)
    equations = [dataclasses.replace(eq, expr=_rewrite(eq.expr, names)) for eq in rec.equations]
    loss = dataclasses.replace(rec.loss, expr=_rewrite(rec.loss.expr, names)) if rec.loss else None
    return dataclasses.replace(rec, symbols=symbols, equations=equations, loss=loss), ties


def _transposed(e) -> bool:
    return isinstance(e, Call) and e.op.name == "matmul" and e.attrs == ("T",)


def _rewrite(e, names: dict[str, str]):
    """`W.T @ v` -> `W__T @ v`, everywhere in an expression tree."""
    def change(node, args):
        if not _transposed(node):
            return None
        w = args[0]
        return dataclasses.replace(node, args=(dataclasses.replace(w, name=names[w.name], shape=w.shape[::-1]),)
                                   + args[1:], attrs=())
    return transform(e, change)


def expand(params: dict, ties: dict[str, str]) -> dict:
    """The run's params with each derived transpose added."""
    if not ties:
        return params
    out = dict(params)
    for derived, name in ties.items():
        out[derived] = np.ascontiguousarray(np.asarray(params[name]).T)
    return out


def fold(grads: dict, ties: dict[str, str], rec: Recurrence) -> dict:
    """The gradients with each derived param's added, transposed, into its param's
    (on the host: a gradient given back on a device comes back as a numpy array)."""
    for derived, name in ties.items():
        g = grads.pop(derived, None)
        if g is None or rec.symbols[name].role is not Role.PARAM:
            continue
        g = np.asarray(host_array(g)).T
        grads[name] = np.asarray(host_array(grads[name])) + g if name in grads else np.ascontiguousarray(g)
    return grads


def wanted(names, ties: dict[str, str]):
    """The gradients to compute, with a param's derived transpose where the param is asked for."""
    if names is None or not ties:
        return names
    return frozenset(names) | {d for d, w in ties.items() if w in names}


__all__ = ["untie", "expand", "fold", "wanted"]
