"""The benchmark's peers compute what the models say: the numpy BPTT of each cell
against central finite differences, the unfold reference, PyTorch autograd (loop
and native, with PyTorch's gate packing) and JAX; plus the harness helpers, the
goals' FLOP count and the second BLAS setting of benchmarks/cpu.py.
Small sizes, float64; torch and jax tests skip when those are not installed."""
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import cells_np, harness, peers  # noqa: E402

T, B, H, D = 5, 3, 4, 3
CELLS = cells_np.CELLS


def problem(cell, K=None, seed=1):
    return cells_np.make_problem(cell, T, B, H, D, K=K, seed=seed, dtype=np.float64)


def assert_same(a, b, rtol=1e-10, atol=1e-12):
    la, ga = a
    lb, gb = b
    assert la == pytest.approx(lb, rel=rtol, abs=atol)
    assert set(ga) == set(gb)
    for k in gb:
        np.testing.assert_allclose(ga[k], gb[k], rtol=rtol, atol=atol, err_msg=k)


@pytest.mark.parametrize("cell", CELLS)
def test_numpy_bptt_matches_finite_differences(cell):
    params, x, y = problem(cell)
    _, grads = cells_np.value_and_grad(cell, params, x, y)
    rng = np.random.default_rng(0)
    arrays = dict(params, x=x)
    eps = 1e-6
    for name, a in arrays.items():
        for idx in {tuple(rng.integers(0, s) for s in a.shape) for _ in range(2)}:
            old = a[idx]
            a[idx] = old + eps
            up = cells_np.forward(cell, params, x, y)
            a[idx] = old - eps
            down = cells_np.forward(cell, params, x, y)
            a[idx] = old
            assert grads[name][idx] == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-9), \
                (name, idx)


@pytest.mark.parametrize("cell", CELLS)
def test_numpy_matches_unfold_reference(cell):
    uf = pytest.importorskip("unfold")
    K = 2 if cell == "elman" else None              # elman.rnn has a readout o = V h + c
    rec = uf.load(ROOT / "examples" / "models" / f"{cell}.rnn")
    rec = rec.bind(H=H, D=D, **({"K": K} if K else {}))
    params, x, y = problem(cell, K=K)
    reduce = "sum" if cell == "elman" else "mean"   # elman.rnn: sum_t; the others mean_t
    loss, grads = uf.value_and_grad(rec, params, {"x": x}, {"y": y})
    grads = {k: v for k, v in grads.items() if not k.startswith("init:")}
    assert_same(cells_np.value_and_grad(cell, params, x, y, reduce), (loss, grads))


def test_param_names_follow_the_model_files():
    uf = pytest.importorskip("unfold")
    for cell in CELLS:
        rec = uf.load(ROOT / "examples" / "models" / f"{cell}.rnn")
        declared = {s.name for s in rec.of_role(uf.Role.PARAM)}
        assert set(cells_np.param_names(cell, readout=cell == "elman")) == declared


def test_float32_forward_matches_float64():
    for cell in CELLS:
        p, x, y = cells_np.make_problem(cell, 20, 4, 8, seed=3)
        p64 = {k: v.astype(np.float64) for k, v in p.items()}
        l32 = cells_np.forward(cell, p, x, y)
        l64 = cells_np.forward(cell, p64, x.astype(np.float64), y.astype(np.float64))
        assert l32 == pytest.approx(l64, rel=1e-5)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("name", ["torch-loop", "torch"])
def test_torch_autograd_matches_numpy(cell, name):
    pytest.importorskip("torch")
    if name == "torch" and cell == "softsign":
        with pytest.raises(peers.PeerUnavailable):
            peers.make_peer(name, cell)
        return
    peer = peers.make_peer(name, cell)
    params, x, y = problem(cell)
    ref = cells_np.value_and_grad(cell, params, x, y)
    assert peer.fwd(params, x, y) == pytest.approx(ref[0], rel=1e-12)
    assert_same(peer.fwd_bwd(params, x, y), ref)


def test_torch_native_packing_gives_the_numpy_loss_in_float32():
    pytest.importorskip("torch")
    for cell in ("elman", "lstm", "gru"):
        params, x, y = cells_np.make_problem(cell, 30, 4, 16, 8, seed=2)
        ref = cells_np.forward(cell, params, x, y)
        assert peers.make_peer("torch", cell).fwd(params, x, y) == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("name", ["numpy", "torch-loop", "torch", "jax"])
def test_elman_readout_and_sum_t(name):
    if name.startswith("torch"):
        pytest.importorskip("torch")
    if name == "jax":
        pytest.importorskip("jax")
    params, x, y = problem("elman", K=2)
    ref = cells_np.value_and_grad("elman", params, x, y, reduce="sum")
    peer = peers.make_peer(name, "elman", reduce="sum")
    if name == "jax":
        import jax
        with jax.enable_x64(True):
            assert_same(peer.fwd_bwd(params, x, y), ref, rtol=1e-9)
    else:
        assert_same(peer.fwd_bwd(params, x, y), ref)


@pytest.mark.parametrize("cell", CELLS)
def test_jax_scan_matches_numpy(cell):
    jax = pytest.importorskip("jax")
    peer = peers.make_peer("jax", cell)
    params, x, y = problem(cell)
    ref = cells_np.value_and_grad(cell, params, x, y)
    with jax.enable_x64(True):
        assert peer.fwd(params, x, y) == pytest.approx(ref[0], rel=1e-10)
        assert_same(peer.fwd_bwd(params, x, y), ref, rtol=1e-9)


def test_unknown_peer_and_cell():
    with pytest.raises(KeyError, match="peers"):
        peers.make_peer("tensorflow", "lstm")
    with pytest.raises(KeyError, match="cells"):
        peers.make_peer("numpy", "transformer")


def test_time_call_and_first_call():
    calls = []
    t = harness.time_call(lambda: calls.append(1), repeats=5, warmup=2)
    assert len(calls) == 7 and len(t["runs"]) == 5
    assert 0 <= t["min_ms"] <= t["median_ms"]
    ms, out = harness.first_call(lambda a: a + 1, 1)
    assert out == 2 and ms >= 0


def test_peak_memory_tracemalloc_sees_numpy_allocations():
    m = harness.peak_memory(lambda: np.ones(1 << 20), method="tracemalloc")
    assert m["bytes"] >= 8 << 20
    r = harness.peak_memory(lambda: np.ones(1 << 20), method="rss")
    assert r["method"] == "rss" and (r["bytes"] is None or r["bytes"] >= 0)


def test_run_grid_table_and_json(tmp_path):
    def broken(case):
        raise NotImplementedError("no such thing")

    systems = [harness.System("numpy", lambda c: (
        lambda p, x, y: cells_np.forward(c.cell, p, x, y),
        lambda p, x, y: cells_np.value_and_grad(c.cell, p, x, y)), "tracemalloc"),
        ("broken", broken)]
    results = harness.run_grid(systems, [("gru", 2, 4, 6)], repeats=2, memory=True)
    m = results[0].systems["numpy"]
    assert m["max_rel_err"] < 1e-5 and m["peak_memory"]["bytes"] > 0
    assert results[0].systems["broken"] == {"skipped": "no such thing"}
    table = harness.format_table(results, baseline="numpy")
    assert "| gru 2, 4, 6 |" in table and "skipped broken: no such thing" in table
    assert "gru 2,4,6" in harness.format_first_calls(results)
    harness.write_json(tmp_path / "r.json", results, {"threads": 1})
    import json
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["results"][0]["case"]["cell"] == "gru"


def test_configure_threads_reports_blas():
    # in a child process: the limits are process-wide and would slow the other tests
    import subprocess
    code = ("import sys; sys.modules['torch'] = None; "   # skip torch's slow import
            "from benchmarks import harness; info = harness.configure_threads(1); "
            "print(harness.describe_environment(dict(harness.environment(), **info)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "threads: 1 for every system" in out


def test_goals_count_the_matmul_flops_and_name_what_is_missed():
    from benchmarks import goals
    case = harness.Case("lstm", 16, 256, 10)
    # forward: projection + a step's product; backward: a step's product, two weight grads, dx
    assert goals.flops(case) == 6 * 2.0 * 10 * 16 * 256 * 4 * 256
    r = harness.Result(case, {"unfold": {"fwd_bwd": {"median_ms": 100.0}},
                              "torch": {"fwd_bwd": {"median_ms": 90.0}},
                              "jax": {"fwd_bwd": {"median_ms": 200.0}}})
    misses = goals.verdicts(r, peak=1000.0)
    assert any(m.startswith("torch 0.90x") for m in misses) and not any("jax" in m for m in misses)
    assert any("GFLOP/s < peak / 1.3" in m for m in misses)
    assert "| lstm 16, 256, 10 |" in goals.goals_table([r], 1000.0)


def test_the_second_run_loads_the_other_blas_kernel(monkeypatch):
    from benchmarks import cpu
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "1048576")
    env, change = cpu.other_blas_env()
    assert "OPENBLAS_CORETYPE" not in env and "OPENBLAS_L2_SIZE" not in env and "without" in change
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.delenv("OPENBLAS_L2_SIZE")
    env, change = cpu.other_blas_env()
    assert env["OPENBLAS_CORETYPE"] == "Haswell"
    quick = cpu.quick_grid()
    assert {(c.B, c.H) for c in quick if c.cell == "lstm"} == {(b, h) for b in (1, 16, 64)
                                                                for h in (16, 64, 256, 1024)}
