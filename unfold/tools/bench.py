"""`unfold bench`: time a model's compiled forward and forward+backward, and
the same cell in the peers installed (a numpy loop with hand-written BPTT,
PyTorch, JAX) when the model is one of the cells they implement.

    print(bench_model(rec, tau=200, batch=16, vs=["numpy", "torch"]))

Times are medians of `repeats` calls after a warm-up, in float32, with every
system limited to the same number of threads.  The compiled model comes
from the normal disk cache (`$UNFOLD_CACHE_DIR`), as a user's second run
would; `cold=True` (`unfold bench --cold`) compiles into an empty one and
reports that compile time.  The time to a first forward+backward is on its
own line either way.  The peers live in `benchmarks/` of a source checkout;
without it only unfold is timed.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..lang.errors import UnfoldError
from ..lang.ir import Reduce, Role
from ..lang.recurrence import Recurrence
from .gradcheck import random_run


def _timeit(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _benchmarks_dir() -> Path | None:
    root = Path(__file__).resolve().parents[2] / "benchmarks"   # the checkout's, beside unfold/
    return root if (root / "peers.py").exists() else None


def limit_threads(threads: int) -> str:
    """Give numpy's BLAS, numba and torch the same thread count; say which BLAS runs."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
        threadpool_limits(threads)
        info = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
                for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        info = ["threadpoolctl not installed: BLAS threads not limited"]
    import numba
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return ", ".join(info) or "unknown BLAS"


def _first_call(rec, params, inputs, targets, cache_dir):
    """The compiled model and the seconds to its first forward+backward."""
    from ..compiler.driver import compile as compile_
    t0 = time.perf_counter()
    fn = compile_(rec, "cpu", np.float32, cache_dir=cache_dir)
    fn.value_and_grad(params, inputs, targets)
    return fn, time.perf_counter() - t0


def bench_model(rec: Recurrence, tau: int, batch: int, vs=(), repeats: int = 7, threads: int = 1,
                seed: int = 0, cold: bool = False) -> str:
    blas = limit_threads(threads)
    params, inputs, targets, _ = random_run(rec, tau, batch, seed, np.float32)
    if cold:
        with tempfile.TemporaryDirectory() as empty:
            fn, first_s = _first_call(rec, params, inputs, targets, empty)
        first = f"compile, cold cache (generate + numba, forward and backward): {first_s:.2f} s"
    else:
        fn, first_s = _first_call(rec, params, inputs, targets, None)
        first = (f"first forward+backward, disk cache as found ({fn.cache_hits} of the modules from it; "
                 f"--cold for a compile from nothing): {first_s:.2f} s")
    rows = [("unfold", _timeit(lambda: fn.loss(params, inputs, targets), repeats),
             _timeit(lambda: fn.value_and_grad(params, inputs, targets), repeats), "")]
    rows += _peer_rows(rec, vs, params, inputs, targets, repeats, threads)
    dims = ", ".join(f"{k}={v}" for k, v in rec.dims.items())
    lines = [f"unfold bench {rec.name}: tau={tau} batch={batch} ({dims}), float32, {threads} thread(s)",
             f"BLAS (numpy's: unfold's products over all steps; a step's run on its micro-kernels): {blas}",
             first,
             f"{'system':<12} {'fwd ms':>10} {'fwd+bwd ms':>12} {'fwd+bwd / unfold':>18}  note"]
    base = rows[0][2]
    for name, f, fb, note in rows:
        ratio = f"{fb / base:.2f}x" if fb == fb else "-"
        lines.append(f"{name:<12} {f:>10.2f} {fb:>12.2f} {ratio:>18}  {note}")
    return "\n".join(lines)


def _peer_rows(rec, vs, params, inputs, targets, repeats, threads=1):
    if not vs:
        return []
    root = _benchmarks_dir()
    if root is None:
        raise UnfoldError("the peers live in benchmarks/ of a source checkout, which this install lacks")
    sys.path.insert(0, str(root))
    import harness  # noqa: E402  (benchmarks/harness.py)
    import peers  # noqa: E402  (benchmarks/peers.py)
    harness.configure_threads(threads)   # torch's and XLA's threads too, before jax is imported
    x = inputs.get("x")
    y = targets.get("y")
    cell = rec.name
    reduce = "sum" if rec.loss and rec.loss.reduce is Reduce.SUM else "mean"
    rows = []
    for name in vs:
        try:
            if x is None or y is None or len(rec.of_role(Role.INPUT)) != 1:
                raise peers.PeerUnavailable("peers take one input x and one target y")
            peer = peers.make_peer(name, cell, reduce)
            rows.append((name, _timeit(lambda: peer.fwd(params, x, y), repeats),
                         _timeit(lambda: peer.fwd_bwd(params, x, y), repeats), peer.note or ""))
        except (peers.PeerUnavailable, ImportError, KeyError, ValueError) as e:
            rows.append((name, float("nan"), float("nan"), f"skipped: {e}"))
    return rows
