"""The built-in models (`unfold/zoo/*.rnn`, linked as `examples/models`).

Most are one recurrence (`uf.load`); a file written as `with encoder:` and
`with decoder(...):` blocks is an encoder–decoder (`uf.seq2seq.load`), and
one with a `loss = ctc(...)` line a recurrence under a sequence loss
(`uf.seqloss.load`), and one that reads `h[left(n)]` a recursive (tree)
network (`uf.tree.load`).
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import ModelError

ZOO = Path(__file__).resolve().parent.parent / "zoo"


def zoo_path(name: str) -> Path:
    """The path of a built-in model: zoo_path("lstm") -> .../unfold/zoo/lstm.rnn."""
    path = ZOO / f"{name}.rnn"
    if not path.exists():
        names = sorted(p.stem for p in ZOO.glob("*.rnn"))
        raise ModelError(f"no built-in model {name!r}", expected=f"one of: {', '.join(names)}")
    return path


#: how a model file of another front end than `uf.load` is written (tested on its text, not parsed)
KINDS = {"encoder-decoder": re.compile(r"^with encoder", re.MULTILINE),
         "sequence-loss": re.compile(r"^loss\s*=\s*ctc\s*\(", re.MULTILINE),
         "tree": re.compile(r"\[\s*(left|right)\s*\(\s*n\s*\)\s*\]")}


def model_kind(text: str) -> str:
    """"recurrence", or the other front end a model's text is written for (KINDS)."""
    return next((kind for kind, pattern in KINDS.items() if pattern.search(text)), "recurrence")


def zoo_names(kind: str = "recurrence") -> list[str]:
    """The built-in models of one kind ("recurrence", a key of KINDS, or "all")."""
    if kind not in ("recurrence", "all", *KINDS):
        raise ValueError(f"kind {kind!r}: expected recurrence, all or one of {', '.join(KINDS)}")
    return [p.stem for p in sorted(ZOO.glob("*.rnn")) if kind in ("all", model_kind(p.read_text()))]
