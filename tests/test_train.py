"""Training on the compiled kernels (unfold/train), each part against an
independent implementation:

- SGD, Adam, AdamW against torch.optim (when torch is installed) and against
  plain numpy loops written here; clipping over the params only;
- schedules against torch.optim.lr_scheduler and their closed forms;
- `fit` against the hand-written loop it replaces, its data sources,
  evaluation, callbacks, early stopping and stopping on a non-finite loss;
- save / load against the arrays saved, a damaged file, the model rebuilt;
- padding and windows against hand-built arrays; the ridge readout against
  np.linalg.lstsq;
- the optional extras (matplotlib, tqdm): used when installed, a clear error
  naming the extra when not.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import unfold as uf
from unfold.train import (Batch, Checkpoint, EarlyStopping, History, eval_loss, fit, load_model, load_params,
                          one_hot, optim, pad_sequences, random_windows, read_meta, ridge_readout, save)
from unfold.train.optim import SGD, Adam, AdamW
from unfold.train.schedules import constant, cosine_decay, exponential_decay, step_decay, warmup

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
ROOT = MODELS.parent.parent


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("train")


def elman(target, cache, dtype=np.float64, **dims):
    rec = uf.load(MODELS / "elman.rnn").bind(**{"H": 4, "D": 2, "K": 2, **dims})
    return uf.compile(rec, target=target, dtype=dtype, cache_dir=cache)


def sine_batch(rng, T=12, B=4, dtype=np.float64) -> Batch:
    """Predict the next values of two sines from the current ones."""
    phase = rng.uniform(0, 2 * np.pi, (1, B, 2))
    t = np.arange(T + 1)[:, None, None] * 0.4 + phase
    return Batch({"x": np.sin(t[:-1]).astype(dtype)}, {"y": np.sin(t[1:]).astype(dtype)})


def random_problem(seed=0, steps=6):
    """Params and a gradient per step (with an input's and a const's beside them)."""
    rng = np.random.default_rng(seed)
    params = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4), "R": rng.normal(size=(2, 2))}
    grads = [{"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4), "x": 1e3 * rng.normal(size=(5, 2))}
             for _ in range(steps)]
    return params, grads


def run_optimizer(opt, params, grads):
    state = opt.init(params)
    out = []
    for g in grads:
        params, state = opt.update(params, g, state)
        out.append(params)
    return out, state


# -- optimizers: numpy loops -----------------------------------------------------

def numpy_adam(params, grads, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0, decoupled=False):
    p = {k: params[k].copy() for k in ("W", "b")}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    out = []
    for n, g in enumerate(grads, start=1):
        for k in p:
            gk = g[k] + (0 if decoupled else wd) * p[k]
            p[k] = p[k] * (1 - lr * wd) if decoupled else p[k]
            m[k] = b1 * m[k] + (1 - b1) * gk
            v[k] = b2 * v[k] + (1 - b2) * gk ** 2
            p[k] = p[k] - lr * (m[k] / (1 - b1 ** n)) / (np.sqrt(v[k] / (1 - b2 ** n)) + eps)
        out.append({k: x.copy() for k, x in p.items()})
    return out


def numpy_sgd(params, grads, lr, mu=0.0, nesterov=False, wd=0.0):
    p = {k: params[k].copy() for k in ("W", "b")}
    buf = {}
    out = []
    for g in grads:
        for k in p:
            d = g[k] + wd * p[k]
            if mu:
                buf[k] = d.copy() if k not in buf else mu * buf[k] + d
                d = d + mu * buf[k] if nesterov else buf[k]
            p[k] = p[k] - lr * d
        out.append({k: x.copy() for k, x in p.items()})
    return out


@pytest.mark.parametrize("opt, reference", [
    (Adam(1e-2), lambda p, g: numpy_adam(p, g, 1e-2)),
    (Adam(3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
     lambda p, g: numpy_adam(p, g, 3e-3, 0.8, 0.99, 1e-6, 0.1)),
    (AdamW(1e-2, weight_decay=0.5), lambda p, g: numpy_adam(p, g, 1e-2, wd=0.5, decoupled=True)),
    (SGD(0.1), lambda p, g: numpy_sgd(p, g, 0.1)),
    (SGD(0.1, momentum=0.9, weight_decay=0.01), lambda p, g: numpy_sgd(p, g, 0.1, 0.9, wd=0.01)),
    (SGD(0.05, momentum=0.5, nesterov=True), lambda p, g: numpy_sgd(p, g, 0.05, 0.5, True)),
], ids=["adam", "adam-l2", "adamw", "sgd", "sgd-momentum", "sgd-nesterov"])
def test_train_optimizers_equal_numpy_loops(opt, reference):
    params, grads = random_problem()
    got, state = run_optimizer(opt, params, grads)
    for n, (mine, want) in enumerate(zip(got, reference(params, grads))):
        for k in want:
            np.testing.assert_allclose(mine[k], want[k], rtol=1e-12, atol=1e-14, err_msg=f"{k} at step {n + 1}")
        assert mine["R"] is params["R"], "a param without a gradient (a const) passes through"
        assert "x" not in mine, "an input's gradient is not a param"
    assert state.step == len(grads)


def test_train_optimizers_are_pure_and_keep_the_dtype():
    params, grads = random_problem()
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    before = {k: v.copy() for k, v in params32.items()}
    out, _ = run_optimizer(Adam(1e-2, weight_decay=0.1), params32, grads)   # float64 gradients
    assert all(out[-1][k].dtype == np.float32 for k in out[-1])
    assert all(np.array_equal(params32[k], before[k]) for k in before)


def test_train_clipping_counts_only_the_params():
    """grads["x"] (an input's, 1000x larger) neither enters the norm nor is clipped."""
    params, grads = random_problem(steps=1)
    g = grads[0]
    norm = math.sqrt(np.sum(g["W"] ** 2) + np.sum(g["b"] ** 2))
    out, state = run_optimizer(SGD(1.0, clip=0.5), params, grads)
    assert state.grad_norm == pytest.approx(norm, rel=1e-12)
    for k in ("W", "b"):
        np.testing.assert_allclose(out[0][k], params[k] - g[k] * 0.5 / norm, rtol=1e-10)
    _, unclipped = run_optimizer(SGD(1.0, clip=10 * norm), params, grads)
    assert unclipped.grad_norm == pytest.approx(norm, rel=1e-12)


def _torch_run(make, params, grads, clip=None):
    torch = pytest.importorskip("torch")
    ts = {k: torch.tensor(params[k], requires_grad=True) for k in ("W", "b")}
    opt = make(torch, list(ts.values()))
    out = []
    for g in grads:
        for k, t in ts.items():
            t.grad = torch.tensor(g[k])
        if clip:
            torch.nn.utils.clip_grad_norm_(list(ts.values()), clip)
        opt.step()
        out.append({k: t.detach().numpy().copy() for k, t in ts.items()})
    return out


@pytest.mark.parametrize("mine, theirs, clip", [
    (Adam(1e-2), lambda torch, ps: torch.optim.Adam(ps, lr=1e-2), None),
    (Adam(1e-2, weight_decay=0.1, clip=0.7), lambda torch, ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=0.1), 0.7),
    (AdamW(2e-2, betas=(0.5, 0.9)), lambda torch, ps: torch.optim.AdamW(ps, lr=2e-2, betas=(0.5, 0.9)), None),
    (SGD(0.1, momentum=0.9, weight_decay=0.01),
     lambda torch, ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01), None),
    (SGD(0.1, momentum=0.9, nesterov=True, clip=1.0),
     lambda torch, ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), 1.0),
], ids=["adam", "adam-l2-clip", "adamw", "sgd-momentum", "sgd-nesterov-clip"])
def test_train_optimizers_equal_torch(mine, theirs, clip):
    params, grads = random_problem(seed=3)
    want = _torch_run(theirs, params, grads, clip)
    got, _ = run_optimizer(mine, params, grads)
    for n, (a, b) in enumerate(zip(got, want)):
        for k in b:   # torch clips by max_norm / (norm + 1e-6), unfold by max_norm / (norm + 1e-12)
            np.testing.assert_allclose(a[k], b[k], rtol=1e-6 if clip else 1e-10, atol=1e-6 if clip else 1e-12,
                                       err_msg=f"{k} at step {n + 1}")


def test_train_optimizers_refuse_bad_arguments():
    params, grads = random_problem(steps=1)
    for make in (lambda: Adam(-1.0), lambda: Adam(1e-3, betas=(0.9,)), lambda: Adam(1e-3, betas=(1.0, 0.9)),
                 lambda: SGD(0.1, momentum=1.0), lambda: SGD(0.1, nesterov=True), lambda: Adam(1e-3, clip=0),
                 lambda: AdamW(1e-3, weight_decay=-1), lambda: SGD("fast")):
        with pytest.raises(uf.UnfoldError):
            make()
    opt = Adam(1e-3)
    with pytest.raises(uf.InputError, match="no gradient for any param"):
        opt.update(params, {"x": grads[0]["x"]}, opt.init(params))
    with pytest.raises(uf.InputError, match=r"the gradient of `b` has shape \[3\], the param \[4\]"):
        opt.update(params, {"b": np.zeros(3)}, opt.init(params))


# -- schedules ----------------------------------------------------------------------

def _torch_rates(make_scheduler, lr, steps):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = make_scheduler(torch, opt)
    rates = []
    for _ in range(steps):
        rates.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return rates


@pytest.mark.parametrize("mine, theirs", [
    (step_decay(0.1, every=7, factor=0.5), lambda torch, o: torch.optim.lr_scheduler.StepLR(o, 7, 0.5)),
    (exponential_decay(0.1, rate=0.9), lambda torch, o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
    (cosine_decay(0.1, steps=30, final=1e-3),
     lambda torch, o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30, eta_min=1e-3)),
], ids=["step", "exponential", "cosine"])
def test_train_schedules_equal_torch(mine, theirs):
    want = _torch_rates(theirs, 0.1, 31)
    np.testing.assert_allclose([mine(n) for n in range(31)], want, rtol=1e-12)


def test_train_schedules_closed_forms():
    assert [constant(0.3)(n) for n in (0, 100)] == [0.3, 0.3]
    assert cosine_decay(1.0, 10)(5) == pytest.approx(0.5) and cosine_decay(1.0, 10, 0.1)(50) == pytest.approx(0.1)
    w = warmup(4, cosine_decay(1.0, 10))
    assert [w(n) for n in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert w(4 + 5) == pytest.approx(0.5)
    opt = SGD(warmup(2, 0.1))
    params, grads = random_problem(steps=3)
    state = opt.init(params)
    rates = []
    for g in grads:
        params, state = opt.update(params, g, state)
        rates.append(state.lr)
    assert rates == pytest.approx([0.05, 0.1, 0.1])
    for bad in (lambda: cosine_decay(0.1, 0), lambda: cosine_decay(0.1, 5, final=0.2), lambda: step_decay(0.1, 2.5),
                lambda: warmup(0, 0.1), lambda: exponential_decay(0.1, -1)):
        with pytest.raises(uf.UnfoldError):
            bad()


# -- fit ------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["numpy", "cpu"])
def test_train_fit_equals_the_loop_it_replaces(target, cache):
    dtype = np.float32 if target == "cpu" else np.float64   # float32: one compilation for the CPU tests
    fn = elman(target, cache, dtype=dtype)
    params = fn.rec.init_params(seed=1, dtype=dtype)
    batches = [sine_batch(np.random.default_rng(i), dtype=dtype) for i in range(3)]
    got, history = fit(fn, params, batches, steps=5, optimizer=Adam(1e-2, clip=1.0), progress=False)
    opt, want, losses = Adam(1e-2, clip=1.0), params, []
    state = opt.init(want)
    for i in range(5):   # the loop a user writes by hand; the list is gone through again
        b = batches[i % 3]
        loss, grads = fn.value_and_grad(want, b.inputs, b.targets)
        want, state = opt.update(want, grads, state)
        losses.append(loss)
    for k in want:   # the same arithmetic in the same order: equal to the last bit
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    assert history.step == [1, 2, 3, 4, 5] and history.loss == losses
    assert len(history.grad_norm) == 5 and history.lr == [1e-2] * 5


def test_train_fit_learns_and_evaluates_on_held_out_data(cache):
    fn = elman("cpu", cache, dtype=np.float32)
    params = fn.rec.init_params(seed=0, dtype=np.float32)
    held_out = sine_batch(np.random.default_rng(99), B=16)          # float64: fit casts
    before = {k: v.copy() for k, v in params.items()}
    trained, h = fit(fn, params, sine_batch, steps=60, optimizer=Adam(3e-2), eval_data=held_out, eval_every=20,
                     progress=False)
    assert all(np.array_equal(params[k], before[k]) for k in params), "fit never changes what it is given"
    assert h.eval_step == [0, 20, 40, 60]
    assert h.eval_loss[0] == pytest.approx(eval_loss(fn, params, held_out), rel=1e-6)
    assert h.eval_loss[-1] == pytest.approx(eval_loss(fn, trained, held_out), rel=1e-6)
    assert h.eval_loss[-1] < 0.3 * h.eval_loss[0], h.eval_loss
    assert trained["W"].dtype == np.float32 and h.best_step == 60


def test_train_fit_weights_evaluation_batches_by_their_size(cache):
    fn = elman("numpy", cache)
    params = fn.rec.init_params(seed=0)
    a, b = sine_batch(np.random.default_rng(1), B=1), sine_batch(np.random.default_rng(2), B=3)
    both = Batch({"x": np.concatenate([a.inputs["x"], b.inputs["x"]], 1)},
                 {"y": np.concatenate([a.targets["y"], b.targets["y"]], 1)})
    assert eval_loss(fn, params, [a, b]) == pytest.approx(fn.loss(params, both.inputs, both.targets), rel=1e-12)


def test_train_fit_is_reproducible_from_its_seed(cache):
    fn = elman("numpy", cache)
    params = fn.rec.init_params(seed=0)
    runs = [fit(fn, params, sine_batch, steps=3, seed=s, progress=False)[1].loss for s in (5, 5, 6)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_train_fit_stops_when_a_generator_ends_or_a_callback_says(cache):
    fn = elman("numpy", cache)
    params = fn.rec.init_params(seed=0)
    gen = (sine_batch(np.random.default_rng(i)) for i in range(3))
    _, h = fit(fn, params, gen, steps=10, progress=False)
    assert h.step == [1, 2, 3] and "data ran out" in h.stop_reason

    def stop_at_two(state):
        state.stop = state.step == 2
    _, h = fit(fn, params, sine_batch, steps=10, callbacks=[stop_at_two], progress=False)
    assert h.step == [1, 2]
    _, h = fit(fn, params, sine_batch, steps=3, history=h, progress=False)   # a second stage numbers on
    assert h.step == [1, 2, 3, 4, 5]


def test_train_fit_stops_before_a_non_finite_step(cache):
    fn = elman("numpy", cache)
    params = fn.rec.init_params(seed=0)
    good = sine_batch(np.random.default_rng(0))
    bad = Batch({"x": np.full_like(good.inputs["x"], np.nan)}, good.targets)
    after_two, _ = fit(fn, params, [good, good], steps=2, progress=False)
    with pytest.warns(RuntimeWarning, match="not finite"):
        got, h = fit(fn, params, [good, good, bad], steps=5, progress=False)
    assert h.step == [1, 2] and "not finite" in h.stop_reason
    assert all(np.array_equal(got[k], after_two[k]) for k in got)


def test_train_early_stopping_restores_the_best_params():
    stopper = EarlyStopping(patience=2)
    state = argparse.Namespace(stop=False, history=History(), loss=0.0)
    seen = []
    for step, value in enumerate([3.0, 2.0, None, 2.5, 2.1, 1.0], start=1):
        state.step, state.eval_loss, state.params = step, value, {"w": np.array([float(step)])}
        stopper(state)
        seen.append(state.stop)
        if state.stop:
            break
    assert seen == [False, False, False, False, True]
    assert state.params["w"][0] == 2.0 and "since step 2" in state.history.stop_reason


def test_train_early_stopping_in_a_run(cache):
    fn = elman("numpy", cache)
    params = fn.rec.init_params(seed=0)
    # a step size so small that no step improves the loss by min_delta: it stops after `patience` steps
    _, h = fit(fn, params, sine_batch(np.random.default_rng(0)), steps=50, optimizer=SGD(1e-12),
               callbacks=[EarlyStopping(patience=3, min_delta=1e-3, monitor="loss")], progress=False)
    assert h.step == [1, 2, 3, 4] and "early stopping" in h.stop_reason
    with pytest.raises(uf.UnfoldError, match="patience"):
        EarlyStopping(patience=0)


def test_train_checkpoints_keep_the_best_params(cache, tmp_path):
    fn = elman("numpy", cache)
    params = fn.rec.init_params(seed=0)
    held_out = sine_batch(np.random.default_rng(9))
    got, h = fit(fn, params, sine_batch, steps=6, optimizer=Adam(3e-2), eval_data=held_out, eval_every=2,
                 callbacks=[Checkpoint(tmp_path / "best.npz"), Checkpoint(tmp_path / "every.npz", every=5)],
                 progress=False)
    best = load_params(tmp_path / "best.npz", fn.rec)
    assert read_meta(tmp_path / "best.npz")["meta"]["step"] == h.best_step
    assert eval_loss(fn, best, held_out) == pytest.approx(h.best_eval_loss, rel=1e-12)
    assert read_meta(tmp_path / "every.npz")["meta"]["step"] == 5
    with pytest.raises(uf.UnfoldError, match="every"):
        Checkpoint(tmp_path / "x.npz", every=0)


def test_train_fit_refuses_bad_arguments(cache):
    fn = elman("numpy", cache)
    params = fn.rec.init_params(seed=0)
    good = sine_batch(np.random.default_rng(0))
    for kwargs, match in [(dict(steps=0), "steps"), (dict(optimizer="adam"), "optimizer"),
                          (dict(callbacks=[1]), "callback"), (dict(progress="bar"), "progress"),
                          (dict(eval_data={"x": 1}), "eval_data"), (dict(eval_every=0), "eval_every")]:
        with pytest.raises(uf.UnfoldError, match=match):
            fit(fn, params, good, **{"steps": 2, "progress": False, **kwargs})
    with pytest.raises(uf.InputError, match="data must be"):
        fit(fn, params, {"x": good.inputs["x"]}, steps=1, progress=False)
    with pytest.raises(uf.InputError, match="a batch is"):
        fit(fn, params, [good.inputs], steps=1, progress=False)


def test_train_fit_prints_progress_without_tqdm(cache, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)   # as if tqdm were not installed
    fn = elman("numpy", cache)
    fit(fn, fn.rec.init_params(seed=0), sine_batch, steps=10, progress="auto")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("step     10  loss")
    with pytest.raises(uf.UnfoldError, match=r"pip install 'unfold-rnn\[progress\]'"):
        fit(fn, fn.rec.init_params(seed=0), sine_batch, steps=1, progress=True)


def test_train_fit_draws_a_tqdm_bar(cache, capsys):
    pytest.importorskip("tqdm")
    fn = elman("numpy", cache)
    fit(fn, fn.rec.init_params(seed=0), sine_batch, steps=3, progress=True)
    assert "3/3" in capsys.readouterr().err


# -- history, plots ------------------------------------------------------------------

def _history():
    h = History()
    for i in range(1, 6):
        h.record(i, 1.0 / i, 2.0 / i, 1e-3, 0.1 * i)
    h.record_eval(0, 1.5)
    h.record_eval(5, 0.3)
    return h


def test_train_history_saves_and_loads(tmp_path):
    h = _history()
    h.save(tmp_path / "run.json")
    again = History.load(tmp_path / "run.json")
    assert again == h and again.best_step == 5 and again.best_eval_loss == 0.3
    (tmp_path / "bad.json").write_text(json.dumps({"loss": [1]}))
    with pytest.raises(uf.UnfoldError, match="not a training history"):
        History.load(tmp_path / "bad.json")


def test_train_plots_need_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(uf.UnfoldError, match=r"needs matplotlib.*pip install 'unfold-rnn\[plot\]'"):
        _history().plot(tmp_path / "h.png")


def test_train_plots_write_pictures(tmp_path):
    pytest.importorskip("matplotlib")
    from unfold.train import plot_jacobians
    _history().plot(tmp_path / "h.png")
    plot_jacobians({"elman (init)": np.ones((5, 2)), "elman (trained)": np.arange(1.0, 6.0)}, tmp_path / "j.png")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "j.png").stat().st_size > 1000


def _plot_command(argv):
    from unfold.tools import plot
    parser = argparse.ArgumentParser()
    plot.add_arguments(parser)
    return plot.run(parser.parse_args(argv))


def test_train_plot_command(tmp_path, cache):
    pytest.importorskip("matplotlib")
    rec = uf.load(MODELS / "elman.rnn").bind(H=4, D=2, K=2)
    save(tmp_path / "trained.npz", rec.init_params(seed=3), rec)
    out = tmp_path / "jac.png"
    assert _plot_command([str(MODELS / "elman.rnn"), str(tmp_path / "trained.npz"), "--dims", "H=4,D=2,K=2",
                          "--jacobian", "--tau", "6", "--batch", "2", "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    _history().save(tmp_path / "run.json")
    assert _plot_command([str(tmp_path / "run.json"), "-o", str(tmp_path / "h.png")]) == 0
    assert (tmp_path / "h.png").exists()


# -- saving -----------------------------------------------------------------------

def test_train_save_and_load(tmp_path):
    rec = uf.load(MODELS / "lstm.rnn").bind(H=5, D=3)
    params = rec.init_params(seed=2, dtype=np.float32)
    save(tmp_path / "p", params, rec, meta={"step": np.int64(7)})   # no .npz suffix added
    got = load_params(tmp_path / "p", rec)
    assert set(got) == set(params) and all(np.array_equal(got[k], params[k]) and got[k].dtype == np.float32
                                           for k in params)
    again, params2 = load_model(tmp_path / "p")
    assert again.dims["H"] == 5 and again.listing().split("\n", 1)[1] == rec.listing().split("\n", 1)[1]
    assert read_meta(tmp_path / "p")["meta"] == {"step": 7} and "Wi = param" in read_meta(tmp_path / "p")["text"]
    with pytest.raises(uf.InputError, match="do not match `gru`: missing Un.*not in the model: Uf"):
        load_params(tmp_path / "p", uf.load(MODELS / "gru.rnn").bind(H=5, D=3))
    with pytest.raises(uf.InputError, match=r"`Wi` has shape \[5, 3\], the model's \[6, 3\]"):
        load_params(tmp_path / "p", rec.bind(H=6))


def test_train_save_detects_damage(tmp_path):
    rec = uf.load(MODELS / "elman.rnn")
    params = rec.init_params(seed=0)
    path = tmp_path / "p.npz"
    save(path, params, rec)
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    W = np.load(path)["param:W"].copy()
    W[0, 0] += 1.0
    with zipfile.ZipFile(path, "w") as z:   # rewrite one array, keep the rest (the checksum) as it was
        for n, data in files.items():
            if n == "param:W.npy":
                buf = io.BytesIO()
                np.save(buf, W)
                data = buf.getvalue()
            z.writestr(n, data)
    with pytest.raises(uf.UnfoldError, match="damaged"):
        load_params(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(uf.UnfoldError, match="cannot read saved params"):
        load_params(path)


def test_train_save_keeps_the_text_of_a_parsed_model(tmp_path):
    text = (MODELS / "elman.rnn").read_text()
    rec = uf.parse(text).bind(H=3)
    save(tmp_path / "none.npz", rec.init_params(0), rec)
    with pytest.raises(uf.UnfoldError, match="without the model's text"):
        load_model(tmp_path / "none.npz")
    save(tmp_path / "text.npz", rec.init_params(0), rec, text=text)
    assert load_model(tmp_path / "text.npz")[0].dims["H"] == 3
    with pytest.raises(uf.InputError, match="does not give"):
        save(tmp_path / "x.npz", rec.init_params(0), rec, text=(MODELS / "gru.rnn").read_text())


# -- data --------------------------------------------------------------------------

def test_train_pad_sequences_equals_hand_built_arrays():
    a, b, c = np.arange(6.0).reshape(3, 2), np.array([[9.0, 8.0]]), np.arange(4.0).reshape(2, 2) + 20
    x, lengths = pad_sequences([a, b, c], value=-1)
    want = np.array([[[0, 1], [9, 8], [20, 21]],
                     [[2, 3], [-1, -1], [22, 23]],
                     [[4, 5], [-1, -1], [-1, -1]]], dtype=float)
    assert np.array_equal(x, want) and lengths.tolist() == [3, 1, 2]
    ids, n = pad_sequences([np.array([1, 2]), np.array([3])], dtype=np.float32)
    assert ids.dtype == np.float32 and ids[:, 1].tolist() == [3, 0] and n.tolist() == [2, 1]
    for bad in ([], [np.zeros((2, 2)), np.zeros((2, 3))], [np.zeros((0, 2))], np.zeros((3, 2))):
        with pytest.raises(uf.InputError):
            pad_sequences(bad)


def test_train_padded_batches_run_with_their_lengths(cache):
    """Padding is never read: a padded batch's gradients equal each sequence's alone."""
    fn = elman("numpy", cache)
    params = fn.rec.init_params(seed=0)
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 2)) for n in (4, 2)]
    ys = [rng.normal(size=(n, 2)) for n in (4, 2)]
    x, lengths = pad_sequences(seqs, value=np.nan)
    y, _ = pad_sequences(ys)
    _, g = fn.value_and_grad(params, {"x": x}, {"y": y}, lengths=lengths, wrt="params")
    alone = [fn.value_and_grad(params, {"x": s[:, None]}, {"y": t[:, None]}, wrt="params")[1] for s, t in zip(seqs, ys)]
    np.testing.assert_allclose(g["W"], (alone[0]["W"] + alone[1]["W"]) / 2, rtol=1e-10)


def test_train_random_windows_are_aligned_slices():
    series = np.arange(100.0)[:, None] * np.array([1.0, -1.0])
    x, y = random_windows((series[:-1], series[1:]), length=10, batch=6, rng=0)
    assert x.shape == (10, 6, 2) and y.shape == (10, 6, 2)
    for b in range(6):
        s = int(x[0, b, 0])
        assert np.array_equal(x[:, b], series[s:s + 10]) and np.array_equal(y[:, b], series[s + 1:s + 11])
    one = random_windows(np.arange(20), length=20, batch=2, rng=np.random.default_rng(1))
    assert np.array_equal(one, np.stack([np.arange(20)] * 2, axis=1))
    with pytest.raises(uf.InputError, match="does not fit"):
        random_windows(np.arange(5), length=6, batch=1)
    with pytest.raises(uf.InputError, match="one length"):
        random_windows((np.arange(5), np.arange(6)), length=2, batch=1)


def test_train_one_hot_equals_rows_of_the_identity():
    ids = np.array([[0, 3], [2, 2]])
    assert np.array_equal(one_hot(ids, 4), np.eye(4, dtype=np.float32)[ids])
    with pytest.raises(uf.InputError, match=r"0\.\.3"):
        one_hot([4], 4)
    with pytest.raises(uf.InputError, match="integer"):
        one_hot([0.5], 4)


# -- the ridge readout ------------------------------------------------------------------

def _lstsq_readout(S, Y, alpha, bias=True):
    """min |[S 1] [V^T; c] - Y|^2 + alpha |V|^2 as one least-squares system."""
    H = S.shape[1]
    A = np.hstack([S, np.ones((len(S), 1))]) if bias else S
    A = np.vstack([A, np.hstack([np.sqrt(alpha) * np.eye(H), np.zeros((H, A.shape[1] - H))])])
    sol = np.linalg.lstsq(A, np.vstack([Y, np.zeros((H, Y.shape[1]))]), rcond=None)[0]
    return sol[:H].T, (sol[H] if bias else np.zeros(Y.shape[1]))


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 10.0])
@pytest.mark.parametrize("bias", [True, False])
def test_train_ridge_readout_equals_lstsq(alpha, bias):
    rng = np.random.default_rng(0)
    states = rng.normal(size=(30, 3, 5))
    targets = states @ rng.normal(size=(5, 2)) + 0.5 + 0.1 * rng.normal(size=(30, 3, 2))
    V, c = ridge_readout(states, targets, alpha=alpha, washout=4, bias=bias)
    V_want, c_want = _lstsq_readout(states[4:].reshape(-1, 5), targets[4:].reshape(-1, 2), alpha, bias)
    np.testing.assert_allclose(V, V_want, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(c, c_want, rtol=1e-8, atol=1e-10)


def test_train_ridge_readout_shapes_and_errors():
    rng = np.random.default_rng(1)
    S = rng.normal(size=(20, 4)).astype(np.float32)
    V, c = ridge_readout(S, S[:, 0], alpha=1e-9)
    assert V.shape == (1, 4) and c.shape == (1,) and V.dtype == np.float32
    np.testing.assert_allclose(V[0], [1, 0, 0, 0], atol=1e-4)
    with pytest.raises(uf.InputError, match="do not match"):
        ridge_readout(S, S[:5])
    with pytest.raises(uf.InputError, match="washout"):
        ridge_readout(S, S, washout=20)
    with pytest.raises(uf.InputError, match="alpha"):
        ridge_readout(S, S, alpha=-1)


def test_train_the_facade_names_exist():
    """What unfold/__init__ is to export, importable from unfold.train."""
    import unfold.train as t
    assert callable(t.fit) and callable(t.save) and callable(t.load_params) and callable(t.generate)
    assert t.optim is optim and optim.Adam is Adam and optim.cosine_decay is cosine_decay
    assert (ROOT / "examples" / "tasks" / "adding_lstm.rnn").exists()
