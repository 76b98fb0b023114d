"""The adding problem (Hochreiter & Schmidhuber 1997): long-term dependencies.

Each sequence has T steps of two inputs: a value drawn from U[0, 1] and a
marker, 1 at two steps and 0 elsewhere; as in the original experiment, the
first marked step is one of the first 10 and the second one of the first
T/2 - 1.  After the last step the net must output the sum of the two marked
values.  Always answering 1 (the mean) scores MSE 1/6 = 0.167: the baseline.
Both values lie more than T/2 steps back, so a net whose gradients vanish
over that many steps (the Elman net) stays at the baseline, while gated cells
(LSTM, GRU) learn it: Goodfellow et al., §10.7 and §10.10.

    python examples/adding_problem.py --quick          # LSTM and Elman, a short run (about a minute)
    python examples/adding_problem.py --out runs --figure examples/figures/jacobian_adding.png
                                                       # Elman, LSTM and GRU: the README's numbers and figure

The models are examples/tasks/adding_{elman,lstm,gru}.rnn; trained params
and histories go to --out (`unfold plot RUN.json` draws a history), and the
figure of ||dh_T/dh_t|| at initialisation and after training to --figure.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import unfold as uf
from unfold.train import Batch, History, eval_loss, fit, optim, plot_jacobians, save

TASKS = Path(__file__).resolve().parent / "tasks"
BASELINE = 1 / 6   # the variance of the sum of two U[0, 1] values: the MSE of always answering 1


def adding_batch(T: int, B: int, rng: np.random.Generator) -> Batch:
    """B sequences [T, B, 2] and their targets [B, 1]."""
    x = np.zeros((T, B, 2), dtype=np.float32)
    x[:, :, 0] = rng.random((T, B))
    first = rng.integers(0, 10, B)              # the first marker: one of steps 1..10
    second = rng.integers(0, T // 2 - 2, B)     # the second: one of 1..T/2-1 other than the first
    second += second >= first
    cols = np.arange(B)
    x[first, cols, 1] = x[second, cols, 1] = 1.0
    y = (x[first, cols, 0] + x[second, cols, 0])[:, None]
    return Batch({"x": x}, {"y": y})


def train(name: str, args, held_out: Batch) -> tuple[dict, dict, History, float]:
    rec = uf.load(TASKS / f"adding_{name}.rnn").bind(H=args.hidden)
    fn = uf.compile(rec, target="cpu", dtype=np.float32)
    start = rec.init_params(seed=args.seed, dtype=np.float32)
    print(f"\n{name}: H={args.hidden}, T={args.T}, batch {args.batch}, {args.steps} steps")
    params, history = fit(fn, start, lambda rng: adding_batch(args.T, args.batch, rng), steps=args.steps,
                          optimizer=optim.Adam(optim.cosine_decay(args.lr, args.steps, args.lr / 10), clip=1.0),
                          eval_data=held_out, eval_every=max(1, args.steps // 20), seed=args.seed,
                          progress=False if args.progress == "none" else args.progress)
    mse = eval_loss(fn, params, held_out)   # the loss is mse(o[T], y): the mean squared error
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        save(args.out / f"adding_{name}.npz", params, rec, meta={"step": history.last_step, "mse": mse})
        history.save(args.out / f"adding_{name}.json")
    return start, params, history, mse


def jacobian_figure(results: dict, args, rng):
    """||dh_T/dh_t|| on 8 held-out sequences, each model at init and trained
    (what `unfold plot MODEL.rnn TRAINED.npz --jacobian --inputs adding_inputs.npz` draws)."""
    x = adding_batch(args.T, 8, rng).inputs["x"]
    if args.out:
        np.savez(args.out / "adding_inputs.npz", x=x)
    curves = {}
    for name, (start, params, _, _) in results.items():
        rec = uf.load(TASKS / f"adding_{name}.rnn").bind(H=args.hidden)
        for when, p in (("init", start), ("trained", params)):
            curves[f"{name} ({when})"] = uf.jacobian_norms(rec, {k: v.astype(np.float64) for k, v in p.items()},
                                                           {"x": x.astype(np.float64)}, state="h")
    plot_jacobians(curves, args.figure, title=f"Adding problem, T = {args.T}: how far back the gradient reaches")
    print(f"wrote {args.figure}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="LSTM and Elman, fewer steps (about a minute)")
    p.add_argument("--models", default=None, help="comma-separated from elman,lstm,gru")
    p.add_argument("--T", type=int, default=50)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", choices=["auto", "print", "none"], default="auto",
                   help="a tqdm bar if installed (auto), printed lines, or nothing")
    p.add_argument("--out", type=Path, default=None, help="folder for the trained params and histories")
    p.add_argument("--figure", type=Path, default=None, help="PNG of the Jacobian norms (needs matplotlib)")
    args = p.parse_args(argv)
    if args.T < 24:
        p.error("--T must be at least 24 (the second marker lies in the first T/2 - 1 steps, apart from the first)")
    quick = args.quick
    args.hidden = args.hidden or (32 if quick else 64)
    args.batch = args.batch or (32 if quick else 64)
    args.steps = args.steps or (3000 if quick else 4000)
    models = (args.models or ("lstm,elman" if quick else "elman,lstm,gru")).split(",")
    rng = np.random.default_rng(1000 + args.seed)
    held_out = adding_batch(args.T, 1000, rng)
    clock, results = time.perf_counter(), {}
    for name in models:
        results[name] = train(name, args, held_out)
    baseline = float(np.mean((held_out.targets["y"] - 1) ** 2))
    print(f"\nheld-out MSE on 1000 sequences of T = {args.T} (the baseline, always answering 1: {baseline:.4f} "
          f"on these, {BASELINE:.4f} in expectation)")
    for name, (_, _, history, mse) in results.items():
        verdict = "solved (< 0.05)" if mse < 0.05 else "at the baseline" if mse > 0.9 * baseline else "learning"
        print(f"  {name:<6} {mse:.4f}   {verdict}   ({history.seconds[-1]:.0f} s of training)")
    print(f"total {time.perf_counter() - clock:.0f} s")
    if args.figure:
        jacobian_figure(results, args, rng)


if __name__ == "__main__":
    main()
