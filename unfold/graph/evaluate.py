"""The public functions that run a recurrence: evaluate, value_and_grad, compile.

    rec = uf.load("examples/models/elman.rnn")
    params = rec.init_params(seed=0)
    out = uf.evaluate(rec, params, {"x": x}, {"y": y})   # out["h"]: [T, B, H]; out["loss"]

Reference semantics of `evaluate` (time-major, t = 1..T):

    s[t] = init(s) for t <= 0          (t > T for a backward state)
    for t in 1..T: v[t] = equation(v) for every equation, in step order
    loss = mean over b of reduce_t(loss_term[t, b])
"""
from __future__ import annotations

import numpy as np

from ..lang.ir import Role
from ..lang.recurrence import Recurrence
from . import interpret
from .runargs import RunArgs
from .unfolding import LOSS, unfold


def evaluate(rec: Recurrence, params, inputs=None, targets=None, init=None, lengths=None,
             tau=None, batch=None, seed=None) -> dict[str, np.ndarray]:
    """Every state and intermediate as [T, B, ...], and `loss` (a float) if the
    model has one and targets are given, by the reference interpreter.  seed:
    training mode, dropout's masks drawn from it (None: evaluation mode)."""
    run = RunArgs.check(rec, params, inputs, targets, init, lengths, tau, batch, need_targets=False, seed=seed)
    dag = unfold(rec, run.tau, last=run.last_steps)
    env = interpret.run(dag, run)
    out = {s.name: interpret.stack(dag, env, s.name, run.tau) for s in rec.of_role(Role.STATE, Role.INTER)}
    if rec.loss is not None and (targets or not rec.of_role(Role.TARGET)):
        out[LOSS] = float(env[LOSS])
    return out
