"""Learning-rate schedules: the learning rate as a function of the step.

    lr = cosine_decay(1e-2, steps=2000, final=1e-4)
    lr(0), lr(1000), lr(2000)          # 1e-2, ~5e-3, 1e-4
    opt = Adam(lr)                     # an optimizer reads lr(step) before each update

`step` counts the updates already made, so the first update uses lr(0) (as a
PyTorch scheduler's `get_last_lr()` before its first `step()`).  Each
schedule is the closed form of its PyTorch namesake (tests compare them):

    constant(a)                    a
    step_decay(a, every, factor)   a * factor ** (step // every)            StepLR
    exponential_decay(a, rate)     a * rate ** step                         ExponentialLR
    cosine_decay(a, steps, final)  final + (a - final) * (1 + cos(pi * min(step, steps) / steps)) / 2
                                                                            CosineAnnealingLR (no restart)
    warmup(steps, then)            then(0) * (step + 1) / steps for step < steps, then then(step - steps)
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

from ..lang.errors import UnfoldError


class Schedule:
    """A learning rate per step: `schedule(step) -> float`, with a readable repr."""

    def __init__(self, rate: Callable[[int], float], text: str):
        self._rate, self._text = rate, text

    def __call__(self, step: int) -> float:
        return float(self._rate(int(step)))

    def __repr__(self) -> str:
        return self._text


def _positive(name: str, value, integer: bool = False):
    ok = isinstance(value, numbers.Integral if integer else numbers.Real)
    if isinstance(value, bool) or not ok or not value > 0 or not math.isfinite(value):
        kind = "a positive whole number" if integer else "a positive number"
        raise UnfoldError(f"{name} must be {kind}, not {value!r}")
    return value


def as_schedule(lr) -> Schedule:
    """A schedule from a number (constant) or a callable step -> lr."""
    if isinstance(lr, Schedule):
        return lr
    if callable(lr):
        return Schedule(lr, getattr(lr, "__name__", repr(lr)))
    return constant(lr)


def constant(lr: float) -> Schedule:
    _positive("lr", lr)
    return Schedule(lambda step: lr, f"{lr:g}")


def step_decay(lr: float, every: int, factor: float = 0.1) -> Schedule:
    """lr times `factor` every `every` steps (PyTorch's StepLR)."""
    _positive("lr", lr)
    _positive("every", every, integer=True)
    _positive("factor", factor)
    return Schedule(lambda step: lr * factor ** (step // every),
                    f"step_decay({lr:g}, every={every}, factor={factor:g})")


def exponential_decay(lr: float, rate: float) -> Schedule:
    """lr times `rate` at every step (PyTorch's ExponentialLR)."""
    _positive("lr", lr)
    _positive("rate", rate)
    return Schedule(lambda step: lr * rate ** step, f"exponential_decay({lr:g}, rate={rate:g})")


def cosine_decay(lr: float, steps: int, final: float = 0.0) -> Schedule:
    """From lr down to `final` along half a cosine over `steps` steps, then
    `final` (PyTorch's CosineAnnealingLR for its first T_max steps)."""
    _positive("lr", lr)
    _positive("steps", steps, integer=True)
    if not 0 <= final <= lr:
        raise UnfoldError(f"final must lie in [0, lr={lr:g}], not {final!r}")

    def rate(step):
        return final + (lr - final) * (1 + math.cos(math.pi * min(step, steps) / steps)) / 2
    return Schedule(rate, f"cosine_decay({lr:g}, steps={steps}, final={final:g})")


def warmup(steps: int, then) -> Schedule:
    """A linear ramp to `then`'s first rate over `steps` steps, then `then`
    (a number or a schedule) counted from the end of the ramp: large early
    steps from a random start are what blow up an Adam run."""
    _positive("steps", steps, integer=True)
    after = as_schedule(then)

    def rate(step):
        return after(0) * (step + 1) / steps if step < steps else after(step - steps)
    return Schedule(rate, f"warmup({steps}, then={after!r})")


__all__ = ["Schedule", "as_schedule", "constant", "step_decay", "exponential_decay", "cosine_decay", "warmup"]
