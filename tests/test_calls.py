"""What a compiled function offers a training loop, on the numpy and CPU targets:

- `wrt`: only the gradients asked for, equal to the full ones, and no BPTT
  where none is needed (an echo-state readout);
- `has_aux` (the outputs beside the loss) and `return_state` (each state's
  final value): chunks of a long sequence carried by `init` equal one run;
- `vjp`: gradients of outside losses of any outputs, against finite differences;
- `step`: one step at a time equals the forward pass, in microseconds.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import unfold as uf
from gradcheck import random_run, rel_error
from unfold.compiler.listing import listing

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
TARGETS = ["numpy", "cpu"]


def small(name, **dims):
    rec = uf.load(MODELS / f"{name}.rnn")
    return rec.bind(**{d: dims.get(d, 3) for d in rec.dims})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("calls")


def compiled(name, target, cache, **dims):
    return uf.compile(small(name, **dims), target=target, dtype=np.float64, cache_dir=cache)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["lstm", "birnn", "skip", "stacked"])
def test_wrt_computes_only_what_is_asked(name, target, cache):
    fn = compiled(name, target, cache)
    run = random_run(fn.rec, 5, 2, seed=1)
    loss, full = fn.value_and_grad(run.params, run.inputs, run.targets, **run.kwargs())
    params = {s.name for s in fn.rec.of_role(uf.Role.PARAM)}
    for wrt in ("params", sorted(params)[:2], ["x"], [f"init:{fn.rec.states[0].name}"]):
        got_loss, grads = fn.value_and_grad(run.params, run.inputs, run.targets, wrt=wrt, **run.kwargs())
        want = params if wrt == "params" else set(wrt)
        assert got_loss == loss and set(grads) == want
        assert all(rel_error(grads[k], full[k]) <= 1e-12 for k in want)


def test_wrt_refuses_what_is_not_there(cache):
    fn = compiled("elman", "numpy", cache)
    run = random_run(fn.rec, 3, 2)
    for bad in (["Q"], ["y"], ["init:q"], "everything"):
        with pytest.raises(uf.InputError, match="is not a param, an input or an initial state"):
            fn.value_and_grad(run.params, run.inputs, run.targets, wrt=bad)


def test_wrt_an_echo_state_readout_runs_no_bptt(cache):
    """The reservoir is a const: training the readout needs no adjoint of h."""
    fn = compiled("esn", "cpu", cache, H=5)
    text = listing(fn.program(False, frozenset({"V", "c"})))
    assert "dS_h" not in text and "M_h_m1 adjoint" not in text
    run = random_run(fn.rec, 6, 2, seed=2)
    _, grads = fn.value_and_grad(run.params, run.inputs, run.targets, wrt="params")
    _, ref = uf.value_and_grad(fn.rec, run.params, run.inputs, run.targets)
    assert all(rel_error(grads[k], ref[k]) <= 1e-12 for k in ("V", "c"))


@pytest.mark.parametrize("target", TARGETS)
def test_has_aux_and_return_state(target, cache):
    fn = compiled("lstm", target, cache)
    run = random_run(fn.rec, 6, 2, seed=3)
    (loss, aux), grads, state = fn.value_and_grad(run.params, run.inputs, run.targets, has_aux=True,
                                                  return_state=True, **run.kwargs())
    out, state2 = fn(run.params, run.inputs, run.targets, return_state=True, **run.kwargs())
    assert loss == pytest.approx(out["loss"], rel=1e-14)
    assert all(np.array_equal(aux[k], out[k]) for k in ("h", "c", "i"))
    for s in ("h", "c"):
        np.testing.assert_array_equal(state[s], out[s][-1])
        np.testing.assert_array_equal(state2[s], out[s][-1])


@pytest.mark.parametrize("target", TARGETS)
def test_return_state_carries_a_long_sequence_across_chunks(target, cache):
    fn = compiled("gru", target, cache)
    run = random_run(fn.rec, 8, 2, seed=4, with_init=False)
    whole = fn(run.params, run.inputs, run.targets)
    first, state = fn(run.params, {"x": run.inputs["x"][:4]}, {"y": run.targets["y"][:4]}, return_state=True)
    second = fn(run.params, {"x": run.inputs["x"][4:]}, {"y": run.targets["y"][4:]}, init=state)
    np.testing.assert_allclose(np.concatenate([first["h"], second["h"]]), whole["h"], rtol=1e-13)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["lstm", "birnn", "jordan"])
def test_vjp_of_outside_losses_against_finite_differences(name, target, cache):
    fn = compiled(name, target, cache)
    run = random_run(fn.rec, 5, 2, seed=5)
    out = fn(run.params, run.inputs, run.targets, **run.kwargs())
    rng = np.random.default_rng(0)
    cot = {k: rng.normal(size=v.shape) for k, v in out.items() if k != "loss"}
    cot["loss"] = 0.5
    grads = fn.vjp(run.params, run.inputs, cot, run.targets, **run.kwargs())

    def outside(params, inputs):
        o = fn(params, inputs, run.targets, **run.kwargs())
        return sum(float((c * o[k]).sum()) for k, c in cot.items() if k != "loss") + 0.5 * o["loss"]
    for key, store in [(k, "params") for k in run.params if fn.rec.symbols[k].role is uf.Role.PARAM] + [("x", "inputs")]:
        tree = dict(run.params if store == "params" else run.inputs)
        v = rng.normal(size=tree[key].shape)
        plus, minus = dict(tree), dict(tree)
        plus[key], minus[key] = tree[key] + 1e-6 * v, tree[key] - 1e-6 * v
        args = (lambda t: (t, run.inputs)) if store == "params" else (lambda t: (run.params, t))
        numeric = (outside(*args(plus)) - outside(*args(minus))) / 2e-6
        assert float((grads[key] * v).sum()) == pytest.approx(numeric, rel=1e-6, abs=1e-8), key


def test_vjp_refuses_unknown_outputs_and_bad_shapes(cache):
    fn = compiled("elman", "numpy", cache)
    run = random_run(fn.rec, 3, 2)
    with pytest.raises(uf.InputError, match="which is no output"):
        fn.vjp(run.params, run.inputs, {"q": np.zeros((3, 2, 3))})
    with pytest.raises(uf.InputError, match=r"expected floats of shape \[3, 2, 3\]"):
        fn.vjp(run.params, run.inputs, {"h": np.zeros((3, 2))})


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["lstm", "birnn", "dropout"])
def test_forward_vjp_pulls_back_what_vjp_computes(name, target, cache):
    """The forward pass once, its values kept: the values are fn(...)'s, the pullback fn.vjp's,
    with lengths, truncation and (training mode) dropout."""
    fn = compiled(name, target, cache)
    run = replace(random_run(fn.rec, 5, 3, seed=6), lengths=np.array([5, 2, 4]), seed=4)
    kw = run.kwargs()
    outputs = [s.name for s in fn.rec.of_role(uf.Role.STATE)] + ["loss"]
    values, pullback = fn.forward_vjp(run.params, run.inputs, outputs, run.targets, truncate=2, **kw)
    want = fn(run.params, run.inputs, run.targets, **kw)
    assert set(values) == set(want) and all(np.array_equal(values[k], want[k]) for k in want)
    rng = np.random.default_rng(1)
    cot = {k: rng.normal(size=want[k].shape) for k in outputs if k != "loss"} | {"loss": 0.5}
    wanted = fn.vjp(run.params, run.inputs, cot, run.targets, truncate=2, **kw)
    for grads in (pullback(cot), pullback(cot)):   # twice: the same
        assert set(grads) == set(wanted)
        for k in wanted:
            np.testing.assert_allclose(grads[k], wanted[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_forward_vjp_runs_the_forward_again_once_its_values_are_overwritten(cache):
    fn = compiled("lstm", "cpu", cache)
    first, second = random_run(fn.rec, 4, 2, seed=1), random_run(fn.rec, 4, 2, seed=2)
    cot = {"h": np.ones((4, 2, 3))}
    _, pullback = fn.forward_vjp(first.params, first.inputs, ["h"])
    fn.forward_vjp(second.params, second.inputs, ["h"])   # the same plan: the first's values are gone
    grads, wanted = pullback(cot), fn.vjp(first.params, first.inputs, cot)
    for k in wanted:
        np.testing.assert_allclose(grads[k], wanted[k], rtol=1e-12, err_msg=k)
    with pytest.raises(uf.InputError, match="this pullback takes h"):
        pullback({"c": np.ones((4, 2, 3))})
    with pytest.raises(uf.InputError, match="which is no output"):
        fn.forward_vjp(first.params, first.inputs, ["q"])
    with pytest.raises(uf.InputError, match="outputs names what the pullback takes"):
        fn.forward_vjp(first.params, first.inputs, [])
    values, pullback = fn.forward_vjp(first.params, first.inputs, "h")   # one name
    np.testing.assert_allclose(pullback(cot)["Wi"], wanted["Wi"], rtol=1e-12)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["lstm", "gru", "skip", "stacked", "jordan", "dynamical"])
def test_step_by_step_equals_the_forward_pass(name, target, cache):
    """skip reads h[t-2]: its state carries two steps of history."""
    fn = compiled(name, target, cache)
    run = random_run(fn.rec, 6, 2, seed=6, with_init=False)
    whole = fn(run.params, run.inputs, run.targets, tau=run.tau, batch=run.batch)
    step = fn.stepper(run.params, batch=2)
    state = step.initial()
    for t in range(6):
        out, state = step({k: v[t] for k, v in run.inputs.items()}, state)
        for k, v in out.items():
            np.testing.assert_allclose(v, whole[k][t], rtol=1e-13, atol=1e-15, err_msg=f"{k} at step {t + 1}")
    once = fn.step(run.params, {k: v[0] for k, v in run.inputs.items()} or {}, None)[0]
    assert all(np.allclose(once[k], whole[k][0]) for k in once)


@pytest.mark.parametrize("name", ["birnn", "teacher"])
def test_step_refuses_what_cannot_run_one_step_at_a_time(name, cache):
    fn = compiled(name, "numpy", cache)
    with pytest.raises(uf.ModelError, match="cannot be run one step at a time"):
        fn.stepper(fn.rec.init_params(0))


def test_step_checks_its_inputs(cache):
    fn = compiled("lstm", "numpy", cache)
    step = fn.stepper(fn.rec.init_params(0), batch=2)
    with pytest.raises(uf.InputError, match=r"input `x` of a step must have shape \[2, 3\]"):
        step({"x": np.zeros((3, 3))})
