"""The CPU benchmark: unfold's compiled kernels against the peers installed.

    python benchmarks/cpu.py                 # the issue's table, plus compile times and memory
    python benchmarks/cpu.py --quick         # LSTM at every B {1,16,64} x H {16..1024}, the other
                                             # cells at two sizes, short tau: a few minutes
    python benchmarks/cpu.py --grid full     # cells x B {1,16,64} x H {16..1024} x tau {100,1000}
    python benchmarks/cpu.py --cases lstm:16:64:1000,gru:1:16:100

Every invocation runs twice, under two BLAS settings: with the environment
as it is, then in a subprocess with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
removed (or, where neither was set, with OPENBLAS_CORETYPE=Haswell, so that
the second run loads numpy's other OpenBLAS kernel); `--one-blas` runs once.
Each run prints the BLAS kernel numpy loaded (threadpoolctl), the peak
(unfold's micro-kernels on a 2048^3 float32 GEMM, benchmarks/gemm.py), the
tables, and per case unfold's GFLOP/s and the goals it meets (goals.py).

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
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.goals import goals_table, summary  # noqa: E402
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


def quick_grid() -> list[Case]:
    """LSTM at every size of the issue's grid, the other cells at H = 64 and 256 (B = 16);
    tau short enough that a case takes seconds: 200 steps, 100 at H = 256, 20 at H = 1024."""
    tau = {16: 200, 64: 200, 256: 100, 1024: 20}
    lstm = [Case("lstm", B, H, tau[H]) for H in tau for B in (1, 16, 64)]
    return lstm + [Case(c, 16, H, tau[H]) for c in ("elman", "gru", "softsign") for H in (64, 256)]


#: the environment variables that pick numpy's OpenBLAS kernel
BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def other_blas_env() -> tuple[dict, str]:
    """The second run's environment, and what it changed."""
    env = dict(os.environ)
    set_here = [v for v in BLAS_VARS if v in env]
    if set_here:
        for v in set_here:
            del env[v]
        return env, "without " + " and ".join(set_here)
    env["OPENBLAS_CORETYPE"] = "Haswell"
    return env, "with OPENBLAS_CORETYPE=Haswell (neither variable was set)"


def blas_kernel(env: dict) -> str:
    return ", ".join(f"{b.get('internal_api')} {b.get('version')} kernel={b.get('architecture')}"
                     for b in env.get("blas", []) if b.get("user_api") == "blas") or "unknown"


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", choices=["issue", "full"], default="issue")
    ap.add_argument("--quick", action="store_true", help="a small grid, torch and jax only, a few minutes")
    ap.add_argument("--cases", help="cell:B:H:tau,... instead of a grid")
    ap.add_argument("--peers", default=None, help="default numpy,torch,torch-loop,jax,floor (--quick: torch,jax)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=None, help="default 7 (--quick: 5)")
    ap.add_argument("--max-seconds", type=float, default=20.0, help="time budget per system and case")
    ap.add_argument("--no-compile-times", action="store_true")
    ap.add_argument("--one-blas", action="store_true", help="only the environment as it is")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="default results/cpu.json (--quick: results/cpu-quick.json)")
    args = ap.parse_args(argv)
    args.json = args.json or str(HERE / "results" / ("cpu-quick.json" if args.quick else "cpu.json"))
    args.peers = args.peers or ("torch,jax" if args.quick else "numpy,torch,torch-loop,jax,floor")
    args.repeats = args.repeats or (5 if args.quick else 7)
    return args


def run_once(args) -> dict:
    """One run under the BLAS numpy loaded here: the tables printed, the results returned."""
    info = configure_threads(args.threads)       # before jax is imported
    from benchmarks.gemm import peak
    from benchmarks.peers import peer_systems
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    names = [n for n in args.peers.split(",") if n]
    systems = [unfold_system()] + peer_systems([n for n in names if n != "floor"])
    if "floor" in names:
        systems.append(floor_system())
    cases = (parse_cases(args.cases) if args.cases else quick_grid() if args.quick else
             parse_cases(",".join(ISSUE)) if args.grid == "issue" else full_grid())
    env = environment()
    env["threads"], env["notes"] = args.threads, env.get("notes", []) + info["notes"]
    env["peak_gflops"] = top = peak()
    print(f"\n## BLAS: {blas_kernel(env)}\n\n{describe_environment(env)}\n"
          f"peak: {top:.1f} GFLOP/s float32 (unfold's micro-kernels, 2048^3, best of 5; measured again after the grid)\n", flush=True)
    t0 = time.time()
    results = run_grid(systems, cases, repeats=args.repeats, memory=not args.quick,
                       max_seconds=args.max_seconds, log=lambda s: print(s, flush=True))
    env["peak_gflops"] = top = max(top, peak())   # again: a load on the machine lowers one measurement
    print(f"\nforward and forward+backward, median ms ({time.time() - t0:.0f} s; BLAS {blas_kernel(env)}):\n")
    print(format_table(results, baseline="unfold"))
    print(f"\ngoals (peak {top:.1f} GFLOP/s; BLAS {blas_kernel(env)}):\n")
    print(goals_table(results, top))
    if not args.quick:
        print("\nfirst calls (compile) and peak memory of forward+backward:\n")
        print(format_first_calls(results))
    env["goals"] = summary(results, top)
    if not args.no_compile_times and not args.quick and not args.child:
        env["compile_times"] = compile_times()
        print("\ncompile time to a first forward+backward, LSTM H=64 (fresh process each):")
        for r in env["compile_times"]:
            print(f"  tau={r['tau']:>6}: cold {r['cold']['compile_and_first_call_s']:.2f} s, "
                  f"warm {r['warm']['compile_and_first_call_s']:.3f} s (cache hits {r['warm']['cache_hits']})")
    return {"environment": env, "results": results}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    run = run_once(args)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    if args.child or args.one_blas:
        write_json(args.json, run["results"], run["environment"])
        print(f"\nwrote {args.json}")
        return
    env, change = other_blas_env()
    print(f"\n# the same again in a subprocess, {change}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        other = Path(d) / "other.json"
        subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--child", "--json", str(other)],
                       env=env, check=True)
        write_json(args.json, run["results"], run["environment"])
        data = {"runs": [json.loads(Path(args.json).read_text()), json.loads(other.read_text())]}
    Path(args.json).write_text(json.dumps(data, indent=1))
    print(f"\nwrote {args.json} (both runs)")


if __name__ == "__main__":
    main()
