"""Which matmul path a model's kernels should take, measured in one process.

    python benchmarks/matmul_paths.py lstm 16 256 300      # cell B H tau [rounds]

The model's generated CPU source as printed (a step's products on unfold's
micro-kernels, the products done once per call on numpy's BLAS: `hybrid`)
against two rewrites of the same source: every product on the micro-kernels
(`micro`: `_mm` and `_dot` on `gemm.gemm`), and every product on numpy's
BLAS (`blas`: what the kernels ran before the micro-kernels).  The three run
forward + backward in turns on the same buffers; medians (and best) in ms.
It reaches into `Compiled` (`_prepare`, `kernels`) and rewrites generated
source with regular expressions: a measuring tool, not an interface.
"""
from __future__ import annotations

import importlib
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MICRO = '''import numba, numpy as np
from unfold.backends.numba_cpu import blas, gemm
@numba.njit(cache=True)
def _mm_micro(a, b, out):
    gemm.gemm(a, b, out, False)
@numba.njit(cache=True)
def _dot_micro(a, b):
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    gemm.gemm(a, b, out, False)
    return out
@numba.njit(cache=True)
def _dot_blas(a, b):
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    blas.mm(a, b, out)
    return out
'''
IMPORT = "from unfold.backends.numba_cpu.helpers import ("


def variants(src: str) -> dict[str, str]:
    micro = src.replace("_mm(", "_mm_micro(").replace("_dot(", "_dot_micro(")
    blas = re.sub(r"\n *_pk_\w+ = _panels\(\w+\)", "", src)
    blas = re.sub(r"_gemm_p\(([^\n]*?), _pk_(\w+), ([^\n]*?), False\)", r"blas.mm(\1, \2, \3)", blas)
    blas = re.sub(r"_gemm_p\(([^\n]*?), _pk_(\w+), ([^\n]*?), True\)", r"_acc(\3, _dot_blas(\1, \2))", blas)
    blas = blas.replace("_dot(", "_dot_blas(")
    head = "from paths_helpers import _mm_micro, _dot_micro, _dot_blas\nfrom unfold.backends.numba_cpu import blas\n"
    return {"micro": micro.replace(IMPORT, head + IMPORT), "blas": blas.replace(IMPORT, head + IMPORT)}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cell, B, H, T = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    rounds = int(argv[4]) if len(argv) > 4 else 7
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.harness import blas_info, configure_threads
    configure_threads(1)
    import unfold as uf
    from unfold.compiler import layout
    from unfold.tools.gradcheck import random_run
    rec = uf.load(uf.zoo_path(cell)).bind(H=H, D=H)
    p, x, y, _ = random_run(rec, T, B, 0, np.float32)
    fn = uf.compile(rec, "cpu", np.float32)
    run, program, bufs, _ = fn._prepare(p, x, y, None, None, None, None)
    kern = fn.kernels(program, run.tau)
    folder = Path(tempfile.mkdtemp())
    (folder / "paths_helpers.py").write_text(MICRO)
    sys.path.insert(0, str(folder))
    modules = {"hybrid": kern.module}
    for name, text in variants(kern.source).items():
        (folder / f"paths_{name}.py").write_text(text)
        modules[name] = importlib.import_module(f"paths_{name}")

    def fwd_bwd(module):
        scalars = {"T": run.tau, "B": run.batch, "trunc": 0}
        call = lambda f, b: getattr(module, f)(*[scalars.get(a, b.get(a)) for a in kern.args[f]])  # noqa: E731
        loss = call("forward", bufs)
        call("backward", {**bufs, **layout.adjoints(program, bufs, run, fn.workspace())})
        return loss

    losses = {k: fwd_bwd(m) for k, m in modules.items()}
    assert max(losses.values()) - min(losses.values()) <= 1e-4 * abs(losses["hybrid"]), losses
    times = {k: [] for k in modules}
    for _ in range(rounds):
        for k, m in modules.items():
            t0 = time.perf_counter()
            fwd_bwd(m)
            times[k].append((time.perf_counter() - t0) * 1e3)
    kernel = next((str(b.get("architecture")) for b in blas_info() if b.get("user_api") == "blas"), "?")
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{cell} B={B} H={H} tau={T} [OpenBLAS {kernel}] f+b median (best) ms: "
          + ", ".join(f"{k} {med[k]:.3g} ({min(times[k]):.3g})" for k in modules)
          + f"; blas / hybrid {med['blas'] / med['hybrid']:.2f}, micro / hybrid {med['micro'] / med['hybrid']:.2f}")


if __name__ == "__main__":
    main()
