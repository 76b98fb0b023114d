"""Recursive (tree) networks, unfold.tree: one compiled call per depth level.

Checked against a node-by-node numpy implementation with hand-written
back-propagation through structure, PyTorch autograd node by node (float64),
and finite differences; a batch equals its trees alone; degenerate trees;
malformed trees are InputErrors naming the array."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import unfold as uf
from unfold import tree as T

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples/models/recursive.rnn"
H, D, K = 5, 4, 3


@pytest.fixture(scope="module")
def rec():
    return uf.tree.load(MODEL).bind(H=H, D=D, K=K)


@pytest.fixture(scope="module")
def params(rec):
    p = rec.init_params(seed=1)
    rng = np.random.default_rng(2)
    return {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in p.items()}   # b, c not zero


@pytest.fixture(scope="module", params=["numpy", "cpu"])
def tf(rec, request):
    return T.compile(rec, target=request.param)


def data(n_trees=4, seed=0, leaves=(1, 7)):
    rng = np.random.default_rng(seed)
    trees = [T.random_tree(int(rng.integers(leaves[0], leaves[1] + 1)), rng) for _ in range(n_trees)]
    xs = [rng.standard_normal((t.n, D)) for t in trees]
    return trees, xs, rng.integers(0, K, size=n_trees)


# -- the independent implementations -------------------------------------------------
def reference(p, tree, x, label):
    """Node by node, recursively, with back-propagation through structure by hand."""
    hs, zero = {}, np.zeros(H)

    def h(n):
        if n < 0:
            return zero
        if n not in hs:
            l, r = tree.children[n]
            hs[n] = np.tanh(p["Wl"] @ h(l) + p["Wr"] @ h(r) + p["U"] @ x[n] + p["b"])
        return hs[n]

    o = p["V"] @ h(tree.root) + p["c"]
    s = np.exp(o - o.max())
    s /= s.sum()
    loss = -np.log(s[label])
    g = {k: np.zeros_like(v) for k, v in p.items()}
    do = s - np.eye(K)[label]
    g["V"] += np.outer(do, hs[tree.root])
    g["c"] += do

    def back(n, dh):
        if n < 0:
            return
        l, r = tree.children[n]
        da = dh * (1 - hs[n] ** 2)
        for name, v in (("Wl", h(l)), ("Wr", h(r)), ("U", x[n])):
            g[name] += np.outer(da, v)
        g["b"] += da
        back(l, p["Wl"].T @ da)
        back(r, p["Wr"].T @ da)

    back(tree.root, p["V"].T @ do)
    return loss, g, hs


def torch_loss_grads(p, trees, xs, labels):
    torch = pytest.importorskip("torch")
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}

    def h(tree, x, n):
        if n < 0:
            return torch.zeros(H, dtype=torch.float64)
        l, r = tree.children[n]
        return torch.tanh(tp["Wl"] @ h(tree, x, l) + tp["Wr"] @ h(tree, x, r) + tp["U"] @ x[n] + tp["b"])

    logits = torch.stack([tp["V"] @ h(t, torch.tensor(x), t.root) + tp["c"] for t, x in zip(trees, xs)])
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in tp.items()}


def close(a, b, tol=1e-10):
    assert set(b) <= set(a)
    for k in b:
        np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)


# -- forward and gradients -------------------------------------------------------------
def test_tree_matches_the_node_by_node_reference(tf, params):
    trees, xs, labels = data()
    (loss, outs), grads = tf.value_and_grad(params, trees, {"x": xs}, labels, has_aux=True)
    refs = [reference(params, t, x, k) for t, x, k in zip(trees, xs, labels)]
    assert loss == pytest.approx(np.mean([r[0] for r in refs]), rel=1e-12)
    close(grads, {k: np.mean([r[1][k] for r in refs], axis=0) for k in params})
    for t, hs, r in zip(trees, T.TreeBatch(trees).split(outs["h"]), refs):
        np.testing.assert_allclose(hs, np.stack([r[2][n] for n in range(t.n)]), atol=1e-12)


def test_tree_matches_torch_autograd(tf, params):
    trees, xs, labels = data(n_trees=5, seed=3)
    want_loss, want = torch_loss_grads(params, trees, xs, labels)
    loss, grads = tf.value_and_grad(params, trees, {"x": xs}, labels)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    close(grads, want)


def test_tree_matches_finite_differences(tf, params):
    trees, xs, labels = data(n_trees=3, seed=4)
    _, grads = tf.value_and_grad(params, trees, {"x": xs}, labels)
    rng, eps = np.random.default_rng(5), 1e-6
    for name in params:
        for _ in range(2):
            i = tuple(rng.integers(0, s) for s in params[name].shape)
            up, down = ({**params, name: params[name].copy()} for _ in range(2))
            up[name][i] += eps
            down[name][i] -= eps
            fd = (tf.loss(up, trees, {"x": xs}, labels) - tf.loss(down, trees, {"x": xs}, labels)) / (2 * eps)
            assert grads[name][i] == pytest.approx(fd, rel=1e-6, abs=1e-8), (name, i)
    # the input gradient too: one leaf's word of the first tree
    x2 = [x.copy() for x in xs]
    x2[0][0, 1] += eps
    fd = (tf.loss(params, trees, {"x": x2}, labels) - tf.loss(params, trees, {"x": xs}, labels)) / eps
    assert grads["x"][0, 1] == pytest.approx(fd, rel=1e-4, abs=1e-7)


def test_tree_batch_equals_each_tree_alone(tf, params):
    trees, xs, labels = data(n_trees=5, seed=6)
    loss, grads = tf.value_and_grad(params, trees, {"x": xs}, labels)
    alone = [tf.value_and_grad(params, [t], {"x": [x]}, [k]) for t, x, k in zip(trees, xs, labels)]
    assert loss == pytest.approx(np.mean([a[0] for a in alone]), rel=1e-12)
    close(grads, {k: np.mean([a[1][k] for a in alone], axis=0) for k in params})
    np.testing.assert_allclose(grads["x"], np.concatenate([a[1]["x"] for a in alone]) / len(trees), atol=1e-12)
    out = tf(params, trees, {"x": xs})
    for h, t, x in zip(T.TreeBatch(trees).split(out["h"]), trees, xs):
        np.testing.assert_allclose(h, tf(params, [t], {"x": [x]})["h"], atol=1e-12)


def test_tree_padded_levels_equal_exact_levels(rec, params):
    """Levels run padded to a few sizes (each on its own compiled function);
    the padding rows change nothing."""
    assert [T.driver.padded(n) for n in (1, 8, 9, 17, 33, 100)] == [1, 8, 10, 20, 40, 112]
    trees, xs, labels = data(n_trees=12, seed=12, leaves=(3, 9))
    assert any(T.driver.padded(len(ids)) != len(ids) for ids in T.TreeBatch(trees).levels)
    exact, pad = (T.compile(rec, target="numpy", pad=p) for p in (False, True))
    (l1, o1), g1 = exact.value_and_grad(params, trees, {"x": xs}, labels, has_aux=True)
    (l2, o2), g2 = pad.value_and_grad(params, trees, {"x": xs}, labels, has_aux=True)
    assert l1 == pytest.approx(l2, rel=1e-13)
    close(g2, g1, tol=1e-12)
    close(o2, o1, tol=1e-12)
    assert len(pad._fns) > 1 and len(exact._fns) == 0


def test_tree_sentiment_example_learns(tmp_path):
    """examples/tasks/tree_sentiment.py: a short run beats chance clearly."""
    folder = str(ROOT / "examples" / "tasks")
    sys.path.insert(0, folder)
    try:
        import tree_sentiment
    finally:
        sys.path.remove(folder)   # not pop(0): importing may put paths in front
    result = tree_sentiment.main(["--target", "numpy", "--steps", "60", "--figure", str(tmp_path / "t.dot")])
    assert result["accuracy"] > 0.75 and (tmp_path / "t.dot").read_text().startswith("digraph")


@pytest.mark.parametrize("shape", ["leaf", "left chain", "right chain", "unary"])
def test_tree_degenerate_shapes(tf, params, shape):
    n = 6
    chain = list(range(1, n)) + [-1]
    left, right = {"leaf": ([-1], [-1]), "left chain": (chain, [-1] * n), "right chain": ([-1] * n, chain),
                   "unary": ([1, -1, -1], [-1, 2, -1])}[shape]
    tree = T.Tree(left, right)
    x = np.random.default_rng(7).standard_normal((tree.n, D))
    loss, grads = tf.value_and_grad(params, [tree], {"x": [x]}, [2])
    ref_loss, ref_grads, _ = reference(params, tree, x, 2)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    close(grads, ref_grads)
    assert len(T.TreeBatch([tree]).levels) == tree.heights().max() + 1


def test_tree_labels_on_every_node(tf, params):
    """Per-node labels (-1: none) average the loss over the labelled nodes."""
    trees, xs, _ = data(n_trees=3, seed=8)
    rng = np.random.default_rng(9)
    node_labels = [np.where(rng.random(t.n) < 0.6, rng.integers(0, K, t.n), -1) for t in trees]
    loss, grads = tf.value_and_grad(params, trees, {"x": xs}, node_labels)
    # the same loss through vjp: cotangents on the logits of the labelled nodes
    out = tf(params, trees, {"x": xs})
    lab = np.concatenate(node_labels)
    nodes = np.flatnonzero(lab >= 0)
    want, d = T.softmax_xent(out["o"][nodes], lab[nodes])
    cot = np.zeros_like(out["o"])
    cot[nodes] = d
    assert loss == pytest.approx(want, rel=1e-12)
    close(grads, tf.vjp(params, trees, {"x": xs}, {"o": cot}))


def test_tree_vjp_of_the_states_against_torch(params, rec):
    torch = pytest.importorskip("torch")
    tf = T.compile(rec, target="numpy")
    trees, xs, _ = data(n_trees=2, seed=10)
    cot = np.random.default_rng(11).standard_normal((T.TreeBatch(trees).n, H))
    got = tf.vjp(params, trees, {"x": xs}, {"h": cot})
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    total = 0
    for t, x, c in zip(trees, xs, T.TreeBatch(trees).split(cot)):
        hs = {-1: torch.zeros(H, dtype=torch.float64)}
        for n in t.order[::-1]:
            l, r = t.children[n]
            hs[n] = torch.tanh(tp["Wl"] @ hs[l] + tp["Wr"] @ hs[r] + tp["U"] @ torch.tensor(x[n]) + tp["b"])
        total = total + sum((hs[n] * torch.tensor(c[n])).sum() for n in range(t.n))
    total.backward()
    close(got, {k: tp[k].grad.numpy() for k in ("Wl", "Wr", "U", "b")})


def test_tree_cuda_in_the_simulator(tmp_path):
    pytest.importorskip("numba.cuda")
    script = ("import numpy as np, unfold as uf\nfrom unfold import tree as T\n"
              f"rec = uf.tree.load({str(MODEL)!r}).bind(H=4, D=10)\np = rec.init_params(seed=0)\n"
              "trees, xs, y = T.sentiment(3, np.random.default_rng(0), leaves=(1, 5))\n"
              "a = T.compile(rec, target='numpy').value_and_grad(p, trees, {'x': xs}, y)\n"
              "b = T.compile(rec, target='cuda').value_and_grad(p, trees, {'x': xs}, y)\n"
              "assert abs(a[0] - b[0]) < 1e-12\n"
              "assert all(np.allclose(a[1][k], b[1][k], atol=1e-12) for k in a[1])\nprint('ok')\n")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "UNFOLD_CACHE_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


# -- the structure -----------------------------------------------------------------------
def test_tree_levels_and_from_parents():
    t = T.Tree.from_parents([-1, 0, 0, 1, 1])
    assert t.children.tolist() == [[1, 2], [3, 4], [-1, -1], [-1, -1], [-1, -1]]
    assert t.heights().tolist() == [2, 1, 0, 0, 0]
    b = T.TreeBatch([t, {"left": [-1], "right": [-1]}])
    assert [lv.tolist() for lv in b.levels] == [[2, 3, 4, 5], [1], [0]]
    assert T.TreeBatch([{"parent": [-1, 0, 0, 1, 1]}]).trees[0].children.tolist() == t.children.tolist()
    assert b.roots.tolist() == [0, 5]
    assert b.children[1].tolist() == [3, 4] and b.children[5].tolist() == [b.n, b.n]


@pytest.mark.parametrize("left, right, match", [
    ([1, 2, 0], [-1, -1, -1], r"a cycle: left\[0\] = 1, left\[1\] = 2, left\[2\] = 0 \(nodes 0 -> 1 -> 2 -> 0\); "
                              r"the tree has no root"),
    ([1, -1, -1, 2], [-1, -1, 3, -1], r"a cycle: right\[2\] = 3, left\[3\] = 2 \(nodes 2 -> 3 -> 2\)$"),
    ([1, 2, -1], [2, -1, -1], r"node 2 has two parents: right\[0\] = 2 and left\[1\] = 2"),
    ([1, 5, -1], [2, -1, -1], r"left\[1\] = 5 is out of range: a tree of 3 nodes"),
    ([1, -1, -1], [-3, -1, -1], r"right\[0\] = -3 is out of range"),
    ([0], [-1], r"left\[0\] = 0: node 0 is its own child"),
    ([1, -1, -1], [-1, -1, -1], r"left/right: nodes 0, 2 have no parent"),
    ([1, -1], [-1], r"left and right must have one entry per node"),
    ([[1]], [[-1]], r"left must be a non-empty 1-D array"),
    ([0.5], [-1], r"left must be a non-empty 1-D array"),
])
def test_tree_malformed_is_an_input_error_naming_the_array(left, right, match):
    with pytest.raises(uf.InputError, match=match):
        T.Tree(left, right)


def test_tree_malformed_errors_name_the_tree_and_the_parent_array(tf, params):
    with pytest.raises(uf.InputError, match=r"trees\[1\]\.left\[0\] = 9 is out of range"):
        T.TreeBatch([([-1], [-1]), ([9], [-1])])
    with pytest.raises(uf.InputError, match=r"a cycle: parent\[2\] = 0, parent\[1\] = 2, parent\[0\] = 1 "
                                            r"\(nodes 0 -> 2 -> 1 -> 0\)"):
        T.Tree.from_parents([1, 2, 0])
    with pytest.raises(uf.InputError, match=r"parent\[1\] = 7 is out of range"):
        T.Tree.from_parents([-1, 7])
    with pytest.raises(uf.InputError, match=r"node 0 has more than 2 children"):
        T.Tree.from_parents([-1, 0, 0, 0])
    trees, xs, labels = data(n_trees=2)
    with pytest.raises(uf.InputError, match=r"`x`\[1\] has shape"):
        tf(params, trees, {"x": [xs[0], xs[1][:-1] if len(xs[1]) > 1 else xs[0][:0]]})
    with pytest.raises(uf.InputError, match=r"missing \['x'\]"):
        tf(params, trees, {})
    with pytest.raises(uf.InputError, match=r"labels must be integer classes in 0..2"):
        tf.value_and_grad(params, trees, {"x": xs}, [0, 3])
    with pytest.raises(uf.InputError, match=r"reads 2 \(h_left, h_right\)"):
        tf(params, [T.Tree.of([[1, -1, -1], [-1, -1, -1]])], {"x": [xs[0][:2]]})


TERNARY = """
H = dim(3)
a = input(H)
m = input(H)
z = input(H)
x = input(2)
A = param(H, H)
U = param(H, 2)
h[t] = tanh(A @ (a[t] + 2 * m[t] - z[t]) + U @ x[t])
"""


def test_tree_of_any_arity_with_a_vjp():
    """A ternary cell (children a, m, z), no logits: the vjp of a cotangent on every node's state."""
    cell = uf.parse(TERNARY, name="ternary")
    p = cell.init_params(seed=3)
    tf = T.compile(cell, target="numpy", children=("a", "m", "z"), logits=None)
    trees = [T.Tree.of([[1, 2, 3], [-1, -1, -1], [4, -1, 5], [-1, -1, -1], [-1, -1, -1], [-1, -1, -1]]),
             T.Tree.from_parents([-1, 0, 0, 0], arity=3)]
    rng = np.random.default_rng(13)
    xs = [rng.standard_normal((t.n, 2)) for t in trees]
    cot = rng.standard_normal((T.TreeBatch(trees).n, 3))
    got = tf.vjp(p, trees, {"x": xs}, {"h": cot})

    def total(q):
        out = 0.0
        for t, x, c in zip(trees, xs, T.TreeBatch(trees).split(cot)):
            hs = {-1: np.zeros(3)}
            for n in t.order[::-1]:
                a, m, z = (hs[k] for k in t.children[n])
                hs[n] = np.tanh(q["A"] @ (a + 2 * m - z) + q["U"] @ x[n])
            out += sum(hs[n] @ c[n] for n in range(t.n))
        return out
    eps = 1e-6
    for name, i in (("A", (0, 1)), ("U", (2, 0))):
        up, down = ({**p, name: p[name].copy()} for _ in range(2))
        up[name][i] += eps
        down[name][i] -= eps
        assert got[name][i] == pytest.approx((total(up) - total(down)) / (2 * eps), rel=1e-6)
    with pytest.raises(uf.ModelError, match="compiled with logits=None"):
        tf.predict(p, trees, {"x": xs})


def test_tree_cell_names_are_checked(rec):
    with pytest.raises(uf.ModelError, match=r"no a child's state \(an input\) named `hz`"):
        T.compile(rec, target="numpy", children=("h_left", "hz"))
    with pytest.raises(uf.ModelError, match="has shape"):
        T.compile(rec, target="numpy", children=("h_left", "x"))


def test_tree_dag_and_drawing():
    t = T.Tree.from_parents([-1, 0, 0, 1, 1])
    dag = T.tree_dag(t)
    assert dag.has_edge("h[3]", "h[1]") and dag.edges["h[4]", "h[1]"]["via"] == "hr"
    assert sorted(n for n in dag if n.startswith("x[")) == ["x[2]", "x[3]", "x[4]"]
    assert dag.has_edge("o[0]", "L")
    src = T.draw_tree(t).source
    assert "3 levels = compiled calls" in src and 'h[3] -> "h[1]"' in src.replace('"h[3]"', "h[3]")


# -- the text: h[left(n)] ------------------------------------------------------------
TREE_BASE = ("H = dim(3)\nK = dim(2)\nx = input(H)\ny = target(K)\nW = param(H, H)\nV = param(K, H)\n"
             "h = state(H, init=0)\n")


def test_the_tree_text_becomes_a_cell_with_the_childrens_states_as_inputs():
    m = T.load(MODEL)
    assert m.children == ("h_left", "h_right") and (m.state, m.logits) == ("h", "o")
    cell = m.cell
    assert {s.name for s in cell.of_role(uf.Role.INPUT)} == {"x", "h_left", "h_right"}
    assert "h[t] = tanh(Wl @ h_left[t] + Wr @ h_right[t] + U @ x[t] + b)" in cell.listing()


@pytest.mark.parametrize("tail, words, line, col", [
    ("h[n] = tanh(W @ h[left(n)] + x[n] + q)\no[n] = V @ h[n]\nloss = mean_n(softmax_cross_entropy(o[n], y[n]))\n",
     "unknown name `q`", 8, 37),
    ("h[n] = tanh(W @ h[t-1] + x[n])\no[n] = V @ h[n]\nloss = mean_n(softmax_cross_entropy(o[n], y[n]))\n",
     "indexes by the node", 8, 17),
    ("h[n] = tanh(W @ x[left(n)])\no[n] = V @ h[n]\nloss = mean_n(softmax_cross_entropy(o[n], y[n]))\n",
     "only the state `h` is read at a child", 8, 17),
    ("h[n] = tanh(W @ h[left(n)] + x[n])\no[n] = V @ h[n]\nloss = sum_n(sum(o[n]))\n",
     "mean cross-entropy over its labelled nodes", 10, 8),
    ("g = state(H, init=0)\nh[n] = tanh(W @ h[left(n)] + x[n])\n", "has one state", 8, 1),
])
def test_tree_text_errors_point_at_the_file(tail, words, line, col):
    with pytest.raises(uf.ModelError, match=words) as info:
        T.parse_tree(TREE_BASE + tail, "t.rnn")
    e = info.value
    assert (e.loc.file, e.loc.line, e.loc.col) == ("t.rnn", line, col), str(e)
    assert e.expected


def test_cli_checks_and_draws_a_tree_network(tmp_path, capsys):
    from unfold.tools import cli
    assert cli.main(["check", str(MODEL), "--target", "cpu", "--batch", "3", "--dims", "H=4,D=3"]) == 0
    assert "gradient check: passed" in capsys.readouterr().out
    out = tmp_path / "tree.dot"
    assert cli.main(["draw", str(MODEL), "--view", "unfolded", "--tau", "4", "-o", str(out)]) == 0
    assert "h_left" in out.read_text() and "levels = compiled calls" in out.read_text()
    assert cli.main(["run", str(MODEL), "--tau", "2"]) == 2
    assert "a tree model" in capsys.readouterr().err
