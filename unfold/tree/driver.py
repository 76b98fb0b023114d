"""A tree cell compiled once, run over batches of trees one depth level at a time.

    model = uf.tree.load("examples/models/recursive.rnn")   # h[n] from h[left(n)], h[right(n)], x[n]
    tf = uf.tree.compile(model, target="cpu")
    batch = uf.tree.TreeBatch(trees)                    # trees: Tree(left, right) each
    out = tf(params, batch, {"x": xs})                  # {"h": [N, H], "o": [N, K]}, every node
    loss, grads = tf.value_and_grad(params, batch, {"x": xs}, labels)   # labels: one class per tree (root)

The cell is an ordinary model run for one step (tau = 1) whose children's
states are inputs (`h_left`, `h_right`, made from `h[left(n)]` by tree.model):
the compiled kernels are used as they are.
Forward: for each level (leaves first), one call whose batch is every node of
that level in every tree, the children's states gathered from the levels
below (a missing child reads zeros) -- TensorFlow Fold's and DyNet's
batching, so a batch of trees of height d costs d + 1 calls, not one per node.
A level runs padded to one of a few sizes, each size on a compiled function
of its own (`padded`, `_fn`): a compiled function keeps the buffers of only a
few run shapes, and rebuilding them per level cost more than the kernels.

Backward (back-propagation through structure) runs the levels top down with
`fn.vjp`: a node's cotangent of h is what its loss sends plus what its parent's
call sent to the parent's `hl`/`hr` input (scattered to the children; every
node has one parent, so no two rows of a level collide); parameter gradients
are summed over the levels.  `fn.vjp` recomputes the level's forward pass
inside the kernel, so a gradient costs two forward passes and one backward.

A `seed` (training mode: dropout in the cell) gives each level's call a seed
of its own, drawn from it; the backward pass reuses the forward's.

The loss is softmax cross-entropy of the `logits` output (default `o`) on the
labelled nodes, averaged over them: one label per tree labels the roots; one
array per tree (or [N]) labels every node, -1 where a node has none.
"""
from __future__ import annotations

import threading

import numpy as np

from ..compiler.driver import Compiled
from ..compiler.driver import compile as compile_cell
from ..lang.errors import InputError, ModelError
from ..lang.ir import Role
from ..lang.ops.dropout import sites as dropout_sites
from ..lang.ops.dropout import spawn
from .model import TreeModel
from .trees import TreeBatch


class TreeCompiled:
    """A tree-RNN: `cell` (compiled for `target`) applied at every node."""

    def __init__(self, fn: Compiled, children=("hl", "hr"), state: str = "h", logits: str | None = "o",
                 pad: bool = True):
        rec = fn.rec
        self.fn, self.rec, self.dtype, self.pad = fn, rec, fn.dtype, pad
        self._fns: dict[int, Compiled] = {}   # padded level size -> its own compiled function
        self._local = threading.local()
        self.children, self.state, self.logits = tuple(children), state, logits
        outputs = {s.name: s for s in rec.of_role(Role.STATE, Role.INTER)}
        inputs = {s.name: s for s in rec.of_role(Role.INPUT)}
        for name, kind, table in [(state, "the node's state (an output)", outputs),
                                  (logits, "the logits (an output)", outputs)] + \
                [(c, "a child's state (an input)", inputs) for c in self.children]:
            if name is not None and name not in table:
                raise ModelError(f"the tree cell `{rec.name}` has no {kind} named `{name}`",
                                 expected=f"one of: {', '.join(sorted(table)) or '(none)'}")
        self.width = outputs[state].shape or (1,)
        for c in self.children:
            if (inputs[c].shape or (1,)) != self.width:
                raise ModelError(f"the child input `{c}` has shape {list(inputs[c].shape or (1,))}, but the "
                                 f"state `{state}` it reads has {list(self.width)}", loc=inputs[c].loc)
        variational = [c for c in dropout_sites(rec) if c.attrs[1]]
        if variational:   # a level is one call of one step: its rows are nodes, not sequences
            raise ModelError("variational dropout (one mask per sequence, the same at every step) has no "
                             "meaning in a tree network, whose steps are its nodes", loc=variational[0].loc,
                             expected="dropout(v, p): a mask of its own at every node")
        self.node_inputs = {n: s for n, s in inputs.items() if n not in self.children}
        self.params = [s.name for s in rec.of_role(Role.PARAM)]
        self.target = fn.target

    # -- forward -------------------------------------------------------------------
    @property
    def dropout(self) -> bool:
        return self.fn.dropout

    def __call__(self, params, batch, inputs=None, seed=None) -> dict:
        """Every output of every node, [N, ...] in batch order (`batch.split` per tree)."""
        batch, X = self._check(batch, inputs)
        return self._forward(params, batch, X, seed)[1]

    def _forward(self, params, batch: TreeBatch, X: dict, seed=None):
        """(S, outputs): S is [N + 1, H], the states and a last row of zeros (a missing child)."""
        S = np.zeros((batch.n + 1, *self.width), dtype=self.dtype)
        outs: dict = {}
        seeds = spawn(seed, len(batch.levels))
        for ids, s in zip(batch.levels, seeds):
            out = self._fn(len(ids))(params, self._level(batch, ids, S, X), seed=s)
            S[ids] = out[self.state][0, :len(ids)]
            for name, v in out.items():
                if name not in outs and name != "loss":
                    outs[name] = np.zeros((batch.n, *v.shape[2:]), v.dtype)
                if name != "loss":
                    outs[name][ids] = v[0, :len(ids)]
        return S, outs

    def _level(self, batch: TreeBatch, ids: np.ndarray, S: np.ndarray, X: dict) -> dict:
        """The inputs of one level's call: children's states gathered, node inputs
        sliced; the padding rows read the missing child (zeros) and zero inputs."""
        rows = np.full(padded(len(ids)) if self.pad else len(ids), batch.n)   # row N: zeros
        rows[:len(ids)] = ids
        kids = np.full((len(rows), len(self.children)), batch.n)
        kids[:len(ids)] = batch.children[ids]
        bufs = self._buffers(len(rows), {c: S for c in self.children} | X)
        level = {}
        for j, c in enumerate(self.children):
            level[c] = np.take(S, kids[:, j], axis=0, out=bufs[c][0])[None]
        for name, sym in self.node_inputs.items():
            x = np.take(X[name], rows, axis=0, out=bufs[name][0])
            level[name] = x[None] if sym.timed else x
        return level

    def _buffers(self, P: int, sources: dict) -> dict:
        """Input arrays of P rows, reused call after call (one set per thread and
        size): fresh ones cost page faults on every level, more than the gather."""
        local = self._local.__dict__.setdefault("bufs", {})
        if not self.pad:   # sizes unbounded (a new batch, new sizes): not kept
            return {k: np.zeros((1, P, *a.shape[1:]), self.dtype) for k, a in sources.items()}
        if P not in local:
            local[P] = {k: np.zeros((1, P, *a.shape[1:]), self.dtype) for k, a in sources.items()}
        return local[P]

    def _fn(self, n: int) -> Compiled:
        """The compiled cell for a level of n nodes.  Each size gets a function of
        its own, because a compiled function keeps the buffers of only a few
        run shapes and a batch of trees has a shape per level; padded sizes
        (`padded`) keep the number of sizes, and of functions, small."""
        if not self.pad:
            return self.fn
        size = padded(n)
        if size not in self._fns:
            f = self.fn if not self._fns else compile_cell(
                self.rec, target=self.fn.target, dtype=self.dtype, mode=self.fn.mode, unroll=self.fn.unroll,
                cache_dir=self.fn.cache_dir, threads=self.fn.threads, **self.fn.options)
            self._fns[size] = f
        return self._fns[size]

    # -- backward ------------------------------------------------------------------
    def vjp(self, params, batch, inputs=None, cotangents=None, seed=None) -> dict:
        """Gradients of sum over nodes of <cotangent, output>: `cotangents` maps
        output names to [N, ...] arrays (per node).  Params summed over nodes;
        node inputs per node [N, ...]."""
        batch, X = self._check(batch, inputs)
        S, _ = self._forward(params, batch, X, seed)
        return self._backward(params, batch, X, S, self._cotangents(batch, cotangents), seed)

    def _backward(self, params, batch: TreeBatch, X: dict, S: np.ndarray, cot: dict, seed=None) -> dict:
        G = np.zeros_like(S)   # cotangent of each node's state; row N collects the missing children's
        G[:batch.n] += cot.pop(self.state, 0)
        grads = {name: np.zeros_like(X[name][:-1]) for name in self.node_inputs}
        seeds = spawn(seed, len(batch.levels))
        for ids, s in reversed(list(zip(batch.levels, seeds))):
            level = self._level(batch, ids, S, X)
            P, n = next(iter(level.values())).shape[1], len(ids)
            cots = {self.state: _rows(G[ids], P), **{k: _rows(c[ids], P) for k, c in cot.items()}}
            g = self._fn(n).vjp(params, level, cots, seed=s)
            for j, c in enumerate(self.children):
                G[batch.children[ids, j]] += g[c][0, :n]
            for name, sym in self.node_inputs.items():
                grads[name][ids] = g[name][0, :n] if sym.timed else g[name][:n]
            for p in self.params:
                if p in g:
                    grads[p] = grads[p] + g[p] if p in grads else g[p]
        return grads

    def _cotangents(self, batch: TreeBatch, given) -> dict:
        outputs = {s.name: s for s in self.rec.of_role(Role.STATE, Role.INTER)}
        if not isinstance(given, dict) or not given:
            raise InputError("cotangents must be a dict: output name -> [N, ...] array, one row per node")
        out = {}
        for name, c in given.items():
            want = (batch.n, *(outputs[name].shape or (1,))) if name in outputs else None
            c = np.asarray(c, dtype=self.dtype) if want else c
            if want is None or c.shape != want:
                raise InputError(f"the cotangent `{name}` must be an output of the cell shaped like it "
                                 f"over the batch's nodes; outputs: {', '.join(sorted(outputs))}")
            out[name] = c
        return out

    # -- the loss ------------------------------------------------------------------
    def value_and_grad(self, params, batch, inputs=None, labels=None, has_aux=False, seed=None):
        """(loss, gradients): mean softmax cross-entropy of `logits` on the
        labelled nodes; with has_aux, ((loss, outputs), gradients)."""
        batch, X = self._check(batch, inputs)
        S, outs = self._forward(params, batch, X, seed)
        nodes, classes = self._labels(batch, labels, outs)
        loss, d = softmax_xent(outs[self.logits][nodes], classes)
        dlogits = np.zeros_like(outs[self.logits])
        dlogits[nodes] = d
        grads = self._backward(params, batch, X, S, {self.logits: dlogits}, seed)
        return ((loss, outs) if has_aux else loss), grads

    def loss(self, params, batch, inputs=None, labels=None, seed=None) -> float:
        batch, X = self._check(batch, inputs)
        outs = self._forward(params, batch, X, seed)[1]
        nodes, classes = self._labels(batch, labels, outs)
        return softmax_xent(outs[self.logits][nodes], classes)[0]

    def predict(self, params, batch, inputs=None) -> np.ndarray:
        """Each tree's class: the argmax of its root's logits."""
        batch, X = self._check(batch, inputs)
        return self._forward(params, batch, X)[1][self._need_logits()][batch.roots].argmax(axis=1)

    def _need_logits(self) -> str:
        if self.logits is None:
            raise ModelError(f"the tree cell `{self.rec.name}` was compiled with logits=None: it has no loss")
        return self.logits

    def _labels(self, batch: TreeBatch, labels, outs) -> tuple[np.ndarray, np.ndarray]:
        """(labelled node ids, their classes), checked."""
        K = outs[self._need_logits()].shape[1]
        if isinstance(labels, (list, tuple)) and labels and np.ndim(labels[0]) == 1:
            per_node = batch.join("labels", labels)
        else:
            per_node = np.asarray(labels)
            if per_node.ndim != 1 or per_node.size not in (len(batch), batch.n):
                raise InputError(f"labels must be one class per tree ({len(batch)}: the roots) or per node "
                                 f"(one array per tree, -1 where unlabelled), not shape {list(per_node.shape)}")
            if per_node.size == len(batch) and per_node.dtype.kind in "iu":
                per_node = np.full(batch.n, -1, np.int64)
                per_node[batch.roots] = np.asarray(labels)
        if per_node.dtype.kind not in "iu" or np.any((per_node < -1) | (per_node >= K)):
            raise InputError(f"labels must be integer classes in 0..{K - 1} (-1: no label), "
                             f"found {per_node.dtype} values {np.unique(per_node)[:8].tolist()}")
        nodes = np.flatnonzero(per_node >= 0)
        if nodes.size == 0:
            raise InputError("labels: no node of the batch is labelled")
        return nodes, per_node[nodes]

    # -- arguments -----------------------------------------------------------------
    def _check(self, batch, inputs) -> tuple[TreeBatch, dict]:
        batch = batch if isinstance(batch, TreeBatch) else TreeBatch(batch)
        if batch.arity != len(self.children):
            raise InputError(f"the trees have {batch.arity} children per node but the cell `{self.rec.name}` "
                             f"reads {len(self.children)} ({', '.join(self.children)})")
        inputs = dict(inputs or {})
        missing, extra = set(self.node_inputs) - set(inputs), set(inputs) - set(self.node_inputs)
        if missing or extra:
            raise InputError(f"the cell's per-node inputs are {', '.join(sorted(self.node_inputs)) or '(none)'}; "
                             f"missing {sorted(missing)}, unknown {sorted(extra)}")
        X = {}
        for name, sym in self.node_inputs.items():
            x = np.asarray(batch.join(name, inputs[name]))
            want = sym.shape or (1,)
            if x.shape[1:] != tuple(want):
                raise InputError(f"`{name}` has {list(x.shape[1:])} per node; expected {list(want)}")
            X[name] = np.zeros((batch.n + 1, *want), self.dtype)   # a last row of zeros: padding reads it
            X[name][:-1] = x
        return batch, X


def padded(n: int) -> int:
    """A level of n nodes runs as this many rows: n up to 8, else rounded up to
    a multiple of an eighth of the next power of two (at most 4 sizes per
    octave, at most 25% padding; the padding rows get zero cotangents, so they
    add nothing to a gradient)."""
    return n if n <= 8 else -(-n // (step := 1 << (int(n - 1).bit_length() - 3))) * step


def _rows(a: np.ndarray, P: int) -> np.ndarray:
    """[n, ...] -> [1, P, ...], zeros below."""
    out = np.zeros((1, P, *a.shape[1:]), a.dtype)
    out[0, :len(a)] = a
    return out


def softmax_xent(logits: np.ndarray, classes: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean cross-entropy, its gradient wrt the logits), stable: log-sum-exp."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(len(classes))
    d = np.exp(logp)
    d[rows, classes] -= 1.0
    return float(-logp[rows, classes].mean()), d / len(classes)


def compile(model, target: str = "cpu", children=None, state: str | None = None,
            logits: str | None = "o", pad: bool = True, **options) -> TreeCompiled:
    """Compile a tree network and wrap it as a tree-RNN (options: `uf.compile`'s).
    model: a `TreeModel` (`uf.tree.load`: h[left(n)] in the text; it names the
    children, the state and the logits), or a cell `Recurrence` whose children's
    states are inputs (default names hl, hr; state h).  pad: run each level
    padded to one of a few sizes (`padded`), each size with buffers of its
    own, so that calls reuse them; False runs exact sizes."""
    if isinstance(model, TreeModel):
        rec, children = model.cell, children or model.children
        state, logits = state or model.state, model.logits if logits == "o" else logits
    else:
        rec, children, state = model, children or ("hl", "hr"), state or "h"
    return TreeCompiled(compile_cell(rec, target=target, **options), children, state, logits, pad)
