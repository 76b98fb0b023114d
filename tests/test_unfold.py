"""Every zoo model parses, binds, unfolds and evaluates; listing, circuit, export."""
import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import unfold as uf
from gradcheck import random_run
from test_gradients import SMALL
from unfold.lang.ir import reads
from unfold.graph.unfolding import export

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
TAUS = (3, 5, 8)


def model(name):
    return uf.load(MODELS / f"{name}.rnn").bind(**SMALL[name])


def linear_fit(counts):
    """(a, b) with counts = a * tau + b at every tau, or fail."""
    a = (counts[1] - counts[0]) / (TAUS[1] - TAUS[0])
    b = counts[0] - a * TAUS[0]
    for tau, n in zip(TAUS, counts):
        assert n == a * tau + b, f"not linear in tau: {dict(zip(TAUS, counts))}"
    return a, b


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("level", ["op", "var"])
def test_zoo_unfolds_acyclic_and_linear(name, level):
    rec = model(name)
    counts = []
    for tau in TAUS:
        dag = uf.unfold(rec, tau, level=level)
        assert isinstance(dag, nx.DiGraph) and nx.is_directed_acyclic_graph(dag)
        assert dag.graph["tau"] == tau
        counts.append(dag.number_of_nodes())
    a, _ = linear_fit(counts)
    assert a >= len(rec.equations) + 1, "each step holds every equation's instance and its inputs"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_params_appear_once_and_every_step_reads_them(name):
    rec = model(name)
    tau = 5
    dag = uf.unfold(rec, tau)
    in_equations = {r.name for e in rec.equations for r in reads(e.expr)}
    for s in rec.params:
        matches = [n for n in dag if n == s.name or n.startswith(s.name + "[")]
        assert matches == [s.name], f"{s.name} appears as {matches}"
        a = dag.nodes[s.name]
        assert a["kind"] in (uf.Kind.PARAM, uf.Kind.CONST) and a["t"] is None and a["shape"] == s.shape
        steps = {dag.nodes[v]["t"] for v in dag.successors(s.name)}
        if s.name in in_equations:
            assert set(range(1, tau + 1)) <= steps, f"{s.name} read at steps {sorted(steps)}"


def test_elman_node_counts_by_hand():
    """var level: 5 params, x/y/h/o/loss term per step, h[0] and the loss."""
    rec = model("elman")
    for tau in TAUS:
        dag = uf.unfold(rec, tau, level="var")
        assert dag.number_of_nodes() == 5 * tau + 7
        assert dag.has_edge("h[0]", "h[1]") and dag.edges["h[0]", "h[1]"]["delay"] == 1
        assert {u for u in dag.predecessors(f"h[{tau}]")} == {"W", "U", "b", f"x[{tau}]", f"h[{tau - 1}]"}
        assert dag.in_degree("loss") == tau


def test_delays_and_initial_nodes():
    skip = uf.unfold(model("skip"), 4, level="var")
    assert {n for n, a in skip.nodes(data=True) if a["kind"] is uf.Kind.INIT} == {"h[0]", "h[-1]", "s[0]"}
    assert skip.edges["h[-1]", "h[1]"]["delay"] == 2
    birnn = uf.unfold(model("birnn"), 4, level="var")
    assert {n for n, a in birnn.nodes(data=True) if a["kind"] is uf.Kind.INIT} == {"h[0]", "g[5]"}
    assert birnn.has_edge("g[2]", "g[1]") and not birnn.has_edge("g[1]", "g[2]")
    seq2one = uf.unfold(model("seq2one"), 4, level="var")
    assert list(seq2one.predecessors("loss")) == ["loss[4]"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_zoo_evaluates(name):
    rec = model(name)
    tau, batch = 4, 3
    run = random_run(rec, tau, batch, seed=1, with_init=False)
    out = uf.evaluate(rec, run.params, run.inputs, run.targets, tau=run.tau, batch=run.batch)
    for s in rec.of_role(uf.Role.STATE, uf.Role.INTER):
        assert out[s.name].shape == (tau, batch) + (s.shape or (1,)), s.name
        assert np.all(np.isfinite(out[s.name]))
    assert isinstance(out["loss"], float) and np.isfinite(out["loss"])


def test_listing_shows_the_equations():
    text = model("elman").listing()
    for line in ("h[t] = tanh(W @ h[t-1] + U @ x[t] + b)", "o[t] = V @ h[t] + c",
                 "loss = sum_t(mse(o[t], y[t]))", "H = 3", "D = 2"):
        assert line in text, line
    lstm = model("lstm").listing()
    assert "c[t] = f[t] * c[t-1] + i[t] * g[t]" in lstm and "h[t] = o[t] * tanh(c[t])" in lstm
    soft = model("softsign").listing()
    assert "softsign" in soft and "functions" in soft


@pytest.mark.parametrize("name", sorted(SMALL))
def test_zoo_listing_has_every_equation(name):
    rec = model(name)
    text = rec.listing()
    for eq in rec.equations:
        assert f"  {eq.name}[t] = " in text
    # the listing is parseable text for the equations: every read appears
    for eq in rec.equations:
        for r in reads(eq.expr):
            assert r.name in text


def test_circuit_marks_delays_and_params():
    g = uf.circuit(model("elman"))
    assert isinstance(g, nx.MultiDiGraph)
    (hh,) = g.get_edge_data("h", "h").values()
    assert hh["delay"] == 1 and hh["params"] == ("W",)
    (xh,) = g.get_edge_data("x", "h").values()
    assert xh["delay"] == 0 and xh["params"] == ("U",)
    skip = uf.circuit(model("skip"))
    assert sorted(d["delay"] for d in skip.get_edge_data("h", "h").values()) == [1, 2]


@pytest.mark.parametrize("suffix", [".json", ".graphml"])
@pytest.mark.parametrize("name", ["lstm", "birnn"])
def test_export_round_trips(tmp_path, name, suffix):
    dag = uf.unfold(model(name), 3)
    path = tmp_path / f"{name}{suffix}"
    export(dag, str(path))
    if suffix == ".json":
        back = nx.node_link_graph(json.loads(path.read_text()), edges="edges")
    else:
        back = nx.read_graphml(path)
    assert set(back.nodes) == set(dag.nodes)
    assert set(back.edges) == set(dag.edges)
    assert nx.is_directed_acyclic_graph(back)
    for n, a in dag.nodes(data=True):
        assert back.nodes[n]["kind"] == a["kind"].value
    delays = {(u, v): d["delay"] for u, v, d in dag.edges(data=True) if "delay" in d}
    assert {(u, v): int(d["delay"]) for u, v, d in back.edges(data=True) if "delay" in d} == delays


def test_export_rejects_unknown_formats(tmp_path):
    with pytest.raises(ValueError):
        export(uf.unfold(model("elman"), 2), str(tmp_path / "g.txt"))
