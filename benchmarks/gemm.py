"""The matmuls alone: unfold's GEMM micro-kernels against numpy's BLAS, both called from numba.

    python benchmarks/gemm.py                # the products of an LSTM step, the big ones, the peak
    python benchmarks/gemm.py --dtype float64

Rows are the products the CPU kernels run, for the gates of an LSTM
(N = 4H) and K = H: a step's `h[B, H] @ WT[H, 4H]` (forward) and
`dM[B, 4H] @ W[4H, H]` (backward, accumulated), per B and H; then the ones
done once per call over T*B rows: the hoisted projection `X @ WT`, a weight
gradient `dM^T @ X`, an input gradient `dM @ W`.  `blas` is numpy's own
`cblas_?gemm` (backends/numba_cpu/blas.py, the path the kernels used
before), `unfold` the micro-kernels (weights packed once, outside the timing,
for a step's product; packing inside it for the others).  GFLOP/s, median
and best of the repeats, one thread.  `peak()` is the machine's float32
peak as this project measures it: the micro-kernels on a 2048^2 GEMM.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _loops():
    """njit drivers: a product repeated `reps` times, as a kernel's time loop calls it."""
    import numba

    from unfold.backends.numba_cpu import blas, gemm

    @numba.njit
    def step_blas(a, b, c, reps):
        for _ in range(reps):
            blas.mm(a, b, c)

    @numba.njit
    def step_unfold(a, p, c, reps, acc):
        for _ in range(reps):
            gemm.gemm_packed(a, p, c, acc)
    return step_blas, step_unfold


def _rate(fn, flops: float, repeats: int) -> tuple[float, float]:
    """(median, best) GFLOP/s of fn(reps), reps sized to ~0.1 s."""
    reps = max(1, int(1e8 / flops))
    fn(1)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(reps)
        rates.append(flops * reps / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates), max(rates)


def step_products(dtype, Hs=(16, 64, 256, 1024), Bs=(1, 16, 64), repeats=7) -> list[dict]:
    from unfold.backends.numba_cpu import gemm
    step_blas, step_unfold = _loops()
    rng = np.random.default_rng(0)
    rows = []
    for H in Hs:
        WT = rng.standard_normal((H, 4 * H)).astype(dtype)
        W = np.ascontiguousarray(WT.T)
        P, PW = gemm.panels(WT), gemm.panels(W)
        for B in Bs:
            h, dm = rng.standard_normal((B, H)).astype(dtype), rng.standard_normal((B, 4 * H)).astype(dtype)
            out, dh = np.zeros((B, 4 * H), dtype), np.zeros((B, H), dtype)
            flops = 2.0 * B * H * 4 * H
            rows.append({"B": B, "H": H, "product": "step forward h @ WT",
                         "blas": _rate(lambda r: step_blas(h, WT, out, r), flops, repeats),
                         "unfold": _rate(lambda r: step_unfold(h, P, out, r, False), flops, repeats)})
            rows.append({"B": B, "H": H, "product": "step backward dM @ W",
                         "blas": _rate(lambda r: step_blas(dm, W, dh, r), flops, repeats),
                         "unfold": _rate(lambda r: step_unfold(dm, PW, dh, r, True), flops, repeats)})
    return rows


def big_products(dtype, sizes=((64, 16000), (256, 16000), (1024, 1600)), repeats=5) -> list[dict]:
    from unfold.backends.numba_cpu import blas, gemm
    rng = np.random.default_rng(1)
    rows = []
    for H, TB in sizes:
        X, WT = rng.standard_normal((TB, H)).astype(dtype), rng.standard_normal((H, 4 * H)).astype(dtype)
        D, W = rng.standard_normal((TB, 4 * H)).astype(dtype), np.ascontiguousarray(WT.T)
        out, dw, dx = np.zeros((TB, 4 * H), dtype), np.zeros((4 * H, H), dtype), np.zeros((TB, H), dtype)
        flops = 2.0 * TB * H * 4 * H
        for name, a, b, c in (("projection X @ WT", X, WT, out), ("weight grad dM^T @ X", D.T, X, dw),
                              ("input grad dM @ W", D, W, dx)):
            rows.append({"TB": TB, "H": H, "product": name,
                         "blas": _rate(lambda r, a=a, b=b, c=c: [blas.mm(a, b, c) for _ in range(r)], flops, repeats),
                         "unfold": _rate(lambda r, a=a, b=b, c=c: [gemm.gemm(a, b, c, False) for _ in range(r)],
                                         flops, repeats)})
    return rows


def peak(dtype=np.float32, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of the micro-kernels on one n x n x n GEMM: the peak the benchmarks quote."""
    from unfold.backends.numba_cpu import gemm
    a = np.random.default_rng(2).standard_normal((n, n)).astype(dtype)
    c = np.empty_like(a)
    return _rate(lambda r: [gemm.gemm(a, a, c, False) for _ in range(r)], 2.0 * n ** 3, repeats)[1]


def table(rows, size_keys) -> str:
    head = "| " + " | ".join(size_keys) + " | product | blas GFLOP/s | unfold GFLOP/s | unfold / blas |"
    lines = [head, "|" + "---|" * (len(size_keys) + 4)]
    for r in rows:
        (bm, bb), (um, ub) = r["blas"], r["unfold"]
        lines.append("| " + " | ".join(str(r[k]) for k in size_keys)
                     + f" | {r['product']} | {bm:.1f} ({bb:.1f}) | {um:.1f} ({ub:.1f}) | {um / bm:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--json", default=str(HERE / "results" / "gemm.json"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    from benchmarks.harness import blas_info, configure_threads
    configure_threads(1)
    dtype = np.dtype(args.dtype).type
    kernels = ", ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')}"
                        for b in blas_info() if b.get("user_api") == "blas")
    print(f"numpy's BLAS: {kernels}; {args.dtype}; GFLOP/s median (best)\n", flush=True)
    steps = step_products(dtype)
    print(table(steps, ["B", "H"]) + "\n", flush=True)
    big = big_products(dtype)
    print(table(big, ["TB", "H"]) + "\n", flush=True)
    top = peak(dtype)
    print(f"peak: {top:.1f} GFLOP/s (unfold's micro-kernels, 2048^3 {args.dtype})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"blas": blas_info(), "dtype": args.dtype, "step": steps, "big": big,
                                           "peak_gflops": top}, indent=1))


if __name__ == "__main__":
    main()
