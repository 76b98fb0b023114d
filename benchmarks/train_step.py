"""One training step of the adding problem, unfold against PyTorch (issue 11's goal).

    python benchmarks/train_step.py               # T=50, B=64, H=64 LSTM, Adam; median ms of 31 steps
    python benchmarks/train_step.py --T 200 --H 128

A step: the loss and its gradients on one batch, then an Adam update with
gradient clipping.  unfold: examples/tasks/adding_lstm.rnn compiled for the
CPU in float32, `fn.value_and_grad` and `uf.optim.Adam`.  PyTorch: `nn.LSTM`
and an `nn.Linear` head on the last step, `torch.optim.Adam`,
`clip_grad_norm_`.  One thread each; the two are timed in turns, one step each
per round, on the same batches.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def batch(T: int, B: int, rng):
    """The adding problem: a value channel and a marker channel; y = the sum of the two marked values."""
    x = np.zeros((T, B, 2), np.float32)
    x[:, :, 0] = rng.random((T, B))
    for b in range(B):
        i, j = rng.choice(T, 2, replace=False)
        x[[i, j], b, 1] = 1.0
    return x, (x[:, :, 0] * x[:, :, 1]).sum(0)[:, None].astype(np.float32)


def unfold_step(T: int, H: int):
    import unfold as uf
    rec = uf.load(ROOT / "examples" / "tasks" / "adding_lstm.rnn").bind(H=H)
    fn = uf.compile(rec, target="cpu", dtype=np.float32)
    params = {k: v.astype(np.float32) for k, v in rec.init_params(seed=0).items()}
    opt = uf.optim.Adam(1e-3, clip=1.0)
    state = {"p": params, "s": opt.init(params)}

    def step(x, y):
        loss, grads = fn.value_and_grad(state["p"], {"x": x}, {"y": y}, wrt="params")
        state["p"], state["s"] = opt.update(state["p"], grads, state["s"])
        return loss
    return step


def torch_step(T: int, H: int):
    import torch
    torch.manual_seed(0)
    lstm, head = torch.nn.LSTM(2, H), torch.nn.Linear(H, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)

    def step(x, y):
        opt.zero_grad()
        out, _ = lstm(torch.from_numpy(x))
        loss = torch.nn.functional.mse_loss(head(out[-1]), torch.from_numpy(y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()
    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--B", type=int, default=64)
    ap.add_argument("--H", type=int, default=64)
    ap.add_argument("--steps", type=int, default=31)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks.harness import configure_threads
    configure_threads(1)
    systems = {"unfold": unfold_step(a.T, a.H)}
    try:
        systems["torch"] = torch_step(a.T, a.H)
    except ImportError:
        print("PyTorch is not installed: unfold alone")
    rng = np.random.default_rng(0)
    data = [batch(a.T, a.B, rng) for _ in range(a.steps + 3)]
    times = {k: [] for k in systems}
    for i, (x, y) in enumerate(data):
        for name, step in systems.items():
            t0 = time.perf_counter()
            step(x, y)
            if i >= 3:   # compile, allocator, first-touch
                times[name].append((time.perf_counter() - t0) * 1e3)
    print(f"adding problem, LSTM T={a.T} B={a.B} H={a.H}, Adam + clipping, float32, one thread; "
          f"median of {a.steps} steps (load average {os.getloadavg()[0]:.1f})")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:<7} {v:8.2f} ms" + (f"   torch / unfold = {med['torch'] / v:.2f}" if k == "unfold" and
                                          "torch" in med else ""))


if __name__ == "__main__":
    main()
