"""Dropout: the compiler sees a product with a mask input drawn at each call.

`dropout(v, p)` (lang/ops/dropout.py) is lowered as `v * m[t]` with `m` an
input of its own (a name no symbol has): `lower` rewrites the recurrence the
compiler lowers, so the product fuses into the elementwise stage around it on
every target and its adjoint is the same product.  At every call `inputs`
gives each mask: the one `RunArgs.check` drew from the call's seed, or ones
in evaluation mode (kept per run shape: one compiled program serves both
modes).  A mask gets no gradient: `wanted` names the gradients a call asks
for, so none is computed for it.  The user's recurrence, its inputs and its
gradients never show the masks.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..lang import elementwise as ew
from ..lang.ir import Call, Read, Role, Symbol, transform
from ..lang.ops import EW, dropout
from ..lang.recurrence import Recurrence
from .calls import every_gradient

PREFIX = "dropout_mask"


def lower(rec: Recurrence) -> tuple[Recurrence, dict[str, tuple[int, tuple]]]:
    """(the recurrence to lower, {mask input: (its dropout site, its shape)});
    `rec` itself when it has no dropout."""
    calls = dropout.sites(rec)
    if not calls:
        return rec, {}
    symbols = dict(rec.symbols)
    names = {}
    for c in calls:
        name = f"{PREFIX}{c.attrs[2]}"
        while name in symbols:
            name += "_"
        symbols[name] = Symbol(name, Role.INPUT, dims=c.shape, loc=c.loc, shape=c.shape)
        names[c.attrs[2]] = name
    equations = [dataclasses.replace(eq, expr=_rewrite(eq.expr, names)) for eq in rec.equations]
    loss = dataclasses.replace(rec.loss, expr=_rewrite(rec.loss.expr, names)) if rec.loss else None
    return dataclasses.replace(rec, symbols=symbols, equations=equations, loss=loss), \
        {names[c.attrs[2]]: (c.attrs[2], c.shape) for c in calls}


def _rewrite(e, names: dict[int, str]):
    """`dropout(v, p)` -> `v * m[t]` everywhere in an expression tree."""
    def change(node, args):
        if node.op is not dropout.DROPOUT:
            return None
        m = Read(names[node.attrs[2]], 0, node.loc, shape=node.shape, batched=True)
        return Call(EW, (args[0], m), node.loc, "mul", ew.OPERATORS["mul"], shape=node.shape, batched=True)
    return transform(e, change)


def inputs(run, masks: dict[str, tuple[int, tuple]], ws: dict) -> dict:
    """The run's inputs with each dropout mask added: the one drawn from the
    call's seed, or ones (evaluation mode; the last run shape's kept in the
    workspace `ws`)."""
    if not masks:
        return run.inputs
    out, ones = dict(run.inputs), ws.setdefault("dropout: ones", {})
    for name, (site, shape) in masks.items():
        m = run.noise.get(site)
        if m is None:
            m = ones.get(name)
            if m is None or m.shape != (run.tau, run.batch) + shape or m.dtype != run.dtype:
                m = ones[name] = np.ones((run.tau, run.batch) + shape, run.dtype)
        out[name] = m
    return out


def wanted(names, rec: Recurrence, masks: dict):
    """The gradients to compute: every one the user may ask for when `names` is
    None (all), but never a mask's."""
    return names if names is not None or not masks else every_gradient(rec)


__all__ = ["lower", "inputs", "wanted"]
