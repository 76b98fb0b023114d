"""Small synthetic tree tasks, for the example, the benchmark and the tests.

    tree = random_tree(8, rng)                       # a random binary bracketing of 8 leaves
    trees, xs, labels = sentiment(64, rng, vocab=10) # one-hot words at the leaves, a label per tree

The sentiment-like task: each word of a vocabulary has a fixed weight
(positive, negative or neutral); a tree's label is 1 when the weights of its
leaves sum to more than 0.  Internal nodes carry no word (x = 0), so the
cell must carry the sum up the tree through its children's states.
"""
from __future__ import annotations

import numpy as np

from .trees import Tree


def random_tree(leaves: int, rng: np.random.Generator) -> Tree:
    """A uniformly random binary split at each internal node; nodes numbered
    parent before children (node 0 the root), leaves wherever they fall."""
    left, right = [], []

    def build(n: int) -> int:
        node = len(left)
        left.append(-1)
        right.append(-1)
        if n > 1:
            k = int(rng.integers(1, n))
            left[node] = build(k)
            right[node] = build(n - k)
        return node

    build(leaves)
    return Tree(left, right)


def leaves_of(tree: Tree) -> np.ndarray:
    """The leaves, left to right (the sentence order)."""
    out, stack = [], [tree.root]
    while stack:
        i = stack.pop()
        kids = tree.children[i][tree.children[i] >= 0]
        if kids.size == 0:
            out.append(i)
        stack.extend(kids[::-1].tolist())
    return np.asarray(out)


def word_weights(vocab: int, seed: int = 0) -> np.ndarray:
    """A fixed weight per word: about a third positive, a third negative, the rest neutral."""
    return np.random.default_rng(seed).choice([-2.0, -1.0, 0.0, 1.0, 2.0], size=vocab)


def sentiment(n_trees: int, rng: np.random.Generator, vocab: int = 10, leaves=(4, 12)):
    """(trees, xs, labels): one-hot words at the leaves ([n_i, vocab] per tree),
    label 1 when the words' weights sum to more than 0."""
    w = word_weights(vocab)
    trees, xs, labels = [], [], []
    for _ in range(n_trees):
        t = random_tree(int(rng.integers(leaves[0], leaves[1] + 1)), rng)
        words = rng.integers(0, vocab, size=t.n)
        x = np.zeros((t.n, vocab))
        lv = leaves_of(t)
        x[lv, words[lv]] = 1.0
        trees.append(t)
        xs.append(x)
        labels.append(int(w[words[lv]].sum() > 0))
    return trees, xs, np.asarray(labels)
