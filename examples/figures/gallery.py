"""The gallery of chapter 10: each figure of Goodfellow et al., *Deep Learning*,
ch. 10, that a model file expresses, drawn from that file by unfold.

    python examples/figures/make_figures.py --gallery

writes the images into examples/figures/ch10/ and the gallery section of
docs/figures.md (between its `<!-- gallery -->` markers): each image beside
the text of the model it was drawn from.  tests/test_viz.py keeps the
section equal to `markdown()`, so the page cannot drift from the files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import unfold
from unfold import viz
from unfold.seq2seq.draw import draw as draw_encoder_decoder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
IMAGES = HERE / "ch10"
PAGE = ROOT / "docs" / "figures.md"
BEGIN, END = "<!-- gallery -->", "<!-- /gallery -->"


@dataclass
class Figure:
    number: str
    caption: str
    models: list[str]        # paths from the repository root
    draw: Callable           # the loaded models -> a graphviz drawing
    width: int = 460         # pixels on the page

    @property
    def image(self) -> Path:
        return IMAGES / f"fig{self.number.replace('.', '_')}.png"


def _zoo(name: str) -> str:
    return f"examples/models/{name}.rnn"


def _own(name: str) -> str:
    return f"examples/figures/models/{name}.rnn"


FIGURES = [
    Figure("10.1", "A dynamical system driven by nothing but its own state, s(t) = f(s(t-1); θ), "
           "unfolded", [_zoo("dynamical")], lambda r: viz.draw(r, "unfolded", tau=4)),
    Figure("10.2", "A recurrent network with no outputs: its circuit (■: a delay of one step) and the "
           "same network unfolded", [_own("no_outputs")], lambda r: viz.draw(r, "side-by-side", tau=3)),
    Figure("10.3", "Hidden-to-hidden recurrence with an output and a loss at every step (an Elman "
           "network), unfolded", [_zoo("elman")], lambda r: viz.draw(r, "unfolded", tau=3)),
    Figure("10.4", "Output-to-hidden recurrence (a Jordan network): only the output o(t-1) "
           "reaches the next step", [_zoo("jordan")], lambda r: viz.draw(r, "unfolded", tau=3)),
    Figure("10.5", "Sequence to one: a single output and loss, at the end (`last_t`)", [_zoo("seq2one")],
           lambda r: viz.draw(r, "unfolded", tau=3)),
    Figure("10.6", "Teacher forcing: at train time the hidden units read the previous target y(t-1) "
           "(left); at test time, the model's own previous output o(t-1) (right)",
           [_zoo("teacher"), _own("teacher_test")],
           lambda train, test: viz.draw_compare([train, test], ["train time", "test time"], view="circuit"),
           width=340),
    Figure("10.11", "A bidirectional network: h runs forward in time, g backward, and the output at "
           "step t sees the whole sequence", [_zoo("birnn")], lambda r: viz.draw(r, "unfolded", tau=3),
           width=520),
    Figure("10.12", "An encoder–decoder: the encoder's final state e is the context, the decoder's "
           "initial state and an input at every decoder step", [_zoo("encoder_decoder")],
           lambda ed: draw_encoder_decoder(ed, "unfolded", tau=3), width=560),
    Figure("10.13", "A deep recurrent network: two recurrent layers stacked", [_zoo("stacked")],
           lambda r: viz.draw(r, "unfolded", tau=3)),
    Figure("10.14", "A recursive network: one cell at every node of a tree, leaves first",
           [_zoo("recursive")], lambda m: unfold.tree.draw_tree(
               unfold.tree.Tree.from_parents([-1, 0, 0, 1, 1, 2, 2]), cell=m)),
    Figure("10.16", "The LSTM cell: input, forget and output gates around the self-loop of c",
           [_zoo("lstm")], lambda r: viz.draw(r, "cell"), width=520),
]


def load(path: str):
    """A model file as its front end reads it."""
    kind = unfold.lang.zoo.model_kind((ROOT / path).read_text())
    loader = {"encoder-decoder": unfold.seq2seq.load, "tree": unfold.tree.load,
              "sequence-loss": unfold.seqloss.load}.get(kind, unfold.load)
    return loader(ROOT / path)


def render() -> list[Path]:
    IMAGES.mkdir(exist_ok=True)
    return [viz.save(f.draw(*[load(m) for m in f.models]), f.image) for f in FIGURES]


def markdown() -> str:
    """The gallery section: per figure its caption, then the model text beside the image."""
    out = [BEGIN, ""]
    for f in FIGURES:
        out += [f"### Fig. {f.number}", "", f.caption + ".", "", "<table><tr><td>", ""]
        for m in f.models:
            out += [f"`{m}`", "", "```python", (ROOT / m).read_text().rstrip(), "```", ""]
        image = f.image.relative_to(ROOT).as_posix()
        out += ["</td><td>", "", f'<img src="../{image}" width="{f.width}" alt="Fig. {f.number}">', "",
                "</td></tr></table>", ""]
    return "\n".join(out + [END])


def write_page() -> Path:
    """docs/figures.md with its gallery section replaced by `markdown()`."""
    text = PAGE.read_text()
    head, rest = text.split(BEGIN, 1)
    PAGE.write_text(head + markdown() + rest.split(END, 1)[1])
    return PAGE
