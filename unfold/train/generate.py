"""Sampling a language model one step at a time, on the compiled forward pass.

    ids = generate(fn, params, start=[7, 3, 12], steps=200, temperature=0.8, seed=0)

The model reads one-hot codes x[t] and computes logits over the same
vocabulary (an output of that size, e.g. `o[t] = V @ h[t] + c`).  As a loop
(`fn.stepper` runs each step in microseconds):

    state = initial state
    for i in start:                      out, state = step(one_hot(i), state)     # read the prompt
    repeat steps times:  i = sample(out[logits]);  emit i;  out, state = step(one_hot(i), state)

sample: "categorical" draws from softmax(logits / temperature); "greedy"
takes the argmax; a callable (logits [B, V], rng) -> ids [B] is anything else.
A start [B, n] samples B sequences at once.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..lang.errors import InputError, ModelError
from ..lang.ir import Role
from .data import one_hot


def softmax(logits, temperature: float = 1.0, axis: int = -1) -> np.ndarray:
    """exp(z / T) / sum exp(z / T) along `axis`, stable for large logits."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise InputError(f"temperature must be a positive number, not {temperature!r}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def generate(fn, params: dict, start, steps: int, sample="categorical", temperature: float = 1.0,
             seed=None, input: str | None = None, logits: str | None = None) -> np.ndarray:
    """`steps` new ids after the prompt `start` ([n] ids, or [B, n]): an array
    [steps] (or [B, steps]).  input/logits: the one-hot input and the logits
    output, found by their size when there is only one candidate."""
    pick = _sampler(sample, temperature)
    x, out_name = _names(fn.rec, input, logits)
    vocab = fn.rec.symbols[x].shape[0]
    prompt = np.asarray(start)
    if prompt.ndim not in (1, 2) or prompt.shape[-1] < 1 or prompt.dtype.kind not in "iu":
        raise InputError(f"start must be integer ids [n] or [B, n] with n >= 1, "
                         f"not {prompt.dtype} {list(prompt.shape)}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise InputError(f"steps must be a whole number >= 0, not {steps!r}")
    ids = prompt.reshape(-1, prompt.shape[-1])
    rng = np.random.default_rng(seed)
    step = fn.stepper({k: np.asarray(v, dtype=fn.dtype) for k, v in params.items()}, batch=ids.shape[0])
    state = step.initial()
    for t in range(ids.shape[1]):
        out, state = step({x: one_hot(ids[:, t], vocab, fn.dtype)}, state)
    new = np.zeros((ids.shape[0], steps), dtype=np.int64)
    for t in range(steps):
        new[:, t] = pick(out[out_name], rng)
        if t + 1 < steps:
            out, state = step({x: one_hot(new[:, t], vocab, fn.dtype)}, state)
    return new[0] if prompt.ndim == 1 else new


def _sampler(sample, temperature):
    """(logits [B, V], rng) -> ids [B]."""
    if callable(sample):
        return lambda z, rng: np.asarray(sample(z, rng), dtype=np.int64).reshape(z.shape[0])
    if sample == "greedy":
        return lambda z, rng: np.argmax(z, axis=-1)
    if sample == "categorical":
        softmax(np.zeros(1), temperature)   # checks the temperature now, not at the first step

        def draw(z, rng):   # inverse CDF: the first id whose cumulative probability passes u
            cdf = np.cumsum(softmax(z, temperature), axis=-1)
            u = rng.random((z.shape[0], 1)) * cdf[:, -1:]
            return np.minimum((cdf < u).sum(axis=-1), z.shape[-1] - 1)
        return draw
    raise InputError(f"sample must be \"categorical\", \"greedy\" or a callable (logits, rng) -> ids, not {sample!r}")


def _names(rec, input: str | None, logits: str | None) -> tuple[str, str]:
    """The one-hot input and the logits output of `rec`."""
    timed = [s.name for s in rec.of_role(Role.INPUT) if s.timed]
    if input is None and len(timed) != 1:
        raise ModelError(f"generate needs one input to feed the ids back into; `{rec.name}` has "
                         f"{', '.join(timed) or 'none'}", expected="input=<name>")
    x = input or timed[0]
    if x not in timed or len(rec.symbols[x].shape or ()) != 1:
        raise InputError(f"input={x!r} is not a vector input read at every step of `{rec.name}`")
    others = sorted(s.name for s in rec.of_role(Role.INPUT) if s.name != x)
    if others:
        raise ModelError(f"generate feeds only `{x}`; `{rec.name}` also reads {', '.join(others)}")
    vocab = rec.symbols[x].shape
    outputs = [s.name for s in rec.of_role(Role.STATE, Role.INTER) if s.shape == vocab]
    if logits is None and len(outputs) != 1:
        raise ModelError(f"generate needs the logits: an output of size {vocab[0]}; `{rec.name}` has "
                         f"{', '.join(outputs) or 'none'}", expected="logits=<name>")
    out = logits or outputs[0]
    if out not in outputs:
        raise InputError(f"logits={out!r} is not an output of `{rec.name}` of size {vocab[0]}")
    return x, out
