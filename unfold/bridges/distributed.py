"""Data-parallel gradients on a Dask cluster.

    fn = uf.compile(rec, target="cpu", dtype=np.float64)
    loss, grads = value_and_grad(fn, params, {"x": x, "y": y}, client)   # = fn.value_and_grad(...)

The batch is split along B into shards, one task per shard; each worker
compiles the recurrence once per process, from the disk cache the parent
filled (`fn.cache_dir`: on a multi-machine cluster, a shared file system, or
each machine compiles into its own), and returns its shard's loss and
gradients weighted by its share of the batch; the parent adds them up.  The
loss is a mean over sequences, so the weighted sum is the whole batch's loss
and gradients, up to the order of additions.

A worker that dies mid-shard (its process killed, its machine gone) is the
scheduler's business: Dask runs the shard again on another worker, up to
`distributed.scheduler.allowed-failures` times.  A shard that raises is run
again `retries` times (a flaky disk); an error in the arguments never
reaches a worker: the whole batch is checked here first.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import threading
import uuid
from dataclasses import dataclass

import numpy as np

from ..compiler.driver import Compiled, compile
from ..graph.runargs import RunArgs
from ..lang.errors import InputError, ModelError, UnfoldError
from ..lang.ir import Role
from ..lang.ops.dropout import spawn
from ..lang.recurrence import Recurrence, canonical
from ..lang.extras import require

#: on a worker: the compiled functions it holds, by `_Spec.key`
_COMPILED: dict = {}
_LOCK = threading.Lock()
#: in the parent: the kinds of call whose kernels it has compiled (`_warm`)
_WARM: set = set()
#: clients this module connected (by address; None: the default LocalCluster), and that cluster
_CLIENTS: dict = {}
_CLUSTERS: list = []


@dataclass(frozen=True)
class _Spec:
    """What a worker needs to compile the same function as the parent."""
    rec: Recurrence
    target: str
    dtype: str
    mode: str
    unroll: int
    cache_dir: str
    options: tuple

    @classmethod
    def of(cls, fn: Compiled) -> "_Spec":
        return cls(fn.rec, fn.target, fn.dtype.name, fn.mode, fn.unroll, str(fn.cache_dir),
                   tuple(sorted(fn.options.items())))

    @property
    def key(self) -> str:
        text = "\n".join([self.rec.name, canonical(self.rec), self.target, self.dtype, self.mode,
                          str(self.unroll), self.cache_dir, repr(self.options)])
        return hashlib.sha256(text.encode()).hexdigest()

    def compiled(self) -> Compiled:
        """This process's compiled function (from the disk cache after the first process)."""
        key = self.key
        with _LOCK:   # a worker with several threads compiles once
            if key not in _COMPILED:
                _COMPILED[key] = compile(self.rec, target=self.target, dtype=np.dtype(self.dtype),
                                         mode=self.mode, unroll=self.unroll, cache_dir=self.cache_dir,
                                         **dict(self.options))
            return _COMPILED[key]


def _shard(spec: _Spec, params, batch: dict, init, lengths, truncate, wrt, seed=None):
    """A worker's task: (its batch size, its loss, its gradients) on one shard,
    `batch` a dict name -> array of inputs and targets."""
    fn = spec.compiled()
    inputs, targets = _by_role(fn.rec, batch)
    loss, grads = fn.value_and_grad(params, inputs, targets, init=init, lengths=lengths, truncate=truncate,
                                    wrt=wrt, seed=seed)
    return _batch_size(fn.rec, batch), loss, grads


def value_and_grad(fn: Compiled, params: dict, batches, client=None, *, shards: int | None = None,
                   lengths=None, init=None, truncate=None, wrt="params", retries: int = 1, seed=None):
    """(loss, grads) of `fn` on a batch, computed in shards on a Dask cluster:
    what `fn.value_and_grad(params, inputs, targets, ...)` returns.

    batches: the batch, a dict name -> array of its inputs and targets
    together (the model says which is which), split along B into `shards`
    (default: one per worker thread); or a list of shards: such dicts, or
    Dask futures of them (data already on the workers: nothing to send, and
    checked there).  client: a `distributed.Client`, a scheduler address, or
    None (a client already running in this process, else a LocalCluster
    started once, one single-threaded worker per core).  lengths, init: as
    for fn, per sequence of the whole batch (a dict only).  wrt: as for fn,
    but "params" by default (what training needs); gradients of inputs and
    initial states are put back together along B.  seed: training mode
    (dropout); shard i draws its masks from the i-th seed drawn from `seed`,
    so the result is the whole batch's in distribution, not bit for bit."""
    distributed = require("distributed", "dask", "uf.distributed.value_and_grad")
    if not isinstance(fn, Compiled):
        raise UnfoldError(f"uf.distributed.value_and_grad takes a compiled function (uf.compile), "
                          f"not {type(fn).__name__}")
    if fn.rec.loss is None:
        raise ModelError(f"model `{fn.rec.name}` has no loss", expected="a line `loss = sum_t(...)`")
    client = _client(client)
    parts = _shards(fn, params, batches, lengths, init, shards or _threads(client), distributed.Future)
    _warm(fn, params, lengths is not None, wrt)
    # the params travel in each task, not scattered: a task can then run again anywhere after its
    # worker is lost (scattered data is lost with it, and cancels what needs it); each shard sends
    # back gradients of the same size anyway
    spec, token = _Spec.of(fn), uuid.uuid4().hex
    seeds = spawn(seed, len(parts))
    futures = [client.submit(_shard, spec, params, *part, truncate, wrt, seeds[i], retries=retries,
                             key=f"unfold-shard-{token}-{i}", pure=False) for i, part in enumerate(parts)]
    return _combined(fn.rec, client.gather(futures))


def _warm(fn: Compiled, params, masked: bool, wrt):
    """Compile here first, once per kind of call, on one step of zeros: the
    kernels' source and numba's machine code land in the disk cache, and the
    workers load them rather than each compiling them at once."""
    kind = (_Spec.of(fn).key, masked, repr(wrt))   # what selects the kernels
    if kind in _WARM:
        return
    zeros = {s.name: np.zeros(((1,) if s.timed else ()) + (1,) + tuple(s.shape), fn.dtype)
             for s in fn.rec.of_role(Role.INPUT, Role.TARGET)}
    inputs, targets = _by_role(fn.rec, zeros)
    fn.value_and_grad(params, inputs, targets, lengths=[1] if masked else None, wrt=wrt)
    _WARM.add(kind)


def _shards(fn: Compiled, params, batches, lengths, init, n: int, future) -> list[tuple]:
    """(batch, init, lengths) of every shard, checked here unless on the workers."""
    if isinstance(batches, dict):
        run = _checked(fn, params, batches, lengths, init)
        return [_slice(fn.rec, run, rows) for rows in np.array_split(np.arange(run.batch), min(n, run.batch))]
    if not isinstance(batches, (list, tuple)) or not batches or \
            not all(isinstance(b, (dict, future)) for b in batches):
        raise InputError("batches must be a dict name -> array (one batch, split here) or a non-empty list "
                         f"of shards (such dicts, or Dask futures of them), not {type(batches).__name__}")
    if lengths is not None or init is not None:
        raise InputError("lengths= and init= go with one batch (a dict), not a list of shards: "
                         "concatenate the shards into one batch")
    for b in batches:
        if isinstance(b, dict):
            _checked(fn, params, b, None, None)
    return [(b, None, None) for b in batches]


def _by_role(rec: Recurrence, batch: dict) -> tuple[dict, dict]:
    """(inputs, targets) of a dict holding both; unknown names stay in inputs (and fail there)."""
    target = {s.name for s in rec.of_role(Role.TARGET)}
    return {k: v for k, v in batch.items() if k not in target}, {k: v for k, v in batch.items() if k in target}


def _batch_size(rec: Recurrence, batch: dict) -> int:
    s = next(rec.symbols[k] for k in batch if k in rec.symbols)
    return int(np.shape(batch[s.name])[1 if s.timed else 0])


def _checked(fn: Compiled, params, batch: dict, lengths, init) -> RunArgs:
    """The batch checked here, so a bad argument is an error now and not on a worker."""
    inputs, targets = _by_role(fn.rec, batch)
    return RunArgs.check(fn.rec, params, inputs, targets, init, lengths, strict=True, dtype=fn.dtype)


def _slice(rec: Recurrence, run: RunArgs, rows: np.ndarray) -> tuple:
    """(batch, init, lengths) of the sequences `rows` of a checked run, C-contiguous."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    batch = {k: np.ascontiguousarray(a[:, lo:hi] if rec.symbols[k].timed else a[lo:hi])
             for k, a in run.inputs.items()}
    init = {k: np.ascontiguousarray(a[lo:hi]) for k, a in run.init.items() if a is not None}
    return batch, init, None if run.lengths is None else run.lengths[lo:hi].copy()


def _combined(rec: Recurrence, results: list) -> tuple[float, dict]:
    """The whole batch's loss and gradients from the shards' (each a mean over
    its sequences): param gradients added, weighted by the shards' sizes; the
    per-sequence ones (inputs, initial states) put back together along B."""
    total = sum(r[0] for r in results)
    weights = [r[0] / total for r in results]
    grads = {}
    for key in results[0][2]:
        parts = [w * r[2][key] for w, r in zip(weights, results)]
        symbol = rec.symbols.get(key)
        if symbol is not None and symbol.role is Role.PARAM:
            grads[key] = sum(parts[1:], parts[0])
        else:   # an input [T, B, ...] or [B, ...], or init:<state> [B, n]
            grads[key] = np.concatenate(parts, axis=1 if symbol is not None and symbol.timed else 0)
    return float(sum(w * r[1] for w, r in zip(weights, results))), grads


# ------------------------------------------------------------ clients

def _client(client):
    """A `distributed.Client` for `client` (see value_and_grad)."""
    distributed = require("distributed", "dask", "uf.distributed.value_and_grad")
    if isinstance(client, distributed.Client):
        return client
    if client is not None and not isinstance(client, str):
        raise UnfoldError(f"client must be a distributed.Client, a scheduler address or None, "
                          f"not {type(client).__name__}")
    if client is None:
        try:
            return distributed.default_client()
        except ValueError:   # none running in this process: start (once) a local cluster
            pass
    if client not in _CLIENTS:
        if client:
            _CLIENTS[client] = distributed.Client(client)
        else:
            cluster = distributed.LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1)
            _CLIENTS[client] = distributed.Client(cluster)
            _CLUSTERS.append(cluster)
        atexit.register(close)
    return _CLIENTS[client]


def _threads(client) -> int:
    """How many shards run at once: the cluster's worker threads."""
    return max(1, sum(client.nthreads().values()))


def close():
    """Close the clients this module connected and the LocalCluster it started
    (at exit too); clients the caller passed are the caller's to close."""
    while _CLIENTS:
        _CLIENTS.popitem()[1].close()
    while _CLUSTERS:
        _CLUSTERS.pop().close()
