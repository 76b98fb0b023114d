"""Where a compiled CPU call spends its time outside the step loops (issue 11).

    python benchmarks/host.py                      # the five LSTM cases, 9 rounds
    python benchmarks/host.py --rounds 15 --json out.json --cases 16,1024,20 1,16,1

Per case (LSTM, D = H, float32, one thread): the whole `fn.value_and_grad`
and `fn(params, inputs)`, and the phases of a value_and_grad replayed as the
driver runs them: checking the arrays (`check`), laying out the buffers
(`prepare`: before issue 11's follow-up this packed W and W^T on the host),
the forward and backward kernels (`fwd`, `bwd`: both pack their step's
weights into panels first), the adjoints' zeroing and seeding (`adjoints`)
and copying the gradients out (`grads`); and `pack`: the kernels' packing
of the step weights alone.  All are timed in turns, one call each per round;
medians in ms.  It reaches into `Compiled` (`_prepare`, `kernels`): a
measuring tool, not an interface.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

CASES = [(16, 1024, 20), (16, 256, 300), (64, 16, 1000), (1, 64, 1000), (1, 16, 1)]


def _timer(fn):
    def timed():
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return timed


def _pack_probe(fn, program, bufs):
    """The kernels' packing of the step weights, alone (whichever way this version packs)."""
    from unfold.backends.numba_cpu import helpers
    kern = fn.kernels(program, 1)
    pack = getattr(kern, "pack_all", None)
    if pack is not None:   # packing in a routine of its own, into reused panels
        return lambda: pack(bufs)
    names = [a for f in ("forward", "backward") for a in kern.args[f] if a.startswith(("W_M", "WT_M"))]
    return lambda: [helpers._panels(bufs[n]) for n in names]


def measure(B: int, H: int, T: int, rounds: int) -> dict:
    import unfold as uf
    from unfold.compiler import layout
    from unfold.graph.runargs import RunArgs
    from unfold.tools.gradcheck import random_run
    rec = uf.load(uf.zoo_path("lstm")).bind(H=H, D=H)
    p, x, y, _ = random_run(rec, T, B, 0, np.float32)
    fn = uf.compile(rec, "cpu", np.float32)
    run, program, bufs, _ = fn._prepare(p, x, y, None, None, None, None)
    kern = fn.kernels(program, T)
    ws = fn.workspace()
    state = {}

    def check():
        state["run"] = RunArgs.check(rec, p, x, y, None, None, None, None, strict=True, dtype=fn.dtype)

    def prepare():
        state["bufs"] = layout.prepare(program, run, ws)

    def fwd():
        kern.forward(T, B, 0, state["bufs"])

    def adjoints():
        state["d"] = layout.adjoints(program, state["bufs"], run, ws)

    def bwd():
        kern.backward(T, B, 0, {**state["bufs"], **state["d"]})

    def grads():
        fn.backend.gradients(program, state["d"], None, run)

    phases = {"check": check, "prepare": prepare, "fwd": fwd, "adjoints": adjoints, "bwd": bwd, "grads": grads}
    calls = {"value_and_grad": lambda: fn.value_and_grad(p, x, y), "call": lambda: fn(p, x),
             "pack": _pack_probe(fn, program, bufs)}
    timers = {k: _timer(f) for k, f in {**calls, **phases}.items()}
    for _ in range(2):   # compile, first-touch
        for t in timers.values():
            t()
    samples = {k: [] for k in timers}
    for _ in range(rounds):
        for k, t in timers.items():
            samples[k].append(t())
    med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
    med["host"] = med["value_and_grad"] - med["fwd"] - med["bwd"]   # around the kernels
    return med


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--json")
    ap.add_argument("--cases", nargs="*", help="B,H,tau ...")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.harness import configure_threads
    configure_threads(1)
    cases = [tuple(map(int, c.split(","))) for c in a.cases] if a.cases else CASES
    out = {"load": os.getloadavg(), "cases": {}}
    cols = ["value_and_grad", "call", "host", "check", "prepare", "fwd", "bwd", "pack", "adjoints", "grads"]
    print(f"load average {out['load'][0]:.2f}; medians of {a.rounds}, ms")
    print("B, H, tau      " + " ".join(f"{c:>14}" for c in cols))
    for case in cases:
        m = measure(*case, a.rounds)
        out["cases"][",".join(map(str, case))] = m
        print(f"{str(case):<14} " + " ".join(f"{m[c]:14.3f}" for c in cols), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
