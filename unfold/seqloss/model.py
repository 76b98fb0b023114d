"""A recurrence trained by a loss over its whole output sequence: CTC.

CTC (Graves et al. 2006) scores a label sequence against per-step logits by
summing over every alignment, so it is not a sum of per-step terms and
cannot be a `sum_t(...)` line.  In a model it is written as

    l = labels(C)                      # per sequence, a label sequence over C classes
    ...
    z[t] = V @ h[t] + c                # per-step logits over the same C classes
    loss = ctc(z[t], l, blank=0)       # also: zero_infinity=True, reduction="sum"

Those two lines are read here; the rest of the file, with the two lines
blanked (every other line stays where it was, so errors keep their line
and column), is an ordinary recurrence without a loss, parsed and checked
by `lang.dsl.parse`.  Nothing is evaluated.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..lang.dsl import parse, read_model
from ..lang.errors import Loc, ModelError
from ..lang.ir import Role
from ..lang.recurrence import Recurrence
from ..lang.source import Source

REDUCTIONS = ("mean", "sum")
_EXPECTED = "loss = ctc(z[t], l, blank=0) with `l = labels(C)` and z[t] a per-step vector of C logits"


@dataclass
class SequenceLossModel:
    """A checked recurrence without a loss, and the CTC loss over one of its outputs."""
    name: str
    file: str
    recurrence: Recurrence
    output: str                 # z: the per-step logits
    labels: str                 # l: the label sequences' name
    classes: int                # C
    blank: int = 0
    reduction: str = "mean"
    zero_infinity: bool = False
    classes_dim: str | None = None   # the dim C is, for bind()

    @property
    def dims(self) -> dict:
        return self.recurrence.dims

    def bind(self, **dims: int) -> "SequenceLossModel":
        rec = self.recurrence.bind(**dims)
        classes = rec.dims[self.classes_dim] if self.classes_dim else self.classes
        _check(rec, self.output, classes, self.blank, None)
        return replace(self, recurrence=rec, classes=classes)

    def init_params(self, seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
        return self.recurrence.init_params(seed=seed, dtype=dtype)

    def listing(self) -> str:
        options = f"blank={self.blank}, reduction={self.reduction!r}, zero_infinity={self.zero_infinity}"
        return (self.recurrence.listing() + f"\nlabels       {self.labels}  a label sequence per sequence over "
                f"{self.classes} classes\nloss = ctc({self.output}[t], {self.labels}, {options})")

    def __str__(self) -> str:
        return self.listing()


def load(path) -> SequenceLossModel:
    return parse_sequence_loss(read_model(path), str(path), Path(path).stem)


def parse_sequence_loss(text: str, file: str = "<model>", name: str | None = None) -> SequenceLossModel:
    src = Source(text, file)
    loss = labels = None
    keep = []
    for stmt in src.parse().body:
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
        call = stmt.value if target is not None and isinstance(stmt.value, ast.Call) else None
        if target is not None and getattr(target, "id", None) == "loss" and getattr(call.func, "id", "") == "ctc":
            loss = stmt
        elif call is not None and getattr(call.func, "id", None) == "labels" and isinstance(target, ast.Name):
            labels = stmt
        else:
            keep.append(stmt)
    if loss is None:
        raise ModelError("no `loss = ctc(...)` line", Loc(file, 1, 1, 2, src.line(1)), _EXPECTED)
    if labels is None:
        raise ModelError("the labels of the CTC loss are not declared", src.loc(loss), "l = labels(C)")
    lines = [""] * len(src.lines)
    for stmt in keep:
        for n in range(stmt.lineno, stmt.end_lineno + 1):
            lines[n - 1] = src.line(n)
    rec = parse("\n".join(lines), file=file, name=name or Path(file).stem)
    label_name, classes, dim = _labels(src, labels, rec)
    output, options = _ctc_call(src, loss, label_name, rec)
    _check(rec, output, classes, options["blank"], src.loc(loss.value.args[0]))
    return SequenceLossModel(name or Path(file).stem, file, rec, output, label_name, classes,
                             classes_dim=dim, **options)


def _labels(src: Source, stmt: ast.Assign, rec: Recurrence) -> tuple[str, int, str | None]:
    """(name, C, the dim C names) of `l = labels(C)`."""
    name, call = stmt.targets[0].id, stmt.value
    if name in rec.symbols or name in rec.dims:
        raise ModelError(f"`{name}` is declared twice", src.loc(stmt.targets[0]), "a new name for the labels")
    if len(call.args) != 1 or call.keywords:
        raise ModelError("labels() takes the number of classes", src.loc(call), "l = labels(C), C a dim or a number")
    arg = call.args[0]
    if isinstance(arg, ast.Name) and arg.id in rec.dims:
        return name, rec.dims[arg.id], arg.id
    if isinstance(arg, ast.Constant) and type(arg.value) is int and arg.value >= 1:
        return name, arg.value, None
    raise ModelError("the number of classes is a dim or a whole number", src.loc(arg), "labels(C) with C = dim(...)")


def _ctc_call(src: Source, stmt: ast.Assign, labels: str, rec: Recurrence) -> tuple[str, dict]:
    """(the output z, the options) of `loss = ctc(z[t], l, ...)`."""
    call = stmt.value
    if len(call.args) != 2:
        raise ModelError(f"ctc() takes the logits and the labels, got {len(call.args)} argument(s)",
                         src.loc(call), _EXPECTED)
    z, lab = call.args
    if not (isinstance(z, ast.Subscript) and isinstance(z.value, ast.Name) and isinstance(z.slice, ast.Name)
            and z.slice.id == "t"):
        raise ModelError("ctc() reads a variable's logits at every step", src.loc(z), "ctc(z[t], l)")
    if not (isinstance(lab, ast.Name) and lab.id == labels):
        raise ModelError(f"the second argument of ctc() is the labels, `{labels}`", src.loc(lab), f"ctc(z[t], {labels})")
    options = {"blank": 0, "reduction": "mean", "zero_infinity": False}
    for kw in call.keywords:
        value = kw.value.value if isinstance(kw.value, ast.Constant) else None
        ok = {"blank": type(value) is int, "reduction": value in REDUCTIONS,
              "zero_infinity": type(value) is bool}.get(kw.arg, False)
        if not ok:
            raise ModelError(f"bad ctc() option `{kw.arg}`", src.loc(kw.value),
                             "blank=<class index>, reduction=\"mean\" or \"sum\", zero_infinity=True or False")
        options[kw.arg] = value
    return z.value.id, options


def _check(rec: Recurrence, output: str, classes: int, blank: int, loc: Loc | None):
    s = rec.symbols.get(output)
    if s is None or s.role not in (Role.STATE, Role.INTER):
        raise ModelError(f"`{output}` is not a state or intermediate of the model", loc,
                         "ctc(z[t], l) with z[t] = ... an equation of the model")
    if s.shape != (classes,):
        raise ModelError(f"`{output}` has {list(s.shape)} units but the labels have {classes} classes", loc,
                         "one logit per class, the blank included")
    if not 0 <= blank < classes:
        raise ModelError(f"blank={blank} is not a class in [0, {classes})", loc, "blank=0")
