"""Optimizers: SGD (momentum, Nesterov), Adam and AdamW, each with optional
gradient clipping by the global norm of the parameters' gradients.

    opt = Adam(1e-3, clip=1.0)               # lr: a number or a schedule (step -> lr)
    state = opt.init(params)
    params, state = opt.update(params, grads, state)
    state.grad_norm, state.lr                # of that update (the norm before clipping)

`update` is a pure function (optax's shape): it returns new arrays and a new
state and changes neither argument, so a step can be retried and a state
kept.  Only the params that have a gradient are updated: consts (an
echo-state reservoir) pass through, and gradients of inputs or initial states
(`grads["x"]`, `grads["init:h"]`) are ignored, by the clipping too.  Params
keep their dtype.

The rules are PyTorch's (torch.optim.SGD, Adam, AdamW), step for step
(tests/test_train.py runs both); per param p with gradient g, at update n = 1, 2, ...:

    SGD    g += wd * p;  m = g if n == 1 else mu * m + g;  p -= lr * (g + mu * m if nesterov else m)
    Adam   g += wd * p;  m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g**2   (m = v = 0 before)
           p -= lr * (m / (1 - b1**n)) / (sqrt(v / (1 - b2**n)) + eps)
    AdamW  p *= 1 - lr * wd, then Adam without the `g += wd * p`
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from ..graph.bptt import clip_grad_norm
from ..lang.errors import InputError, UnfoldError
from .schedules import (Schedule, as_schedule, constant, cosine_decay, exponential_decay,  # noqa: F401 (one namespace)
                        step_decay, warmup)


@dataclass(frozen=True)
class OptState:
    """An optimizer's state: updates made, its per-param slots (moments), and
    the last update's gradient norm (before clipping) and learning rate."""
    step: int = 0
    slots: dict = field(default_factory=dict)   # slot name -> {param name -> array}
    grad_norm: float = math.nan
    lr: float = math.nan


def _number(name: str, value, low: float, high: float = math.inf, closed_high: bool = False) -> float:
    inside = low <= value < high or (closed_high and value == high)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not inside:
        bound = f"[{low:g}, {high:g}{']' if closed_high else ')'}"
        raise UnfoldError(f"{name} must be a number in {bound}, not {value!r}")
    return float(value)


class Optimizer:
    """What every optimizer shares: the schedule, the clipping, the update
    loop over params; a subclass gives `rule` (one param's update)."""
    slot_names: tuple[str, ...] = ()

    def __init__(self, lr, weight_decay: float = 0.0, clip: float | None = None):
        self.lr: Schedule = as_schedule(lr)
        self.weight_decay = _number("weight_decay", weight_decay, 0.0)
        self.clip = None if clip is None else _number("clip", clip, 0.0)
        if self.clip == 0:
            raise UnfoldError("clip must be a positive gradient norm (or None for no clipping), not 0")

    def init(self, params: dict) -> OptState:
        """A fresh state; its slots are made at the first update of each param."""
        _check_params(params)
        return OptState()

    def update(self, params: dict, grads: dict, state: OptState) -> tuple[dict, OptState]:
        """(new params, new state) after one step along `grads`."""
        names = _trained(params, grads)
        clipped, norm = clip_grad_norm({k: np.asarray(grads[k]) for k in names}, self.clip or math.inf)
        lr, n = self.lr(state.step), state.step + 1
        new_params = dict(params)
        slots = {s: dict(state.slots.get(s, {})) for s in self.slot_names}
        for k in names:
            p = np.asarray(params[k])
            value, new = self.rule(p, clipped[k].astype(p.dtype, copy=False),
                                   {s: slots[s].get(k) for s in self.slot_names}, lr, n)
            new_params[k] = value.astype(p.dtype, copy=False)
            for s, v in new.items():
                slots[s][k] = v
        return new_params, OptState(n, slots, norm, lr)

    def rule(self, p, g, slots: dict, lr: float, n: int):
        """(new p, new slots) for one param at update n."""
        raise NotImplementedError

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}(lr={self.lr!r}{extra})"

    def _options(self) -> dict:
        out = {"weight_decay": self.weight_decay} if self.weight_decay else {}
        return {**out, **({"clip": self.clip} if self.clip else {})}


def _check_params(params):
    if not isinstance(params, dict) or not params:
        raise InputError(f"params must be a non-empty dict name -> array, not {type(params).__name__}")


def _trained(params: dict, grads: dict) -> list[str]:
    """The params to update: those with a gradient of their own shape."""
    _check_params(params)
    if not isinstance(grads, dict):
        raise InputError(f"grads must be a dict name -> array, not {type(grads).__name__}")
    names = [k for k in params if k in grads]
    if not names:
        raise InputError(f"no gradient for any param: params {', '.join(params)}; grads {', '.join(grads) or '(none)'}")
    for k in names:
        if np.shape(grads[k]) != np.shape(params[k]):
            raise InputError(f"the gradient of `{k}` has shape {list(np.shape(grads[k]))}, "
                             f"the param {list(np.shape(params[k]))}")
    return names


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum `mu` (heavy ball, or
    Nesterov's) and L2 weight decay added to the gradient."""

    def __init__(self, lr, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 clip: float | None = None):
        super().__init__(lr, weight_decay, clip)
        self.momentum = _number("momentum", momentum, 0.0, 1.0)
        if nesterov and not self.momentum:
            raise UnfoldError("nesterov=True needs a momentum > 0")
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum else ()

    def rule(self, p, g, slots, lr, n):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if not self.momentum:
            return p - lr * g, {}
        m = g.copy() if slots["momentum"] is None else self.momentum * slots["momentum"] + g
        step = g + self.momentum * m if self.nesterov else m
        return p - lr * step, {"momentum": m}

    def _options(self) -> dict:
        return {"momentum": self.momentum, **({"nesterov": True} if self.nesterov else {}), **super()._options()}


class Adam(Optimizer):
    """Adam (Kingma & Ba), with L2 weight decay added to the gradient."""
    slot_names = ("m", "v")
    decoupled = False   # AdamW: the decay shrinks the params directly

    def __init__(self, lr=1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, clip: float | None = None):
        super().__init__(lr, weight_decay, clip)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise UnfoldError(f"betas must be a pair (b1, b2), not {betas!r}")
        self.b1, self.b2 = (_number(f"betas[{i}]", b, 0.0, 1.0) for i, b in enumerate(betas))
        self.eps = _number("eps", eps, 0.0)

    def rule(self, p, g, slots, lr, n):
        if self.weight_decay and self.decoupled:
            p = p * (1 - lr * self.weight_decay)
        elif self.weight_decay:
            g = g + self.weight_decay * p
        m = (1 - self.b1) * g if slots["m"] is None else self.b1 * slots["m"] + (1 - self.b1) * g
        v = (1 - self.b2) * g * g if slots["v"] is None else self.b2 * slots["v"] + (1 - self.b2) * g * g
        m_hat, v_hat = m / (1 - self.b1 ** n), v / (1 - self.b2 ** n)
        return p - lr * m_hat / (np.sqrt(v_hat) + self.eps), {"m": m, "v": v}

    def _options(self) -> dict:
        return {"betas": (self.b1, self.b2), "eps": self.eps, **super()._options()}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): the params
    shrink by lr * weight_decay each step, whatever the gradient's scale."""
    decoupled = True

    def __init__(self, lr=1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, clip: float | None = None):
        super().__init__(lr, betas, eps, weight_decay, clip)


__all__ = ["Optimizer", "OptState", "SGD", "Adam", "AdamW", "Schedule", "constant", "step_decay",
           "exponential_decay", "cosine_decay", "warmup"]
