"""`unfold plot`: curves of training runs, or of gradients vanishing.

    unfold plot RUN.json [RUN2.json ...] [-o curves.png]         loss and gradient norm per step
    unfold plot MODEL [MODEL ...] --jacobian [-o jacobian.png]   ||dh[T]/dh[t]|| over t

A RUN is a history written by `History.save` (the examples write them).  For
--jacobian a MODEL is a `.rnn` file (its params initialised from --seed) or
params saved by `uf.save` (the model and its trained params); every model
reads the same inputs: --inputs FILE.npz (arrays by input name) or N(0, 1)
noise of --tau steps and --batch sequences.  Needs matplotlib:
pip install 'unfold-rnn[plot]'.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..graph.bptt import jacobian_norms
from ..lang.dsl import load
from ..lang.ir import Role
from ..lang.extras import require
from ..train.history import History
from ..train.io import load_model
from ..train.plot import plot_histories, plot_jacobians
from . import argtypes


def add_arguments(parser):
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="histories (.json), or with --jacobian models (.rnn) or saved params (.npz)")
    parser.add_argument("--jacobian", action="store_true", help="plot ||dh[T]/dh[t]|| over t for each model")
    parser.add_argument("-o", "--out", default=None, help="the picture (.png, .svg, .pdf); "
                        "default history.png, or jacobian.png with --jacobian")
    parser.add_argument("--state", default=None, help="the state to differentiate (default: the first)")
    parser.add_argument("--tau", type=argtypes.positive, default=50, help="steps of the random inputs")
    parser.add_argument("--batch", type=argtypes.positive, default=8, help="sequences of the random inputs")
    parser.add_argument("--seed", type=argtypes.natural, default=0, help="seed of the inputs and of fresh params")
    parser.add_argument("--dims", type=argtypes.dims_entries, action="append", metavar="NAME=N[,NAME=N...]",
                        help="dims of .rnn models, e.g. H=64,D=2 (may be repeated)")
    parser.add_argument("--inputs", default=None, help="an .npz of input arrays [T, B, n] by name")
    parser.add_argument("--title", default=None)


def run(args) -> int:
    require("matplotlib.figure", "plot", "unfold plot")   # before minutes of Jacobians, not after
    if args.jacobian:
        out = args.out or "jacobian.png"
        curves = {}
        for name, rec, params in _models(args):
            inputs = _inputs(rec, args)
            curves[name] = jacobian_norms(rec, params, inputs, state=args.state)
        plot_jacobians(curves, out, title=args.title)
    else:
        out = args.out or "history.png"
        plot_histories({Path(f).stem: History.load(f) for f in args.files}, out)
    print(f"wrote {out}")
    return 0


def _models(args):
    """(label, recurrence, float64 params) for each file."""
    dims = argtypes.dims(args.dims)
    for f in args.files:
        if f.endswith(".npz"):
            rec, params = load_model(f)
            label = f"{Path(f).stem} (trained)"
        else:
            rec = load(f)
            rec = rec.bind(**{k: v for k, v in dims.items() if k in rec.dim_decls}) if dims else rec
            params, label = rec.init_params(seed=args.seed), f"{rec.name} (init)"
        yield label, rec, {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}


def _inputs(rec, args) -> dict:
    """The inputs every model reads: from --inputs, else seeded N(0, 1) noise."""
    if args.inputs:
        with np.load(args.inputs, allow_pickle=False) as z:
            given = {k: z[k].astype(np.float64) for k in z.files}
        return {s.name: given[s.name] for s in rec.of_role(Role.INPUT) if s.name in given}
    rng = np.random.default_rng(args.seed)   # the same seed for every model: the same noise
    return {s.name: rng.standard_normal(((args.tau,) if s.timed else ()) + (args.batch,) + s.shape)
            for s in rec.of_role(Role.INPUT)}

