"""The training loop: batches in, trained params and a History out.

    fn = uf.compile(rec, target="cpu", dtype=np.float32)
    params, history = uf.fit(fn, params, data, steps=2000, optimizer=uf.optim.Adam(1e-3, clip=1.0),
                             eval_data=held_out, callbacks=[EarlyStopping(patience=5)])

Each step is the loop a user would write by hand (the tests compare the two):

    loss, grads = fn.value_and_grad(params, batch.inputs, batch.targets, lengths=batch.lengths,
                                    init=batch.init, truncate=truncate, wrt="params")
    params, opt_state = optimizer.update(params, grads, opt_state)

`data` is
- one batch, used at every step: a `Batch` or a tuple (inputs, targets[, lengths[, init]]);
- a callable rng -> batch, called at every step with fit's generator, seeded
  by `seed` (random windows, fresh samples of a task);
- an iterable of batches (a list: gone through again when it ends, an epoch
  each time; a one-shot iterator such as a generator: its end ends the run).
Float arrays are cast to the compiled function's dtype.

Every `eval_every` steps and after the last, the loss on `eval_data` (a batch
or a list of batches, weighted by their number of sequences) goes into the
history, and also once before the first step.  Callbacks run after every step
with the `FitState` and may stop the run (`state.stop = True`) or replace its
params (callbacks.py).  A step whose loss or gradient is not finite is not
applied: the run stops there, with a warning and the params from before it.
A model with dropout trains with fresh masks at every step (each step's
`seed=` drawn from a generator of its own, seeded by `seed`, so the batches
drawn do not depend on it) and is evaluated without dropout.
fit never changes the params it is given.
"""
from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..lang.errors import InputError, UnfoldError
from ..lang.ir import Role
from .data import Batch
from .history import History
from .optim import Adam, Optimizer, OptState
from .progress import Progress


@dataclass
class FitState:
    """What callbacks see after each step."""
    fn: Any                          # the compiled function
    params: dict
    opt_state: OptState
    history: History
    step: int = 0                    # counted on from `history`'s last step
    loss: float = math.nan           # this step's training loss
    eval_loss: float | None = None   # this step's held-out loss, if it evaluated at this step
    stop: bool = False               # set by a callback to end the run after this step


def fit(fn, params: dict, data, steps: int = 1000, optimizer: Optimizer | None = None, callbacks=(),
        eval_data=None, eval_every: int | None = None, truncate: int | None = None, wrt="params",
        progress="auto", seed: int | None = 0, history: History | None = None) -> tuple[dict, History]:
    """Train `params` of the compiled `fn` on `data` for `steps` updates
    (see the module docstring); returns (params, history).  `truncate`: BPTT
    truncated to windows of that many steps; `wrt`: the gradients computed
    ("params": no input's or initial state's); `history`: a previous run's,
    continued (a curriculum: steps are numbered on)."""
    steps = _whole("steps", steps)
    optimizer, callbacks = _checked(optimizer, callbacks)
    params = {k: np.array(v, dtype=fn.dtype) for k, v in params.items()}   # a copy: the caller's stay as they are
    state = FitState(fn, params, optimizer.init(params), History() if history is None else history)
    evals = _eval_set(fn, eval_data)
    every = max(1, steps // 20) if eval_every is None else _whole("eval_every", eval_every)
    noise = np.random.default_rng(None if seed is None else [seed, 1]) if getattr(fn, "dropout", False) else None
    run = _Run(state, optimizer, _batches(fn, data, np.random.default_rng(seed)), dict(truncate=truncate, wrt=wrt),
               noise)
    if evals and not state.history.eval_step:
        state.history.record_eval(state.history.last_step, _mean_loss(fn, state.params, evals))
    with Progress(progress, steps) as bar:
        first = state.history.last_step
        for i in range(1, steps + 1):
            state.step, state.eval_loss = first + i, None
            if not run.step():
                break
            if evals and (i % every == 0 or i == steps):
                state.eval_loss = _mean_loss(fn, state.params, evals)
                state.history.record_eval(state.step, state.eval_loss)
            for cb in callbacks:
                cb(state)
            bar.update(state)
            if state.stop:
                break
    return state.params, state.history


def _checked(optimizer, callbacks) -> tuple[Optimizer, list]:
    optimizer = Adam() if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise UnfoldError(f"optimizer must be an unfold optimizer (SGD, Adam, AdamW), not {optimizer!r}")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise UnfoldError(f"a callback must be callable with the FitState, not {cb!r}")
    return optimizer, callbacks


class _Run:
    """One training step at a time: a batch, BPTT, the optimizer's update."""

    def __init__(self, state: FitState, optimizer: Optimizer, batches, options: dict, noise=None):
        self.state, self.optimizer, self.batches, self.options = state, optimizer, batches, options
        self.noise = noise   # dropout: a generator of each step's seed (None: the model has no dropout)
        self.clock = time.perf_counter()

    def step(self) -> bool:
        """Take one step; False (and the reason in the history) if the run must end."""
        s = self.state
        batch = next(self.batches, None)
        if batch is None:
            s.history.stop_reason = f"the data ran out after step {s.step - 1}"
            return False
        seed = {} if self.noise is None else {"seed": int(self.noise.integers(2**63))}
        loss, grads = s.fn.value_and_grad(s.params, batch.inputs, batch.targets, init=batch.init,
                                          lengths=batch.lengths, **self.options, **seed)
        params, opt = self.optimizer.update(s.params, grads, s.opt_state)
        if not (math.isfinite(loss) and math.isfinite(opt.grad_norm)):
            s.history.stop_reason = (f"at step {s.step} the loss ({loss}) or the gradient norm ({opt.grad_norm}) "
                                     "is not finite; the params are those from before it")
            warnings.warn(f"unfold.fit: {s.history.stop_reason}. A lower learning rate or clipping "
                          "(e.g. Adam(lr, clip=1.0)) may help", RuntimeWarning, stacklevel=3)
            return False
        s.params, s.opt_state, s.loss = params, opt, loss
        s.history.record(s.step, loss, opt.grad_norm, opt.lr, time.perf_counter() - self.clock)
        return True


def eval_loss(fn, params: dict, data) -> float:
    """The loss of `params` on held-out `data` (a batch or a list of batches),
    the mean over all its sequences: each batch's loss weighted by its size."""
    return _mean_loss(fn, {k: np.asarray(v, dtype=fn.dtype) for k, v in params.items()}, _eval_set(fn, data))


def _mean_loss(fn, params: dict, batches: list[Batch]) -> float:
    total = count = 0
    for b in batches:
        n = _batch_size(fn.rec, b)
        total += n * fn.loss(params, b.inputs, b.targets, init=b.init, lengths=b.lengths)
        count += n
    return total / count


def _eval_set(fn, data) -> list[Batch]:
    if data is None:
        return []
    items = [data] if isinstance(data, tuple) else list(data) if isinstance(data, list) else None
    if not items:
        raise InputError("eval_data must be a batch (a Batch or a tuple (inputs, targets[, lengths[, init]])) "
                         f"or a non-empty list of them, not {type(data).__name__}")
    return [as_batch(fn, b) for b in items]


def _batches(fn, data, rng: np.random.Generator):
    """Every step's batch, as the module docstring says."""
    if isinstance(data, tuple):
        batch = as_batch(fn, data)
        while True:
            yield batch
    if callable(data):
        while True:
            yield as_batch(fn, data(rng))
    if not hasattr(data, "__iter__") or isinstance(data, (dict, str, np.ndarray)):
        raise InputError("data must be a batch (a Batch or a tuple (inputs, targets[, lengths[, init]])), "
                         f"a callable rng -> batch, or an iterable of batches; not {type(data).__name__}")
    again = iter(data) is not data   # a list can be gone through again, a generator cannot
    while True:
        empty = True
        for item in data:
            empty = False
            yield as_batch(fn, item)
        if not again or empty:
            return


def as_batch(fn, item) -> Batch:
    """A Batch from a Batch or a tuple, float arrays in `fn`'s dtype and C order."""
    if not isinstance(item, tuple) or not 1 <= len(item) <= 4:
        raise InputError("a batch is a Batch or a tuple (inputs, targets[, lengths[, init]]) of dicts "
                         f"name -> array; got {type(item).__name__}")
    b = Batch(*item)
    for name, tree in (("inputs", b.inputs), ("targets", b.targets), ("init", b.init)):
        if tree is not None and not isinstance(tree, dict):
            raise InputError(f"a batch's {name} must be a dict name -> array, not {type(tree).__name__}")
    return Batch(_cast(b.inputs, fn.dtype), _cast(b.targets, fn.dtype), b.lengths, _cast(b.init, fn.dtype))


def _cast(tree: dict | None, dtype) -> dict | None:
    if tree is None:
        return None
    return {k: np.ascontiguousarray(v, dtype=dtype) if np.asarray(v).dtype.kind in "fiub" else v
            for k, v in tree.items()}


def _batch_size(rec, batch: Batch) -> int:
    """The number of sequences in a batch, read off any of its arrays."""
    for tree in (batch.inputs, batch.targets):
        for name, a in (tree or {}).items():
            s = rec.symbols.get(name)
            if s is not None and s.role in (Role.INPUT, Role.TARGET):
                return int(np.shape(a)[1 if s.timed else 0])
    return 1


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UnfoldError(f"{name} must be a positive whole number, not {value!r}")
    return int(value)
