"""Recursive (tree) networks: a one-step cell run over batches of trees, one
compiled call per depth level (Goodfellow et al., Sec. 10.6).

    import unfold as uf
    tf = uf.tree.compile(uf.tree.load("examples/models/recursive.rnn"), target="cpu")
    trees = [uf.tree.Tree(left=[1, -1, -1], right=[2, -1, -1]), ...]
    loss, grads = tf.value_and_grad(params, trees, {"x": xs}, labels)

model.py: the text (`h[n] = f(h[left(n)], h[right(n)], x[n])`) and its cell;
trees.py: `Tree`, `TreeBatch` (checked index arrays, depth levels);
driver.py: `compile`, `TreeCompiled` (forward, vjp, value_and_grad);
draw.py: the unfolded tree as a graph and a picture; synthetic.py: toy tasks.
"""
from .draw import draw_tree, tree_dag
from .driver import TreeCompiled, compile, softmax_xent
from .model import TreeModel, load, parse_tree
from .synthetic import random_tree, sentiment
from .trees import Tree, TreeBatch

__all__ = ["Tree", "TreeBatch", "TreeCompiled", "TreeModel", "compile", "load", "parse_tree", "softmax_xent",
           "draw_tree", "tree_dag",
           "random_tree", "sentiment"]
