"""The picture of an encoder–decoder (Fig. 10.12): both parts unfolded, joined by the context.

The encoder is unfolded for `tau` steps and the decoder for `tau_decoder`,
each drawn by the ordinary unfolded view (`viz.unfolded`, node ids prefixed
`encoder/` and `decoder/`), and one bold arrow per link runs from the
encoder state's last step to what it feeds: the decoder state's initial
value, or the decoder input read at every step.
"""
from __future__ import annotations

from .. import viz
from ..lang.errors import UnfoldError
from ..viz import style
from ..viz.unfolded import add_unfolded
from .model import EncoderDecoder


def draw(ed: EncoderDecoder, view: str = "unfolded", tau: int = 3, tau_decoder: int | None = None,
         force: bool = False):
    """`unfolded` (both parts, the context arrows) or `circuit` (both circuits, side by side)."""
    tau_decoder = tau_decoder or tau
    if view not in ("unfolded", "circuit"):
        raise UnfoldError(f"an encoder–decoder model is drawn as `unfolded` or `circuit`, not {view!r}")
    for t in (tau, tau_decoder):
        viz.check_tau(view, t, force)
    links = ", ".join(f"{e} → {d}" for d, e in ed.links.items())
    if view == "circuit":
        g = viz.new_graph("BT", f"{ed.name}: encoder and decoder circuits (context: final {links})")
        with g.subgraph(name="cluster_encoder") as a:
            a.attr(label="encoder", style="dashed")
            viz.add_circuit(a, ed.encoder, prefix="encoder/")
        with g.subgraph(name="cluster_decoder") as b:
            b.attr(label="decoder", style="dashed")
            viz.add_circuit(b, ed.decoder, prefix="decoder/")
        return g
    g = viz.new_graph("BT", f"{ed.name}: encoder unfolded for {tau} steps, decoder for {tau_decoder} "
                            f"(bold: the context, {links})")
    g.attr(newrank="true")
    add_unfolded(g, ed.encoder, tau, prefix="encoder/")
    add_unfolded(g, ed.decoder, tau_decoder, prefix="decoder/")
    for d, e in ed.links.items():
        sink = f"decoder/{d}[0]" if d in {s.name for s in ed.decoder.states} else f"decoder/{d}"
        g.edge(style.dot_id(f"encoder/{e}[{tau}]"), style.dot_id(sink), label="context", penwidth="2.5",
               color="#1f4e99", fontcolor="#1f4e99", constraint="true")
    return g
