"""A recursive (tree) network written as math (§10.6, Fig. 10.14):

    x = input(D)                  # a node's own input (a word at a leaf)
    y = target(K)                 # a node's class (given for the labelled nodes)
    h = state(H, init=0)          # init: what a missing child reads
    h[n] = tanh(Wl @ h[left(n)] + Wr @ h[right(n)] + U @ x[n] + b)
    o[n] = V @ h[n] + c
    loss = mean_n(softmax_cross_entropy(o[n], y[n]))

`n` is a node; `h[left(n)]` and `h[right(n)]` its children's states.  The
text is turned into the *cell*: an ordinary one-step recurrence whose
children's states are inputs (`h_left`, `h_right`), which `tree.driver` runs
over a batch of trees one depth level at a time.  The rewrite keeps every
line and, but on the state's declaration line, every column (`h[left(n)]`
becomes `h_left[t]` and a space), so the language's own errors point at the
file as written.  Nothing is evaluated.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..lang.dsl import parse, read_model
from ..lang.errors import ModelError
from ..lang.recurrence import Recurrence
from ..lang.source import Source

SIDES = ("left", "right")
_LOSS = "loss = mean_n(softmax_cross_entropy(o[n], y[n])), o[n] the logits and y = target(K)"


@dataclass
class TreeModel:
    """The checked cell and the names the tree driver needs."""
    name: str
    file: str
    cell: Recurrence
    state: str                    # h
    children: tuple[str, str]     # the cell's inputs h_left, h_right
    logits: str                   # o

    @property
    def dims(self) -> dict:
        return self.cell.dims

    def bind(self, **dims: int) -> "TreeModel":
        return replace(self, cell=self.cell.bind(**dims))

    def init_params(self, seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
        return self.cell.init_params(seed=seed, dtype=dtype)

    def listing(self) -> str:
        return (f"recursive (tree) network {self.name}: the cell below runs at every node n; "
                f"{self.children[0]}, {self.children[1]} are {self.state}[left(n)], {self.state}[right(n)]; "
                f"loss: mean cross-entropy of {self.logits} over the labelled nodes\n\n" + self.cell.listing())

    def __str__(self) -> str:
        return self.listing()


def load(path) -> TreeModel:
    return parse_tree(read_model(path), str(path), Path(path).stem)


def parse_tree(text: str, file: str = "<model>", name: str | None = None) -> TreeModel:
    src = Source(text, file)
    tree = src.parse()
    state = _state(src, tree)
    children = (f"{state.targets[0].id}_left", f"{state.targets[0].id}_right")
    lines = list(src.lines)
    edits = []   # (line, col, end, new text): replaced right to left within a line
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            edits.append(_index(src, node, state.targets[0].id))
        elif isinstance(node, ast.Name) and node.id in ("mean_n", "sum_n"):
            loc = src.loc(node)
            edits.append((loc.line, loc.col, loc.end_col, node.id[:-1] + "t"))
    for line, col, end, new in sorted(edits, key=lambda e: (e[0], -e[1])):
        s = lines[line - 1]
        lines[line - 1] = s[:col - 1] + new.ljust(end - col) + s[end - 1:]
    size = ast.get_source_segment(text, state.value.args[0])
    lines[state.lineno - 1] = f"{children[0]} = input({size}); {children[1]} = input({size})"
    cell = parse("\n".join(lines), file=file, name=name or Path(file).stem)
    return TreeModel(name or Path(file).stem, file, cell, state.targets[0].id, children, _logits(src, tree))


def _state(src: Source, tree: ast.Module) -> ast.Assign:
    """The one `h = state(H, init=0)` declaration: the state the children pass up."""
    found = [s for s in tree.body if isinstance(s, ast.Assign) and isinstance(s.value, ast.Call)
             and getattr(s.value.func, "id", None) == "state" and isinstance(s.targets[0], ast.Name)]
    if len(found) != 1:
        raise ModelError(f"a tree network has one state, the one children pass up; found {len(found)}",
                         src.loc(found[1] if found else tree.body[0]), "h = state(H, init=0)")
    s = found[0]
    init = next((k.value for k in s.value.keywords if k.arg == "init"), None)
    extra = [k.arg for k in s.value.keywords if k.arg != "init"]
    if len(s.value.args) != 1 or extra or not (isinstance(init, ast.Constant) and init.value == 0):
        raise ModelError("a tree state is declared with its size and init=0 (a missing child reads zeros)",
                         src.loc(s.value), "h = state(H, init=0)")
    return s


def _index(src: Source, node: ast.Subscript, state: str) -> tuple[int, int, int, str]:
    """The edit of one `v[...]`: v[n] -> v[t]; h[left(n)] -> h_left[t]; anything else an error."""
    loc, index = src.loc(node), node.slice
    if isinstance(index, ast.Name) and index.id == "n":
        inner = src.loc(index)
        return inner.line, inner.col, inner.end_col, "t"
    side = getattr(getattr(index, "func", None), "id", None)
    if isinstance(index, ast.Call) and side in SIDES and len(index.args) == 1 and \
            getattr(index.args[0], "id", None) == "n" and not index.keywords:
        if getattr(node.value, "id", None) != state:
            raise ModelError(f"only the state `{state}` is read at a child", loc, f"{state}[{side}(n)]")
        return loc.line, loc.col, loc.end_col, f"{state}_{side}[t]"
    raise ModelError("a tree network indexes by the node: v[n], or the state at a child", loc,
                     "x[n], h[n], h[left(n)] or h[right(n)]")


def _logits(src: Source, tree: ast.Module) -> str:
    """o of `loss = mean_n(softmax_cross_entropy(o[n], y[n]))`."""
    loss = next((s for s in tree.body if isinstance(s, ast.Assign) and getattr(s.targets[0], "id", None) == "loss"),
                None)
    if loss is None:
        raise ModelError("a tree network needs its loss line", src.at(1, 1), _LOSS)
    mean = loss.value
    xent = mean.args[0] if isinstance(mean, ast.Call) and getattr(mean.func, "id", None) == "mean_n" and \
        len(mean.args) == 1 else None
    if not (isinstance(xent, ast.Call) and getattr(xent.func, "id", None) == "softmax_cross_entropy"
            and len(xent.args) == 2 and isinstance(xent.args[0], ast.Subscript)
            and isinstance(xent.args[0].value, ast.Name)):
        raise ModelError("the loss of a tree network is the mean cross-entropy over its labelled nodes",
                         src.loc(loss.value), _LOSS)
    return xent.args[0].value.id
