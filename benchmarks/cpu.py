"""The CPU benchmark: unfold's compiled kernels against the peers installed.

    python benchmarks/cpu.py                 # the issue's table, plus compile times and memory
    python benchmarks/cpu.py --grid full     # cells x B {1,16,64} x H {16..1024} x tau {100,1000}
    python benchmarks/cpu.py --cases lstm:16:64:1000,gru:1:16:100

Systems, one thread each, float32, the same random problem for everyone:
unfold (uf.compile, target cpu), numpy (a loop with hand-written BPTT),
torch (nn.RNN/nn.LSTM/nn.GRU), torch-loop (the cell as a PyTorch loop), jax
(lax.scan under jit), and `floor`: only the matmuls of the cell (the input
GEMM, one h @ W per step forward and one per step backward, the two weight
gradient GEMMs), timed alone with numpy.  Every system's gradient is checked
against the numpy BPTT in float64 (max_rel_err).  Prints markdown tables and
writes benchmarks/results/cpu.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.harness import (Case, System, configure_threads, environment,  # noqa: E402
                                describe_environment, format_first_calls, format_table,
                                run_grid, write_json)

ISSUE = ["elman:16:64:1000", "elman:16:1024:100", "lstm:1:64:1000", "lstm:16:64:1000",
         "lstm:16:256:1000", "lstm:16:1024:100", "gru:16:64:1000", "softsign:16:64:1000",
         "lstm:1:16:1000", "lstm:64:16:1000", "gru:1:64:1000", "softsign:1:64:1000"]
GATES = {"elman": 1, "lstm": 4, "gru": 3, "softsign": 2}


def model(cell: str, H: int, D: int):
    import unfold as uf
    path = HERE / "models" / "elman.rnn" if cell == "elman" else uf.zoo_path(cell)
    return uf.load(path).bind(H=H, D=D)


def unfold_system(target: str = "cpu", name: str = "unfold", **options) -> System:
    """unfold as a benchmark system: each (cell, H, D) compiled once (`options`: uf.compile's)."""
    import numpy as np
    import unfold as uf
    compiled = {}

    def factory(case: Case):
        key = (case.cell, case.H, case.D)
        if key not in compiled:
            compiled[key] = uf.compile(model(*key), target=target, dtype=np.float32, **options)
        fn = compiled[key]
        return (lambda p, x, y: fn.loss(p, {"x": x}, {"y": y}),
                lambda p, x, y: fn.value_and_grad(p, {"x": x}, {"y": y}))
    return System(name, factory, "rss")


def floor_system() -> System:
    """The matmuls alone: what no implementation of the cell can avoid."""
    import numpy as np

    def factory(case: Case):
        g = GATES[case.cell]
        H, D, T, B = case.H, case.D, case.tau, case.B
        rng = np.random.default_rng(0)
        Wx = rng.standard_normal((D, g * H)).astype(np.float32)
        Wh = rng.standard_normal((H, g * H)).astype(np.float32)
        h = np.zeros((B, H), np.float32)
        dA = np.zeros((T, B, g * H), np.float32)
        hs = np.zeros((T, B, H), np.float32)

        def fwd(p, x, y):
            x.reshape(T * B, D) @ Wx
            for _ in range(T):
                h @ Wh
            return 0.0

        def fwd_bwd(p, x, y):
            fwd(p, x, y)
            for t in range(T):
                dA[t] @ Wh.T
            dA.reshape(T * B, -1).T @ hs.reshape(T * B, H)
            dA.reshape(T * B, -1).T @ x.reshape(T * B, D)
            dA.reshape(T * B, -1) @ Wx.T
            return 0.0, {}
        return fwd, fwd_bwd
    return System("floor", factory, "tracemalloc")


def compile_times(taus=(10, 1000, 100_000), cell="lstm", H=64) -> list[dict]:
    """Cold (empty unfold and numba caches) and warm (a new process, caches
    filled) time to a first forward+backward, in a fresh process each."""
    script = f"""
import time, numpy as np, sys
t0 = time.perf_counter()
import unfold as uf
sys.path.insert(0, {str(HERE.parent)!r})
from benchmarks.cpu import model
from unfold.tools.gradcheck import random_run
rec = model({cell!r}, {H}, {H})
p, x, y, _ = random_run(rec, TAU, 1, 0, np.float32)
t1 = time.perf_counter()
fn = uf.compile(rec, "cpu", np.float32)
fn.value_and_grad(p, x, y)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1, fn.cache_hits)
"""
    rows = []
    for tau in taus:
        with tempfile.TemporaryDirectory() as d:
            env = {**os.environ, "UNFOLD_CACHE_DIR": d, "NUMBA_CACHE_DIR": d}
            row = {"cell": cell, "H": H, "tau": tau}
            for label in ("cold", "warm"):
                out = subprocess.run([sys.executable, "-c", script.replace("TAU", str(tau))], env=env,
                                     capture_output=True, text=True, check=True).stdout.split()
                row[label] = {"import_s": float(out[0]), "compile_and_first_call_s": float(out[1]),
                              "cache_hits": int(out[2])}
            rows.append(row)
    return rows


def parse_cases(text: str) -> list[Case]:
    cases = []
    for part in text.split(","):
        cell, B, H, T = part.split(":")
        cases.append(Case(cell, int(B), int(H), int(T)))
    return cases


def full_grid() -> list[Case]:
    return [Case(c, B, H, T) for c in GATES for H in (16, 64, 256, 1024) for B in (1, 16, 64)
            for T in (100, 1000)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", choices=["issue", "full"], default="issue")
    ap.add_argument("--cases", help="cell:B:H:tau,... instead of a grid")
    ap.add_argument("--peers", default="numpy,torch,torch-loop,jax,floor")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--max-seconds", type=float, default=20.0, help="time budget per system and case")
    ap.add_argument("--no-compile-times", action="store_true")
    ap.add_argument("--json", default=str(HERE / "results" / "cpu.json"))
    args = ap.parse_args(argv)

    info = configure_threads(args.threads)       # before jax is imported
    from benchmarks.peers import peer_systems
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    names = [n for n in args.peers.split(",") if n]
    systems = [unfold_system()] + peer_systems([n for n in names if n != "floor"])
    if "floor" in names:
        systems.append(floor_system())
    cases = parse_cases(args.cases) if args.cases else (
        parse_cases(",".join(ISSUE)) if args.grid == "issue" else full_grid())
    env = environment()
    env["notes"] = env.get("notes", []) + info["notes"]
    print(describe_environment(env), flush=True)
    t0 = time.time()
    results = run_grid(systems, cases, repeats=args.repeats, memory=True, max_seconds=args.max_seconds,
                       log=lambda s: print(s, flush=True))
    print(f"\nforward and forward+backward, median ms ({time.time() - t0:.0f} s):\n")
    print(format_table(results, baseline="unfold"))
    print("\nfirst calls (compile) and peak memory of forward+backward:\n")
    print(format_first_calls(results))
    extra = {}
    if not args.no_compile_times:
        extra["compile_times"] = compile_times()
        print("\ncompile time to a first forward+backward, LSTM H=64 (fresh process each):")
        for r in extra["compile_times"]:
            print(f"  tau={r['tau']:>6}: cold {r['cold']['compile_and_first_call_s']:.2f} s, "
                  f"warm {r['warm']['compile_and_first_call_s']:.3f} s (cache hits {r['warm']['cache_hits']})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, results, {**env, **extra})
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
