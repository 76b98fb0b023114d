"""The peers unfold is measured against: the same four cells in numpy, PyTorch and JAX.

In: a peer name and a cell name.  Out: a `Peer` whose `fwd(params, x, y) -> loss`
and `fwd_bwd(params, x, y) -> (loss, grads)` take numpy arrays (params named and
laid out as examples/models/<cell>.rnn, x [T, B, D], y [T, B, H]) and return a
float and a dict of numpy arrays (every param, and "x").

    numpy       benchmarks/cells_np.py: a numpy loop with hand-written BPTT
    torch       nn.RNN / nn.LSTM / nn.GRU (oneDNN); no custom cell
    torch-loop  the cell as a PyTorch Python loop, autograd for the backward
    jax         the cell under lax.scan, jit(value_and_grad)

The torch-loop and jax cells are written once (`_CELLS`) against a tiny ops shim,
with the input projections of all steps hoisted out of the loop and the gates
stacked into one matmul, as a careful user would write them.  Every peer is
optional: `make_peer` raises `PeerUnavailable` (with the reason) when its
library is missing or it has no version of the cell.

    >>> harness.configure_threads(1)         # before jax is imported
    >>> peer = make_peer("jax", "lstm")
    >>> loss, grads = peer.fwd_bwd(params, x, y)

Run as a script to time the peers alone: `python benchmarks/peers.py --help`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import cells_np  # noqa: E402

PEERS = ("numpy", "torch", "torch-loop", "jax")


class PeerUnavailable(Exception):
    """A peer that cannot run here (library missing) or has no version of the cell."""


@dataclass
class Peer:
    name: str
    cell: str
    fwd: Callable          # (params, x, y) -> float
    fwd_bwd: Callable      # (params, x, y) -> (float, dict[str, ndarray])
    note: str = ""


# ---------------------------------------------------------------- numpy

def _numpy_peer(cell, reduce):
    return Peer("numpy", cell,
                lambda p, x, y: cells_np.forward(cell, p, x, y, reduce),
                lambda p, x, y: cells_np.value_and_grad(cell, p, x, y, reduce))


# ------------------------------------------- cells written once for torch and jax
# prepare(p, x, ops) -> (A [T, B, G*H] input projections, consts, carry0)
# step(consts, carry, a_t, ops) -> (carry, h_t)

def _cat(p, prefix, gates, ops):
    return ops.cat([p[prefix + k] for k in gates], 0)


def _proj(x, W, b):
    return x @ W.T + b


def _elman_prepare(p, x, ops):
    return _proj(x, p["U"], p["b"]), p["W"].T, ops.zeros(x, p["W"].shape[0])


def _elman_step(WT, h, a, ops):
    h = ops.tanh(a + h @ WT)
    return h, h


def _lstm_prepare(p, x, ops):
    G = cells_np.GATES["lstm"]
    H = p["Ui"].shape[0]
    A = _proj(x, _cat(p, "W", G, ops), _cat(p, "b", G, ops))
    return A, _cat(p, "U", G, ops).T, (ops.zeros(x, H), ops.zeros(x, H))


def _lstm_step(UT, carry, a, ops):
    h, c = carry
    H = h.shape[-1]
    a = a + h @ UT
    i, f = ops.sigmoid(a[:, :H]), ops.sigmoid(a[:, H:2 * H])
    g, o = ops.tanh(a[:, 2 * H:3 * H]), ops.sigmoid(a[:, 3 * H:])
    c = f * c + i * g
    h = o * ops.tanh(c)
    return (h, c), h


def _gru_prepare(p, x, ops):
    G = cells_np.GATES["gru"]
    H = p["Ur"].shape[0]
    A = _proj(x, _cat(p, "W", G, ops), _cat(p, "b", G, ops))
    return A, (_cat(p, "U", G, ops).T, p["bhn"]), ops.zeros(x, H)


def _gru_step(consts, h, a, ops):
    UT, bhn = consts
    H = h.shape[-1]
    ah = h @ UT
    r = ops.sigmoid(a[:, :H] + ah[:, :H])
    z = ops.sigmoid(a[:, H:2 * H] + ah[:, H:2 * H])
    n = ops.tanh(a[:, 2 * H:] + r * (ah[:, 2 * H:] + bhn))
    h = (1 - z) * n + z * h
    return h, h


def _softsign_prepare(p, x, ops):
    G = cells_np.GATES["softsign"]
    H = p["Uf"].shape[0]
    A = _proj(x, _cat(p, "W", G, ops), _cat(p, "b", G, ops))
    return A, (p["Uf"].T, p["Uh"].T), ops.zeros(x, H)


def _softsign_step(consts, h, a, ops):
    UfT, UhT = consts
    H = h.shape[-1]
    f = ops.sigmoid(a[:, :H] + h @ UfT)
    z = a[:, H:] + (f * h) @ UhT
    h = f * h + (1 - f) * (z / (1 + ops.abs(z)))
    return h, h


_CELLS = {"elman": (_elman_prepare, _elman_step), "lstm": (_lstm_prepare, _lstm_step),
          "gru": (_gru_prepare, _gru_step), "softsign": (_softsign_prepare, _softsign_step)}


def _loss(hs, y, p, reduce):
    """mean_t (or sum_t) of mse over units, averaged over the batch; Elman readout if V."""
    if "V" in p:
        hs = hs @ p["V"].T + p["c"]
    T, B = hs.shape[0], hs.shape[1]
    return ((hs - y) ** 2).mean(-1).sum() / (B * (T if reduce == "mean" else 1))


# ---------------------------------------------------------------- torch

def _torch():
    try:
        import torch
    except ImportError as e:
        raise PeerUnavailable(f"torch not installed ({e})") from None
    return torch


class _TorchOps:
    def __init__(self, torch):
        self.tanh, self.sigmoid, self.abs = torch.tanh, torch.sigmoid, torch.abs
        self.cat = torch.cat
        self.zeros = lambda x, H: x.new_zeros((x.shape[1], H))


def _torch_inputs(torch, p, x, grad):
    tp = {k: torch.from_numpy(np.ascontiguousarray(v)).requires_grad_(grad) for k, v in p.items()}
    return tp, torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(grad)


def _torch_grads(torch, loss, tp, tx):
    names = list(tp)
    gs = torch.autograd.grad(loss, [tp[k] for k in names] + [tx])
    return float(loss.detach()), {k: g.numpy() for k, g in zip(names + ["x"], gs)}


def _torch_loop_peer(cell, reduce):
    torch = _torch()
    ops = _TorchOps(torch)
    prepare, step = _CELLS[cell]

    def loss_fn(tp, tx, ty):
        A, consts, carry = prepare(tp, tx, ops)
        hs = []
        for a in A.unbind(0):      # not A[t]: its backward writes a full-size zero tensor per step
            carry, h = step(consts, carry, a, ops)
            hs.append(h)
        return _loss(torch.stack(hs), ty, tp, reduce)

    def fwd(p, x, y):
        with torch.inference_mode():
            tp, tx = _torch_inputs(torch, p, x, False)
            return float(loss_fn(tp, tx, torch.from_numpy(y)))

    def fwd_bwd(p, x, y):
        tp, tx = _torch_inputs(torch, p, x, True)
        return _torch_grads(torch, loss_fn(tp, tx, torch.from_numpy(y)), tp, tx)

    return Peer("torch-loop", cell, fwd, fwd_bwd)


_NATIVE = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _pack_native(cell, p):
    """(weight_ih, weight_hh, bias_ih, bias_hh) in PyTorch's packing: gates stacked
    [W_i*|W_f*|...] by rows; the bias in bias_ih, zeros in bias_hh (except GRU's b_hn,
    which PyTorch applies inside r * (W_hn h + b_hn), so it goes in bias_hh)."""
    if cell == "elman":
        return p["U"], p["W"], p["b"], np.zeros_like(p["b"])
    G = cells_np.GATES[cell]
    W, U, b = (np.concatenate([p[pre + k] for k in G]) for pre in ("W", "U", "b"))
    b_hh = np.zeros_like(b)
    if cell == "gru":
        b_hh[2 * len(p["bhn"]):] = p["bhn"]
    return W, U, b, b_hh


def _unpack_native(cell, gw_ih, gw_hh, gb_ih, gb_hh):
    """Per-param grads from the grads of PyTorch's packed weights."""
    if cell == "elman":
        return {"U": gw_ih, "W": gw_hh, "b": gb_ih}
    G = cells_np.GATES[cell]
    H = gw_hh.shape[1]
    g = {}
    for k, name in enumerate(G):
        s = slice(k * H, (k + 1) * H)
        g["W" + name], g["U" + name], g["b" + name] = gw_ih[s], gw_hh[s], gb_ih[s]
    if cell == "gru":
        g["bhn"] = gb_hh[2 * H:]
    return g


def _weights(m):
    return [m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0]


def _torch_native_peer(cell, reduce):
    torch = _torch()
    if cell not in _NATIVE:
        raise PeerUnavailable(f"PyTorch has no native `{cell}` cell")
    modules = {}

    def module(p, x):
        D, H = x.shape[2], p["W" if cell == "elman" else "U" + cells_np.GATES[cell][0]].shape[0]
        key = (D, H, x.dtype.str)
        if key not in modules:
            kw = {"nonlinearity": "tanh"} if cell == "elman" else {}
            m = getattr(torch.nn, _NATIVE[cell])(D, H, **kw).to(torch.from_numpy(x[:0]).dtype)
            modules[key] = m
        m = modules[key]
        with torch.no_grad():
            for w, v in zip(_weights(m), _pack_native(cell, p)):
                w.copy_(torch.from_numpy(np.ascontiguousarray(v)))
        return m

    def loss_fn(m, p, x, y, grad):
        tx = torch.from_numpy(x).requires_grad_(grad)
        hs, _ = m(tx)
        tp = {k: torch.from_numpy(p[k]).requires_grad_(grad) for k in ("V", "c") if k in p}
        return _loss(hs, torch.from_numpy(y), tp, reduce), tx, tp

    def fwd(p, x, y):
        m = module(p, x)
        with torch.inference_mode():
            return float(loss_fn(m, p, x, y, False)[0])

    def fwd_bwd(p, x, y):
        m = module(p, x)
        loss, tx, tp = loss_fn(m, p, x, y, True)
        ws = _weights(m)
        gs = torch.autograd.grad(loss, ws + [tx] + list(tp.values()))
        gs = [g.numpy() for g in gs]
        grads = _unpack_native(cell, *gs[:4])
        grads["x"] = gs[4]
        grads.update(zip(tp, gs[5:]))
        return float(loss.detach()), grads

    return Peer("torch", cell, fwd, fwd_bwd, note=f"nn.{_NATIVE[cell]}")


# ---------------------------------------------------------------- jax

def _jax_peer(cell, reduce):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as e:
        raise PeerUnavailable(f"jax not installed ({e})") from None

    class ops:
        tanh, sigmoid, abs, cat = jnp.tanh, jax.nn.sigmoid, jnp.abs, jnp.concatenate
        zeros = staticmethod(lambda x, H: jnp.zeros((x.shape[1], H), x.dtype))

    prepare, step = _CELLS[cell]

    def loss_fn(p, x, y):
        A, consts, carry = prepare(p, x, ops)
        _, hs = jax.lax.scan(lambda c, a: step(consts, c, a, ops), carry, A)
        return _loss(hs, y, p, reduce)

    jf = jax.jit(loss_fn)
    jg = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))

    def fwd(p, x, y):
        return float(jf(p, x, y))

    def fwd_bwd(p, x, y):
        loss, (gp, gx) = jg(p, x, y)
        grads = {k: np.asarray(v) for k, v in gp.items()}
        grads["x"] = np.asarray(gx)
        return float(loss), grads

    return Peer("jax", cell, fwd, fwd_bwd, note="lax.scan, jit")


_FACTORIES = {"numpy": _numpy_peer, "torch": _torch_native_peer,
              "torch-loop": _torch_loop_peer, "jax": _jax_peer}


def make_peer(name: str, cell: str, reduce: str = "mean") -> Peer:
    """The peer `name` (one of PEERS) for `cell` (one of cells_np.CELLS).
    Raises PeerUnavailable with the reason when it cannot run here."""
    if name not in _FACTORIES:
        raise KeyError(f"unknown peer {name!r}; peers: {', '.join(PEERS)}")
    if cell not in _CELLS:
        raise KeyError(f"unknown cell {cell!r}; cells: {', '.join(_CELLS)}")
    return _FACTORIES[name](cell, reduce)


def peer_systems(names=PEERS, reduce: str = "mean") -> list:
    """The peers as harness systems: System(name, factory(case) -> (fwd, fwd_bwd))."""
    from benchmarks.harness import System

    def factory(name):
        def make(case):
            peer = make_peer(name, case.cell, reduce)
            return peer.fwd, peer.fwd_bwd
        return make
    return [System(n, factory(n), "tracemalloc" if n == "numpy" else "rss") for n in names]


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Time the peers (forward, forward+backward).")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sizes", default="elman:16:64:1000,lstm:1:64:1000,lstm:16:64:1000,"
                    "gru:16:64:1000,softsign:16:64:1000,lstm:16:256:1000",
                    help="comma-separated cell:B:H:tau")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--baseline", default="torch")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--max-seconds", type=float, default=None, help="stop repeating after this")
    ap.add_argument("--memory", action="store_true", help="also peak memory of fwd+bwd")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    from benchmarks import harness
    info = harness.configure_threads(args.threads)
    sizes = [(c, int(b), int(h), int(t)) for c, b, h, t in
             (s.split(":") for s in args.sizes.split(","))]
    systems = peer_systems(args.peers.split(","))
    results = harness.run_grid(systems, sizes, repeats=args.repeats, memory=args.memory,
                               max_seconds=args.max_seconds, log=print)
    env = dict(harness.environment(), **info)
    print(harness.describe_environment(env))
    print(harness.format_table(results, baseline=args.baseline))
    print(harness.format_first_calls(results))
    if args.json:
        harness.write_json(args.json, results, env)


if __name__ == "__main__":
    main()
