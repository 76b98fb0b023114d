"""`unfold demo`: a tour on a built-in model, printing what each stage does.

1. the recurrence, checked (the LSTM of the zoo, small dims);
2. unfolded for a few steps: node counts, parameter sharing, acyclic;
3. the reference interpreter on random data;
4. BPTT by reverse traversal, checked against finite differences;
5. the circuit and unfolded pictures (graphviz), written to --out;
6. the step program, run by its numpy interpreter;
7. the compiled CPU kernels, checked against the reference and timed;
8. a short training run: an Elman net learns to predict a sine wave, with
   gradient clipping, using the compiled value_and_grad.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from ..compiler.driver import compile as compile_
from ..compiler.listing import listing
from ..compiler.passes import lower
from ..graph.bptt import clip_grad_norm, grad_graph, value_and_grad
from ..graph.unfolding import summary, unfold
from ..lang.dsl import load
from ..lang.zoo import zoo_path
from .gradcheck import gradcheck, random_run, table


def say(title: str):
    print(f"\n== {title} " + "=" * max(0, 70 - len(title)))


def main(args=None) -> int:
    out = Path(getattr(args, "out", None) or "demo-out")
    out.mkdir(parents=True, exist_ok=True)
    rec = load(zoo_path("lstm")).bind(H=16, D=4)
    say("1. the recurrence (unfold/zoo/lstm.rnn, bound to H=16, D=4)")
    print(rec.listing())
    _unfolded(rec)
    run = random_run(rec, 12, 3, seed=0)
    loss, grads = _reference(rec, run)
    say("5. pictures")
    _draw(rec, out)
    _program(rec, run, grads)
    _compiled(rec, run, loss, grads)
    say("8. training: an Elman net learns a sine wave (compiled BPTT, clipping)")
    _train()
    print(f"\ndone; pictures in {out}/")
    return 0


def _unfolded(rec):
    say("2. unfolded for tau = 4 steps")
    dag = unfold(rec, 4)
    print(summary(dag).split("parameter sharing")[0].rstrip())
    print(f"params appear once each; W_i is read by steps "
          f"{sorted({dag.nodes[v]['t'] for v in dag.successors('Wi')})}")


def _reference(rec, run):
    say("3. the reference interpreter (numpy, node by node)")
    params, inputs, targets, init = run
    T, B = inputs["x"].shape[:2]
    loss, grads = value_and_grad(rec, params, inputs, targets, init=init)
    gg = grad_graph(unfold(rec, T))
    print(f"loss = {loss:.6f} over T={T} steps, B={B} sequences; the gradient graph has "
          f"{gg.number_of_nodes()} nodes, grad:Ui sums {len(gg.nodes['grad:Ui']['inputs'])} contributions")
    say("4. BPTT checked against central finite differences (float64)")
    print(table(gradcheck(rec, params, inputs, targets, init=init)))
    return loss, grads


def _program(rec, run, grads):
    say("6. the step program: one step of the DAG, forward and backward, run by numpy")
    text = listing(lower(rec))
    print("\n".join(text.splitlines()[:3] + ["  ..."] + [ln for ln in text.splitlines() if "loop" in ln]))
    params, inputs, targets, init = run
    _, grads_p = compile_(rec, "numpy", np.float64).value_and_grad(params, inputs, targets, init=init)
    err = max(float(np.max(np.abs(grads_p[k] - grads[k]))) for k in grads)
    print(f"the numpy interpreter of the step program against the reference: max |grad diff| = {err:.1e}"
          "\n(all of it: unfold compile unfold/zoo/lstm.rnn --ir)")


def _compiled(rec, run, loss, grads):
    say("7. compiled CPU kernels (numba), against the reference")
    params, inputs, targets, init = run
    fn = compile_(rec, "cpu", np.float64)
    t0 = time.perf_counter()
    loss_c, grads_c = fn.value_and_grad(params, inputs, targets, init=init)
    first = time.perf_counter() - t0
    err = max(float(np.max(np.abs(grads_c[k] - grads[k]))) for k in grads)
    print(f"first call {first:.2f} s (generate + compile, or the disk cache); "
          f"|loss diff| = {abs(loss_c - loss):.1e}, max |grad diff| = {err:.1e}")
    fn32 = compile_(rec.bind(H=64, D=16), "cpu", np.float32)
    p32, x32, y32, _ = random_run(fn32.rec, 1000, 16, seed=1, dtype=np.float32)
    fn32.value_and_grad(p32, x32, y32)
    t0 = time.perf_counter()
    for _ in range(3):
        fn32.value_and_grad(p32, x32, y32)
    print(f"LSTM H=64, batch 16, 1000 steps, float32: forward+backward "
          f"{(time.perf_counter() - t0) / 3 * 1e3:.1f} ms")


def _draw(rec, out: Path):
    try:
        from .. import viz
    except ImportError as e:  # pragma: no cover - viz ships with the package
        print(f"(no pictures: {e})")
        return
    views = [("circuit", 3), ("unfolded", 3), ("cell", 3)]
    fmt = "svg" if shutil.which("dot") else "dot"
    for view, tau in views:
        path = out / f"lstm_{view}.{fmt}"
        viz.save(viz.draw(rec, view=view, tau=tau), path)
        print(f"wrote {path}")
    if fmt == "dot":
        print("(Graphviz's `dot` is not installed: wrote .dot sources; apt-get install graphviz)")


def _train(steps: int = 150):
    rec = load(zoo_path("elman")).bind(H=16, D=1, K=1)
    fn = compile_(rec, "cpu", np.float64)
    rng = np.random.default_rng(0)
    params = rec.init_params(seed=0)
    T, B = 40, 8
    phase = rng.uniform(0, 2 * np.pi, (1, B, 1))
    t = np.arange(T + 1)[:, None, None] * 0.3 + phase
    x, y = np.sin(t[:-1]), np.sin(t[1:])  # predict the next value
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for step in range(1, steps + 1):
        loss, grads = fn.value_and_grad(params, {"x": x}, {"y": y})
        grads, norm = clip_grad_norm({k: grads[k] for k in params}, 5.0)
        for k in params:  # Adam
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            params[k] = params[k] - 0.01 * (m[k] / (1 - 0.9 ** step)) / (np.sqrt(v[k] / (1 - 0.999 ** step)) + 1e-8)
        if step in (1, 25, 50, 100, steps):
            print(f"step {step:>4}: loss {loss:.5f}  grad norm {norm:.3f}")
