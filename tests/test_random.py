"""Hypothesis: random recurrences unfold to acyclic graphs linear in tau and
pass the finite-difference check."""
import networkx as nx
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings

import unfold as uf
from gradcheck import check_model, random_run
from randrec import random_model

TAUS = (4, 6, 9)   # all >= the largest delay (3): the initial nodes are all there


def node_counts(rec, level):
    counts = []
    for tau in TAUS:
        dag = uf.unfold(rec, tau, level=level)
        assert nx.is_directed_acyclic_graph(dag)
        counts.append(dag.number_of_nodes())
    return counts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_model())
def test_random_recurrences_unfold_linearly(case):
    text, _, _ = case
    rec = uf.parse(text)
    for level in ("op", "var"):
        n = node_counts(rec, level)
        # n(tau) = a * tau + b exactly: equal slopes between three taus
        slope = (n[1] - n[0]) // (TAUS[1] - TAUS[0])
        assert (n[1] - n[0]) == slope * (TAUS[1] - TAUS[0]), (level, n)
        assert n[2] - n[1] == slope * (TAUS[2] - TAUS[1]), (level, n)
        # a step holds at least one node per equation
        assert slope >= len(rec.equations), (level, n)
    dag = uf.unfold(rec, TAUS[0])
    params = {n for n, a in dag.nodes(data=True) if a["kind"] is uf.Kind.PARAM}
    assert params <= {s.name for s in rec.params}, "a param appears once, under its own name"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_model(max_states=2, max_depth=2))
def test_random_recurrences_pass_the_gradient_check(case):
    text, tau, batch = case
    rec = uf.parse(text)
    run = random_run(rec, tau=min(tau, 4), batch=min(batch, 2), seed=tau)
    errors = check_model(rec, run, floor=1e-3)
    bad = {k: v for k, v in errors.items() if not v <= 1e-6}
    assert not bad, f"{bad}\n{text}"


@pytest.mark.parametrize("feature", ['direction="backward"', "def ", "concat(", "[t-3]", "[t+2]",
                                     "init=p", "last_t(", "softmax_cross_entropy(", "mean(", "@"])
def test_the_generator_reaches_every_feature(feature):
    """The strategy can produce each feature it promises (and the result parses)."""
    text, _, _ = find(random_model(), lambda case: feature in case[0],
                      settings=settings(max_examples=2000, database=None, phases=[Phase.generate]))
    assert uf.parse(text).equations
