"""The "numpy loop" peer: Elman, LSTM, GRU and the softsign cell with hand-written BPTT.

In: `params` (dict name -> ndarray, names and layout of examples/models/<cell>.rnn:
W-type matrices [H, D], U-type [H, H], biases [H]), `x` [T, B, D], `y` [T, B, K]
(time-major).  Out: `forward(params, x, y) -> loss` and
`value_and_grad(params, x, y) -> (loss, grads)`, grads keyed by param name plus
"x".  `W @ v` in the .rnn files is `v @ W.T` on batched rows.

The loss is the models' `mean_t(mse(h[t], y[t]))`, averaged over the batch:

    loss = sum(((h[t] - y[t])**2).mean(-1).sum() for t in range(T)) / (B * T)

(`reduce="sum"` drops the 1/T, as `sum_t`).  The Elman cell also takes the
readout of examples/models/elman.rnn, `o[t] = V @ h[t] + c`, when `V` is in params.

How it is fast: the input projections of all steps are one matmul before the
loop, the gates of a cell are one stacked matmul per step, and every parameter
gradient -- recurrent weights included -- is one matmul over all steps after the
backward loop, e.g. dU = dA_all.reshape(-1, H).T @ h_prev_all.reshape(-1, H).

    >>> params, x, y = make_problem("lstm", T=5, B=2, H=3, D=4)
    >>> loss, grads = value_and_grad("lstm", params, x, y)
"""
from __future__ import annotations

import numpy as np

# Param names per cell, in gate order (the order PyTorch packs its gates in).
GATES = {
    "elman": ("",),
    "lstm": ("i", "f", "g", "o"),
    "gru": ("r", "z", "n"),
    "softsign": ("f", "h"),
}
EXTRA = {"gru": ("bhn",)}
CELLS = tuple(GATES)


def param_names(cell: str, readout: bool = False) -> list[str]:
    """Names of the cell's params, as in examples/models/<cell>.rnn."""
    if cell == "elman":
        return ["U", "W", "b"] + (["V", "c"] if readout else [])
    g = GATES[cell]
    return [f"W{k}" for k in g] + [f"U{k}" for k in g] + [f"b{k}" for k in g] + list(EXTRA.get(cell, ()))


def make_problem(cell: str, T: int, B: int, H: int, D: int | None = None, K: int | None = None,
                 seed: int = 0, dtype=np.float32):
    """Random params (uniform(1/sqrt(H)), the .rnn init), inputs x [T, B, D] and
    targets y [T, B, H] (or [T, B, K] for an Elman cell with a readout of K units)."""
    D = H if D is None else D
    rng = np.random.default_rng(seed)
    s = 1.0 / np.sqrt(H)
    params = {}
    for name in param_names(cell, readout=K is not None):
        if name in ("V", "c"):
            shape = (K, H) if name == "V" else (K,)
        elif name.startswith("W") or (cell == "elman" and name == "U"):
            shape = (H, H) if cell == "elman" and name == "W" else (H, D)
        elif name.startswith("U"):
            shape = (H, H)
        else:
            shape = (H,)
        params[name] = rng.uniform(-s, s, shape).astype(dtype)
    if cell == "softsign":
        params["bf"][:] = 1.0
    x = rng.standard_normal((T, B, D)).astype(dtype)
    y = (0.5 * rng.standard_normal((T, B, H if K is None else K))).astype(dtype)
    return params, x, y


def _sigmoid(z):
    # 0.5 * (1 + tanh(z/2)): cannot overflow, one transcendental.
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _stack(params, prefix, gates):
    return np.concatenate([params[prefix + k] for k in gates], axis=0)


def _loss_and_seed(h, y, reduce):
    """The loss and dloss/dh for h, y [T, B, n]."""
    T, B, n = h.shape
    scale = 1.0 / (B * n * (T if reduce == "mean" else 1))
    e = h - y
    return float(np.sum(e * e, dtype=np.float64) * scale), (2.0 * scale) * e


def _proj(x, Wcat, bcat):
    """x @ Wcat.T + bcat for all steps at once: [T, B, D] -> [T, B, G*H]."""
    T, B, D = x.shape
    return (x.reshape(T * B, D) @ Wcat.T + bcat).reshape(T, B, -1)


def _flat(a):
    return a.reshape(-1, a.shape[-1])


def _matgrad(dA, v):
    """sum_t dA[t].T @ v[t] as one matmul: [T, B, m], [T, B, n] -> [m, n]."""
    return _flat(dA).T @ _flat(v)


# ---------------------------------------------------------------- Elman

def _elman(params, x, y, grad, reduce):
    U, W, b = params["U"], params["W"], params["b"]
    T, B, _ = x.shape
    H = W.shape[0]
    A = _proj(x, U, b)
    hs = np.zeros((T + 1, B, H), x.dtype)          # hs[t + 1] = h[t]; hs[0] = init
    for t in range(T):
        np.tanh(A[t] + hs[t] @ W.T, out=hs[t + 1])
    h = hs[1:]
    readout = "V" in params
    o = (_flat(h) @ params["V"].T + params["c"]).reshape(T, B, -1) if readout else h
    loss, do = _loss_and_seed(o, y, reduce)
    if not grad:
        return loss
    g = {}
    if readout:
        g["V"], g["c"] = _matgrad(do, h), do.sum((0, 1))
        dh_out = (_flat(do) @ params["V"]).reshape(T, B, H)
    else:
        dh_out = do
    dA = np.empty_like(A)
    dh = np.zeros((B, H), x.dtype)
    for t in range(T - 1, -1, -1):
        dh += dh_out[t]
        np.multiply(dh, 1.0 - h[t] * h[t], out=dA[t])
        dh = dA[t] @ W
    g["W"], g["U"], g["b"] = _matgrad(dA, hs[:-1]), _matgrad(dA, x), dA.sum((0, 1))
    g["x"] = dA @ U
    return loss, g


# ---------------------------------------------------------------- LSTM

def _lstm(params, x, y, grad, reduce):
    G = GATES["lstm"]
    Wc, Uc, bc = _stack(params, "W", G), _stack(params, "U", G), _stack(params, "b", G)
    T, B, _ = x.shape
    H = Uc.shape[1]
    A = _proj(x, Wc, bc)                           # pre-activations, then gates in place
    hs = np.zeros((T + 1, B, H), x.dtype)
    cs = np.zeros((T + 1, B, H), x.dtype)
    tc = np.empty((T, B, H), x.dtype)
    UcT = Uc.T.copy()
    for t in range(T):
        a = A[t]
        a += hs[t] @ UcT
        a[:, :2 * H] = _sigmoid(a[:, :2 * H])
        np.tanh(a[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
        a[:, 3 * H:] = _sigmoid(a[:, 3 * H:])
        i, f, gg, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        np.add(f * cs[t], i * gg, out=cs[t + 1])
        np.tanh(cs[t + 1], out=tc[t])
        np.multiply(o, tc[t], out=hs[t + 1])
    loss, dh_out = _loss_and_seed(hs[1:], y, reduce)
    if not grad:
        return loss
    dA = np.empty_like(A)
    dh = np.zeros((B, H), x.dtype)
    dc = np.zeros((B, H), x.dtype)
    for t in range(T - 1, -1, -1):
        a = A[t]
        i, f, gg, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        dh += dh_out[t]
        dc += dh * o * (1.0 - tc[t] * tc[t])
        d = dA[t]
        np.multiply(dc * gg, i * (1.0 - i), out=d[:, :H])
        np.multiply(dc * cs[t], f * (1.0 - f), out=d[:, H:2 * H])
        np.multiply(dc * i, 1.0 - gg * gg, out=d[:, 2 * H:3 * H])
        np.multiply(dh * tc[t], o * (1.0 - o), out=d[:, 3 * H:])
        dc *= f
        dh = d @ Uc
    return loss, _split_grads(G, dA, dA, hs[:-1], x, Wc, {})


def _split_grads(gates, dAx, dAh, h_prev, x, Wc, g):
    """Per-gate param grads from the stacked pre-activation grads, and dx."""
    H = dAh.shape[-1] // len(gates)
    dW, dU, db = _matgrad(dAx, x), _matgrad(dAh, h_prev), dAx.sum((0, 1))
    for k, name in enumerate(gates):
        s = slice(k * H, (k + 1) * H)
        g["W" + name], g["U" + name], g["b" + name] = dW[s], dU[s], db[s]
    g["x"] = dAx @ Wc
    return g


# ---------------------------------------------------------------- GRU

def _gru(params, x, y, grad, reduce):
    G = GATES["gru"]
    Wc, Uc, bc = _stack(params, "W", G), _stack(params, "U", G), _stack(params, "b", G)
    bh = np.concatenate([np.zeros(2 * len(params["bhn"]), x.dtype), params["bhn"]])
    T, B, _ = x.shape
    H = Uc.shape[1]
    Ax = _proj(x, Wc, bc)
    hs = np.zeros((T + 1, B, H), x.dtype)
    rz = np.empty((T, B, 2 * H), x.dtype)
    n = np.empty((T, B, H), x.dtype)
    hn = np.empty((T, B, H), x.dtype)              # Un @ h + bhn, kept for dr
    UcT = Uc.T.copy()
    for t in range(T):
        ah = hs[t] @ UcT + bh
        rz[t] = _sigmoid(Ax[t, :, :2 * H] + ah[:, :2 * H])
        hn[t] = ah[:, 2 * H:]
        r, z = rz[t, :, :H], rz[t, :, H:]
        np.tanh(Ax[t, :, 2 * H:] + r * hn[t], out=n[t])
        np.add(n[t], z * (hs[t] - n[t]), out=hs[t + 1])
    loss, dh_out = _loss_and_seed(hs[1:], y, reduce)
    if not grad:
        return loss
    dAx = np.empty_like(Ax)
    dAh = np.empty_like(Ax)
    dh = np.zeros((B, H), x.dtype)
    for t in range(T - 1, -1, -1):
        r, z = rz[t, :, :H], rz[t, :, H:]
        dh += dh_out[t]
        dan = dh * (1.0 - z) * (1.0 - n[t] * n[t])
        np.multiply(dan * hn[t], r * (1.0 - r), out=dAx[t, :, :H])
        np.multiply(dh * (hs[t] - n[t]), z * (1.0 - z), out=dAx[t, :, H:2 * H])
        dAx[t, :, 2 * H:] = dan
        dAh[t, :, :2 * H] = dAx[t, :, :2 * H]
        np.multiply(dan, r, out=dAh[t, :, 2 * H:])
        dh = dh * z + dAh[t] @ Uc
    g = {"bhn": dAh[:, :, 2 * H:].sum((0, 1))}
    return loss, _split_grads(G, dAx, dAh, hs[:-1], x, Wc, g)


# ---------------------------------------------------------------- softsign

def _softsign(params, x, y, grad, reduce):
    Uf, Uh = params["Uf"], params["Uh"]
    Wc = np.concatenate([params["Wf"], params["Wh"]])
    T, B, _ = x.shape
    H = Uf.shape[0]
    A = _proj(x, Wc, np.concatenate([params["bf"], params["bh"]]))
    hs = np.zeros((T + 1, B, H), x.dtype)
    f = np.empty((T, B, H), x.dtype)
    fh = np.empty((T, B, H), x.dtype)              # f * h[t-1], the operand of Uh
    q = np.empty((T, B, H), x.dtype)               # 1 + |a|
    s = np.empty((T, B, H), x.dtype)               # softsign(a)
    UfT, UhT = Uf.T.copy(), Uh.T.copy()
    for t in range(T):
        f[t] = _sigmoid(A[t, :, :H] + hs[t] @ UfT)
        np.multiply(f[t], hs[t], out=fh[t])
        a = A[t, :, H:] + fh[t] @ UhT
        np.add(1.0, np.abs(a), out=q[t])
        np.divide(a, q[t], out=s[t])
        np.add(s[t], f[t] * (hs[t] - s[t]), out=hs[t + 1])
    loss, dh_out = _loss_and_seed(hs[1:], y, reduce)
    if not grad:
        return loss
    dA = np.empty_like(A)                          # [daf | da]
    dh = np.zeros((B, H), x.dtype)
    for t in range(T - 1, -1, -1):
        ft, hp = f[t], hs[t]
        dh += dh_out[t]
        np.divide(dh * (1.0 - ft), q[t] * q[t], out=dA[t, :, H:])
        dfh = dA[t, :, H:] @ Uh
        df = dh * (hp - s[t]) + dfh * hp
        np.multiply(df, ft * (1.0 - ft), out=dA[t, :, :H])
        dh = dh * ft + dfh * ft + dA[t, :, :H] @ Uf
    dW, db = _matgrad(dA, x), dA.sum((0, 1))
    g = {"Wf": dW[:H], "Wh": dW[H:], "bf": db[:H], "bh": db[H:],
         "Uf": _matgrad(dA[:, :, :H], hs[:-1]), "Uh": _matgrad(dA[:, :, H:], fh),
         "x": dA @ Wc}
    return loss, g


_IMPL = {"elman": _elman, "lstm": _lstm, "gru": _gru, "softsign": _softsign}


def forward(cell: str, params, x, y, reduce: str = "mean") -> float:
    """The loss of `cell` on (x, y): a float."""
    return _IMPL[cell](params, x, y, False, reduce)


def value_and_grad(cell: str, params, x, y, reduce: str = "mean"):
    """(loss, grads): grads of the loss for every param and for "x"."""
    return _IMPL[cell](params, x, y, True, reduce)


__all__ = ["CELLS", "GATES", "param_names", "make_problem", "forward", "value_and_grad"]
