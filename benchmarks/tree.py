"""Tree-RNN: unfold's level-batched driver vs PyTorch, forward and forward + backward.

    python benchmarks/tree.py                           # 64 trees of 16-32 leaves, H = D = 64, float32
    python benchmarks/tree.py --trees 16 --H 128 --rounds 5 --dtype float64

The cell is examples/models/recursive.rnn (h = tanh(Wl hl + Wr hr + U x + b),
o = V h + c, softmax cross-entropy on the roots).  Systems:

    unfold cpu      uf.tree.compile(target="cpu"): one compiled call per depth level, all trees batched
    unfold numpy    the same driver on the numpy interpreter target
    torch levels    PyTorch, the same level batching written by hand (gather, three matmuls, scatter)
    torch nodes     PyTorch node by node, recursively (the textbook implementation): one cell per node

One thread everywhere (torch.set_num_threads(1), BLAS threads 1).  Times are
medians over `--rounds` rounds, each round calling every system once in turn
(a change of load on this shared machine falls on all alike), after one
warm-up call each (numba compiles on the first).  A new batch of trees is not
drawn per call: the same batch, so the structure is checked once per call.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402 (after the thread count)

import unfold as uf  # noqa: E402

MODEL = Path(__file__).resolve().parent.parent / "examples" / "models" / "recursive.rnn"


def make_batch(n_trees: int, leaves: tuple[int, int], D: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    trees = [uf.tree.random_tree(int(rng.integers(leaves[0], leaves[1] + 1)), rng) for _ in range(n_trees)]
    xs = [rng.standard_normal((t.n, D)) for t in trees]
    return trees, xs, rng.integers(0, 2, size=n_trees)


def unfold_system(rec, target: str, dtype):
    tf = uf.tree.compile(rec, target=target, dtype=dtype)

    def run(params, batch, X, labels, backward: bool):
        if backward:
            return tf.value_and_grad(params, batch, {"x": X}, labels)
        return tf(params, batch, {"x": X})
    return run


def torch_nodes(torch):
    def run(tp, batch, X, labels, backward: bool):
        zero = torch.zeros(tp["b"].shape[0], dtype=tp["b"].dtype)

        def h(n):
            if n == batch.n:
                return zero
            l, r = batch.children[n]
            return torch.tanh(tp["Wl"] @ h(l) + tp["Wr"] @ h(r) + tp["U"] @ X[n] + tp["b"])
        logits = torch.stack([tp["V"] @ h(int(r)) + tp["c"] for r in batch.roots])
        return _finish(torch, tp, logits, labels, backward)
    return run


def torch_levels(torch):
    def run(tp, batch, X, labels, backward: bool):
        S = torch.zeros(batch.n + 1, tp["b"].shape[0], dtype=tp["b"].dtype)
        for ids, kids in zip(batch.t_levels, batch.t_kids):
            hl, hr = S[kids[:, 0]], S[kids[:, 1]]
            h = torch.tanh(hl @ tp["Wl"].T + hr @ tp["Wr"].T + X[ids] @ tp["U"].T + tp["b"])
            S = S.index_copy(0, ids, h)   # out of place, so autograd sees every level
        logits = S[batch.t_roots] @ tp["V"].T + tp["c"]
        return _finish(torch, tp, logits, labels, backward)
    return run


def _finish(torch, tp, logits, labels, backward: bool):
    loss = torch.nn.functional.cross_entropy(logits, labels)
    if backward:
        loss.backward()
        for v in tp.values():
            v.grad = None
    return loss


def systems(rec, dtype, batch):
    out = {"unfold cpu": (unfold_system(rec, "cpu", dtype), "np"),
           "unfold numpy": (unfold_system(rec, "numpy", dtype), "np")}
    try:
        import torch  # noqa: PLC0415 (optional)
    except ImportError:
        print("torch is not installed: unfold only")
        return out
    torch.set_num_threads(1)
    batch.t_levels = [torch.as_tensor(ids) for ids in batch.levels]
    batch.t_kids = [torch.as_tensor(batch.children[ids]) for ids in batch.levels]
    batch.t_roots = torch.as_tensor(batch.roots)
    out["torch levels"] = (torch_levels(torch), "torch")
    out["torch nodes"] = (torch_nodes(torch), "torch")
    return out


def measure(rec, dtype, trees, xs, labels, rounds: int) -> dict:
    batch = uf.tree.TreeBatch(trees)
    found = systems(rec, dtype, batch)
    params = {k: v.astype(dtype) for k, v in rec.init_params(seed=0).items()}
    X = np.concatenate(xs).astype(dtype)
    args = {"np": (params, batch, X, labels)}
    if any(kind == "torch" for _, kind in found.values()):
        import torch  # noqa: PLC0415
        args["torch"] = ({k: torch.tensor(v, requires_grad=True) for k, v in params.items()}, batch,
                         torch.tensor(X), torch.as_tensor(labels))
    times = {(name, bwd): [] for name in found for bwd in (False, True)}
    for _ in range(rounds + 1):   # round 0 warms up (numba compiles, caches fill)
        for (name, bwd), ts in times.items():
            fn, kind = found[name]
            t0 = time.perf_counter()
            fn(*args[kind], backward=bwd)
            ts.append(time.perf_counter() - t0)
    losses = {}
    for name, (fn, kind) in found.items():   # unfold returns (loss, grads), torch the loss tensor
        out = fn(*args[kind], backward=True)
        losses[name] = float(out[0]) if kind == "np" else out.item()
    spread = max(losses.values()) - min(losses.values())
    print(f"the systems' losses agree to {spread:.1e} (loss {losses['unfold cpu']:.6f})")
    return {k: statistics.median(v[1:]) * 1e3 for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=64)
    ap.add_argument("--leaves", default="16,32", help="min,max leaves per tree")
    ap.add_argument("--H", type=int, default=64)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    lo, hi = map(int, args.leaves.split(","))
    rec = uf.tree.load(MODEL).bind(H=args.H, D=args.H)
    trees, xs, labels = make_batch(args.trees, (lo, hi), args.H)
    batch = uf.tree.TreeBatch(trees)
    print(f"{args.trees} trees of {lo}-{hi} leaves: {batch.n} nodes, {len(batch.levels)} levels "
          f"(compiled calls); H = D = {args.H}, {args.dtype}, one thread, median of {args.rounds}")
    ms = measure(rec, np.dtype(args.dtype), trees, xs, labels, args.rounds)
    base = ms.get(("torch nodes", True))
    print("| system | forward ms | forward + backward ms | fwd+bwd vs torch nodes |\n|---|---:|---:|---:|")
    for name in dict.fromkeys(n for n, _ in ms):
        ratio = f"{base / ms[name, True]:.1f}x faster" if base else ""
        print(f"| {name} | {ms[name, False]:.2f} | {ms[name, True]:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
