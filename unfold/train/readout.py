"""The echo-state readout in closed form (Goodfellow et al., §10.8): the
reservoir is fixed, only a linear map from its states to the targets is
learned, by ridge regression.

    out = fn(params, {"x": x})                                # the reservoir's states, out["h"]: [T, B, H]
    V, c = ridge_readout(out["h"], y, alpha=1e-6, washout=100)
    prediction = out["h"] @ V.T + c

It minimises, over the steps after `washout` (the reservoir forgetting its
initial state) and every sequence,

    sum_t,b |V h[t, b] + c - y[t, b]|^2 + alpha |V|^2        (the bias c is not penalised)

whose solution is, with the states and targets centred by their means,
V^T = (S^T S + alpha I)^-1 S^T Y and c = mean(y) - V mean(h).
"""
from __future__ import annotations

import numbers

import numpy as np

from ..lang.errors import InputError


def ridge_readout(states, targets, alpha: float = 1e-6, washout: int = 0, bias: bool = True):
    """(V [K, H], c [K]) of the ridge readout from `states` [T, (B,) H] to
    `targets` [T, (B,) K] (a target [T, (B)] is K = 1); c is zeros without `bias`."""
    S, Y = _rows(states, targets, washout)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha >= 0:
        raise InputError(f"alpha must be a number >= 0, not {alpha!r}")
    S64, Y64 = S.astype(np.float64), Y.astype(np.float64)   # the normal equations square the condition number
    s_mean, y_mean = (S64.mean(axis=0), Y64.mean(axis=0)) if bias else (0.0, 0.0)
    Sc, Yc = S64 - s_mean, Y64 - y_mean
    if alpha > 0:
        VT = np.linalg.solve(Sc.T @ Sc + alpha * np.eye(S.shape[1]), Sc.T @ Yc)
    else:   # plain least squares: the minimum-norm solution when S^T S is singular
        VT = np.linalg.lstsq(Sc, Yc, rcond=None)[0]
    c = y_mean - s_mean @ VT if bias else np.zeros(Y.shape[1])
    dtype = np.result_type(states, np.float32)
    return VT.T.astype(dtype), np.asarray(c, dtype=dtype).reshape(Y.shape[1])


def _rows(states, targets, washout) -> tuple[np.ndarray, np.ndarray]:
    """States [N, H] and targets [N, K], one row per step and sequence kept."""
    S, Y = np.asarray(states), np.asarray(targets)
    if S.ndim not in (2, 3) or S.dtype.kind != "f":
        raise InputError(f"states must be floats [T, H] or [T, B, H], not {S.dtype} {list(S.shape)}")
    if Y.ndim == S.ndim - 1:
        Y = Y[..., None]
    if Y.shape[:-1] != S.shape[:-1]:
        raise InputError(f"targets {list(np.shape(targets))} do not match states {list(S.shape)}: "
                         f"expected [{', '.join(map(str, S.shape[:-1]))}, K]")
    if isinstance(washout, bool) or not isinstance(washout, numbers.Integral) or not 0 <= washout < S.shape[0]:
        raise InputError(f"washout must be a whole number of steps in 0..{S.shape[0] - 1}, not {washout!r}")
    return S[washout:].reshape(-1, S.shape[-1]), Y[washout:].reshape(-1, Y.shape[-1])
