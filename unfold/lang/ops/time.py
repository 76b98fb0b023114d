"""The ops unfolding adds around the equations: a variable's value at a step,
an initial state, and the loss (the per-step terms reduced over time).
They exist only in the unfolded DAG: the step program writes a state into its
history buffer, keeps initial values in that buffer's padding slots and
weighs loss terms with the loss-weight buffer.

`t` read as a value (`x[t] * t`, a time feature) is the one op here a model
writes and the step program runs: a stage of its own that stores the step."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import Reduce
from .base import Lowering, Op, register, unbroadcast


@register
class Assign(Op):
    """v[t] = its equation's value; a state also reads its previous instance
    and keeps it where the sequence has ended (`lengths`)."""
    name = "assign"
    arity = None
    lowering = Lowering.DAG_ONLY
    why = "a state's value is written into its history buffer, a held value selected with `where`"

    def reads(self, i, n):
        return (i,)  # for its shape only

    def forward(self, args, node, ctx):
        new = np.broadcast_to(args[0], (ctx.batch, *(node["shape"] or (1,))))
        if len(args) == 1 or ctx.mask is None:
            return new
        return np.where(ctx.mask[node["t"]][:, None], new, args[1])

    def vjp(self, i, g, args, node, ctx):
        held = len(node["inputs"]) == 2 and ctx.mask is not None  # only states hold
        if not held:
            return unbroadcast(g, np.shape(args[i]))
        m = ctx.mask[node["t"]][:, None]
        return unbroadcast(np.where(m, g, 0.0) if i == 0 else np.where(m, 0.0, g), np.shape(args[i]))


@register
class InitialState(Op):
    """s[t] for t <= 0: a number, a param, or the `init` array given to the run."""
    name = "init"
    arity = None
    lowering = Lowering.DAG_ONLY
    why = "initial values are the padding slots of a state's history buffer"

    def forward(self, args, node, ctx):
        given = ctx.init.get(node["name"])
        src = given if given is not None else (args[0] if args else node["value"])
        return np.broadcast_to(np.asarray(src, ctx.dtype), (ctx.batch, *(node["shape"] or (1,)))).copy()

    def vjp(self, i, g, args, node, ctx):
        if ctx.init.get(node["name"]) is not None:
            return np.zeros_like(args[0])  # the run's own init replaced the param
        return unbroadcast(g, args[0].shape)


@register
class TimeReduce(Op):
    """The loss: per-step terms [B, 1] reduced over time, then averaged over
    the batch.  sum_t: sum of valid steps; mean_t: divided by each length;
    last_t: the term at each sequence's own last step (step T, or its length).
    A term of weight 0 (a step after a sequence's end) is never read."""
    name = "loss"
    arity = None
    lowering = Lowering.DAG_ONLY
    why = "the time reduction is the loss-weight buffer of the step program"

    def reads(self, i, n):
        return ()  # the weights come from the mask, not the terms

    @staticmethod
    def weights(node, ctx, t):
        m = np.ones(ctx.batch) if ctx.mask is None else ctx.mask[t].astype(float)
        if node["reduce"] is Reduce.MEAN:
            m = m / ctx.lengths_or_tau
        elif node["reduce"] is Reduce.LAST:
            m = (ctx.lengths_or_tau == t).astype(float)
        return m / ctx.batch

    def forward(self, args, node, ctx):
        total = 0.0
        for u, a in zip(node["inputs"], args):
            w = self.weights(node, ctx, ctx.step_of(u))
            total += float(np.where(w != 0, w * a[:, 0], 0.0).sum())
        return total

    def vjp(self, i, g, args, node, ctx):
        w = self.weights(node, ctx, ctx.step_of(node["inputs"][i]))
        return (g * w)[:, None].astype(ctx.dtype)


@register
class StepIndex(Op):
    """`t` read as a value: the index of the step, a float scalar per
    sequence, 0 at the first step (the position of x[t] in its array).  It is
    the same number in both directions: a backward state's recurrence visits
    the steps T-1, ..., 0 but reads at step t the value t.  No gradient flows
    into it.  `fn.stepper` (one step per call) refuses a model that reads it."""
    name = "t"
    arity = 0

    def reads(self, i, n):
        return ()

    def shape(self, e, args, ctx):
        return dataclasses.replace(e, shape=(), batched=True)

    def forward(self, args, node, ctx):
        return np.full((ctx.batch, 1), node["t"] - 1, ctx.dtype)  # node["t"] counts steps from 1

    def vjp(self, i, g, args, node, ctx):
        raise AssertionError("t has no arguments")

    def numba(self, e, w, v, adjoint):
        if adjoint:
            return
        with e.batch(w, v):
            w.line(f"{e.at(v.id, '0')} = dt(t - 1)")

    def text(self, e, sub, prec):
        return "t"


STEP_INDEX = StepIndex
