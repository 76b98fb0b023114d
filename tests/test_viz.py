"""unfold.viz: the graphviz source of every view, counted, and real SVG from `dot`.

Counts are functions of τ worked out by hand from the textbook picture, not
golden files: the Elman net unfolded for τ steps has 5τ + 2 nodes (x, h, o,
L, y per step, plus h(0) and the summed L) and 6τ edges.
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import unfold
from unfold import viz
from unfold.lang.errors import UnfoldError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")
_STMT = re.compile(r'^\s*("(?:[^"\\]|\\.)*"|[\w/~]+)\s*(->\s*("(?:[^"\\]|\\.)*"|[\w/~]+))?\s*(\[.*\])?\s*$')


def load(name):
    return unfold.load(str(MODELS / f"{name}.rnn"))


def statements(g):
    """(nodes, edges) of a graphviz source: node -> attr text, [(u, v, attr text)]."""
    nodes, edges = {}, []
    for line in g.source.splitlines():
        m = _STMT.match(line)
        if not m or m.group(1) in ("graph", "node", "edge"):
            continue
        u, v, attrs = m.group(1).strip('"'), m.group(3), m.group(4) or ""
        if v:
            edges.append((u, v.strip('"'), attrs))
        else:
            nodes[u] = attrs
    return nodes, edges


def visible(edges):
    return [e for e in edges if "style=invis" not in e[2]]


def labelled(edges, label):
    return [e for e in edges if re.search(rf'\blabel="?{re.escape(label)}"?[ \]]', e[2])]


@pytest.mark.parametrize("tau", [1, 2, 5])
def test_unfolded_counts_follow_tau(tau):
    nodes, edges = statements(viz.draw(load("elman"), view="unfolded", tau=tau))
    assert len(nodes) == 5 * tau + 2
    assert len(visible(edges)) == 6 * tau
    for param in ("U", "W", "V"):  # parameter sharing: the same label at every step
        assert len(labelled(edges, param)) == tau
    assert {f"h[{t}]" for t in range(tau + 1)} <= set(nodes)


def test_window_puts_ellipses_at_both_ends():
    nodes, edges = statements(viz.draw(load("elman"), view="unfolded", tau=3, window=True))
    dots = [n for n, a in nodes.items() if "…" in a]
    assert sorted(dots) == ["h[0]", "h[4]"]
    assert ("h[3]", "h[4]") in {(u, v) for u, v, _ in edges}


@pytest.mark.parametrize("model, squares", [("elman", 1), ("skip", 3), ("lstm", 5), ("jordan", 1),
                                             ("birnn", 2), ("teacher", 1)])
def test_circuit_has_one_delay_marker_per_delayed_edge(model, squares):
    rec = load(model)
    nodes, edges = statements(viz.draw(rec, view="circuit"))
    markers = [n for n, a in nodes.items() if "shape=square" in a]
    assert len(markers) == squares == viz.circuit.delayed_edge_count(rec)
    for m in markers:  # each square sits on exactly one path u -> ■ -> v
        assert sum(m in (u, v) for u, v, _ in edges) == 2


def test_circuit_labels_edges_with_params():
    nodes, edges = statements(viz.draw(load("elman"), view="circuit"))
    assert set(nodes) >= {"x", "h", "o", "loss", "y"}
    assert [len(labelled(edges, p)) for p in "UV"] == [1, 1]
    assert any("xlabel=W" in a for *_, a in edges)  # the loop's label


def test_backward_state_points_back_in_time():
    _, edges = statements(viz.draw(load("birnn"), view="unfolded", tau=4))
    g_edges = [(u, v, a) for u, v, a in visible(edges) if u.startswith("g[") and v.startswith("g[")]
    assert len(g_edges) == 4
    for u, v, a in g_edges:  # laid out left to right, arrow drawn back at g(t)
        assert int(u[2:-1]) + 1 == int(v[2:-1]) and "dir=back" in a


@pytest.mark.parametrize("tau", [2, 4])
def test_gradient_overlay(tau):
    nodes, edges = statements(viz.draw(load("elman"), view="gradient", tau=tau))
    red = [e for e in edges if viz.style.GRAD_COLOR in e[2]]
    into_params = [e for e in red if e[0].startswith("grad/")]
    assert len(into_params) == 2 * tau     # h(t) -> Σ ∂L/∂U,W,b and o(t) -> Σ ∂L/∂V,c
    assert len(red) - len(into_params) == 4 * tau  # L->L(t), L(t)->o(t), o(t)->h(t), h(t)->h(t-1)
    assert len(labelled(red, "Wᵀ")) == tau
    assert {"grad/h", "grad/o"} <= set(nodes)


def test_ops_view_draws_the_op_dag():
    rec, tau = load("elman"), 2
    dag = unfold.unfold(rec, tau, level="op")
    nodes, edges = statements(viz.draw(rec, view="ops", tau=tau))
    assert len(nodes) == dag.number_of_nodes()
    holds = tau  # one hold edge per state instance, hidden by default
    assert len(visible(edges)) == dag.number_of_edges() - holds
    _, with_hold = statements(viz.draw(rec, view="ops", tau=tau, hold=True))
    assert len(visible(with_hold)) == dag.number_of_edges()


def test_dropout_is_written_on_its_edge():
    c = unfold.circuit(load("dropout"))
    assert c.edges["h", "r", 0]["dropout"] == ((0.25, True),)
    assert c.edges["h", "logits", 0] == {"delay": 0, "params": ("Vo",), "dropout": ((0.5, False),)}
    partly = unfold.parse("H = dim(2)\nx = input(H)\nW = param(H, H)\nU = param(H, H)\nh = state(H, init=0)\n"
                          "h[t] = tanh(W @ dropout(h[t-1], 0.5) + U @ h[t-1] + x[t])\n")
    assert unfold.circuit(partly).edges["h", "h", 0]["dropout"] == (), "only one of two paths is dropped"
    _, edges = statements(viz.draw(load("dropout"), view="circuit"))
    assert len([e for e in edges if r'label="Emb\ndropout 0.25 (variational)"' in e[2]]) == 1
    _, edges = statements(viz.draw(load("dropout"), view="unfolded", tau=2))
    assert len([e for e in edges if r'label="Vo\ndropout 0.5"' in e[2]]) == 2
    _, edges = statements(viz.draw(load("dropout"), view="gradient", tau=2))
    assert not [e for e in edges if "dropout" in e[2] and "dir=back" in e[2]], "red arrows: transposed params only"


def test_circuits_side_by_side():
    g = viz.draw_compare([load("teacher"), load("jordan")], ["train time", "test time"], view="circuit")
    assert g.source.count("subgraph cluster_") == 2 and "rankdir=BT" in g.source
    with pytest.raises(UnfoldError, match="draws `cell` or `circuit`"):
        viz.draw_compare([load("elman")], view="ops")


def test_the_chapter_10_gallery_is_current(monkeypatch):
    """docs/figures.md's gallery section is what examples/figures/gallery.py writes,
    its images exist, and every model it shows loads."""
    spec = importlib.util.spec_from_file_location("unfold_gallery", ROOT / "examples" / "figures" / "gallery.py")
    gallery = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "unfold_gallery", gallery)   # its dataclass looks itself up there
    spec.loader.exec_module(gallery)
    page = (ROOT / "docs" / "figures.md").read_text()
    section = page[page.index(gallery.BEGIN):page.index(gallery.END) + len(gallery.END)]
    assert section == gallery.markdown(), "run python examples/figures/make_figures.py --gallery"
    assert [f.number for f in gallery.FIGURES] == ["10.1", "10.2", "10.3", "10.4", "10.5", "10.6", "10.11",
                                                   "10.12", "10.13", "10.14", "10.16"]
    for f in gallery.FIGURES:
        assert f.image.is_file(), f.image
        for m in f.models:
            gallery.load(m)


def test_cell_shows_every_matrix_once_and_compare_clusters():
    nodes, _ = statements(viz.draw(load("lstm"), view="cell"))
    boxes = [a for a in nodes.values() if "shape=box" in a]
    assert len(boxes) == 8  # Wi..Wo, Ui..Uo
    assert {"h[t-1]", "c[t-1]", "x[t]", "h[t]", "c[t]"} <= set(nodes)
    g = viz.draw_compare([load("elman"), load("lstm"), load("gru")])
    assert g.source.count("subgraph cluster_") == 3


def test_refuses_long_unfoldings_unless_forced():
    rec = load("elman")
    for view in ("unfolded", "ops", "gradient"):
        with pytest.raises(UnfoldError, match="force"):
            viz.draw(rec, view=view, tau=51)
    nodes, _ = statements(viz.draw(rec, view="unfolded", tau=51, force=True))
    assert len(nodes) == 5 * 51 + 2
    viz.draw(rec, view="circuit", tau=1000)  # tau means nothing to the circuit


def test_unknown_view_and_suffix():
    with pytest.raises(UnfoldError, match="unknown view"):
        viz.draw(load("elman"), view="sideways")
    with pytest.raises(UnfoldError, match=r"\.svg"):
        viz.save(viz.draw(load("elman")), "x.jpeg")


def test_without_dot_only_dot_files_are_written(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` on it
    g = viz.draw(load("elman"), view="side-by-side")
    assert viz.save(g, tmp_path / "e.dot").read_text() == g.source
    with pytest.raises(UnfoldError, match="apt-get install graphviz"):
        viz.save(g, tmp_path / "e.svg")
    assert not (tmp_path / "e.svg").exists()


@needs_dot
@pytest.mark.parametrize("view", viz.VIEWS)
def test_real_svg_parses_with_expected_titles(tmp_path, view):
    rec = load("elman")
    path = viz.save(viz.draw(rec, view=view, tau=2), tmp_path / f"elman_{view}.svg")
    root = ET.parse(path).getroot()
    ns = {"s": "http://www.w3.org/2000/svg"}
    titles = {g.find("s:title", ns).text for g in root.iter("{http://www.w3.org/2000/svg}g")
              if g.get("class") == "node"}
    expected = {"circuit": {"x", "h", "o", "loss", "y"}, "cell": {"h[t-1]", "x[t]", "h[t]", "o[t]"},
                "ops": {"h[1]/4~tanh", "W", "loss"}}.get(view, {"h[0]", "h[1]", "h[2]", "x[2]", "loss"})
    assert expected <= titles


@needs_dot
def test_png_is_written(tmp_path):
    path = viz.save(viz.draw(load("lstm"), view="cell"), tmp_path / "lstm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
