"""Regenerate the figures: every zoo model in every view, plus the cell comparison.

    python examples/figures/make_figures.py            # all, into build/figures/
    python examples/figures/make_figures.py --readme   # the few the README shows, here
    python examples/figures/make_figures.py --gallery  # chapter 10's figures, and their page (gallery.py)

The README figures (committed next to this script) are the Elman network's
circuit and unfolded graph side by side, its gradient, the Elman/LSTM/GRU
cells, and the encoder–decoder, CTC and tree models (docs/figures.md); the
full set is for looking at and is not committed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import unfold
from unfold import viz
from unfold.lang.zoo import zoo_names
from unfold.seq2seq.draw import draw as draw_encoder_decoder
from unfold.seqloss.draw import draw as draw_ctc

import gallery

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent / "models"
TAU = {"unfolded": 3, "side-by-side": 3, "ops": 2, "gradient": 3}


def load(name: str):
    return unfold.load(str(MODELS / f"{name}.rnn"))


def readme_figures(out: Path) -> list[Path]:
    elman = load("elman")
    return [viz.save(viz.draw(elman, view="side-by-side", tau=3), out / "elman_side_by_side.png"),
            viz.save(viz.draw(elman, view="gradient", tau=3), out / "elman_gradient.png"),
            viz.save(viz.draw_compare([elman, load("lstm"), load("gru")]), out / "cells.png"),
            viz.save(draw_encoder_decoder(unfold.seq2seq.load(MODELS / "encoder_decoder.rnn"), "unfolded", tau=4),
                     out / "encoder_decoder.png"),
            viz.save(draw_ctc(unfold.seqloss.load(MODELS / "ctc.rnn"), "unfolded", tau=4), out / "ctc.png"),
            viz.save(unfold.tree.draw_tree(unfold.tree.Tree.from_parents([-1, 0, 0, 1, 1, 2, 2]),
                                           cell=unfold.tree.load(MODELS / "recursive.rnn")), out / "recursive.png")]


def all_figures(out: Path, fmt: str) -> list[Path]:
    written = []
    for name in zoo_names("recurrence"):
        rec = load(name)
        for view in viz.VIEWS:
            graph = viz.draw(rec, view=view, tau=TAU.get(view, 3))
            written.append(viz.save(graph, out / f"{rec.name}_{view}.{fmt}"))
    ed = unfold.seq2seq.load(MODELS / "encoder_decoder.rnn")       # the other front ends: their own views
    ctc = unfold.seqloss.load(MODELS / "ctc.rnn")
    for view in ("unfolded", "circuit"):
        written.append(viz.save(draw_encoder_decoder(ed, view, tau=3), out / f"encoder_decoder_{view}.{fmt}"))
        written.append(viz.save(draw_ctc(ctc, view, tau=4), out / f"ctc_{view}.{fmt}"))
    return written


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", action="store_true", help="only the README figures, into examples/figures/")
    ap.add_argument("--gallery", action="store_true",
                    help="chapter 10's figures into examples/figures/ch10/, and their section of docs/figures.md")
    ap.add_argument("--out", type=Path, default=Path("build/figures"))
    ap.add_argument("--format", default="svg", choices=["svg", "png", "pdf", "dot"])
    args = ap.parse_args(argv)
    if args.gallery:
        written = gallery.render() + [gallery.write_page()]
    else:
        out = HERE if args.readme else args.out
        out.mkdir(parents=True, exist_ok=True)
        written = readme_figures(out) if args.readme else all_figures(out, args.format)
    for p in written:
        print(p)


if __name__ == "__main__":
    main()
