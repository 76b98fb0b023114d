"""Hand-written numpy cells: the first oracle, written without the package.

Each function takes the model's params by the names the zoo file uses, the
inputs time-major ([T, B, n]) and returns every state (and the loss) the way a
textbook or PyTorch writes the recurrence, step by step:

    out = elman(params, x, y)            # out["h"]: [T, B, H], out["loss"]: float

Nothing here imports `unfold`; the tests compare `uf.evaluate` and
`uf.value_and_grad` against these loops.

Conventions (the zoo's): W @ h is `h @ W.T` on a batch [B, n]; mse(a, b) is
mean((a - b)**2) over units; the loss is the mean over the batch of the sum
(or mean, or last) over time.  With `lengths`, a sequence's forward states keep
their value after its end, a backward state stays at its initial value until
the sequence's last step, and steps after the end contribute no loss.
"""
from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def mse(a, b):
    """Per-sequence mean squared error over units: [B, n] -> [B]."""
    return ((a - b) ** 2).mean(axis=-1)


def _valid(lengths, T, B):
    """valid[t, b]: step t+1 is inside sequence b."""
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    return np.arange(1, T + 1)[:, None] <= lengths[None, :], lengths


# -- Elman ---------------------------------------------------------------------

def elman(p, x, y, h0=None, lengths=None):
    """h[t] = tanh(W h[t-1] + U x[t] + b); o[t] = V h[t] + c;
    loss = mean_b sum_{t <= len_b} mse(o[t], y[t])."""
    T, B, _ = x.shape
    valid, _ = _valid(lengths, T, B)
    h = np.zeros((B, p["W"].shape[0])) if h0 is None else h0
    hs, os_, loss = [], [], 0.0
    for t in range(T):
        new = np.tanh(h @ p["W"].T + x[t] @ p["U"].T + p["b"])
        h = np.where(valid[t][:, None], new, h)
        o = h @ p["V"].T + p["c"]
        loss += np.sum(mse(o, y[t]) * valid[t]) / B
        hs.append(h)
        os_.append(o)
    return {"h": np.stack(hs), "o": np.stack(os_), "loss": loss}


def elman_bptt(p, x, y, h0=None, truncate=None):
    """Hand-derived back-propagation through time for `elman`.

    Forward: a[t] = W h[t-1] + U x[t] + b, h[t] = tanh(a[t]), o[t] = V h[t] + c,
    L = (1/B) sum_t mse(o[t], y[t]).  Backward, t = T..1:

        dO[t] = 2 (o[t] - y[t]) / (K B)
        dh[t] = dO[t] V + carry[t]          carry[t] = dA[t+1] W (0 at t = T)
        dA[t] = dh[t] * (1 - h[t]**2)
        dW += dA[t]^T h[t-1]   dU += dA[t]^T x[t]   db += sum_b dA[t]
        dV += dO[t]^T h[t]     dc += sum_b dO[t]    dx[t] = dA[t] U
        dh0 = dA[1] W

    With truncate=k the steps fall into windows 1..k, k+1..2k, ...; the carry
    from step t+1 into h[t] is dropped when t and t+1 lie in different windows
    (k = 1: every h[t] gets only its own step's loss).  h0 belongs to window 1.
    Returns (loss, grads) with the package's keys: params, "x", "init:h".
    """
    T, B, _ = x.shape
    K = y.shape[-1]
    W, U, V = p["W"], p["U"], p["V"]
    h = np.zeros((B, W.shape[0])) if h0 is None else h0
    hs, os_, loss = [h], [], 0.0
    for t in range(T):
        h = np.tanh(h @ W.T + x[t] @ U.T + p["b"])
        o = h @ V.T + p["c"]
        loss += mse(o, y[t]).sum() / B
        hs.append(h)
        os_.append(o)
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros_like(x)
    window = (lambda t: (t - 1) // truncate) if truncate else (lambda t: 0)
    carry = np.zeros_like(h)
    for t in range(T, 0, -1):          # t is the 1-based step
        h_t, h_prev = hs[t], hs[t - 1]
        dO = 2.0 * (os_[t - 1] - y[t - 1]) / (K * B)
        g["V"] += dO.T @ h_t
        g["c"] += dO.sum(axis=0)
        dh = dO @ V + carry
        dA = dh * (1.0 - h_t ** 2)
        g["W"] += dA.T @ h_prev
        g["U"] += dA.T @ x[t - 1]
        g["b"] += dA.sum(axis=0)
        dx[t - 1] = dA @ U
        carry = dA @ W
        if t > 1 and window(t - 1) != window(t):
            carry = np.zeros_like(carry)
    g["x"] = dx
    g["init:h"] = carry                # h0 shares step 1's window: never cut
    return loss, g


def elman_jacobians(p, x, h0=None):
    """d h[T] / d h[t] for t = 1..T, as [T, B, H, H], by the chain rule:
    the product of diag(1 - h[s]**2) W over s = T..t+1 (identity at t = T)."""
    T, B, _ = x.shape
    W = p["W"]
    H = W.shape[0]
    h = np.zeros((B, H)) if h0 is None else h0
    hs = []
    for t in range(T):
        h = np.tanh(h @ W.T + x[t] @ p["U"].T + p["b"])
        hs.append(h)
    J = np.zeros((T, B, H, H))
    J[T - 1] = np.eye(H)
    for t in range(T - 2, -1, -1):   # J[t] = J[t+1] @ diag(1 - h[t+1]^2) W
        step = (1.0 - hs[t + 1] ** 2)[:, :, None] * W[None]
        J[t] = J[t + 1] @ step
    return J


# -- LSTM (PyTorch's nn.LSTM gates, one bias per gate) ------------------------

def _unroll(step, x, y, state):
    """Run `step(x[t], **state) -> {name: value}` for t = 1..T; the values named
    like a state carry over.  loss = mean_b mean_t mse(h[t], y[t])."""
    T = x.shape[0]
    out, loss = {}, 0.0
    for t in range(T):
        values = step(x[t], **state)
        state = {k: values[k] for k in state}
        for k, v in values.items():
            out.setdefault(k, []).append(v)
        loss += mse(values["h"], y[t]).mean() / T
    return {**{k: np.stack(v) for k, v in out.items()}, "loss": loss}


def lstm(p, x, y, h0=None, c0=None):
    """i, f, g, o gates as nn.LSTM; c = f*c + i*g; h = o*tanh(c);
    loss = mean_b mean_t mse(h[t], y[t])."""
    zeros = np.zeros((x.shape[1], p["Ui"].shape[0]))

    def step(xt, h, c):
        def gate(name, act):
            return act(xt @ p["W" + name].T + h @ p["U" + name].T + p["b" + name])
        i, f, g, o = gate("i", sigmoid), gate("f", sigmoid), gate("g", np.tanh), gate("o", sigmoid)
        c = f * c + i * g
        return dict(i=i, f=f, g=g, o=o, c=c, h=o * np.tanh(c))

    return _unroll(step, x, y, dict(h=zeros if h0 is None else h0, c=zeros if c0 is None else c0))


# -- GRU (PyTorch's nn.GRU: the reset gate multiplies U_n h + b_hn) -----------

def gru(p, x, y, h0=None):
    """r = σ(Wr x + Ur h + br); z = σ(Wz x + Uz h + bz);
    n = tanh(Wn x + bn + r * (Un h + bhn)); h = (1 - z) n + z h."""
    def step(xt, h):
        r = sigmoid(xt @ p["Wr"].T + h @ p["Ur"].T + p["br"])
        z = sigmoid(xt @ p["Wz"].T + h @ p["Uz"].T + p["bz"])
        n = np.tanh(xt @ p["Wn"].T + p["bn"] + r * (h @ p["Un"].T + p["bhn"]))
        return dict(r=r, z=z, n=n, h=(1 - z) * n + z * h)

    return _unroll(step, x, y, dict(h=np.zeros((x.shape[1], p["Ur"].shape[0])) if h0 is None else h0))


# -- bidirectional RNN ---------------------------------------------------------

def birnn(p, x, y, lengths=None):
    """h runs t = 1..T, g runs t = len..1 (g = 0 after the sequence's end);
    o[t] = Vh h[t] + Vg g[t] + c; loss = mean_b sum_{t <= len_b} mse(o[t], y[t])."""
    T, B, _ = x.shape
    H = p["Wh"].shape[0]
    valid, _ = _valid(lengths, T, B)
    h = np.zeros((B, H))
    hs = []
    for t in range(T):
        h = np.where(valid[t][:, None], np.tanh(h @ p["Wh"].T + x[t] @ p["Uh"].T + p["bh"]), h)
        hs.append(h)
    g = np.zeros((B, H))
    gs = [None] * T
    for t in range(T - 1, -1, -1):
        g = np.where(valid[t][:, None], np.tanh(g @ p["Wg"].T + x[t] @ p["Ug"].T + p["bg"]), g)
        gs[t] = g
    os_, loss = [], 0.0
    for t in range(T):
        o = hs[t] @ p["Vh"].T + gs[t] @ p["Vg"].T + p["c"]
        os_.append(o)
        loss += np.sum(mse(o, y[t]) * valid[t]) / B
    return {"h": np.stack(hs), "g": np.stack(gs), "o": np.stack(os_), "loss": loss}
