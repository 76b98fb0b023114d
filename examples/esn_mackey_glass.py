"""An echo-state network predicts the Mackey-Glass series one step ahead.

Mackey-Glass (tau = 17) is the echo-state benchmark: a chaotic delay
equation,  dx/dt = 0.2 x(t - 17) / (1 + x(t - 17)^10) - 0.1 x(t),  sampled
once per time unit.  The reservoir (examples/tasks/esn.rnn) is fixed; the
compiled forward pass gives its states and `ridge_readout` fits the linear
readout in closed form (Goodfellow et al., §10.8): no gradient at all.  The
ridge penalty is chosen on a validation block; the score is the one-step
NRMSE on held-out steps (the RMSE over the series' standard deviation).

    python examples/esn_mackey_glass.py            # a few seconds
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import unfold as uf
from unfold.train import ridge_readout

HERE = Path(__file__).resolve().parent


def mackey_glass(n: int, tau: float = 17.0, dt: float = 0.1, every: int = 10, discard: int = 1000, seed: int = 0):
    """n samples, one per `every` steps of RK4 with step dt; the delayed value
    at a half step is the mean of its neighbours."""
    rng = np.random.default_rng(seed)
    lag = int(round(tau / dt))
    total = (n + discard) * every
    x = np.empty(total + lag)
    x[:lag] = 1.2 + 0.1 * rng.uniform(-1, 1)   # a constant history before t = 0

    def f(now, delayed):
        return 0.2 * delayed / (1 + delayed ** 10) - 0.1 * now
    for i in range(lag, total + lag - 1):
        d0, d1 = x[i - lag], x[i - lag + 1]
        dh = (d0 + d1) / 2
        k1 = f(x[i], d0)
        k2 = f(x[i] + dt / 2 * k1, dh)
        k3 = f(x[i] + dt / 2 * k2, dh)
        k4 = f(x[i] + dt * k3, d1)
        x[i + 1] = x[i] + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[lag::every][discard:discard + n]


def nrmse(prediction, target) -> float:
    return float(np.sqrt(np.mean((prediction - target) ** 2)) / np.std(target))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=400, help="reservoir units")
    p.add_argument("--train", type=int, default=4000, help="steps to fit the readout on")
    p.add_argument("--valid", type=int, default=1000, help="steps to choose the ridge penalty on")
    p.add_argument("--test", type=int, default=1000, help="held-out steps")
    p.add_argument("--washout", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    clock = time.perf_counter()
    n = args.train + args.valid + args.test
    series = mackey_glass(n + 1, seed=args.seed)
    x, y = (series[:-1] - 0.9)[:, None, None], series[1:][:, None, None]     # [T, 1, 1]: predict the next value
    rec = uf.load(HERE / "tasks" / "esn.rnn").bind(H=args.hidden)
    fn = uf.compile(rec, target="cpu", dtype=np.float64)
    params = rec.init_params(seed=args.seed)
    states = fn(params, {"x": np.ascontiguousarray(x)})["h"]               # [T, 1, H], one forward pass
    a, b = args.train, args.train + args.valid
    scores = {}
    for alpha in (1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2):
        V, c = ridge_readout(states[:a], y[:a], alpha=alpha, washout=args.washout)
        scores[alpha] = nrmse(states[a:b] @ V.T + c, y[a:b])
    alpha = min(scores, key=scores.get)
    V, c = ridge_readout(states[:b], y[:b], alpha=alpha, washout=args.washout)   # refit on train + validation
    params = {**params, "V": V, "c": c}
    out = fn(params, {"x": np.ascontiguousarray(x)}, {"y": np.ascontiguousarray(y)})
    assert np.allclose(out["o"], states @ V.T + c), "the compiled readout is the ridge readout"
    test = nrmse(out["o"][b:], y[b:])
    print(f"Mackey-Glass (tau 17), {n} steps; reservoir of {args.hidden} units, spectral radius 0.95")
    print("validation NRMSE by ridge penalty: " + ", ".join(f"{k:g}: {v:.2e}" for k, v in scores.items()))
    print(f"one-step NRMSE on {args.test} held-out steps: {test:.2e}  (alpha {alpha:g}; "
          f"always predicting the last value: {nrmse(series[b:-1], series[b + 1:]):.2e})")
    print(f"total {time.perf_counter() - clock:.1f} s")


if __name__ == "__main__":
    main()
