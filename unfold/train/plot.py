"""Curves of training runs and of vanishing gradients, with matplotlib (the
`plot` extra: pip install 'unfold-rnn[plot]').

    plot_histories({"lstm": h1, "elman": h2}, "curves.png")       # loss and gradient norm per step
    plot_jacobians({"elman": norms_e, "lstm": norms_l}, "jacobian.png")   # |dh_T/dh_t| over t

Figures are made without pyplot (matplotlib.figure.Figure), so no window
system is touched and nothing global changes; each function returns the
Figure, saved to `path` when one is given.
"""
from __future__ import annotations

import numpy as np

from ..lang.errors import InputError
from ..lang.extras import require


def _figure(what: str, panels: int, width: float = 6.0):
    figure = require("matplotlib.figure", "plot", what)
    fig = figure.Figure(figsize=(width * panels, 4.0), layout="constrained")
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def plot_histories(histories: dict, path=None, smooth: int | None = None):
    """Training loss (and held-out loss, dashed) and gradient norm against
    the step, one colour per run; `smooth`: a moving mean over that many steps
    (default: about a hundredth of the run)."""
    if not isinstance(histories, dict) or not histories:
        raise InputError("plot_histories takes a dict label -> History")
    fig, (ax_loss, ax_norm) = _figure("plotting a training history", 2)
    for i, (label, h) in enumerate(histories.items()):
        colour, name = f"C{i}", label or None
        k = smooth or max(1, len(h.step) // 100)
        if h.step:
            ax_loss.plot(h.step, _moving_mean(h.loss, k), color=colour, label=name and f"{name} (train)")
            ax_norm.plot(h.step, _moving_mean(h.grad_norm, k), color=colour, label=name)
        if h.eval_step:
            ax_loss.plot(h.eval_step, h.eval_loss, "--o", color=colour, markersize=3,
                         label=f"{name} (held out)" if name else "held out")
    _axes(ax_loss, "step", "loss", log=_positive(histories, "loss"))
    _axes(ax_norm, "step", "gradient norm (before clipping)", log=_positive(histories, "grad_norm"))
    return _done(fig, path)


def plot_jacobians(curves: dict, path=None, title: str | None = None):
    """|| d h[T] / d h[t] ||_2 against t, one line per label: `curves` maps a
    label to `uf.jacobian_norms`'s [T, B] array (the median over the
    sequences is drawn) or to a [T] array.  Labels that share their first
    word ("lstm (init)", "lstm (trained)") share a colour; "init" is dashed."""
    if not isinstance(curves, dict) or not curves:
        raise InputError("plot_jacobians takes a dict label -> [T, B] or [T] array of norms")
    fig, (ax,) = _figure("plotting Jacobian norms", 1, width=7.0)
    colours: dict[str, str] = {}
    for label, norms in curves.items():
        colour = colours.setdefault(label.split(" ")[0], f"C{len(colours)}")
        norms = np.asarray(norms, dtype=float)
        line = np.median(norms, axis=1) if norms.ndim == 2 else norms
        if line.ndim != 1:
            raise InputError(f"the norms of {label!r} must be [T, B] or [T], not {list(norms.shape)}")
        style = "--" if "init" in label else "-"
        ax.plot(np.arange(1, len(line) + 1), np.maximum(line, 1e-30), style, color=colour, label=label)
    _axes(ax, "step t", "|| dh[T] / dh[t] ||  (median over sequences)", log=True)
    ax.set_title(title or "How far back the gradient reaches")
    return _done(fig, path)


def _moving_mean(values, k: int) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if k <= 1 or len(v) < k:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    head = c[1:k] / np.arange(1, k)                 # the first k-1 steps: the mean so far
    return np.concatenate([head, (c[k:] - c[:-k]) / k])


def _positive(histories: dict, field: str) -> bool:
    return all(x > 0 for h in histories.values() for x in getattr(h, field))


def _axes(ax, xlabel: str, ylabel: str, log: bool):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def _done(fig, path):
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
