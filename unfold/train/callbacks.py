"""Callbacks of `fit`: called after every step with the `FitState`.

    fit(..., eval_data=held_out, callbacks=[EarlyStopping(patience=5), Checkpoint("best.npz")])

A callback is any callable taking the state; it may end the run
(`state.stop = True`) or replace `state.params`.  Held-out losses arrive as
`state.eval_loss` at the steps that evaluated (None at the others).
"""
from __future__ import annotations

import math

import numpy as np

from ..lang.errors import UnfoldError
from .io import save


class EarlyStopping:
    """Stop when the held-out loss has not improved by `min_delta` for
    `patience` evaluations in a row; with `restore_best`, the run ends with
    the params of the best evaluation.  monitor="loss" watches the training
    loss of every step instead (for runs without held-out data)."""

    def __init__(self, patience: int = 5, min_delta: float = 0.0, restore_best: bool = True,
                 monitor: str = "eval_loss"):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise UnfoldError(f"patience must be a positive number of evaluations, not {patience!r}")
        if monitor not in ("eval_loss", "loss"):
            raise UnfoldError(f"monitor must be \"eval_loss\" or \"loss\", not {monitor!r}")
        self.patience, self.min_delta = patience, float(min_delta)
        self.restore_best, self.monitor = restore_best, monitor
        self.best, self.best_step, self.best_params, self.waited = math.inf, None, None, 0

    def __call__(self, state):
        value = state.eval_loss if self.monitor == "eval_loss" else state.loss
        if value is None:
            return
        if value < self.best - self.min_delta:
            self.best, self.best_step, self.waited = value, state.step, 0
            if self.restore_best:
                self.best_params = {k: np.array(v) for k, v in state.params.items()}
            return
        self.waited += 1
        if self.waited >= self.patience:
            state.stop = True
            state.history.stop_reason = (f"early stopping: {self.monitor} has not improved for {self.patience} "
                                         f"evaluations since step {self.best_step}")
            if self.restore_best and self.best_params is not None:
                state.params = self.best_params


class Checkpoint:
    """Save the params with `uf.save` (the model text beside them): at each
    new best held-out loss, or every `every` steps if given."""

    def __init__(self, path, every: int | None = None):
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise UnfoldError(f"every must be a positive number of steps or None, not {every!r}")
        self.path, self.every, self.best = path, every, math.inf

    def __call__(self, state):
        if self.every is not None:
            due = state.step % self.every == 0
        else:
            due = state.eval_loss is not None and state.eval_loss < self.best
            self.best = min(self.best, state.eval_loss if state.eval_loss is not None else math.inf)
        if due:
            save(self.path, state.params, state.fn.rec,
                 meta={"step": state.step, "loss": state.loss, "eval_loss": state.eval_loss})
