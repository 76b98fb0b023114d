"""The GPU benchmark: unfold's CUDA kernels against PyTorch on the same GPU.

    python benchmarks/gpu.py                       # the CPU benchmark's cases, plus H = 1024
    python benchmarks/gpu.py --cases lstm:16:1024:100,gru:64:256:1000

Systems, float32, the same random problem for everyone (benchmarks.cells_np):
unfold-cuda (uf.compile(target="cuda"); numpy in and out, so every call also
copies its buffers to and from the device) and its two schedules by name
(unfold-persistent, unfold-stepwise: where "auto" should switch), torch-cudnn
(nn.LSTM/nn.GRU/nn.RNN on the GPU: cuDNN) and torch-cuda-loop (the same cell
as a PyTorch loop on the GPU).  Every system's gradient is checked against the numpy BPTT in float64.
Times are medians (benchmarks.harness), each call synchronized (its loss is a
Python float).  Writes benchmarks/results/gpu.json.  Without a GPU it says so
and exits with status 0.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.cpu import ISSUE, parse_cases, unfold_system  # noqa: E402
from benchmarks.harness import (Case, System, environment, format_first_calls,  # noqa: E402
                                format_table, run_grid, write_json)

EXTRA = ["elman:16:1024:1000", "lstm:16:1024:1000", "gru:16:1024:100", "gru:16:1024:1000",
         "lstm:64:1024:100"]


def gpu_available() -> str | None:
    """None when a GPU can run both unfold and PyTorch, else why not."""
    try:
        from numba import cuda
        if not cuda.is_available():
            return "numba.cuda finds no GPU"
    except ImportError:
        return "numba-cuda is not installed (pip install 'unfold-rnn[cuda]')"
    try:
        import torch
        if not torch.cuda.is_available():
            return "PyTorch sees no GPU (a CPU-only wheel?); unfold would run alone"
    except ImportError:
        pass
    return None


def torch_systems() -> list[System]:
    """PyTorch's own cells (cuDNN) and the cell as a loop, on the GPU."""
    import numpy as np
    import torch
    from benchmarks import peers
    dev = torch.device("cuda")

    def cuda_arrays(p, x, y, grad):
        tp = {k: torch.tensor(v, device=dev, requires_grad=grad) for k, v in p.items()}
        return tp, torch.tensor(x, device=dev, requires_grad=grad), torch.tensor(y, device=dev)

    def loop(case: Case):
        prepare, step = peers._CELLS[case.cell]
        ops = peers._TorchOps(torch)

        def loss_fn(tp, tx, ty):
            A, consts, carry = prepare(tp, tx, ops)
            hs = []
            for a in A.unbind(0):
                carry, h = step(consts, carry, a, ops)
                hs.append(h)
            return peers._loss(torch.stack(hs), ty, tp, "mean")

        def fwd(p, x, y):
            with torch.inference_mode():
                return float(loss_fn(*cuda_arrays(p, x, y, False)))

        def fwd_bwd(p, x, y):
            tp, tx, ty = cuda_arrays(p, x, y, True)
            loss = loss_fn(tp, tx, ty)
            gs = torch.autograd.grad(loss, list(tp.values()) + [tx])
            return float(loss), {k: g.cpu().numpy() for k, g in zip(list(tp) + ["x"], gs)}
        return fwd, fwd_bwd

    def cudnn(case: Case):
        if case.cell not in peers._NATIVE:
            raise NotImplementedError(f"PyTorch has no native `{case.cell}` cell")
        kw = {"nonlinearity": "tanh"} if case.cell == "elman" else {}
        m = getattr(torch.nn, peers._NATIVE[case.cell])(case.D, case.H, **kw).to(dev)

        def load(p):
            with torch.no_grad():
                for w, v in zip(peers._weights(m), peers._pack_native(case.cell, p)):
                    w.copy_(torch.from_numpy(np.ascontiguousarray(v)))

        def loss_fn(p, x, y, grad):
            load(p)
            tx = torch.tensor(x, device=dev, requires_grad=grad)
            tp = {k: torch.tensor(p[k], device=dev, requires_grad=grad) for k in ("V", "c") if k in p}
            return peers._loss(m(tx)[0], torch.tensor(y, device=dev), tp, "mean"), tx, tp

        def fwd(p, x, y):
            with torch.inference_mode():
                return float(loss_fn(p, x, y, False)[0])

        def fwd_bwd(p, x, y):
            loss, tx, tp = loss_fn(p, x, y, True)
            gs = [g.cpu().numpy() for g in torch.autograd.grad(loss, peers._weights(m) + [tx] + list(tp.values()))]
            grads = peers._unpack_native(case.cell, *gs[:4])
            grads["x"] = gs[4]
            grads.update(zip(tp, gs[5:]))
            return float(loss), grads
        return fwd, fwd_bwd

    return [System("torch-cudnn", cudnn), System("torch-cuda-loop", loop)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", help="cell:B:H:tau,... (default: the CPU benchmark's cases plus H = 1024)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--max-seconds", type=float, default=20.0, help="time budget per system and case")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", default=str(HERE / "results" / "gpu.json"))
    args = ap.parse_args(argv)
    why = gpu_available()
    if why and "PyTorch" not in why:
        print(f"benchmarks/gpu.py: no GPU to benchmark on ({why}); nothing measured.")
        return 0
    systems = [unfold_system("cuda", "unfold-cuda"),   # schedule "auto"; both schedules by name, to set its threshold
               unfold_system("cuda", "unfold-persistent", schedule="persistent"),
               unfold_system("cuda", "unfold-stepwise", schedule="stepwise")]
    if not args.no_torch and why is None:
        systems += torch_systems()
    elif why:
        print(f"note: {why}")
    cases = parse_cases(args.cases or ",".join(ISSUE + EXTRA))
    env = environment()
    from numba import cuda
    name = getattr(cuda.get_current_device(), "name", "numba's CUDA simulator")  # a dry run: NUMBA_ENABLE_CUDASIM=1
    env["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
    print(f"GPU: {env['gpu']}", flush=True)
    t0 = time.time()
    results = run_grid(systems, cases, repeats=args.repeats, max_seconds=args.max_seconds,
                       log=lambda s: print(s, flush=True))
    print(f"\nforward and forward+backward, median ms ({time.time() - t0:.0f} s):\n")
    print(format_table(results, baseline="unfold-cuda"))
    print("\nfirst calls (compile):\n")
    print(format_first_calls(results))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, results, env)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
