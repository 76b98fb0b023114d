"""Data-parallel throughput on Dask: uf.distributed.value_and_grad with 1 and 2 workers.

    python benchmarks/dask_gradients.py                      # LSTM H=128 D=32, tau 100, B 256, float32
    python benchmarks/dask_gradients.py --cell gru --hidden 64 --batch 128 --repeats 5

Systems, each timed on the same batch (forward + BPTT, gradients of the params):
`one process` (fn.value_and_grad here), and Dask with 1 and 2 workers (a
LocalCluster of worker processes with one thread each; every BLAS, numba and
OpenMP pool at one thread, so a worker is one core), each two ways: `batch
sent` (the arrays go from here to the workers at every call) and `data on
workers` (the shards scattered once, as a loader on the workers would leave
them; only params and gradients travel).  Throughput is sequences per second;
each Dask result is checked against the one-process one (max relative
error).  The workers load the kernels from the disk cache this process fills.
Writes benchmarks/results/distributed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks import harness  # noqa: E402


def problem(args):
    import numpy as np
    import unfold as uf
    rec = uf.load(uf.zoo_path(args.cell)).bind(H=args.hidden, D=args.inputs)
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    params = rec.init_params(seed=0, dtype=dtype)
    batch = {"x": rng.normal(size=(args.tau, args.batch, args.inputs)).astype(dtype),
             "y": rng.normal(size=(args.tau, args.batch, args.hidden)).astype(dtype)}
    return rec, params, batch


def timed(call, repeats: int) -> dict:
    t = harness.time_call(call, repeats=repeats, warmup=3)   # a worker's first calls allocate its buffers
    return {k: t[k] for k in ("median_ms", "min_ms", "runs")}


def max_rel_error(got, want) -> float:
    import numpy as np
    (loss, grads), (ref, ref_grads) = got, want
    errs = [abs(loss - ref) / max(abs(ref), 1e-30)]
    errs += [float(np.abs(grads[k] - g).max() / max(np.abs(g).max(), 1e-30)) for k, g in ref_grads.items()]
    return max(errs)


def run_dask(fn, params, batch, workers: int, repeats: int, want) -> dict:
    """Two timings on one cluster: the batch sent from here at every call, and
    its shards already on the workers (scattered once, as a loader there would)."""
    import numpy as np
    from distributed import Client, LocalCluster
    from unfold.bridges import distributed as ud
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        t0 = time.perf_counter()
        got = ud.value_and_grad(fn, params, batch, client)   # the workers start and load the kernels
        first = (time.perf_counter() - t0) * 1e3
        sent = timed(lambda: ud.value_and_grad(fn, params, batch, client), repeats)
        rows = np.array_split(np.arange(batch["x"].shape[1]), workers)
        shards = [{k: np.ascontiguousarray(a[:, r[0]:r[-1] + 1]) for k, a in batch.items()} for r in rows]
        # scattered in a list: a dict would be scattered value by value
        futures = [client.scatter([s], workers=[w])[0] for s, w in zip(shards, client.nthreads())]
        resident = timed(lambda: ud.value_and_grad(fn, params, futures, client), repeats)
        err = max(max_rel_error(got, want), max_rel_error(ud.value_and_grad(fn, params, futures, client), want))
    return {"sent": dict(sent, first_call_ms=first, max_rel_err=err), "resident": dict(resident, max_rel_err=err)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru"])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--inputs", type=int, default=32)
    ap.add_argument("--tau", type=int, default=100)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=str(HERE / "results" / "distributed.json"))
    args = ap.parse_args(argv)
    info = harness.configure_threads(1)            # before numpy starts its BLAS: the workers inherit it
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    made = None if os.environ.get("UNFOLD_CACHE_DIR") else tempfile.mkdtemp(prefix="unfold-bench-")
    os.environ["UNFOLD_CACHE_DIR"] = os.environ.get("UNFOLD_CACHE_DIR") or made   # cold compiles, once
    try:
        measure(args, info)
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)


def measure(args, info: dict):
    import numpy as np
    import unfold as uf
    rec, params, batch = problem(args)
    fn = uf.compile(rec, target="cpu", dtype=np.dtype(args.dtype))
    targets = {"y": batch["y"]}
    call = lambda: fn.value_and_grad(params, {"x": batch["x"]}, targets, wrt="params")   # noqa: E731
    want = call()
    systems = {"one process": timed(call, args.repeats)}
    for n in (1, 2):
        out = run_dask(fn, params, batch, n, args.repeats, want)
        name = f"dask, {n} worker{'s' * (n > 1)}"
        systems[f"{name}, batch sent"], systems[f"{name}, data on workers"] = out["sent"], out["resident"]
    for s in systems.values():
        s["sequences_per_s"] = args.batch / (s["median_ms"] / 1e3)
    # the load average says how much of the machine others were using meanwhile
    report(args, systems, dict(harness.environment(), **info, cpus=os.cpu_count(), loadavg=os.getloadavg()))


def report(args, systems: dict, env: dict):
    case = {k: getattr(args, k) for k in ("cell", "hidden", "inputs", "tau", "batch", "dtype", "repeats")}
    print(f"{args.cell} H={args.hidden} D={args.inputs} tau={args.tau} B={args.batch} {args.dtype}, "
          f"{env['cpus']} cores, load average {env['loadavg'][0]:.1f} at the end")
    print("| system | median ms | sequences/s | speed-up | first call ms | max rel err |")
    print("|---|---:|---:|---:|---:|---:|")
    base = systems["one process"]["median_ms"]
    for name, s in systems.items():
        print(f"| {name} | {s['median_ms']:.1f} | {s['sequences_per_s']:.0f} | {base / s['median_ms']:.2f} | "
              f"{s.get('first_call_ms', float('nan')):.0f} | {s.get('max_rel_err', 0):.1e} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{args.json}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"environment": env, "case": case, "systems": systems}, f, indent=1, default=float)
    os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
