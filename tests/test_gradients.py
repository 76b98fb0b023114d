"""Every zoo model's BPTT against central finite differences; gradient tools."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import unfold as uf
from unfold.lang.zoo import zoo_names
import cells
from gradcheck import check_model, random_run, rel_error

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
TOL = 1e-6

#: small dims for every zoo model; a new model file must be added here
SMALL = {
    "birnn": dict(H=3, D=2, K=2),
    "dropout": dict(V=4, E=2, H=3),
    "dynamical": dict(S=3),
    "elman": dict(H=3, D=2, K=2),
    "esn": dict(H=4, D=2, K=2),
    "gru": dict(H=3, D=2),
    "jordan": dict(H=3, D=2, K=3),
    "lstm": dict(H=3, D=2),
    "seq2one": dict(H=3, D=2, K=3),
    "skip": dict(H=3, D=2),
    "softsign": dict(H=3, D=2),
    "stacked": dict(H1=3, H2=2, D=2, K=2),
    "teacher": dict(H=3, D=2, K=2),
}


def model(name):
    return uf.load(MODELS / f"{name}.rnn").bind(**SMALL[name])


def assert_passes(errors):
    bad = {k: v for k, v in errors.items() if not v <= TOL}
    assert not bad, f"finite-difference check failed: {bad}"


def test_every_zoo_model_is_checked():
    """Every one-recurrence zoo model (test_encoder_decoder and test_seqloss check the others)."""
    assert set(zoo_names("recurrence")) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_zoo_gradients(name):
    rec = model(name)
    tau = {"skip": 6, "dynamical": 4}.get(name, 4)
    run = replace(random_run(rec, tau=tau, batch=2, seed=len(name)), seed=len(name))   # training mode: dropout
    errors = check_model(rec, run)
    assert_passes(errors)
    assert {k[5:] for k in errors if k.startswith("init:")} == {s.name for s in rec.states}


def test_dynamical_init_param_gets_the_gradient():
    """No inputs at all (tau= and batch=); the initial state is the param s0."""
    rec = model("dynamical")
    run = random_run(rec, tau=5, batch=2, seed=3, with_init=False)
    assert run.tau == 5 and run.batch == 2 and not run.inputs
    errors = check_model(rec, run)
    assert_passes(errors)
    _, grads = uf.value_and_grad(rec, run.params, {}, {}, tau=5, batch=2)
    assert np.abs(grads["s0"]).max() > 1e-3
    # s0 broadcast over the batch: its gradient is the sum of init:s over sequences
    assert np.allclose(grads["s0"], grads["init:s"].sum(axis=0), rtol=1e-12, atol=1e-14)


def test_esn_consts_get_no_gradient():
    rec = model("esn")
    run = random_run(rec, tau=4, batch=2, seed=1)
    _, grads = uf.value_and_grad(rec, run.params, run.inputs, run.targets)
    assert "R" not in grads and "Win" not in grads
    assert "y" not in grads, "targets get no gradient"
    assert set(grads) == {"V", "c", "x", "init:h"}
    assert np.abs(grads["V"]).max() > 0


def test_skip_reads_two_steps_back():
    """A delay-2 read: h[2] must depend on the initial state through h[0]."""
    rec = model("skip")
    run = random_run(rec, tau=5, batch=2, seed=2)
    dag = uf.unfold(rec, 5)
    step2 = [n for n in dag if n.startswith("h[2]/")]
    assert any(u == "h[0]" and d["delay"] == 2 for u, _, d in dag.in_edges(step2, data=True))
    assert_passes(check_model(rec, run))


@pytest.mark.parametrize("name,lengths", [("elman", [4, 2]), ("birnn", [2, 4]), ("lstm", [3, 1])])
def test_variable_length_gradients(name, lengths):
    rec = model(name)
    run = random_run(rec, tau=4, batch=2, seed=5, lengths=lengths)
    errors = check_model(rec, run)
    assert_passes(errors)
    _, grads = uf.value_and_grad(rec, run.params, run.inputs, run.targets, init=run.init,
                                 lengths=np.array(lengths))
    short = int(np.argmin(lengths))
    assert np.all(grads["x"][min(lengths):, short] == 0), "masked steps contribute nothing"
    assert np.abs(grads["x"][: min(lengths), short]).max() > 0


def test_truncated_gradient_is_what_the_cut_graph_computes():
    """Truncated BPTT is not the true gradient (FD disagrees) but is deterministic."""
    rec = model("elman")
    run = random_run(rec, tau=5, batch=2, seed=8)
    errors = check_model(rec, run, truncate=2)
    assert errors["W"] > 1e-4 and errors["V"] <= TOL


def test_gradcheck_catches_a_wrong_gradient():
    rec = model("elman")
    run = random_run(rec, tau=3, batch=2, seed=1)

    def wrong(*args, **kw):
        loss, g = uf.value_and_grad(*args, **kw)
        return loss, {**g, "b": g["b"] * 1.001}

    errors = check_model(rec, run, value_and_grad=wrong)
    assert errors["b"] > 1e-4 and errors["W"] <= TOL


def test_clip_grad_norm():
    rng = np.random.default_rng(0)
    grads = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=5)}
    norm = np.sqrt(sum((g ** 2).sum() for g in grads.values()))
    clipped, reported = uf.clip_grad_norm(grads, max_norm=norm / 4)
    assert reported == pytest.approx(norm, rel=1e-12)
    new = np.sqrt(sum((g ** 2).sum() for g in clipped.values()))
    assert new == pytest.approx(norm / 4, rel=1e-9)
    for k in grads:
        np.testing.assert_allclose(clipped[k], grads[k] / 4, rtol=1e-9)
    same, reported = uf.clip_grad_norm(grads, max_norm=2 * norm)
    assert reported == pytest.approx(norm, rel=1e-12)
    for k in grads:
        np.testing.assert_array_equal(same[k], grads[k])


def test_jacobian_norms_match_the_hand_chain_rule():
    rec = model("elman")
    rng = np.random.default_rng(9)
    p = {k: rng.normal(0, 0.8, v.shape) for k, v in rec.init_params(9).items()}
    x = rng.normal(size=(6, 2, 2))
    norms = uf.jacobian_norms(rec, p, {"x": x})
    J = cells.elman_jacobians(p, x)
    want = np.linalg.norm(J, ord=2, axis=(-2, -1))
    assert norms.shape == (6, 2)
    np.testing.assert_allclose(norms, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(norms[-1], 1.0, rtol=1e-12)


def test_jacobian_norms_match_finite_differences():
    """d h[T] / d h[t] by perturbing h[t] through the init of a shorter run."""
    rec = model("elman")
    rng = np.random.default_rng(4)
    p = {k: rng.normal(0, 0.8, v.shape) for k, v in rec.init_params(4).items()}
    T, Bn, H = 5, 2, 3
    x = rng.normal(size=(T, Bn, 2))
    norms = uf.jacobian_norms(rec, p, {"x": x}, state="h")
    y0 = np.zeros((T, Bn, 2))
    h = uf.evaluate(rec, p, {"x": x}, {"y": y0})["h"]
    t = 2  # h[t] as the initial state of steps t+1..T
    eps = 1e-6
    J = np.zeros((Bn, H, H))
    for j in range(H):
        hp, hm = h[t - 1].copy(), h[t - 1].copy()
        hp[:, j] += eps
        hm[:, j] -= eps
        run = lambda h0: uf.evaluate(rec, p, {"x": x[t:]}, {"y": y0[t:]}, init={"h": h0})["h"][-1]
        J[:, :, j] = (run(hp) - run(hm)) / (2 * eps)
    np.testing.assert_allclose(norms[t - 1], np.linalg.norm(J, ord=2, axis=(-2, -1)), rtol=1e-7)


def test_rel_error_is_relative_to_the_tensor():
    assert rel_error(np.array([1.0, 1e-9]), np.array([1.0, 0.0])) < 1e-8
    assert rel_error(np.array([2.0, 0.0]), np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
