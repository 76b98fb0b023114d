"""Recovering the parameters of the Lorenz system from a noisy trajectory.

The recurrence is examples/tasks/lorenz.rnn: one RK4 step of Lorenz-63 per
step, with sigma, rho, beta and the initial point as params.  A trajectory
of the true system (sigma = 10, rho = 28, beta = 8/3), observed with Gaussian
noise, is the target; BPTT through the whole rollout gives the gradient of
the mean squared error with respect to all six numbers.  Chaos makes the loss
of a long rollout a landscape of narrow valleys, so the fit follows a
horizon curriculum: the first 25 steps, then 50, 100, ... up to the whole
trajectory, each stage starting from the last one's params, with a learning
rate that shrinks as the horizon grows (the valleys narrow as the
trajectory's sensitivity to the params grows).

    python examples/lorenz_fit.py                  # about a minute
    python examples/lorenz_fit.py --no-curriculum  # the whole horizon at once, from the same start
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import unfold as uf
from unfold.train import Batch, History, fit, optim

HERE = Path(__file__).resolve().parent
TRUE = {"sigma": 10.0, "rho": 28.0, "beta": 8 / 3}


def observed(steps: int, noise: float, seed: int):
    """The true system from a point on its attractor, and that trajectory plus noise: [steps, 1, 3] each."""
    rec = uf.load(HERE / "tasks" / "lorenz.rnn")
    fn = uf.compile(rec, target="cpu", dtype=np.float64)
    params = rec.init_params()        # the true sigma, rho, beta; the initial point (1, 1, 1)
    burn = fn(params, tau=1000, batch=1)          # 10 time units onto the attractor
    start = {k: burn[k][-1, 0] for k in "XYZ"}
    params.update({f"{k}0": v for k, v in start.items()})
    run = fn(params, tau=steps, batch=1)
    clean = np.concatenate([run["X"], run["Y"], run["Z"]], axis=-1)
    rng = np.random.default_rng(seed)
    return params, clean, clean + noise * rng.standard_normal(clean.shape)


def stage(fn, params, y, steps: int, lr: float, history: History, quiet: bool):
    """Fit on the first len(y) steps of the trajectory."""
    return fit(fn, params, Batch({}, {"y": np.ascontiguousarray(y)}), steps=steps,
               optimizer=optim.Adam(optim.cosine_decay(lr, steps, lr / 10), clip=100.0),
               history=history, progress=False if quiet else "auto")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=800, help="length of the observed trajectory (dt = 0.01)")
    p.add_argument("--noise", type=float, default=1.0, help="standard deviation of the observation noise")
    p.add_argument("--per-stage", type=int, default=300, help="Adam steps per horizon")
    p.add_argument("--lr", type=float, default=0.1, help="Adam's learning rate at the first horizon")
    p.add_argument("--no-curriculum", action="store_true", help="fit the whole horizon from the start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    clock = time.perf_counter()
    truth, clean, y = observed(args.steps, args.noise, args.seed)
    rec = uf.load(HERE / "tasks" / "lorenz.rnn")
    fn = uf.compile(rec, target="cpu", dtype=np.float64)
    guess = {"sigma": 6.0, "rho": 20.0, "beta": 1.5}     # a third off, or more
    params = {**{k: np.array([v]) for k, v in guess.items()},
              **{f"{k}0": np.array([y[0, 0, i]]) for i, k in enumerate("XYZ")}}   # the first observation
    curriculum = [h for h in (25, 50, 100, 200, 400) if h < args.steps] + [args.steps]
    horizons = [args.steps] if args.no_curriculum else curriculum
    history = History()
    for h in horizons:
        steps = args.per_stage * (len(curriculum) if args.no_curriculum else 1)   # the same budget either way
        lr = args.lr * min(1.0, horizons[0] / h) if not args.no_curriculum else args.lr
        params, history = stage(fn, params, y[:h], steps, lr, history, args.quiet)
        print(f"horizon {h:>4}: loss {history.loss[-1]:8.4f}   " + "  ".join(
            f"{k} {params[k][0]:7.4f}" for k in TRUE))
    print(f"\nrecovered from {args.steps} steps observed with noise {args.noise} "
          f"({'one stage' if args.no_curriculum else f'{len(horizons)} horizons'}, {history.last_step} Adam steps):")
    for k, v in TRUE.items():
        print(f"  {k:<6} {params[k][0]:9.4f}   true {v:.4f}   error {abs(params[k][0] - v) / v:.2%}")
    fitted = fn(params, tau=args.steps, batch=1)
    path = np.concatenate([fitted["X"], fitted["Y"], fitted["Z"]], axis=-1)
    print(f"RMS distance of the fitted rollout from the clean trajectory: {np.sqrt(np.mean((path - clean) ** 2)):.4f}"
          f"  (the noise: {args.noise})")
    print(f"total {time.perf_counter() - clock:.1f} s")


if __name__ == "__main__":
    main()
