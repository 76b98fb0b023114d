"""Data-parallel gradients on a Dask cluster (unfold.bridges.distributed):
the sharded loss and gradients equal the single-process compiled function's
(float64, 1e-12), workers load the kernels from the disk cache the parent
filled, and a shard whose worker dies is run again.  One LocalCluster of two
single-threaded worker processes serves the module; skipped without dask."""
import os
import sys

import numpy as np
import pytest

import unfold as uf
from unfold.bridges import distributed as ud

distributed = pytest.importorskip("distributed")

T, B, H, D = 6, 5, 4, 3


@pytest.fixture(scope="module")
def fn(tmp_path_factory):
    rec = uf.load(uf.zoo_path("lstm")).bind(H=H, D=D)
    return uf.compile(rec, target="cpu", dtype=np.float64, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def data(fn):
    rng = np.random.default_rng(0)
    return fn.rec.init_params(seed=1), rng.normal(size=(T, B, D)), rng.normal(size=(T, B, H))


def assert_same(got, want):
    (loss, grads), (ref_loss, ref_grads) = got, want
    assert loss == pytest.approx(ref_loss, rel=1e-12, abs=1e-15)
    assert set(grads) == set(ref_grads)
    for k, g in ref_grads.items():
        np.testing.assert_allclose(grads[k], g, rtol=1e-12, atol=1e-15, err_msg=k)


def test_distributed_equals_one_process(fn, client, data):
    params, x, y = data
    want = fn.value_and_grad(params, {"x": x}, {"y": y}, wrt="params")
    assert_same(ud.value_and_grad(fn, params, {"x": x, "y": y}, client), want)
    assert_same(ud.value_and_grad(fn, params, {"x": x, "y": y}, client, shards=3), want)


def test_distributed_dropout_draws_a_seed_per_shard(client, tmp_path):
    """Training mode: shard i drops with the i-th seed spawned from the call's seed."""
    from unfold.lang.ops.dropout import spawn
    rec = uf.load(uf.zoo_path("dropout")).bind(V=5, E=3, H=4)
    f = uf.compile(rec, target="cpu", dtype=np.float64, cache_dir=tmp_path)
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, (T, B, 1)).astype(float), rng.integers(0, 5, (T, B, 1)).astype(float)
    params = rec.init_params(seed=2)
    one = ud.value_and_grad(f, params, {"x": x, "y": y}, client, shards=1, seed=9)
    assert_same(one, f.value_and_grad(params, {"x": x}, {"y": y}, wrt="params", seed=spawn(9, 1)[0]))
    halves = [(np.ascontiguousarray(x[:, r]), np.ascontiguousarray(y[:, r]))
              for r in np.array_split(np.arange(B), 2)]
    parts = [f.value_and_grad(params, {"x": a}, {"y": b}, wrt="params", seed=s)
             for (a, b), s in zip(halves, spawn(9, 2))]
    sizes = [a.shape[1] / B for a, _ in halves]
    want = (sum(w * p[0] for w, p in zip(sizes, parts)), {k: sum(w * p[1][k] for w, p in zip(sizes, parts))
                                                          for k in parts[0][1]})
    assert_same(ud.value_and_grad(f, params, {"x": x, "y": y}, client, shards=2, seed=9), want)
    evaluation = ud.value_and_grad(f, params, {"x": x, "y": y}, client, shards=2)
    assert_same(evaluation, f.value_and_grad(params, {"x": x}, {"y": y}, wrt="params"))


def test_distributed_every_gradient_with_lengths_init_and_truncation(fn, client, data):
    """Gradients of inputs and initial states are per sequence: put back along B."""
    params, x, y = data
    rng = np.random.default_rng(2)
    lengths, init = [6, 2, 3, 5, 4], {"h": rng.normal(size=(B, H)), "c": rng.normal(size=(B, H))}
    want = fn.value_and_grad(params, {"x": x}, {"y": y}, init=init, lengths=lengths, truncate=2, wrt="all")
    got = ud.value_and_grad(fn, params, {"x": x, "y": y}, client, lengths=lengths, init=init, truncate=2,
                            wrt="all")
    assert_same(got, want)
    assert got[1]["x"].shape == (T, B, D) and got[1]["init:h"].shape == (B, H)


def test_distributed_shards_given_as_a_list_and_a_scheduler_address(fn, cluster, data):
    params, x, y = data
    want = fn.value_and_grad(params, {"x": x}, {"y": y}, wrt="params")
    shards = [{"x": np.ascontiguousarray(x[:, s]), "y": np.ascontiguousarray(y[:, s])}
              for s in (slice(0, 1), slice(1, 5))]
    try:
        assert_same(ud.value_and_grad(fn, params, shards, cluster.scheduler_address), want)
    finally:
        ud.close()   # the client it connected, before the cluster goes


def test_distributed_shards_already_on_the_workers(fn, client, data):
    """Futures of shards: nothing is sent, and the checks run on the workers."""
    params, x, y = data
    want = fn.value_and_grad(params, {"x": x}, {"y": y}, wrt="params")
    shards = client.scatter([{"x": np.ascontiguousarray(x[:, s]), "y": np.ascontiguousarray(y[:, s])}
                             for s in (slice(0, 3), slice(3, 5))])
    assert_same(ud.value_and_grad(fn, params, shards, client), want)
    [bad] = client.scatter([{"x": x[:, :, :2].copy(), "y": y}])
    with pytest.raises(uf.InputError, match="expected"):
        ud.value_and_grad(fn, params, [bad], client, retries=0)


def test_distributed_workers_load_the_kernels_from_the_disk_cache(fn, client, data):
    params, x, y = data
    ud.value_and_grad(fn, params, {"x": x, "y": y}, client)
    hits = client.run(lambda: [f.cache_hits for f in ud._COMPILED.values()])
    assert hits and all(h and min(h) >= 1 for h in hits.values()), hits


class DieOnce(distributed.WorkerPlugin):
    """Kills the worker process that starts the first unfold shard (once: a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("unfold-shard") and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)


def test_distributed_a_lost_workers_shard_is_run_again(fn, client, data, tmp_path):
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # the workers cannot import this file
    params, x, y = data
    want = fn.value_and_grad(params, {"x": x}, {"y": y}, wrt="params")
    marker = tmp_path / "died"
    client.register_plugin(DieOnce(str(marker)), name="die-once")
    try:
        got = ud.value_and_grad(fn, params, {"x": x, "y": y}, client)
    finally:
        client.unregister_worker_plugin("die-once")
    assert marker.exists(), "no worker died: the test tested nothing"
    assert_same(got, want)


def test_distributed_bad_arguments_fail_before_any_task(fn, client, data):
    params, x, y = data
    with pytest.raises(uf.InputError, match="expected"):
        ud.value_and_grad(fn, params, {"x": x[:, :, :2].copy(), "y": y}, client)
    with pytest.raises(uf.InputError, match="dtype"):
        ud.value_and_grad(fn, params, {"x": x.astype(np.float32), "y": y}, client)
    with pytest.raises(uf.InputError, match="batches must be"):
        ud.value_and_grad(fn, params, (x, y), client)
    with pytest.raises(uf.UnfoldError, match="client must be"):
        ud.value_and_grad(fn, params, {"x": x, "y": y}, 42)
    with pytest.raises(uf.UnfoldError, match="compiled function"):
        ud.value_and_grad(fn.rec, params, {"x": x, "y": y}, client)


def test_distributed_missing_extra_names_it(fn, data, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)   # `import distributed` now fails
    params, x, y = data
    with pytest.raises(uf.UnfoldError, match=r"unfold-rnn\[dask\]"):
        ud.value_and_grad(fn, params, {"x": x, "y": y})
