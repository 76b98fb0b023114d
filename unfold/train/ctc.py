"""Connectionist temporal classification (Graves et al. 2006): the loss of a
label sequence given per-step logits, summed over every alignment, and its
exact gradient; and the same through a compiled model.

    loss, dz = ctc_loss(z, labels, input_lengths, label_lengths)     # z [T, B, C]: logits
    loss, grads = ctc_value_and_grad(fn, params, {"x": x}, labels, label_lengths, output="z", lengths=lengths)

The semantics are torch.nn.CTCLoss's (tests/test_ctc.py compares the two in
float64), computed by the numba kernels of ctc_kernels.py (log-space
forward-backward, one sequence at a time):

- labels: padded [B, S] ints (entries past a sequence's label length are
  ignored, whatever they hold) or one concatenated 1-D array of
  sum(label_lengths) ints.  A label is in [0, C) and never the blank; a
  repeated label (1, 1) needs a blank between its two runs, so it needs more
  steps; an empty labelling (length 0) is all blanks.
- steps t >= input_lengths[b] are never read (NaN there does not matter)
  and get zero gradient.
- reduction "mean": each loss divided by its label length (1 for an empty
  labelling), then the mean over the batch; "sum": the sum; "none": the
  losses [B], and the gradient is that of their sum.
- impossible alignments (fewer steps than the labels and the blanks their
  repeats need): the loss is inf and the gradient NaN at that sequence's
  steps (as torch's: the gradient of an infinite loss is undefined, and an
  optimizer should not quietly step on it); with zero_infinity=True the loss
  is 0 and the gradient 0 there, and the other sequences train normally.
- the gradient is with respect to the logits: softmax - posterior occupancy.
  With from_logits=False the input is taken as log-probabilities as given
  (not normalized again) and the gradient is still exp(input) - occupancy:
  what torch gives as log_probs.grad, i.e. the gradient with respect to the
  logits those log-probabilities are the log_softmax of.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..graph.runargs import to_host
from ..lang.errors import InputError
from ..lang.ir import Role

REDUCTIONS = ("mean", "sum", "none")


def ctc_loss(logits, labels, input_lengths=None, label_lengths=None, blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False, from_logits: bool = True):
    """(loss, gradient [T, B, C] w.r.t. `logits`) of the CTC loss (see the module
    docstring).  logits [T, B, C] floats (log-probabilities if from_logits=False);
    input_lengths [B] (default: all T); label_lengths [B] (default for padded
    labels: all S).  The loss is a float, or an array [B] for reduction="none"."""
    x = _logits(logits)
    T, B, C = x.shape
    blank = _blank(blank, C)
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {', '.join(REDUCTIONS)}, not {reduction!r}")
    n = _lengths("input_lengths", input_lengths, B, T, "the number of steps T")
    labels, L = _labels(labels, label_lengths, B, C, blank)
    scales = np.ones(B)
    if reduction == "mean":
        scales = 1.0 / (np.maximum(L, 1) * B)
    from . import ctc_kernels   # numba compiles (or loads) the kernels on first use only
    losses, grad = ctc_kernels.ctc_batch(np.ascontiguousarray(x, dtype=np.float64), labels, n, L, blank,
                                         bool(from_logits), bool(zero_infinity), scales)
    grad = grad.astype(x.dtype, copy=False)
    if reduction == "none":
        return losses.astype(x.dtype, copy=False), grad
    total = losses.sum() if reduction == "sum" else (losses / np.maximum(L, 1)).mean()
    return float(total), grad


def ctc_value_and_grad(fn, params: dict, inputs: dict, labels, label_lengths=None, output: str = "z",
                       lengths=None, init=None, blank: int = 0, reduction: str = "mean",
                       zero_infinity: bool = False, wrt="params", truncate=None, has_aux: bool = False,
                       seed=None):
    """The CTC loss of a compiled model's per-step logits `output` [T, B, C]
    and the gradients of that loss (`wrt`: "params" by default, as fit's).

    The model runs forward, ctc_loss gives the loss and its gradient w.r.t.
    the logits, and fn.vjp carries that back through the model (the model's
    own `loss` line and targets are not used).  `lengths` [B] are both the
    model's sequence lengths and CTC's input lengths.  has_aux: (loss, the
    model's outputs) in place of the loss.  seed: training mode (dropout's
    masks).  The forward pass runs once: `fn.forward_vjp` keeps its values
    for the backward pass."""
    names = sorted(s.name for s in fn.rec.of_role(Role.STATE, Role.INTER))
    if output not in names:
        raise InputError(f"output={output!r} is not an output of `{fn.rec.name}`; its outputs: {', '.join(names)}")
    out, pullback = fn.forward_vjp(params, inputs, [output], init=init, lengths=lengths, truncate=truncate,
                                   wrt=wrt, seed=seed)
    out = to_host(out)
    z = np.asarray(out[output])
    if z.ndim != 3:
        raise InputError(f"the output `{output}` has shape {list(z.shape)}; CTC expected per-step logits "
                         "[T, B, C] (a vector output at every step)")
    loss, dz = ctc_loss(z, labels, lengths, label_lengths, blank=blank, reduction=reduction,
                        zero_infinity=zero_infinity)
    # with reduction="none", dz is the gradient of the sum of the losses
    grads = pullback({output: np.ascontiguousarray(dz, dtype=z.dtype)})
    return ((loss, out) if has_aux else loss), grads


def _logits(logits) -> np.ndarray:
    x = np.asarray(logits)
    if x.ndim != 3 or x.dtype.kind != "f":
        raise InputError(f"logits must be floats of shape [T, B, C] (steps, sequences, classes); got "
                         f"{x.dtype} of shape {list(x.shape)}")
    if x.shape[2] < 1:
        raise InputError(f"logits has shape {list(x.shape)}: expected at least one class, the blank")
    return x


def _blank(blank, C: int) -> int:
    if isinstance(blank, bool) or not isinstance(blank, numbers.Integral) or not 0 <= blank < C:
        raise InputError(f"blank must be a class index in [0, {C}) (C = {C} classes), not {blank!r}")
    return int(blank)


def _ints(name: str, a, shape_text: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iu" and not (a.size == 0 and a.dtype.kind == "f"):
        raise InputError(f"{name} must be integers {shape_text}, not {a.dtype}")
    return a.astype(np.int64)


def _lengths(name: str, lengths, B: int, most: int | None, most_text: str = "") -> np.ndarray:
    """[B] whole numbers in [0, most] (None: all `most`)."""
    if lengths is None:
        if most is None:
            raise InputError(f"{name} are needed with concatenated (1-D) labels: one per sequence, [{B}]")
        return np.full(B, most, dtype=np.int64)
    a = _ints(name, lengths, f"of shape [B] = [{B}]")
    if a.shape != (B,):
        raise InputError(f"{name} has shape {list(a.shape)}; expected [B] = [{B}], one per sequence")
    bad = np.flatnonzero((a < 0) | (a > (most if most is not None else np.inf)))
    if bad.size:
        b = int(bad[0])
        bound = f" and at most {most_text} = {most}" if most is not None else ""
        raise InputError(f"{name}[{b}] = {a[b]}: expected a length of at least 0{bound}")
    return a


def _labels(labels, label_lengths, B: int, C: int, blank: int) -> tuple[np.ndarray, np.ndarray]:
    """(padded labels [B, S] int64, label lengths [B]), checked."""
    y = _ints("labels", labels, f"of shape [B, S] = [{B}, S] (padded) or [sum(label_lengths)] (concatenated)")
    if y.ndim == 2:
        if y.shape[0] != B:
            raise InputError(f"labels has shape {list(y.shape)}; expected [B, S] = [{B}, S], a row per sequence")
        L = _lengths("label_lengths", label_lengths, B, y.shape[1], "the labels' padded length S")
    elif y.ndim == 1:
        L = _lengths("label_lengths", label_lengths, B, None)
        if y.shape[0] != L.sum():
            raise InputError(f"labels has shape {list(y.shape)}; concatenated labels need [sum(label_lengths)] "
                             f"= [{int(L.sum())}]")
        y = _padded(y, L)
    else:
        raise InputError(f"labels has shape {list(y.shape)}; expected [B, S] = [{B}, S] (padded) or "
                         "[sum(label_lengths)] (concatenated)")
    _check_values(y, L, C, blank)
    return np.ascontiguousarray(y), L


def _padded(y: np.ndarray, L: np.ndarray) -> np.ndarray:
    out = np.zeros((L.shape[0], int(L.max(initial=0))), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(L)[:-1]])
    for b, (s, n) in enumerate(zip(starts, L)):
        out[b, :n] = y[s:s + n]
    return out


def _check_values(y: np.ndarray, L: np.ndarray, C: int, blank: int):
    """Only the first L[b] labels of row b are read: the padding may hold anything."""
    used = np.arange(y.shape[1])[None, :] < L[:, None]
    bad = np.argwhere(used & ((y < 0) | (y >= C) | (y == blank)))
    if bad.size:
        b, j = (int(i) for i in bad[0])
        why = "the blank" if y[b, j] == blank else f"out of range [0, {C})"
        raise InputError(f"labels: label {j} of sequence {b} is {y[b, j]}, {why}; expected a class in [0, {C}) other than "
                         f"the blank ({blank})")
