"""Trees and batches of trees, checked, with their depth levels.

    t = Tree(left=[1, -1, -1], right=[2, -1, -1])   # node 0 has children 1, 2; -1: no child
    t = Tree.from_parents([-1, 0, 0])               # the same tree; children in index order
    batch = TreeBatch([t, Tree([-1], [-1]), ...])   # the nodes of all trees, numbered 0..N-1
    batch.levels                                    # [ids of height 0 (leaves), ids of height 1, ...]

A node's *level* is its height: 0 for a leaf, else 1 + its highest child's.
Every child of a level-l node is on a level below l, so running the levels
in order computes each node after its children (and the reverse order, the
backward pass, each node before them).  Nodes are numbered across the batch
tree after tree (`batch.offsets`), so one level of the batch is one index
array and one compiled call.

A malformed tree is an `InputError` naming the array and the entry: a child
index out of range, a node with two parents, a cycle, no root or two roots.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..lang.errors import InputError


def _index_array(name: str, a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or a.size == 0 or (a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and
                                                                          np.all(a == np.round(a)))):
        raise InputError(f"{name} must be a non-empty 1-D array of node indices (-1: none), "
                         f"not {a.dtype} of shape {list(a.shape)}")
    return a.astype(np.int64)


@dataclass(frozen=True, eq=False)   # eq: arrays do not compare to one bool
class Tree:
    """One tree of n nodes: `children[i, j]` is node i's j-th child, or -1.
    Construct as Tree(left, right) (binary), Tree.of(children) (any arity) or
    Tree.from_parents(parent)."""
    children: np.ndarray
    names: tuple = ("left", "right")   # of the columns of `children`, for errors
    root: int = field(init=False)
    order: np.ndarray = field(init=False, repr=False)   # root first; every parent before its children

    def __init__(self, left, right, where: str = ""):
        left, right = _index_array(where + "left", left), _index_array(where + "right", right)
        if left.shape != right.shape:
            raise InputError(f"{where}left and {where}right must have one entry per node, "
                             f"not {left.size} and {right.size}")
        self._set(np.stack([left, right], axis=1), (where + "left", where + "right"), where)

    @classmethod
    def of(cls, children, where: str = "") -> "Tree":
        """A tree of any arity: `children` is [n, k] (-1 where there is no child)."""
        c = np.asarray(children)
        if c.ndim != 2 or c.shape[1] == 0:
            raise InputError(f"{where}children must be an [n, k] array of node indices (-1: none), "
                             f"not shape {list(c.shape)}")
        cols = [_index_array(f"{where}children[:, {j}]", c[:, j]) for j in range(c.shape[1])]
        self = cls.__new__(cls)
        self._set(np.stack(cols, axis=1), tuple(f"{where}children[:, {j}]" for j in range(c.shape[1])), where)
        return self

    @classmethod
    def from_parents(cls, parent, arity: int = 2, where: str = "") -> "Tree":
        """From `parent[i]` (-1 for the root); a node's children in index order."""
        p = _index_array(where + "parent", parent)
        n = p.size
        bad = np.flatnonzero((p < -1) | (p >= n))
        if bad.size:
            i = bad[0]
            raise InputError(f"{where}parent[{i}] = {p[i]} is out of range: a tree of {n} nodes has nodes "
                             f"0..{n - 1} (-1: the root)")
        children = np.full((n, arity), -1, dtype=np.int64)
        count = np.zeros(n, dtype=np.int64)
        for i in range(n):
            if p[i] < 0:
                continue
            if count[p[i]] == arity:
                raise InputError(f"{where}parent: node {p[i]} has more than {arity} children "
                                 f"({', '.join(map(str, np.flatnonzero(p == p[i])))})")
            children[p[i], count[p[i]]] = i
            count[p[i]] += 1
        self = cls.__new__(cls)
        self._set(children, (where + "parent",) * arity, where)
        return self

    def _set(self, children: np.ndarray, names: tuple, where: str):
        object.__setattr__(self, "children", children)
        object.__setattr__(self, "names", names)
        root, order = _check(children, names, where)
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "order", order)

    @property
    def n(self) -> int:
        return self.children.shape[0]

    @property
    def arity(self) -> int:
        return self.children.shape[1]

    def heights(self) -> np.ndarray:
        """Each node's level: 0 for a leaf, else 1 + the highest child's."""
        h = np.full(self.n + 1, -1, dtype=np.int64)   # h[-1] = -1: a missing child
        for nodes in _breadth_first(self.children, self.root)[::-1]:   # the deepest first
            h[nodes] = 1 + h[self.children[nodes]].max(axis=1)
        return h[:-1]

    def parents(self) -> np.ndarray:
        p = np.full(self.n, -1, dtype=np.int64)
        for j in range(self.arity):
            has = self.children[:, j] >= 0
            p[self.children[has, j]] = np.flatnonzero(has)
        return p


def _check(children: np.ndarray, names: tuple, where: str) -> tuple[int, np.ndarray]:
    """(root, nodes root first) of a well-formed tree; an InputError otherwise.
    Vectorized; the entry-by-entry walk runs only to name a bad entry."""
    n = children.shape[0]
    kids = children[children != -1]
    if kids.size and (kids.min() < 0 or kids.max() >= n or np.any(children == np.arange(n)[:, None])
                      or np.bincount(kids, minlength=n).max() > 1):
        _entries(children, names)
    roots = np.flatnonzero(np.bincount(kids, minlength=n) == 0) if kids.size else np.arange(n)
    if len(roots) > 1:
        arrays = "/".join(dict.fromkeys(n.removeprefix(where) for n in names))
        raise InputError(f"{where}{arrays}: nodes {', '.join(map(str, roots[:5]))} have no parent; a tree has "
                         "one root (give each tree of a forest as a tree of its own)")
    order = np.concatenate(_breadth_first(children, int(roots[0]))) if len(roots) else np.zeros(0, np.int64)
    if order.size < n:   # every unreached node has one parent, so following parents loops
        unreached = np.setdiff1d(np.arange(n), order)[0]
        _cycle(children, _entries(children, names), int(unreached), rooted=bool(len(roots)))
    return int(roots[0]), order


def _entries(children: np.ndarray, names: tuple) -> dict[int, str]:
    """child -> the entry that makes it one (`left[3] = 5`); raises at the first bad entry."""
    n = children.shape[0]
    parent_of: dict[int, str] = {}
    for i, j in zip(*np.nonzero(children != -1)):
        c, name = int(children[i, j]), names[j]
        if not 0 <= c < n:
            raise InputError(f"{name}[{i}] = {c} is out of range: a tree of {n} nodes has nodes 0..{n - 1} "
                             f"(-1: no child)")
        if c == i:
            raise InputError(f"{name}[{i}] = {i}: node {i} is its own child (a cycle)")
        entry = f"{name}[{c}] = {i}" if name.endswith("parent") else f"{name}[{i}] = {c}"
        if c in parent_of:
            raise InputError(f"node {c} has two parents: {parent_of[c]} and {entry} "
                             f"(in a tree every node but the root has exactly one)")
        parent_of[c] = entry
    return parent_of


def _breadth_first(children: np.ndarray, root: int) -> list[np.ndarray]:
    """The nodes by depth: [root], its children, theirs, ..."""
    frontiers = [np.array([root])]
    while True:
        kids = children[frontiers[-1]].ravel()
        kids = kids[kids >= 0]
        if kids.size == 0:   # no cycle reaches the root's subtree: the root has no parent, the others one
            return frontiers
        frontiers.append(kids)


def _cycle(children: np.ndarray, parent_of: dict, start: int, rooted: bool):
    """Raise the cycle reached by following parents from `start`, naming its entries."""
    parent = {int(c): i for (i, _), c in np.ndenumerate(children) if c >= 0}
    node, path = start, []
    while node not in path:
        path.append(node)
        node = parent[node]
    cycle = path[path.index(node):][::-1]   # parent before child
    k = cycle.index(min(cycle))
    cycle = cycle[k:] + cycle[:k]            # from its smallest node, so the message is stable
    entries = ", ".join(parent_of[c] for c in cycle[1:] + cycle[:1])
    raise InputError(f"a cycle: {entries} (nodes {' -> '.join(map(str, cycle + cycle[:1]))})"
                     + ("" if rooted else "; the tree has no root"))


class TreeBatch:
    """Trees numbered together: node `offsets[i] + j` is node j of tree i.

    children: [N, k] global child ids, -1 replaced by N (a row of zeros the
    driver keeps below the states, so a missing child reads 0); levels: the
    node ids of each height; roots: each tree's root."""

    def __init__(self, trees):
        trees = [t if isinstance(t, Tree) else _as_tree(t, f"trees[{i}].") for i, t in enumerate(trees)]
        if not trees:
            raise InputError("a TreeBatch needs at least one tree")
        arity = {t.arity for t in trees}
        if len(arity) > 1:
            raise InputError(f"the trees of a batch must have one arity, not {sorted(arity)}")
        self.trees = trees
        sizes = np.array([t.n for t in trees])
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.n = int(self.offsets[-1])
        self.children = np.concatenate([np.where(t.children >= 0, t.children + o, -1)
                                        for t, o in zip(trees, self.offsets)])
        self.children[self.children < 0] = self.n
        self.roots = np.array([t.root + o for t, o in zip(trees, self.offsets)])
        self.height = np.concatenate([t.heights() for t in trees])
        self.levels = [np.flatnonzero(self.height == h) for h in range(int(self.height.max()) + 1)]

    @property
    def arity(self) -> int:
        return self.children.shape[1]

    def __len__(self) -> int:
        return len(self.trees)

    def split(self, a: np.ndarray) -> list[np.ndarray]:
        """Per-node rows [N, ...] -> one array per tree."""
        return [a[self.offsets[i]:self.offsets[i + 1]] for i in range(len(self.trees))]

    def join(self, name: str, arrays) -> np.ndarray:
        """One array per tree ([n_i, ...]), or already joined [N, ...] -> [N, ...]."""
        if isinstance(arrays, np.ndarray) and arrays.ndim >= 2 and arrays.shape[0] == self.n:
            return arrays
        if not isinstance(arrays, (list, tuple)) or len(arrays) != len(self.trees):
            raise InputError(f"`{name}` must be one array per tree ({len(self.trees)}) or one array of "
                             f"{self.n} rows (every node of the batch)")
        for i, (a, t) in enumerate(zip(arrays, self.trees)):
            if np.ndim(a) < 1 or np.shape(a)[0] != t.n:
                raise InputError(f"`{name}`[{i}] has shape {list(np.shape(a))}; expected one row per node "
                                 f"of tree {i} ({t.n})")
        return np.concatenate([np.asarray(a) for a in arrays])


def _as_tree(t, where: str) -> Tree:
    """A tree from a (left, right) pair or a dict of `left`/`right` or `parent`."""
    if isinstance(t, dict):
        if "parent" in t:
            return Tree.from_parents(t["parent"], where=where)
        return Tree(t.get("left"), t.get("right"), where=where)
    if isinstance(t, (tuple, list)) and len(t) == 2:
        return Tree(t[0], t[1], where=where)
    raise InputError(f"{where.rstrip('.')} must be a Tree, a (left, right) pair or a dict, not {type(t).__name__}")
