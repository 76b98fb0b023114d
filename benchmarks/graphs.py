"""Graph-building benchmark: unfold the LSTM for tau = 10,000 steps and build
its gradient DAG (goals: under 5 s and under 10 s on the 2-core CI machine).

    python benchmarks/graphs.py [--tau 10000] [--model lstm] [--repeats 3]

Prints the median times and node/edge counts and writes
benchmarks/results/graphs.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import unfold as uf


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="lstm")
    ap.add_argument("--tau", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "graphs.json"))
    args = ap.parse_args(argv)
    rec = uf.load(uf.zoo_path(args.model))
    t_unfold, dag = timed(lambda: uf.unfold(rec, args.tau), args.repeats)
    t_grad, gg = timed(lambda: uf.grad_graph(dag), args.repeats)
    row = {"model": args.model, "tau": args.tau,
           "unfold_s": t_unfold, "unfold_nodes": dag.number_of_nodes(), "unfold_edges": dag.number_of_edges(),
           "grad_graph_s": t_grad, "grad_nodes": gg.number_of_nodes(), "grad_edges": gg.number_of_edges()}
    print(f"{args.model}, tau={args.tau}: unfold {t_unfold:.2f} s ({row['unfold_nodes']} nodes, "
          f"{row['unfold_edges']} edges, acyclic checked); gradient DAG {t_grad:.2f} s "
          f"({row['grad_nodes']} nodes, {row['grad_edges']} edges); median of {args.repeats}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
