"""The picture of a CTC model: the recurrence unfolded, and one loss node that
reads the logits of every step and the label sequence (no per-step terms:
the loss sums over alignments of the whole sequence)."""
from __future__ import annotations

from .. import viz
from ..lang.errors import UnfoldError
from ..viz import style
from .model import SequenceLossModel


def draw(model: SequenceLossModel, view: str = "unfolded", tau: int = 3, force: bool = False):
    """`unfolded` (the recurrence for τ steps and the CTC node) or `circuit`."""
    if view not in ("unfolded", "circuit"):
        raise UnfoldError(f"a CTC model is drawn as `unfolded` or `circuit`, not {view!r}")
    z, l = model.output, model.labels
    title = f"{model.name}: " + (f"unfolded for τ = {tau} steps; CTC reads z at every step and the labels {l}"
                                 if view == "unfolded" else "circuit; CTC over the sequence of z")
    g = viz.draw(model.recurrence, view=view, tau=tau, force=force, title=title)
    g.node("ctc-labels", label=f"<<i>{l}</i><br/><font point-size='9'>labels</font>>", shape="box",
           style="rounded,filled", fillcolor="#eeeeee", color="#666666")
    g.node("ctc-loss", label="<<i>L</i><br/><font point-size='9'>CTC</font>>", shape="doublecircle",
           style="filled", fillcolor="#f8d7da", color="#a94442")
    steps = [f"{z}[{t}]" for t in range(1, tau + 1)] if view == "unfolded" else [z]
    for node in steps:
        g.edge(style.dot_id(node), "ctc-loss")
    g.edge("ctc-labels", "ctc-loss")
    return g
