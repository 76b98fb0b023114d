"""Batches for training: padding, random windows, one-hot codes.

    x, lengths = pad_sequences([a, b, c])          # a: [T_a, D] ... -> [max T, 3, D], lengths [T_a, T_b, T_c]
    x, y = random_windows((s[:-1], s[1:]), length=100, batch=32, rng=rng)   # [100, 32, ...] each
    one_hot(ids, 65)                               # ids [...] -> [..., 65]
    Batch(inputs={"x": x}, targets={"y": y}, lengths=lengths)               # what `fit` reads

Sequences are time-major: a batch is [T, B, ...] (PyTorch's default, JAX's scan).
"""
from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from ..lang.errors import InputError


class Batch(NamedTuple):
    """One batch of a training run: the arguments of `fn.value_and_grad`."""
    inputs: dict
    targets: dict | None = None
    lengths: np.ndarray | None = None
    init: dict | None = None


def pad_sequences(seqs, value: float = 0.0, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """A list of sequences [T_i, ...] (the same trailing shape) as one
    time-major batch [max T_i, B, ...], padded with `value` after each one's
    end, and their lengths [B] (the compiled function's `lengths=`):

        out[t, b] = seqs[b][t] if t < len(seqs[b]) else value
    """
    if isinstance(seqs, np.ndarray) or not hasattr(seqs, "__len__") or len(seqs) == 0:
        raise InputError("pad_sequences takes a non-empty list of arrays [T_i, ...]")
    arrays = [np.asarray(s) for s in seqs]
    tail = arrays[0].shape[1:]
    for i, a in enumerate(arrays):
        if a.ndim < 1 or a.shape[1:] != tail or a.shape[0] < 1:
            raise InputError(f"sequence {i} has shape {list(a.shape)}; expected [T >= 1"
                             + "".join(f", {n}" for n in tail) + "] like sequence 0")
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    dtype = np.result_type(*arrays) if dtype is None else np.dtype(dtype)
    out = np.full((int(lengths.max()), len(arrays)) + tail, value, dtype=dtype)
    for b, a in enumerate(arrays):
        out[:len(a), b] = a
    return out, lengths


def random_windows(arrays, length: int, batch: int, rng=None):
    """`batch` windows of `length` consecutive steps from long sequences
    [N, ...], stacked time-major [length, batch, ...].  Given a tuple of
    aligned sequences (the same N), the same windows of each:

        starts = rng.integers(0, N - length + 1, batch)
        out[t, b] = array[starts[b] + t]

    `random_windows((s[:-1], s[1:]), ...)` pairs inputs with next-step targets."""
    single = isinstance(arrays, np.ndarray)
    arrays = [np.asarray(arrays)] if single else [np.asarray(a) for a in arrays]
    length, batch = _whole("length", length), _whole("batch", batch)
    sizes = {a.shape[0] if a.ndim else 0 for a in arrays}
    if len(sizes) != 1:
        raise InputError(f"random_windows needs sequences of one length; got lengths {sorted(sizes)}")
    N = sizes.pop()
    if N < length:
        raise InputError(f"a window of {length} steps does not fit in a sequence of {N}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    starts = rng.integers(0, N - length + 1, batch)
    index = starts[None, :] + np.arange(length)[:, None]          # [length, batch]
    out = [a[index] for a in arrays]
    return out[0] if single else tuple(out)


def one_hot(ids, n: int, dtype=np.float32) -> np.ndarray:
    """ids [...] (integers in 0..n-1) -> [..., n] with a 1 at each id."""
    _whole("n", n)
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise InputError(f"one_hot takes integer ids, not {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise InputError(f"one_hot: ids must lie in 0..{n - 1}; got {ids.min()}..{ids.max()}")
    out = np.zeros(ids.shape + (n,), dtype=dtype)
    np.put_along_axis(out, ids[..., None], 1, axis=-1)
    return out


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{name} must be a positive whole number, not {value!r}")
    return int(value)


__all__ = ["Batch", "pad_sequences", "random_windows", "one_hot"]
