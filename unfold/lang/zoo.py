"""The built-in models (`unfold/zoo/*.rnn`, linked as `examples/models`).

Most are one recurrence (`uf.load`); a file written as `with encoder:` and
`with decoder(...):` blocks is an encoder–decoder (`uf.seq2seq.load`).
"""
from __future__ import annotations

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


def zoo_names(kind: str = "recurrence") -> list[str]:
    """The built-in models of one kind: "recurrence" (one recurrence, `uf.load`),
    "encoder-decoder" (`uf.seq2seq.load`) or "all"."""
    if kind not in ("recurrence", "encoder-decoder", "all"):
        raise ValueError(f"kind {kind!r}: expected recurrence, encoder-decoder or all")
    out = []
    for path in sorted(ZOO.glob("*.rnn")):
        composite = any(line.startswith("with encoder") for line in path.read_text().splitlines())
        if kind == "all" or composite == (kind == "encoder-decoder"):
            out.append(path.stem)
    return out
