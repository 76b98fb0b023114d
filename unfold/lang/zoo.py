"""The built-in models (`unfold/zoo/*.rnn`, linked as `examples/models`)."""
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
