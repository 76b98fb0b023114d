"""The numba kernels of the CTC loss (unfold/train/ctc.py checks the arrays
and documents the semantics; this module assumes them checked).

Per sequence b of n = input_lengths[b] steps and L = label_lengths[b] labels,
over the extended label sequence l' = (blank, l1, blank, l2, ..., lL, blank)
of 2L + 1 symbols, all in log space (T in the thousands underflows any
product of probabilities):

    lp[t]       = log_softmax(x[t])          (or x[t] itself, from_logits=False)
    alpha[t, s] = lp[t, l's] + lse(alpha[t-1, s], alpha[t-1, s-1], alpha[t-1, s-2] if skip(s))
    beta[t, s]  = lp[t, l's] + lse(beta[t+1, s], beta[t+1, s+1], beta[t+1, s+2] if skip(s+2))
    nll         = -lse(alpha[n-1, 2L], alpha[n-1, 2L-1])
    grad[t, c]  = exp(lp[t, c]) - sum_{s: l's = c} exp(alpha[t, s] + beta[t, s] - lp[t, c] + nll)

skip(s): l's is a label and differs from l'(s-2): a repeated label needs the
blank between.  Both alpha and beta hold lp at t, hence the `- lp`.  The
occupancies are summed in linear space: each is a posterior in [0, 1], so
exp cannot overflow, and one exp per cell is cheaper than torch's running
logsumexp.  Steps t >= n are never read and get zero gradient.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

NEG_INF = -np.inf


@njit(cache=True, nogil=True)
def _lse3(a, b, c):
    """log(e^a + e^b + e^c) with one exp per term but the largest: c = -inf
    most often (a blank cell, or a repeat: no skip)."""
    if c == NEG_INF:
        m, d = (a, b) if a >= b else (b, a)
        if d == NEG_INF:
            return m
        return m + math.log1p(math.exp(d - m))
    if a >= b and a >= c:   # c is finite, so the largest is: two exps
        m, u, v = a, b, c
    elif b >= c:
        m, u, v = b, a, c
    else:
        m, u, v = c, a, b
    return m + math.log1p(math.exp(u - m) + math.exp(v - m))


@njit(cache=True, nogil=True)
def _log_probs(x, n, from_logits):
    """lp [n, C] from rows 0..n-1 of x [T, C] (the padding is never read)."""
    C = x.shape[1]
    lp = np.empty((n, C))
    for t in range(n):
        if not from_logits:
            lp[t] = x[t]
            continue
        m = x[t].max()
        total = 0.0
        for c in range(C):
            total += math.exp(x[t, c] - m)
        shift = m + math.log(total)
        for c in range(C):
            lp[t, c] = x[t, c] - shift
    return lp


@njit(cache=True, nogil=True)
def _extended(labels, L, blank):
    ext = np.full(2 * L + 1, blank, dtype=np.int64)
    for i in range(L):
        ext[2 * i + 1] = labels[i]
    return ext


@njit(cache=True, nogil=True)
def _alpha(lp, ext, blank):
    n, S = lp.shape[0], ext.shape[0]
    alpha = np.full((n, S), NEG_INF)
    alpha[0, 0] = lp[0, ext[0]]
    if S > 1:
        alpha[0, 1] = lp[0, ext[1]]
    for t in range(1, n):
        # cells below `lo` cannot reach the end in the steps left; above `hi`
        # cannot be reached from the start: both stay -inf
        lo, hi = max(0, S - 2 * (n - t)), min(S, 2 * t + 2)
        for s in range(lo, hi):
            b = alpha[t - 1, s - 1] if s >= 1 else NEG_INF
            c = NEG_INF
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                c = alpha[t - 1, s - 2]
            alpha[t, s] = _lse3(alpha[t - 1, s], b, c) + lp[t, ext[s]]
    return alpha


@njit(cache=True, nogil=True)
def _beta(lp, ext, blank):
    n, S = lp.shape[0], ext.shape[0]
    beta = np.full((n, S), NEG_INF)
    beta[n - 1, S - 1] = lp[n - 1, ext[S - 1]]
    if S > 1:
        beta[n - 1, S - 2] = lp[n - 1, ext[S - 2]]
    for t in range(n - 2, -1, -1):
        lo, hi = max(0, S - 2 * (n - t)), min(S, 2 * t + 2)
        for s in range(lo, hi):
            b = beta[t + 1, s + 1] if s + 1 < S else NEG_INF
            c = NEG_INF
            if s + 2 < S and ext[s] != blank and ext[s + 2] != ext[s]:
                c = beta[t + 1, s + 2]
            beta[t, s] = _lse3(beta[t + 1, s], b, c) + lp[t, ext[s]]
    return beta


@njit(cache=True, nogil=True)
def _gradient(lp, ext, alpha, beta, nll, scale, g):
    """g[t] = scale * (softmax - posterior occupancy) for t < n."""
    n, C = lp.shape
    for t in range(n):
        for c in range(C):
            g[t, c] = math.exp(lp[t, c])
        for s in range(ext.shape[0]):
            v = alpha[t, s] + beta[t, s]
            if v > NEG_INF:   # unreachable cells add nothing (and -inf - -inf would be NaN)
                g[t, ext[s]] -= math.exp(v - lp[t, ext[s]] + nll)
        for c in range(C):
            g[t, c] *= scale


@njit(cache=True, nogil=True)
def _sequence(x, labels, n, L, blank, from_logits, zero_infinity, scale, g):
    """The loss of one sequence; its gradient written into g [T, C]."""
    if n == 0:   # no steps: only the empty labelling has an alignment
        return 0.0 if L == 0 else (0.0 if zero_infinity else np.inf)
    lp = _log_probs(x, n, from_logits)
    ext = _extended(labels, L, blank)
    alpha = _alpha(lp, ext, blank)
    S = ext.shape[0]
    nll = -_lse3(alpha[n - 1, S - 1], alpha[n - 1, S - 2] if S > 1 else NEG_INF, NEG_INF)
    if nll == np.inf:
        if zero_infinity:
            return 0.0
        g[:n] = np.nan   # the gradient of an infinite loss is undefined, as in torch
        return nll
    _gradient(lp, ext, alpha, _beta(lp, ext, blank), nll, scale, g)
    return nll


@njit(cache=True, nogil=True)
def ctc_batch(x, labels, input_lengths, label_lengths, blank, from_logits, zero_infinity, scales):
    """(losses [B], grad [T, B, C]) for logits x [T, B, C] and padded labels [B, S]."""
    T, B, C = x.shape
    losses = np.empty(B)
    grad = np.zeros((T, B, C))
    for b in range(B):
        g = np.zeros((T, C))
        losses[b] = _sequence(x[:, b, :], labels[b], input_lengths[b], label_lengths[b], blank, from_logits,
                              zero_infinity, scales[b], g)
        grad[:, b, :] = g
    return losses, grad
