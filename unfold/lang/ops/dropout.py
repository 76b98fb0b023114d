"""dropout(v, p): each unit of v kept with probability 1 - p, scaled by 1/(1 - p).

    h[t] = tanh(W @ dropout(h[t-1], 0.25) + U @ x[t] + b)
    h[t] = tanh(W @ dropout(h[t-1], 0.25, variational=True) + ...)

Inverted dropout (Srivastava et al. 2014): a kept unit is scaled by 1/(1-p)
during training, so nothing changes at evaluation.  `variational=True` draws
one mask per sequence and uses it at every step (Gal & Ghahramani 2016);
otherwise every step draws its own.  A run is in training mode when it is
given a `seed` (`fn(..., seed=7)`, `value_and_grad(..., seed=step)`): the
masks are drawn on the host from that seed alone, the same for every target,
dtype and device; without a seed dropout is the identity (evaluation mode).

Each dropout in a model is a site, numbered by the checker in step order;
site k's mask is `masks(...)[k]`, [T, B, n] in the run's dtype.  The
reference interpreter multiplies by it; the compiler makes it an input of
its own, drawn at each call (compiler/noise.py), so the step program runs
dropout as one more product in a fused elementwise stage.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError, ModelError
from ..ir import Call, Lit, expr_text, walk
from .base import Lowering, Op, register, unbroadcast

HELP = "dropout(v, p) with v a vector and p a number 0 <= p < 1; dropout(v, p, variational=True) " \
       "for one mask per sequence"


@register
class Dropout(Op):
    """attrs: ("variational",) as written; after the checker (p, variational, site)."""
    name = "dropout"
    arity = 2
    in_models = True
    keywords = ("variational",)    # keyword arguments a model may write: True or False literals
    signature = "v, p"
    lowering = Lowering.REWRITTEN
    why = "v * m[t], m a mask the compiler adds as an input, given at each call (compiler/noise.py)"

    def shape(self, e, args, ctx):
        v, p = args
        if isinstance(v, Lit) or len(v.shape) != 1:
            what = "a number" if isinstance(v, Lit) else ctx.describe(v)
            raise ModelError(f"dropout() drops the units of a vector; {what}", v.loc, HELP)
        if not isinstance(p, Lit) or not 0.0 <= p.value < 1.0:
            raise ModelError(f"the drop probability must be a number 0 <= p < 1, not `{expr_text(p)}`", p.loc, HELP)
        site = ctx.count("dropout")
        return dataclasses.replace(e, args=(v,), shape=v.shape, batched=True,
                                   attrs=(p.value, "variational" in e.attrs, site))

    def forward(self, args, node, ctx):
        m = _mask(node, ctx)
        return args[0] if m is None else args[0] * m

    def vjp(self, i, g, args, node, ctx):
        m = _mask(node, ctx)
        return unbroadcast(g if m is None else g * m, np.shape(args[0]))

    def text(self, e, sub, prec):
        if len(e.attrs) == 3:
            p, variational, _ = e.attrs
            return f"dropout({sub(e.args[0])}, {p!r}{', variational=True' if variational else ''})"
        return f"dropout({', '.join(sub(a) for a in e.args)}{', variational=True' if e.attrs else ''})"


def _mask(node, ctx):
    """This site's mask at the node's step, [B, n] (the running rows only, where
    the interpreter asks for those); None in evaluation mode."""
    masks = getattr(ctx, "noise", None)
    if not masks:
        return None
    return masks[node["attrs"][2]][node["t"] - 1][getattr(ctx, "rows", slice(None))]


def sites(rec) -> list[Call]:
    """The dropout calls of a checked recurrence, by site number."""
    exprs = [eq.expr for eq in rec.equations] + ([rec.loss.expr] if rec.loss else [])
    found = [n for x in exprs for n in walk(x) if isinstance(n, Call) and n.op is DROPOUT]
    return sorted(found, key=lambda c: c.attrs[2])


def check_seed(seed):
    """A seed is a whole number >= 0 (None: evaluation mode)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InputError(f"seed must be a whole number >= 0 (None: evaluation, dropout off), not {seed!r}")
    return None if seed is None else int(seed)


def spawn(seed, n: int) -> list:
    """n seeds drawn from `seed`, for the n parts of a run that draw masks of
    their own (an encoder–decoder's parts, a tree's levels, a batch's shards);
    all None when `seed` is None (evaluation mode)."""
    seed = check_seed(seed)
    return [None] * n if seed is None else [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


def masks(rec, tau: int, batch: int, seed: int, dtype) -> dict[int, np.ndarray]:
    """Each site's mask for a run: 0 where a unit is dropped, 1/(1-p) where kept.
    Site k draws from its own stream of `seed`, always in float32, so the masks
    do not depend on the run's dtype or target."""
    out = {}
    for c in sites(rec):
        p, variational, site = c.attrs
        rng = np.random.default_rng([seed, site])
        keep = rng.random(((1,) if variational else (tau,)) + (batch,) + c.shape, dtype=np.float32) >= p
        m = np.where(keep, 1.0 / (1.0 - p), 0.0).astype(dtype)
        out[site] = np.ascontiguousarray(np.broadcast_to(m, (tau, batch) + c.shape))
    return out


DROPOUT = Dropout
